//! Time: the [`Clock`] trait, a [`ManualClock`] for tests, and the hybrid
//! logical clock ([`Hlc`]) that stamps every operation.
//!
//! Wall clocks of different tabs or devices disagree, and one tab can issue
//! many writes within a millisecond. A hybrid logical clock fixes both: a
//! [`Stamp`] is (wall milliseconds, counter, tab id), totally ordered in that
//! order; the counter orders writes within a millisecond, the tab id breaks
//! the remaining ties identically on every replica, and observing a remote
//! stamp pushes the local clock past it, so a write made after seeing
//! another write always wins over it even if the local wall clock is behind.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::TabId;

/// A source of wall-clock milliseconds.
///
/// The core never reads the system time itself (`SystemTime::now` panics
/// on `wasm32-unknown-unknown`); the web layer passes `Date.now()`, tests pass
/// a [`ManualClock`]. Any `Fn() -> u64` is a clock.
pub trait Clock {
    /// Milliseconds since the Unix epoch (or any fixed origin shared by all
    /// replicas).
    fn now_ms(&self) -> u64;
}

impl<F: Fn() -> u64> Clock for F {
    fn now_ms(&self) -> u64 {
        self()
    }
}

/// A clock that only moves when told to. Clones share the same time, so a
/// test can keep one handle and give the other to a replica.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Rc<Cell<u64>>);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self(Rc::new(Cell::new(now_ms)))
    }

    /// Sets the time (it may go backwards, as real clocks do).
    pub fn set(&self, now_ms: u64) {
        self.0.set(now_ms);
    }

    /// Moves the time forward.
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get().saturating_add(ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// How far ahead of local time a stamp may be and still be applied. A write
/// from a tab whose clock runs further ahead waits (see
/// [`MAX_HOLD_AHEAD_MS`]) until local time catches up, so no replica's
/// clock is ever pinned far ahead; and local stamps never run more than
/// this ahead of the local wall clock either, even after the clock was set
/// back.
pub const MAX_CLOCK_AHEAD_MS: u64 = 24 * 60 * 60 * 1000;

/// How far ahead of local time a stamp may be and still be kept for later.
/// Further ahead, it is refused with [`Error::ClockSkew`] (a forged stamp
/// at the end of time is not worth keeping).
pub const MAX_HOLD_AHEAD_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// A hybrid-logical-clock stamp. The derived order (wall, counter, tab) is
/// the total order every strategy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Stamp {
    /// Wall-clock milliseconds (the maximum seen, not necessarily local).
    pub wall_ms: u64,
    /// Orders stamps within one millisecond.
    pub counter: u32,
    /// The tab that issued the stamp; breaks the last ties.
    pub tab: TabId,
}

impl crate::decode::FromJson for Stamp {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, crate::decode::Why> {
        let mut fields = crate::decode::Fields::of(value, "a stamp")?;
        Ok(Self {
            wall_ms: fields.req("wall_ms")?,
            counter: fields.req("counter")?,
            tab: fields.req("tab")?,
        })
    }
}

crate::decode::deserialize_through_tree!(Stamp);

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.counter, self.tab)
    }
}

/// A hybrid logical clock for one tab.
///
/// It does not own a [`Clock`]: callers pass the current wall time, which
/// keeps it a plain value (cloneable, comparable, trivially testable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hlc {
    tab: TabId,
    wall_ms: u64,
    counter: u32,
}

impl Hlc {
    /// A clock for `tab` that has seen nothing yet.
    pub fn new(tab: TabId) -> Self {
        Self {
            tab,
            wall_ms: 0,
            counter: 0,
        }
    }

    /// The tab this clock stamps for.
    pub fn tab(&self) -> TabId {
        self.tab
    }

    /// The newest wall time issued or observed.
    pub fn wall_ms(&self) -> u64 {
        self.wall_ms
    }

    /// Brings the clock back to at most `now_ms` + [`MAX_CLOCK_AHEAD_MS`]
    /// (the local clock was set back); returns whether it moved. The replica
    /// first sets aside its own writes stamped beyond that, so later
    /// stamps are still greater than everything it holds.
    pub fn clamp(&mut self, now_ms: u64) -> bool {
        let limit = now_ms.saturating_add(MAX_CLOCK_AHEAD_MS);
        if self.wall_ms <= limit {
            return false;
        }
        self.wall_ms = limit;
        self.counter = 0;
        true
    }

    /// Issues a stamp greater than every stamp issued or observed before,
    /// and never more than [`MAX_CLOCK_AHEAD_MS`] ahead of `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        self.clamp(now_ms);
        if now_ms > self.wall_ms {
            self.wall_ms = now_ms;
            self.counter = 0;
        } else if let Some(next) = self.counter.checked_add(1) {
            self.counter = next;
        } else {
            // 4 billion stamps in one millisecond: borrow the next
            // millisecond rather than wrap (wrapping would break the order).
            self.wall_ms = self.wall_ms.saturating_add(1);
            self.counter = 0;
        }
        Stamp {
            wall_ms: self.wall_ms,
            counter: self.counter,
            tab: self.tab,
        }
    }

    /// Refuses stamps too far ahead of `now_ms`.
    pub fn check(stamp: &Stamp, now_ms: u64) -> Result<()> {
        if stamp.wall_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
            return Err(Error::ClockSkew {
                wall_ms: stamp.wall_ms,
                now_ms,
                max_ahead_ms: MAX_CLOCK_AHEAD_MS,
            });
        }
        Ok(())
    }

    /// Records a remote stamp so the next [`tick`](Self::tick) exceeds it.
    /// Fails (and records nothing) if the stamp is implausibly far ahead.
    pub fn observe(&mut self, stamp: &Stamp, now_ms: u64) -> Result<()> {
        Self::check(stamp, now_ms)?;
        if (stamp.wall_ms, stamp.counter) > (self.wall_ms, self.counter) {
            self.wall_ms = stamp.wall_ms;
            self.counter = stamp.counter;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_strictly_increasing_even_when_time_stands_still_or_goes_back() {
        let mut hlc = Hlc::new(TabId::new(1));
        let a = hlc.tick(100);
        let b = hlc.tick(100);
        let c = hlc.tick(50);
        assert!(a < b && b < c);
        assert_eq!(c.wall_ms, 100);
    }

    #[test]
    fn observing_a_skewed_clock_puts_later_local_stamps_after_it() {
        let mut behind = Hlc::new(TabId::new(1));
        let mut ahead = Hlc::new(TabId::new(2));
        let remote = ahead.tick(10_000);
        behind.observe(&remote, 10).unwrap();
        assert!(behind.tick(10) > remote);
    }

    #[test]
    fn ties_are_broken_by_tab() {
        let a = Hlc::new(TabId::new(1)).tick(5);
        let b = Hlc::new(TabId::new(2)).tick(5);
        assert!(a < b);
    }

    #[test]
    fn far_future_stamps_are_refused() {
        let mut hlc = Hlc::new(TabId::new(1));
        let hostile = Stamp {
            wall_ms: u64::MAX,
            counter: u32::MAX,
            tab: TabId::new(9),
        };
        assert!(matches!(
            hlc.observe(&hostile, 1_000),
            Err(Error::ClockSkew { .. })
        ));
        assert_eq!(hlc.tick(1_000).wall_ms, 1_000);
    }

    #[test]
    fn counter_overflow_borrows_the_next_millisecond() {
        let mut hlc = Hlc::new(TabId::new(1));
        hlc.observe(
            &Stamp {
                wall_ms: 7,
                counter: u32::MAX,
                tab: TabId::new(2),
            },
            7,
        )
        .unwrap();
        let next = hlc.tick(7);
        assert_eq!((next.wall_ms, next.counter), (8, 0));
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::new(1);
        let other = clock.clone();
        clock.advance(4);
        assert_eq!(other.now_ms(), 5);
    }
}
