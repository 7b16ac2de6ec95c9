//! Pay1st gateway dialect under `/pay1st` (gateways.md §3, §4.2, §4.4): Basic-auth token and
//! refresh, `AccessToken: Bearer` plus `X-SIGNATURE`/`X-TIMESTAMP` request signatures, payment
//! creation (unique `partnerReference`), hosted checkout and its completion ([`complete`]),
//! fulfilments, signed webhooks, "Query Payment Status", and the \[EXT\] `emv` field for a
//! card-present authorisation. Tokens are kept in
//! [`crate::dialect_state::Pay1stState`], payments in SQLite next to the ledger
//! (`crate::store`).
//!
//! As the reference pages say (`docs/gateway-specs/pay1st/`): the token and refresh calls
//! take the vendor media type (the refresh as `Accept` too); a payment is identified by
//! Pay1st's `reference`; "Query Payment Status" is `GET api/pay1st/payments?reference=` and
//! answers one payment echoing the create request with its `status` from the list `NEW`,
//! `PENDING`, `SUCCESSFUL`, `FAILED`, `CANCELLED`, `ABANDONED`. The create reply's status code
//! and body are not in the official excerpts: the sandbox answers 201 with the payment `NEW`,
//! as the third-party derived definition says. The life cycle's timing is not documented
//! either: a card-present (\[EXT\]) payment is authorised when created but shown `NEW` in the
//! create reply, `PENDING` to the first status query and final from the second on; a hosted
//! payment stays `NEW` until the checkout completes. There is no query by `partnerReference`.

use axum::http::Method;
use base64::Engine as _;
use emvbridge_core::gateway::pay1st::sign as request_signature;
use emvbridge_core::gateway::sign::pay1st_webhook_signature;
use emvbridge_core::gateway::Dialect;
use serde_json::{json, Value};
use subtle::ConstantTimeEq as _;

use crate::dialect_state::Payment;
use crate::emv::{self, Verdict};
use crate::exchange::{Exec, Reply, SimRequest, SimResponse};
use crate::faults::{FaultAction, FaultKey, Op};
use crate::ledger::{brand_of, last4, Entry, Kind, Txn, TxnState};
use crate::outcome::{self, Code, Forced, Outcome, ResolveInput};
use crate::state::SimState;
use crate::{clock, money};

const MAX_PAYMENTS: usize = 100_000;
/// The authentication calls' media type.
const CT_AUTH: &str = "application/vnd.carry1st.payments.partnerauthentication+json";
/// The payment calls' media type.
const CT_PAYMENT: &str = "application/vnd.carry1st.payments.payment+json";

/// Pay1st error envelope `{errorMessage, errorCode, sessionId}` (\[I\], third-party OpenAPI).
pub fn error(status: u16, code: &str, message: &str) -> SimResponse {
    SimResponse::json(
        status,
        &json!({"errorMessage": message, "errorCode": code, "sessionId": "sandbox"}),
    )
}

/// Whether `sig` (`X-SIGNATURE`: hex in either case, surrounding whitespace ignored) is the
/// request signature of `timestamp` ‖ `body` (§3.2). Compared in constant time.
fn signature_ok(signing_key: &str, timestamp: &str, body: &[u8], sig: &str) -> bool {
    let expect = request_signature(signing_key, timestamp, body);
    let given = sig.trim().to_ascii_lowercase();
    expect.as_bytes().ct_eq(given.as_bytes()).into()
}

fn issue_tokens(core: &mut SimState) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let access = b64.encode(core.rand_hex(24));
    let refresh = b64.encode(core.rand_hex(24));
    let exp = core.now() + core.cfg.pay1st.token_ttl_secs;
    if core.pay1st.access.len() > 10_000 {
        let now = core.now();
        core.pay1st.access.retain(|_, e| *e > now);
    }
    core.pay1st.access.insert(access.clone(), exp);
    core.pay1st.refresh.insert(refresh.clone(), exp + 86_400);
    json!({"role": "API_USER", "accessToken": access, "refreshToken": refresh})
}

/// Checks `AccessToken` and the request signature.
fn check(core: &SimState, req: &SimRequest) -> Result<String, SimResponse> {
    let tok = req
        .header("accesstoken")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| error(401, "UNAUTHORIZED", "missing AccessToken"))?;
    match core.pay1st.access.get(tok) {
        Some(exp) if *exp > core.now() => {}
        Some(_) => return Err(error(401, "TOKEN_EXPIRED", "access token expired")),
        None => return Err(error(401, "UNAUTHORIZED", "invalid access token")),
    }
    let ts = req
        .header("x-timestamp")
        .ok_or_else(|| error(401, "INVALID_SIGNATURE", "missing X-TIMESTAMP"))?;
    let sig = req
        .header("x-signature")
        .ok_or_else(|| error(401, "INVALID_SIGNATURE", "missing X-SIGNATURE"))?;
    let when = clock::parse_iso8601(ts)
        .ok_or_else(|| error(401, "INVALID_SIGNATURE", "bad X-TIMESTAMP"))?;
    if (core.now() - when).abs() > core.cfg.pay1st.signature_skew_secs {
        return Err(error(401, "INVALID_SIGNATURE", "stale X-TIMESTAMP"));
    }
    if !signature_ok(&core.cfg.pay1st.signing_key, ts, &req.body, sig) {
        return Err(error(401, "INVALID_SIGNATURE", "signature mismatch"));
    }
    Ok(tok.to_owned())
}

/// Entry point for `/pay1st/...`.
pub fn handle(core: &mut SimState, req: &SimRequest) -> Reply {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let r = match (req.method.clone(), segs.as_slice()) {
        (Method::POST, ["api", "pay1st", "auth", "token"]) => {
            let key = FaultKey {
                dialect: Some(Dialect::Pay1st),
                op: Some(Op::Auth),
                ..Default::default()
            };
            let basic = req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Basic "))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned();
            let role_ok = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| {
                    v.get("role")
                        .and_then(Value::as_str)
                        .map(|r| r == "API_USER")
                })
                .unwrap_or(false);
            return core.with_faults(
                key,
                |s| error(s, "INTERNAL_ERROR", "server error"),
                move |c, _| {
                    let want = base64::engine::general_purpose::STANDARD.encode(format!(
                        "{}:{}",
                        c.cfg.pay1st.api_key, c.cfg.pay1st.api_secret
                    ));
                    if !bool::from(basic.as_bytes().ct_eq(want.as_bytes())) {
                        return Exec::reply(error(401, "UNAUTHORIZED", "bad api credentials"));
                    }
                    if !role_ok {
                        return Exec::reply(error(400, "BAD_REQUEST", "role must be API_USER"));
                    }
                    Exec::reply(SimResponse::json(200, &issue_tokens(c)))
                },
            );
        }
        (Method::POST, ["api", "pay1st", "auth", "refresh"]) => {
            // The refresh page's header table: the vendor type as Content-Type and Accept.
            if !req.header("accept").is_some_and(|a| a.contains(CT_AUTH)) {
                return Reply::Respond(error(
                    406,
                    "NOT_ACCEPTABLE",
                    "Accept must be the partnerauthentication type",
                ));
            }
            if !req
                .header("content-type")
                .is_some_and(|a| a.starts_with(CT_AUTH))
            {
                return Reply::Respond(error(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "Content-Type must be the partnerauthentication type",
                ));
            }
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let rt = body
                .get("refreshToken")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match core.pay1st.refresh.remove(rt) {
                Some(exp) if exp > core.now() => SimResponse::json(200, &issue_tokens(core)),
                _ => error(401, "UNAUTHORIZED", "invalid refresh token"),
            }
        }
        (Method::GET, ["checkout"]) => checkout(core, req),
        (_, ["api", "pay1st", "payments", rest @ ..]) => {
            let tok = match check(core, req) {
                Ok(t) => t,
                Err(e) => return Reply::Respond(e),
            };
            return payments(core, req, rest, tok);
        }
        _ => error(404, "NOT_FOUND", "not found"),
    };
    Reply::Respond(r)
}

fn checkout(core: &SimState, req: &SimRequest) -> SimResponse {
    let reference = req.query_param("reference").unwrap_or_default();
    let tok = req.query_param("accessToken").unwrap_or_default();
    if core
        .pay1st
        .access
        .get(&tok)
        .is_none_or(|e| *e <= core.now())
    {
        return SimResponse::html(
            401,
            "<!doctype html><title>Pay1st</title><p>Session expired.</p>".into(),
        );
    }
    let Some(t) = core
        .ledger
        .get(&reference)
        .filter(|t| t.dialect == Dialect::Pay1st)
    else {
        return SimResponse::html(
            404,
            "<!doctype html><title>Pay1st</title><p>Unknown payment.</p>".into(),
        );
    };
    let safe: String = reference
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    SimResponse::html(
        200,
        format!(
            "<!doctype html><title>Pay1st sandbox checkout</title><h1>Pay {} {}</h1><p>Reference {safe}. The outcome is set with POST /_sim/pay1st/complete.</p>",
            money::to_text(t.amount_minor, money::exponent(&t.currency)),
            t.currency.chars().filter(char::is_ascii_alphabetic).collect::<String>()
        ),
    )
}

fn payments(core: &mut SimState, req: &SimRequest, rest: &[&str], tok: String) -> Reply {
    let r = match (req.method.clone(), rest) {
        (Method::GET, ["methods"]) => SimResponse::json(
            200,
            &json!({"data": {"groups": [{"id": 1, "name": "Cards", "channels": [
                {"id": 101, "paymentOption": {"code": "PAYSTACK"}, "channel": {"code": "VISA", "paymentMethod": "CARD"}, "paymentMethodType": {"requiredParameters": []}},
                {"id": 102, "paymentOption": {"code": "PAYSTACK"}, "channel": {"code": "MASTERCARD", "paymentMethod": "CARD"}, "paymentMethodType": {"requiredParameters": []}}]}],
                "countryCode": req.query_param("countryCode")}}),
        ),
        (Method::POST, ["create"]) => return create(core, req, tok),
        (Method::POST, ["fulfilments"]) => match serde_json::from_slice::<Value>(&req.body) {
            Ok(v)
                if v.get("reference")
                    .and_then(Value::as_str)
                    .is_some_and(|r| core.ledger.get(r).is_some()) =>
            {
                SimResponse::empty(200)
            }
            Ok(_) => error(404, "NOT_FOUND", "unknown reference"),
            Err(_) => error(400, "BAD_REQUEST", "invalid json"),
        },
        (Method::GET, []) => {
            // "Query Payment Status": by the reference the create reply returned.
            let Some(reference) = req.query_param("reference").filter(|r| !r.is_empty()) else {
                return Reply::Respond(error(400, "BAD_REQUEST", "reference is required"));
            };
            let key = FaultKey {
                dialect: Some(Dialect::Pay1st),
                op: Some(Op::Query),
                ..Default::default()
            };
            return core.with_faults(
                key,
                |s| error(s, "INTERNAL_ERROR", "server error"),
                move |c, _| {
                    let Some(mut p) = c.store().pay1st_payment(&reference) else {
                        return Exec::reply(error(404, "NOT_FOUND", "unknown reference"));
                    };
                    p.queries = p.queries.saturating_add(1);
                    c.store().put_pay1st_payment(&reference, &p);
                    c.ledger.note_lookup(&reference);
                    match render(c, &reference) {
                        Some(v) => Exec::reply(SimResponse::json(200, &v)),
                        None => Exec::reply(error(404, "NOT_FOUND", "unknown reference")),
                    }
                },
            );
        }
        _ => error(404, "NOT_FOUND", "not found"),
    };
    Reply::Respond(r)
}

/// The final status of a payment in the ledger state `s`. Pay1st has no refunds: a refunded
/// row cannot come from this dialect and is shown as the success it was.
fn final_text(s: TxnState) -> &'static str {
    match s {
        TxnState::Approved | TxnState::Refunded | TxnState::PartiallyRefunded => "SUCCESSFUL",
        TxnState::Declined | TxnState::Error => "FAILED",
        TxnState::Voided => "CANCELLED",
        TxnState::Pending => "NEW",
    }
}

/// The status a payment shows now (see the module docs for the life cycle).
fn status_text(t: &Txn, p: &Payment) -> &'static str {
    if t.state == TxnState::Pending {
        return "NEW";
    }
    match (t.entry, p.queries) {
        (Entry::Emv, 0) => "NEW",
        (Entry::Emv, 1) => "PENDING",
        _ => p.final_status.unwrap_or_else(|| final_text(t.state)),
    }
}

/// One payment as "Query Payment Status" shows it: the create request echoed, plus
/// `reference`, `partnerSettings` and `status`.
fn render(core: &SimState, reference: &str) -> Option<Value> {
    let t = core
        .ledger
        .get(reference)
        .filter(|t| t.dialect == Dialect::Pay1st)?;
    let p = core.store().pay1st_payment(reference)?;
    let exp = money::exponent(&t.currency);
    let cfg = &core.cfg.pay1st;
    let mut settings = json!({"partnerId": cfg.partner_id});
    if let Some(u) = p.webhook_url.as_ref().or(cfg.webhook_url.as_ref()) {
        settings["webhookUrl"] = json!(u);
    }
    let mut v = json!({"countryCode": p.country, "currencyCode": t.currency, "amount": money::to_json(t.amount_minor, exp),
        "reference": t.id, "partnerReference": t.client_ref.clone().unwrap_or_default(), "partnerSettings": settings,
        "products": p.products, "metadata": p.metadata, "status": status_text(t, &p)});
    // [EXT] the card-present answer, only once the status is final.
    if let (Some(e), false) = (
        &p.emv_response,
        matches!(v["status"].as_str(), Some("NEW" | "PENDING")),
    ) {
        v["emvResponse"] = e.clone();
    }
    Some(v)
}

fn create(core: &mut SimState, req: &SimRequest, tok: String) -> Reply {
    if !req
        .header("content-type")
        .is_some_and(|a| a.starts_with(CT_PAYMENT))
    {
        return Reply::Respond(error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be the payment type",
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Reply::Respond(error(400, "BAD_REQUEST", "invalid json"));
    };
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(currency), Some(country), Some(pref)) =
        (s("currencyCode"), s("countryCode"), s("partnerReference"))
    else {
        return Reply::Respond(error(
            400,
            "BAD_REQUEST",
            "currencyCode, countryCode and partnerReference are required",
        ));
    };
    if currency.len() != 3 || pref.is_empty() || pref.len() > 128 {
        return Reply::Respond(error(
            400,
            "BAD_REQUEST",
            "invalid currencyCode or partnerReference",
        ));
    }
    let Some(amount) = body
        .get("amount")
        .and_then(|a| money::from_json(a, money::exponent(&currency)))
        .filter(|a| *a > 0)
    else {
        return Reply::Respond(error(
            400,
            "BAD_REQUEST",
            "amount must be a positive decimal",
        ));
    };
    let emv_hex = body
        .pointer("/emv/iccData")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let op = if emv_hex.is_some() { Op::Emv } else { Op::Sale };
    let key = FaultKey {
        dialect: Some(Dialect::Pay1st),
        op: Some(op),
        amount_minor: Some(amount),
        client_ref: Some(pref.clone()),
    };
    core.with_faults(
        key,
        |s| error(s, "INTERNAL_ERROR", "server error"),
        move |c, fault| {
            if matches!(fault, Some(FaultAction::AuthExpire)) {
                c.pay1st.access.remove(&tok);
                return Exec::reply(error(401, "TOKEN_EXPIRED", "access token expired"));
            }
            if c.ledger
                .by_client_ref(&pref)
                .any(|t| t.dialect == Dialect::Pay1st)
            {
                return Exec::reply(error(
                    409,
                    "DUPLICATE_REFERENCE",
                    "partnerReference already used",
                ));
            }
            if c.store().pay1st_payment_count() >= MAX_PAYMENTS {
                return Exec::reply(error(429, "TOO_MANY", "payment store full"));
            }
            // The form of the page's example reference (`C-142710055596150-P`).
            let digits: String = c
                .rand_hex(8)
                .bytes()
                .map(|b| char::from(b'0' + b % 10))
                .collect();
            let reference = format!("C-{digits}{}-P", c.now().rem_euclid(10_000_000));
            let now = c.now();
            let mut t = Txn::new(
                reference.clone(),
                Dialect::Pay1st,
                Kind::Sale,
                amount,
                &currency,
                now,
            );
            t.client_ref = Some(pref.clone());
            t.entry = Entry::Hosted;
            t.description = metadata_value(
                &body,
                emvbridge_core::gateway::pay1st::METADATA_POS_REFERENCE,
            );
            let mut p = Payment {
                country: country.clone(),
                webhook_url: body
                    .get("webhookUrl")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                emv_response: None,
                products: body.get("products").cloned().unwrap_or(json!([])),
                metadata: body.get("metadata").cloned().unwrap_or(json!([])),
                queries: 0,
                final_status: None,
            };
            let mut final_state = false;
            if let Some(hex) = &emv_hex {
                // [EXT] card-present: authorise now with the ICC data.
                let invalid = |e: emv::EmvReject| {
                    Exec::reply(error(
                        400,
                        "INVALID_EMV",
                        &format!("{e} ({})", e.err_code()),
                    ))
                };
                let icc = match emv::decode_hex(hex) {
                    Ok(i) => i,
                    Err(e) => return invalid(e),
                };
                let stripe = emv::is_stripe(&icc);
                if !stripe {
                    if let Err(e) = emv::precheck(&icc, Some(amount)) {
                        return invalid(e);
                    }
                }
                t.entry = if stripe { Entry::Swipe } else { Entry::Emv };
                let forced = match fault {
                    Some(FaultAction::Decline { code }) => Some(Forced::Decline(Code::new(code))),
                    Some(FaultAction::AspenError { code }) => Some(Forced::GatewayError(*code)),
                    _ => None,
                };
                // [EXT] the online PIN, as the reader enciphered it: a wrong one is an
                // issuer decline `55`.
                let emv_field =
                    |k: &str| body.pointer(&format!("/emv/{k}")).and_then(Value::as_str);
                let pin_check = |icc: &[u8], pan: &str| {
                    emv::pin_check(icc, pan, emv_field("pinBlock"), emv_field("ksn")).map(|p| {
                        (p == emv::PinCheck::Failed).then(|| Forced::Decline(Code::new("55")))
                    })
                };
                let (o, v) = if stripe {
                    // [EXT] a stripe read: authorized on its enciphered track, no ARQC.
                    let s = match emv::stripe(&icc, Some(amount)) {
                        Ok(s) => s,
                        Err(e) => return invalid(e),
                    };
                    t.pan_last4 = Some(last4(&s.pan));
                    t.brand = Some(brand_of(&s.pan).to_owned());
                    let pin = match pin_check(&icc, &s.pan) {
                        Ok(p) => p,
                        Err(e) => return invalid(e),
                    };
                    let o = outcome::resolve(&ResolveInput {
                        dialect: Some(Dialect::Pay1st),
                        pan: Some(&s.pan),
                        expiry: Some(s.expiry),
                        amount_minor: amount,
                        emv: false,
                        forced: forced.or(pin),
                        ..Default::default()
                    });
                    (o, None)
                } else {
                    match emv::verify(&icc) {
                        Verdict::Verified(v) => {
                            t.pan_last4 = Some(last4(v.pan.reveal()));
                            t.brand = Some(brand_of(v.pan.reveal()).to_owned());
                            let pin = match pin_check(&icc, v.pan.reveal()) {
                                Ok(p) => p,
                                Err(e) => return invalid(e),
                            };
                            let o = outcome::resolve(&ResolveInput {
                                dialect: Some(Dialect::Pay1st),
                                pan: Some(v.pan.reveal()),
                                amount_minor: amount,
                                emv: true,
                                forced: forced.or(pin),
                                ..Default::default()
                            });
                            (o, Some(v))
                        }
                        Verdict::Declined { code, .. } => (
                            Outcome::Declined {
                                code: Code::new(code),
                            },
                            None,
                        ),
                        Verdict::Rejected(e) => {
                            return Exec::reply(error(400, "INVALID_EMV", &e.to_string()))
                        }
                    }
                };
                let (arc, bad, script) = match o {
                    Outcome::Approved {
                        approved_minor,
                        code,
                        emv: extra,
                    } => {
                        t.state = TxnState::Approved;
                        t.approved_minor = approved_minor;
                        t.resp_code = code.as_str().to_owned();
                        t.auth_code = Some(c.auth_code(&reference));
                        (
                            *b"00",
                            extra == outcome::EmvExtra::BadArpc,
                            match extra {
                                outcome::EmvExtra::Script(s) => Some(s),
                                _ => None,
                            },
                        )
                    }
                    Outcome::Declined { code } => {
                        t.state = TxnState::Declined;
                        t.resp_code = code.as_str().to_owned();
                        (code.arc(), false, None)
                    }
                    _ => {
                        t.state = TxnState::Error;
                        t.resp_code = "96".into();
                        (*b"96", false, None)
                    }
                };
                let mut er = json!({"arc": String::from_utf8_lossy(&arc)});
                // [EXT] The authorisation code (EMV tag 89) beside the ARC, on approvals.
                if let Some(a) = &t.auth_code {
                    er["authCode"] = json!(a);
                }
                if let Some(v) = &v {
                    er["issuerAuthData"] = json!(hex::encode_upper(v.issuer_auth_data(arc, bad)));
                    if let Some(s) = script {
                        er["scripts"] = json!([hex::encode_upper(v.pin_unblock_script(s, false))]);
                    }
                }
                p.emv_response = Some(er);
                final_state = true;
            }
            c.ledger.push(t);
            c.store().put_pay1st_payment(&reference, &p);
            if final_state {
                webhook(c, &reference);
            }
            // "returns payment identification information": the identifying fields the
            // status query echoes (the full echo is the query's). The hosted checkout page is
            // the sandbox's: `GET /pay1st/checkout?reference=…`.
            let full = render(c, &reference).unwrap_or(Value::Null);
            let mut v = json!({});
            for k in [
                "reference",
                "partnerReference",
                "countryCode",
                "currencyCode",
                "amount",
                "status",
            ] {
                v[k] = full[k].clone();
            }
            Exec {
                resp: SimResponse::json(201, &v),
                committed: vec![reference],
            }
        },
    )
}

/// Queues the Pay1st webhook for payment `reference` to its `webhookUrl` (or the configured
/// URL), signed with the webhook credentials (§3.4).
fn webhook(state: &mut SimState, reference: &str) {
    let Some(t) = state.ledger.get(reference).cloned() else {
        return;
    };
    let Some(p) = state.store().pay1st_payment(reference) else {
        return;
    };
    let Some(url) = p
        .webhook_url
        .clone()
        .or_else(|| state.cfg.pay1st.webhook_url.clone())
    else {
        return;
    };
    let cfg = state.cfg.pay1st.clone();
    // A webhook reports the final status (it is sent when the payment becomes final).
    let status = p.final_status.unwrap_or_else(|| final_text(t.state));
    let body = json!({"partnerId": cfg.partner_id, "partnerCode": cfg.partner_code, "partnerReference": t.client_ref,
        "reference": t.id, "orderAmount": money::to_json(t.amount_minor, money::exponent(&t.currency)),
        "currencyCode": t.currency, "countryCode": p.country, "status": status})
    .to_string();
    let b2 = body.clone();
    state.queue_webhook(
        Dialect::Pay1st,
        format!("{}:{status}", t.id),
        url,
        body,
        t.client_ref.clone(),
        move |bad| {
            let pass = if bad {
                format!("{}-wrong", cfg.webhook_pass)
            } else {
                cfg.webhook_pass.clone()
            };
            vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                (
                    "X-SIGNATURE".to_owned(),
                    pay1st_webhook_signature(&cfg.webhook_user, &pass, &b2),
                ),
            ]
        },
    );
}

/// `POST /_sim/pay1st/complete {reference, outcome?, pan?}`: the customer finished the
/// hosted checkout. Without `outcome` the resolver decides from `pan` and the amount.
pub fn complete(
    state: &mut SimState,
    reference: &str,
    outcome: Option<&str>,
    pan: Option<&str>,
) -> Option<Value> {
    let t = state
        .ledger
        .get(reference)
        .filter(|t| t.dialect == Dialect::Pay1st && t.state == TxnState::Pending)?
        .clone();
    let mut final_status = None;
    let (txn_state, code, approved) = match outcome {
        Some("SUCCESSFUL") => (TxnState::Approved, "00".to_owned(), t.amount_minor),
        Some("CANCELLED") => (TxnState::Voided, "17".to_owned(), 0),
        Some("ABANDONED") => {
            final_status = Some("ABANDONED");
            (TxnState::Declined, "05".to_owned(), 0)
        }
        Some(_) => (TxnState::Declined, "05".to_owned(), 0),
        None => match outcome::resolve(&ResolveInput {
            dialect: Some(Dialect::Pay1st),
            pan,
            amount_minor: t.amount_minor,
            ..Default::default()
        }) {
            Outcome::Approved {
                approved_minor,
                code,
                ..
            } => (TxnState::Approved, code.as_str().to_owned(), approved_minor),
            Outcome::Declined { code } => (TxnState::Declined, code.as_str().to_owned(), 0),
            _ => (TxnState::Error, "96".to_owned(), 0),
        },
    };
    let auth = (txn_state == TxnState::Approved).then(|| state.auth_code(reference));
    let t = state.ledger.get_mut(reference)?;
    t.state = txn_state;
    t.resp_code = code;
    t.approved_minor = approved;
    t.auth_code = auth;
    if let Some(p) = pan {
        t.pan_last4 = Some(last4(p));
        t.brand = Some(brand_of(p).to_owned());
    }
    if let Some(mut p) = state.store().pay1st_payment(reference) {
        p.final_status = final_status;
        state.store().put_pay1st_payment(reference, &p);
    }
    webhook(state, reference);
    render(state, reference)
}

/// The value of the create's `metadata` entry `key` (the list of `{key, value}` of the
/// signature test vector), if it has one.
fn metadata_value(body: &Value, key: &str) -> Option<String> {
    body.get("metadata")?
        .as_array()?
        .iter()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector (P1:gateway-generating-signatures), JSON exactly as the
    /// page prints it, including the stray `<` and `>` (see gateways.md §3.2).
    #[test]
    fn published_signature_vector() {
        let body = r#"{"countryCode":"NG","currencyCode":"NGN","amount":100,"partnerReference":"4a662291-2840-4bcd-aae9-553ab24601ed","callbackSuccessUrl":"<https://callback.success","callbackFailureUrl":"https://callback.failure","callbackPendingUrl":"https://callback.pending","callbackCancelUrl":"https://callback.cancel","webhookUrl":"https://webhook.success","products":[{"title":"10> Credits","sku":"12345","price":100,"quantity":1,"currencyCode":"NGN"}],"metadata":[{"key":"customerId","value":"1"}]}"#;
        let key = "hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y";
        let ts = "2025-03-17T08:10:52.544247646Z";
        let sig = "85aa0862aa052f737d3cf4d38f92091ea7c015e782d207ea18cc5641d3e47755";
        assert!(signature_ok(key, ts, body.as_bytes(), sig));
        assert!(signature_ok(
            key,
            ts,
            body.as_bytes(),
            &format!(" {} ", sig.to_uppercase())
        ));
        assert!(!signature_ok(key, ts, body.as_bytes(), &sig[..63]));
        assert!(!signature_ok(
            key,
            "2025-03-17T08:10:53Z",
            body.as_bytes(),
            sig
        ));
        assert!(!signature_ok("other", ts, body.as_bytes(), sig));
        assert!(!signature_ok(key, ts, body.as_bytes(), ""));
    }
}
