//! `GET /v1/health` (no token): the reader link, the version and, with journaling on, the
//! relay (journal, open and unresolved counts, the last background resolver pass).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::{lock, AppState};
use crate::driver::LinkState;

/// `GET /v1/health`.
pub(super) async fn health(State(s): State<AppState>) -> Response {
    let reader = match s.link.state() {
        LinkState::Connected { .. } => "connected",
        LinkState::Reconnecting { .. } => "reconnecting",
        LinkState::Closed { .. } => "closed",
    };
    let relay = match &s.relay {
        None => json!(null),
        Some(r) => {
            let j = r.relay.journal();
            let unresolved = j.unresolved().map(|v| v.len()).map_err(|e| e.to_string());
            let open = j.api_open_count().map_err(|e| e.to_string());
            let last = lock(&r.last_pass).clone();
            json!({
                "journal": r.relay.path().display().to_string(),
                "store": "journal",
                "unresolved": unresolved.as_ref().ok(),
                "unresolved_transactions": open.as_ref().ok(),
                "error": unresolved.err().or(open.err()),
                "resolver_interval_secs": r.relay.policy.interval_secs,
                "last_pass": last,
            })
        }
    };
    axum::Json(json!({
        "status": "ok",
        "reader": reader,
        "version": env!("CARGO_PKG_VERSION"),
        "relay": relay,
    }))
    .into_response()
}
