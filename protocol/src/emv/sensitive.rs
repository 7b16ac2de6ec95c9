//! Cardholder data: wrappers that mask themselves in `Debug`/`Display` and zeroize on drop,
//! and mask helpers for the CLI and logs.
//!
//! The clear value is reachable only through explicitly named accessors (`reveal`,
//! `as_str`), so a `{:?}` in a log line cannot leak it. Errors carry positions, never digits.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::tlv::Tag;

/// Why a PAN or track could not be read. No variant carries card digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardDataError {
    /// A character or nibble that is not a digit at this position.
    #[error("non-digit at position {index}")]
    NonDigit {
        /// Digit position (0-based).
        index: usize,
    },
    /// A PAN shorter than 8 or longer than 19 digits (ISO/IEC 7812-1).
    #[error("pan length {len} out of range")]
    PanLength {
        /// The length found.
        len: usize,
    },
    /// Track 2 without the `D`/`=` field separator.
    #[error("track 2 field separator missing")]
    NoSeparator,
    /// Track 2 too short after the separator (needs YYMM and a service code).
    #[error("track 2 truncated after the separator")]
    TrackTruncated,
    /// Track 2 longer than 37 characters (ISO/IEC 7813).
    #[error("track 2 too long")]
    TrackTooLong,
}

/// The maximum PAN length (ISO/IEC 7812-1).
pub const MAX_PAN_DIGITS: usize = 19;
/// The minimum PAN length accepted.
pub const MIN_PAN_DIGITS: usize = 8;

/// A primary account number: 8–19 ASCII digits in a fixed buffer (no heap), zeroized on drop.
///
/// `Debug` and `Display` print `411111******1111`; use [`Pan::reveal`] where the clear value
/// is required (a gateway request), and nowhere else.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pan {
    digits: [u8; MAX_PAN_DIGITS],
    len: u8,
}

impl Pan {
    fn from_digit_iter(
        iter: impl Iterator<Item = Result<u8, CardDataError>>,
    ) -> Result<Pan, CardDataError> {
        let mut pan = Pan {
            digits: [0; MAX_PAN_DIGITS],
            len: 0,
        };
        for (i, d) in iter.enumerate() {
            let d = d?;
            let slot = pan
                .digits
                .get_mut(i)
                .ok_or(CardDataError::PanLength { len: i + 1 })?;
            *slot = d;
            pan.len += 1;
        }
        if usize::from(pan.len) < MIN_PAN_DIGITS {
            return Err(CardDataError::PanLength {
                len: usize::from(pan.len),
            });
        }
        Ok(pan)
    }

    /// From ASCII digits (spaces and dashes are not accepted: callers strip them).
    pub fn parse(s: &str) -> Result<Pan, CardDataError> {
        if s.len() > MAX_PAN_DIGITS {
            return Err(CardDataError::PanLength { len: s.len() });
        }
        Pan::from_digit_iter(s.bytes().enumerate().map(|(i, b)| {
            if b.is_ascii_digit() {
                Ok(b)
            } else {
                Err(CardDataError::NonDigit { index: i })
            }
        }))
    }

    /// From the `5A` value: `cn` BCD, padded on the right with `F` nibbles.
    ///
    /// A reader-masked value (nibbles `A`, as VIPA sends with SRED on) is not a PAN and
    /// fails with [`CardDataError::NonDigit`]; show it with [`masked_value`] instead.
    pub fn from_bcd(bytes: &[u8]) -> Result<Pan, CardDataError> {
        let n = cn_digit_count(bytes)?;
        Pan::from_digit_iter(nibbles(bytes).take(n).map(|(_, d)| Ok(b'0' + d)))
    }

    /// The clear digits. Call only where the clear PAN must leave the process.
    pub fn reveal(&self) -> &str {
        core::str::from_utf8(self.digits.get(..usize::from(self.len)).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Alias of [`Pan::reveal`].
    pub fn as_str(&self) -> &str {
        self.reveal()
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false (a `Pan` has at least 8 digits); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last four digits, for receipts and logs.
    pub fn last4(&self) -> &str {
        let s = self.reveal();
        s.get(s.len().saturating_sub(4)..).unwrap_or_default()
    }

    /// The first six digits (the BIN / IIN), for routing.
    pub fn bin(&self) -> &str {
        self.reveal().get(..6).unwrap_or_default()
    }

    /// Whether the Luhn (mod 10) check digit is right.
    pub fn luhn_valid(&self) -> bool {
        luhn_valid(self.reveal())
    }

    /// The card scheme guessed from the leading digits (for display only).
    pub fn brand(&self) -> Option<&'static str> {
        let s = self.reveal();
        let p2: u32 = s.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
        let p4: u32 = s.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
        match (s.as_bytes().first(), p2, p4) {
            (Some(b'4'), _, _) => Some("Visa"),
            (_, 51..=55, _) | (_, _, 2221..=2720) => Some("Mastercard"),
            (_, 34 | 37, _) => Some("American Express"),
            (_, 65, _) | (_, _, 6011) => Some("Discover"),
            (_, 35, _) => Some("JCB"),
            (_, 62, _) => Some("UnionPay"),
            _ => None,
        }
    }

    /// The `5A` encoding: BCD, padded with a trailing `F` for an odd length.
    pub fn to_bcd(&self) -> Vec<u8> {
        self.reveal()
            .as_bytes()
            .chunks(2)
            .map(|c| {
                let hi = c.first().map_or(0xF, |d| d - b'0');
                let lo = c.get(1).map_or(0xF, |d| d - b'0');
                (hi << 4) | lo
            })
            .collect()
    }
}

impl PartialEq for Pan {
    fn eq(&self, other: &Self) -> bool {
        self.reveal() == other.reveal()
    }
}
impl Eq for Pan {}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", mask_pan_digits(self.reveal()))
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_pan_digits(self.reveal()))
    }
}

impl core::str::FromStr for Pan {
    type Err = CardDataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pan::parse(s)
    }
}

/// The Luhn mod-10 check over ASCII digits; false for any non-digit or fewer than 2 digits.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `digits` could be a payment card number: 13 to 19 ASCII digits in an issuer range
/// the schemes use (ISO/IEC 7812 major industries 2–6: Mastercard 2221–2720 and 51–55, Amex
/// 34/37, Diners/JCB 30/35/36/38, Visa 4, Discover/UnionPay/Maestro 5x/6) that pass Luhn.
/// What free text (a POS reference, a log line) is checked against before it is kept.
pub fn card_number_like(digits: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(digits) else {
        return false;
    };
    if !(13..=19).contains(&digits.len()) || !luhn_valid(text) {
        return false;
    }
    let prefix = |k: usize| {
        text.get(..k)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    match digits[0] {
        b'2' => (2221..=2720).contains(&prefix(4)),
        b'3' => matches!(prefix(2), 30 | 34..=38),
        b'4' | b'6' => true,
        b'5' => (50..=59).contains(&prefix(2)),
        _ => false,
    }
}

/// Nibbles of `bytes`, high first, with their index.
fn nibbles(bytes: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]).enumerate()
}

/// Number of digits of a `cn` value: digits then only `F` padding.
fn cn_digit_count(bytes: &[u8]) -> Result<usize, CardDataError> {
    let mut n = None;
    for (i, d) in nibbles(bytes) {
        match (d, n) {
            (0..=9, None) => {}
            (0xF, None) => n = Some(i),
            (0xF, Some(_)) => {}
            _ => return Err(CardDataError::NonDigit { index: i }),
        }
    }
    Ok(n.unwrap_or(bytes.len() * 2))
}

/// Masks a digit string for display: first 6 and last 4 kept, the rest `*`
/// (`4111111111111111` → `411111******1111`). Strings of 12 digits or fewer keep only
/// the last 4, so that no more than half of a short number shows; 4 or fewer are all `*`.
/// Non-digits pass through unchanged and do not count as digits.
pub fn mask_pan_digits(s: &str) -> String {
    let n = s.bytes().filter(u8::is_ascii_digit).count();
    let mut i = 0;
    s.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            let shown = pan_digit_shown(i, n);
            i += 1;
            if shown {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The one masking rule: whether digit `i` (0-based) of an `n`-digit PAN stays clear.
/// First 6 and last 4 from 13 digits on, only the last 4 from 5 to 12, none below.
fn pan_digit_shown(i: usize, n: usize) -> bool {
    let (head, tail) = match n {
        0..=4 => (0, 0),
        5..=12 => (0, 4),
        _ => (6, 4),
    };
    i < head || i + tail >= n
}

/// Masks a BCD PAN (`5A`) or track 2 (`57`, `9F6B`) the way a VIPA reader with SRED on sends
/// them (vipa-protocol.md §5.1: `5A` = `374245AAAAA1006F`): same length, each hidden PAN
/// digit (by the rule of [`mask_pan_digits`]) replaced by nibble `A`; in a track, the
/// separator, the expiry and the service code kept and every later digit `A`; `F` padding
/// kept. Nibbles already `A` count as PAN digits, so masking twice changes nothing.
pub fn mask_bcd_pan(value: &[u8]) -> Vec<u8> {
    let nib = |i: usize| {
        let b = value.get(i / 2).copied().unwrap_or(0xFF);
        if i.is_multiple_of(2) {
            b >> 4
        } else {
            b & 0x0F
        }
    };
    let count = value.len() * 2;
    let pan_len = (0..count)
        .take_while(|&i| nib(i) <= 9 || nib(i) == 0xA)
        .count();
    let masked = |i: usize| {
        let d = nib(i);
        let hide = if i < pan_len {
            !pan_digit_shown(i, pan_len)
        } else {
            // After the separator: YYMM and the service code (7 digits), then discretionary.
            i > pan_len + 7 && d <= 9
        };
        if hide {
            0xA
        } else {
            d
        }
    };
    (0..value.len())
        .map(|b| (masked(2 * b) << 4) | masked(2 * b + 1))
        .collect()
}

/// The maximum track 2 length in characters (ISO/IEC 7813), hence 19 bytes of `57`.
pub const MAX_TRACK2_CHARS: usize = 37;

/// Track 2 (`57` Track 2 Equivalent Data, `9F6B`, or ASCII track 2): PAN, `D` separator,
/// expiry YYMM, service code, discretionary data. Held in a fixed buffer, zeroized on drop;
/// `Debug` shows only the masked PAN.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Track2 {
    /// ASCII: digits, with `D` as the separator.
    chars: [u8; MAX_TRACK2_CHARS],
    len: u8,
    sep: u8,
}

impl Track2 {
    /// From the `57` value: BCD nibbles, separator nibble `D`, trailing `F` padding.
    pub fn from_bcd(bytes: &[u8]) -> Result<Track2, CardDataError> {
        let mut t = Track2 {
            chars: [0; MAX_TRACK2_CHARS],
            len: 0,
            sep: 0,
        };
        let mut padded = false;
        for (i, d) in nibbles(bytes) {
            let c = match d {
                0..=9 if !padded => b'0' + d,
                0xD if !padded => b'D',
                0xF => {
                    padded = true;
                    continue;
                }
                _ => return Err(CardDataError::NonDigit { index: i }),
            };
            t.push(c)?;
        }
        t.finish()
    }

    /// From ASCII track 2 (`;4111…=2812…?` with or without sentinels; `=` or `D` separator).
    pub fn from_ascii(s: &str) -> Result<Track2, CardDataError> {
        let s = s.strip_prefix(';').unwrap_or(s);
        let s = s.split('?').next().unwrap_or_default();
        let mut t = Track2 {
            chars: [0; MAX_TRACK2_CHARS],
            len: 0,
            sep: 0,
        };
        for (i, b) in s.bytes().enumerate() {
            let c = match b {
                b'0'..=b'9' => b,
                b'=' | b'D' | b'd' => b'D',
                _ => return Err(CardDataError::NonDigit { index: i }),
            };
            t.push(c)?;
        }
        t.finish()
    }

    fn push(&mut self, c: u8) -> Result<(), CardDataError> {
        let slot = self
            .chars
            .get_mut(usize::from(self.len))
            .ok_or(CardDataError::TrackTooLong)?;
        *slot = c;
        self.len += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<Track2, CardDataError> {
        let s = self.as_bytes();
        let sep = s
            .iter()
            .position(|c| *c == b'D')
            .ok_or(CardDataError::NoSeparator)?;
        if let Some(i) = s
            .get(sep + 1..)
            .and_then(|r| r.iter().position(|c| *c == b'D'))
        {
            return Err(CardDataError::NonDigit { index: sep + 1 + i });
        }
        if !(MIN_PAN_DIGITS..=MAX_PAN_DIGITS).contains(&sep) {
            return Err(CardDataError::PanLength { len: sep });
        }
        if s.len() < sep + 1 + 4 + 3 {
            return Err(CardDataError::TrackTruncated);
        }
        self.sep = sep as u8;
        Ok(self)
    }

    fn as_bytes(&self) -> &[u8] {
        self.chars.get(..usize::from(self.len)).unwrap_or_default()
    }

    fn field(&self, from: usize, to: Option<usize>) -> &str {
        let b = self.as_bytes();
        let b = match to {
            Some(to) => b.get(from..to),
            None => b.get(from..),
        };
        core::str::from_utf8(b.unwrap_or_default()).unwrap_or_default()
    }

    /// The PAN.
    pub fn pan(&self) -> Pan {
        // `finish` checked the length and that these are digits.
        Pan::parse(self.field(0, Some(usize::from(self.sep)))).unwrap_or(Pan {
            digits: [0; MAX_PAN_DIGITS],
            len: 0,
        })
    }

    /// Expiry as `(YY, MM)` digits (`"2812"` → `(28, 12)`); not validated as a month.
    pub fn expiry(&self) -> (u8, u8) {
        let s = self.field(usize::from(self.sep) + 1, Some(usize::from(self.sep) + 5));
        let yy = s.get(0..2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mm = s.get(2..4).and_then(|v| v.parse().ok()).unwrap_or(0);
        (yy, mm)
    }

    /// The three service-code digits.
    pub fn service_code(&self) -> super::bits::ServiceCode {
        let s = self.field(usize::from(self.sep) + 5, Some(usize::from(self.sep) + 8));
        super::bits::ServiceCode::from_ascii(s.as_bytes())
            .unwrap_or(super::bits::ServiceCode([0; 3]))
    }

    /// The discretionary data (digits). Sensitive: may hold a CVV/iCVV.
    pub fn reveal_discretionary(&self) -> &str {
        self.field(usize::from(self.sep) + 8, None)
    }

    /// The whole track, ASCII with `=` as the separator, as gateways want it. Clear data.
    pub fn reveal_ascii(&self) -> String {
        self.as_bytes()
            .iter()
            .map(|c| if *c == b'D' { '=' } else { char::from(*c) })
            .collect()
    }

    /// The `57` encoding (Track 2 Equivalent Data, format `b`): one nibble per character,
    /// `D` for the separator, padded with a trailing `F` to whole bytes. Clear data.
    pub fn to_bcd(&self) -> Vec<u8> {
        let nibble = |c: u8| {
            if c == b'D' {
                0xD
            } else {
                c.wrapping_sub(b'0') & 0x0F
            }
        };
        self.as_bytes()
            .chunks(2)
            .map(|c| {
                let hi = c.first().map_or(0xF, |d| nibble(*d));
                let lo = c.get(1).map_or(0xF, |d| nibble(*d));
                (hi << 4) | lo
            })
            .collect()
    }

    /// Masked for display: PAN first 6 / last 4, `D`, the rest `*`.
    pub fn masked(&self) -> String {
        let pan = mask_pan_digits(self.field(0, Some(usize::from(self.sep))));
        let rest = usize::from(self.len) - usize::from(self.sep) - 1;
        format!("{pan}D{}", "*".repeat(rest))
    }
}

impl PartialEq for Track2 {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Track2 {}

impl fmt::Debug for Track2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Track2({})", self.masked())
    }
}

/// A secret of any zeroizable type (key, PIN block, CVV): `Debug` prints only the type name,
/// the value is zeroized on drop, and [`Sensitive::reveal`] is the one way in.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sensitive<T: Zeroize>(T);

impl<T: Zeroize> Sensitive<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The clear value.
    pub fn reveal(&self) -> &T {
        &self.0
    }

    /// The clear value, mutably.
    pub fn reveal_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Sensitive<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> ZeroizeOnDrop for Sensitive<T> {}

impl<T: Zeroize> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Sensitive(value)
    }
}

impl<T: Zeroize> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sensitive(<redacted>)")
    }
}

/// Secret bytes: PIN blocks, keys, KSN-bound material.
pub type SecretBytes = Sensitive<Vec<u8>>;

impl SecretBytes {
    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Sensitive(bytes.to_vec())
    }

    /// Number of bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a BCD value contains the mask nibbles a reader puts in place of digits
/// (VIPA with SRED on sends `374245AAAAA1006F`): such values are already masked.
fn reader_masked(bytes: &[u8]) -> bool {
    nibbles(bytes).any(|(_, d)| (0xA..=0xC).contains(&d) || d == 0xE)
}

fn hex_nibbles(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A display form of the value of a sensitive tag ([`Tag::is_sensitive`]); `None` for a
/// tag that is not sensitive (show its value as usual).
///
/// - `5A`, `57`, `9F6B`: digits with the PAN as first 6 / last 4 and everything after the
///   separator `*`. A value the reader already masked (nibbles `A`) is shown as it is.
/// - ASCII tracks (`56`, `DFDB05`, `DFDB06`) and manual PAN (`DFDB01`): the first run of
///   digits as first 6 / last 4, every later digit or letter `*`; reader mask bytes `AA` show
///   as `*`.
/// - Anything else sensitive (names, PIN blocks, CVV, discretionary data): `<masked, N bytes>`.
pub fn masked_value(tag: Tag, value: &[u8]) -> Option<String> {
    if !tag.is_sensitive() {
        return None;
    }
    Some(match tag {
        Tag::PAN | Tag::TRACK2_EQUIVALENT | Tag::TRACK2_DATA => {
            if reader_masked(value) {
                let s = hex_nibbles(value);
                s.trim_end_matches('F').to_owned()
            } else {
                let s = hex_nibbles(value);
                let s = s.trim_end_matches('F');
                match s.split_once('D') {
                    Some((pan, rest)) => {
                        format!("{}D{}", mask_pan_digits(pan), "*".repeat(rest.len()))
                    }
                    None => mask_pan_digits(s),
                }
            }
        }
        Tag::TRACK1_DATA
        | Tag::VIPA_MASKED_TRACK1
        | Tag::VIPA_MASKED_TRACK2
        | Tag::VIPA_MANUAL_PAN => mask_ascii_track(value),
        _ => format!("<masked, {} bytes>", value.len()),
    })
}

/// Masks ASCII track-like data: the first run of 8+ digits (the PAN) as first 6 / last 4;
/// after it, digits and letters become `*`; non-printable bytes are `*`.
fn mask_ascii_track(value: &[u8]) -> String {
    let printable = |b: u8| {
        if (0x20..0x7F).contains(&b) {
            char::from(b)
        } else {
            '*'
        }
    };
    // Find the PAN: the first run of at least 8 digits.
    let mut start = None;
    let mut i = 0;
    while i < value.len() {
        let run = value
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if run >= MIN_PAN_DIGITS {
            start = Some((i, i + run));
            break;
        }
        i += run.max(1);
    }
    let Some((s, e)) = start else {
        // No clear PAN: mask every digit.
        return value
            .iter()
            .map(|b| {
                if b.is_ascii_digit() {
                    '*'
                } else {
                    printable(*b)
                }
            })
            .collect();
    };
    let mut out: String = value
        .get(..s)
        .unwrap_or_default()
        .iter()
        .map(|b| printable(*b))
        .collect();
    let pan: String = value
        .get(s..e)
        .unwrap_or_default()
        .iter()
        .map(|b| char::from(*b))
        .collect();
    out.push_str(&mask_pan_digits(&pan));
    out.extend(value.get(e..).unwrap_or_default().iter().map(|b| {
        if b.is_ascii_alphanumeric() {
            '*'
        } else {
            printable(*b)
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GATEWAY_TEST_PANS: &[&str] = &[
        "4111111111111111",
        "4012000098765439",
        "4012881888818888",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4005520000000939",
        "5405001111111116",
        "6011208701111117",
        "375987654111116",
    ];

    #[test]
    fn luhn_on_gateway_test_pans() {
        for p in GATEWAY_TEST_PANS {
            assert!(luhn_valid(p), "{p}");
            assert!(Pan::parse(p).unwrap().luhn_valid());
        }
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("378282246310006"));
        assert!(!luhn_valid("41111111111a1111"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn pan_masks_in_debug_and_display() {
        let pan = Pan::parse("4111111111111111").unwrap();
        assert_eq!(format!("{pan}"), "411111******1111");
        assert_eq!(format!("{pan:?}"), "Pan(411111******1111)");
        assert_eq!(pan.last4(), "1111");
        assert_eq!(pan.bin(), "411111");
        assert_eq!(pan.reveal(), "4111111111111111");
        assert_eq!(pan.brand(), Some("Visa"));
        let amex = Pan::parse("378282246310005").unwrap();
        assert_eq!(amex.to_string(), "378282*****0005");
        assert_eq!(format!("{amex:?}"), "Pan(378282*****0005)");
        assert_eq!(amex.brand(), Some("American Express"));
        assert_eq!(
            Pan::parse("5555555555554444").unwrap().brand(),
            Some("Mastercard")
        );
    }

    #[test]
    fn pan_from_bcd() {
        let pan = Pan::from_bcd(&[0x37, 0x82, 0x82, 0x24, 0x63, 0x10, 0x00, 0x5F]).unwrap();
        assert_eq!(pan.reveal(), "378282246310005");
        assert_eq!(
            pan.to_bcd(),
            [0x37, 0x82, 0x82, 0x24, 0x63, 0x10, 0x00, 0x5F]
        );
        let visa = Pan::from_bcd(&[0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]).unwrap();
        assert_eq!(visa.len(), 16);
        // The reader-masked 5A of the captured E2 (§5.1) is not a PAN.
        assert_eq!(
            Pan::from_bcd(&[0x37, 0x42, 0x45, 0xAA, 0xAA, 0xA1, 0x00, 0x6F]),
            Err(CardDataError::NonDigit { index: 6 })
        );
        // A digit after F padding is refused.
        assert!(Pan::from_bcd(&[0x41, 0x11, 0x11, 0x11, 0xF1]).is_err());
        assert_eq!(
            Pan::parse("1234567"),
            Err(CardDataError::PanLength { len: 7 })
        );
        assert_eq!(
            Pan::parse("12345678901234567890"),
            Err(CardDataError::PanLength { len: 20 })
        );
    }

    #[test]
    fn errors_never_contain_digits() {
        let e = Pan::parse("41111111x1111111").unwrap_err();
        assert_eq!(e.to_string(), "non-digit at position 8");
        assert!(!format!("{e:?}").contains("4111"));
    }

    #[test]
    fn track2_from_57() {
        // 4111111111111111 D 2812 101 1234500000 F
        let v = [
            0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xD2, 0x81, 0x21, 0x01, 0x12, 0x34,
            0x50, 0x00, 0x0F,
        ];
        let t = Track2::from_bcd(&v).unwrap();
        assert_eq!(t.pan().reveal(), "4111111111111111");
        assert_eq!(t.expiry(), (28, 12));
        assert_eq!(t.service_code().to_string(), "101");
        assert_eq!(t.reveal_discretionary(), "123450000");
        assert_eq!(t.reveal_ascii(), "4111111111111111=2812101123450000");
        assert_eq!(t.to_bcd(), v);
        let odd = Track2::from_ascii("378282246310005=25122010000001234").unwrap();
        assert_eq!(
            odd.to_bcd(),
            [
                0x37, 0x82, 0x82, 0x24, 0x63, 0x10, 0x00, 0x5D, 0x25, 0x12, 0x20, 0x10, 0x00, 0x00,
                0x01, 0x23, 0x4F
            ]
        );
        assert_eq!(
            format!("{t:?}"),
            "Track2(411111******1111D****************)"
        );
        assert!(!format!("{t:?}").contains("2812"));
        // ASCII with sentinels.
        let a = Track2::from_ascii(";4012000098765439=28121011234500000?").unwrap();
        assert_eq!(a.pan().last4(), "5439");
        assert_eq!(a.expiry(), (28, 12));
        // Errors.
        assert_eq!(
            Track2::from_ascii("4111111111111111"),
            Err(CardDataError::NoSeparator)
        );
        assert_eq!(
            Track2::from_ascii("4111111111111111=281"),
            Err(CardDataError::TrackTruncated)
        );
        assert!(Track2::from_bcd(&[0x37, 0x42, 0x45, 0xAA, 0xAA, 0xA1, 0x00, 0x6D, 0x24]).is_err());
        assert_eq!(
            Track2::from_ascii(&"4".repeat(38)),
            Err(CardDataError::TrackTooLong)
        );
    }

    #[test]
    fn mask_helpers() {
        assert_eq!(mask_pan_digits("5555555555554444"), "555555******4444");
        assert_eq!(
            mask_pan_digits("4111-1111-1111-1111"),
            "4111-11**-****-1111"
        );
        assert_eq!(mask_pan_digits("123456789"), "*****6789");
        assert_eq!(mask_pan_digits("1234"), "****");
        assert_eq!(mask_pan_digits(""), "");
    }

    #[test]
    fn bcd_masks_like_the_reader() {
        // The captured E2 (vipa-protocol.md §5.1): 5A 374245AAAAA1006F.
        let pan = [0x37, 0x42, 0x45, 0x00, 0x17, 0x51, 0x00, 0x6F];
        let masked = [0x37, 0x42, 0x45, 0xAA, 0xAA, 0xA1, 0x00, 0x6F];
        assert_eq!(mask_bcd_pan(&pan), masked);
        assert_eq!(mask_bcd_pan(&masked), masked);
        // Track 2: expiry and service code kept, discretionary data hidden, F kept.
        let t2 = [
            0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xD2, 0x81, 0x22, 0x01, 0x12, 0x34,
            0x5F,
        ];
        assert_eq!(
            mask_bcd_pan(&t2),
            [
                0x41, 0x11, 0x11, 0xAA, 0xAA, 0xAA, 0x11, 0x11, 0xD2, 0x81, 0x22, 0x01, 0xAA, 0xAA,
                0xAF
            ]
        );
        // Short numbers follow the same rule as mask_pan_digits.
        assert_eq!(
            mask_bcd_pan(&[0x12, 0x34, 0x56, 0x78, 0x9F]),
            [0xAA, 0xAA, 0xA6, 0x78, 0x9F]
        );
        assert_eq!(mask_bcd_pan(&[]), Vec::<u8>::new());
    }

    #[test]
    fn masked_values_by_tag() {
        let pan = [0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
        assert_eq!(masked_value(Tag::PAN, &pan).unwrap(), "411111******1111");
        let amex = [0x37, 0x82, 0x82, 0x24, 0x63, 0x10, 0x00, 0x5F];
        assert_eq!(masked_value(Tag::PAN, &amex).unwrap(), "378282*****0005");
        // Captured E2 (§5.1): reader-masked 5A and 57 are shown as they are.
        let masked_5a = [0x37, 0x42, 0x45, 0xAA, 0xAA, 0xA1, 0x00, 0x6F];
        assert_eq!(
            masked_value(Tag::PAN, &masked_5a).unwrap(),
            "374245AAAAA1006"
        );
        let masked_57 = [
            0x37, 0x42, 0x45, 0xAA, 0xAA, 0xA1, 0x00, 0x6D, 0x24, 0x12, 0x20, 0x1A, 0xAA, 0xAA,
            0xAA, 0xAA, 0xAA, 0xAA, 0xAA,
        ];
        assert_eq!(
            masked_value(Tag::TRACK2_EQUIVALENT, &masked_57).unwrap(),
            "374245AAAAA1006D2412201AAAAAAAAAAAAAAA"
        );
        let t2 = [
            0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xD2, 0x81, 0x21, 0x01, 0x1F,
        ];
        assert_eq!(
            masked_value(Tag::TRACK2_EQUIVALENT, &t2).unwrap(),
            "411111******1111D********"
        );
        let t1 = b"%B4111111111111111^DOE/JOHN^28121010000000000000?";
        let m = masked_value(Tag::TRACK1_DATA, t1).unwrap();
        assert_eq!(m, "%B411111******1111^***/****^********************?");
        assert_eq!(
            masked_value(Tag::PIN_DATA, &[1; 8]).unwrap(),
            "<masked, 8 bytes>"
        );
        assert_eq!(
            masked_value(Tag::CARDHOLDER_NAME, b"DOE/JOHN").unwrap(),
            "<masked, 8 bytes>"
        );
        assert_eq!(masked_value(Tag::AMOUNT_AUTHORISED, &[0; 6]), None);
    }

    #[test]
    fn secret_bytes_redact() {
        let s = SecretBytes::from_slice(&[0x12, 0x34, 0x56]);
        assert_eq!(format!("{s:?}"), "Sensitive(<redacted>)");
        assert_eq!(s.reveal(), &[0x12, 0x34, 0x56]);
        assert_eq!(s.len(), 3);
        let mut z = Sensitive::new(vec![1u8, 2, 3]);
        z.reveal_mut().zeroize();
        assert!(z.reveal().is_empty());
    }

    proptest! {
        #[test]
        fn card_parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = Pan::from_bcd(&b);
            if let Ok(t) = Track2::from_bcd(&b) {
                let _ = (t.pan(), t.expiry(), t.service_code(), t.masked());
            }
            let s = String::from_utf8_lossy(&b);
            let _ = Pan::parse(&s);
            let _ = Track2::from_ascii(&s);
            let _ = mask_pan_digits(&s);
            for tag in [Tag::PAN, Tag::TRACK2_EQUIVALENT, Tag::TRACK1_DATA, Tag::VIPA_MASKED_TRACK2, Tag::PIN_DATA] {
                let _ = masked_value(tag, &b);
            }
        }

        #[test]
        fn bcd_mask_is_total_and_idempotent(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let m = mask_bcd_pan(&b);
            prop_assert_eq!(m.len(), b.len());
            prop_assert_eq!(mask_bcd_pan(&m), m);
        }

        #[test]
        fn bcd_mask_agrees_with_the_digit_mask(p in "[0-9]{8,19}") {
            let bcd = Pan::parse(&p).unwrap().to_bcd();
            let shown: String = mask_bcd_pan(&bcd)
                .iter()
                .flat_map(|b| [b >> 4, b & 0x0F])
                .take(p.len())
                .map(|d| if d == 0xA { '*' } else { char::from(b'0' + d) })
                .collect();
            prop_assert_eq!(shown, mask_pan_digits(&p));
        }

        #[test]
        fn masked_pan_never_shows_middle(p in "[0-9]{13,19}") {
            let m = mask_pan_digits(&p);
            prop_assert_eq!(m.len(), p.len());
            prop_assert_eq!(&m[..6], &p[..6]);
            prop_assert_eq!(&m[p.len() - 4..], &p[p.len() - 4..]);
            prop_assert!(m[6..p.len() - 4].chars().all(|c| c == '*'));
        }

        #[test]
        fn track2_bcd_round_trip(p in "[0-9]{8,19}", rest in "[0-9]{7,17}") {
            let t = Track2::from_ascii(&format!("{p}={rest}")).unwrap();
            let bcd = t.to_bcd();
            prop_assert_eq!(bcd.len(), (p.len() + 1 + rest.len()).div_ceil(2));
            prop_assert_eq!(Track2::from_bcd(&bcd).unwrap(), t);
        }

        #[test]
        fn pan_bcd_round_trip(p in "[0-9]{8,19}") {
            let pan = Pan::parse(&p).unwrap();
            let back = Pan::from_bcd(&pan.to_bcd()).unwrap();
            prop_assert_eq!(back.reveal(), p.as_str());
        }
    }
}
