//! [`JournaledGateway`]: any [`Gateway`] with the journal in front of it. The row is written
//! (and fsynced) before the authorization leaves and updated after the answer; reversals and
//! follow-ups (refund, void, capture: rows of their own, [`super::ops`]) likewise. If the
//! journal cannot be written, the authorization is not sent. Journal calls run on blocking
//! threads ([`Journal::blocking`]), off the async executor.
//!
//! A reference is used once: an authorization whose reference names a row already is
//! refused before it leaves (declined, nothing sent) and its outcome does not touch the row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ops::{OpKind, OpStart, OpState};
use super::{Journal, JournalError, RelayState};
use crate::gateway::{
    BoxFuture, CaptureRequest, Dialect, Gateway, OpResult, RefundRequest, StatusResult, VoidRequest,
};
use emvbridge_core::gateway::arc_only;
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthorizationRequest, AuthorizationResult, Reference, ReversalRequest, ReversalResult,
};
use emvbridge_core::txn::Outcome;

/// Requests kept in memory for a possible offline approval (Y3); bounded.
const MAX_HELD: usize = 64;

/// A gateway whose every authorization and reversal is journaled.
pub struct JournaledGateway {
    inner: Arc<dyn Gateway>,
    journal: Arc<Journal>,
    /// Authorizations answered "unavailable": the card may still approve offline (Y3), and
    /// then the request is what store-and-forward replays. Held in memory only; written to
    /// the journal by [`JournaledGateway::record_outcome`] for an offline approval.
    held: Mutex<HashMap<Reference, AuthorizationRequest>>,
}

impl JournaledGateway {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Gateway>, journal: Arc<Journal>) -> JournaledGateway {
        JournaledGateway {
            inner,
            journal,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The wrapped gateway.
    pub fn inner(&self) -> &Arc<dyn Gateway> {
        &self.inner
    }

    /// Records the outcome the POS saw (see [`Journal::record_outcome`]); an offline
    /// approval is stored with the held authorization's ICC data.
    ///
    /// # Errors
    /// [`super::JournalError`].
    pub fn record_outcome(&self, outcome: &Outcome) -> Result<RelayState, super::JournalError> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&outcome.reference);
        self.journal
            .record_outcome(outcome, self.inner.dialect(), held.as_ref())
    }

    fn hold(&self, req: &AuthorizationRequest) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() >= MAX_HELD {
            h.clear();
        }
        h.insert(req.reference.clone(), req.clone());
    }
}

impl Gateway for JournaledGateway {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizationRequest,
    ) -> BoxFuture<'a, AuthorizationResult> {
        Box::pin(async move {
            let dialect = self.inner.dialect();
            let r = req.clone();
            match self
                .journal
                .blocking(move |j| j.begin_authorization(&r, dialect))
                .await
            {
                Ok(()) => {}
                Err(JournalError::ReferenceUsed) => {
                    tracing::warn!(reference = %req.reference, "authorization with a used reference refused; nothing sent");
                    return AuthorizationResult::Declined {
                        gateway_id: None,
                        code: Some(super::REFERENCE_USED.into()),
                        reason: "reference already used; nothing sent".into(),
                        issuer: arc_only(*b"05"),
                    };
                }
                Err(e) => {
                    tracing::error!(error = %e, reference = %req.reference, "journal write failed: authorization not sent");
                    // Declined, not unavailable: an unavailable host may let the card approve
                    // offline, and that sale could not be journaled either.
                    return AuthorizationResult::Declined {
                        gateway_id: None,
                        code: Some("journal_unavailable".into()),
                        reason: "journal unavailable; not sent".into(),
                        issuer: arc_only(*b"05"),
                    };
                }
            }
            let result = self.inner.authorize(req).await;
            if matches!(result, AuthorizationResult::Unavailable { .. }) {
                self.hold(req);
            }
            let (reference, answer) = (req.reference.clone(), result.clone());
            match self
                .journal
                .blocking(move |j| j.record_authorization(&reference, &answer))
                .await
            {
                // The row moved on (to a reversal, or settled by another writer) while the
                // answer was on its way: an approval is not handed to the card.
                Ok(state)
                    if state != RelayState::Approved
                        && matches!(result, AuthorizationResult::Approved { .. }) =>
                {
                    tracing::warn!(reference = %req.reference, %state, "approval arrived after the row moved on: not handed to the card");
                    AuthorizationResult::Unknown {
                        reason: format!("approval arrived after the row became {state}"),
                    }
                }
                Ok(_) => result,
                Err(e) => {
                    tracing::error!(error = %e, reference = %req.reference, "journal write failed after the answer");
                    match result {
                        // An approval we could not record must not be handed to the card:
                        // unknown makes the transaction reverse it.
                        AuthorizationResult::Approved { .. } => AuthorizationResult::Unknown {
                            reason: "approval not journaled".into(),
                        },
                        other => other,
                    }
                }
            }
        })
    }

    fn capture<'a>(&'a self, req: &'a CaptureRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(self.follow_up(
            OpKind::Capture,
            req.reference.clone(),
            req.gateway_id.clone(),
            req.amount,
            async move { self.inner.capture(req).await },
        ))
    }

    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            // A void has no reference of its own (it names the voided transaction): its
            // key is derived, so a second void of one transaction replays the first.
            let (r, g) = (req.reference.0.clone(), req.gateway_id.clone());
            let parent = self
                .journal
                .blocking(move |j| Ok(j.get(&r)?.or(j.by_gateway_id(&g)?)))
                .await
                .ok()
                .flatten();
            let amount = parent.and_then(|e| {
                let minor = u64::try_from(e.approved_minor.unwrap_or(e.amount_minor)).ok()?;
                Money::from_minor(minor, &e.currency).ok()
            });
            // The amount only informs the row (a void's bounds do not depend on it); a void
            // of a transaction the journal does not know is recorded with none.
            let Some(amount) = amount.or_else(|| Money::from_minor(0, "USD").ok()) else {
                return OpResult::Unavailable {
                    reason: "void: amount unreadable".into(),
                };
            };
            self.follow_up(
                OpKind::Void,
                Reference(format!("void:{}", req.reference.0)),
                req.gateway_id.clone(),
                amount,
                async move { self.inner.void(req).await },
            )
            .await
        })
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(self.follow_up(
            OpKind::Refund,
            req.reference.clone(),
            req.gateway_id.clone(),
            req.amount,
            async move { self.inner.refund(req).await },
        ))
    }

    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult> {
        Box::pin(async move {
            let dialect = self.inner.dialect();
            let r = req.clone();
            let begun = self
                .journal
                .blocking(move |j| {
                    let go = j.begin_reversal(&r, dialect)?;
                    Ok((go, j.get(&r.reference.0)?))
                })
                .await;
            let mut req = req.clone();
            match begun {
                Ok((false, row)) => {
                    return match row.map(|e| e.state) {
                        Some(RelayState::Reversed) => ReversalResult::Reversed,
                        _ => ReversalResult::Failed {
                            reason: "a stored sale is being forwarded; reversed after".into(),
                        },
                    };
                }
                Ok((true, Some(row))) => {
                    // "Reversed" means the whole amount is back: a partly refunded sale is
                    // taken back by refunding the rest, never by a void that reports all.
                    match super::ops::refund_rest(&self.journal, self.inner.as_ref(), &row).await {
                        Ok(Some(result)) => {
                            let (reference, res) = (req.reference.clone(), result.clone());
                            if let Err(e) = self
                                .journal
                                .blocking(move |j| j.record_reversal(&reference, &res))
                                .await
                            {
                                tracing::error!(error = %e, reference = %req.reference, "journal write failed after a refund of the rest");
                            }
                            return result;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, reference = %req.reference, "journal failed: reversal of a partly refunded sale not made");
                            return ReversalResult::Failed {
                                reason: "journal unavailable".into(),
                            };
                        }
                    }
                    // A late approval may have given the row its gateway id: address it.
                    if req.gateway_id.is_none() {
                        req.gateway_id = row.gateway_id;
                    }
                }
                Ok((true, None)) => {}
                Err(e) => {
                    // A reversal only ever gives money back: send it anyway.
                    tracing::error!(error = %e, reference = %req.reference, "journal write failed before a reversal");
                }
            }
            let r = self.inner.reverse(&req).await;
            let (reference, result) = (req.reference.clone(), r.clone());
            match self
                .journal
                .blocking(move |j| j.record_reversal(&reference, &result))
                .await
            {
                Ok(RelayState::Reversed) => ReversalResult::Reversed,
                Ok(RelayState::NotFound) => ReversalResult::NotFound,
                Ok(RelayState::ReversalFailed) if r == ReversalResult::NotFound => {
                    ReversalResult::Failed {
                        reason: "not found yet; the gateway may still process it".into(),
                    }
                }
                Ok(_) => r,
                Err(e) => {
                    tracing::error!(error = %e, reference = %req.reference, "journal write failed after a reversal");
                    match r {
                        // Not recorded: the window could not be checked; never assume.
                        ReversalResult::NotFound => ReversalResult::Failed {
                            reason: "not found; not journaled".into(),
                        },
                        other => other,
                    }
                }
            }
        })
    }

    fn status<'a>(
        &'a self,
        reference: &'a Reference,
        gateway_id: Option<&'a str>,
    ) -> BoxFuture<'a, StatusResult> {
        self.inner.status(reference, gateway_id)
    }
}

impl JournaledGateway {
    /// A follow-up: written (bounds checked) before it leaves, its answer recorded; a used
    /// reference replays the recorded outcome without sending anything.
    async fn follow_up(
        &self,
        op: OpKind,
        reference: Reference,
        parent: String,
        amount: Money,
        send: impl std::future::Future<Output = OpResult>,
    ) -> OpResult {
        let dialect = self.inner.dialect();
        let (r, p) = (reference.clone(), parent.clone());
        let start = self
            .journal
            .blocking(move |j| j.begin_op(op, &r, &p, amount, dialect))
            .await;
        match start {
            Ok(OpStart::Send) => {}
            Ok(OpStart::Refused(reason)) => {
                tracing::warn!(?op, %reference, reason, "follow-up refused by the local bounds");
                return OpResult::Refused {
                    code: Some("local_bounds".into()),
                    reason,
                };
            }
            Ok(OpStart::Replay(e)) => {
                tracing::info!(?op, %reference, state = ?e.state, "follow-up reference used before: replayed");
                return match e.state {
                    OpState::Done => OpResult::Done {
                        gateway_id: e.gateway_id.unwrap_or(parent),
                    },
                    OpState::Refused => OpResult::Refused {
                        code: None,
                        reason: e.reason.unwrap_or_else(|| "refused".into()),
                    },
                    OpState::NotProcessed => OpResult::Unavailable {
                        reason: e.reason.unwrap_or_else(|| "not processed".into()),
                    },
                    OpState::Sending | OpState::Unknown => OpResult::Unknown {
                        reason: "an earlier attempt's outcome is unknown; it is being looked up"
                            .into(),
                    },
                };
            }
            Err(e) => {
                tracing::error!(error = %e, ?op, %reference, "journal write failed: follow-up not sent");
                return OpResult::Unavailable {
                    reason: "journal unavailable; not sent".into(),
                };
            }
        }
        let result = send.await;
        let (r, res) = (reference.clone(), result.clone());
        if let Err(e) = self.journal.blocking(move |j| j.record_op(&r, &res)).await {
            tracing::error!(error = %e, ?op, %reference, "journal write failed after a follow-up's answer");
        }
        result
    }
}
