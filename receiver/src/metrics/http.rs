//! Remote-write request metrics, recorded by a layer around the handler.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Handler name (`receive`).
    pub handler: &'static str,
    /// Status code.
    pub code: u16,
    /// HTTP method.
    pub method: &'static str,
    /// Tenant of the request.
    pub tenant: String,
}

/// `http_requests_total` and `http_request_duration_seconds`, as Thanos' instrumented handlers.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(super::request_duration_histogram),
        };
        registry.register(
            "http_requests",
            "Remote-write requests by handler, code, method and tenant",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Remote-write request latency",
            m.duration.clone(),
        );
        m
    }

    /// A request was answered.
    pub fn answered(&self, labels: &HttpLabels, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(labels).observe(seconds);
    }
}
