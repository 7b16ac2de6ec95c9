//! What the engine asks of a gateway besides an authorization (capture, void, refund, status)
//! and what comes back, in the engine's terms; and which gateway API speaks it ([`Dialect`]).

use std::fmt;

use crate::money::Money;
use crate::txn::host::{PosReference, Reference};

/// Which gateway API an adapter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Number (formerly Easy Pay Solutions), Aspen REST (§1).
    Number,
    /// PaymentsAI public API (§2).
    PaymentsAi,
    /// Pay1st (Carry1st) gateway integration (§3).
    Pay1st,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Number => "number",
            Dialect::PaymentsAi => "paymentsai",
            Dialect::Pay1st => "pay1st",
        })
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    /// `number`, `paymentsai` (or `pai`, `payments-ai`), `pay1st`, case-insensitive.
    fn from_str(s: &str) -> Result<Dialect, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "number" => Ok(Dialect::Number),
            "paymentsai" | "pai" | "payments-ai" => Ok(Dialect::PaymentsAi),
            "pay1st" => Ok(Dialect::Pay1st),
            other => Err(format!(
                "unknown gateway dialect {other:?} (number, paymentsai, pay1st)"
            )),
        }
    }
}

/// Capture of a pre-authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// The bridge's reference for the capture itself (idempotency key where supported).
    pub reference: Reference,
    /// Gateway id of the approved pre-authorization.
    pub gateway_id: String,
    /// The amount that was authorized.
    pub authorized: Money,
    /// The amount to capture (same currency).
    pub amount: Money,
    /// The point of sale's reference of the pre-authorization, for the dialects whose
    /// capture has a free-text field (PaymentsAI's capture is a sale with a `description`).
    pub pos_reference: Option<PosReference>,
}

/// Void of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidRequest {
    /// The reference of the transaction being voided (for logs).
    pub reference: Reference,
    /// Its gateway id.
    pub gateway_id: String,
}

/// Refund of (part of) a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The bridge's reference for the refund.
    pub reference: Reference,
    /// Gateway id of the original sale.
    pub gateway_id: String,
    /// Amount to refund.
    pub amount: Money,
    /// The point of sale's reference for the refund, for the dialects whose refund has a
    /// free-text field (PaymentsAI's `description`; Number's `ApplyCredit` has none).
    pub pos_reference: Option<PosReference>,
}

/// The answer to a capture, void or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Done; `gateway_id` is the id of the resulting gateway transaction (the original's id
    /// when the gateway creates none).
    Done {
        /// Gateway transaction id.
        gateway_id: String,
    },
    /// The gateway refused (void declined, nothing refundable, amount too large…).
    Refused {
        /// Gateway code, if any.
        code: Option<String>,
        /// Short reason.
        reason: String,
    },
    /// The gateway has no such transaction.
    NotFound,
    /// Certainly not processed (not sent, or refused before processing: auth, validation).
    Unavailable {
        /// Short reason.
        reason: String,
    },
    /// May or may not have been processed.
    Unknown {
        /// Short reason.
        reason: String,
    },
    /// The dialect has no API for this operation.
    Unsupported {
        /// What is missing.
        reason: &'static str,
    },
}

/// State of a transaction as a status lookup finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Approved and standing (open or settled).
    Approved,
    /// Declined or failed: no money moved.
    Declined,
    /// Voided / released: no money moved.
    Voided,
    /// Refunded, fully or in part.
    Refunded,
    /// Not final yet (hosted checkout, 3DS, offsite).
    Pending,
}

/// A transaction as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStatus {
    /// Gateway transaction id.
    pub gateway_id: String,
    /// Its state.
    pub state: TxnState,
    /// The (approved) amount, when the gateway reports it.
    pub amount: Option<Money>,
}

/// The answer to a status lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusResult {
    /// The gateway knows the transaction.
    Found(TxnStatus),
    /// The gateway has no transaction with this reference: nothing moved.
    NotFound,
    /// The lookup itself failed; ask again later.
    Unknown {
        /// Short reason.
        reason: String,
    },
}
