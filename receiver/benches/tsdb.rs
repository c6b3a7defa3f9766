//! TSDB figures: head memory per active series, WAL replay speed, and block cut time.
//!
//! `cargo bench -p receiver --bench tsdb` (release profile). `TSDB_BENCH_SERIES` (default 100000)
//! and `TSDB_BENCH_MINUTES` (default 120) size the run; samples are 15 s apart, labels are
//! Kubernetes-like (12 per series). Prints one line per figure, query latencies over the head
//! included. Memory is measured with the receiver binary's allocator, two seconds after the
//! appends (jemalloc hands pages freed for a second back to the system).

use std::time::{Duration, Instant};

use prost::Message;
use receiver::tsdb::{Budget, Matcher, TenantDb, TsdbOptions};
use receiver::wire::messages::v1;
use receiver::wire::{Protocol, WriteBatch};

/// The receiver binary's allocator, so that RSS figures are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const STEP_MS: i64 = 15_000;
const BATCH: usize = 10_000;

/// RSS once freed pages have been handed back, as a scrape a moment after the load would see it.
fn rss_bytes() -> u64 {
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn labels(i: usize) -> Vec<(String, String)> {
    let ns = format!("namespace-{}", i % 50);
    vec![
        ("__name__".into(), format!("container_metric_{}", i % 20)),
        ("container".into(), format!("container-{}", i % 7)),
        ("endpoint".into(), "https-metrics".into()),
        (
            "image".into(),
            format!("registry.example.com/team/app-{}:v1.{}", i % 40, i % 9),
        ),
        (
            "instance".into(),
            format!("10.{}.{}.{}:10250", i % 4, (i / 256) % 256, i % 256),
        ),
        ("job".into(), "kubelet".into()),
        ("metrics_path".into(), "/metrics/cadvisor".into()),
        ("namespace".into(), ns),
        ("node".into(), format!("node-{}", i % 300)),
        ("pod".into(), format!("app-{}-{:x}", i % 40, i)),
        ("service".into(), "kubelet".into()),
        (
            "uid".into(),
            format!("{:08x}-{:04x}", i * 2654435761 % 4294967296, i % 65536),
        ),
    ]
}

/// The encoded request for series `start..start + BATCH` at one timestamp.
fn batch(series: usize, start: usize, t: i64, label_sets: &[Vec<(String, String)>]) -> WriteBatch {
    let timeseries = (start..(start + BATCH).min(series))
        .map(|i| {
            let l: Vec<(&str, &str)> = label_sets[i]
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            v1::series(&l, &[(t, (i as i64 * 7 + t / STEP_MS) as f64 * 0.5)])
        })
        .collect();
    let mut b = WriteBatch::with_body(
        v1::WriteRequest {
            timeseries,
            metadata: vec![],
        }
        .encode_to_vec(),
    );
    b.decode(Protocol::V1).expect("valid request");
    b
}

/// Appends one time step, one request at a time (so the bench's own buffers stay small and do
/// not linger in the allocator); returns the time spent in lookup and append only.
fn append_step(
    db: &TenantDb,
    series: usize,
    t: i64,
    label_sets: &[Vec<(String, String)>],
) -> std::time::Duration {
    let mut spent = std::time::Duration::ZERO;
    for start in (0..series).step_by(BATCH) {
        let b = batch(series, start, t, label_sets);
        let idx: Vec<usize> = (0..b.series.len()).collect();
        let begin = Instant::now();
        let resolved = db.resolve(&b, &idx, 0).expect("no series limit");
        db.append(&b, &idx, &resolved.refs).expect("append");
        spent += begin.elapsed();
    }
    spent
}

/// Median and worst of `runs` timings of `f`, which returns how many series it found.
fn time_query(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, Duration, usize) {
    let mut took = Vec::with_capacity(runs);
    let mut found = 0;
    for _ in 0..runs {
        let start = Instant::now();
        found = f();
        took.push(start.elapsed());
    }
    took.sort();
    (took[runs / 2], took[runs - 1], found)
}

/// Query latency over the head: one series by a unique label, and one metric name (1/20 of all).
fn query_figures(db: &TenantDb, series: usize, end: i64, over: &str) {
    let pod = labels(series / 2)
        .into_iter()
        .find(|(n, _)| n == "pod")
        .map(|(_, v)| v)
        .expect("a pod label");
    let selective = [
        Matcher::Equal(
            "__name__".into(),
            format!("container_metric_{}", (series / 2) % 20),
        ),
        Matcher::Equal("pod".into(), pod),
    ];
    let (p50, max, found) = time_query(21, || {
        db.select(&selective, i64::MIN, end, false, Budget::default())
            .expect("query")
            .len()
    });
    println!(
        "selective query (1 of {series} series, {over}): p50 {p50:.2?}, max {max:.2?}, {found} series"
    );
    let broad = [Matcher::Equal(
        "__name__".into(),
        "container_metric_1".into(),
    )];
    let (p50, max, found) = time_query(5, || {
        db.select(&broad, i64::MIN, end, false, Budget::default())
            .expect("query")
            .len()
    });
    println!(
        "broad query (one metric name, {over}, chunks): p50 {p50:.2?}, max {max:.2?}, {found} series"
    );
}

fn main() {
    let series: usize = std::env::var("TSDB_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let minutes: i64 = std::env::var("TSDB_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let steps = minutes * 60_000 / STEP_MS;
    let dir = tempfile::tempdir().expect("temp dir");
    let label_sets: Vec<_> = (0..series).map(labels).collect();
    let t0 = 1_700_000_000_000 / 7_200_000 * 7_200_000;

    let base = rss_bytes();
    let (db, _) = TenantDb::open(dir.path(), "bench", TsdbOptions::default()).expect("open");
    append_step(&db, series, t0, &label_sets);
    let one = rss_bytes();
    println!(
        "head memory per active series, 1 sample each: {:.0} B ({series} series, RSS +{} MiB)",
        (one - base) as f64 / series as f64,
        (one - base) >> 20
    );

    let mut took = std::time::Duration::ZERO;
    // Chunks close every 120 samples: 60 samples before the end each open chunk is half full.
    let mut mid_chunk = None;
    for s in 1..steps {
        took += append_step(&db, series, t0 + s * STEP_MS, &label_sets);
        if s == steps - 61 {
            mid_chunk = Some((rss_bytes(), s + 1));
        }
    }
    let full = rss_bytes();
    let samples = series as u64 * steps as u64;
    println!(
        "lookup + append through the WAL into the head: {:.2} M samples/s on one thread ({samples} samples, {took:.2?} appending)",
        (samples - series as u64) as f64 / took.as_secs_f64() / 1e6
    );
    println!(
        "head memory per active series, {minutes} min of 15 s samples: {:.0} B (RSS +{} MiB)",
        (full - base) as f64 / series as f64,
        (full - base) >> 20
    );
    if let Some((rss, samples)) = mid_chunk {
        println!(
            "head memory per active series, {samples} samples (open chunks half full): {:.0} B",
            (rss - base) as f64 / series as f64
        );
    }
    query_figures(&db, series, t0 + (steps - 1) * STEP_MS, "whole head");
    let wal_bytes = db.wal_size();
    drop(db);

    let start = Instant::now();
    let (db, stats) = TenantDb::open(dir.path(), "bench", TsdbOptions::default()).expect("reopen");
    let replay = start.elapsed();
    println!(
        "WAL replay: {} samples ({} MiB of WAL) in {replay:.2?} = {:.2} M samples/s",
        stats.samples,
        wal_bytes >> 20,
        stats.samples as f64 / replay.as_secs_f64() / 1e6
    );

    let start = Instant::now();
    let blocks = db.flush().expect("flush");
    let cut = start.elapsed();
    let bytes: u64 = blocks
        .iter()
        .flat_map(|m| {
            m.thanos
                .as_ref()
                .map(|t| t.files.iter().map(|f| f.size_bytes).sum::<u64>())
        })
        .sum();
    println!(
        "block cut of {series} series x {minutes} min: {cut:.2?} for {} block(s), {:.3} B/sample on disk",
        blocks.len(),
        bytes as f64 / samples as f64
    );
    // The head is empty now: the same queries read the block (its index cached after the first).
    query_figures(&db, series, t0 + (steps - 1) * STEP_MS, "one block");
}
