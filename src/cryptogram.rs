//! `emvbridge crypto arqc|arpc`: the lab tool over the simulator's EMV cryptography.
//!
//! Computes an application cryptogram or an ARPC from an issuer master key, PAN, PSN, ATC
//! and either the raw cryptogram input (`--data`) or EMV tags (`--icc` TLV and/or `--tag`),
//! with the same code the simulated cards and the sandbox issuer use, so a lab can check a
//! value seen on the wire. Keys are test keys; they are accepted from the environment
//! (`EMVBRIDGE_IMK`) so they need not appear in shell history.

use std::collections::BTreeMap;
use std::process::ExitCode;

use emvbridge_protocol::tlv::{self, Tag, TlvIter};
use emvbridge_sim::crypto::{self, Cvn, SecretKey};

/// `emvbridge crypto` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CryptoCommand {
    /// Application cryptogram (ARQC/TC/AAC: the same computation) in hex.
    Arqc(ArqcArgs),
    /// Issuer authentication data (tag 91 value: ARPC and ARC or CSU) in hex.
    Arpc(ArpcArgs),
}

/// Card and key parameters shared by both subcommands.
#[derive(clap::Args, Debug)]
pub struct CardKeyArgs {
    /// Cryptogram version: visa10, visa18, mastercard16, emv-common.
    #[arg(long, value_parser = parse_cvn)]
    pub cvn: Cvn,
    /// Issuer master key (32 hex digits), or the environment variable EMVBRIDGE_IMK.
    #[arg(long, env = "EMVBRIDGE_IMK", hide_env_values = true)]
    pub imk: String,
    /// PAN digits.
    #[arg(long)]
    pub pan: String,
    /// PAN sequence number (5F34), decimal.
    #[arg(long, default_value_t = 0)]
    pub psn: u8,
    /// Application transaction counter (9F36), 4 hex digits; defaults to 9F36 from --icc/--tag.
    #[arg(long)]
    pub atc: Option<String>,
    /// Unpredictable number (9F37), 8 hex digits; defaults to 9F37 from --icc/--tag.
    #[arg(long)]
    pub un: Option<String>,
    /// EMV data as hex BER-TLV (e.g. the E4 data set); its primitive tags feed the input.
    #[arg(long)]
    pub icc: Option<String>,
    /// One tag value, `TAG=HEX` (e.g. `9F02=000000001000`); overrides --icc; repeatable.
    #[arg(long = "tag", value_name = "TAG=HEX")]
    pub tags: Vec<String>,
}

/// `emvbridge crypto arqc`.
#[derive(clap::Args, Debug)]
pub struct ArqcArgs {
    #[command(flatten)]
    keys: CardKeyArgs,
    /// The cryptogram input (CDOL data) in hex, instead of building it from the tags.
    #[arg(long)]
    data: Option<String>,
    /// Also print the cryptogram input that was MACed.
    #[arg(long)]
    verbose: bool,
}

/// `emvbridge crypto arpc`.
#[derive(clap::Args, Debug)]
pub struct ArpcArgs {
    #[command(flatten)]
    keys: CardKeyArgs,
    /// The ARQC (9F26), 16 hex digits; defaults to 9F26 from --icc/--tag.
    #[arg(long)]
    arqc: Option<String>,
    /// Authorisation response code: two characters (`00`, `05`, `Z3`) or 4 hex digits (`3030`).
    #[arg(long, default_value = "00")]
    arc: String,
}

/// What the tool could not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    /// A flag's value is malformed.
    #[error("bad {what}: {why}")]
    Bad {
        /// Which flag.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A value needed and not given.
    #[error("missing {0}")]
    Missing(&'static str),
    /// From the crypto module.
    #[error("{0}")]
    Crypto(String),
}

fn parse_cvn(s: &str) -> Result<Cvn, String> {
    match s.to_ascii_lowercase().replace(['_', ' '], "-").as_str() {
        "visa10" | "visa-10" | "10" | "0a" => Ok(Cvn::Visa10),
        "visa18" | "visa-18" | "18" | "12" => Ok(Cvn::Visa18),
        "mastercard16" | "mastercard-16" | "mc16" | "16" => Ok(Cvn::Mastercard16),
        "emv-common" | "emvcommon" | "common" => Ok(Cvn::EmvCommon),
        other => Err(format!(
            "unknown cvn {other:?} (visa10, visa18, mastercard16, emv-common)"
        )),
    }
}

fn bytes(what: &'static str, hex: &str) -> Result<Vec<u8>, ToolError> {
    crate::decode::parse_hex(hex).map_err(|e| ToolError::Bad {
        what,
        why: e.to_string(),
    })
}

fn fixed<const N: usize>(what: &'static str, v: &[u8]) -> Result<[u8; N], ToolError> {
    v.try_into().map_err(|_| ToolError::Bad {
        what,
        why: format!("expected {N} bytes, got {}", v.len()),
    })
}

/// The tag source: primitive tags of `--icc` (all depths), then `--tag` overrides.
fn tag_map(args: &CardKeyArgs) -> Result<BTreeMap<u32, Vec<u8>>, ToolError> {
    fn collect(iter: TlvIter<'_>, out: &mut BTreeMap<u32, Vec<u8>>) -> Result<(), ToolError> {
        for t in iter {
            let t = t.map_err(|e| ToolError::Bad {
                what: "--icc",
                why: e.to_string(),
            })?;
            if t.is_constructed() {
                collect(t.children(), out)?;
            } else {
                out.entry(t.tag().0).or_insert_with(|| t.value().to_vec());
            }
        }
        Ok(())
    }
    let mut map = BTreeMap::new();
    if let Some(icc) = &args.icc {
        collect(tlv::parse(&bytes("--icc", icc)?), &mut map)?;
    }
    for spec in &args.tags {
        let (tag, value) = spec.split_once('=').ok_or_else(|| ToolError::Bad {
            what: "--tag",
            why: format!("{spec:?} is not TAG=HEX"),
        })?;
        let tag: Tag = tag.parse().map_err(|e| ToolError::Bad {
            what: "--tag",
            why: format!("{e}"),
        })?;
        let value = if value.is_empty() {
            Vec::new()
        } else {
            bytes("--tag", value)?
        };
        map.insert(tag.0, value);
    }
    Ok(map)
}

struct Resolved {
    cvn: Cvn,
    icc_mk: SecretKey,
    atc: u16,
    un: [u8; 4],
    tags: BTreeMap<u32, Vec<u8>>,
}

fn resolve(args: &CardKeyArgs) -> Result<Resolved, ToolError> {
    let imk = SecretKey::from_hex(args.imk.trim()).map_err(|_| ToolError::Bad {
        what: "--imk",
        why: "expected 32 hex digits".into(),
    })?;
    let icc_mk = crypto::derive_icc_master_key(&imk, args.pan.trim(), args.psn).map_err(|_| {
        ToolError::Bad {
            what: "--pan/--psn",
            why: "PAN must be 12-19 digits, PSN 0-99".into(),
        }
    })?;
    let tags = tag_map(args)?;
    let atc = match &args.atc {
        Some(h) => fixed::<2>("--atc", &bytes("--atc", h)?)?,
        None => fixed::<2>(
            "9F36",
            tags.get(&0x9F36)
                .ok_or(ToolError::Missing("--atc (or tag 9F36)"))?,
        )?,
    };
    let un = match &args.un {
        Some(h) => fixed::<4>("--un", &bytes("--un", h)?)?,
        None => fixed::<4>(
            "9F37",
            tags.get(&0x9F37)
                .ok_or(ToolError::Missing("--un (or tag 9F37)"))?,
        )?,
    };
    Ok(Resolved {
        cvn: args.cvn,
        icc_mk,
        atc: u16::from_be_bytes(atc),
        un,
        tags,
    })
}

/// Computes the ARQC; returns (cryptogram input, cryptogram).
pub fn arqc(args: &ArqcArgs) -> Result<(Vec<u8>, [u8; 8]), ToolError> {
    let r = resolve(&args.keys)?;
    let input = match &args.data {
        Some(h) => bytes("--data", h)?,
        None => crypto::cryptogram_input(r.cvn, &r.tags)
            .map_err(|e| ToolError::Crypto(e.to_string()))?,
    };
    let ac = crypto::application_cryptogram(r.cvn, &r.icc_mk, r.atc, r.un, &input);
    Ok((input, ac))
}

/// Computes the tag 91 value for the ARQC and ARC.
pub fn arpc(args: &ArpcArgs) -> Result<Vec<u8>, ToolError> {
    let r = resolve(&args.keys)?;
    let arqc = match &args.arqc {
        Some(h) => fixed::<8>("--arqc", &bytes("--arqc", h)?)?,
        None => fixed::<8>(
            "9F26",
            r.tags
                .get(&0x9F26)
                .ok_or(ToolError::Missing("--arqc (or tag 9F26)"))?,
        )?,
    };
    let arc: [u8; 2] = match args.arc.len() {
        2 if args.arc.is_ascii() => fixed("--arc", args.arc.as_bytes())?,
        4 => fixed("--arc", &bytes("--arc", &args.arc)?)?,
        _ => {
            return Err(ToolError::Bad {
                what: "--arc",
                why: "two characters or 4 hex digits".into(),
            })
        }
    };
    Ok(crypto::issuer_authentication_data(
        r.cvn, &r.icc_mk, r.atc, r.un, arqc, arc,
    ))
}

/// Runs `emvbridge crypto …`: prints the result in upper-case hex; exit 2 on bad input.
pub fn run(cmd: CryptoCommand) -> ExitCode {
    let result = match &cmd {
        CryptoCommand::Arqc(a) => arqc(a).map(|(input, ac)| {
            if a.verbose {
                println!("input {}", hex::encode_upper(&input));
            }
            hex::encode_upper(ac)
        }),
        CryptoCommand::Arpc(a) => arpc(a).map(hex::encode_upper),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: CryptoCommand,
    }

    const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const PAN: &str = "4111111111111111";

    fn cli(args: &[&str]) -> CryptoCommand {
        Cli::try_parse_from(std::iter::once("crypto").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    fn tags() -> Vec<&'static str> {
        vec![
            "--tag",
            "9F02=000000001234",
            "--tag",
            "9F03=000000000000",
            "--tag",
            "9F1A=0840",
            "--tag",
            "95=0000000000",
            "--tag",
            "5F2A=0840",
            "--tag",
            "9A=261121",
            "--tag",
            "9C=00",
            "--tag",
            "82=1800",
            "--tag",
            "9F10=06011203A00000",
        ]
    }

    #[test]
    fn arqc_matches_the_crypto_module_and_tags_equal_data() {
        let mut args = vec![
            "arqc", "--cvn", "visa18", "--imk", IMK, "--pan", PAN, "--psn", "1", "--atc", "0042",
            "--un", "DEADBEEF",
        ];
        args.extend(tags());
        args.extend(["--tag", "9F37=DEADBEEF", "--tag", "9F36=0042"]);
        let CryptoCommand::Arqc(a) = cli(&args) else {
            panic!()
        };
        let (input, ac) = arqc(&a).unwrap();
        let imk = SecretKey::from_hex(IMK).unwrap();
        let want = crypto::arqc(
            Cvn::Visa18,
            &imk,
            PAN,
            1,
            0x42,
            [0xDE, 0xAD, 0xBE, 0xEF],
            &input,
        )
        .unwrap();
        assert_eq!(ac, want);
        // The same input given raw gives the same cryptogram.
        let data = hex::encode(&input);
        let CryptoCommand::Arqc(b) = cli(&[
            "arqc", "--cvn", "18", "--imk", IMK, "--pan", PAN, "--psn", "1", "--atc", "0042",
            "--un", "DEADBEEF", "--data", &data,
        ]) else {
            panic!()
        };
        assert_eq!(arqc(&b).unwrap().1, ac);
    }

    #[test]
    fn arpc_is_accepted_by_the_card_check() {
        let CryptoCommand::Arpc(a) = cli(&[
            "arpc",
            "--cvn",
            "visa10",
            "--imk",
            IMK,
            "--pan",
            PAN,
            "--atc",
            "0001",
            "--un",
            "01020304",
            "--arqc",
            "1122334455667788",
            "--arc",
            "00",
        ]) else {
            panic!()
        };
        let iad = arpc(&a).unwrap();
        let mk = crypto::derive_icc_master_key(&SecretKey::from_hex(IMK).unwrap(), PAN, 0).unwrap();
        assert!(crypto::verify_issuer_authentication_data(
            Cvn::Visa10,
            &mk,
            1,
            [1, 2, 3, 4],
            [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
            *b"00",
            &iad
        ));
        assert_eq!(&iad[8..], b"00");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let CryptoCommand::Arqc(a) = cli(&[
            "arqc", "--cvn", "visa18", "--imk", "00", "--pan", PAN, "--atc", "0001", "--un",
            "01020304",
        ]) else {
            panic!()
        };
        assert!(matches!(
            arqc(&a),
            Err(ToolError::Bad { what: "--imk", .. })
        ));
        let CryptoCommand::Arqc(a) = cli(&[
            "arqc", "--cvn", "visa18", "--imk", IMK, "--pan", PAN, "--atc", "0001", "--un",
            "01020304",
        ]) else {
            panic!()
        };
        // No tags and no --data: the first missing tag is named.
        assert!(matches!(arqc(&a), Err(ToolError::Crypto(_))));
        let CryptoCommand::Arqc(a) = cli(&[
            "arqc", "--cvn", "visa18", "--imk", IMK, "--pan", PAN, "--un", "01020304",
        ]) else {
            panic!()
        };
        assert_eq!(
            arqc(&a).unwrap_err(),
            ToolError::Missing("--atc (or tag 9F36)")
        );
        assert!(parse_cvn("visa99").is_err());
    }
}
