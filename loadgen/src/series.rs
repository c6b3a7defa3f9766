//! Synthetic Kubernetes series: label sets like kubelet/cAdvisor, kube-state-metrics and
//! application targets produce, round-robin churn, and sample values that compress like real ones.

/// Fewest labels per series (`__name__` included).
pub const MIN_LABELS: usize = 10;
/// Most labels per series (`__name__` included).
pub const MAX_LABELS: usize = 15;

/// Identity of a series: a slot of the active set and how often that slot was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesId {
    /// Index in the active set.
    pub slot: u64,
    /// Times the slot's series was replaced by churn (a new pod of a new rollout).
    pub generation: u64,
}

/// How a series' value moves from one sample to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Integer counter (requests, bytes, buckets).
    Counter,
    /// Fractional counter (CPU seconds).
    FloatCounter,
    /// Integer gauge that wanders (memory bytes).
    Gauge,
    /// Fractional gauge with no pattern (durations).
    FloatGauge,
    /// Unchanging value (`up`, status and resource metrics).
    Constant,
}

/// A metric family: its name, the job that exposes it and the label that tells its series apart.
struct Family {
    name: &'static str,
    job: Job,
    variant: Option<(&'static str, &'static [&'static str])>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Job {
    Kubelet,
    KubeStateMetrics,
    App,
}

const FAMILIES: &[Family] = &[
    fam(
        "http_request_duration_seconds_bucket",
        Job::App,
        Some((
            "le",
            &[
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf",
            ],
        )),
        Kind::Counter,
    ),
    fam(
        "http_requests_total",
        Job::App,
        Some(("code", &["200", "201", "204", "400", "404", "500", "503"])),
        Kind::Counter,
    ),
    fam(
        "grpc_server_handled_total",
        Job::App,
        Some(("grpc_code", &["OK", "Canceled", "Unavailable"])),
        Kind::Counter,
    ),
    fam(
        "process_cpu_seconds_total",
        Job::App,
        None,
        Kind::FloatCounter,
    ),
    fam("process_resident_memory_bytes", Job::App, None, Kind::Gauge),
    fam("go_goroutines", Job::App, None, Kind::Gauge),
    fam("go_memstats_alloc_bytes", Job::App, None, Kind::Gauge),
    fam("scrape_duration_seconds", Job::App, None, Kind::FloatGauge),
    fam("up", Job::App, None, Kind::Constant),
    fam(
        "container_cpu_usage_seconds_total",
        Job::Kubelet,
        None,
        Kind::FloatCounter,
    ),
    fam(
        "container_cpu_cfs_throttled_seconds_total",
        Job::Kubelet,
        None,
        Kind::FloatCounter,
    ),
    fam(
        "container_memory_working_set_bytes",
        Job::Kubelet,
        None,
        Kind::Gauge,
    ),
    fam("container_memory_rss", Job::Kubelet, None, Kind::Gauge),
    fam("container_memory_cache", Job::Kubelet, None, Kind::Gauge),
    fam(
        "container_network_receive_bytes_total",
        Job::Kubelet,
        Some(("interface", &["eth0"])),
        Kind::Counter,
    ),
    fam(
        "container_network_transmit_bytes_total",
        Job::Kubelet,
        Some(("interface", &["eth0"])),
        Kind::Counter,
    ),
    fam(
        "container_fs_reads_bytes_total",
        Job::Kubelet,
        Some(("device", &["/dev/nvme0n1"])),
        Kind::Counter,
    ),
    fam(
        "container_fs_writes_bytes_total",
        Job::Kubelet,
        Some(("device", &["/dev/nvme0n1"])),
        Kind::Counter,
    ),
    fam(
        "kube_pod_status_phase",
        Job::KubeStateMetrics,
        Some((
            "phase",
            &["Pending", "Running", "Succeeded", "Failed", "Unknown"],
        )),
        Kind::Constant,
    ),
    fam(
        "kube_pod_container_status_restarts_total",
        Job::KubeStateMetrics,
        None,
        Kind::Constant,
    ),
    fam(
        "kube_pod_container_resource_requests",
        Job::KubeStateMetrics,
        Some(("resource", &["cpu", "memory"])),
        Kind::Constant,
    ),
    fam(
        "kube_pod_container_resource_limits",
        Job::KubeStateMetrics,
        Some(("resource", &["cpu", "memory"])),
        Kind::Constant,
    ),
];

const fn fam(
    name: &'static str,
    job: Job,
    variant: Option<(&'static str, &'static [&'static str])>,
    kind: Kind,
) -> Family {
    Family {
        name,
        job,
        variant,
        kind,
    }
}

/// Series every target (pod) exposes: one per family and variant value.
pub const SERIES_PER_TARGET: u64 = series_per_target();

const fn series_per_target() -> u64 {
    let mut n = 0;
    let mut i = 0;
    while i < FAMILIES.len() {
        n += match FAMILIES[i].variant {
            Some((_, values)) => values.len() as u64,
            None => 1,
        };
        i += 1;
    }
    n
}

/// Family and variant index of the `k`-th series of a target.
fn family_of(mut k: u64) -> (&'static Family, usize) {
    for f in FAMILIES {
        let n = f.variant.map_or(1, |(_, v)| v.len() as u64);
        if k < n {
            return (f, k as usize);
        }
        k -= n;
    }
    unreachable!("k < SERIES_PER_TARGET")
}

const PODS_PER_DEPLOYMENT: u64 = 5;
const PODS_PER_NODE: u64 = 30;
const NAMESPACES: &[&str] = &[
    "payments",
    "checkout",
    "search",
    "catalog",
    "identity",
    "notifications",
    "ingest",
    "billing",
    "recommendations",
    "media",
    "observability",
    "platform",
    "data-pipeline",
    "fraud-detection",
    "inventory",
    "shipping",
];
const ADJECTIVES: &[&str] = &[
    "api", "web", "worker", "gateway", "edge", "batch", "stream", "cache", "sync", "query",
    "admin", "public", "internal", "realtime", "legacy", "async",
];
const NOUNS: &[&str] = &[
    "server",
    "consumer",
    "processor",
    "scheduler",
    "proxy",
    "indexer",
    "exporter",
    "router",
    "controller",
    "resolver",
    "dispatcher",
    "collector",
    "renderer",
    "validator",
    "aggregator",
    "notifier",
    "uploader",
    "compactor",
    "planner",
    "tracker",
];

/// The label set of a series with `count` labels (10..=15), sorted by name as remote write requires.
pub fn labels(id: SeriesId, count: usize) -> Vec<(&'static str, String)> {
    assert!((MIN_LABELS..=MAX_LABELS).contains(&count));
    let target = id.slot / SERIES_PER_TARGET;
    let (family, variant) = family_of(id.slot % SERIES_PER_TARGET);
    let deployment = target / PODS_PER_DEPLOYMENT;
    let adjective = ADJECTIVES[(deployment % ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[(deployment / ADJECTIVES.len() as u64 % NOUNS.len() as u64) as usize];
    let round = deployment / (ADJECTIVES.len() * NOUNS.len()) as u64;
    let app = if round == 0 {
        format!("{adjective}-{noun}")
    } else {
        format!("{adjective}-{noun}-{round}")
    };
    let namespace = NAMESPACES[(mix(deployment) % NAMESPACES.len() as u64) as usize];
    // A replaced series belongs to a new rollout: new ReplicaSet hash, pod IP and UID.
    let rollout = mix(deployment ^ id.generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let pod_hash = mix(target ^ (id.generation << 40));
    let node = target / PODS_PER_NODE;
    let (job, container, path) = match family.job {
        Job::Kubelet => ("kubelet", noun, "/metrics/cadvisor"),
        Job::KubeStateMetrics => ("kube-state-metrics", noun, "/metrics"),
        Job::App => ("kubernetes-pods", noun, "/metrics"),
    };

    let mut out: Vec<(&'static str, String)> = Vec::with_capacity(count);
    out.push(("__name__", family.name.to_string()));
    if let Some((name, values)) = family.variant {
        out.push((name, values[variant].to_string()));
    }
    // Ordered by how common a label is; only as many as `count` needs are used.
    let fillers: [(&'static str, String); 14] = [
        ("namespace", namespace.to_string()),
        (
            "pod",
            format!(
                "{app}-{}-{}",
                base36(rollout, 10),
                base36(target % 36u64.pow(5), 5)
            ),
        ),
        ("container", container.to_string()),
        (
            "instance",
            format!(
                "10.{}.{}.{}:8080",
                (pod_hash >> 8) & 0xff,
                (pod_hash >> 16) & 0xff,
                (pod_hash >> 24) & 0xff
            ),
        ),
        ("job", job.to_string()),
        (
            "node",
            format!(
                "ip-10-{}-{}-{}.eu-west-1.compute.internal",
                (node >> 16) & 0xff,
                (node >> 8) & 0xff,
                node & 0xff
            ),
        ),
        ("service", app.clone()),
        ("endpoint", "http-metrics".to_string()),
        ("cluster", "prod-eu-west-1".to_string()),
        ("prometheus", "monitoring/k8s".to_string()),
        ("uid", uuid(pod_hash, rollout)),
        (
            "image",
            format!(
                "registry.example.com/{namespace}/{app}:v1.{}.{}",
                deployment % 20,
                id.generation % 50
            ),
        ),
        ("metrics_path", path.to_string()),
        ("prometheus_replica", "prometheus-k8s-0".to_string()),
    ];
    let missing = count - out.len();
    out.extend(fillers.into_iter().take(missing));
    out.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out
}

/// The value generator of a series.
pub fn values(id: SeriesId) -> ValueGen {
    let (family, _) = family_of(id.slot % SERIES_PER_TARGET);
    ValueGen {
        kind: family.kind,
        seed: mix(id.slot ^ (id.generation << 48)),
    }
}

/// Produces the value of one series at each step, deterministically.
#[derive(Debug, Clone, Copy)]
pub struct ValueGen {
    kind: Kind,
    seed: u64,
}

impl ValueGen {
    /// The value at `step`; counters never decrease.
    #[inline]
    pub fn at(&self, step: u64) -> f64 {
        let noise = mix(self.seed ^ step);
        match self.kind {
            // Increments of 16..1040 plus noise below 16 keep the counter monotonic.
            Kind::Counter => (step * (16 + self.seed % 1024)) as f64 + (noise & 15) as f64,
            Kind::FloatCounter => {
                let rate = (self.seed % 1000) as f64 / 997.0 + 0.01;
                rate * (step as f64 + (noise & 0xff) as f64 / 512.0)
            }
            Kind::Gauge => ((self.seed % 4096 + 1) << 20) as f64 + ((noise & 0xff) << 12) as f64,
            Kind::FloatGauge => 0.001 + (noise % 100_000) as f64 / 1e6,
            Kind::Constant => (self.seed & 1) as f64,
        }
    }
}

/// Round-robin churn: before step `k`, `floor(k × rate × series)` slots have been replaced, in
/// slot order, so each step touches a contiguous run of slots and therefore few requests.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Active series.
    pub series: u64,
    /// Fraction of the active series replaced per step.
    pub rate: f64,
}

impl Churn {
    /// Replacements that happened before `step`.
    pub fn replaced(&self, step: u64) -> u64 {
        (step as f64 * self.rate * self.series as f64) as u64
    }

    /// Generation of `slot` once `replaced` replacements happened.
    pub fn generation(&self, slot: u64, replaced: u64) -> u64 {
        (replaced + self.series - 1 - slot) / self.series
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed hash of a `u64`.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn base36(mut v: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for c in out.iter_mut().rev() {
        *c = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out).expect("ASCII digits")
}

fn uuid(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn label_sets_are_unique_sorted_and_sized() {
        for count in [MIN_LABELS, 12, MAX_LABELS] {
            let mut seen = HashSet::new();
            for slot in 0..5 * SERIES_PER_TARGET * PODS_PER_DEPLOYMENT {
                for generation in 0..2 {
                    let l = labels(SeriesId { slot, generation }, count);
                    assert_eq!(l.len(), count);
                    assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "{l:?}");
                    assert!(seen.insert(l));
                }
            }
        }
    }

    #[test]
    fn counters_never_decrease() {
        for slot in 0..SERIES_PER_TARGET {
            let g = values(SeriesId {
                slot,
                generation: 0,
            });
            if matches!(g.kind, Kind::Counter | Kind::FloatCounter) {
                assert!((0..200).all(|s| g.at(s + 1) > g.at(s)), "{g:?}");
            }
        }
    }

    #[test]
    fn churn_replaces_slots_in_order() {
        let c = Churn {
            series: 10,
            rate: 0.3,
        };
        assert_eq!(c.replaced(1), 3);
        let gens: Vec<u64> = (0..10).map(|s| c.generation(s, c.replaced(4))).collect();
        assert_eq!(gens, [2, 2, 1, 1, 1, 1, 1, 1, 1, 1]);
    }
}
