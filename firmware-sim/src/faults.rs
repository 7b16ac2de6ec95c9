//! Seeded fault injection on the simulator's outgoing bytes and transaction flow.
//!
//! A [`FaultPlan`] is parsed from the `--faults` syntax (a comma-separated list):
//!
//! | item | effect |
//! |---|---|
//! | `corrupt-lrc=P` | each outgoing frame's LRC is XORed with a non-zero byte with probability `P` |
//! | `flip=P` | each outgoing byte gets one random bit flipped with probability `P` |
//! | `drop=P` | each outgoing byte is dropped with probability `P` |
//! | `dup=P` | each outgoing frame is sent twice with probability `P` |
//! | `split` | each write is cut into random chunks (1..=len bytes), returned by separate `poll_transmit` calls |
//! | `slow=DUR` | every outgoing message is held for `DUR` (`200ms`, `1s`, `500us`; bare number = ms) |
//! | `stall-after=N` | after `N` messages the device stops answering (reads and drops everything) until a reboot |
//! | `reboot-at=POINT[:K]` | the device reboots at the `K`th (default 1st) occurrence of `POINT` |
//! | `remove-at=POINT[:K]` | the card is pulled at that point |
//! | `cancel-at=POINT[:K]` | the cardholder presses cancel at that point |
//! | `chip-fail-at=start[:K]` | the chip does not answer: the Start gets `9F25` and the card may then be swiped (fallback) |
//!
//! `POINT` is one of `start` (Start Transaction `DE D1` received), `pin` (PIN prompt shown), `e2`,
//! `e4`, `final` (`E3`/`E5`; also `e3`, `e5`), `continue` (Continue Transaction received). A
//! trigger fires once. `reboot-at=e4` reboots *instead of* sending the `E4`; `remove-at=e4`
//! and `cancel-at=e4` act right after it is sent.
//!
//! Everything is drawn from one ChaCha8 stream seeded with `--seed`, in the order the core
//! emits messages, so the same seed and the same host bytes give the same output bytes.

use core::fmt;
use core::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A point in the transaction flow where a scripted fault can fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// Start Transaction (`DE D1`) received.
    Start,
    /// PIN prompt shown.
    Pin,
    /// `E2` decision required about to be sent.
    E2,
    /// `E4` online request about to be sent.
    E4,
    /// `E3`/`E5` final outcome about to be sent.
    Final,
    /// Continue Transaction received.
    Continue,
}

impl Point {
    const ALL: [Point; 6] = [
        Point::Start,
        Point::Pin,
        Point::E2,
        Point::E4,
        Point::Final,
        Point::Continue,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The name used in the `--faults` syntax.
    pub fn name(self) -> &'static str {
        match self {
            Point::Start => "start",
            Point::Pin => "pin",
            Point::E2 => "e2",
            Point::E4 => "e4",
            Point::Final => "final",
            Point::Continue => "continue",
        }
    }
}

impl FromStr for Point {
    type Err = FaultSpecError;
    fn from_str(s: &str) -> Result<Point, FaultSpecError> {
        let s = s.to_ascii_lowercase();
        match s.as_str() {
            "e3" | "e5" => Ok(Point::Final),
            _ => Point::ALL
                .into_iter()
                .find(|p| p.name() == s)
                .ok_or(FaultSpecError::BadPoint),
        }
    }
}

/// A one-shot trigger: the `nth` occurrence (1-based) of `point`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// Where.
    pub point: Point,
    /// Which occurrence.
    pub nth: u32,
}

impl FromStr for Trigger {
    type Err = FaultSpecError;
    fn from_str(s: &str) -> Result<Trigger, FaultSpecError> {
        let (p, n) = match s.split_once(':') {
            Some((p, n)) => (
                p,
                n.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(FaultSpecError::BadNumber)?,
            ),
            None => (s, 1),
        };
        Ok(Trigger {
            point: p.parse()?,
            nth: n,
        })
    }
}

/// What a flow trigger does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowFault {
    /// Reboot the device.
    Reboot,
    /// Pull the card.
    Remove,
    /// The cardholder presses cancel.
    Cancel,
    /// The chip does not answer.
    ChipFail,
}

/// Why a `--faults` spec was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// An item name that is not in the table.
    #[error("unknown fault item")]
    UnknownItem,
    /// A probability outside 0..=1 or not a number.
    #[error("bad probability")]
    BadProbability,
    /// A count that is not a positive integer.
    #[error("bad number")]
    BadNumber,
    /// A duration that does not parse.
    #[error("bad duration")]
    BadDuration,
    /// An unknown flow point.
    #[error("bad point (start, pin, e2, e4, final, continue)")]
    BadPoint,
}

/// The faults to inject. `Default` is no fault at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Per-frame probability of a corrupt LRC.
    pub corrupt_lrc: f64,
    /// Per-byte probability of one flipped bit.
    pub flip: f64,
    /// Per-byte probability of a dropped byte.
    pub drop: f64,
    /// Per-frame probability of a duplicated frame.
    pub dup: f64,
    /// Cut writes into random chunks.
    pub split: bool,
    /// Hold every outgoing message this long.
    pub slow: Duration,
    /// Stop answering after this many messages.
    pub stall_after: Option<u32>,
    /// Reboot at a flow point.
    pub reboot_at: Option<Trigger>,
    /// Pull the card at a flow point.
    pub remove_at: Option<Trigger>,
    /// Cardholder cancel at a flow point.
    pub cancel_at: Option<Trigger>,
    /// The chip fails at a flow point (`start`).
    pub chip_fail_at: Option<Trigger>,
}

fn probability(v: &str) -> Result<f64, FaultSpecError> {
    v.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or(FaultSpecError::BadProbability)
}

/// Parses `200ms`, `2s`, `500us` or a bare number of milliseconds.
pub fn parse_duration(v: &str) -> Result<Duration, FaultSpecError> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "ms"),
    };
    let n: u64 = num.parse().map_err(|_| FaultSpecError::BadDuration)?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "us" => Ok(Duration::from_micros(n)),
        _ => Err(FaultSpecError::BadDuration),
    }
}

impl FromStr for FaultPlan {
    type Err = FaultSpecError;
    fn from_str(spec: &str) -> Result<FaultPlan, FaultSpecError> {
        let mut p = FaultPlan::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            match k {
                "corrupt-lrc" => p.corrupt_lrc = probability(v)?,
                "flip" => p.flip = probability(v)?,
                "drop" => p.drop = probability(v)?,
                "dup" => p.dup = probability(v)?,
                "split" => p.split = true,
                "slow" => p.slow = parse_duration(v)?,
                "stall-after" => {
                    p.stall_after = Some(v.parse().map_err(|_| FaultSpecError::BadNumber)?)
                }
                "reboot-at" => p.reboot_at = Some(v.parse()?),
                "remove-at" => p.remove_at = Some(v.parse()?),
                "cancel-at" => p.cancel_at = Some(v.parse()?),
                "chip-fail-at" => p.chip_fail_at = Some(v.parse()?),
                _ => return Err(FaultSpecError::UnknownItem),
            }
        }
        Ok(p)
    }
}

impl fmt::Display for FaultPlan {
    /// The spec syntax, so a plan round-trips through logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        for (name, p) in [
            ("corrupt-lrc", self.corrupt_lrc),
            ("flip", self.flip),
            ("drop", self.drop),
            ("dup", self.dup),
        ] {
            if p > 0.0 {
                items.push(format!("{name}={p}"));
            }
        }
        if self.split {
            items.push("split".into());
        }
        if !self.slow.is_zero() {
            items.push(format!("slow={}ms", self.slow.as_millis()));
        }
        if let Some(n) = self.stall_after {
            items.push(format!("stall-after={n}"));
        }
        for (name, t) in [
            ("reboot-at", self.reboot_at),
            ("remove-at", self.remove_at),
            ("cancel-at", self.cancel_at),
            ("chip-fail-at", self.chip_fail_at),
        ] {
            if let Some(t) = t {
                items.push(format!("{name}={}:{}", t.point.name(), t.nth));
            }
        }
        f.write_str(&items.join(","))
    }
}

/// Applies a [`FaultPlan`] with its own seeded RNG. Owned by the reader core.
#[derive(Debug)]
pub struct FaultInjector {
    plan: FaultPlan,
    rng: ChaCha8Rng,
    messages: u32,
    seen: [u32; 6],
}

/// A byte-level fault that was applied (for the event log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteFault {
    /// An LRC was corrupted.
    CorruptLrc,
    /// A bit was flipped.
    Flip,
    /// A byte was dropped.
    Drop,
    /// A frame was duplicated.
    Dup,
}

impl FaultInjector {
    /// An injector for `plan` seeded with `seed`.
    pub fn new(plan: FaultPlan, seed: u64) -> Self {
        FaultInjector {
            plan,
            rng: ChaCha8Rng::seed_from_u64(seed),
            messages: 0,
            seen: [0; 6],
        }
    }

    /// The plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Replaces the plan (the RNG stream and counters continue).
    pub fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
        self.seen = [0; 6];
        self.messages = 0;
    }

    /// Counts a sent message.
    pub fn count_message(&mut self) {
        self.messages = self.messages.saturating_add(1);
    }

    /// Whether `stall-after` messages have been sent: the device must stop answering.
    pub fn stalled(&self) -> bool {
        self.plan.stall_after.is_some_and(|n| self.messages >= n)
    }

    /// Clears the message count (a reboot un-stalls the device).
    pub fn rebooted(&mut self) {
        self.messages = 0;
    }

    /// Records an occurrence of `point` and returns the flow faults that fire now.
    pub fn at(&mut self, point: Point) -> Vec<FlowFault> {
        let i = point.index();
        self.seen[i] = self.seen[i].saturating_add(1);
        let n = self.seen[i];
        let mut out = Vec::new();
        for (t, f) in [
            (self.plan.reboot_at, FlowFault::Reboot),
            (self.plan.remove_at, FlowFault::Remove),
            (self.plan.cancel_at, FlowFault::Cancel),
            (self.plan.chip_fail_at, FlowFault::ChipFail),
        ] {
            if t.is_some_and(|t| t.point == point && t.nth == n) {
                out.push(f);
            }
        }
        out
    }

    /// Delay applied to every outgoing message.
    pub fn delay(&self) -> Duration {
        self.plan.slow
    }

    /// Mangles the frames of one outgoing message (as written by
    /// [`emvbridge_protocol::frame::emit_message`]) and cuts the result into write chunks.
    /// Faults applied are appended to `applied`.
    pub fn mangle(&mut self, wire: &[u8], applied: &mut Vec<ByteFault>) -> Vec<Bytes> {
        let p = self.plan.clone();
        let mut out = BytesMut::with_capacity(wire.len() + 8);
        let mut rest = wire;
        while !rest.is_empty() {
            // Frames are NAD PCB LEN INF LRC; a short tail is passed through as is.
            let n = rest.get(2).map_or(rest.len(), |len| usize::from(*len) + 4);
            let (frame, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            let mut f = frame.to_vec();
            if p.corrupt_lrc > 0.0 && self.rng.gen_bool(p.corrupt_lrc) {
                if let Some(last) = f.last_mut() {
                    *last ^= self.rng.gen_range(1..=255u8);
                    applied.push(ByteFault::CorruptLrc);
                }
            }
            let copies = if p.dup > 0.0 && self.rng.gen_bool(p.dup) {
                applied.push(ByteFault::Dup);
                2
            } else {
                1
            };
            for _ in 0..copies {
                for &b in &f {
                    if p.drop > 0.0 && self.rng.gen_bool(p.drop) {
                        applied.push(ByteFault::Drop);
                        continue;
                    }
                    let mut b = b;
                    if p.flip > 0.0 && self.rng.gen_bool(p.flip) {
                        b ^= 1 << self.rng.gen_range(0..8u32);
                        applied.push(ByteFault::Flip);
                    }
                    out.extend_from_slice(&[b]);
                }
            }
            f.clear();
        }
        let mut all = out.freeze();
        if !p.split || all.len() <= 1 {
            return if all.is_empty() {
                Vec::new()
            } else {
                vec![all]
            };
        }
        let mut chunks = Vec::new();
        while !all.is_empty() {
            let n = self.rng.gen_range(1..=all.len());
            chunks.push(all.split_to(n));
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_round_trips() {
        let p: FaultPlan = "corrupt-lrc=0.02,flip=0.001,drop=0.001,dup=0.01,split,slow=200ms,stall-after=5,reboot-at=E4,remove-at=pin:2,cancel-at=final"
            .parse()
            .unwrap();
        assert_eq!(p.corrupt_lrc, 0.02);
        assert!(p.split);
        assert_eq!(p.slow, Duration::from_millis(200));
        assert_eq!(p.stall_after, Some(5));
        assert_eq!(
            p.reboot_at,
            Some(Trigger {
                point: Point::E4,
                nth: 1
            })
        );
        assert_eq!(
            p.remove_at,
            Some(Trigger {
                point: Point::Pin,
                nth: 2
            })
        );
        let again: FaultPlan = p.to_string().parse().unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert_eq!(
            "flip=2".parse::<FaultPlan>(),
            Err(FaultSpecError::BadProbability)
        );
        assert_eq!(
            "nonsense".parse::<FaultPlan>(),
            Err(FaultSpecError::UnknownItem)
        );
        assert_eq!(
            "slow=3h".parse::<FaultPlan>(),
            Err(FaultSpecError::BadDuration)
        );
        assert_eq!(
            "reboot-at=e9".parse::<FaultPlan>(),
            Err(FaultSpecError::BadPoint)
        );
        assert_eq!(
            "remove-at=pin:0".parse::<FaultPlan>(),
            Err(FaultSpecError::BadNumber)
        );
        assert_eq!("".parse::<FaultPlan>(), Ok(FaultPlan::default()));
    }

    #[test]
    fn triggers_fire_once_at_the_nth_occurrence() {
        let mut f = FaultInjector::new("remove-at=pin:2,reboot-at=pin".parse().unwrap(), 1);
        assert_eq!(f.at(Point::Pin), vec![FlowFault::Reboot]);
        assert_eq!(f.at(Point::E4), vec![]);
        assert_eq!(f.at(Point::Pin), vec![FlowFault::Remove]);
        assert_eq!(f.at(Point::Pin), vec![]);
    }

    #[test]
    fn no_faults_is_the_identity() {
        let wire = [0x01, 0x00, 0x02, 0x90, 0x00, 0x93];
        let mut f = FaultInjector::new(FaultPlan::default(), 7);
        let mut applied = Vec::new();
        assert_eq!(
            f.mangle(&wire, &mut applied),
            vec![Bytes::copy_from_slice(&wire)]
        );
        assert!(applied.is_empty());
    }

    #[test]
    fn corrupt_lrc_touches_only_the_lrc_and_split_keeps_bytes() {
        let wire = [
            0x01, 0x00, 0x02, 0x90, 0x00, 0x93, 0x01, 0x00, 0x02, 0x9F, 0x41, 0xDD,
        ];
        let mut f = FaultInjector::new("corrupt-lrc=1,split".parse().unwrap(), 3);
        let mut applied = Vec::new();
        let chunks = f.mangle(&wire, &mut applied);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(applied, vec![ByteFault::CorruptLrc, ByteFault::CorruptLrc]);
        assert_eq!(joined.len(), wire.len());
        for i in [0, 1, 2, 3, 4, 6, 7, 8, 9, 10] {
            assert_eq!(joined[i], wire[i]);
        }
        assert_ne!(joined[5], wire[5]);
        assert_ne!(joined[11], wire[11]);
    }

    #[test]
    fn same_seed_same_mangling() {
        let wire: Vec<u8> = (0..=255u8).collect();
        let plan: FaultPlan = "flip=0.1,drop=0.1,dup=0.5,split".parse().unwrap();
        let run = |seed| {
            let mut f = FaultInjector::new(plan.clone(), seed);
            f.mangle(&wire, &mut Vec::new())
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
