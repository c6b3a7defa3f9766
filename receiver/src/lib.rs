//! Thanos-compatible remote-write receiver.
