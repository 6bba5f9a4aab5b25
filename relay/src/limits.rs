//! Rate limits: a token bucket per connection (or per token subject over
//! HTTP).

use std::time::Instant;

/// Allows `rate` ops per second on average, bursts of up to two seconds'
/// worth.
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
        // Counts are small (bounded by the ops per push): the cast is exact.
        let n = n as f64;
        if n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
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
}
