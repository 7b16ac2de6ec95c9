//! Follow-ups on a transaction the API recorded, at the gateway only (no card): capture of a
//! pre-authorization, void, reverse, and a refund that references its payment.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::bodies::{capture_body, money, record_response};
use super::error::ApiError;
use super::state::{AppState, Shared};
use super::store::{self, ApiStatus, Operation, TxnRecord};
use crate::gateway::{CaptureRequest, OpResult, RefundRequest, VoidRequest};
use emvbridge_core::money::Money;
use emvbridge_core::txn::{
    AuthKind, PosReference, Reference, ReversalReason, ReversalRequest, ReversalResult,
};

/// A refund of `amount` of the approved payment `original_id` at the gateway: a new record
/// (card not present), and the refund among the payment's operations.
pub(super) async fn refund_of(
    s: &Shared,
    original_id: &str,
    amount: Money,
    pos_ref: Option<PosReference>,
) -> Result<Response, ApiError> {
    let original = s.record(original_id)?;
    let gateway_id = refundable(&original, amount)?;
    let reference = crate::terminal::new_reference();
    let result = s
        .gateway
        .refund(&RefundRequest {
            reference: reference.clone(),
            gateway_id,
            amount,
            pos_reference: pos_ref.clone(),
        })
        .await;
    let mut rec = TxnRecord::started(reference.0.clone(), AuthKind::Refund, amount);
    rec.card_present = false;
    rec.reference = pos_ref.map(String::from);
    rec.original_transaction_id = Some(original.id.clone());
    let op_status = match &result {
        OpResult::Done { gateway_id } => {
            rec.status = ApiStatus::Approved;
            rec.approved_amount = Some(amount);
            rec.gateway_id = Some(gateway_id.clone());
            "done"
        }
        OpResult::Refused { code, reason } => {
            rec.status = ApiStatus::Declined;
            rec.decline_code.clone_from(code);
            rec.reason = Some(reason.clone());
            "refused"
        }
        OpResult::NotFound => {
            rec.status = ApiStatus::Declined;
            rec.reason = Some("the gateway has no such transaction".into());
            "refused"
        }
        OpResult::Unknown { reason } => {
            rec.status = ApiStatus::Unresolved;
            rec.reason = Some(reason.clone());
            "unknown"
        }
        OpResult::Unavailable { .. } | OpResult::Unsupported { .. } => {
            return Err(op_error(&result))
        }
    };
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    let mut original = original;
    original.operations.push(Operation {
        op: "refund".into(),
        status: op_status.into(),
        gateway_id: rec.gateway_id.clone(),
        amount: Some(amount),
        transaction_id: Some(rec.id.clone()),
    });
    original.updated_at = store::unix_now();
    s.store.save_transaction(&original);
    Ok(record_response(StatusCode::OK, &rec))
}

/// The gateway id to refund `original` by, when it is an approved payment and `amount` is
/// at most what it captured minus what was refunded already (refunds done, and refunds whose
/// outcome is unknown: they may have been made). An uncaptured pre-authorization is voided,
/// never refunded. The journal checks the same bounds again before anything leaves.
fn refundable(original: &TxnRecord, amount: Money) -> Result<String, ApiError> {
    let gateway_id = original
        .gateway_id
        .clone()
        .filter(|_| original.status.is_approved() && original.kind != AuthKind::Refund);
    let Some(gateway_id) = gateway_id else {
        return Err(ApiError::conflict(
            "not_refundable",
            format!("transaction {} is not an approved payment", original.id),
        ));
    };
    let base = if original.kind == AuthKind::PreAuth {
        let Some(captured) = original.captured_amount else {
            return Err(ApiError::conflict(
                "not_captured",
                format!(
                    "pre-authorization {} is not captured: void it instead",
                    original.id
                ),
            ));
        };
        captured
    } else {
        original.approved_amount.unwrap_or(original.amount)
    };
    let refunded: u64 = original
        .operations
        .iter()
        .filter(|o| o.op == "refund" && matches!(o.status.as_str(), "done" | "unknown"))
        .filter_map(|o| o.amount.map(|m| m.minor()))
        .sum();
    let left = base.minor().saturating_sub(refunded);
    if amount.currency().alpha != base.currency().alpha || amount.minor() > left {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            format!(
                "a refund of {} is at most {left} minor units (captured {base}, refunded or unconfirmed {refunded})",
                original.id
            ),
        ));
    }
    Ok(gateway_id)
}

/// Errors for gateway answers that change nothing.
fn op_error(r: &OpResult) -> ApiError {
    match r {
        OpResult::Done { .. } => ApiError::new(StatusCode::OK, "ok", "done"),
        OpResult::Refused { code, reason } => ApiError::conflict(
            "refused",
            match code {
                Some(c) => format!("the gateway refused ({c}): {reason}"),
                None => format!("the gateway refused: {reason}"),
            },
        ),
        OpResult::NotFound => ApiError::conflict(
            "not_found_at_gateway",
            "the gateway has no such transaction",
        ),
        OpResult::Unavailable { reason } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway_unavailable",
            format!("not processed: {reason}"),
        ),
        OpResult::Unknown { reason } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_unknown",
            format!("the outcome is unknown ({reason}); retry with the same X-Request-Id"),
        ),
        OpResult::Unsupported { reason } => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            format!("the gateway cannot do this: {reason}"),
        ),
    }
}

/// `POST /v1/preauths/{id}/capture`.
pub(super) async fn capture(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = capture_body(&body)?;
    let mut rec = s.record(&id)?;
    if rec.kind != AuthKind::PreAuth {
        return Err(ApiError::conflict(
            "not_a_preauth",
            format!("transaction {id} is not a pre-authorization"),
        ));
    }
    let (Some(gateway_id), true) = (rec.gateway_id.clone(), rec.status.is_approved()) else {
        return Err(ApiError::conflict(
            "not_capturable",
            format!("pre-authorization {id} is not approved"),
        ));
    };
    if rec.captured_amount.is_some() {
        return Err(ApiError::conflict(
            "already_captured",
            format!("pre-authorization {id} is already captured"),
        ));
    }
    let authorized = rec.approved_amount.unwrap_or(rec.amount);
    let amount = match b.amount {
        None => authorized,
        Some(a) => money(
            a,
            b.currency.as_deref().unwrap_or(authorized.currency().alpha),
        )?,
    };
    capturable(authorized, amount)?;
    let r = s
        .gateway
        .capture(&CaptureRequest {
            reference: Reference(format!("{id}-cap")),
            gateway_id,
            authorized,
            amount,
            // The pre-authorization's own POS reference, for a dialect whose capture has a
            // free-text field.
            pos_reference: rec
                .reference
                .clone()
                .and_then(|r| PosReference::new(r).ok()),
        })
        .await;
    let OpResult::Done { gateway_id } = r else {
        return Err(op_error(&r));
    };
    rec.captured_amount = Some(amount);
    rec.operations.push(Operation {
        op: "capture".into(),
        status: "done".into(),
        gateway_id: Some(gateway_id),
        amount: Some(amount),
        transaction_id: None,
    });
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    Ok(record_response(StatusCode::OK, &rec))
}

/// Whether `amount` may be captured of an authorization of `authorized`: the same currency
/// (`422 currency_mismatch`), and at most the authorized amount (`422 invalid_amount`).
fn capturable(authorized: Money, amount: Money) -> Result<(), ApiError> {
    let currency = authorized.currency().alpha;
    if amount.currency().alpha != currency {
        tracing::debug!(
            authorized = currency,
            asked = amount.currency().alpha,
            "capture refused: another currency than the authorization's"
        );
        return Err(ApiError::unprocessable(
            "currency_mismatch",
            format!("the authorization is in {currency}; a capture must be in {currency} too"),
        ));
    }
    if amount.minor() > authorized.minor() {
        tracing::debug!("capture refused: more than the authorized amount");
        return Err(ApiError::unprocessable(
            "invalid_amount",
            format!("the capture is at most the authorized {authorized}"),
        ));
    }
    Ok(())
}

/// `POST /v1/transactions/{id}/void`.
pub(super) async fn void(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut rec = s.record(&id)?;
    let (Some(gateway_id), true) = (rec.gateway_id.clone(), rec.status.is_approved()) else {
        return Err(ApiError::conflict(
            "not_voidable",
            format!("transaction {id} is not an approved payment"),
        ));
    };
    if rec.captured_amount.is_some() || rec.operations.iter().any(|o| o.op == "refund") {
        return Err(ApiError::conflict(
            "not_voidable",
            format!("transaction {id} was captured or refunded: no void after either"),
        ));
    }
    let r = s
        .gateway
        .void(&VoidRequest {
            reference: Reference(id.clone()),
            gateway_id,
        })
        .await;
    let OpResult::Done { gateway_id } = r else {
        return Err(op_error(&r));
    };
    rec.status = ApiStatus::Voided;
    rec.operations.push(Operation {
        op: "void".into(),
        status: "done".into(),
        gateway_id: Some(gateway_id),
        amount: None,
        transaction_id: None,
    });
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    Ok(record_response(StatusCode::OK, &rec))
}

/// `POST /v1/transactions/{id}/reverse`.
pub(super) async fn reverse(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut rec = s.record(&id)?;
    if !(rec.status.is_approved() || rec.status == ApiStatus::Unresolved) {
        return Err(ApiError::conflict(
            "not_reversible",
            format!("transaction {id} has no money to send back"),
        ));
    }
    if rec.kind == AuthKind::PreAuth && rec.captured_amount.is_some() {
        return Err(ApiError::conflict(
            "not_reversible",
            format!("pre-authorization {id} was captured: refund it instead"),
        ));
    }
    let r = s
        .gateway
        .reverse(&ReversalRequest {
            reference: Reference(id.clone()),
            gateway_id: rec.gateway_id.clone(),
            amount: rec.approved_amount.unwrap_or(rec.amount),
            reason: ReversalReason::Cancelled,
        })
        .await;
    let status = match r {
        ReversalResult::Reversed => "done",
        ReversalResult::NotFound => "not_found",
        ReversalResult::Failed { reason } => {
            // Asked for and journaled: the resolver makes it until the gateway confirms.
            rec.status = ApiStatus::Unresolved;
            rec.reason = Some(format!(
                "reversal not confirmed yet ({reason}); the bridge keeps making it"
            ));
            rec.updated_at = store::unix_now();
            s.store.save_transaction(&rec);
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "reversal_pending",
                format!("the reversal is not confirmed yet ({reason}); the bridge keeps making it until the gateway confirms: treat the payment as being reversed"),
            ));
        }
    };
    rec.status = ApiStatus::Reversed;
    rec.operations.push(Operation {
        op: "reverse".into(),
        status: status.into(),
        gateway_id: None,
        amount: None,
        transaction_id: None,
    });
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    Ok(record_response(StatusCode::OK, &rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(minor: u64, currency: &str) -> Money {
        Money::from_minor(minor, currency).unwrap()
    }

    #[test]
    fn a_capture_is_in_the_authorizations_currency_and_at_most_its_amount() {
        assert!(capturable(m(5000, "USD"), m(5000, "USD")).is_ok());
        assert!(capturable(m(5000, "USD"), m(1, "USD")).is_ok());
        let e = capturable(m(5000, "USD"), m(100, "EUR")).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (422, "currency_mismatch"));
        assert_eq!(
            e.message,
            "the authorization is in USD; a capture must be in USD too"
        );
        let e = capturable(m(5000, "USD"), m(5001, "USD")).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (422, "invalid_amount"));
        assert!(
            e.message.contains("at most the authorized"),
            "{}",
            e.message
        );
    }
}
