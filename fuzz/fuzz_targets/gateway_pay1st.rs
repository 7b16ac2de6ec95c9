//! Pay1st reply classification: any status and body never panics, and nothing but a 2xx JSON
//! reply with a reference is classified as approved / found.
#![no_main]

mod common;

use emvbridge::gateway::pay1st::{self, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, ex) = common::exchange(data);
    let req = common::request();
    match sel % 3 {
        0 => {
            if let Reply::Done(r) = pay1st::classify_create(&ex, &req) {
                common::check_auth(&ex, &req, &r);
            }
        }
        1 => {
            // Pay1st payments are looked up by the gateway's own reference.
            if let Reply::Done((r, _)) = pay1st::classify_lookup(&ex, "P1-FUZZ-0001") {
                common::check_status(&ex, &r);
            }
        }
        _ => {
            let _ = pay1st::parse_tokens(&ex, 1_700_000_000);
        }
    }
});
