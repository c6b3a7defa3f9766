//! Status and conditions of a `ThanosReceiver`, computed from what the reconciler observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{RingStatus, ThanosReceiverStatus, conditions, reasons};
use crate::ring::{Members, Scale};

/// The hashring in force, read back from the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInForce {
    /// Ordinals in the default ring.
    pub members: Members,
    /// `config_hash` of the ConfigMap's `hashrings.json`.
    pub hash: String,
    /// When it last changed.
    pub changed_at: Option<Timestamp>,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// `metadata.generation` of the resource.
    pub generation: Option<i64>,
    /// Label selector of the pods.
    pub selector: String,
    /// `spec.replicas`.
    pub desired: i32,
    /// `spec.replicationFactor`.
    pub replication_factor: i32,
    /// Receiver pods that exist.
    pub pods: i32,
    /// Ordinals of the Ready receiver pods.
    pub ready: &'a Members,
    /// The hashring in force after this reconciliation.
    pub ring: Option<&'a RingInForce>,
    /// The StatefulSet size chosen, `None` when nothing was applied.
    pub scale: Option<Scale>,
    /// `spec.paused`.
    pub paused: bool,
    /// Spec rule violations.
    pub problems: &'a [String],
    /// API groups the cluster does not serve, with what was skipped.
    pub unavailable: &'a [String],
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        // Filled in by `merge_condition`.
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

fn list(ordinals: impl IntoIterator<Item = u32>) -> String {
    ordinals
        .into_iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ring_ready(o: &Observed) -> Condition {
    let Some(ring) = o.ring else {
        return condition(
            conditions::RING_READY,
            false,
            reasons::NO_RING,
            format!(
                "no hashring yet: {} receivers are Ready, replicationFactor {} are needed",
                o.ready.len(),
                o.replication_factor
            ),
        );
    };
    let desired = u32::try_from(o.desired).unwrap_or(0);
    let leaving: Vec<u32> = ring
        .members
        .iter()
        .copied()
        .filter(|&i| i >= desired)
        .collect();
    let missing: Vec<u32> = (0..desired).filter(|i| !ring.members.contains(i)).collect();
    if !leaving.is_empty() {
        condition(
            conditions::RING_READY,
            false,
            reasons::LEAVING_RECEIVERS_IN_RING,
            format!(
                "receivers {} are leaving but still in the ring: too few Ready receivers remain for replicationFactor {}",
                list(leaving),
                o.replication_factor
            ),
        )
    } else if !missing.is_empty() {
        condition(
            conditions::RING_READY,
            false,
            reasons::WAITING_FOR_READY_RECEIVERS,
            format!(
                "the ring holds {} of {} receivers; receivers {} join when Ready",
                ring.members.len(),
                o.desired,
                list(missing)
            ),
        )
    } else {
        condition(
            conditions::RING_READY,
            true,
            reasons::ALL_RECEIVERS_IN_RING,
            format!("the ring holds all {} receivers", o.desired),
        )
    }
}

fn available(o: &Observed) -> Condition {
    let Some(ring) = o.ring else {
        return condition(
            conditions::AVAILABLE,
            false,
            reasons::NO_RING,
            "no hashring yet".into(),
        );
    };
    let rf = usize::try_from(o.replication_factor).unwrap_or(1);
    let tolerated = rf.saturating_sub(hashring::quorum(rf));
    let unready: Vec<u32> = ring.members.difference(o.ready).copied().collect();
    if unready.len() <= tolerated {
        condition(
            conditions::AVAILABLE,
            true,
            reasons::QUORUM_AVAILABLE,
            format!(
                "{} of {} ring members are Ready; every series reaches its write quorum",
                ring.members.len() - unready.len(),
                ring.members.len()
            ),
        )
    } else {
        condition(
            conditions::AVAILABLE,
            false,
            reasons::QUORUM_AT_RISK,
            format!(
                "ring members {} are not Ready; some series may miss their write quorum of {}",
                list(unready),
                hashring::quorum(rf)
            ),
        )
    }
}

fn progressing(o: &Observed) -> Condition {
    if o.paused {
        return condition(
            conditions::PROGRESSING,
            false,
            reasons::PAUSED,
            "spec.paused is set: nothing is written".into(),
        );
    }
    if !o.problems.is_empty() {
        return condition(
            conditions::PROGRESSING,
            false,
            reasons::INVALID_SPEC,
            "the spec is invalid: nothing is written".into(),
        );
    }
    match &o.scale {
        Some(Scale::HoldForRing(n)) => {
            return condition(
                conditions::PROGRESSING,
                true,
                reasons::SCALING_DOWN,
                format!("keeping {n} receivers until the leaving ones are out of the ring"),
            );
        }
        Some(Scale::HoldForPropagation {
            replicas,
            remaining,
            unconfirmed,
        }) => {
            return condition(
                conditions::PROGRESSING,
                true,
                reasons::SCALING_DOWN,
                format!(
                    "leaving receivers are out of the ring; keeping {replicas} until receivers {} report running it (at most {}s more)",
                    list(unconfirmed.iter().copied()),
                    remaining.as_secs_f64().ceil()
                ),
            );
        }
        Some(Scale::TimedOut { unconfirmed, .. }) => {
            return condition(
                conditions::PROGRESSING,
                true,
                reasons::RING_PROPAGATION_TIMED_OUT,
                format!(
                    "stopped the leaving receivers after ringPropagationSeconds although receivers {} never reported the new ring",
                    list(unconfirmed.iter().copied())
                ),
            );
        }
        _ => {}
    }
    let desired = u32::try_from(o.desired).unwrap_or(0);
    let not_ready: Vec<u32> = (0..desired).filter(|i| !o.ready.contains(i)).collect();
    if !not_ready.is_empty() || o.pods != o.desired {
        return condition(
            conditions::PROGRESSING,
            true,
            reasons::WAITING_FOR_READY_RECEIVERS,
            format!(
                "{} pods exist for {} desired; waiting for receivers {} to be Ready",
                o.pods,
                o.desired,
                list(not_ready)
            ),
        );
    }
    condition(
        conditions::PROGRESSING,
        false,
        reasons::RECONCILED,
        format!("{} receivers Ready and in the ring", o.desired),
    )
}

fn degraded(o: &Observed) -> Condition {
    if !o.problems.is_empty() {
        condition(
            conditions::DEGRADED,
            true,
            reasons::INVALID_SPEC,
            o.problems.join("; "),
        )
    } else if !o.unavailable.is_empty() {
        condition(
            conditions::DEGRADED,
            true,
            reasons::API_GROUP_UNAVAILABLE,
            format!(
                "the cluster does not serve {}; the rest is reconciled",
                o.unavailable.join(", ")
            ),
        )
    } else {
        condition(
            conditions::DEGRADED,
            false,
            reasons::AS_EXPECTED,
            "all objects are reconciled".into(),
        )
    }
}

/// Adds `new` to `conditions`, replacing the condition of its type; the transition time is kept
/// when the status did not flip, so that repeated reconciles write an identical status.
pub fn merge_condition(
    conditions: &mut Vec<Condition>,
    mut new: Condition,
    generation: Option<i64>,
    now: Timestamp,
) {
    new.observed_generation = generation;
    new.last_transition_time = Time(now);
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
        *old = new;
    } else {
        conditions.push(new);
    }
}

/// The status for `observed`, keeping transition times from `previous`.
pub fn status(
    previous: Option<&ThanosReceiverStatus>,
    o: &Observed,
    now: Timestamp,
) -> ThanosReceiverStatus {
    let mut conds = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    for c in [available(o), progressing(o), degraded(o), ring_ready(o)] {
        merge_condition(&mut conds, c, o.generation, now);
    }
    ThanosReceiverStatus {
        replicas: o.pods,
        ready_replicas: i32::try_from(o.ready.len()).unwrap_or(i32::MAX),
        selector: Some(o.selector.clone()),
        observed_generation: o.generation,
        ring: o.ring.map(|r| RingStatus {
            endpoints: i32::try_from(r.members.len()).unwrap_or(i32::MAX),
            members: r
                .members
                .iter()
                .map(|&m| i32::try_from(m).unwrap_or(i32::MAX))
                .collect(),
            hash: r.hash.clone(),
            last_change_time: r.changed_at.map(Time),
        }),
        paused: o.paused,
        conditions: conds,
    }
}

/// `previous` with a Degraded condition for a failed reconciliation.
pub fn failed(
    previous: Option<&ThanosReceiverStatus>,
    generation: Option<i64>,
    message: String,
    now: Timestamp,
) -> ThanosReceiverStatus {
    let mut status = previous.cloned().unwrap_or_default();
    merge_condition(
        &mut status.conditions,
        condition(
            conditions::DEGRADED,
            true,
            reasons::RECONCILE_FAILED,
            message,
        ),
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn members(o: &[u32]) -> Members {
        o.iter().copied().collect()
    }

    fn find<'a>(s: &'a ThanosReceiverStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn observed<'a>(ready: &'a Members, ring: Option<&'a RingInForce>) -> Observed<'a> {
        Observed {
            generation: Some(2),
            selector: "a=b".into(),
            desired: 3,
            replication_factor: 3,
            pods: 3,
            ready,
            ring,
            scale: Some(Scale::Desired(3)),
            paused: false,
            problems: &[],
            unavailable: &[],
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn settled_pool_is_available_and_reconciled() {
        let ready = members(&[0, 1, 2]);
        let ring = RingInForce {
            members: members(&[0, 1, 2]),
            hash: "abc".into(),
            changed_at: Some(at(0)),
        };
        let s = status(None, &observed(&ready, Some(&ring)), at(5));
        assert_eq!(
            (s.replicas, s.ready_replicas, s.observed_generation),
            (3, 3, Some(2))
        );
        let r = s.ring.as_ref().unwrap();
        assert_eq!(
            (r.endpoints, r.members.clone(), r.hash.as_str()),
            (3, vec![0, 1, 2], "abc")
        );
        let want = [
            ("Available", "True", "QuorumAvailable"),
            ("Progressing", "False", "Reconciled"),
            ("Degraded", "False", "AsExpected"),
            ("RingReady", "True", "AllReceiversInRing"),
        ];
        for (t, st, reason) in want {
            let c = find(&s, t);
            assert_eq!((c.status.as_str(), c.reason.as_str()), (st, reason), "{t}");
            assert_eq!(c.observed_generation, Some(2));
        }
    }

    #[test]
    fn transition_time_only_moves_when_status_flips() {
        let ready = members(&[0, 1, 2]);
        let ring = RingInForce {
            members: members(&[0, 1, 2]),
            hash: "abc".into(),
            changed_at: None,
        };
        let first = status(None, &observed(&ready, Some(&ring)), at(0));
        let second = status(Some(&first), &observed(&ready, Some(&ring)), at(60));
        assert_eq!(first, second);
        let fewer = members(&[0]);
        let third = status(Some(&second), &observed(&fewer, Some(&ring)), at(90));
        let avail = find(&third, "Available");
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_str()),
            ("False", "QuorumAtRisk")
        );
        assert_eq!(avail.last_transition_time, Time(at(90)));
        assert_eq!(find(&third, "Degraded").last_transition_time, Time(at(0)));
    }

    #[test]
    fn no_ring_scale_down_and_missing_api_groups_are_explained() {
        let ready = members(&[0, 1]);
        let mut o = observed(&ready, None);
        let unavailable = ["policy/v1 (PodDisruptionBudget skipped)".to_owned()];
        o.unavailable = &unavailable;
        let s = status(None, &o, at(0));
        assert_eq!(find(&s, "RingReady").reason, "NoRing");
        assert_eq!(find(&s, "Available").reason, "NoRing");
        let d = find(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "ApiGroupUnavailable")
        );
        assert!(d.message.contains("policy/v1"), "{}", d.message);

        let ready = members(&[0, 1, 2, 3, 4]);
        let ring = RingInForce {
            members: members(&[0, 1, 2]),
            hash: "h".into(),
            changed_at: None,
        };
        let mut o = observed(&ready, Some(&ring));
        o.pods = 5;
        o.scale = Some(Scale::HoldForPropagation {
            replicas: 5,
            remaining: Duration::from_secs(4),
            unconfirmed: members(&[2]),
        });
        let p = status(None, &o, at(0));
        let c = find(&p, "Progressing");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "ScalingDown")
        );
        assert!(
            c.message.contains("receivers 2 report") && c.message.contains("at most 4s"),
            "{}",
            c.message
        );
        o.scale = Some(Scale::TimedOut {
            replicas: 3,
            unconfirmed: members(&[2]),
        });
        let p = status(None, &o, at(0));
        let c = find(&p, "Progressing");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "RingPropagationTimedOut")
        );
    }

    #[test]
    fn failure_only_touches_degraded() {
        let ready = members(&[0, 1, 2]);
        let ring = RingInForce {
            members: members(&[0, 1, 2]),
            hash: "abc".into(),
            changed_at: None,
        };
        let ok = status(None, &observed(&ready, Some(&ring)), at(0));
        let bad = failed(Some(&ok), Some(2), "boom".into(), at(1));
        let d = find(&bad, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            ("True", "ReconcileFailed", "boom")
        );
        assert_eq!(find(&bad, "Available"), find(&ok, "Available"));
        assert_eq!(bad.ring, ok.ring);
    }
}
