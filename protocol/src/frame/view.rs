//! One frame: its limits, the NAD values, the PCB bits, the LRC, the zero-copy [`Frame`] view,
//! the validated [`FrameRepr`], and [`emit_message`], which writes a message as chained frames.

use bytes::{BufMut, BytesMut};

/// Bytes before INF: NAD, PCB, LEN.
pub const HEADER_LEN: usize = 3;
/// Smallest legal LEN (§1: LEN 0 and 1 are rejected).
pub const MIN_INF_LEN: usize = 2;
/// Largest legal LEN (§1: `0xFE`; 255 is rejected).
pub const MAX_INF_LEN: usize = 254;
/// Largest frame on the wire: header, 254 INF bytes, LRC.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_INF_LEN + 1;
/// Default bound on a reassembled message. The largest known VIPA messages (Reset with every
/// component, file chunks) are a few kilobytes; anything beyond this is dropped as corrupt.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// NAD `01`: the main device (PED). Every capture uses it in both directions (§1).
pub const NAD_PED: u8 = 0x01;
/// NAD `02`: a second node in Miura MPI; accepted by the \[S2\] parser. Meaning for VIPA \[GAP\].
pub const NAD_SECONDARY: u8 = 0x02;
/// NAD `11`: accepted by the \[S2\] parser; meaning \[GAP\].
pub const NAD_11: u8 = 0x11;
/// The NAD values a receiver accepts. \[I\]/\[GAP\]: we are tolerant and take every value the
/// \[S2\] parser takes; anything else cannot start a frame (which is what resynchronisation uses).
pub const ACCEPTED_NADS: [u8; 3] = [NAD_PED, NAD_SECONDARY, NAD_11];

/// Whether `nad` is one of [`ACCEPTED_NADS`].
#[inline]
pub const fn nad_accepted(nad: u8) -> bool {
    matches!(nad, NAD_PED | NAD_SECONDARY | NAD_11)
}

/// The protocol control byte: bit0 chained, bit6 unsolicited, bit1 stream encryption (§0:
/// Verifone's harness, `connection.py`: a 3DES-CBC payload plus a 4-byte sequence number,
/// configured on the reader). Other bits are ignored but kept, so a view or a log shows them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Pcb(pub u8);

impl Pcb {
    /// Bit0: more frames of this message follow (§1.1).
    pub const CHAINED: u8 = 0x01;
    /// Bit6: an unsolicited message from the terminal (§1.2).
    pub const UNSOLICITED: u8 = 0x40;
    /// Bit1: the INF is stream-encrypted (§0); the bridge does not support it.
    pub const ENCRYPTED: u8 = 0x02;

    /// A PCB with the given flags and no other bits.
    pub const fn new(chained: bool, unsolicited: bool) -> Pcb {
        let mut b = 0;
        if chained {
            b |= Self::CHAINED;
        }
        if unsolicited {
            b |= Self::UNSOLICITED;
        }
        Pcb(b)
    }

    /// Whether more frames of this message follow.
    #[inline]
    pub const fn is_chained(self) -> bool {
        self.0 & Self::CHAINED != 0
    }

    /// Whether the message is unsolicited.
    #[inline]
    pub const fn is_unsolicited(self) -> bool {
        self.0 & Self::UNSOLICITED != 0
    }

    /// Whether the INF is stream-encrypted (bit1).
    #[inline]
    pub const fn is_encrypted(self) -> bool {
        self.0 & Self::ENCRYPTED != 0
    }

    /// Bits other than chained / unsolicited (unknown meaning, preserved).
    #[inline]
    pub const fn unknown_bits(self) -> u8 {
        self.0 & !(Self::CHAINED | Self::UNSOLICITED)
    }
}

/// Why bytes are not a valid frame or message. Offsets are from the first byte of the frame
/// (for [`Inbound::Corrupt`](super::Inbound::Corrupt), of the first skipped byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header or than LEN announces.
    #[error("truncated frame: {have} of {need} bytes")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes the frame needs (3 if the header itself is incomplete).
        need: usize,
    },
    /// LEN outside 2..=254 (§1).
    #[error("bad frame length {len:#04x} at byte offset {offset}")]
    BadLen {
        /// Offset of the LEN byte.
        offset: usize,
        /// The LEN value.
        len: u8,
    },
    /// A NAD outside [`ACCEPTED_NADS`].
    #[error("unknown nad {nad:#04x} at byte offset {offset}")]
    UnknownNad {
        /// Offset of the NAD byte.
        offset: usize,
        /// The NAD value.
        nad: u8,
    },
    /// The LRC byte does not match the XOR of NAD..INF.
    #[error("bad lrc at byte offset {offset}: computed {computed:#04x}, found {found:#04x}")]
    BadLrc {
        /// Offset of the LRC byte.
        offset: usize,
        /// The XOR of the frame's bytes.
        computed: u8,
        /// The LRC byte received.
        found: u8,
    },
    /// A reassembled (or to-be-emitted) message longer than the limit; the chain is dropped.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLong {
        /// Bytes the message reached (at least).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A partial chained message was dropped because corruption interrupted it.
    #[error("chained message dropped after {frames} frames ({len} bytes)")]
    ChainBroken {
        /// Frames received before the break.
        frames: usize,
        /// Payload bytes received before the break.
        len: usize,
    },
    /// A frame with PCB bit1: the reader is configured for VIPA stream encryption, which is
    /// not supported; its INF is ciphertext and is dropped rather than misparsed.
    #[error("stream-encrypted frame (pcb bit 1) not supported: turn stream encryption off on the reader")]
    StreamEncrypted,
    /// A message payload of 0 or 1 bytes cannot be framed (LEN 0 and 1 are illegal).
    #[error("message of {len} bytes is too short to frame")]
    MessageTooShort {
        /// The payload length.
        len: usize,
    },
}

/// LRC of §1: XOR of every byte given (NAD through the last INF byte), starting from 0.
///
/// ```
/// use emvbridge_protocol::frame::lrc;
/// assert_eq!(lrc(&[0x01, 0x00, 0x02, 0x9F, 0x24]), 0xB8);
/// ```
#[inline]
pub fn lrc(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// A zero-copy view of one frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    pub const NAD: usize = 0;
    pub const PCB: usize = 1;
    pub const LEN: usize = 2;
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checks; accessors may panic until [`Frame::check_len`] passes.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer and checks the NAD, LEN range and that the whole frame is present
    /// (the buffer may be longer). The LRC is checked by [`Frame::check_lrc`].
    ///
    /// # Errors
    /// [`FrameError::Truncated`], [`FrameError::UnknownNad`], [`FrameError::BadLen`].
    pub fn new_checked(buffer: T) -> Result<Frame<T>, FrameError> {
        let f = Frame::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks header plausibility and that the buffer holds the whole frame.
    ///
    /// # Errors
    /// As [`Frame::new_checked`].
    pub fn check_len(&self) -> Result<(), FrameError> {
        let b = self.buffer.as_ref();
        if let Some(&nad) = b.first() {
            if !nad_accepted(nad) {
                return Err(FrameError::UnknownNad {
                    offset: field::NAD,
                    nad,
                });
            }
        }
        if let Some(&len) = b.get(field::LEN) {
            if !(MIN_INF_LEN..=MAX_INF_LEN).contains(&usize::from(len)) {
                return Err(FrameError::BadLen {
                    offset: field::LEN,
                    len,
                });
            }
        }
        let need = match b.get(field::LEN) {
            Some(&len) => HEADER_LEN + usize::from(len) + 1,
            None => HEADER_LEN,
        };
        if b.len() < need {
            return Err(FrameError::Truncated {
                have: b.len(),
                need,
            });
        }
        Ok(())
    }

    /// Checks the LRC (§1).
    ///
    /// # Errors
    /// [`FrameError::BadLrc`].
    pub fn check_lrc(&self) -> Result<(), FrameError> {
        let computed = self.compute_lrc();
        let found = self.lrc();
        if computed == found {
            Ok(())
        } else {
            Err(FrameError::BadLrc {
                offset: self.frame_len() - 1,
                computed,
                found,
            })
        }
    }

    /// Whether the LRC is correct.
    pub fn lrc_ok(&self) -> bool {
        self.check_lrc().is_ok()
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Node address.
    #[inline]
    pub fn nad(&self) -> u8 {
        self.buffer.as_ref()[field::NAD]
    }

    /// Protocol control byte.
    #[inline]
    pub fn pcb(&self) -> Pcb {
        Pcb(self.buffer.as_ref()[field::PCB])
    }

    /// The LEN field: number of INF bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        self.buffer.as_ref()[field::LEN]
    }

    /// Bytes the whole frame occupies (header, INF, LRC).
    #[inline]
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + usize::from(self.len()) + 1
    }

    /// The information field.
    #[inline]
    pub fn inf(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.len())]
    }

    /// The LRC byte.
    #[inline]
    pub fn lrc(&self) -> u8 {
        self.buffer.as_ref()[self.frame_len() - 1]
    }

    /// The XOR of NAD through the last INF byte.
    #[inline]
    pub fn compute_lrc(&self) -> u8 {
        lrc(&self.buffer.as_ref()[..self.frame_len() - 1])
    }
}

/// A validated frame: header fields and a borrowed INF.
///
/// ```
/// use bytes::BytesMut;
/// use emvbridge_protocol::frame::{FrameRepr, Pcb};
/// let repr = FrameRepr { nad: 0x01, pcb: Pcb(0x00), inf: &[0xD0, 0xFF, 0x00, 0x00] };
/// let mut out = BytesMut::new();
/// repr.emit(&mut out).unwrap();
/// assert_eq!(&out[..], &[0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2A]);
/// assert_eq!(FrameRepr::parse(&out).unwrap(), repr);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    /// Node address.
    pub nad: u8,
    /// Protocol control byte (unknown bits kept).
    pub pcb: Pcb,
    /// Information field, 2..=254 bytes.
    pub inf: &'a [u8],
}

impl<'a> FrameRepr<'a> {
    /// Parses and fully validates (NAD, LEN, truncation, LRC) a frame at the start of `buf`.
    ///
    /// # Errors
    /// Any [`FrameError`] from [`Frame::new_checked`] or [`Frame::check_lrc`].
    pub fn parse(buf: &'a [u8]) -> Result<FrameRepr<'a>, FrameError> {
        let f = Frame::new_checked(buf)?;
        f.check_lrc()?;
        let len = usize::from(f.len());
        Ok(FrameRepr {
            nad: f.nad(),
            pcb: f.pcb(),
            inf: buf.get(HEADER_LEN..HEADER_LEN + len).unwrap_or_default(),
        })
    }

    /// Bytes [`FrameRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.inf.len() + 1
    }

    /// Appends the frame to `out`. The NAD is written as given (a sender may use any value).
    ///
    /// # Errors
    /// [`FrameError::BadLen`] if the INF is not 2..=254 bytes.
    pub fn emit(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        if !(MIN_INF_LEN..=MAX_INF_LEN).contains(&self.inf.len()) {
            return Err(FrameError::BadLen {
                offset: field::LEN,
                len: self.inf.len().min(255) as u8,
            });
        }
        out.reserve(self.buffer_len());
        let start = out.len();
        out.put_u8(self.nad);
        out.put_u8(self.pcb.0);
        out.put_u8(self.inf.len() as u8);
        out.put_slice(self.inf);
        let l = lrc(&out[start..]);
        out.put_u8(l);
        Ok(())
    }
}

/// INF lengths of the frames a message of `payload_len` bytes is split into: full 254-byte
/// frames, except that when the remainder would be a single byte (LEN 1 is illegal), the
/// second-to-last frame gives one byte to the last.
fn chunk_lens(payload_len: usize) -> impl Iterator<Item = usize> {
    let mut left = payload_len;
    core::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = if left <= MAX_INF_LEN {
            left
        } else if left == MAX_INF_LEN + 1 {
            MAX_INF_LEN - 1
        } else {
            MAX_INF_LEN
        };
        left -= n;
        Some(n)
    })
}

/// Number of frames a message of `payload_len` bytes takes (0 for an unframeable length).
pub fn frame_count(payload_len: usize) -> usize {
    if payload_len < MIN_INF_LEN {
        0
    } else {
        chunk_lens(payload_len).count()
    }
}

/// Bytes [`emit_message`] writes for a payload of `payload_len` bytes.
pub fn message_buffer_len(payload_len: usize) -> usize {
    payload_len + frame_count(payload_len) * (HEADER_LEN + 1)
}

/// Appends `payload` as one frame, or as a chain when it exceeds 254 bytes (§1.1): PCB bit0 on
/// every frame but the last, bit6 on all frames when `unsolicited`. Non-final frames are full
/// (LEN `FE`, as in every capture) except in the one case where that would leave a 1-byte
/// last frame. Returns the number of frames written.
///
/// ```
/// use bytes::BytesMut;
/// use emvbridge_protocol::frame::{emit_message, Deframer, Inbound, NAD_PED};
/// let payload = vec![0x5A; 600];
/// let mut out = BytesMut::new();
/// assert_eq!(emit_message(NAD_PED, false, &payload, &mut out), Ok(3));
/// let mut d = Deframer::new();
/// d.push(&out);
/// let Some(Inbound::Message(m)) = d.poll() else { panic!() };
/// assert_eq!((&m.payload[..], m.frames), (&payload[..], 3));
/// ```
///
/// # Errors
/// [`FrameError::MessageTooShort`] for 0 or 1 bytes; [`FrameError::MessageTooLong`] above
/// [`MAX_MESSAGE_LEN`] (the peer's deframer would drop it). Nothing is written on error.
pub fn emit_message(
    nad: u8,
    unsolicited: bool,
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<usize, FrameError> {
    if payload.len() < MIN_INF_LEN {
        return Err(FrameError::MessageTooShort { len: payload.len() });
    }
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(FrameError::MessageTooLong {
            len: payload.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    out.reserve(message_buffer_len(payload.len()));
    let mut rest = payload;
    let mut frames = 0;
    for n in chunk_lens(payload.len()) {
        let (inf, tail) = rest.split_at(n);
        rest = tail;
        let repr = FrameRepr {
            nad,
            pcb: Pcb::new(!rest.is_empty(), unsolicited),
            inf,
        };
        repr.emit(out)?;
        frames += 1;
    }
    Ok(frames)
}
