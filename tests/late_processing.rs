//! Late processing: the sandbox charges the ledger but its answer comes after the client's
//! timeout (`late`) or never (`drop` after commit). `emvbridge sale --gateway-timeout-ms`
//! gives up, the card is told AAC and the bridge reverses; `emvbridge resolve` settles
//! what is left. The final word must equal the ledger: no charge left when the POS was not
//! told approved, and never "reversed" in the journal while the ledger still holds a charge.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use emvbridge::journal::{Journal, RelayState};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_emvbridge"))
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("emvb-late-{name}-{}.db", std::process::id()));
    cleanup(&p);
    p
}

fn cleanup(p: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
}

async fn sim_post(gw: &SandboxHandle, path: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}{path}", gw.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn ledger(gw: &SandboxHandle, client_ref: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_sim/ledger?client_ref={client_ref}", gw.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["transactions"].as_array().cloned().unwrap_or_default()
}

/// Whether a ledger row is a charge that still holds the customer's money (a void or
/// refund has its own row, `kind` `void`/`refund`, with the charge as `parent`).
fn charged(row: &Value) -> bool {
    matches!(row["kind"].as_str(), Some("sale" | "authorize"))
        && matches!(
            row["state"].as_str(),
            Some("approved" | "partially_refunded")
        )
}

/// Runs `cmd` off the runtime's workers (they serve the sandbox meanwhile).
async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// One sale whose authorization meets `action` `times` times. With `times` 0 every attempt
/// meets it and the status lookups are late too, so neither the client's idempotent re-sends
/// nor its lookups recover the answer during the sale; the faults are cleared before
/// `resolve`.
async fn late_case(dialect: &str, sim_dialect: &str, action: Value, times: u32) -> String {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let name = format!("{dialect}-{}-{times}", action["type"].as_str().unwrap());
    let path = temp(&name);
    let reference = format!("late-{name}");
    // Only the authorization is processed late; reversals and lookups answer normally.
    assert_eq!(
        sim_post(
            &gw,
            "/_sim/faults",
            json!({"match": {"dialect": sim_dialect, "op": "emv", "client_ref": reference}, "action": action, "times": times}),
        )
        .await,
        201
    );
    if times == 0 {
        let lookup = json!({"match": {"dialect": sim_dialect, "op": "query"}, "action": {"type": "late", "ms": 1500}, "times": 0});
        assert_eq!(sim_post(&gw, "/_sim/faults", lookup).await, 201);
    }
    let mut sale = bin();
    sale.args(["sale", "--json", "--amount", "12.34", "--dialect", dialect])
        .args(["--gateway", &gw.url(), "--reference", &reference])
        .args(["--gateway-timeout-ms", "700"])
        .arg("--journal")
        .arg(&path);
    let out = run(sale).await;
    let told: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let told = told["status"].as_str().unwrap_or_default().to_owned();
    // The gateway did process it, once.
    let sales = |rows: &[Value]| rows.iter().filter(|r| r["kind"] == "sale").count();
    assert_eq!(sales(&ledger(&gw, &reference).await), 1, "{reference}");

    let cleared = reqwest::Client::new()
        .delete(format!("{}/_sim/faults", gw.url()))
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success());
    // Let the late answer go by, then resolve until nothing is left.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut settled = false;
    for _ in 0..5 {
        let mut resolve = bin();
        resolve
            .args(["resolve", "--dialect", dialect, "--gateway", &gw.url()])
            .arg("--journal")
            .arg(&path)
            .args(["--min-age-secs", "0", "--timeout-ms", "3000"]);
        let out = run(resolve).await;
        if out.status.code() == Some(0) {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let e = Journal::open(&path)
        .unwrap()
        .get(&reference)
        .unwrap()
        .unwrap();
    let rows = ledger(&gw, &reference).await;
    let charges = rows.iter().filter(|r| charged(r)).count();
    assert_eq!(sales(&rows), 1, "{reference}: one authorization: {rows:#?}");
    assert!(settled, "{reference}: still open: {e:?} {rows:#?}");
    if told == "approved" {
        // The answer was recovered (a re-sent idempotent request): one charge, kept.
        assert_eq!(charges, 1, "{reference}: told approved, ledger {rows:#?}");
        assert_eq!(e.state, RelayState::Approved, "{reference}: {e:?}");
    } else {
        // The POS was not told approved: every charge is back.
        assert_eq!(charges, 0, "{reference}: told {told}, ledger {rows:#?}");
        assert!(
            matches!(e.state, RelayState::Reversed | RelayState::NotFound),
            "{reference}: {e:?}"
        );
    }
    // Never "reversed" in the journal while the ledger still holds a charge.
    assert!(
        !(e.state == RelayState::Reversed && charges > 0),
        "{reference}: reversed while charged: {rows:#?}"
    );
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await,
        200
    );
    gw.shutdown().await;
    cleanup(&path);
    told
}

/// Runs every case of `action` and checks that both final words were reached: at least one
/// sale told approved (a re-sent idempotent request recovered the answer) and one not
/// (nothing recovered it: the bridge reversed), so neither branch of the check is vacuous.
async fn both_ways(action: Value) {
    let mut told = Vec::new();
    for (dialect, sim) in [("paymentsai", "pai"), ("number", "number")] {
        for times in [1, 0] {
            let t = late_case(dialect, sim, action.clone(), times).await;
            told.push(format!("{dialect}/{times}: {t}"));
        }
    }
    assert!(told.iter().any(|t| t.ends_with(": approved")), "{told:?}");
    assert!(told.iter().any(|t| !t.ends_with(": approved")), "{told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answer_beyond_the_timeout_leaves_the_ledger_as_the_pos_was_told() {
    both_ways(json!({"type": "late", "ms": 1500})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_then_dropped_leaves_the_ledger_as_the_pos_was_told() {
    both_ways(json!({"type": "drop", "commit": true, "when": "before_headers"})).await;
}
