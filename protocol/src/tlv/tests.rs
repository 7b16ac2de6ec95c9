use super::*;
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("test hex")
}

/// Tags of a tree in pre-order, with depth.
fn walk(input: &[u8]) -> Result<Vec<(usize, Tag, usize)>, TlvError> {
    fn go(iter: TlvIter<'_>, out: &mut Vec<(usize, Tag, usize)>) -> Result<(), TlvError> {
        for t in iter {
            let t = t?;
            out.push((t.depth(), t.tag(), t.len()));
            if t.is_constructed() {
                go(t.children(), out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(parse(input), &mut out)?;
    Ok(out)
}

#[test]
fn captured_start_transaction_e0() {
    // INF of the captured Start Transaction (vipa-protocol.md §5.1) after `DE D1 00 00 36`.
    let data = unhex(
        "E0349C01009F02060000000032509F03060000000000009A032103039F21031957249F1A0208405F2A020840\
         DFA2140101DFA2180100",
    );
    let tree = walk(&data).unwrap();
    let tags: Vec<_> = tree.iter().map(|(d, t, _)| (*d, *t)).collect();
    assert_eq!(
        tags,
        [
            (0, Tag::VIPA_E0),
            (1, Tag::TRANSACTION_TYPE),
            (1, Tag::AMOUNT_AUTHORISED),
            (1, Tag::AMOUNT_OTHER),
            (1, Tag::TRANSACTION_DATE),
            (1, Tag::TRANSACTION_TIME),
            (1, Tag::TERMINAL_COUNTRY_CODE),
            (1, Tag::TRANSACTION_CURRENCY_CODE),
            (1, Tag(0xDFA214)),
            (1, Tag(0xDFA218)),
        ]
    );
    let amount = find(&data, Tag::AMOUNT_AUTHORISED).unwrap();
    assert_eq!(amount.value(), [0, 0, 0, 0, 0x32, 0x50]);
    assert_eq!(amount.offset(), 5);
    assert_eq!(amount.header_len(), 3);
}

#[test]
fn captured_e2_with_long_form_length() {
    // The captured E2 response's INF without SW1 SW2 (vipa-protocol.md §5.1).
    let data = unhex(
        "E281E5C10100FF7F4EDFDF1208ED02AA537757D99FDFDF110AFFFF98765432110010A4DFDF102031846E94DC3183BA6DC45E2A6AC6DEF03F93434756A4D0261572B5C23519BFC0DFDB0F0400000000DFDB0E0400000D015010414D45524943414E20455850524553535713374245AAAAA1006D2412201AAAAAAAAAAAAAAA5A08374245AAAAA1006F5F24032412315F25031711015F280208405F300202015F3401009F0606A000000025019F0702FF009F080200019F09020001FF7C2BDF837F20FDCC8BA35EE1901DE86A23AF78F5A636FC9E3E1541FB8ED46E34DF6C12ED1260DF837E03E7C4D9",
    );
    let e2 = parse(&data).next().unwrap().unwrap();
    assert_eq!(e2.tag(), Tag::VIPA_E2);
    assert_eq!(e2.len(), 229);
    assert_eq!(e2.header_len(), 3);
    assert_eq!(e2.raw().len(), data.len());
    let ksn = find(&data, Tag::VIPA_SRED_KSN).unwrap();
    assert_eq!(ksn.value(), unhex("FFFF98765432110010A4"));
    assert_eq!(ksn.depth(), 2);
    let label = find(&data, Tag::APPLICATION_LABEL).unwrap();
    assert_eq!(label.value(), b"AMERICAN EXPRESS");
    assert_eq!(find(&data, Tag(0xDF837E)).unwrap().value(), unhex("E7C4D9"));
    // FF7C holds DF6C? No: DF837F (32) then DF6C12..., a nested object of the capture.
    assert!(find(&data, Tag(0x9F26)).is_none());
    let top: Vec<_> = e2.children().map(|t| t.unwrap().tag()).collect();
    assert_eq!(top.first(), Some(&Tag::VIPA_C1));
    assert_eq!(top.last(), Some(&Tag::VIPA_TOKEN));
}

#[test]
fn multi_byte_tags_and_long_lengths() {
    // 3-byte tag with 81 length, 2-byte tag with 82 length, 83 length.
    let mut data = unhex("DFA2148180");
    data.extend(std::iter::repeat_n(0xAB, 0x80));
    data.extend(unhex("9F1082 0100"));
    data.extend(std::iter::repeat_n(0xCD, 0x100));
    data.extend(unhex("DF8107 83 000103"));
    data.extend(std::iter::repeat_n(0xEF, 0x103));
    let items: Vec<_> = parse(&data).map(|t| t.unwrap()).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(
        (items[0].tag(), items[0].len(), items[0].header_len()),
        (Tag(0xDFA214), 0x80, 5)
    );
    assert_eq!(
        (items[1].tag(), items[1].len(), items[1].header_len()),
        (Tag(0x9F10), 0x100, 5)
    );
    assert_eq!(
        (items[2].tag(), items[2].len(), items[2].header_len()),
        (Tag(0xDF8107), 0x103, 7)
    );
    // Four-byte tags are accepted; the fifth byte is refused.
    assert_eq!(
        parse(&unhex("DF818101 01 00"))
            .next()
            .unwrap()
            .unwrap()
            .tag(),
        Tag(0xDF818101)
    );
    assert_eq!(
        parse(&unhex("DF81818101 01 00")).next(),
        Some(Err(TlvError::TagTooLong { offset: 0 }))
    );
}

#[test]
fn padding_is_skipped() {
    // EMV Book 3 B: 00 bytes before, between and after objects.
    let data = unhex("0000 5A0112 00 70 06 00 9F360200 01 00 0000");
    let tree = walk(&data).unwrap();
    assert_eq!(
        tree,
        [(0, Tag::PAN, 1), (0, Tag(0x70), 6), (1, Tag::ATC, 2)]
    );
    assert_eq!(find(&data, Tag::ATC).unwrap().offset(), 9);
    assert_eq!(parse(&[0, 0, 0]).count(), 0);
    assert_eq!(parse(&[]).count(), 0);
}

#[test]
fn errors_carry_offsets() {
    let cases: &[(&str, TlvError)] = &[
        ("5A", TlvError::Truncated { offset: 0 }),
        ("5A05 0102", TlvError::Truncated { offset: 0 }),
        ("9F", TlvError::Truncated { offset: 0 }),
        ("5A0101 9F0206 00", TlvError::Truncated { offset: 3 }),
        ("5A0101 9F0280", TlvError::IndefiniteLength { offset: 5 }),
        ("5A0101 9F028400000001", TlvError::BadLength { offset: 5 }),
        ("5A0101 DF8181818101", TlvError::TagTooLong { offset: 3 }),
        ("5A82 00", TlvError::Truncated { offset: 0 }),
    ];
    for (hex, want) in cases {
        let got = parse(&unhex(hex)).find_map(Result::err);
        assert_eq!(got, Some(*want), "{hex}");
    }
    // A truncated child is reported at its absolute offset.
    let data = unhex("E005 9F0205 0000");
    let e0 = parse(&data).next().unwrap().unwrap();
    assert_eq!(
        e0.children().next(),
        Some(Err(TlvError::Truncated { offset: 2 }))
    );
    assert_eq!(
        TlvError::BadLength { offset: 7 }.to_string(),
        "bad length at byte offset 7"
    );
}

#[test]
fn iterator_stops_after_error() {
    let data = unhex("5A0101 9F0280 5A0101");
    let mut it = parse(&data);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_err());
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
}

#[test]
fn depth_is_bounded() {
    // 10 000 nested E0s: a walk must stop with DepthExceeded, not overflow the stack.
    let mut b = TlvBuilder::new();
    fn nest(b: &mut TlvBuilder, n: usize) {
        if n == 0 {
            b.primitive(Tag::PAN, &[1]);
        } else {
            b.constructed(Tag::VIPA_E0, |b| nest(b, n - 1));
        }
    }
    nest(&mut b, 40);
    let data = b.freeze();
    let err = walk(&data).unwrap_err();
    assert!(matches!(err, TlvError::DepthExceeded { .. }), "{err:?}");
    assert_eq!(find(&data, Tag::PAN), None);

    // Deep but within the bound is fine.
    let mut b = TlvBuilder::new();
    nest(&mut b, MAX_TLV_DEPTH);
    let data = b.freeze();
    assert_eq!(find(&data, Tag::PAN).unwrap().depth(), MAX_TLV_DEPTH);

    // A hostile flat buffer of constructed headers with huge claimed lengths.
    let hostile: Vec<u8> = std::iter::repeat_n([0xE0u8, 0x83, 0xFF, 0xFF], 5000)
        .flatten()
        .collect();
    assert!(walk(&hostile).is_err());
}

#[test]
fn find_is_depth_first_and_tolerates_bad_subtrees() {
    // 70 { 9F36 } then a second 9F36 at top level: the nested one comes first (pre-order).
    let data = unhex("70 04 9F360101 9F360102");
    assert_eq!(find(&data, Tag::ATC).unwrap().value(), [1]);
    // A malformed constructed child does not hide a later sibling.
    let data = unhex("70 03 9F3605 9F360102");
    assert_eq!(find(&data, Tag::ATC).unwrap().value(), [2]);
    // Primitive objects are not searched inside.
    let data = unhex("5A 03 9F3600");
    assert_eq!(find(&data, Tag::ATC), None);
    // Tlv::find searches descendants only.
    let data = unhex("77 05 9F27 01 80 5A00");
    let t77 = parse(&data).next().unwrap().unwrap();
    assert_eq!(
        t77.find(Tag::CRYPTOGRAM_INFORMATION_DATA).unwrap().value(),
        [0x80]
    );
    assert_eq!(t77.find(Tag::RESPONSE_TEMPLATE_2), None);
}

#[test]
fn debug_masks_cardholder_data() {
    let data = unhex("5A08 4111111111111111 9F0206 000000001234");
    let mut it = parse(&data);
    let pan = format!("{:?}", it.next().unwrap().unwrap());
    assert!(!pan.contains("4111111111111111"), "{pan}");
    assert!(pan.contains("masked"));
    let amount = format!("{:?}", it.next().unwrap().unwrap());
    assert!(amount.contains("000000001234"), "{amount}");
}

#[test]
fn builder_widens_lengths() {
    for n in [0usize, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x1_0000] {
        let mut b = TlvBuilder::new();
        b.constructed(Tag::VIPA_E4, |b| {
            b.primitive(Tag(0xDF8104), &vec![0x41; n]);
        });
        let bytes = b.freeze();
        let e4 = parse(&bytes).next().unwrap().unwrap();
        assert_eq!(e4.raw().len(), bytes.len());
        let inner = e4.children().next().unwrap().unwrap();
        assert_eq!(inner.len(), n);
        assert_eq!(e4.len(), inner.raw().len());
        assert_eq!(e4.header_len(), 1 + length_encoded_len(e4.len()));
    }
}

#[test]
fn builder_copies_parsed_objects() {
    let src = unhex("FF7F 04 DFDF1000");
    let ff7f = parse(&src).next().unwrap().unwrap();
    let mut b = TlvBuilder::new();
    b.constructed(Tag::VIPA_E4, |b| {
        b.tlv(&ff7f);
        b.raw(&unhex("8A023030"));
    });
    assert_eq!(b.as_bytes(), unhex("E40B FF7F04DFDF1000 8A023030"));
}

// --- property tests ---------------------------------------------------------------------------

/// An owned tree for round-trip tests.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Prim(Tag, Vec<u8>),
    Cons(Tag, Vec<Node>),
}

fn emit(nodes: &[Node], b: &mut TlvBuilder) {
    for n in nodes {
        match n {
            Node::Prim(t, v) => {
                b.primitive(*t, v);
            }
            Node::Cons(t, c) => {
                b.constructed(*t, |b| emit(c, b));
            }
        }
    }
}

fn read(iter: TlvIter<'_>) -> Vec<Node> {
    iter.map(|t| {
        let t = t.expect("emitted tlv parses");
        if t.is_constructed() {
            Node::Cons(t.tag(), read(t.children()))
        } else {
            Node::Prim(t.tag(), t.value().to_vec())
        }
    })
    .collect()
}

/// A valid tag: first byte (class, constructed bit, number) plus continuation bytes.
fn arb_tag(constructed: bool) -> impl Strategy<Value = Tag> {
    let c = if constructed { 0x20u8 } else { 0 };
    prop_oneof![
        // One byte, low five bits not 11111 and not the 00 padding byte.
        (0u8..4, 1u8..0x1F).prop_map(move |(class, n)| Tag(u32::from((class << 6) | c | n))),
        (0u8..4, 0u8..0x80).prop_map(move |(class, n)| Tag(u32::from_be_bytes([
            0,
            0,
            (class << 6) | c | 0x1F,
            n
        ]))),
        (0u8..4, 0x80u8..=0xFF, 0u8..0x80).prop_map(move |(class, a, n)| Tag(u32::from_be_bytes(
            [0, (class << 6) | c | 0x1F, a, n]
        ))),
    ]
}

fn arb_tree() -> impl Strategy<Value = Vec<Node>> {
    let leaf = (arb_tag(false), prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(t, v)| Node::Prim(t, v));
    let node = leaf.prop_recursive(5, 64, 6, |inner| {
        (arb_tag(true), prop::collection::vec(inner, 0..6)).prop_map(|(t, c)| Node::Cons(t, c))
    });
    prop::collection::vec(node, 0..6)
}

/// (tag, offset, value length) of every node, then the error if any, by the iterator.
fn iter_walk(data: &[u8]) -> (Vec<(Tag, usize, usize)>, Option<TlvError>) {
    fn go(iter: TlvIter<'_>, out: &mut Vec<(Tag, usize, usize)>) -> Option<TlvError> {
        for t in iter {
            let t = match t {
                Ok(t) => t,
                Err(e) => return Some(e),
            };
            out.push((t.tag(), t.offset(), t.len()));
            if let Some(e) = go(t.children(), out) {
                return Some(e);
            }
        }
        None
    }
    let mut out = Vec::new();
    let e = go(parse(data), &mut out);
    (out, e)
}

/// The same by the depth-first [`walk`], with depths checked against the offsets' nesting.
fn flat_walk(data: &[u8]) -> (Vec<(Tag, usize, usize)>, Option<TlvError>) {
    let mut out = Vec::new();
    for t in super::walk(data) {
        match t {
            Ok(t) => out.push((t.tag(), t.offset(), t.len())),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// The same walk with nothing but the nom grammar ([`data_object`]), padding skipped as Annex
/// B3 says: the reference the fast path is held to.
fn nom_walk(
    data: &[u8],
    base: usize,
    depth: usize,
) -> (Vec<(Tag, usize, usize)>, Option<TlvError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if data[at] == 0 {
            at += 1;
            continue;
        }
        if depth > MAX_TLV_DEPTH {
            return (out, Some(TlvError::DepthExceeded { offset: base + at }));
        }
        let input = &data[at..];
        match data_object(input) {
            Ok((rest, (tag, h))) => {
                let used = input.len() - rest.len();
                let value = &input[usize::from(h)..used];
                out.push((tag, base + at, value.len()));
                if tag.is_constructed() {
                    let (inner, e) = nom_walk(value, base + at + usize::from(h), depth + 1);
                    out.extend(inner);
                    if e.is_some() {
                        return (out, e);
                    }
                }
                at += used;
            }
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => {
                let here = base + at + input.len() - f.remaining;
                return (
                    out,
                    Some(match f.kind {
                        FaultKind::Truncated => TlvError::Truncated { offset: base + at },
                        FaultKind::BadLength => TlvError::BadLength { offset: here },
                        FaultKind::Indefinite => TlvError::IndefiniteLength { offset: here },
                        FaultKind::TagTooLong => TlvError::TagTooLong { offset: base + at },
                    }),
                );
            }
            Err(nom::Err::Incomplete(_)) => {
                return (out, Some(TlvError::Truncated { offset: base + at }));
            }
        }
    }
    (out, None)
}

proptest! {
    /// The fast path and the nom grammar accept exactly the same objects, identically.
    #[test]
    fn fast_path_agrees_with_the_nom_grammar(data in prop::collection::vec(any::<u8>(), 1..64)) {
        let fast = well_formed_object(&data, data[0]);
        let nom = data_object(&data).ok();
        prop_assert_eq!(fast.is_some(), nom.is_some());
        if let (Some((tag, header_len, total)), Some((rest, (t, h)))) = (fast, nom) {
            prop_assert_eq!(t, tag);
            prop_assert_eq!(h, header_len);
            prop_assert_eq!(data.len() - rest.len(), total);
        }
    }

    /// The same on bytes shaped like TLV (tags of 1–5 bytes, every length form), where random
    /// bytes rarely reach the long forms.
    #[test]
    fn fast_path_agrees_on_tlv_shapes(
        tag in prop::collection::vec(any::<u8>(), 1..6),
        form in 0u8..6,
        len in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut data = tag;
        data[0] |= 0x1F;
        match form {
            0 => data.push((len & 0x7F) as u8),
            1 => data.extend([0x81, len as u8]),
            2 => data.extend([0x82, (len >> 8) as u8, len as u8]),
            3 => data.extend([0x83, (len >> 16) as u8 & 1, (len >> 8) as u8, len as u8]),
            4 => data.extend([0x84, 0, 0, 0, 1]),
            _ => data.push(0x80),
        }
        data.extend(tail);
        let fast = well_formed_object(&data, data[0]);
        let nom = data_object(&data).ok();
        prop_assert_eq!(fast.is_some(), nom.is_some());
        if let (Some((tag, header_len, total)), Some((rest, (t, h)))) = (fast, nom) {
            prop_assert_eq!(t, tag);
            prop_assert_eq!(h, header_len);
            prop_assert_eq!(data.len() - rest.len(), total);
        }
    }

    /// A full walk by the iterator equals a full walk by the nom grammar alone, on arbitrary
    /// bytes and on emitted trees: same nodes, same offsets, same error.
    #[test]
    fn walk_agrees_with_a_nom_only_walk(data in prop::collection::vec(any::<u8>(), 0..200), tree in arb_tree()) {
        prop_assert_eq!(iter_walk(&data), nom_walk(&data, 0, 0));
        prop_assert_eq!(flat_walk(&data), nom_walk(&data, 0, 0));
        let mut b = TlvBuilder::new();
        emit(&tree, &mut b);
        let bytes = b.freeze();
        prop_assert_eq!(iter_walk(&bytes), nom_walk(&bytes, 0, 0));
        prop_assert_eq!(flat_walk(&bytes), nom_walk(&bytes, 0, 0));
    }

    /// Nesting around the depth limit: the depth-first walk refuses exactly where the
    /// recursive one does.
    #[test]
    fn deep_nesting_agrees(levels in 0usize..24, pad in any::<bool>()) {
        let mut bytes = if pad { vec![0x9C, 0x01, 0x00, 0x00] } else { vec![0x9C, 0x01, 0x00] };
        for _ in 0..levels {
            let mut outer = vec![0xE1, bytes.len() as u8];
            outer.extend(&bytes);
            bytes = outer;
        }
        prop_assert_eq!(flat_walk(&bytes), iter_walk(&bytes));
        prop_assert_eq!(iter_walk(&bytes), nom_walk(&bytes, 0, 0));
    }

    #[test]
    fn emit_then_parse_round_trips(tree in arb_tree()) {
        let mut b = TlvBuilder::new();
        emit(&tree, &mut b);
        let bytes = b.freeze();
        prop_assert_eq!(read(parse(&bytes)), tree);
    }

    #[test]
    fn any_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        // A full recursive walk and a search over arbitrary bytes terminate without panicking,
        // and every view stays inside the input.
        if let Ok(tree) = walk(&data) {
            for (_, _, len) in tree {
                prop_assert!(len <= data.len());
            }
        }
        let _ = find(&data, Tag::APPLICATION_CRYPTOGRAM);
    }

    #[test]
    fn offsets_point_at_the_object(tree in arb_tree()) {
        let mut b = TlvBuilder::new();
        emit(&tree, &mut b);
        let bytes = b.freeze();
        fn check(iter: TlvIter<'_>, all: &[u8]) {
            for t in iter {
                let t = t.unwrap();
                assert_eq!(&all[t.offset()..t.offset() + t.raw().len()], t.raw());
                check(t.children(), all);
            }
        }
        check(parse(&bytes), &bytes);
    }
}
