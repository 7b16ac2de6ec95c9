//! What a POS integrator relies on, over real HTTP on loopback with the embedded simulated
//! reader and the in-process sandbox gateway: `Idempotency-Key` beside `X-Request-Id`,
//! replays compared as canonical JSON, bodies that must be JSON objects, and the POS's own
//! reference on a sale, found again (with the journal) after `serve` restarts.

use std::time::Duration;

use std::path::PathBuf;

use emvbridge::api::{self, ApiOptions, ApiServer};
use emvbridge::config::RelayOptions;
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

async fn server() -> ApiServer {
    api::start(ApiOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        token: TOKEN.into(),
        terminal: TerminalOptions::default(),
        sale_timeout: Duration::from_secs(30),
        txn_config: TxnConfig::default(),
    })
    .await
    .expect("api starts")
}

/// A journal and the relay configuration naming it, in a directory of their own.
struct Files {
    dir: PathBuf,
    config: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("emvb-integrator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("journal.db");
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!("[journal]\npath = {:?}\n", journal.display().to_string()),
        )
        .unwrap();
        Files { dir, config }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server with the journal as its store, in front of the sandbox at `gw`.
async fn journaled_server(gw: &SandboxHandle, files: &Files) -> ApiServer {
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
        RelayOptions {
            journal: None,
            config: Some(files.config.clone()),
        },
    )
    .await
    .expect("api starts")
}

async fn get(s: &ApiServer, path: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", s.addr))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// A `POST` with the given headers and raw JSON body: status, replay flag, body.
async fn post(
    s: &ApiServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, bool, Value) {
    let mut b = reqwest::Client::new()
        .post(format!("http://{}{path}", s.addr))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(body.to_owned());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = b.send().await.unwrap();
    let st = r.status();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (st, replayed, r.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_reordered_json_and_refuses_another_body() {
    let s = server().await;
    let key = [("idempotency-key", "till-7-order-1001")];
    let (st, replayed, first) =
        post(&s, "/v1/sales", &key, r#"{"amount":1500,"currency":"USD"}"#).await;
    assert_eq!(st, 200, "{first}");
    assert!(!replayed);
    assert_eq!(first["status"], "approved", "{first}");
    // The retry's serializer ordered the keys the other way and spaced them.
    let (st, replayed, again) = post(
        &s,
        "/v1/sales",
        &key,
        "{ \"currency\": \"USD\",\n  \"amount\": 1500 }",
    )
    .await;
    assert_eq!(st, 200, "{again}");
    assert!(replayed, "reordered JSON is the same request");
    assert_eq!(again, first);
    // The same key under the other header name is the same request.
    let (st, replayed, again) = post(
        &s,
        "/v1/sales",
        &[("x-request-id", "till-7-order-1001")],
        r#"{"currency":"USD","amount":1500}"#,
    )
    .await;
    assert_eq!((st, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    // Another body under the key is refused, and charges nothing.
    let (st, _, v) = post(&s, "/v1/sales", &key, r#"{"amount":1501,"currency":"USD"}"#).await;
    assert_eq!((st.as_u16(), code(&v)), (422, "request_id_reused"), "{v}");
    // Two different ids in the two headers: refused before anything runs.
    let (st, _, v) = post(
        &s,
        "/v1/sales",
        &[("idempotency-key", "a-1"), ("x-request-id", "a-2")],
        r#"{"amount":100,"currency":"USD"}"#,
    )
    .await;
    assert_eq!((st.as_u16(), code(&v)), (400, "invalid_request_id"), "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_json_objects_sent_as_json() {
    let s = server().await;
    for (i, body) in [r#"[100,"USD"]"#, "100", r#""USD""#, "null"]
        .iter()
        .enumerate()
    {
        let (st, _, v) = post(
            &s,
            "/v1/sales",
            &[("idempotency-key", &format!("arr-{i}"))],
            body,
        )
        .await;
        assert_eq!(
            (st.as_u16(), code(&v)),
            (400, "invalid_body"),
            "{body}: {v}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"));
    }
    // A form or text body is refused by its content type, in the same error shape.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = reqwest::Client::new()
            .post(format!("http://{}/v1/sales", s.addr))
            .bearer_auth(TOKEN)
            .header("idempotency-key", format!("ct-{ct}"))
            .header("content-type", ct)
            .body(r#"{"amount":100,"currency":"USD"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{ct}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), "unsupported_media_type");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // Nothing above ran on the reader.
    let r = reqwest::Client::new()
        .get(format!("http://{}/v1/device", s.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["busy"], false);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_carry_the_pos_reference_and_are_listed_and_found_after_a_restart() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new("reference");
    let s = journaled_server(&gw, &files).await;
    let mut ids = Vec::new();
    for (i, amount) in [1000u64, 2000, 3000].iter().enumerate() {
        let body = json!({"amount": amount, "currency": "USD", "reference": format!("T7-{i}")});
        let (st, _, v) = post(
            &s,
            "/v1/sales",
            &[("idempotency-key", &format!("ref-sale-{i}"))],
            &body.to_string(),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["reference"], format!("T7-{i}"));
        assert!(
            v["receipt"]["customer"]
                .as_str()
                .unwrap()
                .lines()
                .any(|l| l.starts_with("POS REF") && l.trim_end().ends_with(&format!("T7-{i}"))),
            "{v}"
        );
        ids.push(v["id"].as_str().unwrap().to_owned());
        // Records are ordered by creation second, then id: keep them apart in time.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let (st, _, v) = post(
        &s,
        "/v1/sales",
        &[("idempotency-key", "ref-bad")],
        &json!({"amount": 100, "currency": "USD", "reference": "a\u{7f}"}).to_string(),
    )
    .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "invalid_reference"), "{v}");
    // A card number as the reference is refused before any card is read, and not echoed.
    let (st, _, v) = post(
        &s,
        "/v1/sales",
        &[("idempotency-key", "ref-pan")],
        &json!({"amount": 100, "currency": "USD", "reference": "4111 1111 1111 1111"}).to_string(),
    )
    .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "invalid_reference"), "{v}");
    assert!(!v.to_string().contains("1111 1111"), "{v}");
    s.shutdown().await;

    // A restarted server, as a till that crashed finds it.
    let s = journaled_server(&gw, &files).await;
    let (st, v) = get(&s, "/v1/transactions?reference=T7-1").await;
    assert_eq!(st, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{v}");
    assert_eq!(data[0]["id"], ids[1].as_str());
    assert_eq!(data[0]["status"], "approved");
    assert_eq!(v["next_cursor"], Value::Null);
    // Newest first, two to a page.
    let (st, v) = get(&s, "/v1/transactions?status=approved&limit=2&since=0").await;
    assert_eq!(st, 200, "{v}");
    let page: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = v["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, v) = get(
        &s,
        &format!("/v1/transactions?limit=2&status=approved&cursor={cursor}"),
    )
    .await;
    let page: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str()]);
    assert_eq!(v["next_cursor"], Value::Null);
    let (_, v) = get(&s, "/v1/transactions?status=declined").await;
    assert_eq!(v["data"], json!([]));
    for bad in [
        "limit=0",
        "limit=101",
        "status=paid",
        "cursor=%21",
        "since=soon",
        "colour=red",
    ] {
        let (st, v) = get(&s, &format!("/v1/transactions?{bad}")).await;
        assert_eq!(
            (st.as_u16(), code(&v)),
            (400, "invalid_query"),
            "{bad}: {v}"
        );
    }
    s.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_carry_the_gateway_auth_code_in_every_dialect() {
    use emvbridge::gateway::Dialect;
    for dialect in [Dialect::PaymentsAi, Dialect::Pay1st, Dialect::Number] {
        let s = api::start(ApiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow_remote: false,
            token: TOKEN.into(),
            terminal: TerminalOptions {
                dialect,
                ..TerminalOptions::default()
            },
            sale_timeout: Duration::from_secs(30),
            txn_config: TxnConfig::default(),
        })
        .await
        .expect("api starts");
        let (st, _, v) = post(
            &s,
            "/v1/sales",
            &[("idempotency-key", "auth-code-1")],
            r#"{"amount":1234,"currency":"USD"}"#,
        )
        .await;
        assert_eq!(st, 200, "{dialect:?}: {v}");
        assert_eq!(v["status"], "approved", "{dialect:?}: {v}");
        let code = v["auth_code"]
            .as_str()
            .unwrap_or_else(|| panic!("{dialect:?}: {v}"));
        assert_eq!(code.len(), 6, "{dialect:?}: {code}");
        let receipt = v["receipt"]["customer"].as_str().unwrap();
        assert!(
            receipt
                .lines()
                .any(|l| l.starts_with("AUTH CODE") && l.trim_end().ends_with(code)),
            "{dialect:?}: {receipt}"
        );
        s.shutdown().await;
    }
}

/// A `PUT` with a JSON body: status and body.
async fn put(s: &ApiServer, path: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .put(format!("http://{}{path}", s.addr))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn sale(s: &ApiServer, key: &str, amount: u64) -> Value {
    let (st, _, v) = post(
        s,
        "/v1/sales",
        &[("idempotency-key", key)],
        &json!({"amount": amount, "currency": "USD"}).to_string(),
    )
    .await;
    assert_eq!(st, 200, "{key}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pos_test_suite_scripts_the_simulated_card_per_sale() {
    let s = server().await;
    let (st, v) = get(&s, "/v1/simulator").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["card"], "visa-cvn18", "{v}");
    // Approve with another card.
    let (st, v) = put(&s, "/v1/simulator/card", json!({"profile": "mc-cvn16"})).await;
    assert_eq!(
        (st, &v["card"]),
        (StatusCode::OK, &json!("mc-cvn16")),
        "{v}"
    );
    let v = sale(&s, "sim-1", 1000).await;
    assert_eq!(v["status"], "approved", "{v}");
    assert!(
        v["card"]["masked_pan"].as_str().unwrap().starts_with('5'),
        "{v}"
    );
    // A card that declines offline.
    put(
        &s,
        "/v1/simulator/card",
        json!({"profile": "offline-decline"}),
    )
    .await;
    let v = sale(&s, "sim-2", 1000).await;
    assert_eq!(v["status"], "declined", "{v}");
    // Insufficient funds: the sandbox's magic amount (cents .51) on the usual card.
    put(&s, "/v1/simulator/card", json!({"profile": "visa-cvn18"})).await;
    let v = sale(&s, "sim-3", 1051).await;
    assert_eq!(
        (&v["status"], &v["decline_code"]),
        (&json!("declined"), &json!("51")),
        "{v}"
    );
    // The POS presents the card itself: nothing happens until it does.
    let (st, v) = put(&s, "/v1/simulator/auto", json!({"insert": false})).await;
    assert_eq!(st, 200, "{v}");
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/sales", s.addr))
        .bearer_auth(TOKEN)
        .header("idempotency-key", "sim-4")
        .header("prefer", "respond-async")
        .json(&json!({"amount": 700, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = get(&s, &format!("/v1/transactions/{id}")).await;
    assert_eq!(v["status"], "in_progress", "no card yet: {v}");
    let (st, _, v) = post(
        &s,
        "/v1/simulator/insert",
        &[("idempotency-key", "sim-4-insert")],
        "",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let mut last = Value::Null;
    for _ in 0..400 {
        last = get(&s, &format!("/v1/transactions/{id}")).await.1;
        if last["status"] != "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(last["status"], "approved", "{last}");
    // What the simulator refuses, and actions it does not have.
    let (st, v) = put(&s, "/v1/simulator/card", json!({"profile": "no-such-card"})).await;
    assert_eq!((st.as_u16(), code(&v)), (422, "simulator_refused"), "{v}");
    let (st, _, v) = post(
        &s,
        "/v1/simulator/pin",
        &[("idempotency-key", "sim-pin")],
        r#"{"digits":"12"}"#,
    )
    .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "simulator_refused"), "{v}");
    let (st, _, v) = post(
        &s,
        "/v1/simulator/shake",
        &[("idempotency-key", "sim-x")],
        "",
    )
    .await;
    assert_eq!((st.as_u16(), code(&v)), (404, "no_such_action"), "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_reader_it_does_not_embed_the_simulator_routes_are_absent() {
    use emvbridge::driver::transport::DeviceAddr;
    // The simulator as a separate device on TCP: to the server, a real reader.
    let dev = emvbridge::embedded::SimDevice::start("visa-cvn18")
        .await
        .unwrap();
    let device = match &dev.addr {
        DeviceAddr::Tcp { host, port, .. } => format!("tcp://{host}:{port}"),
        other => panic!("{other:?}"),
    };
    let s = api::start(ApiOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        token: TOKEN.into(),
        terminal: TerminalOptions {
            device: Some(device),
            ..TerminalOptions::default()
        },
        sale_timeout: Duration::from_secs(30),
        txn_config: TxnConfig::default(),
    })
    .await
    .expect("api starts");
    let (st, v) = get(&s, "/v1/simulator").await;
    assert_eq!((st.as_u16(), code(&v)), (404, "no_simulator"), "{v}");
    let (st, v) = put(&s, "/v1/simulator/card", json!({"profile": "mc-cvn16"})).await;
    assert_eq!((st.as_u16(), code(&v)), (404, "no_simulator"), "{v}");
    let (st, _, v) = post(
        &s,
        "/v1/simulator/insert",
        &[("idempotency-key", "real-1")],
        "",
    )
    .await;
    assert_eq!((st.as_u16(), code(&v)), (404, "no_simulator"), "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_reconciliation_is_the_report_of_the_journal() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new("reconciliation");
    let s = journaled_server(&gw, &files).await;
    let v = sale(&s, "rec-1", 1500).await;
    assert_eq!(v["status"], "approved", "{v}");
    let v = sale(&s, "rec-2", 1051).await;
    assert_eq!(v["status"], "declined", "{v}");
    let v = sale(&s, "rec-3", 2500).await;
    assert_eq!(v["status"], "approved", "{v}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = now - now.rem_euclid(86_400);
    let date = time::OffsetDateTime::from_unix_timestamp(day)
        .unwrap()
        .date()
        .to_string();
    let (st, v) = get(&s, &format!("/v1/reconciliation?date={date}")).await;
    assert_eq!(st, 200, "{v}");
    // The same numbers as `emvbridge report` over the same journal and day.
    let journal = s.journal().unwrap().clone();
    let report = emvbridge::journal::report::build(&journal, day, day + 86_400).unwrap();
    assert_eq!(v["lines"], serde_json::to_value(&report.lines).unwrap());
    let approved: Vec<&Value> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "approved")
        .collect();
    assert_eq!(approved.len(), 1, "{v}");
    assert_eq!(
        (
            &approved[0]["count"],
            &approved[0]["approved_minor"],
            &approved[0]["currency"]
        ),
        (&json!(2), &json!(4000), &json!("USD")),
        "{v}"
    );
    assert!(v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["state"] == "declined" && l["count"] == 1 && l["approved_minor"] == 0));
    assert_eq!(v["unresolved"], json!([]));
    // Another day has nothing.
    let (_, v) = get(&s, "/v1/reconciliation?date=2001-01-01").await;
    assert_eq!(v["lines"], json!([]));
    for bad in [
        "",
        "?date=2026-02-30",
        "?date=yesterday",
        "?from=2026-01-02&to=2026-01-01",
    ] {
        let (st, v) = get(&s, &format!("/v1/reconciliation{bad}")).await;
        assert_eq!(
            (st.as_u16(), code(&v)),
            (400, "invalid_query"),
            "{bad}: {v}"
        );
    }
    // In a zone: the local day that holds the sales, and a day the clocks fall back (25 h).
    let tz = "America/New_York";
    let local = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get(tz).unwrap())
        .date()
        .to_string();
    let (st, in_zone) = get(&s, &format!("/v1/reconciliation?date={local}&tz={tz}")).await;
    assert_eq!(st, 200, "{in_zone}");
    assert_eq!(in_zone["tz"], tz);
    assert!(
        in_zone["from_iso"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{local}T00:00:00-0")),
        "{in_zone}"
    );
    let in_zone_approved: i64 = in_zone["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "approved")
        .map(|l| l["approved_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(in_zone_approved, 4000, "{in_zone}");
    let (st, fall_back) = get(&s, &format!("/v1/reconciliation?date=2026-11-01&tz={tz}")).await;
    assert_eq!(st, 200, "{fall_back}");
    assert_eq!(
        (
            fall_back["to"].as_i64().unwrap() - fall_back["from"].as_i64().unwrap(),
            fall_back["from_iso"].as_str().unwrap(),
            fall_back["to_iso"].as_str().unwrap()
        ),
        (
            25 * 3600,
            "2026-11-01T00:00:00-04:00",
            "2026-11-02T00:00:00-05:00"
        )
    );
    let (st, v) = get(&s, "/v1/reconciliation?date=2026-03-29&tz=Europe/Berlin").await;
    assert_eq!(
        (
            st.as_u16(),
            v["to"].as_i64().unwrap() - v["from"].as_i64().unwrap()
        ),
        (200, 23 * 3600),
        "{v}"
    );
    let (st, v) = get(&s, "/v1/reconciliation?date=2026-03-29&tz=Mars/Olympus").await;
    assert_eq!((st.as_u16(), code(&v)), (400, "invalid_time_zone"), "{v}");
    s.shutdown().await;
    gw.shutdown().await;
    // `emvbridge report --tz` over the same journal gives the same answer, bounds included.
    let journal_path = files.dir.join("journal.db");
    for (date, api) in [(local.as_str(), &in_zone), ("2026-11-01", &fall_back)] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_emvbridge"))
            .arg("report")
            .arg("--journal")
            .arg(&journal_path)
            .args(["--date", date, "--tz", tz, "--json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(&cli, api, "report --date {date} --tz {tz}");
    }
    // Without a journal there is nothing to reconcile.
    let s = server().await;
    let (st, v) = get(&s, &format!("/v1/reconciliation?date={date}")).await;
    assert_eq!((st.as_u16(), code(&v)), (404, "no_journal"), "{v}");
    s.shutdown().await;
}
