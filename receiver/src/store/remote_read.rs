//! Prometheus remote read over a tenant's head and blocks, answered with samples or, when the
//! client accepts them first, with the chunks as stored (STREAMED_XOR_CHUNKS).

use std::collections::BTreeMap;

use tsdb_format::chunkenc::{
    ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, iter_float_histogram, iter_histogram, iter_xor,
};

use crate::tsdb::{Budget, ChunkSeries, Matcher, MultiTsdb};
use crate::wire::messages::v1;
use crate::wire::remote_read::{
    Chunk, ChunkedReadResponse, ChunkedSeries, MAX_BYTES_IN_FRAME, Query, QueryResult, ReadRequest,
    ReadResponse, ResponseType, put_frame,
};

use super::{ReadError, ReadLimits, series_matchers, to_matcher, with_external};

/// Samples one read may return when no limit is configured: Prometheus' own remote-read default
/// (`--storage.remote.read-sample-limit`), which bounds a response to a few hundred megabytes.
pub const DEFAULT_SAMPLE_LIMIT: u64 = 50_000_000;

/// A remote-read answer in the response type the client asked for.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// One `ReadResponse` with every sample in range.
    Samples(ReadResponse),
    /// The frames of a STREAMED_XOR_CHUNKS answer, already framed.
    Chunks(Vec<u8>),
}

/// Answers every query of `request`, each from one tenant's storage: the tenant a query's
/// equality matcher on the tenant label names (as a Prometheus with that external label sends),
/// else `tenant` (the request's header). As Thanos' stores do, matchers on external labels
/// select or deselect the tenant's data as a whole, and every series is returned with the
/// external labels attached. An unknown tenant has no series. The answer is streamed chunks when
/// the client lists STREAMED_XOR_CHUNKS first, as Prometheus negotiates, else samples.
pub fn remote_read(
    tsdb: &MultiTsdb,
    tenant: &str,
    request: &ReadRequest,
    limits: ReadLimits,
) -> Result<Answer, ReadError> {
    let sample_limit = match limits.samples {
        0 => DEFAULT_SAMPLE_LIMIT,
        n => n,
    };
    let streamed =
        request.accepted_response_types.first() == Some(&(ResponseType::StreamedXorChunks as i32));
    let (mut series, mut samples) = (0u64, 0u64);
    let mut results = Vec::with_capacity(request.queries.len());
    let mut frames = Vec::new();
    for (index, query) in request.queries.iter().enumerate() {
        let budget = Budget {
            series: limits.series,
            samples: sample_limit,
        };
        let (found, external) = select(tsdb, tenant, query, budget)?;
        series += found.len() as u64;
        samples += found
            .iter()
            .flat_map(|s| &s.chunks)
            .map(|c| c.num_samples())
            .sum::<u64>();
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
        if streamed {
            put_chunked(&found, &external, index as i64, &mut frames);
        } else {
            results.push(samples_result(&found, &external, query));
        }
    }
    Ok(match streamed {
        true => Answer::Chunks(frames),
        false => Answer::Samples(ReadResponse { results }),
    })
}

/// The series one query selects, with the external labels of the tenant it reads.
fn select(
    tsdb: &MultiTsdb,
    tenant: &str,
    query: &Query,
    budget: Budget,
) -> Result<(Vec<ChunkSeries>, BTreeMap<String, String>), ReadError> {
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
    let found = match (tsdb.get(&tenant), on_series) {
        (Some(db), Some(on_series)) => db.select(
            &on_series,
            query.start_timestamp_ms,
            query.end_timestamp_ms,
            false,
            budget,
        )?,
        _ => Vec::new(),
    };
    Ok((found, external))
}

fn labels(s: &ChunkSeries, external: &BTreeMap<String, String>) -> Vec<v1::Label> {
    with_external(&s.labels, external)
        .into_iter()
        .map(|(name, value)| v1::Label {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
}

/// The samples of `found` inside the query's range, series without any left out.
fn samples_result(
    found: &[ChunkSeries],
    external: &BTreeMap<String, String>,
    query: &Query,
) -> QueryResult {
    let (start, end) = (query.start_timestamp_ms, query.end_timestamp_ms);
    let timeseries = found
        .iter()
        .filter_map(|s| {
            let inside = |t: i64| t >= start && t <= end;
            let mut samples = Vec::new();
            let mut histograms = Vec::new();
            for c in &s.chunks {
                match c.encoding {
                    ENCODING_HISTOGRAM => histograms.extend(
                        iter_histogram(&c.data)
                            .filter(|(t, _)| inside(*t))
                            .map(|(t, h)| v1::Histogram::from_int(t, &h)),
                    ),
                    ENCODING_FLOAT_HISTOGRAM => histograms.extend(
                        iter_float_histogram(&c.data)
                            .filter(|(t, _)| inside(*t))
                            .map(|(t, h)| v1::Histogram::from_float(t, &h)),
                    ),
                    _ => samples.extend(
                        iter_xor(&c.data)
                            .filter(|&(t, _)| inside(t))
                            .map(|(timestamp, value)| v1::Sample { value, timestamp }),
                    ),
                }
            }
            (!samples.is_empty() || !histograms.is_empty()).then(|| v1::TimeSeries {
                labels: labels(s, external),
                samples,
                histograms,
                ..Default::default()
            })
        })
        .collect();
    QueryResult { timeseries }
}

/// Frames `found` for query `index`: one frame per series, a series with more than
/// [`MAX_BYTES_IN_FRAME`] of chunks split over several frames, as Prometheus streams them.
fn put_chunked(
    found: &[ChunkSeries],
    external: &BTreeMap<String, String>,
    index: i64,
    out: &mut Vec<u8>,
) {
    for s in found {
        let labels = labels(s, external);
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut bytes = 0;
        for c in &s.chunks {
            if !chunks.is_empty() && bytes + c.data.len() > MAX_BYTES_IN_FRAME {
                put_series_frame(&labels, std::mem::take(&mut chunks), index, out);
                bytes = 0;
            }
            bytes += c.data.len();
            chunks.push(Chunk {
                min_time_ms: c.min_time,
                max_time_ms: c.max_time,
                // prometheus.Chunk.Encoding numbers are the TSDB encodings.
                r#type: i32::from(c.encoding),
                data: c.data.to_vec(),
            });
        }
        if !chunks.is_empty() {
            put_series_frame(&labels, chunks, index, out);
        }
    }
}

fn put_series_frame(labels: &[v1::Label], chunks: Vec<Chunk>, index: i64, out: &mut Vec<u8>) {
    let frame = ChunkedReadResponse {
        chunked_series: vec![ChunkedSeries {
            labels: labels.to_vec(),
            chunks,
        }],
        query_index: index,
    };
    put_frame(&frame, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{SeriesVec, TsdbOptions};
    use crate::wire::remote_read::CHUNK_XOR;
    use crate::wire::remote_read::{LabelMatcher, MatchType};

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
        match remote_read(tsdb, tenant, &request, limits)? {
            Answer::Samples(r) => Ok(r),
            Answer::Chunks(_) => panic!("samples were asked for"),
        }
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

    #[test]
    fn native_histograms_come_back_as_histograms_or_histogram_chunks() {
        use crate::tsdb::{HistogramSample, HistogramValue};
        use tsdb_format::histogram::Histogram;
        let dir = tempfile::tempdir().unwrap();
        let tsdb = MultiTsdb::new(dir.path(), TsdbOptions::default());
        let db = tsdb.tenant("a").unwrap();
        let h = |t: i64| HistogramSample {
            t,
            h: HistogramValue::Int(Histogram {
                count: 2,
                zero_count: 2,
                sum: t as f64,
                ..Histogram::default()
            }),
        };
        let src =
            SeriesVec::new().with_histograms(&[("__name__", "h")], vec![h(10), h(20), h(200)]);
        let resolved = db.resolve(&src, &[0], 0).unwrap();
        db.append(&src, &[0], &resolved.refs).unwrap();
        let r = read(
            &tsdb,
            "a",
            vec![matcher(MatchType::Eq, "__name__", "h")],
            ReadLimits::default(),
        )
        .unwrap();
        let ts = &r.results[0].timeseries[0];
        assert!(ts.samples.is_empty());
        let got: Vec<(i64, f64)> = ts.histograms.iter().map(|x| (x.timestamp, x.sum)).collect();
        assert_eq!(got, [(10, 10.0), (20, 20.0)], "inside [0, 100] only");
        assert_eq!(
            ts.histograms[1],
            v1::Histogram::from_int(
                20,
                &match &h(20).h {
                    HistogramValue::Int(x) => Histogram {
                        hint: tsdb_format::histogram::CounterResetHint::NotCounterReset,
                        ..x.clone()
                    },
                    HistogramValue::Float(_) => unreachable!(),
                }
            )
        );

        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: 100,
                matchers: vec![matcher(MatchType::Eq, "__name__", "h")],
            }],
            accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
        };
        let Answer::Chunks(body) =
            remote_read(&tsdb, "a", &request, ReadLimits::default()).unwrap()
        else {
            panic!("chunks were asked for");
        };
        let frames = crate::wire::remote_read::read_frames(&body).unwrap();
        let chunk = &frames[0].chunked_series[0].chunks[0];
        // prometheus.Chunk.Encoding.HISTOGRAM.
        assert_eq!(chunk.r#type, 2);
        assert_eq!(
            tsdb_format::chunkenc::iter_histogram(&chunk.data).count(),
            3
        );
    }

    #[test]
    fn streams_chunks_when_the_client_accepts_them_first() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = MultiTsdb::new(dir.path(), TsdbOptions::default());
        let db = tsdb.tenant("a").unwrap();
        for job in ["api", "web"] {
            let samples: Vec<(i64, f64)> = (0..150).map(|i| (i, i as f64)).collect();
            let src = SeriesVec::new().with(&[("__name__", "up"), ("job", job)], &samples);
            let resolved = db.resolve(&src, &[0], 0).unwrap();
            db.append(&src, &[0], &resolved.refs).unwrap();
        }
        let query = |job: &str| Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 100,
            matchers: vec![matcher(MatchType::Eq, "job", job)],
        };
        let request = ReadRequest {
            queries: vec![query("api"), query("web")],
            accepted_response_types: vec![
                ResponseType::StreamedXorChunks as i32,
                ResponseType::Samples as i32,
            ],
        };
        let Answer::Chunks(body) =
            remote_read(&tsdb, "a", &request, ReadLimits::default()).unwrap()
        else {
            panic!("chunks were asked for first");
        };
        let frames = crate::wire::remote_read::read_frames(&body).unwrap();
        assert_eq!(frames.len(), 2, "one frame per series");
        for (index, frame) in frames.iter().enumerate() {
            assert_eq!(frame.query_index, index as i64);
            let series = &frame.chunked_series[0];
            assert_eq!(series.labels.last().unwrap().value, "a", "tenant label");
            // Whole chunks as stored: the first chunk (120 samples) overlaps [0, 100], the
            // second (30) does not; the client trims to the range.
            let samples: Vec<(i64, f64)> = series
                .chunks
                .iter()
                .inspect(|c| assert_eq!(c.r#type, CHUNK_XOR))
                .flat_map(|c| iter_xor(&c.data))
                .collect();
            assert_eq!(samples.len(), 120);
        }
        let samples_first = ReadRequest {
            accepted_response_types: vec![
                ResponseType::Samples as i32,
                ResponseType::StreamedXorChunks as i32,
            ],
            ..request
        };
        assert!(matches!(
            remote_read(&tsdb, "a", &samples_first, ReadLimits::default()),
            Ok(Answer::Samples(_))
        ));
    }
}
