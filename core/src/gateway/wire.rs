//! The sans-IO HTTP vocabulary the dialects build and classify ([`HttpRequest`],
//! [`HttpReply`], [`TransportError`], the common first screening of a reply), and what every
//! dialect puts on or reads off the wire: exact decimal amounts, the issuer's EMV answer,
//! response codes, bounded text, percent-encoding, ISO 8601 times.

use std::fmt;

use bytes::Bytes;
use emvbridge_protocol::tlv::{self, Tag};

use super::ops::{OpResult, StatusResult};
use crate::money::Money;
use crate::txn::host::{AuthorizationResult, IssuerResponse};

/// HTTP method of a gateway request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// A request to send, relative to the configured base URL. Header values may hold
/// credentials, so `Debug` prints header names only.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Path and query appended to the base URL (`/CardSale/EMV`).
    pub path: String,
    /// Headers (name, value). Values may be secret.
    pub headers: Vec<(&'static str, String)>,
    /// The exact body bytes (signed as-is where the dialect signs).
    pub body: Bytes,
}

impl HttpRequest {
    /// A JSON POST.
    pub fn post_json(path: impl Into<String>, body: Vec<u8>) -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            path: path.into(),
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("Accept", "application/json".into()),
            ],
            body: Bytes::from(body),
        }
    }

    /// A GET without body.
    pub fn get(path: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: Method::Get,
            path: path.into(),
            headers: vec![("Accept", "application/json".into())],
            body: Bytes::new(),
        }
    }

    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets (replaces) a header.
    pub fn set_header(&mut self, name: &'static str, value: String) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value));
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The online PIN of `req` as the \[EXT\] request fields carry it: the enciphered PIN block
/// and its KSN, upper-case hex. None of the official definitions has a PIN field (gateways.md
/// §0). The block stays enciphered under the reader's DUKPT key; it goes into the request body
/// only (whose `Debug` shows its length), never into a log line or an error.
pub fn pin_hex(req: &crate::txn::host::AuthorizationRequest) -> Option<(String, String)> {
    req.online_pin.as_ref().map(|p| {
        (
            hex::encode_upper(p.block.reveal()),
            hex::encode_upper(&p.ksn),
        )
    })
}

/// A complete HTTP reply.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body (bounded by the edge).
    pub body: Bytes,
}

impl fmt::Debug for HttpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpReply")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why no complete reply came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was certainly not written (connect refused, DNS, TLS handshake).
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request was (or may have been) written, but no complete reply came: timeout,
    /// connection dropped, truncated or oversized body.
    #[error("no reply: {0}")]
    NoReply(String),
}

/// What came back from one exchange.
pub type Exchange = Result<HttpReply, TransportError>;

/// The common first step of every classification: transport failures and 5xx.
/// Returns `Err(result)` when the exchange is already decided.
pub fn screen(ex: &Exchange) -> Result<&HttpReply, Screened> {
    match ex {
        Err(TransportError::NotSent(r)) => Err(Screened::Unavailable(format!("not sent: {r}"))),
        Err(TransportError::NoReply(r)) => Err(Screened::Unknown(format!("no reply: {r}"))),
        Ok(r) if r.status >= 500 => Err(Screened::Unknown(format!("http {}", r.status))),
        Ok(r) => Ok(r),
    }
}

/// A decided exchange (see [`screen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    Unavailable(String),
    Unknown(String),
}

impl Screened {
    pub fn auth(self) -> AuthorizationResult {
        match self {
            Screened::Unavailable(reason) => AuthorizationResult::Unavailable { reason },
            Screened::Unknown(reason) => AuthorizationResult::Unknown { reason },
        }
    }
    pub fn op(self) -> OpResult {
        match self {
            Screened::Unavailable(reason) => OpResult::Unavailable { reason },
            Screened::Unknown(reason) => OpResult::Unknown { reason },
        }
    }
    pub fn status(self) -> StatusResult {
        match self {
            Screened::Unavailable(reason) | Screened::Unknown(reason) => {
                StatusResult::Unknown { reason }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Money on the wire

/// An amount as a JSON number in major units (`12.34`), exact: the decimal text is spliced
/// in as a raw JSON value, never through a float.
pub fn decimal_json(m: &Money) -> Box<serde_json::value::RawValue> {
    // major_string() is digits with at most one '.', always a valid JSON number.
    // (A failure would yield `null`, which every gateway refuses: never a wrong amount.)
    serde_json::value::RawValue::from_string(m.major_string()).unwrap_or_default()
}

/// Parses a gateway decimal (the raw JSON text of a number, or a JSON string holding one)
/// into minor units of `currency`, without floating point. Trailing fraction zeros beyond the
/// currency's exponent are accepted (`"100.00"` JPY); exponents, signs and extra non-zero
/// decimals are refused.
pub fn parse_decimal(raw: &str, currency: &str) -> Option<Money> {
    let t = raw.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t)
        .trim();
    if t.len() > 32 {
        return None;
    }
    let t = match t.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            }
        }
        None => t.to_owned(),
    };
    Money::parse_major(&t, currency).ok()
}

/// Reads the issuer's EMV response from a BER-TLV buffer (`8A`, `91`, `71`/`72`, `89`), as
/// Number's `AcquirerResponseEMV` carries it (§4.4 \[EXT\]). `None` when the buffer does not
/// parse or has no `8A` of two bytes.
pub fn issuer_from_tlv(data: &[u8]) -> Option<IssuerResponse> {
    let mut out = IssuerResponse::default();
    let mut have_arc = false;
    let mut scripts = Vec::new();
    for item in tlv::parse(data) {
        let t = item.ok()?;
        match t.tag() {
            Tag(0x8A) => {
                out.arc = t.value().try_into().ok()?;
                have_arc = true;
            }
            Tag(0x91) => out.issuer_auth_data = Some(Bytes::copy_from_slice(t.value())),
            Tag(0x71) | Tag(0x72) => scripts.extend_from_slice(t.raw()),
            Tag(0x89) => out.auth_code = std::str::from_utf8(t.value()).ok().and_then(auth_code_of),
            _ => {}
        }
    }
    out.scripts = Bytes::from(scripts);
    have_arc.then_some(out)
}

/// Issuer data with only an ARC, for gateways that return none (the card then decides from
/// the ARC alone; no issuer authentication).
pub fn arc_only(arc: [u8; 2]) -> IssuerResponse {
    IssuerResponse {
        arc,
        ..IssuerResponse::default()
    }
}

/// An issuer authorisation code as EMV tag `89` holds it (Book 3 Annex A: six characters;
/// shorter ones are seen from acquirers and kept), trimmed; `None` when it is empty, longer
/// than six or not printable ASCII, so a gateway's text never reaches a receipt unchecked.
pub fn auth_code_of(code: &str) -> Option<String> {
    let c = code.trim();
    (!c.is_empty() && c.len() <= 6 && c.bytes().all(|b| b.is_ascii_graphic())).then(|| c.to_owned())
}

/// Two printable ASCII characters of a response code as an ARC, when it is one.
pub fn arc_of(code: &str) -> Option<[u8; 2]> {
    let b: [u8; 2] = code.as_bytes().try_into().ok()?;
    b.iter().all(|c| c.is_ascii_alphanumeric()).then_some(b)
}

/// Short, printable, bounded text from a gateway message (never echoed whole into logs).
pub fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// What [`pct`] leaves as it is: the RFC 3986 unreserved characters (ASCII letters and
/// digits, `-`, `_`, `.`, `~`); every other byte is escaped as `%XX`, upper-case hex.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment or query value (RFC 3986 unreserved kept), as the
/// dialects put our references and the gateways' ids into URLs.
pub(crate) fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (proleptic Gregorian, UTC). Times outside the
/// years 0000–9999 are clamped to those bounds (the format has four year digits).
pub fn iso8601(unix: i64) -> String {
    use time::macros::datetime;
    use time::OffsetDateTime;
    const FIRST: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
    const LAST: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);
    let t = match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => t.clamp(FIRST, LAST),
        Err(_) if unix < 0 => FIRST,
        Err(_) => LAST,
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
