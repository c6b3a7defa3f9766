//! The out-of-order window end to end: with `--tsdb.out-of-order.time-window=15m`, a sender that
//! comes back from a network split and replays the last ten minutes gets 2xx and nothing is
//! stored twice; a sample outside the window gets 409 with the reason; kill -9 loses none of the
//! late samples; the block cut on shutdown holds every sample once, in order, and promtool
//! accepts it.

use std::process::Command;

use e2e::{Receiver, block_dirs, metric_sum, now_ms, post_v1};
use receiver::wire::messages::{snappy, v1};
use tsdb_format::Block;

const MIN: i64 = 60_000;
const STEP: i64 = 15_000;

/// One request with `series` series, each holding the samples of minutes `[from, to)` (every
/// 15 s) after `t0`, valued by their time.
fn request(t0: i64, series: usize, minutes: &[(i64, i64)]) -> Vec<u8> {
    let timeseries = (0..series)
        .map(|i| {
            let id = i.to_string();
            let samples: Vec<(i64, f64)> = minutes
                .iter()
                .flat_map(|&(from, to)| (from * MIN / STEP..to * MIN / STEP).map(|k| k * STEP))
                .map(|dt| (t0 + dt, (dt / STEP) as f64 + i as f64 * 1000.0))
                .collect();
            v1::series(&[("__name__", "late_test"), ("series", &id)], &samples)
        })
        .collect();
    snappy(&v1::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_replaying_ten_minutes_inside_the_window_gets_2xx_and_no_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let client = reqwest::Client::new();
    let flags = vec!["--tsdb.out-of-order.time-window=15m".to_string()];
    let mut recv = Receiver::start(&data, &flags);
    recv.wait_ready(&client).await;
    let url = recv.write_url();
    const SERIES: usize = 50;
    let t0 = (now_ms() - 41 * MIN) / STEP * STEP;

    // Minutes 0-40 arrive, except 25-35, which a network split holds back.
    let (s, b) = post_v1(
        &client,
        &url,
        request(t0, SERIES, &[(0, 25), (35, 40)]),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // The sender comes back and replays its last ten minutes (30-40, half of them stored
    // already) and what the split held back.
    let (s, b) = post_v1(&client, &url, request(t0, SERIES, &[(25, 40)]), None).await;
    assert_eq!(s, 200, "{b}");
    // A second replay of the same: duplicates, accepted silently.
    let (s, b) = post_v1(&client, &url, request(t0, SERIES, &[(25, 40)]), None).await;
    assert_eq!(s, 200, "{b}");
    // Minute 20 is more than 15 minutes behind the newest sample (minute 40): refused.
    let (s, b) = post_v1(&client, &url, request(t0, 1, &[(20, 21)]), None).await;
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("too old sample"), "{b}");
    let text = recv.metrics_text(&client).await.unwrap();
    assert_eq!(
        metric_sum(
            &text,
            "prometheus_tsdb_head_out_of_order_samples_appended_total",
            &[]
        ),
        (SERIES * 40) as f64
    );
    assert!(
        metric_sum(
            &text,
            "thanos_receive_rejected_samples_total",
            &[("reason", "too_old")]
        ) >= 4.0
    );

    // kill -9: the late samples come back from the WAL.
    recv.kill9();
    let mut recv = Receiver::start_on(&data, recv.rw_port, recv.http_port, recv.grpc_port, &flags);
    recv.wait_ready(&client).await;
    // Writes go on after the restart.
    let (s, b) = post_v1(&client, &url, request(t0, SERIES, &[(40, 41)]), None).await;
    assert_eq!(s, 200, "{b}");
    assert!(recv.terminate().success(), "{}", recv.log_text());

    let want = |i: usize| -> Vec<(i64, f64)> {
        (0..41 * MIN / STEP)
            .map(|k| (t0 + k * STEP, k as f64 + i as f64 * 1000.0))
            .collect()
    };
    let tenant_dir = data.join("default-tenant");
    let blocks = block_dirs(&tenant_dir);
    let mut got: std::collections::BTreeMap<String, Vec<(i64, f64)>> = Default::default();
    for dir in &blocks {
        for s in Block::open(dir).unwrap().series().unwrap() {
            let s = s.unwrap();
            let id = s
                .labels
                .iter()
                .find(|(n, _)| n == "series")
                .unwrap()
                .1
                .clone();
            got.entry(id).or_default().extend(s.samples);
        }
    }
    assert_eq!(got.len(), SERIES);
    for (id, samples) in got {
        let i: usize = id.parse().unwrap();
        assert_eq!(samples, want(i), "series {id}: every sample once, in order");
    }
    for dir in &blocks {
        let out = Command::new("promtool")
            .args(["tsdb", "analyze", tenant_dir.to_str().unwrap()])
            .arg(dir.file_name().unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool tsdb analyze: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
