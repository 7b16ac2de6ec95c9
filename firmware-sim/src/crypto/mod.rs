//! EMV application cryptography for the simulated card and the sandbox issuer.
//!
//! Real algorithms with public test keys, so the bridge's online path exercises the same
//! bytes a real issuer host would check:
//! - ICC master key derivation, EMV Book 2 Annex A1.4.1 option A (PAN ≤ 16 digits) and
//!   option B (PAN > 16 digits, SHA-1 decimalisation), with odd parity.
//! - Session keys per cryptogram version ([`Cvn`]): none (Visa CVN 10), EMV common session
//!   key (Book 2 A1.3, `R = ATC‖00..00`: Visa CVN 18, and [`Cvn::EmvCommon`] used for the Amex
//!   and Discover profiles), Mastercard SKD (`R = ATC‖0000‖UN`: Mastercard CVN 16).
//! - Application cryptograms: ISO/IEC 9797-1 MAC algorithm 3 (retail MAC) over the
//!   cryptogram input, padding method 1 (CVN 10) or 2 (all others), Book 2 A1.2.
//! - ARPC method 1 (Book 2 8.2.1) and method 2 (8.2.2).
//!
//! The cryptogram input is built by ONE function, [`cryptogram_input`], used by both the card
//! ([`crate::card`]) and the issuer ([`crate::issuer`]), so the two can never disagree.
//!
//! Cross-checked against the independent Python implementation `pyemv` 1.5 (classes
//! `VisaCVN10`, `VisaCVN18`, `MasterCardCVN16`): see the vector table `pyemv_vectors.jsonl`
//! and the live test that runs `pyemv_check.py` when `pyemv` is installed.

use std::fmt;

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::{Des, TdesEde2};
use emvbridge_protocol::emv::TagSource;
use emvbridge_protocol::tlv::Tag;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Errors from the crypto helpers. Messages never contain key or card data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key was not 16 bytes / 32 hex digits.
    #[error("bad key length")]
    BadKey,
    /// The PAN was not 12..=19 decimal digits or the PSN not 0..=99.
    #[error("bad pan or pan sequence number")]
    BadPan,
    /// A tag needed for the cryptogram input is absent.
    #[error("missing tag {0:04X}")]
    MissingTag(u32),
    /// A tag needed for the cryptogram input has the wrong length.
    #[error("bad length for tag {0:04X}")]
    BadLength(u32),
    /// Proprietary authentication data longer than 8 bytes (ARPC method 2).
    #[error("proprietary authentication data too long")]
    PropDataTooLong,
}

/// A double-length (16-byte) TDES key. `Debug` shows only the key check value; the bytes are
/// zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 16]);

impl SecretKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        SecretKey(bytes)
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] if the text is not exactly 16 bytes of hex.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| CryptoError::BadKey)?;
        Ok(SecretKey(out))
    }

    /// The key bytes. Keep the borrow short; never log them.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }

    /// Key check value: the first 3 bytes of TDES(key, 00..00). Safe to display.
    pub fn kcv(&self) -> [u8; 3] {
        let b = tdes_encrypt(self, [0u8; 8]);
        [b[0], b[1], b[2]]
    }

    /// Sets odd parity on every byte (DES keys; EMV Book 2 A1.4.1 step 3).
    fn with_odd_parity(mut self) -> Self {
        for b in self.0.iter_mut() {
            if b.count_ones() % 2 == 0 {
                *b ^= 1;
            }
        }
        self
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(kcv={})", hex::encode_upper(self.kcv()))
    }
}

/// Two-key TDES (EDE) encryption of one block.
pub fn tdes_encrypt(key: &SecretKey, block: [u8; 8]) -> [u8; 8] {
    let cipher = TdesEde2::new(GenericArray::from_slice(key.expose()));
    let mut b = GenericArray::clone_from_slice(&block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// Two-key TDES (EDE) decryption of one block.
pub fn tdes_decrypt(key: &SecretKey, block: [u8; 8]) -> [u8; 8] {
    let cipher = TdesEde2::new(GenericArray::from_slice(key.expose()));
    let mut b = GenericArray::clone_from_slice(&block);
    cipher.decrypt_block(&mut b);
    b.into()
}

fn des_encrypt(key: &[u8], block: [u8; 8]) -> [u8; 8] {
    let cipher = Des::new(GenericArray::from_slice(key));
    let mut b = GenericArray::clone_from_slice(&block);
    cipher.encrypt_block(&mut b);
    b.into()
}

fn des_decrypt(key: &[u8], block: [u8; 8]) -> [u8; 8] {
    let cipher = Des::new(GenericArray::from_slice(key));
    let mut b = GenericArray::clone_from_slice(&block);
    cipher.decrypt_block(&mut b);
    b.into()
}

fn xor8(a: [u8; 8], b: [u8; 8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b.iter())) {
        *o = x ^ y;
    }
    out
}

/// ISO/IEC 9797-1 padding methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Method 1: zero bytes up to the block size (none if already aligned; one block if empty).
    Method1,
    /// Method 2: a mandatory `80` then zero bytes.
    Method2,
}

/// ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC"): single-DES CBC-MAC with the left key half,
/// then the last block decrypted with the right half and encrypted with the left.
pub fn retail_mac(key: &SecretKey, data: &[u8], padding: Padding) -> [u8; 8] {
    let (k1, k2) = key.expose().split_at(8);
    let mut h = [0u8; 8];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut block = [0u8; 8];
        block.copy_from_slice(c);
        h = des_encrypt(k1, xor8(h, block));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    let need_last = match padding {
        Padding::Method1 => !rest.is_empty() || data.is_empty(),
        Padding::Method2 => {
            last[rest.len()] = 0x80;
            true
        }
    };
    if need_last {
        h = des_encrypt(k1, xor8(h, last));
    }
    des_encrypt(k1, des_decrypt(k2, h))
}

/// Cryptogram version: selects session key, padding, cryptogram input and ARPC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cvn {
    /// Visa CVN 10 (`0A`): no session key, padding method 1, input ends with the 4 CVR bytes
    /// of the IAD (`9F10[3..7]`), ARPC method 1 with the ICC master key.
    Visa10,
    /// Visa CVN 18 (`12`): EMV common session key (ATC), padding method 2, input ends with the
    /// whole IAD, ARPC method 2 with the session key.
    Visa18,
    /// Mastercard CVN 16 (`10`, M/Chip 4, "Mastercard proprietary SKD, no counters"): session
    /// key from `ATC‖0000‖UN`, padding method 2, input ends with the 6 CVR bytes
    /// (`9F10[2..8]`), ARPC method 1 with the ICC master key (as pyemv `MasterCardCVN16`).
    Mastercard16,
    /// Our choice for the Amex and Discover profiles: the same algorithms as Visa CVN 18
    /// (EMV common session key, whole IAD, ARPC method 2), with CVN byte `01` in the IAD.
    EmvCommon,
}

impl Cvn {
    /// The CVN byte written into the issuer application data.
    pub fn byte(self) -> u8 {
        match self {
            Cvn::Visa10 => 0x0A,
            Cvn::Visa18 => 0x12,
            Cvn::Mastercard16 => 0x10,
            Cvn::EmvCommon => 0x01,
        }
    }

    /// Which ARPC method the issuer uses and the card expects.
    pub fn arpc_method(self) -> ArpcMethod {
        match self {
            Cvn::Visa10 | Cvn::Mastercard16 => ArpcMethod::Method1,
            Cvn::Visa18 | Cvn::EmvCommon => ArpcMethod::Method2,
        }
    }

    /// Issuer application data (tag `9F10`) for this CVN with the given CVR.
    ///
    /// Layout: Visa format 0 (`06 DKI CVN 03 CVR[0..3]`) for Visa and EmvCommon; M/Chip 4
    /// (`DKI CVN CVR[0..6] DAC(2) counters(8)`) for Mastercard. Only `cvr[..3]` is used for
    /// the Visa layout.
    pub fn issuer_application_data(self, cvr: [u8; 6]) -> Vec<u8> {
        match self {
            Cvn::Mastercard16 => {
                let mut v = vec![0x01, self.byte()];
                v.extend_from_slice(&cvr);
                v.extend_from_slice(&[0u8; 10]);
                v
            }
            _ => vec![0x06, 0x01, self.byte(), 0x03, cvr[0], cvr[1], cvr[2]],
        }
    }

    /// The CVR bytes (as passed to [`Cvn::issuer_application_data`]) read back from an IAD.
    /// Returns `None` when the IAD is too short for this CVN's layout.
    pub fn cvr_from_iad(self, iad: &[u8]) -> Option<[u8; 6]> {
        let mut out = [0u8; 6];
        match self {
            Cvn::Mastercard16 => out.copy_from_slice(iad.get(2..8)?),
            _ => out[..3].copy_from_slice(iad.get(4..7)?),
        }
        Some(out)
    }
}

/// ARPC generation method (EMV Book 2, 8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpcMethod {
    /// 8-byte ARPC = TDES(ARQC ⊕ (ARC‖00..00)); tag 91 = ARPC‖ARC.
    Method1,
    /// 4-byte ARPC = MAC(ARQC‖CSU‖prop); tag 91 = ARPC‖CSU‖prop.
    Method2,
}

/// ICC master key derivation, EMV Book 2 Annex A1.4.1: option A for PANs of up to 16
/// digits, option B (A1.4.2, SHA-1 + decimalisation) for longer PANs. Parity is set odd.
///
/// `pan` is the decimal PAN (no padding `F`), `psn` the PAN sequence number (5F34, 0..=99;
/// absent 5F34 means 0).
///
/// # Errors
/// [`CryptoError::BadPan`] for a PAN that is not 12..=19 digits or a PSN > 99.
pub fn derive_icc_master_key(
    imk: &SecretKey,
    pan: &str,
    psn: u8,
) -> Result<SecretKey, CryptoError> {
    if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) || psn > 99 {
        return Err(CryptoError::BadPan);
    }
    let mut digits: Vec<u8> = pan.bytes().map(|b| b - b'0').collect();
    digits.push(psn / 10);
    digits.push(psn % 10);
    let y: [u8; 16] = if pan.len() <= 16 {
        // Option A: rightmost 16 digits of PAN‖PSN, left-padded with zeros.
        let mut y = [0u8; 16];
        let take = digits.len().min(16);
        y[16 - take..].copy_from_slice(&digits[digits.len() - take..]);
        y
    } else {
        option_b_digits(&digits)
    };
    let mut block = [0u8; 8];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (y[2 * i] << 4) | y[2 * i + 1];
    }
    digits.zeroize();
    let left = tdes_encrypt(imk, block);
    let right = tdes_encrypt(imk, block.map(|b| !b));
    block.zeroize();
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&left);
    k[8..].copy_from_slice(&right);
    Ok(SecretKey(k).with_odd_parity())
}

/// EMV Book 2 A1.4.2 option B: SHA-1 over PAN‖PSN (BCD, left-padded to even length), then
/// the first 16 decimal digits of the hex digest, topped up with decimalised `a..f` digits.
fn option_b_digits(digits: &[u8]) -> [u8; 16] {
    let mut nibbles: Vec<u8> = Vec::with_capacity(digits.len() + 1);
    if digits.len() % 2 == 1 {
        nibbles.push(0);
    }
    nibbles.extend_from_slice(digits);
    let bcd: Vec<u8> = nibbles
        .chunks(2)
        .map(|c| (c[0] << 4) | c.get(1).copied().unwrap_or(0))
        .collect();
    let digest = Sha1::digest(&bcd);
    let hex_nibbles: Vec<u8> = digest.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
    let mut out = [0u8; 16];
    let mut n = 0;
    for &d in hex_nibbles.iter().filter(|d| **d < 10) {
        if n == 16 {
            break;
        }
        out[n] = d;
        n += 1;
    }
    for &d in hex_nibbles.iter().filter(|d| **d >= 10) {
        if n == 16 {
            break;
        }
        out[n] = d - 10;
        n += 1;
    }
    out
}

/// EMV common session key derivation (Book 2 A1.3.1): `SK = TDES(MK)[R with R[2]=F0] ‖
/// TDES(MK)[R with R[2]=0F]`, parity set odd.
pub fn derive_common_session_key(icc_mk: &SecretKey, r: [u8; 8]) -> SecretKey {
    let mut ra = r;
    ra[2] = 0xF0;
    let mut rb = r;
    rb[2] = 0x0F;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&tdes_encrypt(icc_mk, ra));
    k[8..].copy_from_slice(&tdes_encrypt(icc_mk, rb));
    SecretKey(k).with_odd_parity()
}

/// The key used for the application cryptogram of this CVN (session key, or the ICC master
/// key itself for CVN 10).
pub fn ac_session_key(cvn: Cvn, icc_mk: &SecretKey, atc: u16, un: [u8; 4]) -> SecretKey {
    let [a0, a1] = atc.to_be_bytes();
    match cvn {
        Cvn::Visa10 => icc_mk.clone(),
        Cvn::Visa18 | Cvn::EmvCommon => {
            derive_common_session_key(icc_mk, [a0, a1, 0, 0, 0, 0, 0, 0])
        }
        Cvn::Mastercard16 => {
            derive_common_session_key(icc_mk, [a0, a1, 0, 0, un[0], un[1], un[2], un[3]])
        }
    }
}

/// The key used for the ARPC of this CVN: the ICC master key for method 1 (Visa CVN 10,
/// Mastercard CVN 16), the AC session key for method 2.
pub fn arpc_key(cvn: Cvn, icc_mk: &SecretKey, atc: u16, un: [u8; 4]) -> SecretKey {
    match cvn.arpc_method() {
        ArpcMethod::Method1 => icc_mk.clone(),
        ArpcMethod::Method2 => ac_session_key(cvn, icc_mk, atc, un),
    }
}

/// The terminal/card data elements of the cryptogram input, in order, with their lengths:
/// the EMV Book 2 8.1.1 / Visa recommended minimum set.
pub const CRYPTOGRAM_INPUT_TAGS: [(u32, usize); 10] = [
    (0x9F02, 6),
    (0x9F03, 6),
    (0x9F1A, 2),
    (0x95, 5),
    (0x5F2A, 2),
    (0x9A, 3),
    (0x9C, 1),
    (0x9F37, 4),
    (0x82, 2),
    (0x9F36, 2),
];

/// Builds the cryptogram input for `cvn` from `src`: the [`CRYPTOGRAM_INPUT_TAGS`] values,
/// then the IAD part the scheme specifies (CVN 10: `9F10[3..7]`; CVN 16: `9F10[2..8]`;
/// CVN 18 / EmvCommon: all of `9F10`). Used by both card and issuer. The source is any
/// [`TagSource`] of the protocol crate: the card's data chained with its CDOL data
/// ([`emvbridge_protocol::emv::DolData`]), or the tag map of the ICC data the issuer got.
///
/// # Errors
/// [`CryptoError::MissingTag`] / [`CryptoError::BadLength`] naming the first bad tag.
pub fn cryptogram_input<S: TagSource + ?Sized>(cvn: Cvn, src: &S) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(64);
    for (tag, len) in CRYPTOGRAM_INPUT_TAGS {
        let v = src.get(Tag(tag)).ok_or(CryptoError::MissingTag(tag))?;
        if v.len() != len {
            return Err(CryptoError::BadLength(tag));
        }
        out.extend_from_slice(v);
    }
    let iad = src
        .get(Tag::ISSUER_APPLICATION_DATA)
        .ok_or(CryptoError::MissingTag(0x9F10))?;
    let part = match cvn {
        Cvn::Visa10 => iad.get(3..7),
        Cvn::Mastercard16 => iad.get(2..8),
        Cvn::Visa18 | Cvn::EmvCommon => (iad.len() <= 32).then_some(iad),
    };
    out.extend_from_slice(part.ok_or(CryptoError::BadLength(0x9F10))?);
    Ok(out)
}

/// The application cryptogram (ARQC, TC or AAC: same computation) over an assembled
/// cryptogram input, keyed with the ICC master key.
pub fn application_cryptogram(
    cvn: Cvn,
    icc_mk: &SecretKey,
    atc: u16,
    un: [u8; 4],
    input: &[u8],
) -> [u8; 8] {
    let sk = ac_session_key(cvn, icc_mk, atc, un);
    let padding = match cvn {
        Cvn::Visa10 => Padding::Method1,
        _ => Padding::Method2,
    };
    retail_mac(&sk, input, padding)
}

/// One-call ARQC for tools and the CLI: derives the ICC master key from the issuer master key
/// and PAN/PSN, then computes the cryptogram over `input` (as built by [`cryptogram_input`]).
///
/// # Errors
/// [`CryptoError::BadPan`] for a malformed PAN/PSN.
pub fn arqc(
    cvn: Cvn,
    imk: &SecretKey,
    pan: &str,
    psn: u8,
    atc: u16,
    un: [u8; 4],
    input: &[u8],
) -> Result<[u8; 8], CryptoError> {
    let mk = derive_icc_master_key(imk, pan, psn)?;
    Ok(application_cryptogram(cvn, &mk, atc, un, input))
}

/// ARPC method 1 (EMV Book 2 8.2.1): `TDES(key)[ARQC ⊕ (ARC‖000000000000)]`.
pub fn arpc_method1(key: &SecretKey, arqc: [u8; 8], arc: [u8; 2]) -> [u8; 8] {
    tdes_encrypt(key, xor8(arqc, [arc[0], arc[1], 0, 0, 0, 0, 0, 0]))
}

/// ARPC method 2 (EMV Book 2 8.2.2): retail MAC (padding 2) over `ARQC‖CSU‖prop`, first 4
/// bytes.
///
/// # Errors
/// [`CryptoError::PropDataTooLong`] if `prop` exceeds 8 bytes.
pub fn arpc_method2(
    key: &SecretKey,
    arqc: [u8; 8],
    csu: [u8; 4],
    prop: &[u8],
) -> Result<[u8; 4], CryptoError> {
    if prop.len() > 8 {
        return Err(CryptoError::PropDataTooLong);
    }
    let mut data = Vec::with_capacity(20);
    data.extend_from_slice(&arqc);
    data.extend_from_slice(&csu);
    data.extend_from_slice(prop);
    let mac = retail_mac(key, &data, Padding::Method2);
    Ok([mac[0], mac[1], mac[2], mac[3]])
}

/// Whether an authorisation response code means "approved" (`00`, `10`, `11`, `Y1`, `Y3`).
pub fn arc_is_approval(arc: [u8; 2]) -> bool {
    matches!(&arc, b"00" | b"10" | b"11" | b"Y1" | b"Y3")
}

/// Card status update for method 2: byte 2 bit 8 = "issuer approves online transaction"
/// (Visa VIS / EMV CCD CSU layout); everything else zero.
pub fn csu_for_arc(arc: [u8; 2]) -> [u8; 4] {
    if arc_is_approval(arc) {
        [0x00, 0x80, 0x00, 0x00]
    } else {
        [0x00, 0x00, 0x00, 0x00]
    }
}

/// Issuer authentication data (value of tag `91`) for `arc`, with the CVN's ARPC method:
/// method 1 → `ARPC(8)‖ARC(2)`, method 2 → `ARPC(4)‖CSU(4)` (no proprietary data).
pub fn issuer_authentication_data(
    cvn: Cvn,
    icc_mk: &SecretKey,
    atc: u16,
    un: [u8; 4],
    arqc: [u8; 8],
    arc: [u8; 2],
) -> Vec<u8> {
    let key = arpc_key(cvn, icc_mk, atc, un);
    match cvn.arpc_method() {
        ArpcMethod::Method1 => {
            let mut v = arpc_method1(&key, arqc, arc).to_vec();
            v.extend_from_slice(&arc);
            v
        }
        ArpcMethod::Method2 => {
            let csu = csu_for_arc(arc);
            // Cannot fail: no proprietary data.
            let arpc = arpc_method2(&key, arqc, csu, &[]).unwrap_or([0; 4]);
            let mut v = arpc.to_vec();
            v.extend_from_slice(&csu);
            v
        }
    }
}

/// Card-side check of tag `91` (EMV Book 3 10.9, issuer authentication). `arc` is the
/// response code the terminal passes in 8A. For method 2 the CSU approval bit must also agree
/// with `arc`. Comparison is constant-time over the ARPC bytes.
pub fn verify_issuer_authentication_data(
    cvn: Cvn,
    icc_mk: &SecretKey,
    atc: u16,
    un: [u8; 4],
    arqc: [u8; 8],
    arc: [u8; 2],
    data: &[u8],
) -> bool {
    let key = arpc_key(cvn, icc_mk, atc, un);
    match cvn.arpc_method() {
        ArpcMethod::Method1 => {
            if data.len() != 10 || data[8..10] != arc {
                return false;
            }
            ct_eq(&arpc_method1(&key, arqc, arc), &data[..8])
        }
        ArpcMethod::Method2 => {
            if !(8..=16).contains(&data.len()) {
                return false;
            }
            let mut csu = [0u8; 4];
            csu.copy_from_slice(&data[4..8]);
            let approved_bit = csu[1] & 0x80 != 0;
            if approved_bit != arc_is_approval(arc) {
                return false;
            }
            match arpc_method2(&key, arqc, csu, &data[8..]) {
                Ok(expected) => ct_eq(&expected, &data[..4]),
                Err(_) => false,
            }
        }
    }
}

/// Constant-time comparison of MACs and cryptograms; unequal lengths are simply unequal.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests;
