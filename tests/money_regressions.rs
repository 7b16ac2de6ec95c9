//! Named regressions: each way the relay once charged twice, lost a sale or reported money
//! returned that was not, replayed as a fixed schedule of the money model
//! (`tests/model/mod.rs`) against the real journal, with the invariants checked after the
//! drain and the specific outcome asserted.

mod model;

use std::sync::Arc;

use emvbridge::gateway::{Gateway, OffsetClock, OpResult, RefundRequest};
use emvbridge::journal::ops::OpState;
use emvbridge::journal::{Journal, RelayState};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::Reference;
use emvbridge_core::txn::OutcomeStatus;
use model::world::Fault;
use model::{runtime, CardEnd, During, Model, Op};

fn sale(slot: u8, minor: u64, fault: Fault, card: CardEnd, during: Vec<During>) -> Op {
    Op::Sale {
        slot,
        minor,
        fault,
        card,
        during,
    }
}

fn settle(m: &mut Model) {
    runtime().block_on(async {
        m.drain().await;
    });
    m.verify();
    assert!(m.violations.is_empty(), "{:#?}", m.violations);
}

fn play(ops: &[Op]) -> Model {
    let mut m = Model::new();
    runtime().block_on(async {
        for op in ops {
            m.step(op).await;
        }
    });
    m
}

fn state(m: &Model, reference: &str) -> RelayState {
    m.journal().get(reference).unwrap().unwrap().state
}

/// A sale the gateway processes after the bridge stopped waiting: the reversal finds
/// nothing yet. That is no answer: the POS is told "unresolved" (never "reversed"), the row
/// stays open, and once the late approval lands it is found and reversed.
#[test]
fn late_processing_is_never_reported_reversed() {
    let mut m = play(&[sale(0, 1234, Fault::Late(8), CardEnd::Completes, vec![])]);
    assert_eq!(m.told("s0"), Some(OutcomeStatus::Unresolved));
    assert!(m.world().pending("s0"), "the gateway still holds the sale");
    assert_eq!(state(&m, "s0"), RelayState::ReversalFailed);
    assert!(m.violations.is_empty(), "{:#?}", m.violations);
    settle(&mut m);
    assert_eq!(m.world().charged("s0"), (0, 0));
    assert_eq!(state(&m, "s0"), RelayState::Reversed);
}

/// Two forwarders (a background pass and a manual `resolve`, two processes on one journal)
/// on one stored sale: exactly one sends it.
#[test]
fn two_forwarders_charge_a_stored_sale_once() {
    let mut m = play(&[
        sale(0, 700, Fault::Unavailable, CardEnd::Completes, vec![]),
        Op::ConcurrentResolvers { secs: 0 },
    ]);
    assert_eq!(m.told("s0"), Some(OutcomeStatus::ApprovedOffline));
    assert_eq!(m.world().charged("s0"), (700, 1));
    assert_eq!(state(&m, "s0"), RelayState::Forwarded);
    settle(&mut m);
    assert_eq!(m.world().charged("s0"), (700, 1));
}

/// A refund whose answer is lost is not refunded again by a retry with a new request id:
/// the unknown refund has its own row, counts against what may still be refunded, and is
/// looked up.
#[test]
fn a_refund_whose_answer_is_lost_is_not_refunded_again() {
    let mut m = play(&[
        sale(0, 1000, Fault::None, CardEnd::Completes, vec![]),
        Op::Refund {
            slot: 0,
            pct: 100,
            fault: Fault::LostReply,
        },
    ]);
    let gid = m.journal().get("s0").unwrap().unwrap().gateway_id.unwrap();
    let again = runtime().block_on(m.gateway().refund(&RefundRequest {
        reference: Reference("s0-again".into()),
        gateway_id: gid,
        amount: Money::from_minor(1000, "USD").unwrap(),
        pos_reference: None,
    }));
    assert!(
        matches!(&again, OpResult::Refused { code: Some(c), .. } if c == "local_bounds"),
        "{again:?}"
    );
    assert_eq!(m.world().refunded("s0"), 1000, "refunded once");
    settle(&mut m);
    assert_eq!(m.world().refunded("s0"), 1000, "refunded once");
    assert_eq!(
        m.journal().op("s0-r1").unwrap().unwrap().state,
        OpState::Done,
        "found by lookup"
    );
    assert_eq!(
        state(&m, "s0"),
        RelayState::Reversed,
        "the whole amount is back"
    );
}

/// Reusing a sale reference (a new request id, another amount) neither approves without a
/// charge nor undoes the first, completed sale: the attempt is refused before it leaves.
#[test]
fn reusing_a_reference_neither_approves_nor_refunds() {
    let mut m = play(&[
        sale(0, 500, Fault::None, CardEnd::Completes, vec![]),
        sale(0, 900, Fault::None, CardEnd::Completes, vec![]),
        sale(1, 300, Fault::None, CardEnd::Completes, vec![During::Reuse]),
    ]);
    assert_eq!(m.told("s0"), Some(OutcomeStatus::Approved));
    assert_eq!(m.told("s1"), Some(OutcomeStatus::Approved));
    let e = m.journal().get("s0").unwrap().unwrap();
    assert_eq!((e.state, e.amount_minor), (RelayState::Approved, 500));
    assert!(e.pos_approved());
    assert!(m.violations.is_empty(), "{:#?}", m.violations);
    settle(&mut m);
    assert_eq!(m.world().charged("s0"), (500, 1));
    assert_eq!(m.world().charged("s1"), (300, 1));
}

/// Reversing a partly refunded sale refunds the rest, and says "reversed" only once the
/// whole amount is back.
#[test]
fn reversing_a_partly_refunded_sale_returns_the_rest() {
    let mut m = play(&[
        sale(0, 1000, Fault::None, CardEnd::Completes, vec![]),
        Op::Refund {
            slot: 0,
            pct: 30,
            fault: Fault::None,
        },
        Op::Reverse {
            slot: 0,
            fault: Fault::None,
        },
    ]);
    assert!(m.violations.is_empty(), "{:#?}", m.violations);
    assert_eq!(m.world().charged("s0"), (0, 0));
    assert_eq!(m.world().refunded("s0"), 1000);
    assert_eq!(state(&m, "s0"), RelayState::Reversed);
    let rest = m.journal().op("s0:rest").unwrap().unwrap();
    assert_eq!((rest.state, rest.amount_minor), (OpState::Done, 700));
    settle(&mut m);
}

/// A webhook (and another process's resolver) during a sale does not undo it: a row in
/// flight is never moved by them, and the sale's own writes are compare-and-sets.
#[test]
fn a_webhook_during_a_sale_does_not_undo_it() {
    let mut m = play(&[sale(
        0,
        4200,
        Fault::None,
        CardEnd::Completes,
        vec![During::Webhook, During::Resolver, During::Webhook],
    )]);
    assert_eq!(m.told("s0"), Some(OutcomeStatus::Approved));
    assert_eq!(state(&m, "s0"), RelayState::Approved);
    settle(&mut m);
    assert_eq!(m.world().charged("s0"), (4200, 1));
    assert_eq!(state(&m, "s0"), RelayState::Approved);
}

/// A reversal the POS asked for that did not go through is made again by the resolver,
/// never quietly marked approved.
#[test]
fn a_failed_pos_reversal_is_made_again_not_marked_approved() {
    let mut m = play(&[
        sale(0, 800, Fault::None, CardEnd::Completes, vec![]),
        Op::Reverse {
            slot: 0,
            fault: Fault::LostRequest,
        },
        Op::Resolve { secs: 10 },
    ]);
    settle(&mut m);
    assert_eq!(m.world().charged("s0"), (0, 0));
    assert_eq!(state(&m, "s0"), RelayState::Reversed);
}

/// A partial approval is the approved amount, not the requested one.
#[test]
fn a_partial_approval_is_what_was_approved() {
    let mut m = play(&[sale(0, 1000, Fault::Partial, CardEnd::Completes, vec![])]);
    assert_eq!(m.told("s0"), Some(OutcomeStatus::PartiallyApproved));
    assert_eq!(
        m.journal().get("s0").unwrap().unwrap().approved_minor,
        Some(500)
    );
    settle(&mut m);
    assert_eq!(m.world().charged("s0"), (500, 1));
}

/// Writers on several connections at once (several processes on one journal file): every
/// write lands, none is dropped as "database is locked".
#[test]
fn busy_journal_writes_are_retried_never_dropped() {
    let path = std::env::temp_dir().join(format!("emvb-busy-{}.db", std::process::id()));
    let clock = OffsetClock::new();
    let open = || Arc::new(Journal::open_with_clock(&path, Arc::new(clock.clone())).unwrap());
    let first = open();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let j = open();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = format!("evt-{t}-{i}");
                    j.record_webhook(&id, emvbridge::gateway::Dialect::Number, None, None, None)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..4 {
        for i in 0..50 {
            let again = first
                .record_webhook(
                    &format!("evt-{t}-{i}"),
                    emvbridge::gateway::Dialect::Number,
                    None,
                    None,
                    None,
                )
                .unwrap();
            assert_eq!(again, emvbridge::journal::WebhookRecord::Duplicate);
        }
    }
    drop(first);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
}
