//! Record and replay: a sale recorded with `emvbridge sale --record FILE` against the
//! simulator is played back by `vipa-sim --replay FILE --tcp` to a fresh bridge and sandbox,
//! and the bridge reaches the same outcome with the same card facts; the recording holds no
//! clear PAN.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn sale(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .arg("sale")
        .arg("--json")
        .args(args)
        .output()
        .expect("run emvbridge sale");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sale output is not json ({e}): {stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// `vipa-sim --replay FILE --tcp 127.0.0.1:0`; returns the child (ends when its stdin closes)
/// and the `tcp://` address it serves.
fn replay(file: &Path) -> (Child, String) {
    let mut child = Command::new(common::vipa_sim())
        .args(["--replay"])
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
    let addr = v["tcp"].as_str().expect("tcp address").to_owned();
    (child, format!("tcp://{addr}"))
}

fn facts(v: &serde_json::Value) -> (String, String, String, String) {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_owned();
    (
        s(&v["status"]),
        s(&v["card"]["masked_pan"]),
        s(&v["card"]["cryptogram_type"]),
        s(&v["card"]["arqc"]),
    )
}

#[test]
fn replayed_sessions_reach_the_recorded_outcome() {
    let dir = std::env::temp_dir().join(format!("emvb-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Approved (TC) and reversed (x.91: bad ARPC, the card refuses, the bridge reverses).
    for (amount, status, code) in [("12.34", "approved", 0), ("3.91", "reversed", 1)] {
        let file = dir.join(format!("session-{amount}.jsonl"));
        let (c, recorded, err) = sale(&["--amount", amount, "--record", file.to_str().unwrap()]);
        assert_eq!(c, code, "{recorded}\n{err}");
        assert_eq!(recorded["status"], status, "{recorded}");
        assert!(err.contains("recording the reader session"), "{err}");

        let text = std::fs::read_to_string(&file).unwrap();
        let rec = emvbridge_sim::replay::Recording::parse(&text).expect("recording parses");
        assert!(rec.entries().len() >= 8, "{text}");
        // The simulator's card is 4012000098765439: never in clear, in any nibble alignment.
        assert!(!text.contains("4012000098765439") && !text.contains("0000987654"));
        assert!(
            text.contains("401200AAAAAA5439"),
            "masked PAN kept first 6 / last 4"
        );

        let (mut child, device) = replay(&file);
        let (c2, replayed, err2) = sale(&["--amount", amount, "--device", &device]);
        drop(child.stdin.take());
        let _ = child.wait();
        assert_eq!(c2, code, "{replayed}\n{err2}");
        assert_eq!(facts(&replayed), facts(&recorded), "{replayed}");
        assert_eq!(
            replayed["reversal"].is_null(),
            recorded["reversal"].is_null(),
            "{replayed}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
