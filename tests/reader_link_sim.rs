//! `emvbridge device info` against the real simulator binary, over a pty and over TCP.
//!
//! How the test finds `vipa-sim`: `$EMVBRIDGE_VIPA_SIM` if set; otherwise the `vipa-sim` next
//! to this test's profile directory (`target/<profile>/vipa-sim`, the parent of the `deps/`
//! directory holding this test binary), which `cargo test --workspace` builds. If it is
//! missing (e.g. `cargo test -p emvbridge`), the test builds it with
//! `cargo build -p emvbridge-sim --bin vipa-sim` (plus `--release` for a release profile).
//! (`CARGO_BIN_EXE_*` only names binaries of the package under test.)

mod common;
use common::vipa_sim;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running simulator; killed on drop (its standard input closes with it as well).
struct Sim {
    child: Child,
    addr: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vipa-sim ARGS` and reads the first JSON line: `{"pty":…}` or `{"tcp":…}`.
fn start_sim(args: &[&str]) -> Sim {
    let mut child = Command::new(vipa_sim())
        .args(args)
        .stdin(Stdio::piped()) // the simulator runs until its standard input closes
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vipa-sim");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("vipa-sim announced its address in time");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("json line");
    let addr = match (v["pty"].as_str(), v["tcp"].as_str()) {
        (Some(p), _) => p.to_owned(),
        (None, Some(t)) => format!("tcp://{t}"),
        _ => panic!("unexpected first line {line:?}"),
    };
    Sim { child, addr }
}

/// Runs `emvbridge ARGS` with a hard bound; returns (exit code, stdout, stderr).
fn emvbridge(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn emvbridge");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("emvbridge {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_json(stdout: &str) {
    let v: serde_json::Value = serde_json::from_str(stdout).expect("device info json");
    // The simulator's device 0: terminal id SIM00001, serial UX300001 (firmware-sim main.rs).
    assert_eq!(v["terminal_id"], "SIM00001", "{v}");
    assert_eq!(v["serial"], "UX300001", "{v}");
    assert!(v["model"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let comps = v["components"].as_array().expect("components");
    assert!(!comps.is_empty(), "{v}");
    assert!(
        comps
            .iter()
            .all(|c| c.get("name").is_some() && c.get("version").is_some()),
        "{v}"
    );
    assert!(
        v["devices"].as_array().is_some_and(|d| !d.is_empty()),
        "{v}"
    );
}

#[test]
fn device_info_json_over_a_pty() {
    let sim = start_sim(&["--pty"]);
    assert!(sim.addr.starts_with("/dev/"), "{}", sim.addr);
    let (code, out, err) = emvbridge(&["device", "info", "--device", &sim.addr, "--json"]);
    assert_eq!(code, 0, "stderr: {err}");
    check_json(&out);
}

#[test]
fn device_info_text_over_tcp() {
    let sim = start_sim(&["--tcp", "127.0.0.1:0"]);
    let (code, out, err) = emvbridge(&["device", "info", "--device", &sim.addr, "--json"]);
    assert_eq!(code, 0, "stderr: {err}");
    check_json(&out);
    let (code, out, err) = emvbridge(&["device", "info", "--device", &sim.addr]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("terminal id  SIM00001"), "{out}");
    assert!(out.contains("components"), "{out}");
}

#[test]
fn device_info_fails_with_exit_2_and_a_message() {
    let (code, out, err) = emvbridge(&[
        "device",
        "info",
        "--device",
        "/dev/emvbridge-no-such-reader",
    ]);
    assert_eq!(code, 2, "stdout: {out}");
    // The link's retries are logged (WARN lines) before the command's error line.
    assert!(err.lines().any(|l| l.starts_with("error: ")), "{err}");
    assert!(err.contains("/dev/emvbridge-no-such-reader"), "{err}");
    // A TCP peer that accepts but never answers: a timeout, not a hang.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    let (code, _, err) = emvbridge(&["device", "info", "--device", &addr, "--timeout", "1"]);
    assert_eq!(code, 2);
    assert!(
        err.lines().any(|l| l.starts_with("error: ")) && err.contains("no answer"),
        "{err}"
    );
    drop(l);
    let (code, _, err) = emvbridge(&["device", "info", "--device", "udp://x:1"]);
    assert_eq!(code, 2, "{err}");
}
