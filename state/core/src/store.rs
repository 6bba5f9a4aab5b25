//! The store: one tab's replica of every declared key.
//!
//! It is synchronous and single-owner (`&mut self` for writes), so the
//! reactive layer can keep it in an `Rc<RefCell<_>>` or a local stored value
//! and drive it from event handlers. Every mutating call reports what
//! changed ([`Change`]: full key, old and new value) so the layer can notify
//! only the affected subscribers, and path subscribers can ask
//! [`Path::changed`](crate::Path::changed) cheaply.
//!
//! What the store does not do: talk to the browser, hold signals, or send
//! messages by itself. Writes return the [`Message`] to broadcast; incoming
//! text goes through [`Store::receive_text`]; persistence is an explicit
//! [`Store::persist`] the layer calls (coalesced, at most once per frame).

mod batch;
mod persist;
mod revert;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use batch::Batch;
pub use persist::{LoadReport, PersistReport, Quarantine};

use crate::clock::{Clock, Hlc, Stamp};
use crate::error::{Error, Result};
use crate::id::{KeyName, TabId, UnitAddress};
use crate::key::{KeySpec, SharedKey};
use crate::limits::{MAX_MESSAGE_BYTES, MAX_SYNC_STATES, check_value, encoded_len, serde_reason};
use crate::message::{Event, Message, SyncEntry};
use crate::op::{Op, OpGroup, OpId, Payload};
use crate::path::Path;
use crate::permission::Action;
use crate::scope::{FullKey, Lifetime, Scope};
use crate::snapshot::{Snapshot, SnapshotEntry};
use crate::strategy::{Conflict, KeyState, Strategy, Totals, merge_diff};

/// A key's value changed, or (for a user-resolve key) its set of conflicting
/// values did; in that case `old` may equal `new`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The key.
    pub key: FullKey,
    /// The value before (the default if the key was never written).
    pub old: Value,
    /// The value after.
    pub new: Value,
}

impl Change {
    /// Whether the change is visible at `path` (for selective
    /// subscriptions).
    pub fn touches(&self, path: &Path) -> bool {
        path.changed(&self.old, &self.new)
    }
}

/// The result of a local write.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The op (also applied locally).
    pub op: Op,
    /// The change it made, if the value changed.
    pub change: Option<Change>,
    /// What to broadcast to other tabs; `None` for memory-only keys.
    pub message: Option<Message>,
}

/// The result of a batch (or a restore).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchWrite {
    /// Every op of the batch, in order.
    pub group: OpGroup,
    /// One change per key whose value changed.
    pub changes: Vec<Change>,
    /// What to broadcast (the ops of keys that sync); `None` if nothing.
    pub message: Option<Message>,
}

/// What handling an incoming message produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inbound {
    /// Values that changed.
    pub changes: Vec<Change>,
    /// Messages to send back (state for a tab that asked).
    pub replies: Vec<Message>,
    /// Events to dispatch to listeners whose address the event
    /// [`reaches`](Event::reaches).
    pub events: Vec<Event>,
    /// What was refused, with why. Refusals never change state.
    pub errors: Vec<Error>,
}

/// A key's declaration, value and open conflict ids before a group of ops.
type Before = (Arc<KeySpec>, Value, Vec<OpId>);

/// What a local write asks for, before the strategy turns it into a payload.
#[derive(Debug, Clone)]
pub(crate) enum Intent {
    Set(Value),
    Add(i64),
    Resolve(Value),
}

/// One tab's replica.
pub struct Store {
    tab: TabId,
    clock: Box<dyn Clock>,
    hlc: Hlc,
    seq: u64,
    specs: BTreeMap<Scope, BTreeMap<KeyName, Arc<KeySpec>>>,
    states: BTreeMap<FullKey, KeyState>,
    dirty: BTreeSet<FullKey>,
    quarantined: BTreeMap<FullKey, Quarantine>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("tab", &self.tab)
            .field("seq", &self.seq)
            .field("keys", &self.states.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty replica for `tab`, reading time from `clock`.
    pub fn new(tab: TabId, clock: impl Clock + 'static) -> Self {
        Self {
            tab,
            clock: Box::new(clock),
            hlc: Hlc::new(tab),
            seq: 0,
            specs: BTreeMap::new(),
            states: BTreeMap::new(),
            dirty: BTreeSet::new(),
            quarantined: BTreeMap::new(),
        }
    }

    /// This replica's tab id.
    pub fn tab(&self) -> TabId {
        self.tab
    }

    // ----- declarations -------------------------------------------------

    /// Declares a key. Declaring the same key again with the same rules is
    /// a no-op (units re-mount); with different rules or another Rust type
    /// it is [`Error::KeyMismatch`].
    pub fn declare<T>(&mut self, key: &SharedKey<T>) -> Result<()> {
        let spec = key.spec();
        let by_name = self.specs.entry(spec.scope()).or_default();
        match by_name.get(spec.name().as_str()) {
            Some(existing) if Arc::ptr_eq(existing, spec) => Ok(()),
            Some(existing) => {
                existing
                    .same_declaration(spec)
                    .map_err(|reason| Error::KeyMismatch {
                        key: spec.label(),
                        reason,
                    })
            }
            None => {
                by_name.insert(spec.name().clone(), Arc::clone(spec));
                Ok(())
            }
        }
    }

    /// The declaration a typed key refers to, checked to be the same.
    fn registered(&self, spec: &Arc<KeySpec>) -> Result<Arc<KeySpec>> {
        let found = self
            .specs
            .get(&spec.scope())
            .and_then(|by_name| by_name.get(spec.name().as_str()))
            .ok_or_else(|| Error::UnknownKey { key: spec.label() })?;
        if !Arc::ptr_eq(found, spec) {
            found
                .same_declaration(spec)
                .map_err(|reason| Error::KeyMismatch {
                    key: spec.label(),
                    reason,
                })?;
        }
        Ok(Arc::clone(found))
    }

    /// The declaration behind a full key (from the wire or storage).
    pub fn spec_for(&self, key: &FullKey) -> Result<Arc<KeySpec>> {
        self.specs
            .get(&key.scope())
            .and_then(|by_name| by_name.get(key.name()))
            .cloned()
            .ok_or_else(|| Error::UnknownKey {
                key: key.to_string(),
            })
    }

    /// Every declared key.
    pub fn specs(&self) -> impl Iterator<Item = &Arc<KeySpec>> {
        self.specs.values().flat_map(BTreeMap::values)
    }

    fn check_access(
        spec: &KeySpec,
        key: &FullKey,
        unit: &UnitAddress,
        action: Action,
    ) -> Result<()> {
        let access = match action {
            Action::Read | Action::Subscribe => &spec.permissions().read,
            Action::Write => &spec.permissions().write,
        };
        if !key.reachable_by(unit) {
            return Err(Error::OutOfScope {
                key: key.clone(),
                unit: unit.clone(),
            });
        }
        if !access.allows(unit) {
            return Err(Error::PermissionDenied {
                key: key.clone(),
                unit: unit.clone(),
                action,
            });
        }
        Ok(())
    }

    /// Resolves a typed key for `unit` and checks `action` is allowed.
    fn open<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        action: Action,
    ) -> Result<(Arc<KeySpec>, FullKey)> {
        let spec = self.registered(key.spec())?;
        let full = spec.full_key(unit);
        Self::check_access(&spec, &full, unit, action)?;
        Ok((spec, full))
    }

    // ----- reads --------------------------------------------------------

    fn value_or_default(spec: &KeySpec, state: Option<&KeyState>) -> Value {
        state
            .and_then(KeyState::value)
            .unwrap_or_else(|| spec.default_value().clone())
    }

    fn current(&self, spec: &KeySpec, key: &FullKey) -> Value {
        Self::value_or_default(spec, self.states.get(key))
    }

    /// The current value, borrowed where the state holds it whole: reads
    /// that decode or walk it need no copy.
    fn current_ref<'s>(&'s self, spec: &'s KeySpec, key: &FullKey) -> Cow<'s, Value> {
        self.states
            .get(key)
            .and_then(KeyState::value_ref)
            .unwrap_or(Cow::Borrowed(spec.default_value()))
    }

    /// The value of `key` as seen by `unit`, decoded as `T`.
    ///
    /// A value that does not decode (possible for merge keys whose
    /// concurrent field edits combine into something the type rejects) is
    /// [`Error::TypeMismatch`]; the state itself is left alone.
    pub fn get<T: DeserializeOwned>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<T> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        let value = self.current_ref(&spec, &full);
        T::deserialize(value.as_ref()).map_err(|err| Error::TypeMismatch {
            key: full.to_string(),
            reason: serde_reason(&err),
        })
    }

    /// The value of `key` as JSON (the default if never written).
    pub fn get_value<T>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<Value> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        Ok(self.current(&spec, &full))
    }

    /// The sub-value at `path`, if present.
    pub fn get_path<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &Path,
    ) -> Result<Option<Value>> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        Ok(path.get(&self.current_ref(&spec, &full)).cloned())
    }

    /// Checks that `unit` may subscribe to `key` and returns the full key
    /// whose [`Change`]s it should watch.
    pub fn subscribe<T>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<FullKey> {
        self.open(unit, key, Action::Subscribe)
            .map(|(_, full)| full)
    }

    /// Concurrent values of a user-resolve key, winner first (empty when
    /// there is no conflict). Entries that do not decode as `T` are
    /// reported as [`Error::TypeMismatch`].
    pub fn conflicts<T: DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
    ) -> Result<Vec<Conflict<T>>> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        if spec.strategy() != Strategy::UserResolve {
            return Err(Error::WrongStrategy {
                key: full.to_string(),
                strategy: spec.strategy(),
                operation: "conflicts",
            });
        }
        let conflicts = self
            .states
            .get(&full)
            .map(KeyState::conflicts)
            .unwrap_or_default();
        conflicts
            .into_iter()
            .map(|c| {
                let value = T::deserialize(&c.value).map_err(|err| Error::TypeMismatch {
                    key: full.to_string(),
                    reason: serde_reason(&err),
                })?;
                Ok(Conflict {
                    id: c.id,
                    writer: c.writer,
                    stamp: c.stamp,
                    value,
                })
            })
            .collect()
    }

    /// The replicated state of a key, if it has one.
    pub fn state(&self, key: &FullKey) -> Option<&KeyState> {
        self.states.get(key)
    }

    /// Who wrote `key`'s current value, and when (see
    /// [`KeyState::last_write`]).
    pub fn last_write(&self, key: &FullKey) -> Option<(UnitAddress, Stamp)> {
        self.states
            .get(key)
            .and_then(KeyState::last_write)
            .map(|(writer, stamp)| (writer.clone(), stamp))
    }

    /// Every key's replicated state (what the simulator compares).
    pub fn states(&self) -> &BTreeMap<FullKey, KeyState> {
        &self.states
    }

    // ----- local writes -------------------------------------------------

    /// Writes `value` to `key` on behalf of `unit`.
    ///
    /// Per strategy: last-write-wins and merge always succeed (merge sends
    /// only the changed top-level fields); first-write-wins fails with
    /// [`Error::FirstWriteWins`] once the key holds a value; sum turns the
    /// write into an increment by the difference from the current total;
    /// user-resolve supersedes every value currently visible (so writing
    /// while a conflict is shown resolves it).
    pub fn set<T: Serialize>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        let (spec, full) = self.open(unit, key, Action::Write)?;
        let value = Self::to_json(key, &full, &value)?;
        self.write(&spec, full, unit, Intent::Set(value))
    }

    /// Adds `delta` to a sum key.
    pub fn increment<T>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<Write> {
        let (spec, full) = self.open(unit, key, Action::Write)?;
        self.write(&spec, full, unit, Intent::Add(delta))
    }

    /// Resolves a user-resolve key's conflict with `value` (current,
    /// incoming or custom): a write that supersedes every visible value.
    pub fn resolve<T: Serialize>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        let (spec, full) = self.open(unit, key, Action::Write)?;
        let value = Self::to_json(key, &full, &value)?;
        self.write(&spec, full, unit, Intent::Resolve(value))
    }

    /// The JSON of a value about to be written through `key`: within the
    /// limits, and (for an erased key) of the declared type.
    fn to_json<T: Serialize>(key: &SharedKey<T>, full: &FullKey, value: &T) -> Result<Value> {
        let value = serde_json::to_value(value).map_err(|err| Error::TypeMismatch {
            key: full.to_string(),
            reason: serde_reason(&err),
        })?;
        check_value(&value, "value")?;
        key.check_write(full.as_str(), &value)?;
        Ok(value)
    }

    fn write(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        intent: Intent,
    ) -> Result<Write> {
        let payload = payload_for(self.tab, spec, &key, self.states.get(&key), intent)?;
        self.write_payload(spec, key, unit, payload, None)
    }

    /// Stamps, applies and packages a local write. `reuse` replaces the
    /// fresh stamp (see [`Store::revert`]).
    fn write_payload(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        payload: Payload,
        reuse: Option<Stamp>,
    ) -> Result<Write> {
        let mut op = self.stamp_op(spec, key, unit, payload);
        if let Some(stamp) = reuse {
            op.stamp = stamp;
        }
        let change = self.apply_admitted(spec, &op)?;
        let message = (spec.lifetime() != Lifetime::Memory).then(|| {
            Message::Ops(OpGroup {
                ops: vec![op.clone()],
            })
        });
        Ok(Write {
            op,
            change,
            message,
        })
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn stamp_op(
        &mut self,
        spec: &KeySpec,
        key: FullKey,
        unit: &UnitAddress,
        payload: Payload,
    ) -> Op {
        let stamp = self.hlc.tick(self.now());
        self.seq += 1;
        Op {
            id: OpId {
                tab: self.tab,
                seq: self.seq,
            },
            key,
            writer: unit.clone(),
            stamp,
            schema: spec.schema().version(),
            payload,
        }
    }

    /// Applies an op already checked against `spec`; returns the change.
    fn apply_admitted(&mut self, spec: &KeySpec, op: &Op) -> Result<Option<Change>> {
        let old = self.current(spec, &op.key);
        let old_conflicts = self.conflict_ids(&op.key);
        let state = self
            .states
            .entry(op.key.clone())
            .or_insert_with(|| KeyState::empty(spec.strategy()));
        state.apply(op)?;
        let new = Self::value_or_default(spec, Some(state));
        self.touch(spec, &op.key);
        let visible = old != new || old_conflicts != self.conflict_ids(&op.key);
        Ok(visible.then(|| Change {
            key: op.key.clone(),
            old,
            new,
        }))
    }

    /// The ids of a user-resolve key's open conflict (empty for other
    /// strategies and when there is no conflict). A change of these is a
    /// visible change even when the winning value stays the same: a
    /// resolution that keeps the current value must still close every
    /// tab's conflict dialog.
    fn conflict_ids(&self, key: &FullKey) -> Vec<OpId> {
        self.states
            .get(key)
            .map(|state| state.conflicts().into_iter().map(|c| c.id).collect())
            .unwrap_or_default()
    }

    fn touch(&mut self, spec: &KeySpec, key: &FullKey) {
        if spec.lifetime() != Lifetime::Memory {
            self.dirty.insert(key.clone());
        }
    }

    /// Runs several writes atomically: either every write of `f` applies
    /// (as one [`OpGroup`], one broadcast, one change per key) or, if `f`
    /// or any write fails, nothing does.
    pub fn batch<F>(&mut self, f: F) -> Result<BatchWrite>
    where
        F: FnOnce(&mut Batch<'_>) -> Result<()>,
    {
        let seq = self.seq;
        let mut batch = Batch::new(self);
        let result = f(&mut batch);
        let staged = batch.finish();
        match result.and_then(|()| staged.check()) {
            Ok(()) => Ok(self.commit(staged)),
            Err(err) => {
                // Op ids of the abandoned writes are reused; their stamps
                // are not (the clock only moves forward), which is harmless.
                self.seq = seq;
                Err(err)
            }
        }
    }

    // ----- remote input -------------------------------------------------

    /// Checks a structurally valid incoming op against everything the
    /// store knows: declared key, not memory-only, strategy, writer in
    /// scope and allowed, clock skew, schema (migrating older values),
    /// value type.
    fn admit(&self, op: &Op) -> Result<(Arc<KeySpec>, Op)> {
        let spec = self.spec_for(&op.key)?;
        if spec.lifetime() == Lifetime::Memory {
            return Err(Error::LocalOnly {
                key: op.key.clone(),
            });
        }
        if !spec.strategy().accepts(&op.payload) {
            return Err(Error::WrongStrategy {
                key: op.key.to_string(),
                strategy: spec.strategy(),
                operation: op.payload.kind(),
            });
        }
        Self::check_access(&spec, &op.key, &op.writer, Action::Write)?;
        Hlc::check(&op.stamp, self.now())?;
        let name = op.key.as_str();
        let schema = spec.schema();
        let mut op = op.clone();
        if op.schema != schema.version() {
            schema.check(name, op.schema)?;
            match &mut op.payload {
                Payload::Set { value } | Payload::Resolve { value, .. } => {
                    *value = schema.migrate_value(name, op.schema, std::mem::take(value))?;
                    check_value(value, "migrated value")?;
                }
                Payload::Patch { .. } => {
                    return Err(Error::Migration {
                        key: name.to_owned(),
                        from: op.schema,
                        reason: String::from("field patches cannot be migrated"),
                    });
                }
                Payload::Count { .. } => {}
            }
            op.schema = schema.version();
        }
        if let Payload::Set { value } | Payload::Resolve { value, .. } = &op.payload {
            spec.check_type(name, value)?;
        }
        Ok((spec, op))
    }

    /// Records what a remote op or state says about time and op ids.
    fn observe(&mut self, stamp: Option<Stamp>, own_seq: u64) {
        if let Some(stamp) = stamp {
            // Already bounded by `Hlc::check` in admission.
            let _ = self.hlc.observe(&stamp, self.clock.now_ms());
        }
        // A tab id that survived a reload must never reissue an op id.
        self.seq = self.seq.max(own_seq);
    }

    /// Applies one op from another tab (or a relay). Duplicates and
    /// reordering are harmless. Refused ops change nothing.
    pub fn apply_remote(&mut self, op: &Op) -> Result<Option<Change>> {
        op.validate()?;
        let (spec, op) = self.admit(op)?;
        self.observe(Some(op.stamp), own_seq(self.tab, &op));
        self.apply_admitted(&spec, &op)
    }

    /// Applies an op group atomically: every op is admitted first; if any is
    /// refused, none applies.
    pub fn apply_group(&mut self, group: &OpGroup) -> Result<Vec<Change>> {
        group.validate()?;
        self.apply_valid_group(group)
    }

    fn apply_valid_group(&mut self, group: &OpGroup) -> Result<Vec<Change>> {
        let admitted = group
            .ops
            .iter()
            .map(|op| self.admit(op))
            .collect::<Result<Vec<_>>>()?;
        let mut olds: BTreeMap<FullKey, Before> = BTreeMap::new();
        for (spec, op) in &admitted {
            if !olds.contains_key(&op.key) {
                olds.insert(
                    op.key.clone(),
                    (
                        Arc::clone(spec),
                        self.current(spec, &op.key),
                        self.conflict_ids(&op.key),
                    ),
                );
            }
        }
        for (spec, op) in &admitted {
            self.observe(Some(op.stamp), own_seq(self.tab, op));
            // Cannot fail: admission matched the payload to the strategy
            // and stored states always match their key's strategy.
            self.apply_admitted(spec, op)?;
        }
        Ok(self.changes_since(olds))
    }

    fn changes_since(&self, olds: BTreeMap<FullKey, Before>) -> Vec<Change> {
        olds.into_iter()
            .filter_map(|(key, (spec, old, old_conflicts))| {
                let new = self.current(&spec, &key);
                let visible = old != new || old_conflicts != self.conflict_ids(&key);
                visible.then_some(Change { key, old, new })
            })
            .collect()
    }

    /// Checks a structurally valid state that came from another tab or
    /// from storage, and migrates it to the current schema.
    fn admit_state(
        &self,
        spec: &KeySpec,
        key: &FullKey,
        schema: u32,
        mut state: KeyState,
    ) -> Result<KeyState> {
        if state.strategy() != spec.strategy() {
            return Err(Error::WrongStrategy {
                key: key.to_string(),
                strategy: spec.strategy(),
                operation: state.strategy().as_str(),
            });
        }
        let now = self.now();
        let mut refusal = None;
        state.visit(&mut |item| {
            if refusal.is_some() {
                return;
            }
            let check = || -> Result<()> {
                Hlc::check(&item.stamp, now)?;
                if let Some(writer) = item.writer {
                    Self::check_access(spec, key, writer, Action::Write)?;
                }
                Ok(())
            };
            refusal = check().err();
        });
        if let Some(err) = refusal {
            return Err(err);
        }
        spec.schema()
            .migrate_state(key.as_str(), schema, &mut state)?;
        let mut mistyped = None;
        state.visit(&mut |item| {
            if mistyped.is_none()
                && item.whole
                && let Some(value) = item.value
            {
                mistyped = spec.check_type(key.as_str(), value).err();
            }
        });
        match mistyped {
            Some(err) => Err(err),
            None => Ok(state),
        }
    }

    /// Joins an admitted state into the replica.
    fn join_state(
        &mut self,
        spec: &KeySpec,
        key: &FullKey,
        state: &KeyState,
    ) -> Result<Option<Change>> {
        self.observe(state.max_stamp(), state.max_seq(self.tab));
        let old = self.current(spec, key);
        let old_conflicts = self.conflict_ids(key);
        let changed = match self.states.get_mut(key) {
            Some(existing) => {
                let before = existing.clone();
                existing.merge(state)?;
                *existing != before
            }
            None => {
                // Joining into an empty state (rather than inserting the
                // state as received) normalizes it, e.g. prunes stale merge
                // fields a forged state might carry, so every replica
                // serializes the same bytes.
                let mut fresh = KeyState::empty(spec.strategy());
                fresh.merge(state)?;
                self.states.insert(key.clone(), fresh);
                true
            }
        };
        if changed {
            self.touch(spec, key);
        }
        let new = self.current(spec, key);
        let visible = old != new || old_conflicts != self.conflict_ids(key);
        Ok(visible.then(|| Change {
            key: key.clone(),
            old,
            new,
        }))
    }

    /// Merges another tab's full state of a key (anti-entropy).
    pub fn merge_state(&mut self, entry: &SyncEntry) -> Result<Option<Change>> {
        entry.state.validate()?;
        self.merge_valid_state(entry)
    }

    fn merge_valid_state(&mut self, entry: &SyncEntry) -> Result<Option<Change>> {
        let spec = self.spec_for(&entry.key)?;
        if spec.lifetime() == Lifetime::Memory {
            return Err(Error::LocalOnly {
                key: entry.key.clone(),
            });
        }
        let state = self.admit_state(&spec, &entry.key, entry.schema, entry.state.clone())?;
        self.join_state(&spec, &entry.key, &state)
    }

    /// Handles a decoded message. Nothing here fails as a whole: refusals
    /// are listed in [`Inbound::errors`] and change nothing.
    pub fn receive(&mut self, message: &Message) -> Inbound {
        match message.validate() {
            Ok(()) => self.receive_valid(message),
            Err(err) => Inbound {
                errors: vec![err],
                ..Inbound::default()
            },
        }
    }

    fn receive_valid(&mut self, message: &Message) -> Inbound {
        let mut inbound = Inbound::default();
        match message {
            Message::Ops(group) => match self.apply_valid_group(group) {
                Ok(changes) => inbound.changes = changes,
                Err(err) => inbound.errors.push(err),
            },
            Message::SyncRequest { from } => {
                if *from != self.tab {
                    inbound.replies = self.sync_messages();
                }
            }
            Message::SyncState { states, .. } => {
                for entry in states {
                    match self.merge_valid_state(entry) {
                        Ok(Some(change)) => inbound.changes.push(change),
                        Ok(None) => {}
                        Err(err) => inbound.errors.push(err),
                    }
                }
            }
            Message::Event(event) => inbound.events.push(event.clone()),
        }
        inbound
    }

    /// Decodes untrusted text ([`Message::decode`]) and handles it.
    pub fn receive_text(&mut self, text: &str) -> Inbound {
        match Message::decode(text) {
            Ok(message) => self.receive_valid(&message),
            Err(err) => Inbound {
                errors: vec![err],
                ..Inbound::default()
            },
        }
    }

    /// The message a new or re-awakened tab sends to ask for state.
    pub fn sync_request(&self) -> Message {
        Message::SyncRequest { from: self.tab }
    }

    /// This replica's full state of every syncing key, split into messages
    /// that each fit [`MAX_MESSAGE_BYTES`]. A single key state too large
    /// for any message is left out (other tabs still get its ops).
    pub fn sync_messages(&self) -> Vec<Message> {
        // Room for the envelope around the entries.
        const BUDGET: usize = MAX_MESSAGE_BYTES - 1024;
        let entries: Vec<SyncEntry> = self
            .states
            .iter()
            .filter_map(|(key, state)| {
                let spec = self.spec_for(key).ok()?;
                (spec.lifetime() != Lifetime::Memory).then(|| SyncEntry {
                    key: key.clone(),
                    schema: spec.schema().version(),
                    state: state.clone(),
                })
            })
            .collect();
        if entries.is_empty() {
            return Vec::new();
        }
        // Usually everything fits in one message; measure without
        // allocating the text.
        let whole = self.sync_state(entries);
        if encoded_len(&whole, BUDGET) <= BUDGET && count_states(&whole) <= MAX_SYNC_STATES {
            return vec![whole];
        }
        let Message::SyncState {
            states: entries, ..
        } = whole
        else {
            return Vec::new();
        };
        let mut messages = Vec::new();
        let mut chunk = Vec::new();
        let mut size = 0;
        for entry in entries {
            let len = encoded_len(&entry, BUDGET) + 1;
            if len > BUDGET {
                continue;
            }
            if size + len > BUDGET || chunk.len() == MAX_SYNC_STATES {
                messages.push(self.sync_state(std::mem::take(&mut chunk)));
                size = 0;
            }
            size += len;
            chunk.push(entry);
        }
        if !chunk.is_empty() {
            messages.push(self.sync_state(chunk));
        }
        messages
    }

    fn sync_state(&self, states: Vec<SyncEntry>) -> Message {
        Message::SyncState {
            from: self.tab,
            states,
        }
    }

    // ----- snapshot and restore -----------------------------------------

    /// Exports the keys of `scope` that `unit` can see and read, as values
    /// with their schema version. Keys never written are left out.
    pub fn snapshot(&self, unit: &UnitAddress, scope: Scope) -> Snapshot {
        let mut snapshot = Snapshot::new(scope);
        for spec in self
            .specs
            .get(&scope)
            .into_iter()
            .flat_map(BTreeMap::values)
        {
            let key = spec.full_key(unit);
            if Self::check_access(spec, &key, unit, Action::Read).is_err() {
                continue;
            }
            if let Some(value) = self.states.get(&key).and_then(KeyState::value) {
                snapshot.keys.insert(
                    spec.name().clone(),
                    SnapshotEntry {
                        schema: spec.schema().version(),
                        value,
                    },
                );
            }
        }
        snapshot
    }

    /// Restores a snapshot made by [`snapshot`](Self::snapshot) as `unit`.
    ///
    /// The text is validated like any untrusted input, then every key is
    /// checked (declared, writable by `unit`, schema migrated, type) before
    /// anything is written. The writes form one batch: new ops, so the
    /// restored values reach other tabs and win over older writes. Keys
    /// already holding the snapshot's value are skipped. Any failure
    /// (including a first-write-wins key already holding another value)
    /// changes nothing.
    pub fn restore(&mut self, unit: &UnitAddress, text: &str) -> Result<BatchWrite> {
        let snapshot = Snapshot::parse(text)?;
        let mut writes = Vec::new();
        for (name, entry) in &snapshot.keys {
            let spec = self
                .specs
                .get(&snapshot.scope)
                .and_then(|by_name| by_name.get(name.as_str()))
                .cloned()
                .ok_or_else(|| Error::InvalidSnapshot {
                    reason: format!("key {}:{name} is not declared", snapshot.scope),
                })?;
            let key = spec.full_key(unit);
            Self::check_access(&spec, &key, unit, Action::Write)?;
            let value =
                spec.schema()
                    .migrate_value(key.as_str(), entry.schema, entry.value.clone())?;
            check_value(&value, "snapshot value")?;
            spec.check_type(key.as_str(), &value)?;
            if self.current(&spec, &key) != value {
                writes.push((spec, value));
            }
        }
        self.batch(|batch| {
            writes
                .into_iter()
                .try_for_each(|(spec, value)| batch.write(unit, &spec, Intent::Set(value)))
        })
    }
}

fn count_states(message: &Message) -> usize {
    match message {
        Message::SyncState { states, .. } => states.len(),
        _ => 0,
    }
}

/// The highest sequence number `op` reveals for our own tab.
fn own_seq(tab: TabId, op: &Op) -> u64 {
    let mut max = if op.id.tab == tab { op.id.seq } else { 0 };
    if let Payload::Resolve { supersedes, .. } = &op.payload {
        for id in supersedes.iter().filter(|id| id.tab == tab) {
            max = max.max(id.seq);
        }
    }
    max
}

/// Turns a local write into the payload its key's strategy needs.
pub(crate) fn payload_for(
    tab: TabId,
    spec: &KeySpec,
    key: &FullKey,
    current: Option<&KeyState>,
    intent: Intent,
) -> Result<Payload> {
    let wrong = |operation| Error::WrongStrategy {
        key: key.to_string(),
        strategy: spec.strategy(),
        operation,
    };
    match (spec.strategy(), intent) {
        (Strategy::LastWriteWins, Intent::Set(value)) => Ok(Payload::Set { value }),
        (Strategy::FirstWriteWins, Intent::Set(value)) => {
            if let Some(KeyState::FirstWriteWins(register)) = current
                && let Some(entry) = &register.entry
            {
                return Err(Error::FirstWriteWins {
                    key: key.clone(),
                    existing: entry.stamp,
                });
            }
            Ok(Payload::Set { value })
        }
        (Strategy::Merge, Intent::Set(value)) => {
            let Value::Object(new) = value else {
                return Ok(Payload::Set { value });
            };
            let old = current.and_then(KeyState::value);
            let (set, remove) = match &old {
                Some(Value::Object(old)) => merge_diff(old, &new),
                _ => (new.into_iter().collect(), BTreeSet::new()),
            };
            Ok(Payload::Patch { set, remove })
        }
        (Strategy::Sum, Intent::Set(value)) => {
            let target = value.as_i64().ok_or_else(|| Error::TypeMismatch {
                key: key.to_string(),
                reason: String::from("sum keys hold integers"),
            })?;
            let total = match current {
                Some(KeyState::Sum(sum)) => sum.total(),
                _ => 0,
            };
            let delta = target
                .checked_sub(total)
                .ok_or_else(|| Error::Overflow { key: key.clone() })?;
            count(tab, key, current, delta)
        }
        (Strategy::Sum, Intent::Add(delta)) => count(tab, key, current, delta),
        (Strategy::UserResolve, Intent::Set(value) | Intent::Resolve(value)) => {
            let supersedes = match current {
                Some(KeyState::UserResolve(state)) => state.live_ids(),
                _ => Vec::new(),
            };
            Ok(Payload::Resolve { value, supersedes })
        }
        (_, Intent::Add(_)) => Err(wrong("increment")),
        (_, Intent::Resolve(_)) => Err(wrong("resolve")),
    }
}

/// A sum key's new cumulative totals for `tab` after adding `delta`.
fn count(tab: TabId, key: &FullKey, current: Option<&KeyState>, delta: i64) -> Result<Payload> {
    let totals = match current {
        Some(KeyState::Sum(sum)) => sum.totals(tab),
        _ => Totals::default(),
    };
    let overflow = || Error::Overflow { key: key.clone() };
    let (p, n) = if delta >= 0 {
        (
            totals
                .p
                .checked_add(delta.unsigned_abs())
                .ok_or_else(overflow)?,
            totals.n,
        )
    } else {
        (
            totals.p,
            totals
                .n
                .checked_add(delta.unsigned_abs())
                .ok_or_else(overflow)?,
        )
    };
    Ok(Payload::Count { p, n })
}
