//! The reader itself: its state (`GET /v1/device`), a message on its display and a reset.
//! A display or reset needs the reader free: while a card transaction runs, `409 reader_busy`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::bodies::display_text;
use super::error::ApiError;
use super::state::AppState;
use crate::driver::{LinkState, Reader};

/// `GET /v1/device`.
pub(super) async fn device(State(s): State<AppState>) -> Response {
    let (state, info) = match s.link.state() {
        LinkState::Connected { device_info } => ("connected", Some(device_info)),
        LinkState::Reconnecting { .. } => ("reconnecting", None),
        LinkState::Closed { .. } => ("closed", None),
    };
    let first = info.as_ref().and_then(|i| i.devices.first());
    axum::Json(json!({
        "link": state,
        "simulated": s.simulated,
        "busy": s.reader.try_lock().is_err(),
        "current_transaction_id": s.running_id(),
        "model": first.and_then(|d| d.model.clone()),
        "serial": first.and_then(|d| d.serial.clone()),
        "version": first.and_then(|d| d.version.clone()),
        "terminal_id": info.as_ref().and_then(|i| i.terminal_id.clone()),
        "gateway": s.gateway.dialect().to_string(),
        "stats": s.link.stats(),
    }))
    .into_response()
}

fn reader_error(e: crate::driver::ReaderError) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "reader_error", e.to_string())
}

/// `POST /v1/device/display`.
pub(super) async fn display(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let text = display_text(&body)?;
    let _guard = s.reader.try_lock().map_err(|_| s.busy())?;
    Reader::new(s.link.clone())
        .display(&text)
        .await
        .map_err(reader_error)?;
    Ok(axum::Json(json!({"displayed": text})).into_response())
}

/// `POST /v1/device/reset`.
pub(super) async fn reset(State(s): State<AppState>) -> Result<Response, ApiError> {
    let _guard = s.reader.try_lock().map_err(|_| s.busy())?;
    let info = Reader::new(s.link.clone())
        .reset()
        .await
        .map_err(reader_error)?;
    Ok(axum::Json(json!({"reset": true, "device_info": info})).into_response())
}
