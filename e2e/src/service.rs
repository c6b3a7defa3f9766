//! A remote-write sender that reaches receivers the way Prometheus does through a Kubernetes
//! Service: each attempt goes to the next Ready pod, and a failed attempt (connection error,
//! 5xx, 429) is retried with backoff until the retries end, as Prometheus' queue manager does.

use std::time::{Duration, Instant};

use crate::kubelet::Pods;

/// Attempts per request before the request counts as failed.
const MAX_ATTEMPTS: u32 = 12;
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`] (Prometheus: 30 ms, 5 s).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One client request, with its retries.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When the first attempt started.
    pub at: Instant,
    /// From the first attempt to the last answer, retries included.
    pub latency: Duration,
    /// Latency of each attempt.
    pub attempts: Vec<Duration>,
    /// Sample timestamp of every series in the request.
    pub t: i64,
    /// 2xx in the end.
    pub acked: bool,
    /// Why each failed attempt failed.
    pub errors: Vec<String>,
}

/// What one writer sent.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// Its `run` label.
    pub run: String,
    /// Series per request (`series="0"..`).
    pub series: usize,
    /// Every request in order.
    pub sent: Vec<Sent>,
}

impl WriterLog {
    /// Requests that failed after their retries.
    pub fn failed(&self) -> Vec<&Sent> {
        self.sent.iter().filter(|s| !s.acked).collect()
    }
}

/// Sends a request of `series` series `{__name__="load", run, series}` every `interval`
/// (timestamps strictly increasing, near now) until `stop` turns true, through the Ready pods.
pub async fn write_through_service(
    pods: Pods,
    run: String,
    series: usize,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> WriterLog {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut log = WriterLog {
        run: run.clone(),
        series,
        sent: Vec::new(),
    };
    let mut next_pod = 0usize;
    let mut last_t = 0i64;
    while !*stop.borrow() {
        let t = crate::now_ms().max(last_t + 1);
        last_t = t;
        let body = crate::load_request(&run, series, t);
        let at = Instant::now();
        let mut sent = Sent {
            at,
            latency: Duration::ZERO,
            attempts: Vec::new(),
            t,
            acked: false,
            errors: Vec::new(),
        };
        let mut backoff = MIN_BACKOFF;
        for _ in 0..MAX_ATTEMPTS {
            let ready = pods.ready();
            let attempt = Instant::now();
            let outcome = if ready.is_empty() {
                Err(Retry::Yes("no Ready pod".to_string()))
            } else {
                next_pod = next_pod.wrapping_add(1);
                let pod = &ready[next_pod % ready.len()];
                let url = format!("http://{}/api/v1/receive", pod.remote_write);
                post(&client, &url, body.clone())
                    .await
                    .map_err(|e| e.on(&pod.name))
            };
            sent.attempts.push(attempt.elapsed());
            match outcome {
                Ok(()) => {
                    sent.acked = true;
                    break;
                }
                Err(Retry::No(e)) => {
                    sent.errors.push(e);
                    break;
                }
                Err(Retry::Yes(e)) => sent.errors.push(e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        sent.latency = at.elapsed();
        log.sent.push(sent);
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(interval.saturating_sub(at.elapsed())) => {}
        }
    }
    log
}

enum Retry {
    Yes(String),
    No(String),
}

impl Retry {
    /// The same verdict, naming the pod that gave it.
    fn on(self, pod: &str) -> Retry {
        match self {
            Retry::Yes(e) => Retry::Yes(format!("{pod}: {e}")),
            Retry::No(e) => Retry::No(format!("{pod}: {e}")),
        }
    }
}

/// One attempt: `Ok` on 2xx; Prometheus retries connection errors, 5xx and 429, not other 4xx.
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), Retry> {
    let (status, text) = crate::try_post_v1(client, url, body, None)
        .await
        .map_err(|e| Retry::Yes(format!("{e}")))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let e = format!("{status}: {}", text.trim());
    if status >= 500 || status == 429 {
        Err(Retry::Yes(e))
    } else {
        Err(Retry::No(e))
    }
}
