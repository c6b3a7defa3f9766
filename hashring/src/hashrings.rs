//! The whole hashrings file: tenant → ring selection and per-tenant external labels.

use std::collections::{BTreeMap, HashSet};

use crate::config::{Algorithm, HashringConfig, TenantMatcher};
use crate::glob;
use crate::ring::{Ring, RingError};

/// All hashrings of a file, built and validated, in file order.
#[derive(Debug, Clone)]
pub struct Hashrings {
    configs: Vec<HashringConfig>,
    rings: Vec<Ring>,
    tenants: Vec<TenantSet>,
}

/// Which tenants one ring serves.
#[derive(Debug, Clone)]
enum TenantSet {
    /// No `tenants`: a default ring.
    All,
    /// Literal tenant IDs.
    Exact(HashSet<String>),
    /// Go glob patterns, validated at construction.
    Glob(Vec<String>),
}

impl TenantSet {
    fn matches(&self, tenant: &str) -> bool {
        match self {
            TenantSet::All => true,
            TenantSet::Exact(set) => set.contains(tenant),
            TenantSet::Glob(patterns) => patterns.iter().any(|p| glob::matches(p, tenant)),
        }
    }
}

/// Returned for tenants that no ring lists literally.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Hashrings {
    /// Builds every ring; the first invalid entry is reported with its position and name.
    pub fn new(
        configs: Vec<HashringConfig>,
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<Hashrings, RingError> {
        if configs.is_empty() {
            return Err(RingError::NoHashrings);
        }
        let mut rings = Vec::with_capacity(configs.len());
        let mut tenants = Vec::with_capacity(configs.len());
        for (index, cfg) in configs.iter().enumerate() {
            let in_entry = |error| RingError::InHashring {
                index,
                name: cfg.hashring.clone(),
                error: Box::new(error),
            };
            rings.push(Ring::new(cfg, default_algorithm, replication_factor).map_err(in_entry)?);
            tenants.push(tenant_set(cfg).map_err(in_entry)?);
        }
        Ok(Hashrings {
            configs,
            rings,
            tenants,
        })
    }

    /// The ring serving `tenant` and its index: the first in file order that is a default ring
    /// or lists the tenant (exactly, or by glob for `tenant_matcher_type: glob`).
    pub fn ring_for_tenant(&self, tenant: &str) -> Option<(usize, &Ring)> {
        self.tenants
            .iter()
            .position(|set| set.matches(tenant))
            .map(|i| (i, &self.rings[i]))
    }

    /// Hashring `external_labels` for `tenant`: those of the first ring listing it literally
    /// (glob patterns are compared as plain strings, as Thanos does), else empty.
    pub fn external_labels_for_tenant(&self, tenant: &str) -> &BTreeMap<String, String> {
        self.configs
            .iter()
            .find(|cfg| cfg.tenants.iter().any(|t| t == tenant))
            .map_or(&NO_LABELS, |cfg| &cfg.external_labels)
    }

    /// The configuration in force, as given.
    pub fn configs(&self) -> &[HashringConfig] {
        &self.configs
    }

    /// The built rings, in the same order as [`Hashrings::configs`].
    pub fn rings(&self) -> &[Ring] {
        &self.rings
    }
}

/// The tenant matcher of one entry, rejecting malformed glob patterns up front (Thanos would
/// fail every request that reaches them).
fn tenant_set(cfg: &HashringConfig) -> Result<TenantSet, RingError> {
    if cfg.tenants.is_empty() {
        return Ok(TenantSet::All);
    }
    Ok(match cfg.tenant_matcher_type {
        TenantMatcher::Exact => TenantSet::Exact(cfg.tenants.iter().cloned().collect()),
        TenantMatcher::Glob => {
            if let Some(bad) = cfg.tenants.iter().find(|p| glob::validate(p).is_err()) {
                return Err(RingError::BadTenantPattern(bad.clone()));
            }
            TenantSet::Glob(cfg.tenants.clone())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, parse};

    fn rings(json: &str) -> Hashrings {
        Hashrings::new(parse(json.as_bytes()).unwrap(), Algorithm::Hashmod, 1).unwrap()
    }

    fn ring_index(h: &Hashrings, tenant: &str) -> Option<usize> {
        h.ring_for_tenant(tenant).map(|(i, _)| i)
    }

    #[test]
    fn selection_is_first_match_in_file_order() {
        let h = rings(
            r#"[
                {"hashring": "a", "tenants": ["t1", "t2"], "endpoints": ["a:1"]},
                {"hashring": "g", "tenants": ["team-*", "t1"], "tenant_matcher_type": "glob", "endpoints": ["g:1"]},
                {"hashring": "default", "endpoints": ["d:1"]},
                {"hashring": "unreachable", "tenants": ["late"], "endpoints": ["u:1"]}
            ]"#,
        );
        assert_eq!(ring_index(&h, "t1"), Some(0));
        assert_eq!(ring_index(&h, "t2"), Some(0));
        assert_eq!(ring_index(&h, "team-x"), Some(1));
        assert_eq!(ring_index(&h, "team-x/y"), Some(2), "* does not cross /");
        assert_eq!(ring_index(&h, "anything"), Some(2));
        assert_eq!(
            ring_index(&h, "late"),
            Some(2),
            "default ring listed first wins"
        );
        let (_, ring) = h.ring_for_tenant("team-x").unwrap();
        assert_eq!(ring.endpoints()[0].address, "g:1");
    }

    #[test]
    fn exact_matcher_does_not_glob_and_no_match_is_none() {
        let h = rings(r#"[{"tenants": ["team-*"], "endpoints": ["a:1"]}]"#);
        assert_eq!(ring_index(&h, "team-*"), Some(0));
        assert_eq!(ring_index(&h, "team-x"), None);
    }

    #[test]
    fn external_labels_only_for_literal_tenants() {
        let h = rings(
            r#"[
                {"tenants": ["t1", "team-*"], "tenant_matcher_type": "glob", "endpoints": ["a:1"],
                 "external_labels": {"region": "eu", "env": "prod"}},
                {"tenants": ["t1", "t2"], "endpoints": ["b:1"], "external_labels": {"region": "us"}},
                {"endpoints": ["c:1"], "external_labels": {"ignored": "x"}}
            ]"#,
        );
        let labels = |t| {
            h.external_labels_for_tenant(t)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(labels("t1"), ["env=prod", "region=eu"], "first ring wins");
        assert_eq!(labels("t2"), ["region=us"]);
        assert!(labels("team-x").is_empty(), "glob matches carry no labels");
        assert_eq!(
            labels("team-*"),
            ["env=prod", "region=eu"],
            "patterns compare literally"
        );
        assert!(labels("other").is_empty(), "default rings carry no labels");
    }

    #[test]
    fn errors_name_the_entry() {
        let configs =
            parse(br#"[{"endpoints": ["a:1"]}, {"hashring": "bad", "endpoints": ["a:1", "a:1"]}]"#)
                .unwrap();
        let err = Hashrings::new(configs, Algorithm::Ketama, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"hashring #1 ("bad"): endpoint "a:1" is listed more than once"#
        );
        let configs = parse(br#"[{"tenants": ["ok-*", "bad-["], "tenant_matcher_type": "glob", "endpoints": ["a:1"]}]"#)
            .unwrap();
        let err = Hashrings::new(configs, Algorithm::Ketama, 1).unwrap_err();
        assert_eq!(
            err,
            RingError::InHashring {
                index: 0,
                name: String::new(),
                error: Box::new(RingError::BadTenantPattern("bad-[".into()))
            }
        );
        assert_eq!(
            Hashrings::new(Vec::new(), Algorithm::Ketama, 1).unwrap_err(),
            RingError::NoHashrings
        );
    }

    #[test]
    fn rings_and_configs_are_exposed_in_file_order() {
        let configs = vec![
            HashringConfig {
                hashring: "one".into(),
                tenants: vec!["t".into()],
                endpoints: vec![Endpoint::new("b"), Endpoint::new("a")],
                ..HashringConfig::default()
            },
            HashringConfig {
                hashring: "two".into(),
                endpoints: vec![Endpoint::new("c")],
                algorithm: Some(Algorithm::Ketama),
                ..HashringConfig::default()
            },
        ];
        let h = Hashrings::new(configs.clone(), Algorithm::Hashmod, 1).unwrap();
        assert_eq!(h.configs(), &configs[..]);
        assert_eq!(h.rings().len(), 2);
        assert_eq!(h.rings()[0].algorithm(), Algorithm::Hashmod);
        assert_eq!(h.rings()[1].algorithm(), Algorithm::Ketama);
    }
}
