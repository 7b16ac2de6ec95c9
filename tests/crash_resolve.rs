//! The relay's crash test: `emvbridge sale --journal` is SIGKILLed between sending the
//! authorization and recording its answer (the sandbox hangs the authorization after
//! committing it); `emvbridge resolve` then settles the row and the sandbox's `no_orphans`
//! passes. Also: `sale --journal` in every dialect, and store-and-forward end to end
//! (gateway unreachable → approved offline and stored → forwarded by `resolve`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emvbridge::journal::{Journal, RelayState};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_emvbridge"))
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("emvb-crash-{name}-{}.db", std::process::id()));
    cleanup(&p);
    p
}

fn cleanup(p: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
}

async fn sim_post(gw: &SandboxHandle, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", gw.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
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

fn state(path: &Path, reference: &str) -> Option<RelayState> {
    Journal::open(path).ok()?.get(reference).ok()??.state.into()
}

async fn crash_and_resolve(dialect: &str, sim_dialect: &str) {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let path = temp(dialect);
    let reference = format!("crash-{dialect}");
    let (s, _) = sim_post(
        &gw,
        "/_sim/faults",
        json!({"match": {"dialect": sim_dialect, "op": "emv", "client_ref": reference}, "action": {"type": "hang", "commit": true}}),
    )
    .await;
    assert_eq!(s, 201);
    let mut child = bin()
        .args([
            "sale",
            "--amount",
            "12.34",
            "--dialect",
            dialect,
            "--gateway",
            &gw.url(),
        ])
        .arg("--journal")
        .arg(&path)
        .args(["--reference", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the journal shows the authorization sent and the sandbox has committed it.
    let t0 = Instant::now();
    loop {
        let sent = state(&path, &reference) == Some(RelayState::Sending);
        if sent && !ledger(&gw, &reference).await.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "sale never sent the authorization"
        );
        assert!(child.try_wait().unwrap().is_none(), "sale ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(state(&path, &reference), Some(RelayState::Sending));
    assert_eq!(ledger(&gw, &reference).await[0]["state"], "approved");
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await.0,
        409
    );

    // Restart: one resolver pass.
    let out = bin()
        .args(["resolve", "--dialect", dialect, "--gateway", &gw.url()])
        .arg("--journal")
        .arg(&path)
        .args(["--min-age-secs", "0", "--timeout-ms", "2000"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("settled {reference}: reversed")),
        "{stdout}"
    );
    // The operator's log names the row's resolution in its span: the reversal's own lines
    // (the gateway call) and the verdict carry the reference.
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let in_resolve = |l: &Value| {
        let named = |s: &Value| {
            s["name"] == "resolve" && s["reference"].as_str() == Some(reference.as_str())
        };
        named(&l["span"]) || l["spans"].as_array().into_iter().flatten().any(named)
    };
    for message in ["gateway reversal", "resolved"] {
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == message && in_resolve(l)),
            "{message}: {stderr}"
        );
    }
    assert_eq!(state(&path, &reference), Some(RelayState::Reversed));
    let l = ledger(&gw, &reference).await;
    assert!(
        matches!(l[0]["state"].as_str(), Some("voided" | "refunded")),
        "{l:?}"
    );
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await.0,
        200
    );
    // The report sees it settled; nothing unresolved (exit 0).
    let out = bin()
        .args([
            "report",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--json",
        ])
        .arg("--journal")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lines"][0]["state"], "reversed", "{v}");
    assert_eq!(v["lines"][0]["count"], 1);
    assert_eq!(v["unresolved"].as_array().map(Vec::len), Some(0));
    gw.shutdown().await;
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_send_and_answer_paymentsai() {
    crash_and_resolve("paymentsai", "pai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_send_and_answer_number() {
    crash_and_resolve("number", "number").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sale_with_journal_in_every_dialect() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    for dialect in ["paymentsai", "number", "pay1st"] {
        let path = temp(&format!("sale-{dialect}"));
        let reference = format!("j-{dialect}");
        let out = bin()
            .args([
                "sale",
                "--amount",
                "12.34",
                "--dialect",
                dialect,
                "--gateway",
                &gw.url(),
            ])
            .arg("--journal")
            .arg(&path)
            .args(["--reference", &reference])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j = Journal::open(&path).unwrap();
        let e = j.get(&reference).unwrap().unwrap();
        assert_eq!(e.state, RelayState::Approved);
        assert_eq!(e.pos_status.as_deref(), Some("approved"));
        assert_eq!(e.dialect, dialect);
        assert_eq!(e.masked_pan.as_deref(), Some("401200******5439"));
        assert!(!e.has_icc);
        let l = ledger(&gw, &reference).await;
        assert_eq!(l[0]["id"].as_str(), e.gateway_id.as_deref());
        // No clear PAN anywhere in the file.
        let bytes = std::fs::read(&path).unwrap();
        let clear = b"4012000098765439";
        assert!(!bytes.windows(clear.len()).any(|w| w == clear));
        drop(j);
        cleanup(&path);
    }
    // Issuer approves, card declines (x.91): the engine reverses through the journal.
    let path = temp("sale-91");
    let out = bin()
        .args([
            "sale",
            "--amount",
            "12.91",
            "--gateway",
            &gw.url(),
            "--reference",
            "j-91",
        ])
        .arg("--journal")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = Journal::open(&path).unwrap().get("j-91").unwrap().unwrap();
    assert_eq!(
        (e.state, e.pos_status.as_deref()),
        (RelayState::Reversed, Some("reversed"))
    );
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await.0,
        200
    );
    cleanup(&path);
    gw.shutdown().await;
}

/// Store-and-forward through the binary. The simulated cards decline at `Y3` (their action
/// codes refuse "unable to go online"), so the online-then-offline path stores nothing; the
/// `offline-approve` card approves below its floor limit without going online (`Y1`): the
/// sale is stored with its TC data set and `resolve` forwards it (more in
/// tests/store_forward.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_forward_through_the_binary() {
    let path = temp("saf");
    let dir = std::env::temp_dir().join(format!("emvb-saf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("relay.toml");
    std::fs::write(
        &cfg,
        format!(
            "environment = \"sandbox\"\ndialect = \"paymentsai\"\n[journal]\npath = {:?}\n[store_and_forward]\nenabled = true\nmax_amount_minor = 10000\nmax_count = 5\nmax_total_minor = 20000\n",
            path.display().to_string()
        ),
    )
    .unwrap();
    // Nothing listens on the gateway port: unavailable.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead_url = format!("http://127.0.0.1:{dead}");
    let sale = |amount: &str, reference: &str, card: &str| {
        bin()
            .args([
                "sale",
                "--amount",
                amount,
                "--gateway",
                &dead_url,
                "--reference",
                reference,
                "--card",
                card,
                "--json",
            ])
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = sale("12.34", "saf-y3", "visa-cvn18");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "declined", "{v}");
    assert_eq!(
        v["card"]["arc"], "Z3",
        "the card refused the offline approval: {v}"
    );
    let e = Journal::open(&path)
        .unwrap()
        .get("saf-y3")
        .unwrap()
        .unwrap();
    assert_eq!((e.state, e.has_icc), (RelayState::Unavailable, false));
    let out = sale("12.34", "saf-y1", "offline-approve");
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "approved_offline", "{v}");
    let e = Journal::open(&path)
        .unwrap()
        .get("saf-y1")
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.state, e.pos_status.as_deref()),
        (RelayState::Stored, Some("approved_offline"))
    );
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let out = bin()
        .args(["resolve", "--gateway", &gw.url(), "--min-age-secs", "0"])
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("settled saf-y1: forwarded"),
        "{stderr}"
    );
    let out = bin()
        .args([
            "report",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--csv",
        ])
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{csv}");
    assert!(
        csv.contains("summary,paymentsai,unavailable,USD,1,12.34,0.00,"),
        "{csv}"
    );
    assert!(!csv.contains("escalated"), "{csv}");
    gw.shutdown().await;
    cleanup(&path);
}
