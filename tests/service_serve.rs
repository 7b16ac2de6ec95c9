//! `emvbridge serve` run as a service would be: a production-like configuration file with a
//! secrets file (`environment = "production"`, `base_url` and the secrets pointing at the
//! sandbox gateway on loopback, short client timeouts), JSON logs, and then what an operator
//! and a service manager see:
//! - the sale reaches the configured URL with the configured credentials, and a hung
//!   authorization is given up after the configured `request_ms` (counted as a gateway
//!   timeout), not the 30 s default;
//! - `--log-format json` lines parse, and the sale's events carry its reference in the
//!   transaction span; no PAN in any line;
//! - `GET /metrics` needs no token and parses with the official Prometheus client (Python
//!   `prometheus_client`'s OpenMetrics parser); the transaction counters move with the sales;
//! - `/v1/health` is ready (200) and without the token does not show the journal's path;
//! - a `Host` that names another server is refused, a non-JSON body gets 415;
//! - an idle connection is closed by the server within a minute, and a request whose body
//!   never comes is answered 408;
//! - SIGTERM runs the graceful stop and the process exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};

const TOKEN: &str = "service-test-token-0123456789abcdef01234567";
/// The simulated card's PAN (visa-cvn18): never in a log line.
const CLEAR_PAN: &str = "4012000098765439";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The production-like configuration: everything but the URL and credentials is what a
/// merchant would write; those point at the sandbox (its PaymentsAI test credentials).
fn production_config(dir: &Path, gw: &SandboxHandle) -> PathBuf {
    let defaults = SandboxConfig::default();
    let secrets = dir.join("secrets.env");
    write_private(
        &secrets,
        &format!(
            "API_KEY={}\nORGANIZATION_ID={}\nWEBSITE_ID={}\nCUSTOMER_ID={}\n\
             PAI_WEBHOOK_SECRET=whsec_test\nPAI_EMV_EXTENSION=on\n",
            defaults.pai.stage_credential(),
            defaults.pai.organization_id,
            defaults.pai.website_id,
            defaults.pai.customer_id
        ),
    );
    let config = dir.join("emvbridge.toml");
    std::fs::write(
        &config,
        format!(
            "environment = \"production\"\ndialect = \"paymentsai\"\nbase_url = \"{}/pai\"\n\
             secrets_file = {:?}\n[timeouts]\nconnect_ms = 1000\nrequest_ms = 1500\n\
             [journal]\npath = {:?}\n",
            gw.url(),
            secrets.display().to_string(),
            dir.join("journal.db").display().to_string()
        ),
    )
    .unwrap();
    config
}

struct Serve {
    child: Child,
    base: String,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn spawn_serve(dir: &Path, config: &Path) -> Serve {
    let token_file = dir.join("token");
    write_private(&token_file, &format!("{TOKEN}\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--gateway", "env", "--config"])
        .arg(config)
        .arg("--token-file")
        .arg(&token_file)
        // Nothing from the machine's own configuration or credentials.
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("RUST_LOG", "debug")
        .env("EMVBRIDGE_NOT_A_SETTING", "1")
        .env_remove("API_KEY")
        .env_remove("API_URL")
        .env_remove("ORGANIZATION_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(url);
            }
            keep.lock().unwrap().push(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("serve announces its address: {:?}", lines.lock().unwrap()));
    let addr = base.trim_start_matches("http://").to_owned();
    Serve {
        child,
        base,
        addr,
        stderr: lines,
    }
}

async fn sale(http: &reqwest::Client, base: &str, request_id: &str, amount: u64) -> Value {
    let r = http
        .post(format!("{base}/v1/sales"))
        .bearer_auth(TOKEN)
        .header("x-request-id", request_id)
        .json(&json!({"amount": amount, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The samples of `text` parsed by Python's `prometheus_client` OpenMetrics parser, as
/// `name{labels} value` lines; `None` when the module is missing (CI installs it and sets
/// `EMVBRIDGE_REQUIRE_PROMETHEUS_CLIENT=1`, which turns a missing module into a failure).
fn parse_with_prometheus_client(text: &str) -> Option<Vec<(String, Value, f64)>> {
    const SCRIPT: &str = r#"
import sys, json
try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        assert!(
            std::env::var("EMVBRIDGE_REQUIRE_PROMETHEUS_CLIENT").is_err(),
            "python3 module prometheus_client missing (pip install prometheus_client)"
        );
        eprintln!("note: python3 prometheus_client missing: metrics not cross-checked");
        return None;
    }
    assert!(
        out.status.success(),
        "prometheus_client rejects /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    Some(v)
}

fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, v)| *v)
        .sum()
}

async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "metrics need no token");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_as_a_service_with_a_production_config() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let dir = Dir(std::env::temp_dir().join(format!("emvb-service-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = production_config(&dir.0, &gw);
    let mut serve = spawn_serve(&dir.0, &config);
    let http = reqwest::Client::new();

    // An idle connection, opened first: the server must close it within a minute.
    let idle_addr = serve.addr.clone();
    let idle = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(idle_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let t0 = Instant::now();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf);
        (n.map_err(|e| e.kind()), t0.elapsed())
    });

    // A request whose body never comes: 408 within a minute, the connection freed.
    let slow_addr = serve.addr.clone();
    let half_sent = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&slow_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "POST /v1/sales HTTP/1.1\r\nHost: {slow_addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             X-Request-Id: svc-half\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"amount\""
        )
        .unwrap();
        let t0 = Instant::now();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        (answer, t0.elapsed())
    });

    // Two sales through the configured gateway: the configured URL and credentials work.
    let before = metrics_text(&http, &serve.base).await;
    for (i, amount) in [1200u64, 1300].into_iter().enumerate() {
        let v = sale(&http, &serve.base, &format!("svc-{i}"), amount).await;
        assert_eq!(v["status"], "approved", "{v}");
        let reference = v["reference"]
            .as_str()
            .or(v["id"].as_str())
            .unwrap()
            .to_owned();
        let ledger: Value = reqwest::get(format!("{}/_sim/ledger", gw.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = ledger["transactions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            rows.iter().any(|t| t["amount_minor"] == amount),
            "the sandbox at the configured URL has the sale {reference}: {ledger}"
        );
    }
    // The configured request timeout (1.5 s): a hung authorization is given up on quickly.
    let hang = http
        .post(format!("{}/_sim/faults", gw.url()))
        .json(&json!({"match": {"dialect": "pai", "op": "emv", "amount_minor": 1400}, "action": {"type": "delay", "ms": 8000}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(hang.status(), 201);
    let t0 = Instant::now();
    let v = sale(&http, &serve.base, "svc-slow", 1400).await;
    let took = t0.elapsed();
    // The relay settles the lost answer by a lookup (approved) or a reversal: either way the
    // client stopped waiting at 1.5 s.
    assert!(v["status"].is_string(), "{v}");
    assert!(
        took < Duration::from_secs(7),
        "the gateway call was not cut at the configured 1.5 s: the sale took {took:?}: {v}"
    );

    // Refused before any handler: no token (401), no such route (404, counted as unmatched).
    let r = http
        .get(format!("{}/v1/transactions", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/no/such/{}", serve.base, "x".repeat(40)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Metrics: parsed by the official client; the counters moved with the sales.
    let after = metrics_text(&http, &serve.base).await;
    assert!(after.contains("emvbridge_transactions_total"), "{after}");
    if let (Some(b), Some(a)) = (
        parse_with_prometheus_client(&before),
        parse_with_prometheus_client(&after),
    ) {
        let approved = [("kind", "sale"), ("outcome", "approved")];
        let name = "emvbridge_transactions_total";
        let approved_sales = if v["status"] == "approved" { 3.0 } else { 2.0 };
        assert_eq!(
            sample(&a, name, &approved) - sample(&b, name, &approved),
            approved_sales
        );
        assert_eq!(sample(&a, name, &[]) - sample(&b, name, &[]), 3.0);
        assert_eq!(
            sample(&a, "emvbridge_authorization_duration_seconds_count", &[]),
            3.0
        );
        assert!(
            sample(
                &a,
                "emvbridge_gateway_errors_total",
                &[("class", "timeout")]
            ) >= 1.0
        );
        assert!(sample(&a, "emvbridge_reader_frames_received_total", &[]) > 0.0);
        assert_eq!(sample(&a, "emvbridge_reader_connected", &[]), 1.0);
        let api = "emvbridge_api_requests_total";
        let sales_ok = [("route", "/v1/sales"), ("method", "POST"), ("code", "200")];
        assert!(sample(&a, api, &sales_ok) - sample(&b, api, &sales_ok) >= 3.0);
        let unauthorized = [
            ("route", "/v1/transactions"),
            ("method", "GET"),
            ("code", "401"),
        ];
        assert_eq!(sample(&a, api, &unauthorized), 1.0);
        // A path a client made up is one series, not one per path.
        assert_eq!(
            sample(&a, api, &[("route", "unmatched"), ("code", "404")]),
            1.0
        );
        assert!(!after.contains("no/such"), "{after}");
        assert!(sample(&a, "emvbridge_journal_write_duration_seconds_count", &[]) >= 3.0);
    }

    // Health: ready; without the token no journal path.
    let r = http
        .get(format!("{}/v1/health", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(
        (h["status"].as_str(), h["ready"].as_bool()),
        (Some("ok"), Some(true)),
        "{h}"
    );
    assert!(h["relay"]["journal"].is_null(), "{h}");
    assert!(!h.to_string().contains("journal.db"), "{h}");
    let h: Value = http
        .get(format!("{}/v1/health", serve.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        h["relay"]["journal"]
            .as_str()
            .unwrap()
            .ends_with("journal.db"),
        "{h}"
    );

    // DNS rebinding: a Host that is not this server is refused; bodies must be JSON.
    let r = http
        .get(format!("{}/v1/health", serve.base))
        .header(
            "host",
            format!("evil.example:{}", serve.addr.rsplit(':').next().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = http
        .post(format!("{}/v1/sales", serve.base))
        .bearer_auth(TOKEN)
        .header("x-request-id", "svc-text")
        .header("content-type", "text/plain")
        .body(r#"{"amount":100,"currency":"USD"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // The idle connection was closed by the server (EOF), within a minute.
    let (read, waited) = idle.join().unwrap();
    assert_eq!(read, Ok(0), "closed without a byte");
    assert!(waited < Duration::from_secs(60), "{waited:?}");

    let (answer, waited) = half_sent.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(waited < Duration::from_secs(60), "{waited:?}");

    // SIGTERM: the graceful path, exit 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{:?}", serve.stderr.lock().unwrap());

    // The logs: JSON lines with the sale's reference in its span, an unknown EMVBRIDGE_
    // variable warned about, the stop logged; no PAN anywhere.
    std::thread::sleep(Duration::from_millis(200));
    let lines = serve.stderr.lock().unwrap().clone();
    let json: Vec<Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(json
        .iter()
        .all(|v| v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string()));
    let finished: Vec<&Value> = json
        .iter()
        .filter(|v| v["fields"]["message"] == "transaction finished")
        .collect();
    assert_eq!(finished.len(), 3, "{lines:?}");
    assert!(finished
        .iter()
        .all(|v| v["span"]["name"] == "transaction" && v["span"]["reference"].is_string()));
    assert!(json
        .iter()
        .any(|v| v["level"] == "WARN" && v["fields"]["variable"] == "EMVBRIDGE_NOT_A_SETTING"));
    assert!(json.iter().any(|v| v["fields"]["signal"] == "SIGTERM"));
    assert!(
        !lines.iter().any(|l| l.contains(CLEAR_PAN)),
        "a clear PAN in the logs"
    );
    gw.shutdown().await;
}
