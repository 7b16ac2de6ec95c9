//! The gateway adapters against the sandbox gateway, in process, over real loopback HTTP
//! (gateways.md §4). ICC data comes from the simulator's card model, so the sandbox verifies real
//! ARQCs and the card verifies the ARPC the adapter hands back.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use emvbridge::gateway::http::{HttpSettings, NumberGateway, PaiGateway, Pay1stGateway};
use emvbridge::gateway::number::NumberConfig;
use emvbridge::gateway::pay1st::Pay1stConfig;
use emvbridge::gateway::paymentsai::PaiConfig;
use emvbridge::gateway::{
    CaptureRequest, Gateway, OffsetClock, OpResult, RefundRequest, Secret, StatusResult,
    SystemClock, TxnState, VoidRequest,
};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference, ReversalReason,
    ReversalRequest, ReversalResult,
};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use emvbridge_sim::card::Card;
use serde_json::{json, Value};

async fn spawn() -> SandboxHandle {
    sandbox::spawn(SandboxConfig {
        seed: 7,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn fast(timeout_ms: u64, attempts: u32) -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(timeout_ms),
        max_attempts: attempts,
        backoff: Duration::from_millis(20),
        max_body: 1 << 20,
    }
}

fn number_cfg(gw: &SandboxHandle, token: &str) -> NumberConfig {
    NumberConfig {
        base_url: format!("{}/number/APIcardProcNumber/v1.0.0", gw.url()),
        acct_code: "EP9000001".into(),
        token: Secret::new(token),
        user_id: "1001".into(),
        hmac_secret: Secret::new("sandbox-hmac-secret"),
        merch_id: None,
        currency: "USD".into(),
        emv_extension: true,
    }
}

const NUMBER_TOKEN: &str = "0123456789ABCDEF0123456789ABCDEF";

fn number(gw: &SandboxHandle, s: HttpSettings) -> NumberGateway {
    NumberGateway::new(number_cfg(gw, NUMBER_TOKEN), s, Arc::new(SystemClock)).unwrap()
}

fn pai(gw: &SandboxHandle, s: HttpSettings) -> PaiGateway {
    PaiGateway::new(
        PaiConfig {
            base_url: format!("{}/pai", gw.url()),
            organization_id: "org_sandbox".into(),
            api_key: Secret::new("acc_sandbox_key_sandbox0001_kid_sandbox0001"),
            website_id: "web_sandbox".into(),
            customer_id: "cus_sandbox".into(),
            emv_extension: true,
        },
        s,
    )
    .unwrap()
}

fn pay1st(gw: &SandboxHandle, s: HttpSettings) -> Pay1stGateway {
    Pay1stGateway::new(
        Pay1stConfig {
            base_url: format!("{}/pay1st", gw.url()),
            api_key: Secret::new("p1_sandbox_key"),
            api_secret: Secret::new("p1_sandbox_secret"),
            signing_key: Secret::new("hCyO_Flnu6aid-bhFYTYOowkxXRzoZkgzO32rB6Ik8Y"),
            country_code: "NG".into(),
            callback_url: None,
            webhook_url: None,
            emv_extension: true,
            token_refresh_secs: 3000,
        },
        s,
        Arc::new(SystemClock),
    )
    .unwrap()
}

/// A real ARQC data set from the simulator's `visa-cvn10` card (PAN 4111111111111111).
fn icc_data(card: &mut Card, amount_minor: u64) -> Vec<u8> {
    common::arqc_data(card, amount_minor, [0x12, 0x34, 0x56, 0x78])
}

fn request(card: &mut Card, reference: &str, minor: u64, currency: &str) -> AuthorizationRequest {
    AuthorizationRequest {
        reference: Reference(reference.into()),
        kind: AuthKind::Sale,
        amount: Money::from_minor(minor, currency).unwrap(),
        amount_other: Money::from_minor(0, currency).unwrap(),
        entry_mode: EntryMode::Chip,
        icc_data: Bytes::from(icc_data(card, minor)),
        masked_pan: "411111******1111".into(),
        last4: Some("1111".into()),
        brand: Some("visa".into()),
        original_gateway_id: None,
        online_pin: None,
        pos_reference: None,
    }
}

fn card() -> Card {
    Card::from_profile("visa-cvn10").unwrap()
}

async fn fault(gw: &SandboxHandle, rule: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", gw.url()))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{rule}");
}

async fn ledger(gw: &SandboxHandle, client_ref: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_sim/ledger?client_ref={client_ref}", gw.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["transactions"].as_array().cloned().unwrap_or_default()
}

async fn no_orphans(gw: &SandboxHandle) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/_sim/assert/no_orphans", gw.url()))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn advance(gw: &SandboxHandle, secs: i64) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/clock", gw.url()))
        .json(&json!({"advanceSecs": secs}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

fn approved(r: &AuthorizationResult) -> (String, u64, emvbridge_core::txn::host::IssuerResponse) {
    match r {
        AuthorizationResult::Approved {
            gateway_id,
            approved_amount,
            issuer,
        } => (gateway_id.clone(), approved_amount.minor(), issuer.clone()),
        other => panic!("expected approval, got {other:?}"),
    }
}

fn declined_code(r: &AuthorizationResult) -> (Option<String>, [u8; 2]) {
    match r {
        AuthorizationResult::Declined { code, issuer, .. } => (code.clone(), issuer.arc),
        other => panic!("expected decline, got {other:?}"),
    }
}

fn reversal(reference: &str, gateway_id: Option<String>, minor: u64, cur: &str) -> ReversalRequest {
    ReversalRequest {
        reference: Reference(reference.into()),
        gateway_id,
        amount: Money::from_minor(minor, cur).unwrap(),
        reason: ReversalReason::NoHostResponse,
    }
}

fn found(s: &StatusResult) -> (String, TxnState) {
    match s {
        StatusResult::Found(t) => (t.gateway_id.clone(), t.state),
        other => panic!("expected found, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Number

#[tokio::test]
async fn number_sale_decline_nsf_refund_void_status() {
    let gw = spawn().await;
    let g: Arc<dyn Gateway> = Arc::new(number(&gw, fast(5000, 1)));
    let mut c = card();

    // Approved; the card accepts the issuer authentication data the adapter extracted.
    let r = g.authorize(&request(&mut c, "n-ok", 2500, "USD")).await;
    let (id, amount, issuer) = approved(&r);
    assert_eq!(amount, 2500);
    assert_eq!(&issuer.arc, b"00");
    c.external_authenticate(issuer.issuer_auth_data.as_deref().unwrap(), issuer.arc)
        .expect("card accepts the ARPC");
    assert_eq!(issuer.auth_code.as_deref().map(str::len), Some(6));

    // TxDecline at 12345.67 (Number Verifone test amount) and NSF at x.51.
    let r = g
        .authorize(&request(&mut c, "n-dec", 1_234_567, "USD"))
        .await;
    assert_eq!(declined_code(&r), (Some("05".into()), *b"05"));
    let r = g.authorize(&request(&mut c, "n-nsf", 1051, "USD")).await;
    assert_eq!(declined_code(&r), (Some("51".into()), *b"51"));
    // AspenError at 12345.68: FunctionOk false.
    let r = g
        .authorize(&request(&mut c, "n-aspen", 1_234_568, "USD"))
        .await;
    assert_eq!(declined_code(&r).0.as_deref(), Some("9999"));

    // Status by our reference.
    assert_eq!(
        found(&g.status(&Reference("n-ok".into()), None).await),
        (id.clone(), TxnState::Approved)
    );
    assert_eq!(
        found(&g.status(&Reference("n-nsf".into()), None).await).1,
        TxnState::Declined
    );
    assert_eq!(
        g.status(&Reference("n-none".into()), None).await,
        StatusResult::NotFound
    );

    // Partial refund.
    let rf = g
        .refund(&RefundRequest {
            reference: Reference("n-ok-rf".into()),
            gateway_id: id.clone(),
            amount: Money::from_minor(500, "USD").unwrap(),
            pos_reference: None,
        })
        .await;
    assert!(
        matches!(rf, OpResult::Done { ref gateway_id } if *gateway_id != id),
        "{rf:?}"
    );
    assert_eq!(ledger(&gw, "n-ok").await[0]["state"], "partially_refunded");

    // Void of another sale; void of an unknown TxID → 6724 → NotFound.
    let (id2, ..) = approved(&g.authorize(&request(&mut c, "n-void", 1000, "USD")).await);
    let v = g
        .void(&VoidRequest {
            reference: Reference("n-void".into()),
            gateway_id: id2.clone(),
        })
        .await;
    assert_eq!(v, OpResult::Done { gateway_id: id2 });
    assert_eq!(
        found(&g.status(&Reference("n-void".into()), None).await).1,
        TxnState::Voided
    );
    let v = g
        .void(&VoidRequest {
            reference: Reference("x".into()),
            gateway_id: "1".into(),
        })
        .await;
    assert_eq!(v, OpResult::NotFound);

    // Pre-auth + capture (IncrementAuth Finalize=1).
    let mut pre = request(&mut c, "n-pre", 1000, "USD");
    pre.kind = AuthKind::PreAuth;
    let (pid, ..) = approved(&g.authorize(&pre).await);
    let cap = g
        .capture(&CaptureRequest {
            reference: Reference("n-pre-cap".into()),
            gateway_id: pid.clone(),
            authorized: Money::from_minor(1000, "USD").unwrap(),
            amount: Money::from_minor(1200, "USD").unwrap(),
            pos_reference: None,
        })
        .await;
    assert_eq!(cap, OpResult::Done { gateway_id: pid });
    gw.shutdown().await;
}

#[tokio::test]
async fn number_faults_hang_drop_5xx() {
    let gw = spawn().await;
    let g = number(&gw, fast(800, 3));
    let mut c = card();

    // Hang → Unknown within the client timeout.
    fault(&gw, json!({"match": {"dialect": "number", "op": "emv"}, "action": {"type": "hang", "commit": false}})).await;
    let t0 = Instant::now();
    let r = g.authorize(&request(&mut c, "n-hang", 2500, "USD")).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );

    // Drop after commit → Unknown; status finds the approval; reverse voids it.
    fault(
        &gw,
        json!({"match": {"client_ref": "n-lost"}, "action": {"type": "drop", "commit": true}}),
    )
    .await;
    let r = g.authorize(&request(&mut c, "n-lost", 2500, "USD")).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert_eq!(ledger(&gw, "n-lost").await.len(), 1, "sent exactly once");
    // An orphan until the bridge looks it up (a lookup counts as reconciling, §4.7).
    assert_eq!(no_orphans(&gw).await, 409);
    assert_eq!(
        found(&g.status(&Reference("n-lost".into()), None).await).1,
        TxnState::Approved
    );
    let rv = g.reverse(&reversal("n-lost", None, 2500, "USD")).await;
    assert_eq!(rv, ReversalResult::Reversed);
    assert_eq!(ledger(&gw, "n-lost").await[0]["state"], "voided");
    assert_eq!(no_orphans(&gw).await, 200);

    // Malformed 200 body after commit → Unknown, resolved the same way.
    fault(&gw, json!({"match": {"client_ref": "n-garbled"}, "action": {"type": "malformed", "commit": true}})).await;
    let r = g
        .authorize(&request(&mut c, "n-garbled", 2500, "USD"))
        .await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert_eq!(
        g.reverse(&reversal("n-garbled", None, 2500, "USD")).await,
        ReversalResult::Reversed
    );

    // 503 without commit → Unknown; Number does not re-send (no idempotency), it queries.
    fault(&gw, json!({"match": {"client_ref": "n-503"}, "action": {"type": "http", "status": 503, "commit": false}})).await;
    let r = g.authorize(&request(&mut c, "n-503", 2500, "USD")).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert!(ledger(&gw, "n-503").await.is_empty(), "no re-send");
    assert_eq!(
        g.status(&Reference("n-503".into()), None).await,
        StatusResult::NotFound
    );
    assert_eq!(
        g.reverse(&reversal("n-503", None, 2500, "USD")).await,
        ReversalResult::NotFound
    );

    // Void declined by the issuer → the reversal is still due.
    let (id, ..) = approved(&g.authorize(&request(&mut c, "n-vd", 2500, "USD")).await);
    fault(
        &gw,
        json!({"match": {"dialect": "number", "op": "void"}, "action": {"type": "void_decline"}}),
    )
    .await;
    let rv = g.reverse(&reversal("n-vd", Some(id), 2500, "USD")).await;
    assert!(matches!(rv, ReversalResult::Failed { .. }), "{rv:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn number_session_reauth_once_and_no_lockout_storm() {
    let gw = spawn().await;
    let clock = OffsetClock::new();
    let g = NumberGateway::new(
        number_cfg(&gw, NUMBER_TOKEN),
        fast(5000, 1),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let mut c = card();
    approved(&g.authorize(&request(&mut c, "s-1", 2500, "USD")).await);

    // 5030 on the next card call: one re-login, one re-send, approved.
    fault(
        &gw,
        json!({"match": {"dialect": "number", "op": "emv"}, "action": {"type": "auth_expire"}}),
    )
    .await;
    approved(&g.authorize(&request(&mut c, "s-2", 2500, "USD")).await);
    assert_eq!(ledger(&gw, "s-2").await.len(), 1);

    // 25 h later on both clocks: the adapter renews before using the stale key.
    advance(&gw, 25 * 3600).await;
    clock.advance(25 * 3600);
    approved(&g.authorize(&request(&mut c, "s-3", 2500, "USD")).await);
    assert_eq!(g.auth_failures().await, 0);

    // Wrong token: two failed logins, then the adapter stops — the gateway's lockout (6)
    // is never reached, so a correct client on the same IP still logs in.
    let bad = NumberGateway::new(
        number_cfg(&gw, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"),
        fast(5000, 1),
        Arc::new(SystemClock),
    )
    .unwrap();
    for i in 0..8 {
        let r = bad
            .authorize(&request(&mut c, &format!("bad-{i}"), 2500, "USD"))
            .await;
        assert!(
            matches!(r, AuthorizationResult::Unavailable { .. }),
            "{r:?}"
        );
    }
    assert_eq!(bad.auth_failures().await, 2);
    let fresh = NumberGateway::new(
        number_cfg(&gw, NUMBER_TOKEN),
        fast(5000, 1),
        Arc::new(clock.clone()),
    )
    .unwrap();
    approved(&fresh.authorize(&request(&mut c, "s-4", 2500, "USD")).await);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// PaymentsAI

#[tokio::test]
async fn pai_sale_decline_nsf_refund_void_status() {
    let gw = spawn().await;
    let g: Arc<dyn Gateway> = Arc::new(pai(&gw, fast(5000, 3)));
    let mut c = card();

    let (id, amount, issuer) = approved(&g.authorize(&request(&mut c, "p-ok", 2500, "USD")).await);
    assert_eq!(amount, 2500);
    c.external_authenticate(issuer.issuer_auth_data.as_deref().unwrap(), issuer.arc)
        .expect("card accepts the ARPC");

    // 201 with result "declined": a decline, not an error.
    fault(
        &gw,
        json!({"match": {"client_ref": "p-dec"}, "action": {"type": "decline", "code": "05"}}),
    )
    .await;
    let (code, arc) = declined_code(&g.authorize(&request(&mut c, "p-dec", 2500, "USD")).await);
    assert_eq!((code.as_deref(), &arc), (Some("05"), b"05"));
    let (_, arc) = declined_code(&g.authorize(&request(&mut c, "p-nsf", 1051, "USD")).await);
    assert_eq!(&arc, b"51");

    assert_eq!(
        found(&g.status(&Reference("p-ok".into()), None).await),
        (id.clone(), TxnState::Approved)
    );
    assert_eq!(
        found(&g.status(&Reference("p-nsf".into()), None).await).1,
        TxnState::Declined
    );
    assert_eq!(
        g.status(&Reference("p-none".into()), None).await,
        StatusResult::NotFound
    );

    // Refund, then a refund beyond what is refundable → 422 refused.
    let rf = |amount| RefundRequest {
        reference: Reference("p-ok-rf".into()),
        gateway_id: id.clone(),
        amount: Money::from_minor(amount, "USD").unwrap(),
        pos_reference: None,
    };
    assert!(matches!(g.refund(&rf(1000)).await, OpResult::Done { .. }));
    assert!(
        matches!(g.refund(&rf(5000)).await, OpResult::Refused { code: Some(c), .. } if c == "422")
    );

    // Pre-auth → void; pre-auth → capture.
    let mut pre = request(&mut c, "p-pre", 1000, "USD");
    pre.kind = AuthKind::PreAuth;
    let (pid, ..) = approved(&g.authorize(&pre).await);
    let v = g
        .void(&VoidRequest {
            reference: Reference("p-pre".into()),
            gateway_id: pid,
        })
        .await;
    assert!(matches!(v, OpResult::Done { .. }), "{v:?}");
    assert_eq!(
        found(&g.status(&Reference("p-pre".into()), None).await).1,
        TxnState::Voided
    );
    let mut pre2 = request(&mut c, "p-pre2", 1000, "USD");
    pre2.kind = AuthKind::PreAuth;
    let (pid2, ..) = approved(&g.authorize(&pre2).await);
    let cap = g
        .capture(&CaptureRequest {
            reference: Reference("p-pre2-cap".into()),
            gateway_id: pid2,
            authorized: Money::from_minor(1000, "USD").unwrap(),
            amount: Money::from_minor(800, "USD").unwrap(),
            pos_reference: None,
        })
        .await;
    assert!(matches!(cap, OpResult::Done { .. }), "{cap:?}");

    // Reversal of a sale (no gateway id known): looked up by key, refunded in full.
    approved(&g.authorize(&request(&mut c, "p-rev", 2500, "USD")).await);
    assert_eq!(
        g.reverse(&reversal("p-rev", None, 2500, "USD")).await,
        ReversalResult::Reversed
    );
    assert_eq!(ledger(&gw, "p-rev").await[0]["state"], "refunded");
    gw.shutdown().await;
}

#[tokio::test]
async fn pai_faults_idempotent_retry_and_reconcile() {
    let gw = spawn().await;
    let g = pai(&gw, fast(800, 3));
    let mut c = card();

    // 5xx without commit: the retry with the same idempotencyKey succeeds, once.
    fault(&gw, json!({"match": {"client_ref": "p-503"}, "action": {"type": "http", "status": 503, "commit": false}})).await;
    approved(&g.authorize(&request(&mut c, "p-503", 2500, "USD")).await);
    assert_eq!(ledger(&gw, "p-503").await.len(), 1);

    // Drop after commit: the retry returns the original transaction; one charge.
    fault(
        &gw,
        json!({"match": {"client_ref": "p-lost"}, "action": {"type": "drop", "commit": true}}),
    )
    .await;
    let (id, ..) = approved(&g.authorize(&request(&mut c, "p-lost", 2500, "USD")).await);
    let l = ledger(&gw, "p-lost").await;
    assert_eq!((l.len(), l[0]["id"].as_str()), (1, Some(id.as_str())));

    // Hang on every attempt → Unknown within the attempts' timeouts.
    fault(&gw, json!({"match": {"client_ref": "p-hang"}, "action": {"type": "hang", "commit": false}, "times": 0})).await;
    let t0 = Instant::now();
    let r = g.authorize(&request(&mut c, "p-hang", 2500, "USD")).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    reqwest::Client::new()
        .delete(format!("{}/_sim/faults", gw.url()))
        .send()
        .await
        .unwrap();

    // Without retries: drop after commit → Unknown → status approved → reverse refunds it.
    let once = pai(&gw, fast(800, 1));
    fault(
        &gw,
        json!({"match": {"client_ref": "p-lost2"}, "action": {"type": "drop", "commit": true}}),
    )
    .await;
    let r = once
        .authorize(&request(&mut c, "p-lost2", 2500, "USD"))
        .await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert_eq!(
        found(&once.status(&Reference("p-lost2".into()), None).await).1,
        TxnState::Approved
    );
    assert_eq!(
        once.reverse(&reversal("p-lost2", None, 2500, "USD")).await,
        ReversalResult::Reversed
    );
    assert_eq!(ledger(&gw, "p-lost2").await[0]["state"], "refunded");
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Pay1st

#[tokio::test]
async fn pay1st_sale_decline_nsf_status_and_limits() {
    let gw = spawn().await;
    let g: Arc<dyn Gateway> = Arc::new(pay1st(&gw, fast(5000, 3)));
    let mut c = card();

    let (id, amount, issuer) = approved(&g.authorize(&request(&mut c, "q-ok", 2500, "NGN")).await);
    assert_eq!(amount, 2500);
    c.external_authenticate(issuer.issuer_auth_data.as_deref().unwrap(), issuer.arc)
        .expect("card accepts the ARPC");
    fault(
        &gw,
        json!({"match": {"client_ref": "q-dec"}, "action": {"type": "decline", "code": "05"}}),
    )
    .await;
    assert_eq!(
        declined_code(&g.authorize(&request(&mut c, "q-dec", 2500, "NGN")).await).1,
        *b"05"
    );
    assert_eq!(
        declined_code(&g.authorize(&request(&mut c, "q-nsf", 1051, "NGN")).await).1,
        *b"51"
    );

    // "Query Payment Status" is by Pay1st's reference: the one the create reply returned
    // (remembered by the adapter, or held by the journal as the gateway id).
    assert_eq!(
        found(&g.status(&Reference("q-ok".into()), None).await),
        (id.clone(), TxnState::Approved)
    );
    assert_eq!(
        found(&g.status(&Reference("q-nsf".into()), None).await).1,
        TxnState::Declined
    );
    let restarted = pay1st(&gw, fast(5000, 3));
    assert_eq!(
        found(&restarted.status(&Reference("q-ok".into()), Some(&id)).await),
        (id.clone(), TxnState::Approved)
    );
    // Without Pay1st's reference nothing can be looked up: unknown (never "not found").
    for g in [&g, &(Arc::new(restarted) as Arc<dyn Gateway>)] {
        assert!(matches!(
            g.status(&Reference("q-none".into()), None).await,
            StatusResult::Unknown { reason } if reason.contains("operator")
        ));
    }
    assert_eq!(
        g.status(&Reference("q-x".into()), Some("C-0-P")).await,
        StatusResult::NotFound
    );

    // No void/refund/capture API: unsupported; an approved payment cannot be reversed.
    let v = g
        .void(&VoidRequest {
            reference: Reference("q-ok".into()),
            gateway_id: id.clone(),
        })
        .await;
    assert!(matches!(v, OpResult::Unsupported { .. }));
    let rf = g
        .refund(&RefundRequest {
            reference: Reference("q-ok-rf".into()),
            gateway_id: id,
            amount: Money::from_minor(100, "NGN").unwrap(),
            pos_reference: None,
        })
        .await;
    assert!(matches!(rf, OpResult::Unsupported { .. }));
    assert!(matches!(
        g.reverse(&reversal("q-ok", None, 2500, "NGN")).await,
        ReversalResult::Failed { .. }
    ));
    assert_eq!(
        g.reverse(&reversal("q-nsf", None, 1051, "NGN")).await,
        ReversalResult::NotFound
    );
    assert!(matches!(
        g.reverse(&reversal("q-none", None, 1, "NGN")).await,
        ReversalResult::Failed { .. }
    ));

    // Token expiry (virtual clock is only the sandbox's; the fault forces a 401 once).
    fault(
        &gw,
        json!({"match": {"dialect": "pay1st", "op": "emv"}, "action": {"type": "auth_expire"}}),
    )
    .await;
    approved(&g.authorize(&request(&mut c, "q-tok", 2500, "NGN")).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn pay1st_faults_duplicate_reference_resolves() {
    let gw = spawn().await;
    let g = pay1st(&gw, fast(800, 3));
    let mut c = card();

    // Lost reply after commit: the create is never re-sent (a duplicate partnerReference has no
    // documented answer) and there is no query by partnerReference, so the sale stays unknown
    // and the lookup says an operator must resolve it. One payment, never two.
    fault(
        &gw,
        json!({"match": {"client_ref": "q-lost"}, "action": {"type": "drop", "commit": true}}),
    )
    .await;
    let r = g.authorize(&request(&mut c, "q-lost", 2500, "NGN")).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert_eq!(ledger(&gw, "q-lost").await.len(), 1);
    assert!(matches!(
        g.status(&Reference("q-lost".into()), None).await,
        StatusResult::Unknown { reason } if reason.contains("operator")
    ));

    // 5xx: maybe processed, so unknown too; nothing was charged here.
    fault(&gw, json!({"match": {"client_ref": "q-503"}, "action": {"type": "http", "status": 502, "commit": false}})).await;
    let r = g.authorize(&request(&mut c, "q-503", 2500, "NGN")).await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert_eq!(ledger(&gw, "q-503").await.len(), 0);

    // A create answered NEW whose status queries fail at first: followed until final.
    fault(&gw, json!({"match": {"dialect": "pay1st", "op": "query"}, "action": {"type": "http", "status": 503, "commit": false}})).await;
    approved(&g.authorize(&request(&mut c, "q-follow", 2500, "NGN")).await);

    // Hang on every attempt → Unknown; the lookup then finds nothing committed.
    let once = pay1st(&gw, fast(800, 1));
    fault(
        &gw,
        json!({"match": {"client_ref": "q-hang"}, "action": {"type": "hang", "commit": false}}),
    )
    .await;
    let t0 = Instant::now();
    let r = once
        .authorize(&request(&mut c, "q-hang", 2500, "NGN"))
        .await;
    assert!(matches!(r, AuthorizationResult::Unknown { .. }), "{r:?}");
    assert!(t0.elapsed() < Duration::from_millis(2500));
    assert!(matches!(
        once.status(&Reference("q-hang".into()), None).await,
        StatusResult::Unknown { .. }
    ));
    gw.shutdown().await;
}
