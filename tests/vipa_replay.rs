//! The captured VIPA exchanges of Verifone's readers, played by `vipa-sim --replay` (the
//! terminal's side of each log, `tests/data/vipa/replay/*.seq`) to the real bridge binary over
//! TCP. The bridge must speak as the logged hosts did: `device info` works against every
//! captured reader (UX300, UX301, the UX301 that answers Reset `9F24` first, M400 with its
//! unsolicited-only Card Status, P400 Plus), and the logged UX301 sale gets the host frames the
//! log shows: Cancel Contactless and Start Transaction only after the card-in event, the
//! logged amount confirmation after `E2`, `DE D2 01 00` after `E0`, and a final Continue with
//! the host's decision `C0`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use emvbridge_protocol::tlv::{self, Tag};
use emvbridge_protocol::vipa::CommandView;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vipa/replay")
        .join(name)
}

/// `vipa-sim --replay FILE --tcp 127.0.0.1:0`, killed on drop.
struct Replay {
    child: Child,
    device: String,
}

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replay(file: &Path) -> Replay {
    let mut child = Command::new(common::vipa_sim())
        .arg("--replay")
        .arg(file)
        .args(["--tcp", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vipa-sim --replay");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("vipa-sim announces its port");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json address line");
    let device = format!("tcp://{}", v["tcp"].as_str().expect("tcp address"));
    Replay { child, device }
}

/// Runs `emvbridge ARGS`, bounded; returns (exit code, stdout, stderr).
fn emvbridge(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn emvbridge");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("emvbridge {args:?} did not finish in 60 s");
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

#[test]
fn device_info_against_every_captured_reader() {
    for (file, model, vipa) in [
        ("ux300-device.seq", "UX300", "6.8.2.24"),
        ("ux301-device.seq", "UX301", "6.8.2.24"),
        ("ux301-9f24-device.seq", "UX301", "6.8.2.24"),
        ("m400-device.seq", "M400WIFI/BT", "6.8.2.11"),
        ("p400plus-device.seq", "P400Plus", "6.8.2.11"),
    ] {
        let r = replay(&data(file));
        let (code, out, err) = emvbridge(&["device", "info", "--device", &r.device, "--json"]);
        assert_eq!(code, 0, "{file}: {out}\n{err}");
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{file}: {e}: {out}"));
        let text = v.to_string();
        assert!(text.contains(model), "{file}: {text}");
        assert!(text.contains(vipa), "{file}: {text}");
    }
}

/// The host messages of a `--record` file, in order.
fn host_messages(recording: &str) -> Vec<Vec<u8>> {
    recording
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["dir"] == "host")
        .map(|v| hex::decode(v["hex"].as_str().unwrap()).unwrap())
        .collect()
}

/// The messages of a `--record` file as (from the host?, payload), in order.
fn messages(recording: &str) -> Vec<(bool, Vec<u8>)> {
    recording
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("dir").is_some())
        .map(|v| {
            (
                v["dir"] == "host",
                hex::decode(v["hex"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn logged_ux301_sale_gets_the_logged_host_frames() {
    let r = replay(&data("ux301-amex-sale.seq"));
    let dir = std::env::temp_dir().join(format!("emvb-vipa-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("ux301.jsonl");
    let (code, out, err) = emvbridge(&[
        "sale",
        "--amount",
        "35.50",
        "--device",
        &r.device,
        "--record",
        rec.to_str().unwrap(),
        "--json",
        "--final-timeout-secs",
        "5",
    ]);
    let text = std::fs::read_to_string(&rec).unwrap_or_default();
    let all = messages(&text);
    let host = host_messages(&text);
    let codes: Vec<[u8; 2]> = host.iter().map(|p| [p[0], p[1]]).collect();
    // The card-in event comes before any Start Transaction, and C0 C0 before it.
    let card_in = all
        .iter()
        .position(|(h, p)| !h && p.starts_with(&[0xE0, 0x04, 0x48, 0x02, 0x03]))
        .unwrap_or_else(|| panic!("no card-in event: {text}\n{err}"));
    let start = all
        .iter()
        .position(|(h, p)| *h && p.starts_with(&[0xDE, 0xD1]))
        .unwrap_or_else(|| panic!("no DE D1: {codes:02X?}\n{err}"));
    assert!(card_in < start, "DE D1 only after the card-in event");
    let cancel = all
        .iter()
        .position(|(h, p)| *h && p.starts_with(&[0xC0, 0xC0]))
        .expect("Cancel Contactless sent");
    assert!(card_in < cancel && cancel < start, "{codes:02X?}");
    // After E2: exactly the logged amount confirmation; after E0: exactly `DE D2 01 00`.
    let continues: Vec<&Vec<u8>> = host
        .iter()
        .filter(|p| p.starts_with(&[0xDE, 0xD2]))
        .collect();
    assert!(continues.len() >= 3, "{codes:02X?}\n{err}");
    assert_eq!(
        hex::encode_upper(continues[0]),
        "DED2010023E0219F02060000000035505F2A0208408901008A025A33C00100C2023635DFCC790101"
    );
    assert_eq!(hex::encode_upper(continues[1]), "DED20100");
    // The final Continue carries the host's decision (the log ends before it).
    let fin = CommandView::parse(continues[2]).unwrap();
    let tlvs = fin.continue_data().unwrap();
    assert!(
        tlv::find(tlvs, Tag(0xC0)).is_some()
            || tlv::find(tlvs, Tag::AUTHORISATION_RESPONSE_CODE)
                .is_some_and(|t| t.value() == b"Z3"),
        "final Continue: C0, or Z3 without it"
    );
    assert!(tlv::find(tlvs, Tag(0xC2)).is_some());
    // The SRED-masked Amex (374245AAAAAAAAAF) went to the gateway and an outcome came back.
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert!(v["status"].is_string(), "{v}");
    assert!(
        v["card"]["masked_pan"]
            .as_str()
            .unwrap_or_default()
            .starts_with("374245"),
        "{v}"
    );
    assert!(code == 0 || code == 1, "{code}: {out}\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
