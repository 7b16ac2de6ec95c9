//! Card transactions on the reader (`POST /v1/sales`, `/v1/preauths`, card-present
//! `/v1/refunds`), one at a time, and the transaction records (`GET /v1/transactions/{id}`,
//! `…/cancel`).
//!
//! A card transaction runs in its own task, so a POS that hangs up does not leave money in an
//! unknown state. The call answers when the transaction ends (200, the record), or after the
//! sale timeout with `202` + `Location` to poll; with `Prefer: respond-async` it answers `202`
//! at once. A second one while one runs gets `409 reader_busy`.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;
use tokio::sync::watch;

use super::bodies::{
    location, money, parse_body, record_response, reference as pos_reference, AmountBody,
    RefundBody,
};
use super::error::ApiError;
use super::follow_ups;
use super::idempotency::Idem;
use super::state::{lock, AppState, Running};
use super::store::{self, record_json, ApiStatus, StoredResponse, TxnRecord};
use emvbridge_core::money::Money;
use emvbridge_core::txn::{AppChoice, AuthKind, PosReference, TxnRequest};

/// Whether the request asks for `Prefer: respond-async`.
fn wants_async(h: &HeaderMap) -> bool {
    h.get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// Starts a card transaction on the reader; answers when it ends, or 202 (see module docs).
async fn card_transaction(
    s: AppState,
    headers: &HeaderMap,
    idem: &Idem,
    kind: AuthKind,
    amount: Money,
    pos_ref: Option<PosReference>,
) -> Result<Response, ApiError> {
    let guard = s.reader.clone().try_lock_owned().map_err(|_| s.busy())?;
    let reference = crate::terminal::new_reference();
    let id = reference.0.clone();
    let mut rec = TxnRecord::started(id.clone(), kind, amount);
    // The gateway's reference and idempotency key stay the bridge's id; the POS's own
    // reference is for the POS (lookup, receipt) and goes in the gateway's free-text field.
    rec.reference = pos_ref.as_ref().map(|r| r.as_str().to_owned());
    s.store.save_transaction(&rec);
    // Provisional answer (replaced by the final one): if the process dies now, the same
    // request id after a restart leads to this transaction, not to a second charge.
    s.store.save_response(
        &idem.id,
        &StoredResponse {
            fingerprint: idem.fingerprint,
            status: StatusCode::ACCEPTED.as_u16(),
            location: Some(location(&id)),
            body: record_json(&rec).to_string(),
        },
    );
    // Store-and-forward is decided per sale from the merchant's limits and what is stored.
    let txn_config = match &s.relay {
        Some(r) => r.relay.txn_config(s.txn_config.clone(), kind, amount),
        None => s.txn_config.clone(),
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    *lock(&s.running) = Some(Running {
        id: id.clone(),
        cancel: cancel_tx,
    });
    s.publish(
        "transaction.started",
        json!({"transaction_id": id, "kind": kind, "amount": amount}),
    );
    let (date, time) = crate::engine::utc_date_time(std::time::SystemTime::now());
    let req = TxnRequest {
        reference,
        kind,
        amount,
        amount_other: 0,
        date,
        time,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
        pos_reference: pos_ref,
    };
    let (done_tx, mut done_rx) = watch::channel::<Option<TxnRecord>>(None);
    let st = s.clone();
    tokio::spawn(async move {
        let mut reader_events = guard;
        let txn_id = rec.id.clone();
        let result = crate::engine::run_transaction_cancellable(
            &st.link,
            &mut reader_events,
            st.gateway.clone(),
            req,
            txn_config,
            cancel_rx,
            |p| {
                let mut data = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
                if let Some(o) = data.as_object_mut() {
                    o.insert("transaction_id".into(), json!(txn_id));
                    o.insert("text".into(), json!(emvbridge_core::prompt::text(p)));
                }
                st.publish("prompt", data);
            },
        )
        .await;
        match result {
            Ok(outcome) => {
                // The journal first: what the POS is told is what the relay settles from.
                if let Some(r) = &st.relay {
                    if let Err(e) = r.relay.finish(&outcome) {
                        tracing::error!(error = %e, transaction = %rec.id, "outcome not journaled");
                    }
                }
                rec.finish(&outcome);
            }
            Err(e) => {
                rec.status = ApiStatus::Failed;
                rec.reason = Some(e.to_string());
                // An authorization the journal saw and did not settle may have moved money.
                let open = st
                    .relay
                    .as_ref()
                    .and_then(|r| r.relay.journal().get(&rec.id).ok().flatten());
                if open.is_some_and(|e| {
                    e.state.needs_resolution()
                        || (e.state == crate::journal::RelayState::Approved && !e.pos_approved())
                }) {
                    rec.status = ApiStatus::Unresolved;
                    rec.reason = Some(format!(
                        "{e}; the authorization is being resolved (treat as not paid)"
                    ));
                }
                rec.updated_at = store::unix_now();
            }
        }
        st.store.save_transaction(&rec);
        {
            let mut running = lock(&st.running);
            if running.as_ref().is_some_and(|r| r.id == rec.id) {
                *running = None;
            }
        }
        drop(reader_events);
        st.publish(
            "transaction.finished",
            json!({"transaction_id": rec.id, "status": rec.status, "transaction": record_json(&rec)}),
        );
        let _ = done_tx.send(Some(rec));
    });
    let started = s.record(&id)?;
    if wants_async(headers) {
        let mut r = record_response(StatusCode::ACCEPTED, &started);
        r.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
        return Ok(r);
    }
    let finished = tokio::time::timeout(s.sale_timeout, done_rx.wait_for(Option::is_some)).await;
    match finished {
        Ok(Ok(rec)) => match rec.as_ref() {
            Some(rec) => Ok(record_response(StatusCode::OK, rec)),
            None => Ok(record_response(StatusCode::ACCEPTED, &started)),
        },
        _ => Ok(record_response(StatusCode::ACCEPTED, &s.record(&id)?)),
    }
}

/// `POST /v1/sales`.
pub(super) async fn sale(
    State(s): State<AppState>,
    Extension(idem): Extension<Idem>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: AmountBody = parse_body(&body)?;
    let pos_ref = pos_reference(b.reference)?;
    let amount = money(b.amount, &b.currency)?;
    card_transaction(s, &headers, &idem, AuthKind::Sale, amount, pos_ref).await
}

/// `POST /v1/preauths`.
pub(super) async fn preauth(
    State(s): State<AppState>,
    Extension(idem): Extension<Idem>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: AmountBody = parse_body(&body)?;
    let pos_ref = pos_reference(b.reference)?;
    let amount = money(b.amount, &b.currency)?;
    card_transaction(s, &headers, &idem, AuthKind::PreAuth, amount, pos_ref).await
}

/// `POST /v1/refunds`: card-present on the reader, or, with a `transaction_id`, referenced
/// at the gateway ([`follow_ups::refund_of`]).
pub(super) async fn refund(
    State(s): State<AppState>,
    Extension(idem): Extension<Idem>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: RefundBody = parse_body(&body)?;
    let pos_ref = pos_reference(b.reference)?;
    let amount = money(b.amount, &b.currency)?;
    match b.transaction_id {
        None => card_transaction(s, &headers, &idem, AuthKind::Refund, amount, pos_ref).await,
        Some(original_id) => follow_ups::refund_of(&s, &original_id, amount, pos_ref).await,
    }
}

/// Most records one `GET /v1/transactions` page holds, and the default.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 25;

/// The query of `GET /v1/transactions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    reference: Option<String>,
    /// Unix seconds or RFC 3339.
    since: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The cursor after `r`: opaque to the POS (base64url of `created_at:id`).
fn cursor_of(r: &TxnRecord) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", r.created_at, r.id))
}

fn parse_cursor(c: &str) -> Option<(u64, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (t, id) = raw.split_once(':')?;
    Some((t.parse().ok()?, id.to_owned()))
}

fn parse_since(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// `GET /v1/transactions?reference=…&since=…&status=…&limit=…&cursor=…`: records newest
/// first, `{"data": [...], "next_cursor": "…" | null}`. A till that lost its state after a
/// crash finds its payment by its own reference here.
pub(super) async fn list(
    State(s): State<AppState>,
    query: Result<axum::extract::Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(p) = query.map_err(|e| {
        ApiError::bad_request("invalid_query", super::error::clip(&e.body_text(), 200))
    })?;
    let bad = |what: &str| ApiError::bad_request("invalid_query", format!("{what} is not valid"));
    let limit = match p.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return Err(bad("limit (1-100)")),
    };
    let status = match p.status {
        None => None,
        Some(st) => {
            Some(serde_json::from_value::<ApiStatus>(json!(st)).map_err(|_| bad("status"))?)
        }
    };
    let since = match p.since.as_deref() {
        None => None,
        Some(t) => Some(parse_since(t).ok_or_else(|| bad("since (Unix seconds or RFC 3339)"))?),
    };
    let after = match p.cursor.as_deref() {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| bad("cursor"))?),
    };
    let q = store::ListQuery {
        reference: pos_reference(p.reference)?.map(String::from),
        since,
        status,
        limit: limit + 1,
        after,
    };
    let mut rows = s.store.transactions(&q);
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    });
    let data: Vec<serde_json::Value> = rows.iter().map(record_json).collect();
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        json!({"data": data, "next_cursor": next.flatten()}),
    )))
}

/// `GET /v1/transactions/{id}`.
pub(super) async fn transaction(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(record_response(StatusCode::OK, &s.record(&id)?))
}

/// `POST /v1/transactions/{id}/cancel`: asks the running card transaction to stop.
pub(super) async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = s.record(&id)?;
    let sent = {
        let running = lock(&s.running);
        match running.as_ref() {
            Some(r) if r.id == id => r.cancel.send(true).is_ok(),
            _ => false,
        }
    };
    if !sent {
        return Err(ApiError::conflict(
            "not_running",
            format!("transaction {id} is not running"),
        ));
    }
    // The outcome (cancelled, or reversed if the host had approved) comes as the
    // transaction's end: poll it or watch the events.
    Ok(record_response(StatusCode::ACCEPTED, &rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_respond_async_is_recognised() {
        let mut h = HeaderMap::new();
        assert!(!wants_async(&h));
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, respond-async"),
        );
        assert!(wants_async(&h));
        h.insert("prefer", HeaderValue::from_static("respond-asyncx"));
        assert!(!wants_async(&h));
    }

    #[test]
    fn cursors_and_since_parse() {
        let mut r = TxnRecord::started(
            "emvb-a:b".into(),
            AuthKind::Sale,
            Money::from_minor(1, "USD").unwrap(),
        );
        r.created_at = 1_765_000_000;
        assert_eq!(
            parse_cursor(&cursor_of(&r)),
            Some((1_765_000_000, "emvb-a:b".into()))
        );
        assert_eq!(parse_cursor("!!"), None);
        assert_eq!(parse_since("1765000000"), Some(1_765_000_000));
        assert_eq!(parse_since("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_since("yesterday"), None);
    }
}
