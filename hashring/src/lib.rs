//! The Thanos `hashrings.json` contract shared by the receiver and the operator.
//!
//! Bit-compatible with Thanos Receive, so that Thanos receivers and ours can share a ring:
//! the file format ([`config`]), tenant → ring selection ([`Hashrings`]), the series key hash
//! ([`series_hash`]), hashmod and ketama placement ([`Ring`]) and the write quorum ([`quorum`]).
//! Everything here is pure: callers read files and pass bytes in.

#![forbid(unsafe_code)]

pub mod config;
pub mod contract;
mod glob;
mod hash;
mod hashrings;
mod ring;

pub use config::{
    Algorithm, ConfigError, ConfigHash, Endpoint, HashringConfig, TenantMatcher, config_hash,
    parse, to_json,
};
pub use hash::series_hash;
pub use hashrings::Hashrings;
pub use ring::{Replicas, Ring, RingError, SECTIONS_PER_ENDPOINT};

/// Successful replica writes needed for a series: 1 for RF 2 (Thanos ≥ v0.37), else ⌊RF/2⌋ + 1.
pub fn quorum(replication_factor: usize) -> usize {
    if replication_factor == 2 {
        1
    } else {
        replication_factor / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::quorum;

    #[test]
    fn quorum_matches_thanos() {
        let got: Vec<usize> = (1..=7).map(quorum).collect();
        assert_eq!(got, [1, 1, 2, 3, 3, 4, 4]);
    }
}
