//! `GET /v1/health` (no token) and `GET /metrics` (no token).
//!
//! Health is a readiness probe by default: `200` with `"status": "ok"` when the reader link is
//! up and, with journaling on, the journal answers; `503` with `"status": "unavailable"` and
//! the reasons otherwise, which a load balancer or an orchestrator understands as "send no
//! payments here". `?probe=live` is the liveness probe: `200` while the process serves HTTP,
//! whatever the reader does (restarting a bridge does not bring a reader back).
//!
//! Without the token the answer says only what a probe needs (states and counts); with it,
//! also where the journal is and what the last resolver pass did.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::{lock, AppState};
use crate::driver::LinkState;
use crate::telemetry::metrics;

/// `?probe=live|ready` (default `ready`).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Probe {
    #[serde(default)]
    probe: Option<String>,
}

/// `GET /v1/health`. A query that does not parse (`?probe=live&probe=ready`) is the default
/// readiness probe: a probe always gets the health answer, never an error.
pub(super) async fn health(
    State(s): State<AppState>,
    query: Result<Query<Probe>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "health: query not understood, answering the readiness probe");
        Probe::default()
    });
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| s.token.verify_header(v.as_bytes()));
    let reader = match s.link.state() {
        LinkState::Connected { .. } => "connected",
        LinkState::Reconnecting { .. } => "reconnecting",
        LinkState::Closed { .. } => "closed",
    };
    let mut not_ready: Vec<&str> = Vec::new();
    if reader != "connected" {
        not_ready.push("reader not connected");
    }
    let relay = match &s.relay {
        None => json!(null),
        Some(r) => {
            let j = r.relay.journal();
            let unresolved = j.unresolved().map(|v| v.len()).map_err(|e| e.to_string());
            let open = j.api_open_count().map_err(|e| e.to_string());
            let error = unresolved.as_ref().err().or(open.as_ref().err()).cloned();
            if let Some(e) = &error {
                tracing::error!(error = %e, "health: the journal does not answer");
                not_ready.push("journal not answering");
            }
            let mut v = json!({
                "store": "journal",
                "journal_ok": error.is_none(),
                "unresolved": unresolved.as_ref().ok(),
                "unresolved_transactions": open.as_ref().ok(),
                "resolver_interval_secs": r.relay.policy.interval_secs,
            });
            if authorized {
                v["journal"] = json!(r.relay.path().display().to_string());
                v["error"] = json!(error);
                v["last_pass"] = json!(lock(&r.last_pass).clone());
            }
            v
        }
    };
    let live = q.probe.as_deref() == Some("live");
    let ready = not_ready.is_empty();
    let (code, status) = match (live, ready) {
        (true, _) | (false, true) => (StatusCode::OK, if ready { "ok" } else { "degraded" }),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (
        code,
        axum::Json(json!({
            "status": status,
            "ready": ready,
            "live": true,
            "reasons": not_ready,
            "reader": reader,
            "version": env!("CARGO_PKG_VERSION"),
            "relay": relay,
        })),
    )
        .into_response()
}

/// `GET /metrics`: the process's metrics, with the journal's gauges read just now.
pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    if let Some(r) = &s.relay {
        let j = r.relay.journal();
        match (j.unresolved(), j.stored(i64::MAX)) {
            (Ok(u), Ok(st)) => metrics::set_journal_gauges(u.len(), st.len()),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "metrics: cannot read the journal's counts");
            }
        }
    }
    metrics::reader_connected(matches!(s.link.state(), LinkState::Connected { .. }));
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode_text(),
    )
        .into_response()
}
