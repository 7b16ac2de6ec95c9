//! The sans-IO heart: one [`Core`] holds all state; [`Core::handle`] turns a [`SimRequest`]
//! into a [`Reply`]. The HTTP layer only moves bytes and performs the reply's directive.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use emvbridge_core::gateway::Dialect;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use super::clock::VirtualClock;
use super::config::SandboxConfig;
use super::faults::{FaultAction, FaultKey, Faults, Op, WebhookMode};
use super::ledger::Ledger;
use super::webhooks::{NewEvent, Outbox};
use super::{number, pay1st, paymentsai};

/// A request as the dialects see it: prefix stripped, body already size-limited.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// Method.
    pub method: Method,
    /// Path below the dialect prefix (`/CardSale/EMV`).
    pub path: String,
    /// Raw query string (no `?`).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The TCP peer.
    pub peer_ip: IpAddr,
    /// `Host` header, for absolute URLs in answers.
    pub host: String,
}

impl SimRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, `+`/`%xx` decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| percent_decode(v))
        })
    }
}

/// One `application/x-www-form-urlencoded` value: `+` is a space, `%xx` a byte (`+` first, so
/// an escaped `%2B` stays a plus sign); a `%` not followed by two hex digits stays as it is;
/// bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResponse {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl SimResponse {
    /// JSON body.
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        SimResponse {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    /// Plain text body.
    pub fn text(status: u16, s: &str) -> Self {
        SimResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: s.as_bytes().to_vec(),
        }
    }

    /// HTML body.
    pub fn html(status: u16, s: String) -> Self {
        SimResponse {
            status,
            content_type: "text/html; charset=utf-8",
            body: s.into_bytes(),
        }
    }

    /// Empty body.
    pub fn empty(status: u16) -> Self {
        SimResponse {
            status,
            content_type: "application/json",
            body: Vec::new(),
        }
    }

    /// The body parsed as JSON (tests).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the HTTP layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send this.
    Respond(SimResponse),
    /// Wait `ms`, then send.
    Delay(u64, SimResponse),
    /// Never answer; keep the socket open.
    Hang,
    /// Close the connection: before the headers (`None`) or after part of this response.
    Drop(Option<SimResponse>),
}

/// The result of executing an operation.
pub struct Exec {
    /// The response.
    pub resp: SimResponse,
    /// Ledger ids written (to flag `lost_response` when the response is lost).
    pub committed: Vec<String>,
}

impl Exec {
    /// A response that wrote nothing.
    pub fn reply(resp: SimResponse) -> Self {
        Exec {
            resp,
            committed: Vec::new(),
        }
    }
}

/// All sandbox state.
pub struct Core {
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
    pub number: number::NumberState,
    /// PAI keys, tokens, idempotency.
    pub pai: paymentsai::PaiState,
    /// Pay1st tokens and payments.
    pub pay1st: pay1st::Pay1stState,
}

impl Core {
    /// Fresh state.
    pub fn new(cfg: SandboxConfig) -> Self {
        let start = cfg
            .clock_start_epoch
            .unwrap_or_else(VirtualClock::wall_epoch);
        Core {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            clock: VirtualClock::new(start),
            ledger: Ledger::default(),
            faults: Faults::default(),
            outbox: Outbox::default(),
            number: number::NumberState::default(),
            pai: paymentsai::PaiState::new(&cfg.pai, start),
            pay1st: pay1st::Pay1stState::default(),
            cfg,
        }
    }

    /// `POST /_sim/reset`: everything back to the start, same seed and config.
    pub fn reset(&mut self) {
        *self = Core::new(self.cfg.clone());
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

    /// Dispatches a dialect request (`prefix` is `number`, `pai` or `pay1st`).
    pub fn handle(&mut self, prefix: &str, req: &SimRequest) -> Reply {
        match prefix {
            "number" => number::handle(self, req),
            "pai" => paymentsai::handle(self, req),
            "pay1st" => pay1st::handle(self, req),
            _ => Reply::Respond(SimResponse::text(404, "not found")),
        }
    }

    /// Runs `exec` under the fault rules matching `key` (§4.7). `error_resp(status)` is the
    /// dialect's shape for an injected 5xx. Forced outcomes are handed to `exec`.
    pub fn with_faults(
        &mut self,
        key: FaultKey,
        error_resp: impl Fn(u16) -> SimResponse,
        exec: impl FnOnce(&mut Core, Option<&FaultAction>) -> Exec,
    ) -> Reply {
        let fault = self.faults.take(&key);
        let lost = |core: &mut Core, e: &Exec| {
            for id in &e.committed {
                if let Some(t) = core.ledger.get_mut(id) {
                    t.flag("lost_response");
                }
            }
        };
        match fault {
            None | Some(FaultAction::Webhook { .. }) => Reply::Respond(exec(self, None).resp),
            Some(FaultAction::Delay { ms }) => Reply::Delay(ms.min(600_000), exec(self, None).resp),
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
                    super::faults::DropWhen::BeforeHeaders => Reply::Drop(None),
                    super::faults::DropWhen::MidBody => Reply::Drop(Some(resp)),
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
        let c = Core::new(SandboxConfig::default());
        assert_eq!(c.auth_code("1"), c.auth_code("1"));
        assert_eq!(c.auth_code("1").len(), 6);
        assert_ne!(c.auth_code("1"), c.auth_code("2"));
        assert_eq!(percent_decode("a%20b+c%zz"), "a b c%zz");
    }
}
