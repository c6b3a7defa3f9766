//! Routing, replication and forward metrics, with Thanos' names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// A result label (`success` or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl ResultLabel {
    fn of(ok: bool) -> Self {
        ResultLabel {
            result: if ok { "success" } else { "error" },
        }
    }
}

/// A peer endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// A ring and one of its endpoints.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RingEndpoint {
    hashring: String,
    endpoint: String,
}

/// How writes were routed, replicated and forwarded.
#[derive(Clone)]
pub struct ReplicationMetrics {
    replication_factor: Gauge,
    replications: Family<ResultLabel, Counter>,
    forward_requests: Family<ResultLabel, Counter>,
    forward_delay: Histogram,
    peer_errors: Family<EndpointLabel, Counter>,
    series_routed: Family<RingEndpoint, Counter>,
}

impl ReplicationMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = ReplicationMetrics {
            replication_factor: Gauge::default(),
            replications: Family::default(),
            forward_requests: Family::default(),
            forward_delay: super::request_duration_histogram(),
            peer_errors: Family::default(),
            series_routed: Family::default(),
        };
        // Both results exist from the start: Thanos' alerts divide errors by the total.
        for ok in [true, false] {
            m.replications.get_or_create(&ResultLabel::of(ok)).inc_by(0);
            m.forward_requests
                .get_or_create(&ResultLabel::of(ok))
                .inc_by(0);
        }
        registry.register(
            "thanos_receive_replication_factor",
            "Replication factor",
            m.replication_factor.clone(),
        );
        registry.register(
            "thanos_receive_replications",
            "Replicated writes by result",
            m.replications.clone(),
        );
        registry.register(
            "thanos_receive_forward_requests",
            "Forward requests to peers by result",
            m.forward_requests.clone(),
        );
        registry.register(
            "thanos_receive_forward_delay_seconds",
            "Latency of forward requests to peers",
            m.forward_delay.clone(),
        );
        registry.register(
            "thanos_receive_forward_peer_errors",
            "Failed forward requests per peer",
            m.peer_errors.clone(),
        );
        registry.register(
            "thanos_receive_hashring_series_routed",
            "Series written per ring member (distribution across the ring)",
            m.series_routed.clone(),
        );
        m
    }

    /// The replication factor in force.
    pub fn set_replication_factor(&self, rf: usize) {
        self.replication_factor.set(rf as i64);
    }

    /// A write was stored (`ok`) or failed, locally or across its replicas.
    pub fn replicated(&self, ok: bool) {
        self.replications.get_or_create(&ResultLabel::of(ok)).inc();
    }

    /// `n` series of a write were routed to `endpoint` of ring `hashring`.
    pub fn routed(&self, hashring: &str, endpoint: &str, n: usize) {
        self.series_routed
            .get_or_create(&RingEndpoint {
                hashring: hashring.to_string(),
                endpoint: endpoint.to_string(),
            })
            .inc_by(n as u64);
    }

    /// A forward to `endpoint` took `seconds` and succeeded (`ok`) or failed.
    pub fn forwarded(&self, endpoint: &str, seconds: f64, ok: bool) {
        self.forward_delay.observe(seconds);
        self.forward_requests
            .get_or_create(&ResultLabel::of(ok))
            .inc();
        if !ok {
            self.peer_errors
                .get_or_create(&EndpointLabel {
                    endpoint: endpoint.to_string(),
                })
                .inc();
        }
    }
}
