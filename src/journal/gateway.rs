//! [`JournaledGateway`]: any [`Gateway`] with the journal in front of it. The row is written
//! (and fsynced) before the authorization leaves and updated after the answer; reversals
//! likewise. If the journal cannot be written, the authorization is not sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Journal, RelayState};
use crate::gateway::{
    BoxFuture, CaptureRequest, Dialect, Gateway, OpResult, RefundRequest, StatusResult, VoidRequest,
};
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
            if let Err(e) = self.journal.begin_authorization(req, self.inner.dialect()) {
                tracing::error!(error = %e, reference = %req.reference, "journal write failed: authorization not sent");
                return AuthorizationResult::Unavailable {
                    reason: "journal unavailable; not sent".into(),
                };
            }
            let result = self.inner.authorize(req).await;
            if matches!(result, AuthorizationResult::Unavailable { .. }) {
                self.hold(req);
            }
            match self.journal.record_authorization(&req.reference, &result) {
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
        Box::pin(async move {
            let r = self.inner.capture(req).await;
            let _ = self
                .journal
                .note(&req.reference, &format!("capture: {}", op_text(&r)));
            r
        })
    }

    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let r = self.inner.void(req).await;
            if matches!(r, OpResult::Done { .. }) {
                let _ = self
                    .journal
                    .set_state(&req.reference, RelayState::Reversed, "voided");
            } else {
                let _ = self
                    .journal
                    .note(&req.reference, &format!("void: {}", op_text(&r)));
            }
            r
        })
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let r = self.inner.refund(req).await;
            let _ = self
                .journal
                .note(&req.reference, &format!("refund: {}", op_text(&r)));
            r
        })
    }

    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult> {
        Box::pin(async move {
            if let Err(e) = self.journal.begin_reversal(req, self.inner.dialect()) {
                // A reversal only ever gives money back: send it anyway.
                tracing::error!(error = %e, reference = %req.reference, "journal write failed before a reversal");
            }
            let r = self.inner.reverse(req).await;
            if let Err(e) = self.journal.record_reversal(&req.reference, &r) {
                tracing::error!(error = %e, reference = %req.reference, "journal write failed after a reversal");
            }
            r
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

fn op_text(r: &OpResult) -> String {
    match r {
        OpResult::Done { gateway_id } => format!("done ({gateway_id})"),
        OpResult::Refused { reason, .. } => format!("refused: {reason}"),
        OpResult::NotFound => "not found".into(),
        OpResult::Unavailable { reason } => format!("unavailable: {reason}"),
        OpResult::Unknown { reason } => format!("unknown: {reason}"),
        OpResult::Unsupported { reason } => format!("unsupported: {reason}"),
    }
}
