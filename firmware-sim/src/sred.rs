//! SRED (secure reading and exchange of data): how the reader hands clear card data to the
//! host only inside `FF7F`, and how the sandbox gateway gets it back.
//!
//! Scheme (vipa-protocol.md §4.4, §5.1): ANSI X9.24-1 TDES DUKPT under the ANSI test BDK
//! `0123456789ABCDEFFEDCBA9876543210`, initial KSN `FFFF9876543210E00000`. Each encryption
//! advances the KSN counter, derives the current key, applies the *data encryption variant*
//! (X9.24-1:2009 A.4.1, `key ⊕ 0000000000FF0000 0000000000FF0000`; the device's exact variant
//! and whether it adds the one-way step is \[GAP\] in the reference, so we use the plain variant)
//! and encrypts with TDES-CBC:
//!
//! ```text
//! FF7F { DFDF12 IV(8), DFDF11 KSN(10), DFDF10 ciphertext, DFDB0F 00000000 }
//! ```
//!
//! The plaintext is `57 track2 ‖ 5A PAN` as BER-TLV, zero-padded to the block size (EMV Book 3
//! Annex B3 lets a TLV reader skip `00` padding). The IV is an argument: no randomness here.
//!
//! The PAN travels as the protocol crate's [`Pan`] (masked in `Debug`, zeroized on drop).

use std::fmt;

use bytes::Bytes;
use emvbridge_protocol::emv::{Pan, Track2};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{tdes_decrypt, tdes_encrypt, SecretKey};

/// The ANSI X9.24 test base derivation key (public test material).
pub const TEST_BDK: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
];

/// The ANSI X9.24 test initial KSN (counter zero).
pub const TEST_INITIAL_KSN: [u8; 10] = [0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x00];

const TAG_SRED: Tag = Tag(0xFF7F);
const TAG_IV: Tag = Tag(0xDFDF12);
const TAG_KSN: Tag = Tag(0xDFDF11);
const TAG_CIPHERTEXT: Tag = Tag(0xDFDF10);
const TAG_STATUS: Tag = Tag(0xDFDB0F);
const TAG_TRACK2: Tag = Tag(0x57);
const TAG_PAN: Tag = Tag(0x5A);

/// Largest ciphertext we accept (the captures show 32 or 48 bytes).
pub const MAX_CIPHERTEXT_LEN: usize = 256;

/// The 21-bit transaction counter at the right of the KSN.
const COUNTER_MASK: u32 = 0x1F_FFFF;

/// SRED errors. No card data in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SredError {
    /// The `FF7F` content is not well-formed TLV.
    #[error("malformed sred container")]
    Malformed,
    /// A required `FF7F` element is absent or has the wrong length.
    #[error("missing or bad sred element {0}")]
    BadElement(&'static str),
    /// The decrypted data holds no usable PAN.
    #[error("no pan in sred data")]
    NoPan,
    /// The DUKPT counter ran out (more than 1 million encryptions).
    #[error("dukpt counter exhausted")]
    CounterExhausted,
    /// Clear data too large to encrypt.
    #[error("clear data too long")]
    TooLong,
}

/// What the gateway recovers from `FF7F`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClearCardData {
    /// The PAN (from `5A`, else from track 2).
    #[zeroize(skip)]
    pub pan: Pan,
    /// Track 2 equivalent data (tag `57` value), if present. Sensitive.
    pub track2: Vec<u8>,
    /// The KSN that was used (not secret).
    pub ksn: [u8; 10],
}

impl fmt::Debug for ClearCardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClearCardData")
            .field("pan", &self.pan)
            .field("track2", &"<redacted>")
            .field("ksn", &hex::encode_upper(self.ksn))
            .finish()
    }
}

/// ANSI X9.24-1 initial PIN encryption key (IPEK) from the BDK and any KSN of the device.
pub fn ipek(bdk: &SecretKey, ksn: &[u8; 10]) -> SecretKey {
    let mut base = [0u8; 8];
    base.copy_from_slice(&ksn[..8]);
    base[7] &= 0xE0;
    let left = tdes_encrypt(bdk, base);
    let mut variant = *bdk.expose();
    for i in [0, 1, 2, 3, 8, 9, 10, 11] {
        variant[i] ^= 0xC0;
    }
    let right = tdes_encrypt(&SecretKey::from_bytes(variant), base);
    variant.zeroize();
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&left);
    k[8..].copy_from_slice(&right);
    SecretKey::from_bytes(k)
}

/// X9.24-1 non-reversible key generation process on a 16-byte key and 8-byte KSN register.
fn non_reversible(key: &[u8; 16], data: [u8; 8]) -> [u8; 16] {
    fn half(key_left: &[u8], key_right: &[u8], data: [u8; 8]) -> [u8; 8] {
        let mut msg = [0u8; 8];
        for i in 0..8 {
            msg[i] = data[i] ^ key_right[i];
        }
        // Single DES with the left half, per X9.24-1 A.2 step 2.
        let k = SecretKey::from_bytes({
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(key_left);
            k[8..].copy_from_slice(key_left);
            k
        });
        let mut out = tdes_encrypt(&k, msg);
        for i in 0..8 {
            out[i] ^= key_right[i];
        }
        out
    }
    let right = half(&key[..8], &key[8..], data);
    let mut v = *key;
    for i in [0, 1, 2, 3, 8, 9, 10, 11] {
        v[i] ^= 0xC0;
    }
    let left = half(&v[..8], &v[8..], data);
    v.zeroize();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&left);
    out[8..].copy_from_slice(&right);
    out
}

/// The DUKPT current transaction key for `ksn` (X9.24-1 A.3, "future key" for the counter).
pub fn transaction_key(bdk: &SecretKey, ksn: &[u8; 10]) -> SecretKey {
    let mut key = *ipek(bdk, ksn).expose();
    let counter = u32::from_be_bytes([0, ksn[7], ksn[8], ksn[9]]) & COUNTER_MASK;
    let mut reg = [0u8; 8];
    reg.copy_from_slice(&ksn[2..10]);
    reg[5] &= 0xE0;
    reg[6] = 0;
    reg[7] = 0;
    let mut bit = 1u32 << 20;
    while bit != 0 {
        if counter & bit != 0 {
            let b = bit.to_be_bytes();
            reg[5] |= b[1];
            reg[6] |= b[2];
            reg[7] |= b[3];
            key = non_reversible(&key, reg);
        }
        bit >>= 1;
    }
    let out = SecretKey::from_bytes(key);
    key.zeroize();
    out
}

/// The data encryption key variant of a transaction key (X9.24-1:2009 A.4.1).
pub fn data_key_variant(key: &SecretKey) -> SecretKey {
    let mut k = *key.expose();
    k[5] ^= 0xFF;
    k[13] ^= 0xFF;
    let out = SecretKey::from_bytes(k);
    k.zeroize();
    out
}

fn cbc_encrypt(key: &SecretKey, iv: [u8; 8], data: &mut [u8]) {
    let mut chain = iv;
    for block in data.chunks_exact_mut(8) {
        for (b, c) in block.iter_mut().zip(chain) {
            *b ^= c;
        }
        let mut arr = [0u8; 8];
        arr.copy_from_slice(block);
        chain = tdes_encrypt(key, arr);
        block.copy_from_slice(&chain);
    }
}

fn cbc_decrypt(key: &SecretKey, iv: [u8; 8], data: &mut [u8]) {
    let mut chain = iv;
    for block in data.chunks_exact_mut(8) {
        let mut arr = [0u8; 8];
        arr.copy_from_slice(block);
        let mut plain = tdes_decrypt(key, arr);
        for (p, c) in plain.iter_mut().zip(chain) {
            *p ^= c;
        }
        chain = arr;
        block.copy_from_slice(&plain);
        plain.zeroize();
    }
}

/// The reader's SRED engine: a BDK-derived DUKPT counter. One per simulated reader.
#[derive(Debug)]
pub struct SredEncryptor {
    bdk: SecretKey,
    ksn: [u8; 10],
}

impl SredEncryptor {
    /// A reader injected from `bdk` with `initial_ksn` (counter bits normally zero).
    pub fn new(bdk: SecretKey, initial_ksn: [u8; 10]) -> Self {
        SredEncryptor {
            bdk,
            ksn: initial_ksn,
        }
    }

    /// The ANSI test BDK and KSN, as the captured UX300 uses.
    pub fn ansi_test() -> Self {
        Self::new(SecretKey::from_bytes(TEST_BDK), TEST_INITIAL_KSN)
    }

    /// The KSN of the last encryption (or the initial KSN before any).
    pub fn ksn(&self) -> [u8; 10] {
        self.ksn
    }

    /// Advances to the next valid counter: X9.24-1 skips counters with more than ten 1 bits.
    fn advance(&mut self) -> Result<(), SredError> {
        let mut c = u32::from_be_bytes([0, self.ksn[7], self.ksn[8], self.ksn[9]]) & COUNTER_MASK;
        loop {
            c += 1;
            if c > COUNTER_MASK {
                return Err(SredError::CounterExhausted);
            }
            if c.count_ones() <= 10 {
                break;
            }
        }
        let b = c.to_be_bytes();
        self.ksn[7] = (self.ksn[7] & 0xE0) | b[1];
        self.ksn[8] = b[2];
        self.ksn[9] = b[3];
        Ok(())
    }

    /// Encrypts track 2 (tag `57` value) and the PAN, returning the complete `FF7F` TLV
    /// (tag, length and content) ready to append to a template.
    ///
    /// # Errors
    /// [`SredError::CounterExhausted`], [`SredError::TooLong`] for track 2 over 19 bytes.
    pub fn encrypt(&mut self, pan: &Pan, track2: &[u8], iv: [u8; 8]) -> Result<Bytes, SredError> {
        if track2.len() > 19 {
            return Err(SredError::TooLong);
        }
        self.advance()?;
        let mut clear = TlvBuilder::new();
        clear.primitive(TAG_TRACK2, track2);
        let mut pan_bcd = pan.to_bcd();
        clear.primitive(TAG_PAN, &pan_bcd);
        pan_bcd.zeroize();
        let mut data = clear.into_inner().to_vec();
        while !data.len().is_multiple_of(8) {
            data.push(0);
        }
        let key = data_key_variant(&transaction_key(&self.bdk, &self.ksn));
        cbc_encrypt(&key, iv, &mut data);
        let mut out = TlvBuilder::new();
        out.constructed(TAG_SRED, |b| {
            b.primitive(TAG_IV, &iv);
            b.primitive(TAG_KSN, &self.ksn);
            b.primitive(TAG_CIPHERTEXT, &data);
            b.primitive(TAG_STATUS, &[0, 0, 0, 0]);
        });
        Ok(out.freeze())
    }
}

impl SredEncryptor {
    /// An online PIN block: ISO 9564-1 format 0 (PIN field XOR the PAN's 12 rightmost digits
    /// without the check digit), encrypted with the PIN variant of the next DUKPT key
    /// (X9.24-1:2009 A.4.1). Returns the block and its KSN.
    ///
    /// # Errors
    /// [`SredError::CounterExhausted`]; [`SredError::TooLong`] for a PIN outside 4-12 digits.
    pub fn pin_block(&mut self, pin: &str, pan: &Pan) -> Result<([u8; 8], [u8; 10]), SredError> {
        if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SredError::TooLong);
        }
        self.advance()?;
        let mut field = [0xFFu8; 8];
        let mut nibbles = [0xFu8; 16];
        nibbles[0] = 0;
        nibbles[1] = pin.len() as u8;
        for (i, d) in pin.bytes().enumerate() {
            nibbles[2 + i] = d - b'0';
        }
        for (i, b) in field.iter_mut().enumerate() {
            *b = nibbles[2 * i] << 4 | nibbles[2 * i + 1];
        }
        nibbles.zeroize();
        let digits = pan.reveal();
        let body = &digits[..digits.len().saturating_sub(1)];
        let tail = &body[body.len().saturating_sub(12)..];
        let mut pan_field = [0u8; 8];
        for (i, d) in tail.bytes().enumerate() {
            let n = 4 + i;
            pan_field[n / 2] |= (d - b'0') << if n % 2 == 0 { 4 } else { 0 };
        }
        for (f, p) in field.iter_mut().zip(pan_field) {
            *f ^= p;
        }
        let mut key = *transaction_key(&self.bdk, &self.ksn).expose();
        key[7] ^= 0xFF;
        key[15] ^= 0xFF;
        let pin_key = SecretKey::from_bytes(key);
        key.zeroize();
        let block = tdes_encrypt(&pin_key, field);
        field.zeroize();
        Ok((block, self.ksn))
    }
}

/// Decrypts SRED data under the ANSI test BDK. Accepts the `FF7F` content or the whole `FF7F`
/// TLV.
///
/// # Errors
/// [`SredError`] for malformed containers, missing elements or no PAN inside.
pub fn decrypt(ff7f_value: &[u8]) -> Result<ClearCardData, SredError> {
    decrypt_with(&SecretKey::from_bytes(TEST_BDK), ff7f_value)
}

/// [`decrypt`] with an explicit BDK.
///
/// # Errors
/// As [`decrypt`].
pub fn decrypt_with(bdk: &SecretKey, ff7f_value: &[u8]) -> Result<ClearCardData, SredError> {
    let content = match tlv::parse(ff7f_value).next() {
        Some(Ok(t)) if t.tag() == TAG_SRED => t.value(),
        _ => ff7f_value,
    };
    let (mut iv, mut ksn, mut ct) = (None, None, None);
    for item in tlv::parse(content) {
        let t = item.map_err(|_| SredError::Malformed)?;
        match t.tag() {
            TAG_IV => iv = Some(t.value()),
            TAG_KSN => ksn = Some(t.value()),
            TAG_CIPHERTEXT => ct = Some(t.value()),
            _ => {}
        }
    }
    let iv: [u8; 8] = iv
        .and_then(|v| v.try_into().ok())
        .ok_or(SredError::BadElement("iv"))?;
    let ksn: [u8; 10] = ksn
        .and_then(|v| v.try_into().ok())
        .ok_or(SredError::BadElement("ksn"))?;
    let ct = ct
        .filter(|c| !c.is_empty() && c.len() % 8 == 0 && c.len() <= MAX_CIPHERTEXT_LEN)
        .ok_or(SredError::BadElement("ciphertext"))?;
    let key = data_key_variant(&transaction_key(bdk, &ksn));
    let mut clear = ct.to_vec();
    cbc_decrypt(&key, iv, &mut clear);
    let result = extract(&clear, ksn);
    clear.zeroize();
    result
}

fn extract(clear: &[u8], ksn: [u8; 10]) -> Result<ClearCardData, SredError> {
    let (mut pan, mut track2) = (None, Vec::new());
    // Padding and garbage after the last object end the walk; what was read so far counts.
    for t in tlv::parse(clear).map_while(Result::ok) {
        match t.tag() {
            TAG_PAN => pan = Pan::from_bcd(t.value()).ok(),
            TAG_TRACK2 if t.value().len() <= 19 => track2 = t.value().to_vec(),
            _ => {}
        }
    }
    let pan = pan
        .or_else(|| Track2::from_bcd(&track2).ok().map(|t| t.pan()))
        .ok_or(SredError::NoPan)?;
    Ok(ClearCardData { pan, track2, ksn })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn ansi_x9_24_published_vectors() {
        let bdk = SecretKey::from_bytes(TEST_BDK);
        let ksn1: [u8; 10] = h("FFFF9876543210E00001").try_into().unwrap();
        assert_eq!(
            hex::encode_upper(ipek(&bdk, &ksn1).expose()),
            "6AC292FAA1315B4D858AB3A3D7D5933A"
        );
        // X9.24-1 Annex A test vectors: current keys for counters 1, 2 and 3 (PIN variant
        // published as 042666B49184CF5C68DE9628D0397B36 = key ⊕ 00..FF00..FF).
        let cases = [
            ("FFFF9876543210E00001", "042666B49184CFA368DE9628D0397BC9"),
            ("FFFF9876543210E00002", "C46551CEF9FD24B0AA9AD834130D3BC7"),
            ("FFFF9876543210E00003", "0DF3D9422ACA56E547676D07AD6BADFA"),
        ];
        for (ksn, key) in cases {
            let ksn: [u8; 10] = h(ksn).try_into().unwrap();
            assert_eq!(hex::encode_upper(transaction_key(&bdk, &ksn).expose()), key);
        }
    }

    #[test]
    fn counter_skips_values_with_more_than_ten_bits() {
        let mut e = SredEncryptor::ansi_test();
        e.ksn[7] = 0xE0;
        e.ksn[8] = 0x03;
        e.ksn[9] = 0xFE; // 9 bits set; next 0x3FF has 10, then 0x400 has 1.
        e.advance().unwrap();
        assert_eq!(&e.ksn[7..], &[0xE0, 0x03, 0xFF]);
        e.ksn[8] = 0x07;
        e.ksn[9] = 0xFE; // 10 bits; 0x7FF has 11 → skipped to 0x800.
        e.advance().unwrap();
        assert_eq!(&e.ksn[7..], &[0xE0, 0x08, 0x00]);
    }

    #[test]
    fn encrypt_then_decrypt_round_trip() {
        let mut e = SredEncryptor::ansi_test();
        let pan = Pan::parse("4111111111111111").unwrap();
        let track2 = h("4111111111111111D2512201123456789F");
        let iv = [1, 2, 3, 4, 5, 6, 7, 8];
        let ff7f = e.encrypt(&pan, &track2, iv).unwrap();
        assert_eq!(&ff7f[..2], &[0xFF, 0x7F]);
        assert_eq!(e.ksn(), *b"\xFF\xFF\x98\x76\x54\x32\x10\xE0\x00\x01");
        // The clear PAN must not appear in the container.
        assert!(!ff7f.windows(8).any(|w| w == pan.to_bcd().as_slice()));
        let ct = tlv::find(&ff7f, TAG_CIPHERTEXT).unwrap();
        assert_eq!(ct.value().len() % 8, 0);
        let whole = decrypt(&ff7f).unwrap();
        assert_eq!(whole.pan.reveal(), "4111111111111111");
        assert!(!format!("{whole:?}").contains("4111111111111111"));
        assert_eq!(whole.track2, track2);
        assert_eq!(whole.ksn, e.ksn());
        let content = tlv::find(&ff7f, TAG_SRED).unwrap().value().to_vec();
        assert_eq!(decrypt(&content).unwrap().pan.reveal(), "4111111111111111");
        // A second encryption uses a new KSN and so a different ciphertext.
        let second = e.encrypt(&pan, &track2, iv).unwrap();
        assert_ne!(
            tlv::find(&second, TAG_CIPHERTEXT).unwrap().value(),
            ct.value()
        );
        // A wrong BDK yields garbage without a PAN (or a different one), never a panic.
        let other = decrypt_with(&SecretKey::from_bytes([0x11; 16]), &ff7f);
        assert!(other
            .map(|c| c.pan.reveal() != "4111111111111111")
            .unwrap_or(true));
    }

    #[test]
    fn malformed_containers_are_errors() {
        assert_eq!(decrypt(&[]).unwrap_err(), SredError::BadElement("iv"));
        assert_eq!(
            decrypt(&[0xDF, 0xDF, 0x12, 0x09]).unwrap_err(),
            SredError::Malformed
        );
        let mut b = TlvBuilder::new();
        b.primitive(TAG_IV, &[0; 8])
            .primitive(TAG_KSN, &[0; 10])
            .primitive(TAG_CIPHERTEXT, &[0; 7]);
        assert_eq!(
            decrypt(&b.freeze()).unwrap_err(),
            SredError::BadElement("ciphertext")
        );
    }

    proptest::proptest! {
        #[test]
        fn decrypt_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decrypt(&data);
        }
    }
}
