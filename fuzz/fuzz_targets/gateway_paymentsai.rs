//! PaymentsAI reply classification: any status and body never panics, and nothing but a 2xx
//! JSON reply with an id is classified as approved / done / found.
#![no_main]

mod common;

use emvbridge::gateway::paymentsai;
use emvbridge_core::txn::host::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, ex) = common::exchange(data);
    let req = common::request();
    match sel % 4 {
        0 => {
            let r = paymentsai::classify_authorize(&ex, &req);
            common::check_auth(&ex, &req, &r);
        }
        1 => common::check_op(&ex, &paymentsai::classify_op(&ex)),
        2 => common::check_status(&ex, &paymentsai::classify_get(&ex).0),
        _ => {
            let reference = Reference("EB-FUZZ-0001".into());
            common::check_status(&ex, &paymentsai::classify_lookup(&ex, &reference).0);
        }
    }
});
