//! Remote-write load generator: Kubernetes-like series, requests pre-encoded once and replayed with
//! patched timestamps and values, Prometheus' sharding and retry behaviour.

pub mod payload;
pub mod retry;
pub mod series;
pub mod snappy;
pub mod stats;
