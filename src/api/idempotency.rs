//! Request ids on `POST`: every one carries `X-Request-Id` or `Idempotency-Key` (the name
//! Stripe and the IETF `Idempotency-Key` draft use; both mean the same, and a request with
//! both must give the same value). The first 2xx answer is stored; the same id again replays
//! it (`Idempotent-Replayed: true`), waits for it while the first copy still runs, and is
//! refused (`422 request_id_reused`) with another method, path or body. Bodies are compared
//! as parsed JSON in canonical form, so a retry whose serializer orders keys differently or
//! spaces them otherwise is the same request. Non-2xx answers are not stored, so a retry with
//! the same id runs again.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::bodies::MAX_BODY;
use super::error::ApiError;
use super::state::{lock, AppState};
use super::store::StoredResponse;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";
/// The same, under the name of the IETF draft and Stripe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest request id.
pub const MAX_REQUEST_ID: usize = 128;

/// The request id and fingerprint of the `POST` being served (set by [`middleware`]), so a
/// card transaction can store a provisional answer (202 + `Location`) when it starts: after
/// a crash, the same request id then leads to the transaction instead of charging again.
#[derive(Clone)]
pub(super) struct Idem {
    pub(super) id: String,
    pub(super) fingerprint: [u8; 32],
}

/// What tells two requests apart: method, path and body. A body that parses as JSON is
/// hashed in canonical form (object keys sorted — `serde_json` maps are ordered without its
/// `preserve_order` feature — and no insignificant whitespace); any other body as its bytes.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            h.update([b'j']);
            h.update(v.to_string().as_bytes());
        }
        Err(_) => {
            h.update([b'r']);
            h.update(body);
        }
    }
    h.finalize().into()
}

/// The request id of `headers`: `X-Request-Id` or `Idempotency-Key` (equal if both are
/// given), 1 to [`MAX_REQUEST_ID`] printable ASCII characters.
fn request_id(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let valid = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID
                    && v.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request_id",
                    "X-Request-Id and Idempotency-Key must be 1-128 printable ASCII characters",
                )
            })
    };
    let rid = headers.get(REQUEST_ID).map(valid).transpose()?;
    let key = headers.get(IDEMPOTENCY_KEY).map(valid).transpose()?;
    match (rid, key) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            "invalid_request_id",
            "X-Request-Id and Idempotency-Key differ; send one, or the same value in both",
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(ApiError::bad_request(
            "missing_request_id",
            "every POST needs an X-Request-Id or Idempotency-Key header",
        )),
    }
}

/// A stored answer, sent again.
fn replay(r: &StoredResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Body::from(r.body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(l) = r
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        h.insert(header::LOCATION, l);
    }
    resp
}

/// Request ids on `POST`: replay a stored answer, wait for a copy in flight, or run the
/// request (in its own task, so a client that hangs up still gets its answer stored).
pub(super) async fn middleware(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let id = match request_id(req.headers()) {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!(code = e.code, "POST refused: request id");
            return e.into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let fp = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let done_tx = loop {
        let reused = || {
            ApiError::unprocessable(
                "request_id_reused",
                "this request id (X-Request-Id / Idempotency-Key) was used for another request",
            )
            .into_response()
        };
        let wait = {
            let mut inflight = lock(&s.inflight);
            match inflight.get(&id) {
                Some((f, _)) if *f != fp => return reused(),
                Some((_, rx)) => Some(rx.clone()),
                None => {
                    // Checked under the lock: a copy in flight may have stored a
                    // provisional answer, which is for after a restart, not for its twin.
                    if let Some(stored) = s.store.response(&id) {
                        if stored.fingerprint != fp {
                            return reused();
                        }
                        return replay(&stored);
                    }
                    let (tx, rx) = watch::channel(());
                    inflight.insert(id.clone(), (fp, rx));
                    break tx;
                }
            }
        };
        if let Some(mut rx) = wait {
            // The first copy is running: its answer is ours (or, if it is not stored, we run).
            if tokio::time::timeout(s.sale_timeout, rx.changed())
                .await
                .is_err()
            {
                return ApiError::conflict(
                    "request_in_progress",
                    "a request with this request id is still running",
                )
                .into_response();
            }
        }
    };
    let mut parts = parts;
    parts.extensions.insert(Idem {
        id: id.clone(),
        fingerprint: fp,
    });
    let req = Request::from_parts(parts, Body::from(bytes));
    let state = s.clone();
    let work = tokio::spawn(async move {
        let resp = next.run(req).await;
        let (mut parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        if parts.status.is_success() {
            let location = parts
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            state.store.save_response(
                &id,
                &StoredResponse {
                    fingerprint: fp,
                    status: parts.status.as_u16(),
                    location,
                    body: String::from_utf8_lossy(&body).into_owned(),
                },
            );
        }
        lock(&state.inflight).remove(&id);
        let _ = done_tx.send(());
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(body))
    });
    match work.await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "request handler failed",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = fingerprint(&Method::POST, "/v1/sales", b"{}");
        assert_eq!(a, fingerprint(&Method::POST, "/v1/sales", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/preauths", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/sales", b"{\"a\":1}"));
        // The same JSON, keys in another order and other spacing: the same request.
        assert_eq!(
            fingerprint(
                &Method::POST,
                "/v1/sales",
                br#"{"amount":100,"currency":"USD"}"#
            ),
            fingerprint(
                &Method::POST,
                "/v1/sales",
                b"{ \"currency\": \"USD\",\n  \"amount\": 100 }"
            )
        );
        assert_ne!(
            fingerprint(
                &Method::POST,
                "/v1/sales",
                br#"{"amount":100,"currency":"USD"}"#
            ),
            fingerprint(
                &Method::POST,
                "/v1/sales",
                br#"{"amount":101,"currency":"USD"}"#
            )
        );
        // A body that is not JSON is compared as bytes, never equal to a JSON one.
        assert_ne!(
            fingerprint(&Method::POST, "/v1/sales", b"{"),
            fingerprint(&Method::POST, "/v1/sales", b"{ ")
        );
    }

    #[test]
    fn either_header_names_the_request() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(request_id(&h).unwrap_err().code, "missing_request_id");
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        assert_eq!(request_id(&h).unwrap(), "k-1");
        h.insert(REQUEST_ID, HeaderValue::from_static("k-1"));
        assert_eq!(request_id(&h).unwrap(), "k-1");
        h.insert(REQUEST_ID, HeaderValue::from_static("k-2"));
        assert_eq!(request_id(&h).unwrap_err().code, "invalid_request_id");
        h.remove(IDEMPOTENCY_KEY);
        assert_eq!(request_id(&h).unwrap(), "k-2");
        h.insert(REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(request_id(&h).unwrap_err().code, "invalid_request_id");
    }
}
