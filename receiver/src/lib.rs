//! Thanos-compatible remote-write receiver.
//!
//! The data flows `http` (remote-write handler) → `decode` → `ingest` (validation, limits) →
//! `tsdb` (WAL, head).

pub mod cli;
pub mod decode;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod status;
pub mod tenant;
pub mod tsdb;
