//! The common transaction model (gateways.md §4.3) and the ledger every dialect writes to,
//! plus the sandbox's JSON names of the dialects and the PAN helpers (brand, last four).
//!
//! The ledger never holds a full PAN: `pan_last4` and `brand` only.
//!
//! The ledger is the truth the money tests read (`/_sim/ledger`, `no_orphans`), so it keeps
//! every row; a lab or soak run makes hundreds of thousands. The rows live in SQLite in a
//! scratch file (deleted with the ledger), and memory holds only a bounded cache of the rows
//! touched lately, which is what the dialects look up and change: memory stays flat in the
//! number of sales.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{params, Connection, OptionalExtension};

use emvbridge_core::gateway::Dialect;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The dialect names in the sandbox's JSON (ledger rows, webhook deliveries, fault rules):
/// its path prefixes, `number`, `pai`, `pay1st`.
pub fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Number => "number",
        Dialect::PaymentsAi => "pai",
        Dialect::Pay1st => "pay1st",
    }
}

/// The dialect with this sandbox JSON name (exact spelling, see [`dialect_name`]).
pub fn dialect_from_name(name: &str) -> Option<Dialect> {
    [Dialect::Number, Dialect::PaymentsAi, Dialect::Pay1st]
        .into_iter()
        .find(|d| dialect_name(*d) == name)
}

/// `serialize_with` for a [`Dialect`] field: its sandbox JSON name.
pub fn serialize_dialect<S: Serializer>(d: &Dialect, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(dialect_name(*d))
}

/// `serialize_with` for an optional [`Dialect`] field.
pub fn serialize_opt_dialect<S: Serializer>(d: &Option<Dialect>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(dialect_name(*d)),
        None => s.serialize_none(),
    }
}

/// `deserialize_with` for an optional [`Dialect`] field: `null` or a sandbox JSON name.
pub fn deserialize_opt_dialect<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Dialect>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(name) => dialect_from_name(&name)
            .map(Some)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &["number", "pai", "pay1st"])),
    }
}

/// `deserialize_with` for a [`Dialect`] field: a sandbox JSON name.
pub fn deserialize_dialect<'de, D: Deserializer<'de>>(d: D) -> Result<Dialect, D::Error> {
    let name = String::deserialize(d)?;
    dialect_from_name(&name)
        .ok_or_else(|| serde::de::Error::unknown_variant(&name, &["number", "pai", "pay1st"]))
}

/// What the transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Authorize and capture.
    Sale,
    /// Authorize only.
    Auth,
    /// Capture of an `Auth`.
    Capture,
    /// Reversal of a sale/auth.
    Void,
    /// Credit after settlement.
    Refund,
}

/// How the card was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entry {
    /// Chip or contactless with an ARQC.
    Emv,
    /// Magnetic stripe track.
    Swipe,
    /// Keyed PAN.
    Keyed,
    /// A gateway token / stored instrument.
    Token,
    /// Hosted page (Pay1st checkout).
    Hosted,
    /// Not card-bearing (void, refund, capture).
    None,
}

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    /// Approved (fully or partially).
    Approved,
    /// Declined by the issuer or a rule.
    Declined,
    /// Gateway error.
    Error,
    /// Reversed.
    Voided,
    /// Fully refunded.
    Refunded,
    /// Partially refunded.
    PartiallyRefunded,
    /// Waiting for the customer (3DS, hosted checkout).
    Pending,
}

/// One ledger row (§4.3) plus the dialect-facing bits the sandbox needs to answer lookups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Txn {
    /// Sandbox id (the dialect's own id: Number TxID, PAI `txn_…`, Pay1st reference).
    pub id: String,
    /// API it came through.
    #[serde(
        serialize_with = "serialize_dialect",
        deserialize_with = "deserialize_dialect"
    )]
    pub dialect: Dialect,
    /// What it did.
    pub kind: Kind,
    /// Requested amount, minor units.
    pub amount_minor: i64,
    /// Approved amount, minor units (0 when declined; < amount for a partial approval).
    pub approved_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Last four PAN digits, if a card was involved.
    pub pan_last4: Option<String>,
    /// Card brand from the PAN prefix.
    pub brand: Option<String>,
    /// Entry mode.
    pub entry: Entry,
    /// The client's reference (Number ClientRefID, PAI idempotencyKey, Pay1st partnerReference).
    pub client_ref: Option<String>,
    /// Idempotency key (PAI).
    pub idem_key: Option<String>,
    /// State.
    pub state: TxnState,
    /// Issuer/processor response code (`00`, `51`, `116`…).
    pub resp_code: String,
    /// Six-character auth code (approvals only).
    pub auth_code: Option<String>,
    /// Issuer response TLV as hex (8A, 91, 71/72), EMV only.
    pub emv_resp: Option<String>,
    /// Parent transaction (capture/void/refund).
    pub parent: Option<String>,
    /// Virtual time of creation, Unix seconds.
    pub created_at: i64,
    /// Amount refunded so far, minor units.
    pub refunded_minor: i64,
    /// For an `Auth`: whether it has been captured.
    pub captured: bool,
    /// Number RPGUID, if given.
    pub rpguid: Option<String>,
    /// The client's free text, as sent: Number `PurchItems.ServiceDescrip`, PAI
    /// `description`, Pay1st's `metadata` entry `posReference` (emvbridge puts the POS's own
    /// reference there).
    #[serde(default)]
    pub description: Option<String>,
    /// Sandbox annotations: `lost_response`, `reconciled`.
    pub sim_flags: Vec<String>,
}

impl Txn {
    /// A new row with the fields every dialect sets; the rest default to "nothing yet".
    pub fn new(
        id: String,
        dialect: Dialect,
        kind: Kind,
        amount_minor: i64,
        currency: &str,
        now: i64,
    ) -> Self {
        Txn {
            id,
            dialect,
            kind,
            amount_minor,
            approved_minor: 0,
            currency: currency.to_owned(),
            pan_last4: None,
            brand: None,
            entry: Entry::None,
            client_ref: None,
            idem_key: None,
            state: TxnState::Pending,
            resp_code: String::new(),
            auth_code: None,
            emv_resp: None,
            parent: None,
            created_at: now,
            refunded_minor: 0,
            captured: false,
            rpguid: None,
            description: None,
            sim_flags: Vec::new(),
        }
    }

    /// Whether a flag is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.sim_flags.iter().any(|f| f == flag)
    }

    /// Sets a flag once.
    pub fn flag(&mut self, flag: &str) {
        if !self.has_flag(flag) {
            self.sim_flags.push(flag.to_owned());
        }
    }

    /// Minor units still refundable.
    pub fn refundable_minor(&self) -> i64 {
        match (self.kind, self.state) {
            (Kind::Sale | Kind::Capture, TxnState::Approved | TxnState::PartiallyRefunded) => {
                (self.approved_minor - self.refunded_minor).max(0)
            }
            _ => 0,
        }
    }
}

/// Rows kept in memory at most; beyond, the cache is emptied at the next change (the rows
/// stay in SQLite). A sale touches its rows within a few requests.
const CACHE_ROWS: usize = 4096;

/// All transactions, in creation order (SQLite `seq`), looked up by id (the first row with
/// that id, as a scan from the front would find) or by client reference.
///
/// Reads hand out references into the cache ([`elsa::FrozenMap`], which can grow behind a
/// shared reference and is emptied only when the ledger is borrowed mutably, so no reference
/// outlives its row). Rows changed through [`Ledger::get_mut`] are written back before any
/// query and before the cache is emptied.
pub struct Ledger {
    db: Connection,
    /// The scratch file, deleted on drop (`None`: in memory, when no file could be made).
    file: Option<PathBuf>,
    /// Cached rows by `seq`.
    rows: elsa::FrozenMap<i64, Box<Txn>>,
    /// `seq`s of cached rows handed out mutably since the last write-back.
    dirty: RefCell<HashSet<i64>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("file", &self.file)
            .field("cached", &self.rows.len())
            .finish()
    }
}

impl Default for Ledger {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "emvbridge-sandbox-ledger-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let (db, file) = match Connection::open(&path) {
            Ok(db) => (db, Some(path)),
            Err(e) => {
                tracing::warn!(error = %e, "sandbox ledger: no scratch file, keeping it in memory");
                match Connection::open_in_memory() {
                    Ok(db) => (db, None),
                    Err(e) => panic!("sandbox ledger: SQLite cannot open even in memory: {e}"),
                }
            }
        };
        // Scratch data: no journal, no fsync; a small page cache keeps memory flat.
        if let Err(e) = db.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -2048;
             PRAGMA temp_store = FILE;
             CREATE TABLE txns (
                 seq INTEGER PRIMARY KEY,
                 id TEXT NOT NULL,
                 client_ref TEXT,
                 idem_key TEXT,
                 orphan INTEGER NOT NULL,
                 data TEXT NOT NULL);
             CREATE INDEX txns_id ON txns (id, seq);
             CREATE INDEX txns_client_ref ON txns (client_ref, seq);
             CREATE INDEX txns_idem_key ON txns (idem_key, seq);
             CREATE INDEX txns_orphan ON txns (orphan) WHERE orphan = 1;",
        ) {
            panic!("sandbox ledger: cannot create its table: {e}");
        }
        Ledger {
            db,
            file,
            rows: elsa::FrozenMap::new(),
            dirty: RefCell::new(HashSet::new()),
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some(p) = &self.file {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// An approval whose response was lost and that nobody voided or looked up.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Transaction id.
    pub id: String,
    /// Dialect.
    #[serde(serialize_with = "serialize_dialect")]
    pub dialect: Dialect,
    /// Client reference.
    pub client_ref: Option<String>,
    /// Approved amount, minor units.
    pub amount_minor: i64,
}

/// Whether `t` counts for [`Ledger::orphans`] (§4.7).
fn is_orphan(t: &Txn) -> bool {
    matches!(t.kind, Kind::Sale | Kind::Auth | Kind::Capture)
        && t.state == TxnState::Approved
        && t.has_flag("lost_response")
        && !t.has_flag("reconciled")
}

impl Ledger {
    /// The SQLite connection, for the dialects' own tables next to the ledger's (the sandbox
    /// state's `store`).
    pub(crate) fn db(&self) -> &Connection {
        &self.db
    }

    /// Writes back the rows changed through [`Ledger::get_mut`].
    fn write_back(&self) {
        let dirty: Vec<i64> = self.dirty.borrow_mut().drain().collect();
        for seq in dirty {
            let Some(t) = self.rows.get(&seq) else {
                continue;
            };
            let r = serde_json::to_string(t)
                .map_err(|e| e.to_string())
                .and_then(|data| {
                    self.db
                        .execute(
                            "UPDATE txns SET client_ref = ?2, idem_key = ?3, orphan = ?4, data = ?5
                         WHERE seq = ?1",
                            params![seq, t.client_ref, t.idem_key, is_orphan(t), data],
                        )
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = r {
                tracing::error!(error = %e, id = %t.id, "sandbox ledger: row not written back");
            }
        }
    }

    /// Writes back, then empties the cache when it has grown past [`CACHE_ROWS`].
    fn settle(&mut self) {
        self.write_back();
        if self.rows.len() > CACHE_ROWS {
            self.rows.as_mut().clear();
        }
    }

    /// The row `seq`, from the cache or SQLite.
    fn row(&self, seq: i64) -> Option<&Txn> {
        if let Some(t) = self.rows.get(&seq) {
            return Some(t);
        }
        let data: Option<String> = self
            .db
            .query_row("SELECT data FROM txns WHERE seq = ?1", [seq], |r| r.get(0))
            .optional()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "sandbox ledger: cannot read a row");
                None
            });
        let t: Txn = match serde_json::from_str(&data?) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "sandbox ledger: a stored row does not parse");
                return None;
            }
        };
        Some(self.rows.insert(seq, Box::new(t)))
    }

    /// The `seq` of the first row with `id`.
    fn first_seq(&self, id: &str) -> Option<i64> {
        self.db
            .query_row(
                "SELECT seq FROM txns WHERE id = ?1 ORDER BY seq LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "sandbox ledger: lookup failed");
                None
            })
    }

    /// `seq`s of every row matching `filter` (an SQL condition on the columns), in order.
    fn seqs(&self, filter: &str, arg: Option<&str>) -> Vec<i64> {
        self.write_back();
        let sql = format!("SELECT seq FROM txns WHERE {filter} ORDER BY seq");
        let r = self.db.prepare(&sql).and_then(|mut st| {
            let rows = match arg {
                Some(a) => st
                    .query_map([a], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>(),
                None => st
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>(),
            };
            rows
        });
        r.unwrap_or_else(|e| {
            tracing::error!(error = %e, "sandbox ledger: query failed");
            Vec::new()
        })
    }

    /// Appends a row.
    pub fn push(&mut self, txn: Txn) {
        self.settle();
        let data = match serde_json::to_string(&txn) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, id = %txn.id, "sandbox ledger: row not stored");
                return;
            }
        };
        let r = self.db.execute(
            "INSERT INTO txns (id, client_ref, idem_key, orphan, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![txn.id, txn.client_ref, txn.idem_key, is_orphan(&txn), data],
        );
        match r {
            Ok(_) => {
                let seq = self.db.last_insert_rowid();
                self.rows.insert(seq, Box::new(txn));
            }
            Err(e) => tracing::error!(error = %e, id = %txn.id, "sandbox ledger: row not stored"),
        }
    }

    /// Looks up by id.
    pub fn get(&self, id: &str) -> Option<&Txn> {
        self.row(self.first_seq(id)?)
    }

    /// Looks up by id, mutably. The change is written back before the next query.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Txn> {
        self.settle();
        let seq = self.first_seq(id)?;
        self.row(seq)?;
        self.dirty.get_mut().insert(seq);
        self.rows.as_mut().get_mut(&seq).map(|b| &mut **b)
    }

    /// Rows whose idempotency key equals `k` (indexed: a lookup by key must not read the
    /// whole ledger).
    pub fn by_idem_key<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a Txn> + 'a {
        self.seqs("idem_key = ?1", Some(k))
            .into_iter()
            .filter_map(move |seq| self.row(seq))
    }

    /// Every row, in creation order (read from SQLite: a copy of the whole ledger, for the
    /// control API and rare searches; lookups go through the indexed methods).
    pub fn all(&self) -> Vec<Txn> {
        self.seqs("1", None)
            .into_iter()
            .filter_map(|seq| {
                // Not through the cache: a full listing would fill it.
                match self.rows.get(&seq) {
                    Some(t) => Some(t.clone()),
                    None => self
                        .db
                        .query_row("SELECT data FROM txns WHERE seq = ?1", [seq], |r| {
                            r.get::<_, String>(0)
                        })
                        .ok()
                        .and_then(|d| serde_json::from_str(&d).ok()),
                }
            })
            .collect()
    }

    /// Rows whose client reference is one of `refs` or whose id is one of `ids`, in creation
    /// order (indexed: a search that names its transactions reads only those rows).
    pub fn by_client_refs_or_ids(&self, refs: &[&str], ids: &[&str]) -> Vec<Txn> {
        if refs.is_empty() && ids.is_empty() {
            return Vec::new();
        }
        self.write_back();
        let marks = |n: usize| vec!["?"; n].join(", ");
        let sql = format!(
            "SELECT data FROM txns WHERE client_ref IN ({}) OR id IN ({}) ORDER BY seq",
            marks(refs.len()),
            marks(ids.len())
        );
        let r = self.db.prepare(&sql).and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(refs.iter().chain(ids)), |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<String>, _>>()
        });
        r.unwrap_or_else(|e| {
            tracing::error!(error = %e, "sandbox ledger: query failed");
            Vec::new()
        })
        .into_iter()
        .filter_map(|d| {
            serde_json::from_str(&d)
                .map_err(
                    |e| tracing::error!(error = %e, "sandbox ledger: a stored row does not parse"),
                )
                .ok()
        })
        .collect()
    }

    /// Rows whose client reference equals `r`.
    pub fn by_client_ref<'a>(&'a self, r: &'a str) -> impl Iterator<Item = &'a Txn> + 'a {
        self.seqs("client_ref = ?1", Some(r))
            .into_iter()
            .filter_map(move |seq| self.row(seq))
    }

    /// Marks a lost-response row as looked up by the client (it is then "reconciled").
    pub fn note_lookup(&mut self, id: &str) {
        if let Some(t) = self.get_mut(id) {
            if t.has_flag("lost_response") {
                t.flag("reconciled");
            }
        }
    }

    /// §4.7: approvals (sale/auth/capture) whose response was lost, still approved, not voided,
    /// refunded, captured-and-kept nor looked up since.
    pub fn orphans(&self) -> Vec<Orphan> {
        self.seqs("orphan = 1", None)
            .into_iter()
            .filter_map(|seq| self.row(seq))
            .filter(|t| is_orphan(t))
            .map(|t| Orphan {
                id: t.id.clone(),
                dialect: t.dialect,
                client_ref: t.client_ref.clone(),
                amount_minor: t.approved_minor,
            })
            .collect()
    }

    /// Rows in the ledger.
    pub fn len(&self) -> usize {
        self.write_back();
        self.db
            .query_row("SELECT COUNT(*) FROM txns", [], |r| r.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Whether the ledger has no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Brand from the PAN prefix (enough for the ledger and the test cards).
pub fn brand_of(pan: &str) -> &'static str {
    let b = pan.as_bytes();
    match b {
        [b'4', ..] => "visa",
        [b'3', b'4' | b'7', ..] => "amex",
        [b'5', b'1'..=b'5', ..] | [b'2', b'2'..=b'7', ..] => "mastercard",
        [b'6', b'0', b'1', b'1', ..] | [b'6', b'5', ..] | [b'6', b'4', b'4'..=b'9', ..] => {
            "discover"
        }
        [b'3', b'6', ..] | [b'3', b'0', ..] | [b'3', b'8', ..] => "diners",
        _ => "unknown",
    }
}

/// Last four digits.
pub fn last4(pan: &str) -> String {
    pan.get(pan.len().saturating_sub(4)..)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brands_and_last4() {
        assert_eq!(brand_of("371449635398431"), "amex");
        assert_eq!(brand_of("5105105105105100"), "mastercard");
        assert_eq!(brand_of("6011000990139424"), "discover");
        assert_eq!(last4("4111111111111111"), "1111");
    }

    #[test]
    fn dialect_json_names() {
        let t = Txn::new("1".into(), Dialect::PaymentsAi, Kind::Sale, 1, "USD", 0);
        assert_eq!(serde_json::to_value(&t).unwrap()["dialect"], "pai");
        for (d, name) in [
            (Dialect::Number, "number"),
            (Dialect::PaymentsAi, "pai"),
            (Dialect::Pay1st, "pay1st"),
        ] {
            assert_eq!(dialect_name(d), name);
            assert_eq!(dialect_from_name(name), Some(d));
        }
        assert_eq!(dialect_from_name("paymentsai"), None);
        assert_eq!(dialect_from_name("PAI"), None);
    }

    #[test]
    fn orphans_are_lost_approvals_not_voided_or_reconciled() {
        let mut l = Ledger::default();
        assert!(l.is_empty());
        let mut t = Txn::new("1".into(), Dialect::Number, Kind::Sale, 100, "USD", 0);
        t.state = TxnState::Approved;
        t.approved_minor = 100;
        t.flag("lost_response");
        l.push(t);
        let mut d = Txn::new("2".into(), Dialect::Number, Kind::Sale, 100, "USD", 0);
        d.state = TxnState::Declined;
        d.flag("lost_response");
        l.push(d);
        assert_eq!(l.orphans().len(), 1);
        l.get_mut("1").unwrap().state = TxnState::Voided;
        assert!(l.orphans().is_empty());
        l.get_mut("1").unwrap().state = TxnState::Approved;
        l.note_lookup("1");
        assert!(l.orphans().is_empty());
    }

    #[test]
    fn lookup_by_id_finds_the_first_row_with_that_id() {
        let mut l = Ledger::default();
        for i in 0..1000 {
            l.push(Txn::new(
                format!("t{i}"),
                Dialect::PaymentsAi,
                Kind::Sale,
                i,
                "USD",
                0,
            ));
        }
        // A second row under an existing id: lookups keep answering the first, as a scan did.
        l.push(Txn::new(
            "t7".into(),
            Dialect::PaymentsAi,
            Kind::Sale,
            99_999,
            "USD",
            0,
        ));
        assert_eq!(l.get("t7").map(|t| t.amount_minor), Some(7));
        assert_eq!(l.get("t999").map(|t| t.amount_minor), Some(999));
        assert!(l.get("t1000").is_none());
        assert!(l.get("").is_none());
        l.get_mut("t500").unwrap().state = TxnState::Declined;
        assert_eq!(l.get("t500").map(|t| t.state), Some(TxnState::Declined));
        assert_eq!(l.all().len(), 1001);
        assert_eq!(l.all()[500].state, TxnState::Declined, "written back");
    }

    #[test]
    fn rows_survive_the_cache_and_memory_stays_bounded() {
        let mut l = Ledger::default();
        let n = CACHE_ROWS as i64 * 3;
        for i in 0..n {
            let mut t = Txn::new(format!("t{i}"), Dialect::Number, Kind::Sale, i, "USD", 0);
            t.client_ref = Some(format!("ref-{}", i % 7));
            l.push(t);
            // Change a few rows after they were pushed, as the dialects do.
            if i % 1000 == 0 {
                let t = l.get_mut(&format!("t{i}")).unwrap();
                t.state = TxnState::Approved;
                t.approved_minor = i;
                t.flag("lost_response");
            }
        }
        assert!(l.rows.len() <= CACHE_ROWS + 1, "cache {}", l.rows.len());
        assert_eq!(l.len(), n as usize);
        // Old rows, long out of the cache, read back complete and changed.
        assert_eq!(l.get("t3").map(|t| t.amount_minor), Some(3));
        assert_eq!(l.get("t1000").map(|t| t.state), Some(TxnState::Approved));
        let with_ref_3 = (0..n).filter(|i| i % 7 == 3).count();
        l.get_mut("t77").unwrap().idem_key = Some("k-77".into());
        assert_eq!(
            l.by_idem_key("k-77")
                .map(|t| t.amount_minor)
                .collect::<Vec<_>>(),
            [77]
        );
        assert_eq!(l.by_client_ref("ref-3").count(), with_ref_3);
        let named = l.by_client_refs_or_ids(&["ref-3", "ref-4"], &["t3", "t4", "t5"]);
        assert_eq!(
            named.len(),
            (0..n).filter(|i| i % 7 == 3 || i % 7 == 4).count() + 1,
            "t3 and t4 once each, t5 added"
        );
        assert!(named.windows(2).all(|w| {
            let i = |t: &Txn| t.id[1..].parse::<i64>().unwrap();
            i(&w[0]) < i(&w[1])
        }));
        assert!(l.by_client_refs_or_ids(&[], &[]).is_empty());
        let orphans = l.orphans();
        assert_eq!(orphans.len(), (n as usize).div_ceil(1000));
        l.note_lookup("t0");
        assert_eq!(l.orphans().len(), orphans.len() - 1);
        // Serialised rows keep the sandbox's JSON form.
        assert_eq!(
            serde_json::to_value(l.get("t0").unwrap()).unwrap()["dialect"],
            "number"
        );
        let file = l.file.clone();
        drop(l);
        assert!(
            file.is_none_or(|f| !f.exists()),
            "the scratch file is removed"
        );
    }
}
