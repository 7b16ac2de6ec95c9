//! Decoders for structured values that are neither bit-fields ([`super::bits`]) nor DOLs
//! ([`super::dol`]): lists, codes and small records. Each returns the lines `emvbridge
//! decode` prints, or an error string (never the value) when the value does not fit.
//!
//! Every decoder cites the clause that defines the layout.

use super::bits::Bit;
use super::dictionary;
use super::numeric::{self, Currency, Language};
use crate::tlv::Tag;

/// Lines or a short reason.
pub type Lines = Result<Vec<String>, String>;

fn bad(what: &str, len: usize) -> String {
    format!("bad {what} length {len}")
}

/// `94` Application File Locator: 4-byte entries SFI, first record, last record, number of
/// records for offline data authentication (EMV Book 3 §10.2).
pub fn afl(v: &[u8]) -> Lines {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return Err(bad("afl", v.len()));
    }
    Ok(v.chunks_exact(4)
        .map(|e| {
            let (sfi, first, last, oda) = (e[0] >> 3, e[1], e[2], e[3]);
            let recs = if first == last {
                format!("record {first}")
            } else {
                format!("records {first}-{last}")
            };
            format!("SFI {sfi}, {recs}, {oda} for offline data authentication")
        })
        .collect())
}

/// A list of tags without lengths (`9F4A` Static Data Authentication Tag List, Book 3
/// §10.3: "only the AIP (`82`)" in practice).
pub fn tag_list(v: &[u8]) -> Lines {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(&first) = rest.first() {
        let mut n = 1;
        if first & 0x1F == 0x1F {
            while rest.get(n).is_some_and(|b| b & 0x80 != 0) {
                n += 1;
            }
            n += 1;
        }
        let Some(raw) = rest.get(..n).filter(|r| r.len() <= 4) else {
            return Err("truncated tag list".into());
        };
        let tag = Tag(raw.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)));
        out.push(format!(
            "{tag} {}",
            dictionary::name(tag).unwrap_or("unknown tag")
        ));
        rest = &rest[n..];
    }
    Ok(out)
}

/// `5F2D` Language Preference: 2-character ISO 639-1 codes (EMV Book 1 §11.3.4; Book 3 Annex
/// A). Cards write lower or upper case; `FF` padding is skipped.
pub fn languages(v: &[u8]) -> Lines {
    if !v.len().is_multiple_of(2) || v.len() > 8 {
        return Err(bad("language preference", v.len()));
    }
    Ok(v.chunks_exact(2)
        .filter(|c| c != &[0xFF, 0xFF])
        .map(|c| match Language::from_alpha2(c) {
            Some(l) => format!("{} {}", l.alpha2, l.name),
            None => format!("{:02X}{:02X} unknown language", c[0], c[1]),
        })
        .collect())
}

/// One ISO 4217 numeric code as `0840 USD US Dollar`.
pub fn currency(n: u16) -> String {
    match Currency::from_numeric(n) {
        Some(c) => c.to_string(),
        None => format!("{n:04} unknown currency"),
    }
}

/// `9F3B` Application Reference Currency: 1–4 `n3` currency codes (Book 3 Annex A).
pub fn currencies(v: &[u8]) -> Lines {
    if v.is_empty() || !v.len().is_multiple_of(2) || v.len() > 8 {
        return Err(bad("reference currency", v.len()));
    }
    v.chunks_exact(2)
        .map(|c| {
            numeric::parse_n3(c)
                .map(currency)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The ISO/IEC 8859 part that `9F11` Issuer Code Table Index names (Book 3 Annex A: "values
/// 01–10"), as an `encoding_rs` encoding. Parts 9 and 11 map to their Windows supersets, which
/// agree with them on `A0`–`FF`, the only non-ASCII range EMV's common character set uses.
fn code_table(index: u8) -> Option<&'static encoding_rs::Encoding> {
    use encoding_rs::*;
    Some(match index {
        1 => WINDOWS_1252, // ISO 8859-1 and windows-1252 agree on 20-7E and A0-FF.
        2 => ISO_8859_2,
        3 => ISO_8859_3,
        4 => ISO_8859_4,
        5 => ISO_8859_5,
        6 => ISO_8859_6,
        7 => ISO_8859_7,
        8 => ISO_8859_8,
        9 => WINDOWS_1254,
        10 => ISO_8859_10,
        11 => WINDOWS_874,
        13 => ISO_8859_13,
        14 => ISO_8859_14,
        15 => ISO_8859_15,
        16 => ISO_8859_16,
        _ => return None,
    })
}

/// The part number in a `9F11` value. Book 3 Annex A gives it format `n2` (`10` = part 10);
/// cards and emv-utils also write it in binary (`0B` = part 11), which is not BCD and so
/// cannot be confused: such a byte is read as binary.
pub fn code_table_number(v: &[u8]) -> Option<u8> {
    let [b] = v else { return None };
    Some(match numeric::bcd_to_u64(v) {
        Ok(n) => n as u8,
        Err(_) => *b,
    })
}

/// `9F11` Issuer Code Table Index (`n2`).
pub fn code_table_index(v: &[u8]) -> Lines {
    let n = code_table_number(v).ok_or_else(|| bad("issuer code table index", v.len()))?;
    let binary = numeric::bcd_to_u64(v).is_err();
    Ok(vec![match code_table(n) {
        Some(_) if binary => format!("ISO/IEC 8859-{n} (binary, not n2)"),
        Some(_) => format!("ISO/IEC 8859-{n}"),
        None => format!("{n} (no ISO/IEC 8859 part)"),
    }])
}

/// `9F12` Application Preferred Name in the ISO 8859 part that the `9F11` before it names
/// (Book 1 §12.2.4 / Book 3 Annex A). Control bytes (`00`–`1F`, `7F`–`9F`) are refused.
pub fn iso8859_text(v: &[u8], index: u8) -> Option<String> {
    if v.iter().any(|b| *b < 0x20 || (0x7F..0xA0).contains(b)) {
        return None;
    }
    let (text, _, errors) = code_table(index)?.decode(v);
    (!errors).then(|| format!("\"{text}\" (ISO/IEC 8859-{index})"))
}

/// `9F39` POS Entry Mode (`n2`; ISO 8583:1987 field 22 positions 1–2 as the payment systems
/// use them; EMV Book 3 Annex A).
pub fn pos_entry_mode(v: &[u8]) -> Lines {
    let [b] = v else {
        return Err(bad("pos entry mode", v.len()));
    };
    let text = match b {
        0x00 => "Unknown",
        0x01 => "Manual PAN entry",
        0x02 => "Magnetic stripe",
        0x03 => "Optical code (bar code)",
        0x04 => "OCR",
        0x05 => "Integrated circuit card (ICC), CVV can be checked",
        0x07 => "Auto entry via contactless EMV",
        0x10 => "Merchant has cardholder credentials on file",
        0x80 => "Fallback from ICC to magnetic stripe",
        0x90 => "Magnetic stripe as read from track 2, CVV can be checked",
        0x91 => "Auto entry via contactless magnetic stripe",
        0x95 => "Integrated circuit card (ICC), CVV may not be checked",
        0x99 => "Same as original transaction",
        _ => "Unknown POS entry mode",
    };
    Ok(vec![format!("{b:02X}: {text}")])
}

/// `8A` Authorisation Response Code: two `an` characters. EMV Book 4 §A6 reserves `Y1`, `Z1`,
/// `Y2`, `Z2`, `Y3`, `Z3` for terminal decisions; the rest are ISO 8583:1987 field 39 codes
/// as issuers send them.
pub fn auth_response_code(v: &[u8]) -> Lines {
    let [a, b] = v else {
        return Err(bad("authorisation response code", v.len()));
    };
    let code = [*a, *b];
    let text = match &code {
        b"Y1" => "Offline approved",
        b"Z1" => "Offline declined",
        b"Y2" => "Approval (after card-initiated referral)",
        b"Z2" => "Decline (after card-initiated referral)",
        b"Y3" => "Unable to go online, offline approved",
        b"Z3" => "Unable to go online, offline declined",
        b"00" => "Approved",
        b"01" => "Refer to card issuer",
        b"02" => "Refer to card issuer, special condition",
        b"03" => "Invalid merchant",
        b"04" => "Pick up card",
        b"05" => "Do not honour",
        b"06" => "Error",
        b"07" => "Pick up card, special condition",
        b"08" => "Honour with identification",
        b"09" => "Request in progress",
        b"10" => "Approved for partial amount",
        b"11" => "Approved (VIP)",
        b"12" => "Invalid transaction",
        b"13" => "Invalid amount",
        b"14" => "Invalid card number",
        b"15" => "No such issuer",
        b"19" => "Re-enter transaction",
        b"21" => "No action taken",
        b"25" => "Unable to locate record",
        b"30" => "Format error",
        b"33" => "Expired card, pick up",
        b"41" => "Lost card, pick up",
        b"43" => "Stolen card, pick up",
        b"51" => "Insufficient funds",
        b"54" => "Expired card",
        b"55" => "Incorrect PIN",
        b"57" => "Transaction not permitted to cardholder",
        b"58" => "Transaction not permitted to terminal",
        b"59" => "Suspected fraud",
        b"61" => "Exceeds withdrawal amount limit",
        b"62" => "Restricted card",
        b"63" => "Security violation",
        b"65" => "Exceeds withdrawal frequency limit",
        b"68" => "Response received too late",
        b"75" => "Allowable number of PIN tries exceeded",
        b"91" => "Issuer or switch inoperative",
        b"92" => {
            "Financial institution or intermediate network facility cannot be found for routing"
        }
        b"94" => "Duplicate transmission",
        b"96" => "System malfunction",
        _ => "Unknown response code",
    };
    let shown: String = code
        .iter()
        .map(|c| {
            if c.is_ascii_graphic() {
                *c as char
            } else {
                '.'
            }
        })
        .collect();
    Ok(vec![format!("{shown}: {text}")])
}

/// `91` Issuer Authentication Data (Book 3 §8.2): ARPC method 1 is an 8-byte ARPC and the
/// 2-character Authorisation Response Code (10 bytes); method 2 a 4-byte ARPC, the 4-byte Card
/// Status Update (Annex C10) and up to 8 bytes of proprietary data.
pub fn issuer_authentication_data(v: &[u8]) -> Lines {
    match v.len() {
        10 => {
            let mut out = vec![format!(
                "ARPC method 1: ARPC {}",
                hex::encode_upper(&v[..8])
            )];
            out.extend(auth_response_code(&v[8..])?);
            Ok(out)
        }
        8..=16 => {
            let csu = &v[4..8];
            let mut out = vec![
                format!("ARPC method 2: ARPC {}", hex::encode_upper(&v[..4])),
                format!("Card Status Update {}", hex::encode_upper(csu)),
            ];
            out.extend(set_names(csu, CSU).into_iter().map(|l| format!("CSU: {l}")));
            out.push(format!("CSU: PIN Try Counter {}", csu[0] & 0x0F));
            if v.len() > 8 {
                out.push(format!(
                    "Proprietary authentication data: {} bytes",
                    v.len() - 8
                ));
            }
            Ok(out)
        }
        n => Err(bad("issuer authentication data", n)),
    }
}

/// Card Status Update (EMV 4.4 Book 3 Annex C10); byte 1 b4–b1 is the PIN Try Counter, byte 2
/// b2–b1 the counter update, byte 4 issuer-discretionary.
const CSU: &[Bit] = &[
    Bit {
        byte: 0,
        mask: 0x80,
        name: "Proprietary authentication data included",
    },
    Bit {
        byte: 0,
        mask: 0x0F,
        name: "",
    },
    Bit {
        byte: 1,
        mask: 0x80,
        name: "Issuer approves online transaction",
    },
    Bit {
        byte: 1,
        mask: 0x40,
        name: "Card block",
    },
    Bit {
        byte: 1,
        mask: 0x20,
        name: "Application block",
    },
    Bit {
        byte: 1,
        mask: 0x10,
        name: "Update PIN Try Counter",
    },
    Bit {
        byte: 1,
        mask: 0x08,
        name: "Set go online on next transaction",
    },
    Bit {
        byte: 1,
        mask: 0x04,
        name: "CSU created by proxy for the issuer",
    },
    Bit {
        byte: 1,
        mask: 0x03,
        name: "",
    },
    Bit {
        byte: 3,
        mask: 0xFF,
        name: "",
    },
];

/// `9F15` Merchant Category Code (`n4`, ISO 18245).
pub fn mcc(v: &[u8]) -> Lines {
    let n = numeric::bcd_to_u64(v).map_err(|e| e.to_string())?;
    let n = u16::try_from(n).map_err(|_| "mcc out of range".to_owned())?;
    Ok(vec![match numeric::mcc_description(n) {
        Some(d) => format!("{n:04}: {d}"),
        None => format!("{n:04}: unknown merchant category"),
    }])
}

/// `9F0A` Application Selection Registered Proprietary Data: entries of a 2-byte ID, a length
/// and data (EMV 4.4 Book 1 §12.5; IDs registered with EMVCo).
pub fn asrpd(v: &[u8]) -> Lines {
    let mut out = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let (Some(id), Some(&len)) = (rest.get(..2), rest.get(2)) else {
            return Err("truncated asrpd entry".into());
        };
        let Some(data) = rest.get(3..3 + usize::from(len)) else {
            return Err("truncated asrpd entry".into());
        };
        let id = u16::from_be_bytes([id[0], id[1]]);
        let owner = match id {
            0x0001 => "European Cards Stakeholders Group",
            0x0003 => "Technical Cooperation ep2 Association",
            0x0005 => "Universal Global Scientific Industrial",
            _ => "unregistered ID",
        };
        let product = match (id, data.first()) {
            (0x0001 | 0x0003, Some(1)) => ", product type Debit",
            (0x0001 | 0x0003, Some(2)) => ", product type Credit",
            (0x0001 | 0x0003, Some(3)) => ", product type Commercial",
            (0x0001 | 0x0003, Some(4)) => ", product type Prepaid",
            _ => "",
        };
        out.push(format!("{id:04X} {owner}{product} ({len} bytes)"));
        rest = &rest[3 + usize::from(len)..];
    }
    Ok(out)
}

/// `9F2A` Kernel Identifier (card, 1 or 3–8 bytes) and `96` Kernel Identifier – Terminal (8
/// bytes): EMV Contactless Book B Tables 3-4, 3-5 and 3-7.
pub fn kernel_id(v: &[u8], terminal: bool) -> Lines {
    let Some(&b1) = v.first() else {
        return Err(bad("kernel identifier", 0));
    };
    if (!terminal && v.len() == 2) || v.len() > 8 || (terminal && v.len() != 8) {
        return Err(bad("kernel identifier", v.len()));
    }
    let short = b1 & 0x3F;
    let mut s = if short == 0 {
        "Default kernel".to_owned()
    } else {
        format!("Kernel C-{short}")
    };
    match b1 >> 6 {
        0 => s.push_str(", international"),
        1 => s.push_str(", RFU kernel type"),
        2 => {
            s.push_str(", domestic (EMVCo format)");
            if let Some(c) = v.get(1..3) {
                if let Ok(n) = numeric::parse_n3(c) {
                    s.push_str(&format!(", {}", currency(n)));
                }
            }
        }
        _ => s.push_str(", domestic (proprietary format)"),
    }
    if terminal {
        match v.get(3).map(|b| b >> 6) {
            Some(3) => s.push_str(", Kernel 8 supported by reader and for the transaction"),
            Some(2) => s.push_str(", Kernel 8 supported by reader"),
            Some(1) => s.push_str(", Kernel 8 supported for the transaction"),
            _ => {}
        }
    }
    Ok(vec![s])
}

fn terminal_category(c: u16) -> String {
    match c {
        0x0001 => "Transit gate".to_owned(),
        0x0002 => "Loyalty terminal".to_owned(),
        _ => format!("{c:04X} (RFU)"),
    }
}

/// `9F3E` Terminal Categories Supported List: 2-byte categories (Book B Annex A, Table A-2).
pub fn terminal_categories(v: &[u8]) -> Lines {
    if !v.len().is_multiple_of(2) {
        return Err(bad("terminal categories", v.len()));
    }
    Ok(v.chunks_exact(2)
        .map(|c| {
            format!(
                "Terminal category: {}",
                terminal_category(u16::from_be_bytes([c[0], c[1]]))
            )
        })
        .collect())
}

/// `8B` POI Information: entries of a 2-byte ID, a length and data (Book B Annex A, Table A-1;
/// ID `0001` Terminal Category, 2 bytes).
pub fn poi_information(v: &[u8]) -> Lines {
    let mut out = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let (Some(id), Some(&len)) = (rest.get(..2), rest.get(2)) else {
            return Err("truncated poi information entry".into());
        };
        let Some(data) = rest.get(3..3 + usize::from(len)) else {
            return Err("truncated poi information entry".into());
        };
        let id = u16::from_be_bytes([id[0], id[1]]);
        out.push(match (id, data) {
            (0x0001, [a, b]) => {
                format!(
                    "Terminal category: {}",
                    terminal_category(u16::from_be_bytes([*a, *b]))
                )
            }
            (0x0001, _) => return Err(bad("terminal category", data.len())),
            _ => format!("POI information ID {id:04X} (unknown, {len} bytes)"),
        });
        rest = &rest[3 + usize::from(len)..];
    }
    Ok(out)
}

/// `86` Issuer Script Command: a command APDU (Book 3 §6.5 and §10.10), named by INS.
pub fn script_command(v: &[u8]) -> Lines {
    let [cla, ins, p1, p2, rest @ ..] = v else {
        return Err(bad("issuer script command", v.len()));
    };
    let name = match ins {
        0x1E => "APPLICATION BLOCK",
        0x18 => "APPLICATION UNBLOCK",
        0x16 => "CARD BLOCK",
        0x24 => "PIN CHANGE/UNBLOCK",
        0xDA => "PUT DATA",
        0xDC => "UPDATE RECORD",
        _ => "proprietary command",
    };
    let mut s = format!("{name}: CLA {cla:02X} INS {ins:02X} P1 {p1:02X} P2 {p2:02X}");
    if let Some((&lc, data)) = rest.split_first() {
        s.push_str(&format!(", Lc {lc}"));
        if data.len() != usize::from(lc) {
            s.push_str(&format!(" ({} data bytes present)", data.len()));
        }
        if *ins == 0xDA {
            let tag = (u32::from(*p1) << 8) | u32::from(*p2);
            if let Some(n) = dictionary::name(Tag(tag)) {
                s.push_str(&format!(", data object {tag:04X} {n}"));
            }
        }
        if *cla & 0x0C != 0 {
            s.push_str(", secure messaging");
        }
    }
    Ok(vec![s])
}

/// `9F1D` Terminal Risk Management Data, Mastercard Kernel 2 (EMV Contactless Book C-2
/// Annex A.1.161; bytes 5–8 RFU).
pub const TRMD: &[Bit] = &[
    Bit {
        byte: 0,
        mask: 0x80,
        name: "Restart supported",
    },
    Bit {
        byte: 0,
        mask: 0x40,
        name: "Enciphered PIN verified online (contactless)",
    },
    Bit {
        byte: 0,
        mask: 0x20,
        name: "Signature (paper) (contactless)",
    },
    Bit {
        byte: 0,
        mask: 0x10,
        name: "Enciphered PIN verification performed by ICC (contactless)",
    },
    Bit {
        byte: 0,
        mask: 0x08,
        name: "No CVM required (contactless)",
    },
    Bit {
        byte: 0,
        mask: 0x04,
        name: "CDCVM (contactless)",
    },
    Bit {
        byte: 0,
        mask: 0x02,
        name: "Plaintext PIN verification performed by ICC (contactless)",
    },
    Bit {
        byte: 0,
        mask: 0x01,
        name: "Present and hold supported",
    },
    Bit {
        byte: 1,
        mask: 0x80,
        name: "CVM limit exceeded",
    },
    Bit {
        byte: 1,
        mask: 0x40,
        name: "Enciphered PIN verified online (contact)",
    },
    Bit {
        byte: 1,
        mask: 0x20,
        name: "Signature (paper) (contact)",
    },
    Bit {
        byte: 1,
        mask: 0x10,
        name: "Enciphered PIN verification performed by ICC (contact)",
    },
    Bit {
        byte: 1,
        mask: 0x08,
        name: "No CVM required (contact)",
    },
    Bit {
        byte: 1,
        mask: 0x04,
        name: "CDCVM (contact)",
    },
    Bit {
        byte: 1,
        mask: 0x02,
        name: "Plaintext PIN verification performed by ICC (contact)",
    },
    Bit {
        byte: 2,
        mask: 0x80,
        name: "Mag-stripe mode contactless transactions not supported",
    },
    Bit {
        byte: 2,
        mask: 0x40,
        name: "EMV mode contactless transactions not supported",
    },
    Bit {
        byte: 2,
        mask: 0x20,
        name: "CDCVM without CDA supported",
    },
    Bit {
        byte: 3,
        mask: 0x80,
        name: "CDCVM bypass requested",
    },
    Bit {
        byte: 3,
        mask: 0x40,
        name: "SCA exempt",
    },
];

/// Visa `9F6E` Form Factor Indicator (VCPS 2.2 Table 5-15; version 1).
pub fn form_factor_indicator(v: &[u8]) -> Lines {
    let [b1, b2, b3, b4] = v else {
        return Err(bad("form factor indicator", v.len()));
    };
    let form = match b1 & 0x1F {
        0 => "Card",
        1 => "Mini-card",
        2 => "Non-card form factor",
        3 => "Consumer mobile phone",
        4 => "Wrist-worn device",
        _ => "RFU form factor",
    };
    let mut out = vec![
        format!("FFI version {}", b1 >> 5),
        format!("Form factor: {form}"),
    ];
    for (mask, name) in [
        (0x80, "Passcode capable"),
        (0x40, "Signature panel"),
        (0x20, "Hologram"),
        (0x10, "CVV2"),
        (0x08, "Two-way messaging"),
        (0x04, "Cloud based payment credentials"),
        (0x02, "Biometric cardholder verification capable"),
    ] {
        if b2 & mask != 0 {
            out.push(format!("Feature: {name}"));
        }
    }
    if *b3 != 0 || b2 & 1 != 0 {
        out.push("RFU bits set".into());
    }
    out.push(match b4 & 0x0F {
        0 => "Technology: contactless (ISO/IEC 14443, including NFC)".into(),
        t => format!("Technology: {t:X} (not used in VCPS)"),
    });
    Ok(out)
}

/// Mastercard `9F6E` Third Party Data (Book C-2 Annex A): country code `n3`, unique
/// identifier, proprietary data; when b8 of the identifier is clear, a 2-byte device type
/// follows.
pub fn third_party_data(v: &[u8]) -> Lines {
    if !(5..=32).contains(&v.len()) {
        return Err(bad("third party data", v.len()));
    }
    let country = numeric::parse_n3(&v[..2])
        .ok()
        .and_then(numeric::Country::from_numeric)
        .map_or_else(
            || format!("{:02X}{:02X} unknown country", v[0], v[1]),
            |c| c.to_string(),
        );
    let id = u16::from_be_bytes([v[2], v[3]]);
    let mut out = vec![
        format!("Country: {country}"),
        format!("Unique identifier: {id:04X}"),
    ];
    if id & 0x8000 == 0 {
        if let Some(t) = v.get(4..6) {
            let shown: String = t
                .iter()
                .map(|b| {
                    if b.is_ascii_graphic() {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            out.push(format!("Device type: {shown}"));
        }
    }
    Ok(out)
}

/// Amex `9F6E` Enhanced Contactless Reader Capabilities (Book C-4 Annex A).
pub const AMEX_ENHANCED_READER_CAPS: &[Bit] = &[
    Bit {
        byte: 0,
        mask: 0x80,
        name: "Contact mode supported",
    },
    Bit {
        byte: 0,
        mask: 0x40,
        name: "Contactless mag-stripe mode supported",
    },
    Bit {
        byte: 0,
        mask: 0x20,
        name: "Contactless EMV full online mode supported",
    },
    Bit {
        byte: 0,
        mask: 0x10,
        name: "Contactless EMV partial online mode supported",
    },
    Bit {
        byte: 0,
        mask: 0x08,
        name: "Contactless mobile supported",
    },
    Bit {
        byte: 0,
        mask: 0x04,
        name: "Try another interface after a decline",
    },
    Bit {
        byte: 1,
        mask: 0x80,
        name: "Mobile CVM supported",
    },
    Bit {
        byte: 1,
        mask: 0x40,
        name: "Online PIN supported",
    },
    Bit {
        byte: 1,
        mask: 0x20,
        name: "Signature supported",
    },
    Bit {
        byte: 1,
        mask: 0x10,
        name: "Plaintext offline PIN supported",
    },
    Bit {
        byte: 2,
        mask: 0x80,
        name: "Reader is offline only",
    },
    Bit {
        byte: 2,
        mask: 0x40,
        name: "CVM required",
    },
    Bit {
        byte: 3,
        mask: 0x80,
        name: "Terminal exempt from No CVM checks",
    },
    Bit {
        byte: 3,
        mask: 0x40,
        name: "Delayed authorisation terminal",
    },
    Bit {
        byte: 3,
        mask: 0x20,
        name: "Transit terminal",
    },
];

/// Amex `9F6D` Contactless Reader Capabilities (Book C-4 Annex A): bits 8, 7 and 4 only,
/// OR'd into `9F35` Terminal Type before the card sees it.
pub fn amex_reader_capabilities(v: &[u8]) -> Lines {
    let [b] = v else {
        return Err(bad("contactless reader capabilities", v.len()));
    };
    let text = match b & 0xC8 {
        0x00 => "Deprecated",
        0x40 => "Contactless mag-stripe, CVM not required",
        0x48 => "Contactless mag-stripe, CVM required",
        0x80 => "Deprecated (contactless EMV and mag-stripe)",
        0xC0 => "Contactless EMV and mag-stripe, CVM not required",
        _ => "Contactless EMV and mag-stripe, CVM required",
    };
    let mut out = vec![text.to_owned()];
    if b & !0xC8 != 0 {
        out.push(format!("Terminal Type bits set: {:02X}", b & !0xC8));
    }
    Ok(out)
}

/// Mastercard `9F5D` Application Capabilities Information (Book C-2 Annex A.1.9).
pub fn app_caps_information(v: &[u8]) -> Lines {
    let [b1, b2, b3] = v else {
        return Err(bad("application capabilities information", v.len()));
    };
    let mut out = vec![format!(
        "ACI version {}, data storage version {}",
        b1 >> 4,
        b1 & 0x0F
    )];
    for (mask, name) in [
        (0x04, "Support for field off detection"),
        (0x02, "Support for balance reading"),
        (0x01, "CDA indicator: CDA supported over TC, ARQC and AAC"),
    ] {
        if b2 & mask != 0 {
            out.push(name.to_owned());
        }
    }
    out.push(format!("SDS scheme indicator {b3:02X}"));
    Ok(out)
}

/// Bits of a bit-field table that are set, by name.
pub fn set_names(v: &[u8], table: &[Bit]) -> Vec<String> {
    let mut out: Vec<String> = table
        .iter()
        .filter(|b| !b.name.is_empty())
        .filter(|b| {
            v.get(usize::from(b.byte))
                .is_some_and(|x| x & b.mask == b.mask)
        })
        .map(|b| b.name.to_owned())
        .collect();
    let mut rfu = v.to_vec();
    for b in table {
        if let Some(x) = rfu.get_mut(usize::from(b.byte)) {
            *x &= !b.mask;
        }
    }
    if rfu.iter().any(|b| *b != 0) {
        out.push(format!(
            "RFU/proprietary bits set: {}",
            hex::encode_upper(&rfu)
        ));
    }
    out
}

/// Track 2 split into its fields (ISO/IEC 7813 / EMV Book 3 Annex A `57`): PAN, expiry, service
/// code, discretionary data. The caller decides whether the PAN and discretionary data may be
/// shown; `reveal = false` masks them.
pub fn track2(v: &[u8], reveal: bool) -> Lines {
    let t2 = super::sensitive::Track2::from_bcd(v).map_err(|e| e.to_string())?;
    let (yy, mm) = t2.expiry();
    let pan = if reveal {
        t2.pan().reveal().to_owned()
    } else {
        super::sensitive::mask_pan_digits(t2.pan().reveal())
    };
    let dd = t2.reveal_discretionary();
    Ok(vec![
        format!("PAN: {pan}"),
        format!("Expiry: 20{yy:02}-{mm:02}"),
        format!("Service code: {}", t2.service_code()),
        if reveal {
            format!("Discretionary data: {dd}")
        } else {
            format!("Discretionary data: {} digits", dd.len())
        },
    ])
}
