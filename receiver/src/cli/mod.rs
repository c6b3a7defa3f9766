//! Command-line flags, named and defaulted as `thanos receive` names them.

pub mod thanos_flags;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use hashring::contract;

/// The receiver's flags; the names and defaults are Thanos' so existing manifests work unchanged.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "thanos-receiver",
    version,
    about = "Thanos-compatible remote-write receiver"
)]
pub struct Args {
    /// Address of the remote-write HTTP listener (`POST /api/v1/receive`).
    #[arg(long = "remote-write.address", default_value_t = any_address(contract::REMOTE_WRITE_PORT))]
    pub remote_write_address: SocketAddr,

    /// Address of the operational HTTP listener (`/metrics`, `/-/healthy`, `/-/ready`).
    #[arg(long = "http-address", default_value_t = any_address(contract::HTTP_PORT))]
    pub http_address: SocketAddr,

    /// Address of the gRPC listener (replication, StoreAPI and Info for Thanos Query, health).
    #[arg(long = "grpc-address", default_value_t = any_address(contract::GRPC_PORT))]
    pub grpc_address: SocketAddr,

    /// Directory that holds one TSDB (WAL, head, blocks) per tenant.
    #[arg(long = "tsdb.path", default_value = "./data")]
    pub tsdb_path: PathBuf,

    /// How long local blocks are kept, as a Prometheus duration (`15d`); `0d` keeps them forever.
    #[arg(long = "tsdb.retention", default_value = "15d", value_parser = parse_duration)]
    pub tsdb_retention: Duration,

    /// Most bytes a tenant's local blocks may take (`512MB`); the oldest deletable blocks go
    /// first. `0` means no size limit.
    #[arg(long = "tsdb.max-retention-bytes", default_value = "0", value_parser = parse_bytes)]
    pub max_retention_bytes: u64,

    /// Exemplars kept per tenant (the newest); 0 drops them with 2xx, as Thanos does.
    #[arg(long = "tsdb.max-exemplars", default_value_t = 0)]
    pub max_exemplars: i64,

    /// Width of a block (Thanos keeps min and max equal; blocks are never compacted locally).
    #[arg(long = "tsdb.min-block-duration", default_value = "2h", value_parser = parse_duration)]
    pub min_block_duration: Duration,

    /// Accepted for compatibility; must equal `--tsdb.min-block-duration`.
    #[arg(long = "tsdb.max-block-duration", default_value = "2h", value_parser = parse_duration)]
    pub max_block_duration: Duration,

    /// Refuse samples further ahead of the wall clock than this; `0s` disables the check.
    #[arg(long = "tsdb.too-far-in-future.time-window", default_value = "0s", value_parser = parse_duration)]
    pub too_far_in_future: Duration,

    /// Accept samples older than their series' newest but at most this far behind the head's
    /// newest sample (Thanos' and Prometheus' out-of-order window); `0s` refuses them all.
    #[arg(long = "tsdb.out-of-order.time-window", default_value = "0s", value_parser = parse_duration)]
    pub out_of_order_time_window: Duration,

    /// How often each tenant's head is checked for a block to cut.
    #[arg(long = "tsdb.head-compaction-interval", default_value = "1m", value_parser = parse_duration, hide = true)]
    pub head_compaction_interval: Duration,

    /// How long shutdown may spend cutting the head into blocks before it gives up (the WAL keeps the data).
    #[arg(long = "tsdb.flush-timeout", default_value = "5m", value_parser = parse_duration)]
    pub flush_timeout: Duration,

    /// How often the WAL is fsynced; `0s` fsyncs before every acknowledgement.
    #[arg(long = "tsdb.wal-fsync-interval", default_value = "1s", value_parser = parse_duration)]
    pub wal_fsync_interval: Duration,

    /// Thanos object storage config (`objstore.yml`); when set, every block is uploaded and local
    /// blocks are deleted by retention only once uploaded.
    #[arg(long = "objstore.config-file")]
    pub objstore_config_file: Option<PathBuf>,

    /// The object storage config itself, instead of a file (`--objstore.config-file` wins).
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,

    /// How often blocks waiting for upload are retried.
    #[arg(long = "shipper.sync-interval", default_value = "30s", value_parser = parse_duration, hide = true)]
    pub shipper_sync_interval: Duration,

    /// External label `name="value"` of this receiver; repeatable.
    #[arg(long = "label", value_parser = parse_external_label)]
    pub labels: Vec<(String, String)>,

    /// HTTP header that carries the tenant of a write.
    #[arg(long = "receive.tenant-header", default_value = "THANOS-TENANT")]
    pub tenant_header: String,

    /// Tenant used when a write names none.
    #[arg(long = "receive.default-tenant-id", default_value = "default-tenant")]
    pub default_tenant: String,

    /// External label that carries the tenant in blocks and queries.
    #[arg(long = "receive.tenant-label-name", default_value = "tenant_id")]
    pub tenant_label_name: String,

    /// Hashring file in Thanos' `hashrings.json` format; re-read on change, no restart.
    #[arg(long = "receive.hashrings-file")]
    pub hashrings_file: Option<PathBuf>,

    /// Hashring content given inline (used when no file or ConfigMap is given).
    #[arg(long = "receive.hashrings")]
    pub hashrings: Option<String>,

    /// Full re-read period of the hashring file (changes are also picked up within a second).
    #[arg(long = "receive.hashrings-file-refresh-interval", default_value = "5m", value_parser = parse_duration)]
    pub hashrings_refresh_interval: Duration,

    /// Placement algorithm of rings that name none.
    #[arg(
        long = "receive.hashrings-algorithm",
        value_enum,
        default_value = "hashmod"
    )]
    pub hashrings_algorithm: RingAlgorithm,

    /// `NAMESPACE/NAME` of a ConfigMap (key `hashrings.json`) watched through the Kubernetes API.
    #[arg(long = "receive.hashrings-configmap")]
    pub hashrings_configmap: Option<String>,

    /// Copies of every series.
    #[arg(long = "receive.replication-factor", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub replication_factor: u64,

    /// This receiver's endpoint as written in the ring; with a ring but without it, the receiver only routes.
    #[arg(long = "receive.local-endpoint")]
    pub local_endpoint: Option<String>,

    /// How long a replicated write may take.
    #[arg(long = "receive-forward-timeout", default_value = "5s", value_parser = parse_duration)]
    pub forward_timeout: Duration,

    /// Longest back-off for a peer that answered Unavailable.
    #[arg(long = "receive-forward-max-backoff", default_value = "5s", value_parser = parse_duration)]
    pub forward_max_backoff: Duration,

    /// Compression of forwarded writes: `snappy` as Thanos' compressor frames it, or `none`.
    #[arg(
        long = "receive.grpc-compression",
        value_enum,
        default_value = "snappy"
    )]
    pub grpc_compression: GrpcCompression,

    /// HTTP header carrying the replica number of an already-replicated write.
    #[arg(long = "receive.replica-header", default_value = "THANOS-REPLICA")]
    pub replica_header: String,

    /// Most series one read may return (0: no limit), as Thanos' StoreAPI limit.
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub read_series_limit: u64,

    /// Most samples one read may return (0: Prometheus' remote-read default of 50,000,000).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub read_samples_limit: u64,

    /// YAML file of write limits in the Thanos limits format.
    #[arg(long = "receive.limits-config-file")]
    pub limits_config_file: Option<PathBuf>,

    /// How often the limits file is checked for changes; a changed file is applied without a
    /// restart, a broken one refused (the limits in force stay).
    #[arg(long = "receive.limits-config-reload-timer", default_value = "1s", value_parser = parse_duration)]
    pub limits_reload_interval: Duration,

    /// Decoded bytes of the remote-write requests worked on at once; more wait in line, body read
    /// but not decoded. `auto`: 16MiB per CPU with a hashring, no bound without; `0`: no bound.
    /// Forwards from peers are not bounded.
    #[arg(long = "receive.max-inflight-write-bytes", default_value = "auto", value_parser = parse_auto_bytes)]
    pub max_inflight_write_bytes: AutoBytes,

    /// The limits YAML itself, instead of a file (`--receive.limits-config-file` wins).
    #[arg(long = "receive.limits-config")]
    pub limits_config: Option<String>,

    /// How forwards are encoded; `capnproto` is refused (forwards use gRPC, which Thanos accepts).
    #[arg(
        long = "receive.replication-protocol",
        value_enum,
        default_value = "protobuf"
    )]
    pub replication_protocol: ReplicationProtocol,

    /// Longest wait for in-flight HTTP requests to finish after SIGTERM.
    #[arg(long = "http-grace-period", default_value = "2m", value_parser = parse_duration)]
    pub http_grace_period: Duration,

    /// Longest wait for in-flight gRPC requests to finish after SIGTERM.
    #[arg(long = "grpc-grace-period", default_value = "2m", value_parser = parse_duration)]
    pub grpc_grace_period: Duration,

    /// TLS: listeners, forwards, the HTTP port's web config, tenants from certificates.
    #[command(flatten)]
    pub tls: tls::TlsArgs,

    /// Log level.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,

    /// One line per Thanos flag given that is accepted but not implemented (logged at start).
    #[arg(skip)]
    pub ignored_flags: Vec<String>,
}

/// Values of `--receive.replication-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplicationProtocol {
    /// gRPC with protobuf messages: what this receiver sends and serves.
    Protobuf,
    /// Thanos' Cap'n Proto protocol: refused at start.
    Capnproto,
}

/// Values of `--receive.hashrings-algorithm`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RingAlgorithm {
    /// Thanos' `hashmod`: xxhash of the series modulo the endpoints.
    Hashmod,
    /// Thanos' `ketama`: consistent hashing with virtual nodes.
    Ketama,
}

impl From<RingAlgorithm> for hashring::Algorithm {
    fn from(a: RingAlgorithm) -> Self {
        match a {
            RingAlgorithm::Hashmod => hashring::Algorithm::Hashmod,
            RingAlgorithm::Ketama => hashring::Algorithm::Ketama,
        }
    }
}

/// Values of `--receive.grpc-compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrpcCompression {
    /// Thanos' default: each forward is one snappy framed stream (`grpc-encoding: snappy`).
    Snappy,
    /// No compression.
    None,
}

/// Log levels accepted by `--log.level`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    /// Everything, including rejected requests.
    Debug,
    /// Lifecycle events and ring changes.
    Info,
    /// Failed writes and recoverable faults.
    Warn,
    /// Failures only.
    Error,
}

/// Log formats accepted by `--log.format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// `key=value` lines, Thanos' default.
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// Parses the process arguments, exiting with a message on an error.
    pub fn parse_from_env() -> Self {
        Self::try_parse_thanos(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses a `thanos receive` argument list (program name first): a leading `receive` word is
    /// dropped so `thanos receive ...` lines work, and the Thanos flags this receiver does not
    /// implement are accepted with a warning or refused ([`thanos_flags`]).
    pub fn try_parse_thanos<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        let args = strip_receive_word(args.into_iter().map(Into::into))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let sorted = thanos_flags::sort_out(args)
            .map_err(|message| Args::command().error(ErrorKind::InvalidValue, message))?;
        let mut parsed = Args::try_parse_from(sorted.args)?;
        parsed.ignored_flags = sorted.warnings;
        Ok(parsed)
    }
}

/// `0.0.0.0:port`, the listen address of a port of the contract with the operator.
fn any_address(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// Drops a `receive` subcommand word right after the program name.
pub fn strip_receive_word<I: IntoIterator<Item = std::ffi::OsString>>(
    args: I,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "receive") {
        args.remove(1);
    }
    args
}

/// Parses a Prometheus duration such as `15d`, `2h30m`, `500ms` or `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        rest = &rest[unit_len..];
        total_ms = total_ms
            .checked_add(n * unit_ms)
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    u64::try_from(total_ms)
        .map(Duration::from_millis)
        .map_err(|_| format!("duration {s:?} is too long"))
}

/// A size that may be left to the receiver (`auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoBytes(pub Option<u64>);

/// Parses `auto` or a size as [`parse_bytes`] does.
pub fn parse_auto_bytes(s: &str) -> Result<AutoBytes, String> {
    match s {
        "auto" => Ok(AutoBytes(None)),
        _ => parse_bytes(s).map(|n| AutoBytes(Some(n))),
    }
}

/// Parses a byte size with Thanos' units (`512MB`, `1GiB`, `0`); units are powers of 1024 as in
/// Prometheus' `--storage.tsdb.retention.size`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number and a unit such as 512MB"))?;
    let unit: u64 = match &s[digits..] {
        "" if n == 0 => 1,
        "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        "EB" | "EiB" => 1 << 60,
        u => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {u:?} (B, KB, MB, GB, TB, PB, EB)"
            ));
        }
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses an external label flag `name="value"` (the value quoted as Go's strconv.Quote does).
pub fn parse_external_label(s: &str) -> Result<(String, String), String> {
    let (name, quoted) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} must look like name=\"value\""))?;
    if !crate::ingest::validate::valid_label_name(name.as_bytes()) {
        return Err(format!("label {s:?}: invalid label name {name:?}"));
    }
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .ok_or_else(|| format!("label {s:?}: the value must be double-quoted"))?;
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('\\') => value.push('\\'),
                Some('"') => value.push('"'),
                other => return Err(format!("label {s:?}: unsupported escape \\{other:?}")),
            },
            '"' => return Err(format!("label {s:?}: unescaped quote in the value")),
            c => value.push(c),
        }
    }
    if value.is_empty() {
        return Err(format!("label {s:?}: empty value"));
    }
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_prometheus_units() {
        assert_eq!(
            parse_duration("15d").unwrap(),
            Duration::from_secs(15 * 86400)
        );
        assert_eq!(parse_duration("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn sizes_take_prometheus_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("512").is_err());
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("99999999EB").is_err());
    }

    #[test]
    fn thanos_flags_we_do_not_implement_warn_or_are_refused() {
        let args = Args::try_parse_thanos([
            "thanos",
            "receive",
            "--tracing.config-file=/etc/t.yaml",
            "--tsdb.max-retention-bytes=1GB",
            "--http-grace-period=30s",
        ])
        .unwrap();
        assert_eq!(args.ignored_flags.len(), 1);
        assert_eq!(args.max_retention_bytes, 1 << 30);
        assert_eq!(args.http_grace_period, Duration::from_secs(30));
        let err = Args::try_parse_thanos(["thanos", "--receive.relabel-config=x"]).unwrap_err();
        assert!(err.to_string().contains("relabelling"), "{err}");
    }

    #[test]
    fn external_labels_are_quoted_values() {
        assert_eq!(
            parse_external_label(r#"replica="r-0""#).unwrap(),
            ("replica".into(), "r-0".into())
        );
        assert_eq!(
            parse_external_label(r#"a="x\"y""#).unwrap(),
            ("a".into(), "x\"y".into())
        );
        assert!(parse_external_label("replica=r-0").is_err());
        assert!(parse_external_label(r#"1bad="x""#).is_err());
        assert!(parse_external_label(r#"a="""#).is_err());
        assert!(parse_external_label("novalue").is_err());
    }

    #[test]
    fn thanos_command_lines_parse() {
        let args = Args::parse_from(strip_receive_word(
            [
                "thanos",
                "receive",
                "--tsdb.path=/data",
                "--label=replica=\"r0\"",
                "--remote-write.address=127.0.0.1:1",
            ]
            .map(Into::into),
        ));
        assert_eq!(args.tsdb_path, PathBuf::from("/data"));
        assert_eq!(args.labels, vec![("replica".into(), "r0".into())]);
        assert_eq!(args.default_tenant, "default-tenant");
        assert!(
            Args::try_parse_from(["thanos-receiver", "--no-such-flag"]).is_err(),
            "unknown flags must fail"
        );
    }
}
