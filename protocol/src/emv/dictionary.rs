//! The tag dictionary: name, format and origin of every data object emvbridge meets.
//!
//! Names of EMV tags are those of EMV 4.4 Book 3 Annex A, verbatim except that the en dash of
//! "Issuer Action Code – Default" and "(AID) – terminal" is an ASCII `-`: `emvbridge decode
//! --json` prints them and scripts match on them, so they are a stable, ASCII contract. Scheme tags
//! (`9F66`, `9F6C`, …) use the scheme's name; where two schemes give one tag different
//! meanings the note says so. VIPA proprietary tags follow vipa-protocol.md §4.
//!
//! [`lookup`] is a binary search over one sorted `static` table: no allocation, no hashing.
//! The table's order is checked at compile time.

use crate::tlv::Tag;

/// EMV data element formats (EMV Book 3, §4.3 "Data Element Format Conventions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Format {
    /// `n`: BCD digits, right-justified, padded on the left with `0`.
    N,
    /// `cn`: BCD digits, left-justified, padded on the right with `F`.
    Cn,
    /// `a`: alphabetic (A–Z, a–z) ASCII.
    A,
    /// `an`: alphanumeric ASCII.
    An,
    /// `ans`: alphanumeric and special ASCII (Book 4 Annex B common character set).
    Ans,
    /// `b`: binary, bit fields or opaque bytes.
    B,
    /// A constructed data object (template): the value is more TLVs.
    Template,
    /// `var.`: format varies (e.g. response format 1 `80`, AFL `94`).
    Var,
}

impl Format {
    /// The spelling used in EMV Book 3 Annex A (`"n"`, `"ans"`, `"var."`…).
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::N => "n",
            Format::Cn => "cn",
            Format::A => "a",
            Format::An => "an",
            Format::Ans => "ans",
            Format::B => "b",
            Format::Template => "template",
            Format::Var => "var.",
        }
    }

    /// Whether values are text (`a`, `an`, `ans`) to be shown as characters.
    pub const fn is_text(self) -> bool {
        matches!(self, Format::A | Format::An | Format::Ans)
    }
}

/// Who provides a data object (EMV Book 3 Annex A "Source" column; `Vipa` for reader tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Source {
    /// The card (ICC).
    Icc,
    /// The terminal.
    Terminal,
    /// The issuer (in the authorisation response).
    Issuer,
    /// Verifone VIPA proprietary, from the reader (vipa-protocol.md §4.4).
    Vipa,
}

/// What the dictionary knows about one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag.
    pub tag: Tag,
    /// Name, verbatim from EMV Book 3 Annex A (or the scheme / VIPA reference).
    pub name: &'static str,
    /// Value format.
    pub format: Format,
    /// Who provides it.
    pub source: Source,
    /// Templates it appears in (empty: anywhere / not specified).
    pub templates: &'static [Tag],
    /// A short note: scheme, alternative meanings, or the VIPA meaning; may be empty.
    pub note: &'static str,
}

const fn t(
    tag: u32,
    name: &'static str,
    format: Format,
    source: Source,
    templates: &'static [Tag],
    note: &'static str,
) -> TagInfo {
    TagInfo {
        tag: Tag(tag),
        name,
        format,
        source,
        templates,
        note,
    }
}

use Format::{An, Ans, Cn, Template, Var, A, B, N};
use Source::{Icc, Issuer, Terminal, Vipa};

const NONE: &[Tag] = &[];
const R70_77: &[Tag] = &[Tag(0x70), Tag(0x77)];
const R77_80: &[Tag] = &[Tag(0x77), Tag(0x80)];
const T61: &[Tag] = &[Tag(0x61)];
const T61_A5: &[Tag] = &[Tag(0x61), Tag(0xA5)];
const T6F: &[Tag] = &[Tag(0x6F)];
const TA5: &[Tag] = &[Tag(0xA5)];
const TBF0C: &[Tag] = &[Tag(0xBF0C)];
const TBF0C_73: &[Tag] = &[Tag(0xBF0C), Tag(0x73)];
const T71_72: &[Tag] = &[Tag(0x71), Tag(0x72)];
const TFF7F: &[Tag] = &[Tag(0xFF7F)];
const TFF7C: &[Tag] = &[Tag(0xFF7C)];
const TE6: &[Tag] = &[Tag(0xE6)];
const TEE: &[Tag] = &[Tag(0xEE)];
const TC6: &[Tag] = &[Tag(0xC6)];

/// The dictionary, sorted by `Tag.0` (checked at compile time below).
static TABLE: &[TagInfo] = &[
    t(
        0x42,
        "Issuer Identification Number (IIN)",
        N,
        Icc,
        TBF0C_73,
        "",
    ),
    t(
        0x48,
        "Card Status",
        B,
        Vipa,
        &[Tag(0xE0)],
        "VIPA card status in E0 card events; bit meanings unknown",
    ),
    t(0x4F, "Application Identifier (ADF Name)", B, Icc, T61, ""),
    t(0x50, "Application Label", Ans, Icc, T61_A5, ""),
    t(
        0x56,
        "Track 1 Data",
        Ans,
        Icc,
        NONE,
        "Mastercard contactless (Kernel 2)",
    ),
    t(0x57, "Track 2 Equivalent Data", B, Icc, R70_77, ""),
    t(
        0x5A,
        "Application Primary Account Number (PAN)",
        Cn,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x61,
        "Application Template",
        Template,
        Icc,
        &[Tag(0x70)],
        "",
    ),
    t(
        0x63,
        "ATR",
        B,
        Vipa,
        NONE,
        "VIPA: card answer-to-reset; raw bytes although 63 has the constructed bit",
    ),
    t(
        0x6F,
        "File Control Information (FCI) Template",
        Template,
        Icc,
        NONE,
        "",
    ),
    t(
        0x70,
        "READ RECORD Response Message Template",
        Template,
        Icc,
        NONE,
        "",
    ),
    t(0x71, "Issuer Script Template 1", Template, Issuer, NONE, ""),
    t(0x72, "Issuer Script Template 2", Template, Issuer, NONE, ""),
    t(
        0x73,
        "Directory Discretionary Template",
        Template,
        Icc,
        &[Tag(0x61)],
        "",
    ),
    t(
        0x77,
        "Response Message Template Format 2",
        Template,
        Icc,
        NONE,
        "",
    ),
    t(
        0x80,
        "Response Message Template Format 1",
        Var,
        Icc,
        NONE,
        "",
    ),
    t(0x81, "Amount, Authorised (Binary)", B, Terminal, NONE, ""),
    t(0x82, "Application Interchange Profile", B, Icc, R77_80, ""),
    t(0x83, "Command Template", B, Terminal, NONE, ""),
    t(0x84, "Dedicated File (DF) Name", B, Icc, T6F, ""),
    t(0x86, "Issuer Script Command", B, Issuer, T71_72, ""),
    t(0x87, "Application Priority Indicator", B, Icc, T61_A5, ""),
    t(0x88, "Short File Identifier (SFI)", B, Icc, TA5, ""),
    t(0x89, "Authorisation Code", An, Issuer, NONE, ""),
    t(0x8A, "Authorisation Response Code", An, Issuer, NONE, ""),
    // EMV Contactless Book B Annex A.
    t(
        0x8B,
        "POI Information",
        B,
        Terminal,
        NONE,
        "EMV Contactless Book B",
    ),
    t(
        0x8C,
        "Card Risk Management Data Object List 1 (CDOL1)",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x8D,
        "Card Risk Management Data Object List 2 (CDOL2)",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x8E,
        "Cardholder Verification Method (CVM) List",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x8F,
        "Certification Authority Public Key Index",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(0x90, "Issuer Public Key Certificate", B, Icc, R70_77, ""),
    t(0x91, "Issuer Authentication Data", B, Issuer, NONE, ""),
    t(0x92, "Issuer Public Key Remainder", B, Icc, R70_77, ""),
    t(0x93, "Signed Static Application Data", B, Icc, R70_77, ""),
    t(0x94, "Application File Locator (AFL)", Var, Icc, R77_80, ""),
    t(0x95, "Terminal Verification Results", B, Terminal, NONE, ""),
    t(
        0x96,
        "Kernel Identifier - Terminal",
        B,
        Terminal,
        NONE,
        "EMV Contactless Book B",
    ),
    t(
        0x97,
        "Transaction Certificate Data Object List (TDOL)",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x98,
        "Transaction Certificate (TC) Hash Value",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(
        0x99,
        "Transaction Personal Identification Number (PIN) Data",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(0x9A, "Transaction Date", N, Terminal, NONE, "YYMMDD"),
    t(
        0x9B,
        "Transaction Status Information",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(0x9C, "Transaction Type", N, Terminal, NONE, ""),
    t(
        0x9D,
        "Directory Definition File (DDF) Name",
        B,
        Icc,
        T61,
        "",
    ),
    t(
        0xA5,
        "File Control Information (FCI) Proprietary Template",
        Template,
        Icc,
        T6F,
        "",
    ),
    t(
        0xC0,
        "Host Decision",
        B,
        Vipa,
        &[Tag(0xE0)],
        "VIPA host decision; encoding unknown",
    ),
    t(
        0xC1,
        "VIPA C1",
        B,
        Vipa,
        NONE,
        "first object of the captured E2; meaning unknown",
    ),
    t(
        0xC2,
        "Online Approval",
        B,
        Vipa,
        &[Tag(0xE0)],
        "VIPA online approval; encoding unknown",
    ),
    t(
        0xC3,
        "Transaction Status",
        B,
        Vipa,
        TE6,
        "VIPA: 02 PIN hand-off, 0C PIN requested, 0E PIN-bypass confirmation",
    ),
    t(0xC4, "Status Message", Ans, Vipa, TE6, ""),
    t(0xC5, "PIN Digit Count", B, Vipa, TE6, ""),
    t(
        0xC6,
        "VAS Data",
        B,
        Vipa,
        NONE,
        "VIPA wallet pass data; holds DFC601/DFC602 TLVs although C6 is a primitive tag",
    ),
    t(
        0xE0,
        "Data Objects / Host Response",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(0xE1, "Data Needed", Template, Vipa, NONE, "VIPA template"),
    t(
        0xE2,
        "Decision Required",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xE3,
        "Transaction Approved",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xE4,
        "Online Action Required",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xE5,
        "Transaction Declined",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xE6,
        "Status Notification",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xE7,
        "Contactless MSD Result",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xE8,
        "Contactless Non-EMV Result",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xEE,
        "Device Information",
        Template,
        Vipa,
        NONE,
        "VIPA template (Reset response)",
    ),
    t(
        0xEF,
        "Software Component",
        Template,
        Vipa,
        NONE,
        "VIPA template",
    ),
    t(
        0xF0,
        "VIPA F0",
        Template,
        Vipa,
        NONE,
        "seen in the Reset response with DF8111; meaning unknown",
    ),
    t(0x5F20, "Cardholder Name", Ans, Icc, R70_77, ""),
    t(
        0x5F24,
        "Application Expiration Date",
        N,
        Icc,
        R70_77,
        "YYMMDD",
    ),
    t(
        0x5F25,
        "Application Effective Date",
        N,
        Icc,
        R70_77,
        "YYMMDD",
    ),
    t(
        0x5F28,
        "Issuer Country Code",
        N,
        Icc,
        R70_77,
        "ISO 3166-1 numeric",
    ),
    t(
        0x5F2A,
        "Transaction Currency Code",
        N,
        Terminal,
        NONE,
        "ISO 4217 numeric",
    ),
    t(0x5F2D, "Language Preference", An, Icc, TA5, ""),
    t(0x5F30, "Service Code", N, Icc, R70_77, ""),
    t(
        0x5F34,
        "Application Primary Account Number (PAN) Sequence Number",
        N,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x5F36,
        "Transaction Currency Exponent",
        N,
        Terminal,
        NONE,
        "",
    ),
    t(0x5F50, "Issuer URL", Ans, Icc, TBF0C, ""),
    t(
        0x5F53,
        "International Bank Account Number (IBAN)",
        Var,
        Icc,
        TBF0C,
        "",
    ),
    t(0x5F54, "Bank Identifier Code (BIC)", Var, Icc, TBF0C, ""),
    t(
        0x5F55,
        "Issuer Country Code (alpha2 format)",
        A,
        Icc,
        TBF0C,
        "",
    ),
    t(
        0x5F56,
        "Issuer Country Code (alpha3 format)",
        A,
        Icc,
        TBF0C,
        "",
    ),
    t(0x5F57, "Account Type", N, Terminal, NONE, ""),
    t(0x9F01, "Acquirer Identifier", N, Terminal, NONE, ""),
    t(
        0x9F02,
        "Amount, Authorised (Numeric)",
        N,
        Terminal,
        NONE,
        "",
    ),
    t(0x9F03, "Amount, Other (Numeric)", N, Terminal, NONE, ""),
    t(0x9F04, "Amount, Other (Binary)", B, Terminal, NONE, ""),
    t(0x9F05, "Application Discretionary Data", B, Icc, R70_77, ""),
    t(
        0x9F06,
        "Application Identifier (AID) - terminal",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(0x9F07, "Application Usage Control", B, Icc, R70_77, ""),
    t(0x9F08, "Application Version Number", B, Icc, R70_77, "card"),
    t(
        0x9F09,
        "Application Version Number",
        B,
        Terminal,
        NONE,
        "terminal",
    ),
    t(
        0x9F0A,
        "Application Selection Registered Proprietary Data",
        B,
        Icc,
        TBF0C,
        "",
    ),
    t(0x9F0B, "Cardholder Name Extended", Ans, Icc, R70_77, ""),
    t(0x9F0D, "Issuer Action Code - Default", B, Icc, R70_77, ""),
    t(0x9F0E, "Issuer Action Code - Denial", B, Icc, R70_77, ""),
    t(0x9F0F, "Issuer Action Code - Online", B, Icc, R70_77, ""),
    t(
        0x9F10,
        "Issuer Application Data",
        B,
        Icc,
        R77_80,
        "scheme-specific layout",
    ),
    t(0x9F11, "Issuer Code Table Index", N, Icc, TA5, ""),
    t(0x9F12, "Application Preferred Name", Ans, Icc, T61_A5, ""),
    t(
        0x9F13,
        "Last Online Application Transaction Counter (ATC) Register",
        B,
        Icc,
        NONE,
        "",
    ),
    t(
        0x9F14,
        "Lower Consecutive Offline Limit",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(0x9F15, "Merchant Category Code", N, Terminal, NONE, ""),
    t(0x9F16, "Merchant Identifier", Ans, Terminal, NONE, ""),
    t(
        0x9F17,
        "Personal Identification Number (PIN) Try Counter",
        B,
        Icc,
        NONE,
        "",
    ),
    t(0x9F18, "Issuer Script Identifier", B, Issuer, T71_72, ""),
    t(0x9F19, "Token Requestor ID", N, Icc, R70_77, ""),
    t(
        0x9F1A,
        "Terminal Country Code",
        N,
        Terminal,
        NONE,
        "ISO 3166-1 numeric",
    ),
    t(0x9F1B, "Terminal Floor Limit", B, Terminal, NONE, ""),
    t(0x9F1C, "Terminal Identification", An, Terminal, NONE, ""),
    t(
        0x9F1D,
        "Terminal Risk Management Data",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(
        0x9F1E,
        "Interface Device (IFD) Serial Number",
        An,
        Terminal,
        NONE,
        "",
    ),
    t(0x9F1F, "Track 1 Discretionary Data", Ans, Icc, R70_77, ""),
    t(0x9F20, "Track 2 Discretionary Data", Cn, Icc, R70_77, ""),
    t(0x9F21, "Transaction Time", N, Terminal, NONE, "HHMMSS"),
    t(
        0x9F22,
        "Certification Authority Public Key Index",
        B,
        Terminal,
        NONE,
        "terminal",
    ),
    t(
        0x9F23,
        "Upper Consecutive Offline Limit",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F24,
        "Payment Account Reference (PAR)",
        An,
        Icc,
        R70_77,
        "",
    ),
    t(0x9F25, "Last 4 Digits of PAN", N, Icc, R70_77, ""),
    t(0x9F26, "Application Cryptogram", B, Icc, R77_80, ""),
    t(0x9F27, "Cryptogram Information Data", B, Icc, R77_80, ""),
    t(
        0x9F29,
        "Extended Selection",
        B,
        Icc,
        NONE,
        "EMV Contactless Book B",
    ),
    t(
        0x9F2A,
        "Kernel Identifier",
        B,
        Icc,
        NONE,
        "EMV Contactless Book B",
    ),
    t(
        0x9F2D,
        "Integrated Circuit Card (ICC) PIN Encipherment Public Key Certificate",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F2E,
        "Integrated Circuit Card (ICC) PIN Encipherment Public Key Exponent",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F2F,
        "Integrated Circuit Card (ICC) PIN Encipherment Public Key Remainder",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(0x9F32, "Issuer Public Key Exponent", B, Icc, R70_77, ""),
    t(0x9F33, "Terminal Capabilities", B, Terminal, NONE, ""),
    t(
        0x9F34,
        "Cardholder Verification Method (CVM) Results",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(0x9F35, "Terminal Type", N, Terminal, NONE, ""),
    t(
        0x9F36,
        "Application Transaction Counter (ATC)",
        B,
        Icc,
        R77_80,
        "",
    ),
    t(0x9F37, "Unpredictable Number", B, Terminal, NONE, ""),
    t(
        0x9F38,
        "Processing Options Data Object List (PDOL)",
        B,
        Icc,
        TA5,
        "",
    ),
    t(
        0x9F39,
        "Point-of-Service (POS) Entry Mode",
        N,
        Terminal,
        NONE,
        "",
    ),
    t(0x9F3A, "Amount, Reference Currency", B, Terminal, NONE, ""),
    t(0x9F3B, "Application Reference Currency", N, Icc, R70_77, ""),
    t(
        0x9F3C,
        "Transaction Reference Currency Code",
        N,
        Terminal,
        NONE,
        "",
    ),
    t(
        0x9F3D,
        "Transaction Reference Currency Exponent",
        N,
        Terminal,
        NONE,
        "",
    ),
    t(
        0x9F3E,
        "Terminal Categories Supported List",
        B,
        Terminal,
        NONE,
        "EMV Contactless Book B",
    ),
    t(
        0x9F40,
        "Additional Terminal Capabilities",
        B,
        Terminal,
        NONE,
        "",
    ),
    t(
        0x9F41,
        "Transaction Sequence Counter",
        N,
        Terminal,
        NONE,
        "",
    ),
    t(
        0x9F42,
        "Application Currency Code",
        N,
        Icc,
        R70_77,
        "ISO 4217 numeric",
    ),
    t(
        0x9F43,
        "Application Reference Currency Exponent",
        N,
        Icc,
        R70_77,
        "",
    ),
    t(0x9F44, "Application Currency Exponent", N, Icc, R70_77, ""),
    t(0x9F45, "Data Authentication Code", B, Icc, NONE, ""),
    t(
        0x9F46,
        "Integrated Circuit Card (ICC) Public Key Certificate",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F47,
        "Integrated Circuit Card (ICC) Public Key Exponent",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F48,
        "Integrated Circuit Card (ICC) Public Key Remainder",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F49,
        "Dynamic Data Authentication Data Object List (DDOL)",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F4A,
        "Static Data Authentication Tag List",
        B,
        Icc,
        R70_77,
        "",
    ),
    t(
        0x9F4B,
        "Signed Dynamic Application Data",
        B,
        Icc,
        R77_80,
        "",
    ),
    t(0x9F4C, "ICC Dynamic Number", B, Icc, NONE, ""),
    t(0x9F4D, "Log Entry", B, Icc, TBF0C_73, ""),
    t(
        0x9F4E,
        "Merchant Name and Location",
        Ans,
        Terminal,
        NONE,
        "",
    ),
    t(0x9F4F, "Log Format", B, Icc, NONE, ""),
    t(
        0x9F53,
        "Transaction Category Code",
        An,
        Terminal,
        NONE,
        "Mastercard; Visa: Consecutive Transaction Counter International Limit",
    ),
    t(
        0x9F5B,
        "Issuer Script Results",
        B,
        Terminal,
        NONE,
        "Visa / common host tag",
    ),
    t(
        0x9F5D,
        "Available Offline Spending Amount (AOSA)",
        B,
        Icc,
        NONE,
        "Visa; Mastercard: Application Capabilities Information",
    ),
    t(
        0x9F66,
        "Terminal Transaction Qualifiers (TTQ)",
        B,
        Terminal,
        NONE,
        "Visa contactless",
    ),
    t(
        0x9F69,
        "Card Authentication Related Data",
        B,
        Icc,
        NONE,
        "Visa fDDA",
    ),
    t(
        0x9F6A,
        "Unpredictable Number (Numeric)",
        N,
        Terminal,
        NONE,
        "Mastercard contactless",
    ),
    t(
        0x9F6B,
        "Track 2 Data",
        B,
        Icc,
        NONE,
        "Mastercard contactless",
    ),
    t(
        0x9F6C,
        "Card Transaction Qualifiers (CTQ)",
        B,
        Icc,
        NONE,
        "Visa; Mastercard: Mag-stripe Application Version Number (Card)",
    ),
    t(
        0x9F6D,
        "Mag-stripe Application Version Number (Reader)",
        B,
        Terminal,
        NONE,
        "Mastercard; Visa: VLP Reset Threshold",
    ),
    t(
        0x9F6E,
        "Form Factor Indicator (FFI)",
        B,
        Icc,
        NONE,
        "Visa; Mastercard: Third Party Data",
    ),
    t(
        0x9F7C,
        "Customer Exclusive Data (CED)",
        B,
        Icc,
        NONE,
        "Visa; Mastercard: Merchant Custom Data",
    ),
    t(
        0xBF0C,
        "File Control Information (FCI) Issuer Discretionary Data",
        Template,
        Icc,
        TA5,
        "",
    ),
    t(0xDF0D, "Model / Name", Ans, Vipa, TEE, "VIPA device info"),
    t(0xDF7F, "Version", Ans, Vipa, TEE, "VIPA device info"),
    t(
        0xFF7C,
        "Tokenisation Data",
        Template,
        Vipa,
        NONE,
        "VIPA embedded tokenisation container",
    ),
    t(
        0xFF7F,
        "SRED Encrypted Data",
        Template,
        Vipa,
        NONE,
        "VIPA P2PE container",
    ),
    t(0xDF8101, "Tamper Status", B, Vipa, TEE, "VIPA: 00/01"),
    t(0xDF8102, "ARS Status", B, Vipa, TEE, "VIPA: 00/01"),
    t(0xDF8104, "Display Text", Ans, Vipa, NONE, "VIPA"),
    t(0xDF8106, "Library Name", Ans, Vipa, TEE, "VIPA"),
    t(0xDF8107, "Library Version", Ans, Vipa, TEE, "VIPA"),
    t(0xDF8108, "Architecture", Ans, Vipa, TEE, "VIPA"),
    t(0xDF8109, "V/OS", Ans, Vipa, TEE, "VIPA"),
    t(
        0xDF8111,
        "VIPA DF8111",
        B,
        Vipa,
        &[Tag(0xF0)],
        "inside F0; meaning unknown",
    ),
    t(0xDF836F, "Encrypted Token Block", B, Vipa, TFF7C, "VIPA"),
    t(
        0xDF837E,
        "Token KCV",
        B,
        Vipa,
        TFF7C,
        "VIPA: 3-byte key check value",
    ),
    t(0xDF837F, "Token", B, Vipa, TFF7C, "VIPA: 32-byte token"),
    t(
        0xDFA204,
        "External Application Selection",
        B,
        Vipa,
        NONE,
        "VIPA",
    ),
    t(0xDFA205, "Key Press", B, Vipa, NONE, "VIPA"),
    t(
        0xDFA20A,
        "PIN Entry Result",
        B,
        Vipa,
        NONE,
        "VIPA: 0 completed, 1 timeout, 2 cancelled, 3 comparison OK, 4 bypassed",
    ),
    t(0xDFA20E, "PIN Entry Timeout", B, Vipa, NONE, "VIPA"),
    t(0xDFA211, "Menu Title", Ans, Vipa, NONE, "VIPA"),
    t(0xDFA212, "List Style", B, Vipa, NONE, "VIPA"),
    t(
        0xDFA214,
        "Suppress Display",
        B,
        Vipa,
        NONE,
        "VIPA (per open-source hosts, not in the manual)",
    ),
    t(0xDFA218, "PIN Entry Style", B, Vipa, NONE, "VIPA"),
    t(
        0xDFA21F,
        "Refund Flow / Comm Mode",
        B,
        Vipa,
        NONE,
        "VIPA; meaning ambiguous",
    ),
    t(0xDFA242, "24 h Reboot Time", B, Vipa, NONE, "VIPA"),
    t(
        0xDFC020,
        "Contactless Reader Name",
        Ans,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC021,
        "Contactless Reader Serial Number",
        Ans,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC022,
        "Contactless Reader Firmware Version",
        Ans,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC023,
        "Contactless Reader Init",
        B,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC024,
        "Contactless Reader Capabilities",
        B,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC025,
        "Contactless Reader Info",
        B,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC026,
        "Contactless Reader Info",
        B,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC027,
        "Contactless Reader Info",
        B,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(
        0xDFC028,
        "Contactless Kernel",
        B,
        Vipa,
        &[Tag(0xE1)],
        "VIPA",
    ),
    t(0xDFC036, "Transaction Outcome", B, Vipa, NONE, "VIPA"),
    t(0xDFC601, "VAS Identifier", B, Vipa, TC6, "VIPA"),
    t(0xDFC602, "VAS Data", B, Vipa, TC6, "VIPA"),
    t(0xDFCC45, "PIN Entry Status", B, Vipa, TE6, "VIPA"),
    t(0xDFDB01, "Manual PAN", Ans, Vipa, NONE, "VIPA manual entry"),
    t(0xDFDB02, "Manual CVV", Ans, Vipa, NONE, "VIPA manual entry"),
    t(
        0xDFDB03,
        "Manual Expiry",
        Ans,
        Vipa,
        NONE,
        "VIPA manual entry",
    ),
    t(
        0xDFDB05,
        "Masked Track 1",
        B,
        Vipa,
        NONE,
        "VIPA: ASCII, masked bytes are AA",
    ),
    t(
        0xDFDB06,
        "Masked Track 2",
        B,
        Vipa,
        NONE,
        "VIPA: ASCII, masked bytes are AA",
    ),
    t(0xDFDB08, "SRED Library Field", B, Vipa, NONE, "VIPA"),
    t(
        0xDFDB09,
        "SRED Whitelist Hash",
        B,
        Vipa,
        NONE,
        "VIPA: 32 bytes",
    ),
    t(
        0xDFDB0E,
        "VIPA DFDB0E",
        B,
        Vipa,
        TFF7F,
        "seen as 00000D01 next to DFDB0F; meaning unknown",
    ),
    t(0xDFDB0F, "SRED Encryption Status", B, Vipa, TFF7F, "VIPA"),
    t(0xDFDF05, "Kernel Configuration", B, Vipa, NONE, "VIPA"),
    t(
        0xDFDF06,
        "Terminal Action Code - Default",
        B,
        Vipa,
        NONE,
        "VIPA",
    ),
    t(
        0xDFDF07,
        "Terminal Action Code - Denial",
        B,
        Vipa,
        NONE,
        "VIPA",
    ),
    t(
        0xDFDF08,
        "Terminal Action Code - Online",
        B,
        Vipa,
        NONE,
        "VIPA",
    ),
    t(
        0xDFDF10,
        "SRED Encrypted Data",
        B,
        Vipa,
        TFF7F,
        "VIPA ciphertext (not transaction status)",
    ),
    t(
        0xDFDF11,
        "SRED KSN",
        B,
        Vipa,
        TFF7F,
        "VIPA: 10-byte DUKPT KSN",
    ),
    t(0xDFDF12, "SRED IV", B, Vipa, TFF7F, "VIPA: 8 bytes"),
    t(
        0xDFDF17,
        "Payment Amount",
        N,
        Vipa,
        NONE,
        "VIPA PIN/amount prompt",
    ),
    t(
        0xDFDF1C,
        "Currency Exponent",
        N,
        Vipa,
        NONE,
        "VIPA PIN/amount prompt",
    ),
    t(
        0xDFDF1D,
        "VIPA Transaction Type",
        B,
        Vipa,
        NONE,
        "VIPA PIN entry",
    ),
    t(0xDFDF20, "Luhn Check / Manual Flag", B, Vipa, NONE, "VIPA"),
    t(
        0xDFDF24,
        "Transaction Currency",
        N,
        Vipa,
        NONE,
        "VIPA PIN/amount prompt",
    ),
    t(0xDFDF30, "Contactless Results", B, Vipa, NONE, "VIPA"),
    t(0xDFDF6E, "MSR Track Status", B, Vipa, NONE, "VIPA"),
    t(0xDFEC05, "PIN Try Flag", B, Vipa, NONE, "VIPA"),
    t(0xDFEC1F, "Counter", B, Vipa, TEE, "VIPA"),
    t(0xDFEC46, "PIN Key Slot", B, Vipa, NONE, "VIPA"),
    t(0xDFEC7B, "PIN Cryptogram", B, Vipa, NONE, "VIPA"),
    t(0xDFEC7D, "PIN Entry Type", B, Vipa, NONE, "VIPA"),
    t(0xDFED03, "Online PIN KSN", B, Vipa, NONE, "VIPA"),
    t(0xDFED04, "PIN Minimum Length", B, Vipa, NONE, "VIPA"),
    t(0xDFED05, "PIN Maximum Length", B, Vipa, NONE, "VIPA"),
    t(0xDFED0A, "PIN Algorithm", B, Vipa, TE6, "VIPA"),
    t(
        0xDFED0D,
        "Online PIN Block KSN / Reset Flags",
        B,
        Vipa,
        NONE,
        "VIPA: two meanings (PIN KSN; Reset Device flags)",
    ),
    t(
        0xDFED6C,
        "PIN Cipher",
        B,
        Vipa,
        NONE,
        "VIPA encrypted PIN block",
    ),
];

const fn is_sorted(table: &[TagInfo]) -> bool {
    let mut i = 1;
    while i < table.len() {
        if table[i - 1].tag.0 >= table[i].tag.0 {
            return false;
        }
        i += 1;
    }
    true
}

// A misplaced row would make `lookup` miss tags silently; refuse to compile instead.
const _: () = assert!(is_sorted(TABLE), "dictionary TABLE must be sorted by tag");

/// The dictionary entry for `tag`, if known. Allocation-free binary search.
#[inline]
pub fn lookup(tag: Tag) -> Option<&'static TagInfo> {
    TABLE
        .binary_search_by_key(&tag.0, |info| info.tag.0)
        .ok()
        .and_then(|i| TABLE.get(i))
}

/// The name of `tag`, if known.
#[inline]
pub fn name(tag: Tag) -> Option<&'static str> {
    lookup(tag).map(|i| i.name)
}

/// Every entry, sorted by tag: for listings (`emvbridge tags`) and tests.
pub fn all() -> &'static [TagInfo] {
    TABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_a_names_are_exact() {
        assert_eq!(
            name(Tag::AMOUNT_AUTHORISED),
            Some("Amount, Authorised (Numeric)")
        );
        assert_eq!(
            name(Tag::PAN),
            Some("Application Primary Account Number (PAN)")
        );
        assert_eq!(name(Tag::TVR), Some("Terminal Verification Results"));
        assert_eq!(
            name(Tag(0x9F34)),
            Some("Cardholder Verification Method (CVM) Results")
        );
        assert_eq!(
            name(Tag(0xBF0C)),
            Some("File Control Information (FCI) Issuer Discretionary Data")
        );
    }

    #[test]
    fn formats_and_sources() {
        let amt = lookup(Tag::AMOUNT_AUTHORISED).unwrap();
        assert_eq!((amt.format, amt.source), (Format::N, Source::Terminal));
        assert_eq!(lookup(Tag::PAN).unwrap().format, Format::Cn);
        assert_eq!(lookup(Tag(0x70)).unwrap().format, Format::Template);
        assert_eq!(
            lookup(Tag(0x50)).unwrap().templates,
            &[Tag(0x61), Tag(0xA5)]
        );
        assert_eq!(lookup(Tag(0xDFDB0E)).unwrap().source, Source::Vipa);
    }

    #[test]
    fn every_tags_constant_with_an_emv_meaning_is_in_the_dictionary() {
        for tag in [
            Tag::AID,
            Tag::APPLICATION_LABEL,
            Tag::TRACK2_EQUIVALENT,
            Tag::CDOL1,
            Tag::CVM_LIST,
            Tag::PDOL,
            Tag::DDOL,
            Tag::TDOL,
            Tag::TTQ,
            Tag::CTQ,
            Tag::FORM_FACTOR_INDICATOR,
            Tag::ISSUER_SCRIPT_RESULTS,
            Tag::VIPA_E4,
            Tag::VIPA_SRED,
            Tag::VIPA_TOKEN,
            Tag::VIPA_SRED_KSN,
            Tag::VIPA_PIN_BLOCK,
            Tag::VIPA_MASKED_TRACK2,
            Tag::VIPA_NAME,
            Tag::VIPA_PIN_ENTRY_RESULT,
            Tag::VIPA_CARD_STATUS,
            Tag::VIPA_F0,
        ] {
            assert!(lookup(tag).is_some(), "{tag} missing");
        }
    }

    #[test]
    fn constructed_bit_matches_template_format() {
        // A template entry must have the constructed bit; a constructed tag is a template
        // (except `80`/`94`-style var. objects, which are primitive).
        for info in all() {
            // VIPA's `63` (ATR) has the constructed bit but carries raw ATR bytes.
            if info.tag == Tag(0x63) {
                continue;
            }
            assert_eq!(
                info.format == Format::Template,
                info.tag.is_constructed(),
                "{}",
                info.tag
            );
        }
    }

    #[test]
    fn unknown_tags_are_none() {
        assert!(lookup(Tag(0x9F7F)).is_none());
        assert!(lookup(Tag(0)).is_none());
        assert!(lookup(Tag(u32::MAX)).is_none());
    }
}
