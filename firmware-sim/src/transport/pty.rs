//! The pseudo-terminal transport: the simulator holds the master; the bridge opens the slave
//! path (`/dev/pts/N`) with `serialport`, exactly as it opens a USB-CDC reader.
//!
//! - The slave is put in raw mode (`cfmakeraw`): no byte is translated, echoed or buffered by
//!   line, whatever the frame contains.
//! - The simulator keeps its own slave descriptor open for its whole life, so the master never
//!   sees EIO/hang-up when the bridge closes the port, and the bridge may close and reopen it
//!   at any time. (Bytes written while nobody has the port open wait in the slave's input
//!   queue, as on a real line with a buffering USB stack.)

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::stream::{run_stream, ControlRequest, SessionEnd};
use crate::reader::SimReader;

/// An open pty pair: the async master and the slave kept open.
#[derive(Debug)]
pub struct Pty {
    master: AsyncFd<File>,
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// Opens a pty pair in raw mode. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// OS errors from openpty, termios, fcntl or the reactor.
    pub fn open() -> io::Result<Pty> {
        let pair = openpty(None, None).map_err(io::Error::from)?;
        let mut t = tcgetattr(&pair.slave).map_err(io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
        let path = nix::unistd::ttyname(&pair.slave).map_err(io::Error::from)?;
        let fd = pair.master.as_raw_fd();
        let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        // SAFETY: the `File` owns the master descriptor for as long as the `AsyncFd` holds it,
        // and `File::as_raw_fd` always returns that same descriptor.
        let master =
            unsafe { AsyncFd::register(File::from(pair.master)) }.map_err(|e| e.into_parts().1)?;
        Ok(Pty {
            master,
            _slave: pair.slave,
            path,
        })
    }

    /// The slave path for the bridge, e.g. `/dev/pts/3`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves `reader` on `pty` until the control channel closes. A read of 0 bytes or an error
/// (the line dropped) is logged and the session resumes after a short pause: the bridge may
/// close and reopen the port at any time.
pub async fn run_pty(
    mut reader: SimReader,
    mut pty: Pty,
    mut control: mpsc::Receiver<ControlRequest>,
    device: usize,
) {
    loop {
        match run_stream(&mut reader, &mut pty, &mut control, device).await {
            Ok(SessionEnd::ControlClosed) => return,
            Ok(SessionEnd::PeerClosed) => info!(device, "pty: end of input"),
            Err(e) => warn!(device, %e, "pty: i/o error"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
