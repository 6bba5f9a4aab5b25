//! Admission: checking what comes from outside (another tab, a relay,
//! storage) against everything the replica knows, item by item.
//!
//! An op is one item: it is applied, held for later, or refused. A state
//! is many items (one per recorded write): it is admitted only as far as
//! the writes it carries would be admitted as ops, so a forged item costs
//! only itself and the rest still applies. From storage, which is this
//! origin's own data, a forged or unreadable item quarantines the whole
//! entry instead (see `persist.rs`), so nothing is silently rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::Replica;
use crate::clock::{MAX_CLOCK_AHEAD_MS, MAX_HOLD_AHEAD_MS, Stamp};
use crate::error::{Error, Result};
use crate::key::KeySpec;
use crate::limits::MAX_SUM_SLOTS;
use crate::message::SyncEntry;
use crate::op::{Op, Payload};
use crate::permission::Action;
use crate::scope::{FullKey, Lifetime};
use crate::strategy::{ItemKind, KeyState, migrate_shared};

/// Where outside data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Another tab or a relay: untrusted, item by item.
    Wire,
    /// This origin's storage: a bad item quarantines the whole entry, and
    /// this tab's own writes in it move its op counter forward.
    Storage,
}

/// What admission decided for one op.
pub(super) enum OpVerdict {
    /// Checked and migrated to the current schema.
    Apply(Arc<KeySpec>, Op),
    /// Kept for later: the key is not declared here, or the op is stamped
    /// ahead of what the local clock allows yet (`Some(due)`: the local
    /// time from which it may apply).
    Hold(Option<u64>),
    /// For another apartment: reported, but does not spoil the rest of
    /// its group.
    Foreign(Error),
    /// Refused.
    Refuse(Error),
}

/// The admissible part of a key state, migrated; the part stamped ahead
/// of the clock (to hold, unmigrated); and why other items were dropped.
pub(super) struct Admitted {
    pub spec: Arc<KeySpec>,
    pub state: KeyState,
    pub ahead: Option<SyncEntry>,
    pub errors: Vec<Error>,
}

/// What admission decided for one key state.
pub(super) enum StateVerdict {
    /// See [`Admitted`].
    Apply(Box<Admitted>),
    /// Kept whole for later (the key is not declared here).
    Hold,
    /// For another apartment.
    Foreign(Error),
    /// Refused whole.
    Refuse(Error),
}

impl Replica {
    /// Checks a structurally valid incoming op: apartment, op id, declared
    /// key, not memory-only, strategy, writer in scope and allowed, clock
    /// window, staleness, room for one more key, schema (migrating older
    /// values), value type.
    pub(super) fn admit_op(&self, op: &Op) -> OpVerdict {
        if let Err(err) = self.check_apartment(&op.key) {
            return OpVerdict::Foreign(err);
        }
        if let Err(err) = self.check_own_ids(op) {
            return OpVerdict::Refuse(err);
        }
        let Ok(spec) = self.spec_for(&op.key) else {
            return OpVerdict::Hold(None);
        };
        match self.check_op(&spec, op) {
            Ok(Some(due)) => OpVerdict::Hold(Some(due)),
            Ok(None) => match self.migrate_op(&spec, op) {
                Ok(op) => OpVerdict::Apply(spec, op),
                Err(err) => OpVerdict::Refuse(err),
            },
            Err(err) => OpVerdict::Refuse(err),
        }
    }

    /// Refuses an op whose id claims this tab but that it never issued:
    /// applying it would make this tab reuse that id (or overflow its
    /// counter). The ids a resolve supersedes may name this tab's future
    /// writes: such a watermark only reaches writes stamped before the
    /// resolve (see the user-resolve strategy), so this tab takes it as
    /// every other replica does, and stays converged with them.
    fn check_own_ids(&self, op: &Op) -> Result<()> {
        if op.id.tab == self.tab && op.id.seq > self.seq {
            return Err(Error::ForgedId { op: op.id });
        }
        Ok(())
    }

    /// The checks that need the declaration; `Ok(Some(due))` when the op
    /// must wait for the local clock.
    fn check_op(&self, spec: &KeySpec, op: &Op) -> Result<Option<u64>> {
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
        Self::check_access(spec, &op.key, &op.writer, Action::Write)?;
        if let Some(due) = self.window_at(op.newest_wall())? {
            return Ok(Some(due));
        }
        self.check_floor(&op.key, op.stamp.wall_ms)?;
        let state = self.states.get(&op.key);
        if let Some(KeyState::Sum(sum)) = state {
            // Counted and looked up, not walked: a group of thousands of
            // counts would otherwise walk thousands of slots each.
            if let Payload::Count { slot, .. } = &op.payload
                && sum.slot_count() >= MAX_SUM_SLOTS
                && !sum.has_slot(slot)
            {
                return Err(Error::TooLarge {
                    what: "sum slots",
                    size: MAX_SUM_SLOTS + 1,
                    limit: MAX_SUM_SLOTS,
                });
            }
        }
        self.check_room(spec, &op.key)?;
        Ok(None)
    }

    /// Refuses a write to `key` stamped at `wall_ms` behind the key's
    /// floor ([`KeyState::floor`]): it would change nothing here and be
    /// refused everywhere else.
    pub(super) fn check_floor(&self, key: &FullKey, wall_ms: u64) -> Result<()> {
        let Some(state) = self.states.get(key) else {
            return Ok(());
        };
        match state.floor() {
            Some(floor) if wall_ms < floor => Err(Error::Stale {
                key: key.clone(),
                wall_ms,
                horizon_ms: floor,
                dropped_anyway: state.drops_behind_floor(),
            }),
            _ => Ok(()),
        }
    }

    /// `Ok(None)` when a stamp may apply now, `Ok(Some(due))` when it may
    /// from local time `due` on, an error when it is too far ahead to keep.
    pub(super) fn window(&self, stamp: &Stamp) -> Result<Option<u64>> {
        self.window_at(stamp.wall_ms)
    }

    /// [`window`](Self::window) of a write at `wall_ms`.
    pub(super) fn window_at(&self, wall_ms: u64) -> Result<Option<u64>> {
        let now = self.now();
        if wall_ms <= now.saturating_add(MAX_CLOCK_AHEAD_MS) {
            return Ok(None);
        }
        if wall_ms > now.saturating_add(MAX_HOLD_AHEAD_MS) {
            return Err(Error::ClockSkew {
                wall_ms,
                now_ms: now,
                max_ahead_ms: MAX_HOLD_AHEAD_MS,
            });
        }
        Ok(Some(wall_ms - MAX_CLOCK_AHEAD_MS))
    }

    /// Brings an op's values to the current schema and checks their type.
    fn migrate_op(&self, spec: &KeySpec, op: &Op) -> Result<Op> {
        let name = op.key.as_str();
        let schema = spec.schema();
        let mut op = op.clone();
        if op.schema != schema.version() {
            schema.check(name, op.schema)?;
            match &mut op.payload {
                Payload::Set { value } | Payload::Resolve { value, .. } => {
                    migrate_shared(value, |old| schema.migrate_value(name, op.schema, old))?;
                }
                Payload::Patch { set, .. } => {
                    // Field by field: the changed fields as an object of
                    // the old version, migrated like a whole value (moved
                    // one by one: collecting into a map compiles a sort of
                    // its own for each place that collects).
                    let mut object = serde_json::Map::new();
                    for (field, value) in std::mem::take(set) {
                        object.insert(field, value);
                    }
                    match schema.migrate_value(name, op.schema, Value::Object(object))? {
                        Value::Object(migrated) => {
                            for (field, value) in migrated {
                                set.insert(field, value);
                            }
                        }
                        _ => {
                            return Err(Error::Migration {
                                key: name.to_owned(),
                                from: op.schema,
                                reason: String::from(
                                    "the migration turns fields into a non-object",
                                ),
                            });
                        }
                    }
                }
                Payload::Count { .. } | Payload::Reset { .. } => {}
            }
            op.schema = schema.version();
            // What a migration made is checked as any op is: values within
            // the limits, a patch within its field count and name lengths.
            op.validate()?;
        }
        match &op.payload {
            Payload::Set { value } | Payload::Resolve { value, .. } => {
                spec.check_type(name, value)?;
            }
            Payload::Patch { set, remove } if !spec.holds_any_json() => {
                self.check_patch_type(spec, &op.key, set, remove)?;
            }
            _ => {}
        }
        Ok(op)
    }

    /// Checks a merge patch from elsewhere against the key's type. Without
    /// it a peer's field of the wrong type (a cart line that is a string)
    /// would reach every device's value, and once folded into the key's
    /// base make the stored state unreadable: every device would set it
    /// aside on its next load, and the relay would refuse every write to
    /// the key from then on.
    ///
    /// - The fields it sets, alone, decode as the type: it passes. That is
    ///   a map's entries, or a struct's fields when the patch sets every
    ///   one the type needs; it costs the patch, not the value.
    /// - Otherwise what the key holds here, with the patch's fields set
    ///   and removed, must decode, or it is refused. Only where what the
    ///   key holds is an object that decodes: a patch is not blamed for
    ///   what is wrong already (a value stored wrong, a concurrent write
    ///   of a non-object), nor refused here and taken elsewhere for it.
    ///
    /// A type whose fields decode one by one (a struct, a map) gets the
    /// same answer on every replica whose value decodes.
    fn check_patch_type(
        &self,
        spec: &KeySpec,
        key: &FullKey,
        set: &BTreeMap<String, Value>,
        remove: &BTreeSet<String>,
    ) -> Result<()> {
        let mut fields = serde_json::Map::new();
        for (field, value) in set {
            fields.insert(field.clone(), value.clone());
        }
        if spec
            .check_type(key.as_str(), &Value::Object(fields))
            .is_ok()
        {
            return Ok(());
        }
        let current = self.current(spec, key);
        let Value::Object(held) = &*current else {
            return Ok(());
        };
        if spec.check_type(key.as_str(), &current).is_err() {
            return Ok(());
        }
        let mut object = held.clone();
        for (field, value) in set {
            object.insert(field.clone(), value.clone());
        }
        for field in remove {
            object.remove(field);
        }
        spec.check_type(key.as_str(), &Value::Object(object))
    }

    /// Checks one key's state from outside, item by item (see the module
    /// docs).
    pub(super) fn admit_state(&self, entry: &SyncEntry, source: Source) -> StateVerdict {
        if let Err(err) = self.check_apartment(&entry.key) {
            return StateVerdict::Foreign(err);
        }
        let Ok(spec) = self.spec_for(&entry.key) else {
            return StateVerdict::Hold;
        };
        match self.admit_state_of(&spec, entry, source) {
            Ok((state, ahead, errors)) => StateVerdict::Apply(Box::new(Admitted {
                spec,
                state,
                ahead,
                errors,
            })),
            Err(err) => StateVerdict::Refuse(err),
        }
    }

    #[allow(clippy::type_complexity)]
    fn admit_state_of(
        &self,
        spec: &KeySpec,
        entry: &SyncEntry,
        source: Source,
    ) -> Result<(KeyState, Option<SyncEntry>, Vec<Error>)> {
        let key = &entry.key;
        if spec.lifetime() == Lifetime::Memory {
            return Err(Error::LocalOnly { key: key.clone() });
        }
        if entry.state.strategy() != spec.strategy() {
            return Err(Error::WrongStrategy {
                key: key.to_string(),
                strategy: spec.strategy(),
                operation: entry.state.strategy().as_str(),
            });
        }
        // What this origin's storage holds was admitted when it was written:
        // a bound added since (or a smaller one of another build) must not
        // set part of it aside, in whatever order storage lists its keys.
        // It still counts, so no new key passes the bound.
        if source == Source::Wire {
            self.check_room(spec, key)?;
        }
        let mut state = entry.state.clone();
        let mut errors = Vec::new();
        let mut refused: Option<Error> = None;
        let dropped = state.split(&mut |item| {
            let problem = self.check_item(spec, key, item, source);
            match problem {
                Some(err) => {
                    if refused.is_none() {
                        refused = Some(err);
                    }
                    true
                }
                None => false,
            }
        });
        if let Some(err) = refused {
            if source == Source::Storage {
                return Err(err);
            }
            if !dropped.is_empty() {
                errors.push(err);
            }
        }
        // A sum's horizon past the window holds the whole state (its totals
        // cannot be taken without it), or refuses it past the hold window.
        // From storage, as its writes: past the hold window it is set
        // aside (state stored before horizons were judged, frozen by one,
        // included), and within it taken as stored (this tab took it when
        // its clock allowed it; the clock went back since).
        let horizon_ahead = match (self.window_at(state.implied_wall())?, source) {
            (Some(_), Source::Storage) => None,
            (ahead, _) => ahead,
        };
        let ahead = match horizon_ahead {
            Some(_) => std::mem::replace(&mut state, KeyState::empty(spec.strategy())),
            None => state.split(&mut |item| {
                item.is_write() && matches!(self.window(&item.stamp), Ok(Some(_)))
            }),
        };
        // A state held for its horizon is held even with no write in it.
        let ahead = (horizon_ahead.is_some() || !ahead.is_empty()).then(|| SyncEntry {
            key: key.clone(),
            schema: entry.schema,
            state: ahead,
        });
        spec.schema()
            .migrate_state(key.as_str(), entry.schema, &mut state)?;
        let mut mistyped = None;
        let wrong = state.split(&mut |item| {
            let bad = item.kind == ItemKind::Whole
                && item
                    .value
                    .is_some_and(|value| spec.check_type(key.as_str(), value).is_err());
            if bad && mistyped.is_none() {
                mistyped = item
                    .value
                    .and_then(|value| spec.check_type(key.as_str(), value).err());
            }
            bad
        });
        if !wrong.is_empty()
            && let Some(err) = mistyped
        {
            if source == Source::Storage {
                return Err(err);
            }
            errors.push(err);
        }
        Ok((state, ahead, errors))
    }

    /// Why one item of an outside state would be refused as an op, if it
    /// would.
    fn check_item(
        &self,
        spec: &KeySpec,
        key: &FullKey,
        item: &crate::strategy::Item<'_>,
        source: Source,
    ) -> Option<Error> {
        let writer = match item.writer {
            Some(writer) => writer,
            // Only data stored by older versions has unattributed writes.
            None if source == Source::Storage => return None,
            None => {
                return Some(Error::Malformed {
                    what: "key state",
                    reason: String::from("a write without a writer"),
                });
            }
        };
        if let Err(err) = Self::check_access(spec, key, writer, Action::Write) {
            return Some(err);
        }
        if !item.is_write() {
            return None;
        }
        // A watermark naming this tab's future writes is taken, as in an
        // op (see `check_own_ids`).
        if source == Source::Wire
            && !item.is_watermark()
            && item.id.tab == self.tab
            && item.id.seq > self.seq
        {
            return Some(Error::ForgedId { op: item.id });
        }
        self.window(&item.stamp).err()
    }
}
