//! What leaves the process for the people who run it: logs ([`logging`]: `tracing` events to
//! standard error or a file, text or JSON lines), numbers ([`metrics`]: one Prometheus
//! registry scraped at `GET /metrics`), and the service manager's view ([`service`]: the
//! graceful-stop signals and `sd_notify`).
//!
//! Other modules only call into these (`metrics::frame_received()`); nothing here knows of
//! transactions beyond labels, and `emvbridge_core` stays free of it (metrics are recorded
//! at the edges, in this crate).

pub mod logging;
pub mod metrics;
pub mod service;
