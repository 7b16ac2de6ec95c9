//! The `emvbridge` command: CLI parsing, tracing set-up and the runtime; the work is in the library.

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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => emvbridge::decode::run(args),
        #[cfg(feature = "sim")]
        Command::Crypto(cmd) => emvbridge::cryptogram::run(cmd),
        #[cfg(feature = "sim")]
        Command::SandboxGateway(args) => emvbridge_sandbox::cli::run(args),
        Command::Device(cmd) => emvbridge::driver::cli::run(cmd),
        Command::Sale(args) => emvbridge::sale::run(args),
        Command::Serve(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(emvbridge::api::run(args)),
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                std::process::ExitCode::from(2)
            }
        },
        #[cfg(feature = "sim")]
        Command::Demo(args) => emvbridge::demo::run(args),
        Command::Config(cmd) => emvbridge::config::run(cmd),
        Command::Report(args) => emvbridge::journal::cli::run_report(args),
        Command::Resolve(args) => emvbridge::journal::cli::run_resolve(args),
        Command::Webhooks(args) => emvbridge::webhooks::run(args),
        #[cfg(feature = "sim")]
        Command::Lab(args) => emvbridge::lab::run(args),
        Command::Keys(cmd) => emvbridge::keys::run(cmd),
        Command::Preflight(args) => emvbridge::preflight::run(args),
        #[cfg(feature = "sim")]
        Command::Soak(args) => emvbridge::soak::run_cli(args),
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
            std::process::ExitCode::from(2)
        }
    }
}
