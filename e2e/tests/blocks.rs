//! Blocks cut from the head are Prometheus blocks: promtool accepts them, Prometheus 2.42 answers
//! PromQL over them with exactly what was written, their size matches promtool's own blocks, and
//! kill -9 during cuts loses nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::prometheus::prometheus_bin;
use e2e::{Receiver, block_dirs, eventually, free_port, post_v1, signal};
use receiver::wire::messages::{snappy, v1};
use tsdb_format::Block;
use tsdb_format::block::TMP_SUFFIX;

const SERIES: usize = 2000;
const STEP_MS: i64 = 60_000;
const HOURS: i64 = 4;
const H: i64 = 3_600_000;

fn value(series: usize, t: i64) -> f64 {
    // Counters with irregular increments, so XOR encoding has realistic work to do.
    (t / STEP_MS) as f64 * (series % 7 + 1) as f64 + ((t / STEP_MS) % 5) as f64 * 0.25
}

/// Half an hour into a 2 h block range, about five hours ago: the 4 h of samples then always
/// span three block ranges and end in the past, whatever the clock's phase (starting on a
/// boundary gave two blocks in the minute after an odd hour).
fn start_time() -> i64 {
    let range = 2 * H;
    (e2e::now_ms() - (HOURS + 1) * H).div_euclid(range) * range + H / 2
}

fn labels(i: usize) -> [(String, String); 3] {
    [
        ("__name__".into(), "blocks_test".into()),
        ("group".into(), format!("g{}", i % 10)),
        ("series".into(), format!("{i:04}")),
    ]
}

async fn ingest(client: &reqwest::Client, recv: &Receiver, t0: i64) {
    let steps = HOURS * H / STEP_MS;
    for step in 0..steps {
        let t = t0 + step * STEP_MS;
        let timeseries = (0..SERIES)
            .map(|i| {
                let l = labels(i);
                let pairs: Vec<(&str, &str)> =
                    l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                v1::series(&pairs, &[(t, value(i, t))])
            })
            .collect();
        let (status, body) = post_v1(
            client,
            &recv.write_url(),
            snappy(&v1::WriteRequest {
                timeseries,
                metadata: vec![],
            }),
            None,
        )
        .await;
        assert_eq!(status, 200, "step {step}: {body}");
    }
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian prometheus package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// Every sample in the blocks of `dir`, per series label `series`, checking blocks never overlap.
fn samples_in_blocks(dir: &Path) -> std::collections::BTreeMap<String, Vec<(i64, f64)>> {
    let mut ranges = Vec::new();
    let mut all: std::collections::BTreeMap<String, Vec<(i64, f64)>> = Default::default();
    for b in block_dirs(dir) {
        let block = Block::open(&b).unwrap();
        ranges.push((block.meta().min_time, block.meta().max_time));
        for s in block.series().unwrap() {
            let s = s.unwrap();
            let key = s
                .labels
                .iter()
                .find(|(n, _)| n == "series")
                .unwrap()
                .1
                .clone();
            all.entry(key).or_default().extend(s.samples);
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "overlapping blocks {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    for v in all.values_mut() {
        v.sort_by_key(|s| s.0);
    }
    all
}

struct PromServer(Child);

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(client: &reqwest::Client, port: u16, q: &str, time_ms: i64) -> serde_json::Value {
    let v: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[
            ("query", q),
            ("time", &format!("{:.3}", time_ms as f64 / 1000.0)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_read_by_promtool_and_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let data = tmp.path().join("data");
    let mut recv = Receiver::start(&data, &["--tsdb.head-compaction-interval=1s".into()]);
    recv.wait_ready(&client).await;
    let t0 = start_time();
    ingest(&client, &recv, t0).await;
    let tenant_dir = data.join("default-tenant");
    // The head spans 4 h: compaction cuts the oldest ranges until it spans at most 3 h.
    eventually(
        Duration::from_secs(30),
        "a block cut from the head",
        || async { (!block_dirs(&tenant_dir).is_empty()).then_some(()) },
    )
    .await;
    // SIGTERM cuts the rest of the head into blocks.
    assert!(recv.terminate().success(), "{}", recv.log_text());
    let blocks = block_dirs(&tenant_dir);
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());

    let list = promtool(&["tsdb", "list", tenant_dir.to_str().unwrap()]);
    let mut total_samples = 0u64;
    for b in &blocks {
        let ulid = b.file_name().unwrap().to_str().unwrap();
        let analyze = promtool(&["tsdb", "analyze", tenant_dir.to_str().unwrap(), ulid]);
        assert!(analyze.contains(&format!("Series: {SERIES}")), "{analyze}");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("meta.json")).unwrap()).unwrap();
        total_samples += meta["stats"]["numSamples"].as_u64().unwrap();
        assert_eq!(meta["thanos"]["labels"]["tenant_id"], "default-tenant");
        assert_eq!(meta["thanos"]["labels"]["replica"], "e2e");
        assert_eq!(meta["thanos"]["source"], "receive");
        assert!(list.contains(ulid));
    }
    let steps = (HOURS * H / STEP_MS) as u64;
    assert_eq!(
        total_samples,
        SERIES as u64 * steps,
        "every sample is in exactly one block"
    );
    let ours: u64 = blocks.iter().map(|b| dir_bytes(b)).sum();

    // Prometheus 2.42 on a copy of the blocks answers PromQL with what was written.
    let prom_dir = tmp.path().join("prom-data");
    std::fs::create_dir_all(&prom_dir).unwrap();
    for b in &blocks {
        let dest = prom_dir.join(b.file_name().unwrap());
        Command::new("cp")
            .arg("-r")
            .arg(b)
            .arg(&dest)
            .status()
            .unwrap();
    }
    std::fs::write(tmp.path().join("prom.yml"), "global: {}\n").unwrap();
    let port = free_port();
    let server = PromServer(
        Command::new(prometheus_bin())
            .arg(format!(
                "--config.file={}",
                tmp.path().join("prom.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(60), "Prometheus ready", || async {
        let r = client
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let end = t0 + HOURS * H - STEP_MS;
    let count = query(&client, port, "count(blocks_test)", end).await;
    assert_eq!(count[0]["value"][1], SERIES.to_string());
    let total = query(
        &client,
        port,
        &format!("sum(count_over_time(blocks_test[{HOURS}h]))"),
        end,
    )
    .await;
    assert_eq!(total[0]["value"][1], (SERIES as u64 * steps).to_string());
    for i in [0usize, 1, 999, 1998] {
        let sel = format!("blocks_test{{series=\"{i:04}\"}}[{HOURS}h]");
        let got = query(&client, port, &sel, end).await;
        let values = got[0]["values"].as_array().unwrap();
        assert_eq!(values.len() as u64, steps, "{sel}");
        for (k, pair) in values.iter().enumerate() {
            let t = t0 + k as i64 * STEP_MS;
            let ts = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
            assert_eq!((ts, v), (t, value(i, t)), "{sel} sample {k}");
        }
    }
    drop(server);

    // promtool's own blocks of the same samples, for size.
    let om = tmp.path().join("data.om");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&om).unwrap());
        writeln!(f, "# TYPE blocks_test gauge").unwrap();
        for i in 0..SERIES {
            let l = labels(i);
            for step in 0..steps as i64 {
                let t = t0 + step * STEP_MS;
                writeln!(
                    f,
                    "blocks_test{{group=\"{}\",series=\"{}\"}} {} {:.3}",
                    l[1].1,
                    l[2].1,
                    value(i, t),
                    t as f64 / 1000.0
                )
                .unwrap();
            }
        }
        writeln!(f, "# EOF").unwrap();
    }
    let reference = tmp.path().join("reference");
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        reference.to_str().unwrap(),
    ]);
    let theirs: u64 = block_dirs(&reference).iter().map(|b| dir_bytes(b)).sum();
    let ratio = ours as f64 / theirs as f64;
    println!(
        "blocks: ours {ours} B ({:.3} B/sample), promtool {theirs} B ({:.3} B/sample), ratio {ratio:.3}",
        ours as f64 / total_samples as f64,
        theirs as f64 / total_samples as f64
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "our blocks are {ratio:.3}x promtool's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_cuts_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let data = tmp.path().join("data");
    let args = ["--tsdb.head-compaction-interval=50ms".to_string()];
    let mut recv = Receiver::start(&data, &args);
    recv.wait_ready(&client).await;
    let t0 = start_time();
    ingest(&client, &recv, t0).await;
    let tenant_dir = data.join("default-tenant");
    // Each round asks for the shutdown flush, which cuts the head into blocks, and kills the
    // receiver the moment a block directory is being written. A partial block left on disk after
    // the kill proves the kill landed mid-cut; the WAL must still hold all of it.
    let mut mid_cut = 0;
    for round in 0..5 {
        signal(&recv.child, libc::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if partial_blocks(&tenant_dir) > 0 {
                recv.kill9();
                break;
            }
            if recv.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no cut"
            );
            std::thread::yield_now();
        }
        let _ = recv.child.wait();
        if partial_blocks(&tenant_dir) > 0 {
            mid_cut += 1;
        }
        // Before the receiver's own cleanup: whatever is not marked partial is a whole block.
        for e in std::fs::read_dir(&tenant_dir)
            .unwrap()
            .filter_map(Result::ok)
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<ulid::Ulid>().is_ok() {
                Block::open(&e.path())
                    .unwrap_or_else(|err| panic!("round {round}: {name} is incomplete: {err}"));
            }
        }
        recv = Receiver::start(&data, &args);
        recv.wait_ready(&client).await;
    }
    assert!(
        mid_cut >= 3,
        "only {mid_cut} of 5 kills landed while a block was being written"
    );
    assert_eq!(
        partial_blocks(&tenant_dir),
        0,
        "restart removes partial blocks"
    );
    assert!(recv.terminate().success(), "{}", recv.log_text());
    for b in block_dirs(&tenant_dir) {
        promtool(&[
            "tsdb",
            "analyze",
            tenant_dir.to_str().unwrap(),
            b.file_name().unwrap().to_str().unwrap(),
        ]);
    }
    let all = samples_in_blocks(&tenant_dir);
    assert_eq!(all.len(), SERIES);
    let steps = HOURS * H / STEP_MS;
    for (series, samples) in &all {
        let i: usize = series.parse().unwrap();
        let want: Vec<(i64, f64)> = (0..steps)
            .map(|k| t0 + k * STEP_MS)
            .map(|t| (t, value(i, t)))
            .collect();
        assert_eq!(samples, &want, "series {series}");
    }
}

/// Block directories still being written (`<ULID>.tmp-for-creation`).
fn partial_blocks(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(TMP_SUFFIX))
            .count()
    })
}
