//! emvbridge: the bridge between a point-of-sale application and a Verifone VIPA card reader.
//!
//! The protocol (BER-TLV, EMV, VIPA frames) lives in the `emvbridge_protocol` crate and has no
//! I/O; this crate holds the transaction engine, the gateway adapters, the sandbox gateway and
//! the edges (serial/TCP, HTTP, disk).

pub mod api;
pub mod config;
pub mod cryptogram;
pub mod decode;
pub mod demo;
pub mod driver;
pub mod engine;
pub mod gateway;
pub mod journal;
pub mod keys;
pub mod lab;
pub mod leakscan;
pub mod money;
pub mod pair;
pub mod preflight;
pub mod receipt;
pub mod record;
pub mod sale;
pub mod sandbox;
pub mod soak;
pub mod terminal;
pub mod txn;
pub mod webhooks;
