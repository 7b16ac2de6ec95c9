//! The resolver and the store-and-forward forwarder.
//!
//! Every row whose outcome is unknown — left `sending` by a crash between send and receive,
//! `unknown` after a timeout or a dropped connection, `approved` at the gateway but never told
//! to the POS, `reversal_due`/`reversal_failed` after a card decline, a lost reader or a
//! reversal that did not go through — is resolved by the gateway's status lookup, and
//! reversed until the gateway says reversed or not found (the rule triPOS, Shift4 and Adyen
//! document and leave to the integrator). Attempts are bounded with exponential backoff; a
//! row that runs out becomes `escalated` and is logged at error level. A payment the POS was
//! told was approved (and the card completed) is never reversed.
//!
//! Store-and-forward: [`SafLimits::allows`] decides before a sale starts whether the card may
//! approve offline when the gateway is unreachable (`TxnConfig::offline_fallback`, ARC `Y3`);
//! [`forward_once`] replays each stored authorization with the same reference once the
//! gateway answers, and records each result (a decline on forward is reported loudly).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::{Entry, Journal, JournalError, RelayState};
use crate::gateway::{Gateway, StatusResult, TxnState};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, Reference, ReversalReason,
    ReversalRequest,
};

/// Resolver policy.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverPolicy {
    /// Attempts per row before it is escalated.
    pub max_attempts: u32,
    /// First backoff, seconds; doubles per attempt, with up to a quarter added as jitter.
    pub backoff_secs: i64,
    /// Longest backoff, seconds.
    pub max_backoff_secs: i64,
    /// Rows touched more recently than this are left alone (a transaction may still be in
    /// flight on them). Longer than the longest transaction.
    pub min_age_secs: i64,
    /// Pause between background passes, seconds.
    pub interval_secs: u64,
    /// How long a claim on a row lasts, seconds: longer than one resolution (lookups and a
    /// reversal); a resolver that crashed holding a row frees it after this.
    pub lease_secs: i64,
    /// How long after a request the gateway may still process it, seconds: a lookup that
    /// finds nothing before then is asked again, never taken as "nothing moved".
    pub processing_window_secs: i64,
}

impl Default for ResolverPolicy {
    fn default() -> Self {
        ResolverPolicy {
            max_attempts: 10,
            backoff_secs: 30,
            max_backoff_secs: 3600,
            min_age_secs: 300,
            interval_secs: 30,
            lease_secs: 300,
            processing_window_secs: super::DEFAULT_PROCESSING_WINDOW_SECS,
        }
    }
}

impl ResolverPolicy {
    fn backoff(&self, attempts: i64) -> i64 {
        let shift = attempts.clamp(0, 30) as u32;
        self.backoff_secs
            .max(1)
            .saturating_mul(1i64 << shift)
            .min(self.max_backoff_secs.max(1))
    }

    /// The backoff plus jitter (up to a quarter more) derived from the reference, so that
    /// rows failing together are not all asked again in the same second, and a run is
    /// reproducible.
    fn backoff_jittered(&self, reference: &str, attempts: i64) -> i64 {
        use std::hash::{Hash, Hasher};
        let base = self.backoff(attempts);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (reference, attempts).hash(&mut h);
        let spread = (base / 4).max(1);
        base + i64::try_from(h.finish() % spread.unsigned_abs()).unwrap_or(0)
    }
}

/// Store-and-forward limits of the merchant. Disabled unless configured.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafLimits {
    /// Whether offline approval may be offered at all.
    pub enabled: bool,
    /// Largest single sale that may be stored, minor units.
    pub max_amount_minor: u64,
    /// Most stored sales outstanding at once.
    pub max_count: u64,
    /// Longest a stored sale may wait for forwarding, seconds, before no further offline
    /// approval is offered (the gateway has been away too long for more risk); 0: no limit.
    pub max_age_secs: i64,
    /// Largest total outstanding, minor units (per currency).
    pub max_total_minor: u64,
}

impl SafLimits {
    /// Whether a sale of `amount` may complete offline if the gateway is unreachable, given
    /// what is already stored. Sales only (a refund or pre-authorization is never stored);
    /// whether the chip itself is offline-capable is the card's decision at `Y3`.
    ///
    /// # Errors
    /// [`JournalError`] reading the stored totals.
    pub fn allows(
        &self,
        journal: &Arc<Journal>,
        kind: AuthKind,
        amount: Money,
    ) -> Result<bool, JournalError> {
        if !self.enabled || kind != AuthKind::Sale || amount.minor() > self.max_amount_minor {
            return Ok(false);
        }
        let (count, total) = journal.stored_totals(amount.currency().alpha)?;
        if count >= self.max_count || total.saturating_add(amount.minor()) > self.max_total_minor {
            return Ok(false);
        }
        if self.max_age_secs > 0 {
            if let Some(oldest) = journal.oldest_stored_at()? {
                if journal.now().saturating_sub(oldest) > self.max_age_secs {
                    tracing::warn!(
                        oldest,
                        max_age_secs = self.max_age_secs,
                        "a stored sale has waited too long: no offline approval"
                    );
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// What one resolver pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// Rows settled (reversed, not found, declined, approved-and-told, forwarded…).
    pub settled: Vec<(String, RelayState)>,
    /// Rows still open, to be retried.
    pub retry: Vec<String>,
    /// Rows that ran out of attempts in this pass.
    pub escalated: Vec<String>,
    /// Store-and-forward declines in this pass.
    pub forward_declined: Vec<String>,
}

/// A journal call on a blocking thread ([`Journal::blocking`]); the listed variables are
/// cloned into it.
macro_rules! db {
    ($journal:expr, [$($v:ident),*], $j:ident => $body:expr) => {{
        $(let $v = $v.clone();)*
        $journal.blocking(move |$j| $body).await
    }};
}

fn reference(e: &Entry) -> Reference {
    Reference(e.reference.clone())
}

fn amount(e: &Entry) -> Option<Money> {
    let minor = u64::try_from(e.approved_minor.unwrap_or(e.amount_minor)).ok()?;
    Money::from_minor(minor, &e.currency).ok()
}

/// One pass over the rows that need resolution, through `gateway` (only rows of its
/// dialect). `now` is Unix seconds. Each row is claimed first; a row another resolver holds
/// (or that changed since it was read) is skipped.
///
/// # Errors
/// [`JournalError`] when the journal cannot be read or written.
pub async fn resolve_once(
    journal: &Arc<Journal>,
    gateway: &dyn Gateway,
    policy: &ResolverPolicy,
    now: i64,
) -> Result<PassReport, JournalError> {
    journal.set_processing_window(policy.processing_window_secs);
    let mut report = PassReport::default();
    let dialect = super::dialect_str(gateway.dialect());
    let min_age = policy.min_age_secs;
    for e in db!(journal, [], j => j.due(now, min_age))? {
        if e.dialect != dialect {
            continue;
        }
        let r = reference(&e);
        let (state, lease) = (e.state, policy.lease_secs);
        if !db!(journal, [r], j => j.claim(&r, state, lease, min_age))? {
            continue;
        }
        // One span per row resolved: its lookups and reversal are children of it in a trace.
        let span = tracing::info_span!("resolve", reference = %e.reference, state = %e.state,
            attempt = e.resolve_attempts + 1);
        let settled = async {
            Ok::<_, JournalError>(match e.state {
                RelayState::Forwarding => resolve_forwarding(journal, gateway, &e).await?,
                RelayState::Approved if e.pos_approved() => {
                    // Guard: never reverse what the card completed (the query excludes it).
                    db!(journal, [r], j => j.release(&r))?;
                    Some(RelayState::Approved)
                }
                RelayState::Approved => {
                    // Approved at the gateway, never told to the POS (crash): reverse.
                    reverse(journal, gateway, &e, ReversalReason::NoCardResponse).await?
                }
                RelayState::Sending | RelayState::Unknown => {
                    resolve_unknown(journal, gateway, &e, now).await?
                }
                // Due, or asked for by the POS: made until the gateway confirms.
                RelayState::ReversalDue | RelayState::ReversalFailed => {
                    reverse(journal, gateway, &e, ReversalReason::NoHostResponse).await?
                }
                _ => None,
            })
        }
        .instrument(span.clone())
        .await?;
        match settled {
            Some(s) => {
                tracing::info!(parent: &span, settled = %s, "resolved");
                report.settled.push((e.reference.clone(), s));
            }
            None => {
                let attempts = e.resolve_attempts + 1;
                let next = now.saturating_add(policy.backoff_jittered(&e.reference, attempts));
                db!(journal, [r], j => j.note_attempt(&r, next))?;
                let window_open = now < e.created_at.saturating_add(policy.processing_window_secs);
                if attempts >= i64::from(policy.max_attempts) && !window_open {
                    tracing::error!(reference = %e.reference, dialect = %e.dialect, state = %e.state, attempts,
                        "RESOLVER GAVE UP: transaction could not be resolved; needs an operator");
                    db!(journal, [r], j => {
                        let cur = j.get(&r.0)?.map(|x| x.state);
                        if let Some(cur) = cur.filter(|c| c.needs_resolution()) {
                            j.transition(
                                &r,
                                &[cur],
                                RelayState::Escalated,
                                &format!("gave up after {attempts} attempts in state {cur}"),
                            )?;
                        }
                        Ok(())
                    })?;
                    report.escalated.push(e.reference.clone());
                } else {
                    report.retry.push(e.reference.clone());
                }
            }
        }
    }
    resolve_ops(journal, gateway, policy, now, &mut report).await?;
    Ok(report)
}

/// Follow-ups (refund, void, capture) whose answer was lost: looked up by their own
/// reference, never re-sent.
async fn resolve_ops(
    journal: &Arc<Journal>,
    gateway: &dyn Gateway,
    policy: &ResolverPolicy,
    now: i64,
    report: &mut PassReport,
) -> Result<(), JournalError> {
    let dialect = super::dialect_str(gateway.dialect());
    let min_age = policy.min_age_secs;
    for op in db!(journal, [], j => j.open_ops(now, min_age))? {
        if op.dialect != dialect {
            continue;
        }
        let r = Reference(op.reference.clone());
        let next = now.saturating_add(policy.backoff_jittered(&op.reference, 1));
        let span = tracing::info_span!("resolve_follow_up", reference = %op.reference);
        let found = gateway.status(&r, None).instrument(span.clone()).await;
        match found {
            StatusResult::Found(t)
                if t.state != TxnState::Pending && t.state != TxnState::Declined =>
            {
                let done = crate::gateway::OpResult::Done {
                    gateway_id: t.gateway_id,
                };
                let s = db!(journal, [r], j => j.record_op(&r, &done))?;
                report.settled.push((op.reference.clone(), settled_op(s)));
            }
            StatusResult::Found(t) if t.state == TxnState::Declined => {
                let refused = crate::gateway::OpResult::Refused {
                    code: None,
                    reason: "declined (by lookup)".into(),
                };
                let s = db!(journal, [r], j => j.record_op(&r, &refused))?;
                report.settled.push((op.reference.clone(), settled_op(s)));
            }
            StatusResult::NotFound => match db!(journal, [r], j => j.settle_op(&r, true, next))? {
                super::ops::OpState::NotProcessed => report
                    .settled
                    .push((op.reference.clone(), RelayState::NotFound)),
                _ => report.retry.push(op.reference.clone()),
            },
            _ => {
                db!(journal, [r], j => j.settle_op(&r, false, next))?;
                report.retry.push(op.reference.clone());
            }
        }
    }
    Ok(())
}

fn settled_op(s: super::ops::OpState) -> RelayState {
    match s {
        super::ops::OpState::Done => RelayState::Approved,
        super::ops::OpState::Refused | super::ops::OpState::NotProcessed => RelayState::Declined,
        _ => RelayState::Unknown,
    }
}

/// `sending`/`unknown`: look it up; declined settles it; absent settles it once the
/// gateway's processing window has closed (before that, absent is no answer); found approved
/// and never told to the POS as approved: reverse.
async fn resolve_unknown(
    journal: &Arc<Journal>,
    gateway: &dyn Gateway,
    e: &Entry,
    now: i64,
) -> Result<Option<RelayState>, JournalError> {
    let r = reference(e);
    let from = [e.state];
    match gateway.status(&r, e.gateway_id.as_deref()).await {
        StatusResult::NotFound
            if now < e.created_at.saturating_add(journal.processing_window()) =>
        {
            db!(journal, [r], j => j.note(&r, "status: not found yet; the gateway may still process it"))?;
            Ok(None)
        }
        StatusResult::NotFound => {
            settle(
                journal,
                &r,
                &from,
                RelayState::NotFound,
                "status: not found after the processing window",
            )
            .await
        }
        StatusResult::Unknown { reason } => {
            db!(journal, [r], j => j.note(&r, &format!("status lookup failed: {reason}")))?;
            Ok(None)
        }
        StatusResult::Found(t) => {
            let gid = t.gateway_id.clone();
            db!(journal, [r], j => j.note_gateway_id(&r, &gid))?;
            match t.state {
                TxnState::Declined => {
                    settle(journal, &r, &from, RelayState::Declined, "status: declined").await
                }
                TxnState::Voided | TxnState::Refunded => {
                    settle(
                        journal,
                        &r,
                        &from,
                        RelayState::Reversed,
                        "status: already reversed",
                    )
                    .await
                }
                TxnState::Pending => {
                    db!(journal, [r], j => j.note(&r, "status: pending"))?;
                    Ok(None)
                }
                TxnState::Approved => {
                    let mut e = e.clone();
                    e.gateway_id = Some(t.gateway_id.clone());
                    if let Some(a) = t.amount {
                        e.approved_minor = Some(i64::try_from(a.minor()).unwrap_or(i64::MAX));
                    }
                    reverse(journal, gateway, &e, ReversalReason::NoHostResponse).await
                }
            }
        }
    }
}

/// A compare-and-set that settles a claimed row; `None` (try again) if it moved meanwhile.
async fn settle(
    journal: &Arc<Journal>,
    r: &Reference,
    from: &[RelayState],
    to: RelayState,
    why: &'static str,
) -> Result<Option<RelayState>, JournalError> {
    let from = from.to_vec();
    Ok(db!(journal, [r], j => j.transition(&r, &from, to, why))?.then_some(to))
}

async fn reverse(
    journal: &Arc<Journal>,
    gateway: &dyn Gateway,
    e: &Entry,
    reason: ReversalReason,
) -> Result<Option<RelayState>, JournalError> {
    let r = reference(e);
    let Some(amount) = amount(e) else {
        db!(journal, [r], j => j.note(&r, "amount or currency unreadable; cannot reverse"))?;
        return Ok(None);
    };
    let req = ReversalRequest {
        reference: r.clone(),
        gateway_id: e.gateway_id.clone(),
        amount,
        reason,
    };
    let dialect = gateway.dialect();
    if !db!(journal, [req], j => j.begin_reversal(&req, dialect))? {
        let cur = db!(journal, [r], j => j.get(&r.0))?.map(|x| x.state);
        return Ok(cur.filter(|c| *c == RelayState::Reversed));
    }
    let result = match super::ops::refund_rest(journal, gateway, e).await? {
        Some(r) => r,
        None => gateway.reverse(&req).await,
    };
    let state = db!(journal, [r, result], j => j.record_reversal(&r, &result))?;
    tracing::info!(reference = %e.reference, state = %state, "resolver: reversal");
    Ok(match state {
        RelayState::Reversed | RelayState::NotFound => Some(state),
        _ => None,
    })
}

/// A forward whose answer was lost: look it up.
async fn resolve_forwarding(
    journal: &Arc<Journal>,
    gateway: &dyn Gateway,
    e: &Entry,
) -> Result<Option<RelayState>, JournalError> {
    let r = reference(e);
    let from = [RelayState::Forwarding];
    match gateway.status(&r, e.gateway_id.as_deref()).await {
        StatusResult::NotFound
            if e.updated_at.saturating_add(journal.processing_window()) <= journal.now() =>
        {
            settle(
                journal,
                &r,
                &from,
                RelayState::Stored,
                "forward not received; stored again",
            )
            .await
        }
        StatusResult::Found(t) if t.state == TxnState::Approved => {
            let gid = t.gateway_id.clone();
            db!(journal, [r], j => j.note_gateway_id(&r, &gid))?;
            settle(
                journal,
                &r,
                &from,
                RelayState::Forwarded,
                "forward approved (by lookup)",
            )
            .await
        }
        StatusResult::Found(t) if t.state != TxnState::Pending => {
            let gid = t.gateway_id.clone();
            db!(journal, [r], j => j.note_gateway_id(&r, &gid))?;
            tracing::error!(reference = %e.reference, "STORED SALE DECLINED ON FORWARD: the merchant approved it offline");
            settle(
                journal,
                &r,
                &from,
                RelayState::ForwardDeclined,
                "forward declined (by lookup)",
            )
            .await
        }
        _ => Ok(None),
    }
}

/// Forwards every stored sale of `gateway`'s dialect: claims it (`stored` → `forwarding`,
/// one compare-and-set: of two forwarders exactly one sends it), replays the stored
/// authorization with the same reference (so the gateway's idempotency applies) and records
/// the result.
///
/// # Errors
/// [`JournalError`].
pub async fn forward_once(
    journal: &Arc<Journal>,
    gateway: &dyn Gateway,
    policy: &ResolverPolicy,
    now: i64,
) -> Result<PassReport, JournalError> {
    journal.set_processing_window(policy.processing_window_secs);
    let mut report = PassReport::default();
    let dialect = super::dialect_str(gateway.dialect());
    for e in db!(journal, [], j => j.stored(now))? {
        if e.dialect != dialect {
            continue;
        }
        let r = reference(&e);
        let icc = db!(journal, [r], j => j.icc_data(&r.0))?;
        let (Some(icc), Some(amount)) = (icc, amount(&e)) else {
            tracing::error!(reference = %e.reference, "STORED SALE CANNOT BE FORWARDED: no online data was kept");
            if db!(journal, [r], j => j.transition(
                &r,
                &[RelayState::Stored],
                RelayState::Escalated,
                "stored without icc data; cannot forward",
            ))? {
                report.escalated.push(e.reference.clone());
            }
            continue;
        };
        let Ok(zero) = amount.with_minor(0) else {
            continue;
        };
        let req = AuthorizationRequest {
            reference: r.clone(),
            kind: AuthKind::Sale,
            amount: Money::from_minor(u64::try_from(e.amount_minor).unwrap_or(0), &e.currency)
                .unwrap_or(amount),
            amount_other: zero,
            entry_mode: EntryMode::Chip,
            icc_data: bytes::Bytes::from(icc),
            masked_pan: e.masked_pan.clone().unwrap_or_default(),
            last4: e.last4.clone(),
            brand: e.brand.clone(),
            original_gateway_id: None,
            online_pin: None,
            // Sent in the dialect's free-text field as the online attempt would have.
            pos_reference: e.pos_reference.clone(),
        };
        if !db!(journal, [r], j => j.claim_forward(&r))? {
            // Another forwarder has it.
            continue;
        }
        let result = gateway.authorize(&req).await;
        let state = db!(journal, [r, result], j => j.record_authorization(&r, &result))?;
        match (&result, state) {
            (_, RelayState::Forwarded) => report.settled.push((e.reference.clone(), state)),
            (_, RelayState::ForwardDeclined) => {
                tracing::error!(reference = %e.reference, "STORED SALE DECLINED ON FORWARD: the merchant approved it offline");
                report.forward_declined.push(e.reference.clone());
            }
            (AuthorizationResult::Unavailable { .. }, _) => {
                let next = now
                    .saturating_add(policy.backoff_jittered(&e.reference, e.resolve_attempts + 1));
                db!(journal, [r], j => j.note_attempt(&r, next))?;
                report.retry.push(e.reference.clone());
            }
            _ => report.retry.push(e.reference.clone()),
        }
    }
    Ok(report)
}

/// Runs the resolver and the forwarder every `policy.interval_secs` until `stop` fires.
pub async fn run_background(
    journal: Arc<Journal>,
    gateway: Arc<dyn Gateway>,
    policy: ResolverPolicy,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    run_background_observed(journal, gateway, policy, stop, |_, _| {}).await;
}

/// [`run_background`], calling `observe` after each pass with the journal and what the
/// pass did (`Err` with the first failure's text when the forwarder or resolver failed).
/// `serve` uses it to settle its transaction records and report the last pass.
pub async fn run_background_observed(
    journal: Arc<Journal>,
    gateway: Arc<dyn Gateway>,
    policy: ResolverPolicy,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut observe: impl FnMut(&Journal, Result<&PassReport, String>) + Send,
) {
    loop {
        let now = journal.now();
        let mut report = PassReport::default();
        let mut failure = None;
        match forward_once(&journal, gateway.as_ref(), &policy, now).await {
            Ok(r) => report = r,
            Err(e) => {
                tracing::error!(error = %e, "forwarder pass failed");
                failure = Some(e.to_string());
            }
        }
        match resolve_once(&journal, gateway.as_ref(), &policy, now).await {
            Ok(s) => {
                report.settled.extend(s.settled);
                report.retry.extend(s.retry);
                report.escalated.extend(s.escalated);
                report.forward_declined.extend(s.forward_declined);
            }
            Err(e) => {
                tracing::error!(error = %e, "resolver pass failed");
                failure.get_or_insert(e.to_string());
            }
        }
        match failure {
            None => observe(&journal, Ok(&report)),
            Some(f) => observe(&journal, Err(f)),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(policy.interval_secs.max(1))) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_stored_sales_stop_offline_approvals() {
        use crate::gateway::{Dialect, OffsetClock};
        use emvbridge_core::txn::{CardFacts, Outcome, OutcomeStatus};
        let p = std::env::temp_dir().join(format!("emvb-saf-age-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let clock = OffsetClock::new();
        let j = Arc::new(Journal::open_with_clock(&p, Arc::new(clock.clone())).unwrap());
        let usd = |m| Money::from_minor(m, "USD").unwrap();
        let o = Outcome {
            reference: Reference("y1".into()),
            kind: AuthKind::Sale,
            status: OutcomeStatus::ApprovedOffline,
            amount: usd(500),
            approved_amount: Some(usd(500)),
            gateway_id: None,
            auth_code: None,
            decline_code: None,
            reason: None,
            reversal: None,
            card: CardFacts::default(),
            final_data: Some(bytes::Bytes::from_static(&[0x9F, 0x27, 0x01, 0x40])),
            pos_reference: None,
        };
        j.record_outcome(&o, Dialect::Number, None).unwrap();
        let limits = SafLimits {
            enabled: true,
            max_amount_minor: 1000,
            max_count: 5,
            max_total_minor: 5000,
            max_age_secs: 3600,
        };
        assert!(limits.allows(&j, AuthKind::Sale, usd(100)).unwrap());
        clock.advance(3601);
        assert!(
            !limits.allows(&j, AuthKind::Sale, usd(100)).unwrap(),
            "a stored sale waiting over max_age_secs stops further offline approvals"
        );
        let no_age = SafLimits {
            max_age_secs: 0,
            ..limits
        };
        assert!(no_age.allows(&j, AuthKind::Sale, usd(100)).unwrap());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = ResolverPolicy::default();
        let j = p.backoff_jittered("r1", 1);
        assert!((60..=75).contains(&j), "{j}");
        assert_eq!(j, p.backoff_jittered("r1", 1), "reproducible");
        assert_eq!(p.backoff(0), 30);
        assert_eq!(p.backoff(1), 60);
        assert_eq!(p.backoff(3), 240);
        assert_eq!(p.backoff(20), 3600);
        assert_eq!(p.backoff(i64::MAX), 3600);
    }
}
