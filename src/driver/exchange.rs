//! Sans-IO bookkeeping of the commands in flight on a link: which command a solicited response
//! answers, and when each one times out. The actor in [`super::link`] owns one and passes `now`.
//!
//! VIPA is strictly request/response (vipa-protocol.md §1.2) with no sequence numbers, so at most
//! one command is in flight, except Abort `D0 FF`, which may follow a pending command; the
//! pending command then completes with `9F 41` (\[I\] §3, from the SW label).
//!
//! \[I\]/\[GAP\] the order of the two answers after an Abort is not documented. While a command and
//! an Abort are both pending: a response with SW `9F 41` completes the command, a bare `90 00`
//! completes the Abort, and anything else completes whichever was sent first.

use std::collections::VecDeque;
use std::time::Instant;

use emvbridge_protocol::vipa::StatusWord;

/// `CLA INS` of Abort.
pub const ABORT_CODE: [u8; 2] = [0xD0, 0xFF];

/// `CLA INS` of a command payload (`[0, 0]` if shorter than 2 bytes, which cannot be framed).
pub fn command_code(payload: &[u8]) -> [u8; 2] {
    match payload {
        [cla, ins, ..] => [*cla, *ins],
        _ => [0, 0],
    }
}

/// Why a command cannot be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A command is in flight (and this is not an Abort, or an Abort is already in flight).
    Busy,
}

/// One command awaiting its response.
#[derive(Debug)]
pub struct Pending<R> {
    /// `CLA INS`.
    pub code: [u8; 2],
    /// When it times out.
    pub deadline: Instant,
    /// Where its outcome goes.
    pub reply: R,
}

impl<R> Pending<R> {
    /// Whether this is an Abort.
    pub fn is_abort(&self) -> bool {
        self.code == ABORT_CODE
    }
}

/// What a deadline expiry means.
#[derive(Debug)]
pub enum Expiry<R> {
    /// A command got no answer in time: the reader is unresponsive.
    Command(Pending<R>),
    /// An Abort got no answer, but the command it aborted did answer (or there was none):
    /// \[I\] a terminal may not answer an Abort; forget it.
    Abort(Pending<R>),
}

/// The commands in flight: at most a command and an Abort.
#[derive(Debug)]
pub struct Exchange<R> {
    slots: VecDeque<Pending<R>>,
}

impl<R> Default for Exchange<R> {
    fn default() -> Self {
        Exchange {
            slots: VecDeque::with_capacity(2),
        }
    }
}

impl<R> Exchange<R> {
    /// Nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a command with this `CLA INS` may be sent now.
    ///
    /// # Errors
    /// [`Refusal::Busy`] when a command is pending (unless this is the first Abort behind it).
    pub fn check(&self, code: [u8; 2]) -> Result<(), Refusal> {
        let abort_pending = self.slots.iter().any(Pending::is_abort);
        match self.slots.len() {
            0 => Ok(()),
            1 if code == ABORT_CODE && !abort_pending => Ok(()),
            _ => Err(Refusal::Busy),
        }
    }

    /// Records a sent command.
    ///
    /// # Errors
    /// As [`Exchange::check`]; nothing is recorded then.
    pub fn push(&mut self, code: [u8; 2], deadline: Instant, reply: R) -> Result<(), Refusal> {
        self.check(code)?;
        self.slots.push_back(Pending {
            code,
            deadline,
            reply,
        });
        Ok(())
    }

    /// The pending command a solicited response answers, removed; `None` for a stray response.
    pub fn on_response(&mut self, payload: &[u8]) -> Option<Pending<R>> {
        let idx = if self.slots.len() == 2 {
            let sw = payload
                .split_last_chunk::<2>()
                .map(|(_, &[a, b])| StatusWord::from_bytes(a, b));
            let abort_at = self.slots.iter().position(Pending::is_abort);
            let command_at = self.slots.iter().position(|p| !p.is_abort());
            match (sw, abort_at, command_at) {
                (Some(StatusWord::COMMAND_CANCELLED), _, Some(c)) => c,
                (Some(StatusWord::SUCCESS), Some(a), _) if payload.len() == 2 => a,
                _ => 0,
            }
        } else {
            0
        };
        self.slots.remove(idx)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().map(|p| p.deadline).min()
    }

    /// Removes and returns the first entry whose deadline is `<= now`. An expired Abort is a
    /// [`Expiry::Command`] (the reader is unresponsive) when the command it aborted is still
    /// unanswered too.
    pub fn expire(&mut self, now: Instant) -> Option<Expiry<R>> {
        let idx = self.slots.iter().position(|p| p.deadline <= now)?;
        let p = self.slots.remove(idx)?;
        if p.is_abort() && self.slots.is_empty() {
            Some(Expiry::Abort(p))
        } else {
            Some(Expiry::Command(p))
        }
    }

    /// Removes everything (the link was lost).
    pub fn drain(&mut self) -> impl Iterator<Item = Pending<R>> + '_ {
        self.slots.drain(..)
    }

    /// `CLA INS` of the command (not an Abort) in flight, if any.
    pub fn command(&self) -> Option<[u8; 2]> {
        self.slots.iter().find(|p| !p.is_abort()).map(|p| p.code)
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Number in flight (0..=2).
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const START: [u8; 2] = [0xDE, 0xD1];
    const RESET: [u8; 2] = [0xD0, 0x00];

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn one_command_in_flight_plus_one_abort() {
        let now = t0();
        let mut x = Exchange::new();
        assert_eq!(x.push(START, now, 1), Ok(()));
        assert_eq!(x.check(RESET), Err(Refusal::Busy));
        assert_eq!(x.push(ABORT_CODE, now, 2), Ok(()));
        assert_eq!(x.push(ABORT_CODE, now, 3), Err(Refusal::Busy));
        assert_eq!(x.len(), 2);
        // A lone Abort is a command like any other: nothing may follow it but... nothing.
        let mut y = Exchange::new();
        y.push(ABORT_CODE, now, 1).unwrap();
        assert_eq!(y.check(ABORT_CODE), Err(Refusal::Busy));
        assert_eq!(y.check(START), Err(Refusal::Busy));
    }

    #[test]
    fn cancelled_answer_goes_to_the_aborted_command_in_either_order() {
        let now = t0();
        // 9F41 first, then the Abort's 9000.
        let mut x = Exchange::new();
        x.push(START, now, "start").unwrap();
        x.push(ABORT_CODE, now, "abort").unwrap();
        assert_eq!(x.on_response(&[0x9F, 0x41]).unwrap().reply, "start");
        assert_eq!(x.on_response(&[0x90, 0x00]).unwrap().reply, "abort");
        assert!(x.is_empty());
        // The Abort's 9000 first, then 9F41.
        x.push(START, now, "start").unwrap();
        x.push(ABORT_CODE, now, "abort").unwrap();
        assert_eq!(x.on_response(&[0x90, 0x00]).unwrap().reply, "abort");
        assert_eq!(x.on_response(&[0x9F, 0x41]).unwrap().reply, "start");
        // The command finished with data before the Abort arrived: FIFO.
        x.push(START, now, "start").unwrap();
        x.push(ABORT_CODE, now, "abort").unwrap();
        assert_eq!(
            x.on_response(&[0xE3, 0x00, 0x90, 0x00]).unwrap().reply,
            "start"
        );
        assert_eq!(x.on_response(&[0x90, 0x00]).unwrap().reply, "abort");
        // Nothing pending: a stray response.
        assert!(x.on_response(&[0x90, 0x00]).is_none());
        assert!(x.on_response(&[]).is_none());
    }

    #[test]
    fn single_pending_takes_any_response_even_a_short_one() {
        let mut x = Exchange::new();
        x.push(RESET, t0(), 7).unwrap();
        assert_eq!(x.on_response(&[0x90]).unwrap().reply, 7);
    }

    #[test]
    fn deadlines_and_expiry_kinds() {
        let now = t0();
        let s = Duration::from_secs(1);
        let mut x = Exchange::new();
        assert_eq!(x.next_deadline(), None);
        x.push(START, now + 10 * s, "start").unwrap();
        x.push(ABORT_CODE, now + 2 * s, "abort").unwrap();
        assert_eq!(x.next_deadline(), Some(now + 2 * s));
        assert!(x.expire(now + s).is_none());
        // The Abort expires while the command is still unanswered: the reader is dead.
        assert!(matches!(x.expire(now + 2 * s), Some(Expiry::Command(p)) if p.reply == "abort"));
        assert!(matches!(x.expire(now + 10 * s), Some(Expiry::Command(p)) if p.reply == "start"));
        // The command answered 9F41 but the Abort itself never did: forget it.
        x.push(START, now + 10 * s, "start").unwrap();
        x.push(ABORT_CODE, now + 2 * s, "abort").unwrap();
        x.on_response(&[0x9F, 0x41]).unwrap();
        assert!(matches!(x.expire(now + 3 * s), Some(Expiry::Abort(p)) if p.reply == "abort"));
        assert!(x.is_empty());
    }

    #[test]
    fn drain_empties() {
        let mut x = Exchange::new();
        x.push(START, t0(), 1).unwrap();
        x.push(ABORT_CODE, t0(), 2).unwrap();
        assert_eq!(x.drain().map(|p| p.reply).collect::<Vec<_>>(), vec![1, 2]);
        assert!(x.is_empty());
        assert_eq!(command_code(&[0xD0]), [0, 0]);
        assert_eq!(command_code(&[0xD0, 0xFF, 0, 0]), ABORT_CODE);
    }
}
