//! The HTTP edge: reqwest (rustls) with connect and request timeouts, a bounded reply body,
//! and one [`Gateway`] implementation per dialect that drives the sans-IO mapping.
//!
//! Retries: only where the dialect makes a re-send safe — PaymentsAI's `idempotencyKey`
//! (sale, capture). Pay1st's create is sent once (the answer to a duplicate `partnerReference`
//! is not documented, and no query takes it); a created payment is followed by its Pay1st
//! reference until final. Number has no idempotency: a sale is sent once, and an unknown outcome is
//! left to [`Gateway::status`] / [`Gateway::reverse`]. The only re-send on Number is after a
//! 5030/5050 session rejection, which the gateway returns before processing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::adapter::{BoxFuture, Gateway};
use super::clock::Clock;
use emvbridge_core::gateway::number::{self, SessionState};
use emvbridge_core::gateway::pay1st::{self, Tokens};
use emvbridge_core::gateway::paymentsai::{self, PaiConfig};
use emvbridge_core::gateway::reversal::{Reversal, ReversalPolicy, Step, Undo};
use emvbridge_core::gateway::{
    arc_only, screen, CaptureRequest, ConfigError, Dialect, Exchange, HttpReply, HttpRequest,
    Method, OpResult, RefundRequest, Screened, StatusResult, TransportError, TxnState, VoidRequest,
};
use emvbridge_core::txn::host::{
    AuthKind, AuthorizationRequest, AuthorizationResult, Reference, ReversalRequest, ReversalResult,
};

/// Timeouts, retry bounds and the reply size limit.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (send, headers and body).
    pub request_timeout: Duration,
    /// Attempts for a safely repeatable request (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt.
    pub backoff: Duration,
    /// Largest reply body read; a longer one counts as no reply.
    pub max_body: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 3,
            backoff: Duration::from_millis(250),
            max_body: 1 << 20,
        }
    }
}

/// A reqwest client with the settings applied.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
}

impl HttpClient {
    /// Builds the client (rustls, no redirects: a gateway answer is never a redirect).
    ///
    /// # Errors
    /// [`ConfigError::Client`].
    pub fn new(settings: HttpSettings) -> Result<HttpClient, ConfigError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ConfigError::Client)?;
        Ok(HttpClient { client, settings })
    }

    /// The settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// One exchange. Errors are split by whether the request can have been written:
    /// connect/DNS/TLS failures are [`TransportError::NotSent`]; everything after is
    /// [`TransportError::NoReply`].
    pub async fn send(&self, base: &str, req: &HttpRequest) -> Exchange {
        let ex = self.send_once(base, req).await;
        crate::telemetry::metrics::gateway_exchange(&ex);
        ex
    }

    async fn send_once(&self, base: &str, req: &HttpRequest) -> Exchange {
        let url = format!("{base}{}", req.path);
        let mut b = match req.method {
            Method::Get => self.client.get(&url),
            Method::Post => self.client.post(&url).body(req.body.clone()),
        };
        for (n, v) in &req.headers {
            b = b.header(*n, v);
        }
        let mut resp = match b.send().await {
            Ok(r) => r,
            Err(e) => return Err(transport_error(&e)),
        };
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > self.settings.max_body {
                        return Err(TransportError::NoReply("reply too large".into()));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(TransportError::NoReply(error_kind(&e).into())),
            }
        }
        Ok(HttpReply {
            status,
            body: body.into(),
        })
    }

    /// Sends `req` until it is answered (not 5xx, not a lost reply), at most
    /// `max_attempts` times with doubling backoff. Only for requests whose re-send is safe.
    ///
    /// After an attempt whose reply was lost (it may have been processed), a later attempt
    /// that was certainly not processed — not sent, or refused for its credentials (401/403) —
    /// says nothing about the earlier one: the lost reply is returned, so the caller reports
    /// "unknown" and never "unavailable" for a request the gateway may have executed (found
    /// by `emvbridge soak`: a committed Pay1st charge reported as "token refused").
    async fn send_idempotent(&self, base: &str, req: &HttpRequest, dialect: Dialect) -> Exchange {
        let mut wait = self.settings.backoff;
        let mut attempt = 1;
        let mut lost: Option<Exchange> = None;
        loop {
            let ex = self.send(base, req).await;
            let unknown = matches!(screen(&ex), Err(Screened::Unknown(_)));
            let retry = unknown || matches!(&ex, Err(TransportError::NotSent(_)));
            let not_processed = matches!(&ex, Err(TransportError::NotSent(_)))
                || matches!(&ex, Ok(r) if r.status == 401 || r.status == 403);
            if unknown && lost.is_none() {
                lost = Some(ex.clone());
            }
            if !retry || attempt >= self.settings.max_attempts.max(1) {
                return match lost {
                    Some(l) if not_processed => l,
                    _ => ex,
                };
            }
            tracing::info!(%dialect, attempt, "gateway: no usable reply, re-sending idempotent request");
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
            attempt += 1;
        }
    }
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else {
        "connection lost"
    }
}

/// Connect-phase errors (refused, DNS, TLS, connect timeout) never wrote the request.
fn transport_error(e: &reqwest::Error) -> TransportError {
    if e.is_connect() || e.is_builder() {
        TransportError::NotSent(error_kind(e).into())
    } else {
        TransportError::NoReply(error_kind(e).into())
    }
}

/// A capture/void/refund result as an authorization result (card-present refunds).
fn op_to_auth(r: OpResult, approved: emvbridge_core::money::Money) -> AuthorizationResult {
    match r {
        OpResult::Done { gateway_id } => AuthorizationResult::Approved {
            gateway_id,
            approved_amount: approved,
            issuer: arc_only(*b"00"),
        },
        OpResult::Refused { code, reason } => AuthorizationResult::Declined {
            gateway_id: None,
            code,
            reason,
            issuer: arc_only(*b"05"),
        },
        OpResult::NotFound => AuthorizationResult::Declined {
            gateway_id: None,
            code: None,
            reason: "original transaction not found".into(),
            issuer: arc_only(*b"05"),
        },
        OpResult::Unavailable { reason } => AuthorizationResult::Unavailable { reason },
        OpResult::Unsupported { reason } => AuthorizationResult::Unavailable {
            reason: reason.into(),
        },
        OpResult::Unknown { reason } => AuthorizationResult::Unknown { reason },
    }
}

fn refund_of(req: &AuthorizationRequest) -> Option<RefundRequest> {
    (req.kind == AuthKind::Refund).then_some(())?;
    Some(RefundRequest {
        reference: req.reference.clone(),
        gateway_id: req.original_gateway_id.clone()?,
        amount: req.amount,
        pos_reference: req.pos_reference.clone(),
    })
}

fn log_auth(dialect: Dialect, reference: &Reference, r: &AuthorizationResult) {
    let outcome = match r {
        AuthorizationResult::Approved { .. } => "approved",
        AuthorizationResult::Declined { .. } => "declined",
        AuthorizationResult::Unavailable { .. } => "unavailable",
        AuthorizationResult::Unknown { .. } => "unknown",
    };
    tracing::info!(%dialect, %reference, outcome, "gateway authorization");
}

/// A dialect's three reversal operations, for [`reverse`].
trait ReversalOps {
    /// The dialect's reversal rules.
    const POLICY: ReversalPolicy;
    /// Looks the transaction of `req` up, and says how the gateway could undo it.
    async fn lookup(&self, req: &ReversalRequest) -> (StatusResult, Undo);
    async fn void(&self, req: &VoidRequest) -> OpResult;
    async fn refund(&self, req: &RefundRequest) -> OpResult;
}

/// Runs the sans-IO reversal policy against one gateway.
async fn reverse<G: ReversalOps>(
    gw: &G,
    dialect: Dialect,
    req: &ReversalRequest,
) -> ReversalResult {
    let mut plan = Reversal::new(req.clone(), G::POLICY);
    let mut step = plan.start();
    loop {
        step = match step {
            Step::Done(r) => {
                match &r {
                    ReversalResult::Failed { reason } => {
                        tracing::warn!(%dialect, reference = %req.reference, reason = %reason, "gateway reversal failed; still due")
                    }
                    done => {
                        tracing::info!(%dialect, reference = %req.reference, result = ?done, "gateway reversal")
                    }
                }
                return r;
            }
            Step::LookUp => {
                let (status, undo) = gw.lookup(req).await;
                if let Undo::Never { reason } = &undo {
                    if matches!(&status, StatusResult::Found(t) if t.state == TxnState::Approved) {
                        tracing::warn!(%dialect, reference = %req.reference, reason, "approved payment cannot be reversed through the api");
                    }
                }
                plan.on_status(status, undo)
            }
            Step::Void(v) => plan.on_undone(gw.void(&v).await),
            Step::Refund(f) => plan.on_undone(gw.refund(&f).await),
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Number

/// The Number adapter.
pub struct NumberGateway {
    cfg: number::NumberConfig,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    state: Mutex<SessionState>,
}

impl NumberGateway {
    /// Builds the adapter. `clock` drives session renewal and the HMAC epoch.
    ///
    /// # Errors
    /// [`ConfigError::Client`].
    pub fn new(
        cfg: number::NumberConfig,
        settings: HttpSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<NumberGateway, ConfigError> {
        Ok(NumberGateway {
            cfg,
            http: HttpClient::new(settings)?,
            clock,
            state: Mutex::new(SessionState::default()),
        })
    }

    /// Clears the login-failure counter after an operator checked the credentials.
    pub async fn reset_auth_failures(&self) {
        self.state.lock().await.reset_failures();
    }

    /// Consecutive failed logins (0 after a success).
    pub async fn auth_failures(&self) -> u32 {
        self.state.lock().await.failures()
    }

    async fn session(&self) -> Result<number::Session, String> {
        let mut st = self.state.lock().await;
        let now = self.clock.unix_now();
        if let Some(s) = st.current(now) {
            return Ok(s.clone());
        }
        if !st.may_authenticate() {
            return Err("number: login suspended after repeated failures".into());
        }
        let ex = self
            .http
            .send(&self.cfg.base_url, &number::authenticate_request(&self.cfg))
            .await;
        match number::parse_authenticate(&ex, now) {
            Ok(s) => {
                st.on_authenticated(s.clone());
                tracing::info!("number: logged in");
                Ok(s)
            }
            Err(number::LoginFailure::NotSent(r)) => Err(r),
            Err(number::LoginFailure::Failed(r)) => {
                st.on_auth_failed();
                tracing::warn!(failures = st.failures(), "number: login failed");
                Err(r)
            }
        }
    }

    async fn drop_session(&self, used: &number::Session) {
        let mut st = self.state.lock().await;
        let now = self.clock.unix_now();
        if st.current(now).is_some_and(|c| c.key == used.key) {
            st.invalidate();
        }
    }

    /// One call with at most one re-login on 5030/5050.
    async fn call<T>(
        &self,
        build: impl Fn(&number::Session, i64) -> Result<HttpRequest, &'static str>,
        classify: impl Fn(&Exchange) -> number::Reply<T>,
        unavailable: impl Fn(String) -> T,
    ) -> T {
        let mut relogged = false;
        loop {
            let s = match self.session().await {
                Ok(s) => s,
                Err(r) => return unavailable(r),
            };
            let req = match build(&s, self.clock.unix_now()) {
                Ok(r) => r,
                Err(reason) => return unavailable(reason.to_owned()),
            };
            let ex = self.http.send(&self.cfg.base_url, &req).await;
            match classify(&ex) {
                number::Reply::Done(t) => return t,
                number::Reply::SessionRejected(code) => {
                    tracing::info!(code, "number: session rejected");
                    self.drop_session(&s).await;
                    if relogged {
                        return unavailable(format!("number: session rejected again ({code})"));
                    }
                    relogged = true;
                }
            }
        }
    }

    async fn do_void(&self, req: &VoidRequest) -> OpResult {
        let id = req.gateway_id.clone();
        self.call(
            |s, _| number::void_request(s, req).ok_or("not a number TxID"),
            |ex| number::classify_op(ex, number::VOID_RESULT, &id, false),
            |reason| OpResult::Unavailable { reason },
        )
        .await
    }

    async fn do_refund(&self, req: &RefundRequest) -> OpResult {
        self.call(
            |s, _| number::apply_credit_request(s, req).ok_or("not a number TxID"),
            |ex| number::classify_op(ex, number::APPLY_CREDIT_RESULT, &req.gateway_id, true),
            |reason| OpResult::Unavailable { reason },
        )
        .await
    }

    async fn do_status(&self, reference: &Reference) -> StatusResult {
        self.call(
            |s, _| number::query_request(s, reference).ok_or("number: reference not queryable"),
            |ex| number::classify_query(ex, reference, &self.cfg.currency),
            |reason| StatusResult::Unknown { reason },
        )
        .await
    }
}

impl ReversalOps for NumberGateway {
    const POLICY: ReversalPolicy = ReversalPolicy {
        lookup_first: false,
        confirm_refusal: true,
    };
    async fn lookup(&self, req: &ReversalRequest) -> (StatusResult, Undo) {
        (self.do_status(&req.reference).await, Undo::Void)
    }
    async fn void(&self, req: &VoidRequest) -> OpResult {
        self.do_void(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> OpResult {
        self.do_refund(req).await
    }
}

impl Gateway for NumberGateway {
    fn dialect(&self) -> Dialect {
        Dialect::Number
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizationRequest,
    ) -> BoxFuture<'a, AuthorizationResult> {
        Box::pin(async move {
            let r = if let Some(rf) = refund_of(req) {
                op_to_auth(self.do_refund(&rf).await, req.amount)
            } else {
                self.call(
                    |s, now| number::emv_sale_request(&self.cfg, s, now, req),
                    |ex| number::classify_sale(ex, req),
                    |reason| AuthorizationResult::Unavailable { reason },
                )
                .await
            };
            log_auth(Dialect::Number, &req.reference, &r);
            r
        })
    }

    fn capture<'a>(&'a self, req: &'a CaptureRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            self.call(
                |s, _| number::capture_request(s, req),
                |ex| number::classify_op(ex, number::INCREMENTAL_RESULT, &req.gateway_id, false),
                |reason| OpResult::Unavailable { reason },
            )
            .await
        })
    }

    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(self.do_void(req))
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(self.do_refund(req))
    }

    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult> {
        Box::pin(reverse(self, self.dialect(), req))
    }

    fn status<'a>(
        &'a self,
        reference: &'a Reference,
        _gateway_id: Option<&'a str>,
    ) -> BoxFuture<'a, StatusResult> {
        // Number's query grammar finds a sale by our `ClientRefID` (term `M`).
        Box::pin(self.do_status(reference))
    }
}

// ---------------------------------------------------------------------------------------------
// PaymentsAI

/// The PaymentsAI adapter.
pub struct PaiGateway {
    cfg: PaiConfig,
    http: HttpClient,
}

impl PaiGateway {
    /// Builds the adapter.
    ///
    /// # Errors
    /// [`ConfigError::Client`].
    pub fn new(cfg: PaiConfig, settings: HttpSettings) -> Result<PaiGateway, ConfigError> {
        Ok(PaiGateway {
            cfg,
            http: HttpClient::new(settings)?,
        })
    }

    async fn do_refund(&self, req: &RefundRequest) -> OpResult {
        // Not idempotent upstream: sent once.
        let ex = self
            .http
            .send(
                &self.cfg.base_url,
                &paymentsai::refund_request(&self.cfg, req),
            )
            .await;
        paymentsai::classify_op(&ex)
    }

    /// A void is a refund of the whole amount (Rebilly has no void): read the amount first.
    async fn do_void(&self, req: &VoidRequest) -> OpResult {
        let txn = match self.find(&req.reference, Some(&req.gateway_id)).await {
            (_, Some(t)) => t,
            (StatusResult::NotFound, None) => return OpResult::NotFound,
            (StatusResult::Unknown { reason }, None) => {
                tracing::warn!(reason = %reason, "paymentsai: transaction unreadable before void");
                return OpResult::Unavailable { reason };
            }
            (StatusResult::Found(_), None) => {
                return OpResult::Unavailable {
                    reason: "paymentsai: transaction unreadable".into(),
                }
            }
        };
        // Rebilly's refund voids an open authorization; on a sale it would be a refund, which
        // is not what a void asks for.
        if txn.kind.as_deref() != Some("authorize") {
            return OpResult::Refused {
                code: None,
                reason:
                    "paymentsai: only an uncaptured authorization can be voided; a sale is refunded"
                        .into(),
            };
        }
        match paymentsai::void_request(&self.cfg, req, &txn) {
            Err(reason) => OpResult::Unavailable {
                reason: reason.into(),
            },
            Ok(http) => {
                let ex = self.http.send(&self.cfg.base_url, &http).await;
                paymentsai::classify_op(&ex)
            }
        }
    }

    async fn lookup(&self, reference: &Reference) -> (StatusResult, Option<paymentsai::PaiTxn>) {
        let Some(req) = paymentsai::lookup_request(&self.cfg, reference) else {
            // Never sent as a requestId (authorize refuses such a reference): nothing to find.
            return (StatusResult::NotFound, None);
        };
        let ex = self.http.send(&self.cfg.base_url, &req).await;
        paymentsai::classify_lookup(&ex, reference)
    }

    /// By the gateway id when a reply brought one, else by our reference.
    async fn find(
        &self,
        reference: &Reference,
        gateway_id: Option<&str>,
    ) -> (StatusResult, Option<paymentsai::PaiTxn>) {
        match gateway_id {
            Some(id) => {
                let ex = self
                    .http
                    .send(&self.cfg.base_url, &paymentsai::get_request(&self.cfg, id))
                    .await;
                paymentsai::classify_get(&ex)
            }
            None => self.lookup(reference).await,
        }
    }
}

impl ReversalOps for PaiGateway {
    const POLICY: ReversalPolicy = ReversalPolicy {
        lookup_first: true,
        confirm_refusal: false,
    };
    async fn lookup(&self, req: &ReversalRequest) -> (StatusResult, Undo) {
        let (status, txn) = self.find(&req.reference, req.gateway_id.as_deref()).await;
        // An uncaptured authorization is voided (Rebilly: a refund without an amount); a
        // sale is refunded by its amount.
        let undo = if txn.as_ref().and_then(|t| t.kind.as_deref()) == Some("authorize") {
            Undo::Void
        } else {
            Undo::Refund {
                amount: txn.as_ref().and_then(|t| t.amount()),
            }
        };
        (status, undo)
    }
    async fn void(&self, req: &VoidRequest) -> OpResult {
        self.do_void(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> OpResult {
        self.do_refund(req).await
    }
}

impl Gateway for PaiGateway {
    fn dialect(&self) -> Dialect {
        Dialect::PaymentsAi
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizationRequest,
    ) -> BoxFuture<'a, AuthorizationResult> {
        Box::pin(async move {
            let r = if let Some(rf) = refund_of(req) {
                op_to_auth(self.do_refund(&rf).await, req.amount)
            } else {
                match paymentsai::authorize_request(&self.cfg, req) {
                    Err(reason) => AuthorizationResult::Unavailable {
                        reason: reason.into(),
                    },
                    Ok(http) => {
                        // Same idempotencyKey, same bytes: a repeat returns the original.
                        let ex = self
                            .http
                            .send_idempotent(&self.cfg.base_url, &http, Dialect::PaymentsAi)
                            .await;
                        paymentsai::classify_authorize(&ex, req)
                    }
                }
            };
            log_auth(Dialect::PaymentsAi, &req.reference, &r);
            r
        })
    }

    fn capture<'a>(&'a self, req: &'a CaptureRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            // A capture is a second sale on the authorization's payment instrument: read it.
            let auth = match self.find(&req.reference, Some(&req.gateway_id)).await {
                (_, Some(t)) => t,
                (StatusResult::NotFound, None) => return OpResult::NotFound,
                (StatusResult::Unknown { reason }, None) => {
                    tracing::warn!(reason = %reason, "paymentsai: authorization unreadable before capture");
                    return OpResult::Unavailable { reason };
                }
                (StatusResult::Found(_), None) => {
                    return OpResult::Unavailable {
                        reason: "paymentsai: authorization unreadable".into(),
                    }
                }
            };
            match paymentsai::capture_request(&self.cfg, req, &auth) {
                Err(reason) => OpResult::Unsupported { reason },
                Ok(http) => {
                    let ex = self
                        .http
                        .send_idempotent(&self.cfg.base_url, &http, Dialect::PaymentsAi)
                        .await;
                    paymentsai::classify_op(&ex)
                }
            }
        })
    }

    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(self.do_void(req))
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(self.do_refund(req))
    }

    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult> {
        Box::pin(reverse(self, self.dialect(), req))
    }

    fn status<'a>(
        &'a self,
        reference: &'a Reference,
        gateway_id: Option<&'a str>,
    ) -> BoxFuture<'a, StatusResult> {
        Box::pin(async move { self.find(reference, gateway_id).await.0 })
    }
}

// ---------------------------------------------------------------------------------------------
// Pay1st

/// The Pay1st adapter.
pub struct Pay1stGateway {
    cfg: pay1st::Pay1stConfig,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    tokens: Mutex<Option<Tokens>>,
    /// Pay1st references of the payments this process created, by our reference: Pay1st is
    /// queried by its own reference only, and an authorization still `NEW`/`PENDING` after
    /// [`PAY1ST_FOLLOW_POLLS`] comes back unknown without a gateway id. Bounded; after a
    /// restart the journal's gateway id (when the create reply brought it) is the key.
    created: Mutex<std::collections::VecDeque<(Reference, String)>>,
}

/// How many status queries follow a payment created `NEW`/`PENDING` (spaced by the backoff).
const PAY1ST_FOLLOW_POLLS: u32 = 5;
/// How many created payments [`Pay1stGateway`] remembers.
const PAY1ST_REMEMBERED: usize = 4096;
/// Why a Pay1st payment cannot be looked up.
const PAY1ST_NO_KEY: &str = "pay1st: no Pay1st reference (create reply lost) and no query by partnerReference: an operator must find the payment by its partner reference";

/// What Pay1st cannot do.
const PAY1ST_NO_OPS: &str =
    "pay1st has no capture, void or refund api (refunds go through carry1st)";

impl Pay1stGateway {
    /// Builds the adapter. `clock` stamps `X-TIMESTAMP` and ages the token.
    ///
    /// # Errors
    /// [`ConfigError::Client`].
    pub fn new(
        cfg: pay1st::Pay1stConfig,
        settings: HttpSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Pay1stGateway, ConfigError> {
        Ok(Pay1stGateway {
            cfg,
            http: HttpClient::new(settings)?,
            clock,
            tokens: Mutex::new(None),
            created: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    async fn remember(&self, reference: &Reference, gateway_reference: &str) {
        let mut c = self.created.lock().await;
        if c.len() >= PAY1ST_REMEMBERED {
            c.pop_front();
        }
        c.push_back((reference.clone(), gateway_reference.to_owned()));
    }

    async fn remembered(&self, reference: &Reference) -> Option<String> {
        let c = self.created.lock().await;
        c.iter()
            .rev()
            .find(|(r, _)| r == reference)
            .map(|(_, g)| g.clone())
    }

    /// The Pay1st reference to query for `reference`: the given one, else a remembered one.
    async fn key(&self, reference: &Reference, gateway_id: Option<&str>) -> Option<String> {
        match gateway_id {
            Some(g) => Some(g.to_owned()),
            None => self.remembered(reference).await,
        }
    }

    /// Follows a created payment until it is final, at most [`PAY1ST_FOLLOW_POLLS`] queries.
    async fn follow(
        &self,
        req: &AuthorizationRequest,
        gateway_reference: &str,
    ) -> AuthorizationResult {
        let mut wait = self.http.settings().backoff;
        for _ in 0..PAY1ST_FOLLOW_POLLS {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(Duration::from_secs(5));
            match self.lookup(gateway_reference).await {
                (StatusResult::Found(s), Some(p)) if s.state != TxnState::Pending => {
                    return pay1st::payment_result(&p, req)
                }
                (StatusResult::Found(_), _) => {}
                (StatusResult::NotFound, _) => {
                    tracing::warn!(reference = %req.reference, "pay1st: created payment not found by its reference");
                    return AuthorizationResult::Unknown {
                        reason: "pay1st: created payment not found".into(),
                    };
                }
                (StatusResult::Unknown { reason }, _) => {
                    tracing::info!(reference = %req.reference, reason = %reason, "pay1st: status query failed; asking again");
                }
            }
        }
        AuthorizationResult::Unknown {
            reason: "pay1st: payment not final".into(),
        }
    }

    /// A usable access token: the cached one, a refreshed one, or a new one.
    async fn token(&self, rejected: bool) -> Result<Tokens, String> {
        let mut cur = self.tokens.lock().await;
        let now = self.clock.unix_now();
        if let Some(t) = cur.as_ref() {
            if !rejected && now.saturating_sub(t.issued_at) < self.cfg.token_refresh_secs {
                return Ok(t.clone());
            }
            let ex = self
                .http
                .send(&self.cfg.base_url, &pay1st::refresh_request(t))
                .await;
            if let Ok(n) = pay1st::parse_tokens(&ex, now) {
                *cur = Some(n.clone());
                return Ok(n);
            }
            *cur = None;
        }
        let ex = self
            .http
            .send(&self.cfg.base_url, &pay1st::token_request(&self.cfg))
            .await;
        let t = pay1st::parse_tokens(&ex, now)?;
        *cur = Some(t.clone());
        Ok(t)
    }

    /// Signs and sends `req` (fresh timestamp per attempt); on 401 gets a new token once.
    async fn signed_call<T>(
        &self,
        req: &HttpRequest,
        repeatable: bool,
        classify: impl Fn(&Exchange) -> pay1st::Reply<T>,
    ) -> Result<pay1st::Reply<T>, String> {
        let mut rejected = false;
        loop {
            let tok = self.token(rejected).await?;
            let http = pay1st::signed(&self.cfg, &tok.access, self.clock.unix_now(), req.clone());
            let ex = if repeatable {
                self.http
                    .send_idempotent(&self.cfg.base_url, &http, Dialect::Pay1st)
                    .await
            } else {
                self.http.send(&self.cfg.base_url, &http).await
            };
            match classify(&ex) {
                pay1st::Reply::TokenRejected if !rejected => rejected = true,
                other => return Ok(other),
            }
        }
    }

    /// "Query Payment Status" by Pay1st's reference.
    async fn lookup(&self, gateway_reference: &str) -> (StatusResult, Option<pay1st::Payment>) {
        let r = self
            .signed_call(&pay1st::lookup_request(gateway_reference), true, |ex| {
                pay1st::classify_lookup(ex, gateway_reference)
            })
            .await;
        match r {
            Ok(pay1st::Reply::Done(x)) => x,
            Ok(_) => (
                StatusResult::Unknown {
                    reason: "pay1st: lookup refused".into(),
                },
                None,
            ),
            Err(reason) => (StatusResult::Unknown { reason }, None),
        }
    }

    async fn status_of(&self, reference: &Reference, gateway_id: Option<&str>) -> StatusResult {
        match self.key(reference, gateway_id).await {
            Some(g) => self.lookup(&g).await.0,
            None => {
                tracing::warn!(%reference, "{PAY1ST_NO_KEY}");
                StatusResult::Unknown {
                    reason: PAY1ST_NO_KEY.into(),
                }
            }
        }
    }
}

impl ReversalOps for Pay1stGateway {
    const POLICY: ReversalPolicy = ReversalPolicy {
        lookup_first: true,
        confirm_refusal: false,
    };
    async fn lookup(&self, req: &ReversalRequest) -> (StatusResult, Undo) {
        let status = self
            .status_of(&req.reference, req.gateway_id.as_deref())
            .await;
        (
            status,
            Undo::Never {
                reason: PAY1ST_NO_OPS,
            },
        )
    }
    async fn void(&self, _req: &VoidRequest) -> OpResult {
        OpResult::Unsupported {
            reason: PAY1ST_NO_OPS,
        }
    }
    async fn refund(&self, _req: &RefundRequest) -> OpResult {
        OpResult::Unsupported {
            reason: PAY1ST_NO_OPS,
        }
    }
}

impl Gateway for Pay1stGateway {
    fn dialect(&self) -> Dialect {
        Dialect::Pay1st
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizationRequest,
    ) -> BoxFuture<'a, AuthorizationResult> {
        Box::pin(async move {
            let r = match pay1st::create_request(&self.cfg, req) {
                Err(reason) => AuthorizationResult::Unavailable {
                    reason: reason.into(),
                },
                Ok(http) => {
                    // Sent once: a lost reply leaves the Pay1st reference unknown, and a
                    // re-sent partnerReference has no documented answer.
                    match self
                        .signed_call(&http, false, |ex| pay1st::classify_create(ex, req))
                        .await
                    {
                        Err(reason) => AuthorizationResult::Unavailable { reason },
                        Ok(pay1st::Reply::Done(r)) => {
                            if let AuthorizationResult::Approved { gateway_id, .. }
                            | AuthorizationResult::Declined {
                                gateway_id: Some(gateway_id),
                                ..
                            } = &r
                            {
                                self.remember(&req.reference, gateway_id).await;
                            }
                            r
                        }
                        Ok(pay1st::Reply::Pending(gateway_reference)) => {
                            self.remember(&req.reference, &gateway_reference).await;
                            self.follow(req, &gateway_reference).await
                        }
                        Ok(pay1st::Reply::TokenRejected) => AuthorizationResult::Unavailable {
                            reason: "pay1st: token refused".into(),
                        },
                        Ok(pay1st::Reply::Duplicate) => {
                            tracing::warn!(reference = %req.reference, "pay1st: partnerReference already used");
                            AuthorizationResult::Unknown {
                                reason: "pay1st: partnerReference already used; no query by it"
                                    .into(),
                            }
                        }
                    }
                }
            };
            log_auth(Dialect::Pay1st, &req.reference, &r);
            r
        })
    }

    fn capture<'a>(&'a self, _req: &'a CaptureRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            OpResult::Unsupported {
                reason: PAY1ST_NO_OPS,
            }
        })
    }

    fn void<'a>(&'a self, _req: &'a VoidRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            OpResult::Unsupported {
                reason: PAY1ST_NO_OPS,
            }
        })
    }

    fn refund<'a>(&'a self, _req: &'a RefundRequest) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            OpResult::Unsupported {
                reason: PAY1ST_NO_OPS,
            }
        })
    }

    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult> {
        Box::pin(reverse(self, Dialect::Pay1st, req))
    }

    fn status<'a>(
        &'a self,
        reference: &'a Reference,
        gateway_id: Option<&'a str>,
    ) -> BoxFuture<'a, StatusResult> {
        Box::pin(self.status_of(reference, gateway_id))
    }
}
