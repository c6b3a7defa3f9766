//! Remote-write request metrics, recorded by a layer around the handler, under the names and
//! labels of Thanos' instrumented handler (its dashboards query them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Labels of the requests in flight.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InflightLabels {
    handler: &'static str,
    method: &'static str,
    tenant: String,
}

/// Labels of the write-size histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    code: u16,
    tenant: String,
}

/// What one remote-write request brought, as far as it was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the (compressed) body.
    pub bytes: u64,
    /// Series in the decoded request.
    pub series: u64,
    /// Samples in the decoded request.
    pub samples: u64,
}

/// One request counted in `http_inflight_requests` while it lives.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Remote-write requests: counts, latency, body size, requests in flight, and the series and
/// samples per request (`thanos_receive_write_{timeseries,samples}`).
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    size: Family<HttpLabels, Histogram, fn() -> Histogram>,
    inflight: Family<InflightLabels, Gauge>,
    write_timeseries: Family<WriteLabels, Histogram, fn() -> Histogram>,
    write_samples: Family<WriteLabels, Histogram, fn() -> Histogram>,
    write_waiting: Gauge,
}

fn size_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1024.0, 4.0, 10,
    ))
}

fn write_size_histogram() -> Histogram {
    Histogram::new([10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0])
}

impl HttpMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(super::request_duration_histogram),
            size: Family::new_with_constructor(size_histogram),
            inflight: Family::default(),
            write_timeseries: Family::new_with_constructor(write_size_histogram),
            write_samples: Family::new_with_constructor(write_size_histogram),
            write_waiting: Gauge::default(),
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
        registry.register(
            "http_request_size_bytes",
            "Remote-write request body size (compressed)",
            m.size.clone(),
        );
        registry.register(
            "http_inflight_requests",
            "Remote-write requests being served",
            m.inflight.clone(),
        );
        registry.register(
            "thanos_receive_write_timeseries",
            "Series in the incoming write requests, by answer code and tenant",
            m.write_timeseries.clone(),
        );
        registry.register(
            "thanos_receive_write_samples",
            "Samples in the incoming write requests, by answer code and tenant",
            m.write_samples.clone(),
        );
        registry.register(
            "thanos_receive_write_requests_waiting",
            "Remote-write requests waiting for the in-flight bounds (--receive.max-inflight-write-bytes, max_concurrency)",
            m.write_waiting.clone(),
        );
        m
    }

    /// The gauge of requests waiting for admission.
    pub fn write_waiting(&self) -> Gauge {
        self.write_waiting.clone()
    }

    /// Counts one of `tenant`'s requests in flight on `handler` until the guard is dropped, so a
    /// request whose client went away (its future dropped mid-way) is uncounted too.
    pub fn in_flight(&self, handler: &'static str, method: &'static str, tenant: &str) -> InFlight {
        let gauge = self
            .inflight
            .get_or_create(&InflightLabels {
                handler,
                method,
                tenant: tenant.to_owned(),
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// A request was answered, after `seconds`, having brought `received`.
    pub fn answered(&self, labels: &HttpLabels, seconds: f64, received: Received) {
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(labels).observe(seconds);
        self.size
            .get_or_create(labels)
            .observe(received.bytes as f64);
        if received.series > 0 {
            let write = WriteLabels {
                code: labels.code,
                tenant: labels.tenant.clone(),
            };
            self.write_timeseries
                .get_or_create(&write)
                .observe(received.series as f64);
            self.write_samples
                .get_or_create(&write)
                .observe(received.samples as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    #[test]
    fn a_request_dropped_mid_way_leaves_the_in_flight_gauge() {
        let m = Metrics::new();
        let served = m.http.in_flight("receive", "POST", "a");
        let abandoned = m.http.in_flight("receive", "POST", "a");
        let line = r#"http_inflight_requests{handler="receive",method="POST",tenant="a"}"#;
        assert!(m.encode().contains(&format!("{line} 2")));
        drop(served);
        // A client that goes away drops the handler's future, and the guard with it.
        drop(abandoned);
        assert!(m.encode().contains(&format!("{line} 0")), "{}", m.encode());
    }
}
