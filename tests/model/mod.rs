//! A model of the world for the relay's money invariants: the real journal (SQLite, on
//! tmpfs when there is one), the real [`JournaledGateway`], resolver, forwarder and webhook
//! receiver, in front of an in-process gateway ([`world::World`]) whose ledger is the truth;
//! a POS that behaves as its contract says (retries an unknown follow-up with the same
//! reference, a refused one with a new one) and a transaction that follows the core's rules
//! (approved and completed → approved; unknown or declined by the card → reversal; reversal
//! confirmed → reversed, else unresolved). Time is virtual (the journal and the world share
//! an [`OffsetClock`]).
//!
//! [`Op`] is one step of a schedule; [`Model::run`] plays a schedule, drains it (time moves
//! past every window, late processing completes, every event is delivered, resolver passes
//! run until nothing is open) and checks the invariants:
//! - every approval the POS was told is charged exactly once (minus what the POS refunded,
//!   or all of it back when the POS voided or reversed it);
//! - every sale not completed is charged zero;
//! - "reversed" is said only when the whole amount is back (checked when it is said);
//! - the journal's final word equals the ledger's, for sales and for follow-ups;
//! - no orphans: every sale in the ledger has its journal row, nothing is left open.

#![allow(dead_code)]

pub mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use emvbridge::gateway::{Dialect, Gateway, OffsetClock, OpResult, RefundRequest, VoidRequest};
use emvbridge::journal::gateway::JournaledGateway;
use emvbridge::journal::ops::OpState;
use emvbridge::journal::resolver::{forward_once, resolve_once, ResolverPolicy};
use emvbridge::journal::{Journal, RelayState};
use emvbridge::webhooks::{apply_event, Receiver, WebhookConfig};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference, ReversalReason,
    ReversalRequest, ReversalResult,
};
use emvbridge_core::txn::{CardFacts, Outcome, OutcomeStatus};
use proptest::prelude::*;
use world::{Fault, World};

/// The gateway's processing window in the model, seconds.
pub const WINDOW: i64 = 120;

/// How long a sale in flight holds its row in the model, seconds. The model's resolvers run
/// with no minimum age: only the claim keeps them off a sale in flight.
pub const IN_FLIGHT: i64 = 30;

/// How the card ends a sale the gateway approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardEnd {
    /// The card completes (TC): the POS is told approved.
    Completes,
    /// The card declines at the second GENERATE AC: the transaction reverses.
    Declines,
    /// The process dies after the answer, before the POS is told anything.
    CrashBeforeOutcome,
    /// The process dies while the request is in flight: the answer is never recorded.
    CrashInFlight,
}

/// What runs while a sale's authorization is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum During {
    /// The gateway's webhook for the sale arrives.
    Webhook,
    /// A resolver pass (another process on the same journal, the configured minimum age).
    Resolver,
    /// A resolver pass with no minimum age (an operator's `resolve --min-age-secs 0` while a
    /// sale runs): it may act on the sale in flight; the money must still add up.
    ResolverNoAge,
    /// A forwarder pass (another process).
    Forwarder,
    /// The POS starts another sale with the same reference (a new request id).
    Reuse,
}

/// One step of a schedule. Slots name sale references (`s0`…): a sale on a used slot reuses
/// its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A sale.
    Sale {
        slot: u8,
        minor: u64,
        fault: Fault,
        card: CardEnd,
        during: Vec<During>,
    },
    /// A refund of `pct` % of the sale's approved amount; the follow-up may meet a fault.
    Refund { slot: u8, pct: u8, fault: Fault },
    /// The POS asks again about its unknown follow-ups of the sale (same references).
    RetryFollowUps { slot: u8 },
    /// A void of the sale.
    Void { slot: u8, fault: Fault },
    /// A reversal of the sale asked for by the POS.
    Reverse { slot: u8, fault: Fault },
    /// Delivers the `idx`-th event of the outbox (again: a duplicate; an old one: reordered).
    Webhook { idx: u8 },
    /// A resolver and forwarder pass after `secs`.
    Resolve { secs: u16 },
    /// Two resolver passes at once, on two connections (two processes).
    ConcurrentResolvers { secs: u16 },
    /// Time passes; late processing completes.
    Tick { secs: u16 },
    /// The bridge dies and restarts (in-memory state lost; the journal file stays).
    Crash,
    /// The gateway's next `n` lookups fail.
    LookupsFail { n: u8 },
}

/// What the POS learnt about one sale reference (the first attempt on it).
#[derive(Debug, Clone, Default)]
struct PosSale {
    /// What the POS was told, when it was told anything.
    told: Option<OutcomeStatus>,
    /// The approved amount it was told.
    approved: i64,
    /// Refunds the POS asked for and was told are done.
    refunded_done: i64,
    /// Refunds whose outcome the POS does not know: their references.
    unknown_refunds: Vec<(String, i64)>,
    /// The POS asked for a reversal (whatever the first answer: a reversal once asked for
    /// is made until the gateway confirms).
    reversal_asked: bool,
    /// A void was done.
    voided: bool,
    /// A void whose outcome is unknown (retried with the same key).
    unknown_void: bool,
}

impl PosSale {
    /// Whether the POS undid the sale (voided, or asked for its reversal).
    fn undone(&self) -> bool {
        self.reversal_asked || self.voided
    }
}

/// Counters over all schedules of a run.
#[derive(Debug, Default)]
pub struct Stats {
    pub schedules: AtomicU64,
    pub steps: AtomicU64,
    pub checks: AtomicU64,
    pub requests: AtomicU64,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn journal_path() -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!(
        "emvb-model-{}-{}.db",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

fn usd(minor: u64) -> Money {
    Money::from_minor(minor, "USD").unwrap()
}

fn policy() -> ResolverPolicy {
    ResolverPolicy {
        max_attempts: 1000,
        backoff_secs: 5,
        max_backoff_secs: 60,
        min_age_secs: IN_FLIGHT,
        interval_secs: 1,
        lease_secs: 30,
        processing_window_secs: WINDOW,
    }
}

/// The bridge under test and the world around it.
pub struct Model {
    clock: OffsetClock,
    world: Arc<World>,
    path: PathBuf,
    journal: Arc<Journal>,
    jg: Arc<JournaledGateway>,
    receiver: Arc<Receiver>,
    /// A second connection: another process on the same journal.
    other: Arc<Journal>,
    pos: BTreeMap<String, PosSale>,
    next_op: u64,
    /// Violations found (each a sentence).
    pub violations: Vec<String>,
    /// Invariant checks made.
    pub checks: u64,
    /// Steps played.
    pub steps: u64,
}

impl Drop for Model {
    fn drop(&mut self) {
        // A hook never run (its sale was refused before it left) holds the journals and the
        // world in a cycle: break it, or every such schedule leaks open files.
        self.world.take_during();
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.path.display()));
        }
    }
}

fn open(path: &std::path::Path, clock: &OffsetClock) -> Arc<Journal> {
    let j = Journal::open_with_clock(path, Arc::new(clock.clone())).unwrap();
    j.set_processing_window(WINDOW);
    j.run_inline(true);
    j.set_in_flight(IN_FLIGHT);
    Arc::new(j)
}

impl Model {
    pub fn new() -> Model {
        let clock = OffsetClock::new();
        let world = Arc::new(World::new(clock.clone()));
        let path = journal_path();
        let journal = open(&path, &clock);
        let other = open(&path, &clock);
        let jg = Arc::new(JournaledGateway::new(world.clone(), journal.clone()));
        let receiver = Arc::new(Receiver {
            journal: journal.clone(),
            config: WebhookConfig::default(),
            gateways: vec![world.clone()],
        });
        Model {
            clock,
            world,
            path,
            journal,
            jg,
            receiver,
            other,
            pos: BTreeMap::new(),
            next_op: 0,
            violations: Vec::new(),
            checks: 0,
            steps: 0,
        }
    }

    /// The journal (first connection).
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The world.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// The journaled gateway (as the POS API and the engine use it).
    pub fn gateway(&self) -> &Arc<JournaledGateway> {
        &self.jg
    }

    /// What the POS was told about the first sale on `reference`.
    pub fn told(&self, reference: &str) -> Option<OutcomeStatus> {
        self.pos.get(reference).and_then(|p| p.told)
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.violations.push(what());
        }
    }

    fn crash(&mut self) {
        self.journal = open(&self.path, &self.clock);
        self.other = open(&self.path, &self.clock);
        self.jg = Arc::new(JournaledGateway::new(
            self.world.clone(),
            self.journal.clone(),
        ));
        self.receiver = Arc::new(Receiver {
            journal: self.journal.clone(),
            config: WebhookConfig::default(),
            gateways: vec![self.world.clone()],
        });
    }

    fn request(reference: &str, minor: u64) -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference(reference.into()),
            kind: AuthKind::Sale,
            amount: usd(minor),
            amount_other: usd(0),
            entry_mode: EntryMode::Chip,
            icc_data: Bytes::from_static(&[0x9F, 0x02, 0x01, 0x00]),
            masked_pan: "476173******0010".into(),
            last4: Some("0010".into()),
            brand: Some("visa".into()),
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        }
    }

    fn outcome(
        reference: &str,
        minor: u64,
        status: OutcomeStatus,
        approved: Option<Money>,
        gid: Option<String>,
        code: Option<String>,
    ) -> Outcome {
        Outcome {
            reference: Reference(reference.into()),
            kind: AuthKind::Sale,
            status,
            amount: usd(minor),
            approved_amount: approved,
            gateway_id: gid,
            auth_code: None,
            decline_code: code,
            reason: None,
            reversal: None,
            card: CardFacts::default(),
            final_data: None,
            pos_reference: None,
        }
    }

    /// What the transaction tells the POS after a reversal (the core's rule).
    fn after_reversal(r: &ReversalResult) -> OutcomeStatus {
        match r {
            ReversalResult::Reversed | ReversalResult::NotFound => OutcomeStatus::Reversed,
            ReversalResult::Failed { .. } => OutcomeStatus::Unresolved,
        }
    }

    /// "Reversed" must be true when said: nothing held, nothing still to be processed.
    fn check_reversed_is_true(&mut self, reference: &str, told: OutcomeStatus, when: &str) {
        if told != OutcomeStatus::Reversed {
            return;
        }
        let (net, _) = self.world.charged(reference);
        let pending = self.world.pending(reference);
        self.check(net == 0 && !pending, || {
            format!("{reference}: told reversed ({when}) while {net} is held (late processing pending: {pending})")
        });
    }

    fn during_hook(
        &self,
        reference: &str,
        minor: u64,
        during: &[During],
    ) -> emvbridge::gateway::BoxFuture<'static, ()> {
        let during = during.to_vec();
        let other = self.other.clone();
        let world = self.world.clone();
        let receiver = Arc::new(Receiver {
            journal: self.other.clone(),
            config: WebhookConfig::default(),
            gateways: vec![self.world.clone()],
        });
        let jg = self.jg.clone();
        let reference = reference.to_owned();
        Box::pin(async move {
            for d in during {
                match d {
                    During::Webhook => {
                        let ev = world
                            .outbox
                            .lock()
                            .unwrap()
                            .iter()
                            .rev()
                            .find(|e| e.0 == reference)
                            .cloned();
                        if let Some((r, g, s)) = ev {
                            let _ = apply_event(
                                &receiver,
                                Dialect::Number,
                                &format!("{g}:{s}"),
                                Some(r),
                                Some(g),
                                Some(s),
                            )
                            .await;
                        }
                    }
                    During::Resolver => {
                        let now = other.now();
                        let _ = resolve_once(&other, world.as_ref(), &policy(), now).await;
                    }
                    During::ResolverNoAge => {
                        let now = other.now();
                        let p = ResolverPolicy {
                            min_age_secs: 0,
                            ..policy()
                        };
                        let _ = resolve_once(&other, world.as_ref(), &p, now).await;
                    }
                    During::Forwarder => {
                        let now = other.now();
                        let _ = forward_once(&other, world.as_ref(), &policy(), now).await;
                    }
                    During::Reuse => {
                        let req = Model::request(&reference, minor + 1);
                        let r = jg.authorize(&req).await;
                        let AuthorizationResult::Declined { code, .. } = r else {
                            panic!("{reference}: a reused reference was sent: {r:?}");
                        };
                        let o = Model::outcome(
                            &reference,
                            minor + 1,
                            OutcomeStatus::Declined,
                            None,
                            None,
                            code,
                        );
                        let _ = jg.record_outcome(&o);
                    }
                }
            }
        })
    }

    async fn sale(&mut self, slot: u8, minor: u64, fault: Fault, card: CardEnd, during: &[During]) {
        let reference = format!("s{slot}");
        let first = !self.pos.contains_key(&reference);
        let req = Self::request(&reference, minor);
        self.world.clear_faults();
        self.world.push_fault(fault);
        if !during.is_empty() {
            let hook = self.during_hook(&reference, minor, during);
            self.world.set_during(hook);
        }
        if card == CardEnd::CrashInFlight {
            // Written, sent, and the process dies before the answer is recorded.
            if self
                .journal
                .begin_authorization(&req, Dialect::Number)
                .is_ok()
            {
                let _ = self.world.authorize(&req).await;
            }
            self.crash();
            if first {
                self.pos.insert(reference, PosSale::default());
            }
            return;
        }
        let result = self.jg.authorize(&req).await;
        // Not run when the sale was refused before it left: it belongs to this sale only.
        self.world.take_during();
        let mut code = None;
        let (status, approved, gid) = match result {
            AuthorizationResult::Approved {
                gateway_id,
                approved_amount,
                ..
            } => match card {
                CardEnd::Completes => {
                    let st = if approved_amount.minor() < minor {
                        OutcomeStatus::PartiallyApproved
                    } else {
                        OutcomeStatus::Approved
                    };
                    (st, Some(approved_amount), Some(gateway_id))
                }
                CardEnd::Declines => {
                    let rev = ReversalRequest {
                        reference: req.reference.clone(),
                        gateway_id: Some(gateway_id.clone()),
                        amount: approved_amount,
                        reason: ReversalReason::CardDeclinedAfterApproval,
                    };
                    let r = self.jg.reverse(&rev).await;
                    (Self::after_reversal(&r), None, Some(gateway_id))
                }
                CardEnd::CrashBeforeOutcome | CardEnd::CrashInFlight => {
                    self.crash();
                    if first {
                        self.pos.insert(reference, PosSale::default());
                    }
                    return;
                }
            },
            AuthorizationResult::Declined { code: c, .. } => {
                code = c;
                (OutcomeStatus::Declined, None, None)
            }
            // Unreachable: the card approves offline (Y3) when it completes and the
            // merchant's store-and-forward allows it (always, in the model).
            AuthorizationResult::Unavailable { .. } if card == CardEnd::Completes => {
                (OutcomeStatus::ApprovedOffline, Some(usd(minor)), None)
            }
            AuthorizationResult::Unavailable { .. } => (OutcomeStatus::Declined, None, None),
            AuthorizationResult::Unknown { .. } => {
                let rev = ReversalRequest {
                    reference: req.reference.clone(),
                    gateway_id: None,
                    amount: req.amount,
                    reason: ReversalReason::NoHostResponse,
                };
                let r = self.jg.reverse(&rev).await;
                (Self::after_reversal(&r), None, None)
            }
        };
        let o = Self::outcome(&reference, minor, status, approved, gid, code);
        if let Err(e) = self.jg.record_outcome(&o) {
            self.check(false, || format!("{reference}: outcome not journaled: {e}"));
        }
        self.check_reversed_is_true(&reference, status, "sale");
        if first {
            self.pos.insert(
                reference,
                PosSale {
                    told: Some(status),
                    approved: approved.map(|m| m.minor() as i64).unwrap_or(0),
                    ..PosSale::default()
                },
            );
        } else {
            self.check(!status.is_approved(), || {
                format!("{reference}: a sale with a used reference was told {status:?}")
            });
        }
    }

    fn approved_sale(&self, slot: u8) -> Option<(String, String, i64)> {
        let reference = format!("s{slot}");
        let p = self.pos.get(&reference)?;
        if !p.told.is_some_and(|t| t.is_approved()) || p.undone() {
            return None;
        }
        let gid = self.journal.get(&reference).ok()??.gateway_id?;
        Some((reference, gid, p.approved))
    }

    async fn refund(&mut self, slot: u8, pct: u8, fault: Fault) {
        let Some((reference, gid, approved)) = self.approved_sale(slot) else {
            return;
        };
        let amount = (approved * i64::from(pct) / 100).max(1);
        self.next_op += 1;
        let op_ref = format!("{reference}-r{}", self.next_op);
        self.world.clear_faults();
        self.world.push_fault(fault);
        let r = self
            .jg
            .refund(&RefundRequest {
                reference: Reference(op_ref.clone()),
                gateway_id: gid,
                amount: usd(amount as u64),
                pos_reference: None,
            })
            .await;
        let p = self.pos.get_mut(&reference).unwrap();
        match r {
            OpResult::Done { .. } => p.refunded_done += amount,
            OpResult::Unknown { .. } => p.unknown_refunds.push((op_ref, amount)),
            _ => {}
        }
    }

    async fn retry_follow_ups(&mut self, slot: u8) {
        let reference = format!("s{slot}");
        let Some(p) = self.pos.get(&reference).cloned() else {
            return;
        };
        let Some(gid) = self
            .journal
            .get(&reference)
            .ok()
            .flatten()
            .and_then(|e| e.gateway_id)
        else {
            return;
        };
        self.world.clear_faults();
        let mut still = Vec::new();
        let mut done = 0;
        for (op_ref, amount) in p.unknown_refunds {
            let r = self
                .jg
                .refund(&RefundRequest {
                    reference: Reference(op_ref.clone()),
                    gateway_id: gid.clone(),
                    amount: usd(amount as u64),
                    pos_reference: None,
                })
                .await;
            match r {
                OpResult::Done { .. } => done += amount,
                OpResult::Unknown { .. } => still.push((op_ref, amount)),
                _ => {}
            }
        }
        let mut void_unknown = p.unknown_void;
        let mut voided = p.voided;
        if void_unknown {
            let r = self
                .jg
                .void(&VoidRequest {
                    reference: Reference(reference.clone()),
                    gateway_id: gid,
                })
                .await;
            void_unknown = matches!(r, OpResult::Unknown { .. });
            voided = matches!(r, OpResult::Done { .. });
        }
        let p = self.pos.get_mut(&reference).unwrap();
        p.unknown_refunds = still;
        p.refunded_done += done;
        p.unknown_void = void_unknown;
        p.voided = voided;
    }

    async fn void(&mut self, slot: u8, fault: Fault) {
        let Some((reference, gid, _)) = self.approved_sale(slot) else {
            return;
        };
        self.world.clear_faults();
        self.world.push_fault(fault);
        let r = self
            .jg
            .void(&VoidRequest {
                reference: Reference(reference.clone()),
                gateway_id: gid,
            })
            .await;
        let p = self.pos.get_mut(&reference).unwrap();
        match r {
            OpResult::Done { .. } => {
                p.voided = true;
                self.check_reversed_is_true(&reference, OutcomeStatus::Reversed, "void");
            }
            OpResult::Unknown { .. } => p.unknown_void = true,
            _ => {}
        }
    }

    async fn reverse(&mut self, slot: u8, fault: Fault) {
        let Some((reference, gid, approved)) = self.approved_sale(slot) else {
            return;
        };
        self.world.clear_faults();
        self.world.push_fault(fault);
        let r = self
            .jg
            .reverse(&ReversalRequest {
                reference: Reference(reference.clone()),
                gateway_id: Some(gid),
                amount: usd(approved as u64),
                reason: ReversalReason::Cancelled,
            })
            .await;
        // Asked for: made until confirmed, whatever this first answer said.
        self.pos.get_mut(&reference).unwrap().reversal_asked = true;
        let told = Self::after_reversal(&r);
        self.check_reversed_is_true(&reference, told, "pos reversal");
    }

    async fn webhook(&mut self, idx: u8) {
        let ev = {
            let o = self.world.outbox.lock().unwrap();
            if o.is_empty() {
                return;
            }
            o[usize::from(idx) % o.len()].clone()
        };
        let (r, g, s) = ev;
        let _ = apply_event(
            &self.receiver,
            Dialect::Number,
            &format!("{g}:{s}"),
            Some(r),
            Some(g),
            Some(s),
        )
        .await;
    }

    async fn resolve(&mut self, secs: u16) {
        self.clock.advance(i64::from(secs));
        self.world.clear_faults();
        let now = self.journal.now();
        let p = policy();
        if let Err(e) = forward_once(&self.journal, self.world.as_ref(), &p, now).await {
            self.check(false, || format!("forwarder failed: {e}"));
        }
        if let Err(e) = resolve_once(&self.journal, self.world.as_ref(), &p, now).await {
            self.check(false, || format!("resolver failed: {e}"));
        }
    }

    async fn concurrent(&mut self, secs: u16) {
        self.clock.advance(i64::from(secs));
        self.world.clear_faults();
        let now = self.journal.now();
        let p = policy();
        let (a, b) = (self.journal.clone(), self.other.clone());
        let w: &dyn Gateway = self.world.as_ref();
        let (x, y) = tokio::join!(
            async {
                forward_once(&a, w, &p, now).await?;
                resolve_once(&a, w, &p, now).await
            },
            async {
                forward_once(&b, w, &p, now).await?;
                resolve_once(&b, w, &p, now).await
            }
        );
        for r in [x, y] {
            if let Err(e) = r {
                self.check(false, || format!("concurrent resolver failed: {e}"));
            }
        }
    }

    /// Plays one step.
    pub async fn step(&mut self, op: &Op) {
        self.steps += 1;
        match op {
            Op::Sale {
                slot,
                minor,
                fault,
                card,
                during,
            } => self.sale(*slot, *minor, *fault, *card, during).await,
            Op::Refund { slot, pct, fault } => self.refund(*slot, *pct, *fault).await,
            Op::RetryFollowUps { slot } => self.retry_follow_ups(*slot).await,
            Op::Void { slot, fault } => self.void(*slot, *fault).await,
            Op::Reverse { slot, fault } => self.reverse(*slot, *fault).await,
            Op::Webhook { idx } => self.webhook(*idx).await,
            Op::Resolve { secs } => self.resolve(*secs).await,
            Op::ConcurrentResolvers { secs } => self.concurrent(*secs).await,
            Op::Tick { secs } => {
                self.clock.advance(i64::from(*secs));
                self.world.process_late();
            }
            Op::Crash => self.crash(),
            Op::LookupsFail { n } => self.world.fail_lookups(u64::from(*n)),
        }
    }

    /// Lets the world settle: windows close, late processing completes, every event is
    /// delivered, the POS asks about its unknown follow-ups, resolver passes run until
    /// nothing is open.
    pub async fn drain(&mut self) {
        self.world.clear_faults();
        self.world.fail_lookups(0);
        for round in 0..60 {
            self.clock.advance(WINDOW + 61);
            self.world.process_late();
            let events = self.world.outbox.lock().unwrap().len();
            for i in 0..events {
                let ev = self.world.outbox.lock().unwrap()[i].clone();
                let (r, g, s) = ev;
                let _ = apply_event(
                    &self.receiver,
                    Dialect::Number,
                    &format!("{g}:{s}"),
                    Some(r),
                    Some(g),
                    Some(s),
                )
                .await;
            }
            let slots: Vec<u8> = self
                .pos
                .keys()
                .filter_map(|k| k[1..].parse().ok())
                .collect();
            for s in slots {
                self.retry_follow_ups(s).await;
            }
            let now = self.journal.now();
            let p = policy();
            let _ = forward_once(&self.journal, self.world.as_ref(), &p, now).await;
            let _ = resolve_once(&self.journal, self.world.as_ref(), &p, now).await;
            let open = self.journal.unresolved().map(|v| v.len()).unwrap_or(1)
                + self
                    .journal
                    .open_ops(now + 1_000_000, 0)
                    .map(|v| v.len())
                    .unwrap_or(1)
                + self
                    .pos
                    .values()
                    .map(|p| p.unknown_refunds.len() + usize::from(p.unknown_void))
                    .sum::<usize>();
            if open == 0 && round > 0 {
                break;
            }
        }
    }

    /// Checks the invariants after [`Model::drain`].
    pub fn verify(&mut self) {
        let pos = self.pos.clone();
        for (reference, p) in &pos {
            let (net, charges) = self.world.charged(reference);
            let row = self.journal.get(reference).ok().flatten();
            let told_approved = p.told.is_some_and(|t| t.is_approved());
            let expected = if told_approved && !p.undone() {
                p.approved - p.refunded_done
            } else {
                0
            };
            self.check(net == expected, || {
                format!("{reference}: ledger holds {net}, expected {expected} (told {:?}, approved {}, refunded {}, undone {}); journal {:?}",
                    p.told, p.approved, p.refunded_done, p.undone(), row.as_ref().map(|e| e.state))
            });
            self.check(charges <= 1, || {
                format!("{reference}: charged {charges} times")
            });
            self.check(p.unknown_refunds.is_empty() && !p.unknown_void, || {
                format!("{reference}: follow-ups still unknown to the POS after the drain")
            });
            // The ledger refunded what the POS was told was refunded, no more.
            if told_approved && !p.undone() {
                let refunded = self.world.refunded(reference);
                self.check(refunded == p.refunded_done, || {
                    format!(
                        "{reference}: ledger refunded {refunded}, the POS was told {}",
                        p.refunded_done
                    )
                });
            }
            // The journal's final word.
            match &row {
                None => self.check(net == 0, || {
                    format!("{reference}: charged {net} without a journal row")
                }),
                Some(e) => {
                    let charged_word =
                        matches!(e.state, RelayState::Approved | RelayState::Forwarded);
                    if p.told == Some(OutcomeStatus::ApprovedOffline)
                        && !p.undone()
                        && p.refunded_done < p.approved
                    {
                        self.check(e.state == RelayState::Forwarded, || {
                            format!("{reference}: approved offline, journal says {}", e.state)
                        });
                    }
                    let zero_word = matches!(
                        e.state,
                        RelayState::Reversed
                            | RelayState::NotFound
                            | RelayState::Declined
                            | RelayState::Closed
                            | RelayState::Unavailable
                    );
                    self.check((charged_word && net > 0) || (zero_word && net == 0), || {
                        format!(
                            "{reference}: journal says {} while the ledger holds {net}",
                            e.state
                        )
                    });
                    if told_approved {
                        self.check(e.pos_approved(), || {
                            format!(
                                "{reference}: the journal does not say the POS was told approved"
                            )
                        });
                    }
                }
            }
        }
        // Follow-ups: the journal's word on each equals the ledger's.
        let follow_ups: Vec<_> = self
            .world
            .ledger
            .lock()
            .unwrap()
            .all()
            .iter()
            .filter(|t| t.parent.is_some())
            .cloned()
            .collect();
        for r in follow_ups {
            let Some(key) = r.client_ref.clone() else {
                continue;
            };
            if !key.contains("-r") && !key.starts_with("void:") {
                continue;
            }
            let op = self.journal.op(&key).ok().flatten();
            self.check(
                op.as_ref().is_some_and(|o| o.state == OpState::Done),
                || {
                    format!(
                        "{key}: done at the gateway, journal says {:?}",
                        op.as_ref().map(|o| o.state)
                    )
                },
            );
        }
        // No orphans: every sale in the ledger has its row; nothing left open.
        for r in self.world.sale_refs() {
            let known = self.journal.get(&r).ok().flatten().is_some();
            self.check(known, || format!("{r}: in the ledger, not in the journal"));
        }
        let open = self.journal.unresolved().unwrap_or_default();
        self.check(open.is_empty(), || {
            format!(
                "rows left open: {:?}",
                open.iter()
                    .map(|e| (&e.reference, e.state))
                    .collect::<Vec<_>>()
            )
        });
    }

    /// Plays `ops`, drains and verifies; returns the violations.
    pub async fn run(ops: &[Op]) -> Model {
        let mut m = Model::new();
        for op in ops {
            m.step(op).await;
        }
        m.drain().await;
        m.verify();
        m
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

/// Faults, weighted towards the ones that make outcomes ambiguous.
pub fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::None),
        2 => Just(Fault::LostReply),
        1 => Just(Fault::LostRequest),
        2 => (1i64..WINDOW - 1).prop_map(Fault::Late),
        1 => Just(Fault::Unavailable),
        1 => Just(Fault::Decline),
        1 => Just(Fault::Partial),
    ]
}

fn card() -> impl Strategy<Value = CardEnd> {
    prop_oneof![
        6 => Just(CardEnd::Completes),
        2 => Just(CardEnd::Declines),
        1 => Just(CardEnd::CrashBeforeOutcome),
        1 => Just(CardEnd::CrashInFlight),
    ]
}

fn during() -> impl Strategy<Value = Vec<During>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => proptest::collection::vec(
            prop_oneof![
                Just(During::Webhook),
                Just(During::Resolver),
                Just(During::ResolverNoAge),
                Just(During::Forwarder),
                Just(During::Reuse),
            ],
            1..3
        ),
    ]
}

const SLOTS: u8 = 4;

/// One step.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SLOTS, 1u64..5000, fault(), card(), during())
            .prop_map(|(slot, minor, fault, card, during)| Op::Sale { slot, minor, fault, card, during }),
        2 => (0..SLOTS, 1u8..=100, fault()).prop_map(|(slot, pct, fault)| Op::Refund { slot, pct, fault }),
        1 => (0..SLOTS).prop_map(|slot| Op::RetryFollowUps { slot }),
        1 => (0..SLOTS, fault()).prop_map(|(slot, fault)| Op::Void { slot, fault }),
        1 => (0..SLOTS, fault()).prop_map(|(slot, fault)| Op::Reverse { slot, fault }),
        2 => any::<u8>().prop_map(|idx| Op::Webhook { idx }),
        2 => (0u16..400).prop_map(|secs| Op::Resolve { secs }),
        1 => (0u16..400).prop_map(|secs| Op::ConcurrentResolvers { secs }),
        1 => (0u16..200).prop_map(|secs| Op::Tick { secs }),
        1 => Just(Op::Crash),
        1 => (1u8..4).prop_map(|n| Op::LookupsFail { n }),
    ]
}

/// A schedule.
pub fn schedule() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..14)
}

/// A runtime for one schedule: current-thread (steps interleave only where the code awaits),
/// with the blocking pool the journal uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
