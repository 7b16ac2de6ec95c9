//! Integration tests for the sandbox gateway (docs/gateways.md §4) over real HTTP on loopback.
//! Signatures are recomputed here with `hmac`/`sha2` directly, not with the sandbox's code.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use emvbridge_sim::card::Card;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

async fn gw() -> (SandboxHandle, reqwest::Client) {
    let gw = sandbox::spawn(SandboxConfig {
        seed: 42,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    (gw, c)
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A valid ARQC data set from the simulator's `visa-cvn10` card (PAN 4111111111111111).
fn icc_data(card: &mut Card, amount_minor: u64) -> Vec<u8> {
    common::arqc_data(card, amount_minor, [0xDE, 0xAD, 0xBE, 0xEF])
}

fn replace_tag(icc: &[u8], tag: u32, value: &[u8]) -> Vec<u8> {
    let mut b = TlvBuilder::new();
    for t in tlv::parse(icc) {
        let t = t.unwrap();
        if t.tag() == Tag(tag) {
            b.primitive(Tag(tag), value);
        } else {
            b.tlv(&t);
        }
    }
    b.as_bytes().to_vec()
}

struct Number {
    base: String,
    sess: String,
}

impl Number {
    async fn login(gw: &SandboxHandle, c: &reqwest::Client) -> Number {
        let base = format!("{}/number/APIcardProcNumber/v1.0.0", gw.url());
        let (_, r) = post(
            c,
            format!("{base}/Authenticate"),
            json!({"AcctCode": "EP9000001", "Token": "0123456789ABCDEF0123456789ABCDEF"}),
        )
        .await;
        assert_eq!(r["AuthenticateResult"]["AuthSuccess"], true, "{r}");
        let sess = r["AuthenticateResult"]["SessKey"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(sess.len(), 42);
        Number { base, sess }
    }

    async fn now(gw: &SandboxHandle, c: &reqwest::Client) -> i64 {
        let r: Value = c
            .get(format!("{}/_sim/clock", gw.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["now"].as_i64().unwrap()
    }

    /// PCI-mode SessKey `<SessKey>_<epoch>_<userId>_<HEX(HMAC)>`, upper-cased like Postman.
    fn hmac_key(&self, epoch: i64) -> String {
        let msg = format!("{}_{}_1001", self.sess, epoch);
        format!("{msg}_{}", hmac_hex(b"sandbox-hmac-secret", msg.as_bytes())).to_uppercase()
    }

    async fn call(&self, c: &reqwest::Client, op: &str, key: &str, body: Value) -> Value {
        let r = c
            .post(format!("{}/{op}", self.base))
            .header("SessKey", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn number_auth_lockout_hmac_and_expiry() {
    let (gw, c) = gw().await;
    let base = format!("{}/number/APIcardProcREST/v1.0.0", gw.url());
    for _ in 0..6 {
        let (_, r) = post(
            &c,
            format!("{base}/Authenticate"),
            json!({"AcctCode": "EP9000001", "Token": "bad"}),
        )
        .await;
        assert_eq!(r["AuthenticateResult"]["AuthSuccess"], false);
    }
    // Locked: even the right credentials fail until /_sim/unlock.
    let (_, r) = post(
        &c,
        format!("{base}/Authenticate"),
        json!({"AcctCode": "EP9000001", "Token": "0123456789ABCDEF0123456789ABCDEF"}),
    )
    .await;
    assert_eq!(r["AuthenticateResult"]["AuthSuccess"], false);
    assert!(r["AuthenticateResult"]["ErrMsg"]
        .as_str()
        .unwrap()
        .contains("locked"));
    let (s, _) = post(&c, format!("{}/_sim/unlock", gw.url()), json!({})).await;
    assert_eq!(s, 200);
    let n = Number::login(&gw, &c).await;
    // Malformed JSON → plain "Bad Request".
    let r = c
        .post(format!("{}/CardSale/Void", n.base))
        .header("SessKey", &n.sess)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Bad Request");
    // Card data needs the HMAC form.
    let body = json!({"ccCardInfo": {"AccountNumber": "4111111111111111", "ExpMonth": 12, "ExpYear": 2030, "CSV": "123"}, "Amounts": {"TotalAmt": 10.00}, "PurchItems": {"ClientRefID": "k1"}});
    let r = n.call(&c, "CardSale/Manual", &n.sess, body.clone()).await;
    assert_eq!(r["CreditCardSale_ManualResult"]["ErrCode"], 5051);
    let now = Number::now(&gw, &c).await;
    let r = n
        .call(&c, "CardSale/Manual", &n.hmac_key(now), body.clone())
        .await;
    assert_eq!(r["CreditCardSale_ManualResult"]["TxApproved"], true, "{r}");
    let bad = n.hmac_key(now).replace("_1001_", "_1002_");
    let r = n.call(&c, "CardSale/Manual", &bad, body.clone()).await;
    assert_eq!(r["CreditCardSale_ManualResult"]["FunctionOk"], false);
    // Stale epoch.
    let r = n
        .call(&c, "CardSale/Manual", &n.hmac_key(now - 3600), body.clone())
        .await;
    assert_eq!(r["CreditCardSale_ManualResult"]["ErrCode"], 5052);
    // IP change → 5050.
    let r = c
        .post(format!("{}/Query/Transaction", n.base))
        .header("SessKey", &n.sess)
        .header("X-Sim-Client-IP", "10.0.0.9")
        .json(&json!({"Query": "(H=1)"}))
        .send()
        .await
        .unwrap();
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["Transaction_QueryResult"]["ErrCode"], 5050);
    // 25 h later → 5030.
    post(
        &c,
        format!("{}/_sim/clock", gw.url()),
        json!({"advanceSecs": 25 * 3600}),
    )
    .await;
    let r = n
        .call(&c, "Query/Transaction", &n.sess, json!({"Query": "(H=1)"}))
        .await;
    assert_eq!(r["Transaction_QueryResult"]["ErrCode"], 5030);
    gw.shutdown().await;
}

#[tokio::test]
async fn number_emv_sale_arpc_tamper_void_query() {
    let (gw, c) = gw().await;
    let n = Number::login(&gw, &c).await;
    let mut card = Card::from_profile("visa-cvn10").unwrap();
    let icc = icc_data(&mut card, 2500);
    let now = Number::now(&gw, &c).await;
    let r = n
        .call(&c, "CardSale/EMV", &n.hmac_key(now), json!({"EmvTags": hex::encode_upper(&icc), "Amounts": {"TotalAmt": 25.00}, "PurchItems": {"ClientRefID": "emv-1", "RPGUID": "g-1"}}))
        .await;
    let res = &r["CreditCardSale_EMVResult"];
    assert_eq!(res["TxApproved"], true, "{r}");
    let resp = hex::decode(res["AcquirerResponseEMV"].as_str().unwrap()).unwrap();
    assert_eq!(tlv::find(&resp, Tag(0x8A)).unwrap().value(), b"00");
    let arpc = tlv::find(&resp, Tag(0x91)).unwrap().value().to_vec();
    card.external_authenticate(&arpc, *b"00")
        .expect("the card accepts the ARPC");
    // Ledger: last4 and brand only.
    let l: Value = c
        .get(format!("{}/_sim/ledger?client_ref=emv-1", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = &l["transactions"][0];
    assert_eq!(t["pan_last4"], "1111");
    assert_eq!(t["entry"], "emv");
    assert!(!l.to_string().contains("4111111111111111"));
    // Query by client reference (M) and by id (H).
    let r = n
        .call(
            &c,
            "Query/Transaction",
            &n.sess,
            json!({"Query": "(M='emv-1')"}),
        )
        .await;
    let txid = r["Transaction_QueryResult"]["Transactions"][0]["ID"]
        .as_i64()
        .unwrap();
    assert_eq!(txid, res["TxID"].as_i64().unwrap());
    let r = n
        .call(
            &c,
            "Query/Transaction",
            &n.sess,
            json!({"Query": format!("(H={txid})")}),
        )
        .await;
    assert_eq!(r["Transaction_QueryResult"]["NumRecords"], 1);
    // Void, then the query shows the record VOID (schema `TxStatus`).
    let r = n
        .call(&c, "CardSale/Void", &n.sess, json!({"TxID": txid}))
        .await;
    assert_eq!(r["Transaction_VoidResult"]["TxApproved"], true);
    let r = n
        .call(
            &c,
            "Query/Transaction",
            &n.sess,
            json!({"Query": format!("(H={txid})")}),
        )
        .await;
    assert_eq!(
        r["Transaction_QueryResult"]["Transactions"][0]["TxSTATUS"],
        "VOID"
    );
    let r = n
        .call(&c, "CardSale/Void", &n.sess, json!({"TxID": 1}))
        .await;
    assert_eq!(r["Transaction_VoidResult"]["ErrCode"], 6724);

    // Tampered cryptogram → declined.
    let icc = icc_data(&mut card, 1000);
    let bad = replace_tag(&icc, 0x9F26, &[0; 8]);
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": hex::encode(&bad), "Amounts": {"TotalAmt": 10.00}}),
        )
        .await;
    assert_eq!(r["CreditCardSale_EMVResult"]["TxApproved"], false, "{r}");
    assert_eq!(r["CreditCardSale_EMVResult"]["FunctionOk"], true);
    // Tampered amount (9F02 and request agree, ARQC does not) → declined.
    let bad = replace_tag(&icc, 0x9F02, &[0, 0, 0, 0, 0x01, 0x00]);
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": hex::encode(&bad), "Amounts": {"TotalAmt": 1.00}}),
        )
        .await;
    assert_eq!(r["CreditCardSale_EMVResult"]["TxApproved"], false);
    // 9F02 ≠ amount → 7004; TC instead of ARQC → 7003; garbage → 7001.
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": hex::encode(&icc), "Amounts": {"TotalAmt": 11.00}}),
        )
        .await;
    assert_eq!(r["CreditCardSale_EMVResult"]["ErrCode"], 7004);
    // An AAC is refused (a TC is accepted: a forwarded offline approval).
    let tc = replace_tag(&icc, 0x9F27, &[0x00]);
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": hex::encode(&tc), "Amounts": {"TotalAmt": 10.00}}),
        )
        .await;
    assert_eq!(r["CreditCardSale_EMVResult"]["ErrCode"], 7003);
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": "9F0206", "Amounts": {"TotalAmt": 10.00}}),
        )
        .await;
    assert_eq!(r["CreditCardSale_EMVResult"]["ErrCode"], 7001);

    // x.91 → approved with an ARPC the card rejects; x.71 → script template 71.
    let mut card2 = Card::from_profile("visa-cvn10").unwrap();
    let icc = icc_data(&mut card2, 1091);
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": hex::encode(&icc), "Amounts": {"TotalAmt": 10.91}}),
        )
        .await;
    let resp = hex::decode(
        r["CreditCardSale_EMVResult"]["AcquirerResponseEMV"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(card2
        .external_authenticate(tlv::find(&resp, Tag(0x91)).unwrap().value(), *b"00")
        .is_err());
    let icc = icc_data(&mut card2, 1071);
    let r = n
        .call(
            &c,
            "CardSale/EMV",
            &n.hmac_key(now),
            json!({"EmvTags": hex::encode(&icc), "Amounts": {"TotalAmt": 10.71}}),
        )
        .await;
    let resp = hex::decode(
        r["CreditCardSale_EMVResult"]["AcquirerResponseEMV"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let script = tlv::find(&resp, Tag(0x71)).expect("script template 71");
    let cmd = script.find(Tag(0x86)).unwrap().value().to_vec();
    assert_eq!(
        card2.script_command(&cmd),
        emvbridge_sim::card::ScriptCommandResult::Ok
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn number_outcomes_table() {
    let (gw, c) = gw().await;
    let n = Number::login(&gw, &c).await;
    let now = Number::now(&gw, &c).await;
    let sale = |pan: &'static str, amt: f64| json!({"ccCardInfo": {"AccountNumber": pan, "ExpMonth": 12, "ExpYear": 28, "CSV": "999"}, "Amounts": {"TotalAmt": amt}});
    let cases = [
        ("4012000098765439", 0.21, false, "51"),
        ("4005571702222222", 101.16, false, "116"),
        ("5555555555554444", 7.51, false, "51"),
        ("4000000000000002", 5.00, false, "05"),
        ("4111111111111111", 12345.67, false, "05"),
    ];
    for (pan, amt, ok, code) in cases {
        let r = n
            .call(&c, "CardSale/Manual", &n.hmac_key(now), sale(pan, amt))
            .await;
        let res = &r["CreditCardSale_ManualResult"];
        assert_eq!(res["TxApproved"], ok, "{pan} {amt}: {r}");
        assert_eq!(res["TxnCode"], code, "{pan} {amt}");
    }
    let r = n
        .call(
            &c,
            "CardSale/Manual",
            &n.hmac_key(now),
            sale("4788250000028291", 2.78),
        )
        .await;
    let res = &r["CreditCardSale_ManualResult"];
    assert_eq!(res["IsPartialApproval"], true);
    assert_eq!(res["ResponseApprovedAmount"], 2.57);
    let r = n
        .call(
            &c,
            "CardSale/Manual",
            &n.hmac_key(now),
            sale("4111111111111111", 12345.68),
        )
        .await;
    assert_eq!(r["CreditCardSale_ManualResult"]["FunctionOk"], false);
    assert_eq!(r["CreditCardSale_ManualResult"]["ErrCode"], 9999);
    // Swipe, auth-only, increment + finalize (capture), refund.
    let r = n.call(&c, "CardSale/CardPresent", &n.hmac_key(now), json!({"Track": ";4012000098765439=28121011000012345678?", "Amounts": {"TotalAmt": 20.00}, "IsAuthOnly": true})).await;
    let txid = r["CreditCardSale_CardPresentResult"]["TxID"]
        .as_i64()
        .unwrap();
    let r = n
        .call(
            &c,
            "CardSale/IncrementAuth",
            &n.sess,
            json!({"OrigAuthTxID": txid, "AdditionalAmt": 5.00, "Finalize": 1}),
        )
        .await;
    assert_eq!(
        r["CreditCardSale_IncrementalResult"]["Amts"]["TotalAuthAmt"],
        25.0
    );
    let r = n
        .call(
            &c,
            "CardSale/Manual",
            &n.hmac_key(now),
            sale("4111111111111111", 30.00),
        )
        .await;
    let sale_id = r["CreditCardSale_ManualResult"]["TxID"].as_i64().unwrap();
    let r = n
        .call(
            &c,
            "CardSale/ApplyCredit",
            &n.sess,
            json!({"TxID": sale_id, "CreditAmount": 40.00}),
        )
        .await;
    assert_eq!(r["Transaction_ApplyCreditResult"]["FunctionOk"], false);
    let r = n
        .call(
            &c,
            "CardSale/ApplyCredit",
            &n.sess,
            json!({"TxID": sale_id, "CreditAmount": 10.00}),
        )
        .await;
    assert_eq!(r["Transaction_ApplyCreditResult"]["TxApproved"], true);
    gw.shutdown().await;
}

async fn fault(c: &reqwest::Client, gw: &SandboxHandle, rule: Value) {
    let r = c
        .post(format!("{}/_sim/faults", gw.url()))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{rule}");
}

#[tokio::test]
async fn faults_and_no_orphans() {
    let (gw, c) = gw().await;
    let n = Number::login(&gw, &c).await;
    let now = Number::now(&gw, &c).await;
    let sale = |r: &str| json!({"ccCardInfo": {"AccountNumber": "4111111111111111", "ExpMonth": 12, "ExpYear": 2030}, "Amounts": {"TotalAmt": 10.00}, "PurchItems": {"ClientRefID": r}});
    let url = format!("{}/CardSale/Manual", n.base);
    let send = |body: Value, timeout_ms: u64| {
        c.post(url.clone())
            .header("SessKey", n.hmac_key(now))
            .timeout(Duration::from_millis(timeout_ms))
            .json(&body)
            .send()
    };
    let ledger = |r: &'static str| {
        let c = c.clone();
        let u = format!("{}/_sim/ledger?client_ref={r}", gw.url());
        async move {
            c.get(u)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["transactions"]
                .clone()
        }
    };

    // drop before headers, committed: the client sees a transport error, the ledger an approval.
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "drop", "commit": true}}),
    )
    .await;
    assert!(send(sale("lost-1"), 2000).await.is_err());
    let t = ledger("lost-1").await;
    assert_eq!(t[0]["state"], "approved");
    assert_eq!(t[0]["sim_flags"][0], "lost_response");
    let r = c
        .post(format!("{}/_sim/assert/no_orphans", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["orphans"][0]["client_ref"], "lost-1");
    let txid: i64 = t[0]["id"].as_str().unwrap().parse().unwrap();
    n.call(&c, "CardSale/Void", &n.sess, json!({"TxID": txid}))
        .await;
    let r = c
        .post(format!("{}/_sim/assert/no_orphans", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // drop mid-body: headers arrive, the body does not complete.
    fault(&c, &gw, json!({"match": {"client_ref": "mid"}, "action": {"type": "drop", "commit": true, "when": "mid_body"}})).await;
    match send(sale("mid"), 2000).await {
        Err(_) => {}
        Ok(r) => assert!(r.bytes().await.is_err()),
    }
    assert_eq!(ledger("mid").await[0]["sim_flags"][0], "lost_response");

    // hang: no answer; the client times out. commit:false → nothing in the ledger.
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "hang", "commit": false}}),
    )
    .await;
    let e = send(sale("hang"), 300).await.unwrap_err();
    assert!(e.is_timeout());
    assert!(ledger("hang").await.as_array().unwrap().is_empty());

    // 504 without commit: no ledger entry; 503 with commit: entry flagged.
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "http", "status": 504}}),
    )
    .await;
    assert_eq!(send(sale("h504"), 2000).await.unwrap().status(), 504);
    assert!(ledger("h504").await.as_array().unwrap().is_empty());
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "http", "status": 503, "commit": true}}),
    )
    .await;
    assert_eq!(send(sale("h503"), 2000).await.unwrap().status(), 503);
    assert_eq!(ledger("h503").await[0]["sim_flags"][0], "lost_response");

    // malformed: 200 with a body that is not JSON.
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "malformed", "commit": true}}),
    )
    .await;
    let r = send(sale("mal"), 2000).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());

    // delay: a short client timeout expires, a long one gets the answer.
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "delay", "ms": 400}}),
    )
    .await;
    assert!(send(sale("slow"), 100).await.unwrap_err().is_timeout());
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "delay", "ms": 50}}),
    )
    .await;
    let r: Value = send(sale("slow2"), 2000)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["CreditCardSale_ManualResult"]["TxApproved"], true);

    // forced decline / aspen error / void decline / auth expire.
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "decline", "code": "62"}}),
    )
    .await;
    let r: Value = send(sale("fd"), 2000).await.unwrap().json().await.unwrap();
    assert_eq!(r["CreditCardSale_ManualResult"]["TxnCode"], "62");
    fault(
        &c,
        &gw,
        json!({"match": {"op": "sale"}, "action": {"type": "aspen_error", "code": 9100}}),
    )
    .await;
    let r: Value = send(sale("fa"), 2000).await.unwrap().json().await.unwrap();
    assert_eq!(r["CreditCardSale_ManualResult"]["ErrCode"], 9100);
    let r: Value = send(sale("vd"), 2000).await.unwrap().json().await.unwrap();
    let vd = r["CreditCardSale_ManualResult"]["TxID"].as_i64().unwrap();
    fault(
        &c,
        &gw,
        json!({"match": {"op": "void"}, "action": {"type": "void_decline"}}),
    )
    .await;
    let r = n
        .call(&c, "CardSale/Void", &n.sess, json!({"TxID": vd}))
        .await;
    assert_eq!(r["Transaction_VoidResult"]["FunctionOk"], true);
    assert_eq!(r["Transaction_VoidResult"]["TxApproved"], false);
    fault(
        &c,
        &gw,
        json!({"match": {"op": "query"}, "action": {"type": "auth_expire"}}),
    )
    .await;
    let r = n
        .call(&c, "Query/Transaction", &n.sess, json!({"Query": "(H=1)"}))
        .await;
    assert_eq!(r["Transaction_QueryResult"]["ErrCode"], 5030);
    let r = n
        .call(&c, "Query/Transaction", &n.sess, json!({"Query": "(H=1)"}))
        .await;
    assert_eq!(
        r["Transaction_QueryResult"]["ErrCode"], 5020,
        "the session is gone: re-authenticate"
    );
    // The orphans from the faults above are listed; DELETE clears rules.
    let r = c
        .delete(format!("{}/_sim/faults", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/_sim/assert/no_orphans", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    gw.shutdown().await;
}

/// A webhook receiver: records (headers, raw body).
async fn receiver() -> (String, Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, body: String| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((h, body));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

const PAI_KEY: &str = "ApiKey acc_sandbox_key_sandbox0001_kid_sandbox0001";

#[tokio::test]
async fn pai_auth_key_exchange_operations_webhooks() {
    let (gw, c) = gw().await;
    let org = format!("{}/pai/v1/public-api/organizations/org_sandbox", gw.url());
    let r = c
        .post(format!("{org}/customers"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["message"], "Missing auth token");
    let r = c
        .post(format!(
            "{}/pai/v1/public-api/organizations/org_other/customers",
            gw.url()
        ))
        .header("Authorization", PAI_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Temporal → permanent key exchange with the secret policy.
    let acct = format!("{}/pai/v1/accounts/public-api/acc_sandbox", gw.url());
    let tmp = "ApiKey tmp_sandbox_temporal_key";
    let r = c
        .patch(&acct)
        .header("Authorization", tmp)
        .json(&json!({"secret": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .patch(&acct)
        .header("Authorization", tmp)
        .json(&json!({"secret": "nouppercase12345"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .patch(&acct)
        .header("Authorization", tmp)
        .json(&json!({"secret": "Secret000001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let k: Value = r.json().await.unwrap();
    let mut perm = k["data"]["authorization"].as_str().unwrap().to_owned();
    let r = c
        .patch(&acct)
        .header("Authorization", tmp)
        .json(&json!({"secret": "Secret000009"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the temporal key is gone");
    for (secret, status) in [
        ("Secret000002", 200),
        ("Secret000003", 200),
        ("Secret000004", 200),
        ("Secret000001", 422),
        ("Secret000005", 200),
        ("Secret000001", 200),
    ] {
        let kid = perm.rsplit('_').next().unwrap().to_owned();
        let r = c
            .patch(format!("{acct}/api-keys/{kid}"))
            .header("Authorization", &perm)
            .json(&json!({"secret": secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{secret}");
        if status == 200 {
            let k: Value = r.json().await.unwrap();
            perm = k["data"]["authorization"].as_str().unwrap().to_owned();
        }
    }
    let r = c
        .post(format!("{org}/customers"))
        .header("Authorization", &perm)
        .json(&json!({"email": "a@b.c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Webhook destination + signed deliveries.
    let (hook, got) = receiver().await;
    let r = c
        .post(format!("{}/pai/v1/webhook-destinations", gw.url()))
        .header("Authorization", PAI_KEY)
        .json(&json!({"url": hook, "eventTypes": ["transaction-processed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let token = |pan: &'static str| {
        let c = c.clone();
        let org = org.clone();
        async move {
            let r: Value = c.post(format!("{org}/payment-instruments/tokens")).header("Authorization", PAI_KEY)
                .json(&json!({"primaryAccountNumber": pan, "cardVerificationValue": "123", "expirationMonth": 12, "expirationYear": 2030}))
                .send().await.unwrap().json().await.unwrap();
            r["data"]["id"].as_str().unwrap().to_owned()
        }
    };
    // Every transaction names the website and customer (Rebilly `PostTransaction`).
    let txn = |mut body: Value| {
        let c = c.clone();
        let org = org.clone();
        body["websiteId"] = json!("web_sandbox");
        body["customerId"] = json!("cus_sandbox");
        async move {
            let r = c
                .post(format!("{org}/transactions"))
                .header("Authorization", PAI_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Approved, declined, NSF (x.51), partial.
    for (pan, amount, result) in [
        ("4111111111111111", 47.77, "approved"),
        ("4000000000000002", 10.0, "declined"),
        ("4111111111111111", 3.51, "declined"),
        ("4111111111111111", 2.78, "approved"),
    ] {
        let t = token(pan).await;
        let (s, v) = txn(json!({"type": "sale", "currency": "USD", "amount": amount, "paymentInstruction": {"token": t}})).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["result"], result, "{pan} {amount}");
    }
    let t = token("4111111111111111").await;
    let (_, v) = txn(json!({"type": "sale", "currency": "USD", "amount": 2.78, "paymentInstruction": {"token": t}})).await;
    assert_eq!(v["amount"], 2.57);

    // Idempotency: same key → the stored original; > 100 chars → 400.
    let t = token("4111111111111111").await;
    let body = json!({"type": "sale", "currency": "USD", "amount": 12.0, "idempotencyKey": "idem-1", "requestId": "idem-1", "paymentInstruction": {"token": t}});
    let (_, first) = txn(body.clone()).await;
    let (s, again) = txn(body).await;
    assert_eq!(s, 201);
    assert_eq!(first, again);
    let (s, _) = txn(json!({"type": "sale", "currency": "USD", "amount": 1.0, "idempotencyKey": "x".repeat(101), "paymentInstruction": {"token": "t"}})).await;
    assert_eq!(s, 400);
    let list: Value = c
        .get(format!("{org}/transactions?filter=requestId%3Aidem-1"))
        .header("Authorization", PAI_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Rebilly's list: a bare array, filtered by `requestId`.
    assert_eq!(list[0]["id"], first["id"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let r = c
        .get(format!("{org}/transactions?filter=idempotencyKey%3Aidem-1"))
        .header("Authorization", PAI_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "not a filterable field");
    let (s, _) = txn(json!({"type": "sale", "currency": "USD", "amount": 1.0, "requestId": "no spaces", "paymentInstruction": {"token": "t"}})).await;
    assert_eq!(s, 422, "requestId pattern");

    // Refund: 422 over the refundable amount, then full, then 409.
    let id = first["id"].as_str().unwrap();
    let r = c
        .post(format!("{org}/transactions/{id}/refund"))
        .header("Authorization", PAI_KEY)
        .json(&json!({"amount": 13.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .post(format!("{org}/transactions/{id}/refund"))
        .header("Authorization", PAI_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{org}/transactions/{id}/refund"))
        .header("Authorization", PAI_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let st: Value = c
        .get(format!("{org}/transactions/{id}"))
        .header("Authorization", PAI_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["status"], "refunded");

    // Authorize → capture as a second sale on its payment instrument; refunding a second
    // authorize voids it; refunding the captured one → 409.
    let t = token("4111111111111111").await;
    let (_, a) = txn(json!({"type": "authorize", "currency": "USD", "amount": 20.0, "paymentInstruction": {"token": t}})).await;
    assert_eq!(a["status"], "waiting-capture", "{a}");
    let aid = a["id"].as_str().unwrap().to_owned();
    let inst = a["paymentInstrument"]["paymentInstrumentId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, cap) =
        txn(json!({"type": "sale", "currency": "USD", "amount": 20.0, "paymentInstruction": {"paymentInstrumentId": inst}}))
            .await;
    assert_eq!(s, 201, "{cap}");
    assert_eq!(
        (cap["type"].as_str(), cap["parentTransactionId"].as_str()),
        (Some("sale"), Some(aid.as_str()))
    );
    let r = c
        .post(format!("{org}/transactions/{aid}/refund"))
        .header("Authorization", PAI_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let t = token("4111111111111111").await;
    let (_, a2) = txn(json!({"type": "authorize", "currency": "USD", "amount": 5.0, "paymentInstruction": {"token": t}})).await;
    let a2 = a2["id"].as_str().unwrap().to_owned();
    let r = c
        .post(format!("{org}/transactions/{a2}/void"))
        .header("Authorization", PAI_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no void endpoint");
    let r = c
        .post(format!("{org}/transactions/{a2}/refund"))
        .header("Authorization", PAI_KEY)
        .json(&json!({"amount": 5.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["parentTransactionId"].as_str()),
        (Some("void"), Some(a2.as_str()))
    );

    // 3DS challenge → offsite, then approved by /_sim/pai/3ds; the decline card declines.
    let t = token("4000000000003220").await;
    let (_, v) = txn(json!({"type": "sale", "currency": "EUR", "amount": 9.0, "paymentInstruction": {"token": t}})).await;
    assert_eq!(v["status"], "offsite");
    assert_eq!(v["_links"][0]["rel"], "approvalUrl");
    assert!(v["_links"][0]["href"]
        .as_str()
        .unwrap()
        .contains("/pai/3ds/"));
    let (_, done) = post(
        &c,
        format!("{}/_sim/pai/3ds", gw.url()),
        json!({"txId": v["id"], "outcome": "approved"}),
    )
    .await;
    assert_eq!(done["data"]["result"], "approved");
    let t = token("4000000000003063").await;
    let (_, v) = txn(json!({"type": "sale", "currency": "EUR", "amount": 9.0, "paymentInstruction": {"token": t}})).await;
    let (_, done) = post(
        &c,
        format!("{}/_sim/pai/3ds", gw.url()),
        json!({"txId": v["id"], "outcome": "approved"}),
    )
    .await;
    assert_eq!(done["data"]["result"], "declined");

    // EMV instruction.
    let mut card = Card::from_profile("visa-cvn10").unwrap();
    let icc = icc_data(&mut card, 1500);
    let (s, v) = txn(json!({"type": "sale", "currency": "USD", "amount": 15.0, "paymentInstruction": {"emv": {"iccData": hex::encode(&icc), "entryMode": "chip"}}})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["emvResponse"]["arc"], "00");
    let iad = hex::decode(v["emvResponse"]["issuerAuthData"].as_str().unwrap()).unwrap();
    card.external_authenticate(&iad, *b"00").unwrap();
    // An AAC is refused (a TC is accepted: a forwarded offline approval).
    let tc = replace_tag(&icc_data(&mut card, 100), 0x9F27, &[0x00]);
    let (s, _) = txn(json!({"type": "sale", "currency": "USD", "amount": 1.0, "paymentInstruction": {"emv": {"iccData": hex::encode(tc)}}})).await;
    assert_eq!(s, 400);

    // Webhooks: flush, then verify every signature independently.
    let out: Value = c
        .post(format!("{}/_sim/webhooks/flush", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        out["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["delivered"] == true),
        "{out}"
    );
    {
        let got = got.lock().unwrap();
        assert!(got.len() >= 8);
        for (h, body) in got.iter() {
            let sig = h.get("x-signature").unwrap().to_str().unwrap();
            assert_eq!(sig, hmac_hex(b"whsec_sandbox", body.as_bytes()));
            assert!(h.get("x-sim-timestamp").is_some());
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["organizationId"], "org_sandbox");
            assert!(v["deduplicationId"].is_string());
        }
    }

    // Anomalies: duplicate (same deduplicationId twice), bad signature.
    got.lock().unwrap().clear();
    fault(
        &c,
        &gw,
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "duplicate"}}),
    )
    .await;
    let t = token("4111111111111111").await;
    txn(json!({"type": "sale", "currency": "USD", "amount": 1.0, "paymentInstruction": {"token": t}})).await;
    fault(
        &c,
        &gw,
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "bad_signature"}}),
    )
    .await;
    let t = token("4111111111111111").await;
    txn(json!({"type": "sale", "currency": "USD", "amount": 2.0, "paymentInstruction": {"token": t}})).await;
    c.post(format!("{}/_sim/webhooks/flush", gw.url()))
        .send()
        .await
        .unwrap();
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3);
        let d0: Value = serde_json::from_str(&got[0].1).unwrap();
        let d1: Value = serde_json::from_str(&got[1].1).unwrap();
        assert_eq!(d0["deduplicationId"], d1["deduplicationId"]);
        let (h, body) = &got[2];
        assert_ne!(
            h.get("x-signature").unwrap().to_str().unwrap(),
            hmac_hex(b"whsec_sandbox", body.as_bytes())
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn pai_webhook_reorder_and_retries_on_virtual_clock() {
    let (gw, c) = gw().await;
    let org = format!("{}/pai/v1/public-api/organizations/org_sandbox", gw.url());
    let (hook, got) = receiver().await;
    c.post(format!("{}/pai/v1/webhook-destinations", gw.url()))
        .header("Authorization", PAI_KEY)
        .json(&json!({"url": hook}))
        .send()
        .await
        .unwrap();
    let sale = |amount: f64| {
        let c = c.clone();
        let org = org.clone();
        async move {
            let t: Value = c.post(format!("{org}/payment-instruments/tokens")).header("Authorization", PAI_KEY)
                .json(&json!({"primaryAccountNumber": "4111111111111111", "expirationMonth": 1, "expirationYear": 2031})).send().await.unwrap().json().await.unwrap();
            c.post(format!("{org}/transactions")).header("Authorization", PAI_KEY)
                .json(&json!({"type": "sale", "websiteId": "web_sandbox", "customerId": "cus_sandbox", "currency": "USD", "amount": amount, "paymentInstruction": {"token": t["data"]["id"]}})).send().await.unwrap();
        }
    };
    fault(
        &c,
        &gw,
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "reorder"}}),
    )
    .await;
    sale(1.0).await;
    sale(2.0).await;
    c.post(format!("{}/_sim/webhooks/flush", gw.url()))
        .send()
        .await
        .unwrap();
    {
        let got = got.lock().unwrap();
        let amounts: Vec<Value> = got
            .iter()
            .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["metadata"]["amount"].clone())
            .collect();
        assert_eq!(amounts, vec![json!(2.0), json!(1.0)]);
    }
    // fail_n: two simulated failures, retried at +15 s and +30 s of virtual time.
    got.lock().unwrap().clear();
    fault(&c, &gw, json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "fail_n", "n": 2}})).await;
    sale(3.0).await;
    c.post(format!("{}/_sim/webhooks/flush", gw.url()))
        .send()
        .await
        .unwrap();
    assert!(got.lock().unwrap().is_empty());
    post(
        &c,
        format!("{}/_sim/clock", gw.url()),
        json!({"advanceSecs": 15}),
    )
    .await;
    assert!(got.lock().unwrap().is_empty());
    post(
        &c,
        format!("{}/_sim/clock", gw.url()),
        json!({"advanceSecs": 30}),
    )
    .await;
    assert_eq!(got.lock().unwrap().len(), 1);
    let list: Value = c
        .get(format!("{}/_sim/webhooks", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = list["deliveries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["attempts"].as_array().unwrap().len(), 3);
    // Redeliver sends it again.
    let id = last["id"].as_u64().unwrap();
    let r = c
        .post(format!("{}/_sim/webhooks/{id}/redeliver", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(got.lock().unwrap().len(), 2);
    gw.shutdown().await;
}

async fn p1_token(c: &reqwest::Client, base: &str) -> Value {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode("p1_sandbox_key:p1_sandbox_secret");
    let r = c
        .post(format!("{base}/api/pay1st/auth/token"))
        .header("Authorization", format!("Basic {basic}"))
        .header(
            "Content-Type",
            "application/vnd.carry1st.payments.partnerauthentication+json",
        )
        .body(r#"{"role":"API_USER"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn pay1st_auth_signatures_payments_webhook() {
    let (gw, c) = gw().await;
    let base = format!("{}/pay1st", gw.url());
    let r = c
        .post(format!("{base}/api/pay1st/auth/token"))
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .body(r#"{"role":"API_USER"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let tok = p1_token(&c, &base).await;
    let refresh = json!({"role": "API_USER", "refreshToken": tok["refreshToken"]}).to_string();
    let r = c
        .post(format!("{base}/api/pay1st/auth/refresh"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(refresh.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        406,
        "the refresh page requires the vendor Accept type"
    );
    let auth_type = "application/vnd.carry1st.payments.partnerauthentication+json";
    let r = c
        .post(format!("{base}/api/pay1st/auth/refresh"))
        .header("Content-Type", auth_type)
        .header("Accept", auth_type)
        .body(refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: Value = r.json().await.unwrap();
    let access = tok["accessToken"].as_str().unwrap().to_owned();
    let now: Value = c
        .get(format!("{}/_sim/clock", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ts = now["iso"].as_str().unwrap().replace('Z', ".123456789Z");
    let (hook, got) = receiver().await;
    let body = json!({"amount": 100, "countryCode": "NG", "currencyCode": "NGN", "partnerReference": "order-1", "webhookUrl": hook}).to_string();
    let sign = |ts: &str, body: &str| {
        hmac_hex(
            b"hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y",
            format!("{ts}{body}").as_bytes(),
        )
    };
    let create = |ts: String, sig: String, body: String| {
        c.post(format!("{base}/api/pay1st/payments/create"))
            .header("AccessToken", format!("Bearer {access}"))
            .header(
                "Content-Type",
                "application/vnd.carry1st.payments.payment+json",
            )
            .header("X-TIMESTAMP", ts)
            .header("X-SIGNATURE", sig)
            .body(body)
            .send()
    };
    // Bad signature, stale timestamp → 401.
    assert_eq!(
        create(ts.clone(), "00".repeat(32), body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    let stale = "2020-01-01T00:00:00Z".to_owned();
    assert_eq!(
        create(stale.clone(), sign(&stale, &body), body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    let r = create(ts.clone(), sign(&ts, &body), body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], "NEW", "the life cycle starts at NEW");
    let reference = p["reference"].as_str().unwrap().to_owned();
    assert_eq!(
        create(ts.clone(), sign(&ts, &body), body.clone())
            .await
            .unwrap()
            .status(),
        409
    );
    // Checkout page and "Query Payment Status" by Pay1st's reference.
    let r = c
        .get(format!(
            "{base}/checkout?reference={reference}&accessToken={}",
            urlencode(&access)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let query = |q: String| {
        c.get(format!("{base}/api/pay1st/payments?{q}"))
            .header("AccessToken", format!("Bearer {access}"))
            .header(
                "Content-Type",
                "application/vnd.carry1st.payments.payment+json",
            )
            .header("X-TIMESTAMP", &ts)
            .header("X-SIGNATURE", sign(&ts, ""))
            .send()
    };
    let get = query(format!("reference={reference}")).await.unwrap();
    assert_eq!(get.status(), 200);
    let one: Value = get.json().await.unwrap();
    assert_eq!(
        (one["reference"].as_str(), one["status"].as_str()),
        (Some(reference.as_str()), Some("NEW"))
    );
    assert_eq!(one["partnerReference"], "order-1");
    assert_eq!(
        query("partnerReference=order-1".into())
            .await
            .unwrap()
            .status(),
        400,
        "no query by partnerReference"
    );
    assert_eq!(query("reference=C-0-P".into()).await.unwrap().status(), 404);
    // Complete → SUCCESSFUL webhook signed with base64("apiuser:apipassword") as the key.
    let (s, _) = post(
        &c,
        format!("{}/_sim/pay1st/complete", gw.url()),
        json!({"reference": reference, "outcome": "SUCCESSFUL"}),
    )
    .await;
    assert_eq!(s, 200);
    c.post(format!("{}/_sim/webhooks/flush", gw.url()))
        .send()
        .await
        .unwrap();
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1);
        let (h, b) = &got[0];
        assert_eq!(
            h.get("x-signature").unwrap().to_str().unwrap(),
            hmac_hex(b"YXBpdXNlcjphcGlwYXNzd29yZA==", b.trim().as_bytes())
        );
        let v: Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["status"], "SUCCESSFUL");
        assert_eq!(v["partnerReference"], "order-1");
    }
    let done: Value = query(format!("reference={reference}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "SUCCESSFUL");
    // Token expiry on the virtual clock.
    post(
        &c,
        format!("{}/_sim/clock", gw.url()),
        json!({"advanceSecs": 3601}),
    )
    .await;
    let now: Value = c
        .get(format!("{}/_sim/clock", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ts2 = now["iso"].as_str().unwrap().to_owned();
    let b2 = json!({"amount": 1, "countryCode": "NG", "currencyCode": "NGN", "partnerReference": "order-2"}).to_string();
    assert_eq!(
        create(ts2.clone(), sign(&ts2, &b2), b2)
            .await
            .unwrap()
            .status(),
        401
    );
    gw.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn body_limit_and_unknown_routes() {
    let (gw, c) = gw().await;
    let big = "x".repeat(70 * 1024);
    let r = c
        .post(format!(
            "{}/pai/v1/public-api/organizations/org_sandbox/transactions",
            gw.url()
        ))
        .header("Authorization", PAI_KEY)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["statusCode"], 413);
    let r = c.get(format!("{}/nowhere", gw.url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!("{}/_sim/faults", gw.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    gw.shutdown().await;
}
