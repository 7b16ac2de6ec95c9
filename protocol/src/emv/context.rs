//! Where a data object sits, and what that changes: the template around it, the payment
//! scheme of the application (from its AID), and whether the bytes are a VIPA message.
//!
//! EMV Book 3 Annex A gives one meaning per tag, but the contactless kernels reuse the
//! `9F5x`–`9F7x` range with meanings of their own (EMV Contactless Books C-2 to C-7), and
//! Verifone VIPA gives names to private and context-specific tags (`C2`, `E0`, `DFDF..`) that
//! other vendors' card dumps use for other things. [`Context::name`] and
//! [`super::describe_in`] take the context into account; without one (`Context::default()`),
//! they fall back on the value's shape, as emv-utils does, and then on the Book 3 meaning.

use super::dictionary::{self, Source};
use crate::tlv::Tag;

/// The payment scheme of an application, from the RID (first five bytes) of its AID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Scheme {
    /// RID `A000000003`; contactless Kernel 3.
    Visa,
    /// RID `A000000004` (and Maestro UK `A000000005`); contactless Kernel 2.
    Mastercard,
    /// RID `A000000025`; contactless Kernel 4.
    Amex,
    /// RID `A000000065`; contactless Kernel 5.
    Jcb,
    /// RID `A000000152` (Discover, Diners Club International) and `A000000324`; Kernel 6.
    Discover,
    /// RID `A000000333`; contactless Kernel 7.
    UnionPay,
    /// RID `A000000277`.
    Interac,
    /// RID `A000000524`.
    RuPay,
    /// RID `A000000384`.
    Eftpos,
    /// RID `A000000658`.
    Mir,
}

/// Known AIDs (RID + PIX) and their products, longest first within a RID (EMVCo's registered
/// application providers and the schemes' published AID lists).
static AIDS: &[(&[u8], Scheme, &str)] = &[
    (
        &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10],
        Scheme::Visa,
        "Visa credit or debit",
    ),
    (
        &[0xA0, 0, 0, 0, 0x03, 0x20, 0x10],
        Scheme::Visa,
        "Visa Electron",
    ),
    (&[0xA0, 0, 0, 0, 0x03, 0x20, 0x20], Scheme::Visa, "V PAY"),
    (
        &[0xA0, 0, 0, 0, 0x03, 0x80, 0x02],
        Scheme::Visa,
        "Visa Dynamic Passcode Authentication",
    ),
    (&[0xA0, 0, 0, 0, 0x03, 0x10, 0x03], Scheme::Visa, "Visa"),
    (&[0xA0, 0, 0, 0, 0x03], Scheme::Visa, "Visa"),
    (
        &[0xA0, 0, 0, 0, 0x04, 0x10, 0x10],
        Scheme::Mastercard,
        "Mastercard credit or debit",
    ),
    (
        &[0xA0, 0, 0, 0, 0x04, 0x30, 0x60],
        Scheme::Mastercard,
        "Maestro",
    ),
    (
        &[0xA0, 0, 0, 0, 0x04, 0x60, 0x00],
        Scheme::Mastercard,
        "Cirrus",
    ),
    (
        &[0xA0, 0, 0, 0, 0x04, 0x80, 0x02],
        Scheme::Mastercard,
        "Mastercard Chip Authentication Program",
    ),
    (&[0xA0, 0, 0, 0, 0x04], Scheme::Mastercard, "Mastercard"),
    (
        &[0xA0, 0, 0, 0, 0x05, 0x00, 0x01],
        Scheme::Mastercard,
        "Maestro UK",
    ),
    (&[0xA0, 0, 0, 0, 0x05], Scheme::Mastercard, "Maestro UK"),
    (
        &[0xA0, 0, 0, 0, 0x25, 0x01],
        Scheme::Amex,
        "American Express",
    ),
    (&[0xA0, 0, 0, 0, 0x25], Scheme::Amex, "American Express"),
    (&[0xA0, 0, 0, 0, 0x65, 0x10, 0x10], Scheme::Jcb, "JCB"),
    (&[0xA0, 0, 0, 0, 0x65], Scheme::Jcb, "JCB"),
    (
        &[0xA0, 0, 0, 0x01, 0x52, 0x30, 0x10],
        Scheme::Discover,
        "Discover / Diners Club International",
    ),
    (&[0xA0, 0, 0, 0x01, 0x52], Scheme::Discover, "Discover"),
    (
        &[0xA0, 0, 0, 0x03, 0x24, 0x10, 0x10],
        Scheme::Discover,
        "Discover ZIP",
    ),
    (&[0xA0, 0, 0, 0x03, 0x24], Scheme::Discover, "Discover"),
    (
        &[0xA0, 0, 0, 0x03, 0x33, 0x01, 0x01, 0x01],
        Scheme::UnionPay,
        "UnionPay debit",
    ),
    (
        &[0xA0, 0, 0, 0x03, 0x33, 0x01, 0x01, 0x02],
        Scheme::UnionPay,
        "UnionPay credit",
    ),
    (
        &[0xA0, 0, 0, 0x03, 0x33, 0x01, 0x01, 0x03],
        Scheme::UnionPay,
        "UnionPay quasi-credit",
    ),
    (&[0xA0, 0, 0, 0x03, 0x33], Scheme::UnionPay, "UnionPay"),
    (
        &[0xA0, 0, 0, 0x02, 0x77, 0x10, 0x10],
        Scheme::Interac,
        "Interac",
    ),
    (&[0xA0, 0, 0, 0x02, 0x77], Scheme::Interac, "Interac"),
    (
        &[0xA0, 0, 0, 0x05, 0x24, 0x10, 0x10],
        Scheme::RuPay,
        "RuPay",
    ),
    (&[0xA0, 0, 0, 0x05, 0x24], Scheme::RuPay, "RuPay"),
    (
        &[0xA0, 0, 0, 0x03, 0x84, 0x10],
        Scheme::Eftpos,
        "eftpos savings",
    ),
    (
        &[0xA0, 0, 0, 0x03, 0x84, 0x20],
        Scheme::Eftpos,
        "eftpos cheque",
    ),
    (&[0xA0, 0, 0, 0x03, 0x84], Scheme::Eftpos, "eftpos"),
    (
        &[0xA0, 0, 0, 0x06, 0x58, 0x10, 0x10],
        Scheme::Mir,
        "Mir credit",
    ),
    (
        &[0xA0, 0, 0, 0x06, 0x58, 0x20, 0x10],
        Scheme::Mir,
        "Mir debit",
    ),
    (&[0xA0, 0, 0, 0x06, 0x58], Scheme::Mir, "Mir"),
];

impl Scheme {
    /// The scheme that the data objects of a record point to when no AID is present: the
    /// Kernel 2 mag-stripe objects `9F62`–`9F65` (PCVC3/PUNATC/NATC) exist only for
    /// Mastercard (Book C-2 Annex A).
    pub fn from_kernel_tags(has: impl Fn(Tag) -> bool) -> Option<Scheme> {
        [0x9F62, 0x9F63, 0x9F65]
            .into_iter()
            .any(|t| has(Tag(t)))
            .then_some(Scheme::Mastercard)
    }

    /// The scheme of an AID (`4F`, `84`, `9F06`), by its RID.
    pub fn from_aid(aid: &[u8]) -> Option<Scheme> {
        aid_product(aid).map(|(s, _)| s)
    }

    /// The scheme's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Visa => "Visa",
            Scheme::Mastercard => "Mastercard",
            Scheme::Amex => "American Express",
            Scheme::Jcb => "JCB",
            Scheme::Discover => "Discover",
            Scheme::UnionPay => "UnionPay",
            Scheme::Interac => "Interac",
            Scheme::RuPay => "RuPay",
            Scheme::Eftpos => "eftpos",
            Scheme::Mir => "Mir",
        }
    }

    /// The EMV contactless kernel the scheme's cards run on (EMV Contactless Book B, Table
    /// 3-6: Kernel IDs 2–7), if it has one of its own.
    pub const fn kernel(self) -> Option<u8> {
        match self {
            Scheme::Mastercard => Some(2),
            Scheme::Visa => Some(3),
            Scheme::Amex => Some(4),
            Scheme::Jcb => Some(5),
            Scheme::Discover => Some(6),
            Scheme::UnionPay => Some(7),
            _ => None,
        }
    }
}

/// The scheme and product of an AID: the longest known prefix wins.
pub fn aid_product(aid: &[u8]) -> Option<(Scheme, &'static str)> {
    AIDS.iter()
        .filter(|(prefix, _, _)| aid.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|(_, s, p)| (*s, *p))
}

/// The surroundings of one data object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Context {
    /// The innermost constructed object it sits in (`6F`, `A5`, `BF0C`, `70`, `77`, `E0`…).
    pub template: Option<Tag>,
    /// The scheme of the application the data belongs to, when an AID told it.
    pub scheme: Option<Scheme>,
    /// The bytes are a VIPA message (`decode --frame` or `--vipa`): VIPA names apply.
    pub vipa: bool,
    /// The `9F11` Issuer Code Table Index next to the object, for `9F12` text.
    pub code_table: Option<u8>,
}

/// ASN.1 universal-class tags (ITU-T X.680 §8.4, Table 1), which EMV data never uses but
/// certificates and keys carried next to it do.
fn asn1_universal(tag: Tag) -> Option<&'static str> {
    Some(match tag.0 {
        0x01 => "ASN.1 Boolean",
        0x02 => "ASN.1 Integer",
        0x03 | 0x23 => "ASN.1 Bit String",
        0x04 | 0x24 => "ASN.1 Octet String",
        0x05 => "ASN.1 Null",
        0x06 => "ASN.1 Object Identifier",
        0x09 => "ASN.1 Real",
        0x0A => "ASN.1 Enumerated",
        0x0C | 0x2C => "ASN.1 UTF8String",
        0x0D => "ASN.1 Relative Object Identifier",
        0x13 | 0x33 => "ASN.1 PrintableString",
        0x14 | 0x34 => "ASN.1 T61String",
        0x16 | 0x36 => "ASN.1 IA5String",
        0x17 | 0x37 => "ASN.1 UTCTime",
        0x18 | 0x38 => "ASN.1 GeneralizedTime",
        0x1A | 0x3A => "ASN.1 VisibleString",
        0x1E | 0x3E => "ASN.1 BMPString",
        0x30 => "ASN.1 Sequence",
        0x31 => "ASN.1 Set",
        _ => return None,
    })
}

/// FCI templates (EMV Book 1 §11.3.4): `6F`, `A5`, `BF0C` and a directory entry `61`.
fn in_fci(t: Option<Tag>) -> bool {
    matches!(t.map(|t| t.0), Some(0x6F | 0xA5 | 0xBF0C | 0x61))
}

/// Which meaning a kernel-specific tag takes: decided by the scheme when it is known, else by
/// the value's shape (the lengths and fixed bits each kernel book prescribes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// The dictionary (Book 3 / VIPA) meaning.
    Dictionary,
    /// A kernel-specific name; decoders key on it.
    Kernel(&'static str),
}

impl Context {
    /// A context for a VIPA message.
    pub fn vipa() -> Context {
        Context {
            vipa: true,
            ..Context::default()
        }
    }

    /// The same context one level down, inside `template`.
    pub fn inside(self, template: Tag) -> Context {
        Context {
            template: Some(template),
            ..self
        }
    }

    /// The name of `tag` here; `None` if unknown (or a VIPA tag outside a VIPA message).
    pub fn name(&self, tag: Tag, value: &[u8]) -> Option<&'static str> {
        match self.meaning(tag, value) {
            Meaning::Kernel(name) => Some(name),
            Meaning::Dictionary => match dictionary::lookup(tag) {
                Some(info) => (self.vipa || info.source != Source::Vipa).then_some(info.name),
                None => asn1_universal(tag),
            },
        }
    }

    /// Resolves a tag that the contactless kernels use in different ways.
    pub(crate) fn meaning(&self, tag: Tag, value: &[u8]) -> Meaning {
        use Scheme::{Amex, Mastercard, Visa};
        let s = self.scheme;
        let len = value.len();
        let k = Meaning::Kernel;
        match tag.0 {
            // Book C-2 (Kernel 2) Annex A: Application Capabilities Information, 3 bytes, in
            // the FCI; Book C-3 (Kernel 3): Available Offline Spending Amount, n12.
            0x9F5D => match s {
                Some(Mastercard) => k("Application Capabilities Information"),
                Some(_) => Meaning::Dictionary,
                None if len == 3 && in_fci(self.template) => {
                    k("Application Capabilities Information")
                }
                None => Meaning::Dictionary,
            },
            // Kernel 2: PUNATC(Track2), 2 bytes, in a mag-stripe record; elsewhere the Entry
            // Point TTQ, 4 bytes (Book A / Book C-3).
            0x9F66 => match (s, len) {
                (Some(Mastercard), 2) | (None, 2) => k("PUNATC(Track2)"),
                _ => Meaning::Dictionary,
            },
            // Kernel 2 mag-stripe data objects (Book C-2 Annex A), not used by other kernels.
            0x9F62 if s.is_none() || s == Some(Mastercard) => k("PCVC3(Track1)"),
            0x9F63 if s.is_none() || s == Some(Mastercard) => k("PUNATC(Track1)"),
            0x9F64 if s.is_none() || s == Some(Mastercard) => k("NATC(Track1)"),
            0x9F65 if s.is_none() || s == Some(Mastercard) => k("PCVC3(Track2)"),
            // Kernel 2: Mag-stripe CVM List (a CVM list); Kernel 3: Card Additional Processes.
            0x9F68 => match s {
                Some(Mastercard) => k("Mag-stripe CVM List"),
                Some(Visa) => k("Card Additional Processes"),
                _ if len > 8 && len.is_multiple_of(2) => k("Mag-stripe CVM List"),
                _ => Meaning::Dictionary,
            },
            // Kernel 2: NATC(Track2), 1 byte; Kernel 4: Form Factor, 3 bytes.
            0x9F67 => match (s, len) {
                (Some(Mastercard) | None, 1) => k("NATC(Track2)"),
                (Some(Amex) | None, 3) => k("Form Factor"),
                _ => Meaning::Dictionary,
            },
            // Kernel 2: UDOL (a DOL) in a record; Kernel 3: Card Authentication Related Data,
            // 5–16 bytes starting with fDDA version 01.
            0x9F69 => {
                let card_auth = (5..=16).contains(&len) && value.first() == Some(&0x01);
                match s {
                    Some(Visa) => Meaning::Dictionary,
                    Some(Mastercard) => k("UDOL"),
                    _ if card_auth => Meaning::Dictionary,
                    _ => k("UDOL"),
                }
            }
            // Kernel 3: Card CVM Limit (n12, 6 bytes); Kernel 2: Track 2 Data.
            0x9F6B => match (s, len) {
                (Some(Visa), _) | (None, 6) => k("Card CVM Limit"),
                _ => k("Track 2 Data"),
            },
            // Kernel 3: CTQ; Kernel 2: Mag-stripe Application Version Number (Card).
            0x9F6C => match s {
                Some(Mastercard) => k("Mag-stripe Application Version Number (Card)"),
                _ => Meaning::Dictionary,
            },
            // Kernel 2: Mag-stripe Application Version Number (Reader), 2 bytes; Kernel 4:
            // Contactless Reader Capabilities, 1 byte; Kernel 3: VLP Reset Threshold.
            0x9F6D => match (s, len) {
                (Some(Amex) | None, 1) => k("Contactless Reader Capabilities"),
                (Some(Visa), _) => k("VLP Reset Threshold"),
                _ => Meaning::Dictionary,
            },
            // Kernel 2: Third Party Data, 5–32 bytes; Kernel 3: Form Factor Indicator, 4
            // bytes, version 1 (b8–b6 = 001); Kernel 4: Enhanced Contactless Reader
            // Capabilities, 4 bytes.
            0x9F6E => match s {
                Some(Mastercard) => k("Third Party Data"),
                Some(Visa) => Meaning::Dictionary,
                Some(Amex) => k("Enhanced Contactless Reader Capabilities"),
                Some(_) => Meaning::Dictionary,
                None if (5..=32).contains(&len) => k("Third Party Data"),
                None if len == 4 && value[0] & 0xE0 == 0x20 && value[2] == 0 && value[3] == 0 => {
                    Meaning::Dictionary
                }
                None if len == 4 => k("Enhanced Contactless Reader Capabilities"),
                None => Meaning::Dictionary,
            },
            _ => Meaning::Dictionary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_from_aids() {
        let visa = [0xA0, 0, 0, 0, 0x03, 0x10, 0x10];
        assert_eq!(
            aid_product(&visa),
            Some((Scheme::Visa, "Visa credit or debit"))
        );
        assert_eq!(
            aid_product(&[0xA0, 0, 0, 0, 0x04, 0x10, 0x10, 0x01]),
            Some((Scheme::Mastercard, "Mastercard credit or debit"))
        );
        assert_eq!(
            Scheme::from_aid(&[0xA0, 0, 0, 0, 0x25, 0x01, 0x08, 0x01]),
            Some(Scheme::Amex)
        );
        assert_eq!(Scheme::from_aid(&[0xA0, 0, 0, 0, 0x99]), None);
        assert_eq!(Scheme::Amex.kernel(), Some(4));
    }

    #[test]
    fn kernel_tags_by_scheme_and_shape() {
        let mc = Context {
            scheme: Some(Scheme::Mastercard),
            template: Some(Tag(0xBF0C)),
            ..Context::default()
        };
        assert_eq!(
            mc.name(Tag(0x9F5D), &[1, 0, 0]),
            Some("Application Capabilities Information")
        );
        let visa = Context {
            scheme: Some(Scheme::Visa),
            ..Context::default()
        };
        assert_eq!(
            visa.name(Tag(0x9F5D), &[0, 0, 0, 0, 0, 0]),
            Some("Available Offline Spending Amount (AOSA)")
        );
        assert_eq!(
            mc.name(Tag(0x9F6E), &[5, 0x28, 0, 0, 0x30, 0x30, 0]),
            Some("Third Party Data")
        );
        assert_eq!(
            visa.name(Tag(0x9F6E), &[0x23, 0x8C, 0, 0]),
            Some("Form Factor Indicator (FFI)")
        );
        let none = Context::default();
        assert_eq!(
            none.name(Tag(0x9F6E), &[0x23, 0x8C, 0, 0]),
            Some("Form Factor Indicator (FFI)")
        );
        assert_eq!(
            none.name(Tag(0x9F6E), &[0x9C, 0xD0, 0x40, 0x03]),
            Some("Enhanced Contactless Reader Capabilities")
        );
        assert_eq!(
            none.name(Tag(0x9F66), &[0x00, 0x00]),
            Some("PUNATC(Track2)")
        );
        assert_eq!(
            none.name(Tag(0x9F66), &[0x36, 0, 0x40, 0]),
            Some("Terminal Transaction Qualifiers (TTQ)")
        );
        assert_eq!(
            none.name(Tag(0x9F69), &[0x9F, 0x37, 0x04, 0x9F, 0x02, 0x06]),
            Some("UDOL")
        );
        assert_eq!(
            none.name(Tag(0x9F69), &[0x01, 0xAB, 0xCD, 0xEF, 0x12, 0x36, 0x00]),
            Some("Card Authentication Related Data")
        );
    }

    #[test]
    fn vipa_names_only_in_vipa_messages() {
        let card = Context::default();
        assert_eq!(card.name(Tag(0xE0), &[]), None);
        assert!(Context::vipa().name(Tag(0xE0), &[]).is_some());
        // Book 3 names apply everywhere.
        assert_eq!(
            card.name(Tag(0x9F02), &[0; 6]),
            Some("Amount, Authorised (Numeric)")
        );
    }
}
