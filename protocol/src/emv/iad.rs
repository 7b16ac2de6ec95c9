//! `9F10` Issuer Application Data: the issuer's proprietary part of the cryptogram input,
//! decoded per the layout its first bytes announce.
//!
//! - CCD (Common Core Definitions) format, EMV 4.4 Book 3 Annex C9: 32 bytes, byte 1 `0F`,
//!   Common Core Identifier `A5`/`A6`, byte 17 `0F`.
//! - Mastercard M/Chip 4 (18 bytes) and M/Chip Advance (20, 26, 28 bytes): DKI, CVN `1x`,
//!   6-byte CVR (M/Chip Requirements, Appendix B "Issuer Application Data, 9F10").
//! - Visa VSDC formats 0/1/3 (byte 1 `06`, CVR length `03`) and 2/4 (32 bytes, byte 1 `1F`)
//!   (VCPS Supplemental Requirements 2.2, Appendix M): CVN 10, 18, 22 and `'22'`…
//!
//! The format is read from the value's shape, as the schemes define it; a scheme known from
//! the AID picks the layout when the shape alone does not.

use super::bits::Bit;
use super::context::Scheme;

/// The IAD layouts told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IadFormat {
    /// EMV 4.4 Book 3 Annex C9.
    Ccd,
    /// M/Chip 4.
    MChip4,
    /// M/Chip Advance.
    MChipAdvance,
    /// VSDC IAD format 0, 1 or 3 (the number).
    Vsdc013(u8),
    /// VSDC IAD format 2 or 4 (the number).
    Vsdc24(u8),
}

impl IadFormat {
    /// Recognises the layout of `iad` (emv-utils' and the schemes' rules).
    pub fn of(iad: &[u8], scheme: Option<Scheme>) -> Option<IadFormat> {
        let len = iad.len();
        let b = |i: usize| iad.get(i).copied().unwrap_or(0);
        if len == 32
            && b(0) == 0x0F
            && b(1) & 0xF0 == 0xA0
            && matches!(b(1) & 0x0F, 5 | 6)
            && b(16) == 0x0F
        {
            return Some(IadFormat::Ccd);
        }
        let mchip_cvn = b(1) & 0xF0 == 0x10 && b(1) & 0x0A == 0;
        if scheme != Some(Scheme::Visa) && mchip_cvn {
            match len {
                18 => return Some(IadFormat::MChip4),
                20 | 26 | 28 => return Some(IadFormat::MChipAdvance),
                _ => {}
            }
        }
        if len >= 7 && b(0) == 0x06 && b(3) == 0x03 {
            return match b(2) >> 4 {
                f @ (0 | 1 | 3) => Some(IadFormat::Vsdc013(f)),
                _ => None,
            };
        }
        if len == 32 && b(0) == 0x1F && b(8) & 0xF0 == 0 {
            return match b(1) >> 4 {
                f @ (2 | 4) => Some(IadFormat::Vsdc24(f)),
                _ => None,
            };
        }
        None
    }
}

const fn bit(byte: u8, mask: u8, name: &'static str) -> Bit {
    Bit { byte, mask, name }
}

fn set(cvr: &[u8], table: &[Bit], out: &mut Vec<String>) {
    for b in table {
        if cvr
            .get(usize::from(b.byte))
            .is_some_and(|v| v & b.mask == b.mask)
        {
            out.push(format!("CVR: {}", b.name));
        }
    }
}

fn gac(second: u8, first: u8, out: &mut Vec<String>) {
    out.push(format!(
        "CVR: Second GENERATE AC {}",
        ["returned AAC", "returned TC", "not requested", "RFU"][usize::from(second & 3)]
    ));
    out.push(format!(
        "CVR: First GENERATE AC {}",
        ["returned AAC", "returned TC", "returned ARQC", "RFU"][usize::from(first & 3)]
    ));
}

/// M/Chip CVR bytes 1–6 (M/Chip Requirements, Appendix B).
const MCHIP_CVR: &[Bit] = &[
    bit(0, 0x08, "Date check failed"),
    bit(0, 0x04, "Offline PIN verification performed"),
    bit(0, 0x02, "Offline encrypted PIN verification performed"),
    bit(0, 0x01, "Offline PIN verification successful"),
    bit(1, 0x80, "DDA returned"),
    bit(1, 0x40, "CDA returned in first GENERATE AC"),
    bit(1, 0x20, "CDA returned in second GENERATE AC"),
    bit(1, 0x10, "Issuer authentication performed"),
    bit(1, 0x08, "CIAC-Default skipped on CAT3"),
    bit(1, 0x04, "Offline change PIN result successful"),
    bit(3, 0x80, "Last online transaction not completed"),
    bit(3, 0x40, "Unable to go online"),
    bit(3, 0x20, "Offline PIN verification not performed"),
    bit(3, 0x10, "Offline PIN verification failed"),
    bit(3, 0x08, "PTL exceeded"),
    bit(3, 0x04, "International transaction"),
    bit(3, 0x02, "Domestic transaction"),
    bit(3, 0x01, "Terminal erroneously considers offline PIN OK"),
    bit(4, 0x80, "Lower consecutive offline limit exceeded"),
    bit(4, 0x40, "Upper consecutive offline limit exceeded"),
    bit(4, 0x20, "Lower cumulative offline limit exceeded"),
    bit(4, 0x10, "Upper cumulative offline limit exceeded"),
    bit(4, 0x08, "Go online on next transaction was set"),
    bit(4, 0x04, "Issuer authentication failed"),
    bit(4, 0x02, "Script received"),
    bit(4, 0x01, "Script failed"),
    bit(5, 0x80, "Lower consecutive counter 2 limit exceeded"),
    bit(5, 0x40, "Upper consecutive counter 2 limit exceeded"),
    bit(5, 0x20, "Lower cumulative accumulator 2 limit exceeded"),
    bit(5, 0x10, "Upper cumulative accumulator 2 limit exceeded"),
    bit(5, 0x08, "MTA limit exceeded"),
    bit(5, 0x04, "Number of days offline limit exceeded"),
    bit(5, 0x02, "Match found in additional check table"),
    bit(5, 0x01, "No match found in additional check table"),
];

/// VSDC CVR bytes 2–4 (byte 1 is the CVR length in formats 0/1/3), VCPS Appendix M.
const VSDC_CVR: &[Bit] = &[
    bit(1, 0x08, "Issuer authentication performed and failed"),
    bit(1, 0x01, "Unable to go online"),
    bit(2, 0x80, "Last online transaction not completed"),
    bit(2, 0x40, "PIN Try Limit exceeded"),
    bit(2, 0x20, "Exceeded velocity checking counters"),
    bit(2, 0x10, "New card"),
    bit(
        2,
        0x08,
        "Issuer authentication failure on last online transaction",
    ),
    bit(
        2,
        0x04,
        "Issuer authentication not performed after online authorization",
    ),
    bit(
        2,
        0x02,
        "Application blocked by card because PIN Try Limit exceeded",
    ),
    bit(
        2,
        0x01,
        "Offline static data authentication failed on last transaction",
    ),
    bit(3, 0x08, "Issuer script processing failed"),
    bit(
        3,
        0x04,
        "Offline dynamic data authentication failed on last transaction",
    ),
    bit(3, 0x02, "Offline dynamic data authentication performed"),
    bit(
        3,
        0x01,
        "PIN verification command not received for a PIN-expecting card",
    ),
];

/// CCD CVR (EMV 4.4 Book 3 Annex C9.3, Table CCD 10), bytes 1–4 after the AC-type bits.
const CCD_CVR: &[Bit] = &[
    bit(0, 0x08, "CDA performed"),
    bit(0, 0x04, "Offline DDA performed"),
    bit(0, 0x02, "Issuer authentication not performed"),
    bit(0, 0x01, "Issuer authentication failed"),
    bit(1, 0x08, "Offline PIN verification performed"),
    bit(
        1,
        0x04,
        "Offline PIN verification performed and PIN not successfully verified",
    ),
    bit(1, 0x02, "PIN Try Limit exceeded"),
    bit(1, 0x01, "Last online transaction not completed"),
    bit(2, 0x80, "Lower offline transaction count limit exceeded"),
    bit(2, 0x40, "Upper offline transaction count limit exceeded"),
    bit(2, 0x20, "Lower cumulative offline amount limit exceeded"),
    bit(2, 0x10, "Upper cumulative offline amount limit exceeded"),
    bit(3, 0x08, "Issuer script processing failed"),
    bit(
        3,
        0x04,
        "Offline data authentication failed on previous transaction",
    ),
    bit(3, 0x02, "Go online on next transaction was set"),
    bit(3, 0x01, "Unable to go online"),
];

/// Lines describing an IAD; `None` when no known layout fits.
pub fn describe(iad: &[u8], scheme: Option<Scheme>) -> Option<Vec<String>> {
    let format = IadFormat::of(iad, scheme)?;
    let b = |i: usize| iad.get(i).copied().unwrap_or(0);
    let mut out = Vec::new();
    match format {
        IadFormat::Ccd => {
            out.push(
                "CCD-compliant application, IAD format CCD version 4.1 (Book 3 Annex C9)".into(),
            );
            out.push(format!(
                "Cryptogram version: {}",
                if b(1) & 0x0F == 5 { "TDES" } else { "AES" }
            ));
            out.push(format!("Derivation Key Index (DKI): {:02X}", b(2)));
            let cvr = iad.get(3..8).unwrap_or_default();
            gac(b(3) >> 6, b(3) >> 4, &mut out);
            set(cvr, CCD_CVR, &mut out);
            out.push(format!("CVR: PIN Try Counter {}", b(4) >> 4));
            out.push(format!(
                "CVR: {} issuer script commands with secure messaging processed",
                b(6) >> 4
            ));
        }
        IadFormat::MChip4 | IadFormat::MChipAdvance => {
            out.push(
                if format == IadFormat::MChip4 {
                    "Mastercard M/Chip 4"
                } else {
                    "Mastercard M/Chip Advance"
                }
                .into(),
            );
            out.push(format!("Derivation Key Index (DKI): {:02X}", b(0)));
            out.push(format!(
                "Cryptogram Version Number (CVN): {:02X} ({} session key, counters {}included in AC data)",
                b(1),
                if b(1) & 0x04 != 0 { "EMV CSK" } else { "Mastercard SKD" },
                if b(1) & 0x01 != 0 { "" } else { "not " }
            ));
            let cvr = iad.get(2..8).unwrap_or_default();
            gac(b(2) >> 6, b(2) >> 4, &mut out);
            set(cvr, MCHIP_CVR, &mut out);
            out.push(format!(
                "CVR: script counter {}, PIN try counter {}",
                b(4) >> 4,
                b(4) & 0x0F
            ));
            if let Some(dac) = iad.get(8..10) {
                out.push(format!(
                    "DAC/ICC dynamic number: {:02X}{:02X}",
                    dac[0], dac[1]
                ));
            }
        }
        IadFormat::Vsdc013(f) => {
            out.push(format!("Visa Smart Debit/Credit (VSDC), IAD format {f}"));
            out.push(format!("Derivation Key Index (DKI): {:02X}", b(1)));
            out.push(format!(
                "Cryptogram Version Number (CVN): {:02X} (CVN{:02})",
                b(2),
                b(2)
            ));
            let cvr = iad.get(3..7).unwrap_or_default();
            gac(b(4) >> 6, b(4) >> 4, &mut out);
            if b(4) & 0x04 != 0 {
                out.push("CVR: Offline PIN verification performed".into());
            }
            if b(4) & 0x02 != 0 {
                out.push("CVR: Offline PIN verification failed".into());
            }
            set(cvr, VSDC_CVR, &mut out);
            out.push(format!("CVR: {} issuer script commands", b(6) >> 4));
        }
        IadFormat::Vsdc24(f) => {
            out.push(format!("Visa Smart Debit/Credit (VSDC), IAD format {f}"));
            out.push(format!(
                "Cryptogram Version Number (CVN): {:02X} (CVN'{:02X}')",
                b(1),
                b(1)
            ));
            out.push(format!("Derivation Key Index (DKI): {:02X}", b(2)));
            let cvr = iad.get(3..8).unwrap_or_default();
            out.push(format!(
                "CVR: CVM verifying entity {:X}, verified type {:X}",
                b(3) >> 4,
                b(3) & 0x0F
            ));
            gac(b(4) >> 6, b(4) >> 4, &mut out);
            if b(4) & 0x04 != 0 {
                out.push("CVR: CDCVM successfully performed".into());
            }
            set(cvr, VSDC_CVR, &mut out);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn formats_of_the_public_vectors() {
        // emv-utils emv_decode_IAD tests 1–5.
        let ccd = hex("0FA526A83100000000000001500000000F240000000000000000000000000000");
        assert_eq!(IadFormat::of(&ccd, None), Some(IadFormat::Ccd));
        let mchip = hex("0110A04003223000000000001126980002FF");
        assert_eq!(IadFormat::of(&mchip, None), Some(IadFormat::MChip4));
        let adv = hex("0110A04203A20000000000000000000000FF00000000000000FF");
        assert_eq!(IadFormat::of(&adv, None), Some(IadFormat::MChipAdvance));
        let cvn18 = hex("06011203A000000F0300001030800000046920AE952C48");
        assert_eq!(IadFormat::of(&cvn18, None), Some(IadFormat::Vsdc013(1)));
        let f2 = hex("1F43FE82A0000000000000000003075300000000000000000000000000000000");
        assert_eq!(IadFormat::of(&f2, None), Some(IadFormat::Vsdc24(4)));
        let lines = describe(&cvn18, None).unwrap();
        assert!(
            lines.contains(&"Cryptogram Version Number (CVN): 12 (CVN18)".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"CVR: First GENERATE AC returned ARQC".to_owned()),
            "{lines:?}"
        );
        let lines = describe(&mchip, None).unwrap();
        assert!(
            lines.contains(&"CVR: First GENERATE AC returned ARQC".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"CVR: Domestic transaction".to_owned()),
            "{lines:?}"
        );
        assert_eq!(describe(&[1, 2, 3], None), None);
    }
}
