//! Card + kernel + issuer flows, driven without I/O.

use super::*;
use crate::card::{profile_names, CardProfile, PROFILE_FILES};
use crate::issuer::{self, IssuerError};
use crate::sred;

const UN: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn txn(amount: u64) -> TransactionData {
    TransactionData {
        txn_type: 0,
        amount,
        amount_other: 0,
        date: [0x25, 0x03, 0x03],
        time: [0x19, 0x57, 0x24],
        currency: [0x08, 0x40],
        country: Some([0x08, 0x40]),
    }
}

fn start(name: &str, amount: u64) -> (Kernel, Step) {
    let card = Card::from_profile(name).unwrap();
    Kernel::start(
        card,
        SredEncryptor::ansi_test(),
        &TerminalConfig::default(),
        txn(amount),
        UN,
    )
}

fn tag(data: &[u8], t: u32) -> Option<Vec<u8>> {
    tlv::find(data, Tag(t)).map(|x| x.value().to_vec())
}

fn go_online_data(step: &Step) -> Bytes {
    match step {
        Step::GoOnline { data } => data.clone(),
        other => panic!("expected GoOnline, got {other:?}"),
    }
}

/// Drives a simple card to GoOnline, lets the issuer answer with `arc`.
fn online(name: &str, amount: u64, arc: [u8; 2], corrupt: bool) -> (Step, Bytes) {
    let (mut k, step) = start(name, amount);
    let data = go_online_data(&step);
    let v = issuer::verify_arqc(&data).expect("issuer verifies kernel ARQC");
    let iad = v.issuer_auth_data(arc, corrupt);
    let fin = k.host_response(HostResponse {
        arc,
        issuer_auth_data: Some(iad),
        scripts: Vec::new(),
        decision: None,
    });
    (fin, data)
}

#[test]
fn every_profile_loads() {
    assert_eq!(profile_names().count(), 14);
    for (name, text) in PROFILE_FILES {
        let p = CardProfile::load(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&p.name, name);
        assert!(
            !format!("{p:?}").contains(p.pan.reveal()),
            "Debug leaks PAN for {name}"
        );
    }
}

#[test]
fn simple_cards_approve_online_with_tc() {
    for name in ["visa-cvn10", "visa-cvn18", "mc-cvn16", "amex", "discover"] {
        let (fin, online_data) = online(name, 3250, *b"00", false);
        let Step::Approved { data } = fin else {
            panic!("{name}: {fin:?}")
        };
        assert_eq!(tag(&data, 0x9F27), Some(vec![0x40]), "{name}");
        assert_eq!(tag(&data, 0x8A), Some(b"00".to_vec()));
        assert_eq!(tag(&online_data, 0x9F27), Some(vec![0x80]));
        assert_ne!(tag(&data, 0x9F26), tag(&online_data, 0x9F26));
        // SRED on: 5A masked with nibble A, clear PAN only inside FF7F.
        let pan5a = tag(&online_data, 0x5A).unwrap();
        assert!(hex::encode_upper(&pan5a).contains("AAAA"), "{name}");
        let ff7f = tag(&online_data, 0xFF7F).unwrap();
        let clear = sred::decrypt(&ff7f).unwrap();
        assert_eq!(clear.pan, Card::from_profile(name).unwrap().profile().pan);
        // TVR: offline data authentication not performed.
        assert_eq!(tag(&online_data, 0x95).unwrap()[0] & 0x80, 0x80);
    }
}

#[test]
fn bad_arpc_declines_and_sets_tvr() {
    for name in ["visa-cvn10", "visa-cvn18", "mc-cvn16", "amex"] {
        let (fin, _) = online(name, 1091, *b"00", true);
        let Step::Declined { data } = fin else {
            panic!("{name}: {fin:?}")
        };
        assert_eq!(tag(&data, 0x9F27), Some(vec![0x00]));
        assert_eq!(
            tag(&data, 0x95).unwrap()[4] & 0x40,
            0x40,
            "issuer authentication failed bit"
        );
        // CVR byte 1 bit 4 in the IAD: issuer authentication failed.
        let cvn = Card::from_profile(name).unwrap().profile().cvn;
        let cvr = cvn.cvr_from_iad(&tag(&data, 0x9F10).unwrap()).unwrap();
        assert_eq!(cvr[0] & 0x08, 0x08, "{name}");
    }
}

#[test]
fn issuer_decline_arc_05_declines() {
    let (fin, _) = online("visa-cvn18", 500, *b"05", false);
    let Step::Declined { data } = fin else {
        panic!("{fin:?}")
    };
    assert_eq!(tag(&data, 0x8A), Some(b"05".to_vec()));
    assert_eq!(tag(&data, 0x9F27), Some(vec![0x00]));
}

#[test]
fn issuer_auth_fail_card_declines_even_with_good_arpc() {
    let (fin, _) = online("issuer-auth-fail", 500, *b"00", false);
    let Step::Declined { data } = fin else {
        panic!("{fin:?}")
    };
    assert_eq!(tag(&data, 0x95).unwrap()[4] & 0x40, 0x40);
}

#[test]
fn offline_decline_card_declines_at_first_gac() {
    let (_, step) = start("offline-decline", 500);
    let Step::Declined { data } = step else {
        panic!("{step:?}")
    };
    assert_eq!(tag(&data, 0x9F27), Some(vec![0x00]));
    assert_eq!(tag(&data, 0x8A), Some(b"Z1".to_vec()));
}

#[test]
fn two_app_card_asks_for_selection_in_priority_order() {
    let (mut k, step) = start("two-app", 500);
    let Step::SelectApplication { candidates } = step else {
        panic!("{step:?}")
    };
    assert_eq!(candidates.len(), 2);
    assert_eq!(candidates[0].label, "VISA CREDIT");
    assert_eq!(candidates[1].aid, hex::decode("A0000000032010").unwrap());
    assert_eq!(
        k.select_application(5),
        Step::Failed(FailReason::UnexpectedInput)
    );
    let (mut k2, _) = start("two-app", 500);
    let data = go_online_data(&k2.select_application(1));
    assert_eq!(
        tag(&data, 0x84),
        Some(hex::decode("A0000000032010").unwrap())
    );
    let _ = k.card_removed();
}

#[test]
fn offline_pin_right_wrong_and_cancel() {
    // Right PIN.
    let (mut k, step) = start("offline-pin", 500);
    assert_eq!(
        step,
        Step::PinEntry {
            online: false,
            tries_left: Some(3)
        }
    );
    let data = go_online_data(&k.pin_entered(PinInput::Digits("1234".into())));
    assert_eq!(tag(&data, 0x9F34), Some(vec![0x01, 0x00, 0x02]));
    assert_eq!(tag(&data, 0x95).unwrap()[2], 0);

    // Wrong twice, then right: try counter goes 3 → 2 → 1, then resets.
    let (mut k, _) = start("offline-pin", 500);
    assert_eq!(
        k.pin_entered(PinInput::Digits("0000".into())),
        Step::PinEntry {
            online: false,
            tries_left: Some(2)
        }
    );
    assert_eq!(
        k.pin_entered(PinInput::Digits("9999".into())),
        Step::PinEntry {
            online: false,
            tries_left: Some(1)
        }
    );
    let data = go_online_data(&k.pin_entered(PinInput::Digits("1234".into())));
    assert_eq!(tag(&data, 0x9F34), Some(vec![0x01, 0x00, 0x02]));
    let (card, _) = k.finish();
    assert_eq!(card.pin_try_counter(), 3);

    // Three wrong: PIN try limit exceeded, CVM failed; next transaction finds the PIN blocked.
    let (mut k, _) = start("offline-pin", 500);
    k.pin_entered(PinInput::Digits("0000".into()));
    k.pin_entered(PinInput::Digits("0000".into()));
    let data = go_online_data(&k.pin_entered(PinInput::Digits("0000".into())));
    let tvr = tag(&data, 0x95).unwrap();
    assert_eq!(
        tvr[2] & 0xA0,
        0xA0,
        "cvm not successful + pin try limit exceeded"
    );
    assert_eq!(tag(&data, 0x9F34), Some(vec![0x01, 0x00, 0x01]));
    let (card, sred_engine) = k.finish();
    assert_eq!(card.pin_try_counter(), 0);
    let (_, step) = Kernel::start(card, sred_engine, &TerminalConfig::default(), txn(500), UN);
    let data = go_online_data(&step);
    assert_eq!(tag(&data, 0x95).unwrap()[2] & 0x20, 0x20);

    // Cancel: PIN pad present but PIN not entered.
    let (mut k, _) = start("offline-pin", 500);
    let data = go_online_data(&k.pin_entered(PinInput::Cancelled));
    assert_eq!(tag(&data, 0x95).unwrap()[2] & 0x88, 0x88);
}

#[test]
fn online_pin_prompts_then_goes_online() {
    let (mut k, step) = start("online-pin", 500);
    assert_eq!(
        step,
        Step::PinEntry {
            online: true,
            tries_left: None
        }
    );
    let data = go_online_data(&k.pin_entered(PinInput::Digits("4321".into())));
    assert_eq!(tag(&data, 0x9F34), Some(vec![0x42, 0x03, 0x00]));
    assert_eq!(tag(&data, 0x95).unwrap()[2] & 0x04, 0x04);
    // Bypass falls through to signature (42 has "apply succeeding rule").
    let (mut k, _) = start("online-pin", 500);
    let data = go_online_data(&k.pin_entered(PinInput::Bypassed));
    assert_eq!(tag(&data, 0x9F34), Some(vec![0x1E, 0x03, 0x00]));
}

#[test]
fn expired_card_sets_tvr_and_declines_offline() {
    let (_, step) = start("expired", 500);
    let Step::Declined { data } = step else {
        panic!("{step:?}")
    };
    assert_eq!(tag(&data, 0x95).unwrap()[1] & 0x40, 0x40);
    assert_eq!(tag(&data, 0x9F27), Some(vec![0x00]));
}

#[test]
fn blocked_card_fails() {
    let (_, step) = start("blocked", 500);
    assert_eq!(step, Step::Failed(FailReason::ApplicationBlocked));
}

#[test]
fn unable_to_go_online_z3_and_y3() {
    let (mut k, _) = start("visa-cvn10", 500);
    let Step::Declined { data } = k.unable_to_go_online() else {
        panic!()
    };
    assert_eq!(tag(&data, 0x8A), Some(b"Z3".to_vec()));
    // A card/terminal whose default action codes do not match the TVR approves offline.
    let text = PROFILE_FILES
        .iter()
        .find(|(n, _)| *n == "visa-cvn10")
        .unwrap()
        .1;
    let text = text.replace("atc = 1\n", "atc = 1\niac_default = \"0000000000\"\n");
    let card = Card::new(CardProfile::load(&text).unwrap());
    let config = TerminalConfig {
        tac_default: [0; 5],
        ..TerminalConfig::default()
    };
    let (mut k, step) = Kernel::start(card, SredEncryptor::ansi_test(), &config, txn(500), UN);
    go_online_data(&step);
    let Step::Approved { data } = k.unable_to_go_online() else {
        panic!()
    };
    assert_eq!(tag(&data, 0x8A), Some(b"Y3".to_vec()));
    assert_eq!(tag(&data, 0x9F27), Some(vec![0x40]));
}

/// The store-and-forward case of a real terminal: an offline-capable card below the floor
/// limit, selected at random for online processing (TVR byte 4 bit 5, in the usual
/// TAC-online but not in TAC-default), with the host unreachable: the terminal's default
/// action analysis lets it pass and the card approves offline (`Y3`, TC) with the US TACs.
#[test]
fn random_selection_goes_online_and_approves_offline_at_y3() {
    let config = TerminalConfig {
        random_selection: Some(RandomSelection {
            target_percent: 99,
            max_target_percent: 99,
            threshold: 0,
        }),
        ..TerminalConfig::default()
    };
    let card = Card::from_profile("offline-approve").unwrap();
    let (mut k, step) = Kernel::start(card, SredEncryptor::ansi_test(), &config, txn(1234), UN);
    let data = go_online_data(&step);
    assert_eq!(
        tag(&data, 0x95),
        Some(vec![0, 0, 0, 0x10, 0]),
        "selected, nothing else"
    );
    let Step::Approved { data } = k.unable_to_go_online() else {
        panic!()
    };
    assert_eq!(tag(&data, 0x8A), Some(b"Y3".to_vec()));
    assert_eq!(tag(&data, 0x9F27), Some(vec![0x40]));
    // The TC verifies with the issuer keys, like an ARQC (what a forward carries).
    assert!(issuer::verify_arqc(&data).is_ok());
    // Above the card's floor limit nothing is selected: online for the floor limit, and
    // TAC-default declines that at Z3.
    let card = Card::from_profile("offline-approve").unwrap();
    let (mut k, step) = Kernel::start(card, SredEncryptor::ansi_test(), &config, txn(6000), UN);
    go_online_data(&step);
    let Step::Declined { data } = k.unable_to_go_online() else {
        panic!()
    };
    assert_eq!(tag(&data, 0x8A), Some(b"Z3".to_vec()));
}

#[test]
fn random_selection_follows_the_biased_percentage() {
    let rs = RandomSelection {
        target_percent: 20,
        max_target_percent: 60,
        threshold: 1000,
    };
    // Below the threshold: the target percentage.
    assert!(rs.selects(500, 5000, 20) && !rs.selects(500, 5000, 21));
    // Halfway from the threshold to the floor limit: halfway to the maximum.
    assert!(rs.selects(3000, 5000, 40) && !rs.selects(3000, 5000, 41));
    // At or above the floor limit: never (the floor limit sends it online already).
    assert!(!rs.selects(5000, 5000, 1));
}

#[test]
fn issuer_scripts_are_counted() {
    let (mut k, step) = start("offline-pin", 500);
    assert!(matches!(step, Step::PinEntry { .. }));
    let data = go_online_data(&k.pin_entered(PinInput::Digits("1234".into())));
    let v = issuer::verify_arqc(&data).unwrap();
    let mut scripts = v.pin_unblock_script(0x71, false);
    scripts.extend(v.pin_unblock_script(0x72, true));
    let fin = k.host_response(HostResponse {
        arc: *b"00",
        issuer_auth_data: Some(v.issuer_auth_data(*b"00", false)),
        scripts,
        decision: None,
    });
    let Step::Approved { data } = fin else {
        panic!("{fin:?}")
    };
    let sr = tag(&data, 0x9F5B).unwrap();
    assert_eq!(sr.len(), 10);
    assert_eq!(sr[0], 0x20, "71 script succeeded");
    assert_eq!(sr[5] & 0xF0, 0x10, "72 script failed (bad MAC)");
    assert_eq!(tag(&data, 0x95).unwrap()[4] & 0x10, 0x10);
}

#[test]
fn issuer_rejects_tampering() {
    let (_, step) = start("visa-cvn18", 3250);
    let data = go_online_data(&step);
    let v = issuer::verify_arqc(&data).unwrap();
    assert_eq!(v.amount, 3250);
    assert_eq!(v.masked_pan(), "401200******5439");
    assert!(!format!("{v:?}").contains("4012000098765439"));
    let amount = tlv::find(&data, Tag(0x9F02)).unwrap();
    let mut tampered = data.to_vec();
    tampered[amount.offset() + amount.header_len() + 5] ^= 0x01;
    assert_eq!(
        issuer::verify_arqc(&tampered).unwrap_err(),
        IssuerError::BadCryptogram
    );
    let ac = tlv::find(&data, Tag(0x9F26)).unwrap();
    let mut tampered = data.to_vec();
    tampered[ac.offset() + ac.header_len()] ^= 0x80;
    assert_eq!(
        issuer::verify_arqc(&tampered).unwrap_err(),
        IssuerError::BadCryptogram
    );
    // An ARQC relabelled as a TC (the CID is outside the cryptogram input) is caught by the
    // CVR, which is inside it.
    let cid = tlv::find(&data, Tag(0x9F27)).unwrap();
    let mut relabelled = data.to_vec();
    relabelled[cid.offset() + cid.header_len()] = 0x40;
    assert_eq!(
        issuer::verify_arqc(&relabelled).unwrap_err(),
        IssuerError::CryptogramType
    );
    // Wrapped in E4 is fine too.
    let mut b = TlvBuilder::new();
    b.constructed(Tag(0xE4), |b| {
        b.raw(&data);
    });
    assert!(issuer::verify_arqc(&b.freeze()).is_ok());
    assert_eq!(
        issuer::verify_arqc(&[0x9F]).unwrap_err(),
        IssuerError::NotParseable
    );
}

#[test]
fn transaction_data_from_captured_start_transaction() {
    let e0 = hex::decode("E0349C01009F02060000000032509F03060000000000009A032103039F21031957249F1A0208405F2A020840DFA21401 01DFA2180100".replace(' ', "")).unwrap();
    let t = TransactionData::from_tlv(&e0).unwrap();
    assert_eq!(t.amount, 3250);
    assert_eq!(t.date, [0x21, 0x03, 0x03]);
    assert_eq!(t.currency, [0x08, 0x40]);
    assert_eq!(TransactionData::from_tlv(&e0[2..]).unwrap(), t);
    assert_eq!(
        TransactionData::from_tlv(&[0x9C, 0x01, 0x00]).unwrap_err(),
        TxnDataError::Missing("9F02")
    );
}

proptest::proptest! {
    #[test]
    fn from_tlv_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = TransactionData::from_tlv(&data);
    }

    #[test]
    fn card_reads_any_cdol_data_of_the_right_length(data in proptest::collection::vec(proptest::num::u8::ANY, 0..70)) {
        let mut card = Card::from_profile("visa-cvn10").unwrap();
        let aid = hex::decode(&card.profile().apps[0].aid).unwrap();
        card.select(&aid).unwrap();
        let want = emvbridge_protocol::emv::dol::dol_data_len(crate::card::CDOL1).unwrap();
        let r = card.generate_ac(true, CryptogramType::Arqc, &data);
        if data.len() == want {
            proptest::prop_assert!(r.is_ok());
        } else {
            proptest::prop_assert_eq!(r, Err(CardError::WrongData));
        }
        let _ = card.generate_ac(false, CryptogramType::Tc, &data);
    }

    #[test]
    fn verify_arqc_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = issuer::verify_arqc(&data);
    }

    #[test]
    fn verify_arqc_on_mutated_real_data_never_panics(pos in 0usize..400, val in proptest::num::u8::ANY) {
        let (_, step) = start("mc-cvn16", 777);
        let mut data = go_online_data(&step).to_vec();
        let p = pos % data.len();
        data[p] = val;
        let _ = issuer::verify_arqc(&data);
    }
}
