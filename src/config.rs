//! Configuration: one loader for every command, non-secret settings layered as
//! defaults < a TOML file < `EMVBRIDGE_*` environment variables < the command's flags, and
//! secrets from the environment or from a secrets file outside the repository with
//! owner-only permissions (the integrators' `API_URL`/`API_KEY`/`ORGANIZATION_ID` of
//! gateways.md §2.2, which keep working as they are).
//!
//! The file is `--config FILE`, else `$EMVBRIDGE_CONFIG`, else `config.toml` in the user's
//! configuration directory (`$XDG_CONFIG_HOME/emvbridge/` or `~/.config/emvbridge/`) when it
//! exists. A setting `a.b` is overridden by `EMVBRIDGE_A__B` (`EMVBRIDGE_ENVIRONMENT`,
//! `EMVBRIDGE_TIMEOUTS__REQUEST_MS`, `EMVBRIDGE_JOURNAL__PATH`); an `EMVBRIDGE_` variable that
//! names no setting is warned about and ignored. The layering is `figment`'s, which also
//! remembers where each value came from for `config check`.
//!
//! ```toml
//! environment = "staging"            # sandbox | staging | production
//! dialect = "paymentsai"             # number | paymentsai | pay1st
//! base_url = "https://…"             # optional override of the dialect's URL variable
//! secrets_file = "/etc/emvbridge/secrets.env"   # optional, KEY=VALUE lines, mode 0600
//! [timeouts]
//! connect_ms = 5000
//! request_ms = 30000
//! [journal]
//! path = "/var/lib/emvbridge/journal.db"
//! [store_and_forward]
//! enabled = true
//! max_amount_minor = 5000
//! max_count = 20
//! max_total_minor = 50000
//! max_age_secs = 86400
//! [resolver]
//! max_attempts = 10
//! [webhooks]
//! listen = "127.0.0.1:8787"
//! max_skew_secs = 300
//! [api]
//! header_timeout_ms = 30000          # request headers, and how long an idle connection stays
//! body_timeout_ms = 30000            # a request body once its headers are in (else 408)
//! ```
//!
//! `emvbridge config check` prints the effective configuration with the source of each value,
//! and a checklist — each setting present or missing, secrets present (never their values),
//! the secrets file's permissions and whether it lives inside a git work tree — and exits 1
//! when something must be fixed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::http::HttpSettings;
use crate::gateway::{Dialect, Environment, Gateway, GatewayConfig};
use crate::journal::relay::Relay;
use crate::journal::resolver::{ResolverPolicy, SafLimits};

/// Largest configuration or secrets file read.
const MAX_FILE: u64 = 64 * 1024;

/// Why the configuration cannot be used. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {0}")]
    Read(String),
    /// The TOML does not parse or has unknown keys.
    #[error("invalid configuration: {0}")]
    Toml(String),
    /// The secrets file is readable by group or others.
    #[error("secrets file {0} is readable by group or others (chmod 600)")]
    Permissions(String),
    /// The secrets file is inside a git work tree.
    #[error("secrets file {0} is inside a git work tree")]
    InRepo(String),
    /// A line of the secrets file is not `KEY=VALUE` (line number only).
    #[error("secrets file line {0} is not KEY=VALUE")]
    SecretsLine(usize),
    /// The gateway settings are incomplete or invalid.
    #[error(transparent)]
    Gateway(#[from] crate::gateway::ConfigError),
    /// A layered value has the wrong type or names an unknown setting.
    #[error("invalid configuration: {0}")]
    Layer(String),
}

/// `EMVBRIDGE_` variables that are not settings of the file but are read elsewhere (the
/// token file, the log flags, the simulator and test switches): not warned about.
const OTHER_VARIABLES: [&str; 12] = [
    "EMVBRIDGE_CONFIG",
    "EMVBRIDGE_API_TOKEN_FILE",
    "EMVBRIDGE_LOG_FORMAT",
    "EMVBRIDGE_LOG_FILE",
    "EMVBRIDGE_DEVICE",
    "EMVBRIDGE_IMK",
    "EMVBRIDGE_PAI_SECRET",
    "EMVBRIDGE_PAI_TEMPORAL_KEY",
    "EMVBRIDGE_REQUIRE_PYEMV",
    "EMVBRIDGE_REQUIRE_PROMETHEUS_CLIENT",
    "EMVBRIDGE_TEST_BUILD_SIM",
    "EMVBRIDGE_VIPA_SIM",
];

/// The default configuration file: `config.toml` in the user's configuration directory.
pub fn default_config_path() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("emvbridge").join("config.toml"))
}

/// Where one effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
        }
    }
}

/// The effective configuration and how it was made.
#[derive(Debug, Clone)]
pub struct Layered {
    /// The merged settings.
    pub config: FileConfig,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Each setting (`timeouts.request_ms`) with its value as TOML text and its source.
    pub sources: BTreeMap<String, (String, Source)>,
    /// `EMVBRIDGE_` variables that name no setting (ignored).
    pub unknown_variables: Vec<String>,
}

/// Every setting's dotted key with its value, from a JSON rendering of the configuration.
fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The settings' keys (`environment`, `timeouts.request_ms`, …).
fn setting_keys() -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    if let Ok(v) = serde_json::to_value(FileConfig::default()) {
        leaves("", &v, &mut keys);
    }
    keys
}

/// The variable that overrides setting `key`: `timeouts.request_ms` →
/// `EMVBRIDGE_TIMEOUTS__REQUEST_MS`.
pub fn env_name(key: &str) -> String {
    format!("EMVBRIDGE_{}", key.replace('.', "__").to_ascii_uppercase())
}

impl Layered {
    /// Loads defaults < `file` (else `$EMVBRIDGE_CONFIG`, else the default file when it
    /// exists) < the `EMVBRIDGE_*` variables of `vars`. An unknown `EMVBRIDGE_` variable is
    /// logged as a warning and listed in [`Layered::unknown_variables`].
    ///
    /// # Errors
    /// A file given (by flag or variable) that cannot be read, TOML that does not parse, a
    /// value of the wrong type, an unknown key in the file.
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        use figment::providers::{Format, Serialized, Toml};
        use figment::Figment;
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let chosen = file.map(Path::to_path_buf).or_else(|| {
            vars.iter()
                .find(|(k, v)| k == "EMVBRIDGE_CONFIG" && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        let file = match chosen {
            Some(p) => {
                // Read (bounded) and parsed here first, for the error messages of before.
                FileConfig::load(&p)?;
                Some(p)
            }
            None => default_config_path().filter(|p| p.is_file()),
        };
        let keys = setting_keys();
        let by_var: HashMap<String, &str> =
            keys.keys().map(|k| (env_name(k), k.as_str())).collect();
        let mut unknown_variables = Vec::new();
        let mut env_values: Vec<(String, String)> = Vec::new();
        for (k, v) in &vars {
            if !k.starts_with("EMVBRIDGE_") || OTHER_VARIABLES.contains(&k.as_str()) {
                continue;
            }
            if by_var.contains_key(k) {
                env_values.push((k.clone(), v.clone()));
            } else {
                tracing::warn!(variable = %k, "ignoring an EMVBRIDGE_ variable that names no setting");
                unknown_variables.push(k.clone());
            }
        }
        let mut fig = Figment::from(Serialized::defaults(FileConfig::default()));
        if let Some(p) = &file {
            fig = fig.merge(Toml::file_exact(p));
        }
        // The variables come from `vars` (the process environment, or a test's own), so they
        // are merged as a dictionary rather than through figment's `Env`, which reads the
        // process environment itself.
        let provided: figment::value::Dict = env_values
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("EMVBRIDGE_")?.to_ascii_lowercase();
                Some((key, v.clone()))
            })
            .fold(figment::value::Dict::new(), |mut d, (k, v)| {
                insert_dotted(&mut d, &k.replace("__", "."), &v);
                d
            });
        fig = fig.merge(Serialized::defaults(provided));
        let config: FileConfig = fig
            .extract()
            .map_err(|e| ConfigError::Layer(e.to_string().chars().take(300).collect()))?;
        let mut effective = BTreeMap::new();
        if let Ok(v) = serde_json::to_value(&config) {
            leaves("", &v, &mut effective);
        }
        let sources = effective
            .into_iter()
            .map(|(key, value)| {
                let var = env_name(&key);
                let source = if env_values.iter().any(|(k, _)| *k == var) {
                    Source::Env(var)
                } else {
                    match fig.find_metadata(&key).and_then(|m| m.source.clone()) {
                        Some(figment::Source::File(p)) => Source::File(p),
                        _ => Source::Default,
                    }
                };
                (key, (value, source))
            })
            .collect();
        Ok(Layered {
            config,
            file,
            sources,
            unknown_variables,
        })
    }

    /// [`Layered::load_from`] over the process environment.
    ///
    /// # Errors
    /// As [`Layered::load_from`].
    pub fn load(file: Option<&Path>) -> Result<Layered, ConfigError> {
        Self::load_from(file, std::env::vars())
    }
}

/// Puts `value` (parsed as a TOML value when it is one: numbers, booleans; else a string)
/// at the dotted `key` of `dict`.
fn insert_dotted(dict: &mut figment::value::Dict, key: &str, value: &str) {
    use figment::value::{Dict, Value};
    let parsed: Value = value
        .parse()
        .unwrap_or_else(|_| Value::from(value.to_owned()));
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), parsed);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_dotted(inner, rest, value);
            }
        }
    }
}

/// Timeouts of the gateway HTTP client.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Connect timeout, ms.
    pub connect_ms: u64,
    /// Whole-request timeout, ms.
    pub request_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 5_000,
            request_ms: 30_000,
        }
    }
}

/// The local API's limits on slow clients (`emvbridge serve`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// How long a client may take to send a request's headers (the connection is then closed
    /// without an answer), and how long an idle keep-alive connection is kept, ms.
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request body once its headers are in (then
    /// `408 body_timeout`), ms.
    pub body_timeout_ms: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            header_timeout_ms: 30_000,
            body_timeout_ms: 30_000,
        }
    }
}

impl ApiSettings {
    /// The header timeout (at least 1 ms).
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    /// The body timeout (at least 1 ms).
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms.max(1))
    }
}

/// Where the journal is.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSettings {
    /// Path of the SQLite file; the user's data directory when absent.
    pub path: Option<PathBuf>,
}

/// The webhook receiver. Its secrets come from the environment / secrets file:
/// `PAI_WEBHOOK_SECRET`, `PAY1ST_WEBHOOK_USER`, `PAY1ST_WEBHOOK_PASS`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Listen address.
    pub listen: String,
    /// Largest accepted clock skew of a signed timestamp, seconds.
    pub max_skew_secs: i64,
    /// The PAI signature header (\[GAP\] in the docs: configurable).
    pub pai_signature_header: String,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            listen: "127.0.0.1:8787".into(),
            max_skew_secs: 300,
            pai_signature_header: "X-Signature".into(),
        }
    }
}

/// The TOML file.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `sandbox`, `staging` or `production`.
    pub environment: Option<String>,
    /// `number`, `paymentsai` or `pay1st`.
    pub dialect: Option<String>,
    /// Override of the dialect's base URL variable.
    pub base_url: Option<String>,
    /// A `KEY=VALUE` secrets file (outside the repository, mode 0600).
    pub secrets_file: Option<PathBuf>,
    /// HTTP timeouts.
    pub timeouts: Timeouts,
    /// Journal.
    pub journal: JournalSettings,
    /// Store-and-forward limits.
    pub store_and_forward: SafLimits,
    /// Resolver policy.
    pub resolver: ResolverPolicy,
    /// Webhook receiver.
    pub webhooks: WebhookSettings,
    /// The local API's timeouts.
    pub api: ApiSettings,
}

impl FileConfig {
    /// Parses TOML text.
    ///
    /// # Errors
    /// [`ConfigError::Toml`].
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml(e.message().chars().take(200).collect()))
    }

    /// Reads and parses one file, nothing else (see [`FileConfig::effective`] for what
    /// commands use).
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        Self::parse(&read_bounded(path)?)
    }

    /// The effective configuration every command uses: defaults < `file` (or the default
    /// file) < `EMVBRIDGE_*` variables; the command then applies its flags.
    ///
    /// # Errors
    /// As [`Layered::load`].
    pub fn effective(file: Option<&Path>) -> Result<FileConfig, ConfigError> {
        Layered::load(file).map(|l| l.config)
    }

    /// `flag` when given, else the effective configuration's `dialect`, else PaymentsAI: a
    /// `--dialect` flag overrides the configuration, its absence does not.
    ///
    /// # Errors
    /// As [`Layered::load`].
    pub fn dialect_or_configured(
        flag: Option<Dialect>,
        config: Option<&Path>,
    ) -> Result<Dialect, ConfigError> {
        Ok(match flag {
            Some(d) => d,
            None => Self::effective(config)?
                .dialect()
                .unwrap_or(Dialect::PaymentsAi),
        })
    }

    /// The gateway configuration of `dialect` (the file's dialect is the default elsewhere):
    /// the environment from `environment` (staging when absent), variables from the process
    /// environment, then the secrets file, then `base_url` for the dialect's URL variable.
    ///
    /// # Errors
    /// The secrets file is refused or unreadable; variables are missing.
    pub fn gateway_config(&self, dialect: Dialect) -> Result<GatewayConfig, ConfigError> {
        let file = match &self.secrets_file {
            Some(p) => read_secrets_file(p)?,
            None => HashMap::new(),
        };
        let mut cfg = self.clone();
        cfg.dialect = Some(dialect.to_string());
        let lookup = Lookup::new(&cfg, file, true, HashMap::new());
        let env = self.environment().unwrap_or(Environment::Staging);
        Ok(GatewayConfig::from_lookup(dialect, env, &|n| {
            lookup.get(n)
        })?)
    }

    /// The environment, parsed.
    pub fn environment(&self) -> Option<Environment> {
        parse_environment(self.environment.as_deref()?)
    }

    /// The dialect, parsed.
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect.as_deref()?.parse().ok()
    }

    /// HTTP settings from the timeouts.
    pub fn http(&self) -> HttpSettings {
        HttpSettings {
            connect_timeout: Duration::from_millis(self.timeouts.connect_ms.max(1)),
            request_timeout: Duration::from_millis(self.timeouts.request_ms.max(1)),
            ..HttpSettings::default()
        }
    }

    /// The journal path (configured or the default).
    pub fn journal_path(&self) -> PathBuf {
        self.journal
            .path
            .clone()
            .unwrap_or_else(crate::journal::relay::default_path)
    }
}

/// Parses an environment name.
pub fn parse_environment(s: &str) -> Option<Environment> {
    match s.to_ascii_lowercase().as_str() {
        "sandbox" => Some(Environment::Sandbox),
        "staging" | "stage" => Some(Environment::Staging),
        "production" | "prod" => Some(Environment::Production),
        _ => None,
    }
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|_| ConfigError::Read(shown.clone()))?;
    let mut s = String::new();
    f.take(MAX_FILE)
        .read_to_string(&mut s)
        .map_err(|_| ConfigError::Read(shown))?;
    Ok(s)
}

/// Whether `path` is readable by group or others.
#[cfg(unix)]
pub fn group_or_world_readable(path: &Path) -> Option<bool> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o077 != 0)
}

/// Whether `path` is readable by group or others (never on this platform).
#[cfg(not(unix))]
pub fn group_or_world_readable(_path: &Path) -> Option<bool> {
    Some(false)
}

/// Whether `path` lies inside a git work tree (a `.git` in it or any parent).
pub fn inside_git_tree(path: &Path) -> bool {
    let abs = std::fs::canonicalize(path)
        .or_else(|_| std::env::current_dir().map(|d| d.join(path)))
        .unwrap_or_else(|_| path.to_path_buf());
    abs.ancestors().skip(1).any(|d| d.join(".git").exists())
}

/// Reads a secrets file: refuses group/world-readable files and files inside a git work
/// tree; `KEY=VALUE` lines, `#` comments, optional `export `, optional quotes.
///
/// # Errors
/// [`ConfigError`].
pub fn read_secrets_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let shown = path.display().to_string();
    match group_or_world_readable(path) {
        None => return Err(ConfigError::Read(shown)),
        Some(true) => return Err(ConfigError::Permissions(shown)),
        Some(false) => {}
    }
    if inside_git_tree(path) {
        return Err(ConfigError::InRepo(shown));
    }
    parse_secrets(&read_bounded(path)?)
}

/// Parses `KEY=VALUE` lines.
///
/// # Errors
/// [`ConfigError::SecretsLine`].
pub fn parse_secrets(text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l.split_once('=').ok_or(ConfigError::SecretsLine(i + 1))?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::SecretsLine(i + 1));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// The URL variable each dialect reads.
pub fn url_var(d: Dialect) -> &'static str {
    match d {
        Dialect::Number => "NUMBER_API_URL",
        Dialect::PaymentsAi => "API_URL",
        Dialect::Pay1st => "PAY1ST_API_URL",
    }
}

/// (variable, secret?, required?) per dialect, as the adapters read them.
pub fn variables(d: Dialect, env: Environment) -> Vec<(&'static str, bool, bool)> {
    let sandbox = env == Environment::Sandbox;
    match d {
        Dialect::PaymentsAi => vec![
            ("API_URL", false, sandbox),
            ("API_KEY", true, true),
            ("ORGANIZATION_ID", false, true),
            ("WEBSITE_ID", false, true),
            ("CUSTOMER_ID", false, true),
            ("PAI_EMV_EXTENSION", false, false),
        ],
        Dialect::Number => vec![
            ("NUMBER_API_URL", false, sandbox),
            ("NUMBER_ACCT_CODE", false, true),
            ("NUMBER_TOKEN", true, true),
            ("NUMBER_HMAC_SECRET", true, true),
            ("NUMBER_USER_ID", false, true),
            ("NUMBER_MERCH_ID", false, false),
            ("NUMBER_CURRENCY", false, false),
            ("NUMBER_BASE_PATH", false, false),
            ("NUMBER_EMV_EXTENSION", false, false),
        ],
        Dialect::Pay1st => vec![
            ("PAY1ST_API_URL", false, true),
            ("PAY1ST_API_KEY", true, true),
            ("PAY1ST_API_SECRET", true, true),
            ("PAY1ST_SIGNING_KEY", true, true),
            ("PAY1ST_COUNTRY_CODE", false, true),
            ("PAY1ST_CALLBACK_URL", false, false),
            ("PAY1ST_WEBHOOK_URL", false, false),
            ("PAY1ST_EMV_EXTENSION", false, false),
        ],
    }
}

/// Webhook secrets per dialect.
pub fn webhook_variables(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::PaymentsAi => &["PAI_WEBHOOK_SECRET"],
        Dialect::Pay1st => &["PAY1ST_WEBHOOK_USER", "PAY1ST_WEBHOOK_PASS"],
        Dialect::Number => &[],
    }
}

/// The environment as seen by the relay: process environment first, then the secrets file,
/// then the TOML's `base_url` for the dialect's URL variable.
pub struct Lookup {
    file: HashMap<String, String>,
    url_var: Option<(&'static str, String)>,
    process: bool,
    extra: HashMap<String, String>,
}

impl Lookup {
    /// Builds the lookup; `process` reads the process environment (off in tests, which pass
    /// `extra` instead).
    pub fn new(
        cfg: &FileConfig,
        file: HashMap<String, String>,
        process: bool,
        extra: HashMap<String, String>,
    ) -> Lookup {
        let url_var = match (cfg.dialect(), &cfg.base_url) {
            (Some(d), Some(u)) => Some((url_var(d), u.clone())),
            _ => None,
        };
        Lookup {
            file,
            url_var,
            process,
            extra,
        }
    }

    /// Where the value of `name` comes from: `argument`, `environment`, `secrets file` or
    /// `base_url` (as [`Lookup::get`] looks).
    pub fn source(&self, name: &str) -> Option<&'static str> {
        let set = |v: Option<&String>| v.is_some_and(|v| !v.trim().is_empty());
        if set(self.extra.get(name)) {
            Some("argument")
        } else if self.process && set(std::env::var(name).ok().as_ref()) {
            Some("environment")
        } else if set(self.file.get(name)) {
            Some("secrets file")
        } else if self.url_var.as_ref().is_some_and(|(n, _)| *n == name) {
            Some("base_url")
        } else {
            None
        }
    }

    /// The value of `name`, trimmed, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        let v = self
            .extra
            .get(name)
            .cloned()
            .or_else(|| self.process.then(|| std::env::var(name).ok()).flatten())
            .or_else(|| self.file.get(name).cloned())
            .or_else(|| {
                self.url_var
                    .as_ref()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, u)| u.clone())
            })?;
        let v = v.trim().to_owned();
        (!v.is_empty()).then_some(v)
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether it is fine.
    pub ok: bool,
    /// What was checked, and the verdict (never a secret value).
    pub text: String,
}

/// Runs the checks over `cfg` (loaded from `cfg_path` when given) with `extra` variables
/// taking precedence over the process environment (`process` reads it).
pub fn check(cfg_path: Option<&Path>, process: bool, extra: HashMap<String, String>) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |ok: bool, text: String| out.push(Check { ok, text });
    let vars: Vec<(String, String)> = if process {
        std::env::vars().collect()
    } else {
        Vec::new()
    };
    let layered = match Layered::load_from(cfg_path, vars.into_iter().chain(extra.clone())) {
        Ok(l) => {
            match &l.file {
                Some(p) => push(true, format!("config file: {} parsed", p.display())),
                None => push(true, "config file: none (defaults)".into()),
            }
            l
        }
        Err(e) => {
            push(false, format!("config file: {e}"));
            return out;
        }
    };
    for v in &layered.unknown_variables {
        push(true, format!("warning: {v} names no setting (ignored)"));
    }
    let cfg = layered.config;
    let env = match (&cfg.environment, cfg.environment()) {
        (None, _) => {
            push(
                false,
                "environment: missing (sandbox, staging or production)".into(),
            );
            None
        }
        (Some(s), None) => {
            push(
                false,
                format!("environment: {s:?} is not sandbox, staging or production"),
            );
            None
        }
        (Some(_), Some(e)) => {
            push(true, format!("environment: {e:?}").to_ascii_lowercase());
            Some(e)
        }
    };
    let dialect = match (&cfg.dialect, cfg.dialect()) {
        (None, _) => {
            push(
                false,
                "dialect: missing (number, paymentsai or pay1st)".into(),
            );
            None
        }
        (Some(s), None) => {
            push(
                false,
                format!("dialect: {s:?} is not number, paymentsai or pay1st"),
            );
            None
        }
        (Some(_), Some(d)) => {
            push(true, format!("dialect: {d}"));
            Some(d)
        }
    };
    let file = match &cfg.secrets_file {
        None => {
            push(
                true,
                "secrets file: none (secrets from the environment)".into(),
            );
            HashMap::new()
        }
        Some(p) => {
            let shown = p.display();
            match group_or_world_readable(p) {
                None => push(false, format!("secrets file {shown}: cannot be read")),
                Some(true) => push(
                    false,
                    format!(
                        "secrets file {shown}: readable by group or others (refused; chmod 600)"
                    ),
                ),
                Some(false) => push(
                    true,
                    format!("secrets file {shown}: owner-only permissions"),
                ),
            }
            if inside_git_tree(p) {
                push(
                    false,
                    format!("secrets file {shown}: inside a git work tree (refused)"),
                );
            } else {
                push(
                    true,
                    format!("secrets file {shown}: outside any git work tree"),
                );
            }
            read_secrets_file(p).unwrap_or_default()
        }
    };
    push(true, format!("journal: {}", cfg.journal_path().display()));
    push(
        true,
        format!(
            "store-and-forward: {}",
            if cfg.store_and_forward.enabled {
                format!(
                    "enabled (max {} minor units each, {} sales, {} minor units in total)",
                    cfg.store_and_forward.max_amount_minor,
                    cfg.store_and_forward.max_count,
                    cfg.store_and_forward.max_total_minor
                )
            } else {
                "disabled".into()
            }
        ),
    );
    let lookup = Lookup::new(&cfg, file, process, extra);
    if let (Some(d), Some(e)) = (dialect, env) {
        for (name, secret, required) in variables(d, e) {
            let from = lookup.source(name).unwrap_or("nowhere");
            match (lookup.get(name), secret, required) {
                (Some(_), true, _) => push(
                    true,
                    format!("{name}: set (secret, not shown; from {from})"),
                ),
                (Some(v), false, _) => push(true, format!("{name}: {v} (from {from})")),
                (None, _, true) => push(false, format!("{name}: missing")),
                (None, _, false) => push(true, format!("{name}: not set (optional)")),
            }
        }
        for name in webhook_variables(d) {
            match lookup.get(name) {
                Some(_) => push(true, format!("{name}: set (secret, not shown)")),
                None => push(
                    false,
                    format!("{name}: missing (webhooks cannot be verified)"),
                ),
            }
        }
        match GatewayConfig::from_lookup(d, e, &|n| lookup.get(n)) {
            Ok(_) => push(true, "gateway configuration: complete".into()),
            Err(err) => push(false, format!("gateway configuration: {err}")),
        }
    }
    out
}

/// `--journal` / `--config` as `sale` and `serve` take them.
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// `--journal PATH`.
    pub journal: Option<PathBuf>,
    /// `--config FILE` (TOML: journal path, store-and-forward limits, resolver policy).
    pub config: Option<PathBuf>,
}

impl RelayOptions {
    /// The configuration (defaults without `--config`) and the journal path, if journaling
    /// is on: `--journal` when given; else, with `--gateway env` or a `--config`, the
    /// configured journal (or the default path). The sandbox without either journals nothing.
    ///
    /// # Errors
    /// The configuration file cannot be read or parsed.
    pub fn resolve(
        &self,
        gateway_spec: &str,
    ) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
        let cfg = FileConfig::effective(self.config.as_deref())?;
        let path = self.journal.clone().or_else(|| {
            (gateway_spec == "env" || self.config.is_some()).then(|| cfg.journal_path())
        });
        Ok((cfg, path))
    }

    /// Opens the relay in front of `inner` when journaling is on, and runs the start-up
    /// resolver pass. `None` when journaling is off.
    ///
    /// # Errors
    /// Bad configuration, a journal that cannot be opened.
    pub async fn open(
        &self,
        gateway_spec: &str,
        inner: Arc<dyn Gateway>,
    ) -> anyhow::Result<Option<Relay>> {
        let (cfg, path) = self.resolve(gateway_spec)?;
        Self::open_resolved(&cfg, path, inner).await
    }

    /// [`RelayOptions::open`] on a configuration already [resolved](RelayOptions::resolve),
    /// for a caller that reads other settings from it too: the file is read once.
    ///
    /// # Errors
    /// A journal that cannot be opened.
    pub async fn open_resolved(
        cfg: &FileConfig,
        path: Option<PathBuf>,
        inner: Arc<dyn Gateway>,
    ) -> anyhow::Result<Option<Relay>> {
        let Some(path) = path else {
            return Ok(None);
        };
        let relay = Relay::open(
            &path,
            inner,
            cfg.store_and_forward.clone(),
            cfg.resolver.clone(),
        )?;
        relay.start_up_pass().await;
        Ok(Some(relay))
    }
}

/// Arguments of `emvbridge config`.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration with the source of each value, and say what is
    /// missing, without printing secrets.
    Check {
        /// The TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs `emvbridge config …`: exit 0 when everything is in place, 1 otherwise.
pub fn run(cmd: ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Check { config } => {
            if let Ok(l) = Layered::load(config.as_deref()) {
                println!("effective configuration (value, source):");
                for (key, (value, source)) in &l.sources {
                    println!("  {key} = {value}  ({source})");
                }
                println!();
            }
            let checks = check(config.as_deref(), true, HashMap::new());
            let mut ok = true;
            for c in &checks {
                println!("[{}] {}", if c.ok { " ok " } else { "FAIL" }, c.text);
                ok &= c.ok;
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let _ = mode;
        p
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("emvb-cfg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let c = FileConfig::parse(
            "environment = \"staging\"\ndialect = \"pai\"\n[store_and_forward]\nenabled = true\nmax_amount_minor = 5000\nmax_count = 3\nmax_total_minor = 9000\n",
        )
        .unwrap();
        assert_eq!(c.environment(), Some(Environment::Staging));
        assert_eq!(c.dialect(), Some(Dialect::PaymentsAi));
        assert!(c.store_and_forward.enabled);
        assert_eq!(c.resolver.max_attempts, 10);
        assert!(
            FileConfig::parse("api_key = \"x\"").is_err(),
            "no secrets in the toml"
        );
        assert!(FileConfig::parse("[journal]\npath = 3").is_err());
    }

    #[test]
    fn layers_defaults_file_env_and_says_where_each_value_came_from() {
        let d = tmpdir("layers");
        let file = write(
            &d,
            "relay.toml",
            "environment = \"production\"\n[timeouts]\nrequest_ms = 1234\n",
            0o644,
        );
        let vars = [
            ("EMVBRIDGE_TIMEOUTS__CONNECT_MS", "77"),
            ("EMVBRIDGE_DIALECT", "number"),
            ("EMVBRIDGE_NO_SUCH_SETTING", "x"),
            ("EMVBRIDGE_API_TOKEN_FILE", "/t"),
            ("API_KEY", "not-a-setting"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let l = Layered::load_from(Some(&file), vars).unwrap();
        assert_eq!(l.config.environment(), Some(Environment::Production));
        assert_eq!(l.config.dialect(), Some(Dialect::Number));
        assert_eq!(
            (l.config.timeouts.request_ms, l.config.timeouts.connect_ms),
            (1234, 77)
        );
        assert_eq!(l.config.resolver.max_attempts, 10, "default kept");
        assert_eq!(l.unknown_variables, vec!["EMVBRIDGE_NO_SUCH_SETTING"]);
        let src = |k: &str| l.sources.get(k).map(|(_, s)| s.clone());
        assert_eq!(src("environment"), Some(Source::File(file.clone())));
        assert_eq!(src("timeouts.request_ms"), Some(Source::File(file.clone())));
        assert_eq!(
            src("timeouts.connect_ms"),
            Some(Source::Env("EMVBRIDGE_TIMEOUTS__CONNECT_MS".into()))
        );
        assert_eq!(src("resolver.max_attempts"), Some(Source::Default));
        // A value of the wrong type is an error that names the setting.
        let bad = [(
            "EMVBRIDGE_TIMEOUTS__REQUEST_MS".to_owned(),
            "soon".to_owned(),
        )];
        let e = Layered::load_from(Some(&file), bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("request_ms"), "{e}");
        // `EMVBRIDGE_CONFIG` chooses the file when no flag does.
        let by_var = [("EMVBRIDGE_CONFIG".to_owned(), file.display().to_string())];
        let l = Layered::load_from(None, by_var).unwrap();
        assert_eq!(l.file.as_deref(), Some(file.as_path()));
        assert_eq!(l.config.timeouts.request_ms, 1234);
        // A file given that does not exist is an error, not the defaults.
        assert!(Layered::load_from(Some(&d.join("missing.toml")), []).is_err());
    }

    #[test]
    fn a_dialect_flag_overrides_the_file_and_its_absence_does_not() {
        let d = tmpdir("dialect");
        let file = write(&d, "c.toml", "dialect = \"number\"\n", 0o644);
        let pick = |flag| FileConfig::dialect_or_configured(flag, Some(&file)).unwrap();
        assert_eq!(pick(None), Dialect::Number);
        assert_eq!(pick(Some(Dialect::Pay1st)), Dialect::Pay1st);
        let empty = write(&d, "e.toml", "", 0o644);
        assert_eq!(
            FileConfig::dialect_or_configured(None, Some(&empty)).unwrap(),
            Dialect::PaymentsAi
        );
    }

    #[test]
    fn secrets_lines() {
        let m = parse_secrets("# c\nexport API_KEY=\"abc\"\nORGANIZATION_ID = org_1\n\n").unwrap();
        assert_eq!(m.get("API_KEY").map(String::as_str), Some("abc"));
        assert_eq!(m.get("ORGANIZATION_ID").map(String::as_str), Some("org_1"));
        let e = parse_secrets("API_KEY=ok\nnot a pair with SECRET\n").unwrap_err();
        assert_eq!(e.to_string(), "secrets file line 2 is not KEY=VALUE");
        assert!(!e.to_string().contains("SECRET"));
    }

    #[test]
    fn check_lists_missing_and_never_prints_secrets() {
        let d = tmpdir("check");
        let cfg = write(&d, "relay.toml", "environment = \"sandbox\"\ndialect = \"paymentsai\"\nbase_url = \"http://127.0.0.1:9\"\n", 0o644);
        let extra: HashMap<String, String> =
            [("API_KEY".to_owned(), "acc_TOPSECRET_key".to_owned())].into();
        let checks = check(Some(&cfg), false, extra);
        let text: Vec<String> = checks
            .iter()
            .map(|c| format!("{} {}", c.ok, c.text))
            .collect();
        let all = text.join("\n");
        assert!(!all.contains("TOPSECRET"), "{all}");
        assert!(
            all.contains("true API_KEY: set (secret, not shown; from argument)"),
            "{all}"
        );
        assert!(all.contains("true API_URL: http://127.0.0.1:9"), "{all}");
        assert!(all.contains("false ORGANIZATION_ID: missing"), "{all}");
        assert!(all.contains("false PAI_WEBHOOK_SECRET: missing"), "{all}");
        assert!(
            all.contains(
                "false gateway configuration: missing environment variables: ORGANIZATION_ID"
            ),
            "{all}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn secrets_file_permissions_and_git_tree() {
        // Outside any git tree: the system temp dir.
        let d = tmpdir("perm");
        let loose = write(&d, "loose.env", "API_KEY=abc\n", 0o644);
        assert!(matches!(
            read_secrets_file(&loose),
            Err(ConfigError::Permissions(_))
        ));
        let tight = write(
            &d,
            "tight.env",
            "API_KEY=abc\nORGANIZATION_ID=org_1\nWEBSITE_ID=web_1\nCUSTOMER_ID=cus_1\nPAI_WEBHOOK_SECRET=w\n",
            0o600,
        );
        if !inside_git_tree(&tight) {
            assert_eq!(read_secrets_file(&tight).unwrap().len(), 5);
            let cfg = write(
                &d,
                "ok.toml",
                &format!(
                    "environment = \"staging\"\ndialect = \"paymentsai\"\nsecrets_file = {:?}\n",
                    tight.display().to_string()
                ),
                0o644,
            );
            let checks = check(Some(&cfg), false, HashMap::new());
            assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        }
        // Inside a git work tree.
        let repo = d.join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let inside = write(&repo, "secrets.env", "API_KEY=abc\n", 0o600);
        assert!(inside_git_tree(&inside));
        assert!(matches!(
            read_secrets_file(&inside),
            Err(ConfigError::InRepo(_))
        ));
        let cfg = write(
            &d,
            "bad.toml",
            &format!(
                "environment = \"staging\"\ndialect = \"paymentsai\"\nsecrets_file = {:?}\n",
                loose.display().to_string()
            ),
            0o644,
        );
        let checks = check(Some(&cfg), false, HashMap::new());
        assert!(
            checks
                .iter()
                .any(|c| !c.ok && c.text.contains("readable by group or others")),
            "{checks:?}"
        );
    }
}
