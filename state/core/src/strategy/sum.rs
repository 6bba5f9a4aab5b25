//! The sum strategy: a PN-counter with resets, compacted behind a horizon.
//!
//! **Slots.** Every writer adds to a slot of its own, identified by the op
//! id of the slot's first op. An op carries the slot's cumulative positive
//! and negative totals *after* the increment, and applying keeps the
//! per-slot maximum, so a redelivered or reordered op can never count twice
//! or go backwards.
//!
//! **Resets.** Setting a counter is not an increment by the difference
//! (two tabs resetting 5 to 0 at once would end at −5): it is a [`Reset`]
//! that records the target and the slot totals its writer had seen. The
//! newest reset wins; what counts on top of it is only what the slots
//! gained since it observed them, so increments made concurrently with a
//! reset still count, and two concurrent resets to 0 end at 0.
//!
//! **Folding.** Slots would otherwise accumulate for ever: every page load
//! is a new writer. A slot whose latest op is more than
//! [`COMPACT_AFTER_MS`] older than the newest write to the key is folded
//! into [`Folded`] and forgotten. The rule is a function of the state
//! alone (the horizon follows the newest stamp in it), so every replica
//! folds the same slots. It is sound while every op reaches every replica
//! within that window; an op older than the horizon is refused as stale
//! rather than counted twice or silently (see `Error::Stale`). A writer
//! never adds to a slot it last wrote so long ago that another replica may
//! already have folded it: it opens a new slot instead (see
//! [`SumState::slot_for`]).
//!
//! The value is `target + folded + Σ (slot − observed)`, where the two
//! totals of a slot count only above what the winning reset observed.

mod parts;
mod wire;

use crate::clock::Stamp;
use crate::id::TabId;
use crate::limits::{COMPACT_AFTER_MS, MAX_OP_ITEMS, MAX_SUM_SLOTS, ROTATE_SLOT_AFTER_MS};
use crate::op::OpId;
use crate::vec_map::VecMap;

pub use parts::{Folded, Observed, Reset, Slot, Totals};

/// The newest write a fold horizon vouches for: the horizon trails the
/// newest write of the state that set it by [`COMPACT_AFTER_MS`], so a
/// horizon `h` was set when a write stamped `h + COMPACT_AFTER_MS`
/// existed. 0 for no horizon.
///
/// A replica takes a horizon only once its clock would take that write
/// (now, or later like any write stamped ahead): a horizon weeks past its
/// clock would fold every live slot and refuse every count until then,
/// so a peer, hostile or with a fast clock, could freeze a counter with
/// one reset or one state of nothing but a horizon.
pub(crate) fn implied_by(horizon: u64) -> u64 {
    match horizon {
        0 => 0,
        _ => horizon.saturating_add(COMPACT_AFTER_MS),
    }
}

/// The state of a sum key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SumState {
    reset: Option<Reset>,
    folded: Folded,
    slots: VecMap<OpId, Slot>,
}

impl SumState {
    /// Structural rules a state from outside must follow: a slot's latest
    /// op is its own and not before its first, a reset observes only slots
    /// written before it (sorted, bounded), bounded lists.
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        let bad = |reason: &str| crate::error::Error::Malformed {
            what: "sum state",
            reason: reason.to_owned(),
        };
        if self.slots.len() > MAX_SUM_SLOTS || self.folded.writers.len() > MAX_OP_ITEMS {
            return Err(bad("too many slots or writers"));
        }
        if self.slots.values().any(|s| s.seq < s.slot.seq) {
            return Err(bad("a slot's latest op comes before its first"));
        }
        if let Some(reset) = &self.reset {
            if reset.observed.len() > MAX_SUM_SLOTS
                || !reset.observed.windows(2).all(|w| w[0].slot < w[1].slot)
            {
                return Err(bad(
                    "a reset's observed slots must be sorted, unique and bounded",
                ));
            }
            if reset.observed.iter().any(|o| o.last > reset.stamp.wall_ms) {
                return Err(bad("a reset observes slots written after it"));
            }
            if reset.horizon > reset.stamp.wall_ms {
                return Err(bad("a reset's horizon is after its stamp"));
            }
        }
        if !self.folded.writers.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad("folded writers must be sorted and unique"));
        }
        Ok(())
    }

    /// The winning reset, if any.
    pub fn reset(&self) -> Option<&Reset> {
        self.reset.as_ref()
    }

    /// What was folded away.
    pub fn folded(&self) -> &Folded {
        &self.folded
    }

    /// The live slots, by slot id.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    /// Refuses a state holding more than [`MAX_SUM_SLOTS`] slots, as
    /// [`validate`](Self::validate) would refuse it from outside: what
    /// every join and every group of ops is checked against before it
    /// changes anything, so no replica keeps a state the others (and its
    /// own next load) would set aside.
    pub(crate) fn check_slots(count: usize) -> crate::error::Result<()> {
        if count > MAX_SUM_SLOTS {
            return Err(crate::error::Error::TooLarge {
                what: "sum slots",
                size: count,
                limit: MAX_SUM_SLOTS,
            });
        }
        Ok(())
    }

    /// How many slots this state would hold after `ops` if none were
    /// folded: one more for each slot a count opens or a reset observes
    /// that is not here yet. An upper bound (the ops may fold slots), so
    /// a group it puts past the bound is tried on a copy before refusal.
    pub(crate) fn slots_after(&self, ops: &[crate::op::Op]) -> usize {
        let mut new: Vec<OpId> = Vec::new();
        for op in ops {
            match &op.payload {
                crate::op::Payload::Count { slot, .. } => new.push(*slot),
                crate::op::Payload::Reset { observed, .. } => {
                    new.extend(observed.iter().map(|o| o.slot));
                }
                _ => {}
            }
        }
        new.retain(|slot| !self.slots.contains_key(slot));
        // The map's own sort (compiled once for every item type).
        let mut new = crate::vec_map::in_key_order(new, |slot| slot);
        new.dedup();
        self.slots.len().saturating_add(new.len())
    }

    /// How many live slots there are.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Whether `slot` is a live slot here.
    pub(crate) fn has_slot(&self, slot: &OpId) -> bool {
        self.slots.contains_key(slot)
    }

    /// Slots last written before this wall time are folded (or covered by
    /// the reset) and ops for them are stale.
    pub fn floor(&self) -> u64 {
        self.folded.horizon
    }

    /// The newest write this state's horizons vouch for (see
    /// [`implied_by`]): a replica takes the state only once its clock
    /// would take a write stamped then.
    pub(crate) fn implied_wall(&self) -> u64 {
        let reset = self.reset.as_ref().map_or(0, |r| r.horizon);
        implied_by(self.folded.horizon.max(reset))
    }

    /// Whether the winning reset observed `slot` at totals `p` and `n` or
    /// past them: it counted the op that brought the slot there, which
    /// then adds nothing above it.
    pub(crate) fn reset_observed(&self, slot: &OpId, p: u64, n: u64) -> bool {
        let seen = self.observed(slot);
        seen.p >= p && seen.n >= n
    }

    fn observed(&self, slot: &OpId) -> Totals {
        self.reset
            .as_ref()
            .map_or_else(Totals::default, |r| r.observed(slot))
    }

    /// The counter's value, clamped to the `i64` range (accumulated in
    /// `i128`, so the clamp only bites on absurd totals).
    pub fn total(&self) -> i64 {
        let sum = self.wide_total();
        i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX })
    }

    /// The counter's value before [`total`](Self::total) clamps it.
    pub(crate) fn wide_total(&self) -> i128 {
        let target = self.reset.as_ref().map_or(0, |r| i128::from(r.target));
        let folded = Totals {
            p: self.folded.p,
            n: self.folded.n,
        }
        .net();
        let live: i128 = self
            .slots
            .values()
            .map(|s| s.totals().above(self.observed(&s.slot)).net())
            .sum();
        target + folded + live
    }

    /// The slot a writer on `tab` adds to at `now_ms`, with its current
    /// totals: its newest slot, unless that was last written so long ago
    /// that a replica whose clock runs ahead may have folded it; then a new
    /// slot (`None`), whose id will be the op's own.
    ///
    /// Only slots with a sequence number below `next_seq` (the writer's
    /// next op) count: a slot opened by a later op is not the writer's, it
    /// was named in its name by a peer's reset (see `raise`), and an op
    /// adding to it would be refused everywhere.
    pub fn slot_for(&self, tab: TabId, next_seq: u64, now_ms: u64) -> Option<(OpId, Totals)> {
        self.slots
            .values()
            .filter(|s| s.slot.tab == tab && s.slot.seq < next_seq)
            .max_by_key(|s| s.slot)
            .filter(|s| now_ms.saturating_sub(s.last.wall_ms) < ROTATE_SLOT_AFTER_MS)
            .map(|s| (s.slot, s.totals()))
    }

    /// What a reset made now has seen of every slot, sorted by slot. The
    /// slots hold everything this replica knows, including what every
    /// reset it received had observed (see `raise`).
    pub fn observe_all(&self) -> Vec<Observed> {
        self.slots
            .values()
            .map(|s| Observed {
                slot: s.slot,
                p: s.p,
                n: s.n,
                last: s.last.wall_ms,
            })
            .collect()
    }

    pub(crate) fn apply_count(&mut self, slot: Slot) {
        if slot.last.wall_ms < self.floor() {
            // Already folded here: counting it again would double it.
            return;
        }
        self.join_slot(slot);
        self.normalize();
    }

    pub(crate) fn apply_reset(&mut self, reset: Reset) {
        self.raise(&reset);
        self.join_reset(reset);
        self.normalize();
    }

    pub(crate) fn merge(&mut self, other: &SumState) {
        if let Some(reset) = &other.reset {
            self.raise(reset);
            self.join_reset(reset.clone());
        }
        let winner = self.reset.as_ref().map(|r| r.id);
        if other.folded.after == winner
            && (self.folded.after != winner || other.folded.key() > self.folded.key())
        {
            self.folded = other.folded.clone();
        }
        self.join_slots(other.slots.values().cloned().collect());
        self.normalize();
    }

    /// Raises every slot a reset observed to at least the totals it saw
    /// (creating it if unknown here), dated when the reset saw it. A reset,
    /// winning or not, tells what its writer had counted: a later reset
    /// from here must cover that too, or an increment it had absorbed would
    /// count again on top of it. A raised slot is compacted when the real
    /// one would be, so raising twice changes nothing.
    fn raise(&mut self, reset: &Reset) {
        let raised = reset
            .observed
            .iter()
            .map(|observed| Slot {
                slot: observed.slot,
                seq: observed.slot.seq,
                last: Stamp {
                    wall_ms: observed.last,
                    counter: 0,
                    tab: observed.slot.tab,
                },
                writer: reset.writer.clone(),
                p: observed.p,
                n: observed.n,
            })
            .collect();
        self.join_slots(raised);
    }

    fn join_reset(&mut self, reset: Reset) {
        if self
            .reset
            .as_ref()
            .is_none_or(|current| reset.beats(current))
        {
            self.reset = Some(reset);
        }
    }

    /// Joins slots, in any order, into these, in one pass however many
    /// there are (see [`VecMap::join_all`]).
    fn join_slots(&mut self, slots: Vec<Slot>) {
        self.slots.join_all(
            slots.into_iter().map(|slot| (slot.slot, slot)).collect(),
            |current, slot| current.join(&slot),
        );
    }

    fn join_slot(&mut self, slot: Slot) {
        match self.slots.get_mut(&slot.slot) {
            Some(current) => current.join(&slot),
            None => {
                self.slots.insert(slot.slot, slot);
            }
        }
    }

    /// Newest wall time anywhere in the state.
    fn max_wall(&self) -> u64 {
        let slots = self.slots.values().map(|s| s.last.wall_ms).max();
        let reset = self.reset.as_ref().map(|r| r.stamp.wall_ms);
        slots.max(reset).unwrap_or(0).max(self.folded.horizon)
    }

    /// Restores the invariants: `folded` is relative to the winning reset,
    /// no slot lies below the horizon, and the horizon follows the newest
    /// write. A pure function of the state, so every replica holding the
    /// same writes normalizes to the same bytes.
    pub(crate) fn normalize(&mut self) {
        let (after, reset_horizon) = self
            .reset
            .as_ref()
            .map_or((None, 0), |r| (Some(r.id), r.horizon));
        if self.folded.after != after {
            self.folded = Folded::fresh(after, reset_horizon);
        }
        self.folded.horizon = self.folded.horizon.max(reset_horizon);
        let horizon = self
            .folded
            .horizon
            .max(self.max_wall().saturating_sub(COMPACT_AFTER_MS));
        let floor = self.folded.horizon;
        let mut folded = std::mem::take(&mut self.folded);
        let reset = self.reset.as_ref();
        self.slots.retain(|id, slot| {
            if slot.last.wall_ms < floor {
                // Covered by `folded` or by the reset already.
                return false;
            }
            if slot.last.wall_ms < horizon {
                let observed = reset.map_or_else(Totals::default, |r| r.observed(id));
                folded.add(slot.totals().above(observed), &slot.writer);
                return false;
            }
            true
        });
        folded.horizon = horizon;
        self.folded = folded;
    }

    pub(crate) fn reset_mut(&mut self) -> &mut Option<Reset> {
        &mut self.reset
    }

    pub(crate) fn folded_mut(&mut self) -> &mut Folded {
        &mut self.folded
    }

    pub(crate) fn slots_mut(&mut self) -> &mut VecMap<OpId, Slot> {
        &mut self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(tab: u64, seq: u64, wall: u64, p: u64, n: u64) -> Slot {
        Slot {
            slot: OpId {
                tab: TabId::new(tab),
                seq: 1,
            },
            seq,
            last: Stamp {
                wall_ms: wall,
                counter: 0,
                tab: TabId::new(tab),
            },
            writer: "a/b/c".parse().unwrap(),
            p,
            n,
        }
    }

    #[test]
    fn old_slots_fold_and_the_total_stays() {
        let mut state = SumState::default();
        state.apply_count(slot(1, 1, 1_000, 3, 0));
        state.apply_count(slot(2, 1, 2_000 + COMPACT_AFTER_MS, 4, 1));
        assert_eq!(state.total(), 6);
        assert_eq!(state.slots.len(), 1, "the old slot folded");
        assert_eq!((state.folded.p, state.folded.n), (3, 0));
        // A stale copy of the folded slot changes nothing.
        state.apply_count(slot(1, 2, 1_500, 9, 0));
        assert_eq!(state.total(), 6);
    }

    #[test]
    fn legacy_per_tab_totals_read_as_folded() {
        let state: SumState =
            serde_json::from_str(r#"{"tabs":{"0000000000000001":{"p":5,"n":1}}}"#).unwrap();
        assert_eq!(state.total(), 4);
    }
}
