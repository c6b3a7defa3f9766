//! Helpers for the end-to-end tests: start the real binaries and real peers on loopback ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod prometheus;

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

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
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
        std::fs::create_dir_all(data).expect("data dir");
        let log = data.with_extension(format!("{rw_port}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin("thanos-receiver"))
            .arg("receive")
            .arg(format!("--remote-write.address=127.0.0.1:{rw_port}"))
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--tsdb.path={}", data.display()))
            .arg("--label=replica=\"e2e\"")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawning thanos-receiver");
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

    /// Fetches `/metrics` and returns the sum of every sample of `name` whose labels contain all `labels`.
    pub async fn metric(
        &self,
        client: &reqwest::Client,
        name: &str,
        labels: &[(&str, &str)],
    ) -> f64 {
        let text = client
            .get(self.http_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
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

/// Sums the samples of metric `name` (exact name) whose label set contains every pair in `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Posts a snappy-compressed remote write 1.0 body.
pub async fn post_v1(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> (u16, String) {
    let mut req = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        req = req.header("THANOS-TENANT", t);
    }
    let r = req.send().await.expect("POST remote write");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}
