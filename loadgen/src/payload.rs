//! Pre-encoded remote-write requests: built once per series set, replayed at every step by
//! patching each sample's timestamp and value straight into the compressed body.

use std::ops::Range;

use prost::Message;
use receiver::wire::Protocol;
use receiver::wire::messages::{v1, v2};
use receiver::wire::protobuf::{Reader, WIRE_LEN};

use crate::series::{self, SeriesId, ValueGen};
use crate::snappy;

/// Timestamps are encoded as 6-byte varints, which hold every millisecond from 1971 to 2109.
const TIMESTAMP_RANGE: Range<i64> = (1 << 35)..(1 << 42);
/// Encoded `Sample { value = 1 (fixed64), timestamp = 2 (6-byte varint) }`.
const SAMPLE_LEN: usize = 16;

/// Whether `t` (ms) fits the fixed-width timestamp encoding of templates.
pub fn timestamp_fits(t: i64) -> bool {
    TIMESTAMP_RANGE.contains(&t)
}

/// Which series each shard sends: shard `s` of `C` owns slots `s, s + C, s + 2C, ...`, split into
/// requests of at most `per_request` series, one sample each. Interleaving mimics Prometheus'
/// hash sharding: neighbours in a request come from different targets.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Active series.
    pub series: u64,
    /// Concurrent shards, each with one request in flight.
    pub shards: u64,
    /// Series (= samples) per request.
    pub per_request: u64,
}

impl Plan {
    /// Series owned by `shard`.
    pub fn shard_series(&self, shard: u64) -> u64 {
        (self.series + self.shards - 1 - shard) / self.shards
    }

    /// Requests `shard` sends per step.
    pub fn shard_requests(&self, shard: u64) -> u64 {
        self.shard_series(shard).div_ceil(self.per_request)
    }

    /// Requests per step over all shards.
    pub fn requests_per_step(&self) -> u64 {
        (0..self.shards).map(|s| self.shard_requests(s)).sum()
    }

    /// Slots of request `chunk` of `shard`, in request order.
    pub fn slots(&self, shard: u64, chunk: u64) -> impl Iterator<Item = u64> + use<> {
        let first = chunk * self.per_request;
        let end = self.shard_series(shard).min(first + self.per_request);
        let shards = self.shards;
        (first..end).map(move |i| shard + i * shards)
    }

    /// Identifies the series set of a request after `replaced` churn replacements: the number of
    /// full rounds over all slots, and how many of the request's slots are one generation ahead.
    pub fn churn_key(&self, shard: u64, chunk: u64, replaced: u64) -> (u64, u64) {
        let round = replaced / self.series;
        let boundary = replaced % self.series;
        let ahead = self
            .slots(shard, chunk)
            .take_while(|&slot| slot < boundary)
            .count();
        (round, ahead as u64)
    }
}

/// A compressed request whose samples are rewritten in place for each step.
#[derive(Debug, Clone)]
pub struct Template {
    body: Vec<u8>,
    patches: Vec<(u32, ValueGen)>,
    raw_len: usize,
}

impl Template {
    /// Encodes one sample for each series of `ids`, with `labels` labels per series.
    pub fn build(ids: &[SeriesId], labels: usize, protocol: Protocol) -> Template {
        let sets: Vec<Vec<(&str, String)>> =
            ids.iter().map(|&id| series::labels(id, labels)).collect();
        let pairs: Vec<Vec<(&str, &str)>> = sets
            .iter()
            .map(|set| set.iter().map(|(n, v)| (*n, v.as_str())).collect())
            .collect();
        // Placeholders that make prost emit both fields at their final width.
        let placeholder = [(TIMESTAMP_RANGE.start, 1.0)];
        let (raw, series_field) = match protocol {
            Protocol::V1 => {
                let request = v1::WriteRequest {
                    timeseries: pairs.iter().map(|p| v1::series(p, &placeholder)).collect(),
                    metadata: vec![],
                };
                (request.encode_to_vec(), 1)
            }
            Protocol::V2 => {
                let specs: Vec<v2::SeriesSpec<'_>> = pairs
                    .iter()
                    .map(|p| (p.as_slice(), &placeholder[..]))
                    .collect();
                (v2::request(&specs).encode_to_vec(), 5)
            }
        };
        // Protect value and timestamp bytes (the timestamp's tag byte between them is constant).
        let protected: Vec<Range<usize>> = sample_offsets(&raw, series_field)
            .into_iter()
            .map(|at| at + 1..at + SAMPLE_LEN)
            .collect();
        assert_eq!(protected.len(), ids.len(), "one sample per series");
        let compressed = snappy::compress(&raw, &protected);
        Template {
            body: compressed.bytes,
            patches: compressed
                .protected_at
                .into_iter()
                .zip(ids.iter().map(|&id| series::values(id)))
                .collect(),
            raw_len: raw.len(),
        }
    }

    /// Samples (= series) in the request.
    pub fn samples(&self) -> usize {
        self.patches.len()
    }

    /// Size of the compressed body.
    pub fn compressed_len(&self) -> usize {
        self.body.len()
    }

    /// Size of the protobuf before compression.
    pub fn raw_len(&self) -> usize {
        self.raw_len
    }

    /// The body for `step`, every sample stamped `timestamp_ms`.
    pub fn render(&self, step: u64, timestamp_ms: i64) -> Vec<u8> {
        assert!(
            timestamp_fits(timestamp_ms),
            "timestamp {timestamp_ms} out of range"
        );
        let mut ts = [0u8; 6];
        for (i, b) in ts.iter_mut().enumerate() {
            *b = ((timestamp_ms >> (7 * i)) & 0x7f) as u8 | if i < 5 { 0x80 } else { 0 };
        }
        let mut body = self.body.clone();
        for &(at, values) in &self.patches {
            let at = at as usize;
            body[at..at + 8].copy_from_slice(&values.at(step).to_bits().to_le_bytes());
            body[at + 9..at + 15].copy_from_slice(&ts);
        }
        body
    }
}

/// Offsets of every encoded `Sample` in a request whose series are field `series_field`.
fn sample_offsets(buf: &[u8], series_field: u64) -> Vec<usize> {
    let mut out = Vec::new();
    for (field, series) in fields(buf, 0..buf.len()) {
        if field != series_field {
            continue;
        }
        for (field, sample) in fields(buf, series) {
            if field == 2 {
                assert_eq!(sample.len(), SAMPLE_LEN, "sample encoded at a fixed width");
                assert_eq!((buf[sample.start], buf[sample.start + 9]), (0x09, 0x10));
                out.push(sample.start);
            }
        }
    }
    out
}

/// The length-delimited fields of a message prost encoded (the only wire type at these levels
/// besides the packed refs and fixed-width samples, which are length-delimited too).
fn fields(buf: &[u8], range: Range<usize>) -> Vec<(u64, Range<usize>)> {
    let mut out = Vec::new();
    let mut r = Reader::new(range.start, range.end);
    while !r.done() {
        let (field, wire) = r.key(buf).expect("prost-encoded key");
        assert_eq!(wire, WIRE_LEN, "length-delimited field expected");
        let (start, end) = r.len_delimited(buf).expect("prost-encoded field");
        out.push((u64::from(field), start..end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use receiver::wire::WriteBatch;

    const T0: i64 = 1_760_000_000_000;

    fn decode(body: &[u8], protocol: Protocol) -> WriteBatch {
        let mut batch = WriteBatch::default();
        batch.decompress(body, 1 << 30).unwrap();
        batch.decode(protocol).unwrap();
        batch
    }

    #[test]
    fn rendered_requests_decode_with_expected_series_and_increasing_timestamps() {
        let plan = Plan {
            series: 1000,
            shards: 3,
            per_request: 200,
        };
        assert_eq!(
            plan.shard_series(0) + plan.shard_series(1) + plan.shard_series(2),
            1000
        );
        assert_eq!(plan.requests_per_step(), 6);
        for protocol in [Protocol::V1, Protocol::V2] {
            let ids: Vec<SeriesId> = plan
                .slots(1, 1)
                .map(|slot| SeriesId {
                    slot,
                    generation: 0,
                })
                .collect();
            assert_eq!(ids.len(), 133);
            let t = Template::build(&ids, 12, protocol);
            let mut last = vec![i64::MIN; ids.len()];
            for step in 0..3 {
                let ts = T0 + step as i64 * 15_000;
                let batch = decode(&t.render(step, ts), protocol);
                assert_eq!(batch.series.len(), ids.len());
                assert_eq!(batch.samples.len(), ids.len());
                for (i, id) in ids.iter().enumerate() {
                    receiver::ingest::validate::validate_series(&batch, i, protocol).unwrap();
                    let labels: Vec<(String, String)> = batch
                        .series_labels(i)
                        .map(|(n, v)| {
                            (
                                String::from_utf8(n.to_vec()).unwrap(),
                                String::from_utf8(v.to_vec()).unwrap(),
                            )
                        })
                        .collect();
                    let expected: Vec<(String, String)> = series::labels(*id, 12)
                        .into_iter()
                        .map(|(n, v)| (n.to_string(), v))
                        .collect();
                    assert_eq!(labels, expected);
                    let s = batch.series_samples(i);
                    assert_eq!(s.len(), 1);
                    assert_eq!(s[0].t, ts);
                    assert!(s[0].t > last[i]);
                    last[i] = s[0].t;
                    assert_eq!(s[0].v.to_bits(), series::values(*id).at(step).to_bits());
                }
            }
        }
    }

    #[test]
    fn compresses_about_as_well_as_snappy_does_on_real_requests() {
        let ids: Vec<SeriesId> = (0..2000)
            .map(|i| SeriesId {
                slot: i * 7,
                generation: 0,
            })
            .collect();
        let t = Template::build(&ids, 12, Protocol::V1);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&t.render(0, T0))
            .unwrap();
        assert_eq!(raw.len(), t.raw_len());
        let reference = snap::raw::Encoder::new().compress_vec(&raw).unwrap().len();
        let ratio = t.compressed_len() as f64 / reference as f64;
        assert!((0.8..1.25).contains(&ratio), "{ratio}");
    }

    #[test]
    fn churn_key_changes_only_for_requests_holding_replaced_slots() {
        let plan = Plan {
            series: 100,
            shards: 2,
            per_request: 10,
        };
        // Shard 0 chunk 0 holds slots 0, 2, ..., 18.
        assert_eq!(plan.churn_key(0, 0, 0), (0, 0));
        assert_eq!(plan.churn_key(0, 0, 5), (0, 3));
        assert_eq!(plan.churn_key(0, 1, 5), (0, 0));
        assert_eq!(plan.churn_key(0, 0, 100), (1, 0));
    }
}
