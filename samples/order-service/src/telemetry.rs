//! Logs to stderr and, with the `otlp` feature and an endpoint, the same
//! `tracing` spans exported over OTLP/HTTP (protobuf) to a collector. The
//! runtime's spans (`exactly.message` with `message_id`, `entity`,
//! `attempts`, and one debug span per protocol step) need nothing else: any
//! `tracing` layer sees them. See docs/observability.md.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use crate::config::{Common, LogFormat};

/// A layer of the subscriber this process installs.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;

/// What has to be flushed before the process exits.
#[derive(Debug)]
#[must_use = "call `shutdown` before exiting, or the last spans are lost"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: logs to stderr in `common.log_format`
    /// (filtered by `RUST_LOG`, default `info`), plus the OTLP exporter if
    /// `common.otlp_endpoint` is set. `role` becomes the resource attribute
    /// `order_service.role`.
    pub fn init(common: &Common, role: &str) -> anyhow::Result<Self> {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let logs: BoxedLayer = match common.log_format {
            LogFormat::Text => logs.with_filter(filter).boxed(),
            LogFormat::Json => logs.json().with_filter(filter).boxed(),
        };
        let mut layers = vec![logs];
        let telemetry = Self::otlp(common, role, &mut layers)?;
        tracing_subscriber::registry().with(layers).init();
        Ok(telemetry)
    }

    /// Adds the OTLP layer when an endpoint is configured.
    #[cfg(feature = "otlp")]
    fn otlp(common: &Common, role: &str, layers: &mut Vec<BoxedLayer>) -> anyhow::Result<Self> {
        let Some(endpoint) = common.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
            return Ok(Self { provider: None });
        };
        let filter = EnvFilter::try_new(&common.otlp_filter)
            .map_err(|e| anyhow::anyhow!("--otlp-filter {:?}: {e}", common.otlp_filter))?;
        let (layer, provider) = otlp::layer(endpoint, role)?;
        layers.push(layer.with_filter(filter).boxed());
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// Without the `otlp` feature an endpoint is only worth a warning: the
    /// service works the same, its spans just go nowhere.
    #[cfg(not(feature = "otlp"))]
    fn otlp(common: &Common, _role: &str, _layers: &mut Vec<BoxedLayer>) -> anyhow::Result<Self> {
        if common
            .otlp_endpoint
            .as_deref()
            .is_some_and(|e| !e.is_empty())
        {
            eprintln!(
                "order-service: warning: an OTLP endpoint is set but OTLP export is not built \
                 in (build with `--features otlp`); spans are not exported"
            );
        }
        Ok(Self {})
    }

    /// Exports the spans still buffered and stops the exporter. Blocks for
    /// up to a few seconds if the collector is slow.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider {
            // The SDK's shutdown blocks on its export thread.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                eprintln!("order-service: flushing spans to the OTLP collector failed: {e}");
            }
        }
    }
}

/// The OTLP exporter (feature `otlp`).
#[cfg(feature = "otlp")]
mod otlp {
    use anyhow::Context as _;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer as _;

    use super::BoxedLayer;

    /// The service name unless `OTEL_SERVICE_NAME` says otherwise.
    const SERVICE_NAME: &str = "order-service";

    /// A `tracing` layer sending spans in batches to `base`/v1/traces, and
    /// the provider to shut down at exit. `base` follows the meaning of
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL, to which
    /// the signal's path is appended.
    pub(super) fn layer(base: &str, role: &str) -> anyhow::Result<(BoxedLayer, SdkTracerProvider)> {
        let url = format!("{}/v1/traces", base.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&url)
            .build()
            .with_context(|| format!("building the OTLP exporter for {url}"))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let resource = resource
            .with_attribute(KeyValue::new("order_service.role", role.to_owned()))
            .build();
        // The batch processor exports from its own thread, so a slow
        // collector never holds up a delivery (`OTEL_BSP_*` tune it).
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(SERVICE_NAME);
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
        Ok((layer, provider))
    }
}
