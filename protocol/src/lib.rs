//! `emvbridge-protocol`: the wire formats emvbridge speaks, without I/O.
//!
//! - [`tlv`]: zero-copy BER-TLV views and a builder (EMV Book 3, Annex B).
//! - [`emv`]: the EMV tag dictionary, bit-field decoders and sensitive-data wrappers.
//! - [`frame`]: VIPA link-layer frames (`NAD PCB LEN INF LRC`), chaining and a resynchronising deframer.
//! - [`vipa`]: VIPA commands, status words and response templates.
//! - `recording` (feature `serde`): the JSON-lines format of a recorded reader session.
//! - `codec` (feature `codec`): a `tokio_util::codec` Decoder/Encoder over [`frame`].
//!
//! Nothing here reads a clock, a socket or a file: parsers take bytes and return borrowed
//! views; emitters write into caller-provided `BytesMut`. The simulator, the bridge, the
//! sandbox gateway and the benchmarks all go through this one parser and encoder.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "codec")]
pub mod codec;
pub mod emv;
pub mod frame;
#[cfg(feature = "serde")]
pub mod recording;
pub mod tlv;
pub mod vipa;
