//! A VIPA wire stream for the frame benchmarks: the TLV corpus as responses (`data 90 00`),
//! chained where longer than 254 bytes (vipa-protocol.md §1.1), with unsolicited `E6` status
//! frames between them, as the reader sends them.

use bytes::BytesMut;
use emvbridge_protocol::frame::{emit_message, Deframer, Inbound, NAD_PED};

use super::corpus::Message;

/// Read sizes the stream is fed in: odd, mostly not frame-aligned, like a serial port's.
pub const CHUNKS: [usize; 9] = [1, 3, 7, 13, 31, 61, 127, 251, 509];

/// The wire stream and what decoding it must give.
pub struct Wire {
    /// Concatenated frames.
    pub bytes: Vec<u8>,
    /// Every payload in order (TLV data followed by SW1 SW2).
    pub payloads: Vec<Vec<u8>>,
    /// Payloads that needed more than one frame.
    pub chained: usize,
}

/// About `target` bytes of frames built from `messages` in a fixed order; every fifth
/// message is preceded by an unsolicited `E6`, every seventh is three messages in one
/// response (a long chain).
pub fn wire(messages: &[Message], target: usize) -> Wire {
    let e6 = messages
        .iter()
        .find(|m| m.name == "vipa_e6")
        .map(|m| m.bytes.clone())
        .unwrap_or_else(|| vec![0xE6, 0x00]);
    let mut out = BytesMut::with_capacity(target + 1024);
    let mut payloads = Vec::new();
    let mut chained = 0;
    let mut k = 0usize;
    while out.len() < target {
        let mut p = Vec::new();
        let unsolicited = k % 5 == 4;
        if unsolicited {
            p.extend_from_slice(&e6);
        } else {
            let parts = if k % 7 == 6 { 3 } else { 1 };
            for j in 0..parts {
                p.extend_from_slice(&messages[(k * 3 + j) % messages.len()].bytes);
            }
        }
        p.extend_from_slice(&[0x90, 0x00]);
        let frames = emit_message(NAD_PED, unsolicited, &p, &mut out)
            .expect("corpus payloads fit a message");
        if frames > 1 {
            chained += 1;
        }
        payloads.push(p);
        k += 1;
    }
    Wire {
        bytes: out.to_vec(),
        payloads,
        chained,
    }
}

/// Decodes `wire` fed in [`CHUNKS`]-sized reads, calling `each` on every payload; returns the
/// number of messages and of corrupt events.
#[inline]
pub fn deframe(wire: &[u8], mut each: impl FnMut(&[u8])) -> (usize, usize) {
    let mut d = Deframer::new();
    let (mut messages, mut corrupt) = (0, 0);
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = CHUNKS[i % CHUNKS.len()].min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        d.push(chunk);
        while let Some(item) = d.poll() {
            match item {
                Inbound::Message(m) => {
                    messages += 1;
                    each(&m.payload);
                }
                Inbound::Corrupt { .. } => corrupt += 1,
            }
        }
    }
    (messages, corrupt)
}

/// Emits `payloads` as [`wire`] did (every fifth unsolicited) into `out`; returns frames written.
#[inline]
pub fn emit_all(payloads: &[Vec<u8>], out: &mut BytesMut) -> usize {
    payloads
        .iter()
        .enumerate()
        .map(|(k, p)| emit_message(NAD_PED, k % 5 == 4, p, out).unwrap_or(0))
        .sum()
}
