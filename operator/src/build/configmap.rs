//! The hashring ConfigMap that receivers watch.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use hashring::{Algorithm, Endpoint, HashringConfig, TenantMatcher};
use k8s_openapi::api::core::v1::ConfigMap;

use super::{HASHRINGS_KEY, Names, owned_meta};
use crate::crd::{HashringAlgorithm, TenantMatcherType, ThanosReceiver};

/// Annotation on the ConfigMap with the RFC 3339 time of the last ring change; the scale-down
/// wait is measured from it, so it survives operator restarts.
pub const RING_CHANGED_AT_ANNOTATION: &str = "receiver.thanos-rs.io/ring-changed-at";

/// Name of the ring that serves every tenant without a ring of its own.
const DEFAULT_RING: &str = "default";

/// The Thanos hashrings for `members`: the tenant rings of the spec, then the default ring,
/// each holding every member in ordinal order.
pub fn hashrings(
    tr: &ThanosReceiver,
    names: &Names,
    members: &BTreeSet<u32>,
) -> Vec<HashringConfig> {
    let endpoints: Vec<Endpoint> = members
        .iter()
        .map(|&i| Endpoint::new(names.endpoint(i)))
        .collect();
    let spec = &tr.spec;
    let mut rings: Vec<HashringConfig> = spec
        .hashrings
        .iter()
        .map(|h| HashringConfig {
            hashring: h.name.clone(),
            tenants: h.tenants.clone(),
            tenant_matcher_type: match h.tenant_matcher_type {
                TenantMatcherType::Exact => TenantMatcher::Exact,
                TenantMatcherType::Glob => TenantMatcher::Glob,
            },
            endpoints: endpoints.clone(),
            algorithm: Some(algorithm(h.algorithm.unwrap_or(spec.hashring_algorithm))),
            external_labels: BTreeMap::new(),
        })
        .collect();
    // Receivers try rings in file order and the default ring matches every tenant, so it goes last.
    rings.push(HashringConfig {
        hashring: DEFAULT_RING.into(),
        tenants: Vec::new(),
        tenant_matcher_type: TenantMatcher::Exact,
        endpoints,
        algorithm: Some(algorithm(spec.hashring_algorithm)),
        external_labels: BTreeMap::new(),
    });
    rings
}

fn algorithm(a: HashringAlgorithm) -> Algorithm {
    match a {
        HashringAlgorithm::Hashmod => Algorithm::Hashmod,
        HashringAlgorithm::Ketama => Algorithm::Ketama,
    }
}

/// The ConfigMap holding `hashrings_json`, stamped with the time its ring last changed.
pub fn hashring_configmap(
    tr: &ThanosReceiver,
    names: &Names,
    hashrings_json: String,
    changed_at: &str,
) -> ConfigMap {
    let mut metadata = owned_meta(tr, names, names.configmap());
    metadata.annotations = Some(BTreeMap::from([(
        RING_CHANGED_AT_ANNOTATION.to_owned(),
        changed_at.to_owned(),
    )]));
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(HASHRINGS_KEY.to_owned(), hashrings_json)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    #[test]
    fn every_ring_holds_every_member_and_the_default_ring_is_last() {
        let mut tr = receiver("recv", "mon", 3);
        tr.spec.hashrings = serde_json::from_value(serde_json::json!([
            {"name": "team-a", "tenants": ["a"], "algorithm": "hashmod"},
            {"name": "teams", "tenants": ["team-*"], "tenantMatcherType": "glob"},
        ]))
        .unwrap();
        let names = Names::new(&tr, "cluster.local");
        let rings = hashrings(&tr, &names, &BTreeSet::from([0, 1, 2, 10]));
        let json = hashring::to_json(&rings);
        let parsed = hashring::parse(json.as_bytes()).unwrap();
        assert_eq!(parsed, rings);
        let names_of: Vec<_> = parsed.iter().map(|r| r.hashring.as_str()).collect();
        assert_eq!(names_of, ["team-a", "teams", "default"]);
        let want: Vec<Endpoint> = ["recv-0", "recv-1", "recv-2", "recv-10"]
            .iter()
            .map(|p| Endpoint::new(format!("{p}.recv.mon.svc.cluster.local:10901")))
            .collect();
        for ring in &parsed {
            assert_eq!(ring.endpoints, want, "ring {}", ring.hashring);
        }
        assert_eq!(parsed[0].algorithm, Some(Algorithm::Hashmod));
        assert_eq!(parsed[1].tenant_matcher_type, TenantMatcher::Glob);
        assert_eq!(parsed[1].algorithm, Some(Algorithm::Ketama));
        assert!(parsed[2].tenants.is_empty());
        assert_eq!(parsed[2].algorithm, Some(Algorithm::Ketama));
    }

    #[test]
    fn configmap_carries_the_json_and_the_change_time() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let cm = hashring_configmap(&tr, &names, "[]".into(), "2026-01-01T00:00:00Z");
        assert_eq!(cm.metadata.name.as_deref(), Some("recv-hashring"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("mon"));
        assert_eq!(cm.data.unwrap()["hashrings.json"], "[]");
        assert_eq!(
            cm.metadata.annotations.unwrap()[RING_CHANGED_AT_ANNOTATION],
            "2026-01-01T00:00:00Z"
        );
    }
}
