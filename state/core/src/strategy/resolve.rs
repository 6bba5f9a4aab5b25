//! The user-resolve strategy: a multi-value register with per-tab
//! watermarks.
//!
//! Every write names the entries its writer had seen (`supersedes`); those
//! leave the live set. Writes nobody superseded stay side by side: that set
//! is the conflict shown to the user, and resolving it is just another
//! write that supersedes all of them.
//!
//! What was superseded is kept as one watermark per tab ([`Seen`]): "every
//! write of tab t up to sequence s is superseded". That is exact, not an
//! approximation, because one tab's writes to a key form a chain: a tab
//! always sees its own previous write, so each of its writes supersedes the
//! one before (or that one was already superseded). For the same reason a
//! live entry kills every older entry of its own tab.
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

/// Every write of one tab up to `seq` is superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// The tab.
    pub tab: TabId,
    /// Highest superseded sequence number.
    pub seq: u64,
    /// Stamp of the write that superseded it.
    pub stamp: Stamp,
    /// Who wrote that; `None` only in data stored by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<UnitAddress>,
}

impl Seen {
    fn order_key(&self) -> (u64, Stamp, &Option<UnitAddress>) {
        (self.seq, self.stamp, &self.writer)
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
            |current, seen| {
                if seen.order_key() > current.order_key() {
                    *current = seen;
                }
            },
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

    /// Drops superseded entries (by watermark, or by a newer entry of the
    /// same tab) and whatever lies more than [`COMPACT_AFTER_MS`] behind the
    /// newest write. A function of the state alone.
    pub(crate) fn normalize(&mut self) {
        let newest = self
            .entries
            .values()
            .map(|e| e.stamp.wall_ms)
            .chain(self.seen.values().map(|s| s.stamp.wall_ms))
            .max()
            .unwrap_or(0);
        let horizon = newest.saturating_sub(COMPACT_AFTER_MS);
        self.seen.retain(|_, seen| seen.stamp.wall_ms >= horizon);
        let mut newest_per_tab: VecMap<TabId, u64> = VecMap::new();
        for id in self.entries.keys() {
            let seq = newest_per_tab.get_or_default(id.tab);
            *seq = (*seq).max(id.seq);
        }
        let seen = &self.seen;
        self.entries.retain(|id, entry| {
            let superseded = seen.get(&id.tab).is_some_and(|s| s.seq >= id.seq);
            let older_than_own = newest_per_tab.get(&id.tab).is_some_and(|&s| s > id.seq);
            !superseded && !older_than_own && entry.stamp.wall_ms >= horizon
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

    /// Whether the op `id` is superseded here.
    pub fn superseded(&self, id: &OpId) -> bool {
        self.seen.get(&id.tab).is_some_and(|s| s.seq >= id.seq)
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

    #[test]
    fn legacy_tombstones_become_watermarks() {
        let text = r#"{"entries":[{"stamp":{"wall_ms":5,"counter":0,"tab":"2"},"id":{"tab":"2","seq":4},"writer":"a/b/c","value":1}],"tombstones":[{"tab":"1","seq":3}]}"#;
        let state: ResolveState = serde_json::from_str(text).unwrap();
        assert!(state.superseded(&OpId {
            tab: TabId::new(1),
            seq: 2
        }));
        assert_eq!(state.entries.len(), 1);
    }
}
