//! The user-resolve strategy: a multi-value register with per-tab
//! watermarks.
//!
//! Every write names the entries its writer had seen (`supersedes`); those
//! leave the live set. Writes nobody superseded stay side by side: that set
//! is the conflict shown to the user, and resolving it is just another
//! write that supersedes all of them.
//!
//! What was superseded is kept as one watermark per tab ([`Seen`]): "every
//! write of tab t up to sequence s, stamped before S, is superseded". That
//! is exact, not an approximation, because one tab's writes to a key form a
//! chain: a tab always sees its own previous write, so each of its writes
//! supersedes the one before (or that one was already superseded). For the
//! same reason a live entry kills every older entry of its own tab.
//!
//! The stamp bound changes nothing for an honest write: its writer's clock
//! observed every write it saw, so its stamp is past theirs. It stops a
//! forged one: an op naming another tab's *future* writes (`supersedes:
//! [(t, 2^40)]`) would otherwise drop that tab's next writes everywhere but
//! in the tab itself. With the bound it only reaches writes stamped before
//! it, which is what any write stamped that late wins over anyway (the
//! relay admits stamps at most a day ahead, and clocks that see it then
//! stamp past it). Two watermarks of one tab join field by field (the
//! greater number, the greater stamp), so a watermark only ever grows and
//! an entry it dropped never comes back, in whatever order they arrive.
//!
//! The chain is judged the same way: a live entry kills the entries of
//! its tab numbered before it and stamped before it or with its stamp (an
//! honest tab stamps its writes in order, so that is every earlier one;
//! a revert reuses the stamp of the write it undoes). Each rule drops what
//! lies below a point in both number and stamp, so whatever dropped an
//! entry also drops everything that entry would have, and the state is
//! the same in whatever order its writes arrived, even from a peer that
//! stamps a tab's writes out of order (which may then show two of them).
//!
//! Watermarks and conflicting entries more than [`COMPACT_AFTER_MS`] older
//! than the newest write are dropped (a conflict that old is settled in
//! favour of the newer write, and an op that old changes nothing: it is
//! dropped alike whether it came before the newer write or after), so
//! the state holds at most one entry and one watermark per tab that wrote
//! recently, whatever the number of writes.

use serde::Serialize;
use serde_json::Value;

use super::{Conflict, Entry};
use crate::clock::Stamp;
use crate::decode::{Fields, FromJson, Why};
use crate::error::Result;
use crate::id::{TabId, UnitAddress};
use crate::limits::COMPACT_AFTER_MS;
use crate::op::OpId;
use crate::vec_map::VecMap;

/// Every write of one tab up to `seq`, stamped before `stamp`, is
/// superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// The tab.
    pub tab: TabId,
    /// Highest superseded sequence number.
    pub seq: u64,
    /// Stamp of the latest write that superseded some of them (writes
    /// stamped at or after it are not superseded).
    pub stamp: Stamp,
    /// Who wrote that; `None` only in data stored by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<UnitAddress>,
}

impl Seen {
    /// Joins `other` (of the same tab) into this one, field by field: the
    /// greater number, and the greater stamp with its writer. Either
    /// watermark supersedes no more than the join does.
    fn join(&mut self, other: Seen) {
        self.seq = self.seq.max(other.seq);
        if (other.stamp, &other.writer) > (self.stamp, &self.writer) {
            self.stamp = other.stamp;
            self.writer = other.writer;
        }
    }

    /// Whether the write `id`, stamped `stamp`, is superseded by this.
    /// Strictly before the stamp: joined with a peer's watermark naming
    /// higher numbers, the one a write sets for its own tab's earlier
    /// entries would otherwise reach that write itself.
    fn covers(&self, id: &OpId, stamp: &Stamp) -> bool {
        id.tab == self.tab && id.seq <= self.seq && *stamp < self.stamp
    }
}

/// The state of a user-resolve key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolveState {
    entries: VecMap<OpId, Entry>,
    seen: VecMap<TabId, Seen>,
}

/// Reads the JSON shape: op ids are not strings, so entries and
/// watermarks travel as lists. `tombstones` is the shape older versions
/// stored (every superseded op id); it is read as watermarks.
impl FromJson for ResolveState {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a user-resolve state")?;
        let entries: Vec<Entry> = fields.or_default("entries")?;
        let mut seen: Vec<Seen> = fields.or_default("seen")?;
        let tombstones: Vec<OpId> = fields.or_default("tombstones")?;
        let newest = entries.iter().map(|e| e.stamp).max();
        let mut state = ResolveState::default();
        seen.extend(tombstones.into_iter().map(|id| Seen {
            tab: id.tab,
            seq: id.seq,
            // Old tombstones carry no stamp: date them with the newest
            // entry so they outlive every write they could kill.
            stamp: newest.unwrap_or(Stamp {
                wall_ms: 0,
                counter: 0,
                tab: id.tab,
            }),
            writer: None,
        }));
        state.join(seen, entries);
        state.normalize();
        Ok(state)
    }
}

impl FromJson for Seen {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a watermark")?;
        Ok(Self {
            tab: fields.req("tab")?,
            seq: fields.req("seq")?,
            stamp: fields.req("stamp")?,
            writer: fields.opt("writer")?,
        })
    }
}

crate::decode::deserialize_through_tree!(ResolveState, Seen);

impl Serialize for ResolveState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            entries: Vec<&'a Entry>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            seen: Vec<&'a Seen>,
        }
        Wire {
            entries: self.entries.values().collect(),
            seen: self.seen.values().collect(),
        }
        .serialize(serializer)
    }
}

impl ResolveState {
    pub(crate) fn apply(&mut self, entry: Entry, supersedes: &[OpId]) {
        let seen = supersedes
            .iter()
            .map(|id| Seen {
                tab: id.tab,
                seq: id.seq,
                stamp: entry.stamp,
                writer: Some(entry.writer.clone()),
            })
            .collect();
        self.join(seen, vec![entry]);
        self.normalize();
    }

    pub(crate) fn merge(&mut self, other: &ResolveState) {
        self.join(
            other.seen.values().cloned().collect(),
            other.entries.values().cloned().collect(),
        );
        self.normalize();
    }

    /// Joins watermarks and entries, in any order, into these: of two
    /// for the same tab (or op id) the greater stays. In one pass over
    /// each map however many there are (see [`VecMap::join_all`]): a
    /// peer names as many tabs as it likes.
    fn join(&mut self, seen: Vec<Seen>, entries: Vec<Entry>) {
        self.seen.join_all(
            seen.into_iter().map(|seen| (seen.tab, seen)).collect(),
            |current, seen| current.join(seen),
        );
        self.entries.join_all(
            entries.into_iter().map(|entry| (entry.id, entry)).collect(),
            |current, entry| {
                if entry.order(current).is_gt() {
                    *current = entry;
                }
            },
        );
    }

    /// Writes stamped before this wall time lie more than
    /// [`COMPACT_AFTER_MS`] behind the newest write: the state drops them
    /// on arrival, and a replica refuses them as ops with
    /// [`Error::Stale`](crate::Error::Stale), so the device that made one
    /// hears of it and writes it again (see
    /// [`Replica::rebase_resolve`](crate::Replica::rebase_resolve)),
    /// where before it was dropped without a word.
    pub fn floor(&self) -> u64 {
        self.newest_wall().saturating_sub(COMPACT_AFTER_MS)
    }

    /// The wall time of the newest write or watermark held (0 for none).
    fn newest_wall(&self) -> u64 {
        self.entries
            .values()
            .map(|e| e.stamp.wall_ms)
            .chain(self.seen.values().map(|s| s.stamp.wall_ms))
            .max()
            .unwrap_or(0)
    }

    /// Drops superseded entries (by watermark, or by a later entry of the
    /// same tab) and whatever lies more than [`COMPACT_AFTER_MS`] behind the
    /// newest write. A function of the state alone.
    pub(crate) fn normalize(&mut self) {
        let horizon = self.floor();
        self.seen.retain(|_, seen| seen.stamp.wall_ms >= horizon);
        // Entries are in (tab, number) order: walked back, each tab's
        // entries after the one at hand come first, and the greatest of
        // their stamps says whether one of them is stamped after it too.
        let mut older_than_own: Vec<OpId> = Vec::new();
        let mut later: Option<(TabId, Stamp)> = None;
        for (id, entry) in self.entries.iter().rev() {
            match &mut later {
                Some((tab, stamp)) if *tab == id.tab => {
                    // At or after: a revert reuses the stamp it undoes.
                    if *stamp >= entry.stamp {
                        older_than_own.push(*id);
                    } else {
                        *stamp = entry.stamp;
                    }
                }
                _ => later = Some((id.tab, entry.stamp)),
            }
        }
        // Pushed walking back: ascending once reversed.
        older_than_own.reverse();
        let seen = &self.seen;
        self.entries.retain(|id, entry| {
            let superseded = seen
                .get(&id.tab)
                .is_some_and(|s| s.covers(id, &entry.stamp));
            let older = older_than_own.binary_search(id).is_ok();
            !superseded && !older && entry.stamp.wall_ms >= horizon
        });
    }

    /// Live entries, by op id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Per-tab watermarks of superseded writes.
    pub fn seen(&self) -> impl Iterator<Item = &Seen> {
        self.seen.values()
    }

    /// Whether the write `id`, stamped `stamp`, is superseded here.
    pub fn superseded(&self, id: &OpId, stamp: &Stamp) -> bool {
        self.seen.get(&id.tab).is_some_and(|s| s.covers(id, stamp))
    }

    /// Op ids of the live entries (what a new write supersedes).
    pub fn live_ids(&self) -> Vec<OpId> {
        self.entries.keys().copied().collect()
    }

    /// The entry shown as the value: the greatest by [`Entry::order`].
    pub fn winner(&self) -> Option<&Entry> {
        self.entries.values().max_by(|a, b| a.order(b))
    }

    /// All live entries, winner first, when there are at least two.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.in_conflict()
            .map(|e| Conflict {
                id: e.id,
                writer: e.writer.clone(),
                stamp: e.stamp,
                value: Value::clone(&e.value),
            })
            .collect()
    }

    /// The ids of [`conflicts`](Self::conflicts), in the same order,
    /// without copying their values (compared before and after every
    /// write).
    pub(crate) fn conflict_ids(&self) -> Vec<OpId> {
        self.in_conflict().map(|e| e.id).collect()
    }

    /// The entries in conflict (none unless two or more), winner first.
    fn in_conflict(&self) -> impl Iterator<Item = &Entry> {
        let entries: Vec<&Entry> = if self.entries.len() < 2 {
            Vec::new()
        } else {
            self.entries.values().collect()
        };
        crate::vec_map::sorted_by(entries, |a, b| b.order(a)).into_iter()
    }

    pub(crate) fn migrate(&mut self, step: &mut dyn FnMut(Value) -> Result<Value>) -> Result<()> {
        for entry in self.entries.values_mut() {
            super::migrate_shared(&mut entry.value, &mut *step)?;
        }
        Ok(())
    }

    pub(crate) fn entries_mut(&mut self) -> &mut VecMap<OpId, Entry> {
        &mut self.entries
    }

    pub(crate) fn seen_mut(&mut self) -> &mut VecMap<TabId, Seen> {
        &mut self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tab: u64, seq: u64, wall: u64, value: i64) -> Entry {
        Entry {
            stamp: Stamp {
                wall_ms: wall,
                counter: 0,
                tab: TabId::new(tab),
            },
            id: OpId {
                tab: TabId::new(tab),
                seq,
            },
            writer: "a/b/c".parse().unwrap(),
            value: Value::from(value).into(),
        }
    }

    #[test]
    fn a_late_superseded_write_stays_dead_and_the_state_stays_small() {
        let mut state = ResolveState::default();
        let first = entry(1, 1, 10, 1);
        let mut ids = Vec::new();
        for seq in 2..100 {
            let write = entry(1 + seq % 2, seq, 10 + seq, seq as i64);
            let live = state.live_ids();
            ids.extend(live.iter().copied());
            state.apply(write, &live);
        }
        state.merge(&ResolveState {
            entries: [(first.id, first)].into_iter().collect(),
            seen: VecMap::new(),
        });
        assert_eq!(state.entries.len(), 1);
        assert!(state.seen.len() <= 2);
    }

    /// A peer names as many tabs as it likes in `supersedes`: each write
    /// costs one pass over the watermarks, not a move of them per tab
    /// named (28 writes of 1,024 new tabs, each below every tab named
    /// before, moved some 4 × 10^8 watermarks one by one).
    #[test]
    fn watermarks_for_many_new_tabs_are_joined_in_one_pass() {
        let mut state = ResolveState::default();
        let mut next_tab = u64::MAX - 1;
        let before = crate::vec_map::MOVED.with(std::cell::Cell::get);
        for seq in 0..28 {
            let supersedes: Vec<OpId> = (0..1024)
                .map(|_| {
                    next_tab -= 1;
                    OpId {
                        tab: TabId::new(next_tab),
                        seq: 1,
                    }
                })
                .collect();
            state.apply(entry(u64::MAX, 10 + seq, 10, 1), &supersedes);
        }
        let moved = crate::vec_map::MOVED.with(std::cell::Cell::get) - before;
        assert_eq!(state.seen.len(), 28 * 1024);
        assert!(moved <= 28 * (28 + 1) * 1024, "{moved} watermarks moved");
    }

    fn marks(seen: &[(u64, u64, u64)], entries: Vec<Entry>) -> ResolveState {
        let mut state = ResolveState::default();
        let seen = seen
            .iter()
            .map(|&(tab, seq, wall)| Seen {
                tab: TabId::new(tab),
                seq,
                stamp: entry(9, 1, wall, 0).stamp,
                writer: Some("a/b/c".parse().unwrap()),
            })
            .collect();
        state.join(seen, entries);
        state.normalize();
        state
    }

    /// The three states merged in each of their six orders.
    fn in_every_order(parts: &[ResolveState; 3]) -> Vec<ResolveState> {
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        orders
            .iter()
            .map(|order| {
                let mut state = ResolveState::default();
                for &i in order {
                    state.merge(&parts[i]);
                }
                state
            })
            .collect()
    }

    /// A forged watermark (tab 1's writes up to 2^40, stamped 50) beside
    /// an honest one (up to 5, stamped 100): in whatever order they and
    /// the write the honest one supersedes arrive, every replica ends the
    /// same, and a write stamped after both stays.
    #[test]
    fn watermarks_join_field_by_field_so_no_order_brings_a_write_back() {
        let parts = [
            marks(&[(1, 5, 100)], Vec::new()),
            marks(&[(1, 1 << 40, 50)], Vec::new()),
            marks(&[], vec![entry(1, 5, 90, 5)]),
        ];
        let outcomes = in_every_order(&parts);
        for state in &outcomes {
            assert_eq!(state, &outcomes[0]);
        }
        assert_eq!(
            outcomes[0].entries().count(),
            0,
            "the write at 90 is superseded"
        );
        let mut state = outcomes[0].clone();
        state.merge(&marks(&[], vec![entry(1, 6, 101, 6)]));
        let live: Vec<u64> = state.entries().map(|e| e.id.seq).collect();
        assert_eq!(live, [6], "the write at 101 is not");
    }

    /// A tab's writes stamped out of order (a peer's: its 2nd before a
    /// watermark up to 2, its 1st after it): the watermark drops the 2nd,
    /// and the 1st, stamped after both, stays whichever comes first (the
    /// 2nd, present, does not drop it: it is not stamped after it).
    #[test]
    fn a_tab_s_writes_stamped_out_of_order_end_alike_in_any_order() {
        let parts = [
            marks(&[(1, 2, 100)], Vec::new()),
            marks(&[], vec![entry(1, 2, 90, 2)]),
            marks(&[], vec![entry(1, 1, 110, 1)]),
        ];
        let outcomes = in_every_order(&parts);
        for state in &outcomes {
            assert_eq!(state, &outcomes[0]);
        }
        let live: Vec<OpId> = outcomes[0].entries().map(|e| e.id).collect();
        assert_eq!(live, [entry(1, 1, 110, 1).id]);
    }

    /// A write's own watermark (over its tab's earlier entry, with its
    /// stamp), joined with a forged one naming higher numbers, does not
    /// reach the write itself.
    #[test]
    fn a_write_is_not_superseded_by_its_own_watermark_joined_with_a_forged_one() {
        let mut own = ResolveState::default();
        let earlier = entry(1, 1, 60, 1);
        own.apply(entry(1, 2, 100, 2), &[earlier.id]);
        let outcomes = in_every_order(&[
            marks(&[(1, 1 << 40, 50)], Vec::new()),
            own,
            marks(&[], vec![earlier]),
        ]);
        for state in &outcomes {
            let live: Vec<OpId> = state.entries().map(|e| e.id).collect();
            assert_eq!(live, [entry(1, 2, 0, 0).id], "{state:?}");
        }
    }

    /// Honest order: a tab's later write drops its earlier ones.
    #[test]
    fn a_tab_s_later_write_drops_its_earlier_ones() {
        let outcomes = in_every_order(&[
            marks(&[], vec![entry(1, 1, 10, 1)]),
            marks(&[], vec![entry(1, 2, 20, 2)]),
            marks(&[], vec![entry(2, 1, 15, 3)]),
        ]);
        for state in &outcomes {
            let live: Vec<OpId> = state.entries().map(|e| e.id).collect();
            assert_eq!(live, [entry(1, 2, 0, 0).id, entry(2, 1, 0, 0).id]);
        }
    }

    #[test]
    fn legacy_tombstones_become_watermarks() {
        let text = r#"{"entries":[{"stamp":{"wall_ms":5,"counter":0,"tab":"2"},"id":{"tab":"2","seq":4},"writer":"a/b/c","value":1}],"tombstones":[{"tab":"1","seq":3}]}"#;
        let state: ResolveState = serde_json::from_str(text).unwrap();
        assert!(state.superseded(&entry(1, 2, 4, 0).id, &entry(1, 2, 4, 0).stamp));
        assert_eq!(state.entries.len(), 1);
    }
}
