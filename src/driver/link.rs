//! The reader link: one tokio task that owns the serial port or TCP socket to a VIPA reader.
//!
//! The task is one `select!` loop over the transport's read half, the command channel from
//! [`ReaderLink`] handles and `sleep_until` the next deadline (a command timeout, or the idle
//! gap after which a stalled partial frame is discarded, see
//! [`emvbridge_protocol::frame::Reassembler::discard_stalled`]). Frames go through the protocol
//! crate's [`VipaCodec`]; corruption is counted, logged and reported, never fatal (§1.2).
//!
//! Life cycle: open the transport ([`Connector`]), re-synchronise (Reset Device `D0 00`, whose
//! reassembled answer gives the [`DeviceInfo`]; then Card Status `D0 60 01 01` so card events
//! arrive unsolicited), then [`LinkState::Connected`]. A read error, EOF, write stall or a
//! command without an answer within its timeout loses the link: every pending command
//! completes with [`LinkError::Lost`] (or [`LinkError::Timeout`] for the one that timed out)
//! at once, [`LinkEvent::Lost`] is emitted, and the task reopens with bounded exponential
//! backoff and re-synchronises before accepting commands again.
//!
//! Logs carry command names, lengths, frame counts, status words and template tags, never
//! payload bytes (they may hold card data).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use emvbridge_protocol::codec::VipaCodec;
use emvbridge_protocol::frame::{emit_message, FrameError, Inbound, Message, NAD_PED};
use emvbridge_protocol::vipa::command::{code, reset_flags};
use emvbridge_protocol::vipa::{
    command_name, parse_reset_response, Command, DeviceInfo, ResetResponseError, Response,
    StatusWord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, info, warn};

use super::exchange::{command_code, Exchange, Expiry, Pending, Refusal};
use super::transport::{BoxedIo, Connector};

/// Tuning of a link. The defaults follow the \[S2\] host where it says something (§1.2: 15 s
/// for a device result); the rest are implementation choices.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Time for the reader to answer Reset Device during re-synchronisation.
    pub reset_timeout: Duration,
    /// Time for the reader to answer Card Status during re-synchronisation.
    pub setup_timeout: Duration,
    /// Time for a pending Abort to be answered (either itself or the command it aborts).
    pub abort_timeout: Duration,
    /// Time a write may block (e.g. CTS held low) before the link counts as lost.
    pub write_timeout: Duration,
    /// Quiet time after which buffered bytes that do not make a frame are discarded.
    pub idle_gap: Duration,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Consecutive failed (re)connect attempts after which the task gives up and the state
    /// becomes [`LinkState::Closed`]; `None` retries for ever (the bridge), `Some(n)` suits
    /// one-shot commands such as `emvbridge device info`.
    pub max_connect_attempts: Option<u32>,
    /// Reset Device P2 flags used to re-synchronise (§3; default: return serial / PTID).
    pub reset_flags: u8,
    /// Send Card Status `D0 60 01 01` after the reset, so card events arrive (§3, \[S5\]).
    pub enable_card_status: bool,
    /// Capacity of the event channel; events that do not fit are dropped and counted.
    pub event_capacity: usize,
    /// Sees every command written and every message reassembled (a session recorder,
    /// `crate::record`); `None` by default.
    pub tap: Option<Tap>,
}

/// Which way a tapped message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapDir {
    /// Written by the bridge (a command).
    Host,
    /// Received from the reader (a response or an unsolicited message).
    Terminal,
}

/// An observer of the link's messages (whole payloads, after reassembly / before framing).
/// Called on the link task: it must be quick and must not block for long.
pub trait MessageTap: Send + Sync + 'static {
    /// One message. Payloads may hold card data: an implementation that stores them masks
    /// them first.
    fn message(&self, dir: TapDir, unsolicited: bool, payload: &[u8]);
}

/// A shared [`MessageTap`] in a [`LinkConfig`].
#[derive(Clone)]
pub struct Tap(pub Arc<dyn MessageTap>);

impl core::fmt::Debug for Tap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Tap")
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            reset_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(5),
            abort_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(2),
            idle_gap: Duration::from_millis(200),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_connect_attempts: None,
            reset_flags: reset_flags::RETURN_SERIAL,
            enable_card_status: true,
            event_capacity: 256,
            tap: None,
        }
    }
}

impl LinkConfig {
    /// Delay before reconnect attempt `attempt` (1-based): `initial * 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1u32 << shift)
            .min(self.backoff_max)
    }
}

/// Why the link went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LostReason {
    /// The transport could not be opened.
    #[error("cannot open: {0}")]
    Open(std::io::ErrorKind),
    /// The peer closed the stream (TCP FIN, pty master gone).
    #[error("reader closed the connection")]
    Eof,
    /// A read or write failed (e.g. USB reader unplugged).
    #[error("i/o error: {0}")]
    Io(std::io::ErrorKind),
    /// A command got no answer within its timeout.
    #[error("no answer from reader")]
    NoAnswer,
    /// A write did not complete within the write timeout.
    #[error("write stalled")]
    WriteStalled,
    /// Reset Device during re-synchronisation answered an error status.
    #[error("reset refused with {0}")]
    ResetFailed(StatusWord),
    /// The reader sends stream-encrypted frames (PCB bit 1), which the bridge does not
    /// support: stream encryption must be turned off on the reader.
    #[error("reader uses stream encryption (pcb bit 1), which is not supported")]
    StreamEncrypted,
    /// [`ReaderLink::reconnect`] was called.
    #[error("reconnect requested")]
    Requested,
    /// The link was shut down (or every handle dropped).
    #[error("link shut down")]
    Shutdown,
}

/// Why a command failed at the link level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No answer within the command's timeout (the link is then re-synchronised).
    #[error("timed out waiting for the reader")]
    Timeout,
    /// The link went down while the command was pending (or before it could be written).
    #[error("link lost: {0}")]
    Lost(LostReason),
    /// Another command is in flight (only Abort may be sent then).
    #[error("a command is already in flight")]
    Busy,
    /// The link is (re)connecting or re-synchronising.
    #[error("reader not ready")]
    NotReady,
    /// The payload cannot be framed (shorter than 2 bytes, or too long).
    #[error("cannot frame command: {0}")]
    Frame(FrameError),
    /// The link task has stopped.
    #[error("link closed")]
    Closed,
}

/// The state of the link, observable through [`ReaderLink::watch_state`].
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    /// Opening or re-synchronising (also the initial state, with `attempt` 0).
    Reconnecting {
        /// Consecutive failed attempts so far.
        attempt: u32,
        /// Why the previous session or attempt ended.
        last_error: Option<LostReason>,
    },
    /// Re-synchronised and ready for commands.
    Connected {
        /// What the reader said in answer to Reset Device.
        device_info: Arc<DeviceInfo>,
    },
    /// Given up (see [`LinkConfig::max_connect_attempts`]) or shut down.
    Closed {
        /// Why.
        reason: LostReason,
    },
}

/// What the link reports on its event channel. After [`ReaderLink::send`], exactly one of
/// [`LinkEvent::Response`] (for that command) or [`LinkEvent::Lost`] follows.
#[derive(Clone, PartialEq)]
pub enum LinkEvent {
    /// The solicited answer to a command sent with [`ReaderLink::send`] (reassembled payload,
    /// `[data] SW1 SW2`). `command` is the `CLA INS` it answers, so the answer to an Abort
    /// (`D0 FF`) is told apart from the `9F 41` of the command it cancelled.
    Response {
        /// `CLA INS` of the command answered.
        command: [u8; 2],
        /// The message payload.
        payload: Bytes,
    },
    /// A message with PCB bit6: `E6` status, `E0{48}` card event, power-on `E6` (§1.2).
    Unsolicited(Bytes),
    /// Bytes dropped by the deframer (already counted and logged).
    Corrupt(FrameError),
    /// The link went down; any command in flight has failed.
    Lost(LostReason),
    /// The link is (again) connected and re-synchronised.
    Ready(Arc<DeviceInfo>),
}

impl core::fmt::Debug for LinkEvent {
    /// Payloads may hold card data: lengths only.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkEvent::Response { command, payload } => f
                .debug_struct("Response")
                .field(
                    "command",
                    &format_args!("{:02X}{:02X}", command[0], command[1]),
                )
                .field("payload_len", &payload.len())
                .finish(),
            LinkEvent::Unsolicited(p) => f
                .debug_struct("Unsolicited")
                .field("payload_len", &p.len())
                .finish(),
            LinkEvent::Corrupt(e) => f.debug_tuple("Corrupt").field(e).finish(),
            LinkEvent::Lost(r) => f.debug_tuple("Lost").field(r).finish(),
            LinkEvent::Ready(_) => f.write_str("Ready"),
        }
    }
}

/// Counters a lab or a status page can read ([`ReaderLink::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Valid frames received.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Messages (reassembled) received.
    pub messages_in: u64,
    /// Messages (commands) written.
    pub messages_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Corruption reports from the deframer (bad LRC, garbage, stalled or broken chains).
    pub corrupt: u64,
    /// Unsolicited messages received.
    pub unsolicited: u64,
    /// Solicited responses that matched no pending command (dropped).
    pub stray: u64,
    /// Commands that got no answer in time.
    pub timeouts: u64,
    /// Successful re-synchronisations after the first.
    pub reconnects: u64,
    /// Failed open or re-synchronisation attempts.
    pub connect_failures: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    corrupt: AtomicU64,
    unsolicited: AtomicU64,
    stray: AtomicU64,
    timeouts: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    events_dropped: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> LinkStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkStats {
            frames_in: g(&self.frames_in),
            frames_out: g(&self.frames_out),
            messages_in: g(&self.messages_in),
            messages_out: g(&self.messages_out),
            bytes_in: g(&self.bytes_in),
            bytes_out: g(&self.bytes_out),
            corrupt: g(&self.corrupt),
            unsolicited: g(&self.unsolicited),
            stray: g(&self.stray),
            timeouts: g(&self.timeouts),
            reconnects: g(&self.reconnects),
            connect_failures: g(&self.connect_failures),
            events_dropped: g(&self.events_dropped),
        }
    }
}

/// Where a command's outcome goes.
enum Reply {
    /// To the event channel ([`ReaderLink::send`]).
    Event,
    /// To a waiting [`ReaderLink::request`].
    Caller(oneshot::Sender<Result<Bytes, LinkError>>),
    /// Re-synchronisation step run by the task itself.
    Setup(Step),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Reset,
    /// The Reset was answered `9F24` (out of sequence): its real answer may follow right
    /// behind (the logged UX301 sends it in the same read); wait a moment for it, then send
    /// the Reset again.
    ResetAgain,
    CardStatus,
}

/// How long a pending Card Status waits for its own answer after an unsolicited card event
/// came first; then the event counts as the answer (the M400 sends no other, §0). \[I\]
const CARD_STATUS_GRACE: Duration = Duration::from_millis(300);

/// How long the link waits for the reset answer that may follow a `9F24`.
const RESET_AGAIN_AFTER: Duration = Duration::from_millis(500);
/// Resets sent in one re-synchronisation before it counts as refused.
const MAX_RESETS: u8 = 3;

enum Op {
    Command {
        payload: Bytes,
        timeout: Duration,
        /// `Some` for `send` (acknowledged when written), `None` for `request`.
        ack: Option<oneshot::Sender<Result<(), LinkError>>>,
        reply: Reply,
    },
    Reconnect,
    Shutdown,
}

/// A handle to the link task. Cheap to clone; the task stops when [`ReaderLink::shutdown`] is
/// called or every handle is dropped.
#[derive(Clone)]
pub struct ReaderLink {
    ops: mpsc::Sender<Op>,
    state: watch::Receiver<LinkState>,
    counters: Arc<Counters>,
}

impl core::fmt::Debug for ReaderLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReaderLink")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl ReaderLink {
    /// Spawns the link task on the current tokio runtime. Returns the handle and the event
    /// receiver (drain it promptly, or drop it if only [`ReaderLink::request`] is used).
    pub fn spawn(
        connector: impl Connector,
        config: LinkConfig,
    ) -> (ReaderLink, mpsc::Receiver<LinkEvent>) {
        let (ops_tx, ops_rx) = mpsc::channel(16);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
        let (state_tx, state_rx) = watch::channel(LinkState::Reconnecting {
            attempt: 0,
            last_error: None,
        });
        let counters = Arc::new(Counters::default());
        let task = Task {
            config,
            ops: ops_rx,
            events: ev_tx,
            state: state_tx,
            counters: counters.clone(),
            ready_sessions: 0,
        };
        tokio::spawn(crate::telemetry::metrics::inherit_lane(
            task.run(Box::new(connector)),
        ));
        (
            ReaderLink {
                ops: ops_tx,
                state: state_rx,
                counters,
            },
            ev_rx,
        )
    }

    /// Writes a command; its answer arrives as [`LinkEvent::Response`] (or the link's
    /// [`LinkEvent::Lost`]). Returns once the command is written. `timeout` bounds the wait
    /// for the answer; a command without an answer in time loses the link (the task then
    /// re-synchronises). Abort `D0 FF` may be sent while another command is pending.
    ///
    /// # Errors
    /// [`LinkError::Busy`], [`LinkError::NotReady`], [`LinkError::Frame`],
    /// [`LinkError::Lost`] (write failed), [`LinkError::Closed`].
    pub async fn send(&self, payload: Bytes, timeout: Duration) -> Result<(), LinkError> {
        let (tx, rx) = oneshot::channel();
        self.op(Op::Command {
            payload,
            timeout,
            ack: Some(tx),
            reply: Reply::Event,
        })
        .await?;
        rx.await.unwrap_or(Err(LinkError::Closed))
    }

    /// Writes a command and waits for its answer (the reassembled payload, `[data] SW1 SW2`),
    /// which is *not* also reported as an event. Never waits much longer than `timeout`.
    ///
    /// # Errors
    /// [`LinkError::Timeout`] (the link then re-synchronises), [`LinkError::Lost`], and the
    /// errors of [`ReaderLink::send`].
    pub async fn request(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.op(Op::Command {
            payload,
            timeout,
            ack: None,
            reply: Reply::Caller(tx),
        })
        .await?;
        // The task enforces the deadline; the margin only guards against a wedged task.
        let guard = timeout
            .saturating_add(Duration::from_secs(2))
            .saturating_mul(2);
        match tokio::time::timeout(guard, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    /// Drops the connection and re-synchronises (e.g. after the transaction layer gave up).
    pub async fn reconnect(&self) {
        let _ = self.ops.send(Op::Reconnect).await;
    }

    /// Stops the task; pending commands fail with `Lost(Shutdown)`.
    pub async fn shutdown(&self) {
        let _ = self.ops.send(Op::Shutdown).await;
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Waits until the link is connected and re-synchronised; returns what the reader said.
    ///
    /// # Errors
    /// [`LinkError::Timeout`] after `timeout`; [`LinkError::Lost`] with the reason when the
    /// task gave up ([`LinkState::Closed`]); [`LinkError::Closed`] if the task is gone.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Arc<DeviceInfo>, LinkError> {
        let mut rx = self.state.clone();
        let wait = rx.wait_for(|s| !matches!(s, LinkState::Reconnecting { .. }));
        let state = match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => return Err(LinkError::Closed),
            Err(_) => return Err(LinkError::Timeout),
        };
        match state {
            LinkState::Connected { device_info } => Ok(device_info),
            LinkState::Closed { reason } => Err(LinkError::Lost(reason)),
            LinkState::Reconnecting { .. } => Err(LinkError::NotReady),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }

    async fn op(&self, op: Op) -> Result<(), LinkError> {
        self.ops.send(op).await.map_err(|_| LinkError::Closed)
    }
}

/// The task's long-lived state.
struct Task {
    config: LinkConfig,
    ops: mpsc::Receiver<Op>,
    events: mpsc::Sender<LinkEvent>,
    state: watch::Sender<LinkState>,
    counters: Arc<Counters>,
    /// Sessions that reached `Connected`.
    ready_sessions: u64,
}

impl Task {
    fn emit(&self, ev: LinkEvent) {
        match self.events.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                bump(&self.counters.events_dropped, 1);
                warn!(event = ?ev, "link event channel full, event dropped");
            }
            // Nobody listens (request-only use): fine.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    async fn run(mut self, mut connector: Box<dyn Connector>) {
        let name = connector.describe();
        let mut attempt: u32 = 0;
        let mut last_error: Option<LostReason> = None;
        loop {
            crate::telemetry::metrics::reader_connected(false);
            self.state.send_replace(LinkState::Reconnecting {
                attempt,
                last_error,
            });
            if attempt > 0 {
                let delay = self.config.backoff(attempt);
                debug!(device = %name, attempt, delay_ms = delay.as_millis() as u64, "reconnect backoff");
                if let Some(reason) = self.idle(Instant::now() + delay).await {
                    return self.close(reason);
                }
            }
            let opened = tokio::select! {
                r = connector.connect() => r,
                op = self.ops.recv() => match op {
                    None | Some(Op::Shutdown) => return self.close(LostReason::Shutdown),
                    Some(op) => { reject(op, LinkError::NotReady); continue; }
                },
            };
            let reason = match opened {
                Err(e) => {
                    warn!(device = %name, error = %e, "cannot open reader");
                    LostReason::Open(e.kind())
                }
                Ok(io) => {
                    debug!(device = %name, "transport open, re-synchronising");
                    let mut session = Session::new(&mut self, io);
                    let reason = session.run().await;
                    let was_ready = session.ready;
                    session.fail_all(reason);
                    if was_ready {
                        attempt = 0;
                        if reason == LostReason::Shutdown {
                            debug!(device = %name, "reader link shut down");
                        } else {
                            warn!(device = %name, %reason, "reader link lost");
                            crate::telemetry::metrics::reconnect();
                        }
                        self.emit(LinkEvent::Lost(reason));
                    } else {
                        warn!(device = %name, %reason, "re-synchronisation failed");
                    }
                    if reason == LostReason::Shutdown {
                        return self.close(reason);
                    }
                    if was_ready && reason != LostReason::Requested {
                        // Count the loss itself as the first failed attempt: back off a little
                        // before reopening a device that just vanished.
                        attempt = 1;
                        last_error = Some(reason);
                        continue;
                    }
                    if was_ready {
                        attempt = 0;
                        last_error = Some(reason);
                        continue;
                    }
                    reason
                }
            };
            bump(&self.counters.connect_failures, 1);
            attempt = attempt.saturating_add(1);
            last_error = Some(reason);
            if self
                .config
                .max_connect_attempts
                .is_some_and(|max| attempt >= max)
            {
                warn!(device = %name, attempt, %reason, "giving up on reader");
                return self.close(reason);
            }
        }
    }

    /// Waits until `until`, refusing commands; returns a reason to stop if asked to.
    async fn idle(&mut self, until: Instant) -> Option<LostReason> {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return None,
                op = self.ops.recv() => match op {
                    None | Some(Op::Shutdown) => return Some(LostReason::Shutdown),
                    Some(Op::Reconnect) => return None,
                    Some(op) => reject(op, LinkError::NotReady),
                },
            }
        }
    }

    fn close(mut self, reason: LostReason) {
        crate::telemetry::metrics::reader_connected(false);
        self.state.send_replace(LinkState::Closed { reason });
        self.ops.close();
        while let Ok(op) = self.ops.try_recv() {
            reject(op, LinkError::Lost(reason));
        }
    }
}

fn reject(op: Op, e: LinkError) {
    if let Op::Command { ack, reply, .. } = op {
        if let Some(ack) = ack {
            let _ = ack.send(Err(e));
        }
        if let Reply::Caller(tx) = reply {
            let _ = tx.send(Err(e));
        }
    }
}

/// One open transport, from re-synchronisation to loss.
struct Session<'t> {
    task: &'t mut Task,
    io: BoxedIo,
    codec: VipaCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    exchange: Exchange<Reply>,
    /// When buffered bytes count as stalled.
    stall_at: Option<Instant>,
    /// An unsolicited card event that came while Card Status was pending, and when it becomes
    /// that command's answer if no answer of its own comes first.
    card_status_event: Option<(Instant, Message)>,
    ready: bool,
    device_info: Option<Arc<DeviceInfo>>,
    /// Reset Device commands written in this session.
    resets: u8,
}

/// Inner loop result: keep going, or the link is lost.
type Flow = Result<(), LostReason>;

impl<'t> Session<'t> {
    fn new(task: &'t mut Task, io: BoxedIo) -> Self {
        Session {
            task,
            io,
            codec: VipaCodec::new(),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(512),
            exchange: Exchange::new(),
            stall_at: None,
            card_status_event: None,
            ready: false,
            device_info: None,
            resets: 0,
        }
    }

    async fn run(&mut self) -> LostReason {
        if let Err(r) = self.send_reset().await {
            return r;
        }
        loop {
            let next = self.exchange.next_deadline().map(Instant::from_std);
            let deadline = [
                next,
                self.stall_at,
                self.card_status_event.as_ref().map(|e| e.0),
            ]
            .into_iter()
            .flatten()
            .min();
            let flow = tokio::select! {
                r = self.io.read_buf(&mut self.rbuf) => match r {
                    Ok(0) => Err(LostReason::Eof),
                    Ok(n) => self.on_bytes(n).await,
                    Err(e) => {
                        warn!(error = %e, "reader read failed");
                        Err(LostReason::Io(e.kind()))
                    }
                },
                op = self.task.ops.recv() => match op {
                    None | Some(Op::Shutdown) => Err(LostReason::Shutdown),
                    Some(Op::Reconnect) => Err(LostReason::Requested),
                    Some(Op::Command { payload, timeout, ack, reply }) => {
                        self.on_command(payload, timeout, ack, reply).await
                    }
                },
                () = sleep_until_opt(deadline) => self.on_deadline().await,
            };
            if let Err(r) = flow {
                return r;
            }
        }
    }

    /// Fails everything in flight (the session ended with `reason`).
    fn fail_all(&mut self, reason: LostReason) {
        for p in self.exchange.drain() {
            if let Reply::Caller(tx) = p.reply {
                let _ = tx.send(Err(LinkError::Lost(reason)));
            }
        }
    }

    async fn send_reset(&mut self) -> Flow {
        self.resets += 1;
        let reset = Command::ResetDevice {
            mode: 0x00,
            flags: self.task.config.reset_flags,
        };
        let timeout = self.task.config.reset_timeout;
        self.start_setup(&reset, Step::Reset, timeout).await
    }

    async fn start_setup(&mut self, cmd: &Command<'_>, step: Step, timeout: Duration) -> Flow {
        // The builders used here cannot fail (no transaction data).
        let payload = cmd.to_payload().unwrap_or_default();
        self.write_command(payload, timeout, Reply::Setup(step))
            .await
            .map_err(|e| match e {
                LinkError::Lost(r) => r,
                _ => LostReason::NoAnswer,
            })
    }

    async fn on_command(
        &mut self,
        payload: Bytes,
        timeout: Duration,
        ack: Option<oneshot::Sender<Result<(), LinkError>>>,
        reply: Reply,
    ) -> Flow {
        let checked = if !self.ready {
            Err(LinkError::NotReady)
        } else {
            self.exchange
                .check(command_code(&payload))
                .map_err(|_| LinkError::Busy)
        };
        let result = match checked {
            Ok(()) => self.write_command(payload, timeout, reply).await,
            Err(e) => {
                if let Reply::Caller(tx) = reply {
                    let _ = tx.send(Err(e));
                }
                Err(e)
            }
        };
        if let Some(ack) = ack {
            let _ = ack.send(result.map(drop));
        }
        match result {
            Err(LinkError::Lost(r)) => Err(r),
            _ => Ok(()),
        }
    }

    /// Frames and writes a command and records it as pending. On error the `reply` has
    /// been completed with the same error.
    async fn write_command(
        &mut self,
        payload: Bytes,
        timeout: Duration,
        reply: Reply,
    ) -> Result<(), LinkError> {
        let code = command_code(&payload);
        let fail = |reply: Reply, e: LinkError| {
            if let Reply::Caller(tx) = reply {
                let _ = tx.send(Err(e));
            }
            Err(e)
        };
        self.wbuf.clear();
        let frames = match emit_message(NAD_PED, false, &payload, &mut self.wbuf) {
            Ok(n) => n,
            Err(e) => return fail(reply, LinkError::Frame(e)),
        };
        if self.exchange.check(code).is_err() {
            return fail(reply, LinkError::Busy);
        }
        let write = async {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.task.config.write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "reader write failed");
                return fail(reply, LinkError::Lost(LostReason::Io(e.kind())));
            }
            Err(_) => return fail(reply, LinkError::Lost(LostReason::WriteStalled)),
        }
        let deadline = (Instant::now() + timeout).into_std();
        if let Err(Refusal::Busy) = self.exchange.push(code, deadline, reply) {
            // Checked above; nothing else runs in between.
            return Err(LinkError::Busy);
        }
        if let Some(tap) = &self.task.config.tap {
            tap.0.message(TapDir::Host, false, &payload);
        }
        let c = &self.task.counters;
        bump(&c.messages_out, 1);
        bump(&c.frames_out, frames as u64);
        bump(&c.bytes_out, self.wbuf.len() as u64);
        debug!(
            command = command_name(code[0], code[1]).unwrap_or("unknown"),
            cla_ins = %format_args!("{:02X}{:02X}", code[0], code[1]),
            len = payload.len(),
            frames,
            timeout_ms = timeout.as_millis() as u64,
            "command sent"
        );
        Ok(())
    }

    async fn on_bytes(&mut self, n: usize) -> Flow {
        bump(&self.task.counters.bytes_in, n as u64);
        while let Ok(Some(item)) = self.codec.decode(&mut self.rbuf) {
            self.on_inbound(item).await?;
        }
        self.stall_at = (!self.rbuf.is_empty()).then(|| Instant::now() + self.task.config.idle_gap);
        Ok(())
    }

    async fn on_deadline(&mut self) -> Flow {
        let now = Instant::now();
        if self.card_status_event.as_ref().is_some_and(|e| e.0 <= now) {
            if let Some((_, m)) = self.card_status_event.take() {
                if self.exchange.command() == Some(code::CARD_STATUS) {
                    // §0: the M400 answers Card Status only with the unsolicited event.
                    debug!("card status answered by an unsolicited card event");
                    self.on_response(m).await?;
                }
            }
        }
        if self.stall_at.is_some_and(|t| t <= now) {
            self.stall_at = None;
            if let Some(item) = self.codec.discard_stalled(&mut self.rbuf) {
                self.on_inbound(item).await?;
            }
            while let Ok(Some(item)) = self.codec.decode(&mut self.rbuf) {
                self.on_inbound(item).await?;
            }
            if !self.rbuf.is_empty() {
                self.stall_at = Some(now + self.task.config.idle_gap);
            }
        }
        while let Some(exp) = self.exchange.expire(now.into_std()) {
            match exp {
                Expiry::Abort(p) => {
                    debug!("abort got no answer of its own; forgotten");
                    drop(p);
                }
                Expiry::Command(Pending {
                    reply: Reply::Setup(Step::ResetAgain),
                    ..
                }) => {
                    // No reset answer behind the 9F24: send the Reset again.
                    debug!("no reset answer after 9F24; resetting again");
                    self.send_reset().await?;
                }
                Expiry::Command(p) => {
                    bump(&self.task.counters.timeouts, 1);
                    warn!(
                        command = command_name(p.code[0], p.code[1]).unwrap_or("unknown"),
                        "no answer from reader"
                    );
                    if let Reply::Caller(tx) = p.reply {
                        let _ = tx.send(Err(LinkError::Timeout));
                    }
                    return Err(LostReason::NoAnswer);
                }
            }
        }
        Ok(())
    }

    async fn on_inbound(&mut self, item: Inbound) -> Flow {
        match item {
            Inbound::Corrupt {
                reason: FrameError::StreamEncrypted,
                ..
            } => {
                bump(&self.task.counters.corrupt, 1);
                tracing::error!(
                    "reader sends stream-encrypted frames (PCB bit 1): not supported; \
                     turn VIPA stream encryption off on the reader"
                );
                self.task
                    .emit(LinkEvent::Corrupt(FrameError::StreamEncrypted));
                Err(LostReason::StreamEncrypted)
            }
            Inbound::Corrupt { reason, skipped } => {
                bump(&self.task.counters.corrupt, 1);
                crate::telemetry::metrics::corrupt_frame();
                warn!(%reason, skipped, "corrupt data from reader dropped");
                self.task.emit(LinkEvent::Corrupt(reason));
                Ok(())
            }
            Inbound::Message(m) => {
                if let Some(tap) = &self.task.config.tap {
                    tap.0.message(TapDir::Terminal, m.unsolicited, &m.payload);
                }
                let c = &self.task.counters;
                bump(&c.messages_in, 1);
                bump(&c.frames_in, m.frames as u64);
                if m.unsolicited && self.answers_card_status(&m.payload) {
                    // §0: the M400 answers Card Status only with an unsolicited `E0{48}`; a
                    // UX answers `90 00` and may send the event first. The event goes out as
                    // an event now, and becomes the answer if none of its own follows soon.
                    self.card_status_event = Some((Instant::now() + CARD_STATUS_GRACE, m.clone()));
                }
                crate::telemetry::metrics::frames_received(m.frames as u64);
                if m.unsolicited {
                    bump(&c.unsolicited, 1);
                    debug!(
                        template = %format_args!("{:02X}", m.payload.first().copied().unwrap_or(0)),
                        len = m.payload.len(),
                        frames = m.frames,
                        "unsolicited message"
                    );
                    self.task.emit(LinkEvent::Unsolicited(m.payload));
                    return Ok(());
                }
                self.on_response(m).await
            }
        }
    }

    /// Whether an unsolicited message is the answer to a pending Card Status: an `E0`
    /// holding tag `48`. \[I\] only Card Status is known to be answered this way.
    fn answers_card_status(&self, payload: &[u8]) -> bool {
        self.exchange.command() == Some(code::CARD_STATUS)
            && Response::parse(payload)
                .ok()
                .and_then(|r| r.template())
                .is_some_and(|t| t.card_event().is_some())
    }

    async fn on_response(&mut self, m: Message) -> Flow {
        if !m.unsolicited {
            // Card Status answered by its own answer: a card event before it was only an event.
            self.card_status_event = None;
        }
        let sw = Response::parse(&m.payload).map(|r| r.sw()).ok();
        let Some(p) = self.exchange.on_response(&m.payload) else {
            bump(&self.task.counters.stray, 1);
            warn!(len = m.payload.len(), sw = ?sw, "response with no command pending dropped");
            return Ok(());
        };
        debug!(
            command = command_name(p.code[0], p.code[1]).unwrap_or("unknown"),
            len = m.payload.len(),
            frames = m.frames,
            sw = ?sw,
            "response"
        );
        match p.reply {
            Reply::Event => {
                self.task.emit(LinkEvent::Response {
                    command: p.code,
                    payload: m.payload,
                });
                Ok(())
            }
            Reply::Caller(tx) => {
                let _ = tx.send(Ok(m.payload));
                Ok(())
            }
            Reply::Setup(step) => self.on_setup(step, &m.payload).await,
        }
    }

    async fn on_setup(&mut self, step: Step, payload: &[u8]) -> Flow {
        match step {
            Step::Reset | Step::ResetAgain => {
                let info = match parse_reset_response(payload) {
                    Ok(info) => info,
                    Err(ResetResponseError::Status(StatusWord::OUT_OF_ORDER))
                        if self.resets < MAX_RESETS =>
                    {
                        // §0 status table: 9F24 "command out of sequence". The logged UX301
                        // sends it and then its reset answer in the same read: keep waiting
                        // for that answer; without it, reset again.
                        debug!("reset answered 9F24; waiting for the reset answer behind it");
                        let deadline = (Instant::now() + RESET_AGAIN_AFTER).into_std();
                        let _ = self.exchange.push(
                            code::RESET_DEVICE,
                            deadline,
                            Reply::Setup(Step::ResetAgain),
                        );
                        return Ok(());
                    }
                    Err(ResetResponseError::Status(sw)) => return Err(LostReason::ResetFailed(sw)),
                    Err(e) => {
                        // [I] tolerant: an unparsable device-info block does not stop the link.
                        warn!(error = %e, "reset response not understood; device info empty");
                        DeviceInfo::default()
                    }
                };
                info!(
                    terminal_id = info.terminal_id.as_deref().unwrap_or("?"),
                    model = info
                        .devices
                        .first()
                        .and_then(|d| d.model.as_deref())
                        .unwrap_or("?"),
                    "reader reset"
                );
                self.device_info = Some(Arc::new(info));
                if self.task.config.enable_card_status {
                    let cmd = Command::CardStatus { p1: 0x01, p2: 0x01 };
                    let t = self.task.config.setup_timeout;
                    return self.start_setup(&cmd, Step::CardStatus, t).await;
                }
                self.become_ready();
                Ok(())
            }
            Step::CardStatus => {
                match Response::parse(payload).map(|r| r.sw()) {
                    Ok(sw) if sw.is_success() => {}
                    // [GAP] the D0 60 P1/P2 bits: a reader that refuses them still works.
                    other => warn!(sw = ?other.ok(), "card status not enabled"),
                }
                self.become_ready();
                Ok(())
            }
        }
    }

    fn become_ready(&mut self) {
        let info = self.device_info.clone().unwrap_or_default();
        self.ready = true;
        if self.task.ready_sessions > 0 {
            bump(&self.task.counters.reconnects, 1);
        }
        self.task.ready_sessions += 1;
        crate::telemetry::metrics::reader_connected(true);
        self.task.state.send_replace(LinkState::Connected {
            device_info: info.clone(),
        });
        self.task.emit(LinkEvent::Ready(info));
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_exponential() {
        let c = LinkConfig::default();
        let ms = |a| c.backoff(a).as_millis();
        assert_eq!(
            (ms(1), ms(2), ms(3), ms(6), ms(7), ms(100)),
            (100, 200, 400, 3200, 5000, 5000)
        );
        assert_eq!(c.backoff(0), Duration::from_millis(100));
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn event_debug_hides_payloads() {
        let ev = LinkEvent::Response {
            command: [0xDE, 0xD1],
            payload: Bytes::from_static(b"\x5A\x08\x47\x61\x73\x90\x01\x01\x00\x10\x90\x00"),
        };
        let s = format!("{ev:?}");
        assert!(s.contains("DED1") && s.contains("payload_len: 12"), "{s}");
        assert!(!s.contains("4761") && !s.contains("71, 97"), "{s}");
        let s = format!(
            "{:?}",
            LinkEvent::Unsolicited(Bytes::from_static(b"\xE0\x04"))
        );
        assert_eq!(s, "Unsolicited { payload_len: 2 }");
    }
}
