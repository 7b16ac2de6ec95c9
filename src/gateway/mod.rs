//! The bridge's side of the gateways: the [`Gateway`] trait the transaction engine and the
//! journal talk to, and [`http`], the one edge that sends what the sans-IO dialects of
//! [`emvbridge_core::gateway`] build (reqwest with rustls, timeouts, and retries where — and only
//! where — the dialect's idempotency makes a retry safe). The dialects' vocabulary is re-exported
//! here, so `gateway::Dialect` and `gateway::number` name the core's types.

pub mod http;

pub use emvbridge_core::gateway::*;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use emvbridge_core::txn::host::{
    AuthorizationRequest, AuthorizationResult, Reference, ReversalRequest, ReversalResult,
};

/// A boxed, sendable future: the object-safe form of `async fn` in [`Gateway`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The operations the transaction engine needs from a payment host. Object safe: the engine
/// holds an `Arc<dyn Gateway>`. Every method resolves to an outcome value, never an error:
/// a decline, a refusal or an unknown outcome is a result the engine must act on.
pub trait Gateway: Send + Sync {
    /// Which dialect this is.
    fn dialect(&self) -> Dialect;

    /// Online authorization (sale, pre-authorization or refund) from the reader's online data.
    fn authorize<'a>(&'a self, req: &'a AuthorizationRequest)
        -> BoxFuture<'a, AuthorizationResult>;

    /// Captures a pre-authorization (turns it into a sale).
    fn capture<'a>(&'a self, req: &'a CaptureRequest) -> BoxFuture<'a, OpResult>;

    /// Voids (cancels before settlement) a transaction by its gateway id.
    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult>;

    /// Refunds (part of) a settled transaction by its gateway id.
    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult>;

    /// Reverses an authorization that must not stand (card declined after approval, lost
    /// response…). Looks the transaction up first when the gateway id is not known.
    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult>;

    /// Looks a transaction up by the bridge's own reference (the client reference /
    /// idempotency key / partner reference it was sent with).
    fn status<'a>(&'a self, reference: &'a Reference) -> BoxFuture<'a, StatusResult>;
}

/// Builds the adapter for `cfg` with the system clock.
///
/// # Errors
/// [`ConfigError::Client`] when the HTTP client cannot be built.
pub fn connect(cfg: GatewayConfig, http: http::HttpSettings) -> Result<Arc<dyn Gateway>, ConfigError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(match cfg {
        GatewayConfig::Number(c) => Arc::new(http::NumberGateway::new(c, http, clock)?),
        GatewayConfig::PaymentsAi(c) => Arc::new(http::PaiGateway::new(c, http)?),
        GatewayConfig::Pay1st(c) => Arc::new(http::Pay1stGateway::new(c, http, clock)?),
    })
}

// ---------------------------------------------------------------------------------------------
// Wall clock for the edge (session expiry, HMAC epochs, request timestamps)

/// Unix time for the HTTP edge. The sans-IO modules take `now` as an argument instead.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock shifted by an adjustable offset: follows a sandbox's virtual clock in
/// tests (`POST /_sim/clock`).
#[derive(Debug, Clone, Default)]
pub struct OffsetClock(Arc<AtomicI64>);

impl OffsetClock {
    /// A clock at the system time.
    pub fn new() -> OffsetClock {
        OffsetClock::default()
    }
    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn unix_now(&self) -> i64 {
        SystemClock.unix_now() + self.0.load(Ordering::Relaxed)
    }
}
