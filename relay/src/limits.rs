//! Rate limits: a token bucket per token subject ([`Budgets`]), shared by
//! all its WebSocket connections and HTTP pushes on a node, counting the
//! work a push costs the hub, not only its ops.
//!
//! A push takes one op's worth per op before the hub sees it (refused
//! whole if the bucket holds less). The hub then draws, for each op the
//! core applies or tries, [`extra_cost`] more from the same bucket, right
//! before the core takes the op; an op it cannot draw for is refused as
//! rate limited, and so are the push's later ops in that attempt. The
//! device sends them again later, fewer at a time while some are refused
//! (`gaesup_protocol::Link`). The size an op is charged for is the key's
//! stored state as the hub last measured it (committed, loaded, or
//! measured again when the count below would charge more), grown by
//! [`Op::growth_bound`](gaesup_state_core::Op::growth_bound) of each op
//! applied since, never past [`MAX_STORED_BYTES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gaesup_state_core::MAX_STATE_BYTES;

/// Bytes of a key's state that count as one more op against the rate
/// limit, for each op on that key the core applies or tries.
///
/// The hub's work for an op grows with the key's state: applying it to a
/// merge key builds the key's whole value for its ack, near the state's
/// size limit the op is tried on a copy of the state measured whole, and
/// every commit writes the whole state of each key it changed (`cargo bench
/// -p gaesup-state-core`: a small patch to a merge key of 800 KiB costs
/// about 90 µs to apply, 400 µs within a few hundred bytes of the limit,
/// against a few µs for a small key). Counted by ops alone, one subject's
/// 2,000 such ops a second would keep the hub busy. An op on a key whose
/// state takes S bytes counts as 1 + S / 16 KiB instead: 57 at the state
/// limit (896 KiB).
pub const WORK_UNIT_BYTES: usize = 16 << 10;

/// What an op the core applies or tries costs past its one op's worth, on
/// a key whose state takes `stored` bytes (see [`WORK_UNIT_BYTES`]).
pub fn extra_cost(stored: usize) -> usize {
    stored / WORK_UNIT_BYTES
}

/// The most a key's stored state takes: the state limit, with room for the
/// schema around it. Counted sizes stop there, so an op costs at most 57.
pub const MAX_STORED_BYTES: usize = MAX_STATE_BYTES + 1024;

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
    /// key of any size goes in at last, however low the rate, once the
    /// subject's other pushes leave the bucket time to fill.
    pub fn draw(&mut self, extra: usize) -> bool {
        self.draw_at(extra, Instant::now())
    }

    fn draw_at(&mut self, extra: usize, now: Instant) -> bool {
        // A u32 rate, not negative: the cast is exact.
        let second = self.rate as usize;
        self.take_at(extra.min(second), now)
    }

    /// Whether the bucket has filled up again by `now`: a new one would
    /// hold as much, so forgetting it gives nobody more.
    fn is_full_at(&self, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens + refill >= self.rate * 2.0
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

    /// Whether nobody but the caller holds it (no connection, no push in
    /// flight) and it has filled up again by `now`.
    fn is_idle_at(&self, now: Instant) -> bool {
        Arc::strong_count(&self.0) == 1
            && self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_full_at(now)
    }
}

/// The rate budget of each token subject on this node: one
/// [`SharedBucket`] per subject, which every WebSocket connection of that
/// subject and every HTTP push of it draws from. A peer holding one token
/// gets no more ops a second by opening more connections, or new ones:
/// the bucket is the subject's, not the connection's, and a new
/// connection finds it as the last one left it.
///
/// A subject's bucket is forgotten only once nothing holds it (no live
/// connection, no push in the hub) and it has filled up again, when a new
/// one would be the same. A new subject sweeps the map once it holds
/// twice what the last sweep kept (and at least 1,024), so it
/// never holds more than the subjects seen, nor more than about twice
/// those held or refilling at the last sweep: sweeps cost each new
/// subject a constant share of the work.
#[derive(Debug)]
pub struct Budgets {
    rate: u32,
    held: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    buckets: HashMap<String, SharedBucket>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

/// The fewest subjects held before a sweep.
const SWEEP_FLOOR: usize = 1024;

impl Budgets {
    /// No subject yet; each starts with a full bucket for `rate` ops a
    /// second.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            held: Mutex::new(Held {
                buckets: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
        }
    }

    /// The bucket of token subject `sub`, full if it is new.
    pub fn of(&self, sub: &str) -> SharedBucket {
        self.of_at(sub, Instant::now())
    }

    fn of_at(&self, sub: &str, now: Instant) -> SharedBucket {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = held.buckets.get(sub) {
            return bucket.clone();
        }
        if held.buckets.len() >= held.sweep_at {
            held.buckets.retain(|_, bucket| !bucket.is_idle_at(now));
            held.sweep_at = held.buckets.len().saturating_mul(2).max(SWEEP_FLOOR);
        }
        let bucket = SharedBucket::new(self.rate);
        held.buckets.insert(sub.to_owned(), bucket.clone());
        bucket
    }

    /// How many subjects' buckets are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_has_one_budget_however_many_connections_it_opens() {
        // One op a second: a second to take one op again, far longer than
        // this test takes.
        let budgets = Budgets::new(1);
        let first = budgets.of("mallory");
        assert!(first.take(2), "a new subject's full bucket");
        // A second connection (or an HTTP push) of the same subject, and a
        // connection opened after the first closed: the same, empty bucket.
        let second = budgets.of("mallory");
        assert!(!second.take(1));
        drop((first, second));
        assert!(
            !budgets.of("mallory").take(1),
            "a new connection starts empty"
        );
        // Another subject has its own.
        assert!(budgets.of("alice").take(2));
    }

    #[test]
    fn a_sweep_forgets_only_buckets_nobody_holds_that_filled_up_again() {
        // One op a second: "spent", emptied, takes two seconds to fill up
        // again, far longer than this test takes.
        let budgets = Budgets::new(1);
        let held = budgets.of("held");
        assert!(budgets.of("spent").take(2));
        drop(budgets.of("full"));
        for n in 3..SWEEP_FLOOR {
            drop(budgets.of(&format!("s{n}")));
        }
        assert_eq!(budgets.len(), SWEEP_FLOOR, "no sweep below the floor");
        // The next new subject sweeps: kept are the bucket a connection
        // holds and the one still filling up; the full ones nobody holds
        // are forgotten.
        let later = Instant::now() + std::time::Duration::from_millis(50);
        drop(budgets.of_at("last", later));
        assert_eq!(budgets.len(), 3, "held, spent and the new one");
        assert!(!budgets.of("spent").take(1), "the spent one kept its debt");
        // The next sweep waits until the map has reached the floor again.
        for n in 3..SWEEP_FLOOR {
            drop(budgets.of(&format!("t{n}")));
        }
        assert_eq!(budgets.len(), SWEEP_FLOOR);
        drop(budgets.of("next"));
        assert_eq!(budgets.len(), 3, "held, spent and the new one");
        drop(held);
    }

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

    /// `Op::growth_bound` against what ops really add to a stored state: a
    /// merge patch of many tiny fields (each kept with its stamp, id and
    /// writer), a counter's slot per tab, a whole value.
    #[test]
    fn the_growth_bound_covers_what_an_op_adds_to_the_state() {
        use gaesup_state_core::{
            Lifetime, ManualClock, Replica, Scope, SharedKey, Strategy, TabId, UnitAddress,
        };
        use serde_json::{Map, Value, json};

        let writer: UnitAddress = "main/a-rather-long-building-name/and-a-long-unit-name"
            .parse()
            .unwrap();
        let key = |name: &str, strategy| {
            let default = if strategy == Strategy::Sum {
                json!(0)
            } else {
                json!({})
            };
            SharedKey::<Value>::builder_with_default(name, default)
                .scope(Scope::Apartment)
                .lifetime(Lifetime::Persistent)
                .strategy(strategy)
                .build()
                .unwrap()
        };
        let (merge, sum, whole) = (
            key("merge", Strategy::Merge),
            key("sum", Strategy::Sum),
            key("whole", Strategy::LastWriteWins),
        );
        let mut relay = Replica::new(TabId::new(1), ManualClock::new(1_000));
        for declared in [&merge, &sum, &whole] {
            relay.declare(declared).unwrap();
        }
        let stored = |replica: &Replica, key: &SharedKey<Value>| {
            let full = key.full_key(&"main/b/u".parse().unwrap());
            replica
                .state(&full)
                .map_or(0, |state| serde_json::to_string(state).unwrap().len())
        };
        let mut ops = Vec::new();
        for tab in 2..6 {
            let mut device = Replica::new(TabId::new(tab), ManualClock::new(1_000 + tab));
            for declared in [&merge, &sum, &whole] {
                device.declare(declared).unwrap();
            }
            let fields: Map<String, Value> = (0..1024)
                .map(|i| (format!("{tab}{i}"), Value::from(i % 10)))
                .collect();
            ops.push(
                device
                    .set(&writer, &merge, Value::Object(fields))
                    .unwrap()
                    .op,
            );
            ops.push(device.increment(&writer, &sum, 1).unwrap().op);
            ops.push(
                device
                    .set(&writer, &whole, json!("x".repeat(500)))
                    .unwrap()
                    .op,
            );
        }
        for op in ops {
            let declared = [&merge, &sum, &whole]
                .into_iter()
                .find(|k| k.full_key(&"main/b/u".parse().unwrap()) == op.key)
                .unwrap();
            let before = stored(&relay, declared);
            relay.apply_remote(&op).unwrap();
            let added = stored(&relay, declared).saturating_sub(before);
            let body = serde_json::to_string(&op).unwrap().len();
            assert!(
                op.growth_bound(body) >= added,
                "{:?}: bound {} < {added} added",
                op.key,
                op.growth_bound(body)
            );
        }
    }

    #[test]
    fn an_op_costs_one_more_per_16_kib_of_state() {
        assert_eq!(extra_cost(0), 0);
        assert_eq!(extra_cost(WORK_UNIT_BYTES - 1), 0);
        assert_eq!(extra_cost(WORK_UNIT_BYTES), 1);
        assert_eq!(extra_cost(800 << 10), 50);
        assert_eq!(extra_cost(MAX_STATE_BYTES), 56);
        assert_eq!(extra_cost(MAX_STORED_BYTES), 56, "an op costs at most 57");
    }
}
