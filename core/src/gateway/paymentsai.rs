//! PaymentsAI dialect, sans-IO (gateways.md §2, §4.4), following PaymentsAI's pages and the
//! Rebilly API definition PaymentsAI is built on (`docs/gateway-specs/paymentsai/`,
//! `docs/gateway-specs/rebilly/`).
//!
//! - Auth: `Authorization: ApiKey <accountId>_<apiKey>_<apiKeyId>` on every call; all paths
//!   are organization scoped: `/v1/public-api/organizations/{organizationId}/…`.
//! - Sale / pre-auth: `POST …/transactions` with Rebilly's required `type`, `websiteId`,
//!   `customerId`, `currency`, `amount`, plus `requestId` (Rebilly's de-duplication field,
//!   returned on the transaction and so filterable) and PAI's `idempotencyKey` (≤ 100), both
//!   our [`Reference`]. **201 even when declined**: `result` decides.
//! - Card data: no public definition carries card-present EMV data. The \[EXT\]
//!   `paymentInstruction.emv {iccData, entryMode}` (reply `emvResponse`) is sent only when
//!   [`PaiConfig::emv_extension`] is on (the sandbox; production only by contract). Without
//!   it a card-present sale is refused before sending: a `POST /transactions` without an
//!   instruction would charge the customer's default instrument. A stripe read goes in the
//!   same object (`entryMode: "swipe"`, the masked and the SRED-enciphered track in
//!   `iccData`): Rebilly's payment card takes a clear PAN and expiry, and no definition has
//!   a track field. The online PIN is \[EXT\] `emv.pinBlock` + `emv.ksn` (hex): no PIN field
//!   exists either. Neither is logged.
//! - The POS's own reference ([`PosReference`]) goes in Rebilly's `description` ("Payment
//!   description", ≤ [`MAX_DESCRIPTION`]) of a sale, pre-authorization and capture, and in the
//!   refund's `description` ("Description of the refund", ≤ 255); the reply's transaction
//!   returns it. `requestId`, `idempotencyKey` and `metadata.reference` stay our [`Reference`].
//! - Capture: a second `sale` on the authorization's `paymentInstrumentId` (PAI's
//!   authorize-and-capture page; Rebilly's `PostTransaction` has no parent field).
//! - Void: Rebilly has none ("To refund or void, see Refund a transaction"): a void is a
//!   `POST …/transactions/{id}/refund` without an amount (the whole refundable amount).
//! - Lookup by our reference: `GET …/transactions?filter=requestId:<reference>` (Rebilly's
//!   list takes `limit, offset, filter, q, sort, expand`; no `idempotencyKey` parameter).
//! - Replies: Rebilly returns the resource itself (a transaction, or an array for a list);
//!   PaymentsAI's pages show no envelope. A `{"data": …}` wrapper is accepted too.
//! - Amounts are decimal major units (`47.77`), written and read as exact text.
//! - Decline reasons are not exposed: a decline has no code unless the \[EXT\] EMV response
//!   carries an ARC.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::config::{base_url, ConfigError, EnvReader, Environment, Secret};
use super::ops::{
    CaptureRequest, OpResult, RefundRequest, StatusResult, TxnState, TxnStatus, VoidRequest,
};
use super::wire::{
    arc_of, decimal_json, parse_decimal, pct, pin_hex, screen, short, Exchange, HttpRequest,
};
use crate::money::Money;
use crate::txn::host::IssuerResponse;
use crate::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, PosReference, Reference,
};

/// Stage API host (§2.1).
pub const STAGING_URL: &str = "https://staging-api.payments.ai";
/// Production API host (§2.1).
pub const PRODUCTION_URL: &str = "https://api.payments.ai";
/// Longest `idempotencyKey` (PAI's idempotency page).
pub const MAX_IDEMPOTENCY_KEY: usize = 100;
/// Longest `requestId` (Rebilly `PostTransaction`: `maxLength: 50`, pattern `^[\-\w]+$`).
pub const MAX_REQUEST_ID: usize = 50;
/// Longest `description` (Rebilly `PostTransaction` and `PostTransactionRefund`:
/// `maxLength: 255`, no pattern), where the POS reference goes.
pub const MAX_DESCRIPTION: usize = 255;

// Every valid POS reference fits the field whole: it is never cut on the way out.
const _: () = assert!(PosReference::MAX_LEN <= MAX_DESCRIPTION);

/// PaymentsAI adapter configuration.
#[derive(Debug, Clone)]
pub struct PaiConfig {
    /// API host without path (`https://staging-api.payments.ai`, or the sandbox's `…/pai`).
    pub base_url: String,
    /// `org_…`.
    pub organization_id: String,
    /// The full credential `<accountId>_<apiKey>_<apiKeyId>` sent after `ApiKey `.
    pub api_key: Secret,
    /// `websiteId` of every transaction (required by Rebilly's `PostTransaction`).
    pub website_id: String,
    /// `customerId` of every transaction: the customer the terminal's sales belong to.
    pub customer_id: String,
    /// Send the \[EXT\] EMV instruction (see the module docs). On for the sandbox only,
    /// unless configured.
    pub emv_extension: bool,
}

impl PaiConfig {
    /// Variables as PAI names them (docs/gateways.md §2.2): `API_URL` (defaults to the
    /// stage or production host; required for [`Environment::Sandbox`]), `API_KEY` (the full
    /// `<accountId>_<apiKey>_<apiKeyId>`), `ORGANIZATION_ID`, `WEBSITE_ID`, `CUSTOMER_ID`;
    /// optional `PAI_EMV_EXTENSION` (`on`/`off`, default on only for the sandbox).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming every missing variable; [`ConfigError::Invalid`].
    pub fn from_lookup(
        env: Environment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PaiConfig, ConfigError> {
        let mut r = EnvReader::new(lookup);
        let url = match env {
            Environment::Sandbox => r.required("API_URL"),
            Environment::Staging => r.optional("API_URL").unwrap_or_else(|| STAGING_URL.into()),
            Environment::Production => r
                .optional("API_URL")
                .unwrap_or_else(|| PRODUCTION_URL.into()),
        };
        let key = r.required("API_KEY");
        let org = r.required("ORGANIZATION_ID");
        let website = r.required("WEBSITE_ID");
        let customer = r.required("CUSTOMER_ID");
        let emv = r.optional("PAI_EMV_EXTENSION");
        r.finish()?;
        let emv_extension = match emv {
            None => env == Environment::Sandbox,
            Some(v) => {
                super::config::switch(&v).ok_or(ConfigError::Invalid("PAI_EMV_EXTENSION"))?
            }
        };
        // Rebilly ids: at most 50 characters (`websiteId`, `customerId` schemas).
        let id_ok = |v: &str| {
            !v.is_empty()
                && v.len() <= 50
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !id_ok(&website) {
            return Err(ConfigError::Invalid("WEBSITE_ID"));
        }
        if !id_ok(&customer) {
            return Err(ConfigError::Invalid("CUSTOMER_ID"));
        }
        let key = key.strip_prefix("ApiKey ").unwrap_or(&key).to_owned();
        if key.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid("API_KEY"));
        }
        if org.is_empty()
            || !org
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::Invalid("ORGANIZATION_ID"));
        }
        Ok(PaiConfig {
            base_url: base_url(&url, "API_URL")?,
            organization_id: org,
            api_key: Secret::new(key),
            website_id: website,
            customer_id: customer,
            emv_extension,
        })
    }

    fn org_path(&self, rest: &str) -> String {
        format!(
            "/v1/public-api/organizations/{}{rest}",
            self.organization_id
        )
    }

    fn authed(&self, mut r: HttpRequest) -> HttpRequest {
        r.set_header("Authorization", format!("ApiKey {}", self.api_key.expose()));
        r
    }
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

/// `paymentInstruction`: Rebilly's "Payment instrument" form, or the \[EXT\] EMV data.
#[derive(Serialize)]
enum Instruction<'a> {
    #[serde(rename = "emv")]
    Emv(Emv<'a>),
    #[serde(rename = "paymentInstrumentId")]
    Instrument(&'a str),
}

#[derive(Serialize)]
struct Metadata<'a> {
    reference: &'a str,
    #[serde(rename = "maskedPan", skip_serializing_if = "str::is_empty")]
    masked_pan: &'a str,
}

/// Rebilly's `PostTransaction` (required: `type, websiteId, customerId, currency, amount`)
/// with PAI's `idempotencyKey` and `metadata`.
#[derive(Serialize)]
struct TxnBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "websiteId")]
    website_id: &'a str,
    #[serde(rename = "customerId")]
    customer_id: &'a str,
    currency: &'a str,
    amount: Box<RawValue>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(rename = "idempotencyKey")]
    idempotency_key: &'a str,
    /// The POS's reference (Rebilly's free-text "Payment description").
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "paymentInstruction")]
    instruction: Instruction<'a>,
    metadata: Metadata<'a>,
}

/// Whether our reference can be both `requestId` (Rebilly: `^[\-\w]+$`, ≤ 50) and
/// `idempotencyKey` (≤ 100), and stand unquoted in a `filter` value.
fn valid_key(r: &Reference) -> bool {
    !r.0.is_empty()
        && r.0.len() <= MAX_REQUEST_ID
        && r.0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `POST …/transactions` for a sale or pre-authorization with the \[EXT\] EMV instruction.
/// Rebuilding it for a retry gives the same bytes, so the idempotent repeat matches.
///
/// # Errors
/// A reason (nothing sent) for a refund (use [`refund_request`]), an unusable key, or a
/// card-present sale without the EMV extension.
pub fn authorize_request(
    cfg: &PaiConfig,
    req: &AuthorizationRequest,
) -> Result<HttpRequest, &'static str> {
    let kind = match req.kind {
        AuthKind::Sale => "sale",
        AuthKind::PreAuth => "authorize",
        AuthKind::Refund => return Err("paymentsai: refund needs the original transaction"),
    };
    if !valid_key(&req.reference) {
        return Err("paymentsai: reference unusable as requestId/idempotencyKey");
    }
    if !cfg.emv_extension {
        return Err(
            "paymentsai: no card-present instruction without the EMV extension (PAI_EMV_EXTENSION)",
        );
    }
    let (pin_block, ksn) = pin_hex(req).unzip();
    let body = TxnBody {
        kind,
        website_id: &cfg.website_id,
        customer_id: &cfg.customer_id,
        currency: req.amount.currency().alpha,
        amount: decimal_json(&req.amount),
        request_id: &req.reference.0,
        idempotency_key: &req.reference.0,
        description: req.pos_reference.as_ref().map(PosReference::as_str),
        instruction: Instruction::Emv(Emv {
            icc_data: hex::encode_upper(&req.icc_data),
            entry_mode: match req.entry_mode {
                EntryMode::Chip => "chip",
                EntryMode::Contactless => "contactless",
                // [EXT] a stripe read (or MSD tap): the reader's masked track and its
                // SRED-enciphered track (`FF7F`) ride in `iccData`. Rebilly's payment card
                // takes a clear PAN and expiry, which a SRED reader never gives the bridge,
                // and no definition has a track field.
                EntryMode::Swipe => "swipe",
            },
            pin_block,
            ksn,
        }),
        metadata: Metadata {
            reference: &req.reference.0,
            masked_pan: &req.masked_pan,
        },
    };
    let body = serde_json::to_vec(&body).map_err(|_| "paymentsai: cannot encode")?;
    Ok(cfg.authed(HttpRequest::post_json(cfg.org_path("/transactions"), body)))
}

/// Capture: a second transaction `type:"sale"` on the authorization's payment instrument
/// (PAI's authorize-and-capture page), keyed by the capture's own reference. `auth` is the
/// authorization as [`get_request`] returned it.
///
/// # Errors
/// A reason (nothing sent) for an unusable key or an authorization without an instrument.
pub fn capture_request(
    cfg: &PaiConfig,
    req: &CaptureRequest,
    auth: &PaiTxn,
) -> Result<HttpRequest, &'static str> {
    if !valid_key(&req.reference) {
        return Err("paymentsai: reference unusable as requestId/idempotencyKey");
    }
    if auth.id.as_deref() != Some(req.gateway_id.as_str())
        || auth.kind.as_deref() != Some("authorize")
    {
        return Err("paymentsai: capture of a transaction that is not the authorization");
    }
    let Some(instrument) = auth.payment_instrument_id() else {
        return Err("paymentsai: the authorization names no payment instrument");
    };
    let body = TxnBody {
        kind: "sale",
        website_id: &cfg.website_id,
        customer_id: auth.customer_id.as_deref().unwrap_or(&cfg.customer_id),
        currency: req.amount.currency().alpha,
        amount: decimal_json(&req.amount),
        request_id: &req.reference.0,
        idempotency_key: &req.reference.0,
        description: req.pos_reference.as_ref().map(PosReference::as_str),
        instruction: Instruction::Instrument(instrument),
        metadata: Metadata {
            reference: &req.reference.0,
            masked_pan: "",
        },
    };
    let body = serde_json::to_vec(&body).map_err(|_| "paymentsai: cannot encode")?;
    Ok(cfg.authed(HttpRequest::post_json(cfg.org_path("/transactions"), body)))
}

#[derive(Serialize)]
struct RefundBody<'a> {
    amount: Box<RawValue>,
    /// The POS's reference (Rebilly's "Description of the refund").
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// `POST …/transactions/{id}/refund {amount, description?}` (PAI's refund page; the
/// description is the POS's reference, when it gave one). Not idempotent: never retried.
pub fn refund_request(cfg: &PaiConfig, req: &RefundRequest) -> HttpRequest {
    let body = serde_json::to_vec(&RefundBody {
        amount: decimal_json(&req.amount),
        description: req.pos_reference.as_ref().map(PosReference::as_str),
    })
    .unwrap_or_default();
    cfg.authed(HttpRequest::post_json(
        cfg.org_path(&format!("/transactions/{}/refund", pct(&req.gateway_id))),
        body,
    ))
}

/// A void, as Rebilly defines one: `POST …/transactions/{id}/refund {amount}` of the whole
/// amount of `txn` (the transaction as [`get_request`] returned it). PAI's page makes the
/// amount optional, Rebilly's `PostTransactionRefund` requires it: it is always sent.
///
/// # Errors
/// A reason (nothing sent) when `txn` is not the transaction or has no readable amount.
pub fn void_request(
    cfg: &PaiConfig,
    req: &VoidRequest,
    txn: &PaiTxn,
) -> Result<HttpRequest, &'static str> {
    if txn.id.as_deref() != Some(req.gateway_id.as_str()) {
        return Err("paymentsai: void of another transaction");
    }
    let amount = txn
        .amount()
        .filter(|a| a.minor() > 0)
        .ok_or("paymentsai: transaction without a readable amount")?;
    Ok(refund_request(
        cfg,
        &RefundRequest {
            reference: req.reference.clone(),
            gateway_id: req.gateway_id.clone(),
            amount,
            pos_reference: None,
        },
    ))
}

/// `GET …/transactions/{id}`.
pub fn get_request(cfg: &PaiConfig, gateway_id: &str) -> HttpRequest {
    cfg.authed(HttpRequest::get(
        cfg.org_path(&format!("/transactions/{}", pct(gateway_id))),
    ))
}

/// `GET …/transactions?filter=requestId:<reference>&limit=100`: Rebilly's list filter on the
/// `requestId` every request of ours carries. `None` for a reference that is not a valid
/// `requestId` (it was then never sent).
pub fn lookup_request(cfg: &PaiConfig, reference: &Reference) -> Option<HttpRequest> {
    valid_key(reference).then(|| {
        cfg.authed(HttpRequest::get(cfg.org_path(&format!(
            "/transactions?filter={}&limit=100",
            pct(&format!("requestId:{}", reference.0))
        ))))
    })
}

// ---------------------------------------------------------------------------------------------
// Replies

/// The resource in a reply body: Rebilly returns the resource itself; PaymentsAI's pages
/// show no envelope, so a `{"data": …}` wrapper (seen only on PAI's stage tokenization
/// endpoint) is accepted too. (No Rebilly transaction has a `data` field.)
fn unwrapped(body: &[u8]) -> &[u8] {
    #[derive(Deserialize)]
    struct Wrapped<'a> {
        #[serde(borrow)]
        data: &'a RawValue,
    }
    // Only an object can be a wrapper (serde would read an array as a struct's fields).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return body;
    }
    match serde_json::from_slice::<Wrapped>(body) {
        Ok(w) => w.data.get().as_bytes(),
        Err(_) => body,
    }
}

/// The fields of a Rebilly `Transaction` the bridge reads.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct PaiTxn {
    /// Id.
    pub id: Option<String>,
    /// `sale`, `authorize`, `refund`, … (Rebilly's `type` enum).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `completed`, `waiting-capture`, `voided`, `refunded`, … (Rebilly's `status` enum).
    pub status: Option<String>,
    /// `approved`, `declined`, `canceled`, `abandoned`, `unknown`.
    pub result: Option<String>,
    /// Amount as exact JSON text.
    amount: Option<Box<RawValue>>,
    /// Currency.
    pub currency: Option<String>,
    /// The `requestId` it was created with (our reference).
    #[serde(rename = "requestId")]
    pub request_id: Option<String>,
    /// Its customer.
    #[serde(rename = "customerId")]
    pub customer_id: Option<String>,
    #[serde(rename = "paymentInstrument")]
    payment_instrument: Option<Instrument>,
    #[serde(rename = "emvResponse")]
    emv_response: Option<EmvResponse>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct Instrument {
    #[serde(rename = "paymentInstrumentId")]
    id: Option<String>,
}

impl PaiTxn {
    /// The amount in minor units, exact.
    pub fn amount(&self) -> Option<Money> {
        parse_decimal(self.amount.as_deref()?.get(), self.currency.as_deref()?)
    }

    /// The vaulted instrument it was charged on, if any.
    pub fn payment_instrument_id(&self) -> Option<&str> {
        self.payment_instrument
            .as_ref()?
            .id
            .as_deref()
            .filter(|i| !i.is_empty())
    }
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

impl EmvResponse {
    /// `None` when present but unreadable (malformed: the caller treats it as unknown).
    fn issuer(&self) -> Option<IssuerResponse> {
        let arc = arc_of(self.arc.as_deref()?)?;
        let iad = match self.issuer_auth_data.as_deref().filter(|s| !s.is_empty()) {
            Some(h) => Some(bytes::Bytes::from(
                hex::decode(h).ok().filter(|b| b.len() <= 16)?,
            )),
            None => None,
        };
        let mut scripts = Vec::new();
        for s in self.scripts.iter().take(8) {
            let b = hex::decode(s).ok().filter(|b| b.len() <= 256)?;
            scripts.extend_from_slice(&b);
        }
        Some(IssuerResponse {
            arc,
            issuer_auth_data: iad,
            scripts: scripts.into(),
            auth_code: self
                .auth_code
                .as_deref()
                .and_then(super::wire::auth_code_of),
        })
    }
}

fn parse_txn(body: &[u8]) -> Option<PaiTxn> {
    serde_json::from_slice::<PaiTxn>(unwrapped(body))
        .ok()
        .filter(|t| t.id.as_deref().is_some_and(|i| !i.is_empty()))
}

/// What Rebilly's `status`/`result` pair means for the bridge.
pub fn state_of(t: &PaiTxn) -> Option<TxnState> {
    Some(
        match (
            t.status.as_deref()?,
            t.result.as_deref().unwrap_or("unknown"),
        ) {
            ("voided", _) => TxnState::Voided,
            ("refunded" | "partially-refunded" | "waiting-refund", _) => TxnState::Refunded,
            (_, "declined" | "canceled" | "abandoned") => TxnState::Declined,
            ("never-sent", _) => TxnState::Declined,
            ("completed" | "disputed" | "waiting-capture", "approved") => TxnState::Approved,
            (
                "pending" | "sending" | "offsite" | "timeout" | "conn-error" | "waiting-approval"
                | "waiting-gateway",
                _,
            )
            | (_, "unknown") => TxnState::Pending,
            _ => return None,
        },
    )
}

/// Classifies the reply to [`authorize_request`].
pub fn classify_authorize(ex: &Exchange, req: &AuthorizationRequest) -> AuthorizationResult {
    use AuthorizationResult as A;
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return s.auth(),
    };
    match reply.status {
        200 | 201 => {}
        // Same key, different payload (strict mode): a transaction with our key exists.
        409 => {
            return A::Unknown {
                reason: "paymentsai: idempotency conflict".into(),
            }
        }
        // 400/401/403/404/413/422/429: refused before processing (§2.3).
        s => {
            return A::Unavailable {
                reason: format!("paymentsai: http {s}"),
            }
        }
    }
    let Some(t) = parse_txn(&reply.body) else {
        return A::Unknown {
            reason: "paymentsai: unreadable transaction".into(),
        };
    };
    let gateway_id = t.id.clone().unwrap_or_default();
    let issuer = match &t.emv_response {
        None => None,
        Some(e) => match e.issuer() {
            Some(i) => Some(i),
            None => {
                return A::Unknown {
                    reason: "paymentsai: unreadable emvResponse".into(),
                }
            }
        },
    };
    match state_of(&t) {
        Some(TxnState::Approved) => {
            let cur = req.amount.currency().alpha;
            if t.currency.as_deref() != Some(cur) {
                return A::Unknown {
                    reason: "paymentsai: currency mismatch".into(),
                };
            }
            let approved_amount = t
                .amount()
                .filter(|a| a.minor() > 0 && a.minor() <= req.amount.minor())
                .unwrap_or(req.amount);
            A::Approved {
                gateway_id,
                approved_amount,
                issuer: issuer.unwrap_or_else(|| super::wire::arc_only(*b"00")),
            }
        }
        Some(TxnState::Declined) => {
            // §2.3: decline reasons are not exposed; the [EXT] ARC is the only code.
            let code = issuer
                .as_ref()
                .map(|i| String::from_utf8_lossy(&i.arc).into_owned());
            A::Declined {
                gateway_id: Some(gateway_id),
                code,
                reason: format!(
                    "paymentsai: {}",
                    short(t.result.as_deref().unwrap_or("declined"))
                ),
                issuer: issuer.unwrap_or_else(|| super::wire::arc_only(*b"05")),
            }
        }
        // Pending (3DS/offsite), or a state that makes no sense for a new sale.
        _ => A::Unknown {
            reason: format!(
                "paymentsai: transaction {} {}",
                short(t.status.as_deref().unwrap_or("?")),
                short(t.result.as_deref().unwrap_or("?"))
            ),
        },
    }
}

/// Classifies the reply to a capture, refund or void (201 with the resulting transaction).
pub fn classify_op(ex: &Exchange) -> OpResult {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return s.op(),
    };
    match reply.status {
        200 | 201 => match parse_txn(&reply.body) {
            Some(t) if state_of(&t) == Some(TxnState::Declined) => OpResult::Refused {
                code: None,
                reason: "paymentsai: declined".into(),
            },
            Some(t) => OpResult::Done {
                gateway_id: t.id.unwrap_or_default(),
            },
            None => OpResult::Unknown {
                reason: "paymentsai: unreadable transaction".into(),
            },
        },
        404 => OpResult::NotFound,
        // 409: the state does not allow it; 422: amount > refundable (§2.3).
        s @ (409 | 422) => OpResult::Refused {
            code: Some(s.to_string()),
            reason: error_message(&reply.body),
        },
        s => OpResult::Unavailable {
            reason: format!("paymentsai: http {s}"),
        },
    }
}

fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        message: String,
    }
    serde_json::from_slice::<E>(body)
        .map(|e| short(&e.message))
        .unwrap_or_else(|_| "refused".into())
}

/// Classifies `GET …/transactions/{id}` into a status.
pub fn classify_get(ex: &Exchange) -> (StatusResult, Option<PaiTxn>) {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return (s.status(), None),
    };
    match reply.status {
        200 => match parse_txn(&reply.body) {
            Some(t) => (found(&t), Some(t)),
            None => (
                StatusResult::Unknown {
                    reason: "paymentsai: unreadable transaction".into(),
                },
                None,
            ),
        },
        404 => (StatusResult::NotFound, None),
        s => (
            StatusResult::Unknown {
                reason: format!("paymentsai: http {s}"),
            },
            None,
        ),
    }
}

fn found(t: &PaiTxn) -> StatusResult {
    match state_of(t) {
        Some(state) => StatusResult::Found(TxnStatus {
            gateway_id: t.id.clone().unwrap_or_default(),
            state,
            amount: t.amount(),
        }),
        None => StatusResult::Unknown {
            reason: "paymentsai: unknown status".into(),
        },
    }
}

/// Classifies the [`lookup_request`] list (an array of transactions): the sale or
/// authorization whose `requestId` is our reference.
pub fn classify_lookup(ex: &Exchange, reference: &Reference) -> (StatusResult, Option<PaiTxn>) {
    let reply = match screen(ex) {
        Ok(r) => r,
        Err(s) => return (s.status(), None),
    };
    if reply.status != 200 {
        return (
            StatusResult::Unknown {
                reason: format!("paymentsai: http {}", reply.status),
            },
            None,
        );
    }
    let Ok(list) = serde_json::from_slice::<Vec<PaiTxn>>(unwrapped(&reply.body)) else {
        return (
            StatusResult::Unknown {
                reason: "paymentsai: unreadable list".into(),
            },
            None,
        );
    };
    let hit = list.into_iter().find(|t| {
        t.request_id.as_deref() == Some(reference.0.as_str())
            && matches!(t.kind.as_deref(), Some("sale" | "authorize"))
            && t.id.is_some()
    });
    match hit {
        Some(t) => (found(&t), Some(t)),
        None => (StatusResult::NotFound, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::wire::{HttpReply, TransportError};
    use bytes::Bytes;

    fn cfg() -> PaiConfig {
        PaiConfig {
            base_url: "http://127.0.0.1:1/pai".into(),
            organization_id: "org_sandbox".into(),
            api_key: Secret::new("acc_sandbox_key_sandbox0001_kid_sandbox0001"),
            website_id: "web_sandbox".into(),
            customer_id: "cus_sandbox".into(),
            emv_extension: true,
        }
    }

    fn req(minor: u64, cur: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference("ref-7".into()),
            kind: AuthKind::Sale,
            amount: Money::from_minor(minor, cur).unwrap(),
            amount_other: Money::from_minor(0, cur).unwrap(),
            entry_mode: EntryMode::Contactless,
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

    #[test]
    fn authorize_request_shape() {
        let r = authorize_request(&cfg(), &req(1234, "USD")).unwrap();
        assert_eq!(
            r.path,
            "/v1/public-api/organizations/org_sandbox/transactions"
        );
        assert_eq!(
            r.header("authorization"),
            Some("ApiKey acc_sandbox_key_sandbox0001_kid_sandbox0001")
        );
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            r#"{"type":"sale","websiteId":"web_sandbox","customerId":"cus_sandbox","currency":"USD","amount":12.34,"requestId":"ref-7","idempotencyKey":"ref-7","paymentInstruction":{"emv":{"iccData":"9F270180","entryMode":"contactless"}},"metadata":{"reference":"ref-7","maskedPan":"476173******0010"}}"#
        );
        // JPY: no decimals.
        let j = authorize_request(&cfg(), &req(1500, "JPY")).unwrap();
        assert!(std::str::from_utf8(&j.body)
            .unwrap()
            .contains(r#""currency":"JPY","amount":1500,"#));
        // Same request twice → same bytes (safe idempotent retry).
        assert_eq!(r, authorize_request(&cfg(), &req(1234, "USD")).unwrap());
        let mut long = req(1, "USD");
        long.reference = Reference("x".repeat(51));
        assert!(
            authorize_request(&cfg(), &long).is_err(),
            "requestId: at most 50"
        );
        long.reference = Reference("a.b".into());
        assert!(
            authorize_request(&cfg(), &long).is_err(),
            "requestId: ^[-\\w]+$"
        );
        let mut pin = req(1234, "USD");
        pin.entry_mode = EntryMode::Swipe;
        pin.online_pin = Some(crate::txn::host::OnlinePin {
            block: emvbridge_protocol::emv::SecretBytes::from_slice(&[0x5A; 8]),
            ksn: vec![0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x07],
        });
        let p = authorize_request(&cfg(), &pin).unwrap();
        assert!(
            std::str::from_utf8(&p.body).unwrap().contains(
                r#""emv":{"iccData":"9F270180","entryMode":"swipe","pinBlock":"5A5A5A5A5A5A5A5A","ksn":"FFFF9876543210E00007"}"#
            ),
            "{p:?}"
        );
        let mut off = cfg();
        off.emv_extension = false;
        assert!(authorize_request(&off, &req(1, "USD"))
            .unwrap_err()
            .contains("EMV extension"));
        let mut pre = req(1, "USD");
        pre.kind = AuthKind::PreAuth;
        assert!(
            std::str::from_utf8(&authorize_request(&cfg(), &pre).unwrap().body)
                .unwrap()
                .starts_with(r#"{"type":"authorize","websiteId""#)
        );
    }

    #[test]
    fn created_but_declined_is_a_decline() {
        let body = r#"{"data":{"id":"txn_1","type":"sale","amount":10.51,"currency":"USD","status":"completed","result":"declined","combinedStatus":"declined","emvResponse":{"arc":"51","issuerAuthData":"00112233445566773531"}}}"#;
        match classify_authorize(&reply(201, body), &req(1051, "USD")) {
            AuthorizationResult::Declined {
                gateway_id,
                code,
                issuer,
                ..
            } => {
                assert_eq!(gateway_id.as_deref(), Some("txn_1"));
                assert_eq!(code.as_deref(), Some("51"));
                assert_eq!(&issuer.arc, b"51");
                assert_eq!(issuer.issuer_auth_data.unwrap().len(), 10);
            }
            other => panic!("{other:?}"),
        }
        // Without the [EXT] EMV response: no code, ARC 05.
        let plain = r#"{"id":"txn_2","amount":1,"currency":"USD","status":"completed","result":"declined"}"#;
        assert!(
            matches!(classify_authorize(&reply(201, plain), &req(100, "USD")),
            AuthorizationResult::Declined { code: None, issuer, .. } if &issuer.arc == b"05")
        );
    }

    #[test]
    fn approved_with_scripts_and_exact_amounts() {
        let body = r#"{"id":"txn_3","type":"sale","amount":12.34,"currency":"USD","status":"completed","result":"approved","emvResponse":{"arc":"00","issuerAuthData":"AABBCCDDEEFF00113030","scripts":["720A9F180400000001860100"]}}"#;
        match classify_authorize(&reply(201, body), &req(1234, "USD")) {
            AuthorizationResult::Approved {
                gateway_id,
                approved_amount,
                issuer,
            } => {
                assert_eq!(
                    (gateway_id.as_str(), approved_amount.minor()),
                    ("txn_3", 1234)
                );
                assert_eq!(issuer.scripts.len(), 12);
            }
            other => panic!("{other:?}"),
        }
        let jpy =
            r#"{"id":"t","amount":1500,"currency":"JPY","status":"completed","result":"approved"}"#;
        assert!(
            matches!(classify_authorize(&reply(201, jpy), &req(1500, "JPY")),
            AuthorizationResult::Approved { approved_amount, .. } if approved_amount.minor() == 1500)
        );
        let partial =
            r#"{"id":"t","amount":2.57,"currency":"USD","status":"completed","result":"approved"}"#;
        assert!(
            matches!(classify_authorize(&reply(201, partial), &req(278, "USD")),
            AuthorizationResult::Approved { approved_amount, .. } if approved_amount.minor() == 257)
        );
    }

    #[test]
    fn unknowns_and_unavailables() {
        let unknown = |ex: Exchange| {
            matches!(
                classify_authorize(&ex, &req(1, "USD")),
                AuthorizationResult::Unknown { .. }
            )
        };
        let unavailable = |ex: Exchange| {
            matches!(
                classify_authorize(&ex, &req(1, "USD")),
                AuthorizationResult::Unavailable { .. }
            )
        };
        assert!(unknown(reply(
            500,
            r#"{"errorCode":"x","statusCode":500,"message":"Internal"}"#
        )));
        assert!(unknown(reply(504, "")));
        assert!(unknown(reply(201, r#"{"id":"t","status":"compl"#)));
        assert!(
            unknown(reply(201, r#"{"status":"completed","result":"approved"}"#)),
            "no id"
        );
        assert!(unknown(reply(
            201,
            r#"{"id":"t","amount":1,"currency":"USD","status":"offsite","result":"unknown"}"#
        )));
        assert!(unknown(reply(
            201,
            r#"{"id":"t","amount":1,"currency":"USD","status":"completed","result":"approved","emvResponse":{"arc":"0"}}"#
        )));
        assert!(unknown(reply(409, "{}")));
        assert!(unknown(Err(TransportError::NoReply("reset".into()))));
        assert!(unavailable(Err(TransportError::NotSent("dns".into()))));
        assert!(unavailable(reply(
            401,
            r#"{"errorCode":"a","statusCode":401,"message":"Missing auth token"}"#
        )));
        assert!(unavailable(reply(
            400,
            r#"{"errorCode":"a","statusCode":400,"message":"bad","details":"x"}"#
        )));
    }

    #[test]
    fn ops_and_lookups() {
        let c = cfg();
        let rf = refund_request(
            &c,
            &RefundRequest {
                reference: Reference("r".into()),
                gateway_id: "txn_1".into(),
                amount: Money::from_minor(500, "USD").unwrap(),
                pos_reference: None,
            },
        );
        assert_eq!(
            rf.path,
            "/v1/public-api/organizations/org_sandbox/transactions/txn_1/refund"
        );
        assert_eq!(&rf.body[..], br#"{"amount":5.00}"#);
        assert_eq!(
            classify_op(&reply(
                409,
                r#"{"errorCode":"x","statusCode":409,"message":"Transaction cannot be refunded"}"#
            )),
            OpResult::Refused {
                code: Some("409".into()),
                reason: "Transaction cannot be refunded".into()
            }
        );
        assert!(matches!(
            classify_op(&reply(422, "{}")),
            OpResult::Refused { .. }
        ));
        assert_eq!(classify_op(&reply(404, "{}")), OpResult::NotFound);
        assert_eq!(
            classify_op(&reply(
                201,
                r#"{"id":"txn_9","status":"completed","result":"approved"}"#
            )),
            OpResult::Done {
                gateway_id: "txn_9".into()
            }
        );
        let auth = parse_txn(br#"{"id":"txn_1","type":"authorize","status":"waiting-capture","result":"approved","amount":10,"currency":"EUR","customerId":"cus_9","paymentInstrument":{"method":"payment-card","paymentInstrumentId":"inst_1"}}"#).unwrap();
        let capture = CaptureRequest {
            reference: Reference("cap-1".into()),
            gateway_id: "txn_1".into(),
            authorized: Money::from_minor(1000, "EUR").unwrap(),
            amount: Money::from_minor(900, "EUR").unwrap(),
            pos_reference: None,
        };
        let cap = capture_request(&c, &capture, &auth).unwrap();
        assert_eq!(&cap.body[..], br#"{"type":"sale","websiteId":"web_sandbox","customerId":"cus_9","currency":"EUR","amount":9.00,"requestId":"cap-1","idempotencyKey":"cap-1","paymentInstruction":{"paymentInstrumentId":"inst_1"},"metadata":{"reference":"cap-1"}}"#);
        let bare = parse_txn(
            br#"{"id":"txn_1","type":"authorize","status":"waiting-capture","result":"approved"}"#,
        )
        .unwrap();
        assert!(
            capture_request(&c, &capture, &bare).is_err(),
            "no instrument"
        );
        let l = lookup_request(&c, &Reference("ref-9_x".into())).unwrap();
        assert_eq!(
            l.path,
            "/v1/public-api/organizations/org_sandbox/transactions?filter=requestId%3Aref-9_x&limit=100"
        );
        assert!(lookup_request(&c, &Reference("a b/c".into())).is_none());
        // Rebilly answers a list as a bare array (one element: never mistaken for a wrapper).
        let one = r#"[{"id":"txn_s","type":"sale","requestId":"k","amount":1,"currency":"USD","status":"completed","result":"approved"}]"#;
        assert!(matches!(
            classify_lookup(&reply(200, one), &Reference("k".into())).0,
            StatusResult::Found(_)
        ));
        let list = r#"[{"id":"txn_r","type":"refund","requestId":"k"},{"id":"txn_s","type":"sale","requestId":"k","amount":12.34,"currency":"USD","status":"voided","result":"approved"}]"#;
        let (s, t) = classify_lookup(&reply(200, list), &Reference("k".into()));
        assert_eq!(
            s,
            StatusResult::Found(TxnStatus {
                gateway_id: "txn_s".into(),
                state: TxnState::Voided,
                amount: Some(Money::from_minor(1234, "USD").unwrap())
            })
        );
        assert_eq!(t.unwrap().kind.as_deref(), Some("sale"));
        assert_eq!(
            classify_lookup(&reply(200, "[]"), &Reference("k".into())).0,
            StatusResult::NotFound
        );
        // Tolerated: the `{"data": …}` wrapper.
        assert_eq!(
            classify_lookup(&reply(200, r#"{"data":[]}"#), &Reference("k".into())).0,
            StatusResult::NotFound
        );
        assert!(matches!(
            classify_lookup(&reply(200, "[1,"), &Reference("k".into())).0,
            StatusResult::Unknown { .. }
        ));
        assert_eq!(classify_get(&reply(404, "{}")).0, StatusResult::NotFound);
    }

    #[test]
    fn config_from_env() {
        let e = PaiConfig::from_lookup(Environment::Sandbox, &|_| None).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing(vec![
                "API_URL",
                "API_KEY",
                "ORGANIZATION_ID",
                "WEBSITE_ID",
                "CUSTOMER_ID"
            ])
        );
        let vars = |n: &str| match n {
            "API_KEY" => Some("acc_1_key_2_kid_3".to_owned()),
            "ORGANIZATION_ID" => Some("org_x".to_owned()),
            "WEBSITE_ID" => Some("web_1".to_owned()),
            "CUSTOMER_ID" => Some("cus_1".to_owned()),
            _ => None,
        };
        let c = PaiConfig::from_lookup(Environment::Staging, &vars).unwrap();
        assert_eq!(c.base_url, STAGING_URL);
        assert!(
            !c.emv_extension,
            "the [EXT] field is off outside the sandbox by default"
        );
        assert!(!format!("{c:?}").contains("key_2"));
        assert_eq!(
            PaiConfig::from_lookup(Environment::Production, &vars)
                .unwrap()
                .base_url,
            PRODUCTION_URL
        );
    }

    #[test]
    fn pos_reference_goes_in_the_description_keys_stay_ours() {
        let c = cfg();
        let body = |r: &HttpRequest| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap();
        let mut r = req(1234, "USD");
        assert!(body(&authorize_request(&c, &r).unwrap())
            .get("description")
            .is_none());
        r.pos_reference = Some(PosReference::new("T7 #1001").unwrap());
        let sale = authorize_request(&c, &r).unwrap();
        assert_eq!(
            std::str::from_utf8(&sale.body).unwrap(),
            r#"{"type":"sale","websiteId":"web_sandbox","customerId":"cus_sandbox","currency":"USD","amount":12.34,"requestId":"ref-7","idempotencyKey":"ref-7","description":"T7 #1001","paymentInstruction":{"emv":{"iccData":"9F270180","entryMode":"contactless"}},"metadata":{"reference":"ref-7","maskedPan":"476173******0010"}}"#
        );
        // The longest reference goes whole, within Rebilly's 255.
        let longest = "9".repeat(PosReference::MAX_LEN);
        r.pos_reference = Some(PosReference::new(longest.clone()).unwrap());
        assert_eq!(
            body(&authorize_request(&c, &r).unwrap())["description"],
            longest.as_str()
        );
        let pos = Some(PosReference::new("order-9").unwrap());
        let rf = refund_request(
            &c,
            &RefundRequest {
                reference: Reference("r".into()),
                gateway_id: "txn_1".into(),
                amount: Money::from_minor(500, "USD").unwrap(),
                pos_reference: pos.clone(),
            },
        );
        assert_eq!(&rf.body[..], br#"{"amount":5.00,"description":"order-9"}"#);
        let auth = parse_txn(br#"{"id":"txn_1","type":"authorize","status":"waiting-capture","result":"approved","amount":10,"currency":"EUR","customerId":"cus_9","paymentInstrument":{"method":"payment-card","paymentInstrumentId":"inst_1"}}"#).unwrap();
        let capture = CaptureRequest {
            reference: Reference("cap-1".into()),
            gateway_id: "txn_1".into(),
            authorized: Money::from_minor(1000, "EUR").unwrap(),
            amount: Money::from_minor(900, "EUR").unwrap(),
            pos_reference: pos,
        };
        let cap = body(&capture_request(&c, &capture, &auth).unwrap());
        assert_eq!(
            (
                &cap["description"],
                &cap["requestId"],
                &cap["idempotencyKey"]
            ),
            (
                &serde_json::json!("order-9"),
                &serde_json::json!("cap-1"),
                &serde_json::json!("cap-1")
            )
        );
    }
}
