//! Quorum bookkeeping for one replicated write, pure and synchronous.
//!
//! Each replica request covers a set of series and succeeds or fails as a whole. A write is
//! acknowledged once every series has `quorum` successes; it fails as soon as one series has
//! more failures than `RF - quorum` can absorb, so neither a slow nor a dead replica delays the
//! answer when the others have decided it.

/// Why a replica request failed, in decreasing order of precedence for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Not ready, unreachable, timed out: the sender should retry (503).
    Unavailable = 0,
    /// A limit says slow down (429).
    Limited = 1,
    /// Samples conflict with stored data (409).
    Conflict = 2,
    /// The request can never succeed (400).
    Invalid = 3,
    /// Anything else (500).
    Internal = 4,
}

const CLASSES: usize = 5;

/// Where a write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Waiting for more replies.
    Pending,
    /// Every series reached quorum.
    Success,
    /// Some series can no longer reach quorum, for this reason.
    Failed(Class),
}

/// Success and failure counts per series of one write.
pub struct QuorumTracker {
    quorum: u8,
    tolerated: u8,
    successes: Vec<u8>,
    failures: Vec<[u8; CLASSES]>,
    below_quorum: usize,
    failed: Option<Class>,
}

impl QuorumTracker {
    /// A tracker for `series` series written `replication_factor` times each.
    pub fn new(series: usize, replication_factor: usize) -> Self {
        let quorum = hashring::quorum(replication_factor);
        QuorumTracker {
            quorum: quorum as u8,
            tolerated: (replication_factor - quorum) as u8,
            successes: vec![0; series],
            failures: vec![[0; CLASSES]; series],
            below_quorum: series,
            failed: None,
        }
    }

    /// Records the result of a replica request that carried `series`.
    pub fn record(&mut self, series: impl IntoIterator<Item = usize>, result: Result<(), Class>) {
        for s in series {
            match result {
                Ok(()) => {
                    self.successes[s] += 1;
                    if self.successes[s] == self.quorum {
                        self.below_quorum -= 1;
                    }
                }
                Err(class) => {
                    let f = &mut self.failures[s];
                    f[class as usize] += 1;
                    let total: u8 = f.iter().sum();
                    if total > self.tolerated && self.successes[s] < self.quorum {
                        let cause = series_cause(f, self.quorum);
                        self.failed = Some(self.failed.map_or(cause, |c| c.min(cause)));
                    }
                }
            }
        }
    }

    /// The current decision.
    pub fn decision(&self) -> Decision {
        if let Some(class) = self.failed {
            Decision::Failed(class)
        } else if self.below_quorum == 0 {
            Decision::Success
        } else {
            Decision::Pending
        }
    }
}

/// A failed series' cause, as Thanos: the most frequent class if it alone reached the quorum
/// count, otherwise "unavailable" (mixed failures are worth a retry).
fn series_cause(failures: &[u8; CLASSES], quorum: u8) -> Class {
    let (idx, &max) = failures
        .iter()
        .enumerate()
        .max_by_key(|&(i, &n)| (n, std::cmp::Reverse(i)))
        .expect("non-empty");
    if max >= quorum {
        [
            Class::Unavailable,
            Class::Limited,
            Class::Conflict,
            Class::Invalid,
            Class::Internal,
        ][idx]
    } else {
        Class::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_of_three_acknowledges_without_the_third() {
        let mut t = QuorumTracker::new(2, 3);
        t.record([0, 1], Ok(()));
        assert_eq!(t.decision(), Decision::Pending);
        t.record([0], Ok(()));
        assert_eq!(t.decision(), Decision::Pending, "series 1 has one success");
        t.record([1], Ok(()));
        assert_eq!(t.decision(), Decision::Success);
    }

    #[test]
    fn one_failure_is_tolerated_two_are_not() {
        let mut t = QuorumTracker::new(1, 3);
        t.record([0], Err(Class::Unavailable));
        assert_eq!(t.decision(), Decision::Pending);
        t.record([0], Ok(()));
        t.record([0], Ok(()));
        assert_eq!(t.decision(), Decision::Success);

        let mut t = QuorumTracker::new(1, 3);
        t.record([0], Err(Class::Unavailable));
        t.record([0], Err(Class::Unavailable));
        assert_eq!(
            t.decision(),
            Decision::Failed(Class::Unavailable),
            "fails before the third reply"
        );
    }

    #[test]
    fn causes_follow_thanos() {
        let mut t = QuorumTracker::new(1, 3);
        t.record([0], Err(Class::Conflict));
        t.record([0], Err(Class::Conflict));
        assert_eq!(t.decision(), Decision::Failed(Class::Conflict));

        let mut t = QuorumTracker::new(1, 3);
        t.record([0], Err(Class::Conflict));
        t.record([0], Err(Class::Internal));
        assert_eq!(
            t.decision(),
            Decision::Failed(Class::Unavailable),
            "mixed failures are retriable"
        );
    }

    #[test]
    fn request_cause_takes_the_most_retriable_series_cause() {
        let mut t = QuorumTracker::new(2, 3);
        t.record([0, 1], Err(Class::Conflict));
        t.record([0], Err(Class::Conflict));
        t.record([1], Err(Class::Unavailable));
        assert_eq!(t.decision(), Decision::Failed(Class::Unavailable));
    }

    #[test]
    fn single_replica_and_rf_two() {
        let mut t = QuorumTracker::new(1, 1);
        t.record([0], Err(Class::Invalid));
        assert_eq!(t.decision(), Decision::Failed(Class::Invalid));
        let mut t = QuorumTracker::new(1, 2);
        t.record([0], Err(Class::Unavailable));
        assert_eq!(t.decision(), Decision::Pending, "RF=2 needs one success");
        t.record([0], Ok(()));
        assert_eq!(t.decision(), Decision::Success);
    }
}
