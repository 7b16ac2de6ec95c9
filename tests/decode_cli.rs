//! `emvbridge decode` as a user runs it: the binary over the public vectors of
//! `tests/data/emv/decode-inputs.tsv` (checked against `decode-expected.tsv`, facts from
//! emv-decode's own expected output and the EMV books), over every real VIPA capture in
//! `tests/data/vipa/`, and the `--json`, `--field` and `--vipa` contracts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_emvbridge")
}

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Runs `emvbridge decode ARGS`; returns (exit code, stdout, stderr).
fn decode(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("decode")
        .args(args)
        .output()
        .expect("run emvbridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tsv(rel: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(data(rel))
        .expect("tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The hex emvbridge decodes for one input line: `field:TAG` and `dol:TAG` values wrapped in
/// their tag (one- or `81`-form length), as the input file says.
fn input_hex(mode: &str, hex: &str) -> String {
    match mode.split(':').collect::<Vec<_>>()[..] {
        ["field", tag, ..] | ["dol", tag] => {
            let n = hex.len() / 2;
            let len = if n < 0x80 {
                format!("{n:02X}")
            } else {
                format!("81{n:02X}")
            };
            format!("{tag}{len}{hex}")
        }
        _ => hex.to_owned(),
    }
}

#[test]
fn every_public_vector_decodes_as_expected() {
    let inputs = tsv("emv/decode-inputs.tsv");
    let expected = tsv("emv/decode-expected.tsv");
    assert!(inputs.len() >= 140, "{} inputs", inputs.len());
    let mut failures = Vec::new();
    for line in &inputs {
        let (id, mode, hex) = (&line[0], &line[1], line.get(2).map_or("", String::as_str));
        let exp = expected
            .iter()
            .find(|e| &e[0] == id)
            .unwrap_or_else(|| panic!("no expectation for {id}"));
        let hex = input_hex(mode, hex);
        let args: Vec<&str> = if hex.is_empty() { vec![""] } else { vec![&hex] };
        let (code, out, err) = decode(&args);
        let all = format!("{out}{err}");
        let want_code: i32 = exp[1].parse().expect("exit code");
        if code != want_code {
            failures.push(format!("{id}: exit {code}, expected {want_code}\n{all}"));
        }
        for fact in exp[2].split(" | ") {
            if !all.contains(fact) {
                failures.push(format!("{id}: missing {fact:?}\n{all}"));
            }
        }
        // Exit 2 always comes with one `error: … at byte offset N` line.
        if code == 2 {
            let errs: Vec<&str> = err.lines().collect();
            assert_eq!(errs.len(), 1, "{id}: {err}");
            assert!(
                errs[0].starts_with("error: ") && errs[0].contains(" at byte offset "),
                "{id}: {err}"
            );
        }
    }
    assert_eq!(expected.len(), inputs.len(), "one expectation per input");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Frames of one capture file, split by sender: `.hex` files are one direction (the
/// `[from: …]` note, else the file name), `.seq` files say it per line.
fn capture_frames(path: &Path) -> Vec<(&'static str, String)> {
    let text = std::fs::read_to_string(path).expect("capture");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut host = String::new();
    let mut terminal = String::new();
    if name.ends_with(".seq") {
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            match l.split_once(' ') {
                Some(("host", h)) => host.push_str(h.trim()),
                Some(("terminal", h)) => terminal.push_str(h.trim()),
                _ => {}
            }
        }
    } else {
        let from_host = if text.contains("[from: host]") {
            true
        } else if text.contains("[from: terminal]") {
            false
        } else {
            name.contains("host") || name.contains("command")
        };
        let frames: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::trim)
            .collect();
        if from_host {
            host = frames;
        } else {
            terminal = frames;
        }
    }
    [("host", host), ("terminal", terminal)]
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .collect()
}

#[test]
fn every_real_capture_decodes() {
    // Kept as hostile input (tests/data/vipa/README.md): not a frame, and cut short at source.
    let hostile = [
        "parser-handmade-not-a-frame.hex",
        "parser-unsolicited-swipe-truncated.hex",
    ];
    let mut decoded = 0;
    for entry in std::fs::read_dir(data("vipa")).expect("captures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".hex") || name.ends_with(".seq")) {
            continue;
        }
        for (from, hex) in capture_frames(&path) {
            let (code, out, err) = decode(&["--frame", "--from", from, &hex]);
            if hostile.contains(&name.as_str()) {
                assert_eq!(code, 2, "{name} ({from}) must be refused: {out}{err}");
                assert!(
                    err.starts_with("error: ") && err.contains(" at byte offset "),
                    "{err}"
                );
                continue;
            }
            assert_eq!(code, 0, "{name} ({from}):\n{out}{err}");
            assert!(err.is_empty(), "{name}: {err}");
            assert!(out.contains("message ("), "{name}: {out}");
            decoded += 1;
        }
    }
    assert!(decoded >= 20, "{decoded} capture directions decoded");
}

#[test]
fn non_tlv_vipa_data_is_shown_raw() {
    // M400: Contactless Status (C0 00) answered by a count byte, not TLV.
    let (code, out, _) = decode(&["--frame", "--from", "terminal", "01000301900093"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SW 9000"), "{out}");
    assert!(out.contains("data 01 \".\""), "{out}");
    // Select File with its ASCII file name.
    let (code, out, _) = decode(&[
        "--frame",
        "--from",
        "host",
        "01001000A404000B4943434B4559532E4B45598E",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("command 00 A4 04 00"), "{out}");
    assert!(out.contains("\"ICCKEYS.KEY\""), "{out}");
    let (_, json, _) = decode(&["--json", "--frame", "--from", "terminal", "01000301900093"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(v["raw"]["hex"], "01");
    assert_eq!(v["sw"], "9000");
}

#[test]
fn json_errors_have_one_shape() {
    for (args, offset) in [
        (vec!["--json", "9F0G"], 1),
        (vec!["--json", "9F02"], 0),
        (vec!["--json", "5A0101E0049F020500"], 5),
        (vec!["--json", "--field", "tvr", "80"], 0),
        (
            vec!["--json", "--frame", "--from", "terminal", "0100FF9000"],
            2,
        ),
    ] {
        let (code, out, err) = decode(&args);
        assert_eq!(code, 2, "{args:?}");
        let line = err.trim().strip_prefix("error: ").expect("error line");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one json object");
        assert_eq!(v["error"], line, "{args:?}");
        assert_eq!(v["offset"], offset, "{args:?}");
        assert!(v["partial"].is_array(), "{args:?}");
        assert!(
            line.ends_with(&format!("at byte offset {offset}")),
            "{line}"
        );
    }
    // The TLV error keeps what was decoded before it.
    let (_, out, _) = decode(&["--json", "5A0101E0049F020500"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["partial"][0]["tag"], "5A");
}

#[test]
fn single_field_modes() {
    let (code, out, _) = decode(&["--field", "tvr", "0000008000"]);
    assert_eq!(code, 0);
    assert!(out.contains("Transaction exceeds floor limit"), "{out}");
    let (_, out, _) = decode(&[
        "--json",
        "--field",
        "cvmlist",
        "000000000000000042031E031F03",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["field"], "cvmlist");
    assert_eq!(v["decoded"][1], "Enciphered PIN verified online, If terminal supports the CVM; if unsuccessful apply next rule");
    for (field, hex, fact) in [
        ("tsi", "E800", "Card risk management was performed"),
        ("aip", "3900", "DDA supported"),
        ("auc", "FF00", "Valid at ATMs"),
        ("cvmresults", "3F0002", "No CVM performed"),
        ("cid", "C0", "RFU"),
        ("termcaps", "E0F8C8", "CDA"),
        ("addtermcaps", "F000F0A001", "Code table 1"),
        (
            "iad",
            "06011203A000000F0300001030800000046920AE952C48",
            "CVN18",
        ),
        ("dol", "9F33FF", "9F33 (255) Terminal Capabilities"),
        (
            "track2",
            "4761739001010119D221220117589288895F",
            "Expiry: 2022-12",
        ),
        ("sw", "6A82", "file or application not found"),
        ("atr", "3B6500002063CBA600", "Historical bytes: 2063CBA600"),
    ] {
        let (code, out, err) = decode(&["--field", field, hex]);
        assert_eq!(code, 0, "{field}: {err}");
        assert!(out.contains(fact), "{field}: {out}");
    }
    // Track 2 stays masked without --reveal.
    let (_, out, _) = decode(&["--field", "track2", "4761739001010119D221220117589288895F"]);
    assert!(!out.contains("4761739001010119"), "{out}");
    let (_, out, _) = decode(&[
        "--reveal",
        "--field",
        "track2",
        "4761739001010119D221220117589288895F",
    ]);
    assert!(out.contains("4761739001010119"), "{out}");
}

#[test]
fn vipa_names_only_for_vipa_data() {
    let e0 = "E0039C0100";
    let (_, plain, _) = decode(&[e0]);
    assert!(plain.starts_with("E0 Unknown"), "{plain}");
    let (_, vipa, _) = decode(&["--vipa", e0]);
    assert!(!vipa.starts_with("E0 Unknown"), "{vipa}");
    assert!(vipa.contains("Purchase"), "{vipa}");
}
