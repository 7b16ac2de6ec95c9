//! Fault rules (gateways.md §4.7): `POST /_sim/faults {match, action, times}`, first match
//! wins (FIFO), each firing consumes one of `times` (0 = until cleared).

use emvbridge_core::gateway::Dialect;
use serde::{Deserialize, Serialize};

use crate::ledger::{deserialize_opt_dialect, serialize_opt_dialect};

/// The operation a request performs, as fault rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Authentication (Number Authenticate, PAI key exchange, Pay1st token/refresh).
    Auth,
    /// Sale or authorize (card-bearing, not EMV).
    Sale,
    /// EMV sale/authorize.
    Emv,
    /// Void / reversal.
    Void,
    /// Refund.
    Refund,
    /// Status lookup.
    Query,
    /// Capture.
    Capture,
    /// Outgoing webhook.
    Webhook,
    /// Anything else (customers, tokens, methods…).
    Other,
}

/// Which requests a rule applies to; absent fields match anything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultMatch {
    /// Dialect (`number`, `pai`, `pay1st`).
    #[serde(
        serialize_with = "serialize_opt_dialect",
        deserialize_with = "deserialize_opt_dialect"
    )]
    pub dialect: Option<Dialect>,
    /// Operation.
    pub op: Option<Op>,
    /// Amount in minor units.
    pub amount_minor: Option<i64>,
    /// Client reference.
    pub client_ref: Option<String>,
    /// Fire only from the nth matching request on (1-based).
    pub nth: Option<u32>,
}

/// Where a `drop` cuts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropWhen {
    /// Before any response byte.
    #[default]
    BeforeHeaders,
    /// After the headers and part of the body.
    MidBody,
}

/// Webhook anomaly modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookMode {
    /// Deliver the event twice (same deduplication id).
    Duplicate,
    /// Hold the event until the next one has been delivered.
    Reorder,
    /// Sign with the wrong key.
    BadSignature,
    /// Postpone the first attempt by `secs` virtual seconds.
    DelaySecs,
    /// Count the first `n` attempts as failed without sending.
    FailN,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer after `ms` milliseconds (real time: client timeouts are real).
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Late processing: the request is processed at once (the ledger is charged) and the
    /// answer held for `ms` milliseconds — beyond the client's timeout it is lost, and the
    /// row is flagged `lost_response`. The case a client must settle by lookup and reversal.
    Late {
        /// Milliseconds before the (probably unread) answer.
        ms: u64,
    },
    /// Never answer; the socket stays open.
    Hang {
        /// Whether the transaction is committed first.
        #[serde(default)]
        commit: bool,
    },
    /// Close the connection without a complete response.
    Drop {
        /// Whether the transaction is committed first.
        #[serde(default)]
        commit: bool,
        /// Where to cut.
        #[serde(default)]
        when: DropWhen,
    },
    /// Answer with a 5xx.
    Http {
        /// 500, 502, 503 or 504.
        status: u16,
        /// Whether the transaction is committed first.
        #[serde(default)]
        commit: bool,
        /// Body to send instead of the dialect's default error.
        #[serde(default)]
        body: Option<String>,
    },
    /// 200 with a truncated JSON body.
    Malformed {
        /// Whether the transaction is committed first.
        #[serde(default)]
        commit: bool,
    },
    /// Force a decline with `code`.
    Decline {
        /// Response code.
        code: String,
    },
    /// Force an Aspen error with `code`.
    AspenError {
        /// Error code.
        code: u32,
    },
    /// The credential of this call is expired (5030 / 401).
    AuthExpire,
    /// Number: the issuer declines the void.
    VoidDecline,
    /// Webhook delivery anomaly.
    Webhook {
        /// Which anomaly.
        mode: WebhookMode,
        /// For `delay_secs`.
        #[serde(default)]
        secs: Option<i64>,
        /// For `fail_n`.
        #[serde(default)]
        n: Option<u32>,
    },
}

/// A rule as posted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The match.
    #[serde(rename = "match", default)]
    pub matcher: FaultMatch,
    /// The action.
    pub action: FaultAction,
    /// How many firings remain; 0 = unlimited.
    #[serde(default = "one")]
    pub times: u32,
    /// Matching requests seen so far (for `nth`).
    #[serde(default, skip_deserializing)]
    pub seen: u32,
}

fn one() -> u32 {
    1
}

/// Identifies a request for rule matching.
#[derive(Debug, Clone, Default)]
pub struct FaultKey {
    /// Dialect.
    pub dialect: Option<Dialect>,
    /// Operation.
    pub op: Option<Op>,
    /// Amount, minor units.
    pub amount_minor: Option<i64>,
    /// Client reference.
    pub client_ref: Option<String>,
}

/// Upper bound on stored rules, so the control plane cannot be made to allocate without end.
pub const MAX_RULES: usize = 256;

/// The rule list.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
}

impl Faults {
    /// Appends a rule. Returns `false` when the list is full.
    pub fn add(&mut self, rule: FaultRule) -> bool {
        if self.rules.len() >= MAX_RULES {
            return false;
        }
        self.rules.push(rule);
        true
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// The first rule matching `key` fires: its action is returned and one `times` consumed.
    /// Every matching rule counts the request for `nth`, whether or not it fires.
    pub fn take(&mut self, key: &FaultKey) -> Option<FaultAction> {
        let mut fired = None;
        for (i, r) in self.rules.iter_mut().enumerate() {
            let m = &r.matcher;
            let ok = m.dialect.is_none_or(|d| Some(d) == key.dialect)
                && m.op.is_none_or(|o| Some(o) == key.op)
                && m.amount_minor.is_none_or(|a| Some(a) == key.amount_minor)
                && m.client_ref
                    .as_ref()
                    .is_none_or(|c| key.client_ref.as_ref() == Some(c));
            if !ok {
                continue;
            }
            r.seen = r.seen.saturating_add(1);
            if fired.is_none() && m.nth.is_none_or(|n| r.seen >= n) {
                fired = Some(i);
            }
        }
        let i = fired?;
        let rule = self.rules.get_mut(i)?;
        let action = rule.action.clone();
        if rule.times == 1 {
            self.rules.remove(i);
        } else if rule.times > 1 {
            rule.times -= 1;
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FaultRule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fifo_times_and_nth() {
        let mut f = Faults::default();
        f.add(rule(
            r#"{"match":{"op":"sale","nth":2},"action":{"type":"http","status":504},"times":1}"#,
        ));
        f.add(rule(
            r#"{"match":{"op":"sale"},"action":{"type":"delay","ms":5},"times":2}"#,
        ));
        let key = FaultKey {
            op: Some(Op::Sale),
            ..Default::default()
        };
        assert_eq!(f.take(&key), Some(FaultAction::Delay { ms: 5 }));
        assert!(matches!(
            f.take(&key),
            Some(FaultAction::Http {
                status: 504,
                commit: false,
                ..
            })
        ));
        assert_eq!(f.take(&key), Some(FaultAction::Delay { ms: 5 }));
        assert_eq!(f.take(&key), None);
        let void = FaultKey {
            op: Some(Op::Void),
            ..Default::default()
        };
        f.add(rule(
            r#"{"match":{"op":"sale"},"action":{"type":"void_decline"}}"#,
        ));
        assert_eq!(f.take(&void), None);
    }

    #[test]
    fn parses_every_action() {
        for a in [
            r#"{"type":"delay","ms":10}"#,
            r#"{"type":"late","ms":3000}"#,
            r#"{"type":"hang","commit":true}"#,
            r#"{"type":"drop","commit":true,"when":"mid_body"}"#,
            r#"{"type":"http","status":503,"commit":true,"body":"x"}"#,
            r#"{"type":"malformed","commit":false}"#,
            r#"{"type":"decline","code":"05"}"#,
            r#"{"type":"aspen_error","code":9999}"#,
            r#"{"type":"auth_expire"}"#,
            r#"{"type":"void_decline"}"#,
            r#"{"type":"webhook","mode":"fail_n","n":2}"#,
        ] {
            let r = rule(&format!(r#"{{"action":{a}}}"#));
            assert_eq!(r.times, 1);
        }
        assert!(serde_json::from_str::<FaultRule>(r#"{"action":{"type":"explode"}}"#).is_err());
    }

    #[test]
    fn dialects_by_their_sandbox_names() {
        for (name, d) in [
            ("number", Dialect::Number),
            ("pai", Dialect::PaymentsAi),
            ("pay1st", Dialect::Pay1st),
        ] {
            let r = rule(&format!(
                r#"{{"match":{{"dialect":"{name}"}},"action":{{"type":"auth_expire"}}}}"#
            ));
            assert_eq!(r.matcher.dialect, Some(d));
            let back = serde_json::to_value(&r).unwrap();
            assert_eq!(back["match"]["dialect"], name);
        }
        let r = rule(r#"{"match":{"dialect":null},"action":{"type":"auth_expire"}}"#);
        assert_eq!(r.matcher.dialect, None);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["match"]["dialect"],
            serde_json::Value::Null
        );
        for bad in ["paymentsai", "PAI", "other"] {
            let json =
                format!(r#"{{"match":{{"dialect":"{bad}"}},"action":{{"type":"auth_expire"}}}}"#);
            let err = serde_json::from_str::<FaultRule>(&json)
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown variant"), "{err}");
        }
    }
}
