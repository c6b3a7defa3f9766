//! Checks blocks written by this crate with Prometheus' own `promtool` (2.42), and reads
//! blocks `promtool` writes, comparing XOR chunk bytes with our encoder's.
//!
//! `promtool` must be on PATH (or named by `$PROMTOOL`); CI installs it, so a missing
//! binary is a test failure, not a skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tsdb_format::chunkenc::{ENCODING_XOR, XorAppender};
use tsdb_format::{Block, BlockWriter};
use ulid::Ulid;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
const H2: i64 = 2 * 3600 * 1000;
const SERIES: usize = 1000;
const STEP: i64 = 15_000;
/// Three hours of 15 s samples: six full 120-sample chunks per series.
const SAMPLES_PER_SERIES: i64 = 3 * 3600 * 1000 / STEP;

type Labels = Vec<(String, String)>;

fn promtool() -> PathBuf {
    let bin = std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => bin,
        Ok(out) => panic!(
            "`{} --version` failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "promtool not found ({}: {e}); install Prometheus 2.42's promtool \
             (Debian/Ubuntu: apt-get install prometheus) or set PROMTOOL=/path/to/promtool",
            bin.display()
        ),
    }
}

/// Runs promtool, asserting success, and returns stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .output()
        .expect("spawn promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Prometheus' `labels.Labels.String()`: `{a="b", c="d"}`.
fn labels_string(ls: &Labels) -> String {
    let parts: Vec<String> = ls.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Deterministic xorshift, so the data set needs no rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Series labels (sorted by `labels.Compare`) with their samples.
fn dataset(base: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(SERIES);
    for i in 0..SERIES {
        let name = if i % 2 == 0 {
            "http_requests_total"
        } else {
            "node_load1"
        };
        let mut labels: Labels = vec![
            ("__name__".into(), name.into()),
            ("instance".into(), format!("host-{:04}", i / 2)),
            ("job".into(), "bench".into()),
        ];
        if i % 3 == 0 {
            labels.push(("zone".into(), format!("z{}", i % 4)));
        }
        let start = base + (i as i64 % 15) * 1000;
        let mut counter = 0.0;
        let samples = (0..SAMPLES_PER_SERIES)
            .map(|j| {
                // Mostly regular scrapes, with some jitter to exercise non-zero dods.
                let jitter = if j % 7 == 3 {
                    (rng.next() % 900) as i64
                } else {
                    0
                };
                let t = start + j * STEP + jitter;
                let v = if i % 10 == 0 && j == 500 {
                    f64::from_bits(STALE_NAN)
                } else if i % 2 == 0 {
                    counter += (rng.next() % 10) as f64;
                    counter
                } else {
                    (rng.next() % 100_000) as f64 / 1000.0
                };
                (t, v)
            })
            .collect();
        out.push((labels, samples));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes `data` as one block in `parent`, 120 samples per chunk.
fn write_block(
    parent: &Path,
    ulid: Ulid,
    min_time: i64,
    max_time: i64,
    data: &[(Labels, Vec<(i64, f64)>)],
) -> tsdb_format::meta::BlockMeta {
    let mut symbols = BTreeSet::new();
    for (ls, _) in data {
        for (n, v) in ls {
            symbols.insert(n.as_str());
            symbols.insert(v.as_str());
        }
    }
    let mut w = BlockWriter::create(parent, ulid, min_time, max_time).unwrap();
    w.add_symbols(&symbols).unwrap();
    for (ls, samples) in data {
        let chunks: Vec<(i64, i64, Box<[u8]>)> = samples
            .chunks(120)
            .map(|part| {
                let mut app = XorAppender::new();
                for &(t, v) in part {
                    app.append(t, v);
                }
                (app.min_time(), app.max_time(), app.into_bytes())
            })
            .collect();
        let refs: Vec<(i64, i64, &[u8])> = chunks.iter().map(|(a, b, c)| (*a, *b, &**c)).collect();
        let labels: Vec<(&str, &str)> = ls.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        w.add_series(&labels, &refs).unwrap();
    }
    w.finish([("tenant_id".to_string(), "default-tenant".to_string())].into())
        .unwrap()
}

/// Parses `promtool tsdb dump` lines: `{labels} value timestamp`.
fn parse_dump(out: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let close = line
            .rfind('}')
            .unwrap_or_else(|| panic!("bad dump line {line:?}"));
        let (labels, rest) = line.split_at(close + 1);
        let mut fields = rest.split_whitespace();
        let v = fields
            .next()
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let t = fields
            .next()
            .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
        let v: f64 = v.parse().unwrap_or_else(|e| panic!("value {v:?}: {e}"));
        let t: i64 = t.parse().unwrap_or_else(|e| panic!("timestamp {t:?}: {e}"));
        series.entry(labels.to_string()).or_default().push((t, v));
    }
    series
}

fn same_value(a: f64, b: f64) -> bool {
    // The dump prints every NaN as "NaN", so only NaN-ness survives it.
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[test]
fn promtool_accepts_written_block() {
    promtool();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path();
    let min_time = 1_700_000_000_000 / H2 * H2;
    let max_time = min_time + 2 * H2;
    let data = dataset(min_time);
    let ulid = Ulid::generate();
    let meta = write_block(db, ulid, min_time, max_time, &data);
    let total_samples = SERIES as u64 * SAMPLES_PER_SERIES as u64;
    assert_eq!(meta.stats.num_series, SERIES as u64);
    assert_eq!(meta.stats.num_samples, total_samples);
    assert_eq!(meta.stats.num_chunks, SERIES as u64 * 6);
    let db_str = db.to_str().unwrap();
    let ulid_str = ulid.to_string();

    // list: reads meta.json of every block.
    let list = run(&["tsdb", "list", db_str]);
    let row = list
        .lines()
        .find(|l| l.starts_with(&ulid_str))
        .unwrap_or_else(|| panic!("block missing from list:\n{list}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(cols.contains(&total_samples.to_string().as_str()), "{row}");
    assert!(cols.contains(&SERIES.to_string().as_str()), "{row}");
    assert!(cols.contains(&(SERIES * 6).to_string().as_str()), "{row}");

    // analyze: walks symbols, postings, every series and every chunk.
    let analyze = run(&["tsdb", "analyze", db_str, &ulid_str]);
    assert!(
        analyze.contains(&format!("Block ID: {ulid_str}")),
        "{analyze}"
    );
    assert!(analyze.contains(&format!("Series: {SERIES}")), "{analyze}");
    assert!(analyze.contains("Label names: 4"), "{analyze}");
    let analyze = run(&["tsdb", "analyze", "--extended", db_str, &ulid_str]);
    assert!(analyze.contains(&format!("Series: {SERIES}")), "{analyze}");

    // dump: decodes every chunk through Prometheus' XOR iterator. promtool 2.42 opens the
    // directory as a read-only DB, which fails without a (possibly empty) WAL directory.
    fs::create_dir(db.join("wal")).unwrap();
    let dump = run(&[
        "tsdb",
        "dump",
        &format!("--min-time={min_time}"),
        &format!("--max-time={max_time}"),
        db_str,
    ]);
    let dumped = parse_dump(&dump);
    assert_eq!(dumped.len(), SERIES);
    let mut stale_seen = 0;
    for (ls, samples) in &data {
        let key = labels_string(ls);
        let got = dumped
            .get(&key)
            .unwrap_or_else(|| panic!("series {key} missing from dump"));
        assert_eq!(got.len(), samples.len(), "{key}");
        for (g, w) in got.iter().zip(samples) {
            assert_eq!(g.0, w.0, "{key}");
            assert!(
                same_value(g.1, w.1),
                "{key} at {}: got {} want {}",
                w.0,
                g.1,
                w.1
            );
        }
        stale_seen += samples
            .iter()
            .filter(|s| s.1.to_bits() == STALE_NAN)
            .count();
    }
    assert_eq!(stale_seen, SERIES / 10);

    // Our own reader returns the exact bits, stale marker included.
    let block = Block::open(&db.join(&ulid_str)).unwrap();
    let read: Vec<_> = block.series().unwrap().map(Result::unwrap).collect();
    assert_eq!(read.len(), SERIES);
    for (r, (ls, samples)) in read.iter().zip(&data) {
        assert_eq!(&r.labels, ls);
        let got: Vec<(i64, u64)> = r.samples.iter().map(|s| (s.0, s.1.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|s| (s.0, s.1.to_bits())).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn reads_promtool_written_block_and_matches_its_chunk_bytes() {
    promtool();
    let tmp = tempfile::tempdir().unwrap();
    let base = 1_700_000_000_000 / H2 * H2;
    // 300 samples per series inside one 2 h block: chunks of 120, 120, 60.
    let mut input = String::from("# TYPE om_gauge gauge\n");
    let mut want: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut rng = Rng(7);
    for s in 0..20 {
        for j in 0..300i64 {
            let t = base + j * STEP + if j % 5 == 0 { j } else { 0 };
            let v = match (s, j) {
                (0, 10) => f64::INFINITY,
                (0, 11) => f64::NEG_INFINITY,
                (1, _) => 42.0,
                _ => (rng.next() % 1_000_000) as f64 / 8.0,
            };
            let key = format!("{{__name__=\"om_gauge\", series=\"s{s:02}\"}}");
            let text_v = if v.is_infinite() {
                if v > 0.0 {
                    "+Inf".to_string()
                } else {
                    "-Inf".to_string()
                }
            } else {
                format!("{v}")
            };
            input.push_str(&format!(
                "om_gauge{{series=\"s{s:02}\"}} {text_v} {}.{:03}\n",
                t / 1000,
                t % 1000
            ));
            want.entry(key).or_default().push((t, v));
        }
    }
    input.push_str("# EOF\n");
    let input_path = tmp.path().join("input.om");
    fs::write(&input_path, input).unwrap();
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    run(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input_path.to_str().unwrap(),
        out_dir.to_str().unwrap(),
    ]);

    let mut blocks = 0;
    let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut compared_chunks = 0;
    for entry in fs::read_dir(&out_dir).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("meta.json").exists() {
            continue;
        }
        blocks += 1;
        let block = Block::open(&dir).unwrap();
        assert_eq!(block.index().version(), 2);
        assert!(block.tombstones().is_empty());
        for id in block.index().all_postings().unwrap() {
            let entry = block.index().series(id).unwrap();
            // Re-encode each Prometheus chunk's samples: our bytes must be identical.
            for c in &entry.chunks {
                let (enc, bytes) = block.chunks().chunk(c.chunk_ref).unwrap();
                assert_eq!(enc, ENCODING_XOR);
                let mut app = XorAppender::new();
                for (t, v) in tsdb_format::chunkenc::iter_xor(&bytes) {
                    app.append(t, v);
                }
                assert_eq!(app.bytes(), &bytes[..], "chunk {:#x}", c.chunk_ref);
                compared_chunks += 1;
            }
            let s = block.read_series(id).unwrap();
            got.entry(labels_string(&s.labels))
                .or_default()
                .extend(s.samples);
        }
    }
    assert!(blocks >= 1);
    assert!(compared_chunks >= 20 * 3, "{compared_chunks}");
    assert_eq!(got.len(), want.len());
    for (key, w) in &want {
        let g = &got[key];
        assert_eq!(g.len(), w.len(), "{key}");
        for (a, b) in g.iter().zip(w) {
            assert_eq!(a.0, b.0, "{key}");
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{key} at {}", b.0);
        }
    }
}
