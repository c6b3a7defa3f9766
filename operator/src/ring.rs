//! The ring policy: which receivers are in the hashring, and when leaving receivers may stop.
//!
//! Pure functions over ordinals; the reconciler reads the ring in force back from the ConfigMap
//! (never from memory), so a restarted operator decides exactly as the previous one would have.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Ordinals of the receivers in a ring; iteration order is the endpoint order.
pub type Members = BTreeSet<u32>;

/// What to do with the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingDecision {
    /// The ring in force is right.
    Keep,
    /// Write this ring.
    Write(Members),
    /// The next ring would hold fewer receivers than the replication factor: keep the ring in
    /// force (or none), as receivers reject such a ring and writes would fail everywhere.
    TooFewReceivers {
        /// The ring that would have been written.
        candidate: Members,
    },
}

/// The next ring from the ring in force, the Ready receivers and the desired size.
///
/// A receiver joins when it turns Ready and then stays until scale-down removes its ordinal:
/// dropping unready members reshuffles series onto the survivors, which overloads them and
/// cascades (thanos-receive-controller #75, #89), while RF 3 with a quorum of 2 already
/// tolerates one member down.
pub fn decide(
    current: Option<&Members>,
    ready: &Members,
    desired_replicas: u32,
    replication_factor: u32,
) -> RingDecision {
    let candidate: Members = current
        .into_iter()
        .flatten()
        .chain(ready)
        .copied()
        .filter(|&ordinal| ordinal < desired_replicas)
        .collect();
    if current == Some(&candidate) {
        RingDecision::Keep
    } else if candidate.len() < replication_factor as usize {
        RingDecision::TooFewReceivers { candidate }
    } else {
        RingDecision::Write(candidate)
    }
}

/// How many receivers the StatefulSet runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scale {
    /// Run the desired number.
    Desired(i32),
    /// Keep this many: receivers that should leave are still in the ring in force.
    HoldForRing(i32),
    /// Keep this many for at most `remaining`: some remaining receivers have not reported the new
    /// ring yet.
    HoldForPropagation {
        /// Receivers kept running.
        replicas: i32,
        /// Time until the leaving receivers stop whether or not the others confirmed.
        remaining: Duration,
        /// Remaining receivers that have not reported the new ring yet.
        unconfirmed: Members,
    },
    /// Run the desired number although these remaining receivers never reported the new ring
    /// within the propagation bound.
    TimedOut {
        /// The desired number.
        replicas: i32,
        /// Remaining receivers that did not confirm.
        unconfirmed: Members,
    },
}

impl Scale {
    /// The StatefulSet's `spec.replicas`.
    pub fn replicas(&self) -> i32 {
        match *self {
            Scale::Desired(n) | Scale::HoldForRing(n) => n,
            Scale::HoldForPropagation { replicas, .. } | Scale::TimedOut { replicas, .. } => {
                replicas
            }
        }
    }
}

/// The StatefulSet size: scale up at once; scale down only once the ring in force excludes the
/// leaving ordinals and every remaining receiver reports running it (`unconfirmed` is empty), so
/// no receiver is stopped while a peer still routes writes to it. `propagation` after the ring
/// changed, the leavers stop anyway, and the decision says which receivers never confirmed.
pub fn statefulset_scale(
    desired: i32,
    running: Option<i32>,
    ring: Option<&Members>,
    unconfirmed: &Members,
    ring_changed_at: Option<Timestamp>,
    now: Timestamp,
    propagation: Duration,
) -> Scale {
    let Some(running) = running.filter(|&running| running > desired) else {
        return Scale::Desired(desired);
    };
    let Some(ring) = ring else {
        // No ring was ever written: nobody routes to any receiver.
        return Scale::Desired(desired);
    };
    if ring.iter().any(|&ordinal| ordinal as i64 >= desired as i64) {
        return Scale::HoldForRing(running);
    }
    if unconfirmed.is_empty() {
        return Scale::Desired(desired);
    }
    let elapsed = ring_changed_at
        .map(|at| Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::MAX);
    match propagation.checked_sub(elapsed) {
        Some(remaining) if !remaining.is_zero() => Scale::HoldForPropagation {
            replicas: running,
            remaining,
            unconfirmed: unconfirmed.clone(),
        },
        _ => Scale::TimedOut {
            replicas: desired,
            unconfirmed: unconfirmed.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ordinals: &[u32]) -> Members {
        ordinals.iter().copied().collect()
    }

    /// A named scenario: ring in force, Ready pods, desired replicas, RF, expected decision.
    type Scenario = (
        &'static str,
        Option<&'static [u32]>,
        &'static [u32],
        u32,
        u32,
        RingDecision,
    );

    #[test]
    fn ring_scenarios() {
        let scenarios: [Scenario; 9] = [
            (
                "first ring waits until RF receivers are Ready",
                None,
                &[0, 1],
                3,
                3,
                RingDecision::TooFewReceivers {
                    candidate: set(&[0, 1]),
                },
            ),
            (
                "first ring once RF receivers are Ready",
                None,
                &[0, 2, 1],
                5,
                3,
                RingDecision::Write(set(&[0, 1, 2])),
            ),
            (
                "scale up with pods not yet Ready: only Ready ones join",
                Some(&[0, 1, 2]),
                &[0, 1, 2, 4],
                5,
                3,
                RingDecision::Write(set(&[0, 1, 2, 4])),
            ),
            (
                "scale up: a pod still starting changes nothing",
                Some(&[0, 1, 2]),
                &[0, 1, 2],
                5,
                3,
                RingDecision::Keep,
            ),
            (
                "a member flapping to unready stays in the ring",
                Some(&[0, 1, 2, 3]),
                &[0, 2, 3],
                4,
                3,
                RingDecision::Keep,
            ),
            (
                "scale down removes the leaving ordinals first",
                Some(&[0, 1, 2, 3, 4]),
                &[0, 1, 2, 3, 4],
                3,
                3,
                RingDecision::Write(set(&[0, 1, 2])),
            ),
            (
                "operator restart with an existing ConfigMap and no pod Ready yet keeps it",
                Some(&[0, 1, 2]),
                &[],
                3,
                3,
                RingDecision::Keep,
            ),
            (
                "RF larger than Ready pods: no ring",
                None,
                &[0, 1, 2],
                5,
                5,
                RingDecision::TooFewReceivers {
                    candidate: set(&[0, 1, 2]),
                },
            ),
            (
                "scale down below RF members never shrinks the ring under RF",
                Some(&[0, 1, 3, 4]),
                &[0, 1],
                3,
                3,
                RingDecision::TooFewReceivers {
                    candidate: set(&[0, 1]),
                },
            ),
        ];
        for (name, current, ready, desired, rf, want) in scenarios {
            let current = current.map(set);
            assert_eq!(
                decide(current.as_ref(), &set(ready), desired, rf),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_flapping_pod_never_churns_the_ring() {
        let mut ring = set(&[0, 1, 2]);
        for step in 0..10 {
            let ready = if step % 2 == 0 {
                set(&[0, 2])
            } else {
                set(&[0, 1, 2])
            };
            if let RingDecision::Write(next) = decide(Some(&ring), &ready, 3, 3) {
                ring = next;
                panic!("ring rewritten at step {step}: {ring:?}");
            }
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn scale_down_waits_for_the_ring_then_for_every_remaining_receiver_to_confirm_it() {
        let ten = Duration::from_secs(10);
        let old_ring = set(&[0, 1, 2, 3, 4]);
        let new_ring = set(&[0, 1, 2]);
        let (none, some) = (Members::new(), set(&[2]));
        assert_eq!(
            statefulset_scale(
                3,
                Some(5),
                Some(&old_ring),
                &none,
                Some(at(0)),
                at(100),
                ten
            ),
            Scale::HoldForRing(5),
            "leavers still in the ring"
        );
        assert_eq!(
            statefulset_scale(3, Some(5), Some(&new_ring), &none, Some(at(0)), at(1), ten),
            Scale::Desired(3),
            "every remaining receiver runs the new ring: no need to wait out the bound"
        );
        assert_eq!(
            statefulset_scale(3, Some(5), Some(&new_ring), &some, Some(at(0)), at(4), ten),
            Scale::HoldForPropagation {
                replicas: 5,
                remaining: Duration::from_secs(6),
                unconfirmed: some.clone()
            },
            "receiver 2 has not confirmed yet"
        );
        assert_eq!(
            statefulset_scale(3, Some(5), Some(&new_ring), &some, Some(at(0)), at(10), ten),
            Scale::TimedOut {
                replicas: 3,
                unconfirmed: some.clone()
            },
            "the bound is hit"
        );
        assert_eq!(
            statefulset_scale(3, Some(5), Some(&new_ring), &some, None, at(0), ten),
            Scale::TimedOut {
                replicas: 3,
                unconfirmed: some
            },
            "a ring whose change time is unknown is old"
        );
    }

    #[test]
    fn scale_up_and_first_creation_are_immediate() {
        let ten = Duration::from_secs(10);
        let ring = set(&[0, 1, 2]);
        assert_eq!(
            statefulset_scale(
                5,
                Some(3),
                Some(&ring),
                &Members::new(),
                Some(at(0)),
                at(0),
                ten
            ),
            Scale::Desired(5)
        );
        assert_eq!(
            statefulset_scale(3, None, None, &Members::new(), None, at(0), ten),
            Scale::Desired(3)
        );
        assert_eq!(
            statefulset_scale(3, Some(5), None, &Members::new(), None, at(0), ten),
            Scale::Desired(3)
        );
        assert_eq!(
            Scale::HoldForPropagation {
                replicas: 5,
                remaining: ten,
                unconfirmed: Members::new()
            }
            .replicas(),
            5
        );
    }
}
