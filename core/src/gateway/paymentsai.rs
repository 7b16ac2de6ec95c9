//! PaymentsAI dialect, sans-IO (gateways.md §2, §4.4).
//!
//! - Auth: `Authorization: ApiKey <accountId>_<apiKey>_<apiKeyId>` (§2.2) on every call; all
//!   paths are organization scoped: `/v1/public-api/organizations/{organizationId}/…`.
//! - Sale / pre-auth: `POST …/transactions {type, currency, amount, idempotencyKey,
//!   paymentInstruction:{emv:{iccData, entryMode}} \[EXT\], metadata}` → **201 even when
//!   declined** (§2.3): `result` decides. `emvResponse:{arc, issuerAuthData?, scripts?}` \[EXT\].
//! - `idempotencyKey` = our [`Reference`]: a repeat returns the original transaction, so a
//!   sale whose outcome is unknown may be re-sent with the same key (the edge does, bounded).
//! - Amounts are decimal major units (`47.77`), written and read as exact text.
//! - Decline reasons are not exposed (§2.3): a decline has no code unless the \[EXT\] EMV
//!   response carries an ARC.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::config::{base_url, ConfigError, EnvReader, Environment, Secret};
use super::ops::{
    CaptureRequest, OpResult, RefundRequest, StatusResult, TxnState, TxnStatus, VoidRequest,
};
use super::wire::{arc_of, decimal_json, parse_decimal, pct, screen, short, Exchange, HttpRequest};
use crate::money::Money;
use crate::txn::host::IssuerResponse;
use crate::txn::host::{AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference};

/// Stage API host (§2.1).
pub const STAGING_URL: &str = "https://staging-api.payments.ai";
/// Production API host (§2.1).
pub const PRODUCTION_URL: &str = "https://api.payments.ai";
/// Longest `idempotencyKey` (§2.3).
pub const MAX_IDEMPOTENCY_KEY: usize = 100;

/// PaymentsAI adapter configuration.
#[derive(Debug, Clone)]
pub struct PaiConfig {
    /// API host without path (`https://staging-api.payments.ai`, or the sandbox's `…/pai`).
    pub base_url: String,
    /// `org_…`.
    pub organization_id: String,
    /// The full credential `<accountId>_<apiKey>_<apiKeyId>` sent after `ApiKey `.
    pub api_key: Secret,
}

impl PaiConfig {
    /// Variables as PAI names them (docs/gateways.md §2.2): `API_URL` (defaults to the
    /// stage or production host; required for [`Environment::Sandbox`]), `API_KEY` (the full
    /// `<accountId>_<apiKey>_<apiKeyId>`), `ORGANIZATION_ID`.
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
        r.finish()?;
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
}

#[derive(Serialize)]
struct Instruction<'a> {
    emv: Emv<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    reference: &'a str,
    #[serde(rename = "maskedPan")]
    masked_pan: &'a str,
}

#[derive(Serialize)]
struct TxnBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    currency: &'a str,
    amount: Box<RawValue>,
    #[serde(rename = "idempotencyKey")]
    idempotency_key: &'a str,
    #[serde(
        rename = "parentTransactionId",
        skip_serializing_if = "Option::is_none"
    )]
    parent: Option<&'a str>,
    #[serde(rename = "paymentInstruction", skip_serializing_if = "Option::is_none")]
    instruction: Option<Instruction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
}

fn valid_key(r: &Reference) -> bool {
    !r.0.is_empty() && r.0.chars().count() <= MAX_IDEMPOTENCY_KEY
}

/// `POST …/transactions` for a sale or pre-authorization with the \[EXT\] EMV instruction.
/// Rebuilding it for a retry gives the same bytes, so the idempotent repeat matches.
///
/// # Errors
/// `Unavailable` (nothing sent) for a refund (use [`refund_request`]) or an unusable key.
pub fn authorize_request(
    cfg: &PaiConfig,
    req: &AuthorizationRequest,
) -> Result<HttpRequest, &'static str> {
    let refuse = |reason: &'static str| reason;
    let kind = match req.kind {
        AuthKind::Sale => "sale",
        AuthKind::PreAuth => "authorize",
        AuthKind::Refund => {
            return Err(refuse("paymentsai: refund needs the original transaction"))
        }
    };
    if !valid_key(&req.reference) {
        return Err(refuse("paymentsai: reference unusable as idempotencyKey"));
    }
    let body = TxnBody {
        kind,
        currency: req.amount.currency().alpha,
        amount: decimal_json(&req.amount),
        idempotency_key: &req.reference.0,
        parent: None,
        instruction: Some(Instruction {
            emv: Emv {
                icc_data: hex::encode_upper(&req.icc_data),
                entry_mode: match req.entry_mode {
                    EntryMode::Chip => "chip",
                    EntryMode::Contactless => "contactless",
                    // [EXT] the extension defines chip and contactless only.
                    EntryMode::Swipe => "swipe",
                },
            },
        }),
        metadata: Some(Metadata {
            reference: &req.reference.0,
            masked_pan: &req.masked_pan,
        }),
    };
    let body = serde_json::to_vec(&body).map_err(|_| refuse("paymentsai: cannot encode"))?;
    Ok(cfg.authed(HttpRequest::post_json(cfg.org_path("/transactions"), body)))
}

/// Capture: a second transaction `type:"sale"` linked by `parentTransactionId` (\[I\] field,
/// §2.3), keyed by the capture's own reference.
///
/// # Errors
/// `Unsupported` for an unusable key.
pub fn capture_request(cfg: &PaiConfig, req: &CaptureRequest) -> Result<HttpRequest, &'static str> {
    if !valid_key(&req.reference) {
        return Err("reference unusable as idempotencyKey");
    }
    let body = TxnBody {
        kind: "sale",
        currency: req.amount.currency().alpha,
        amount: decimal_json(&req.amount),
        idempotency_key: &req.reference.0,
        parent: Some(&req.gateway_id),
        instruction: None,
        metadata: None,
    };
    let body = serde_json::to_vec(&body).map_err(|_| "cannot encode")?;
    Ok(cfg.authed(HttpRequest::post_json(cfg.org_path("/transactions"), body)))
}

#[derive(Serialize)]
struct RefundBody {
    amount: Box<RawValue>,
}

/// `POST …/transactions/{id}/refund {amount}` (§2.3). Not idempotent: never retried.
pub fn refund_request(cfg: &PaiConfig, req: &RefundRequest) -> HttpRequest {
    let body = serde_json::to_vec(&RefundBody {
        amount: decimal_json(&req.amount),
    })
    .unwrap_or_default();
    cfg.authed(HttpRequest::post_json(
        cfg.org_path(&format!("/transactions/{}/refund", pct(&req.gateway_id))),
        body,
    ))
}

/// \[I\]/\[EXT\] `POST …/transactions/{id}/void` (no void endpoint is documented, §2.3).
pub fn void_request(cfg: &PaiConfig, req: &VoidRequest) -> HttpRequest {
    cfg.authed(HttpRequest::post_json(
        cfg.org_path(&format!("/transactions/{}/void", pct(&req.gateway_id))),
        b"{}".to_vec(),
    ))
}

/// `GET …/transactions/{id}`.
pub fn get_request(cfg: &PaiConfig, gateway_id: &str) -> HttpRequest {
    cfg.authed(HttpRequest::get(
        cfg.org_path(&format!("/transactions/{}", pct(gateway_id))),
    ))
}

/// \[I\] `GET …/transactions?idempotencyKey=<reference>`: lookup by our reference. The real
/// API's list filter syntax is \[GAP\]; the sandbox serves this form.
pub fn lookup_request(cfg: &PaiConfig, reference: &Reference) -> HttpRequest {
    cfg.authed(HttpRequest::get(cfg.org_path(&format!(
        "/transactions?idempotencyKey={}",
        pct(&reference.0)
    ))))
}

// ---------------------------------------------------------------------------------------------
// Replies

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

/// The fields of a PAI transaction the bridge reads (§2.3).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct PaiTxn {
    /// Id.
    pub id: Option<String>,
    /// `sale`, `authorize`, `capture`, `refund`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `waiting … voided …`.
    pub status: Option<String>,
    /// `approved`, `declined`, `canceled`, `abandoned`, `unknown`.
    pub result: Option<String>,
    /// Amount as exact JSON text.
    amount: Option<Box<RawValue>>,
    /// Currency.
    pub currency: Option<String>,
    /// The key it was created with (sandbox; \[I\] upstream).
    #[serde(rename = "idempotencyKey")]
    pub idempotency_key: Option<String>,
    #[serde(rename = "emvResponse")]
    emv_response: Option<EmvResponse>,
}

impl PaiTxn {
    /// The amount in minor units, exact.
    pub fn amount(&self) -> Option<Money> {
        parse_decimal(self.amount.as_deref()?.get(), self.currency.as_deref()?)
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct EmvResponse {
    arc: Option<String>,
    #[serde(rename = "issuerAuthData")]
    issuer_auth_data: Option<String>,
    scripts: Vec<String>,
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
            auth_code: None,
        })
    }
}

fn parse_txn(body: &[u8]) -> Option<PaiTxn> {
    serde_json::from_slice::<Data<PaiTxn>>(body)
        .ok()
        .map(|d| d.data)
        .filter(|t| t.id.as_deref().is_some_and(|i| !i.is_empty()))
}

/// What the `status`/`result` pair means for the bridge.
pub fn state_of(t: &PaiTxn) -> Option<TxnState> {
    Some(
        match (
            t.status.as_deref()?,
            t.result.as_deref().unwrap_or("unknown"),
        ) {
            ("voided", _) => TxnState::Voided,
            ("refunded" | "partially-refunded", _) => TxnState::Refunded,
            (_, "declined" | "canceled" | "abandoned") => TxnState::Declined,
            ("not-sent", _) => TxnState::Declined,
            ("completed" | "disputed" | "suspended", "approved") => TxnState::Approved,
            ("waiting" | "sending" | "offsite" | "timeout", _) | (_, "unknown") => {
                TxnState::Pending
            }
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

/// Classifies the [`lookup_request`] list: the sale/authorize created with our key.
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
    let Ok(list) = serde_json::from_slice::<Data<Vec<PaiTxn>>>(&reply.body) else {
        return (
            StatusResult::Unknown {
                reason: "paymentsai: unreadable list".into(),
            },
            None,
        );
    };
    let hit = list.data.into_iter().find(|t| {
        t.idempotency_key.as_deref() == Some(reference.0.as_str())
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
            r#"{"type":"sale","currency":"USD","amount":12.34,"idempotencyKey":"ref-7","paymentInstruction":{"emv":{"iccData":"9F270180","entryMode":"contactless"}},"metadata":{"reference":"ref-7","maskedPan":"476173******0010"}}"#
        );
        // JPY: no decimals.
        let j = authorize_request(&cfg(), &req(1500, "JPY")).unwrap();
        assert!(std::str::from_utf8(&j.body)
            .unwrap()
            .contains(r#""currency":"JPY","amount":1500,"#));
        // Same request twice → same bytes (safe idempotent retry).
        assert_eq!(r, authorize_request(&cfg(), &req(1234, "USD")).unwrap());
        let mut long = req(1, "USD");
        long.reference = Reference("x".repeat(101));
        assert!(authorize_request(&cfg(), &long).is_err());
        let mut pre = req(1, "USD");
        pre.kind = AuthKind::PreAuth;
        assert!(
            std::str::from_utf8(&authorize_request(&cfg(), &pre).unwrap().body)
                .unwrap()
                .starts_with(r#"{"type":"authorize""#)
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
        let plain = r#"{"data":{"id":"txn_2","amount":1,"currency":"USD","status":"completed","result":"declined"}}"#;
        assert!(
            matches!(classify_authorize(&reply(201, plain), &req(100, "USD")),
            AuthorizationResult::Declined { code: None, issuer, .. } if &issuer.arc == b"05")
        );
    }

    #[test]
    fn approved_with_scripts_and_exact_amounts() {
        let body = r#"{"data":{"id":"txn_3","type":"sale","amount":12.34,"currency":"USD","status":"completed","result":"approved","emvResponse":{"arc":"00","issuerAuthData":"AABBCCDDEEFF00113030","scripts":["720A9F180400000001860100"]}}}"#;
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
        let jpy = r#"{"data":{"id":"t","amount":1500,"currency":"JPY","status":"completed","result":"approved"}}"#;
        assert!(
            matches!(classify_authorize(&reply(201, jpy), &req(1500, "JPY")),
            AuthorizationResult::Approved { approved_amount, .. } if approved_amount.minor() == 1500)
        );
        let partial = r#"{"data":{"id":"t","amount":2.57,"currency":"USD","status":"completed","result":"approved"}}"#;
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
        assert!(unknown(reply(201, r#"{"data":{"id":"t","status":"compl"#)));
        assert!(
            unknown(reply(
                201,
                r#"{"data":{"status":"completed","result":"approved"}}"#
            )),
            "no id"
        );
        assert!(unknown(reply(
            201,
            r#"{"data":{"id":"t","amount":1,"currency":"USD","status":"offsite","result":"unknown"}}"#
        )));
        assert!(unknown(reply(
            201,
            r#"{"data":{"id":"t","amount":1,"currency":"USD","status":"completed","result":"approved","emvResponse":{"arc":"0"}}}"#
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
                r#"{"data":{"id":"txn_9","status":"completed","result":"approved"}}"#
            )),
            OpResult::Done {
                gateway_id: "txn_9".into()
            }
        );
        let cap = capture_request(
            &c,
            &CaptureRequest {
                reference: Reference("cap-1".into()),
                gateway_id: "txn_1".into(),
                authorized: Money::from_minor(1000, "EUR").unwrap(),
                amount: Money::from_minor(900, "EUR").unwrap(),
            },
        )
        .unwrap();
        assert_eq!(&cap.body[..], br#"{"type":"sale","currency":"EUR","amount":9.00,"idempotencyKey":"cap-1","parentTransactionId":"txn_1"}"#);
        let l = lookup_request(&c, &Reference("a b/c".into()));
        assert_eq!(
            l.path,
            "/v1/public-api/organizations/org_sandbox/transactions?idempotencyKey=a%20b%2Fc"
        );
        let list = r#"{"data":[{"id":"txn_r","type":"refund","idempotencyKey":"k"},{"id":"txn_s","type":"sale","idempotencyKey":"k","amount":12.34,"currency":"USD","status":"voided","result":"approved"}]}"#;
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
            ConfigError::Missing(vec!["API_URL", "API_KEY", "ORGANIZATION_ID"])
        );
        let vars = |n: &str| match n {
            "API_KEY" => Some("acc_1_key_2_kid_3".to_owned()),
            "ORGANIZATION_ID" => Some("org_x".to_owned()),
            _ => None,
        };
        let c = PaiConfig::from_lookup(Environment::Staging, &vars).unwrap();
        assert_eq!(c.base_url, STAGING_URL);
        assert!(!format!("{c:?}").contains("key_2"));
        assert_eq!(
            PaiConfig::from_lookup(Environment::Production, &vars)
                .unwrap()
                .base_url,
            PRODUCTION_URL
        );
    }
}
