//! EMV data: the tag dictionary, decoders for the bit-fields and codes, DOL handling, and
//! wrappers for cardholder data.
//!
//! - [`dictionary`]: name, format, source and templates of each tag; [`lookup`].
//! - [`bits`]: TVR, TSI, AIP, AUC, CVM list/results, CID, terminal capabilities and types.
//! - [`numeric`]: BCD amounts, dates, times, ISO 4217 currencies, ISO 3166 countries.
//! - [`dol`]: PDOL/CDOL/DDOL/TDOL walking and building (Book 3 §5.4).
//! - [`context`]: template, scheme (from the AID) and VIPA-ness, for kernel-specific tags.
//! - [`fields`]: AFL, tag lists, languages, currencies, codes, kernel IDs, script commands.
//! - [`iad`]: Issuer Application Data per scheme (CCD, M/Chip, VSDC).
//! - [`iso7816`]: status words and the Answer To Reset.
//! - [`sensitive`]: [`Pan`], [`Track2`], [`SecretBytes`], mask helpers.
//!
//! [`describe`] and [`text`] turn one data object into the lines `emvbridge decode` prints.

pub mod bits;
pub mod context;
pub mod dictionary;
pub mod dol;
pub mod fields;
pub mod iad;
pub mod iso7816;
pub mod numeric;
pub mod sensitive;

pub use bits::{
    AdditionalTerminalCapabilities, Aip, Auc, Bit, Cid, CryptogramType, Ctq, CvRule, CvmCode,
    CvmCondition, CvmList, CvmMethod, CvmOutcome, CvmResults, FieldError, ServiceCode, SetBits,
    TerminalCapabilities, TerminalType, TransactionType, Tsi, Ttq, Tvr,
};
pub use context::{aid_product, Context, Scheme};
pub use dictionary::{lookup, Format, Source, TagInfo};
pub use dol::{
    build_dol, build_dol_vec, parse_dol, DolData, DolEntry, DolError, DolFields, DolIter, TagSource,
};
pub use numeric::{mcc_description, Country, Currency, Date, Language, NumericError, Time};
pub use sensitive::{
    card_number_like, luhn_valid, mask_bcd_pan, mask_pan_digits, masked_value, CardDataError, Pan,
    SecretBytes, Sensitive, Track2,
};

use crate::tlv::Tag;

/// The value of a text field (`a`, `an`, `ans` in the dictionary) as a `&str`, if it is
/// printable ASCII. `None` for other formats, unknown tags, non-printable bytes, and
/// sensitive tags (a cardholder name is not shown; use [`masked_value`]).
pub fn text(tag: Tag, value: &[u8]) -> Option<&str> {
    let info = lookup(tag)?;
    if !info.format.is_text() || tag.is_sensitive() {
        return None;
    }
    if !value.iter().all(|b| (0x20..0x7F).contains(b)) {
        return None;
    }
    core::str::from_utf8(value).ok()
}

/// Human-readable lines for a data object whose tag has a decoder; empty when there is
/// nothing to say beyond the hex (unknown tag, opaque binary, templates). The meaning is the
/// one a data object has with no surroundings known; see [`describe_in`].
///
/// Sensitive tags yield only their masked form. A value that does not decode yields one
/// line starting `invalid:` (offsets and kinds only, never the value).
///
/// ```
/// use emvbridge_protocol::{emv, tlv::Tag};
/// assert_eq!(emv::describe(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x80]), ["ARQC"]);
/// assert_eq!(emv::describe(Tag::TRANSACTION_CURRENCY_CODE, &[0x08, 0x40]), ["0840 USD US Dollar (exponent 2)"]);
/// ```
pub fn describe(tag: Tag, value: &[u8]) -> Vec<String> {
    describe_in(&Context::default(), tag, value)
}

/// Whether a text tag (`an`, `ans`) has a decoder that says more than its characters:
/// `5F2D` languages, `8A` response codes, `9F12` in its code table.
pub fn has_text_decoder(tag: Tag) -> bool {
    matches!(tag.0, 0x5F2D | 0x8A | 0x9F12)
}

/// [`describe`] for a data object in `ctx`: kernel-specific tags take the meaning their
/// template and scheme give them ([`Context::name`]).
pub fn describe_in(ctx: &Context, tag: Tag, value: &[u8]) -> Vec<String> {
    if tag.is_sensitive() {
        return describe_sensitive(tag, value);
    }
    if let context::Meaning::Kernel(name) = ctx.meaning(tag, value) {
        let r = match name {
            "Application Capabilities Information" => fields::app_caps_information(value),
            "Third Party Data" => fields::third_party_data(value),
            "Enhanced Contactless Reader Capabilities" => {
                Ok(fields::set_names(value, fields::AMEX_ENHANCED_READER_CAPS))
            }
            "UDOL" => describe_dol(value),
            "Mag-stripe CVM List" => CvmList::parse(value).map(describe_cvm_list).map_err(err),
            "Card CVM Limit" => numeric::parse_amount(value)
                .map(|v| vec![format!("{v} (minor units)")])
                .map_err(err),
            "Contactless Reader Capabilities" => fields::amex_reader_capabilities(value),
            "VLP Reset Threshold" => numeric::parse_amount(value)
                .map(|v| vec![format!("{v} (minor units)")])
                .map_err(err),
            _ => Ok(Vec::new()),
        };
        return r.unwrap_or_else(|e| vec![format!("invalid: {e}")]);
    }
    if !ctx.vipa && lookup(tag).is_some_and(|i| i.source == Source::Vipa) {
        // A VIPA name for another vendor's proprietary tag would mislead.
        return Vec::new();
    }
    let r: Result<Vec<String>, String> = match tag.0 {
        0x95 => Tvr::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        0x9B => Tsi::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        0x82 => Aip::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        0x9F07 => Auc::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        0x9F33 => TerminalCapabilities::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        0x9F40 => AdditionalTerminalCapabilities::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        0x9F0D | 0x9F0E | 0x9F0F | 0xDFDF06 | 0xDFDF07 | 0xDFDF08 => {
            // Issuer / terminal action codes have the TVR layout (Book 3 §10.7).
            Tvr::parse(value)
                .map(|v| names(v.set_bits(), &v.rfu()))
                .map_err(err)
        }
        0x9F66 => Ttq::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        // Visa layout (Book C-3 Annex A); Mastercard's 9F6C is resolved above by context.
        0x9F6C => Ctq::parse(value)
            .map(|v| names(v.set_bits(), &v.rfu()))
            .map_err(err),
        // Kernel 2: Mag-stripe Application Version Number (Reader), 2 bytes binary.
        0x9F6D => Ok(Vec::new()),
        // Kernel 3 Form Factor Indicator when the shape or scheme says Visa.
        0x9F6E if value.len() == 4 => fields::form_factor_indicator(value),
        0x9F6E => Ok(Vec::new()),
        0x9F10 => Ok(iad::describe(value, ctx.scheme).unwrap_or_default()),
        0x9F1D => match value.len() {
            8 => Ok(fields::set_names(value, fields::TRMD)),
            n => Err(format!("bad terminal risk management data length {n}")),
        },
        0x9F27 => Cid::parse(value).map(describe_cid).map_err(err),
        0x8E => CvmList::parse(value).map(describe_cvm_list).map_err(err),
        0x9F34 => CvmResults::parse(value)
            .map(describe_cvm_results)
            .map_err(err),
        0x9F35 => TerminalType::parse(value)
            .map(|t| {
                vec![format!(
                    "{}, {}",
                    t.operational_control().unwrap_or("RFU operator"),
                    t.environment().unwrap_or("RFU environment")
                )]
            })
            .map_err(err),
        0x9C => TransactionType::parse(value)
            .map(|t| vec![t.name().unwrap_or("Other transaction type").to_owned()])
            .map_err(err),
        0x5F30 => ServiceCode::parse(value)
            .map(|s| {
                vec![
                    s.to_string(),
                    s.interchange().to_owned(),
                    s.authorisation().to_owned(),
                    s.services().to_owned(),
                ]
            })
            .map_err(err),
        0x9F02 | 0x9F03 | 0xDFDF17 => numeric::parse_amount(value)
            .map(|v| vec![format!("{v} (minor units)")])
            .map_err(err),
        0x81 | 0x9F04 | 0x9F3A => be_u32(value).map(|v| vec![format!("{v} (minor units)")]),
        0x9A | 0x5F24 | 0x5F25 => Date::parse(value).map(|d| vec![d.to_string()]).map_err(err),
        0x9F21 => Time::parse(value).map(|t| vec![t.to_string()]).map_err(err),
        0x5F2A | 0x9F42 | 0x9F3C | 0xDFDF24 => numeric::parse_n3(value)
            .map(|n| {
                vec![match Currency::from_numeric(n) {
                    Some(c) => format!("{c} (exponent {})", c.exponent),
                    None => fields::currency(n),
                }]
            })
            .map_err(err),
        0x9F3B => fields::currencies(value),
        0x5F28 | 0x9F1A | 0x9F57 => numeric::parse_n3(value)
            .map(|n| {
                vec![match Country::from_numeric(n) {
                    Some(c) => c.to_string(),
                    None => format!("{n:04} unknown country"),
                }]
            })
            .map_err(err),
        0x5F2D => fields::languages(value),
        0x5F36 | 0x9F44 | 0xDFDF1C => numeric::bcd_to_u64(value)
            .map(|n| vec![format!("exponent {n}")])
            .map_err(err),
        0x8A => fields::auth_response_code(value),
        0x9F36 => be_u32(value).map(|v| vec![v.to_string()]),
        0x9F39 => fields::pos_entry_mode(value),
        0x9F15 => fields::mcc(value),
        0x9F11 => fields::code_table_index(value),
        // Without a 9F11 before it, ISO/IEC 8859-1 (as emv-utils assumes): the common
        // character set of Book 4 Annex B is its subset.
        0x9F12 => Ok(fields::iso8859_text(value, ctx.code_table.unwrap_or(1))
            .into_iter()
            .collect()),
        0x91 => fields::issuer_authentication_data(value),
        0x9F41 | 0x5F34 => numeric::bcd_to_u64(value)
            .map(|n| vec![n.to_string()])
            .map_err(err),
        0x9F38 | 0x8C | 0x8D | 0x9F49 | 0x97 | 0x9F69 => describe_dol(value),
        0x94 => fields::afl(value),
        0x9F4A => fields::tag_list(value),
        0x9F0A => fields::asrpd(value),
        0x9F2A => fields::kernel_id(value, false),
        0x96 => fields::kernel_id(value, true),
        0x9F3E => fields::terminal_categories(value),
        0x8B => fields::poi_information(value),
        0x86 => fields::script_command(value),
        0x4F | 0x84 | 0x9F06 => Ok(context::aid_product(value)
            .map(|(s, p)| vec![format!("{}: {p}", s.as_str())])
            .unwrap_or_default()),
        0xDFA20A => Ok(match value {
            [0] => vec!["Completed".to_owned()],
            [1] => vec!["Timeout".to_owned()],
            [2] => vec!["Cancelled".to_owned()],
            [3] => vec!["Comparison OK".to_owned()],
            [4] => vec!["Bypassed".to_owned()],
            _ => Vec::new(),
        }),
        _ => Ok(text(tag, value)
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default()),
    };
    r.unwrap_or_else(|e| vec![format!("invalid: {e}")])
}

fn err(e: impl core::fmt::Display) -> String {
    e.to_string()
}

fn be_u32(value: &[u8]) -> Result<u32, String> {
    if value.is_empty() || value.len() > 4 {
        return Err(format!("bad binary field length {}", value.len()));
    }
    Ok(value.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

fn names<'a>(bits: impl Iterator<Item = &'a str>, rfu: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = bits.map(str::to_owned).collect();
    if rfu.iter().any(|b| *b != 0) {
        let hex: String = rfu.iter().map(|b| format!("{b:02X}")).collect();
        out.push(format!("RFU/proprietary bits set: {hex}"));
    }
    out
}

fn describe_cid(cid: Cid) -> Vec<String> {
    let mut out = vec![cid.cryptogram_type().as_str().to_owned()];
    if cid.payment_system_specific() != 0 {
        out.push(format!(
            "Payment system-specific cryptogram bits {:02b}",
            cid.payment_system_specific()
        ));
    }
    if cid.advice_required() {
        out.push("Advice required".to_owned());
    }
    if let Some(r) = cid.reason() {
        out.push(r.to_owned());
    }
    out
}

fn describe_cvm_list(list: CvmList<'_>) -> Vec<String> {
    let mut out = vec![format!("X = {}, Y = {} (minor units)", list.x, list.y)];
    out.extend(list.rules().map(|r| r.to_string()));
    out
}

fn describe_cvm_results(r: CvmResults) -> Vec<String> {
    let method = if r.code().0 & 0x3F == 0x3F {
        "No CVM performed"
    } else {
        r.code().method().as_str()
    };
    let outcome = match r.outcome() {
        CvmOutcome::Unknown => "Unknown",
        CvmOutcome::Failed => "Failed",
        CvmOutcome::Successful => "Successful",
        CvmOutcome::Other(_) => "RFU result",
    };
    vec![
        method.to_owned(),
        r.condition().as_str().to_owned(),
        outcome.to_owned(),
    ]
}

fn describe_dol(value: &[u8]) -> Result<Vec<String>, String> {
    parse_dol(value)
        .map(|e| {
            e.map(|DolEntry { tag, len }| {
                format!(
                    "{tag} ({len}) {}",
                    dictionary::name(tag).unwrap_or("unknown tag")
                )
            })
            .map_err(err)
        })
        .collect()
}

fn describe_sensitive(tag: Tag, value: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = masked_value(tag, value).into_iter().collect();
    out.extend(describe_card_data(tag, value, false));
    out
}

/// What may be said about cardholder data beyond its (masked) value: a PAN's Luhn check, the
/// fields of Track 2 (ISO/IEC 7813: PAN, expiry, service code, discretionary data), with the
/// PAN and discretionary data masked unless `reveal`. Values a reader already masked
/// (nibbles `A`) yield nothing.
pub fn describe_card_data(tag: Tag, value: &[u8], reveal: bool) -> Vec<String> {
    match tag {
        Tag::PAN => Pan::from_bcd(value)
            .map(|pan| {
                vec![format!(
                    "Luhn {}",
                    if pan.luhn_valid() { "valid" } else { "invalid" }
                )]
            })
            .unwrap_or_default(),
        Tag::TRACK2_EQUIVALENT | Tag::TRACK2_DATA => {
            fields::track2(value, reveal).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlv;
    use proptest::prelude::*;

    /// The `E2` body of the captured Start Transaction response (vipa-protocol.md §5.1).
    const E2: &str = "E281E5C10100FF7F4EDFDF1208ED02AA53775 7D99FDFDF110AFFFF9876543211 0010A4DFDF102031846E94DC3183BA6DC45E2A6AC6DEF03F93434756A4D0261572B5C23519BFC0DFDB0F0400000000DFDB0E0400000D0150104 14D45524943414E204558505245535357133742 45AAAAA1006D2412201AAAAAAAAAAAAAAA5A08374245AAAAA1006F5F24032412315F25031711015F280208405F300202015F3401009F0606A000000025019F0702FF009F080200019F09020001FF7C2BDF837F20FDCC8BA35EE1901DE86A23AF78F5A636FC9E3E1541FB8ED46E34DF6C12ED1260DF837E03E7C4D9";

    fn e2() -> Vec<u8> {
        let hex: String = E2.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(hex).unwrap()
    }

    #[test]
    fn describes_the_captured_e2() {
        let buf = e2();
        let e2 = tlv::parse(&buf).next().unwrap().unwrap();
        assert_eq!(e2.tag(), Tag::VIPA_E2);
        let get = |t: Tag| e2.find(t).unwrap().value();
        assert_eq!(
            describe(
                Tag::APPLICATION_USAGE_CONTROL,
                get(Tag::APPLICATION_USAGE_CONTROL)
            )
            .len(),
            8
        );
        assert_eq!(
            describe(Tag::SERVICE_CODE, get(Tag::SERVICE_CODE)),
            [
                "201",
                "International interchange, use IC (chip) where feasible",
                "Normal authorisation",
                "No restrictions"
            ]
        );
        assert_eq!(
            describe(
                Tag::APPLICATION_EXPIRATION_DATE,
                get(Tag::APPLICATION_EXPIRATION_DATE)
            ),
            ["2024-12-31"]
        );
        assert_eq!(
            describe(
                Tag::APPLICATION_EFFECTIVE_DATE,
                get(Tag::APPLICATION_EFFECTIVE_DATE)
            ),
            ["2017-11-01"]
        );
        assert_eq!(
            describe(Tag::ISSUER_COUNTRY_CODE, get(Tag::ISSUER_COUNTRY_CODE)),
            ["0840 US USA United States"]
        );
        assert_eq!(
            text(Tag::APPLICATION_LABEL, get(Tag::APPLICATION_LABEL)),
            Some("AMERICAN EXPRESS")
        );
        assert_eq!(
            describe(Tag::APPLICATION_LABEL, get(Tag::APPLICATION_LABEL)),
            ["AMERICAN EXPRESS"]
        );
        assert_eq!(describe(Tag::PAN, get(Tag::PAN)), ["374245AAAAA1006"]);
        assert_eq!(
            describe(Tag::TRACK2_EQUIVALENT, get(Tag::TRACK2_EQUIVALENT)),
            ["374245AAAAA1006D2412201AAAAAAAAAAAAAAA"]
        );
        // Every top-level object of the captured E2 is in the dictionary.
        for t in e2.children() {
            let t = t.unwrap();
            assert!(lookup(t.tag()).is_some(), "{}", t.tag());
        }
    }

    #[test]
    fn describes_start_transaction_fields() {
        assert_eq!(
            describe(Tag::AMOUNT_AUTHORISED, &[0, 0, 0, 0, 0x32, 0x50]),
            ["3250 (minor units)"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_DATE, &[0x21, 0x03, 0x03]),
            ["2021-03-03"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_TIME, &[0x19, 0x57, 0x24]),
            ["19:57:24"]
        );
        assert_eq!(describe(Tag::TRANSACTION_TYPE, &[0x00]), ["Purchase"]);
        assert_eq!(
            describe(Tag::TERMINAL_COUNTRY_CODE, &[0x08, 0x40]),
            ["0840 US USA United States"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_CURRENCY_CODE, &[0x09, 0x78]),
            ["0978 EUR Euro (exponent 2)"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_CURRENCY_CODE, &[0x09, 0x99]),
            ["0999 XXX The codes assigned for transactions where no currency is involved (exponent 0)"]
        );
    }

    #[test]
    fn describes_bitfields_and_codes() {
        assert_eq!(
            describe(Tag::TVR, &[0x80, 0, 0, 0, 0]),
            ["Offline data authentication was not performed"]
        );
        assert_eq!(
            describe(Tag::TVR, &[0, 0, 0, 0, 0x01]),
            ["RFU/proprietary bits set: 0000000001"]
        );
        assert_eq!(describe(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x40]), ["TC"]);
        assert_eq!(
            describe(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x09]),
            ["AAC", "Advice required", "Service not allowed"]
        );
        assert_eq!(
            describe(Tag::CVM_LIST, &[0, 0, 0, 0, 0, 0, 0, 0, 0x1E, 0x03, 0x1F, 0x00]),
            [
                "X = 0, Y = 0 (minor units)",
                "Signature (paper), If terminal supports the CVM; if unsuccessful fail cardholder verification",
                "No CVM required, Always; if unsuccessful fail cardholder verification"
            ]
        );
        assert_eq!(
            describe(Tag::CVM_RESULTS, &[0x3F, 0x00, 0x01]),
            ["No CVM performed", "Always", "Failed"]
        );
        assert_eq!(
            describe(Tag::TERMINAL_TYPE, &[0x22]),
            ["Merchant, Attended, offline with online capability"]
        );
        assert_eq!(
            describe(Tag::AUTHORISATION_RESPONSE_CODE, b"Z3"),
            ["Z3: Unable to go online, offline declined"]
        );
        assert_eq!(
            describe(Tag::PDOL, &[0x9F, 0x02, 0x06]),
            ["9F02 (6) Amount, Authorised (Numeric)"]
        );
        assert_eq!(describe(Tag::ATC, &[0x00, 0x2A]), ["42"]);
        // VIPA tags are decoded in VIPA messages only.
        assert_eq!(
            describe_in(&Context::vipa(), Tag::VIPA_PIN_ENTRY_RESULT, &[4]),
            ["Bypassed"]
        );
        assert!(describe(Tag::VIPA_PIN_ENTRY_RESULT, &[4]).is_empty());
    }

    #[test]
    fn kernel_tags_decode_by_their_meaning() {
        let amex = Context {
            scheme: Some(Scheme::Amex),
            ..Context::default()
        };
        assert_eq!(
            describe_in(&amex, Tag(0x9F6D), &[0xC8]),
            ["Contactless EMV and mag-stripe, CVM required"]
        );
        let visa = Context {
            scheme: Some(Scheme::Visa),
            ..Context::default()
        };
        assert_eq!(
            visa.name(Tag(0x9F6D), &[0, 0, 0, 0, 0x10, 0]),
            Some("VLP Reset Threshold")
        );
        assert_eq!(
            describe_in(&visa, Tag(0x9F6D), &[0, 0, 0, 0, 0x10, 0]),
            ["1000 (minor units)"]
        );
        // A Mastercard 9F6C is a version number, not a CTQ.
        let mc = Context {
            scheme: Some(Scheme::Mastercard),
            ..Context::default()
        };
        assert!(describe_in(&mc, Tag(0x9F6C), &[0, 1]).is_empty());
        assert_eq!(
            describe_in(&visa, Tag(0x9F6C), &[0x80, 0]),
            ["Online PIN required"]
        );
    }

    #[test]
    fn invalid_values_say_why_without_the_value() {
        assert_eq!(
            describe(Tag::TVR, &[0x80]),
            ["invalid: bad field length 1, expected 5"]
        );
        assert_eq!(
            describe(Tag::AMOUNT_AUTHORISED, &[0x4A]),
            ["invalid: non-bcd nibble at index 1"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_DATE, &[0x21, 0x02, 0x30]),
            ["invalid: invalid date or time"]
        );
    }

    #[test]
    fn sensitive_tags_are_masked() {
        let pan = [0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
        assert_eq!(describe(Tag::PAN, &pan), ["411111******1111", "Luhn valid"]);
        let t2 = [
            0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xD2, 0x81, 0x21, 0x01, 0x1F,
        ];
        assert_eq!(
            describe(Tag::TRACK2_EQUIVALENT, &t2),
            [
                "411111******1111D********",
                "PAN: 411111******1111",
                "Expiry: 2028-12",
                "Service code: 101",
                "Discretionary data: 1 digits"
            ]
        );
        assert_eq!(
            describe(Tag::CARDHOLDER_NAME, b"DOE/JOHN"),
            ["<masked, 8 bytes>"]
        );
        assert_eq!(text(Tag::CARDHOLDER_NAME, b"DOE/JOHN"), None);
        assert_eq!(text(Tag::APPLICATION_LABEL, b"VISA\x01"), None);
        assert_eq!(text(Tag::AIP, b"AB"), None);
    }

    proptest! {
        #[test]
        fn describe_never_panics(tag_idx in 0usize..400, b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let all = dictionary::all();
            let tag = all.get(tag_idx % all.len()).map(|i| i.tag).unwrap();
            let _ = describe(tag, &b);
            let _ = text(tag, &b);
            let _ = describe(Tag(u32::from(b.first().copied().unwrap_or(0))), &b);
        }

        #[test]
        fn describe_never_shows_a_clear_pan(p in "[0-9]{13,19}", exp in "[0-9]{4}", sc in "[0-9]{3}", dd in "[0-9]{0,8}") {
            let pan = Pan::parse(&p).unwrap();
            let t2 = Track2::from_ascii(&format!("{p}={exp}{sc}{dd}")).unwrap();
            let t2_bcd = t2.to_bcd();
            prop_assert_eq!(Track2::from_bcd(&t2_bcd).unwrap(), t2.clone());
            let mid = &p[6..p.len() - 4];
            for (tag, v) in [(Tag::PAN, pan.to_bcd()), (Tag::TRACK2_EQUIVALENT, t2_bcd.clone()), (Tag::TRACK2_DATA, t2_bcd)] {
                for line in describe(tag, &v) {
                    prop_assert!(!line.contains(p.as_str()));
                    prop_assert!(!line.contains(mid) || !line.contains(&p[..6]) || line.contains('*'));
                }
            }
            let shown = format!("{pan:?} {pan} {t2:?}");
            prop_assert!(!shown.contains(p.as_str()));
        }
    }
}
