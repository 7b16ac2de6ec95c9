//! Outgoing webhooks (gateways.md §4.6): a sans-IO outbox. The dialects sign at enqueue (with
//! the schemes of `emvbridge_core::gateway::sign`); the server asks [`Outbox::due`] what to
//! send and reports back with [`Outbox::record`]. Retries follow a per-dialect schedule on the
//! virtual clock.

use emvbridge_core::gateway::Dialect;
use serde::Serialize;

use crate::faults::WebhookMode;
use crate::ledger::serialize_dialect;

/// PAI retry delays after each failed attempt (12 attempts, 15 s doubling, capped at 4 h).
const PAI_SCHEDULE: [i64; 11] = [15, 30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 14_400];
/// Pay1st \[EXT\]: 5 attempts, exponential.
const PAY1ST_SCHEDULE: [i64; 4] = [30, 60, 120, 240];
/// Bound on stored deliveries; the oldest delivered ones are dropped first.
const MAX_ENTRIES: usize = 10_000;

/// One attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Virtual time.
    pub at: i64,
    /// HTTP status received, if any.
    pub status: Option<u16>,
    /// Transport error or `simulated failure`.
    pub error: Option<String>,
}

/// One event and its delivery history.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Outbox id.
    pub id: u64,
    /// Dialect.
    #[serde(serialize_with = "serialize_dialect")]
    pub dialect: Dialect,
    /// Event id (PAI `deduplicationId`, Pay1st reference + status).
    pub event_id: String,
    /// Target URL.
    pub url: String,
    /// Raw body.
    pub body: String,
    /// Headers sent with it.
    pub headers: Vec<(String, String)>,
    /// Virtual time of the next attempt.
    pub next_at: i64,
    /// Attempts so far.
    pub attempts: Vec<Attempt>,
    /// Got a success (PAI: only 200; Pay1st: any 2xx).
    pub delivered: bool,
    /// Out of attempts.
    pub gave_up: bool,
    /// Reorder mode: waiting for a later event.
    pub held: bool,
    #[serde(skip)]
    in_flight: bool,
    #[serde(skip)]
    fail_remaining: u32,
}

/// What to send now.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Outbox id.
    pub id: u64,
    /// URL.
    pub url: String,
    /// Body.
    pub body: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// A new event.
pub struct NewEvent {
    /// Dialect.
    pub dialect: Dialect,
    /// Event id.
    pub event_id: String,
    /// URL.
    pub url: String,
    /// Raw body.
    pub body: String,
    /// Headers, signature included.
    pub headers: Vec<(String, String)>,
}

/// The outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: Vec<Delivery>,
    next_id: u64,
}

impl Outbox {
    /// Every delivery, in delivery order.
    pub fn entries(&self) -> &[Delivery] {
        &self.entries
    }

    /// Queues an event, applying an anomaly mode. Returns the outbox ids created.
    pub fn enqueue(
        &mut self,
        ev: NewEvent,
        now: i64,
        mode: Option<(WebhookMode, Option<i64>, Option<u32>)>,
    ) -> Vec<u64> {
        if self.entries.len() >= MAX_ENTRIES {
            if let Some(pos) = self.entries.iter().position(|d| d.delivered || d.gave_up) {
                self.entries.remove(pos);
            }
        }
        // A held (reorder) event goes out right after the one queued now.
        let mut released: Vec<Delivery> = Vec::new();
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries.get(i).is_some_and(|d| d.held) {
                let mut d = self.entries.remove(i);
                d.held = false;
                d.next_at = now;
                released.push(d);
            } else {
                i += 1;
            }
        }
        self.next_id += 1;
        let mut d = Delivery {
            id: self.next_id,
            dialect: ev.dialect,
            event_id: ev.event_id,
            url: ev.url,
            body: ev.body,
            headers: ev.headers,
            next_at: now,
            attempts: Vec::new(),
            delivered: false,
            gave_up: false,
            held: false,
            in_flight: false,
            fail_remaining: 0,
        };
        let mut ids = vec![d.id];
        let mut dup = None;
        match mode {
            Some((WebhookMode::Reorder, ..)) => d.held = true,
            Some((WebhookMode::DelaySecs, secs, _)) => {
                d.next_at = now.saturating_add(secs.unwrap_or(60).max(0))
            }
            Some((WebhookMode::FailN, _, n)) => d.fail_remaining = n.unwrap_or(1),
            Some((WebhookMode::Duplicate, ..)) => {
                self.next_id += 1;
                let mut copy = d.clone();
                copy.id = self.next_id;
                ids.push(copy.id);
                dup = Some(copy);
            }
            // Signature corruption happens before enqueue (the caller signs).
            Some((WebhookMode::BadSignature, ..)) | None => {}
        }
        self.entries.push(d);
        self.entries.extend(dup);
        self.entries.extend(released);
        ids
    }

    /// Deliveries due at `now`, marked in flight. Simulated failures (`fail_n`) are recorded
    /// here without sending.
    pub fn due(&mut self, now: i64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for d in &mut self.entries {
            if d.delivered || d.gave_up || d.held || d.in_flight || d.next_at > now {
                continue;
            }
            if d.fail_remaining > 0 {
                d.fail_remaining -= 1;
                d.attempts.push(Attempt {
                    at: now,
                    status: None,
                    error: Some("simulated failure".into()),
                });
                schedule_next(d, now);
                continue;
            }
            d.in_flight = true;
            out.push(Outgoing {
                id: d.id,
                url: d.url.clone(),
                body: d.body.clone(),
                headers: d.headers.clone(),
            });
        }
        out
    }

    /// Records the result of a send.
    pub fn record(&mut self, id: u64, now: i64, result: Result<u16, String>) {
        let Some(d) = self.entries.iter_mut().find(|d| d.id == id) else {
            return;
        };
        d.in_flight = false;
        let ok = match (&result, d.dialect) {
            (Ok(200), _) => true,
            (Ok(s), Dialect::Pay1st | Dialect::Number) => (200..300).contains(s),
            _ => false,
        };
        d.attempts.push(Attempt {
            at: now,
            status: result.as_ref().ok().copied(),
            error: result.err(),
        });
        if ok {
            d.delivered = true;
        } else {
            schedule_next(d, now);
        }
    }

    /// Queues another delivery of `id` now (a new attempt series). `false` if unknown.
    pub fn redeliver(&mut self, id: u64, now: i64) -> bool {
        let Some(d) = self.entries.iter_mut().find(|d| d.id == id) else {
            return false;
        };
        d.delivered = false;
        d.gave_up = false;
        d.held = false;
        d.next_at = now;
        d.attempts.clear();
        true
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn schedule_next(d: &mut Delivery, now: i64) {
    let schedule: &[i64] = match d.dialect {
        Dialect::PaymentsAi => &PAI_SCHEDULE,
        _ => &PAY1ST_SCHEDULE,
    };
    match schedule.get(d.attempts.len().saturating_sub(1)) {
        Some(delay) => d.next_at = now.saturating_add(*delay),
        None => d.gave_up = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> NewEvent {
        NewEvent {
            dialect: Dialect::PaymentsAi,
            event_id: id.into(),
            url: "http://x/".into(),
            body: "{}".into(),
            headers: vec![],
        }
    }

    #[test]
    fn retries_then_gives_up() {
        let mut o = Outbox::default();
        o.enqueue(ev("e1"), 0, None);
        let mut now = 0;
        for _ in 0..12 {
            let due = o.due(now);
            assert_eq!(due.len(), 1);
            o.record(due[0].id, now, Ok(204)); // 204 is a failure for PAI
            now += 20_000;
        }
        assert!(o.entries()[0].gave_up);
        assert_eq!(o.entries()[0].attempts.len(), 12);
        assert!(o.due(now).is_empty());
    }

    #[test]
    fn modes() {
        let mut o = Outbox::default();
        o.enqueue(ev("a"), 0, Some((WebhookMode::Reorder, None, None)));
        assert!(o.due(0).is_empty());
        o.enqueue(ev("b"), 0, None);
        let order: Vec<_> = o.due(0).into_iter().map(|d| d.id).collect();
        assert_eq!(order, vec![2, 1]);
        let ids = o.enqueue(ev("c"), 0, Some((WebhookMode::Duplicate, None, None)));
        assert_eq!(ids.len(), 2);
        o.enqueue(ev("d"), 0, Some((WebhookMode::FailN, None, Some(1))));
        let due = o.due(0);
        assert_eq!(due.len(), 2); // the duplicate pair; "d" failed (simulated)
        assert_eq!(o.due(15).len(), 1);
        o.enqueue(ev("e"), 0, Some((WebhookMode::DelaySecs, Some(100), None)));
        assert!(o.due(50).iter().all(|d| d.id != 6));
        assert!(o.due(100).iter().any(|d| d.id == 6));
    }
}
