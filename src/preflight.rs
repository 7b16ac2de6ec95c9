//! `emvbridge preflight` (issue 7): the final technical checklist of seed 001 ("Final
//! technical checklist": webhooks live and answering 200, HMAC verification tested, API keys in
//! backend environment variables and not in source control) and seed 002 (token, end-to-end
//! test payment in the sandbox), run against the configured environment:
//!
//! | item | how |
//! |---|---|
//! | configuration | the TOML parses, environment and dialect are set |
//! | credentials present | every required variable of the dialect (and its webhook secrets) is set; values never printed |
//! | credentials not in the repository | the secrets file (if any) is owner-only and outside any git work tree |
//! | gateway reachable and authenticated | an authenticated call that creates nothing: Number `Authenticate`; PAI a transaction lookup by a random reference; Pay1st a token and a signed lookup (not found = pass) |
//! | webhook endpoint | a signed [`TEST_EVENT_TYPE`] event must get 200, a badly signed one 401 (the configured URL, else the receiver in-process on loopback); Number has no webhooks |
//! | scenario: … | simulated reader + sandbox gateway with the configured dialect: approved, declined, insufficient funds, card removed, timeout → reversal, then `/_sim/assert/no_orphans` |
//! | journal writable / integrity | a probe row written and deleted in one transaction; `PRAGMA integrity_check`, WAL + `synchronous=FULL` |
//! | nothing unresolved | no journal row the report lists as unsettled |
//!
//! The scenarios never charge a real gateway: with `environment = "sandbox"` they run against
//! the configured sandbox URL (its `/_sim` control plane injects the decline and the hang),
//! otherwise against an in-process sandbox speaking the configured dialect (the adapter and
//! engine code paths are the ones production uses; the credentials were checked above).
//!
//! Exit 0 only when every item passed; `[skip]` is used only for items that do not apply.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emvbridge_sim::scenario::Control;
use serde_json::{json, Value};

use crate::config::{self, FileConfig, Lookup};
use crate::gateway::http::{HttpClient, HttpSettings};
use crate::gateway::{Dialect, Environment, Gateway, GatewayConfig, Secret, StatusResult};
use crate::journal::Journal;
use emvbridge_core::money::Money;
use emvbridge_core::txn::{AppChoice, AuthKind, OutcomeStatus, Reference, TxnConfig, TxnRequest};
use crate::webhooks::TEST_EVENT_TYPE;

/// The verdict of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Passed.
    Ok,
    /// Failed: must be fixed before go-live.
    Fail,
    /// Does not apply to this environment or dialect.
    Skip,
}

/// One line of the checklist. `detail` never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// How it was checked, or why it failed / was skipped.
    pub detail: String,
}

/// The checklist.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// The items, in order.
    pub items: Vec<Item>,
}

impl Report {
    fn push(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        self.items.push(Item {
            name: name.to_owned(),
            status,
            detail: detail.into(),
        });
    }

    fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Ok, detail);
    }

    fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Fail, detail);
    }

    /// True when no item failed (skips are only emitted for items that do not apply).
    pub fn passed(&self) -> bool {
        self.items.iter().all(|i| i.status != Status::Fail)
    }

    /// The item called `name`.
    pub fn item(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.name == name)
    }

    /// `[ ok ] name: detail` lines.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for i in &self.items {
            let tag = match i.status {
                Status::Ok => "[ ok ]",
                Status::Fail => "[FAIL]",
                Status::Skip => "[skip]",
            };
            let detail = match i.status {
                Status::Ok => format!(": {}", i.detail),
                _ => format!(" ({})", i.detail),
            };
            s.push_str(&format!("{tag} {}{detail}\n", i.name));
        }
        let failed = self
            .items
            .iter()
            .filter(|i| i.status == Status::Fail)
            .count();
        if failed == 0 {
            s.push_str("preflight: every item passed\n");
        } else {
            s.push_str(&format!("preflight: {failed} item(s) failed\n"));
        }
        s
    }

    /// `{"passed": bool, "items": [{name, status, detail}]}`.
    pub fn json(&self) -> Value {
        json!({"passed": self.passed(), "items": self.items})
    }
}

/// Item names (stable: tools match on them).
pub mod items {
    /// The TOML, environment and dialect.
    pub const CONFIGURATION: &str = "configuration";
    /// Required variables set.
    pub const CREDENTIALS_PRESENT: &str = "credentials present";
    /// Secrets file permissions and location.
    pub const CREDENTIALS_NOT_IN_REPO: &str = "credentials not in the repository";
    /// An authenticated call.
    pub const GATEWAY: &str = "gateway reachable and authenticated";
    /// Signed and badly signed test events.
    pub const WEBHOOK: &str = "webhook endpoint answers 200 and verifies signatures";
    /// Scenario: approved.
    pub const APPROVED: &str = "scenario: approved";
    /// Scenario: declined by the issuer.
    pub const DECLINED: &str = "scenario: declined";
    /// Scenario: insufficient funds.
    pub const NSF: &str = "scenario: insufficient funds";
    /// Scenario: card removed before the final answer.
    pub const CARD_REMOVED: &str = "scenario: card removed";
    /// Scenario: lost gateway reply, then reversal.
    pub const TIMEOUT: &str = "scenario: timeout -> reversal";
    /// The sandbox ledger has nothing left standing.
    pub const NO_ORPHANS: &str = "scenario: sandbox has no orphans";
    /// Probe write.
    pub const JOURNAL_WRITABLE: &str = "journal writable";
    /// Integrity and durability settings.
    pub const JOURNAL_INTEGRITY: &str = "journal integrity";
    /// No unsettled rows.
    pub const UNRESOLVED: &str = "nothing unresolved";

    /// Every item, in order.
    pub const ALL: [&str; 14] = [
        CONFIGURATION,
        CREDENTIALS_PRESENT,
        CREDENTIALS_NOT_IN_REPO,
        GATEWAY,
        WEBHOOK,
        APPROVED,
        DECLINED,
        NSF,
        CARD_REMOVED,
        TIMEOUT,
        NO_ORPHANS,
        JOURNAL_WRITABLE,
        JOURNAL_INTEGRITY,
        UNRESOLVED,
    ];
}

/// What to run against.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The TOML configuration.
    pub config: Option<PathBuf>,
    /// Read the process environment (off in tests, which pass `extra`).
    pub process_env: bool,
    /// Variables taking precedence over the environment and the secrets file.
    pub extra: HashMap<String, String>,
    /// The live webhook endpoint (full URL of the dialect's route); otherwise
    /// `PAY1ST_WEBHOOK_URL` for Pay1st, otherwise the receiver in-process on loopback.
    pub webhook_url: Option<String>,
}

/// Arguments of `emvbridge preflight`.
#[derive(clap::Args, Debug)]
pub struct PreflightArgs {
    /// The TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The live webhook endpoint to test (e.g. `https://pos.example/webhooks/pai`); default:
    /// `PAY1ST_WEBHOOK_URL` for Pay1st, else the receiver started in-process on 127.0.0.1.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Print the checklist as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `emvbridge preflight`: exit 0 when every item passed, 1 otherwise, 2 on a setup error.
pub fn run(args: PreflightArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        config: args.config,
        process_env: true,
        extra: HashMap::new(),
        webhook_url: args.webhook_url,
    };
    let report = rt.block_on(preflight(&opts));
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Everything the checks share once the configuration is read.
struct Setup {
    cfg: FileConfig,
    env: Environment,
    dialect: Dialect,
    lookup: Lookup,
}

/// Runs every item.
pub async fn preflight(opts: &Options) -> Report {
    let mut r = Report::default();
    let Some(setup) = configuration(opts, &mut r) else {
        not_run(&mut r, "configuration incomplete");
        return r;
    };
    let gateway_cfg = credentials(&setup, &mut r);
    match &gateway_cfg {
        Some(g) => gateway_check(g.clone(), &setup, &mut r).await,
        None => r.fail(items::GATEWAY, "not run: gateway configuration incomplete"),
    }
    webhook_check(&setup, opts, &mut r).await;
    scenarios(&setup, &mut r).await;
    journal_checks(&setup, &mut r);
    r
}

fn not_run(r: &mut Report, why: &str) {
    let done: Vec<String> = r.items.iter().map(|i| i.name.clone()).collect();
    for name in items::ALL {
        if !done.iter().any(|d| d == name) {
            r.fail(name, format!("not run: {why}"));
        }
    }
}

/// Configuration, and "credentials not in the repository" (the secrets file must be read
/// before the lookup exists).
fn configuration(opts: &Options, r: &mut Report) -> Option<Setup> {
    let cfg = match &opts.config {
        None => FileConfig::default(),
        Some(p) => match FileConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                r.fail(items::CONFIGURATION, e.to_string());
                return None;
            }
        },
    };
    let (env, dialect) = match (cfg.environment(), cfg.dialect()) {
        (Some(e), Some(d)) => (e, d),
        (e, d) => {
            let mut missing = Vec::new();
            if e.is_none() {
                missing.push("environment (sandbox, staging or production)");
            }
            if d.is_none() {
                missing.push("dialect (number, paymentsai or pay1st)");
            }
            r.fail(
                items::CONFIGURATION,
                format!("missing or invalid: {}", missing.join(", ")),
            );
            return None;
        }
    };
    r.ok(
        items::CONFIGURATION,
        format!(
            "{}environment {}, dialect {dialect}",
            opts.config
                .as_ref()
                .map(|p| format!("{}: ", p.display()))
                .unwrap_or_default(),
            env_name(env)
        ),
    );
    let file = match &cfg.secrets_file {
        None => {
            r.ok(
                items::CREDENTIALS_NOT_IN_REPO,
                "no secrets file: secrets come from the process environment",
            );
            HashMap::new()
        }
        Some(p) => {
            let shown = p.display();
            let mut problems = Vec::new();
            match config::group_or_world_readable(p) {
                None => problems.push(format!("secrets file {shown} cannot be read")),
                Some(true) => problems.push(format!(
                    "secrets file {shown} is readable by group or others (chmod 600)"
                )),
                Some(false) => {}
            }
            if config::inside_git_tree(p) {
                problems.push(format!("secrets file {shown} is inside a git work tree"));
            }
            let file = match config::read_secrets_file(p) {
                Ok(f) => f,
                Err(e) => {
                    // Permission and location problems are already listed; anything else
                    // (unreadable, a bad line) is said here.
                    if problems.is_empty() {
                        problems.push(e.to_string());
                    }
                    HashMap::new()
                }
            };
            if problems.is_empty() {
                r.ok(
                    items::CREDENTIALS_NOT_IN_REPO,
                    format!("secrets file {shown}: owner-only, outside any git work tree"),
                );
            } else {
                r.fail(items::CREDENTIALS_NOT_IN_REPO, problems.join("; "));
            }
            file
        }
    };
    let lookup = Lookup::new(&cfg, file, opts.process_env, opts.extra.clone());
    Some(Setup {
        cfg,
        env,
        dialect,
        lookup,
    })
}

fn env_name(e: Environment) -> &'static str {
    match e {
        Environment::Sandbox => "sandbox",
        Environment::Staging => "staging",
        Environment::Production => "production",
    }
}

/// "credentials present": every required variable, the webhook secrets, and a complete
/// gateway configuration. Returns the configuration when complete.
fn credentials(s: &Setup, r: &mut Report) -> Option<GatewayConfig> {
    let mut missing: Vec<&str> = Vec::new();
    let mut set: Vec<&str> = Vec::new();
    for (name, _secret, required) in config::variables(s.dialect, s.env) {
        match (s.lookup.get(name), required) {
            (Some(_), _) => set.push(name),
            (None, true) => missing.push(name),
            (None, false) => {}
        }
    }
    for name in config::webhook_variables(s.dialect) {
        match s.lookup.get(name) {
            Some(_) => set.push(name),
            None => missing.push(name),
        }
    }
    let gw = GatewayConfig::from_lookup(s.dialect, s.env, &|n| s.lookup.get(n));
    // Insert the credentials-present item before "not in the repository" for reading order.
    let item = match (&gw, missing.is_empty()) {
        (Ok(_), true) => Item {
            name: items::CREDENTIALS_PRESENT.into(),
            status: Status::Ok,
            detail: format!("{} set (values not shown)", set.join(", ")),
        },
        (gw, _) => {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("missing: {}", missing.join(", ")));
            }
            if let Err(e) = gw {
                if !matches!(e, crate::gateway::ConfigError::Missing(_)) || missing.is_empty() {
                    why.push(format!("gateway configuration: {e}"));
                }
            }
            Item {
                name: items::CREDENTIALS_PRESENT.into(),
                status: Status::Fail,
                detail: why.join("; "),
            }
        }
    };
    let at = r
        .items
        .iter()
        .position(|i| i.name == items::CREDENTIALS_NOT_IN_REPO)
        .unwrap_or(r.items.len());
    r.items.insert(at, item);
    gw.ok()
}

/// A random reference no gateway can know.
fn probe_reference() -> Reference {
    let n: u64 = rand::random();
    Reference(format!("preflight-{n:016x}"))
}

/// Short timeouts: a check must not hang the checklist.
fn check_http(cfg: &FileConfig) -> HttpSettings {
    let base = cfg.http();
    HttpSettings {
        connect_timeout: base.connect_timeout.min(Duration::from_secs(5)),
        request_timeout: base.request_timeout.min(Duration::from_secs(10)),
        max_attempts: 1,
        ..base
    }
}

async fn gateway_check(gw: GatewayConfig, s: &Setup, r: &mut Report) {
    let started = Instant::now();
    let http = check_http(&s.cfg);
    let verdict: Result<String, String> = match gw {
        GatewayConfig::Number(c) => {
            // Authenticate only: it opens a session and moves no money.
            match HttpClient::new(http) {
                Err(e) => Err(e.to_string()),
                Ok(client) => {
                    let ex = client
                        .send(
                            &c.base_url,
                            &crate::gateway::number::authenticate_request(&c),
                        )
                        .await;
                    let now = crate::gateway::Clock::unix_now(&crate::gateway::SystemClock);
                    match crate::gateway::number::parse_authenticate(&ex, now) {
                        Ok(_) => Ok("number: Authenticate answered with a session key".into()),
                        Err(crate::gateway::number::LoginFailure::NotSent(why))
                        | Err(crate::gateway::number::LoginFailure::Failed(why)) => {
                            Err(format!("number: Authenticate failed: {why}"))
                        }
                    }
                }
            }
        }
        other => {
            let what = match &other {
                GatewayConfig::PaymentsAi(_) => {
                    "paymentsai: transaction lookup by a random reference"
                }
                _ => "pay1st: access token and a signed lookup by a random reference",
            };
            match crate::gateway::connect(other, http) {
                Err(e) => Err(e.to_string()),
                Ok(g) => match g.status(&probe_reference()).await {
                    StatusResult::NotFound => Ok(format!("{what} answered (not found)")),
                    StatusResult::Found(_) => Ok(format!("{what} answered")),
                    StatusResult::Unknown { reason } => Err(format!("{what} failed: {reason}")),
                },
            }
        }
    };
    let ms = started.elapsed().as_millis();
    match verdict {
        Ok(d) => r.ok(items::GATEWAY, format!("{d} in {ms} ms")),
        Err(d) => r.fail(items::GATEWAY, d),
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// A signed test event and a badly signed copy for `dialect`.
fn test_event(s: &Setup) -> Result<(Vec<u8>, &'static str, String, String), String> {
    let id = probe_reference().0;
    match s.dialect {
        Dialect::PaymentsAi => {
            let secret = s
                .lookup
                .get("PAI_WEBHOOK_SECRET")
                .ok_or("PAI_WEBHOOK_SECRET missing")?;
            let body = serde_json::to_vec(&json!({
                "deduplicationId": id,
                "type": TEST_EVENT_TYPE,
                "organizationId": s.lookup.get("ORGANIZATION_ID").unwrap_or_default(),
            }))
            .map_err(|_| "cannot build the test event".to_owned())?;
            let good = crate::gateway::sign::pai_webhook_signature(&secret, &body);
            let bad = crate::gateway::sign::pai_webhook_signature(&format!("{secret}-wrong"), &body);
            Ok((body, "pai", good, bad))
        }
        Dialect::Pay1st => {
            let user = s
                .lookup
                .get("PAY1ST_WEBHOOK_USER")
                .ok_or("PAY1ST_WEBHOOK_USER missing")?;
            let pass = s
                .lookup
                .get("PAY1ST_WEBHOOK_PASS")
                .ok_or("PAY1ST_WEBHOOK_PASS missing")?;
            let text =
                json!({"type": TEST_EVENT_TYPE, "reference": id, "status": "TEST"}).to_string();
            let good = crate::gateway::sign::pay1st_webhook_signature(&user, &pass, &text);
            let bad = crate::gateway::sign::pay1st_webhook_signature(&user, &format!("{pass}-wrong"), &text);
            Ok((text.into_bytes(), "pay1st", good, bad))
        }
        Dialect::Number => Err("number has no webhooks".into()),
    }
}

async fn webhook_check(s: &Setup, opts: &Options, r: &mut Report) {
    if s.dialect == Dialect::Number {
        r.push(
            items::WEBHOOK,
            Status::Skip,
            "number sends no signed transaction webhooks for API or Verifone sales (gateways.md §1)",
        );
        return;
    }
    let (body, route, good, bad) = match test_event(s) {
        Ok(x) => x,
        Err(e) => {
            r.fail(items::WEBHOOK, format!("not run: {e}"));
            return;
        }
    };
    let configured = opts.webhook_url.clone().or_else(|| {
        (s.dialect == Dialect::Pay1st)
            .then(|| s.lookup.get("PAY1ST_WEBHOOK_URL"))
            .flatten()
    });
    // The in-process receiver, when no live endpoint is configured.
    let mut server = None;
    let (url, target) = match configured {
        Some(u) => (u.clone(), format!("configured endpoint {u}")),
        None => match start_receiver(s).await {
            Ok((addr, task)) => {
                server = Some(task);
                (
                    format!("http://{addr}/webhooks/{route}"),
                    format!("in-process receiver on {addr}"),
                )
            }
            Err(e) => {
                r.fail(items::WEBHOOK, format!("cannot start the receiver: {e}"));
                return;
            }
        },
    };
    let header = match s.dialect {
        Dialect::PaymentsAi => s.cfg.webhooks.pai_signature_header.clone(),
        _ => "X-SIGNATURE".to_owned(),
    };
    let result = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| "cannot build the http client".to_owned())?;
        let mut codes = Vec::new();
        for sig in [&good, &bad] {
            let resp = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header(header.as_str(), sig.as_str())
                .body(body.clone())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "{url}: {}",
                        if e.is_timeout() {
                            "timeout"
                        } else {
                            "no answer"
                        }
                    )
                })?;
            codes.push(resp.status().as_u16());
        }
        Ok::<_, String>(codes)
    }
    .await;
    if let Some(task) = server {
        task.abort();
    }
    match result.as_deref() {
        Ok([200, 401]) => r.ok(
            items::WEBHOOK,
            format!("{target}: signed test event 200, bad signature 401"),
        ),
        Ok([g, b]) => r.fail(
            items::WEBHOOK,
            format!("{target}: signed test event {g} (want 200), bad signature {b} (want 401)"),
        ),
        Ok(_) => r.fail(items::WEBHOOK, "no answer"),
        Err(e) => r.fail(items::WEBHOOK, e.clone()),
    }
}

/// Starts the receiver with the configured secrets on 127.0.0.1:0. Its journal is an
/// in-memory one: the test event touches nothing, and a real delivery cannot reach it.
async fn start_receiver(
    s: &Setup,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), String> {
    let journal = Journal::open(std::path::Path::new(":memory:")).map_err(|e| e.to_string())?;
    let config = crate::webhooks::WebhookConfig {
        pai_secret: s.lookup.get("PAI_WEBHOOK_SECRET").map(Secret::new),
        pai_header: s.cfg.webhooks.pai_signature_header.clone(),
        pay1st_auth: match (
            s.lookup.get("PAY1ST_WEBHOOK_USER"),
            s.lookup.get("PAY1ST_WEBHOOK_PASS"),
        ) {
            (Some(u), Some(p)) => Some((Secret::new(u), Secret::new(p))),
            _ => None,
        },
        max_skew_secs: s.cfg.webhooks.max_skew_secs,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let receiver = Arc::new(crate::webhooks::Receiver {
        journal: Arc::new(journal),
        config,
        gateways: Vec::new(),
    });
    let task = tokio::spawn(async move {
        let _ = crate::webhooks::serve(listener, receiver).await;
    });
    Ok((addr, task))
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// One scripted sale.
struct Scenario {
    item: &'static str,
    card: &'static str,
    amount: u64,
    /// Simulator faults (`--faults` syntax).
    sim_faults: &'static str,
    /// A sandbox fault action on this sale's reference (`/_sim/faults`).
    gateway_fault: Option<Value>,
    /// Acceptable outcomes.
    expect: &'static [OutcomeStatus],
    /// The decline code it must carry.
    expect_code: Option<&'static str>,
    /// Ends in a reversal of an approval (card removed, lost reply).
    reverses: bool,
}

fn script() -> Vec<Scenario> {
    vec![
        Scenario {
            item: items::APPROVED,
            card: "visa-cvn18",
            amount: 1234,
            sim_faults: "",
            gateway_fault: None,
            expect: &[OutcomeStatus::Approved],
            expect_code: None,
            reverses: false,
        },
        Scenario {
            item: items::DECLINED,
            card: "visa-cvn18",
            amount: 1300,
            sim_faults: "",
            gateway_fault: Some(json!({"type": "decline", "code": "05"})),
            expect: &[OutcomeStatus::Declined],
            expect_code: None,
            reverses: false,
        },
        Scenario {
            item: items::NSF,
            card: "visa-cvn18",
            // gateways.md §4.5: an amount ending .51 declines with 51.
            amount: 1051,
            sim_faults: "",
            gateway_fault: None,
            expect: &[OutcomeStatus::Declined],
            expect_code: Some("51"),
            reverses: false,
        },
        Scenario {
            item: items::CARD_REMOVED,
            card: "visa-cvn18",
            amount: 1500,
            sim_faults: "remove-at=e4",
            gateway_fault: None,
            expect: &[OutcomeStatus::Reversed, OutcomeStatus::Cancelled],
            expect_code: None,
            reverses: true,
        },
        Scenario {
            item: items::TIMEOUT,
            card: "visa-cvn18",
            amount: 1777,
            sim_faults: "",
            // Committed, then no answer: the client times out, the bridge must reverse.
            gateway_fault: Some(json!({"type": "hang", "commit": true})),
            expect: &[OutcomeStatus::Reversed],
            expect_code: None,
            reverses: true,
        },
    ]
}

/// The sandbox root behind a dialect's configured base URL (`http://127.0.0.1:N/pai` →
/// `http://127.0.0.1:N`).
fn sandbox_root(dialect: Dialect, base: &str) -> String {
    let base = base.trim_end_matches('/');
    let suffix = match dialect {
        Dialect::PaymentsAi => "/pai",
        Dialect::Pay1st => "/pay1st",
        Dialect::Number => "/number/APIcardProcNumber/v1.0.0",
    };
    base.strip_suffix(suffix).unwrap_or(base).to_owned()
}

/// Scenario HTTP: short timeouts so that a hang is a timeout in seconds, and no re-send (a
/// re-send of an idempotent request would hide the lost reply the scenario is about).
fn scenario_http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(1500),
        max_attempts: 1,
        backoff: Duration::from_millis(50),
        max_body: 1 << 20,
    }
}

async fn scenarios(s: &Setup, r: &mut Report) {
    let names: Vec<&str> = script().iter().map(|x| x.item).collect();
    let fail_all = |r: &mut Report, why: String| {
        for n in names.iter().copied().chain([items::NO_ORPHANS]) {
            r.fail(n, why.clone());
        }
    };
    // Where: the configured sandbox, or one in-process.
    let mut embedded = None;
    let (gateway, root, place): (Arc<dyn Gateway>, String, String) =
        if s.env == Environment::Sandbox {
            let built = GatewayConfig::from_lookup(s.dialect, s.env, &|n| s.lookup.get(n))
                .map_err(|e| e.to_string())
                .and_then(|g| crate::gateway::connect(g, scenario_http()).map_err(|e| e.to_string()));
            let base = s.lookup.get(config::url_var(s.dialect)).unwrap_or_default();
            match built {
                Ok(g) => {
                    let root = sandbox_root(s.dialect, &base);
                    (g, root.clone(), format!("configured sandbox {root}"))
                }
                Err(e) => {
                    fail_all(r, format!("not run: {e}"));
                    return;
                }
            }
        } else {
            match emvbridge_sandbox::spawn(emvbridge_sandbox::SandboxConfig::default()).await {
                Ok(h) => {
                    let url = h.url();
                    let g = match crate::sale::sandbox_gateway(s.dialect, &url, scenario_http()) {
                        Ok(g) => g,
                        Err(e) => {
                            fail_all(r, format!("not run: {e}"));
                            return;
                        }
                    };
                    embedded = Some(h);
                    (g, url, "in-process sandbox (no real payment)".to_owned())
                }
                Err(e) => {
                    fail_all(r, format!("not run: cannot start the sandbox: {e}"));
                    return;
                }
            }
        };
    let control = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(_) => {
            fail_all(r, "not run: cannot build the http client".into());
            return;
        }
    };
    let sim = match crate::terminal::SimDevice::start("visa-cvn18").await {
        Ok(x) => x,
        Err(e) => {
            fail_all(r, format!("not run: simulated reader: {e}"));
            return;
        }
    };
    let (link, mut events, _info) = match crate::terminal::connect(sim.addr.clone(), 57_600).await {
        Ok(x) => x,
        Err(e) => {
            fail_all(r, format!("not run: simulated reader: {e}"));
            return;
        }
    };
    let txn_config = TxnConfig {
        card_timeout: Duration::from_secs(20),
        final_timeout: Duration::from_secs(10),
        host_timeout: Duration::from_secs(10),
        reversal_timeout: Duration::from_secs(10),
        ..TxnConfig::default()
    };
    for sc in script() {
        let started = Instant::now();
        let verdict = run_scenario(
            &sc,
            &sim.handle,
            &link,
            &mut events,
            gateway.clone(),
            &control,
            &root,
            txn_config.clone(),
            s.dialect,
        )
        .await;
        let ms = started.elapsed().as_millis();
        match verdict {
            Ok((Status::Ok, d)) => r.ok(sc.item, format!("{d} ({place}, {ms} ms)")),
            Ok((st, d)) => r.push(sc.item, st, format!("{d} ({place})")),
            Err(d) => r.fail(sc.item, format!("{d} ({place})")),
        }
    }
    link.shutdown().await;
    drop(sim);
    // Whatever did not fire is cleared; then the ledger must have nothing left standing.
    let _ = control.delete(format!("{root}/_sim/faults")).send().await;
    match control
        .post(format!("{root}/_sim/assert/no_orphans"))
        .send()
        .await
    {
        Ok(resp) if resp.status().as_u16() == 200 => r.ok(
            items::NO_ORPHANS,
            format!("{root}/_sim/assert/no_orphans answered 200"),
        ),
        Ok(resp) => r.fail(
            items::NO_ORPHANS,
            format!(
                "/_sim/assert/no_orphans answered {} (an approval was left standing)",
                resp.status().as_u16()
            ),
        ),
        Err(_) => r.fail(items::NO_ORPHANS, "/_sim/assert/no_orphans: no answer"),
    }
    if let Some(h) = embedded {
        h.shutdown().await;
    }
}

fn status_text(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Approved => "approved",
        OutcomeStatus::PartiallyApproved => "partially approved",
        OutcomeStatus::ApprovedOffline => "approved offline",
        OutcomeStatus::Declined => "declined",
        OutcomeStatus::Cancelled => "cancelled",
        OutcomeStatus::Reversed => "reversed",
        OutcomeStatus::Unresolved => "unresolved",
        OutcomeStatus::Failed => "failed",
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_scenario(
    sc: &Scenario,
    sim: &emvbridge_sim::transport::DeviceHandle,
    link: &crate::driver::ReaderLink,
    events: &mut tokio::sync::mpsc::Receiver<crate::driver::LinkEvent>,
    gateway: Arc<dyn Gateway>,
    control: &reqwest::Client,
    root: &str,
    txn_config: TxnConfig,
    dialect: Dialect,
) -> Result<(Status, String), String> {
    let reference = crate::terminal::new_reference();
    sim.control(Control::Card {
        profile: sc.card.into(),
    })
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    sim.control(Control::Faults {
        spec: sc.sim_faults.into(),
    })
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    if let Some(action) = &sc.gateway_fault {
        let rule = json!({"match": {"client_ref": reference.0}, "action": action, "times": 1});
        let resp = control
            .post(format!("{root}/_sim/faults"))
            .json(&rule)
            .send()
            .await
            .map_err(|_| "sandbox control plane: no answer".to_owned())?;
        if !resp.status().is_success() {
            return Err(format!(
                "sandbox control plane refused the fault rule ({})",
                resp.status().as_u16()
            ));
        }
    }
    let amount = Money::from_minor(sc.amount, "USD").map_err(|e| e.to_string())?;
    let (date, time) = crate::engine::utc_date_time(std::time::SystemTime::now());
    let req = TxnRequest {
        reference: reference.clone(),
        kind: AuthKind::Sale,
        amount,
        amount_other: 0,
        date,
        time,
        app_choice: AppChoice::CardPriority,
        original_gateway_id: None,
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        crate::engine::run_transaction(link, events, gateway, req, txn_config, |_| {}),
    )
    .await;
    let _ = sim
        .control(Control::Faults {
            spec: String::new(),
        })
        .await;
    let o = match outcome {
        Err(_) => return Err("no outcome within 30 s".into()),
        Ok(Err(e)) => return Err(format!("transaction error: {e}")),
        Ok(Ok(o)) => o,
    };
    let got = match &o.decline_code {
        Some(c) => format!("{} ({c})", status_text(o.status)),
        None => status_text(o.status).to_owned(),
    };
    let want: Vec<&str> = sc.expect.iter().map(|s| status_text(*s)).collect();
    let code_ok = sc
        .expect_code
        .is_none_or(|c| o.decline_code.as_deref() == Some(c));
    if sc.expect.contains(&o.status) && code_ok {
        if sc.reverses && o.status == OutcomeStatus::Reversed {
            // The bridge says reversed: the gateway's own ledger must agree.
            ledger_settled(control, root, &reference).await?;
            return Ok((
                Status::Ok,
                format!(
                    "{amount} on {}: {got}, and the sandbox ledger shows it voided/refunded",
                    sc.card
                ),
            ));
        }
        Ok((Status::Ok, format!("{amount} on {}: {got}", sc.card)))
    } else if sc.reverses && dialect == Dialect::Pay1st && o.status == OutcomeStatus::Unresolved {
        // gateways.md §3: Pay1st has no void or refund API, so there is no reversal to test.
        // What can be checked is that the bridge did not pretend: the sale ends unresolved
        // (the relay escalates it for a refund through Carry1st), never approved or reversed.
        Ok((
            Status::Skip,
            format!(
                "{amount} on {}: pay1st has no reversal api (gateways.md §3); the sale ended unresolved, as it must, and needs a refund through carry1st",
                sc.card
            ),
        ))
    } else {
        Err(format!(
            "{amount} on {}: got {got}, want {}{}{}",
            sc.card,
            want.join(" or "),
            sc.expect_code
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            o.reason
                .as_deref()
                .map(|r| format!("; {}", crate::gateway::short(r)))
                .unwrap_or_default()
        ))
    }
}

/// The sandbox ledger's rows for `reference`: the sale reached the gateway and no sale or
/// authorization with it is left approved.
async fn ledger_settled(
    control: &reqwest::Client,
    root: &str,
    reference: &Reference,
) -> Result<(), String> {
    let v: Value = control
        .get(format!("{root}/_sim/ledger"))
        .query(&[("client_ref", reference.0.as_str())])
        .send()
        .await
        .map_err(|_| "sandbox ledger: no answer".to_owned())?
        .json()
        .await
        .map_err(|_| "sandbox ledger: unreadable".to_owned())?;
    let rows = v
        .get("transactions")
        .and_then(Value::as_array)
        .ok_or("sandbox ledger: unreadable")?;
    let standing = rows.iter().any(|t| {
        matches!(t.get("kind").and_then(Value::as_str), Some("sale" | "auth"))
            && t.get("state").and_then(Value::as_str) == Some("approved")
    });
    match (rows.is_empty(), standing) {
        (true, _) => Err(format!(
            "reported reversed, but the sandbox ledger has no sale {reference}"
        )),
        (false, true) => Err(format!(
            "reported reversed, but the sandbox ledger still shows {reference} approved"
        )),
        (false, false) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Journal

fn journal_checks(s: &Setup, r: &mut Report) {
    let path = s.cfg.journal_path();
    let shown = path.display().to_string();
    let journal = match Journal::open(&path) {
        Ok(j) => j,
        Err(e) => {
            r.fail(items::JOURNAL_WRITABLE, format!("{shown}: {e}"));
            r.fail(
                items::JOURNAL_INTEGRITY,
                "not run: journal cannot be opened",
            );
            r.fail(items::UNRESOLVED, "not run: journal cannot be opened");
            return;
        }
    };
    match probe_write(&path) {
        Ok(()) => r.ok(
            items::JOURNAL_WRITABLE,
            format!("{shown}: probe row written and deleted in one transaction"),
        ),
        Err(e) => r.fail(items::JOURNAL_WRITABLE, format!("{shown}: {e}")),
    }
    match integrity(&path, &journal) {
        Ok(d) => r.ok(items::JOURNAL_INTEGRITY, d),
        Err(e) => r.fail(items::JOURNAL_INTEGRITY, e),
    }
    match journal.unresolved() {
        Err(e) => r.fail(items::UNRESOLVED, e.to_string()),
        Ok(rows) if rows.is_empty() => r.ok(items::UNRESOLVED, "no unsettled row in the journal"),
        Ok(rows) => {
            let mut by_state: std::collections::BTreeMap<String, usize> = Default::default();
            for e in &rows {
                *by_state.entry(e.state.as_str().to_owned()).or_default() += 1;
            }
            let states: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let refs: Vec<&str> = rows.iter().take(5).map(|e| e.reference.as_str()).collect();
            r.fail(
                items::UNRESOLVED,
                format!(
                    "{} unsettled row(s): {} (e.g. {}); run `emvbridge resolve`, see `emvbridge report`",
                    rows.len(),
                    states.join(", "),
                    refs.join(", ")
                ),
            );
        }
    }
}

/// Inserts and deletes a probe row in one committed transaction on a second connection: the
/// write lock, the schema and the fsync path all work. Nothing is left behind.
fn probe_write(path: &std::path::Path) -> Result<(), String> {
    let mut conn = rusqlite::Connection::open(path).map_err(|e| format!("open: {e}"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("open: {e}"))?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| format!("begin: {e}"))?;
    let reference = probe_reference().0;
    tx.execute(
        "INSERT INTO txns(reference, kind, amount_minor, currency, dialect, state, created_at, updated_at)
         VALUES (?1, 'sale', 0, 'USD', 'paymentsai', 'closed', 0, 0)",
        rusqlite::params![reference],
    )
    .map_err(|e| format!("write: {e}"))?;
    let n = tx
        .execute(
            "DELETE FROM txns WHERE reference = ?1",
            rusqlite::params![reference],
        )
        .map_err(|e| format!("delete: {e}"))?;
    if n != 1 {
        return Err("probe row not found after writing it".into());
    }
    tx.commit().map_err(|e| format!("commit: {e}"))
}

fn integrity(path: &std::path::Path, journal: &Journal) -> Result<String, String> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("open: {e}"))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| format!("integrity_check: {e}"))?;
    if verdict != "ok" {
        return Err(format!(
            "integrity_check: {}",
            verdict.chars().take(120).collect::<String>()
        ));
    }
    let (mode, sync) = journal.durability().map_err(|e| e.to_string())?;
    if mode != "wal" || sync != 2 {
        return Err(format!(
            "journal_mode {mode}, synchronous {sync} (want wal, 2 = full)"
        ));
    }
    Ok("integrity_check ok; wal, synchronous=full".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_roots() {
        assert_eq!(
            sandbox_root(Dialect::PaymentsAi, "http://127.0.0.1:9/pai/"),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            sandbox_root(
                Dialect::Number,
                "http://127.0.0.1:9/number/APIcardProcNumber/v1.0.0"
            ),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            sandbox_root(Dialect::Pay1st, "http://h:1/pay1st"),
            "http://h:1"
        );
    }

    #[test]
    fn text_and_json_forms() {
        let mut r = Report::default();
        r.ok("a", "fine");
        r.push("b", Status::Skip, "n/a");
        assert!(r.passed());
        r.fail("c", "broken");
        assert!(!r.passed());
        let t = r.text();
        assert!(t.contains("[ ok ] a: fine\n"), "{t}");
        assert!(t.contains("[skip] b (n/a)\n"), "{t}");
        assert!(t.contains("[FAIL] c (broken)\n"), "{t}");
        assert!(t.ends_with("preflight: 1 item(s) failed\n"), "{t}");
        let j = r.json();
        assert_eq!(j["passed"], false);
        assert_eq!(j["items"][2]["status"], "fail");
        assert_eq!(j["items"][1]["status"], "skip");
    }

    #[test]
    fn probe_leaves_nothing_and_integrity_holds() {
        let p = std::env::temp_dir().join(format!("emvb-preflight-unit-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let j = Journal::open(&p).unwrap();
        probe_write(&p).unwrap();
        assert!(j.unresolved().unwrap().is_empty());
        let n: i64 = rusqlite::Connection::open(&p)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM txns", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            integrity(&p, &j).unwrap(),
            "integrity_check ok; wal, synchronous=full"
        );
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }
}
