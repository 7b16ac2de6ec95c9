//! POS API request bodies (sale/preauth, refund, capture, display) through the handlers' own
//! validation: never panics, accepts only positive amounts in a known currency, and refuses
//! with a 4xx and a bounded message.
#![no_main]

use emvbridge::api::validate_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (route, body) = match data.split_first() {
        Some((r, b)) => (*r, b),
        None => (0, data),
    };
    match validate_body(route, body) {
        Ok(Some(m)) => {
            assert!(m.minor() > 0);
            assert_eq!(m.currency().alpha.len(), 3);
            // An accepted body is valid JSON.
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok());
        }
        Ok(None) => {}
        Err((status, code, message)) => {
            assert!((400..500).contains(&status), "{status} {code}");
            assert!(message.len() <= 512, "message of {} bytes", message.len());
        }
    }
});
