//! ISO/IEC 7816 card-level codes the EMV books build on: status words (ISO/IEC 7816-4 §5.6,
//! EMV Book 1 §9.4 / Book 3 §6.3.5) and the Answer To Reset (ISO/IEC 7816-3 §8, EMV Book 1
//! §8.3).

/// The meaning of a status word `SW1 SW2` from a card (ISO/IEC 7816-4 Tables 5–6).
pub fn status_word(sw1: u8, sw2: u8) -> String {
    let fixed = match (sw1, sw2) {
        (0x90, 0x00) => Some("Normal processing: no further qualification"),
        (0x62, 0x00) => Some("Warning: state of non-volatile memory unchanged"),
        (0x62, 0x81) => Some("Warning: part of returned data may be corrupted"),
        (0x62, 0x82) => Some("Warning: end of file or record reached before reading Ne bytes"),
        (0x62, 0x83) => Some("Warning: selected file deactivated"),
        (0x62, 0x84) => {
            Some("Warning: file control information not formatted according to ISO/IEC 7816-4")
        }
        (0x62, 0x85) => Some("Warning: selected file in termination state"),
        (0x62, 0x86) => Some("Warning: no input data available from a sensor on the card"),
        (0x63, 0x00) => Some("Warning: state of non-volatile memory changed, no information given"),
        (0x63, 0x81) => Some("Warning: file filled up by the last write"),
        (0x64, 0x00) => Some("Execution error: state of non-volatile memory unchanged"),
        (0x65, 0x00) => Some("Execution error: state of non-volatile memory changed"),
        (0x65, 0x81) => Some("Execution error: memory failure"),
        (0x66, 0x00) => Some("Security-related issue"),
        (0x67, 0x00) => Some("Checking error: wrong length"),
        (0x68, 0x00) => Some("Checking error: functions in CLA not supported"),
        (0x68, 0x81) => Some("Checking error: logical channel not supported"),
        (0x68, 0x82) => Some("Checking error: secure messaging not supported"),
        (0x68, 0x83) => Some("Checking error: last command of the chain expected"),
        (0x68, 0x84) => Some("Checking error: command chaining not supported"),
        (0x69, 0x00) => Some("Checking error: command not allowed"),
        (0x69, 0x81) => Some("Checking error: command incompatible with file structure"),
        (0x69, 0x82) => Some("Checking error: security status not satisfied"),
        (0x69, 0x83) => Some("Checking error: authentication method blocked"),
        (0x69, 0x84) => Some("Checking error: reference data not usable"),
        (0x69, 0x85) => Some("Checking error: conditions of use not satisfied"),
        (0x69, 0x86) => Some("Checking error: command not allowed (no current EF)"),
        (0x69, 0x87) => Some("Checking error: expected secure messaging data objects missing"),
        (0x69, 0x88) => Some("Checking error: incorrect secure messaging data objects"),
        (0x6A, 0x00) => Some("Checking error: wrong parameters P1-P2"),
        (0x6A, 0x80) => Some("Checking error: incorrect parameters in the command data field"),
        (0x6A, 0x81) => Some("Checking error: function not supported"),
        (0x6A, 0x82) => Some("Checking error: file or application not found"),
        (0x6A, 0x83) => Some("Checking error: record not found"),
        (0x6A, 0x84) => Some("Checking error: not enough memory space in the file"),
        (0x6A, 0x85) => Some("Checking error: Nc inconsistent with TLV structure"),
        (0x6A, 0x86) => Some("Checking error: incorrect parameters P1-P2"),
        (0x6A, 0x87) => Some("Checking error: Nc inconsistent with parameters P1-P2"),
        (0x6A, 0x88) => Some("Checking error: referenced data or reference data not found"),
        (0x6A, 0x89) => Some("Checking error: file already exists"),
        (0x6A, 0x8A) => Some("Checking error: DF name already exists"),
        (0x6B, 0x00) => Some("Checking error: wrong parameters P1-P2"),
        (0x6D, 0x00) => Some("Checking error: instruction code not supported or invalid"),
        (0x6E, 0x00) => Some("Checking error: class not supported"),
        (0x6F, 0x00) => Some("Checking error: no precise diagnosis"),
        _ => None,
    };
    if let Some(s) = fixed {
        return s.to_owned();
    }
    match sw1 {
        0x61 => format!("Normal processing: {sw2} data bytes still available"),
        0x63 if sw2 & 0xF0 == 0xC0 => format!(
            "Warning: counter {} (for VERIFY: PIN tries remaining)",
            sw2 & 0x0F
        ),
        0x6C => format!("Checking error: wrong Le field; {sw2} data bytes available"),
        0x62 | 0x63 => "Warning".to_owned(),
        0x64..=0x66 => "Execution error".to_owned(),
        0x67..=0x6F => "Checking error".to_owned(),
        0x90..=0x9F => "Proprietary status".to_owned(),
        _ => "Unknown status word".to_owned(),
    }
}

/// Why an ATR could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AtrError {
    /// The initial character is neither `3B` (direct) nor `3F` (inverse convention).
    #[error("bad initial character at byte offset 0")]
    BadTs,
    /// The interface or historical bytes announced run past the end.
    #[error("truncated atr at byte offset {offset}")]
    Truncated {
        /// Offset where a byte was missing.
        offset: usize,
    },
    /// More than the 32 bytes ISO/IEC 7816-3 allows.
    #[error("atr longer than 32 bytes at byte offset 32")]
    TooLong,
}

/// Decodes an Answer To Reset (ISO/IEC 7816-3 §8.2; EMV Book 1 §8.3 restricts what a card may
/// send). One line per character group.
///
/// # Errors
/// [`AtrError`] for a bad TS, a truncated or an over-long ATR.
pub fn atr(v: &[u8]) -> Result<Vec<String>, AtrError> {
    if v.len() > 32 {
        return Err(AtrError::TooLong);
    }
    let mut out = Vec::new();
    match v.first() {
        Some(0x3B) => out.push("TS 3B: direct convention".to_owned()),
        Some(0x3F) => out.push("TS 3F: inverse convention".to_owned()),
        _ => return Err(AtrError::BadTs),
    }
    let t0 = *v.get(1).ok_or(AtrError::Truncated { offset: 1 })?;
    let k = usize::from(t0 & 0x0F);
    out.push(format!("T0 {t0:02X}: {k} historical bytes"));
    let mut y = t0 >> 4;
    let mut pos = 2;
    let mut i = 1;
    let mut protocols = Vec::new();
    loop {
        for (bit, name) in [(1u8, "TA"), (2, "TB"), (4, "TC")] {
            if y & bit != 0 {
                let b = *v.get(pos).ok_or(AtrError::Truncated { offset: pos })?;
                out.push(interface_byte(name, i, b));
                pos += 1;
            }
        }
        if y & 8 == 0 {
            break;
        }
        let td = *v.get(pos).ok_or(AtrError::Truncated { offset: pos })?;
        pos += 1;
        protocols.push(td & 0x0F);
        out.push(format!("TD{i} {td:02X}: protocol T={}", td & 0x0F));
        y = td >> 4;
        i += 1;
    }
    let hist = v
        .get(pos..pos + k)
        .ok_or(AtrError::Truncated { offset: v.len() })?;
    if k > 0 {
        let text: String = hist
            .iter()
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    *b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push(format!(
            "Historical bytes: {} \"{text}\"",
            hex::encode_upper(hist)
        ));
    }
    pos += k;
    // ISO/IEC 7816-3 §8.2.5: TCK is present unless only T=0 is indicated.
    if protocols.iter().any(|p| *p != 0) {
        let tck = *v.get(pos).ok_or(AtrError::Truncated { offset: pos })?;
        let x = v[1..pos].iter().fold(0u8, |a, b| a ^ b);
        out.push(format!(
            "TCK {tck:02X}: {}",
            if x == tck {
                "check byte correct"
            } else {
                "check byte WRONG"
            }
        ));
        pos += 1;
    } else {
        out.push("Protocol T=0 (no TCK)".to_owned());
    }
    if v.len() > pos {
        out.push(format!("{} bytes after the ATR", v.len() - pos));
    }
    Ok(out)
}

fn interface_byte(name: &str, i: usize, b: u8) -> String {
    let what = match (name, i) {
        ("TA", 1) => {
            // ISO/IEC 7816-3 Tables 7 and 8.
            const FI: [u16; 16] = [
                372, 372, 558, 744, 1116, 1488, 1860, 0, 0, 512, 768, 1024, 1536, 2048, 0, 0,
            ];
            const DI: [u8; 16] = [0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0];
            let (f, d) = (FI[usize::from(b >> 4)], DI[usize::from(b & 0x0F)]);
            if f == 0 || d == 0 {
                "Fi/Di RFU".to_owned()
            } else {
                format!("Fi={f}, Di={d}")
            }
        }
        ("TB", 1) => "VPP / programming voltage (deprecated)".to_owned(),
        ("TC", 1) => format!("extra guard time N={b}"),
        ("TA", 2) => format!(
            "specific mode, T={}{}",
            b & 0x0F,
            if b & 0x80 != 0 { ", cannot change" } else { "" }
        ),
        ("TC", 2) => format!("work waiting time integer WI={b}"),
        ("TA", _) => format!("IFSC={b}"),
        ("TB", _) => format!("BWI={}, CWI={}", b >> 4, b & 0x0F),
        ("TC", _) => format!(
            "error detection: {}",
            if b & 1 == 1 { "CRC" } else { "LRC" }
        ),
        _ => String::new(),
    };
    format!("{name}{i} {b:02X}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        assert_eq!(
            status_word(0x90, 0x00),
            "Normal processing: no further qualification"
        );
        assert_eq!(
            status_word(0x6A, 0x82),
            "Checking error: file or application not found"
        );
        assert_eq!(
            status_word(0x63, 0xC2),
            "Warning: counter 2 (for VERIFY: PIN tries remaining)"
        );
        assert_eq!(
            status_word(0x61, 0x10),
            "Normal processing: 16 data bytes still available"
        );
        assert_eq!(
            status_word(0x6C, 0x1D),
            "Checking error: wrong Le field; 29 data bytes available"
        );
    }

    #[test]
    fn atrs() {
        // EMV Book 1 §8.3 basic ATR for T=0: 3B 60 00 00 is minimal; a typical EMV card:
        let a = atr(&hex::decode("3B6500002063CBA600").unwrap()).unwrap();
        assert_eq!(a[0], "TS 3B: direct convention");
        assert!(
            a.iter()
                .any(|l| l == "TB1 00: VPP / programming voltage (deprecated)"),
            "{a:?}"
        );
        assert!(
            a.iter()
                .any(|l| l.starts_with("Historical bytes: 2063CBA600")),
            "{a:?}"
        );
        // T=1 card with TCK.
        let a = atr(&hex::decode("3B80800101").unwrap()).unwrap();
        assert!(a.iter().any(|l| l == "TD2 01: protocol T=1"), "{a:?}");
        assert_eq!(a.last().unwrap(), "TCK 01: check byte correct");
        assert_eq!(atr(&[0x3C]), Err(AtrError::BadTs));
        assert_eq!(atr(&[0x3B, 0x95]), Err(AtrError::Truncated { offset: 2 }));
    }
}
