//! `emvbridge serve` with the relay: the journal in front of the gateway and as the API's
//! durable store. A sale is journaled and its answer survives a restart (same request id →
//! the original body, `Idempotent-Replayed: true`; `GET` of the transaction); an
//! authorization hung by the sandbox while the server process is SIGKILLed is shown
//! `unresolved` after the restart and settled (reversed) by the background resolver, with the
//! sandbox's `no_orphans` passing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emvbridge::api::{self, ApiOptions, ApiServer};
use emvbridge::config::RelayOptions;
use emvbridge::journal::{Journal, RelayState};
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "relay-test-token-0123456789abcdef0123456789";
/// The simulated card's PAN (visa-cvn18), which must never reach the journal file.
const CLEAR_PAN: &[u8] = b"4012000098765439";
const BCD_PAN: [u8; 8] = [0x40, 0x12, 0x00, 0x00, 0x98, 0x76, 0x54, 0x39];

struct Files {
    dir: PathBuf,
    journal: PathBuf,
    config: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("emvb-apirelay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("journal.db");
        let config = dir.join("relay.toml");
        // Short resolver intervals for a fast test; min age long enough that a live
        // transaction is never touched and that a restarted server first shows "unresolved".
        std::fs::write(
            &config,
            format!(
                "[journal]\npath = {:?}\n[resolver]\nmin_age_secs = 3\ninterval_secs = 1\nbackoff_secs = 1\nmax_backoff_secs = 2\n",
                journal.display().to_string()
            ),
        )
        .unwrap();
        Files {
            dir,
            journal,
            config,
        }
    }

    fn relay(&self) -> RelayOptions {
        RelayOptions {
            journal: None,
            config: Some(self.config.clone()),
        }
    }

    /// No clear PAN, as text or packed BCD, in the journal or its WAL.
    fn assert_no_clear_pan(&self) {
        for ext in ["", "-wal"] {
            let Ok(bytes) = std::fs::read(format!("{}{ext}", self.journal.display())) else {
                continue;
            };
            assert!(!bytes.is_empty() || !ext.is_empty());
            assert!(
                !bytes.windows(CLEAR_PAN.len()).any(|w| w == CLEAR_PAN),
                "clear PAN in journal{ext}"
            );
            assert!(
                !bytes.windows(BCD_PAN.len()).any(|w| w == BCD_PAN),
                "BCD PAN in journal{ext}"
            );
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn server(gw: &SandboxHandle, files: &Files) -> ApiServer {
    api::start_with_relay(
        ApiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow_remote: false,
            token: TOKEN.into(),
            terminal: TerminalOptions {
                gateway: gw.url(),
                ..TerminalOptions::default()
            },
            sale_timeout: Duration::from_secs(30),
            txn_config: TxnConfig::default(),
        },
        files.relay(),
    )
    .await
    .expect("api starts")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: String) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(
        &self,
        path: &str,
        request_id: &str,
        body: &Value,
        prefer_async: bool,
    ) -> (StatusCode, Option<String>, String) {
        let mut b = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("x-request-id", request_id)
            .header("content-type", "application/json")
            .body(body.to_string());
        if prefer_async {
            b = b.header("prefer", "respond-async");
        }
        let r = b.send().await.unwrap();
        let st = r.status();
        let replayed = r
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (st, replayed, r.text().await.unwrap())
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

fn relay_state(path: &Path, reference: &str) -> Option<RelayState> {
    Some(Journal::open(path).ok()?.get(reference).ok()??.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sale_is_journaled_and_its_answer_survives_a_restart() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new("restart");
    let s = server(&gw, &files).await;
    let c = Client::new(format!("http://{}", s.addr));
    let body = json!({"amount": 1234, "currency": "USD"});
    let (st, replayed, first) = c.post("/v1/sales", "pos-1", &body, false).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(replayed, None);
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["status_description"], "approved by the issuer");
    assert_eq!(v["card"]["masked_pan"], "401200******5439", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // The relay recorded it: approved at the gateway and told to the POS.
    let j = s.journal().expect("journaling is on").clone();
    let e = j.get(&id).unwrap().expect("journal row");
    assert_eq!(
        (e.state, e.pos_status.as_deref()),
        (RelayState::Approved, Some("approved"))
    );
    assert_eq!(e.gateway_id.as_deref(), v["gateway_id"].as_str());
    drop(j);
    // Health reports the relay.
    let (st, h) = c.get("/v1/health").await;
    assert_eq!(st, 200);
    assert_eq!(
        h["relay"]["journal"].as_str(),
        Some(files.journal.display().to_string().as_str()),
        "{h}"
    );
    assert_eq!(h["relay"]["store"], "journal");
    assert_eq!(h["relay"]["unresolved"], 0, "{h}");
    assert_eq!(h["relay"]["unresolved_transactions"], 0, "{h}");
    s.shutdown().await;

    // A new instance on the same journal.
    let s = server(&gw, &files).await;
    let c = Client::new(format!("http://{}", s.addr));
    let (st, replayed, again) = c.post("/v1/sales", "pos-1", &body, false).await;
    assert_eq!(st, 200);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(again, first, "the original body");
    // The same id with another body is still refused.
    let (st, _, err) = c
        .post(
            "/v1/sales",
            "pos-1",
            &json!({"amount": 999, "currency": "USD"}),
            false,
        )
        .await;
    assert_eq!(st, 422, "{err}");
    let (st, rec) = c.get(&format!("/v1/transactions/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(rec["status"], "approved");
    assert_eq!(rec["id"], id.as_str());
    // One charge at the gateway.
    assert_eq!(ledger(&gw, &id).await.len(), 1);
    // Follow-ups work on the record from before the restart.
    let (st, _, refunded) = c
        .post(
            "/v1/refunds",
            "pos-2",
            &json!({"amount": 234, "currency": "USD", "transaction_id": id}),
            false,
        )
        .await;
    assert_eq!(st, 200, "{refunded}");
    let (_, rec) = c.get(&format!("/v1/transactions/{id}")).await;
    assert_eq!(rec["operations"][0]["op"], "refund", "{rec}");
    assert_eq!(rec["operations"][0]["status"], "done", "{rec}");
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await,
        200
    );
    s.shutdown().await;
    files.assert_no_clear_pan();
    gw.shutdown().await;
}

/// Starts `emvbridge serve` as a child; returns it and its base URL.
fn spawn_serve(gw: &SandboxHandle, files: &Files) -> (std::process::Child, String) {
    let token_file = files.dir.join("token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&token_file)
            .unwrap();
        writeln!(f, "{TOKEN}").unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--gateway", &gw.url()])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--config")
        .arg(&files.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("serve announces its address");
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_serve_leaves_an_authorization_the_restart_settles() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new("kill");
    // The next authorization of 12.34 is committed by the sandbox and never answered.
    assert_eq!(
        sim_post(
            &gw,
            "/_sim/faults",
            json!({"match": {"dialect": "pai", "op": "emv", "amount_minor": 1234}, "action": {"type": "hang", "commit": true}, "times": 1}),
        )
        .await,
        201
    );
    let (mut child, base) = spawn_serve(&gw, &files);
    let c = Client::new(base);
    let body = json!({"amount": 1234, "currency": "USD"});
    let (st, _, started) = c.post("/v1/sales", "pos-kill", &body, true).await;
    assert_eq!(st, 202, "{started}");
    let v: Value = serde_json::from_str(&started).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    // Wait until the journal shows the authorization sent and the sandbox committed it.
    let t0 = Instant::now();
    loop {
        if relay_state(&files.journal, &id) == Some(RelayState::Sending)
            && !ledger(&gw, &id).await.is_empty()
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert_eq!(ledger(&gw, &id).await[0]["state"], "approved");
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await,
        409
    );

    // Restart on the same journal.
    let s = server(&gw, &files).await;
    let c = Client::new(format!("http://{}", s.addr));
    let (st, rec) = c.get(&format!("/v1/transactions/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(rec["status"], "unresolved", "{rec}");
    assert_eq!(
        rec["status_description"],
        "outcome unknown, being resolved; treat as not paid"
    );
    // The POS retries its request: it is led to the same transaction, not charged again.
    let (st, replayed, again) = c.post("/v1/sales", "pos-kill", &body, false).await;
    assert_eq!(st, 202, "{again}");
    assert_eq!(replayed.as_deref(), Some("true"));
    let v: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(v["id"], id.as_str());
    // The background resolver settles it, and the record follows.
    let t0 = Instant::now();
    let rec = loop {
        let (_, rec) = c.get(&format!("/v1/transactions/{id}")).await;
        if rec["status"] != "unresolved" {
            break rec;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never settled: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rec["status"], "reversed", "{rec}");
    assert_eq!(relay_state(&files.journal, &id), Some(RelayState::Reversed));
    assert!(matches!(
        ledger(&gw, &id).await[0]["state"].as_str(),
        Some("voided" | "refunded")
    ));
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await,
        200
    );
    assert_eq!(ledger(&gw, &id).await.len(), 1, "one authorization only");
    // Health: nothing unresolved, a pass on record.
    let (_, h) = c.get("/v1/health").await;
    assert_eq!(h["relay"]["unresolved"], 0, "{h}");
    assert_eq!(h["relay"]["unresolved_transactions"], 0, "{h}");
    assert!(h["relay"]["last_pass"]["at"].as_u64().is_some(), "{h}");
    s.shutdown().await;
    files.assert_no_clear_pan();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_running_sale_end_definitely() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new("shutdown");
    // The authorization takes 1.5 s: the shutdown comes while it is in flight.
    assert_eq!(
        sim_post(
            &gw,
            "/_sim/faults",
            json!({"match": {"dialect": "pai", "op": "emv", "amount_minor": 1500}, "action": {"type": "delay", "ms": 1500}, "times": 1}),
        )
        .await,
        201
    );
    let s = server(&gw, &files).await;
    let c = Client::new(format!("http://{}", s.addr));
    let (st, _, started) = c
        .post(
            "/v1/sales",
            "pos-stop",
            &json!({"amount": 1500, "currency": "USD"}),
            true,
        )
        .await;
    assert_eq!(st, 202, "{started}");
    let id = serde_json::from_str::<Value>(&started).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t0 = Instant::now();
    while relay_state(&files.journal, &id) != Some(RelayState::Sending) {
        assert!(t0.elapsed() < Duration::from_secs(20), "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.shutdown().await;
    // Ended definitely: the record is final and the relay row settled, no money left behind.
    let j = Journal::open(&files.journal).unwrap();
    let rec = emvbridge::api::Store::transaction(&j, &id).expect("record");
    assert!(
        !matches!(
            rec.status,
            emvbridge::api::ApiStatus::InProgress | emvbridge::api::ApiStatus::Unresolved
        ),
        "{rec:?}"
    );
    let e = j.get(&id).unwrap().unwrap();
    assert!(!e.state.is_unresolved(), "{e:?}");
    assert!(e.pos_status.is_some(), "{e:?}");
    eprintln!(
        "shutdown mid-authorization ended {:?} (relay {})",
        rec.status, e.state
    );
    assert_eq!(
        sim_post(&gw, "/_sim/assert/no_orphans", json!({})).await,
        200
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_approval_is_the_merchant_s_not_the_issuer_s() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new("offline");
    std::fs::write(
        &files.config,
        format!(
            "[journal]\npath = {:?}\n[store_and_forward]\nenabled = true\nmax_amount_minor = 10000\nmax_count = 5\nmax_total_minor = 20000\n[resolver]\nmin_age_secs = 3\ninterval_secs = 1\n",
            files.journal.display().to_string()
        ),
    )
    .unwrap();
    let s = api::start_with_relay(
        ApiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow_remote: false,
            token: TOKEN.into(),
            terminal: TerminalOptions {
                gateway: gw.url(),
                card: "offline-approve".into(),
                ..TerminalOptions::default()
            },
            sale_timeout: Duration::from_secs(30),
            txn_config: TxnConfig::default(),
        },
        files.relay(),
    )
    .await
    .unwrap();
    let c = Client::new(format!("http://{}", s.addr));
    let (st, _, body) = c
        .post(
            "/v1/sales",
            "pos-off",
            &json!({"amount": 1234, "currency": "USD"}),
            false,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "approved_offline", "{v}");
    assert_eq!(
        v["status_description"],
        "approved by merchant, stored; not an issuer approval"
    );
    for copy in ["merchant", "customer"] {
        let text = v["receipt"][copy].as_str().unwrap();
        assert!(text.contains("APPROVED BY MERCHANT - STORED"), "{text}");
        assert!(text.contains("NOT AN ISSUER APPROVAL"), "{text}");
    }
    let id = v["id"].as_str().unwrap();
    let e = s.journal().unwrap().get(id).unwrap().unwrap();
    assert_eq!(
        (e.state, e.pos_status.as_deref()),
        (RelayState::Stored, Some("approved_offline"))
    );
    s.shutdown().await;
    files.assert_no_clear_pan();
    gw.shutdown().await;
}
