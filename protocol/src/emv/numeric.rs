//! Numeric (`n`) fields: BCD amounts, dates and times, ISO 4217 currencies and ISO 3166
//! countries.
//!
//! Money is integer minor units (`u64`) plus a currency; nothing here touches floats.

use core::fmt;

/// Why a numeric field did not decode. No variant carries the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumericError {
    /// A nibble above 9 at this nibble index.
    #[error("non-bcd nibble at index {index}")]
    NotBcd {
        /// Nibble index from the left (0 = high nibble of the first byte).
        index: usize,
    },
    /// The value does not fit (too many digits for `u64`, or for the field).
    #[error("numeric value out of range")]
    Overflow,
    /// The field has the wrong length.
    #[error("bad numeric field length {len}")]
    BadLength {
        /// The length found.
        len: usize,
    },
    /// A date or time field with an impossible month, day, hour, minute or second.
    #[error("invalid date or time")]
    InvalidDate,
}

/// Decodes BCD digits (format `n`) to an integer. Up to 19 digits fit a `u64`; leading zero
/// bytes beyond that are accepted.
pub fn bcd_to_u64(bytes: &[u8]) -> Result<u64, NumericError> {
    let mut acc: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        for (j, nibble) in [b >> 4, b & 0x0F].into_iter().enumerate() {
            if nibble > 9 {
                return Err(NumericError::NotBcd { index: i * 2 + j });
            }
            acc = acc
                .checked_mul(10)
                .and_then(|a| a.checked_add(u64::from(nibble)))
                .ok_or(NumericError::Overflow)?;
        }
    }
    Ok(acc)
}

/// Encodes `value` as right-justified BCD filling all of `out` (format `n`, left-padded with
/// zeros). Fails with [`NumericError::Overflow`] if it needs more than `2 * out.len()` digits.
pub fn u64_to_bcd(mut value: u64, out: &mut [u8]) -> Result<(), NumericError> {
    for byte in out.iter_mut().rev() {
        let lo = (value % 10) as u8;
        value /= 10;
        let hi = (value % 10) as u8;
        value /= 10;
        *byte = (hi << 4) | lo;
    }
    if value == 0 {
        Ok(())
    } else {
        Err(NumericError::Overflow)
    }
}

/// The largest amount an `n12` field holds.
pub const MAX_AMOUNT_N12: u64 = 999_999_999_999;

/// Decodes `9F02`/`9F03` (`n12`, 6 bytes) to minor units.
///
/// Tolerant of other lengths up to 10 bytes (some readers send shorter amounts), strict on
/// the digits.
pub fn parse_amount(bytes: &[u8]) -> Result<u64, NumericError> {
    if bytes.is_empty() || bytes.len() > 10 {
        return Err(NumericError::BadLength { len: bytes.len() });
    }
    bcd_to_u64(bytes)
}

/// Encodes minor units as `n12` (6 bytes) for `9F02`/`9F03`.
pub fn encode_amount(minor_units: u64) -> Result<[u8; 6], NumericError> {
    let mut out = [0u8; 6];
    u64_to_bcd(minor_units, &mut out)?;
    Ok(out)
}

/// Formats minor units with a decimal point at `exponent` digits: `(3250, 2)` → `"32.50"`.
/// Integer arithmetic only.
pub fn format_minor_units(minor_units: u64, exponent: u8) -> String {
    if exponent == 0 {
        return minor_units.to_string();
    }
    let digits = minor_units.to_string();
    let exp = usize::from(exponent);
    if digits.len() > exp {
        let (int, frac) = digits.split_at(digits.len() - exp);
        format!("{int}.{frac}")
    } else {
        format!("0.{digits:0>exp$}")
    }
}

/// A calendar date from a `YYMMDD` field (`9A`, `5F24`, `5F25`), validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Four-digit year.
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31, valid for the month.
    pub day: u8,
}

fn bcd2(b: u8, index: usize) -> Result<u8, NumericError> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    if hi > 9 {
        return Err(NumericError::NotBcd { index });
    }
    if lo > 9 {
        return Err(NumericError::NotBcd { index: index + 1 });
    }
    Ok(hi * 10 + lo)
}

const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// Parses `YYMMDD` (3 bytes BCD). Years `00`–`49` are 20YY, `50`–`99` are 19YY
    /// (the usual EMV terminal convention for two-digit years).
    pub fn parse(bytes: &[u8]) -> Result<Date, NumericError> {
        let [y, m, d] = bytes else {
            return Err(NumericError::BadLength { len: bytes.len() });
        };
        let (yy, month, day) = (bcd2(*y, 0)?, bcd2(*m, 2)?, bcd2(*d, 4)?);
        let year = if yy < 50 { 2000 } else { 1900 } + u16::from(yy);
        Date::new(year, month, day).ok_or(NumericError::InvalidDate)
    }

    /// A validated date; `None` for an impossible one.
    pub const fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if month == 0 || month > 12 || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Encodes as `YYMMDD` BCD.
    pub fn to_bcd(self) -> [u8; 3] {
        let yy = (self.year % 100) as u8;
        [bcd_byte(yy), bcd_byte(self.month), bcd_byte(self.day)]
    }
}

const fn bcd_byte(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

impl fmt::Display for Date {
    /// ISO 8601: `2021-03-03`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A time of day from `9F21` (`HHMMSS`), validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
}

impl Time {
    /// Parses `HHMMSS` (3 bytes BCD).
    pub fn parse(bytes: &[u8]) -> Result<Time, NumericError> {
        let [h, m, s] = bytes else {
            return Err(NumericError::BadLength { len: bytes.len() });
        };
        let (hour, minute, second) = (bcd2(*h, 0)?, bcd2(*m, 2)?, bcd2(*s, 4)?);
        if hour > 23 || minute > 59 || second > 59 {
            return Err(NumericError::InvalidDate);
        }
        Ok(Time {
            hour,
            minute,
            second,
        })
    }

    /// Encodes as `HHMMSS` BCD.
    pub fn to_bcd(self) -> [u8; 3] {
        [
            bcd_byte(self.hour),
            bcd_byte(self.minute),
            bcd_byte(self.second),
        ]
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// Decodes an `n3` code held in 2 bytes (`5F2A`, `9F42`, `5F28`, `9F1A`): `08 40` → 840.
pub fn parse_n3(bytes: &[u8]) -> Result<u16, NumericError> {
    if bytes.len() != 2 {
        return Err(NumericError::BadLength { len: bytes.len() });
    }
    let v = bcd_to_u64(bytes)?;
    u16::try_from(v)
        .ok()
        .filter(|v| *v <= 999)
        .ok_or(NumericError::Overflow)
}

/// Encodes an `n3` code in 2 bytes: 840 → `08 40`.
pub fn encode_n3(code: u16) -> Result<[u8; 2], NumericError> {
    if code > 999 {
        return Err(NumericError::Overflow);
    }
    let mut out = [0u8; 2];
    u64_to_bcd(u64::from(code), &mut out)?;
    Ok(out)
}

// The complete ISO tables, generated (`protocol/tools/gen_iso_tables.py`).
include!("iso_tables.rs");

/// An ISO 4217 currency: numeric code, alphabetic code, minor-unit exponent and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    /// ISO 4217 numeric code (840).
    pub numeric: u16,
    /// ISO 4217 alphabetic code (`"USD"`).
    pub alpha: &'static str,
    /// Number of minor-unit digits (2 for USD, 0 for JPY, 3 for BHD; 0 where ISO gives none).
    pub exponent: u8,
    /// ISO 4217 English name (`"US Dollar"`).
    pub name: &'static str,
}

impl Currency {
    /// The currency with ISO 4217 numeric `code`, if in the table.
    pub fn from_numeric(code: u16) -> Option<&'static Currency> {
        CURRENCIES
            .binary_search_by_key(&code, |c| c.numeric)
            .ok()
            .and_then(|i| CURRENCIES.get(i))
    }

    /// The currency with alphabetic `code` (case-insensitive), if in the table.
    pub fn from_alpha(code: &str) -> Option<&'static Currency> {
        CURRENCIES
            .iter()
            .find(|c| c.alpha.eq_ignore_ascii_case(code))
    }

    /// Decodes a 2-byte `n3` currency field (`5F2A`, `9F42`).
    pub fn from_bcd(bytes: &[u8]) -> Option<&'static Currency> {
        parse_n3(bytes).ok().and_then(Currency::from_numeric)
    }

    /// The `n3` encoding for `5F2A`.
    pub fn to_bcd(&self) -> [u8; 2] {
        // numeric <= 999 for every table entry.
        encode_n3(self.numeric).unwrap_or([0, 0])
    }

    /// Every ISO 4217 currency, sorted by numeric code.
    pub fn all() -> &'static [Currency] {
        CURRENCIES
    }
}

impl fmt::Display for Currency {
    /// `0840 USD US Dollar`: the numeric code as EMV carries it (`n3` in two bytes), then the
    /// alphabetic code and the name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04} {} {}", self.numeric, self.alpha, self.name)
    }
}

/// An ISO 3166-1 country: numeric, alpha-2 and alpha-3 codes and the common English name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country {
    /// ISO 3166-1 numeric (840).
    pub numeric: u16,
    /// ISO 3166-1 alpha-2 (`"US"`).
    pub alpha2: &'static str,
    /// ISO 3166-1 alpha-3 (`"USA"`).
    pub alpha3: &'static str,
    /// Common English name.
    pub name: &'static str,
}

impl Country {
    /// The country with ISO 3166-1 numeric `code`, if in the table.
    pub fn from_numeric(code: u16) -> Option<&'static Country> {
        COUNTRIES
            .binary_search_by_key(&code, |c| c.numeric)
            .ok()
            .and_then(|i| COUNTRIES.get(i))
    }

    /// The country with alpha-2 `code` (case-insensitive).
    pub fn from_alpha2(code: &str) -> Option<&'static Country> {
        COUNTRIES
            .iter()
            .find(|c| c.alpha2.eq_ignore_ascii_case(code))
    }

    /// Decodes a 2-byte `n3` country field (`5F28`, `9F1A`).
    pub fn from_bcd(bytes: &[u8]) -> Option<&'static Country> {
        parse_n3(bytes).ok().and_then(Country::from_numeric)
    }

    /// Every ISO 3166-1 country, sorted by numeric code.
    pub fn all() -> &'static [Country] {
        COUNTRIES
    }
}

impl fmt::Display for Country {
    /// `0840 US USA United States`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04} {} {} {}",
            self.numeric, self.alpha2, self.alpha3, self.name
        )
    }
}

/// An ISO 639-1 language, as `5F2D` Language Preference lists them (EMV Book 1 §11.3.1:
/// "1–4 languages stored in order of preference, each represented by 2 alphabetical
/// characters according to ISO 639").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Language {
    /// ISO 639-1 code, lower case (`"en"`).
    pub alpha2: &'static str,
    /// English name.
    pub name: &'static str,
}

impl Language {
    /// The language with ISO 639-1 `code` (case-insensitive: cards write `EN` as well as `en`).
    pub fn from_alpha2(code: &[u8]) -> Option<&'static Language> {
        let lower = [
            code.first()?.to_ascii_lowercase(),
            code.get(1)?.to_ascii_lowercase(),
        ];
        if code.len() != 2 {
            return None;
        }
        LANGUAGES
            .binary_search_by(|l| l.alpha2.as_bytes().cmp(&lower[..]))
            .ok()
            .and_then(|i| LANGUAGES.get(i))
    }

    /// Every ISO 639-1 language, sorted by code.
    pub fn all() -> &'static [Language] {
        LANGUAGES
    }
}

/// The description of an ISO 18245 merchant category code (`9F15`), if known.
pub fn mcc_description(code: u16) -> Option<&'static str> {
    MCC.binary_search_by_key(&code, |m| m.0)
        .ok()
        .and_then(|i| MCC.get(i))
        .map(|m| m.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amount_from_captured_start_transaction() {
        // vipa-protocol.md §5.1: 9F02 = 000000003250.
        assert_eq!(parse_amount(&[0, 0, 0, 0, 0x32, 0x50]), Ok(3250));
        assert_eq!(encode_amount(3250), Ok([0, 0, 0, 0, 0x32, 0x50]));
        assert_eq!(encode_amount(MAX_AMOUNT_N12), Ok([0x99; 6]));
        assert_eq!(
            encode_amount(MAX_AMOUNT_N12 + 1),
            Err(NumericError::Overflow)
        );
        assert_eq!(
            parse_amount(&[0, 0, 0, 0, 0x3A, 0x50]),
            Err(NumericError::NotBcd { index: 9 })
        );
        assert_eq!(parse_amount(&[]), Err(NumericError::BadLength { len: 0 }));
        assert_eq!(bcd_to_u64(&[0x99; 10]), Err(NumericError::Overflow));
    }

    #[test]
    fn minor_units_formatting() {
        assert_eq!(format_minor_units(3250, 2), "32.50");
        assert_eq!(format_minor_units(5, 2), "0.05");
        assert_eq!(format_minor_units(5, 3), "0.005");
        assert_eq!(format_minor_units(1234, 0), "1234");
        assert_eq!(format_minor_units(12345, 3), "12.345");
    }

    #[test]
    fn dates_from_capture() {
        // §5.1: 9A = 210303, 5F24 = 241231, 5F25 = 171101.
        let d = Date::parse(&[0x21, 0x03, 0x03]).unwrap();
        assert_eq!(d.to_string(), "2021-03-03");
        assert_eq!(
            Date::parse(&[0x24, 0x12, 0x31]).unwrap().to_string(),
            "2024-12-31"
        );
        assert_eq!(
            Date::parse(&[0x17, 0x11, 0x01]).unwrap().to_string(),
            "2017-11-01"
        );
        assert_eq!(d.to_bcd(), [0x21, 0x03, 0x03]);
        assert_eq!(Date::parse(&[0x99, 0x01, 0x01]).unwrap().year, 1999);
        assert_eq!(Date::parse(&[0x24, 0x02, 0x29]).unwrap().day, 29);
        assert_eq!(
            Date::parse(&[0x23, 0x02, 0x29]),
            Err(NumericError::InvalidDate)
        );
        assert_eq!(
            Date::parse(&[0x24, 0x13, 0x01]),
            Err(NumericError::InvalidDate)
        );
        assert_eq!(
            Date::parse(&[0x24, 0x04, 0x31]),
            Err(NumericError::InvalidDate)
        );
        assert_eq!(
            Date::parse(&[0x24, 0x00, 0x01]),
            Err(NumericError::InvalidDate)
        );
        assert_eq!(
            Date::parse(&[0x24, 0x1F, 0x01]),
            Err(NumericError::NotBcd { index: 3 })
        );
        assert_eq!(
            Date::parse(&[0x24, 0x12]),
            Err(NumericError::BadLength { len: 2 })
        );
    }

    #[test]
    fn time_from_capture() {
        // §5.1: 9F21 = 195724.
        let t = Time::parse(&[0x19, 0x57, 0x24]).unwrap();
        assert_eq!(t.to_string(), "19:57:24");
        assert_eq!(t.to_bcd(), [0x19, 0x57, 0x24]);
        assert_eq!(Time::parse(&[0x24, 0, 0]), Err(NumericError::InvalidDate));
    }

    #[test]
    fn currencies() {
        let usd = Currency::from_bcd(&[0x08, 0x40]).unwrap();
        assert_eq!((usd.alpha, usd.exponent), ("USD", 2));
        assert_eq!(Currency::from_numeric(392).unwrap().exponent, 0);
        assert_eq!(Currency::from_numeric(48).unwrap().alpha, "BHD");
        assert_eq!(Currency::from_numeric(48).unwrap().exponent, 3);
        assert_eq!(Currency::from_alpha("eur").unwrap().numeric, 978);
        assert_eq!(Currency::from_alpha("GBP").unwrap().to_bcd(), [0x08, 0x26]);
        for (num, alpha) in [
            (124, "CAD"),
            (36, "AUD"),
            (356, "INR"),
            (566, "NGN"),
            (404, "KES"),
            (710, "ZAR"),
            (784, "AED"),
            (682, "SAR"),
            (986, "BRL"),
            (484, "MXN"),
        ] {
            assert_eq!(Currency::from_numeric(num).unwrap().alpha, alpha);
            assert_eq!(Currency::from_alpha(alpha).unwrap().numeric, num);
        }
        assert!(Currency::from_numeric(123).is_none());
        assert!(Currency::from_bcd(&[0x08, 0x4A]).is_none());
        assert!(CURRENCIES.windows(2).all(|w| w[0].numeric < w[1].numeric));
    }

    #[test]
    fn countries() {
        assert_eq!(Country::from_bcd(&[0x08, 0x40]).unwrap().alpha2, "US");
        assert_eq!(Country::from_numeric(826).unwrap().name, "United Kingdom");
        assert_eq!(Country::from_alpha2("ke").unwrap().numeric, 404);
    }

    #[test]
    fn iso_tables_are_complete_and_sorted() {
        // ISO 3166-1 has 249 countries, ISO 4217 181 active currencies, ISO 639-1 184 codes.
        assert_eq!(Country::all().len(), 249);
        assert_eq!(Currency::all().len(), 181);
        assert_eq!(Language::all().len(), 184);
        assert!(Country::all()
            .windows(2)
            .all(|w| w[0].numeric < w[1].numeric));
        assert!(Currency::all()
            .windows(2)
            .all(|w| w[0].numeric < w[1].numeric));
        assert!(Language::all()
            .windows(2)
            .all(|w| w[0].alpha2 < w[1].alpha2));
        assert!(MCC.windows(2).all(|w| w[0].0 < w[1].0));
        let rub = Currency::from_numeric(643).unwrap();
        assert_eq!(rub.to_string(), "0643 RUB Russian Ruble");
        assert_eq!(Currency::from_alpha("BGN").unwrap().numeric, 975);
        assert_eq!(
            Currency::from_numeric(840).unwrap().to_string(),
            "0840 USD US Dollar"
        );
        assert_eq!(
            Country::from_numeric(840).unwrap().to_string(),
            "0840 US USA United States"
        );
        assert_eq!(Language::from_alpha2(b"EN").unwrap().name, "English");
        assert_eq!(Language::from_alpha2(b"fr").unwrap().name, "French");
        assert!(Language::from_alpha2(b"\xFF\xFF").is_none());
        assert!(Language::from_alpha2(b"e").is_none());
        assert_eq!(
            mcc_description(5999),
            Some("Miscellaneous and Specialty Retail Stores")
        );
        assert!(COUNTRIES.windows(2).all(|w| w[0].numeric < w[1].numeric));
        assert_eq!(encode_n3(840), Ok([0x08, 0x40]));
        assert_eq!(encode_n3(1000), Err(NumericError::Overflow));
    }

    proptest! {
        #[test]
        fn amount_round_trips(v in 0u64..=MAX_AMOUNT_N12) {
            let enc = encode_amount(v).unwrap();
            prop_assert_eq!(parse_amount(&enc), Ok(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = parse_amount(&b);
            let _ = bcd_to_u64(&b);
            let _ = Date::parse(&b);
            let _ = Time::parse(&b);
            let _ = parse_n3(&b);
            let _ = Currency::from_bcd(&b);
        }

        #[test]
        fn valid_dates_round_trip(y in 0u16..100, m in 1u8..=12, d in 1u8..=28) {
            let date = Date::new(2000 + y % 50, m, d).unwrap();
            prop_assert_eq!(Date::parse(&date.to_bcd()), Ok(date));
        }
    }
}
