use super::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

const RESET_CHAINED: &str =
    include_str!("../../../tests/data/vipa/reset-response-ux300-chained.hex");
const START_TXN: &str = include_str!("../../../tests/data/vipa/start-transaction-command.hex");
const E2_RESPONSE: &str =
    include_str!("../../../tests/data/vipa/start-transaction-e2-response.hex");

fn frames_of(capture: &str) -> Vec<Vec<u8>> {
    capture
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| hex::decode(l).unwrap())
        .collect()
}

fn stream_of(capture: &str) -> Vec<u8> {
    frames_of(capture).concat()
}

fn drain(d: &mut Deframer) -> Vec<Inbound> {
    let mut v = Vec::new();
    while let Some(i) = d.poll() {
        v.push(i);
    }
    v
}

fn messages(items: &[Inbound]) -> Vec<Message> {
    items
        .iter()
        .filter_map(|i| match i {
            Inbound::Message(m) => Some(m.clone()),
            Inbound::Corrupt { .. } => None,
        })
        .collect()
}

fn skipped(items: &[Inbound]) -> usize {
    items
        .iter()
        .map(|i| match i {
            Inbound::Corrupt { skipped, .. } => *skipped,
            Inbound::Message(_) => 0,
        })
        .sum()
}

#[test]
fn lrc_vectors_of_section_1() {
    let mut f = [0x01, 0x00, 0x06, 0x10, 0x11, 0x12, 0x13, 0x90, 0x00];
    assert_eq!(lrc(&f), 0x97);
    for (pcb, want) in [(0x40, 0xD7), (0x01, 0x96), (0x41, 0xD6)] {
        f[1] = pcb;
        assert_eq!(lrc(&f), want, "pcb {pcb:02x}");
    }
    assert_eq!(lrc(&[0x01, 0x00, 0x02, 0x9F, 0x24]), 0xB8);
}

#[test]
fn captured_frames_have_valid_lrc_and_views() {
    for cap in [RESET_CHAINED, START_TXN, E2_RESPONSE] {
        for f in frames_of(cap) {
            let frame = Frame::new_checked(&f[..]).unwrap();
            assert!(frame.lrc_ok());
            assert_eq!(frame.nad(), NAD_PED);
            assert_eq!(frame.frame_len(), f.len());
            assert_eq!(frame.inf().len(), usize::from(frame.len()));
        }
    }
    let st = frames_of(START_TXN).remove(0);
    let f = Frame::new_checked(&st[..]).unwrap();
    assert_eq!((f.pcb(), f.len(), f.lrc()), (Pcb(0), 0x3B, 0xBB));
    assert_eq!(&f.inf()[..5], &[0xDE, 0xD1, 0x00, 0x00, 0x36]);
    let e2 = frames_of(E2_RESPONSE).remove(0);
    let f = Frame::new_checked(&e2[..]).unwrap();
    assert_eq!((f.len(), f.lrc()), (0xEA, 0xED));
    let pcbs: Vec<u8> = frames_of(RESET_CHAINED)
        .iter()
        .map(|f| Frame::new_unchecked(&f[..]).pcb().0)
        .collect();
    assert_eq!(pcbs, [0x01, 0x01, 0x00]);
}

#[test]
fn frame_view_errors() {
    // LEN 0, 1 and 255 are rejected (§1, [S6]).
    for len in [0u8, 1, 255] {
        let mut f = vec![0x01, 0x00, len];
        f.extend(vec![0u8; usize::from(len) + 1]);
        assert_eq!(
            Frame::new_checked(&f[..]),
            Err(FrameError::BadLen { offset: 2, len })
        );
    }
    assert_eq!(
        Frame::new_checked(&[0x05, 0x00, 0x02, 0x90, 0x00, 0x97][..]),
        Err(FrameError::UnknownNad {
            offset: 0,
            nad: 0x05
        })
    );
    assert_eq!(
        Frame::new_checked(&[0x01, 0x00][..]),
        Err(FrameError::Truncated { have: 2, need: 3 })
    );
    assert_eq!(
        Frame::new_checked(&[0x01, 0x00, 0x02, 0x9F][..]),
        Err(FrameError::Truncated { have: 4, need: 6 })
    );
    let f = Frame::new_checked(&[0x01, 0x00, 0x02, 0x9F, 0x24, 0xB9][..]).unwrap();
    assert_eq!(
        f.check_lrc(),
        Err(FrameError::BadLrc {
            offset: 5,
            computed: 0xB8,
            found: 0xB9
        })
    );
    // Accepted NADs and unknown PCB bits survive.
    for nad in ACCEPTED_NADS {
        let mut out = BytesMut::new();
        FrameRepr {
            nad,
            pcb: Pcb(0x43),
            inf: &[0x90, 0x00],
        }
        .emit(&mut out)
        .unwrap();
        let r = FrameRepr::parse(&out).unwrap();
        assert_eq!((r.nad, r.pcb.0, r.pcb.unknown_bits()), (nad, 0x43, 0x02));
        assert!(r.pcb.is_chained() && r.pcb.is_unsolicited());
    }
}

#[test]
fn host_frames_of_section_5_2() {
    let cases: [(&[u8], &[u8]); 4] = [
        (
            &[0xD0, 0x60, 0x01, 0x01],
            &[0x01, 0x00, 0x04, 0xD0, 0x60, 0x01, 0x01, 0xB5],
        ),
        (
            &[0xD2, 0x01, 0x0D, 0x01],
            &[0x01, 0x00, 0x04, 0xD2, 0x01, 0x0D, 0x01, 0xDA],
        ),
        (
            &[0xD0, 0xFF, 0x00, 0x00],
            &[0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2A],
        ),
        (
            &[0xD0, 0x00, 0x00, 0x00],
            &[0x01, 0x00, 0x04, 0xD0, 0x00, 0x00, 0x00, 0xD5],
        ),
    ];
    for (payload, wire) in cases {
        let mut out = BytesMut::new();
        assert_eq!(emit_message(NAD_PED, false, payload, &mut out), Ok(1));
        assert_eq!(&out[..], wire);
        assert_eq!(message_buffer_len(payload.len()), wire.len());
    }
}

#[test]
fn emit_chaining_layout() {
    for (len, want) in [
        (2usize, vec![2usize]),
        (254, vec![254]),
        (255, vec![253, 2]),
        (256, vec![254, 2]),
        (508, vec![254, 254]),
        (509, vec![254, 253, 2]),
        (700, vec![254, 254, 192]),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        let n = emit_message(NAD_PED, true, &payload, &mut out).unwrap();
        assert_eq!(n, want.len());
        assert_eq!(out.len(), message_buffer_len(len));
        let mut rest = &out[..];
        let mut got = Vec::new();
        for (i, _) in want.iter().enumerate() {
            let r = FrameRepr::parse(rest).unwrap();
            assert_eq!(r.pcb.is_chained(), i + 1 < want.len());
            assert!(r.pcb.is_unsolicited());
            got.push(r.inf.len());
            rest = &rest[r.buffer_len()..];
        }
        assert!(rest.is_empty());
        assert_eq!(got, want, "payload of {len}");
    }
    let mut out = BytesMut::new();
    assert_eq!(
        emit_message(NAD_PED, false, &[0x90], &mut out),
        Err(FrameError::MessageTooShort { len: 1 })
    );
    assert_eq!(
        emit_message(NAD_PED, false, &vec![0; MAX_MESSAGE_LEN + 1], &mut out),
        Err(FrameError::MessageTooLong {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
    assert!(out.is_empty());
}

#[test]
fn reassembles_captured_three_frame_reset_response() {
    let frames = frames_of(RESET_CHAINED);
    let mut d = Deframer::new();
    for f in &frames {
        d.push(f);
    }
    let items = drain(&mut d);
    assert_eq!(items.len(), 1);
    let Inbound::Message(m) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(m.frames, 3);
    assert!(!m.unsolicited);
    assert_eq!(m.payload.len(), 254 + 254 + 0xF9);
    let want: Vec<u8> = frames
        .iter()
        .flat_map(|f| f[3..f.len() - 1].to_vec())
        .collect();
    assert_eq!(&m.payload[..], &want[..]);
    assert_eq!(&m.payload[m.payload.len() - 2..], &[0x90, 0x00]);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn unsolicited_frame_inside_chain_is_kept_apart() {
    let frames = frames_of(RESET_CHAINED);
    // Unsolicited card event E0{48 0001} 9000 between chained frames 1 and 2.
    let mut event = BytesMut::new();
    emit_message(
        NAD_PED,
        true,
        &[0xE0, 0x04, 0x48, 0x02, 0x00, 0x01, 0x90, 0x00],
        &mut event,
    )
    .unwrap();
    let mut d = Deframer::new();
    d.push(&frames[0]);
    d.push(&event);
    d.push(&frames[1]);
    d.push(&frames[2]);
    let items = drain(&mut d);
    let ms = messages(&items);
    assert_eq!(items.len(), 2);
    assert!(ms[0].unsolicited && ms[0].frames == 1);
    assert_eq!(&ms[0].payload[..2], &[0xE0, 0x04]);
    assert!(!ms[1].unsolicited);
    assert_eq!(ms[1].frames, 3);
    assert_eq!(ms[1].payload.len(), 254 + 254 + 0xF9);
}

#[test]
fn corrupt_inputs() {
    let good = [0x01, 0x00, 0x02, 0x9F, 0x24, 0xB8];
    // Bad LRC: reported, then the next good frame is found.
    let mut d = Deframer::new();
    d.push(&[0x01, 0x00, 0x02, 0x9F, 0x24, 0xB9]);
    d.push(&good);
    let items = drain(&mut d);
    assert!(matches!(
        items[0],
        Inbound::Corrupt {
            reason: FrameError::BadLrc { found: 0xB9, .. },
            skipped: 6
        }
    ));
    assert_eq!(messages(&items).len(), 1);
    // LEN 0, 1, 255.
    for len in [0u8, 1, 255] {
        let mut d = Deframer::new();
        d.push(&[0x01, 0x00, len, 0x00]);
        d.push(&good);
        let items = drain(&mut d);
        assert!(
            matches!(items[0], Inbound::Corrupt { reason: FrameError::BadLen { len: l, .. }, .. } if l == len),
            "{items:?}"
        );
        assert_eq!(messages(&items).len(), 1, "len {len}");
        assert_eq!(skipped(&items), 4);
    }
    // Garbage between frames.
    let mut d = Deframer::new();
    d.push(&good);
    d.push(b"\xAA\x55 noise \x00\xFF");
    d.push(&good);
    let items = drain(&mut d);
    assert_eq!(messages(&items).len(), 2);
    assert_eq!(skipped(&items), 11);
    // A truncated frame at the end waits; the rest completes it.
    let mut d = Deframer::new();
    d.push(&good);
    d.push(&good[..4]);
    assert_eq!(messages(&drain(&mut d)).len(), 1);
    assert_eq!(d.buffered(), 4);
    assert!(d.poll().is_none());
    d.push(&good[4..]);
    assert_eq!(messages(&drain(&mut d)).len(), 1);
    // ...unless the line goes idle: the driver discards it.
    d.push(&good[..3]);
    assert!(d.poll().is_none());
    assert_eq!(
        d.discard_stalled(),
        Some(Inbound::Corrupt {
            reason: FrameError::Truncated { have: 3, need: 6 },
            skipped: 3
        })
    );
    assert_eq!(d.buffered(), 0);
}

#[test]
fn corruption_inside_chain_drops_partial_and_reports() {
    let mut frames = frames_of(RESET_CHAINED);
    let last = frames[1].len() - 1;
    frames[1][last] ^= 0xFF;
    let mut d = Deframer::new();
    d.push(&frames[0]);
    d.push(&frames[1]);
    // Nothing follows yet: the bad frame waits for its successor (chunking invariance).
    assert!(d.poll().is_none());
    d.push(&[0x01, 0x00, 0x02, 0x90, 0x00, 0x93]);
    let items = drain(&mut d);
    assert!(matches!(
        items[0],
        Inbound::Corrupt {
            reason: FrameError::BadLrc { .. },
            skipped: 258
        }
    ));
    assert_eq!(
        items[1],
        Inbound::Corrupt {
            reason: FrameError::ChainBroken {
                frames: 1,
                len: 254
            },
            skipped: 0
        }
    );
    assert!(!d.in_chain());
    // The next (single-frame) message is unaffected.
    assert_eq!(items.len(), 3);
    assert_eq!(&messages(&items)[0].payload[..], &[0x90, 0x00]);
    // A bad last frame on an idle line is reported by discard_stalled.
    d.push(&[0x01, 0x00, 0x02, 0x9F, 0x24, 0xB9]);
    assert!(d.poll().is_none());
    assert!(matches!(
        d.discard_stalled(),
        Some(Inbound::Corrupt {
            reason: FrameError::BadLrc { found: 0xB9, .. },
            skipped: 6
        })
    ));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn over_long_chain_is_dropped_with_its_tail() {
    let payload = vec![0x11; 1000];
    let mut out = BytesMut::new();
    emit_message(NAD_PED, false, &payload, &mut out).unwrap();
    emit_message(NAD_PED, false, &[0x90, 0x00], &mut out).unwrap();
    let mut d = Deframer::with_max_message_len(600);
    d.push(&out);
    let items = drain(&mut d);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(
        items[0],
        Inbound::Corrupt {
            reason: FrameError::MessageTooLong { len: 762, max: 600 },
            ..
        }
    ));
    assert_eq!(&messages(&items)[0].payload[..], &[0x90, 0x00]);
}

fn stream_of_messages(msgs: &[(bool, Vec<u8>)]) -> BytesMut {
    let mut out = BytesMut::new();
    for (unsol, p) in msgs {
        emit_message(NAD_PED, *unsol, p, &mut out).unwrap();
    }
    out
}

fn feed_chunked(stream: &[u8], cuts: &[usize]) -> Vec<Inbound> {
    let mut d = Deframer::new();
    let mut items = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([stream.len()]) {
        d.push(&stream[at..c.max(at)]);
        at = c.max(at);
        items.extend(drain(&mut d));
    }
    items
}

fn arb_messages() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    prop::collection::vec(
        (any::<bool>(), prop::collection::vec(any::<u8>(), 2..900)),
        0..6,
    )
}

proptest! {
    #[test]
    fn emit_then_deframe_round_trips(msgs in arb_messages()) {
        let stream = stream_of_messages(&msgs);
        let items = feed_chunked(&stream, &[]);
        let got: Vec<(bool, Bytes)> = messages(&items).into_iter().map(|m| (m.unsolicited, m.payload)).collect();
        let want: Vec<(bool, Bytes)> = msgs.iter().map(|(u, p)| (*u, Bytes::from(p.clone()))).collect();
        prop_assert_eq!(items.len(), msgs.len());
        prop_assert_eq!(got, want);
        for (m, (_, p)) in messages(&items).iter().zip(&msgs) {
            prop_assert_eq!(m.frames, frame_count(p.len()));
        }
    }

    #[test]
    fn any_chunking_gives_same_items(msgs in arb_messages(), cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let stream = stream_of_messages(&msgs);
        prop_assert_eq!(feed_chunked(&stream, &cuts), feed_chunked(&stream, &[]));
    }

    #[test]
    fn captured_streams_in_any_chunking(cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let stream = [stream_of(START_TXN), stream_of(RESET_CHAINED), stream_of(E2_RESPONSE)].concat();
        let items = feed_chunked(&stream, &cuts);
        let frames: Vec<usize> = messages(&items).iter().map(|m| m.frames).collect();
        prop_assert_eq!(items.len(), 3);
        prop_assert_eq!(frames, vec![1, 3, 1]);
        prop_assert_eq!(items, feed_chunked(&stream, &[]));
    }

    #[test]
    fn damaged_streams_give_same_messages_in_any_chunking(
        msgs in arb_messages(),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 6),
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..3),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        // Valid frames, arbitrary garbage (NAD-like bytes included) and flipped bytes.
        let mut stream = Vec::new();
        for (i, (u, p)) in msgs.iter().enumerate() {
            stream.extend_from_slice(&garbage[i]);
            let mut out = BytesMut::new();
            emit_message(NAD_PED, *u, p, &mut out).unwrap();
            stream.extend_from_slice(&out);
        }
        if !stream.is_empty() {
            for (at, x) in &flips {
                let n = stream.len();
                stream[at % n] ^= x;
            }
        }
        let whole = feed_chunked(&stream, &[]);
        let chunked = feed_chunked(&stream, &cuts);
        prop_assert_eq!(messages(&whole), messages(&chunked));
        prop_assert_eq!(skipped(&whole), skipped(&chunked));
        if flips.is_empty() && garbage.iter().all(|g| g.iter().all(|b| !nad_accepted(*b))) {
            prop_assert_eq!(messages(&whole).len(), msgs.len());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        let whole = feed_chunked(&bytes, &[]);
        let chunked = feed_chunked(&bytes, &cuts);
        prop_assert_eq!(messages(&whole), messages(&chunked));
        prop_assert_eq!(skipped(&whole), skipped(&chunked));
        let _ = Frame::new_checked(&bytes[..]).map(|f| f.lrc_ok());
        let _ = FrameRepr::parse(&bytes);
    }

    #[test]
    fn valid_frames_after_garbage_are_found(
        msgs in arb_messages(),
        // Garbage without accepted NAD bytes cannot hide a frame start.
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("not a nad", |b| !nad_accepted(*b)), 0..40), 6),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut stream = Vec::new();
        let mut total_garbage = 0;
        for (i, (u, p)) in msgs.iter().enumerate() {
            stream.extend_from_slice(&garbage[i]);
            total_garbage += garbage[i].len();
            let mut out = BytesMut::new();
            emit_message(NAD_PED, *u, p, &mut out).unwrap();
            stream.extend_from_slice(&out);
        }
        let items = feed_chunked(&stream, &cuts);
        let got: Vec<Vec<u8>> = messages(&items).into_iter().map(|m| m.payload.to_vec()).collect();
        let want: Vec<Vec<u8>> = msgs.iter().map(|(_, p)| p.clone()).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(skipped(&items), total_garbage);
    }
}

#[test]
fn stream_encrypted_frames_are_refused_clearly_and_the_stream_goes_on() {
    // PCB 02 (stream encryption, §0) between two plain answers: refused as an item, not parsed.
    let mut wire = Vec::new();
    for (pcb, inf) in [
        (0x00u8, &[0x90u8, 0x00][..]),
        (0x02, &[0x12, 0x34, 0x56, 0x78][..]),
        (0x00, &[0x9F, 0x24][..]),
    ] {
        let mut f = vec![0x01, pcb, inf.len() as u8];
        f.extend_from_slice(inf);
        f.push(lrc(&f));
        wire.extend_from_slice(&f);
    }
    let mut d = Deframer::new();
    d.push(&wire);
    let items: Vec<_> = std::iter::from_fn(|| d.poll()).collect();
    assert!(matches!(&items[0], Inbound::Message(m) if m.payload[..] == [0x90, 0x00]));
    assert!(matches!(
        &items[1],
        Inbound::Corrupt {
            reason: FrameError::StreamEncrypted,
            skipped: 8
        }
    ));
    assert!(matches!(&items[2], Inbound::Message(m) if m.payload[..] == [0x9F, 0x24]));
    assert!(FrameError::StreamEncrypted
        .to_string()
        .contains("stream encryption"));
}
