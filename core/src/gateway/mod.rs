//! The gateway dialects, sans-IO: one module per gateway API ([`number`], [`paymentsai`],
//! [`pay1st`]) of pure functions that build an [`HttpRequest`] (method, path, headers, exact
//! body bytes) and classify an [`HttpReply`] (or a [`TransportError`]) into the engine's types
//! from [`crate::txn::host`]. They never read the clock (`now` is an argument) and never touch a
//! socket; the bridge's HTTP edge sends what they build. [`reversal`] decides, step by step,
//! how a transaction that must not stand is taken back.
//!
//! Classification rules that keep money safe (shared by every dialect):
//! - the request certainly never left (connect refused, DNS, TLS before sending) →
//!   `Unavailable`: nothing to reverse;
//! - sent but no usable answer (timeout after sending, connection dropped, 5xx, unparseable
//!   or malformed body) → `Unknown`: resolve by a status lookup and a reversal, never by
//!   blindly sending the sale again.

pub mod number;
pub mod pay1st;
pub mod paymentsai;
pub mod reversal;
pub mod sign;

use std::fmt;

use bytes::Bytes;
use emvbridge_protocol::tlv::{self, Tag};

use crate::money::Money;
use crate::txn::host::{AuthorizationResult, IssuerResponse, Reference};

/// Which gateway API an adapter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Number (formerly Easy Pay Solutions), Aspen REST (§1).
    Number,
    /// PaymentsAI public API (§2).
    PaymentsAi,
    /// Pay1st (Carry1st) gateway integration (§3).
    Pay1st,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Number => "number",
            Dialect::PaymentsAi => "paymentsai",
            Dialect::Pay1st => "pay1st",
        })
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    /// `number`, `paymentsai` (or `pai`, `payments-ai`), `pay1st`, case-insensitive.
    fn from_str(s: &str) -> Result<Dialect, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "number" => Ok(Dialect::Number),
            "paymentsai" | "pai" | "payments-ai" => Ok(Dialect::PaymentsAi),
            "pay1st" => Ok(Dialect::Pay1st),
            other => Err(format!(
                "unknown gateway dialect {other:?} (number, paymentsai, pay1st)"
            )),
        }
    }
}

/// Capture of a pre-authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// The bridge's reference for the capture itself (idempotency key where supported).
    pub reference: Reference,
    /// Gateway id of the approved pre-authorization.
    pub gateway_id: String,
    /// The amount that was authorized.
    pub authorized: Money,
    /// The amount to capture (same currency).
    pub amount: Money,
}

/// Void of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidRequest {
    /// The reference of the transaction being voided (for logs).
    pub reference: Reference,
    /// Its gateway id.
    pub gateway_id: String,
}

/// Refund of (part of) a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The bridge's reference for the refund.
    pub reference: Reference,
    /// Gateway id of the original sale.
    pub gateway_id: String,
    /// Amount to refund.
    pub amount: Money,
}

/// The answer to a capture, void or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Done; `gateway_id` is the id of the resulting gateway transaction (the original's id
    /// when the gateway creates none).
    Done {
        /// Gateway transaction id.
        gateway_id: String,
    },
    /// The gateway refused (void declined, nothing refundable, amount too large…).
    Refused {
        /// Gateway code, if any.
        code: Option<String>,
        /// Short reason.
        reason: String,
    },
    /// The gateway has no such transaction.
    NotFound,
    /// Certainly not processed (not sent, or refused before processing: auth, validation).
    Unavailable {
        /// Short reason.
        reason: String,
    },
    /// May or may not have been processed.
    Unknown {
        /// Short reason.
        reason: String,
    },
    /// The dialect has no API for this operation.
    Unsupported {
        /// What is missing.
        reason: &'static str,
    },
}

/// State of a transaction found by [`Gateway::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Approved and standing (open or settled).
    Approved,
    /// Declined or failed: no money moved.
    Declined,
    /// Voided / released: no money moved.
    Voided,
    /// Refunded, fully or in part.
    Refunded,
    /// Not final yet (hosted checkout, 3DS, offsite).
    Pending,
}

/// A transaction as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStatus {
    /// Gateway transaction id.
    pub gateway_id: String,
    /// Its state.
    pub state: TxnState,
    /// The (approved) amount, when the gateway reports it.
    pub amount: Option<Money>,
}

/// The answer to a status lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusResult {
    /// The gateway knows the transaction.
    Found(TxnStatus),
    /// The gateway has no transaction with this reference: nothing moved.
    NotFound,
    /// The lookup itself failed; ask again later.
    Unknown {
        /// Short reason.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Sans-IO HTTP vocabulary

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
/// Number's `AcquirerResponseEMV` carries it (§4.4 [EXT]). `None` when the buffer does not
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
            Tag(0x89) => out.auth_code = std::str::from_utf8(t.value()).ok().map(str::to_owned),
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

/// Two printable ASCII characters of a response code as an ARC, when it is one.
pub fn arc_of(code: &str) -> Option<[u8; 2]> {
    let b: [u8; 2] = code.as_bytes().try_into().ok()?;
    b.iter().all(|c| c.is_ascii_alphanumeric()).then_some(b)
}

/// Short, printable, bounded text from a gateway message (never echoed whole into logs).
pub fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Which deployment of a gateway to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The emvbridge sandbox gateway (§4): the base URL must be given.
    Sandbox,
    /// The gateway's staging / test host.
    Staging,
    /// Production.
    Production,
}

/// A credential. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for building a header or a MAC. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a gateway configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Environment variables that are required and not set (names only).
    #[error("missing environment variables: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// A value is present but unusable (names the variable, never the value).
    #[error("invalid value for {0}")]
    Invalid(&'static str),
    /// The HTTP client could not be built.
    #[error("cannot build http client")]
    Client,
}

/// Reads variables through `lookup`, collecting the names of missing ones.
pub(crate) struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    missing: Vec<&'static str>,
}

impl<'a> EnvReader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        EnvReader {
            lookup,
            missing: Vec::new(),
        }
    }
    pub(crate) fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
    pub(crate) fn required(&mut self, name: &'static str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.missing.push(name);
            String::new()
        })
    }
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Missing(self.missing))
        }
    }
}

/// The process environment, for `from_env`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Configuration of one gateway adapter.
#[derive(Debug, Clone)]
pub enum GatewayConfig {
    /// Number.
    Number(number::NumberConfig),
    /// PaymentsAI.
    PaymentsAi(paymentsai::PaiConfig),
    /// Pay1st.
    Pay1st(pay1st::Pay1stConfig),
}

impl GatewayConfig {
    /// Reads the configuration of `dialect` in `env` from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] with every missing variable name.
    pub fn from_env(dialect: Dialect, env: Environment) -> Result<GatewayConfig, ConfigError> {
        Self::from_lookup(dialect, env, &process_env)
    }

    /// As [`GatewayConfig::from_env`], through a lookup function (tests).
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn from_lookup(
        dialect: Dialect,
        env: Environment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        Ok(match dialect {
            Dialect::Number => {
                GatewayConfig::Number(number::NumberConfig::from_lookup(env, lookup)?)
            }
            Dialect::PaymentsAi => {
                GatewayConfig::PaymentsAi(paymentsai::PaiConfig::from_lookup(env, lookup)?)
            }
            Dialect::Pay1st => {
                GatewayConfig::Pay1st(pay1st::Pay1stConfig::from_lookup(env, lookup)?)
            }
        })
    }
}

/// Checks a base URL: http(s), no trailing slash kept.
pub(crate) fn base_url(raw: &str, var: &'static str) -> Result<String, ConfigError> {
    let u = raw.trim().trim_end_matches('/');
    if (u.starts_with("https://") || u.starts_with("http://")) && u.len() > 8 && !u.contains(' ') {
        Ok(u.to_owned())
    } else {
        Err(ConfigError::Invalid(var))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (proleptic Gregorian, UTC).
pub fn iso8601(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::host::AuthorizationRequest;

    fn usd(minor: u64) -> Money {
        Money::from_minor(minor, "USD").unwrap()
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal_json(&usd(1234)).get(), "12.34");
        assert_eq!(decimal_json(&usd(5)).get(), "0.05");
        assert_eq!(
            decimal_json(&Money::from_minor(1500, "JPY").unwrap()).get(),
            "1500"
        );
        assert_eq!(parse_decimal("12.34", "USD"), Some(usd(1234)));
        assert_eq!(parse_decimal("\"12.34\"", "USD"), Some(usd(1234)));
        assert_eq!(parse_decimal("12.3", "USD"), Some(usd(1230)));
        assert_eq!(parse_decimal("12.340", "USD"), Some(usd(1234)));
        assert_eq!(parse_decimal("100.0", "USD"), Some(usd(10_000)));
        assert_eq!(parse_decimal("1500", "JPY").map(|m| m.minor()), Some(1500));
        assert_eq!(
            parse_decimal("1500.00", "JPY").map(|m| m.minor()),
            Some(1500)
        );
        assert_eq!(parse_decimal("1500.5", "JPY"), None);
        assert_eq!(parse_decimal("12.345", "USD"), None);
        assert_eq!(parse_decimal("1e3", "USD"), None);
        assert_eq!(parse_decimal("-1", "USD"), None);
        assert_eq!(parse_decimal("null", "USD"), None);
        // 12345678901.23 would lose a cent through f64 arithmetic at larger scales; here it
        // is text all the way.
        assert_eq!(
            parse_decimal("9999999999.99", "USD").map(|m| m.minor()),
            Some(999_999_999_999)
        );
    }

    #[test]
    fn issuer_tlv() {
        // 8A "00", 91 (8 bytes), 72 script.
        let data = hex::decode("8A0230309108112233445566778872099F180400000001860100").unwrap();
        let r = issuer_from_tlv(&data).unwrap();
        assert_eq!(&r.arc, b"00");
        assert_eq!(
            r.issuer_auth_data.as_deref(),
            Some(&hex::decode("1122334455667788").unwrap()[..])
        );
        assert_eq!(r.scripts.len(), 11);
        assert!(
            issuer_from_tlv(&hex::decode("910100").unwrap()).is_none(),
            "no 8A"
        );
        assert!(
            issuer_from_tlv(&hex::decode("8A0130").unwrap()).is_none(),
            "short 8A"
        );
        assert!(issuer_from_tlv(&[0x8A, 0x05, 0x30]).is_none(), "truncated");
    }

    #[test]
    fn secrets_and_requests_do_not_leak() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let mut r = HttpRequest::post_json("/x", b"{}".to_vec());
        r.set_header("SessKey", "ABCDEF0123".into());
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("SessKey") && !dbg.contains("ABCDEF0123"),
            "{dbg}"
        );
        assert_eq!(r.header("sesskey"), Some("ABCDEF0123"));
    }

    #[test]
    fn screening() {
        let ns: Exchange = Err(TransportError::NotSent("refused".into()));
        assert!(matches!(screen(&ns), Err(Screened::Unavailable(_))));
        let nr: Exchange = Err(TransportError::NoReply("timeout".into()));
        assert!(matches!(screen(&nr), Err(Screened::Unknown(_))));
        for s in [500, 502, 503, 504] {
            let r: Exchange = Ok(HttpReply {
                status: s,
                body: Bytes::new(),
            });
            assert_eq!(screen(&r), Err(Screened::Unknown(format!("http {s}"))));
        }
        let ok: Exchange = Ok(HttpReply {
            status: 200,
            body: Bytes::new(),
        });
        assert!(screen(&ok).is_ok());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_742_199_052), "2025-03-17T08:10:52Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn env_reader_names_missing_only() {
        let lookup = |n: &str| (n == "A").then(|| "secret-value".to_owned());
        let mut r = EnvReader::new(&lookup);
        assert_eq!(r.required("A"), "secret-value");
        r.required("B");
        r.required("C");
        let e = r.finish().unwrap_err();
        assert_eq!(e, ConfigError::Missing(vec!["B", "C"]));
        assert_eq!(e.to_string(), "missing environment variables: B, C");
        assert!(!e.to_string().contains("secret-value"));
    }

    fn any_req() -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference("r".into()),
            kind: crate::txn::host::AuthKind::Sale,
            amount: usd(1234),
            amount_other: usd(0),
            entry_mode: crate::txn::host::EntryMode::Chip,
            icc_data: Bytes::new(),
            masked_pan: String::new(),
            last4: None,
            brand: None,
            original_gateway_id: None,
        }
    }

    proptest::proptest! {
        #[test]
        fn decimal_round_trip(minor in 0u64..=crate::money::MAX_MINOR) {
            for cur in ["USD", "JPY", "BHD"] {
                let m = Money::from_minor(minor, cur).unwrap();
                proptest::prop_assert_eq!(parse_decimal(decimal_json(&m).get(), cur), Some(m));
            }
        }

        /// Any reply body and status: every classifier decides without panicking, and a
        /// body that is not valid JSON is never an approval.
        #[test]
        fn classifiers_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), status in 100u16..600) {
            let ex: Exchange = Ok(HttpReply { status, body: Bytes::from(body.clone()) });
            let req = any_req();
            let r = Reference("r".into());
            let json_ok = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
            let n = number::classify_sale(&ex, &req);
            let p = paymentsai::classify_authorize(&ex, &req);
            let q = pay1st::classify_create(&ex, &req);
            let approved = matches!(n, number::Reply::Done(AuthorizationResult::Approved { .. }))
                || matches!(p, AuthorizationResult::Approved { .. })
                || matches!(q, pay1st::Reply::Done(AuthorizationResult::Approved { .. }));
            proptest::prop_assert!(json_ok || !approved);
            let _ = number::classify_op(&ex, "Transaction_VoidResult", "1", false);
            let _ = number::classify_query(&ex, &r, "USD");
            let _ = paymentsai::classify_op(&ex);
            let _ = paymentsai::classify_lookup(&ex, &r);
            let _ = paymentsai::classify_get(&ex);
            let _ = pay1st::classify_lookup(&ex, &r);
            let _ = number::parse_authenticate(&ex, 0);
            let _ = pay1st::parse_tokens(&ex, 0);
            let _ = issuer_from_tlv(&body);
            let _ = parse_decimal(&String::from_utf8_lossy(&body), "USD");
        }
    }
}
