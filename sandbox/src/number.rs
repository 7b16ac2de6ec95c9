//! Number (Aspen REST) dialect under `/number` (gateways.md §1, §4.2, §4.4): `Authenticate` →
//! SessKey, HMAC-form SessKey for card-data calls, 25 h sessions, IP lockout after 6 failures,
//! `*Result` envelopes, `Bad Request` for malformed JSON, and the \[EXT\] `POST /CardSale/EMV`.
//! Sessions and lockouts are kept in [`crate::dialect_state::NumberState`].
//!
//! Replies follow Number's OpenAPI (`docs/gateway-specs/number/master-openapi-rest.yaml`):
//! `AuthenticateResult` with `MerchantList[].TermID` a string and `ThisUser.ID` an integer;
//! `Transaction_QueryResult {NumRecords, Transactions:[Transaction]}` with the schema's field
//! names (`ID`, `AMOUNT`, `TxSTATUS` names, `TxType` enum); the Incremental Auth page's
//! `CreditCardSale_IncrementalResult`. Both base paths are served (the pages'
//! `/APIcardProcNumber/v1.0.0` and the OpenAPI's `/APIcardProcREST/v1.0.0`). Where the
//! definition is silent (the EMV operation, error replies' extra fields) the sandbox says so.

use axum::http::Method;
use emvbridge_core::gateway::sign::verify_hmac_sha256_hex;
use emvbridge_core::gateway::Dialect;
use emvbridge_protocol::emv::mask_pan_digits;
use serde_json::{json, Value};

use crate::dialect_state::Session;
use crate::emv::{self, Verdict};
use crate::exchange::{Exec, Reply, SimRequest, SimResponse};
use crate::faults::{FaultAction, FaultKey, Op};
use crate::ledger::{brand_of, last4, Entry, Kind, Txn, TxnState};
use crate::outcome::{self, Code, EmvExtra, Forced, Outcome, ResolveInput};
use crate::state::SimState;
use crate::{clock, money};

/// The caller's IP as Number sees it: `X-Sim-Client-IP` \[EXT\] or the TCP peer.
fn client_ip(req: &SimRequest) -> String {
    req.header("x-sim-client-ip")
        .map(str::to_owned)
        .unwrap_or_else(|| req.peer_ip.to_string())
}

fn envelope(name: &str, body: Value) -> SimResponse {
    let mut m = serde_json::Map::new();
    m.insert(name.to_owned(), body);
    SimResponse::json(200, &Value::Object(m))
}

fn aspen_error(name: &str, code: u32, msg: &str) -> SimResponse {
    envelope(
        name,
        json!({"FunctionOk": false, "AuthSuccess": code != 5030 && code != 5050 && code != 5090, "TxApproved": false,
               "ErrCode": code, "ErrMsg": format!("ERROR:{code}:HIGH:{msg}"), "RespMsg": msg}),
    )
}

fn result_name(op: &str) -> Option<&'static str> {
    Some(match op {
        "/Authenticate" => "AuthenticateResult",
        "/CardSale/CardPresent" => "CreditCardSale_CardPresentResult",
        "/CardSale/Manual" => "CreditCardSale_ManualResult",
        "/CardSale/EMV" => "CreditCardSale_EMVResult",
        "/CardSale/Void" => "Transaction_VoidResult",
        "/CardSale/ApplyCredit" => "Transaction_ApplyCreditResult",
        // The Incremental Auth page's sample response; the OpenAPI's `queryTransactions`.
        "/CardSale/IncrementAuth" => "CreditCardSale_IncrementalResult",
        "/Query/Transaction" => "Transaction_QueryResult",
        _ => return None,
    })
}

/// Entry point for `/number/...`.
pub fn handle(core: &mut SimState, req: &SimRequest) -> Reply {
    let path = req.path.as_str();
    let op = path
        .strip_prefix("/APIcardProcNumber/v1.0.0")
        .or_else(|| path.strip_prefix("/APIcardProcREST/v1.0.0"))
        .unwrap_or(path);
    let Some(name) = result_name(op) else {
        return Reply::Respond(SimResponse::text(404, "Not Found"));
    };
    if req.method != Method::POST {
        return Reply::Respond(SimResponse::text(405, "Method Not Allowed"));
    }
    let ip = client_ip(req);
    if core.number.is_locked(&ip) {
        return Reply::Respond(aspen_error(
            name,
            5090,
            "locked: too many failed authentications",
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Reply::Respond(SimResponse::text(400, "Bad Request"));
    };
    if !body.is_object() {
        return Reply::Respond(SimResponse::text(400, "Bad Request"));
    }
    if op == "/Authenticate" {
        let key = FaultKey {
            dialect: Some(Dialect::Number),
            op: Some(Op::Auth),
            ..Default::default()
        };
        return core.with_faults(
            key,
            |s| SimResponse::text(s, "Server Error"),
            |c, _| Exec::reply(authenticate(c, &body, &ip)),
        );
    }
    let card_op = matches!(
        op,
        "/CardSale/CardPresent" | "/CardSale/Manual" | "/CardSale/EMV"
    );
    let sess = match check_sesskey(core, req, &ip, card_op) {
        Ok(s) => s,
        Err((code, msg)) => return Reply::Respond(aspen_error(name, code, msg)),
    };
    let (fop, amount) = match op {
        "/CardSale/EMV" => (Op::Emv, amount_of(&body)),
        "/CardSale/CardPresent" | "/CardSale/Manual" => (Op::Sale, amount_of(&body)),
        "/CardSale/Void" => (Op::Void, None),
        "/CardSale/ApplyCredit" => (Op::Refund, money_field(&body, "CreditAmount")),
        "/CardSale/IncrementAuth" => (Op::Capture, money_field(&body, "AdditionalAmt")),
        _ => (Op::Query, None),
    };
    let client_ref = body
        .pointer("/PurchItems/ClientRefID")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let key = FaultKey {
        dialect: Some(Dialect::Number),
        op: Some(fop),
        amount_minor: amount,
        client_ref,
    };
    let op = op.to_owned();
    core.with_faults(
        key,
        |s| SimResponse::text(s, "Server Error"),
        move |c, fault| {
            if matches!(fault, Some(FaultAction::AuthExpire)) {
                c.number.sessions.remove(&sess);
                return Exec::reply(aspen_error(name, 5030, "SessKey expired"));
            }
            match op.as_str() {
                "/CardSale/Void" => void(c, name, &body, fault),
                "/CardSale/ApplyCredit" => apply_credit(c, name, &body),
                "/CardSale/IncrementAuth" => increment_auth(c, name, &body),
                "/Query/Transaction" => Exec::reply(query(c, name, &body)),
                _ => sale(c, name, &op, &body, fault),
            }
        },
    )
}

fn authenticate(core: &mut SimState, body: &Value, ip: &str) -> SimResponse {
    let cfg = &core.cfg.number;
    let acct = body
        .get("AcctCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let token = body
        .get("Token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if acct != cfg.acct_code || !token.eq_ignore_ascii_case(&cfg.token) {
        let n = core.number.failures.entry(ip.to_owned()).or_insert(0);
        *n += 1;
        if *n >= cfg.lockout_after {
            core.number.locked.insert(ip.to_owned());
        }
        tracing::info!(failures = *n, "number: failed authentication");
        // The definition shows only the success; a refusal keeps its types (no nulls).
        return envelope(
            "AuthenticateResult",
            json!({"FunctionOk": true, "AuthSuccess": false, "ErrCode": 5010, "ErrMsg": "ERROR:5010:HIGH:Invalid credentials",
                   "RespMsg": "Authentication failed", "SessKey": "", "MerchantList": []}),
        );
    }
    core.number.failures.remove(ip);
    let (merch, user, ttl) = (cfg.merch_id, cfg.user_id.clone(), cfg.session_ttl_secs);
    let acct_code = cfg.acct_code.clone();
    let key = core.rand_hex(21).to_ascii_uppercase();
    let now = core.now();
    core.number.sessions.insert(
        key.clone(),
        Session {
            created: now,
            ip: ip.to_owned(),
        },
    );
    envelope(
        "AuthenticateResult",
        json!({"FunctionOk": true, "AuthSuccess": true, "ErrCode": 0, "ErrMsg": "",
               "RespMsg": format!("SessKey Expires|{}", clock::iso8601(now + ttl)), "SessKey": key,
               "MerchantList": [{"ID": merch, "TermID": "001", "Descrip": "Sandbox Merchant", "Location": "Sandbox", "Address": "1 Loopback Way"}],
               // `ID` is an integer in the definition; a non-numeric configured user id
               // (never the default) is sent as 0.
               "ThisUser": {"ID": user.parse::<i64>().unwrap_or(0), "AccountCode": acct_code, "Alias": "sandbox",
                            "IsExpired": false, "IsLockedOut": false}}),
    )
}

/// Checks the `SessKey` header; returns the session key or `(ErrCode, message)`.
fn check_sesskey(
    core: &mut SimState,
    req: &SimRequest,
    ip: &str,
    card_op: bool,
) -> Result<String, (u32, &'static str)> {
    let raw = req.header("sesskey").ok_or((5020, "missing SessKey"))?;
    let parts: Vec<&str> = raw.split('_').collect();
    let key = match parts.as_slice() {
        [k] if !card_op => k.to_ascii_uppercase(),
        [_] => return Err((5051, "card data requires the hmac sesskey")),
        [k, epoch, uid, mac] => {
            let cfg = &core.cfg.number;
            let signed = format!("{k}_{epoch}_{uid}");
            if !verify_hmac_sha256_hex(cfg.hmac_secret.as_bytes(), signed.as_bytes(), mac)
                || *uid != cfg.user_id
            {
                return Err((5051, "bad sesskey hmac"));
            }
            let epoch: i64 = epoch.parse().map_err(|_| (5051, "bad sesskey epoch"))?;
            if (core.now() - epoch).abs() > cfg.hmac_skew_secs {
                return Err((5052, "sesskey epoch outside the accepted skew"));
            }
            k.to_ascii_uppercase()
        }
        _ => return Err((5020, "malformed SessKey")),
    };
    let ttl = core.cfg.number.session_ttl_secs;
    let now = core.now();
    let s = core
        .number
        .sessions
        .get(&key)
        .cloned()
        .ok_or((5020, "unknown SessKey"))?;
    if now - s.created >= ttl {
        core.number.sessions.remove(&key);
        return Err((5030, "SessKey expired"));
    }
    if s.ip != ip {
        return Err((5050, "caller ip changed"));
    }
    Ok(key)
}

fn money_field(body: &Value, field: &str) -> Option<i64> {
    body.get(field).and_then(|v| money::from_json(v, 2))
}

fn amount_of(body: &Value) -> Option<i64> {
    body.pointer("/Amounts/TotalAmt")
        .and_then(|v| money::from_json(v, 2))
}

fn next_txid(core: &mut SimState) -> String {
    core.number.next_txid += 1;
    (53_000 + core.number.next_txid).to_string()
}

fn dec(minor: i64) -> Value {
    money::to_json(minor, 2)
}

/// PAN from a track (`%B4111…^NAME^YYMM…` or `;4111…=YYMM…`).
pub fn pan_from_track(track: &str) -> Option<(String, Option<(u32, u32)>)> {
    let t = track.trim().trim_start_matches('%').trim_start_matches(';');
    let t = t.strip_prefix('B').unwrap_or(t);
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    if !(12..=19).contains(&digits.len()) {
        return None;
    }
    let rest = t.get(digits.len()..).unwrap_or_default();
    let yymm = match rest.chars().next() {
        Some('=') => rest.get(1..5),
        Some('^') => rest
            .get(1..)
            .and_then(|r| r.split_once('^'))
            .and_then(|(_, r)| r.get(..4)),
        _ => None,
    };
    let exp = yymm.and_then(|s| {
        let yy: u32 = s.get(..2)?.parse().ok()?;
        let mm: u32 = s.get(2..4)?.parse().ok()?;
        Some((mm, 2000 + yy))
    });
    Some((digits, exp))
}

fn forced_of(fault: Option<&FaultAction>) -> Option<Forced> {
    match fault {
        Some(FaultAction::Decline { code }) => Some(Forced::Decline(Code::new(code))),
        Some(FaultAction::AspenError { code }) => Some(Forced::GatewayError(*code)),
        _ => None,
    }
}

fn sale(
    core: &mut SimState,
    name: &str,
    op: &str,
    body: &Value,
    fault: Option<&FaultAction>,
) -> Exec {
    let Some(amount) = amount_of(body) else {
        return Exec::reply(aspen_error(
            name,
            1001,
            "invalid or missing Amounts.TotalAmt",
        ));
    };
    let auth_only = body
        .get("IsAuthOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut pan: Option<String> = None;
    let mut cvv: Option<String> = None;
    let mut expiry = None;
    let mut verified = None;
    let mut emv_decline: Option<(&'static str, &'static str)> = None;
    let entry = match op {
        "/CardSale/EMV" => {
            let hex = body
                .get("EmvTags")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let icc = match emv::decode_hex(hex) {
                Ok(icc) => icc,
                Err(e) => return Exec::reply(aspen_error(name, e.err_code(), &e.to_string())),
            };
            let entry = if emv::is_stripe(&icc) {
                // [EXT] a stripe read: authorized on its enciphered track, no ARQC.
                match emv::stripe(&icc, Some(amount)) {
                    Ok(s) => {
                        pan = Some(s.pan);
                        expiry = Some(s.expiry);
                    }
                    Err(e) => return Exec::reply(aspen_error(name, e.err_code(), &e.to_string())),
                }
                Entry::Swipe
            } else {
                if let Err(e) = emv::precheck(&icc, Some(amount)) {
                    return Exec::reply(aspen_error(name, e.err_code(), &e.to_string()));
                }
                match emv::verify(&icc) {
                    Verdict::Verified(v) => {
                        pan = Some(v.pan.reveal().to_owned());
                        verified = Some(v);
                    }
                    Verdict::Declined { code, message } => emv_decline = Some((code, message)),
                    Verdict::Rejected(e) => {
                        return Exec::reply(aspen_error(name, e.err_code(), &e.to_string()))
                    }
                }
                Entry::Emv
            };
            // [EXT] the online PIN, as the reader enciphered it.
            if let Some(p) = &pan {
                let field = |k: &str| body.get(k).and_then(Value::as_str);
                match emv::pin_check(&icc, p, field("PinBlock"), field("PinKsn")) {
                    Ok(emv::PinCheck::Failed) => emv_decline = Some(("55", "incorrect pin")),
                    Ok(_) => {}
                    Err(e) => return Exec::reply(aspen_error(name, e.err_code(), &e.to_string())),
                }
            }
            entry
        }
        "/CardSale/CardPresent" => {
            let track = body
                .get("Track")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some((p, e)) = pan_from_track(track) else {
                return Exec::reply(aspen_error(name, 1002, "unreadable Track"));
            };
            pan = Some(p);
            expiry = e;
            Entry::Swipe
        }
        _ => {
            // [EXT] the real API wants the PAN RSA-OAEP encrypted; the sandbox takes it clear.
            let info = body.get("ccCardInfo").cloned().unwrap_or(Value::Null);
            let p = info
                .get("AccountNumber")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !(12..=19).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Exec::reply(aspen_error(name, 1003, "invalid ccCardInfo.AccountNumber"));
            }
            pan = Some(p.to_owned());
            cvv = info.get("CSV").and_then(Value::as_str).map(str::to_owned);
            let m = info
                .get("ExpMonth")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
            let y = info
                .get("ExpYear")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
            if let (Some(m), Some(y)) = (m, y) {
                let y = if y < 100 { y + 2000 } else { y };
                expiry = Some((m as u32, y as u32));
            }
            Entry::Keyed
        }
    };
    let outcome = match emv_decline {
        Some((code, _)) => Outcome::Declined {
            code: Code::new(code),
        },
        None => outcome::resolve(&ResolveInput {
            dialect: Some(Dialect::Number),
            pan: pan.as_deref(),
            cvv: cvv.as_deref(),
            expiry,
            amount_minor: amount,
            emv: verified.is_some(),
            forced: forced_of(fault),
        }),
    };
    let id = next_txid(core);
    let now = core.now();
    let mut t = Txn::new(
        id.clone(),
        Dialect::Number,
        if auth_only { Kind::Auth } else { Kind::Sale },
        amount,
        "USD",
        now,
    );
    t.entry = entry;
    t.client_ref = body
        .pointer("/PurchItems/ClientRefID")
        .and_then(Value::as_str)
        .map(str::to_owned);
    t.rpguid = body
        .pointer("/PurchItems/RPGUID")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // `Items.ServiceDescrip`: "A description of the service or item" (no limit defined).
    t.description = body
        .pointer("/PurchItems/ServiceDescrip")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(p) = &pan {
        t.pan_last4 = Some(last4(p));
        t.brand = Some(brand_of(p).to_owned());
    }
    let mut r = json!({"FunctionOk": true, "TxApproved": false, "TxID": id.parse::<i64>().unwrap_or(0), "TxnCode": "",
        "RespMsg": "", "ErrCode": 0, "ErrMsg": "", "AVSresult": "", "CVVresult": "", "IsPartialApproval": false,
        "RequiresVoiceAuth": false, "ResponseApprovedAmount": 0, "ResponseAuthorizedAmount": 0,
        "ResponseBalanceAmount": 0, "AcquirerResponseEMV": Value::Null});
    let emv_hex = |arc: [u8; 2], extra: EmvExtra| -> Option<String> {
        if entry != Entry::Emv {
            return None;
        }
        Some(hex::encode_upper(match &verified {
            Some(v) => emv::issuer_response(
                v,
                arc,
                extra == EmvExtra::BadArpc,
                match extra {
                    EmvExtra::Script(t) => Some(t),
                    _ => None,
                },
            ),
            None => emv::arc_only(arc),
        }))
    };
    match outcome {
        Outcome::Approved {
            approved_minor,
            code,
            emv: extra,
        } => {
            let auth = core.auth_code(&id);
            t.state = TxnState::Approved;
            t.approved_minor = approved_minor;
            t.resp_code = code.as_str().to_owned();
            t.auth_code = Some(auth.clone());
            t.emv_resp = emv_hex(*b"00", extra);
            r["TxApproved"] = json!(true);
            r["TxnCode"] = json!(auth);
            r["RespMsg"] = json!(format!("APPROVED {auth}"));
            r["IsPartialApproval"] = json!(approved_minor < amount);
            r["ResponseApprovedAmount"] = dec(approved_minor);
            r["ResponseAuthorizedAmount"] = dec(approved_minor);
            r["ResponseBalanceAmount"] = dec(amount - approved_minor);
            r["AcquirerResponseEMV"] = json!(t.emv_resp);
            if extra == EmvExtra::BadArpc {
                r["SimNote"] = json!("bad_arpc");
            }
        }
        Outcome::Declined { code } => {
            t.state = TxnState::Declined;
            t.resp_code = code.as_str().to_owned();
            t.emv_resp = emv_hex(code.arc(), EmvExtra::None);
            let why = match emv_decline {
                Some((_, m)) => m.to_ascii_uppercase(),
                None if code.is_nsf() => "INSUFFICIENT FUNDS".into(),
                None => "DO NOT HONOR".into(),
            };
            r["TxnCode"] = json!(code.as_str());
            r["RespMsg"] = json!(format!("DECLINED {} {why}", code.as_str()));
            r["AcquirerResponseEMV"] = json!(t.emv_resp);
        }
        Outcome::GatewayError { err_code } => {
            t.state = TxnState::Error;
            t.resp_code = err_code.to_string();
            core.ledger.push(t);
            let e = aspen_error(name, err_code, "Aspen error (sandbox)");
            return Exec {
                resp: e,
                committed: vec![id],
            };
        }
        Outcome::ThreeDs(_) => {
            return Exec::reply(aspen_error(
                name,
                9998,
                "3ds is not supported by this dialect",
            ));
        }
    }
    tracing::info!(txid = %id, pan = %pan.as_deref().map(mask_pan_digits).unwrap_or_default(), state = ?t.state, "number sale");
    core.ledger.push(t);
    Exec {
        resp: envelope(name, r),
        committed: vec![id],
    }
}

fn txid_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => n.as_i64().map(|n| n.to_string()),
        Value::String(s)
            if !s.is_empty() && s.len() < 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

fn void(core: &mut SimState, name: &str, body: &Value, fault: Option<&FaultAction>) -> Exec {
    let txid = txid_of(body.get("TxID")).unwrap_or_default();
    let Some(orig) = core
        .ledger
        .get(&txid)
        .filter(|t| t.dialect == Dialect::Number)
        .cloned()
    else {
        let n = if txid.is_empty() {
            "0".to_owned()
        } else {
            txid
        };
        return Exec::reply(aspen_error(
            name,
            6724,
            &format!("Could NOT retrieve transaction details for TXID {n}"),
        ));
    };
    let txnum = orig.id.parse::<i64>().unwrap_or(0);
    if matches!(fault, Some(FaultAction::VoidDecline)) {
        return Exec::reply(envelope(
            name,
            json!({"FunctionOk": true, "TxApproved": false, "TxID": txnum, "RespMsg": "VOID DECLINED", "ErrCode": 0, "ErrMsg": ""}),
        ));
    }
    if orig.state != TxnState::Approved || !matches!(orig.kind, Kind::Sale | Kind::Auth) {
        return Exec::reply(aspen_error(
            name,
            6726,
            &format!("transaction {txnum} cannot be voided"),
        ));
    }
    let now = core.now();
    if let Some(t) = core.ledger.get_mut(&txid) {
        t.state = TxnState::Voided;
    }
    let id = next_txid(core);
    let mut v = Txn::new(
        id.clone(),
        Dialect::Number,
        Kind::Void,
        orig.approved_minor,
        &orig.currency,
        now,
    );
    v.parent = Some(orig.id.clone());
    v.state = TxnState::Approved;
    v.resp_code = "00".into();
    v.client_ref = orig.client_ref.clone();
    core.ledger.push(v);
    Exec {
        resp: envelope(
            name,
            json!({"FunctionOk": true, "TxApproved": true, "TxID": txnum, "RespMsg": "VOIDED", "ErrCode": 0, "ErrMsg": ""}),
        ),
        committed: vec![id],
    }
}

fn apply_credit(core: &mut SimState, name: &str, body: &Value) -> Exec {
    let txid = txid_of(body.get("TxID")).unwrap_or_default();
    let Some(orig) = core
        .ledger
        .get(&txid)
        .filter(|t| t.dialect == Dialect::Number)
        .cloned()
    else {
        return Exec::reply(aspen_error(
            name,
            6724,
            &format!("Could NOT retrieve transaction details for TXID {txid}"),
        ));
    };
    let Some(amount) = money_field(body, "CreditAmount").filter(|a| *a > 0) else {
        return Exec::reply(aspen_error(name, 1001, "invalid CreditAmount"));
    };
    if amount > orig.refundable_minor() {
        return Exec::reply(aspen_error(
            name,
            6730,
            "credit exceeds the refundable amount",
        ));
    }
    let now = core.now();
    if let Some(t) = core.ledger.get_mut(&txid) {
        t.refunded_minor += amount;
        t.state = if t.refunded_minor >= t.approved_minor {
            TxnState::Refunded
        } else {
            TxnState::PartiallyRefunded
        };
    }
    let id = next_txid(core);
    let mut r = Txn::new(
        id.clone(),
        Dialect::Number,
        Kind::Refund,
        amount,
        &orig.currency,
        now,
    );
    r.parent = Some(orig.id.clone());
    r.state = TxnState::Approved;
    r.approved_minor = amount;
    r.resp_code = "00".into();
    r.pan_last4 = orig.pan_last4.clone();
    r.brand = orig.brand.clone();
    core.ledger.push(r);
    Exec {
        resp: envelope(
            name,
            json!({"FunctionOk": true, "TxApproved": true, "TxID": id.parse::<i64>().unwrap_or(0), "RespMsg": "CREDIT APPLIED", "ErrCode": 0, "ErrMsg": ""}),
        ),
        committed: vec![id],
    }
}

fn increment_auth(core: &mut SimState, name: &str, body: &Value) -> Exec {
    let txid = txid_of(body.get("OrigAuthTxID")).unwrap_or_default();
    let Some(orig) = core
        .ledger
        .get(&txid)
        .filter(|t| t.dialect == Dialect::Number)
        .cloned()
    else {
        return Exec::reply(aspen_error(
            name,
            6724,
            &format!("Could NOT retrieve transaction details for TXID {txid}"),
        ));
    };
    if orig.kind != Kind::Auth || orig.state != TxnState::Approved || orig.captured {
        return Exec::reply(aspen_error(name, 6727, "not an open auth-only transaction"));
    }
    let add = money_field(body, "AdditionalAmt").unwrap_or(0);
    let finalize = body
        .get("Finalize")
        .and_then(|v| v.as_i64().or_else(|| v.as_bool().map(i64::from)))
        .unwrap_or(0)
        == 1;
    let now = core.now();
    let mut committed = Vec::new();
    let total = orig.approved_minor + add;
    if let Some(t) = core.ledger.get_mut(&txid) {
        t.amount_minor += add;
        t.approved_minor = total;
        t.captured = finalize;
    }
    if finalize {
        let id = next_txid(core);
        let mut c = Txn::new(
            id.clone(),
            Dialect::Number,
            Kind::Capture,
            total,
            &orig.currency,
            now,
        );
        c.parent = Some(orig.id.clone());
        c.state = TxnState::Approved;
        c.approved_minor = total;
        c.resp_code = "00".into();
        c.client_ref = orig.client_ref.clone();
        core.ledger.push(c);
        committed.push(id);
    }
    Exec {
        resp: envelope(
            name,
            // The Incremental Auth page's sample response, field for field.
            json!({"FunctionOk": true, "TxApproved": true, "TxID": orig.id.parse::<i64>().unwrap_or(0),
            "TxnCode": orig.auth_code.clone().unwrap_or_default(), "AVSresult": "", "CVVresult": "",
            "AcquirerResponseEMV": Value::Null, "IsPartialApproval": false,
            "Amts": {"OrigAuthAmt": dec(orig.approved_minor), "ThisAuthAmt": dec(add), "TotalAuthAmt": dec(total)},
            "RespMsg": if finalize { "FINALIZED" } else { "INCREMENTED" }, "ErrCode": 0, "ErrMsg": ""}),
        ),
        committed,
    }
}

/// The query grammar's numbered statuses (term `B`: 1 OPEN, 2 SETTLED, 3 FAILED, 4 RETURNED,
/// 5 VOID).
fn status_code(t: &Txn) -> i64 {
    match t.state {
        TxnState::Approved | TxnState::Pending => 1,
        TxnState::Declined | TxnState::Error => 3,
        TxnState::Refunded | TxnState::PartiallyRefunded => 2,
        TxnState::Voided => 5,
    }
}

/// The record's `TxSTATUS` (schema `TxStatus`: OPEN AUTHOK AUTHFAILED SETTLED FAILED LOCKED
/// VOID HOST). A credited sale is shown settled with its `Credits`.
fn status_name(t: &Txn) -> &'static str {
    match (t.state, t.kind) {
        (TxnState::Approved, Kind::Auth) if !t.captured => "AUTHOK",
        (TxnState::Approved, _) => "OPEN",
        (TxnState::Pending, _) => "HOST",
        (TxnState::Declined | TxnState::Error, Kind::Auth) => "AUTHFAILED",
        (TxnState::Declined | TxnState::Error, _) => "FAILED",
        (TxnState::Refunded | TxnState::PartiallyRefunded, _) => "SETTLED",
        (TxnState::Voided, _) => "VOID",
    }
}

/// The schema's `CARD_TYPE` (VI MC AE DS), when the brand is one of them.
fn card_type(brand: Option<&str>) -> Option<&'static str> {
    Some(match brand? {
        "visa" => "VI",
        "mastercard" => "MC",
        "amex" => "AE",
        "discover" => "DS",
        _ => return None,
    })
}

/// A `Transaction` record as the OpenAPI's schema names and types its fields; `None` for the
/// sandbox's own bookkeeping rows (a void or a capture changes the original, Number keeps no
/// separate record of them: the `TxType` enum has no such type).
fn record(t: &Txn) -> Option<Value> {
    let tx_type = match t.kind {
        Kind::Auth => "CCAUTHONLY",
        Kind::Sale => "CCSALE",
        Kind::Refund => "CCCREDIT",
        Kind::Void | Kind::Capture => return None,
    };
    let mut r = json!({"ID": t.id.parse::<i64>().unwrap_or(0), "TxSTATUS": status_name(t), "TxType": tx_type,
        "AMOUNT": dec(if t.approved_minor > 0 { t.approved_minor } else { t.amount_minor }),
        "Credits": dec(t.refunded_minor), "CASHBACK": dec(0), "TIP": dec(0), "SALE_TAX": dec(0), "SURCHARGE": dec(0),
        "TXN_CODE": t.auth_code.clone().unwrap_or_else(|| t.resp_code.clone()),
        "IsPartialApproval": t.state == TxnState::Approved && t.approved_minor < t.amount_minor,
        "CardPresent": matches!(t.entry, Entry::Emv | Entry::Swipe), "EMVPresent": t.entry == Entry::Emv,
        "EMVRecTags": t.emv_resp.clone().unwrap_or_default(), "Origin": "API",
        "RefTxID": t.parent.as_deref().and_then(|p| p.parse::<i64>().ok()).unwrap_or(0),
        "CreatedOn": clock::iso8601(t.created_at)});
    if let Some(v) = &t.client_ref {
        r["REF_ID"] = json!(v);
    }
    if let Some(v) = &t.rpguid {
        r["RPGUID"] = json!(v);
    }
    if let Some(l4) = &t.pan_last4 {
        r["ACCT_NO"] = json!(format!("XXXXXXXXXXXX{l4}"));
    }
    if let Some(c) = card_type(t.brand.as_deref()) {
        r["CARD_TYPE"] = json!(c);
    }
    Some(r)
}

fn query(core: &mut SimState, name: &str, body: &Value) -> SimResponse {
    let q = body
        .get("Query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(expr) = parse_query(q) else {
        return aspen_error(name, 1004, "unparseable Query");
    };
    // When every alternative names its transactions (client reference or TxID equal to a
    // value), only those rows are read; otherwise the search reads the whole ledger.
    let named: Option<Vec<&Term>> = expr
        .iter()
        .map(|and| and.iter().find(|t| t.op == "=" && "MH".contains(t.key)))
        .collect();
    let rows = match named {
        Some(named) => {
            let refs: Vec<&str> = named
                .iter()
                .filter(|t| t.key == 'M')
                .map(|t| t.value.as_str())
                .collect();
            let ids: Vec<String> = named
                .iter()
                .filter(|t| t.key == 'H')
                .filter_map(|t| t.value.parse::<i64>().ok())
                .map(|v| v.to_string())
                .collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            core.ledger.by_client_refs_or_ids(&refs, &ids)
        }
        None => core.ledger.all(),
    };
    let ids: Vec<String> = rows
        .iter()
        .filter(|t| {
            t.dialect == Dialect::Number
                && expr.iter().any(|and| and.iter().all(|term| term.eval(t)))
        })
        .map(|t| t.id.clone())
        .collect();
    let mut recs = Vec::new();
    for id in &ids {
        core.ledger.note_lookup(id);
        if let Some(r) = core.ledger.get(id).and_then(record) {
            recs.push(r);
        }
    }
    envelope(
        name,
        json!({"FunctionOk": true, "ErrCode": 0, "ErrMsg": "", "NumRecords": recs.len(),
               "RespMsg": format!("Successfully Returned Transaction Records : {}", recs.len()), "Transactions": recs}),
    )
}

/// One `KEY op VALUE` term of a Number query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    key: char,
    op: &'static str,
    value: String,
}

/// Parses `(H=1) && (B=1) || (M='x')` into OR-of-AND terms. `None` for anything else.
pub fn parse_query(q: &str) -> Option<Vec<Vec<Term>>> {
    if q.len() > 1024 || q.trim().is_empty() {
        return None;
    }
    q.split("||")
        .map(|group| {
            group
                .split("&&")
                .map(|term| {
                    let t = term
                        .trim()
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .trim();
                    let key = t.chars().next()?.to_ascii_uppercase();
                    if !"HMNBCP".contains(key) {
                        return None;
                    }
                    let rest = t.get(1..)?.trim_start();
                    let op = ["<=", ">=", "!=", "<>", "=", "<", ">"]
                        .into_iter()
                        .find(|o| rest.starts_with(o))?;
                    let raw = rest.get(op.len()..)?.trim();
                    // "Use single quotes for text and date values": the text terms (client
                    // reference, RPGUID) and dates must be quoted, numbers must not be.
                    let value = match raw.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                        Some(v) if "MNC".contains(key) && !v.contains('\'') => v.to_owned(),
                        None if !"MNC".contains(key) => raw.to_owned(),
                        _ => return None,
                    };
                    Some(Term { key, op, value })
                })
                .collect::<Option<Vec<_>>>()
        })
        .collect()
}

impl Term {
    fn eval(&self, t: &Txn) -> bool {
        let ord = match self.key {
            'H' => self
                .value
                .parse::<i64>()
                .ok()
                .zip(t.id.parse::<i64>().ok())
                .map(|(v, id)| id.cmp(&v)),
            'B' => self
                .value
                .parse::<i64>()
                .ok()
                .map(|v| status_code(t).cmp(&v)),
            'M' => t.client_ref.as_deref().map(|r| r.cmp(self.value.as_str())),
            'N' => t.rpguid.as_deref().map(|r| r.cmp(self.value.as_str())),
            'C' => mdy_days(&self.value).map(|d| t.created_at.div_euclid(86_400).cmp(&d)),
            _ => None,
        };
        let Some(o) = ord else { return false };
        use std::cmp::Ordering::*;
        match self.op {
            "=" => o == Equal,
            "!=" | "<>" => o != Equal,
            "<" => o == Less,
            ">" => o == Greater,
            "<=" => o != Greater,
            ">=" => o != Less,
            _ => false,
        }
    }
}

/// Days since 1970-01-01 of an `MM/DD/YYYY` date in a query term.
fn mdy_days(s: &str) -> Option<i64> {
    let mut it = s.split('/');
    let (m, d, y) = (it.next()?, it.next()?, it.next()?);
    clock::days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks() {
        assert_eq!(
            pan_from_track(";4012000098765439=28121011000012345678?"),
            Some(("4012000098765439".into(), Some((12, 2028))))
        );
        assert_eq!(
            pan_from_track("%B4012000098765439^DOE/JOHN^2812101?").map(|p| p.1),
            Some(Some((12, 2028)))
        );
        assert_eq!(pan_from_track("garbage"), None);
    }

    #[test]
    fn queries() {
        assert!(parse_query("(M=abc)").is_none(), "text values are quoted");
        assert!(parse_query("(H='1')").is_none(), "numbers are not");
        let q = parse_query("(H=53001) || (M='abc') && (B=1)").unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[1].len(), 2);
        assert!(parse_query("(Z=1)").is_none());
        assert!(parse_query("").is_none());
        let mut t = Txn::new("53001".into(), Dialect::Number, Kind::Sale, 1, "USD", 0);
        t.state = TxnState::Approved;
        assert!(q[0][0].eval(&t));
        assert!(parse_query("(H>53000)").unwrap()[0][0].eval(&t));
        assert!(parse_query("(C='01/01/1970')").unwrap()[0][0].eval(&t));
    }
}
