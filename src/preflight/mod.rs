//! `emvbridge preflight`: the final technical checklist of the PaymentsAI go-live runbook
//! (webhooks live and answering 200, HMAC verification tested, API keys in backend environment
//! variables and not in source control) and the go-live's end-to-end steps (a token, a test
//! payment in the sandbox), run against the configured environment:
//!
//! | item | how |
//! |---|---|
//! | configuration | the TOML parses, environment and dialect are set |
//! | credentials present | every required variable of the dialect (and its webhook secrets) is set; values never printed |
//! | credentials not in the repository | the secrets file (if any) is owner-only and outside any git work tree |
//! | gateway reachable and authenticated | an authenticated call that creates nothing: Number `Authenticate`; PAI a transaction lookup by a random reference; Pay1st a token and a signed lookup by a Pay1st-style reference (not found = pass) |
//! | gateway replies match the official definitions | per dialect, the money-free operations exercised above (and Number's query, Pay1st's refresh) and whether each reply had the shape its official definition gives (`preflight::contract`) |
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

mod checklist;
mod contract;
#[cfg(feature = "sim")]
mod scenarios;

use checklist::Setup;
pub use checklist::{items, Item, Report, Status};

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::{self, FileConfig, Lookup};
use crate::gateway::http::HttpSettings;
use crate::gateway::{Dialect, Environment, GatewayConfig, Secret};
use crate::journal::Journal;
use crate::webhooks::TEST_EVENT_TYPE;
use contract::probe_reference;

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

/// Runs `emvbridge preflight`: exit 0 when every item passed, 1 otherwise (a configuration
/// that cannot be read is a failed item).
pub async fn run(args: PreflightArgs) -> ExitCode {
    let opts = Options {
        config: args.config,
        process_env: true,
        extra: HashMap::new(),
        webhook_url: args.webhook_url,
    };
    let report = preflight(&opts).await;
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
        None => {
            r.fail(items::GATEWAY, "not run: gateway configuration incomplete");
            r.fail(items::CONTRACT, "not run: gateway configuration incomplete");
        }
    }
    webhook_check(&setup, opts, &mut r).await;
    #[cfg(feature = "sim")]
    scenarios::scenarios(&setup, &mut r).await;
    #[cfg(not(feature = "sim"))]
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
    let vars: Vec<(String, String)> = match opts.process_env {
        true => std::env::vars().collect(),
        false => Vec::new(),
    };
    let cfg = match config::Layered::load_from(opts.config.as_deref(), vars) {
        Ok(l) => l.config,
        Err(e) => {
            r.fail(items::CONFIGURATION, e.to_string());
            return None;
        }
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
    let out = contract::exercise(gw, check_http(&s.cfg)).await;
    let ms = started.elapsed().as_millis();
    match &out.reachable {
        Ok(d) => r.ok(items::GATEWAY, format!("{d} in {ms} ms")),
        Err(d) => r.fail(items::GATEWAY, d.clone()),
    }
    let lines: Vec<String> = out
        .ops
        .iter()
        .map(|e| match &e.verdict {
            Ok(what) => format!("{}: matched ({what})", e.op),
            Err(why) => format!("{}: DID NOT MATCH ({why})", e.op),
        })
        .collect();
    let all = !out.ops.is_empty() && out.ops.iter().all(|e| e.verdict.is_ok());
    match (all, out.reachable.is_ok()) {
        (true, true) => r.ok(items::CONTRACT, lines.join("; ")),
        (_, false) if lines.is_empty() => r.fail(items::CONTRACT, "not run: gateway not reached"),
        _ => {
            tracing::warn!(detail = %lines.join("; "), "preflight: gateway replies do not match the definitions");
            r.fail(items::CONTRACT, lines.join("; "))
        }
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
            let bad =
                crate::gateway::sign::pai_webhook_signature(&format!("{secret}-wrong"), &body);
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
            let bad = crate::gateway::sign::pay1st_webhook_signature(
                &user,
                &format!("{pass}-wrong"),
                &text,
            );
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

/// Without the simulated reader there are no scenarios to run: each is reported failed, so a
/// till build never passes a go-live check it did not make.
#[cfg(not(feature = "sim"))]
async fn scenarios(_s: &Setup, r: &mut Report) {
    use items::{APPROVED, CARD_REMOVED, DECLINED, NO_ORPHANS, NSF, TIMEOUT};
    for name in [APPROVED, DECLINED, NSF, CARD_REMOVED, TIMEOUT, NO_ORPHANS] {
        r.fail(
            name,
            "not run: the sandbox scenarios drive the simulated reader, which this build leaves \
             out (run preflight from a build with the `sim` feature)",
        );
    }
}

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
