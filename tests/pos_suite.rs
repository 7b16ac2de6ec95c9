//! What a till's own test suite does against `emvbridge serve`, run as a separate process
//! (the built binary) with its embedded simulated reader, a journal file, and the sandbox
//! gateway on loopback in this process (so its ledger outlives the restarts and can be read),
//! following the event stream as a till does:
//! 1. a sale with `Idempotency-Key` and the POS's reference; the retry with the JSON keys in
//!    another order and other whitespace gets the stored answer (`Idempotent-Replayed`), and
//!    another body under the key is refused (`422 request_id_reused`) without a charge;
//! 2. the simulated card scripted per sale through `/v1/simulator/*`: an approval (with the
//!    auth code the gateway returned), a card decline, an insufficient-funds decline, a PIN
//!    typed by the suite, and the card pulled mid-sale three times — at the offline PIN
//!    prompt and at the online PIN entry (before anything went online: nothing at the
//!    gateway), and between the ARQC and the second GENERATE AC while the gateway holds its
//!    approval (the reader ends the transaction with card removed, `9F23`, and the bridge
//!    reverses: the sandbox's ledger shows the money back; the till was shown CARD REMOVED);
//! 3. `serve` stopped by SIGTERM (its event stream ended, not cut) and, later, killed by
//!    SIGKILL, and started again on the same journal: the till finds its sales by reference,
//!    and the key still replays;
//! 4. the day's sales listed newest first a page of two at a time, and the day's
//!    reconciliation equal to what `emvbridge report` prints over the same journal.
//!
//! Every wait is a poll with a deadline; no sleep stands in for an assertion.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "pos-suite-token-0123456789abcdef0123456789ab";
/// How long any one wait may take on a loaded machine before it is a failure.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long the sandbox holds the approval of the sale whose card is pulled meanwhile.
const GATEWAY_HOLD_MS: u64 = 5_000;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `emvbridge serve` process and what it wrote to standard error.
struct Serve {
    child: Child,
    base: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `serve` on a free loopback port with the simulated reader, the sandbox at
    /// `gateway` and the journal in `dir`, and waits for it to announce its address.
    fn start(dir: &Path, gateway: &str) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
            .args(["serve", "--listen", "127.0.0.1:0", "--gateway", gateway])
            .arg("--journal")
            .arg(dir.join("journal.db"))
            .arg("--token-file")
            .arg(dir.join("token"))
            // Nothing from the machine's own configuration.
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("RUST_LOG", "info")
            .env_remove("EMVBRIDGE_DIALECT")
            .env_remove("EMVBRIDGE_API_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start emvbridge serve");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let keep = lines.clone();
        // Drained to the end, so a chatty server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let base = match rx.recv_timeout(DEADLINE) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "serve did not announce its address: {:#?}",
                    lines.lock().unwrap()
                );
            }
        };
        Serve {
            child,
            base,
            stderr: lines,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends `signal` and waits for the process to end.
    async fn stop(mut self, signal: nix::sys::signal::Signal) -> (ExitStatus, String) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < DEADLINE,
                "serve ignores {signal}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = self.log();
        (status, log)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // A failed assertion must not leave the server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer: status, whether it was a replay, body.
struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

/// The till's HTTP client for one server.
struct Till {
    http: reqwest::Client,
    base: String,
}

impl Till {
    fn new(serve: &Serve) -> Till {
        Till {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: serve.base.clone(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let r = req.bearer_auth(TOKEN).send().await.unwrap();
        let status = r.status();
        let replayed = r
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            replayed,
            body,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let a = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        a.body
    }

    /// A `POST` of the raw JSON text `body` under `key`.
    async fn post_raw(&self, path: &str, key: &str, body: &str, extra: &[(&str, &str)]) -> Answer {
        let mut b = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_owned());
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        self.send(b).await
    }

    /// A simulator action (`POST /v1/simulator/{action}`): the simulator's state after it.
    async fn simulator(&self, action: &str) -> Value {
        let key = format!("sim-{action}-{}", unique());
        let a = self
            .post_raw(&format!("/v1/simulator/{action}"), &key, "", &[])
            .await;
        assert_eq!(a.status, 200, "simulator {action}: {}", a.body);
        a.body
    }

    /// `PUT /v1/simulator/{what}` with `body`: the simulator's state after it.
    async fn set_simulator(&self, what: &str, body: Value) -> Value {
        let a = self
            .send(
                self.http
                    .put(format!("{}/v1/simulator/{what}", self.base))
                    .json(&body),
            )
            .await;
        assert_eq!(a.status, 200, "simulator {what} {body}: {}", a.body);
        a.body
    }

    /// A sale run to its end (`200`): the record.
    async fn sale(&self, key: &str, amount: u64, reference: &str) -> Value {
        let body = json!({"amount": amount, "currency": "USD", "reference": reference});
        let a = self
            .post_raw("/v1/sales", key, &body.to_string(), &[])
            .await;
        assert_eq!(a.status, 200, "sale {reference}: {}", a.body);
        assert!(!a.replayed, "a first request is not a replay");
        assert_eq!(a.body["reference"], reference, "{}", a.body);
        a.body
    }

    /// A sale started with `Prefer: respond-async` (`202`): its id.
    async fn start_sale(&self, key: &str, amount: u64, reference: &str) -> String {
        let body = json!({"amount": amount, "currency": "USD", "reference": reference});
        let a = self
            .post_raw(
                "/v1/sales",
                key,
                &body.to_string(),
                &[("prefer", "respond-async")],
            )
            .await;
        assert_eq!(a.status, 202, "sale {reference}: {}", a.body);
        a.body["id"].as_str().unwrap().to_owned()
    }

    /// Polls the simulator until its transaction is in `state`.
    async fn simulator_reaches(&self, state: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.get("/v1/simulator").await;
            if v["txn"] == state {
                return v;
            }
            assert!(
                t0.elapsed() < DEADLINE,
                "the simulator never reached {state}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls the transaction until it has ended: its record.
    async fn finished(&self, id: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.get(&format!("/v1/transactions/{id}")).await;
            if v["status"] != "in_progress" {
                return v;
            }
            assert!(t0.elapsed() < DEADLINE, "{id} never ended: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The records found by the POS reference.
    async fn by_reference(&self, reference: &str) -> Vec<Value> {
        let v = self
            .get(&format!("/v1/transactions?reference={reference}"))
            .await;
        assert_eq!(v["next_cursor"], Value::Null, "{v}");
        v["data"].as_array().unwrap().clone()
    }
}

/// The server's event stream (`GET /v1/events`, Server-Sent Events) as a till follows it:
/// `(event, data)` in the order received, collected until the server goes away, and how the
/// stream ended (`Some(true)`: the server ended it; `Some(false)`: it was cut).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, Value)>>>, Arc<Mutex<Option<bool>>>);

impl Events {
    /// Subscribes and collects in the background; returns once the stream is open.
    async fn follow(serve: &Serve) -> Events {
        let events = Events::default();
        let r = reqwest::Client::new()
            .get(format!("{}/v1/events", serve.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let keep = events.clone();
        tokio::spawn(async move {
            let mut r = r;
            let mut buf = String::new();
            loop {
                let chunk = match r.chunk().await {
                    Ok(Some(c)) => c,
                    end => {
                        *keep.1.lock().unwrap() = Some(end.is_ok());
                        break;
                    }
                };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                // One event per blank-line-terminated block (`event:`, `id:`, `data:` lines).
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let (mut name, mut data) = (String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if !name.is_empty() {
                        let v = serde_json::from_str(&data).unwrap_or(Value::String(data));
                        keep.0.lock().unwrap().push((name, v));
                    }
                }
            }
        });
        events
    }

    /// How the stream ended, once it has (polled).
    async fn ended(&self) -> bool {
        let t0 = Instant::now();
        loop {
            if let Some(clean) = *self.1.lock().unwrap() {
                return clean;
            }
            assert!(t0.elapsed() < DEADLINE, "the event stream did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The prompt texts shown for transaction `id`, once it has finished (polled).
    async fn prompts_of(&self, id: &str) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            {
                let all = self.0.lock().unwrap();
                let of = |e: &&(String, Value)| e.1["transaction_id"] == id;
                if all
                    .iter()
                    .filter(of)
                    .any(|(n, _)| n == "transaction.finished")
                {
                    return all
                        .iter()
                        .filter(of)
                        .filter(|(n, _)| n == "prompt")
                        .map(|(_, v)| v["text"].as_str().unwrap_or("").to_owned())
                        .collect();
                }
            }
            assert!(
                t0.elapsed() < DEADLINE,
                "no transaction.finished event for {id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether `seen` holds `wanted` in this order (other prompts between them allowed).
fn in_order(seen: &[String], wanted: &[&str]) -> bool {
    let mut it = seen.iter();
    wanted.iter().all(|w| it.any(|s| s == w))
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The sandbox's ledger rows: all of them, or those of one client reference (the bridge's
/// transaction id, its idempotency key towards the gateway).
async fn ledger(gw: &SandboxHandle, client_ref: Option<&str>) -> Vec<Value> {
    let url = match client_ref {
        Some(r) => format!("{}/_sim/ledger?client_ref={r}", gw.url()),
        None => format!("{}/_sim/ledger", gw.url()),
    };
    let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    v["transactions"].as_array().unwrap().clone()
}

/// The one ledger row the sale `rec` made at the gateway.
async fn gateway_row(gw: &SandboxHandle, rec: &Value) -> Value {
    let rows = ledger(gw, rec["id"].as_str()).await;
    assert_eq!(rows.len(), 1, "one gateway row for {}: {rows:?}", rec["id"]);
    assert_eq!(rows[0]["id"], rec["gateway_id"], "{rec}");
    rows[0].clone()
}

/// An approval as the till sees it, checked against the gateway: the auth code it shows is
/// the one the gateway returned, and it is on the receipt.
async fn assert_approved(gw: &SandboxHandle, rec: &Value, amount: u64) {
    assert_eq!(rec["status"], "approved", "{rec}");
    assert_eq!(rec["approved_amount"]["amount"], amount, "{rec}");
    let row = gateway_row(gw, rec).await;
    assert_eq!(
        (&row["kind"], &row["state"], &row["approved_minor"]),
        (&json!("sale"), &json!("approved"), &json!(amount)),
        "{row}"
    );
    let code = rec["auth_code"].as_str().unwrap_or_else(|| panic!("{rec}"));
    assert_eq!(row["auth_code"], code, "the gateway's auth code: {row}");
    let receipt = rec["receipt"]["customer"].as_str().unwrap();
    assert!(
        receipt
            .lines()
            .any(|l| l.starts_with("AUTH CODE") && l.trim_end().ends_with(code)),
        "{receipt}"
    );
    let reference = rec["reference"].as_str().unwrap();
    assert!(
        receipt
            .lines()
            .any(|l| l.starts_with("POS REF") && l.trim_end().ends_with(reference)),
        "{receipt}"
    );
}

/// A sale of the suite as it ended.
#[derive(Debug)]
struct Sale {
    id: String,
    status: String,
    amount: i64,
    created_at: i64,
    /// Whether it reached the gateway.
    online: bool,
}

impl Sale {
    fn of(rec: &Value) -> Sale {
        Sale {
            id: rec["id"].as_str().unwrap().to_owned(),
            status: rec["status"].as_str().unwrap().to_owned(),
            amount: rec["amount"]["amount"].as_i64().unwrap(),
            created_at: rec["created_at"].as_i64().unwrap(),
            online: rec["gateway_id"].is_string(),
        }
    }
}

/// The UTC day (start, `YYYY-MM-DD`) of Unix second `t`.
fn utc_day(t: i64) -> (i64, String) {
    let day = t - t.rem_euclid(86_400);
    let date = time::OffsetDateTime::from_unix_timestamp(day)
        .unwrap()
        .date()
        .to_string();
    (day, date)
}

/// `(kind, state, currency) → (count, requested, approved)` of a report's `lines`.
fn totals(lines: &Value) -> BTreeMap<(String, String, String), (u64, i64, i64)> {
    let mut m = BTreeMap::new();
    for l in lines.as_array().unwrap() {
        let key = (
            l["kind"].as_str().unwrap().to_owned(),
            l["state"].as_str().unwrap().to_owned(),
            l["currency"].as_str().unwrap().to_owned(),
        );
        let e = m.entry(key).or_insert((0, 0, 0));
        e.0 += l["count"].as_u64().unwrap();
        e.1 += l["requested_minor"].as_i64().unwrap();
        e.2 += l["approved_minor"].as_i64().unwrap();
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_test_suite_against_serve() {
    use nix::sys::signal::Signal;

    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let dir = Dir(std::env::temp_dir().join(format!("emvb-pos-suite-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(dir.0.join("token"))
            .unwrap();
        writeln!(f, "{TOKEN}").unwrap();
    }
    let gateway = gw.url();
    // Every sale of the suite, oldest first.
    let mut sales: Vec<Sale> = Vec::new();

    let serve = Serve::start(&dir.0, &gateway);
    let till = Till::new(&serve);
    let events = Events::follow(&serve).await;

    // 1. A sale with an idempotency key and the POS's reference, and its retries.
    let key = "till7-order-1001";
    let first = till
        .post_raw(
            "/v1/sales",
            key,
            r#"{"amount":1500,"currency":"USD","reference":"order-1001"}"#,
            &[],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(!first.replayed);
    let order_1001 = first.body.clone();
    assert_eq!(order_1001["reference"], "order-1001");
    assert_approved(&gw, &order_1001, 1500).await;
    let rows_before = ledger(&gw, None).await.len();
    // The retry's serializer put the keys in another order and spaced them.
    let again = till
        .post_raw(
            "/v1/sales",
            key,
            "{\n  \"reference\" : \"order-1001\",\n\t\"currency\":\"USD\",   \"amount\": 1500\n}",
            &[],
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.replayed, "the retry is marked as a replay");
    assert_eq!(again.body, order_1001, "the replay is the stored answer");
    // Another body under the same key: refused, in the documented error shape.
    let other = till
        .post_raw(
            "/v1/sales",
            key,
            r#"{"amount":1501,"currency":"USD","reference":"order-1001"}"#,
            &[],
        )
        .await;
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(
        other.body["error"]["code"], "request_id_reused",
        "{}",
        other.body
    );
    assert!(other.body["error"]["message"].is_string(), "{}", other.body);
    assert_eq!(
        ledger(&gw, None).await.len(),
        rows_before,
        "neither the replay nor the refused request reached the gateway"
    );
    sales.push(Sale::of(&order_1001));

    // 2. The card scripted per sale. An approval with another card.
    let v = till
        .set_simulator("card", json!({"profile": "mc-cvn16"}))
        .await;
    assert_eq!(v["card"], "mc-cvn16", "{v}");
    let rec = till.sale("till7-order-1002", 2000, "order-1002").await;
    assert_approved(&gw, &rec, 2000).await;
    assert!(
        rec["card"]["masked_pan"]
            .as_str()
            .is_some_and(|p| p.starts_with("555555") && p.ends_with("4444")),
        "the card the simulator was told to present: {rec}"
    );
    sales.push(Sale::of(&rec));

    // A card that declines by itself (AAC at the first GENERATE AC): nothing goes online.
    till.set_simulator("card", json!({"profile": "offline-decline"}))
        .await;
    let rec = till.sale("till7-order-1003", 2100, "order-1003").await;
    assert_eq!(rec["status"], "declined", "{rec}");
    assert_eq!(rec["reason"], "declined offline by the card", "{rec}");
    assert_eq!(
        (
            &rec["auth_code"],
            &rec["approved_amount"],
            &rec["gateway_id"]
        ),
        (&Value::Null, &Value::Null, &Value::Null),
        "{rec}"
    );
    assert!(ledger(&gw, rec["id"].as_str()).await.is_empty(), "{rec}");
    sales.push(Sale::of(&rec));

    // Insufficient funds: the sandbox's magic amount (cents .51) on the usual card.
    till.set_simulator("card", json!({"profile": "visa-cvn18"}))
        .await;
    let rec = till.sale("till7-order-1004", 2151, "order-1004").await;
    assert_eq!(
        (&rec["status"], &rec["decline_code"], &rec["auth_code"]),
        (&json!("declined"), &json!("51"), &Value::Null),
        "{rec}"
    );
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined")),
        "{rec}"
    );
    let row = gateway_row(&gw, &rec).await;
    assert_eq!(
        (&row["state"], &row["resp_code"], &row["approved_minor"]),
        (&json!("declined"), &json!("51"), &json!(0)),
        "{row}"
    );
    sales.push(Sale::of(&rec));

    // The card pulled at the PIN prompt: the simulated cardholder types no PIN, the sale
    // waits, the card leaves. Nothing was sent online.
    till.set_simulator("card", json!({"profile": "offline-pin"}))
        .await;
    till.set_simulator("auto", json!({"pin": false})).await;
    let id = till
        .start_sale("till7-order-1005", 2200, "order-1005")
        .await;
    till.simulator_reaches("pin-entry").await;
    let v = till.simulator("remove").await;
    assert_eq!(v["card_present"], Value::Null, "{v}");
    let rec = till.finished(&id).await;
    assert_eq!(
        (&rec["status"], &rec["reason"]),
        (&json!("cancelled"), &json!("card removed")),
        "{rec}"
    );
    assert_eq!(
        (
            &rec["auth_code"],
            &rec["approved_amount"],
            &rec["gateway_id"]
        ),
        (&Value::Null, &Value::Null, &Value::Null),
        "{rec}"
    );
    assert!(ledger(&gw, Some(&id)).await.is_empty(), "{rec}");
    let prompts = events.prompts_of(&id).await;
    assert!(
        in_order(&prompts, &["ENTER PIN", "CARD REMOVED"]),
        "what the till showed: {prompts:?}"
    );
    assert!(
        !prompts.iter().any(|p| p == "AUTHORIZING..."),
        "{prompts:?}"
    );
    sales.push(Sale::of(&rec));

    // The same at the online PIN entry (`DE D6`, asked by the bridge after the ARQC and
    // before the authorization): ended by the card leaving, nothing sent online.
    till.set_simulator("card", json!({"profile": "online-pin"}))
        .await;
    let id = till
        .start_sale("till7-order-1006", 2250, "order-1006")
        .await;
    till.simulator_reaches("pin-entry").await;
    till.simulator("remove").await;
    let rec = till.finished(&id).await;
    assert_eq!(
        (&rec["status"], &rec["reason"]),
        (&json!("cancelled"), &json!("card removed")),
        "{rec}"
    );
    assert!(ledger(&gw, Some(&id)).await.is_empty(), "{rec}");
    sales.push(Sale::of(&rec));

    // The next cardholder types the PIN when the suite says so: it reaches this sale's
    // prompt (not the entry the removal ended), and the sale is approved.
    till.set_simulator("card", json!({"profile": "offline-pin"}))
        .await;
    let id = till
        .start_sale("till7-order-1007", 2260, "order-1007")
        .await;
    till.simulator_reaches("pin-entry").await;
    let a = till
        .post_raw(
            "/v1/simulator/pin",
            "till7-order-1007-pin",
            r#"{"digits":"1234"}"#,
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rec = till.finished(&id).await;
    assert_approved(&gw, &rec, 2260).await;
    assert!(
        rec["card"]["masked_pan"]
            .as_str()
            .is_some_and(|p| p.ends_with("5454")),
        "{rec}"
    );
    till.set_simulator("auto", json!({"pin": true})).await;
    sales.push(Sale::of(&rec));

    // The card pulled between the ARQC and the second GENERATE AC: the gateway approves
    // (held for a while so the card leaves first), the reader ends the transaction with
    // card removed, and the approval must be reversed.
    till.set_simulator("card", json!({"profile": "visa-cvn18"}))
        .await;
    till.set_simulator("auto", json!({"remove": false})).await;
    let hold = reqwest::Client::new()
        .post(format!("{}/_sim/faults", gw.url()))
        .json(&json!({
            "match": {"dialect": "pai", "op": "emv", "amount_minor": 2300},
            "action": {"type": "delay", "ms": GATEWAY_HOLD_MS},
            "times": 1
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 201);
    let id = till
        .start_sale("till7-order-1008", 2300, "order-1008")
        .await;
    till.simulator_reaches("awaiting-host").await;
    let v = till.simulator("remove").await;
    // "ended": the reader ended the transaction and keeps its card-removed status for the
    // final Continue, which has not come yet — the card left before the second GENERATE AC.
    assert_eq!(
        (&v["card_present"], &v["txn"]),
        (&Value::Null, &json!("ended")),
        "the card must leave while the gateway still holds its answer: {v}"
    );
    let rec = till.finished(&id).await;
    assert_eq!(rec["status"], "reversed", "{rec}");
    assert_eq!(
        rec["reason"], "card removed before the transaction completed",
        "{rec}"
    );
    assert_eq!(
        (&rec["reversal"]["reason"], &rec["reversal"]["result"]),
        (&json!("card_removed"), &json!("reversed")),
        "{rec}"
    );
    assert_eq!(rec["approved_amount"], Value::Null, "{rec}");
    // The gateway's side: it approved (the record keeps its auth code), and the money is back.
    let row = gateway_row(&gw, &rec).await;
    assert_eq!(row["resp_code"], "00", "{row}");
    assert_eq!(rec["auth_code"], row["auth_code"], "{rec} {row}");
    assert!(
        row["state"] == "voided"
            || (row["state"] == "refunded" && row["refunded_minor"] == row["approved_minor"]),
        "the authorization is reversed at the gateway: {row}"
    );
    if row["state"] == "refunded" {
        let back: Vec<Value> = ledger(&gw, None)
            .await
            .into_iter()
            .filter(|t| t["parent"] == row["id"])
            .collect();
        assert!(
            back.len() == 1 && back[0]["state"] == "approved" && back[0]["approved_minor"] == 2300,
            "{back:?}"
        );
    }
    let prompts = events.prompts_of(&id).await;
    assert!(
        in_order(&prompts, &["AUTHORIZING...", "CARD REMOVED", "REVERSING"]),
        "what the till showed: {prompts:?}"
    );
    assert!(
        !prompts.iter().any(|p| p == "REMOVE CARD"),
        "the card is gone already: {prompts:?}"
    );
    till.set_simulator("auto", json!({"remove": true})).await;
    sales.push(Sale::of(&rec));

    // 3. A graceful stop, and a new process on the same journal.
    let (status, log) = serve.stop(Signal::SIGTERM).await;
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        events.ended().await,
        "the graceful stop ended the event stream rather than cutting it"
    );
    let serve = Serve::start(&dir.0, &gateway);
    let till = Till::new(&serve);
    let found = till.by_reference("order-1001").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (&found[0]["id"], &found[0]["status"], &found[0]["auth_code"]),
        (
            &order_1001["id"],
            &json!("approved"),
            &order_1001["auth_code"]
        ),
        "{found:?}"
    );
    let found = till.by_reference("order-1008").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["status"], "reversed", "{found:?}");
    // The key still replays: a till retrying after the restart is not charged again.
    let again = till
        .post_raw(
            "/v1/sales",
            key,
            r#"{"currency":"USD","reference":"order-1001","amount":1500}"#,
            &[],
        )
        .await;
    assert_eq!(
        (again.status, again.replayed),
        (StatusCode::OK, true),
        "{}",
        again.body
    );
    assert_eq!(again.body["id"], order_1001["id"]);

    // A sale on the new process, then it is killed outright.
    let rec = till.sale("till7-order-1009", 2400, "order-1009").await;
    assert_approved(&gw, &rec, 2400).await;
    sales.push(Sale::of(&rec));
    let (status, log) = serve.stop(Signal::SIGKILL).await;
    assert_eq!(status.code(), None, "killed, not exited: {log}");
    let serve = Serve::start(&dir.0, &gateway);
    let till = Till::new(&serve);
    for (reference, status) in [
        ("order-1009", "approved"),
        ("order-1004", "declined"),
        ("order-1005", "cancelled"),
    ] {
        let found = till.by_reference(reference).await;
        assert_eq!(found.len(), 1, "{reference}: {found:?}");
        assert_eq!(found[0]["status"], status, "{reference}: {found:?}");
    }
    assert!(till.by_reference("order-9999").await.is_empty());

    // 4. The day's sales, newest first, two to a page.
    let (day, date) = utc_day(sales[0].created_at);
    let mut listed: Vec<(String, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/transactions?since={date}T00:00:00Z&limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let v = till.get(&path).await;
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= 2, "{v}");
        listed.extend(data.iter().map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        }));
        pages += 1;
        assert!(pages <= sales.len(), "the cursor never ends: {v}");
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<(String, String)> = sales
        .iter()
        .rev()
        .map(|s| (s.id.clone(), s.status.clone()))
        .collect();
    assert_eq!(listed, newest_first);
    assert_eq!(pages, sales.len().div_ceil(2));

    // The day's reconciliation over HTTP, and `emvbridge report` over the same journal.
    let recon = till.get(&format!("/v1/reconciliation?date={date}")).await;
    let next = utc_day(day + 86_400).1;
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["report", "--json", "--from", &date, "--to", &next])
        .arg("--journal")
        .arg(dir.0.join("journal.db"))
        .env("HOME", &dir.0)
        .env("XDG_CONFIG_HOME", &dir.0)
        .env("XDG_DATA_HOME", &dir.0)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "report: nothing unresolved: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        totals(&recon["lines"]),
        totals(&report["lines"]),
        "the API's totals are the report's\n{recon}\n{report}"
    );
    assert_eq!(recon["lines"], report["lines"]);
    assert_eq!(recon["unresolved"], json!([]));
    assert_eq!(report["unresolved"], json!([]));
    // And they are this day's sales (a run across midnight UTC has some on the next day):
    // each counted once, the approvals' money only.
    let t = totals(&recon["lines"]);
    let today: Vec<&Sale> = sales
        .iter()
        .filter(|s| s.created_at >= day && s.created_at < day + 86_400)
        .collect();
    assert_eq!(
        t.values().map(|v| v.0).sum::<u64>(),
        today.len() as u64,
        "{recon}"
    );
    let expect = |pick: &dyn Fn(&Sale) -> bool, approved: bool| {
        let picked: Vec<&&Sale> = today.iter().filter(|s| pick(s)).collect();
        let sum: i64 = picked.iter().map(|s| s.amount).sum();
        (!picked.is_empty()).then_some((picked.len() as u64, sum, if approved { sum } else { 0 }))
    };
    let usd = |state: &str| t.get(&("sale".into(), state.into(), "USD".into())).copied();
    assert_eq!(
        usd("approved"),
        expect(&|s| s.status == "approved", true),
        "{recon}"
    );
    assert_eq!(
        usd("reversed"),
        expect(&|s| s.status == "reversed", false),
        "{recon}"
    );
    assert_eq!(
        usd("declined"),
        expect(&|s| s.status == "declined" && s.online, false),
        "the gateway's declines: {recon}"
    );
    assert_eq!(
        t.values().map(|v| v.2).sum::<i64>(),
        expect(&|s| s.status == "approved", true).map_or(0, |e| e.2),
        "no money counted but the approvals': {recon}"
    );

    let (status, log) = serve.stop(Signal::SIGTERM).await;
    assert_eq!(status.code(), Some(0), "{log}");
    gw.shutdown().await;
}
