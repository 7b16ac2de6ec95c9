//! The [`Gateway`] trait: what the transaction engine, the journal and the API need from a
//! payment host, whichever dialect speaks to it.

use std::future::Future;
use std::pin::Pin;

use emvbridge_core::gateway::{
    CaptureRequest, Dialect, OpResult, RefundRequest, StatusResult, VoidRequest,
};
use emvbridge_core::txn::host::{
    AuthorizationRequest, AuthorizationResult, Reference, ReversalRequest, ReversalResult,
};

/// A boxed, sendable future: the object-safe form of `async fn` in [`Gateway`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The operations the transaction engine needs from a payment host. Object safe: the engine
/// holds an `Arc<dyn Gateway>`. Every method resolves to an outcome value, never an error:
/// a decline, a refusal or an unknown outcome is a result the engine must act on.
pub trait Gateway: Send + Sync {
    /// Which dialect this is.
    fn dialect(&self) -> Dialect;

    /// Online authorization (sale, pre-authorization or refund) from the reader's online data.
    fn authorize<'a>(&'a self, req: &'a AuthorizationRequest)
        -> BoxFuture<'a, AuthorizationResult>;

    /// Captures a pre-authorization (turns it into a sale).
    fn capture<'a>(&'a self, req: &'a CaptureRequest) -> BoxFuture<'a, OpResult>;

    /// Voids (cancels before settlement) a transaction by its gateway id.
    fn void<'a>(&'a self, req: &'a VoidRequest) -> BoxFuture<'a, OpResult>;

    /// Refunds (part of) a settled transaction by its gateway id.
    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, OpResult>;

    /// Reverses an authorization that must not stand (card declined after approval, lost
    /// response…). Looks the transaction up first when the gateway id is not known.
    fn reverse<'a>(&'a self, req: &'a ReversalRequest) -> BoxFuture<'a, ReversalResult>;

    /// Looks a transaction up by the bridge's own reference (Number's `ClientRefID`,
    /// PaymentsAI's `requestId`) or, where the gateway indexes only its own id (Pay1st's
    /// `reference`), by `gateway_id` when a reply brought one. Without the key a dialect
    /// needs, the answer is `Unknown`, never `NotFound`.
    fn status<'a>(
        &'a self,
        reference: &'a Reference,
        gateway_id: Option<&'a str>,
    ) -> BoxFuture<'a, StatusResult>;
}
