//! Routing by dialect prefix: [`handle`] hands a [`SimRequest`] to the Number, PaymentsAI or
//! Pay1st handler; [`too_large`] is each dialect's answer to an oversized body. The one module
//! that knows all three dialects, above them and above the state.

use crate::exchange::{Reply, SimRequest, SimResponse};
use crate::state::SimState;
use crate::{number, pay1st, paymentsai};

/// The path prefixes the dialects are served under (`/number/…`, `/pai/…`, `/pay1st/…`).
pub const PREFIXES: [&str; 3] = ["number", "pai", "pay1st"];

/// Dispatches a dialect request (`prefix` is one of [`PREFIXES`]; anything else is a 404).
pub fn handle(state: &mut SimState, prefix: &str, req: &SimRequest) -> Reply {
    match prefix {
        "number" => number::handle(state, req),
        "pai" => paymentsai::handle(state, req),
        "pay1st" => pay1st::handle(state, req),
        _ => Reply::Respond(SimResponse::text(404, "not found")),
    }
}

/// The answer to a body over `max_body_bytes`, in the dialect's error shape.
pub fn too_large(prefix: &str) -> SimResponse {
    match prefix {
        "pai" => paymentsai::error(413, "Payload too large", None),
        "pay1st" => pay1st::error(413, "PAYLOAD_TOO_LARGE", "payload too large"),
        _ => SimResponse::text(413, "Request Entity Too Large"),
    }
}
