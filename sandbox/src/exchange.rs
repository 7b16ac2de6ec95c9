//! The exchange between the HTTP shell and the dialects: a [`SimRequest`] in, a [`Reply`]
//! (a [`SimResponse`] and how to deliver it) out, and [`Exec`], what an operation hands to
//! the fault machinery. Plain data; nothing here knows the state or any dialect.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;

/// A request as the dialects see it: prefix stripped, body already size-limited.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// Method.
    pub method: Method,
    /// Path below the dialect prefix (`/CardSale/EMV`).
    pub path: String,
    /// Raw query string (no `?`).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The TCP peer.
    pub peer_ip: IpAddr,
    /// `Host` header, for absolute URLs in answers.
    pub host: String,
}

impl SimRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, decoded as `application/x-www-form-urlencoded` (`+` is a space,
    /// `%xx` a byte; a `%` not followed by two hex digits stays as it is; bytes that are not
    /// UTF-8 become U+FFFD).
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| form_decode(v))
        })
    }
}

/// One `application/x-www-form-urlencoded` value: `+` first, then the percent escapes, so an
/// escaped `%2B` stays a plus sign.
fn form_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResponse {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl SimResponse {
    /// JSON body.
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        SimResponse {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    /// Plain text body.
    pub fn text(status: u16, s: &str) -> Self {
        SimResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: s.as_bytes().to_vec(),
        }
    }

    /// HTML body.
    pub fn html(status: u16, s: String) -> Self {
        SimResponse {
            status,
            content_type: "text/html; charset=utf-8",
            body: s.into_bytes(),
        }
    }

    /// Empty body.
    pub fn empty(status: u16) -> Self {
        SimResponse {
            status,
            content_type: "application/json",
            body: Vec::new(),
        }
    }

    /// The body parsed as JSON (tests).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the HTTP layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send this.
    Respond(SimResponse),
    /// Wait `ms`, then send.
    Delay(u64, SimResponse),
    /// Never answer; keep the socket open.
    Hang,
    /// Close the connection: before the headers (`None`) or after part of this response.
    Drop(Option<SimResponse>),
}

/// The result of executing an operation.
pub struct Exec {
    /// The response.
    pub resp: SimResponse,
    /// Ledger ids written (to flag `lost_response` when the response is lost).
    pub committed: Vec<String>,
}

impl Exec {
    /// A response that wrote nothing.
    pub fn reply(resp: SimResponse) -> Self {
        Exec {
            resp,
            committed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_query(query: &str) -> SimRequest {
        SimRequest {
            method: Method::GET,
            path: "/".into(),
            query: query.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            peer_ip: IpAddr::from([127, 0, 0, 1]),
            host: "127.0.0.1".into(),
        }
    }

    #[test]
    fn query_values_are_form_decoded() {
        let r = with_query("a=a%20b+c%zz&b=%2B1&flag&c=%E2%82%AC%ff&d=%4");
        assert_eq!(r.query_param("a").as_deref(), Some("a b c%zz"));
        assert_eq!(r.query_param("b").as_deref(), Some("+1"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("c").as_deref(), Some("€\u{FFFD}"));
        assert_eq!(r.query_param("d").as_deref(), Some("%4"));
        assert_eq!(r.query_param("missing"), None);
    }
}
