//! Rate limits: a token bucket per connection (or per token subject over
//! HTTP), counting the work a push costs the hub, not only its ops.
//!
//! A push takes one op's worth per op before the hub sees it (refused
//! whole if the bucket holds less). The hub then draws, for each op the
//! core applies or tries, [`extra_cost`] more from the same bucket, right
//! before the core takes the op; an op it cannot draw for is refused as
//! rate limited, with the rest of its push, and the device sends them
//! again later.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Bytes of a key's state that count as one more op against the rate
/// limit, for each op on that key the core applies or tries.
///
/// The hub's work for an op grows with the key's state: applying it to a
/// merge key builds the key's whole value for its ack, near the state's
/// size limit the op is tried on a copy of the state measured whole, and
/// every commit writes the whole state of each key it changed (`cargo bench
/// -p gaesup-state-core`: a small patch to a merge key of 800 KiB costs
/// about 90 µs to apply, 400 µs within a few hundred bytes of the limit,
/// against a few µs for a small key). Counted by ops alone, one connection's
/// 2,000 such ops a second would keep the hub busy. An op on a key whose
/// state takes S bytes counts as 1 + S / 16 KiB instead: 57 at the state
/// limit (896 KiB).
pub const WORK_UNIT_BYTES: usize = 16 << 10;

/// What an op the core applies or tries costs past its one op's worth, on
/// a key whose state takes `stored` bytes (see [`WORK_UNIT_BYTES`]).
pub fn extra_cost(stored: usize) -> usize {
    stored / WORK_UNIT_BYTES
}

/// Allows `rate` ops' worth per second on average, bursts of up to two
/// seconds' worth.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `rate` ops per second.
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    /// Takes `n` ops' worth if there is enough; `false` (and takes nothing)
    /// otherwise.
    pub fn take(&mut self, n: usize) -> bool {
        self.take_at(n, Instant::now())
    }

    /// [`take`](Self::take) at the instant `now`.
    fn take_at(&mut self, n: usize, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate * 2.0);
        self.last = now;
        // Counts are small (bounded by the ops per push, or by one second's
        // worth): the cast is exact.
        let n = n as f64;
        if n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
    }

    /// Takes an op's `extra` cost, at most one second's worth: a bucket
    /// whose push took at most a second's worth of ops (what a device
    /// sends at once) holds that much once it has filled, so an op on a
    /// key of any size goes in at last, however low the rate.
    pub fn draw(&mut self, extra: usize) -> bool {
        self.draw_at(extra, Instant::now())
    }

    fn draw_at(&mut self, extra: usize, now: Instant) -> bool {
        // A u32 rate, not negative: the cast is exact.
        let second = self.rate as usize;
        self.take_at(extra.min(second), now)
    }
}

/// A [`Bucket`] the endpoint and the hub both draw from: the endpoint an
/// op's worth per op of a push, the hub the [`extra_cost`] of each.
#[derive(Debug, Clone)]
pub struct SharedBucket(Arc<Mutex<Bucket>>);

impl SharedBucket {
    /// A full bucket for `rate` ops per second.
    pub fn new(rate: u32) -> Self {
        Self(Arc::new(Mutex::new(Bucket::new(rate))))
    }

    /// [`Bucket::take`].
    pub fn take(&self, n: usize) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(n)
    }

    /// [`Bucket::draw`].
    pub fn draw(&self, extra: usize) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .draw(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_two_seconds_worth_is_refused() {
        let mut bucket = Bucket::new(10);
        let start = bucket.last;
        assert!(bucket.take_at(20, start));
        assert!(!bucket.take_at(1, start), "the burst emptied the bucket");
        let later = start + std::time::Duration::from_millis(500);
        assert!(bucket.take_at(5, later), "half a second refills five");
        assert!(!bucket.take_at(1, later));
        let much_later = later + std::time::Duration::from_secs(60);
        assert!(bucket.take_at(20, much_later), "full again, not more");
        assert!(!bucket.take_at(1, much_later));
    }

    #[test]
    fn an_op_s_extra_cost_is_drawn_up_to_one_second_s_worth() {
        let mut bucket = Bucket::new(10);
        let start = bucket.last;
        assert!(bucket.take_at(3, start), "the push's three ops");
        // An op on a key of 800 KiB costs 50 more: a second's worth (10).
        assert!(bucket.draw_at(extra_cost(800 << 10), start));
        assert!(bucket.draw_at(4, start));
        assert!(
            !bucket.draw_at(4, start),
            "three left: refused, nothing taken"
        );
        assert!(bucket.draw_at(3, start));
        assert!(
            bucket.draw_at(0, start),
            "a small key's op costs nothing more"
        );
    }

    #[test]
    fn an_op_costs_one_more_per_16_kib_of_state() {
        assert_eq!(extra_cost(0), 0);
        assert_eq!(extra_cost(WORK_UNIT_BYTES - 1), 0);
        assert_eq!(extra_cost(WORK_UNIT_BYTES), 1);
        assert_eq!(extra_cost(800 << 10), 50);
        assert_eq!(extra_cost(gaesup_state_core::MAX_STATE_BYTES), 56);
    }
}
