//! EMV data: the tag dictionary, decoders for the bit-fields and codes, DOL handling, and
//! wrappers for cardholder data.
//!
//! - [`dictionary`]: name, format, source and templates of each tag; [`lookup`].
//! - [`bits`]: TVR, TSI, AIP, AUC, CVM list/results, CID, terminal capabilities and types.
//! - [`numeric`]: BCD amounts, dates, times, ISO 4217 currencies, ISO 3166 countries.
//! - [`dol`]: PDOL/CDOL/DDOL/TDOL walking and building (Book 3 §5.4).
//! - [`sensitive`]: [`Pan`], [`Track2`], [`SecretBytes`], mask helpers.
//!
//! [`describe`] and [`text`] turn one data object into the lines `emvbridge decode` prints.

pub mod bits;
pub mod dictionary;
pub mod dol;
pub mod numeric;
pub mod sensitive;

pub use bits::{
    AdditionalTerminalCapabilities, Aip, Auc, Bit, Cid, CryptogramType, Ctq, CvRule, CvmCode,
    CvmCondition, CvmList, CvmMethod, CvmOutcome, CvmResults, FieldError, ServiceCode, SetBits,
    TerminalCapabilities, TerminalType, TransactionType, Tsi, Ttq, Tvr,
};
pub use dictionary::{lookup, Format, Source, TagInfo};
pub use dol::{
    build_dol, build_dol_vec, parse_dol, DolData, DolEntry, DolError, DolFields, DolIter, TagSource,
};
pub use numeric::{Country, Currency, Date, NumericError, Time};
pub use sensitive::{
    luhn_valid, mask_bcd_pan, mask_pan_digits, masked_value, CardDataError, Pan, SecretBytes,
    Sensitive, Track2,
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
/// nothing to say beyond the hex (unknown tag, opaque binary, templates).
///
/// Sensitive tags yield only their masked form. A value that does not decode yields one
/// line starting `invalid:` (offsets and kinds only, never the value).
///
/// ```
/// use emvbridge_protocol::{emv, tlv::Tag};
/// assert_eq!(emv::describe(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x80]), ["ARQC"]);
/// assert_eq!(emv::describe(Tag::TRANSACTION_CURRENCY_CODE, &[0x08, 0x40]), ["USD (exponent 2)"]);
/// ```
pub fn describe(tag: Tag, value: &[u8]) -> Vec<String> {
    if tag.is_sensitive() {
        return describe_sensitive(tag, value);
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
        // Visa layout; Mastercard's 9F6C is a version number, hence the prefix.
        0x9F6C => Ctq::parse(value)
            .map(|v| {
                names(v.set_bits(), &v.rfu())
                    .into_iter()
                    .map(|l| format!("Visa CTQ: {l}"))
                    .collect()
            })
            .map_err(err),
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
                    Some(c) => format!("{} (exponent {})", c.alpha, c.exponent),
                    None => format!("{n:03} (unknown currency)"),
                }]
            })
            .map_err(err),
        0x5F28 | 0x9F1A => numeric::parse_n3(value)
            .map(|n| {
                vec![match Country::from_numeric(n) {
                    Some(c) => format!("{} ({})", c.alpha2, c.name),
                    None => format!("{n:03} (unknown country)"),
                }]
            })
            .map_err(err),
        0x5F36 | 0x9F44 | 0xDFDF1C => numeric::bcd_to_u64(value)
            .map(|n| vec![format!("exponent {n}")])
            .map_err(err),
        0x8A => Ok(describe_arc(value).into_iter().map(str::to_owned).collect()),
        0x9F36 => be_u32(value).map(|v| vec![v.to_string()]),
        0x9F41 | 0x5F34 | 0x9F39 | 0x9F15 => numeric::bcd_to_u64(value)
            .map(|n| vec![n.to_string()])
            .map_err(err),
        0x9F38 | 0x8C | 0x8D | 0x9F49 | 0x97 => describe_dol(value),
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

/// `8A` codes hosts and VIPA use (vipa-protocol.md §4.3; EMV Book 4 §A6 for Y1/Z1/Y3/Z3).
fn describe_arc(value: &[u8]) -> Option<&'static str> {
    Some(match value {
        b"00" => "Approved",
        b"Y1" => "Offline approved",
        b"Z1" => "Offline declined",
        b"Y3" => "Unable to go online, offline approved",
        b"Z3" => "Unable to go online, offline declined",
        b"05" => "Do not honour",
        b"51" => "Insufficient funds",
        b"55" => "Incorrect PIN",
        _ => return None,
    })
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
    match tag {
        Tag::PAN => {
            if let Ok(pan) = Pan::from_bcd(value) {
                out.push(format!(
                    "Luhn {}",
                    if pan.luhn_valid() { "valid" } else { "invalid" }
                ));
            }
        }
        Tag::TRACK2_EQUIVALENT | Tag::TRACK2_DATA => {
            if let Ok(t2) = Track2::from_bcd(value) {
                let (yy, mm) = t2.expiry();
                out.push(format!("expiry 20{yy:02}-{mm:02}"));
                out.push(format!("service code {}", t2.service_code()));
            }
        }
        _ => {}
    }
    out
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
            ["US (United States)"]
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
            ["US (United States)"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_CURRENCY_CODE, &[0x09, 0x78]),
            ["EUR (exponent 2)"]
        );
        assert_eq!(
            describe(Tag::TRANSACTION_CURRENCY_CODE, &[0x09, 0x99]),
            ["999 (unknown currency)"]
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
            ["Unable to go online, offline declined"]
        );
        assert_eq!(
            describe(Tag::PDOL, &[0x9F, 0x02, 0x06]),
            ["9F02 (6) Amount, Authorised (Numeric)"]
        );
        assert_eq!(describe(Tag::ATC, &[0x00, 0x2A]), ["42"]);
        assert_eq!(describe(Tag::VIPA_PIN_ENTRY_RESULT, &[4]), ["Bypassed"]);
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
                "expiry 2028-12",
                "service code 101"
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
