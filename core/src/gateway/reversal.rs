//! The reversal policy, sans-IO: how a transaction that must not stand is taken back.
//!
//! A [`Reversal`] is a small state machine. The HTTP edge asks it for the next [`Step`]
//! (look the transaction up, void it, refund it, or stop with a [`ReversalResult`]), performs
//! that step with the dialect's request builders, and feeds the answer back. The rules are the
//! same for every gateway; what differs per dialect is said by a [`ReversalPolicy`] and, for each
//! transaction found, by the [`Undo`] the gateway offers for it.
//!
//! Rules (shared by every dialect):
//! - a transaction the gateway does not know, or declined, moved no money: `NotFound`;
//! - voided or refunded: `Reversed`;
//! - still pending, or the lookup itself failed: `Failed` (ask again later, never assume);
//! - approved: undone by void or refund, as the gateway allows; a void refused after which a new
//!   lookup shows the transaction voided or refunded counts as reversed (`confirm_refusal`).

use crate::money::Money;
use crate::txn::host::{ReversalRequest, ReversalResult};

use super::ops::{OpResult, RefundRequest, StatusResult, TxnState, TxnStatus, VoidRequest};

/// What differs per dialect in the reversal flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReversalPolicy {
    /// Look the transaction up even when its gateway id is known (the lookup tells how the
    /// gateway can undo it: void an authorization, refund a sale). When `false` and the id is
    /// known, the first step is the void.
    pub lookup_first: bool,
    /// After a refused void, look the transaction up again: already voided or refunded counts as
    /// reversed.
    pub confirm_refusal: bool,
}

/// How the gateway can undo one approved transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// By a void (release of an uncaptured authorization, or same-day cancel).
    Void,
    /// By a refund of `amount` (the transaction's own amount when the gateway reported it; the
    /// requested amount otherwise).
    Refund {
        /// The amount the gateway reported for the transaction, when it did.
        amount: Option<Money>,
    },
    /// Not through the API: an operator must act.
    Never {
        /// Why.
        reason: &'static str,
    },
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Look the transaction up (by its gateway id when known and the dialect can, else by the
    /// bridge's reference); answer with [`Reversal::on_status`].
    LookUp,
    /// Void; answer with [`Reversal::on_undone`].
    Void(VoidRequest),
    /// Refund; answer with [`Reversal::on_undone`].
    Refund(RefundRequest),
    /// Finished.
    Done(ReversalResult),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Start,
    LookingUp,
    Undoing,
    /// A void was refused for `reason`; a second lookup tells whether it was already undone.
    Confirming {
        reason: String,
    },
    Done,
}

/// One reversal in progress.
#[derive(Debug, Clone)]
pub struct Reversal {
    req: ReversalRequest,
    policy: ReversalPolicy,
    phase: Phase,
}

impl Reversal {
    /// A reversal of `req` under `policy`; call [`Reversal::start`] for the first step.
    pub fn new(req: ReversalRequest, policy: ReversalPolicy) -> Reversal {
        Reversal {
            req,
            policy,
            phase: Phase::Start,
        }
    }

    /// The request being reversed.
    pub fn request(&self) -> &ReversalRequest {
        &self.req
    }

    /// The first step.
    pub fn start(&mut self) -> Step {
        debug_assert_eq!(self.phase, Phase::Start);
        match (&self.req.gateway_id, self.policy.lookup_first) {
            (Some(id), false) => {
                self.phase = Phase::Undoing;
                Step::Void(VoidRequest {
                    reference: self.req.reference.clone(),
                    gateway_id: id.clone(),
                })
            }
            _ => {
                self.phase = Phase::LookingUp;
                Step::LookUp
            }
        }
    }

    /// The answer to [`Step::LookUp`]; `undo` says how the gateway can undo the transaction
    /// found (ignored unless it is approved).
    pub fn on_status(&mut self, status: StatusResult, undo: Undo) -> Step {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        if let Phase::Confirming { reason } = phase {
            return Step::Done(match approved(status) {
                Err(ReversalResult::Reversed) => ReversalResult::Reversed,
                _ => ReversalResult::Failed { reason },
            });
        }
        let t = match approved(status) {
            Ok(t) => t,
            Err(done) => return Step::Done(done),
        };
        let gateway_id = t.gateway_id;
        let reference = self.req.reference.clone();
        match undo {
            Undo::Void => {
                self.phase = Phase::Undoing;
                Step::Void(VoidRequest {
                    reference,
                    gateway_id,
                })
            }
            Undo::Refund { amount } => {
                self.phase = Phase::Undoing;
                Step::Refund(RefundRequest {
                    reference,
                    gateway_id,
                    amount: amount.unwrap_or(self.req.amount),
                    pos_reference: None,
                })
            }
            Undo::Never { reason } => Step::Done(ReversalResult::Failed {
                reason: reason.into(),
            }),
        }
    }

    /// The answer to [`Step::Void`] or [`Step::Refund`].
    pub fn on_undone(&mut self, r: OpResult) -> Step {
        self.phase = Phase::Done;
        match r {
            OpResult::Refused { reason, .. } if self.policy.confirm_refusal => {
                self.phase = Phase::Confirming { reason };
                Step::LookUp
            }
            OpResult::Done { .. } => Step::Done(ReversalResult::Reversed),
            OpResult::NotFound => Step::Done(ReversalResult::NotFound),
            OpResult::Refused { reason, .. }
            | OpResult::Unavailable { reason }
            | OpResult::Unknown { reason } => Step::Done(ReversalResult::Failed { reason }),
            OpResult::Unsupported { reason } => Step::Done(ReversalResult::Failed {
                reason: reason.into(),
            }),
        }
    }
}

/// The approved transaction a lookup found, which must be undone; or the result the looked-up
/// state settles by itself.
fn approved(status: StatusResult) -> Result<TxnStatus, ReversalResult> {
    match status {
        StatusResult::NotFound => Err(ReversalResult::NotFound),
        StatusResult::Unknown { reason } => Err(ReversalResult::Failed { reason }),
        StatusResult::Found(t) => match t.state {
            TxnState::Voided | TxnState::Refunded => Err(ReversalResult::Reversed),
            TxnState::Declined => Err(ReversalResult::NotFound),
            TxnState::Pending => Err(ReversalResult::Failed {
                reason: "transaction still pending".into(),
            }),
            TxnState::Approved => Ok(t),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::host::{Reference, ReversalReason};

    fn req(id: Option<&str>) -> ReversalRequest {
        ReversalRequest {
            reference: Reference("r1".into()),
            gateway_id: id.map(str::to_owned),
            amount: Money::from_minor(1234, "USD").unwrap(),
            reason: ReversalReason::NoHostResponse,
        }
    }

    fn found(state: TxnState) -> StatusResult {
        StatusResult::Found(TxnStatus {
            gateway_id: "g1".into(),
            state,
            amount: None,
        })
    }

    const VOID_FIRST: ReversalPolicy = ReversalPolicy {
        lookup_first: false,
        confirm_refusal: true,
    };
    const LOOKUP_FIRST: ReversalPolicy = ReversalPolicy {
        lookup_first: true,
        confirm_refusal: false,
    };

    #[test]
    fn known_id_is_voided_at_once_unless_the_dialect_looks_first() {
        let mut r = Reversal::new(req(Some("g9")), VOID_FIRST);
        assert!(matches!(r.start(), Step::Void(v) if v.gateway_id == "g9"));
        assert_eq!(
            r.on_undone(OpResult::Done {
                gateway_id: "g9".into()
            }),
            Step::Done(ReversalResult::Reversed)
        );
        let mut r = Reversal::new(req(Some("g9")), LOOKUP_FIRST);
        assert_eq!(r.start(), Step::LookUp);
    }

    #[test]
    fn looked_up_states_settle_or_undo() {
        for (state, want) in [
            (TxnState::Voided, Some(ReversalResult::Reversed)),
            (TxnState::Refunded, Some(ReversalResult::Reversed)),
            (TxnState::Declined, Some(ReversalResult::NotFound)),
            (TxnState::Approved, None),
        ] {
            let mut r = Reversal::new(req(None), VOID_FIRST);
            assert_eq!(r.start(), Step::LookUp);
            let step = r.on_status(found(state), Undo::Void);
            match want {
                Some(w) => assert_eq!(step, Step::Done(w)),
                None => assert!(matches!(step, Step::Void(v) if v.gateway_id == "g1")),
            }
        }
        let mut r = Reversal::new(req(None), VOID_FIRST);
        let _ = r.start();
        assert!(matches!(
            r.on_status(found(TxnState::Pending), Undo::Void),
            Step::Done(ReversalResult::Failed { .. })
        ));
        let mut r = Reversal::new(req(None), VOID_FIRST);
        let _ = r.start();
        assert_eq!(
            r.on_status(StatusResult::NotFound, Undo::Void),
            Step::Done(ReversalResult::NotFound)
        );
    }

    #[test]
    fn refund_uses_the_reported_amount_and_never_is_an_operator_s() {
        let mut r = Reversal::new(req(Some("g1")), LOOKUP_FIRST);
        let _ = r.start();
        let ten = Money::from_minor(1000, "USD").unwrap();
        assert!(matches!(
            r.on_status(found(TxnState::Approved), Undo::Refund { amount: Some(ten) }),
            Step::Refund(f) if f.amount == ten
        ));
        let mut r = Reversal::new(req(None), LOOKUP_FIRST);
        let _ = r.start();
        assert!(matches!(
            r.on_status(found(TxnState::Approved), Undo::Refund { amount: None }),
            Step::Refund(f) if f.amount.minor() == 1234
        ));
        let mut r = Reversal::new(req(None), LOOKUP_FIRST);
        let _ = r.start();
        assert_eq!(
            r.on_status(found(TxnState::Approved), Undo::Never { reason: "no api" }),
            Step::Done(ReversalResult::Failed {
                reason: "no api".into()
            })
        );
    }

    #[test]
    fn a_refused_void_is_confirmed_by_a_second_lookup() {
        let refused = || OpResult::Refused {
            code: None,
            reason: "already voided".into(),
        };
        let mut r = Reversal::new(req(Some("g1")), VOID_FIRST);
        let _ = r.start();
        assert_eq!(r.on_undone(refused()), Step::LookUp);
        assert_eq!(
            r.on_status(found(TxnState::Voided), Undo::Void),
            Step::Done(ReversalResult::Reversed)
        );
        let mut r = Reversal::new(req(Some("g1")), VOID_FIRST);
        let _ = r.start();
        let _ = r.on_undone(refused());
        assert_eq!(
            r.on_status(found(TxnState::Approved), Undo::Void),
            Step::Done(ReversalResult::Failed {
                reason: "already voided".into()
            })
        );
        // Without confirmation, a refusal is a failure at once.
        let mut r = Reversal::new(req(Some("g1")), LOOKUP_FIRST);
        let _ = r.start();
        let _ = r.on_status(found(TxnState::Approved), Undo::Void);
        assert_eq!(
            r.on_undone(refused()),
            Step::Done(ReversalResult::Failed {
                reason: "already voided".into()
            })
        );
    }
}
