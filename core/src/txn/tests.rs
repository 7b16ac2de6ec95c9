//! Scripted tests of every transition and failure branch, without I/O, on a virtual clock.
//! (Flows against the simulated reader's core live in `tests/txn_sim.rs`.)

use super::*;
use emvbridge_protocol::vipa::CommandView;
use proptest::prelude::*;

fn t0() -> Instant {
    Instant::now()
}

fn request(amount: u64) -> TxnRequest {
    TxnRequest {
        reference: Reference("ref-1".into()),
        kind: AuthKind::Sale,
        amount: Money::from_minor(amount, "USD").unwrap(),
        amount_other: 0,
        date: 261121,
        time: 123456,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
        pos_reference: None,
    }
}

fn response(template: Tag, build: impl FnOnce(&mut TlvBuilder), sw: u16) -> Bytes {
    let mut b = TlvBuilder::new();
    b.constructed(template, build);
    let mut v = b.into_inner();
    v.extend_from_slice(&sw.to_be_bytes());
    v.freeze()
}

fn sw(sw: u16) -> Bytes {
    Bytes::copy_from_slice(&sw.to_be_bytes())
}

fn e4() -> Bytes {
    e4_with_cvm([0x1E, 0x03, 0x00])
}

/// An `E4` whose CVM results (`9F34`) are `cvm`.
fn e4_with_cvm(cvm: [u8; 3]) -> Bytes {
    response(
        Tag::VIPA_E4,
        |b| {
            b.primitive(Tag::PAN, &[0x41, 0x11, 0x11, 0xAA, 0xAA, 0xAA, 0x11, 0x11]);
            b.primitive(Tag::APPLICATION_LABEL, b"VISA CREDIT");
            b.primitive(Tag::DF_NAME, &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10]);
            b.primitive(Tag::APPLICATION_CRYPTOGRAM, &[1, 2, 3, 4, 5, 6, 7, 8]);
            b.primitive(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x80]);
            b.primitive(Tag::TVR, &[0x80, 0, 0, 0, 0]);
            b.primitive(Tag::CVM_RESULTS, &cvm);
            b.primitive(Tag::ATC, &[0, 7]);
            b.constructed(Tag::VIPA_SRED, |b| {
                b.primitive(Tag::VIPA_SRED_DATA, &[0x55; 16]);
            });
        },
        0x9000,
    )
}

fn final_template(approved: bool) -> Bytes {
    response(
        if approved { Tag::VIPA_E3 } else { Tag::VIPA_E5 },
        |b| {
            b.primitive(Tag::APPLICATION_CRYPTOGRAM, &[9, 9, 9, 9, 9, 9, 9, 9]);
            b.primitive(
                Tag::CRYPTOGRAM_INFORMATION_DATA,
                &[if approved { 0x40 } else { 0x00 }],
            );
            b.primitive(Tag::TSI, &[0xE8, 0x00]);
        },
        0x9000,
    )
}

fn approved(amount: u64) -> AuthorizationResult {
    AuthorizationResult::Approved {
        gateway_id: "gw-1".into(),
        approved_amount: Money::from_minor(amount, "USD").unwrap(),
        issuer: IssuerResponse {
            arc: *b"00",
            issuer_auth_data: Some(Bytes::from_static(&[0xAB; 10])),
            scripts: Bytes::new(),
            auth_code: Some("123456".into()),
        },
    }
}

fn declined(code: &str) -> AuthorizationResult {
    AuthorizationResult::Declined {
        gateway_id: Some("gw-2".into()),
        code: Some(code.into()),
        reason: "do not honor".into(),
        issuer: IssuerResponse {
            arc: [code.as_bytes()[0], code.as_bytes()[1]],
            ..Default::default()
        },
    }
}

/// Drains outputs; returns (commands, host requests, prompts).
fn drain(t: &mut Transaction) -> (Vec<Bytes>, Vec<HostRequest>, Vec<Prompt>) {
    let mut c = Vec::new();
    let mut h = Vec::new();
    let mut p = Vec::new();
    while let Some(x) = t.poll_command() {
        c.push(x);
    }
    while let Some(x) = t.poll_host() {
        h.push(x);
    }
    while let Some(x) = t.poll_event() {
        p.push(x);
    }
    (c, h, p)
}

fn code(payload: &Bytes) -> [u8; 2] {
    CommandView::parse(payload).unwrap().code()
}

fn card_event(status: [u8; 2]) -> Bytes {
    response(
        Tag::VIPA_E0,
        |b| {
            b.primitive(Tag::VIPA_CARD_STATUS, &status);
        },
        0x9000,
    )
}

/// Starts a sale the way the logged hosts do: Card Status `D0 60` with P1 bit 0, `C0 A0`
/// with the payment bit, the card-in event `E0{48 0300}`, Cancel Contactless `C0 C0`, and
/// only then Start Transaction `DE D1` (drained).
fn begin(now: Instant, req: TxnRequest, config: TxnConfig) -> Transaction {
    let mut t = Transaction::start(now, req, config).unwrap();
    let (c, _, p) = drain(&mut t);
    assert_eq!(p, [Prompt::PresentCard]);
    let [arm] = &c[..] else { panic!("{c:?}") };
    let v = CommandView::parse(arm).unwrap();
    assert_eq!((v.code(), v.p1 & 1), ([0xD0, 0x60], 1));
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    let (c, _, _) = drain(&mut t);
    let [ctls] = &c[..] else { panic!("{c:?}") };
    let v = CommandView::parse(ctls).unwrap();
    assert_eq!((v.code(), v.p1), ([0xC0, 0xA0], 0x01));
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    assert!(drain(&mut t).0.is_empty(), "nothing before the card");
    t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x02, 0x00])));
    assert!(drain(&mut t).0.is_empty(), "48 0200 is not a card");
    t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x03, 0x00])));
    let (c, _, p) = drain(&mut t);
    assert_eq!(p, [Prompt::CardInserted]);
    assert_eq!(code(&c[0]), [0xC0, 0xC0]);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    // The bare DFDF30 that follows a cancel changes nothing.
    t.handle_reader(
        now,
        ReaderInput::Unsolicited(Bytes::from_static(&[
            0xDF, 0xDF, 0x30, 0x01, 0xFB, 0x90, 0x00,
        ])),
    );
    let (c, _, _) = drain(&mut t);
    let [start] = &c[..] else { panic!("{c:?}") };
    assert_eq!(code(start), [0xDE, 0xD1]);
    t
}

/// Runs Start → E4 and returns the transaction waiting for the host.
fn to_host(now: Instant, amount: u64) -> Transaction {
    let mut t = begin(now, request(amount), TxnConfig::default());
    t.handle_reader(now, ReaderInput::Response(e4()));
    let (c, h, p) = drain(&mut t);
    assert!(c.is_empty());
    assert!(p.contains(&Prompt::Authorizing));
    let [HostRequest::Authorize(req)] = &h[..] else {
        panic!("{h:?}")
    };
    assert_eq!(req.amount.minor(), amount);
    assert_eq!(req.masked_pan, "411111******1111");
    assert_eq!(req.last4.as_deref(), Some("1111"));
    assert_eq!(req.brand.as_deref(), Some("visa"));
    // The ICC data is the E4's content, SRED container included.
    assert!(tlv::find(&req.icc_data, Tag::VIPA_SRED).is_some());
    assert!(tlv::find(&req.icc_data, Tag::APPLICATION_CRYPTOGRAM).is_some());
    t
}

#[test]
fn pos_reference_rides_to_the_host_and_into_the_outcome() {
    let now = t0();
    let mut req = request(1234);
    let pos = PosReference::new("T7 #1001").unwrap();
    req.pos_reference = Some(pos.clone());
    let mut t = begin(now, req, TxnConfig::default());
    t.handle_reader(now, ReaderInput::Response(e4()));
    let (_, h, _) = drain(&mut t);
    let [HostRequest::Authorize(a)] = &h[..] else {
        panic!("{h:?}")
    };
    // The POS's reference beside the bridge's, which stays the idempotency key.
    assert_eq!(a.pos_reference.as_ref(), Some(&pos));
    assert_eq!(a.reference, Reference("ref-1".into()));
    t.handle_host(now, approved(1234));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let o = t.poll_outcome().expect("outcome");
    assert_eq!(o.status, OutcomeStatus::Approved);
    assert_eq!(o.pos_reference, Some(pos));
    // Without one, none is invented.
    let t = to_host(now, 100);
    assert!(t.req.pos_reference.is_none());
}

fn continue_tlvs(payload: &Bytes) -> Vec<u8> {
    let v = CommandView::parse(payload).unwrap();
    assert_eq!(v.code(), [0xDE, 0xD2]);
    v.continue_data().unwrap().to_vec()
}

#[test]
fn approved_online_sale() {
    let now = t0();
    let mut t = to_host(now, 1234);
    t.handle_host(now, approved(1234));
    let (c, h, p) = drain(&mut t);
    assert!(h.is_empty());
    assert_eq!(p, [Prompt::Completing]);
    let tlvs = continue_tlvs(&c[0]);
    assert_eq!(
        tlv::find(&tlvs, Tag::AUTHORISATION_RESPONSE_CODE)
            .unwrap()
            .value(),
        b"00"
    );
    assert_eq!(
        tlv::find(&tlvs, Tag::ISSUER_AUTHENTICATION_DATA)
            .unwrap()
            .value(),
        [0xAB; 10]
    );
    assert_eq!(
        tlv::find(&tlvs, Tag::AUTHORISATION_CODE).unwrap().value(),
        b"123456"
    );
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let o = t.poll_outcome().expect("outcome");
    assert_eq!(o.status, OutcomeStatus::Approved);
    assert_eq!(o.approved_amount.unwrap().minor(), 1234);
    assert_eq!(o.gateway_id.as_deref(), Some("gw-1"));
    assert_eq!(o.auth_code.as_deref(), Some("123456"));
    assert!(o.reversal.is_none());
    assert_eq!(o.card.cryptogram_type.as_deref(), Some("TC"));
    assert_eq!(o.card.arqc.as_deref(), Some("0102030405060708"));
    assert_eq!(o.card.cryptogram.as_deref(), Some("0909090909090909"));
    assert_eq!(o.card.app_label.as_deref(), Some("VISA CREDIT"));
    assert_eq!(o.card.aid.as_deref(), Some("A0000000031010"));
    assert_eq!(o.card.cvm.as_deref(), Some("SIGNATURE"));
    assert_eq!(o.card.arc, Some(*b"00"));
    assert!(t.is_done());
    assert_eq!(t.poll_timeout(), None);
    let (_, _, p) = drain(&mut t);
    assert_eq!(p, [Prompt::RemoveCard]);
    assert!(t.poll_outcome().is_none(), "the outcome comes once");
}

#[test]
fn card_declines_after_approval_is_reversed() {
    let now = t0();
    let mut t = to_host(now, 1291);
    t.handle_host(now, approved(1291));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(final_template(false)));
    assert!(
        t.poll_outcome().is_none(),
        "no outcome before the reversal settles"
    );
    let (_, h, p) = drain(&mut t);
    let [HostRequest::Reverse(r)] = &h[..] else {
        panic!("{h:?}")
    };
    assert_eq!(r.reason, ReversalReason::CardDeclinedAfterApproval);
    assert_eq!(r.gateway_id.as_deref(), Some("gw-1"));
    assert!(p.contains(&Prompt::Reversing));
    t.handle_reversal(now, ReversalResult::Reversed);
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Reversed);
    assert!(!o.status.is_approved());
    assert_eq!(o.reversal.unwrap().result, Some(ReversalResult::Reversed));
}

#[test]
fn reversal_that_fails_is_unresolved() {
    let now = t0();
    let mut t = to_host(now, 500);
    t.handle_host(now, approved(500));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9F23)));
    let (_, h, _) = drain(&mut t);
    assert!(matches!(&h[..], [HostRequest::Reverse(r)] if r.reason == ReversalReason::CardRemoved));
    // No answer to the reversal: the timer gives up and says so.
    let at = t.poll_timeout().unwrap();
    t.handle_timeout(at);
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Unresolved);
    assert!(o.reason.unwrap().contains("reversal not confirmed"));
}

#[test]
fn host_timeout_declines_the_card_and_reverses_by_reference() {
    let now = t0();
    let mut t = to_host(now, 700);
    let at = t.poll_timeout().unwrap();
    assert_eq!(at, now + TxnConfig::default().host_timeout);
    t.handle_timeout(at);
    let (c, h, _) = drain(&mut t);
    assert!(h.is_empty());
    assert_eq!(
        tlv::find(&continue_tlvs(&c[0]), Tag::AUTHORISATION_RESPONSE_CODE)
            .unwrap()
            .value(),
        b"Z3"
    );
    // A late approval changes nothing: the decision was made.
    t.handle_host(at, approved(700));
    assert!(drain(&mut t).0.is_empty());
    t.handle_reader(at, ReaderInput::Response(final_template(false)));
    let (_, h, _) = drain(&mut t);
    let [HostRequest::Reverse(r)] = &h[..] else {
        panic!("{h:?}")
    };
    assert_eq!(r.reason, ReversalReason::NoHostResponse);
    assert_eq!(r.gateway_id, None);
    t.handle_reversal(at, ReversalResult::NotFound);
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Reversed);
}

#[test]
fn issuer_decline_needs_no_reversal() {
    let now = t0();
    let mut t = to_host(now, 21);
    t.handle_host(now, declined("51"));
    let (c, _, _) = drain(&mut t);
    assert_eq!(
        tlv::find(&continue_tlvs(&c[0]), Tag::AUTHORISATION_RESPONSE_CODE)
            .unwrap()
            .value(),
        b"51"
    );
    t.handle_reader(now, ReaderInput::Response(final_template(false)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Declined);
    assert_eq!(o.decline_code.as_deref(), Some("51"));
    assert!(o.reversal.is_none());
    // Even a card that (wrongly) approves after a host decline is a decline.
    let mut t = to_host(now, 21);
    t.handle_host(now, declined("05"));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let (_, h, _) = drain(&mut t);
    assert!(h.is_empty());
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Declined);
}

#[test]
fn unable_to_go_online() {
    let now = t0();
    let mut t = to_host(now, 100);
    t.handle_host(
        now,
        AuthorizationResult::Unavailable {
            reason: "connection refused".into(),
        },
    );
    let (c, _, _) = drain(&mut t);
    assert_eq!(
        tlv::find(&continue_tlvs(&c[0]), Tag::AUTHORISATION_RESPONSE_CODE)
            .unwrap()
            .value(),
        b"Z3"
    );
    t.handle_reader(now, ReaderInput::Response(final_template(false)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Declined);
    assert!(o.reason.unwrap().contains("unable to go online"));

    let config = TxnConfig {
        offline_fallback: true,
        ..TxnConfig::default()
    };
    let mut t = begin(now, request(100), config);
    t.handle_reader(now, ReaderInput::Response(e4()));
    drain(&mut t);
    t.handle_host(
        now,
        AuthorizationResult::Unavailable {
            reason: "connection refused".into(),
        },
    );
    let (c, _, _) = drain(&mut t);
    assert_eq!(
        tlv::find(&continue_tlvs(&c[0]), Tag::AUTHORISATION_RESPONSE_CODE)
            .unwrap()
            .value(),
        b"Y3"
    );
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::ApprovedOffline);
    assert!(o.status.is_approved());
}

#[test]
fn partial_approval() {
    let now = t0();
    let mut t = to_host(now, 278);
    t.handle_host(now, approved(257));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::PartiallyApproved);
    assert_eq!(o.approved_amount.unwrap().minor(), 257);
}

fn saf_allowed() -> TxnConfig {
    TxnConfig {
        offline_fallback: true,
        ..TxnConfig::default()
    }
}

#[test]
fn offline_outcomes() {
    let now = t0();
    for (approved, status) in [
        (true, OutcomeStatus::ApprovedOffline),
        (false, OutcomeStatus::Declined),
    ] {
        let mut t = begin(now, request(100), saf_allowed());
        t.handle_reader(now, ReaderInput::Response(final_template(approved)));
        let (_, h, _) = drain(&mut t);
        assert!(h.is_empty(), "offline outcomes never reach the host");
        let o = t.poll_outcome().unwrap();
        assert_eq!(o.status, status);
        assert_eq!(o.card.arc, Some(if approved { *b"Y1" } else { *b"Z1" }));
    }
}

#[test]
fn y1_tc_is_declined_when_store_and_forward_does_not_allow_it() {
    let now = t0();
    let mut t = begin(now, request(100), TxnConfig::default());
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let (_, h, _) = drain(&mut t);
    assert!(h.is_empty());
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Declined);
    assert!(o.approved_amount.is_none());
    assert!(o.reason.unwrap().contains("not allowed"));
}

#[test]
fn y1_tc_is_an_offline_approval_when_store_and_forward_allows_it() {
    let now = t0();
    let mut t = begin(now, request(100), saf_allowed());
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::ApprovedOffline);
    assert_eq!(o.approved_amount.unwrap().minor(), 100);
    assert_eq!(o.card.arc, Some(*b"Y1"));
}

#[test]
fn tc_after_z3_is_not_an_approval() {
    let now = t0();
    let mut t = to_host(now, 100);
    t.handle_host(
        now,
        AuthorizationResult::Unavailable {
            reason: "connection refused".into(),
        },
    );
    let (c, _, _) = drain(&mut t);
    let tlvs = continue_tlvs(&c[0]);
    assert_eq!(
        tlv::find(&tlvs, Tag::AUTHORISATION_RESPONSE_CODE)
            .unwrap()
            .value(),
        b"Z3"
    );
    // A card that answers TC anyway is not approved: nothing is stored.
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Declined);
    assert!(o.approved_amount.is_none());
    assert_eq!(o.card.arc, Some(*b"Z3"));
}

/// Arms a tap-capable transaction with `config` and hands it an unsolicited `E3` whose
/// `9F27` is `cid` (or none).
fn tap_result(config: TxnConfig, cid: Option<u8>) -> Outcome {
    let now = t0();
    let mut t = Transaction::start(now, request(100), config).unwrap();
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    drain(&mut t);
    let e3 = response(
        Tag::VIPA_E3,
        |b| {
            b.primitive(Tag::APPLICATION_CRYPTOGRAM, &[9; 8]);
            if let Some(cid) = cid {
                b.primitive(Tag::CRYPTOGRAM_INFORMATION_DATA, &[cid]);
            }
        },
        0x9000,
    );
    t.handle_reader(now, ReaderInput::Unsolicited(e3));
    let (_, h, _) = drain(&mut t);
    assert!(h.is_empty(), "a tap's final result never reaches the host");
    t.poll_outcome().unwrap()
}

#[test]
fn contactless_e3_is_trusted_only_when_9f27_says_tc() {
    // b8-b7 = 01: TC (0x40, and 0x48 with the advice bit) — approved offline.
    for cid in [0x40, 0x48] {
        let o = tap_result(saf_allowed(), Some(cid));
        assert_eq!(o.status, OutcomeStatus::ApprovedOffline, "{cid:02X}");
        assert_eq!(o.card.entry_mode, Some(EntryMode::Contactless));
    }
    // AAC, ARQC, RFU or no 9F27 at all: an E3 that is not an approval.
    for cid in [Some(0x00), Some(0x80), Some(0xC0), None] {
        let o = tap_result(saf_allowed(), cid);
        assert_eq!(o.status, OutcomeStatus::Declined, "{cid:02X?}");
        assert!(o.approved_amount.is_none());
    }
}

#[test]
fn contactless_tc_is_declined_when_store_and_forward_does_not_allow_it() {
    let o = tap_result(TxnConfig::default(), Some(0x40));
    assert_eq!(o.status, OutcomeStatus::Declined);
    assert!(o.reason.unwrap().contains("not allowed"));
}

#[test]
fn cancel_before_the_card_aborts_cleanly() {
    let now = t0();
    let mut t = begin(now, request(100), TxnConfig::default());
    t.handle_cancel(now);
    let (c, h, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xD0, 0xFF]);
    assert!(h.is_empty());
    // The pending Start completes with 9F41, then the Abort itself with 9000.
    t.handle_reader(now, ReaderInput::Response(sw(0x9F41)));
    assert!(t.poll_outcome().is_none());
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Cancelled);
    // The abort timer covers a reader that never confirms.
    let mut t = begin(now, request(100), TxnConfig::default());
    t.handle_cancel(now);
    drain(&mut t);
    let at = t.poll_timeout().unwrap();
    assert_eq!(at, now + TxnConfig::default().abort_timeout);
    t.handle_timeout(at);
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Cancelled);
}

#[test]
fn cancel_after_the_authorization_left_reverses_an_approval() {
    let now = t0();
    let mut t = to_host(now, 100);
    t.handle_cancel(now);
    let (c, h, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xD0, 0xFF], "the card is stopped at once");
    assert!(h.is_empty());
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    t.handle_host(now, approved(100));
    let (c, h, _) = drain(&mut t);
    assert!(c.is_empty(), "the card hears nothing more");
    assert!(matches!(&h[..], [HostRequest::Reverse(r)] if r.reason == ReversalReason::Cancelled));
    t.handle_reversal(now, ReversalResult::Reversed);
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Reversed);
    // …and a decline simply ends cancelled.
    let mut t = to_host(now, 100);
    t.handle_cancel(now);
    t.handle_host(now, declined("05"));
    let (_, h, _) = drain(&mut t);
    assert!(h.is_empty());
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Declined);
}

#[test]
fn reader_lost_at_each_stage() {
    let now = t0();
    // Before the card: nothing moved.
    let mut t = begin(now, request(100), TxnConfig::default());
    t.handle_reader(now, ReaderInput::Lost);
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Failed);
    // While the host decides: wait for it, then reverse an approval.
    let mut t = to_host(now, 100);
    t.handle_reader(now, ReaderInput::Lost);
    assert!(t.poll_outcome().is_none());
    t.handle_host(now, approved(100));
    let (c, h, _) = drain(&mut t);
    assert!(c.is_empty());
    assert!(matches!(&h[..], [HostRequest::Reverse(r)] if r.reason == ReversalReason::ReaderLost));
    // After approval, before the card's final answer.
    let mut t = to_host(now, 100);
    t.handle_host(now, approved(100));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Lost);
    let (_, h, _) = drain(&mut t);
    assert!(matches!(&h[..], [HostRequest::Reverse(r)] if r.reason == ReversalReason::ReaderLost));
    t.handle_reversal(now, ReversalResult::Reversed);
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Reversed);
}

#[test]
fn final_answer_never_comes() {
    let now = t0();
    let mut t = to_host(now, 100);
    t.handle_host(now, approved(100));
    drain(&mut t);
    let at = t.poll_timeout().unwrap();
    assert_eq!(at, now + TxnConfig::default().final_timeout);
    t.handle_timeout(at);
    let (c, h, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xD0, 0xFF]);
    assert!(h.is_empty());
    t.handle_reader(at, ReaderInput::Response(sw(0x9F41)));
    t.handle_reader(at, ReaderInput::Response(sw(0x9000)));
    let (_, h, _) = drain(&mut t);
    assert!(
        matches!(&h[..], [HostRequest::Reverse(r)] if r.reason == ReversalReason::NoCardResponse)
    );
}

#[test]
fn reader_status_words_at_start() {
    let now = t0();
    for (word, status) in [
        (0x9F41, OutcomeStatus::Cancelled),
        (0x9F43, OutcomeStatus::Cancelled),
        (0x9F28, OutcomeStatus::Failed),
        (0x6A81, OutcomeStatus::Failed),
    ] {
        let mut t = begin(now, request(100), TxnConfig::default());
        t.handle_reader(now, ReaderInput::Response(sw(word)));
        let o = t.poll_outcome().unwrap();
        assert_eq!(o.status, status, "{word:04X}");
        assert!(o.reversal.is_none());
    }
}

#[test]
fn use_chip_restarts_then_gives_up() {
    let now = t0();
    let mut t = begin(now, request(100), TxnConfig::default());
    for _ in 0..TxnConfig::default().max_fallback_retries {
        t.handle_reader(now, ReaderInput::Response(sw(0x9F34)));
        let (c, _, p) = drain(&mut t);
        assert!(c.is_empty(), "waits for the chip: {c:?}");
        assert!(p.contains(&Prompt::UseChip));
        t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x00, 0x05])));
        let (c, _, _) = drain(&mut t);
        assert_eq!(code(&c[0]), [0xDE, 0xD1]);
    }
    t.handle_reader(now, ReaderInput::Response(sw(0x9F34)));
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Failed);
}

#[test]
fn two_applications_choose_by_priority_or_pos() {
    let now = t0();
    let e2 = response(
        Tag::VIPA_E2,
        |b| {
            b.primitive(Tag::AID, &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10]);
            b.primitive(Tag::APPLICATION_LABEL, b"VISA CREDIT");
            b.primitive(Tag::AID, &[0xA0, 0, 0, 0, 0x03, 0x20, 0x10]);
            b.primitive(Tag::APPLICATION_LABEL, b"VISA DEBIT");
        },
        0x9000,
    );
    for (choice, want, label) in [
        (
            AppChoice::CardPriority,
            [0xA0, 0, 0, 0, 0x03, 0x10, 0x10],
            "VISA CREDIT",
        ),
        (
            AppChoice::Aid(vec![0xA0, 0, 0, 0, 0x03, 0x20, 0x10]),
            [0xA0, 0, 0, 0, 0x03, 0x20, 0x10],
            "VISA DEBIT",
        ),
    ] {
        let mut req = request(100);
        req.app_choice = choice;
        let mut t = begin(now, req, TxnConfig::default());
        t.handle_reader(now, ReaderInput::Response(e2.clone()));
        let (c, _, p) = drain(&mut t);
        assert_eq!(
            tlv::find(&continue_tlvs(&c[0]), Tag::DF_NAME)
                .unwrap()
                .value(),
            want
        );
        assert_eq!(
            p,
            [Prompt::ApplicationSelected {
                label: Some(label.into())
            }]
        );
        t.handle_reader(now, ReaderInput::Response(e4()));
        let (_, h, _) = drain(&mut t);
        assert!(matches!(&h[..], [HostRequest::Authorize(_)]));
    }
}

#[test]
fn prompts_from_reader_statuses() {
    let now = t0();
    let mut t = begin(now, request(100), TxnConfig::default());
    // The card is already in: a repeated insertion event prompts nothing.
    t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x03, 0x00])));
    let pin = response(
        Tag::VIPA_E6,
        |b| {
            b.primitive(Tag::VIPA_TRANSACTION_STATUS, &[0x0C]);
        },
        0x9000,
    );
    let later = now + Duration::from_secs(60);
    t.handle_reader(later, ReaderInput::Unsolicited(pin));
    let (_, _, p) = drain(&mut t);
    assert_eq!(p, [Prompt::EnterPin]);
    // PIN entry restarted the card timer.
    assert_eq!(
        t.poll_timeout(),
        Some(later + TxnConfig::default().card_timeout)
    );
    // Garbage unsolicited data is ignored.
    t.handle_reader(
        later,
        ReaderInput::Unsolicited(Bytes::from_static(&[0xFF, 0xFF, 0xFF])),
    );
    assert!(drain(&mut t).2.is_empty());
}

#[test]
fn garbage_responses_abort_without_panicking() {
    let now = t0();
    let mut t = begin(now, request(100), TxnConfig::default());
    t.handle_reader(now, ReaderInput::Response(Bytes::from_static(&[0x90])));
    let (c, _, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xD0, 0xFF]);
}

// --- the money-safety invariant under arbitrary inputs ---------------------------------------

#[derive(Debug, Clone)]
enum Step {
    E4,
    Final(bool),
    Sw(u16),
    Garbage(Vec<u8>),
    Lost,
    Cancel,
    HostApproved,
    HostDeclined,
    HostUnavailable,
    HostUnknown,
    Reversed,
    ReversalFailed,
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::E4),
        any::<bool>().prop_map(Step::Final),
        prop_oneof![
            Just(0x9000u16),
            Just(0x9F23),
            Just(0x9F41),
            Just(0x9F43),
            Just(0x9F34),
            any::<u16>()
        ]
        .prop_map(Step::Sw),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Step::Garbage),
        Just(Step::Lost),
        Just(Step::Cancel),
        Just(Step::HostApproved),
        Just(Step::HostDeclined),
        Just(Step::HostUnavailable),
        Just(Step::HostUnknown),
        Just(Step::Reversed),
        Just(Step::ReversalFailed),
        (1u64..200).prop_map(Step::Tick),
    ]
}

proptest! {
    /// Whatever the reader, the host and the POS do, in any order: the transaction ends
    /// (time passing is enough), and it says "approved" only if the host approved and the
    /// card produced a TC; whenever the host approved (or may have) and the outcome is not an
    /// approval, a reversal was requested.
    #[test]
    fn money_is_never_lost_or_taken_twice(steps in prop::collection::vec(step(), 0..30)) {
        let start = t0();
        let mut now = start;
        let mut t = begin(now, request(1000), TxnConfig::default());
        let mut host_approved = false;
        let mut host_maybe = false;
        let mut card_tc_after_approval = false;
        let mut reversals = 0;
        let mut authorizations = 0;
        let mut outcome = None;
        let run = |t: &mut Transaction, reversals: &mut i32, authorizations: &mut i32| {
            while t.poll_command().is_some() {}
            while let Some(h) = t.poll_host() {
                match h {
                    HostRequest::Authorize(_) => *authorizations += 1,
                    HostRequest::Reverse(_) => *reversals += 1,
                }
            }
            while t.poll_event().is_some() {}
        };
        for s in steps {
            match s {
                Step::E4 => t.handle_reader(now, ReaderInput::Response(e4())),
                Step::Final(ok) => {
                    if ok && host_approved {
                        card_tc_after_approval = true;
                    }
                    t.handle_reader(now, ReaderInput::Response(final_template(ok)))
                }
                Step::Sw(w) => t.handle_reader(now, ReaderInput::Response(sw(w))),
                Step::Garbage(g) => t.handle_reader(now, ReaderInput::Response(Bytes::from(g))),
                Step::Lost => t.handle_reader(now, ReaderInput::Lost),
                Step::Cancel => t.handle_cancel(now),
                Step::HostApproved => t.handle_host(now, approved(1000)),
                Step::HostDeclined => t.handle_host(now, declined("05")),
                Step::HostUnavailable => t.handle_host(now, AuthorizationResult::Unavailable { reason: "x".into() }),
                Step::HostUnknown => t.handle_host(now, AuthorizationResult::Unknown { reason: "x".into() }),
                Step::Reversed => t.handle_reversal(now, ReversalResult::Reversed),
                Step::ReversalFailed => t.handle_reversal(now, ReversalResult::Failed { reason: "x".into() }),
                Step::Tick(s) => {
                    now += Duration::from_secs(s);
                    t.handle_timeout(now);
                }
            }
            run(&mut t, &mut reversals, &mut authorizations);
            let (approved_now, unknown_now) = t.host_view();
            host_approved |= approved_now;
            host_maybe |= unknown_now;
            if let Some(o) = t.poll_outcome() {
                prop_assert!(outcome.is_none(), "two outcomes");
                outcome = Some(o);
            }
        }
        // Let time run out: every path ends.
        for _ in 0..10 {
            if let Some(at) = t.poll_timeout() {
                now = now.max(at);
                t.handle_timeout(now);
                run(&mut t, &mut reversals, &mut authorizations);
            }
            if let Some(o) = t.poll_outcome() {
                prop_assert!(outcome.is_none(), "two outcomes");
                outcome = Some(o);
            }
        }
        let o = outcome.expect("a definite outcome");
        prop_assert!(authorizations <= 1, "one authorization at most");
        prop_assert!(reversals <= 1, "one reversal at most");
        if o.status == OutcomeStatus::Approved || o.status == OutcomeStatus::PartiallyApproved {
            prop_assert!(host_approved && card_tc_after_approval, "{o:?}");
            prop_assert_eq!(reversals, 0);
        }
        if (host_approved || host_maybe) && !o.status.is_approved() {
            prop_assert_eq!(reversals, 1, "an approval that did not complete must be reversed: {:?}", o);
            prop_assert!(matches!(o.status, OutcomeStatus::Reversed | OutcomeStatus::Unresolved), "{o:?}");
        }
        if reversals == 0 {
            prop_assert!(o.reversal.is_none());
        }
    }
}

// --- the logged UX301 contact sale (Verifone's harness log, tests/data/vipa) ------------------

/// The frames of a `.seq` capture as (from the host?, reassembled message).
fn logged(seq: &str) -> Vec<(bool, emvbridge_protocol::frame::Message)> {
    use emvbridge_protocol::frame::{Deframer, Inbound};
    let mut out = Vec::new();
    let mut host = Deframer::new();
    let mut term = Deframer::new();
    for line in seq
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (dir, hex_frame) = line.split_once(' ').unwrap();
        let from_host = dir == "host";
        let d = if from_host { &mut host } else { &mut term };
        d.push(&hex::decode(hex_frame.trim()).unwrap());
        while let Some(item) = d.poll() {
            let Inbound::Message(m) = item else {
                panic!("corrupt capture")
            };
            out.push((from_host, m));
        }
    }
    out
}

#[test]
fn logged_ux301_sale_gets_the_logged_host_frames() {
    let log = logged(include_str!(
        "../../../tests/data/vipa/ux301-amex-exchange-full.seq"
    ));
    let terminal: Vec<_> = log.iter().filter(|(h, _)| !h).map(|(_, m)| m).collect();
    let host: Vec<_> = log
        .iter()
        .filter(|(h, _)| *h)
        .map(|(_, m)| &m.payload)
        .collect();
    let now = t0();
    let mut req = request(3550);
    req.date = 200910;
    req.time = 155042;
    let mut t = Transaction::start(now, req, TxnConfig::default()).unwrap();
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000))); // D0 60
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000))); // C0 A0
    assert!(drain(&mut t).0.is_empty());
    // Terminal: 48 0200, 48 0300 (unsolicited) → host: C0 C0.
    let mut term = terminal.into_iter();
    for m in term.by_ref().take(2) {
        assert!(m.unsolicited);
        t.handle_reader(now, ReaderInput::Unsolicited(m.payload.clone()));
    }
    let (c, _, _) = drain(&mut t);
    assert_eq!(&c[..], &[host[0].clone()]);
    // 9000, then the unsolicited DFDF30 → DE D1.
    let m = term.next().unwrap();
    t.handle_reader(now, ReaderInput::Response(m.payload.clone()));
    let m = term.next().unwrap();
    assert!(m.unsolicited);
    t.handle_reader(now, ReaderInput::Unsolicited(m.payload.clone()));
    let (c, _, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xDE, 0xD1]);
    let ours = CommandView::parse(&c[0]).unwrap();
    let theirs = CommandView::parse(host[1]).unwrap();
    for tag in [
        Tag::AMOUNT_AUTHORISED,
        Tag::TRANSACTION_CURRENCY_CODE,
        Tag(0x9C),
    ] {
        let find = |v: &CommandView<'_>| {
            tlv::find(tlv::find(v.data, Tag::VIPA_E0).unwrap().value(), tag)
                .map(|t| t.value().to_vec())
        };
        assert_eq!(find(&ours), find(&theirs), "{tag:?}");
    }
    // E2 → exactly the logged amount confirmation.
    t.handle_reader(
        now,
        ReaderInput::Response(term.next().unwrap().payload.clone()),
    );
    let (c, _, p) = drain(&mut t);
    assert_eq!(hex::encode_upper(&c[0]), hex::encode_upper(host[2]));
    // The reader selected the application by itself: no choice to prompt.
    assert!(p.is_empty(), "{p:?}");
    // E0 (after cardholder verification) → exactly the logged `DE D2 01 00`.
    t.handle_reader(
        now,
        ReaderInput::Response(term.next().unwrap().payload.clone()),
    );
    let (c, _, _) = drain(&mut t);
    assert_eq!(hex::encode_upper(&c[0]), hex::encode_upper(host[3]));
    // E4 → the authorization, with the masked PAN the reader gave.
    t.handle_reader(
        now,
        ReaderInput::Response(term.next().unwrap().payload.clone()),
    );
    let (c, h, _) = drain(&mut t);
    assert!(c.is_empty());
    let [HostRequest::Authorize(a)] = &h[..] else {
        panic!("{h:?}")
    };
    assert!(a.masked_pan.starts_with("374245"), "{}", a.masked_pan);
    assert_eq!(a.entry_mode, EntryMode::Chip);
    assert!(tlv::find(&a.icc_data, Tag::VIPA_SRED).is_some());
    // The log ends here; the host's decision is the bridge's: an approval asks for a TC.
    t.handle_host(now, approved(3550));
    let (c, _, _) = drain(&mut t);
    let tlvs = continue_tlvs(&c[0]);
    assert_eq!(
        tlv::find(&tlvs, TAG_C0_HOST_DECISION).unwrap().value(),
        [HOST_DECISION_TC]
    );
    assert_eq!(tlv::find(&tlvs, TAG_C2).unwrap().value(), C2_AS_LOGGED);
    assert_eq!(
        tlv::find(&tlvs, Tag::AMOUNT_AUTHORISED).unwrap().value(),
        [0, 0, 0, 0, 0x35, 0x50]
    );
}

#[test]
fn final_continue_carries_the_decision_or_leaves_it_out_when_unreachable() {
    let now = t0();
    for (answer, c0, arc) in [
        (approved(100), Some(HOST_DECISION_TC), *b"00"),
        (declined("05"), Some(HOST_DECISION_AAC), *b"05"),
        (
            AuthorizationResult::Unavailable {
                reason: "down".into(),
            },
            None,
            *b"Z3",
        ),
        (
            AuthorizationResult::Unknown {
                reason: "lost".into(),
            },
            Some(HOST_DECISION_AAC),
            *b"Z3",
        ),
    ] {
        let mut t = to_host(now, 100);
        t.handle_host(now, answer);
        let (c, _, _) = drain(&mut t);
        let tlvs = continue_tlvs(&c[0]);
        assert_eq!(
            tlv::find(&tlvs, TAG_C0_HOST_DECISION).map(|t| t.value()[0]),
            c0
        );
        assert_eq!(
            tlv::find(&tlvs, Tag::AUTHORISATION_RESPONSE_CODE)
                .unwrap()
                .value(),
            arc
        );
    }
}

#[test]
fn card_status_answered_only_by_the_card_event_arms_the_reader() {
    // The M400 answers `D0 60` with an unsolicited `E0{48}` only; the link hands it over as
    // the answer. A card already in goes straight on (no contactless to cancel).
    let now = t0();
    let mut t = Transaction::start(now, request(100), TxnConfig::default()).unwrap();
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(card_event([0x03, 0x00])));
    let (c, _, p) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xDE, 0xD1]);
    assert_eq!(p, [Prompt::CardInserted]);
    // Without a card: armed, waiting.
    let mut t = Transaction::start(now, request(100), TxnConfig::default()).unwrap();
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(card_event([0x02, 0x00])));
    let (c, _, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xC0, 0xA0]);
}

#[test]
fn no_card_and_not_ready_go_back_to_waiting() {
    let now = t0();
    let mut t = begin(now, request(100), TxnConfig::default());
    t.handle_reader(now, ReaderInput::Response(sw(0x9F23)));
    let (c, _, p) = drain(&mut t);
    assert!(c.is_empty());
    assert!(p.contains(&Prompt::PresentCard));
    t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x03, 0x00])));
    let (c, _, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xDE, 0xD1]);
    t.handle_reader(now, ReaderInput::Response(sw(0x9F22)));
    assert!(drain(&mut t).0.is_empty());
    let at = t.poll_timeout().unwrap();
    assert_eq!(at, now + NOT_READY_RETRY);
    t.handle_timeout(at);
    let (c, _, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xDE, 0xD1]);
}

#[test]
fn tap_results_arrive_unsolicited_and_continue_with_c0_a1() {
    let now = t0();
    let mut t = Transaction::start(now, request(100), TxnConfig::default()).unwrap();
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Unsolicited(e4()));
    let (c, h, _) = drain(&mut t);
    assert!(c.is_empty());
    let [HostRequest::Authorize(a)] = &h[..] else {
        panic!("{h:?}")
    };
    assert_eq!(a.entry_mode, EntryMode::Contactless);
    t.handle_host(now, approved(100));
    let (c, _, _) = drain(&mut t);
    let v = CommandView::parse(&c[0]).unwrap();
    assert_eq!(v.code(), [0xC0, 0xA1]);
    let tlvs = v.continue_data().unwrap();
    assert_eq!(
        tlv::find(tlvs, TAG_C0_HOST_DECISION).unwrap().value(),
        [HOST_DECISION_TC]
    );
    t.handle_reader(now, ReaderInput::Response(final_template(true)));
    assert_eq!(t.poll_outcome().unwrap().status, OutcomeStatus::Approved);
}

#[test]
fn online_pin_is_asked_with_de_d6_and_reaches_the_gateway_unlogged() {
    let now = t0();
    let mut t = begin(now, request(700), TxnConfig::default());
    // The E0 stop after cardholder verification says: enciphered PIN verified online.
    let e0 = response(
        Tag::VIPA_E0,
        |b| {
            b.primitive(Tag::CVM_RESULTS, &[0x42, 0x03, 0x00]);
        },
        0x9000,
    );
    t.handle_reader(now, ReaderInput::Response(e0));
    let (c, _, p) = drain(&mut t);
    let v = CommandView::parse(&c[0]).unwrap();
    assert_eq!((v.code(), v.p1, v.p2), ([0xDE, 0xD6], 0x00, 0x00));
    assert!(tlv::find(
        tlv::find(v.data, Tag::VIPA_E0).unwrap().value(),
        emvbridge_protocol::vipa::TAG_DFED0D
    )
    .is_some());
    assert_eq!(p, [Prompt::EnterPin]);
    let block = [0x5A, 0x17, 0x33, 0x4C, 0x01, 0x99, 0xE2, 0x0B];
    let pin = response(
        Tag::VIPA_E0,
        |b| {
            b.primitive(Tag::VIPA_PIN_BLOCK, &block);
            b.primitive(
                emvbridge_protocol::vipa::TAG_DFED03_PIN_KSN,
                &[0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x02],
            );
        },
        0x9000,
    );
    t.handle_reader(now, ReaderInput::Response(pin));
    let (c, _, p) = drain(&mut t);
    assert_eq!(&c[0][..], &[0xDE, 0xD2, 0x01, 0x00]);
    assert_eq!(p, [Prompt::PinEntered]);
    t.handle_reader(now, ReaderInput::Response(e4_with_cvm([0x42, 0x03, 0x00])));
    let (c, h, _) = drain(&mut t);
    assert!(c.is_empty(), "one PIN entry: {c:?}");
    let [HostRequest::Authorize(a)] = &h[..] else {
        panic!("{h:?}")
    };
    let pin = a.online_pin.as_ref().expect("PIN block for the gateway");
    assert_eq!(pin.block.reveal(), &block.to_vec());
    assert_eq!(pin.ksn.len(), 10);
    let shown = format!("{a:?}");
    assert!(
        !shown.contains("5A17334C") && !shown.contains("90, 23, 51"),
        "{shown}"
    );
    assert!(!format!("{pin:?}").contains("90"), "{pin:?}");

    // Without the post-CVM stop: the E4 itself asks for the PIN; cancelled at the pad.
    let config = TxnConfig {
        stop_after_cvm: false,
        ..TxnConfig::default()
    };
    let mut t = begin(now, request(700), config);
    t.handle_reader(now, ReaderInput::Response(e4_with_cvm([0x02, 0x03, 0x00])));
    let (c, h, _) = drain(&mut t);
    assert!(h.is_empty());
    assert_eq!(code(&c[0]), [0xDE, 0xD6]);
    t.handle_reader(now, ReaderInput::Response(sw(0x9F43)));
    let (c, _, _) = drain(&mut t);
    assert_eq!(code(&c[0]), [0xD0, 0xFF]);
    t.handle_reader(now, ReaderInput::Response(sw(0x9000)));
    let o = t.poll_outcome().unwrap();
    assert_eq!(o.status, OutcomeStatus::Cancelled);

    // A bypass (9015) goes online without a PIN.
    let mut t = begin(now, request(700), config_no_stop());
    t.handle_reader(now, ReaderInput::Response(e4_with_cvm([0x02, 0x03, 0x00])));
    drain(&mut t);
    t.handle_reader(now, ReaderInput::Response(sw(0x9015)));
    let (_, h, _) = drain(&mut t);
    let [HostRequest::Authorize(a)] = &h[..] else {
        panic!("{h:?}")
    };
    assert!(a.online_pin.is_none());
}

fn config_no_stop() -> TxnConfig {
    TxnConfig {
        stop_after_cvm: false,
        ..TxnConfig::default()
    }
}

#[test]
fn chip_failure_asks_for_a_swipe_and_the_fallback_goes_online() {
    let now = t0();
    let mut t = begin(now, request(900), TxnConfig::default());
    t.handle_reader(now, ReaderInput::Response(sw(0x9F25)));
    let (c, _, p) = drain(&mut t);
    assert!(c.is_empty(), "{c:?}");
    assert!(p.contains(&Prompt::SwipeCard), "{p:?}");
    t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x00, 0x00])));
    t.handle_reader(now, ReaderInput::Unsolicited(card_event([0x00, 0x05])));
    let (c, _, p) = drain(&mut t);
    assert!(p.contains(&Prompt::CardSwiped), "{p:?}");
    assert_eq!(code(&c[0]), [0xDE, 0xD1]);
    let fallback = response(
        Tag::VIPA_E4,
        |b| {
            b.primitive(Tag::POS_ENTRY_MODE, &[0x80]);
            b.primitive(Tag::VIPA_MASKED_TRACK2, b"401200******5439D3012");
        },
        0x9000,
    );
    t.handle_reader(now, ReaderInput::Response(fallback));
    let (_, h, _) = drain(&mut t);
    let [HostRequest::Authorize(a)] = &h[..] else {
        panic!("{h:?}")
    };
    assert_eq!(a.entry_mode, EntryMode::Swipe);
    assert_eq!(a.masked_pan, "401200******5439");
    assert_eq!(a.last4.as_deref(), Some("5439"));
}
