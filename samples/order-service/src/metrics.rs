//! `GET /metrics` in the Prometheus text format: each endpoint's counters
//! from `Endpoint::stats().snapshot()`, for the endpoints of this process.
//!
//! The names match the ones the runtime reports through the `metrics`
//! facade. Two of those have no in-memory copy: the
//! `exactly_outbox_dispatch_lag_seconds` histogram and
//! `exactly_claim_check_bytes_total`. For them this process installs a
//! Prometheus `metrics` recorder (see docs/observability.md) and appends
//! those two families from it.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use exactly::{Endpoint, StatsSnapshot};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The families the runtime reports only through the `metrics` facade.
const FACADE_ONLY: [&str; 2] = [
    "exactly_outbox_dispatch_lag_seconds",
    "exactly_claim_check_bytes_total",
];

/// Buckets of the dispatch-lag histogram, in seconds: commit to send.
const LAG_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// This process's `metrics` recorder, installed on first use; `None` if
/// another recorder was installed first.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(FACADE_ONLY[0].into()), &LAG_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Whether a line of Prometheus text belongs to one of `FACADE_ONLY`.
fn facade_only(line: &str) -> bool {
    let sample = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    FACADE_ONLY.iter().any(|family| {
        sample
            .strip_prefix(family)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| matches!(c, ' ' | '{' | '_'))
    })
}

/// A counter exported: name, help text, and where its value comes from.
type Counter = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// The counters exported.
const COUNTERS: [Counter; 9] = [
    ("processed", "Deliveries whose attempt committed.", |s| {
        s.processed
    }),
    (
        "duplicates_dropped",
        "Deliveries dropped as already processed.",
        |s| s.duplicates,
    ),
    (
        "recovered",
        "Deliveries that found and finished an earlier attempt's outbox entry.",
        |s| s.recovered,
    ),
    (
        "conflicts",
        "Commits that lost a race; the handler reran.",
        |s| s.conflicts,
    ),
    (
        "bookkeeping_conflicts",
        "Bookkeeping writes (token, entry, call result) that lost a race and were retried.",
        |s| s.bookkeeping_conflicts,
    ),
    ("retries", "Failed attempts that were retried.", |s| {
        s.retries
    }),
    ("error_queued", "Messages moved to the error queue.", |s| {
        s.error_queued
    }),
    (
        "sweeper_recoveries",
        "Outbox entries finished by the sweeper.",
        |s| s.swept,
    ),
    (
        "expired_records",
        "Finished records the sweeper deleted after their retention.",
        |s| s.expired,
    ),
];

/// Renders the counters of `endpoints`.
pub fn render(role: &str, endpoints: &[Endpoint]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP order_service_up The process is serving.");
    let _ = writeln!(out, "# TYPE order_service_up gauge");
    let _ = writeln!(out, "order_service_up{{role=\"{role}\"}} 1");
    for (name, help, get) in COUNTERS {
        let _ = writeln!(out, "# HELP exactly_{name}_total {help}");
        let _ = writeln!(out, "# TYPE exactly_{name}_total counter");
        for endpoint in endpoints {
            let value = get(&endpoint.stats().snapshot());
            let _ = writeln!(
                out,
                "exactly_{name}_total{{endpoint=\"{}\"}} {value}",
                endpoint.name()
            );
        }
    }
    if let Some(handle) = recorder() {
        for line in handle.render().lines().filter(|l| facade_only(l)) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// `GET /metrics` and `GET /healthz` for the endpoints of this process.
pub fn routes(role: &'static str, endpoints: Vec<Endpoint>) -> Router {
    // Installed before the endpoints run, so no lag sample is missed.
    let _ = recorder();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = render(role, &endpoints);
                async move {
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatch_lag_and_claim_bytes_come_from_the_recorder_and_nothing_else() {
        assert!(recorder().is_some(), "the recorder installs");
        metrics::histogram!("exactly_outbox_dispatch_lag_seconds").record(0.02);
        metrics::counter!("exactly_claim_check_bytes_total").increment(70_000);
        metrics::counter!("unrelated_total").increment(1);
        let text = render("test", &[]);
        assert!(
            text.contains("exactly_outbox_dispatch_lag_seconds_bucket{le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("exactly_outbox_dispatch_lag_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("exactly_claim_check_bytes_total 70000"),
            "{text}"
        );
        assert!(!text.contains("unrelated_total"), "{text}");
    }
}
