//! The service manager's side: the signals that ask for a graceful stop, and `sd_notify`
//! (readiness, stopping, watchdog) when systemd started the process with `Type=notify`.
//!
//! systemd, Docker and Kubernetes stop a service with SIGTERM; a terminal sends SIGINT. Both
//! mean the same here: stop taking work, finish or cancel what runs, settle, exit 0.

use std::time::Duration;

/// Which signal asked for the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (service managers).
    Terminate,
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        })
    }
}

/// The signal handlers, installed at once so a signal arriving before the first wait is not
/// lost (and does not kill the process with the default action).
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers for SIGINT and SIGTERM (Ctrl-C elsewhere).
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => StopSignal::Terminate,
                _ = self.int.recv() => StopSignal::Interrupt,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            StopSignal::Interrupt
        }
    }
}

/// Tells systemd the service is ready (`READY=1`); nothing without `NOTIFY_SOCKET`.
pub fn notify_ready() {
    notify("READY=1");
}

/// Tells systemd the service is stopping (`STOPPING=1`).
pub fn notify_stopping() {
    notify("STOPPING=1");
}

#[cfg(unix)]
fn notify(state: &str) {
    let s = match state {
        "READY=1" => sd_notify::NotifyState::Ready,
        "STOPPING=1" => sd_notify::NotifyState::Stopping,
        _ => sd_notify::NotifyState::Watchdog,
    };
    if let Err(e) = sd_notify::notify(false, &[s]) {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

#[cfg(not(unix))]
fn notify(_state: &str) {}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut usec = 0;
        sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
    }
    #[cfg(not(unix))]
    None
}

/// Pings the watchdog at half its interval while `alive()` says the service works (the
/// reader link task and the API answer); a service that stops pinging is restarted by
/// systemd. Returns at once when no watchdog is configured.
pub async fn run_watchdog(alive: impl Fn() -> bool) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(every / 2);
    loop {
        tick.tick().await;
        if alive() {
            notify("WATCHDOG=1");
        } else {
            tracing::warn!("watchdog not fed: the service is not alive");
        }
    }
}
