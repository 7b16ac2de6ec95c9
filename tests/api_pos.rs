//! The local POS API over real HTTP on loopback: the embedded simulated reader (TCP on
//! loopback) and the in-process sandbox gateway behind it, a reqwest client in front.

use std::time::Duration;

use emvbridge::api::{self, ApiOptions, ApiServer};
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;
use emvbridge_sim::scenario::Control;
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

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(s: &ApiServer) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://{}", s.addr),
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

    async fn post_raw(
        &self,
        path: &str,
        request_id: &str,
        body: &str,
        prefer_async: bool,
    ) -> reqwest::Response {
        let mut b = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("x-request-id", request_id)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if prefer_async {
            b = b.header("prefer", "respond-async");
        }
        b.send().await.unwrap()
    }

    async fn post(&self, path: &str, request_id: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .post_raw(path, request_id, &body.to_string(), false)
            .await;
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn wait_status(c: &Client, id: &str, want: &str) -> Value {
    for _ in 0..200 {
        let (_, v) = c.get(&format!("/v1/transactions/{id}")).await;
        if v["status"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("transaction {id} never became {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_health_openapi_and_every_route_is_served() {
    let s = server().await;
    let c = Client::new(&s);
    // Health and the document need no token.
    let r = c
        .http
        .get(format!("{}/v1/health", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["reader"], "connected");
    let r = c
        .http
        .get(format!("{}/v1/openapi", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/v1/sales"]["post"].is_object());
    // Everything else does.
    let r = c
        .http
        .get(format!("{}/v1/device", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "unauthorized");
    for bad in ["Bearer wrong", "Basic dGVzdA==", TOKEN] {
        let r = c
            .http
            .post(format!("{}/v1/sales", c.base))
            .header("authorization", bad)
            .header("x-request-id", "auth-1")
            .body(r#"{"amount":100,"currency":"USD"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    let (st, v) = c.get("/v1/device").await;
    assert_eq!(st, 200);
    assert_eq!(v["simulated"], true);
    assert_eq!(v["link"], "connected");
    assert_eq!(v["model"], "UX300");
    assert_eq!(v["busy"], false);
    // Unknown routes and methods have their own codes; every documented route is served.
    let (st, v) = c.get("/v1/nope").await;
    assert_eq!((st.as_u16(), code(&v)), (404, "no_such_route"));
    let (st, v) = c.post("/v1/device", "m-1", json!({})).await;
    assert_eq!((st.as_u16(), code(&v)), (405, "method_not_allowed"));
    for (i, (method, path)) in api::ROUTES.iter().enumerate() {
        let path = path.replace("{id}", "no-such-id");
        let (st, v) = match *method {
            "get" if path == "/v1/events" => {
                let r = c
                    .http
                    .get(format!("{}{path}", c.base))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap();
                (r.status(), Value::Null)
            }
            "get" => c.get(&path).await,
            "post" => {
                // Empty bodies: nothing is charged.
                let r = c.post_raw(&path, &format!("route-{i}"), "", false).await;
                let st = r.status();
                (st, r.json().await.unwrap_or(Value::Null))
            }
            other => {
                let m = reqwest::Method::from_bytes(other.to_ascii_uppercase().as_bytes()).unwrap();
                let r = c
                    .http
                    .request(m, format!("{}{path}", c.base))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap();
                let st = r.status();
                (st, r.json().await.unwrap_or(Value::Null))
            }
        };
        assert!(
            !["no_such_route", "method_not_allowed"].contains(&code(&v)) && st != 405,
            "{method} {path}: {st} {v}"
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_clear_4xx() {
    let s = server().await;
    let c = Client::new(&s);
    let r = c
        .http
        .post(format!("{}/v1/sales", c.base))
        .bearer_auth(TOKEN)
        .body(r#"{"amount":100,"currency":"USD"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "missing_request_id");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("X-Request-Id"));
    let cases = [
        (r#"{"amount":12.34,"currency":"USD"}"#, 400, "invalid_body"),
        (r#"{"amount":"1234","currency":"USD"}"#, 400, "invalid_body"),
        (r#"{"amount":-5,"currency":"USD"}"#, 400, "invalid_body"),
        (r#"{"amount":100}"#, 400, "invalid_body"),
        (
            r#"{"amount":100,"currency":"USD","tip":1}"#,
            400,
            "invalid_body",
        ),
        ("not json", 400, "invalid_body"),
        ("", 400, "invalid_body"),
        (r#"{"amount":0,"currency":"USD"}"#, 422, "invalid_amount"),
        (
            r#"{"amount":1000000000000,"currency":"USD"}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"amount":100,"currency":"XYZ"}"#,
            422,
            "invalid_currency",
        ),
    ];
    for (i, (body, status, want)) in cases.iter().enumerate() {
        let r = c
            .post_raw("/v1/sales", &format!("bad-{i}"), body, false)
            .await;
        assert_eq!(r.status().as_u16(), *status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), *want, "{body}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let big = format!(
        r#"{{"amount":100,"currency":"USD","x":"{}"}}"#,
        "a".repeat(20_000)
    );
    let r = c.post_raw("/v1/sales", "big-1", &big, false).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "body_too_large");
    let r = c.post_raw("/v1/sales", &"x".repeat(200), "{}", false).await;
    assert_eq!(r.status(), 400);
    let (st, v) = c
        .post("/v1/device/display", "d-1", json!({"text": "x".repeat(65)}))
        .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "invalid_text"));
    let (st, v) = c
        .post("/v1/device/display", "d-2", json!({"text": "THANK YOU"}))
        .await;
    assert_eq!(st, 200, "{v}");
    // Nothing above reached the reader as a transaction.
    let (_, v) = c.get("/v1/device").await;
    assert_eq!(v["busy"], false);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_replay_by_request_id_and_follow_ups() {
    let s = server().await;
    let c = Client::new(&s);
    let body = json!({"amount": 1234, "currency": "USD"});
    let r = c
        .post_raw("/v1/sales", "sale-1", &body.to_string(), false)
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    assert!(!text.contains("4012000098765439"), "no clear PAN: {text}");
    let first: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(first["status"], "approved", "{first}");
    assert_eq!(first["kind"], "sale");
    assert_eq!(first["amount"], json!({"amount": 1234, "currency": "USD"}));
    assert_eq!(first["card"]["masked_pan"], "401200******5439");
    assert!(first["receipt"]["customer"]
        .as_str()
        .unwrap()
        .contains("APPROVED"));
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/transactions/{id}"));
    // The same request id: the original answer, not a second charge.
    let r = c
        .post_raw("/v1/sales", "sale-1", &body.to_string(), false)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.headers()["location"].to_str().unwrap(), location);
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay, first);
    // The same id for another request is refused.
    let (st, v) = c
        .post(
            "/v1/sales",
            "sale-1",
            json!({"amount": 999, "currency": "USD"}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "request_id_reused"));
    let (st, v) = c.get(&location).await;
    assert_eq!(st, 200);
    assert_eq!(v["id"], first["id"]);
    // Two copies of one request at once: one sale, both get it.
    let (a, b) = tokio::join!(
        c.post(
            "/v1/sales",
            "sale-2",
            json!({"amount": 2000, "currency": "USD"})
        ),
        c.post(
            "/v1/sales",
            "sale-2",
            json!({"amount": 2000, "currency": "USD"})
        ),
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
    assert_eq!(a.1["id"], b.1["id"]);
    assert_ne!(a.1["id"], first["id"]);
    // Insufficient funds: a decline with its code is an outcome, not an error.
    let (st, v) = c
        .post(
            "/v1/sales",
            "sale-3",
            json!({"amount": 1051, "currency": "USD"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "declined");
    assert_eq!(v["decline_code"], "51");
    // The PAI sandbox voids only uncaptured authorizations (gateways.md §4.4): its refusal
    // comes back as 409 `refused` with the gateway's words, and nothing changes.
    let (st, e) = c
        .post(&format!("/v1/transactions/{id}/void"), "void-1", json!({}))
        .await;
    assert_eq!((st.as_u16(), code(&e)), (409, "refused"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("voided"));
    let (_, still) = c.get(&location).await;
    assert_eq!(still["status"], "approved");
    // A declined sale has nothing to void.
    let (st, e) = c
        .post(
            &format!("/v1/transactions/{}/void", v["id"].as_str().unwrap()),
            "void-2",
            json!({}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&e)), (409, "not_voidable"));
    let (st, v) = c.get("/v1/transactions/nope").await;
    assert_eq!((st.as_u16(), code(&v)), (404, "transaction_not_found"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauth_capture_reverse_and_refund() {
    let s = server().await;
    let c = Client::new(&s);
    let (st, pre) = c
        .post(
            "/v1/preauths",
            "pre-1",
            json!({"amount": 5000, "currency": "USD"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(pre["status"], "approved", "{pre}");
    assert_eq!(pre["kind"], "pre_auth");
    let pid = pre["id"].as_str().unwrap();
    let (st, v) = c
        .post(
            &format!("/v1/preauths/{pid}/capture"),
            "cap-0",
            json!({"amount": 6000, "currency": "USD"}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "invalid_amount"));
    let (st, v) = c
        .post(
            &format!("/v1/preauths/{pid}/capture"),
            "cap-1",
            json!({"amount": 4000, "currency": "USD"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["captured_amount"],
        json!({"amount": 4000, "currency": "USD"})
    );
    let (st, v) = c
        .post(&format!("/v1/preauths/{pid}/capture"), "cap-2", json!({}))
        .await;
    assert_eq!((st.as_u16(), code(&v)), (409, "already_captured"));
    // An uncaptured pre-authorization can be voided, once.
    let (_, pre2) = c
        .post(
            "/v1/preauths",
            "pre-2",
            json!({"amount": 2500, "currency": "USD"}),
        )
        .await;
    let p2 = pre2["id"].as_str().unwrap();
    let (st, v) = c
        .post(&format!("/v1/transactions/{p2}/void"), "void-p2", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "voided");
    assert_eq!(v["operations"][0]["op"], "void");
    let (st, v) = c
        .post(
            &format!("/v1/transactions/{p2}/void"),
            "void-p2b",
            json!({}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&v)), (409, "not_voidable"));
    // A sale is not a pre-authorization.
    let (_, sale) = c
        .post(
            "/v1/sales",
            "sale-r",
            json!({"amount": 3000, "currency": "USD"}),
        )
        .await;
    let sid = sale["id"].as_str().unwrap();
    let (st, v) = c
        .post(&format!("/v1/preauths/{sid}/capture"), "cap-3", json!({}))
        .await;
    assert_eq!((st.as_u16(), code(&v)), (409, "not_a_preauth"));
    // A referenced refund is a new transaction pointing at the sale.
    let (st, v) = c
        .post(
            "/v1/refunds",
            "ref-0",
            json!({"amount": 4000, "currency": "USD", "transaction_id": sid}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&v)), (422, "invalid_amount"));
    let (st, refund) = c
        .post(
            "/v1/refunds",
            "ref-1",
            json!({"amount": 1000, "currency": "USD", "transaction_id": sid}),
        )
        .await;
    assert_eq!(st, 200, "{refund}");
    assert_eq!(refund["kind"], "refund");
    assert_eq!(refund["card_present"], false);
    assert_eq!(refund["original_transaction_id"], sid);
    assert!(
        ["approved", "declined"].contains(&refund["status"].as_str().unwrap()),
        "{refund}"
    );
    let (_, v) = c.get(&format!("/v1/transactions/{sid}")).await;
    assert_eq!(v["operations"][0]["op"], "refund");
    assert_eq!(v["operations"][0]["transaction_id"], refund["id"]);
    // Reverse the sale.
    let (st, v) = c
        .post(
            &format!("/v1/transactions/{sid}/reverse"),
            "rev-1",
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "reversed");
    let (st, v) = c
        .post(
            &format!("/v1/transactions/{sid}/reverse"),
            "rev-2",
            json!({}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&v)), (409, "not_reversible"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sale_gets_409_and_cancel_reaches_the_transaction() {
    let s = server().await;
    let c = Client::new(&s);
    let sim = s.simulator().expect("embedded simulator");
    // Nobody inserts a card: the sale waits at "present card".
    sim.control(Control::Auto {
        insert: Some(false),
        remove: None,
        pin: None,
    })
    .await
    .unwrap();
    let r = c
        .post_raw(
            "/v1/sales",
            "busy-1",
            r#"{"amount":700,"currency":"USD"}"#,
            true,
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["preference-applied"], "respond-async");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "in_progress");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/transactions/{id}"));
    // A second sale, a preauth, a display or a reset: the reader is busy.
    for (path, rid, body) in [
        (
            "/v1/sales",
            "busy-2",
            json!({"amount": 100, "currency": "USD"}),
        ),
        (
            "/v1/preauths",
            "busy-3",
            json!({"amount": 100, "currency": "USD"}),
        ),
        ("/v1/device/display", "busy-4", json!({"text": "HELLO"})),
        ("/v1/device/reset", "busy-5", json!({})),
    ] {
        let (st, v) = c.post(path, rid, body).await;
        assert_eq!((st.as_u16(), code(&v)), (409, "reader_busy"), "{path}");
        assert!(v["error"]["message"].as_str().unwrap().contains(&id));
    }
    let (_, v) = c.get("/v1/device").await;
    assert_eq!(v["busy"], true);
    assert_eq!(v["current_transaction_id"], id.as_str());
    // Cancel reaches the running transaction.
    let (st, v) = c
        .post(
            &format!("/v1/transactions/{id}/cancel"),
            "cancel-1",
            json!({}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = wait_status(&c, &id, "cancelled").await;
    assert!(done["gateway_id"].is_null(), "nothing reached the host");
    let (st, v) = c
        .post(
            &format!("/v1/transactions/{id}/cancel"),
            "cancel-2",
            json!({}),
        )
        .await;
    assert_eq!((st.as_u16(), code(&v)), (409, "not_running"));
    // The busy answer was not stored: the same request id now runs.
    sim.control(Control::Auto {
        insert: Some(true),
        remove: None,
        pin: None,
    })
    .await
    .unwrap();
    let (st, v) = c
        .post(
            "/v1/sales",
            "busy-2",
            json!({"amount": 100, "currency": "USD"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "approved", "{v}");
    s.shutdown().await;
}

/// Reads SSE events (name, data) until `transaction.finished`.
async fn read_events(resp: &mut reqwest::Response) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if name.is_empty() {
                continue; // keep-alive comment
            }
            let v: Value = serde_json::from_str(&data).unwrap();
            let last = name == "transaction.finished";
            out.push((name, v));
            if last {
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_follow_a_full_sale_in_order() {
    let s = server().await;
    let c = Client::new(&s);
    let r = c
        .http
        .get(format!("{}/v1/events", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mut events = c
        .http
        .get(format!("{}/v1/events", c.base))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (st, sale) = c
        .post(
            "/v1/sales",
            "sse-1",
            json!({"amount": 4200, "currency": "USD"}),
        )
        .await;
    assert_eq!(st, 200);
    let id = sale["id"].as_str().unwrap();
    let got = read_events(&mut events).await;
    let names: Vec<String> = got
        .iter()
        .map(|(n, v)| match n.as_str() {
            "prompt" => v["prompt"].as_str().unwrap().to_owned(),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "transaction.started",
            "present_card",
            "card_inserted",
            "authorizing",
            "completing",
            "remove_card",
            "transaction.finished"
        ],
        "{got:?}"
    );
    for (_, v) in &got {
        assert_eq!(v["transaction_id"], id);
    }
    let (_, fin) = got.last().unwrap();
    assert_eq!(fin["status"], "approved");
    assert_eq!(fin["transaction"]["id"], id);
    assert_eq!(got[1].1["text"], "INSERT, TAP OR SWIPE CARD");
    assert_eq!(
        got[0].1["amount"],
        json!({"amount": 4200, "currency": "USD"})
    );
    s.shutdown().await;
}

#[test]
fn serve_refuses_a_public_address_without_the_flag() {
    let dir = std::env::temp_dir().join(format!("emvbridge-serve-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["serve", "--listen", "0.0.0.0:0", "--token-file"])
        .arg(dir.join("tok"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
