//! The relay as a command uses it: a journaled gateway, the store-and-forward decision
//! before a sale starts, the outcome recorded after it, and a resolver pass at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::gateway::JournaledGateway;
use super::resolver::{forward_once, resolve_once, PassReport, ResolverPolicy, SafLimits};
use super::{Journal, JournalError, RelayState};
use crate::gateway::Gateway;
use emvbridge_core::money::Money;
use emvbridge_core::txn::{AuthKind, Outcome, TxnConfig};

/// A journal, the gateway behind it and the merchant's limits.
pub struct Relay {
    /// The journaled gateway (hand this to the engine).
    pub gateway: Arc<JournaledGateway>,
    /// Store-and-forward limits.
    pub saf: SafLimits,
    /// Resolver policy.
    pub policy: ResolverPolicy,
    path: PathBuf,
}

impl Relay {
    /// Opens the journal at `path` in front of `inner`.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn open(
        path: &Path,
        inner: Arc<dyn Gateway>,
        saf: SafLimits,
        policy: ResolverPolicy,
    ) -> Result<Relay, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let journal = Arc::new(Journal::open(path)?);
        journal.set_in_flight(policy.min_age_secs);
        journal.set_processing_window(policy.processing_window_secs);
        Ok(Relay {
            gateway: Arc::new(JournaledGateway::new(inner, journal)),
            saf,
            policy,
            path: path.to_path_buf(),
        })
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The start-up pass of a command: settles what an earlier run left open and says
    /// loudly (standard error) what it could not.
    pub async fn start_up_pass(&self) -> Option<PassReport> {
        match self.pass().await {
            Ok(r) => {
                if !r.escalated.is_empty() || !r.forward_declined.is_empty() {
                    eprintln!(
                        "WARNING: unresolved transactions in the journal: {:?} {:?} (see emvbridge report)",
                        r.escalated, r.forward_declined
                    );
                }
                Some(r)
            }
            Err(e) => {
                eprintln!("WARNING: resolver pass failed: {e}");
                None
            }
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        self.gateway.journal()
    }

    /// Forwards stored sales and resolves what is due (rows older than the policy's
    /// `min_age_secs`). Loud on what it could not settle.
    ///
    /// # Errors
    /// [`JournalError`].
    pub async fn pass(&self) -> Result<PassReport, JournalError> {
        let now = self.journal().now();
        let inner = self.gateway.inner().as_ref();
        let mut r = forward_once(self.journal(), inner, &self.policy, now).await?;
        let s = resolve_once(self.journal(), inner, &self.policy, now).await?;
        r.settled.extend(s.settled);
        r.retry.extend(s.retry);
        r.escalated.extend(s.escalated);
        r.forward_declined.extend(s.forward_declined);
        Ok(r)
    }

    /// `base` with `offline_fallback` set from the store-and-forward limits.
    pub fn txn_config(&self, base: TxnConfig, kind: AuthKind, amount: Money) -> TxnConfig {
        let offline = self
            .saf
            .allows(self.journal(), kind, amount)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read stored totals: no offline approval");
                false
            });
        TxnConfig {
            offline_fallback: offline,
            ..base
        }
    }

    /// Records the outcome the POS saw.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn finish(&self, outcome: &Outcome) -> Result<RelayState, JournalError> {
        self.gateway.record_outcome(outcome)
    }
}

/// The default journal: `$XDG_DATA_HOME/emvbridge/journal.db`, else
/// `$HOME/.local/share/emvbridge/journal.db`, else `./emvbridge-journal.db`.
pub fn default_path() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = env("XDG_DATA_HOME") {
        return PathBuf::from(d).join("emvbridge").join("journal.db");
    }
    if let Some(h) = env("HOME") {
        return PathBuf::from(h)
            .join(".local/share/emvbridge")
            .join("journal.db");
    }
    PathBuf::from("emvbridge-journal.db")
}
