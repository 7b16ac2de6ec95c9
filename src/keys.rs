//! `emvbridge keys exchange --gateway paymentsai`: the key exchange of the PaymentsAI go-live
//! runbook (gateways.md §2.2) — the production temporal API key is used once, with an account
//! secret of the merchant's choosing, to obtain the permanent API key
//! (`PATCH {base}/v1/accounts/public-api/{ACCOUNT_ID}`, `Authorization: ApiKey {TEMPORAL}`,
//! body `{"secret":"…"}`). The temporal key is deleted by the gateway on success and PAI keeps
//! neither the secret nor the permanent key, so everything that could stop the result from
//! being stored is checked *before* the request is sent:
//!
//! - the secret policy: 12–30 characters (the 30 maximum is the go-live runbook's; §2.2
//!   marks it \[GAP\]), at least one upper-case letter, at least one alphanumeric character,
//!   not one of the last 4 secrets (kept locally as salted PBKDF2-HMAC-SHA256 hashes, never
//!   in clear);
//! - the output file: not inside a git work tree, not already there (unless `--force`),
//!   created 0600 in a 0700 directory before the request leaves.
//!
//! The temporal key and the secret come from the environment (`EMVBRIDGE_PAI_TEMPORAL_KEY`
//! or the runbook's `TEMPORAL_API_KEY`; `EMVBRIDGE_PAI_SECRET`) or, when standard input is a
//! terminal, from a prompt without echo; with standard input not a terminal, the environment
//! only. Only the key id and a fingerprint are printed; the secret is not stored.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gateway::Secret;

/// Production API host (the go-live runbook's production step; gateways.md §2.2).
pub const PAI_PRODUCTION_URL: &str = "https://api.payments.ai";
/// How many previous secrets may not be reused (gateways.md §2.2: "must differ from the last 4").
pub const HISTORY_LEN: usize = 4;
/// PBKDF2 iterations for a stored secret hash (stored per entry, so it can be raised).
pub const PBKDF2_ITERATIONS: u32 = 20_000;
/// Largest reply body read.
const MAX_REPLY: usize = 64 * 1024;

/// `emvbridge keys …`.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Exchange the production temporal API key for the permanent one (PaymentsAI go-live).
    Exchange(ExchangeArgs),
}

/// Arguments of `emvbridge keys exchange`.
#[derive(clap::Args, Debug)]
pub struct ExchangeArgs {
    /// The gateway (only `paymentsai` has a key exchange).
    #[arg(long, default_value = "paymentsai")]
    pub gateway: String,
    /// The account id from the Solution Architect.
    #[arg(long, env = "ACCOUNT_ID")]
    pub account: String,
    /// API base URL (a sandbox gateway: `http://127.0.0.1:PORT/pai`).
    #[arg(long, default_value = PAI_PRODUCTION_URL)]
    pub url: String,
    /// Where to store the permanent key (an env file, mode 0600); default
    /// `$XDG_CONFIG_HOME/emvbridge/paymentsai.env` (or `~/.config/…`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the salted hashes of previous secrets are kept; default `secrets-history.json`
    /// beside `--out`.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Replace an existing `--out` file.
    #[arg(long)]
    pub force: bool,
}

/// Why a secret is refused before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Shorter than 12 or longer than 30 characters.
    #[error("the secret must be 12 to 30 characters long")]
    Length,
    /// No upper-case letter.
    #[error("the secret needs at least one upper-case letter")]
    NoUpper,
    /// No letter or digit.
    #[error("the secret needs at least one alphanumeric character")]
    NoAlphanumeric,
    /// Same as one of the last 4.
    #[error("the secret was used recently (one of the last 4)")]
    Reused,
}

/// Why the exchange failed (no secret or key in any message).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret breaks the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Only PaymentsAI has an exchange.
    #[error("no key exchange for gateway {0:?} (only paymentsai)")]
    Gateway(String),
    /// The output path is unusable.
    #[error("{0}")]
    Output(String),
    /// A required value is missing.
    #[error("{0}")]
    Missing(String),
    /// The gateway refused the temporal key (401).
    #[error("the gateway refused the temporal key (expired, already used, or wrong)")]
    Unauthorized,
    /// The key does not belong to the account (403).
    #[error("the temporal key does not belong to this account")]
    Forbidden,
    /// The gateway refused the secret (422) with its reason.
    #[error("the gateway refused the secret: {0}")]
    Refused(String),
    /// Another status or an unusable reply.
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
    /// Network error.
    #[error("cannot reach the gateway: {0}")]
    Http(String),
    /// Local file error.
    #[error("{0}")]
    Io(String),
}

/// Checks the secret policy (gateways.md §2.2) against the local history.
///
/// # Errors
/// The first rule broken.
pub fn check_policy(secret: &str, history: &SecretHistory) -> Result<(), PolicyError> {
    let n = secret.chars().count();
    if !(12..=30).contains(&n) {
        return Err(PolicyError::Length);
    }
    if !secret.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(PolicyError::NoUpper);
    }
    if !secret.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(PolicyError::NoAlphanumeric);
    }
    if history.contains(secret) {
        return Err(PolicyError::Reused);
    }
    Ok(())
}

/// One stored secret: PBKDF2-HMAC-SHA256(secret, salt, iter), 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Random salt, hex.
    pub salt: String,
    /// Iterations.
    pub iter: u32,
    /// Derived hash, hex.
    pub hash: String,
}

/// The salted hashes of the last [`HISTORY_LEN`] secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHistory {
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], iter: u32) -> [u8; 32] {
    // One output block (RFC 8018 §5.2): T1 = U1 ^ … ^ Uc, U1 = PRF(P, S || INT(1)).
    let prf = |msg: &[&[u8]]| -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(password)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
        for part in msg {
            m.update(part);
        }
        m.finalize().into_bytes().into()
    };
    let mut u = prf(&[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..iter.max(1) {
        u = prf(&[&u]);
        for (a, b) in t.iter_mut().zip(u) {
            *a ^= b;
        }
    }
    t
}

impl SecretHistory {
    /// Reads `path`; a missing file is an empty history.
    ///
    /// # Errors
    /// Unreadable or malformed file.
    pub fn load(path: &Path) -> Result<SecretHistory, KeyError> {
        match std::fs::read(path) {
            Ok(b) if b.len() > MAX_REPLY => Err(KeyError::Io(format!(
                "{}: history file too large",
                path.display()
            ))),
            Ok(b) => serde_json::from_slice(&b).map_err(|_| {
                KeyError::Io(format!("{}: not a secret history file", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecretHistory::default()),
            Err(e) => Err(KeyError::Io(format!("{}: {e}", path.display()))),
        }
    }

    /// Whether `secret` is one of the last [`HISTORY_LEN`].
    pub fn contains(&self, secret: &str) -> bool {
        self.entries.iter().rev().take(HISTORY_LEN).any(|e| {
            let (Ok(salt), Ok(hash)) = (hex::decode(&e.salt), hex::decode(&e.hash)) else {
                return false;
            };
            // Bounded: a tampered file cannot make this loop for ever.
            let iter = e.iter.clamp(1, 10_000_000);
            pbkdf2_sha256(secret.as_bytes(), &salt, iter).as_slice() == hash.as_slice()
        })
    }

    /// Adds `secret` (hashed with a fresh salt), keeping the last [`HISTORY_LEN`].
    pub fn push(&mut self, secret: &str) {
        self.push_with(secret, PBKDF2_ITERATIONS);
    }

    fn push_with(&mut self, secret: &str, iter: u32) {
        let salt: [u8; 16] = rand::random();
        let hash = pbkdf2_sha256(secret.as_bytes(), &salt, iter);
        self.entries.push(HistoryEntry {
            salt: hex::encode(salt),
            iter,
            hash: hex::encode(hash),
        });
        let extra = self.entries.len().saturating_sub(HISTORY_LEN);
        self.entries.drain(..extra);
    }

    /// Writes the history, mode 0600 (atomically: temp file and rename).
    ///
    /// # Errors
    /// File errors.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| KeyError::Io(e.to_string()))?;
        let tmp = tmp_path(path);
        let mut f = create_private(&tmp, true)?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| KeyError::Io(format!("{}: {e}", path.display())))
    }
}

/// The permanent credential (`<accountId>_<apiKey>_<apiKeyId>`, §2.2).
#[derive(Debug, Clone)]
pub struct PermanentKey {
    /// Account id.
    pub account_id: String,
    /// Key id (shown).
    pub api_key_id: String,
    /// The whole `Authorization: ApiKey …` value (never shown).
    pub credential: Secret,
}

impl PermanentKey {
    /// `sha256:` and the first 8 bytes of SHA-256 of the credential, hex: enough to tell two
    /// keys apart, nothing to rebuild one from.
    pub fn fingerprint(&self) -> String {
        let d = Sha256::digest(self.credential.expose().as_bytes());
        format!("sha256:{}", hex::encode(d.get(..8).unwrap_or_default()))
    }
}

/// Whether `path` (or its nearest existing ancestor) is inside a git work tree.
pub fn inside_git_work_tree(path: &Path) -> bool {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    abs.ancestors().any(|d| d.join(".git").exists())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Creates `path` mode 0600 (`create_new` unless `replace`).
fn create_private(path: &Path, replace: bool) -> Result<File, KeyError> {
    let mut o = OpenOptions::new();
    o.write(true);
    if replace {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .map_err(|e| KeyError::Io(format!("{}: {e}", path.display())))
}

/// An output file prepared before the request: its temp file is open (0600), its directory
/// exists (0700 when created), and nothing else blocks the final rename.
pub struct PreparedOutput {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl PreparedOutput {
    /// Checks and prepares `path`.
    ///
    /// # Errors
    /// Inside a git work tree, already there without `force`, or not creatable.
    pub fn prepare(path: &Path, force: bool) -> Result<PreparedOutput, KeyError> {
        if inside_git_work_tree(path) {
            return Err(KeyError::Output(format!(
                "refusing to write a key inside a git work tree ({}); choose --out elsewhere",
                path.display()
            )));
        }
        if path.exists() && !force {
            return Err(KeyError::Output(format!(
                "{} exists; move it away or pass --force",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                let mut b = std::fs::DirBuilder::new();
                b.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
                b.create(dir)
                    .map_err(|e| KeyError::Io(format!("{}: {e}", dir.display())))?;
            }
        }
        let tmp = tmp_path(path);
        let file = create_private(&tmp, true)?;
        Ok(PreparedOutput {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// Writes the key as an env file and renames it into place.
    ///
    /// # Errors
    /// File errors (the temp file is left for the operator then: the key exists nowhere else).
    pub fn commit(mut self, key: &PermanentKey) -> Result<PathBuf, KeyError> {
        let now = crate::engine::utc_date_time(std::time::SystemTime::now());
        let text = format!(
            "# PaymentsAI permanent API key (emvbridge keys exchange, {:06} {:06} UTC).\n\
             # Account {}, key id {}, fingerprint {}. PAI cannot recover it: back it up.\n\
             API_KEY={}\n",
            now.0,
            now.1,
            key.account_id,
            key.api_key_id,
            key.fingerprint(),
            key.credential.expose()
        );
        let mut f = self
            .file
            .take()
            .ok_or_else(|| KeyError::Io("output already written".into()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path))
            .map_err(|e| {
                KeyError::Io(format!(
                    "{}: {e} (the key is in {})",
                    self.path.display(),
                    self.tmp.display()
                ))
            })?;
        Ok(self.path.clone())
    }
}

impl Drop for PreparedOutput {
    fn drop(&mut self) {
        // Not committed: nothing was received, remove the empty temp file.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Sends the exchange. `base_url` is the API base (`https://api.payments.ai`).
///
/// # Errors
/// [`KeyError`] by status: 401 [`KeyError::Unauthorized`], 403 [`KeyError::Forbidden`],
/// 400/422 [`KeyError::Refused`], others [`KeyError::Protocol`].
pub async fn exchange(
    http: &reqwest::Client,
    base_url: &str,
    account_id: &str,
    temporal_key: &Secret,
    secret: &Secret,
) -> Result<PermanentKey, KeyError> {
    if account_id.is_empty()
        || !account_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(KeyError::Missing(
            "the account id must be letters, digits, '_' or '-'".into(),
        ));
    }
    let url = format!(
        "{}/v1/accounts/public-api/{account_id}",
        base_url.trim_end_matches('/')
    );
    let body = serde_json::json!({ "secret": secret.expose() });
    let resp = http
        .patch(&url)
        .header("Authorization", format!("ApiKey {}", temporal_key.expose()))
        .json(&body)
        .send()
        .await
        .map_err(|e| KeyError::Http(e.without_url().to_string()))?;
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| KeyError::Http(e.without_url().to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_REPLY {
            return Err(KeyError::Protocol("reply too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = |k: &str| {
        v.get(k).and_then(|x| x.as_str()).map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
    };
    match status {
        200 | 201 => {}
        401 => return Err(KeyError::Unauthorized),
        403 => return Err(KeyError::Forbidden),
        400 | 422 => {
            return Err(KeyError::Refused(
                text("details")
                    .or_else(|| text("message"))
                    .unwrap_or_else(|| format!("http {status}")),
            ))
        }
        s => return Err(KeyError::Protocol(format!("http {s}"))),
    }
    parse_key(&v, account_id)
}

/// The key from the exchange reply. The reply's shape is not published (\[GAP\] §2.2): accepted
/// are `{data:{accountId?, apiKey, apiKeyId}}`, the same at the top level, or an
/// `authorization: "ApiKey <acct>_<key>_<kid>"` field.
fn parse_key(v: &serde_json::Value, account_id: &str) -> Result<PermanentKey, KeyError> {
    let d = v.get("data").filter(|d| d.is_object()).unwrap_or(v);
    let s = |k: &str| d.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let acct = s("accountId").unwrap_or_else(|| account_id.to_owned());
    let ok = |x: &str| !x.is_empty() && x.len() <= 256 && x.chars().all(|c| c.is_ascii_graphic());
    if let (Some(key), Some(kid)) = (s("apiKey"), s("apiKeyId")) {
        if ok(&key) && ok(&kid) && ok(&acct) {
            return Ok(PermanentKey {
                credential: Secret::new(format!("{acct}_{key}_{kid}")),
                account_id: acct,
                api_key_id: kid,
            });
        }
    }
    if let Some(auth) = s("authorization") {
        let cred = auth.strip_prefix("ApiKey ").unwrap_or(&auth).trim();
        if let Some((_, kid)) = cred.rsplit_once('_').filter(|_| ok(cred)) {
            return Ok(PermanentKey {
                api_key_id: kid.to_owned(),
                credential: Secret::new(cred.to_owned()),
                account_id: acct,
            });
        }
    }
    Err(KeyError::Protocol("no api key in the reply".into()))
}

fn default_out() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("emvbridge").join("paymentsai.env"))
}

/// Reads a line from the terminal on standard input with echo off.
fn prompt_hidden(label: &str) -> Result<Secret, KeyError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{label}: ");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| KeyError::Io(format!("terminal: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
        .map_err(|e| KeyError::Io(format!("terminal: {e}")))?;
    let mut line = String::new();
    let r = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    r.map_err(|e| KeyError::Io(format!("terminal: {e}")))?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// A value from the first set environment variable, else a hidden prompt when standard input
/// is a terminal.
fn obtain(vars: &[&str], label: &str, confirm: bool) -> Result<Secret, KeyError> {
    if let Some(v) = vars
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    {
        return Ok(Secret::new(v));
    }
    if !std::io::stdin().is_terminal() {
        return Err(KeyError::Missing(format!(
            "{label}: set {} (standard input is not a terminal, so no prompt)",
            vars.join(" or ")
        )));
    }
    let v = prompt_hidden(label)?;
    if confirm && prompt_hidden(&format!("{label} (again)"))? != v {
        return Err(KeyError::Missing(format!(
            "{label}: the two entries differ"
        )));
    }
    Ok(v)
}

/// The whole exchange as the CLI runs it; returns the stored key and where.
///
/// # Errors
/// [`KeyError`].
pub async fn run_exchange(args: &ExchangeArgs) -> Result<(PermanentKey, PathBuf), KeyError> {
    let g = args.gateway.to_ascii_lowercase();
    if !matches!(g.as_str(), "paymentsai" | "pai" | "payments-ai") {
        return Err(KeyError::Gateway(args.gateway.clone()));
    }
    let out = match &args.out {
        Some(p) => p.clone(),
        None => default_out().ok_or_else(|| KeyError::Missing("no HOME: pass --out".into()))?,
    };
    let history_path = match &args.history {
        Some(p) => p.clone(),
        None => out.with_file_name("secrets-history.json"),
    };
    if inside_git_work_tree(&history_path) {
        return Err(KeyError::Output(format!(
            "refusing to keep the secret history inside a git work tree ({})",
            history_path.display()
        )));
    }
    let temporal = obtain(
        &["EMVBRIDGE_PAI_TEMPORAL_KEY", "TEMPORAL_API_KEY"],
        "temporal API key",
        false,
    )?;
    let secret = obtain(&["EMVBRIDGE_PAI_SECRET"], "account secret", true)?;
    let mut history = SecretHistory::load(&history_path)?;
    check_policy(secret.expose(), &history)?;
    let prepared = PreparedOutput::prepare(&out, args.force)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| KeyError::Http(e.to_string()))?;
    let key = exchange(&http, &args.url, &args.account, &temporal, &secret).await?;
    let path = prepared.commit(&key)?;
    history.push(secret.expose());
    if let Err(e) = history.save(&history_path) {
        // The key is safe; only reuse detection suffers.
        eprintln!("warning: secret history not saved: {e}");
    }
    Ok((key, path))
}

/// Runs `emvbridge keys …`. Exit 0 on success, 1 when the gateway refused, 2 otherwise.
pub async fn run(cmd: KeysCommand) -> ExitCode {
    let KeysCommand::Exchange(args) = cmd;
    match run_exchange(&args).await {
        Ok((key, path)) => {
            println!(
                "permanent API key stored in {} (key id {}, fingerprint {})",
                path.display(),
                key.api_key_id,
                key.fingerprint()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                KeyError::Unauthorized
                | KeyError::Forbidden
                | KeyError::Refused(_)
                | KeyError::Policy(_) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rules() {
        let h = SecretHistory::default();
        assert_eq!(check_policy("Short1", &h), Err(PolicyError::Length));
        assert_eq!(
            check_policy("ThisSecretIsWayTooLongForThePolicy", &h),
            Err(PolicyError::Length)
        );
        assert_eq!(
            check_policy("alllowercase123", &h),
            Err(PolicyError::NoUpper)
        );
        assert_eq!(check_policy("Abcdefghijkl", &h), Ok(()));
        assert_eq!(check_policy("A___________", &h), Ok(()));
        assert_eq!(check_policy("ÄÖÜ_________", &h), Err(PolicyError::NoUpper));
        // 12 characters, counted as characters not bytes.
        assert_eq!(check_policy("Aéééééééééé1", &h), Ok(()));
    }

    #[test]
    fn history_keeps_the_last_four_salted() {
        let mut h = SecretHistory::default();
        for s in [
            "Secret-One-1",
            "Secret-Two-2",
            "Secret-Three-3",
            "Secret-Four-4",
        ] {
            h.push_with(s, 50);
        }
        assert_eq!(h.entries.len(), 4);
        assert!(h.contains("Secret-One-1"));
        assert_eq!(check_policy("Secret-Two-2", &h), Err(PolicyError::Reused));
        h.push_with("Secret-Five-5", 50);
        assert_eq!(h.entries.len(), 4);
        assert!(!h.contains("Secret-One-1"));
        assert_eq!(check_policy("Secret-One-1", &h), Ok(()));
        // Same secret, different salts: different hashes; no clear text anywhere.
        let mut g = SecretHistory::default();
        g.push_with("Secret-Five-5", 50);
        assert_ne!(g.entries[0].hash, h.entries[3].hash);
        let text = serde_json::to_string(&h).unwrap();
        assert!(!text.contains("Secret"));
    }

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", 1), first 32 bytes.
        assert_eq!(
            hex::encode(pbkdf2_sha256(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn reply_shapes() {
        let v = serde_json::json!({"data": {"accountId": "acc_1", "apiKey": "key9", "apiKeyId": "kid7"}});
        let k = parse_key(&v, "acc_1").unwrap();
        assert_eq!(k.credential.expose(), "acc_1_key9_kid7");
        assert_eq!(k.api_key_id, "kid7");
        assert!(k.fingerprint().starts_with("sha256:") && k.fingerprint().len() == 23);
        assert!(!format!("{k:?}").contains("key9"));
        let v = serde_json::json!({"authorization": "ApiKey acc_1_key9_kid7"});
        assert_eq!(parse_key(&v, "acc_1").unwrap().api_key_id, "kid7");
        assert!(parse_key(&serde_json::json!({"data": {}}), "a").is_err());
        assert!(parse_key(&serde_json::json!({"apiKey": "a b", "apiKeyId": "k"}), "a").is_err());
    }

    #[test]
    fn output_refuses_git_trees_and_existing_files() {
        let repo = std::env::temp_dir().join(format!("emvb-keys-git-{}", std::process::id()));
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let e = PreparedOutput::prepare(&repo.join("sub/pai.env"), false)
            .err()
            .unwrap();
        assert!(e.to_string().contains("git work tree"), "{e}");
        let _ = std::fs::remove_dir_all(&repo);
    }
}
