//! Thin tokio drivers around the sans-IO [`SimReader`](crate::reader::SimReader): they own the clock and the I/O and do
//! nothing but move bytes, fire timers and forward control commands.
//!
//! - [`run_pty`]: a pseudo-terminal the bridge opens like a USB-serial reader ([`pty`]);
//! - [`run_tcp`]: the reader as a TCP server, same frames, no length prefix (§1.4);
//! - [`spawn_duplex`]: an in-process `tokio::io::duplex` pipe for tests.
//!
//! Each device runs in one task; [`DeviceHandle`] sends it control commands.

pub mod pty;
mod stream;

pub use pty::{run_pty, Pty};
pub use stream::*;
