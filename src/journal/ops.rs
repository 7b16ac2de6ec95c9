//! Follow-up operations on an approved transaction — refund, void, capture — as journal rows
//! of their own, keyed by their own reference (the idempotency key sent with them).
//!
//! Each is written (`sending`) before it leaves and settled by its answer, so a lost answer
//! leaves an `unknown` row that is looked up, never re-sent blindly. Before anything leaves,
//! the bounds are checked locally inside the same `BEGIN IMMEDIATE` transaction that writes
//! the row, counting every operation that may have moved money (sent, done or unknown):
//! - a refund is at most what was captured minus what was refunded (a sale's approved amount;
//!   a pre-authorization's captured amount — an uncaptured one is voided, never refunded);
//! - no void after a capture or a refund, no second void or capture;
//! - nothing after the transaction was voided or reversed.

use rusqlite::{params, OptionalExtension};

use super::{dialect_str, short, Journal, JournalError, RelayState};
use crate::gateway::{Dialect, OpResult};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::Reference;

/// Which follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Refund of (part of) a captured sale.
    Refund,
    /// Void of an uncaptured, unrefunded transaction.
    Void,
    /// Capture of a pre-authorization.
    Capture,
}

impl OpKind {
    fn as_str(self) -> &'static str {
        match self {
            OpKind::Refund => "refund",
            OpKind::Void => "void",
            OpKind::Capture => "capture",
        }
    }
}

/// Where one follow-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Written before it left; no answer yet.
    Sending,
    /// The gateway did it.
    Done,
    /// The gateway refused it (or the local bounds did): nothing moved.
    Refused,
    /// Certainly not processed.
    NotProcessed,
    /// May have been processed: looked up, never re-sent.
    Unknown,
}

impl OpState {
    const ALL: [OpState; 5] = [
        OpState::Sending,
        OpState::Done,
        OpState::Refused,
        OpState::NotProcessed,
        OpState::Unknown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            OpState::Sending => "sending",
            OpState::Done => "done",
            OpState::Refused => "refused",
            OpState::NotProcessed => "not_processed",
            OpState::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Option<OpState> {
        OpState::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One follow-up row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpEntry {
    /// The operation's own reference (idempotency key).
    pub reference: String,
    /// `refund`, `void`, `capture`.
    pub op: String,
    /// Gateway id of the transaction it acts on.
    pub parent_gateway_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Gateway dialect.
    pub dialect: String,
    /// Where it is.
    pub state: OpState,
    /// The gateway's id for the operation, once done.
    pub gateway_id: Option<String>,
    /// Last reason, in words.
    pub reason: Option<String>,
    /// Unix time of creation.
    pub created_at: i64,
}

/// What [`Journal::begin_op`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStart {
    /// Written as `sending`: send it.
    Send,
    /// This reference was used before: its row, unchanged. Nothing is sent. (An operation
    /// that was certainly not processed is sent again under its key instead.)
    Replay(OpEntry),
    /// Refused by the local bounds (written as not processed, so a retry under the same key
    /// is checked again). Nothing is sent.
    Refused(String),
}

/// What was counted against one transaction: (captured, refunded, voided), each counting
/// every operation that may have moved money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpTotals {
    /// Captures done (minor units).
    pub captured_done: i64,
    /// Captures sent, done or unknown.
    pub captures: i64,
    /// Refunds sent, done or unknown (minor units).
    pub refunded: i64,
    /// Refunds done (minor units).
    pub refunded_done: i64,
    /// Voids sent, done or unknown.
    pub voids: i64,
}

const OP_COLUMNS: &str = "reference, op, parent_gateway_id, amount_minor, currency, dialect, state, gateway_id, reason, created_at";

fn op_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(OpEntry, String)> {
    Ok((
        OpEntry {
            reference: r.get(0)?,
            op: r.get(1)?,
            parent_gateway_id: r.get(2)?,
            amount_minor: r.get(3)?,
            currency: r.get(4)?,
            dialect: r.get(5)?,
            state: OpState::Sending,
            gateway_id: r.get(7)?,
            reason: r.get(8)?,
            created_at: r.get(9)?,
        },
        r.get(6)?,
    ))
}

fn finish((mut e, s): (OpEntry, String)) -> Result<OpEntry, JournalError> {
    e.state = OpState::parse(&s).ok_or(JournalError::Corrupt("ops.state"))?;
    Ok(e)
}

fn totals(tx: &rusqlite::Connection, parent: &str) -> Result<OpTotals, JournalError> {
    Ok(tx.query_row(
        "SELECT
            COALESCE(SUM(CASE WHEN op = 'capture' AND state = 'done' THEN amount_minor END), 0),
            COUNT(CASE WHEN op = 'capture' AND state IN ('sending','done','unknown') THEN 1 END),
            COALESCE(SUM(CASE WHEN op = 'refund' AND state IN ('sending','done','unknown') THEN amount_minor END), 0),
            COALESCE(SUM(CASE WHEN op = 'refund' AND state = 'done' THEN amount_minor END), 0),
            COUNT(CASE WHEN op = 'void' AND state IN ('sending','done','unknown') THEN 1 END)
         FROM ops WHERE parent_gateway_id = ?1",
        params![parent],
        |r| {
            Ok(OpTotals {
                captured_done: r.get(0)?,
                captures: r.get(1)?,
                refunded: r.get(2)?,
                refunded_done: r.get(3)?,
                voids: r.get(4)?,
            })
        },
    )?)
}

/// The parent transaction as the bounds need it: (reference, kind, state, approved or
/// requested amount).
fn parent(
    tx: &rusqlite::Connection,
    gateway_id: &str,
) -> Result<Option<(String, String, RelayState, i64)>, JournalError> {
    let row: Option<(String, String, String, i64)> = tx
        .query_row(
            "SELECT reference, kind, state, COALESCE(approved_minor, amount_minor) FROM txns WHERE gateway_id = ?1 ORDER BY created_at LIMIT 1",
            params![gateway_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    row.map(|(r, k, s, a)| {
        RelayState::parse(&s)
            .map(|s| (r, k, s, a))
            .ok_or(JournalError::Corrupt("state"))
    })
    .transpose()
}

/// Why `op` of `amount` on a parent with these facts must not be sent, if it must not.
fn refusal(
    op: OpKind,
    amount: i64,
    parent: Option<&(String, String, RelayState, i64)>,
    t: OpTotals,
) -> Option<String> {
    if let Some((_, _, RelayState::Reversed, _)) = parent {
        return Some("the transaction was reversed".into());
    }
    if t.voids > 0 {
        return Some("the transaction was voided".into());
    }
    let pre_auth = parent.is_some_and(|p| p.1 == "pre_auth");
    let approved = parent.map(|p| p.3);
    match op {
        OpKind::Void if t.captures > 0 => Some("no void after a capture: refund instead".into()),
        OpKind::Void if t.refunded > 0 => Some("no void after a refund".into()),
        OpKind::Void => None,
        OpKind::Capture if t.captures > 0 => Some("already captured".into()),
        OpKind::Capture if parent.is_some() && !pre_auth => {
            Some("only a pre-authorization is captured".into())
        }
        OpKind::Capture => match approved {
            Some(a) if amount > a => {
                Some(format!("capture of {amount} exceeds the {a} authorized"))
            }
            _ => None,
        },
        OpKind::Refund if pre_auth && t.captured_done == 0 => {
            Some("an uncaptured pre-authorization is voided, not refunded".into())
        }
        OpKind::Refund => {
            let base = if pre_auth {
                Some(t.captured_done)
            } else {
                approved
            };
            match base {
                Some(b) if t.refunded.saturating_add(amount) > b => Some(format!(
                    "refund of {amount} exceeds captured {b} minus refunded {} (unconfirmed refunds count)",
                    t.refunded
                )),
                _ => None,
            }
        }
    }
}

impl Journal {
    /// Writes a follow-up before it is sent, after checking its reference and its bounds
    /// (see the module documentation), all in one transaction.
    ///
    /// # Errors
    /// [`JournalError::Sql`]; the operation must then not be sent.
    pub fn begin_op(
        &self,
        op: OpKind,
        reference: &Reference,
        parent_gateway_id: &str,
        amount: Money,
        dialect: Dialect,
    ) -> Result<OpStart, JournalError> {
        let now = self.now();
        let minor = super::minor_i64(amount.minor());
        self.write(|tx| {
            let existing = tx
                .query_row(
                    &format!("SELECT {OP_COLUMNS} FROM ops WHERE reference = ?1"),
                    params![reference.0],
                    op_row,
                )
                .optional()?;
            let resend = match existing {
                // Certainly not processed: sending it again under its key is safe.
                Some(e) if finish(e.clone())?.state == OpState::NotProcessed => true,
                Some(e) => return Ok(OpStart::Replay(finish(e)?)),
                None => false,
            };
            if resend {
                tx.execute("DELETE FROM ops WHERE reference = ?1", params![reference.0])?;
            }
            let p = parent(tx, parent_gateway_id)?;
            let t = totals(tx, parent_gateway_id)?;
            let refused = refusal(op, minor, p.as_ref(), t);
            // Refused here, nothing left: a retry under the same key is checked again.
            let state = if refused.is_some() {
                OpState::NotProcessed
            } else {
                OpState::Sending
            };
            tx.execute(
                "INSERT INTO ops(reference, op, parent_gateway_id, parent_reference, amount_minor, currency, dialect, state, reason, attempts, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10)",
                params![
                    reference.0,
                    op.as_str(),
                    parent_gateway_id,
                    p.as_ref().map(|p| &p.0),
                    minor,
                    amount.currency().alpha,
                    dialect_str(dialect),
                    state.as_str(),
                    refused.as_deref().map(short),
                    now
                ],
            )?;
            if let Some(p) = &p {
                let note = match &refused {
                    Some(why) => format!("{}: refused locally ({}): {why}", op.as_str(), reference.0),
                    None => format!("{}: sent ({}, {minor})", op.as_str(), reference.0),
                };
                Self::event(tx, &p.0, now, p.2, &note)?;
            }
            Ok(match refused {
                Some(why) => OpStart::Refused(why),
                None => OpStart::Send,
            })
        })
    }

    /// Records a follow-up's answer (from `sending`, or from `unknown` after a lookup) and
    /// returns its state. A void done reverses its transaction; a refund that brings the
    /// refunded total to the whole amount does too ("reversed" only when all of it is back).
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn record_op(
        &self,
        reference: &Reference,
        result: &OpResult,
    ) -> Result<OpState, JournalError> {
        let now = self.now();
        let (state, gateway_id, reason) = match result {
            OpResult::Done { gateway_id } => (OpState::Done, Some(gateway_id.clone()), None),
            OpResult::Refused { reason, .. } => (OpState::Refused, None, Some(reason.clone())),
            OpResult::NotFound => (
                OpState::Refused,
                None,
                Some("the gateway has no such transaction".into()),
            ),
            OpResult::Unavailable { reason } => (OpState::NotProcessed, None, Some(reason.clone())),
            OpResult::Unsupported { reason } => {
                (OpState::NotProcessed, None, Some((*reason).to_owned()))
            }
            OpResult::Unknown { reason } => (OpState::Unknown, None, Some(reason.clone())),
        };
        self.write(|tx| {
            let row = tx
                .query_row(
                    &format!("SELECT {OP_COLUMNS} FROM ops WHERE reference = ?1"),
                    params![reference.0],
                    op_row,
                )
                .optional()?
                .ok_or(JournalError::NotFound)?;
            let cur = finish(row)?;
            if !matches!(cur.state, OpState::Sending | OpState::Unknown) {
                return Ok(cur.state);
            }
            // A lookup that still finds nothing leaves an unknown operation unknown.
            let state = if cur.state == OpState::Unknown && state != OpState::Done {
                match result {
                    OpResult::Refused { .. } => OpState::Refused,
                    _ => OpState::Unknown,
                }
            } else {
                state
            };
            tx.execute(
                "UPDATE ops SET state = ?2, gateway_id = COALESCE(?3, gateway_id), reason = COALESCE(?4, reason), updated_at = ?5
                 WHERE reference = ?1 AND state = ?6",
                params![reference.0, state.as_str(), gateway_id, reason.as_deref().map(short), now, cur.state.as_str()],
            )?;
            if state == OpState::Done {
                if let Some(p) = parent(tx, &cur.parent_gateway_id)? {
                    let t = totals(tx, &cur.parent_gateway_id)?;
                    let held = if p.1 == "pre_auth" { t.captured_done } else { p.3 };
                    let all_back = cur.op == "void"
                        || (cur.op == "refund" && held > 0 && t.refunded_done >= held);
                    if all_back && p.2 != RelayState::Reversed {
                        let why = format!("{}: done ({}); the whole amount is back", cur.op, cur.reference);
                        Self::move_row(tx, &p.0, p.2, RelayState::Reversed, &why, now)?;
                    } else {
                        let note = format!("{}: done ({})", cur.op, cur.reference);
                        Self::event(tx, &p.0, now, p.2, &note)?;
                    }
                }
            }
            Ok(state)
        })
    }

    /// One follow-up row.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn op(&self, reference: &str) -> Result<Option<OpEntry>, JournalError> {
        let db = self.db();
        db.query_row(
            &format!("SELECT {OP_COLUMNS} FROM ops WHERE reference = ?1"),
            params![reference],
            op_row,
        )
        .optional()?
        .map(finish)
        .transpose()
    }

    /// What was captured, refunded and voided on the transaction with this gateway id.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn op_totals(&self, parent_gateway_id: &str) -> Result<OpTotals, JournalError> {
        totals(&self.db(), parent_gateway_id)
    }

    /// Follow-ups whose outcome is unknown (answer lost; or `sending` and older than
    /// `min_age` seconds, left by a crash): the resolver looks them up.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn open_ops(&self, now: i64, min_age: i64) -> Result<Vec<OpEntry>, JournalError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {OP_COLUMNS} FROM ops WHERE next_attempt_at <= ?1 AND updated_at <= ?2 AND state IN ('sending','unknown') ORDER BY created_at LIMIT 10000"
        ))?;
        let rows = st.query_map(params![now, now.saturating_sub(min_age)], op_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(finish(r?)?);
        }
        Ok(out)
    }

    /// Settles an unknown follow-up that the gateway does not know after its processing
    /// window (or moves a crashed `sending` one to `unknown`), or schedules the next lookup.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn settle_op(
        &self,
        reference: &Reference,
        found_nothing: bool,
        next_at: i64,
    ) -> Result<OpState, JournalError> {
        let now = self.now();
        let window = self.processing_window();
        self.write(|tx| {
            let (state, created): (String, i64) = tx
                .query_row(
                    "SELECT state, created_at FROM ops WHERE reference = ?1",
                    params![reference.0],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or(JournalError::NotFound)?;
            let cur = OpState::parse(&state).ok_or(JournalError::Corrupt("ops.state"))?;
            let next = match cur {
                OpState::Sending | OpState::Unknown
                    if found_nothing && now >= created.saturating_add(window) =>
                {
                    OpState::NotProcessed
                }
                OpState::Sending => OpState::Unknown,
                c => c,
            };
            tx.execute(
                "UPDATE ops SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3, updated_at = ?4 WHERE reference = ?1 AND state = ?5",
                params![reference.0, next.as_str(), next_at, now, cur.as_str()],
            )?;
            Ok(next)
        })
    }
}

/// Takes back a partly refunded transaction: by a refund of what is left (a follow-up of
/// its own, keyed `{reference}:rest`), since a void or reversal of it would report the whole
/// amount as returned. `None` when nothing was refunded (a plain reversal applies).
/// `Reversed` only once the whole amount is back; unconfirmed refunds are looked up first.
///
/// # Errors
/// [`JournalError`].
pub async fn refund_rest(
    journal: &Journal,
    gateway: &dyn crate::gateway::Gateway,
    e: &super::Entry,
) -> Result<Option<emvbridge_core::txn::host::ReversalResult>, JournalError> {
    use emvbridge_core::txn::host::ReversalResult;
    let Some(gid) = e.gateway_id.clone() else {
        return Ok(None);
    };
    let t = journal.op_totals(&gid)?;
    if t.refunded == 0 {
        return Ok(None);
    }
    if t.refunded > t.refunded_done {
        return Ok(Some(ReversalResult::Failed {
            reason: "refunds not confirmed yet: looked up before the rest is refunded".into(),
        }));
    }
    let rest = e.approved_minor.unwrap_or(e.amount_minor) - t.refunded_done;
    if rest <= 0 {
        return Ok(Some(ReversalResult::Reversed));
    }
    let Ok(amount) = Money::from_minor(rest.unsigned_abs(), &e.currency) else {
        return Ok(Some(ReversalResult::Failed {
            reason: "currency unreadable".into(),
        }));
    };
    let key = Reference(format!("{}:rest", e.reference));
    let dialect = gateway.dialect();
    let recorded = match journal.begin_op(OpKind::Refund, &key, &gid, amount, dialect)? {
        OpStart::Send => {
            let req = crate::gateway::RefundRequest {
                reference: key.clone(),
                gateway_id: gid,
                amount,
                // The rest of a payment is returned under the payment's own POS reference.
                pos_reference: e.pos_reference.clone(),
            };
            let r = gateway.refund(&req).await;
            journal.record_op(&key, &r)?
        }
        OpStart::Replay(op) => op.state,
        OpStart::Refused(_) => OpState::Refused,
    };
    tracing::info!(reference = %e.reference, rest, state = ?recorded, "partly refunded transaction: refund of the rest");
    Ok(Some(match recorded {
        OpState::Done => ReversalResult::Reversed,
        s => ReversalResult::Failed {
            reason: format!("refund of the remaining {rest}: {s:?}").to_ascii_lowercase(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::OffsetClock;
    use emvbridge_core::txn::host::{
        AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode, IssuerResponse,
    };
    use std::sync::Arc;

    fn journal(name: &str) -> (Journal, std::path::PathBuf) {
        let p = super::super::tests::temp_path(name);
        (
            Journal::open_with_clock(&p, Arc::new(OffsetClock::new())).unwrap(),
            p,
        )
    }

    fn usd(m: u64) -> Money {
        Money::from_minor(m, "USD").unwrap()
    }

    fn approve(j: &Journal, reference: &str, kind: AuthKind, minor: u64, gid: &str) {
        let req = AuthorizationRequest {
            reference: Reference(reference.into()),
            kind,
            amount: usd(minor),
            amount_other: usd(0),
            entry_mode: EntryMode::Chip,
            icc_data: bytes::Bytes::new(),
            masked_pan: String::new(),
            last4: None,
            brand: None,
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        };
        j.begin_authorization(&req, Dialect::Number).unwrap();
        j.record_authorization(
            &req.reference,
            &AuthorizationResult::Approved {
                gateway_id: gid.into(),
                approved_amount: usd(minor),
                issuer: IssuerResponse::default(),
            },
        )
        .unwrap();
    }

    fn begin(j: &Journal, op: OpKind, key: &str, gid: &str, minor: u64) -> OpStart {
        j.begin_op(op, &Reference(key.into()), gid, usd(minor), Dialect::Number)
            .unwrap()
    }

    fn done(j: &Journal, key: &str) -> OpState {
        j.record_op(
            &Reference(key.into()),
            &OpResult::Done {
                gateway_id: format!("g-{key}"),
            },
        )
        .unwrap()
    }

    #[test]
    fn refunds_are_bounded_by_what_was_captured_minus_refunded() {
        let (j, p) = journal("ops-refund");
        approve(&j, "s1", AuthKind::Sale, 1000, "G1");
        assert_eq!(begin(&j, OpKind::Refund, "r1", "G1", 600), OpStart::Send);
        // The answer was lost: it may have been made, so it counts.
        j.record_op(
            &Reference("r1".into()),
            &OpResult::Unknown {
                reason: "timeout".into(),
            },
        )
        .unwrap();
        assert!(matches!(
            begin(&j, OpKind::Refund, "r2", "G1", 600),
            OpStart::Refused(_)
        ));
        assert_eq!(begin(&j, OpKind::Refund, "r3", "G1", 400), OpStart::Send);
        // The same key again replays, never re-sends.
        assert!(matches!(
            begin(&j, OpKind::Refund, "r1", "G1", 600),
            OpStart::Replay(e) if e.state == OpState::Unknown
        ));
        assert_eq!(done(&j, "r3"), OpState::Done);
        assert_eq!(
            j.get("s1").unwrap().unwrap().state,
            RelayState::Approved,
            "600 still held"
        );
        assert_eq!(done(&j, "r1"), OpState::Done);
        assert_eq!(
            j.get("s1").unwrap().unwrap().state,
            RelayState::Reversed,
            "reversed once the whole amount is back"
        );
        // No void after a refund.
        assert!(matches!(
            begin(&j, OpKind::Void, "void:s1", "G1", 1000),
            OpStart::Refused(_)
        ));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn pre_authorizations_are_voided_or_captured_then_refunded() {
        let (j, p) = journal("ops-preauth");
        approve(&j, "a1", AuthKind::PreAuth, 5000, "G2");
        assert!(
            matches!(begin(&j, OpKind::Refund, "r1", "G2", 100), OpStart::Refused(why) if why.contains("uncaptured")),
        );
        assert!(matches!(
            begin(&j, OpKind::Capture, "c0", "G2", 6000),
            OpStart::Refused(_)
        ));
        assert_eq!(begin(&j, OpKind::Capture, "c1", "G2", 4000), OpStart::Send);
        assert_eq!(done(&j, "c1"), OpState::Done);
        assert!(matches!(
            begin(&j, OpKind::Capture, "c2", "G2", 100),
            OpStart::Refused(_)
        ));
        assert!(
            matches!(begin(&j, OpKind::Void, "void:a1", "G2", 5000), OpStart::Refused(why) if why.contains("capture")),
        );
        assert!(matches!(
            begin(&j, OpKind::Refund, "r2", "G2", 4001),
            OpStart::Refused(_)
        ));
        assert_eq!(begin(&j, OpKind::Refund, "r3", "G2", 4000), OpStart::Send);
        // A void of another pre-authorization, then nothing more on it.
        approve(&j, "a2", AuthKind::PreAuth, 700, "G3");
        assert_eq!(begin(&j, OpKind::Void, "void:a2", "G3", 700), OpStart::Send);
        assert_eq!(done(&j, "void:a2"), OpState::Done);
        assert_eq!(j.get("a2").unwrap().unwrap().state, RelayState::Reversed);
        assert!(matches!(
            begin(&j, OpKind::Capture, "c3", "G3", 700),
            OpStart::Refused(_)
        ));
        let _ = std::fs::remove_file(&p);
    }
}
