//! emvbridge-core: the payment logic of the bridge, without I/O.
//!
//! Everything here is a deterministic function of its inputs: the EMV transaction state machine
//! ([`txn`]) takes reader messages, host answers and `now` and returns what to send next; the
//! gateway dialects ([`gateway`]) build HTTP requests and classify replies; the reversal policy
//! ([`gateway::reversal`]) decides how a transaction that must not stand is taken back. No
//! socket, file, clock or runtime: the `emvbridge` crate owns those (serial/TCP link, HTTP
//! client, journal), and the simulator and sandbox are separate crates. CI checks that this
//! crate's normal dependencies hold no tokio, reqwest, rusqlite, axum or hyper.
//!
//! The wire (BER-TLV, EMV data, VIPA frames) is the `emvbridge_protocol` crate's.

pub mod gateway;
pub mod money;
pub mod prompt;
pub mod receipt;
pub mod txn;
