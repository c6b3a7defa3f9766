//! Statistical properties of placement over many synthetic series, through the public API.
//!
//! Figures are printed (`cargo test -p hashring --test properties -- --nocapture`) so that
//! balance and movement can be reported, and asserted with the bounds we rely on.

use hashring::{Algorithm, Endpoint, HashringConfig, Ring, series_hash};

/// Series per measurement; fewer in debug builds, where hashing is slower, without changing
/// what is measured (sampling noise stays far below the asserted bounds).
const SERIES: usize = if cfg!(debug_assertions) {
    200_000
} else {
    1_000_000
};

/// SplitMix64: tiny, seeded and good enough to draw label values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Series hashes of realistic-looking series (a few metric names, random pod and path labels).
fn series_hashes(seed: u64, count: usize) -> Vec<u64> {
    const METRICS: [&str; 4] = [
        "http_requests_total",
        "process_cpu_seconds_total",
        "up",
        "go_goroutines",
    ];
    let mut rng = Rng(seed);
    let mut pod = String::new();
    let mut path = String::new();
    (0..count)
        .map(|_| {
            let r = rng.next();
            pod.clear();
            path.clear();
            pod.push_str(&format!("api-{:x}", r >> 40));
            path.push_str(&format!("/v1/items/{}", r & 0xfff));
            let metric = METRICS[(r >> 20) as usize % METRICS.len()];
            series_hash(
                b"tenant-a",
                [
                    (&b"__name__"[..], metric.as_bytes()),
                    (b"path", path.as_bytes()),
                    (b"pod", pod.as_bytes()),
                ],
            )
        })
        .collect()
}

/// StatefulSet-style receiver addresses, as an operator would write them.
fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("thanos-receive-{i}.thanos-receive.monitoring.svc.cluster.local:10901"))
        .collect()
}

fn ring(algorithm: Algorithm, endpoints: Vec<Endpoint>, replication_factor: usize) -> Ring {
    let cfg = HashringConfig {
        endpoints,
        algorithm: Some(algorithm),
        ..HashringConfig::default()
    };
    Ring::new(&cfg, algorithm, replication_factor).unwrap()
}

fn plain_ring(algorithm: Algorithm, n: usize, replication_factor: usize) -> Ring {
    ring(
        algorithm,
        addresses(n).into_iter().map(Endpoint::new).collect(),
        replication_factor,
    )
}

/// Largest relative deviation from the fair share `1/N` over endpoints, counting replica 0
/// (`all_replicas == false`) or every replica.
fn imbalance(ring: &Ring, hashes: &[u64], all_replicas: bool) -> f64 {
    let n = ring.endpoints().len();
    let mut counts = vec![0usize; n];
    for &h in hashes {
        if all_replicas {
            ring.replicas(h).for_each(|i| counts[i] += 1);
        } else {
            counts[ring.replica(h, 0)] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    let fair = total as f64 / n as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - fair).abs() / fair)
        .fold(0.0, f64::max)
}

/// Fraction of series whose primary replica changes address between two rings.
fn moved(before: &Ring, after: &Ring, hashes: &[u64]) -> f64 {
    let address = |r: &Ring, h| r.endpoints()[r.replica(h, 0)].address.clone();
    let moved = hashes
        .iter()
        .filter(|&&h| address(before, h) != address(after, h))
        .count();
    moved as f64 / hashes.len() as f64
}

#[test]
fn ketama_balance_within_ten_percent() {
    let hashes = series_hashes(1, SERIES);
    for n in [3, 5, 10] {
        let r = plain_ring(Algorithm::Ketama, n, 3.min(n));
        let primary = imbalance(&r, &hashes, false);
        let all = imbalance(&r, &hashes, true);
        eprintln!(
            "ketama N={n}: max deviation primary {:.1}%, all {} replicas {:.1}%",
            primary * 100.0,
            r.replication_factor(),
            all * 100.0
        );
        assert!(
            primary <= 0.10,
            "ketama N={n}: primary deviation {primary:.3}"
        );
    }
}

#[test]
fn hashmod_balance() {
    let hashes = series_hashes(2, SERIES);
    for n in [3, 5, 10] {
        let r = plain_ring(Algorithm::Hashmod, n, 3.min(n));
        let primary = imbalance(&r, &hashes, false);
        eprintln!(
            "hashmod N={n}: max deviation primary {:.1}%",
            primary * 100.0
        );
        // Only sampling noise: a few tenths of a percent.
        assert!(
            primary <= 0.03,
            "hashmod N={n}: primary deviation {primary:.3}"
        );
    }
}

#[test]
fn growing_three_to_five_endpoints_moves_two_fifths_with_ketama() {
    let hashes = series_hashes(3, SERIES);
    let ketama = moved(
        &plain_ring(Algorithm::Ketama, 3, 3),
        &plain_ring(Algorithm::Ketama, 5, 3),
        &hashes,
    );
    let hashmod = moved(
        &plain_ring(Algorithm::Hashmod, 3, 3),
        &plain_ring(Algorithm::Hashmod, 5, 3),
        &hashes,
    );
    eprintln!(
        "3 -> 5 endpoints, primary moved: ketama {:.1}% (ideal 40%), hashmod {:.1}%",
        ketama * 100.0,
        hashmod * 100.0
    );
    assert!((0.35..=0.45).contains(&ketama), "ketama moved {ketama:.3}");
    // hashmod keeps a series only when h mod 3 == h mod 5, i.e. h mod 15 < 3: 80 % move.
    assert!(
        (0.78..=0.82).contains(&hashmod),
        "hashmod moved {hashmod:.3}"
    );
}

#[test]
fn replicas_are_distinct() {
    let hashes = series_hashes(4, SERIES / 4);
    for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
        for (n, rf) in [(3, 3), (5, 3), (10, 5)] {
            let r = plain_ring(algorithm, n, rf);
            for &h in &hashes {
                let mut replicas: Vec<usize> = r.replicas(h).collect();
                assert_eq!(replicas.len(), rf);
                replicas.sort_unstable();
                replicas.dedup();
                assert_eq!(replicas.len(), rf, "{algorithm} N={n} RF={rf} hash={h:#x}");
            }
        }
    }
}

#[test]
fn replicas_spread_over_three_zones() {
    let hashes = series_hashes(5, SERIES / 4);
    // Equal and unequal zone sizes; both must put the 3 replicas in 3 different zones.
    for sizes in [[2, 2, 2], [3, 2, 1], [4, 1, 2]] {
        let zones = ["eu-1a", "eu-1b", "eu-1c"];
        let endpoints: Vec<Endpoint> = addresses(sizes.iter().sum())
            .into_iter()
            .zip(
                zones
                    .iter()
                    .zip(sizes)
                    .flat_map(|(z, s)| std::iter::repeat_n(*z, s)),
            )
            .map(|(address, zone)| Endpoint {
                az: Some(zone.to_owned()),
                ..Endpoint::new(address)
            })
            .collect();
        let r = ring(Algorithm::Ketama, endpoints, 3);
        for &h in &hashes {
            let mut used: Vec<&str> = r.replicas(h).map(|i| r.endpoints()[i].zone()).collect();
            used.sort_unstable();
            assert_eq!(used, zones, "sizes {sizes:?} hash={h:#x}");
        }
    }
}
