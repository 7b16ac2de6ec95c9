//! `emvbridge demo` end to end: the real binary with no flags runs its scripted sales on the
//! embedded simulator and sandbox gateway and exits 0 only when every one ended as scripted.

use std::process::Command;

#[test]
fn demo_runs_every_scripted_sale_as_expected() {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .arg("demo")
        .output()
        .expect("run emvbridge demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // Says what it runs on.
    assert!(stdout.contains("simulated reader") && stdout.contains("sandbox gateway"));
    // Prompts as they happen, receipts, the reasons.
    for want in [
        "[INSERT, TAP OR SWIPE CARD]",
        "[AUTHORIZING...]",
        "[ENTER PIN]",
        "[CARD REMOVED]",
        "[REVERSING]",
        "CUSTOMER COPY",
        "PIN VERIFIED",
        "CODE 51",
        "REVERSED - NOT CHARGED",
        "declined offline by the card",
        "approved by a tap",
        "CONTACTLESS",
        "[CARD SWIPED]",
        "[USE CHIP READER]",
    ] {
        assert!(stdout.contains(want), "missing {want:?}:\n{stdout}");
    }
    // The summary table, every row as scripted.
    assert!(stdout.contains("8/8 sales ended as scripted"), "{stdout}");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("#   scenario"))
        .collect();
    assert_eq!(table.len(), 10, "{stdout}");
    for row in &table[1..9] {
        assert!(row.ends_with("yes"), "{row}");
    }
    assert!(
        table[2].contains("tap") && table[2].contains("approved"),
        "{}",
        table[2]
    );
    assert!(table[5].contains("declined (51)"), "{}", table[5]);
    assert!(table[7].contains("reversed"), "{}", table[7]);
    // Masked PANs only.
    for pan in ["4012000098765439", "5454545454545454", "4000000000000002"] {
        assert!(!stdout.contains(pan) && !stderr.contains(pan), "{pan}");
    }
}
