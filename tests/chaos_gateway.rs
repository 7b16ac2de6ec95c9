//! Regressions found by the reliability soak (`emvbridge soak --gateway-faults`): an
//! idempotent re-send whose first attempt may have been processed must not be reported
//! "unavailable" (no money moved) because a later attempt was refused before processing.

mod common;

use std::time::Duration;

use bytes::Bytes;
use emvbridge::gateway::http::HttpSettings;
use emvbridge::gateway::Dialect;
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference,
};
use emvbridge_sandbox::{self as sandbox, SandboxConfig};
use emvbridge_sim::card::Card;
use serde_json::{json, Value};

fn settings() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        max_attempts: 3,
        backoff: Duration::from_millis(10),
        max_body: 1 << 20,
    }
}

/// A lost reply after commit, then 401s on the re-sends: the charge exists, so the answer
/// must be approved (found by lookup) or unknown — never unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay1st_lost_reply_then_token_refused_is_not_unavailable() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let reference = "chaos-p1-401";
    for (action, times) in [
        (
            json!({"type": "drop", "commit": true, "when": "before_headers"}),
            1,
        ),
        (json!({"type": "auth_expire"}), 2),
    ] {
        let s = http
            .post(format!("{}/_sim/faults", gw.url()))
            .json(&json!({"match": {"dialect": "pay1st", "op": "emv", "client_ref": reference}, "action": action, "times": times}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s.as_u16(), 201);
    }
    let g = emvbridge::embedded::sandbox_gateway(Dialect::Pay1st, &gw.url(), settings()).unwrap();
    let amount = Money::from_minor(1234, "USD").unwrap();
    let req = AuthorizationRequest {
        reference: Reference(reference.into()),
        kind: AuthKind::Sale,
        amount,
        amount_other: amount.with_minor(0).unwrap(),
        entry_mode: EntryMode::Chip,
        icc_data: Bytes::from(icc_data(
            &mut Card::from_profile("visa-cvn10").unwrap(),
            1234,
        )),
        masked_pan: "401200******5439".into(),
        last4: Some("5439".into()),
        brand: Some("visa".into()),
        original_gateway_id: None,
        online_pin: None,
        pos_reference: None,
    };
    let r = g.authorize(&req).await;
    let ledger: Value = http
        .get(format!("{}/_sim/ledger?client_ref={reference}", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let charged = ledger["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "approved")
        .count();
    assert_eq!(charged, 1, "{ledger}");
    assert!(
        !matches!(r, AuthorizationResult::Unavailable { .. }),
        "charged at the gateway but reported unavailable: {r:?}"
    );
    gw.shutdown().await;
}

/// A real ARQC data set from the simulator's `visa-cvn10` card (PAN 4111111111111111).
fn icc_data(card: &mut Card, amount_minor: u64) -> Vec<u8> {
    common::arqc_data(card, amount_minor, [0x12, 0x34, 0x56, 0x78])
}
