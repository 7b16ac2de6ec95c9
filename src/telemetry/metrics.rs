//! The process's metrics: one Prometheus registry (`prometheus-client`), encoded in the
//! OpenMetrics text format at `GET /metrics` (`serve`, and `lab --metrics-listen`), which
//! Prometheus scrapes natively.
//!
//! Recording is a plain function call at the edge where the thing happens
//! (`metrics::frames_received(n)` in the reader link, `metrics::authorization(..)` in the
//! engine); the registry is global, so no handle is threaded through. In the lab many lanes run
//! in one process: a lane's tasks run inside [`in_lane`] (spawned ones through
//! [`inherit_lane`]) and every series then carries a `lane` label; `serve` has none.
//!
//! Gauges that mirror the journal (unresolved, stored for forward) are set when scraped, from
//! the journal itself ([`set_journal_gauges`]), so they cannot drift from the truth.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use futures::future::Either;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use emvbridge_core::txn::{AuthKind, AuthorizationResult, Outcome, ReversalResult};

/// The content type of [`encode_text`]'s output: OpenMetrics 1.0 text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A series' labels: a few fixed names, values from a closed set (plus the lane number).
type Labels = Vec<(&'static str, String)>;

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

tokio::task_local! {
    static LANE: u32;
}

/// Every metric of the process.
struct Metrics {
    registry: Registry,
    transactions: Family<Labels, Counter>,
    authorization_seconds: Histograms,
    reversal_seconds: Histograms,
    gateway_errors: Family<Labels, Counter>,
    reader_connected: Family<Labels, Gauge>,
    frames: Family<Labels, Counter>,
    corrupt_frames: Family<Labels, Counter>,
    reconnects: Family<Labels, Counter>,
    journal_write_seconds: Histograms,
    unresolved: Gauge,
    stored_for_forward: Gauge,
    webhook_deliveries: Family<Labels, Counter>,
    api_requests: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 5 ms … 41 s: a gateway answers in tens of milliseconds to tens of seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn journal_histogram() -> Histogram {
    // 50 µs … 0.8 s: an fsync'd SQLite write on a till's flash.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("emvbridge");
        let m = Metrics {
            transactions: Family::default(),
            authorization_seconds: Family::new_with_constructor(latency_histogram),
            reversal_seconds: Family::new_with_constructor(latency_histogram),
            gateway_errors: Family::default(),
            reader_connected: Family::default(),
            frames: Family::default(),
            corrupt_frames: Family::default(),
            reconnects: Family::default(),
            journal_write_seconds: Family::new_with_constructor(journal_histogram),
            unresolved: Gauge::default(),
            stored_for_forward: Gauge::default(),
            webhook_deliveries: Family::default(),
            api_requests: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "transactions",
            "Card transactions that ended, by kind and outcome",
            m.transactions.clone(),
        );
        registry.register(
            "authorization_duration_seconds",
            "Time from sending an authorization to the gateway's answer",
            m.authorization_seconds.clone(),
        );
        registry.register(
            "reversal_duration_seconds",
            "Time from sending a reversal to the gateway's answer",
            m.reversal_seconds.clone(),
        );
        registry.register(
            "gateway_errors",
            "Gateway HTTP exchanges without a usable answer, by class (timeout, connection_lost, \
             not_sent_connect_failed, http_5xx, ...)",
            m.gateway_errors.clone(),
        );
        registry.register(
            "reader_connected",
            "1 while the reader link is up and re-synchronised, else 0",
            m.reader_connected.clone(),
        );
        registry.register(
            "reader_frames_received",
            "Frames received from the reader",
            m.frames.clone(),
        );
        registry.register(
            "reader_corrupt_frames",
            "Corruption reports from the reader link's deframer (bad LRC, garbage, broken chains)",
            m.corrupt_frames.clone(),
        );
        registry.register(
            "reader_reconnects",
            "Times the reader link was lost and re-opened",
            m.reconnects.clone(),
        );
        registry.register(
            "journal_write_duration_seconds",
            "Time of one durable journal write",
            m.journal_write_seconds.clone(),
        );
        registry.register(
            "journal_unresolved",
            "Journal rows whose outcome is not settled (unknown, reversal due, escalated)",
            m.unresolved.clone(),
        );
        registry.register(
            "journal_stored_for_forward",
            "Sales approved offline and waiting to be forwarded",
            m.stored_for_forward.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by the HTTP status answered",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "api_requests",
            "Requests the local POS API answered, by route template, method and HTTP status",
            m.api_requests.clone(),
        );
        Metrics { registry, ..m }
    }
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Runs `fut` as lane `lane` of the lab: what it records carries `lane="<lane>"`.
pub async fn in_lane<F: Future>(lane: u32, fut: F) -> F::Output {
    LANE.scope(lane, fut).await
}

/// `fut` in the caller's lane, if any: for tasks spawned on behalf of a lane (task-locals do
/// not cross `tokio::spawn` by themselves).
pub fn inherit_lane<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    match LANE.try_with(|l| *l) {
        Ok(l) => Either::Left(LANE.scope(l, fut)),
        Err(_) => Either::Right(fut),
    }
}

/// The lab lane the current task runs for, if any.
pub fn current_lane() -> Option<u32> {
    LANE.try_with(|l| *l).ok()
}

/// The labels `extra` plus the current lane, if any.
fn labels(extra: &[(&'static str, &str)]) -> Labels {
    let mut v: Labels = extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    if let Ok(l) = LANE.try_with(|l| *l) {
        v.push(("lane", l.to_string()));
    }
    v
}

fn kind_name(k: AuthKind) -> &'static str {
    match k {
        AuthKind::Sale => "sale",
        AuthKind::PreAuth => "preauth",
        AuthKind::Refund => "refund",
    }
}

/// A transaction ended with `outcome`.
pub fn transaction_finished(outcome: &Outcome) {
    let status = serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".into());
    metrics()
        .transactions
        .get_or_create(&labels(&[
            ("kind", kind_name(outcome.kind)),
            ("outcome", &status),
        ]))
        .inc();
}

/// An authorization answered after `took` (`result` as the engine got it, after the relay's
/// own lookups).
pub fn authorization(took: Duration, result: &AuthorizationResult) {
    let outcome = match result {
        AuthorizationResult::Approved { .. } => "approved",
        AuthorizationResult::Declined { .. } => "declined",
        AuthorizationResult::Unavailable { .. } => "unavailable",
        AuthorizationResult::Unknown { .. } => "unknown",
    };
    metrics()
        .authorization_seconds
        .get_or_create(&labels(&[("result", outcome)]))
        .observe(took.as_secs_f64());
}

/// A reversal answered after `took`.
pub fn reversal(took: Duration, result: &ReversalResult) {
    let outcome = match result {
        ReversalResult::Reversed => "reversed",
        ReversalResult::NotFound => "not_found",
        ReversalResult::Failed { .. } => "failed",
    };
    metrics()
        .reversal_seconds
        .get_or_create(&labels(&[("result", outcome)]))
        .observe(took.as_secs_f64());
}

/// One HTTP exchange with a gateway ended; a failed one is counted by class: the transport's
/// kind of failure (`timeout`, `connect_failed`, `connection_lost`, …, prefixed `not_sent_`
/// when the request certainly never left) or `http_5xx`.
pub fn gateway_exchange(ex: &emvbridge_core::gateway::Exchange) {
    use emvbridge_core::gateway::TransportError;
    let class = match ex {
        Ok(r) if r.status >= 500 => "http_5xx".to_owned(),
        Ok(_) => return,
        Err(TransportError::NotSent(k)) => format!("not_sent_{}", k.replace(' ', "_")),
        Err(TransportError::NoReply(k)) => k.replace(' ', "_"),
    };
    metrics()
        .gateway_errors
        .get_or_create(&labels(&[("class", &class)]))
        .inc();
}

/// The reader link came up (`true`) or went down.
pub fn reader_connected(up: bool) {
    metrics()
        .reader_connected
        .get_or_create(&labels(&[]))
        .set(i64::from(up));
}

/// `n` frames arrived from the reader.
pub fn frames_received(n: u64) {
    metrics().frames.get_or_create(&labels(&[])).inc_by(n);
}

/// The deframer reported corruption.
pub fn corrupt_frame() {
    metrics().corrupt_frames.get_or_create(&labels(&[])).inc();
}

/// The reader link was lost and is being re-opened.
pub fn reconnect() {
    metrics().reconnects.get_or_create(&labels(&[])).inc();
}

/// Runs one durable journal write (a commit) and records how long it took.
pub fn journal_write<T, E>(write: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let _span = tracing::info_span!("journal.write").entered();
    let start = std::time::Instant::now();
    let r = write();
    metrics()
        .journal_write_seconds
        .get_or_create(&labels(&[]))
        .observe(start.elapsed().as_secs_f64());
    r
}

/// The webhook receiver answered a delivery with `status` (200 accepted or a duplicate,
/// 4xx refused, 503 to be retried by the gateway).
pub fn webhook_delivery(status: u16) {
    metrics()
        .webhook_deliveries
        .get_or_create(&labels(&[("code", &status.to_string())]))
        .inc();
}

/// The local API answered a request. `route` is the route's template (`/v1/transactions/{id}`)
/// or `unmatched`, and `method` one of the standard methods or `other`, so what a client sends
/// cannot grow the number of series.
pub fn api_request(route: &str, method: &str, status: u16) {
    metrics()
        .api_requests
        .get_or_create(&labels(&[
            ("route", route),
            ("method", method),
            ("code", &status.to_string()),
        ]))
        .inc();
}

/// The journal's unresolved and stored-for-forward counts, as read just now.
pub fn set_journal_gauges(unresolved: usize, stored: usize) {
    let m = metrics();
    m.unresolved
        .set(i64::try_from(unresolved).unwrap_or(i64::MAX));
    m.stored_for_forward
        .set(i64::try_from(stored).unwrap_or(i64::MAX));
}

/// `GET /metrics` where no more is needed than the registry (the webhook receiver, the lab).
pub async fn handler() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        encode_text(),
    )
        .into_response()
}

/// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn encode_text() -> String {
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &metrics().registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lanes_label_what_they_record() {
        frames_received(1);
        in_lane(7, async {
            frames_received(1);
            inherit_lane(async { corrupt_frame() }).await;
        })
        .await;
        let text = encode_text();
        assert!(
            text.contains("emvbridge_reader_frames_received_total{lane=\"7\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("emvbridge_reader_corrupt_frames_total{lane=\"7\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE emvbridge_reader_frames_received counter"),
            "{text}"
        );
    }
}
