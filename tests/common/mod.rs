//! Shared by the end-to-end tests: locating the `vipa-sim` binary.
//!
//! `$EMVBRIDGE_VIPA_SIM` if set; otherwise the `vipa-sim` next to the test binary's profile
//! directory (which `cargo test --workspace` builds); if missing (e.g. `cargo test -p
//! emvbridge`), it is built with `cargo build -p emvbridge-sim --bin vipa-sim`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

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
