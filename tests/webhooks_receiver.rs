//! The webhook receiver against the sandbox's real deliveries (§4.6): good, bad signature,
//! replayed (stale timestamp, and a re-post of a delivered body), duplicated and reordered
//! PAI events, and Pay1st's `X-SIGNATURE`; each acted on only after the journal write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use emvbridge::gateway::http::HttpSettings;
use emvbridge::gateway::{Dialect, Gateway, Secret};
use emvbridge::journal::gateway::JournaledGateway;
use emvbridge::journal::resolver::{resolve_once, ResolverPolicy};
use emvbridge::journal::{Journal, RelayState};
use emvbridge::webhooks::{Receiver, WebhookConfig};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference,
};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};

struct Rig {
    gw: SandboxHandle,
    url: String,
    journal: Arc<Journal>,
    pai: JournaledGateway,
    path: std::path::PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.path.display()));
        }
    }
}

fn settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_millis(400),
        max_attempts: 1,
        ..HttpSettings::default()
    }
}

async fn rig(name: &str) -> Rig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = SandboxConfig::default();
    cfg.pai.webhook_url = Some(format!("{url}/webhooks/pai"));
    cfg.pai.send_timestamp = true;
    cfg.pay1st.webhook_url = Some(format!("{url}/webhooks/pay1st"));
    let (secret, user, pass) = (
        cfg.pai.webhook_secret.clone(),
        cfg.pay1st.webhook_user.clone(),
        cfg.pay1st.webhook_pass.clone(),
    );
    let gw = sandbox::spawn(cfg).await.unwrap();
    let path = std::env::temp_dir().join(format!("emvb-wh-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let journal = Arc::new(Journal::open(&path).unwrap());
    let pai_inner =
        emvbridge::embedded::sandbox_gateway(Dialect::PaymentsAi, &gw.url(), settings()).unwrap();
    let p1_inner =
        emvbridge::embedded::sandbox_gateway(Dialect::Pay1st, &gw.url(), settings()).unwrap();
    let receiver = Arc::new(Receiver {
        journal: journal.clone(),
        config: WebhookConfig {
            pai_secret: Some(Secret::new(secret)),
            pay1st_auth: Some((Secret::new(user), Secret::new(pass))),
            ..WebhookConfig::default()
        },
        gateways: vec![pai_inner.clone(), p1_inner],
    });
    tokio::spawn(emvbridge::webhooks::serve(listener, receiver));
    Rig {
        pai: JournaledGateway::new(pai_inner, journal.clone()),
        gw,
        url,
        journal,
        path,
    }
}

fn request(reference: &str, minor: u64) -> AuthorizationRequest {
    // A swipe-style request without ICC data is not accepted by the EMV paths; use the
    // simulator card's ARQC set as the other relay tests do.
    let mut card = emvbridge_sim::card::Card::from_profile("visa-cvn10").unwrap();
    let aid = hex::decode(&card.profile().apps[0].aid).unwrap();
    card.select(&aid).unwrap();
    let digits = format!("{minor:012}");
    let mut amt = [0u8; 6];
    for (i, b) in amt.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).unwrap();
    }
    let vals: Vec<(u32, Vec<u8>)> = vec![
        (0x9F02, amt.to_vec()),
        (0x9F03, vec![0; 6]),
        (0x9F1A, vec![0x08, 0x40]),
        (0x95, vec![0; 5]),
        (0x5F2A, vec![0x08, 0x40]),
        (0x9A, vec![0x25, 0x06, 0x01]),
        (0x9C, vec![0]),
        (0x9F37, vec![0x12, 0x34, 0x56, 0x78]),
        (0x9F35, vec![0x22]),
        (0x9F34, vec![0x1E, 0x03, 0x00]),
    ];
    let map: std::collections::BTreeMap<u32, Vec<u8>> = vals.iter().cloned().collect();
    let cdol = emvbridge_protocol::emv::build_dol_vec(emvbridge_sim::card::CDOL1, &map).unwrap();
    let gac = card
        .generate_ac(true, emvbridge_sim::card::CryptogramType::Arqc, &cdol)
        .unwrap();
    let mut b = emvbridge_protocol::tlv::TlvBuilder::new();
    use emvbridge_protocol::tlv::Tag;
    for (t, v) in &vals {
        b.primitive(Tag(*t), v);
    }
    b.primitive(Tag(0x82), &card.profile().aip)
        .primitive(Tag(0x9F36), &gac.atc.to_be_bytes())
        .primitive(Tag(0x9F10), &gac.iad)
        .primitive(Tag(0x9F26), &gac.cryptogram)
        .primitive(Tag(0x9F27), &[gac.cid()])
        .primitive(Tag(0x5A), &card.profile().pan.to_bcd())
        .primitive(Tag(0x5F34), &[card.profile().psn]);
    AuthorizationRequest {
        reference: Reference(reference.into()),
        kind: AuthKind::Sale,
        amount: Money::from_minor(minor, "USD").unwrap(),
        amount_other: Money::from_minor(0, "USD").unwrap(),
        entry_mode: EntryMode::Chip,
        icc_data: bytes::Bytes::from(b.as_bytes().to_vec()),
        masked_pan: "411111******1111".into(),
        last4: Some("1111".into()),
        brand: Some("visa".into()),
        original_gateway_id: None,
        online_pin: None,
        pos_reference: None,
    }
}

impl Rig {
    async fn fault(&self, rule: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/_sim/faults", self.gw.url()))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    async fn deliveries(&self) -> Vec<Value> {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/_sim/webhooks/flush", self.gw.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` deliveries have had at least one attempt.
    async fn settle(&self, n: usize) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let d = self.deliveries().await;
            let tried = d
                .iter()
                .filter(|x| !x["attempts"].as_array().unwrap().is_empty())
                .count();
            if tried >= n {
                return d;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "deliveries: {d:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn webhook_notes(&self, reference: &str) -> usize {
        self.journal
            .history(reference)
            .unwrap()
            .iter()
            .filter(|(_, _, n)| n.starts_with("webhook"))
            .count()
    }
}

fn last_status(d: &Value) -> Option<u64> {
    d["attempts"].as_array()?.last()?["status"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pai_good_bad_duplicate_reordered_and_replayed() {
    let rig = rig("pai").await;
    // Good: approved sale → transaction-processed → 200 after the journal write.
    let r = rig.pai.authorize(&request("wh-ok", 1234)).await;
    assert!(matches!(r, AuthorizationResult::Approved { .. }), "{r:?}");
    let d = rig.settle(1).await;
    assert_eq!(last_status(&d[0]), Some(200), "{d:?}");
    assert_eq!(d[0]["delivered"], true);
    assert_eq!(rig.webhook_notes("wh-ok"), 1);

    // Bad signature: 401, nothing recorded.
    rig.fault(
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "bad_signature"}}),
    )
    .await;
    rig.pai.authorize(&request("wh-bad", 1300)).await;
    let d = rig.settle(2).await;
    let bad = d
        .iter()
        .find(|x| x["body"].as_str().unwrap().contains("wh-bad"))
        .unwrap();
    assert_eq!(last_status(bad), Some(401), "{bad}");
    assert_eq!(bad["delivered"], false);
    assert_eq!(rig.webhook_notes("wh-bad"), 0);

    // Duplicate: both deliveries answered 200, acted on once.
    rig.fault(
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "duplicate"}}),
    )
    .await;
    rig.pai.authorize(&request("wh-dup", 1400)).await;
    let d = rig.settle(4).await;
    let dups: Vec<&Value> = d
        .iter()
        .filter(|x| x["body"].as_str().unwrap().contains("wh-dup"))
        .collect();
    assert_eq!(dups.len(), 2);
    assert!(dups.iter().all(|x| last_status(x) == Some(200)), "{dups:?}");
    assert_eq!(rig.webhook_notes("wh-dup"), 1, "deduplicated");

    // Reordered: the first event is held until the next one went out; both applied.
    rig.fault(
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "reorder"}}),
    )
    .await;
    rig.pai.authorize(&request("wh-r1", 1500)).await;
    rig.pai.authorize(&request("wh-r2", 1600)).await;
    let d = rig.settle(6).await;
    let pos = |r: &str| {
        d.iter()
            .position(|x| x["body"].as_str().unwrap().contains(r))
            .unwrap()
    };
    assert!(pos("wh-r2") < pos("wh-r1"), "delivered out of order");
    assert_eq!(
        (rig.webhook_notes("wh-r1"), rig.webhook_notes("wh-r2")),
        (1, 1)
    );

    // Replays: the same signed body again is a duplicate (200, no effect); a stale
    // timestamp is refused even with a good signature.
    let ok = d
        .iter()
        .find(|x| x["body"].as_str().unwrap().contains("wh-ok"))
        .unwrap();
    let body = ok["body"].as_str().unwrap().to_owned();
    let sig =
        emvbridge_core::gateway::sign::pai_webhook_signature("whsec_sandbox", body.as_bytes());
    let now = rig.journal.now();
    let post = |ts: i64, sig: String, body: String| {
        let url = format!("{}/webhooks/pai", rig.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("X-Signature", sig)
                .header("X-Sim-Timestamp", ts.to_string())
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(now, sig.clone(), body.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "duplicate");
    assert_eq!(rig.webhook_notes("wh-ok"), 1);
    assert_eq!(
        post(now - 3600, sig.clone(), body.clone()).await.status(),
        401
    );
    assert_eq!(post(now, "00".repeat(32), body.clone()).await.status(), 401);
    assert_eq!(post(now, String::new(), body.clone()).await.status(), 401);
    // The observed envelope (id/eventId, meta.metadata.transaction) is accepted too; the
    // state comes from the reloaded transaction.
    let observed = json!({"id": "ev_obs_1", "eventId": "ev_obs_1", "meta": {"eventType": "transaction-processed", "metadata": {"transaction": {"id": "x", "idempotencyKey": "wh-r2", "amount": 1600}}}}).to_string();
    let sig =
        emvbridge_core::gateway::sign::pai_webhook_signature("whsec_sandbox", observed.as_bytes());
    let r = post(now, sig, observed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(rig.webhook_notes("wh-r2"), 2);
    // Garbage with a good signature: 400, not a panic.
    let junk = "{not json".to_owned();
    let sig =
        emvbridge_core::gateway::sign::pai_webhook_signature("whsec_sandbox", junk.as_bytes());
    assert_eq!(post(now, sig, junk).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pai_webhook_settles_an_unknown_outcome() {
    let rig = rig("pai-unknown").await;
    // The sale is committed but its answer never comes: unknown in the journal.
    rig.fault(
        json!({"match": {"client_ref": "wh-lost"}, "action": {"type": "drop", "commit": true}}),
    )
    .await;
    let r = rig.pai.authorize(&request("wh-lost", 2000)).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    let d = rig.settle(1).await;
    assert_eq!(last_status(&d[0]), Some(200), "{d:?}");
    // The webhook reloaded it: approved at the gateway, never told to the POS. Delivered
    // after the answer was recorded, it makes the reversal due; delivered while the sale was
    // still in flight (the sandbox sends it as it processes), it only notes the gateway id —
    // a webhook never moves a row in flight. Either way the row knows its transaction.
    let e = rig.journal.get("wh-lost").unwrap().unwrap();
    assert!(
        matches!(e.state, RelayState::ReversalDue | RelayState::Unknown),
        "{}",
        e.state
    );
    assert!(e.gateway_id.is_some());
    // And the resolver takes it back.
    let policy = ResolverPolicy {
        min_age_secs: 0,
        processing_window_secs: 0,
        ..ResolverPolicy::default()
    };
    let now = rig.journal.now();
    resolve_once(&rig.journal, rig.pai.inner().as_ref(), &policy, now)
        .await
        .unwrap();
    assert_eq!(
        rig.journal.get("wh-lost").unwrap().unwrap().state,
        RelayState::Reversed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay1st_signature_checked() {
    let rig = rig("p1").await;
    let p1 = JournaledGateway::new(
        emvbridge::embedded::sandbox_gateway(Dialect::Pay1st, &rig.gw.url(), settings()).unwrap(),
        rig.journal.clone(),
    );
    let r = p1.authorize(&request("wh-p1", 1234)).await;
    assert!(matches!(r, AuthorizationResult::Approved { .. }), "{r:?}");
    rig.fault(
        json!({"match": {"op": "webhook"}, "action": {"type": "webhook", "mode": "bad_signature"}}),
    )
    .await;
    p1.authorize(&request("wh-p1bad", 1300)).await;
    let d = rig.settle(2).await;
    let find = |r: &str| {
        d.iter()
            .find(|x| x["body"].as_str().unwrap().contains(r))
            .unwrap()
            .clone()
    };
    assert_eq!(last_status(&find("\"wh-p1\"")), Some(200), "{d:?}");
    assert_eq!(last_status(&find("wh-p1bad")), Some(401), "{d:?}");
    assert_eq!(rig.webhook_notes("wh-p1"), 1);
    assert_eq!(rig.webhook_notes("wh-p1bad"), 0);
}
