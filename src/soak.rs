//! `emvbridge soak`: the reliability soak (the README's resilience section).
//!
//! Runs `--sales` real `emvbridge sale` processes one after another against ONE long-lived
//! sandbox gateway (in this process, on loopback) and one journal file, with seeded trouble:
//!
//! - `--kill P`: a fraction `P` of the sales is SIGKILLed, each aimed (seeded) at one phase:
//!   `early` (a random delay from spawn: start-up resolver pass, reader set-up, card
//!   reading), `in_flight` (the sandbox delays this sale's authorization and the kill lands
//!   while it is outstanding, seen as the journal row in `sending`), `after_approval` (the
//!   gateway approved, the card's final answer is not in yet: the reader is slowed and the
//!   kill lands once the row is `approved` without a POS status) and `after_outcome` (the
//!   outcome is journaled). Where the kill actually landed is read from the journal at that
//!   moment and counted. The next sale's start-up resolver pass (and the final passes) must
//!   settle what the kill left.
//! - `--line-faults SPEC` (every sale) and `--line-events P` (one scripted `stall-after`,
//!   `reboot-at`, `remove-at` or `cancel-at` at a random point, for a fraction `P` of the
//!   sales): the embedded simulated reader's faults (`sale --sim-faults`).
//! - `--gateway-faults P`: a fraction `P` of the sales gets a random mix of the sandbox's
//!   fault actions (§4.7: delay, hang, drop, 5xx, malformed, `auth_expire`, `void_decline`,
//!   with and without commit) on its authorization, on reversals and on status lookups.
//!
//! At the end the faults are cleared, the sandbox clock is advanced and `emvbridge resolve`
//! runs until nothing is left (bounded passes). The run passes when: no sale hung, every
//! journal row is settled, `/_sim/assert/no_orphans` answers 200, the journal and the ledger
//! agree for every reference (approved-and-completed ↔ one approved charge; anything else ↔
//! no approved charge), no reference is charged twice, no approval the POS was shown is
//! lost, and `PRAGMA integrity_check` is `ok`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::gateway::Dialect;
use crate::journal::RelayState;
use crate::lab::{plan_sale, Planned};

/// Arguments of `emvbridge soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Sales to run (one `emvbridge sale` process each).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sales: u32,
    /// Seed of every random choice (amounts, kills, faults).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Gateway dialect.
    #[arg(long, default_value = "paymentsai")]
    pub dialect: Dialect,
    /// Fraction of the sales SIGKILLed (0..=1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub kill: f64,
    /// Simulated-reader faults for every sale (`vipa-sim --faults` syntax).
    #[arg(long, default_value = "")]
    pub line_faults: String,
    /// Fraction of the sales that also get one scripted reader event (stall, reboot,
    /// card removed, cancel) at a random point.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub line_events: f64,
    /// Fraction of the sales that get a random mix of sandbox fault actions.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub gateway_faults: f64,
    /// The bridge's gateway request timeout, ms (hangs cost this much).
    #[arg(long, default_value_t = 700)]
    pub gateway_timeout_ms: u64,
    /// The sales' card timeout, seconds (`sale --card-timeout-secs`): what a reader message
    /// lost on the line costs.
    #[arg(long, default_value_t = 8)]
    pub card_timeout_secs: u64,
    /// The sales' final-answer timeout, seconds (`sale --final-timeout-secs`): what a lost
    /// final answer (then reversed) costs.
    #[arg(long, default_value_t = 5)]
    pub final_timeout_secs: u64,
    /// A sale still running after this long is killed and counted as hung (a failure).
    #[arg(long, default_value_t = 90)]
    pub sale_timeout_secs: u64,
    /// The journal (default: a new file in the temporary directory, removed on success).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// The `emvbridge` binary to run (default: this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

/// Where a kill is aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillAim {
    /// A random delay after spawn.
    Early,
    /// While the authorization is outstanding.
    InFlight,
    /// After the gateway's approval, before the card's final answer.
    AfterApproval,
    /// After the outcome was journaled.
    AfterOutcome,
}

/// The figures of a soak run (`--json` prints this).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakFigures {
    /// Sales run.
    pub sales: u32,
    /// Seed.
    pub seed: u64,
    /// Dialect.
    pub dialect: String,
    /// `--kill`.
    pub kill_rate: f64,
    /// `--line-faults`.
    pub line_faults: String,
    /// `--line-events`.
    pub line_events: f64,
    /// `--gateway-faults`.
    pub gateway_fault_rate: f64,
    /// Outcomes the POS was shown (the sale's JSON `status`), plus `killed` and `error`
    /// (exit 2: the sale could not run, e.g. the reader never became ready).
    pub outcomes: BTreeMap<String, u64>,
    /// Planned sales by kind (from the amount).
    pub planned: BTreeMap<String, u64>,
    /// Kills aimed, by phase.
    pub kills_aimed: BTreeMap<String, u64>,
    /// Kills made, by where they landed (the journal row at that moment): `no_row`,
    /// `sending`, `approved_untold`, `outcome_journaled`, or the row's state.
    pub kills_landed: BTreeMap<String, u64>,
    /// Aimed kills whose sale ended before the aim was reached (not killed).
    pub kills_missed: u64,
    /// Sales with a scripted reader event.
    pub line_events_injected: u64,
    /// Sandbox fault rules installed.
    pub gateway_rules: u64,
    /// Sandbox fault rules installed, by action.
    pub gateway_rules_by_action: BTreeMap<String, u64>,
    /// Why sales exited with an error (exit 2), counted.
    pub error_reasons: BTreeMap<String, u64>,
    /// Sales that did not end within `--sale-timeout-secs` (must be 0).
    pub hung: u64,
    /// Resolver passes: the start-up pass of every sale plus the final `resolve` runs.
    pub resolver_passes: u64,
    /// `emvbridge resolve` runs at the end until nothing was left.
    pub final_resolve_passes: u64,
    /// Journal rows by final state.
    pub journal_states: BTreeMap<String, u64>,
    /// References with an approved charge in the sandbox ledger.
    pub ledger_charged: u64,
    /// Approvals shown to the POS that the ledger or journal lost (must be 0).
    pub lost_approvals: u64,
    /// References charged more than once (must be 0).
    pub double_charges: u64,
    /// References where journal and ledger disagree (must be 0).
    pub disagreements: u64,
    /// Journal rows not settled at the end (must be 0).
    pub unsettled: u64,
    /// Charges that must be reversed but cannot be in this dialect (Pay1st has no void or
    /// refund API): left `reversal_failed`/`escalated` for an operator, reported here and not
    /// counted as failures. Always 0 for Number and PaymentsAI.
    pub irreversible: u64,
    /// `/_sim/assert/no_orphans` answered 200.
    pub no_orphans: bool,
    /// `PRAGMA integrity_check` result.
    pub integrity: String,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Sales per second.
    pub sales_per_s: f64,
    /// What failed (at most 50 lines).
    pub failures: Vec<String>,
}

impl SoakFigures {
    /// Whether every invariant holds.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(&mut self, msg: String) {
        if self.failures.len() < 50 {
            self.failures.push(msg);
        }
    }

    /// The figures as text.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let kv = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                return "-".to_owned();
            }
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "soak: {} sales, seed {}, dialect {}, kill {}, line faults {:?} (+events {}), gateway faults {}",
            self.sales,
            self.seed,
            self.dialect,
            self.kill_rate,
            self.line_faults,
            self.line_events,
            self.gateway_fault_rate
        );
        let _ = writeln!(
            s,
            "  time           {:.1} s ({:.2} sales/s)",
            self.wall_s, self.sales_per_s
        );
        let _ = writeln!(s, "  planned        {}", kv(&self.planned));
        let _ = writeln!(s, "  outcomes       {}", kv(&self.outcomes));
        let _ = writeln!(
            s,
            "  kills aimed    {} (missed: {})",
            kv(&self.kills_aimed),
            self.kills_missed
        );
        let _ = writeln!(s, "  kills landed   {}", kv(&self.kills_landed));
        let _ = writeln!(
            s,
            "  line events    {}; gateway rules {} ({})",
            self.line_events_injected,
            self.gateway_rules,
            kv(&self.gateway_rules_by_action)
        );
        for (k, v) in &self.error_reasons {
            let _ = writeln!(s, "    {v:>5} x error: {k}");
        }
        let _ = writeln!(
            s,
            "  resolver       {} passes ({} final)",
            self.resolver_passes, self.final_resolve_passes
        );
        let _ = writeln!(s, "  journal        {}", kv(&self.journal_states));
        let _ = writeln!(
            s,
            "  invariants     hung {}, unsettled {}, irreversible (no void api) {}, lost approvals {}, double charges {}, disagreements {}, ledger charged {}, no_orphans {}, integrity {}",
            self.hung,
            self.unsettled,
            self.irreversible,
            self.lost_approvals,
            self.double_charges,
            self.disagreements,
            self.ledger_charged,
            if self.no_orphans { "ok" } else { "FAILED" },
            self.integrity
        );
        for f in &self.failures {
            let _ = writeln!(s, "  FAILURE        {f}");
        }
        s
    }
}

/// The sandbox's name of a dialect in fault matches.
fn sim_dialect(d: Dialect) -> &'static str {
    match d {
        Dialect::Number => "number",
        Dialect::PaymentsAi => "pai",
        Dialect::Pay1st => "pay1st",
    }
}

/// One random sandbox fault rule for a sale with `reference` (seeded).
fn draw_rule(rng: &mut ChaCha8Rng, dialect: Dialect, reference: &str) -> (String, Value) {
    let commit = rng.gen_bool(0.5);
    let (name, action) = match rng.gen_range(0..9u32) {
        0 => {
            let ms = rng.gen_range(50..1500u64);
            ("delay", json!({"type": "delay", "ms": ms}))
        }
        1 => ("hang", json!({"type": "hang", "commit": commit})),
        2 => (
            "drop",
            json!({"type": "drop", "commit": commit, "when": "before_headers"}),
        ),
        3 => (
            "drop_mid_body",
            json!({"type": "drop", "commit": commit, "when": "mid_body"}),
        ),
        4 | 5 => {
            let status = [500u16, 502, 503, 504][rng.gen_range(0..4usize)];
            (
                "http",
                json!({"type": "http", "status": status, "commit": commit}),
            )
        }
        6 => ("malformed", json!({"type": "malformed", "commit": commit})),
        7 => ("auth_expire", json!({"type": "auth_expire"})),
        _ => ("void_decline", json!({"type": "void_decline"})),
    };
    let op = match (name, rng.gen_range(0..10u32)) {
        ("void_decline", _) => "void",
        (_, 0..=5) => "emv",
        (_, 6 | 7) => "void",
        _ => "query",
    };
    // The authorization is matched by reference; reversals and lookups are not, so they
    // also hit the start-up resolver pass settling what an earlier sale left.
    let mut m = json!({"dialect": sim_dialect(dialect), "op": op});
    if op == "emv" {
        m["client_ref"] = json!(reference);
    }
    let times = if rng.gen_bool(0.8) { 1 } else { 2 };
    let committed = commit && action.get("commit").is_some();
    (
        format!("{name}{}", if committed { "+commit" } else { "" }),
        json!({"match": m, "action": action, "times": times}),
    )
}

/// One scripted reader event (`vipa-sim --faults` item), seeded.
fn draw_line_event(rng: &mut ChaCha8Rng) -> String {
    const POINTS: [&str; 6] = ["start", "pin", "e2", "e4", "final", "continue"];
    let p = POINTS[rng.gen_range(0..POINTS.len())];
    match rng.gen_range(0..4u32) {
        0 => format!("stall-after={}", rng.gen_range(1..12u32)),
        1 => format!("reboot-at={p}"),
        2 => format!("remove-at={p}"),
        _ => format!("cancel-at={p}"),
    }
}

/// The journal row of `reference` as (state, pos_status), read without writing.
fn peek(path: &Path, reference: &str) -> Option<(String, Option<String>)> {
    use rusqlite::{Connection, OpenFlags, OptionalExtension};
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let _ = c.busy_timeout(Duration::from_secs(2));
    c.query_row(
        "SELECT state, pos_status FROM txns WHERE reference = ?1",
        [reference],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
    )
    .optional()
    .ok()?
}

fn landed(row: Option<(String, Option<String>)>) -> String {
    match row {
        None => "no_row".into(),
        Some((_, Some(_))) => "outcome_journaled".into(),
        Some((s, None)) if s == "approved" => "approved_untold".into(),
        Some((s, None)) => s,
    }
}

/// Reads a child's pipe to the end on a thread (bounded to 1 MiB).
fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(r) = r {
            let _ = r.take(1 << 20).read_to_end(&mut out);
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

struct Harness {
    args: SoakArgs,
    bin: PathBuf,
    url: String,
    http: reqwest::Client,
    journal: PathBuf,
    config: PathBuf,
}

impl Harness {
    async fn sim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        match rb.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    fn sale(
        &self,
        reference: &str,
        minor: u64,
        sim_faults: &str,
        sim_seed: u64,
    ) -> anyhow::Result<Child> {
        let mut c = Command::new(&self.bin);
        c.args(["sale", "--json", "--amount"])
            .arg(format!("{}.{:02}", minor / 100, minor % 100))
            .arg("--dialect")
            .arg(self.args.dialect.to_string())
            .args(["--gateway", &self.url, "--reference", reference])
            .arg("--config")
            .arg(&self.config)
            .arg("--gateway-timeout-ms")
            .arg(self.args.gateway_timeout_ms.to_string())
            .arg("--card-timeout-secs")
            .arg(self.args.card_timeout_secs.to_string())
            .arg("--final-timeout-secs")
            .arg(self.args.final_timeout_secs.to_string())
            .arg("--sim-seed")
            .arg(sim_seed.to_string());
        if !sim_faults.is_empty() {
            c.args(["--sim-faults", sim_faults]);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "off");
        c.spawn().context("spawning emvbridge sale")
    }

    /// One `emvbridge resolve` run; `Ok(true)` when nothing is left.
    fn resolve(&self) -> anyhow::Result<bool> {
        let out = Command::new(&self.bin)
            .arg("resolve")
            .arg("--journal")
            .arg(&self.journal)
            .arg("--config")
            .arg(&self.config)
            .args(["--gateway", &self.url, "--dialect"])
            .arg(self.args.dialect.to_string())
            .args(["--min-age-secs", "0", "--timeout-ms", "2000"])
            .stdin(Stdio::null())
            .output()
            .context("running emvbridge resolve")?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            other => bail!(
                "resolve exited {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(400)
                    .collect::<String>()
            ),
        }
    }
}

/// What became of one sale process.
struct SaleEnd {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    killed_at: Option<String>,
    hung: bool,
}

/// Waits for `child`, killing it when `aim` is reached (or at `deadline` as hung).
async fn watch(
    h: &Harness,
    mut child: Child,
    reference: &str,
    aim: Option<(KillAim, Duration)>,
) -> SaleEnd {
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let t0 = Instant::now();
    let deadline = Duration::from_secs(h.args.sale_timeout_secs.max(1));
    let mut aim_reached_at: Option<Instant> = None;
    let mut killed_at = None;
    let mut hung = false;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.code();
        }
        if let Some((kind, jitter)) = aim {
            if aim_reached_at.is_none() {
                let reached = match kind {
                    KillAim::Early => true,
                    KillAim::InFlight => {
                        matches!(peek(&h.journal, reference), Some((s, _)) if s == "sending")
                    }
                    KillAim::AfterApproval => matches!(
                        peek(&h.journal, reference),
                        Some((s, None)) if s == "approved"
                    ),
                    KillAim::AfterOutcome => {
                        matches!(peek(&h.journal, reference), Some((_, Some(_))))
                    }
                };
                if reached {
                    aim_reached_at = Some(Instant::now());
                }
            }
            if aim_reached_at.is_some_and(|t| t.elapsed() >= jitter) && killed_at.is_none() {
                let _ = child.kill(); // SIGKILL
                killed_at = Some(landed(peek(&h.journal, reference)));
                let _ = child.wait();
                break None;
            }
        }
        if t0.elapsed() > deadline {
            hung = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    SaleEnd {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        killed_at,
        hung,
    }
}

/// Runs the soak and returns its figures.
///
/// # Errors
/// The sandbox, the journal directory or a child process cannot be started.
pub async fn soak(args: SoakArgs) -> anyhow::Result<SoakFigures> {
    if !args.line_faults.is_empty() {
        args.line_faults
            .parse::<emvbridge_sim::faults::FaultPlan>()
            .map_err(|e| anyhow!("--line-faults: {e}"))?;
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding this executable")?,
    };
    let sandbox = emvbridge_sandbox::spawn(emvbridge_sandbox::SandboxConfig {
        seed: args.seed,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("cannot start the sandbox gateway: {e}"))?;
    let dir = std::env::temp_dir().join(format!(
        "emvbridge-soak-{}-{}",
        std::process::id(),
        args.seed
    ));
    std::fs::create_dir_all(&dir).context("creating the soak directory")?;
    let journal = args
        .journal
        .clone()
        .unwrap_or_else(|| dir.join("journal.db"));
    let config = dir.join("relay.toml");
    // The start-up pass of each sale settles what the previous one left (min_age 0: the
    // sales run one after another), with short backoff so the final passes converge. The
    // sandbox processes a request before its reply is delayed or dropped, never after: a
    // processing window of 2 s (journal time is wall time) lets "not found" settle.
    std::fs::write(
        &config,
        format!(
            "environment = \"sandbox\"\n[journal]\npath = {:?}\n[timeouts]\nrequest_ms = {}\nconnect_ms = 2000\n[resolver]\nmin_age_secs = 0\nbackoff_secs = 1\nmax_backoff_secs = 1\nmax_attempts = 1000\nprocessing_window_secs = 2\n",
            journal.display().to_string(),
            args.gateway_timeout_ms
        ),
    )
    .context("writing the relay configuration")?;
    let h = Harness {
        bin,
        url: sandbox.url(),
        http: reqwest::Client::new(),
        journal: journal.clone(),
        config,
        args: args.clone(),
    };
    let r = run_sales(&h).await;
    sandbox.shutdown().await;
    let f = r?;
    if f.passed() && args.journal.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("soak: journal kept at {}", journal.display());
    }
    Ok(f)
}

async fn run_sales(h: &Harness) -> anyhow::Result<SoakFigures> {
    let a = &h.args;
    let mut f = SoakFigures {
        sales: a.sales,
        seed: a.seed,
        dialect: a.dialect.to_string(),
        kill_rate: a.kill,
        line_faults: a.line_faults.clone(),
        line_events: a.line_events,
        gateway_fault_rate: a.gateway_faults,
        ..Default::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x50AC_50AC);
    // Per reference: whether the POS was shown an approval.
    let mut shown_approved: BTreeMap<String, bool> = BTreeMap::new();
    let t0 = Instant::now();
    let progress = crate::lab::progress_bar(u64::from(a.sales), "sales");
    for i in 0..a.sales {
        progress.set_position(u64::from(i));
        let (planned, minor) = plan_sale(a.seed, 0, i);
        *f.planned
            .entry(format!("{planned:?}").to_lowercase())
            .or_default() += 1;
        let reference = format!("soak-{}-{i}", a.seed);
        // Faults live for one sale: cleared before the next one is drawn.
        h.sim(reqwest::Method::DELETE, "/_sim/faults", None).await;
        let aim = rng.gen_bool(a.kill).then(|| {
            let kind = match rng.gen_range(0..4u32) {
                0 => KillAim::Early,
                1 => KillAim::InFlight,
                2 => KillAim::AfterApproval,
                _ => KillAim::AfterOutcome,
            };
            let jitter = match kind {
                KillAim::Early => Duration::from_millis(rng.gen_range(0..120)),
                KillAim::InFlight => Duration::from_millis(rng.gen_range(0..300)),
                KillAim::AfterApproval => Duration::from_millis(rng.gen_range(0..100)),
                KillAim::AfterOutcome => Duration::ZERO,
            };
            (kind, jitter)
        });
        let mut sim_faults: Vec<String> = Vec::new();
        if !a.line_faults.is_empty() {
            sim_faults.push(a.line_faults.clone());
        }
        if rng.gen_bool(a.line_events) {
            sim_faults.push(draw_line_event(&mut rng));
            f.line_events_injected += 1;
        }
        if rng.gen_bool(a.gateway_faults) {
            for _ in 0..rng.gen_range(1..=3u32) {
                let (name, rule) = draw_rule(&mut rng, a.dialect, &reference);
                let (s, _) = h
                    .sim(reqwest::Method::POST, "/_sim/faults", Some(rule))
                    .await;
                if s != 201 {
                    bail!("the sandbox refused a fault rule ({s})");
                }
                f.gateway_rules += 1;
                *f.gateway_rules_by_action.entry(name).or_default() += 1;
            }
        }
        if let Some((kind, _)) = aim {
            *f.kills_aimed
                .entry(
                    serde_json::to_value(kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                )
                .or_default() += 1;
            match kind {
                // Widen the window: the authorization is held for a while (FIFO rules, so
                // this comes first for this reference).
                KillAim::InFlight => {
                    let ms = rng.gen_range(300..800u64);
                    let rule = json!({"match": {"dialect": sim_dialect(a.dialect), "op": "emv", "client_ref": reference}, "action": {"type": "delay", "ms": ms}});
                    h.sim(reqwest::Method::POST, "/_sim/faults", Some(rule))
                        .await;
                }
                // The reader answers slowly, so the card's final answer is well after the
                // approval.
                KillAim::AfterApproval => sim_faults.push("slow=150ms".into()),
                _ => {}
            }
        }
        let child = h.sale(
            &reference,
            minor,
            &sim_faults.join(","),
            a.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i)),
        )?;
        f.resolver_passes += 1; // every sale runs a start-up pass
        let end = watch(h, child, &reference, aim).await;
        let status = serde_json::from_str::<Value>(end.stdout.trim())
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned));
        let kind = if end.hung {
            f.hung += 1;
            f.fail(format!(
                "{reference}: hung (no end within {}s)",
                a.sale_timeout_secs
            ));
            "hung".to_owned()
        } else if let Some(at) = end.killed_at {
            *f.kills_landed.entry(at).or_default() += 1;
            "killed".to_owned()
        } else {
            if aim.is_some() {
                f.kills_missed += 1;
            }
            match (&status, end.status) {
                (Some(s), Some(0 | 1)) => s.clone(),
                (_, code) => {
                    let why = end
                        .stderr
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("error:"))
                        .unwrap_or("no error line")
                        .chars()
                        .take(120)
                        .collect::<String>();
                    if code != Some(2) {
                        f.fail(format!("{reference}: exit {code:?}: {why}"));
                    }
                    let n = f.error_reasons.len();
                    if n < 32 || f.error_reasons.contains_key(&why) {
                        *f.error_reasons.entry(why).or_default() += 1;
                    }
                    "error".to_owned()
                }
            }
        };
        if kind == "unresolved" && a.gateway_faults == 0.0 && a.kill == 0.0 {
            f.fail(format!(
                "{reference}: unresolved with a healthy gateway ({planned:?})"
            ));
        }
        // What the POS saw (even from a sale killed after printing).
        shown_approved.insert(
            reference.clone(),
            matches!(
                status.as_deref(),
                Some("approved" | "partially_approved" | "approved_offline")
            ),
        );
        *f.outcomes.entry(kind).or_default() += 1;
        let _ = Planned::Approve; // plans are counted above
    }
    progress.finish_and_clear();
    // Settle everything: no faults, the sandbox clock moved on, resolver passes until
    // nothing is left (bounded).
    h.sim(reqwest::Method::DELETE, "/_sim/faults", None).await;
    h.sim(
        reqwest::Method::POST,
        "/_sim/clock",
        Some(json!({"advance_secs": 3600})),
    )
    .await;
    for pass in 0..8 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        f.final_resolve_passes += 1;
        f.resolver_passes += 1;
        if h.resolve()? {
            break;
        }
    }
    f.wall_s = t0.elapsed().as_secs_f64();
    f.sales_per_s = f64::from(a.sales) / f.wall_s.max(1e-9);
    check(h, &mut f, &shown_approved).await?;
    Ok(f)
}

/// `PRAGMA integrity_check` on the journal file: `ok`, or SQLite's first complaint.
fn integrity_check(path: &Path) -> anyhow::Result<String> {
    let c =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))?)
}

/// The invariants at the end of the run.
async fn check(
    h: &Harness,
    f: &mut SoakFigures,
    shown_approved: &BTreeMap<String, bool>,
) -> anyhow::Result<()> {
    let (s, orphans) = h
        .sim(
            reqwest::Method::POST,
            "/_sim/assert/no_orphans",
            Some(json!({})),
        )
        .await;
    f.no_orphans = s == 200;
    let (_, ledger) = h.sim(reqwest::Method::GET, "/_sim/ledger", None).await;
    let mut charged: BTreeMap<String, u64> = BTreeMap::new();
    for t in ledger["transactions"].as_array().into_iter().flatten() {
        let kind = t["kind"].as_str().unwrap_or("");
        if matches!(kind, "sale" | "auth") && t["state"] == "approved" {
            if let Some(r) = t["client_ref"].as_str() {
                *charged.entry(r.to_owned()).or_default() += 1;
            }
        }
    }
    f.ledger_charged = charged.len() as u64;
    let journal = crate::journal::Journal::open(&h.journal)?;
    let mut rows = BTreeMap::new();
    for e in journal.between(i64::MIN, i64::MAX)? {
        *f.journal_states
            .entry(e.state.as_str().to_owned())
            .or_default() += 1;
        rows.insert(e.reference.clone(), e);
    }
    let unresolved = journal.unresolved()?;
    // Pay1st rows whose lookups said the payment cannot be found by our reference.
    let mut unfindable = std::collections::BTreeSet::new();
    for e in unresolved.iter().filter(|e| e.dialect == "pay1st") {
        if journal
            .history(&e.reference)?
            .iter()
            .any(|h| h.2.contains("no query by partnerReference"))
        {
            unfindable.insert(e.reference.clone());
        }
    }
    drop(journal);
    f.integrity = integrity_check(&h.journal)?;
    if f.integrity != "ok" {
        f.fail(format!("integrity_check: {}", f.integrity));
    }
    let no_void_api = |e: &crate::journal::Entry| {
        e.dialect == "pay1st"
            && matches!(e.state, RelayState::ReversalFailed | RelayState::Escalated)
            && e.reason
                .as_deref()
                .is_some_and(|r| r.contains("no capture, void or refund api"))
    };
    // Pay1st is queried by its own reference only: a sale whose create reply was lost cannot
    // be looked up, so whether it charged is for an operator to find (at most one charge).
    let no_lookup = |e: &crate::journal::Entry| {
        e.dialect == "pay1st"
            && (unfindable.contains(&e.reference)
                || e.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("no query by partnerReference")))
    };
    for e in unresolved.iter().filter(|e| no_lookup(e)) {
        f.irreversible += 1;
        if charged.get(&e.reference).copied().unwrap_or(0) > 1 {
            f.fail(format!(
                "{}: left for an operator with a double charge",
                e.reference
            ));
        }
    }
    // The orphans the sandbox reports must be exactly such sales.
    if !f.no_orphans {
        let left: Vec<&str> = unresolved
            .iter()
            .filter(|e| no_lookup(e) || no_void_api(e))
            .map(|e| e.reference.as_str())
            .collect();
        let all_left = s == 409
            && orphans["orphans"].as_array().is_some_and(|o| {
                o.iter()
                    .all(|x| x["client_ref"].as_str().is_some_and(|r| left.contains(&r)))
            });
        f.no_orphans = all_left;
        if !all_left {
            f.fail(format!("/_sim/assert/no_orphans answered {s}"));
        }
    }
    let no_void_api = |e: &crate::journal::Entry| no_void_api(e) && !no_lookup(e);
    for e in unresolved.iter().filter(|e| no_void_api(e)) {
        f.irreversible += 1;
        if charged.get(&e.reference).copied() != Some(1) {
            f.fail(format!(
                "{}: irreversible row without exactly one charge",
                e.reference
            ));
        }
    }
    for e in unresolved
        .iter()
        .filter(|e| !no_void_api(e) && !no_lookup(e))
    {
        f.unsettled += 1;
        f.fail(format!(
            "{}: journal row left {} (pos {:?})",
            e.reference, e.state, e.pos_status
        ));
    }
    for (r, n) in &charged {
        if *n > 1 {
            f.double_charges += 1;
            f.fail(format!("{r}: charged {n} times"));
        }
    }
    for (r, shown) in shown_approved {
        let n = charged.get(r).copied().unwrap_or(0);
        let row = rows.get(r);
        let completed = row.is_some_and(|e| {
            e.pos_approved() && matches!(e.state, RelayState::Approved | RelayState::Forwarded)
        });
        if *shown && (!completed || n != 1) {
            f.lost_approvals += 1;
            f.fail(format!(
                "{r}: the POS was shown an approval; journal {:?}, {n} charge(s)",
                row.map(|e| e.state)
            ));
        }
        if completed != (n >= 1) && !row.is_some_and(|e| no_void_api(e) || no_lookup(e)) {
            f.disagreements += 1;
            f.fail(format!(
                "{r}: journal {:?}/{:?} but {n} charge(s) in the ledger",
                row.map(|e| e.state),
                row.and_then(|e| e.pos_status.clone())
            ));
        }
    }
    Ok(())
}

/// Runs `emvbridge soak` and prints the figures: exit 0 when every invariant holds, 1 when
/// one does not. An error is a usage or setup error (exit 2).
///
/// # Errors
/// Bad arguments, a sandbox gateway or scratch directory that cannot be set up.
pub async fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let f = soak(args).await?;
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
        eprintln!("soak: FAILED");
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_rules_are_accepted_by_the_sandbox_parser() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let (name, rule) = draw_rule(&mut rng, Dialect::Number, "r-1");
            let parsed: emvbridge_sandbox::faults::FaultRule =
                serde_json::from_value(rule.clone()).unwrap();
            assert!(parsed.times >= 1, "{rule}");
            if rule["match"]["op"] == "emv" {
                assert_eq!(rule["match"]["client_ref"], "r-1");
            }
            names.insert(name.split('+').next().unwrap_or("").to_owned());
        }
        for n in [
            "delay",
            "hang",
            "drop",
            "drop_mid_body",
            "http",
            "malformed",
            "auth_expire",
            "void_decline",
        ] {
            assert!(names.contains(n), "{n} never drawn: {names:?}");
        }
    }

    #[test]
    fn drawn_line_events_parse_as_fault_plans() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..200 {
            let e = draw_line_event(&mut rng);
            let spec = format!("flip=0.001,{e},slow=150ms");
            assert!(
                spec.parse::<emvbridge_sim::faults::FaultPlan>().is_ok(),
                "{spec}"
            );
        }
    }

    #[test]
    fn fractions_are_checked() {
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("-0.1").is_err());
        assert!(parse_fraction("x").is_err());
    }

    #[test]
    fn kills_land_where_the_journal_says() {
        assert_eq!(landed(None), "no_row");
        assert_eq!(landed(Some(("sending".into(), None))), "sending");
        assert_eq!(landed(Some(("approved".into(), None))), "approved_untold");
        assert_eq!(
            landed(Some(("approved".into(), Some("approved".into())))),
            "outcome_journaled"
        );
    }
}
