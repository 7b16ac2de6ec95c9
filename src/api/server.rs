//! The server: sets up the reader, the gateway and, with journaling on, the relay in front of
//! the gateway and its background resolver; binds, serves in a task, and shuts down so that
//! a running card transaction ends definitely.
//!
//! Connections are served by hyper's HTTP/1 server with a header read timeout
//! (`[api] header_timeout_ms`, [`crate::config::ApiSettings`], 30 s by default), which also bounds how long an idle
//! keep-alive connection is kept: a client that connects and sends nothing, or stops half-way
//! through its headers, is disconnected (hyper closes the connection without an answer).
//! Bodies have their own timeout (`[api] body_timeout_ms`, 30 s by default),
//! answered `408 body_timeout`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::auth::TokenCheck;
use super::router::{is_loopback, router};
use super::state::{lock, ApiEvent, AppState, LastPass, RelayShared, Shared};
use super::store::{self, MemoryStore, Store};
use crate::config::RelayOptions;
use crate::driver::ReaderLink;
use crate::embedded::{SandboxHandle, SimDevice};
use crate::gateway::Gateway;
use crate::journal::resolver::PassReport;
use crate::terminal::{Terminal, TerminalOptions};
use emvbridge_core::txn::TxnConfig;

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

    /// Whether the server still serves: its accept loop runs and the reader link task has not
    /// given up (the watchdog's test of life).
    pub fn is_alive(&self) -> bool {
        !self.task.is_finished()
            && !matches!(self.link.state(), crate::driver::LinkState::Closed { .. })
    }

    /// The journal, when journaling is on.
    pub fn journal(&self) -> Option<&Arc<crate::journal::Journal>> {
        self.state.relay.as_ref().map(|r| r.relay.journal())
    }

    /// Stops accepting; a card transaction still running is cancelled and allowed to end
    /// definitely (cancelled, or reversed if the host had approved — the engine decides),
    /// waiting up to [`SHUTDOWN_GRACE`]; then the event streams end (after that transaction's
    /// `transaction.finished`), and the background resolver and the link stop.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let mut cancelled = None;
        {
            let running = lock(&self.state.running);
            if let Some(r) = running.as_ref() {
                tracing::info!(transaction = %r.id, "shutdown: cancelling the running transaction");
                // Subscribed before the cancel: its finished event cannot be missed.
                cancelled = Some((r.id.clone(), self.state.events.subscribe()));
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
        if let Some((id, rx)) = cancelled {
            // Published right after the reader is released: bounded only against a task
            // that died in between.
            let _ = tokio::time::timeout(Duration::from_secs(5), finished(rx, &id)).await;
        }
        let _ = self.state.closing.send(true);
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

/// Waits for the `transaction.finished` event of transaction `id` (or the channel's end).
async fn finished(mut rx: broadcast::Receiver<ApiEvent>, id: &str) {
    loop {
        match rx.recv().await {
            Ok(ev) if ev.name == "transaction.finished" => {
                let of = serde_json::from_str::<serde_json::Value>(&ev.data)
                    .is_ok_and(|v| v["transaction_id"] == id);
                if of {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
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
    if !is_loopback(opts.listen.ip()) {
        if !opts.allow_remote {
            anyhow::bail!(
                "refusing to listen on {}: not a loopback address (pass --allow-remote to expose the payment API)",
                opts.listen
            );
        }
        tracing::warn!(
            listen = %opts.listen,
            "--allow-remote: the payment API and its bearer token are exposed beyond this machine; \
             put it behind TLS and a firewall"
        );
    }
    // One read of the configuration (defaults without a file) for the relay and the API.
    let (cfg, journal_path) = relay.resolve(&opts.terminal.gateway)?;
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
    let relay = RelayOptions::open_resolved(&cfg, journal_path, gateway.clone()).await?;
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
        closing: watch::channel(false).0,
        seq: AtomicU64::new(1),
        inflight: Mutex::new(HashMap::new()),
        sale_timeout: opts.sale_timeout,
        txn_config: opts.txn_config,
        simulated: sim.is_some(),
        #[cfg(feature = "sim")]
        simulator: sim.as_ref().map(|d| d.handle.clone()),
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
    let app = router(state.clone(), addr, cfg.api.body_timeout());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(accept_loop(
        listener,
        app,
        cfg.api.header_timeout(),
        stop_rx,
    ));
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

/// Accepts connections until `stop`, serving each in its own task with `header_timeout`;
/// at `stop`, open connections finish the request they are on and close, and the loop waits
/// (up to 5 s) for them.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let (closing_tx, closing) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let svc = TowerToHyperService::new(app.clone());
        let mut closing = closing.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
        // Reap finished connections so the set stays as large as what is open.
        while conns.try_join_next().is_some() {}
    }
    let _ = closing_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
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

#[cfg(all(test, feature = "sim"))]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::{start, ApiOptions};
    use crate::terminal::TerminalOptions;
    use emvbridge_core::txn::TxnConfig;

    const TOKEN: &str = "events-test-token-0123456789abcdef0123456789";

    /// Reads the stream until the server ends it: the events (name, data), and whether it
    /// ended cleanly (the response complete) rather than cut.
    async fn read_to_end(mut r: reqwest::Response) -> (Vec<(String, Value)>, bool) {
        let mut out = Vec::new();
        let mut buf = String::new();
        loop {
            match r.chunk().await {
                Ok(Some(c)) => buf.push_str(&String::from_utf8_lossy(&c)),
                Ok(None) => return (out, true),
                Err(_) => return (out, false),
            }
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !name.is_empty() {
                    out.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_ends_with_the_server_after_the_cancelled_sale_finished() {
        let s = start(ApiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow_remote: false,
            token: TOKEN.into(),
            terminal: TerminalOptions::default(),
            sale_timeout: Duration::from_secs(30),
            txn_config: TxnConfig::default(),
        })
        .await
        .unwrap();
        let base = format!("http://{}", s.addr);
        let http = reqwest::Client::new();
        // No card comes: the sale waits for one until the stop cancels it.
        let r = http
            .put(format!("{base}/v1/simulator/auto"))
            .bearer_auth(TOKEN)
            .json(&json!({"insert": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let events = http
            .get(format!("{base}/v1/events"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let r = http
            .post(format!("{base}/v1/sales"))
            .bearer_auth(TOKEN)
            .header("idempotency-key", "events-stop-1")
            .header("prefer", "respond-async")
            .json(&json!({"amount": 100, "currency": "USD"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let reading = tokio::spawn(read_to_end(events));
        s.shutdown().await;
        let (got, clean) = tokio::time::timeout(Duration::from_secs(60), reading)
            .await
            .expect("the stream ends")
            .unwrap();
        assert!(clean, "the server ended the stream, not cut it: {got:?}");
        let (name, last) = got.last().expect("events");
        assert_eq!(name, "transaction.finished", "{got:?}");
        assert_eq!(
            (&last["transaction_id"], &last["status"]),
            (&json!(id), &json!("cancelled")),
            "{got:?}"
        );
    }
}
