//! Acknowledged means kept: a block write that fails on a full disk, and timestamps at the
//! extremes of i64, lose no acknowledged sample and poison no tenant.

#![allow(unsafe_code, reason = "statvfs has no safe wrapper in std")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Receiver, now_ms, post_v1};
use receiver::wire::messages::{snappy, v1};
use tsdb_format::Block;

const SERIES: usize = 200;
const SAMPLES_PER_REQUEST: i64 = 5;

/// A tmpfs mounted for the test's life (the tests run as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount(8)");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs(3) fills the zeroed struct from a valid C path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Request `n`: every series gets 5 samples one second apart, starting at `t0 + 5 s * n`.
fn request(metric: &str, t0: i64, n: i64) -> Vec<u8> {
    let timeseries = (0..SERIES)
        .map(|s| {
            let s = s.to_string();
            let samples: Vec<(i64, f64)> = (0..SAMPLES_PER_REQUEST)
                .map(|k| {
                    let t = t0 + (n * SAMPLES_PER_REQUEST + k) * 1000;
                    (t, t as f64)
                })
                .collect();
            v1::series(&[("__name__", metric), ("series", &s)], &samples)
        })
        .collect();
    snappy(&v1::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

/// Every `(labels, timestamp)` in the blocks of `tenant` under `dirs` (tenant directories and
/// buckets; a block in both counts once), with how often it occurs.
fn block_samples(dirs: &[PathBuf], tenant: &str) -> BTreeMap<(String, i64), u32> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            let Ok(meta) = tsdb_format::meta::read_meta(&path) else {
                continue;
            };
            let labels = meta
                .thanos
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default();
            if labels.get("tenant_id").map(String::as_str) != Some(tenant)
                || !seen.insert(meta.ulid)
            {
                continue;
            }
            let block = Block::open(&path).unwrap();
            for series in block.series().unwrap() {
                let series = series.unwrap();
                let key = format!("{:?}", series.labels);
                for (t, _) in series.samples {
                    *out.entry((key.clone(), t)).or_insert(0) += 1;
                }
            }
        }
    }
    out
}

fn series_key(metric: &str, s: usize) -> String {
    let labels = vec![
        ("__name__".to_string(), metric.to_string()),
        ("series".to_string(), s.to_string()),
    ];
    format!("{labels:?}")
}

/// Whether the log shows a head compaction that failed writing its block (not its checkpoint).
fn block_write_failed(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("head compaction failed") && l.contains("error=\"block in"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_block_write_loses_no_acknowledged_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "16m");
    // Leave ~2 MiB: the WAL and the first blocks fit, later block writes hit ENOSPC.
    let filler = data.join("filler");
    let fill = free_bytes(&data).saturating_sub(2 << 20);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();

    let client = reqwest::Client::new();
    let flags: Vec<String> = [
        "--tsdb.min-block-duration=1m",
        "--tsdb.max-block-duration=1m",
        "--tsdb.head-compaction-interval=1s",
    ]
    .map(String::from)
    .to_vec();
    let mut recv = Receiver::start(&data, &flags);
    recv.wait_ready(&client).await;

    let t0 = (now_ms() - 40 * 60_000) / 60_000 * 60_000;
    let mut acked: Vec<i64> = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    // Write until the disk is full and a block write has failed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && n < 2000 {
        let (status, body) =
            post_v1(&client, &recv.write_url(), request("fill", t0, n), None).await;
        match status {
            200 => acked.push(n),
            500..=599 => refused += 1,
            _ => panic!("request {n}: {status} {body}"),
        }
        n += 1;
        if block_write_failed(&recv.log_text()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = recv.log_text();
    assert!(
        block_write_failed(&log),
        "no block write failed; the test did not fill the disk:\n{log}"
    );
    // Space comes back; the sender goes on (and retries nothing: it only matters what was acked).
    std::fs::remove_file(&filler).unwrap();
    let resumed_at = n;
    while n < resumed_at + 60 {
        let (status, body) =
            post_v1(&client, &recv.write_url(), request("fill", t0, n), None).await;
        assert_eq!(status, 200, "request {n} after space came back: {body}");
        acked.push(n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Compaction catches up on the ranges whose writes failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(recv.terminate().success(), "log:\n{}", recv.log_text());
    let mut recv = Receiver::start(&data, &flags);
    recv.wait_ready(&client).await;
    assert!(recv.terminate().success(), "log:\n{}", recv.log_text());

    let stored = block_samples(&[data.join("default-tenant")], "default-tenant");
    let duplicates: Vec<_> = stored.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "samples in two blocks: {duplicates:?}"
    );
    let mut missing = 0u64;
    for &req in &acked {
        for s in 0..SERIES {
            for k in 0..SAMPLES_PER_REQUEST {
                let t = t0 + (req * SAMPLES_PER_REQUEST + k) * 1000;
                if !stored.contains_key(&(series_key("fill", s), t)) {
                    missing += 1;
                }
            }
        }
    }
    assert_eq!(
        missing,
        0,
        "{} requests acknowledged ({} refused while the disk was full), {missing} of their samples are in no block",
        acked.len(),
        refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_timestamps_poison_no_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bucket = tmp.path().join("bucket");
    let objstore = tmp.path().join("objstore.yml");
    std::fs::write(
        &objstore,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    // With a bucket, retention deletes only uploaded blocks: a block at i64::MIN + 1 is past any
    // retention and must reach the bucket before it leaves the disk.
    let flags: Vec<String> = vec![
        "--tsdb.min-block-duration=1m".into(),
        "--tsdb.max-block-duration=1m".into(),
        "--tsdb.head-compaction-interval=1s".into(),
        "--shipper.sync-interval=1s".into(),
        "--tsdb.flush-timeout=20s".into(),
        format!("--objstore.config-file={}", objstore.display()),
    ];
    let mut recv = Receiver::start(&data, &flags);
    recv.wait_ready(&client).await;

    let year = 365 * 24 * 3_600_000;
    let now = now_ms() / 1000 * 1000;
    let extremes = [i64::MIN + 1, i64::MAX - 1, now + year];
    let mut accepted_extremes = BTreeSet::new();
    for (i, &t) in extremes.iter().enumerate() {
        let i = i.to_string();
        let body = snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(
                &[("__name__", "extreme"), ("i", &i)],
                &[(t, 1.0)],
            )],
            metadata: vec![],
        });
        let (status, text) = post_v1(&client, &recv.write_url(), body, Some("hostile")).await;
        if status == 200 {
            accepted_extremes.insert(t);
        } else {
            assert!((400..500).contains(&status), "{t}: {status} {text}");
        }
    }
    // No block can end after i64::MAX; i64::MIN stands for a series without samples.
    for t in [i64::MAX, i64::MIN] {
        let body = snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(&[("__name__", "extreme")], &[(t, 1.0)])],
            metadata: vec![],
        });
        let (status, text) = post_v1(&client, &recv.write_url(), body, Some("hostile")).await;
        assert!((400..500).contains(&status), "{t}: {status} {text}");
    }

    // The normal sender writes 20 minutes of history and then live data, in both tenants.
    let t0 = (now - 20 * 60_000) / 60_000 * 60_000;
    let requests = 20 * 60 / SAMPLES_PER_REQUEST + 30;
    for n in 0..requests {
        for tenant in ["normal", "hostile"] {
            let (status, text) = post_v1(
                &client,
                &recv.write_url(),
                request("normal", t0, n),
                Some(tenant),
            )
            .await;
            assert_eq!(status, 200, "{tenant} request {n}: {text}");
        }
        if n % 40 == 0 {
            // Let compaction run while the sender goes on.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let start = Instant::now();
    assert!(recv.terminate().success(), "log:\n{}", recv.log_text());
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "SIGTERM took {:?}",
        start.elapsed()
    );

    // After a restart the tenant with a block a year ahead still takes today's samples.
    let mut recv = Receiver::start(&data, &flags);
    recv.wait_ready(&client).await;
    let (status, text) = post_v1(
        &client,
        &recv.write_url(),
        request("normal", t0, requests),
        Some("hostile"),
    )
    .await;
    assert_eq!(status, 200, "after restart: {text}");
    assert!(recv.terminate().success(), "log:\n{}", recv.log_text());

    for tenant in ["normal", "hostile"] {
        let stored = block_samples(&[data.join(tenant), bucket.clone()], tenant);
        let extra = if tenant == "hostile" { 1 } else { 0 };
        let mut per_series: BTreeMap<&str, i64> = BTreeMap::new();
        for (k, _) in stored.keys() {
            *per_series.entry(k.as_str()).or_default() += 1;
        }
        for s in 0..SERIES {
            let n = per_series
                .get(series_key("normal", s).as_str())
                .copied()
                .unwrap_or(0);
            assert_eq!(
                n,
                (requests + extra) * SAMPLES_PER_REQUEST,
                "{tenant} series {s}"
            );
        }
        assert!(
            stored.values().all(|&c| c == 1),
            "{tenant}: a sample in two blocks"
        );
    }
    let hostile = block_samples(&[data.join("hostile"), bucket.clone()], "hostile");
    let extreme: BTreeSet<i64> = hostile
        .keys()
        .filter(|(k, _)| k.contains("\"extreme\""))
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(extreme, accepted_extremes);
    assert_eq!(accepted_extremes.len(), extremes.len());
}
