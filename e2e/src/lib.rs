//! Helpers for the end-to-end tests: start the real binaries and real peers on loopback ports.

#![allow(
    unsafe_code,
    reason = "libc calls for signals, descriptor limits and statvfs"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod certs;
pub mod kube;
pub mod kubelet;
pub mod prometheus;
pub mod service;
pub mod tools;

pub use tools::helm_template;

/// Path of a workspace binary (`cargo build --bins` must have run; `make test` does).
pub fn bin(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("{}_BIN", name.to_uppercase().replace('-', "_"))) {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` (or `make test`) first",
        path.display()
    );
    path
}

/// Block directories (with a `meta.json`) under a tenant directory, sorted (oldest first: ULIDs).
pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    out.sort();
    out
}

/// Bytes of the histogram chunks (record framing included) and histogram samples of a block.
pub fn histogram_chunk_bytes(dir: &Path) -> (u64, u64) {
    let block = tsdb_format::Block::open(dir).expect("a block");
    let (mut bytes, mut samples) = (0u64, 0u64);
    for id in block.index().all_postings().unwrap() {
        for meta in block.index().series(id).unwrap().chunks {
            let (encoding, data) = block.chunks().chunk(meta.chunk_ref).unwrap();
            if encoding == tsdb_format::chunkenc::ENCODING_HISTOGRAM
                || encoding == tsdb_format::chunkenc::ENCODING_FLOAT_HISTOGRAM
            {
                // uvarint length, encoding byte, data, CRC32.
                bytes +=
                    (tsdb_format::encoding::uvarint_len(data.len() as u64) + 1 + data.len() + 4)
                        as u64;
                samples += u64::from(tsdb_format::chunkenc::num_samples(&data).unwrap());
            }
        }
    }
    (bytes, samples)
}

/// A free loopback port, never one this process handed out before, taken below Linux' ephemeral
/// range (32768-60999): a port `bind(0)` hands out may become the source port of any outgoing
/// connection of a concurrent test once its server stops, and a receiver restarted on its old
/// port then failed with "address in use".
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const FIRST: u16 = 20_000;
    const COUNT: u64 = 12_768;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port list");
    // Random per process, so that concurrent test processes rarely try the same ports.
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0..100_000u64 {
        let mut h = seed.build_hasher();
        h.write_u64(attempt);
        let port = FIRST + (h.finish() % COUNT) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        u64::from(FIRST) + COUNT - 1
    );
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A receiver process on loopback ports, killed when dropped.
pub struct Receiver {
    /// The child process.
    pub child: Child,
    /// Remote-write port.
    pub rw_port: u16,
    /// Operational HTTP port.
    pub http_port: u16,
    /// gRPC port.
    pub grpc_port: u16,
    /// `--tsdb.path`.
    pub data: PathBuf,
    /// Where stderr goes.
    pub log: PathBuf,
}

impl Receiver {
    /// Starts `thanos-receiver` on fresh ports with `--tsdb.path=data` and extra flags.
    pub fn start(data: &Path, extra: &[String]) -> Receiver {
        Self::start_on(data, free_port(), free_port(), free_port(), extra)
    }

    /// Starts `thanos-receiver` on the given ports.
    pub fn start_on(
        data: &Path,
        rw_port: u16,
        http_port: u16,
        grpc_port: u16,
        extra: &[String],
    ) -> Receiver {
        Self::spawn(data, [rw_port, http_port, grpc_port], extra, None)
    }

    /// Starts `thanos-receiver` in `dir` with exactly `args` after the program name, as a pod's
    /// argument list; `ports` are the remote-write, HTTP and gRPC ports those arguments listen
    /// on. Its log is `dir/receiver.log`.
    pub fn start_exact(dir: &Path, ports: [u16; 3], args: &[String]) -> Receiver {
        Self::spawn_inner(dir, ports, args, None, false)
    }

    /// Starts `thanos-receiver` on fresh ports with at most `nofile` descriptors (soft and hard
    /// limit, as `ulimit -n` sets them).
    pub fn start_with_nofile(data: &Path, nofile: u64, extra: &[String]) -> Receiver {
        Self::spawn(
            data,
            [free_port(), free_port(), free_port()],
            extra,
            Some(nofile),
        )
    }

    fn spawn(data: &Path, ports: [u16; 3], extra: &[String], nofile: Option<u64>) -> Receiver {
        Self::spawn_inner(data, ports, extra, nofile, true)
    }

    fn spawn_inner(
        data: &Path,
        ports: [u16; 3],
        extra: &[String],
        nofile: Option<u64>,
        own_flags: bool,
    ) -> Receiver {
        let [rw_port, http_port, grpc_port] = ports;
        std::fs::create_dir_all(data).expect("data dir");
        let log = if own_flags {
            data.with_extension(format!("{rw_port}.log"))
        } else {
            data.join("receiver.log")
        };
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin("thanos-receiver"));
        if !own_flags {
            cmd.current_dir(data);
        }
        if own_flags {
            cmd.arg("receive")
                .arg(format!("--remote-write.address=127.0.0.1:{rw_port}"))
                .arg(format!("--http-address=127.0.0.1:{http_port}"))
                .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
                .arg(format!("--tsdb.path={}", data.display()));
        }
        cmd.args(extra).stdout(Stdio::null()).stderr(stderr);
        // Every receiver has a replica label, as in a Thanos deployment; tests may name their own.
        if own_flags && !extra.iter().any(|a| a.starts_with("--label=replica=")) {
            cmd.arg("--label=replica=\"e2e\"");
        }
        if let Some(nofile) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe setrlimit(2) runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawning thanos-receiver");
        Receiver {
            child,
            rw_port,
            http_port,
            grpc_port,
            data: data.to_path_buf(),
            log,
        }
    }

    /// The remote-write URL.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/receive", self.rw_port)
    }

    /// A URL on the operational listener.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Waits until `/-/ready` answers 200.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let url = self.http_url("/-/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("polling child") {
                panic!(
                    "receiver exited with {status} before ready; log:\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "receiver not ready in 60s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The receiver's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(&self.child, libc::SIGTERM);
        wait_timeout(&mut self.child, Duration::from_secs(60)).unwrap_or_else(|| {
            panic!(
                "receiver did not exit within 60s of SIGTERM; log:\n{}",
                self.log_text()
            )
        })
    }

    /// The `/metrics` page, or `None` while the receiver does not answer.
    pub async fn metrics_text(&self, client: &reqwest::Client) -> Option<String> {
        let r = client.get(self.http_url("/metrics")).send().await.ok()?;
        r.text().await.ok()
    }

    /// Waits until the sum of metric `name` with `labels` exceeds `than`, and returns it.
    pub async fn metric_above(
        &self,
        client: &reqwest::Client,
        name: &str,
        labels: &[(&str, &str)],
        than: f64,
    ) -> f64 {
        eventually(Duration::from_secs(30), name, || async {
            let text = self.metrics_text(client).await?;
            let v = metric_sum(&text, name, labels);
            (v > than).then_some(v)
        })
        .await
    }

    /// The series named `name` that `tenant` holds, read back from the data directory of the
    /// stopped receiver (blocks and replayed WAL), as the receiver would on restart.
    pub fn stored_series(&self, tenant: &str, name: &str) -> Vec<receiver::tsdb::SeriesData> {
        use receiver::tsdb::{Budget, Matcher, TenantDb, TsdbOptions};
        let (db, _) = TenantDb::open(&self.data.join(tenant), tenant, TsdbOptions::default())
            .expect("opening the stopped receiver's storage");
        db.query(
            &[Matcher::Equal("__name__".into(), name.into())],
            i64::MIN,
            i64::MAX,
            Budget::default(),
        )
        .expect("reading it back")
    }

    /// Descriptors the receiver process holds open.
    pub fn open_fds(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.child.id());
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .count()
    }

    /// Fetches `/metrics` and returns the sum of every sample of `name` whose labels contain all `labels`.
    pub async fn metric(
        &self,
        client: &reqwest::Client,
        name: &str,
        labels: &[(&str, &str)],
    ) -> f64 {
        let text = self.metrics_text(client).await.expect("GET /metrics");
        metric_sum(&text, name, labels)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits for a child up to `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().expect("polling child") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Sums the samples of metric `name` (exact name) whose labels include every pair of `labels`
/// with exactly that value. Panics when the page does not declare the metric at all, so a renamed
/// metric fails the test instead of reading as 0.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let family = ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    let declared = text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|n| n == name || n == family)
    });
    let mut seen = false;
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((metric, pairs, value)) = parse_sample(line) else {
            continue;
        };
        if metric != name {
            continue;
        }
        seen = true;
        if labels
            .iter()
            .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v))
        {
            sum += value;
        }
    }
    // Families without series are not printed; the receiver's registry says which exist.
    let registered = || {
        receiver::metrics::Metrics::new()
            .family_names()
            .iter()
            .any(|n| *n == name || *n == family)
    };
    assert!(
        declared || seen || registered(),
        "metric {name} is not on the page nor registered by the receiver; it was renamed"
    );
    sum
}

/// Label pairs of an exposition line, unescaped.
type LabelPairs = Vec<(String, String)>;

/// Splits an exposition line into its metric name, label pairs (unescaped) and value.
fn parse_sample(line: &str) -> Option<(&str, LabelPairs, f64)> {
    let (metric, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut pairs = Vec::new();
    let mut rest = rest;
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut end = None;
        let (mut key, mut value) = (String::new(), String::new());
        let mut in_value = false;
        while let Some((i, c)) = chars.next() {
            match (in_value, c) {
                (false, '}') => {
                    end = Some(i + 1);
                    break;
                }
                (false, ',') => {}
                (false, '=') => {
                    chars.next(); // the opening quote
                    in_value = true;
                }
                (false, c) => key.push(c),
                (true, '\\') => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return None,
                },
                (true, '"') => {
                    pairs.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                    in_value = false;
                }
                (true, c) => value.push(c),
            }
        }
        rest = &body[end?..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((metric, pairs, value))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A connected gRPC channel to a receiver's gRPC port on loopback.
pub async fn grpc_channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connecting to the gRPC port")
}

/// Posts a snappy-compressed remote write 1.0 body.
pub async fn post_v1(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> (u16, String) {
    try_post_v1(client, url, body, tenant)
        .await
        .expect("POST remote write")
}

/// [`post_v1`] that gives back a transport error (refused connection, failed handshake).
pub async fn try_post_v1(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> Result<(u16, String), reqwest::Error> {
    let mut req = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        req = req.header("THANOS-TENANT", t);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

/// A `thanos.WriteRequest` for tenant `default-tenant` holding one series named `name`, as a
/// peer forwards it.
pub fn forward_message(name: &str) -> Vec<u8> {
    forward_series(&[&[("__name__", name)]])
}

/// A `thanos.WriteRequest` for tenant `default-tenant` holding one sample now for each label
/// set, labels in the order given (a peer sends them sorted; a hostile client may not).
pub fn forward_series(series: &[&[(&str, &str)]]) -> Vec<u8> {
    use prost::Message as _;
    use receiver::wire::messages::v1;
    let mut batch = receiver::wire::WriteBatch::with_body(
        v1::WriteRequest {
            timeseries: series
                .iter()
                .map(|labels| v1::series(labels, &[(now_ms(), 1.0)]))
                .collect(),
            metadata: vec![],
        }
        .encode_to_vec(),
    );
    batch
        .decode(receiver::wire::Protocol::V1)
        .expect("a decodable request");
    let all: Vec<usize> = (0..series.len()).collect();
    let mut out = Vec::new();
    receiver::wire::forward::encode(&batch, &all, "default-tenant", 1, &mut out);
    out
}

/// One gRPC frame: compressed flag, big-endian length, payload.
pub fn grpc_frame(compressed: bool, payload: &[u8]) -> bytes::Bytes {
    use bytes::BufMut as _;
    let mut b = bytes::BytesMut::new();
    b.put_u8(u8::from(compressed));
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// Posts a snappy-compressed remote write 2.0 body; returns the status and reason.
pub async fn post_v2(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, String) {
    let r = client
        .post(url)
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(body)
        .send()
        .await
        .expect("POST remote write 2.0");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Writes `content` to `path` atomically (temp file + rename), as a config-management tool would.
pub fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("writing temp file");
    std::fs::rename(&tmp, path).expect("renaming into place");
}

/// A `hashrings.json` with one default ring over `endpoints`.
pub fn ring_json(endpoints: &[String], algorithm: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"[{{"hashring":"default","algorithm":"{algorithm}","endpoints":[{}],"tenants":[]}}]"#,
        eps.join(",")
    )
}

/// A cluster of receivers on loopback sharing one hashring file.
pub struct Cluster {
    /// The receivers, in ring order.
    pub receivers: Vec<Receiver>,
    /// The shared hashring file.
    pub ring_file: PathBuf,
    /// gRPC endpoints of every receiver, as written in the ring.
    pub endpoints: Vec<String>,
    root: PathBuf,
    rf: usize,
}

impl Cluster {
    /// Starts `n` receivers with `--receive.replication-factor=rf`; the ring holds the first `in_ring` of them.
    pub async fn start(
        root: &Path,
        n: usize,
        in_ring: usize,
        rf: usize,
        algorithm: &str,
        client: &reqwest::Client,
    ) -> Cluster {
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{}", p.2)).collect();
        let ring_file = root.join("hashrings.json");
        write_atomic(&ring_file, &ring_json(&endpoints[..in_ring], algorithm));
        let mut cluster = Cluster {
            receivers: Vec::new(),
            ring_file,
            endpoints,
            root: root.to_path_buf(),
            rf,
        };
        for (i, &p) in ports.iter().enumerate() {
            let r = cluster.spawn(i, p);
            cluster.receivers.push(r);
        }
        for r in &mut cluster.receivers {
            r.wait_ready(client).await;
        }
        cluster
    }

    fn spawn(&self, i: usize, (rw, http, grpc): (u16, u16, u16)) -> Receiver {
        Receiver::start_on(
            &self.root.join(format!("r{i}")),
            rw,
            http,
            grpc,
            &[
                format!("--receive.hashrings-file={}", self.ring_file.display()),
                format!("--receive.replication-factor={}", self.rf),
                format!("--receive.local-endpoint={}", self.endpoints[i]),
                "--label=receive=\"true\"".to_string(),
                format!("--label=replica=\"r{i}\""),
            ],
        )
    }

    /// Restarts receiver `i` on its old ports and data.
    pub async fn restart(&mut self, i: usize, client: &reqwest::Client) {
        let r = &self.receivers[i];
        let ports = (r.rw_port, r.http_port, r.grpc_port);
        let mut fresh = self.spawn(i, ports);
        fresh.wait_ready(client).await;
        self.receivers[i] = fresh;
    }
}

/// What a bounded write loop saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Latency of every request, in request order.
    pub latencies: Vec<Duration>,
    /// Status codes other than 200, with their bodies.
    pub failures: Vec<(u16, String)>,
}

impl LoadStats {
    /// The p-th percentile latency (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 - 1.0) * p / 100.0).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// A remote write 1.0 body of `series` series `{__name__="load", series="<i>", run="<run>"}` at time `t`.
pub fn load_request(run: &str, series: usize, t: i64) -> Vec<u8> {
    use receiver::wire::messages::{snappy, v1};
    let timeseries = (0..series)
        .map(|s| {
            let s = s.to_string();
            v1::series(
                &[("__name__", "load"), ("run", run), ("series", &s)],
                &[(t, t as f64)],
            )
        })
        .collect();
    snappy(&v1::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

/// Sends `requests` sequential writes of `series` series each (timestamps 1 s apart from `t0`), or until `until`.
pub async fn write_loop(
    client: &reqwest::Client,
    url: &str,
    run: &str,
    series: usize,
    t0: i64,
    requests: usize,
    until: Instant,
) -> LoadStats {
    let mut stats = LoadStats::default();
    for n in 0..requests {
        if Instant::now() >= until {
            break;
        }
        let body = load_request(run, series, t0 + n as i64 * 1000);
        let start = Instant::now();
        let (status, text) = post_v1(client, url, body, None).await;
        stats.latencies.push(start.elapsed());
        if status != 200 {
            stats.failures.push((status, text));
        }
    }
    stats
}

/// The `numSeries` of a receiver's default tenant head.
pub async fn head_series(client: &reqwest::Client, r: &Receiver) -> u64 {
    let v: serde_json::Value = client
        .get(r.http_url("/api/v1/status/tsdb"))
        .send()
        .await
        .expect("GET status")
        .json()
        .await
        .expect("status json");
    v["data"][0]["headStats"]["numSeries"].as_u64().unwrap_or(0)
}

/// The ring hash a receiver reports as in force.
pub async fn ring_hash(client: &reqwest::Client, r: &Receiver) -> Option<String> {
    let v: serde_json::Value = client
        .get(r.http_url("/api/v1/status/hashring"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["hash"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    const PAGE: &str = r#"# HELP thanos_receive_rejected_samples Samples rejected, by reason.
# TYPE thanos_receive_rejected_samples counter
thanos_receive_rejected_samples_total{tenant="a",reason="out_of_order"} 3
thanos_receive_rejected_samples_total{tenant="ab",reason="out_of_order"} 5
thanos_receive_rejected_samples_total{tenant="a,b=\"c\"",reason="x"} 7
# TYPE prometheus_tsdb_head_series gauge
# TYPE up gauge
up 1
"#;

    #[test]
    fn labels_match_exactly_and_missing_metrics_fail() {
        let rejected = "thanos_receive_rejected_samples_total";
        assert_eq!(metric_sum(PAGE, rejected, &[("tenant", "a")]), 3.0);
        assert_eq!(metric_sum(PAGE, rejected, &[]), 15.0);
        assert_eq!(metric_sum(PAGE, rejected, &[("tenant", "a,b=\"c\"")]), 7.0);
        assert_eq!(metric_sum(PAGE, rejected, &[("tenant", "b")]), 0.0);
        // Declared without samples yet: 0, not a failure.
        assert_eq!(metric_sum(PAGE, "prometheus_tsdb_head_series", &[]), 0.0);
        assert_eq!(metric_sum(PAGE, "up", &[]), 1.0);
        let renamed =
            std::panic::catch_unwind(|| metric_sum(PAGE, "thanos_receive_gone_total", &[]));
        assert!(renamed.is_err(), "an absent metric must fail");
    }
}
