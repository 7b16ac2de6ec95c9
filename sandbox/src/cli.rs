//! `emvbridge sandbox-gateway`: runs the sandbox and prints `{"listen":"127.0.0.1:PORT"}` as the
//! first line of standard output once it accepts connections.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::io::AsyncReadExt as _;

use crate::config::SandboxConfig;

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Arguments of `emvbridge sandbox-gateway`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed for ids, keys and auth codes (overrides the config file).
    #[arg(long)]
    pub seed: Option<u64>,
    /// TOML configuration (credentials, limits); defaults are the published test credentials.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep running when standard input closes (default: stop, so a parent can end us).
    #[arg(long)]
    pub ignore_stdin: bool,
}

fn load(args: &Args) -> Result<SandboxConfig, String> {
    let mut cfg = match &args.config {
        Some(p) => {
            let meta = std::fs::metadata(p).map_err(|e| format!("cannot read config: {e}"))?;
            if meta.len() > MAX_CONFIG_BYTES {
                return Err("config file too large".into());
            }
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("cannot read config: {e}"))?;
            SandboxConfig::from_toml(&text).map_err(|e| e.to_string())?
        }
        None => SandboxConfig::default(),
    };
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    Ok(cfg)
}

/// Runs until killed, Ctrl-C, or (unless `--ignore-stdin`) standard input closes, on the
/// caller's runtime.
pub async fn run(args: Args) -> ExitCode {
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sandbox-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let gw = match crate::server::spawn_on(cfg, args.listen).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sandbox-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = serde_json::json!({"listen": gw.addr.to_string()}).to_string();
    let mut out = std::io::stdout();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    let stdin_closed = async {
        if args.ignore_stdin {
            std::future::pending::<()>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    gw.shutdown().await;
    ExitCode::SUCCESS
}
