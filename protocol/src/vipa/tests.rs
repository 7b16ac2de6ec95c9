use super::*;
use crate::frame::{emit_message, Deframer, Inbound, NAD_PED};
use crate::tlv::{Tag, TlvBuilder};
use bytes::BytesMut;
use proptest::prelude::*;

const RESET_CHAINED: &str =
    include_str!("../../../tests/data/vipa/reset-response-ux300-chained.hex");
const START_TXN: &str = include_str!("../../../tests/data/vipa/start-transaction-command.hex");
const E2_RESPONSE: &str =
    include_str!("../../../tests/data/vipa/start-transaction-e2-response.hex");

fn wire(capture: &str) -> Vec<u8> {
    capture
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| hex::decode(l.trim()).unwrap())
        .collect()
}

fn single_message(wire: &[u8]) -> crate::frame::Message {
    let mut d = Deframer::new();
    d.push(wire);
    let Some(Inbound::Message(m)) = d.poll() else {
        panic!("no message")
    };
    assert!(d.poll().is_none());
    m
}

fn framed(cmd: &Command<'_>) -> Vec<u8> {
    let payload = cmd.to_payload().unwrap();
    let mut out = BytesMut::new();
    emit_message(NAD_PED, false, &payload, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn host_commands_of_section_5_2_byte_for_byte() {
    assert_eq!(
        framed(&Command::CardStatus { p1: 1, p2: 1 }),
        [0x01, 0x00, 0x04, 0xD0, 0x60, 0x01, 0x01, 0xB5]
    );
    assert_eq!(
        framed(&Command::Display {
            message: command::display::INSERT_CARD,
            backlight: true,
            text: None
        }),
        [0x01, 0x00, 0x04, 0xD2, 0x01, 0x0D, 0x01, 0xDA]
    );
    assert_eq!(
        framed(&Command::Abort),
        [0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2A]
    );
    assert_eq!(
        framed(&Command::ResetDevice { mode: 0, flags: 0 }),
        [0x01, 0x00, 0x04, 0xD0, 0x00, 0x00, 0x00, 0xD5]
    );
}

fn captured_start() -> TransactionData {
    TransactionData::purchase(3250, 840, 840, 210303, 195724)
}

#[test]
fn start_transaction_rebuilt_byte_for_byte_from_capture() {
    let cmd = Command::StartTransaction(&captured_start());
    assert_eq!(framed(&cmd), wire(START_TXN));
    assert_eq!(cmd.name(), Some("Start Transaction"));
}

#[test]
fn captured_start_transaction_parses_back() {
    let m = single_message(&wire(START_TXN));
    let v = CommandView::parse(&m.payload).unwrap();
    assert_eq!(
        (v.cla, v.ins, v.p1, v.p2, v.lc, v.le),
        (0xDE, 0xD1, 0, 0, Some(0x36), None)
    );
    assert_eq!(v.data.len(), 0x36);
    assert_eq!(v.name(), Some("Start Transaction"));
    assert_eq!(TransactionData::parse(v.data).unwrap(), captured_start());
}

#[test]
fn captured_e2_response() {
    let m = single_message(&wire(E2_RESPONSE));
    let r = Response::parse(&m.payload).unwrap();
    assert_eq!(r.sw(), StatusWord::SUCCESS);
    let t = r.template().unwrap();
    assert_eq!(t.kind(), TemplateKind::DecisionRequired);
    assert_eq!(t.tlv().len(), 229);
    assert_eq!(t.value(Tag::VIPA_C1), Some(&[0x00][..]));
    assert_eq!(
        t.value(Tag::APPLICATION_LABEL),
        Some(&b"AMERICAN EXPRESS"[..])
    );
    assert_eq!(
        t.value(Tag::PAN),
        Some(&hex::decode("374245AAAAA1006F").unwrap()[..])
    );
    let sred = t.sred().unwrap();
    assert_eq!(
        sred.ksn(),
        Some(&hex::decode("FFFF98765432110010A4").unwrap()[..])
    );
    assert_eq!(
        sred.iv(),
        Some(&hex::decode("ED02AA537757D99F").unwrap()[..])
    );
    assert_eq!(sred.data().map(<[u8]>::len), Some(32));
    assert_eq!(sred.status(), Some(&[0, 0, 0, 0][..]));
    assert_eq!(t.value(TAG_DFDB0E), Some(&[0, 0, 0x0D, 0x01][..]));
    let token = r.token().unwrap();
    assert_eq!(token.kcv(), Some(&[0xE7, 0xC4, 0xD9][..]));
    assert_eq!(token.token().map(<[u8]>::len), Some(32));
    assert_eq!(
        t.value(Tag::AID_TERMINAL),
        Some(&hex::decode("A00000002501").unwrap()[..])
    );
    // Debug never shows the data.
    let dbg = format!("{r:?} {sred:?} {token:?} {m:?}");
    assert!(!dbg.contains("374245"), "{dbg}");
}

#[test]
fn reset_response_from_three_chained_frames_to_device_info() {
    let m = single_message(&wire(RESET_CHAINED));
    assert_eq!(m.frames, 3);
    let r = Response::parse(&m.payload).unwrap();
    assert_eq!(r.sw(), StatusWord::SUCCESS);
    let info = DeviceInfo::parse(r.data()).unwrap();
    assert_eq!(info.terminal_id.as_deref(), Some("32434278"));
    assert_eq!(info.devices.len(), 2);
    let ux300 = &info.devices[0];
    assert_eq!(ux300.model.as_deref(), Some("UX300"));
    assert_eq!(ux300.serial.as_deref(), Some("986227287"));
    assert_eq!(ux300.version.as_deref(), Some("release-31013400"));
    let libs: Vec<(&str, &str)> = ux300
        .libs
        .iter()
        .map(|l| (l.name.as_str(), l.version.as_str()))
        .collect();
    assert_eq!(
        libs,
        [
            ("SBI", "03.13"),
            ("CIB", "30025000000"),
            ("CIB_VER", "03.22")
        ]
    );
    assert!(ux300
        .other
        .iter()
        .any(|f| f.tag == "DFEC1F" && f.value == "0000716B"));
    let ux100 = &info.devices[1];
    assert_eq!(ux100.model.as_deref(), Some("UX100"));
    assert_eq!(ux100.serial.as_deref(), Some("986109194"));
    assert_eq!(
        ux100.version.as_deref(),
        Some("DL.FWUX.01.05.06.0028.WW01.tgz")
    );
    assert_eq!(info.components[0].name.as_deref(), Some("RELEASE"));
    assert_eq!(info.components[0].version.as_deref(), Some("6.8.2.24"));
    assert_eq!(info.component_version("VIPA"), Some("6.8.2.24"));
    assert_eq!(info.component_version("AUTHAPP"), Some("0.0.0.5"));
    let names: Vec<&str> = info
        .components
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            "RELEASE",
            "AUTHAPP",
            "CICAPP",
            "GUIPROXY_APP",
            "MAPP",
            "WATCHDOG",
            "CARDAPP"
        ]
    );
    // The CARDAPP EF is the last object before the SW, and its version is empty.
    let cardapp = info
        .components
        .iter()
        .find(|c| c.name.as_deref() == Some("CARDAPP"))
        .unwrap();
    assert_eq!(cardapp.version.as_deref(), Some(""));
    // Top-level DFA242 and F0 are kept raw.
    let other: Vec<&str> = info.other.iter().map(|f| f.tag.as_str()).collect();
    assert_eq!(other, ["DFA242", "F0", "DFA21D", "DFA21E"]);
    // The second EF has no name: the SRED library with its whitelist hash.
    let sred = &info.components[1];
    assert_eq!(sred.name, None);
    assert_eq!(sred.libs[0].name, "VSD SRED Library");
    assert_eq!(sred.libs[0].version, "0.0.0.17");
    let tags: Vec<&str> = sred.other.iter().map(|f| f.tag.as_str()).collect();
    assert_eq!(tags, ["DFDB0E", "DFDB08", "DFDB09"]);
    assert_eq!(info.components.len(), 8);
    // The same data re-chained at another size parses the same: chaining is invisible.
    let mut out = BytesMut::new();
    emit_message(NAD_PED, false, &m.payload, &mut out).unwrap();
    let again = single_message(&out);
    assert_eq!(
        DeviceInfo::parse(Response::parse(&again.payload).unwrap().data()).unwrap(),
        info
    );
}

#[test]
fn continue_transaction_both_forms() {
    let mut b = TlvBuilder::new();
    b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, b"00");
    b.primitive(
        Tag::ISSUER_AUTHENTICATION_DATA,
        &hex::decode("8877665544332211AABB").unwrap(),
    );
    let tlvs = b.freeze();
    let bare = Command::ContinueTransaction {
        p1: 0,
        tlvs: &tlvs,
        form: ContinueForm::Bare,
    }
    .to_payload()
    .unwrap();
    assert_eq!(&bare[..5], &[0xDE, 0xD2, 0x00, 0x00, tlvs.len() as u8]);
    assert_eq!(&bare[5..], &tlvs[..]);
    let wrapped = Command::ContinueTransaction {
        p1: 0,
        tlvs: &tlvs,
        form: ContinueForm::WrappedE0,
    }
    .to_payload()
    .unwrap();
    assert_eq!(&wrapped[5..7], &[0xE0, tlvs.len() as u8]);
    for p in [bare, wrapped] {
        let v = CommandView::parse(&p).unwrap();
        assert_eq!(v.continue_data().unwrap(), &tlvs[..]);
        assert_eq!(v.name(), Some("Continue Transaction"));
    }
}

#[test]
fn display_text_and_long_chained_command() {
    let p = Command::DisplayText { text: "HELLO" }.to_payload().unwrap();
    assert_eq!(
        &p[..],
        &[
            0xD2, 0x02, 0x00, 0x01, 0x0B, 0xE0, 0x09, 0xDF, 0x81, 0x04, 0x05, b'H', b'E', b'L',
            b'L', b'O'
        ]
    );
    assert_eq!(
        CommandView::parse(&p).unwrap().display_text().as_deref(),
        Some("HELLO")
    );
    // A command with more than 255 data bytes: Lc = FF, chained by the frame layer.
    let data = vec![0x42; 600];
    let p = Command::Raw {
        cla: 0xD2,
        ins: 0x14,
        p1: 0,
        p2: 0,
        data: &data,
        le: None,
    }
    .to_payload()
    .unwrap();
    assert_eq!(p[4], 0xFF);
    let mut out = BytesMut::new();
    assert_eq!(emit_message(NAD_PED, false, &p, &mut out), Ok(3));
    let m = single_message(&out);
    let v = CommandView::parse(&m.payload).unwrap();
    assert_eq!(
        (v.lc, v.data.len(), v.le, v.name()),
        (Some(0xFF), 600, None, Some("Manual PAN Entry"))
    );
    // Le only, and Lc + data + Le.
    let v = CommandView::parse(&[0x00, 0xB0, 0x00, 0x00, 0x80]).unwrap();
    assert_eq!((v.lc, v.data, v.le), (None, &[][..], Some(0x80)));
    let v = CommandView::parse(&[0x00, 0xB0, 0x00, 0x00, 0x02, 0xAA, 0xBB, 0x10]).unwrap();
    assert_eq!(
        (v.lc, v.data, v.le),
        (Some(2), &[0xAA, 0xBB][..], Some(0x10))
    );
    // Inconsistent Lc: tolerant, data is everything after it.
    let v = CommandView::parse(&[0xDE, 0xD2, 0x00, 0x00, 0x09, 0xAA, 0xBB]).unwrap();
    assert_eq!(v.data, &[0xAA, 0xBB]);
    assert_eq!(
        CommandView::parse(&[0xDE, 0xD2, 0x00]),
        Err(VipaError::CommandTooShort { len: 3 })
    );
}

#[test]
fn command_names_and_errors() {
    assert_eq!(command_name(0xDE, 0xD1), Some("Start Transaction"));
    assert_eq!(
        command_name(0xC0, 0xA0),
        Some("Start Contactless Transaction")
    );
    assert_eq!(command_name(0xD0, 0xFF), Some("Abort"));
    assert_eq!(command_name(0xDE, 0xD3), None);
    let mut t = captured_start();
    t.amount = 1_000_000_000_000;
    assert_eq!(
        Command::StartTransaction(&t).to_payload(),
        Err(CommandError::AmountTooLarge(1_000_000_000_000))
    );
    t.amount = 999_999_999_999;
    let p = Command::StartTransaction(&t).to_payload().unwrap();
    let v = CommandView::parse(&p).unwrap();
    assert_eq!(
        TransactionData::parse(v.data).unwrap().amount,
        999_999_999_999
    );
    assert_eq!(
        TransactionData::parse(&[0xE0, 0x03, 0x9C, 0x01, 0x00]),
        Err(VipaError::MissingTag {
            tag: Tag::AMOUNT_AUTHORISED
        })
    );
    assert_eq!(
        TransactionData::parse(&[0x9F, 0x02, 0x01, 0xAB]),
        Err(VipaError::BadBcd {
            tag: Tag::AMOUNT_AUTHORISED
        })
    );
}

#[test]
fn status_words_and_short_responses() {
    let r = Response::parse(&[0x9F, 0x24]).unwrap();
    assert_eq!(r.sw(), StatusWord(0x9F24));
    assert!(r.data().is_empty() && r.template().is_none());
    assert_eq!(
        Response::parse(&[0x90]),
        Err(VipaError::ResponseTooShort { len: 1 })
    );
    assert_eq!(Response::parse(&[0x64, 0x00]).unwrap().sw().name(), None);
}

#[test]
fn unsolicited_card_event_and_e6_status() {
    let mut b = TlvBuilder::new();
    b.constructed(Tag::VIPA_E0, |b| {
        b.primitive(Tag::VIPA_CARD_STATUS, &[0x03, 0x00]);
        b.primitive(Tag(0xDFDF7A), &[0x01]); // unknown tag survives
    });
    let mut p = b.into_inner();
    p.extend_from_slice(&[0x90, 0x00]);
    let r = Response::parse(&p).unwrap();
    let ev = r.template().unwrap().card_event().unwrap();
    let st = ev.status().unwrap();
    assert_eq!(st, CardStatus([0x03, 0x00]));
    assert!(st.card_present() && st.emv_compatible() && !st.msr_data_available());
    assert!(!st.track_available(2));
    assert_eq!(ev.template().value(Tag(0xDFDF7A)), Some(&[0x01][..]));

    let mut b = TlvBuilder::new();
    b.constructed(Tag::VIPA_E6, |b| {
        b.primitive(Tag::VIPA_TRANSACTION_STATUS, &[0x0C]);
        b.primitive(Tag::VIPA_STATUS_MESSAGE, b"ENTER PIN");
        b.primitive(Tag::VIPA_PIN_DIGIT_COUNT, &[0x04]);
    });
    let mut p = b.into_inner();
    p.extend_from_slice(&[0x90, 0x00]);
    let r = Response::parse(&p).unwrap();
    let s = r.template().unwrap().status().unwrap();
    assert_eq!(
        s.transaction_status(),
        Some(TransactionStatus::PIN_ENTRY_REQUESTED)
    );
    assert_eq!(
        s.transaction_status().unwrap().name(),
        Some("pin entry requested")
    );
    assert_eq!(s.message_text().as_deref(), Some("ENTER PIN"));
    assert_eq!(s.pin_digits(), Some(4));
    assert!(r.template().unwrap().card_event().is_none());
}

proptest! {
    #[test]
    fn views_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(r) = Response::parse(&bytes) {
            for t in r.templates() {
                let _ = (t.kind(), t.sred().map(|s| (s.ksn(), s.data())), t.token().map(|k| k.kcv()));
                let _ = t.status().map(|s| (s.transaction_status(), s.message_text(), s.pin_digits()));
                let _ = t.card_event().map(|e| e.status());
            }
            let _ = DeviceInfo::parse(r.data());
        }
        if let Ok(v) = CommandView::parse(&bytes) {
            prop_assert!(v.data.len() + 4 <= bytes.len());
            let _ = (v.name(), v.continue_data(), v.display_text(), TransactionData::parse(v.data));
        }
    }

    #[test]
    fn transaction_data_round_trips(
        ty in any::<u8>(), amount in 0u64..=999_999_999_999, other in 0u64..=999_999_999_999,
        date in 0u32..=999_999, time in 0u32..=999_999, cur in 0u16..=999, cty in 0u16..=999,
        extra in prop::collection::vec((0xDFA201u32..0xDFA27F, prop::collection::vec(any::<u8>(), 0..300)), 0..4),
    ) {
        let t = TransactionData {
            transaction_type: ty, amount, amount_other: other, date, time,
            currency_code: cur, country_code: cty,
            extra: extra.into_iter().map(|(t, v)| (Tag(t), v)).collect(),
        };
        let p = Command::StartTransaction(&t).to_payload().unwrap();
        let mut out = BytesMut::new();
        emit_message(NAD_PED, false, &p, &mut out).unwrap();
        let m = single_message(&out);
        let v = CommandView::parse(&m.payload).unwrap();
        prop_assert_eq!(v.code(), command::code::START_TRANSACTION);
        prop_assert_eq!(TransactionData::parse(v.data).unwrap(), t);
    }
}
