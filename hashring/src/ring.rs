//! One hashring: validation and the hashmod and ketama placement algorithms.

use std::fmt::{self, Write as _};

use xxhash_rust::xxh64::xxh64;

use crate::config::{Algorithm, Endpoint, HashringConfig};

/// Ketama sections (virtual nodes) per endpoint, as in Thanos (`SectionsPerNode`).
pub const SECTIONS_PER_ENDPOINT: usize = 1000;

/// Why a hashring (or a set of them) cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Replication factor 0 would place series nowhere.
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
    /// The ring lists no endpoint.
    #[error("hashring has no endpoints")]
    NoEndpoints,
    /// An endpoint has an empty address.
    #[error("endpoint address must be set")]
    EmptyAddress,
    /// Two endpoints share an address (ketama sections would collide, hashmod would double-count).
    #[error("endpoint {0:?} is listed more than once")]
    DuplicateEndpoint(String),
    /// Fewer endpoints than replicas per series.
    #[error(
        "{endpoints} endpoint(s) cannot hold {replication_factor} replicas: the replication factor must not exceed the number of endpoints"
    )]
    TooFewEndpoints {
        /// Endpoints in the ring.
        endpoints: usize,
        /// Requested replicas per series.
        replication_factor: usize,
    },
    /// hashmod has no notion of availability zones.
    #[error(
        "endpoint {address:?} has availability zone {az:?} but the hashmod algorithm is not AZ-aware; use ketama or remove the AZs"
    )]
    AzWithHashmod {
        /// Offending endpoint.
        address: String,
        /// Its zone.
        az: String,
    },
    /// Ketama's zone-spreading rule cannot pick enough replicas (Thanos would hang forever).
    #[error(
        "ketama cannot place {replication_factor} replicas across availability zones {{{zones}}}: a zone may only hold one more replica than the least used zone"
    )]
    ImpossibleAzSpread {
        /// Requested replicas per series.
        replication_factor: usize,
        /// Zones and their endpoint counts, e.g. `a: 3, b: 1`.
        zones: String,
    },
    /// A glob tenant pattern is malformed.
    #[error("tenant pattern {0:?} is not a valid glob (Go filepath.Match syntax)")]
    BadTenantPattern(String),
    /// The hashrings file defines no ring.
    #[error("no hashring configured")]
    NoHashrings,
    /// An error in one entry of the hashrings file.
    #[error("hashring #{index} ({name:?}): {error}")]
    InHashring {
        /// Position in the file, from 0.
        index: usize,
        /// The entry's `hashring` name.
        name: String,
        /// What is wrong with it.
        error: Box<RingError>,
    },
}

/// One hashring ready for placement lookups.
#[derive(Clone)]
pub struct Ring {
    /// hashmod: sorted by address; ketama: file order. Replica indexes point into this.
    endpoints: Vec<Endpoint>,
    replication_factor: usize,
    placement: Placement,
}

#[derive(Clone)]
enum Placement {
    Hashmod,
    Ketama {
        /// Section hashes, ascending.
        hashes: Vec<u64>,
        /// `replication_factor` endpoint indexes per section, in section order; u32 halves the
        /// table (10 endpoints × 1000 sections × RF entries) compared to usize.
        replicas: Vec<u32>,
    },
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The section table is large and says nothing to a reader.
        f.debug_struct("Ring")
            .field("algorithm", &self.algorithm())
            .field("replication_factor", &self.replication_factor)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Builds a ring from a file entry; `default_algorithm` applies when the entry names none.
    pub fn new(
        cfg: &HashringConfig,
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<Ring, RingError> {
        Ring::with_sections(
            cfg,
            default_algorithm,
            replication_factor,
            SECTIONS_PER_ENDPOINT,
        )
    }

    /// [`Ring::new`] with a chosen ketama section count (Thanos' test vectors use 10).
    pub(crate) fn with_sections(
        cfg: &HashringConfig,
        default_algorithm: Algorithm,
        replication_factor: usize,
        sections_per_endpoint: usize,
    ) -> Result<Ring, RingError> {
        let mut endpoints = cfg.endpoints.clone();
        validate_endpoints(&endpoints, replication_factor)?;
        let placement = match cfg.algorithm.unwrap_or(default_algorithm) {
            Algorithm::Hashmod => {
                if let Some(e) = endpoints.iter().find(|e| !e.zone().is_empty()) {
                    return Err(RingError::AzWithHashmod {
                        address: e.address.clone(),
                        az: e.zone().to_owned(),
                    });
                }
                endpoints.sort_by(|a, b| a.address.cmp(&b.address));
                Placement::Hashmod
            }
            Algorithm::Ketama => {
                ketama_placement(&endpoints, replication_factor, sections_per_endpoint)?
            }
        };
        Ok(Ring {
            endpoints,
            replication_factor,
            placement,
        })
    }

    /// The endpoints that replica indexes refer to (sorted by address for hashmod, file order for ketama).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The algorithm in force for this ring.
    pub fn algorithm(&self) -> Algorithm {
        match self.placement {
            Placement::Hashmod => Algorithm::Hashmod,
            Placement::Ketama { .. } => Algorithm::Ketama,
        }
    }

    /// Replicas per series.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Index into [`Ring::endpoints`] of replica `n` (0-based) of the series with this [`series_hash`](crate::series_hash).
    ///
    /// # Panics
    /// If `n >= replication_factor` (callers validate the replica number first, as Thanos does).
    pub fn replica(&self, hash: u64, n: usize) -> usize {
        assert!(
            n < self.replication_factor,
            "replica {n} requested from a ring with replication factor {}",
            self.replication_factor
        );
        match &self.placement {
            Placement::Hashmod => hashmod(hash, n, self.endpoints.len()),
            Placement::Ketama { hashes, replicas } => {
                replicas[section_of(hashes, hash) * self.replication_factor + n] as usize
            }
        }
    }

    /// All replicas of the series, in replica order, without allocating.
    pub fn replicas(&self, hash: u64) -> Replicas<'_> {
        Replicas(match &self.placement {
            Placement::Hashmod => ReplicasInner::Hashmod {
                hash,
                len: self.endpoints.len(),
                next: 0,
                end: self.replication_factor,
            },
            Placement::Ketama { hashes, replicas } => {
                let start = section_of(hashes, hash) * self.replication_factor;
                ReplicasInner::Ketama(replicas[start..start + self.replication_factor].iter())
            }
        })
    }
}

/// hashmod placement: consecutive endpoints in address order, with Thanos' u64 wrap-around.
///
/// Thanos adds `n` before the modulo, so for the few hashes within `n` of `u64::MAX` replicas
/// can repeat an endpoint; this is kept so that both implementations agree.
fn hashmod(hash: u64, n: usize, len: usize) -> usize {
    (hash.wrapping_add(n as u64) % len as u64) as usize
}

/// First section whose hash is ≥ `hash`, wrapping to the first section past the end.
fn section_of(hashes: &[u64], hash: u64) -> usize {
    let i = hashes.partition_point(|&h| h < hash);
    if i == hashes.len() { 0 } else { i }
}

/// Iterator over a series' replica endpoint indexes, see [`Ring::replicas`].
#[derive(Debug, Clone)]
pub struct Replicas<'a>(ReplicasInner<'a>);

#[derive(Debug, Clone)]
enum ReplicasInner<'a> {
    Hashmod {
        hash: u64,
        len: usize,
        next: usize,
        end: usize,
    },
    Ketama(std::slice::Iter<'a, u32>),
}

impl Iterator for Replicas<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match &mut self.0 {
            ReplicasInner::Hashmod {
                hash,
                len,
                next,
                end,
            } => (*next < *end).then(|| {
                *next += 1;
                hashmod(*hash, *next - 1, *len)
            }),
            ReplicasInner::Ketama(it) => it.next().map(|&i| i as usize),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            ReplicasInner::Hashmod { next, end, .. } => end - next,
            ReplicasInner::Ketama(it) => it.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Replicas<'_> {}

/// Checks what both algorithms need: RF ≥ 1, non-empty distinct addresses, enough endpoints.
fn validate_endpoints(endpoints: &[Endpoint], replication_factor: usize) -> Result<(), RingError> {
    if replication_factor == 0 {
        return Err(RingError::ZeroReplicationFactor);
    }
    if endpoints.is_empty() {
        return Err(RingError::NoEndpoints);
    }
    if endpoints.iter().any(|e| e.address.is_empty()) {
        return Err(RingError::EmptyAddress);
    }
    let mut addresses: Vec<&str> = endpoints.iter().map(|e| e.address.as_str()).collect();
    addresses.sort_unstable();
    if let Some(pair) = addresses.windows(2).find(|w| w[0] == w[1]) {
        return Err(RingError::DuplicateEndpoint(pair[0].to_owned()));
    }
    // Thanos accepts this for hashmod and then fails every write; rejecting it up front is kinder.
    if endpoints.len() < replication_factor {
        return Err(RingError::TooFewEndpoints {
            endpoints: endpoints.len(),
            replication_factor,
        });
    }
    Ok(())
}

/// Builds the ketama section table and precomputes every section's replicas.
fn ketama_placement(
    endpoints: &[Endpoint],
    replication_factor: usize,
    sections_per_endpoint: usize,
) -> Result<Placement, RingError> {
    let mut sections: Vec<(u64, u32)> = Vec::with_capacity(endpoints.len() * sections_per_endpoint);
    let mut key = String::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        for i in 1..=sections_per_endpoint {
            key.clear();
            // Writing to a String cannot fail.
            let _ = write!(key, "{}:{i}", endpoint.address);
            sections.push((xxh64(key.as_bytes(), 0), index as u32));
        }
    }
    // Go's sort is unstable; ties would need an xxhash collision between distinct keys.
    sections.sort_unstable();

    let (zone_of, zone_names) = zones(endpoints);
    let replicas = section_replicas(&sections, &zone_of, zone_names.len(), replication_factor)
        .ok_or_else(|| RingError::ImpossibleAzSpread {
            replication_factor,
            zones: zone_names
                .iter()
                .enumerate()
                .map(|(z, name)| {
                    let count = zone_of.iter().filter(|&&of| of == z).count();
                    format!("{name:?}: {count}")
                })
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    Ok(Placement::Ketama {
        hashes: sections.iter().map(|&(h, _)| h).collect(),
        replicas,
    })
}

/// Zone index of every endpoint and the zone names; no zone counts as the zone `""`, as in Thanos.
fn zones(endpoints: &[Endpoint]) -> (Vec<usize>, Vec<&str>) {
    let mut names: Vec<&str> = Vec::new();
    let zone_of = endpoints
        .iter()
        .map(|e| match names.iter().position(|&n| n == e.zone()) {
            Some(z) => z,
            None => {
                names.push(e.zone());
                names.len() - 1
            }
        })
        .collect();
    (zone_of, names)
}

/// Thanos' `calculateSectionReplicas`: for each section, walk the ring clockwise collecting
/// distinct endpoints, skipping one whose zone already holds more replicas than the least used
/// zone. Returns `None` when that rule can never be satisfied (Thanos loops forever there).
fn section_replicas(
    sections: &[(u64, u32)],
    zone_of: &[usize],
    zone_count: usize,
    replication_factor: usize,
) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(sections.len() * replication_factor);
    let mut spread = vec![0usize; zone_count];
    let mut chosen: Vec<u32> = Vec::with_capacity(replication_factor);
    for start in 0..sections.len() {
        chosen.clear();
        spread.fill(0);
        // Candidates rejected since the last pick: a full lap of them means the state can no
        // longer change, i.e. Thanos would spin forever.
        let mut rejected = 0;
        let mut j = start;
        while chosen.len() < replication_factor {
            let endpoint = sections[j].1;
            let zone = zone_of[endpoint as usize];
            let least_used = spread.iter().copied().min().unwrap_or(0);
            if !chosen.contains(&endpoint) && (zone_count == 1 || spread[zone] <= least_used) {
                chosen.push(endpoint);
                spread[zone] += 1;
                rejected = 0;
            } else {
                rejected += 1;
                if rejected == sections.len() {
                    return None;
                }
            }
            j = if j + 1 == sections.len() { 0 } else { j + 1 };
        }
        out.extend_from_slice(&chosen);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series_hash;

    fn config(algorithm: Algorithm, addresses: &[&str]) -> HashringConfig {
        HashringConfig {
            endpoints: addresses.iter().map(|a| Endpoint::new(*a)).collect(),
            algorithm: Some(algorithm),
            ..HashringConfig::default()
        }
    }

    fn with_zones(endpoints: &[(&str, &str)]) -> HashringConfig {
        HashringConfig {
            endpoints: endpoints
                .iter()
                .map(|(a, z)| Endpoint {
                    az: Some((*z).to_owned()),
                    ..Endpoint::new(*a)
                })
                .collect(),
            algorithm: Some(Algorithm::Ketama),
            ..HashringConfig::default()
        }
    }

    fn pod(value: &str) -> u64 {
        series_hash(b"tenant", [(&b"pod"[..], value.as_bytes())])
    }

    /// Thanos `TestKetamaHashringGet`: 10 sections per endpoint, RF = n + 1.
    #[test]
    fn thanos_ketama_vectors() {
        let cases: &[(&[&str], &str, usize, &str)] = &[
            (&["node-1", "node-2", "node-3"], "nginx", 0, "node-2"),
            (&["node-1", "node-2", "node-3"], "nginx", 1, "node-1"),
            (&["node-1", "node-2", "node-3"], "nginx", 2, "node-3"),
            (&["node-1", "node-3", "node-2"], "nginx", 2, "node-3"),
            (
                &["node-0", "node-1", "node-2", "node-3"],
                "nginx",
                0,
                "node-2",
            ),
            (
                &["node-1", "node-2", "node-3", "node-4"],
                "nginx",
                0,
                "node-2",
            ),
            (&["node-1", "node-2", "node-3"], "thanos", 0, "node-3"),
        ];
        for &(addresses, value, n, want) in cases {
            let cfg = config(Algorithm::Ketama, addresses);
            let ring = Ring::with_sections(&cfg, Algorithm::Hashmod, n + 1, 10).unwrap();
            let got = &ring.endpoints()[ring.replica(pod(value), n)].address;
            assert_eq!(got, want, "{addresses:?} pod={value} n={n}");
        }
    }

    #[test]
    fn series_hashes_used_by_vectors() {
        // `printf 'tenant\xffpod\xffnginx\xff' | xxhsum -H64`
        assert_eq!(pod("nginx"), 0x25c4_4c07_80c3_4a23);
        assert_eq!(pod("thanos"), 0xd39c_2c97_c414_8c40);
    }

    #[test]
    fn ketama_section_keys_are_address_colon_index() {
        // With one section per endpoint the ring is just the hashes of "<address>:1";
        // `printf 'node-1:1' | xxhsum -H64` = 4afb5483c129158b.
        let cfg = config(Algorithm::Ketama, &["node-1"]);
        let ring = Ring::with_sections(&cfg, Algorithm::Ketama, 1, 1).unwrap();
        let Placement::Ketama { hashes, .. } = &ring.placement else {
            panic!("not ketama")
        };
        assert_eq!(hashes, &[0x4afb_5483_c129_158b]);
    }

    #[test]
    fn ketama_lookup_boundaries() {
        let cfg = config(Algorithm::Ketama, &["a", "b", "c"]);
        let ring = Ring::with_sections(&cfg, Algorithm::Ketama, 2, 10).unwrap();
        let Placement::Ketama { hashes, replicas } = &ring.placement else {
            panic!("not ketama")
        };
        // A hash equal to a section's hash belongs to that section ("first section ≥ hash").
        for (s, &h) in hashes.iter().enumerate() {
            assert_eq!(ring.replica(h, 0), replicas[s * 2] as usize);
        }
        // Past the last section the ring wraps to section 0.
        let last = *hashes.last().unwrap();
        if last < u64::MAX {
            assert_eq!(ring.replica(last + 1, 0), replicas[0] as usize);
            assert_eq!(ring.replica(u64::MAX, 1), replicas[1] as usize);
        }
        assert_eq!(ring.replica(0, 0), replicas[0] as usize);
    }

    #[test]
    fn hashmod_vectors() {
        // Sorted by address: [a:1, b:1, c:1, d:1]; nginx hash 0x25c44c0780c34a23 ≡ 3 (mod 4).
        let cfg = config(Algorithm::Hashmod, &["c:1", "a:1", "d:1", "b:1"]);
        let ring = Ring::new(&cfg, Algorithm::Ketama, 3).unwrap();
        let sorted: Vec<&str> = ring
            .endpoints()
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        assert_eq!(sorted, ["a:1", "b:1", "c:1", "d:1"]);
        let h = pod("nginx");
        assert_eq!(ring.replicas(h).collect::<Vec<_>>(), [3, 0, 1]);
        // Same hash, 3 and 5 endpoints: ≡ 1 (mod 3), ≡ 3 (mod 5).
        let ring3 = Ring::new(
            &config(Algorithm::Hashmod, &["x", "y", "z"]),
            Algorithm::Hashmod,
            3,
        )
        .unwrap();
        assert_eq!(ring3.replicas(h).collect::<Vec<_>>(), [1, 2, 0]);
        let ring5 = Ring::new(
            &config(Algorithm::Hashmod, &["e", "d", "c", "b", "a"]),
            Algorithm::Hashmod,
            3,
        )
        .unwrap();
        assert_eq!(ring5.replicas(h).collect::<Vec<_>>(), [3, 4, 0]);
    }

    #[test]
    fn hashmod_wraps_like_go_uint64() {
        // (2^64 - 1) ≡ 0 (mod 3) and (2^64 - 1) + 1 wraps to 0: Thanos returns endpoint 0 twice.
        let ring = Ring::new(
            &config(Algorithm::Hashmod, &["a", "b", "c"]),
            Algorithm::Hashmod,
            3,
        )
        .unwrap();
        assert_eq!(ring.replicas(u64::MAX).collect::<Vec<_>>(), [0, 0, 1]);
        let ring4 = Ring::new(
            &config(Algorithm::Hashmod, &["a", "b", "c", "d"]),
            Algorithm::Hashmod,
            3,
        )
        .unwrap();
        assert_eq!(ring4.replicas(u64::MAX).collect::<Vec<_>>(), [3, 0, 1]);
    }

    #[test]
    fn replica_and_replicas_agree() {
        for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
            let ring = Ring::new(&config(algorithm, &["a", "b", "c", "d"]), algorithm, 3).unwrap();
            for h in [0, 1, 42, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
                let all: Vec<usize> = ring.replicas(h).collect();
                assert_eq!(all.len(), 3);
                assert_eq!(ring.replicas(h).len(), 3);
                for (n, &r) in all.iter().enumerate() {
                    assert_eq!(ring.replica(h, n), r);
                }
            }
        }
    }

    #[test]
    fn default_algorithm_applies_when_entry_has_none() {
        let mut cfg = config(Algorithm::Hashmod, &["a", "b"]);
        cfg.algorithm = None;
        assert_eq!(
            Ring::new(&cfg, Algorithm::Ketama, 1).unwrap().algorithm(),
            Algorithm::Ketama
        );
        assert_eq!(
            Ring::new(&cfg, Algorithm::Hashmod, 1).unwrap().algorithm(),
            Algorithm::Hashmod
        );
    }

    #[test]
    #[should_panic(expected = "replication factor 2")]
    fn replica_beyond_rf_panics() {
        let ring = Ring::new(
            &config(Algorithm::Ketama, &["a", "b", "c"]),
            Algorithm::Ketama,
            2,
        )
        .unwrap();
        ring.replica(0, 2);
    }

    #[test]
    fn validation() {
        for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
            let err = |addresses: &[&str], rf| {
                Ring::new(&config(algorithm, addresses), algorithm, rf).unwrap_err()
            };
            assert_eq!(
                err(&["a", "b"], 3),
                RingError::TooFewEndpoints {
                    endpoints: 2,
                    replication_factor: 3
                }
            );
            assert_eq!(err(&[], 1), RingError::NoEndpoints);
            assert_eq!(
                err(&["a", "b", "a"], 1),
                RingError::DuplicateEndpoint("a".into())
            );
            assert_eq!(err(&["a", ""], 1), RingError::EmptyAddress);
            assert_eq!(err(&["a"], 0), RingError::ZeroReplicationFactor);
        }
        let mut cfg = with_zones(&[("a", "z1"), ("b", "z2")]);
        cfg.algorithm = Some(Algorithm::Hashmod);
        assert_eq!(
            Ring::new(&cfg, Algorithm::Hashmod, 1).unwrap_err(),
            RingError::AzWithHashmod {
                address: "a".into(),
                az: "z1".into()
            }
        );
        let msg = Ring::new(&cfg, Algorithm::Hashmod, 1)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("hashmod algorithm is not AZ-aware"), "{msg}");
        // An empty AZ is no AZ.
        cfg.endpoints[0].az = Some(String::new());
        cfg.endpoints[1].az = None;
        assert!(Ring::new(&cfg, Algorithm::Hashmod, 1).is_ok());
    }

    #[test]
    fn impossible_az_spread_is_an_error_not_a_hang() {
        // The case from the reference: zones {A: 3, B: 1, C: 1}, RF 5. After one replica per
        // zone, A may take one more, and then B and C are exhausted.
        let cfg = with_zones(&[
            ("a1", "A"),
            ("a2", "A"),
            ("a3", "A"),
            ("b1", "B"),
            ("c1", "C"),
        ]);
        let err = Ring::new(&cfg, Algorithm::Ketama, 5).unwrap_err();
        assert_eq!(
            err,
            RingError::ImpossibleAzSpread {
                replication_factor: 5,
                zones: r#""A": 3, "B": 1, "C": 1"#.into()
            }
        );
        // RF 4 fits: A, B, C, then A again.
        let ring = Ring::new(&cfg, Algorithm::Ketama, 4).unwrap();
        for h in [0, 7, u64::MAX / 2, u64::MAX] {
            let mut zones: Vec<&str> = ring
                .replicas(h)
                .map(|i| ring.endpoints()[i].zone())
                .collect();
            zones.sort_unstable();
            assert_eq!(zones, ["A", "A", "B", "C"]);
        }
    }

    #[test]
    fn mixed_zoned_and_unzoned_endpoints_count_unzoned_as_a_zone() {
        // Thanos keys its spread map by AZ string, so "" is a zone of its own.
        let cfg = with_zones(&[("a", "z1"), ("b", "z1"), ("c", ""), ("d", "")]);
        let ring = Ring::new(&cfg, Algorithm::Ketama, 2).unwrap();
        for h in [1, 1 << 40, u64::MAX - 5] {
            let mut zones: Vec<&str> = ring
                .replicas(h)
                .map(|i| ring.endpoints()[i].zone())
                .collect();
            zones.sort_unstable();
            assert_eq!(zones, ["", "z1"]);
        }
    }
}
