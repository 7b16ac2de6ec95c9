//! The routes, and the layers in front of them: the bearer token on everything but
//! `/v1/health` and `/v1/openapi`, then request ids on every `POST`; the body limit, and
//! JSON errors for unknown routes and methods.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::bodies::MAX_BODY;
use super::error::ApiError;
use super::state::AppState;
use super::{device, events, follow_ups, health, idempotency, transactions};

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
    ("get", "/v1/transactions/{id}"),
    ("post", "/v1/transactions/{id}/cancel"),
    ("get", "/v1/device"),
    ("post", "/v1/device/display"),
    ("post", "/v1/device/reset"),
    ("get", "/v1/events"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi"),
];

/// The whole API on `state`.
pub(super) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/sales", post(transactions::sale))
        .route("/v1/preauths", post(transactions::preauth))
        .route("/v1/preauths/{id}/capture", post(follow_ups::capture))
        .route("/v1/refunds", post(transactions::refund))
        .route("/v1/transactions/{id}/void", post(follow_ups::void))
        .route("/v1/transactions/{id}/reverse", post(follow_ups::reverse))
        .route("/v1/transactions/{id}", get(transactions::transaction))
        .route("/v1/transactions/{id}/cancel", post(transactions::cancel))
        .route("/v1/device", get(device::device))
        .route("/v1/device/display", post(device::display))
        .route("/v1/device/reset", post(device::reset))
        .route("/v1/events", get(events::events))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/v1/health", get(health::health))
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
        .with_state(state)
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
