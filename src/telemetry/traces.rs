//! OpenTelemetry traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the `tracing` spans
//! (a transaction, its gateway calls, journal writes) are exported over OTLP/HTTP with JSON
//! bodies (`opentelemetry-otlp`; the endpoint gets `/v1/traces` appended, or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as is). Without it nothing is set up and
//! nothing is sent. Spans are batched by the SDK's own thread and flushed by [`shutdown`] at
//! exit.
//!
//! Span fields are the same as in the logs: references, kinds, amounts, lanes; never card
//! data.

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Whether OTLP export is asked for.
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
}

/// The OpenTelemetry layer for the subscriber, when [`configured`]. Must be called outside
/// the tokio runtime (the exporter's HTTP client is a blocking one, on the SDK's thread).
pub(super) fn layer<S>() -> Option<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use tracing_subscriber::Layer;
    if !configured() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            // The subscriber that would log this is not installed yet.
            eprintln!("warning: OTLP traces off: {e}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("emvbridge")
                .build(),
        )
        .build();
    let tracer = provider.tracer("emvbridge");
    if let Ok(mut p) = PROVIDER.lock() {
        *p = Some(provider);
    }
    Some(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
}

/// Flushes and stops the exporter (at exit, outside the runtime); nothing when traces are off.
pub fn shutdown() {
    let provider = PROVIDER.lock().ok().and_then(|mut p| p.take());
    if let Some(p) = provider {
        if let Err(e) = p.shutdown() {
            eprintln!("warning: OTLP traces not all exported: {e}");
        }
    }
}
