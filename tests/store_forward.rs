//! Store-and-forward end to end through the binary: with the gateway unreachable (a closed
//! port) and store-and-forward on, the `offline-approve` card approves below its floor limit
//! (`Y1`, a TC from the first GENERATE AC) and the sale is stored with its TC data set; once
//! the sandbox is up, `emvbridge resolve` forwards it once in the dialect's sale message, the
//! sandbox verifies the TC with the issuer keys and charges the ledger exactly once — also
//! when two `resolve` run at the same time. Above the limit or beyond the count the sale is
//! declined and nothing is stored. (Each `sale` also tries to forward what is stored, against
//! the dead gateway; a one-second backoff lets the later `resolve` retry soon.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use emvbridge::journal::{Journal, RelayState};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_emvbridge"))
}

fn cleanup(p: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
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

struct Rig {
    dir: PathBuf,
    journal: PathBuf,
    config: PathBuf,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("emvb-sf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("journal.db");
        cleanup(&journal);
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "environment = \"sandbox\"\ndialect = \"paymentsai\"\n[journal]\npath = {:?}\n[store_and_forward]\nenabled = true\nmax_amount_minor = 3000\nmax_count = 2\nmax_total_minor = 10000\nmax_age_secs = 86400\n[resolver]\nbackoff_secs = 1\nmax_backoff_secs = 1\n",
                journal.display().to_string()
            ),
        )
        .unwrap();
        Rig {
            dir,
            journal,
            config,
        }
    }

    fn sale(&self, gateway: &str, amount: &str, reference: &str) -> Value {
        let out = bin()
            .args([
                "sale",
                "--amount",
                amount,
                "--gateway",
                gateway,
                "--reference",
                reference,
                "--card",
                "offline-approve",
                "--json",
            ])
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    fn resolve(&self, gateway: &str) -> std::process::Child {
        bin()
            .args(["resolve", "--gateway", gateway, "--min-age-secs", "0"])
            .arg("--config")
            .arg(&self.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn state(&self, reference: &str) -> Option<(RelayState, bool)> {
        let e = Journal::open(&self.journal).ok()?.get(reference).ok()??;
        Some((e.state, e.has_icc))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        cleanup(&self.journal);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
}

fn finished(o: Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_approval_is_stored_and_forwarded_once() {
    let rig = Rig::new("once");
    let dead = closed_port();

    // Below the floor limit and within the limits: approved offline, stored with its TC.
    let v = rig.sale(&dead, "12.34", "sf-1");
    assert_eq!(v["status"], "approved_offline", "{v}");
    assert_eq!(v["card"]["arc"], "Y1", "{v}");
    assert_eq!(v["card"]["cryptogram_type"], "TC", "{v}");
    assert_eq!(rig.state("sf-1"), Some((RelayState::Stored, true)));
    let v = rig.sale(&dead, "10.00", "sf-2");
    assert_eq!(v["status"], "approved_offline", "{v}");
    assert_eq!(rig.state("sf-2"), Some((RelayState::Stored, true)));

    // Beyond the count (two outstanding): the card's TC is refused, nothing stored.
    let v = rig.sale(&dead, "10.00", "sf-3");
    assert_eq!(v["status"], "declined", "{v}");
    assert_ne!(rig.state("sf-3").map(|s| s.0), Some(RelayState::Stored));

    // The gateway is back (and the backoff of the sales' own forward attempts has passed):
    // two resolvers at once forward each stored sale exactly once.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    // Waited for off the runtime's workers, which serve the sandbox meanwhile.
    let (a, b) = (rig.resolve(&gw.url()), rig.resolve(&gw.url()));
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    // Either may find a row the other holds (exit 3, still open): never a second charge.
    for o in [&a, &b] {
        eprintln!(
            "resolve: {:?} {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(matches!(o.status.code(), Some(0 | 3)));
    }
    let c = rig.resolve(&gw.url());
    finished(
        tokio::task::spawn_blocking(move || c.wait_with_output().unwrap())
            .await
            .unwrap(),
    );
    for reference in ["sf-1", "sf-2"] {
        let rows = ledger(&gw, reference).await;
        assert_eq!(rows.len(), 1, "{reference}: one charge: {rows:?}");
        assert_eq!(rows[0]["state"], "approved", "{reference}: {rows:?}");
        assert_eq!(
            rig.state(reference).map(|s| s.0),
            Some(RelayState::Forwarded),
            "{reference}"
        );
    }
    assert_eq!(rows_amount(&ledger(&gw, "sf-1").await), Some(1234));
    assert!(
        ledger(&gw, "sf-3").await.is_empty(),
        "a declined sale is never sent"
    );

    // Another pass finds nothing left to forward: still one charge each.
    let c = rig.resolve(&gw.url());
    finished(
        tokio::task::spawn_blocking(move || c.wait_with_output().unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(ledger(&gw, "sf-1").await.len(), 1);
    assert_eq!(ledger(&gw, "sf-2").await.len(), 1);
    gw.shutdown().await;
}

/// The ledger row's amount in minor units, whichever of the usual field names carries it.
fn rows_amount(rows: &[Value]) -> Option<u64> {
    let r = rows.first()?;
    ["amount_minor", "amount"]
        .iter()
        .find_map(|k| r.get(*k).and_then(Value::as_u64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_store_and_forward_limit_is_declined_not_stored() {
    let rig = Rig::new("limit");
    let dead = closed_port();
    // Above max_amount_minor (30.00) and below the card's floor limit: the card approves
    // offline (Y1), but store-and-forward does not allow it.
    let v = rig.sale(&dead, "40.00", "sf-big");
    assert_eq!(v["status"], "declined", "{v}");
    assert_eq!(
        v["card"]["cryptogram_type"], "TC",
        "the card did approve: {v}"
    );
    assert_ne!(rig.state("sf-big").map(|s| s.0), Some(RelayState::Stored));
    // Above the card's floor limit it goes online; unreachable → Z3 → declined.
    let v = rig.sale(&dead, "60.00", "sf-online");
    assert_eq!(v["status"], "declined", "{v}");
    assert_ne!(
        rig.state("sf-online").map(|s| s.0),
        Some(RelayState::Stored)
    );
}
