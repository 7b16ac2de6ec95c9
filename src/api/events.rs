//! `GET /v1/events`: a Server-Sent Events stream of `transaction.started`, `prompt` and
//! `transaction.finished`, each with the transaction id. A subscriber that falls behind gets
//! a `lagged` event with the number it missed. The stream ends when the server stops (after
//! the events already sent), so that a subscriber does not hold up the graceful stop.

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
    let closing = s.closing.subscribe();
    let stream = futures::stream::unfold((rx, closing), |(mut rx, mut closing)| async move {
        let next = tokio::select! {
            // What was published before the stop still goes out.
            biased;
            r = rx.recv() => r,
            _ = closing.wait_for(|c| *c) => return None,
        };
        match next {
            Ok(ev) => Some((
                Ok(Event::default()
                    .event(ev.name)
                    .id(ev.id.to_string())
                    .data(ev.data)),
                (rx, closing),
            )),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((
                Ok(Event::default()
                    .event("lagged")
                    .data(json!({"missed": n}).to_string())),
                (rx, closing),
            )),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
