//! Debian's Prometheus 2.42 as a real remote-write sender (agent mode) and a real remote-read
//! client (server mode).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::free_port;

/// A Prometheus process on loopback: an agent that remote-writes, or a server that remote-reads.
pub struct Prometheus {
    child: Child,
    /// Web port (`/metrics`, the HTTP API).
    pub port: u16,
    /// Where stderr goes.
    pub log: PathBuf,
}

/// Path of the prometheus binary (override with `PROMETHEUS_BIN`).
pub fn prometheus_bin() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into()),
    );
    assert!(
        p.exists(),
        "{} is missing: install Debian's prometheus package (.ci/run does)",
        p.display()
    );
    p
}

impl Prometheus {
    /// Starts an agent in `dir` scraping itself and `targets` every second and remote-writing to `url`.
    pub fn agent(dir: &Path, url: &str, targets: &[String]) -> Prometheus {
        Self::agent_with(dir, url, targets, "")
    }

    /// [`Prometheus::agent`] with more `remote_write` settings (YAML lines indented by 4, e.g.
    /// a `tls_config:` block).
    pub fn agent_with(dir: &Path, url: &str, targets: &[String], remote_write: &str) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let mut all_targets = vec![format!("'127.0.0.1:{port}'")];
        all_targets.extend(targets.iter().map(|t| format!("'{t}'")));
        let config = format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: e2e
    static_configs:
      - targets: [{targets}]
remote_write:
  - url: {url}
    remote_timeout: 5s
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 1s
{remote_write}"#,
            targets = all_targets.join(", "),
        );
        let agent_path = format!("--storage.agent.path={}", dir.join("agent").display());
        Self::spawn(dir, port, &config, &["--enable-feature=agent", &agent_path])
    }

    /// Writes `config` into `dir` and runs Prometheus on `port` with it and `flags`.
    fn spawn(dir: &Path, port: u16, config: &str, flags: &[&str]) -> Prometheus {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus config");
        let log = dir.join("prometheus.log");
        let child = Command::new(prometheus_bin())
            .args(flags)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawning prometheus");
        Prometheus { child, port, log }
    }

    /// Its own metrics page, once it is up.
    pub async fn metrics(&self, client: &reqwest::Client) -> Option<String> {
        let r = client
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }

    /// Starts a Prometheus server with an empty TSDB in `dir`, reading remotely from `url` (`read_recent`, since its own
    /// storage holds nothing). Its `external_labels` become equality matchers of every remote
    /// read, which is how it names a tenant (`tenant_id`): 2.42 sends no custom read headers.
    pub fn reader(dir: &Path, url: &str, external_labels: &[(&str, &str)]) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let external: String = external_labels
            .iter()
            .map(|(k, v)| format!("    {k}: {v}\n"))
            .collect();
        let external = if external.is_empty() {
            external
        } else {
            format!("  external_labels:\n{external}")
        };
        let config = format!(
            "global:\n  scrape_interval: 1m\n{external}remote_read:\n  - url: {url}\n    read_recent: true\n    remote_timeout: 30s\n"
        );
        let tsdb_path = format!("--storage.tsdb.path={}", dir.join("tsdb").display());
        Self::spawn(dir, port, &config, &[&tsdb_path])
    }

    /// Starts a Prometheus server with exemplar storage in `dir`, scraping `targets` every second
    /// as job `job` and remote-writing samples and exemplars to `url`.
    pub fn exemplar_sender(dir: &Path, job: &str, targets: &[String], url: &str) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\nremote_write:\n  - url: {url}\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 50ms\n      max_backoff: 1s\n",
            targets.join(", ")
        );
        let tsdb_path = format!("--storage.tsdb.path={}", dir.join("tsdb").display());
        Self::spawn(
            dir,
            port,
            &config,
            &[&tsdb_path, "--enable-feature=exemplar-storage"],
        )
    }

    /// Starts a Prometheus server with native histograms in `dir`, scraping `targets` every
    /// second as job `job` (protobuf exposition) and remote-writing samples and native
    /// histograms to `url`; its admin API takes [`Prometheus::snapshot`].
    pub fn histogram_sender(dir: &Path, job: &str, targets: &[String], url: &str) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\nremote_write:\n  - url: {url}\n    send_native_histograms: true\n    queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 50ms\n      max_backoff: 1s\n",
            targets.join(", ")
        );
        let tsdb_path = format!("--storage.tsdb.path={}", dir.join("tsdb").display());
        Self::spawn(
            dir,
            port,
            &config,
            &[
                &tsdb_path,
                "--enable-feature=native-histograms",
                "--web.enable-admin-api",
            ],
        )
    }

    /// Starts a Prometheus server in `dir` that takes remote writes with native histograms
    /// (`/api/v1/write`) and writes its head as a block on [`Prometheus::snapshot`].
    pub fn histogram_receiver(dir: &Path) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let tsdb_path = format!("--storage.tsdb.path={}", dir.join("tsdb").display());
        Self::spawn(
            dir,
            port,
            "global:\n  scrape_interval: 1m\n",
            &[
                &tsdb_path,
                "--web.enable-remote-write-receiver",
                "--web.enable-admin-api",
                "--enable-feature=native-histograms",
            ],
        )
    }

    /// Writes the head and every block into a snapshot (admin API) and returns its directory.
    pub async fn snapshot(&self, client: &reqwest::Client, dir: &Path) -> PathBuf {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/admin/tsdb/snapshot?skip_head=false",
            self.port
        );
        let r: serde_json::Value = client
            .post(&url)
            .send()
            .await
            .expect("snapshot")
            .json()
            .await
            .expect("snapshot JSON");
        let name = r["data"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("snapshot failed: {r}\nlog:\n{}", self.log_text()));
        dir.join("tsdb").join("snapshots").join(name)
    }

    /// Starts a Prometheus server in `dir` scraping `targets` every second as job `job`.
    pub fn scraper(dir: &Path, job: &str, targets: &[String]) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let tsdb_path = format!("--storage.tsdb.path={}", dir.join("tsdb").display());
        Self::spawn(dir, port, &config, &[&tsdb_path])
    }

    /// Waits until the HTTP API answers.
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        crate::eventually(
            std::time::Duration::from_secs(60),
            "Prometheus to be ready",
            || async {
                let r = client.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
    }

    /// Evaluates an instant query at `time_ms`: each result's labels and value.
    pub async fn query(
        &self,
        client: &reqwest::Client,
        promql: &str,
        time_ms: i64,
    ) -> Vec<(serde_json::Value, f64)> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let time = format!("{}.{:03}", time_ms / 1000, time_ms % 1000);
        let r: serde_json::Value = client
            .get(&url)
            .query(&[("query", promql), ("time", time.as_str())])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query JSON");
        assert_eq!(
            r["status"],
            "success",
            "{promql}: {r}\nlog:\n{}",
            self.log_text()
        );
        r["data"]["result"]
            .as_array()
            .expect("vector result")
            .iter()
            .map(|s| {
                let v = s["value"][1]
                    .as_str()
                    .expect("value")
                    .parse()
                    .expect("float");
                (s["metric"].clone(), v)
            })
            .collect()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
