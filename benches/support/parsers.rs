//! The same two jobs — a full recursive walk and a depth-first search for one tag — written
//! against emvbridge's parser and each crates.io BER-TLV parser compared with it.
//!
//! Every walk feeds every node's tag (packed big-endian, as [`Tag`] holds it) and value
//! length into a [`Tally`], so two walks that did the same work produce equal tallies, and
//! the optimiser cannot drop any node.
#![allow(dead_code)]

use emvbridge_protocol::tlv::{self, Tag, TlvIter};

/// What a walk saw: node count and a checksum over (tag, value length) of every node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Data objects visited, constructed and primitive, at every depth.
    pub nodes: usize,
    /// Order-sensitive hash of every node's tag and value length.
    pub sum: u64,
}

impl Tally {
    #[inline(always)]
    fn node(&mut self, tag: u64, len: usize) {
        self.nodes += 1;
        self.sum = self
            .sum
            .rotate_left(5)
            .wrapping_add(tag.wrapping_mul(0x100_0000_01B3) ^ len as u64);
    }
}

/// Packs up to 8 tag bytes big-endian, the encoding [`Tag`] uses.
#[inline(always)]
fn pack(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
}

/// A parser under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// `emvbridge_protocol::tlv`: zero-copy iterators.
    Emvbridge,
    /// `asn1-rs` 0.7 `Any::from_ber`: zero-copy, one header at a time; recursion is ours.
    Asn1Rs,
    /// `der-parser` 10 `parse_ber` (BER mode): a `BerObject` per data object.
    DerParser,
    /// `iso7816-tlv` 0.4 `ber::Tlv::parse`: an owned tree (a `Vec` per value and per template).
    Iso7816Tlv,
    /// `tlv_parser` 0.10 `Tlv::from_vec`: an owned tree.
    TlvParser,
}

impl Contender {
    /// All parsers, ours first.
    pub const ALL: [Contender; 5] = [
        Contender::Emvbridge,
        Contender::Asn1Rs,
        Contender::DerParser,
        Contender::Iso7816Tlv,
        Contender::TlvParser,
    ];

    /// Benchmark id.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Emvbridge => "emvbridge",
            Contender::Asn1Rs => "asn1-rs",
            Contender::DerParser => "der-parser",
            Contender::Iso7816Tlv => "iso7816-tlv",
            Contender::TlvParser => "tlv_parser",
        }
    }

    /// Full recursive walk of every top-level object in `input`; `None` if the parser
    /// rejects the input or does not consume all of it.
    pub fn walk(self, input: &[u8]) -> Option<Tally> {
        let mut t = Tally::default();
        let ok = match self {
            Contender::Emvbridge => ours_walk_depth_first(input, &mut t),
            Contender::Asn1Rs => asn1_walk(input, &mut t),
            Contender::DerParser => der_walk(input, &mut t),
            Contender::Iso7816Tlv => iso_walk(input, &mut t),
            Contender::TlvParser => tlvp_walk(input, &mut t),
        };
        ok.then_some(t)
    }

    /// Depth-first search for `tag`: the value of the first match.
    pub fn find(self, input: &[u8], tag: Tag) -> Option<&[u8]> {
        match self {
            Contender::Emvbridge => tlv::find(input, tag).map(|t| t.value()),
            Contender::Asn1Rs => asn1_find(input, tag),
            Contender::DerParser => der_find(input, tag),
            // The owned-tree parsers return owned values; compare by content.
            Contender::Iso7816Tlv | Contender::TlvParser => None,
        }
    }

    /// Depth-first search for `tag` returning an owned copy of the value (all parsers).
    pub fn find_owned(self, input: &[u8], tag: Tag) -> Option<Vec<u8>> {
        match self {
            Contender::Iso7816Tlv => iso_find(input, tag),
            Contender::TlvParser => tlvp_find(input, tag),
            _ => self.find(input, tag).map(<[u8]>::to_vec),
        }
    }
}

// --- emvbridge ----------------------------------------------------------------------------

/// Full walk with emvbridge's depth-first iterator ([`tlv::walk`]): every node, descending
/// into constructed ones, without recursion.
#[inline]
pub fn ours_walk_depth_first(input: &[u8], t: &mut Tally) -> bool {
    for item in tlv::walk(input) {
        let Ok(o) = item else { return false };
        t.node(u64::from(o.tag().0), o.len());
    }
    true
}

/// Full walk with emvbridge by recursion through [`tlv::Tlv::children`]: every node,
/// descending into constructed ones.
#[inline]
pub fn ours_walk(iter: TlvIter<'_>, t: &mut Tally) -> bool {
    for item in iter {
        let Ok(o) = item else { return false };
        t.node(u64::from(o.tag().0), o.value().len());
        if o.is_constructed() && !ours_walk(o.children(), t) {
            return false;
        }
    }
    true
}

/// Top-level walk with emvbridge: no descent.
#[inline]
pub fn ours_walk_flat(input: &[u8]) -> Tally {
    let mut t = Tally::default();
    for o in tlv::parse(input).flatten() {
        t.node(u64::from(o.tag().0), o.value().len());
    }
    t
}

// --- asn1-rs ------------------------------------------------------------------------------

fn asn1_walk(mut i: &[u8], t: &mut Tally) -> bool {
    use asn1_rs::{Any, FromBer};
    while !i.is_empty() {
        let Ok((rest, any)) = Any::from_ber(i) else {
            return false;
        };
        t.node(
            pack(any.header.raw_tag().unwrap_or_default()),
            any.data.len(),
        );
        if any.header.is_constructed() && !asn1_walk(any.data, t) {
            return false;
        }
        i = rest;
    }
    true
}

/// Streaming depth-first search with asn1-rs: no tree, one `Any` at a time.
pub fn asn1_find(mut i: &[u8], tag: Tag) -> Option<&[u8]> {
    use asn1_rs::{Any, FromBer};
    let (want, n) = tag.to_bytes();
    while !i.is_empty() {
        let (rest, any) = Any::from_ber(i).ok()?;
        if any.header.raw_tag() == Some(&want[..n]) {
            return Some(any.data);
        }
        if any.header.is_constructed() {
            if let Some(v) = asn1_find(any.data, tag) {
                return Some(v);
            }
        }
        i = rest;
    }
    None
}

// --- der-parser ---------------------------------------------------------------------------

fn der_walk(mut i: &[u8], t: &mut Tally) -> bool {
    while !i.is_empty() {
        let Ok((rest, obj)) = der_parser::ber::parse_ber(i) else {
            return false;
        };
        // Non-universal classes (all EMV tags) come back as `Unknown(Any)`: raw content.
        let Ok(data) = obj.as_slice() else {
            return false;
        };
        t.node(pack(obj.header.raw_tag().unwrap_or_default()), data.len());
        if obj.header.is_constructed() && !der_walk(data, t) {
            return false;
        }
        i = rest;
    }
    true
}

fn der_find(mut i: &[u8], tag: Tag) -> Option<&[u8]> {
    let (want, n) = tag.to_bytes();
    while !i.is_empty() {
        let (rest, obj) = der_parser::ber::parse_ber(i).ok()?;
        let data = obj.as_slice().ok()?;
        if obj.header.raw_tag() == Some(&want[..n]) {
            return Some(data);
        }
        if obj.header.is_constructed() {
            if let Some(v) = der_find(data, tag) {
                return Some(v);
            }
        }
        i = rest;
    }
    None
}

// --- iso7816-tlv --------------------------------------------------------------------------

/// Parses every top-level object into iso7816-tlv's owned tree (`parse_all` without
/// swallowing the error), or `None` on the first rejection.
pub fn iso_parse_all(mut i: &[u8]) -> Option<Vec<iso7816_tlv::ber::Tlv>> {
    let mut out = Vec::new();
    while !i.is_empty() {
        let (r, rest) = iso7816_tlv::ber::Tlv::parse(i);
        out.push(r.ok()?);
        i = rest;
    }
    Some(out)
}

fn iso_visit(o: &iso7816_tlv::ber::Tlv, t: &mut Tally) {
    use iso7816_tlv::ber::Value;
    // `Tlv::length()` is the whole encoding's length, not the value's.
    match o.value() {
        Value::Primitive(v) => t.node(pack(o.tag().to_bytes()), v.len()),
        Value::Constructed(children) => {
            t.node(pack(o.tag().to_bytes()), o.value().len_as_bytes());
            for c in children {
                iso_visit(c, t);
            }
        }
    }
}

fn iso_walk(i: &[u8], t: &mut Tally) -> bool {
    let Some(all) = iso_parse_all(i) else {
        return false;
    };
    for o in &all {
        iso_visit(o, t);
    }
    true
}

fn iso_find(i: &[u8], tag: Tag) -> Option<Vec<u8>> {
    use iso7816_tlv::ber::{Tag as IsoTag, Value};
    let want = IsoTag::try_from(tag.0).ok()?;
    // Stream: parse one top-level object at a time, search it, stop at the first hit.
    let mut i = i;
    while !i.is_empty() {
        let (r, rest) = iso7816_tlv::ber::Tlv::parse(i);
        let o = r.ok()?;
        if let Some(found) = o.find(&want) {
            return match found.value() {
                Value::Primitive(v) => Some(v.clone()),
                Value::Constructed(_) => Some(found.to_vec()),
            };
        }
        i = rest;
    }
    None
}

// --- tlv_parser ---------------------------------------------------------------------------

/// Parses every top-level object into tlv_parser's owned tree, or `None` on a rejection.
pub fn tlvp_parse_all(mut i: &[u8]) -> Option<Vec<tlv_parser::tlv::Tlv>> {
    let mut out = Vec::new();
    while !i.is_empty() {
        let o = tlv_parser::tlv::Tlv::from_vec(i).ok()?;
        // `from_vec` does not say how much it read: its re-encoded length does (shortest form).
        i = i.get(o.len()..)?;
        out.push(o);
    }
    Some(out)
}

fn tlvp_value_len(o: &tlv_parser::tlv::Tlv) -> usize {
    use tlv_parser::tlv::Value;
    match o.val() {
        Value::Val(v) => v.len(),
        Value::Nothing => 0,
        Value::TlvList(_) => o.len() - o.tag_len() - o.val().encode_len().len(),
    }
}

fn tlvp_visit(o: &tlv_parser::tlv::Tlv, t: &mut Tally) {
    use tlv_parser::tlv::Value;
    t.node(o.tag() as u64, tlvp_value_len(o));
    if let Value::TlvList(children) = o.val() {
        for c in children {
            tlvp_visit(c, t);
        }
    }
}

fn tlvp_walk(i: &[u8], t: &mut Tally) -> bool {
    let Some(all) = tlvp_parse_all(i) else {
        return false;
    };
    for o in &all {
        tlvp_visit(o, t);
    }
    true
}

fn tlvp_search(o: &tlv_parser::tlv::Tlv, tag: usize) -> Option<Vec<u8>> {
    use tlv_parser::tlv::Value;
    if o.tag() == tag {
        return Some(match o.val() {
            Value::Val(v) => v.clone(),
            _ => o.to_vec(),
        });
    }
    if let Value::TlvList(children) = o.val() {
        return children.iter().find_map(|c| tlvp_search(c, tag));
    }
    None
}

fn tlvp_find(mut i: &[u8], tag: Tag) -> Option<Vec<u8>> {
    while !i.is_empty() {
        let o = tlv_parser::tlv::Tlv::from_vec(i).ok()?;
        if let Some(v) = tlvp_search(&o, tag.0 as usize) {
            return Some(v);
        }
        i = i.get(o.len()..)?;
    }
    None
}

/// A plain loop summing every byte: the memory-bandwidth yardstick.
#[inline]
pub fn byte_sum(input: &[u8]) -> u64 {
    let mut s = 0u64;
    for b in input {
        s += u64::from(*b);
    }
    s
}

/// The leanest correct walk we could write: a hand-rolled recursive loop over the same
/// grammar (Annex B tags of up to 4 bytes, `81`–`83` lengths, `00` padding), with no error
/// detail and no offsets. Not a product: the floor for what any BER-TLV walk can cost.
pub fn floor_walk(mut i: &[u8], t: &mut Tally) -> bool {
    while let Some((&b0, _)) = i.split_first() {
        if b0 == 0 {
            i = &i[1..];
            continue;
        }
        let mut tag = u64::from(b0);
        let mut p = 1;
        if b0 & 0x1F == 0x1F {
            loop {
                let Some(&b) = i.get(p) else { return false };
                tag = (tag << 8) | u64::from(b);
                p += 1;
                if b & 0x80 == 0 {
                    break;
                }
                if p == 4 {
                    return false;
                }
            }
        }
        let Some(&l0) = i.get(p) else { return false };
        p += 1;
        let len = match l0 {
            0..=0x7F => usize::from(l0),
            0x81..=0x83 => {
                let n = usize::from(l0 & 0x7F);
                let Some(bytes) = i.get(p..p + n) else {
                    return false;
                };
                p += n;
                bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b))
            }
            _ => return false,
        };
        let Some(value) = i.get(p..p + len) else {
            return false;
        };
        t.node(tag, len);
        if b0 & 0x20 != 0 && !floor_walk(value, t) {
            return false;
        }
        i = &i[p + len..];
    }
    true
}
