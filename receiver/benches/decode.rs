//! Decode-only limit: snappy decompression plus `WriteBatch::decode` of the very requests the load
//! generator sends (same series, same encoder), in samples per second on one core.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loadgen::payload::{Plan, Template};
use loadgen::series::SeriesId;
use prost::Message;
use receiver::wire::messages::v1;
use receiver::wire::{MAX_DECODED_SIZE, Protocol, WriteBatch};

/// Labels per series, as `thanos-loadgen`'s default and `scripts/bench.sh` use.
const LABELS: usize = 12;
/// Requests per iteration, taken from different shards so the bodies differ.
const REQUESTS: u64 = 4;
const T0: i64 = 1_760_000_000_000;

/// Snappy bodies of `REQUESTS` requests of `per_request` samples from a 1M-series, 100-shard plan.
fn bodies(protocol: Protocol, per_request: u64) -> (Vec<Vec<u8>>, u64) {
    let plan = Plan {
        series: 1_000_000,
        shards: 100,
        per_request,
    };
    let bodies: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|shard| {
            let ids: Vec<SeriesId> = plan
                .slots(shard * 7, 0)
                .map(|slot| SeriesId {
                    slot,
                    generation: 0,
                })
                .collect();
            Template::build(&ids, LABELS, protocol).render(3, T0)
        })
        .collect();
    (bodies, REQUESTS * per_request)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (protocol, name) in [(Protocol::V1, "v1"), (Protocol::V2, "v2")] {
        for per_request in [2_000, 10_000] {
            let (bodies, samples) = bodies(protocol, per_request);
            group.throughput(Throughput::Elements(samples));
            let mut batch = WriteBatch::default();
            group.bench_function(format!("snappy+decode/{name}/{per_request}"), |b| {
                b.iter(|| {
                    for body in &bodies {
                        batch.decompress(body, MAX_DECODED_SIZE).unwrap();
                        batch.decode(protocol).unwrap();
                        black_box(batch.samples.len());
                    }
                })
            });
            if per_request == 10_000 {
                // What the receiver does next with every series: label and order checks.
                group.bench_function(
                    format!("snappy+decode+validate/{name}/{per_request}"),
                    |b| {
                        b.iter(|| {
                            for body in &bodies {
                                batch.decompress(body, MAX_DECODED_SIZE).unwrap();
                                batch.decode(protocol).unwrap();
                                for i in 0..batch.series.len() {
                                    receiver::ingest::validate::validate_series(
                                        &batch, i, protocol,
                                    )
                                    .unwrap();
                                }
                            }
                        })
                    },
                );
            }
        }
    }
    // The allocating decoder the borrowing one replaces, for scale.
    let (bodies, samples) = bodies(Protocol::V1, 10_000);
    group.throughput(Throughput::Elements(samples));
    group.bench_function("snappy+prost/v1/10000", |b| {
        b.iter(|| {
            for body in &bodies {
                let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
                black_box(v1::WriteRequest::decode(raw.as_slice()).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
