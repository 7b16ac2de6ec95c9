//! VIPA link-layer frames.
