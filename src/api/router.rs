//! The routes, and the layers in front of them: the `Host` check (DNS rebinding) and the body
//! read timeout on everything; the bearer token on everything but `/v1/health`, `/metrics`
//! and `/v1/openapi`, then request ids on every `POST`, then `415` for a body that is not
//! declared JSON; the body limit, and JSON errors for unknown routes and methods.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use super::bodies::MAX_BODY;
use super::error::ApiError;
use super::state::AppState;
use super::{
    device, events, follow_ups, health, idempotency, reconciliation, simulator, transactions,
};

/// The OpenAPI document, served by `GET /v1/openapi` and kept in the repository.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Every route: method and path as in the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/sales"),
    ("post", "/v1/preauths"),
    ("post", "/v1/preauths/{id}/capture"),
    ("post", "/v1/refunds"),
    ("post", "/v1/transactions/{id}/void"),
    ("post", "/v1/transactions/{id}/reverse"),
    ("get", "/v1/transactions"),
    ("get", "/v1/transactions/{id}"),
    ("post", "/v1/transactions/{id}/cancel"),
    ("get", "/v1/device"),
    ("post", "/v1/device/display"),
    ("post", "/v1/device/reset"),
    ("get", "/v1/events"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi"),
    ("get", "/metrics"),
    ("get", "/v1/reconciliation"),
    ("get", "/v1/simulator"),
    ("put", "/v1/simulator/card"),
    ("put", "/v1/simulator/auto"),
    ("post", "/v1/simulator/{action}"),
];

/// The whole API on `state`, answering to `listen` (the `Host` header must name it).
pub(super) fn router(state: AppState, listen: SocketAddr, body_timeout: Duration) -> Router {
    let protected = Router::new()
        .route("/v1/sales", post(transactions::sale))
        .route("/v1/preauths", post(transactions::preauth))
        .route("/v1/preauths/{id}/capture", post(follow_ups::capture))
        .route("/v1/refunds", post(transactions::refund))
        .route("/v1/transactions/{id}/void", post(follow_ups::void))
        .route("/v1/transactions/{id}/reverse", post(follow_ups::reverse))
        .route("/v1/transactions", get(transactions::list))
        .route("/v1/transactions/{id}", get(transactions::transaction))
        .route("/v1/transactions/{id}/cancel", post(transactions::cancel))
        .route("/v1/device", get(device::device))
        .route("/v1/device/display", post(device::display))
        .route("/v1/device/reset", post(device::reset))
        .route("/v1/events", get(events::events))
        .route("/v1/reconciliation", get(reconciliation::reconciliation))
        .route("/v1/simulator", get(simulator::status))
        .route("/v1/simulator/card", put(simulator::card))
        .route("/v1/simulator/auto", put(simulator::auto))
        .route("/v1/simulator/{action}", post(simulator::action))
        .layer(middleware::from_fn(require_json))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/v1/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/v1/openapi", get(openapi))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            body_timeout,
            read_body_in_time,
        ))
        .layer(middleware::from_fn_with_state(listen, check_host))
        .layer(middleware::from_fn(count))
        .with_state(state)
}

/// Counts every answer by route template, method and status (`emvbridge_api_requests_total`),
/// outermost so the refusals of the layers inside (421, 401, 408, 415) are counted too.
async fn count(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .into_iter()
        .find(|m| *m == req.method().as_str())
        .unwrap_or("other");
    let response = next.run(req).await;
    crate::telemetry::metrics::api_request(&route, method, response.status().as_u16());
    response
}

/// Whether `ip` is a loopback address, counting IPv4-mapped IPv6 (`::ffff:127.0.0.1`), which
/// a dual-stack socket shows for an IPv4 loopback peer.
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// Whether a `Host` header value names the server listening on `listen`: `localhost` or an IP
/// literal, with the listening port if a port is given. A name a web page's attacker controls
/// (DNS rebinding: `evil.example` resolving to 127.0.0.1) is refused, so a browser on the
/// till cannot be turned against the API. An IP literal must be the listening address, or a
/// loopback one when listening on loopback, or anything when listening on all addresses
/// (`--allow-remote` on `0.0.0.0`).
pub fn host_allowed(host: &str, listen: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // `[v6]:port` or `v4:port` or `name:port`; a bare IPv6 literal is always bracketed.
        Some((n, p)) if !n.is_empty() && (n.ends_with(']') || !n.contains(':')) => (n, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().ok() != Some(listen.port()) {
            return false;
        }
    }
    if name.eq_ignore_ascii_case("localhost") {
        return is_loopback(listen.ip()) || listen.ip().is_unspecified();
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            listen.ip().is_unspecified()
                || ip == listen.ip()
                || (is_loopback(ip) && is_loopback(listen.ip()))
        }
        Err(_) => false,
    }
}

/// `421 misdirected_request` unless the `Host` header names this server ([`host_allowed`]).
async fn check_host(State(listen): State<SocketAddr>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .is_some_and(|h| host_allowed(h, listen));
    if !ok {
        tracing::warn!("request refused: Host header does not name this server");
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_host",
            "the Host header must name this server (localhost or its address)",
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the request says it carries a body (a non-zero length, or chunked).
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// Reads a request body within `timeout` (`[api] body_timeout_ms`; at most
/// [`MAX_BODY`] bytes): a client that sends headers and then trickles or stalls gets `408`
/// instead of holding the connection.
async fn read_body_in_time(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if !has_body(req.headers()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are at most {MAX_BODY} bytes"),
        )
        .into_response(),
        Err(_) => {
            tracing::warn!("request body not received in time");
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time",
            )
            .into_response()
        }
    }
}

/// `415 unsupported_media_type` for a request with a body whose `Content-Type` is not JSON.
async fn require_json(req: Request, next: Next) -> Response {
    if has_body(req.headers()) && !super::bodies::is_json(req.headers()) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be sent as Content-Type: application/json",
        )
        .into_response();
    }
    next.run(req).await
}

/// `401 unauthorized` (with `WWW-Authenticate: Bearer`) unless the request carries the token.
async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| s.token.verify_header(v.as_bytes()));
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
    }
    next.run(req).await
}

/// `GET /v1/openapi` (no token).
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_name_the_server() {
        let lo: SocketAddr = "127.0.0.1:8765".parse().unwrap();
        for ok in [
            "127.0.0.1:8765",
            "localhost:8765",
            "LOCALHOST",
            "127.0.0.1",
            "[::1]:8765",
            "127.0.0.2:8765",
        ] {
            assert!(host_allowed(ok, lo), "{ok}");
        }
        for bad in [
            "evil.example:8765",
            "evil.example",
            "127.0.0.1:80",
            "10.0.0.1:8765",
            "",
            "[::1]:x",
        ] {
            assert!(!host_allowed(bad, lo), "{bad}");
        }
        let any: SocketAddr = "0.0.0.0:8765".parse().unwrap();
        assert!(host_allowed("192.0.2.7:8765", any));
        assert!(!host_allowed("till.example:8765", any));
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(is_loopback(mapped));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from docs/openapi.json"
            );
        }
        // And nothing documented that the server does not serve.
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| {
                p.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                    .count()
            })
            .sum();
        assert_eq!(documented, ROUTES.len());
    }
}
