//! What each dialect remembers between requests: Number sessions, failure counters and
//! lockouts ([`NumberState`]); PaymentsAI keys, tokens, instruments, idempotency records and
//! webhook destinations ([`PaiState`]); Pay1st tokens ([`Pay1stState`]).
//!
//! What grows with every sale — PaymentsAI's per-transaction `Extra` and idempotency
//! records, Pay1st's `Payment`s — lives in SQLite next to the ledger (`crate::store`), so
//! that memory stays flat over a long run; these types are its rows.
//!
//! The types live apart from their handlers so that the state struct
//! ([`crate::state::SimState`]) can own them and the handlers ([`crate::number`],
//! [`crate::paymentsai`], [`crate::pay1st`]) can read them, without either importing the other.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::config::PaiConfig;
use crate::outcome::ThreeDs;

/// Number sessions, failure counters and locked IPs.
#[derive(Debug, Default)]
pub struct NumberState {
    /// SessKey (upper case) → session.
    pub(crate) sessions: HashMap<String, Session>,
    /// Failed authentications per caller IP.
    pub(crate) failures: HashMap<String, u32>,
    /// Caller IPs locked out.
    pub(crate) locked: HashSet<String>,
    /// The last TxID handed out, as an offset from 53000.
    pub(crate) next_txid: i64,
}

/// A Number session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Virtual time of `Authenticate`.
    pub(crate) created: i64,
    /// The IP that authenticated; the session is bound to it.
    pub(crate) ip: String,
}

impl NumberState {
    /// `POST /_sim/unlock`: clears the lockout of `ip` (all IPs when `None`).
    pub fn unlock(&mut self, ip: Option<&str>) {
        match ip {
            Some(ip) => {
                self.locked.remove(ip);
                self.failures.remove(ip);
            }
            None => {
                self.locked.clear();
                self.failures.clear();
            }
        }
    }

    /// Whether `ip` is locked.
    pub fn is_locked(&self, ip: &str) -> bool {
        self.locked.contains(ip)
    }
}

/// Card data bound to a PaymentsAI token or payment instrument.
#[derive(Clone)]
pub(crate) struct Card {
    /// Clear PAN.
    pub(crate) pan: String,
    /// CVV as sent.
    pub(crate) cvv: Option<String>,
    /// Expiry (month, four-digit year).
    pub(crate) expiry: Option<(u32, u32)>,
}

/// What a PaymentsAI transaction carries beyond the ledger row.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Extra {
    /// Organization it belongs to.
    pub(crate) org: String,
    /// `sale`, `authorize`, `capture`, `refund`.
    pub(crate) type_name: String,
    /// `customerId` as sent.
    pub(crate) customer_id: Option<String>,
    /// `websiteId` as sent.
    pub(crate) website_id: Option<String>,
    /// `requestId` as sent (Rebilly's de-duplication field, filterable).
    pub(crate) request_id: Option<String>,
    /// The vaulted payment instrument the transaction was made on.
    pub(crate) instrument_id: Option<String>,
    /// `metadata` as sent.
    pub(crate) metadata: Value,
    /// The \[EXT\] `emvResponse` object.
    pub(crate) emv_response: Option<Value>,
    /// The 3DS flow, when the card asks for one.
    #[serde(with = "three_ds_name")]
    pub(crate) three_ds: Option<ThreeDs>,
    /// Where the customer completes 3DS.
    pub(crate) approval_url: Option<String>,
}

/// A registered PaymentsAI webhook destination.
#[derive(Clone)]
pub(crate) struct Destination {
    /// Target URL.
    pub(crate) url: String,
    /// Basic credentials to send, if any.
    pub(crate) basic: Option<(String, String)>,
}

/// PaymentsAI keys, tokens, idempotency records and webhook destinations.
pub struct PaiState {
    /// Full `ApiKey` credential → organization id.
    pub(crate) keys: HashMap<String, String>,
    /// The temporal key and when it was issued, until it is exchanged.
    pub(crate) temporal: Option<(String, i64)>,
    /// SHA-256 of the secrets set so far, oldest first.
    pub(crate) secret_history: Vec<[u8; 32]>,
    /// Customers by id.
    pub(crate) customers: HashMap<String, Value>,
    /// Single-use card tokens.
    pub(crate) tokens: HashMap<String, Card>,
    /// Payment instruments attached to customers.
    pub(crate) instruments: HashMap<String, Card>,
    /// Instrument ids by card fingerprint (a keyed hash of customer, PAN and expiry): a card
    /// presented again by the same customer is the instrument it already is, as a gateway's
    /// vault deduplicates cards (and the vault stays as large as the set of cards, not sales).
    pub(crate) fingerprints: HashMap<String, String>,
    /// Key of the fingerprints: random per sandbox, so a fingerprint is no PAN hash anyone
    /// could reverse by enumeration.
    pub(crate) fingerprint_key: [u8; 32],
    /// Registered webhook destinations.
    pub(crate) destinations: Vec<Destination>,
}

impl PaiState {
    /// Initial state: the stage key is valid, the temporal key is issued at `now`.
    pub fn new(cfg: &PaiConfig, now: i64) -> Self {
        let mut keys = HashMap::new();
        keys.insert(cfg.stage_credential(), cfg.organization_id.clone());
        PaiState {
            keys,
            temporal: Some((cfg.temporal_api_key.clone(), now)),
            secret_history: Vec::new(),
            customers: HashMap::new(),
            tokens: HashMap::new(),
            instruments: HashMap::new(),
            fingerprints: HashMap::new(),
            fingerprint_key: rand::random(),
            destinations: Vec::new(),
        }
    }
}

/// What a Pay1st payment carries beyond the ledger row.
#[derive(Clone, Serialize)]
pub(crate) struct Payment {
    /// `countryCode` as sent.
    pub(crate) country: String,
    /// `webhookUrl` as sent.
    pub(crate) webhook_url: Option<String>,
    /// The \[EXT\] `emvResponse` object of a card-present payment.
    pub(crate) emv_response: Option<Value>,
    /// `products` and `metadata` as sent (the status query echoes the create request).
    pub(crate) products: Value,
    pub(crate) metadata: Value,
    /// Status queries answered so far: a payment is shown `NEW`, then `PENDING`, then its
    /// final status (see `crate::pay1st`).
    pub(crate) queries: u32,
    /// A final status the ledger state does not name (`CANCELLED`, `ABANDONED`).
    pub(crate) final_status: Option<&'static str>,
}

/// Pay1st access and refresh tokens (with their expiry); the payments are in
/// `crate::store`.
#[derive(Default)]
pub struct Pay1stState {
    /// Access token → expiry (virtual Unix seconds).
    pub(crate) access: HashMap<String, i64>,
    /// Refresh token → expiry.
    pub(crate) refresh: HashMap<String, i64>,
}

/// [`Extra::three_ds`] as a name in the stored row.
mod three_ds_name {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<ThreeDs>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|f| match f {
            ThreeDs::Challenge => "challenge",
            ThreeDs::ChallengeThenDecline => "challenge-then-decline",
        })
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ThreeDs>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None => Ok(None),
            Some("challenge") => Ok(Some(ThreeDs::Challenge)),
            Some("challenge-then-decline") => Ok(Some(ThreeDs::ChallengeThenDecline)),
            Some(o) => Err(serde::de::Error::custom(format!("unknown 3DS flow {o}"))),
        }
    }
}

/// A stored [`Payment`] as it parses: `final_status` owned, then checked against the names
/// Pay1st's status enum has beyond the ledger's.
#[derive(Deserialize)]
struct PaymentRow {
    country: String,
    webhook_url: Option<String>,
    emv_response: Option<Value>,
    products: Value,
    metadata: Value,
    queries: u32,
    final_status: Option<String>,
}

impl<'de> Deserialize<'de> for Payment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Payment::try_from(PaymentRow::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<PaymentRow> for Payment {
    type Error = String;

    fn try_from(r: PaymentRow) -> Result<Self, String> {
        const NAMES: [&str; 2] = ["CANCELLED", "ABANDONED"];
        let final_status = match r.final_status {
            None => None,
            Some(n) => Some(
                *NAMES
                    .iter()
                    .find(|k| **k == n)
                    .ok_or_else(|| format!("unknown final status {n}"))?,
            ),
        };
        Ok(Payment {
            country: r.country,
            webhook_url: r.webhook_url,
            emv_response: r.emv_response,
            products: r.products,
            metadata: r.metadata,
            queries: r.queries,
            final_status,
        })
    }
}
