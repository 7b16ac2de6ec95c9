//! The transaction state machine against the simulated reader's sans-IO core and a scripted
//! issuer host, on one thread and a virtual clock (quinn's `Pair` style): every byte goes
//! through the protocol crate's framing both ways, cryptograms are real (the host verifies
//! the ARQC and answers with a real ARPC), and a stall fails loudly.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use emvbridge::money::Money;
use emvbridge::txn::{
    AppChoice, AuthKind, AuthorizationResult, HostRequest, IssuerResponse, Outcome, OutcomeStatus,
    Prompt, ReaderInput, Reference, ReversalReason, ReversalResult, Transaction, TxnConfig,
    TxnRequest,
};
use emvbridge_protocol::frame::{emit_message, Deframer, Inbound};
use emvbridge_sim::issuer;
use emvbridge_sim::reader::{SimConfig, SimReader};

/// How the scripted host answers authorizations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HostMode {
    /// Verify the ARQC; approve unless the amount ends in .51 (NSF); `.91` → corrupt ARPC.
    Issuer,
    /// Never answer.
    Silent,
    /// Unreachable.
    Down,
}

struct Pair {
    now: Instant,
    sim: SimReader,
    txn: Transaction,
    from_sim: Deframer,
    host_mode: HostMode,
    /// Host answers not yet delivered: (due, result).
    host_due: Vec<(Instant, HostAnswer)>,
    host_latency: Duration,
    prompts: Vec<Prompt>,
    authorizations: usize,
    reversals: Vec<ReversalReason>,
    corrupt_frames: usize,
    /// Approved by the scripted host and not reversed, by reference.
    ledger_approved: bool,
    /// Pull the card while the host is deciding.
    remove_card_on_authorize: bool,
    /// ARQCs the host could not verify.
    bad_arqc: usize,
}

enum HostAnswer {
    Auth(AuthorizationResult),
    Reversal(ReversalResult),
}

fn request(minor: u64) -> TxnRequest {
    TxnRequest {
        reference: Reference(format!("sim-{minor}")),
        kind: AuthKind::Sale,
        amount: Money::from_minor(minor, "USD").unwrap(),
        amount_other: 0,
        date: 261121,
        time: 101500,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
    }
}

impl Pair {
    fn new(card: &str, minor: u64, faults: &str, seed: u64) -> Pair {
        let now = Instant::now();
        let config = SimConfig {
            card: Some(card.to_owned()),
            seed,
            faults: faults.parse().expect("fault spec"),
            ..SimConfig::default()
        };
        let mut sim = SimReader::new(config, now);
        let txn = Transaction::start(now, request(minor), TxnConfig::default()).unwrap();
        // Drop the power-on notification: the link layer would route it to device status.
        while sim.poll_transmit(now).is_some() {}
        Pair {
            now,
            sim,
            txn,
            from_sim: Deframer::new(),
            host_mode: HostMode::Issuer,
            host_due: Vec::new(),
            host_latency: Duration::from_millis(80),
            prompts: Vec::new(),
            authorizations: 0,
            reversals: Vec::new(),
            corrupt_frames: 0,
            ledger_approved: false,
            remove_card_on_authorize: false,
            bad_arqc: 0,
        }
    }

    fn host_answer(&mut self, req: HostRequest) -> Option<HostAnswer> {
        match req {
            HostRequest::Authorize(a) => {
                self.authorizations += 1;
                match self.host_mode {
                    HostMode::Silent => None,
                    HostMode::Down => Some(HostAnswer::Auth(AuthorizationResult::Unavailable {
                        reason: "down".into(),
                    })),
                    HostMode::Issuer => {
                        if self.remove_card_on_authorize {
                            self.sim.remove_card(self.now);
                        }
                        let Ok(v) = issuer::verify_arqc(&a.icc_data) else {
                            // What a real issuer does with data it cannot verify.
                            self.bad_arqc += 1;
                            return Some(HostAnswer::Auth(AuthorizationResult::Declined {
                                gateway_id: None,
                                code: Some("05".into()),
                                reason: "cryptogram not verified".into(),
                                issuer: IssuerResponse {
                                    arc: *b"05",
                                    ..Default::default()
                                },
                            }));
                        };
                        assert_eq!(
                            v.amount,
                            a.amount.minor(),
                            "9F02 matches the requested amount"
                        );
                        let cents = a.amount.minor() % 100;
                        if cents == 51 {
                            let arc = *b"51";
                            return Some(HostAnswer::Auth(AuthorizationResult::Declined {
                                gateway_id: Some("gw".into()),
                                code: Some("51".into()),
                                reason: "insufficient funds".into(),
                                issuer: IssuerResponse {
                                    arc,
                                    issuer_auth_data: Some(Bytes::from(
                                        v.issuer_auth_data(arc, false),
                                    )),
                                    ..Default::default()
                                },
                            }));
                        }
                        self.ledger_approved = true;
                        Some(HostAnswer::Auth(AuthorizationResult::Approved {
                            gateway_id: "gw".into(),
                            approved_amount: a.amount,
                            issuer: IssuerResponse {
                                arc: *b"00",
                                issuer_auth_data: Some(Bytes::from(
                                    v.issuer_auth_data(*b"00", cents == 91),
                                )),
                                scripts: Bytes::new(),
                                auth_code: Some("A1B2C3".into()),
                            },
                        }))
                    }
                }
            }
            HostRequest::Reverse(r) => {
                self.reversals.push(r.reason);
                let was = std::mem::replace(&mut self.ledger_approved, false);
                Some(HostAnswer::Reversal(if was {
                    ReversalResult::Reversed
                } else {
                    ReversalResult::NotFound
                }))
            }
        }
    }

    /// Moves bytes and answers until the outcome, advancing the virtual clock; panics on a stall.
    fn run(&mut self) -> Outcome {
        for _ in 0..10_000 {
            let mut progressed = true;
            while progressed {
                progressed = false;
                while let Some(cmd) = self.txn.poll_command() {
                    let mut buf = BytesMut::new();
                    emit_message(0x01, false, &cmd, &mut buf).unwrap();
                    self.sim.handle_input(self.now, &buf);
                    progressed = true;
                }
                while let Some(bytes) = self.sim.poll_transmit(self.now) {
                    self.from_sim.push(&bytes);
                    progressed = true;
                }
                while let Some(item) = self.from_sim.poll() {
                    match item {
                        Inbound::Message(m) if m.unsolicited => self
                            .txn
                            .handle_reader(self.now, ReaderInput::Unsolicited(m.payload)),
                        Inbound::Message(m) => self
                            .txn
                            .handle_reader(self.now, ReaderInput::Response(m.payload)),
                        Inbound::Corrupt { .. } => self.corrupt_frames += 1,
                    }
                    progressed = true;
                }
                while let Some(req) = self.txn.poll_host() {
                    if let Some(answer) = self.host_answer(req) {
                        self.host_due.push((self.now + self.host_latency, answer));
                    }
                    progressed = true;
                }
                while let Some(p) = self.txn.poll_event() {
                    self.prompts.push(p);
                }
                if let Some(o) = self.txn.poll_outcome() {
                    return o;
                }
            }
            // Advance to the next thing that can happen.
            let next = [
                self.sim.poll_timeout(),
                self.txn.poll_timeout(),
                self.host_due.iter().map(|(at, _)| *at).min(),
                (self.from_sim.buffered() > 0).then(|| self.now + Duration::from_millis(200)),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("nothing left to happen: the transaction stalled");
            self.now = self.now.max(next);
            if self.from_sim.buffered() > 0 {
                if let Some(Inbound::Corrupt { .. }) = self.from_sim.discard_stalled() {
                    self.corrupt_frames += 1;
                }
            }
            self.sim.handle_timeout(self.now);
            self.txn.handle_timeout(self.now);
            let due: Vec<_> = {
                let now = self.now;
                let (due, later) = std::mem::take(&mut self.host_due)
                    .into_iter()
                    .partition(|(at, _)| *at <= now);
                self.host_due = later;
                due
            };
            for (_, answer) in due {
                match answer {
                    HostAnswer::Auth(r) => self.txn.handle_host(self.now, r),
                    HostAnswer::Reversal(r) => self.txn.handle_reversal(self.now, r),
                }
            }
        }
        panic!("no outcome after 10 000 steps");
    }
}

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
    let mut p = Pair::new("offline-approve", 4999, "", 15);
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
