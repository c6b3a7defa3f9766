//! `thanos.Store` on the gRPC port, called as Thanos Query calls it: three receivers at RF=3 each
//! serve their own copy under their own replica label (so Query can deduplicate), and a `Series`
//! call racing head cuts returns every sample exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::{Cluster, Receiver, now_ms, post_v1};
use prost::Message;
use receiver::grpc::{INFO_PATH, LABEL_VALUES_PATH, RawCodec, SERIES_PATH};
use receiver::wire::info::InfoResponse;
use receiver::wire::messages::{snappy, v1};
use receiver::wire::remote_read::{LabelMatcher, MatchType};
use receiver::wire::store::{
    LabelValuesRequest, LabelValuesResponse, SeriesRequest, SeriesResponse, series_response,
};

/// A series as a Store API client sees it: labels, and samples decoded from its chunks.
type Found = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

async fn call(port: u16, path: &'static str, request: Vec<u8>) -> Bytes {
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(port).await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(Bytes::from(request)),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .unwrap_or_else(|s| panic!("{path}: {s}"))
    .into_inner()
}

/// Calls `Series` and gathers its stream; a series split over frames is joined again.
async fn series(port: u16, request: &SeriesRequest) -> (Found, usize) {
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(port).await);
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(Bytes::from(request.encode_to_vec())),
            http::uri::PathAndQuery::from_static(SERIES_PATH),
            RawCodec,
        )
        .await
        .unwrap_or_else(|s| panic!("Series: {s}"))
        .into_inner();
    let mut found = Found::new();
    let mut frames = 0;
    let mut last: Option<Vec<(String, String)>> = None;
    while let Some(frame) = stream.message().await.expect("a frame") {
        frames += 1;
        let Some(series_response::Result::Series(s)) = SeriesResponse::decode(frame)
            .expect("a SeriesResponse")
            .result
        else {
            panic!("a warning where series were expected");
        };
        let labels: Vec<(String, String)> =
            s.labels.into_iter().map(|l| (l.name, l.value)).collect();
        if let Some(prev) = &last {
            assert!(
                prev <= &labels,
                "series out of order: {prev:?} then {labels:?}"
            );
        }
        let samples = found.entry(labels.clone()).or_default();
        for c in s.chunks {
            let raw = c.raw.expect("a raw chunk");
            assert_eq!(raw.hash, xxhash_rust::xxh64::xxh64(&raw.data, 0));
            samples.extend(tsdb_format::chunkenc::iter_xor(&raw.data));
        }
        last = Some(labels);
    }
    (found, frames)
}

fn all_time(matchers: Vec<LabelMatcher>) -> SeriesRequest {
    // Thanos Query asks for all time with the extremes of int64.
    SeriesRequest {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers,
        ..SeriesRequest::default()
    }
}

fn eq(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: MatchType::Eq as i32,
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_serves_its_copy_under_its_own_replica_label() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let cluster = Cluster::start(tmp.path(), 3, 3, 3, "ketama", &client).await;
    let t0 = now_ms() - 60_000;
    let written: Vec<(String, Vec<(i64, f64)>)> = (0..20)
        .map(|s| {
            let samples = (0..200)
                .map(|k| (t0 + k * 100, (s * 1000 + k) as f64))
                .collect();
            (format!("s{s}"), samples)
        })
        .collect();
    let body = snappy(&v1::WriteRequest {
        timeseries: written
            .iter()
            .map(|(s, samples)| v1::series(&[("__name__", "store_metric"), ("series", s)], samples))
            .collect(),
        metadata: vec![],
    });
    let (status, reason) = post_v1(&client, &cluster.receivers[0].write_url(), body, None).await;
    assert_eq!(status, 200, "{reason}");

    let mut without_replica = Vec::new();
    for (i, r) in cluster.receivers.iter().enumerate() {
        let (found, _) = series(r.grpc_port, &all_time(vec![eq("__name__", "store_metric")])).await;
        assert_eq!(found.len(), 20, "receiver {i} holds a copy of every series");
        for (labels, samples) in &found {
            let get = |n: &str| labels.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            assert_eq!(get("replica"), Some(format!("r{i}").as_str()), "{labels:?}");
            assert_eq!(get("tenant_id"), Some("default-tenant"));
            assert_eq!(get("receive"), Some("true"));
            let name = get("series").unwrap();
            let want = &written.iter().find(|(s, _)| s == name).unwrap().1;
            assert_eq!(
                samples, want,
                "receiver {i}, series {name}: every sample, once"
            );
        }
        // Thanos Query drops the replica label to deduplicate: then the copies are identical.
        let mut request = all_time(vec![eq("__name__", "store_metric")]);
        request.without_replica_labels = vec!["replica".into()];
        without_replica.push(series(r.grpc_port, &request).await.0);

        let values = LabelValuesResponse::decode(
            call(
                r.grpc_port,
                LABEL_VALUES_PATH,
                LabelValuesRequest {
                    label: "replica".into(),
                    start: i64::MIN,
                    end: i64::MAX,
                    ..LabelValuesRequest::default()
                }
                .encode_to_vec(),
            )
            .await,
        )
        .unwrap();
        assert_eq!(values.values, [format!("r{i}")]);

        let info = InfoResponse::decode(call(r.grpc_port, INFO_PATH, Vec::new()).await).unwrap();
        let store = info.store.expect("the Store API is announced");
        assert_eq!((store.min_time, store.max_time), (t0, i64::MAX));
    }
    assert!(without_replica.windows(2).all(|w| w[0] == w[1]));
    // Another tenant's read sees none of it.
    let (other, _) = series(
        cluster.receivers[1].grpc_port,
        &all_time(vec![
            eq("tenant_id", "other"),
            eq("__name__", "store_metric"),
        ]),
    )
    .await;
    assert!(other.is_empty());
}

const SERIES: usize = 20;
const STEP_MS: i64 = 1000;
const SAMPLES_PER_REQUEST: i64 = 10;

fn race_request(t0: i64, n: i64) -> Vec<u8> {
    let timeseries = (0..SERIES)
        .map(|s| {
            let samples: Vec<(i64, f64)> = (0..SAMPLES_PER_REQUEST)
                .map(|k| {
                    let t = t0 + (n * SAMPLES_PER_REQUEST + k) * STEP_MS;
                    (t, t as f64)
                })
                .collect();
            v1::series(
                &[("__name__", "race"), ("series", &s.to_string())],
                &samples,
            )
        })
        .collect();
    snappy(&v1::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_call_racing_head_cuts_returns_every_sample_once() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    // One-minute blocks cut every second: writes spanning half an hour keep the cutter busy.
    let mut recv = Receiver::start(
        &tmp.path().join("data"),
        &[
            "--tsdb.min-block-duration=1m".into(),
            "--tsdb.max-block-duration=1m".into(),
            "--tsdb.head-compaction-interval=1s".into(),
        ],
    );
    recv.wait_ready(&client).await;
    let t0 = (now_ms() - 30 * 60_000) / 60_000 * 60_000;
    let requests = 30 * 60 / SAMPLES_PER_REQUEST;
    let port = recv.grpc_port;
    let request = all_time(vec![eq("__name__", "race")]);

    // A reader calls Series back to back while the writes go on and the cutter runs.
    let acked = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (acked, stop, request) = (Arc::clone(&acked), Arc::clone(&stop), request.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                let before = acked.load(Ordering::Relaxed) * SAMPLES_PER_REQUEST;
                let (found, _) = series(port, &request).await;
                for (labels, samples) in &found {
                    assert!(
                        samples.len() as i64 >= before,
                        "{labels:?}: {} samples, {before} acknowledged before the call",
                        samples.len()
                    );
                    // Writes go in time order: a snapshot is a prefix, each sample once.
                    for (k, &(t, v)) in samples.iter().enumerate() {
                        let want = t0 + k as i64 * STEP_MS;
                        assert_eq!((t, v), (want, want as f64), "{labels:?}, sample {k}");
                    }
                }
                checks += 1;
            }
            checks
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < requests && Instant::now() < deadline {
        let (status, reason) = post_v1(&client, &recv.write_url(), race_request(t0, n), None).await;
        assert_eq!(status, 200, "request {n}: {reason}");
        n += 1;
        acked.store(n, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let checks = reader.await.expect("the reader's checks hold");
    let acked = n;
    assert_eq!(acked, requests, "the writes did not finish in time");
    let log = recv.log_text();
    let blocks = log.matches("block written").count();
    assert!(
        blocks >= 20 && checks >= 20,
        "{checks} checks raced {blocks} block cuts:\n{log}"
    );
    // Once the writes stop, the whole half hour, once.
    let (found, _) = series(port, &request).await;
    assert_eq!(found.len(), SERIES);
    for samples in found.values() {
        assert_eq!(samples.len() as i64, requests * SAMPLES_PER_REQUEST);
    }
    assert!(recv.terminate().success());
}
