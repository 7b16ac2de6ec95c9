//! The checklist's vocabulary, shared by the checks in `preflight` and the sandbox scenarios:
//! the item names, a verdict per item, the report, and the [`Setup`] every check is given.

use serde_json::{json, Value};

use crate::config::{FileConfig, Lookup};
use crate::gateway::{Dialect, Environment};

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
    pub(super) fn push(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        self.items.push(Item {
            name: name.to_owned(),
            status,
            detail: detail.into(),
        });
    }

    pub(super) fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Status::Ok, detail);
    }

    pub(super) fn fail(&mut self, name: &str, detail: impl Into<String>) {
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
    /// The money-free operations' replies against the official definitions.
    pub const CONTRACT: &str = "gateway replies match the official definitions";
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
    pub const ALL: [&str; 15] = [
        CONFIGURATION,
        CREDENTIALS_PRESENT,
        CREDENTIALS_NOT_IN_REPO,
        GATEWAY,
        CONTRACT,
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

/// Everything the checks share once the configuration is read.
pub(super) struct Setup {
    pub(super) cfg: FileConfig,
    pub(super) env: Environment,
    pub(super) dialect: Dialect,
    pub(super) lookup: Lookup,
}
