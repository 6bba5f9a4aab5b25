//! Rate limits: a token bucket per connection (or per token subject over
//! HTTP), counting the work a push costs the hub, not only its ops.

use std::time::Instant;

use gaesup_state_core::MAX_STATE_BYTES;

/// Bytes of a key's state that count as one more op against the rate
/// limit, for each op on that key the core applies (or tries to).
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

/// The most one op costs ([`op_cost`] of a state at its limit, with room
/// for the schema around it).
pub const MAX_OP_COST: usize = 1 + (MAX_STATE_BYTES + 1024) / WORK_UNIT_BYTES;

/// What one op the core applies (or tries) costs, on a key whose state took
/// `stored` bytes when last written (see [`WORK_UNIT_BYTES`]).
pub fn op_cost(stored: usize) -> usize {
    (1 + stored / WORK_UNIT_BYTES).min(MAX_OP_COST)
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

    /// Sets aside what the bucket holds, in whole ops, at most `most`, for
    /// a push about to be handled: its budget (0: not one op's worth, the
    /// push is refused). What the push did not spend goes back with
    /// [`refund`](Self::refund). Pushes handled at once (over HTTP, one
    /// token subject's) share what the bucket holds rather than each
    /// spending all of it.
    pub fn reserve(&mut self, most: usize) -> usize {
        self.reserve_at(most, Instant::now())
    }

    fn reserve_at(&mut self, most: usize, now: Instant) -> usize {
        self.refill(now);
        // At most two seconds of a u32 rate, and not negative: the cast is
        // exact.
        let whole = self.tokens.floor().max(0.0) as usize;
        let reserved = whole.min(most);
        // Counts this small are exact in an f64.
        self.tokens -= reserved as f64;
        reserved
    }

    /// Gives back `n` ops' worth set aside by [`reserve`](Self::reserve)
    /// and not spent.
    pub fn refund(&mut self, n: usize) {
        self.refund_at(n, Instant::now());
    }

    fn refund_at(&mut self, n: usize, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + n as f64).min(self.rate * 2.0);
    }

    /// Adds what the time since the last call earned, up to two seconds'
    /// worth.
    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate * 2.0);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_two_seconds_worth_is_refused() {
        let mut bucket = Bucket::new(10);
        let start = bucket.last;
        assert_eq!(bucket.reserve_at(20, start), 20);
        assert_eq!(
            bucket.reserve_at(1, start),
            0,
            "the burst emptied the bucket"
        );
        let later = start + std::time::Duration::from_millis(500);
        assert_eq!(bucket.reserve_at(8, later), 5, "half a second refills five");
        assert_eq!(bucket.reserve_at(1, later), 0);
        let much_later = later + std::time::Duration::from_secs(60);
        assert_eq!(
            bucket.reserve_at(100, much_later),
            20,
            "full again, not more"
        );
    }

    #[test]
    fn what_a_push_did_not_spend_goes_back() {
        let mut bucket = Bucket::new(10);
        let start = bucket.last;
        assert_eq!(bucket.reserve_at(15, start), 15);
        // Two pushes at once share the bucket: the second gets the rest.
        assert_eq!(bucket.reserve_at(15, start), 5);
        bucket.refund_at(12, start);
        bucket.refund_at(0, start);
        assert_eq!(bucket.reserve_at(100, start), 12);
        // A refund never fills the bucket past two seconds' worth.
        let later = start + std::time::Duration::from_secs(3);
        bucket.refund_at(12, later);
        assert_eq!(bucket.reserve_at(100, later), 20);
    }

    #[test]
    fn an_op_costs_one_and_one_more_per_16_kib_of_state() {
        assert_eq!(op_cost(0), 1);
        assert_eq!(op_cost(WORK_UNIT_BYTES - 1), 1);
        assert_eq!(op_cost(WORK_UNIT_BYTES), 2);
        assert_eq!(op_cost(800 << 10), 51);
        assert_eq!(op_cost(MAX_STATE_BYTES), 57);
        assert_eq!(MAX_OP_COST, 57);
        assert_eq!(
            op_cost(usize::MAX),
            MAX_OP_COST,
            "a stored state past the limit"
        );
    }
}
