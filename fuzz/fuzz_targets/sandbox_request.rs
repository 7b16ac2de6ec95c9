//! The sandbox gateway's request handling (all three dialects): arbitrary paths, queries,
//! headers and bodies, several requests against one ledger, never panic and never answer with
//! an unbounded body.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use emvbridge_sandbox::config::SandboxConfig;
use emvbridge_sandbox::dispatch;
use emvbridge_sandbox::exchange::{Reply, SimRequest};
use emvbridge_sandbox::state::SimState;
use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

/// One request: `[sel, path \n query \n body]`.
fn request(part: &[u8]) -> (&'static str, SimRequest) {
    let sel = part.first().copied().unwrap_or(0);
    let rest = part.get(1..).unwrap_or(&[]);
    let mut it = rest.splitn(3, |b| *b == b'\n');
    let path = String::from_utf8_lossy(it.next().unwrap_or(&[])).into_owned();
    let query = String::from_utf8_lossy(it.next().unwrap_or(&[])).into_owned();
    let body = Bytes::copy_from_slice(it.next().unwrap_or(&[]));
    let method = match (sel >> 2) & 3 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::PATCH,
        _ => Method::DELETE,
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    // Valid credentials half the time, so the fuzzer gets past authentication.
    if sel & 0x10 != 0 {
        headers.insert(
            "authorization",
            HeaderValue::from_static("ApiKey key_sandbox0001"),
        );
    }
    let prefix = dispatch::PREFIXES[(sel & 3) as usize % 3];
    (
        prefix,
        SimRequest {
            method,
            path,
            query,
            headers,
            body,
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host: "127.0.0.1:8088".into(),
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let cfg = SandboxConfig {
        clock_start_epoch: Some(1_700_000_000),
        ..SandboxConfig::default()
    };
    let mut state = SimState::new(cfg);
    for part in data.split(|b| *b == 0xFF).take(4) {
        let (prefix, req) = request(part);
        let resp = match dispatch::handle(&mut state, prefix, &req) {
            Reply::Respond(r) | Reply::Delay(_, r) | Reply::Drop(Some(r)) => Some(r),
            Reply::Hang | Reply::Drop(None) => None,
        };
        if let Some(r) = resp {
            assert!((100..600).contains(&r.status));
            assert!(r.body.len() <= 1 << 20, "answer of {} bytes", r.body.len());
        }
    }
});
