//! The merge strategy: objects merge field by field.
//!
//! The state is a product of last-write-wins registers: one for whole-value
//! writes (`base`, from `Set` ops) and one per top-level field (from
//! `Patch` ops). A field entry only matters if it is newer than `base`:
//! a later whole-value write replaces every field written before it.
//!
//! Materializing: start from `base`; if it is an object, overlay the newer
//! fields (removals remove). If `base` is missing or not an object and newer
//! fields exist, the value is the object made of those fields; otherwise it
//! is `base` itself (so non-objects behave as last-write-wins).
//!
//! Field entries older than `base` are pruned after every apply and merge.
//! Pruning is a function of the joined state (a field survives iff its
//! newest write beats the newest base), so pruned and unpruned replicas
//! still serialize identically after exchanging the same writes.
//!
//! Only top-level fields merge; nested objects are whole field values. That
//! keeps the state flat and every walk over it non-recursive.
//!
//! Compaction: field entries more than [`COMPACT_AFTER_MS`] older than the
//! newest write are folded into `base` (a whole value carrying the identity
//! of the newest write folded), so a field removed long ago leaves no entry
//! behind. The fold is a function of the state, so replicas holding the
//! same writes fold identically.
//!
//! **Floor.** A folded base no longer says which field each folded write
//! touched, so a write stamped behind the fold could not be judged alike by
//! a replica that folded before it came and one that did not. Such a write
//! is *late*: stamped before [`MergeState::floor`] (the newest write's wall
//! time less [`COMPACT_AFTER_MS`]). Applying one changes nothing, and a
//! replica refuses it as an op with [`Error::Stale`](crate::Error::Stale),
//! as it does a counter's, so the relay never takes it into its log and
//! the device that made it hears so (it then re-bases the key, see
//! [`Replica::rebase`](crate::Replica::rebase)). Every write at or above
//! the floor beats every folded one on stamp, so it is judged exactly.
//! What a write admitted in time did is therefore the same on every
//! replica; which late writes came in time is not, and only the relay's
//! order (and the re-base of what it refused) settles that. States joined
//! whole (another tab's, a snapshot) are folded, not refused.
//!
//! Migration keeps fields apart: the whole value is migrated, then each
//! field entry takes its migrated value under its own identity, so two
//! replicas that saw different fields still keep both after upgrading (for
//! migrations that change each field on its own, as a merge-by-id value's
//! do; a migration that is not an object-to-object map collapses the state
//! to one whole value).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::Entry;
use crate::clock::Stamp;
use crate::error::Result;
use crate::id::UnitAddress;
use crate::limits::{COMPACT_AFTER_MS, canonical, check_value};
use crate::op::{Op, OpId};

/// The last write to one field of a merge key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldEntry {
    /// The write's stamp.
    pub stamp: Stamp,
    /// The write's op id.
    pub id: OpId,
    /// Who wrote it.
    pub writer: UnitAddress,
    /// The field's value, or `None` if the write removed the field.
    // `Option<Value>` would read `null` back as `None`; a field set to null
    // must stay distinct from a removed field, so presence decides.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub value: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl FieldEntry {
    fn as_entry_key(&self) -> (Stamp, OpId) {
        (self.stamp, self.id)
    }

    /// The same total order as [`Entry::order`]; a removal sorts before a
    /// value when everything else is equal (only forged duplicates get
    /// that far).
    fn order(&self, other: &FieldEntry) -> Ordering {
        self.as_entry_key()
            .cmp(&other.as_entry_key())
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| match (&self.value, &other.value) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) if a == b => Ordering::Equal,
                (Some(a), Some(b)) => canonical(a).cmp(&canonical(b)),
            })
    }
}

/// The state of a merge key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeState {
    /// The newest whole-value write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Entry>,
    /// The newest write to each field, only for writes newer than `base`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldEntry>,
}

impl MergeState {
    pub(crate) fn apply_set(&mut self, entry: Entry) {
        let wall = entry.stamp.wall_ms;
        let Some(newest) = self.in_time(wall) else {
            return;
        };
        self.keep_base(entry);
        self.prune_at(newest.max(wall));
    }

    pub(crate) fn apply_patch(
        &mut self,
        op: &Op,
        set: &BTreeMap<String, Value>,
        remove: &BTreeSet<String>,
    ) {
        let wall = op.stamp.wall_ms;
        let Some(newest) = self.in_time(wall) else {
            return;
        };
        let field = |value: Option<Value>| FieldEntry {
            stamp: op.stamp,
            id: op.id,
            writer: op.writer.clone(),
            value,
        };
        for (name, value) in set {
            self.keep_field(name, field(Some(value.clone())));
        }
        for name in remove {
            self.keep_field(name, field(None));
        }
        // An empty patch leaves no entry: the newest write held is still
        // the one before (the fold must follow what the state holds).
        let held = if set.is_empty() && remove.is_empty() {
            newest
        } else {
            newest.max(wall)
        };
        self.prune_at(held);
    }

    pub(crate) fn merge(&mut self, other: &MergeState) {
        if let Some(base) = &other.base {
            self.keep_base(base.clone());
        }
        for (name, field) in &other.fields {
            self.keep_field(name, field.clone());
        }
        self.prune();
    }

    fn keep_base(&mut self, candidate: Entry) {
        let replace = self
            .base
            .as_ref()
            .is_none_or(|current| candidate.order(current).is_gt());
        if replace {
            self.base = Some(candidate);
        }
    }

    fn keep_field(&mut self, name: &str, candidate: FieldEntry) {
        match self.fields.get_mut(name) {
            Some(current) => {
                if candidate.order(current).is_gt() {
                    *current = candidate;
                }
            }
            None => {
                self.fields.insert(name.to_owned(), candidate);
            }
        }
    }

    fn prune(&mut self) {
        self.prune_at(self.newest_wall());
    }

    /// [`prune`](Self::prune), the newest write's wall time known.
    fn prune_at(&mut self, newest: u64) {
        // Beaten fields go first: folded, they would be laid over the newer
        // base they lost to. The fold's base is older than every field it
        // leaves (those lie at or above the horizon), so it beats none.
        self.drop_beaten();
        self.compact(newest.saturating_sub(COMPACT_AFTER_MS));
    }

    /// Drops the field entries the base is newer than.
    fn drop_beaten(&mut self) {
        if let Some(base) = &self.base {
            let floor = (base.stamp, base.id);
            self.fields.retain(|_, field| field.as_entry_key() > floor);
        }
    }

    /// Writes stamped before this wall time are late (see the module
    /// docs): they change nothing, and a replica refuses them as ops with
    /// [`Error::Stale`](crate::Error::Stale). It is also the horizon of the
    /// fold.
    pub fn floor(&self) -> u64 {
        self.newest_wall().saturating_sub(COMPACT_AFTER_MS)
    }

    /// The newest write's wall time, if a write stamped at `wall` is not
    /// late (see the module docs); `None` if it is: judged alike nowhere,
    /// it changes nothing anywhere.
    fn in_time(&self, wall: u64) -> Option<u64> {
        let newest = self.newest_wall();
        (wall >= newest.saturating_sub(COMPACT_AFTER_MS)).then_some(newest)
    }

    /// The wall time of the newest write held (0 for none).
    fn newest_wall(&self) -> u64 {
        self.fields
            .values()
            .map(|f| f.stamp.wall_ms)
            .chain(self.base.iter().map(|b| b.stamp.wall_ms))
            .max()
            .unwrap_or(0)
    }

    /// Folds field entries older than `horizon` into the base.
    fn compact(&mut self, horizon: u64) {
        if !self.fields.values().any(|f| f.stamp.wall_ms < horizon) {
            return;
        }
        // Inserted one by one: collecting into a map compiles a sort of its own
        // for each place that collects (about 4 KiB of wasm each).
        let mut old: BTreeMap<String, FieldEntry> = BTreeMap::new();
        for (name, field) in &self.fields {
            if field.stamp.wall_ms < horizon {
                old.insert(name.clone(), field.clone());
            }
        }
        let identity = old
            .values()
            .map(|f| (f.stamp, f.id, &f.writer))
            .chain(self.base.iter().map(|b| (b.stamp, b.id, &b.writer)))
            .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let Some((stamp, id, writer)) = identity else {
            return;
        };
        let writer = writer.clone();
        let value = materialize(self.base.as_ref().map(|b| &*b.value), &old).unwrap_or(Value::Null);
        // The base is checked like any value wherever the state is read
        // (a reload, a sync, the relay): one over the value limits would get
        // the whole key refused there. Such fields stay unfolded, as on a
        // replica that has not compacted yet.
        if check_value(&value, "state value").is_err() {
            return;
        }
        self.fields.retain(|_, f| f.stamp.wall_ms >= horizon);
        self.base = Some(Entry {
            stamp,
            id,
            writer,
            value: Arc::new(value),
        });
    }

    /// The materialized value (see the module docs).
    pub fn value(&self) -> Option<Value> {
        materialize(self.base.as_ref().map(|entry| &*entry.value), &self.fields)
    }

    pub(crate) fn migrate(&mut self, step: &mut dyn FnMut(Value) -> Result<Value>) -> Result<()> {
        let Some(value) = self.value() else {
            return Ok(());
        };
        let migrated = step(value)?;
        if let (Value::Object(whole), false) = (&migrated, self.fields.is_empty()) {
            // Each field keeps its own identity, so a field another replica
            // wrote concurrently is not overruled by this one's newest write.
            if let Some(base) = &mut self.base {
                super::migrate_shared(&mut base.value, &mut *step)?;
            }
            for (name, field) in &mut self.fields {
                if field.value.is_some() {
                    field.value = whole.get(name).cloned();
                }
            }
            return Ok(());
        }
        // Not field by field: the migrated whole value inherits the newest
        // write's identity, so it still loses to anything written after it.
        let newest = self
            .fields
            .values()
            .map(|f| (f.stamp, f.id, f.writer.clone()))
            .chain(self.base.iter().map(|b| (b.stamp, b.id, b.writer.clone())))
            .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        if let Some((stamp, id, writer)) = newest {
            self.base = Some(Entry {
                stamp,
                id,
                writer,
                value: Arc::new(migrated),
            });
            self.fields.clear();
        }
        Ok(())
    }
}

/// `base` with `fields` laid over it (see the module docs).
fn materialize(base: Option<&Value>, fields: &BTreeMap<String, FieldEntry>) -> Option<Value> {
    let mut object = match base {
        Some(Value::Object(map)) => map.clone(),
        _ if fields.is_empty() => return base.cloned(),
        _ => Map::new(),
    };
    for (name, field) in fields {
        match &field.value {
            Some(value) => {
                object.insert(name.clone(), value.clone());
            }
            None => {
                object.remove(name);
            }
        }
    }
    Some(Value::Object(object))
}

/// The patch that turns object `old` into object `new`: changed or added
/// fields in `set`, vanished fields in `remove`.
pub(crate) fn diff(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> (BTreeMap<String, Value>, BTreeSet<String>) {
    // Inserted one by one: collecting into a map or a set compiles a sort
    // of its own for each place that collects (about 4 KiB of wasm each).
    let mut set = BTreeMap::new();
    for (name, value) in new {
        if old.get(name) != Some(value) {
            set.insert(name.clone(), value.clone());
        }
    }
    let mut remove = BTreeSet::new();
    for name in old.keys() {
        if !new.contains_key(name) {
            remove.insert(name.clone());
        }
    }
    (set, remove)
}
