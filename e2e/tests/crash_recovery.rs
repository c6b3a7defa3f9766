//! kill -9 under load, restart: every acknowledged sample is still there, and the head chunks
//! written before the kill are taken back rather than rebuilt.

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

/// Samples of series `s` from step `from` on, 15 s apart, with values that compress poorly (so
/// chunks fill their byte limit and reach the chunk files soon).
fn chunky_samples(s: usize, from: i64, steps: i64) -> Vec<(i64, f64)> {
    (from..from + steps)
        .map(|n| {
            let v = ((s as i64 * 7919 + n * 104_729) % 1_000_003) as f64 / 7.0;
            (1_700_000_000_000 + n * 15_000, v)
        })
        .collect()
}

/// Writes `steps` samples from step `from` on of each of `series` series, 200 series a request.
async fn send_chunky(client: &reqwest::Client, url: &str, series: usize, from: i64, steps: i64) {
    for group in 0..series.div_ceil(200) {
        let timeseries = (group * 200..((group + 1) * 200).min(series))
            .map(|s| {
                let s_label = s.to_string();
                v1::series(
                    &[("__name__", "chunky"), ("series", &s_label)],
                    &chunky_samples(s, from, steps),
                )
            })
            .collect();
        let body = snappy(&v1::WriteRequest {
            timeseries,
            metadata: vec![],
        });
        let (status, text) = post_v1(client, url, body, None).await;
        assert_eq!(status, 200, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_kill_9_takes_the_head_chunks_back() {
    const SERIES: usize = 2000;
    const STEPS: i64 = 250;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;
    for from in (0..STEPS).step_by(25) {
        send_chunky(&client, &recv.write_url(), SERIES, from, 25).await;
    }
    recv.kill9();
    let chunk_files = data.join("default-tenant/chunks_head");
    let on_disk: u64 = std::fs::read_dir(&chunk_files)
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk > 1 << 20, "chunk files hold {on_disk} bytes");

    // The restart takes the chunks back, then appends where they end.
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;
    let log = recv.log_text();
    let replayed = log
        .lines()
        .find(|l| l.contains("WAL replayed"))
        .unwrap_or_else(|| panic!("no replay logged:\n{log}"));
    let field = |name: &str| -> u64 {
        let at = replayed.find(&format!(" {name}=")).unwrap() + name.len() + 2;
        replayed[at..].split(' ').next().unwrap().parse().unwrap()
    };
    assert!(field("head_chunks") > SERIES as u64, "{replayed}");
    assert_eq!(field("samples"), SERIES as u64 * STEPS as u64, "{replayed}");
    send_chunky(&client, &recv.write_url(), SERIES, STEPS, 10).await;
    assert!(recv.terminate().success());

    // Everything is in the block the shutdown cut, once, in order.
    let stored = recv.stored_series("default-tenant", "chunky");
    assert_eq!(stored.len(), SERIES);
    for series in stored {
        let s: usize = series.labels.get("series").unwrap().parse().unwrap();
        let want = chunky_samples(s, 0, STEPS + 10);
        assert_eq!(series.samples, want, "series {s}");
    }
}
