//! Number (Aspen REST) dialect, sans-IO (gateways.md §1, §4.4).
//!
//! - Login `POST /Authenticate {AcctCode, Token}` → `SessKey`, reused until [`RENEW_AFTER_SECS`]
//!   (the key lives 25 h; the docs recommend managing it per 24 h, §1.3). On `ErrCode` 5030
//!   (expired) or 5050 (IP changed) the edge logs in again **once** per call; after
//!   [`MAX_AUTH_FAILURES`] consecutive failed logins it stops trying until
//!   [`SessionState::reset_failures`], far from the 6-failure IP lockout.
//! - Card-data calls (`CardSale/EMV`) send the PCI-mode HMAC SessKey
//!   `<SessKey>_<epoch>_<UserID>_<HEX(HMAC-SHA256(secret, "<SessKey>_<epoch>_<UserID>"))>`,
//!   where `UserID` is the login's `ThisUser.ID` (an integer in the OpenAPI).
//! - Sale: \[EXT\] `POST /CardSale/EMV {EmvTags, Amounts, MerchID, PurchItems{ClientRefID}}` →
//!   `CreditCardSale_EMVResult`, checked in the documented order: transport, body,
//!   `FunctionOk` (Aspen error), `TxApproved` (issuer decline) (§1.5). No public definition
//!   has a REST EMV operation: the call is the project's extension, sent only when
//!   [`NumberConfig::emv_extension`] is on (the sandbox; production only by contract).
//! - Stripe reads (swipe, fallback after a chip failure, magstripe-mode tap) go the same
//!   \[EXT\] way: `EmvTags` carries the reader's entry mode (`9F39` 90/80/91), its masked
//!   track and the SRED-enciphered track (`FF7F`). The official `POST /CardSale/CardPresent`
//!   takes a clear `Track`, which a SRED reader never gives the bridge (and which the bridge
//!   must not hold), so it is not used; without the extension a swipe is refused like every
//!   card-present sale. The online PIN goes as \[EXT\] `PinBlock` + `PinKsn` (hex): Number's
//!   definitions have no PIN field. Neither is ever logged; `HttpRequest`'s `Debug` shows the
//!   body's length only.
//! - The POS's own reference ([`PosReference`]) goes in `PurchItems.ServiceDescrip` (the
//!   `Items` schema: "A description of the service or item"; no length or pattern given),
//!   `emvbridge` when the POS gave none; `ClientRefID` stays our [`Reference`], the key of
//!   the status query. `CardSale/ApplyCredit` (refund) and `CardSale/IncrementAuth`
//!   (capture) define no free-text field: the POS reference is not sent with them.
//! - Number has **no idempotency** (§1.4): a sale is never sent twice. An unknown outcome is
//!   resolved with `POST /Query/Transaction {"Query":"(M='<ClientRefID>')"}` (the query
//!   grammar quotes text values), answered as `Transaction_QueryResult {NumRecords,
//!   Transactions:[{ID, AMOUNT, TxSTATUS, TxType, REF_ID}]}`, and `CardSale/Void`.
//! - Base path: the OpenAPI's servers say `/APIcardProcREST/v1.0.0`, the documentation
//!   pages' examples `/APIcardProcNumber/v1.0.0`; configurable, defaulting to the pages'.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::config::{base_url, ConfigError, EnvReader, Environment, Secret};
use super::ops::{
    CaptureRequest, OpResult, RefundRequest, StatusResult, TxnState, TxnStatus, VoidRequest,
};
use super::sign::hmac_sha256_hex;
use super::wire::{
    arc_of, decimal_json, issuer_from_tlv, parse_decimal, pin_hex, screen, short, Exchange,
    HttpRequest, Screened,
};
use crate::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, PosReference, Reference,
};

/// Production host (the OpenAPI's `servers`). Number documents no separate sandbox host: a
/// sandbox is an account type on the same host.
pub const PRODUCTION_HOST: &str = "https://easypay5.com";
/// The REST base path of the documentation pages' examples (the default).
pub const PAGES_BASE_PATH: &str = "/APIcardProcNumber/v1.0.0";
/// The REST base path of the OpenAPI definition (`master-openapi-rest.yaml`).
pub const OPENAPI_BASE_PATH: &str = "/APIcardProcREST/v1.0.0";
/// Production REST base: [`PRODUCTION_HOST`] and [`PAGES_BASE_PATH`].
pub const PRODUCTION_URL: &str = "https://easypay5.com/APIcardProcNumber/v1.0.0";

/// Renew the SessKey after 24 h although it lives 25 h (§1.3).
pub const RENEW_AFTER_SECS: i64 = 24 * 3600;

/// Consecutive failed logins after which the adapter stops logging in (the gateway locks the
/// IP at 6, §1.3, and only support can unlock it).
pub const MAX_AUTH_FAILURES: u32 = 2;

/// `ErrCode`s that mean "log in again" (§1.3).
pub const ERR_SESSION_EXPIRED: i64 = 5030;
/// The caller's IP changed.
pub const ERR_IP_CHANGED: i64 = 5050;
/// Unknown TxID (§1.5).
pub const ERR_UNKNOWN_TXID: i64 = 6724;

/// Number adapter configuration.
#[derive(Debug, Clone)]
pub struct NumberConfig {
    /// REST base, e.g. [`PRODUCTION_URL`] or `http://127.0.0.1:N/number/APIcardProcNumber/v1.0.0`.
    pub base_url: String,
    /// `AcctCode` (`EP911XXXX`).
    pub acct_code: String,
    /// The 32-hex API token (renewed every 2 years in the Client Admin Portal).
    pub token: Secret,
    /// `UserID` for the PCI-mode HMAC SessKey (the `ThisUser.UserID` of the login wins).
    pub user_id: String,
    /// HMAC secret of the PCI-mode SessKey.
    pub hmac_secret: Secret,
    /// `MerchID`; when `None`, the first of the login's `MerchantList`.
    pub merch_id: Option<i64>,
    /// The account's currency: Number requests carry no currency field.
    pub currency: String,
    /// Send card-present sales through the \[EXT\] `CardSale/EMV` operation, which no public
    /// definition has. Off unless configured (on for the sandbox); without it the adapter
    /// refuses card-present sales before sending anything.
    pub emv_extension: bool,
}

impl NumberConfig {
    /// Variables: `NUMBER_API_URL` (required for [`Environment::Sandbox`], else defaults to
    /// [`PRODUCTION_HOST`]; a URL with a path is taken whole as the REST base, a bare host gets
    /// `NUMBER_BASE_PATH`, default [`PAGES_BASE_PATH`]), `NUMBER_ACCT_CODE`, `NUMBER_TOKEN`,
    /// `NUMBER_HMAC_SECRET`, `NUMBER_USER_ID`, optional `NUMBER_MERCH_ID`, `NUMBER_CURRENCY`
    /// (default `USD`) and `NUMBER_EMV_EXTENSION` (`on`/`off`; default on only for the
    /// sandbox).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming every missing variable; [`ConfigError::Invalid`].
    pub fn from_lookup(
        env: Environment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<NumberConfig, ConfigError> {
        let mut r = EnvReader::new(lookup);
        let url = match env {
            Environment::Sandbox => r.required("NUMBER_API_URL"),
            _ => r
                .optional("NUMBER_API_URL")
                .unwrap_or_else(|| PRODUCTION_HOST.to_owned()),
        };
        let base_path = r
            .optional("NUMBER_BASE_PATH")
            .unwrap_or_else(|| PAGES_BASE_PATH.to_owned());
        let emv = r.optional("NUMBER_EMV_EXTENSION");
        let acct_code = r.required("NUMBER_ACCT_CODE");
        let token = Secret::new(r.required("NUMBER_TOKEN"));
        let hmac_secret = Secret::new(r.required("NUMBER_HMAC_SECRET"));
        let user_id = r.required("NUMBER_USER_ID");
        let merch = r.optional("NUMBER_MERCH_ID");
        let currency = r
            .optional("NUMBER_CURRENCY")
            .unwrap_or_else(|| "USD".into());
        r.finish()?;
        let merch_id = match merch {
            Some(m) => Some(
                m.parse()
                    .map_err(|_| ConfigError::Invalid("NUMBER_MERCH_ID"))?,
            ),
            None => None,
        };
        let emv_extension = match emv {
            None => env == Environment::Sandbox,
            Some(v) => {
                super::config::switch(&v).ok_or(ConfigError::Invalid("NUMBER_EMV_EXTENSION"))?
            }
        };
        let base = base_url(&url, "NUMBER_API_URL")?;
        // A bare host gets the base path; a URL with a path is the REST base already.
        let has_path = base.splitn(4, '/').nth(3).is_some_and(|p| !p.is_empty());
        let base = if has_path {
            base
        } else {
            let path = base_path.trim_end_matches('/');
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid("NUMBER_BASE_PATH"));
            }
            format!("{base}{path}")
        };
        Ok(NumberConfig {
            base_url: base,
            acct_code,
            token,
            user_id,
            hmac_secret,
            merch_id,
            currency: currency.to_ascii_uppercase(),
            emv_extension,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Session

/// A live Number session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SessKey (42 hex).
    pub key: Secret,
    /// When it was obtained (Unix seconds, the edge's clock).
    pub issued_at: i64,
    /// First `MerchantList[].ID`.
    pub merch_id: Option<i64>,
    /// `ThisUser.ID` (the official user object's id).
    pub user_id: Option<String>,
}

/// Session and login-failure bookkeeping, shared by all calls of one adapter.
#[derive(Debug, Default)]
pub struct SessionState {
    session: Option<Session>,
    failures: u32,
}

impl SessionState {
    /// The session to use at `now`, if one is live and not due for renewal.
    pub fn current(&self, now: i64) -> Option<&Session> {
        self.session
            .as_ref()
            .filter(|s| now.saturating_sub(s.issued_at) < RENEW_AFTER_SECS && now >= s.issued_at)
    }
    /// Whether another login may be attempted.
    pub fn may_authenticate(&self) -> bool {
        self.failures < MAX_AUTH_FAILURES
    }
    /// Consecutive failed logins so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// A login succeeded.
    pub fn on_authenticated(&mut self, s: Session) {
        self.session = Some(s);
        self.failures = 0;
    }
    /// A login failed (rejected, or sent without a usable answer).
    pub fn on_auth_failed(&mut self) {
        self.session = None;
        self.failures = self.failures.saturating_add(1);
    }
    /// The gateway rejected the session (5030/5050).
    pub fn invalidate(&mut self) {
        self.session = None;
    }
    /// Operator reset after checking the credentials.
    pub fn reset_failures(&mut self) {
        self.failures = 0;
    }
}

#[derive(Serialize)]
struct AuthBody<'a> {
    #[serde(rename = "AcctCode")]
    acct_code: &'a str,
    #[serde(rename = "Token")]
    token: &'a str,
}

/// `POST /Authenticate`.
pub fn authenticate_request(cfg: &NumberConfig) -> HttpRequest {
    let body = serde_json::to_vec(&AuthBody {
        acct_code: &cfg.acct_code,
        token: cfg.token.expose(),
    })
    .unwrap_or_default();
    HttpRequest::post_json("/Authenticate", body)
}

/// Why a login did not give a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// Not sent: does not count towards the lockout.
    NotSent(String),
    /// Rejected or unanswered: counts.
    Failed(String),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthResult {
    #[serde(rename = "FunctionOk")]
    function_ok: bool,
    #[serde(rename = "AuthSuccess")]
    auth_success: bool,
    #[serde(rename = "ErrCode")]
    err_code: Option<Box<RawValue>>,
    #[serde(rename = "SessKey")]
    sess_key: Option<String>,
    #[serde(rename = "MerchantList")]
    merchant_list: Vec<MerchantEntry>,
    #[serde(rename = "ThisUser")]
    this_user: Option<ThisUser>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MerchantEntry {
    #[serde(rename = "ID")]
    id: Option<Box<RawValue>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ThisUser {
    /// The OpenAPI's user object names its id `ID` (integer).
    #[serde(rename = "ID")]
    id: Option<Box<RawValue>>,
}

/// Classifies the `/Authenticate` exchange.
///
/// # Errors
/// [`LoginFailure`].
pub fn parse_authenticate(ex: &Exchange, now: i64) -> Result<Session, LoginFailure> {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(Screened::Unavailable(r)) => return Err(LoginFailure::NotSent(r)),
        Err(Screened::Unknown(r)) => return Err(LoginFailure::Failed(r)),
    };
    let r: AuthResult = envelope(&reply.body, "AuthenticateResult").ok_or_else(|| {
        LoginFailure::Failed(format!("authenticate: http {} unreadable", reply.status))
    })?;
    let key = r.sess_key.unwrap_or_default();
    if !r.function_ok || !r.auth_success || key.is_empty() || key.len() > 128 {
        return Err(LoginFailure::Failed(format!(
            "authenticate refused (ErrCode {})",
            raw_int(r.err_code.as_deref()).unwrap_or(0)
        )));
    }
    Ok(Session {
        key: Secret::new(key),
        issued_at: now,
        merch_id: r
            .merchant_list
            .first()
            .and_then(|m| raw_int(m.id.as_deref())),
        user_id: r
            .this_user
            .and_then(|u| u.id)
            .and_then(|u| raw_text(&u))
            .filter(|u| !u.is_empty() && !u.contains('_')),
    })
}

/// The plain `SessKey` header value.
pub fn sesskey_plain(s: &Session) -> String {
    s.key.expose().to_owned()
}

/// The PCI-mode HMAC `SessKey` header value (§1.3) at `epoch`.
pub fn sesskey_hmac(s: &Session, cfg: &NumberConfig, epoch: i64) -> String {
    let user = s.user_id.as_deref().unwrap_or(&cfg.user_id);
    let base = format!("{}_{epoch}_{user}", s.key.expose());
    let mac =
        hmac_sha256_hex(cfg.hmac_secret.expose().as_bytes(), base.as_bytes()).to_ascii_uppercase();
    format!("{base}_{mac}")
}

fn with_sesskey(mut r: HttpRequest, value: String) -> HttpRequest {
    r.set_header("SessKey", value);
    r
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Serialize)]
struct Amounts {
    #[serde(rename = "TotalAmt")]
    total: Box<RawValue>,
    #[serde(rename = "CashBack", skip_serializing_if = "Option::is_none")]
    cash_back: Option<Box<RawValue>>,
}

/// `ServiceDescrip` of a sale whose POS gave no reference of its own.
pub const DEFAULT_SERVICE_DESCRIP: &str = "emvbridge";

#[derive(Serialize)]
struct PurchItems<'a> {
    #[serde(rename = "ServiceDescrip")]
    descrip: &'a str,
    #[serde(rename = "ClientRefID")]
    client_ref: &'a str,
}

#[derive(Serialize)]
struct EmvSale<'a> {
    #[serde(rename = "EmvTags")]
    emv_tags: String,
    #[serde(rename = "Amounts")]
    amounts: Amounts,
    #[serde(rename = "MerchID", skip_serializing_if = "Option::is_none")]
    merch_id: Option<i64>,
    #[serde(rename = "PurchItems")]
    purch: PurchItems<'a>,
    #[serde(rename = "IsAuthOnly")]
    is_auth_only: bool,
    /// \[EXT\] the enciphered online PIN block (hex): Number defines no PIN field.
    #[serde(rename = "PinBlock", skip_serializing_if = "Option::is_none")]
    pin_block: Option<String>,
    /// \[EXT\] the PIN block's DUKPT key serial number (hex).
    #[serde(rename = "PinKsn", skip_serializing_if = "Option::is_none")]
    pin_ksn: Option<String>,
}

/// Whether a reference can be a `ClientRefID` and a quoted query value: the query grammar
/// quotes text values (`(M='ABC 888')`, "Use single quotes for text and date values") and
/// documents no escape for a quote, so only characters that cannot close the value are allowed.
pub fn query_safe(r: &Reference) -> bool {
    !r.0.is_empty()
        && r.0.len() <= 64
        && r.0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// \[EXT\] `POST /CardSale/EMV` for a sale or pre-authorization (`IsAuthOnly`, the
/// `api_Purchase` field, §1.6), with the HMAC SessKey. A refund goes to
/// [`apply_credit_request`] instead.
///
/// # Errors
/// `Unavailable` (nothing sent) for what Number cannot take: another currency, a refund,
/// a reference that cannot be queried later.
pub fn emv_sale_request(
    cfg: &NumberConfig,
    s: &Session,
    epoch: i64,
    req: &AuthorizationRequest,
) -> Result<HttpRequest, &'static str> {
    let refuse = |reason: &'static str| reason;
    if req.amount.currency().alpha != cfg.currency {
        return Err(refuse("number: currency not supported by the account"));
    }
    if req.kind == AuthKind::Refund {
        return Err(refuse(
            "number: card-present refund needs the original TxID",
        ));
    }
    if !cfg.emv_extension {
        return Err(refuse(
            "number: no card-present operation without the EMV extension (NUMBER_EMV_EXTENSION)",
        ));
    }
    if !query_safe(&req.reference) {
        return Err(refuse("number: reference not usable as ClientRefID"));
    }
    let (pin_block, pin_ksn) = pin_hex(req).unzip();
    let body = EmvSale {
        emv_tags: hex::encode_upper(&req.icc_data),
        amounts: Amounts {
            total: decimal_json(&req.amount),
            cash_back: (req.amount_other.minor() > 0).then(|| decimal_json(&req.amount_other)),
        },
        merch_id: cfg.merch_id.or(s.merch_id),
        purch: PurchItems {
            descrip: req
                .pos_reference
                .as_ref()
                .map_or(DEFAULT_SERVICE_DESCRIP, PosReference::as_str),
            client_ref: &req.reference.0,
        },
        is_auth_only: req.kind == AuthKind::PreAuth,
        pin_block,
        pin_ksn,
    };
    let body = serde_json::to_vec(&body).map_err(|_| refuse("number: cannot encode"))?;
    Ok(with_sesskey(
        HttpRequest::post_json("/CardSale/EMV", body),
        sesskey_hmac(s, cfg, epoch),
    ))
}

fn txid_value(id: &str) -> Option<Box<RawValue>> {
    // TxIDs are integers on the wire (`"TxID": 53001`).
    (!id.is_empty() && id.len() < 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| RawValue::from_string(id.to_owned()).ok())
        .flatten()
}

#[derive(Serialize)]
struct VoidBody {
    #[serde(rename = "TxID")]
    txid: Box<RawValue>,
}

/// `POST /CardSale/Void {TxID}`. `None` when the id is not a Number TxID.
pub fn void_request(s: &Session, req: &VoidRequest) -> Option<HttpRequest> {
    let body = serde_json::to_vec(&VoidBody {
        txid: txid_value(&req.gateway_id)?,
    })
    .ok()?;
    Some(with_sesskey(
        HttpRequest::post_json("/CardSale/Void", body),
        sesskey_plain(s),
    ))
}

#[derive(Serialize)]
struct CreditBody {
    #[serde(rename = "TxID")]
    txid: Box<RawValue>,
    #[serde(rename = "CreditAmount")]
    amount: Box<RawValue>,
}

/// `POST /CardSale/ApplyCredit {TxID, CreditAmount}`. `None` when the id is not a TxID.
pub fn apply_credit_request(s: &Session, req: &RefundRequest) -> Option<HttpRequest> {
    let body = serde_json::to_vec(&CreditBody {
        txid: txid_value(&req.gateway_id)?,
        amount: decimal_json(&req.amount),
    })
    .ok()?;
    Some(with_sesskey(
        HttpRequest::post_json("/CardSale/ApplyCredit", body),
        sesskey_plain(s),
    ))
}

#[derive(Serialize)]
struct IncrementBody {
    #[serde(rename = "OrigAuthTxID")]
    txid: Box<RawValue>,
    #[serde(rename = "AdditionalAmt")]
    add: Box<RawValue>,
    #[serde(rename = "Finalize")]
    finalize: u8,
}

/// Capture = `POST /CardSale/IncrementAuth {OrigAuthTxID, AdditionalAmt, Finalize:1}` (§1.4):
/// the total goes to settlement. Number cannot capture *less* than was authorized.
///
/// # Errors
/// `Unsupported` for a smaller capture or a foreign id.
pub fn capture_request(s: &Session, req: &CaptureRequest) -> Result<HttpRequest, &'static str> {
    let add = req
        .amount
        .minor()
        .checked_sub(req.authorized.minor())
        .filter(|_| req.amount.currency() == req.authorized.currency())
        .ok_or("number cannot capture less than the authorized amount")?;
    let add = req
        .amount
        .with_minor(add)
        .map_err(|_| "amount out of range")?;
    let txid = txid_value(&req.gateway_id).ok_or("not a number TxID")?;
    let body = serde_json::to_vec(&IncrementBody {
        txid,
        add: decimal_json(&add),
        finalize: 1,
    })
    .map_err(|_| "cannot encode")?;
    Ok(with_sesskey(
        HttpRequest::post_json("/CardSale/IncrementAuth", body),
        sesskey_plain(s),
    ))
}

#[derive(Serialize)]
struct QueryBody {
    #[serde(rename = "Query")]
    query: String,
}

/// `POST /Query/Transaction {"Query":"(M='<ClientRefID>')"}`: term `M` is the client
/// reference id, a text value, so it is quoted (`QueryTransaction` schema; the pages' example
/// `(M='ABC 888')`). `None` for a reference that cannot be put in a query value.
pub fn query_request(s: &Session, reference: &Reference) -> Option<HttpRequest> {
    if !query_safe(reference) {
        return None;
    }
    let body = serde_json::to_vec(&QueryBody {
        query: format!("(M='{}')", reference.0),
    })
    .ok()?;
    Some(with_sesskey(
        HttpRequest::post_json("/Query/Transaction", body),
        sesskey_plain(s),
    ))
}

// ---------------------------------------------------------------------------------------------
// Replies

/// A classified reply, or "log in again and re-send" (5030/5050: the call was rejected
/// before processing, so re-sending it once is safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Decided.
    Done(T),
    /// The session was rejected with this `ErrCode`.
    SessionRejected(i64),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TxResult {
    #[serde(rename = "FunctionOk")]
    function_ok: Option<bool>,
    #[serde(rename = "TxApproved")]
    tx_approved: Option<bool>,
    #[serde(rename = "TxID")]
    txid: Option<Box<RawValue>>,
    #[serde(rename = "TxnCode")]
    txn_code: Option<String>,
    #[serde(rename = "RespMsg")]
    resp_msg: Option<String>,
    #[serde(rename = "ErrCode")]
    err_code: Option<Box<RawValue>>,
    #[serde(rename = "ErrMsg")]
    err_msg: Option<String>,
    #[serde(rename = "ResponseApprovedAmount")]
    approved_amount: Option<Box<RawValue>>,
    #[serde(rename = "AcquirerResponseEMV")]
    acquirer_emv: Option<String>,
}

/// The inner object of a `{"<Name>": {...}}` envelope.
fn envelope<T: for<'de> Deserialize<'de>>(body: &[u8], name: &str) -> Option<T> {
    let outer: std::collections::HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).ok()?;
    let inner = outer.get(name)?;
    serde_json::from_str(inner.get()).ok()
}

/// The text of a raw JSON string or number (`"53001"` or `53001` → `53001`).
fn raw_text(v: &RawValue) -> Option<String> {
    let t = v.get().trim();
    if let Some(s) = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return (s.len() <= 64 && !s.contains('\\')).then(|| s.to_owned());
    }
    (t.len() <= 32 && t.bytes().all(|b| b.is_ascii_digit() || b == b'-')).then(|| t.to_owned())
}

fn raw_int(v: Option<&RawValue>) -> Option<i64> {
    raw_text(v?)?.parse().ok()
}

fn aspen(r: &TxResult) -> (i64, String) {
    (
        raw_int(r.err_code.as_deref()).unwrap_or(0),
        short(r.err_msg.as_deref().unwrap_or("aspen error")),
    )
}

/// Classifies the `CreditCardSale_EMVResult` of a sale (§1.5 order).
pub fn classify_sale(ex: &Exchange, req: &AuthorizationRequest) -> Reply<AuthorizationResult> {
    use AuthorizationResult as A;
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return Reply::Done(s.auth()),
    };
    if reply.status == 400 {
        // Plain `Bad Request`: the request was refused unparsed (§1.5) — not processed.
        return Reply::Done(A::Unavailable {
            reason: "number: bad request".into(),
        });
    }
    if reply.status != 200 {
        return Reply::Done(A::Unavailable {
            reason: format!("number: http {}", reply.status),
        });
    }
    let Some(r) = envelope::<TxResult>(&reply.body, "CreditCardSale_EMVResult") else {
        return Reply::Done(A::Unknown {
            reason: "number: unreadable sale result".into(),
        });
    };
    let Some(function_ok) = r.function_ok else {
        return Reply::Done(A::Unknown {
            reason: "number: sale result without FunctionOk".into(),
        });
    };
    let txid = r
        .txid
        .as_deref()
        .and_then(raw_text)
        .filter(|t| t != "0" && !t.is_empty());
    let issuer = match r.acquirer_emv.as_deref().filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => match hex::decode(h).ok().as_deref().and_then(issuer_from_tlv) {
            Some(i) => Some(i),
            None => {
                return Reply::Done(A::Unknown {
                    reason: "number: unreadable AcquirerResponseEMV".into(),
                })
            }
        },
    };
    if !function_ok {
        let (code, msg) = aspen(&r);
        if code == ERR_SESSION_EXPIRED || code == ERR_IP_CHANGED {
            return Reply::SessionRejected(code);
        }
        // Session, credential and lockout errors (50xx) are refused before processing.
        if (5000..5100).contains(&code) {
            return Reply::Done(A::Unavailable {
                reason: format!("number: ErrCode {code}"),
            });
        }
        // An Aspen error: the gateway processed the call and it failed; no approval.
        return Reply::Done(A::Declined {
            gateway_id: txid,
            code: Some(code.to_string()),
            reason: format!("aspen error {code}: {msg}"),
            issuer: issuer.unwrap_or_else(|| super::wire::arc_only(*b"05")),
        });
    }
    let code = r.txn_code.clone().unwrap_or_default();
    match r.tx_approved {
        Some(true) => {
            let Some(gateway_id) = txid else {
                return Reply::Done(A::Unknown {
                    reason: "number: approval without TxID".into(),
                });
            };
            let cur = req.amount.currency().alpha;
            let approved_amount = r
                .approved_amount
                .as_deref()
                .and_then(|a| parse_decimal(a.get(), cur))
                .filter(|a| a.minor() > 0 && a.minor() <= req.amount.minor())
                .unwrap_or(req.amount);
            let mut issuer = issuer.unwrap_or_else(|| super::wire::arc_only(*b"00"));
            if issuer.auth_code.is_none()
                && code.len() == 6
                && code.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                issuer.auth_code = Some(code);
            }
            Reply::Done(A::Approved {
                gateway_id,
                approved_amount,
                issuer,
            })
        }
        Some(false) => Reply::Done(A::Declined {
            gateway_id: txid,
            code: (!code.is_empty()).then(|| short(&code)),
            reason: short(r.resp_msg.as_deref().unwrap_or("declined")),
            issuer: issuer
                .unwrap_or_else(|| super::wire::arc_only(arc_of(&code).unwrap_or(*b"05"))),
        }),
        None => Reply::Done(A::Unknown {
            reason: "number: sale result without TxApproved".into(),
        }),
    }
}

/// Classifies a `Void`, `ApplyCredit` or `IncrementAuth` result (`name` is the envelope).
/// `new_id`: whether the result's `TxID` is a new transaction (ApplyCredit) or the original.
pub fn classify_op(ex: &Exchange, name: &str, original: &str, new_id: bool) -> Reply<OpResult> {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return Reply::Done(s.op()),
    };
    if reply.status != 200 {
        return Reply::Done(OpResult::Unavailable {
            reason: format!("number: http {}", reply.status),
        });
    }
    let Some(r) = envelope::<TxResult>(&reply.body, name) else {
        return Reply::Done(OpResult::Unknown {
            reason: format!("number: unreadable {name}"),
        });
    };
    match (r.function_ok, r.tx_approved) {
        (Some(false), _) => {
            let (code, msg) = aspen(&r);
            Reply::Done(match code {
                ERR_SESSION_EXPIRED | ERR_IP_CHANGED => return Reply::SessionRejected(code),
                ERR_UNKNOWN_TXID => OpResult::NotFound,
                5000..=5099 => OpResult::Unavailable {
                    reason: format!("number: ErrCode {code}"),
                },
                _ => OpResult::Refused {
                    code: Some(code.to_string()),
                    reason: msg,
                },
            })
        }
        (Some(true), Some(true)) => {
            let id = if new_id {
                r.txid.as_deref().and_then(raw_text)
            } else {
                Some(original.to_owned())
            };
            Reply::Done(match id {
                Some(gateway_id) => OpResult::Done { gateway_id },
                None => OpResult::Unknown {
                    reason: "number: result without TxID".into(),
                },
            })
        }
        // The issuer can decline a void (§1.4).
        (Some(true), Some(false)) => Reply::Done(OpResult::Refused {
            code: r.txn_code.as_deref().filter(|c| !c.is_empty()).map(short),
            reason: short(r.resp_msg.as_deref().unwrap_or("declined")),
        }),
        _ => Reply::Done(OpResult::Unknown {
            reason: format!("number: incomplete {name}"),
        }),
    }
}

/// The envelope of a `Query/Transaction` reply (OpenAPI `queryTransactions`).
pub const QUERY_RESULT: &str = "Transaction_QueryResult";
/// The envelope of an `IncrementAuth` reply (the Incremental Auth page's sample).
pub const INCREMENTAL_RESULT: &str = "CreditCardSale_IncrementalResult";
/// The envelope of a `CardSale/Void` reply.
pub const VOID_RESULT: &str = "Transaction_VoidResult";
/// The envelope of a `CardSale/ApplyCredit` reply.
pub const APPLY_CREDIT_RESULT: &str = "Transaction_ApplyCreditResult";

#[derive(Deserialize, Default)]
#[serde(default)]
struct QueryResult {
    #[serde(rename = "FunctionOk")]
    function_ok: Option<bool>,
    #[serde(rename = "ErrCode")]
    err_code: Option<Box<RawValue>>,
    #[serde(rename = "NumRecords")]
    num_records: Option<Box<RawValue>>,
    #[serde(rename = "Transactions")]
    transactions: Vec<QueryRecord>,
}

/// The fields of the OpenAPI's `Transaction` record the bridge reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct QueryRecord {
    #[serde(rename = "ID")]
    id: Option<Box<RawValue>>,
    /// `OPEN AUTHOK AUTHFAILED SETTLED FAILED LOCKED VOID HOST` (schema `TxStatus`).
    #[serde(rename = "TxSTATUS")]
    status: Option<Box<RawValue>>,
    #[serde(rename = "TxType")]
    tx_type: Option<String>,
    #[serde(rename = "REF_ID")]
    ref_id: Option<String>,
    #[serde(rename = "AMOUNT")]
    amount: Option<Box<RawValue>>,
    /// Amount credited back so far (`Credits`).
    #[serde(rename = "Credits")]
    credits: Option<Box<RawValue>>,
}

/// A record's `TxSTATUS`. The record schema gives the status names; the query grammar's term
/// `B` numbers them (1 OPEN, 2 SETTLED, 3 FAILED, 4 RETURNED, 5 VOID): both are read.
fn record_state(status: &RawValue, credited: bool) -> Option<TxnState> {
    let text = raw_text(status)?;
    Some(match text.to_ascii_uppercase().as_str() {
        "OPEN" | "AUTHOK" | "SETTLED" | "LOCKED" | "1" | "2" if credited => TxnState::Refunded,
        "OPEN" | "AUTHOK" | "SETTLED" | "LOCKED" | "1" | "2" => TxnState::Approved,
        "AUTHFAILED" | "FAILED" | "3" => TxnState::Declined,
        "RETURNED" | "4" => TxnState::Refunded,
        "VOID" | "5" => TxnState::Voided,
        "HOST" => TxnState::Pending,
        _ => return None,
    })
}

/// Classifies a `Transaction_QueryResult` for `reference`: the sale or auth-only record
/// whose `REF_ID` is the reference (credit records may carry it too).
pub fn classify_query(ex: &Exchange, reference: &Reference, currency: &str) -> Reply<StatusResult> {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return Reply::Done(s.status()),
    };
    let unknown = |reason: &str| {
        Reply::Done(StatusResult::Unknown {
            reason: reason.into(),
        })
    };
    if reply.status != 200 {
        return unknown("number: query refused");
    }
    let Some(r) = envelope::<QueryResult>(&reply.body, QUERY_RESULT) else {
        return unknown("number: unreadable Transaction_QueryResult");
    };
    if r.function_ok != Some(true) {
        let code = raw_int(r.err_code.as_deref()).unwrap_or(0);
        if code == ERR_SESSION_EXPIRED || code == ERR_IP_CHANGED {
            return Reply::SessionRejected(code);
        }
        return Reply::Done(StatusResult::Unknown {
            reason: format!("number: query ErrCode {code}"),
        });
    }
    // NumRecords counts what came back; a count beyond the records means a cut-off list.
    let count = raw_int(r.num_records.as_deref());
    if count.is_some_and(|n| usize::try_from(n).map_or(true, |n| n > r.transactions.len())) {
        return unknown("number: query returned fewer records than NumRecords");
    }
    let rec = r.transactions.iter().find(|t| {
        t.ref_id.as_deref() == Some(reference.0.as_str())
            && matches!(t.tx_type.as_deref(), Some("CCSALE" | "CCAUTHONLY") | None)
    });
    let Some(t) = rec else {
        return Reply::Done(StatusResult::NotFound);
    };
    let Some(gateway_id) = t.id.as_deref().and_then(raw_text).filter(|i| i != "0") else {
        return unknown("number: query record without ID");
    };
    let credited = t
        .credits
        .as_deref()
        .and_then(|c| parse_decimal(c.get(), currency))
        .is_some_and(|c| c.minor() > 0);
    let Some(state) = t.status.as_deref().and_then(|s| record_state(s, credited)) else {
        return unknown("number: unknown TxSTATUS");
    };
    Reply::Done(StatusResult::Found(TxnStatus {
        gateway_id,
        state,
        amount: t
            .amount
            .as_deref()
            .and_then(|a| parse_decimal(a.get(), currency)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::wire::{HttpReply, TransportError};
    use crate::money::Money;
    use crate::txn::host::EntryMode;
    use bytes::Bytes;

    fn cfg() -> NumberConfig {
        NumberConfig {
            base_url: "http://127.0.0.1:1/number/APIcardProcNumber/v1.0.0".into(),
            acct_code: "EP9000001".into(),
            token: Secret::new("0123456789ABCDEF0123456789ABCDEF"),
            user_id: "1001".into(),
            hmac_secret: Secret::new("sandbox-hmac-secret"),
            merch_id: None,
            currency: "USD".into(),
            emv_extension: true,
        }
    }

    fn session() -> Session {
        Session {
            key: Secret::new("A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3"),
            issued_at: 1000,
            merch_id: Some(7),
            user_id: Some("1001".into()),
        }
    }

    fn req(minor: u64) -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference("ref-1".into()),
            kind: AuthKind::Sale,
            amount: Money::from_minor(minor, "USD").unwrap(),
            amount_other: Money::from_minor(0, "USD").unwrap(),
            entry_mode: EntryMode::Chip,
            icc_data: Bytes::from_static(&[0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x12, 0x34]),
            masked_pan: "476173******0010".into(),
            last4: Some("0010".into()),
            brand: Some("visa".into()),
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        }
    }

    fn ok(body: &str) -> Exchange {
        Ok(HttpReply {
            status: 200,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    #[test]
    fn authenticate_round_trip() {
        let r = authenticate_request(&cfg());
        assert_eq!(r.path, "/Authenticate");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["AcctCode"], "EP9000001");
        assert_eq!(v["Token"], "0123456789ABCDEF0123456789ABCDEF");
        let s = parse_authenticate(
            &ok(r#"{"AuthenticateResult":{"FunctionOk":true,"AuthSuccess":true,"ErrCode":0,"ErrMsg":"","RespMsg":"SessKey Expires|2026-01-02T00:00:00Z","SessKey":"ABCDEF","MerchantList":[{"ID":12,"TermID":"006"}],"ThisUser":{"ID":1001,"AccountCode":"EP9000001"}}}"#),
            50,
        )
        .unwrap();
        assert_eq!(s.key.expose(), "ABCDEF");
        assert_eq!(
            (s.issued_at, s.merch_id, s.user_id.as_deref()),
            (50, Some(12), Some("1001"))
        );
        let refused = ok(
            r#"{"AuthenticateResult":{"FunctionOk":true,"AuthSuccess":false,"ErrCode":5010,"SessKey":""}}"#,
        );
        assert!(
            matches!(parse_authenticate(&refused, 0), Err(LoginFailure::Failed(m)) if m.contains("5010"))
        );
        assert!(matches!(
            parse_authenticate(&ok("Bad Request"), 0),
            Err(LoginFailure::Failed(_))
        ));
        assert!(matches!(
            parse_authenticate(&Err(TransportError::NotSent("refused".into())), 0),
            Err(LoginFailure::NotSent(_))
        ));
    }

    #[test]
    fn session_renewal_and_failure_budget() {
        let mut st = SessionState::default();
        assert!(st.current(0).is_none());
        st.on_authenticated(session());
        assert!(st.current(1000 + RENEW_AFTER_SECS - 1).is_some());
        assert!(
            st.current(1000 + RENEW_AFTER_SECS).is_none(),
            "renewed before the 25 h expiry"
        );
        st.on_auth_failed();
        assert!(st.may_authenticate());
        st.on_auth_failed();
        assert!(
            !st.may_authenticate(),
            "stops after 2, far from the lockout at 6"
        );
        st.reset_failures();
        assert!(st.may_authenticate());
    }

    #[test]
    fn hmac_sesskey_form() {
        let v = sesskey_hmac(&session(), &cfg(), 1_700_000_000);
        let parts: Vec<&str> = v.split('_').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3");
        assert_eq!(parts[1], "1700000000");
        assert_eq!(parts[2], "1001");
        // Independent computation with the hmac crate.
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"sandbox-hmac-secret").unwrap();
        m.update(format!("{}_{}_{}", parts[0], parts[1], parts[2]).as_bytes());
        assert_eq!(parts[3], hex::encode_upper(m.finalize().into_bytes()));
    }

    #[test]
    fn swipe_and_online_pin_go_in_the_body_only() {
        let mut r = req(1234);
        r.entry_mode = EntryMode::Swipe;
        let plain = emv_sale_request(&cfg(), &session(), 1, &r).unwrap();
        assert!(!std::str::from_utf8(&plain.body).unwrap().contains("Pin"));
        r.online_pin = Some(crate::txn::host::OnlinePin {
            block: emvbridge_protocol::emv::SecretBytes::from_slice(&[0x5A; 8]),
            ksn: vec![0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x07],
        });
        let h = emv_sale_request(&cfg(), &session(), 1, &r).unwrap();
        let text = std::str::from_utf8(&h.body).unwrap();
        assert!(
            text.ends_with(r#""PinBlock":"5A5A5A5A5A5A5A5A","PinKsn":"FFFF9876543210E00007"}"#),
            "{text}"
        );
        for dbg in [format!("{h:?}"), format!("{r:?}")] {
            assert!(
                !dbg.contains("5A5A5A5A") && !dbg.contains("[90, 90"),
                "{dbg}"
            );
        }
        // Without the extension nothing card-present is sent, a swipe included.
        let mut off = cfg();
        off.emv_extension = false;
        assert!(emv_sale_request(&off, &session(), 1, &r).is_err());
    }

    #[test]
    fn emv_sale_body() {
        let r = emv_sale_request(&cfg(), &session(), 1_700_000_000, &req(1234)).unwrap();
        assert_eq!(r.path, "/CardSale/EMV");
        assert!(r.header("SessKey").unwrap().split('_').count() == 4);
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(text.contains(r#""Amounts":{"TotalAmt":12.34}"#), "{text}");
        assert!(text.contains(r#""EmvTags":"9F0206000000001234""#));
        assert!(text.contains(r#""MerchID":7"#));
        assert!(text.contains(r#""ClientRefID":"ref-1""#));
        assert!(text.contains(r#""IsAuthOnly":false"#));
        let mut pre = req(5);
        pre.kind = AuthKind::PreAuth;
        pre.amount_other = Money::from_minor(100, "USD").unwrap();
        let t = emv_sale_request(&cfg(), &session(), 0, &pre).unwrap().body;
        let t = std::str::from_utf8(&t).unwrap().to_owned();
        assert!(
            t.contains(r#""TotalAmt":0.05,"CashBack":1.00"#) && t.contains(r#""IsAuthOnly":true"#),
            "{t}"
        );
        let mut refund = req(5);
        refund.kind = AuthKind::Refund;
        assert_eq!(
            emv_sale_request(&cfg(), &session(), 0, &refund),
            Err("number: card-present refund needs the original TxID")
        );
        let mut jpy = req(5);
        jpy.amount = Money::from_minor(5, "JPY").unwrap();
        assert!(emv_sale_request(&cfg(), &session(), 0, &jpy).is_err());
        let mut bad = req(5);
        bad.reference = Reference("a) || (H>0".into());
        assert!(emv_sale_request(&cfg(), &session(), 0, &bad).is_err());
    }

    #[test]
    fn sale_approved_with_emv_response() {
        let body = r#"{"CreditCardSale_EMVResult":{"FunctionOk":true,"TxApproved":true,"TxID":53001,"TxnCode":"A1B2C3","RespMsg":"APPROVED A1B2C3","ErrCode":0,"ErrMsg":"","IsPartialApproval":false,"ResponseApprovedAmount":12.34,"AcquirerResponseEMV":"8A023030910811223344556677883030"}}"#;
        // Trailing "3030" is not TLV: unreadable EMV → Unknown (never a blind approval).
        assert!(matches!(
            classify_sale(&ok(body), &req(1234)),
            Reply::Done(AuthorizationResult::Unknown { .. })
        ));
        let body = body.replace("77883030", "7788");
        match classify_sale(&ok(&body), &req(1234)) {
            Reply::Done(AuthorizationResult::Approved {
                gateway_id,
                approved_amount,
                issuer,
            }) => {
                assert_eq!(gateway_id, "53001");
                assert_eq!(approved_amount.minor(), 1234);
                assert_eq!(&issuer.arc, b"00");
                assert_eq!(issuer.issuer_auth_data.unwrap().len(), 8);
                assert_eq!(issuer.auth_code.as_deref(), Some("A1B2C3"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sale_partial_approval() {
        let body = r#"{"CreditCardSale_EMVResult":{"FunctionOk":true,"TxApproved":true,"TxID":"53002","TxnCode":"X","IsPartialApproval":true,"ResponseApprovedAmount":2.57,"AcquirerResponseEMV":null}}"#;
        match classify_sale(&ok(body), &req(278)) {
            Reply::Done(AuthorizationResult::Approved {
                approved_amount,
                issuer,
                gateway_id,
            }) => {
                assert_eq!(
                    (approved_amount.minor(), gateway_id.as_str()),
                    (257, "53002")
                );
                assert_eq!(&issuer.arc, b"00");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn function_ok_false_vs_tx_approved_false() {
        // Issuer decline: FunctionOk true, TxApproved false, code in TxnCode.
        let decline = r#"{"CreditCardSale_EMVResult":{"FunctionOk":true,"TxApproved":false,"TxID":53003,"TxnCode":"51","RespMsg":"DECLINED 51 INSUFFICIENT FUNDS","AcquirerResponseEMV":"8A023531"}}"#;
        match classify_sale(&ok(decline), &req(1051)) {
            Reply::Done(AuthorizationResult::Declined {
                gateway_id,
                code,
                reason,
                issuer,
            }) => {
                assert_eq!(gateway_id.as_deref(), Some("53003"));
                assert_eq!(code.as_deref(), Some("51"));
                assert!(reason.contains("INSUFFICIENT"));
                assert_eq!(&issuer.arc, b"51");
            }
            other => panic!("{other:?}"),
        }
        // First Data 3-digit code: the ARC falls back to 05.
        let fd = r#"{"CreditCardSale_EMVResult":{"FunctionOk":true,"TxApproved":false,"TxID":1,"TxnCode":"116","RespMsg":"NSF"}}"#;
        assert!(matches!(classify_sale(&ok(fd), &req(10116)),
            Reply::Done(AuthorizationResult::Declined { issuer, .. }) if &issuer.arc == b"05"));
        // Aspen error: FunctionOk false.
        let aspen = r#"{"CreditCardSale_EMVResult":{"FunctionOk":false,"AuthSuccess":true,"TxApproved":false,"ErrCode":9999,"ErrMsg":"ERROR:9999:HIGH:Aspen error"}}"#;
        assert!(matches!(classify_sale(&ok(aspen), &req(1234567)),
            Reply::Done(AuthorizationResult::Declined { code: Some(c), .. }) if c == "9999"));
        // Session expired / IP changed: log in again.
        for code in [5030, 5050] {
            let b = format!(
                r#"{{"CreditCardSale_EMVResult":{{"FunctionOk":false,"ErrCode":{code}}}}}"#
            );
            assert_eq!(
                classify_sale(&ok(&b), &req(1)),
                Reply::SessionRejected(code)
            );
        }
        let locked = r#"{"CreditCardSale_EMVResult":{"FunctionOk":false,"ErrCode":5090}}"#;
        assert!(matches!(
            classify_sale(&ok(locked), &req(1)),
            Reply::Done(AuthorizationResult::Unavailable { .. })
        ));
    }

    #[test]
    fn sale_malformed_and_transport() {
        let u = |ex: Exchange| classify_sale(&ex, &req(1));
        let unknown = |r: Reply<AuthorizationResult>| {
            matches!(r, Reply::Done(AuthorizationResult::Unknown { .. }))
        };
        assert!(unknown(u(ok(
            r#"{"CreditCardSale_EMVResult":{"FunctionOk":tr"#
        ))));
        assert!(unknown(u(ok(r#"{"Other":{}}"#))));
        assert!(unknown(u(ok(
            r#"{"CreditCardSale_EMVResult":{"TxApproved":true}}"#
        ))));
        assert!(
            unknown(u(ok(
                r#"{"CreditCardSale_EMVResult":{"FunctionOk":true,"TxApproved":true}}"#
            ))),
            "no TxID"
        );
        assert!(unknown(u(ok(""))));
        assert!(unknown(u(Ok(HttpReply {
            status: 502,
            body: Bytes::new()
        }))));
        assert!(unknown(u(Err(TransportError::NoReply("timeout".into())))));
        assert!(matches!(
            u(Err(TransportError::NotSent("refused".into()))),
            Reply::Done(AuthorizationResult::Unavailable { .. })
        ));
        assert!(matches!(
            u(Ok(HttpReply {
                status: 400,
                body: Bytes::from_static(b"Bad Request")
            })),
            Reply::Done(AuthorizationResult::Unavailable { .. })
        ));
    }

    #[test]
    fn void_results() {
        let v = |b: &str| classify_op(&ok(b), "Transaction_VoidResult", "53001", false);
        assert_eq!(
            v(
                r#"{"Transaction_VoidResult":{"FunctionOk":true,"TxApproved":true,"TxID":53001,"RespMsg":"VOIDED"}}"#
            ),
            Reply::Done(OpResult::Done {
                gateway_id: "53001".into()
            })
        );
        assert!(matches!(
            v(
                r#"{"Transaction_VoidResult":{"FunctionOk":true,"TxApproved":false,"TxID":53001,"RespMsg":"VOID DECLINED"}}"#
            ),
            Reply::Done(OpResult::Refused { .. })
        ));
        assert_eq!(
            v(
                r#"{"Transaction_VoidResult":{"FunctionOk":false,"ErrCode":6724,"ErrMsg":"ERROR:6724:HIGH:Could NOT retrieve transaction details for TXID 53000"}}"#
            ),
            Reply::Done(OpResult::NotFound)
        );
        assert_eq!(
            v(r#"{"Transaction_VoidResult":{"FunctionOk":false,"ErrCode":"5030"}}"#),
            Reply::SessionRejected(5030)
        );
        let r = void_request(
            &session(),
            &VoidRequest {
                reference: Reference("r".into()),
                gateway_id: "53001".into(),
            },
        )
        .unwrap();
        assert_eq!(
            (r.path.as_str(), &r.body[..]),
            ("/CardSale/Void", &br#"{"TxID":53001}"#[..])
        );
        assert!(void_request(
            &session(),
            &VoidRequest {
                reference: Reference("r".into()),
                gateway_id: "txn_x".into()
            }
        )
        .is_none());
    }

    #[test]
    fn credit_and_capture() {
        let refund = RefundRequest {
            reference: Reference("rf".into()),
            gateway_id: "53001".into(),
            amount: Money::from_minor(500, "USD").unwrap(),
            pos_reference: None,
        };
        let r = apply_credit_request(&session(), &refund).unwrap();
        assert_eq!(&r.body[..], br#"{"TxID":53001,"CreditAmount":5.00}"#);
        assert_eq!(
            classify_op(
                &ok(
                    r#"{"Transaction_ApplyCreditResult":{"FunctionOk":true,"TxApproved":true,"TxID":53009}}"#
                ),
                "Transaction_ApplyCreditResult",
                "53001",
                true
            ),
            Reply::Done(OpResult::Done {
                gateway_id: "53009".into()
            })
        );
        let cap = |a, b| CaptureRequest {
            reference: Reference("c".into()),
            gateway_id: "53001".into(),
            authorized: Money::from_minor(a, "USD").unwrap(),
            amount: Money::from_minor(b, "USD").unwrap(),
            pos_reference: None,
        };
        let r = capture_request(&session(), &cap(1000, 1250)).unwrap();
        assert_eq!(
            &r.body[..],
            br#"{"OrigAuthTxID":53001,"AdditionalAmt":2.50,"Finalize":1}"#
        );
        assert_eq!(
            capture_request(&session(), &cap(1000, 900)),
            Err("number cannot capture less than the authorized amount")
        );
    }

    #[test]
    fn query_lookup() {
        let r = query_request(&session(), &Reference("ref-1".into())).unwrap();
        assert_eq!(r.path, "/Query/Transaction");
        assert_eq!(&r.body[..], br#"{"Query":"(M='ref-1')"}"#);
        // The official envelope and record fields (OpenAPI `queryTransactions`, `Transaction`).
        let body = r#"{"Transaction_QueryResult":{"ErrCode":0,"ErrMsg":"","FunctionOk":true,"NumRecords":2,"RespMsg":"Successfully Returned Transaction Records : 2","Transactions":[
            {"ID":53002,"TxSTATUS":"OPEN","TxType":"CCCREDIT","REF_ID":"ref-1","AMOUNT":12.34},
            {"ID":53001,"TxSTATUS":"VOID","TxType":"CCSALE","REF_ID":"ref-1","AMOUNT":12.34}]}}"#;
        let found = classify_query(&ok(body), &Reference("ref-1".into()), "USD");
        assert_eq!(
            found,
            Reply::Done(StatusResult::Found(TxnStatus {
                gateway_id: "53001".into(),
                state: TxnState::Voided,
                amount: Some(Money::from_minor(1234, "USD").unwrap()),
            }))
        );
        let empty =
            r#"{"Transaction_QueryResult":{"FunctionOk":true,"NumRecords":0,"Transactions":[]}}"#;
        assert_eq!(
            classify_query(&ok(empty), &Reference("ref-1".into()), "USD"),
            Reply::Done(StatusResult::NotFound)
        );
        // The shape the bridge once invented is not the official one: never "not found".
        let invented =
            r#"{"Query_TransactionResult":{"FunctionOk":true,"TxnCount":0,"Transactions":[]}}"#;
        assert!(matches!(
            classify_query(&ok(invented), &Reference("ref-1".into()), "USD"),
            Reply::Done(StatusResult::Unknown { .. })
        ));
        // A record without the official `ID` is unusable, not absent.
        let no_id = r#"{"Transaction_QueryResult":{"FunctionOk":true,"NumRecords":1,"Transactions":[{"TxID":1,"TxSTATUS":"OPEN","TxType":"CCSALE","REF_ID":"r"}]}}"#;
        assert!(matches!(
            classify_query(&ok(no_id), &Reference("r".into()), "USD"),
            Reply::Done(StatusResult::Unknown { .. })
        ));
        // More records counted than returned: the list was cut, the answer unknown.
        let cut =
            r#"{"Transaction_QueryResult":{"FunctionOk":true,"NumRecords":3,"Transactions":[]}}"#;
        assert!(matches!(
            classify_query(&ok(cut), &Reference("r".into()), "USD"),
            Reply::Done(StatusResult::Unknown { .. })
        ));
        assert!(matches!(
            classify_query(&ok("{"), &Reference("x".into()), "USD"),
            Reply::Done(StatusResult::Unknown { .. })
        ));
        for (status, state) in [
            ("FAILED", TxnState::Declined),
            ("AUTHFAILED", TxnState::Declined),
            ("AUTHOK", TxnState::Approved),
            ("SETTLED", TxnState::Approved),
            ("HOST", TxnState::Pending),
        ] {
            let b = format!(
                r#"{{"Transaction_QueryResult":{{"FunctionOk":true,"NumRecords":1,"Transactions":[{{"ID":1,"TxSTATUS":"{status}","TxType":"CCSALE","REF_ID":"r","AMOUNT":1}}]}}}}"#
            );
            assert!(
                matches!(
                    classify_query(&ok(&b), &Reference("r".into()), "USD"),
                    Reply::Done(StatusResult::Found(TxnStatus { state: s, .. })) if s == state
                ),
                "{status}"
            );
        }
        let credited = r#"{"Transaction_QueryResult":{"FunctionOk":true,"NumRecords":1,"Transactions":[{"ID":1,"TxSTATUS":"SETTLED","TxType":"CCSALE","REF_ID":"r","AMOUNT":5,"Credits":5}]}}"#;
        assert!(matches!(
            classify_query(&ok(credited), &Reference("r".into()), "USD"),
            Reply::Done(StatusResult::Found(TxnStatus {
                state: TxnState::Refunded,
                ..
            }))
        ));
        assert!(query_request(&session(), &Reference("x') || (B=1".into())).is_none());
        assert!(query_request(&session(), &Reference("it's".into())).is_none());
    }

    #[test]
    fn config_from_env() {
        let vars = |n: &str| match n {
            "NUMBER_API_URL" => {
                Some("http://127.0.0.1:9/number/APIcardProcNumber/v1.0.0/".to_owned())
            }
            "NUMBER_ACCT_CODE" => Some("EP1".to_owned()),
            "NUMBER_TOKEN" => Some("tok-secret".to_owned()),
            _ => None,
        };
        let e = NumberConfig::from_lookup(Environment::Sandbox, &vars).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing(vec!["NUMBER_HMAC_SECRET", "NUMBER_USER_ID"])
        );
        let all = |n: &str| {
            vars(n).or_else(|| {
                (!matches!(n, "NUMBER_EMV_EXTENSION" | "NUMBER_BASE_PATH"))
                    .then(|| format!("v-{n}"))
            })
        };
        let c = NumberConfig::from_lookup(Environment::Sandbox, &|n| {
            if n == "NUMBER_MERCH_ID" || n == "NUMBER_CURRENCY" {
                None
            } else {
                all(n)
            }
        })
        .unwrap();
        assert_eq!(
            c.base_url,
            "http://127.0.0.1:9/number/APIcardProcNumber/v1.0.0"
        );
        assert!(!format!("{c:?}").contains("tok-secret"));
        let p = NumberConfig::from_lookup(Environment::Production, &|n| {
            if n == "NUMBER_API_URL" || n == "NUMBER_MERCH_ID" {
                None
            } else {
                all(n)
            }
        });
        let p = p.unwrap();
        assert_eq!(p.base_url, PRODUCTION_URL);
        assert!(
            !p.emv_extension,
            "the [EXT] operation is off by default in production"
        );
        assert!(c.emv_extension, "and on for the sandbox");
        // A bare host gets the configured base path (the OpenAPI's, here).
        let rest = NumberConfig::from_lookup(Environment::Production, &|n| match n {
            "NUMBER_API_URL" => Some("https://easypay5.com/".into()),
            "NUMBER_BASE_PATH" => Some(OPENAPI_BASE_PATH.into()),
            "NUMBER_EMV_EXTENSION" => Some("on".into()),
            "NUMBER_MERCH_ID" => None,
            n => all(n),
        })
        .unwrap();
        assert_eq!(rest.base_url, "https://easypay5.com/APIcardProcREST/v1.0.0");
        assert!(rest.emv_extension);
        assert_eq!(
            NumberConfig::from_lookup(Environment::Production, &|n| match n {
                "NUMBER_EMV_EXTENSION" => Some("maybe".into()),
                "NUMBER_MERCH_ID" | "NUMBER_API_URL" => None,
                n => all(n),
            })
            .unwrap_err(),
            ConfigError::Invalid("NUMBER_EMV_EXTENSION")
        );
    }

    #[test]
    fn no_card_present_sale_without_the_extension() {
        let mut c = cfg();
        c.emv_extension = false;
        assert!(emv_sale_request(&c, &session(), 0, &req(100))
            .unwrap_err()
            .contains("EMV extension"));
    }

    #[test]
    fn pos_reference_goes_in_service_descrip_never_in_the_client_ref() {
        let purch = |r: &AuthorizationRequest| {
            let b = emv_sale_request(&cfg(), &session(), 0, r).unwrap().body;
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()["PurchItems"].clone()
        };
        let mut r = req(1234);
        assert_eq!(
            purch(&r),
            serde_json::json!({"ServiceDescrip": "emvbridge", "ClientRefID": "ref-1"})
        );
        // Quotes and spaces are JSON-escaped text: ServiceDescrip is never a query value.
        r.pos_reference = Some(PosReference::new(r#"Table 4 "bar" #17"#).unwrap());
        assert_eq!(
            purch(&r),
            serde_json::json!({"ServiceDescrip": r#"Table 4 "bar" #17"#, "ClientRefID": "ref-1"})
        );
        // The longest reference goes whole.
        let longest = "7".repeat(PosReference::MAX_LEN);
        r.pos_reference = Some(PosReference::new(longest.clone()).unwrap());
        assert_eq!(purch(&r)["ServiceDescrip"], longest.as_str());
        // ApplyCredit and IncrementAuth define no free-text field: nothing more is sent.
        let pos = Some(PosReference::new("order-9").unwrap());
        let refund = RefundRequest {
            reference: Reference("rf".into()),
            gateway_id: "53001".into(),
            amount: Money::from_minor(500, "USD").unwrap(),
            pos_reference: pos.clone(),
        };
        let r = apply_credit_request(&session(), &refund).unwrap();
        assert_eq!(&r.body[..], br#"{"TxID":53001,"CreditAmount":5.00}"#);
        let cap = CaptureRequest {
            reference: Reference("c".into()),
            gateway_id: "53001".into(),
            authorized: Money::from_minor(1000, "USD").unwrap(),
            amount: Money::from_minor(1000, "USD").unwrap(),
            pos_reference: pos,
        };
        let r = capture_request(&session(), &cap).unwrap();
        assert_eq!(
            &r.body[..],
            br#"{"OrigAuthTxID":53001,"AdditionalAmt":0.00,"Finalize":1}"#
        );
    }
}
