//! Thanos-compatible remote-write receiver.
//!
//! The data flows `http` (remote-write handler) → `wire` (one module per format) → `ingest`
//! (validation, limits) → `replicate` (routing over the `ring`, quorum fan-out over the `grpc`
//! transport) → `tsdb` (WAL, head, blocks) → `shipper` (object storage). `write_error` holds the
//! failure taxonomy every hop maps to its own status codes.

pub mod admission;
pub mod cli;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod listen;
pub mod metrics;
pub mod replicate;
pub mod ring;
pub mod server;
pub mod shipper;
pub mod status;
pub mod store;
pub mod tenant;
pub mod tls;
pub mod tsdb;
pub mod wire;
pub mod write_error;
