//! Debian's Prometheus 2.42 as a real remote-write sender (agent mode).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::free_port;

/// A Prometheus agent that scrapes itself (and extra targets) and remote-writes to a URL.
pub struct PrometheusAgent {
    child: Child,
    /// Web port (its own `/metrics`).
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

impl PrometheusAgent {
    /// Starts an agent in `dir` scraping itself and `targets` every second and remote-writing to `url`.
    pub fn start(dir: &Path, url: &str, targets: &[String]) -> PrometheusAgent {
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
"#,
            targets = all_targets.join(", "),
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus config");
        let log = dir.join("prometheus.log");
        let child = Command::new(prometheus_bin())
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.agent.path={}",
                dir.join("agent").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawning prometheus");
        PrometheusAgent { child, port, log }
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

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PrometheusAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
