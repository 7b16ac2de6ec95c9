//! tokio-util codec for VIPA frames (feature `codec`): the thin edge over [`crate::frame`].
//!
//! The [`Decoder`] yields [`Inbound`] items. Corruption is an item
//! ([`Inbound::Corrupt`]), never an `Err`: an `Err` ends a `Framed` stream for good, and the
//! link must survive line noise (§1.2). `Err` is reserved for real I/O errors from below.
//! The [`Encoder`] chains long messages (§1.1).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{emit_message, FrameError, Inbound, Reassembler, NAD_PED};

/// A message to send: payload plus link addressing.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// NAD (use [`NAD_PED`]; §1: `01` in both directions).
    pub nad: u8,
    /// Set PCB bit6 (the simulator sends card events and power-on this way).
    pub unsolicited: bool,
    /// Command or response payload, at least 2 bytes.
    pub payload: Bytes,
}

impl core::fmt::Debug for OutboundMessage {
    /// The payload may hold cardholder data: only its length is shown.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("nad", &self.nad)
            .field("unsolicited", &self.unsolicited)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl OutboundMessage {
    /// A solicited message on NAD `01` (what the host sends, and what the terminal answers).
    pub fn new(payload: impl Into<Bytes>) -> Self {
        OutboundMessage {
            nad: NAD_PED,
            unsolicited: false,
            payload: payload.into(),
        }
    }

    /// An unsolicited message on NAD `01`.
    pub fn unsolicited(payload: impl Into<Bytes>) -> Self {
        OutboundMessage {
            unsolicited: true,
            ..Self::new(payload)
        }
    }
}

/// Decoder of [`Inbound`] items and encoder of messages, for `tokio_util::codec::Framed`.
#[derive(Debug, Default)]
pub struct VipaCodec {
    reassembler: Reassembler,
}

impl VipaCodec {
    /// A codec bounded by [`crate::frame::MAX_MESSAGE_LEN`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec with a custom bound on reassembled messages.
    pub fn with_max_message_len(max: usize) -> Self {
        VipaCodec {
            reassembler: Reassembler::with_max_message_len(max),
        }
    }

    /// For an idle line: see [`Reassembler::discard_stalled`] (pass `Framed::read_buffer_mut`).
    pub fn discard_stalled(&mut self, src: &mut BytesMut) -> Option<Inbound> {
        self.reassembler.discard_stalled(src)
    }

    /// Drops partial chains (e.g. after reopening the port).
    pub fn reset(&mut self) {
        self.reassembler.reset();
    }
}

impl Decoder for VipaCodec {
    type Item = Inbound;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, std::io::Error> {
        let item = self.reassembler.decode(src);
        if item.is_none() {
            // Reserve ahead for the rest of the frame at the head.
            src.reserve(self.reassembler.bytes_wanted(src));
        }
        Ok(item)
    }
    // `decode_eof` keeps the default: bytes left at EOF become an io error ("bytes remaining
    // on stream"), which is right for a closed link.
}

fn encode_error(e: FrameError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

impl Encoder<OutboundMessage> for VipaCodec {
    type Error = std::io::Error;

    /// # Errors
    /// `InvalidInput` for a payload shorter than 2 bytes or longer than the message bound.
    fn encode(&mut self, item: OutboundMessage, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        emit_message(item.nad, item.unsolicited, &item.payload, dst)
            .map(drop)
            .map_err(encode_error)
    }
}

impl Encoder<Bytes> for VipaCodec {
    type Error = std::io::Error;

    /// A solicited message on NAD `01`.
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        emit_message(NAD_PED, false, &item, dst)
            .map(drop)
            .map_err(encode_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Message;

    const RESET_CHAINED: &str =
        include_str!("../../tests/data/vipa/reset-response-ux300-chained.hex");

    fn drain(codec: &mut VipaCodec, src: &mut BytesMut) -> Vec<Inbound> {
        let mut v = Vec::new();
        while let Some(i) = codec.decode(src).unwrap() {
            v.push(i);
        }
        v
    }

    #[test]
    fn decodes_captured_chain_byte_by_byte_and_reserves() {
        let wire: Vec<u8> = RESET_CHAINED
            .lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| hex::decode(l.trim()).unwrap())
            .collect();
        let mut codec = VipaCodec::new();
        let mut src = BytesMut::new();
        let mut items = Vec::new();
        for (i, b) in wire.iter().enumerate() {
            src.extend_from_slice(&[*b]);
            items.extend(drain(&mut codec, &mut src));
            if i == 3 {
                // Header seen (LEN FE): room reserved for the whole frame.
                assert!(src.capacity() >= 258, "{}", src.capacity());
            }
        }
        assert_eq!(items.len(), 1);
        let Inbound::Message(Message {
            payload, frames, ..
        }) = &items[0]
        else {
            panic!()
        };
        assert_eq!((*frames, payload.len()), (3, 757));
        assert!(src.is_empty());
    }

    #[test]
    fn corruption_is_an_item_not_an_error() {
        let mut codec = VipaCodec::new();
        let mut src = BytesMut::from(&b"\xFF\xFF\x01\x00\x02\x9F\x24\xB8"[..]);
        let items = drain(&mut codec, &mut src);
        assert!(matches!(
            items[0],
            Inbound::Corrupt {
                reason: FrameError::UnknownNad { nad: 0xFF, .. },
                skipped: 2
            }
        ));
        assert!(matches!(&items[1], Inbound::Message(m) if m.payload[..] == [0x9F, 0x24]));
    }

    #[test]
    fn encoder_chains_and_round_trips() {
        let mut codec = VipaCodec::new();
        let mut dst = BytesMut::new();
        Encoder::<Bytes>::encode(
            &mut codec,
            Bytes::from_static(&[0xD0, 0xFF, 0x00, 0x00]),
            &mut dst,
        )
        .unwrap();
        assert_eq!(&dst[..], &[0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2A]);
        let long: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        codec
            .encode(OutboundMessage::unsolicited(long.clone()), &mut dst)
            .unwrap();
        let items = drain(&mut codec, &mut dst);
        assert_eq!(items.len(), 2);
        let Inbound::Message(m) = &items[1] else {
            panic!()
        };
        assert!(m.unsolicited);
        assert_eq!((&m.payload[..], m.frames), (&long[..], 3));
        let err = Encoder::<Bytes>::encode(&mut codec, Bytes::from_static(&[0x90]), &mut dst)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
