//! A fuzz harness that runs on the stable toolchain: every decoder and config parser of the
//! receiver is driven with mutated seeds (valid inputs, and the files under `fuzz/corpus/`), and
//! any panic is a crash. `cargo fuzz` needs nightly, which this project's machines lack; the
//! targets take `&[u8]`, so they plug into libFuzzer or AFL unchanged where one is available.
//!
//! A differential target also checks the hand-written remote-write decoder against `prost` on
//! random valid messages.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use prost::Message;
use receiver::wire::messages::{v1, v2};
use receiver::wire::{MAX_DECODED_SIZE, Protocol, WriteBatch};

/// Largest input the mutator grows an input to.
pub const MAX_INPUT: usize = 64 << 10;

/// One thing to fuzz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Remote write 1.0 body decoding and validation.
    RemoteWriteV1,
    /// Remote write 2.0 body decoding and validation.
    RemoteWriteV2,
    /// The Thanos `WriteRequest` that replicas forward over gRPC.
    Forward,
    /// Snappy decompression with the size limit, then 1.0 decoding.
    Snappy,
    /// WAL and checkpoint segment records (series labels included).
    WalSegment,
    /// XOR chunk decoding.
    XorChunk,
    /// The block index reader.
    Index,
    /// `hashrings.json` parsing and ring construction.
    Hashring,
    /// The limits file.
    Limits,
    /// `objstore.yml`.
    Objstore,
    /// The hot 1.0 decoder against `prost` on random valid messages.
    DiffV1,
    /// Remote read requests (snappy, protobuf) and their matchers.
    RemoteRead,
    /// PromQL series selectors of the metadata API's `match[]`.
    Selector,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 13] = [
        Target::RemoteWriteV1,
        Target::RemoteWriteV2,
        Target::Forward,
        Target::Snappy,
        Target::WalSegment,
        Target::XorChunk,
        Target::Index,
        Target::Hashring,
        Target::Limits,
        Target::Objstore,
        Target::DiffV1,
        Target::RemoteRead,
        Target::Selector,
    ];

    /// The target's name, as on the command line and under `fuzz/corpus/`.
    pub fn name(self) -> &'static str {
        match self {
            Target::RemoteWriteV1 => "remote-write-v1",
            Target::RemoteWriteV2 => "remote-write-v2",
            Target::Forward => "forward",
            Target::Snappy => "snappy",
            Target::WalSegment => "wal-segment",
            Target::XorChunk => "xor-chunk",
            Target::Index => "index",
            Target::Hashring => "hashring",
            Target::Limits => "limits",
            Target::Objstore => "objstore",
            Target::DiffV1 => "diff-v1",
            Target::RemoteRead => "remote-read",
            Target::Selector => "selector",
        }
    }
}

/// Runs one input through a target; panics are the bugs this harness looks for.
pub fn run_one(target: Target, data: &[u8]) {
    match target {
        Target::RemoteWriteV1 => decode_and_validate(data, Protocol::V1),
        Target::RemoteWriteV2 => decode_and_validate(data, Protocol::V2),
        Target::Forward => {
            let mut batch = WriteBatch::with_body(data.to_vec());
            if let Ok(meta) = batch.decode_forward() {
                for (_, range) in meta.groups {
                    for i in range {
                        let _ = receiver::ingest::validate::validate_series(
                            &batch,
                            i,
                            receiver::ingest::validate::Rules::FORWARDED,
                        );
                        let _ = batch.series_string(i);
                    }
                }
            }
        }
        Target::Snappy => {
            let mut batch = WriteBatch::default();
            if batch.decompress(data, MAX_DECODED_SIZE).is_ok() {
                let _ = batch.decode(Protocol::V1);
            }
        }
        Target::RemoteRead => {
            if let Ok(request) = receiver::wire::remote_read::decode_request(data) {
                for query in &request.queries {
                    for m in &query.matchers {
                        let _ = receiver::store::to_matcher(m);
                    }
                }
            }
        }
        Target::Selector => {
            let _ = receiver::store::selector::parse(&String::from_utf8_lossy(data));
        }
        Target::WalSegment => {
            let mut stats = receiver::tsdb::wal::ReplayStats::default();
            let _ = receiver::tsdb::wal::replay_segment(data, &mut stats, &mut |record| {
                if let receiver::tsdb::wal::Record::Series(series) = record {
                    for (_, bytes) in series {
                        if let Some(labels) = receiver::tsdb::Labels::from_wal(bytes) {
                            let _ = labels.iter().count();
                        }
                    }
                }
                Ok(())
            });
        }
        Target::XorChunk => {
            let _ = tsdb_format::chunkenc::num_samples(data);
            let _ = tsdb_format::chunkenc::iter_xor(data).take(1 << 16).count();
        }
        Target::Index => {
            if let Ok(index) = tsdb_format::index::IndexReader::from_bytes(data.to_vec()) {
                for name in index.label_names() {
                    for value in index.label_values(name) {
                        let _ = index.postings(name, value);
                    }
                }
                if let Ok(ids) = index.all_postings() {
                    for id in ids.into_iter().take(1024) {
                        let _ = index.series(id);
                    }
                }
            }
        }
        Target::Hashring => {
            if let Ok(configs) = hashring::parse(data) {
                for rf in 1..=3 {
                    for alg in [hashring::Algorithm::Hashmod, hashring::Algorithm::Ketama] {
                        let _ = hashring::Hashrings::new(configs.clone(), alg, rf);
                    }
                }
            }
        }
        Target::Limits => {
            let _ = receiver::ingest::limits::LimitsConfig::parse(&String::from_utf8_lossy(data));
        }
        Target::Objstore => {
            let parsed: Result<receiver::shipper::objstore::ObjstoreConfig, _> =
                serde_yaml::from_str(&String::from_utf8_lossy(data));
            // FILESYSTEM would create directories named by the input; S3 builds a client only.
            if let Ok(cfg) = parsed
                && cfg.kind.eq_ignore_ascii_case("s3")
            {
                let _ = receiver::shipper::objstore::build(&cfg);
            }
        }
        Target::DiffV1 => differential_v1(data),
    }
}

fn decode_and_validate(data: &[u8], protocol: Protocol) {
    let mut batch = WriteBatch::with_body(data.to_vec());
    if batch.decode(protocol).is_ok() {
        for i in 0..batch.series.len() {
            let _ = receiver::ingest::validate::validate_series(&batch, i, protocol);
            let _ = batch.series_string(i);
            let _ = batch.series_labels(i).count();
            let _ = batch.series_samples(i).len();
        }
    }
}

/// Builds a random valid 1.0 request from `data` (used as the seed of the generator), encodes it
/// with `prost`, and checks that our decoder sees exactly the same labels and samples.
fn differential_v1(data: &[u8]) {
    let mut seed = [0u8; 8];
    for (i, b) in data.iter().enumerate() {
        seed[i % 8] ^= b.rotate_left(i as u32);
    }
    let mut rng = fastrand::Rng::with_seed(u64::from_le_bytes(seed));
    let request = random_v1(&mut rng);
    let bytes = request.encode_to_vec();
    let mut batch = WriteBatch::with_body(bytes.clone());
    batch
        .decode(Protocol::V1)
        .unwrap_or_else(|e| panic!("our decoder refused what prost encoded: {e}"));
    let reference = v1::WriteRequest::decode(&bytes[..]).expect("prost decodes its own encoding");
    assert_eq!(batch.series.len(), reference.timeseries.len());
    for (i, ts) in reference.timeseries.iter().enumerate() {
        let ours: Vec<(&[u8], &[u8])> = batch.series_labels(i).collect();
        let theirs: Vec<(&[u8], &[u8])> = ts
            .labels
            .iter()
            .map(|l| (l.name.as_bytes(), l.value.as_bytes()))
            .collect();
        assert_eq!(ours, theirs, "labels of series {i}");
        let ours: Vec<(i64, u64)> = batch
            .series_samples(i)
            .iter()
            .map(|s| (s.t, s.v.to_bits()))
            .collect();
        let theirs: Vec<(i64, u64)> = ts
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(ours, theirs, "samples of series {i}");
    }
}

fn random_string(rng: &mut fastrand::Rng) -> String {
    let len = match rng.u8(..) {
        0..=200 => rng.usize(0..16),
        201..=250 => rng.usize(16..200),
        _ => rng.usize(200..2000),
    };
    (0..len)
        .map(|_| match rng.u8(..4) {
            0 => rng.char(..),
            _ => rng.alphanumeric(),
        })
        .collect()
}

fn random_v1(rng: &mut fastrand::Rng) -> v1::WriteRequest {
    let timeseries = (0..rng.usize(0..20))
        .map(|_| {
            let labels = (0..rng.usize(0..12))
                .map(|_| v1::Label {
                    name: random_string(rng),
                    value: random_string(rng),
                })
                .collect();
            let samples = (0..rng.usize(0..20))
                .map(|_| v1::Sample {
                    value: f64::from_bits(rng.u64(..)),
                    timestamp: match rng.u8(..8) {
                        0 => i64::MIN,
                        1 => i64::MAX,
                        2 => rng.i64(..),
                        _ => rng.i64(1_600_000_000_000..1_900_000_000_000),
                    },
                })
                .collect();
            v1::TimeSeries {
                labels,
                samples,
                ..Default::default()
            }
        })
        .collect();
    v1::WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

/// Valid inputs every run starts from, before the corpus files.
pub fn builtin_seeds(target: Target) -> Vec<Vec<u8>> {
    let v1_request = v1::WriteRequest {
        timeseries: vec![
            v1::series(
                &[("__name__", "up"), ("instance", "a:9100"), ("job", "node")],
                &[(1_700_000_000_000, 1.0), (1_700_000_015_000, 0.0)],
            ),
            v1::series(
                &[("__name__", "x")],
                &[(1, f64::from_bits(0x7ff0_0000_0000_0002))],
            ),
        ],
        metadata: vec![],
    };
    let v1_bytes = v1_request.encode_to_vec();
    match target {
        Target::RemoteWriteV1 | Target::DiffV1 => vec![v1_bytes, Vec::new()],
        Target::RemoteWriteV2 => vec![
            v2::request(&[
                (&[("__name__", "up"), ("job", "a")], &[(1, 1.0), (2, 2.0)]),
                (&[("__name__", "down")], &[(3, 0.5)]),
            ])
            .encode_to_vec(),
        ],
        Target::Forward => {
            let mut batch = WriteBatch::with_body(v1_bytes);
            batch.decode(Protocol::V1).expect("valid seed");
            let mut out = Vec::new();
            receiver::wire::forward::encode(&batch, &[0, 1], "tenant-a", 1, &mut out);
            vec![out]
        }
        Target::RemoteRead => {
            use receiver::wire::remote_read::{LabelMatcher, MatchType, Query, ReadRequest};
            let request = ReadRequest {
                queries: vec![Query {
                    start_timestamp_ms: 1_000,
                    end_timestamp_ms: 2_000,
                    matchers: vec![
                        LabelMatcher {
                            r#type: MatchType::Eq as i32,
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        LabelMatcher {
                            r#type: MatchType::Re as i32,
                            name: "job".into(),
                            value: "a.*|b".into(),
                        },
                    ],
                }],
                accepted_response_types: vec![0],
            };
            vec![
                snap::raw::Encoder::new()
                    .compress_vec(&request.encode_to_vec())
                    .expect("compressing a buffer"),
            ]
        }
        Target::Selector => vec![
            br#"http_requests{job=~"api|web", code!="200", path!~'/h.*'}"#.to_vec(),
            b"{__name__=`up`}".to_vec(),
        ],
        Target::Snappy => vec![
            snap::raw::Encoder::new()
                .compress_vec(&v1_bytes)
                .expect("compressing a buffer"),
        ],
        Target::WalSegment => {
            let mut enc = receiver::tsdb::wal::RecordEncoder::default();
            let labels = receiver::tsdb::Labels::from_strs(&[("__name__", "up"), ("job", "a")]);
            enc.series([(1, &labels)]);
            enc.begin_samples();
            enc.sample(1, 1_700_000_000_000, 1.0);
            enc.sample(1, 1_700_000_015_000, 2.0);
            enc.end_samples();
            vec![enc.bytes().to_vec()]
        }
        Target::XorChunk => {
            let mut app = tsdb_format::chunkenc::XorAppender::new();
            for i in 0..120 {
                app.append(1_700_000_000_000 + i * 15_000, (i * i) as f64 * 0.5);
            }
            vec![app.into_bytes().into_vec()]
        }
        Target::Index => vec![index_seed()],
        Target::Hashring => vec![
            br#"[{"hashring":"default","endpoints":["r-0.r.ns.svc:10901","r-1.r.ns.svc:10901","r-2.r.ns.svc:10901"],"tenants":[]}]"#.to_vec(),
            br#"[{"hashring":"a","tenants":["t-*"],"tenant_matcher_type":"glob","algorithm":"ketama","endpoints":[{"address":"a:1","az":"z1"},{"address":"b:1","az":"z2"}]},{"endpoints":["c:1"]}]"#.to_vec(),
        ],
        Target::Limits => vec![
            b"write:\n  global: {max_concurrency: 4, max_tenants: 10}\n  default:\n    request: {size_bytes_limit: 1000, series_limit: 10, samples_limit: 100}\n    head_series_limit: 1000\n  tenants:\n    a: {head_series_limit: 5}\n".to_vec(),
        ],
        Target::Objstore => vec![
            b"type: S3\nconfig:\n  bucket: thanos\n  endpoint: 127.0.0.1:9000\n  insecure: true\n  access_key: AK\n  secret_key: SK\nprefix: p\n".to_vec(),
        ],
    }
}

/// The bytes of a small block index, written with the real index writer.
fn index_seed() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index");
    let mut w = tsdb_format::index::IndexWriter::create(&path).expect("index writer");
    for s in ["__name__", "a", "b", "job", "up", "x"] {
        w.add_symbol(s).expect("symbol");
    }
    let chunks = [tsdb_format::index::ChunkMeta {
        min_time: 0,
        max_time: 100,
        chunk_ref: 8,
    }];
    w.add_series(&[("__name__", "up"), ("job", "a")], &chunks)
        .expect("series");
    w.add_series(&[("__name__", "up"), ("job", "b")], &chunks)
        .expect("series");
    w.add_series(&[("__name__", "x")], &chunks).expect("series");
    w.finish().expect("index");
    std::fs::read(&path).expect("index bytes")
}

/// Seeds of a target: the built-in ones, then the files under `corpus/<target>/`.
pub fn seeds(target: Target, corpus: &Path) -> Vec<Vec<u8>> {
    let mut out = builtin_seeds(target);
    if let Ok(entries) = std::fs::read_dir(corpus.join(target.name())) {
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        out.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    out
}

/// Applies one to four random mutations: bit flips, interesting bytes and varints, inserted,
/// deleted or duplicated ranges, truncation, and splices from another seed.
pub fn mutate(rng: &mut fastrand::Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..rng.usize(1..=4) {
        let len = data.len();
        match rng.u8(..9) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                data[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                data[i] = *rng
                    .choice(&[0u8, 1, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x22])
                    .unwrap_or(&0);
            }
            2 => {
                let i = rng.usize(..=len);
                let n = rng.usize(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                data.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(64));
                data.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(256));
                let copy = data[i..i + n].to_vec();
                let at = rng.usize(..=len);
                data.splice(at..at, copy);
            }
            5 if len > 0 => data.truncate(rng.usize(..len)),
            6 => {
                // A varint at an extreme: lengths and references that overflow 32 or 64 bits.
                let v = *rng
                    .choice(&[
                        0u64,
                        1,
                        127,
                        128,
                        u32::MAX as u64,
                        1 << 32,
                        u64::MAX,
                        i64::MAX as u64,
                    ])
                    .unwrap_or(&0);
                let mut buf = Vec::new();
                prost::encoding::encode_varint(v, &mut buf);
                let i = rng.usize(..=len);
                data.splice(i..i, buf);
            }
            7 if !seeds.is_empty() => {
                let other = &seeds[rng.usize(..seeds.len())];
                if !other.is_empty() {
                    let a = rng.usize(..other.len());
                    let b = rng.usize(a..=other.len());
                    let i = rng.usize(..=len);
                    data.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ => {
                let i = rng.usize(..=len);
                data.insert(i, rng.u8(..));
            }
        }
    }
    data.truncate(MAX_INPUT);
}

/// What a fuzzing run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs executed.
    pub executions: u64,
    /// Inputs that made the target panic, with the panic message.
    pub crashes: Vec<(Vec<u8>, String)>,
}

/// Runs `iterations` mutated inputs (seeds included, unmutated, first) through `target`.
pub fn fuzz(target: Target, iterations: u64, seed: u64, corpus: &Path) -> Report {
    let seeds = seeds(target, corpus);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = Report::default();
    let mut input = Vec::with_capacity(MAX_INPUT);
    for n in 0..iterations {
        input.clear();
        let base = &seeds[n as usize % seeds.len()];
        input.extend_from_slice(base);
        if n >= seeds.len() as u64 {
            mutate(&mut rng, &mut input, &seeds);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| run_one(target, &input)));
        report.executions += 1;
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            report.crashes.push((input.clone(), message));
            if report.crashes.len() >= 10 {
                break;
            }
        }
    }
    report
}
