//! emvbridge: the bridge between a point-of-sale application and a Verifone VIPA card reader —
//! what runs next to a till.
//!
//! The crates of the workspace, and where this one stands:
//! - `emvbridge_protocol`: the wire (BER-TLV, EMV data, VIPA frames), no I/O;
//! - `emvbridge_core`: the payment logic (transaction state machine, gateway dialects, reversal
//!   policy, money, receipts), no I/O;
//! - this crate: the edges and the service — the reader link over serial or TCP ([`driver`]),
//!   the transaction [`engine`] that drives the core against them, the HTTP [`gateway`] client,
//!   the durable [`journal`], the local POS [`api`], configuration, webhooks, go-live tools;
//! - with the default `sim` feature only: the simulated reader (`emvbridge_sim`), the sandbox
//!   gateway (`emvbridge_sandbox`) and what is built on them (`demo`, `lab`, `soak`, `crypto`).
//!   A till build (`--no-default-features`) links neither.

pub mod api;
pub mod config;
#[cfg(feature = "sim")]
pub mod cryptogram;
pub mod decode;
#[cfg(feature = "sim")]
pub mod demo;
pub mod driver;
pub mod embedded;
pub mod engine;
pub mod gateway;
pub mod journal;
pub mod keys;
#[cfg(feature = "sim")]
pub mod lab;
#[cfg(feature = "sim")]
pub mod leakscan;
#[cfg(feature = "sim")]
pub mod pair;
pub mod preflight;
pub mod record;
pub mod sale;
#[cfg(feature = "sim")]
pub mod soak;
pub mod telemetry;
pub mod terminal;
pub mod webhooks;
