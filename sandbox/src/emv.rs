//! The EMV extension \[EXT\] (gateways.md §4.4, §4.5): validate the ICC data the bridge
//! forwards, verify its ARQC with the simulator's issuer keys, and build the issuer response
//! TLV (`8A`, `91`, `71`/`72`).

use emvbridge_protocol::emv::Track2;
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_sim::crypto::{tdes_decrypt, SecretKey};
use emvbridge_sim::issuer::{self, IssuerError, VerifiedArqc};
use emvbridge_sim::sred;
use zeroize::Zeroize;

/// Tags the ARQC data set must carry (EMV Book 2 §8.1.1 minimum set + CID, IAD, ARQC).
const REQUIRED: [u32; 13] = [
    0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36, 0x9F10, 0x9F26, 0x9F27,
];

/// Why ICC data was refused before any cryptography; Number `ErrCode` 7001–7004 \[EXT\].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmvReject {
    /// Not hex, not BER-TLV, or too large.
    #[error("icc data is not valid ber-tlv")]
    NotTlv,
    /// A tag of the ARQC data set is missing or malformed.
    #[error("icc data lacks tag {0:04X}")]
    MissingTag(u32),
    /// `9F27` does not announce an ARQC.
    #[error("cryptogram is not an arqc")]
    NotArqc,
    /// `9F02` differs from the requested amount.
    #[error("9f02 does not match the amount")]
    AmountMismatch,
    /// A stripe read whose enciphered track is missing, undecipherable or malformed
    /// (PAN fails Luhn, impossible expiry, bad service code).
    #[error("track data unusable")]
    BadTrack,
    /// The masked PAN the reader showed is not the enciphered track's.
    #[error("masked pan does not match the track")]
    PanMismatch,
    /// A chip card (service code 2xx/6xx) read by its stripe without a chip failure
    /// (entry mode 90 rather than fallback 80).
    #[error("chip card read by stripe without fallback")]
    ChipCardSwiped,
    /// A PIN block that is not 8 bytes of hex with a 10-byte KSN.
    #[error("pin block or ksn malformed")]
    BadPinBlock,
}

impl EmvReject {
    /// The Number `ErrCode` \[EXT\].
    pub fn err_code(self) -> u32 {
        match self {
            EmvReject::NotTlv => 7001,
            EmvReject::MissingTag(_) => 7002,
            EmvReject::NotArqc => 7003,
            EmvReject::AmountMismatch => 7004,
            EmvReject::BadTrack => 7005,
            EmvReject::PanMismatch => 7006,
            EmvReject::ChipCardSwiped => 7007,
            EmvReject::BadPinBlock => 7008,
        }
    }
}

/// Decodes the hex ICC data (spaces tolerated), bounded by the issuer's own limit.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, EmvReject> {
    if text.len() > issuer::MAX_ICC_DATA_LEN * 2 + 64 {
        return Err(EmvReject::NotTlv);
    }
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    hex::decode(clean).map_err(|_| EmvReject::NotTlv)
}

fn walk_ok(input: &[u8], depth: usize) -> bool {
    tlv::parse(input).all(|item| match item {
        Ok(t) if t.is_constructed() && depth < 4 => walk_ok(t.value(), depth + 1),
        Ok(_) => true,
        Err(_) => false,
    })
}

/// Decodes a BCD `n12` amount.
pub fn bcd_amount(v: &[u8]) -> Option<i64> {
    if v.len() != 6 {
        return None;
    }
    v.iter().try_fold(0i64, |acc, b| {
        let (h, l) = (b >> 4, b & 0x0F);
        (h < 10 && l < 10).then(|| acc * 100 + i64::from(h) * 10 + i64::from(l))
    })
}

/// Structural checks in the order of the \[EXT\] error codes: TLV, tags, ARQC, amount.
/// `amount_minor` is the amount of the request (`None` when the request carries none and
/// 9F02 is authoritative).
///
/// # Errors
/// The first [`EmvReject`] that applies.
pub fn precheck(icc: &[u8], amount_minor: Option<i64>) -> Result<i64, EmvReject> {
    if icc.is_empty() || icc.len() > issuer::MAX_ICC_DATA_LEN || !walk_ok(icc, 0) {
        return Err(EmvReject::NotTlv);
    }
    for t in REQUIRED {
        if tlv::find(icc, Tag(t)).is_none() {
            return Err(EmvReject::MissingTag(t));
        }
    }
    let cid = tlv::find(icc, Tag(0x9F27))
        .and_then(|t| t.value().first().copied())
        .ok_or(EmvReject::MissingTag(0x9F27))?;
    // b8-b7: 10 ARQC (an online authorization), or 01 TC — a stored offline approval
    // forwarded after the fact, verified with the issuer keys like an ARQC (the TC is computed
    // over the same data, EMV Book 2 §8.1). AAC and RFU are refused.
    if !matches!(cid & 0xC0, 0x80 | 0x40) {
        return Err(EmvReject::NotArqc);
    }
    let amt = tlv::find(icc, Tag(0x9F02))
        .and_then(|t| bcd_amount(t.value()))
        .ok_or(EmvReject::MissingTag(0x9F02))?;
    match amount_minor {
        Some(a) if a != amt => Err(EmvReject::AmountMismatch),
        _ => Ok(amt),
    }
}

/// POS entry modes (`9F39`) of a stripe read: 90 swipe, 80 fallback after a chip failure,
/// 91 contactless magstripe (MSD), 02 stripe without track-2 assurance.
const STRIPE_ENTRY_MODES: [u8; 4] = [0x90, 0x80, 0x91, 0x02];

/// Whether the data set is a stripe read: a magnetic-stripe entry mode and no cryptogram.
/// Such a read is authorized on its track, not an ARQC.
pub fn is_stripe(icc: &[u8]) -> bool {
    let mode = tlv::find(icc, Tag(0x9F39)).and_then(|t| t.value().first().copied());
    matches!(mode, Some(m) if STRIPE_ENTRY_MODES.contains(&m))
        && tlv::find(icc, Tag(0x9F26)).is_none()
}

/// What the issuer learns from a stripe read. `pan` is clear (the sandbox is the issuer);
/// it never leaves this process except as last four / brand.
pub struct Swiped {
    /// The clear PAN from the deciphered track 2.
    pub pan: String,
    /// Expiry `(month, year)` from the track.
    pub expiry: (u32, u32),
}

/// Authorizes a stripe read: the reader's SRED container (`FF7F`) is deciphered with the
/// simulator's test BDK (as the acquirer's HSM would), its track 2 checked (Luhn PAN,
/// expiry month, service code), and the masked track the reader showed (`DFDB06`) must be
/// that PAN's first six / last four. `9F02`, when present, must equal `amount_minor`.
///
/// # Errors
/// [`EmvReject`]: the first check that fails.
pub fn stripe(icc: &[u8], amount_minor: Option<i64>) -> Result<Swiped, EmvReject> {
    if icc.is_empty() || icc.len() > issuer::MAX_ICC_DATA_LEN || !walk_ok(icc, 0) {
        return Err(EmvReject::NotTlv);
    }
    if let (Some(want), Some(t)) = (amount_minor, tlv::find(icc, Tag(0x9F02))) {
        if bcd_amount(t.value()) != Some(want) {
            return Err(EmvReject::AmountMismatch);
        }
    }
    let ff7f = tlv::find(icc, Tag(0xFF7F)).ok_or(EmvReject::MissingTag(0xFF7F))?;
    let clear = sred::decrypt(ff7f.value()).map_err(|_| EmvReject::BadTrack)?;
    let track = Track2::from_bcd(&clear.track2).map_err(|_| EmvReject::BadTrack)?;
    let pan = track.pan();
    let (yy, mm) = track.expiry();
    let sc = track.service_code().0;
    if pan.is_empty() || !pan.luhn_valid() || !(1..=12).contains(&mm) || !matches!(sc[0], 1..=7 | 9)
    {
        return Err(EmvReject::BadTrack);
    }
    let masked = tlv::find(icc, Tag::VIPA_MASKED_TRACK2)
        .ok_or(EmvReject::MissingTag(Tag::VIPA_MASKED_TRACK2.0))?;
    let masked: String = String::from_utf8_lossy(masked.value())
        .trim_start_matches(';')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '*')
        .collect();
    let digits = pan.reveal();
    if masked.len() != digits.len()
        || !masked.starts_with(pan.bin())
        || !masked.ends_with(pan.last4())
    {
        return Err(EmvReject::PanMismatch);
    }
    let mode = tlv::find(icc, Tag(0x9F39)).and_then(|t| t.value().first().copied());
    if matches!(sc[0], 2 | 6) && mode == Some(0x90) {
        return Err(EmvReject::ChipCardSwiped);
    }
    Ok(Swiped {
        pan: digits.to_owned(),
        expiry: (u32::from(mm), 2000 + u32::from(yy)),
    })
}

/// The issuer's verdict on the cardholder's online PIN \[EXT\].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// No PIN block, and the card's CVM result (`9F34`) asks for none.
    NotAsked,
    /// The PIN block deciphered to the card's PIN.
    Verified,
    /// A wrong PIN, or an online PIN the CVM result announces but the request lacks:
    /// declined `55` (incorrect PIN).
    Failed,
}

/// Whether the CVM result (`9F34`) says the PIN was enciphered for online verification
/// (CVM code `02`; EMV Book 3, Annex C3), with or without the "apply next" bit.
fn online_pin_announced(icc: &[u8]) -> bool {
    tlv::find(icc, Tag(0x9F34))
        .and_then(|t| t.value().first().copied())
        .is_some_and(|b| b & 0x3F == 0x02)
}

/// Checks an online PIN block (`pin_block`, `ksn`: hex, as the \[EXT\] request fields carry
/// them) for card `pan`, as the acquirer's HSM would: DUKPT PIN key of the simulator's test
/// BDK (ANSI X9.24-1:2009 A.4.1: the transaction key with the PIN variant), ISO 9564-1
/// format 0 (PIN field XOR the PAN's 12 rightmost digits without the check digit). The
/// card's PIN is its profile's, `1234` when the profile has none (as the simulator enters).
///
/// # Errors
/// [`EmvReject::BadPinBlock`] when a block is sent but is not 8 bytes with a 10-byte KSN.
pub fn pin_check(
    icc: &[u8],
    pan: &str,
    pin_block: Option<&str>,
    ksn: Option<&str>,
) -> Result<PinCheck, EmvReject> {
    let (block, ksn) = match (pin_block, ksn) {
        (None, None) if online_pin_announced(icc) => return Ok(PinCheck::Failed),
        (None, None) => return Ok(PinCheck::NotAsked),
        (Some(b), Some(k)) => (b, k),
        _ => return Err(EmvReject::BadPinBlock),
    };
    let block: [u8; 8] = hex::decode(block)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(EmvReject::BadPinBlock)?;
    let ksn: [u8; 10] = hex::decode(ksn)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(EmvReject::BadPinBlock)?;
    let mut key = *sred::transaction_key(&SecretKey::from_bytes(sred::TEST_BDK), &ksn).expose();
    key[7] ^= 0xFF;
    key[15] ^= 0xFF;
    let pin_key = SecretKey::from_bytes(key);
    key.zeroize();
    let mut field = tdes_decrypt(&pin_key, block);
    let body = pan.get(..pan.len().saturating_sub(1)).unwrap_or_default();
    let tail = body
        .get(body.len().saturating_sub(12)..)
        .unwrap_or_default();
    for (i, d) in tail.bytes().enumerate() {
        let n = 4 + i;
        if let Some(f) = field.get_mut(n / 2) {
            *f ^= d.wrapping_sub(b'0') << if n % 2 == 0 { 4 } else { 0 };
        }
    }
    let mut digits: String = field
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .skip(2)
        .take(usize::from(field[0] & 0x0F))
        .map(|n| char::from(b'0' + n.min(9)))
        .collect();
    field.zeroize();
    let expected = emvbridge_sim::card::shipped_profiles()
        .find(|p| p.pan.reveal() == pan)
        .and_then(|p| p.pin.as_ref().map(|(pin, _)| pin.clone()))
        .unwrap_or_else(|| "1234".to_owned());
    let ok = digits == expected;
    digits.zeroize();
    Ok(if ok {
        PinCheck::Verified
    } else {
        PinCheck::Failed
    })
}

/// Result of the issuer check.
pub enum Verdict {
    /// The ARQC verified; keys are available for the ARPC.
    Verified(Box<VerifiedArqc>),
    /// Declined by the issuer before authorisation: `code` and a message (no card data).
    Declined {
        /// Response code.
        code: &'static str,
        /// Why.
        message: &'static str,
    },
    /// The data could not be used at all.
    Rejected(EmvReject),
}

/// Verifies the ARQC with the simulator's issuer keys (same keys and derivations as the
/// simulator's cards). A tampered amount or cryptogram is an issuer decline, not an error.
pub fn verify(icc: &[u8]) -> Verdict {
    match issuer::verify_arqc(icc) {
        Ok(v) => Verdict::Verified(Box::new(v)),
        Err(IssuerError::BadCryptogram) => Verdict::Declined {
            code: "05",
            message: "arqc verification failed",
        },
        Err(IssuerError::CryptogramType) => Verdict::Declined {
            code: "05",
            message: "cryptogram type does not match the card",
        },
        Err(IssuerError::UnknownIssuer) => Verdict::Declined {
            code: "14",
            message: "unknown issuer",
        },
        Err(IssuerError::Sred) => Verdict::Declined {
            code: "05",
            message: "sred data unusable",
        },
        Err(IssuerError::NotParseable) => Verdict::Rejected(EmvReject::NotTlv),
        Err(IssuerError::MissingTag(t)) => Verdict::Rejected(EmvReject::MissingTag(t)),
    }
}

/// The issuer response: `8A` (ARC), `91` (ARPC; deliberately bad when `bad_arpc`), and an
/// optional script template `71`/`72`.
pub fn issuer_response(
    v: &VerifiedArqc,
    arc: [u8; 2],
    bad_arpc: bool,
    script: Option<u8>,
) -> Vec<u8> {
    let mut b = TlvBuilder::new();
    b.primitive(Tag(0x8A), &arc);
    b.primitive(Tag(0x91), &v.issuer_auth_data(arc, bad_arpc));
    let mut out = b.freeze().to_vec();
    if let Some(t) = script {
        out.extend_from_slice(&v.pin_unblock_script(t, false));
    }
    out
}

/// An `8A`-only response (no keys: the ARQC did not verify).
pub fn arc_only(arc: [u8; 2]) -> Vec<u8> {
    let mut b = TlvBuilder::new();
    b.primitive(Tag(0x8A), &arc);
    b.freeze().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TlvBuilder {
        let mut b = TlvBuilder::new();
        b.primitive(Tag(0x9F02), &[0, 0, 0, 0, 0x12, 0x34])
            .primitive(Tag(0x9F03), &[0; 6])
            .primitive(Tag(0x9F1A), &[0x08, 0x40])
            .primitive(Tag(0x95), &[0; 5])
            .primitive(Tag(0x5F2A), &[0x08, 0x40])
            .primitive(Tag(0x9A), &[0x25, 0x01, 0x01])
            .primitive(Tag(0x9C), &[0])
            .primitive(Tag(0x9F37), &[1, 2, 3, 4])
            .primitive(Tag(0x82), &[0x19, 0x80])
            .primitive(Tag(0x9F36), &[0, 1])
            .primitive(Tag(0x9F10), &[6, 1, 0x0A, 3, 0xA0, 0, 0])
            .primitive(Tag(0x9F26), &[0; 8]);
        b
    }

    #[test]
    fn precheck_order() {
        let mut ok = base();
        ok.primitive(Tag(0x9F27), &[0x80]);
        assert_eq!(precheck(ok.as_bytes(), Some(1234)), Ok(1234));
        assert_eq!(
            precheck(ok.as_bytes(), Some(1235)),
            Err(EmvReject::AmountMismatch)
        );
        let mut tc = base();
        tc.primitive(Tag(0x9F27), &[0x40]);
        assert_eq!(precheck(tc.as_bytes(), None), Ok(1234), "a forwarded TC");
        let mut aac = base();
        aac.primitive(Tag(0x9F27), &[0x00]);
        assert_eq!(precheck(aac.as_bytes(), None), Err(EmvReject::NotArqc));
        assert_eq!(
            precheck(base().as_bytes(), None),
            Err(EmvReject::MissingTag(0x9F27))
        );
        assert_eq!(
            precheck(&[0x9F, 0x02, 0x06, 0x00], None),
            Err(EmvReject::NotTlv)
        );
        assert_eq!(decode_hex("zz"), Err(EmvReject::NotTlv));
        assert_eq!(EmvReject::NotArqc.err_code(), 7003);
    }

    #[test]
    fn unknown_card_and_bad_cryptogram_are_declines() {
        let mut unknown = base();
        unknown
            .primitive(Tag(0x9F27), &[0x80])
            .primitive(Tag(0x5A), &[0x49, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99]);
        assert!(matches!(
            verify(unknown.as_bytes()),
            Verdict::Declined { code: "14", .. }
        ));
        // 4111111111111111 is the simulator's visa-cvn10 card; an all-zero ARQC cannot verify.
        let mut known = base();
        known
            .primitive(Tag(0x9F27), &[0x80])
            .primitive(Tag(0x5A), &[0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
        assert!(matches!(
            verify(known.as_bytes()),
            Verdict::Declined { code: "05", .. }
        ));
    }

    #[test]
    fn pin_blocks_are_verified_against_the_card() {
        let pan = emvbridge_protocol::emv::Pan::parse("4005520000000939").unwrap();
        let mut reader = emvbridge_sim::sred::SredEncryptor::ansi_test();
        let (block, ksn) = reader.pin_block("1234", &pan).unwrap();
        let (b, k) = (hex::encode_upper(block), hex::encode_upper(ksn));
        let none: &[u8] = &[];
        assert_eq!(
            pin_check(none, pan.reveal(), Some(&b), Some(&k)),
            Ok(PinCheck::Verified)
        );
        let (wrong, ksn2) = reader.pin_block("4321", &pan).unwrap();
        assert_eq!(
            pin_check(
                none,
                pan.reveal(),
                Some(&hex::encode(wrong)),
                Some(&hex::encode(ksn2))
            ),
            Ok(PinCheck::Failed)
        );
        // The right block under another KSN deciphers to garbage.
        assert_eq!(
            pin_check(none, pan.reveal(), Some(&b), Some(&hex::encode(ksn2))),
            Ok(PinCheck::Failed)
        );
        assert_eq!(
            pin_check(none, pan.reveal(), Some("00"), Some(&k)),
            Err(EmvReject::BadPinBlock)
        );
        assert_eq!(
            pin_check(none, pan.reveal(), Some(&b), None),
            Err(EmvReject::BadPinBlock)
        );
        // 9F34 42 03 00: enciphered online PIN; without a block the PIN failed.
        let mut cvm = TlvBuilder::new();
        cvm.primitive(Tag(0x9F34), &[0x42, 0x03, 0x00]);
        assert_eq!(
            pin_check(cvm.as_bytes(), pan.reveal(), None, None),
            Ok(PinCheck::Failed)
        );
        assert_eq!(
            pin_check(none, pan.reveal(), None, None),
            Ok(PinCheck::NotAsked)
        );
    }

    #[test]
    fn stripe_reads_are_checked() {
        fn read(pan: &str, track: &str, masked: &str, mode: u8) -> Vec<u8> {
            let p = emvbridge_protocol::emv::Pan::parse(pan).unwrap();
            let t = Track2::from_ascii(track).unwrap().to_bcd();
            let ff7f = emvbridge_sim::sred::SredEncryptor::ansi_test()
                .encrypt(&p, &t, [1; 8])
                .unwrap();
            let mut b = TlvBuilder::new();
            b.primitive(Tag(0x9F39), &[mode])
                .primitive(Tag::VIPA_MASKED_TRACK2, masked.as_bytes())
                .primitive(Tag(0x9F02), &[0, 0, 0, 0, 0x12, 0x00]);
            let mut out = b.freeze().to_vec();
            out.extend_from_slice(&ff7f);
            out
        }
        let ok = read(
            "4788250000028291",
            "4788250000028291=30121010000",
            "478825******8291D3012",
            0x90,
        );
        assert!(is_stripe(&ok));
        let s = stripe(&ok, Some(1200)).unwrap();
        assert_eq!((s.pan.as_str(), s.expiry), ("4788250000028291", (12, 2030)));
        assert_eq!(
            stripe(&ok, Some(1201)).err(),
            Some(EmvReject::AmountMismatch)
        );
        let other = read(
            "4788250000028291",
            "4788250000028291=30121010000",
            "401200******5439D3012",
            0x90,
        );
        assert_eq!(stripe(&other, None).err(), Some(EmvReject::PanMismatch));
        // Luhn fails (last digit changed).
        let luhn = read(
            "4788250000028292",
            "4788250000028292=30121010000",
            "478825******8292",
            0x90,
        );
        assert_eq!(stripe(&luhn, None).err(), Some(EmvReject::BadTrack));
        let month = read(
            "4788250000028291",
            "4788250000028291=30131010000",
            "478825******8291",
            0x90,
        );
        assert_eq!(stripe(&month, None).err(), Some(EmvReject::BadTrack));
        let sc = read(
            "4788250000028291",
            "4788250000028291=30120010000",
            "478825******8291",
            0x90,
        );
        assert_eq!(stripe(&sc, None).err(), Some(EmvReject::BadTrack));
        // A chip card's stripe: only as a fallback (80), not as a plain swipe (90).
        let chip = read(
            "4012000098765439",
            "4012000098765439=30122010000",
            "401200******5439",
            0x90,
        );
        assert_eq!(stripe(&chip, None).err(), Some(EmvReject::ChipCardSwiped));
        let fallback = read(
            "4012000098765439",
            "4012000098765439=30122010000",
            "401200******5439",
            0x80,
        );
        assert!(stripe(&fallback, None).is_ok());
        let mut b = TlvBuilder::new();
        b.primitive(Tag(0x9F39), &[0x90]);
        assert_eq!(
            stripe(b.as_bytes(), None).err(),
            Some(EmvReject::MissingTag(0xFF7F))
        );
        assert!(!is_stripe(
            &hex::decode("9F3901059F26080000000000000000").unwrap()
        ));
        assert!(!is_stripe(
            &hex::decode("9F390190 9F26080000000000000000".replace(' ', "")).unwrap()
        ));
    }

    proptest::proptest! {
        #[test]
        fn precheck_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = precheck(&data, Some(1));
            let _ = verify(&data);
            let _ = stripe(&data, Some(1));
            let _ = pin_check(&data, "4005520000000939", Some(&hex::encode(&data)), Some("00"));
        }
    }
}
