//! Number (Aspen REST) reply classification: any status and body never panics, and nothing
//! but a 200 JSON reply with an id is classified as approved / done / found.
#![no_main]

mod common;

use emvbridge::gateway::number::{self, Reply};
use emvbridge_core::txn::host::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, ex) = common::exchange(data);
    let req = common::request();
    match sel % 5 {
        0 => {
            if let Reply::Done(r) = number::classify_sale(&ex, &req) {
                common::check_auth(&ex, &req, &r);
            }
        }
        1 => {
            if let Reply::Done(r) = number::classify_op(&ex, "Void", "53001", false) {
                common::check_op(&ex, &r);
            }
        }
        2 => {
            if let Reply::Done(r) = number::classify_op(&ex, "ApplyCredit", "53001", true) {
                common::check_op(&ex, &r);
            }
        }
        3 => {
            let reference = Reference("EB-FUZZ-0001".into());
            if let Reply::Done(r) = number::classify_query(&ex, &reference, "USD") {
                common::check_status(&ex, &r);
            }
        }
        _ => {
            let _ = number::parse_authenticate(&ex, 1_700_000_000);
        }
    }
});
