//! Prometheus remote read over a tenant's head and blocks, answered with samples.

use crate::tsdb::{Budget, Matcher, MultiTsdb};
use crate::wire::messages::v1;
use crate::wire::remote_read::{QueryResult, ReadRequest, ReadResponse};

use super::{ReadError, ReadLimits, series_matchers, to_matcher, with_external};

/// Samples one read may return when no limit is configured: Prometheus' own remote-read default
/// (`--storage.remote.read-sample-limit`), which bounds a response to a few hundred megabytes.
pub const DEFAULT_SAMPLE_LIMIT: u64 = 50_000_000;

/// Answers every query of `request`, each from one tenant's storage: the tenant a query's
/// equality matcher on the tenant label names (as a Prometheus with that external label sends),
/// else `tenant` (the request's header). As Thanos' stores do, matchers on external labels
/// select or deselect the tenant's data as a whole, and every series is returned with the
/// external labels attached. An unknown tenant has no series.
pub fn remote_read(
    tsdb: &MultiTsdb,
    tenant: &str,
    request: &ReadRequest,
    limits: ReadLimits,
) -> Result<ReadResponse, ReadError> {
    let sample_limit = match limits.samples {
        0 => DEFAULT_SAMPLE_LIMIT,
        n => n,
    };
    let (mut series, mut samples) = (0u64, 0u64);
    let mut results = Vec::with_capacity(request.queries.len());
    for query in &request.queries {
        let matchers = query
            .matchers
            .iter()
            .map(to_matcher)
            .collect::<Result<Vec<_>, _>>()?;
        let tenant = matchers
            .iter()
            .find_map(|m| match m {
                Matcher::Equal(n, v) if n == tsdb.tenant_label_name() => Some(v.clone()),
                _ => None,
            })
            .unwrap_or_else(|| tenant.to_string());
        crate::tenant::validate(&tenant)
            .map_err(|e| ReadError::BadRequest(format!("invalid tenant {tenant:?}: {e}")))?;
        let external = tsdb.external_labels(&tenant);
        let on_series = series_matchers(matchers, &external);
        if on_series.as_ref().is_some_and(Vec::is_empty) {
            return Err(ReadError::BadRequest(
                "a query needs at least one matcher on series labels".into(),
            ));
        }
        let budget = Budget {
            series: limits.series,
            samples: sample_limit,
        };
        let found = match (tsdb.get(&tenant), on_series) {
            (Some(db), Some(on_series)) => db.query(
                &on_series,
                query.start_timestamp_ms,
                query.end_timestamp_ms,
                budget,
            )?,
            _ => Vec::new(),
        };
        series += found.len() as u64;
        samples += found.iter().map(|s| s.samples.len() as u64).sum::<u64>();
        if limits.series > 0 && series > limits.series {
            return Err(ReadError::Limit(format!(
                "read would return {series} series, more than the limit of {}",
                limits.series
            )));
        }
        if samples > sample_limit {
            return Err(ReadError::Limit(format!(
                "read would return {samples} samples, more than the limit of {sample_limit}"
            )));
        }
        let timeseries = found
            .into_iter()
            .map(|s| {
                let labels = with_external(&s.labels, &external);
                v1::TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| v1::Label {
                            name: name.to_string(),
                            value: value.to_string(),
                        })
                        .collect(),
                    samples: s
                        .samples
                        .iter()
                        .map(|&(timestamp, value)| v1::Sample { value, timestamp })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect();
        results.push(QueryResult { timeseries });
    }
    Ok(ReadResponse { results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{SeriesVec, TsdbOptions};
    use crate::wire::remote_read::{LabelMatcher, MatchType, Query};

    fn matcher(t: MatchType, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    fn read(
        tsdb: &MultiTsdb,
        tenant: &str,
        matchers: Vec<LabelMatcher>,
        limits: ReadLimits,
    ) -> Result<ReadResponse, ReadError> {
        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: 100,
                matchers,
            }],
            accepted_response_types: vec![],
        };
        remote_read(tsdb, tenant, &request, limits)
    }

    #[test]
    fn reads_one_tenant_by_matchers_within_limits() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = MultiTsdb::new(dir.path(), TsdbOptions::default());
        for (tenant, job) in [("a", "api"), ("a", "web"), ("b", "api")] {
            let db = tsdb.tenant(tenant).unwrap();
            let src = SeriesVec::new().with(
                &[("__name__", "up"), ("job", job)],
                &[(10, 1.0), (20, 2.0), (200, 3.0)],
            );
            let resolved = db.resolve(&src, &[0], 0).unwrap();
            db.append(&src, &[0], &resolved.refs).unwrap();
        }
        let r = read(
            &tsdb,
            "a",
            vec![matcher(MatchType::Re, "job", "a.*|web")],
            ReadLimits::default(),
        )
        .unwrap();
        let ts = &r.results[0].timeseries;
        assert_eq!(ts.len(), 2, "tenant b's series is not visible to a");
        let labels: Vec<(&str, &str)> = ts[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("__name__", "up"), ("job", "api"), ("tenant_id", "a")],
            "external labels attached, sorted"
        );
        assert_eq!(
            ts[0].samples.len(),
            2,
            "the sample at 200 is outside [0, 100]"
        );
        let r = read(
            &tsdb,
            "a",
            vec![matcher(MatchType::Nre, "job", "api")],
            ReadLimits::default(),
        )
        .unwrap();
        assert_eq!(r.results[0].timeseries.len(), 1);
        let r = read(
            &tsdb,
            "nobody",
            vec![matcher(MatchType::Eq, "job", "api")],
            ReadLimits::default(),
        )
        .unwrap();
        assert!(r.results[0].timeseries.is_empty());

        let limited = read(
            &tsdb,
            "a",
            vec![matcher(MatchType::Eq, "__name__", "up")],
            ReadLimits {
                series: 1,
                samples: 0,
            },
        );
        assert!(matches!(limited, Err(ReadError::Limit(_))));
        let limited = read(
            &tsdb,
            "a",
            vec![matcher(MatchType::Eq, "__name__", "up")],
            ReadLimits {
                series: 0,
                samples: 3,
            },
        );
        assert!(matches!(limited, Err(ReadError::Limit(_))));
        let bad = read(
            &tsdb,
            "a",
            vec![matcher(MatchType::Re, "job", "(")],
            ReadLimits::default(),
        );
        assert!(matches!(bad, Err(ReadError::BadRequest(_))));
        assert!(matches!(
            read(&tsdb, "a", vec![], ReadLimits::default()),
            Err(ReadError::BadRequest(_))
        ));
    }
}
