//! The bridge's side of the gateways: the [`Gateway`] trait the transaction engine and the
//! journal talk to, and [`http`], the one edge that sends what the sans-IO dialects of
//! [`emvbridge_core::gateway`] build (reqwest with rustls, timeouts, and retries where — and only
//! where — the dialect's idempotency makes a retry safe). The dialects' vocabulary is re-exported
//! here, so `gateway::Dialect` and `gateway::number` name the core's types.
//!
//! This file only assembles: the trait lives in `adapter`, the clock in `clock`, the HTTP
//! edge in [`http`]; none of them uses this file.

mod adapter;
mod clock;
pub mod http;

pub use adapter::{BoxFuture, Gateway};
pub use clock::{Clock, OffsetClock, SystemClock};
pub use emvbridge_core::gateway::*;

use std::sync::Arc;

/// Builds the adapter for `cfg` with the system clock.
///
/// # Errors
/// [`ConfigError::Client`] when the HTTP client cannot be built.
pub fn connect(
    cfg: GatewayConfig,
    http: http::HttpSettings,
) -> Result<Arc<dyn Gateway>, ConfigError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(match cfg {
        GatewayConfig::Number(c) => Arc::new(http::NumberGateway::new(c, http, clock)?),
        GatewayConfig::PaymentsAi(c) => Arc::new(http::PaiGateway::new(c, http)?),
        GatewayConfig::Pay1st(c) => Arc::new(http::Pay1stGateway::new(c, http, clock)?),
    })
}
