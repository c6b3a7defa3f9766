//! Decoded batches kept between requests, so a request decodes into the arrays and body buffer
//! of an earlier one instead of faulting in and zeroing fresh pages (a 10,000-sample request
//! fills about 6 MB).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::WriteBatch;

/// A pool nobody took from for this long lets its batches go ([`BatchPool::release_idle`]): an
/// idle receiver holds only its series. Under load a request comes every few milliseconds.
pub const IDLE_RELEASE: Duration = Duration::from_millis(250);

/// Largest batch kept: one of 10,000 12-label samples, Prometheus' default request, retains
/// about 6 MB.
const MAX_POOLED_BATCH: usize = 16 << 20;
/// Most memory the pool keeps between requests: a burst of huge requests must not pin its
/// memory forever.
const MAX_POOLED_BYTES: usize = 64 << 20;

/// A bounded stack of batches done with.
#[derive(Default)]
pub struct BatchPool(Mutex<Pooled>);

#[derive(Default)]
struct Pooled {
    batches: Vec<WriteBatch>,
    bytes: usize,
    last_take: Option<Instant>,
}

impl BatchPool {
    /// A batch to decode into: a kept one, or a new one.
    pub fn take(&self) -> WriteBatch {
        let mut pool = self.0.lock();
        pool.last_take = Some(Instant::now());
        match pool.batches.pop() {
            Some(batch) => {
                pool.bytes -= batch.retained_bytes();
                batch
            }
            None => WriteBatch::default(),
        }
    }

    /// A buffer to put a request body in: the body buffer of a kept batch, which stays kept
    /// without it, or a new one. Its bytes are stale, not zeroed.
    pub fn take_body(&self) -> Vec<u8> {
        let mut pool = self.0.lock();
        let Pooled {
            batches,
            bytes,
            last_take,
        } = &mut *pool;
        *last_take = Some(Instant::now());
        match batches.iter_mut().rev().find(|b| b.body_capacity() > 0) {
            Some(batch) => {
                let body = batch.take_body();
                *bytes -= body.capacity();
                body
            }
            None => Vec::new(),
        }
    }

    /// Drops every kept batch if none was taken for `idle`; returns the bytes let go.
    pub fn release_idle(&self, idle: Duration) -> usize {
        let released = {
            let mut pool = self.0.lock();
            if pool.last_take.is_some_and(|t| t.elapsed() < idle) {
                return 0;
            }
            pool.bytes = 0;
            std::mem::take(&mut pool.batches)
        };
        released.iter().map(WriteBatch::retained_bytes).sum()
    }

    /// Keeps `batch` for a later request, unless it or the pool is too large.
    pub fn give(&self, batch: WriteBatch) {
        let size = batch.retained_bytes();
        if size > MAX_POOLED_BATCH {
            return;
        }
        let mut pool = self.0.lock();
        if pool.bytes + size <= MAX_POOLED_BYTES {
            pool.bytes += size;
            pool.batches.push(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;
    use crate::wire::messages::{snappy, v1};

    fn decoded(series: usize) -> WriteBatch {
        let body = snappy(&v1::WriteRequest {
            timeseries: (0..series)
                .map(|i| v1::series(&[("i", &i.to_string())], &[(1, 1.0)]))
                .collect(),
            metadata: vec![],
        });
        let mut b = WriteBatch::default();
        b.decompress(&body, usize::MAX).unwrap();
        b.decode(Protocol::V1).unwrap();
        b
    }

    #[test]
    fn kept_batches_come_back_with_their_memory() {
        let pool = BatchPool::default();
        let batch = decoded(100);
        let retained = batch.retained_bytes();
        pool.give(batch);
        assert_eq!(pool.0.lock().bytes, retained);
        let body = pool.take_body();
        assert!(body.capacity() > 0);
        // The batch stays kept without its body, and no second body is there to take.
        assert_eq!(pool.0.lock().bytes, retained - body.capacity());
        assert_eq!(pool.take_body().capacity(), 0);
        let again = pool.take();
        assert_eq!(again.body_capacity(), 0);
        assert!(again.retained_bytes() > 0);
        assert_eq!(pool.0.lock().bytes, 0);
        // Empty: new ones.
        assert_eq!(pool.take().retained_bytes(), 0);
    }

    #[test]
    fn an_idle_pool_lets_its_batches_go() {
        let pool = BatchPool::default();
        pool.give(decoded(10));
        let taken = pool.take();
        pool.give(taken);
        // Just taken from: kept.
        assert_eq!(pool.release_idle(Duration::from_secs(60)), 0);
        assert_eq!(pool.0.lock().batches.len(), 1);
        let kept = pool.0.lock().bytes;
        assert_eq!(pool.release_idle(Duration::ZERO), kept);
        assert!(pool.0.lock().batches.is_empty());
        assert_eq!(pool.0.lock().bytes, 0);
    }

    #[test]
    fn the_pool_keeps_a_bounded_amount() {
        let pool = BatchPool::default();
        let mut huge = WriteBatch::default();
        huge.set_body(vec![0; MAX_POOLED_BATCH + 1]);
        pool.give(huge);
        assert!(pool.0.lock().batches.is_empty());
        let mut given = 0;
        for _ in 0..(MAX_POOLED_BYTES / MAX_POOLED_BATCH + 2) {
            let mut b = WriteBatch::default();
            b.set_body(vec![0; MAX_POOLED_BATCH]);
            given += 1;
            pool.give(b);
        }
        let kept = pool.0.lock().batches.len();
        assert!(kept < given && kept * MAX_POOLED_BATCH <= MAX_POOLED_BYTES);
    }
}
