//! The relay against the sandbox gateway, in process over loopback HTTP: every authorization
//! goes through the [`JournaledGateway`], every fault action of the sandbox (§4.7) leaves a
//! journal row the resolver settles, and afterwards `/_sim/assert/no_orphans` passes and the
//! journal and the sandbox ledger agree.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use emvbridge::gateway::http::HttpSettings;
use emvbridge::gateway::{Dialect, Gateway, OffsetClock, OpResult, RefundRequest, VoidRequest};
use emvbridge::journal::gateway::JournaledGateway;
use emvbridge::journal::resolver::{forward_once, resolve_once, ResolverPolicy};
use emvbridge::journal::{Journal, RelayState};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference,
};
use emvbridge_core::txn::{CardFacts, Outcome, OutcomeStatus};
use emvbridge_protocol::tlv::{Tag, TlvBuilder};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use emvbridge_sim::card::Card;
use serde_json::{json, Value};

fn fast() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
        max_attempts: 1,
        backoff: Duration::from_millis(10),
        max_body: 1 << 20,
    }
}

struct Rig {
    gw: SandboxHandle,
    clock: OffsetClock,
    journal: Arc<Journal>,
    jg: JournaledGateway,
    card: Card,
    path: std::path::PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.path.display()));
        }
    }
}

async fn rig(dialect: Dialect, name: &str) -> Rig {
    let gw = sandbox::spawn(SandboxConfig {
        seed: 11,
        ..Default::default()
    })
    .await
    .unwrap();
    let inner = emvbridge::embedded::sandbox_gateway(dialect, &gw.url(), fast()).unwrap();
    let path = std::env::temp_dir().join(format!("emvb-relay-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let clock = OffsetClock::new();
    let journal = Arc::new(Journal::open_with_clock(&path, Arc::new(clock.clone())).unwrap());
    let jg = JournaledGateway::new(inner, journal.clone());
    Rig {
        gw,
        clock,
        journal,
        jg,
        card: Card::from_profile("visa-cvn10").unwrap(),
        path,
    }
}

/// A real ARQC data set from the simulator's card model (as tests/gateway_sandbox.rs).
fn icc_data(card: &mut Card, amount_minor: u64) -> Vec<u8> {
    common::arqc_data(card, amount_minor, [0x12, 0x34, 0x56, 0x78])
}

impl Rig {
    fn request(&mut self, reference: &str, minor: u64) -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference(reference.into()),
            kind: AuthKind::Sale,
            amount: Money::from_minor(minor, "USD").unwrap(),
            amount_other: Money::from_minor(0, "USD").unwrap(),
            entry_mode: EntryMode::Chip,
            icc_data: Bytes::from(icc_data(&mut self.card, minor)),
            masked_pan: "411111******1111".into(),
            last4: Some("1111".into()),
            brand: Some("visa".into()),
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        }
    }

    async fn fault(&self, rule: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/_sim/faults", self.gw.url()))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{rule}");
    }

    async fn ledger(&self, client_ref: &str) -> Vec<Value> {
        let v: Value = reqwest::get(format!(
            "{}/_sim/ledger?client_ref={client_ref}",
            self.gw.url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        v["transactions"].as_array().cloned().unwrap_or_default()
    }

    async fn no_orphans(&self) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/_sim/assert/no_orphans", self.gw.url()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn state(&self, reference: &str) -> RelayState {
        self.journal.get(reference).unwrap().unwrap().state
    }

    /// The POS's view, as the engine would report it.
    fn told(&self, reference: &str, status: OutcomeStatus, minor: u64) -> RelayState {
        let o = Outcome {
            reference: Reference(reference.into()),
            kind: AuthKind::Sale,
            status,
            amount: Money::from_minor(minor, "USD").unwrap(),
            approved_amount: status
                .is_approved()
                .then(|| Money::from_minor(minor, "USD").unwrap()),
            gateway_id: None,
            auth_code: None,
            decline_code: None,
            reason: None,
            reversal: None,
            card: CardFacts::default(),
            final_data: None,
            pos_reference: None,
        };
        self.jg.record_outcome(&o).unwrap()
    }

    /// Resolver passes (virtual time moves past every backoff) until nothing is due.
    async fn resolve(&self, policy: &ResolverPolicy) {
        for _ in 0..6 {
            self.clock.advance(7200);
            let now = self.journal.now();
            forward_once(&self.journal, self.jg.inner().as_ref(), policy, now)
                .await
                .unwrap();
            let r = resolve_once(&self.journal, self.jg.inner().as_ref(), policy, now)
                .await
                .unwrap();
            if r.retry.is_empty() {
                break;
            }
        }
    }

    /// The journal and the sandbox ledger tell the same story about `reference`.
    async fn agree(&self, reference: &str) {
        let rows = self.ledger(reference).await;
        let original = rows
            .iter()
            .find(|t| t["kind"] == "sale" || t["kind"] == "auth");
        let ledger_state = original.map(|t| t["state"].as_str().unwrap_or("").to_owned());
        let j = self.journal.get(reference).unwrap().unwrap();
        let ok = match (j.state, ledger_state.as_deref()) {
            (
                RelayState::Approved | RelayState::Forwarded,
                Some("approved" | "partially_refunded"),
            ) => true,
            (RelayState::Reversed, Some("voided" | "refunded")) => true,
            (RelayState::NotFound | RelayState::Unavailable, None) => true,
            (RelayState::NotFound | RelayState::Declined, Some("declined" | "error")) => true,
            (RelayState::Declined, None) => true,
            // Pay1st cannot reverse through its API: escalated, and the ledger shows why.
            (RelayState::Escalated, Some("approved")) => true,
            // Pay1st, a lost reply before anything was charged: no lookup could tell.
            (RelayState::Escalated, None) => true,
            _ => false,
        };
        assert!(
            ok,
            "{reference}: journal {} vs ledger {ledger_state:?}: {rows:?}",
            j.state
        );
        if let (Some(t), Some(g)) = (original, &j.gateway_id) {
            assert_eq!(
                t["id"].as_str(),
                Some(g.as_str()),
                "{reference}: gateway id"
            );
        }
    }
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

/// Every fault action of §4.7 on the authorization, with the process "crashing" right after
/// (no reversal by the transaction): the resolver alone settles each one.
async fn fault_matrix(dialect: Dialect, name: &str) {
    let d = match dialect {
        Dialect::Number => "number",
        Dialect::PaymentsAi => "pai",
        Dialect::Pay1st => "pay1st",
    };
    let mut rig = rig(dialect, name).await;
    let faults: Vec<(&str, Value)> = vec![
        ("hang-c", json!({"type": "hang", "commit": true})),
        ("hang-n", json!({"type": "hang", "commit": false})),
        ("drop-c", json!({"type": "drop", "commit": true})),
        ("drop-n", json!({"type": "drop", "commit": false})),
        (
            "drop-mid",
            json!({"type": "drop", "commit": true, "when": "mid_body"}),
        ),
        (
            "5xx-c",
            json!({"type": "http", "status": 502, "commit": true}),
        ),
        (
            "5xx-n",
            json!({"type": "http", "status": 504, "commit": false}),
        ),
        ("malformed", json!({"type": "malformed", "commit": true})),
    ];
    for (i, (tag, action)) in faults.iter().enumerate() {
        let reference = format!("{d}-{tag}");
        rig.fault(json!({"match": {"client_ref": reference}, "action": action}))
            .await;
        let req = rig.request(&reference, 2000 + i as u64);
        let r = rig.jg.authorize(&req).await;
        assert!(
            matches!(r, AuthorizationResult::Unknown { .. }),
            "{reference}: {r:?}"
        );
        assert_eq!(rig.state(&reference), RelayState::Unknown, "{reference}");
    }
    // A crash before the answer: the row stays `sending` (written before the request left).
    let req = rig.request(&format!("{d}-crash"), 3000);
    rig.journal.begin_authorization(&req, dialect).unwrap();
    let r = rig.jg.inner().authorize(&req).await;
    assert!(matches!(r, AuthorizationResult::Approved { .. }), "{r:?}");
    assert_eq!(rig.state(&format!("{d}-crash")), RelayState::Sending);

    rig.resolve(&policy()).await;
    let mut refs: Vec<String> = faults.iter().map(|(t, _)| format!("{d}-{t}")).collect();
    refs.push(format!("{d}-crash"));
    for reference in &refs {
        let s = rig.state(reference);
        let committed = !reference.ends_with("-n");
        let expect = match (dialect, committed) {
            // Pay1st is queried by its own reference, which a lost reply never brought: the
            // crashed sale (its reply came) is found and escalated (no reversal API); a lost
            // reply cannot be looked up at all and goes to an operator, committed or not.
            (Dialect::Pay1st, _) => RelayState::Escalated,
            (_, false) => RelayState::NotFound,
            (_, true) => RelayState::Reversed,
        };
        assert_eq!(
            s,
            expect,
            "{reference}: {:?}",
            rig.journal.history(reference)
        );
        rig.agree(reference).await;
    }
    // Pay1st: the committed payments whose reply was lost stand for the operator.
    let orphans = if dialect == Dialect::Pay1st { 409 } else { 200 };
    assert_eq!(rig.no_orphans().await, orphans);
    // Nothing left for the resolver; the report lists only what cannot be settled.
    let unresolved: Vec<String> = rig
        .journal
        .unresolved()
        .unwrap()
        .into_iter()
        .map(|e| e.reference)
        .collect();
    if dialect == Dialect::Pay1st {
        assert_eq!(unresolved.len(), 9, "{unresolved:?}");
    } else {
        assert!(unresolved.is_empty(), "{unresolved:?}");
    }
}

#[tokio::test]
async fn number_every_fault_settles() {
    fault_matrix(Dialect::Number, "nf").await;
}

#[tokio::test]
async fn paymentsai_every_fault_settles() {
    fault_matrix(Dialect::PaymentsAi, "pf").await;
}

#[tokio::test]
async fn pay1st_every_fault_is_looked_up_and_escalated() {
    fault_matrix(Dialect::Pay1st, "qf").await;
}

/// Approved, declined, insufficient funds, partial approval, refund and void through the
/// journal; the engine's reversal after a card decline; expired auth; a declined void that
/// the resolver retries.
async fn outcomes(dialect: Dialect, name: &str) {
    let d = format!("{dialect}");
    let mut rig = rig(dialect, name).await;
    // Approved, told to the POS: never touched by the resolver.
    let ok = format!("{d}-ok");
    let req = rig.request(&ok, 1234);
    let AuthorizationResult::Approved { gateway_id, .. } = rig.jg.authorize(&req).await else {
        panic!("approval expected")
    };
    assert_eq!(
        rig.told(&ok, OutcomeStatus::Approved, 1234),
        RelayState::Approved
    );
    // Declined (forced code) and insufficient funds (x.51).
    rig.fault(json!({"match": {"client_ref": format!("{d}-dec")}, "action": {"type": "decline", "code": "05"}}))
        .await;
    let req = rig.request(&format!("{d}-dec"), 1500);
    assert!(matches!(
        rig.jg.authorize(&req).await,
        AuthorizationResult::Declined { .. }
    ));
    let req = rig.request(&format!("{d}-nsf"), 1051);
    let r = rig.jg.authorize(&req).await;
    assert!(matches!(r, AuthorizationResult::Declined { .. }), "{r:?}");
    assert_eq!(rig.state(&format!("{d}-nsf")), RelayState::Declined);
    // Partial approval (2.78 → 2.57) where the dialect has it.
    let part = format!("{d}-part");
    let req = rig.request(&part, 278);
    if let AuthorizationResult::Approved {
        approved_amount, ..
    } = rig.jg.authorize(&req).await
    {
        let e = rig.journal.get(&part).unwrap().unwrap();
        assert_eq!(e.approved_minor, Some(approved_amount.minor() as i64));
        if dialect == Dialect::Number {
            assert_eq!(approved_amount.minor(), 257);
        }
        rig.told(&part, OutcomeStatus::PartiallyApproved, 278);
    }
    // Expired auth: one re-authentication, approved.
    rig.fault(json!({"match": {"dialect": match dialect { Dialect::Number => "number", Dialect::PaymentsAi => "pai", Dialect::Pay1st => "pay1st" }}, "action": {"type": "auth_expire"}}))
        .await;
    let exp = format!("{d}-exp");
    let req = rig.request(&exp, 1600);
    let r = rig.jg.authorize(&req).await;
    match dialect {
        // PAI has no session: the fault answers 401, which is "not processed".
        Dialect::PaymentsAi => assert!(
            matches!(
                r,
                AuthorizationResult::Unavailable { .. } | AuthorizationResult::Approved { .. }
            ),
            "{r:?}"
        ),
        _ => assert!(matches!(r, AuthorizationResult::Approved { .. }), "{r:?}"),
    }
    let exp_status = if matches!(r, AuthorizationResult::Approved { .. }) {
        OutcomeStatus::Approved
    } else {
        OutcomeStatus::Declined
    };
    rig.told(&exp, exp_status, 1600);
    // Approved, then the card declined (x.91 path): the engine reverses through the journal.
    let cd = format!("{d}-carddecl");
    let req = rig.request(&cd, 1700);
    let AuthorizationResult::Approved {
        gateway_id: cd_id, ..
    } = rig.jg.authorize(&req).await
    else {
        panic!("approval expected")
    };
    if dialect != Dialect::Pay1st {
        if dialect == Dialect::Number {
            // The first void is declined: the resolver retries.
            rig.fault(json!({"match": {"dialect": "number", "op": "void"}, "action": {"type": "void_decline"}}))
                .await;
        }
        let rv = emvbridge_core::txn::host::ReversalRequest {
            reference: Reference(cd.clone()),
            gateway_id: Some(cd_id),
            amount: Money::from_minor(1700, "USD").unwrap(),
            reason: emvbridge_core::txn::host::ReversalReason::CardDeclinedAfterApproval,
        };
        let r = rig.jg.reverse(&rv).await;
        let told = if r == emvbridge_core::txn::host::ReversalResult::Reversed {
            OutcomeStatus::Reversed
        } else {
            assert_eq!(dialect, Dialect::Number, "{r:?}");
            assert_eq!(rig.state(&cd), RelayState::ReversalFailed);
            OutcomeStatus::Unresolved
        };
        rig.told(&cd, told, 1700);
    } else {
        // Pay1st: the POS saw a decline; the resolver cannot reverse and escalates.
        rig.told(&cd, OutcomeStatus::Declined, 1700);
    }
    // Refund (part) and void of separate approvals, recorded in the history.
    if dialect != Dialect::Pay1st {
        let rf = RefundRequest {
            reference: Reference(ok.clone()),
            gateway_id: gateway_id.clone(),
            amount: Money::from_minor(234, "USD").unwrap(),
            pos_reference: None,
        };
        let r = rig.jg.refund(&rf).await;
        assert!(matches!(r, OpResult::Done { .. }), "{r:?}");
        assert!(rig
            .journal
            .history(&ok)
            .unwrap()
            .iter()
            .any(|(_, _, n)| n.starts_with("refund: done")));
        let vd = format!("{d}-void");
        let req = rig.request(&vd, 1800);
        let AuthorizationResult::Approved {
            gateway_id: vid, ..
        } = rig.jg.authorize(&req).await
        else {
            panic!("approval expected")
        };
        rig.told(&vd, OutcomeStatus::Approved, 1800);
        let r = rig
            .jg
            .void(&VoidRequest {
                reference: Reference(vd.clone()),
                gateway_id: vid,
            })
            .await;
        if matches!(r, OpResult::Done { .. }) {
            assert_eq!(rig.state(&vd), RelayState::Reversed);
        } else {
            // PAI voids only uncaptured authorizations (§4.4): refused, still approved.
            assert_eq!(dialect, Dialect::PaymentsAi, "{r:?}");
            assert_eq!(rig.state(&vd), RelayState::Approved);
        }
        rig.agree(&vd).await;
    }
    rig.resolve(&policy()).await;
    assert_eq!(
        rig.state(&ok),
        RelayState::Approved,
        "approved and completed: never reversed"
    );
    rig.agree(&ok).await;
    for r in [format!("{d}-dec"), format!("{d}-nsf")] {
        assert_eq!(rig.state(&r), RelayState::Declined);
        rig.agree(&r).await;
    }
    let expect = if dialect == Dialect::Pay1st {
        RelayState::Escalated
    } else {
        RelayState::Reversed
    };
    assert_eq!(rig.state(&cd), expect, "{:?}", rig.journal.history(&cd));
    rig.agree(&cd).await;
    assert_eq!(rig.no_orphans().await, 200);
}

#[tokio::test]
async fn number_outcomes() {
    outcomes(Dialect::Number, "no").await;
}

#[tokio::test]
async fn paymentsai_outcomes() {
    outcomes(Dialect::PaymentsAi, "po").await;
}

#[tokio::test]
async fn pay1st_outcomes() {
    outcomes(Dialect::Pay1st, "qo").await;
}

/// Store-and-forward replay: the stored ICC data holds the PAN masked (`5A` with `A`
/// nibbles) and the clear data only inside the SRED `FF7F` container; the forwarder sends it
/// with the same reference once the gateway answers, and a decline on forward is reported.
#[tokio::test]
async fn stored_sales_are_forwarded_and_declines_reported() {
    use emvbridge::journal::resolver::SafLimits;
    let mut rig = rig(Dialect::PaymentsAi, "saf").await;
    let limits = SafLimits {
        enabled: true,
        max_amount_minor: 5000,
        max_count: 2,
        max_total_minor: 6000,
        max_age_secs: 0,
    };
    let usd = |m: u64| Money::from_minor(m, "USD").unwrap();
    assert!(limits
        .allows(&rig.journal, AuthKind::Sale, usd(2500))
        .unwrap());
    assert!(
        !limits
            .allows(&rig.journal, AuthKind::Sale, usd(5001))
            .unwrap(),
        "amount cap"
    );
    assert!(
        !limits
            .allows(&rig.journal, AuthKind::Refund, usd(100))
            .unwrap(),
        "sales only"
    );
    let mut enc = emvbridge_sim::sred::SredEncryptor::ansi_test();
    let pan = emvbridge_protocol::emv::Pan::parse("4111111111111111").unwrap();
    let track2 = hex::decode("4111111111111111D30122010000000000000F").unwrap();
    let mut store = |rig: &mut Rig, reference: &str, minor: u64| {
        let mut req = rig.request(reference, minor);
        // As the reader sends it with SRED on: 5A masked, clear data only in FF7F.
        let mut b = TlvBuilder::new();
        for t in emvbridge_protocol::tlv::parse(&req.icc_data) {
            let t = t.unwrap();
            if t.tag() == Tag(0x5A) {
                b.primitive(Tag(0x5A), &hex::decode("411111AAAAAA1111").unwrap());
            } else {
                b.raw(t.raw());
            }
        }
        b.raw(&enc.encrypt(&pan, &track2, [7; 8]).unwrap());
        req.icc_data = Bytes::from(b.as_bytes().to_vec());
        rig.journal
            .begin_authorization(&req, Dialect::PaymentsAi)
            .unwrap();
        rig.journal
            .record_authorization(
                &req.reference,
                &AuthorizationResult::Unavailable {
                    reason: "connect failed".into(),
                },
            )
            .unwrap();
        let o = Outcome {
            reference: req.reference.clone(),
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
            pos_reference: None,
        };
        let s = rig
            .journal
            .record_outcome(&o, Dialect::PaymentsAi, Some(&req))
            .unwrap();
        assert_eq!(s, RelayState::Stored);
        let icc = rig.journal.icc_data(reference).unwrap().unwrap();
        assert!(emvbridge::journal::icc_is_safe(&icc));
        let clear = hex::decode("4111111111111111").unwrap();
        assert!(
            !icc.windows(8).any(|w| w == clear.as_slice()),
            "no clear pan stored"
        );
    };
    store(&mut rig, "saf-ok", 2500);
    store(&mut rig, "saf-dec", 2600);
    assert!(
        !limits
            .allows(&rig.journal, AuthKind::Sale, usd(100))
            .unwrap(),
        "count cap"
    );
    rig.fault(
        json!({"match": {"client_ref": "saf-dec"}, "action": {"type": "decline", "code": "05"}}),
    )
    .await;
    let r = forward_once(
        &rig.journal,
        rig.jg.inner().as_ref(),
        &policy(),
        rig.journal.now(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.settled,
        vec![("saf-ok".to_owned(), RelayState::Forwarded)]
    );
    assert_eq!(r.forward_declined, vec!["saf-dec".to_owned()]);
    let e = rig.journal.get("saf-ok").unwrap().unwrap();
    assert!(!e.has_icc && e.gateway_id.is_some() && e.auth_attempts == 2);
    rig.agree("saf-ok").await;
    let l = rig.ledger("saf-ok").await;
    assert_eq!((l.len(), l[0]["approved_minor"].as_i64()), (1, Some(2500)));
    assert_eq!(rig.state("saf-dec"), RelayState::ForwardDeclined);
    let report = emvbridge::journal::report::build(&rig.journal, 0, i64::MAX).unwrap();
    assert!(report.unresolved.iter().any(|e| e.reference == "saf-dec"));
    assert!(report.table().contains("forward_declined"));
}
