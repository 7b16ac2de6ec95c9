//! The sandbox payment gateway, as specified in docs/gateways.md §4: one HTTP server on
//! loopback that speaks the Number, PaymentsAI and Pay1st dialects plus the \[EXT\] EMV
//! extensions, keeps a ledger, sends signed webhooks and injects faults. Section numbers (§)
//! in this crate's documentation refer to docs/gateways.md.
//!
//! Layout, each module using only those listed before it:
//! - plain data and rules: [`exchange`] (request/reply types), [`clock`], [`config`],
//!   [`money`], [`emv`], [`ledger`], [`faults`], [`outcome`], [`webhooks`];
//! - state: [`dialect_state`] (what each dialect remembers), `store` (the part of it that
//!   grows with every transaction, in the ledger's SQLite file), [`state`] ([`SimState`], all of
//!   it, with the fault and webhook machinery);
//! - the dialects: [`number`], [`paymentsai`], [`pay1st`], and [`dispatch`] above them;
//! - the I/O shell: `shared` (lock, webhook delivery), `control` (the `/_sim` control
//!   plane), [`server`] (listener, accept loop, HTTP ↔ [`SimRequest`]/[`Reply`]), [`cli`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let gw = emvbridge_sandbox::spawn(emvbridge_sandbox::SandboxConfig::default()).await?;
//! println!("{}", gw.url()); // http://127.0.0.1:PORT
//! gw.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod clock;
pub mod config;
mod control;
pub mod dialect_state;
pub mod dispatch;
pub mod emv;
pub mod exchange;
pub mod faults;
pub mod ledger;
pub mod money;
pub mod number;
pub mod outcome;
pub mod pay1st;
pub mod paymentsai;
pub mod server;
mod shared;
pub mod state;
mod store;
pub mod webhooks;

pub use config::SandboxConfig;
pub use exchange::{Reply, SimRequest, SimResponse};
pub use server::{spawn, spawn_on, SandboxHandle, SpawnError};
pub use state::SimState;
