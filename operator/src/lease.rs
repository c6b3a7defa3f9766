//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one replica writes.
//!
//! Takes and renews the Lease with compare-and-swap replaces (the resourceVersion guards every
//! write), so two replicas can never both believe they hold it for longer than one renewal.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::Error;

/// Where the Lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub duration: Duration,
}

/// Whether `me` may take or keep `lease` at `now`: it is free, mine, or its holder stopped renewing.
pub fn may_hold(lease: &LeaseSpec, me: &str, now: Timestamp) -> bool {
    let holder = lease.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let Some(renewed) = lease.renew_time.as_ref().or(lease.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(lease.lease_duration_seconds.unwrap_or(0)));
    renewed.0 + duration < now
}

/// The spec that makes `me` the holder at `now`, continuing `previous`.
pub fn held_by(
    previous: Option<&LeaseSpec>,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let was_mine = previous.and_then(|p| p.holder_identity.as_deref()) == Some(me);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if was_mine {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if was_mine || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Holds the operator's Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaderElector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// One attempt to take or renew the Lease; `Ok(false)` when another replica holds it.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let me = &self.config.identity;
        match self.api.get_opt(&self.config.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(held_by(None, me, self.config.duration, now)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                if !may_hold(&spec, me, now) {
                    return Ok(false);
                }
                lease.spec = Some(held_by(Some(&spec), me, self.config.duration, now));
                // The resourceVersion read above makes this a compare-and-swap.
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: reading the Lease failed"),
            }
            tokio::time::sleep(self.config.duration / 3).await;
        }
    }

    /// Renews the Lease until it is lost, then returns why.
    pub async fn hold(&self) -> Error {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.duration / 3).await;
            match self.try_hold().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    return Error::LeaseLost(format!(
                        "{}: taken by another replica",
                        self.config.name
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: renewing the Lease failed");
                    // Past the lease duration another replica may have taken over: stop writing.
                    if renewed.elapsed() >= self.config.duration {
                        return Error::LeaseLost(format!(
                            "{}: not renewed for {:?}",
                            self.config.name, self.config.duration
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn a_lease_is_taken_only_when_free_mine_or_expired() {
        let d = Duration::from_secs(15);
        let theirs = held_by(None, "b", d, at(0));
        assert!(may_hold(&LeaseSpec::default(), "a", at(0)));
        assert!(!may_hold(&theirs, "a", at(10)));
        assert!(may_hold(&theirs, "b", at(10)));
        assert!(!may_hold(&theirs, "a", at(15)));
        assert!(may_hold(&theirs, "a", at(16)));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let d = Duration::from_secs(15);
        let first = held_by(None, "a", d, at(0));
        assert_eq!(
            (first.lease_transitions, first.lease_duration_seconds),
            (Some(0), Some(15))
        );
        let renewed = held_by(Some(&first), "a", d, at(5));
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(5))));
        let taken = held_by(Some(&renewed), "b", d, at(30));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(30))));
    }
}
