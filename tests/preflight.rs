//! `emvbridge preflight` (issue 7) against the sandbox environment: the real binary with the
//! configuration and environment variables pointing at an in-process sandbox gateway passes
//! every item and exits 0; a missing credential, a world-readable secrets file and an
//! unresolved journal row each fail their item clearly (and the exit code says so), without
//! printing a secret value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use emvbridge::preflight::{items, preflight, Options, Status};
use emvbridge::sandbox::{self, SandboxConfig, SandboxHandle};
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
        "ORGANIZATION_ID={}\nPAI_WEBHOOK_SECRET=whsec_preflight_test\n",
        defaults.pai.organization_id
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
    assert!(
        detail(items::WEBHOOK).contains("signed test event 200, bad signature 401"),
        "{v:#}"
    );
    assert!(detail(items::NSF).contains("declined (51)"), "{v:#}");
    assert!(detail(items::TIMEOUT).contains("reversed"), "{v:#}");
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
    use emvbridge::txn::host::{AuthKind, AuthorizationRequest, AuthorizationResult, EntryMode};
    let gw = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let d = dir("unresolved");
    let cfg = pai_setup(&d.0, &gw, 0o600, true);
    {
        let j = emvbridge::journal::Journal::open(&d.0.join("journal.db")).unwrap();
        let usd = |m| emvbridge::money::Money::from_minor(m, "USD").unwrap();
        let req = AuthorizationRequest {
            reference: emvbridge::txn::Reference("left-open-1".into()),
            kind: AuthKind::Sale,
            amount: usd(4200),
            amount_other: usd(0),
            entry_mode: EntryMode::Chip,
            icc_data: bytes::Bytes::new(),
            masked_pan: "401200******5439".into(),
            last4: Some("5439".into()),
            brand: None,
            original_gateway_id: None,
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
