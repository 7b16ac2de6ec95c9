//! The pieces every front end (`sale`, `serve`, `demo`) sets up the same way: the reader (a
//! real one at `--device`, or the embedded simulator served over TCP on loopback), the
//! gateway (the in-process sandbox, a sandbox URL, or a real gateway from the environment),
//! the reader link, transaction references and prompt wording.
//!
//! The embedded defaults are announced by the caller (see [`Terminal::notes`]), so nobody
//! mistakes the simulator or the sandbox for a real payment.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::sync::mpsc;

use crate::driver::{AddrConnector, DeviceAddr, LineSettings, LinkConfig, LinkEvent, ReaderLink};
use crate::embedded::{SandboxHandle, SimDevice};
use crate::gateway::http::HttpSettings;
use crate::gateway::{Dialect, Environment, Gateway, GatewayConfig};
use emvbridge_core::txn::Reference;
use emvbridge_protocol::vipa::DeviceInfo;

/// Where the reader and the gateway are; `None`/`"sandbox"` are the embedded defaults.
#[derive(Debug, Clone)]
pub struct TerminalOptions {
    /// A serial device or `tcp://HOST:PORT`; `None` starts the simulator.
    pub device: Option<String>,
    /// Serial baud rate.
    pub baud: u32,
    /// The simulator's card (no `device`).
    pub card: String,
    /// `sandbox`, a sandbox gateway URL, or `env`.
    pub gateway: String,
    /// Gateway dialect.
    pub dialect: Dialect,
    /// The configuration file (`--config`); the effective configuration (see
    /// [`crate::config::Layered`]) sets up a gateway from the environment and the client
    /// timeouts of every gateway.
    pub config: Option<std::path::PathBuf>,
}

impl Default for TerminalOptions {
    fn default() -> Self {
        TerminalOptions {
            device: None,
            baud: 57_600,
            card: "visa-cvn18".into(),
            gateway: "sandbox".into(),
            dialect: Dialect::PaymentsAi,
            config: None,
        }
    }
}

/// A connected reader and a gateway, with whatever embedded parts they needed.
pub struct Terminal {
    /// The reader link.
    pub link: ReaderLink,
    /// Its event stream (the transaction engine drains it).
    pub events: mpsc::Receiver<LinkEvent>,
    /// What the reader said when the link came up.
    pub info: Arc<DeviceInfo>,
    /// The gateway.
    pub gateway: Arc<dyn Gateway>,
    /// The embedded simulator, when no device was given.
    pub sim: Option<SimDevice>,
    /// The in-process sandbox gateway, when `gateway` was `sandbox`.
    pub sandbox: Option<SandboxHandle>,
    /// What was set up implicitly, one line each (`using the simulated reader …`).
    pub notes: Vec<String>,
}

impl Terminal {
    /// Sets up the reader and the gateway and waits (15 s at most) for the reader.
    ///
    /// # Errors
    /// Bad options, an unknown card, a sandbox that cannot start, a reader that does not
    /// become ready.
    pub async fn open(opts: &TerminalOptions) -> anyhow::Result<Terminal> {
        let mut notes = Vec::new();
        let mut sim = None;
        let addr: DeviceAddr = match &opts.device {
            Some(d) => d.parse().map_err(|e| anyhow!("{e}"))?,
            None => {
                let dev = SimDevice::start(&opts.card).await?;
                notes.push(format!(
                    "no --device given: using the simulated reader (card {}) on {}",
                    opts.card, dev.addr
                ));
                let a = dev.addr.clone();
                sim = Some(dev);
                a
            }
        };
        let (gateway, sandbox) = open_gateway_configured(
            &opts.gateway,
            opts.dialect,
            opts.config.as_deref(),
            &mut notes,
        )
        .await?;
        let (link, events, info) = connect(addr, opts.baud).await?;
        Ok(Terminal {
            link,
            events,
            info,
            gateway,
            sim,
            sandbox,
            notes,
        })
    }

    /// The reader model from the Reset answer (`UX300`), or `reader`.
    pub fn model(&self) -> String {
        self.info
            .devices
            .first()
            .and_then(|d| d.model.clone())
            .unwrap_or_else(|| "reader".into())
    }

    /// Stops the link (the simulator and sandbox stop when dropped / shut down).
    pub async fn shutdown(self) {
        self.link.shutdown().await;
        if let Some(s) = self.sandbox {
            s.shutdown().await;
        }
    }
}

/// The gateway named by `spec` (`sandbox`, `env` or a sandbox URL), with the effective
/// configuration without a `--config` file (see [`open_gateway_configured`]).
///
/// # Errors
/// Bad spec, missing environment configuration, a sandbox that cannot start.
pub async fn open_gateway(
    spec: &str,
    dialect: Dialect,
    notes: &mut Vec<String>,
) -> anyhow::Result<(Arc<dyn Gateway>, Option<SandboxHandle>)> {
    open_gateway_configured(spec, dialect, None, notes).await
}

/// The gateway named by `spec` under the effective configuration of `config`: `env` is the
/// configured `environment` (staging when absent), with `base_url`, the `secrets_file` and
/// the process environment (as `preflight` and `resolve` read them); every gateway gets the
/// configured client timeouts.
///
/// # Errors
/// Bad spec or configuration, missing variables, a sandbox that cannot start.
pub async fn open_gateway_configured(
    spec: &str,
    dialect: Dialect,
    config: Option<&std::path::Path>,
    notes: &mut Vec<String>,
) -> anyhow::Result<(Arc<dyn Gateway>, Option<SandboxHandle>)> {
    let cfg = crate::config::FileConfig::effective(config)?;
    let http: HttpSettings = cfg.http();
    Ok(match spec {
        "sandbox" => {
            let gw = crate::embedded::start_sandbox().await?;
            notes.push(format!(
                "using the in-process sandbox gateway ({dialect} dialect) at {}",
                gw.url()
            ));
            let g = crate::embedded::sandbox_gateway(dialect, &gw.url(), http)?;
            (g, Some(gw))
        }
        "env" => {
            let gw = cfg.gateway_config(dialect)?;
            let env = cfg.environment().unwrap_or(Environment::Staging);
            tracing::info!(%dialect, environment = ?env, base_url = %base_url(&gw), "gateway from the configuration");
            notes.push(format!(
                "gateway {dialect} ({}) at {}",
                format!("{env:?}").to_ascii_lowercase(),
                base_url(&gw)
            ));
            (
                crate::gateway::connect(gw, http).map_err(|e| anyhow!("{e}"))?,
                None,
            )
        }
        url if url.starts_with("http://") || url.starts_with("https://") => (
            crate::embedded::sandbox_gateway(dialect, url.trim_end_matches('/'), http)?,
            None,
        ),
        other => bail!("--gateway must be sandbox, env or a sandbox gateway URL, not {other:?}"),
    })
}

/// The URL a gateway configuration talks to.
fn base_url(gw: &GatewayConfig) -> &str {
    match gw {
        GatewayConfig::Number(c) => &c.base_url,
        GatewayConfig::PaymentsAi(c) => &c.base_url,
        GatewayConfig::Pay1st(c) => &c.base_url,
    }
}

/// Opens the reader link and waits (15 s at most) for the reader to answer Reset.
///
/// # Errors
/// The reader did not become ready.
pub async fn connect(
    addr: DeviceAddr,
    baud: u32,
) -> anyhow::Result<(ReaderLink, mpsc::Receiver<LinkEvent>, Arc<DeviceInfo>)> {
    let connector = AddrConnector::new(
        addr,
        LineSettings {
            baud,
            ..LineSettings::default()
        },
    );
    let link_config = LinkConfig {
        max_connect_attempts: Some(5),
        ..LinkConfig::default()
    };
    let (link, events) = ReaderLink::spawn(connector, link_config);
    let info = link
        .wait_ready(Duration::from_secs(15))
        .await
        .context("the reader did not become ready")?;
    Ok((link, events, info))
}

/// A fresh transaction reference (`emvb-<hex nanos><hex random>`): unique per process and
/// across restarts, printable ASCII, well under the 64-byte limit.
pub fn new_reference() -> Reference {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let r: u16 = rand::random();
    Reference(format!("emvb-{nanos:x}{r:04x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_unique_and_printable() {
        let a = new_reference();
        let b = new_reference();
        assert_ne!(a, b);
        assert!(a.0.starts_with("emvb-") && a.0.len() <= 64);
        assert!(a.0.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    }

    #[tokio::test]
    async fn unknown_card_is_refused() {
        let e = SimDevice::start("no-such-card")
            .await
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("unknown card profile"));
    }
}
