//! The reliability soak in CI: `emvbridge soak` runs real `emvbridge sale` processes
//! against one sandbox gateway and one journal, with seeded SIGKILLs (crash anywhere),
//! sandbox fault mixes (gateway chaos, every dialect) and simulated-reader faults (line
//! noise); each run must end with every sale in a definite state, the journal settled and
//! intact, `/_sim/assert/no_orphans` passing and the journal and the ledger agreeing.
//! Longer runs: see the README's resilience section.

use std::process::Command;

use serde_json::Value;

fn soak(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .arg("soak")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let f: Value = serde_json::from_str(&stdout).unwrap();
    eprintln!("{f}");
    f
}

fn invariants(f: &Value, sales: u64) {
    assert_eq!(f["sales"], sales, "{f}");
    let outcomes: u64 = f["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(outcomes, sales, "every sale accounted for: {f}");
    for k in [
        "hung",
        "unsettled",
        "lost_approvals",
        "double_charges",
        "disagreements",
    ] {
        assert_eq!(f[k], 0, "{k}: {f}");
    }
    assert_eq!(f["no_orphans"], true, "{f}");
    assert_eq!(f["integrity"], "ok", "{f}");
    assert_eq!(f["failures"].as_array().map(Vec::len), Some(0), "{f}");
    assert!(f["ledger_charged"].as_u64().unwrap() > 0, "{f}");
}

#[test]
fn crash_anywhere_200_sales_with_sigkill() {
    // 45 % aimed: a kill aimed after the outcome races the sale's own exit, so some miss, more
    // so on a loaded machine; this rate keeps well over 50 landed (62–67 measured alone).
    let f = soak(&["--sales", "200", "--seed", "11", "--kill", "0.45"]);
    invariants(&f, 200);
    let landed = f["kills_landed"].as_object().unwrap();
    let kills: u64 = landed.values().map(|v| v.as_u64().unwrap()).sum();
    assert!(kills >= 50, "{f}");
    assert_eq!(f["outcomes"]["killed"], kills, "{f}");
    // Every phase was hit: before any journal row, with the authorization in flight, after
    // the approval before the card's final answer, and after the outcome.
    for phase in ["no_row", "sending", "approved_untold", "outcome_journaled"] {
        assert!(
            landed.get(phase).is_some(),
            "no kill landed at {phase}: {f}"
        );
    }
    assert_eq!(f["irreversible"], 0);
}

#[test]
fn gateway_chaos_every_dialect() {
    for (i, dialect) in ["paymentsai", "number", "pay1st"].into_iter().enumerate() {
        let seed = (21 + i).to_string();
        let f = soak(&[
            "--sales",
            "40",
            "--seed",
            &seed,
            "--gateway-faults",
            "0.7",
            "--dialect",
            dialect,
        ]);
        invariants(&f, 40);
        assert!(f["gateway_rules"].as_u64().unwrap() >= 30, "{f}");
        if dialect != "pay1st" {
            assert_eq!(f["irreversible"], 0, "{f}");
        }
    }
}

#[test]
fn line_noise_with_reader_events() {
    let f = soak(&[
        "--sales",
        "120",
        "--seed",
        "31",
        "--line-faults",
        "dup=0.01,split,corrupt-lrc=0.005,flip=0.0001",
        "--line-events",
        "0.05",
    ]);
    invariants(&f, 120);
    assert!(f["line_events_injected"].as_u64().unwrap() >= 2, "{f}");
}
