//! The OpenAPI document against the server: every route it lists is probed over real HTTP
//! (no token, a wrong `Host`, a body that is not JSON, no request id, an unknown id, an
//! empty body) and every status the server answers must be documented for that route.

use std::time::Duration;

use emvbridge::api::{self, ApiOptions, OPENAPI};
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_the_server_answers_is_documented() {
    let s = api::start(ApiOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        token: TOKEN.into(),
        terminal: TerminalOptions::default(),
        sale_timeout: Duration::from_secs(30),
        txn_config: TxnConfig::default(),
    })
    .await
    .expect("api starts");
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut missing = Vec::new();
    let mut probes = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Ok(m) = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let documented: Vec<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect();
            let concrete = path
                .replace("{id}", "no-such-id")
                .replace("{action}", "remove");
            let url = format!("http://{}{concrete}", s.addr);
            let has_body = m == reqwest::Method::POST || m == reqwest::Method::PUT;
            // (what, request) pairs; the events stream is only checked for its status.
            let mut reqs = vec![
                ("no token", http.request(m.clone(), &url)),
                (
                    "wrong Host",
                    http.request(m.clone(), &url)
                        .bearer_auth(TOKEN)
                        .header("host", "evil.example"),
                ),
                (
                    "plain",
                    http.request(m.clone(), &url)
                        .bearer_auth(TOKEN)
                        .header("idempotency-key", format!("walk-{method}-{path}")),
                ),
            ];
            if has_body {
                reqs.push((
                    "text/plain body",
                    http.request(m.clone(), &url)
                        .bearer_auth(TOKEN)
                        .header("idempotency-key", format!("walk-t-{method}-{path}"))
                        .header("content-type", "text/plain")
                        .body("{}"),
                ));
                reqs.push((
                    "empty JSON object",
                    http.request(m.clone(), &url)
                        .bearer_auth(TOKEN)
                        .header("idempotency-key", format!("walk-j-{method}-{path}"))
                        .header("content-type", "application/json")
                        .body("{}"),
                ));
                reqs.push((
                    "JSON array",
                    http.request(m.clone(), &url)
                        .bearer_auth(TOKEN)
                        .header("idempotency-key", format!("walk-a-{method}-{path}"))
                        .header("content-type", "application/json")
                        .body("[1]"),
                ));
            }
            if m == reqwest::Method::POST {
                reqs.push((
                    "no request id",
                    http.request(m.clone(), &url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body("{}"),
                ));
            }
            if path == "/v1/health" {
                for q in ["live", "ready", "nonsense"] {
                    reqs.push((
                        "probe",
                        http.request(m.clone(), format!("{url}?probe={q}")),
                    ));
                }
            }
            for (what, req) in reqs {
                let r = req.send().await.unwrap();
                let st = r.status().as_u16();
                probes += 1;
                if !documented.contains(&st) {
                    missing.push(format!("{method} {path} ({what}): {st}"));
                }
            }
        }
    }
    assert!(probes > 50, "{probes} probes");
    assert!(missing.is_empty(), "undocumented statuses:\n{}", missing.join("\n"));
    s.shutdown().await;
}
