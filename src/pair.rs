//! An in-process pair: the transaction state machine against the simulated reader's sans-IO
//! core and a scripted issuer host, on one thread and a virtual clock (quinn's `Pair` style).
//! Every byte goes through the protocol crate's framing both ways, cryptograms are real (the
//! host verifies the ARQC and answers with a real ARPC), and a stall fails loudly. Used by the
//! flow tests (`tests/txn_sim.rs`) and the benchmarks (`benches/txn.rs`).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use emvbridge_core::money::Money;
use emvbridge_core::txn::{
    AppChoice, AuthKind, AuthorizationResult, HostRequest, IssuerResponse, Outcome, Prompt,
    ReaderInput, Reference, ReversalReason, ReversalResult, Transaction, TxnConfig, TxnRequest,
};
use emvbridge_protocol::frame::{emit_message, Deframer, Inbound};
use emvbridge_sim::issuer;
use emvbridge_sim::reader::{SimConfig, SimReader};

/// How the scripted host answers authorizations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostMode {
    /// Verify the ARQC; approve unless the amount ends in .51 (NSF); `.91` → corrupt ARPC.
    Issuer,
    /// Never answer.
    Silent,
    /// Unreachable.
    Down,
}

/// The simulated reader, the transaction and the scripted host, on a virtual clock.
pub struct Pair {
    /// The virtual clock.
    pub now: Instant,
    /// The simulated reader's core.
    pub sim: SimReader,
    /// The transaction under test.
    pub txn: Transaction,
    /// Reassembles the reader's output.
    pub from_sim: Deframer,
    /// How the host answers.
    pub host_mode: HostMode,
    /// Host answers not yet delivered: (due, result).
    pub host_due: Vec<(Instant, HostAnswer)>,
    /// How long the host takes.
    pub host_latency: Duration,
    /// Prompts seen, in order.
    pub prompts: Vec<Prompt>,
    /// Authorization requests the host received.
    pub authorizations: usize,
    /// Reversals the host received, by reason.
    pub reversals: Vec<ReversalReason>,
    /// Corrupt frames the bridge side saw.
    pub corrupt_frames: usize,
    /// Approved by the scripted host and not reversed, by reference.
    pub ledger_approved: bool,
    /// Pull the card while the host is deciding.
    pub remove_card_on_authorize: bool,
    /// ARQCs the host could not verify.
    pub bad_arqc: usize,
    /// Everything the bridge side received, in order, for replay (see [`replay`]).
    pub recorded: Vec<Recorded>,
}

/// One input the bridge side received during a [`Pair::run`].
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Bytes from the reader.
    Wire(Bytes),
    /// The host's answer to the authorization.
    Auth(AuthorizationResult),
    /// The host's answer to a reversal.
    Reversal(ReversalResult),
}

/// An answer the scripted host will deliver.
pub enum HostAnswer {
    /// To an authorization.
    Auth(AuthorizationResult),
    /// To a reversal.
    Reversal(ReversalResult),
}

/// A sale request for `minor` US cents.
pub fn request(minor: u64) -> TxnRequest {
    TxnRequest {
        reference: Reference(format!("sim-{minor}")),
        kind: AuthKind::Sale,
        amount: Money::from_minor(minor, "USD").unwrap(),
        amount_other: 0,
        date: 261121,
        time: 101500,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
        pos_reference: None,
    }
}

impl Pair {
    /// A pair with `card` presented, a sale of `minor` cents, a fault spec and a seed.
    ///
    /// # Panics
    /// On a bad fault spec or card profile (test tooling).
    pub fn new(card: &str, minor: u64, faults: &str, seed: u64) -> Pair {
        Pair::with_config(card, minor, faults, seed, TxnConfig::default())
    }

    /// [`Pair::new`] with the transaction's `config` (e.g. store-and-forward allowed).
    ///
    /// # Panics
    /// On a bad fault spec or card profile (test tooling).
    pub fn with_config(
        card: &str,
        minor: u64,
        faults: &str,
        seed: u64,
        txn_config: TxnConfig,
    ) -> Pair {
        let now = Instant::now();
        let config = SimConfig {
            card: Some(card.to_owned()),
            seed,
            faults: faults.parse().expect("fault spec"),
            ..SimConfig::default()
        };
        let mut sim = SimReader::new(config, now);
        let txn = Transaction::start(now, request(minor), txn_config).unwrap();
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
            recorded: Vec::new(),
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
    /// Runs to the outcome.
    ///
    /// # Panics
    /// When nothing is left to happen before an outcome (a stall), or after 10 000 steps.
    pub fn run(&mut self) -> Outcome {
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
                    self.recorded.push(Recorded::Wire(bytes.clone()));
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
                    HostAnswer::Auth(r) => {
                        self.recorded.push(Recorded::Auth(r.clone()));
                        self.txn.handle_host(self.now, r)
                    }
                    HostAnswer::Reversal(r) => {
                        self.recorded.push(Recorded::Reversal(r.clone()));
                        self.txn.handle_reversal(self.now, r)
                    }
                }
            }
        }
        panic!("no outcome after 10 000 steps");
    }
}

/// Replays what a [`Pair::run`] recorded into a fresh transaction for the same request, doing
/// only the bridge's own work: framing commands, deframing the reader's bytes, the state
/// machine, and draining its outputs. No simulator, no cryptography: this is the bridge's
/// share of a sale, which the benchmarks measure.
///
/// # Panics
/// If the replay does not reach an outcome (the recording does not match the request).
pub fn replay(request: TxnRequest, recorded: &[Recorded], now: Instant) -> Outcome {
    let mut txn = Transaction::start(now, request, TxnConfig::default()).expect("valid request");
    let mut deframer = Deframer::new();
    let mut out = BytesMut::with_capacity(512);
    let drain = |txn: &mut Transaction, out: &mut BytesMut| {
        while let Some(cmd) = txn.poll_command() {
            out.clear();
            let _ = emit_message(0x01, false, &cmd, out);
        }
        while txn.poll_host().is_some() {}
        while txn.poll_event().is_some() {}
    };
    drain(&mut txn, &mut out);
    for r in recorded {
        match r {
            Recorded::Wire(bytes) => {
                deframer.push(bytes);
                while let Some(item) = deframer.poll() {
                    if let Inbound::Message(m) = item {
                        let input = if m.unsolicited {
                            ReaderInput::Unsolicited(m.payload)
                        } else {
                            ReaderInput::Response(m.payload)
                        };
                        txn.handle_reader(now, input);
                    }
                }
            }
            Recorded::Auth(a) => txn.handle_host(now, a.clone()),
            Recorded::Reversal(a) => txn.handle_reversal(now, a.clone()),
        }
        drain(&mut txn, &mut out);
        if let Some(o) = txn.poll_outcome() {
            return o;
        }
    }
    panic!("the replay did not reach an outcome");
}
