//! Runs one [`Transaction`] against a live reader link and a gateway: the single `select!`
//! loop of the style guide. Reader events and gateway answers are inputs; commands, gateway
//! calls (spawned, never awaited in the loop) and prompts are outputs; the clock is read here
//! and passed in.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use crate::driver::{LinkEvent, ReaderLink};
use crate::gateway::Gateway;
use crate::txn::{
    AuthorizationResult, HostRequest, Outcome, Prompt, ReaderInput, ReversalResult, Transaction,
    TxnConfig, TxnError, TxnRequest,
};

/// How long the link waits for any one reader answer before it declares the reader lost.
/// Longer than every transaction timer, so the transaction's own timers (which abort cleanly)
/// fire first.
fn link_timeout(config: &TxnConfig) -> Duration {
    config.card_timeout.max(config.final_timeout) + Duration::from_secs(30)
}

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
    let (_never, cancel) = watch::channel(false);
    run_transaction_cancellable(link, events, gateway, req, config, cancel, on_prompt).await
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
    mut on_prompt: impl FnMut(&Prompt),
) -> Result<Outcome, TxnError> {
    let mut cancel = Some(cancel);
    let timeout = link_timeout(&config);
    // Events from before this transaction (a late card event, a stale answer) are not ours.
    while events.try_recv().is_ok() {}
    let mut txn = Transaction::start(Instant::now().into_std(), req, config)?;
    let (host_tx, mut host_rx) = mpsc::channel::<HostAnswer>(4);
    loop {
        while let Some(cmd) = txn.poll_command() {
            if let Err(e) = link.send(cmd, timeout).await {
                warn!(error = %e, "reader command not sent");
                txn.handle_reader(Instant::now().into_std(), ReaderInput::Lost);
            }
        }
        while let Some(request) = txn.poll_host() {
            let gw = gateway.clone();
            let tx = host_tx.clone();
            tokio::spawn(async move {
                let answer = match request {
                    HostRequest::Authorize(a) => HostAnswer::Auth(gw.authorize(&a).await),
                    HostRequest::Reverse(r) => HostAnswer::Reversal(gw.reverse(&r).await),
                };
                let _ = tx.send(answer).await;
            });
        }
        while let Some(p) = txn.poll_event() {
            on_prompt(&p);
        }
        if let Some(outcome) = txn.poll_outcome() {
            info!(reference = %outcome.reference, status = ?outcome.status, "transaction finished");
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
                    Some(LinkEvent::Response { payload, .. }) => txn.handle_reader(now, ReaderInput::Response(payload)),
                    Some(LinkEvent::Unsolicited(payload)) => txn.handle_reader(now, ReaderInput::Unsolicited(payload)),
                    Some(LinkEvent::Lost(reason)) => {
                        warn!(?reason, "reader lost during the transaction");
                        txn.handle_reader(now, ReaderInput::Lost);
                    }
                    Some(LinkEvent::Corrupt(_)) | Some(LinkEvent::Ready(_)) => {}
                    None => txn.handle_reader(now, ReaderInput::Lost),
                }
            }
            answer = host_rx.recv() => {
                let now = Instant::now().into_std();
                match answer {
                    Some(HostAnswer::Auth(r)) => txn.handle_host(now, r),
                    Some(HostAnswer::Reversal(r)) => txn.handle_reversal(now, r),
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

/// Today's date `YYMMDD` and time `hhmmss` in UTC, for 9A / 9F21 (the reader's own clock
/// and time zone are not assumed).
pub fn utc_date_time(now: std::time::SystemTime) -> (u32, u32) {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = ((y % 100) * 10_000 + m * 100 + d) as u32;
    let time = ((rem / 3600) * 10_000 + (rem % 3600 / 60) * 100 + rem % 60) as u32;
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_date_time_is_civil() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_615_000_644); // 2021-03-06 03:17:24
        assert_eq!(utc_date_time(t), (210306, 31724));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29 00:00:00
        assert_eq!(utc_date_time(t), (229, 0));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_305_599); // 2026-11-21 23:59:59
        assert_eq!(utc_date_time(t), (261121, 235959));
    }
}
