//! Card profiles: data files in `firmware-sim/cards/*.toml`, compiled into the binary with
//! `include_str!`, so the simulator needs no files at run time.
//!
//! A file gives the card's identity (PAN, PSN, dates, CVN, issuer master key, ATC, PIN,
//! behaviour flags) and its applications; everything else (AIP, CDOLs, CVM list, AUC, IACs)
//! has a default here that a file may override with hex. The issuer master keys are public
//! test keys, fine to ship.

use emvbridge_protocol::emv::{numeric, Pan, Track2};
use serde::Deserialize;

use crate::crypto::{Cvn, SecretKey};

/// One application on a card (one AID).
#[derive(Debug, Clone, Deserialize)]
pub struct AppProfile {
    /// AID (tag `4F`/`84`), hex.
    pub aid: String,
    /// Application label (tag `50`).
    pub label: String,
    /// Application preferred name (tag `9F12`).
    pub preferred_name: String,
    /// Application priority indicator (tag `87`): low nibble = priority, bit 8 = cardholder
    /// confirmation required.
    pub priority: u8,
}

/// A card profile as stored in the data file. Hex fields are validated by [`CardProfile::load`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    description: String,
    pan: String,
    psn: u8,
    expiry: String,
    effective: String,
    cvn: Cvn,
    imk: String,
    atc: u16,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    pin_tries: Option<u8>,
    #[serde(default)]
    offline_decline: bool,
    #[serde(default)]
    offline_capable: bool,
    #[serde(default)]
    floor_limit: Option<u64>,
    #[serde(default)]
    issuer_auth_fail: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    aip: Option<String>,
    #[serde(default)]
    cvm_list: Option<String>,
    #[serde(default)]
    iac_default: Option<String>,
    #[serde(default)]
    iac_denial: Option<String>,
    #[serde(default)]
    iac_online: Option<String>,
    #[serde(default)]
    auc: Option<String>,
    #[serde(default)]
    service_code: Option<String>,
    app: Vec<AppProfile>,
}

/// A validated card profile. `Debug` masks the PAN and hides the key.
#[derive(Debug, Clone)]
pub struct CardProfile {
    /// Profile name, e.g. `visa-cvn10`.
    pub name: String,
    /// One-line description.
    pub description: String,
    /// The PAN (masked in `Debug`).
    pub pan: Pan,
    /// PAN sequence number (5F34).
    pub psn: u8,
    /// Expiry date YYMMDD (5F24), BCD.
    pub expiry: [u8; 3],
    /// Effective date YYMMDD (5F25), BCD.
    pub effective: [u8; 3],
    /// Cryptogram version.
    pub cvn: Cvn,
    /// Issuer master key for application cryptograms (public test key).
    pub imk: SecretKey,
    /// ATC of the first transaction minus one.
    pub atc: u16,
    /// Offline PIN and its try limit, if the card supports offline PIN.
    pub pin: Option<(String, u8)>,
    /// Card risk management always declines (AAC at the first GENERATE AC).
    pub offline_decline: bool,
    /// The card passes offline data authentication (simulated: the kernel records ODA as
    /// performed and successful) so that, below the floor limit and with IACs that allow it,
    /// it can be approved offline (TC at the first GENERATE AC, ARC Y1).
    pub offline_capable: bool,
    /// The reader's floor limit (minor units) for this card's AID, overriding the terminal's
    /// (EMV terminal parameters are configured per AID).
    pub floor_limit: Option<u64>,
    /// Issuer authentication always fails.
    pub issuer_auth_fail: bool,
    /// The application(s) are blocked (SELECT answers 6283).
    pub blocked: bool,
    /// AIP (82).
    pub aip: [u8; 2],
    /// CVM list (8E).
    pub cvm_list: Vec<u8>,
    /// IAC default / denial / online (9F0D / 9F0E / 9F0F).
    pub iac: [[u8; 5]; 3],
    /// Application usage control (9F07).
    pub auc: [u8; 2],
    /// Track 2 service code, 3 digits.
    pub service_code: String,
    /// The applications.
    pub apps: Vec<AppProfile>,
}

/// Why a profile file was rejected (these are our own shipped files, so this is a test failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// TOML syntax or schema error.
    #[error("profile syntax: {0}")]
    Syntax(String),
    /// A field has a bad value.
    #[error("profile field {0} invalid")]
    Field(&'static str),
}

/// CDOL1 (8C) of every profile: the cryptogram-input terminal data plus 9F35 and 9F34.
pub const CDOL1: &[u8] = &[
    0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F, 0x1A, 0x02, 0x95, 0x05, 0x5F, 0x2A, 0x02, 0x9A, 0x03,
    0x9C, 0x01, 0x9F, 0x37, 0x04, 0x9F, 0x35, 0x01, 0x9F, 0x34, 0x03,
];
/// CDOL2 (8D): the ARC first, then the same terminal data (the TVR may have changed).
pub const CDOL2: &[u8] = &[
    0x8A, 0x02, 0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F, 0x1A, 0x02, 0x95, 0x05, 0x5F, 0x2A, 0x02,
    0x9A, 0x03, 0x9C, 0x01, 0x9F, 0x37, 0x04,
];

fn hex_n<const N: usize>(
    s: Option<&str>,
    default: [u8; N],
    field: &'static str,
) -> Result<[u8; N], ProfileError> {
    match s {
        None => Ok(default),
        Some(s) => {
            let mut out = [0u8; N];
            hex::decode_to_slice(s, &mut out).map_err(|_| ProfileError::Field(field))?;
            Ok(out)
        }
    }
}

/// A `YYMMDD` text field as the `n6` value of `5F24`/`5F25`.
fn bcd_date(s: &str, field: &'static str) -> Result<[u8; 3], ProfileError> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProfileError::Field(field));
    }
    let mut out = [0u8; 3];
    let n: u64 = s.parse().map_err(|_| ProfileError::Field(field))?;
    numeric::u64_to_bcd(n, &mut out).map_err(|_| ProfileError::Field(field))?;
    Ok(out)
}

impl CardProfile {
    /// Parses and validates a profile file's text.
    ///
    /// # Errors
    /// [`ProfileError`] naming the bad field.
    pub fn load(text: &str) -> Result<CardProfile, ProfileError> {
        let f: ProfileFile =
            toml::from_str(text).map_err(|e| ProfileError::Syntax(e.message().to_owned()))?;
        // 12 to 19 digits: the ICC master key derivation (EMV Book 2 A1.4) needs at least 12.
        let pan = Pan::parse(&f.pan)
            .ok()
            .filter(|p| p.len() >= 12)
            .ok_or(ProfileError::Field("pan"))?;
        if f.psn > 99 {
            return Err(ProfileError::Field("psn"));
        }
        let imk = SecretKey::from_hex(&f.imk).map_err(|_| ProfileError::Field("imk"))?;
        let pin = match (f.pin, f.pin_tries) {
            (Some(p), tries)
                if (4..=12).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some((p, tries.unwrap_or(3)))
            }
            (None, None) => None,
            _ => return Err(ProfileError::Field("pin")),
        };
        let cvm_list = match f.cvm_list {
            None => vec![0, 0, 0, 0, 0, 0, 0, 0, 0x1E, 0x03, 0x1F, 0x00],
            Some(s) => hex::decode(s).map_err(|_| ProfileError::Field("cvm_list"))?,
        };
        if cvm_list.len() < 8 || cvm_list.len() % 2 != 0 {
            return Err(ProfileError::Field("cvm_list"));
        }
        let service_code = f.service_code.unwrap_or_else(|| "201".to_owned());
        if service_code.len() != 3 || !service_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProfileError::Field("service_code"));
        }
        if f.app.is_empty() {
            return Err(ProfileError::Field("app"));
        }
        for a in &f.app {
            let ok = hex::decode(&a.aid)
                .map(|v| (5..=16).contains(&v.len()))
                .unwrap_or(false);
            if !ok || a.label.len() > 16 || a.preferred_name.len() > 16 {
                return Err(ProfileError::Field("app"));
            }
        }
        Ok(CardProfile {
            name: f.name,
            description: f.description,
            pan,
            psn: f.psn,
            expiry: bcd_date(&f.expiry, "expiry")?,
            effective: bcd_date(&f.effective, "effective")?,
            cvn: f.cvn,
            imk,
            atc: f.atc,
            pin,
            offline_decline: f.offline_decline,
            offline_capable: f.offline_capable,
            floor_limit: f.floor_limit,
            issuer_auth_fail: f.issuer_auth_fail,
            blocked: f.blocked,
            aip: hex_n(f.aip.as_deref(), [0x1C, 0x00], "aip")?,
            cvm_list,
            iac: [
                hex_n(
                    f.iac_default.as_deref(),
                    [0xF0, 0x40, 0x00, 0x80, 0x00],
                    "iac_default",
                )?,
                hex_n(
                    f.iac_denial.as_deref(),
                    [0x00, 0x10, 0x00, 0x00, 0x00],
                    "iac_denial",
                )?,
                hex_n(
                    f.iac_online.as_deref(),
                    [0xF0, 0x40, 0x00, 0x80, 0x00],
                    "iac_online",
                )?,
            ],
            auc: hex_n(f.auc.as_deref(), [0xFF, 0x00], "auc")?,
            service_code,
            apps: f.app,
        })
    }

    /// Track 2 equivalent data (tag `57`): `PAN D YYMM service-code discretionary F`.
    pub fn track2(&self) -> Vec<u8> {
        let mut text = format!(
            "{}D{}{}000001234",
            self.pan.reveal(),
            hex::encode(&self.expiry[..2]),
            self.service_code
        );
        // `load` checked every part, so the track always reads.
        let out = Track2::from_ascii(&text)
            .map(|t| t.to_bcd())
            .unwrap_or_default();
        zeroize::Zeroize::zeroize(&mut text);
        out
    }

    /// The PAN sequence number as the `n2` value of `5F34`.
    pub fn psn_bcd(&self) -> [u8; 1] {
        let mut out = [0u8; 1];
        // `load` keeps the PSN within 0..=99, which always fits.
        let _ = numeric::u64_to_bcd(u64::from(self.psn), &mut out);
        out
    }
}

/// The shipped profiles: (name, file text).
pub const PROFILE_FILES: &[(&str, &str)] = &[
    ("visa-cvn10", include_str!("../../cards/visa-cvn10.toml")),
    ("visa-cvn18", include_str!("../../cards/visa-cvn18.toml")),
    ("mc-cvn16", include_str!("../../cards/mc-cvn16.toml")),
    ("amex", include_str!("../../cards/amex.toml")),
    ("discover", include_str!("../../cards/discover.toml")),
    ("two-app", include_str!("../../cards/two-app.toml")),
    ("online-pin", include_str!("../../cards/online-pin.toml")),
    ("offline-pin", include_str!("../../cards/offline-pin.toml")),
    ("expired", include_str!("../../cards/expired.toml")),
    (
        "offline-decline",
        include_str!("../../cards/offline-decline.toml"),
    ),
    (
        "offline-approve",
        include_str!("../../cards/offline-approve.toml"),
    ),
    (
        "issuer-auth-fail",
        include_str!("../../cards/issuer-auth-fail.toml"),
    ),
    ("blocked", include_str!("../../cards/blocked.toml")),
    ("magstripe", include_str!("../../cards/magstripe.toml")),
];

/// Names of the shipped profiles.
pub fn profile_names() -> impl Iterator<Item = &'static str> {
    PROFILE_FILES.iter().map(|(n, _)| *n)
}

/// The shipped profiles with their names, parsed once. Parsing TOML is far dearer than a sale
/// (the issuer looks a key up on every ARQC, the reader its card several times a
/// transaction); doing it per call serialised `emvbridge lab` behind the sandbox gateway's
/// state lock. Files that do not load are left out, as before.
fn parsed() -> &'static [(&'static str, CardProfile)] {
    static PARSED: std::sync::OnceLock<Vec<(&'static str, CardProfile)>> =
        std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        PROFILE_FILES
            .iter()
            .filter_map(|(n, t)| CardProfile::load(t).ok().map(|p| (*n, p)))
            .collect()
    })
}

/// The shipped profiles, borrowed from the parsed-once set (no parse, no copy).
pub fn shipped_profiles() -> impl Iterator<Item = &'static CardProfile> {
    parsed().iter().map(|(_, p)| p)
}

/// Loads a shipped profile by name.
pub fn profile(name: &str) -> Option<CardProfile> {
    parsed()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p.clone())
}

/// All shipped profiles (the issuer looks keys up here).
pub fn all_profiles() -> Vec<CardProfile> {
    shipped_profiles().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsed-once set gives what a fresh parse of each file gives, under the file's name.
    #[test]
    fn cached_profiles_match_a_fresh_parse() {
        assert_eq!(shipped_profiles().count(), PROFILE_FILES.len());
        for (name, text) in PROFILE_FILES {
            let fresh = CardProfile::load(text).expect("shipped profile loads");
            let cached = profile(name).expect("shipped profile is cached");
            assert_eq!(cached.name, fresh.name);
            assert_eq!(cached.pan, fresh.pan);
            assert_eq!(cached.psn, fresh.psn);
            assert_eq!(cached.cvn, fresh.cvn);
            assert_eq!(cached.imk.expose(), fresh.imk.expose());
            assert_eq!(cached.apps.len(), fresh.apps.len());
        }
        assert!(profile("no-such-card").is_none());
        // The same allocation every time: parsed once.
        let a = shipped_profiles().next().map(|p| p as *const CardProfile);
        let b = shipped_profiles().next().map(|p| p as *const CardProfile);
        assert_eq!(a, b);
        assert_eq!(all_profiles().len(), PROFILE_FILES.len());
    }
}
