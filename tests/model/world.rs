//! The world outside the bridge, in process: a gateway whose ledger (the sandbox's
//! [`Ledger`], the truth of who was charged what) is changed only by requests that reached
//! it, with the faults a real network and a real gateway have — a request lost on the way, a
//! reply lost after processing, processing that completes only later (after the bridge gave
//! up waiting, within the gateway's processing window), a decline, a partial approval, no
//! connection. It speaks like Number, the hardest of the three dialects: no idempotency on a
//! sale or a refund (a repeat charges again), lookups by the client reference, reversal by
//! lookup and void (the core's [`Reversal`] machine drives it, as the HTTP adapters do).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use emvbridge::gateway::{
    BoxFuture, CaptureRequest, Clock, Dialect, Gateway, OffsetClock, OpResult, RefundRequest,
    StatusResult, TxnState, TxnStatus, VoidRequest,
};
use emvbridge_core::gateway::arc_only;
use emvbridge_core::gateway::reversal::{Reversal, ReversalPolicy, Step, Undo};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, Reference, ReversalRequest, ReversalResult,
};
use emvbridge_sandbox::ledger::{self, Kind, Ledger, Txn};

/// What happens to the next request that reaches the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Processed and answered.
    None,
    /// Lost on the way: never processed, no answer.
    LostRequest,
    /// Processed, the answer lost.
    LostReply,
    /// Processed `secs` later (inside the processing window); no answer.
    Late(i64),
    /// No connection: certainly not processed.
    Unavailable,
    /// The issuer declines.
    Decline,
    /// The issuer approves half.
    Partial,
}

/// A sale the gateway will process later.
struct LateSale {
    due: i64,
    req: AuthorizationRequest,
}

/// Something a webhook can report: (client reference, gateway id, state word).
pub type Event = (String, String, String);

/// The world's gateway.
pub struct World {
    pub clock: OffsetClock,
    pub ledger: Mutex<Ledger>,
    late: Mutex<Vec<LateSale>>,
    faults: Mutex<VecDeque<Fault>>,
    /// Run while the next authorization is in flight (after processing, before the reply).
    during: Mutex<Option<BoxFuture<'static, ()>>>,
    /// Events for the webhook receiver, in the order the gateway emitted them.
    pub outbox: Mutex<Vec<Event>>,
    next_id: AtomicU64,
    /// Lookups still to fail (the lookup itself: no answer).
    failing_lookups: AtomicU64,
    /// Requests that reached the gateway.
    pub requests: AtomicU64,
}

const REVERSAL: ReversalPolicy = ReversalPolicy {
    lookup_first: true,
    confirm_refusal: true,
};

impl World {
    pub fn new(clock: OffsetClock) -> World {
        World {
            clock,
            ledger: Mutex::new(Ledger::default()),
            late: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            during: Mutex::new(None),
            outbox: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            failing_lookups: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// The fault for the next request (requests after it see none).
    pub fn push_fault(&self, f: Fault) {
        self.faults.lock().unwrap().push_back(f);
    }

    fn fault(&self) -> Fault {
        self.faults
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Fault::None)
    }

    /// The next `n` lookups fail (time out): the caller must ask again, never assume.
    pub fn fail_lookups(&self, n: u64) {
        self.failing_lookups.store(n, Ordering::Relaxed);
    }

    fn lookup_fails(&self) -> bool {
        self.failing_lookups
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Forgets faults no request consumed.
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// Runs `f` while the next authorization is in flight.
    pub fn set_during(&self, f: BoxFuture<'static, ()>) {
        *self.during.lock().unwrap() = Some(f);
    }

    /// Drops a hook no authorization ran.
    pub fn take_during(&self) {
        drop(self.during.lock().unwrap().take());
    }

    fn now(&self) -> i64 {
        self.clock.unix_now()
    }

    /// Processes late sales whose time has come.
    pub fn process_late(&self) {
        let now = self.now();
        let due: Vec<LateSale> = {
            let mut l = self.late.lock().unwrap();
            let (due, keep) = l.drain(..).partition(|s| s.due <= now);
            *l = keep;
            due
        };
        for s in due {
            self.process_sale(&s.req, Fault::None);
        }
    }

    /// Whether a sale with this reference is still to be processed.
    pub fn pending(&self, reference: &str) -> bool {
        self.late
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.req.reference.0 == reference)
    }

    fn id(&self) -> String {
        format!("T{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn emit(&self, t: &Txn) {
        if let Some(r) = &t.client_ref {
            let state = format!("{:?}", t.state).to_ascii_lowercase();
            self.outbox
                .lock()
                .unwrap()
                .push((r.clone(), t.id.clone(), state));
        }
    }

    fn process_sale(&self, req: &AuthorizationRequest, fault: Fault) -> Txn {
        let amount = i64::try_from(req.amount.minor()).unwrap_or(i64::MAX);
        let kind = match req.kind {
            AuthKind::PreAuth => Kind::Auth,
            _ => Kind::Sale,
        };
        let mut t = Txn::new(self.id(), Dialect::Number, kind, amount, "USD", self.now());
        t.client_ref = Some(req.reference.0.clone());
        t.entry = ledger::Entry::Emv;
        if fault == Fault::Decline {
            t.state = ledger::TxnState::Declined;
            t.resp_code = "05".into();
        } else {
            t.state = ledger::TxnState::Approved;
            t.resp_code = "00".into();
            t.approved_minor = if fault == Fault::Partial {
                (amount / 2).max(1)
            } else {
                amount
            };
            t.auth_code = Some("A1B2C3".into());
        }
        self.ledger.lock().unwrap().push(t.clone());
        self.emit(&t);
        t
    }

    fn find_by_ref(&self, reference: &str) -> Option<Txn> {
        self.ledger
            .lock()
            .unwrap()
            .by_client_ref(reference)
            .next()
            .cloned()
    }

    fn status_of(t: &Txn) -> StatusResult {
        let state = match t.state {
            ledger::TxnState::Approved | ledger::TxnState::PartiallyRefunded => TxnState::Approved,
            ledger::TxnState::Declined | ledger::TxnState::Error => TxnState::Declined,
            ledger::TxnState::Voided => TxnState::Voided,
            ledger::TxnState::Refunded => TxnState::Refunded,
            ledger::TxnState::Pending => TxnState::Pending,
        };
        StatusResult::Found(TxnStatus {
            gateway_id: t.id.clone(),
            state,
            amount: Money::from_minor(u64::try_from(t.approved_minor).unwrap_or(0), "USD").ok(),
        })
    }

    fn lookup(&self, reference: &str) -> StatusResult {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.process_late();
        if self.lookup_fails() {
            return StatusResult::Unknown {
                reason: "lookup timed out".into(),
            };
        }
        match self.find_by_ref(reference) {
            Some(t) => Self::status_of(&t),
            None => StatusResult::NotFound,
        }
    }

    fn lookup_id(&self, id: &str) -> StatusResult {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.process_late();
        if self.lookup_fails() {
            return StatusResult::Unknown {
                reason: "lookup timed out".into(),
            };
        }
        match self.ledger.lock().unwrap().get(id) {
            Some(t) => Self::status_of(t),
            None => StatusResult::NotFound,
        }
    }

    /// A follow-up with a fault: `apply` runs when the request is processed.
    fn follow_up(&self, apply: impl FnOnce(&World) -> OpResult) -> OpResult {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.process_late();
        match self.fault() {
            Fault::Unavailable => OpResult::Unavailable {
                reason: "connect failed".into(),
            },
            Fault::LostRequest | Fault::Late(_) => OpResult::Unknown {
                reason: "timeout".into(),
            },
            Fault::LostReply => {
                let _ = apply(self);
                OpResult::Unknown {
                    reason: "timeout".into(),
                }
            }
            _ => apply(self),
        }
    }

    /// A void; its ledger row's client reference is `{tag}:{reference}` (`void` for a
    /// follow-up, as the journal keys it; `rev` for a void a reversal made).
    fn do_void(&self, req: &VoidRequest, tag: &str) -> OpResult {
        let now = self.now();
        let id = self.id();
        let mut l = self.ledger.lock().unwrap();
        let Some(t) = l.get_mut(&req.gateway_id) else {
            return OpResult::NotFound;
        };
        if t.state != ledger::TxnState::Approved || t.refunded_minor > 0 || t.captured {
            return OpResult::Refused {
                code: Some("116".into()),
                reason: "not voidable".into(),
            };
        }
        t.state = ledger::TxnState::Voided;
        let parent = t.clone();
        let mut v = Txn::new(
            id.clone(),
            Dialect::Number,
            Kind::Void,
            parent.approved_minor,
            "USD",
            now,
        );
        v.parent = Some(parent.id.clone());
        v.client_ref = Some(format!("{tag}:{}", req.reference.0));
        v.state = ledger::TxnState::Approved;
        v.approved_minor = parent.approved_minor;
        l.push(v);
        drop(l);
        self.emit(&parent);
        OpResult::Done { gateway_id: id }
    }

    fn do_refund(&self, req: &RefundRequest) -> OpResult {
        let now = self.now();
        let id = self.id();
        let amount = i64::try_from(req.amount.minor()).unwrap_or(i64::MAX);
        let mut l = self.ledger.lock().unwrap();
        let Some(t) = l.get_mut(&req.gateway_id) else {
            return OpResult::NotFound;
        };
        if amount <= 0 || amount > t.refundable_minor() {
            return OpResult::Refused {
                code: Some("117".into()),
                reason: "amount exceeds the refundable".into(),
            };
        }
        t.refunded_minor += amount;
        t.state = if t.refunded_minor >= t.approved_minor {
            ledger::TxnState::Refunded
        } else {
            ledger::TxnState::PartiallyRefunded
        };
        let parent = t.clone();
        let mut r = Txn::new(
            id.clone(),
            Dialect::Number,
            Kind::Refund,
            amount,
            "USD",
            now,
        );
        r.parent = Some(parent.id.clone());
        r.client_ref = Some(req.reference.0.clone());
        r.state = ledger::TxnState::Approved;
        r.approved_minor = amount;
        l.push(r);
        drop(l);
        self.emit(&parent);
        OpResult::Done { gateway_id: id }
    }

    /// What the cardholder paid on `reference`'s sales, net of refunds (minor units), and
    /// how many of those sales hold money.
    pub fn charged(&self, reference: &str) -> (i64, usize) {
        let l = self.ledger.lock().unwrap();
        let mut net = 0;
        let mut charges = 0;
        for t in l.by_client_ref(reference) {
            if !matches!(t.kind, Kind::Sale | Kind::Auth) {
                continue;
            }
            let held = match t.state {
                ledger::TxnState::Approved
                | ledger::TxnState::PartiallyRefunded
                | ledger::TxnState::Refunded => t.approved_minor - t.refunded_minor,
                _ => 0,
            };
            if held > 0 {
                charges += 1;
            }
            net += held;
        }
        (net, charges)
    }

    /// Refunded on `reference`'s sales (minor units).
    pub fn refunded(&self, reference: &str) -> i64 {
        let l = self.ledger.lock().unwrap();
        l.by_client_ref(reference)
            .filter(|t| matches!(t.kind, Kind::Sale | Kind::Auth))
            .map(|t| t.refunded_minor)
            .sum()
    }

    /// Client references of every sale in the ledger.
    pub fn sale_refs(&self) -> Vec<String> {
        let l = self.ledger.lock().unwrap();
        let mut v: Vec<String> = l
            .all()
            .iter()
            .filter(|t| matches!(t.kind, Kind::Sale | Kind::Auth))
            .filter_map(|t| t.client_ref.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Gateway for World {
    fn dialect(&self) -> Dialect {
        Dialect::Number
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizationRequest,
    ) -> BoxFuture<'a, AuthorizationResult> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.process_late();
            let fault = self.fault();
            let processed = match fault {
                Fault::Unavailable | Fault::LostRequest => None,
                Fault::Late(secs) => {
                    self.late.lock().unwrap().push(LateSale {
                        due: self.now() + secs,
                        req: req.clone(),
                    });
                    None
                }
                f => Some(self.process_sale(req, f)),
            };
            let during = self.during.lock().unwrap().take();
            if let Some(f) = during {
                f.await;
            }
            match (fault, processed) {
                (Fault::Unavailable, _) => AuthorizationResult::Unavailable {
                    reason: "connect failed".into(),
                },
                (Fault::LostReply | Fault::LostRequest | Fault::Late(_), _) | (_, None) => {
                    AuthorizationResult::Unknown {
                        reason: "timeout".into(),
                    }
                }
                (_, Some(t)) if t.state == ledger::TxnState::Approved => {
                    AuthorizationResult::Approved {
                        gateway_id: t.id,
                        approved_amount: Money::from_minor(t.approved_minor as u64, "USD")
                            .unwrap_or(req.amount),
                        issuer: arc_only(*b"00"),
                    }
                }
                (_, Some(t)) => AuthorizationResult::Declined {
                    gateway_id: Some(t.id),
                    code: Some("05".into()),
                    reason: "do not honour".into(),
                    issuer: arc_only(*b"05"),
                },
            }
        })
    }

    fn capture<'a>(&'a self, _req: &'a CaptureRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            OpResult::Unsupported {
                reason: "no pre-authorizations in the model",
            }
        })
    }

    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.follow_up(|w| w.do_void(req, "void"))
        })
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.follow_up(|w| w.do_refund(req))
        })
    }

    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult> {
        Box::pin(async move {
            let mut plan = Reversal::new(req.clone(), REVERSAL);
            let mut step = plan.start();
            loop {
                step = match step {
                    Step::Done(r) => return r,
                    Step::LookUp => {
                        let s = match &req.gateway_id {
                            Some(id) => self.lookup_id(id),
                            None => self.lookup(&req.reference.0),
                        };
                        plan.on_status(s, Undo::Void)
                    }
                    Step::Void(v) => plan.on_undone(self.follow_up(|w| w.do_void(&v, "rev"))),
                    Step::Refund(f) => plan.on_undone(self.follow_up(|w| w.do_refund(&f))),
                };
            }
        })
    }

    fn status<'a>(
        &'a self,
        reference: &'a Reference,
        _gateway_id: Option<&'a str>,
    ) -> BoxFuture<'a, StatusResult> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.lookup(&reference.0)
        })
    }
}

/// A shared world.
pub type SharedWorld = Arc<World>;
