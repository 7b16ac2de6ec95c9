//! Shared helpers for the gateway fuzz targets: turn fuzz bytes into an exchange, and the
//! invariants every classifier must keep whatever the gateway sends back.
#![allow(dead_code)]

use bytes::Bytes;
use emvbridge::gateway::{Exchange, HttpReply, OpResult, StatusResult, TransportError};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference,
};

/// Status codes a gateway plausibly sends; the fuzzer can also pick any u16.
const STATUSES: [u16; 12] = [200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 503];

/// Bytes → (selector for which classifier, exchange). Layout: `[sel, st_hi, st_lo, body…]`.
pub fn exchange(data: &[u8]) -> (u8, Exchange) {
    let sel = data.first().copied().unwrap_or(0);
    let hi = data.get(1).copied().unwrap_or(0);
    let lo = data.get(2).copied().unwrap_or(0);
    let body = data.get(3..).unwrap_or(&[]);
    let ex = match hi {
        // Mostly plausible statuses, sometimes anything, sometimes a transport failure.
        0..=0xDF => Ok(HttpReply {
            status: STATUSES[lo as usize % STATUSES.len()],
            body: Bytes::copy_from_slice(body),
        }),
        0xE0..=0xF7 => Ok(HttpReply {
            status: u16::from_be_bytes([hi & 0x03, lo]),
            body: Bytes::copy_from_slice(body),
        }),
        0xF8..=0xFB => Err(TransportError::NotSent(
            String::from_utf8_lossy(body).into(),
        )),
        _ => Err(TransportError::NoReply(
            String::from_utf8_lossy(body).into(),
        )),
    };
    (sel, ex)
}

/// The sale the replies answer: 12.34 USD.
pub fn request() -> AuthorizationRequest {
    AuthorizationRequest {
        reference: Reference("EB-FUZZ-0001".into()),
        kind: AuthKind::Sale,
        amount: Money::from_minor(1234, "USD").expect("USD"),
        amount_other: Money::from_minor(0, "USD").expect("USD"),
        entry_mode: EntryMode::Chip,
        icc_data: Bytes::new(),
        masked_pan: "476173******0010".into(),
        last4: Some("0010".into()),
        brand: Some("visa".into()),
        original_gateway_id: None,
        online_pin: None,
        pos_reference: None,
    }
}

/// Reasons and codes are short (they go to logs and to the POS): never the body echoed.
fn short(s: &str) {
    assert!(s.len() <= 600, "reason of {} bytes", s.len());
}

/// A reply that is a success HTTP status with a JSON body. `IgnoredAny`, not `Value`: like
/// the adapters' typed parses, it does not check UTF-8 inside strings it skips (a reply with
/// an invalid byte in an unknown field is still a well-formed approval; the first long run
/// flagged exactly that as a false "approval from garbage").
fn json_success(ex: &Exchange) -> bool {
    match ex {
        Ok(r) => {
            (200..300).contains(&r.status)
                && serde_json::from_slice::<serde::de::IgnoredAny>(&r.body).is_ok()
        }
        Err(_) => false,
    }
}

/// An approval only from a 2xx JSON reply, with an id, in the sale's currency, for no more
/// than was asked and more than nothing.
pub fn check_auth(ex: &Exchange, req: &AuthorizationRequest, r: &AuthorizationResult) {
    match r {
        AuthorizationResult::Approved {
            gateway_id,
            approved_amount,
            ..
        } => {
            assert!(json_success(ex), "approval from garbage: {r:?}");
            assert!(!gateway_id.is_empty(), "approval without a gateway id");
            assert_eq!(
                approved_amount.currency().alpha,
                req.amount.currency().alpha
            );
            assert!(approved_amount.minor() > 0);
            assert!(approved_amount.minor() <= req.amount.minor());
        }
        AuthorizationResult::Declined { code, reason, .. } => {
            short(reason);
            if let Some(c) = code {
                short(c);
            }
        }
        AuthorizationResult::Unavailable { reason } | AuthorizationResult::Unknown { reason } => {
            // Transport reasons carry the edge's own text; only bound the gateway's.
            if ex.is_ok() {
                short(reason)
            }
        }
    }
}

/// A capture/void/refund is done only on a 2xx JSON reply, with an id.
pub fn check_op(ex: &Exchange, r: &OpResult) {
    match r {
        OpResult::Done { gateway_id } => {
            assert!(json_success(ex), "op done from garbage: {r:?}");
            assert!(!gateway_id.is_empty(), "op done without a gateway id");
        }
        OpResult::Refused { reason, .. }
        | OpResult::Unavailable { reason }
        | OpResult::Unknown { reason } => {
            if ex.is_ok() {
                short(reason)
            }
        }
        _ => {}
    }
}

/// A lookup finds a transaction only on a 2xx JSON reply.
pub fn check_status(ex: &Exchange, r: &StatusResult) {
    if let StatusResult::Found(s) = r {
        assert!(json_success(ex), "found from garbage: {r:?}");
        assert!(!s.gateway_id.is_empty(), "found without a gateway id");
    }
}
