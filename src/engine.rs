//! Runs one [`Transaction`] against a live reader link and a gateway: the single `select!`
//! loop of the style guide. Reader events and gateway answers are inputs; commands, gateway
//! calls (spawned, never awaited in the loop) and prompts are outputs; the clock is read here
//! and passed in.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn, Instrument};

use crate::driver::{LinkEvent, LinkState, ReaderLink};
use crate::gateway::Gateway;
use crate::telemetry::metrics;
use emvbridge_core::txn::{
    AuthorizationResult, HostRequest, Outcome, Prompt, ReaderInput, ReversalResult, Transaction,
    TxnConfig, TxnError, TxnRequest,
};

/// How long the link waits for any one reader answer before it declares the reader lost.
/// Longer than every transaction timer, so the transaction's own timers (which abort cleanly)
/// fire first.
fn link_timeout(config: &TxnConfig) -> Duration {
    config.card_timeout.max(config.final_timeout) + Duration::from_secs(30)
}

/// Asks the link to drop and re-synchronise, and waits until it has left the connected
/// state (the request is queued behind earlier ones), so the next transaction sees it.
pub(crate) async fn resync(link: &ReaderLink) {
    let mut state = link.watch_state();
    link.reconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(*state.borrow_and_update(), LinkState::Connected { .. }) {
            if state.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
}

/// How long a transaction waits for a re-synchronising link before starting anyway.
const READY_WAIT: Duration = Duration::from_secs(10);

enum HostAnswer {
    Auth(AuthorizationResult),
    Reversal(ReversalResult),
}

/// Carries one payment to its outcome. Prompts are handed to `on_prompt` as they happen.
///
/// # Errors
/// [`TxnError`] when the request cannot even be sent to the reader (amount/date out of range).
pub async fn run_transaction(
    link: &ReaderLink,
    events: &mut mpsc::Receiver<LinkEvent>,
    gateway: Arc<dyn Gateway>,
    req: TxnRequest,
    config: TxnConfig,
    on_prompt: impl FnMut(&Prompt),
) -> Result<Outcome, TxnError> {
    let mut timing = TxnTiming::default();
    run_transaction_timed(link, events, gateway, req, config, on_prompt, &mut timing).await
}

/// [`run_transaction`] that the POS can cancel: `cancel` turning `true` reaches
/// [`Transaction::handle_cancel`] (an abort before approval; a reversal if the host may
/// already have approved). A dropped sender cancels nothing.
///
/// # Errors
/// As [`run_transaction`].
pub async fn run_transaction_cancellable(
    link: &ReaderLink,
    events: &mut mpsc::Receiver<LinkEvent>,
    gateway: Arc<dyn Gateway>,
    req: TxnRequest,
    config: TxnConfig,
    cancel: watch::Receiver<bool>,
    on_prompt: impl FnMut(&Prompt),
) -> Result<Outcome, TxnError> {
    let mut sw = Stopwatch::new();
    let span = crate::telemetry::txn_span(&req);
    run_loop(
        link,
        events,
        gateway,
        req,
        config,
        on_prompt,
        &mut sw,
        Some(cancel),
    )
    .instrument(span)
    .await
}

/// Resolves once when the POS asks to cancel (`true`) or its sender is gone (`false`);
/// then never again.
async fn cancel_requested(cancel: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = cancel.as_mut() else {
        return std::future::pending().await;
    };
    let asked = rx.wait_for(|c| *c).await.is_ok();
    *cancel = None;
    asked
}

/// Where the time of one transaction went, as measured by [`run_transaction_timed`]: the
/// lab's "bridge's own share" is [`TxnTiming::bridge_share`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnTiming {
    /// From the call to the outcome.
    pub total: Duration,
    /// Time with at least one reader command written and not yet answered (includes the
    /// simulated or real cardholder: inserting, typing the PIN).
    pub reader_wait: Duration,
    /// Time with at least one gateway call in flight.
    pub gateway_wait: Duration,
    /// Time with either of the above (their union: they may overlap).
    pub external_wait: Duration,
}

impl TxnTiming {
    /// End-to-end time minus the time spent waiting for the reader or the gateway.
    pub fn bridge_share(&self) -> Duration {
        self.total.saturating_sub(self.external_wait)
    }
}

/// Accumulates [`TxnTiming`] from state changes (commands outstanding, calls in flight).
struct Stopwatch {
    start: Instant,
    mark: Instant,
    reader_pending: u32,
    host_pending: u32,
    t: TxnTiming,
}

impl Stopwatch {
    fn new() -> Self {
        let now = Instant::now();
        Stopwatch {
            start: now,
            mark: now,
            reader_pending: 0,
            host_pending: 0,
            t: TxnTiming::default(),
        }
    }

    /// Charges the time since the last change to whoever was being waited for.
    fn tick(&mut self) {
        let now = Instant::now();
        let d = now.saturating_duration_since(self.mark);
        self.mark = now;
        if self.reader_pending > 0 {
            self.t.reader_wait += d;
        }
        if self.host_pending > 0 {
            self.t.gateway_wait += d;
        }
        if self.reader_pending > 0 || self.host_pending > 0 {
            self.t.external_wait += d;
        }
    }

    fn reader(&mut self, delta: i32) {
        self.tick();
        self.reader_pending = self.reader_pending.saturating_add_signed(delta);
    }

    /// The link is gone: nothing is outstanding on it any more.
    fn reader_lost(&mut self) {
        self.tick();
        self.reader_pending = 0;
    }

    fn host(&mut self, delta: i32) {
        self.tick();
        self.host_pending = self.host_pending.saturating_add_signed(delta);
    }

    fn finish(mut self) -> TxnTiming {
        self.tick();
        self.t.total = self.mark.saturating_duration_since(self.start);
        self.t
    }
}

/// [`run_transaction`], also measuring where the time went (reader wait: from a command
/// written to its answer; gateway wait: from a call started to its answer reaching the loop).
///
/// # Errors
/// As [`run_transaction`]; `timing` is filled in either way.
pub async fn run_transaction_timed(
    link: &ReaderLink,
    events: &mut mpsc::Receiver<LinkEvent>,
    gateway: Arc<dyn Gateway>,
    req: TxnRequest,
    config: TxnConfig,
    on_prompt: impl FnMut(&Prompt),
    timing: &mut TxnTiming,
) -> Result<Outcome, TxnError> {
    let mut sw = Stopwatch::new();
    let span = crate::telemetry::txn_span(&req);
    let r = run_loop(link, events, gateway, req, config, on_prompt, &mut sw, None)
        .instrument(span)
        .await;
    *timing = sw.finish();
    r
}

#[allow(clippy::too_many_arguments)]
async fn run_loop(
    link: &ReaderLink,
    events: &mut mpsc::Receiver<LinkEvent>,
    gateway: Arc<dyn Gateway>,
    req: TxnRequest,
    config: TxnConfig,
    mut on_prompt: impl FnMut(&Prompt),
    sw: &mut Stopwatch,
    mut cancel: Option<watch::Receiver<bool>>,
) -> Result<Outcome, TxnError> {
    let timeout = link_timeout(&config);
    // A link still re-synchronising (after a lost reader or the clean-up below) gets a moment
    // to come back before the transaction starts; if it does not, the transaction fails
    // cleanly on its first command.
    if !matches!(link.state(), LinkState::Connected { .. }) {
        let _ = link.wait_ready(READY_WAIT).await;
    }
    // Events from before this transaction (a stale answer) are not ours, except the last card
    // event: a card inserted before the sale began is in the reader now ([GAP] whether a
    // reader re-reports the current card state when armed again; the M400 log shows it does).
    let mut last_card_event = None;
    while let Ok(ev) = events.try_recv() {
        if let LinkEvent::Unsolicited(p) = ev {
            if is_card_event(&p) {
                last_card_event = Some(p);
            }
        }
    }
    let mut txn = Transaction::start(Instant::now().into_std(), req, config)?;
    if let Some(p) = last_card_event {
        txn.handle_reader(Instant::now().into_std(), ReaderInput::Unsolicited(p));
    }
    let (host_tx, mut host_rx) = mpsc::channel::<HostAnswer>(4);
    // Commands written whose answer has not come. VIPA has no retransmission: when an answer
    // is lost on the line, the transaction gives up on it (abort, reversal), but the link
    // would keep waiting; a transaction that ends with answers outstanding re-synchronises
    // the link (Reset Device) so the next one starts clean.
    let mut outstanding: u32 = 0;
    // Gateway calls in flight. One still running when the transaction ends (it gave up
    // waiting) is not dropped unobserved: its answer is journaled by the journaled gateway,
    // and a watcher logs it, so a late approval is seen and left to the resolver.
    let mut calls: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        while let Some(cmd) = txn.poll_command() {
            match link.send(cmd, timeout).await {
                Ok(()) => {
                    outstanding += 1;
                    sw.reader(1)
                }
                Err(e) => {
                    warn!(error = %e, "reader command not sent");
                    txn.handle_reader(Instant::now().into_std(), ReaderInput::Lost);
                }
            }
        }
        while let Some(request) = txn.poll_host() {
            let gw = gateway.clone();
            let tx = host_tx.clone();
            sw.host(1);
            let span = match &request {
                HostRequest::Authorize(_) => tracing::info_span!("gateway.authorize"),
                HostRequest::Reverse(_) => tracing::info_span!("gateway.reverse"),
            };
            calls.retain(|c| !c.is_finished());
            calls.push(tokio::spawn(metrics::inherit_lane(
                async move {
                    let sent = Instant::now();
                    let answer = match request {
                        HostRequest::Authorize(a) => {
                            let r = gw.authorize(&a).await;
                            metrics::authorization(sent.elapsed(), &r);
                            HostAnswer::Auth(r)
                        }
                        HostRequest::Reverse(r) => {
                            let r = gw.reverse(&r).await;
                            metrics::reversal(sent.elapsed(), &r);
                            HostAnswer::Reversal(r)
                        }
                    };
                    let _ = tx.send(answer).await;
                }
                .instrument(span),
            )));
        }
        while let Some(p) = txn.poll_event() {
            on_prompt(&p);
        }
        if let Some(outcome) = txn.poll_outcome() {
            info!(reference = %outcome.reference, status = ?outcome.status, "transaction finished");
            metrics::transaction_finished(&outcome);
            calls.retain(|c| !c.is_finished());
            if !calls.is_empty() {
                warn!(reference = %outcome.reference, calls = calls.len(),
                    "gateway call still in flight after the outcome: its answer goes to the journal");
                let reference = outcome.reference.clone();
                tokio::spawn(async move {
                    for c in calls {
                        if let Err(e) = c.await {
                            warn!(%reference, error = %e, "late gateway call failed");
                        }
                    }
                    info!(%reference, "late gateway answer arrived after the outcome; journaled for the resolver");
                });
            }
            if outstanding > 0 {
                warn!(
                    outstanding,
                    "reader answers still outstanding: re-synchronising the link"
                );
                resync(link).await;
            }
            return Ok(outcome);
        }
        // Drained commands may have produced more output (a failed send → Lost).
        if txn.poll_timeout().is_none() && txn.is_done() {
            continue;
        }
        let deadline = txn
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = events.recv() => {
                let now = Instant::now().into_std();
                match ev {
                    Some(LinkEvent::Response { payload, .. }) => {
                        outstanding = outstanding.saturating_sub(1);
                        sw.reader(-1);
                        txn.handle_reader(now, ReaderInput::Response(payload));
                    }
                    Some(LinkEvent::Unsolicited(payload)) => txn.handle_reader(now, ReaderInput::Unsolicited(payload)),
                    Some(LinkEvent::Lost(reason)) => {
                        outstanding = 0;
                        warn!(?reason, "reader lost during the transaction");
                        sw.reader_lost();
                        txn.handle_reader(now, ReaderInput::Lost);
                    }
                    Some(LinkEvent::Corrupt(_)) | Some(LinkEvent::Ready(_)) => {}
                    None => {
                        sw.reader_lost();
                        txn.handle_reader(now, ReaderInput::Lost);
                    }
                }
            }
            answer = host_rx.recv() => {
                let now = Instant::now().into_std();
                match answer {
                    Some(HostAnswer::Auth(r)) => {
                        sw.host(-1);
                        txn.handle_host(now, r);
                    }
                    Some(HostAnswer::Reversal(r)) => {
                        sw.host(-1);
                        txn.handle_reversal(now, r);
                    }
                    None => {}
                }
            }
            () = sleep_until(deadline) => txn.handle_timeout(Instant::now().into_std()),
            asked = cancel_requested(&mut cancel) => {
                if asked {
                    txn.handle_cancel(Instant::now().into_std());
                }
            }
        }
    }
}

/// Whether an unsolicited payload is a card event `E0{48 …}`.
/// Unsolicited messages come with or without a trailing SW (the logged ones carry `90 00`).
fn is_card_event(payload: &[u8]) -> bool {
    use emvbridge_protocol::tlv;
    use emvbridge_protocol::vipa::{Response, Template};
    let with_sw = Response::parse(payload).ok().and_then(|r| r.template());
    let bare = || {
        tlv::parse(payload)
            .next()
            .and_then(Result::ok)
            .map(Template::new)
    };
    with_sw
        .or_else(bare)
        .is_some_and(|t| t.card_event().is_some())
}

/// Today's date `YYMMDD` and time `hhmmss` in UTC, for 9A / 9F21 (the reader's own clock
/// and time zone are not assumed). A clock before 1970 reads as the Unix epoch.
pub fn utc_date_time(now: std::time::SystemTime) -> (u32, u32) {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let t = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
    let yy = t.year().rem_euclid(100).unsigned_abs();
    let date = yy * 10_000 + u32::from(u8::from(t.month())) * 100 + u32::from(t.day());
    let time = u32::from(t.hour()) * 10_000 + u32::from(t.minute()) * 100 + u32::from(t.second());
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwatch_charges_the_union_of_waits() {
        let mut sw = Stopwatch::new();
        std::thread::sleep(Duration::from_millis(5)); // bridge
        sw.reader(1);
        std::thread::sleep(Duration::from_millis(10)); // reader only
        sw.host(1);
        std::thread::sleep(Duration::from_millis(10)); // both
        sw.reader(-1);
        std::thread::sleep(Duration::from_millis(10)); // host only
        sw.host(-1);
        sw.reader(-1); // spurious: saturates at 0
        std::thread::sleep(Duration::from_millis(5)); // bridge
        let t = sw.finish();
        assert!(t.reader_wait >= Duration::from_millis(20), "{t:?}");
        assert!(t.gateway_wait >= Duration::from_millis(20), "{t:?}");
        assert!(t.external_wait >= Duration::from_millis(30), "{t:?}");
        assert!(t.external_wait < t.reader_wait + t.gateway_wait, "{t:?}");
        assert!(t.bridge_share() >= Duration::from_millis(10), "{t:?}");
        assert_eq!(t.bridge_share() + t.external_wait, t.total);
    }

    #[test]
    fn utc_date_time_is_civil() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_615_000_644); // 2021-03-06 03:17:24
        assert_eq!(utc_date_time(t), (210306, 31724));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29 00:00:00
        assert_eq!(utc_date_time(t), (229, 0));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_305_599); // 2026-11-21 23:59:59
        assert_eq!(utc_date_time(t), (261121, 235959));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(946_684_800); // 2000-01-01 00:00:00
        assert_eq!(utc_date_time(t), (101, 0));
        let t = std::time::UNIX_EPOCH - Duration::from_secs(1); // before the epoch
        assert_eq!(utc_date_time(t), (700101, 0));
    }
}
