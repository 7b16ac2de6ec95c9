//! The sandbox issuer's ARQC check over arbitrary ICC data (what the bridge forwards, and what
//! a gateway request carries): never panics, and neither the verified result's `Debug` nor an
//! error message ever shows a card number (the seeds hold real, verifiable data sets).
#![no_main]

use emvbridge::leakscan::Scanner;
use emvbridge_sim::issuer::verify_arqc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = match verify_arqc(data) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("{e} {e:?}"),
    };
    let found = Scanner::new().scan(text.as_bytes());
    assert!(found.is_empty(), "card data in issuer output: {found:?}");
});
