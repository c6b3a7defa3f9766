//! Hashring metrics, with Thanos' names.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::FloatGauge;

/// A hashring name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RingName {
    name: String,
}

/// Which ring is in force and how its updates went.
#[derive(Clone)]
pub struct RingMetrics {
    refreshes: Counter,
    errors: Counter,
    changes: Counter,
    nodes: Family<RingName, Gauge>,
    hash: FloatGauge,
    last_reload_ok: Gauge,
    last_reload_time: FloatGauge,
    local_in_ring: Gauge,
}

impl RingMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = RingMetrics {
            refreshes: Counter::default(),
            errors: Counter::default(),
            changes: Counter::default(),
            nodes: Family::default(),
            hash: FloatGauge::default(),
            last_reload_ok: Gauge::default(),
            last_reload_time: FloatGauge::default(),
            local_in_ring: Gauge::default(),
        };
        // Nothing has failed yet: a receiver without a ring file must not trip Thanos'
        // ThanosReceiveConfigReloadFailure alert forever.
        m.last_reload_ok.set(1);
        registry.register(
            "thanos_receive_hashrings_file_refreshes",
            "Hashring file reads",
            m.refreshes.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_errors",
            "Refused or unreadable hashring updates",
            m.errors.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_changes",
            "Hashring changes applied",
            m.changes.clone(),
        );
        registry.register(
            "thanos_receive_hashring_nodes",
            "Endpoints per hashring",
            m.nodes.clone(),
        );
        registry.register(
            "thanos_receive_config_hash",
            "Hash of the hashring config in force",
            m.hash.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_successful",
            "Whether the last hashring update was valid",
            m.last_reload_ok.clone(),
        );
        registry.register(
            "thanos_receive_local_endpoint_in_ring",
            "1 when --receive.local-endpoint is an endpoint of the ring in force, 0 when it is in none",
            m.local_in_ring.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_success_timestamp_seconds",
            "Time of the last applied hashring",
            m.last_reload_time.clone(),
        );
        m
    }

    /// The hashrings file was read.
    pub fn file_read(&self) {
        self.refreshes.inc();
    }

    /// The ring source could not be read; the ring in force stays.
    pub fn unreadable(&self) {
        self.errors.inc();
    }

    /// A ring update was refused as invalid; the ring in force stays.
    pub fn refused(&self) {
        self.errors.inc();
        self.last_reload_ok.set(0);
    }

    /// Whether the ring now in force names this receiver's `--receive.local-endpoint`.
    pub fn local_endpoint_in_ring(&self, in_ring: bool) {
        self.local_in_ring.set(i64::from(in_ring));
    }

    /// A new ring is in force: its config hash and each ring's `(name, endpoints)`.
    pub fn applied<'a>(&self, hash: f64, rings: impl IntoIterator<Item = (&'a str, usize)>) {
        self.nodes.clear();
        for (name, endpoints) in rings {
            self.nodes
                .get_or_create(&RingName {
                    name: name.to_string(),
                })
                .set(endpoints as i64);
        }
        self.hash.set(hash);
        self.changes.inc();
        self.last_reload_ok.set(1);
        self.last_reload_time.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
    }
}
