//! What the HTTP handlers share: [`Shared`] (the [`SimState`] behind its lock, the webhook
//! wake-up and the webhook HTTP client), the per-connection [`ConnCtl`], and
//! [`deliver_due`], which sends the webhooks the outbox says are due.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::state::SimState;

/// Per-connection control, put into every request's extensions by the accept loop.
#[derive(Clone)]
pub struct ConnCtl {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Notify to close this connection at once (no response).
    pub kill: Arc<Notify>,
}

/// State shared by the handlers and the webhook task.
pub struct Shared {
    state: Mutex<SimState>,
    /// Wakes the webhook task (something may be due).
    pub wake: Notify,
    http: reqwest::Client,
}

impl Shared {
    /// Wraps the state; `http` sends the webhooks.
    pub fn new(state: SimState, http: reqwest::Client) -> Self {
        Shared {
            state: Mutex::new(state),
            wake: Notify::new(),
            http,
        }
    }

    /// Locks the state (a poisoned lock is recovered: the state is plain data).
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends every due webhook, one after the other (order matters for the reorder mode).
pub async fn deliver_due(shared: &Shared) {
    let batch = {
        let mut c = shared.state();
        let now = c.now();
        c.outbox.due(now)
    };
    for o in batch {
        let mut rb = shared.http.post(&o.url).body(o.body.clone());
        for (k, v) in &o.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let res = match rb.send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "connect or transport error".to_owned()
            }),
        };
        let mut c = shared.state();
        let now = c.now();
        c.outbox.record(o.id, now, res);
    }
}
