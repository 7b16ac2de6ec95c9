//! Zero-copy BER-TLV, as EMV 4.4 Book 3 Annex B restricts ISO/IEC 8825-1.
//!
//! Walking never allocates: [`parse`] returns a [`TlvIter`] of borrowed [`Tlv`] views, and a
//! constructed object's [`Tlv::children`] is another iterator over the same bytes. Recursion
//! is the caller's and is bounded: an iterator deeper than [`MAX_TLV_DEPTH`] yields
//! [`TlvError::DepthExceeded`] instead of descending.
//!
//! Rules applied (Book 3 Annex B):
//! - tags of one or more bytes: low five bits `11111` in the first byte mean more bytes follow,
//!   each with b8 set while another follows (B1); more than four bytes is [`TlvError::TagTooLong`];
//! - lengths in short form (`00`–`7F`) or long form `81 xx`, `82 xxxx`, `83 xxxxxx` (B2);
//!   the indefinite form `80` is not allowed in EMV, and `84`+ is beyond any EMV object;
//! - `00` bytes before, between or after data objects are padding and are skipped (B3).
//!
//! Use [`TlvBuilder`] to emit: it computes every length, so nothing else in the project does.

mod builder;
mod tag;

pub use builder::{encode_length, encode_tag, length_encoded_len, TlvBuilder, MAX_VALUE_LEN};
pub use tag::{ParseTagError, Tag, TagClass};

use core::fmt;

use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::{be_u16, be_u24, be_u8};
use nom::{IResult, Parser};

impl TlvBuilder {
    /// Appends a copy of a parsed object, byte for byte.
    pub fn tlv(&mut self, tlv: &Tlv<'_>) -> &mut Self {
        self.raw(tlv.raw())
    }
}

/// The deepest nesting a walk will descend into.
///
/// EMV data nests three or four levels (`E4` › `FF7F` › value; `6F` › `A5` › `BF0C` › `61`);
/// anything far deeper is hostile input, refused before it can exhaust a stack.
pub const MAX_TLV_DEPTH: usize = 16;

/// Why a BER-TLV walk stopped. Every variant carries the byte offset, from the start of the
/// buffer given to [`parse`], of the data object (or length field) at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The input ended inside a tag, a length or a value.
    #[error("truncated tlv at byte offset {offset}")]
    Truncated {
        /// Offset of the data object whose encoding runs past the end.
        offset: usize,
    },
    /// A long-form length of more than three bytes (`84`…`FF`).
    #[error("bad length at byte offset {offset}")]
    BadLength {
        /// Offset of the first length byte.
        offset: usize,
    },
    /// The indefinite length form `80`, which EMV forbids.
    #[error("indefinite length at byte offset {offset}")]
    IndefiniteLength {
        /// Offset of the length byte.
        offset: usize,
    },
    /// A tag of more than four bytes.
    #[error("tag too long at byte offset {offset}")]
    TagTooLong {
        /// Offset of the first tag byte.
        offset: usize,
    },
    /// Constructed objects nested deeper than [`MAX_TLV_DEPTH`].
    #[error("tlv nested deeper than 16 levels at byte offset {offset}")]
    DepthExceeded {
        /// Offset of the first child that would exceed the limit.
        offset: usize,
    },
}

impl TlvError {
    /// The byte offset the error refers to.
    pub const fn offset(&self) -> usize {
        match *self {
            TlvError::Truncated { offset }
            | TlvError::BadLength { offset }
            | TlvError::IndefiniteLength { offset }
            | TlvError::TagTooLong { offset }
            | TlvError::DepthExceeded { offset } => offset,
        }
    }
}

/// A borrowed view of one data object: its tag and the bytes of its value, inside the caller's buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    tag: Tag,
    /// The whole encoding: tag, length and value.
    raw: &'a [u8],
    header_len: u8,
    depth: u8,
    /// b6 of the first tag byte, kept so that walking needs no tag arithmetic.
    constructed: bool,
    offset: usize,
}

impl<'a> Tlv<'a> {
    /// The tag.
    #[inline]
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The value bytes (for a constructed object, the encoded children).
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        // `header_len <= raw.len()` by construction in `TlvIter::next`.
        self.raw.get(self.header_len as usize..).unwrap_or_default()
    }

    /// Whether the tag's constructed bit is set (the value is a sequence of TLVs).
    #[inline]
    pub fn is_constructed(&self) -> bool {
        self.constructed
    }

    /// The children of a constructed object; empty for a primitive one.
    ///
    /// Yields [`TlvError::DepthExceeded`] if this object is already [`MAX_TLV_DEPTH`] deep.
    #[inline]
    pub fn children(&self) -> TlvIter<'a> {
        let input = if self.is_constructed() {
            self.value()
        } else {
            &[]
        };
        TlvIter {
            input,
            offset: self.offset + self.header_len as usize,
            depth: self.depth + 1,
        }
    }

    /// Depth-first search of this object's descendants (not itself) for `tag`.
    pub fn find(&self, tag: Tag) -> Option<Tlv<'a>> {
        find_in(self.children(), tag)
    }

    /// The complete encoding: tag, length and value.
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Number of bytes of tag and length.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len as usize
    }

    /// Length of the value.
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len() - self.header_len as usize
    }

    /// Whether the value is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of the first tag byte from the start of the buffer given to [`parse`].
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Nesting depth: 0 for top-level objects.
    #[inline]
    pub fn depth(&self) -> usize {
        self.depth as usize
    }
}

impl fmt::Debug for Tlv<'_> {
    /// Shows the value in hex unless the tag holds cardholder data ([`Tag::is_sensitive`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tlv");
        d.field("tag", &self.tag)
            .field("len", &self.len())
            .field("offset", &self.offset);
        if self.tag.is_sensitive() {
            d.field("value", &"<masked>");
        } else if !self.is_constructed() {
            d.field("value", &HexDisplay(self.value()));
        }
        d.finish()
    }
}

struct HexDisplay<'a>(&'a [u8]);
impl fmt::Debug for HexDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Iterator over the data objects at one level of a BER-TLV buffer.
///
/// After the first error it yields nothing more: the rest of that level cannot be framed
/// (the iterator empties its input, so "done" needs no state of its own).
#[derive(Clone, Debug)]
pub struct TlvIter<'a> {
    input: &'a [u8],
    /// Absolute offset of `input[0]`.
    offset: usize,
    depth: u8,
}

impl<'a> TlvIter<'a> {
    /// The bytes not yet walked at this level.
    pub fn remaining(&self) -> &'a [u8] {
        self.input
    }
}

/// Walks the top level of `input`.
///
/// ```
/// use emvbridge_protocol::tlv::{self, Tag};
/// let data = [0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x12, 0x34, 0x5A, 0x01, 0x99];
/// let tags: Vec<Tag> = tlv::parse(&data).map(|t| t.unwrap().tag()).collect();
/// assert_eq!(tags, [Tag::AMOUNT_AUTHORISED, Tag::PAN]);
/// ```
#[inline]
pub fn parse(input: &[u8]) -> TlvIter<'_> {
    TlvIter {
        input,
        offset: 0,
        depth: 0,
    }
}

/// Every data object of `input`, depth-first and in pre-order, descending into constructed
/// objects: the whole tree as one flat iterator ([`Walk`]).
///
/// ```
/// use emvbridge_protocol::tlv::{self, Tag};
/// let data = [0x70, 0x05, 0x5F, 0x2A, 0x02, 0x08, 0x40, 0x9C, 0x01, 0x00];
/// let tags: Vec<(Tag, usize)> = tlv::walk(&data).map(|t| t.map(|t| (t.tag(), t.depth()))).collect::<Result<_, _>>().unwrap();
/// assert_eq!(tags, [(Tag(0x70), 0), (Tag(0x5F2A), 1), (Tag(0x9C), 0)]);
/// ```
#[inline]
pub fn walk(input: &[u8]) -> Walk<'_> {
    Walk {
        current: input,
        depth: 0,
        parents: [&[]; MAX_TLV_DEPTH + 1],
        origin: input.as_ptr() as usize,
    }
}

/// The iterator of [`walk`]: a full walk without recursion, over an explicit stack of at most
/// [`MAX_TLV_DEPTH`] + 1 enclosing levels (the bytes after each open template), so that it
/// allocates nothing, cannot exhaust the call stack and costs no call per template. The level
/// being read is a field of its own, which the optimiser keeps in registers; offsets are
/// differences of addresses, so none are carried.
///
/// It yields exactly the nodes and the error of a recursive walk through [`Tlv::children`]
/// that stops at the first error (property-tested), and ends after that error.
#[derive(Clone, Debug)]
pub struct Walk<'a> {
    /// The unread bytes of the level being walked.
    current: &'a [u8],
    /// Nesting depth of `current`: 0 for the top level.
    depth: usize,
    /// The unread bytes of each enclosing level; `parents[d]` resumes depth `d`.
    parents: [&'a [u8]; MAX_TLV_DEPTH + 1],
    /// Address of the first input byte.
    origin: usize,
}

impl<'a> Walk<'a> {
    fn offset_of(&self, at: &[u8]) -> usize {
        (at.as_ptr() as usize).wrapping_sub(self.origin)
    }

    /// Ends the walk with `e`.
    #[cold]
    fn fail(&mut self, e: TlvError) -> Option<Result<Tlv<'a>, TlvError>> {
        self.depth = 0;
        self.current = &[];
        Some(Err(e))
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let input = self.current;
            let Some(&first) = input.first() else {
                if self.depth == 0 {
                    return None;
                }
                self.depth -= 1;
                self.current = self.parents.get(self.depth).copied().unwrap_or_default();
                continue;
            };
            if first == 0 {
                // Annex B: '00' bytes before, between or after data objects carry no meaning.
                let pad = input.iter().take_while(|b| **b == 0).count();
                self.current = input.get(pad..).unwrap_or_default();
                continue;
            }
            if self.depth > MAX_TLV_DEPTH {
                let offset = self.offset_of(input);
                return self.fail(TlvError::DepthExceeded { offset });
            }
            let Some((tag, header_len, used)) = well_formed_object(input, first) else {
                return self.malformed(input, first);
            };
            let (Some(raw), Some(rest)) = (input.get(..used), input.get(used..)) else {
                return self.malformed(input, first);
            };
            let constructed = first & 0x20 != 0;
            let tlv = Tlv {
                tag,
                raw,
                header_len,
                depth: self.depth as u8,
                constructed,
                offset: self.offset_of(raw),
            };
            if constructed {
                // Descend; the check above bounds the depth, and with it the stack.
                if let Some(parent) = self.parents.get_mut(self.depth) {
                    *parent = rest;
                }
                self.depth += 1;
                self.current = raw.get(usize::from(header_len)..).unwrap_or_default();
            } else {
                self.current = rest;
            }
            return Some(Ok(tlv));
        }
    }
}

impl<'a> Walk<'a> {
    /// The nom grammar says what is wrong, with its offset; the walk ends.
    #[cold]
    fn malformed(&mut self, input: &'a [u8], first: u8) -> Option<Result<Tlv<'a>, TlvError>> {
        let mut it = TlvIter {
            input,
            offset: self.offset_of(input),
            depth: self.depth as u8,
        };
        let e = match it.slow_next(first) {
            Some(Err(e)) => e,
            // Unreachable while both grammars agree (property-tested); stop anyway.
            _ => TlvError::Truncated {
                offset: self.offset_of(input),
            },
        };
        self.fail(e)
    }
}

impl core::iter::FusedIterator for Walk<'_> {}

/// Depth-first (pre-order) search for the first object with `tag`, through constructed objects.
///
/// A malformed subtree ends the search of that subtree only; a malformed top level ends it all.
pub fn find(input: &[u8], tag: Tag) -> Option<Tlv<'_>> {
    find_in(parse(input), tag)
}

fn find_in(iter: TlvIter<'_>, tag: Tag) -> Option<Tlv<'_>> {
    for item in iter {
        let Ok(tlv) = item else { return None };
        if tlv.tag == tag {
            return Some(tlv);
        }
        if tlv.is_constructed() {
            if let Some(found) = find_in(tlv.children(), tag) {
                return Some(found);
            }
        }
    }
    None
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    // Always inlined: a call per data object costs more than the whole fast path.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let mut first = *self.input.first()?;
        if first == 0 {
            // Annex B: '00' bytes before, between or after data objects carry no meaning.
            let pad = self.input.iter().take_while(|b| **b == 0).count();
            self.input = self.input.get(pad..).unwrap_or_default();
            self.offset += pad;
            first = *self.input.first()?;
        }
        if self.depth as usize > MAX_TLV_DEPTH {
            self.input = &[];
            return Some(Err(TlvError::DepthExceeded {
                offset: self.offset,
            }));
        }
        if let Some((tag, header_len, used)) = well_formed_object(self.input, first) {
            if let (Some(raw), Some(rest)) = (self.input.get(..used), self.input.get(used..)) {
                let tlv = Tlv {
                    tag,
                    raw,
                    header_len,
                    depth: self.depth,
                    constructed: first & 0x20 != 0,
                    offset: self.offset,
                };
                self.input = rest;
                self.offset += used;
                return Some(Ok(tlv));
            }
        }
        self.slow_next(first)
    }
}

impl<'a> TlvIter<'a> {
    /// The nom grammar: the reference for every shape, and the one place errors come from.
    #[cold]
    fn slow_next(&mut self, first: u8) -> Option<Result<Tlv<'a>, TlvError>> {
        match data_object(self.input) {
            Ok((rest, (tag, header_len))) => {
                let used = self.input.len() - rest.len();
                let tlv = Tlv {
                    tag,
                    raw: self.input.get(..used).unwrap_or_default(),
                    header_len,
                    depth: self.depth,
                    constructed: first & 0x20 != 0,
                    offset: self.offset,
                };
                self.input = rest;
                self.offset += used;
                Some(Ok(tlv))
            }
            Err(e) => {
                let e = match e {
                    nom::Err::Error(e) | nom::Err::Failure(e) => e,
                    // Complete parsers never ask for more input.
                    nom::Err::Incomplete(_) => Fault {
                        kind: FaultKind::Truncated,
                        remaining: 0,
                    },
                };
                let here = self.input.len().saturating_sub(e.remaining) + self.offset;
                let at = self.offset;
                self.input = &[];
                Some(Err(match e.kind {
                    FaultKind::Truncated => TlvError::Truncated { offset: at },
                    FaultKind::BadLength => TlvError::BadLength { offset: here },
                    FaultKind::Indefinite => TlvError::IndefiniteLength { offset: here },
                    FaultKind::TagTooLong => TlvError::TagTooLong { offset: at },
                }))
            }
        }
    }
}

impl core::iter::FusedIterator for TlvIter<'_> {}

// --- the nom grammar -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Truncated,
    BadLength,
    Indefinite,
    TagTooLong,
}

/// The parse error: what went wrong and how many input bytes were left at that point.
/// Two words, `Copy`, no allocation: errors are as cheap as successes on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fault {
    kind: FaultKind,
    remaining: usize,
}

impl ParseError<&[u8]> for Fault {
    fn from_error_kind(input: &[u8], _kind: ErrorKind) -> Self {
        // The complete-input primitives used here fail only for lack of bytes.
        Fault {
            kind: FaultKind::Truncated,
            remaining: input.len(),
        }
    }

    fn append(_input: &[u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

type PResult<'a, O> = IResult<&'a [u8], O, Fault>;

fn fault<O>(kind: FaultKind, at: &[u8]) -> PResult<'_, O> {
    Err(nom::Err::Error(Fault {
        kind,
        remaining: at.len(),
    }))
}

/// Tag field, EMV Book 3 B1 / ISO/IEC 8825-1 8.1.2.
#[inline]
fn tag(input: &[u8]) -> PResult<'_, Tag> {
    let (mut rest, first) = be_u8(input)?;
    let mut value = u32::from(first);
    if first & 0x1F == 0x1F {
        // Subsequent bytes: b8 = 1 means another byte follows.
        let mut len = 1;
        loop {
            let (r, b) = be_u8(rest)?;
            rest = r;
            len += 1;
            if len > 4 {
                return fault(FaultKind::TagTooLong, input);
            }
            value = (value << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((rest, Tag(value)))
}

/// Length field, EMV Book 3 B2 / ISO/IEC 8825-1 8.1.3.
#[inline]
fn length(input: &[u8]) -> PResult<'_, usize> {
    let (rest, first) = be_u8(input)?;
    match first {
        0x00..=0x7F => Ok((rest, usize::from(first))),
        0x80 => fault(FaultKind::Indefinite, input),
        0x81 => be_u8(rest).map(|(r, n)| (r, usize::from(n))),
        0x82 => be_u16(rest).map(|(r, n)| (r, usize::from(n))),
        0x83 => be_u24(rest).map(|(r, n)| (r, n as usize)),
        _ => fault(FaultKind::BadLength, input),
    }
}

/// Every well-formed data object — tags of one to four bytes, short, `81`, `82` and `83`
/// lengths, wholly present — decoded straight from the slice, branch by branch. Returns the
/// tag, the header length and the total length, or `None` for anything malformed, which then
/// goes through the nom grammar ([`data_object`]), the reference that also produces every
/// error. A property test checks that both agree on every input.
///
/// Why: nom 8's slice primitives are not `#[inline]` across crates, and calling them per node
/// made them a third of a full walk's time; the VIPA templates' three-byte tags (`DFDF12`…)
/// and `83` lengths must not leave the fast path either (measured with `cargo bench --bench
/// tlv`).
#[inline(always)]
fn well_formed_object(input: &[u8], first: u8) -> Option<(Tag, u8, usize)> {
    let (tag, at) = if first & 0x1F != 0x1F {
        (u32::from(first), 1)
    } else {
        // B1: subsequent tag bytes while b8 is set, at most four bytes in all.
        let b1 = *input.get(1)?;
        let t2 = (u32::from(first) << 8) | u32::from(b1);
        if b1 & 0x80 == 0 {
            (t2, 2)
        } else {
            let b2 = *input.get(2)?;
            let t3 = (t2 << 8) | u32::from(b2);
            if b2 & 0x80 == 0 {
                (t3, 3)
            } else {
                let b3 = *input.get(3)?;
                if b3 & 0x80 != 0 {
                    return None;
                }
                ((t3 << 8) | u32::from(b3), 4)
            }
        }
    };
    let l0 = *input.get(at)?;
    let (len, header) = if l0 < 0x80 {
        (usize::from(l0), at + 1)
    } else {
        // B2: long form of one to three length bytes.
        match l0 {
            0x81 => (usize::from(*input.get(at + 1)?), at + 2),
            0x82 => {
                let b = input.get(at + 1..at + 3)?;
                (usize::from(u16::from_be_bytes([b[0], b[1]])), at + 3)
            }
            0x83 => {
                let b = input.get(at + 1..at + 4)?;
                (
                    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
                    at + 4,
                )
            }
            _ => return None,
        }
    };
    let total = header + len;
    (total <= input.len()).then_some((Tag(tag), header as u8, total))
}

/// One data object: returns the tag and the header length; the caller slices the value.
#[inline]
fn data_object(input: &[u8]) -> PResult<'_, (Tag, u8)> {
    let (rest, t) = tag(input)?;
    let (rest, len) = length(rest)?;
    let header_len = (input.len() - rest.len()) as u8;
    let (rest, _value) = take(len).parse(rest)?;
    Ok((rest, (t, header_len)))
}

#[cfg(test)]
mod tests;
