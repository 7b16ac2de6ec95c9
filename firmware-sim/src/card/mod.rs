//! The simulated ICC: a card profile plus mutable state (ATC, PIN try counter, last
//! cryptogram), answering the EMV commands a kernel sends (Book 3 §6.5) as Rust calls:
//! SELECT, GET PROCESSING OPTIONS, READ RECORD (all records at once), VERIFY, GENERATE AC
//! 1 and 2, EXTERNAL AUTHENTICATE and issuer script commands.
//!
//! Card risk management is deliberately simple: the card asks to go online (ARQC) unless the
//! terminal asks for an AAC or the profile says `offline_decline`; at the second GENERATE AC
//! it approves (TC) only if the terminal asks for a TC and issuer authentication did not fail.
//!
//! Our CVR layout (in `9F10`, see [`Cvn::issuer_application_data`]), byte 1: b8-7 second GAC
//! type (00 AAC, 01 TC, 10 not requested), b6-5 first GAC type (00 AAC, 01 TC, 10 ARQC),
//! b4 issuer authentication failed, b3 offline PIN performed, b2 offline PIN failed, b1
//! unable to go online. Byte 2: b8 PIN try limit exceeded, b7 issuer authentication
//! performed. Byte 3: high nibble = script commands processed, b1 = a script command failed.

pub mod profile;

use bytes::Bytes;
use emvbridge_protocol::emv::DolData;
use emvbridge_protocol::tlv::{Tag, TlvBuilder};

use crate::crypto::{self, Cvn, SecretKey};
pub use profile::{
    all_profiles, profile, profile_names, shipped_profiles, AppProfile, CardProfile, ProfileError,
    CDOL1, CDOL2, PROFILE_FILES,
};

/// Status words a card command can fail with (ISO 7816-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// `6A82`: application not found.
    #[error("application not found")]
    NotFound,
    /// `6283`: selected file invalidated (application blocked).
    #[error("application blocked")]
    Blocked,
    /// `6985`: conditions of use not satisfied (command out of order).
    #[error("conditions of use not satisfied")]
    ConditionsNotSatisfied,
    /// `6700`/`6A80`: wrong length or bad data.
    #[error("wrong data")]
    WrongData,
    /// `6300`: authentication failed (EXTERNAL AUTHENTICATE).
    #[error("authentication failed")]
    AuthenticationFailed,
}

impl CardError {
    /// The ISO 7816 status word.
    pub fn sw(self) -> u16 {
        match self {
            CardError::NotFound => 0x6A82,
            CardError::Blocked => 0x6283,
            CardError::ConditionsNotSatisfied => 0x6985,
            CardError::WrongData => 0x6A80,
            CardError::AuthenticationFailed => 0x6300,
        }
    }
}

/// Result of VERIFY (offline plaintext PIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinVerify {
    /// `9000`.
    Ok,
    /// `63Cx`: wrong PIN, `x` tries left (0 = now blocked).
    Wrong {
        /// Tries left.
        tries_left: u8,
    },
    /// `6983`: PIN blocked (try counter already 0).
    Blocked,
    /// `6A81`/`6D00`: the card has no offline PIN.
    NotSupported,
}

/// Cryptogram type requested in / returned by GENERATE AC (Book 3 Table 12/14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptogramType {
    /// `00`: application authentication cryptogram (decline).
    Aac,
    /// `40`: transaction certificate (approve).
    Tc,
    /// `80`: authorisation request cryptogram (go online).
    Arqc,
}

impl CryptogramType {
    /// The CID (9F27) value.
    pub fn cid(self) -> u8 {
        match self {
            CryptogramType::Aac => 0x00,
            CryptogramType::Tc => 0x40,
            CryptogramType::Arqc => 0x80,
        }
    }
    fn cvr_bits(self) -> u8 {
        match self {
            CryptogramType::Aac => 0b00,
            CryptogramType::Tc => 0b01,
            CryptogramType::Arqc => 0b10,
        }
    }
}

/// GENERATE AC response (format 2 contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GacResponse {
    /// What the card returned.
    pub cryptogram_type: CryptogramType,
    /// ATC (9F36).
    pub atc: u16,
    /// Application cryptogram (9F26).
    pub cryptogram: [u8; 8],
    /// Issuer application data (9F10).
    pub iad: Vec<u8>,
}

impl GacResponse {
    /// CID (9F27).
    pub fn cid(&self) -> u8 {
        self.cryptogram_type.cid()
    }
}

/// Outcome of one issuer script command (for 9F5B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptCommandResult {
    /// Executed, `9000`.
    Ok,
    /// Bad MAC, unknown command or failed.
    Failed,
}

/// Script command MAC: first 4 bytes of the retail MAC (padding 2) over
/// `CLA INS P1 P2 Lc ‖ ATC ‖ ARQC ‖ data`, keyed with the AC session key (a simplification
/// of the secure-messaging key of Book 2 §9; documented, consistent with [`crate::issuer`]).
pub fn script_mac(
    cvn: Cvn,
    icc_mk: &SecretKey,
    atc: u16,
    un: [u8; 4],
    arqc: [u8; 8],
    header_and_data: &[u8],
) -> [u8; 4] {
    let sk = crypto::ac_session_key(cvn, icc_mk, atc, un);
    let mut data = Vec::with_capacity(header_and_data.len() + 10);
    let (hdr, body) = header_and_data.split_at(header_and_data.len().min(5));
    data.extend_from_slice(hdr);
    data.extend_from_slice(&atc.to_be_bytes());
    data.extend_from_slice(&arqc);
    data.extend_from_slice(body);
    let m = crypto::retail_mac(&sk, &data, crypto::Padding::Method2);
    [m[0], m[1], m[2], m[3]]
}

/// The card in the reader. Create from a profile; keep it between transactions so the ATC
/// and PIN try counter persist.
#[derive(Debug, Clone)]
pub struct Card {
    profile: CardProfile,
    icc_mk: SecretKey,
    atc: u16,
    pin_tries: u8,
    selected: Option<usize>,
    blocked: bool,
    cvr: [u8; 6],
    last_arqc: Option<([u8; 8], [u8; 4])>,
    issuer_auth: Option<bool>,
    script_counter: u8,
}

impl Card {
    /// A fresh card for `profile` (derives its ICC master key from the issuer key).
    pub fn new(profile: CardProfile) -> Card {
        // Profiles are validated on load, so the PAN is well-formed.
        let icc_mk = crypto::derive_icc_master_key(&profile.imk, profile.pan.reveal(), profile.psn)
            .unwrap_or_else(|_| SecretKey::from_bytes([0; 16]));
        let pin_tries = profile.pin.as_ref().map_or(0, |(_, t)| *t);
        Card {
            atc: profile.atc,
            blocked: profile.blocked,
            icc_mk,
            pin_tries,
            profile,
            selected: None,
            cvr: [0; 6],
            last_arqc: None,
            issuer_auth: None,
            script_counter: 0,
        }
    }

    /// A fresh card from a shipped profile name (`visa-cvn10`, ...).
    pub fn from_profile(name: &str) -> Option<Card> {
        profile::profile(name).map(Card::new)
    }

    /// The profile.
    pub fn profile(&self) -> &CardProfile {
        &self.profile
    }

    /// Current ATC (last one used).
    pub fn atc(&self) -> u16 {
        self.atc
    }

    /// PIN try counter (9F17), 0 if no offline PIN.
    pub fn pin_try_counter(&self) -> u8 {
        self.pin_tries
    }

    /// The PSE/PPSE directory: (AID, label, priority indicator) of each application.
    pub fn directory(&self) -> Vec<(Vec<u8>, String, u8)> {
        self.profile
            .apps
            .iter()
            .map(|a| {
                (
                    hex::decode(&a.aid).unwrap_or_default(),
                    a.label.clone(),
                    a.priority,
                )
            })
            .collect()
    }

    /// SELECT by AID (exact match). Returns the FCI template `6F`.
    ///
    /// # Errors
    /// [`CardError::NotFound`], [`CardError::Blocked`] (`6283`).
    pub fn select(&mut self, aid: &[u8]) -> Result<Bytes, CardError> {
        let idx = self
            .profile
            .apps
            .iter()
            .position(|a| hex::decode(&a.aid).map(|v| v == aid).unwrap_or(false))
            .ok_or(CardError::NotFound)?;
        if self.blocked {
            self.selected = None;
            return Err(CardError::Blocked);
        }
        self.selected = Some(idx);
        self.cvr = [0; 6];
        self.last_arqc = None;
        self.issuer_auth = None;
        self.script_counter = 0;
        let app = &self.profile.apps[idx];
        let mut b = TlvBuilder::new();
        b.constructed(Tag(0x6F), |b| {
            b.primitive(Tag(0x84), aid);
            b.constructed(Tag(0xA5), |b| {
                b.primitive(Tag(0x50), app.label.as_bytes());
                b.primitive(Tag(0x87), &[app.priority]);
                b.primitive(Tag(0x9F12), app.preferred_name.as_bytes());
            });
        });
        Ok(b.freeze())
    }

    /// GET PROCESSING OPTIONS: returns (AIP, AFL). Starts a transaction.
    ///
    /// # Errors
    /// [`CardError::ConditionsNotSatisfied`] if no application is selected.
    pub fn get_processing_options(&mut self) -> Result<([u8; 2], Vec<u8>), CardError> {
        self.selected.ok_or(CardError::ConditionsNotSatisfied)?;
        // One SFI 1 record 1, not used for offline data authentication.
        Ok((self.profile.aip, vec![0x08, 0x01, 0x01, 0x00]))
    }

    /// READ RECORD of every record in the AFL, as one TLV buffer (the `70` contents).
    ///
    /// # Errors
    /// [`CardError::ConditionsNotSatisfied`] if no application is selected.
    pub fn read_records(&self) -> Result<Bytes, CardError> {
        let idx = self.selected.ok_or(CardError::ConditionsNotSatisfied)?;
        let app = &self.profile.apps[idx];
        let p = &self.profile;
        let mut b = TlvBuilder::new();
        b.primitive(Tag(0x57), &p.track2());
        b.primitive(Tag(0x5A), &p.pan.to_bcd());
        b.primitive(Tag(0x5F24), &p.expiry);
        b.primitive(Tag(0x5F25), &p.effective);
        b.primitive(Tag(0x5F28), &[0x08, 0x40]);
        b.primitive(Tag(0x5F30), &[0x02, 0x01]);
        b.primitive(Tag(0x5F34), &p.psn_bcd());
        b.primitive(Tag(0x8C), CDOL1);
        b.primitive(Tag(0x8D), CDOL2);
        b.primitive(Tag(0x8E), &p.cvm_list);
        b.primitive(Tag(0x9F07), &p.auc);
        b.primitive(Tag(0x9F08), &[0x00, 0x8C]);
        b.primitive(Tag(0x9F0D), &p.iac[0]);
        b.primitive(Tag(0x9F0E), &p.iac[1]);
        b.primitive(Tag(0x9F0F), &p.iac[2]);
        b.primitive(Tag(0x9F42), &[0x08, 0x40]);
        b.primitive(Tag(0x9F12), app.preferred_name.as_bytes());
        Ok(b.freeze())
    }

    /// VERIFY with a plaintext offline PIN (Book 3 §6.5.12).
    pub fn verify_pin(&mut self, pin: &str) -> PinVerify {
        let Some((expected, _)) = &self.profile.pin else {
            return PinVerify::NotSupported;
        };
        self.cvr[0] |= 0x04;
        if self.pin_tries == 0 {
            self.cvr[0] |= 0x02;
            self.cvr[1] |= 0x80;
            return PinVerify::Blocked;
        }
        let ok = crypto::ct_eq(expected.as_bytes(), pin.as_bytes());
        if ok {
            self.pin_tries = self.profile.pin.as_ref().map_or(0, |(_, t)| *t);
            self.cvr[0] &= !0x02;
            PinVerify::Ok
        } else {
            self.pin_tries -= 1;
            self.cvr[0] |= 0x02;
            if self.pin_tries == 0 {
                self.cvr[1] |= 0x80;
            }
            PinVerify::Wrong {
                tries_left: self.pin_tries,
            }
        }
    }

    /// GENERATE AC. `first` selects the first or second command; `cdol_data` is the data
    /// the terminal built from CDOL1/CDOL2.
    ///
    /// # Errors
    /// [`CardError::WrongData`] if `cdol_data` does not match the CDOL;
    /// [`CardError::ConditionsNotSatisfied`] out of order.
    pub fn generate_ac(
        &mut self,
        first: bool,
        requested: CryptogramType,
        cdol_data: &[u8],
    ) -> Result<GacResponse, CardError> {
        self.selected.ok_or(CardError::ConditionsNotSatisfied)?;
        let dol = if first { CDOL1 } else { CDOL2 };
        // The terminal built the data from our CDOL (EMV Book 3 §5.4): one field per entry.
        let cdol = DolData::new(dol, cdol_data).map_err(|_| CardError::WrongData)?;
        let result = if first {
            self.atc = self
                .atc
                .checked_add(1)
                .ok_or(CardError::ConditionsNotSatisfied)?;
            match requested {
                _ if self.profile.offline_decline => CryptogramType::Aac,
                CryptogramType::Aac => CryptogramType::Aac,
                // Card risk management of an offline-capable card accepts the terminal's TC.
                CryptogramType::Tc if self.profile.offline_capable => CryptogramType::Tc,
                _ => CryptogramType::Arqc,
            }
        } else {
            let arc = cdol
                .value(Tag::AUTHORISATION_RESPONSE_CODE)
                .and_then(|v| <[u8; 2]>::try_from(v).ok())
                .unwrap_or(*b"Z3");
            if self.last_arqc.is_none() {
                return Err(CardError::ConditionsNotSatisfied);
            }
            if arc == *b"Y3" || arc == *b"Z3" {
                self.cvr[0] |= 0x01;
            }
            let auth_failed = self.issuer_auth == Some(false);
            let online = !(arc == *b"Y3" || arc == *b"Z3");
            let auth_missing =
                online && self.issuer_auth.is_none() && self.profile.aip[0] & 0x04 != 0;
            match requested {
                CryptogramType::Tc
                    if crypto::arc_is_approval(arc) && !auth_failed && !auth_missing =>
                {
                    CryptogramType::Tc
                }
                _ => CryptogramType::Aac,
            }
        };
        if first {
            self.cvr[0] = (self.cvr[0] & 0b1100_1111) | (result.cvr_bits() << 4) | 0x80;
        } else {
            self.cvr[0] = (self.cvr[0] & 0b0011_1111) | (result.cvr_bits() << 6);
        }
        self.cvr[2] = (self.cvr[2] & 0x0F) | (self.script_counter.min(15) << 4);
        let iad = self.profile.cvn.issuer_application_data(self.cvr);
        let aip = self.profile.aip;
        let atc = self.atc.to_be_bytes();
        // The card's own data first, then the terminal data of the CDOL (CDOL2 has no 9F03
        // etc. of its own only if a profile changes it; ours carry them all).
        let card_data: [(Tag, &[u8]); 3] = [
            (Tag::AIP, &aip),
            (Tag::ATC, &atc),
            (Tag::ISSUER_APPLICATION_DATA, &iad),
        ];
        let src = (&card_data[..], cdol);
        let input =
            crypto::cryptogram_input(self.profile.cvn, &src).map_err(|_| CardError::WrongData)?;
        let un: [u8; 4] = cdol
            .value(Tag::UNPREDICTABLE_NUMBER)
            .and_then(|v| v.try_into().ok())
            .ok_or(CardError::WrongData)?;
        let ac =
            crypto::application_cryptogram(self.profile.cvn, &self.icc_mk, self.atc, un, &input);
        if first && result == CryptogramType::Arqc {
            self.last_arqc = Some((ac, un));
        }
        if !first {
            self.last_arqc = None;
        }
        Ok(GacResponse {
            cryptogram_type: result,
            atc: self.atc,
            cryptogram: ac,
            iad,
        })
    }

    /// EXTERNAL AUTHENTICATE with the issuer authentication data (tag `91` value) and the ARC
    /// the terminal will pass in 8A (Book 3 §6.5.4, Book 2 §8.2).
    ///
    /// # Errors
    /// [`CardError::AuthenticationFailed`] (`6300`) when the ARPC does not verify;
    /// [`CardError::ConditionsNotSatisfied`] when no ARQC is outstanding.
    pub fn external_authenticate(&mut self, data91: &[u8], arc: [u8; 2]) -> Result<(), CardError> {
        let (arqc, un) = self.last_arqc.ok_or(CardError::ConditionsNotSatisfied)?;
        let ok = !self.profile.issuer_auth_fail
            && crypto::verify_issuer_authentication_data(
                self.profile.cvn,
                &self.icc_mk,
                self.atc,
                un,
                arqc,
                arc,
                data91,
            );
        self.issuer_auth = Some(ok);
        self.cvr[1] |= 0x40;
        if ok {
            Ok(())
        } else {
            self.cvr[0] |= 0x08;
            Err(CardError::AuthenticationFailed)
        }
    }

    /// Executes one issuer script command (the `86` value: `CLA INS P1 P2 Lc data MAC(4)`),
    /// checking its MAC ([`script_mac`]). Known commands: `84 24` PIN change/unblock (resets
    /// the PIN try counter), `84 1E` application block, `84 18` application unblock.
    pub fn script_command(&mut self, command: &[u8]) -> ScriptCommandResult {
        self.script_counter = self.script_counter.saturating_add(1);
        let res = self.run_script_command(command);
        if res == ScriptCommandResult::Failed {
            self.cvr[2] |= 0x01;
        }
        res
    }

    fn run_script_command(&mut self, command: &[u8]) -> ScriptCommandResult {
        let Some(&(arqc, un)) = self.last_arqc.as_ref() else {
            return ScriptCommandResult::Failed;
        };
        if command.len() < 9 || usize::from(command[4]) + 5 != command.len() || command[4] < 4 {
            return ScriptCommandResult::Failed;
        }
        let (body, mac) = command.split_at(command.len() - 4);
        let mut hdr = body.to_vec();
        hdr[4] -= 4;
        let expect = script_mac(self.profile.cvn, &self.icc_mk, self.atc, un, arqc, &hdr);
        if !crypto::ct_eq(&expect, mac) {
            return ScriptCommandResult::Failed;
        }
        match (command[0], command[1]) {
            (0x84, 0x24) => {
                self.pin_tries = self.profile.pin.as_ref().map_or(0, |(_, t)| *t);
                ScriptCommandResult::Ok
            }
            (0x84, 0x1E) => {
                self.blocked = true;
                ScriptCommandResult::Ok
            }
            (0x84, 0x18) => {
                self.blocked = false;
                ScriptCommandResult::Ok
            }
            _ => ScriptCommandResult::Failed,
        }
    }
}
