//! `vipa-sim`: run simulated VIPA readers on pseudo-terminals or TCP.
//!
//! Standard output: first one JSON line per device (`{"pty":"/dev/pts/N"}` or
//! `{"tcp":"127.0.0.1:PORT"}`), then one acknowledgement per control command read from
//! standard input. Standard error: masked logs. The process ends when standard input closes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use emvbridge_sim::card;
use emvbridge_sim::faults::{parse_duration, FaultPlan};
use emvbridge_sim::reader::{Control, Presentation, Scenario, SimConfig, SimReader};
use emvbridge_sim::transport::{run_pty, run_tcp, DeviceHandle, Pty};
use tokio::io::AsyncBufReadExt;

const AFTER_HELP: &str = "\
FAULTS (--faults, comma-separated; all randomness from --seed, so a run is reproducible):
  corrupt-lrc=P      corrupt the LRC of each outgoing frame with probability P
  flip=P             flip one bit of each outgoing byte with probability P
  drop=P             drop each outgoing byte with probability P
  dup=P              send each outgoing frame twice with probability P
  split              cut every write into random chunks
  slow=DUR           hold every outgoing message DUR (200ms, 1s, 500us)
  stall-after=N      stop answering after N messages (until a reboot)
  reboot-at=POINT[:K]  reboot at the K-th (default 1st) occurrence of POINT
  remove-at=POINT[:K]  pull the card there
  cancel-at=POINT[:K]  press cancel there
  POINT: start, pin, e2, e4, final (e3/e5), continue
  e.g. --seed 7 --faults corrupt-lrc=0.02,dup=0.01,split,remove-at=e4

CONTROL (JSON lines on standard input, each acknowledged by a JSON line on standard output;
add \"device\":N to address device N, default 0; EOF ends the process):
  {\"cmd\":\"card\",\"profile\":\"visa-cvn18\"}   card for auto-insert (inserted now if a Start waits)
  {\"cmd\":\"insert\",\"profile\":\"two-app\"}    {\"cmd\":\"tap\",\"msd\":true}    {\"cmd\":\"swipe\"}
  {\"cmd\":\"remove\"}   {\"cmd\":\"reboot\"}   {\"cmd\":\"status\"}
  {\"cmd\":\"pin\",\"digits\":\"1234\"}   {\"cmd\":\"pin\",\"cancel\":true}   {\"cmd\":\"pin\",\"bypass\":true}
  {\"cmd\":\"faults\",\"spec\":\"corrupt-lrc=0.1\"}   {\"cmd\":\"auto\",\"insert\":true,\"remove\":false,\"pin\":true}

SCENARIO (--scenario FILE): the same JSON lines, plus {\"cmd\":\"wait\",\"ms\":500} and
{\"cmd\":\"wait-for\",\"point\":\"e4\"}; '#' lines are comments. It runs on device 0.";

/// A simulated Verifone VIPA card reader (UX300-class) for testing emvbridge.
#[derive(Debug, Parser)]
#[command(name = "vipa-sim", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Serve each device on a new pseudo-terminal; prints {"pty":"/dev/pts/N"}.
    #[arg(long, conflicts_with = "tcp")]
    pty: bool,
    /// Serve each device as a TCP server (port 0 = any); prints {"tcp":"ADDR:PORT"}.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Number of devices (each gets its own pty or port, seed + index, terminal id).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    devices: u16,
    /// Card profile presented on Start Transaction (auto-insert).
    #[arg(long, value_name = "PROFILE")]
    card: Option<String>,
    /// Scripted sequence of control commands (JSON lines) for device 0.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Seed for unpredictable numbers and faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fault plan (see FAULTS below).
    #[arg(long, default_value = "")]
    faults: String,
    /// Delay from arming the reader (Card Status with P1 bit 0; `C0 A0` for --present tap)
    /// to the --card being presented. Until then, as on a real reader, no card is present
    /// and Start Transaction answers 9F23.
    #[arg(long, default_value = "0ms", value_name = "DUR")]
    insert_after: String,
    /// How --insert-after presents the card: insert, tap, tap-msd or swipe.
    #[arg(long, default_value = "insert", value_name = "HOW")]
    present: String,
    /// The logged reader to behave like: generic, ux300, ux301, m400 (Card Status answered
    /// unsolicited only), p400 (captured reset answers).
    #[arg(long, default_value = "generic", value_name = "MODEL")]
    device: String,
    /// Never present the --card by itself: cards come only by the control channel or a
    /// scenario.
    #[arg(long)]
    no_auto_insert: bool,
    /// Leave the card inserted after E3/E5.
    #[arg(long)]
    no_auto_remove: bool,
    /// Wait for a PIN from the control channel instead of typing the profile's PIN.
    #[arg(long)]
    no_auto_pin: bool,
    /// Time the simulated cardholder takes to type a PIN.
    #[arg(long, default_value = "50ms", value_name = "DUR")]
    pin_delay: String,
    /// End a Start Transaction waiting for a card after DUR (default: wait forever).
    #[arg(long, value_name = "DUR")]
    card_timeout: Option<String>,
    /// Status word for the card-wait timeout, hex (undocumented; default 9F41).
    #[arg(long, default_value = "9F41", value_name = "SW")]
    card_timeout_sw: String,
    /// List the card profiles and exit.
    #[arg(long)]
    list_cards: bool,
    /// Play a session recorded by `emvbridge sale --record FILE`, or a wire capture
    /// (`host HEX` / `terminal HEX` lines), back to the bridge (one device; answers each
    /// command with the recorded messages, matched on CLA INS).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["scenario", "card"])]
    replay: Option<PathBuf>,
}

fn config(args: &Args, index: u16) -> anyhow::Result<SimConfig> {
    let mut c = SimConfig {
        card: args.card.clone(),
        auto_insert: !args.no_auto_insert,
        insert_delay: parse_duration(&args.insert_after)
            .map_err(|e| anyhow::anyhow!("--insert-after: {e}"))?,
        auto_present: args
            .present
            .parse::<Presentation>()
            .map_err(|e| anyhow::anyhow!("--present: {e}"))?,
        device: args
            .device
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--device: {e}"))?,
        auto_remove: !args.no_auto_remove,
        auto_pin: !args.no_auto_pin,
        seed: args.seed.wrapping_add(u64::from(index)),
        faults: args
            .faults
            .parse::<FaultPlan>()
            .map_err(|e| anyhow::anyhow!("--faults: {e}"))?,
        pin_delay: parse_duration(&args.pin_delay)
            .map_err(|e| anyhow::anyhow!("--pin-delay: {e}"))?,
        card_timeout: args
            .card_timeout
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--card-timeout: {e}"))?,
        card_timeout_sw: u16::from_str_radix(&args.card_timeout_sw, 16)
            .map(emvbridge_protocol::vipa::StatusWord)
            .map_err(|_| anyhow::anyhow!("--card-timeout-sw: 4 hex digits"))?,
        ..SimConfig::default()
    };
    let tid = format!("SIM{:05}", u32::from(index) + 1);
    c.terminal.terminal_id.copy_from_slice(&tid.as_bytes()[..8]);
    let serial = format!("UX3{:05}", u32::from(index) + 1);
    c.terminal
        .ifd_serial
        .copy_from_slice(&serial.as_bytes()[..8]);
    Ok(c)
}

fn print_line(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.list_cards {
        for name in card::profile_names() {
            let d = card::profile(name)
                .map(|p| p.description)
                .unwrap_or_default();
            println!("{name}\t{d}");
        }
        return Ok(());
    }
    if let Some(c) = &args.card {
        if card::profile(c).is_none() {
            bail!("unknown card profile {c:?} (see --list-cards)");
        }
    }
    if !args.pty && args.tcp.is_none() {
        bail!("choose a transport: --pty or --tcp ADDR");
    }
    if let Some(path) = &args.replay {
        return replay(path, &args).await;
    }
    let scenario = match &args.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading scenario {}", p.display()))?;
            Some(Scenario::parse(&text)?)
        }
        None => None,
    };
    let mut handles = Vec::new();
    let mut scenario = scenario;
    for i in 0..args.devices {
        let mut reader = SimReader::new(config(&args, i)?, Instant::now());
        if i == 0 {
            if let Some(s) = scenario.take() {
                reader.load_scenario(Instant::now(), s);
            }
        }
        let (handle, rx) = DeviceHandle::channel();
        let device = usize::from(i);
        if let Some(addr) = args.tcp {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let local = listener.local_addr()?;
            print_line(&serde_json::json!({ "tcp": local.to_string() }));
            tokio::spawn(run_tcp(reader, listener, rx, device));
        } else {
            let pty = Pty::open().context("opening a pty")?;
            print_line(&serde_json::json!({ "pty": pty.path().display().to_string() }));
            tokio::spawn(run_pty(reader, pty, rx, device));
        }
        handles.push(handle);
    }
    tracing::info!(devices = args.devices, card = ?args.card, seed = args.seed, faults = %args.faults, "vipa-sim running");

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        print_line(&control_line(line, &handles).await);
    }
    tracing::info!("standard input closed; exiting");
    // Give the device tasks a moment to flush what they were writing.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// `--replay FILE`: one device playing a recording; control commands are refused.
async fn replay(path: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    use emvbridge_sim::replay::{run_replay_pty, run_replay_tcp, Recording, ReplayReader};
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > 256 * 1024 * 1024 {
        bail!("{}: recording too large", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rec = Recording::parse_any(&text).with_context(|| format!("{}", path.display()))?;
    let entries = rec.entries().len();
    let reader = ReplayReader::new(rec);
    if let Some(addr) = args.tcp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        print_line(&serde_json::json!({ "tcp": listener.local_addr()?.to_string() }));
        tokio::spawn(run_replay_tcp(reader, listener));
    } else {
        let pty = Pty::open().context("opening a pty")?;
        print_line(&serde_json::json!({ "pty": pty.path().display().to_string() }));
        tokio::spawn(run_replay_pty(reader, pty));
    }
    tracing::info!(entries, file = %path.display(), "vipa-sim replaying");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if !line.trim().is_empty() {
            print_line(
                &serde_json::json!({"ok": false, "error": "replay mode: no control commands"}),
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

async fn control_line(line: &str, handles: &[DeviceHandle]) -> serde_json::Value {
    let mut v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => return serde_json::json!({"ok": false, "error": "not json"}),
    };
    let device = v
        .as_object_mut()
        .and_then(|o| o.remove("device"))
        .and_then(|d| d.as_u64())
        .unwrap_or(0);
    let Some(handle) = usize::try_from(device).ok().and_then(|d| handles.get(d)) else {
        return serde_json::json!({"ok": false, "device": device, "error": "no such device"});
    };
    let cmd: Control = match serde_json::from_value(v) {
        Ok(c) => c,
        Err(_) => {
            return serde_json::json!({"ok": false, "device": device, "error": "unknown command"})
        }
    };
    let name = cmd.name();
    match handle.control(cmd).await {
        Ok(status) => {
            serde_json::json!({"ok": true, "cmd": name, "device": device, "status": status})
        }
        Err(e) => {
            serde_json::json!({"ok": false, "cmd": name, "device": device, "error": e.to_string()})
        }
    }
}
