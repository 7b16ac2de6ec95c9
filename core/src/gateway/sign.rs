//! HMAC-SHA256 as the gateways use it: lowercase hex for signing, a constant-time check for
//! verifying, and the two webhook signature schemes.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Lowercase hex HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    mac(key, msg)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `sig` (hex, either case, surrounding whitespace ignored) is the HMAC-SHA256 of
/// `msg` under `key`. The comparison is constant-time (`Mac::verify_slice`).
pub fn verify_hmac_sha256_hex(key: &[u8], msg: &[u8], sig: &str) -> bool {
    let Ok(sig) = hex::decode(sig.trim()) else {
        return false;
    };
    mac(key, msg).is_some_and(|m| m.verify_slice(&sig).is_ok())
}

/// The MAC of `msg` under `key`. HMAC takes keys of any length, so `None` never happens with
/// HMAC-SHA256; it is handled (empty signature, failed check) rather than unwrapped.
fn mac(key: &[u8], msg: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    m.update(msg);
    Some(m)
}

/// The PaymentsAI webhook signature: hex HMAC-SHA256 of the raw body, keyed with the webhook
/// secret (gateways.md §2.4; inferred — Rebilly's own webhook schemas define no signature).
pub fn pai_webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_sha256_hex(secret.as_bytes(), body)
}

/// The key and message of a Pay1st webhook signature: the key is the text of
/// base64("user:pass"), the message the body with surrounding whitespace trimmed (§3.4).
pub fn pay1st_webhook_key(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// The Pay1st webhook signature of `body` (see [`pay1st_webhook_key`]).
pub fn pay1st_webhook_signature(user: &str, pass: &str, body: &str) -> String {
    hmac_sha256_hex(
        pay1st_webhook_key(user, pass).as_bytes(),
        body.trim().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verification_is_exact() {
        let sig = pai_webhook_signature("whsec", b"{\"a\":1}");
        assert!(verify_hmac_sha256_hex(b"whsec", b"{\"a\":1}", &sig));
        assert!(verify_hmac_sha256_hex(
            b"whsec",
            b"{\"a\":1}",
            &sig.to_uppercase()
        ));
        assert!(!verify_hmac_sha256_hex(b"whsec", b"{\"a\":2}", &sig));
        assert!(!verify_hmac_sha256_hex(b"other", b"{\"a\":1}", &sig));
        assert!(!verify_hmac_sha256_hex(b"whsec", b"{\"a\":1}", "zz"));
        assert!(!verify_hmac_sha256_hex(b"whsec", b"{\"a\":1}", ""));
        assert!(!verify_hmac_sha256_hex(b"whsec", b"{\"a\":1}", &sig[..10]));
        assert_eq!(
            pay1st_webhook_key("apiuser", "apipassword"),
            "YXBpdXNlcjphcGlwYXNzd29yZA=="
        );
        let p = pay1st_webhook_signature("apiuser", "apipassword", " {\"x\":1}\n");
        assert!(verify_hmac_sha256_hex(
            pay1st_webhook_key("apiuser", "apipassword").as_bytes(),
            b"{\"x\":1}",
            &p
        ));
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(sig in ".{0,200}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            proptest::prop_assert!(!verify_hmac_sha256_hex(b"k", &body, &sig) || sig.len() == 64);
        }
    }
}
