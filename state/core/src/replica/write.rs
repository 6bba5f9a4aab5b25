//! Local writes applied at once: what a unit asks for becomes an
//! [`Intent`], the payload its key's strategy needs, then a stamped [`Op`]
//! applied here and broadcast. (`intent.rs` has the first two steps, which
//! batches share.)

use std::sync::Arc;

use serde::Serialize;

use super::batch::Batch;
use super::intent::{Intent, Sink, payload_for, put_delta, put_value};
use super::{BatchWrite, Change, Replica, Write};
use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::{KeySpec, SharedKey};
#[cfg(feature = "merge")]
use crate::limits::MAX_OP_ITEMS;
use crate::limits::{MAX_LOCAL_STATE_BYTES, MAX_STATE_BYTES, encoded_len, scalar_len_bound};
use crate::message::Message;
use crate::op::{Op, OpGroup, OpId, Payload};
use crate::scope::{FullKey, Lifetime};
use crate::strategy::{Entry, KeyState, Register, Strategy};

/// How [`Replica::write_payload`] stamps and sizes a local write.
pub(super) struct Stamping {
    /// The clock, read once for the whole write.
    pub now: u64,
    /// A stamp that replaces the fresh one (see [`Replica::revert`]).
    pub reuse: Option<Stamp>,
    /// An upper bound of a set's value size, if measured already (see
    /// [`Sink::put`]).
    pub value_len: Option<usize>,
}

/// A merge key's re-base (see [`Replica::rebase`]): `fields` as `value`
/// has them now, or `value` whole.
#[cfg(feature = "merge")]
fn rebase_payload(value: serde_json::Value, fields: Option<&[String]>) -> Payload {
    match (value, fields) {
        // No fields (the refused writes were empty patches): an empty
        // patch, which still answers them.
        (serde_json::Value::Object(mut object), Some(fields)) if fields.len() <= MAX_OP_ITEMS => {
            let mut set = std::collections::BTreeMap::new();
            let mut remove = std::collections::BTreeSet::new();
            for name in fields {
                match object.remove(name) {
                    Some(value) => {
                        set.insert(name.clone(), value);
                    }
                    None => {
                        remove.insert(name.clone());
                    }
                }
            }
            Payload::Patch { set, remove }
        }
        (value, _) => Payload::Set {
            value: Arc::new(value),
        },
    }
}

/// Slack added to a register's size estimate per set: the entry's stamp,
/// id and writer around its value (a register holds one entry). Other
/// states grow by [`Op::growth_bound`] per write.
const ITEM_OVERHEAD: usize = 512;

/// The serialized length of a local write's payload, or for a set an
/// upper bound found without serializing it: `value_len` (the set value's
/// size, measured when it was checked) or a scalar's bound. An estimate may
/// only err high: it decides when the exact size is measured.
fn payload_len(payload: &Payload, value_len: Option<usize>) -> usize {
    match payload {
        Payload::Set { value } => match value_len.or_else(|| scalar_len_bound(value)) {
            Some(bound) => set_len(bound),
            None => encoded_len(payload, MAX_STATE_BYTES),
        },
        _ => encoded_len(payload, MAX_STATE_BYTES),
    }
}

/// The bound of a set payload's length whose value is at most
/// `value_len` long: the tags and field names around the value.
fn set_len(value_len: usize) -> usize {
    value_len.saturating_add(32)
}

/// What a local op of a key of `spec` broadcasts: the op, unless the key
/// lives in memory only.
pub(super) fn message_of(spec: &KeySpec, op: &Op) -> Option<Message> {
    (spec.lifetime() != Lifetime::Memory).then(|| {
        Message::Ops(OpGroup {
            ops: vec![op.clone()],
        })
    })
}

impl Replica {
    /// Writes `value` to `key` on behalf of `unit`.
    ///
    /// Per strategy: last-write-wins and merge always succeed (merge sends
    /// only the changed top-level fields, or the whole object when more
    /// than [`MAX_OP_ITEMS`](crate::MAX_OP_ITEMS) changed: then it replaces
    /// concurrent edits stamped before it, as a set of another strategy
    /// would); first-write-wins fails with
    /// [`Error::FirstWriteWins`] once the key holds a value; sum resets the
    /// counter to `value` (increments made concurrently elsewhere still
    /// count on top of it, and two tabs resetting at once agree);
    /// user-resolve supersedes every value currently visible (so writing
    /// while a conflict is shown resolves it).
    ///
    /// A write that would grow the key's state past
    /// [`MAX_LOCAL_STATE_BYTES`] is refused with [`Error::TooLarge`] and
    /// changes nothing.
    pub fn set<T: Serialize + 'static>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        put_value(self, unit, key, value, Intent::Set)
    }

    /// Adds `delta` to a sum key.
    pub fn increment<T>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<Write> {
        put_delta(self, unit, key, delta)
    }

    /// Resolves a user-resolve key's conflict with `value` (current,
    /// incoming or custom): a write that supersedes every visible value.
    pub fn resolve<T: Serialize + 'static>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        put_value(self, unit, key, value, Intent::Resolve)
    }

    /// Re-bases `key` on what this replica holds now, on behalf of `unit`:
    /// the write a device makes when the relay refused its old writes to
    /// the key as stale (it was offline for longer than the compaction
    /// horizon, so those writes fall behind the key's floor everywhere
    /// else, see [`KeyState::floor`]). This replica still holds their
    /// effect; a fresh write carries it to every replica.
    ///
    /// - A sum key: a reset to the current total that observes every slot
    ///   held here (`fields` is ignored). Increments made elsewhere that
    ///   this replica has not seen still count on top, as for any reset.
    /// - A merge key: `fields` are the fields the refused writes touched
    ///   (`None` when one of them was a whole value). Each is written
    ///   again as this replica reads it now: set if present, removed if
    ///   not. Where a newer write (from anywhere) overrode a refused one
    ///   here, the newer value is what goes out, so the re-base takes back
    ///   nothing a later write decided. With `None`, more fields than an
    ///   op carries, or a value that is not an object, the whole value
    ///   goes out (replacing concurrent edits stamped before it, as any
    ///   whole write does).
    ///
    /// The caller must have caught up with the relay first, or what the
    /// relay already folded away (and this replica never saw) would be
    /// dropped or overwritten.
    ///
    /// Fails with [`Error::WrongStrategy`] for a key of another strategy,
    /// with [`Error::Malformed`] for a merge key that holds nothing, and
    /// with the usual errors where `unit` may not write `key`; a backlog
    /// does not refuse it (it replaces writes that wait). Unlike a
    /// [`set`](Self::set) of the same value, the result is a write even
    /// when nothing visible changes.
    pub fn rebase(
        &mut self,
        unit: &UnitAddress,
        key: &FullKey,
        fields: Option<&[String]>,
    ) -> Result<Write> {
        #[cfg(not(feature = "merge"))]
        let _ = fields;
        let spec = self.spec_for(key)?;
        self.check_apartment(key)?;
        Self::check_access(&spec, key, unit, crate::permission::Action::Write)?;
        // Not refused by a backlog (see `set_backlog`): it replaces the
        // refused writes waiting in the outbox, which is why it is full.
        match (spec.strategy(), self.states.get(key)) {
            (Strategy::Sum, state) => {
                let total = match state {
                    Some(KeyState::Sum(sum)) => sum.total(),
                    _ => 0,
                };
                self.write(
                    &spec,
                    key.clone(),
                    unit,
                    Intent::Set(serde_json::Value::from(total)),
                    None,
                )
            }
            #[cfg(feature = "merge")]
            (Strategy::Merge, _) => {
                // As any write: stamps past the clock's bound go first, so
                // the re-base is newer than everything held here.
                let now = self.now();
                self.shed_future_at(now);
                let Some(value) = self.states.get(key).and_then(KeyState::value) else {
                    return Err(Error::Malformed {
                        what: "re-base",
                        reason: format!("{key} holds nothing here to write again"),
                    });
                };
                let payload = rebase_payload(value, fields);
                if let Payload::Set { value } = &payload {
                    // Checked as every receiver checks a whole value.
                    spec.check_type(key.as_str(), value)?;
                }
                let how = Stamping {
                    now,
                    reuse: None,
                    value_len: None,
                };
                self.write_payload(&spec, key.clone(), unit, payload, how)
            }
            (strategy, _) => Err(Error::WrongStrategy {
                key: key.to_string(),
                strategy,
                operation: "rebase",
            }),
        }
    }

    /// Writes again, on behalf of `unit`, a user-resolve key's write the
    /// relay refused as stale (it lay more than
    /// [`COMPACT_AFTER_MS`](crate::COMPACT_AFTER_MS) behind the key's
    /// newest write: this device was offline that long). Unlike a sum or a
    /// merge key, this replica no longer holds it (the newer write dropped
    /// it here too), so the caller gives what it wrote: `value`, and
    /// `supersedes`, the entries its writer had seen (with the refused ops
    /// themselves). The new write supersedes those only, with a fresh
    /// stamp: what others wrote meanwhile stays beside it, a conflict the
    /// user resolves, as it would have been had the write come in time.
    ///
    /// Fails with [`Error::WrongStrategy`] for a key of another strategy,
    /// and as a write of `value` would (type, size, permissions); a
    /// backlog does not refuse it (it replaces writes that wait).
    #[cfg(feature = "user-resolve")]
    pub fn rebase_resolve(
        &mut self,
        unit: &UnitAddress,
        key: &FullKey,
        value: &serde_json::Value,
        supersedes: &[crate::op::OpId],
    ) -> Result<Write> {
        let spec = self.spec_for(key)?;
        self.check_apartment(key)?;
        Self::check_access(&spec, key, unit, crate::permission::Action::Write)?;
        if spec.strategy() != Strategy::UserResolve {
            return Err(Error::WrongStrategy {
                key: key.to_string(),
                strategy: spec.strategy(),
                operation: "rebase",
            });
        }
        // Checked as every receiver checks a whole value.
        spec.check_type(key.as_str(), value)?;
        let now = self.now();
        self.shed_future_at(now);
        let payload = Payload::Resolve {
            value: value.clone().into(),
            supersedes: supersedes.to_vec(),
        };
        let how = Stamping {
            now,
            reuse: None,
            value_len: None,
        };
        self.write_payload(&spec, key.clone(), unit, payload, how)
    }

    /// Runs several writes atomically: either every write of `f` applies
    /// (as one [`OpGroup`], one broadcast, one change per key) or, if `f`
    /// or any write fails, nothing does (a write refused inside `f` fails
    /// the batch even when `f` goes on and returns `Ok`).
    pub fn batch<F>(&mut self, f: F) -> Result<BatchWrite>
    where
        F: FnOnce(&mut Batch<'_>) -> Result<()>,
    {
        self.shed_future();
        let seq = self.seq;
        let mut batch = Batch::new(self);
        let result = f(&mut batch);
        // A write refused inside it fails the batch, even if `f` went on.
        let staged = result.and(batch.finish());
        match staged.and_then(|staged| self.check_staged(&staged).map(|()| staged)) {
            Ok(staged) => Ok(self.commit(staged)),
            Err(err) => {
                // Op ids of the abandoned writes are reused; their stamps
                // are not (the clock only moves forward), which is harmless.
                self.seq = seq;
                Err(err)
            }
        }
    }

    /// Applies a local write at once (what [`Sink::put`] is for a
    /// replica; `value_len` as there).
    pub(super) fn write(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
    ) -> Result<Write> {
        // One read of the clock for the future-stamp check, the payload and
        // the stamp (a read is a call out to JavaScript in the browser).
        let now = self.now();
        self.shed_future_at(now);
        self.set_register(spec, key, unit, intent, value_len, now)
    }

    /// [`write`](Self::write) by the path every write can take: the
    /// strategy makes the payload, then [`write_payload`](Self::write_payload).
    /// The clock was read (`now`) and stamps past it shed.
    fn write_general(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
        now: u64,
    ) -> Result<Write> {
        let payload = payload_for(
            &self.context_at(now),
            spec,
            &key,
            self.states.get(&key),
            intent,
        )?;
        let how = Stamping {
            now,
            reuse: None,
            value_len,
        };
        self.write_payload(spec, key, unit, payload, how)
    }

    /// The write units make most, a measured value set to a last-write-wins
    /// key that has a state and a size estimate here, made directly: the
    /// same op, state, size estimate, change and message as
    /// [`write_general`](Self::write_general) makes of it, without the
    /// steps only other writes need (a payload chosen by strategy, the op
    /// checked again although it was built from checked parts, the
    /// state's strategy matched again, the change found by comparing the
    /// state's value before and after through the general accessors).
    ///
    /// Any other write goes the general way: another strategy or intent, a
    /// key without a state or a size estimate (its first write, or one
    /// whose estimate was dropped), a value not measured, a sequence
    /// number at its end, or an estimate past [`MAX_LOCAL_STATE_BYTES`]
    /// (the general path measures exactly). One function for both, so
    /// the write is built where the caller takes it: a `Write` is some
    /// 300 bytes.
    fn set_register(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
        now: u64,
    ) -> Result<Write> {
        let (Intent::Set(_), Some(len), Strategy::LastWriteWins, Some(seq)) =
            (&intent, value_len, spec.strategy(), self.seq.checked_add(1))
        else {
            return self.write_general(spec, key, unit, intent, value_len, now);
        };
        let Self {
            states,
            sizes,
            hlc,
            tab,
            ..
        } = self;
        let (Some(KeyState::LastWriteWins(register)), Some(size)) =
            (states.get_mut(&key), sizes.get_mut(&key))
        else {
            return self.write_general(spec, key, unit, intent, value_len, now);
        };
        // As `apply_sized` estimates a register set: the larger of the
        // entry held and the one written.
        let estimate = (*size).max(set_len(len) + ITEM_OVERHEAD);
        let value = match intent {
            Intent::Set(value) if estimate <= MAX_LOCAL_STATE_BYTES => Arc::new(value),
            intent => return self.write_general(spec, key, unit, intent, value_len, now),
        };
        #[cfg(test)]
        register_path::taken();
        let op = Op {
            id: OpId { tab: *tab, seq },
            key,
            writer: unit.clone(),
            stamp: hlc.tick(now),
            schema: spec.schema().version(),
            payload: Payload::Set {
                value: Arc::clone(&value),
            },
        };
        // A register's value is its entry's, or the key's default; it has
        // no conflict to change.
        let value_of = |register: &Register| {
            register
                .shared_value()
                .unwrap_or_else(|| Self::current_of(spec, None))
        };
        let before = value_of(register);
        register.keep_max(Entry::from_op(&op, value));
        let after = value_of(register);
        let change = (before != after).then(|| Change::new(op.key.clone(), before, after));
        *size = estimate;
        self.seq = seq;
        // A key kept in memory is neither saved nor sent: its write is
        // returned as it is (building an absent message is a copy too).
        if spec.lifetime() == Lifetime::Memory {
            return Ok(Write {
                op,
                change,
                message: None,
            });
        }
        self.touch(spec, &op.key);
        let message = message_of(spec, &op);
        Ok(Write {
            op,
            change,
            message,
        })
    }

    /// Stamps, applies and packages a local write.
    pub(super) fn write_payload(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        payload: Payload,
        how: Stamping,
    ) -> Result<Write> {
        // Room for a new key is checked where the op is applied (the
        // state is looked up there anyway); a refused op gives its
        // sequence number back.
        let seq = self.seq;
        let op = self.stamp_op(spec, key, unit, payload, &how)?;
        // A write behind the key's floor would change nothing here and be
        // refused everywhere else. A fresh stamp is never more than a day
        // behind any write held, so only a reused one (a revert) can lie
        // behind a merge key's floor; a counter's floor is its folded
        // horizon, which a state taken in can carry past this clock.
        if (how.reuse.is_some() || spec.strategy() == Strategy::Sum)
            && let Err(err) = self.check_floor(&op.key, op.stamp.wall_ms)
        {
            self.seq = seq;
            return Err(err);
        }
        let change = match self.apply_sized(spec, &op, how.value_len) {
            Ok(change) => change,
            Err(err) => {
                self.seq = seq;
                return Err(err);
            }
        };
        let message = message_of(spec, &op);
        Ok(Write {
            op,
            change,
            message,
        })
    }

    /// An op of this replica's next sequence number, stamped at `now` (the
    /// clock read once by the caller: in the browser each read is a call
    /// out to JavaScript).
    ///
    /// Refused unless it passes the checks every receiver makes
    /// ([`Op::validate`]), so this replica never keeps a write that all the
    /// others refuse: a merge write of more fields than an op may carry, a
    /// revert restoring a merged value larger than one value may be.
    /// A set or resolve value the caller measured (`how.value_len`) is not
    /// walked again; `how.reuse` replaces the fresh stamp.
    pub(super) fn stamp_op(
        &mut self,
        spec: &KeySpec,
        key: FullKey,
        unit: &UnitAddress,
        payload: Payload,
        how: &Stamping,
    ) -> Result<Op> {
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Overflow { key: key.clone() })?;
        let fresh = self.hlc.tick(how.now);
        let op = Op {
            id: OpId { tab: self.tab, seq },
            key,
            writer: unit.clone(),
            stamp: how.reuse.unwrap_or(fresh),
            schema: spec.schema().version(),
            payload,
        };
        op.check_built(how.value_len.is_some())?;
        self.seq = seq;
        Ok(op)
    }

    /// Applies a local op, refusing it (and changing nothing) if the key's
    /// state would pass [`MAX_LOCAL_STATE_BYTES`], or if the key holds no
    /// state yet and its declaration has all the full keys it may have
    /// ([`Error::TooManyKeys`]); returns the change. `value_len` as in
    /// [`Stamping`].
    ///
    /// A key that holds a state is looked up once, in each of the maps of
    /// states and of sizes: this runs on every write.
    pub(super) fn apply_sized(
        &mut self,
        spec: &KeySpec,
        op: &Op,
        value_len: Option<usize>,
    ) -> Result<Option<Change>> {
        let body = payload_len(&op.payload, value_len);
        let Self {
            states,
            sizes,
            counts,
            ..
        } = self;
        let state = states.get_mut(&op.key);
        let before = Self::before_of(spec, state.as_deref());
        let size = sizes.get_mut(&op.key);
        let held = match (&size, &state) {
            (Some(size), _) => **size,
            (None, Some(state)) => encoded_len(&**state, MAX_STATE_BYTES + 1),
            (None, None) => 0,
        };
        // A register holds one entry: after a set it holds the old one or
        // the new one, so it is at most the larger of the two. Any other
        // state may keep both.
        let replaces = matches!(
            (state.as_deref(), &op.payload),
            (
                Some(KeyState::LastWriteWins(_) | KeyState::FirstWriteWins(_)),
                Payload::Set { .. }
            )
        );
        let estimate = if replaces {
            held.max(body + ITEM_OVERHEAD)
        } else {
            held.saturating_add(op.growth_bound_over(body, state.as_deref()))
        };
        if state.is_none() {
            counts.room(None, spec, &op.key)?;
        }
        let change = if estimate <= MAX_LOCAL_STATE_BYTES {
            let after: &KeyState = match state {
                Some(state) => {
                    state.apply(op)?;
                    state
                }
                None => {
                    let mut fresh = KeyState::empty(spec.strategy());
                    fresh.apply(op)?;
                    counts.add(spec, &op.key);
                    states.entry(op.key.clone()).or_insert(fresh)
                }
            };
            let change = Self::change_of(spec, &op.key, before, Some(after));
            match size {
                Some(size) => *size = estimate,
                None => {
                    sizes.insert(op.key.clone(), estimate);
                }
            }
            change
        } else {
            let mut trial = state
                .as_deref()
                .cloned()
                .unwrap_or_else(|| KeyState::empty(spec.strategy()));
            trial.apply(op)?;
            let size = Self::fits_under(&trial, MAX_LOCAL_STATE_BYTES)?;
            self.count_key(spec, &op.key);
            self.states.insert(op.key.clone(), trial);
            self.sizes.insert(op.key.clone(), size);
            self.changed(spec, &op.key, before)
        };
        self.touch(spec, &op.key);
        Ok(change)
    }

    /// The state of `key`, created empty (and counted) if missing.
    pub(super) fn state_mut(&mut self, spec: &KeySpec, key: &FullKey) -> &mut KeyState {
        match self.states.entry(key.clone()) {
            std::collections::btree_map::Entry::Occupied(held) => held.into_mut(),
            std::collections::btree_map::Entry::Vacant(new) => {
                self.counts.add(spec, key);
                new.insert(KeyState::empty(spec.strategy()))
            }
        }
    }

    pub(super) fn size_estimate(&self, key: &FullKey) -> usize {
        self.size_estimate_of(key, || self.states.get(key))
    }

    /// [`size_estimate`](Self::size_estimate) of a key whose state
    /// `state` gives (looked up only if no estimate is kept).
    fn size_estimate_of<'s>(
        &self,
        key: &FullKey,
        state: impl FnOnce() -> Option<&'s KeyState>,
    ) -> usize {
        match self.sizes.get(key) {
            Some(size) => *size,
            None => state().map_or(0, |state| encoded_len(state, MAX_STATE_BYTES + 1)),
        }
    }

    /// The serialized size of `state`, or [`Error::TooLarge`] past
    /// [`MAX_STATE_BYTES`] (what an incoming item may grow a state to).
    pub(super) fn fits(state: &KeyState) -> Result<usize> {
        Self::fits_under(state, MAX_STATE_BYTES)
    }

    /// The serialized size of `state`, or [`Error::TooLarge`] past `limit`.
    pub(super) fn fits_under(state: &KeyState, limit: usize) -> Result<usize> {
        let size = encoded_len(state, limit + 1);
        if size > limit {
            return Err(Error::TooLarge {
                what: "key state",
                size,
                limit,
            });
        }
        Ok(size)
    }
}

impl Sink for Replica {
    type Done = Write;

    fn replica(&self) -> &Replica {
        self
    }

    fn put(
        &mut self,
        spec: &Arc<KeySpec>,
        full: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
    ) -> Result<Write> {
        self.write(spec, full, unit, intent, value_len)
    }

    fn put_in_place(
        &mut self,
        spec: &KeySpec,
        full: &FullKey,
        unit: &UnitAddress,
        writes: super::at_path::Measured,
        proven: bool,
    ) -> Result<std::result::Result<Write, super::at_path::Measured>> {
        self.write_in_place(spec, full, unit, writes, proven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::id::TabId;
    use crate::scope::Scope;
    use serde_json::json;

    #[test]
    fn a_register_size_estimate_covers_its_state_without_growing_per_write() {
        let mut replica = Replica::new(TabId::new(1), ManualClock::new(1_700_000_000_000));
        let unit: UnitAddress = "a/b/u".parse().unwrap();
        let key = SharedKey::<serde_json::Value>::builder("doc")
            .scope(Scope::Apartment)
            .build()
            .unwrap();
        replica.declare(&key).unwrap();
        let full = key.full_key(&unit);
        // 100 KiB a write: ten writes would pass MAX_LOCAL_STATE_BYTES if
        // every write added its size to the estimate.
        for round in 0..10 {
            let text = format!("{round}").repeat(100 << 10);
            replica.set(&unit, &key, json!({ "text": text })).unwrap();
            let exact = encoded_len(&replica.states[&full], usize::MAX);
            let estimate = *replica.sizes.get(&full).unwrap();
            assert!(estimate >= exact, "round {round}: {estimate} < {exact}");
            assert!(estimate < 2 * exact, "round {round}: {estimate} grew");
        }
    }

    #[test]
    fn a_payload_estimate_never_falls_below_its_length() {
        for value in [json!(-1.5e300), json!("\u{0}\"é"), json!({"a": [1]})] {
            // As measured by the check every written value passes first.
            let checked = crate::limits::check_value(&value, "value").unwrap();
            let payload = Payload::Set {
                value: value.into(),
            };
            let exact = encoded_len(&payload, usize::MAX);
            assert!(payload_len(&payload, None) >= exact);
            assert!(payload_len(&payload, Some(checked)) >= exact);
        }
    }
}

/// The register path ([`Replica::set_register`]) against the general one:
/// twin replicas take the same steps, one writing as units do, the other
/// always by [`Replica::write_general`]; every result and every piece of
/// state a later write reads must agree.
#[cfg(test)]
mod register_path {
    use proptest::prelude::{Just, ProptestConfig, Strategy as _, prop_oneof, proptest};
    use serde_json::{Value, json};

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::id::TabId;
    use crate::replica::intent::put_value;
    use crate::scope::Scope;
    use crate::storage::MemoryStorage;

    const START_MS: u64 = 1_700_000_000_000;

    /// A sink that writes by the general path only.
    struct General<'r>(&'r mut Replica);

    impl Sink for General<'_> {
        type Done = Write;

        fn replica(&self) -> &Replica {
            self.0
        }

        fn put(
            &mut self,
            spec: &Arc<KeySpec>,
            full: FullKey,
            unit: &UnitAddress,
            intent: Intent,
            value_len: Option<usize>,
        ) -> Result<Write> {
            let now = self.0.now();
            self.0.shed_future_at(now);
            self.0
                .write_general(spec, full, unit, intent, value_len, now)
        }
    }

    /// Last-write-wins keys of each lifetime (one with a default value
    /// other than null), and a key of another strategy.
    fn keys() -> Vec<SharedKey<Value>> {
        let lww = |name: &str, lifetime| {
            SharedKey::<Value>::builder(name)
                .scope(Scope::Building)
                .lifetime(lifetime)
        };
        vec![
            lww("memory", Lifetime::Memory).build().unwrap(),
            lww("session", Lifetime::Ephemeral).build().unwrap(),
            lww("local", Lifetime::Persistent)
                .default_value(json!(0))
                .build()
                .unwrap(),
            SharedKey::<Value>::builder("merged")
                .scope(Scope::Building)
                .strategy(crate::strategy::Strategy::Merge)
                .build()
                .unwrap(),
        ]
    }

    fn units() -> [UnitAddress; 2] {
        ["apt/b/one".parse().unwrap(), "apt/b/two".parse().unwrap()]
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A unit of this tab writes.
        Set {
            key: usize,
            unit: usize,
            value: Value,
        },
        /// Another tab, whose clock runs `ahead` ms ahead of this one,
        /// writes; both twins receive it.
        Remote {
            key: usize,
            value: Value,
            ahead: u64,
        },
        /// Time passes.
        Wait(u64),
        /// This tab's clock goes back (its own writes may then lie ahead of
        /// it, to be set aside).
        ClockBack(u64),
        /// Both twins save what is due (each to its own storage).
        Save,
        /// Both twins admit what the clock has caught up with.
        Poll,
        /// Both twins take in the other tab's whole state (a sync answer).
        Sync,
        /// Writes to stored keys wait for an outbox (or no longer do).
        Backlog(Option<usize>),
        /// Each twin undoes its last local write.
        Revert,
        /// A key's size estimate lies just under the limit (a large value
        /// measured before): a write near it is measured exactly.
        NearLimit(usize),
    }

    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        prop_oneof![
            (0_i64..3).prop_map(Value::from),
            Just(Value::Null),
            "[a-c]{0,3}".prop_map(Value::from),
            (0_i64..3, "[a-b]{1,2}").prop_map(|(n, name)| json!({ name: n, "x": [n] })),
            // Past the scalar estimate, and a size estimate that grows.
            (1_usize..4).prop_map(|n| Value::from("z".repeat(n << 12))),
        ]
    }

    const DAY: u64 = crate::clock::MAX_CLOCK_AHEAD_MS;

    /// How far ahead of this tab the other tab's clock runs: in step, a
    /// little, and past the allowed skew (its writes are held here).
    fn ahead() -> impl proptest::strategy::Strategy<Value = u64> {
        prop_oneof![
            Just(0_u64),
            1_u64..5_000,
            Just(60_000),
            Just(DAY + 1_000),
            Just(2 * DAY)
        ]
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        prop_oneof![
            6 => (0_usize..4, 0_usize..2, value())
                .prop_map(|(key, unit, value)| Step::Set { key, unit, value }),
            2 => (0_usize..4, value(), ahead())
                .prop_map(|(key, value, ahead)| Step::Remote { key, value, ahead }),
            1 => prop_oneof![Just(0_u64), 1_u64..3, Just(120_000), Just(2 * DAY)]
                .prop_map(Step::Wait),
            1 => prop_oneof![Just(1_000_u64), Just(DAY + 5_000)].prop_map(Step::ClockBack),
            1 => Just(Step::Save),
            1 => Just(Step::Poll),
            1 => Just(Step::Sync),
            1 => prop_oneof![Just(None), Just(Some(1_usize))].prop_map(Step::Backlog),
            1 => Just(Step::Revert),
            1 => (0_usize..3).prop_map(Step::NearLimit),
        ]
    }

    /// Everything of a replica that the two paths may touch.
    fn assert_twins(a: &Replica, b: &Replica) {
        assert_eq!(a.states, b.states);
        assert_eq!(a.sizes, b.sizes);
        assert_eq!(a.dirty, b.dirty);
        assert_eq!(a.counts, b.counts);
        assert_eq!(a.seq, b.seq);
        assert_eq!(a.hlc, b.hlc);
        assert_eq!(a.unreported, b.unreported);
        assert_eq!(a.held(), b.held());
        assert_eq!(a.quarantined, b.quarantined);
    }

    fn run(steps: &[Step]) {
        let clock = ManualClock::new(START_MS);
        let mut a = Replica::new(TabId::new(1), clock.clone());
        let mut b = Replica::new(TabId::new(1), clock.clone());
        let peer_clock = ManualClock::new(START_MS);
        let mut peer = Replica::new(TabId::new(2), peer_clock.clone());
        let keys = keys();
        for key in &keys {
            a.declare(key).unwrap();
            b.declare(key).unwrap();
            peer.declare(key).unwrap();
        }
        let units = units();
        let (mut a_saved, mut b_saved) = (MemoryStorage::new(), MemoryStorage::new());
        // Each twin's last local write, to undo.
        let mut last: Option<(usize, usize, Write, Write)> = None;
        for step in steps {
            match step {
                Step::Set {
                    key: k,
                    unit: u,
                    value,
                } => {
                    let (key, unit) = (&keys[*k], &units[*u]);
                    let fast = a.set(unit, key, value.clone());
                    let general =
                        put_value(&mut General(&mut b), unit, key, value.clone(), Intent::Set);
                    match (fast, general) {
                        (Ok(fast), Ok(general)) => {
                            assert_eq!(fast, general);
                            last = Some((*k, *u, fast, general));
                        }
                        (fast, general) => assert_eq!(format!("{fast:?}"), format!("{general:?}")),
                    }
                }
                Step::ClockBack(ms) => clock.set(clock.now_ms() - ms),
                Step::Poll => assert_eq!(a.poll(), b.poll()),
                Step::Sync => {
                    for message in peer.sync_messages() {
                        assert_eq!(a.receive(&message), b.receive(&message));
                    }
                }
                Step::Backlog(waiting) => {
                    a.set_backlog(*waiting);
                    b.set_backlog(*waiting);
                }
                Step::Revert => {
                    if let Some((k, u, in_a, in_b)) = &last {
                        let (key, unit) = (&keys[*k], &units[*u]);
                        let undone = (a.revert(unit, key, in_a), b.revert(unit, key, in_b));
                        assert_eq!(format!("{:?}", undone.0), format!("{:?}", undone.1));
                    }
                }
                Step::NearLimit(k) => {
                    let full = keys[*k].full_key(&units[0]);
                    for twin in [&mut a, &mut b] {
                        if let Some(size) = twin.sizes.get_mut(&full) {
                            *size = (*size).max(MAX_LOCAL_STATE_BYTES - 2_000);
                        }
                    }
                }
                Step::Remote { key, value, ahead } => {
                    peer_clock.set(clock.now_ms() + ahead);
                    let Ok(write) = peer.set(&units[0], &keys[*key], value.clone()) else {
                        continue;
                    };
                    let message = Message::Ops(OpGroup {
                        ops: vec![write.op],
                    });
                    assert_eq!(a.receive(&message), b.receive(&message));
                }
                Step::Wait(ms) => clock.advance(*ms),
                Step::Save => {
                    for lifetime in [Lifetime::Ephemeral, Lifetime::Persistent] {
                        assert_eq!(
                            a.persist(lifetime, &mut a_saved),
                            b.persist(lifetime, &mut b_saved)
                        );
                    }
                }
            }
            assert_twins(&a, &b);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_register_path_writes_what_the_general_path_writes(
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            run(&steps);
        }
    }

    thread_local! {
        static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Counts writes that took the register path (this thread's).
    pub(super) fn taken() {
        TAKEN.with(|n| n.set(n.get() + 1));
    }

    fn times_taken() -> usize {
        TAKEN.with(std::cell::Cell::get)
    }

    #[test]
    fn a_set_of_a_written_register_takes_the_register_path() {
        let mut replica = Replica::new(TabId::new(1), ManualClock::new(START_MS));
        let [unit, _] = units();
        let keys = keys();
        for key in &keys {
            replica.declare(key).unwrap();
        }
        let mut taken = |write: &mut dyn FnMut(&mut Replica)| {
            let before = times_taken();
            write(&mut replica);
            times_taken() - before
        };
        // A first write creates the state: the general path's.
        assert_eq!(taken(&mut |r| drop(r.set(&unit, &keys[2], json!(1)))), 0);
        assert_eq!(taken(&mut |r| drop(r.set(&unit, &keys[2], json!(2)))), 1);
        // The same value again: no change, still the register path.
        assert_eq!(taken(&mut |r| drop(r.set(&unit, &keys[2], json!(2)))), 1);
        // Other strategies: the general path.
        assert_eq!(
            taken(&mut |r| drop(r.set(&unit, &keys[3], json!({"a": 1})))),
            0
        );
        assert_eq!(
            taken(&mut |r| drop(r.set(&unit, &keys[3], json!({"a": 2})))),
            0
        );
    }

    #[test]
    fn the_twin_test_takes_both_paths() {
        let before = times_taken();
        run(&[
            Step::Set {
                key: 0,
                unit: 0,
                value: json!(1),
            },
            Step::Set {
                key: 0,
                unit: 1,
                value: json!(2),
            },
            Step::Set {
                key: 3,
                unit: 0,
                value: json!({"a": 1}),
            },
        ]);
        assert_eq!(times_taken() - before, 1);
    }
}
