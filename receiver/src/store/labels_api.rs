//! Prometheus' metadata API over a tenant's head and blocks: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, with the receiver's external labels attached as in remote read.

use std::collections::{BTreeMap, BTreeSet};

use crate::tsdb::{Matcher, MultiTsdb};

use super::{ReadError, ReadLimits, with_external};

/// A time range and the selectors (any of which may match) of a metadata request.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Each selector's matchers; none means every series.
    pub selectors: Vec<Vec<Matcher>>,
    /// Start of the range, inclusive, in milliseconds.
    pub start: i64,
    /// End of the range, inclusive, in milliseconds.
    pub end: i64,
}

/// Label sets of the series a selection matches, sorted, external labels attached.
pub fn series(
    tsdb: &MultiTsdb,
    tenant: &str,
    selection: &Selection,
    limits: ReadLimits,
) -> Result<Vec<BTreeMap<String, String>>, ReadError> {
    let Some(db) = tsdb.get(tenant) else {
        return Ok(Vec::new());
    };
    let everything = [vec![
        Matcher::regex("__name__", ".+").expect("a valid regex"),
    ]];
    let selectors = match selection.selectors.is_empty() {
        true => &everything[..],
        false => &selection.selectors[..],
    };
    let external = tsdb.external_labels(tenant);
    let mut out = BTreeSet::new();
    for matchers in selectors {
        let budget = limits.budget();
        for s in db.select(matchers, selection.start, selection.end, true, budget)? {
            let labels: BTreeMap<String, String> = with_external(&s.labels, &external)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            out.insert(labels);
            if limits.series > 0 && out.len() as u64 > limits.series {
                return Err(ReadError::Limit(format!(
                    "more than the limit of {} series match",
                    limits.series
                )));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Label names of the series a selection matches, sorted.
pub fn label_names(
    tsdb: &MultiTsdb,
    tenant: &str,
    selection: &Selection,
    limits: ReadLimits,
) -> Result<Vec<String>, ReadError> {
    let names: BTreeSet<String> = series(tsdb, tenant, selection, limits)?
        .into_iter()
        .flat_map(|labels| labels.into_keys())
        .collect();
    Ok(names.into_iter().collect())
}

/// Values of label `name` over the series a selection matches, sorted.
pub fn label_values(
    tsdb: &MultiTsdb,
    tenant: &str,
    name: &str,
    selection: &Selection,
    limits: ReadLimits,
) -> Result<Vec<String>, ReadError> {
    let values: BTreeSet<String> = series(tsdb, tenant, selection, limits)?
        .into_iter()
        .filter_map(|mut labels| labels.remove(name))
        .collect();
    Ok(values.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::selector;
    use crate::tsdb::{SeriesVec, TsdbOptions};

    #[test]
    fn metadata_of_one_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = MultiTsdb::new(dir.path(), TsdbOptions::default());
        for (tenant, name, job, t) in [
            ("a", "up", "api", 10),
            ("a", "up", "web", 10),
            ("a", "errors", "api", 500),
            ("b", "secret", "x", 10),
        ] {
            let db = tsdb.tenant(tenant).unwrap();
            let src = SeriesVec::new().with(&[("__name__", name), ("job", job)], &[(t, 1.0)]);
            let resolved = db.resolve(&src, &[0], 0).unwrap();
            db.append(&src, &[0], &resolved.refs).unwrap();
        }
        let all = Selection {
            selectors: vec![],
            start: 0,
            end: 100,
        };
        let limits = ReadLimits::default();
        let names = label_names(&tsdb, "a", &all, limits).unwrap();
        assert_eq!(names, ["__name__", "job", "tenant_id"]);
        let metrics = label_values(&tsdb, "a", "__name__", &all, limits).unwrap();
        assert_eq!(
            metrics,
            ["up"],
            "errors is outside the range; b's series are not a's"
        );
        let api = Selection {
            selectors: vec![selector::parse(r#"{job="api"}"#).unwrap()],
            start: 0,
            end: 1000,
        };
        let found = series(&tsdb, "a", &api, limits).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0]["__name__"], "errors");
        assert_eq!(found[0]["tenant_id"], "a");
        let limited = series(
            &tsdb,
            "a",
            &all,
            ReadLimits {
                series: 1,
                samples: 0,
            },
        );
        assert!(matches!(limited, Err(ReadError::Limit(_))));
        assert!(series(&tsdb, "nobody", &all, limits).unwrap().is_empty());
    }
}
