//! The gateway item of the checklist: the operations that move no money, exercised against the
//! configured gateway with the adapters' own requests, and each reply checked against the
//! shape its official definition gives (`docs/gateway-specs/`; the full JSON Schema validation
//! runs in the contract tests, this is what a till can check without the documents):
//!
//! | dialect | operations | the reply must have |
//! |---|---|---|
//! | Number | `Authenticate`, `Query/Transaction` by a random reference | `AuthenticateResult` with a `SessKey`, `ThisUser.ID` an integer, `MerchantList[].TermID` a string; `Transaction_QueryResult` with `NumRecords` and records with `ID`, a `TxSTATUS` of the enum |
//! | PaymentsAI | `GET transactions?filter=requestId:<random>` | a bare array of transactions (Rebilly's list; a `{data}` wrapper is reported as tolerated) whose `status`/`result` are in Rebilly's enums |
//! | Pay1st | token, refresh, Query Payment Status by a random reference | `accessToken`/`refreshToken`; `404` or one payment with a status of the official list |

use serde_json::Value;

use crate::gateway::http::{HttpClient, HttpSettings};
use crate::gateway::{
    number, pay1st, paymentsai, Clock, Exchange, GatewayConfig, HttpReply, SystemClock,
};
use emvbridge_core::txn::Reference;

/// One operation sent to the gateway.
#[derive(Debug, Clone)]
pub(super) struct Exercised {
    /// The operation, as its definition names it.
    pub op: &'static str,
    /// The reply matched the definition (what it showed), or why not.
    pub verdict: Result<String, String>,
}

/// What [`exercise`] found.
#[derive(Debug)]
pub(super) struct Outcome {
    /// Reached and authenticated (the dialect's login or first authenticated call answered).
    pub reachable: Result<String, String>,
    /// Every operation exercised, in order.
    pub ops: Vec<Exercised>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            reachable: Err("not run".into()),
            ops: Vec::new(),
        }
    }
}

/// A random reference that no payment has.
pub(super) fn probe_reference() -> Reference {
    let n: u64 = rand::random();
    Reference(format!("preflight-{n:016x}"))
}

fn json_of(ex: &Exchange) -> Result<(u16, Value), String> {
    match ex {
        Err(e) => Err(e.to_string()),
        Ok(HttpReply { status, body }) => serde_json::from_slice(body)
            .map(|v| (*status, v))
            .map_err(|_| format!("http {status}, body is not JSON")),
    }
}

fn is_int(v: &Value) -> bool {
    v.as_i64().is_some()
}

/// Runs the dialect's money-free operations.
pub(super) async fn exercise(gw: GatewayConfig, http: HttpSettings) -> Outcome {
    let client = match HttpClient::new(http) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                reachable: Err(e.to_string()),
                ops: Vec::new(),
            }
        }
    };
    match gw {
        GatewayConfig::Number(c) => number_ops(&client, &c).await,
        GatewayConfig::PaymentsAi(c) => pai_ops(&client, &c).await,
        GatewayConfig::Pay1st(c) => pay1st_ops(&client, &c).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Number

/// `AuthenticateResult` as the OpenAPI types it.
fn number_auth_shape(v: &Value) -> Result<String, String> {
    let r = v
        .get("AuthenticateResult")
        .ok_or("no AuthenticateResult envelope")?;
    if !r["SessKey"].is_string() {
        return Err("SessKey is not a string".into());
    }
    if let Some(list) = r.get("MerchantList") {
        let list = list.as_array().ok_or("MerchantList is not an array")?;
        for m in list {
            if !is_int(&m["ID"]) || m.get("TermID").is_some_and(|t| !t.is_string()) {
                return Err("MerchantList entries need an integer ID and a string TermID".into());
            }
        }
    }
    if !is_int(&r["ThisUser"]["ID"]) {
        return Err("ThisUser.ID is not an integer".into());
    }
    Ok("AuthenticateResult, ThisUser.ID".into())
}

/// `Transaction_QueryResult` as the OpenAPI types it (schema `Transaction`, `TxStatus`).
fn number_query_shape(v: &Value) -> Result<String, String> {
    const STATUSES: [&str; 8] = [
        "OPEN",
        "AUTHOK",
        "AUTHFAILED",
        "SETTLED",
        "FAILED",
        "LOCKED",
        "VOID",
        "HOST",
    ];
    let r = v
        .get(number::QUERY_RESULT)
        .ok_or("no Transaction_QueryResult envelope")?;
    if r["FunctionOk"] != true {
        return Err(format!("FunctionOk false (ErrCode {})", r["ErrCode"]));
    }
    let n = r["NumRecords"]
        .as_i64()
        .ok_or("NumRecords is not an integer")?;
    let recs = match r.get("Transactions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("Transactions is not an array".into()),
    };
    for t in &recs {
        if !is_int(&t["ID"]) {
            return Err("a record without an integer ID".into());
        }
        if !t["TxSTATUS"]
            .as_str()
            .is_some_and(|s| STATUSES.contains(&s))
        {
            return Err(format!("TxSTATUS {} is not of the enum", t["TxSTATUS"]));
        }
    }
    Ok(format!("Transaction_QueryResult, NumRecords {n}"))
}

async fn number_ops(client: &HttpClient, c: &number::NumberConfig) -> Outcome {
    let mut out = Outcome::default();
    let now = SystemClock.unix_now();
    let ex = client
        .send(&c.base_url, &number::authenticate_request(c))
        .await;
    let session = number::parse_authenticate(&ex, now);
    out.ops.push(Exercised {
        op: "Authenticate",
        verdict: json_of(&ex).and_then(|(_, v)| number_auth_shape(&v)),
    });
    let session = match session {
        Ok(s) => {
            out.reachable = Ok("number: Authenticate answered with a session key".into());
            s
        }
        Err(number::LoginFailure::NotSent(why) | number::LoginFailure::Failed(why)) => {
            out.reachable = Err(format!("number: Authenticate failed: {why}"));
            return out;
        }
    };
    let probe = probe_reference();
    let verdict = match number::query_request(&session, &probe) {
        None => Err("reference not queryable".into()),
        Some(q) => {
            let ex = client.send(&c.base_url, &q).await;
            json_of(&ex).and_then(|(_, v)| number_query_shape(&v))
        }
    };
    out.ops.push(Exercised {
        op: "Query/Transaction",
        verdict,
    });
    out
}

// ---------------------------------------------------------------------------------------------
// PaymentsAI

const REBILLY_STATUS: [&str; 15] = [
    "completed",
    "conn-error",
    "disputed",
    "never-sent",
    "offsite",
    "partially-refunded",
    "pending",
    "refunded",
    "sending",
    "timeout",
    "voided",
    "waiting-approval",
    "waiting-capture",
    "waiting-gateway",
    "waiting-refund",
];
const REBILLY_RESULT: [&str; 5] = ["abandoned", "approved", "canceled", "declined", "unknown"];

/// Rebilly's `GetTransactionCollection` reply: an array of transactions.
fn pai_list_shape(status: u16, v: &Value) -> Result<String, String> {
    if status != 200 {
        return Err(format!("http {status}"));
    }
    let (list, form) = match v {
        Value::Array(a) => (a, "a bare array"),
        Value::Object(m) => match m.get("data") {
            Some(Value::Array(a)) => (
                a,
                "an array in a {data} wrapper (tolerated; Rebilly has none)",
            ),
            _ => return Err("neither an array nor a {data} wrapper".into()),
        },
        _ => return Err("not an array".into()),
    };
    for t in list {
        let ok = t["id"].is_string()
            && t["status"]
                .as_str()
                .is_some_and(|s| REBILLY_STATUS.contains(&s))
            && t["result"]
                .as_str()
                .is_some_and(|s| REBILLY_RESULT.contains(&s));
        if !ok {
            return Err(
                "a transaction without id, or with a status/result outside Rebilly's enums".into(),
            );
        }
    }
    Ok(format!("{form} of {} transactions", list.len()))
}

async fn pai_ops(client: &HttpClient, c: &paymentsai::PaiConfig) -> Outcome {
    let what = "paymentsai: transaction lookup by a random reference";
    let mut out = Outcome::default();
    let probe = probe_reference();
    let Some(req) = paymentsai::lookup_request(c, &probe) else {
        out.reachable = Err(format!("{what}: reference unusable"));
        return out;
    };
    let ex = client.send(&c.base_url, &req).await;
    let (status, _) = paymentsai::classify_lookup(&ex, &probe);
    out.reachable = match status {
        crate::gateway::StatusResult::NotFound => Ok(format!("{what} answered (not found)")),
        crate::gateway::StatusResult::Found(_) => Ok(format!("{what} answered")),
        crate::gateway::StatusResult::Unknown { reason } => Err(format!("{what} failed: {reason}")),
    };
    out.ops.push(Exercised {
        op: "GET transactions?filter=requestId",
        verdict: json_of(&ex).and_then(|(s, v)| pai_list_shape(s, &v)),
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Pay1st

const PAY1ST_STATUS: [&str; 6] = [
    "NEW",
    "PENDING",
    "SUCCESSFUL",
    "FAILED",
    "CANCELLED",
    "ABANDONED",
];

fn pay1st_tokens_shape(status: u16, v: &Value) -> Result<String, String> {
    if status != 200 {
        return Err(format!("http {status}"));
    }
    if !v["accessToken"].is_string() || !v["refreshToken"].is_string() {
        return Err("accessToken and refreshToken are required strings".into());
    }
    if v.get("role").is_some_and(|r| r != "API_USER") {
        return Err("role is not API_USER".into());
    }
    Ok("accessToken, refreshToken".into())
}

/// "Query Payment Status": one payment, or 404 (the page's failure codes) for an unknown one.
fn pay1st_query_shape(status: u16, v: &Value) -> Result<String, String> {
    match status {
        404 => Ok("404 for an unknown reference".into()),
        200 => {
            let ok = v["reference"].is_string()
                && v["partnerReference"].is_string()
                && v["status"]
                    .as_str()
                    .is_some_and(|s| PAY1ST_STATUS.contains(&s));
            if ok {
                Ok("one payment".into())
            } else {
                Err("not one payment with reference, partnerReference and a listed status".into())
            }
        }
        s => Err(format!("http {s}")),
    }
}

async fn pay1st_ops(client: &HttpClient, c: &pay1st::Pay1stConfig) -> Outcome {
    let what = "pay1st: access token and a signed lookup by a random reference";
    let mut out = Outcome::default();
    let now = SystemClock.unix_now();
    let ex = client.send(&c.base_url, &pay1st::token_request(c)).await;
    out.ops.push(Exercised {
        op: "auth/token",
        verdict: json_of(&ex).and_then(|(s, v)| pay1st_tokens_shape(s, &v)),
    });
    let tokens = match pay1st::parse_tokens(&ex, now) {
        Ok(t) => t,
        Err(why) => {
            out.reachable = Err(format!("{what} failed: {why}"));
            return out;
        }
    };
    let ex = client
        .send(&c.base_url, &pay1st::refresh_request(&tokens))
        .await;
    out.ops.push(Exercised {
        op: "auth/refresh",
        verdict: json_of(&ex).and_then(|(s, v)| pay1st_tokens_shape(s, &v)),
    });
    let tokens = pay1st::parse_tokens(&ex, now).unwrap_or(tokens);
    // A Pay1st-style reference no payment has: Pay1st is queried by its own reference only.
    let probe = format!("C-{}-P", probe_reference().0);
    let q = pay1st::signed(c, &tokens.access, now, pay1st::lookup_request(&probe));
    let ex = client.send(&c.base_url, &q).await;
    out.reachable = match pay1st::classify_lookup(&ex, &probe) {
        pay1st::Reply::Done((crate::gateway::StatusResult::NotFound, _)) => {
            Ok(format!("{what} answered (not found)"))
        }
        pay1st::Reply::Done((crate::gateway::StatusResult::Found(_), _)) => {
            Ok(format!("{what} answered"))
        }
        pay1st::Reply::Done((crate::gateway::StatusResult::Unknown { reason }, _)) => {
            Err(format!("{what} failed: {reason}"))
        }
        _ => Err(format!("{what} failed: token refused")),
    };
    out.ops.push(Exercised {
        op: "payments?reference (Query Payment Status)",
        verdict: json_of(&ex).and_then(|(s, v)| pay1st_query_shape(s, &v)),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_follow_the_definitions() {
        assert!(number_auth_shape(&json!({"AuthenticateResult": {"SessKey": "K", "MerchantList": [{"ID": 1, "TermID": "006"}], "ThisUser": {"ID": 2547}}})).is_ok());
        assert!(number_auth_shape(&json!({"AuthenticateResult": {"SessKey": "K", "MerchantList": [{"ID": 1, "TermID": 1}], "ThisUser": {"ID": 1}}})).is_err());
        assert!(number_auth_shape(
            &json!({"AuthenticateResult": {"SessKey": "K", "ThisUser": {"UserID": "1"}}})
        )
        .is_err());
        assert!(number_query_shape(&json!({"Transaction_QueryResult": {"FunctionOk": true, "NumRecords": 1, "Transactions": [{"ID": 5, "TxSTATUS": "OPEN"}]}})).is_ok());
        assert!(number_query_shape(
            &json!({"Query_TransactionResult": {"FunctionOk": true, "TxnCount": 0}})
        )
        .is_err());
        assert!(number_query_shape(&json!({"Transaction_QueryResult": {"FunctionOk": true, "NumRecords": 1, "Transactions": [{"ID": 5, "TxSTATUS": 1}]}})).is_err());
        assert!(pai_list_shape(200, &json!([])).unwrap().contains("bare"));
        assert!(pai_list_shape(200, &json!({"data": []}))
            .unwrap()
            .contains("tolerated"));
        assert!(pai_list_shape(
            200,
            &json!([{"id": "t", "status": "not-sent", "result": "approved"}])
        )
        .is_err());
        assert!(pay1st_query_shape(404, &json!({})).is_ok());
        assert!(pay1st_query_shape(200, &json!({"data": []})).is_err());
        assert!(pay1st_query_shape(
            200,
            &json!({"reference": "C-1-P", "partnerReference": "r", "status": "ABANDONED"})
        )
        .is_ok());
        assert!(pay1st_tokens_shape(
            200,
            &json!({"role": "API_USER", "accessToken": "a", "refreshToken": "r"})
        )
        .is_ok());
        assert!(pay1st_tokens_shape(200, &json!({"accessToken": "a"})).is_err());
    }
}
