//! Emitting BER-TLV into a `BytesMut`, with every length computed here and nowhere else.

use bytes::{BufMut, Bytes, BytesMut};

use super::tag::Tag;

/// The longest value the builder can encode: a three-byte long-form length (`83 xx xx xx`),
/// the largest EMV Book 3 Annex B allows and the parser accepts.
pub const MAX_VALUE_LEN: usize = 0xFF_FFFF;

/// Writes a tag's bytes.
#[inline]
pub fn encode_tag(tag: Tag, buf: &mut BytesMut) {
    let (bytes, n) = tag.to_bytes();
    buf.put_slice(&bytes[..n]);
}

/// Bytes a length field for a value of `len` bytes occupies (1 to 4).
#[inline]
pub const fn length_encoded_len(len: usize) -> usize {
    match len {
        0..=0x7F => 1,
        0x80..=0xFF => 2,
        0x100..=0xFFFF => 3,
        _ => 4,
    }
}

/// Writes a length field in the shortest form (EMV Book 3 B2).
///
/// # Panics
/// If `len` exceeds [`MAX_VALUE_LEN`]: no EMV or VIPA object can be that long, so it is a
/// programming error, not a wire condition.
#[inline]
pub fn encode_length(len: usize, buf: &mut BytesMut) {
    assert!(
        len <= MAX_VALUE_LEN,
        "tlv value of {len} bytes exceeds the 3-byte length form"
    );
    let mut tmp = [0u8; 4];
    let n = write_length(len, &mut tmp);
    buf.put_slice(&tmp[..n]);
}

fn write_length(len: usize, out: &mut [u8; 4]) -> usize {
    let be = (len as u32).to_be_bytes();
    match length_encoded_len(len) {
        1 => {
            out[0] = be[3];
            1
        }
        2 => {
            out[0] = 0x81;
            out[1] = be[3];
            2
        }
        3 => {
            out[0] = 0x82;
            out[1..3].copy_from_slice(&be[2..]);
            3
        }
        _ => {
            out[0] = 0x83;
            out[1..4].copy_from_slice(&be[1..]);
            4
        }
    }
}

/// Builds nested BER-TLV into a `BytesMut`.
///
/// Constructed objects are written by a closure; the builder reserves a one-byte length,
/// writes the children in place, then widens the length field only if the content needs it,
/// so a typical message is written once with no intermediate buffers.
///
/// ```
/// use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
/// let mut b = TlvBuilder::new();
/// b.constructed(Tag::VIPA_E0, |b| {
///     b.primitive(Tag::TRANSACTION_TYPE, &[0x00]);
///     b.primitive(Tag::AMOUNT_AUTHORISED, &[0, 0, 0, 0, 0x32, 0x50]);
/// });
/// let bytes = b.freeze();
/// assert_eq!(&bytes[..], &[0xE0, 0x0C, 0x9C, 0x01, 0x00, 0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x32, 0x50]);
/// let e0 = tlv::parse(&bytes).next().unwrap().unwrap();
/// assert_eq!(tlv::find(&bytes, Tag::AMOUNT_AUTHORISED).unwrap().value(), &[0, 0, 0, 0, 0x32, 0x50]);
/// assert_eq!(e0.children().count(), 2);
/// ```
#[derive(Debug, Default, Clone)]
pub struct TlvBuilder {
    buf: BytesMut,
}

impl TlvBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        TlvBuilder {
            buf: BytesMut::with_capacity(capacity),
        }
    }

    /// A builder that appends to `buf` (e.g. after a command header already written there).
    pub fn from_buf(buf: BytesMut) -> Self {
        TlvBuilder { buf }
    }

    /// Appends a primitive object.
    pub fn primitive(&mut self, tag: Tag, value: &[u8]) -> &mut Self {
        self.buf
            .reserve(tag.encoded_len() + length_encoded_len(value.len()) + value.len());
        encode_tag(tag, &mut self.buf);
        encode_length(value.len(), &mut self.buf);
        self.buf.put_slice(value);
        self
    }

    /// Appends a constructed object whose children `content` writes.
    pub fn constructed(&mut self, tag: Tag, content: impl FnOnce(&mut Self)) -> &mut Self {
        encode_tag(tag, &mut self.buf);
        let len_at = self.buf.len();
        self.buf.put_u8(0);
        content(self);
        let body_at = len_at + 1;
        let body_len = self.buf.len() - body_at;
        assert!(
            body_len <= MAX_VALUE_LEN,
            "constructed tlv of {body_len} bytes exceeds the 3-byte length form"
        );
        let mut field = [0u8; 4];
        let n = write_length(body_len, &mut field);
        if n > 1 {
            // Widen the length field: shift the children right by the extra bytes.
            let extra = n - 1;
            self.buf.resize(self.buf.len() + extra, 0);
            self.buf
                .copy_within(body_at..body_at + body_len, body_at + extra);
        }
        self.buf[len_at..len_at + n].copy_from_slice(&field[..n]);
        self
    }

    /// Appends bytes that are already BER-TLV (e.g. a passed-through `FF7F` or issuer script).
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.buf.put_slice(encoded);
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer, for further writing.
    pub fn into_inner(self) -> BytesMut {
        self.buf
    }

    /// The encoded bytes.
    pub fn freeze(self) -> Bytes {
        self.buf.freeze()
    }
}
