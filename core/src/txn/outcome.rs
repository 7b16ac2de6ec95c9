//! The definite end of a transaction and the card facts a receipt needs.

use emvbridge_protocol::emv::{mask_pan_digits, Cid, CvmMethod, CvmOutcome, CvmResults};
use emvbridge_protocol::tlv::Tag;
use emvbridge_protocol::vipa::Template;

use super::host::{AuthKind, EntryMode, PosReference, Reference, ReversalReason, ReversalResult};
use crate::money::Money;

/// How a transaction ended, as the POS must show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Approved online by the issuer and completed by the card (TC).
    Approved,
    /// Approved for less than the requested amount.
    PartiallyApproved,
    /// Approved by the card offline (Y1), or offline because the host was unreachable (Y3):
    /// not an issuer approval; the transaction is stored and forwarded.
    ApprovedOffline,
    /// Declined by the issuer, the card or offline rules.
    Declined,
    /// Cancelled before anything was approved.
    Cancelled,
    /// Something may have been approved and the gateway confirmed it is undone (voided, or
    /// refunded in full), or it confirmed after its processing window that it has nothing:
    /// nothing is held.
    Reversed,
    /// A reversal was due and is not confirmed — refused, unanswered, or "not found" while
    /// the gateway may still process the request: the resolver keeps asking and reversing;
    /// the POS must treat the payment as not made.
    Unresolved,
    /// The reader failed (error status, protocol error, vanished) before anything was
    /// approved: no money moved.
    Failed,
}

impl OutcomeStatus {
    /// Whether the merchant may hand over the goods.
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            OutcomeStatus::Approved
                | OutcomeStatus::PartiallyApproved
                | OutcomeStatus::ApprovedOffline
        )
    }
}

/// What happened to a reversal the transaction had to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalOutcome {
    /// Why it was due.
    pub reason: ReversalReason,
    /// The host's answer; `None` while none came.
    pub result: Option<ReversalResult>,
}

/// Card and cryptogram facts, from the reader's E4 and final E3/E5 (the later values win).
/// Holds no clear PAN: the PAN as the reader masked it, shown first 6 / last 4.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CardFacts {
    /// PAN, masked (`476173******0010`).
    pub masked_pan: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Brand from the BIN (`visa`, `mastercard`, `amex`, `discover`).
    pub brand: Option<String>,
    /// Application label (50) or preferred name (9F12).
    pub app_label: Option<String>,
    /// AID (84, 9F06 or 4F), hex.
    pub aid: Option<String>,
    /// How the card was read.
    pub entry_mode: Option<EntryMode>,
    /// Terminal verification results (95), hex.
    pub tvr: Option<String>,
    /// Transaction status information (9B), hex.
    pub tsi: Option<String>,
    /// Cryptogram type of the last cryptogram (`ARQC`, `TC`, `AAC`).
    pub cryptogram_type: Option<String>,
    /// The last application cryptogram (9F26), hex.
    pub cryptogram: Option<String>,
    /// The ARQC sent to the host, hex.
    pub arqc: Option<String>,
    /// Authorisation response code given to the card (8A), as text (`00`, `Z3`).
    #[serde(serialize_with = "ser_arc")]
    pub arc: Option<[u8; 2]>,
    /// Cardholder verification performed, in receipt wording (`PIN VERIFIED`, `SIGNATURE`).
    pub cvm: Option<String>,
    /// Application transaction counter (9F36), hex.
    pub atc: Option<String>,
    /// PAN sequence number (5F34).
    pub psn: Option<u8>,
}

fn ser_arc<S: serde::Serializer>(arc: &Option<[u8; 2]>, s: S) -> Result<S::Ok, S::Error> {
    match arc {
        Some(a) => s.serialize_some(&String::from_utf8_lossy(a)),
        None => s.serialize_none(),
    }
}

impl CardFacts {
    /// Takes what a receipt needs from a reader template (E2/E3/E4/E5).
    pub fn absorb(&mut self, t: Template<'_>) {
        let hex = |v: &[u8]| hex::encode_upper(v);
        let text = |v: &[u8]| String::from_utf8_lossy(v).trim().to_owned();
        if let Some(v) = t.value(Tag::PAN) {
            self.set_pan(&hex(v));
        } else if let Some(v) = t.value(Tag::TRACK2_EQUIVALENT) {
            let s = hex(v);
            let pan = s.split('D').next().unwrap_or_default().to_owned();
            self.set_pan(&pan);
        } else if let Some(v) = t.value(Tag::VIPA_MASKED_TRACK2) {
            // A swipe or an MSD tap: the reader's masked track 2 in ASCII (`401200******5439D…`,
            // or `;…=…` with sentinels); only its PAN part is kept.
            let text = String::from_utf8_lossy(v);
            let pan: String = text
                .trim_start_matches(';')
                .split(['D', '='])
                .next()
                .unwrap_or_default()
                .chars()
                .map(|c| if c == '*' { 'A' } else { c })
                .filter(|c| c.is_ascii_hexdigit())
                .collect();
            if pan.len() >= 10 {
                self.set_pan(&pan);
            }
        }
        if let Some(v) = t
            .value(Tag::APPLICATION_PREFERRED_NAME)
            .or_else(|| t.value(Tag::APPLICATION_LABEL))
        {
            self.app_label = Some(text(v));
        }
        if let Some(v) = t
            .value(Tag::DF_NAME)
            .or_else(|| t.value(Tag::AID_TERMINAL))
            .or_else(|| t.value(Tag::AID))
        {
            self.aid = Some(hex(v));
        }
        if let Some(v) = t.value(Tag::TVR) {
            self.tvr = Some(hex(v));
        }
        if let Some(v) = t.value(Tag::TSI) {
            self.tsi = Some(hex(v));
        }
        if let Some(v) = t.value(Tag::APPLICATION_CRYPTOGRAM) {
            self.cryptogram = Some(hex(v));
        }
        if let Some(cid) = t
            .value(Tag::CRYPTOGRAM_INFORMATION_DATA)
            .and_then(|v| Cid::parse(v).ok())
        {
            let kind = cid.cryptogram_type().as_str().to_owned();
            if kind == "ARQC" {
                self.arqc.clone_from(&self.cryptogram);
            }
            self.cryptogram_type = Some(kind);
        }
        if let Some(v) = t
            .value(Tag::AUTHORISATION_RESPONSE_CODE)
            .and_then(|v| <[u8; 2]>::try_from(v).ok())
        {
            self.arc = Some(v);
        }
        if let Some(r) = t
            .value(Tag::CVM_RESULTS)
            .and_then(|v| CvmResults::parse(v).ok())
        {
            self.cvm = Some(cvm_text(r).to_owned());
        }
        if let Some(v) = t.value(Tag::ATC) {
            self.atc = Some(hex(v));
        }
        if let Some(v) = t.value(Tag::PAN_SEQUENCE_NUMBER).and_then(|v| v.first()) {
            self.psn = Some((v >> 4) * 10 + (v & 0x0F));
        }
    }

    /// Records the PAN digits as the reader sent them: digits masked by the reader (nibble
    /// `A`) become `*`; a PAN sent in the clear (no SRED) is masked here, first 6 / last 4.
    fn set_pan(&mut self, hex_digits: &str) {
        let digits = hex_digits.trim_end_matches('F');
        let shown = if digits.contains('A') {
            digits.replace('A', "*")
        } else {
            mask_pan_digits(digits)
        };
        let last4: String = shown
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if last4.len() == 4 && last4.bytes().all(|b| b.is_ascii_digit()) {
            self.last4 = Some(last4);
        }
        self.brand = brand(&shown).map(str::to_owned);
        self.masked_pan = Some(shown);
    }
}

/// The card brand from the first digits of a (masked) PAN.
pub fn brand(pan: &str) -> Option<&'static str> {
    let n = |k: usize| pan.get(..k).and_then(|s| s.parse::<u32>().ok());
    match (n(1), n(2), n(4)) {
        (Some(4), _, _) => Some("visa"),
        (_, Some(34 | 37), _) => Some("amex"),
        (_, Some(51..=55), _) | (_, _, Some(2221..=2720)) => Some("mastercard"),
        (_, Some(65), _) | (_, _, Some(6011 | 6440..=6499)) => Some("discover"),
        _ => None,
    }
}

fn cvm_text(r: CvmResults) -> &'static str {
    let ok = matches!(r.outcome(), CvmOutcome::Successful);
    match r.code().method() {
        CvmMethod::PlaintextPinByIcc | CvmMethod::EncipheredPinByIcc if ok => "PIN VERIFIED",
        CvmMethod::PlaintextPinByIccAndSignature | CvmMethod::EncipheredPinByIccAndSignature
            if ok =>
        {
            "PIN VERIFIED + SIGNATURE"
        }
        CvmMethod::EncipheredPinOnline => "ONLINE PIN",
        CvmMethod::Signature => "SIGNATURE",
        CvmMethod::NoCvmRequired => "NO CVM REQUIRED",
        CvmMethod::FailCvmProcessing => "CVM FAILED",
        _ if !ok => "CVM FAILED",
        _ => "OTHER CVM",
    }
}

/// The definite end of one transaction, with what a receipt and the journal need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The bridge's reference.
    pub reference: Reference,
    /// The point of sale's own reference, as the request carried it (the journal keeps it
    /// with a stored offline approval, whose forward sends it again).
    pub pos_reference: Option<PosReference>,
    /// Sale, pre-authorization or refund.
    pub kind: AuthKind,
    /// How it ended.
    pub status: OutcomeStatus,
    /// The amount requested.
    pub amount: Money,
    /// The amount approved, when approved.
    pub approved_amount: Option<Money>,
    /// Gateway transaction id, when the host created one.
    pub gateway_id: Option<String>,
    /// Issuer authorisation code.
    pub auth_code: Option<String>,
    /// Decline code from the host.
    pub decline_code: Option<String>,
    /// Why it ended this way, in words (no card data).
    pub reason: Option<String>,
    /// The reversal the transaction made, if any.
    pub reversal: Option<ReversalOutcome>,
    /// Card and cryptogram facts for the receipt.
    pub card: CardFacts,
    /// The reader's final data set (the contents of `E3`/`E5`: TC or AAC, 9F27, 9F36, 95,
    /// 9B, the reader-masked PAN and the SRED container), when the card gave one. An offline
    /// approval (Y1) is forwarded with it; it holds no clear PAN.
    pub final_data: Option<bytes::Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brands_and_masking() {
        assert_eq!(brand("411111******1111"), Some("visa"));
        assert_eq!(brand("374245*****1006"), Some("amex"));
        assert_eq!(brand("555555******4444"), Some("mastercard"));
        assert_eq!(brand("222300******0000"), Some("mastercard"));
        assert_eq!(brand("601111******1117"), Some("discover"));
        assert_eq!(brand("9"), None);
        let mut f = CardFacts::default();
        f.set_pan("4111111111111111");
        assert_eq!(f.masked_pan.as_deref(), Some("411111******1111"));
        assert_eq!(f.last4.as_deref(), Some("1111"));
        f.set_pan("374245AAAAA1006F");
        assert_eq!(f.masked_pan.as_deref(), Some("374245*****1006"));
        assert_eq!(f.brand.as_deref(), Some("amex"));
    }
}
