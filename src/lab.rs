//! `emvbridge lab`: N simulated readers against the sandbox gateway, concurrently, with
//! figures at the end.
//!
//! Each lane is a whole terminal: its own [`SimReader`] served on its own loopback TCP port
//! (a real socket, as in the store), its own [`ReaderLink`], and the shared in-process sandbox
//! gateway through one shared adapter (one HTTP connection pool). Lanes run concurrently on
//! one tokio runtime and start selling together once every lane's reader is ready. Each lane
//! runs `--sales` sales one after another, with amounts drawn from `--seed` that exercise the
//! sandbox's amount rules (§4.5): plain approvals, `x.51` insufficient funds, `12345.67`
//! declines and `x.91` approvals with a bad ARPC, which the card refuses and the bridge must
//! reverse.
//!
//! Timing comes from [`crate::engine::run_transaction_timed`]: the bridge's own share of a
//! sale is its end-to-end time minus the time with a reader command outstanding or a gateway
//! call in flight. Percentiles come from HDR histograms ([`Histogram`], fixed size whatever
//! the number of sales); money stays integer minor units.
//!
//! Every lane runs in its own metrics lane ([`crate::telemetry::metrics::in_lane`]): with
//! `--metrics-listen ADDR` the run serves `GET /metrics` with each lane's transactions,
//! frames, reconnects and latencies under `lane="N"`. `--plot FILE` draws the end-to-end
//! latency histogram as SVG.
//!
//! A run fails (exit 1) when any sale ends `Unresolved`, when the sandbox's
//! `/_sim/assert/no_orphans` does not answer 200 at the end, or when a lane cannot start.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use emvbridge_sim::faults::FaultPlan;
use emvbridge_sim::reader::{SimConfig, SimReader};
use emvbridge_sim::transport::DeviceHandle;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::driver::{AddrConnector, DeviceAddr, LineSettings, LinkConfig, LinkStats, ReaderLink};
use crate::engine::{run_transaction_timed, utc_date_time, TxnTiming};
use crate::gateway::http::HttpSettings;
use crate::gateway::{Dialect, Gateway};
use crate::telemetry::metrics;
use emvbridge_core::money::Money;
use emvbridge_core::txn::{AppChoice, AuthKind, OutcomeStatus, Reference, TxnConfig, TxnRequest};

/// Arguments of `emvbridge lab`.
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Simulated readers running at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub lanes: u32,
    /// Sales per lane (each lane sells one after another).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sales: u32,
    /// Reader faults, as `vipa-sim --faults` (`corrupt-lrc=0.02,flip=0.001,split`); each lane
    /// draws its own from `--seed` + lane.
    #[arg(long, default_value = "")]
    pub faults: String,
    /// Seed for the amounts and the readers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Gateway dialect spoken to the sandbox.
    #[arg(long, default_value = "paymentsai")]
    pub dialect: Dialect,
    /// Simulated card (a profile of `vipa-sim --list-cards`).
    #[arg(long, default_value = "visa-cvn18")]
    pub card: String,
    /// Print the figures as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Serve `GET /metrics` (per-lane series, `lane="N"`) on this loopback address while
    /// the run lasts, for Prometheus or `curl`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Draw the end-to-end latency histogram (and the bridge's own share) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
}

/// What a planned sale should exercise (from its amount, §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Planned {
    /// A plain amount: approved online, TC.
    Approve,
    /// `x.51`: declined, insufficient funds.
    Nsf,
    /// `12345.67`: declined `05`.
    Decline,
    /// `x.91`: approved with a bad ARPC; the card declines; the bridge reverses.
    Reversal,
}

impl Planned {
    /// The outcome the bridge should reach when nothing goes wrong on the line.
    pub fn expected(self) -> OutcomeStatus {
        match self {
            Planned::Approve => OutcomeStatus::Approved,
            Planned::Nsf | Planned::Decline => OutcomeStatus::Declined,
            Planned::Reversal => OutcomeStatus::Reversed,
        }
    }
}

/// Amounts that trigger other sandbox rules (partials, gateway error) are avoided.
const SPECIAL: [u64; 5] = [278, 326, 1010, 1110, 1_234_568];

/// The `i`-th sale of `lane`: deterministic in (`seed`, `lane`, `i`). Mix: 70 % approve,
/// 10 % each NSF, decline and reversal.
pub fn plan_sale(seed: u64, lane: u32, i: u32) -> (Planned, u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ (u64::from(lane) << 32 | u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let dollars: u64 = rng.gen_range(1..=250);
    match rng.gen_range(0..100u32) {
        0..=69 => loop {
            let cents: u64 = rng.gen_range(0..100);
            let minor = dollars * 100 + cents;
            if !matches!(cents, 51 | 71 | 72 | 91) && !SPECIAL.contains(&minor) {
                return (Planned::Approve, minor);
            }
        },
        70..=79 => (Planned::Nsf, dollars * 100 + 51),
        80..=89 => (Planned::Decline, 1_234_567),
        _ => (Planned::Reversal, dollars * 100 + 91),
    }
}

/// Durations, microseconds, in an HDR histogram (3 significant figures): a fixed few
/// kilobytes whatever the number of sales, so a day-long lab run stays flat in memory.
#[derive(Debug, Clone)]
pub struct Histogram {
    h: hdrhistogram::Histogram<u64>,
    sum_us: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            // Auto-resizing: any duration fits; 3 significant figures keep the error under
            // 0.1 % at every magnitude.
            h: hdrhistogram::Histogram::new(3)
                .expect("3 significant figures is within hdrhistogram's 0..=5"),
            sum_us: 0,
        }
    }
}

impl Histogram {
    /// Adds one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2);
        // Grows (by powers of two) to the largest value seen, then saturates.
        if self.h.record(us).is_err() {
            self.h.saturating_record(us);
        }
        self.sum_us += u128::from(us);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if let Err(e) = self.h.add(&other.h) {
            tracing::warn!(error = %e, "lab: histogram merge lost samples");
        }
        self.sum_us += other.sum_us;
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The `q`-quantile (0..=1) in microseconds. `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.h.is_empty()).then(|| self.h.value_at_quantile(q.clamp(0.0, 1.0)))
    }

    /// Counts per bucket of `width_us`, from 0 to the largest sample: what `--plot` draws.
    pub fn buckets(&self, width_us: u64) -> Vec<(u64, u64)> {
        if self.h.is_empty() {
            return Vec::new();
        }
        self.h
            .iter_linear(width_us.max(1))
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect()
    }

    /// The largest sample, microseconds.
    pub fn max_us(&self) -> u64 {
        self.h.max()
    }

    fn summary(&self) -> Option<LatencySummary> {
        let ms = |us: u64| us as f64 / 1000.0;
        Some(LatencySummary {
            p50_ms: ms(self.quantile_us(0.50)?),
            p95_ms: ms(self.quantile_us(0.95)?),
            p99_ms: ms(self.quantile_us(0.99)?),
            max_ms: ms(self.h.max()),
            mean_ms: self.sum_us as f64 / self.h.len().max(1) as f64 / 1000.0,
        })
    }
}

/// Percentiles of one measure, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// What the lanes measured, merged.
#[derive(Debug, Clone, Default)]
struct Tally {
    end_to_end: Histogram,
    bridge: Histogram,
    reader: Histogram,
    gateway: Histogram,
    outcomes: BTreeMap<String, u64>,
    planned: BTreeMap<String, u64>,
    unexpected: u64,
    reasons: BTreeMap<String, u64>,
    reversals: u64,
    reversals_confirmed: u64,
    unresolved: u64,
    errors: u64,
    corrupt_in_expected: u64,
    corrupt_in_other: u64,
    link: LinkStats,
    setup_failures: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.end_to_end.merge(&o.end_to_end);
        self.bridge.merge(&o.bridge);
        self.reader.merge(&o.reader);
        self.gateway.merge(&o.gateway);
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in o.planned {
            *self.planned.entry(k).or_default() += v;
        }
        self.unexpected += o.unexpected;
        for (k, v) in o.reasons {
            note_reason(&mut self.reasons, k, v);
        }
        self.reversals += o.reversals;
        self.reversals_confirmed += o.reversals_confirmed;
        self.unresolved += o.unresolved;
        self.errors += o.errors;
        self.corrupt_in_expected += o.corrupt_in_expected;
        self.corrupt_in_other += o.corrupt_in_other;
        let (a, b) = (&mut self.link, o.link);
        a.frames_in += b.frames_in;
        a.frames_out += b.frames_out;
        a.messages_in += b.messages_in;
        a.messages_out += b.messages_out;
        a.bytes_in += b.bytes_in;
        a.bytes_out += b.bytes_out;
        a.corrupt += b.corrupt;
        a.unsolicited += b.unsolicited;
        a.stray += b.stray;
        a.timeouts += b.timeouts;
        a.reconnects += b.reconnects;
        a.connect_failures += b.connect_failures;
        a.events_dropped += b.events_dropped;
        self.setup_failures.extend(o.setup_failures);
    }
}

/// The figures of a lab run (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Lanes (simulated readers).
    pub lanes: u32,
    /// Sales per lane.
    pub sales_per_lane: u32,
    /// Sales that reached an outcome.
    pub sales: u64,
    /// Seed.
    pub seed: u64,
    /// Fault plan.
    pub faults: String,
    /// Gateway dialect.
    pub dialect: String,
    /// Time to start every lane (readers ready), seconds.
    pub setup_s: f64,
    /// From the start signal to the last outcome, seconds.
    pub wall_s: f64,
    /// `sales / wall_s`.
    pub sales_per_s: f64,
    /// End to end, per sale.
    pub end_to_end: Option<LatencySummary>,
    /// The bridge's own share (end to end minus reader and gateway waits).
    pub bridge_share: Option<LatencySummary>,
    /// Time waiting for the reader (includes the simulated cardholder).
    pub reader_wait: Option<LatencySummary>,
    /// Time waiting for the gateway.
    pub gateway_wait: Option<LatencySummary>,
    /// Outcomes by status.
    pub outcomes: BTreeMap<String, u64>,
    /// Sales by planned kind.
    pub planned: BTreeMap<String, u64>,
    /// Sales whose outcome differs from the one their amount plans (expected with faults).
    pub unexpected: u64,
    /// Why the unexpected outcomes ended as they did (`status: reason`), counted.
    pub unexpected_reasons: BTreeMap<String, u64>,
    /// Corrupt reports from the links' deframers.
    pub corrupt_seen: u64,
    /// Corrupt reports during sales that still reached their planned outcome.
    pub corrupt_recovered: u64,
    /// Reader commands without an answer in time (each re-synchronises the link).
    pub link_timeouts: u64,
    /// Link re-synchronisations after the first.
    pub link_reconnects: u64,
    /// Sales that made a reversal.
    pub reversals: u64,
    /// Reversals the gateway confirmed.
    pub reversals_confirmed: u64,
    /// Sales that ended `Unresolved` (must be 0).
    pub unresolved: u64,
    /// Sales the engine refused to start.
    pub errors: u64,
    /// `/_sim/assert/no_orphans` answered 200.
    pub no_orphans: bool,
    /// Lanes that did not start, with the reason.
    pub setup_failures: Vec<String>,
    /// Peak resident memory of the process (VmHWM), KiB.
    pub peak_memory_kib: Option<u64>,
    /// The soft limit of open files during the run.
    pub fd_limit: Option<u64>,
}

impl Figures {
    /// Whether the run passes: nothing unresolved, no orphans, every lane started.
    pub fn passed(&self) -> bool {
        self.unresolved == 0 && self.no_orphans && self.setup_failures.is_empty()
    }

    /// The figures as text.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let lat = |name: &str, l: &Option<LatencySummary>| {
            match l {
            Some(l) => format!(
                "  {name:<14} p50 {:>9.3}  p95 {:>9.3}  p99 {:>9.3}  max {:>9.3}  mean {:>9.3} ms\n",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.mean_ms
            ),
            None => format!("  {name:<14} -\n"),
        }
        };
        let _ = writeln!(
            s,
            "lab: {} lanes x {} sales, seed {}, dialect {}, faults {:?}",
            self.lanes, self.sales_per_lane, self.seed, self.dialect, self.faults
        );
        let _ = writeln!(
            s,
            "  sales          {} in {:.2} s ({:.1} sales/s; setup {:.2} s)",
            self.sales, self.wall_s, self.sales_per_s, self.setup_s
        );
        s += &lat("end to end", &self.end_to_end);
        s += &lat("bridge share", &self.bridge_share);
        s += &lat("reader wait", &self.reader_wait);
        s += &lat("gateway wait", &self.gateway_wait);
        let kv = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "  outcomes       {}", kv(&self.outcomes));
        let _ = writeln!(
            s,
            "  planned        {} (unexpected outcomes: {})",
            kv(&self.planned),
            self.unexpected
        );
        for (k, v) in &self.unexpected_reasons {
            let _ = writeln!(s, "    {v:>6} x {k}");
        }
        let _ = writeln!(
            s,
            "  corrupt        seen {}, recovered {} (link timeouts {}, reconnects {})",
            self.corrupt_seen, self.corrupt_recovered, self.link_timeouts, self.link_reconnects
        );
        let _ = writeln!(
            s,
            "  reversals      {} ({} confirmed)",
            self.reversals, self.reversals_confirmed
        );
        let _ = writeln!(
            s,
            "  unresolved     {} (no_orphans: {})",
            self.unresolved,
            if self.no_orphans { "ok" } else { "FAILED" }
        );
        if let Some(m) = self.peak_memory_kib {
            let _ = writeln!(s, "  peak memory    {:.1} MiB", m as f64 / 1024.0);
        }
        for f in &self.setup_failures {
            let _ = writeln!(s, "  setup failure  {f}");
        }
        if self.errors > 0 {
            let _ = writeln!(s, "  engine errors  {}", self.errors);
        }
        s
    }
}

/// Counts a reason, keeping at most 32 distinct ones (the rest go under `other`).
fn note_reason(m: &mut BTreeMap<String, u64>, k: String, n: u64) {
    let k = if m.len() >= 32 && !m.contains_key(&k) {
        "other".to_owned()
    } else {
        k
    };
    *m.entry(k).or_default() += n;
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), KiB.
pub fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises the soft open-files limit towards what `lanes` need (about 6 descriptors a lane:
/// listener, both ends of the reader socket, both ends of a gateway connection, spare).
/// Returns the soft limit in force.
fn raise_fd_limit(lanes: u32) -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = u64::from(lanes) * 6 + 256;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= want {
        return Some(soft);
    }
    let new = want.min(hard);
    match setrlimit(Resource::RLIMIT_NOFILE, new, hard) {
        Ok(()) => Some(new),
        Err(_) => Some(soft),
    }
}

/// A progress bar of `total` `what` on standard error when it is a terminal (hidden
/// otherwise, so logs and CI output stay clean); `lab` and `soak` share it.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"
    )) {
        pb.set_style(style);
    }
    pb
}

/// Everything a lane needs, shared.
struct LaneCtx {
    args: LabArgs,
    faults: FaultPlan,
    gateway: Arc<dyn Gateway>,
    start: tokio::sync::Barrier,
    progress: ProgressBar,
    txn: TxnConfig,
}

struct Lane {
    link: ReaderLink,
    events: tokio::sync::mpsc::Receiver<crate::driver::LinkEvent>,
    _device: DeviceHandle,
    sim: tokio::task::JoinHandle<()>,
}

async fn start_lane(ctx: &LaneCtx, idx: u32) -> anyhow::Result<Lane> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")?;
    let local = listener.local_addr()?;
    let mut config = SimConfig {
        card: Some(ctx.args.card.clone()),
        seed: ctx.args.seed.wrapping_add(u64::from(idx)),
        faults: ctx.faults.clone(),
        ..SimConfig::default()
    };
    let tid = format!("LAB{:05}", idx % 100_000);
    if let Some(b) = tid.as_bytes().get(..8) {
        config.terminal.terminal_id.copy_from_slice(b);
    }
    let reader = SimReader::new(config, Instant::now());
    let (device, control) = DeviceHandle::channel();
    let sim = tokio::spawn(emvbridge_sim::transport::run_tcp(
        reader,
        listener,
        control,
        idx as usize,
    ));
    let connector = AddrConnector::new(
        DeviceAddr::Tcp {
            host: local.ip().to_string(),
            port: local.port(),
        },
        LineSettings::default(),
    );
    let (link, events) = ReaderLink::spawn(connector, LinkConfig::default());
    let ready = link.wait_ready(Duration::from_secs(60)).await;
    if let Err(e) = ready {
        link.shutdown().await;
        sim.abort();
        return Err(anyhow!("lane {idx}: reader not ready: {e}"));
    }
    Ok(Lane {
        link,
        events,
        _device: device,
        sim,
    })
}

async fn run_lane(ctx: Arc<LaneCtx>, idx: u32) -> Tally {
    let mut t = Tally::default();
    let lane = start_lane(&ctx, idx).await;
    // Every lane passes the barrier, started or not, so the others are not held up.
    ctx.start.wait().await;
    let mut lane = match lane {
        Ok(l) => l,
        Err(e) => {
            t.setup_failures.push(format!("{e:#}"));
            ctx.progress.inc(u64::from(ctx.args.sales));
            return t;
        }
    };
    for i in 0..ctx.args.sales {
        let (planned, minor) = plan_sale(ctx.args.seed, idx, i);
        *t.planned
            .entry(format!("{planned:?}").to_lowercase())
            .or_default() += 1;
        // A link re-synchronising after a fault gets time to come back.
        let _ = lane.link.wait_ready(Duration::from_secs(30)).await;
        let amount = match Money::from_minor(minor, "USD") {
            Ok(m) => m,
            Err(_) => {
                t.errors += 1;
                continue;
            }
        };
        let (date, time) = utc_date_time(std::time::SystemTime::now());
        let req = TxnRequest {
            reference: Reference(format!("lab-{}-{idx}-{i}", ctx.args.seed)),
            kind: AuthKind::Sale,
            amount,
            amount_other: 0,
            date,
            time,
            app_choice: AppChoice::CardPriority,
            original_gateway_id: None,
            pos_reference: None,
        };
        let corrupt_before = lane.link.stats().corrupt;
        let mut timing = TxnTiming::default();
        let r = run_transaction_timed(
            &lane.link,
            &mut lane.events,
            ctx.gateway.clone(),
            req,
            ctx.txn.clone(),
            |_| {},
            &mut timing,
        )
        .await;
        let corrupt = lane.link.stats().corrupt.saturating_sub(corrupt_before);
        ctx.progress.inc(1);
        let outcome = match r {
            Ok(o) => o,
            Err(_) => {
                t.errors += 1;
                continue;
            }
        };
        t.end_to_end.record(timing.total);
        t.bridge.record(timing.bridge_share());
        t.reader.record(timing.reader_wait);
        t.gateway.record(timing.gateway_wait);
        let status = serde_json::to_value(outcome.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", outcome.status));
        *t.outcomes.entry(status.clone()).or_default() += 1;
        if outcome.status == OutcomeStatus::Unresolved {
            t.unresolved += 1;
        }
        if let Some(rev) = &outcome.reversal {
            t.reversals += 1;
            if matches!(
                rev.result,
                Some(
                    emvbridge_core::txn::ReversalResult::Reversed
                        | emvbridge_core::txn::ReversalResult::NotFound
                )
            ) {
                t.reversals_confirmed += 1;
            }
        }
        if outcome.status == planned.expected() {
            t.corrupt_in_expected += corrupt;
        } else {
            t.unexpected += 1;
            t.corrupt_in_other += corrupt;
            let why = format!(
                "{status}: {}",
                outcome.reason.as_deref().unwrap_or("no reason given")
            );
            note_reason(&mut t.reasons, why, 1);
            // The engine leaves a command whose answer was lost pending in the link until the
            // link's own (long) timeout; the next sale would find the link busy. Re-sync now,
            // as a front end should after a transaction that ended in reader trouble.
            crate::engine::resync(&lane.link).await;
        }
    }
    t.link = lane.link.stats();
    lane.link.shutdown().await;
    lane.sim.abort();
    t
}

/// Runs the lab and returns its figures (the sandbox is started and stopped here).
///
/// # Errors
/// Bad `--faults`, the sandbox or the gateway adapter cannot start.
pub async fn lab(args: LabArgs) -> anyhow::Result<Figures> {
    let faults: FaultPlan = args.faults.parse().map_err(|e| anyhow!("--faults: {e}"))?;
    if emvbridge_sim::card::profile(&args.card).is_none() {
        anyhow::bail!("unknown card profile {:?}", args.card);
    }
    let fd_limit = raise_fd_limit(args.lanes);
    let metrics_server = match args.metrics_listen {
        Some(addr) => Some(serve_metrics(addr).await?),
        None => None,
    };
    let sandbox = emvbridge_sandbox::spawn(emvbridge_sandbox::SandboxConfig::default())
        .await
        .map_err(|e| anyhow!("cannot start the sandbox gateway: {e}"))?;
    let url = sandbox.url();
    let gateway = crate::embedded::sandbox_gateway(args.dialect, &url, HttpSettings::default())?;
    let total = u64::from(args.lanes) * u64::from(args.sales);
    let progress = progress_bar(total, "sales");
    let ctx = Arc::new(LaneCtx {
        faults,
        gateway,
        start: tokio::sync::Barrier::new(args.lanes as usize + 1),
        progress: progress.clone(),
        txn: TxnConfig {
            card_timeout: Duration::from_secs(30),
            ..TxnConfig::default()
        },
        args: args.clone(),
    });
    let setup = Instant::now();
    let mut tasks = Vec::with_capacity(args.lanes as usize);
    for idx in 0..args.lanes {
        tasks.push(tokio::spawn(metrics::in_lane(
            idx,
            run_lane(ctx.clone(), idx),
        )));
    }
    ctx.start.wait().await;
    let setup_s = setup.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut tally = Tally::default();
    for (idx, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(t) => tally.merge(t),
            Err(e) => tally
                .setup_failures
                .push(format!("lane {idx}: task failed: {e}")),
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let no_orphans = reqwest::Client::new()
        .post(format!("{url}/_sim/assert/no_orphans"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status() == reqwest::StatusCode::OK)
        .unwrap_or(false);
    sandbox.shutdown().await;
    if let Some(task) = metrics_server {
        task.abort();
    }
    if let Some(path) = &args.plot {
        plot_latency(path, &tally.end_to_end, &tally.bridge)
            .with_context(|| format!("cannot draw {}", path.display()))?;
    }
    let sales = tally.end_to_end.len();
    Ok(Figures {
        lanes: args.lanes,
        sales_per_lane: args.sales,
        sales,
        seed: args.seed,
        faults: args.faults.clone(),
        dialect: args.dialect.to_string(),
        setup_s,
        wall_s: wall,
        sales_per_s: if wall > 0.0 { sales as f64 / wall } else { 0.0 },
        end_to_end: tally.end_to_end.summary(),
        bridge_share: tally.bridge.summary(),
        reader_wait: tally.reader.summary(),
        gateway_wait: tally.gateway.summary(),
        outcomes: tally.outcomes,
        planned: tally.planned,
        unexpected: tally.unexpected,
        unexpected_reasons: tally.reasons,
        corrupt_seen: tally.link.corrupt,
        corrupt_recovered: tally.corrupt_in_expected,
        link_timeouts: tally.link.timeouts,
        link_reconnects: tally.link.reconnects,
        reversals: tally.reversals,
        reversals_confirmed: tally.reversals_confirmed,
        unresolved: tally.unresolved,
        errors: tally.errors,
        no_orphans,
        setup_failures: tally.setup_failures,
        peak_memory_kib: peak_memory_kib(),
        fd_limit,
    })
}

/// Serves `GET /metrics` on `addr` (loopback only: the lab is a test bench, not a service).
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if !crate::api::is_loopback(addr.ip()) {
        anyhow::bail!("--metrics-listen must be a loopback address, not {addr}");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!(
        "lab: metrics at http://{}/metrics",
        listener.local_addr().unwrap_or(addr)
    );
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics::handler));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "lab: the metrics listener failed");
        }
    }))
}

/// Draws the end-to-end latency and the bridge's own share as histograms (about 60 buckets up
/// to the 99.9th percentile, so one outlier does not flatten the picture) into an SVG file.
///
/// # Errors
/// The file cannot be written.
pub fn plot_latency(
    path: &std::path::Path,
    end_to_end: &Histogram,
    bridge: &Histogram,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let top_us = end_to_end
        .quantile_us(0.999)
        .unwrap_or(1000)
        .max(bridge.quantile_us(0.999).unwrap_or(0))
        .max(60);
    // A bucket width of 1, 2 or 5 × 10^k µs giving at most 60 buckets.
    let raw = top_us.div_ceil(60);
    let magnitude = 10u64.pow(raw.max(1).ilog10());
    let bucket_us = [1, 2, 5, 10]
        .iter()
        .map(|m| m * magnitude)
        .find(|w| *w >= raw)
        .unwrap_or(10 * magnitude);
    let series = |h: &self::Histogram| -> Vec<(u32, u64)> {
        h.buckets(bucket_us)
            .into_iter()
            .filter(|(v, _)| *v <= top_us + bucket_us)
            .map(|(v, c)| (u32::try_from(v / bucket_us).unwrap_or(u32::MAX), c))
            .collect()
    };
    let (e2e, own) = (series(end_to_end), series(bridge));
    let x_max = u32::try_from(top_us / bucket_us + 1).unwrap_or(u32::MAX);
    let ms = move |v: &SegmentValue<u32>| match v {
        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => {
            format!("{}", f64::from(*i) * bucket_us as f64 / 1000.0)
        }
        SegmentValue::Last => String::new(),
    };
    let y_max = e2e
        .iter()
        .chain(&own)
        .map(|(_, c)| *c)
        .max()
        .unwrap_or(1)
        .max(1);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("{e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("emvbridge lab: sale latency ({} sales)", end_to_end.len()),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0u32..x_max).into_segmented(), 0u64..y_max + y_max / 10 + 1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("milliseconds (buckets of {bucket_us} µs)"))
        .x_label_formatter(&ms)
        .y_desc("sales")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            plotters::series::Histogram::vertical(&chart)
                .style(BLUE.mix(0.45).filled())
                .data(e2e),
        )
        .map_err(|e| err(&e))?
        .label("end to end")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLUE.mix(0.45).filled()));
    chart
        .draw_series(
            plotters::series::Histogram::vertical(&chart)
                .style(RED.mix(0.6).filled())
                .data(own),
        )
        .map_err(|e| err(&e))?
        .label("bridge's own share")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RED.mix(0.6).filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Runs `emvbridge lab` and prints the figures: exit 0 when the run passes
/// ([`Figures::passed`]), 1 when it does not. An error is a usage or setup error (exit 2).
///
/// # Errors
/// Bad arguments, a sandbox gateway that cannot be started.
pub async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let f = lab(args).await?;
    if json {
        match serde_json::to_string_pretty(&f) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        print!("{}", f.text());
    }
    Ok(if f.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!("lab: FAILED (unresolved sales, orphans or lanes that did not start)");
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let close = |q: f64, want: u64| {
            let got = h.quantile_us(q).unwrap();
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.002, "q{q}: {got} vs {want}");
        };
        close(0.5, 5000);
        close(0.95, 9500);
        close(0.99, 9900);
        close(1.0, 10_000);
        let mut g = Histogram::default();
        g.record(Duration::from_secs(3600));
        g.merge(&h);
        assert_eq!(g.len(), 10_001);
        let top = g.quantile_us(1.0).unwrap();
        assert!(top.abs_diff(3_600_000_000) < 3_600_000, "{top}");
        // Buckets cover every sample.
        let b = h.buckets(1000);
        assert_eq!(b.iter().map(|(_, c)| c).sum::<u64>(), 10_000);
        // Bounded: a million more samples leave the histogram's size as it was.
        let before = std::mem::size_of_val(&h) + h.h.distinct_values() * 8;
        for i in 0..1_000_000u64 {
            h.record(Duration::from_micros(1 + i % 9_999));
        }
        assert_eq!(
            std::mem::size_of_val(&h) + h.h.distinct_values() * 8,
            before
        );
    }

    #[test]
    fn sale_plan_is_deterministic_and_mixed() {
        let mut counts = BTreeMap::new();
        for i in 0..2000 {
            let (p, minor) = plan_sale(7, 3, i);
            assert_eq!(plan_sale(7, 3, i), (p, minor));
            match p {
                Planned::Approve => {
                    assert!(!matches!(minor % 100, 51 | 71 | 72 | 91));
                    assert!(!SPECIAL.contains(&minor));
                }
                Planned::Nsf => assert_eq!(minor % 100, 51),
                Planned::Reversal => assert_eq!(minor % 100, 91),
                Planned::Decline => assert_eq!(minor, 1_234_567),
            }
            *counts.entry(p).or_insert(0u32) += 1;
        }
        assert!(counts[&Planned::Approve] > 1200, "{counts:?}");
        for p in [Planned::Nsf, Planned::Decline, Planned::Reversal] {
            assert!((120..=280).contains(&counts[&p]), "{counts:?}");
        }
        assert!((0..20).any(|i| plan_sale(7, 3, i) != plan_sale(8, 3, i)));
    }

    #[test]
    fn peak_memory_is_read() {
        assert!(peak_memory_kib().is_some_and(|k| k > 0));
    }
}
