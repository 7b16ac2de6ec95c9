//! The durable journal of the gateway relay: one SQLite file (bundled SQLite, WAL,
//! `synchronous=FULL`) that records every authorization *before* the request leaves and
//! again after each answer, so that a crash between send and receive leaves a row the
//! [`resolver`] settles on the next start.
//!
//! What is stored is what the relay needs and nothing more: the bridge's reference (the
//! idempotency key / client reference), kind, amount in minor units and currency, the masked
//! PAN, last four and brand, the gateway dialect and id, the auth code, the relay state and
//! the state the POS saw, timestamps and attempt counts. ICC data is kept only for
//! store-and-forward rows, and only after [`icc_is_safe`] found no clear PAN or track data in
//! it (the reader masks `5A`/`57` and hands clear data only inside the SRED `FF7F`
//! container). No PIN data ever reaches the relay.
//!
//! Modules: [`gateway`] (the [`gateway::JournaledGateway`] wrapper), [`resolver`] (unknown
//! outcomes, due reversals, store-and-forward), [`relay`] (the journal, the journaled gateway
//! and the resolver as a command uses them), [`report`] (reconciliation), [`api_store`] (the
//! POS API's records), [`cli`] (`emvbridge report` and `emvbridge resolve`).
//!
//! This file is the journal itself; the modules build on it and it uses none of them.

pub mod api_store;
pub mod cli;
pub mod gateway;
pub mod ops;
pub mod relay;
pub mod report;
pub mod resolver;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use emvbridge_protocol::tlv::{self, Tag};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use crate::gateway::{Clock, Dialect, SystemClock};
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, PosReference, Reference, ReversalRequest,
    ReversalResult,
};
use emvbridge_core::txn::{Outcome, OutcomeStatus};

/// Why a journal operation failed. Messages carry no card data.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite refused (open, schema, write, fsync).
    #[error("journal: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value is not one this build writes (a newer or damaged journal).
    #[error("journal: unexpected stored value in column {0}")]
    Corrupt(&'static str),
    /// The row does not exist.
    #[error("journal: no transaction with this reference")]
    NotFound,
    /// The ICC data held something that must not be stored (clear PAN or track data).
    #[error("journal: icc data holds clear card data; not stored")]
    UnsafeIcc,
    /// The reference already names a transaction: a reference is used once.
    #[error("journal: reference already used")]
    ReferenceUsed,
    /// SQLite stayed busy (another writer held the lock) through every retry.
    #[error("journal: still busy after {0} attempts")]
    Busy(u32),
}

impl JournalError {
    /// Whether SQLite said another connection holds the lock (`SQLITE_BUSY`/`SQLITE_LOCKED`):
    /// worth trying again, never a reason to drop the write.
    fn is_busy(&self) -> bool {
        matches!(self, JournalError::Sql(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
    }
}

/// Where the relay is with one transaction's money. `sending`, `unknown`, `reversal_due`,
/// `reversal_failed` and `forwarding` are the states the [`resolver`] works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    /// Written before the authorization left; no answer recorded yet.
    Sending,
    /// The gateway approved.
    Approved,
    /// The gateway or issuer declined: no money moved.
    Declined,
    /// Certainly not sent (or refused before processing): no money moved.
    Unavailable,
    /// Sent, no usable answer: resolve by status lookup, then reverse.
    Unknown,
    /// A reversal must be made (written before it is sent).
    ReversalDue,
    /// Reversed or voided: no money moves.
    Reversed,
    /// The gateway has no such transaction: no money moved.
    NotFound,
    /// A reversal was tried and not confirmed; the resolver retries.
    ReversalFailed,
    /// Approved by the merchant offline (Y3/Y1), stored to be forwarded.
    Stored,
    /// The stored authorization is being forwarded.
    Forwarding,
    /// Forwarded and approved by the gateway.
    Forwarded,
    /// Forwarded and declined: the merchant carries the loss; reported.
    ForwardDeclined,
    /// The resolver gave up after its bounded attempts: needs a human, reported loudly.
    Escalated,
    /// Ended without an authorization (cancelled, card declined offline, reader failed).
    Closed,
}

impl RelayState {
    /// Every state, for reports.
    pub const ALL: [RelayState; 15] = [
        RelayState::Sending,
        RelayState::Approved,
        RelayState::Declined,
        RelayState::Unavailable,
        RelayState::Unknown,
        RelayState::ReversalDue,
        RelayState::Reversed,
        RelayState::NotFound,
        RelayState::ReversalFailed,
        RelayState::Stored,
        RelayState::Forwarding,
        RelayState::Forwarded,
        RelayState::ForwardDeclined,
        RelayState::Escalated,
        RelayState::Closed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Sending => "sending",
            RelayState::Approved => "approved",
            RelayState::Declined => "declined",
            RelayState::Unavailable => "unavailable",
            RelayState::Unknown => "unknown",
            RelayState::ReversalDue => "reversal_due",
            RelayState::Reversed => "reversed",
            RelayState::NotFound => "not_found",
            RelayState::ReversalFailed => "reversal_failed",
            RelayState::Stored => "stored",
            RelayState::Forwarding => "forwarding",
            RelayState::Forwarded => "forwarded",
            RelayState::ForwardDeclined => "forward_declined",
            RelayState::Escalated => "escalated",
            RelayState::Closed => "closed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<RelayState> {
        RelayState::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the resolver still has work on a row in this state.
    pub fn needs_resolution(self) -> bool {
        matches!(
            self,
            RelayState::Sending
                | RelayState::Unknown
                | RelayState::ReversalDue
                | RelayState::ReversalFailed
                | RelayState::Forwarding
        )
    }

    /// Whether a report lists the row as not settled.
    pub fn is_unresolved(self) -> bool {
        self.needs_resolution()
            || matches!(
                self,
                RelayState::Stored | RelayState::ForwardDeclined | RelayState::Escalated
            )
    }
}

impl std::fmt::Display for RelayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn kind_str(k: AuthKind) -> &'static str {
    match k {
        AuthKind::Sale => "sale",
        AuthKind::PreAuth => "pre_auth",
        AuthKind::Refund => "refund",
    }
}

fn parse_kind(s: &str) -> Option<AuthKind> {
    match s {
        "sale" => Some(AuthKind::Sale),
        "pre_auth" => Some(AuthKind::PreAuth),
        "refund" => Some(AuthKind::Refund),
        _ => None,
    }
}

/// The stored name of a dialect (as `Dialect`'s `Display`).
pub fn dialect_str(d: Dialect) -> &'static str {
    match d {
        Dialect::Number => "number",
        Dialect::PaymentsAi => "paymentsai",
        Dialect::Pay1st => "pay1st",
    }
}

fn pos_str(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Approved => "approved",
        OutcomeStatus::PartiallyApproved => "partially_approved",
        OutcomeStatus::ApprovedOffline => "approved_offline",
        OutcomeStatus::Declined => "declined",
        OutcomeStatus::Cancelled => "cancelled",
        OutcomeStatus::Reversed => "reversed",
        OutcomeStatus::Unresolved => "unresolved",
        OutcomeStatus::Failed => "failed",
    }
}

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The bridge's reference (idempotency key / client reference).
    pub reference: String,
    /// `sale`, `pre_auth`, `refund`.
    pub kind: String,
    /// Requested amount, minor units.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// Approved amount, minor units, when approved.
    pub approved_minor: Option<i64>,
    /// PAN as masked by the reader (`476173******0010`).
    pub masked_pan: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// Gateway dialect.
    pub dialect: String,
    /// Gateway transaction id.
    pub gateway_id: Option<String>,
    /// Issuer auth code.
    pub auth_code: Option<String>,
    /// Decline code.
    pub decline_code: Option<String>,
    /// The relay's state.
    pub state: RelayState,
    /// What the POS was told (`OutcomeStatus` in snake case), once known.
    pub pos_status: Option<String>,
    /// Last reason, in words (no card data).
    pub reason: Option<String>,
    /// Authorizations sent (1, or more when forwarded).
    pub auth_attempts: i64,
    /// Resolver attempts on this row.
    pub resolve_attempts: i64,
    /// Unix time before which the resolver leaves the row alone (backoff).
    pub next_attempt_at: i64,
    /// Unix time of creation.
    pub created_at: i64,
    /// Unix time of the last change.
    pub updated_at: i64,
    /// Whether ICC data is held (store-and-forward rows only).
    pub has_icc: bool,
    /// The point of sale's own reference, when it gave one: a stored sale is forwarded with
    /// it in the dialect's free-text field, as it would have gone online.
    pub pos_reference: Option<PosReference>,
}

impl Entry {
    /// Whether the POS was told the payment was approved (and the card completed it).
    pub fn pos_approved(&self) -> bool {
        matches!(
            self.pos_status.as_deref(),
            Some("approved" | "partially_approved" | "approved_offline")
        )
    }
}

/// Result of recording a webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRecord {
    /// First time this event id was seen.
    New,
    /// Seen before: do nothing more.
    Duplicate,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS txns (
    reference        TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    amount_minor     INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    approved_minor   INTEGER,
    masked_pan       TEXT,
    last4            TEXT,
    brand            TEXT,
    entry_mode       TEXT,
    dialect          TEXT NOT NULL,
    gateway_id       TEXT,
    original_gateway_id TEXT,
    auth_code        TEXT,
    decline_code     TEXT,
    state            TEXT NOT NULL,
    pos_status       TEXT,
    reason           TEXT,
    icc_data         BLOB,
    auth_attempts    INTEGER NOT NULL DEFAULT 0,
    resolve_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS txns_state ON txns(state);
CREATE INDEX IF NOT EXISTS txns_created ON txns(created_at);
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    reference TEXT NOT NULL,
    at        INTEGER NOT NULL,
    state     TEXT NOT NULL,
    note      TEXT
);
CREATE INDEX IF NOT EXISTS events_ref ON events(reference);
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id    TEXT PRIMARY KEY NOT NULL,
    dialect     TEXT NOT NULL,
    reference   TEXT,
    gateway_id  TEXT,
    event_type  TEXT,
    received_at INTEGER NOT NULL
);
";

/// Schema version 2: the POS API's durable memory ([`api_store`]): stored answers to
/// request ids and the transaction records the API serves. Bodies are the API's own JSON,
/// which carries the PAN masked only.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS api_requests (
    request_id  TEXT PRIMARY KEY NOT NULL,
    fingerprint BLOB NOT NULL,
    status      INTEGER NOT NULL,
    location    TEXT,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_requests_created ON api_requests(created_at);
CREATE TABLE IF NOT EXISTS api_transactions (
    id         TEXT PRIMARY KEY NOT NULL,
    status     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_transactions_status ON api_transactions(status);
";

/// Schema version 3: claims (a resolver or forwarder leases a row before it sends anything
/// for it, so two of them never act on one row) and the follow-up operations (refund, void,
/// capture) as rows of their own with their own idempotency keys ([`ops`]).
const SCHEMA_V3: &str = "
ALTER TABLE txns ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS ops (
    reference         TEXT PRIMARY KEY NOT NULL,
    op                TEXT NOT NULL,
    parent_gateway_id TEXT NOT NULL,
    parent_reference  TEXT,
    amount_minor      INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    dialect           TEXT NOT NULL,
    state             TEXT NOT NULL,
    gateway_id        TEXT,
    reason            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ops_parent ON ops(parent_gateway_id);
CREATE INDEX IF NOT EXISTS ops_state ON ops(state);
";

/// Schema version 4: the point of sale's own reference on the API's transaction records, so
/// a till that lost its state finds its payment by its order number (`GET
/// /v1/transactions?reference=…`), and the index the newest-first listing pages through.
const SCHEMA_V4: &str = "
ALTER TABLE api_transactions ADD COLUMN pos_reference TEXT;
CREATE INDEX IF NOT EXISTS api_transactions_pos_reference ON api_transactions(pos_reference);
CREATE INDEX IF NOT EXISTS api_transactions_created ON api_transactions(created_at, id);
";

/// Schema version 5: the point of sale's own reference on the relay's rows, so a sale
/// approved offline and forwarded later carries it to the gateway like an online one.
/// Rows from before read as without one.
const SCHEMA_V5: &str = "
ALTER TABLE txns ADD COLUMN pos_reference TEXT;
";

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 5;

/// How long a gateway may still process a request after the bridge stopped waiting for it,
/// seconds, unless configured: a lookup that finds nothing before then proves nothing.
pub const DEFAULT_PROCESSING_WINDOW_SECS: i64 = 600;

/// How long a sale in flight holds its row unless configured (claimed at
/// [`Journal::begin_authorization`], released with its outcome), seconds: longer than the
/// longest transaction. A row whose process died is left to the resolver after this. The
/// relay sets it to the resolver's `min_age_secs` ([`Journal::set_in_flight`]).
pub const IN_FLIGHT_SECS: i64 = 300;

/// The decline code of an authorization refused because its reference was used before.
/// Its outcome (a decline) belongs to that attempt, which sent nothing, not to the row the
/// reference names: [`Journal::record_outcome`] leaves the row as it is.
pub const REFERENCE_USED: &str = "reference_used";

/// Retries of a write that found the database locked, on top of SQLite's own busy timeout.
const BUSY_RETRIES: u32 = 20;

const COLUMNS: &str = "reference, kind, amount_minor, currency, approved_minor, masked_pan, last4, brand, dialect, gateway_id, auth_code, decline_code, state, pos_status, reason, auth_attempts, resolve_attempts, next_attempt_at, created_at, updated_at, icc_data IS NOT NULL, pos_reference";

/// The journal: one SQLite connection behind a mutex. Every write is its own transaction,
/// committed with `synchronous=FULL` (fsync of the WAL) before the call returns.
pub struct Journal {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    /// See [`Journal::set_processing_window`].
    window_secs: AtomicI64,
    /// See [`Journal::run_inline`].
    inline: AtomicBool,
    /// See [`Journal::set_in_flight`].
    in_flight_secs: AtomicI64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

/// Short, printable, bounded text for the `reason` column.
fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(160).collect()
}

impl Journal {
    /// Opens (creating when absent) the journal at `path` with the system clock.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// Opens the journal with a given clock (tests follow the sandbox's virtual clock).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<Journal, JournalError> {
        let conn = Connection::open(path)?;
        #[cfg(unix)]
        restrict_permissions(path);
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL survives a crash of the writer; FULL fsyncs the WAL at every commit, so a row
        // written "before the request leaves" is on disk before it leaves.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&conn)?;
        Ok(Journal {
            conn: Mutex::new(conn),
            clock,
            window_secs: AtomicI64::new(DEFAULT_PROCESSING_WINDOW_SECS),
            inline: AtomicBool::new(false),
            in_flight_secs: AtomicI64::new(IN_FLIGHT_SECS),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets how long after an authorization was written the gateway may still process it
    /// (its processing window, seconds). Until then a lookup or reversal that finds nothing
    /// is not an answer: the row stays open and is asked about again.
    pub fn set_processing_window(&self, secs: i64) {
        self.window_secs.store(secs.max(0), Ordering::Relaxed);
    }

    /// Runs [`Journal::blocking`] calls on the calling task after a yield instead of on a
    /// blocking thread: for a deterministic single-threaded model of the world, where every
    /// journal call is still a point at which other tasks run, in an order the seed fixes.
    pub fn run_inline(&self, inline: bool) {
        self.inline.store(inline, Ordering::Relaxed);
    }

    /// Sets how long a sale or forward in flight holds its row, seconds (the longest a
    /// transaction runs; the resolver's `min_age_secs`).
    pub fn set_in_flight(&self, secs: i64) {
        self.in_flight_secs.store(secs.max(0), Ordering::Relaxed);
    }

    fn in_flight(&self) -> i64 {
        self.in_flight_secs.load(Ordering::Relaxed)
    }

    /// The processing window in force, seconds.
    pub fn processing_window(&self) -> i64 {
        self.window_secs.load(Ordering::Relaxed)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it. The write lock is taken
    /// at `BEGIN`, so what `f` reads cannot change before it writes (no lost update between
    /// two processes on one file); `SQLITE_BUSY` is retried with a growing pause after
    /// SQLite's own busy timeout, never dropped.
    ///
    /// # Errors
    /// `f`'s error, [`JournalError::Sql`], or [`JournalError::Busy`] after every retry.
    fn write<T>(
        &self,
        mut f: impl FnMut(&rusqlite::Transaction<'_>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let mut db = self.db();
        for attempt in 1..=BUSY_RETRIES {
            let run: Result<T, JournalError> = (|| {
                let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&tx)?;
                crate::telemetry::metrics::journal_write(|| tx.commit())?;
                Ok(out)
            })();
            match run {
                Err(e) if e.is_busy() => {
                    tracing::warn!(attempt, "journal busy: retrying the write");
                    std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                }
                other => return other,
            }
        }
        tracing::error!("journal busy through every retry: write not made");
        Err(JournalError::Busy(BUSY_RETRIES))
    }

    /// Runs `f` on a blocking thread ([`tokio::task::spawn_blocking`]): SQLite calls (and
    /// their fsyncs and busy waits) stay off the async executor.
    ///
    /// # Errors
    /// `f`'s error; [`JournalError::Busy`] if the blocking task could not run.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        if self.inline.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
            return f(self);
        }
        let j = self.clone();
        // The caller's span goes with the work, so journal writes stay children of their
        // transaction in logs and traces.
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(&j))).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "journal task failed");
                Err(JournalError::Busy(0))
            }
        }
    }

    /// The journal's clock (Unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.unix_now()
    }

    /// The `journal_mode` and `synchronous` settings in force (`("wal", 2)` expected).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn durability(&self) -> Result<(String, i64), JournalError> {
        let db = self.db();
        let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let sync: i64 = db.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok((mode, sync))
    }

    fn event(
        db: &Connection,
        reference: &str,
        at: i64,
        state: RelayState,
        note: &str,
    ) -> rusqlite::Result<()> {
        db.execute(
            "INSERT INTO events(reference, at, state, note) VALUES (?1, ?2, ?3, ?4)",
            params![reference, at, state.as_str(), short(note)],
        )?;
        Ok(())
    }

    /// Records an authorization about to be sent (state `sending`), claimed by the
    /// transaction that sends it until its outcome is recorded (or [`IN_FLIGHT_SECS`] pass:
    /// a process that died): no resolver acts on a sale still in flight. A reference is used
    /// once: when a row with this reference exists, nothing is written and the request must
    /// not be sent ([`JournalError::ReferenceUsed`]) — re-sending it would replay the first
    /// answer (a false approval) or charge again (a dialect without idempotency).
    ///
    /// # Errors
    /// [`JournalError::ReferenceUsed`], [`JournalError::Sql`]; the request must then not be
    /// sent.
    pub fn begin_authorization(
        &self,
        req: &AuthorizationRequest,
        dialect: Dialect,
    ) -> Result<(), JournalError> {
        let now = self.now();
        self.write(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO txns(reference, kind, amount_minor, currency, masked_pan, last4, brand, entry_mode, dialect, original_gateway_id, state, auth_attempts, created_at, updated_at, claimed_until, pos_reference)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?12, ?13, ?14)",
                params![
                    req.reference.0,
                    kind_str(req.kind),
                    minor_i64(req.amount.minor()),
                    req.amount.currency().alpha,
                    (!req.masked_pan.is_empty()).then_some(&req.masked_pan),
                    req.last4,
                    req.brand,
                    format!("{:?}", req.entry_mode).to_ascii_lowercase(),
                    dialect_str(dialect),
                    req.original_gateway_id,
                    RelayState::Sending.as_str(),
                    now,
                    now.saturating_add(self.in_flight()),
                    req.pos_reference.as_ref().map(PosReference::as_str)
                ],
            )?;
            if n == 0 {
                Self::event(
                    tx,
                    &req.reference.0,
                    now,
                    current_state(tx, &req.reference.0)?,
                    "authorization with a used reference refused; not sent",
                )?;
                return Err(JournalError::ReferenceUsed);
            }
            Self::event(
                tx,
                &req.reference.0,
                now,
                RelayState::Sending,
                "authorization sent",
            )?;
            Ok(())
        })
    }

    /// Records the gateway's answer to an authorization. Only a row still `sending` (or
    /// `forwarding`, for a stored sale) takes the answer as its state; a late answer (the
    /// transaction already moved on to a reversal) only fills in the gateway id — and a late
    /// *approval* of a row already settled as not found puts the reversal back on the list.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn record_authorization(
        &self,
        reference: &Reference,
        result: &AuthorizationResult,
    ) -> Result<RelayState, JournalError> {
        let now = self.now();
        let (state, gateway_id, approved, auth_code, decline, reason) = match result {
            AuthorizationResult::Approved {
                gateway_id,
                approved_amount,
                issuer,
            } => (
                RelayState::Approved,
                Some(gateway_id.clone()),
                Some(minor_i64(approved_amount.minor())),
                issuer.auth_code.clone(),
                None,
                None,
            ),
            AuthorizationResult::Declined {
                gateway_id,
                code,
                reason,
                ..
            } => (
                RelayState::Declined,
                gateway_id.clone(),
                None,
                None,
                code.clone(),
                Some(reason.clone()),
            ),
            AuthorizationResult::Unavailable { reason } => (
                RelayState::Unavailable,
                None,
                None,
                None,
                None,
                Some(reason.clone()),
            ),
            AuthorizationResult::Unknown { reason } => (
                RelayState::Unknown,
                None,
                None,
                None,
                None,
                Some(reason.clone()),
            ),
        };
        self.write(|tx| {
            let cur = current_state(tx, &reference.0)?;
            let new_state = match (cur, state) {
                (RelayState::Sending, s) => s,
                // A forward answered: approved → forwarded, declined → reported.
                (RelayState::Forwarding, RelayState::Approved) => RelayState::Forwarded,
                (RelayState::Forwarding, RelayState::Declined) => RelayState::ForwardDeclined,
                (RelayState::Forwarding, RelayState::Unavailable) => RelayState::Stored,
                (RelayState::Forwarding, _) => RelayState::Forwarding,
                // Late approval after the row was settled as "nothing there" (or "declined"
                // by a lookup that raced it): money moved, reverse it.
                (RelayState::NotFound | RelayState::Unknown, RelayState::Approved) => {
                    RelayState::ReversalDue
                }
                (c, _) => c,
            };
            tx.execute(
                "UPDATE txns SET state = ?2, gateway_id = COALESCE(gateway_id, ?3), approved_minor = COALESCE(?4, approved_minor),
                     auth_code = COALESCE(?5, auth_code), decline_code = COALESCE(?6, decline_code), reason = COALESCE(?7, reason), updated_at = ?8,
                     icc_data = CASE WHEN ?9 THEN NULL ELSE icc_data END,
                     claimed_until = CASE WHEN ?10 = 'forwarding' THEN 0 ELSE claimed_until END
                 WHERE reference = ?1 AND state = ?10",
                params![
                    reference.0,
                    new_state.as_str(),
                    gateway_id,
                    approved,
                    auth_code,
                    decline,
                    reason.as_deref().map(short),
                    now,
                    !matches!(new_state, RelayState::Stored | RelayState::Forwarding),
                    cur.as_str()
                ],
            )?;
            let note = format!("authorization answer: {}", state.as_str());
            Self::event(tx, &reference.0, now, new_state, &note)?;
            Ok(new_state)
        })
    }

    /// Records that a reversal is due and about to be sent (`reversal_due`). Returns `false`
    /// (and writes nothing) when the row is already reversed, or is a stored sale whose
    /// forward is the resolver's: nothing is to be sent then.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn begin_reversal(
        &self,
        req: &ReversalRequest,
        dialect: Dialect,
    ) -> Result<bool, JournalError> {
        let now = self.now();
        let reason = format!("reversal: {:?}", req.reason).to_ascii_lowercase();
        self.write(|tx| {
            let cur = match current_state(tx, &req.reference.0) {
                Ok(c) => Some(c),
                Err(JournalError::NotFound) => None,
                Err(e) => return Err(e),
            };
            match cur {
                Some(RelayState::Reversed | RelayState::Forwarding) => return Ok(false),
                Some(c) => {
                    tx.execute(
                        "UPDATE txns SET state = ?2, gateway_id = COALESCE(gateway_id, ?3), reason = ?4, updated_at = ?5 WHERE reference = ?1 AND state = ?6",
                        params![req.reference.0, RelayState::ReversalDue.as_str(), req.gateway_id, reason, now, c.as_str()],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO txns(reference, kind, amount_minor, currency, dialect, gateway_id, state, reason, created_at, updated_at)
                         VALUES (?1, 'sale', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                        params![
                            req.reference.0,
                            minor_i64(req.amount.minor()),
                            req.amount.currency().alpha,
                            dialect_str(dialect),
                            req.gateway_id,
                            RelayState::ReversalDue.as_str(),
                            reason,
                            now
                        ],
                    )?;
                }
            }
            Self::event(tx, &req.reference.0, now, RelayState::ReversalDue, &reason)?;
            Ok(true)
        })
    }

    /// Records a reversal's answer: `reversed`, `not_found` or `reversal_failed`, and
    /// returns the state the row is in afterwards.
    ///
    /// Only a row whose reversal is due takes the answer (a webhook or another resolver may
    /// have settled it meanwhile). "Not found" settles the row only when it is an answer:
    /// the gateway's processing window since the row was written has closed and no approval
    /// was seen for it; before that, or after a late approval gave the row a gateway id and
    /// an approved amount, the reversal stays open (`reversal_failed`) and is made again.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn record_reversal(
        &self,
        reference: &Reference,
        result: &ReversalResult,
    ) -> Result<RelayState, JournalError> {
        let now = self.now();
        let window = self.processing_window();
        self.write(|tx| {
            let (cur, created, late_approval): (String, i64, bool) = tx.query_row(
                "SELECT state, created_at, gateway_id IS NOT NULL AND approved_minor IS NOT NULL FROM txns WHERE reference = ?1",
                params![reference.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ).optional()?.ok_or(JournalError::NotFound)?;
            let cur = RelayState::parse(&cur).ok_or(JournalError::Corrupt("state"))?;
            if !matches!(cur, RelayState::ReversalDue | RelayState::ReversalFailed) {
                Self::event(tx, &reference.0, now, cur, "reversal answer after the row was settled: kept")?;
                return Ok(cur);
            }
            let (state, reason) = match result {
                ReversalResult::Reversed => (RelayState::Reversed, "reversed".to_owned()),
                ReversalResult::NotFound if late_approval => (
                    RelayState::ReversalFailed,
                    "not found, yet an approval was seen: reverse it by its id".into(),
                ),
                ReversalResult::NotFound if now < created.saturating_add(window) => (
                    RelayState::ReversalFailed,
                    "not found yet; the gateway may still process it: asking again".into(),
                ),
                ReversalResult::NotFound => {
                    (RelayState::NotFound, "not found at the gateway after its processing window".into())
                }
                ReversalResult::Failed { reason } => (
                    RelayState::ReversalFailed,
                    format!("reversal failed: {reason}"),
                ),
            };
            Self::move_row(tx, &reference.0, cur, state, &reason, now)?;
            Ok(state)
        })
    }

    /// Records what the POS was told, and settles the relay state from it: an approval the
    /// card completed is never reversed; anything else that may have moved money
    /// (`approved` at the gateway, `sending`, `unknown`) becomes `reversal_due`; an
    /// offline approval becomes `stored` (with `saf`'s ICC data, when given and safe).
    /// A row that already holds what the POS was told is not changed by a second outcome
    /// for its reference (a reused reference was refused and moved no money).
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn record_outcome(
        &self,
        outcome: &Outcome,
        dialect: Dialect,
        saf: Option<&AuthorizationRequest>,
    ) -> Result<RelayState, JournalError> {
        let now = self.now();
        // Forwarded with the online data set of the authorization attempt (Y3); a Y1 offline
        // approval never went online, so its final data set (`Outcome::final_data`: the TC
        // with the data it was computed over, EMV Book 4 §12.2.5 offline advice) is what the
        // dialect's sale message carries on forward, and the issuer verifies the TC.
        let saf_data = saf
            .map(|r| &r.icc_data)
            .or(outcome.final_data.as_ref().filter(|_| saf.is_none()));
        let icc = match saf_data {
            Some(data) if outcome.status == OutcomeStatus::ApprovedOffline => {
                if icc_is_safe(data) {
                    Some(data.to_vec())
                } else {
                    tracing::error!(reference = %outcome.reference, "icc data holds clear card data: not stored; the sale cannot be forwarded");
                    None
                }
            }
            _ => None,
        };
        self.write(|tx| {
            let cur: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT state, pos_status FROM txns WHERE reference = ?1",
                    params![outcome.reference.0],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let cur = match cur {
                Some((s, told)) => {
                    let s = RelayState::parse(&s).ok_or(JournalError::Corrupt("state"))?;
                    let refused_reuse = !outcome.status.is_approved()
                        && outcome.decline_code.as_deref() == Some(REFERENCE_USED);
                    if told.is_some() || refused_reuse {
                        let note = format!("outcome of another attempt with this reference ignored: {}", pos_str(outcome.status));
                        Self::event(tx, &outcome.reference.0, now, s, &note)?;
                        return Ok(s);
                    }
                    Some(s)
                }
                None => None,
            };
            let state = match (outcome.status, cur) {
                // The money's truth stays: a row already being reversed (or reversed) is not
                // made "approved" by what the POS was told; the report shows the two apart.
                (
                    OutcomeStatus::Approved | OutcomeStatus::PartiallyApproved,
                    Some(
                        c @ (RelayState::Reversed
                        | RelayState::ReversalDue
                        | RelayState::ReversalFailed
                        | RelayState::NotFound),
                    ),
                ) => {
                    tracing::error!(reference = %outcome.reference, state = %c,
                        "POS told approved while the journal is reversing the payment");
                    c
                }
                (OutcomeStatus::Approved | OutcomeStatus::PartiallyApproved, _) => RelayState::Approved,
                (OutcomeStatus::ApprovedOffline, _) => RelayState::Stored,
                (_, None) => RelayState::Closed,
                (_, Some(RelayState::Approved | RelayState::Sending | RelayState::Unknown)) => {
                    RelayState::ReversalDue
                }
                (_, Some(c)) => c,
            };
            let card = &outcome.card;
            if cur.is_none() {
                tx.execute(
                    "INSERT INTO txns(reference, kind, amount_minor, currency, masked_pan, last4, brand, dialect, state, created_at, updated_at, pos_reference)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
                    params![
                        outcome.reference.0,
                        kind_str(outcome.kind),
                        minor_i64(outcome.amount.minor()),
                        outcome.amount.currency().alpha,
                        card.masked_pan,
                        card.last4,
                        card.brand,
                        dialect_str(dialect),
                        state.as_str(),
                        now,
                        outcome.pos_reference.as_ref().map(PosReference::as_str)
                    ],
                )?;
            }
            let approved = outcome.approved_amount.map(|m| minor_i64(m.minor()));
            tx.execute(
                "UPDATE txns SET state = ?2, pos_status = ?3, approved_minor = COALESCE(?4, approved_minor),
                     gateway_id = COALESCE(gateway_id, ?5), auth_code = COALESCE(auth_code, ?6),
                     decline_code = COALESCE(decline_code, ?7), reason = COALESCE(?8, reason),
                     masked_pan = COALESCE(masked_pan, ?9), last4 = COALESCE(last4, ?10), brand = COALESCE(brand, ?11),
                     icc_data = ?12, updated_at = ?13, claimed_until = 0
                 WHERE reference = ?1",
                params![
                    outcome.reference.0,
                    state.as_str(),
                    pos_str(outcome.status),
                    approved,
                    outcome.gateway_id,
                    outcome.auth_code,
                    outcome.decline_code,
                    outcome.reason.as_deref().map(short),
                    card.masked_pan,
                    card.last4,
                    card.brand,
                    icc,
                    now
                ],
            )?;
            let note = format!("pos told: {}", pos_str(outcome.status));
            Self::event(tx, &outcome.reference.0, now, state, &note)?;
            Ok(state)
        })
    }

    /// The one way a row changes state outside an answer: `from` → `to` inside the caller's
    /// transaction, releasing any claim. ICC data lives only as long as a stored sale may
    /// still be forwarded.
    fn move_row(
        tx: &rusqlite::Transaction<'_>,
        reference: &str,
        from: RelayState,
        to: RelayState,
        reason: &str,
        now: i64,
    ) -> Result<bool, JournalError> {
        let clear_icc = !matches!(
            to,
            RelayState::Stored | RelayState::Forwarding | RelayState::Escalated
        );
        let n = tx.execute(
            "UPDATE txns SET state = ?2, reason = ?3, updated_at = ?4, claimed_until = 0,
                 auth_attempts = auth_attempts + (CASE WHEN ?2 = 'forwarding' THEN 1 ELSE 0 END),
                 icc_data = CASE WHEN ?5 THEN NULL ELSE icc_data END
             WHERE reference = ?1 AND state = ?6",
            params![
                reference,
                to.as_str(),
                short(reason),
                now,
                clear_icc,
                from.as_str()
            ],
        )?;
        if n == 1 {
            Self::event(tx, reference, now, to, reason)?;
        }
        Ok(n == 1)
    }

    /// Compare-and-set: moves the row to `to` only if it is in one of `from` now, and says
    /// whether it moved. No writer overwrites a state it did not read.
    ///
    /// # Errors
    /// [`JournalError::NotFound`] when there is no such row; [`JournalError::Sql`].
    pub fn transition(
        &self,
        reference: &Reference,
        from: &[RelayState],
        to: RelayState,
        reason: &str,
    ) -> Result<bool, JournalError> {
        let now = self.now();
        self.write(|tx| {
            let cur = current_state(tx, &reference.0)?;
            if !from.contains(&cur) {
                return Ok(false);
            }
            Self::move_row(tx, &reference.0, cur, to, reason, now)
        })
    }

    /// Claims the row for `lease_secs` if it is still in `state` and nobody else holds it:
    /// a resolver or forwarder sends nothing for a row it has not claimed. The claim ends
    /// with the row's next state change, or when the lease runs out (a claimant that
    /// crashed).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    ///
    /// A sale in flight (sent, or answered and waiting for the card or its reversal) or a
    /// forward in flight holds its row until `min_age` seconds after its last write even if
    /// its own claim lasts longer: `resolve --min-age-secs 0` is the operator saying that
    /// nothing runs.
    pub fn claim(
        &self,
        reference: &Reference,
        state: RelayState,
        lease_secs: i64,
        min_age: i64,
    ) -> Result<bool, JournalError> {
        let now = self.now();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE txns SET claimed_until = ?3 WHERE reference = ?1 AND state = ?2
                   AND (claimed_until <= ?4 OR (state IN ('sending','unknown','approved','forwarding') AND updated_at <= ?5))",
                params![reference.0, state.as_str(), now.saturating_add(lease_secs.max(1)), now, now.saturating_sub(min_age)],
            )?;
            Ok(n == 1)
        })
    }

    /// Ends a claim without a state change (the attempt found nothing definite).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn release(&self, reference: &Reference) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE txns SET claimed_until = 0 WHERE reference = ?1",
                params![reference.0],
            )?;
            Ok(())
        })
    }

    /// Claims a stored sale for forwarding: `stored` → `forwarding` as one compare-and-set,
    /// so of two forwarders (a background pass and a manual `resolve`, or two lanes starting)
    /// exactly one sends it.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn claim_forward(&self, reference: &Reference) -> Result<bool, JournalError> {
        let now = self.now();
        self.write(|tx| {
            let moved = Self::move_row(
                tx,
                &reference.0,
                RelayState::Stored,
                RelayState::Forwarding,
                "forwarding stored sale",
                now,
            )?;
            // In flight until its answer is recorded: no resolver looks it up meanwhile.
            tx.execute(
                "UPDATE txns SET claimed_until = ?2 WHERE reference = ?1 AND state = 'forwarding'",
                params![reference.0, now.saturating_add(self.in_flight())],
            )?;
            Ok(moved)
        })
    }

    /// Sets the gateway id when it is not known yet.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn note_gateway_id(
        &self,
        reference: &Reference,
        gateway_id: &str,
    ) -> Result<(), JournalError> {
        let now = self.now();
        self.write(|tx| {
            tx.execute(
                "UPDATE txns SET gateway_id = COALESCE(gateway_id, ?2), updated_at = ?3 WHERE reference = ?1",
                params![reference.0, gateway_id, now],
            )?;
            Ok(())
        })
    }

    /// Counts one resolver attempt, schedules the next one at `next_at` and ends the claim.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn note_attempt(&self, reference: &Reference, next_at: i64) -> Result<i64, JournalError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE txns SET resolve_attempts = resolve_attempts + 1, next_attempt_at = ?2, claimed_until = 0 WHERE reference = ?1",
                params![reference.0, next_at],
            )?;
            Ok(tx
                .query_row(
                    "SELECT resolve_attempts FROM txns WHERE reference = ?1",
                    params![reference.0],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0))
        })
    }

    /// One row.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn get(&self, reference: &str) -> Result<Option<Entry>, JournalError> {
        let db = self.db();
        let mut st = db.prepare(&format!("SELECT {COLUMNS} FROM txns WHERE reference = ?1"))?;
        let mut rows = st.query_map(params![reference], row_entry)?;
        rows.next().transpose()?.map(finish_entry).transpose()
    }

    /// Finds the row with this gateway id.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn by_gateway_id(&self, gateway_id: &str) -> Result<Option<Entry>, JournalError> {
        let reference: Option<String> = self
            .db()
            .query_row(
                "SELECT reference FROM txns WHERE gateway_id = ?1 LIMIT 1",
                params![gateway_id],
                |r| r.get(0),
            )
            .optional()?;
        match reference {
            Some(r) => self.get(&r),
            None => Ok(None),
        }
    }

    fn select(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Entry>, JournalError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {COLUMNS} FROM txns WHERE {filter} ORDER BY created_at, reference LIMIT 10000"
        ))?;
        let rows = st.query_map(args, row_entry)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(finish_entry(r?)?);
        }
        Ok(out)
    }

    /// Rows the resolver should work on now: unsettled states whose backoff has passed and
    /// that were last touched at least `min_age` seconds ago (so a transaction still in
    /// flight in another task is left alone), plus gateway approvals the POS never saw.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn due(&self, now: i64, min_age: i64) -> Result<Vec<Entry>, JournalError> {
        let cutoff = now.saturating_sub(min_age);
        self.select(
            "next_attempt_at <= ?1 AND updated_at <= ?2 AND (claimed_until <= ?1 OR state IN ('sending','unknown','approved','forwarding')) AND (state IN ('sending','unknown','reversal_due','reversal_failed','forwarding')
               OR (state = 'approved' AND pos_status IS NULL))",
            &[&now, &cutoff],
        )
    }

    /// Stored (store-and-forward) rows whose backoff has passed.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn stored(&self, now: i64) -> Result<Vec<Entry>, JournalError> {
        self.select("state = 'stored' AND next_attempt_at <= ?1", &[&now])
    }

    /// Rows created in `[from, to)` (Unix seconds).
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn between(&self, from: i64, to: i64) -> Result<Vec<Entry>, JournalError> {
        self.select("created_at >= ?1 AND created_at < ?2", &[&from, &to])
    }

    /// Every unsettled row, whatever its age.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn unresolved(&self) -> Result<Vec<Entry>, JournalError> {
        self.select(
            "state IN ('sending','unknown','reversal_due','reversal_failed','forwarding','stored','forward_declined','escalated')
               OR (state = 'approved' AND pos_status IS NULL)",
            &[],
        )
    }

    /// Count and total (minor units) of stored rows in `currency`, for the SAF limits.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn stored_totals(&self, currency: &str) -> Result<(u64, u64), JournalError> {
        let (n, total): (i64, i64) = self.db().query_row(
            "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM txns WHERE state IN ('stored','forwarding') AND currency = ?1",
            params![currency],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n.max(0) as u64, total.max(0) as u64))
    }

    /// When the oldest sale still waiting to be forwarded was stored (unix seconds).
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn oldest_stored_at(&self) -> Result<Option<i64>, JournalError> {
        Ok(self.db().query_row(
            "SELECT MIN(created_at) FROM txns WHERE state IN ('stored','forwarding')",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?)
    }

    /// The stored ICC data of a store-and-forward row.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn icc_data(&self, reference: &str) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self
            .db()
            .query_row(
                "SELECT icc_data FROM txns WHERE reference = ?1",
                params![reference],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// The history of one row: (unix time, state, note), oldest first.
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn history(&self, reference: &str) -> Result<Vec<(i64, String, String)>, JournalError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT at, state, COALESCE(note, '') FROM events WHERE reference = ?1 ORDER BY id LIMIT 1000",
        )?;
        let rows = st.query_map(params![reference], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a webhook event id (dedupe). The caller acts only on [`WebhookRecord::New`].
    ///
    /// # Errors
    /// [`JournalError::Sql`].
    pub fn record_webhook(
        &self,
        event_id: &str,
        dialect: Dialect,
        reference: Option<&str>,
        gateway_id: Option<&str>,
        event_type: Option<&str>,
    ) -> Result<WebhookRecord, JournalError> {
        let now = self.now();
        let n = self.write(|tx| {
            Ok(tx.execute(
                "INSERT OR IGNORE INTO webhook_events(event_id, dialect, reference, gateway_id, event_type, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![short(event_id), dialect_str(dialect), reference, gateway_id, event_type.map(short), now],
            )?)
        })?;
        Ok(if n == 1 {
            WebhookRecord::New
        } else {
            WebhookRecord::Duplicate
        })
    }

    /// Appends a note to a row's history without changing its state.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn note(&self, reference: &Reference, note: &str) -> Result<(), JournalError> {
        let now = self.now();
        self.write(|tx| {
            let state = current_state(tx, &reference.0)?;
            Self::event(tx, &reference.0, now, state, note)?;
            Ok(())
        })
    }
}

/// Brings the schema to [`SCHEMA_VERSION`]. Every step is idempotent (`IF NOT EXISTS`), so a
/// journal written by an older build gains the new tables and keeps its rows; a journal of a
/// newer build is opened as it is (its extra tables are not ours to touch).
fn migrate(conn: &Connection) -> Result<(), JournalError> {
    conn.execute_batch(SCHEMA)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 2 {
        conn.execute_batch(SCHEMA_V2)?;
    }
    if version < SCHEMA_VERSION {
        // Under the write lock, re-read: another process may have migrated meanwhile.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = (|| -> rusqlite::Result<()> {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version < 3 {
                conn.execute_batch(SCHEMA_V3)?;
            }
            if version < 4 {
                conn.execute_batch(SCHEMA_V4)?;
            }
            if version < 5 {
                conn.execute_batch(SCHEMA_V5)?;
            }
            if version < SCHEMA_VERSION {
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            Ok(())
        })();
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
    Ok(())
}

fn current_state(db: &Connection, reference: &str) -> Result<RelayState, JournalError> {
    let s: Option<String> = db
        .query_row(
            "SELECT state FROM txns WHERE reference = ?1",
            params![reference],
            |r| r.get(0),
        )
        .optional()?;
    match s {
        None => Err(JournalError::NotFound),
        Some(s) => RelayState::parse(&s).ok_or(JournalError::Corrupt("state")),
    }
}

/// A row as read: the entry, its state and POS reference as stored (checked by
/// [`finish_entry`]).
type RawEntry = (Entry, String, Option<String>);

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok((
        Entry {
            reference: r.get(0)?,
            kind: r.get(1)?,
            amount_minor: r.get(2)?,
            currency: r.get(3)?,
            approved_minor: r.get(4)?,
            masked_pan: r.get(5)?,
            last4: r.get(6)?,
            brand: r.get(7)?,
            dialect: r.get(8)?,
            gateway_id: r.get(9)?,
            auth_code: r.get(10)?,
            decline_code: r.get(11)?,
            state: RelayState::Closed,
            pos_status: r.get(13)?,
            reason: r.get(14)?,
            auth_attempts: r.get(15)?,
            resolve_attempts: r.get(16)?,
            next_attempt_at: r.get(17)?,
            created_at: r.get(18)?,
            updated_at: r.get(19)?,
            has_icc: r.get(20)?,
            pos_reference: None,
        },
        r.get(12)?,
        r.get(21)?,
    ))
}

fn finish_entry((mut e, state, pos_reference): RawEntry) -> Result<Entry, JournalError> {
    e.state = RelayState::parse(&state).ok_or(JournalError::Corrupt("state"))?;
    e.pos_reference = pos_reference
        .map(PosReference::new)
        .transpose()
        .map_err(|_| JournalError::Corrupt("pos_reference"))?;
    if parse_kind(&e.kind).is_none() {
        return Err(JournalError::Corrupt("kind"));
    }
    Ok(e)
}

fn minor_i64(m: u64) -> i64 {
    i64::try_from(m).unwrap_or(i64::MAX)
}

/// Journal files hold payment records: owner read/write only.
#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// Whether ICC data may be stored: no clear PAN (`5A`), no clear track 2 equivalent (`57`),
/// no track 1/2 discretionary or track data tags (`56`, `9F1F`, `9F20`, `9F6B`), and no
/// unparseable bytes (which could hide anything). A PAN or track masked by the reader
/// (digit nibbles replaced by `A`, or `*`) is fine; the SRED container `FF7F` is ciphertext
/// and passes. PIN data never appears in the online data set.
pub fn icc_is_safe(data: &[u8]) -> bool {
    fn walk(data: &[u8], depth: u8) -> bool {
        if depth > 4 {
            return false;
        }
        for item in tlv::parse(data) {
            let Ok(t) = item else { return false };
            let v = t.value();
            match t.tag() {
                Tag(0xFF7F) => continue,
                Tag(0x5A) | Tag(0x57) | Tag(0x9F6B) => {
                    // Masked when any PAN digit nibble before the separator is `A`.
                    let nibbles: Vec<u8> = v.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
                    let pan: Vec<u8> = nibbles.iter().copied().take_while(|&n| n != 0x0D).collect();
                    if !pan.contains(&0x0A) {
                        return false;
                    }
                }
                Tag(0x56) | Tag(0x9F1F) | Tag(0x9F20) | Tag(0x99) => return false,
                _ => {}
            }
            if t.is_constructed() && !walk(v, depth + 1) {
                return false;
            }
        }
        true
    }
    walk(data, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::OffsetClock;
    use bytes::Bytes;
    use emvbridge_core::money::Money;
    use emvbridge_core::txn::host::{EntryMode, IssuerResponse, ReversalReason};
    use emvbridge_core::txn::CardFacts;

    pub(crate) fn temp_path(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!("emvb-{name}-{}-{nanos}.db", std::process::id()))
    }

    fn req(reference: &str, minor: u64) -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference(reference.into()),
            kind: AuthKind::Sale,
            amount: Money::from_minor(minor, "USD").unwrap(),
            amount_other: Money::from_minor(0, "USD").unwrap(),
            entry_mode: EntryMode::Chip,
            // 5A masked by the reader (A nibbles), 9F02, FF7F container.
            icc_data: Bytes::from(
                hex::decode("5A08401200AAAAAA54399F0206000000001234FF7F03DFDF1000").unwrap(),
            ),
            masked_pan: "401200******5439".into(),
            last4: Some("5439".into()),
            brand: Some("visa".into()),
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        }
    }

    fn outcome(reference: &str, status: OutcomeStatus, minor: u64) -> Outcome {
        Outcome {
            reference: Reference(reference.into()),
            pos_reference: None,
            kind: AuthKind::Sale,
            status,
            amount: Money::from_minor(minor, "USD").unwrap(),
            approved_amount: status
                .is_approved()
                .then(|| Money::from_minor(minor, "USD").unwrap()),
            gateway_id: None,
            auth_code: None,
            decline_code: None,
            reason: None,
            reversal: None,
            card: CardFacts {
                masked_pan: Some("401200******5439".into()),
                last4: Some("5439".into()),
                ..CardFacts::default()
            },
            final_data: None,
        }
    }

    fn approved(id: &str, minor: u64) -> AuthorizationResult {
        AuthorizationResult::Approved {
            gateway_id: id.into(),
            approved_amount: Money::from_minor(minor, "USD").unwrap(),
            issuer: IssuerResponse {
                arc: *b"00",
                auth_code: Some("A1B2C3".into()),
                ..IssuerResponse::default()
            },
        }
    }

    #[test]
    fn wal_full_and_lifecycle_with_history() {
        let p = temp_path("life");
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.durability().unwrap(), ("wal".to_owned(), 2));
        let r = req("ref-1", 1234);
        j.begin_authorization(&r, Dialect::PaymentsAi).unwrap();
        let e = j.get("ref-1").unwrap().unwrap();
        assert_eq!(
            (e.state, e.amount_minor, e.auth_attempts),
            (RelayState::Sending, 1234, 1)
        );
        assert_eq!(e.masked_pan.as_deref(), Some("401200******5439"));
        assert!(!e.has_icc, "icc data is not kept for an online sale");
        assert_eq!(
            j.record_authorization(&r.reference, &approved("txn_1", 1234))
                .unwrap(),
            RelayState::Approved
        );
        // Not yet told to the POS: the resolver would reverse it after the grace period.
        assert_eq!(j.due(j.now() + 10, 5).unwrap().len(), 1);
        assert!(
            j.due(j.now(), 5).unwrap().is_empty(),
            "in-flight rows are left alone"
        );
        let mut o = outcome("ref-1", OutcomeStatus::Approved, 1234);
        o.gateway_id = Some("txn_1".into());
        assert_eq!(
            j.record_outcome(&o, Dialect::PaymentsAi, None).unwrap(),
            RelayState::Approved
        );
        let e = j.get("ref-1").unwrap().unwrap();
        assert_eq!(e.gateway_id.as_deref(), Some("txn_1"));
        assert_eq!(e.auth_code.as_deref(), Some("A1B2C3"));
        assert!(e.pos_approved());
        assert!(j.due(j.now() + 1000, 0).unwrap().is_empty());
        let h: Vec<String> = j
            .history("ref-1")
            .unwrap()
            .into_iter()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(h, ["sending", "approved", "approved"]);
        drop(j);
        // Reopens with the data intact; the file is owner-only.
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.get("ref-1").unwrap().unwrap().state, RelayState::Approved);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o077,
                0
            );
        }
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn y1_is_stored_with_its_tc() {
        let p = temp_path("saf-y1");
        let j = Journal::open(&p).unwrap();
        let tc: &[u8] = &[0x9F, 0x27, 0x01, 0x40, 0x9F, 0x26, 0x02, 0xAB, 0xCD];
        let mut o = outcome("y1", OutcomeStatus::ApprovedOffline, 500);
        o.final_data = Some(Bytes::from_static(tc));
        // Never went online (no request): the final data set is what is forwarded.
        assert_eq!(
            j.record_outcome(&o, Dialect::Number, None).unwrap(),
            RelayState::Stored
        );
        assert_eq!(j.icc_data("y1").unwrap().as_deref(), Some(tc));
        assert_eq!(j.oldest_stored_at().unwrap(), Some(j.now()));
        assert_eq!(j.get("y1").unwrap().unwrap().pos_reference, None);
        // A Y1 sale's row is made from its outcome: the POS reference comes from there.
        let mut o = outcome("y1-ref", OutcomeStatus::ApprovedOffline, 600);
        o.final_data = Some(Bytes::from_static(tc));
        o.pos_reference = Some(PosReference::new("T7 #1001").unwrap());
        j.record_outcome(&o, Dialect::Number, None).unwrap();
        assert_eq!(
            j.get("y1-ref").unwrap().unwrap().pos_reference,
            o.pos_reference
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_version_4_journal_gains_the_pos_reference_and_keeps_its_rows() {
        let p = temp_path("v4");
        {
            let c = Connection::open(&p).unwrap();
            for s in [SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4] {
                c.execute_batch(s).unwrap();
            }
            c.execute_batch(
                "INSERT INTO txns(reference, kind, amount_minor, currency, dialect, state, created_at, updated_at, icc_data)
                 VALUES ('old', 'sale', 700, 'USD', 'paymentsai', 'stored', 1, 1, x'9F270140');
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        }
        let j = Journal::open(&p).unwrap();
        let v: i64 = j
            .db()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 5);
        // The old stored sale reads as without a POS reference, and is still forwardable.
        let old = j.get("old").unwrap().unwrap();
        assert_eq!((old.amount_minor, old.has_icc), (700, true));
        assert_eq!(old.pos_reference, None);
        // New rows keep theirs.
        let mut r = req("new", 100);
        r.pos_reference = Some(PosReference::new("order-9").unwrap());
        j.begin_authorization(&r, Dialect::PaymentsAi).unwrap();
        assert_eq!(
            j.get("new").unwrap().unwrap().pos_reference,
            r.pos_reference
        );
        drop(j);
        // Reopening a current journal changes nothing.
        let j = Journal::open(&p).unwrap();
        assert_eq!(
            j.get("new")
                .unwrap()
                .unwrap()
                .pos_reference
                .as_ref()
                .map(PosReference::as_str),
            Some("order-9")
        );
        // A damaged stored reference is refused, not passed on.
        j.db()
            .execute(
                "UPDATE txns SET pos_reference = 'a\nb' WHERE reference = 'new'",
                [],
            )
            .unwrap();
        assert!(matches!(
            j.get("new"),
            Err(JournalError::Corrupt("pos_reference"))
        ));
        drop(j);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }

    #[test]
    fn late_answers_never_undo_a_reversal() {
        let p = temp_path("late");
        let clock = OffsetClock::new();
        let j = Journal::open_with_clock(&p, Arc::new(clock.clone())).unwrap();
        let r = req("ref-2", 500);
        j.begin_authorization(&r, Dialect::Number).unwrap();
        let rev = ReversalRequest {
            reference: r.reference.clone(),
            gateway_id: None,
            amount: r.amount,
            reason: ReversalReason::NoHostResponse,
        };
        j.begin_reversal(&rev, Dialect::Number).unwrap();
        // The hung authorization answers approved after the reversal was written.
        assert_eq!(
            j.record_authorization(&r.reference, &approved("77", 500))
                .unwrap(),
            RelayState::ReversalDue
        );
        assert_eq!(
            j.get("ref-2").unwrap().unwrap().gateway_id.as_deref(),
            Some("77")
        );
        // A reversal that found nothing after an approval was seen is no answer: still open.
        assert_eq!(
            j.record_reversal(&r.reference, &ReversalResult::NotFound)
                .unwrap(),
            RelayState::ReversalFailed
        );
        assert_eq!(
            j.record_authorization(&r.reference, &approved("77", 500))
                .unwrap(),
            RelayState::ReversalFailed
        );
        // The POS was told "unresolved": the row stays open.
        let o = outcome("ref-2", OutcomeStatus::Unresolved, 500);
        assert_eq!(
            j.record_outcome(&o, Dialect::Number, None).unwrap(),
            RelayState::ReversalFailed
        );
        clock.advance(1);
        assert_eq!(j.due(j.now(), 0).unwrap().len(), 1);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn outcomes_settle_state_and_saf_keeps_only_safe_icc() {
        let p = temp_path("saf");
        let j = Journal::open(&p).unwrap();
        // Approved at the gateway, then the card declined and the POS saw "declined".
        let r = req("ref-3", 700);
        j.begin_authorization(&r, Dialect::PaymentsAi).unwrap();
        j.record_authorization(&r.reference, &approved("t3", 700))
            .unwrap();
        let o = outcome("ref-3", OutcomeStatus::Declined, 700);
        assert_eq!(
            j.record_outcome(&o, Dialect::PaymentsAi, None).unwrap(),
            RelayState::ReversalDue
        );
        // Cancelled before going online: a closed row.
        let o = outcome("ref-4", OutcomeStatus::Cancelled, 100);
        assert_eq!(
            j.record_outcome(&o, Dialect::PaymentsAi, None).unwrap(),
            RelayState::Closed
        );
        // Y3: unavailable, then approved offline → stored with the ICC data.
        let r = req("ref-5", 900);
        j.begin_authorization(&r, Dialect::PaymentsAi).unwrap();
        j.record_authorization(
            &r.reference,
            &AuthorizationResult::Unavailable {
                reason: "connect failed".into(),
            },
        )
        .unwrap();
        let o = outcome("ref-5", OutcomeStatus::ApprovedOffline, 900);
        assert_eq!(
            j.record_outcome(&o, Dialect::PaymentsAi, Some(&r)).unwrap(),
            RelayState::Stored
        );
        assert_eq!(j.icc_data("ref-5").unwrap().unwrap(), r.icc_data.to_vec());
        assert_eq!(j.stored_totals("USD").unwrap(), (1, 900));
        // Unsafe ICC (clear 5A) is refused.
        let mut bad = req("ref-6", 100);
        bad.icc_data = Bytes::from(hex::decode("5A084012000098765439").unwrap());
        j.begin_authorization(&bad, Dialect::PaymentsAi).unwrap();
        j.record_authorization(
            &bad.reference,
            &AuthorizationResult::Unavailable { reason: "x".into() },
        )
        .unwrap();
        let o = outcome("ref-6", OutcomeStatus::ApprovedOffline, 100);
        j.record_outcome(&o, Dialect::PaymentsAi, Some(&bad))
            .unwrap();
        assert_eq!(j.icc_data("ref-6").unwrap(), None);
        // Forwarded: the ICC data goes.
        assert!(j
            .transition(
                &Reference("ref-5".into()),
                &[RelayState::Stored],
                RelayState::Forwarded,
                "ok"
            )
            .unwrap());
        assert_eq!(j.icc_data("ref-5").unwrap(), None);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn webhook_dedupe() {
        let p = temp_path("wh");
        let j = Journal::open(&p).unwrap();
        assert_eq!(
            j.record_webhook(
                "evt_1",
                Dialect::PaymentsAi,
                Some("r"),
                None,
                Some("transaction-processed")
            )
            .unwrap(),
            WebhookRecord::New
        );
        assert_eq!(
            j.record_webhook("evt_1", Dialect::PaymentsAi, Some("r"), None, None)
                .unwrap(),
            WebhookRecord::Duplicate
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn icc_safety() {
        assert!(icc_is_safe(
            &hex::decode("5A08401200AAAAAA54399F0206000000001234").unwrap()
        ));
        assert!(icc_is_safe(
            &hex::decode("5712401200AAAAAA5439D2512201000000000000").unwrap()
        ));
        assert!(!icc_is_safe(&hex::decode("5A084012000098765439").unwrap()));
        assert!(!icc_is_safe(
            &hex::decode("57124012000098765439D2512201000000000000").unwrap()
        ));
        assert!(!icc_is_safe(&hex::decode("560100").unwrap()));
        assert!(!icc_is_safe(&[0x5A, 0x09, 0x40]), "truncated");
        // Inside a constructed template, too.
        assert!(!icc_is_safe(
            &hex::decode("E00A5A084012000098765439").unwrap()
        ));
        assert!(
            icc_is_safe(&hex::decode("FF7F055A03401200").unwrap()),
            "sred container is ciphertext"
        );
    }

    proptest::proptest! {
        #[test]
        fn icc_check_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = icc_is_safe(&data);
        }
    }
}
