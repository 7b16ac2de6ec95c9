//! `GET /v1/events`: a Server-Sent Events stream of `transaction.started`, `prompt` and
//! `transaction.finished`, each with the transaction id. A subscriber that falls behind gets
//! a `lagged` event with the number it missed.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::json;
use tokio::sync::broadcast;

use super::state::AppState;

/// `GET /v1/events`.
pub(super) async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(ev) => Some((
                Ok(Event::default()
                    .event(ev.name)
                    .id(ev.id.to_string())
                    .data(ev.data)),
                rx,
            )),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((
                Ok(Event::default()
                    .event("lagged")
                    .data(json!({"missed": n}).to_string())),
                rx,
            )),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
