//! The `emvbridge` command: CLI (clap), the tokio runtime, and dispatch; nothing else. The
//! commands are in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "emvbridge",
    version,
    about = "EMV terminal bridge for Verifone VIPA card readers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode BER-TLV or VIPA frames given as hex (arguments or standard input).
    Decode(emvbridge::decode::DecodeArgs),
    /// EMV cryptogram lab tools (ARQC, ARPC) with the simulator's test-key cryptography.
    #[cfg(feature = "sim")]
    #[command(subcommand)]
    Crypto(emvbridge::cryptogram::CryptoCommand),
    /// Run the sandbox payment gateway (Number, PaymentsAI, Pay1st dialects) on loopback.
    #[cfg(feature = "sim")]
    SandboxGateway(emvbridge_sandbox::cli::Args),
    /// Talk to a VIPA reader (serial path or tcp://HOST:PORT): `device info`.
    #[command(subcommand)]
    Device(emvbridge::driver::cli::DeviceCommand),
    /// Run one card-present sale (simulated reader and sandbox gateway unless told otherwise).
    Sale(emvbridge::sale::SaleArgs),
    /// Run the local POS API (HTTP/JSON on 127.0.0.1; simulated reader unless --device).
    Serve(emvbridge::api::ServeArgs),
    /// Scripted sales on the simulated reader and sandbox gateway, with prompts and receipts.
    #[cfg(feature = "sim")]
    Demo(emvbridge::demo::DemoArgs),
    /// Relay configuration: `config check` says what is missing, without printing secrets.
    #[command(subcommand)]
    Config(emvbridge::config::ConfigCommand),
    /// Reconciliation report from the journal: counts and totals by outcome and gateway.
    Report(emvbridge::journal::cli::ReportArgs),
    /// One resolver pass: settle unknown outcomes, due reversals, stored sales.
    Resolve(emvbridge::journal::cli::ResolveArgs),
    /// Run the webhook receiver (PAI, Pay1st) that updates the journal.
    Webhooks(emvbridge::webhooks::WebhookArgs),
    /// Lab mode: N simulated readers against the sandbox gateway at once, with figures.
    #[cfg(feature = "sim")]
    Lab(emvbridge::lab::LabArgs),
    /// Resilience soak: N real `sale` processes with seeded SIGKILLs, reader and gateway
    /// faults against one sandbox gateway; checks journal, ledger and no orphans at the end.
    #[cfg(feature = "sim")]
    Soak(emvbridge::soak::SoakArgs),
    /// Go-live key tools: `keys exchange --gateway paymentsai` (temporal → permanent API key).
    #[command(subcommand)]
    Keys(emvbridge::keys::KeysCommand),
    /// Go-live checklist against the configured environment: credentials, gateway, webhooks,
    /// sandbox scenarios, journal; pass/fail per item, exit 0 only when all pass.
    Preflight(emvbridge::preflight::PreflightArgs),
    /// Lab commands of a build with the `sim` feature (demo, lab, soak, crypto,
    /// sandbox-gateway): this till build has no simulated reader or sandbox gateway.
    #[cfg(not(feature = "sim"))]
    #[command(external_subcommand)]
    SimOnly(Vec<String>),
}

/// The commands that only a build with the `sim` feature has.
#[cfg(not(feature = "sim"))]
const SIM_COMMANDS: [&str; 5] = ["demo", "lab", "soak", "crypto", "sandbox-gateway"];

/// Parses the command line and runs the command on the one runtime of the process.
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs only when asked for (`RUST_LOG=debug`), on stderr: stdout carries `--json` output.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads(&cli.command) {
        runtime.worker_threads(n);
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(dispatch(cli.command)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// Worker threads of the runtime: two carry a sale, a server or a tool; `lab` drives many
/// simulated lanes at once and takes the runtime's default, one per core.
fn worker_threads(command: &Command) -> Option<usize> {
    match command {
        #[cfg(feature = "sim")]
        Command::Lab(_) => None,
        _ => Some(2),
    }
}

/// The exit code of a command that reports its own codes and leaves errors to the caller:
/// the error on standard error and exit 2 (usage, configuration, setup).
fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

/// Runs one command. Each says what its exit codes mean (`sale`: 0 approved, 1 not approved;
/// `preflight`: 0 only when every item passed; …); `decode`, `crypto`, `config` and `report`
/// are synchronous and just called.
async fn dispatch(command: Command) -> ExitCode {
    use emvbridge::{api, config, decode, driver, journal, keys, preflight, sale, webhooks};
    match command {
        Command::Decode(args) => decode::run(args),
        #[cfg(feature = "sim")]
        Command::Crypto(cmd) => emvbridge::cryptogram::run(cmd),
        #[cfg(feature = "sim")]
        Command::SandboxGateway(args) => emvbridge_sandbox::cli::run(args).await,
        Command::Device(cmd) => driver::cli::run(cmd).await,
        Command::Sale(args) => exit_code(sale::run(args).await),
        Command::Serve(args) => api::run(args).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => exit_code(emvbridge::demo::run(args).await),
        Command::Config(cmd) => config::run(cmd),
        Command::Report(args) => exit_code(journal::cli::run_report(args)),
        Command::Resolve(args) => exit_code(journal::cli::run_resolve(args).await),
        Command::Webhooks(args) => exit_code(webhooks::run(args).await),
        #[cfg(feature = "sim")]
        Command::Lab(args) => exit_code(emvbridge::lab::run(args).await),
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Preflight(args) => preflight::run(args).await,
        #[cfg(feature = "sim")]
        Command::Soak(args) => exit_code(emvbridge::soak::run(args).await),
        #[cfg(not(feature = "sim"))]
        Command::SimOnly(args) => {
            let name = args.first().map(String::as_str).unwrap_or_default();
            if SIM_COMMANDS.contains(&name) {
                eprintln!(
                    "error: `{name}` needs the simulated reader and the sandbox gateway, which this \
                     build leaves out; build with the `sim` feature (the default): \
                     cargo build --release --features sim"
                );
            } else {
                eprintln!("error: unrecognized subcommand '{name}' (see --help)");
            }
            ExitCode::from(2)
        }
    }
}
