//! `emvbridge serve`: its arguments, the token file, and the server until SIGTERM or SIGINT
//! (either runs the graceful stop; a second one stops at once).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::auth;
use super::server::{start_with_relay, ApiOptions};
use crate::config::RelayOptions;
use crate::gateway::Dialect;
use crate::terminal::TerminalOptions;
use emvbridge_core::txn::TxnConfig;

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
    /// Gateway dialect. Default: the configured `dialect` (file or `EMVBRIDGE_DIALECT`),
    /// else paymentsai.
    #[arg(long)]
    pub dialect: Option<Dialect>,
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

/// Runs `emvbridge serve` until SIGTERM or SIGINT (a second one stops at once), on the
/// caller's runtime: exit 0 after a graceful stop, 2 on a setup error.
pub async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::telemetry::logging::command_error("serve: cannot start", &format!("{e:#}"));
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use crate::telemetry::service;
    // Installed first: a stop asked for while the reader connects is not lost.
    let mut signals = service::StopSignals::install()?;
    if !super::router::is_loopback(args.listen.ip()) && !args.allow_remote {
        anyhow::bail!(
            "refusing to listen on {}: not a loopback address (pass --allow-remote to expose the payment API)",
            args.listen
        );
    }
    let token_file = args.token_file.unwrap_or_else(auth::default_token_file);
    let (token, created) = auth::load_or_create(&token_file)?;
    let relay = RelayOptions {
        journal: args.journal,
        config: args.config.clone(),
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
                dialect: crate::config::FileConfig::dialect_or_configured(
                    args.dialect,
                    args.config.as_deref(),
                )?,
                config: args.config.clone(),
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
        "listening on http://{} (OpenAPI at /v1/openapi, metrics at /metrics); Ctrl-C or SIGTERM stops",
        server.addr
    );
    tracing::info!(listen = %server.addr, "serving");
    service::notify_ready();
    let signal = tokio::select! {
        s = signals.recv() => s,
        () = service::run_watchdog(|| server.is_alive()) => signals.recv().await,
    };
    tracing::info!(%signal, "stopping: no new transactions; a running one is cancelled and ends definitely");
    eprintln!(
        "stopping ({signal}): a running transaction is cancelled and ends definitely (again: stop now)"
    );
    service::notify_stopping();
    tokio::select! {
        () = server.shutdown() => tracing::info!("stopped"),
        s = signals.recv() => {
            tracing::warn!(signal = %s, "stopped at once: the resolver settles an interrupted transaction at the next start");
            eprintln!("stopped at once: the resolver settles an interrupted transaction at the next start");
        }
    }
    Ok(())
}
