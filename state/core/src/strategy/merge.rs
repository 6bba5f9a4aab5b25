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
//! behind. The fold's horizon moves by whole hours ([`FOLD_STEP_MS`]): a
//! fold rebuilds the whole base, and a writer stamping a field at the
//! floor, then another write a millisecond later, and so on, would
//! otherwise have every other op rebuild it. The fold is a function of
//! the state, so replicas holding the same writes fold identically.
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
use std::sync::{Arc, Weak};

use serde::Serialize;
use serde_json::{Map, Value};

use super::Entry;
use crate::clock::Stamp;
use crate::decode::{Fields, FromJson, Why};
use crate::error::Result;
use crate::id::UnitAddress;
use crate::limits::{
    COMPACT_AFTER_MS, FOLD_STEP_MS, MAX_VALUE_BYTES, canonical, check_value, check_value_at,
    encoded_len, exact_len,
};
use crate::op::{Op, OpId};

/// The fold's horizon when the newest write is stamped `newest`: field
/// entries stamped before it are folded.
fn fold_horizon(newest: u64) -> u64 {
    let floor = newest.saturating_sub(COMPACT_AFTER_MS);
    floor - floor % FOLD_STEP_MS
}

/// The last write to one field of a merge key.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// What the value costs inside a folded object, once measured.
    #[serde(skip)]
    measured: Measured,
}

/// What a value costs as one field of a folded object (see
/// [`MergeState::compact`]): measured once per field entry (and per base),
/// so a fold the value limits refuse is told so without building it.
/// Not part of the state: never stored, sent or compared.
#[derive(Debug, Clone, Copy, Default)]
struct Measured(Option<Fit>);

impl PartialEq for Measured {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One field of a folded object, measured.
#[derive(Debug, Clone, Copy)]
struct Fit {
    /// The field's length in the object's JSON text: its name, the colon
    /// and its value.
    len: usize,
    /// Whether the value alone, one level down, fails the value limits
    /// (too deep there, or too large whatever holds it): then so does any
    /// object holding it as a field.
    refused: bool,
}

impl Fit {
    fn of(name: &str, value: &Value) -> Self {
        Self {
            len: encoded_len(name, usize::MAX) + 1 + exact_len(value, usize::MAX),
            refused: check_value_at(value, 1, "state value").is_err(),
        }
    }
}

impl FromJson for FieldEntry {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a field entry")?;
        Ok(Self {
            stamp: fields.req("stamp")?,
            id: fields.req("id")?,
            writer: fields.req("writer")?,
            // Present (`null` included) is a value; absent, a removal.
            value: fields.take("value").map(crate::decode::Node::into_value),
            measured: Measured::default(),
        })
    }
}

impl FromJson for MergeState {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a merge state")?;
        Ok(Self {
            base: fields.opt("base")?,
            fields: fields.or_default("fields")?,
            base_measured: BaseMeasured::default(),
        })
    }
}

crate::decode::deserialize_through_tree!(FieldEntry, MergeState);

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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MergeState {
    /// The newest whole-value write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Entry>,
    /// The newest write to each field, only for writes newer than `base`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldEntry>,
    /// The base's fields, measured (see [`Measured`]).
    #[serde(skip)]
    base_measured: BaseMeasured,
}

/// The fields of a base object, measured once per base value. Not part
/// of the state, as [`Measured`].
#[derive(Debug, Clone, Default)]
struct BaseMeasured(Option<Arc<BaseFits>>);

/// A base object's fields, measured.
#[derive(Debug)]
struct BaseFits {
    /// The value measured: a weak handle, which keeps its allocation from
    /// being reused (so a pointer equal to it is the same value) but not
    /// its contents alive once the base is gone.
    value: Weak<Value>,
    /// Each field's [`Fit`].
    fits: BTreeMap<String, Fit>,
    /// The sum of their lengths.
    len: usize,
    /// The fields that fail the value limits on their own (mostly none).
    refused: Vec<String>,
}

impl PartialEq for BaseMeasured {
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
            measured: Measured::default(),
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
        self.compact(fold_horizon(newest));
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
    /// [`Error::Stale`](crate::Error::Stale). The fold's horizon is this,
    /// rounded down to a whole [`FOLD_STEP_MS`].
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
        if self.fold_is_refused(horizon) {
            #[cfg(test)]
            tests::FOLDS_MEASURED_OUT.with(|out| out.set(out.get() + 1));
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
        tests::FOLDS_BUILT.with(|built| built.set(built.get() + 1));
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

    /// Whether the value limits refuse the fold at `horizon` for certain,
    /// told from the measures of the fields it would hold (each measured
    /// once), without building it: the folded object's exact length, and
    /// whether a field fails the limits on its own there. Where they do
    /// not tell, the fold is built and checked.
    ///
    /// Fields too large to fold together stay unfolded, and every later op
    /// tries the fold again: built each time, a peer's large fields behind
    /// the horizon, then a stream of small patches, would cost every
    /// replica (the relay's hub too) a walk of the whole value per op.
    fn fold_is_refused(&mut self, horizon: u64) -> bool {
        #[cfg(test)]
        if tests::UNMEASURED.with(std::cell::Cell::get) {
            return false;
        }
        // The folded object: the base's fields (if it is an object) less
        // those an old entry sets or removes, and the old entries' values.
        let base = match &self.base {
            Some(base) if base.value.is_object() => Some(self.base_fits(&Arc::clone(&base.value))),
            _ => None,
        };
        let (mut count, mut len) = base.as_ref().map_or((0, 0), |b| (b.fits.len(), b.len));
        let mut refused = false;
        for (name, field) in &mut self.fields {
            if field.stamp.wall_ms >= horizon {
                continue;
            }
            if let Some(fit) = base.as_ref().and_then(|b| b.fits.get(name)) {
                count -= 1;
                len -= fit.len;
            }
            if let Some(value) = &field.value {
                let fit = *field.measured.0.get_or_insert_with(|| Fit::of(name, value));
                count += 1;
                len = len.saturating_add(fit.len);
                refused |= fit.refused;
            }
        }
        // A base field left in the object that fails on its own.
        if let Some(base) = &base {
            refused |= base.refused.iter().any(|name| {
                self.fields
                    .get(name)
                    .is_none_or(|field| field.stamp.wall_ms >= horizon)
            });
        }
        // Braces, and a comma between fields.
        let size = len.saturating_add(2 + count.saturating_sub(1));
        refused || size > MAX_VALUE_BYTES
    }

    /// The measures of the base object `value`'s fields: kept while the
    /// base is that value.
    fn base_fits(&mut self, value: &Arc<Value>) -> Arc<BaseFits> {
        if let Some(kept) = &self.base_measured.0
            && std::ptr::eq(kept.value.as_ptr(), Arc::as_ptr(value))
        {
            return Arc::clone(kept);
        }
        let mut fits = BTreeMap::new();
        let mut len = 0usize;
        let mut refused = Vec::new();
        if let Value::Object(map) = &**value {
            for (name, field) in map {
                let fit = Fit::of(name, field);
                len = len.saturating_add(fit.len);
                if fit.refused {
                    refused.push(name.clone());
                }
                fits.insert(name.clone(), fit);
            }
        }
        let measured = Arc::new(BaseFits {
            value: Arc::downgrade(value),
            fits,
            len,
            refused,
        });
        self.base_measured = BaseMeasured(Some(Arc::clone(&measured)));
        measured
    }

    /// The materialized value (see the module docs).
    pub fn value(&self) -> Option<Value> {
        materialize(self.base.as_ref().map(|entry| &*entry.value), &self.fields)
    }

    pub(crate) fn migrate(&mut self, step: &mut dyn FnMut(Value) -> Result<Value>) -> Result<()> {
        // Values change under the same identities: measured again.
        self.base_measured = BaseMeasured(None);
        for field in self.fields.values_mut() {
            field.measured = Measured::default();
        }
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
        /// Folds [`MergeState::compact`] built (and checked) on this thread.
        pub(super) static FOLDS_BUILT: Cell<usize> = const { Cell::new(0) };
        /// Folds it found refused from the measures alone, unbuilt.
        pub(super) static FOLDS_MEASURED_OUT: Cell<usize> = const { Cell::new(0) };
        /// Set while the plain twin changes: no fold is told refused from
        /// the measures (every fold is built and checked, as before them).
        pub(super) static UNMEASURED: Cell<bool> = const { Cell::new(false) };
    }

    const DAY: u64 = 24 * 60 * 60 * 1000;
    const T0: u64 = 1_700_000_000_000;

    fn built() -> usize {
        FOLDS_BUILT.with(Cell::get)
    }

    fn measured_out() -> usize {
        FOLDS_MEASURED_OUT.with(Cell::get)
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

    /// The same state twice: `measured` as the module keeps it, and
    /// `plain`, changed with every fold built and checked (as before the
    /// measures). After each step both must hold the same writes, folded
    /// alike.
    struct Twins {
        measured: MergeState,
        plain: MergeState,
    }

    impl Twins {
        fn new() -> Self {
            Self {
                measured: MergeState::default(),
                plain: MergeState::default(),
            }
        }

        fn step(&mut self, change: impl Fn(&mut MergeState)) {
            change(&mut self.measured);
            UNMEASURED.with(|unmeasured| unmeasured.set(true));
            change(&mut self.plain);
            UNMEASURED.with(|unmeasured| unmeasured.set(false));
            assert_eq!(
                serde_json::to_string(&self.measured).unwrap(),
                serde_json::to_string(&self.plain).unwrap()
            );
        }
    }

    /// Twins holding `a` and `b`, 150 KiB each, written by two devices at
    /// `T0`: each fits a value, both together do not.
    fn two_large_fields() -> (Value, Twins) {
        let big = Value::from("x".repeat(150 << 10));
        let mut twins = Twins::new();
        twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("b", big.clone())], &[])));
        (big, twins)
    }

    /// Two fields written by two devices, each of which fits a value but
    /// not both together, fall behind the horizon: the fold that would lay
    /// them into the base is refused by the value limits. It is told so
    /// from the fields' measures, never built, on every later patch; and
    /// it is built once it fits, folding exactly as before.
    #[test]
    fn a_fold_too_large_is_told_from_the_measures_and_built_once_it_fits() {
        let (big, mut twins) = two_large_fields();
        let (built_before, out_before) = (built(), measured_out());
        let later = T0 + 15 * DAY;
        twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
        // Refused: the plain twin built it, the other did not.
        assert_eq!(built() - built_before, 1);
        assert_eq!(measured_out() - out_before, 1);
        assert_eq!(twins.measured.fields.len(), 3);
        assert!(twins.measured.base.is_none());

        // A hundred small patches: only the plain twin builds the fold.
        let built_before = built();
        for i in 1..=100 {
            twins.step(|s| {
                apply(
                    s,
                    &patch(3, 1 + i, later + i, &[("z", Value::from(i))], &[]),
                )
            });
        }
        assert_eq!(built() - built_before, 100, "only the plain twin built it");

        // A join bringing a newer `b`, still behind the horizon: refused
        // again, from its measure.
        let mut old = MergeState::default();
        apply(&mut old, &patch(5, 1, T0 + 2, &[("b", big.clone())], &[]));
        let built_before = built();
        twins.step(|s| s.merge(&old));
        assert_eq!(built() - built_before, 1, "only the plain twin built it");

        // A new write of `a` (in time) takes it out of the fold, which now
        // fits: both build it, and fold `b` alone into the base.
        let built_before = built();
        twins.step(|s| {
            apply(
                s,
                &patch(3, 200, later + 300, &[("a", Value::from(""))], &[]),
            )
        });
        assert_eq!(built() - built_before, 2, "both built it");
        let folded = twins.measured.base.as_ref().expect("b folded");
        assert_eq!(folded.value.get("b"), Some(&big));
        assert!(!twins.measured.fields.contains_key("b"));
        assert_eq!(twins.measured.value().unwrap()["a"], Value::from(""));
    }

    /// What an attacker with write access tried against the first version
    /// (which remembered a refused fold until an entry behind it changed):
    /// rewriting a small field at the floor, then moving the newest write
    /// on (by an hour, so the fold's horizon steps past it), so an entry
    /// behind the fold changes on every other op. The measures still tell
    /// the fold refused: nothing large is walked again.
    #[test]
    fn rewriting_a_field_at_the_floor_never_builds_a_refused_fold_again() {
        let (_, mut twins) = two_large_fields();
        twins.step(|s| apply(s, &patch(3, 1, T0 + 2, &[("p", Value::from(0))], &[])));
        let later = T0 + 15 * DAY;
        let built_before = built();
        for i in 0..100 {
            let newest = later + i * FOLD_STEP_MS;
            twins.step(|s| apply(s, &patch(4, 1 + i, newest, &[("q", Value::from(i))], &[])));
            let floor = newest - COMPACT_AFTER_MS;
            twins.step(|s| apply(s, &patch(5, 1 + i, floor, &[("p", Value::from(i))], &[])));
        }
        assert_eq!(built() - built_before, 200, "only the plain twin built it");
        assert!(twins.measured.base.is_none(), "never folded");
        assert!(twins.measured.fields.contains_key("p"));
    }

    /// A value nested so deep that it passes as a value but not one level
    /// down, as a field of an object.
    fn too_deep_for_a_field() -> Value {
        let mut deep = json!(1);
        while check_value_at(&deep, 1, "probe").is_ok() {
            deep = json!([deep]);
        }
        deep
    }

    /// A base near a value's limit, and a writer stamping a small field
    /// at the floor, then another a millisecond later, and so on: each of
    /// its floor writes falls behind the floor at once, and folding each
    /// would rebuild the whole base every other op. The fold's horizon
    /// moves by whole hours, so they wait, and fold together once the
    /// newest write reaches the next hour (not a millisecond before).
    #[test]
    fn fields_stamped_at_the_floor_fold_once_an_hour_not_once_an_op() {
        let mut twins = Twins::new();
        let base = json!({ "x": "x".repeat(200 << 10) });
        twins.step(|s| apply(s, &whole(1, 1, T0, base.clone())));
        let later = T0 + 15 * DAY;
        let hour = later - later % FOLD_STEP_MS;
        let built_before = built();
        for i in 0..100 {
            let newest = hour + 1 + i;
            twins.step(|s| apply(s, &patch(4, 1 + i, newest, &[("q", Value::from(i))], &[])));
            let floor = newest - COMPACT_AFTER_MS;
            let name = format!("p{i}");
            twins.step(|s| apply(s, &patch(5, 1 + i, floor, &[(&name, Value::from(i))], &[])));
        }
        assert_eq!(built() - built_before, 0, "nothing behind the horizon");
        assert_eq!(twins.measured.fields.len(), 101, "p0..p99 and q wait");
        let last = hour + FOLD_STEP_MS - 1;
        twins.step(|s| apply(s, &patch(4, 500, last, &[("q", Value::from(-1))], &[])));
        assert_eq!(
            built() - built_before,
            0,
            "the last millisecond of the hour"
        );
        assert_eq!(twins.measured.fields.len(), 101);
        twins.step(|s| apply(s, &patch(4, 501, last + 1, &[("q", Value::from(-2))], &[])));
        assert_eq!(built() - built_before, 2, "one fold per twin");
        assert_eq!(twins.measured.fields.len(), 1, "only q is left");
        assert_eq!(twins.measured.value().unwrap()["p99"], Value::from(99));
    }

    /// Between the fold's horizon and the floor: the newest write half an
    /// hour past a whole hour of the window, a field written just under
    /// that hour, then another written exactly at the floor (in time).
    /// The first may not be folded (the fold's base, carrying its
    /// identity, would beat the second, which it never touched): the
    /// horizon is the floor rounded down, not up.
    #[test]
    fn a_write_admitted_at_the_floor_is_never_beaten_by_a_fold() {
        let hour = T0 - T0 % FOLD_STEP_MS;
        let mut twins = Twins::new();
        let newest = hour + COMPACT_AFTER_MS + FOLD_STEP_MS / 2 + 1;
        twins.step(|s| apply(s, &patch(1, 1, newest, &[("f1", Value::from(1))], &[])));
        twins.step(|s| {
            apply(
                s,
                &patch(
                    2,
                    1,
                    hour + FOLD_STEP_MS - 1,
                    &[("f3", Value::from(3))],
                    &[],
                ),
            )
        });
        let floor = newest - COMPACT_AFTER_MS;
        assert_eq!(twins.measured.floor(), floor);
        twins.step(|s| apply(s, &patch(3, 1, floor, &[("f2", Value::from(2))], &[])));
        assert_eq!(
            twins.measured.value().unwrap(),
            json!({ "f1": 1, "f2": 2, "f3": 3 })
        );
        assert!(twins.measured.base.is_none(), "nothing folded yet");
    }

    /// A field nested so deep that it passes as a value but not one level
    /// down, as a field of the folded object: the fold is refused for
    /// depth, told from the field's measure.
    #[test]
    fn a_fold_too_deep_is_told_from_the_measures() {
        let deep = too_deep_for_a_field();
        assert!(check_value(&deep, "probe").is_ok());
        let mut twins = Twins::new();
        twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", deep.clone())], &[])));
        let (built_before, out_before) = (built(), measured_out());
        twins.step(|s| {
            apply(
                s,
                &patch(2, 1, T0 + 15 * DAY, &[("z", Value::from(0))], &[]),
            )
        });
        assert_eq!(built() - built_before, 1, "only the plain twin built it");
        assert_eq!(measured_out() - out_before, 1);
        assert!(twins.measured.fields.contains_key("a"), "not folded");
    }

    /// A base (joined as it is, never checked) holding a field too deep
    /// for a value: any fold that leaves that field in place is refused,
    /// told from the base's measures; one that replaces it is built.
    #[test]
    fn a_base_field_too_deep_counts_until_an_old_field_replaces_it() {
        let deep = too_deep_for_a_field();
        let later = T0 + 15 * DAY;
        let mut base = MergeState::default();
        apply(&mut base, &whole(1, 1, T0, json!({ "a": deep, "k": 1 })));
        for (replaced, folded) in [(false, false), (true, true)] {
            let mut twins = Twins::new();
            twins.step(|s| s.merge(&base));
            let name = if replaced { "a" } else { "b" };
            twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[(name, Value::from(0))], &[])));
            let out_before = measured_out();
            twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
            assert_eq!(measured_out() - out_before, usize::from(!folded));
            assert_eq!(twins.measured.fields.contains_key(name), !folded);
        }
        // A write of `a` in time does not take it out of the fold (the
        // fold lays only old entries over the base): still refused.
        let mut twins = Twins::new();
        twins.step(|s| s.merge(&base));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("b", Value::from(0))], &[])));
        twins.step(|s| apply(s, &patch(2, 2, later - 1, &[("a", Value::from(0))], &[])));
        let out_before = measured_out();
        twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
        assert_eq!(measured_out() - out_before, 1);
        assert!(twins.measured.fields.contains_key("b"), "not folded");
    }

    /// A base object holding a large field, and an old field that fits a
    /// value but not beside it; then a join of an older base without it
    /// (the fold now fits over it), and a migration that shrinks the
    /// values under the same identities (measured again).
    #[test]
    fn the_base_s_fields_count_and_are_measured_again_when_they_change() {
        let big = Value::from("x".repeat(150 << 10));
        let later = T0 + 15 * DAY;
        let mut twins = Twins::new();
        twins.step(|s| apply(s, &whole(1, 1, T0, json!({ "x": big.clone() }))));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 20, &[("b", big.clone())], &[])));
        let out_before = measured_out();
        twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
        assert_eq!(measured_out() - out_before, 1, "x and b together: refused");
        assert!(twins.measured.fields.contains_key("b"));
        // `b` rewritten at its own place would fit over a base without x.
        let mut small = MergeState::default();
        apply(&mut small, &whole(4, 1, T0 + 10, json!({ "w": 1 })));
        twins.step(|s| s.merge(&small));
        assert!(!twins.measured.fields.contains_key("b"), "b folded over w");
        assert_eq!(
            twins.measured.value().unwrap(),
            json!({ "w": 1, "b": big.clone(), "z": 0 })
        );

        let mut twins = Twins::new();
        twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(2, 1, T0 + 20, &[("b", big.clone())], &[])));
        twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
        assert!(twins.measured.fields.contains_key("b"), "refused");
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
        assert!(
            !twins.measured.fields.contains_key("b"),
            "folded once shrunk"
        );
    }

    /// `n` such that `build(n)`'s JSON text is `target` bytes long (its
    /// length grows by one with `n`).
    fn sized(target: usize, build: impl Fn(usize) -> Value) -> usize {
        let at = |n| serde_json::to_string(&build(n)).unwrap().len();
        target + 1000 - at(1000)
    }

    /// Folds at the limit to the byte: one whose text is exactly a value's
    /// limit is built and folds, one a byte longer is told refused, with
    /// old fields only and with old fields laid over a base object (which
    /// one of them overrides: the base's field no longer counts).
    #[test]
    fn a_fold_at_the_limit_to_the_byte_is_told_apart() {
        let x = |n: usize| Value::from("x".repeat(n));
        let later = T0 + 15 * DAY;
        for extra in [0, 1] {
            // Old fields only: {"a": …, "b": …}.
            let a = x(150 << 10);
            let n = sized(
                MAX_VALUE_BYTES + extra,
                |n| json!({ "a": a.clone(), "b": x(n) }),
            );
            let mut twins = Twins::new();
            twins.step(|s| apply(s, &patch(1, 1, T0, &[("a", a.clone())], &[])));
            twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("b", x(n))], &[])));
            let out_before = measured_out();
            twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
            assert_eq!(twins.measured.base.is_some(), extra == 0, "extra {extra}");
            assert_eq!(measured_out() - out_before, extra, "told refused unbuilt");

            // Over a base {"x": …, "y": …} whose `x` an old field empties:
            // {"x": "", "y": …, "b": …}.
            let y = x(100 << 10);
            let n = sized(
                MAX_VALUE_BYTES + extra,
                |n| json!({ "x": "", "y": y.clone(), "b": x(n) }),
            );
            let mut twins = Twins::new();
            twins.step(|s| {
                apply(
                    s,
                    &whole(1, 1, T0, json!({ "x": x(140 << 10), "y": y.clone() })),
                )
            });
            twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("x", Value::from(""))], &[])));
            twins.step(|s| apply(s, &patch(2, 2, T0 + 2, &[("b", x(n))], &[])));
            let out_before = measured_out();
            twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
            assert_eq!(measured_out() - out_before, extra, "told refused unbuilt");
            assert_eq!(
                twins.measured.fields.contains_key("b"),
                extra == 1,
                "extra {extra}: folded only at the limit"
            );

            // The same base, whose `x` an old entry removes:
            // {"y": …, "b": …}.
            let n = sized(
                MAX_VALUE_BYTES + extra,
                |n| json!({ "y": y.clone(), "b": x(n) }),
            );
            let mut twins = Twins::new();
            twins.step(|s| {
                apply(
                    s,
                    &whole(1, 1, T0, json!({ "x": x(140 << 10), "y": y.clone() })),
                )
            });
            twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[], &["x"])));
            twins.step(|s| apply(s, &patch(2, 2, T0 + 2, &[("b", x(n))], &[])));
            let out_before = measured_out();
            twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
            assert_eq!(measured_out() - out_before, extra, "told refused unbuilt");
            assert_eq!(twins.measured.fields.contains_key("b"), extra == 1);

            // Names and text that need escapes, a float, nested values,
            // over a base of the same kind.
            let odd = json!({ "tab\t": [1.5, -2, {"q\"uote": "line\nbreak"}], "é": 3.25e-7 });
            let n = sized(
                MAX_VALUE_BYTES + extra,
                |n| json!({ "w\\": odd.clone(), "n\"": x(n), "s": "\u{1}\u{7f}" }),
            );
            let mut twins = Twins::new();
            twins.step(|s| apply(s, &whole(1, 1, T0, json!({ "s": "\u{1}\u{7f}" }))));
            twins.step(|s| apply(s, &patch(2, 1, T0 + 1, &[("w\\", odd.clone())], &[])));
            twins.step(|s| apply(s, &patch(2, 2, T0 + 2, &[("n\"", x(n))], &[])));
            let out_before = measured_out();
            twins.step(|s| apply(s, &patch(3, 1, later, &[("z", Value::from(0))], &[])));
            assert_eq!(measured_out() - out_before, extra, "told refused unbuilt");
            assert_eq!(twins.measured.fields.contains_key("n\""), extra == 1);
        }
    }

    /// Random writes, joins and a migration on both twins: fields of 130
    /// KiB (two together pass a value's limit, so folds are refused and
    /// then fit again as fields are rewritten or removed), a base now and
    /// then, stamped over a month, out of order by up to three days.
    /// Whatever the measured twin leaves unbuilt, it must end each step
    /// exactly as the plain one.
    #[test]
    fn measuring_a_fold_never_changes_what_the_state_holds() {
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
            let mut twins = Twins::new();
            let (out_before, built_before) = (measured_out(), built());
            for seq in 1..=300 {
                // Time goes on, a month over the run, each write up to
                // three days off it (some late, most in time).
                let wall = T0 + seq * (30 * DAY / 300) + rng.below(3 * DAY);
                // The first week writes the large fields; later, mostly
                // other fields, so large ones age past the horizon, and in
                // the last days a small value or a removal of a large one,
                // after which a refused fold may fit.
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
                    // back (a newer one drops every field before it).
                    4 if seq > 240 => {
                        whole(tab, seq, wall - rng.below(7 * DAY), json!({ "w": seq }))
                    }
                    _ => patch(tab, seq, wall, &[(name, value)], &[]),
                };
                match rng.below(10) {
                    // A join of a state holding the op.
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
            }
            assert!(
                measured_out() > out_before,
                "seed {seed}: no fold was ever told refused"
            );
            assert!(built() > built_before, "seed {seed}: no fold was built");
        }
    }
}
