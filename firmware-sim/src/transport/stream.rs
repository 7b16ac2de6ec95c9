//! The device task over any byte stream (TCP, duplex, the pty's file): one [`SimReader`], its
//! timers and its control channel ([`DeviceHandle`]).

use std::io;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::reader::{Control, ControlError, Event, SimReader, Status};

/// A control command and where to send its result.
#[derive(Debug)]
pub struct ControlRequest {
    /// The command.
    pub cmd: Control,
    /// The result: the state after the command, or why it was refused.
    pub reply: oneshot::Sender<Result<Status, ControlError>>,
}

/// Sends control commands to a running device.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    tx: mpsc::Sender<ControlRequest>,
}

/// Why a control command did not reach the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The device task has ended.
    #[error("device stopped")]
    Stopped,
    /// The device refused the command.
    #[error(transparent)]
    Refused(#[from] ControlError),
}

impl DeviceHandle {
    /// A handle and the receiving end the device task polls.
    pub fn channel() -> (DeviceHandle, mpsc::Receiver<ControlRequest>) {
        let (tx, rx) = mpsc::channel(64);
        (DeviceHandle { tx }, rx)
    }

    /// Applies `cmd` on the device.
    ///
    /// # Errors
    /// [`HandleError`].
    pub async fn control(&self, cmd: Control) -> Result<Status, HandleError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ControlRequest { cmd, reply })
            .await
            .map_err(|_| HandleError::Stopped)?;
        Ok(rx.await.map_err(|_| HandleError::Stopped)??)
    }
}

fn log_events(reader: &mut SimReader, device: usize) {
    while let Some(e) = reader.poll_event() {
        debug!(device, event = ?e, "event");
        if let Event::Corrupt { reason } = e {
            warn!(device, %reason, "corrupt input");
        }
    }
}

fn apply(reader: &mut SimReader, req: ControlRequest) {
    let now = Instant::now();
    let r = reader.control(now, req.cmd).map(|()| reader.status());
    let _ = req.reply.send(r);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// How a stream session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The peer closed the stream (EOF).
    PeerClosed,
    /// The control channel closed: stop the device.
    ControlClosed,
}

/// Drives `reader` over `stream` until the peer closes it, the control channel closes, or an
/// I/O error occurs.
///
/// # Errors
/// Read/write errors of the stream.
pub async fn run_stream<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut SimReader,
    stream: &mut S,
    control: &mut mpsc::Receiver<ControlRequest>,
    device: usize,
) -> io::Result<SessionEnd> {
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(chunk) = reader.poll_transmit(Instant::now()) {
            stream.write_all(&chunk).await?;
            stream.flush().await?;
        }
        log_events(reader, device);
        tokio::select! {
            r = stream.read(&mut buf) => match r? {
                0 => return Ok(SessionEnd::PeerClosed),
                n => reader.handle_input(Instant::now(), buf.get(..n).unwrap_or_default()),
            },
            () = sleep_until(reader.poll_timeout()) => reader.handle_timeout(Instant::now()),
            c = control.recv() => match c {
                Some(req) => apply(reader, req),
                None => return Ok(SessionEnd::ControlClosed),
            },
        }
    }
}

/// Runs the reader with nobody connected: timers and control commands only; output is lost,
/// as bytes written to a closed socket would be. Returns when the control channel closes.
async fn run_unconnected(
    reader: &mut SimReader,
    control: &mut mpsc::Receiver<ControlRequest>,
    device: usize,
) {
    loop {
        while reader.poll_transmit(Instant::now()).is_some() {}
        log_events(reader, device);
        tokio::select! {
            () = sleep_until(reader.poll_timeout()) => reader.handle_timeout(Instant::now()),
            c = control.recv() => match c {
                Some(req) => apply(reader, req),
                None => return,
            },
        }
    }
}

/// Serves `reader` on `listener`, one host connection at a time; each new connection first
/// gets the power-on `E6` (\[S5\] expects it, §1.4). Returns when the control channel closes.
pub async fn run_tcp(
    mut reader: SimReader,
    listener: TcpListener,
    mut control: mpsc::Receiver<ControlRequest>,
    device: usize,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = run_unconnected(&mut reader, &mut control, device) => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(device, %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        info!(device, %peer, "host connected");
        let _ = stream.set_nodelay(true);
        reader.announce(Instant::now());
        match run_stream(&mut reader, &mut stream, &mut control, device).await {
            Ok(SessionEnd::ControlClosed) => return,
            Ok(SessionEnd::PeerClosed) => info!(device, "host disconnected"),
            Err(e) => info!(device, %e, "connection ended"),
        }
    }
}

/// Runs `reader` on one end of an in-process pipe; returns the host's end, a control handle
/// and the task (which ends when the host end is dropped or every handle is dropped).
pub fn spawn_duplex(mut reader: SimReader) -> (DuplexStream, DeviceHandle, JoinHandle<()>) {
    let (host, mut device_end) = tokio::io::duplex(64 * 1024);
    let (handle, mut rx) = DeviceHandle::channel();
    let task = tokio::spawn(async move {
        let _ = run_stream(&mut reader, &mut device_end, &mut rx, 0).await;
    });
    (host, handle, task)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use emvbridge_protocol::frame::{emit_message, Deframer, Inbound, Message, NAD_PED};
    use emvbridge_protocol::vipa::{Response, StatusWord};

    use super::*;
    use crate::reader::SimConfig;

    async fn next(host: &mut DuplexStream, d: &mut Deframer) -> Message {
        let mut buf = [0u8; 512];
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(Inbound::Message(m)) = d.poll() {
                    return m;
                }
                let n = host.read(&mut buf).await.unwrap();
                assert!(n > 0, "simulator closed the pipe");
                d.push(&buf[..n]);
            }
        })
        .await
        .expect("message in time")
    }

    #[tokio::test]
    async fn duplex_serves_commands_and_control() {
        let reader = SimReader::new(SimConfig::default(), Instant::now());
        let (mut host, handle, task) = spawn_duplex(reader);
        let mut d = Deframer::new();
        let e6 = next(&mut host, &mut d).await;
        assert!(e6.unsolicited && e6.payload[0] == 0xE6);
        let mut out = BytesMut::new();
        emit_message(NAD_PED, false, &[0xD0, 0x60, 0x01, 0x01], &mut out).unwrap();
        host.write_all(&out).await.unwrap();
        let r = next(&mut host, &mut d).await;
        assert_eq!(
            Response::parse(&r.payload).unwrap().sw(),
            StatusWord::SUCCESS
        );
        let status = handle
            .control(Control::Insert {
                profile: Some("amex".into()),
            })
            .await
            .unwrap();
        assert_eq!(status.card_present.as_deref(), Some("amex"));
        let ev = next(&mut host, &mut d).await;
        assert_eq!(
            &ev.payload[..],
            &[0xE0, 0x04, 0x48, 0x02, 0x03, 0x00, 0x90, 0x00]
        );
        assert!(matches!(
            handle
                .control(Control::Card {
                    profile: "nope".into()
                })
                .await,
            Err(HandleError::Refused(ControlError::UnknownProfile))
        ));
        drop(host);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("device task ends when the host end is dropped")
            .unwrap();
    }
}
