//! `emvbridge config check` as an operator runs it: the effective configuration with the
//! source of every value (default < file < `EMVBRIDGE_*` variable), the gateway variables
//! with where they came from, secrets never printed, an unknown `EMVBRIDGE_` variable warned
//! about; and the default file in the user's configuration directory is found without
//! `--config`.

use std::process::Command;

const SECRET: &str = "acc_SUPERSECRET_apikey_01";

fn check(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emvbridge"));
    cmd.args(["config", "check"])
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("EMVBRIDGE_CONFIG")
        .env_remove("API_KEY")
        .env_remove("API_URL")
        .env_remove("ORGANIZATION_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run emvbridge config check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn effective_configuration_with_sources_and_no_secret() {
    let home = std::env::temp_dir().join(format!("emvb-cfgcheck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join(".config/emvbridge")).unwrap();
    let file = home.join(".config/emvbridge/config.toml");
    std::fs::write(
        &file,
        "environment = \"production\"\ndialect = \"paymentsai\"\n[timeouts]\nrequest_ms = 12000\n",
    )
    .unwrap();
    let (code, out, err) = check(
        &home,
        &[],
        &[
            ("EMVBRIDGE_TIMEOUTS__REQUEST_MS", "777"),
            ("EMVBRIDGE_NO_SUCH_THING", "1"),
            ("API_KEY", SECRET),
            ("ORGANIZATION_ID", "org_42"),
        ],
    );
    let all = format!("{out}\n{err}");
    assert!(!all.contains("SUPERSECRET"), "a secret was printed:\n{all}");
    let shown = file.display().to_string();
    assert!(
        out.contains(&format!("environment = \"production\"  (file {shown})")),
        "{out}"
    );
    assert!(
        out.contains("timeouts.request_ms = 777  (env EMVBRIDGE_TIMEOUTS__REQUEST_MS)"),
        "{out}"
    );
    assert!(
        out.contains("resolver.max_attempts = 10  (default)"),
        "{out}"
    );
    assert!(
        out.contains("API_KEY: set (secret, not shown; from environment)"),
        "{out}"
    );
    assert!(
        out.contains("ORGANIZATION_ID: org_42 (from environment)"),
        "{out}"
    );
    assert!(
        out.contains("warning: EMVBRIDGE_NO_SUCH_THING names no setting (ignored)"),
        "{out}"
    );
    assert!(
        err.contains("EMVBRIDGE_NO_SUCH_THING"),
        "logged as a warning: {err}"
    );
    // The webhook secret is missing: exit 1, and it says so.
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("PAI_WEBHOOK_SECRET: missing"), "{out}");

    // A value of the wrong type is refused with the setting named.
    let (code, out, _) = check(&home, &[], &[("EMVBRIDGE_TIMEOUTS__REQUEST_MS", "soon")]);
    assert_eq!(code, 1);
    assert!(out.contains("request_ms"), "{out}");
    let _ = std::fs::remove_dir_all(&home);
}
