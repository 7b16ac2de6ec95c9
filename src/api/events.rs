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

#[cfg(all(test, feature = "sim"))]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use crate::api::{start, ApiOptions};
    use crate::terminal::TerminalOptions;
    use emvbridge_core::txn::TxnConfig;

    const TOKEN: &str = "events-test-token-0123456789abcdef0123456789";

    /// Reads the stream until the server ends it: the events (name, data), and whether it
    /// ended cleanly (the response complete) rather than cut.
    async fn read_to_end(mut r: reqwest::Response) -> (Vec<(String, Value)>, bool) {
        let mut out = Vec::new();
        let mut buf = String::new();
        loop {
            match r.chunk().await {
                Ok(Some(c)) => buf.push_str(&String::from_utf8_lossy(&c)),
                Ok(None) => return (out, true),
                Err(_) => return (out, false),
            }
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !name.is_empty() {
                    out.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_ends_with_the_server_after_the_cancelled_sale_finished() {
        let s = start(ApiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow_remote: false,
            token: TOKEN.into(),
            terminal: TerminalOptions::default(),
            sale_timeout: Duration::from_secs(30),
            txn_config: TxnConfig::default(),
        })
        .await
        .unwrap();
        let base = format!("http://{}", s.addr);
        let http = reqwest::Client::new();
        // No card comes: the sale waits for one until the stop cancels it.
        let r = http
            .put(format!("{base}/v1/simulator/auto"))
            .bearer_auth(TOKEN)
            .json(&json!({"insert": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let events = http
            .get(format!("{base}/v1/events"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let r = http
            .post(format!("{base}/v1/sales"))
            .bearer_auth(TOKEN)
            .header("idempotency-key", "events-stop-1")
            .header("prefer", "respond-async")
            .json(&json!({"amount": 100, "currency": "USD"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let reading = tokio::spawn(read_to_end(events));
        s.shutdown().await;
        let (got, clean) = tokio::time::timeout(Duration::from_secs(60), reading)
            .await
            .expect("the stream ends")
            .unwrap();
        assert!(clean, "the server ended the stream, not cut it: {got:?}");
        let (name, last) = got.last().expect("events");
        assert_eq!(name, "transaction.finished", "{got:?}");
        assert_eq!(
            (&last["transaction_id"], &last["status"]),
            (&json!(id), &json!("cancelled")),
            "{got:?}"
        );
    }
}
