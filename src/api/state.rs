//! What the handlers share while the server runs: the store, the reader and who holds it,
//! the gateway, the transaction running on the reader, the event channel, the requests in
//! flight and the relay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::auth::TokenCheck;
use super::error::ApiError;
use super::store::{Store, TxnRecord};
use crate::driver::{LinkEvent, ReaderLink};
use crate::gateway::Gateway;
use crate::journal::relay::Relay;
use emvbridge_core::txn::TxnConfig;

/// One event for `GET /v1/events`.
#[derive(Clone)]
pub(super) struct ApiEvent {
    pub(super) id: u64,
    pub(super) name: &'static str,
    pub(super) data: String,
}

/// The card transaction running on the reader, and how to cancel it.
pub(super) struct Running {
    pub(super) id: String,
    pub(super) cancel: watch::Sender<bool>,
}

/// Requests in flight by request id: their fingerprint, and a channel that changes when the
/// request is done.
pub(super) type Inflight = HashMap<String, ([u8; 32], watch::Receiver<()>)>;

/// What the last background resolver pass did, for `GET /v1/health`.
#[derive(Clone, serde::Serialize)]
pub(super) struct LastPass {
    /// Unix seconds.
    pub(super) at: u64,
    pub(super) settled: usize,
    pub(super) retry: usize,
    pub(super) escalated: usize,
    pub(super) forward_declined: usize,
    /// API records settled by the pass.
    pub(super) records_settled: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// The relay behind `serve` when journaling is on.
pub(super) struct RelayShared {
    pub(super) relay: Relay,
    pub(super) last_pass: Arc<Mutex<Option<LastPass>>>,
}

pub(super) struct Shared {
    pub(super) store: Arc<dyn Store>,
    pub(super) token: TokenCheck,
    pub(super) link: ReaderLink,
    /// The reader's event stream; whoever holds it owns the reader (one transaction or
    /// device command at a time).
    pub(super) reader: Arc<tokio::sync::Mutex<mpsc::Receiver<LinkEvent>>>,
    pub(super) gateway: Arc<dyn Gateway>,
    pub(super) running: Mutex<Option<Running>>,
    pub(super) events: broadcast::Sender<ApiEvent>,
    /// Set when the server stops: `GET /v1/events` streams end then, so the graceful stop
    /// does not wait on them (a stream never ends by itself).
    pub(super) closing: watch::Sender<bool>,
    pub(super) seq: AtomicU64,
    pub(super) inflight: Mutex<Inflight>,
    pub(super) sale_timeout: Duration,
    pub(super) txn_config: TxnConfig,
    pub(super) simulated: bool,
    /// The embedded simulator's control channel (`/v1/simulator`).
    #[cfg(feature = "sim")]
    pub(super) simulator: Option<emvbridge_sim::transport::DeviceHandle>,
    pub(super) relay: Option<RelayShared>,
}

/// The state every handler and middleware gets.
pub(super) type AppState = Arc<Shared>;

/// Locks `m`, also when a panicking holder poisoned it (the data stays usable).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Sends an event to the `GET /v1/events` subscribers.
    pub(super) fn publish(&self, name: &'static str, data: serde_json::Value) {
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(ApiEvent {
            id,
            name,
            data: data.to_string(),
        });
    }

    /// Whether the reader is the embedded simulator, steerable through `/v1/simulator`.
    pub(super) fn has_simulator(&self) -> bool {
        #[cfg(feature = "sim")]
        {
            self.simulator.is_some()
        }
        #[cfg(not(feature = "sim"))]
        {
            false
        }
    }

    /// The id of the card transaction running on the reader.
    pub(super) fn running_id(&self) -> Option<String> {
        lock(&self.running).as_ref().map(|r| r.id.clone())
    }

    /// The `409 reader_busy` answer.
    pub(super) fn busy(&self) -> ApiError {
        let msg = match self.running_id() {
            Some(id) => format!("the reader is busy with transaction {id}"),
            None => "the reader is busy".into(),
        };
        ApiError::conflict("reader_busy", msg)
    }

    /// The transaction record `id`, or `404 transaction_not_found`.
    pub(super) fn record(&self, id: &str) -> Result<TxnRecord, ApiError> {
        self.store
            .transaction(id)
            .ok_or_else(|| ApiError::not_found(id))
    }
}
