//! The I/O shell: binds the loopback listener, runs the accept loop and the webhook task, and
//! turns HTTP requests into [`SimRequest`]s for [`crate::dispatch`] and its [`Reply`]s back
//! into HTTP, performing the reply's directive (delay, hang, drop).
//!
//! The server runs its own accept loop (hyper-util) rather than `axum::serve` so that a fault
//! can close *one* connection: each connection carries a `ConnCtl` whose `kill` ends it,
//! which is how `drop` (before the headers) is done without panicking a handler; `drop`
//! mid-body sends the headers with the full `Content-Length` and then a body error, after
//! which hyper aborts the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::SandboxConfig;
use crate::control;
use crate::dispatch;
use crate::exchange::{Reply, SimRequest, SimResponse};
use crate::shared::{deliver_due, ConnCtl, Shared};
use crate::state::SimState;

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The control plane must stay on loopback (gateways.md §4.1).
    #[error("listen address must be a loopback address")]
    NotLoopback,
    /// Bind failed.
    #[error("cannot bind: {0}")]
    Bind(#[from] std::io::Error),
    /// HTTP client for webhooks could not be built.
    #[error("cannot build webhook client")]
    Client,
}

/// A running sandbox.
pub struct SandboxHandle {
    /// The bound address (`127.0.0.1:PORT`).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the state (tests, embedding).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        f(&mut self.shared.state())
    }

    /// Stops accepting, closes every connection (hung ones included) and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the sandbox on `127.0.0.1:0`.
///
/// # Errors
/// [`SpawnError`] when the socket cannot be bound.
pub async fn spawn(cfg: SandboxConfig) -> Result<SandboxHandle, SpawnError> {
    spawn_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts the sandbox on `listen`, which must be a loopback address.
///
/// # Errors
/// [`SpawnError`].
pub async fn spawn_on(cfg: SandboxConfig, listen: SocketAddr) -> Result<SandboxHandle, SpawnError> {
    if !listen.ip().is_loopback() {
        return Err(SpawnError::NotLoopback);
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| SpawnError::Client)?;
    let shared = Arc::new(Shared::new(SimState::new(cfg), http));
    let (stop, stop_rx) = watch::channel(false);
    let router = router(shared.clone());
    let accept = tokio::spawn(accept_loop(listener, router, stop_rx.clone()));
    let hooks = tokio::spawn(webhook_loop(shared.clone(), stop_rx));
    tracing::info!(%addr, "sandbox gateway listening");
    Ok(SandboxHandle {
        addr,
        shared,
        stop,
        tasks: vec![accept, hooks],
    })
}

fn router(shared: Arc<Shared>) -> Router {
    control::routes()
        .fallback(dialect_handler)
        .with_state(shared)
}

async fn accept_loop(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let kill = Arc::new(tokio::sync::Notify::new());
        let app = router.clone().layer(Extension(ConnCtl {
            peer,
            kill: kill.clone(),
        }));
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

async fn webhook_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
        deliver_due(&shared).await;
    }
}

fn to_response(r: SimResponse) -> Response {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    resp
}

async fn dialect_handler(
    State(shared): State<Arc<Shared>>,
    ctl: Option<Extension<ConnCtl>>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let trimmed = path.trim_start_matches('/');
    let (prefix, rest) = trimmed
        .split_once('/')
        .map(|(p, r)| (p, format!("/{r}")))
        .unwrap_or((trimmed, "/".to_owned()));
    if !dispatch::PREFIXES.contains(&prefix) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let limit = shared.state().cfg.max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return to_response(dispatch::too_large(prefix));
    };
    let peer = ctl
        .as_ref()
        .map(|c| c.peer)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let sreq = SimRequest {
        method: parts.method,
        path: rest,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
        peer_ip: peer.ip(),
        host,
    };
    let reply = dispatch::handle(&mut shared.state(), prefix, &sreq);
    shared.wake.notify_one();
    perform(reply, ctl.map(|c| c.0)).await
}

async fn perform(reply: Reply, ctl: Option<ConnCtl>) -> Response {
    match reply {
        Reply::Respond(r) => to_response(r),
        Reply::Delay(ms, r) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            to_response(r)
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            to_response(SimResponse::empty(500))
        }
        Reply::Drop(None) => {
            if let Some(c) = ctl {
                c.kill.notify_one();
            }
            std::future::pending::<()>().await;
            to_response(SimResponse::empty(500))
        }
        Reply::Drop(Some(r)) => {
            let full = r.body.len();
            let half = Bytes::from(r.body.get(..full / 2).unwrap_or_default().to_vec());
            if let Some(c) = ctl {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    c.kill.notify_one();
                });
            }
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::other("connection dropped by fault rule")),
            ];
            let mut resp = Response::new(Body::from_stream(futures::stream::iter(chunks)));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(r.content_type),
            );
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
            resp
        }
    }
}
