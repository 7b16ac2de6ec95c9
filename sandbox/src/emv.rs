//! The EMV extension \[EXT\] (gateways.md §4.4, §4.5): validate the ICC data the bridge
//! forwards, verify its ARQC with the simulator's issuer keys, and build the issuer response
//! TLV (`8A`, `91`, `71`/`72`).

use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_sim::issuer::{self, IssuerError, VerifiedArqc};

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
}

impl EmvReject {
    /// The Number `ErrCode` \[EXT\].
    pub fn err_code(self) -> u32 {
        match self {
            EmvReject::NotTlv => 7001,
            EmvReject::MissingTag(_) => 7002,
            EmvReject::NotArqc => 7003,
            EmvReject::AmountMismatch => 7004,
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

    proptest::proptest! {
        #[test]
        fn precheck_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = precheck(&data, Some(1));
            let _ = verify(&data);
        }
    }
}
