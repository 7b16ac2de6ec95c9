//! `emvbridge preflight` against the sandbox environment: the real binary with the
//! configuration and environment variables pointing at an in-process sandbox gateway passes
//! every item and exits 0; a missing credential, a world-readable secrets file and an
//! unresolved journal row each fail their item clearly (and the exit code says so), without
//! printing a secret value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use emvbridge::preflight::{items, preflight, Options, Status};
use emvbridge_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::Value;

/// The key's middle part, to look for in outputs.
const KEY_MARK: &str = "key_sandbox0001";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory outside any git work tree (the system temp dir).
fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("emvb-preflight-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let _ = mode;
}

/// `relay.toml` for the PAI sandbox: URL in the TOML, secrets in `secrets.env` (mode `mode`).
fn pai_setup(d: &Path, gw: &SandboxHandle, secrets_mode: u32, with_key: bool) -> PathBuf {
    let defaults = SandboxConfig::default();
    let mut secrets = format!(
        "ORGANIZATION_ID={}\nWEBSITE_ID={}\nCUSTOMER_ID={}\nPAI_WEBHOOK_SECRET=whsec_preflight_test\n",
        defaults.pai.organization_id, defaults.pai.website_id, defaults.pai.customer_id
    );
    if with_key {
        secrets.push_str(&format!("API_KEY={}\n", defaults.pai.stage_credential()));
    }
    write(&d.join("secrets.env"), &secrets, secrets_mode);
    let cfg = d.join("relay.toml");
    write(
        &cfg,
        &format!(
            "environment = \"sandbox\"\ndialect = \"paymentsai\"\nbase_url = \"{}/pai\"\nsecrets_file = {:?}\n[journal]\npath = {:?}\n",
            gw.url(),
            d.join("secrets.env").display().to_string(),
            d.join("journal.db").display().to_string()
        ),
        0o644,
    );
    cfg
}

fn options(cfg: PathBuf) -> Options {
    Options {
        config: Some(cfg),
        process_env: false,
        extra: HashMap::new(),
        webhook_url: None,
    }
}

fn status(r: &emvbridge::preflight::Report, name: &str) -> (Status, String) {
    let i = r
        .item(name)
        .unwrap_or_else(|| panic!("no item {name}: {r:?}"));
    (i.status, i.detail.clone())
}

/// The real binary, every item passing, JSON out, exit 0 — then the text form of one failure
/// (the same configuration with the sandbox gone) exits 1.
#[test]
fn sandbox_environment_passes_end_to_end() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gw = rt
        .block_on(sandbox::spawn(SandboxConfig::default()))
        .unwrap();
    let d = dir("pass");
    let cfg = pai_setup(&d.0, &gw, 0o600, true);
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["preflight", "--json", "--config"])
        .arg(&cfg)
        .env_remove("API_KEY")
        .env_remove("API_URL")
        .output()
        .expect("run emvbridge preflight");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(v["passed"], true, "{v:#}");
    let got: Vec<(&str, &str)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    let want: Vec<(&str, &str)> = items::ALL.iter().map(|n| (*n, "ok")).collect();
    assert_eq!(got, want, "{v:#}");
    let detail = |n: &str| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .map(|i| i["detail"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert!(detail(items::GATEWAY).contains("(not found)"), "{v:#}");
    // The operation exercised, and that its reply had the definition's shape.
    assert!(
        detail(items::CONTRACT)
            .contains("GET transactions?filter=requestId: matched (a bare array"),
        "{v:#}"
    );
    assert!(
        detail(items::WEBHOOK).contains("signed test event 200, bad signature 401"),
        "{v:#}"
    );
    assert!(detail(items::NSF).contains("declined (51)"), "{v:#}");
    assert!(
        detail(items::TIMEOUT)
            .contains("reversed, and the sandbox ledger shows it voided/refunded"),
        "{v:#}"
    );
    assert!(
        detail(items::TIMEOUT).contains(&format!("configured sandbox {}", gw.url())),
        "{v:#}"
    );
    // The scenarios left nothing standing and nothing in the configured journal.
    let j = emvbridge::journal::Journal::open(&d.0.join("journal.db")).unwrap();
    assert!(j.unresolved().unwrap().is_empty());
    // Secrets are never printed.
    for s in [KEY_MARK, "whsec_preflight_test"] {
        assert!(!stdout.contains(s) && !stderr.contains(s), "{s}");
    }

    // Text form, and exit 1 once the gateway is gone.
    rt.block_on(gw.shutdown());
    let out = Command::new(env!("CARGO_BIN_EXE_emvbridge"))
        .args(["preflight", "--config"])
        .arg(&cfg)
        .env_remove("API_KEY")
        .env_remove("API_URL")
        .output()
        .expect("run emvbridge preflight");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[ ok ] credentials present: "), "{text}");
    assert!(
        text.contains("[FAIL] gateway reachable and authenticated (paymentsai: transaction lookup by a random reference failed: not sent"),
        "{text}"
    );
    assert!(text.contains("[ ok ] journal writable: "), "{text}");
    assert!(text.ends_with("item(s) failed\n"), "{text}");
}

/// No API_KEY: "credentials present" names it, the gateway check is not run, exit != 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credential_fails() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let d = dir("nokey");
    let cfg = pai_setup(&d.0, &gw, 0o600, false);
    let r = preflight(&options(cfg)).await;
    assert!(!r.passed());
    let (s, why) = status(&r, items::CREDENTIALS_PRESENT);
    assert_eq!(s, Status::Fail);
    assert!(why.contains("missing: API_KEY"), "{why}");
    let (s, why) = status(&r, items::GATEWAY);
    assert_eq!(s, Status::Fail);
    assert!(why.contains("not run"), "{why}");
    // Not a credentials problem elsewhere: the secrets file itself is fine.
    assert_eq!(status(&r, items::CREDENTIALS_NOT_IN_REPO).0, Status::Ok);
    assert!(r
        .text()
        .contains("[FAIL] credentials present (missing: API_KEY)"));
    assert!(!r.text().contains("whsec_preflight_test"));
    gw.shutdown().await;
}

/// A world-readable secrets file is refused: its item fails, and so do the credentials it
/// would have provided.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_readable_secrets_file_fails() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let d = dir("loose");
    let cfg = pai_setup(&d.0, &gw, 0o644, true);
    let r = preflight(&options(cfg)).await;
    assert!(!r.passed());
    let (s, why) = status(&r, items::CREDENTIALS_NOT_IN_REPO);
    assert_eq!(s, Status::Fail);
    assert!(
        why.contains("readable by group or others (chmod 600)"),
        "{why}"
    );
    assert_eq!(status(&r, items::CREDENTIALS_PRESENT).0, Status::Fail);
    assert!(!r.text().contains(KEY_MARK));
    gw.shutdown().await;
}

/// A row left `unknown` in the journal: "nothing unresolved" fails and names the state; the
/// rest of the checklist still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolved_journal_row_fails() {
    use emvbridge_core::txn::host::{
        AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode,
    };
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let d = dir("unresolved");
    let cfg = pai_setup(&d.0, &gw, 0o600, true);
    {
        let j = emvbridge::journal::Journal::open(&d.0.join("journal.db")).unwrap();
        let usd = |m| emvbridge_core::money::Money::from_minor(m, "USD").unwrap();
        let req = AuthorizationRequest {
            reference: emvbridge_core::txn::Reference("left-open-1".into()),
            kind: AuthKind::Sale,
            amount: usd(4200),
            amount_other: usd(0),
            entry_mode: EntryMode::Chip,
            icc_data: bytes::Bytes::new(),
            masked_pan: "401200******5439".into(),
            last4: Some("5439".into()),
            brand: None,
            original_gateway_id: None,
            online_pin: None,
            pos_reference: None,
        };
        j.begin_authorization(&req, emvbridge::gateway::Dialect::PaymentsAi)
            .unwrap();
        j.record_authorization(
            &req.reference,
            &AuthorizationResult::Unknown {
                reason: "no reply: timeout".into(),
            },
        )
        .unwrap();
    }
    let r = preflight(&options(cfg)).await;
    assert!(!r.passed());
    let (s, why) = status(&r, items::UNRESOLVED);
    assert_eq!(s, Status::Fail);
    assert!(why.contains("1 unsettled row(s): 1 unknown"), "{why}");
    assert!(why.contains("left-open-1"), "{why}");
    let failed: Vec<&str> = r
        .items
        .iter()
        .filter(|i| i.status != Status::Ok)
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(failed, vec![items::UNRESOLVED], "{}", r.text());
    gw.shutdown().await;
}

/// Environment variables of one case.
type Vars = Vec<(&'static str, String)>;

/// Number (no webhooks: skipped) and Pay1st (no reversal API: the two reversal scenarios are
/// skipped after checking the sale ended unresolved, never "reversed") pass with their
/// credentials in the environment variables and no secrets file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_and_pay1st_pass_with_their_skips() {
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let defaults = SandboxConfig::default();
    let d = dir("dialects");
    let url = gw.url();
    let cases: Vec<(&str, Vars, Vec<&str>)> = vec![
        (
            "number",
            vec![
                (
                    "NUMBER_API_URL",
                    format!("{url}/number/APIcardProcNumber/v1.0.0"),
                ),
                ("NUMBER_ACCT_CODE", defaults.number.acct_code.clone()),
                ("NUMBER_TOKEN", defaults.number.token.clone()),
                ("NUMBER_HMAC_SECRET", defaults.number.hmac_secret.clone()),
                ("NUMBER_USER_ID", defaults.number.user_id.clone()),
            ],
            vec![items::WEBHOOK],
        ),
        (
            "pay1st",
            vec![
                ("PAY1ST_API_URL", format!("{url}/pay1st")),
                ("PAY1ST_API_KEY", defaults.pay1st.api_key.clone()),
                ("PAY1ST_API_SECRET", defaults.pay1st.api_secret.clone()),
                ("PAY1ST_SIGNING_KEY", defaults.pay1st.signing_key.clone()),
                ("PAY1ST_COUNTRY_CODE", "NG".into()),
                ("PAY1ST_WEBHOOK_USER", "apiuser".into()),
                ("PAY1ST_WEBHOOK_PASS", "preflight-pass".into()),
            ],
            vec![items::CARD_REMOVED, items::TIMEOUT],
        ),
    ];
    for (dialect, vars, skipped) in cases {
        let cfg = d.0.join(format!("{dialect}.toml"));
        write(
            &cfg,
            &format!(
                "environment = \"sandbox\"\ndialect = \"{dialect}\"\n[journal]\npath = {:?}\n",
                d.0.join(format!("{dialect}.db")).display().to_string()
            ),
            0o644,
        );
        let mut o = options(cfg);
        o.extra = vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let r = preflight(&o).await;
        assert!(r.passed(), "{dialect}:\n{}", r.text());
        let got: Vec<&str> = r
            .items
            .iter()
            .filter(|i| i.status == Status::Skip)
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(got, skipped, "{dialect}:\n{}", r.text());
        assert_eq!(r.items.len(), items::ALL.len());
        if dialect == "pay1st" {
            assert!(
                status(&r, items::TIMEOUT).1.contains("ended unresolved"),
                "{}",
                r.text()
            );
            assert!(
                status(&r, items::CONTRACT).1.contains(
                    "auth/refresh: matched (accessToken, refreshToken); payments?reference (Query Payment Status): matched"
                ),
                "{}",
                r.text()
            );
        } else {
            assert!(
                status(&r, items::GATEWAY).1.contains("Authenticate"),
                "{}",
                r.text()
            );
            assert!(
                status(&r, items::CONTRACT).1.contains(
                    "Authenticate: matched (AuthenticateResult, ThisUser.ID); Query/Transaction: matched (Transaction_QueryResult, NumRecords 0)"
                ),
                "{}",
                r.text()
            );
        }
    }
    gw.shutdown().await;
}

/// `webhook_url`: the configured endpoint is tested, not an in-process one; an endpoint that
/// holds another secret fails the item (the signed test event is refused), the right one
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_webhook_endpoint_is_tested() {
    use emvbridge::gateway::Secret;
    use emvbridge::webhooks::{Receiver, WebhookConfig};
    use std::sync::Arc;
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let d = dir("hookurl");
    let cfg = pai_setup(&d.0, &gw, 0o600, true);
    for (secret, want) in [
        ("whsec_someone_else", Status::Fail),
        ("whsec_preflight_test", Status::Ok),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Arc::new(Receiver {
            journal: Arc::new(
                emvbridge::journal::Journal::open(&d.0.join(format!("hooks-{secret}.db"))).unwrap(),
            ),
            config: WebhookConfig {
                pai_secret: Some(Secret::new(secret)),
                ..WebhookConfig::default()
            },
            gateways: Vec::new(),
        });
        let task = tokio::spawn(emvbridge::webhooks::serve(listener, receiver));
        let mut o = options(cfg.clone());
        o.webhook_url = Some(format!("http://{addr}/webhooks/pai"));
        let r = preflight(&o).await;
        let (s, why) = status(&r, items::WEBHOOK);
        assert_eq!(s, want, "{why}");
        assert!(
            why.contains(&format!("configured endpoint http://{addr}/webhooks/pai")),
            "{why}"
        );
        if want == Status::Fail {
            assert!(
                why.contains("signed test event 401 (want 200), bad signature 401 (want 401)"),
                "{why}"
            );
            assert!(!r.passed());
        } else {
            assert!(r.passed(), "{}", r.text());
            // The test event left nothing in the receiver's journal (no dedupe row either).
            let n: i64 = rusqlite::Connection::open(d.0.join(format!("hooks-{secret}.db")))
                .unwrap()
                .query_row("SELECT COUNT(*) FROM webhook_events", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0);
        }
        task.abort();
    }
    gw.shutdown().await;
}
