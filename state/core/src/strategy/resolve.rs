//! The user-resolve strategy: a multi-value register.
//!
//! Every write names the entries its writer had seen (`supersedes`); those
//! become tombstones and leave the live set. Writes nobody superseded stay
//! side by side: that set is the conflict shown to the user, and resolving
//! it is just another write that supersedes all of them. Tombstones are
//! kept so that a superseding write that arrives *before* the write it
//! supersedes still wins; they are never pruned, because without causal
//! stability information no replica can know a late op is not in flight.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Conflict, Entry};
use crate::error::Result;
use crate::op::OpId;

/// The state of a user-resolve key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "ResolveWire")]
pub struct ResolveState {
    entries: BTreeMap<OpId, Entry>,
    tombstones: BTreeSet<OpId>,
}

/// JSON shape: op ids are not strings, so entries travel as a list sorted
/// by id rather than as a map.
#[derive(Deserialize)]
struct ResolveWire {
    #[serde(default)]
    entries: Vec<Entry>,
    #[serde(default)]
    tombstones: BTreeSet<OpId>,
}

impl From<ResolveWire> for ResolveState {
    fn from(wire: ResolveWire) -> Self {
        // Rebuilding through `apply`-like joins makes any list (duplicates,
        // tombstoned entries, any order) decode to the canonical state.
        let mut state = ResolveState {
            entries: BTreeMap::new(),
            tombstones: wire.tombstones,
        };
        for entry in wire.entries {
            state.insert(entry);
        }
        state
    }
}

fn is_empty(set: &&BTreeSet<OpId>) -> bool {
    set.is_empty()
}

impl Serialize for ResolveState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Same shape as `ResolveWire`, borrowed rather than cloned.
        #[derive(Serialize)]
        struct Wire<'a> {
            entries: Vec<&'a Entry>,
            #[serde(skip_serializing_if = "is_empty")]
            tombstones: &'a BTreeSet<OpId>,
        }
        Wire {
            entries: self.entries.values().collect(),
            tombstones: &self.tombstones,
        }
        .serialize(serializer)
    }
}

impl ResolveState {
    pub(crate) fn apply(&mut self, entry: Entry, supersedes: &[OpId]) {
        self.tombstones.extend(supersedes.iter().copied());
        self.entries.retain(|id, _| !self.tombstones.contains(id));
        self.insert(entry);
    }

    pub(crate) fn merge(&mut self, other: &ResolveState) {
        self.tombstones.extend(other.tombstones.iter().copied());
        self.entries.retain(|id, _| !self.tombstones.contains(id));
        for entry in other.entries.values() {
            self.insert(entry.clone());
        }
    }

    fn insert(&mut self, entry: Entry) {
        if self.tombstones.contains(&entry.id) {
            return;
        }
        match self.entries.get_mut(&entry.id) {
            Some(current) => {
                if entry.order(current).is_gt() {
                    *current = entry;
                }
            }
            None => {
                self.entries.insert(entry.id, entry);
            }
        }
    }

    /// Live entries, by op id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Op ids of superseded writes.
    pub fn tombstones(&self) -> impl Iterator<Item = &OpId> {
        self.tombstones.iter()
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
        if self.entries.len() < 2 {
            return Vec::new();
        }
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by(|a, b| b.order(a));
        entries
            .into_iter()
            .map(|e| Conflict {
                id: e.id,
                writer: e.writer.clone(),
                stamp: e.stamp,
                value: e.value.clone(),
            })
            .collect()
    }

    pub(crate) fn migrate(&mut self, step: &mut dyn FnMut(Value) -> Result<Value>) -> Result<()> {
        for entry in self.entries.values_mut() {
            entry.value = step(std::mem::take(&mut entry.value))?;
        }
        Ok(())
    }
}
