//! Replay of a recorded reader session (`vipa-sim --replay FILE`): a problem seen in a store,
//! recorded by the bridge (`emvbridge sale --record FILE`), is played back to a bridge in the
//! lab.
//!
//! The recording is JSON lines, one per reassembled message, in the order the bridge saw them:
//! `{"t_ms":123,"dir":"host"|"terminal","unsolicited":false,"hex":"…"}` (`host` = a command the
//! bridge wrote, `terminal` = a message from the reader; sensitive clear fields are masked by
//! the recorder, SRED ciphertext is kept). Lines without `dir` (comments, headers) are skipped.
//!
//! A wire capture works too ([`Recording::parse_capture`]): one frame per line in hex, each
//! `host HEX` or `terminal HEX` (the `.seq` captures of Verifone's harness logs in
//! `tests/data/vipa/`); the frames are reassembled per direction, times are all zero.
//! [`Recording::parse_any`] tells the two apart.
//!
//! [`ReplayReader`] is sans-IO like [`crate::reader::SimReader`]: bytes in, frames out, `now`
//! passed in. Each command from the host is matched on `CLA INS` with the next recorded command
//! at or after the cursor; the terminal messages recorded after it (up to the next recorded
//! command) are then sent at their recorded offsets from that command, unsolicited ones
//! included. The messages recorded before the first command (the power-on `E6`) are sent on
//! every new connection. A command with no recorded match is answered `6D 00` (instruction
//! not supported), or `90 00` for an Abort, and counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use emvbridge_protocol::frame::{emit_message, Deframer, Inbound, NAD_PED};

/// Largest recording accepted (lines), so a wrong file cannot exhaust memory.
pub const MAX_ENTRIES: usize = 200_000;
/// Largest message payload accepted in a recording (the deframer's own limit).
pub const MAX_PAYLOAD: usize = emvbridge_protocol::frame::MAX_MESSAGE_LEN;
/// Longest gap replayed between a command and a message it triggered.
pub const MAX_GAP: Duration = Duration::from_secs(120);

pub use emvbridge_protocol::recording::{Dir, RecordLine};

/// One decoded message of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the start.
    pub t_ms: u64,
    /// Direction.
    pub dir: Dir,
    /// Unsolicited flag.
    pub unsolicited: bool,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Why a recording cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A line is not a recording line (1-based line number).
    #[error("line {0}: not a recording line")]
    BadLine(usize),
    /// A payload is not hex, or too short/long.
    #[error("line {0}: bad message payload")]
    BadPayload(usize),
    /// More than [`MAX_ENTRIES`] lines.
    #[error("recording too long")]
    TooLong,
    /// No message from the reader at all.
    #[error("recording has no reader messages")]
    Empty,
}

/// A parsed recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    entries: Vec<Entry>,
}

impl Recording {
    /// Parses JSON lines. Blank lines, `#` comments and objects without `dir` are skipped.
    ///
    /// # Errors
    /// [`ReplayError`].
    pub fn parse(text: &str) -> Result<Recording, ReplayError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|_| ReplayError::BadLine(n))?;
            if v.get("dir").is_none() {
                continue;
            }
            let r: RecordLine = serde_json::from_value(v).map_err(|_| ReplayError::BadLine(n))?;
            if r.hex.len() > MAX_PAYLOAD * 2 {
                return Err(ReplayError::BadPayload(n));
            }
            let payload = hex::decode(&r.hex).map_err(|_| ReplayError::BadPayload(n))?;
            if payload.len() < 2 {
                return Err(ReplayError::BadPayload(n));
            }
            if entries.len() >= MAX_ENTRIES {
                return Err(ReplayError::TooLong);
            }
            entries.push(Entry {
                t_ms: r.t_ms,
                dir: r.dir,
                unsolicited: r.unsolicited,
                payload,
            });
        }
        if !entries.iter().any(|e| e.dir == Dir::Terminal) {
            return Err(ReplayError::Empty);
        }
        Ok(Recording { entries })
    }

    /// Parses a wire capture: `host HEX` / `terminal HEX` lines, one frame each (chains are
    /// reassembled, PCB bit 6 gives the unsolicited flag). Blank lines and `#` comments are
    /// skipped.
    ///
    /// # Errors
    /// [`ReplayError`]: a line that is not `host|terminal HEX`, or a frame that is not valid.
    pub fn parse_capture(text: &str) -> Result<Recording, ReplayError> {
        let mut entries = Vec::new();
        let mut host = Deframer::new();
        let mut terminal = Deframer::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (dir, hex_frame) = line.split_once(' ').ok_or(ReplayError::BadLine(n))?;
            let (dir, deframer) = match dir {
                "host" => (Dir::Host, &mut host),
                "terminal" => (Dir::Terminal, &mut terminal),
                _ => return Err(ReplayError::BadLine(n)),
            };
            let bytes = hex::decode(hex_frame.trim()).map_err(|_| ReplayError::BadPayload(n))?;
            deframer.push(&bytes);
            while let Some(item) = deframer.poll() {
                let Inbound::Message(m) = item else {
                    return Err(ReplayError::BadPayload(n));
                };
                if entries.len() >= MAX_ENTRIES {
                    return Err(ReplayError::TooLong);
                }
                entries.push(Entry {
                    t_ms: 0,
                    dir,
                    unsolicited: m.unsolicited,
                    payload: m.payload.to_vec(),
                });
            }
        }
        if !entries.iter().any(|e| e.dir == Dir::Terminal) {
            return Err(ReplayError::Empty);
        }
        Ok(Recording { entries })
    }

    /// A capture when the first meaningful line starts with `host ` or `terminal `, else a
    /// recording.
    ///
    /// # Errors
    /// As [`Recording::parse`] / [`Recording::parse_capture`].
    pub fn parse_any(text: &str) -> Result<Recording, ReplayError> {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        match first {
            Some(l) if l.starts_with("host ") || l.starts_with("terminal ") => {
                Self::parse_capture(text)
            }
            _ => Self::parse(text),
        }
    }

    /// The messages, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// What the replaying reader did (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Commands matched with the recording.
    pub matched: u64,
    /// Commands with no recorded match (answered `6D 00` / `90 00`).
    pub unmatched: u64,
    /// Messages sent.
    pub sent: u64,
    /// Corrupt input from the host.
    pub corrupt: u64,
}

/// A reader that plays a [`Recording`] back. Sans-IO: feed it with
/// [`ReplayReader::handle_input`], drain [`ReplayReader::poll_transmit`], and wake it at
/// [`ReplayReader::poll_timeout`].
#[derive(Debug)]
pub struct ReplayReader {
    rec: Recording,
    /// Index of the first entry not yet matched.
    cursor: usize,
    deframer: Deframer,
    /// Messages due, in due order: (when, unsolicited, payload index or literal).
    queue: VecDeque<(Instant, bool, Vec<u8>)>,
    stats: ReplayStats,
}

impl ReplayReader {
    /// A reader for `rec`, cursor at the start.
    pub fn new(rec: Recording) -> Self {
        ReplayReader {
            rec,
            cursor: 0,
            deframer: Deframer::new(),
            queue: VecDeque::new(),
            stats: ReplayStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Whether every recorded command has been matched.
    pub fn finished(&self) -> bool {
        !self.rec.entries[self.cursor.min(self.rec.entries.len())..]
            .iter()
            .any(|e| e.dir == Dir::Host)
    }

    /// A host connected (or the line was reopened): forget partial input and pending output,
    /// and send the messages recorded before the first command (power-on `E6`).
    pub fn announce(&mut self, now: Instant) {
        self.deframer.reset();
        self.queue.clear();
        let first = self.rec.entries.first().map_or(0, |e| e.t_ms);
        let preamble: Vec<_> = self
            .rec
            .entries
            .iter()
            .take_while(|e| e.dir == Dir::Terminal)
            .map(|e| (gap(first, e.t_ms), e.unsolicited, e.payload.clone()))
            .collect();
        for (d, u, p) in preamble {
            self.schedule(now + d, u, p);
        }
    }

    /// Bytes from the host.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.deframer.push(bytes);
        while let Some(item) = self.deframer.poll() {
            match item {
                Inbound::Message(m) => self.on_command(now, &m.payload),
                Inbound::Corrupt { .. } => self.stats.corrupt += 1,
            }
        }
    }

    fn on_command(&mut self, now: Instant, payload: &[u8]) {
        let code = payload.get(..2);
        let found = self
            .rec
            .entries
            .iter()
            .enumerate()
            .skip(self.cursor)
            .find(|(_, e)| e.dir == Dir::Host && e.payload.get(..2) == code)
            .map(|(i, _)| i);
        let Some(i) = found else {
            self.stats.unmatched += 1;
            let sw: &[u8] = if code == Some(&[0xD0, 0xFF]) {
                &[0x90, 0x00]
            } else {
                &[0x6D, 0x00]
            };
            tracing::warn!(
                cla_ins = %hex::encode_upper(code.unwrap_or_default()),
                "replay: command not in the recording"
            );
            self.schedule(now, false, sw.to_vec());
            return;
        };
        self.stats.matched += 1;
        let t_cmd = self.rec.entries[i].t_ms;
        let answers: Vec<_> = self.rec.entries[i + 1..]
            .iter()
            .take_while(|e| e.dir == Dir::Terminal)
            .map(|e| (gap(t_cmd, e.t_ms), e.unsolicited, e.payload.clone()))
            .collect();
        self.cursor = i + 1;
        for (d, u, p) in answers {
            self.schedule(now + d, u, p);
        }
    }

    /// Keeps the queue in due order (stable for equal times).
    fn schedule(&mut self, at: Instant, unsolicited: bool, payload: Vec<u8>) {
        let pos = self.queue.partition_point(|(t, _, _)| *t <= at);
        self.queue.insert(pos, (at, unsolicited, payload));
    }

    /// The next frames due at `now` (one message, possibly chained), if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, unsolicited, payload) = self.queue.pop_front()?;
            let mut out = BytesMut::new();
            // Payloads were bounded when parsed; a framing error drops the message.
            if emit_message(NAD_PED, unsolicited, &payload, &mut out).is_ok() {
                self.stats.sent += 1;
                return Some(out.to_vec());
            }
        }
        None
    }

    /// When the next message is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _, _)| *t)
    }
}

fn gap(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(to_ms.saturating_sub(from_ms)).min(MAX_GAP)
}

#[cfg(feature = "transport")]
mod io {
    use std::time::Instant;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tracing::{info, warn};

    use super::ReplayReader;
    use crate::transport::Pty;

    async fn sleep_until(deadline: Option<Instant>) {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    }

    /// Drives `reader` over `stream` until EOF or an I/O error.
    ///
    /// # Errors
    /// Read/write errors of the stream.
    pub async fn run_replay_stream<S: AsyncRead + AsyncWrite + Unpin>(
        reader: &mut ReplayReader,
        stream: &mut S,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(bytes) = reader.poll_transmit(Instant::now()) {
                stream.write_all(&bytes).await?;
                stream.flush().await?;
            }
            tokio::select! {
                r = stream.read(&mut buf) => match r? {
                    0 => return Ok(()),
                    n => reader.handle_input(Instant::now(), buf.get(..n).unwrap_or_default()),
                },
                () = sleep_until(reader.poll_timeout()) => {}
            }
        }
    }

    /// Serves the replay on `listener`, one host connection at a time (for ever).
    pub async fn run_replay_tcp(mut reader: ReplayReader, listener: TcpListener) {
        loop {
            let (mut stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(%e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            info!(%peer, "host connected (replay)");
            let _ = stream.set_nodelay(true);
            reader.announce(Instant::now());
            if let Err(e) = run_replay_stream(&mut reader, &mut stream).await {
                info!(%e, "connection ended");
            }
            info!(stats = ?reader.stats(), "host disconnected (replay)");
        }
    }

    /// Serves the replay on a pseudo-terminal (for ever; the bridge may reopen the port).
    pub async fn run_replay_pty(mut reader: ReplayReader, mut pty: Pty) {
        reader.announce(Instant::now());
        loop {
            match run_replay_stream(&mut reader, &mut pty).await {
                Ok(()) => info!("pty: end of input"),
                Err(e) => warn!(%e, "pty: i/o error"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[cfg(feature = "transport")]
pub use io::{run_replay_pty, run_replay_stream, run_replay_tcp};

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"# a comment
{"recording":"emvbridge-vipa","version":1}
{"t_ms":0,"dir":"terminal","unsolicited":true,"hex":"E6029000"}
{"t_ms":5,"dir":"host","unsolicited":false,"hex":"D0000000"}
{"t_ms":7,"dir":"terminal","unsolicited":false,"hex":"EE009000"}
{"t_ms":10,"dir":"host","unsolicited":false,"hex":"DED10000"}
{"t_ms":30,"dir":"terminal","unsolicited":true,"hex":"E0044802030000"}
{"t_ms":60,"dir":"terminal","unsolicited":false,"hex":"E4009000"}
"#;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        emit_message(NAD_PED, false, payload, &mut out).unwrap();
        out.to_vec()
    }

    fn drain(r: &mut ReplayReader, now: Instant) -> Vec<(bool, Vec<u8>)> {
        let mut d = Deframer::new();
        while let Some(b) = r.poll_transmit(now) {
            d.push(&b);
        }
        let mut out = Vec::new();
        while let Some(Inbound::Message(m)) = d.poll() {
            out.push((m.unsolicited, m.payload.to_vec()));
        }
        out
    }

    #[test]
    fn parses_and_skips_non_messages() {
        let rec = Recording::parse(REC).unwrap();
        assert_eq!(rec.entries().len(), 6);
        assert_eq!(rec.entries()[1].payload, [0xD0, 0x00, 0x00, 0x00]);
        assert_eq!(
            Recording::parse(r#"{"t_ms":0,"dir":"host","hex":"zz"}"#),
            Err(ReplayError::BadPayload(1))
        );
        assert_eq!(
            Recording::parse("{\"t_ms\":0,\"dir\":\"sideways\",\"hex\":\"9000\"}"),
            Err(ReplayError::BadLine(1))
        );
        assert_eq!(Recording::parse("not json"), Err(ReplayError::BadLine(1)));
        assert_eq!(
            Recording::parse(r#"{"t_ms":0,"dir":"host","hex":"D000"}"#),
            Err(ReplayError::Empty)
        );
    }

    #[test]
    fn answers_commands_in_order_with_recorded_gaps() {
        let mut r = ReplayReader::new(Recording::parse(REC).unwrap());
        let t0 = Instant::now();
        r.announce(t0);
        assert_eq!(
            drain(&mut r, t0),
            vec![(true, vec![0xE6, 0x02, 0x90, 0x00])]
        );
        assert_eq!(r.poll_timeout(), None);
        r.handle_input(t0, &frame(&[0xD0, 0x00, 0x00, 0x00]));
        assert_eq!(drain(&mut r, t0 + Duration::from_millis(1)), vec![]);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(2)));
        assert_eq!(
            drain(&mut r, t0 + Duration::from_millis(2)),
            vec![(false, vec![0xEE, 0x00, 0x90, 0x00])]
        );
        // An unrecorded command is refused and does not move the cursor.
        r.handle_input(t0, &frame(&[0xD0, 0x61, 0x00, 0x00]));
        assert_eq!(drain(&mut r, t0), vec![(false, vec![0x6D, 0x00])]);
        let t1 = t0 + Duration::from_secs(1);
        r.handle_input(t1, &frame(&[0xDE, 0xD1, 0x00, 0x00]));
        assert_eq!(
            drain(&mut r, t1 + Duration::from_millis(20)),
            vec![(true, vec![0xE0, 0x04, 0x48, 0x02, 0x03, 0x00, 0x00])]
        );
        assert!(!r.finished() || r.poll_timeout().is_some());
        assert_eq!(
            drain(&mut r, t1 + Duration::from_millis(50)),
            vec![(false, vec![0xE4, 0x00, 0x90, 0x00])]
        );
        assert!(r.finished());
        // Abort with nothing recorded: acknowledged.
        r.handle_input(t1, &frame(&[0xD0, 0xFF, 0x00, 0x00]));
        assert_eq!(drain(&mut r, t1), vec![(false, vec![0x90, 0x00])]);
        let s = r.stats();
        assert_eq!((s.matched, s.unmatched, s.sent), (2, 2, 6));
    }

    #[test]
    fn gaps_are_capped() {
        assert_eq!(gap(10, 5), Duration::ZERO);
        assert_eq!(gap(0, u64::MAX), MAX_GAP);
    }
}
