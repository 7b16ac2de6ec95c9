//! Data Object Lists (PDOL `9F38`, CDOL1 `8C`, CDOL2 `8D`, DDOL `9F49`, TDOL `97`) and the
//! data built from them (EMV Book 3, §5.4).
//!
//! A DOL is a list of (tag, length) pairs with no values. [`parse_dol`] walks it without
//! allocating; [`build_dol`] concatenates, for each entry, the value found in a
//! [`TagSource`], fitted to the requested length by the §5.4 rules; [`DolData`] is the card's
//! side, the built data read back field by field against its DOL.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use super::dictionary::{self, Format};
use crate::tlv::{self, Tag};

/// Bound on the data built from one DOL. Real DOL data goes into one command APDU
/// (at most 255 bytes); 1024 leaves room and stops a hostile list of 255-byte entries.
pub const MAX_DOL_DATA_LEN: usize = 1024;

/// Why a DOL could not be walked or built. Offsets are from the start of the DOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DolError {
    /// The DOL ended inside a tag or a length.
    #[error("truncated dol at byte offset {offset}")]
    Truncated {
        /// Offset of the entry.
        offset: usize,
    },
    /// A tag of more than four bytes.
    #[error("dol tag too long at byte offset {offset}")]
    TagTooLong {
        /// Offset of the entry.
        offset: usize,
    },
    /// The built data would exceed [`MAX_DOL_DATA_LEN`].
    #[error("dol data longer than 1024 bytes")]
    TooLong,
    /// DOL data read back ([`DolData::new`]) is not as long as its DOL asks for.
    #[error("dol data of {found} bytes where the dol asks for {expected}")]
    LengthMismatch {
        /// The sum of the entries' lengths.
        expected: usize,
        /// The length of the data.
        found: usize,
    },
}

/// One DOL entry: the tag wanted and the length the card wants it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DolEntry {
    /// The requested tag.
    pub tag: Tag,
    /// The requested length in bytes.
    pub len: usize,
}

/// Iterator over the entries of a DOL. Stops after the first error.
#[derive(Debug, Clone)]
pub struct DolIter<'a> {
    input: &'a [u8],
    offset: usize,
    done: bool,
}

/// Walks a DOL.
pub fn parse_dol(dol: &[u8]) -> DolIter<'_> {
    DolIter {
        input: dol,
        offset: 0,
        done: false,
    }
}

impl DolIter<'_> {
    fn entry(&self) -> Result<(DolEntry, usize), DolError> {
        let at = self.offset;
        let b = self.input;
        let first = *b.first().ok_or(DolError::Truncated { offset: at })?;
        let mut tag = u32::from(first);
        let mut i = 1;
        if first & 0x1F == 0x1F {
            // EMV Book 3 Annex B1: subsequent tag bytes while b8 is set.
            loop {
                let next = *b.get(i).ok_or(DolError::Truncated { offset: at })?;
                i += 1;
                if i > 4 {
                    return Err(DolError::TagTooLong { offset: at });
                }
                tag = (tag << 8) | u32::from(next);
                if next & 0x80 == 0 {
                    break;
                }
            }
        }
        // EMV Book 3 §5.4: each entry is "a tag identifying the data object followed by a
        // one-byte length"; `81`, `80` or `FF` there are lengths 129, 128 and 255, not
        // BER length prefixes.
        let len = usize::from(*b.get(i).ok_or(DolError::Truncated { offset: at })?);
        i += 1;
        Ok((DolEntry { tag: Tag(tag), len }, i))
    }
}

impl Iterator for DolIter<'_> {
    type Item = Result<DolEntry, DolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.input.is_empty() {
            return None;
        }
        match self.entry() {
            Ok((entry, used)) => {
                self.input = self.input.get(used..).unwrap_or_default();
                self.offset += used;
                Some(Ok(entry))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for DolIter<'_> {}

/// Total length of the data a DOL asks for, or the first error.
pub fn dol_data_len(dol: &[u8]) -> Result<usize, DolError> {
    parse_dol(dol).try_fold(0usize, |acc, e| {
        let total = acc + e?.len;
        if total > MAX_DOL_DATA_LEN {
            Err(DolError::TooLong)
        } else {
            Ok(total)
        }
    })
}

/// Where DOL values come from: the terminal's data, the card's records, or both.
pub trait TagSource {
    /// The value of `tag`, if present.
    fn get(&self, tag: Tag) -> Option<&[u8]>;
}

/// A BER-TLV buffer is a source: the first occurrence (depth-first) of the tag.
impl TagSource for [u8] {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        tlv::find(self, tag).map(|t| t.value())
    }
}

/// A list of (tag, value) pairs; the first match wins.
impl TagSource for [(Tag, &[u8])] {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        self.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }
}

impl<T: TagSource + ?Sized> TagSource for &T {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        (**self).get(tag)
    }
}

impl<T: TagSource + ?Sized> TagSource for Box<T> {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        (**self).get(tag)
    }
}

impl TagSource for Vec<u8> {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        TagSource::get(self.as_slice(), tag)
    }
}

/// A data set kept as a map from tag to value.
impl<V: AsRef<[u8]>> TagSource for BTreeMap<Tag, V> {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        BTreeMap::get(self, &tag).map(AsRef::as_ref)
    }
}

/// A data set kept as a map from tag number (`Tag.0`) to value, as the simulator's kernel and
/// the cryptogram tools keep it.
impl<V: AsRef<[u8]>> TagSource for BTreeMap<u32, V> {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        BTreeMap::get(self, &tag.0).map(AsRef::as_ref)
    }
}

/// Two sources: `A` first (e.g. terminal data), then `B` (e.g. card data).
impl<A: TagSource, B: TagSource> TagSource for (A, B) {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        self.0.get(tag).or_else(|| self.1.get(tag))
    }
}

/// Appends `value` fitted to `len` bytes by the EMV Book 3 §5.4 rules for `format`:
/// numeric (`n`) is right-justified (truncated or zero-padded on the left); compressed
/// numeric (`cn`) is truncated on the right or padded with `FF`; anything else is truncated
/// on the right or padded with `00`.
pub fn fit_value(value: &[u8], len: usize, format: Format, out: &mut BytesMut) {
    let pad = len.saturating_sub(value.len());
    match format {
        Format::N => {
            out.put_bytes(0x00, pad);
            let skip = value.len().saturating_sub(len);
            out.put_slice(value.get(skip..).unwrap_or_default());
        }
        _ => {
            let take = value.len().min(len);
            out.put_slice(value.get(..take).unwrap_or_default());
            out.put_bytes(if format == Format::Cn { 0xFF } else { 0x00 }, pad);
        }
    }
}

/// Builds the data for `dol` from `source`, appending it to `out`; returns its length.
///
/// Per EMV Book 3 §5.4: a tag the source lacks, or a constructed (template) tag, gives `len`
/// zero bytes. The format that decides the padding comes from the dictionary; a tag the
/// dictionary does not know but the source holds is treated as binary. On error `out` is
/// left as it was.
pub fn build_dol<S: TagSource + ?Sized>(
    dol: &[u8],
    source: &S,
    out: &mut BytesMut,
) -> Result<usize, DolError> {
    let total = dol_data_len(dol)?;
    out.reserve(total);
    let start = out.len();
    for entry in parse_dol(dol) {
        let DolEntry { tag, len } = entry?;
        match source.get(tag) {
            Some(value) if !tag.is_constructed() => {
                let format = dictionary::lookup(tag).map_or(Format::B, |i| i.format);
                fit_value(value, len, format, out);
            }
            _ => out.put_bytes(0x00, len),
        }
    }
    Ok(out.len() - start)
}

/// [`build_dol`] into a new `Vec`.
pub fn build_dol_vec<S: TagSource + ?Sized>(dol: &[u8], source: &S) -> Result<Vec<u8>, DolError> {
    let mut out = BytesMut::new();
    build_dol(dol, source, &mut out)?;
    Ok(out.to_vec())
}

/// DOL data read back against its DOL: what a card does with the data of GENERATE AC or GET
/// PROCESSING OPTIONS. Per EMV Book 3 §5.4 the data is the concatenation, in DOL order, of
/// one field per entry of exactly the entry's length, with no tags or lengths of its own; so
/// once the total length checks out, every field is found by position.
///
/// A zero-copy view: [`DolData::value`] and [`DolData::iter`] borrow from the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DolData<'a> {
    dol: &'a [u8],
    data: &'a [u8],
}

impl<'a> DolData<'a> {
    /// Checks that `dol` walks and that `data` is exactly as long as it asks for.
    ///
    /// # Errors
    /// The first [`DolError`] of the walk, [`DolError::TooLong`], or
    /// [`DolError::LengthMismatch`].
    pub fn new(dol: &'a [u8], data: &'a [u8]) -> Result<DolData<'a>, DolError> {
        let expected = dol_data_len(dol)?;
        if expected != data.len() {
            return Err(DolError::LengthMismatch {
                expected,
                found: data.len(),
            });
        }
        Ok(DolData { dol, data })
    }

    /// The DOL.
    pub fn dol(&self) -> &'a [u8] {
        self.dol
    }

    /// The data.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The entries with their fields, in DOL order.
    pub fn iter(&self) -> DolFields<'a> {
        DolFields {
            entries: parse_dol(self.dol),
            data: self.data,
        }
    }

    /// The field of the first entry that asks for `tag`.
    pub fn value(&self, tag: Tag) -> Option<&'a [u8]> {
        self.iter().find(|(e, _)| e.tag == tag).map(|(_, v)| v)
    }
}

impl<'a> IntoIterator for DolData<'a> {
    type Item = (DolEntry, &'a [u8]);
    type IntoIter = DolFields<'a>;

    fn into_iter(self) -> DolFields<'a> {
        self.iter()
    }
}

/// The field of the first entry for the tag; a tag the DOL does not list is absent.
impl TagSource for DolData<'_> {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        self.value(tag)
    }
}

/// Iterator over the `(entry, field)` pairs of a [`DolData`].
#[derive(Debug, Clone)]
pub struct DolFields<'a> {
    entries: DolIter<'a>,
    data: &'a [u8],
}

impl<'a> Iterator for DolFields<'a> {
    type Item = (DolEntry, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // `DolData::new` checked the walk and the total length; stopping at the first
        // surprise keeps this total anyway.
        let entry = self.entries.next()?.ok()?;
        let field = self.data.get(..entry.len)?;
        self.data = self.data.get(entry.len..).unwrap_or_default();
        Some((entry, field))
    }
}

impl core::iter::FusedIterator for DolFields<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // A typical Visa PDOL: TTQ(4) amount(6) other(6) country(2) TVR(5) currency(2) date(3)
    // type(1) UN(4).
    const PDOL: &[u8] = &[
        0x9F, 0x66, 0x04, 0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F, 0x1A, 0x02, 0x95, 0x05, 0x5F,
        0x2A, 0x02, 0x9A, 0x03, 0x9C, 0x01, 0x9F, 0x37, 0x04,
    ];

    #[test]
    fn walks_a_pdol() {
        let entries: Vec<DolEntry> = parse_dol(PDOL).map(Result::unwrap).collect();
        assert_eq!(entries.len(), 9);
        assert_eq!(
            entries[0],
            DolEntry {
                tag: Tag::TTQ,
                len: 4
            }
        );
        assert_eq!(
            entries[4],
            DolEntry {
                tag: Tag::TVR,
                len: 5
            }
        );
        assert_eq!(
            entries[8],
            DolEntry {
                tag: Tag::UNPREDICTABLE_NUMBER,
                len: 4
            }
        );
        assert_eq!(dol_data_len(PDOL), Ok(33));
    }

    #[test]
    fn dol_errors_carry_offsets() {
        let e: Vec<_> = parse_dol(&[0x9F, 0x02, 0x06, 0x9F]).collect();
        assert_eq!(
            e,
            [
                Ok(DolEntry {
                    tag: Tag::AMOUNT_AUTHORISED,
                    len: 6
                }),
                Err(DolError::Truncated { offset: 3 })
            ]
        );
        assert_eq!(
            parse_dol(&[0x95]).next(),
            Some(Err(DolError::Truncated { offset: 0 }))
        );
        // EMV Book 3 §5.4: the length of a DOL entry is one byte, whatever its value.
        assert_eq!(
            parse_dol(&[0x9F, 0x33, 0xFF]).collect::<Vec<_>>(),
            [Ok(DolEntry {
                tag: Tag::TERMINAL_CAPABILITIES,
                len: 255
            })]
        );
        assert_eq!(
            parse_dol(&[0x95, 0x82, 0x9A, 0x80]).collect::<Vec<_>>(),
            [
                Ok(DolEntry {
                    tag: Tag::TVR,
                    len: 130
                }),
                Ok(DolEntry {
                    tag: Tag::TRANSACTION_DATE,
                    len: 128
                })
            ]
        );
        assert_eq!(
            parse_dol(&[0xDF, 0x81, 0x82, 0x83, 0x04, 1]).next(),
            Some(Err(DolError::TagTooLong { offset: 0 }))
        );
        // `81` is the length 129, not a BER long-form prefix: `05` is then the next tag.
        assert_eq!(
            parse_dol(&[0x95, 0x81, 0x05]).collect::<Vec<_>>(),
            [
                Ok(DolEntry {
                    tag: Tag::TVR,
                    len: 129
                }),
                Err(DolError::Truncated { offset: 2 })
            ]
        );
        let huge: Vec<u8> = [0x9F, 0x37, 0x7F].repeat(20);
        assert_eq!(dol_data_len(&huge), Err(DolError::TooLong));
        let mut out = BytesMut::from(&b"xy"[..]);
        assert_eq!(
            build_dol(&huge, &[0u8; 0][..], &mut out),
            Err(DolError::TooLong)
        );
        assert_eq!(&out[..], b"xy");
    }

    #[test]
    fn builds_pdol_data_from_tlv_terminal_data() {
        // Terminal data as the host sends it in the captured Start Transaction (§5.1) + UN.
        let terminal: &[u8] = &[
            0x9C, 0x01, 0x00, 0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x32, 0x50, 0x9F, 0x03, 0x06, 0, 0, 0,
            0, 0, 0, 0x9A, 0x03, 0x21, 0x03, 0x03, 0x9F, 0x1A, 0x02, 0x08, 0x40, 0x5F, 0x2A, 0x02,
            0x08, 0x40, 0x9F, 0x37, 0x04, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        let data = build_dol_vec(PDOL, terminal).unwrap();
        let expected: &[u8] = &[
            0, 0, 0, 0, // 9F66 missing → zeros
            0, 0, 0, 0, 0x32, 0x50, // 9F02
            0, 0, 0, 0, 0, 0, // 9F03
            0x08, 0x40, // 9F1A
            0, 0, 0, 0, 0, // 95 missing
            0x08, 0x40, // 5F2A
            0x21, 0x03, 0x03, // 9A
            0x00, // 9C
            0xDE, 0xAD, 0xBE, 0xEF, // 9F37
        ];
        assert_eq!(data, expected);
    }

    #[test]
    fn padding_and_truncation_rules() {
        let amount: &[u8] = &[0, 0, 0, 0x01, 0x23, 0x45];
        let pan: &[u8] = &[0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
        let aid: &[u8] = &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10];
        let src: &[(Tag, &[u8])] = &[
            (Tag::AMOUNT_AUTHORISED, amount),
            (Tag::PAN, pan),
            (Tag::AID_TERMINAL, aid),
        ];
        // n, longer: left-padded with 00.
        assert_eq!(
            build_dol_vec(&[0x9F, 0x02, 0x08], src).unwrap(),
            [0, 0, 0, 0, 0, 0x01, 0x23, 0x45]
        );
        // n, shorter: leftmost bytes truncated.
        assert_eq!(
            build_dol_vec(&[0x9F, 0x02, 0x02], src).unwrap(),
            [0x23, 0x45]
        );
        // cn, longer: right-padded with FF.
        assert_eq!(
            build_dol_vec(&[0x5A, 0x0A], src).unwrap(),
            [0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xFF, 0xFF]
        );
        // cn, shorter: truncated on the right.
        assert_eq!(
            build_dol_vec(&[0x5A, 0x03], src).unwrap(),
            [0x41, 0x11, 0x11]
        );
        // b, longer: right-padded with 00; shorter: truncated on the right.
        assert_eq!(
            build_dol_vec(&[0x9F, 0x06, 0x09], src).unwrap(),
            [0xA0, 0, 0, 0, 0x03, 0x10, 0x10, 0, 0]
        );
        assert_eq!(
            build_dol_vec(&[0x9F, 0x06, 0x05], src).unwrap(),
            [0xA0, 0, 0, 0, 0x03]
        );
        // constructed tag → zeros even if present; zero-length entry → nothing.
        let with_template: &[(Tag, &[u8])] = &[(Tag(0x70), &[1, 2])];
        assert_eq!(
            build_dol_vec(&[0x70, 0x02, 0x9F, 0x37, 0x00], with_template).unwrap(),
            [0, 0]
        );
    }

    #[test]
    fn chained_sources_and_tlv_nesting() {
        let card: &[u8] = &[0x70, 0x05, 0x5F, 0x34, 0x01, 0x01, 0x00];
        let terminal: &[(Tag, &[u8])] = &[
            (Tag::PAN_SEQUENCE_NUMBER, &[0x09]),
            (Tag::TVR, &[1, 2, 3, 4, 5]),
        ];
        // terminal first: 5F34 from the terminal list.
        assert_eq!(
            build_dol_vec(&[0x5F, 0x34, 0x01, 0x95, 0x05], &(terminal, card)).unwrap(),
            [0x09, 1, 2, 3, 4, 5]
        );
        // card first: 5F34 found inside template 70.
        assert_eq!(
            build_dol_vec(&[0x5F, 0x34, 0x01], &(card, terminal)).unwrap(),
            [0x01]
        );
    }

    #[test]
    fn map_sources() {
        let by_tag: BTreeMap<Tag, Vec<u8>> = [(Tag::TVR, vec![1, 2, 3, 4, 5])].into();
        let by_number: BTreeMap<u32, &[u8]> = [(0x9F37, &[9u8, 8, 7, 6][..])].into();
        assert_eq!(
            build_dol_vec(&[0x95, 0x05, 0x9F, 0x37, 0x04], &(&by_tag, &by_number)).unwrap(),
            [1, 2, 3, 4, 5, 9, 8, 7, 6]
        );
        assert_eq!(TagSource::get(&by_number, Tag::TVR), None);
    }

    #[test]
    fn reads_back_what_was_built() {
        let terminal: &[(Tag, &[u8])] = &[
            (Tag::AMOUNT_AUTHORISED, &[0, 0, 0, 0, 0x32, 0x50]),
            (Tag::TVR, &[0, 0, 0, 0x80, 0]),
            (Tag::UNPREDICTABLE_NUMBER, &[0xDE, 0xAD, 0xBE, 0xEF]),
        ];
        let data = build_dol_vec(PDOL, terminal).unwrap();
        let back = DolData::new(PDOL, &data).unwrap();
        assert_eq!(back.iter().count(), 9);
        assert_eq!(back.value(Tag::TTQ), Some(&[0u8; 4][..]));
        assert_eq!(
            back.value(Tag::AMOUNT_AUTHORISED),
            Some(&[0, 0, 0, 0, 0x32, 0x50][..])
        );
        assert_eq!(
            TagSource::get(&back, Tag::TVR),
            Some(&[0, 0, 0, 0x80, 0][..])
        );
        assert_eq!(
            back.value(Tag::UNPREDICTABLE_NUMBER),
            Some(&[0xDE, 0xAD, 0xBE, 0xEF][..])
        );
        // A tag the DOL does not list is absent, even if the data happens to hold its bytes.
        assert_eq!(back.value(Tag::PAN), None);
        let fields: Vec<u8> = back.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        assert_eq!(fields, data);
        // The card's data first, then the CDOL data: a chained source.
        let card: &[(Tag, &[u8])] = &[(Tag::TVR, &[9; 5])];
        assert_eq!(TagSource::get(&(card, back), Tag::TVR), Some(&[9u8; 5][..]));
    }

    #[test]
    fn read_back_errors() {
        assert_eq!(
            DolData::new(PDOL, &[0; 32]),
            Err(DolError::LengthMismatch {
                expected: 33,
                found: 32
            })
        );
        assert_eq!(
            DolData::new(PDOL, &[0; 34]),
            Err(DolError::LengthMismatch {
                expected: 33,
                found: 34
            })
        );
        assert_eq!(
            DolData::new(&[0x9F, 0x02], &[]),
            Err(DolError::Truncated { offset: 0 })
        );
        let empty = DolData::new(&[], &[]).unwrap();
        assert_eq!(empty.iter().next(), None);
        // Zero-length entries read back as empty fields.
        let z = DolData::new(&[0x9F, 0x37, 0x00, 0x95, 0x01], &[7]).unwrap();
        assert_eq!(z.value(Tag::UNPREDICTABLE_NUMBER), Some(&[][..]));
        assert_eq!(z.value(Tag::TVR), Some(&[7][..]));
    }

    proptest! {
        #[test]
        fn read_back_never_panics(dol in proptest::collection::vec(any::<u8>(), 0..64),
                                  data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(d) = DolData::new(&dol, &data) {
                let fields: Vec<u8> = d.iter().flat_map(|(_, v)| v.iter().copied()).collect();
                prop_assert_eq!(&fields, &data);
                for (e, v) in d.iter() {
                    prop_assert_eq!(v.len(), e.len);
                    prop_assert!(d.value(e.tag).is_some());
                }
            }
        }

        #[test]
        fn built_data_reads_back(dol in proptest::collection::vec(any::<u8>(), 0..64),
                                 src in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(data) = build_dol_vec(&dol, src.as_slice()) {
                let d = DolData::new(&dol, &data);
                prop_assert!(d.is_ok());
                prop_assert_eq!(d.map(|d| d.iter().count()), Ok(parse_dol(&dol).count()));
            }
        }

        #[test]
        fn arbitrary_dols_never_panic(dol in proptest::collection::vec(any::<u8>(), 0..64),
                                      src in proptest::collection::vec(any::<u8>(), 0..64)) {
            let n = parse_dol(&dol).count();
            prop_assert!(n <= dol.len());
            let mut out = BytesMut::new();
            match build_dol(&dol, src.as_slice(), &mut out) {
                Ok(len) => {
                    prop_assert_eq!(len, out.len());
                    prop_assert_eq!(Ok(len), dol_data_len(&dol));
                }
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
