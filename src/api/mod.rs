//! The local POS API (`emvbridge serve`): HTTP/JSON on loopback, in the style of local
//! payment middleware. The OpenAPI document (`docs/openapi.json`, also `GET /v1/openapi`) is
//! the reference; this is the summary.
//!
//! - **Card transactions** (`POST /v1/sales`, `/v1/preauths`, card-present `/v1/refunds`)
//!   run on the reader, one at a time: a second one while one runs gets `409 reader_busy`.
//!   The call returns when the transaction ends (200, the transaction record), or after
//!   `--sale-timeout` with `202` + `Location` to poll; with `Prefer: respond-async` it returns
//!   `202` at once. The transaction runs in its own task, so a POS that hangs up does not
//!   leave money in an unknown state.
//! - **Follow-ups** (capture, void, reverse, referenced refund) go to the gateway only.
//! - **Request ids**: every `POST` carries `X-Request-Id`. The first 2xx answer is stored;
//!   the same id again returns it (`Idempotent-Replayed: true`) instead of charging again,
//!   waits for it while the first copy still runs, and is refused (`422 request_id_reused`)
//!   with another method, path or body. Non-2xx answers are not stored: retry with the same id.
//! - **Events**: `GET /v1/events` is a Server-Sent Events stream of `transaction.started`,
//!   `prompt` and `transaction.finished`, each with the transaction id.
//! - **Relay** (`--journal`/`--config`, the same rule as `sale`): authorizations go through
//!   the journal ([`crate::journal::gateway::JournaledGateway`]), every outcome is recorded,
//!   store-and-forward is decided per sale from the merchant's limits, and the resolver and
//!   forwarder run in the background while the server runs. The journal is then also the
//!   store of request ids and transaction records ([`crate::journal::api_store`]): a restart
//!   keeps both, and a transaction interrupted by a crash reads `unresolved` until the
//!   resolver settles it. `GET /v1/health` reports the relay.
//! - **Auth**: `Authorization: Bearer <token>` on everything but `/v1/health` and
//!   `/v1/openapi` ([`auth`]). Bodies are at most [`MAX_BODY`] bytes; errors are
//!   `{"error":{"code":"…","message":"…"}}`. Card data never reaches a log or an error.

pub mod auth;
pub mod store;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, watch};

use crate::driver::{LinkEvent, LinkState, Reader, ReaderLink};
use crate::gateway::{CaptureRequest, Dialect, Gateway, OpResult, RefundRequest, VoidRequest};
use crate::config::RelayOptions;
use crate::journal::relay::Relay;
use crate::journal::resolver::PassReport;
use emvbridge_core::money::Money;
use crate::embedded::{SandboxHandle, SimDevice};
use crate::terminal::{Terminal, TerminalOptions};
use emvbridge_core::txn::{
    AppChoice, AuthKind, Reference, ReversalReason, ReversalRequest, ReversalResult, TxnConfig,
    TxnRequest,
};
use auth::TokenCheck;
pub use store::{record_json, ApiStatus, MemoryStore, Operation, Store, StoredResponse, TxnRecord};

/// The OpenAPI document, served by `GET /v1/openapi` and kept in the repository.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";
/// Longest request id.
pub const MAX_REQUEST_ID: usize = 128;
/// Longest text for `POST /v1/device/display`.
pub const MAX_DISPLAY_TEXT: usize = 64;

/// Every route: method and path as in the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/sales"),
    ("post", "/v1/preauths"),
    ("post", "/v1/preauths/{id}/capture"),
    ("post", "/v1/refunds"),
    ("post", "/v1/transactions/{id}/void"),
    ("post", "/v1/transactions/{id}/reverse"),
    ("get", "/v1/transactions/{id}"),
    ("post", "/v1/transactions/{id}/cancel"),
    ("get", "/v1/device"),
    ("post", "/v1/device/display"),
    ("post", "/v1/device/reset"),
    ("get", "/v1/events"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi"),
];

// ---------------------------------------------------------------------------------------------
// Errors

/// An API error: an HTTP status, a stable code and a short message without card data.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
    fn not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "transaction_not_found",
            format!("no transaction {}", clip(id, 80)),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// At most `n` characters of `s` (for echoing input in messages).
fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Clone)]
struct ApiEvent {
    id: u64,
    name: &'static str,
    data: String,
}

struct Running {
    id: String,
    cancel: watch::Sender<bool>,
}

type Inflight = HashMap<String, ([u8; 32], watch::Receiver<()>)>;

/// The request id and fingerprint of the `POST` being served (set by [`idempotency`]), so a
/// card transaction can store a provisional answer (202 + `Location`) when it starts: after
/// a crash, the same request id then leads to the transaction instead of charging again.
#[derive(Clone)]
struct Idem {
    id: String,
    fingerprint: [u8; 32],
}

/// What the last background resolver pass did, for `GET /v1/health`.
#[derive(Clone, serde::Serialize)]
struct LastPass {
    /// Unix seconds.
    at: u64,
    settled: usize,
    retry: usize,
    escalated: usize,
    forward_declined: usize,
    /// API records settled by the pass.
    records_settled: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The relay behind `serve` when journaling is on.
struct RelayShared {
    relay: Relay,
    last_pass: Arc<Mutex<Option<LastPass>>>,
}

struct Shared {
    store: Arc<dyn Store>,
    token: TokenCheck,
    link: ReaderLink,
    /// The reader's event stream; whoever holds it owns the reader (one transaction or
    /// device command at a time).
    reader: Arc<tokio::sync::Mutex<mpsc::Receiver<LinkEvent>>>,
    gateway: Arc<dyn Gateway>,
    running: Mutex<Option<Running>>,
    events: broadcast::Sender<ApiEvent>,
    seq: AtomicU64,
    inflight: Mutex<Inflight>,
    sale_timeout: Duration,
    txn_config: TxnConfig,
    simulated: bool,
    relay: Option<RelayShared>,
}

type AppState = Arc<Shared>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn publish(&self, name: &'static str, data: serde_json::Value) {
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(ApiEvent {
            id,
            name,
            data: data.to_string(),
        });
    }

    fn running_id(&self) -> Option<String> {
        lock(&self.running).as_ref().map(|r| r.id.clone())
    }

    fn busy(&self) -> ApiError {
        let msg = match self.running_id() {
            Some(id) => format!("the reader is busy with transaction {id}"),
            None => "the reader is busy".into(),
        };
        ApiError::conflict("reader_busy", msg)
    }

    fn record(&self, id: &str) -> Result<TxnRecord, ApiError> {
        self.store
            .transaction(id)
            .ok_or_else(|| ApiError::not_found(id))
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// How to run the API.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen`.
    pub allow_remote: bool,
    /// The bearer token.
    pub token: String,
    /// Reader and gateway.
    pub terminal: TerminalOptions,
    /// How long a synchronous card transaction call waits before answering 202.
    pub sale_timeout: Duration,
    /// Transaction timeouts and policy.
    pub txn_config: TxnConfig,
}

/// A running API server.
pub struct ApiServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// What was set up implicitly (simulator, sandbox).
    pub notes: Vec<String>,
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    sim: Option<SimDevice>,
    sandbox: Option<SandboxHandle>,
    link: ReaderLink,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    resolver: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl ApiServer {
    /// Control of the embedded simulator, when there is one.
    #[cfg(feature = "sim")]
    pub fn simulator(&self) -> Option<emvbridge_sim::transport::DeviceHandle> {
        self.sim.as_ref().map(|s| s.handle.clone())
    }

    /// The sandbox gateway, when embedded.
    pub fn sandbox(&self) -> Option<&SandboxHandle> {
        self.sandbox.as_ref()
    }

    /// The journal, when journaling is on.
    pub fn journal(&self) -> Option<&Arc<crate::journal::Journal>> {
        self.state.relay.as_ref().map(|r| r.relay.journal())
    }

    /// Stops accepting; a card transaction still running is cancelled and allowed to end
    /// definitely (cancelled, or reversed if the host had approved — the engine decides),
    /// waiting up to [`SHUTDOWN_GRACE`]; then the background resolver and the link stop.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        {
            let running = lock(&self.state.running);
            if let Some(r) = running.as_ref() {
                tracing::info!(transaction = %r.id, "shutdown: cancelling the running transaction");
                let _ = r.cancel.send(true);
            }
        }
        // The transaction task holds the reader until its record is saved.
        if tokio::time::timeout(SHUTDOWN_GRACE, self.state.reader.lock())
            .await
            .is_err()
        {
            tracing::error!("shutdown: the running transaction did not end; the resolver settles it at the next start");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        if let Some((stop, task)) = self.resolver.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.link.shutdown().await;
        if let Some(s) = self.sandbox.take() {
            s.shutdown().await;
        }
    }
}

/// How long a shutdown waits for a running card transaction to end.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(90);

/// Stored answers to request ids are kept this long in the journal (a POS retries within
/// minutes; transaction records stay).
pub const REQUEST_ID_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// Starts the API without the relay (in-memory store): [`start_with_relay`] with no journal.
///
/// # Errors
/// As [`start_with_relay`].
pub async fn start(opts: ApiOptions) -> anyhow::Result<ApiServer> {
    start_with_relay(opts, RelayOptions::default()).await
}

/// Starts the API: sets up the reader and gateway, and — when `relay` turns journaling on
/// (same rule as `sale`) — the journal in front of the gateway, the journal as the API's
/// store, the start-up resolver pass and the background resolver/forwarder; then binds and
/// serves in a task.
///
/// # Errors
/// A non-loopback address without `allow_remote`, a reader, gateway or journal that cannot
/// be set up, an address that cannot be bound.
pub async fn start_with_relay(opts: ApiOptions, relay: RelayOptions) -> anyhow::Result<ApiServer> {
    if !opts.listen.ip().is_loopback() && !opts.allow_remote {
        anyhow::bail!(
            "refusing to listen on {}: not a loopback address (pass --allow-remote to expose the payment API)",
            opts.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let terminal = Terminal::open(&opts.terminal).await?;
    let Terminal {
        link,
        events,
        gateway,
        sim,
        sandbox,
        notes,
        ..
    } = terminal;
    let mut notes = notes;
    let relay = relay.open(&opts.terminal.gateway, gateway.clone()).await?;
    let (store, gateway): (Arc<dyn Store>, Arc<dyn Gateway>) = match &relay {
        Some(r) => {
            let j = r.journal();
            // Nothing runs yet: what is still in progress belongs to a process that died.
            let interrupted = j.api_mark_interrupted()?;
            if !interrupted.is_empty() {
                notes.push(format!(
                    "{} transaction(s) interrupted by an earlier stop, shown unresolved until settled: {}",
                    interrupted.len(),
                    interrupted.join(", ")
                ));
            }
            j.api_settle()?;
            let _ = j.prune_api_requests(REQUEST_ID_RETENTION_SECS);
            notes.push(format!("journal: {}", r.path().display()));
            (j.clone(), r.gateway.clone())
        }
        None => (Arc::new(MemoryStore::default()), gateway),
    };
    let (ev_tx, _) = broadcast::channel(256);
    let state = Arc::new(Shared {
        store,
        token: TokenCheck::new(&opts.token),
        link: link.clone(),
        reader: Arc::new(tokio::sync::Mutex::new(events)),
        gateway,
        running: Mutex::new(None),
        events: ev_tx,
        seq: AtomicU64::new(1),
        inflight: Mutex::new(HashMap::new()),
        sale_timeout: opts.sale_timeout,
        txn_config: opts.txn_config,
        simulated: sim.is_some(),
        relay: relay.map(|relay| RelayShared {
            relay,
            last_pass: Arc::new(Mutex::new(None)),
        }),
    });
    let resolver = state.relay.as_ref().map(|r| {
        let (stop_tx, stop_rx) = watch::channel(false);
        let last = r.last_pass.clone();
        let task = tokio::spawn(crate::journal::resolver::run_background_observed(
            r.relay.journal().clone(),
            r.relay.gateway.inner().clone(),
            r.relay.policy.clone(),
            stop_rx,
            move |j, report| observe_pass(j, report, &last),
        ));
        (stop_tx, task)
    });
    let app = router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    Ok(ApiServer {
        addr,
        notes,
        sim,
        sandbox,
        link,
        state,
        stop: Some(stop_tx),
        task,
        resolver,
    })
}

/// After each background pass: settle the API records whose relay rows were settled, and
/// remember the pass for `GET /v1/health`.
fn observe_pass(
    journal: &crate::journal::Journal,
    report: Result<&PassReport, String>,
    last: &Mutex<Option<LastPass>>,
) {
    let (records, settle_error) = match journal.api_settle() {
        Ok(s) => (s.len(), None),
        Err(e) => {
            tracing::error!(error = %e, "cannot settle api records");
            (0, Some(e.to_string()))
        }
    };
    let pass = match report {
        Ok(r) => LastPass {
            at: store::unix_now(),
            settled: r.settled.len(),
            retry: r.retry.len(),
            escalated: r.escalated.len(),
            forward_declined: r.forward_declined.len(),
            records_settled: records,
            error: settle_error,
        },
        Err(e) => LastPass {
            at: store::unix_now(),
            settled: 0,
            retry: 0,
            escalated: 0,
            forward_declined: 0,
            records_settled: records,
            error: Some(e),
        },
    };
    *lock(last) = Some(pass);
}

fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/sales", post(sale))
        .route("/v1/preauths", post(preauth))
        .route("/v1/preauths/{id}/capture", post(capture))
        .route("/v1/refunds", post(refund))
        .route("/v1/transactions/{id}/void", post(void))
        .route("/v1/transactions/{id}/reverse", post(reverse))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/v1/transactions/{id}/cancel", post(cancel))
        .route("/v1/device", get(device))
        .route("/v1/device/display", post(display))
        .route("/v1/device/reset", post(reset))
        .route("/v1/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), idempotency))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi", get(openapi))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Middleware

async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| s.token.verify_header(v.as_bytes()));
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
    }
    next.run(req).await
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

fn replay(r: &StoredResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Body::from(r.body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(l) = r
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        h.insert(header::LOCATION, l);
    }
    resp
}

/// Request ids on `POST`: replay a stored answer, wait for a copy in flight, or run the
/// request (in its own task, so a client that hangs up still gets its answer stored).
async fn idempotency(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let id = match req.headers().get(REQUEST_ID).map(|v| v.to_str()) {
        None => {
            return ApiError::bad_request(
                "missing_request_id",
                "every POST needs an X-Request-Id header",
            )
            .into_response()
        }
        Some(Ok(v))
            if !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            v.to_owned()
        }
        Some(_) => {
            return ApiError::bad_request(
                "invalid_request_id",
                "X-Request-Id must be 1-128 printable ASCII characters",
            )
            .into_response()
        }
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let fp = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let done_tx = loop {
        let reused = || {
            ApiError::unprocessable(
                "request_id_reused",
                "this X-Request-Id was used for another request",
            )
            .into_response()
        };
        let wait = {
            let mut inflight = lock(&s.inflight);
            match inflight.get(&id) {
                Some((f, _)) if *f != fp => return reused(),
                Some((_, rx)) => Some(rx.clone()),
                None => {
                    // Checked under the lock: a copy in flight may have stored a
                    // provisional answer, which is for after a restart, not for its twin.
                    if let Some(stored) = s.store.response(&id) {
                        if stored.fingerprint != fp {
                            return reused();
                        }
                        return replay(&stored);
                    }
                    let (tx, rx) = watch::channel(());
                    inflight.insert(id.clone(), (fp, rx));
                    break tx;
                }
            }
        };
        if let Some(mut rx) = wait {
            // The first copy is running: its answer is ours (or, if it is not stored, we run).
            if tokio::time::timeout(s.sale_timeout, rx.changed())
                .await
                .is_err()
            {
                return ApiError::conflict(
                    "request_in_progress",
                    "a request with this X-Request-Id is still running",
                )
                .into_response();
            }
        }
    };
    let mut parts = parts;
    parts.extensions.insert(Idem {
        id: id.clone(),
        fingerprint: fp,
    });
    let req = Request::from_parts(parts, Body::from(bytes));
    let state = s.clone();
    let work = tokio::spawn(async move {
        let resp = next.run(req).await;
        let (mut parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        if parts.status.is_success() {
            let location = parts
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            state.store.save_response(
                &id,
                &StoredResponse {
                    fingerprint: fp,
                    status: parts.status.as_u16(),
                    location,
                    body: String::from_utf8_lossy(&body).into_owned(),
                },
            );
        }
        lock(&state.inflight).remove(&id);
        let _ = done_tx.send(());
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(body))
    });
    match work.await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "request handler failed",
        )
        .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", clip(&e.to_string(), 200)))
}

/// An amount in integer minor units with its ISO 4217 currency.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    /// Minor units (`1234` is 12.34 USD).
    amount: u64,
    /// ISO 4217 alphabetic or numeric code.
    currency: String,
}

fn money(amount: u64, currency: &str) -> Result<Money, ApiError> {
    if amount == 0 {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            "amount must be a positive integer in minor units",
        ));
    }
    Money::from_minor(amount, currency).map_err(|e| match e {
        emvbridge_core::money::MoneyError::UnknownCurrency(_) => ApiError::unprocessable(
            "invalid_currency",
            format!("{} is not an ISO 4217 currency", clip(currency, 8)),
        ),
        other => ApiError::unprocessable("invalid_amount", other.to_string()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: u64,
    currency: String,
    /// The transaction to refund; without it, the refund is card-present on the reader.
    #[serde(default)]
    transaction_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    #[serde(default)]
    amount: Option<u64>,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisplayBody {
    text: String,
}

/// The body validation the handlers run before touching any state (sale/preauth: `0`,
/// refund: `1`, capture: `2`, display: `3`), for the fuzz targets (fuzz/api_body). Returns the
/// validated amount, if the body has one, or the HTTP status, error code and message. Not API.
#[doc(hidden)]
pub fn validate_body(route: u8, body: &[u8]) -> Result<Option<Money>, (u16, &'static str, String)> {
    let err = |e: ApiError| (e.status.as_u16(), e.code, e.message);
    match route % 4 {
        0 => {
            let b: AmountBody = parse_body(body).map_err(err)?;
            money(b.amount, &b.currency).map(Some).map_err(err)
        }
        1 => {
            let b: RefundBody = parse_body(body).map_err(err)?;
            money(b.amount, &b.currency).map(Some).map_err(err)
        }
        2 => {
            let b: CaptureBody = if body.iter().all(u8::is_ascii_whitespace) {
                CaptureBody::default()
            } else {
                parse_body(body).map_err(err)?
            };
            match b.amount {
                None => Ok(None),
                Some(a) => money(a, b.currency.as_deref().unwrap_or("USD"))
                    .map(Some)
                    .map_err(err),
            }
        }
        _ => {
            let b: DisplayBody = parse_body(body).map_err(err)?;
            if b.text.is_empty()
                || b.text.len() > MAX_DISPLAY_TEXT
                || !b.text.bytes().all(|c| c == b' ' || c.is_ascii_graphic())
            {
                return Err((422, "invalid_text", String::new()));
            }
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Card transactions

fn wants_async(h: &HeaderMap) -> bool {
    h.get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

fn location(id: &str) -> String {
    format!("/v1/transactions/{id}")
}

fn record_response(status: StatusCode, rec: &TxnRecord) -> Response {
    let mut r = (status, axum::Json(record_json(rec))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location(&rec.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Starts a card transaction on the reader; answers when it ends, or 202 (see module docs).
async fn card_transaction(
    s: AppState,
    headers: &HeaderMap,
    idem: &Idem,
    kind: AuthKind,
    amount: Money,
) -> Result<Response, ApiError> {
    let guard = s.reader.clone().try_lock_owned().map_err(|_| s.busy())?;
    let reference = crate::terminal::new_reference();
    let id = reference.0.clone();
    let mut rec = TxnRecord::started(id.clone(), kind, amount);
    s.store.save_transaction(&rec);
    // Provisional answer (replaced by the final one): if the process dies now, the same
    // request id after a restart leads to this transaction, not to a second charge.
    s.store.save_response(
        &idem.id,
        &StoredResponse {
            fingerprint: idem.fingerprint,
            status: StatusCode::ACCEPTED.as_u16(),
            location: Some(location(&id)),
            body: record_json(&rec).to_string(),
        },
    );
    // Store-and-forward is decided per sale from the merchant's limits and what is stored.
    let txn_config = match &s.relay {
        Some(r) => r.relay.txn_config(s.txn_config.clone(), kind, amount),
        None => s.txn_config.clone(),
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    *lock(&s.running) = Some(Running {
        id: id.clone(),
        cancel: cancel_tx,
    });
    s.publish(
        "transaction.started",
        json!({"transaction_id": id, "kind": kind, "amount": amount}),
    );
    let (date, time) = crate::engine::utc_date_time(std::time::SystemTime::now());
    let req = TxnRequest {
        reference,
        kind,
        amount,
        amount_other: 0,
        date,
        time,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
    };
    let (done_tx, mut done_rx) = watch::channel::<Option<TxnRecord>>(None);
    let st = s.clone();
    tokio::spawn(async move {
        let mut reader_events = guard;
        let txn_id = rec.id.clone();
        let result = crate::engine::run_transaction_cancellable(
            &st.link,
            &mut reader_events,
            st.gateway.clone(),
            req,
            txn_config,
            cancel_rx,
            |p| {
                let mut data = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
                if let Some(o) = data.as_object_mut() {
                    o.insert("transaction_id".into(), json!(txn_id));
                    o.insert("text".into(), json!(emvbridge_core::prompt::text(p)));
                }
                st.publish("prompt", data);
            },
        )
        .await;
        match result {
            Ok(outcome) => {
                // The journal first: what the POS is told is what the relay settles from.
                if let Some(r) = &st.relay {
                    if let Err(e) = r.relay.finish(&outcome) {
                        tracing::error!(error = %e, transaction = %rec.id, "outcome not journaled");
                    }
                }
                rec.finish(&outcome);
            }
            Err(e) => {
                rec.status = ApiStatus::Failed;
                rec.reason = Some(e.to_string());
                // An authorization the journal saw and did not settle may have moved money.
                let open = st
                    .relay
                    .as_ref()
                    .and_then(|r| r.relay.journal().get(&rec.id).ok().flatten());
                if open.is_some_and(|e| {
                    e.state.needs_resolution()
                        || (e.state == crate::journal::RelayState::Approved && !e.pos_approved())
                }) {
                    rec.status = ApiStatus::Unresolved;
                    rec.reason = Some(format!(
                        "{e}; the authorization is being resolved (treat as not paid)"
                    ));
                }
                rec.updated_at = store::unix_now();
            }
        }
        st.store.save_transaction(&rec);
        {
            let mut running = lock(&st.running);
            if running.as_ref().is_some_and(|r| r.id == rec.id) {
                *running = None;
            }
        }
        drop(reader_events);
        st.publish(
            "transaction.finished",
            json!({"transaction_id": rec.id, "status": rec.status, "transaction": record_json(&rec)}),
        );
        let _ = done_tx.send(Some(rec));
    });
    let started = s.record(&id)?;
    if wants_async(headers) {
        let mut r = record_response(StatusCode::ACCEPTED, &started);
        r.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
        return Ok(r);
    }
    let finished = tokio::time::timeout(s.sale_timeout, done_rx.wait_for(Option::is_some)).await;
    match finished {
        Ok(Ok(rec)) => match rec.as_ref() {
            Some(rec) => Ok(record_response(StatusCode::OK, rec)),
            None => Ok(record_response(StatusCode::ACCEPTED, &started)),
        },
        _ => Ok(record_response(StatusCode::ACCEPTED, &s.record(&id)?)),
    }
}

async fn sale(
    State(s): State<AppState>,
    Extension(idem): Extension<Idem>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: AmountBody = parse_body(&body)?;
    let amount = money(b.amount, &b.currency)?;
    card_transaction(s, &headers, &idem, AuthKind::Sale, amount).await
}

async fn preauth(
    State(s): State<AppState>,
    Extension(idem): Extension<Idem>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: AmountBody = parse_body(&body)?;
    let amount = money(b.amount, &b.currency)?;
    card_transaction(s, &headers, &idem, AuthKind::PreAuth, amount).await
}

async fn refund(
    State(s): State<AppState>,
    Extension(idem): Extension<Idem>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: RefundBody = parse_body(&body)?;
    let amount = money(b.amount, &b.currency)?;
    let Some(original_id) = b.transaction_id else {
        return card_transaction(s, &headers, &idem, AuthKind::Refund, amount).await;
    };
    let original = s.record(&original_id)?;
    let gateway_id = refundable(&original, amount)?;
    let reference = crate::terminal::new_reference();
    let result = s
        .gateway
        .refund(&RefundRequest {
            reference: reference.clone(),
            gateway_id,
            amount,
        })
        .await;
    let mut rec = TxnRecord::started(reference.0.clone(), AuthKind::Refund, amount);
    rec.card_present = false;
    rec.original_transaction_id = Some(original.id.clone());
    let op_status = match &result {
        OpResult::Done { gateway_id } => {
            rec.status = ApiStatus::Approved;
            rec.approved_amount = Some(amount);
            rec.gateway_id = Some(gateway_id.clone());
            "done"
        }
        OpResult::Refused { code, reason } => {
            rec.status = ApiStatus::Declined;
            rec.decline_code.clone_from(code);
            rec.reason = Some(reason.clone());
            "refused"
        }
        OpResult::NotFound => {
            rec.status = ApiStatus::Declined;
            rec.reason = Some("the gateway has no such transaction".into());
            "refused"
        }
        OpResult::Unknown { reason } => {
            rec.status = ApiStatus::Unresolved;
            rec.reason = Some(reason.clone());
            "unknown"
        }
        OpResult::Unavailable { .. } | OpResult::Unsupported { .. } => {
            return Err(op_error(&result))
        }
    };
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    let mut original = original;
    original.operations.push(Operation {
        op: "refund".into(),
        status: op_status.into(),
        gateway_id: rec.gateway_id.clone(),
        amount: Some(amount),
        transaction_id: Some(rec.id.clone()),
    });
    original.updated_at = store::unix_now();
    s.store.save_transaction(&original);
    Ok(record_response(StatusCode::OK, &rec))
}

fn refundable(original: &TxnRecord, amount: Money) -> Result<String, ApiError> {
    let gateway_id = original
        .gateway_id
        .clone()
        .filter(|_| original.status.is_approved() && original.kind != AuthKind::Refund);
    let Some(gateway_id) = gateway_id else {
        return Err(ApiError::conflict(
            "not_refundable",
            format!("transaction {} is not an approved payment", original.id),
        ));
    };
    let base = original
        .captured_amount
        .or(original.approved_amount)
        .unwrap_or(original.amount);
    if amount.currency().alpha != base.currency().alpha || amount.minor() > base.minor() {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            format!("a refund of {} is at most {base}", original.id),
        ));
    }
    Ok(gateway_id)
}

/// Errors for gateway answers that change nothing.
fn op_error(r: &OpResult) -> ApiError {
    match r {
        OpResult::Done { .. } => ApiError::new(StatusCode::OK, "ok", "done"),
        OpResult::Refused { code, reason } => ApiError::conflict(
            "refused",
            match code {
                Some(c) => format!("the gateway refused ({c}): {reason}"),
                None => format!("the gateway refused: {reason}"),
            },
        ),
        OpResult::NotFound => ApiError::conflict(
            "not_found_at_gateway",
            "the gateway has no such transaction",
        ),
        OpResult::Unavailable { reason } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway_unavailable",
            format!("not processed: {reason}"),
        ),
        OpResult::Unknown { reason } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_unknown",
            format!("the outcome is unknown ({reason}); retry with the same X-Request-Id"),
        ),
        OpResult::Unsupported { reason } => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            format!("the gateway cannot do this: {reason}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Follow-ups

async fn capture(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CaptureBody = if body.iter().all(u8::is_ascii_whitespace) {
        CaptureBody::default()
    } else {
        parse_body(&body)?
    };
    let mut rec = s.record(&id)?;
    if rec.kind != AuthKind::PreAuth {
        return Err(ApiError::conflict(
            "not_a_preauth",
            format!("transaction {id} is not a pre-authorization"),
        ));
    }
    let (Some(gateway_id), true) = (rec.gateway_id.clone(), rec.status.is_approved()) else {
        return Err(ApiError::conflict(
            "not_capturable",
            format!("pre-authorization {id} is not approved"),
        ));
    };
    if rec.captured_amount.is_some() {
        return Err(ApiError::conflict(
            "already_captured",
            format!("pre-authorization {id} is already captured"),
        ));
    }
    let authorized = rec.approved_amount.unwrap_or(rec.amount);
    let amount = match b.amount {
        None => authorized,
        Some(a) => money(
            a,
            b.currency.as_deref().unwrap_or(authorized.currency().alpha),
        )?,
    };
    if amount.currency().alpha != authorized.currency().alpha || amount.minor() > authorized.minor()
    {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            format!("the capture is at most the authorized {authorized}"),
        ));
    }
    let r = s
        .gateway
        .capture(&CaptureRequest {
            reference: Reference(format!("{id}-cap")),
            gateway_id,
            authorized,
            amount,
        })
        .await;
    let OpResult::Done { gateway_id } = r else {
        return Err(op_error(&r));
    };
    rec.captured_amount = Some(amount);
    rec.operations.push(Operation {
        op: "capture".into(),
        status: "done".into(),
        gateway_id: Some(gateway_id),
        amount: Some(amount),
        transaction_id: None,
    });
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    Ok(record_response(StatusCode::OK, &rec))
}

async fn void(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut rec = s.record(&id)?;
    let (Some(gateway_id), true) = (rec.gateway_id.clone(), rec.status.is_approved()) else {
        return Err(ApiError::conflict(
            "not_voidable",
            format!("transaction {id} is not an approved payment"),
        ));
    };
    let r = s
        .gateway
        .void(&VoidRequest {
            reference: Reference(id.clone()),
            gateway_id,
        })
        .await;
    let OpResult::Done { gateway_id } = r else {
        return Err(op_error(&r));
    };
    rec.status = ApiStatus::Voided;
    rec.operations.push(Operation {
        op: "void".into(),
        status: "done".into(),
        gateway_id: Some(gateway_id),
        amount: None,
        transaction_id: None,
    });
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    Ok(record_response(StatusCode::OK, &rec))
}

async fn reverse(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut rec = s.record(&id)?;
    if !(rec.status.is_approved() || rec.status == ApiStatus::Unresolved) {
        return Err(ApiError::conflict(
            "not_reversible",
            format!("transaction {id} has no money to send back"),
        ));
    }
    let r = s
        .gateway
        .reverse(&ReversalRequest {
            reference: Reference(id.clone()),
            gateway_id: rec.gateway_id.clone(),
            amount: rec.approved_amount.unwrap_or(rec.amount),
            reason: ReversalReason::Cancelled,
        })
        .await;
    let status = match r {
        ReversalResult::Reversed => "done",
        ReversalResult::NotFound => "not_found",
        ReversalResult::Failed { reason } => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "reversal_failed",
                format!("the reversal did not go through: {reason}"),
            ))
        }
    };
    rec.status = ApiStatus::Reversed;
    rec.operations.push(Operation {
        op: "reverse".into(),
        status: status.into(),
        gateway_id: None,
        amount: None,
        transaction_id: None,
    });
    rec.updated_at = store::unix_now();
    s.store.save_transaction(&rec);
    Ok(record_response(StatusCode::OK, &rec))
}

async fn transaction(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(record_response(StatusCode::OK, &s.record(&id)?))
}

async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let rec = s.record(&id)?;
    let sent = {
        let running = lock(&s.running);
        match running.as_ref() {
            Some(r) if r.id == id => r.cancel.send(true).is_ok(),
            _ => false,
        }
    };
    if !sent {
        return Err(ApiError::conflict(
            "not_running",
            format!("transaction {id} is not running"),
        ));
    }
    // The outcome (cancelled, or reversed if the host had approved) comes as the
    // transaction's end: poll it or watch the events.
    Ok(record_response(StatusCode::ACCEPTED, &rec))
}

// ---------------------------------------------------------------------------------------------
// Device

async fn device(State(s): State<AppState>) -> Response {
    let (state, info) = match s.link.state() {
        LinkState::Connected { device_info } => ("connected", Some(device_info)),
        LinkState::Reconnecting { .. } => ("reconnecting", None),
        LinkState::Closed { .. } => ("closed", None),
    };
    let first = info.as_ref().and_then(|i| i.devices.first());
    axum::Json(json!({
        "link": state,
        "simulated": s.simulated,
        "busy": s.reader.try_lock().is_err(),
        "current_transaction_id": s.running_id(),
        "model": first.and_then(|d| d.model.clone()),
        "serial": first.and_then(|d| d.serial.clone()),
        "version": first.and_then(|d| d.version.clone()),
        "terminal_id": info.as_ref().and_then(|i| i.terminal_id.clone()),
        "gateway": dialect_name(s.gateway.dialect()),
        "stats": s.link.stats(),
    }))
    .into_response()
}

fn dialect_name(d: Dialect) -> String {
    d.to_string()
}

fn reader_error(e: crate::driver::ReaderError) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "reader_error", e.to_string())
}

async fn display(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let b: DisplayBody = parse_body(&body)?;
    if b.text.is_empty()
        || b.text.len() > MAX_DISPLAY_TEXT
        || !b.text.bytes().all(|c| c == b' ' || c.is_ascii_graphic())
    {
        return Err(ApiError::unprocessable(
            "invalid_text",
            format!("text must be 1-{MAX_DISPLAY_TEXT} printable ASCII characters"),
        ));
    }
    let _guard = s.reader.try_lock().map_err(|_| s.busy())?;
    Reader::new(s.link.clone())
        .display(&b.text)
        .await
        .map_err(reader_error)?;
    Ok(axum::Json(json!({"displayed": b.text})).into_response())
}

async fn reset(State(s): State<AppState>) -> Result<Response, ApiError> {
    let _guard = s.reader.try_lock().map_err(|_| s.busy())?;
    let info = Reader::new(s.link.clone())
        .reset()
        .await
        .map_err(reader_error)?;
    Ok(axum::Json(json!({"reset": true, "device_info": info})).into_response())
}

// ---------------------------------------------------------------------------------------------
// Events, health, document

async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(ev) => Some((
                Ok(Event::default()
                    .event(ev.name)
                    .id(ev.id.to_string())
                    .data(ev.data)),
                rx,
            )),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((
                Ok(Event::default()
                    .event("lagged")
                    .data(json!({"missed": n}).to_string())),
                rx,
            )),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn health(State(s): State<AppState>) -> Response {
    let reader = match s.link.state() {
        LinkState::Connected { .. } => "connected",
        LinkState::Reconnecting { .. } => "reconnecting",
        LinkState::Closed { .. } => "closed",
    };
    let relay = match &s.relay {
        None => json!(null),
        Some(r) => {
            let j = r.relay.journal();
            let unresolved = j.unresolved().map(|v| v.len()).map_err(|e| e.to_string());
            let open = j.api_open_count().map_err(|e| e.to_string());
            let last = lock(&r.last_pass).clone();
            json!({
                "journal": r.relay.path().display().to_string(),
                "store": "journal",
                "unresolved": unresolved.as_ref().ok(),
                "unresolved_transactions": open.as_ref().ok(),
                "error": unresolved.err().or(open.err()),
                "resolver_interval_secs": r.relay.policy.interval_secs,
                "last_pass": last,
            })
        }
    };
    axum::Json(json!({
        "status": "ok",
        "reader": reader,
        "version": env!("CARGO_PKG_VERSION"),
        "relay": relay,
    }))
    .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---------------------------------------------------------------------------------------------
// CLI

/// Arguments of `emvbridge serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Allow listening on a non-loopback address (the token then crosses the network).
    #[arg(long)]
    pub allow_remote: bool,
    /// The bearer token file; created (0600) with a new token when missing.
    /// Default: ~/.config/emvbridge/api-token.
    #[arg(long, env = "EMVBRIDGE_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The reader: a serial device or `tcp://HOST:PORT`. Without it, a simulated reader
    /// runs in-process.
    #[arg(long)]
    pub device: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 57_600)]
    pub baud: u32,
    /// The simulated card (with no --device).
    #[arg(long, default_value = "visa-cvn18")]
    pub card: String,
    /// `sandbox`, a sandbox gateway URL, or `env`.
    #[arg(long, default_value = "sandbox")]
    pub gateway: String,
    /// Gateway dialect.
    #[arg(long, default_value = "paymentsai")]
    pub dialect: Dialect,
    /// Seconds a synchronous card transaction call waits before answering 202.
    #[arg(long, default_value_t = 180)]
    pub sale_timeout: u64,
    /// The relay journal (SQLite), also the API's durable store of request ids and
    /// transaction records. Default: the configured or user-data-dir journal with
    /// `--gateway env` or `--config`; none (in-memory store) with the sandbox unless given.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Relay configuration (TOML): journal path, store-and-forward limits, resolver policy.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs `emvbridge serve` until Ctrl-C. Exit 2 on a setup error.
pub async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        anyhow::bail!(
            "refusing to listen on {}: not a loopback address (pass --allow-remote to expose the payment API)",
            args.listen
        );
    }
    let token_file = args.token_file.unwrap_or_else(auth::default_token_file);
    let (token, created) = auth::load_or_create(&token_file)?;
    let relay = RelayOptions {
        journal: args.journal,
        config: args.config,
    };
    let server = start_with_relay(
        ApiOptions {
            listen: args.listen,
            allow_remote: args.allow_remote,
            token,
            terminal: TerminalOptions {
                device: args.device,
                baud: args.baud,
                card: args.card,
                gateway: args.gateway,
                dialect: args.dialect,
            },
            sale_timeout: Duration::from_secs(args.sale_timeout.max(1)),
            txn_config: TxnConfig::default(),
        },
        relay,
    )
    .await?;
    for note in &server.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "{} the API token in {} (send it as Authorization: Bearer <token>)",
        if created { "created" } else { "using" },
        token_file.display()
    );
    eprintln!(
        "listening on http://{} (OpenAPI at /v1/openapi); Ctrl-C stops",
        server.addr
    );
    let _ = tokio::signal::ctrl_c().await;
    eprintln!(
        "stopping: a running transaction is cancelled and ends definitely (Ctrl-C again: stop now)"
    );
    tokio::select! {
        () = server.shutdown() => {}
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopped at once: the resolver settles an interrupted transaction at the next start");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from docs/openapi.json"
            );
        }
        // And nothing documented that the server does not serve.
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| {
                p.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                    .count()
            })
            .sum();
        assert_eq!(documented, ROUTES.len());
    }

    #[test]
    fn prefer_respond_async_is_recognised() {
        let mut h = HeaderMap::new();
        assert!(!wants_async(&h));
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, respond-async"),
        );
        assert!(wants_async(&h));
        h.insert("prefer", HeaderValue::from_static("respond-asyncx"));
        assert!(!wants_async(&h));
    }

    #[test]
    fn amounts_are_validated() {
        assert_eq!(money(1234, "USD").unwrap().minor(), 1234);
        assert_eq!(money(1234, "978").unwrap().currency().alpha, "EUR");
        assert_eq!(money(0, "USD").unwrap_err().code, "invalid_amount");
        assert_eq!(money(1, "XXQ").unwrap_err().code, "invalid_currency");
        assert_eq!(
            money(emvbridge_core::money::MAX_MINOR + 1, "USD").unwrap_err().code,
            "invalid_amount"
        );
        let e = parse_body::<AmountBody>(br#"{"amount": 12.34, "currency": "USD"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_body");
        let e =
            parse_body::<AmountBody>(br#"{"amount": 1, "currency": "USD", "x": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert_eq!(
            parse_body::<AmountBody>(b" ").unwrap_err().code,
            "invalid_body"
        );
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = fingerprint(&Method::POST, "/v1/sales", b"{}");
        assert_eq!(a, fingerprint(&Method::POST, "/v1/sales", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/preauths", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/sales", b"{ }"));
    }
}
