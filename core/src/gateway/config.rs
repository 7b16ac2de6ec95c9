//! The configuration vocabulary shared by the dialects: which deployment ([`Environment`]),
//! credentials that never print ([`Secret`]), what is missing or invalid ([`ConfigError`]), and
//! reading variables through a lookup function.

use std::fmt;

/// Which deployment of a gateway to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The emvbridge sandbox gateway (§4): the base URL must be given.
    Sandbox,
    /// The gateway's staging / test host.
    Staging,
    /// Production.
    Production,
}

/// A credential. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for building a header or a MAC. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a gateway configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Environment variables that are required and not set (names only).
    #[error("missing environment variables: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// A value is present but unusable (names the variable, never the value).
    #[error("invalid value for {0}")]
    Invalid(&'static str),
    /// The HTTP client could not be built.
    #[error("cannot build http client")]
    Client,
}

/// Reads variables through `lookup`, collecting the names of missing ones.
pub(crate) struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    missing: Vec<&'static str>,
}

impl<'a> EnvReader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        EnvReader {
            lookup,
            missing: Vec::new(),
        }
    }
    pub(crate) fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
    pub(crate) fn required(&mut self, name: &'static str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.missing.push(name);
            String::new()
        })
    }
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Missing(self.missing))
        }
    }
}

/// The process environment, for `from_env`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Checks a base URL: http(s), no trailing slash kept.
pub(crate) fn base_url(raw: &str, var: &'static str) -> Result<String, ConfigError> {
    let u = raw.trim().trim_end_matches('/');
    if (u.starts_with("https://") || u.starts_with("http://")) && u.len() > 8 && !u.contains(' ') {
        Ok(u.to_owned())
    } else {
        Err(ConfigError::Invalid(var))
    }
}

/// Reads an on/off switch (`on`, `true`, `1`, `yes` / `off`, `false`, `0`, `no`).
pub(crate) fn switch(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}
