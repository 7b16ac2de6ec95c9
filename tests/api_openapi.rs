//! The OpenAPI document against the server, over real HTTP on loopback: every answer the
//! server gives in this walk — status, content type and body — must be what the document
//! says for that route. Bodies are validated with the schema the document gives for the
//! route and status (`$ref`s into `components/schemas`, OpenAPI 3.0's `nullable` read as
//! JSON Schema's `null`, and objects that list their properties closed, so a field the
//! document does not declare is a mismatch too); an error body must be the one error shape
//! and its `code` must be named in the description of that status.
//!
//! The walk probes every route (no token, a wrong `Host`, bodies that are not JSON objects,
//! no request id, an unknown id) and then drives the lifecycles a till drives — sales,
//! pre-authorizations and their captures, voids, reversals, refunds, a busy reader and a
//! cancel, the simulator's controls, the reconciliation — against the embedded simulator,
//! the sandbox gateway and the journal, then breaks what can break: a stalled body, stalled
//! headers, a gateway that is down or hangs, a journal that no longer answers, a reader
//! that went away. At the end every status the document lists must have been answered at
//! least once, except the few listed in [`NOT_TRIGGERED`] with the reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use emvbridge::api::{self, ApiOptions, ApiServer, MAX_BODY, OPENAPI};
use emvbridge::config::RelayOptions;
use emvbridge::gateway::Dialect;
use emvbridge::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

const SIM_CHANNEL: &str = "the embedded simulator's control channel fails only when the \
     simulator's task has died, which nothing a client sends can cause";

/// Documented statuses no test can make the server answer, and why.
const NOT_TRIGGERED: &[(&str, &str, u16, &str)] = &[
    ("get", "/v1/simulator", 503, SIM_CHANNEL),
    ("put", "/v1/simulator/card", 503, SIM_CHANNEL),
    ("put", "/v1/simulator/auto", 503, SIM_CHANNEL),
    ("post", "/v1/simulator/{action}", 503, SIM_CHANNEL),
    (
        "post",
        "/v1/preauths/{id}/capture",
        501,
        "the one dialect whose gateway cannot capture (Pay1st) has no pre-authorizations \
         either (\"only sales\"), so there is never an approved one to capture; PaymentsAI \
         answers it only for an authorization record it cannot use, which the sandbox never \
         returns. 501 stays documented as the answer of a dialect without captures",
    ),
    (
        "post",
        "/v1/preauths/{id}/capture",
        504,
        "a capture is sent with an idempotency key and re-sent when its answer is lost, so \
         the sandbox's replay settles it; 504 needs every re-send to fail after the gateway \
         took the first, which no fault rule can order",
    ),
];

/// The document, read as JSON Schema.
struct Doc {
    doc: Value,
    components: Value,
    validators: HashMap<String, jsonschema::Validator>,
}

/// OpenAPI 3.0 schema → JSON Schema: `nullable: true` admits `null`; an object that lists
/// its `properties` admits no others (unless it says otherwise).
fn json_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut o: serde_json::Map<String, Value> = m
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| {
                    let keep_as_is = matches!(k.as_str(), "enum" | "example" | "default");
                    (
                        k.clone(),
                        if keep_as_is {
                            v.clone()
                        } else {
                            json_schema(v)
                        },
                    )
                })
                .collect();
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), json!(false));
            }
            if m.get("nullable") == Some(&json!(true)) {
                return json!({"anyOf": [Value::Object(o), {"type": "null"}]});
            }
            Value::Object(o)
        }
        Value::Array(a) => Value::Array(a.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

impl Doc {
    fn load() -> Doc {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        let components = json_schema(&doc["components"]);
        Doc {
            doc,
            components,
            validators: HashMap::new(),
        }
    }

    /// Every (method, route, status) the document lists.
    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut out = BTreeSet::new();
        for (path, ops) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let Some(rs) = op["responses"].as_object() else {
                    continue;
                };
                for st in rs.keys().filter_map(|k| k.parse().ok()) {
                    out.insert((method.clone(), path.clone(), st));
                }
            }
        }
        out
    }

    /// Whether `status`, `content_type` and `body` are what the document says `method route`
    /// answers.
    fn check(
        &mut self,
        method: &str,
        route: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let resp = &self.doc["paths"][route][method]["responses"][status.to_string()];
        if !resp.is_object() {
            return Err(format!("status {status} is not documented"));
        }
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some(content) = resp["content"].as_object() else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{status} is documented without a body"))
            };
        };
        let Some(m) = content.get(&media) else {
            return Err(format!(
                "content type {media:?} not documented for {status} (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            ));
        };
        if media != "application/json" {
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{status}: body is not JSON ({e})"))?;
        let key = format!("{method} {route} {status}");
        if !self.validators.contains_key(&key) {
            let mut root = json_schema(&m["schema"]);
            root.as_object_mut()
                .ok_or("schema is not an object")?
                .insert("components".into(), self.components.clone());
            let v = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .map_err(|e| format!("the schema of {key} does not compile: {e}"))?;
            self.validators.insert(key.clone(), v);
        }
        let errors: Vec<String> = self.validators[&key]
            .iter_errors(&instance)
            .map(|e| format!("{e} (at {})", e.instance_path))
            .collect();
        if !errors.is_empty() {
            return Err(format!("{status}: {} in {instance}", errors.join("; ")));
        }
        if m["schema"]["$ref"] == "#/components/schemas/Error" {
            let code = instance["error"]["code"].as_str().unwrap_or("");
            let described = resp["description"].as_str().unwrap_or("");
            if !described.contains(&format!("`{code}`")) {
                return Err(format!(
                    "{status}: error code `{code}` is not named in the description {described:?}"
                ));
            }
        }
        Ok(())
    }
}

/// The walk: every answer is checked and remembered.
struct Walk {
    doc: Doc,
    http: reqwest::Client,
    seen: BTreeSet<(String, String, u16)>,
    problems: Vec<String>,
    answers: usize,
}

impl Walk {
    fn new() -> Walk {
        Walk {
            doc: Doc::load(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            seen: BTreeSet::new(),
            problems: Vec::new(),
            answers: 0,
        }
    }

    /// Records one answer of `method route` and checks it against the document.
    fn observe(
        &mut self,
        what: &str,
        method: &str,
        route: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) {
        self.answers += 1;
        self.seen
            .insert((method.to_owned(), route.to_owned(), status));
        if let Err(e) = self.doc.check(method, route, status, content_type, body) {
            self.problems
                .push(format!("{} {route} ({what}): {e}", method.to_uppercase()));
        }
    }

    /// Sends `req` (for the documented `route`), checks the answer, returns status and JSON
    /// body (`null` when it is not JSON).
    async fn send(
        &mut self,
        what: &str,
        route: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let req = req.build().unwrap();
        let method = req.method().as_str().to_ascii_lowercase();
        let r = self.http.execute(req).await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if ct.starts_with("text/event-stream") {
            // A stream that does not end: its status and type are the answer.
            self.observe(what, &method, route, status, &ct, b"");
            return (status, Value::Null);
        }
        let body = r.bytes().await.unwrap();
        self.observe(what, &method, route, status, &ct, &body);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

fn url(s: &ApiServer, path: &str) -> String {
    format!("http://{}{path}", s.addr)
}

/// A request with the token (and, for a POST, a fresh idempotency key and a JSON body).
fn authed(w: &Walk, m: reqwest::Method, s: &ApiServer, path: &str) -> reqwest::RequestBuilder {
    w.http.request(m, url(s, path)).bearer_auth(TOKEN)
}

static KEYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn key() -> String {
    format!(
        "walk-{}-{}",
        std::process::id(),
        KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn post(w: &Walk, s: &ApiServer, path: &str, body: Value) -> reqwest::RequestBuilder {
    authed(w, reqwest::Method::POST, s, path)
        .header("idempotency-key", key())
        .json(&body)
}

fn put(w: &Walk, s: &ApiServer, path: &str, body: Value) -> reqwest::RequestBuilder {
    authed(w, reqwest::Method::PUT, s, path).json(&body)
}

fn get(w: &Walk, s: &ApiServer, path: &str) -> reqwest::RequestBuilder {
    authed(w, reqwest::Method::GET, s, path)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Polls the transaction until it has ended.
async fn settled(w: &mut Walk, s: &ApiServer, id: &str) -> Value {
    for _ in 0..300 {
        let (st, v) = w
            .send(
                "poll",
                "/v1/transactions/{id}",
                get(w, s, &format!("/v1/transactions/{id}")),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        if v["status"] != "in_progress" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("transaction {id} did not end");
}

fn options(terminal: TerminalOptions) -> ApiOptions {
    ApiOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        token: TOKEN.into(),
        terminal,
        sale_timeout: Duration::from_secs(30),
        txn_config: TxnConfig::default(),
    }
}

/// Every route, probed as a careless or hostile client would.
async fn probe_every_route(w: &mut Walk, s: &ApiServer) {
    let doc = w.doc.doc.clone();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let Ok(m) = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let concrete = path
                .replace("{id}", "no-such-id")
                .replace("{action}", "remove");
            let u = url(s, &concrete);
            let has_body = m == reqwest::Method::POST || m == reqwest::Method::PUT;
            let mut reqs = vec![
                ("no token", w.http.request(m.clone(), &u)),
                (
                    "wrong Host",
                    w.http
                        .request(m.clone(), &u)
                        .bearer_auth(TOKEN)
                        .header("host", "evil.example"),
                ),
                (
                    "plain",
                    w.http
                        .request(m.clone(), &u)
                        .bearer_auth(TOKEN)
                        .header("idempotency-key", key()),
                ),
            ];
            if has_body {
                for (what, ct, body) in [
                    ("text/plain body", "text/plain", "{}".to_owned()),
                    ("empty JSON object", "application/json", "{}".to_owned()),
                    ("JSON array", "application/json", "[1]".to_owned()),
                    (
                        "too large",
                        "application/json",
                        format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_BODY)),
                    ),
                ] {
                    reqs.push((
                        what,
                        w.http
                            .request(m.clone(), &u)
                            .bearer_auth(TOKEN)
                            .header("idempotency-key", key())
                            .header("content-type", ct)
                            .body(body),
                    ));
                }
            }
            if m == reqwest::Method::POST {
                reqs.push((
                    "no request id",
                    w.http
                        .request(m.clone(), &u)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body("{}"),
                ));
            }
            if path == "/v1/health" {
                for q in ["live", "ready", "nonsense", "live&probe=ready"] {
                    reqs.push(("probe", w.http.request(m.clone(), format!("{u}?probe={q}"))));
                }
            }
            for (what, req) in reqs {
                w.send(what, path, req).await;
            }
        }
    }
}

/// Card transactions, follow-ups, the reader and the simulator, on the in-memory store.
async fn lifecycles(w: &mut Walk, s: &ApiServer) {
    // Sales: approved, replayed, a reused key, a bad amount and currency.
    let k = key();
    let sale = |w: &Walk, k: &str, body: Value| {
        authed(w, reqwest::Method::POST, s, "/v1/sales")
            .header("idempotency-key", k)
            .json(&body)
    };
    let (st, v) = w
        .send(
            "sale",
            "/v1/sales",
            sale(
                w,
                &k,
                json!({"amount": 1500, "currency": "USD", "reference": "T-1"}),
            ),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("approved")), "{v}");
    let sale_id = v["id"].as_str().unwrap().to_owned();
    let (st, _) = w
        .send(
            "replay",
            "/v1/sales",
            sale(
                w,
                &k,
                json!({"currency": "USD", "reference": "T-1", "amount": 1500}),
            ),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = w
        .send(
            "reused key",
            "/v1/sales",
            sale(w, &k, json!({"amount": 1600, "currency": "USD"})),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "request_id_reused"), "{v}");
    for bad in [
        json!({"amount": 0, "currency": "USD"}),
        json!({"amount": 100, "currency": "XYZ"}),
        json!({"amount": 100}),
    ] {
        let (st, _) = w
            .send("bad sale", "/v1/sales", post(w, s, "/v1/sales", bad))
            .await;
        assert!(st == 400 || st == 422, "{st}");
    }
    let (st, v) = w
        .send(
            "bad preauth",
            "/v1/preauths",
            post(
                w,
                s,
                "/v1/preauths",
                json!({"amount": 0, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "invalid_amount"), "{v}");
    // A key used for a sale, sent again on a follow-up: another request.
    for (route, path) in [
        (
            "/v1/transactions/{id}/void",
            format!("/v1/transactions/{sale_id}/void"),
        ),
        (
            "/v1/transactions/{id}/reverse",
            format!("/v1/transactions/{sale_id}/reverse"),
        ),
    ] {
        let req = authed(w, reqwest::Method::POST, s, &path)
            .header("idempotency-key", &k)
            .json(&json!({}));
        let (st, v) = w.send("reused key", route, req).await;
        assert_eq!((st, code(&v)), (422, "request_id_reused"), "{v}");
    }
    let (st, v) = w
        .send(
            "declined sale",
            "/v1/sales",
            post(
                w,
                s,
                "/v1/sales",
                json!({"amount": 1051, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("declined")), "{v}");
    let declined_id = v["id"].as_str().unwrap().to_owned();
    // The issuer approves, the card refuses the ARPC (x.91): reversed, and the record's
    // reversal object is checked against the document too.
    let (st, v) = w
        .send(
            "sale the card declines after approval",
            "/v1/sales",
            post(
                w,
                s,
                "/v1/sales",
                json!({"amount": 1291, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("reversed")), "{v}");
    assert_eq!(v["reversal"]["result"], "reversed", "{v}");

    // A pre-authorization and its capture: another currency, too much, then right, then again.
    let (st, v) = w
        .send(
            "preauth",
            "/v1/preauths",
            post(
                w,
                s,
                "/v1/preauths",
                json!({"amount": 5000, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("approved")), "{v}");
    let pre = v["id"].as_str().unwrap().to_owned();
    let capture = format!("/v1/preauths/{pre}/capture");
    let route = "/v1/preauths/{id}/capture";
    let (st, v) = w
        .send(
            "capture in EUR",
            route,
            post(w, s, &capture, json!({"amount": 100, "currency": "EUR"})),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "currency_mismatch"), "{v}");
    assert_eq!(
        v["error"]["message"],
        "the authorization is in USD; a capture must be in USD too"
    );
    let (st, v) = w
        .send(
            "capture too much",
            route,
            post(w, s, &capture, json!({"amount": 5001, "currency": "USD"})),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "invalid_amount"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the capture is at most the authorized"),
        "{v}"
    );
    let (st, v) = w
        .send(
            "capture",
            route,
            post(w, s, &capture, json!({"amount": 4000, "currency": "USD"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = w
        .send("capture again", route, post(w, s, &capture, json!({})))
        .await;
    assert_eq!((st, code(&v)), (409, "already_captured"), "{v}");
    let (st, v) = w
        .send(
            "capture a sale",
            route,
            post(w, s, &format!("/v1/preauths/{sale_id}/capture"), json!({})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "not_a_preauth"), "{v}");

    // Refunds: of a sale, too much, of a decline, of nothing, card-present.
    let (_, v) = w
        .send(
            "sale to refund",
            "/v1/sales",
            post(
                w,
                s,
                "/v1/sales",
                json!({"amount": 4000, "currency": "USD"}),
            ),
        )
        .await;
    let paid = v["id"].as_str().unwrap().to_owned();
    let (st, v) = w
        .send(
            "refund",
            "/v1/refunds",
            post(
                w,
                s,
                "/v1/refunds",
                json!({"amount": 1000, "currency": "USD", "transaction_id": paid}),
            ),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("approved")), "{v}");
    let (st, v) = w
        .send(
            "refund too much",
            "/v1/refunds",
            post(
                w,
                s,
                "/v1/refunds",
                json!({"amount": 3001, "currency": "USD", "transaction_id": paid}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (422, "invalid_amount"), "{v}");
    let (st, v) = w
        .send(
            "refund of a decline",
            "/v1/refunds",
            post(
                w,
                s,
                "/v1/refunds",
                json!({"amount": 100, "currency": "USD", "transaction_id": declined_id}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "not_refundable"), "{v}");
    let (st, _) = w
        .send(
            "refund of nothing",
            "/v1/refunds",
            post(
                w,
                s,
                "/v1/refunds",
                json!({"amount": 100, "currency": "USD", "transaction_id": "no-such-id"}),
            ),
        )
        .await;
    assert_eq!(st, 404);
    let (st, v) = w
        .send(
            "card-present refund",
            "/v1/refunds",
            post(
                w,
                s,
                "/v1/refunds",
                json!({"amount": 700, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // Void (an uncaptured pre-authorization) and reverse.
    let (_, v) = w
        .send(
            "preauth to void",
            "/v1/preauths",
            post(
                w,
                s,
                "/v1/preauths",
                json!({"amount": 3000, "currency": "USD"}),
            ),
        )
        .await;
    let sale_id = v["id"].as_str().unwrap().to_owned();
    let (st, v) = w
        .send(
            "void",
            "/v1/transactions/{id}/void",
            post(w, s, &format!("/v1/transactions/{sale_id}/void"), json!({})),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("voided")), "{v}");
    let (st, v) = w
        .send(
            "void again",
            "/v1/transactions/{id}/void",
            post(w, s, &format!("/v1/transactions/{sale_id}/void"), json!({})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "not_voidable"), "{v}");
    let (_, v) = w
        .send(
            "sale to reverse",
            "/v1/sales",
            post(
                w,
                s,
                "/v1/sales",
                json!({"amount": 1200, "currency": "USD"}),
            ),
        )
        .await;
    let to_reverse = v["id"].as_str().unwrap().to_owned();
    let reverse = format!("/v1/transactions/{to_reverse}/reverse");
    let (st, v) = w
        .send(
            "reverse",
            "/v1/transactions/{id}/reverse",
            post(w, s, &reverse, json!({})),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("reversed")), "{v}");
    let (st, v) = w
        .send(
            "reverse again",
            "/v1/transactions/{id}/reverse",
            post(w, s, &reverse, json!({})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "not_reversible"), "{v}");

    // The list and its queries.
    let (st, v) = w
        .send(
            "list",
            "/v1/transactions",
            get(w, s, "/v1/transactions?limit=2"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    for q in [
        format!("?cursor={cursor}"),
        "?reference=T-1".into(),
        "?status=approved&since=0".into(),
    ] {
        let (st, v) = w
            .send(
                "list",
                "/v1/transactions",
                get(w, s, &format!("/v1/transactions{q}")),
            )
            .await;
        assert_eq!(st, 200, "{q}: {v}");
    }
    for q in [
        "?limit=0",
        "?limit=abc",
        "?limit=1&limit=2",
        "?status=paid",
        "?cursor=zz",
        "?since=yesterday",
        "?x=1",
    ] {
        let (st, v) = w
            .send(
                "bad list",
                "/v1/transactions",
                get(w, s, &format!("/v1/transactions{q}")),
            )
            .await;
        assert_eq!(st, 400, "{q}: {v}");
    }
    let (st, v) = w
        .send(
            "reference too long",
            "/v1/transactions",
            get(
                w,
                s,
                &format!("/v1/transactions?reference={}", "r".repeat(65)),
            ),
        )
        .await;
    assert_eq!(st, 422, "{v}");

    // The reader: asynchronous answers, a busy reader, a cancel.
    let (st, _) = w
        .send(
            "auto off",
            "/v1/simulator/auto",
            put(w, s, "/v1/simulator/auto", json!({"insert": false})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = w
        .send(
            "async sale",
            "/v1/sales",
            post(w, s, "/v1/sales", json!({"amount": 900, "currency": "USD"}))
                .header("prefer", "respond-async"),
        )
        .await;
    assert_eq!((st, &v["status"]), (202, &json!("in_progress")), "{v}");
    let running = v["id"].as_str().unwrap().to_owned();
    for (what, route, path, body) in [
        (
            "busy sale",
            "/v1/sales",
            "/v1/sales",
            json!({"amount": 900, "currency": "USD"}),
        ),
        (
            "busy preauth",
            "/v1/preauths",
            "/v1/preauths",
            json!({"amount": 900, "currency": "USD"}),
        ),
        (
            "busy refund",
            "/v1/refunds",
            "/v1/refunds",
            json!({"amount": 900, "currency": "USD"}),
        ),
        (
            "busy display",
            "/v1/device/display",
            "/v1/device/display",
            json!({"text": "hello"}),
        ),
        (
            "busy reset",
            "/v1/device/reset",
            "/v1/device/reset",
            json!({}),
        ),
    ] {
        let (st, v) = w.send(what, route, post(w, s, path, body)).await;
        assert_eq!((st, code(&v)), (409, "reader_busy"), "{what}: {v}");
    }
    let (st, v) = w
        .send("device busy", "/v1/device", get(w, s, "/v1/device"))
        .await;
    assert_eq!((st, &v["busy"]), (200, &json!(true)), "{v}");
    let (st, v) = w
        .send(
            "cancel",
            "/v1/transactions/{id}/cancel",
            post(
                w,
                s,
                &format!("/v1/transactions/{running}/cancel"),
                json!({}),
            ),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let v = settled(w, s, &running).await;
    assert_eq!(v["status"], "cancelled", "{v}");
    let (st, v) = w
        .send(
            "cancel again",
            "/v1/transactions/{id}/cancel",
            post(
                w,
                s,
                &format!("/v1/transactions/{running}/cancel"),
                json!({}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "not_running"), "{v}");
    let (st, _) = w
        .send(
            "auto on",
            "/v1/simulator/auto",
            put(w, s, "/v1/simulator/auto", json!({"insert": true})),
        )
        .await;
    assert_eq!(st, 200);
    for (route, path) in [
        ("/v1/preauths", "/v1/preauths"),
        ("/v1/refunds", "/v1/refunds"),
    ] {
        let (st, v) = w
            .send(
                "async",
                route,
                post(w, s, path, json!({"amount": 800, "currency": "USD"}))
                    .header("prefer", "respond-async"),
            )
            .await;
        assert_eq!(st, 202, "{v}");
        settled(w, s, v["id"].as_str().unwrap()).await;
    }

    // The device and the simulator's controls.
    for (what, route, req) in [
        (
            "display",
            "/v1/device/display",
            post(w, s, "/v1/device/display", json!({"text": "Welcome"})),
        ),
        (
            "display too long",
            "/v1/device/display",
            post(w, s, "/v1/device/display", json!({"text": "x".repeat(65)})),
        ),
        (
            "reset",
            "/v1/device/reset",
            post(w, s, "/v1/device/reset", json!({})),
        ),
        (
            "card",
            "/v1/simulator/card",
            put(w, s, "/v1/simulator/card", json!({"profile": "mc-cvn16"})),
        ),
        (
            "no such card",
            "/v1/simulator/card",
            put(
                w,
                s,
                "/v1/simulator/card",
                json!({"profile": "no-such-card"}),
            ),
        ),
        (
            "card back",
            "/v1/simulator/card",
            put(w, s, "/v1/simulator/card", json!({"profile": "visa-cvn18"})),
        ),
        ("status", "/v1/simulator", get(w, s, "/v1/simulator")),
        (
            "insert",
            "/v1/simulator/{action}",
            post(w, s, "/v1/simulator/insert", json!({})),
        ),
        (
            "insert an unknown card",
            "/v1/simulator/{action}",
            post(
                w,
                s,
                "/v1/simulator/insert",
                json!({"profile": "no-such-card"}),
            ),
        ),
        (
            "remove",
            "/v1/simulator/{action}",
            post(w, s, "/v1/simulator/remove", json!({})),
        ),
        (
            "pin without a prompt",
            "/v1/simulator/{action}",
            post(w, s, "/v1/simulator/pin", json!({"digits": "1234"})),
        ),
        (
            "no such action",
            "/v1/simulator/{action}",
            post(w, s, "/v1/simulator/fly", json!({})),
        ),
        (
            "auto with an unknown field",
            "/v1/simulator/auto",
            put(w, s, "/v1/simulator/auto", json!({"fly": true})),
        ),
        ("events", "/v1/events", get(w, s, "/v1/events")),
        ("metrics", "/metrics", w.http.get(url(s, "/metrics"))),
        ("openapi", "/v1/openapi", w.http.get(url(s, "/v1/openapi"))),
        (
            "no journal",
            "/v1/reconciliation",
            get(w, s, "/v1/reconciliation?date=2026-03-29"),
        ),
    ] {
        let (st, v) = w.send(what, route, req).await;
        assert!(st < 500, "{what}: {st} {v}");
    }
}

/// A journal and its configuration (short API timeouts so a stall is seen in under a second,
/// a short gateway timeout so a hanging gateway is seen in two).
struct Files {
    dir: PathBuf,
    config: PathBuf,
    journal: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!("emvb-openapi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("journal.db");
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "[journal]\npath = {:?}\n[timeouts]\nrequest_ms = 1000\n\
                 [api]\nheader_timeout_ms = 700\nbody_timeout_ms = 700\n",
                journal.display().to_string()
            ),
        )
        .unwrap();
        Files {
            dir,
            config,
            journal,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A request whose body never comes: `408 body_timeout`, checked like any other answer.
async fn stalled_body(w: &mut Walk, s: &ApiServer, method: &str, route: &str, path: &str) {
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "{} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Idempotency-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{{",
        method.to_uppercase(),
        s.addr,
        key()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = c.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= at + 4 + len {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{method} {path}: no answer to a stalled body");
    let at = find(&buf, b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&buf[..at]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let ct = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = buf[at + 4..].to_vec();
    assert_eq!(status, 408, "{method} {path}: {head}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "body_timeout"
    );
    w.observe("stalled body", method, route, status, &ct, &body);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|x| x == needle)
}

/// The journal, the gateway and the timeouts: reconciliation, 408, and a gateway that is
/// down or does not answer.
async fn with_the_journal(w: &mut Walk, gw: SandboxHandle, files: &Files) {
    let s = api::start_with_relay(
        options(TerminalOptions {
            gateway: gw.url(),
            config: Some(files.config.clone()),
            ..TerminalOptions::default()
        }),
        RelayOptions {
            journal: None,
            config: Some(files.config.clone()),
        },
    )
    .await
    .expect("api starts");
    let (st, v) = w
        .send(
            "health",
            "/v1/health",
            w.http.get(url(&s, "/v1/health")).bearer_auth(TOKEN),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("ok")), "{v}");
    let mut ids = Vec::new();
    for (route, amount) in [
        ("/v1/preauths", 5000),
        ("/v1/preauths", 5000),
        ("/v1/preauths", 5000),
        ("/v1/preauths", 5000),
        ("/v1/sales", 1500),
        ("/v1/sales", 1500),
    ] {
        let (st, v) = w
            .send(
                "approve",
                route,
                post(w, &s, route, json!({"amount": amount, "currency": "USD"})),
            )
            .await;
        assert_eq!((st, &v["status"]), (200, &json!("approved")), "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let today = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        now - now % 86_400
    };
    for (q, want) in [
        (format!("?from={today}&to={}", today + 86_400), 200),
        ("?date=2026-03-29&tz=Europe/Berlin".to_owned(), 200),
        ("?date=2026-11-01&tz=America/New_York".to_owned(), 200),
        ("?date=2026-03-29&tz=%2B05:30".to_owned(), 200),
        ("?date=2026-03-29&tz=Mars/Olympus".to_owned(), 400),
        ("?date=2026-02-30".to_owned(), 400),
        ("?date=2026-03-29&extra=1".to_owned(), 400),
        ("?date=2026-03-29&date=2026-03-30".to_owned(), 400),
        ("?date=2026-03-29&tz=Europe/Berlin&tz=UTC".to_owned(), 400),
    ] {
        let (st, v) = w
            .send(
                "reconciliation",
                "/v1/reconciliation",
                get(w, &s, &format!("/v1/reconciliation{q}")),
            )
            .await;
        assert_eq!(st, want, "{q}: {v}");
    }

    // A request whose body stalls, on every route that takes one: 408 in under a second.
    let doc = w.doc.doc.clone();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put"] {
            if ops.get(method).is_some() {
                let concrete = path.replace("{id}", &ids[4]).replace("{action}", "remove");
                stalled_body(w, &s, method, path, &concrete).await;
            }
        }
    }
    // Stalled headers: hyper closes the connection without an answer (no status to check).
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .expect("the connection is closed after the header timeout");
    assert!(
        n.is_ok() && buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );

    // The gateway takes a void (PaymentsAI: a refund of the authorization) but the connection
    // drops before the answer: 504, the outcome
    // unknown. (A capture in the same fault is settled: it is re-sent with the same
    // idempotency key and the gateway answers the replay.)
    let fault = |op: &str| json!({"match": {"op": op}, "action": {"type": "drop", "commit": true}, "times": 0});
    for rule in [fault("capture"), fault("void"), fault("refund")] {
        let r = w
            .http
            .post(format!("{}/_sim/faults", gw.url()))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (st, v) = w
        .send(
            "capture, answer lost once",
            "/v1/preauths/{id}/capture",
            post(
                w,
                &s,
                &format!("/v1/preauths/{}/capture", ids[0]),
                json!({}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = w
        .send(
            "void, answer lost",
            "/v1/transactions/{id}/void",
            post(
                w,
                &s,
                &format!("/v1/transactions/{}/void", ids[1]),
                json!({}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (504, "gateway_unknown"), "{v}");

    // The gateway is down: nothing processed (503), a reversal not confirmed (502).
    gw.shutdown().await;
    let (st, v) = w
        .send(
            "capture, gateway down",
            "/v1/preauths/{id}/capture",
            post(
                w,
                &s,
                &format!("/v1/preauths/{}/capture", ids[2]),
                json!({}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (503, "gateway_unavailable"), "{v}");
    let (st, v) = w
        .send(
            "void, gateway down",
            "/v1/transactions/{id}/void",
            post(
                w,
                &s,
                &format!("/v1/transactions/{}/void", ids[3]),
                json!({}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (503, "gateway_unavailable"), "{v}");
    let (st, v) = w
        .send(
            "reverse, gateway down",
            "/v1/transactions/{id}/reverse",
            post(
                w,
                &s,
                &format!("/v1/transactions/{}/reverse", ids[4]),
                json!({}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (502, "reversal_pending"), "{v}");
    let (st, v) = w
        .send(
            "refund, gateway down",
            "/v1/refunds",
            post(
                w,
                &s,
                "/v1/refunds",
                json!({"amount": 100, "currency": "USD", "transaction_id": ids[5]}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (503, "gateway_unavailable"), "{v}");

    // The journal stops answering: not ready (503), and nothing to reconcile from (500).
    {
        let c = rusqlite::Connection::open(&files.journal).unwrap();
        c.execute_batch("DROP TABLE txns; DROP TABLE api_transactions;")
            .unwrap();
    }
    let (st, v) = w
        .send(
            "health, journal gone",
            "/v1/health",
            w.http.get(url(&s, "/v1/health")),
        )
        .await;
    assert_eq!((st, &v["status"]), (503, &json!("unavailable")), "{v}");
    let (st, v) = w
        .send(
            "reconciliation, journal gone",
            "/v1/reconciliation",
            get(w, &s, "/v1/reconciliation?date=2026-03-29"),
        )
        .await;
    assert_eq!((st, code(&v)), (500, "internal"), "{v}");
    s.shutdown().await;
}

/// Pay1st's lane cannot void or refund at the gateway: `501 unsupported`.
async fn an_unsupported_operation(w: &mut Walk) {
    let s = api::start(options(TerminalOptions {
        dialect: Dialect::Pay1st,
        ..TerminalOptions::default()
    }))
    .await
    .expect("api starts");
    let (st, v) = w
        .send(
            "pay1st sale",
            "/v1/sales",
            post(
                w,
                &s,
                "/v1/sales",
                json!({"amount": 1500, "currency": "NGN"}),
            ),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("approved")), "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (st, v) = w
        .send(
            "pay1st void",
            "/v1/transactions/{id}/void",
            post(w, &s, &format!("/v1/transactions/{id}/void"), json!({})),
        )
        .await;
    assert_eq!((st, code(&v)), (501, "unsupported"), "{v}");
    let (st, v) = w
        .send(
            "pay1st refund",
            "/v1/refunds",
            post(
                w,
                &s,
                "/v1/refunds",
                json!({"amount": 500, "currency": "NGN", "transaction_id": id}),
            ),
        )
        .await;
    assert_eq!((st, code(&v)), (501, "unsupported"), "{v}");
    s.shutdown().await;
}

/// A reader that went away: not ready (503), and the device routes answer `502`.
async fn a_reader_that_went_away(w: &mut Walk) {
    use emvbridge::driver::transport::DeviceAddr;
    let dev = emvbridge::embedded::SimDevice::start("visa-cvn18")
        .await
        .unwrap();
    let device = match &dev.addr {
        DeviceAddr::Tcp { host, port, .. } => format!("tcp://{host}:{port}"),
        other => panic!("{other:?}"),
    };
    let s = api::start(options(TerminalOptions {
        device: Some(device),
        ..TerminalOptions::default()
    }))
    .await
    .expect("api starts");
    for (route, req) in [
        ("/v1/simulator", get(w, &s, "/v1/simulator")),
        (
            "/v1/simulator/card",
            put(w, &s, "/v1/simulator/card", json!({"profile": "mc-cvn16"})),
        ),
        (
            "/v1/simulator/auto",
            put(w, &s, "/v1/simulator/auto", json!({"insert": false})),
        ),
        (
            "/v1/simulator/{action}",
            post(w, &s, "/v1/simulator/insert", json!({})),
        ),
    ] {
        let (st, v) = w.send("simulator absent", route, req).await;
        assert_eq!((st, code(&v)), (404, "no_simulator"), "{v}");
    }
    drop(dev);
    let mut ready = 200;
    for _ in 0..100 {
        let (st, _) = w
            .send(
                "health, reader gone",
                "/v1/health",
                w.http.get(url(&s, "/v1/health")),
            )
            .await;
        ready = st;
        if st == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 503);
    let (st, v) = w
        .send(
            "live, reader gone",
            "/v1/health",
            w.http.get(url(&s, "/v1/health?probe=live")),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("degraded")), "{v}");
    let (st, v) = w
        .send(
            "display, reader gone",
            "/v1/device/display",
            post(w, &s, "/v1/device/display", json!({"text": "hello"})),
        )
        .await;
    assert_eq!((st, code(&v)), (502, "reader_error"), "{v}");
    let (st, v) = w
        .send(
            "reset, reader gone",
            "/v1/device/reset",
            post(w, &s, "/v1/device/reset", json!({})),
        )
        .await;
    assert_eq!((st, code(&v)), (502, "reader_error"), "{v}");
    let (st, v) = w
        .send(
            "sale, reader gone",
            "/v1/sales",
            post(
                w,
                &s,
                "/v1/sales",
                json!({"amount": 1500, "currency": "USD"}),
            ),
        )
        .await;
    assert!(st == 200 || st == 503, "{st} {v}");
    let (st, v) = w
        .send(
            "device, reader gone",
            "/v1/device",
            get(w, &s, "/v1/device"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_ne!(v["link"], "connected", "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_what_the_document_says() {
    let mut w = Walk::new();
    let s = api::start(options(TerminalOptions::default()))
        .await
        .expect("api starts");
    probe_every_route(&mut w, &s).await;
    lifecycles(&mut w, &s).await;
    s.shutdown().await;
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let files = Files::new();
    with_the_journal(&mut w, gw, &files).await;
    an_unsupported_operation(&mut w).await;
    a_reader_that_went_away(&mut w).await;

    assert!(w.answers > 200, "{} answers", w.answers);
    assert!(
        w.problems.is_empty(),
        "answers the document does not describe:\n{}",
        w.problems.join("\n")
    );
    let explained: BTreeSet<(String, String, u16)> = NOT_TRIGGERED
        .iter()
        .map(|(m, p, st, _)| ((*m).to_owned(), (*p).to_owned(), *st))
        .collect();
    let never: Vec<String> = w
        .doc
        .documented()
        .difference(&w.seen)
        .filter(|k| !explained.contains(*k))
        .map(|(m, p, st)| format!("{} {p}: {st}", m.to_uppercase()))
        .collect();
    assert!(
        never.is_empty(),
        "documented but never answered (trigger them, or remove them with the reason):\n{}",
        never.join("\n")
    );
    let stale: Vec<_> = explained.intersection(&w.seen).collect();
    assert!(
        stale.is_empty(),
        "listed as not triggered, yet answered: {stale:?}"
    );
    let by_route: BTreeMap<&str, usize> = w.seen.iter().fold(BTreeMap::new(), |mut m, k| {
        *m.entry(k.1.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_route.len(), api::ROUTES.len(), "{by_route:?}");
}
