//! What leaves the process for the people who run it: logs ([`logging`]: `tracing` events to
//! standard error or a file, text or JSON lines), numbers ([`metrics`]: one Prometheus
//! registry scraped at `GET /metrics`), spans for a collector ([`traces`]: OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and the service manager's view ([`service`]: the
//! graceful-stop signals and `sd_notify`).
//!
//! Other modules only call into these (`metrics::frames_received(n)`); nothing here knows of
//! transactions beyond labels, and `emvbridge_core` stays free of it (metrics are recorded
//! at the edges, in this crate).

pub mod logging;
pub mod metrics;
pub mod service;
pub mod traces;

/// The span of one card transaction: every event of it (reader steps, the gateway call,
/// journal writes) carries the bridge's `reference`, the `kind` and, in the lab, the `lane`.
/// The amount and currency are not card data; nothing of the card is a field.
pub fn txn_span(req: &emvbridge_core::txn::TxnRequest) -> tracing::Span {
    let span = tracing::info_span!(
        "transaction",
        reference = %req.reference,
        kind = ?req.kind,
        amount_minor = req.amount.minor(),
        currency = req.amount.currency().alpha,
        lane = tracing::field::Empty,
    );
    if let Some(lane) = metrics::current_lane() {
        span.record("lane", lane);
    }
    span
}
