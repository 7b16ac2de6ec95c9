//! The webhook receiver (gateways.md §2.4, §3.4, §4.6): `POST /webhooks/pai` and
//! `POST /webhooks/pay1st`. Each delivery is verified (HMAC-SHA256 compared in constant
//! time), checked for a stale timestamp, deduplicated on its event id in the journal, and
//! acted on only after the transaction was reloaded from the gateway; `200` is returned only
//! after the journal write (PAI counts only 200 as delivered).
//!
//! - PAI: `X-Signature` (configurable; the real name is \[GAP\]) = hex HMAC-SHA256 of the raw
//!   body keyed with the webhook secret; optional `X-Sim-Timestamp` (Unix seconds, \[EXT\]);
//!   dedupe on `deduplicationId`. The documented envelope (`{deduplicationId, type,
//!   metadata: Transaction}`) and the observed one (`{id|eventId, meta: {eventType,
//!   metadata: {transaction}}}`, amount possibly in minor units) are both accepted — the
//!   body is only used to find the transaction; its state comes from the gateway.
//! - Pay1st: `X-SIGNATURE` = hex HMAC-SHA256 with key = base64("user:pass") as text over the
//!   trimmed body; no timestamp or event id is documented (\[GAP\]): the event id is
//!   `reference:status`.
//!
//! A duplicate (same event id) is answered 200 without acting again; a stale timestamp or a
//! bad signature is 401; an unparseable body 400. A correctly signed event of type
//! [`TEST_EVENT_TYPE`] (`emvbridge preflight`'s self-test) is answered 200 without touching the
//! journal or the gateway.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::gateway::sign::{pay1st_webhook_key, verify_hmac_sha256_hex};
use crate::gateway::{Dialect, Gateway, Secret, StatusResult, TxnState};
use crate::journal::{Journal, RelayState, WebhookRecord};
use emvbridge_core::txn::host::Reference;

/// Largest webhook body accepted.
pub const MAX_BODY: usize = 256 * 1024;

/// The `type` of a self-test event (`{"type": "emvbridge.test", …}`, both dialects): verified
/// like any delivery, then answered 200 with no journal write and no gateway call. Neither
/// gateway documents such a type, so a real event can never be mistaken for it.
pub const TEST_EVENT_TYPE: &str = "emvbridge.test";

fn is_test_event(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some(TEST_EVENT_TYPE)
}

/// Receiver settings. Secrets are [`Secret`]s: never printed.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// PAI webhook secret.
    pub pai_secret: Option<Secret>,
    /// PAI signature header name.
    pub pai_header: String,
    /// Pay1st Basic-auth pair whose base64 is the signing key.
    pub pay1st_auth: Option<(Secret, Secret)>,
    /// Largest accepted skew of a signed timestamp, seconds.
    pub max_skew_secs: i64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            pai_secret: None,
            pai_header: "X-Signature".into(),
            pay1st_auth: None,
            max_skew_secs: 300,
        }
    }
}

/// What the handlers share.
pub struct Receiver {
    /// The journal.
    pub journal: Arc<Journal>,
    /// Settings.
    pub config: WebhookConfig,
    /// Gateways to reload transactions from, per dialect.
    pub gateways: Vec<Arc<dyn Gateway>>,
}

impl Receiver {
    fn gateway(&self, d: Dialect) -> Option<&Arc<dyn Gateway>> {
        self.gateways.iter().find(|g| g.dialect() == d)
    }
}

/// The routes.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/webhooks/pai", post(pai))
        .route("/webhooks/pay1st", post(pay1st))
        .route("/metrics", get(crate::telemetry::metrics::handler))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(receiver)
}

/// Serves the receiver on `listener` until the future is dropped.
///
/// # Errors
/// I/O errors of the server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    receiver: Arc<Receiver>,
) -> std::io::Result<()> {
    axum::serve(listener, router(receiver)).await
}

fn reply(status: StatusCode, msg: &str) -> Response {
    crate::telemetry::metrics::webhook_delivery(status.as_u16());
    (
        status,
        Json(json!({"ok": status == StatusCode::OK, "message": msg})),
    )
        .into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    match cur {
        Value::String(s) if !s.is_empty() && s.len() <= 200 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn pai(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &r.config.pai_secret else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "pai webhooks not configured",
        );
    };
    let sig = header(&headers, &r.config.pai_header).unwrap_or_default();
    if !verify_hmac_sha256_hex(secret.expose().as_bytes(), &body, sig) {
        tracing::warn!("pai webhook: bad signature");
        return reply(StatusCode::UNAUTHORIZED, "bad signature");
    }
    if let Some(ts) = header(&headers, "X-Sim-Timestamp") {
        let Ok(ts) = ts.trim().parse::<i64>() else {
            return reply(StatusCode::UNAUTHORIZED, "bad timestamp");
        };
        if (r.journal.now() - ts).abs() > r.config.max_skew_secs {
            tracing::warn!("pai webhook: stale timestamp (replay?)");
            return reply(StatusCode::UNAUTHORIZED, "stale timestamp");
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return reply(StatusCode::BAD_REQUEST, "body is not json");
    };
    if is_test_event(&v) {
        return reply(StatusCode::OK, "test event");
    }
    // Documented envelope first, then the observed one.
    let event_id = text(&v, &["deduplicationId"])
        .or_else(|| text(&v, &["eventId"]))
        .or_else(|| text(&v, &["id"]));
    let event_type = text(&v, &["type"]).or_else(|| text(&v, &["meta", "eventType"]));
    let txn = v
        .get("metadata")
        .filter(|m| m.get("id").is_some())
        .or_else(|| v.pointer("/meta/metadata/transaction"))
        .or_else(|| v.pointer("/metadata/transaction"));
    let gateway_id = txn.and_then(|t| text(t, &["id"]));
    // Our reference: the idempotency key, else the `metadata.reference` our adapter sets
    // (the key may be absent from an event emitted before it was stored).
    let reference = txn
        .and_then(|t| text(t, &["idempotencyKey"]).or_else(|| text(t, &["metadata", "reference"])));
    let Some(event_id) = event_id else {
        return reply(StatusCode::BAD_REQUEST, "no event id");
    };
    act(
        &r,
        Dialect::PaymentsAi,
        &event_id,
        reference,
        gateway_id,
        event_type,
    )
    .await
}

async fn pay1st(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((user, pass)) = &r.config.pay1st_auth else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "pay1st webhooks not configured",
        );
    };
    let key = pay1st_webhook_key(user.expose(), pass.expose());
    let sig = header(&headers, "X-SIGNATURE").unwrap_or_default();
    let Ok(body_text) = std::str::from_utf8(&body) else {
        return reply(StatusCode::BAD_REQUEST, "body is not utf-8");
    };
    if !verify_hmac_sha256_hex(key.as_bytes(), body_text.trim().as_bytes(), sig) {
        tracing::warn!("pay1st webhook: bad signature");
        return reply(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let Ok(v) = serde_json::from_str::<Value>(body_text) else {
        return reply(StatusCode::BAD_REQUEST, "body is not json");
    };
    if is_test_event(&v) {
        return reply(StatusCode::OK, "test event");
    }
    let gateway_id = text(&v, &["reference"]);
    let reference = text(&v, &["partnerReference"]);
    let status = text(&v, &["status"]);
    let Some(gid) = &gateway_id else {
        return reply(StatusCode::BAD_REQUEST, "no reference");
    };
    let event_id = format!("{gid}:{}", status.as_deref().unwrap_or("?"));
    act(
        &r,
        Dialect::Pay1st,
        &event_id,
        reference,
        gateway_id,
        status,
    )
    .await
}

/// One verified event, as the handlers act on it after checking the signature: dedupe on
/// `event_id`, reload the transaction from the gateway, move the journal row by a
/// compare-and-set (never a row still in flight). Returns the HTTP status the gateway gets
/// (200 only after the journal write). Public so that a model of the world can deliver
/// events (duplicated, reordered) without signing them.
pub async fn apply_event(
    r: &Receiver,
    dialect: Dialect,
    event_id: &str,
    reference: Option<String>,
    gateway_id: Option<String>,
    event_type: Option<String>,
) -> StatusCode {
    act(r, dialect, event_id, reference, gateway_id, event_type)
        .await
        .status()
}

/// Dedupe, reload, update the journal; 200 only after the write.
async fn act(
    r: &Receiver,
    dialect: Dialect,
    event_id: &str,
    reference: Option<String>,
    gateway_id: Option<String>,
    event_type: Option<String>,
) -> Response {
    // Find our row: by our reference, else by the gateway id.
    let entry = match (&reference, &gateway_id) {
        (Some(rf), _) => r.journal.get(rf),
        (None, Some(g)) => r.journal.by_gateway_id(g),
        (None, None) => Ok(None),
    };
    let entry = match entry {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "webhook: journal read failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "journal unavailable");
        }
    };
    // Reload before acting: the event's own body may be stale or reordered.
    let reloaded = match (&entry, r.gateway(dialect)) {
        (Some(e), Some(g)) => Some(
            g.status(
                &Reference(e.reference.clone()),
                e.gateway_id.as_deref().or(gateway_id.as_deref()),
            )
            .await,
        ),
        _ => None,
    };
    if let Some(StatusResult::Unknown { .. }) = reloaded {
        // Not recorded: the gateway retries and we try again then.
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot reload the transaction",
        );
    }
    let first = match r.journal.record_webhook(
        event_id,
        dialect,
        entry.as_ref().map(|e| e.reference.as_str()),
        gateway_id.as_deref(),
        event_type.as_deref(),
    ) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "webhook: journal write failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "journal unavailable");
        }
    };
    if first == WebhookRecord::Duplicate {
        return reply(StatusCode::OK, "duplicate");
    }
    let (Some(e), Some(StatusResult::Found(t))) = (entry, reloaded) else {
        return reply(StatusCode::OK, "recorded");
    };
    let rf = Reference(e.reference.clone());
    let note = format!(
        "webhook {}: gateway says {:?}",
        event_type.as_deref().unwrap_or("?"),
        t.state
    )
    .to_ascii_lowercase();
    // Off the async executor; every move a compare-and-set from the state read.
    let res = r
        .journal
        .blocking(move |j| {
            j.note_gateway_id(&rf, &t.gateway_id)?;
            j.note(&rf, &note)?;
            // "Refunded" may be in part: with refunds of our own on record, the whole amount
            // is back only when the journal's own rows say so (see `journal::ops`).
            let partly = t.state == TxnState::Refunded && j.op_totals(&t.gateway_id)?.refunded > 0;
            // A row still in flight (`sending`: the sale is waiting for this very answer) is
            // never moved by a webhook.
            let next = match (e.state, t.state) {
                (RelayState::Forwarding, TxnState::Approved) => Some(RelayState::Forwarded),
                (RelayState::Forwarding, TxnState::Declined) => Some(RelayState::ForwardDeclined),
                (RelayState::Unknown, TxnState::Declined) => Some(RelayState::Declined),
                (
                    RelayState::ReversalDue | RelayState::ReversalFailed | RelayState::Escalated,
                    TxnState::Voided | TxnState::Refunded,
                ) if !partly => Some(RelayState::Reversed),
                // Approved at the gateway but the POS never saw it: the resolver reverses it.
                (RelayState::Unknown | RelayState::NotFound, TxnState::Approved)
                    if !e.pos_approved() =>
                {
                    Some(RelayState::ReversalDue)
                }
                _ => None,
            };
            if let Some(s) = next {
                if !j.transition(&rf, &[e.state], s, "settled by webhook")? {
                    tracing::info!(reference = %e.reference, "webhook: the row moved meanwhile; left as it is");
                }
            }
            Ok(())
        })
        .await;
    match res {
        Ok(()) => reply(StatusCode::OK, "applied"),
        Err(err) => {
            tracing::error!(error = %err, "webhook: journal write failed");
            reply(StatusCode::SERVICE_UNAVAILABLE, "journal unavailable")
        }
    }
}

/// Arguments of `emvbridge webhooks`.
#[derive(clap::Args, Debug)]
pub struct WebhookArgs {
    /// The TOML configuration (listen address, journal, environment, dialect).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Listen address (overrides the configuration).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Journal path (overrides the configuration).
    #[arg(long)]
    pub journal: Option<std::path::PathBuf>,
    /// A sandbox gateway URL to reload transactions from (test setups); otherwise the
    /// gateway is configured from the environment.
    #[arg(long)]
    pub gateway: Option<String>,
}

/// Runs `emvbridge webhooks` until the receiver stops: exit 0. An error is a setup error
/// (exit 2).
///
/// # Errors
/// Bad configuration, a journal or listen address that cannot be opened.
pub async fn run(args: WebhookArgs) -> anyhow::Result<std::process::ExitCode> {
    use crate::config::{FileConfig, Lookup};
    let cfg = FileConfig::effective(args.config.as_deref())?;
    let file = match &cfg.secrets_file {
        Some(p) => crate::config::read_secrets_file(p)?,
        None => Default::default(),
    };
    let lookup = Lookup::new(&cfg, file, true, Default::default());
    let journal = Arc::new(Journal::open(
        &args.journal.clone().unwrap_or_else(|| cfg.journal_path()),
    )?);
    let mut gateways: Vec<Arc<dyn Gateway>> = Vec::new();
    let dialects = [Dialect::PaymentsAi, Dialect::Pay1st];
    for d in dialects {
        let g = match &args.gateway {
            Some(url) => Some(crate::embedded::sandbox_gateway(
                d,
                url.trim_end_matches('/'),
                cfg.http(),
            )?),
            None => cfg.environment().and_then(|env| {
                crate::gateway::connect(
                    crate::gateway::GatewayConfig::from_lookup(d, env, &|n| lookup.get(n)).ok()?,
                    cfg.http(),
                )
                .ok()
            }),
        };
        gateways.extend(g);
    }
    let config = WebhookConfig {
        pai_secret: lookup.get("PAI_WEBHOOK_SECRET").map(Secret::new),
        pai_header: cfg.webhooks.pai_signature_header.clone(),
        pay1st_auth: match (
            lookup.get("PAY1ST_WEBHOOK_USER"),
            lookup.get("PAY1ST_WEBHOOK_PASS"),
        ) {
            (Some(u), Some(p)) => Some((Secret::new(u), Secret::new(p))),
            _ => None,
        },
        max_skew_secs: cfg.webhooks.max_skew_secs,
    };
    let listen: SocketAddr = match args.listen {
        Some(a) => a,
        None => cfg.webhooks.listen.parse()?,
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("{}", json!({"port": listener.local_addr()?.port()}));
    serve(
        listener,
        Arc::new(Receiver {
            journal,
            config,
            gateways,
        }),
    )
    .await?;
    Ok(std::process::ExitCode::SUCCESS)
}
