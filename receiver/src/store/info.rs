//! `thanos.info.Info/Info`: what this receiver stores, as Thanos Query discovers endpoints.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tonic::codegen::BoxFuture;

use crate::grpc::{INFO_PATH, UnaryMethod};
use crate::ingest::Ingester;
use crate::tsdb::MultiTsdb;
use crate::wire::info::{ExemplarsInfo, InfoResponse, Label, StoreInfo, TsdbInfo, ZLabelSet};

/// The `thanos.info.Info` service over every tenant's storage.
pub struct InfoService {
    tsdb: Arc<MultiTsdb>,
    ingester: Arc<Ingester>,
}

impl InfoService {
    /// Info over `tsdb`, answered once `ingester` has replayed its WAL.
    pub fn new(tsdb: Arc<MultiTsdb>, ingester: Arc<Ingester>) -> Self {
        InfoService { tsdb, ingester }
    }
}

impl UnaryMethod for InfoService {
    const SERVICE: &'static str = "thanos.info.Info";
    const PATH: &'static str = INFO_PATH;

    /// Answers `Not ready` (Unavailable) during WAL replay, as Thanos does.
    fn call(self: &Arc<Self>, _request: Bytes) -> BoxFuture<Bytes, tonic::Status> {
        let this = Arc::clone(self);
        Box::pin(async move {
            if !this.ingester.is_ready() {
                return Err(tonic::Status::unavailable("Not ready"));
            }
            // Listing tenants' blocks reads directories: off the async workers.
            let response = tokio::task::spawn_blocking(move || info(&this.tsdb))
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            Ok(Bytes::from(response.encode_to_vec()))
        })
    }
}

/// The Info answer, as Thanos Receive gives it: component `receive`, one label set per tenant that
/// holds data (its external labels and the tenant label), sorted, and the Store API: from the
/// oldest sample on, with no upper bound (the head keeps growing), one TSDB entry per tenant.
pub fn info(tsdb: &MultiTsdb) -> InfoResponse {
    let mut tenants: Vec<_> = tsdb
        .tenants()
        .iter()
        .filter_map(|db| Some((tsdb.external_labels(&db.name), db.time_range()?)))
        .collect();
    tenants.sort();
    let set = |labels: std::collections::BTreeMap<String, String>| ZLabelSet {
        labels: labels
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
    };
    InfoResponse {
        label_sets: tenants.iter().map(|(l, _)| set(l.clone())).collect(),
        component_type: "receive".into(),
        store: Some(StoreInfo {
            // Nothing stored yet: a range no query reaches until data arrives.
            min_time: tenants.iter().map(|(_, r)| r.0).min().unwrap_or(i64::MAX),
            max_time: i64::MAX,
            supports_sharding: false,
            supports_without_replica_labels: true,
            tsdb_infos: tenants
                .into_iter()
                .map(|(labels, (min_time, max_time))| TsdbInfo {
                    labels: Some(set(labels)),
                    min_time,
                    max_time,
                })
                .collect(),
        }),
        // As Thanos Receive: the API is there, over all time, when exemplars are stored.
        exemplars: tsdb.stores_exemplars().then_some(ExemplarsInfo {
            min_time: i64::MIN,
            max_time: i64::MAX,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{SeriesVec, TsdbOptions};

    #[test]
    fn one_label_set_per_tenant_with_data() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TsdbOptions {
            external_labels: [("replica".to_string(), "r0".to_string())].into(),
            ..TsdbOptions::default()
        };
        let tsdb = MultiTsdb::new(dir.path(), opts);
        tsdb.tenant("empty").unwrap();
        for (tenant, t) in [("b", 30), ("a", 10)] {
            let db = tsdb.tenant(tenant).unwrap();
            let src = SeriesVec::new().with(&[("__name__", "up")], &[(t, 1.0), (t + 5, 1.0)]);
            let resolved = db.resolve(&src, &[0], 0).unwrap();
            db.append(&src, &[0], &resolved.refs).unwrap();
        }
        let r = info(&tsdb);
        assert_eq!(r.component_type, "receive");
        let sets: Vec<Vec<(String, String)>> = r
            .label_sets
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect()
            })
            .collect();
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            sets,
            vec![
                vec![pair("replica", "r0"), pair("tenant_id", "a")],
                vec![pair("replica", "r0"), pair("tenant_id", "b")],
            ],
            "a tenant with no data is not announced"
        );
        let store = r.store.unwrap();
        assert_eq!((store.min_time, store.max_time), (10, i64::MAX));
        assert!(store.supports_without_replica_labels);
        let ranges: Vec<_> = store
            .tsdb_infos
            .iter()
            .map(|t| (t.min_time, t.max_time))
            .collect();
        assert_eq!(ranges, [(10, 15), (30, 35)]);
    }
}
