//! `GET /metrics` in the Prometheus text format: each endpoint's counters
//! from `Endpoint::stats().snapshot()`, for the endpoints of this process.
//!
//! The names match the ones the runtime reports through the `metrics`
//! facade. Two of those have no in-memory copy and are not here: the
//! `exactly_outbox_dispatch_lag_seconds` histogram and
//! `exactly_claim_check_bytes_total`; a `metrics` recorder (see
//! docs/observability.md) would export them and could replace this file.

use std::fmt::Write as _;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use exactly::{Endpoint, StatsSnapshot};

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
    out
}

/// `GET /metrics` and `GET /healthz` for the endpoints of this process.
pub fn routes(role: &'static str, endpoints: Vec<Endpoint>) -> Router {
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
