//! `emvbridge sale`: one card-present sale from the command line, with prompts as they happen
//! and an EMV receipt.
//!
//! With no `--device`, a simulated reader (`emvbridge_sim`) is started in-process and reached
//! over a real TCP socket on loopback; with `--gateway sandbox` (the default) the sandbox
//! gateway is started in-process on loopback with its test credentials. Both are announced on
//! standard error, so nobody mistakes the embedded default for a real payment.

use std::process::ExitCode;
use std::sync::Arc;

use crate::gateway::Dialect;
use emvbridge_core::money::Money;
use emvbridge_core::txn::{AppChoice, AuthKind, OutcomeStatus, Reference, TxnConfig, TxnRequest};

/// Arguments of `emvbridge sale`.
#[derive(clap::Args, Debug)]
pub struct SaleArgs {
    /// Amount in major units as printed on the till (`12.34`).
    #[arg(long)]
    pub amount: String,
    /// ISO 4217 currency (alphabetic or numeric).
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// The reader: a serial device (`/dev/ttyUSB0`, `/dev/pts/3`) or `tcp://HOST:PORT`.
    /// Without it, a simulated reader runs in-process.
    #[arg(long)]
    pub device: Option<String>,
    /// Serial baud rate (USB CDC readers ignore it).
    #[arg(long, default_value_t = 57_600)]
    pub baud: u32,
    /// The simulated card (with no --device): a profile of `vipa-sim --list-cards`.
    #[arg(long, default_value = "visa-cvn18")]
    pub card: String,
    /// How the simulated cardholder presents the card once the reader is armed (with no
    /// --device): `insert`, `tap`, `tap-msd` or `swipe` (a swiped chip card is refused
    /// with "use chip" and then inserted).
    #[arg(long, default_value = "insert", value_name = "HOW")]
    pub present: String,
    /// The logged reader the simulated one behaves like (with no --device): `generic`,
    /// `ux300`, `ux301`, `m400` (Card Status answered unsolicited only) or `p400`.
    #[arg(long, default_value = "generic", value_name = "MODEL")]
    pub sim_device: String,
    /// `sandbox` (in-process sandbox gateway), a sandbox gateway's URL (`http://127.0.0.1:PORT`),
    /// or `env` (a real gateway configured by environment variables; see `emvbridge config`).
    #[arg(long, default_value = "sandbox")]
    pub gateway: String,
    /// Gateway dialect. Default: the configured `dialect` (file or `EMVBRIDGE_DIALECT`),
    /// else paymentsai.
    #[arg(long)]
    pub dialect: Option<Dialect>,
    /// The bridge's reference for this sale (idempotency key); generated when absent.
    #[arg(long)]
    pub reference: Option<String>,
    /// Print the outcome and receipt as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The relay journal (SQLite). Default: the configured or user-data-dir journal with
    /// `--gateway env`; none with the sandbox unless given.
    #[arg(long)]
    pub journal: Option<std::path::PathBuf>,
    /// Relay configuration (TOML): journal path, store-and-forward limits, resolver policy.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Record the reader session (JSON lines, card data masked) for `vipa-sim --replay FILE`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Faults of the embedded simulated reader (no --device), as `vipa-sim --faults`
    /// (`flip=0.001,drop=0.001,dup=0.01,split,corrupt-lrc=0.02,stall-after=9,reboot-at=e4`).
    #[arg(long, value_name = "SPEC")]
    pub sim_faults: Option<String>,
    /// Seed of the embedded simulator's faults and unpredictable numbers.
    #[arg(long, default_value_t = 1)]
    pub sim_seed: u64,
    /// Whole-request timeout of the gateway client, ms, for a sandbox URL (default: the
    /// configuration's `[timeouts] request_ms`, else 30 s).
    #[arg(long, value_name = "MS")]
    pub gateway_timeout_ms: Option<u64>,
    /// How long to wait for the card (and the cardholder), seconds. A reader message lost
    /// on the line is only noticed when this runs out.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub card_timeout_secs: u64,
    /// How long to wait for the card's final answer after the gateway's, seconds (a lost
    /// final answer ends in a reversal after this).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub final_timeout_secs: u64,
}

/// Tells the simulated reader how its cardholder presents the card once armed.
#[cfg(feature = "sim")]
async fn present(args: &SaleArgs, sim: &crate::embedded::SimDevice) -> anyhow::Result<()> {
    use emvbridge_sim::reader::Control;
    sim.handle
        .control(Control::Present {
            how: args.present.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("--present: {e}"))?;
    sim.handle
        .control(Control::Device {
            model: args.sim_device.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("--sim-device: {e}"))?;
    Ok(())
}

/// Runs `emvbridge sale`: exit 0 when approved, 1 when not approved. An error is a usage or
/// setup error (exit 2).
///
/// # Errors
/// Bad arguments, a reader, gateway or journal that cannot be set up.
pub async fn run(args: SaleArgs) -> anyhow::Result<ExitCode> {
    Ok(if sale(args).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn sale(args: SaleArgs) -> anyhow::Result<bool> {
    let amount = Money::parse_major(&args.amount, &args.currency)?;
    let dialect =
        crate::config::FileConfig::dialect_or_configured(args.dialect, args.config.as_deref())?;
    // A faulty embedded reader is started here and reached like a device.
    // So is one whose cardholder taps or swipes (told before the link arms the reader).
    let custom_sim =
        args.sim_faults.is_some() || args.present != "insert" || args.sim_device != "generic";
    let faulty_sim: Option<crate::embedded::SimDevice> = match (&args.sim_faults, &args.device) {
        #[cfg(feature = "sim")]
        (_, None) if custom_sim => {
            let spec = args.sim_faults.clone().unwrap_or_default();
            let plan: emvbridge_sim::faults::FaultPlan = spec
                .parse()
                .map_err(|e| anyhow::anyhow!("--sim-faults: {e}"))?;
            let dev =
                crate::embedded::SimDevice::start_with(&args.card, plan, args.sim_seed).await?;
            present(&args, &dev).await?;
            eprintln!(
                "note: simulated reader (card {}, {}) with faults {spec:?} on {}",
                args.card, args.present, dev.addr
            );
            Some(dev)
        }
        (Some(_), Some(_)) => anyhow::bail!("--sim-faults applies to the simulated reader only"),
        (None, Some(_)) if custom_sim => {
            anyhow::bail!("--present and --sim-device apply to the simulated reader only")
        }
        #[cfg(not(feature = "sim"))]
        (_, None) if custom_sim => anyhow::bail!(
            "--sim-faults applies to the simulated reader, which this build leaves out \
             (build with the `sim` feature)"
        ),
        _ => None,
    };
    let opts = crate::terminal::TerminalOptions {
        device: args
            .device
            .clone()
            .or_else(|| faulty_sim.as_ref().map(|d| d.addr.to_string())),
        baud: args.baud,
        card: args.card.clone(),
        gateway: args.gateway.clone(),
        dialect,
        config: args.config.clone(),
    };
    let terminal = match &args.record {
        Some(path) => crate::record::open_terminal(&opts, path).await?,
        None => crate::terminal::Terminal::open(&opts).await?,
    };
    for note in &terminal.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "reader: {} (terminal {})",
        terminal.model(),
        terminal.info.terminal_id.as_deref().unwrap_or("?")
    );
    let (link, mut events, gateway) = (
        terminal.link.clone(),
        terminal.events,
        terminal.gateway.clone(),
    );
    let (_sim, _sandbox, _faulty_sim) = (terminal.sim, terminal.sandbox, faulty_sim);
    // A sandbox URL gets the configured (or given) client timeouts: `Terminal::open` builds
    // its gateway with the defaults (30 s), which a hanging gateway turns into a long sale.
    let gateway = match args.gateway.as_str() {
        url if (url.starts_with("http://") || url.starts_with("https://"))
            && (args.config.is_some() || args.gateway_timeout_ms.is_some()) =>
        {
            let mut http = crate::config::FileConfig::effective(args.config.as_deref())?.http();
            if let Some(ms) = args.gateway_timeout_ms {
                http.request_timeout = std::time::Duration::from_millis(ms.max(1));
            }
            crate::embedded::sandbox_gateway(dialect, url.trim_end_matches('/'), http)?
        }
        _ => gateway,
    };
    // The relay: journal every authorization, resolve what an earlier run left open, and
    // decide store-and-forward from the merchant's limits.
    let relay = crate::config::RelayOptions {
        journal: args.journal.clone(),
        config: args.config.clone(),
    }
    .open(&args.gateway, gateway.clone())
    .await?;
    let gateway: Arc<dyn crate::gateway::Gateway> = match &relay {
        Some(r) => r.gateway.clone(),
        None => gateway,
    };
    let base = TxnConfig {
        card_timeout: std::time::Duration::from_secs(args.card_timeout_secs),
        final_timeout: std::time::Duration::from_secs(args.final_timeout_secs),
        ..TxnConfig::default()
    };
    let txn_config = match &relay {
        Some(r) => r.txn_config(base, AuthKind::Sale, amount),
        None => base,
    };
    let (date, time) = crate::engine::utc_date_time(std::time::SystemTime::now());
    let reference = args
        .reference
        .clone()
        .map(Reference)
        .unwrap_or_else(crate::terminal::new_reference);
    let req = TxnRequest {
        reference,
        kind: AuthKind::Sale,
        amount,
        amount_other: 0,
        date,
        time,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
        pos_reference: None,
    };
    let json = args.json;
    let outcome =
        crate::engine::run_transaction(&link, &mut events, gateway, req, txn_config, |p| {
            if !json {
                eprintln!("  [{}]", emvbridge_core::prompt::text(p));
            }
        })
        .await?;
    if let Some(r) = &relay {
        if let Err(e) = r.finish(&outcome) {
            eprintln!("WARNING: outcome not journaled: {e}");
        }
    }
    link.shutdown().await;
    if json {
        println!("{}", emvbridge_core::receipt::json(&outcome));
    } else {
        println!(
            "{}",
            emvbridge_core::receipt::text(&outcome, "MERCHANT COPY")
        );
        println!(
            "{}",
            emvbridge_core::receipt::text(&outcome, "CUSTOMER COPY")
        );
        if let Some(reason) = &outcome.reason {
            println!("reason: {reason}");
        }
    }
    Ok(matches!(
        outcome.status,
        OutcomeStatus::Approved | OutcomeStatus::PartiallyApproved | OutcomeStatus::ApprovedOffline
    ))
}
