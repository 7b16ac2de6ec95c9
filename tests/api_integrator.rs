//! What a POS integrator relies on, over real HTTP on loopback with the embedded simulated
//! reader and the in-process sandbox gateway: `Idempotency-Key` beside `X-Request-Id`,
//! replays compared as canonical JSON, and bodies that must be JSON objects.

use std::time::Duration;

use emvbridge::api::{self, ApiOptions, ApiServer};
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;
use reqwest::StatusCode;
use serde_json::Value;

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
