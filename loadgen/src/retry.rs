//! Prometheus' remote-write retry policy: retry 5xx, 429 and transport errors with exponential
//! backoff from `min_backoff` (30 ms) doubling up to `max_backoff` (5 s); never retry other 4xx.

use std::time::Duration;

/// What to do with the answer to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the samples are stored.
    Done,
    /// 4xx other than 429: the request can never succeed, drop it.
    Drop,
    /// 5xx, 429 or no answer: send the same request again after a backoff.
    Retry,
}

/// Classifies an attempt by its status code; `None` means no answer (connection error, timeout).
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Done,
        Some(429) | Some(500..) | None => Verdict::Retry,
        Some(_) => Verdict::Drop,
    }
}

/// Exponential backoff state of one request.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Prometheus' defaults: 30 ms doubling up to 5 s.
    pub fn prometheus() -> Backoff {
        Backoff::new(Duration::from_millis(30), Duration::from_secs(5))
    }

    /// Backoff starting at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { next: min, max }
    }

    /// How long to wait before the next attempt; a server's `Retry-After` wins, capped at `max`
    /// as Prometheus does.
    pub fn delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let d = retry_after.unwrap_or(self.next).min(self.max);
        self.next = (self.next * 2).min(self.max);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_5xx_429_and_transport_errors_only() {
        assert_eq!(verdict(Some(200)), Verdict::Done);
        assert_eq!(verdict(Some(204)), Verdict::Done);
        assert_eq!(verdict(Some(400)), Verdict::Drop);
        assert_eq!(verdict(Some(409)), Verdict::Drop);
        assert_eq!(verdict(Some(413)), Verdict::Drop);
        assert_eq!(verdict(Some(429)), Verdict::Retry);
        assert_eq!(verdict(Some(500)), Verdict::Retry);
        assert_eq!(verdict(Some(503)), Verdict::Retry);
        assert_eq!(verdict(None), Verdict::Retry);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_honours_retry_after() {
        let mut b = Backoff::prometheus();
        let ms: Vec<u128> = (0..10).map(|_| b.delay(None).as_millis()).collect();
        assert_eq!(ms, [30, 60, 120, 240, 480, 960, 1920, 3840, 5000, 5000]);
        let mut b = Backoff::prometheus();
        assert_eq!(
            b.delay(Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            b.delay(Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
        assert_eq!(b.delay(None), Duration::from_millis(120));
    }
}
