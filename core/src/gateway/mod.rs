//! The gateway dialects, sans-IO: one module per gateway API ([`number`], [`paymentsai`],
//! [`pay1st`]) of pure functions that build an [`HttpRequest`] (method, path, headers, exact
//! body bytes) and classify an [`HttpReply`] (or a [`TransportError`]) into the engine's types
//! from [`crate::txn::host`]. They never read the clock (`now` is an argument) and never touch a
//! socket; the bridge's HTTP edge sends what they build. [`reversal`] decides, step by step,
//! how a transaction that must not stand is taken back.
//!
//! Classification rules that keep money safe (shared by every dialect):
//! - the request certainly never left (connect refused, DNS, TLS before sending) →
//!   `Unavailable`: nothing to reverse;
//! - sent but no usable answer (timeout after sending, connection dropped, 5xx, unparseable
//!   or malformed body) → `Unknown`: resolve by a status lookup and a reversal, never by
//!   blindly sending the sale again.

//!
//! Modules: [`ops`], [`wire`] and [`config`] hold the vocabulary every dialect shares; the
//! dialects build on them and never on each other; [`GatewayConfig`], here, chooses among the
//! dialects' configurations.

pub mod config;
pub mod number;
pub mod ops;
pub mod pay1st;
pub mod paymentsai;
pub mod reversal;
pub mod sign;
pub mod wire;

pub use config::{process_env, ConfigError, Environment, Secret};
pub use ops::*;
pub use wire::{
    arc_of, arc_only, decimal_json, iso8601, issuer_from_tlv, parse_decimal, screen, short,
    Exchange, HttpReply, HttpRequest, Method, Screened, TransportError,
};

/// Configuration of one gateway adapter.
#[derive(Debug, Clone)]
pub enum GatewayConfig {
    /// Number.
    Number(number::NumberConfig),
    /// PaymentsAI.
    PaymentsAi(paymentsai::PaiConfig),
    /// Pay1st.
    Pay1st(pay1st::Pay1stConfig),
}

impl GatewayConfig {
    /// Reads the configuration of `dialect` in `env` from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] with every missing variable name.
    pub fn from_env(dialect: Dialect, env: Environment) -> Result<GatewayConfig, ConfigError> {
        Self::from_lookup(dialect, env, &process_env)
    }

    /// As [`GatewayConfig::from_env`], through a lookup function (tests).
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn from_lookup(
        dialect: Dialect,
        env: Environment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        Ok(match dialect {
            Dialect::Number => {
                GatewayConfig::Number(number::NumberConfig::from_lookup(env, lookup)?)
            }
            Dialect::PaymentsAi => {
                GatewayConfig::PaymentsAi(paymentsai::PaiConfig::from_lookup(env, lookup)?)
            }
            Dialect::Pay1st => {
                GatewayConfig::Pay1st(pay1st::Pay1stConfig::from_lookup(env, lookup)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::config::EnvReader;
    use super::wire::pct;
    use super::*;
    use crate::money::Money;
    use crate::txn::host::{AuthorizationRequest, AuthorizationResult, Reference};
    use bytes::Bytes;

    fn usd(minor: u64) -> Money {
        Money::from_minor(minor, "USD").unwrap()
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal_json(&usd(1234)).get(), "12.34");
        assert_eq!(decimal_json(&usd(5)).get(), "0.05");
        assert_eq!(
            decimal_json(&Money::from_minor(1500, "JPY").unwrap()).get(),
            "1500"
        );
        assert_eq!(parse_decimal("12.34", "USD"), Some(usd(1234)));
        assert_eq!(parse_decimal("\"12.34\"", "USD"), Some(usd(1234)));
        assert_eq!(parse_decimal("12.3", "USD"), Some(usd(1230)));
        assert_eq!(parse_decimal("12.340", "USD"), Some(usd(1234)));
        assert_eq!(parse_decimal("100.0", "USD"), Some(usd(10_000)));
        assert_eq!(parse_decimal("1500", "JPY").map(|m| m.minor()), Some(1500));
        assert_eq!(
            parse_decimal("1500.00", "JPY").map(|m| m.minor()),
            Some(1500)
        );
        assert_eq!(parse_decimal("1500.5", "JPY"), None);
        assert_eq!(parse_decimal("12.345", "USD"), None);
        assert_eq!(parse_decimal("1e3", "USD"), None);
        assert_eq!(parse_decimal("-1", "USD"), None);
        assert_eq!(parse_decimal("null", "USD"), None);
        // 12345678901.23 would lose a cent through f64 arithmetic at larger scales; here it
        // is text all the way.
        assert_eq!(
            parse_decimal("9999999999.99", "USD").map(|m| m.minor()),
            Some(999_999_999_999)
        );
    }

    #[test]
    fn issuer_tlv() {
        // 8A "00", 91 (8 bytes), 72 script.
        let data = hex::decode("8A0230309108112233445566778872099F180400000001860100").unwrap();
        let r = issuer_from_tlv(&data).unwrap();
        assert_eq!(&r.arc, b"00");
        assert_eq!(
            r.issuer_auth_data.as_deref(),
            Some(&hex::decode("1122334455667788").unwrap()[..])
        );
        assert_eq!(r.scripts.len(), 11);
        assert!(
            issuer_from_tlv(&hex::decode("910100").unwrap()).is_none(),
            "no 8A"
        );
        assert!(
            issuer_from_tlv(&hex::decode("8A0130").unwrap()).is_none(),
            "short 8A"
        );
        assert!(issuer_from_tlv(&[0x8A, 0x05, 0x30]).is_none(), "truncated");
    }

    #[test]
    fn secrets_and_requests_do_not_leak() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let mut r = HttpRequest::post_json("/x", b"{}".to_vec());
        r.set_header("SessKey", "ABCDEF0123".into());
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("SessKey") && !dbg.contains("ABCDEF0123"),
            "{dbg}"
        );
        assert_eq!(r.header("sesskey"), Some("ABCDEF0123"));
    }

    #[test]
    fn screening() {
        let ns: Exchange = Err(TransportError::NotSent("refused".into()));
        assert!(matches!(screen(&ns), Err(Screened::Unavailable(_))));
        let nr: Exchange = Err(TransportError::NoReply("timeout".into()));
        assert!(matches!(screen(&nr), Err(Screened::Unknown(_))));
        for s in [500, 502, 503, 504] {
            let r: Exchange = Ok(HttpReply {
                status: s,
                body: Bytes::new(),
            });
            assert_eq!(screen(&r), Err(Screened::Unknown(format!("http {s}"))));
        }
        let ok: Exchange = Ok(HttpReply {
            status: 200,
            body: Bytes::new(),
        });
        assert!(screen(&ok).is_ok());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_742_199_052), "2025-03-17T08:10:52Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601(999_999_999_999), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601(i64::MIN), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(pct("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(
            pct("a b/c&d=e?f#g%h+i"),
            "a%20b%2Fc%26d%3De%3Ff%23g%25h%2Bi"
        );
        assert_eq!(pct("é\u{7f}\n"), "%C3%A9%7F%0A");
        // Byte for byte what the dialects sent before: unreserved kept, the rest %XX.
        let all: String = (0u8..=0x7F).map(char::from).collect();
        let expected: String = all
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(pct(&all), expected);
    }

    #[test]
    fn dialect_spellings() {
        for (text, d) in [
            ("number", Dialect::Number),
            ("paymentsai", Dialect::PaymentsAi),
            ("pai", Dialect::PaymentsAi),
            ("payments-ai", Dialect::PaymentsAi),
            ("PaymentsAI", Dialect::PaymentsAi),
            ("Payments-AI", Dialect::PaymentsAi),
            ("pay1st", Dialect::Pay1st),
            (" Pay1st ", Dialect::Pay1st),
        ] {
            assert_eq!(text.parse::<Dialect>(), Ok(d), "{text}");
            assert_eq!(d.to_string().parse::<Dialect>(), Ok(d));
        }
        let e = "payments ai".parse::<Dialect>().unwrap_err();
        assert!(e.contains("number, paymentsai, pay1st"), "{e}");
    }

    #[test]
    fn env_reader_names_missing_only() {
        let lookup = |n: &str| (n == "A").then(|| "secret-value".to_owned());
        let mut r = EnvReader::new(&lookup);
        assert_eq!(r.required("A"), "secret-value");
        r.required("B");
        r.required("C");
        let e = r.finish().unwrap_err();
        assert_eq!(e, ConfigError::Missing(vec!["B", "C"]));
        assert_eq!(e.to_string(), "missing environment variables: B, C");
        assert!(!e.to_string().contains("secret-value"));
    }

    fn any_req() -> AuthorizationRequest {
        AuthorizationRequest {
            reference: Reference("r".into()),
            kind: crate::txn::host::AuthKind::Sale,
            amount: usd(1234),
            amount_other: usd(0),
            entry_mode: crate::txn::host::EntryMode::Chip,
            icc_data: Bytes::new(),
            masked_pan: String::new(),
            last4: None,
            brand: None,
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        }
    }

    proptest::proptest! {
        #[test]
        fn decimal_round_trip(minor in 0u64..=crate::money::MAX_MINOR) {
            for cur in ["USD", "JPY", "BHD"] {
                let m = Money::from_minor(minor, cur).unwrap();
                proptest::prop_assert_eq!(parse_decimal(decimal_json(&m).get(), cur), Some(m));
            }
        }

        /// Any reply body and status: every classifier decides without panicking, and a
        /// body that is not valid JSON is never an approval.
        #[test]
        fn classifiers_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), status in 100u16..600) {
            let ex: Exchange = Ok(HttpReply { status, body: Bytes::from(body.clone()) });
            let req = any_req();
            let r = Reference("r".into());
            let json_ok = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
            let n = number::classify_sale(&ex, &req);
            let p = paymentsai::classify_authorize(&ex, &req);
            let q = pay1st::classify_create(&ex, &req);
            let approved = matches!(n, number::Reply::Done(AuthorizationResult::Approved { .. }))
                || matches!(p, AuthorizationResult::Approved { .. })
                || matches!(q, pay1st::Reply::Done(AuthorizationResult::Approved { .. }));
            proptest::prop_assert!(json_ok || !approved);
            let _ = number::classify_op(&ex, "Transaction_VoidResult", "1", false);
            let _ = number::classify_query(&ex, &r, "USD");
            let _ = paymentsai::classify_op(&ex);
            let _ = paymentsai::classify_lookup(&ex, &r);
            let _ = paymentsai::classify_get(&ex);
            let _ = pay1st::classify_lookup(&ex, "r");
            let _ = number::parse_authenticate(&ex, 0);
            let _ = pay1st::parse_tokens(&ex, 0);
            let _ = issuer_from_tlv(&body);
            let _ = parse_decimal(&String::from_utf8_lossy(&body), "USD");
        }
    }
}
