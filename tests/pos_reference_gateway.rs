//! The POS's own reference reaches the gateway, over real HTTP on loopback: a sale through the
//! API (embedded simulated reader, the sandbox gateway in process) arrives at each dialect
//! with the reference in its free-text field — PaymentsAI `description`, Number
//! `PurchItems.ServiceDescrip`, Pay1st `metadata` entry `posReference` — while the client
//! reference and idempotency key are still the bridge's transaction id. The sandbox's ledger
//! row shows what arrived. A PaymentsAI refund and capture carry theirs too, and a sale
//! approved offline and stored is forwarded with it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use emvbridge::api::{self, ApiOptions, ApiServer};
use emvbridge::gateway::http::HttpSettings;
use emvbridge::gateway::Dialect;
use emvbridge::journal::resolver::{forward_once, ResolverPolicy};
use emvbridge::journal::{Journal, RelayState};
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, PosReference, Reference,
};
use emvbridge_core::txn::{CardFacts, Outcome, OutcomeStatus, TxnConfig};
use emvbridge_protocol::tlv::{Tag, TlvBuilder};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use emvbridge_sim::card::Card;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

/// What a till may put in its reference: spaces, `#`, quotes, `&`, `/`.
const POS_REF: &str = r#"T7 #1001 "A&B"/x"#;

async fn server(gw: &SandboxHandle, dialect: Dialect) -> ApiServer {
    api::start(ApiOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        token: TOKEN.into(),
        terminal: TerminalOptions {
            gateway: gw.url(),
            dialect,
            ..TerminalOptions::default()
        },
        sale_timeout: Duration::from_secs(30),
        txn_config: TxnConfig::default(),
    })
    .await
    .expect("api starts")
}

async fn post(s: &ApiServer, path: &str, key: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", s.addr))
        .bearer_auth(TOKEN)
        .header("idempotency-key", key)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(st, 200, "{path} {body}: {v}");
    v
}

/// Every row of the sandbox's ledger.
async fn ledger(gw: &SandboxHandle) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_sim/ledger", gw.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["transactions"].as_array().cloned().unwrap_or_default()
}

/// The ledger row whose client reference is `client_ref`.
async fn row_of(gw: &SandboxHandle, client_ref: &str) -> Value {
    let rows: Vec<Value> = ledger(gw)
        .await
        .into_iter()
        .filter(|r| r["client_ref"] == client_ref)
        .collect();
    assert_eq!(rows.len(), 1, "{client_ref}: {rows:?}");
    rows[0].clone()
}

/// The ledger row with gateway id `id`.
async fn row_by_id(gw: &SandboxHandle, id: &str) -> Value {
    ledger(gw)
        .await
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no ledger row {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_carries_the_pos_reference_to_every_gateway_beside_the_bridge_id() {
    for dialect in [Dialect::PaymentsAi, Dialect::Number, Dialect::Pay1st] {
        let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
        let s = server(&gw, dialect).await;
        let v = post(
            &s,
            "/v1/sales",
            "pos-ref-sale",
            json!({"amount": 1234, "currency": "USD", "reference": POS_REF}),
        )
        .await;
        assert_eq!(v["status"], "approved", "{dialect:?}: {v}");
        assert_eq!(v["reference"], POS_REF, "{dialect:?}: {v}");
        let id = v["id"].as_str().unwrap().to_owned();
        // The gateway saw the bridge's id as its client reference (and, where it has one,
        // idempotency key), and the POS's reference in its free-text field.
        let row = row_of(&gw, &id).await;
        assert_eq!(row["description"], POS_REF, "{dialect:?}: {row}");
        assert_eq!(row["state"], "approved", "{dialect:?}: {row}");
        if dialect == Dialect::PaymentsAi {
            assert_eq!(row["idem_key"], id.as_str(), "{row}");
        }
        assert_eq!(v["gateway_id"], row["id"], "{dialect:?}");

        // Without a reference, none is invented (Number's description is the bridge's name).
        let v = post(
            &s,
            "/v1/sales",
            "pos-ref-none",
            json!({"amount": 1000, "currency": "USD"}),
        )
        .await;
        let row = row_of(&gw, v["id"].as_str().unwrap()).await;
        let expected = match dialect {
            Dialect::Number => json!("emvbridge"),
            _ => Value::Null,
        };
        assert_eq!(row["description"], expected, "{dialect:?}: {row}");
        s.shutdown().await;
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paymentsai_refunds_and_captures_carry_the_pos_reference_too() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let s = server(&gw, Dialect::PaymentsAi).await;
    let sale = post(
        &s,
        "/v1/sales",
        "pai-sale",
        json!({"amount": 3000, "currency": "USD", "reference": "order-1"}),
    )
    .await;
    let refund = post(
        &s,
        "/v1/refunds",
        "pai-refund",
        json!({"amount": 500, "currency": "USD", "transaction_id": sale["id"], "reference": "return-1"}),
    )
    .await;
    assert_eq!(refund["status"], "approved", "{refund}");
    let row = row_by_id(&gw, refund["gateway_id"].as_str().unwrap()).await;
    assert_eq!(
        (&row["kind"], &row["description"]),
        (&json!("refund"), &json!("return-1")),
        "{row}"
    );

    // A capture goes with its pre-authorization's reference.
    let auth = post(
        &s,
        "/v1/preauths",
        "pai-auth",
        json!({"amount": 2000, "currency": "USD", "reference": "tab-7"}),
    )
    .await;
    assert_eq!(auth["status"], "approved", "{auth}");
    let id = auth["id"].as_str().unwrap();
    let captured = post(
        &s,
        &format!("/v1/preauths/{id}/capture"),
        "pai-capture",
        json!({"amount": 1500}),
    )
    .await;
    let cap_id = captured["operations"][0]["gateway_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{captured}"));
    let row = row_by_id(&gw, cap_id).await;
    assert_eq!(
        (&row["kind"], &row["description"]),
        (&json!("capture"), &json!("tab-7")),
        "{row}"
    );
    s.shutdown().await;
    gw.shutdown().await;
}

fn policy() -> ResolverPolicy {
    ResolverPolicy {
        max_attempts: 3,
        backoff_secs: 10,
        max_backoff_secs: 60,
        min_age_secs: 0,
        interval_secs: 1,
        lease_secs: 60,
        processing_window_secs: 60,
    }
}

fn settings() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        max_attempts: 1,
        backoff: Duration::from_millis(10),
        max_body: 1 << 20,
    }
}

/// A sale's online data set as the reader sends it with SRED on: a genuine ARQC from the
/// simulator's card model, `5A` masked, the clear data only in the `FF7F` container.
fn sred_icc(card: &mut Card, minor: u64) -> Bytes {
    let data = common::arqc_data(card, minor, [0x12, 0x34, 0x56, 0x78]);
    let mut enc = emvbridge_sim::sred::SredEncryptor::ansi_test();
    let pan = emvbridge_protocol::emv::Pan::parse("4111111111111111").unwrap();
    let track2 = hex::decode("4111111111111111D30122010000000000000F").unwrap();
    let mut b = TlvBuilder::new();
    for t in emvbridge_protocol::tlv::parse(&data) {
        let t = t.unwrap();
        if t.tag() == Tag(0x5A) {
            b.primitive(Tag(0x5A), &hex::decode("411111AAAAAA1111").unwrap());
        } else {
            b.raw(t.raw());
        }
    }
    b.raw(&enc.encrypt(&pan, &track2, [7; 8]).unwrap());
    Bytes::from(b.as_bytes().to_vec())
}

/// A sale the host could not be reached for and the card approved offline (Y3) is stored
/// with its POS reference (journal schema 5) and forwarded with it once the gateway is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_sale_is_forwarded_with_its_pos_reference() {
    for dialect in [Dialect::PaymentsAi, Dialect::Number] {
        let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
        let path = std::env::temp_dir().join(format!(
            "emvb-posref-saf-{dialect}-{}.db",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let journal = Arc::new(Journal::open(&path).unwrap());
        let mut card = Card::from_profile("visa-cvn10").unwrap();
        let reference = format!("saf-{dialect}");
        let pos = PosReference::new(POS_REF).unwrap();
        let req = AuthorizationRequest {
            reference: Reference(reference.clone()),
            pos_reference: Some(pos.clone()),
            kind: AuthKind::Sale,
            amount: Money::from_minor(2500, "USD").unwrap(),
            amount_other: Money::from_minor(0, "USD").unwrap(),
            entry_mode: EntryMode::Chip,
            icc_data: sred_icc(&mut card, 2500),
            masked_pan: "411111******1111".into(),
            last4: Some("1111".into()),
            brand: Some("visa".into()),
            original_gateway_id: None,
            online_pin: None,
        };
        journal.begin_authorization(&req, dialect).unwrap();
        journal
            .record_authorization(
                &req.reference,
                &AuthorizationResult::Unavailable {
                    reason: "connect failed".into(),
                },
            )
            .unwrap();
        let outcome = Outcome {
            reference: req.reference.clone(),
            pos_reference: Some(pos.clone()),
            kind: AuthKind::Sale,
            status: OutcomeStatus::ApprovedOffline,
            amount: req.amount,
            approved_amount: Some(req.amount),
            gateway_id: None,
            auth_code: None,
            decline_code: None,
            reason: None,
            reversal: None,
            card: CardFacts::default(),
            final_data: None,
        };
        assert_eq!(
            journal
                .record_outcome(&outcome, dialect, Some(&req))
                .unwrap(),
            RelayState::Stored
        );
        let e = journal.get(&reference).unwrap().unwrap();
        assert_eq!(e.pos_reference.as_ref(), Some(&pos), "{dialect}");
        drop(journal);
        // As after a restart: the forwarder reads the row back from the file.
        let journal = Arc::new(Journal::open(&path).unwrap());
        let gateway = emvbridge::embedded::sandbox_gateway(dialect, &gw.url(), settings()).unwrap();
        let r = forward_once(&journal, gateway.as_ref(), &policy(), journal.now())
            .await
            .unwrap();
        assert_eq!(
            r.settled,
            vec![(reference.clone(), RelayState::Forwarded)],
            "{dialect}: {r:?}"
        );
        let row = row_of(&gw, &reference).await;
        assert_eq!(row["description"], POS_REF, "{dialect}: {row}");
        assert_eq!(row["approved_minor"], 2500, "{dialect}: {row}");
        drop(journal);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        gw.shutdown().await;
    }
}
