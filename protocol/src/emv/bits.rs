//! Bit-field and code decoders for the EMV fields a terminal and its host read most:
//! TVR, TSI, AIP, AUC, CVM list and results, CID, terminal capabilities, terminal and
//! transaction types, service code.
//!
//! Each field is a small `Copy` newtype over its bytes. Bits are named by constants
//! ([`Tvr::EXPIRED_APPLICATION`]) usable with `is_set`/`set`, and `set_bits()` iterates the
//! names of the set bits, in wire order, with the wording of the EMV tables (Book 3 Annex C,
//! Book 4 Annex A). Bits the specification leaves RFU are never named; `rfu()` returns them.

use core::fmt;

/// A field had the wrong length for its decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The field is `found` bytes long; the decoder needs `expected`.
    #[error("bad field length {found}, expected {expected}")]
    BadLength {
        /// Bytes required.
        expected: usize,
        /// Bytes found.
        found: usize,
    },
    /// A CVM list that is shorter than its 8-byte X/Y header or has an odd rule byte.
    #[error("malformed cvm list")]
    MalformedCvmList,
    /// A numeric (`n`) field with a non-BCD nibble.
    #[error("non-bcd digit")]
    NotBcd,
}

/// One named bit of a bit-field: the byte (0-based) and mask, with its specification name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bit {
    /// Byte index, 0 = byte 1 of the specification tables.
    pub byte: u8,
    /// Bit mask within the byte (`0x80` = b8).
    pub mask: u8,
    /// The specification's wording.
    pub name: &'static str,
}

/// Iterator over the names of the set bits of a field, in table order.
#[derive(Debug, Clone)]
pub struct SetBits<'a> {
    bytes: &'a [u8],
    table: &'static [Bit],
    pos: usize,
}

impl Iterator for SetBits<'_> {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        while let Some(bit) = self.table.get(self.pos) {
            self.pos += 1;
            let byte = self.bytes.get(usize::from(bit.byte)).copied().unwrap_or(0);
            if byte & bit.mask == bit.mask {
                return Some(bit.name);
            }
        }
        None
    }
}

impl core::iter::FusedIterator for SetBits<'_> {}

macro_rules! bitfield {
    (
        $(#[$meta:meta])*
        $name:ident, $len:expr, $tag:literal;
        $( $(#[$bmeta:meta])* $konst:ident = ($byte:expr, $mask:expr, $text:expr); )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length of the field in bytes.
            pub const LEN: usize = $len;
            $(
                #[doc = concat!("Byte ", stringify!($byte), " (0-based), mask `", stringify!($mask), "`: \"", $text, "\".")]
                pub const $konst: Bit = Bit { byte: $byte, mask: $mask, name: $text };
            )*
            /// Every named bit, in table order.
            pub const BITS: &'static [Bit] = &[$(Self::$konst),*];

            #[doc = concat!("Reads the `", $tag, "` value; it must be exactly `LEN` bytes.")]
            pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
                <[u8; $len]>::try_from(bytes)
                    .map($name)
                    .map_err(|_| FieldError::BadLength { expected: $len, found: bytes.len() })
            }

            /// The field's bytes.
            pub const fn bytes(&self) -> [u8; $len] {
                self.0
            }

            /// Whether `bit` is set. A bit from another field type reads as unset if out of range.
            pub fn is_set(&self, bit: Bit) -> bool {
                self.0.get(usize::from(bit.byte)).is_some_and(|b| b & bit.mask == bit.mask)
            }

            /// Sets `bit` (ignored if out of range).
            pub fn set(&mut self, bit: Bit) {
                if let Some(b) = self.0.get_mut(usize::from(bit.byte)) {
                    *b |= bit.mask;
                }
            }

            /// Clears `bit` (ignored if out of range).
            pub fn clear(&mut self, bit: Bit) {
                if let Some(b) = self.0.get_mut(usize::from(bit.byte)) {
                    *b &= !bit.mask;
                }
            }

            /// Names of the set bits, in specification order.
            pub fn set_bits(&self) -> SetBits<'_> {
                SetBits { bytes: &self.0, table: Self::BITS, pos: 0 }
            }

            /// The set bits that the table does not name (RFU or proprietary).
            pub fn rfu(&self) -> [u8; $len] {
                let mut out = self.0;
                for bit in Self::BITS {
                    if let Some(b) = out.get_mut(usize::from(bit.byte)) {
                        *b &= !bit.mask;
                    }
                }
                out
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                for b in &self.0 {
                    write!(f, "{b:02X}")?;
                }
                write!(f, ")")?;
                f.debug_list().entries(self.set_bits()).finish()
            }
        }
    };
}

bitfield! {
    /// `95` Terminal Verification Results (EMV 4.4 Book 3 Annex C5, Table 46). EMV 4.4 named
    /// the XDA, biometric and ECC bits that EMV 4.3 left RFU, and renamed byte 3 b3 from
    /// "Online PIN entered" to "Online CVM captured". Byte 5 b4 and b1 are reserved for the
    /// contactless specifications and stay unnamed (reported as RFU/proprietary).
    Tvr, 5, "95";
    OFFLINE_DATA_AUTHENTICATION_NOT_PERFORMED = (0, 0x80, "Offline data authentication was not performed");
    SDA_FAILED = (0, 0x40, "SDA failed");
    ICC_DATA_MISSING = (0, 0x20, "ICC data missing");
    CARD_ON_EXCEPTION_FILE = (0, 0x10, "Card appears on terminal exception file");
    DDA_FAILED = (0, 0x08, "DDA failed");
    CDA_FAILED = (0, 0x04, "CDA failed");
    SDA_SELECTED = (0, 0x02, "SDA selected");
    XDA_SELECTED = (0, 0x01, "XDA selected");
    DIFFERENT_APPLICATION_VERSIONS = (1, 0x80, "ICC and terminal have different application versions");
    EXPIRED_APPLICATION = (1, 0x40, "Expired application");
    APPLICATION_NOT_YET_EFFECTIVE = (1, 0x20, "Application not yet effective");
    SERVICE_NOT_ALLOWED = (1, 0x10, "Requested service not allowed for card product");
    NEW_CARD = (1, 0x08, "New card");
    BIOMETRIC_PERFORMED_SUCCESSFUL = (1, 0x02, "Biometric performed and successful");
    BIOMETRIC_TEMPLATE_FORMAT_NOT_SUPPORTED = (1, 0x01, "Biometric template format not supported");
    CARDHOLDER_VERIFICATION_NOT_SUCCESSFUL = (2, 0x80, "Cardholder verification was not successful");
    UNRECOGNISED_CVM = (2, 0x40, "Unrecognised CVM");
    PIN_TRY_LIMIT_EXCEEDED = (2, 0x20, "PIN Try Limit exceeded");
    PIN_PAD_NOT_PRESENT = (2, 0x10, "PIN entry required and PIN pad not present or not working");
    PIN_NOT_ENTERED = (2, 0x08, "PIN entry required, PIN pad present, but PIN was not entered");
    /// "Online PIN entered" before EMV 4.4.
    ONLINE_PIN_ENTERED = (2, 0x04, "Online CVM captured");
    BIOMETRIC_CAPTURE_DEVICE_NOT_WORKING = (2, 0x02, "Biometric required but Biometric capture device not working");
    BIOMETRIC_SUBTYPE_BYPASSED = (2, 0x01, "Biometric required, Biometric capture device present, but Biometric Subtype entry was bypassed");
    EXCEEDS_FLOOR_LIMIT = (3, 0x80, "Transaction exceeds floor limit");
    LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED = (3, 0x40, "Lower consecutive offline limit exceeded");
    UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED = (3, 0x20, "Upper consecutive offline limit exceeded");
    RANDOMLY_SELECTED_ONLINE = (3, 0x10, "Transaction selected randomly for online processing");
    MERCHANT_FORCED_ONLINE = (3, 0x08, "Merchant forced transaction online");
    BIOMETRIC_TRY_LIMIT_EXCEEDED = (3, 0x04, "Biometric Try Limit exceeded");
    BIOMETRIC_TYPE_NOT_SUPPORTED = (3, 0x02, "A selected Biometric Type not supported");
    XDA_SIGNATURE_VERIFICATION_FAILED = (3, 0x01, "XDA signature verification failed");
    DEFAULT_TDOL_USED = (4, 0x80, "Default TDOL used");
    ISSUER_AUTHENTICATION_FAILED = (4, 0x40, "Issuer authentication failed");
    SCRIPT_FAILED_BEFORE_FINAL_GENERATE_AC = (4, 0x20, "Script processing failed before final GENERATE AC");
    SCRIPT_FAILED_AFTER_FINAL_GENERATE_AC = (4, 0x10, "Script processing failed after final GENERATE AC");
    CA_ECC_KEY_MISSING = (4, 0x04, "CA ECC key missing");
    ECC_KEY_RECOVERY_FAILED = (4, 0x02, "ECC key recovery failed");
}

bitfield! {
    /// `9B` Transaction Status Information (EMV Book 3 Annex C6).
    Tsi, 2, "9B";
    OFFLINE_DATA_AUTHENTICATION_PERFORMED = (0, 0x80, "Offline data authentication was performed");
    CARDHOLDER_VERIFICATION_PERFORMED = (0, 0x40, "Cardholder verification was performed");
    CARD_RISK_MANAGEMENT_PERFORMED = (0, 0x20, "Card risk management was performed");
    ISSUER_AUTHENTICATION_PERFORMED = (0, 0x10, "Issuer authentication was performed");
    TERMINAL_RISK_MANAGEMENT_PERFORMED = (0, 0x08, "Terminal risk management was performed");
    SCRIPT_PROCESSING_PERFORMED = (0, 0x04, "Script processing was performed");
}

bitfield! {
    /// `82` Application Interchange Profile (EMV 4.4 Book 3 Annex C1, Table 37). EMV 4.4 adds
    /// XDA (byte 1 b8). Byte 1 b2 and byte 2 b8, b7, b6, b1 are reserved for the contactless
    /// specifications; they are named as EMV Contactless Book C-2 (Kernel 2) defines them, so
    /// that contactless AIPs do not look like RFU violations.
    Aip, 2, "82";
    XDA_SUPPORTED = (0, 0x80, "XDA supported");
    SDA_SUPPORTED = (0, 0x40, "SDA supported");
    DDA_SUPPORTED = (0, 0x20, "DDA supported");
    CARDHOLDER_VERIFICATION_SUPPORTED = (0, 0x10, "Cardholder verification is supported");
    TERMINAL_RISK_MANAGEMENT_REQUIRED = (0, 0x08, "Terminal risk management is to be performed");
    ISSUER_AUTHENTICATION_SUPPORTED = (0, 0x04, "Issuer authentication is supported");
    ON_DEVICE_CARDHOLDER_VERIFICATION_SUPPORTED = (0, 0x02, "On device cardholder verification is supported (contactless)");
    CDA_SUPPORTED = (0, 0x01, "CDA supported");
    CONTACTLESS_RESERVED = (1, 0x80, "EMV mode is supported (contactless)");
    MOBILE_PHONE = (1, 0x40, "Mobile phone (contactless)");
    CONTACTLESS_TRANSACTION = (1, 0x20, "Contactless transaction (contactless)");
    RELAY_RESISTANCE_PROTOCOL_SUPPORTED = (1, 0x01, "Relay Resistance Protocol is supported (contactless)");
}

bitfield! {
    /// `9F07` Application Usage Control (EMV Book 3 Annex C2).
    Auc, 2, "9F07";
    DOMESTIC_CASH = (0, 0x80, "Valid for domestic cash transactions");
    INTERNATIONAL_CASH = (0, 0x40, "Valid for international cash transactions");
    DOMESTIC_GOODS = (0, 0x20, "Valid for domestic goods");
    INTERNATIONAL_GOODS = (0, 0x10, "Valid for international goods");
    DOMESTIC_SERVICES = (0, 0x08, "Valid for domestic services");
    INTERNATIONAL_SERVICES = (0, 0x04, "Valid for international services");
    ATMS = (0, 0x02, "Valid at ATMs");
    NON_ATM_TERMINALS = (0, 0x01, "Valid at terminals other than ATMs");
    DOMESTIC_CASHBACK = (1, 0x80, "Domestic cashback allowed");
    INTERNATIONAL_CASHBACK = (1, 0x40, "International cashback allowed");
}

bitfield! {
    /// `9F33` Terminal Capabilities (EMV 4.4 Book 4 Annex A2, Table 30). EMV 4.4 adds the
    /// biometric CVMs, enciphered offline PIN with ECC (byte 2 b1) and XDA (byte 3 b3).
    TerminalCapabilities, 3, "9F33";
    MANUAL_KEY_ENTRY = (0, 0x80, "Manual key entry");
    MAGNETIC_STRIPE = (0, 0x40, "Magnetic stripe");
    IC_WITH_CONTACTS = (0, 0x20, "IC with contacts");
    PLAINTEXT_PIN_ICC = (1, 0x80, "Plaintext PIN for ICC verification");
    ENCIPHERED_PIN_ONLINE = (1, 0x40, "Enciphered PIN for online verification");
    SIGNATURE = (1, 0x20, "Signature (paper)");
    ENCIPHERED_PIN_OFFLINE = (1, 0x10, "Enciphered PIN for offline verification (RSA ODE)");
    NO_CVM_REQUIRED = (1, 0x08, "No CVM Required");
    ONLINE_BIOMETRIC = (1, 0x04, "Online Biometric");
    OFFLINE_BIOMETRIC = (1, 0x02, "Offline Biometric");
    ENCIPHERED_PIN_OFFLINE_ECC = (1, 0x01, "Enciphered PIN for offline verification (ECC ODE)");
    SDA = (2, 0x80, "SDA");
    DDA = (2, 0x40, "DDA");
    CARD_CAPTURE = (2, 0x20, "Card capture");
    CDA = (2, 0x08, "CDA");
    XDA = (2, 0x04, "XDA");
}

bitfield! {
    /// `9F40` Additional Terminal Capabilities (EMV 4.4 Book 4 Annex A3, Table 31; 4.4 words
    /// the print bits "Print or electronic").
    AdditionalTerminalCapabilities, 5, "9F40";
    CASH = (0, 0x80, "Cash");
    GOODS = (0, 0x40, "Goods");
    SERVICES = (0, 0x20, "Services");
    CASHBACK = (0, 0x10, "Cashback");
    INQUIRY = (0, 0x08, "Inquiry");
    TRANSFER = (0, 0x04, "Transfer");
    PAYMENT = (0, 0x02, "Payment");
    ADMINISTRATIVE = (0, 0x01, "Administrative");
    CASH_DEPOSIT = (1, 0x80, "Cash Deposit");
    NUMERIC_KEYS = (2, 0x80, "Numeric keys");
    ALPHABETIC_KEYS = (2, 0x40, "Alphabetic and special characters keys");
    COMMAND_KEYS = (2, 0x20, "Command keys");
    FUNCTION_KEYS = (2, 0x10, "Function keys");
    PRINT_ATTENDANT = (3, 0x80, "Print or electronic, attendant");
    PRINT_CARDHOLDER = (3, 0x40, "Print or electronic, cardholder");
    DISPLAY_ATTENDANT = (3, 0x20, "Display, attendant");
    DISPLAY_CARDHOLDER = (3, 0x10, "Display, cardholder");
    CODE_TABLE_10 = (3, 0x02, "Code table 10");
    CODE_TABLE_9 = (3, 0x01, "Code table 9");
    CODE_TABLE_8 = (4, 0x80, "Code table 8");
    CODE_TABLE_7 = (4, 0x40, "Code table 7");
    CODE_TABLE_6 = (4, 0x20, "Code table 6");
    CODE_TABLE_5 = (4, 0x10, "Code table 5");
    CODE_TABLE_4 = (4, 0x08, "Code table 4");
    CODE_TABLE_3 = (4, 0x04, "Code table 3");
    CODE_TABLE_2 = (4, 0x02, "Code table 2");
    CODE_TABLE_1 = (4, 0x01, "Code table 1");
}

bitfield! {
    /// `9F66` Terminal Transaction Qualifiers (EMV Contactless Book C-3 Kernel 3 Annex A, the
    /// Visa layout; Kernels 6 and 7 reuse it). Mastercard's Kernel 2 uses `9F66` in a
    /// mag-stripe record for PUNATC(Track2) instead: see the context-aware naming in
    /// [`crate::emv::context`].
    Ttq, 4, "9F66";
    MSD_SUPPORTED = (0, 0x80, "Mag-stripe mode supported");
    QVSDC_SUPPORTED = (0, 0x20, "EMV mode (qVSDC) supported");
    CONTACT_CHIP_SUPPORTED = (0, 0x10, "EMV contact chip supported");
    OFFLINE_ONLY_READER = (0, 0x08, "Offline-only reader");
    ONLINE_PIN_SUPPORTED = (0, 0x04, "Online PIN supported");
    SIGNATURE_SUPPORTED = (0, 0x02, "Signature supported");
    ODA_FOR_ONLINE_SUPPORTED = (0, 0x01, "Offline data authentication for online authorisations supported");
    ONLINE_CRYPTOGRAM_REQUIRED = (1, 0x80, "Online cryptogram required");
    CVM_REQUIRED = (1, 0x40, "CVM required");
    CONTACT_OFFLINE_PIN_SUPPORTED = (1, 0x20, "(Contact chip) offline PIN supported");
    FAST_MODE_SUPPORTED = (1, 0x08, "Fast mode supported");
    TRANSIT_TERMINAL = (1, 0x04, "Transit terminal");
    ISSUER_UPDATE_PROCESSING_SUPPORTED = (2, 0x80, "Issuer update processing supported");
    CONSUMER_DEVICE_CVM_SUPPORTED = (2, 0x40, "Consumer device CVM supported");
    CDCVM_FOR_TRANSIT_MCC_SUPPORTED = (2, 0x20, "Consumer device CVM for transit MCC supported");
    CDCVM_REQUIRED = (2, 0x08, "Consumer device CVM required");
    FDDA_V1_SUPPORTED = (3, 0x80, "fDDA v1.0 supported");
}

bitfield! {
    /// `9F6C` Card Transaction Qualifiers, Visa layout (VCPS). Mastercard uses `9F6C` for
    /// the mag-stripe application version number: decode this only for Visa cards.
    Ctq, 2, "9F6C";
    ONLINE_PIN_REQUIRED = (0, 0x80, "Online PIN required");
    SIGNATURE_REQUIRED = (0, 0x40, "Signature required");
    GO_ONLINE_IF_ODA_FAILS = (0, 0x20, "Go online if offline data authentication fails and reader is online capable");
    SWITCH_INTERFACE_IF_ODA_FAILS = (0, 0x10, "Switch interface if offline data authentication fails and reader supports VIS");
    GO_ONLINE_IF_EXPIRED = (0, 0x08, "Go online if application expired");
    SWITCH_INTERFACE_FOR_CASH = (0, 0x04, "Switch interface for cash transactions");
    SWITCH_INTERFACE_FOR_CASHBACK = (0, 0x02, "Switch interface for cashback transactions");
    NOT_VALID_FOR_CONTACTLESS_ATM = (0, 0x01, "Not valid for contactless ATM transactions");
    CONSUMER_DEVICE_CVM_PERFORMED = (1, 0x80, "Consumer device CVM performed");
    ISSUER_UPDATE_PROCESSING_SUPPORTED = (1, 0x40, "Card supports issuer update processing at the POS");
}

/// The type of application cryptogram a `9F27` announces (EMV Book 3, Table 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptogramType {
    /// `00`: Application Authentication Cryptogram (decline).
    Aac,
    /// `01`: Transaction Certificate (approve).
    Tc,
    /// `10`: Authorisation Request Cryptogram (go online).
    Arqc,
    /// `11`: RFU. EMV 4.1 withdrew the Application Authorisation Referral (AAR) this value
    /// meant in EMV 4.0 (Book 3 §6.5.5.4, "Coding of Cryptogram Information Data": "11 RFU").
    Rfu,
}

impl CryptogramType {
    /// `"AAC"`, `"TC"`, `"ARQC"`, `"RFU"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CryptogramType::Aac => "AAC",
            CryptogramType::Tc => "TC",
            CryptogramType::Arqc => "ARQC",
            CryptogramType::Rfu => "RFU",
        }
    }
}

/// `9F27` Cryptogram Information Data (EMV Book 3, Table 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cid(pub u8);

impl Cid {
    /// Reads a 1-byte `9F27`.
    pub fn parse(bytes: &[u8]) -> Result<Cid, FieldError> {
        match bytes {
            [b] => Ok(Cid(*b)),
            _ => Err(FieldError::BadLength {
                expected: 1,
                found: bytes.len(),
            }),
        }
    }

    /// b8–b7: the cryptogram type.
    pub const fn cryptogram_type(self) -> CryptogramType {
        match self.0 >> 6 {
            0 => CryptogramType::Aac,
            1 => CryptogramType::Tc,
            2 => CryptogramType::Arqc,
            // Book 3 §6.5.5.4: b8-b7 = 11 is RFU since EMV 4.1 (AAR before).
            _ => CryptogramType::Rfu,
        }
    }

    /// b6–b5: payment-system-specific cryptogram bits.
    pub const fn payment_system_specific(self) -> u8 {
        (self.0 >> 4) & 0x03
    }

    /// b4: advice required.
    pub const fn advice_required(self) -> bool {
        self.0 & 0x08 != 0
    }

    /// b3–b1: reason/advice code; `None` for `000` (no information given).
    pub const fn reason(self) -> Option<&'static str> {
        match self.0 & 0x07 {
            0 => None,
            1 => Some("Service not allowed"),
            2 => Some("PIN Try Limit exceeded"),
            3 => Some("Issuer authentication failed"),
            _ => Some("RFU reason code"),
        }
    }
}

/// How a CVM verifies the cardholder: b6–b1 of a CVM code (EMV Book 3 Annex C3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CvmMethod {
    /// `000000`
    FailCvmProcessing,
    /// `000001`
    PlaintextPinByIcc,
    /// `000010`
    EncipheredPinOnline,
    /// `000011`
    PlaintextPinByIccAndSignature,
    /// `000100`
    EncipheredPinByIcc,
    /// `000101`
    EncipheredPinByIccAndSignature,
    /// `000110`–`001111` (EMV 4.4): a biometric verified offline by the ICC (even codes) or
    /// online (odd codes).
    Biometric(u8),
    /// `011110`
    Signature,
    /// `011111`
    NoCvmRequired,
    /// Any other value (RFU, payment-system or issuer specific); the 6-bit value.
    Other(u8),
}

impl CvmMethod {
    /// The Annex C3 wording.
    pub const fn as_str(self) -> &'static str {
        match self {
            CvmMethod::FailCvmProcessing => "Fail CVM processing",
            CvmMethod::PlaintextPinByIcc => "Plaintext PIN verification performed by ICC",
            CvmMethod::EncipheredPinOnline => "Enciphered PIN verified online",
            CvmMethod::PlaintextPinByIccAndSignature => {
                "Plaintext PIN verification performed by ICC and signature (paper)"
            }
            CvmMethod::EncipheredPinByIcc => "Enciphered PIN verification performed by ICC",
            CvmMethod::EncipheredPinByIccAndSignature => {
                "Enciphered PIN verification performed by ICC and signature (paper)"
            }
            CvmMethod::Biometric(0x06) => "Facial biometric verified offline (by ICC)",
            CvmMethod::Biometric(0x07) => "Facial biometric verified online",
            CvmMethod::Biometric(0x08) => "Finger biometric verified offline (by ICC)",
            CvmMethod::Biometric(0x09) => "Finger biometric verified online",
            CvmMethod::Biometric(0x0A) => "Palm biometric verified offline (by ICC)",
            CvmMethod::Biometric(0x0B) => "Palm biometric verified online",
            CvmMethod::Biometric(0x0C) => "Iris biometric verified offline (by ICC)",
            CvmMethod::Biometric(0x0D) => "Iris biometric verified online",
            CvmMethod::Biometric(0x0E) => "Voice biometric verified offline (by ICC)",
            CvmMethod::Biometric(_) => "Voice biometric verified online",
            CvmMethod::Signature => "Signature (paper)",
            CvmMethod::NoCvmRequired => "No CVM required",
            CvmMethod::Other(0x20..=0x2F) => "Payment system specific CVM",
            CvmMethod::Other(0x30..=0x3E) => "Issuer specific CVM",
            CvmMethod::Other(_) => "RFU CVM",
        }
    }
}

/// Byte 1 of a CV rule or of `9F34`: the CVM and whether to try the next rule on failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CvmCode(pub u8);

impl CvmCode {
    /// b6–b1.
    pub const fn method(self) -> CvmMethod {
        match self.0 & 0x3F {
            0x00 => CvmMethod::FailCvmProcessing,
            0x01 => CvmMethod::PlaintextPinByIcc,
            0x02 => CvmMethod::EncipheredPinOnline,
            0x03 => CvmMethod::PlaintextPinByIccAndSignature,
            0x04 => CvmMethod::EncipheredPinByIcc,
            0x05 => CvmMethod::EncipheredPinByIccAndSignature,
            // EMV 4.4 Book 3 Annex C3, Table 39: biometric CVMs.
            b @ 0x06..=0x0F => CvmMethod::Biometric(b),
            0x1E => CvmMethod::Signature,
            0x1F => CvmMethod::NoCvmRequired,
            other => CvmMethod::Other(other),
        }
    }

    /// b7: apply the succeeding CV rule if this CVM is unsuccessful (else fail verification).
    pub const fn apply_next_if_unsuccessful(self) -> bool {
        self.0 & 0x40 != 0
    }
}

/// Byte 2 of a CV rule: when the rule applies (EMV Book 3 Annex C3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CvmCondition(pub u8);

impl CvmCondition {
    /// The Annex C3 wording.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0x00 => "Always",
            0x01 => "If unattended cash",
            0x02 => "If not unattended cash and not manual cash and not purchase with cashback",
            0x03 => "If terminal supports the CVM",
            0x04 => "If manual cash",
            0x05 => "If purchase with cashback",
            0x06 => "If transaction is in the application currency and is under X value",
            0x07 => "If transaction is in the application currency and is over X value",
            0x08 => "If transaction is in the application currency and is under Y value",
            0x09 => "If transaction is in the application currency and is over Y value",
            0x80..=0xFF => "Payment system specific condition",
            _ => "RFU condition",
        }
    }
}

/// One CV rule of a `8E` CVM list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CvRule {
    /// The method and the fail-next bit.
    pub code: CvmCode,
    /// When the rule applies.
    pub condition: CvmCondition,
}

impl fmt::Display for CvRule {
    /// `"Enciphered PIN verified online, If terminal supports the CVM; else next rule"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}; {}",
            self.code.method().as_str(),
            self.condition.as_str(),
            if self.code.apply_next_if_unsuccessful() {
                "if unsuccessful apply next rule"
            } else {
                "if unsuccessful fail cardholder verification"
            }
        )
    }
}

/// `8E` Cardholder Verification Method (CVM) List: amounts X and Y then 2-byte CV rules
/// (EMV Book 3, §10.5 and Annex C3). A borrowed view; `rules()` walks without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CvmList<'a> {
    /// Amount X, in the application currency's minor units.
    pub x: u32,
    /// Amount Y, in the application currency's minor units.
    pub y: u32,
    rules: &'a [u8],
}

impl<'a> CvmList<'a> {
    /// Reads a CVM list: at least 8 bytes and an even number of rule bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FieldError> {
        let (Some(x), Some(y), Some(rules)) = (bytes.get(0..4), bytes.get(4..8), bytes.get(8..))
        else {
            return Err(FieldError::MalformedCvmList);
        };
        if rules.len() % 2 != 0 {
            return Err(FieldError::MalformedCvmList);
        }
        let be = |s: &[u8]| s.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
        Ok(CvmList {
            x: be(x),
            y: be(y),
            rules,
        })
    }

    /// The CV rules, in priority order.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = CvRule> + 'a {
        self.rules.chunks_exact(2).map(|r| CvRule {
            code: CvmCode(r.first().copied().unwrap_or(0)),
            condition: CvmCondition(r.get(1).copied().unwrap_or(0)),
        })
    }
}

/// The outcome byte of `9F34` (EMV Book 4 Annex A4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CvmOutcome {
    /// `00`
    Unknown,
    /// `01`
    Failed,
    /// `02`
    Successful,
    /// Anything else.
    Other(u8),
}

/// `9F34` Cardholder Verification Method (CVM) Results: the CVM performed, its condition and
/// its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CvmResults(pub [u8; 3]);

impl CvmResults {
    /// Reads a 3-byte `9F34`.
    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        <[u8; 3]>::try_from(bytes)
            .map(CvmResults)
            .map_err(|_| FieldError::BadLength {
                expected: 3,
                found: bytes.len(),
            })
    }

    /// The CVM performed (`3F` = no CVM performed).
    pub const fn code(&self) -> CvmCode {
        CvmCode(self.0[0])
    }

    /// The condition of the rule that was applied.
    pub const fn condition(&self) -> CvmCondition {
        CvmCondition(self.0[1])
    }

    /// The result.
    pub const fn outcome(&self) -> CvmOutcome {
        match self.0[2] {
            0 => CvmOutcome::Unknown,
            1 => CvmOutcome::Failed,
            2 => CvmOutcome::Successful,
            other => CvmOutcome::Other(other),
        }
    }
}

/// `9F35` Terminal Type (`n2`, EMV Book 4 Annex A1), held as its two decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalType(pub u8);

impl TerminalType {
    /// Reads the 1-byte BCD value (`22` → 22).
    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        match bytes {
            [b] if b >> 4 <= 9 && b & 0x0F <= 9 => Ok(TerminalType((b >> 4) * 10 + (b & 0x0F))),
            [_] => Err(FieldError::NotBcd),
            _ => Err(FieldError::BadLength {
                expected: 1,
                found: bytes.len(),
            }),
        }
    }

    /// First digit: who operates the terminal.
    pub const fn operational_control(self) -> Option<&'static str> {
        match self.0 / 10 {
            1 => Some("Financial institution"),
            2 => Some("Merchant"),
            3 => Some("Cardholder"),
            _ => None,
        }
    }

    /// Second digit: attended or not, and its online capability.
    pub const fn environment(self) -> Option<&'static str> {
        match self.0 % 10 {
            1 => Some("Attended, online only"),
            2 => Some("Attended, offline with online capability"),
            3 => Some("Attended, offline only"),
            4 => Some("Unattended, online only"),
            5 => Some("Unattended, offline with online capability"),
            6 => Some("Unattended, offline only"),
            _ => None,
        }
    }

    /// Whether an attendant is present (second digit 1–3).
    pub const fn is_attended(self) -> bool {
        matches!(self.0 % 10, 1..=3)
    }
}

/// `9C` Transaction Type (`n2`: the first two digits of the ISO 8583 processing code),
/// held as its BCD byte (`0x09` = cashback, `0x20` = refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransactionType(pub u8);

impl TransactionType {
    /// `00` Purchase of goods or services.
    pub const PURCHASE: TransactionType = TransactionType(0x00);
    /// `01` Cash withdrawal / cash advance.
    pub const CASH: TransactionType = TransactionType(0x01);
    /// `09` Purchase with cashback.
    pub const PURCHASE_WITH_CASHBACK: TransactionType = TransactionType(0x09);
    /// `11` Quasi-cash.
    pub const QUASI_CASH: TransactionType = TransactionType(0x11);
    /// `20` Refund / return.
    pub const REFUND: TransactionType = TransactionType(0x20);
    /// `21` Deposit.
    pub const DEPOSIT: TransactionType = TransactionType(0x21);
    /// `30` Available funds inquiry.
    pub const AVAILABLE_FUNDS_INQUIRY: TransactionType = TransactionType(0x30);
    /// `31` Balance inquiry.
    pub const BALANCE_INQUIRY: TransactionType = TransactionType(0x31);
    /// `40` Transfer.
    pub const TRANSFER: TransactionType = TransactionType(0x40);
    /// `50` Payment.
    pub const PAYMENT: TransactionType = TransactionType(0x50);

    /// Reads the 1-byte `9C`.
    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        match bytes {
            [b] if b >> 4 <= 9 && b & 0x0F <= 9 => Ok(TransactionType(*b)),
            [_] => Err(FieldError::NotBcd),
            _ => Err(FieldError::BadLength {
                expected: 1,
                found: bytes.len(),
            }),
        }
    }

    /// The usual name, if the code is a common one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "Purchase",
            0x01 => "Cash",
            0x09 => "Purchase with cashback",
            0x11 => "Quasi-cash",
            0x20 => "Refund",
            0x21 => "Deposit",
            0x30 => "Available funds inquiry",
            0x31 => "Balance inquiry",
            0x40 => "Transfer",
            0x50 => "Payment",
            _ => return None,
        })
    }
}

/// `5F30` Service Code (`n3` in 2 bytes, ISO/IEC 7813), as its three digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceCode(pub [u8; 3]);

impl ServiceCode {
    /// Reads the 2-byte `5F30` (`02 01` → 201).
    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        let [a, b] = bytes else {
            return Err(FieldError::BadLength {
                expected: 2,
                found: bytes.len(),
            });
        };
        let d = [a & 0x0F, b >> 4, b & 0x0F];
        if d.iter().any(|n| *n > 9) || a >> 4 != 0 {
            return Err(FieldError::NotBcd);
        }
        Ok(ServiceCode(d))
    }

    /// From three ASCII digits (as found in track data).
    pub fn from_ascii(digits: &[u8]) -> Option<Self> {
        match digits {
            [a, b, c] if digits.iter().all(u8::is_ascii_digit) => {
                Some(ServiceCode([a - b'0', b - b'0', c - b'0']))
            }
            _ => None,
        }
    }

    /// First digit: interchange and technology.
    pub const fn interchange(&self) -> &'static str {
        match self.0[0] {
            1 => "International interchange OK",
            2 => "International interchange, use IC (chip) where feasible",
            5 => "National interchange only",
            6 => "National interchange only, use IC (chip) where feasible",
            7 => "No interchange except under bilateral agreement",
            9 => "Test",
            _ => "RFU interchange digit",
        }
    }

    /// Second digit: authorisation processing.
    pub const fn authorisation(&self) -> &'static str {
        match self.0[1] {
            0 => "Normal authorisation",
            2 => "Contact issuer via online means",
            4 => "Contact issuer via online means except under bilateral agreement",
            _ => "RFU authorisation digit",
        }
    }

    /// Third digit: allowed services and PIN requirements.
    pub const fn services(&self) -> &'static str {
        match self.0[2] {
            0 => "No restrictions, PIN required",
            1 => "No restrictions",
            2 => "Goods and services only",
            3 => "ATM only, PIN required",
            4 => "Cash only",
            5 => "Goods and services only, PIN required",
            6 => "No restrictions, prompt for PIN if PED present",
            7 => "Goods and services only, prompt for PIN if PED present",
            _ => "RFU services digit",
        }
    }

    /// Whether the chip should be used where feasible (first digit 2 or 6).
    pub const fn chip_card(&self) -> bool {
        matches!(self.0[0], 2 | 6)
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.0[0], self.0[1], self.0[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tvr_bits_by_byte() {
        // 80 00 00 80 00: ODA not performed + floor limit exceeded.
        let tvr = Tvr::parse(&[0x80, 0x00, 0x00, 0x80, 0x00]).unwrap();
        let names: Vec<_> = tvr.set_bits().collect();
        assert_eq!(
            names,
            [
                "Offline data authentication was not performed",
                "Transaction exceeds floor limit"
            ]
        );
        assert!(tvr.is_set(Tvr::EXCEEDS_FLOOR_LIMIT));
        assert!(!tvr.is_set(Tvr::SDA_FAILED));
        // 00 40 00 00 08 → expired application; byte 5 b4 is RFU (kernel relay-resistance).
        let tvr = Tvr::parse(&[0x00, 0x40, 0x00, 0x00, 0x08]).unwrap();
        assert_eq!(tvr.set_bits().collect::<Vec<_>>(), ["Expired application"]);
        assert_eq!(tvr.rfu(), [0, 0, 0, 0, 0x08]);
        // 00 00 04 00 40 → online PIN entered, issuer authentication failed.
        let tvr = Tvr::parse(&[0x00, 0x00, 0x04, 0x00, 0x40]).unwrap();
        assert_eq!(
            tvr.set_bits().collect::<Vec<_>>(),
            ["Online CVM captured", "Issuer authentication failed"]
        );
        assert_eq!(
            Tvr::parse(&[0; 4]),
            Err(FieldError::BadLength {
                expected: 5,
                found: 4
            })
        );
    }

    #[test]
    fn tvr_set_and_clear() {
        let mut tvr = Tvr::default();
        tvr.set(Tvr::MERCHANT_FORCED_ONLINE);
        tvr.set(Tvr::NEW_CARD);
        assert_eq!(tvr.bytes(), [0x00, 0x08, 0x00, 0x08, 0x00]);
        tvr.clear(Tvr::NEW_CARD);
        assert_eq!(tvr.bytes(), [0x00, 0x00, 0x00, 0x08, 0x00]);
        // EMV 4.4 Book 3 Annex C5 names 37 of the 40 bits (byte 2 b3 and byte 5 b4, b1 are
        // RFU / reserved for the contactless specifications).
        assert_eq!(Tvr::BITS.len(), 37);
    }

    #[test]
    fn tsi_e8_00() {
        // E8 00: ODA, CVM, card risk management and terminal risk management performed.
        let tsi = Tsi::parse(&[0xE8, 0x00]).unwrap();
        assert_eq!(
            tsi.set_bits().collect::<Vec<_>>(),
            [
                "Offline data authentication was performed",
                "Cardholder verification was performed",
                "Card risk management was performed",
                "Terminal risk management was performed"
            ]
        );
    }

    #[test]
    fn aip_typical_contact_card() {
        // 7C 00 is the classic SDA+DDA+CVM+TRM+IA profile; 39 00 adds CDA without DDA... 3D 00.
        let aip = Aip::parse(&[0x7C, 0x00]).unwrap();
        assert_eq!(aip.set_bits().count(), 5);
        assert!(aip.is_set(Aip::DDA_SUPPORTED) && !aip.is_set(Aip::CDA_SUPPORTED));
        let aip = Aip::parse(&[0x19, 0x80]).unwrap();
        assert_eq!(
            aip.set_bits().collect::<Vec<_>>(),
            [
                "Cardholder verification is supported",
                "Terminal risk management is to be performed",
                "CDA supported",
                "EMV mode is supported (contactless)"
            ]
        );
    }

    #[test]
    fn auc_from_captured_e2() {
        // vipa-protocol.md §5.1: 9F07 = FF00: valid everywhere, no cashback.
        let auc = Auc::parse(&[0xFF, 0x00]).unwrap();
        assert_eq!(auc.set_bits().count(), 8);
        assert!(auc.is_set(Auc::ATMS) && auc.is_set(Auc::INTERNATIONAL_GOODS));
        assert!(!auc.is_set(Auc::DOMESTIC_CASHBACK));
        assert_eq!(
            auc.set_bits().next(),
            Some("Valid for domestic cash transactions")
        );
    }

    #[test]
    fn terminal_capabilities_e0f8c8() {
        // E0 F8 C8: manual+MSR+chip; all five CVMs; SDA, DDA, CDA.
        let tc = TerminalCapabilities::parse(&[0xE0, 0xF8, 0xC8]).unwrap();
        assert_eq!(tc.set_bits().count(), 11);
        assert!(tc.is_set(TerminalCapabilities::CDA));
        assert!(!tc.is_set(TerminalCapabilities::CARD_CAPTURE));
        // 60 08 08: MSR + chip, no CVM only, CDA
        let tc = TerminalCapabilities::parse(&[0x60, 0x08, 0x08]).unwrap();
        assert_eq!(
            tc.set_bits().collect::<Vec<_>>(),
            [
                "Magnetic stripe",
                "IC with contacts",
                "No CVM Required",
                "CDA"
            ]
        );
    }

    #[test]
    fn additional_terminal_capabilities() {
        // 60 00 F0 A0 01: goods, services; all keys; print attendant, display attendant; code table 1.
        let atc = AdditionalTerminalCapabilities::parse(&[0x60, 0x00, 0xF0, 0xA0, 0x01]).unwrap();
        assert_eq!(
            atc.set_bits().collect::<Vec<_>>(),
            [
                "Goods",
                "Services",
                "Numeric keys",
                "Alphabetic and special characters keys",
                "Command keys",
                "Function keys",
                "Print or electronic, attendant",
                "Display, attendant",
                "Code table 1"
            ]
        );
    }

    #[test]
    fn ttq_and_ctq() {
        // 36 00 40 00: qVSDC, contact chip, online PIN, signature; consumer device CVM.
        let ttq = Ttq::parse(&[0x36, 0x00, 0x40, 0x00]).unwrap();
        assert_eq!(
            ttq.set_bits().collect::<Vec<_>>(),
            [
                "EMV mode (qVSDC) supported",
                "EMV contact chip supported",
                "Online PIN supported",
                "Signature supported",
                "Consumer device CVM supported"
            ]
        );
        let ctq = Ctq::parse(&[0x80, 0x80]).unwrap();
        assert!(
            ctq.is_set(Ctq::ONLINE_PIN_REQUIRED) && ctq.is_set(Ctq::CONSUMER_DEVICE_CVM_PERFORMED)
        );
        assert_eq!(ctq.set_bits().count(), 2);
    }

    #[test]
    fn cid_values() {
        assert_eq!(Cid(0x80).cryptogram_type(), CryptogramType::Arqc);
        assert_eq!(Cid(0x40).cryptogram_type(), CryptogramType::Tc);
        assert_eq!(Cid(0x00).cryptogram_type(), CryptogramType::Aac);
        // EMV Book 3 §6.5.5.4 (Coding of Cryptogram Information Data): b8-b7 = 11 is RFU since
        // EMV 4.1; EMV 4.0's AAR is gone.
        assert_eq!(Cid(0xC0).cryptogram_type(), CryptogramType::Rfu);
        assert_eq!(Cid(0xC0).cryptogram_type().as_str(), "RFU");
        let cid = Cid(0x0A);
        assert!(cid.advice_required());
        assert_eq!(cid.reason(), Some("PIN Try Limit exceeded"));
        assert_eq!(Cid(0x80).reason(), None);
        assert_eq!(
            Cid::parse(&[0x80, 0]),
            Err(FieldError::BadLength {
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn cvm_list() {
        // X = 0, Y = 0; 42 03 (online PIN if supported, else next), 1E 03 (signature),
        // 1F 03 (no CVM), 02 00 (online PIN always, fail otherwise).
        let bytes = [
            0, 0, 0, 0, 0, 0, 0x27, 0x10, 0x42, 0x03, 0x1E, 0x03, 0x1F, 0x03, 0x02, 0x00,
        ];
        let list = CvmList::parse(&bytes).unwrap();
        assert_eq!((list.x, list.y), (0, 10_000));
        let rules: Vec<CvRule> = list.rules().collect();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].code.method(), CvmMethod::EncipheredPinOnline);
        assert!(rules[0].code.apply_next_if_unsuccessful());
        assert_eq!(rules[1].code.method(), CvmMethod::Signature);
        assert!(!rules[1].code.apply_next_if_unsuccessful());
        assert_eq!(rules[2].code.method(), CvmMethod::NoCvmRequired);
        assert_eq!(
            rules[0].to_string(),
            "Enciphered PIN verified online, If terminal supports the CVM; if unsuccessful apply next rule"
        );
        assert_eq!(rules[3].condition.as_str(), "Always");
        assert_eq!(
            CvmList::parse(&bytes[..7]),
            Err(FieldError::MalformedCvmList)
        );
        assert_eq!(
            CvmList::parse(&bytes[..9]),
            Err(FieldError::MalformedCvmList)
        );
        assert_eq!(CvmList::parse(&bytes[..8]).unwrap().rules().count(), 0);
    }

    #[test]
    fn cvm_results() {
        // 1F 03 02: no CVM required, if terminal supports, successful.
        let r = CvmResults::parse(&[0x1F, 0x03, 0x02]).unwrap();
        assert_eq!(r.code().method(), CvmMethod::NoCvmRequired);
        assert_eq!(r.condition().as_str(), "If terminal supports the CVM");
        assert_eq!(r.outcome(), CvmOutcome::Successful);
        // 3F 00 01 ("no CVM performed", failed).
        let r = CvmResults::parse(&[0x3F, 0x00, 0x01]).unwrap();
        assert_eq!(r.code().method(), CvmMethod::Other(0x3F));
        assert_eq!(r.outcome(), CvmOutcome::Failed);
    }

    #[test]
    fn terminal_and_transaction_types() {
        let t = TerminalType::parse(&[0x22]).unwrap();
        assert_eq!(t.0, 22);
        assert_eq!(t.operational_control(), Some("Merchant"));
        assert_eq!(
            t.environment(),
            Some("Attended, offline with online capability")
        );
        assert!(t.is_attended());
        assert_eq!(TerminalType::parse(&[0x2A]), Err(FieldError::NotBcd));
        assert_eq!(
            TransactionType::parse(&[0x00]).unwrap(),
            TransactionType::PURCHASE
        );
        assert_eq!(TransactionType(0x09).name(), Some("Purchase with cashback"));
        assert_eq!(TransactionType(0x20).name(), Some("Refund"));
        assert_eq!(TransactionType(0x77).name(), None);
    }

    #[test]
    fn service_code_from_captured_e2() {
        // vipa-protocol.md §5.1: 5F30 = 0201.
        let sc = ServiceCode::parse(&[0x02, 0x01]).unwrap();
        assert_eq!(sc.to_string(), "201");
        assert!(sc.chip_card());
        assert_eq!(sc.authorisation(), "Normal authorisation");
        assert_eq!(sc.services(), "No restrictions");
        assert_eq!(
            ServiceCode::from_ascii(b"101"),
            Some(ServiceCode([1, 0, 1]))
        );
        assert_eq!(ServiceCode::parse(&[0x12, 0x01]), Err(FieldError::NotBcd));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(t) = Tvr::parse(&b) { let _ = t.set_bits().count(); let _ = format!("{t:?}"); }
            if let Ok(t) = Tsi::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(t) = Ttq::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(t) = Ctq::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(t) = Aip::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(t) = Auc::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(t) = TerminalCapabilities::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(t) = AdditionalTerminalCapabilities::parse(&b) { let _ = t.set_bits().count(); }
            if let Ok(l) = CvmList::parse(&b) {
                for r in l.rules() { let _ = r.to_string(); }
            }
            if let Ok(r) = CvmResults::parse(&b) { let _ = (r.code().method(), r.outcome()); }
            if let Ok(c) = Cid::parse(&b) { let _ = (c.cryptogram_type(), c.reason()); }
            let _ = TerminalType::parse(&b);
            let _ = TransactionType::parse(&b);
            let _ = ServiceCode::parse(&b);
        }

        #[test]
        fn set_bits_matches_is_set(b in proptest::array::uniform5(any::<u8>())) {
            let tvr = Tvr(b);
            let n = Tvr::BITS.iter().filter(|bit| tvr.is_set(**bit)).count();
            prop_assert_eq!(tvr.set_bits().count(), n);
            // named bits and rfu bits partition the set bits
            let mut rebuilt = tvr.rfu();
            for bit in Tvr::BITS { if tvr.is_set(*bit) { rebuilt[bit.byte as usize] |= bit.mask; } }
            prop_assert_eq!(rebuilt, b);
        }
    }
}
