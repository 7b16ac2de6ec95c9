//! Shared by the end-to-end tests: locating the `vipa-sim` binary, and a real ARQC data set
//! from the simulator's card model for the gateway tests.
//!
//! `$EMVBRIDGE_VIPA_SIM` if set; otherwise the `vipa-sim` next to the test binary's profile
//! directory (which `cargo test --workspace` builds); if missing (e.g. `cargo test -p
//! emvbridge`), it is built with `cargo build -p emvbridge-sim --bin vipa-sim`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use emvbridge_protocol::tlv::{Tag, TlvBuilder};
use emvbridge_sim::card::{Card, CryptogramType, CDOL1};

/// Path of the `vipa-sim` binary, building it when needed.
pub fn vipa_sim() -> PathBuf {
    if let Some(p) = std::env::var_os("EMVBRIDGE_VIPA_SIM") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let bin = profile_dir.join(format!("vipa-sim{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() || std::env::var_os("EMVBRIDGE_TEST_BUILD_SIM").is_some() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "-p",
            "emvbridge-sim",
            "--bin",
            "vipa-sim",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for vipa-sim");
        assert!(status.success(), "building vipa-sim failed");
    }
    assert!(bin.exists(), "vipa-sim not found at {}", bin.display());
    bin
}

/// A real ARQC online data set from `card` (select, first GENERATE AC over CDOL1) for
/// `amount_minor` US cents with unpredictable number `un`, as the bridge forwards it
/// (PAN in `5A`, no SRED), so the sandbox's issuer check verifies a genuine cryptogram.
pub fn arqc_data(card: &mut Card, amount_minor: u64, un: [u8; 4]) -> Vec<u8> {
    let aid = hex::decode(&card.profile().apps[0].aid).unwrap();
    card.select(&aid).unwrap();
    let digits = format!("{amount_minor:012}");
    let mut amt = [0u8; 6];
    for (i, b) in amt.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).unwrap();
    }
    let vals: Vec<(u32, Vec<u8>)> = vec![
        (0x9F02, amt.to_vec()),
        (0x9F03, vec![0; 6]),
        (0x9F1A, vec![0x08, 0x40]),
        (0x95, vec![0; 5]),
        (0x5F2A, vec![0x08, 0x40]),
        (0x9A, vec![0x25, 0x06, 0x01]),
        (0x9C, vec![0]),
        (0x9F37, un.to_vec()),
        (0x9F35, vec![0x22]),
        (0x9F34, vec![0x1E, 0x03, 0x00]),
    ];
    let map: BTreeMap<u32, Vec<u8>> = vals.iter().cloned().collect();
    let cdol = emvbridge_protocol::emv::build_dol_vec(CDOL1, &map).unwrap();
    let gac = card.generate_ac(true, CryptogramType::Arqc, &cdol).unwrap();
    let mut b = TlvBuilder::new();
    for (t, v) in &vals {
        b.primitive(Tag(*t), v);
    }
    b.primitive(Tag(0x82), &card.profile().aip)
        .primitive(Tag(0x9F36), &gac.atc.to_be_bytes())
        .primitive(Tag(0x9F10), &gac.iad)
        .primitive(Tag(0x9F26), &gac.cryptogram)
        .primitive(Tag(0x9F27), &[gac.cid()])
        .primitive(Tag(0x5A), &card.profile().pan.to_bcd())
        .primitive(Tag(0x5F34), &[card.profile().psn]);
    b.as_bytes().to_vec()
}
