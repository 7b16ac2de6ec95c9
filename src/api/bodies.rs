//! Request bodies and their validation, and the transaction record as a response body.
//!
//! Bodies are JSON with no unknown fields and at most [`MAX_BODY`] bytes; amounts are
//! integer minor units with an ISO 4217 currency. The handlers run these checks before they
//! touch any state; [`validate_body`] runs the same checks for the fuzz targets.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{clip, ApiError};
use super::store::{record_json, TxnRecord};
use emvbridge_core::money::Money;
use emvbridge_core::txn::{PosReference, PosReferenceError};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest text for `POST /v1/device/display`.
pub const MAX_DISPLAY_TEXT: usize = 64;
/// Longest point-of-sale reference (Adyen's `SaleTransactionID` and triPOS's reference fit;
/// within every gateway's free-text field: [`PosReference::MAX_LEN`]).
pub const MAX_REFERENCE: usize = PosReference::MAX_LEN;

/// `body` as JSON `T`; `400 invalid_body` when it is empty, is not a JSON object or does
/// not parse. The object check comes first because serde's derived structs also accept a
/// JSON array of their fields in order (`[100, "USD"]`), which no client means as a sale.
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a JSON body is required",
        ));
    };
    if *first != b'{' {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", clip(&e.to_string(), 200)))
}

/// An amount in integer minor units with its ISO 4217 currency.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AmountBody {
    /// Minor units (`1234` is 12.34 USD).
    pub(super) amount: u64,
    /// ISO 4217 alphabetic or numeric code.
    pub(super) currency: String,
    /// The point of sale's own reference (order or ticket number).
    #[serde(default)]
    pub(super) reference: Option<String>,
}

/// A point-of-sale reference: 1 to [`MAX_REFERENCE`] printable ASCII characters (spaces
/// inside allowed), else `422 invalid_reference` ([`PosReference`]'s rules). It is printed on
/// the receipt, used as a lookup key and sent whole in the gateway's free-text field, so
/// control characters and other text encodings are refused, never cut or replaced.
pub(super) fn reference(r: Option<String>) -> Result<Option<PosReference>, ApiError> {
    match r.map(PosReference::new) {
        None => Ok(None),
        Some(Ok(r)) => Ok(Some(r)),
        Some(Err(e @ PosReferenceError::CardNumber)) => {
            tracing::warn!("request refused: its pos reference looks like a card number");
            Err(ApiError::unprocessable("invalid_reference", e.to_string()))
        }
        Some(Err(_)) => Err(ApiError::unprocessable(
            "invalid_reference",
            format!(
                "reference must be 1-{MAX_REFERENCE} printable ASCII characters, without leading or trailing spaces"
            ),
        )),
    }
}

/// A positive amount in a known currency; `422 invalid_amount` or `422 invalid_currency`.
pub(super) fn money(amount: u64, currency: &str) -> Result<Money, ApiError> {
    if amount == 0 {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            "amount must be a positive integer in minor units",
        ));
    }
    Money::from_minor(amount, currency).map_err(|e| match e {
        emvbridge_core::money::MoneyError::UnknownCurrency(_) => ApiError::unprocessable(
            "invalid_currency",
            format!("{} is not an ISO 4217 currency", clip(currency, 8)),
        ),
        other => ApiError::unprocessable("invalid_amount", other.to_string()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefundBody {
    pub(super) amount: u64,
    pub(super) currency: String,
    /// The transaction to refund; without it, the refund is card-present on the reader.
    #[serde(default)]
    pub(super) transaction_id: Option<String>,
    /// The point of sale's own reference.
    #[serde(default)]
    pub(super) reference: Option<String>,
}

/// A capture: without an amount, the authorized amount; without a currency, the
/// authorization's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaptureBody {
    #[serde(default)]
    pub(super) amount: Option<u64>,
    #[serde(default)]
    pub(super) currency: Option<String>,
}

/// The capture body; an empty body is a capture of the authorized amount.
pub(super) fn capture_body(body: &[u8]) -> Result<CaptureBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(CaptureBody::default())
    } else {
        parse_body(body)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisplayBody {
    text: String,
}

/// The text of a display body: 1 to [`MAX_DISPLAY_TEXT`] printable ASCII characters, else
/// `422 invalid_text`.
pub(super) fn display_text(body: &[u8]) -> Result<String, ApiError> {
    let b: DisplayBody = parse_body(body)?;
    if b.text.is_empty()
        || b.text.len() > MAX_DISPLAY_TEXT
        || !b.text.bytes().all(|c| c == b' ' || c.is_ascii_graphic())
    {
        return Err(ApiError::unprocessable(
            "invalid_text",
            format!("text must be 1-{MAX_DISPLAY_TEXT} printable ASCII characters"),
        ));
    }
    Ok(b.text)
}

/// The body validation the handlers run before touching any state (sale/preauth: `0`,
/// refund: `1`, capture: `2`, display: `3`), for the fuzz targets (fuzz/api_body). Returns the
/// validated amount, if the body has one, or the HTTP status, error code and message. Not API.
#[doc(hidden)]
pub fn validate_body(route: u8, body: &[u8]) -> Result<Option<Money>, (u16, &'static str, String)> {
    let err = |e: ApiError| (e.status.as_u16(), e.code, e.message);
    match route % 4 {
        0 => {
            let b: AmountBody = parse_body(body).map_err(err)?;
            reference(b.reference).map_err(err)?;
            money(b.amount, &b.currency).map(Some).map_err(err)
        }
        1 => {
            let b: RefundBody = parse_body(body).map_err(err)?;
            reference(b.reference).map_err(err)?;
            money(b.amount, &b.currency).map(Some).map_err(err)
        }
        2 => {
            let b = capture_body(body).map_err(err)?;
            match b.amount {
                None => Ok(None),
                Some(a) => money(a, b.currency.as_deref().unwrap_or("USD"))
                    .map(Some)
                    .map_err(err),
            }
        }
        _ => display_text(body).map(|_| None).map_err(err),
    }
}

/// Whether the `Content-Type` is JSON (`application/json`, parameters such as `charset`
/// allowed, or a `+json` type). Requests with a body must be.
pub(super) fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// Where a transaction record is read: `GET /v1/transactions/{id}`.
pub(super) fn location(id: &str) -> String {
    format!("/v1/transactions/{id}")
}

/// A transaction record as the answer, with its `Location`.
pub(super) fn record_response(status: StatusCode, rec: &TxnRecord) -> Response {
    let mut r = (status, axum::Json(record_json(rec))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location(&rec.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_validated() {
        assert_eq!(money(1234, "USD").unwrap().minor(), 1234);
        assert_eq!(money(1234, "978").unwrap().currency().alpha, "EUR");
        assert_eq!(money(0, "USD").unwrap_err().code, "invalid_amount");
        assert_eq!(money(1, "XXQ").unwrap_err().code, "invalid_currency");
        assert_eq!(
            money(emvbridge_core::money::MAX_MINOR + 1, "USD")
                .unwrap_err()
                .code,
            "invalid_amount"
        );
        let e = parse_body::<AmountBody>(br#"{"amount": 12.34, "currency": "USD"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_body");
        let e =
            parse_body::<AmountBody>(br#"{"amount": 1, "currency": "USD", "x": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert_eq!(
            parse_body::<AmountBody>(b" ").unwrap_err().code,
            "invalid_body"
        );
        assert_eq!(reference(None).unwrap(), None);
        assert_eq!(
            reference(Some("T7 #1001".into()))
                .unwrap()
                .as_ref()
                .map(PosReference::as_str),
            Some("T7 #1001")
        );
        for bad in [
            "",
            " x",
            "x ",
            "caf\u{e9}",
            "a\nb",
            &"x".repeat(MAX_REFERENCE + 1),
        ] {
            assert_eq!(
                reference(Some(bad.into())).unwrap_err().code,
                "invalid_reference",
                "{bad:?}"
            );
        }
        for not_object in [
            &br#"[100, "USD"]"#[..],
            b" 100",
            b"\"USD\"",
            b"null",
            b"true",
        ] {
            let e = parse_body::<AmountBody>(not_object).unwrap_err();
            assert_eq!(e.code, "invalid_body");
            assert!(e.message.contains("JSON object"), "{}", e.message);
        }
    }
}
