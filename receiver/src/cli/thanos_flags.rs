//! The `thanos receive` flags this receiver does not implement, and what it does with each: most
//! are accepted with one warning line saying what happens instead, so an existing StatefulSet's
//! arguments start unchanged; a flag whose meaning cannot be honoured safely (relabelling, tenant
//! splitting) is refused, unless its value is the one that turns the feature off.

/// What the receiver does with a Thanos flag it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    /// Accepted; the warning says what happens instead.
    Warn(&'static str),
    /// Refused with this reason, unless the value is one of `off`.
    Refuse {
        reason: &'static str,
        off: &'static [&'static str],
    },
}

/// One Thanos flag: its name, whether it takes a value (else it is a boolean), its treatment.
struct ThanosFlag {
    name: &'static str,
    takes_value: bool,
    treatment: Treatment,
}

const fn warn(name: &'static str, takes_value: bool, instead: &'static str) -> ThanosFlag {
    ThanosFlag {
        name,
        takes_value,
        treatment: Treatment::Warn(instead),
    }
}

const fn refuse(
    name: &'static str,
    takes_value: bool,
    reason: &'static str,
    off: &'static [&'static str],
) -> ThanosFlag {
    ThanosFlag {
        name,
        takes_value,
        treatment: Treatment::Refuse { reason, off },
    }
}

const EMPTY: &[&str] = &[""];

/// Every `thanos receive` flag (v0.42, hidden ones included) the receiver does not implement.
const FLAGS: &[ThanosFlag] = &[
    warn(
        "auto-gomemlimit.ratio",
        true,
        "no Go runtime: memory is bounded by the write limits",
    ),
    warn(
        "enable-auto-gomemlimit",
        false,
        "no Go runtime: memory is bounded by the write limits",
    ),
    warn(
        "compact.enable-vertical-compaction",
        false,
        "blocks are not compacted locally",
    ),
    warn(
        "enable-feature",
        true,
        "Thanos feature flags have no meaning here",
    ),
    warn(
        "grpc-server-max-connection-age",
        true,
        "gRPC connections are not aged out",
    ),
    warn("hash-func", true, "meta.json carries no file hashes"),
    warn(
        "matcher-cache-size",
        true,
        "regex matchers are compiled per read",
    ),
    warn(
        "receive.forward.async-workers",
        true,
        "each forward runs as its own task",
    ),
    warn(
        "receive.grpc-service-config",
        true,
        "forwards retry with --receive-forward-max-backoff",
    ),
    warn(
        "receive.lazy-retrieval-max-buffered-responses",
        true,
        "Series responses are streamed as they are built",
    ),
    warn(
        "receive.otlp-promote-resource-attributes",
        true,
        "there is no OTLP endpoint yet",
    ),
    warn(
        "receive.otlp-enable-target-info",
        false,
        "there is no OTLP endpoint yet",
    ),
    warn(
        "receive.capnproto-address",
        true,
        "forwards use gRPC only: Thanos peers must use --receive.replication-protocol=protobuf",
    ),
    warn(
        "receive.artificial-max-delay",
        true,
        "no artificial delay (a Thanos test setting)",
    ),
    warn(
        "request.logging-config",
        true,
        "requests are logged at --log.level=debug",
    ),
    warn(
        "request.logging-config-file",
        true,
        "requests are logged at --log.level=debug",
    ),
    warn(
        "shipper.upload-concurrency",
        true,
        "blocks are uploaded one at a time, oldest first",
    ),
    warn(
        "shipper.allow-out-of-order-uploads",
        false,
        "blocks are uploaded oldest first; a failed one is retried",
    ),
    warn(
        "shipper.skip-corrupted-blocks",
        false,
        "a block that fails to upload is retried and logged",
    ),
    warn(
        "tracing.config",
        true,
        "no tracing: see the metrics and logs",
    ),
    warn(
        "tracing.config-file",
        true,
        "no tracing: see the metrics and logs",
    ),
    warn(
        "tsdb.block.expanded-postings-cache-size",
        true,
        "block indexes are cached within 256 MiB",
    ),
    warn(
        "tsdb.head.expanded-postings-cache-size",
        true,
        "the head keeps its own postings index",
    ),
    warn(
        "tsdb.memory-snapshot-on-shutdown",
        false,
        "shutdown cuts the head into blocks instead",
    ),
    warn("tsdb.write-queue-size", true, "appends are not queued"),
    warn("tsdb.wal-compression", false, "the WAL is not compressed"),
    warn("tsdb.no-lockfile", false, "no lock file is created"),
    warn(
        "tsdb.enable-native-histograms",
        false,
        "a no-op, as in Thanos",
    ),
    warn(
        "tsdb.allow-overlapping-blocks",
        false,
        "a no-op, as in Thanos",
    ),
    warn(
        "tsdb.out-of-order.cap-max",
        true,
        "out-of-order samples are merged into their series' chunks as they arrive: there is no separate out-of-order chunk to bound",
    ),
    warn("debug.name", true, "log lines carry no prefix"),
    refuse(
        "receive.relabel-config",
        true,
        "relabelling is not supported yet: series would be stored unrelabelled",
        EMPTY,
    ),
    refuse(
        "receive.relabel-config-file",
        true,
        "relabelling is not supported yet: series would be stored unrelabelled",
        EMPTY,
    ),
    refuse(
        "receive.split-tenant-label-name",
        true,
        "splitting tenants by label is not supported yet: series would land in the wrong tenant",
        EMPTY,
    ),
];

/// The arguments clap parses, and a warning line for each Thanos flag taken out of them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sorted {
    /// Everything but the Thanos flags of [`FLAGS`].
    pub args: Vec<String>,
    /// `--flag: accepted and ignored: <what happens instead>`, one per flag given.
    pub warnings: Vec<String>,
}

/// Takes the Thanos flags this receiver does not implement out of `args` (program name first):
/// a warning for each accepted one, an error naming the first refused one.
pub fn sort_out(args: Vec<String>) -> Result<Sorted, String> {
    let mut out = Sorted::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // kingpin's `--no-name` of a boolean we implement: clap takes `--name=false`.
        if let Some(b) = arg
            .strip_prefix("--no-")
            .filter(|name| IMPLEMENTED_BOOLEANS.contains(name))
        {
            out.args.push(format!("--{b}=false"));
            continue;
        }
        let Some((flag, negated, inline)) = split_flag(&arg) else {
            out.args.push(arg);
            continue;
        };
        let Some(known) = FLAGS.iter().find(|f| f.name == flag) else {
            out.args.push(arg);
            continue;
        };
        let value = match (known.takes_value, inline) {
            (true, Some(v)) => v.to_owned(),
            (true, None) => it.next().ok_or_else(|| format!("--{flag} needs a value"))?,
            (false, Some(v)) => v.to_owned(),
            (false, None) => (!negated).to_string(),
        };
        match known.treatment {
            Treatment::Warn(instead) => out
                .warnings
                .push(format!("--{flag}: accepted and ignored: {instead}")),
            Treatment::Refuse { off, .. } if off.contains(&value.as_str()) => {}
            Treatment::Refuse { reason, .. } => {
                return Err(format!("--{flag}={value:?} cannot be honoured: {reason}"));
            }
        }
    }
    Ok(out)
}

/// Boolean Thanos flags the receiver implements.
const IMPLEMENTED_BOOLEANS: &[&str] = &[
    "remote-write.client-tls-secure",
    "remote-write.client-tls-skip-verify",
];

/// `--name[=value]` as `(name, negated, value)`; kingpin's `--no-name` negates a boolean.
fn split_flag(arg: &str) -> Option<(&str, bool, Option<&str>)> {
    let body = arg.strip_prefix("--")?;
    let (name, value) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    match name.strip_prefix("no-") {
        Some(positive)
            if value.is_none() && FLAGS.iter().any(|f| f.name == positive && !f.takes_value) =>
        {
            Some((positive, true, None))
        }
        _ => Some((name, false, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ignored_flags_leave_with_a_warning_in_every_spelling() {
        let sorted = sort_out(args(&[
            "thanos-receiver",
            "--tsdb.path=/data",
            "--tracing.config-file",
            "/etc/tracing.yaml",
            "--tsdb.wal-compression",
            "--no-tsdb.no-lockfile",
            "--enable-feature=promql-experimental-functions",
            "--label=replica=\"r0\"",
        ]))
        .unwrap();
        assert_eq!(
            sorted.args,
            args(&[
                "thanos-receiver",
                "--tsdb.path=/data",
                "--label=replica=\"r0\""
            ])
        );
        assert_eq!(sorted.warnings.len(), 4, "{:?}", sorted.warnings);
        assert!(
            sorted.warnings[0]
                .starts_with("--tracing.config-file: accepted and ignored: no tracing")
        );
    }

    #[test]
    fn unsafe_flags_are_refused_unless_they_say_off() {
        let err = sort_out(args(&[
            "r",
            "--receive.relabel-config-file=/etc/relabel.yaml",
        ]))
        .unwrap_err();
        assert!(err.contains("relabelling is not supported yet"), "{err}");
        let ok = sort_out(args(&[
            "r",
            "--receive.split-tenant-label-name=",
            "--no-remote-write.client-tls-secure",
        ]))
        .unwrap();
        assert_eq!(
            ok,
            Sorted {
                args: args(&["r", "--remote-write.client-tls-secure=false"]),
                warnings: vec![]
            }
        );
    }

    #[test]
    fn a_value_flag_at_the_end_without_its_value_is_an_error() {
        assert!(sort_out(args(&["r", "--tracing.config"])).is_err());
    }
}
