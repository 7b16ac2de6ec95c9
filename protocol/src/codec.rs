//! tokio-util codec for VIPA frames.
