//! `emvbridge report` and `emvbridge resolve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;

use super::relay::Relay;
use super::report;
use crate::config::FileConfig;
use crate::gateway::{Dialect, Gateway};

/// Arguments of `emvbridge report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The journal (default: from --config, else the user's data directory).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// The TOML configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One day, `YYYY-MM-DD`: midnight to midnight in `--tz` (23 or 25 hours when the clocks
    /// change that day).
    #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
    pub date: Option<String>,
    /// Period start: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` (local to `--tz`),
    /// `YYYY-MM-DDTHH:MM:SSZ` (UTC) or Unix seconds.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Period end (exclusive), same forms.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// The zone dates and local times are in: an IANA name (`Europe/Berlin`), `UTC` or an
    /// offset (`+02:00`).
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// JSON instead of a table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
}

/// Arguments of `emvbridge resolve`.
#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    /// The journal (default: from --config, else the user's data directory).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// The TOML configuration (resolver policy, timeouts, environment).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A sandbox gateway URL, or `env` (configured from the environment).
    #[arg(long, default_value = "env")]
    pub gateway: String,
    /// Gateway dialect (rows of other dialects are left alone).
    #[arg(long, default_value = "paymentsai")]
    pub dialect: Dialect,
    /// Leave rows touched more recently than this alone (a sale may be in flight on them).
    #[arg(long)]
    pub min_age_secs: Option<i64>,
    /// Attempts per row before it is escalated.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// HTTP request timeout, ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

fn load(config: &Option<PathBuf>) -> anyhow::Result<FileConfig> {
    Ok(FileConfig::effective(config.as_deref())?)
}

/// Runs `emvbridge report`: exit 0, or 3 when something is unresolved. An error is exit 2.
///
/// # Errors
/// Bad configuration or times, no journal, a journal that cannot be read.
pub fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(&args.config)?;
    let path = args.journal.clone().unwrap_or_else(|| cfg.journal_path());
    if !path.exists() {
        bail!("no journal at {}", path.display());
    }
    let zone = report::Zone::parse(&args.tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    let period = report::Period::parse(
        args.date.as_deref(),
        args.from.as_deref(),
        args.to.as_deref(),
        zone,
    )
    .map_err(|e| match e.what {
        "period" => anyhow::anyhow!("{}", e.reason),
        flag => anyhow::anyhow!("--{flag} {}", e.reason),
    })?;
    let journal = super::Journal::open(&path)?;
    let r = report::build_period(&journal, &period)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if args.csv {
        print!("{}", r.csv());
    } else {
        print!("{}", r.table());
    }
    Ok(if r.unresolved.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Builds the gateway for `spec` (`env` or a sandbox URL).
///
/// # Errors
/// Missing configuration.
pub fn gateway(spec: &str, dialect: Dialect, cfg: &FileConfig) -> anyhow::Result<Arc<dyn Gateway>> {
    let http = cfg.http();
    match spec {
        "env" => {
            let file = match &cfg.secrets_file {
                Some(p) => crate::config::read_secrets_file(p)?,
                None => Default::default(),
            };
            let lookup = crate::config::Lookup::new(cfg, file, true, Default::default());
            let env = cfg
                .environment()
                .unwrap_or(crate::gateway::Environment::Staging);
            Ok(crate::gateway::connect(
                crate::gateway::GatewayConfig::from_lookup(dialect, env, &|n| lookup.get(n))?,
                http,
            )?)
        }
        url if url.starts_with("http://") || url.starts_with("https://") => {
            crate::embedded::sandbox_gateway(dialect, url.trim_end_matches('/'), http)
        }
        other => bail!("--gateway must be env or a sandbox gateway URL, not {other:?}"),
    }
}

/// Runs `emvbridge resolve`: one forwarder and resolver pass. Exit 0 when nothing is left
/// unresolved for this dialect, 3 when rows remain (listed on stderr). An error is exit 2.
///
/// # Errors
/// Bad configuration, a gateway or journal that cannot be set up, a failed pass.
pub async fn run_resolve(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = load(&args.config)?;
    if let Some(ms) = args.timeout_ms {
        cfg.timeouts.request_ms = ms;
    }
    let mut policy = cfg.resolver.clone();
    if let Some(a) = args.min_age_secs {
        policy.min_age_secs = a;
    }
    if let Some(m) = args.max_attempts {
        policy.max_attempts = m;
    }
    let path = args.journal.clone().unwrap_or_else(|| cfg.journal_path());
    let gw = gateway(&args.gateway, args.dialect, &cfg)?;
    let relay = Relay::open(&path, gw, cfg.store_and_forward.clone(), policy)?;
    let pass = relay.pass().await?;
    for (r, s) in &pass.settled {
        println!("settled {r}: {s}");
    }
    let dialect = super::dialect_str(args.dialect);
    let left: Vec<_> = relay
        .journal()
        .unresolved()?
        .into_iter()
        .filter(|e| e.dialect == dialect)
        .collect();
    for e in &left {
        eprintln!(
            "UNRESOLVED {} {} attempts={} {}",
            e.reference,
            e.state,
            e.resolve_attempts,
            e.reason.as_deref().unwrap_or("")
        );
    }
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
