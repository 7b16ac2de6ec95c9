//! Pay1st (Carry1st) gateway dialect, sans-IO (gateways.md §3, §4.4), following the official
//! reference pages (`docs/gateway-specs/pay1st/`).
//!
//! - Token: `POST /api/pay1st/auth/token` with `Authorization: Basic base64(API_KEY:API_SECRET)`,
//!   `Content-Type: application/vnd.carry1st.payments.partnerauthentication+json`, body
//!   `{"role":"API_USER"}`; refresh with `POST /api/pay1st/auth/refresh {role, refreshToken}`,
//!   whose page requires the same vendor type as `Accept` too. The token lifetime is not
//!   published: the edge refreshes after [`Pay1stConfig::token_refresh_secs`] and on a 401,
//!   once per call.
//! - Every other call: `AccessToken: Bearer <token>`, `X-TIMESTAMP` (ISO-8601) and
//!   `X-SIGNATURE` = lowercase hex HMAC-SHA256(key = signing key, msg = timestamp ‖ the exact
//!   body bytes sent) — [`sign`] runs over the very `Bytes` that go on the wire.
//! - Authorize = "Create Payment Request" `POST /api/pay1st/payments/create` with our reference
//!   as `partnerReference` and the amount as a decimal. The reply identifies the payment by
//!   Pay1st's own `reference`; a new payment is `NEW` (the status list: `NEW`, `PENDING`,
//!   `SUCCESSFUL`, `FAILED`, `CANCELLED`, `ABANDONED`), so the edge follows it with
//!   "Query Payment Status" `GET /api/pay1st/payments?reference=<Pay1st reference>` (one
//!   payment object) until it is final.
//! - Lookups need Pay1st's reference: no documented query takes our `partnerReference`. When
//!   the create reply is lost, the reference is unknown and nothing can be looked up: the
//!   create is never re-sent (the answer to a duplicate `partnerReference` is not documented),
//!   the sale stays unknown and the journal escalates it to an operator, who finds the
//!   payment in Carry1st's portal by its partner reference.
//!
//! - The POS's own reference ([`PosReference`](crate::txn::host::PosReference)) goes as the `metadata` entry
//!   `{"key": "posReference", "value": …}` (the create's free key/value list, echoed by
//!   "Query Payment Status"; neither gives a length or charset), after `maskedPan`;
//!   `partnerReference` stays our reference.
//!
//! What Pay1st cannot do: it has no card-present API, no capture, void or refund API (refunds
//! go through Carry1st as Merchant of Record). The \[EXT\] `emv` field (reply `emvResponse`) is
//! sent only when [`Pay1stConfig::emv_extension`] is on (the sandbox, or by contract); without
//! it a payment is a hosted checkout that stays `NEW`/`PENDING` at the terminal (→ unknown),
//! and without an EMV response the card gets only an ARC derived from the result (`00`/`05`).
//! A stripe read rides in the same \[EXT\] object (`entryMode: "swipe"`, masked and
//! SRED-enciphered track in `iccData`), the online PIN as `emv.pinBlock` + `emv.ksn`: the
//! create defines no card, track or PIN field, so without the extension a swipe or an
//! online-PIN sale is refused before sending rather than dropped into a hosted checkout.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::config::{base_url, ConfigError, EnvReader, Environment, Secret};
use super::ops::{StatusResult, TxnState, TxnStatus};
use super::sign::hmac_sha256_hex;
use super::wire::{
    arc_of, decimal_json, iso8601, parse_decimal, pct, pin_hex, screen, short, Exchange,
    HttpRequest, Screened,
};
use crate::money::Money;
use crate::txn::host::IssuerResponse;
use crate::txn::host::{AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode};

/// The `metadata` key the POS's own reference goes under.
pub const METADATA_POS_REFERENCE: &str = "posReference";

const CT_AUTH: &str = "application/vnd.carry1st.payments.partnerauthentication+json";
const CT_PAYMENT: &str = "application/vnd.carry1st.payments.payment+json";

/// Pay1st adapter configuration.
#[derive(Debug, Clone)]
pub struct Pay1stConfig {
    /// `https://<payments_url>` (not published: from the Implementation Manager, §3.1), or
    /// the sandbox's `…/pay1st`.
    pub base_url: String,
    /// API key (Basic user).
    pub api_key: Secret,
    /// API secret (Basic password).
    pub api_secret: Secret,
    /// Request-signing key.
    pub signing_key: Secret,
    /// ISO 3166 alpha-2 country of the payments (`NG`).
    pub country_code: String,
    /// Base of the four browser callback URLs (`…/success`, `/failure`, `/pending`,
    /// `/cancel`), if any.
    pub callback_url: Option<String>,
    /// Backend webhook URL, if any.
    pub webhook_url: Option<String>,
    /// Send the card's ICC data in the \[EXT\] `emv` field (on for the sandbox; elsewhere
    /// only when `PAY1ST_EMV_EXTENSION` says so).
    pub emv_extension: bool,
    /// Refresh the access token after this many seconds (\[I\]: the lifetime is \[GAP\]).
    pub token_refresh_secs: i64,
}

impl Pay1stConfig {
    /// Variables: `PAY1ST_API_URL` (always required: hosts are not published),
    /// `PAY1ST_API_KEY`, `PAY1ST_API_SECRET`, `PAY1ST_SIGNING_KEY`, `PAY1ST_COUNTRY_CODE`;
    /// optional `PAY1ST_CALLBACK_URL`, `PAY1ST_WEBHOOK_URL`, `PAY1ST_EMV_EXTENSION` (`on`/`off`;
    /// default on only for [`Environment::Sandbox`]).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming every missing variable; [`ConfigError::Invalid`].
    pub fn from_lookup(
        env: Environment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Pay1stConfig, ConfigError> {
        let mut r = EnvReader::new(lookup);
        let url = r.required("PAY1ST_API_URL");
        let api_key = Secret::new(r.required("PAY1ST_API_KEY"));
        let api_secret = Secret::new(r.required("PAY1ST_API_SECRET"));
        let signing_key = Secret::new(r.required("PAY1ST_SIGNING_KEY"));
        let country = r.required("PAY1ST_COUNTRY_CODE");
        let callback = r.optional("PAY1ST_CALLBACK_URL");
        let webhook = r.optional("PAY1ST_WEBHOOK_URL");
        let emv = r.optional("PAY1ST_EMV_EXTENSION");
        r.finish()?;
        let emv_extension = match emv {
            None => env == Environment::Sandbox,
            Some(v) => {
                super::config::switch(&v).ok_or(ConfigError::Invalid("PAY1ST_EMV_EXTENSION"))?
            }
        };
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ConfigError::Invalid("PAY1ST_COUNTRY_CODE"));
        }
        Ok(Pay1stConfig {
            base_url: base_url(&url, "PAY1ST_API_URL")?,
            api_key,
            api_secret,
            signing_key,
            country_code: country.to_ascii_uppercase(),
            callback_url: callback
                .map(|c| base_url(&c, "PAY1ST_CALLBACK_URL"))
                .transpose()?,
            webhook_url: webhook
                .map(|c| base_url(&c, "PAY1ST_WEBHOOK_URL"))
                .transpose()?,
            emv_extension,
            token_refresh_secs: 50 * 60,
        })
    }
}

/// The request signature: lowercase hex HMAC-SHA256(key = signing key, msg = timestamp ‖ body)
/// (§3.2; the docs' prose swaps key and message, the published vector settles it).
pub fn sign(signing_key: &str, timestamp: &str, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(timestamp.len() + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    hmac_sha256_hex(signing_key.as_bytes(), &msg)
}

/// Adds `AccessToken`, `X-TIMESTAMP` and `X-SIGNATURE` over the request's exact body bytes.
pub fn signed(cfg: &Pay1stConfig, access: &Secret, now: i64, mut r: HttpRequest) -> HttpRequest {
    let ts = iso8601(now);
    let sig = sign(cfg.signing_key.expose(), &ts, &r.body);
    r.set_header("AccessToken", format!("Bearer {}", access.expose()));
    r.set_header("X-TIMESTAMP", ts);
    r.set_header("X-SIGNATURE", sig);
    r
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// An access/refresh token pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Access token.
    pub access: Secret,
    /// Refresh token.
    pub refresh: Secret,
    /// When obtained (Unix seconds).
    pub issued_at: i64,
}

/// `POST /api/pay1st/auth/token`.
pub fn token_request(cfg: &Pay1stConfig) -> HttpRequest {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        cfg.api_key.expose(),
        cfg.api_secret.expose()
    ));
    let mut r =
        HttpRequest::post_json("/api/pay1st/auth/token", br#"{"role":"API_USER"}"#.to_vec());
    r.set_header("Content-Type", CT_AUTH.into());
    r.set_header("Authorization", format!("Basic {basic}"));
    r
}

#[derive(Serialize)]
struct RefreshBody<'a> {
    role: &'a str,
    #[serde(rename = "refreshToken")]
    refresh_token: &'a str,
}

/// `POST /api/pay1st/auth/refresh {role, refreshToken}`, with the vendor type as both
/// `Content-Type` and `Accept` (the refresh page's header table).
pub fn refresh_request(t: &Tokens) -> HttpRequest {
    let body = serde_json::to_vec(&RefreshBody {
        role: "API_USER",
        refresh_token: t.refresh.expose(),
    })
    .unwrap_or_default();
    let mut r = HttpRequest::post_json("/api/pay1st/auth/refresh", body);
    r.set_header("Content-Type", CT_AUTH.into());
    r.set_header("Accept", CT_AUTH.into());
    r
}

/// Reads `{role, accessToken, refreshToken}`.
///
/// # Errors
/// A short reason.
pub fn parse_tokens(ex: &Exchange, now: i64) -> Result<Tokens, String> {
    #[derive(Deserialize)]
    struct T {
        #[serde(rename = "accessToken")]
        access: String,
        #[serde(rename = "refreshToken")]
        refresh: String,
    }
    let reply = screen(ex).map_err(|s| match s {
        Screened::Unavailable(r) | Screened::Unknown(r) => r,
    })?;
    if reply.status != 200 {
        return Err(format!("pay1st token: http {}", reply.status));
    }
    let t: T =
        serde_json::from_slice(&reply.body).map_err(|_| "pay1st token: unreadable".to_owned())?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 4096 && s.bytes().all(|b| b.is_ascii_graphic());
    if !ok(&t.access) || !ok(&t.refresh) {
        return Err("pay1st token: bad token".into());
    }
    Ok(Tokens {
        access: Secret::new(t.access),
        refresh: Secret::new(t.refresh),
        issued_at: now,
    })
}

// ---------------------------------------------------------------------------------------------
// Payments

#[derive(Serialize)]
struct Product<'a> {
    title: &'a str,
    sku: &'a str,
    price: Box<RawValue>,
    quantity: u32,
    #[serde(rename = "currencyCode")]
    currency_code: &'a str,
}

#[derive(Serialize)]
struct Kv<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Emv<'a> {
    #[serde(rename = "iccData")]
    icc_data: String,
    #[serde(rename = "entryMode")]
    entry_mode: &'a str,
    /// \[EXT\] the enciphered online PIN block (hex): the definitions have no PIN field.
    #[serde(rename = "pinBlock", skip_serializing_if = "Option::is_none")]
    pin_block: Option<String>,
    /// \[EXT\] the PIN block's DUKPT key serial number (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    ksn: Option<String>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    amount: Box<RawValue>,
    #[serde(rename = "countryCode")]
    country_code: &'a str,
    #[serde(rename = "currencyCode")]
    currency_code: &'a str,
    #[serde(rename = "partnerReference")]
    partner_reference: &'a str,
    #[serde(rename = "callbackSuccessUrl", skip_serializing_if = "Option::is_none")]
    success: Option<String>,
    #[serde(rename = "callbackFailureUrl", skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    #[serde(rename = "callbackPendingUrl", skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    #[serde(rename = "callbackCancelUrl", skip_serializing_if = "Option::is_none")]
    cancel: Option<String>,
    #[serde(rename = "webhookUrl", skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a str>,
    products: Vec<Product<'a>>,
    metadata: Vec<Kv<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emv: Option<Emv<'a>>,
}

/// `POST /api/pay1st/payments/create` (unsigned: [`signed`] adds the headers over these
/// exact bytes).
///
/// # Errors
/// `Unavailable` for what Pay1st cannot take (pre-authorization, refund).
pub fn create_request(
    cfg: &Pay1stConfig,
    req: &AuthorizationRequest,
) -> Result<HttpRequest, &'static str> {
    let refuse = |reason: &'static str| reason;
    if req.kind != AuthKind::Sale {
        return Err(refuse(
            "pay1st: only sales (no pre-authorization or refund api)",
        ));
    }
    if req.reference.0.is_empty() || req.reference.0.len() > 128 {
        return Err(refuse("pay1st: reference unusable as partnerReference"));
    }
    // Without the extension the payment is a hosted checkout: Pay1st's create defines no
    // track and no PIN field, so a swiped card or an online PIN would be silently dropped.
    if !cfg.emv_extension && req.entry_mode == EntryMode::Swipe {
        return Err(refuse(
            "pay1st: no track field without the EMV extension (PAY1ST_EMV_EXTENSION)",
        ));
    }
    if !cfg.emv_extension && req.online_pin.is_some() {
        return Err(refuse(
            "pay1st: no PIN block field without the EMV extension (PAY1ST_EMV_EXTENSION)",
        ));
    }
    let cur = req.amount.currency().alpha;
    let cb = |suffix: &str| cfg.callback_url.as_ref().map(|u| format!("{u}/{suffix}"));
    let body = CreateBody {
        amount: decimal_json(&req.amount),
        country_code: &cfg.country_code,
        currency_code: cur,
        partner_reference: &req.reference.0,
        success: cb("success"),
        failure: cb("failure"),
        pending: cb("pending"),
        cancel: cb("cancel"),
        webhook: cfg.webhook_url.as_deref(),
        products: vec![Product {
            title: "Card payment",
            sku: "emvbridge-card",
            price: decimal_json(&req.amount),
            quantity: 1,
            currency_code: cur,
        }],
        metadata: std::iter::once(Kv {
            key: "maskedPan",
            value: &req.masked_pan,
        })
        .chain(req.pos_reference.as_ref().map(|r| Kv {
            key: METADATA_POS_REFERENCE,
            value: r.as_str(),
        }))
        .collect(),
        emv: cfg.emv_extension.then(|| {
            let (pin_block, ksn) = pin_hex(req).unzip();
            Emv {
                icc_data: hex::encode_upper(&req.icc_data),
                entry_mode: match req.entry_mode {
                    EntryMode::Chip => "chip",
                    EntryMode::Contactless => "contactless",
                    // [EXT] a stripe read: the masked and the SRED-enciphered track ride in
                    // `iccData`; Pay1st's create defines no card or track field at all.
                    EntryMode::Swipe => "swipe",
                },
                pin_block,
                ksn,
            }
        }),
    };
    let body = serde_json::to_vec(&body).map_err(|_| refuse("pay1st: cannot encode"))?;
    let mut r = HttpRequest::post_json("/api/pay1st/payments/create", body);
    r.set_header("Content-Type", CT_PAYMENT.into());
    Ok(r)
}

/// "Query Payment Status": `GET /api/pay1st/payments?reference=<reference>`, where the
/// reference is the one the create reply returned (unsigned; sign with [`signed`]).
pub fn lookup_request(gateway_reference: &str) -> HttpRequest {
    let mut r = HttpRequest::get(format!(
        "/api/pay1st/payments?reference={}",
        pct(gateway_reference)
    ));
    r.set_header("Content-Type", CT_PAYMENT.into());
    r
}

/// A classified Pay1st reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Decided.
    Done(T),
    /// 401: the token was refused before processing; get a new one and re-send once.
    TokenRejected,
    /// 409: `partnerReference` already used (the answer to a duplicate is not documented;
    /// a 409 is read as "the payment exists"). Pay1st offers no lookup by our reference.
    Duplicate,
    /// Created and not final yet (`NEW`, `PENDING`): follow it with [`lookup_request`] by
    /// this Pay1st reference.
    Pending(String),
}

/// A payment as Pay1st (or the sandbox) renders it.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct Payment {
    /// Pay1st's reference.
    pub reference: Option<String>,
    /// Ours.
    #[serde(rename = "partnerReference")]
    pub partner_reference: Option<String>,
    /// `NEW`, `PENDING`, `SUCCESSFUL`, `FAILED`, `CANCELLED`, `ABANDONED`.
    pub status: Option<String>,
    amount: Option<Box<RawValue>>,
    /// Currency.
    #[serde(rename = "currencyCode")]
    pub currency_code: Option<String>,
    #[serde(rename = "emvResponse")]
    emv_response: Option<EmvResponse>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct EmvResponse {
    arc: Option<String>,
    #[serde(rename = "issuerAuthData")]
    issuer_auth_data: Option<String>,
    scripts: Vec<String>,
    /// \[EXT\] The issuer's authorisation code (the value of EMV tag `89`), on approvals.
    #[serde(rename = "authCode")]
    auth_code: Option<String>,
}

impl Payment {
    /// Amount, exact.
    pub fn amount(&self) -> Option<Money> {
        parse_decimal(
            self.amount.as_deref()?.get(),
            self.currency_code.as_deref()?,
        )
    }

    /// The status list of "Query Payment Status": `NEW` (created, not processed) and
    /// `PENDING` (processing) are not final; `FAILED`, `CANCELLED` (by the customer) and
    /// `ABANDONED` (session expired) moved no money. Any other value is unknown.
    pub fn state(&self) -> Option<TxnState> {
        Some(match self.status.as_deref()? {
            "SUCCESSFUL" => TxnState::Approved,
            "FAILED" | "CANCELLED" | "ABANDONED" => TxnState::Declined,
            "NEW" | "PENDING" => TxnState::Pending,
            _ => return None,
        })
    }

    /// `None` when present but unreadable.
    fn issuer(&self) -> Option<Option<IssuerResponse>> {
        let Some(e) = &self.emv_response else {
            return Some(None);
        };
        let arc = arc_of(e.arc.as_deref()?)?;
        let iad = match e.issuer_auth_data.as_deref().filter(|s| !s.is_empty()) {
            Some(h) => Some(bytes::Bytes::from(
                hex::decode(h).ok().filter(|b| b.len() <= 16)?,
            )),
            None => None,
        };
        let mut scripts = Vec::new();
        for s in e.scripts.iter().take(8) {
            scripts.extend_from_slice(&hex::decode(s).ok().filter(|b| b.len() <= 256)?);
        }
        Some(Some(IssuerResponse {
            arc,
            issuer_auth_data: iad,
            scripts: scripts.into(),
            auth_code: e.auth_code.as_deref().and_then(super::wire::auth_code_of),
        }))
    }
}

/// Classifies the reply to [`create_request`]: a final payment is decided; a `NEW` or
/// `PENDING` one is [`Reply::Pending`] with its reference.
pub fn classify_create(ex: &Exchange, req: &AuthorizationRequest) -> Reply<AuthorizationResult> {
    use AuthorizationResult as A;
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return Reply::Done(s.auth()),
    };
    match reply.status {
        200 | 201 => {}
        401 => return Reply::TokenRejected,
        409 => return Reply::Duplicate,
        s => {
            return Reply::Done(A::Unavailable {
                reason: format!("pay1st: http {s}"),
            })
        }
    }
    match serde_json::from_slice::<Payment>(&reply.body) {
        Ok(p)
            if p.partner_reference
                .as_deref()
                .is_some_and(|r| r != req.reference.0) =>
        {
            Reply::Done(A::Unknown {
                reason: "pay1st: create answered another partnerReference".into(),
            })
        }
        Ok(p) => match (p.state(), p.reference.as_deref().filter(|r| !r.is_empty())) {
            (Some(TxnState::Pending), Some(reference)) => Reply::Pending(reference.to_owned()),
            _ => Reply::Done(payment_result(&p, req)),
        },
        Err(_) => Reply::Done(A::Unknown {
            reason: "pay1st: unreadable payment".into(),
        }),
    }
}

/// The authorization result a payment stands for.
pub fn payment_result(p: &Payment, req: &AuthorizationRequest) -> AuthorizationResult {
    use AuthorizationResult as A;
    let Some(gateway_id) = p.reference.clone().filter(|r| !r.is_empty()) else {
        return A::Unknown {
            reason: "pay1st: payment without reference".into(),
        };
    };
    let Some(issuer) = p.issuer() else {
        return A::Unknown {
            reason: "pay1st: unreadable emvResponse".into(),
        };
    };
    match p.state() {
        Some(TxnState::Approved) => {
            if p.currency_code.as_deref() != Some(req.amount.currency().alpha) {
                return A::Unknown {
                    reason: "pay1st: currency mismatch".into(),
                };
            }
            A::Approved {
                gateway_id,
                approved_amount: p
                    .amount()
                    .filter(|a| a.minor() > 0 && a.minor() <= req.amount.minor())
                    .unwrap_or(req.amount),
                // No EMV response from the real API: the card decides on the ARC alone.
                issuer: issuer.unwrap_or_else(|| super::wire::arc_only(*b"00")),
            }
        }
        Some(TxnState::Declined | TxnState::Voided | TxnState::Refunded) => A::Declined {
            gateway_id: Some(gateway_id),
            code: issuer
                .as_ref()
                .map(|i| String::from_utf8_lossy(&i.arc).into_owned()),
            reason: format!("pay1st: {}", short(p.status.as_deref().unwrap_or("failed"))),
            issuer: issuer.unwrap_or_else(|| super::wire::arc_only(*b"05")),
        },
        // NEW/PENDING after following it: not final (a hosted checkout without the [EXT]).
        _ => A::Unknown {
            reason: format!(
                "pay1st: payment {}",
                short(p.status.as_deref().unwrap_or("?"))
            ),
        },
    }
}

fn status_of(p: &Payment) -> StatusResult {
    match (p.reference.clone(), p.state()) {
        (Some(gateway_id), Some(state)) => StatusResult::Found(TxnStatus {
            gateway_id,
            state,
            amount: p.amount(),
        }),
        _ => StatusResult::Unknown {
            reason: "pay1st: unreadable payment".into(),
        },
    }
}

/// Classifies "Query Payment Status" for the payment with Pay1st reference
/// `gateway_reference`: one payment object.
pub fn classify_lookup(
    ex: &Exchange,
    gateway_reference: &str,
) -> Reply<(StatusResult, Option<Payment>)> {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return Reply::Done((s.status(), None)),
    };
    match reply.status {
        200 => {}
        401 => return Reply::TokenRejected,
        // The page lists 404 among the failure responses.
        404 => return Reply::Done((StatusResult::NotFound, None)),
        s => {
            return Reply::Done((
                StatusResult::Unknown {
                    reason: format!("pay1st: http {s}"),
                },
                None,
            ))
        }
    }
    match serde_json::from_slice::<Payment>(&reply.body) {
        Ok(p) if p.reference.as_deref() == Some(gateway_reference) => {
            Reply::Done((status_of(&p), Some(p)))
        }
        Ok(_) => Reply::Done((
            StatusResult::Unknown {
                reason: "pay1st: lookup answered another payment".into(),
            },
            None,
        )),
        Err(_) => Reply::Done((
            StatusResult::Unknown {
                reason: "pay1st: unreadable payment".into(),
            },
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::wire::{HttpReply, TransportError};
    use crate::txn::host::Reference;
    use bytes::Bytes;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn cfg() -> Pay1stConfig {
        Pay1stConfig {
            base_url: "http://127.0.0.1:1/pay1st".into(),
            api_key: Secret::new("p1_sandbox_key"),
            api_secret: Secret::new("p1_sandbox_secret"),
            signing_key: Secret::new("hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y"),
            country_code: "NG".into(),
            callback_url: None,
            webhook_url: None,
            emv_extension: true,
            token_refresh_secs: 3000,
        }
    }

    fn req(minor: u64, cur: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference("4a662291".into()),
            kind: AuthKind::Sale,
            amount: Money::from_minor(minor, cur).unwrap(),
            amount_other: Money::from_minor(0, cur).unwrap(),
            entry_mode: EntryMode::Chip,
            icc_data: Bytes::from_static(&[0x9F, 0x27, 0x01, 0x80]),
            masked_pan: "476173******0010".into(),
            last4: None,
            brand: None,
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        }
    }

    fn reply(status: u16, body: &str) -> Exchange {
        Ok(HttpReply {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    /// The published vector (P1:gateway-generating-signatures), JSON exactly as the page
    /// prints it, stray `<` and `>` included (gateways.md §3.2).
    #[test]
    fn published_signature_vector() {
        let body = r#"{"countryCode":"NG","currencyCode":"NGN","amount":100,"partnerReference":"4a662291-2840-4bcd-aae9-553ab24601ed","callbackSuccessUrl":"<https://callback.success","callbackFailureUrl":"https://callback.failure","callbackPendingUrl":"https://callback.pending","callbackCancelUrl":"https://callback.cancel","webhookUrl":"https://webhook.success","products":[{"title":"10> Credits","sku":"12345","price":100,"quantity":1,"currencyCode":"NGN"}],"metadata":[{"key":"customerId","value":"1"}]}"#;
        assert_eq!(
            sign(
                "hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y",
                "2025-03-17T08:10:52.544247646Z",
                body.as_bytes()
            ),
            "85aa0862aa052f737d3cf4d38f92091ea7c015e782d207ea18cc5641d3e47755"
        );
    }

    #[test]
    fn signs_the_exact_bytes_sent() {
        let r = create_request(&cfg(), &req(1234, "NGN")).unwrap();
        let s = signed(&cfg(), &Secret::new("tok"), 1_742_199_052, r);
        assert_eq!(s.header("AccessToken"), Some("Bearer tok"));
        assert_eq!(s.header("X-TIMESTAMP"), Some("2025-03-17T08:10:52Z"));
        assert_eq!(s.header("Content-Type"), Some(CT_PAYMENT));
        let mut m =
            Hmac::<Sha256>::new_from_slice(b"hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y").unwrap();
        m.update(b"2025-03-17T08:10:52Z");
        m.update(&s.body);
        assert_eq!(
            s.header("X-SIGNATURE"),
            Some(hex::encode(m.finalize().into_bytes()).as_str())
        );
        assert_eq!(
            std::str::from_utf8(&s.body).unwrap(),
            r#"{"amount":12.34,"countryCode":"NG","currencyCode":"NGN","partnerReference":"4a662291","products":[{"title":"Card payment","sku":"emvbridge-card","price":12.34,"quantity":1,"currencyCode":"NGN"}],"metadata":[{"key":"maskedPan","value":"476173******0010"}],"emv":{"iccData":"9F270180","entryMode":"chip"}}"#
        );
        let mut plain = cfg();
        plain.emv_extension = false;
        plain.callback_url = Some("https://pos.example/cb".into());
        let b = create_request(&plain, &req(100, "NGN")).unwrap().body;
        let t = std::str::from_utf8(&b).unwrap();
        assert!(
            !t.contains(r#""emv""#)
                && t.contains(r#""callbackCancelUrl":"https://pos.example/cb/cancel""#),
            "{t}"
        );
        let mut pre = req(1, "NGN");
        pre.kind = AuthKind::PreAuth;
        assert!(create_request(&cfg(), &pre).is_err());
        let mut swiped = req(100, "NGN");
        swiped.entry_mode = EntryMode::Swipe;
        let e = create_request(&plain, &swiped).unwrap_err();
        assert!(e.contains("no track field"), "{e}");
        let t = create_request(&cfg(), &swiped).unwrap().body;
        assert!(std::str::from_utf8(&t)
            .unwrap()
            .contains(r#""entryMode":"swipe""#));
        let mut pin = req(100, "NGN");
        pin.online_pin = Some(crate::txn::host::OnlinePin {
            block: emvbridge_protocol::emv::SecretBytes::from_slice(&[0xA5; 8]),
            ksn: vec![0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x01],
        });
        assert!(create_request(&plain, &pin)
            .unwrap_err()
            .contains("no PIN block"));
        let t = create_request(&cfg(), &pin).unwrap().body;
        assert!(
            std::str::from_utf8(&t)
                .unwrap()
                .contains(r#""pinBlock":"A5A5A5A5A5A5A5A5","ksn":"FFFF9876543210E00001"}"#),
            "{t:?}"
        );
    }

    #[test]
    fn token_calls() {
        let t = token_request(&cfg());
        assert_eq!(t.path, "/api/pay1st/auth/token");
        assert_eq!(t.header("Content-Type"), Some(CT_AUTH));
        assert_eq!(
            t.header("Authorization"),
            Some("Basic cDFfc2FuZGJveF9rZXk6cDFfc2FuZGJveF9zZWNyZXQ=")
        );
        assert_eq!(&t.body[..], br#"{"role":"API_USER"}"#);
        let tok = parse_tokens(
            &reply(
                200,
                r#"{"role":"API_USER","accessToken":"YWJj","refreshToken":"ZGVm"}"#,
            ),
            9,
        )
        .unwrap();
        assert_eq!((tok.access.expose(), tok.issued_at), ("YWJj", 9));
        assert!(parse_tokens(&reply(401, "{}"), 0).is_err());
        assert!(parse_tokens(&reply(200, r#"{"accessToken":""}"#), 0).is_err());
        let r = refresh_request(&tok);
        assert_eq!(&r.body[..], br#"{"role":"API_USER","refreshToken":"ZGVm"}"#);
        assert_eq!(r.header("Content-Type"), Some(CT_AUTH));
        assert_eq!(r.header("Accept"), Some(CT_AUTH));
    }

    #[test]
    fn create_outcomes() {
        let r = |s, b: &str| classify_create(&reply(s, b), &req(1234, "NGN"));
        // A new payment is NEW (the status life cycle starts there): follow its reference.
        assert_eq!(
            r(
                201,
                r#"{"reference":"C-1-P","partnerReference":"4a662291","countryCode":"NG","currencyCode":"NGN","amount":12.34,"status":"NEW"}"#
            ),
            Reply::Pending("C-1-P".into())
        );
        assert_eq!(
            r(200, r#"{"reference":"C-1-P","status":"PENDING"}"#),
            Reply::Pending("C-1-P".into())
        );
        match r(
            200,
            r#"{"reference":"P1AB","partnerReference":"4a662291","status":"SUCCESSFUL","amount":12.34,"currencyCode":"NGN","emvResponse":{"arc":"00","issuerAuthData":"11223344556677883030"}}"#,
        ) {
            Reply::Done(AuthorizationResult::Approved {
                gateway_id,
                approved_amount,
                issuer,
            }) => {
                assert_eq!(
                    (gateway_id.as_str(), approved_amount.minor()),
                    ("P1AB", 1234)
                );
                assert!(issuer.issuer_auth_data.is_some());
            }
            other => panic!("{other:?}"),
        }
        // No EMV response (the real API): ARC from the result only.
        assert!(
            matches!(r(200, r#"{"reference":"P1","status":"SUCCESSFUL","amount":12.34,"currencyCode":"NGN"}"#),
            Reply::Done(AuthorizationResult::Approved { issuer, .. }) if &issuer.arc == b"00" && issuer.issuer_auth_data.is_none())
        );
        for end in ["FAILED", "CANCELLED", "ABANDONED"] {
            let b = format!(
                r#"{{"reference":"P1","status":"{end}","amount":12.34,"currencyCode":"NGN"}}"#
            );
            assert!(
                matches!(r(200, &b),
                Reply::Done(AuthorizationResult::Declined { issuer, code: None, .. }) if &issuer.arc == b"05"),
                "{end}"
            );
        }
        // Statuses outside the official list, and a NEW payment without a reference.
        for b in [
            r#"{"reference":"P1","status":"REFUNDED","amount":12.34,"currencyCode":"NGN"}"#,
            r#"{"status":"NEW"}"#,
            r#"{"reference":"P1","partnerReference":"other","status":"SUCCESSFUL","amount":12.34,"currencyCode":"NGN"}"#,
        ] {
            assert!(
                matches!(r(201, b), Reply::Done(AuthorizationResult::Unknown { .. })),
                "{b}"
            );
        }
        assert!(matches!(
            r(200, r#"{"reference":"P1","status":"SUCC"#),
            Reply::Done(AuthorizationResult::Unknown { .. })
        ));
        assert!(matches!(
            r(503, ""),
            Reply::Done(AuthorizationResult::Unknown { .. })
        ));
        assert!(matches!(
            r(400, r#"{"errorMessage":"x","errorCode":"BAD_REQUEST"}"#),
            Reply::Done(AuthorizationResult::Unavailable { .. })
        ));
        assert_eq!(
            r(409, r#"{"errorCode":"DUPLICATE_REFERENCE"}"#),
            Reply::Duplicate
        );
        assert_eq!(
            r(401, r#"{"errorCode":"TOKEN_EXPIRED"}"#),
            Reply::TokenRejected
        );
        assert!(matches!(
            classify_create(&Err(TransportError::NotSent("x".into())), &req(1, "NGN")),
            Reply::Done(AuthorizationResult::Unavailable { .. })
        ));
    }

    #[test]
    fn lookups() {
        let l = lookup_request("C-142710055596150-P");
        assert_eq!(l.path, "/api/pay1st/payments?reference=C-142710055596150-P");
        assert_eq!(l.header("Content-Type"), Some(CT_PAYMENT));
        assert_eq!(
            lookup_request("a&b").path,
            "/api/pay1st/payments?reference=a%26b"
        );
        // The page's example answer: one payment, not a list.
        let one = r#"{"countryCode":"NG","currencyCode":"NGN","amount":100,"reference":"C-142710055596150-P","partnerReference":"0e9c0b41","partnerSettings":{"partnerId":9},"products":[],"metadata":[],"status":"NEW"}"#;
        match classify_lookup(&reply(200, one), "C-142710055596150-P") {
            Reply::Done((StatusResult::Found(s), Some(_))) => {
                assert_eq!(s.state, TxnState::Pending);
                assert_eq!(s.amount.map(|a| a.minor()), Some(10_000));
            }
            other => panic!("{other:?}"),
        }
        let ok = r#"{"reference":"P1X","partnerReference":"4a662291","status":"SUCCESSFUL","amount":12.34,"currencyCode":"USD"}"#;
        assert!(matches!(
            classify_lookup(&reply(200, ok), "P1X"),
            Reply::Done((
                StatusResult::Found(TxnStatus {
                    state: TxnState::Approved,
                    ..
                }),
                _
            ))
        ));
        let abandoned =
            r#"{"reference":"P1X","status":"ABANDONED","amount":1500,"currencyCode":"JPY"}"#;
        assert!(matches!(
            classify_lookup(&reply(200, abandoned), "P1X"),
            Reply::Done((
                StatusResult::Found(TxnStatus {
                    state: TxnState::Declined,
                    ..
                }),
                _
            ))
        ));
        // Another payment than asked for, or a list: never taken as ours.
        assert!(matches!(
            classify_lookup(&reply(200, ok), "P2"),
            Reply::Done((StatusResult::Unknown { .. }, None))
        ));
        assert!(matches!(
            classify_lookup(&reply(200, r#"{"data":[]}"#), "P1X"),
            Reply::Done((StatusResult::Unknown { .. }, None))
        ));
        assert!(matches!(
            classify_lookup(&reply(404, "{}"), "P1X"),
            Reply::Done((StatusResult::NotFound, None))
        ));
        assert!(matches!(
            classify_lookup(&reply(200, "{"), "P1X"),
            Reply::Done((StatusResult::Unknown { .. }, _))
        ));
    }

    #[test]
    fn config_from_env() {
        let e = Pay1stConfig::from_lookup(Environment::Production, &|n| {
            (n == "PAY1ST_API_KEY").then(|| "k".into())
        })
        .unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing(vec![
                "PAY1ST_API_URL",
                "PAY1ST_API_SECRET",
                "PAY1ST_SIGNING_KEY",
                "PAY1ST_COUNTRY_CODE"
            ])
        );
        let vars = |n: &str| {
            Some(match n {
                "PAY1ST_API_URL" => "https://payments.example".to_owned(),
                "PAY1ST_COUNTRY_CODE" => "ng".to_owned(),
                "PAY1ST_CALLBACK_URL" | "PAY1ST_WEBHOOK_URL" | "PAY1ST_EMV_EXTENSION" => {
                    return None
                }
                _ => format!("secret-{n}"),
            })
        };
        let c = Pay1stConfig::from_lookup(Environment::Production, &vars).unwrap();
        assert_eq!((c.country_code.as_str(), c.emv_extension), ("NG", false));
        assert!(!format!("{c:?}").contains("secret-PAY1ST_API_SECRET"));
        assert!(
            Pay1stConfig::from_lookup(Environment::Sandbox, &vars)
                .unwrap()
                .emv_extension
        );
        let on = Pay1stConfig::from_lookup(Environment::Production, &|n| match n {
            "PAY1ST_EMV_EXTENSION" => Some("on".into()),
            n => vars(n),
        })
        .unwrap();
        assert!(on.emv_extension, "by the merchant's contract");
    }

    #[test]
    fn pos_reference_goes_in_the_metadata_partner_reference_stays_ours() {
        let body = |r: &AuthorizationRequest| {
            let b = create_request(&cfg(), r).unwrap().body;
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()
        };
        let mut r = req(1234, "NGN");
        assert_eq!(
            body(&r)["metadata"],
            serde_json::json!([{"key": "maskedPan", "value": "476173******0010"}])
        );
        r.pos_reference = Some(crate::txn::host::PosReference::new("T7 #1001").unwrap());
        let v = body(&r);
        assert_eq!(
            v["metadata"],
            serde_json::json!([
                {"key": "maskedPan", "value": "476173******0010"},
                {"key": "posReference", "value": "T7 #1001"}
            ])
        );
        assert_eq!(v["partnerReference"], "4a662291");
        let longest = "5".repeat(crate::txn::host::PosReference::MAX_LEN);
        r.pos_reference = Some(crate::txn::host::PosReference::new(longest.clone()).unwrap());
        assert_eq!(body(&r)["metadata"][1]["value"], longest.as_str());
    }
}
