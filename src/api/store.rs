//! What the API remembers: transaction records (`GET /v1/transactions/{id}`) and the stored
//! answers to request ids (idempotent replays).
//!
//! Behind the small [`Store`] trait so the durable journal (`crate::journal`) can take over
//! from [`MemoryStore`] by changing the one line that builds the store. In-flight requests
//! (a second copy of a request still running) are runtime state and live in the API layer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use emvbridge_core::money::Money;
use emvbridge_core::txn::{AuthKind, Outcome, OutcomeStatus};

/// Where a transaction stands, as the POS must show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiStatus {
    /// The card transaction is running.
    InProgress,
    /// Approved online and completed by the card.
    Approved,
    /// Approved for less than asked (`approved_amount`).
    PartiallyApproved,
    /// Approved offline, by the card or by merchant policy with the host unreachable:
    /// stored and forwarded, not an issuer approval.
    ApprovedOffline,
    /// Declined (`decline_code` when the host gave one).
    Declined,
    /// Cancelled before anything was approved.
    Cancelled,
    /// Approved and then sent back (by the bridge or `…/reverse`): no money moved.
    Reversed,
    /// Voided at the gateway (`…/void`).
    Voided,
    /// The outcome is unknown and being resolved: treat as not paid.
    Unresolved,
    /// The reader failed before anything was approved: no money moved.
    Failed,
}

impl From<OutcomeStatus> for ApiStatus {
    fn from(s: OutcomeStatus) -> Self {
        match s {
            OutcomeStatus::Approved => ApiStatus::Approved,
            OutcomeStatus::PartiallyApproved => ApiStatus::PartiallyApproved,
            OutcomeStatus::ApprovedOffline => ApiStatus::ApprovedOffline,
            OutcomeStatus::Declined => ApiStatus::Declined,
            OutcomeStatus::Cancelled => ApiStatus::Cancelled,
            OutcomeStatus::Reversed => ApiStatus::Reversed,
            OutcomeStatus::Unresolved => ApiStatus::Unresolved,
            OutcomeStatus::Failed => ApiStatus::Failed,
        }
    }
}

impl ApiStatus {
    /// What the status means, in words for the POS (`status_description`). An offline
    /// approval is the merchant's, stored to be forwarded: never an issuer approval.
    pub fn description(self) -> &'static str {
        match self {
            ApiStatus::InProgress => "the card transaction is running",
            ApiStatus::Approved => "approved by the issuer",
            ApiStatus::PartiallyApproved => "approved by the issuer for less than asked",
            ApiStatus::ApprovedOffline => "approved by merchant, stored; not an issuer approval",
            ApiStatus::Declined => "declined; no money moved",
            ApiStatus::Cancelled => "cancelled; no money moved",
            ApiStatus::Reversed => "approved, then reversed; no money moved",
            ApiStatus::Voided => "voided at the gateway; no money moved",
            ApiStatus::Unresolved => "outcome unknown, being resolved; treat as not paid",
            ApiStatus::Failed => "failed; no money moved",
        }
    }

    /// Money stands (an approval not voided or reversed).
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            ApiStatus::Approved | ApiStatus::PartiallyApproved | ApiStatus::ApprovedOffline
        )
    }
}

/// A follow-up operation on a transaction (capture, void, reverse, refund).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// `capture`, `void`, `reverse`, `refund`.
    pub op: String,
    /// `done`, `refused`, `unknown`.
    pub status: String,
    /// The gateway's id of the resulting transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// Amount, where the operation has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The bridge's transaction id created by the operation (a refund).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// The two receipt copies as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipts {
    /// Merchant copy.
    pub merchant: String,
    /// Customer copy.
    pub customer: String,
}

/// One transaction as the API reports it. Holds no clear card data: the card facts carry
/// the PAN masked first 6 / last 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// The bridge's id (also its reference towards the gateway).
    pub id: String,
    /// The point of sale's own reference (its order or ticket number), as it sent it.
    /// Records stored before references existed read as `None`.
    #[serde(default)]
    pub reference: Option<String>,
    /// Sale, pre-authorization or refund.
    pub kind: AuthKind,
    /// Card present (through the reader) or referenced (a refund of an earlier transaction).
    pub card_present: bool,
    /// Where it stands.
    pub status: ApiStatus,
    /// Amount asked for.
    pub amount: Money,
    /// Amount approved.
    pub approved_amount: Option<Money>,
    /// Amount captured (pre-authorizations).
    pub captured_amount: Option<Money>,
    /// Gateway transaction id.
    pub gateway_id: Option<String>,
    /// Issuer authorization code.
    pub auth_code: Option<String>,
    /// Decline code (`05`, `51`, …).
    pub decline_code: Option<String>,
    /// Why it ended this way, in words.
    pub reason: Option<String>,
    /// For a refund: the transaction refunded.
    pub original_transaction_id: Option<String>,
    /// Card and cryptogram facts (masked PAN, AID, TVR, TSI, cryptogram, CVM).
    pub card: Option<serde_json::Value>,
    /// The reversal the transaction made, if any.
    pub reversal: Option<serde_json::Value>,
    /// Receipt texts, once finished.
    pub receipt: Option<Receipts>,
    /// Follow-up operations, oldest first.
    pub operations: Vec<Operation>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// The record as the API returns it: its fields plus `status_description` (derived, so a
/// stored record never disagrees with its status).
pub fn record_json(rec: &TxnRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(rec).unwrap_or_else(|_| serde_json::json!({"id": rec.id}));
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "status_description".into(),
            serde_json::Value::from(rec.status.description()),
        );
    }
    v
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TxnRecord {
    /// A card transaction that has just started.
    pub fn started(id: String, kind: AuthKind, amount: Money) -> TxnRecord {
        let now = unix_now();
        TxnRecord {
            id,
            reference: None,
            kind,
            card_present: true,
            status: ApiStatus::InProgress,
            amount,
            approved_amount: None,
            captured_amount: None,
            gateway_id: None,
            auth_code: None,
            decline_code: None,
            reason: None,
            original_transaction_id: None,
            card: None,
            reversal: None,
            receipt: None,
            operations: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Takes the engine's outcome.
    pub fn finish(&mut self, o: &Outcome) {
        let receipt = emvbridge_core::receipt::json(o);
        self.status = o.status.into();
        self.approved_amount = o.approved_amount;
        self.gateway_id.clone_from(&o.gateway_id);
        self.auth_code.clone_from(&o.auth_code);
        self.decline_code.clone_from(&o.decline_code);
        self.reason.clone_from(&o.reason);
        self.card = receipt.get("card").cloned();
        self.reversal = receipt.get("reversal").filter(|v| !v.is_null()).cloned();
        self.receipt = Some(Receipts {
            merchant: emvbridge_core::receipt::text_with_reference(
                o,
                "MERCHANT COPY",
                self.reference.as_deref(),
            ),
            customer: emvbridge_core::receipt::text_with_reference(
                o,
                "CUSTOMER COPY",
                self.reference.as_deref(),
            ),
        });
        self.updated_at = unix_now();
    }
}

/// A stored answer to a request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// SHA-256 of method, path and body: a reused id with another request is refused.
    pub fingerprint: [u8; 32],
    /// HTTP status.
    pub status: u16,
    /// `Location`, if any.
    pub location: Option<String>,
    /// The JSON body.
    pub body: String,
}

/// Which records `GET /v1/transactions` lists: newest first (by creation time, then id),
/// at most `limit`, strictly after `after` (the last record of the previous page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only records with this point-of-sale reference.
    pub reference: Option<String>,
    /// Only records created at or after this Unix second.
    pub since: Option<u64>,
    /// Only records in this status.
    pub status: Option<ApiStatus>,
    /// Most records answered.
    pub limit: usize,
    /// Continue after this `(created_at, id)`.
    pub after: Option<(u64, String)>,
}

impl ListQuery {
    /// Whether `r` is listed (every filter but the limit).
    pub fn matches(&self, r: &TxnRecord) -> bool {
        self.reference
            .as_ref()
            .is_none_or(|x| r.reference.as_ref() == Some(x))
            && self.since.is_none_or(|t| r.created_at >= t)
            && self.status.is_none_or(|st| r.status == st)
            && self
                .after
                .as_ref()
                .is_none_or(|(t, id)| (r.created_at, &r.id) < (*t, id))
    }
}

/// Durable (or not) memory of the API.
pub trait Store: Send + Sync + 'static {
    /// The answer stored for `request_id`.
    fn response(&self, request_id: &str) -> Option<StoredResponse>;
    /// Stores the answer to `request_id`.
    fn save_response(&self, request_id: &str, r: &StoredResponse);
    /// A transaction by id.
    fn transaction(&self, id: &str) -> Option<TxnRecord>;
    /// Inserts or replaces a transaction.
    fn save_transaction(&self, rec: &TxnRecord);
    /// The records `q` selects, newest first.
    fn transactions(&self, q: &ListQuery) -> Vec<TxnRecord>;
}

/// Most records and answers kept in memory; the oldest go first.
pub const MEMORY_LIMIT: usize = 10_000;

struct Bounded<T> {
    map: HashMap<String, T>,
    order: VecDeque<String>,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T> Bounded<T> {
    fn put(&mut self, k: &str, v: T) {
        if self.map.insert(k.to_owned(), v).is_none() {
            self.order.push_back(k.to_owned());
            while self.order.len() > MEMORY_LIMIT {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// The in-memory store: lost on restart (the journal keeps them across restarts).
#[derive(Default)]
pub struct MemoryStore {
    responses: Mutex<Bounded<StoredResponse>>,
    txns: Mutex<Bounded<TxnRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store for MemoryStore {
    fn response(&self, request_id: &str) -> Option<StoredResponse> {
        lock(&self.responses).map.get(request_id).cloned()
    }
    fn save_response(&self, request_id: &str, r: &StoredResponse) {
        lock(&self.responses).put(request_id, r.clone());
    }
    fn transaction(&self, id: &str) -> Option<TxnRecord> {
        lock(&self.txns).map.get(id).cloned()
    }
    fn save_transaction(&self, rec: &TxnRecord) {
        lock(&self.txns).put(&rec.id, rec.clone());
    }
    fn transactions(&self, q: &ListQuery) -> Vec<TxnRecord> {
        let mut v: Vec<TxnRecord> = lock(&self.txns)
            .map
            .values()
            .filter(|r| q.matches(r))
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        v.truncate(q.limit);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_is_bounded_and_replaces() {
        let s = MemoryStore::default();
        let usd = |m| Money::from_minor(m, "USD").unwrap();
        let mut r = TxnRecord::started("a".into(), AuthKind::Sale, usd(100));
        s.save_transaction(&r);
        r.status = ApiStatus::Approved;
        s.save_transaction(&r);
        assert_eq!(
            s.transaction("a").map(|r| r.status),
            Some(ApiStatus::Approved)
        );
        for i in 0..MEMORY_LIMIT {
            s.save_transaction(&TxnRecord::started(format!("t{i}"), AuthKind::Sale, usd(1)));
        }
        assert!(s.transaction("a").is_none(), "the oldest is evicted");
        assert!(s.transaction(&format!("t{}", MEMORY_LIMIT - 1)).is_some());
        assert_eq!(lock(&s.txns).order.len(), MEMORY_LIMIT);
    }

    #[test]
    fn memory_store_lists_newest_first_by_filter_and_page() {
        let s = MemoryStore::default();
        let usd = |m| Money::from_minor(m, "USD").unwrap();
        for i in 0..5u64 {
            let mut r = TxnRecord::started(format!("t{i}"), AuthKind::Sale, usd(100 + i));
            r.created_at = 1_000 + i / 2;
            r.reference = Some(if i == 3 {
                "order-3".into()
            } else {
                format!("o{i}")
            });
            r.status = if i % 2 == 0 {
                ApiStatus::Approved
            } else {
                ApiStatus::Declined
            };
            s.save_transaction(&r);
        }
        let ids = |v: Vec<TxnRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let mut q = ListQuery {
            limit: 2,
            ..ListQuery::default()
        };
        assert_eq!(ids(s.transactions(&q)), ["t4", "t3"]);
        q.after = Some((1_001, "t3".into()));
        assert_eq!(ids(s.transactions(&q)), ["t2", "t1"]);
        q.after = Some((1_000, "t1".into()));
        assert_eq!(ids(s.transactions(&q)), ["t0"]);
        let q = ListQuery {
            reference: Some("order-3".into()),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(s.transactions(&q)), ["t3"]);
        let q = ListQuery {
            status: Some(ApiStatus::Approved),
            since: Some(1_001),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(ids(s.transactions(&q)), ["t4", "t2"]);
    }

    #[test]
    fn records_round_trip_as_json() {
        let mut r = TxnRecord::started(
            "emvb-1".into(),
            AuthKind::PreAuth,
            Money::from_minor(1234, "EUR").unwrap(),
        );
        r.operations.push(Operation {
            op: "capture".into(),
            status: "done".into(),
            gateway_id: Some("g1".into()),
            amount: Some(Money::from_minor(1000, "EUR").unwrap()),
            transaction_id: None,
        });
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains(r#""kind":"pre_auth""#) && j.contains(r#""status":"in_progress""#));
        let back: TxnRecord = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
        // The API form adds the description; it reads back as the same record.
        r.status = ApiStatus::ApprovedOffline;
        let v = record_json(&r);
        assert_eq!(v["status"], "approved_offline");
        assert_eq!(
            v["status_description"],
            "approved by merchant, stored; not an issuer approval"
        );
        let back: TxnRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
