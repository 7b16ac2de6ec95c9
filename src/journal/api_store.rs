//! The POS API's memory in the journal: [`Store`] on [`Journal`], so a restarted
//! `emvbridge serve` still answers a repeated `X-Request-Id` with the original answer and
//! still serves `GET /v1/transactions/{id}` for earlier transactions.
//!
//! Tables (schema version 2): `api_requests(request_id, fingerprint, status, location, body,
//! created_at)` and `api_transactions(id, status, body, created_at, updated_at)`, with the
//! point of sale's `pos_reference` since version 4 (its lookup and the listing). The bodies
//! are the JSON the API returns, which carries the PAN masked first 6 / last 4 and no other
//! card data.
//!
//! A record left `in_progress` by a process that died is shown `unresolved` after the restart
//! ([`Journal::api_mark_interrupted`]) and settled from the relay's row once the resolver has
//! settled that ([`Journal::api_settle`]).

use rusqlite::{params, OptionalExtension};

use super::{Journal, JournalError, RelayState};
use crate::api::store::{unix_now, ApiStatus, ListQuery, Store, StoredResponse, TxnRecord};

/// Most records one settle pass looks at.
const SETTLE_BATCH: i64 = 1000;

fn status_str(s: ApiStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unresolved".into())
}

fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

impl Journal {
    /// The stored answer to `request_id`.
    ///
    /// # Errors
    /// [`JournalError`]; a fingerprint that is not 32 bytes is [`JournalError::Corrupt`].
    pub fn api_response(&self, request_id: &str) -> Result<Option<StoredResponse>, JournalError> {
        let row: Option<(Vec<u8>, i64, Option<String>, String)> = self
            .db()
            .query_row(
                "SELECT fingerprint, status, location, body FROM api_requests WHERE request_id = ?1",
                params![request_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((fp, status, location, body)) = row else {
            return Ok(None);
        };
        let fingerprint: [u8; 32] = fp
            .try_into()
            .map_err(|_| JournalError::Corrupt("api_requests.fingerprint"))?;
        let status =
            u16::try_from(status).map_err(|_| JournalError::Corrupt("api_requests.status"))?;
        Ok(Some(StoredResponse {
            fingerprint,
            status,
            location,
            body,
        }))
    }

    /// Stores (or replaces) the answer to `request_id`.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn save_api_response(
        &self,
        request_id: &str,
        r: &StoredResponse,
    ) -> Result<(), JournalError> {
        let now = self.now();
        self.db().execute(
            "INSERT INTO api_requests(request_id, fingerprint, status, location, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(request_id) DO UPDATE SET fingerprint = ?2, status = ?3, location = ?4, body = ?5",
            params![request_id, &r.fingerprint[..], r.status, r.location, r.body, now],
        )?;
        Ok(())
    }

    /// A transaction record by id.
    ///
    /// # Errors
    /// [`JournalError`]; a body that does not parse is [`JournalError::Corrupt`].
    pub fn api_transaction(&self, id: &str) -> Result<Option<TxnRecord>, JournalError> {
        let body: Option<String> = self
            .db()
            .query_row(
                "SELECT body FROM api_transactions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|_| JournalError::Corrupt("api_transactions.body"))
        })
        .transpose()
    }

    /// Inserts or replaces a transaction record.
    ///
    /// # Errors
    /// [`JournalError::Sql`], or [`JournalError::Corrupt`] if the record does not serialize.
    pub fn save_api_transaction(&self, rec: &TxnRecord) -> Result<(), JournalError> {
        let body = serde_json::to_string(rec)
            .map_err(|_| JournalError::Corrupt("api_transactions.body"))?;
        self.db().execute(
            "INSERT INTO api_transactions(id, status, body, created_at, updated_at, pos_reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET status = ?2, body = ?3, updated_at = ?5, pos_reference = ?6",
            params![
                rec.id,
                status_str(rec.status),
                body,
                secs(rec.created_at),
                secs(rec.updated_at),
                rec.reference
            ],
        )?;
        Ok(())
    }

    /// The records `q` selects, newest first (by the indexed `pos_reference` and
    /// `(created_at, id)`).
    ///
    /// # Errors
    /// [`JournalError`]; a body that does not parse is [`JournalError::Corrupt`].
    pub fn api_transactions(&self, q: &ListQuery) -> Result<Vec<TxnRecord>, JournalError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT body FROM api_transactions
             WHERE (?1 IS NULL OR pos_reference = ?1)
               AND (?2 IS NULL OR created_at >= ?2)
               AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5))
             ORDER BY created_at DESC, id DESC LIMIT ?6",
        )?;
        let (after_t, after_id) = match &q.after {
            Some((t, id)) => (Some(secs(*t)), Some(id.as_str())),
            None => (None, None),
        };
        let rows = stmt.query_map(
            params![
                q.reference,
                q.since.map(secs),
                q.status.map(status_str),
                after_t,
                after_id,
                i64::try_from(q.limit).unwrap_or(i64::MAX)
            ],
            |r| r.get::<_, String>(0),
        )?;
        rows.map(|b| {
            serde_json::from_str(&b?).map_err(|_| JournalError::Corrupt("api_transactions.body"))
        })
        .collect()
    }

    /// How many API records are `unresolved` (or still `in_progress`).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn api_open_count(&self) -> Result<u64, JournalError> {
        let n: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM api_transactions WHERE status IN ('unresolved', 'in_progress')",
            [],
            |r| r.get(0),
        )?;
        Ok(n.max(0).unsigned_abs())
    }

    /// Forgets stored answers to request ids older than `max_age_secs` (a POS retries within
    /// minutes; the transaction records stay).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn prune_api_requests(&self, max_age_secs: i64) -> Result<usize, JournalError> {
        let cutoff = self.now().saturating_sub(max_age_secs);
        Ok(self.db().execute(
            "DELETE FROM api_requests WHERE created_at < ?1",
            params![cutoff],
        )?)
    }

    fn api_records_in(&self, status: &str) -> Result<Vec<TxnRecord>, JournalError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT body FROM api_transactions WHERE status = ?1 ORDER BY created_at LIMIT ?2",
        )?;
        let rows = st.query_map(params![status, SETTLE_BATCH], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            match serde_json::from_str::<TxnRecord>(&body?) {
                Ok(rec) => out.push(rec),
                Err(_) => tracing::error!("api record in the journal does not parse; skipped"),
            }
        }
        Ok(out)
    }

    /// At start-up, before anything runs: every record still `in_progress` belongs to a
    /// process that died mid-transaction. It becomes `unresolved` (treat as not paid) — or
    /// settled at once when the relay row already tells how it ended, or `failed` when no
    /// authorization was ever written (the journal writes before a request leaves, so no
    /// row means nothing was sent). Returns the ids touched.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn api_mark_interrupted(&self) -> Result<Vec<String>, JournalError> {
        let mut touched = Vec::new();
        for mut rec in self.api_records_in("in_progress")? {
            match self.get(&rec.id)? {
                None => {
                    rec.status = ApiStatus::Failed;
                    rec.reason = Some(
                        "the bridge stopped before the authorization was sent; no money moved"
                            .into(),
                    );
                }
                Some(e) => {
                    rec.status = ApiStatus::Unresolved;
                    rec.reason = Some(
                        "the bridge stopped while the transaction ran; being resolved (treat as not paid)"
                            .into(),
                    );
                    settle_from(&mut rec, &e);
                }
            }
            rec.updated_at = unix_now();
            self.save_api_transaction(&rec)?;
            touched.push(rec.id.clone());
        }
        Ok(touched)
    }

    /// Settles `unresolved` records whose relay row the resolver has settled (reversed, not
    /// found, declined — or approved and completed, when the process died after telling
    /// the card but before updating the record). Returns the ids and their new status.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn api_settle(&self) -> Result<Vec<(String, ApiStatus)>, JournalError> {
        let mut settled = Vec::new();
        for mut rec in self.api_records_in("unresolved")? {
            let changed = match self.get(&rec.id)? {
                Some(e) => settle_from(&mut rec, &e),
                // A refund at the gateway (card not present) is a follow-up row of its own.
                None => match self.op(&rec.id)? {
                    Some(op) => settle_from_op(&mut rec, &op),
                    None => false,
                },
            };
            if changed {
                rec.updated_at = unix_now();
                self.save_api_transaction(&rec)?;
                settled.push((rec.id.clone(), rec.status));
            }
        }
        Ok(settled)
    }
}

/// Takes the relay row's settled state into an unresolved record. Whether it changed.
fn settle_from(rec: &mut TxnRecord, e: &super::Entry) -> bool {
    let (status, reason) = match e.state {
        _ if e.pos_approved() => match e.pos_status.as_deref() {
            Some("partially_approved") => (ApiStatus::PartiallyApproved, None),
            Some("approved_offline") => (ApiStatus::ApprovedOffline, None),
            _ => (ApiStatus::Approved, None),
        },
        RelayState::Reversed => (
            ApiStatus::Reversed,
            Some("reversed after the interruption: nothing is held"),
        ),
        RelayState::NotFound | RelayState::Unavailable | RelayState::Closed => (
            ApiStatus::Failed,
            Some("the gateway has no such authorization; no money moved"),
        ),
        RelayState::Declined => (ApiStatus::Declined, Some("declined by the gateway")),
        _ => return false,
    };
    rec.status = status;
    if let Some(r) = reason {
        rec.reason = Some(r.into());
    }
    if rec.gateway_id.is_none() {
        rec.gateway_id.clone_from(&e.gateway_id);
    }
    if status.is_approved() {
        if rec.auth_code.is_none() {
            rec.auth_code.clone_from(&e.auth_code);
        }
        if rec.approved_amount.is_none() {
            rec.approved_amount = e
                .approved_minor
                .and_then(|m| u64::try_from(m).ok())
                .and_then(|m| emvbridge_core::money::Money::from_minor(m, &e.currency).ok());
        }
    } else if status == ApiStatus::Declined && rec.decline_code.is_none() {
        rec.decline_code.clone_from(&e.decline_code);
    }
    true
}

/// Takes a follow-up's settled state (a refund whose answer was lost, found by lookup or
/// not found after the gateway's window) into its unresolved record. Whether it changed.
fn settle_from_op(rec: &mut TxnRecord, op: &super::ops::OpEntry) -> bool {
    use super::ops::OpState;
    let (status, reason) = match op.state {
        OpState::Done => (ApiStatus::Approved, "done at the gateway (found by lookup)"),
        OpState::Refused => (ApiStatus::Declined, "refused by the gateway"),
        OpState::NotProcessed => (
            ApiStatus::Failed,
            "the gateway has no such operation; nothing moved",
        ),
        OpState::Sending | OpState::Unknown => return false,
    };
    rec.status = status;
    rec.reason = Some(reason.into());
    if status == ApiStatus::Approved {
        if rec.gateway_id.is_none() {
            rec.gateway_id.clone_from(&op.gateway_id);
        }
        if rec.approved_amount.is_none() {
            rec.approved_amount = u64::try_from(op.amount_minor)
                .ok()
                .and_then(|m| emvbridge_core::money::Money::from_minor(m, &op.currency).ok());
        }
    }
    true
}

/// The API's store. Write failures are logged (the answer still goes to the POS); a read
/// failure is logged and reads as "nothing stored".
impl Store for Journal {
    fn response(&self, request_id: &str) -> Option<StoredResponse> {
        self.api_response(request_id).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read a stored api answer");
            None
        })
    }
    fn save_response(&self, request_id: &str, r: &StoredResponse) {
        if let Err(e) = self.save_api_response(request_id, r) {
            tracing::error!(error = %e, "cannot store an api answer");
        }
    }
    fn transaction(&self, id: &str) -> Option<TxnRecord> {
        self.api_transaction(id).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read an api transaction record");
            None
        })
    }
    fn save_transaction(&self, rec: &TxnRecord) {
        if let Err(e) = self.save_api_transaction(rec) {
            tracing::error!(error = %e, "cannot store an api transaction record");
        }
    }
    fn transactions(&self, q: &ListQuery) -> Vec<TxnRecord> {
        self.api_transactions(q).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list api transaction records");
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Dialect;
    use emvbridge_core::money::Money;
    use emvbridge_core::txn::host::{AuthKind, AuthorizationRequest, EntryMode, Reference};

    fn temp(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!("emvb-api-{name}-{}-{nanos}.db", std::process::id()))
    }

    fn cleanup(p: &std::path::Path) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }

    fn usd(m: u64) -> Money {
        Money::from_minor(m, "USD").unwrap()
    }

    #[test]
    fn records_are_found_by_reference_and_paged_after_a_reopen() {
        let p = temp("list");
        {
            let j = Journal::open(&p).unwrap();
            for i in 0..4u64 {
                let mut r = TxnRecord::started(format!("emvb-{i}"), AuthKind::Sale, usd(10 + i));
                r.created_at = 5_000 + i;
                r.reference = Some(format!("order-{}", i % 3));
                if i == 2 {
                    r.status = ApiStatus::Declined;
                }
                j.save_transaction(&r);
            }
        }
        let j = Journal::open(&p).unwrap();
        let ids = |v: Vec<TxnRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let by_ref = ListQuery {
            reference: Some("order-0".into()),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(j.transactions(&by_ref)), ["emvb-3", "emvb-0"]);
        let mut page = ListQuery {
            limit: 3,
            ..ListQuery::default()
        };
        assert_eq!(ids(j.transactions(&page)), ["emvb-3", "emvb-2", "emvb-1"]);
        page.after = Some((5_001, "emvb-1".into()));
        assert_eq!(ids(j.transactions(&page)), ["emvb-0"]);
        let declined = ListQuery {
            status: Some(ApiStatus::Declined),
            since: Some(5_001),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(j.transactions(&declined)), ["emvb-2"]);
        cleanup(&p);
    }

    #[test]
    fn answers_and_records_survive_a_reopen() {
        let p = temp("reopen");
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.response("r1"), None);
        let r = StoredResponse {
            fingerprint: [7; 32],
            status: 200,
            location: Some("/v1/transactions/t1".into()),
            body: r#"{"id":"t1"}"#.into(),
        };
        j.save_response("r1", &r);
        let mut rec = TxnRecord::started("t1".into(), AuthKind::Sale, usd(1234));
        j.save_transaction(&rec);
        rec.status = ApiStatus::Approved;
        rec.card = Some(serde_json::json!({"masked_pan": "401200******5439"}));
        j.save_transaction(&rec);
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.response("r1"), Some(r));
        assert_eq!(j.transaction("t1"), Some(rec));
        assert_eq!(j.transaction("t2"), None);
        assert_eq!(j.api_open_count().unwrap(), 0);
        assert_eq!(j.prune_api_requests(3600).unwrap(), 0);
        assert_eq!(j.prune_api_requests(-10).unwrap(), 1);
        assert_eq!(j.response("r1"), None);
        let v: i64 = j
            .db()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, super::super::SCHEMA_VERSION);
        cleanup(&p);
    }

    #[test]
    fn a_version_1_journal_gains_the_api_tables_and_keeps_its_rows() {
        let p = temp("v1");
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch(super::super::SCHEMA).unwrap();
            c.execute_batch(
                "INSERT INTO txns(reference, kind, amount_minor, currency, dialect, state, created_at, updated_at)
                 VALUES ('old', 'sale', 100, 'USD', 'number', 'approved', 1, 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.get("old").unwrap().unwrap().amount_minor, 100);
        j.save_transaction(&TxnRecord::started("a".into(), AuthKind::Sale, usd(1)));
        assert!(j.transaction("a").is_some());
        cleanup(&p);
    }

    #[test]
    fn interrupted_records_become_unresolved_then_settle() {
        let p = temp("settle");
        let j = Journal::open(&p).unwrap();
        // Died before going online: failed at once.
        j.save_transaction(&TxnRecord::started(
            "t-none".into(),
            AuthKind::Sale,
            usd(100),
        ));
        // Died with the authorization in flight.
        j.save_transaction(&TxnRecord::started(
            "t-sent".into(),
            AuthKind::Sale,
            usd(1234),
        ));
        let req = AuthorizationRequest {
            reference: Reference("t-sent".into()),
            kind: AuthKind::Sale,
            amount: usd(1234),
            amount_other: usd(0),
            entry_mode: EntryMode::Chip,
            icc_data: bytes::Bytes::new(),
            masked_pan: "401200******5439".into(),
            last4: Some("5439".into()),
            brand: None,
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        };
        j.begin_authorization(&req, Dialect::Number).unwrap();
        assert_eq!(j.api_open_count().unwrap(), 2);
        let mut touched = j.api_mark_interrupted().unwrap();
        touched.sort();
        assert_eq!(touched, ["t-none", "t-sent"]);
        assert_eq!(
            j.transaction("t-none").map(|r| r.status),
            Some(ApiStatus::Failed)
        );
        let rec = j.transaction("t-sent").unwrap();
        assert_eq!(rec.status, ApiStatus::Unresolved);
        assert!(rec.reason.unwrap_or_default().contains("being resolved"));
        // Nothing settled while the relay row is open.
        assert!(j.api_settle().unwrap().is_empty());
        assert_eq!(j.api_open_count().unwrap(), 1);
        // The resolver reverses it.
        assert!(j
            .transition(
                &req.reference,
                &[RelayState::Sending],
                RelayState::Reversed,
                "reversed"
            )
            .unwrap());
        assert_eq!(
            j.api_settle().unwrap(),
            [("t-sent".to_owned(), ApiStatus::Reversed)]
        );
        assert_eq!(
            j.transaction("t-sent").map(|r| r.status),
            Some(ApiStatus::Reversed)
        );
        assert!(j.api_settle().unwrap().is_empty());
        assert_eq!(j.api_open_count().unwrap(), 0);
        cleanup(&p);
    }
}
