//! The tokio edge: the only place in the bridge with I/O and a clock.
//!
//! - [`transport`]: [`DeviceAddr`] (serial path or `tcp://HOST:PORT`), [`LineSettings`], and the
//!   [`Connector`] seam that opens the byte stream.
//! - [`link`]: [`ReaderLink`], the task that owns the transport, frames with the protocol
//!   crate's codec, keeps one command in flight (plus Abort), routes unsolicited messages,
//!   detects a vanished reader and reconnects/re-synchronises.
//! - [`exchange`]: the sans-IO bookkeeping of commands in flight, used by the link.
//! - [`device`]: [`Reader`], typed out-of-transaction commands with timeouts.
//! - [`cli`]: `emvbridge device …`.
//!
//! Imports go one way: `cli` and `device` use `link`; `link` uses `exchange` and `transport`.
//! What a Reset Device answer says is read by the protocol crate
//! ([`emvbridge_protocol::vipa::parse_reset_response`]), for the link's start-up and for
//! [`Reader::reset`] alike.

pub mod cli;
pub mod device;
pub mod exchange;
pub mod link;
pub mod tls;
pub mod transport;

pub use device::{Reader, ReaderError};
pub use link::{
    LinkConfig, LinkError, LinkEvent, LinkState, LinkStats, LostReason, MessageTap, ReaderLink,
    Tap, TapDir,
};
pub use transport::{
    AddrConnector, AddrError, BoxedIo, Connector, DeviceAddr, FlowControl, FnConnector,
    LineSettings, Parity,
};
