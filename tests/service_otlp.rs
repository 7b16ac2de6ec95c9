//! OTLP traces: `emvbridge sale` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a receiver on
//! loopback exports its spans there (OTLP/HTTP, JSON bodies), and the receiver decodes them:
//! the transaction span with its reference, the gateway call and the journal writes as its
//! children in one trace. Without the variable nothing is sent.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

type Received = Arc<Mutex<Vec<Value>>>;

async fn traces(State(got): State<Received>, body: Bytes) -> &'static str {
    let v: Value = serde_json::from_slice(&body).expect("an OTLP/JSON export request");
    got.lock().unwrap().push(v);
    "{}"
}

/// A collector's trace endpoint on loopback: every request body decoded as an OTLP
/// `ExportTraceServiceRequest` in JSON.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// Every span received: (name, trace id, span id, parent span id, attributes by key).
fn spans(got: &Received) -> Vec<(String, String, String, String, Value)> {
    let mut out = Vec::new();
    for req in got.lock().unwrap().iter() {
        for rs in req["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some(Value::from("emvbridge")));
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attrs: serde_json::Map<String, Value> = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            (
                                a["key"].as_str().unwrap_or("").to_owned(),
                                a["value"].clone(),
                            )
                        })
                        .collect();
                    let text = |k: &str| s[k].as_str().unwrap_or("").to_owned();
                    out.push((
                        text("name"),
                        text("traceId"),
                        text("spanId"),
                        text("parentSpanId"),
                        Value::Object(attrs),
                    ));
                }
            }
        }
    }
    out
}

fn sale(endpoint: Option<&str>, journal: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emvbridge"));
    cmd.args(["sale", "--amount", "12.34", "--journal"])
        .arg(journal)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if let Some(e) = endpoint {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", e);
    }
    cmd.output().expect("run emvbridge sale")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_exports_its_spans_to_the_configured_collector() {
    let dir = std::env::temp_dir().join(format!("emvb-otlp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (endpoint, got) = receiver().await;

    // Without the variable: nothing arrives.
    let out = tokio::task::spawn_blocking({
        let j = dir.join("off.db");
        move || sale(None, &j)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(got.lock().unwrap().is_empty());

    let out = tokio::task::spawn_blocking({
        let j = dir.join("on.db");
        let e = endpoint.clone();
        move || sale(Some(&e), &j)
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The exporter flushes at exit; the receiver may still be reading the last request.
    let mut waited = Duration::ZERO;
    while got.lock().unwrap().is_empty() && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let all = spans(&got);
    let txn: Vec<_> = all.iter().filter(|s| s.0 == "transaction").collect();
    assert_eq!(txn.len(), 1, "{all:?}");
    let (_, trace, id, _, attrs) = txn[0];
    let reference = attrs["reference"]["stringValue"].as_str().unwrap_or("");
    assert!(reference.starts_with("emvb-"), "{attrs}");
    // OTLP/JSON writes 64-bit integers as strings; tracing-opentelemetry sends a u64 as a
    // string value: either way the text is the amount.
    let amount = &attrs["amount_minor"];
    let amount = amount["intValue"]
        .as_str()
        .or(amount["stringValue"].as_str());
    assert_eq!(amount, Some("1234"), "{attrs}");
    let child = |name: &str| all.iter().filter(|s| s.0 == name && &s.1 == trace).count();
    assert_eq!(child("gateway.authorize"), 1, "{all:?}");
    assert!(
        all.iter().any(|s| s.0 == "gateway.authorize" && &s.3 == id),
        "the gateway call is a child of the transaction: {all:?}"
    );
    assert!(child("journal.write") >= 2, "{all:?}");
    // No card data in any attribute.
    let text = format!("{all:?}");
    assert!(!text.contains("4012000098765439"));
    let _ = std::fs::remove_dir_all(&dir);
}
