//! The common transaction model (gateways.md §4.3) and the ledger every dialect writes to,
//! plus the sandbox's JSON names of the dialects and the PAN helpers (brand, last four).
//!
//! The ledger never holds a full PAN: `pan_last4` and `brand` only.

use std::collections::HashMap;

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

/// What the transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct Txn {
    /// Sandbox id (the dialect's own id: Number TxID, PAI `txn_…`, Pay1st reference).
    pub id: String,
    /// API it came through.
    #[serde(serialize_with = "serialize_dialect")]
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

/// All transactions, in creation order, with an index by id. Every sale looks rows up by id
/// several times under the sandbox's one state lock; a linear scan made each sale cost
/// O(ledger size) and a long `emvbridge lab` run slow down as it went.
#[derive(Debug, Default)]
pub struct Ledger {
    txns: Vec<Txn>,
    /// Id → position of the first row with that id (what a scan from the front would find).
    by_id: HashMap<String, usize>,
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

impl Ledger {
    /// Appends a row.
    pub fn push(&mut self, txn: Txn) {
        self.by_id.entry(txn.id.clone()).or_insert(self.txns.len());
        self.txns.push(txn);
    }

    /// Looks up by id.
    pub fn get(&self, id: &str) -> Option<&Txn> {
        self.by_id.get(id).and_then(|&i| self.txns.get(i))
    }

    /// Looks up by id, mutably.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Txn> {
        self.by_id.get(id).and_then(|&i| self.txns.get_mut(i))
    }

    /// Every row.
    pub fn all(&self) -> &[Txn] {
        &self.txns
    }

    /// Every row, mutably. Callers must not change a row's `id` (the index keys on it).
    pub fn all_mut(&mut self) -> &mut [Txn] {
        &mut self.txns
    }

    /// Rows whose client reference equals `r`.
    pub fn by_client_ref<'a>(&'a self, r: &'a str) -> impl Iterator<Item = &'a Txn> + 'a {
        self.txns
            .iter()
            .filter(move |t| t.client_ref.as_deref() == Some(r))
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
        self.txns
            .iter()
            .filter(|t| {
                matches!(t.kind, Kind::Sale | Kind::Auth | Kind::Capture)
                    && t.state == TxnState::Approved
                    && t.has_flag("lost_response")
                    && !t.has_flag("reconciled")
            })
            .map(|t| Orphan {
                id: t.id.clone(),
                dialect: t.dialect,
                client_ref: t.client_ref.clone(),
                amount_minor: t.approved_minor,
            })
            .collect()
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
    }
}
