//! `thanos-readgen`: times reads of the series `thanos-loadgen` wrote, against a receiver
//! (Prometheus remote read, samples) or VictoriaMetrics (`/api/v1/export`, the raw samples of the
//! same series), one query at a time, for a number of runs or a duration.
//!
//! Queries: `selective` asks for one series by its full label set; `broad` asks for every series of
//! the metric name whose series count (among `--series`) is closest to `--broad-series`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use loadgen::series::{SeriesId, labels};
use loadgen::stats::Stats;
use receiver::cli::parse_duration;
use receiver::wire::remote_read::{
    LabelMatcher, MatchType, Query, ReadRequest, decode_response, encode_request,
};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    /// `POST /api/v1/read` (remote read, SAMPLES).
    Receiver,
    /// `GET /api/v1/export` (VictoriaMetrics' raw samples as JSON lines).
    Vm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// One series by its full label set.
    Selective,
    /// Every series of one metric name.
    Broad,
}

/// Read latency generator for the benchmark.
#[derive(Debug, Parser)]
#[command(name = "thanos-readgen", version)]
struct Args {
    /// The system's base URL, e.g. `http://127.0.0.1:19291`.
    #[arg(long)]
    url: String,
    /// Which API to call.
    #[arg(long, value_enum)]
    system: System,
    /// Which query.
    #[arg(long, value_enum)]
    query: Kind,
    /// Active series `thanos-loadgen` wrote (`--series`).
    #[arg(long)]
    series: u64,
    /// Labels per series (`--labels-per-series`).
    #[arg(long, default_value_t = 12)]
    labels_per_series: usize,
    /// Series a broad query should return, about.
    #[arg(long, default_value_t = 10_000)]
    broad_series: u64,
    /// Queries to run (0: until `--duration`).
    #[arg(long, default_value_t = 0)]
    runs: u64,
    /// Stop starting queries after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Start of the queried range, ms.
    #[arg(long, default_value_t = 0)]
    start_ms: i64,
    /// End of the queried range, ms (default: a day from now).
    #[arg(long)]
    end_ms: Option<i64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    query: String,
    queries: u64,
    failed: u64,
    series_per_query: u64,
    samples_per_query: u64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    first_error: Option<String>,
}

/// Equality matchers of the query.
fn matchers(args: &Args) -> Vec<(String, String)> {
    let id = |slot| SeriesId {
        slot,
        generation: 0,
    };
    match args.query {
        Kind::Selective => labels(id(args.series / 2), args.labels_per_series)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        Kind::Broad => {
            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            for slot in 0..args.series {
                let name = labels(id(slot), args.labels_per_series)
                    .into_iter()
                    .find(|(n, _)| *n == "__name__")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                *counts.entry(name).or_default() += 1;
            }
            let (name, _) = counts
                .into_iter()
                .min_by_key(|(_, c)| c.abs_diff(args.broad_series))
                .unwrap_or_default();
            vec![("__name__".to_string(), name)]
        }
    }
}

/// One query: `(series, samples)` in the answer.
async fn query(
    client: &reqwest::Client,
    args: &Args,
    matchers: &[(String, String)],
    end_ms: i64,
) -> anyhow::Result<(u64, u64)> {
    match args.system {
        System::Receiver => {
            let request = ReadRequest {
                queries: vec![Query {
                    start_timestamp_ms: args.start_ms,
                    end_timestamp_ms: end_ms,
                    matchers: matchers
                        .iter()
                        .map(|(n, v)| LabelMatcher {
                            r#type: MatchType::Eq as i32,
                            name: n.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                }],
                accepted_response_types: vec![],
            };
            let body = encode_request(&request);
            let r = client
                .post(format!("{}/api/v1/read", args.url))
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Read-Version", "0.1.0")
                .body(body)
                .send()
                .await?;
            let status = r.status();
            let bytes = r.bytes().await?;
            ensure!(
                status.is_success(),
                "{status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            let response = decode_response(&bytes)?;
            let series = &response.results.first().context("no result")?.timeseries;
            Ok((
                series.len() as u64,
                series.iter().map(|s| s.samples.len() as u64).sum(),
            ))
        }
        System::Vm => {
            let selector = matchers
                .iter()
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect::<Vec<_>>()
                .join(",");
            let r = client
                .get(format!("{}/api/v1/export", args.url))
                .query(&[
                    ("match[]", format!("{{{selector}}}")),
                    ("start", format!("{:.3}", args.start_ms as f64 / 1000.0)),
                    ("end", format!("{:.3}", end_ms as f64 / 1000.0)),
                ])
                .send()
                .await?;
            let status = r.status();
            let text = r.text().await?;
            ensure!(status.is_success(), "{status}: {text}");
            let (mut series, mut samples) = (0, 0);
            for line in text.lines().filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line)?;
                series += 1;
                samples += v["values"].as_array().map_or(0, |a| a.len() as u64);
            }
            Ok((series, samples))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.runs == 0 && args.duration.is_zero() {
        bail!("--runs or --duration must bound the run");
    }
    let matchers = matchers(&args);
    let end_ms = args.end_ms.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        now + 86_400_000
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let deadline = Instant::now() + args.duration;
    let mut stats = Stats::default();
    let (mut queries, mut failed, mut series, mut samples) = (0u64, 0u64, 0, 0);
    let mut first_error = None;
    while (args.runs == 0 || queries < args.runs) && (args.runs > 0 || Instant::now() < deadline) {
        let start = Instant::now();
        let result = query(&client, &args, &matchers, end_ms).await;
        stats.attempt(Some(200), start.elapsed());
        queries += 1;
        match result {
            Ok((s, n)) => (series, samples) = (s, n),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let p = stats.percentiles_ms(&[0.5, 0.99, 1.0]);
    let report = Report {
        query: format!("{:?} {:?}", args.query, matchers.first().map(|m| &m.1)),
        queries,
        failed,
        series_per_query: series,
        samples_per_query: samples,
        latency_ms_p50: p[0],
        latency_ms_p99: p[1],
        latency_ms_max: p[2],
        first_error,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report:#?}");
    }
    Ok(())
}
