//! The transaction state machine against the simulated reader's core and a scripted issuer
//! (see `emvbridge::pair`).

use emvbridge::pair::{replay, request, HostMode, Pair};
use emvbridge_core::txn::{OutcomeStatus, Prompt, ReversalReason};

#[test]
fn approved_online_with_real_cryptograms() {
    for card in ["visa-cvn18", "visa-cvn10", "mc-cvn16", "amex", "discover"] {
        let mut p = Pair::new(card, 1234, "", 1);
        let o = p.run();
        assert_eq!(o.status, OutcomeStatus::Approved, "{card}: {o:?}");
        assert_eq!(o.card.cryptogram_type.as_deref(), Some("TC"), "{card}");
        assert!(o.card.arqc.is_some());
        assert_ne!(o.card.arqc, o.card.cryptogram);
        assert!(
            o.card.masked_pan.as_deref().unwrap().contains('*'),
            "{card}: PAN masked"
        );
        assert!(o.card.aid.is_some() && o.card.app_label.is_some() && o.card.tvr.is_some());
        assert!(p.reversals.is_empty());
        assert_eq!(p.authorizations, 1);
        assert!(p.prompts.contains(&Prompt::Authorizing));
    }
}

#[test]
fn insufficient_funds_is_declined_by_issuer_and_card() {
    let mut p = Pair::new("visa-cvn18", 2151, "", 2);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Declined);
    assert_eq!(o.decline_code.as_deref(), Some("51"));
    assert_eq!(o.card.cryptogram_type.as_deref(), Some("AAC"));
    assert!(p.reversals.is_empty());
}

#[test]
fn bad_arpc_makes_the_card_decline_and_the_approval_is_reversed() {
    let mut p = Pair::new("visa-cvn18", 1291, "", 3);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Reversed, "{o:?}");
    assert_eq!(p.reversals, [ReversalReason::CardDeclinedAfterApproval]);
    assert!(!p.ledger_approved, "nothing stays charged");
    // The card whose issuer authentication always fails does the same at any amount.
    let mut p = Pair::new("issuer-auth-fail", 1000, "", 4);
    assert_eq!(p.run().status, OutcomeStatus::Reversed);
    assert_eq!(p.reversals, [ReversalReason::CardDeclinedAfterApproval]);
}

#[test]
fn two_application_card_goes_through_selection() {
    let mut p = Pair::new("two-app", 1000, "", 5);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Approved, "{o:?}");
    assert!(p
        .prompts
        .iter()
        .any(|x| matches!(x, Prompt::ApplicationSelected { .. })));
}

#[test]
fn offline_pin_card_prompts_for_pin() {
    let mut p = Pair::new("offline-pin", 1000, "", 6);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Approved, "{o:?}");
    assert!(p.prompts.contains(&Prompt::EnterPin), "{:?}", p.prompts);
    assert_eq!(o.card.cvm.as_deref(), Some("PIN VERIFIED"));
}

#[test]
fn offline_decline_and_expired_card() {
    for card in ["offline-decline", "expired"] {
        let mut p = Pair::new(card, 1000, "", 7);
        let o = p.run();
        assert_eq!(o.status, OutcomeStatus::Declined, "{card}: {o:?}");
        assert_eq!(
            p.authorizations, 0,
            "{card}: an offline decline never reaches the host"
        );
    }
}

#[test]
fn offline_approval_below_the_floor_limit() {
    // Store-and-forward allows it (the relay sets this from its limits before the sale).
    let saf = emvbridge_core::txn::TxnConfig {
        offline_fallback: true,
        ..Default::default()
    };
    let mut p = Pair::with_config("offline-approve", 4999, "", 15, saf);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::ApprovedOffline, "{o:?}");
    assert_eq!(o.card.cryptogram_type.as_deref(), Some("TC"));
    assert_eq!(o.card.arc, Some(*b"Y1"));
    assert_eq!(
        p.authorizations, 0,
        "an offline approval never reaches the host"
    );
    // Above the floor limit the same card goes online.
    let mut p = Pair::new("offline-approve", 5000, "", 16);
    assert_eq!(p.run().status, OutcomeStatus::Approved);
    assert_eq!(p.authorizations, 1);
}

#[test]
fn offline_approval_is_declined_without_store_and_forward() {
    let mut p = Pair::new("offline-approve", 4999, "", 15);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Declined, "{o:?}");
    assert_eq!(o.card.cryptogram_type.as_deref(), Some("TC"));
    assert!(o.approved_amount.is_none());
    assert_eq!(p.authorizations, 0);
}

#[test]
fn card_removed_after_approval_is_reversed() {
    let mut p = Pair::new("visa-cvn18", 1000, "", 8);
    p.remove_card_on_authorize = true;
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Reversed, "{o:?}");
    assert_eq!(p.reversals, [ReversalReason::CardRemoved]);
    assert!(!p.ledger_approved);
}

#[test]
fn card_removed_before_authorization_is_a_cancel() {
    let mut p = Pair::new("offline-pin", 1000, "remove-at=pin", 9);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Cancelled, "{o:?}");
    assert_eq!(p.authorizations, 0);
}

#[test]
fn customer_cancels_pin_entry() {
    let mut p = Pair::new("offline-pin", 1000, "cancel-at=pin", 10);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Cancelled, "{o:?}");
    assert_eq!(p.authorizations, 0);
}

#[test]
fn silent_host_ends_with_a_reversal_by_reference() {
    let mut p = Pair::new("visa-cvn18", 1000, "", 11);
    p.host_mode = HostMode::Silent;
    let o = p.run();
    assert_eq!(p.reversals, [ReversalReason::NoHostResponse]);
    assert_eq!(o.status, OutcomeStatus::Reversed, "{o:?}");
    assert_eq!(
        o.card.cryptogram_type.as_deref(),
        Some("AAC"),
        "the card was told Z3 and declined"
    );
}

#[test]
fn host_down_declines_with_z3() {
    let mut p = Pair::new("visa-cvn18", 1000, "", 12);
    p.host_mode = HostMode::Down;
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Declined, "{o:?}");
    assert_eq!(o.card.arc, Some(*b"Z3"));
    assert!(p.reversals.is_empty());
}

#[test]
fn reader_reboot_mid_transaction_ends_definitely() {
    // The reader reboots instead of answering E4: no response ever comes; the card timer
    // aborts, and since nothing was authorized, nothing is reversed.
    let mut p = Pair::new("visa-cvn18", 1000, "reboot-at=e4", 13);
    let o = p.run();
    assert!(
        matches!(o.status, OutcomeStatus::Cancelled | OutcomeStatus::Failed),
        "{o:?}"
    );
    assert_eq!(p.authorizations, 0);
    // Rebooting at the final answer after an approval: the approval is reversed.
    let mut p = Pair::new("visa-cvn18", 1000, "reboot-at=final", 14);
    let o = p.run();
    assert_eq!(o.status, OutcomeStatus::Reversed, "{o:?}");
    assert!(!p.ledger_approved);
}

#[test]
fn line_noise_never_leaves_money_in_doubt() {
    // Seeded corruption on the reader's output: whatever is lost, every sale ends in a
    // definite state, and an approval stands only if the card completed it.
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut corrupt = 0;
    for seed in 0..60u64 {
        let mut p = Pair::new(
            "visa-cvn18",
            1000 + seed,
            "corrupt-lrc=0.05,flip=0.002,drop=0.001,dup=0.05,split",
            seed,
        );
        let o = p.run();
        corrupt += p.corrupt_frames;
        assert_eq!(p.bad_arqc, 0, "seed {seed}: damaged data reached the host");
        *outcomes.entry(format!("{:?}", o.status)).or_default() += 1;
        match o.status {
            OutcomeStatus::Approved => assert!(p.ledger_approved, "seed {seed}"),
            _ => assert!(
                !p.ledger_approved || o.status == OutcomeStatus::Unresolved,
                "seed {seed}: {o:?}"
            ),
        }
    }
    eprintln!("line noise outcomes: {outcomes:?}, corrupt frames seen: {corrupt}");
    assert!(corrupt > 0, "the fault injector produced corruption");
    assert!(
        outcomes.get("Approved").copied().unwrap_or(0) > 0,
        "some sales still go through"
    );
}

#[test]
fn replaying_the_recorded_inputs_reproduces_the_outcome() {
    // What the benchmark of the bridge's own share measures must be the same work.
    for (card, amount) in [
        ("visa-cvn18", 1234),
        ("offline-pin", 1500),
        ("visa-cvn18", 1291),
    ] {
        let mut p = Pair::new(card, amount, "", 21);
        let o = p.run();
        let r = replay(request(amount), &p.recorded, p.now);
        assert_eq!(r.status, o.status, "{card} {amount}");
        assert_eq!(r.card, o.card);
    }
}
