//! `process_*` metrics, as every Prometheus client library exposes them (Thanos' dashboards plot
//! CPU and memory from them): read from `/proc/self` on each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads this process' CPU time, memory, descriptors and start time at scrape time.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What one read of `/proc/self` found.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_time_seconds: f64,
}

/// Parses `/proc/self/stat` (fields after the parenthesised command name, which may hold spaces).
fn parse_stat(stat: &str, boot_time: f64, ticks: f64, page_size: i64) -> Option<ProcessStats> {
    let after_name = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state) on; utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
    let f: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_bytes: field(23)? as i64,
        resident_bytes: field(24)? as i64 * page_size,
    })
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as i64;
        let stats = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .zip(boot_time())
            .and_then(|(stat, boot)| parse_stat(&stat, boot, ticks, page));
        if let Some(s) = stats {
            let cpu = ConstCounter::new(s.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                s.start_time_seconds,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                fds.count() as i64,
            )?;
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.current {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                i64::try_from(max).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (thanos receiver) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 150 0 0 20 0 9 0 1000 1048576000 25600 18446744073709551615";
        let s = parse_stat(stat, 1_700_000_000.0, 100.0, 4096).unwrap();
        assert_eq!(
            s,
            ProcessStats {
                cpu_seconds: 4.0,
                resident_bytes: 25600 * 4096,
                virtual_bytes: 1_048_576_000,
                start_time_seconds: 1_700_000_010.0,
            }
        );
        assert!(parse_stat("garbage", 0.0, 100.0, 4096).is_none());
    }
}
