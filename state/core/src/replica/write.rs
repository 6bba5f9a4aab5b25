//! Local writes: what a unit asks for (an [`Intent`]) becomes the payload
//! its key's strategy needs, then a stamped [`Op`] applied here and
//! broadcast.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{BatchWrite, Change, Replica, Write};
use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::{TabId, UnitAddress};
use crate::key::{KeySpec, SharedKey};
use crate::limits::{
    MAX_LOCAL_STATE_BYTES, MAX_STATE_BYTES, MAX_SUM_SLOTS, check_value, encoded_len, serde_reason,
};
use crate::message::Message;
use crate::op::{Op, OpGroup, OpId, Payload};
use crate::permission::Action;
use crate::scope::{FullKey, Lifetime};
use crate::strategy::{KeyState, Strategy, Totals, merge_diff};

use super::batch::Batch;

/// What a local write asks for, before the strategy turns it into a payload.
#[derive(Debug, Clone)]
pub(crate) enum Intent {
    Set(Value),
    Add(i64),
    Resolve(Value),
}

/// Slack added to a size estimate per write: the op's stamp, id and writer
/// around its value.
const ITEM_OVERHEAD: usize = 512;

impl Replica {
    /// Writes `value` to `key` on behalf of `unit`.
    ///
    /// Per strategy: last-write-wins and merge always succeed (merge sends
    /// only the changed top-level fields); first-write-wins fails with
    /// [`Error::FirstWriteWins`] once the key holds a value; sum resets the
    /// counter to `value` (increments made concurrently elsewhere still
    /// count on top of it, and two tabs resetting at once agree);
    /// user-resolve supersedes every value currently visible (so writing
    /// while a conflict is shown resolves it).
    ///
    /// A write that would grow the key's state past
    /// [`MAX_LOCAL_STATE_BYTES`] is refused with [`Error::TooLarge`] and
    /// changes nothing.
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

    /// Runs several writes atomically: either every write of `f` applies
    /// (as one [`OpGroup`], one broadcast, one change per key) or, if `f`
    /// or any write fails, nothing does.
    pub fn batch<F>(&mut self, f: F) -> Result<BatchWrite>
    where
        F: FnOnce(&mut Batch<'_>) -> Result<()>,
    {
        self.shed_future();
        let seq = self.seq;
        let mut batch = Batch::new(self);
        let result = f(&mut batch);
        let staged = batch.finish();
        match result.and_then(|()| self.check_staged(&staged)) {
            Ok(()) => Ok(self.commit(staged)),
            Err(err) => {
                // Op ids of the abandoned writes are reused; their stamps
                // are not (the clock only moves forward), which is harmless.
                self.seq = seq;
                Err(err)
            }
        }
    }

    /// The JSON of a value about to be written through `key`: within the
    /// limits, and (for an erased key) of the declared type.
    pub(super) fn to_json<T: Serialize>(
        key: &SharedKey<T>,
        full: &FullKey,
        value: &T,
    ) -> Result<Value> {
        let value = serde_json::to_value(value).map_err(|err| Error::TypeMismatch {
            key: full.to_string(),
            reason: serde_reason(&err),
        })?;
        check_value(&value, "value")?;
        key.check_write(full.as_str(), &value)?;
        Ok(value)
    }

    pub(super) fn write(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        intent: Intent,
    ) -> Result<Write> {
        self.shed_future();
        let payload = payload_for(&self.context(), spec, &key, self.states.get(&key), intent)?;
        self.write_payload(spec, key, unit, payload, None)
    }

    /// What a payload needs to know about this tab at this moment.
    pub(super) fn context(&self) -> Context {
        Context {
            tab: self.tab,
            next: OpId {
                tab: self.tab,
                seq: self.seq.saturating_add(1),
            },
            now: self.now(),
        }
    }

    /// Stamps, applies and packages a local write. `reuse` replaces the
    /// fresh stamp (see [`Replica::revert`]).
    pub(super) fn write_payload(
        &mut self,
        spec: &Arc<KeySpec>,
        key: FullKey,
        unit: &UnitAddress,
        payload: Payload,
        reuse: Option<Stamp>,
    ) -> Result<Write> {
        self.check_room(spec, &key)?;
        let seq = self.seq;
        let mut op = self.stamp_op(spec, key, unit, payload)?;
        if let Some(stamp) = reuse {
            op.stamp = stamp;
        }
        let change = match self.apply_sized(spec, &op) {
            Ok(change) => change,
            Err(err) => {
                self.seq = seq;
                return Err(err);
            }
        };
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

    pub(crate) fn stamp_op(
        &mut self,
        spec: &KeySpec,
        key: FullKey,
        unit: &UnitAddress,
        payload: Payload,
    ) -> Result<Op> {
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Overflow { key: key.clone() })?;
        let stamp = self.hlc.tick(self.now());
        self.seq = seq;
        Ok(Op {
            id: OpId { tab: self.tab, seq },
            key,
            writer: unit.clone(),
            stamp,
            schema: spec.schema().version(),
            payload,
        })
    }

    /// Applies a local op, refusing it (and changing nothing) if the key's
    /// state would pass [`MAX_LOCAL_STATE_BYTES`]; returns the change.
    pub(super) fn apply_sized(&mut self, spec: &KeySpec, op: &Op) -> Result<Option<Change>> {
        let before = self.before(spec, &op.key);
        let added = encoded_len(&op.payload, MAX_STATE_BYTES) + ITEM_OVERHEAD;
        let estimate = self.size_estimate(&op.key).saturating_add(added);
        if estimate <= MAX_LOCAL_STATE_BYTES {
            self.state_mut(spec, &op.key).apply(op)?;
            self.sizes.insert(op.key.clone(), estimate);
        } else {
            let mut trial = self
                .states
                .get(&op.key)
                .cloned()
                .unwrap_or_else(|| KeyState::empty(spec.strategy()));
            trial.apply(op)?;
            let size = Self::fits_under(&trial, MAX_LOCAL_STATE_BYTES)?;
            self.count_key(spec, &op.key);
            self.states.insert(op.key.clone(), trial);
            self.sizes.insert(op.key.clone(), size);
        }
        self.touch(spec, &op.key);
        Ok(self.changed(spec, &op.key, before))
    }

    /// The state of `key`, created empty (and counted) if missing.
    pub(super) fn state_mut(&mut self, spec: &KeySpec, key: &FullKey) -> &mut KeyState {
        self.count_key(spec, key);
        self.states
            .entry(key.clone())
            .or_insert_with(|| KeyState::empty(spec.strategy()))
    }

    pub(super) fn size_estimate(&self, key: &FullKey) -> usize {
        match self.sizes.get(key) {
            Some(size) => *size,
            None => self
                .states
                .get(key)
                .map_or(0, |state| encoded_len(state, MAX_STATE_BYTES + 1)),
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

/// What a payload needs to know about the writing tab.
pub(crate) struct Context {
    pub tab: TabId,
    /// The id the op will get.
    pub next: OpId,
    pub now: u64,
}

/// Turns a local write into the payload its key's strategy needs.
pub(crate) fn payload_for(
    context: &Context,
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
            match current.and_then(KeyState::value) {
                Some(Value::Object(old)) => {
                    let (set, remove) = merge_diff(&old, &new);
                    Ok(Payload::Patch { set, remove })
                }
                // Over a value that is not an object, an object replaces it
                // whole (a patch would leave the old value where it sets no
                // field, as an empty object does).
                Some(_) => Ok(Payload::Set {
                    value: Value::Object(new),
                }),
                // First write: fields, so concurrent first writes of other
                // fields survive; an empty object is a whole value.
                None if new.is_empty() => Ok(Payload::Set {
                    value: Value::Object(new),
                }),
                None => Ok(Payload::Patch {
                    set: new.into_iter().collect(),
                    remove: Default::default(),
                }),
            }
        }
        (Strategy::Sum, Intent::Set(value)) => {
            let target = value.as_i64().ok_or_else(|| Error::TypeMismatch {
                key: key.to_string(),
                reason: String::from("sum keys hold integers"),
            })?;
            let (horizon, observed) = match current {
                Some(KeyState::Sum(sum)) => (sum.floor(), sum.observe_all()),
                _ => (0, Vec::new()),
            };
            Ok(Payload::Reset {
                target,
                horizon,
                observed,
            })
        }
        (Strategy::Sum, Intent::Add(delta)) => count(context, key, current, delta),
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

/// A sum key's increment: the writer's slot (its newest, or a new one) and
/// the slot's totals after adding `delta`.
fn count(
    context: &Context,
    key: &FullKey,
    current: Option<&KeyState>,
    delta: i64,
) -> Result<Payload> {
    let sum = match current {
        Some(KeyState::Sum(sum)) => Some(sum),
        _ => None,
    };
    let (slot, totals) = match sum.and_then(|s| s.slot_for(context.tab, context.now)) {
        Some(found) => found,
        None => {
            if sum.is_some_and(|s| s.slots().count() >= MAX_SUM_SLOTS) {
                return Err(Error::TooLarge {
                    what: "sum slots",
                    size: MAX_SUM_SLOTS + 1,
                    limit: MAX_SUM_SLOTS,
                });
            }
            (context.next, Totals::default())
        }
    };
    let overflow = || Error::Overflow { key: key.clone() };
    let magnitude = delta.unsigned_abs();
    let (p, n) = if delta >= 0 {
        (
            totals.p.checked_add(magnitude).ok_or_else(overflow)?,
            totals.n,
        )
    } else {
        (
            totals.p,
            totals.n.checked_add(magnitude).ok_or_else(overflow)?,
        )
    };
    Ok(Payload::Count { slot, p, n })
}
