//! kill -9 under load, restart: every acknowledged sample is still there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::{Receiver, post_v1};
use receiver::tsdb::{Budget, Matcher, TenantDb, TsdbOptions};
use receiver::wire::messages::{snappy, v1};

/// Requests the receiver answered 2xx: (writer, request number).
type Acked = std::sync::Mutex<Vec<(usize, i64)>>;

const SERIES_PER_WRITER: usize = 200;
const WRITERS: usize = 4;

fn request(writer: usize, n: i64) -> Vec<u8> {
    let timeseries = (0..SERIES_PER_WRITER)
        .map(|s| {
            let (w, s) = (writer.to_string(), s.to_string());
            v1::series(
                &[("__name__", "crash_test"), ("series", &s), ("writer", &w)],
                &[(1_700_000_000_000 + n * 1000, n as f64)],
            )
        })
        .collect();
    snappy(&v1::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;

    let acked = Arc::new(Acked::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, url, acked, stop) = (
            client.clone(),
            recv.write_url(),
            acked.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .body(request(w, n))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().push((w, n));
                        n += 1;
                    }
                    Ok(r) => panic!("unexpected status {} before the crash", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let a few hundred requests through, then kill without warning while writers are mid-flight.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recv.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    // The restarted receiver replays its WAL, becomes ready and accepts writes again.
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;
    let (status, body) = post_v1(&client, &recv.write_url(), request(0, 1_000_000), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(recv.terminate().success());

    let (db, stats) = TenantDb::open(
        &data.join("default-tenant"),
        "default-tenant",
        TsdbOptions::default(),
    )
    .unwrap();
    assert!(
        !stats.replay.repaired,
        "a clean shutdown leaves nothing to repair"
    );
    for w in 0..WRITERS {
        let writer = w.to_string();
        let series = db
            .query(
                &[
                    Matcher::Equal("__name__".into(), "crash_test".into()),
                    Matcher::Equal("writer".into(), writer.clone()),
                ],
                i64::MIN,
                i64::MAX,
                Budget::default(),
            )
            .unwrap();
        assert_eq!(series.len(), SERIES_PER_WRITER, "writer {w}");
        let want: Vec<i64> = acked
            .iter()
            .filter(|(aw, _)| *aw == w)
            .map(|(_, n)| *n)
            .collect();
        for s in series {
            let got: Vec<i64> = s.samples.iter().map(|&(_, v)| v as i64).collect();
            for n in &want {
                assert!(
                    got.contains(n),
                    "{}: acknowledged request {n} lost",
                    s.labels
                );
            }
        }
    }
}
