//! Contract tests: every request the gateway adapters build is validated against the official
//! definition of its operation, and every reply the sandbox gives against the official response
//! schema, with a JSON Schema validator over the documents in `docs/gateway-specs/` (copied with
//! their sources; see its README). A mismatch fails the build.
//!
//! How the documents are read:
//! - Number's OpenAPI is 3.0: `nullable: true` becomes a `null` in the type (its meaning there).
//! - Rebilly's `oneOf` alternatives are not mutually exclusive (`paymentInstruction`'s
//!   "Payment Methods" requires nothing, so every instruction matches it and another one):
//!   read strictly, the definition would refuse every instruction its own docs show. They are
//!   read as `anyOf`, as Rebilly's tooling treats them.
//! - The transcriptions' `x-ext-fields` / `x-ext-response-fields` (the project's declared
//!   \[EXT\] EMV fields) are removed before validation; nothing else is.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use emvbridge_core::gateway::number::{self, NumberConfig, Session};
use emvbridge_core::gateway::pay1st::{self, Pay1stConfig, Tokens};
use emvbridge_core::gateway::paymentsai::{self, PaiConfig};
use emvbridge_core::gateway::{
    CaptureRequest, HttpReply, HttpRequest, Method, RefundRequest, Secret, StatusResult, TxnState,
    VoidRequest,
};
use emvbridge_core::money::Money;
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, EntryMode, PosReference, Reference,
};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use emvbridge_sim::card::Card;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Documents and validation

fn spec(rel: &str) -> Value {
    let path = format!("{}/docs/gateway-specs/{rel}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if rel.ends_with(".json") {
        serde_json::from_str(&text).unwrap()
    } else {
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` joins the type.
fn openapi30(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = m.get("type").cloned() {
                    m.insert("type".into(), json!([t, "null"]));
                }
            }
            m.values_mut().for_each(openapi30);
        }
        Value::Array(a) => a.iter_mut().for_each(openapi30),
        _ => {}
    }
}

/// Rebilly's `oneOf` read as `anyOf` (see the module docs).
fn one_of_as_any_of(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(o) = m.remove("oneOf") {
                m.insert("anyOf".into(), o);
            }
            m.values_mut().for_each(one_of_as_any_of);
        }
        Value::Array(a) => a.iter_mut().for_each(one_of_as_any_of),
        _ => {}
    }
}

fn number_doc() -> Value {
    let mut d = spec("number/master-openapi-rest.yaml");
    openapi30(&mut d);
    d
}

fn rebilly_doc() -> Value {
    let mut d = spec("rebilly/rebilly-transactions-bundle.json");
    one_of_as_any_of(&mut d);
    d
}

/// `/` in a path as a JSON pointer token.
fn tok(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// What is wrong with `instance` against the schema at JSON pointer `pointer` of `doc`
/// (local `$ref`s resolve against the whole document): the validator's errors, and every
/// field name the schema does not declare (see [`undeclared`]) except `extra`.
fn violations(doc: &Value, pointer: &str, instance: &Value, extra: &[&str]) -> Vec<String> {
    let Some(schema) = doc.pointer(pointer) else {
        return vec![format!("the definition has no schema at {pointer}")];
    };
    let mut root = doc.clone();
    root.as_object_mut()
        .unwrap()
        .insert("$ref".into(), json!(format!("#{}", fragment(pointer))));
    let v = match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
    {
        Ok(v) => v,
        Err(e) => return vec![format!("schema does not compile: {e}")],
    };
    let mut out: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path))
        .collect();
    undeclared(doc, schema, instance, "", extra, &mut out);
    out
}

/// The definitions leave objects open (no `additionalProperties: false`), so a misspelt or
/// invented field would pass the validator: every field name of `instance` must be one the
/// schema declares, along plain `properties`/`items` (through `$ref` and `allOf`).
fn undeclared(
    doc: &Value,
    schema: &Value,
    instance: &Value,
    at: &str,
    extra: &[&str],
    out: &mut Vec<String>,
) {
    let schema = resolve(doc, schema);
    match instance {
        Value::Object(m) => {
            let props = properties_of(doc, schema);
            if props.is_empty() {
                return;
            }
            for (k, v) in m {
                match props.iter().find(|(n, _)| n == k) {
                    Some((_, sub)) => undeclared(doc, sub, v, &format!("{at}/{k}"), extra, out),
                    None if extra.contains(&k.as_str()) => {}
                    None => out.push(format!("{at}/{k} is not a field of the definition")),
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, v) in a.iter().enumerate() {
                    undeclared(doc, items, v, &format!("{at}/{i}"), extra, out);
                }
            }
        }
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        schema = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or(&Value::Null);
    }
    schema
}

/// `properties` of a schema and of its `allOf` parts.
fn properties_of(doc: &Value, schema: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(properties_of(doc, resolve(doc, part)));
    }
    out
}

/// Asserts that `instance` conforms (see [`violations`]).
fn check(doc: &Value, pointer: &str, instance: &Value, what: &str) {
    check_with(doc, pointer, instance, &[], what)
}

fn check_with(doc: &Value, pointer: &str, instance: &Value, extra: &[&str], what: &str) {
    let errors = violations(doc, pointer, instance, extra);
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
}

/// A JSON pointer as a URI fragment (`{`, `}` and other non-URI characters escaped).
fn fragment(pointer: &str) -> String {
    pointer
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/~-._+".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Removes the JSON pointers `ext` (declared \[EXT\] fields) from `v`.
fn strip(mut v: Value, ext: &[&str]) -> Value {
    for p in ext {
        let (parent, key) = p.rsplit_once('/').unwrap();
        if let Some(Value::Object(m)) = v.pointer_mut(parent) {
            m.remove(key);
        }
    }
    v
}

fn body(r: &HttpRequest) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{} body: {e}", r.path))
}

fn query_names(path: &str) -> Vec<String> {
    path.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The declared parameters of an operation (names of `in: header` / `in: query`, after `$ref`).
fn parameters(doc: &Value, op: &Value, place: &str) -> Vec<(String, bool)> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).cloned().unwrap(),
            None => p.clone(),
        })
        .filter(|p| p["in"] == place)
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["required"] == true,
            )
        })
        .collect()
}

async fn send(base: &str, r: &HttpRequest) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{base}{}", r.path);
    let mut b = match r.method {
        Method::Get => c.get(&url),
        Method::Post => c.post(&url).body(r.body.clone()),
    };
    for (n, v) in &r.headers {
        b = b.header(*n, v);
    }
    let resp = b.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("{}: not json: {}", r.path, String::from_utf8_lossy(&bytes))
        }),
    )
}

async fn spawn() -> SandboxHandle {
    sandbox::spawn(SandboxConfig {
        seed: 11,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn sale(
    card: &mut Card,
    reference: &str,
    minor: u64,
    cur: &str,
    kind: AuthKind,
) -> AuthorizationRequest {
    AuthorizationRequest {
        reference: Reference(reference.into()),
        kind,
        amount: Money::from_minor(minor, cur).unwrap(),
        amount_other: Money::from_minor(0, cur).unwrap(),
        entry_mode: EntryMode::Chip,
        icc_data: Bytes::from(common::arqc_data(card, minor, [1, 2, 3, 4])),
        masked_pan: "411111******1111".into(),
        last4: Some("1111".into()),
        brand: Some("visa".into()),
        original_gateway_id: None,
        online_pin: None,
        pos_reference: None,
    }
}

/// A point-of-sale reference with the characters a till may use (spaces, quotes, `#`, `&`,
/// `/`): it goes whole into each dialect's free-text field.
const POS_REF: &str = r#"T7 #1001 "A&B"/x"#;

fn pos_ref() -> Option<PosReference> {
    Some(PosReference::new(POS_REF).unwrap())
}

/// `r` carrying the POS reference [`POS_REF`].
fn with_pos_ref(mut r: AuthorizationRequest) -> AuthorizationRequest {
    r.pos_reference = pos_ref();
    r
}

fn card() -> Card {
    Card::from_profile("visa-cvn10").unwrap()
}

// ---------------------------------------------------------------------------------------------
// Number

/// The OpenAPI operation of an adapter path, under the OpenAPI's base path (the pages' base
/// path differs only in its first segment, and the REST operations are the same).
fn number_op<'a>(doc: &'a Value, path: &str) -> (String, &'a Value) {
    let p = format!(
        "/paths/{}/post",
        tok(&format!("{}{path}", number::OPENAPI_BASE_PATH))
    );
    let op = doc
        .pointer(&p)
        .unwrap_or_else(|| panic!("number: {path} is not an operation of the OpenAPI"));
    (p, op)
}

fn number_request(doc: &Value, r: &HttpRequest, what: &str) {
    assert_eq!(r.method, Method::Post, "{what}");
    let (p, op) = number_op(doc, &r.path);
    for (name, required) in parameters(doc, op, "header") {
        let got = r.header(&name);
        assert!(!required || got.is_some(), "{what}: header {name} missing");
        if name != "SessKey" {
            assert_eq!(got, Some("application/json"), "{what}: {name}");
        }
    }
    check(
        doc,
        &format!("{p}/requestBody/content/application~1json/schema"),
        &body(r),
        what,
    );
}

#[tokio::test]
async fn number_requests_and_replies_follow_the_openapi() {
    let doc = number_doc();
    let mut pages = spec("number/docs-pages-operations.yaml");
    openapi30(&mut pages);
    let gw = spawn().await;
    let defaults = SandboxConfig::default().number;
    let cfg = NumberConfig {
        base_url: format!("{}/number{}", gw.url(), number::PAGES_BASE_PATH),
        acct_code: defaults.acct_code.clone(),
        token: Secret::new(defaults.token.clone()),
        user_id: defaults.user_id.clone(),
        hmac_secret: Secret::new(defaults.hmac_secret.clone()),
        merch_id: None,
        currency: "USD".into(),
        emv_extension: true,
    };
    let ok = |what: &str, p: &str, v: &Value| {
        assert!(
            v.get(what.split(' ').next().unwrap()).is_some(),
            "{what}: envelope missing: {v}"
        );
        check(
            &doc,
            &format!("{p}/responses/200/content/application~1json/schema"),
            v,
            what,
        )
    };

    // Authenticate.
    let auth = number::authenticate_request(&cfg);
    number_request(&doc, &auth, "Authenticate request");
    let (status, reply) = send(&cfg.base_url, &auth).await;
    assert_eq!(status, 200);
    ok(
        "AuthenticateResult",
        &number_op(&doc, "/Authenticate").0,
        &reply,
    );
    let session: Session = number::parse_authenticate(
        &Ok(HttpReply {
            status,
            body: Bytes::from(reply.to_string()),
        }),
        unix_now(),
    )
    .unwrap();
    assert!(session.user_id.is_some(), "ThisUser.ID read");

    // The card-present sale is the project's [EXT]: no such operation in the definition.
    let op = format!(
        "/paths/{}",
        tok(&format!("{}/CardSale/EMV", number::OPENAPI_BASE_PATH))
    );
    assert!(doc.pointer(&op).is_none());
    let mut c = card();
    let emv = number::emv_sale_request(
        &cfg,
        &session,
        unix_now(),
        &with_pos_ref(sale(&mut c, "nc-1", 1234, "USD", AuthKind::Sale)),
    )
    .unwrap();
    // Its `PurchItems` is the official `Items` object: the POS reference in `ServiceDescrip`,
    // our reference in `ClientRefID`.
    check(
        &doc,
        "/components/schemas/Items",
        &body(&emv)["PurchItems"],
        "CardSale/EMV PurchItems with a POS reference",
    );
    assert_eq!(
        body(&emv)["PurchItems"],
        json!({"ServiceDescrip": POS_REF, "ClientRefID": "nc-1"})
    );
    let (_, r) = send(&cfg.base_url, &emv).await;
    let txid = r["CreditCardSale_EMVResult"]["TxID"].as_i64().unwrap();

    // Query by client reference: the quoted grammar, the official envelope.
    let q = number::query_request(&session, &Reference("nc-1".into())).unwrap();
    number_request(&doc, &q, "Query/Transaction request");
    let (status, reply) = send(&cfg.base_url, &q).await;
    assert_eq!(status, 200);
    ok(
        "Transaction_QueryResult",
        &number_op(&doc, "/Query/Transaction").0,
        &reply,
    );
    let ex = Ok(HttpReply {
        status,
        body: Bytes::from(reply.to_string()),
    });
    match number::classify_query(&ex, &Reference("nc-1".into()), "USD") {
        number::Reply::Done(StatusResult::Found(t)) => {
            assert_eq!(
                (t.gateway_id, t.state),
                (txid.to_string(), TxnState::Approved)
            )
        }
        other => panic!("{other:?}"),
    }

    // Void.
    let v = number::void_request(
        &session,
        &VoidRequest {
            reference: Reference("nc-1".into()),
            gateway_id: txid.to_string(),
        },
    )
    .unwrap();
    number_request(&doc, &v, "Void request");
    let (_, reply) = send(&cfg.base_url, &v).await;
    assert_eq!(
        reply["Transaction_VoidResult"]["TxApproved"], true,
        "{reply}"
    );
    ok(
        "Transaction_VoidResult",
        &number_op(&doc, "/CardSale/Void").0,
        &reply,
    );

    // ApplyCredit on another sale.
    let emv = number::emv_sale_request(
        &cfg,
        &session,
        unix_now(),
        &sale(&mut c, "nc-2", 3000, "USD", AuthKind::Sale),
    )
    .unwrap();
    let (_, r) = send(&cfg.base_url, &emv).await;
    let txid2 = r["CreditCardSale_EMVResult"]["TxID"].as_i64().unwrap();
    let credit = number::apply_credit_request(
        &session,
        &RefundRequest {
            reference: Reference("nc-2-rf".into()),
            gateway_id: txid2.to_string(),
            amount: Money::from_minor(500, "USD").unwrap(),
            // ApplyCredit has no free-text field: the request stays the official one.
            pos_reference: pos_ref(),
        },
    )
    .unwrap();
    number_request(&doc, &credit, "ApplyCredit request");
    let (_, reply) = send(&cfg.base_url, &credit).await;
    assert_eq!(
        reply["Transaction_ApplyCreditResult"]["TxApproved"], true,
        "{reply}"
    );
    ok(
        "Transaction_ApplyCreditResult",
        &number_op(&doc, "/CardSale/ApplyCredit").0,
        &reply,
    );
    // The credited sale as the query shows it (records of a sale and its credit).
    let (_, reply) = send(
        &cfg.base_url,
        &number::query_request(&session, &Reference("nc-2".into())).unwrap(),
    )
    .await;
    ok(
        "Transaction_QueryResult after a credit",
        &number_op(&doc, "/Query/Transaction").0,
        &reply,
    );

    // IncrementAuth (capture): the pages' operation, transcribed.
    let emv = number::emv_sale_request(
        &cfg,
        &session,
        unix_now(),
        &sale(&mut c, "nc-3", 2000, "USD", AuthKind::PreAuth),
    )
    .unwrap();
    let (_, r) = send(&cfg.base_url, &emv).await;
    let auth_id = r["CreditCardSale_EMVResult"]["TxID"].as_i64().unwrap();
    let inc = number::capture_request(
        &session,
        &CaptureRequest {
            reference: Reference("nc-3-cap".into()),
            gateway_id: auth_id.to_string(),
            authorized: Money::from_minor(2000, "USD").unwrap(),
            amount: Money::from_minor(2500, "USD").unwrap(),
            // IncrementAuth has none either.
            pos_reference: pos_ref(),
        },
    )
    .unwrap();
    let ip = format!(
        "/paths/{}/post",
        tok(&format!(
            "{}/CardSale/IncrementAuth",
            number::PAGES_BASE_PATH
        ))
    );
    assert_eq!(inc.path, "/CardSale/IncrementAuth");
    for h in ["SessKey", "Content-Type", "Accept"] {
        assert!(inc.header(h).is_some(), "IncrementAuth header {h}");
    }
    check(
        &pages,
        &format!("{ip}/requestBody/content/application~1json/schema"),
        &body(&inc),
        "IncrementAuth request",
    );
    let (_, reply) = send(&cfg.base_url, &inc).await;
    check(
        &pages,
        &format!("{ip}/responses/200/content/application~1json/schema"),
        &reply,
        "CreditCardSale_IncrementalResult",
    );
    assert!(matches!(
        number::classify_op(
            &Ok(HttpReply {
                status: 200,
                body: Bytes::from(reply.to_string())
            }),
            number::INCREMENTAL_RESULT,
            &auth_id.to_string(),
            false
        ),
        number::Reply::Done(emvbridge_core::gateway::OpResult::Done { .. })
    ));
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// PaymentsAI

const PAI_TXNS: &str = "/v1/public-api/organizations/{organizationId}/transactions";

/// Checks a PaymentsAI request against PAI's transcription (path, auth) and the Rebilly
/// operation it names (`x-rebilly-operation`): body schema of both, query parameters.
fn pai_request(pai: &Value, rebilly: &Value, cfg: &PaiConfig, r: &HttpRequest, what: &str) {
    let auth = r.header("Authorization").unwrap_or_default();
    let pattern = pai["components"]["securitySchemes"]["PaiApiKey"]["x-value-pattern"]
        .as_str()
        .unwrap();
    assert!(
        regex_match(pattern, auth),
        "{what}: Authorization does not match {pattern}"
    );
    let (path, _) = r.path.split_once('?').unwrap_or((&r.path, ""));
    let org = format!("/v1/public-api/organizations/{}", cfg.organization_id);
    let rest = path
        .strip_prefix(&org)
        .unwrap_or_else(|| panic!("{what}: {path}"));
    // The transcription's path template for this path.
    let template = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["", "transactions"] => PAI_TXNS.to_owned(),
        ["", "transactions", _] => format!("{PAI_TXNS}/{{id}}"),
        ["", "transactions", _, "refund"] => format!("{PAI_TXNS}/{{id}}/refund"),
        _ => panic!("{what}: {path} is no PaymentsAI operation"),
    };
    let method = match r.method {
        Method::Get => "get",
        Method::Post => "post",
    };
    let op_ptr = format!("/paths/{}/{method}", tok(&template));
    let op = pai
        .pointer(&op_ptr)
        .unwrap_or_else(|| panic!("{what}: {method} {template} not in the transcription"));
    assert_ne!(
        op["x-official"], false,
        "{what}: {template} is not an official operation"
    );
    let rebilly_op = op["x-rebilly-operation"].as_str().unwrap();
    let (rm, rp) = rebilly_op.split_once(' ').unwrap();
    let r_ptr = format!("/paths/{}/{}", tok(rp), rm.to_ascii_lowercase());
    let rop = rebilly.pointer(&r_ptr).unwrap();
    // Query parameters: only those Rebilly's operation declares.
    let allowed: Vec<String> = parameters(rebilly, rop, "query")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for q in query_names(&r.path) {
        assert!(
            allowed.contains(&q),
            "{what}: query parameter {q} not in {allowed:?}"
        );
    }
    if r.method == Method::Post {
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{what}");
        let ext: Vec<&str> = op["x-ext-fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let b = strip(body(r), &ext);
        // PAI's own additions (`idempotencyKey`, `metadata`) against PAI's rules, the rest
        // against Rebilly's operation; together every field is declared.
        let pai_ptr = format!("{op_ptr}/requestBody/content/application~1json/schema");
        let pai_fields: Vec<String> = pai
            .pointer(&format!("{pai_ptr}/properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let pai_only: Vec<&str> = pai_fields.iter().map(String::as_str).collect();
        let mine: Value = b
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| pai_only.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<serde_json::Map<_, _>>()
            .into();
        check(pai, &pai_ptr, &mine, what);
        check_with(
            rebilly,
            &format!("{r_ptr}/requestBody/content/application~1json/schema"),
            &b,
            &pai_only,
            what,
        );
    }
}

/// Checks a sandbox reply against the Rebilly response schema of the operation.
fn pai_reply(
    pai: &Value,
    rebilly: &Value,
    template: &str,
    method: &str,
    status: u16,
    reply: &Value,
    what: &str,
) {
    let op = pai
        .pointer(&format!("/paths/{}/{method}", tok(template)))
        .unwrap();
    let documented = op["x-success-status"].as_str().unwrap();
    assert!(
        documented.split(',').any(|s| s == status.to_string()),
        "{what}: status {status}, documented {documented}"
    );
    let (rm, rp) = op["x-rebilly-operation"]
        .as_str()
        .unwrap()
        .split_once(' ')
        .unwrap();
    let ext: Vec<&str> = op["x-ext-response-fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // A list's [EXT] field is declared on its first element: removed from every element.
    let v = match reply {
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|t| strip(t.clone(), &["/emvResponse"]))
                .collect(),
        ),
        t => strip(t.clone(), &ext),
    };
    let responses = rebilly
        .pointer(&format!(
            "/paths/{}/{}/responses",
            tok(rp),
            rm.to_ascii_lowercase()
        ))
        .unwrap();
    let code = if responses.get(status.to_string()).is_some() {
        status.to_string()
    } else {
        // Refund: PAI's page says 200, Rebilly's definition 201; the schema is Rebilly's.
        responses
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.starts_with('2'))
            .unwrap()
            .clone()
    };
    // Fields PaymentsAI's pages name that Rebilly's schema does not: `refundableAmount` (the
    // refund page), `metadata` (the transactions concept page).
    check_with(
        rebilly,
        &format!(
            "/paths/{}/{}/responses/{code}/content/application~1json/schema",
            tok(rp),
            rm.to_ascii_lowercase()
        ),
        &v,
        &["refundableAmount", "metadata"],
        what,
    );
}

fn regex_match(pattern: &str, text: &str) -> bool {
    let schema = json!({"type": "string", "pattern": pattern});
    jsonschema::is_valid(&schema, &json!(text))
}

#[tokio::test]
async fn paymentsai_requests_and_replies_follow_rebilly_and_the_pages() {
    let pai = spec("paymentsai/paymentsai-public-api.transcribed.yaml");
    let rebilly = rebilly_doc();
    let gw = spawn().await;
    let d = SandboxConfig::default().pai;
    let cfg = PaiConfig {
        base_url: format!("{}/pai", gw.url()),
        organization_id: d.organization_id.clone(),
        api_key: Secret::new(d.stage_credential()),
        website_id: d.website_id.clone(),
        customer_id: d.customer_id.clone(),
        emv_extension: true,
    };
    let mut c = card();

    // Sale, with the POS's reference in Rebilly's `description`.
    let s = paymentsai::authorize_request(
        &cfg,
        &with_pos_ref(sale(&mut c, "pc-1", 1234, "USD", AuthKind::Sale)),
    )
    .unwrap();
    pai_request(
        &pai,
        &rebilly,
        &cfg,
        &s,
        "sale request with a POS reference",
    );
    assert_eq!(
        (&body(&s)["description"], &body(&s)["idempotencyKey"]),
        (&json!(POS_REF), &json!("pc-1"))
    );
    let (status, reply) = send(&cfg.base_url, &s).await;
    pai_reply(
        &pai,
        &rebilly,
        PAI_TXNS,
        "post",
        status,
        &reply,
        "sale reply",
    );
    assert_eq!(reply["result"], "approved", "{reply}");
    assert_eq!(reply["description"], POS_REF, "the transaction returns it");
    assert_eq!(reply["requestId"], "pc-1");
    let sale_id = reply["id"].as_str().unwrap().to_owned();

    // Get and lookup (Rebilly filter).
    let g = paymentsai::get_request(&cfg, &sale_id);
    pai_request(&pai, &rebilly, &cfg, &g, "get request");
    let (status, reply) = send(&cfg.base_url, &g).await;
    pai_reply(
        &pai,
        &rebilly,
        &format!("{PAI_TXNS}/{{id}}"),
        "get",
        status,
        &reply,
        "get reply",
    );
    let l = paymentsai::lookup_request(&cfg, &Reference("pc-1".into())).unwrap();
    pai_request(&pai, &rebilly, &cfg, &l, "lookup request");
    let (status, reply) = send(&cfg.base_url, &l).await;
    pai_reply(
        &pai,
        &rebilly,
        PAI_TXNS,
        "get",
        status,
        &reply,
        "list reply",
    );
    let ex = Ok(HttpReply {
        status,
        body: Bytes::from(reply.to_string()),
    });
    assert_eq!(
        paymentsai::classify_lookup(&ex, &Reference("pc-1".into())).0,
        StatusResult::Found(emvbridge_core::gateway::TxnStatus {
            gateway_id: sale_id.clone(),
            state: TxnState::Approved,
            amount: Some(Money::from_minor(1234, "USD").unwrap()),
        })
    );

    // Refund.
    let rf = paymentsai::refund_request(
        &cfg,
        &RefundRequest {
            reference: Reference("pc-1-rf".into()),
            gateway_id: sale_id.clone(),
            amount: Money::from_minor(234, "USD").unwrap(),
            pos_reference: pos_ref(),
        },
    );
    pai_request(
        &pai,
        &rebilly,
        &cfg,
        &rf,
        "refund request with a POS reference",
    );
    assert_eq!(body(&rf)["description"], POS_REF);
    let (status, reply) = send(&cfg.base_url, &rf).await;
    pai_reply(
        &pai,
        &rebilly,
        &format!("{PAI_TXNS}/{{id}}/refund"),
        "post",
        status,
        &reply,
        "refund reply",
    );
    assert_eq!(reply["description"], POS_REF);

    // Authorize → capture (a second sale on its instrument).
    let a =
        paymentsai::authorize_request(&cfg, &sale(&mut c, "pc-2", 2000, "EUR", AuthKind::PreAuth))
            .unwrap();
    pai_request(&pai, &rebilly, &cfg, &a, "authorize request");
    let (status, reply) = send(&cfg.base_url, &a).await;
    pai_reply(
        &pai,
        &rebilly,
        PAI_TXNS,
        "post",
        status,
        &reply,
        "authorize reply",
    );
    let auth_id = reply["id"].as_str().unwrap().to_owned();
    let (_, got) = send(&cfg.base_url, &paymentsai::get_request(&cfg, &auth_id)).await;
    let (_, txn) = paymentsai::classify_get(&Ok(HttpReply {
        status: 200,
        body: Bytes::from(got.to_string()),
    }));
    let txn = txn.unwrap();
    let cap = paymentsai::capture_request(
        &cfg,
        &CaptureRequest {
            reference: Reference("pc-2-cap".into()),
            gateway_id: auth_id.clone(),
            authorized: Money::from_minor(2000, "EUR").unwrap(),
            amount: Money::from_minor(1500, "EUR").unwrap(),
            pos_reference: pos_ref(),
        },
        &txn,
    )
    .unwrap();
    pai_request(&pai, &rebilly, &cfg, &cap, "capture request");
    let (status, reply) = send(&cfg.base_url, &cap).await;
    pai_reply(
        &pai,
        &rebilly,
        PAI_TXNS,
        "post",
        status,
        &reply,
        "capture reply",
    );
    assert_eq!(reply["parentTransactionId"], auth_id.as_str());
    assert_eq!(reply["description"], POS_REF);

    // Void of another authorization: a refund of its whole amount.
    let a =
        paymentsai::authorize_request(&cfg, &sale(&mut c, "pc-3", 700, "USD", AuthKind::PreAuth))
            .unwrap();
    let (_, reply) = send(&cfg.base_url, &a).await;
    let a3 = reply["id"].as_str().unwrap().to_owned();
    let (_, got) = send(&cfg.base_url, &paymentsai::get_request(&cfg, &a3)).await;
    let (_, txn) = paymentsai::classify_get(&Ok(HttpReply {
        status: 200,
        body: Bytes::from(got.to_string()),
    }));
    let v = paymentsai::void_request(
        &cfg,
        &VoidRequest {
            reference: Reference("pc-3".into()),
            gateway_id: a3.clone(),
        },
        &txn.unwrap(),
    )
    .unwrap();
    pai_request(&pai, &rebilly, &cfg, &v, "void request");
    let (status, reply) = send(&cfg.base_url, &v).await;
    pai_reply(
        &pai,
        &rebilly,
        &format!("{PAI_TXNS}/{{id}}/refund"),
        "post",
        status,
        &reply,
        "void reply",
    );
    let (_, after) = send(&cfg.base_url, &paymentsai::get_request(&cfg, &a3)).await;
    assert_eq!(after["status"], "voided");

    // A decline is a 201 transaction too.
    let mut nsf = sale(&mut c, "pc-4", 1051, "USD", AuthKind::Sale);
    nsf.icc_data = Bytes::from(common::arqc_data(&mut c, 1051, [9, 9, 9, 9]));
    let (status, reply) = send(
        &cfg.base_url,
        &paymentsai::authorize_request(&cfg, &nsf).unwrap(),
    )
    .await;
    pai_reply(
        &pai,
        &rebilly,
        PAI_TXNS,
        "post",
        status,
        &reply,
        "declined reply",
    );
    assert_eq!(reply["result"], "declined");
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Pay1st

/// Checks a Pay1st request's headers against the transcription's `x-headers`, its query
/// against `parameters`, its body against the request schema (after `x-ext-fields`).
fn pay1st_request(doc: &Value, r: &HttpRequest, what: &str) -> Value {
    let (path, _) = r.path.split_once('?').unwrap_or((&r.path, ""));
    let method = match r.method {
        Method::Get => "get",
        Method::Post => "post",
    };
    let op_ptr = format!("/paths/{}/{method}", tok(path));
    let op = doc
        .pointer(&op_ptr)
        .unwrap_or_else(|| panic!("{what}: {method} {path} is not an official operation"))
        .clone();
    for (name, rule) in op["x-headers"].as_object().into_iter().flatten() {
        let got = r
            .header(name)
            .unwrap_or_else(|| panic!("{what}: header {name} missing"));
        check(
            doc,
            &format!("{op_ptr}/x-headers/{}", tok(name)),
            &json!(got),
            &format!("{what}: header {name}"),
        );
        let _ = rule;
    }
    if op["security"][0].get("accessToken").is_some() {
        let pattern = doc["components"]["securitySchemes"]["accessToken"]["x-value-pattern"]
            .as_str()
            .unwrap();
        assert!(
            regex_match(pattern, r.header("AccessToken").unwrap_or_default()),
            "{what}: AccessToken"
        );
    }
    let declared = parameters(doc, &op, "query");
    for (name, required) in &declared {
        assert!(
            !required || query_names(&r.path).contains(name),
            "{what}: query {name} missing"
        );
    }
    for q in query_names(&r.path) {
        assert!(
            declared.iter().any(|(n, _)| *n == q),
            "{what}: query {q} not declared"
        );
    }
    if r.method == Method::Post {
        let ext: Vec<&str> = op["x-ext-fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let ct = r.header("Content-Type").unwrap();
        let b = strip(body(r), &ext);
        check(
            doc,
            &format!("{op_ptr}/requestBody/content/{}/schema", tok(ct)),
            &b,
            what,
        );
    }
    op
}

fn pay1st_reply(doc: &Value, op_ptr: &str, reply: &Value, what: &str) {
    let op = doc.pointer(op_ptr).unwrap();
    let ext: Vec<&str> = op["x-ext-response-fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    check(
        doc,
        &format!("{op_ptr}/x-response-schema"),
        &strip(reply.clone(), &ext),
        what,
    );
}

#[tokio::test]
async fn pay1st_requests_and_replies_follow_the_reference_pages() {
    let doc = spec("pay1st/pay1st-gateway.transcribed.yaml");
    let gw = spawn().await;
    let d = SandboxConfig::default().pay1st;
    let cfg = Pay1stConfig {
        base_url: format!("{}/pay1st", gw.url()),
        api_key: Secret::new(d.api_key.clone()),
        api_secret: Secret::new(d.api_secret.clone()),
        signing_key: Secret::new(d.signing_key.clone()),
        country_code: "NG".into(),
        callback_url: Some("https://pos.example/cb".into()),
        webhook_url: Some("https://pos.example/hook".into()),
        emv_extension: true,
        token_refresh_secs: 3000,
    };
    let now = unix_now();

    // Token and refresh.
    let t = pay1st::token_request(&cfg);
    assert!(t.header("Authorization").unwrap().starts_with("Basic "));
    pay1st_request(&doc, &t, "token request");
    let (status, reply) = send(&cfg.base_url, &t).await;
    assert_eq!(status, 200);
    pay1st_reply(
        &doc,
        "/paths/~1api~1pay1st~1auth~1token/post",
        &reply,
        "token reply",
    );
    let tokens: Tokens = pay1st::parse_tokens(
        &Ok(HttpReply {
            status,
            body: Bytes::from(reply.to_string()),
        }),
        now,
    )
    .unwrap();
    let rf = pay1st::refresh_request(&tokens);
    pay1st_request(&doc, &rf, "refresh request");
    let (status, reply) = send(&cfg.base_url, &rf).await;
    assert_eq!(status, 200, "{reply}");
    pay1st_reply(
        &doc,
        "/paths/~1api~1pay1st~1auth~1refresh/post",
        &reply,
        "refresh reply",
    );
    let tokens = pay1st::parse_tokens(
        &Ok(HttpReply {
            status,
            body: Bytes::from(reply.to_string()),
        }),
        now,
    )
    .unwrap();

    // Create: signed, NEW, identified by Pay1st's reference.
    let mut c = card();
    let req = with_pos_ref(sale(&mut c, "yc-1", 2500, "NGN", AuthKind::Sale));
    let create = pay1st::signed(
        &cfg,
        &tokens.access,
        now,
        pay1st::create_request(&cfg, &req).unwrap(),
    );
    pay1st_request(&doc, &create, "create request with a POS reference");
    assert_eq!(
        body(&create)["metadata"][1],
        json!({"key": "posReference", "value": POS_REF})
    );
    assert_eq!(body(&create)["partnerReference"], "yc-1");
    let ts = create.header("X-TIMESTAMP").unwrap();
    assert_eq!(
        create.header("X-SIGNATURE").unwrap(),
        pay1st::sign(d.signing_key.as_str(), ts, &create.body),
        "signature over the exact bytes"
    );
    let (status, reply) = send(&cfg.base_url, &create).await;
    assert!(status == 200 || status == 201, "{status}");
    pay1st_reply(
        &doc,
        "/paths/~1api~1pay1st~1payments~1create/post",
        &reply,
        "create reply",
    );
    assert_eq!(reply["status"], "NEW");
    let reference = reply["reference"].as_str().unwrap().to_owned();

    // Query Payment Status by that reference: NEW → PENDING → SUCCESSFUL, one payment each.
    let q = pay1st::signed(
        &cfg,
        &tokens.access,
        now,
        pay1st::lookup_request(&reference),
    );
    pay1st_request(&doc, &q, "query request");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (status, reply) = send(&cfg.base_url, &q).await;
        assert_eq!(status, 200);
        pay1st_reply(
            &doc,
            "/paths/~1api~1pay1st~1payments/get",
            &reply,
            "query reply",
        );
        seen.push(reply["status"].as_str().unwrap().to_owned());
        // The payment echoes its metadata, the POS reference with it.
        assert!(
            reply["metadata"]
                .as_array()
                .is_some_and(|m| m.contains(&json!({"key": "posReference", "value": POS_REF}))),
            "{reply}"
        );
    }
    assert_eq!(seen, ["PENDING", "SUCCESSFUL", "SUCCESSFUL"]);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The checks can fail: the shapes the bridge once invented do not pass them.

#[test]
fn invented_shapes_fail_the_contract() {
    let number = number_doc();
    let query = format!(
        "{}/responses/200/content/application~1json/schema",
        number_op(&number, "/Query/Transaction").0
    );
    let old_query = json!({"Query_TransactionResult": {"FunctionOk": true, "TxnCount": 1,
        "Transactions": [{"TxID": 53001, "TxSTATUS": 1, "ApprovedAmt": 12.34}]}});
    assert!(!violations(&number, &query, &old_query, &[]).is_empty());
    let old_record = json!({"Transaction_QueryResult": {"FunctionOk": true, "NumRecords": 1,
        "Transactions": [{"ID": 53001, "TxSTATUS": 1, "ApprovedAmt": 12.34}]}});
    let v = violations(&number, &query, &old_record, &[]);
    assert!(v.iter().any(|e| e.contains("ApprovedAmt")), "{v:?}");
    assert!(v.iter().any(|e| e.contains("TxSTATUS")), "{v:?}");
    let auth = format!(
        "{}/responses/200/content/application~1json/schema",
        number_op(&number, "/Authenticate").0
    );
    let old_auth = json!({"AuthenticateResult": {"FunctionOk": true, "AuthSuccess": true,
        "MerchantList": [{"ID": 1, "TermID": 1}], "ThisUser": {"UserID": "1001"}}});
    let v = violations(&number, &auth, &old_auth, &[]);
    assert!(
        v.iter().any(|e| e.contains("TermID")) && v.iter().any(|e| e.contains("UserID")),
        "{v:?}"
    );

    let rebilly = rebilly_doc();
    let created = "/paths/~1transactions/post/responses/201/content/application~1json/schema";
    let wrapped = json!({"data": {"id": "txn_1", "type": "sale", "status": "completed", "result": "approved"}});
    assert!(!violations(&rebilly, created, &wrapped, &[]).is_empty());
    let invented = json!({"id": "txn_1", "type": "sale", "status": "completed", "result": "approved",
        "gatewayName": "sandbox", "paymentInstrument": {"method": "payment-card-present"}, "customerId": null});
    let v = violations(&rebilly, created, &invented, &[]);
    assert!(v.len() >= 3, "{v:?}");
    let post = "/paths/~1transactions/post/requestBody/content/application~1json/schema";
    let old_capture =
        json!({"type": "sale", "currency": "EUR", "amount": 9.0, "parentTransactionId": "txn_1"});
    let v = violations(&rebilly, post, &old_capture, &[]);
    assert!(v.iter().any(|e| e.contains("websiteId")), "{v:?}");
    // A description past Rebilly's 255, or a POS reference as an invented field, fails.
    let sale = json!({"type": "sale", "websiteId": "w", "customerId": "c", "currency": "USD",
        "amount": 1.0, "description": "x".repeat(256)});
    assert!(!violations(&rebilly, post, &sale, &[]).is_empty());
    let mut sale = sale;
    sale["description"] = json!("x".repeat(255));
    assert!(violations(&rebilly, post, &sale, &[]).is_empty());
    sale["posReference"] = json!("T7");
    let v = violations(&rebilly, post, &sale, &[]);
    assert!(v.iter().any(|e| e.contains("posReference")), "{v:?}");
    let items = json!({"ServiceDescrip": "T7", "ClientRefID": "r", "PosReference": "T7"});
    let v = violations(&number, "/components/schemas/Items", &items, &[]);
    assert!(v.iter().any(|e| e.contains("PosReference")), "{v:?}");

    let pay1st = spec("pay1st/pay1st-gateway.transcribed.yaml");
    let query = "/paths/~1api~1pay1st~1payments/get/x-response-schema";
    let list =
        json!({"data": [{"reference": "P1", "partnerReference": "r", "status": "SUCCESSFUL"}]});
    assert!(!violations(&pay1st, query, &list, &[]).is_empty());
    let refunded = json!({"reference": "P1", "partnerReference": "r", "status": "REFUNDED"});
    assert!(!violations(&pay1st, query, &refunded, &[]).is_empty());
    let refresh = "/paths/~1api~1pay1st~1auth~1refresh/post/x-headers/Accept";
    assert!(!violations(&pay1st, refresh, &json!("application/json"), &[]).is_empty());
}

/// The key exchange (`emvbridge keys exchange`) as PaymentsAI's api-key-generation page
/// defines it: `PATCH /v1/accounts/public-api/{accountId}` with the temporal key and
/// `{"secret"}` under the secrets policy. The request is captured on loopback as sent.
#[tokio::test]
async fn paymentsai_key_exchange_request_follows_the_pages() {
    use std::sync::{Arc, Mutex};
    let pai = spec("paymentsai/paymentsai-public-api.transcribed.yaml");
    type Seen = Arc<Mutex<Option<(String, String, axum::http::HeaderMap, Bytes)>>>;
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: Bytes| {
            let s2 = s2.clone();
            async move {
                *s2.lock().unwrap() =
                    Some((method.to_string(), uri.path().to_owned(), headers, body));
                (axum::http::StatusCode::UNAUTHORIZED, "{}")
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let _ = emvbridge::keys::exchange(
        &reqwest::Client::new(),
        &format!("http://{addr}"),
        "acc_contract",
        &Secret::new("tmp_contract_key"),
        &Secret::new("ContractSecret2026"),
    )
    .await;
    server.abort();
    let (method, path, headers, body) = seen.lock().unwrap().take().expect("a request");
    let template = "/v1/accounts/public-api/{accountId}";
    assert_eq!(method, "PATCH");
    assert_eq!(path, template.replace("{accountId}", "acc_contract"));
    let op_ptr = format!("/paths/{}/patch", tok(template));
    let op = pai.pointer(&op_ptr).unwrap();
    let scheme = op["security"][0]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let pattern = pai["components"]["securitySchemes"][&scheme]["x-value-pattern"]
        .as_str()
        .unwrap();
    let auth = headers.get("authorization").unwrap().to_str().unwrap();
    assert!(
        regex_match(pattern, auth),
        "Authorization does not match {pattern}"
    );
    assert!(headers
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap().starts_with("application/json")));
    let b: Value = serde_json::from_slice(&body).unwrap();
    check(
        &pai,
        &format!("{op_ptr}/requestBody/content/application~1json/schema"),
        &b,
        "key exchange request",
    );
}

// ---------------------------------------------------------------------------------------------
// Stripe reads and online PIN

/// A swipe of the magstripe-only card as the reader reports it (entry mode 90, masked track
/// `DFDB06`, the track enciphered in SRED `FF7F`, no cryptogram) with an online PIN (`1234`,
/// DUKPT-enciphered as the reader does).
fn swipe(reference: &str, minor: u64, cur: &str) -> AuthorizationRequest {
    use emvbridge_protocol::emv::{Pan, SecretBytes, Track2};
    use emvbridge_protocol::tlv::{Tag, TlvBuilder};
    let pan = Pan::parse("4788250000028291").unwrap();
    let track = Track2::from_ascii("4788250000028291=30121010000").unwrap();
    let mut reader = emvbridge_sim::sred::SredEncryptor::ansi_test();
    let ff7f = reader.encrypt(&pan, &track.to_bcd(), [7; 8]).unwrap();
    let (block, ksn) = reader.pin_block("1234", &pan).unwrap();
    let digits = format!("{minor:012}");
    let amount: Vec<u8> = (0..6)
        .map(|i| u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).unwrap())
        .collect();
    let mut b = TlvBuilder::new();
    b.primitive(Tag::POS_ENTRY_MODE, &[0x90])
        .primitive(Tag::VIPA_MASKED_TRACK2, track.masked().as_bytes())
        .primitive(Tag::AMOUNT_AUTHORISED, &amount);
    let mut icc = b.freeze().to_vec();
    icc.extend_from_slice(&ff7f);
    AuthorizationRequest {
        reference: Reference(reference.into()),
        kind: AuthKind::Sale,
        amount: Money::from_minor(minor, cur).unwrap(),
        amount_other: Money::from_minor(0, cur).unwrap(),
        entry_mode: EntryMode::Swipe,
        icc_data: Bytes::from(icc),
        masked_pan: "478825******8291".into(),
        last4: Some("8291".into()),
        brand: Some("visa".into()),
        original_gateway_id: None,
        online_pin: Some(emvbridge_core::txn::host::OnlinePin {
            block: SecretBytes::from_slice(&block),
            ksn: ksn.to_vec(),
        }),
        pos_reference: None,
    }
}

/// The \[EXT\] card-present object carries only its declared fields, the PIN block and KSN as
/// hex of their lengths.
fn ext_object(v: &Value, what: &str) {
    let o = v.as_object().unwrap_or_else(|| panic!("{what}: {v}"));
    for k in o.keys() {
        assert!(
            ["iccData", "entryMode", "pinBlock", "ksn"].contains(&k.as_str()),
            "{what}: undeclared [EXT] field {k}"
        );
    }
    assert_eq!(v["entryMode"], "swipe", "{what}");
    assert_eq!(v["pinBlock"].as_str().map(str::len), Some(16), "{what}");
    assert_eq!(v["ksn"].as_str().map(str::len), Some(20), "{what}");
}

#[tokio::test]
async fn swipe_and_online_pin_requests_follow_the_definitions() {
    let gw = spawn().await;

    // Number: no operation takes an enciphered track (`CardSale/CardPresent`'s `Track` is
    // the clear track a SRED reader never hands over), so the sale is the [EXT] EMV call.
    assert!(number_doc()
        .pointer(&format!(
            "/paths/{}/post/requestBody/content/application~1json/schema/properties/Track",
            tok(&format!(
                "{}/CardSale/CardPresent",
                number::OPENAPI_BASE_PATH
            ))
        ))
        .is_some());
    let d = SandboxConfig::default().number;
    let ncfg = NumberConfig {
        base_url: format!("{}/number{}", gw.url(), number::PAGES_BASE_PATH),
        acct_code: d.acct_code.clone(),
        token: Secret::new(d.token.clone()),
        user_id: d.user_id.clone(),
        hmac_secret: Secret::new(d.hmac_secret.clone()),
        merch_id: None,
        currency: "USD".into(),
        emv_extension: true,
    };
    let (status, reply) = send(&ncfg.base_url, &number::authenticate_request(&ncfg)).await;
    let session = number::parse_authenticate(
        &Ok(HttpReply {
            status,
            body: Bytes::from(reply.to_string()),
        }),
        unix_now(),
    )
    .unwrap();
    let n =
        number::emv_sale_request(&ncfg, &session, unix_now(), &swipe("ns-1", 1200, "USD")).unwrap();
    let b = body(&n);
    assert_eq!(b["PinBlock"].as_str().map(str::len), Some(16), "{b}");
    assert_eq!(b["PinKsn"].as_str().map(str::len), Some(20), "{b}");
    let (status, reply) = send(&ncfg.base_url, &n).await;
    assert_eq!(status, 200);
    let r = &reply["CreditCardSale_EMVResult"];
    assert_eq!(r["TxApproved"], true, "{reply}");
    // A wrong PIN block (another PIN) is the issuer's 55.
    let mut wrong = swipe("ns-2", 1200, "USD");
    let mut reader = emvbridge_sim::sred::SredEncryptor::ansi_test();
    let pan = emvbridge_protocol::emv::Pan::parse("4788250000028291").unwrap();
    let (block, ksn) = reader.pin_block("9999", &pan).unwrap();
    wrong.online_pin = Some(emvbridge_core::txn::host::OnlinePin {
        block: emvbridge_protocol::emv::SecretBytes::from_slice(&block),
        ksn: ksn.to_vec(),
    });
    let n = number::emv_sale_request(&ncfg, &session, unix_now(), &wrong).unwrap();
    let (_, reply) = send(&ncfg.base_url, &n).await;
    assert_eq!(
        reply["CreditCardSale_EMVResult"]["TxApproved"], false,
        "{reply}"
    );

    // PaymentsAI: Rebilly's instruction, the stripe in the [EXT] `emv` object.
    let pai = spec("paymentsai/paymentsai-public-api.transcribed.yaml");
    let rebilly = rebilly_doc();
    let d = SandboxConfig::default().pai;
    let pcfg = PaiConfig {
        base_url: format!("{}/pai", gw.url()),
        organization_id: d.organization_id.clone(),
        api_key: Secret::new(d.stage_credential()),
        website_id: d.website_id.clone(),
        customer_id: d.customer_id.clone(),
        emv_extension: true,
    };
    let p = paymentsai::authorize_request(&pcfg, &swipe("ps-1", 1200, "USD")).unwrap();
    pai_request(&pai, &rebilly, &pcfg, &p, "swipe sale request");
    ext_object(&body(&p)["paymentInstruction"]["emv"], "pai swipe");
    let (status, reply) = send(&pcfg.base_url, &p).await;
    pai_reply(
        &pai,
        &rebilly,
        PAI_TXNS,
        "post",
        status,
        &reply,
        "swipe sale reply",
    );
    assert_eq!(reply["result"], "approved", "{reply}");

    // Pay1st: the create, the stripe in the [EXT] `emv` object.
    let doc = spec("pay1st/pay1st-gateway.transcribed.yaml");
    let d = SandboxConfig::default().pay1st;
    let ycfg = Pay1stConfig {
        base_url: format!("{}/pay1st", gw.url()),
        api_key: Secret::new(d.api_key.clone()),
        api_secret: Secret::new(d.api_secret.clone()),
        signing_key: Secret::new(d.signing_key.clone()),
        country_code: "NG".into(),
        callback_url: Some("https://pos.example/cb".into()),
        webhook_url: None,
        emv_extension: true,
        token_refresh_secs: 3000,
    };
    let (status, reply) = send(&ycfg.base_url, &pay1st::token_request(&ycfg)).await;
    let tokens = pay1st::parse_tokens(
        &Ok(HttpReply {
            status,
            body: Bytes::from(reply.to_string()),
        }),
        unix_now(),
    )
    .unwrap();
    let create = pay1st::signed(
        &ycfg,
        &tokens.access,
        unix_now(),
        pay1st::create_request(&ycfg, &swipe("ys-1", 1200, "NGN")).unwrap(),
    );
    pay1st_request(&doc, &create, "swipe create request");
    ext_object(&body(&create)["emv"], "pay1st swipe");
    let (status, reply) = send(&ycfg.base_url, &create).await;
    assert!(status == 200 || status == 201, "{status} {reply}");
    pay1st_reply(
        &doc,
        "/paths/~1api~1pay1st~1payments~1create/post",
        &reply,
        "swipe create reply",
    );
}
