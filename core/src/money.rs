//! Money: integer minor units with an ISO 4217 currency. Never a float.

use std::fmt;

use emvbridge_protocol::emv::Currency;

/// An amount in minor units of an ISO 4217 currency (cents for USD, yen for JPY).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: u64,
    currency: &'static Currency,
}

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code this build knows.
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    /// Not a decimal amount (`12.34`), or more decimals than the currency has.
    #[error("bad amount {text:?} for {currency} ({exponent} decimals)")]
    BadAmount {
        /// What was given.
        text: String,
        /// The currency's alphabetic code.
        currency: &'static str,
        /// Its minor-unit exponent.
        exponent: u8,
    },
    /// Larger than the 12 digits EMV amount fields (n12) can carry.
    #[error("amount too large")]
    TooLarge,
}

/// The largest amount an EMV `n12` field holds.
pub const MAX_MINOR: u64 = 999_999_999_999;

impl Money {
    /// An amount in minor units.
    ///
    /// # Errors
    /// [`MoneyError::TooLarge`] beyond [`MAX_MINOR`].
    pub fn new(minor: u64, currency: &'static Currency) -> Result<Money, MoneyError> {
        if minor > MAX_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money { minor, currency })
    }

    /// An amount in minor units of the currency with this alphabetic code (`"USD"`).
    ///
    /// # Errors
    /// Unknown currency or too large.
    pub fn from_minor(minor: u64, currency: &str) -> Result<Money, MoneyError> {
        Money::new(minor, currency_by_code(currency)?)
    }

    /// Parses a decimal amount in major units as people type it (`"12.34"`, `"12"`, `"0.5"`)
    /// without floating point: `"12.34"` USD is 1234 minor units.
    ///
    /// # Errors
    /// Not digits with at most one `.`, more decimals than the currency has, or too large.
    pub fn parse_major(text: &str, currency: &str) -> Result<Money, MoneyError> {
        let cur = currency_by_code(currency)?;
        let bad = || MoneyError::BadAmount {
            text: text.to_owned(),
            currency: cur.alpha,
            exponent: cur.exponent,
        };
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() && frac.is_empty()
            || !digits(int)
            || !digits(frac)
            || frac.len() > usize::from(cur.exponent)
        {
            return Err(bad());
        }
        if int.len() > 12 {
            return Err(MoneyError::TooLarge);
        }
        let mut minor: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        for i in 0..usize::from(cur.exponent) {
            let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(d))
                .ok_or(MoneyError::TooLarge)?;
        }
        Money::new(minor, cur)
    }

    /// Minor units.
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> &'static Currency {
        self.currency
    }

    /// The same currency, another amount.
    ///
    /// # Errors
    /// Too large.
    pub fn with_minor(&self, minor: u64) -> Result<Money, MoneyError> {
        Money::new(minor, self.currency)
    }

    /// The amount in major units as a decimal string (`"12.34"`), for gateways whose APIs
    /// take decimals and for receipts. Exact: integer arithmetic only.
    pub fn major_string(&self) -> String {
        emvbridge_protocol::emv::numeric::format_minor_units(self.minor, self.currency.exponent)
    }
}

fn currency_by_code(code: &str) -> Result<&'static Currency, MoneyError> {
    let code = code.trim();
    Currency::from_alpha(&code.to_ascii_uppercase())
        .or_else(|| code.parse::<u16>().ok().and_then(Currency::from_numeric))
        .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.major_string(), self.currency.alpha)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.minor, self.currency.alpha)
    }
}

impl serde::Serialize for Money {
    /// `{"amount": 1234, "currency": "USD"}`: minor units and the alphabetic code.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Money", 2)?;
        st.serialize_field("amount", &self.minor)?;
        st.serialize_field("currency", self.currency.alpha)?;
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            amount: u64,
            currency: String,
        }
        let w = Wire::deserialize(d)?;
        Money::from_minor(w.amount, &w.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_major_without_floats() {
        assert_eq!(Money::parse_major("12.34", "USD").unwrap().minor(), 1234);
        assert_eq!(Money::parse_major("12", "usd").unwrap().minor(), 1200);
        assert_eq!(Money::parse_major("0.5", "EUR").unwrap().minor(), 50);
        assert_eq!(Money::parse_major(".05", "USD").unwrap().minor(), 5);
        assert_eq!(Money::parse_major("1500", "JPY").unwrap().minor(), 1500);
        assert_eq!(Money::parse_major("1.234", "BHD").unwrap().minor(), 1234);
        assert_eq!(
            Money::parse_major("0.29", "840").unwrap().currency().alpha,
            "USD"
        );
        for bad in ["", ".", "1.234", "-1", "1e3", "12,34", "1.2.3", " x"] {
            assert!(Money::parse_major(bad, "USD").is_err(), "{bad:?}");
        }
        assert!(Money::parse_major("1.5", "JPY").is_err());
        assert_eq!(
            Money::parse_major("1", "XXQ"),
            Err(MoneyError::UnknownCurrency("XXQ".into()))
        );
        assert_eq!(
            Money::parse_major("10000000000", "USD"),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Money::parse_major("9999999999.99", "USD").unwrap().minor(),
            MAX_MINOR
        );
    }

    #[test]
    fn display_and_serde() {
        let m = Money::from_minor(1234, "USD").unwrap();
        assert_eq!(m.to_string(), "12.34 USD");
        assert_eq!(m.major_string(), "12.34");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":1234,"currency":"USD"}"#
        );
        let back: Money = serde_json::from_str(r#"{"amount":5,"currency":"JPY"}"#).unwrap();
        assert_eq!(back.to_string(), "5 JPY");
        assert!(serde_json::from_str::<Money>(r#"{"amount":-5,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":5.5,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":5,"currency":"ZZZ"}"#).is_err());
    }
}
