//! `emvbridge keys exchange --gateway paymentsai` against the in-process sandbox gateway
//! (the key exchange of the PaymentsAI go-live runbook, gateways.md §2.2): policy enforced
//! before sending, result stored 0600 without echo, refusal inside a git work tree, the
//! temporal key used once.

use std::path::{Path, PathBuf};
use std::process::Command;

use emvbridge::gateway::Secret;
use emvbridge::keys::{self, KeyError};
use emvbridge_sandbox::{self as sandbox, SandboxConfig};

const TEMPORAL: &str = "tmp_sandbox_temporal_key";
const ACCOUNT: &str = "acc_sandbox";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("emvb-keys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary off the runtime's threads (the sandbox keeps serving meanwhile).
async fn cli(url: String, out: PathBuf, secret: Option<&'static str>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_emvbridge"));
        c.args([
            "keys",
            "exchange",
            "--gateway",
            "paymentsai",
            "--account",
            ACCOUNT,
        ])
        .arg("--url")
        .arg(format!("{url}/pai"))
        .arg("--out")
        .arg(&out)
        .env_remove("TEMPORAL_API_KEY")
        .env_remove("EMVBRIDGE_PAI_SECRET")
        .env("EMVBRIDGE_PAI_TEMPORAL_KEY", TEMPORAL)
        .stdin(std::process::Stdio::null());
        if let Some(s) = secret {
            c.env("EMVBRIDGE_PAI_SECRET", s);
        }
        let o = c.output().expect("run emvbridge keys exchange");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn temporal_still_valid(url: &str) -> bool {
    // A policy-breaking secret is refused with 422 only after the key was accepted: 422
    // means the temporal key is still there, 401 that it is gone.
    let r = keys::exchange(
        &reqwest::Client::new(),
        &format!("{url}/pai"),
        ACCOUNT,
        &Secret::new(TEMPORAL),
        &Secret::new("x"),
    )
    .await;
    matches!(r, Err(KeyError::Refused(_)))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_stores_the_key_once_without_echo() {
    let sb = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let url = sb.url();
    let dir = tmpdir("ok");
    let out = dir.join("conf/paymentsai.env");
    let (code, stdout, stderr) = cli(url.clone(), out.clone(), Some("Go-Live-Secret-1")).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let line = text.lines().find(|l| l.starts_with("API_KEY=")).unwrap();
    let cred = line.trim_start_matches("API_KEY=");
    assert!(
        cred.starts_with("acc_sandbox_key") && cred.contains("_kid"),
        "{text}"
    );
    assert_eq!(mode(&out), 0o600);
    assert_eq!(mode(out.parent().unwrap()), 0o700);
    // Only the key id and a fingerprint are shown; never the key or the secret.
    let kid = cred.rsplit('_').next().unwrap();
    assert!(
        stdout.contains(kid) && stdout.contains("sha256:"),
        "{stdout}"
    );
    for s in [&stdout, &stderr] {
        assert!(!s.contains(cred) && !s.contains("Go-Live-Secret-1") && !s.contains(TEMPORAL));
    }
    assert!(!text.contains("Go-Live-Secret-1"));
    // The secret history has a salted hash, not the secret.
    let hist = std::fs::read_to_string(dir.join("conf/secrets-history.json")).unwrap();
    assert!(hist.contains("\"salt\"") && !hist.contains("Go-Live"));
    assert_eq!(mode(&dir.join("conf/secrets-history.json")), 0o600);
    // The key works against the gateway: the stage-style org routes accept it.
    let r = reqwest::Client::new()
        .post(format!(
            "{url}/pai/v1/public-api/organizations/org_sandbox/customers"
        ))
        .header("Authorization", format!("ApiKey {cred}"))
        .json(&serde_json::json!({"email": "a@b.c", "firstName": "A", "lastName": "B"}))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 401, "permanent key refused");
    // The temporal key is gone: a second run fails at the gateway, and leaves no file.
    let out2 = dir.join("second.env");
    let (code, _, stderr) = cli(url.clone(), out2.clone(), Some("Go-Live-Secret-2")).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("temporal key"), "{stderr}");
    assert!(!out2.exists());
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
    sb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_when_a_precondition_fails() {
    let sb = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let url = sb.url();
    let dir = tmpdir("pre");
    // Policy: too short, no upper case.
    for bad in ["Short-1", "no-upper-case-here"] {
        let (code, _, stderr) = cli(url.clone(), dir.join("a.env"), Some(bad)).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("the secret"), "{stderr}");
        assert!(!stderr.contains(bad));
    }
    // Inside a git work tree.
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let (code, _, stderr) = cli(url.clone(), repo.join("pai.env"), Some("Go-Live-Secret-1")).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("git work tree"), "{stderr}");
    // An existing output file is not replaced without --force.
    std::fs::write(dir.join("exists.env"), "keep me").unwrap();
    let (code, _, stderr) = cli(
        url.clone(),
        dir.join("exists.env"),
        Some("Go-Live-Secret-1"),
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("exists.env")).unwrap(),
        "keep me"
    );
    // No secret and standard input not a terminal: environment only, no prompt.
    let (code, _, stderr) = cli(url.clone(), dir.join("b.env"), None).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("EMVBRIDGE_PAI_SECRET") && stderr.contains("not a terminal"));
    // After all that, the temporal key was never used.
    assert!(temporal_still_valid(&url).await);
    assert!(!dir.join("a.env").exists() && !dir.join("b.env").exists());
    sb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_exchange_maps_gateway_answers() {
    let sb = sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let base = format!("{}/pai", sb.url());
    let http = reqwest::Client::new();
    let wrong = keys::exchange(
        &http,
        &base,
        ACCOUNT,
        &Secret::new("nope"),
        &Secret::new("Go-Live-Secret-1"),
    )
    .await;
    assert!(matches!(wrong, Err(KeyError::Unauthorized)), "{wrong:?}");
    let other = keys::exchange(
        &http,
        &base,
        "acc_other",
        &Secret::new(TEMPORAL),
        &Secret::new("Go-Live-Secret-1"),
    )
    .await;
    assert!(matches!(other, Err(KeyError::Forbidden)), "{other:?}");
    let bad_acct = keys::exchange(
        &http,
        &base,
        "../x",
        &Secret::new(TEMPORAL),
        &Secret::new("Go-Live-Secret-1"),
    )
    .await;
    assert!(
        matches!(bad_acct, Err(KeyError::Missing(_))),
        "{bad_acct:?}"
    );
    let k = keys::exchange(
        &http,
        &base,
        ACCOUNT,
        &Secret::new(TEMPORAL),
        &Secret::new("Go-Live-Secret-1"),
    )
    .await
    .unwrap();
    assert_eq!(k.account_id, ACCOUNT);
    assert!(k.credential.expose().ends_with(&k.api_key_id));
    assert!(!format!("{k:?}").contains(k.credential.expose()));
    sb.shutdown().await;
}
