//! VIPA frames and reassembly: any byte stream, in any chunking, never panics, never grows
//! a message past the limit, and the same bytes split differently give the same messages.
#![no_main]

use bytes::BytesMut;
use emvbridge_protocol::frame::{Deframer, Frame, Inbound, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

fn messages(data: &[u8], chunk: usize) -> Vec<(bool, Vec<u8>)> {
    let mut d = Deframer::new();
    let mut out = Vec::new();
    for part in data.chunks(chunk.max(1)) {
        d.push(part);
        while let Some(item) = d.poll() {
            if let Inbound::Message(m) = item {
                assert!(m.payload.len() <= MAX_MESSAGE_LEN);
                out.push((m.unsolicited, m.payload.to_vec()));
            }
        }
    }
    while let Some(item) = d.discard_stalled() {
        if let Inbound::Message(m) = item {
            out.push((m.unsolicited, m.payload.to_vec()));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::new_checked(data) {
        let _ = (f.nad(), f.pcb(), f.inf(), f.lrc_ok());
    }
    let whole = messages(data, data.len());
    let split = messages(data, 1 + data.first().copied().unwrap_or(0) as usize % 7);
    assert_eq!(whole, split);
    let mut buf = BytesMut::new();
    if !data.is_empty() && data.len() < MAX_MESSAGE_LEN {
        let _ = emvbridge_protocol::frame::emit_message(0x01, false, data, &mut buf);
    }
});
