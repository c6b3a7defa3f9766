//! Thanos-compatible remote-write receiver.
//!
//! The data flows `http` (remote-write handler) → `decode` → `ingest` (validation, limits) →
//! `replicate` (routing over the `ring`, quorum fan-out over `grpc`) → `tsdb` (WAL, head, blocks)
//! → `shipper` (object storage).

pub mod cli;
pub mod decode;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod proto;
pub mod replicate;
pub mod ring;
pub mod server;
pub mod shipper;
pub mod status;
pub mod tenant;
pub mod tsdb;
