//! The sandbox issuer's ARQC check over arbitrary ICC data (what the bridge forwards, and
//! what a gateway request carries): never panics, and never verifies garbage.
#![no_main]

use emvbridge_sim::issuer::verify_arqc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A random ARQC matching a real card key is a 2^-64 event: any Ok must come from a
    // structurally complete online data set, which the fuzzer cannot forge without the key.
    if let Ok(v) = verify_arqc(data) {
        let _ = format!("{v:?}");
    }
});
