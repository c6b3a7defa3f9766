//! The hashring in force and the sources that update it without a restart.
//!
//! Sources (`file`, `configmap`) hand raw `hashrings.json` bytes to [`RingHolder::apply`], which
//! parses and validates them and swaps the ring atomically; the write path reads it lock-free. A
//! bad ring (invalid JSON, fewer endpoints than the replication factor, duplicates...) is logged
//! and counted, and the previous ring stays in force: the process never exits over a ring.

pub mod configmap;
pub mod file;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hashring::{Algorithm, ConfigHash, Hashrings};
use serde::Serialize;

use crate::metrics::RingMetrics;
use crate::tsdb::RingLabels;

/// A validated ring and the bytes it came from.
pub struct RingState {
    /// The parsed rings.
    pub hashrings: Hashrings,
    /// The `hashrings.json` content.
    pub raw: Vec<u8>,
    /// Thanos' config hash of `raw`.
    pub hash: ConfigHash,
    /// Which source delivered it (`file`, `configmap`, `flag`).
    pub source: &'static str,
}

/// Why a ring update was refused.
#[derive(Debug, thiserror::Error)]
pub enum RingLoadError {
    /// The `hashrings.json` content is invalid.
    #[error("hashring config: {0}")]
    Config(#[from] hashring::ConfigError),
    /// The rings cannot serve the replication factor.
    #[error("hashring: {0}")]
    Ring(#[from] hashring::RingError),
}

/// Holds the ring in force.
pub struct RingHolder {
    current: ArcSwapOption<RingState>,
    replication_factor: usize,
    default_algorithm: Algorithm,
    local_endpoint: Option<String>,
    metrics: RingMetrics,
    tenant_labels: Option<Arc<RingLabels>>,
}

/// What `/api/v1/status/hashring` shows.
#[derive(Serialize)]
pub struct RingStatus<'a> {
    /// Hex of the config hash in force.
    pub hash: String,
    /// Source of the ring in force.
    pub source: &'a str,
    /// Replication factor.
    pub replication_factor: usize,
    /// The rings in force.
    pub hashrings: &'a [hashring::HashringConfig],
}

impl RingHolder {
    /// An empty holder: no ring until a source delivers one. `local_endpoint` is this receiver's
    /// `--receive.local-endpoint`, checked against every ring put in force.
    pub fn new(
        replication_factor: usize,
        default_algorithm: Algorithm,
        local_endpoint: Option<String>,
        metrics: RingMetrics,
    ) -> Self {
        RingHolder {
            current: ArcSwapOption::empty(),
            replication_factor,
            default_algorithm,
            local_endpoint,
            metrics,
            tenant_labels: None,
        }
    }

    /// Publishes, on every ring put in force, the `external_labels` its rings give tenants.
    pub fn with_tenant_labels(mut self, labels: Arc<RingLabels>) -> Self {
        self.tenant_labels = Some(labels);
        self
    }

    /// Where reads, refusals and changes of the ring are counted.
    pub fn metrics(&self) -> &RingMetrics {
        &self.metrics
    }

    /// The ring in force, if any.
    pub fn load(&self) -> Option<Arc<RingState>> {
        self.current.load_full()
    }

    /// Validates `bytes` and makes them the ring in force; `Ok(false)` when they equal the current ring.
    pub fn apply(&self, source: &'static str, bytes: &[u8]) -> Result<bool, RingLoadError> {
        let hash = hashring::config_hash(bytes);
        if self.load().is_some_and(|cur| cur.raw == bytes) {
            return Ok(false);
        }
        let result = hashring::parse(bytes)
            .map_err(RingLoadError::from)
            .and_then(|configs| {
                Hashrings::new(configs, self.default_algorithm, self.replication_factor)
                    .map_err(RingLoadError::from)
            });
        let hashrings = match result {
            Ok(h) => h,
            Err(e) => {
                self.metrics.refused();
                tracing::error!(source, error = %e, "refused hashring update; keeping the ring in force");
                return Err(e);
            }
        };
        self.metrics.applied(
            hash.as_f64(),
            hashrings
                .configs()
                .iter()
                .map(|c| (c.hashring.as_str(), c.endpoints.len())),
        );
        tracing::info!(source, hash = %hash.to_hex(), rings = hashrings.configs().len(), "hashring in force");
        if let Some(sink) = &self.tenant_labels {
            sink.store(Arc::new(tenant_labels(hashrings.configs())));
        }
        if let Some(local) = &self.local_endpoint {
            let in_ring = hashrings
                .configs()
                .iter()
                .any(|c| c.endpoints.iter().any(|e| &e.address == local));
            self.metrics.local_endpoint_in_ring(in_ring);
            if !in_ring {
                // Thanos #4093: the classic cause of forwarding loops and opaque 500s.
                tracing::warn!(
                    local_endpoint = local,
                    "--receive.local-endpoint is in no hashring: this receiver stores nothing and forwards every write; check that the ring names it exactly as this flag does"
                );
            }
        }
        self.current.store(Some(Arc::new(RingState {
            hashrings,
            raw: bytes.to_vec(),
            hash,
            source,
        })));
        Ok(true)
    }

    /// The status document of the ring in force.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let state = self.load()?;
        serde_json::to_value(RingStatus {
            hash: state.hash.to_hex(),
            source: state.source,
            replication_factor: self.replication_factor,
            hashrings: state.hashrings.configs(),
        })
        .ok()
    }
}

/// The external labels each tenant gets from `configs`, as Thanos assigns them: a ring's
/// `external_labels` go to the tenants it lists by name (not by glob), the first ring listing a
/// tenant wins.
fn tenant_labels(
    configs: &[hashring::HashringConfig],
) -> HashMap<String, BTreeMap<String, String>> {
    let mut out = HashMap::new();
    for config in configs {
        for tenant in &config.tenants {
            out.entry(tenant.clone())
                .or_insert_with(|| config.external_labels.clone());
        }
    }
    out.retain(|_, labels: &mut BTreeMap<String, String>| !labels.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    const THREE: &str = r#"[{"hashring":"default","endpoints":["a:10901","b:10901","c:10901"]}]"#;

    #[test]
    fn ring_external_labels_go_to_the_tenants_a_ring_lists_first() {
        let metrics = Metrics::new();
        let labels: Arc<RingLabels> = Arc::default();
        let holder = RingHolder::new(1, Algorithm::Ketama, None, metrics.ring.clone())
            .with_tenant_labels(Arc::clone(&labels));
        let rings = r#"[
            {"hashring":"eu","tenants":["a","b"],"external_labels":{"region":"eu"},"endpoints":["a:1"]},
            {"hashring":"us","tenants":["b","c"],"external_labels":{"region":"us"},"endpoints":["b:1"]},
            {"hashring":"glob","tenants":["d-*"],"tenant_matcher_type":"glob","external_labels":{"region":"x"},"endpoints":["c:1"]},
            {"hashring":"default","endpoints":["d:1"]}
        ]"#;
        holder.apply("file", rings.as_bytes()).unwrap();
        let got = labels.load();
        let region = |t: &str| got.get(t).map(|l| l["region"].as_str());
        assert_eq!(
            (region("a"), region("b"), region("c"), region("d-1")),
            (Some("eu"), Some("eu"), Some("us"), None)
        );
        // d-* is a glob: Thanos gives labels to tenants listed by name only.
        assert_eq!(region("d-*"), Some("x"));
    }

    #[test]
    fn a_ring_without_the_local_endpoint_is_flagged() {
        let metrics = Metrics::new();
        let holder = RingHolder::new(
            3,
            Algorithm::Ketama,
            Some("d:10901".into()),
            metrics.ring.clone(),
        );
        holder.apply("file", THREE.as_bytes()).unwrap();
        assert!(
            metrics
                .encode()
                .contains("thanos_receive_local_endpoint_in_ring 0")
        );
        let four = r#"[{"endpoints":["a:10901","b:10901","c:10901","d:10901"]}]"#;
        holder.apply("file", four.as_bytes()).unwrap();
        assert!(
            metrics
                .encode()
                .contains("thanos_receive_local_endpoint_in_ring 1")
        );
    }

    #[test]
    fn bad_rings_keep_the_previous_one() {
        let metrics = Metrics::new();
        let holder = RingHolder::new(3, Algorithm::Ketama, None, metrics.ring.clone());
        assert!(holder.load().is_none());
        assert!(holder.apply("file", THREE.as_bytes()).unwrap());
        assert!(
            !holder.apply("file", THREE.as_bytes()).unwrap(),
            "same bytes are no change"
        );
        let before = holder.load().unwrap().hash.to_hex();
        for bad in [
            "",
            "[]",
            "{not json",
            r#"[{"endpoints":["a:1","b:1"]}]"#,
            r#"[{"endpoints":["a:1","a:1","b:1"]}]"#,
        ] {
            assert!(
                holder.apply("file", bad.as_bytes()).is_err(),
                "{bad:?} must be refused"
            );
            assert_eq!(holder.load().unwrap().hash.to_hex(), before);
        }
        let text = metrics.encode();
        assert!(
            text.contains("thanos_receive_hashrings_file_errors_total 5"),
            "{text}"
        );
        assert!(text.contains("thanos_receive_config_last_reload_successful 0"));
        let status = holder.status_json().unwrap();
        assert_eq!(status["hash"], before);
        assert_eq!(
            status["hashrings"][0]["endpoints"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
}
