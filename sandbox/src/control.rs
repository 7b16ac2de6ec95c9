//! The control plane under `/_sim` (gateways.md §4.1, §4.6, §4.7): reset, virtual clock, fault
//! rules, ledger and orphan check, lockout reset, webhook deliveries, and finishing a PaymentsAI
//! 3DS challenge or a Pay1st hosted checkout. Loopback callers only, no auth.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock;
use crate::faults::FaultRule;
use crate::shared::{deliver_due, ConnCtl, Shared};
use crate::{pay1st, paymentsai};

type S = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/reset", post(reset))
        .route("/_sim/clock", get(clock_get).post(clock_post))
        .route(
            "/_sim/faults",
            get(faults_get).post(faults_post).delete(faults_delete),
        )
        .route("/_sim/ledger", get(ledger))
        .route("/_sim/assert/no_orphans", post(no_orphans))
        .route("/_sim/unlock", post(unlock))
        .route("/_sim/webhooks", get(webhooks))
        .route("/_sim/webhooks/flush", post(flush))
        .route("/_sim/webhooks/{id}/redeliver", post(redeliver))
        .route("/_sim/pai/3ds", post(pai_3ds))
        .route("/_sim/pay1st/complete", post(pay1st_complete))
        .layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(ctl: Option<Extension<ConnCtl>>, req: Request, next: Next) -> Response {
    match ctl {
        Some(c) if !c.peer.ip().is_loopback() => {
            (StatusCode::FORBIDDEN, "control plane is loopback only").into_response()
        }
        _ => next.run(req).await,
    }
}

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &axum::body::Bytes) -> Result<T, String> {
    if body.is_empty() {
        return serde_json::from_str("{}").map_err(|_| "a json body is required".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

async fn reset(State(s): S) -> Response {
    s.state().reset();
    Json(json!({"ok": true})).into_response()
}

fn clock_json(now: i64) -> Value {
    json!({"now": now, "iso": clock::iso8601(now)})
}

async fn clock_get(State(s): S) -> Response {
    let now = s.state().now();
    Json(clock_json(now)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Advance {
    #[serde(default)]
    advance_secs: i64,
}

async fn clock_post(State(s): S, body: axum::body::Bytes) -> Response {
    let a: Advance = match parse(&body) {
        Ok(a) => a,
        Err(e) => return bad(&e),
    };
    if !(0..=10 * 365 * 86_400).contains(&a.advance_secs) {
        return bad("advanceSecs must be between 0 and ten years");
    }
    s.state().clock.advance(a.advance_secs);
    deliver_due(&s).await;
    let now = s.state().now();
    Json(clock_json(now)).into_response()
}

async fn faults_get(State(s): S) -> Response {
    let rules = s.state().faults.rules().to_vec();
    Json(json!({"rules": rules})).into_response()
}

async fn faults_post(State(s): S, body: axum::body::Bytes) -> Response {
    let rule: FaultRule = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(&format!("invalid fault rule: {e}")),
    };
    if s.state().faults.add(rule) {
        (StatusCode::CREATED, Json(json!({"ok": true}))).into_response()
    } else {
        bad("too many fault rules")
    }
}

async fn faults_delete(State(s): S) -> Response {
    s.state().faults.clear();
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct LedgerQuery {
    client_ref: Option<String>,
}

async fn ledger(State(s): S, Query(q): Query<LedgerQuery>) -> Response {
    let c = s.state();
    let rows: Vec<_> = c
        .ledger
        .all()
        .iter()
        .filter(|t| q.client_ref.is_none() || t.client_ref == q.client_ref)
        .cloned()
        .collect();
    Json(json!({"transactions": rows})).into_response()
}

async fn no_orphans(State(s): S) -> Response {
    let orphans = s.state().ledger.orphans();
    if orphans.is_empty() {
        Json(json!({"ok": true, "orphans": []})).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Json(json!({"ok": false, "orphans": orphans})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct Unlock {
    ip: Option<String>,
}

async fn unlock(State(s): S, body: axum::body::Bytes) -> Response {
    let u: Unlock = match parse(&body) {
        Ok(u) => u,
        Err(e) => return bad(&e),
    };
    s.state().number.unlock(u.ip.as_deref());
    Json(json!({"ok": true})).into_response()
}

async fn webhooks(State(s): S) -> Response {
    let list = s.state().outbox.entries().to_vec();
    Json(json!({"deliveries": list})).into_response()
}

async fn flush(State(s): S) -> Response {
    deliver_due(&s).await;
    webhooks(State(s)).await
}

async fn redeliver(State(s): S, Path(id): Path<u64>) -> Response {
    let ok = {
        let mut c = s.state();
        let now = c.now();
        c.outbox.redeliver(id, now)
    };
    if !ok {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown delivery"})),
        )
            .into_response();
    }
    deliver_due(&s).await;
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThreeDsDone {
    tx_id: String,
    outcome: String,
}

async fn pai_3ds(State(s): S, body: axum::body::Bytes) -> Response {
    let d: ThreeDsDone = match parse(&body) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    let passed = matches!(
        d.outcome.as_str(),
        "approved" | "success" | "passed" | "authenticated"
    );
    let r = paymentsai::complete_3ds(&mut s.state(), &d.tx_id, passed);
    s.wake.notify_one();
    match r {
        Some(v) => Json(json!({"data": v})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no pending 3ds transaction"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Complete {
    reference: String,
    outcome: Option<String>,
    pan: Option<String>,
}

async fn pay1st_complete(State(s): S, body: axum::body::Bytes) -> Response {
    let d: Complete = match parse(&body) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    let r = pay1st::complete(
        &mut s.state(),
        &d.reference,
        d.outcome.as_deref(),
        d.pan.as_deref(),
    );
    s.wake.notify_one();
    match r {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no pending payment"})),
        )
            .into_response(),
    }
}
