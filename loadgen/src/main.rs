//! `thanos-loadgen`: replays pre-encoded remote-write requests against one or more receivers the
//! way a Prometheus remote-write queue does (shards with one request in flight each, retries with
//! backoff), bounded by duration, request count and steps, and reports throughput and latency.

#![allow(unsafe_code, reason = "getrusage has no safe wrapper in std")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use loadgen::payload::{Plan, Template, timestamp_fits};
use loadgen::retry::{Backoff, Verdict, verdict};
use loadgen::series::{Churn, MAX_LABELS, MIN_LABELS, SeriesId};
use loadgen::stats::Stats;
use receiver::cli::parse_duration;
use receiver::wire::Protocol;
use serde::Serialize;

/// Remote-write load generator with Prometheus' sender behaviour.
#[derive(Debug, Parser)]
#[command(name = "thanos-loadgen", version)]
struct Args {
    /// Remote-write URL; repeat to spread shards round-robin over several receivers.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Active series.
    #[arg(long, default_value_t = 100_000)]
    series: u64,
    /// Labels per series, `__name__` included (10-15).
    #[arg(long, default_value_t = 12)]
    labels_per_series: usize,
    /// Samples (one per series) per request; Prometheus sends up to `max_samples_per_send`.
    #[arg(long, default_value_t = 2000)]
    samples_per_request: u64,
    /// Shards: concurrent requests, each shard owning a fixed share of the series.
    #[arg(long, default_value_t = 10)]
    concurrency: u64,
    /// Time between two samples of a series (timestamps advance by this per step).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    interval: Duration,
    /// Fraction of the active series replaced by new ones at every step.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Remote-write protocol.
    #[arg(long, default_value = "v1", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Tenant sent in `--tenant-header`.
    #[arg(long)]
    tenant: Option<String>,
    /// Header that carries the tenant.
    #[arg(long, default_value = "THANOS-TENANT")]
    tenant_header: String,
    /// Stop after this many requests (0: no limit).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Stop after every shard sent this many steps (0: no limit).
    #[arg(long, default_value_t = 0)]
    steps: u64,
    /// Stop starting requests after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Timeout of one attempt (Prometheus' `remote_timeout`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// First retry delay (Prometheus' `min_backoff`).
    #[arg(long, default_value = "30ms", value_parser = parse_duration)]
    min_backoff: Duration,
    /// Longest retry delay (Prometheus' `max_backoff`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    max_backoff: Duration,
    /// Send at most this many samples per second overall (0: as fast as the receivers answer).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Send at the pace of a real sender: `series / interval` samples per second.
    #[arg(long, conflicts_with = "rate")]
    realtime: bool,
    /// Timestamp of the first step in ms (default: now); pass a previous run's `next_start_ms` to
    /// continue the same series on the same receivers.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// CA (PEM) that signs the receivers' certificates, for `https://` URLs.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key (one PEM file) presented to the receivers (mTLS).
    #[arg(long)]
    tls_identity: Option<std::path::PathBuf>,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "v1" | "1" | "1.0" => Ok(Protocol::V1),
        "v2" | "2" | "2.0" => Ok(Protocol::V2),
        _ => Err(format!("unknown protocol {s:?}: v1 or v2")),
    }
}

/// One request slot of a shard: the template currently used and the churn state it encodes.
struct Slot {
    key: (u64, u64),
    template: Template,
}

/// What every shard shares.
struct Run {
    client: reqwest::Client,
    args: Args,
    plan: Plan,
    churn: Churn,
    start_ms: i64,
    deadline: Instant,
    started: Instant,
    rate: f64,
    requests_left: AtomicU64,
    samples_scheduled: AtomicU64,
}

/// The summary, printed as text or JSON.
#[derive(Debug, Serialize)]
struct Report {
    protocol: &'static str,
    series: u64,
    labels_per_series: usize,
    samples_per_request: u64,
    concurrency: u64,
    rate_limit: f64,
    pre_encode_seconds: f64,
    templates: usize,
    raw_bytes_per_sample: f64,
    compressed_bytes_per_sample: f64,
    elapsed_seconds: f64,
    requests_ok: u64,
    samples_ok: u64,
    samples_failed: u64,
    retries: u64,
    templates_rebuilt: u64,
    samples_per_second: f64,
    requests_per_second: f64,
    latency_ms_p50: f64,
    latency_ms_p90: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    /// Per request, from the first attempt to the last answer (retries and backoff included).
    request_latency_ms_p50: f64,
    request_latency_ms_p99: f64,
    request_latency_ms_max: f64,
    statuses: std::collections::BTreeMap<String, u64>,
    first_errors: std::collections::BTreeMap<String, String>,
    /// CPU of the timed run only.
    loadgen_cpu_seconds: f64,
    /// CPU of the whole process, pre-encoding included.
    loadgen_total_cpu_seconds: f64,
    steps_sent: u64,
    next_start_ms: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        (MIN_LABELS..=MAX_LABELS).contains(&args.labels_per_series),
        "--labels-per-series must be within {MIN_LABELS}..={MAX_LABELS}"
    );
    ensure!(args.series > 0 && args.concurrency > 0 && args.samples_per_request > 0);
    ensure!((0.0..=1.0).contains(&args.churn), "--churn is a fraction");
    ensure!(args.interval.as_millis() > 0, "--interval must be positive");
    let start_ms = args.start_ms.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        now - now % args.interval.as_millis() as i64
    });
    ensure!(
        timestamp_fits(start_ms),
        "--start-ms {start_ms} out of range"
    );
    let plan = Plan {
        series: args.series,
        shards: args.concurrency.min(args.series),
        per_request: args.samples_per_request,
    };
    let churn = Churn {
        series: args.series,
        rate: args.churn,
    };

    let pre = Instant::now();
    let slots = pre_encode(&plan, &churn, args.labels_per_series, args.protocol);
    let pre_encode_seconds = pre.elapsed().as_secs_f64();
    let templates: Vec<&Template> = slots.iter().flatten().map(|s| &s.template).collect();
    let samples: usize = templates.iter().map(|t| t.samples()).sum();
    let raw: usize = templates.iter().map(|t| t.raw_len()).sum();
    let compressed: usize = templates.iter().map(|t| t.compressed_len()).sum();
    let template_count = templates.len();
    if !args.json {
        eprintln!(
            "pre-encoded {template_count} requests of {} series in {pre_encode_seconds:.1}s: {:.0} B/sample protobuf, {:.1} B/sample snappy",
            args.series,
            raw as f64 / samples as f64,
            compressed as f64 / samples as f64
        );
    }

    let rate = if args.realtime {
        args.series as f64 / args.interval.as_secs_f64()
    } else {
        args.rate
    };
    let runtime = {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = args.threads {
            b.worker_threads(n);
        }
        b.enable_all().build()?
    };
    let mut client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.shards as usize)
        .tcp_nodelay(true)
        .user_agent(concat!("thanos-loadgen/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &args.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("--tls-ca {}", ca.display()))?;
        client = client
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).context("--tls-ca")?);
    }
    if let Some(id) = &args.tls_identity {
        let pem = std::fs::read(id).with_context(|| format!("--tls-identity {}", id.display()))?;
        client = client
            .use_rustls_tls()
            .identity(reqwest::Identity::from_pem(&pem).context("--tls-identity")?);
    }
    let client = client.build().context("building the HTTP client")?;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let run = Arc::new(Run {
        client,
        requests_left: AtomicU64::new(if args.requests == 0 {
            u64::MAX
        } else {
            args.requests
        }),
        samples_scheduled: AtomicU64::new(0),
        deadline: started + args.duration,
        started,
        rate,
        plan,
        churn,
        start_ms,
        args,
    });
    let results = runtime.block_on(async {
        let tasks: Vec<_> = slots
            .into_iter()
            .enumerate()
            .map(|(shard, slots)| tokio::spawn(shard_loop(Arc::clone(&run), shard as u64, slots)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.context("shard task")?);
        }
        anyhow::Ok(out)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let loadgen_cpu_seconds = cpu_seconds() - cpu_before;

    let mut stats = Stats::default();
    let mut steps_sent = 0;
    let mut rebuilt = 0;
    for (s, steps, r) in results {
        stats.merge(s);
        steps_sent = steps_sent.max(steps);
        rebuilt += r;
    }
    let p = stats.percentiles_ms(&[0.5, 0.9, 0.99, 1.0]);
    let rp = stats.request_percentiles_ms(&[0.5, 0.99, 1.0]);
    let args = &run.args;
    let report = Report {
        protocol: match args.protocol {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        },
        series: args.series,
        labels_per_series: args.labels_per_series,
        samples_per_request: args.samples_per_request,
        concurrency: run.plan.shards,
        rate_limit: rate,
        pre_encode_seconds,
        templates: template_count,
        raw_bytes_per_sample: raw as f64 / samples as f64,
        compressed_bytes_per_sample: compressed as f64 / samples as f64,
        elapsed_seconds: elapsed,
        requests_ok: stats.requests_ok,
        samples_ok: stats.samples_ok,
        samples_failed: stats.samples_failed,
        retries: stats.retries,
        templates_rebuilt: rebuilt,
        samples_per_second: stats.samples_ok as f64 / elapsed,
        requests_per_second: stats.requests_ok as f64 / elapsed,
        latency_ms_p50: p[0],
        latency_ms_p90: p[1],
        latency_ms_p99: p[2],
        latency_ms_max: p[3],
        request_latency_ms_p50: rp[0],
        request_latency_ms_p99: rp[1],
        request_latency_ms_max: rp[2],
        statuses: stats.statuses.clone(),
        first_errors: stats.first_errors.clone(),
        loadgen_cpu_seconds,
        loadgen_total_cpu_seconds: cpu_seconds(),
        steps_sent,
        next_start_ms: start_ms + steps_sent as i64 * args.interval.as_millis() as i64,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    if report.requests_ok == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}

/// Builds the first step's templates of every shard, spread over all CPUs.
fn pre_encode(plan: &Plan, churn: &Churn, labels: usize, protocol: Protocol) -> Vec<Vec<Slot>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards: Vec<u64> = (0..plan.shards).collect();
    let mut out: Vec<Vec<Slot>> = Vec::with_capacity(shards.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let mine: Vec<u64> = shards.iter().copied().skip(w).step_by(threads).collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|shard| {
                            (0..plan.shard_requests(shard))
                                .map(|chunk| {
                                    build_slot(plan, churn, shard, chunk, 0, labels, protocol)
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut per_worker: Vec<std::vec::IntoIter<Vec<Slot>>> = workers
            .into_iter()
            .map(|w| w.join().expect("pre-encoding thread").into_iter())
            .collect();
        for shard in 0..shards.len() {
            out.push(
                per_worker[shard % threads]
                    .next()
                    .expect("every shard built"),
            );
        }
    });
    out
}

fn build_slot(
    plan: &Plan,
    churn: &Churn,
    shard: u64,
    chunk: u64,
    replaced: u64,
    labels: usize,
    protocol: Protocol,
) -> Slot {
    let ids: Vec<SeriesId> = plan
        .slots(shard, chunk)
        .map(|slot| SeriesId {
            slot,
            generation: churn.generation(slot, replaced),
        })
        .collect();
    Slot {
        key: plan.churn_key(shard, chunk, replaced),
        template: Template::build(&ids, labels, protocol),
    }
}

/// One shard: sends its requests step after step, one at a time, so a series' samples arrive in
/// order. Returns its stats, how many steps it sent requests of, and the templates it rebuilt.
async fn shard_loop(run: Arc<Run>, shard: u64, mut slots: Vec<Slot>) -> (Stats, u64, u64) {
    let args = &run.args;
    let url = &args.url[shard as usize % args.url.len()];
    let mut stats = Stats::default();
    let mut rebuilt = 0;
    let mut steps_sent = 0;
    let mut step = 0;
    'steps: while args.steps == 0 || step < args.steps {
        let replaced = run.churn.replaced(step);
        let ts = run.start_ms + step as i64 * args.interval.as_millis() as i64;
        for (chunk, slot) in slots.iter_mut().enumerate() {
            if Instant::now() >= run.deadline || !claim(&run.requests_left) {
                break 'steps;
            }
            let chunk = chunk as u64;
            if run.plan.churn_key(shard, chunk, replaced) != slot.key {
                *slot = tokio::task::block_in_place(|| {
                    build_slot(
                        &run.plan,
                        &run.churn,
                        shard,
                        chunk,
                        replaced,
                        args.labels_per_series,
                        args.protocol,
                    )
                });
                rebuilt += 1;
            }
            let n = slot.template.samples() as u64;
            if !pace(&run, n).await {
                break 'steps;
            }
            let body = Bytes::from(slot.template.render(step, ts));
            steps_sent = step + 1;
            send(&run, url, body, n, &mut stats).await;
        }
        step += 1;
    }
    (stats, steps_sent, rebuilt)
}

/// Takes one request from the budget.
fn claim(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Waits for the moment the rate limit allows `n` more samples; false when that is past the deadline.
async fn pace(run: &Run, n: u64) -> bool {
    if run.rate <= 0.0 {
        return true;
    }
    let before = run.samples_scheduled.fetch_add(n, Ordering::Relaxed);
    let due = run.started + Duration::from_secs_f64(before as f64 / run.rate);
    if due >= run.deadline {
        return false;
    }
    tokio::time::sleep_until(due.into()).await;
    true
}

/// Sends one request until it is stored, dropped, or the run ends while it is being retried.
async fn send(run: &Run, url: &str, body: Bytes, samples: u64, stats: &mut Stats) {
    let args = &run.args;
    let mut backoff = Backoff::new(args.min_backoff, args.max_backoff);
    let first = Instant::now();
    loop {
        let t0 = Instant::now();
        let mut req = run
            .client
            .post(url)
            .timeout(args.timeout)
            .header("Content-Encoding", "snappy")
            .body(body.clone());
        req = match args.protocol {
            Protocol::V1 => req
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
            Protocol::V2 => req
                .header(
                    "Content-Type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )
                .header("X-Prometheus-Remote-Write-Version", "2.0.0"),
        };
        if let Some(t) = &args.tenant {
            req = req.header(&args.tenant_header, t);
        }
        let (status, retry_after, text) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map(Duration::from_secs);
                match resp.bytes().await {
                    Ok(b) => (
                        Some(status),
                        retry_after,
                        String::from_utf8_lossy(&b).into_owned(),
                    ),
                    Err(e) => (None, None, e.to_string()),
                }
            }
            Err(e) => (None, None, e.to_string()),
        };
        stats.attempt(status, t0.elapsed());
        let v = verdict(status);
        if v != Verdict::Done {
            stats.note_error(status, &text);
        }
        match v {
            Verdict::Done => {
                stats.requests_ok += 1;
                stats.samples_ok += samples;
                stats.request_done(first.elapsed());
                return;
            }
            Verdict::Drop => {
                stats.samples_failed += samples;
                stats.request_done(first.elapsed());
                return;
            }
            Verdict::Retry => {
                let delay = backoff.delay(retry_after);
                if Instant::now() + delay >= run.deadline {
                    stats.samples_failed += samples;
                    stats.request_done(first.elapsed());
                    return;
                }
                stats.retries += 1;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// User + system CPU time of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn print_text(r: &Report) {
    println!(
        "{} series × {} labels, {}, {} samples/request, {} shards{}",
        r.series,
        r.labels_per_series,
        r.protocol,
        r.samples_per_request,
        r.concurrency,
        if r.rate_limit > 0.0 {
            format!(", rate limit {:.0} samples/s", r.rate_limit)
        } else {
            String::new()
        }
    );
    println!(
        "{:.1}s: {} requests ok, {} samples ok, {} samples failed, {} retries, {} templates rebuilt for churn",
        r.elapsed_seconds,
        r.requests_ok,
        r.samples_ok,
        r.samples_failed,
        r.retries,
        r.templates_rebuilt
    );
    println!(
        "throughput: {:.0} samples/s, {:.1} requests/s",
        r.samples_per_second, r.requests_per_second
    );
    println!(
        "attempt latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        r.latency_ms_p50, r.latency_ms_p90, r.latency_ms_p99, r.latency_ms_max
    );
    println!(
        "request latency ms (retries included): p50 {:.1}  p99 {:.1}  max {:.1}",
        r.request_latency_ms_p50, r.request_latency_ms_p99, r.request_latency_ms_max
    );
    let statuses: Vec<String> = r.statuses.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("status: {}", statuses.join(" "));
    for (code, body) in &r.first_errors {
        println!("first {code}: {}", body.trim());
    }
    println!(
        "loadgen CPU: {:.2}s ({:.3}s per million samples)",
        r.loadgen_cpu_seconds,
        r.loadgen_cpu_seconds * 1e6 / r.samples_ok.max(1) as f64
    );
    println!("next --start-ms={}", r.next_start_ms);
}
