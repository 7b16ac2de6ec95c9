//! The local POS API (`emvbridge serve`): HTTP/JSON on loopback, in the style of local
//! payment middleware. The OpenAPI document (`docs/openapi.json`, also `GET /v1/openapi`) is
//! the reference; this is the summary.
//!
//! - **Card transactions** (`POST /v1/sales`, `/v1/preauths`, card-present `/v1/refunds`)
//!   run on the reader, one at a time: a second one while one runs gets `409 reader_busy`.
//!   The call returns when the transaction ends (200, the transaction record), or after
//!   `--sale-timeout` with `202` + `Location` to poll; with `Prefer: respond-async` it returns
//!   `202` at once. The transaction runs in its own task, so a POS that hangs up does not
//!   leave money in an unknown state.
//! - **Follow-ups** (capture, void, reverse, referenced refund) go to the gateway only.
//! - **Request ids**: every `POST` carries `X-Request-Id` or `Idempotency-Key` (the same
//!   thing under two names). The first 2xx answer is stored; the same id again returns it
//!   (`Idempotent-Replayed: true`) instead of charging again, waits for it while the first
//!   copy still runs, and is refused (`422 request_id_reused`) with another method, path or
//!   body (compared as canonical JSON: key order and spacing do not matter). Non-2xx answers
//!   are not stored: retry with the same id.
//! - **Bodies** are JSON objects sent as `Content-Type: application/json` (else `415`);
//!   an array or scalar body is `400 invalid_body`.
//! - **Events**: `GET /v1/events` is a Server-Sent Events stream of `transaction.started`,
//!   `prompt` and `transaction.finished`, each with the transaction id.
//! - **Relay** (`--journal`/`--config`, the same rule as `sale`): authorizations go through
//!   the journal ([`crate::journal::gateway::JournaledGateway`]), every outcome is recorded,
//!   store-and-forward is decided per sale from the merchant's limits, and the resolver and
//!   forwarder run in the background while the server runs. The journal is then also the
//!   store of request ids and transaction records ([`crate::journal::api_store`]): a restart
//!   keeps both, and a transaction interrupted by a crash reads `unresolved` until the
//!   resolver settles it. `GET /v1/health` reports the relay.
//! - **Auth**: `Authorization: Bearer <token>` on everything but `/v1/health`, `/metrics`
//!   and `/v1/openapi` ([`auth`]). Bodies are at most [`MAX_BODY`] bytes; errors are
//!   `{"error":{"code":"…","message":"…"}}`. Card data never reaches a log or an error.
//!
//! This module is the HTTP edge. A card transaction is run by [`crate::engine`] on the
//! reader link ([`crate::driver`]); authorizations, outcomes and (with journaling) the
//! records go through [`crate::journal`]. The payment logic itself — the transaction state
//! machine, money, prompts, the reversal policy — is in `emvbridge_core`, which knows nothing
//! of HTTP.
//!
//! Inside, the handlers depend on the bodies, the request-id layer and the shared state, never
//! the reverse: `error` (the error answer); `store` (records and stored answers) and `auth`
//! (the token); `state` (what the handlers share); `bodies` (request bodies, their validation,
//! the record as an answer); `idempotency` (request ids); the handlers in `transactions`
//! (card transactions and records), `follow_ups` (gateway-only operations), `device`,
//! `events` (SSE) and `health`; `router` (routes and layers); `server` (start and shutdown);
//! `cli` (`emvbridge serve`).

pub mod auth;
pub mod store;

mod bodies;
mod cli;
mod device;
mod error;
mod events;
mod follow_ups;
mod health;
mod idempotency;
mod reconciliation;
mod router;
mod server;
mod simulator;
mod state;
mod transactions;

#[doc(hidden)]
pub use bodies::validate_body;
pub use bodies::{MAX_BODY, MAX_DISPLAY_TEXT};
pub use cli::{run, ServeArgs};
pub use error::ApiError;
pub use idempotency::{IDEMPOTENCY_KEY, MAX_REQUEST_ID, REQUEST_ID};
pub use router::{is_loopback, OPENAPI, ROUTES};
pub use server::{
    start, start_with_relay, ApiOptions, ApiServer, REQUEST_ID_RETENTION_SECS, SHUTDOWN_GRACE,
};
pub use store::{record_json, ApiStatus, MemoryStore, Operation, Store, StoredResponse, TxnRecord};
