//! All sandbox state in one [`SimState`]: configuration, virtual clock, seeded generator,
//! ledger, fault rules, webhook outbox and each dialect's own state. Sans-IO: the dialects
//! ([`crate::number`], [`crate::paymentsai`], [`crate::pay1st`]) change it through
//! [`SimState::with_faults`] and [`SimState::queue_webhook`]; [`crate::dispatch`] routes a
//! request to them.

use emvbridge_core::gateway::Dialect;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::clock::VirtualClock;
use crate::config::SandboxConfig;
use crate::dialect_state::{NumberState, PaiState, Pay1stState};
use crate::exchange::{Exec, Reply, SimResponse};
use crate::faults::{DropWhen, FaultAction, FaultKey, Faults, Op, WebhookMode};
use crate::ledger::Ledger;
use crate::store::{self, Store};
use crate::webhooks::{NewEvent, Outbox};

/// All sandbox state.
pub struct SimState {
    /// Configuration.
    pub cfg: SandboxConfig,
    /// Virtual clock.
    pub clock: VirtualClock,
    /// Seeded generator for ids and keys.
    pub rng: ChaCha20Rng,
    /// Transactions.
    pub ledger: Ledger,
    /// Fault rules.
    pub faults: Faults,
    /// Webhook outbox.
    pub outbox: Outbox,
    /// Number sessions and lockouts.
    pub number: NumberState,
    /// PAI keys, tokens, idempotency.
    pub pai: PaiState,
    /// Pay1st tokens and payments.
    pub pay1st: Pay1stState,
}

impl SimState {
    /// Fresh state.
    pub fn new(cfg: SandboxConfig) -> Self {
        let start = cfg
            .clock_start_epoch
            .unwrap_or_else(VirtualClock::wall_epoch);
        let ledger = Ledger::default();
        store::create_tables(ledger.db());
        SimState {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            clock: VirtualClock::new(start),
            ledger,
            faults: Faults::default(),
            outbox: Outbox::default(),
            number: NumberState::default(),
            pai: PaiState::new(&cfg.pai, start),
            pay1st: Pay1stState::default(),
            cfg,
        }
    }

    /// `POST /_sim/reset`: everything back to the start, same seed and config.
    pub fn reset(&mut self) {
        *self = SimState::new(self.cfg.clone());
    }

    /// The dialects' per-transaction state, in the ledger's SQLite file.
    pub(crate) fn store(&self) -> Store<'_> {
        Store(self.ledger.db())
    }

    /// Virtual now, Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// `n` random bytes as lowercase hex, from the seeded generator.
    pub fn rand_hex(&mut self, n: usize) -> String {
        let mut buf = vec![0u8; n.min(64)];
        self.rng.fill_bytes(&mut buf);
        hex::encode(buf)
    }

    /// Deterministic 6-character auth code: hash(seed, id).
    pub fn auth_code(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.cfg.seed.to_be_bytes());
        h.update(id.as_bytes());
        let d = h.finalize();
        let alphabet = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
        d.iter()
            .take(6)
            .map(|b| char::from(alphabet[(*b as usize) % alphabet.len()]))
            .collect()
    }

    /// Runs `exec` under the fault rules matching `key` (gateways.md §4.7). `error_resp(status)`
    /// is the dialect's shape for an injected 5xx. Forced outcomes are handed to `exec`.
    pub fn with_faults(
        &mut self,
        key: FaultKey,
        error_resp: impl Fn(u16) -> SimResponse,
        exec: impl FnOnce(&mut SimState, Option<&FaultAction>) -> Exec,
    ) -> Reply {
        let fault = self.faults.take(&key);
        let lost = |state: &mut SimState, e: &Exec| {
            for id in &e.committed {
                if let Some(t) = state.ledger.get_mut(id) {
                    t.flag("lost_response");
                }
            }
        };
        match fault {
            None | Some(FaultAction::Webhook { .. }) => Reply::Respond(exec(self, None).resp),
            Some(FaultAction::Delay { ms }) => Reply::Delay(ms.min(600_000), exec(self, None).resp),
            Some(FaultAction::Late { ms }) => {
                let e = exec(self, None);
                lost(self, &e);
                Reply::Delay(ms.min(600_000), e.resp)
            }
            Some(FaultAction::Hang { commit }) => {
                if commit {
                    let e = exec(self, None);
                    lost(self, &e);
                }
                Reply::Hang
            }
            Some(FaultAction::Drop { commit, when }) => {
                let resp = if commit {
                    let e = exec(self, None);
                    lost(self, &e);
                    e.resp
                } else {
                    error_resp(200)
                };
                match when {
                    DropWhen::BeforeHeaders => Reply::Drop(None),
                    DropWhen::MidBody => Reply::Drop(Some(resp)),
                }
            }
            Some(FaultAction::Http {
                status,
                commit,
                body,
            }) => {
                if commit {
                    let e = exec(self, None);
                    lost(self, &e);
                }
                let status = if (500..=599).contains(&status) {
                    status
                } else {
                    500
                };
                Reply::Respond(match body {
                    Some(b) => SimResponse::text(status, &b),
                    None => error_resp(status),
                })
            }
            Some(FaultAction::Malformed { commit }) => {
                let mut resp = if commit {
                    let e = exec(self, None);
                    lost(self, &e);
                    e.resp
                } else {
                    SimResponse::json(200, &serde_json::json!({"truncated": true}))
                };
                let keep = (resp.body.len() / 2)
                    .max(1)
                    .min(resp.body.len().saturating_sub(1));
                resp.body.truncate(keep);
                resp.status = 200;
                resp.content_type = "application/json";
                Reply::Respond(resp)
            }
            Some(a) => Reply::Respond(exec(self, Some(&a)).resp),
        }
    }

    /// Queues a webhook, consulting `op: webhook` fault rules for an anomaly mode.
    /// `sign(bad)` returns the headers (a wrong signature when `bad`).
    pub fn queue_webhook(
        &mut self,
        dialect: Dialect,
        event_id: String,
        url: String,
        body: String,
        client_ref: Option<String>,
        sign: impl Fn(bool) -> Vec<(String, String)>,
    ) {
        let key = FaultKey {
            dialect: Some(dialect),
            op: Some(Op::Webhook),
            amount_minor: None,
            client_ref,
        };
        let mode = match self.faults.take(&key) {
            Some(FaultAction::Webhook { mode, secs, n }) => Some((mode, secs, n)),
            _ => None,
        };
        let bad = matches!(mode, Some((WebhookMode::BadSignature, ..)));
        let headers = sign(bad);
        let now = self.now();
        self.outbox.enqueue(
            NewEvent {
                dialect,
                event_id,
                url,
                body,
                headers,
            },
            now,
            mode,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_code_is_deterministic() {
        let c = SimState::new(SandboxConfig::default());
        assert_eq!(c.auth_code("1"), c.auth_code("1"));
        assert_eq!(c.auth_code("1").len(), 6);
        assert_ne!(c.auth_code("1"), c.auth_code("2"));
    }
}
