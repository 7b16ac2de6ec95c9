//! BER-TLV tags as EMV uses them: up to four bytes, packed big-endian into a `u32`.

use core::fmt;
use core::str::FromStr;

/// A BER-TLV tag, its encoded bytes packed big-endian: `Tag(0x9F02)` is the two bytes `9F 02`.
///
/// Packing the bytes (rather than decoding the tag number) keeps the value identical to
/// what specifications and captures print, and makes matching a single integer compare.
/// Any value is accepted: unknown tags are carried, never rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tag(pub u32);

impl Tag {
    /// Number of bytes the tag occupies on the wire (1 to 4).
    #[inline]
    pub const fn encoded_len(self) -> usize {
        match self.0 {
            0..=0xFF => 1,
            0x100..=0xFFFF => 2,
            0x1_0000..=0xFF_FFFF => 3,
            _ => 4,
        }
    }

    /// The first (leading) byte of the tag: it carries the class and the constructed bit.
    #[inline]
    pub const fn first_byte(self) -> u8 {
        (self.0 >> (8 * (self.encoded_len() - 1))) as u8
    }

    /// Bit 6 of the first byte: the value is itself a sequence of TLVs (ISO/IEC 8825-1, 8.1.2.5).
    #[inline]
    pub const fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    /// The class bits (b8–b7 of the first byte).
    #[inline]
    pub const fn class(self) -> TagClass {
        match self.first_byte() >> 6 {
            0 => TagClass::Universal,
            1 => TagClass::Application,
            2 => TagClass::ContextSpecific,
            _ => TagClass::Private,
        }
    }

    /// The tag's bytes, most significant first, in a fixed array with the used length.
    #[inline]
    pub const fn to_bytes(self) -> ([u8; 4], usize) {
        let n = self.encoded_len();
        let be = self.0.to_be_bytes();
        let mut out = [0u8; 4];
        let mut i = 0;
        while i < n {
            out[i] = be[4 - n + i];
            i += 1;
        }
        (out, n)
    }

    /// Packs up to four tag bytes. Returns `None` for an empty or longer slice.
    pub fn from_bytes(bytes: &[u8]) -> Option<Tag> {
        if bytes.is_empty() || bytes.len() > 4 {
            return None;
        }
        Some(Tag(bytes
            .iter()
            .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))))
    }

    /// Whether the value is cardholder data that must be masked in any output
    /// (PAN, track data, PIN data, manual-entry data).
    ///
    /// Encrypted containers (SRED `FF7F`, tokens) are not sensitive in this sense.
    pub const fn is_sensitive(self) -> bool {
        matches!(
            self,
            Tag::PAN
                | Tag::TRACK2_EQUIVALENT
                | Tag::TRACK1_DATA
                | Tag::TRACK2_DATA
                | Tag::TRACK1_DISCRETIONARY
                | Tag::TRACK2_DISCRETIONARY
                | Tag::CARDHOLDER_NAME
                | Tag::CARDHOLDER_NAME_EXTENDED
                | Tag::PIN_DATA
                | Tag::VIPA_PIN_BLOCK
                | Tag::VIPA_MANUAL_PAN
                | Tag::VIPA_MANUAL_CVV
                | Tag::VIPA_MANUAL_EXPIRY
                | Tag::VIPA_MASKED_TRACK1
                | Tag::VIPA_MASKED_TRACK2
        )
    }
}

/// The class of a tag (ISO/IEC 8825-1, 8.1.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagClass {
    /// `00xxxxxx`
    Universal,
    /// `01xxxxxx` (EMV application tags such as `5A`, `5F2A`)
    Application,
    /// `10xxxxxx` (EMV context-specific tags such as `82`, `9F02`)
    ContextSpecific,
    /// `11xxxxxx` (proprietary: VIPA's `E0`–`EF`, `DFxx`, `FF7F`)
    Private,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bytes, n) = self.to_bytes();
        for b in &bytes[..n] {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

/// Error from [`Tag::from_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a tag is 1 to 4 bytes of hex")]
pub struct ParseTagError;

impl FromStr for Tag {
    type Err = ParseTagError;

    /// Parses the hex spelling used by specifications: `"9F02"`, `"df a2 14"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let digits = digits.strip_prefix("0x").unwrap_or(&digits);
        if digits.is_empty() || digits.len() > 8 || !digits.len().is_multiple_of(2) {
            return Err(ParseTagError);
        }
        u32::from_str_radix(digits, 16)
            .map(Tag)
            .map_err(|_| ParseTagError)
    }
}

macro_rules! tags {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl Tag {
            $($(#[$doc])* pub const $name: Tag = Tag($value);)*
        }
    };
}

tags! {
    // --- EMV Book 3 Annex A and common scheme tags ---
    /// `4F` Application Identifier (ADF Name)
    AID = 0x4F;
    /// `50` Application Label
    APPLICATION_LABEL = 0x50;
    /// `56` Track 1 Data
    TRACK1_DATA = 0x56;
    /// `57` Track 2 Equivalent Data
    TRACK2_EQUIVALENT = 0x57;
    /// `5A` Application Primary Account Number (PAN)
    PAN = 0x5A;
    /// `5F20` Cardholder Name
    CARDHOLDER_NAME = 0x5F20;
    /// `5F24` Application Expiration Date (YYMMDD)
    APPLICATION_EXPIRATION_DATE = 0x5F24;
    /// `5F25` Application Effective Date (YYMMDD)
    APPLICATION_EFFECTIVE_DATE = 0x5F25;
    /// `5F28` Issuer Country Code
    ISSUER_COUNTRY_CODE = 0x5F28;
    /// `5F2A` Transaction Currency Code
    TRANSACTION_CURRENCY_CODE = 0x5F2A;
    /// `5F2D` Language Preference
    LANGUAGE_PREFERENCE = 0x5F2D;
    /// `5F30` Service Code
    SERVICE_CODE = 0x5F30;
    /// `5F34` Application PAN Sequence Number
    PAN_SEQUENCE_NUMBER = 0x5F34;
    /// `5F36` Transaction Currency Exponent
    TRANSACTION_CURRENCY_EXPONENT = 0x5F36;
    /// `61` Application Template
    APPLICATION_TEMPLATE = 0x61;
    /// `6F` File Control Information (FCI) Template
    FCI_TEMPLATE = 0x6F;
    /// `70` READ RECORD Response Message Template
    RECORD_TEMPLATE = 0x70;
    /// `71` Issuer Script Template 1
    ISSUER_SCRIPT_TEMPLATE_1 = 0x71;
    /// `72` Issuer Script Template 2
    ISSUER_SCRIPT_TEMPLATE_2 = 0x72;
    /// `77` Response Message Template Format 2
    RESPONSE_TEMPLATE_2 = 0x77;
    /// `80` Response Message Template Format 1
    RESPONSE_TEMPLATE_1 = 0x80;
    /// `82` Application Interchange Profile
    AIP = 0x82;
    /// `84` Dedicated File (DF) Name
    DF_NAME = 0x84;
    /// `86` Issuer Script Command
    ISSUER_SCRIPT_COMMAND = 0x86;
    /// `87` Application Priority Indicator
    APPLICATION_PRIORITY_INDICATOR = 0x87;
    /// `88` Short File Identifier (SFI)
    SFI = 0x88;
    /// `89` Authorisation Code
    AUTHORISATION_CODE = 0x89;
    /// `8A` Authorisation Response Code
    AUTHORISATION_RESPONSE_CODE = 0x8A;
    /// `8C` Card Risk Management Data Object List 1 (CDOL1)
    CDOL1 = 0x8C;
    /// `8D` Card Risk Management Data Object List 2 (CDOL2)
    CDOL2 = 0x8D;
    /// `8E` Cardholder Verification Method (CVM) List
    CVM_LIST = 0x8E;
    /// `8F` Certification Authority Public Key Index
    CA_PUBLIC_KEY_INDEX = 0x8F;
    /// `90` Issuer Public Key Certificate
    ISSUER_PUBLIC_KEY_CERTIFICATE = 0x90;
    /// `91` Issuer Authentication Data
    ISSUER_AUTHENTICATION_DATA = 0x91;
    /// `92` Issuer Public Key Remainder
    ISSUER_PUBLIC_KEY_REMAINDER = 0x92;
    /// `93` Signed Static Application Data
    SIGNED_STATIC_APPLICATION_DATA = 0x93;
    /// `94` Application File Locator (AFL)
    AFL = 0x94;
    /// `95` Terminal Verification Results
    TVR = 0x95;
    /// `97` Transaction Certificate Data Object List (TDOL)
    TDOL = 0x97;
    /// `99` Transaction Personal Identification Number (PIN) Data
    PIN_DATA = 0x99;
    /// `9A` Transaction Date (YYMMDD)
    TRANSACTION_DATE = 0x9A;
    /// `9B` Transaction Status Information
    TSI = 0x9B;
    /// `9C` Transaction Type
    TRANSACTION_TYPE = 0x9C;
    /// `9D` Directory Definition File (DDF) Name
    DDF_NAME = 0x9D;
    /// `9F01` Acquirer Identifier
    ACQUIRER_IDENTIFIER = 0x9F01;
    /// `9F02` Amount, Authorised (Numeric)
    AMOUNT_AUTHORISED = 0x9F02;
    /// `9F03` Amount, Other (Numeric)
    AMOUNT_OTHER = 0x9F03;
    /// `9F06` Application Identifier (AID) – terminal
    AID_TERMINAL = 0x9F06;
    /// `9F07` Application Usage Control
    APPLICATION_USAGE_CONTROL = 0x9F07;
    /// `9F08` Application Version Number (card)
    APPLICATION_VERSION_NUMBER_CARD = 0x9F08;
    /// `9F09` Application Version Number (terminal)
    APPLICATION_VERSION_NUMBER_TERMINAL = 0x9F09;
    /// `9F0D` Issuer Action Code – Default
    IAC_DEFAULT = 0x9F0D;
    /// `9F0E` Issuer Action Code – Denial
    IAC_DENIAL = 0x9F0E;
    /// `9F0F` Issuer Action Code – Online
    IAC_ONLINE = 0x9F0F;
    /// `9F10` Issuer Application Data
    ISSUER_APPLICATION_DATA = 0x9F10;
    /// `9F11` Issuer Code Table Index
    ISSUER_CODE_TABLE_INDEX = 0x9F11;
    /// `9F12` Application Preferred Name
    APPLICATION_PREFERRED_NAME = 0x9F12;
    /// `9F15` Merchant Category Code
    MERCHANT_CATEGORY_CODE = 0x9F15;
    /// `9F16` Merchant Identifier
    MERCHANT_IDENTIFIER = 0x9F16;
    /// `9F17` PIN Try Counter
    PIN_TRY_COUNTER = 0x9F17;
    /// `9F1A` Terminal Country Code
    TERMINAL_COUNTRY_CODE = 0x9F1A;
    /// `9F1B` Terminal Floor Limit
    TERMINAL_FLOOR_LIMIT = 0x9F1B;
    /// `9F1C` Terminal Identification
    TERMINAL_IDENTIFICATION = 0x9F1C;
    /// `9F1E` Interface Device (IFD) Serial Number
    IFD_SERIAL_NUMBER = 0x9F1E;
    /// `9F1F` Track 1 Discretionary Data
    TRACK1_DISCRETIONARY = 0x9F1F;
    /// `9F20` Track 2 Discretionary Data
    TRACK2_DISCRETIONARY = 0x9F20;
    /// `9F21` Transaction Time (HHMMSS)
    TRANSACTION_TIME = 0x9F21;
    /// `9F26` Application Cryptogram
    APPLICATION_CRYPTOGRAM = 0x9F26;
    /// `9F27` Cryptogram Information Data
    CRYPTOGRAM_INFORMATION_DATA = 0x9F27;
    /// `9F33` Terminal Capabilities
    TERMINAL_CAPABILITIES = 0x9F33;
    /// `9F34` Cardholder Verification Method (CVM) Results
    CVM_RESULTS = 0x9F34;
    /// `9F35` Terminal Type
    TERMINAL_TYPE = 0x9F35;
    /// `9F36` Application Transaction Counter (ATC)
    ATC = 0x9F36;
    /// `9F37` Unpredictable Number
    UNPREDICTABLE_NUMBER = 0x9F37;
    /// `9F38` Processing Options Data Object List (PDOL)
    PDOL = 0x9F38;
    /// `9F39` Point-of-Service (POS) Entry Mode
    POS_ENTRY_MODE = 0x9F39;
    /// `9F40` Additional Terminal Capabilities
    ADDITIONAL_TERMINAL_CAPABILITIES = 0x9F40;
    /// `9F41` Transaction Sequence Counter
    TRANSACTION_SEQUENCE_COUNTER = 0x9F41;
    /// `9F42` Application Currency Code
    APPLICATION_CURRENCY_CODE = 0x9F42;
    /// `9F49` Dynamic Data Authentication Data Object List (DDOL)
    DDOL = 0x9F49;
    /// `9F4C` ICC Dynamic Number
    ICC_DYNAMIC_NUMBER = 0x9F4C;
    /// `9F53` Transaction Category Code
    TRANSACTION_CATEGORY_CODE = 0x9F53;
    /// `9F5B` Issuer Script Results
    ISSUER_SCRIPT_RESULTS = 0x9F5B;
    /// `9F0B` Cardholder Name Extended
    CARDHOLDER_NAME_EXTENDED = 0x9F0B;
    /// `9F66` Terminal Transaction Qualifiers (contactless)
    TTQ = 0x9F66;
    /// `9F6B` Track 2 Data (contactless, Mastercard)
    TRACK2_DATA = 0x9F6B;
    /// `9F6C` Card Transaction Qualifiers
    CTQ = 0x9F6C;
    /// `9F6E` Form Factor Indicator / Third Party Data
    FORM_FACTOR_INDICATOR = 0x9F6E;
    /// `BF0C` File Control Information (FCI) Issuer Discretionary Data
    FCI_ISSUER_DISCRETIONARY_DATA = 0xBF0C;
    /// `A5` File Control Information (FCI) Proprietary Template
    FCI_PROPRIETARY_TEMPLATE = 0xA5;

    // --- VIPA templates (vipa-protocol.md §4.1) ---
    /// `E0` Data objects / host decision / unsolicited card status (host → terminal, and unsolicited)
    VIPA_E0 = 0xE0;
    /// `E1` Data needed
    VIPA_E1 = 0xE1;
    /// `E2` Decision required
    VIPA_E2 = 0xE2;
    /// `E3` Transaction approved
    VIPA_E3 = 0xE3;
    /// `E4` Online action required
    VIPA_E4 = 0xE4;
    /// `E5` Transaction declined
    VIPA_E5 = 0xE5;
    /// `E6` Status / wait notification
    VIPA_E6 = 0xE6;
    /// `E7` Contactless MSD result
    VIPA_E7 = 0xE7;
    /// `E8` Contactless non-EMV result
    VIPA_E8 = 0xE8;
    /// `EE` Device information (Reset Device response)
    VIPA_DEVICE_INFO = 0xEE;
    /// `EF` Software component versions
    VIPA_SOFTWARE_COMPONENT = 0xEF;
    /// `F0` Seen in the Reset response, holds `DF8111` (meaning \[GAP\])
    VIPA_F0 = 0xF0;
    /// `FF7F` SRED (P2PE) encrypted data container
    VIPA_SRED = 0xFF7F;
    /// `FF7C` Embedded tokenisation container
    VIPA_TOKEN = 0xFF7C;

    // --- VIPA proprietary data objects (vipa-protocol.md §4.2, §4.4) ---
    /// `48` Card status (in `E0` card events)
    VIPA_CARD_STATUS = 0x48;
    /// `C1` First tag of the captured `E2` (meaning \[GAP\])
    VIPA_C1 = 0xC1;
    /// `C3` Transaction status (in `E6`)
    VIPA_TRANSACTION_STATUS = 0xC3;
    /// `C4` Status message (ASCII, in `E6`)
    VIPA_STATUS_MESSAGE = 0xC4;
    /// `C5` PIN digit count (in `E6`)
    VIPA_PIN_DIGIT_COUNT = 0xC5;
    /// `DF0D` Model / component name
    VIPA_NAME = 0xDF0D;
    /// `DF7F` Version
    VIPA_VERSION = 0xDF7F;
    /// `DF8104` Display text
    VIPA_DISPLAY_TEXT = 0xDF8104;
    /// `DF8106` Library name
    VIPA_LIB_NAME = 0xDF8106;
    /// `DF8107` Library version
    VIPA_LIB_VERSION = 0xDF8107;
    /// `DFA20A` PIN entry result
    VIPA_PIN_ENTRY_RESULT = 0xDFA20A;
    /// `DFDF10` SRED encrypted data
    VIPA_SRED_DATA = 0xDFDF10;
    /// `DFDF11` SRED KSN
    VIPA_SRED_KSN = 0xDFDF11;
    /// `DFDF12` SRED IV
    VIPA_SRED_IV = 0xDFDF12;
    /// `DFDB01` Manual PAN entry
    VIPA_MANUAL_PAN = 0xDFDB01;
    /// `DFDB02` Manual CVV entry
    VIPA_MANUAL_CVV = 0xDFDB02;
    /// `DFDB03` Manual expiry entry
    VIPA_MANUAL_EXPIRY = 0xDFDB03;
    /// `DFDB05` Masked track 1
    VIPA_MASKED_TRACK1 = 0xDFDB05;
    /// `DFDB06` Masked track 2
    VIPA_MASKED_TRACK2 = 0xDFDB06;
    /// `DFED6C` Online PIN cipher block
    VIPA_PIN_BLOCK = 0xDFED6C;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_bits() {
        assert_eq!(Tag(0x5A).encoded_len(), 1);
        assert_eq!(Tag::AMOUNT_AUTHORISED.encoded_len(), 2);
        assert_eq!(Tag(0xDFA214).encoded_len(), 3);
        assert!(Tag(0xE0).is_constructed());
        assert!(Tag(0xFF7F).is_constructed());
        assert!(!Tag(0xDFDF10).is_constructed());
        assert!(Tag(0x70).is_constructed());
        assert!(!Tag(0x9F26).is_constructed());
        assert_eq!(Tag(0x9F26).class(), TagClass::ContextSpecific);
        assert_eq!(Tag(0x5F2A).class(), TagClass::Application);
        assert_eq!(Tag(0xDF8106).class(), TagClass::Private);
    }

    #[test]
    fn bytes_round_trip_and_text() {
        assert_eq!(Tag(0xDFA214).to_bytes(), ([0xDF, 0xA2, 0x14, 0], 3));
        assert_eq!(Tag::from_bytes(&[0x9F, 0x02]), Some(Tag::AMOUNT_AUTHORISED));
        assert_eq!(Tag::from_bytes(&[]), None);
        assert_eq!(Tag(0x9F02).to_string(), "9F02");
        assert_eq!(Tag(0x5A).to_string(), "5A");
        assert_eq!(format!("{:?}", Tag(0xFF7F)), "Tag(FF7F)");
        assert_eq!("9f02".parse::<Tag>(), Ok(Tag(0x9F02)));
        assert_eq!("DF A2 14".parse::<Tag>(), Ok(Tag(0xDFA214)));
        assert!("9F0".parse::<Tag>().is_err());
        assert!("".parse::<Tag>().is_err());
        assert!("zz".parse::<Tag>().is_err());
    }

    #[test]
    fn sensitive_tags() {
        assert!(Tag::PAN.is_sensitive());
        assert!(Tag::TRACK2_EQUIVALENT.is_sensitive());
        assert!(!Tag::AMOUNT_AUTHORISED.is_sensitive());
        assert!(!Tag::VIPA_SRED.is_sensitive());
    }
}
