//! Issuer side for the sandbox gateway: verify the ARQC in the ICC data the bridge forwards
//! and build the issuer authentication data (`91`) and scripts (`71`/`72`) to send back.
//!
//! The PAN in the ICC data is masked (SRED on), so it is recovered from `FF7F`
//! ([`crate::sred::decrypt`]); a clear `5A`/`57` is used when no `FF7F` is present. Issuer keys
//! come from the shipped card profiles, matched by full PAN. The cryptogram input is rebuilt
//! with [`crypto::cryptogram_input`], the same function the card uses.

use std::collections::BTreeMap;

use emvbridge_protocol::emv::{numeric, Pan, Track2};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};

use crate::card::{self, script_mac};
use crate::crypto::{self, Cvn, SecretKey};
use crate::sred;

/// Largest ICC data we look at.
pub const MAX_ICC_DATA_LEN: usize = 4096;

/// Why an ARQC could not be verified. No card data in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// Not BER-TLV (or too large).
    #[error("icc data not parseable")]
    NotParseable,
    /// A tag needed for verification is absent or malformed.
    #[error("missing or bad tag {0:04X}")]
    MissingTag(u32),
    /// The `FF7F` SRED data did not decrypt to a PAN.
    #[error("sred data unusable")]
    Sred,
    /// No issuer keys for this PAN.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The ARQC does not verify (tampered data or cryptogram).
    #[error("bad cryptogram")]
    BadCryptogram,
    /// The cryptogram verifies, but `9F27` names another type than the card's CVR records
    /// (an ARQC relabelled as a TC, say). The CID is not part of the cryptogram input; the CVR
    /// inside `9F10` is, so the CVR is what the card really returned.
    #[error("cryptogram type does not match the card's CVR")]
    CryptogramType,
}

/// A verified ARQC: what the gateway needs to authorise and answer.
#[derive(Debug, Clone)]
pub struct VerifiedArqc {
    /// The PAN (masked in `Debug`).
    pub pan: Pan,
    /// Amount authorised (9F02) in minor units.
    pub amount: u64,
    /// Transaction currency (5F2A), BCD.
    pub currency: [u8; 2],
    /// Cryptogram version of the card.
    pub cvn: Cvn,
    /// ATC (9F36).
    pub atc: u16,
    /// The ARQC (9F26).
    pub arqc: [u8; 8],
    /// Cryptogram information data (9F27).
    pub cid: u8,
    un: [u8; 4],
    icc_mk: SecretKey,
}

impl VerifiedArqc {
    /// The masked PAN (`411111******1111`), as the protocol crate masks every PAN.
    pub fn masked_pan(&self) -> String {
        self.pan.to_string()
    }

    /// Value of tag `91` for `arc` (method per CVN). With `corrupt`, the ARPC is deliberately
    /// wrong (the sandbox's `x.91` rule) so the card fails issuer authentication.
    pub fn issuer_auth_data(&self, arc: [u8; 2], corrupt: bool) -> Vec<u8> {
        let mut v = crypto::issuer_authentication_data(
            self.cvn,
            &self.icc_mk,
            self.atc,
            self.un,
            self.arqc,
            arc,
        );
        if corrupt {
            if let Some(b) = v.first_mut() {
                *b ^= 0xA5;
            }
        }
        v
    }

    /// A complete issuer script template (`71` or `72`, by `template`) with script id
    /// `9F18` and one MAC'd command `86`: `84 24 00 00` (PIN unblock, resets the PIN try
    /// counter). With `corrupt` the MAC is wrong and the card counts the script as failed.
    pub fn pin_unblock_script(&self, template: u8, corrupt: bool) -> Vec<u8> {
        let header = [0x84, 0x24, 0x00, 0x00, 0x00];
        let mut mac = script_mac(
            self.cvn,
            &self.icc_mk,
            self.atc,
            self.un,
            self.arqc,
            &header,
        );
        if corrupt {
            mac[0] ^= 0xFF;
        }
        let mut cmd = vec![0x84, 0x24, 0x00, 0x00, 0x04];
        cmd.extend_from_slice(&mac);
        let mut b = TlvBuilder::new();
        b.constructed(Tag(u32::from(template)), |b| {
            b.primitive(Tag(0x9F18), &[0x00, 0x00, 0x00, 0x01]);
            b.primitive(Tag(0x86), &cmd);
        });
        b.freeze().to_vec()
    }
}

fn flatten(
    input: &[u8],
    out: &mut BTreeMap<u32, Vec<u8>>,
    depth: usize,
) -> Result<(), IssuerError> {
    for item in tlv::parse(input) {
        let t = item.map_err(|_| IssuerError::NotParseable)?;
        if t.tag() == Tag(0xFF7F) {
            out.insert(0xFF7F, t.value().to_vec());
        } else if t.is_constructed() && depth < 4 {
            flatten(t.value(), out, depth + 1)?;
        } else {
            out.entry(t.tag().0).or_insert_with(|| t.value().to_vec());
        }
    }
    Ok(())
}

fn get_n<const N: usize>(m: &BTreeMap<u32, Vec<u8>>, tag: u32) -> Result<[u8; N], IssuerError> {
    m.get(&tag)
        .and_then(|v| <[u8; N]>::try_from(v.as_slice()).ok())
        .ok_or(IssuerError::MissingTag(tag))
}

/// The cryptogram type (`9F27` b8-7: `00` AAC, `40` TC, `80` ARQC) the card's CVR byte 1
/// records for the cryptogram it last returned, in the Visa / M/Chip layout the simulated cards
/// use: b8-7 the second GENERATE AC's type (`10` = not requested), b6-5 the first's. `None`
/// for the RFU value `11`.
fn cvr_cryptogram_type(cvr1: u8) -> Option<u8> {
    let second = cvr1 >> 6;
    let bits = if second == 0b10 {
        (cvr1 >> 4) & 0b11
    } else {
        second
    };
    match bits {
        0b00 => Some(0x00),
        0b01 => Some(0x40),
        0b10 => Some(0x80),
        _ => None,
    }
}

/// Verifies the ARQC in `icc_data` (hex-decoded TLV as the bridge forwards it: the `E4`
/// contents, with or without the `E4` wrapper).
///
/// # Errors
/// [`IssuerError`]: unparseable, missing tags, SRED failure, unknown issuer, bad cryptogram.
pub fn verify_arqc(icc_data: &[u8]) -> Result<VerifiedArqc, IssuerError> {
    if icc_data.len() > MAX_ICC_DATA_LEN {
        return Err(IssuerError::NotParseable);
    }
    let mut m = BTreeMap::new();
    flatten(icc_data, &mut m, 0)?;
    let pan = match m.get(&0xFF7F) {
        Some(ff7f) => sred::decrypt(ff7f)
            .map_err(|_| IssuerError::Sred)?
            .pan
            .clone(),
        None => m
            .get(&0x5A)
            .and_then(|v| Pan::from_bcd(v).ok())
            .or_else(|| {
                m.get(&0x57)
                    .and_then(|v| Track2::from_bcd(v).ok())
                    .map(|t| t.pan())
            })
            .ok_or(IssuerError::MissingTag(0x5A))?,
    };
    // 5F34 is n2: its first byte, BCD.
    let psn = match m.get(&0x5F34) {
        Some(v) => v
            .get(..1)
            .and_then(|b| numeric::bcd_to_u64(b).ok())
            .and_then(|n| u8::try_from(n).ok())
            .ok_or(IssuerError::MissingTag(0x5F34))?,
        None => 0,
    };
    let profile = card::shipped_profiles()
        .find(|p| p.pan == pan && p.psn == psn)
        .or_else(|| card::shipped_profiles().find(|p| p.pan == pan))
        .ok_or(IssuerError::UnknownIssuer)?;
    let arqc: [u8; 8] = get_n(&m, 0x9F26)?;
    let cid = get_n::<1>(&m, 0x9F27)?[0];
    let atc = u16::from_be_bytes(get_n(&m, 0x9F36)?);
    let un: [u8; 4] = get_n(&m, 0x9F37)?;
    let amount_bcd: [u8; 6] = get_n(&m, 0x9F02)?;
    let amount = numeric::parse_amount(&amount_bcd).map_err(|_| IssuerError::MissingTag(0x9F02))?;
    let currency = get_n(&m, 0x5F2A)?;
    let cvn = profile.cvn;
    let icc_mk = crypto::derive_icc_master_key(&profile.imk, pan.reveal(), psn)
        .map_err(|_| IssuerError::UnknownIssuer)?;
    let input = crypto::cryptogram_input(cvn, &m).map_err(|e| match e {
        crypto::CryptoError::MissingTag(t) | crypto::CryptoError::BadLength(t) => {
            IssuerError::MissingTag(t)
        }
        _ => IssuerError::NotParseable,
    })?;
    let expect = crypto::application_cryptogram(cvn, &icc_mk, atc, un, &input);
    if !crypto::ct_eq(&expect, &arqc) {
        return Err(IssuerError::BadCryptogram);
    }
    let iad = m.get(&0x9F10).ok_or(IssuerError::MissingTag(0x9F10))?;
    let cvr = cvn
        .cvr_from_iad(iad)
        .ok_or(IssuerError::MissingTag(0x9F10))?;
    if cvr_cryptogram_type(cvr[0]) != Some(cid & 0xC0) {
        return Err(IssuerError::CryptogramType);
    }
    Ok(VerifiedArqc {
        pan,
        amount,
        currency,
        cvn,
        atc,
        arqc,
        cid,
        un,
        icc_mk,
    })
}
