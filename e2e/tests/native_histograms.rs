//! Native histograms end to end: Debian's Prometheus 2.42 with `--enable-feature=native-histograms`
//! scrapes a target that exposes native histograms (protobuf exposition) and remote-writes them
//! (`send_native_histograms: true`); the receiver stores every one exactly once across a kill -9,
//! and the stale marker the sender writes when the target goes away,
//! cuts them into a block that promtool accepts, and Prometheus 2.42 reading that block answers
//! `histogram_quantile`, `histogram_count` and `histogram_sum` as the sender does.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::prometheus::{Prometheus, prometheus_bin};
use e2e::{Receiver, block_dirs, eventually, free_port, histogram_chunk_bytes, metric_sum};
use prost::Message;
use tsdb_format::Block;

/// The messages of `io.prometheus.client` (Prometheus' `metrics.proto`) a histogram target needs.
mod client_model {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub help: String,
        /// COUNTER 0, GAUGE 1, SUMMARY 2, UNTYPED 3, HISTOGRAM 4, GAUGE_HISTOGRAM 5.
        #[prost(int32, tag = "3")]
        pub r#type: i32,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub sample_count: u64,
        #[prost(double, tag = "2")]
        pub sample_sum: f64,
        #[prost(sint32, tag = "5")]
        pub schema: i32,
        #[prost(double, tag = "6")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "7")]
        pub zero_count: u64,
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "13")]
        pub positive_delta: Vec<i64>,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }
}

/// The histogram of scrape `n` for `method`: buckets 0-3 fill at different rates, bucket 9
/// appears at the 8th scrape (the sender's chunk layout grows), a few observations go to the
/// zero bucket.
fn histogram_at(n: u64, method: u64) -> client_model::Histogram {
    let mut buckets: Vec<(i32, u64)> = (0..4).map(|k| (k, n * (k as u64 + 1) + method)).collect();
    if n >= 8 {
        buckets.push((9, n - 7));
    }
    let mut spans: Vec<client_model::BucketSpan> = Vec::new();
    let mut next = 0;
    for &(i, _) in &buckets {
        match spans.last_mut() {
            Some(s) if i == next => s.length += 1,
            _ => spans.push(client_model::BucketSpan {
                offset: i - next,
                length: 1,
            }),
        }
        next = i + 1;
    }
    let mut prev = 0i64;
    let deltas = buckets
        .iter()
        .map(|&(_, c)| {
            let d = c as i64 - prev;
            prev = c as i64;
            d
        })
        .collect();
    let zero = n / 3;
    client_model::Histogram {
        sample_count: zero + buckets.iter().map(|b| b.1).sum::<u64>(),
        sample_sum: n as f64 * 1.75 + method as f64,
        schema: 3,
        zero_threshold: 1e-4,
        zero_count: zero,
        positive_span: spans,
        positive_delta: deltas,
    }
}

/// A protobuf-exposition target: `rpc_duration_seconds{method="get"|"put"}` native histograms
/// that grow with every scrape; answers 503 once `down` is set, which makes the sender write
/// stale markers.
fn start_target(down: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|l| l > 2) {
                line.clear();
            }
            if down.load(Ordering::Relaxed) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            }
            let family = client_model::MetricFamily {
                name: "rpc_duration_seconds".into(),
                help: "RPC latency.".into(),
                r#type: 4,
                metric: ["get", "put"]
                    .iter()
                    .enumerate()
                    .map(|(m, method)| client_model::Metric {
                        label: vec![client_model::LabelPair {
                            name: "method".into(),
                            value: method.to_string(),
                        }],
                        histogram: Some(histogram_at(n as u64 + 1, m as u64)),
                    })
                    .collect(),
            };
            let body = family.encode_length_delimited_to_vec();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    addr
}

/// Evaluates `q` at `time_ms` on the Prometheus at `port`.
async fn query(client: &reqwest::Client, port: u16, q: &str, time_ms: i64) -> serde_json::Value {
    let v: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[
            ("query", q),
            ("time", &format!("{}.{:03}", time_ms / 1000, time_ms % 1000)),
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

/// `(timestamp ms, count)` of the histograms of a range-vector result's first series.
fn counts(result: &serde_json::Value) -> Vec<(i64, f64)> {
    result[0]["histograms"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let c: f64 = p[1]["count"].as_str().unwrap().parse().unwrap();
                    (t, c)
                })
                .collect()
        })
        .unwrap_or_default()
}

struct PromServer(std::process::Child);

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_remote_writes_native_histograms_that_blocks_serve_back() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let data = tmp.path().join("data");
    let mut recv = Receiver::start(&data, &[]);
    recv.wait_ready(&client).await;
    let down = Arc::new(AtomicBool::new(false));
    let target = start_target(Arc::clone(&down));
    let sender = Prometheus::histogram_sender(
        &tmp.path().join("sender"),
        "rpc",
        &[target],
        &recv.write_url(),
    );
    sender.wait_ready(&client).await;
    let sent = |min: f64| {
        let sender = &sender;
        let client = &client;
        async move {
            let text = sender.metrics(client).await?;
            let n = metric_sum(&text, "prometheus_remote_storage_histograms_total", &[]);
            (n >= min).then_some(n)
        }
    };
    eventually(Duration::from_secs(60), "histograms sent", || sent(24.0)).await;

    // kill -9 with histograms in flight; the sender retries into the restarted receiver.
    recv.kill9();
    let mut recv = Receiver::start_on(&data, recv.rw_port, recv.http_port, recv.grpc_port, &[]);
    recv.wait_ready(&client).await;
    let before = metric_sum(
        &sender.metrics(&client).await.unwrap(),
        "prometheus_remote_storage_histograms_total",
        &[],
    );
    eventually(
        Duration::from_secs(60),
        "histograms sent after the restart",
        || sent(before + 16.0),
    )
    .await;

    // The target goes away: the sender writes stale markers and stops adding histograms.
    down.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = e2e::now_ms();
    let want = counts(
        &query(
            &client,
            sender.port,
            "rpc_duration_seconds{method=\"get\"}[10m]",
            now,
        )
        .await,
    );
    assert!(want.len() >= 20, "{} histograms scraped", want.len());
    let text = sender.metrics(&client).await.unwrap();
    assert_eq!(
        metric_sum(
            &text,
            "prometheus_remote_storage_histograms_failed_total",
            &[]
        ),
        0.0,
        "{}",
        recv.log_text()
    );
    // Stable answers of the sender, at a time inside the stored range.
    let at = want[want.len() / 2].0 + 500;
    let mut expected = Vec::new();
    for q in [
        "histogram_quantile(0.9, rpc_duration_seconds{method=\"get\"})",
        "histogram_quantile(0.5, rpc_duration_seconds{method=\"put\"})",
        "histogram_count(rpc_duration_seconds{method=\"put\"})",
        "histogram_sum(rpc_duration_seconds{method=\"get\"})",
    ] {
        let r = query(&client, sender.port, q, at).await;
        expected.push((q, r[0]["value"][1].clone()));
    }

    // Everything the sender has reaches the receiver (it retries what the kill cut off).
    let last_scraped = want.last().unwrap().0 as f64 / 1000.0;
    eventually(
        Duration::from_secs(30),
        "the sender to have sent every histogram",
        || async {
            let text = sender.metrics(&client).await?;
            let sent_up_to = metric_sum(
                &text,
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                &[],
            );
            let pending = metric_sum(&text, "prometheus_remote_storage_histograms_pending", &[]);
            (sent_up_to >= last_scraped.floor() && pending == 0.0).then_some(())
        },
    )
    .await;
    // The sender's own block of the same histograms, for bytes per histogram on disk.
    let snapshot = sender.snapshot(&client, &tmp.path().join("sender")).await;
    drop(sender);
    let theirs = histogram_chunk_bytes(&block_dirs(&snapshot)[0]);

    // SIGTERM cuts the head into a block: every histogram exactly once, then the stale marker.
    assert!(recv.terminate().success(), "{}", recv.log_text());
    let tenant_dir = data.join("default-tenant");
    let blocks = block_dirs(&tenant_dir);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let block = Block::open(&blocks[0]).unwrap();
    let meta = block.meta();
    assert!(meta.stats.num_histogram_samples >= 2 * want.len() as u64);
    // The two histogram series and the scrape's own series (`up`, `scrape_*`).
    let series: Vec<_> = block.series().unwrap().map(Result::unwrap).collect();
    assert_eq!(meta.stats.num_series, series.len() as u64);
    let rpc = |method: &str| {
        series
            .iter()
            .find(|s| s.labels.iter().any(|(n, v)| n == "method" && v == method))
            .unwrap_or_else(|| panic!("no rpc_duration_seconds{{method={method:?}}}"))
    };
    assert_eq!(rpc("put").histograms.len(), rpc("get").histograms.len());
    let get = rpc("get");
    let stored: Vec<(i64, f64)> = get.histograms.iter().map(|(t, h)| (*t, h.count)).collect();
    let last = want.last().unwrap().0;
    assert_eq!(
        stored
            .iter()
            .filter(|(t, _)| *t <= last)
            .copied()
            .collect::<Vec<_>>(),
        want,
        "every histogram the sender scraped, once, in order"
    );
    // Prometheus 2.42 turns the stale marker of a histogram series into a histogram.
    let (t, h) = get.histograms.last().unwrap();
    assert!(
        h.is_stale() && *t > last,
        "the stale marker after the target went away: last stored {t} {h:?}, last scraped {last}, floats {:?}",
        get.samples
    );

    let ours = histogram_chunk_bytes(&blocks[0]);
    let per = |(bytes, n): (u64, u64)| bytes as f64 / n.max(1) as f64;
    eprintln!(
        "histogram chunk bytes per histogram sample: receiver {:.1} ({} B / {} samples), Prometheus 2.42 {:.1} ({} B / {} samples)",
        per(ours),
        ours.0,
        ours.1,
        per(theirs),
        theirs.0,
        theirs.1
    );
    assert!(
        per(ours) <= 1.25 * per(theirs),
        "our histogram chunks take {:.1} B per sample, Prometheus' {:.1}",
        per(ours),
        per(theirs)
    );

    let analyze = Command::new("promtool")
        .args(["tsdb", "analyze", tenant_dir.to_str().unwrap()])
        .arg(blocks[0].file_name().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&analyze.stdout).to_string()
        + &String::from_utf8_lossy(&analyze.stderr);
    assert!(analyze.status.success(), "promtool tsdb analyze:\n{text}");
    assert!(
        text.contains(&format!("Series: {}", series.len())),
        "{text}"
    );

    // Prometheus 2.42 on a copy of the block answers as the sender did.
    let prom_dir = tmp.path().join("reader");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&blocks[0])
        .arg(prom_dir.join(blocks[0].file_name().unwrap()))
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(tmp.path().join("reader.yml"), "global: {}\n").unwrap();
    let port = free_port();
    let _reader = PromServer(
        Command::new(prometheus_bin())
            .arg(format!(
                "--config.file={}",
                tmp.path().join("reader.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=native-histograms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(60),
        "the reading Prometheus",
        || async {
            let r = client
                .get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    for (q, value) in expected {
        let r = query(&client, port, q, at).await;
        assert_eq!(r[0]["value"][1], value, "{q}");
    }
    let read_back = counts(
        &query(
            &client,
            port,
            "rpc_duration_seconds{method=\"get\"}[10m]",
            now,
        )
        .await,
    );
    assert_eq!(read_back, want);
}
