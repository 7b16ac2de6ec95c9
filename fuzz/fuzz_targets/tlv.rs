//! BER-TLV: a full recursive walk and a search over arbitrary bytes never panic, never recurse
//! past MAX_TLV_DEPTH, and every view stays inside the input.
#![no_main]

use emvbridge_protocol::tlv::{self, Tag, TlvIter, MAX_TLV_DEPTH};
use libfuzzer_sys::fuzz_target;

fn walk(iter: TlvIter<'_>, data: &[u8]) {
    for item in iter {
        let Ok(t) = item else { return };
        assert!(t.depth() <= MAX_TLV_DEPTH);
        assert!(t.offset() + t.raw().len() <= data.len());
        assert_eq!(&data[t.offset()..t.offset() + t.raw().len()], t.raw());
        assert_eq!(t.header_len() + t.value().len(), t.raw().len());
        if t.is_constructed() {
            walk(t.children(), data);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(tlv::parse(data), data);
    if let Some(t) = tlv::find(data, Tag::APPLICATION_CRYPTOGRAM) {
        assert_eq!(t.tag(), Tag::APPLICATION_CRYPTOGRAM);
    }
});
