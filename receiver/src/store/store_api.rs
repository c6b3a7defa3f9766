//! Thanos' `thanos.Store` API over every tenant: `Series`, `LabelNames` and `LabelValues`, as
//! Thanos Receive answers them through its proxy over per-tenant stores.
//!
//! Each tenant is a store whose external labels are the receiver's `--label`s and `tenant_id`:
//! matchers on them select or deselect the tenant as a whole (so `tenant_id="a"` reads only
//! tenant a), the remaining matchers select series, and every series carries the external labels
//! (minus the request's `without_replica_labels`). A request whose only matchers are external
//! labels is refused by each selected tenant, as Thanos refuses it: a warning, or an error when
//! partial responses are disabled. Series come sorted by their full label set.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tonic::Status;
use tonic::codegen::BoxFuture;
use xxhash_rust::xxh64::xxh64;

use crate::grpc::StoreMethods;
use crate::ingest::Ingester;

use crate::tsdb::{Budget, ChunkSeries, Matcher, MultiTsdb, TenantDb};
use crate::wire::info::Label;
use crate::wire::remote_read::LabelMatcher;
use crate::wire::store::{
    ABORT, AggrChunk, Chunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, Series, SeriesRequest, SeriesResponse, chunk_type, series_response,
};

use super::{ReadError, ReadLimits, Reads, series_matchers, to_matcher};

/// The `thanos.Store` service over every tenant's storage.
pub struct StoreService {
    reads: Arc<Reads>,
    ingester: Arc<Ingester>,
}

impl StoreService {
    /// The Store API through `reads`, answered once `ingester` has replayed its WAL.
    pub fn new(reads: Arc<Reads>, ingester: Arc<Ingester>) -> Self {
        StoreService { reads, ingester }
    }

    /// Decodes a request, then answers it through the read runner (not before the WAL replay
    /// is done, when the head is incomplete: `Unavailable`, as Info answers).
    fn answer<Req, T>(
        self: &Arc<Self>,
        request: Bytes,
        f: fn(&MultiTsdb, &Req, ReadLimits) -> Result<T, ReadError>,
    ) -> BoxFuture<T, Status>
    where
        Req: Message + Default + Send + 'static,
        T: Send + 'static,
    {
        let this = Arc::clone(self);
        Box::pin(async move {
            if !this.ingester.is_ready() {
                return Err(Status::unavailable("Not ready"));
            }
            let request = Req::decode(request)
                .map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))?;
            this.reads
                .run(move |tsdb, limits| f(tsdb, &request, limits))
                .await
                .map_err(|e| e.grpc_status())
        })
    }
}

impl StoreMethods for StoreService {
    fn series(self: &Arc<Self>, request: Bytes) -> BoxFuture<Vec<Bytes>, Status> {
        self.answer(request, |tsdb, request: &SeriesRequest, limits| {
            let frames = series(tsdb, request, limits)?;
            Ok(frames
                .iter()
                .map(|f| Bytes::from(f.encode_to_vec()))
                .collect())
        })
    }

    fn label_names(self: &Arc<Self>, request: Bytes) -> BoxFuture<Bytes, Status> {
        self.answer(request, |tsdb, request: &LabelNamesRequest, limits| {
            let (names, warnings) = label_names(tsdb, request, limits)?;
            Ok(Bytes::from(
                LabelNamesResponse { names, warnings }.encode_to_vec(),
            ))
        })
    }

    fn label_values(self: &Arc<Self>, request: Bytes) -> BoxFuture<Bytes, Status> {
        self.answer(request, |tsdb, request: &LabelValuesRequest, limits| {
            let (values, warnings) = label_values(tsdb, request, limits)?;
            Ok(Bytes::from(
                LabelValuesResponse { values, warnings }.encode_to_vec(),
            ))
        })
    }
}

/// Largest frame of the `Series` stream, in chunk bytes: Thanos' `RemoteReadFrameLimit`. A series
/// with more chunks is sent in several frames with the same labels, as Thanos does.
pub const FRAME_BYTES: usize = 1 << 20;

/// What Thanos answers for a request whose only matchers are on external labels.
const NO_SERIES_MATCHERS: &str = "no matchers specified (excluding external labels)";

/// How one tenant takes part in a request.
enum Part<'a> {
    /// The tenant's external labels rule it out.
    Deselected,
    /// The tenant is selected but no matcher is left for its series.
    NoMatchers,
    /// Select the tenant's series with these matchers; attach these external labels.
    Select(Vec<Matcher>, BTreeMap<String, String>, &'a TenantDb),
}

/// What a tenant left without series matchers does.
#[derive(Clone, Copy)]
enum Unmatched {
    /// Refuse, as `Series` does: an error when `abort`, else a warning.
    Refuse { abort: bool },
    /// Read every series, as `LabelNames` and `LabelValues` do.
    AllSeries,
}

/// The tenants a request reads and how, with the warnings it earns.
fn plan<'a>(
    tenants: &'a [std::sync::Arc<TenantDb>],
    tsdb: &MultiTsdb,
    matchers: &[LabelMatcher],
    without: &[String],
    empty: Unmatched,
) -> Result<(Vec<Part<'a>>, Vec<String>), ReadError> {
    let matchers = matchers
        .iter()
        .map(to_matcher)
        .collect::<Result<Vec<_>, _>>()?;
    let mut warnings = Vec::new();
    let mut parts = Vec::with_capacity(tenants.len());
    for db in tenants {
        let external = tsdb.external_labels(&db.name);
        let part = match series_matchers(matchers.clone(), &external) {
            None => Part::Deselected,
            Some(m) if m.is_empty() && matches!(empty, Unmatched::Refuse { .. }) => {
                Part::NoMatchers
            }
            Some(mut m) => {
                if m.is_empty() {
                    m.push(Matcher::regex("__name__", ".+").expect("a valid regex"));
                }
                let mut attach = external;
                attach.retain(|n, _| !without.contains(n));
                Part::Select(m, attach, db)
            }
        };
        if let (Part::NoMatchers, Unmatched::Refuse { abort }) = (&part, empty) {
            if abort {
                return Err(ReadError::BadRequest(NO_SERIES_MATCHERS.into()));
            }
            if warnings.is_empty() {
                warnings.push(NO_SERIES_MATCHERS.to_string());
            }
        }
        parts.push(part);
    }
    Ok((parts, warnings))
}

/// A series' labels with external labels attached (they win), sorted by name.
fn final_labels(s: &ChunkSeries, attach: &BTreeMap<String, String>) -> Vec<Label> {
    super::with_external(&s.labels, attach)
        .into_iter()
        .map(|(name, value)| Label {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
}

/// Answers `Series` with the stream's frames: warnings first, then the series sorted by labels,
/// each split into frames of at most [`FRAME_BYTES`] of chunks.
pub fn series(
    tsdb: &MultiTsdb,
    request: &SeriesRequest,
    limits: ReadLimits,
) -> Result<Vec<SeriesResponse>, ReadError> {
    let abort = request.partial_response_disabled || request.partial_response_strategy == ABORT;
    let tenants = tsdb.tenants();
    let (parts, warnings) = plan(
        &tenants,
        tsdb,
        &request.matchers,
        &request.without_replica_labels,
        Unmatched::Refuse { abort },
    )?;
    let mut found: Vec<(Vec<Label>, Vec<AggrChunk>)> = Vec::new();
    let (mut series, mut samples) = (0u64, 0u64);
    for part in parts {
        let Part::Select(matchers, attach, db) = part else {
            continue;
        };
        let budget = Budget {
            series: limits.series.saturating_sub(series),
            samples: limits.samples.saturating_sub(samples),
        };
        for s in db.select(
            &matchers,
            request.min_time,
            request.max_time,
            request.skip_chunks,
            budget,
        )? {
            series += 1;
            samples += s.chunks.iter().map(|c| c.num_samples()).sum::<u64>();
            check(limits, series, samples)?;
            let chunks = s
                .chunks
                .iter()
                .map(|c| AggrChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    raw: Some(Chunk {
                        r#type: chunk_type(c.encoding),
                        data: c.data.to_vec(),
                        hash: xxh64(&c.data, 0),
                    }),
                })
                .collect();
            found.push((final_labels(&s, &attach), chunks));
        }
    }
    found.sort_by(|a, b| compare(&a.0, &b.0));
    if let Ok(limit) = usize::try_from(request.limit)
        && limit > 0
    {
        found.truncate(limit);
    }
    let mut frames: Vec<SeriesResponse> = warnings
        .into_iter()
        .map(|w| SeriesResponse {
            result: Some(series_response::Result::Warning(w)),
        })
        .collect();
    for (labels, chunks) in found {
        for chunks in split_frames(chunks) {
            frames.push(SeriesResponse {
                result: Some(series_response::Result::Series(Series {
                    labels: labels.clone(),
                    chunks,
                })),
            });
        }
    }
    Ok(frames)
}

/// Refuses an answer past the request limits (which a budget of 0 would not catch once reached).
fn check(limits: ReadLimits, series: u64, samples: u64) -> Result<(), ReadError> {
    if limits.series > 0 && series > limits.series {
        return Err(ReadError::Limit(format!(
            "more than the limit of {} series match",
            limits.series
        )));
    }
    if limits.samples > 0 && samples > limits.samples {
        return Err(ReadError::Limit(format!(
            "the matching series hold more than the limit of {} samples",
            limits.samples
        )));
    }
    Ok(())
}

/// Orders label lists as Prometheus' `labels.Compare`.
fn compare(a: &[Label], b: &[Label]) -> std::cmp::Ordering {
    a.iter()
        .map(|l| (&l.name, &l.value))
        .cmp(b.iter().map(|l| (&l.name, &l.value)))
}

/// Groups a series' chunks into frames of at most [`FRAME_BYTES`] (at least one chunk each, and
/// one empty frame for a series sent without chunks).
fn split_frames(chunks: Vec<AggrChunk>) -> Vec<Vec<AggrChunk>> {
    let mut frames = vec![Vec::new()];
    let mut bytes = 0;
    for c in chunks {
        let size = c.raw.as_ref().map_or(0, |r| r.data.len());
        let frame = frames.last_mut().expect("one frame at least");
        if !frame.is_empty() && bytes + size > FRAME_BYTES {
            frames.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        frames.last_mut().expect("one frame at least").push(c);
    }
    frames
}

/// The label sets of the series a label request covers, external labels attached.
fn label_sets(
    tsdb: &MultiTsdb,
    matchers: &[LabelMatcher],
    without: &[String],
    range: (i64, i64),
    limits: ReadLimits,
) -> Result<(Vec<Vec<Label>>, Vec<String>), ReadError> {
    let tenants = tsdb.tenants();
    let (parts, warnings) = plan(&tenants, tsdb, matchers, without, Unmatched::AllSeries)?;
    let mut sets = Vec::new();
    for part in parts {
        let Part::Select(matchers, attach, db) = part else {
            continue;
        };
        let budget = Budget {
            series: limits.series.saturating_sub(sets.len() as u64),
            samples: 0,
        };
        for s in db.select(&matchers, range.0, range.1, true, budget)? {
            sets.push(final_labels(&s, &attach));
            check(limits, sets.len() as u64, 0)?;
        }
    }
    Ok((sets, warnings))
}

/// The distinct strings, sorted, at most a request's `limit` of them (0: no limit).
fn sorted_distinct(strings: impl Iterator<Item = String>, limit: i64) -> Vec<String> {
    let mut out: Vec<String> = strings
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Ok(limit) = usize::try_from(limit)
        && limit > 0
    {
        out.truncate(limit);
    }
    out
}

/// Answers `LabelNames`: names of the matching series' labels, external ones included, sorted;
/// with warnings. Matchers only on external labels (or none) cover every series.
pub fn label_names(
    tsdb: &MultiTsdb,
    request: &LabelNamesRequest,
    limits: ReadLimits,
) -> Result<(Vec<String>, Vec<String>), ReadError> {
    let range = (request.start, request.end);
    let (sets, warnings) = label_sets(
        tsdb,
        &request.matchers,
        &request.without_replica_labels,
        range,
        limits,
    )?;
    let names = sets.into_iter().flatten().map(|l| l.name);
    Ok((sorted_distinct(names, request.limit), warnings))
}

/// Answers `LabelValues`: values of one label over the matching series, sorted; with warnings.
pub fn label_values(
    tsdb: &MultiTsdb,
    request: &LabelValuesRequest,
    limits: ReadLimits,
) -> Result<(Vec<String>, Vec<String>), ReadError> {
    let range = (request.start, request.end);
    let (sets, warnings) = label_sets(
        tsdb,
        &request.matchers,
        &request.without_replica_labels,
        range,
        limits,
    )?;
    let values = sets
        .into_iter()
        .flatten()
        .filter(|l| l.name == request.label)
        .map(|l| l.value);
    Ok((sorted_distinct(values, request.limit), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{SeriesVec, TsdbOptions};
    use crate::wire::remote_read::MatchType;
    use crate::wire::store::CHUNK_XOR;

    fn m(t: MatchType, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    fn store() -> (tempfile::TempDir, MultiTsdb) {
        let dir = tempfile::tempdir().unwrap();
        let opts = TsdbOptions {
            external_labels: [("replica".to_string(), "r1".to_string())].into(),
            ..TsdbOptions::default()
        };
        let tsdb = MultiTsdb::new(dir.path(), opts);
        for (tenant, job, n) in [("a", "api", 300), ("a", "web", 1), ("b", "api", 1)] {
            let db = tsdb.tenant(tenant).unwrap();
            let samples: Vec<(i64, f64)> = (0..n).map(|i| (i * 1000, i as f64)).collect();
            let src = SeriesVec::new().with(&[("__name__", "up"), ("job", job)], &samples);
            let resolved = db.resolve(&src, &[0], 0).unwrap();
            db.append(&src, &[0], &resolved.refs).unwrap();
        }
        (dir, tsdb)
    }

    fn request(matchers: Vec<LabelMatcher>) -> SeriesRequest {
        SeriesRequest {
            min_time: i64::MIN,
            max_time: i64::MAX,
            matchers,
            ..SeriesRequest::default()
        }
    }

    fn labels_of(frames: &[SeriesResponse]) -> Vec<String> {
        frames
            .iter()
            .filter_map(|f| match &f.result {
                Some(series_response::Result::Series(s)) => Some(
                    s.labels
                        .iter()
                        .map(|l| format!("{}={}", l.name, l.value))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn series_of_every_tenant_sorted_with_external_labels() {
        let (_dir, tsdb) = store();
        let frames = series(
            &tsdb,
            &request(vec![m(MatchType::Eq, "__name__", "up")]),
            ReadLimits::default(),
        )
        .unwrap();
        assert_eq!(
            labels_of(&frames),
            [
                "__name__=up,job=api,replica=r1,tenant_id=a",
                "__name__=up,job=api,replica=r1,tenant_id=b",
                "__name__=up,job=web,replica=r1,tenant_id=a",
            ]
        );
        let Some(series_response::Result::Series(first)) = &frames[0].result else {
            panic!("a series first");
        };
        // 300 samples: chunks of 120, 120 and 60, XOR with their xxHash64.
        assert_eq!(first.chunks.len(), 3);
        let raw = first.chunks[0].raw.as_ref().unwrap();
        assert_eq!(raw.hash, xxh64(&raw.data, 0));
        let decoded: Vec<_> = tsdb_format::chunkenc::iter_xor(&raw.data).collect();
        assert_eq!(decoded.len(), 120);
        assert_eq!(decoded[1], (1000, 1.0));
    }

    #[test]
    fn native_histograms_are_served_as_histogram_chunks() {
        use crate::tsdb::{HistogramSample, HistogramValue};
        use tsdb_format::histogram::{FloatHistogram, Histogram};
        let (_dir, tsdb) = store();
        let db = tsdb.tenant("a").unwrap();
        let int = |t: i64| HistogramSample {
            t,
            h: HistogramValue::Int(Histogram {
                count: t as u64,
                zero_count: t as u64,
                ..Histogram::default()
            }),
        };
        let float = |t: i64| HistogramSample {
            t,
            h: HistogramValue::Float(FloatHistogram {
                count: 0.5,
                zero_count: 0.5,
                ..FloatHistogram::default()
            }),
        };
        let src = SeriesVec::new()
            .with_histograms(&[("__name__", "h"), ("kind", "int")], vec![int(1), int(2)])
            .with_histograms(&[("__name__", "h"), ("kind", "float")], vec![float(3)]);
        let resolved = db.resolve(&src, &[0, 1], 0).unwrap();
        db.append(&src, &[0, 1], &resolved.refs).unwrap();
        let frames = series(
            &tsdb,
            &request(vec![m(MatchType::Eq, "__name__", "h")]),
            ReadLimits::default(),
        )
        .unwrap();
        let types: Vec<(String, i32)> = frames
            .iter()
            .filter_map(|f| match &f.result {
                Some(series_response::Result::Series(s)) => Some((
                    s.labels[1].value.clone(),
                    s.chunks[0].raw.as_ref().unwrap().r#type,
                )),
                _ => None,
            })
            .collect();
        // thanos.Chunk.Encoding: HISTOGRAM 1, FLOAT_HISTOGRAM 2.
        assert_eq!(types, [("float".to_string(), 2), ("int".to_string(), 1)]);
    }

    #[test]
    fn tenant_matcher_selects_one_tenant_and_replica_labels_can_be_dropped() {
        let (_dir, tsdb) = store();
        let mut r = request(vec![
            m(MatchType::Eq, "tenant_id", "b"),
            m(MatchType::Re, "job", ".+"),
        ]);
        r.without_replica_labels = vec!["replica".into()];
        r.skip_chunks = true;
        let frames = series(&tsdb, &r, ReadLimits::default()).unwrap();
        assert_eq!(labels_of(&frames), ["__name__=up,job=api,tenant_id=b"]);
        let Some(series_response::Result::Series(s)) = &frames[0].result else {
            panic!("a series");
        };
        assert!(s.chunks.is_empty(), "skip_chunks");
    }

    #[test]
    fn only_external_matchers_warn_or_fail_as_thanos() {
        let (_dir, tsdb) = store();
        let mut r = request(vec![m(MatchType::Eq, "tenant_id", "a")]);
        let frames = series(&tsdb, &r, ReadLimits::default()).unwrap();
        assert_eq!(
            frames,
            [SeriesResponse {
                result: Some(series_response::Result::Warning(NO_SERIES_MATCHERS.into())),
            }]
        );
        r.partial_response_strategy = ABORT;
        assert!(matches!(
            series(&tsdb, &r, ReadLimits::default()),
            Err(ReadError::BadRequest(_))
        ));
        // A tenant the external labels rule out adds nothing, not even a warning.
        let r = request(vec![m(MatchType::Eq, "replica", "other")]);
        assert!(series(&tsdb, &r, ReadLimits::default()).unwrap().is_empty());
    }

    #[test]
    fn limits_and_request_limit() {
        let (_dir, tsdb) = store();
        let up = vec![m(MatchType::Eq, "__name__", "up")];
        let limited = series(
            &tsdb,
            &request(up.clone()),
            ReadLimits {
                series: 2,
                samples: 0,
            },
        );
        assert!(matches!(limited, Err(ReadError::Limit(_))));
        let limited = series(
            &tsdb,
            &request(up.clone()),
            ReadLimits {
                series: 0,
                samples: 100,
            },
        );
        assert!(matches!(limited, Err(ReadError::Limit(_))));
        let mut r = request(up);
        r.limit = 1;
        assert_eq!(
            series(&tsdb, &r, ReadLimits::default()).unwrap().len(),
            1,
            "the request's own limit truncates"
        );
    }

    #[test]
    fn long_series_are_split_into_bounded_frames() {
        let chunk = |i| AggrChunk {
            min_time: i,
            max_time: i,
            raw: Some(Chunk {
                r#type: CHUNK_XOR,
                data: vec![0; FRAME_BYTES / 3],
                hash: 0,
            }),
        };
        let frames = split_frames((0..7).map(chunk).collect());
        assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(split_frames(Vec::new()), [Vec::<AggrChunk>::new()]);
    }

    #[test]
    fn label_names_and_values() {
        let (_dir, tsdb) = store();
        let names = LabelNamesRequest {
            start: i64::MIN,
            end: i64::MAX,
            ..LabelNamesRequest::default()
        };
        let (got, warnings) = label_names(&tsdb, &names, ReadLimits::default()).unwrap();
        assert_eq!(got, ["__name__", "job", "replica", "tenant_id"]);
        assert!(warnings.is_empty());
        let values = LabelValuesRequest {
            label: "job".into(),
            start: i64::MIN,
            end: i64::MAX,
            matchers: vec![m(MatchType::Eq, "tenant_id", "b")],
            ..LabelValuesRequest::default()
        };
        let (got, _) = label_values(&tsdb, &values, ReadLimits::default()).unwrap();
        assert_eq!(got, ["api"]);
        let tenants = LabelValuesRequest {
            label: "tenant_id".into(),
            start: i64::MIN,
            end: i64::MAX,
            ..LabelValuesRequest::default()
        };
        let (got, _) = label_values(&tsdb, &tenants, ReadLimits::default()).unwrap();
        assert_eq!(got, ["a", "b"]);
    }
}
