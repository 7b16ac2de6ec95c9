//! VIPA link-layer frames: `NAD PCB LEN INF LRC` (vipa-protocol.md §1).
//!
//! - [`Frame`]: a zero-copy view over one frame in a caller's buffer (smoltcp style):
//!   [`Frame::new_checked`] validates the lengths and the NAD, after which no accessor panics;
//!   [`Frame::check_lrc`] validates the checksum.
//! - [`FrameRepr`]: a validated frame (`parse` / `buffer_len` / `emit`).
//! - [`emit_message`]: writes one application message as one or more chained frames (§1.1).
//! - [`Deframer`] / [`Reassembler`]: a sans-IO, resynchronising deframer that turns a byte
//!   stream in any chunking into reassembled [`Message`]s and [`Inbound::Corrupt`] reports.
//!
//! The link layer has no ACK/NAK, no sequence bit and no retransmission (§1.2): a bad frame is
//! reported and dropped; recovery (Abort / Reset) belongs to the layer above.
//!
//! The `view` module holds one frame's wire rules; the `deframer` builds on them; this module
//! only re-exports both.

mod deframer;
mod view;

pub use deframer::{Deframer, Inbound, Message, Reassembler};
pub use view::*;

#[cfg(test)]
mod tests;
