//! Prometheus 2.42 with `remote_read` pointed at a receiver answers PromQL with exactly the values
//! written: over blocks only, the head only, and a range that spans both; one tenant's reads never
//! see another's series, and a tenant is named by the `tenant_id` external label. A client that
//! accepts STREAMED_XOR_CHUNKS gets the chunks as stored, each sample once across blocks and head.

use std::path::Path;
use std::time::Duration;

use e2e::prometheus::Prometheus;
use e2e::{Receiver, eventually, post_v1};
use receiver::wire::messages::{snappy, v1};

const STEP: i64 = 15_000;
const STEPS: i64 = 5 * 240; // five hours of 15 s samples
const H: i64 = 3_600_000;

fn value(job: &str, step: i64) -> f64 {
    match job {
        "a" => step as f64,
        _ => 10.0 * step as f64,
    }
}

/// The newest block's end (exclusive), once compaction has cut what it will.
fn newest_block_end(tenant_dir: &Path) -> Option<i64> {
    std::fs::read_dir(tenant_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|m| m["maxTime"].as_i64())
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_promql_over_blocks_and_head_through_remote_read() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let data = tmp.path().join("data");
    let mut recv = Receiver::start(&data, &["--tsdb.head-compaction-interval=200ms".into()]);
    recv.wait_ready(&client).await;
    let t0 = (e2e::now_ms() - STEPS * STEP - 60_000) / STEP * STEP;
    let t = |step: i64| t0 + step * STEP;
    for first in (0..STEPS).step_by(100) {
        let steps: Vec<i64> = (first..(first + 100).min(STEPS)).collect();
        let series = |job: &str, name: &str| {
            let samples: Vec<(i64, f64)> = steps.iter().map(|&s| (t(s), value(job, s))).collect();
            v1::series(&[("__name__", name), ("job", job)], &samples)
        };
        let body = snappy(&v1::WriteRequest {
            timeseries: vec![series("a", "rr_metric"), series("b", "rr_metric")],
            metadata: vec![],
        });
        let (status, text) = post_v1(&client, &recv.write_url(), body, None).await;
        assert_eq!(status, 200, "{text}");
    }
    // Another tenant's series under the same name must never be read back.
    let other = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(
            &[("__name__", "rr_metric"), ("job", "c")],
            &[(t(STEPS - 1), 7.0)],
        )],
        metadata: vec![],
    });
    assert_eq!(
        post_v1(&client, &recv.write_url(), other, Some("other"))
            .await
            .0,
        200
    );

    // Compaction cuts the oldest hours into blocks; the rest stays in the head.
    let tenant_dir = data.join("default-tenant");
    let block_end = eventually(Duration::from_secs(60), "blocks to be cut", || async {
        newest_block_end(&tenant_dir).filter(|&end| t(STEPS - 1) - end < 3 * H)
    })
    .await;
    assert!(
        block_end > t(40) && block_end < t(STEPS - 40),
        "{block_end}"
    );

    let prom = Prometheus::reader(
        &tmp.path().join("prom"),
        &format!("http://127.0.0.1:{}/api/v1/read", recv.rw_port),
        &[],
    );
    prom.wait_ready(&client).await;
    let step_at = |time: i64| (time - t0) / STEP;
    let aligned = |time: i64| (time - t0) / STEP * STEP + t0;

    // Blocks only, the head only: instant values, a sum and a rate.
    for (what, at) in [
        ("blocks", aligned(block_end - 30 * 60_000)),
        ("head", t(STEPS - 5)),
    ] {
        let k = step_at(at) as f64;
        let selector = prom.query(&client, "rr_metric", at).await;
        let mut values: Vec<(String, f64)> = selector
            .iter()
            .map(|(m, v)| (m["job"].as_str().unwrap().to_string(), *v))
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            values,
            vec![("a".to_string(), k), ("b".to_string(), 10.0 * k)],
            "{what}: only this tenant's series, with the values written"
        );
        let sum = prom.query(&client, "sum(rr_metric)", at).await;
        assert_eq!(sum[0].1, 11.0 * k, "{what}");
        let rate = prom
            .query(&client, r#"rate(rr_metric{job="a"}[5m])"#, at)
            .await;
        assert!(
            (rate[0].1 - 1.0 / 15.0).abs() < 1e-9,
            "{what}: rate {}",
            rate[0].1
        );
    }

    // A window across the block/head boundary: every sample exactly once.
    let at = aligned(block_end + 10 * 60_000);
    let k = step_at(at);
    let count = prom
        .query(&client, r#"count_over_time(rr_metric{job="a"}[20m])"#, at)
        .await;
    // Prometheus 2.x ranges include both ends: 81 samples of 15 s in [at - 20m, at].
    assert_eq!(count[0].1, 81.0);
    let sum = prom
        .query(&client, r#"sum_over_time(rr_metric{job="a"}[20m])"#, at)
        .await;
    let want: i64 = (k - 80..=k).sum();
    assert_eq!(sum[0].1, want as f64);
    let regex = prom
        .query(&client, r#"count(rr_metric{job=~"a|b", job!~"b"})"#, at)
        .await;
    assert_eq!(regex[0].1, 1.0);

    // The other tenant's Prometheus names it with its `tenant_id` external label.
    let theirs = Prometheus::reader(
        &tmp.path().join("prom-other"),
        &format!("http://127.0.0.1:{}/api/v1/read", recv.rw_port),
        &[("tenant_id", "other")],
    );
    theirs.wait_ready(&client).await;
    let seen = theirs.query(&client, "rr_metric", t(STEPS - 1)).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0["job"], "c");
    assert_eq!(seen[0].1, 7.0);
    assert!(recv.terminate().success(), "{}", recv.log_text());
}

/// Posts a remote-read request that accepts streamed chunks first; returns the content type and
/// the samples of each series, decoded from the frames as Prometheus' client reads them.
async fn read_streamed(
    client: &reqwest::Client,
    recv: &Receiver,
    query: receiver::wire::remote_read::Query,
) -> (String, Vec<(String, Vec<(i64, f64)>)>) {
    use receiver::wire::remote_read::{ReadRequest, ResponseType, encode_request, read_frames};
    let request = ReadRequest {
        queries: vec![query],
        accepted_response_types: vec![
            ResponseType::StreamedXorChunks as i32,
            ResponseType::Samples as i32,
        ],
    };
    let body = encode_request(&request);
    let r = client
        .post(format!("http://127.0.0.1:{}/api/v1/read", recv.rw_port))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = r.bytes().await.unwrap();
    let mut series: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
    // Each frame's CRC32C is checked as Prometheus' client checks it.
    for frame in read_frames(&bytes).expect("well-formed frames") {
        for s in frame.chunked_series {
            let name = s
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            let samples = s
                .chunks
                .iter()
                .flat_map(|c| tsdb_format::chunkenc::iter_xor(&c.data))
                .collect::<Vec<_>>();
            match series.last_mut() {
                Some((last, more)) if *last == name => more.extend(samples),
                _ => series.push((name, samples)),
            }
        }
    }
    (content_type, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_cover_blocks_and_head_each_sample_once() {
    use receiver::wire::remote_read::{LabelMatcher, MatchType, Query};
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let data = tmp.path().join("data");
    let t0 = (e2e::now_ms() - 3 * H) / (2 * H) * (2 * H);
    let write = |from: i64, to: i64| {
        let samples: Vec<(i64, f64)> = (from..to).map(|k| (t0 + k * STEP, k as f64)).collect();
        snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(
                &[("__name__", "streamed"), ("job", "a")],
                &samples,
            )],
            metadata: vec![],
        })
    };
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;
    let (status, reason) = post_v1(&client, &recv.write_url(), write(0, 600), None).await;
    assert_eq!(status, 200, "{reason}");
    // A graceful stop cuts the head into blocks; the next samples go to a fresh head.
    assert!(recv.terminate().success());
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;
    let (status, reason) = post_v1(&client, &recv.write_url(), write(600, 700), None).await;
    assert_eq!(status, 200, "{reason}");

    let query = Query {
        start_timestamp_ms: t0,
        end_timestamp_ms: t0 + 700 * STEP,
        matchers: vec![LabelMatcher {
            r#type: MatchType::Eq as i32,
            name: "__name__".into(),
            value: "streamed".into(),
        }],
    };
    let (content_type, series) = read_streamed(&client, &recv, query).await;
    assert_eq!(
        content_type,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    assert_eq!(series.len(), 1);
    let want: Vec<(i64, f64)> = (0..700).map(|k| (t0 + k * STEP, k as f64)).collect();
    assert_eq!(series[0].1, want, "blocks then head, each sample once");
    assert!(series[0].0.contains("tenant_id=default-tenant"));
    assert!(recv.terminate().success());
}
