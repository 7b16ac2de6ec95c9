//! VIPA messages: command and response views, templates, device info and transaction data
//! over arbitrary payloads never panic.
#![no_main]

use emvbridge_protocol::vipa::{CommandView, DeviceInfo, Response, TransactionData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = CommandView::parse(data) {
        let _ = c.name();
        let _ = c.continue_data();
        let _ = c.display_text();
        let _ = c.tlvs().count();
    }
    if let Ok(r) = Response::parse(data) {
        let _ = r.sw().name();
        for t in r.templates() {
            let _ = t.kind();
            if let Some(s) = t.status() {
                let _ = (s.transaction_status(), s.message_text(), s.pin_digits());
            }
            if let Some(e) = t.card_event() {
                let _ = e.status();
            }
            if let Some(s) = t.sred() {
                let _ = (s.data(), s.ksn(), s.iv());
            }
        }
        let _ = DeviceInfo::parse(r.data());
    }
    let _ = TransactionData::parse(data);
});
