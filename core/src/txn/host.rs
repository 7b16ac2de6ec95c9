//! What the transaction asks of the payment host, and what it gets back.
//!
//! These are the engine's own types: gateway adapters (`crate::gateway`) map them to and from
//! each gateway's wire format. Nothing here holds a clear PAN: the ICC data carries the PAN
//! masked by the reader and the clear card data only inside the SRED (`FF7F`) container.

use bytes::Bytes;

use crate::money::Money;

/// The bridge's own reference for one transaction: the idempotency key / client reference
/// sent to the gateway, and the key of the journal. Printable ASCII, at most 64 bytes.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Reference(pub String);

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The point of sale's own reference for a transaction: its order or ticket number
/// (Adyen's `SaleTransactionID`, triPOS's reference). It is the POS's, not the bridge's: the
/// idempotency key and client reference towards the gateway stay [`Reference`]; this one
/// rides in each dialect's free-text field (PaymentsAI `description`, Number
/// `PurchItems.ServiceDescrip`, Pay1st `metadata` entry `posReference`), is printed on the
/// receipt and is the POS's lookup key.
///
/// Valid by construction: 1 to [`PosReference::MAX_LEN`] printable ASCII characters, spaces
/// inside allowed, none leading or trailing. The bound is the API's and lies within every
/// dialect's field (PaymentsAI's `description` takes 255; Number's and Pay1st's fields document
/// no limit), so a reference is refused at the edge and never truncated on the way out:
/// what the POS sent is what the gateway shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PosReference(String);

/// Why a text is not a [`PosReference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PosReferenceError {
    /// Empty.
    #[error("pos reference is empty")]
    Empty,
    /// Longer than [`PosReference::MAX_LEN`].
    #[error("pos reference is longer than {} characters", PosReference::MAX_LEN)]
    TooLong,
    /// A character outside printable ASCII, or a leading or trailing space.
    #[error("pos reference must be printable ascii without leading or trailing spaces")]
    Unprintable,
    /// Holds a run of digits that could be a card number (grouped by spaces or dashes or
    /// not). Kept in the journal, printed on receipts and sent to the gateway in clear, a
    /// reference must never carry a PAN; the text is not echoed.
    #[error("pos reference looks like a card number; send the order or ticket id instead")]
    CardNumber,
}

impl PosReference {
    /// Longest reference, in characters (= bytes: ASCII only).
    pub const MAX_LEN: usize = 64;

    /// Validates `text` as a point-of-sale reference.
    ///
    /// # Errors
    /// [`PosReferenceError`] naming the first rule `text` breaks.
    pub fn new(text: impl Into<String>) -> Result<PosReference, PosReferenceError> {
        let text = text.into();
        if text.is_empty() {
            return Err(PosReferenceError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(PosReferenceError::TooLong);
        }
        if text.trim() != text || !text.bytes().all(|c| c == b' ' || c.is_ascii_graphic()) {
            return Err(PosReferenceError::Unprintable);
        }
        if holds_card_number(text.as_bytes()) {
            return Err(PosReferenceError::CardNumber);
        }
        Ok(PosReference(text))
    }

    /// The reference as the POS sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` holds a run of digits, single spaces or dashes between them allowed
/// (`4111 1111 1111 1111`, `4111-1111-…`), that could be a card number.
fn holds_card_number(text: &[u8]) -> bool {
    let mut digits = Vec::with_capacity(PosReference::MAX_LEN);
    let mut i = 0;
    while i <= text.len() {
        match text.get(i) {
            Some(d) if d.is_ascii_digit() => digits.push(*d),
            Some(b' ' | b'-')
                if !digits.is_empty() && text.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            _ => {
                if emvbridge_protocol::emv::card_number_like(&digits) {
                    return true;
                }
                digits.clear();
            }
        }
        i += 1;
    }
    false
}

impl TryFrom<String> for PosReference {
    type Error = PosReferenceError;
    fn try_from(text: String) -> Result<PosReference, PosReferenceError> {
        PosReference::new(text)
    }
}

impl From<PosReference> for String {
    fn from(r: PosReference) -> String {
        r.0
    }
}

impl std::fmt::Display for PosReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of money movement an authorization is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// Authorize and capture at once.
    Sale,
    /// Authorize only (pre-authorization); captured later.
    PreAuth,
    /// Money back to the card (card present).
    Refund,
}

/// How the card was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryMode {
    /// Contact chip (POS entry mode 05).
    Chip,
    /// Contactless chip (07).
    Contactless,
    /// Magnetic stripe (90/80).
    Swipe,
}

/// An online authorization request built from the reader's `E4` (online action required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The bridge's reference (idempotency key / client reference).
    pub reference: Reference,
    /// The point of sale's own reference, sent in the dialect's free-text field where it has
    /// one; never the idempotency key.
    pub pos_reference: Option<PosReference>,
    /// Sale, pre-authorization or refund.
    pub kind: AuthKind,
    /// Amount authorised (9F02) and currency (5F2A).
    pub amount: Money,
    /// Amount other / cashback (9F03), same currency; zero when none.
    pub amount_other: Money,
    /// How the card was read.
    pub entry_mode: EntryMode,
    /// The ICC data for the host: BER-TLV of the online data set (ARQC 9F26, 9F27, 9F10,
    /// 9F36, 9F37, 95, 9A, 9C, 9F02, 9F03, 5F2A, 82, 84, 9F1A, 9F33, 9F34, 9F35, masked 5A/57,
    /// 5F34 …) with the SRED container `FF7F` passed through as the reader produced it.
    pub icc_data: Bytes,
    /// PAN as the reader masked it, shown as first 6 / last 4 (`476173******0010`).
    pub masked_pan: String,
    /// Last four digits, when known.
    pub last4: Option<String>,
    /// Card brand, when known (`visa`, `mastercard`, `amex`, `discover`).
    pub brand: Option<String>,
    /// For a refund: the gateway id of the original sale, when the POS gave it.
    pub original_gateway_id: Option<String>,
    /// The online PIN the cardholder entered, enciphered by the reader (`DE D6`), for the
    /// dialects that carry one.
    pub online_pin: Option<OnlinePin>,
}

/// An online PIN as the reader enciphered it: the PIN block (`DFED6C`, DUKPT) and its key
/// serial number (`DFED03`). The block is a secret: `Debug` shows neither value's bytes,
/// and it is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct OnlinePin {
    /// The enciphered PIN block.
    pub block: emvbridge_protocol::emv::SecretBytes,
    /// The DUKPT key serial number.
    pub ksn: Vec<u8>,
}

impl std::fmt::Debug for OnlinePin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlinePin")
            .field("block_len", &self.block.len())
            .field("ksn_len", &self.ksn.len())
            .finish()
    }
}

/// The issuer's part of an online response, for the card (Continue Transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerResponse {
    /// Authorisation response code (8A), two ASCII characters (`00`, `05`, `51`).
    pub arc: [u8; 2],
    /// Issuer authentication data (91), if the host sent it.
    pub issuer_auth_data: Option<Bytes>,
    /// Issuer script templates (71/72) as complete BER-TLV, if any.
    pub scripts: Bytes,
    /// Authorisation code (89), six characters, if any.
    pub auth_code: Option<String>,
}

/// The host's answer to an [`AuthorizationRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationResult {
    /// Approved for the full amount (or, with `approved_amount` less than requested, a
    /// partial approval).
    Approved {
        /// Gateway transaction id.
        gateway_id: String,
        /// Amount the issuer approved.
        approved_amount: Money,
        /// Issuer data for the card.
        issuer: IssuerResponse,
    },
    /// Declined by the issuer or the gateway.
    Declined {
        /// Gateway transaction id, if one was created.
        gateway_id: Option<String>,
        /// Decline code as the gateway gave it (`05`, `51`, `116`…), if any.
        code: Option<String>,
        /// Short reason (no card data).
        reason: String,
        /// Issuer data for the card (8A with the decline code, 91 if any).
        issuer: IssuerResponse,
    },
    /// The request certainly did not reach the host (connection refused, DNS, TLS before
    /// sending, gateway said "not processed"): nothing to reverse.
    Unavailable {
        /// Short reason.
        reason: String,
    },
    /// The request may have been processed but no usable answer came (timeout after
    /// sending, connection dropped, unparseable reply): the outcome is unknown and must be
    /// resolved (status lookup, then reversal).
    Unknown {
        /// Short reason.
        reason: String,
    },
}

/// A reversal (void of an authorization that must not stand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalRequest {
    /// The reference of the transaction to reverse.
    pub reference: Reference,
    /// Its gateway id, if the approval reached us.
    pub gateway_id: Option<String>,
    /// The amount approved or requested.
    pub amount: Money,
    /// Why (for the gateway's notes and the log).
    pub reason: ReversalReason,
}

/// Why money that might have moved is being sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalReason {
    /// The issuer approved but the card declined at the second GENERATE AC (`E5`).
    CardDeclinedAfterApproval,
    /// The card left the reader before the transaction completed.
    CardRemoved,
    /// The reader vanished or stopped answering after the authorization went out.
    ReaderLost,
    /// The POS cancelled after the authorization went out.
    Cancelled,
    /// The host's answer never came (timeout, dropped connection, unreadable reply).
    NoHostResponse,
    /// The card's final answer never came or was unreadable.
    NoCardResponse,
}

/// The host's answer to a [`ReversalRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversalResult {
    /// Reversed / voided: no money moves.
    Reversed,
    /// The host has no such transaction: nothing moved.
    NotFound,
    /// The host refused or could not be asked; the reversal is still due.
    Failed {
        /// Short reason.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_references_are_bounded_printable_ascii() {
        assert_eq!(PosReference::new("T7 #1001").unwrap().as_str(), "T7 #1001");
        let longest = "x".repeat(PosReference::MAX_LEN);
        assert_eq!(
            PosReference::new(longest.clone()).unwrap().as_str(),
            longest
        );
        assert_eq!(PosReference::new(""), Err(PosReferenceError::Empty));
        assert_eq!(
            PosReference::new("x".repeat(PosReference::MAX_LEN + 1)),
            Err(PosReferenceError::TooLong)
        );
        for bad in [" x", "x ", "caf\u{e9}", "a\nb", "a\tb", "\u{7f}"] {
            assert_eq!(
                PosReference::new(bad),
                Err(PosReferenceError::Unprintable),
                "{bad:?}"
            );
        }
        // No card number, however it is written; other numbers are fine.
        for pan in [
            "4111111111111111",
            "order 4111 1111 1111 1111",
            "5555-5555-5555-4444/t7",
            "x378282246310005",
        ] {
            assert_eq!(
                PosReference::new(pan),
                Err(PosReferenceError::CardNumber),
                "{pan}"
            );
        }
        for fine in [
            "4111111111111112",
            "20261207-000123",
            "9111111111111110",
            "411111111111",
        ] {
            assert!(PosReference::new(fine).is_ok(), "{fine}");
        }
        // Serde goes through the same rules.
        let r: PosReference = serde_json::from_str(r#""order-9""#).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""order-9""#);
        assert!(serde_json::from_str::<PosReference>(r#""""#).is_err());
    }
}
