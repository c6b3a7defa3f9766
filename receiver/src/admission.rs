//! How much remote-write work a receiver takes on at once. A request past the bounds waits in
//! line (first come, first served) with its body read but not yet decoded. Without a bound an
//! overloaded ring works on every request at once, each one slows until its forwards pass the
//! forward timeout, and the senders' retries of those 503s add to the load that caused them.
//!
//! Two bounds: the decoded bytes of the requests being worked on (`--receive.max-inflight-write-bytes`,
//! by default [`AUTO_BYTES_PER_CPU`] per CPU on a receiver with a hashring, as VictoriaMetrics
//! bounds its concurrent inserts by CPUs) and Thanos' `write.global.max_concurrency` (requests). Forwards from peers are not
//! bounded here: each is the rest of a request a peer has already taken on.

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Decoded bytes in flight per CPU when `--receive.max-inflight-write-bytes` is `auto`.
pub const AUTO_BYTES_PER_CPU: u64 = 16 << 20;

/// The byte budget is counted in KiB permits (a semaphore holds at most `u32::MAX` in one take).
const PERMIT_BYTES: u64 = 1 << 10;

/// The write admission bounds of one receiver.
pub struct Admission {
    /// Budget of decoded bytes, in KiB permits, and its size.
    bytes: Option<(Semaphore, u32)>,
    /// Thanos' bound on concurrent requests.
    requests: Option<Semaphore>,
    /// Requests waiting in line.
    waiting: Gauge,
}

/// A request's place among those being worked on, given back when dropped.
pub struct Admitted<'a> {
    _bytes: Option<SemaphorePermit<'a>>,
    _request: Option<SemaphorePermit<'a>>,
}

/// Decrements the waiting gauge however the wait ends (admitted, or the client went away).
struct Waiting<'a>(&'a Gauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Admission {
    /// Bounds of `inflight_bytes` decoded bytes and `max_concurrency` requests (0: no bound).
    pub fn new(inflight_bytes: u64, max_concurrency: u64, waiting: Gauge) -> Self {
        let permits = inflight_bytes.div_ceil(PERMIT_BYTES).min(u32::MAX as u64) as u32;
        Admission {
            bytes: (permits > 0).then(|| (Semaphore::new(permits as usize), permits)),
            requests: (max_concurrency > 0).then(|| Semaphore::new(max_concurrency as usize)),
            waiting,
        }
    }

    /// Waits until a request of `decoded_len` bytes fits under both bounds.
    pub async fn admit(&self, decoded_len: usize) -> Admitted<'_> {
        let bytes = self
            .bytes
            .as_ref()
            .map(|(s, budget)| (s, weight(decoded_len, *budget)));
        let free = |s: &Semaphore, n: u32| s.available_permits() >= n as usize;
        let fits = bytes.is_none_or(|(s, n)| free(s, n))
            && self.requests.as_ref().is_none_or(|s| free(s, 1));
        let _waiting = (!fits).then(|| {
            self.waiting.inc();
            Waiting(&self.waiting)
        });
        let bytes = match bytes {
            Some((s, n)) => Some(
                s.acquire_many(n)
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        let request = match &self.requests {
            Some(s) => Some(s.acquire().await.expect("the semaphore is never closed")),
            None => None,
        };
        Admitted {
            _bytes: bytes,
            _request: request,
        }
    }
}

/// The `--receive.max-inflight-write-bytes` budget: `auto` resolves to [`AUTO_BYTES_PER_CPU`]
/// per CPU the process may use on a receiver that `routes` (has a hashring), and to no bound on
/// one that only ingests: it has no forward to time out, so queueing would only add latency.
pub fn resolve_budget(configured: Option<u64>, cpus: usize, routes: bool) -> u64 {
    match configured {
        Some(bytes) => bytes,
        None if routes => AUTO_BYTES_PER_CPU * cpus.max(1) as u64,
        None => 0,
    }
}

/// KiB permits a request of `decoded_len` bytes takes from a budget of `budget` permits: at least
/// one, and at most the whole budget, so a request larger than the budget runs alone.
fn weight(decoded_len: usize, budget: u32) -> u32 {
    (decoded_len as u64)
        .div_ceil(PERMIT_BYTES)
        .clamp(1, budget as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn weights_are_kib_between_one_permit_and_the_whole_budget() {
        assert_eq!(weight(0, 100), 1);
        assert_eq!(weight(1, 100), 1);
        assert_eq!(weight(1024, 100), 1);
        assert_eq!(weight(1025, 100), 2);
        assert_eq!(weight(10 << 20, 100), 100);
        assert_eq!(weight(usize::MAX, u32::MAX), u32::MAX);
    }

    #[test]
    fn auto_is_sixteen_mib_per_cpu_on_a_router_and_zero_stays_unbounded() {
        assert_eq!(resolve_budget(None, 2, true), 32 << 20);
        assert_eq!(resolve_budget(None, 0, true), 16 << 20);
        assert_eq!(resolve_budget(None, 2, false), 0);
        assert_eq!(resolve_budget(Some(0), 8, true), 0);
        assert_eq!(resolve_budget(Some(5 << 20), 8, false), 5 << 20);
        let a = Admission::new(0, 0, Gauge::default());
        assert!(a.bytes.is_none() && a.requests.is_none());
    }

    /// Asserts that `admit` is still waiting 50 ms on.
    async fn still_waiting<F: std::future::Future + Unpin>(admit: &mut F) {
        assert!(
            tokio::time::timeout(Duration::from_millis(50), admit)
                .await
                .is_err(),
            "admitted while the bounds were full"
        );
    }

    #[tokio::test]
    async fn requests_past_the_byte_budget_wait_in_line_and_are_counted() {
        let waiting = Gauge::default();
        let admission = Admission::new(3 << 20, 0, waiting.clone());
        let first = admission.admit(2 << 20).await;
        let second = admission.admit(1 << 20).await;
        assert_eq!(waiting.get(), 0);
        // Full: the next one waits until a request in flight is done.
        let mut third = Box::pin(admission.admit(1 << 20));
        still_waiting(&mut third).await;
        assert_eq!(waiting.get(), 1);
        drop(second);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("admitted once bytes were given back");
        assert_eq!(waiting.get(), 0);
        // Larger than the whole budget: it waits for everything in flight, then runs alone.
        let mut huge = Box::pin(admission.admit(100 << 20));
        still_waiting(&mut huge).await;
        drop(first);
        drop(third);
        let _huge = tokio::time::timeout(Duration::from_secs(5), huge)
            .await
            .expect("admitted once nothing else was in flight");
    }

    #[tokio::test]
    async fn a_client_that_leaves_while_waiting_is_no_longer_counted() {
        let waiting = Gauge::default();
        let admission = Admission::new(0, 1, waiting.clone());
        let held = admission.admit(10).await;
        let mut queued = Box::pin(admission.admit(10));
        still_waiting(&mut queued).await;
        assert_eq!(waiting.get(), 1);
        drop(queued);
        assert_eq!(waiting.get(), 0);
        drop(held);
        let _next = tokio::time::timeout(Duration::from_secs(5), admission.admit(10))
            .await
            .expect("the request bound was given back");
    }
}
