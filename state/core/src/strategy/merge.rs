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
    /// A fold the value limits refused, remembered so that it is not tried
    /// again while nothing it would fold changed: see [`RefusedFold`].
    #[serde(skip)]
    refused: RefusedFold,
}

/// The horizon of the last fold [`MergeState::compact`] tried and the
/// value limits refused (the folded value too large or too deep), if
/// nothing it would fold changed since.
///
/// Such fields stay unfolded, and without this every later op would build
/// and measure the whole folded value again only to refuse it again: a
/// peer's large fields stamped near the horizon, then a stream of small
/// patches, would cost each replica (the relay's hub too) a walk of the
/// whole value per op. The fold's outcome depends only on the base and
/// the field entries behind the horizon, so it is skipped while the base
/// and every entry behind the remembered horizon are untouched (this
/// module forgets it wherever it changes them) and no entry lies between
/// that horizon and the new one.
///
/// Not part of the state: two states equal in their writes are equal
/// whatever each remembers, and it is never stored or sent.
#[derive(Debug, Clone, Copy, Default)]
struct RefusedFold(Option<u64>);

impl PartialEq for RefusedFold {
    fn eq(&self, _: &Self) -> bool {
        true
    }
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
            self.forget_refused_fold();
        }
    }

    fn keep_field(&mut self, name: &str, candidate: FieldEntry) {
        // Whether an entry behind the horizon of a refused fold changes.
        let behind = |wall: u64| self.refused.0.is_some_and(|horizon| wall < horizon);
        match self.fields.get_mut(name) {
            Some(current) => {
                if candidate.order(current).is_gt() {
                    let changed = behind(current.stamp.wall_ms) || behind(candidate.stamp.wall_ms);
                    *current = candidate;
                    if changed {
                        self.forget_refused_fold();
                    }
                }
            }
            None => {
                if behind(candidate.stamp.wall_ms) {
                    self.forget_refused_fold();
                }
                self.fields.insert(name.to_owned(), candidate);
            }
        }
    }

    /// Forgets the refused fold (see [`RefusedFold`]): the next prune
    /// tries it again. For whatever changes the base or the fields other
    /// than through [`keep_base`](Self::keep_base) and
    /// [`keep_field`](Self::keep_field).
    pub(crate) fn forget_refused_fold(&mut self) {
        self.refused = RefusedFold(None);
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
            // Forgets no refused fold: every field was newer than the base
            // at the last prune, so what goes here came since, through
            // `keep_base` or `keep_field`, which forget one where it counts.
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
        // The same fold as one refused before: nothing behind its horizon
        // changed (see `RefusedFold`), and nothing lies between that
        // horizon and this one.
        if let RefusedFold(Some(refused)) = self.refused
            && refused <= horizon
            && !self
                .fields
                .values()
                .any(|f| (refused..horizon).contains(&f.stamp.wall_ms))
        {
            self.refused = RefusedFold(Some(horizon));
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
        #[cfg(test)]
        tests::FOLDS_TRIED.with(|tried| tried.set(tried.get() + 1));
        let value = materialize(self.base.as_ref().map(|b| &*b.value), &old).unwrap_or(Value::Null);
        // The base is checked like any value wherever the state is read
        // (a reload, a sync, the relay): one over the value limits would get
        // the whole key refused there. Such fields stay unfolded, as on a
        // replica that has not compacted yet.
        if check_value(&value, "state value").is_err() {
            self.refused = RefusedFold(Some(horizon));
            return;
        }
        self.forget_refused_fold();
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
        // Values change under the same identities.
        self.forget_refused_fold();
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::clock::Stamp;
    use crate::id::TabId;
    use crate::op::Payload;
    use crate::scope::FullKey;
    use serde_json::json;

    thread_local! {
        /// Folds [`MergeState::compact`] built and measured on this thread.
        pub(super) static FOLDS_TRIED: Cell<usize> = const { Cell::new(0) };
    }

    const DAY: u64 = 24 * 60 * 60 * 1000;
    const T0: u64 = 1_700_000_000_000;

    fn tried() -> usize {
        FOLDS_TRIED.with(Cell::get)
    }

    fn patch(tab: u64, seq: u64, wall: u64, set: &[(&str, Value)], remove: &[&str]) -> Op {
        Op {
            id: OpId {
                tab: TabId::new(tab),
                seq,
            },
            key: FullKey::parse("apartment/main/doc").unwrap(),
            writer: "main/b/u".parse().unwrap(),
            stamp: Stamp {
                wall_ms: wall,
                counter: 0,
                tab: TabId::new(tab),
            },
            schema: 1,
            payload: Payload::Patch {
                set: set
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), v.clone()))
                    .collect(),
                remove: remove.iter().map(|n| (*n).to_owned()).collect(),
            },
        }
    }

    /// A whole-value write of `value`, as [`patch`] makes a patch.
    fn whole(tab: u64, seq: u64, wall: u64, value: Value) -> Op {
        let mut op = patch(tab, seq, wall, &[], &[]);
        op.payload = Payload::Set {
            value: Arc::new(value),
        };
        op
    }

    fn apply(state: &mut MergeState, op: &Op) {
        match &op.payload {
            Payload::Patch { set, remove } => state.apply_patch(op, set, remove),
            Payload::Set { value } => state.apply_set(Entry {
                stamp: op.stamp,
                id: op.id,
                writer: op.writer.clone(),
                value: Arc::clone(value),
            }),
            _ => unreachable!("a merge key takes sets and patches"),
        }
    }

    /// The same state twice: `remembering` as the module keeps it, and
    /// `plain`, which forgets every refused fold before each change (so
    /// tries every fold, as before the memo). After each step both must
    /// hold the same writes, folded alike.
    struct Twins {
        remembering: MergeState,
        plain: MergeState,
    }

    impl Twins {
        fn step(&mut self, change: impl Fn(&mut MergeState)) {
            change(&mut self.remembering);
            self.plain.forget_refused_fold();
            change(&mut self.plain);
            assert_eq!(
                serde_json::to_string(&self.remembering).unwrap(),
                serde_json::to_string(&self.plain).unwrap()
            );
        }
    }

    /// Two fields written by two devices, each of which fits a value but
    /// not both together, fall behind the horizon: the fold that would
    /// lay them into the base is refused by the value limits. It is built
    /// and measured once, not again on each later patch, and tried again
    /// once something it would fold changes: then it fits, and folds
    /// exactly as a state that never remembered anything.
    #[test]
    fn a_refused_fold_is_tried_again_only_once_what_it_folds_changed() {
        let big = Value::from("x".repeat(150 << 10));
        let mut twins = Twins {
            remembering: MergeState::default(),
            plain: MergeState::default(),
        };
        twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("b", big.clone())], &[])));
        let before = tried();
        let later = T0 + 15 * DAY;
        twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
        // Both twins tried it, and both refused it: nothing folded.
        assert_eq!(tried() - before, 2);
        assert_eq!(twins.remembering.fields.len(), 3);
        assert!(twins.remembering.base.is_none());

        // A hundred small patches: the plain twin tries the fold each
        // time, the other never.
        let before = tried();
        for i in 1..=100 {
            twins.step(|s| {
                apply(
                    s,
                    &patch(3, 1 + i, later + i, &[("z", Value::from(i))], &[]),
                )
            });
        }
        assert_eq!(tried() - before, 100, "only the plain twin tried");

        // A join bringing nothing behind the horizon changes nothing.
        let mut other = MergeState::default();
        apply(
            &mut other,
            &patch(4, 1, later + 200, &[("y", Value::from(1))], &[]),
        );
        let before = tried();
        twins.step(|s| s.merge(&other));
        assert_eq!(tried() - before, 1, "only the plain twin tried");

        // A join bringing an entry behind the horizon (a newer write of
        // `b`, still old): the fold is tried again, and still refused.
        let mut old = MergeState::default();
        apply(&mut old, &patch(5, 1, T0 + 2, &[("b", big.clone())], &[]));
        let before = tried();
        twins.step(|s| s.merge(&old));
        assert_eq!(tried() - before, 2, "both twins tried");

        // A new write of `a` (in time) takes it out of the fold, which
        // now fits: both fold `b` alone into the base.
        let before = tried();
        twins.step(|s| {
            apply(
                s,
                &patch(3, 200, later + 300, &[("a", Value::from(""))], &[]),
            )
        });
        assert_eq!(tried() - before, 2, "both twins tried");
        let folded = twins.remembering.base.as_ref().expect("b folded");
        assert_eq!(folded.value.get("b"), Some(&big));
        assert!(!twins.remembering.fields.contains_key("b"));
        assert_eq!(
            twins.remembering.value().unwrap()["a"],
            Value::from(""),
            "the newer write of a stays a field"
        );

        // A join bringing a whole value older than the fields behind the
        // horizon but newer than the base they would fold into: the fold
        // is laid over it instead, and now fits.
        let mut twins = Twins {
            remembering: MergeState::default(),
            plain: MergeState::default(),
        };
        let large = json!({ "x": big.clone() });
        twins.step(|s| apply(s, &whole(1, 1, T0, large.clone())));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 20, &[("b", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
        assert!(
            twins.remembering.fields.contains_key("b"),
            "refused: x and b"
        );
        let mut small = MergeState::default();
        apply(&mut small, &whole(4, 1, T0 + 10, json!({ "w": 1 })));
        twins.step(|s| s.merge(&small));
        assert!(
            !twins.remembering.fields.contains_key("b"),
            "b folded over w"
        );
        assert_eq!(
            twins.remembering.value().unwrap(),
            json!({ "w": 1, "b": big.clone(), "z": 0 })
        );

        // A migration that shrinks the values under the same identities,
        // and a split that takes a field out: after each, the next write
        // tries the fold again, which now fits.
        let refused_twins = || {
            let mut twins = Twins {
                remembering: MergeState::default(),
                plain: MergeState::default(),
            };
            twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", big.clone())], &[])));
            twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("b", big.clone())], &[])));
            twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
            assert!(twins.remembering.base.is_none(), "refused");
            twins
        };
        let mut twins = refused_twins();
        twins.step(|s| {
            s.migrate(&mut |mut v| {
                for field in v.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                    if field.is_string() {
                        *field = Value::from("");
                    }
                }
                Ok(v)
            })
            .unwrap();
        });
        twins.step(|s| apply(s, &patch(3, 2, later + 1, &[("z", Value::from(1))], &[])));
        assert!(twins.remembering.base.is_some(), "folded once shrunk");
        let mut twins = refused_twins();
        twins.step(|s| {
            let mut whole = crate::KeyState::Merge(std::mem::take(s));
            let _b = whole.split(&mut |item| {
                matches!(item.kind, crate::strategy::item::ItemKind::Field("b"))
            });
            let crate::KeyState::Merge(rest) = whole else {
                unreachable!()
            };
            *s = rest;
        });
        twins.step(|s| apply(s, &patch(3, 2, later + 1, &[("z", Value::from(1))], &[])));
        assert!(twins.remembering.base.is_some(), "a folded once b left");

        // And once the horizon passes a field written after the refusal,
        // the fold is tried again (it has something new to fold).
        let mut twins = Twins {
            remembering: MergeState::default(),
            plain: MergeState::default(),
        };
        twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("b", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(3, 1, T0 + DAY, &[("c", Value::from(1))], &[])));
        twins.step(|s| apply(s, &patch(3, 2, later, &[("z", Value::from(0))], &[])));
        let before = tried();
        // `c` falls behind the horizon now: tried again (and refused).
        twins.step(|s| {
            apply(
                s,
                &patch(3, 3, later + 2 * DAY, &[("z", Value::from(1))], &[]),
            )
        });
        assert_eq!(tried() - before, 2, "both twins tried");
    }

    /// Random writes, joins and a migration on both twins: fields of up
    /// to 100 KiB (three together pass a value's limit, so folds are
    /// refused and then fit again as fields are rewritten or removed),
    /// stamped over a month, out of order by up to three days. Whatever the remembering
    /// twin skips, it must end each step exactly as the plain one.
    #[test]
    fn remembering_a_refused_fold_never_changes_what_the_state_holds() {
        struct Rng(u64);
        impl Rng {
            fn below(&mut self, n: u64) -> u64 {
                self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) % n
            }
        }
        let large_names = ["a", "b", "c", "d", "e"];
        let small_names = ["p", "q", "r", "s", "t"];
        for seed in 0..8 {
            let mut rng = Rng(seed);
            let mut twins = Twins {
                remembering: MergeState::default(),
                plain: MergeState::default(),
            };
            let mut refused_seen = false;
            for seq in 1..=300 {
                // Time goes on, a month over the run, each write up to
                // three days off it (some late, most in time).
                let wall = T0 + seq * (30 * DAY / 300) + rng.below(3 * DAY);
                // The first week writes the large fields (two of 130 KiB
                // together pass a value's limit); later, mostly other
                // fields, so large ones age past the horizon, and now and
                // then (in the last days) a small value or a removal of a
                // large one, after which a refused fold may fit.
                let large = seq <= 70 || (seq > 250 && rng.below(8) == 0);
                let name = if large {
                    large_names[rng.below(5) as usize]
                } else {
                    small_names[rng.below(5) as usize]
                };
                let value = match rng.below(4) {
                    0..=2 if seq <= 70 => Value::from("x".repeat(130 << 10)),
                    0..=2 => Value::from(seq),
                    _ => Value::Null,
                };
                let tab = 1 + rng.below(3);
                let op = match rng.below(24) {
                    0..=3 => patch(tab, seq, wall, &[], &[name]),
                    // A whole value in the last days, stamped up to a week
                    // back (it may land behind the horizon of a refused
                    // fold; a newer one drops every field before it).
                    4 if seq > 240 => {
                        whole(tab, seq, wall - rng.below(7 * DAY), json!({ "w": seq }))
                    }
                    _ => patch(tab, seq, wall, &[(name, value)], &[]),
                };
                match rng.below(10) {
                    // A join of a state holding the op (and what it folds).
                    0 => {
                        let mut other = MergeState::default();
                        apply(&mut other, &op);
                        twins.step(|s| s.merge(&other));
                    }
                    1 if seq % 50 == 0 => twins.step(|s| {
                        s.migrate(&mut |v| Ok(v)).unwrap();
                    }),
                    _ => twins.step(|s| apply(s, &op)),
                }
                refused_seen |= twins.remembering.refused.0.is_some();
            }
            assert!(refused_seen, "seed {seed}: no fold was ever refused");
        }
    }
}
