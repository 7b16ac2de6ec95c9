//! Decimal amounts on the wire ↔ integer minor units inside, by integer arithmetic only (an
//! amount is never a float). Minor-unit exponents come from the ISO 4217 table of the
//! protocol crate ([`Currency`]).

use emvbridge_protocol::emv::numeric::format_minor_units;
use emvbridge_protocol::emv::Currency;

/// Minor-unit exponent of an ISO 4217 alphabetic code, as spelled (upper case) in the
/// protocol crate's table; 2 for a code the table does not have.
pub fn exponent(currency: &str) -> u32 {
    Currency::from_alpha(currency)
        .filter(|c| c.alpha == currency)
        .map_or(2, |c| u32::from(c.exponent))
}

/// Parses a decimal text (`"47.77"`, `"100"`, `"1e2"` is refused) into minor units.
/// Refuses negatives, more fraction digits than the currency has, and overflow.
pub fn parse_decimal(text: &str, exp: u32) -> Option<i64> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() || int.len() > 15 || frac.len() > exp as usize {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = int.parse().ok()?;
    for _ in 0..exp {
        v = v.checked_mul(10)?;
    }
    if !frac.is_empty() {
        let mut f: i64 = frac.parse().ok()?;
        for _ in frac.len()..exp as usize {
            f *= 10;
        }
        v = v.checked_add(f)?;
    }
    Some(v)
}

/// A JSON number (or numeric string) as minor units. serde_json prints floats in their
/// shortest round-trip form, so `47.77` arrives as the text `47.77`.
pub fn from_json(v: &serde_json::Value, exp: u32) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => {
            let s = n.to_string();
            // `100.0` is how serde_json prints a float that happens to be integral.
            let s = s.strip_suffix(".0").unwrap_or(&s);
            parse_decimal(s, exp)
        }
        serde_json::Value::String(s) => parse_decimal(s.trim(), exp),
        _ => None,
    }
}

/// Minor units as a JSON number with the currency's decimals (`4777` → `47.77`).
pub fn to_json(minor: i64, exp: u32) -> serde_json::Value {
    let text = to_text(minor, exp);
    // A decimal we printed ourselves always parses; fall back to the integer if not.
    serde_json::from_str(&text).unwrap_or(serde_json::Value::from(minor))
}

/// Minor units as decimal text (`4777` → `"47.77"`).
pub fn to_text(minor: i64, exp: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let exp = u8::try_from(exp).unwrap_or(u8::MAX);
    format!("{sign}{}", format_minor_units(minor.unsigned_abs(), exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(parse_decimal("47.77", 2), Some(4777));
        assert_eq!(parse_decimal("47.7", 2), Some(4770));
        assert_eq!(parse_decimal("100", 2), Some(10_000));
        assert_eq!(parse_decimal("0.001", 2), None);
        assert_eq!(parse_decimal("-1", 2), None);
        assert_eq!(parse_decimal("1e2", 2), None);
        assert_eq!(parse_decimal("", 2), None);
        assert_eq!(from_json(&serde_json::json!(12345.67), 2), Some(1_234_567));
        assert_eq!(from_json(&serde_json::json!(100.0), 2), Some(10_000));
        assert_eq!(from_json(&serde_json::json!(2.78), 2), Some(278));
        assert_eq!(to_text(257, 2), "2.57");
        assert_eq!(to_json(4777, 2), serde_json::json!(47.77));
        assert_eq!(to_text(5, 2), "0.05");
        assert_eq!(to_text(-257, 2), "-2.57");
        assert_eq!(to_text(1234, 0), "1234");
        assert_eq!(to_text(1234, 3), "1.234");
        assert_eq!(exponent("JPY"), 0);
        assert_eq!(exponent("BHD"), 3);
        assert_eq!(exponent("USD"), 2);
        assert_eq!(exponent("NGN"), 2);
        // Codes the table lacks, and lower-case spellings, keep the default of 2.
        assert_eq!(exponent("ZZZ"), 2);
        assert_eq!(exponent("jpy"), 2);
    }

    proptest! {
        #[test]
        fn round_trip(minor in 0i64..10_000_000_000) {
            prop_assert_eq!(from_json(&to_json(minor, 2), 2), Some(minor));
            prop_assert_eq!(parse_decimal(&to_text(minor, 2), 2), Some(minor));
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_decimal(&s, 2);
        }
    }
}
