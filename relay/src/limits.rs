//! Rate limits: a token bucket per connection (or per token subject over
//! HTTP), counting the work a push cost, not only its ops.

use std::time::Instant;

/// Bytes of answer (or of state measured to refuse an op) that count as one
/// more op against the rate limit.
///
/// The hub's work for an op grows with the key's state: applying it to a
/// merge key builds the key's whole value for its ack, and near the state's
/// size limit the op is tried on a copy of the state measured whole
/// (`cargo bench -p gaesup-state-core`: a small patch to a merge key of
/// 800 KiB costs about 90 µs, 400 µs within a few hundred bytes of the
/// limit, against a few µs for a small key). Counted by ops alone, one
/// connection's 2,000 such ops a second would keep the hub busy. An op on a
/// state of S bytes counts as about 1 + S / 16 KiB ops instead: at the
/// state limit (896 KiB) 57, so the same connection gets about 35 a second.
pub const WORK_UNIT_BYTES: usize = 16 << 10;

/// What a push cost, in ops: each op once, and once more per
/// [`WORK_UNIT_BYTES`] of its ack (`ack_lens`, serialized: an applied op's
/// ack carries the key's value) and of the states the core measured to
/// refuse ops past the size limit (`measured`, from the hub: their acks are
/// short, the work was not).
pub fn push_cost(ack_lens: impl IntoIterator<Item = usize>, measured: usize) -> usize {
    let acks: usize = ack_lens
        .into_iter()
        .map(|len| 1 + len / WORK_UNIT_BYTES)
        .fold(0, usize::saturating_add);
    acks.saturating_add(measured / WORK_UNIT_BYTES)
}

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
        self.refill(now);
        // Counts are small (bounded by the ops per push): the cast is exact.
        let n = n as f64;
        if n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
    }

    /// Adds what the time since the last call earned, up to two seconds'
    /// worth.
    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate * 2.0);
        self.last = now;
    }

    /// Takes `n` more ops' worth, after the fact (what a push turned out to
    /// cost past the ops [`take`](Self::take) took for it), even below
    /// empty: the debt refuses the next pushes until time repays it. A push
    /// is admitted only while the bucket holds its ops, so a debt is at most
    /// what the pushes admitted before their charge cost (on a WebSocket,
    /// whose pushes are handled one after another: one push).
    pub fn charge(&mut self, n: usize) {
        self.charge_at(n, Instant::now());
    }

    fn charge_at(&mut self, n: usize, now: Instant) {
        self.refill(now);
        // Bounded by one push's cost: the cast is exact.
        self.tokens -= n as f64;
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
    fn a_charge_past_empty_is_a_debt_time_repays() {
        let mut bucket = Bucket::new(10);
        let start = bucket.last;
        assert!(bucket.take_at(5, start));
        // The push took 5 and cost 35: 15 left, 30 more owed.
        bucket.charge_at(30, start);
        assert!(!bucket.take_at(1, start), "in debt");
        let later = start + std::time::Duration::from_millis(1500);
        assert!(
            !bucket.take_at(1, later),
            "1.5 s repaid 15 of the 15 owed, no more"
        );
        let later = later + std::time::Duration::from_millis(100);
        assert!(bucket.take_at(1, later), "repaid, and one op's worth back");
        assert!(!bucket.take_at(1, later));
    }

    #[test]
    fn small_acks_cost_one_op_each_and_large_ones_more() {
        assert_eq!(push_cost([], 0), 0);
        assert_eq!(push_cost([40, 200, WORK_UNIT_BYTES - 1], 0), 3);
        assert_eq!(push_cost([WORK_UNIT_BYTES], 0), 2);
        assert_eq!(push_cost([40, 800 << 10], 0), 1 + 1 + 50);
        // A refusal's ack is short; the state measured to refuse it is not.
        assert_eq!(push_cost([60], 896 << 10), 1 + 56);
    }
}
