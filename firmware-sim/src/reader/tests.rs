//! Flow tests: a scripted host drives the core on a virtual clock, with bytes through the
//! protocol crate's emitter and deframer. Bounded: a stall fails loudly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use emvbridge_protocol::frame::{emit_message, lrc, Deframer, Inbound, Message, NAD_PED};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_protocol::vipa::{
    Command, DeviceInfo, Response, StatusWord, TemplateKind, TransactionData as WireTxn,
    TransactionStatus,
};
use proptest::prelude::*;

use super::*;
use crate::issuer;

/// The UX301 log's answer to `E2` with P1 00 (the host does not ask for the post-CVM stop).
const AMOUNT_CONFIRMATION_P1_00: &str =
    "DED2000023E0219F02060000000035505F2A0208408901008A025A33C00100C2023635DFCC790101";

const START_CAPTURE: &str = "01003BDED1000036E0349C01009F02060000000032509F03060000000000009A032103039F21031957249F1A0208405F2A020840DFA2140101DFA2180100BB";

struct Host {
    reader: SimReader,
    now: Instant,
    deframer: Deframer,
    wire: Vec<u8>,
    unsolicited: VecDeque<Message>,
    responses: VecDeque<Message>,
}

impl Host {
    fn new(config: SimConfig) -> Host {
        let now = Instant::now();
        let mut h = Host {
            reader: SimReader::new(config, now),
            now,
            deframer: Deframer::new(),
            wire: Vec::new(),
            unsolicited: VecDeque::new(),
            responses: VecDeque::new(),
        };
        h.pump();
        h
    }

    /// A reader with `card` configured, armed as the logged hosts arm it (Card Status P1
    /// bit 0), so that the card is presented by itself; the card event is consumed.
    fn with_card(card: &str) -> Host {
        let mut h = Host::new(SimConfig {
            card: Some(card.into()),
            ..SimConfig::default()
        });
        h.arm();
        h
    }

    /// `D0 60 01 00`, its answer, and the card event that follows (consumed).
    fn arm(&mut self) {
        self.send(&[0xD0, 0x60, 0x01, 0x00]);
        self.settle(Duration::from_secs(30));
        let m = self.responses.pop_front().expect("card status answered");
        assert_eq!(sw(&m), StatusWord::SUCCESS);
        self.settle(Duration::from_secs(1));
        self.unsolicited.clear();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.handle_input(self.now, bytes);
        self.pump();
    }

    fn send(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        emit_message(NAD_PED, false, payload, &mut out).unwrap();
        self.send_raw(&out);
    }

    fn drain(&mut self) {
        while let Some(b) = self.reader.poll_transmit(self.now) {
            self.wire.extend_from_slice(&b);
            self.deframer.push(&b);
            while let Some(item) = self.deframer.poll() {
                match item {
                    Inbound::Message(m) if m.unsolicited => self.unsolicited.push_back(m),
                    Inbound::Message(m) => self.responses.push_back(m),
                    Inbound::Corrupt { .. } => {}
                }
            }
        }
    }

    /// Drains output, then advances the virtual clock to due timers, up to 30 s.
    fn pump(&mut self) {
        self.drain();
        self.settle(Duration::ZERO);
    }

    /// Runs timers due within `horizon` from now (and everything they trigger).
    fn settle(&mut self, horizon: Duration) {
        let limit = self.now + horizon;
        for _ in 0..1000 {
            self.drain();
            match self.reader.poll_timeout() {
                Some(t) if t <= limit => {
                    self.now = self.now.max(t);
                    self.reader.handle_timeout(self.now);
                }
                _ => return,
            }
        }
        panic!("simulator keeps firing timers");
    }

    fn advance(&mut self, d: Duration) {
        self.settle(d);
        self.now += d;
        self.reader.handle_timeout(self.now);
        self.drain();
    }

    /// The next response, running timers for up to 30 virtual seconds. An `E2` with card
    /// data (no `C1`: the "decision required" stop) is answered with the logged amount
    /// confirmation (P1 00: no post-CVM stop) and the answer to that is returned.
    fn response(&mut self) -> Message {
        let m = self.raw_response();
        if is_decision(&m) {
            self.send(&hex::decode(AMOUNT_CONFIRMATION_P1_00).unwrap());
            return self.raw_response();
        }
        m
    }

    /// The next response as it comes.
    fn raw_response(&mut self) -> Message {
        self.settle(Duration::from_secs(30));
        self.responses
            .pop_front()
            .expect("no response from the simulator")
    }

    fn no_response(&mut self) {
        self.settle(Duration::from_secs(30));
        assert!(self.responses.is_empty(), "unexpected response");
    }

    fn unsolicited(&mut self) -> Message {
        self.settle(Duration::from_secs(30));
        self.unsolicited
            .pop_front()
            .expect("no unsolicited message")
    }

    /// Start Transaction as the logged hosts send it: with a card configured and none in
    /// the slot, the reader is armed first (the card is then presented by itself); an `E2`
    /// "decision required" answer is confirmed (P1 00) at once.
    fn start(&mut self, amount: u64) {
        let st = self.reader.status();
        if st.card.is_some() && st.card_present.is_none() {
            self.arm();
        }
        let data = WireTxn::purchase(amount, 840, 840, 250303, 195724);
        let p = Command::StartTransaction(&data).to_payload().unwrap();
        self.send(&p);
        self.settle(Duration::from_secs(30));
        if self.responses.back().is_some_and(is_decision) {
            self.responses.pop_back();
            self.send(&hex::decode(AMOUNT_CONFIRMATION_P1_00).unwrap());
        }
    }

    fn continue_with(&mut self, tlvs: &[u8], wrapped: bool) {
        let data = if wrapped {
            template(Tag::VIPA_E0, tlvs)
        } else {
            Bytes::copy_from_slice(tlvs)
        };
        let mut p = vec![0xDE, 0xD2, 0x00, 0x00, data.len() as u8];
        p.extend_from_slice(&data);
        self.send(&p);
    }
}

/// An `E2` with card data (no `C1` candidate list): the "decision required" stop.
fn is_decision(m: &Message) -> bool {
    Response::parse(&m.payload).is_ok_and(|r| {
        r.template().is_some_and(|t| {
            t.kind() == TemplateKind::DecisionRequired && t.find(Tag::VIPA_C1).is_none()
        })
    })
}

fn sw(m: &Message) -> StatusWord {
    Response::parse(&m.payload).unwrap().sw()
}

fn data(m: &Message) -> Bytes {
    let r = Response::parse(&m.payload).unwrap();
    Bytes::copy_from_slice(r.data())
}

fn tag(d: &[u8], t: u32) -> Option<Vec<u8>> {
    tlv::find(d, Tag(t)).map(|x| x.value().to_vec())
}

fn expect_template(m: &Message, t: u8) -> Bytes {
    assert_eq!(sw(m), StatusWord::SUCCESS);
    let d = data(m);
    assert_eq!(d.first(), Some(&t), "template {t:02X} expected");
    let inner = tlv::parse(&d).next().unwrap().unwrap().value().to_vec();
    Bytes::from(inner)
}

fn host_answer(e4: &[u8], arc: [u8; 2], corrupt: bool) -> Vec<u8> {
    let v = issuer::verify_arqc(e4).expect("issuer verifies the E4 ARQC");
    let mut b = TlvBuilder::new();
    b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, &arc);
    // The host's decision (§0): a TC for an approval code, an AAC otherwise.
    b.primitive(
        TAG_C0_HOST_DECISION,
        &[u8::from(crypto::arc_is_approval(arc))],
    );
    b.primitive(
        Tag::ISSUER_AUTHENTICATION_DATA,
        &v.issuer_auth_data(arc, corrupt),
    );
    b.freeze().to_vec()
}

fn unsolicited_template(m: &Message) -> Bytes {
    assert!(m.unsolicited);
    Bytes::copy_from_slice(&m.payload)
}

#[test]
fn power_on_sends_e6_with_pcb_40() {
    let mut h = Host::new(SimConfig::default());
    assert_eq!(h.wire[1], 0x40, "PCB of the power-on frame");
    let m = h.unsolicited();
    let p = unsolicited_template(&m);
    assert_eq!(p[0], 0xE6);
    let e6 = tlv::parse(&p).next().unwrap().unwrap();
    assert_eq!(tag(e6.value(), 0x9F1C), Some(b"SIM00001".to_vec()));
    assert_eq!(tag(e6.value(), 0xC4), Some(b"DEVICE POWERED ON".to_vec()));
    assert!(tag(e6.value(), 0xC3).is_some());
}

#[test]
fn reset_answers_chained_device_info() {
    let mut h = Host::new(SimConfig::default());
    h.wire.clear();
    h.send(&[0xD0, 0x00, 0x00, 0x00]);
    let m = h.response();
    assert_eq!(m.frames, 3, "chained like the UX300 capture");
    // Frame by frame: PCB 01, 01, 00; each LRC is the XOR of the frame.
    let mut rest = &h.wire[..];
    let mut pcbs = Vec::new();
    while !rest.is_empty() {
        let n = usize::from(rest[2]) + 4;
        let (f, tail) = rest.split_at(n);
        assert_eq!(lrc(&f[..n - 1]), f[n - 1]);
        pcbs.push(f[1]);
        rest = tail;
    }
    assert_eq!(pcbs, vec![0x01, 0x01, 0x00]);
    assert_eq!(sw(&m), StatusWord::SUCCESS);
    let info = DeviceInfo::parse(&data(&m)).unwrap();
    assert_eq!(info.terminal_id.as_deref(), Some("SIM00001"));
    assert_eq!(info.devices[0].model.as_deref(), Some("UX300"));
    assert_eq!(info.devices[0].serial.as_deref(), Some("UX300SIM"));
    assert_eq!(info.component_version("VIPA"), Some(VIPA_VERSION));
    assert!(info.components.len() >= 5);
}

#[test]
fn card_status_events_on_insert_and_remove() {
    // Tag 48 as logged: `00 00` no card, `03 00` inserted.
    let mut h = Host::new(SimConfig::default());
    h.unsolicited.clear();
    h.reader
        .insert_card(h.now, "visa-cvn18")
        .expect("profile exists");
    h.pump();
    assert!(h.unsolicited.is_empty(), "no events before Card Status");
    h.reader.remove_card(h.now);
    h.send(&[0xD0, 0x60, 0x01, 0x01]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    h.reader.insert_card(h.now, "visa-cvn18").unwrap();
    h.pump();
    let ev = h.unsolicited();
    assert_eq!(
        &ev.payload[..],
        &[0xE0, 0x04, 0x48, 0x02, 0x03, 0x00, 0x90, 0x00]
    );
    h.reader.remove_card(h.now);
    h.pump();
    let ev = h.unsolicited();
    assert_eq!(
        &ev.payload[..],
        &[0xE0, 0x04, 0x48, 0x02, 0x00, 0x00, 0x90, 0x00]
    );
    // Swipe: MSR data + track 2 bits and a masked track.
    h.reader.swipe_card(h.now, "visa-cvn18").unwrap();
    h.pump();
    let ev = h.unsolicited();
    let e0 = tlv::parse(&ev.payload).next().unwrap().unwrap();
    assert_eq!(tag(e0.value(), 0x48), Some(vec![0x00, 0x05]));
    let masked = tag(e0.value(), 0xDFDB06).unwrap();
    assert!(masked.starts_with(b"401200******5439D"));
}

/// Start (captured frame) → E4 → Continue(8A 00, 91) → E3 with a TC.
fn online_sale(wrapped: bool) {
    let mut h = Host::with_card("visa-cvn18");
    h.send_raw(&hex::decode(START_CAPTURE).unwrap());
    let e4 = expect_template(&h.response(), 0xE4);
    assert_eq!(tag(&e4, 0x9F27), Some(vec![0x80]));
    assert_eq!(tag(&e4, 0x9F39), Some(vec![0x05]));
    assert_eq!(tag(&e4, 0x9F02), Some(vec![0, 0, 0, 0, 0x32, 0x50]));
    assert!(tag(&e4, 0xFF7F).is_some(), "SRED data");
    let pan = tag(&e4, 0x5A).unwrap();
    assert_eq!(hex::encode_upper(&pan), "401200AAAAAA5439", "masked PAN");
    h.continue_with(&host_answer(&e4, *b"00", false), wrapped);
    let e3 = expect_template(&h.response(), 0xE3);
    assert_eq!(tag(&e3, 0x9F27), Some(vec![0x40]));
    assert_eq!(tag(&e3, 0x8A), Some(b"00".to_vec()));
    // Auto-remove after the final outcome.
    assert_eq!(h.reader.status().card_present, None);
}

#[test]
fn online_sale_with_e0_wrapped_continue() {
    online_sale(true);
}

#[test]
fn online_sale_with_bare_continue() {
    online_sale(false);
}

#[test]
fn atc_advances_across_sales() {
    let mut h = Host::with_card("visa-cvn18");
    let mut atcs = Vec::new();
    for _ in 0..2 {
        h.start(1000);
        let e4 = expect_template(&h.response(), 0xE4);
        atcs.push(tag(&e4, 0x9F36).unwrap());
        h.continue_with(&host_answer(&e4, *b"00", false), true);
        expect_template(&h.response(), 0xE3);
    }
    assert_ne!(atcs[0], atcs[1]);
}

#[test]
fn bad_arpc_declines_with_e5() {
    let mut h = Host::with_card("visa-cvn18");
    h.start(3250);
    let e4 = expect_template(&h.response(), 0xE4);
    h.continue_with(&host_answer(&e4, *b"00", true), true);
    let e5 = expect_template(&h.response(), 0xE5);
    assert_eq!(tag(&e5, 0x9F27), Some(vec![0x00]));
}

#[test]
fn unable_to_go_online_z3() {
    let mut h = Host::with_card("visa-cvn18");
    h.start(3250);
    expect_template(&h.response(), 0xE4);
    h.continue_with(&[0x8A, 0x02, b'Z', b'3'], true);
    let m = h.response();
    let d = data(&m);
    assert!(matches!(d.first(), Some(0xE3 | 0xE5)));
    let inner = expect_template(&m, d[0]);
    let arc = tag(&inner, 0x8A).unwrap();
    assert!(arc == b"Z3" || arc == b"Y3");
}

#[test]
fn continue_without_8a_is_data_missing_and_keeps_state() {
    let mut h = Host::with_card("visa-cvn18");
    h.start(3250);
    let e4 = expect_template(&h.response(), 0xE4);
    h.continue_with(&[0x91, 0x01, 0x00], true);
    assert_eq!(sw(&h.response()), StatusWord::DATA_MISSING);
    h.continue_with(&host_answer(&e4, *b"00", false), true);
    expect_template(&h.response(), 0xE3);
}

#[test]
fn two_app_card_asks_for_a_decision() {
    for by_index in [false, true] {
        let mut h = Host::with_card("two-app");
        h.start(500);
        let e2 = expect_template(&h.response(), 0xE2);
        let aids: Vec<Vec<u8>> = tlv::parse(&e2)
            .map_while(Result::ok)
            .filter(|t| t.tag() == Tag::AID)
            .map(|t| t.value().to_vec())
            .collect();
        assert_eq!(aids.len(), 2);
        let debit = aids[1].clone();
        assert_eq!(hex::encode_upper(&debit), "A0000000032010");
        let choice = if by_index {
            vec![0xDF, 0xA2, 0x04, 0x01, 0x01]
        } else {
            let mut v = vec![0x4F, debit.len() as u8];
            v.extend_from_slice(&debit);
            v
        };
        h.continue_with(&choice, true);
        let e4 = expect_template(&h.response(), 0xE4);
        assert_eq!(tag(&e4, 0x4F), Some(debit));
    }
}

#[test]
fn bad_choice_is_refused_and_state_kept() {
    let mut h = Host::with_card("two-app");
    h.start(500);
    expect_template(&h.response(), 0xE2);
    h.continue_with(&[0x4F, 0x02, 0x11, 0x22], false);
    assert_eq!(sw(&h.response()), StatusWord::INVALID_DATA);
    h.continue_with(&[0xDF, 0xA2, 0x04, 0x01, 0x00], false);
    expect_template(&h.response(), 0xE4);
}

fn pin_host() -> Host {
    Host::new(SimConfig {
        card: Some("offline-pin".into()),
        auto_pin: false,
        ..SimConfig::default()
    })
}

fn status_of(m: &Message) -> (Option<TransactionStatus>, Vec<u8>) {
    let r = unsolicited_template(m);
    let e6 = tlv::parse(&r).next().unwrap().unwrap();
    assert_eq!(e6.tag(), Tag::VIPA_E6);
    (
        tag(e6.value(), 0xC3).map(|v| TransactionStatus(v[0])),
        e6.value().to_vec(),
    )
}

#[test]
fn pin_prompt_then_cancel_ends_with_9f43() {
    let mut h = pin_host();
    h.unsolicited.clear();
    h.start(2000);
    let (st, e6) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_ENTRY_REQUESTED));
    assert_eq!(tag(&e6, 0xC4), Some(b"ENTER PIN".to_vec()));
    h.no_response();
    h.reader.cancel_pin(h.now);
    h.pump();
    let (_, e6) = status_of(&h.unsolicited());
    assert_eq!(tag(&e6, 0xDFA20A), Some(vec![0x02]));
    assert_eq!(sw(&h.response()), StatusWord::USER_CANCELLED);
}

#[test]
fn pin_entered_then_online() {
    let mut h = pin_host();
    h.unsolicited.clear();
    h.start(2000);
    let (st, _) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_ENTRY_REQUESTED));
    h.reader.enter_pin(h.now, PinAction::Digits("1234".into()));
    h.pump();
    let (st, e6) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_ENTRY_HANDOFF));
    assert_eq!(tag(&e6, 0xC5), Some(vec![4]));
    let e4 = expect_template(&h.response(), 0xE4);
    // CVM results: offline plaintext PIN (01), successful (02).
    assert_eq!(tag(&e4, 0x9F34).map(|v| v[2]), Some(0x02));
}

#[test]
fn wrong_pin_prompts_again_and_auto_pin_uses_the_profile_pin() {
    let mut h = Host::with_card("offline-pin");
    h.reader.enter_pin(h.now, PinAction::Digits("9999".into()));
    h.unsolicited.clear();
    h.start(2000);
    let e4 = expect_template(&h.response(), 0xE4);
    assert_eq!(tag(&e4, 0x9F34).map(|v| v[2]), Some(0x02));
    let msgs: Vec<Vec<u8>> = h
        .unsolicited
        .iter()
        .filter_map(|m| tag(&status_of(m).1, 0xC4))
        .collect();
    assert!(msgs.contains(&b"INCORRECT PIN".to_vec()), "{msgs:?}");
}

#[test]
fn start_without_a_card_is_9f23_and_abort_is_answered() {
    let mut h = Host::new(SimConfig::default());
    h.start(100);
    assert_eq!(sw(&h.response()), StatusWord::CARD_REMOVED);
    h.send(&[0xD0, 0xFF, 0x00, 0x00]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    h.no_response();
}

#[test]
fn card_wait_timeout_is_configurable() {
    // A contactless start waits for a tap; its end comes unsolicited, like its results.
    let mut h = Host::new(SimConfig {
        card_timeout: Some(Duration::from_secs(5)),
        ..SimConfig::default()
    });
    h.unsolicited.clear();
    ctls_start(&mut h);
    // Answered at once (no timers run: the wait has only begun).
    assert_eq!(sw(&h.responses.pop_front().unwrap()), StatusWord::SUCCESS);
    h.advance(Duration::from_secs(4));
    assert!(h.responses.is_empty() && h.unsolicited.is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(sw(&h.unsolicited()), StatusWord::COMMAND_CANCELLED);
    h.no_response();
}

#[test]
fn a_card_set_after_arming_is_presented_and_the_start_proceeds() {
    let mut h = Host::new(SimConfig::default());
    h.arm();
    h.reader
        .control(
            h.now,
            Control::Card {
                profile: "mc-cvn16".into(),
            },
        )
        .unwrap();
    h.pump();
    let ev = h.unsolicited();
    assert_eq!(
        &ev.payload[..],
        &[0xE0, 0x04, 0x48, 0x02, 0x03, 0x00, 0x90, 0x00]
    );
    h.start(100);
    expect_template(&h.response(), 0xE4);
}

#[test]
fn logged_decision_flow_stops_with_e2_then_e0_then_e4() {
    // The UX301 log: DE D1 → E2 (card data), DE D2 01 00 + amount confirmation → E0 (after
    // cardholder verification), DE D2 01 00 → E4.
    let mut h = Host::with_card("visa-cvn18");
    let txn = WireTxn::purchase(3550, 840, 840, 200910, 155042);
    h.send(&Command::StartTransaction(&txn).to_payload().unwrap());
    let m = h.raw_response();
    assert!(is_decision(&m));
    let e2 = expect_template(&m, 0xE2);
    assert_eq!(
        hex::encode_upper(tag(&e2, 0x5A).unwrap()),
        "401200AAAAAA5439"
    );
    assert!(tag(&e2, 0x9F06).is_some() && tag(&e2, 0x50).is_some());
    assert!(tag(&e2, 0xFF7F).is_some(), "SRED data");
    assert!(tag(&e2, 0x9F26).is_none(), "no cryptogram yet");
    let mut confirm = hex::decode(AMOUNT_CONFIRMATION_P1_00).unwrap();
    confirm[2] = 0x01;
    h.send(&confirm);
    let e0 = expect_template(&h.raw_response(), 0xE0);
    assert!(tag(&e0, 0x9F34).is_some(), "CVM results");
    assert!(tag(&e0, 0x9F26).is_none());
    h.send(&[0xDE, 0xD2, 0x01, 0x00]);
    let e4 = expect_template(&h.raw_response(), 0xE4);
    assert_eq!(tag(&e4, 0x9F27), Some(vec![0x80]));
    // The final Continue without C0: the reader's own default action analysis decides.
    h.continue_with(&[0x8A, 0x02, b'0', b'0'], true);
    let m = h.raw_response();
    let t = data(&m)[0];
    let fin = expect_template(&m, t);
    let arc = tag(&fin, 0x8A).unwrap();
    assert!(arc == b"Z3" || arc == b"Y3", "{arc:?}");
    // `DE D1` without a card: 9F23.
    h.send(&Command::StartTransaction(&txn).to_payload().unwrap());
    assert_eq!(sw(&h.raw_response()), StatusWord::CARD_REMOVED);
}

#[test]
fn c0_00_declines_even_an_approval_code() {
    let mut h = Host::with_card("visa-cvn18");
    h.start(3250);
    let e4 = expect_template(&h.response(), 0xE4);
    let mut answer = host_answer(&e4, *b"00", false);
    let c0 = answer
        .windows(3)
        .position(|w| w == [0xC0, 0x01, 0x01])
        .unwrap();
    answer[c0 + 2] = 0x00;
    h.continue_with(&answer, true);
    let e5 = expect_template(&h.response(), 0xE5);
    assert_eq!(tag(&e5, 0x9F27), Some(vec![0x00]));
}

#[test]
fn device_profiles_answer_the_captured_reset_and_the_m400_card_status() {
    for (device, model, vipa) in [
        (DeviceProfile::Ux300, "UX300", "6.8.2.24"),
        (DeviceProfile::Ux301, "UX301", "6.8.2.24"),
        (DeviceProfile::M400, "M400WIFI/BT", "6.8.2.11"),
        (DeviceProfile::P400Plus, "P400Plus", "6.8.2.11"),
    ] {
        let mut h = Host::new(SimConfig {
            device,
            ..SimConfig::default()
        });
        h.send(&[0xD0, 0x00, 0x00, 0x00]);
        let m = h.response();
        let info = DeviceInfo::parse(&data(&m)).unwrap();
        assert_eq!(info.devices[0].model.as_deref(), Some(model), "{device:?}");
        assert_eq!(info.component_version("VIPA"), Some(vipa), "{device:?}");
        h.unsolicited.clear();
        h.send(&[0xD0, 0x60, 0x3F, 0x03]);
        if device == DeviceProfile::M400 {
            h.no_response();
            let m = h.unsolicited();
            assert_eq!(
                hex::encode_upper(&m.payload),
                "E004480200009000",
                "as logged"
            );
        } else {
            assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
        }
    }
}

#[test]
fn card_removed_mid_transaction_gives_9f23() {
    let mut h = pin_host();
    h.send(&[0xD0, 0x60, 0x01, 0x01]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    h.unsolicited.clear();
    h.start(2000);
    let _ = h.unsolicited(); // PIN prompt
    h.reader.remove_card(h.now);
    h.pump();
    let ev = h.unsolicited();
    assert_eq!(
        &ev.payload[..],
        &[0xE0, 0x04, 0x48, 0x02, 0x00, 0x00, 0x90, 0x00]
    );
    assert_eq!(sw(&h.response()), StatusWord::CARD_REMOVED);
}

#[test]
fn card_removed_after_e4_fails_the_continue() {
    let mut h = Host::with_card("visa-cvn18");
    h.start(100);
    let e4 = expect_template(&h.response(), 0xE4);
    h.reader.remove_card(h.now);
    h.continue_with(&host_answer(&e4, *b"00", false), true);
    assert_eq!(sw(&h.response()), StatusWord::CARD_REMOVED);
}

#[test]
fn swiped_chip_card_must_use_chip() {
    let mut h = Host::new(SimConfig::default());
    h.reader.swipe_card(h.now, "visa-cvn18").unwrap();
    h.start(100);
    assert_eq!(sw(&h.response()), StatusWord::USE_CHIP);
}

fn ctls_start(h: &mut Host) {
    let data = WireTxn::purchase(1500, 840, 840, 250303, 101010);
    let mut b = TlvBuilder::new();
    let p = Command::StartTransaction(&data).to_payload().unwrap();
    b.raw(&[0xC0, 0xA0, 0x01]);
    b.raw(&p[3..]);
    h.send(b.as_bytes());
}

#[test]
fn contactless_msd_gives_e7_without_clear_track_data() {
    let mut h = Host::new(SimConfig::default());
    h.reader.tap_card(h.now, "visa-cvn18", true).unwrap();
    h.unsolicited.clear();
    ctls_start(&mut h);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    let m = h.unsolicited();
    let e7 = expect_template(&m, 0xE7);
    assert_eq!(tag(&e7, 0x9F39), Some(vec![0x91]));
    assert!(tag(&e7, 0xDFDB06)
        .unwrap()
        .starts_with(b"401200******5439D"));
    let ff7f = tlv::find(&e7, Tag::VIPA_SRED).unwrap();
    let clear = crate::sred::decrypt(ff7f.value()).unwrap();
    assert_eq!(clear.pan.last4(), "5439");
    let hex_all = hex::encode_upper(&m.payload);
    assert!(!hex_all.contains("4012000098765439"));
    assert!(!String::from_utf8_lossy(&m.payload).contains("4012000098765439"));
}

#[test]
fn contactless_emv_tap_goes_online_with_entry_mode_07() {
    let mut h = Host::new(SimConfig {
        card: Some("visa-cvn18".into()),
        auto_present: Presentation::Tap,
        ..SimConfig::default()
    });
    h.unsolicited.clear();
    ctls_start(&mut h);
    // `C0 A0` is answered at once; the tap's result comes unsolicited (§0).
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    let e4 = expect_template(&h.unsolicited(), 0xE4);
    assert_eq!(tag(&e4, 0x9F39), Some(vec![0x07]));
    assert!(issuer::verify_arqc(&e4).is_ok());
    h.continue_with(&[0x8A, 0x02, b'0', b'5'], true);
    let e5 = expect_template(&h.response(), 0xE5);
    assert_eq!(tag(&e5, 0x8A), Some(b"05".to_vec()));
    // C0 C0 cancels a waiting contactless start, then `DFDF30` follows unsolicited.
    let mut h = Host::new(SimConfig::default());
    ctls_start(&mut h);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    h.unsolicited.clear();
    h.send(&[0xC0, 0xC0, 0x00, 0x00]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    let m = h.unsolicited();
    assert_eq!(hex::encode_upper(&m.payload), "DFDF3001FB9000", "as logged");
    h.no_response();
    // P1 = 00 arms nothing: a tap then gives no result.
    let mut h = Host::new(SimConfig::default());
    let data = WireTxn::purchase(1500, 840, 840, 250303, 101010);
    let p = Command::StartContactless {
        kinds: 0,
        data: &data,
    }
    .to_payload()
    .unwrap();
    h.send(&p);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    h.unsolicited.clear();
    h.reader.tap_card(h.now, "visa-cvn18", false).unwrap();
    h.pump();
    assert!(h.unsolicited.is_empty() && h.responses.is_empty());
}

#[test]
fn display_is_recorded() {
    let mut h = Host::new(SimConfig::default());
    h.send(&[0xD2, 0x01, 0x0D, 0x01]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    let mut b = TlvBuilder::new();
    b.constructed(Tag::VIPA_E0, |b| {
        b.primitive(Tag::VIPA_DISPLAY_TEXT, b"HELLO");
    });
    let mut p = vec![0xD2, 0x02, 0x00, 0x01, b.len() as u8];
    p.extend_from_slice(b.as_bytes());
    h.send(&p);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    let texts: Vec<String> = std::iter::from_fn(|| h.reader.poll_event())
        .filter_map(|e| match e {
            Event::Display { text } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["INSERT CARD".to_string(), "HELLO".to_string()]);
}

#[test]
fn bad_lrc_is_dropped_and_the_next_command_answered() {
    let mut h = Host::new(SimConfig::default());
    h.send_raw(&[0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2B]);
    h.no_response();
    h.send_raw(&[0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2A]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
}

#[test]
fn scenario_removes_the_card_at_e4() {
    let mut h = Host::with_card("visa-cvn18");
    let s =
        Scenario::parse("{\"cmd\":\"wait-for\",\"point\":\"e4\"}\n{\"cmd\":\"remove\"}\n").unwrap();
    h.reader.load_scenario(h.now, s);
    h.start(100);
    let e4 = expect_template(&h.response(), 0xE4);
    h.continue_with(&host_answer(&e4, *b"00", false), true);
    assert_eq!(sw(&h.response()), StatusWord::CARD_REMOVED);
}

// ----- faults -----

/// Runs a fixed host script (power-on, reset, card status, a sale) with `faults` and `seed`
/// and returns every byte the simulator sent, with the time it became due.
fn faulty_run(faults: &str, seed: u64) -> (Vec<u8>, Vec<Event>) {
    let mut h = Host::new(SimConfig {
        card: Some("visa-cvn18".into()),
        seed,
        faults: faults.parse().unwrap(),
        ..SimConfig::default()
    });
    h.send(&[0xD0, 0x00, 0x00, 0x00]);
    h.settle(Duration::from_secs(5));
    h.send(&[0xD0, 0x60, 0x01, 0x01]);
    h.settle(Duration::from_secs(5));
    h.start(3250);
    h.settle(Duration::from_secs(5));
    h.continue_with(&[0x8A, 0x02, b'Z', b'3'], true);
    h.settle(Duration::from_secs(5));
    let events = std::iter::from_fn(|| h.reader.poll_event()).collect();
    (h.wire, events)
}

#[test]
fn every_fault_kind_is_reproducible_by_seed() {
    let (clean, _) = faulty_run("", 42);
    for spec in [
        "corrupt-lrc=0.3",
        "flip=0.01",
        "drop=0.01",
        "dup=0.3",
        "split",
        "slow=200ms",
        "stall-after=3",
        "reboot-at=e4",
        "remove-at=e4",
        "cancel-at=e4",
        "reboot-at=start",
        "corrupt-lrc=0.1,flip=0.001,drop=0.001,dup=0.1,split",
    ] {
        let (a, ea) = faulty_run(spec, 42);
        let (b, eb) = faulty_run(spec, 42);
        assert_eq!(a, b, "{spec}: same seed, same bytes");
        assert_eq!(ea, eb, "{spec}: same seed, same events");
        if spec != "split" && spec != "slow=200ms" {
            assert_ne!(a, clean, "{spec}: the fault changes the output");
        } else {
            assert_eq!(a, clean, "{spec}: same bytes, different timing/chunking");
        }
    }
    // A different seed gives a different corruption pattern.
    assert_ne!(faulty_run("flip=0.02", 1).0, faulty_run("flip=0.02", 2).0);
}

#[test]
fn slow_delays_and_split_chunks() {
    let mut r = SimReader::new(
        SimConfig {
            faults: "slow=200ms,split".parse().unwrap(),
            seed: 5,
            ..SimConfig::default()
        },
        Instant::now(),
    );
    let t0 = Instant::now();
    r.handle_timeout(t0);
    assert!(r.poll_transmit(t0).is_none(), "held back by slow");
    assert!(r
        .poll_timeout()
        .is_some_and(|t| t >= t0 + Duration::from_millis(200)));
    let t1 = t0 + Duration::from_millis(200);
    let chunks: Vec<Bytes> = std::iter::from_fn(|| r.poll_transmit(t1)).collect();
    assert!(chunks.len() > 1, "split into chunks");
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let mut d = Deframer::new();
    d.push(&joined);
    assert!(matches!(d.poll(), Some(Inbound::Message(m)) if m.unsolicited));
}

#[test]
fn stall_and_flow_faults_behave() {
    // stall-after: the power-on E6 and one response, then silence until reboot.
    let mut h = Host::new(SimConfig {
        faults: "stall-after=2".parse().unwrap(),
        ..SimConfig::default()
    });
    h.send(&[0xD0, 0xFF, 0x00, 0x00]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);
    h.send(&[0xD0, 0xFF, 0x00, 0x00]);
    h.no_response();
    assert!(h.reader.status().stalled);
    h.reader.reboot(h.now);
    h.pump();
    assert!(h
        .unsolicited
        .iter()
        .any(|m| m.payload.first() == Some(&0xE6)));
    h.send(&[0xD0, 0xFF, 0x00, 0x00]);
    assert_eq!(sw(&h.response()), StatusWord::SUCCESS);

    // reboot-at=e4: no E4, a power-on E6 instead.
    let mut h = Host::with_card("visa-cvn18");
    h.reader.set_faults("reboot-at=e4".parse().unwrap());
    h.unsolicited.clear();
    h.start(100);
    h.no_response();
    assert_eq!(h.unsolicited().payload[0], 0xE6);

    // cancel-at=pin: the user cancels at the prompt.
    let mut h = Host::new(SimConfig {
        card: Some("offline-pin".into()),
        faults: "cancel-at=pin".parse().unwrap(),
        ..SimConfig::default()
    });
    h.start(100);
    assert_eq!(sw(&h.response()), StatusWord::USER_CANCELLED);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_host_bytes_never_panic_and_reset_is_still_answered(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        card in proptest::option::of(0usize..12),
    ) {
        let names: Vec<&str> = crate::card::profile_names().collect();
        let mut h = Host::new(SimConfig {
            card: card.and_then(|i| names.get(i)).map(|s| s.to_string()),
            ..SimConfig::default()
        });
        for c in &chunks {
            h.send_raw(c);
        }
        // Let the stale input timer drop any partial frame, then a valid Reset is answered.
        h.advance(Duration::from_secs(2));
        h.responses.clear();
        h.send(&[0xD0, 0x00, 0x00, 0x00]);
        h.settle(Duration::from_secs(5));
        let answered = h.responses.iter().any(|m| {
            Response::parse(&m.payload).is_ok_and(|r| {
                r.sw() == StatusWord::SUCCESS && DeviceInfo::parse(r.data()).is_ok_and(|i| i.terminal_id.is_some())
            })
        });
        prop_assert!(answered);
    }

    #[test]
    fn random_valid_commands_never_panic(
        cmds in proptest::collection::vec((0usize..9, any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
    ) {
        let codes: [[u8; 2]; 9] = [
            [0xD0, 0x00], [0xD0, 0x60], [0xD0, 0xFF], [0xD2, 0x01], [0xDE, 0xD1],
            [0xDE, 0xD2], [0xC0, 0xA0], [0xC0, 0xC0], [0xC0, 0xA1],
        ];
        let mut h = Host::with_card("two-app");
        for (i, p1, p2, data) in cmds {
            let mut p = vec![codes[i][0], codes[i][1], p1, p2];
            if !data.is_empty() {
                p.push(data.len() as u8);
                p.extend_from_slice(&data);
            }
            h.send(&p);
            h.settle(Duration::from_secs(1));
        }
        h.send(&hex::decode(&START_CAPTURE[6..START_CAPTURE.len() - 2]).unwrap());
        h.settle(Duration::from_secs(5));
        prop_assert!(!h.responses.is_empty());
    }
}

#[test]
fn online_pin_de_d6_gives_a_dukpt_pin_block_and_de_d5_ff_01_bypasses() {
    // The online-PIN card: the card flow records the CVM only; the PIN comes by `DE D6`.
    let mut h = Host::with_card("online-pin");
    h.start(1500);
    let e4 = expect_template(&h.response(), 0xE4);
    assert_eq!(
        tag(&e4, 0x9F34).map(|v| v[0] & 0x3F),
        Some(0x02),
        "online PIN CVM"
    );
    h.unsolicited.clear();
    h.send(&[
        0xDE, 0xD6, 0x00, 0x00, 0x06, 0xE0, 0x04, 0xDF, 0xED, 0x0D, 0x00,
    ]);
    let m = h.response();
    let (st, _) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_ENTRY_REQUESTED));
    let e0 = expect_template(&m, 0xE0);
    let block: [u8; 8] = tag(&e0, 0xDFED6C).unwrap().try_into().unwrap();
    let ksn: [u8; 10] = tag(&e0, 0xDFED03).unwrap().try_into().unwrap();
    // Decrypt under the ANSI test BDK's PIN variant and undo ISO 9564 format 0.
    let mut key = *crate::sred::transaction_key(
        &crate::crypto::SecretKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap(),
        &ksn,
    )
    .expose();
    key[7] ^= 0xFF;
    key[15] ^= 0xFF;
    let clear = crate::crypto::tdes_decrypt(&crate::crypto::SecretKey::from_bytes(key), block);
    let pan = card::profile("online-pin").unwrap().pan;
    let digits = pan.reveal();
    let body = &digits[..digits.len() - 1];
    let tail = &body[body.len() - 12..];
    let mut pan_field = [0u8; 8];
    for (i, d) in tail.bytes().enumerate() {
        let n = 4 + i;
        pan_field[n / 2] |= (d - b'0') << if n % 2 == 0 { 4 } else { 0 };
    }
    let field: Vec<u8> = clear.iter().zip(pan_field).map(|(c, p)| c ^ p).collect();
    let pin = card::profile("online-pin")
        .unwrap()
        .pin
        .map(|(p, _)| p)
        .unwrap_or_else(|| "1234".into());
    assert_eq!(field[0], pin.len() as u8, "format 0, PIN length");
    let digits_hex = hex::encode_upper(&field[1..]);
    assert!(digits_hex.starts_with(&pin), "{digits_hex}");

    // Bypass: `DE D5 FF 01` while the PIN pad waits → the DE D6 ends 9015, E6{C3 0E} said so.
    let mut h = Host::new(SimConfig {
        card: Some("online-pin".into()),
        auto_pin: false,
        ..SimConfig::default()
    });
    h.start(1500);
    expect_template(&h.response(), 0xE4);
    h.send(&[0xDE, 0xD6, 0x00, 0x00]);
    h.no_response();
    h.unsolicited.clear();
    h.send(&[0xDE, 0xD5, 0xFF, 0x01]);
    let codes: Vec<StatusWord> = (0..2).map(|_| sw(&h.response())).collect();
    assert!(
        codes.contains(&StatusWord::SUCCESS) && codes.contains(&StatusWord::PIN_BYPASSED),
        "{codes:?}"
    );
    let (st, _) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_BYPASS_CONFIRMATION));
}

#[test]
fn card_removed_at_the_online_pin_prompt_ends_it_and_the_next_pin_goes_to_the_next_prompt() {
    // The online-PIN card, the cardholder slow: `DE D6` waits for the PIN pad.
    let mut h = Host::new(SimConfig {
        card: Some("online-pin".into()),
        auto_pin: false,
        ..SimConfig::default()
    });
    h.start(1500);
    expect_template(&h.response(), 0xE4);
    h.send(&[0xDE, 0xD6, 0x00, 0x00]);
    h.no_response();
    assert_eq!(h.reader.status().txn, "pin-entry", "the PIN pad waits");
    // The card leaves: the PIN entry ends with the card-removed status, like any pending
    // step of a contact transaction (§0: 9F23).
    h.reader.remove_card(h.now);
    h.pump();
    assert_eq!(sw(&h.response()), StatusWord::CARD_REMOVED);
    assert_eq!(h.reader.status().txn, "idle");
    // The next sale's offline PIN prompt gets the next PIN typed: the online entry that the
    // removal ended is not still waiting for it.
    h.reader.set_card(h.now, "offline-pin").unwrap();
    h.unsolicited.clear();
    h.start(2000);
    let (st, _) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_ENTRY_REQUESTED));
    h.reader.enter_pin(h.now, PinAction::Digits("1234".into()));
    h.pump();
    let e4 = expect_template(&h.response(), 0xE4);
    assert_eq!(tag(&e4, 0x9F34).map(|v| v[2]), Some(0x02), "offline PIN ok");
    assert!(h.responses.is_empty(), "one answer per command");
}

#[test]
fn card_removed_during_an_online_pin_entry_outside_a_transaction_answers_9f23() {
    let mut h = Host::new(SimConfig {
        auto_pin: false,
        ..SimConfig::default()
    });
    h.reader.insert_card(h.now, "online-pin").unwrap();
    h.send(&[0xDE, 0xD6, 0x00, 0x00]);
    h.no_response();
    h.reader.remove_card(h.now);
    h.pump();
    assert_eq!(sw(&h.response()), StatusWord::CARD_REMOVED);
    assert_eq!(h.reader.status().txn, "idle");
}

#[test]
fn auto_pin_switched_on_types_at_the_prompt_already_showing() {
    // The offline PIN prompt of the card flow.
    let mut h = pin_host();
    h.unsolicited.clear();
    h.start(2000);
    let (st, _) = status_of(&h.unsolicited());
    assert_eq!(st, Some(TransactionStatus::PIN_ENTRY_REQUESTED));
    h.no_response();
    h.reader
        .control(
            h.now,
            Control::Auto {
                insert: None,
                remove: None,
                pin: Some(true),
            },
        )
        .unwrap();
    let e4 = expect_template(&h.response(), 0xE4);
    assert_eq!(
        tag(&e4, 0x9F34).map(|v| v[2]),
        Some(0x02),
        "the profile's PIN"
    );

    // The online PIN entry (`DE D6`).
    let mut h = Host::new(SimConfig {
        card: Some("online-pin".into()),
        auto_pin: false,
        ..SimConfig::default()
    });
    h.start(1500);
    expect_template(&h.response(), 0xE4);
    h.send(&[0xDE, 0xD6, 0x00, 0x00]);
    h.no_response();
    h.reader
        .control(
            h.now,
            Control::Auto {
                insert: None,
                remove: None,
                pin: Some(true),
            },
        )
        .unwrap();
    let e0 = expect_template(&h.response(), 0xE0);
    assert!(tag(&e0, 0xDFED6C).is_some(), "a PIN block");
}
