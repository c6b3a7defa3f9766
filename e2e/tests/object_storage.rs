//! Blocks reach a real S3 server (moto): in order, meta.json last; during an S3 outage ingestion goes
//! on and blocks queue on disk, then upload oldest first when S3 returns; nothing is lost.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{Receiver, eventually, free_port, metric_sum, now_ms, post_v1};
use object_store::ObjectStoreExt;
use receiver::wire::messages::{snappy, v1};

const H: i64 = 3_600_000;

struct S3Server(Child);

impl S3Server {
    async fn start(port: u16, client: &reqwest::Client) -> S3Server {
        let bin = std::env::var("MOTO_SERVER_BIN")
            .map_or_else(|_| e2e::tools::tool("moto_server"), Into::into);
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: {e}: scripts/setup.sh test installs it", bin.display())
            });
        let server = S3Server(child);
        let url = format!("http://127.0.0.1:{port}/thanos");
        eventually(
            Duration::from_secs(30),
            "moto to create the bucket",
            || async {
                let r = client.put(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        server
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bucket_keys(client: &reqwest::Client, port: u16) -> Vec<String> {
    let xml = client
        .get(format!(
            "http://127.0.0.1:{port}/thanos?list-type=2&max-keys=10000"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    xml.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

fn local_blocks(tenant_dir: &Path) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = std::fs::read_dir(tenant_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("meta.json").exists())
        .map(|e| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path().join("meta.json")).unwrap())
                    .unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta["minTime"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort_by_key(|b| b.1);
    out
}

/// A receiver uploading to the S3 bucket `thanos` on `port` (whether or not a server runs there),
/// syncing and compacting every 500 ms; returns it, its objstore file and its data directory.
fn start_with_bucket(
    root: &Path,
    port: u16,
    extra: &[String],
) -> (Receiver, std::path::PathBuf, std::path::PathBuf) {
    let objstore = root.join("objstore.yml");
    std::fs::write(
        &objstore,
        format!("type: S3\nconfig:\n  bucket: thanos\n  endpoint: 127.0.0.1:{port}\n  insecure: true\n  access_key: AK\n  secret_key: SK\n"),
    )
    .unwrap();
    let data = root.join("data");
    let mut flags = vec![
        format!("--objstore.config-file={}", objstore.display()),
        "--shipper.sync-interval=500ms".into(),
        "--tsdb.head-compaction-interval=500ms".into(),
    ];
    flags.extend_from_slice(extra);
    (Receiver::start(&data, &flags), objstore, data)
}

async fn ingest(client: &reqwest::Client, recv: &Receiver, from: i64, hours: i64) {
    for step in 0..hours * 60 {
        let t = from + step * 60_000;
        let timeseries = (0..200)
            .map(|i| {
                v1::series(
                    &[("__name__", "s3_test"), ("i", &i.to_string())],
                    &[(t, i as f64)],
                )
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
        assert_eq!(status, 200, "ingestion must go on whatever S3 does: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_upload_and_survive_an_s3_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    let (mut recv, objstore, data) = start_with_bucket(tmp.path(), port, &[]);
    recv.wait_ready(&client).await;
    let now = now_ms();
    let t0 = (now - 8 * H) / 60_000 * 60_000;
    let tenant_dir = data.join("default-tenant");

    // S3 is down: blocks are cut and wait on disk; writes keep succeeding.
    ingest(&client, &recv, t0, 5).await;
    eventually(
        Duration::from_secs(30),
        "blocks cut while S3 is down",
        || async { (local_blocks(&tenant_dir).len() >= 2).then_some(()) },
    )
    .await;

    let pending = eventually(
        Duration::from_secs(30),
        "failed uploads counted",
        || async {
            let text = recv.metrics_text(&client).await?;
            let failures = metric_sum(&text, "thanos_shipper_upload_failures_total", &[]);
            let pending = metric_sum(&text, "thanos_shipper_pending_blocks", &[]);
            (failures > 0.0 && pending >= 2.0).then_some(pending)
        },
    )
    .await;
    println!("{pending} blocks pending during the outage");

    // S3 returns: the queue drains, oldest first.
    let _s3 = S3Server::start(port, &client).await;
    eventually(
        Duration::from_secs(60),
        "every queued block uploaded",
        || async {
            let text = recv.metrics_text(&client).await?;
            (metric_sum(&text, "thanos_shipper_pending_blocks", &[]) == 0.0).then_some(())
        },
    )
    .await;
    ingest(&client, &recv, t0 + 5 * H, 1).await;

    // Shutdown flushes the head and uploads the last block before exiting.
    assert!(recv.terminate().success(), "{}", recv.log_text());
    let keys = bucket_keys(&client, port).await;
    let blocks = local_blocks(&tenant_dir);
    let bucket = receiver::shipper::objstore::load(&objstore).unwrap();
    assert!(blocks.len() >= 4, "{blocks:?}");
    let mut upload_times = Vec::new();
    for (ulid, _) in &blocks {
        for file in ["meta.json", "index", "chunks/000001"] {
            assert!(
                keys.contains(&format!("{ulid}/{file}")),
                "{ulid}/{file} missing from the bucket: {keys:?}"
            );
        }
        assert!(!keys.contains(&format!("{ulid}/tombstones")));
        let body = bucket
            .store
            .get(&bucket.path(&format!("{ulid}/meta.json")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(meta["thanos"]["labels"]["tenant_id"], "default-tenant");
        upload_times.push(meta["thanos"]["upload_time"].as_str().unwrap().to_string());
    }
    let mut sorted = upload_times.clone();
    sorted.sort();
    assert_eq!(upload_times, sorted, "blocks are uploaded oldest first");
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tenant_dir.join("thanos.shipper.json")).unwrap())
            .unwrap();
    assert_eq!(shipped["uploaded"].as_array().unwrap().len(), blocks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_a_block_only_after_it_is_uploaded() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    let (mut recv, _, data) = start_with_bucket(tmp.path(), port, &["--tsdb.retention=1h".into()]);
    recv.wait_ready(&client).await;
    let now = now_ms();
    // Five hours ending three hours ago: every block cut from them is past the 1h retention.
    let t0 = (now - 8 * H) / 60_000 * 60_000;
    let tenant_dir = data.join("default-tenant");
    ingest(&client, &recv, t0, 5).await;
    let cut = eventually(Duration::from_secs(30), "blocks cut", || async {
        let blocks = local_blocks(&tenant_dir);
        (blocks.len() >= 2).then_some(blocks)
    })
    .await;

    // S3 is down: compaction and retention run many times, and no block leaves the disk.
    let syncs = "thanos_shipper_dir_sync_failures_total";
    let failed = recv.metric_above(&client, syncs, &[], 0.0).await;
    recv.metric_above(&client, syncs, &[], failed + 5.0).await;
    for (ulid, _) in &cut {
        assert!(
            tenant_dir.join(ulid).join("meta.json").exists(),
            "{ulid} was deleted before it reached the bucket"
        );
    }

    // S3 returns: each block is uploaded, then retention deletes it locally.
    let _s3 = S3Server::start(port, &client).await;
    eventually(
        Duration::from_secs(60),
        "uploaded blocks to be deleted",
        || async {
            let left = local_blocks(&tenant_dir);
            cut.iter()
                .all(|(ulid, _)| !left.iter().any(|(l, _)| l == ulid))
                .then_some(())
        },
    )
    .await;
    let keys = bucket_keys(&client, port).await;
    for (ulid, _) in &cut {
        assert!(
            keys.contains(&format!("{ulid}/meta.json")),
            "{ulid} left the disk without reaching the bucket: {keys:?}"
        );
    }
    assert!(recv.terminate().success(), "{}", recv.log_text());
}
