//! `emvbridge-sim`: a simulated Verifone VIPA card reader.
//!
//! The core is sans-IO (bytes in, bytes out, `now` passed in); transports (pty, TCP, in-process)
//! live in the binary. Built on `emvbridge_protocol`: there is one parser in the project.

pub mod card;
pub mod crypto;
pub mod faults;
pub mod issuer;
pub mod kernel;
pub mod reader;
pub mod replay;
pub mod scenario;
pub mod sred;
#[cfg(feature = "transport")]
pub mod transport;
