//! Ingest cost of native histograms next to float samples: decode and validation of a request,
//! and the append through the WAL into the head, per histogram and per float sample.
//!
//! `cargo bench -p receiver --bench histograms`. A request holds 1000 series with one sample
//! each; histograms are Prometheus-client-like counters (schema 3, 20 buckets in two spans).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use receiver::ingest::validate::validate_series;
use receiver::tsdb::{TenantDb, TsdbOptions};
use receiver::wire::messages::v1;
use receiver::wire::{MAX_DECODED_SIZE, Protocol, WriteBatch};
use tsdb_format::histogram::{Histogram, Span};

const SERIES: usize = 1000;
const STEP_MS: i64 = 15_000;
const T0: i64 = 1_760_000_000_000;

/// A counter histogram of scrape `n`: 20 buckets (offsets -6..4 and 8..18), growing by `n`.
fn histogram(series: usize, n: i64) -> Histogram {
    let counts: Vec<i64> = (0..20).map(|k| n * (k + 1) + series as i64 % 7).collect();
    let mut prev = 0;
    Histogram {
        schema: 3,
        zero_threshold: 2f64.powi(-128),
        zero_count: n as u64,
        count: n as u64 + counts.iter().sum::<i64>() as u64,
        sum: n as f64 * 0.37,
        positive_spans: vec![
            Span {
                offset: -6,
                length: 10,
            },
            Span {
                offset: 4,
                length: 10,
            },
        ],
        positive_buckets: counts
            .iter()
            .map(|&c| {
                let d = c - prev;
                prev = c;
                d
            })
            .collect(),
        ..Histogram::default()
    }
}

/// The snappy body of scrape `n`: every series with one histogram, or one float sample.
fn body(n: i64, histograms: bool) -> Vec<u8> {
    let t = T0 + n * STEP_MS;
    let timeseries = (0..SERIES)
        .map(|i| {
            let name = format!("rpc_duration_seconds_{}", i % 50);
            let pod = format!("app-{i}");
            let labels = [
                ("__name__", name.as_str()),
                ("job", "app"),
                ("namespace", "prod"),
                ("pod", pod.as_str()),
            ];
            if histograms {
                let mut ts = v1::series(&labels, &[]);
                ts.histograms
                    .push(v1::Histogram::from_int(t, &histogram(i, n)));
                ts
            } else {
                v1::series(&labels, &[(t, n as f64 * 1.5)])
            }
        })
        .collect();
    let raw = v1::WriteRequest {
        timeseries,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn decode_and_check(batch: &mut WriteBatch, body: &[u8]) {
    batch.decompress(body, MAX_DECODED_SIZE).unwrap();
    batch.decode(Protocol::V1).unwrap();
    for i in 0..batch.series.len() {
        validate_series(batch, i, Protocol::V1).unwrap();
    }
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(SERIES as u64));
    for (kind, histograms) in [("histogram", true), ("float", false)] {
        let one = body(1, histograms);
        let mut batch = WriteBatch::default();
        group.bench_function(format!("decode+validate/{kind}"), |b| {
            b.iter(|| {
                decode_and_check(&mut batch, &one);
                black_box(batch.series.len());
            })
        });

        // Appends scrape after scrape, each request newer than the last, through the WAL; a
        // fresh tenant (not timed) once the prepared hour of scrapes is used up.
        let fresh = || {
            let dir = tempfile::tempdir().unwrap();
            let (db, _) = TenantDb::open(dir.path(), "bench", TsdbOptions::default()).unwrap();
            (dir, db)
        };
        let mut tenant = fresh();
        let bodies: Vec<Vec<u8>> = (0..240).map(|n| body(n + 1, histograms)).collect();
        let all: Vec<usize> = (0..SERIES).collect();
        let mut next = 0usize;
        group.bench_function(format!("decode+validate+append/{kind}"), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    if next == bodies.len() {
                        tenant = fresh();
                        next = 0;
                    }
                    let db = &tenant.1;
                    let start = Instant::now();
                    decode_and_check(&mut batch, &bodies[next]);
                    let refs = db.resolve(&batch, &all, 0).unwrap();
                    let out = db.append(&batch, &all, &refs.refs).unwrap();
                    took += start.elapsed();
                    assert_eq!(out.appended, SERIES as u64);
                    next += 1;
                }
                took
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
