//! Head, WAL and replay metrics, with Prometheus' TSDB names.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{FloatGauge, TenantLabel};

/// What the tenants' heads and WALs hold and did.
#[derive(Clone)]
pub struct TsdbMetrics {
    head_series: Family<TenantLabel, Gauge>,
    series_created: Family<TenantLabel, Counter>,
    /// By tenant and `type` (`float` or `histogram`), as Prometheus labels it.
    samples_appended: Family<Vec<(String, String)>, Counter>,
    out_of_order_appended: Family<TenantLabel, Counter>,
    wal_size: Family<TenantLabel, Gauge>,
    wal_corruptions: Family<TenantLabel, Counter>,
    wal_fsync_failures: Counter,
    replay_duration: Family<TenantLabel, FloatGauge>,
    exemplars_appended: Family<TenantLabel, Counter>,
    exemplars_in_storage: Family<TenantLabel, Gauge>,
}

impl TsdbMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = TsdbMetrics {
            head_series: Family::default(),
            series_created: Family::default(),
            samples_appended: Family::default(),
            out_of_order_appended: Family::default(),
            wal_size: Family::default(),
            wal_corruptions: Family::default(),
            wal_fsync_failures: Counter::default(),
            replay_duration: Family::default(),
            exemplars_appended: Family::default(),
            exemplars_in_storage: Family::default(),
        };
        registry.register(
            "prometheus_tsdb_head_series",
            "Series in the head",
            m.head_series.clone(),
        );
        registry.register(
            "prometheus_tsdb_head_series_created",
            "Series created in the head",
            m.series_created.clone(),
        );
        registry.register(
            "prometheus_tsdb_head_samples_appended",
            "Samples appended to the head",
            m.samples_appended.clone(),
        );
        registry.register(
            "prometheus_tsdb_head_out_of_order_samples_appended",
            "Samples older than their series' newest merged inside the out-of-order window",
            m.out_of_order_appended.clone(),
        );
        registry.register(
            "prometheus_tsdb_wal_storage_size_bytes",
            "Bytes in the WAL",
            m.wal_size.clone(),
        );
        registry.register(
            "prometheus_tsdb_wal_corruptions",
            "WAL corruptions repaired at start",
            m.wal_corruptions.clone(),
        );
        registry.register(
            "prometheus_tsdb_wal_fsync_failures",
            "Failed WAL fsyncs",
            m.wal_fsync_failures.clone(),
        );
        registry.register(
            "prometheus_tsdb_data_replay_duration_seconds",
            "Time the last WAL replay took",
            m.replay_duration.clone(),
        );
        registry.register(
            "prometheus_tsdb_exemplar_exemplars_appended",
            "Exemplars stored",
            m.exemplars_appended.clone(),
        );
        registry.register(
            "prometheus_tsdb_exemplar_exemplars_in_storage",
            "Exemplars held in the exemplar store",
            m.exemplars_in_storage.clone(),
        );
        m
    }

    /// An append to `tenant` stored `added` exemplars; its store now holds `held`.
    pub fn exemplars(&self, tenant: &str, added: u64, held: usize) {
        if added == 0 {
            return;
        }
        let t = TenantLabel::of(tenant);
        self.exemplars_appended.get_or_create(&t).inc_by(added);
        self.exemplars_in_storage
            .get_or_create(&t)
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// An append to `tenant` stored `floats` samples (`out_of_order` of them inside the
    /// out-of-order window) and `histograms` native histograms and created `created` series;
    /// the head and WAL now hold `head_series` series and `wal_bytes` bytes.
    pub fn appended(
        &self,
        tenant: &str,
        (floats, histograms): (u64, u64),
        out_of_order: u64,
        created: u64,
        head_series: u64,
        wal_bytes: u64,
    ) {
        let t = TenantLabel::of(tenant);
        if out_of_order > 0 {
            self.out_of_order_appended
                .get_or_create(&t)
                .inc_by(out_of_order);
        }
        for (kind, n) in [("float", floats), ("histogram", histograms)] {
            if n > 0 {
                let labels = vec![
                    ("tenant".to_string(), tenant.to_string()),
                    ("type".to_string(), kind.to_string()),
                ];
                self.samples_appended.get_or_create(&labels).inc_by(n);
            }
        }
        self.series_created.get_or_create(&t).inc_by(created);
        self.head_series.get_or_create(&t).set(head_series as i64);
        self.wal_size.get_or_create(&t).set(wal_bytes as i64);
    }

    /// The WAL of `tenant` was replayed in `took`, repairing a torn tail if `repaired`; the head
    /// and WAL hold `head_series` series and `wal_bytes` bytes.
    pub fn replayed(
        &self,
        tenant: &str,
        took: Duration,
        repaired: bool,
        head_series: u64,
        wal_bytes: u64,
    ) {
        let t = TenantLabel::of(tenant);
        self.replay_duration
            .get_or_create(&t)
            .set(took.as_secs_f64());
        if repaired {
            self.wal_corruptions.get_or_create(&t).inc();
        }
        self.head_series.get_or_create(&t).set(head_series as i64);
        self.wal_size.get_or_create(&t).set(wal_bytes as i64);
    }

    /// A periodic WAL fsync failed.
    pub fn fsync_failed(&self) {
        self.wal_fsync_failures.inc();
    }
}
