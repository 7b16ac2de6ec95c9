//! PaymentsAI dialect under `/pai` (gateways.md §2, §4.2, §4.4): `Authorization: ApiKey
//! <accountId>_<apiKey>_<apiKeyId>`, organization scoping, `idempotencyKey` in the body,
//! 201 for declines too, refund 409/422, the \[EXT\] EMV instruction, the temporal →
//! permanent key exchange with the secret policy, signed webhooks, and the end of a 3DS
//! challenge ([`complete_3ds`]). Keys and tokens are kept in
//! [`crate::dialect_state::PaiState`]; transaction extras and idempotency records in SQLite
//! next to the ledger (`crate::store`).
//!
//! Transactions answer as Rebilly's definition says (`docs/gateway-specs/rebilly/`), which
//! PaymentsAI is built on: the resource itself (no envelope), a list as a bare array;
//! `PostTransaction`'s required `type, websiteId, customerId, currency, amount`; `status` and
//! `result` from Rebilly's enums; `paymentInstrument` as a vaulted instrument
//! (`method: payment-card`, `paymentInstrumentId`: an EMV card is vaulted on first use);
//! `GET /transactions` takes Rebilly's `filter` (`field:value[,value];field:value`), `limit`,
//! `offset`. There is no void endpoint: refunding an uncaptured authorization voids it. A
//! capture is a second `sale` on the authorization's instrument (PAI's authorize-and-capture
//! page); the definitions are silent on how that second sale releases the hold: the sandbox
//! links it to the newest open authorization on the instrument when the amount fits.
//! The customer, instrument and token endpoints keep the sandbox's `{"data": …}` form (the
//! `{type, data}` envelope PaymentsAI's stage tokenization is reported to use); the bridge
//! does not call them.

use axum::http::Method;
use emvbridge_core::gateway::paymentsai::MAX_DESCRIPTION;
use emvbridge_core::gateway::sign::pai_webhook_signature;
use emvbridge_core::gateway::Dialect;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{IdemMismatch, PaiConfig};
use crate::dialect_state::{Card, Destination, Extra};
use crate::emv::{self, Verdict};
use crate::exchange::{Exec, Reply, SimRequest, SimResponse};
use crate::faults::{FaultAction, FaultKey, Op};
use crate::ledger::{brand_of, last4, Entry, Kind, Txn, TxnState};
use crate::outcome::{self, Code, EmvExtra, Forced, Outcome, ResolveInput, ThreeDs};
use crate::state::SimState;
use crate::store::{IdemRecord, PaiIndex};
use crate::{clock, money};

/// Longest accepted `idempotencyKey` (§2.3).
pub const MAX_IDEM_KEY: usize = 100;
/// Bound on stored tokens/instruments/customers, each.
const MAX_OBJECTS: usize = 100_000;

/// PAI error body (§2.3): `details` only on 400/422.
pub fn error(status: u16, message: &str, details: Option<&str>) -> SimResponse {
    let mut v =
        json!({"errorCode": format!("sandbox-{status}"), "statusCode": status, "message": message});
    if let (Some(d), 400 | 422) = (details, status) {
        v["details"] = json!(d);
    }
    SimResponse::json(status, &v)
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// The PaymentsAI secret policy (gateways.md §2.2, with the sandbox's configurable 30-character
/// maximum of §4.2): 12–30 characters, at least one upper-case letter, at least one
/// alphanumeric character, not one of the last 4 secrets.
pub fn check_secret(
    cfg: &PaiConfig,
    history: &[[u8; 32]],
    secret: &str,
) -> Result<(), &'static str> {
    let n = secret.chars().count();
    if n < cfg.secret_min_len || n > cfg.secret_max_len {
        return Err("secret must be between 12 and 30 characters");
    }
    if !secret.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("secret must contain an upper-case letter");
    }
    if !secret.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err("secret must contain an alphanumeric character");
    }
    let d = digest(secret.as_bytes());
    if history.iter().rev().take(4).any(|h| *h == d) {
        return Err("secret was used recently (last 4)");
    }
    Ok(())
}

fn auth(core: &SimState, req: &SimRequest) -> Result<String, SimResponse> {
    let Some(h) = req.header("authorization") else {
        return Err(error(401, "Missing auth token", None));
    };
    let cred = h.strip_prefix("ApiKey ").map(str::trim).unwrap_or_default();
    core.pai
        .keys
        .get(cred)
        .cloned()
        .ok_or_else(|| error(401, "Invalid auth token", None))
}

/// Entry point for `/pai/...`.
pub fn handle(core: &mut SimState, req: &SimRequest) -> Reply {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let r = match (req.method.clone(), segs.as_slice()) {
        (Method::PATCH, ["v1", "accounts", "public-api", acct]) => exchange(core, req, acct),
        (Method::PATCH, ["v1", "accounts", "public-api", acct, "api-keys", kid]) => rotate(core, req, acct, kid),
        (Method::POST, ["v1", "webhook-destinations"]) => destination(core, req),
        (Method::POST, ["tokens"]) => {
            let org = req.header("x-organization-id").unwrap_or_default().to_owned();
            if org != core.cfg.pai.organization_id {
                error(403, "Forbidden", None)
            } else {
                create_token(core, req, true)
            }
        }
        (Method::GET, ["3ds", id]) => SimResponse::html(
            200,
            format!("<!doctype html><title>3DS</title><p>Sandbox 3DS challenge for {}. Complete it with POST /_sim/pai/3ds.</p>", html_escape(id)),
        ),
        (_, ["v1", "public-api", "organizations", org, rest @ ..]) => {
            let key_org = match auth(core, req) {
                Ok(o) => o,
                Err(e) => return Reply::Respond(e),
            };
            if key_org != *org {
                return Reply::Respond(error(403, "Forbidden", None));
            }
            return org_route(core, req, org, rest);
        }
        _ => error(404, "Not found", None),
    };
    Reply::Respond(r)
}

fn html_escape(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

fn body_json(req: &SimRequest) -> Result<Value, SimResponse> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(error(
            400,
            "Invalid request body",
            Some("body must be a json object"),
        )),
    }
}

fn exchange(core: &mut SimState, req: &SimRequest, acct: &str) -> SimResponse {
    let cred = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("ApiKey "))
        .map(str::trim)
        .unwrap_or_default();
    let now = core.now();
    match &core.pai.temporal {
        Some((k, _)) if k != cred => return error(401, "Invalid auth token", None),
        Some((_, issued)) if now - issued > core.cfg.pai.temporal_ttl_secs => {
            return error(401, "Temporal key expired", None)
        }
        Some(_) => {}
        None => return error(401, "Invalid auth token", None),
    }
    if acct != core.cfg.pai.account_id {
        return error(403, "Forbidden", None);
    }
    set_secret(core, req, None)
}

fn rotate(core: &mut SimState, req: &SimRequest, acct: &str, kid: &str) -> SimResponse {
    if let Err(e) = auth(core, req) {
        return e;
    }
    let cred = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("ApiKey "))
        .map(str::trim)
        .unwrap_or_default();
    if acct != core.cfg.pai.account_id
        || !cred.starts_with(&format!("{acct}_"))
        || !cred.ends_with(&format!("_{kid}"))
    {
        return error(403, "Forbidden", None);
    }
    set_secret(core, req, Some(cred.to_owned()))
}

fn set_secret(core: &mut SimState, req: &SimRequest, replaces: Option<String>) -> SimResponse {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let secret = body
        .get("secret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Err(why) = check_secret(&core.cfg.pai, &core.pai.secret_history, secret) {
        return error(422, "Secret does not meet the policy", Some(why));
    }
    core.pai.secret_history.push(digest(secret.as_bytes()));
    if core.pai.secret_history.len() > 8 {
        core.pai.secret_history.remove(0);
    }
    let acct = core.cfg.pai.account_id.clone();
    let key = format!("key{}", core.rand_hex(12));
    let kid = format!("kid{}", core.rand_hex(6));
    let cred = format!("{acct}_{key}_{kid}");
    match replaces {
        Some(old) => {
            core.pai.keys.remove(&old);
        }
        None => core.pai.temporal = None,
    }
    core.pai
        .keys
        .insert(cred.clone(), core.cfg.pai.organization_id.clone());
    SimResponse::json(
        200,
        &json!({"data": {"accountId": acct, "apiKey": key, "apiKeyId": kid, "authorization": format!("ApiKey {cred}")}}),
    )
}

fn destination(core: &mut SimState, req: &SimRequest) -> SimResponse {
    if let Err(e) = auth(core, req) {
        return e;
    }
    let body = match body_json(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(url) = body
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http"))
    else {
        return error(422, "Validation error", Some("url is required"));
    };
    let basic = body
        .get("auth")
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("basic"))
        .map(|a| {
            (
                a.get("username")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                a.get("password")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        });
    if core.pai.destinations.len() >= 64 {
        return error(422, "Validation error", Some("too many destinations"));
    }
    core.pai.destinations.push(Destination {
        url: url.to_owned(),
        basic,
    });
    let id = format!("wd_{}", core.rand_hex(8));
    SimResponse::json(
        201,
        &json!({"data": {"id": id, "url": url, "eventTypes": body.get("eventTypes").cloned().unwrap_or(json!([]))}}),
    )
}

fn parse_card(v: &Value, nested: bool) -> Option<Card> {
    let (pan, cvv, m, y) = if nested {
        let pi = v.get("paymentInstrument")?;
        (
            pi.get("pan"),
            pi.get("cvv"),
            pi.get("expMonth"),
            pi.get("expYear"),
        )
    } else {
        (
            v.get("primaryAccountNumber"),
            v.get("cardVerificationValue"),
            v.get("expirationMonth"),
            v.get("expirationYear"),
        )
    };
    let pan = pan?.as_str()?.replace(' ', "");
    if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |x: Option<&Value>| x.and_then(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok()));
    let expiry = num(m)
        .zip(num(y))
        .map(|(m, y)| (m as u32, if y < 100 { y as u32 + 2000 } else { y as u32 }));
    Some(Card {
        pan,
        cvv: cvv.and_then(Value::as_str).map(str::to_owned),
        expiry,
    })
}

fn create_token(core: &mut SimState, req: &SimRequest, nested: bool) -> SimResponse {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(card) = parse_card(&body, nested) else {
        return error(422, "Validation error", Some("invalid card data"));
    };
    if core.pai.tokens.len() >= MAX_OBJECTS {
        return error(429, "Too many tokens", None);
    }
    let id = format!("tok_{}", core.rand_hex(10));
    let now = core.now();
    let (l4, brand) = (last4(&card.pan), brand_of(&card.pan));
    core.pai.tokens.insert(id.clone(), card);
    SimResponse::json(
        201,
        &json!({"type": "payment-card", "data": {"id": id, "createdAt": clock::iso8601(now), "expiratedAt": clock::iso8601(now + 1800), "last4": l4, "brand": brand}}),
    )
}

fn org_route(core: &mut SimState, req: &SimRequest, org: &str, rest: &[&str]) -> Reply {
    let r = match (req.method.clone(), rest) {
        (Method::POST, ["customers"]) => match body_json(req) {
            Ok(b) => {
                let id = format!("cus_{}", core.rand_hex(8));
                if core.pai.customers.len() < MAX_OBJECTS {
                    core.pai.customers.insert(id.clone(), b.clone());
                }
                SimResponse::json(
                    201,
                    &json!({"data": {"id": id, "email": b.get("email"), "firstName": b.get("firstName"), "lastName": b.get("lastName")}}),
                )
            }
            Err(e) => e,
        },
        (Method::POST, ["payment-instruments", "tokens"]) => create_token(core, req, false),
        (Method::POST, ["customers", cid, "payment-instruments"]) => attach(core, req, cid),
        (Method::POST, ["transactions"]) => return create_txn(core, req, org),
        (Method::GET, ["transactions"]) => list(core, req),
        (Method::GET, ["transactions", id]) => {
            let id = (*id).to_owned();
            let key = FaultKey {
                dialect: Some(Dialect::PaymentsAi),
                op: Some(Op::Query),
                ..Default::default()
            };
            return core.with_faults(
                key,
                |s| error(s, "Internal error", None),
                move |c, _| match c.store().pai_extra(&id).filter(|e| e.org == org_of(c)) {
                    Some(_) => {
                        c.ledger.note_lookup(&id);
                        Exec::reply(SimResponse::json(200, &render(c, &id).unwrap_or_default()))
                    }
                    None => Exec::reply(error(404, "Transaction not found", None)),
                },
            );
        }
        (Method::POST, ["transactions", id, "refund"]) => return refund(core, req, id),
        _ => error(404, "Not found", None),
    };
    Reply::Respond(r)
}

fn org_of(c: &SimState) -> String {
    c.cfg.pai.organization_id.clone()
}

fn attach(core: &mut SimState, req: &SimRequest, cid: &str) -> SimResponse {
    if !core.pai.customers.contains_key(cid) {
        return error(404, "Customer not found", None);
    }
    let body = match body_json(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let tok = body
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(card) = core.pai.tokens.remove(tok) else {
        return error(422, "Validation error", Some("unknown or used token"));
    };
    let id = format!("inst_{}", core.rand_hex(8));
    let (l4, brand) = (last4(&card.pan), brand_of(&card.pan));
    if core.pai.instruments.len() < MAX_OBJECTS {
        core.pai.instruments.insert(id.clone(), card);
    }
    SimResponse::json(
        201,
        &json!({"data": {"id": id, "customerId": cid, "method": "payment-card", "last4": l4, "brand": brand}}),
    )
}

/// One term of Rebilly's list `filter`: `field:value[,value…]`, terms joined by `;`.
fn filter_terms(filter: &str) -> Option<Vec<(&str, Vec<&str>)>> {
    filter
        .split(';')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (k, v) = t.split_once(':')?;
            Some((k.trim(), v.split(',').map(str::trim).collect()))
        })
        .collect()
}

/// `GET …/transactions?filter=…&limit=…&offset=…` (Rebilly `GetTransactionCollection`): the
/// organization's transactions, newest first, as a bare array.
fn list(core: &mut SimState, req: &SimRequest) -> SimResponse {
    let filter = req.query_param("filter").unwrap_or_default();
    let Some(terms) = filter_terms(&filter) else {
        return error(
            422,
            "Validation error",
            Some("filter must be field:value[;field:value]"),
        );
    };
    const FIELDS: [&str; 7] = [
        "id",
        "requestId",
        "customerId",
        "websiteId",
        "type",
        "status",
        "result",
    ];
    if let Some((k, _)) = terms.iter().find(|(k, _)| !FIELDS.contains(k)) {
        return error(
            422,
            "Validation error",
            Some(&format!("cannot filter by {k}")),
        );
    }
    let limit = req
        .query_param("limit")
        .map(|l| l.parse::<usize>().ok().filter(|l| *l <= 1000))
        .unwrap_or(Some(100));
    let offset = req
        .query_param("offset")
        .map(|o| o.parse::<usize>().ok())
        .unwrap_or(Some(0));
    let (Some(limit), Some(offset)) = (limit, offset) else {
        return error(
            422,
            "Validation error",
            Some("limit is 0..1000, offset a number"),
        );
    };
    let org = org_of(core);
    let mut hits = Vec::new();
    // The candidates through an index when a term names an indexed field (the lookup of one
    // transaction by id or requestId); every term is still checked on the rendered object.
    let by = terms
        .iter()
        .find_map(|(k, vals)| Some((PaiIndex::for_field(k)?, vals.as_slice())));
    for id in core.store().pai_ids(&org, by) {
        if core
            .ledger
            .get(&id)
            .is_none_or(|t| t.dialect != Dialect::PaymentsAi)
        {
            continue;
        }
        let Some(v) = render(core, &id) else {
            continue;
        };
        let ok = terms.iter().all(|(k, vals)| {
            v.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|x| vals.contains(&x))
        });
        if ok {
            hits.push((id, v));
        }
    }
    let page: Vec<(String, Value)> = hits.into_iter().skip(offset).take(limit).collect();
    for (id, _) in &page {
        core.ledger.note_lookup(id);
    }
    SimResponse::json(
        200,
        &Value::Array(page.into_iter().map(|(_, v)| v).collect()),
    )
}

/// A transaction as Rebilly's `Transaction` schema names and types it.
fn render(core: &SimState, id: &str) -> Option<Value> {
    let t = core.ledger.get(id)?;
    let x = core.store().pai_extra(id).unwrap_or_default();
    let exp = money::exponent(&t.currency);
    // Rebilly's `status` and `result` enums. A gateway error never reached the processor
    // in the sandbox's model: `never-sent`.
    let (status, result) = match t.state {
        TxnState::Approved if t.kind == Kind::Auth && !t.captured => {
            ("waiting-capture", "approved")
        }
        TxnState::Approved => ("completed", "approved"),
        TxnState::Declined => ("completed", "declined"),
        TxnState::Error => ("never-sent", "unknown"),
        TxnState::Voided => ("voided", "approved"),
        TxnState::Refunded => ("refunded", "approved"),
        TxnState::PartiallyRefunded => ("partially-refunded", "approved"),
        TxnState::Pending => ("offsite", "unknown"),
    };
    let amount = if t.state == TxnState::Declined || t.state == TxnState::Pending {
        t.amount_minor
    } else {
        t.approved_minor
    };
    let mut v = json!({"id": t.id, "type": x.type_name, "amount": money::to_json(amount, exp), "currency": t.currency,
        "requestAmount": money::to_json(t.amount_minor, exp), "requestCurrency": t.currency,
        "status": status, "result": result, "parentTransactionId": t.parent,
        "createdTime": clock::iso8601(t.created_at), "updatedTime": clock::iso8601(t.created_at),
        "isProcessedOutside": false, "isMerchantInitiated": false, "isRebill": false, "has3ds": x.three_ds.is_some(),
        // PAI's refund page names the transaction's `refundableAmount`; Rebilly's schema does not.
        "refundableAmount": money::to_json(t.refundable_minor(), exp)});
    if let Some(c) = &x.customer_id {
        v["customerId"] = json!(c);
    }
    if let Some(w) = &x.website_id {
        v["websiteId"] = json!(w);
    }
    if let Some(r) = &x.request_id {
        v["requestId"] = json!(r);
    }
    if let Some(d) = &t.description {
        // Rebilly's transaction `description` (the POS's reference, from emvbridge).
        v["description"] = json!(d);
    }
    if let Some(i) = &x.instrument_id {
        v["paymentInstrument"] = json!({"method": "payment-card", "paymentInstrumentId": i});
    }
    if x.metadata.as_object().is_some_and(|m| !m.is_empty()) {
        // PAI's documented `metadata` (Rebilly calls it `customFields`).
        v["metadata"] = x.metadata.clone();
    }
    if let Some(e) = x.emv_response {
        v["emvResponse"] = e;
    }
    if let Some(u) = x.approval_url {
        if t.state == TxnState::Pending {
            // Rebilly's `_links` carries the offsite approval URL.
            v["_links"] = json!([{"rel": "approvalUrl", "href": u}]);
        }
    }
    Some(v)
}

/// Queues the PAI webhook for `id` to the registered destinations (or the configured URL),
/// signed with hex HMAC-SHA256 of the raw body under the webhook secret. The scheme is
/// inferred (gateways.md §2.4): Rebilly's webhook schemas define no signature header (none /
/// basic / digest), while PaymentsAI's go-live runbook requires HMAC verification.
fn webhook(state: &mut SimState, id: &str, event: &str) {
    let Some(meta) = render(state, id) else {
        return;
    };
    let mut targets: Vec<Destination> = state.pai.destinations.clone();
    if targets.is_empty() {
        if let Some(u) = &state.cfg.pai.webhook_url {
            targets.push(Destination {
                url: u.clone(),
                basic: None,
            });
        }
    }
    let client_ref = state.ledger.get(id).and_then(|t| t.client_ref.clone());
    for d in targets {
        let dedup = format!("evt_{}", state.rand_hex(8));
        let body = json!({"deduplicationId": dedup, "type": event, "organizationId": state.cfg.pai.organization_id, "metadata": meta}).to_string();
        let cfg = state.cfg.pai.clone();
        let now = state.now();
        let b2 = body.clone();
        let basic = d.basic.clone();
        state.queue_webhook(
            Dialect::PaymentsAi,
            dedup,
            d.url.clone(),
            body,
            client_ref.clone(),
            move |bad| {
                let key = if bad {
                    format!("{}-wrong", cfg.webhook_secret)
                } else {
                    cfg.webhook_secret.clone()
                };
                let mut h = vec![
                    ("Content-Type".to_owned(), "application/json".to_owned()),
                    (
                        cfg.signature_header.clone(),
                        pai_webhook_signature(&key, b2.as_bytes()),
                    ),
                ];
                if cfg.send_timestamp {
                    h.push(("X-Sim-Timestamp".to_owned(), now.to_string()));
                }
                if let Some((u, p)) = &basic {
                    use base64::Engine as _;
                    h.push((
                        "Authorization".to_owned(),
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                        ),
                    ));
                }
                h
            },
        );
    }
}

/// `POST /_sim/pai/3ds {txId, outcome}`: finishes the 3DS challenge of transaction `id`
/// (`passed`: the customer passed it). Returns the transaction, `None` when `id` has no
/// pending challenge.
pub fn complete_3ds(state: &mut SimState, id: &str, passed: bool) -> Option<Value> {
    let x = state.store().pai_extra(id)?;
    let flow = x.three_ds?;
    let t = state.ledger.get_mut(id)?;
    if t.state != TxnState::Pending {
        return None;
    }
    let approve = passed && flow == ThreeDs::Challenge;
    if approve {
        t.state = TxnState::Approved;
        t.approved_minor = t.amount_minor;
        t.resp_code = "00".into();
    } else {
        t.state = TxnState::Declined;
        t.resp_code = "05".into();
    }
    let id_owned = id.to_owned();
    if approve {
        let code = state.auth_code(&id_owned);
        if let Some(t) = state.ledger.get_mut(&id_owned) {
            t.auth_code = Some(code);
        }
    }
    webhook(
        state,
        &id_owned,
        if approve {
            "transaction-processed"
        } else {
            "transaction-declined"
        },
    );
    render(state, &id_owned)
}

fn create_txn(core: &mut SimState, req: &SimRequest, org: &str) -> Reply {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(e) => return Reply::Respond(e),
    };
    let idem = match body.get("idempotencyKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_IDEM_KEY => {
            Some(s.clone())
        }
        Some(_) => {
            return Reply::Respond(error(
                400,
                "Invalid idempotencyKey",
                Some("idempotencyKey must be a string of at most 100 characters"),
            ))
        }
    };
    let fp = digest(&req.body);
    if let Some(k) = &idem {
        if let Some(IdemRecord {
            digest: stored_fp,
            resp,
            txn_id: id,
        }) = core.store().pai_idem(org, k)
        {
            if stored_fp != fp && core.cfg.pai.idem_mismatch == IdemMismatch::Conflict {
                return Reply::Respond(error(
                    409,
                    "Idempotency key reused with a different payload",
                    None,
                ));
            }
            core.ledger.note_lookup(&id);
            return Reply::Respond(resp);
        }
    }
    let currency = body
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Reply::Respond(error(
            400,
            "Invalid request",
            Some("currency must be an ISO 4217 code"),
        ));
    }
    let Some(amount) = body
        .get("amount")
        .and_then(|a| money::from_json(a, money::exponent(&currency)))
        .filter(|a| *a > 0)
    else {
        return Reply::Respond(error(
            400,
            "Invalid request",
            Some("amount must be a positive decimal"),
        ));
    };
    let type_name = body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if type_name != "sale" && type_name != "authorize" {
        return Reply::Respond(error(
            422,
            "Validation error",
            Some("type must be sale or authorize"),
        ));
    }
    // Rebilly `PostTransaction`: websiteId and customerId are required; requestId, when
    // given, matches `^[\-\w]+$` and is at most 50 characters.
    let id_field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.len() <= 50)
    };
    if id_field("websiteId").is_none() || id_field("customerId").is_none() {
        return Reply::Respond(error(
            422,
            "Validation error",
            Some("websiteId and customerId are required"),
        ));
    }
    if id_field("websiteId") != Some(core.cfg.pai.website_id.as_str()) {
        return Reply::Respond(error(422, "Validation error", Some("unknown websiteId")));
    }
    match body.get("requestId") {
        None | Some(Value::Null) => {}
        Some(Value::String(r))
            if !r.is_empty()
                && r.len() <= 50
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {}
        Some(_) => {
            return Reply::Respond(error(
                422,
                "Validation error",
                Some("requestId must match ^[-\\w]+$, at most 50 characters"),
            ))
        }
    }
    if let Err(e) = check_description(&body) {
        return Reply::Respond(e);
    }
    let emv_instr = body.pointer("/paymentInstruction/emv").cloned();
    let instrument = body
        .pointer("/paymentInstruction/paymentInstrumentId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // A sale on the instrument of an open authorization captures it (see the module docs).
    let parent = match (&instrument, type_name.as_str()) {
        (Some(inst), "sale") => open_auth(core, inst, amount, &currency),
        _ => None,
    };
    let op = if parent.is_some() {
        Op::Capture
    } else if emv_instr.is_some() {
        Op::Emv
    } else {
        Op::Sale
    };
    let key = FaultKey {
        dialect: Some(Dialect::PaymentsAi),
        op: Some(op),
        amount_minor: Some(amount),
        client_ref: idem.clone(),
    };
    let org = org.to_owned();
    let host = req.host.clone();
    core.with_faults(
        key,
        |s| error(s, "Internal server error", None),
        move |c, fault| {
            if matches!(fault, Some(FaultAction::AuthExpire)) {
                return Exec::reply(error(401, "Invalid auth token", None));
            }
            let exec = match parent {
                Some(p) => capture(c, &org, &p, amount, &currency, &body),
                None => sale(c, &org, &type_name, amount, &currency, &body, fault, &host),
            };
            if let (Some(k), Some(id)) = (&idem, exec.committed.first()) {
                if let Some(t) = c.ledger.get_mut(id) {
                    t.idem_key = Some(k.clone());
                    t.client_ref = Some(k.clone());
                }
                let resp = if exec.resp.status == 201 {
                    SimResponse::json(201, &render(c, id).unwrap_or_default())
                } else {
                    exec.resp.clone()
                };
                c.store().put_pai_idem(
                    &org,
                    k,
                    &IdemRecord {
                        digest: fp,
                        resp: resp.clone(),
                        txn_id: id.clone(),
                    },
                );
                return Exec {
                    resp,
                    committed: exec.committed,
                };
            }
            exec
        },
    )
}

/// Rebilly's `description`: absent, `null` (the transaction's), or a string of at most
/// [`MAX_DESCRIPTION`] characters (Rebilly's `maxLength`, the constant the adapter keeps
/// within); else `422`.
fn check_description(body: &Value) -> Result<(), SimResponse> {
    match body.get("description") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(d)) if d.chars().count() <= MAX_DESCRIPTION => Ok(()),
        Some(_) => Err(error(
            422,
            "Validation error",
            Some("description must be a string of at most 255 characters"),
        )),
    }
}

/// A text field of a request body, owned.
fn text_field(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The instrument id of `card` for `customer`, while the vault has room. A sale's card is
/// the instrument it already is when the customer presented it before (`shared`); an
/// authorization's card always gets an instrument of its own, because a capture names the
/// authorization only through its instrument (see [`open_auth`]) and two open authorizations
/// must never share one.
fn vault(c: &mut SimState, customer: &str, card: &Card, shared: bool) -> Option<String> {
    let print = shared.then(|| {
        let (month, year) = card.expiry.unwrap_or_default();
        emvbridge_core::gateway::sign::hmac_sha256_hex(
            &c.pai.fingerprint_key,
            format!("{customer}|{}|{month:02}{year:04}", card.pan).as_bytes(),
        )
    });
    if let Some(id) = print.as_ref().and_then(|p| c.pai.fingerprints.get(p)) {
        return Some(id.clone());
    }
    if c.pai.instruments.len() >= MAX_OBJECTS {
        return None;
    }
    let id = format!("inst_{}", c.rand_hex(8));
    c.pai.instruments.insert(id.clone(), card.clone());
    if let Some(p) = print {
        c.pai.fingerprints.insert(p, id.clone());
    }
    Some(id)
}

/// The newest open (approved, uncaptured) authorization on instrument `inst` that `amount`
/// of `currency` can capture.
fn open_auth(core: &SimState, inst: &str, amount: i64, currency: &str) -> Option<String> {
    core.store()
        .pai_ids_on_instrument(inst)
        .into_iter()
        .find(|id| {
            core.ledger.get(id).is_some_and(|t| {
                t.dialect == Dialect::PaymentsAi
                    && t.kind == Kind::Auth
                    && t.state == TxnState::Approved
                    && !t.captured
                    && t.currency == currency
                    && amount <= t.approved_minor
            })
        })
}

fn capture(
    c: &mut SimState,
    org: &str,
    parent: &str,
    amount: i64,
    currency: &str,
    body: &Value,
) -> Exec {
    let Some(p) = c
        .ledger
        .get(parent)
        .filter(|t| t.dialect == Dialect::PaymentsAi)
        .cloned()
    else {
        return Exec::reply(error(404, "Parent transaction not found", None));
    };
    if p.kind != Kind::Auth || p.state != TxnState::Approved || p.captured {
        return Exec::reply(error(409, "Parent transaction cannot be captured", None));
    }
    if amount > p.approved_minor || currency != p.currency {
        return Exec::reply(error(
            422,
            "Validation error",
            Some("capture exceeds the authorized amount"),
        ));
    }
    let id = format!("txn_{}", c.rand_hex(10));
    let now = c.now();
    let mut t = Txn::new(
        id.clone(),
        Dialect::PaymentsAi,
        Kind::Capture,
        amount,
        currency,
        now,
    );
    t.parent = Some(parent.to_owned());
    t.description = text_field(body, "description");
    t.state = TxnState::Approved;
    t.approved_minor = amount;
    t.resp_code = "00".into();
    t.auth_code = p.auth_code.clone();
    t.pan_last4 = p.pan_last4.clone();
    t.brand = p.brand.clone();
    t.entry = p.entry;
    c.ledger.push(t);
    if let Some(pp) = c.ledger.get_mut(parent) {
        pp.captured = true;
    }
    let parent_extra = c.store().pai_extra(parent).unwrap_or_default();
    c.store().put_pai_extra(
        &id,
        &Extra {
            org: org.to_owned(),
            // Rebilly's type of the second sale; the ledger knows it as the capture.
            type_name: "sale".into(),
            customer_id: text_field(body, "customerId"),
            website_id: text_field(body, "websiteId"),
            request_id: text_field(body, "requestId"),
            instrument_id: parent_extra.instrument_id,
            metadata: body.get("metadata").cloned().unwrap_or(json!({})),
            ..Default::default()
        },
    );
    webhook(c, &id, "transaction-processed");
    Exec {
        resp: SimResponse::json(201, &render(c, &id).unwrap_or_default()),
        committed: vec![id],
    }
}

#[allow(clippy::too_many_arguments)]
fn sale(
    c: &mut SimState,
    org: &str,
    type_name: &str,
    amount: i64,
    currency: &str,
    body: &Value,
    fault: Option<&FaultAction>,
    host: &str,
) -> Exec {
    let pi = body
        .get("paymentInstruction")
        .cloned()
        .unwrap_or(Value::Null);
    let mut card: Option<Card> = None;
    let mut verified = None;
    let mut emv_decline = None;
    let entry;
    if let Some(e) = pi.get("emv") {
        let hex = e.get("iccData").and_then(Value::as_str).unwrap_or_default();
        let invalid = |err: emv::EmvReject| {
            Exec::reply(error(
                400,
                "Invalid EMV data",
                Some(&format!("{err} ({})", err.err_code())),
            ))
        };
        let icc = match emv::decode_hex(hex) {
            Ok(icc) => icc,
            Err(err) => return invalid(err),
        };
        if emv::is_stripe(&icc) {
            // [EXT] a stripe read: authorized on its enciphered track, no ARQC.
            match emv::stripe(&icc, Some(amount)) {
                Ok(s) => {
                    card = Some(Card {
                        pan: s.pan,
                        cvv: None,
                        expiry: Some(s.expiry),
                    })
                }
                Err(err) => return invalid(err),
            }
            entry = Entry::Swipe;
        } else {
            if let Err(err) = emv::precheck(&icc, Some(amount)) {
                return invalid(err);
            }
            match emv::verify(&icc) {
                Verdict::Verified(v) => {
                    card = Some(Card {
                        pan: v.pan.reveal().to_owned(),
                        cvv: None,
                        expiry: None,
                    });
                    verified = Some(v);
                }
                Verdict::Declined { code, .. } => emv_decline = Some(code),
                Verdict::Rejected(err) => {
                    return Exec::reply(error(400, "Invalid EMV data", Some(&err.to_string())))
                }
            }
            entry = Entry::Emv;
        }
        // [EXT] the online PIN, as the reader enciphered it.
        if let Some(cd) = &card {
            let field = |k: &str| e.get(k).and_then(Value::as_str);
            match emv::pin_check(&icc, &cd.pan, field("pinBlock"), field("ksn")) {
                Ok(emv::PinCheck::Failed) => emv_decline = Some("55"),
                Ok(_) => {}
                Err(err) => return invalid(err),
            }
        }
    } else if let Some(tok) = pi.get("token").and_then(Value::as_str) {
        let Some(cd) = c.pai.tokens.remove(tok) else {
            return Exec::reply(error(
                422,
                "Validation error",
                Some("unknown or used token"),
            ));
        };
        card = Some(cd);
        entry = Entry::Token;
    } else if let Some(inst) = pi.get("paymentInstrumentId").and_then(Value::as_str) {
        let Some(cd) = c.pai.instruments.get(inst).cloned() else {
            return Exec::reply(error(
                422,
                "Validation error",
                Some("unknown payment instrument"),
            ));
        };
        card = Some(cd);
        entry = Entry::Token;
    } else {
        return Exec::reply(error(
            400,
            "Invalid request",
            Some("paymentInstruction needs token, paymentInstrumentId or emv"),
        ));
    }
    let forced = match fault {
        Some(FaultAction::Decline { code }) => Some(Forced::Decline(Code::new(code))),
        Some(FaultAction::AspenError { code }) => Some(Forced::GatewayError(*code)),
        _ => None,
    };
    let outcome = match emv_decline {
        Some(code) => Outcome::Declined {
            code: Code::new(code),
        },
        None => outcome::resolve(&ResolveInput {
            dialect: Some(Dialect::PaymentsAi),
            pan: card.as_ref().map(|c| c.pan.as_str()),
            cvv: card.as_ref().and_then(|c| c.cvv.as_deref()),
            expiry: card.as_ref().and_then(|c| c.expiry),
            amount_minor: amount,
            emv: verified.is_some(),
            forced,
        }),
    };
    let id = format!("txn_{}", c.rand_hex(10));
    let now = c.now();
    let kind = if type_name == "authorize" {
        Kind::Auth
    } else {
        Kind::Sale
    };
    let mut t = Txn::new(id.clone(), Dialect::PaymentsAi, kind, amount, currency, now);
    t.entry = entry;
    t.description = text_field(body, "description");
    if let Some(cd) = &card {
        t.pan_last4 = Some(last4(&cd.pan));
        t.brand = Some(brand_of(&cd.pan).to_owned());
    }
    // The card is vaulted: a token or EMV card gets an instrument id (what a capture names).
    let instrument_id = match (pi.get("paymentInstrumentId").and_then(Value::as_str), &card) {
        (Some(i), _) => Some(i.to_owned()),
        (None, Some(cd)) => {
            let customer = body.get("customerId").and_then(Value::as_str);
            vault(c, customer.unwrap_or_default(), cd, kind == Kind::Sale)
        }
        _ => None,
    };
    let mut x = Extra {
        org: org.to_owned(),
        type_name: type_name.to_owned(),
        customer_id: text_field(body, "customerId"),
        website_id: text_field(body, "websiteId"),
        request_id: text_field(body, "requestId"),
        instrument_id,
        metadata: body.get("metadata").cloned().unwrap_or(json!({})),
        ..Default::default()
    };
    let emv_resp = |arc: [u8; 2], extra: EmvExtra| -> Option<Value> {
        if entry != Entry::Emv {
            return None;
        }
        let arc_text = String::from_utf8_lossy(&arc).into_owned();
        Some(match &verified {
            Some(v) => {
                let iad = v.issuer_auth_data(arc, extra == EmvExtra::BadArpc);
                let mut r = json!({"arc": arc_text, "issuerAuthData": hex::encode_upper(iad)});
                if let EmvExtra::Script(tpl) = extra {
                    r["scripts"] = json!([hex::encode_upper(v.pin_unblock_script(tpl, false))]);
                }
                r
            }
            None => json!({"arc": arc_text}),
        })
    };
    let event;
    match outcome {
        Outcome::Approved {
            approved_minor,
            code,
            emv: extra,
        } => {
            t.state = TxnState::Approved;
            t.approved_minor = approved_minor;
            t.resp_code = code.as_str().to_owned();
            t.auth_code = Some(c.auth_code(&id));
            x.emv_response = emv_resp(*b"00", extra);
            // [EXT] The authorisation code (EMV tag 89) beside the ARC.
            if let Some(e) = x.emv_response.as_mut() {
                e["authCode"] = json!(t.auth_code);
            }
            event = Some("transaction-processed");
        }
        Outcome::Declined { code } => {
            t.state = TxnState::Declined;
            t.resp_code = code.as_str().to_owned();
            x.emv_response = emv_resp(code.arc(), EmvExtra::None);
            event = Some("transaction-declined");
        }
        Outcome::GatewayError { err_code } => {
            t.state = TxnState::Error;
            t.resp_code = err_code.to_string();
            c.ledger.push(t);
            c.store().put_pai_extra(&id, &x);
            return Exec {
                resp: error(500, "Internal server error", None),
                committed: vec![id],
            };
        }
        Outcome::ThreeDs(flow) => {
            t.state = TxnState::Pending;
            x.three_ds = Some(flow);
            x.approval_url = Some(format!("http://{host}/pai/3ds/{id}"));
            event = None;
        }
    }
    if let Some(e) = &x.emv_response {
        t.emv_resp = e
            .get("issuerAuthData")
            .and_then(Value::as_str)
            .map(|s| s.to_owned());
    }
    c.ledger.push(t);
    c.store().put_pai_extra(&id, &x);
    if let Some(ev) = event {
        webhook(c, &id, ev);
    }
    Exec {
        resp: SimResponse::json(201, &render(c, &id).unwrap_or_default()),
        committed: vec![id],
    }
}

fn refund(core: &mut SimState, req: &SimRequest, id: &str) -> Reply {
    let body = if req.body.is_empty() {
        json!({})
    } else {
        match body_json(req) {
            Ok(b) => b,
            Err(e) => return Reply::Respond(e),
        }
    };
    let id = id.to_owned();
    let key = FaultKey {
        dialect: Some(Dialect::PaymentsAi),
        op: Some(Op::Refund),
        ..Default::default()
    };
    core.with_faults(
        key,
        |s| error(s, "Internal server error", None),
        move |c, fault| {
            let Some(orig) = c
                .ledger
                .get(&id)
                .filter(|t| t.dialect == Dialect::PaymentsAi)
                .cloned()
            else {
                return Exec::reply(error(404, "Transaction not found", None));
            };
            // Rebilly has no void: "To refund or void, see Refund a transaction". Refunding an
            // open authorization voids it (a `void` transaction).
            if orig.kind == Kind::Auth && orig.state == TxnState::Approved && !orig.captured {
                return void_auth(c, &orig, &body, fault);
            }
            if let Err(e) = check_description(&body) {
                return Exec::reply(e);
            }
            let refundable = orig.refundable_minor();
            if refundable == 0 {
                return Exec::reply(error(409, "Transaction cannot be refunded", None));
            }
            let amount = match body.get("amount") {
                None | Some(Value::Null) => Some(refundable),
                Some(a) => money::from_json(a, money::exponent(&orig.currency)),
            };
            let Some(amount) = amount.filter(|a| *a > 0 && *a <= refundable) else {
                return Exec::reply(error(
                    422,
                    "Validation error",
                    Some("amount exceeds the refundable amount"),
                ));
            };
            let now = c.now();
            if let Some(t) = c.ledger.get_mut(&id) {
                t.refunded_minor += amount;
                t.state = if t.refunded_minor >= t.approved_minor {
                    TxnState::Refunded
                } else {
                    TxnState::PartiallyRefunded
                };
            }
            let rid = format!("txn_{}", c.rand_hex(10));
            let mut r = Txn::new(
                rid.clone(),
                Dialect::PaymentsAi,
                Kind::Refund,
                amount,
                &orig.currency,
                now,
            );
            r.parent = Some(id.clone());
            r.description = text_field(&body, "description");
            r.state = TxnState::Approved;
            r.approved_minor = amount;
            r.resp_code = "00".into();
            r.pan_last4 = orig.pan_last4.clone();
            r.brand = orig.brand.clone();
            c.ledger.push(r);
            c.store().put_pai_extra(
                &rid,
                &Extra {
                    org: org_of(c),
                    type_name: "refund".into(),
                    metadata: json!({}),
                    ..Default::default()
                },
            );
            webhook(c, &rid, "transaction-processed");
            Exec {
                resp: SimResponse::json(201, &render(c, &rid).unwrap_or_default()),
                committed: vec![rid],
            }
        },
    )
}

/// Voids the open authorization `orig` (a refund of it): the authorization becomes `voided`
/// and a `void` transaction is created. The amount, when given, must be the whole amount.
fn void_auth(c: &mut SimState, orig: &Txn, body: &Value, fault: Option<&FaultAction>) -> Exec {
    if matches!(fault, Some(FaultAction::VoidDecline)) {
        return Exec::reply(error(409, "Transaction cannot be voided", None));
    }
    match body.get("amount") {
        None | Some(Value::Null) => {}
        Some(a)
            if money::from_json(a, money::exponent(&orig.currency))
                == Some(orig.approved_minor) => {}
        Some(_) => {
            return Exec::reply(error(
                422,
                "Validation error",
                Some("an authorization is voided whole"),
            ))
        }
    }
    if let Some(t) = c.ledger.get_mut(&orig.id) {
        t.state = TxnState::Voided;
    }
    let vid = format!("txn_{}", c.rand_hex(10));
    let mut v = Txn::new(
        vid.clone(),
        Dialect::PaymentsAi,
        Kind::Void,
        orig.approved_minor,
        &orig.currency,
        c.now(),
    );
    v.parent = Some(orig.id.clone());
    v.state = TxnState::Approved;
    v.approved_minor = orig.approved_minor;
    v.resp_code = "00".into();
    c.ledger.push(v);
    let x = c.store().pai_extra(&orig.id).unwrap_or_default();
    c.store().put_pai_extra(
        &vid,
        &Extra {
            org: org_of(c),
            type_name: "void".into(),
            customer_id: x.customer_id,
            website_id: x.website_id,
            instrument_id: x.instrument_id,
            metadata: json!({}),
            ..Default::default()
        },
    );
    webhook(c, &vid, "transaction-processed");
    Exec {
        resp: SimResponse::json(201, &render(c, &vid).unwrap_or_default()),
        committed: vec![vid],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_policy() {
        let cfg = PaiConfig::default();
        let mut h = Vec::new();
        assert!(check_secret(&cfg, &h, "short1A").is_err());
        assert!(check_secret(&cfg, &h, "alllowercase123").is_err());
        assert!(check_secret(&cfg, &h, &"A".repeat(31)).is_err());
        assert!(check_secret(&cfg, &h, "GoodSecret123").is_ok());
        for s in [
            "Secret000001",
            "Secret000002",
            "Secret000003",
            "Secret000004",
        ] {
            h.push(digest(s.as_bytes()));
        }
        assert!(check_secret(&cfg, &h, "Secret000001").is_err());
        h.push(digest(b"Secret000005"));
        assert!(check_secret(&cfg, &h, "Secret000001").is_ok());
    }

    #[test]
    fn error_shape() {
        let e = error(401, "Missing auth token", Some("x")).json_body();
        assert_eq!(e["statusCode"], 401);
        assert!(e.get("details").is_none());
        assert_eq!(error(422, "v", Some("d")).json_body()["details"], "d");
    }

    #[test]
    fn descriptions_follow_rebilly() {
        for ok in [
            json!({}),
            json!({"description": null}),
            json!({"description": "é".repeat(255)}),
        ] {
            assert!(check_description(&ok).is_ok(), "{ok}");
        }
        for bad in [
            json!({"description": "x".repeat(256)}),
            json!({"description": 7}),
        ] {
            assert_eq!(check_description(&bad).unwrap_err().status, 422, "{bad}");
        }
    }
}
