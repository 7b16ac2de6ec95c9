//! Sans-IO deframing, resynchronisation and reassembly of chained messages (§1.1, §1.2, §1.4).

use core::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::view::{
    lrc, nad_accepted, FrameError, Pcb, HEADER_LEN, MAX_FRAME_LEN, MAX_INF_LEN, MAX_MESSAGE_LEN,
    MIN_INF_LEN,
};

/// A complete application message: the concatenated INF fields of one frame or one chain.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// NAD of the first frame.
    pub nad: u8,
    /// PCB of the last frame (chained bit clear); unknown bits are kept for diagnostics.
    pub pcb: Pcb,
    /// PCB bit6: sent by the terminal on its own (card events, power-on), not a response.
    pub unsolicited: bool,
    /// The payload: a command (`CLA INS P1 P2 [Lc data] [Le]`) or a response (`[data] SW1 SW2`).
    pub payload: Bytes,
    /// Number of frames the message arrived in.
    pub frames: usize,
}

impl fmt::Debug for Message {
    /// The payload may hold cardholder data: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("nad", &self.nad)
            .field("pcb", &self.pcb)
            .field("unsolicited", &self.unsolicited)
            .field("payload_len", &self.payload.len())
            .field("frames", &self.frames)
            .finish()
    }
}

/// What the deframer produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A complete (reassembled) message.
    Message(Message),
    /// Bytes that were dropped: garbage or a bad frame ([`FrameError::UnknownNad`],
    /// [`FrameError::BadLen`], [`FrameError::BadLrc`]; offsets from the first skipped byte),
    /// a stale incomplete frame ([`FrameError::Truncated`], see [`Reassembler::discard_stalled`]),
    /// an over-long chain ([`FrameError::MessageTooLong`]) or a partial chain interrupted by
    /// corruption ([`FrameError::ChainBroken`], reported right after the corruption).
    Corrupt {
        /// Why.
        reason: FrameError,
        /// Input bytes dropped by this event (0 for [`FrameError::ChainBroken`]).
        skipped: usize,
    },
}

/// A partial chained message for one direction of demultiplexing.
#[derive(Debug, Default)]
struct Chain {
    nad: u8,
    data: BytesMut,
    frames: usize,
    /// Dropping the rest of an over-long chain, up to its final frame.
    discarding: bool,
}

/// The reassembly state, decoding from a buffer the caller owns (a tokio-util `Decoder`'s
/// `src`, or [`Deframer`]'s). Keeps two partial chains, solicited and unsolicited (PCB bit6),
/// so an unsolicited event in the middle of a chained response does not disturb it (§1.2).
///
/// Resynchronisation (§1.4 \[I\]): a byte that cannot start a frame (NAD not accepted, LEN not
/// 2..=254) is skipped together with every following byte up to the next position that is a
/// valid complete frame or could still become one. A complete frame whose LRC fails is skipped
/// whole when a valid frame follows it, else byte by byte as above. An incomplete frame at the
/// head (or a bad one whose successor is incomplete) waits for more bytes: the driver must call
/// [`Reassembler::discard_stalled`] when the line goes idle with bytes buffered (e.g. 200 ms
/// without a byte), or a corrupt last response would only be reported by the next traffic.
///
/// Chunking: the messages produced, and the total of `skipped`, do not depend on how the
/// stream is split; only how skipped garbage is divided between `Corrupt` items may.
#[derive(Debug)]
pub struct Reassembler {
    max_message_len: usize,
    chains: [Chain; 2],
    pending: Option<Inbound>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new()
    }
}

/// What the bytes at one position are.
enum Class {
    /// Could be the start of a frame; more bytes are needed to tell.
    Incomplete,
    /// A complete frame of this many bytes with a correct LRC.
    Frame(usize),
    /// Cannot start a frame.
    Bad(FrameError),
}

fn classify(b: &[u8]) -> Class {
    let Some(&nad) = b.first() else {
        return Class::Incomplete;
    };
    if !nad_accepted(nad) {
        return Class::Bad(FrameError::UnknownNad { offset: 0, nad });
    }
    let Some(&len) = b.get(2) else {
        return Class::Incomplete;
    };
    if !(MIN_INF_LEN..=MAX_INF_LEN).contains(&usize::from(len)) {
        return Class::Bad(FrameError::BadLen { offset: 2, len });
    }
    let need = HEADER_LEN + usize::from(len) + 1;
    let Some(frame) = b.get(..need) else {
        return Class::Incomplete;
    };
    let (body, last) = frame.split_at(need - 1);
    let computed = lrc(body);
    let found = last.first().copied().unwrap_or(0);
    if computed == found {
        Class::Frame(need)
    } else {
        Class::Bad(FrameError::BadLrc {
            offset: need - 1,
            computed,
            found,
        })
    }
}

/// How resynchronisation treats one position: [`classify`], except that a complete frame whose
/// LRC fails is skipped whole when a valid frame follows it (damage inside the frame: trust
/// LEN), waits when what follows is still incomplete, and is otherwise plain garbage. The head
/// and the forward scan use this same rule, so the outcome does not depend on chunking.
enum Resync {
    Incomplete,
    Frame(usize),
    /// Skip this many bytes (a bad frame followed by a valid one).
    SkipFrame(FrameError, usize),
    /// Skip to the next position that is not `Garbage`.
    Garbage(FrameError),
}

fn resync_class(b: &[u8]) -> Resync {
    match classify(b) {
        Class::Incomplete => Resync::Incomplete,
        Class::Frame(n) => Resync::Frame(n),
        Class::Bad(reason @ FrameError::BadLrc { offset, .. }) => {
            match classify(b.get(offset + 1..).unwrap_or_default()) {
                Class::Frame(_) => Resync::SkipFrame(reason, offset + 1),
                Class::Incomplete => Resync::Incomplete,
                Class::Bad(_) => Resync::Garbage(reason),
            }
        }
        Class::Bad(reason) => Resync::Garbage(reason),
    }
}

/// First position `>= from` that is not garbage (or `b.len()`).
fn next_candidate(b: &[u8], from: usize) -> usize {
    (from..b.len())
        .find(|&p| {
            !matches!(
                resync_class(b.get(p..).unwrap_or_default()),
                Resync::Garbage(_)
            )
        })
        .unwrap_or(b.len())
}

impl Reassembler {
    /// A reassembler bounded by [`MAX_MESSAGE_LEN`].
    pub fn new() -> Self {
        Self::with_max_message_len(MAX_MESSAGE_LEN)
    }

    /// A reassembler bounded by `max` bytes per message (at least one full frame's INF).
    pub fn with_max_message_len(max: usize) -> Self {
        Reassembler {
            max_message_len: max.max(MAX_INF_LEN),
            chains: Default::default(),
            pending: None,
        }
    }

    /// The message bound.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Bytes still needed before the frame at the head of `buf` is complete, as far as the
    /// header tells (a full frame's worth when the header is incomplete); 0 if `buf` holds
    /// something decodable. Used to reserve ahead.
    pub fn bytes_wanted(&self, buf: &[u8]) -> usize {
        match buf.get(2) {
            Some(&len) if nad_accepted(buf[0]) => {
                (HEADER_LEN + usize::from(len) + 1).saturating_sub(buf.len())
            }
            None => MAX_FRAME_LEN.saturating_sub(buf.len()),
            _ => 0,
        }
    }

    /// Decodes the next item from the front of `buf`, consuming what it uses. `None` means
    /// more bytes are needed. Call until `None` after each arrival of bytes.
    #[must_use]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Inbound> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        loop {
            let (reason, skip) = match resync_class(buf) {
                Resync::Incomplete => return None,
                Resync::Frame(n) => {
                    let frame = buf.split_to(n).freeze();
                    if let Some(item) = self.accept(frame) {
                        return Some(item);
                    }
                    continue;
                }
                Resync::SkipFrame(reason, n) => (reason, n),
                Resync::Garbage(reason) => (reason, next_candidate(buf, 1)),
            };
            buf.advance(skip);
            self.pending = self.break_chains();
            return Some(Inbound::Corrupt {
                reason,
                skipped: skip,
            });
        }
    }

    /// For an idle line: treats the (incomplete or bad) frame at the head of `buf` as garbage
    /// and drops everything up to the next complete valid frame (or all of `buf`). Sans-IO: the driver
    /// decides when the line is idle (e.g. no byte for 500 ms while `buf` is not empty).
    #[must_use]
    pub fn discard_stalled(&mut self, buf: &mut BytesMut) -> Option<Inbound> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        if buf.is_empty() {
            return None;
        }
        let reason = match classify(buf) {
            Class::Bad(reason) => reason,
            _ => FrameError::Truncated {
                have: buf.len(),
                need: match buf.get(2) {
                    Some(&len) => HEADER_LEN + usize::from(len) + 1,
                    None => HEADER_LEN,
                },
            },
        };
        let skip = (1..buf.len())
            .find(|&p| matches!(classify(buf.get(p..).unwrap_or_default()), Class::Frame(_)))
            .unwrap_or(buf.len());
        buf.advance(skip);
        self.pending = self.break_chains();
        Some(Inbound::Corrupt {
            reason,
            skipped: skip,
        })
    }

    /// Drops all partial state (e.g. after the driver reopens the port).
    pub fn reset(&mut self) {
        self.chains = Default::default();
        self.pending = None;
    }

    /// Whether a chained message is partly received.
    pub fn in_chain(&self) -> bool {
        self.chains.iter().any(|c| c.frames > 0)
    }

    /// Corruption interrupts any chain in progress: drop it and report it.
    fn break_chains(&mut self) -> Option<Inbound> {
        let (mut frames, mut len) = (0, 0);
        for c in &mut self.chains {
            frames += c.frames;
            len += c.data.len();
            c.data.clear();
            c.frames = 0;
            // The end of an over-long chain may have been in the garbage: stop discarding,
            // or the next message would be swallowed.
            c.discarding = false;
        }
        (frames > 0).then_some(Inbound::Corrupt {
            reason: FrameError::ChainBroken { frames, len },
            skipped: 0,
        })
    }

    /// Takes one valid frame; returns an item when a message completes or is dropped.
    fn accept(&mut self, frame: Bytes) -> Option<Inbound> {
        let frame_len = frame.len();
        let nad = frame.first().copied().unwrap_or(0);
        let pcb = Pcb(frame.get(1).copied().unwrap_or(0));
        let inf = frame.slice(HEADER_LEN..frame_len - 1);
        let unsolicited = pcb.is_unsolicited();
        let max = self.max_message_len;
        let chain = &mut self.chains[usize::from(unsolicited)];
        if pcb.is_encrypted() {
            // §0: ciphertext (3DES-CBC + sequence number); refused clearly, never parsed.
            chain.data = BytesMut::new();
            chain.frames = 0;
            chain.discarding = pcb.is_chained();
            return Some(Inbound::Corrupt {
                reason: FrameError::StreamEncrypted,
                skipped: frame_len,
            });
        }
        if chain.discarding {
            chain.discarding = pcb.is_chained();
            return None;
        }
        if chain.frames == 0 && !pcb.is_chained() {
            // The common case: a single-frame message, no copy.
            return Some(Inbound::Message(Message {
                nad,
                pcb,
                unsolicited,
                payload: inf,
                frames: 1,
            }));
        }
        let len = chain.data.len() + inf.len();
        if len > max {
            chain.data = BytesMut::new();
            chain.frames = 0;
            chain.discarding = pcb.is_chained();
            return Some(Inbound::Corrupt {
                reason: FrameError::MessageTooLong { len, max },
                skipped: frame_len,
            });
        }
        if chain.frames == 0 {
            chain.nad = nad;
        }
        chain.data.extend_from_slice(&inf);
        chain.frames += 1;
        if pcb.is_chained() {
            return None;
        }
        let frames = core::mem::take(&mut chain.frames);
        Some(Inbound::Message(Message {
            nad: chain.nad,
            pcb,
            unsolicited,
            payload: chain.data.split().freeze(),
            frames,
        }))
    }
}

/// A [`Reassembler`] with its own input buffer: push bytes in any chunking, poll items out.
/// For the simulator and tests; the tokio edge uses `codec::VipaCodec`, which decodes from
/// the `Framed` buffer directly.
///
/// ```
/// use emvbridge_protocol::frame::{Deframer, Inbound};
/// let mut d = Deframer::new();
/// d.push(&[0x01, 0x00, 0x02, 0x9F]);
/// assert!(d.poll().is_none()); // waits for the rest
/// d.push(&[0x24, 0xB8]);
/// let Some(Inbound::Message(m)) = d.poll() else { panic!() };
/// assert_eq!(&m.payload[..], &[0x9F, 0x24]);
/// ```
#[derive(Debug, Default)]
pub struct Deframer {
    buf: BytesMut,
    reassembler: Reassembler,
}

impl Deframer {
    /// An empty deframer bounded by [`MAX_MESSAGE_LEN`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty deframer with a custom message bound.
    pub fn with_max_message_len(max: usize) -> Self {
        Deframer {
            buf: BytesMut::new(),
            reassembler: Reassembler::with_max_message_len(max),
        }
    }

    /// Appends received bytes. Poll until `None` after each push: the buffer only holds what
    /// has not been decoded yet (at most one incomplete frame once polled dry).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next item, or `None` when more bytes are needed.
    #[must_use]
    pub fn poll(&mut self) -> Option<Inbound> {
        self.reassembler.decode(&mut self.buf)
    }

    /// See [`Reassembler::discard_stalled`].
    #[must_use]
    pub fn discard_stalled(&mut self) -> Option<Inbound> {
        self.reassembler.discard_stalled(&mut self.buf)
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a chained message is partly received.
    pub fn in_chain(&self) -> bool {
        self.reassembler.in_chain()
    }

    /// Drops buffered bytes and partial messages.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.reassembler.reset();
    }
}
