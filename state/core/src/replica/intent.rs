//! The first steps of every local write, direct or batched: what a unit
//! asks for, checked, becomes an [`Intent`]; the key's strategy then turns
//! it into the [`Payload`] an op carries.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::Replica;
use crate::error::{Error, Result};
use crate::id::{TabId, UnitAddress};
use crate::key::{KeySpec, SharedKey};
#[cfg(feature = "merge")]
use crate::limits::{MAX_FIELD_NAME_BYTES, MAX_OP_ITEMS};
use crate::limits::{MAX_SUM_SLOTS, check_value_noting_nulls, serde_reason};
use crate::op::{OpId, Payload};
use crate::permission::Action;
use crate::scope::FullKey;
#[cfg(feature = "merge")]
use crate::strategy::merge_diff;
use crate::strategy::{KeyState, Strategy, SumState, Totals};

/// What a local write asks for, before the strategy turns it into a payload.
#[derive(Debug, Clone)]
pub(crate) enum Intent {
    Set(Value),
    Add(i64),
    // Refused as a wrong strategy, unread, in a build without user-resolve.
    #[cfg_attr(not(feature = "user-resolve"), allow(dead_code))]
    Resolve(Value),
}

/// Where a local write goes once it is an [`Intent`]: applied at once
/// ([`Replica`]) or staged ([`Batch`](super::Batch)).
pub(super) trait Sink {
    /// What a write there returns.
    type Done;

    /// The replica the write is checked against.
    fn replica(&self) -> &Replica;

    /// Applies or stages the write. `value_len`, when known, bounds the
    /// serialized size of the intent's value (already measured while
    /// checking it).
    fn put(
        &mut self,
        spec: &Arc<KeySpec>,
        full: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
    ) -> Result<Self::Done>;

    /// What `full` reads here now (a batch: after its earlier writes).
    fn current(&self, spec: &KeySpec, full: &FullKey) -> Arc<Value> {
        self.replica().current(spec, full)
    }

    /// Writes each value (of serialized length at most the number beside
    /// it) at its path in place, if this sink can for this key (`proven`:
    /// the caller's types show the values fit the key's type); the writes
    /// come back if not. None by default.
    fn put_in_place(
        &mut self,
        _spec: &KeySpec,
        _full: &FullKey,
        _unit: &UnitAddress,
        writes: super::at_path::Measured,
        _proven: bool,
    ) -> Result<std::result::Result<Self::Done, super::at_path::Measured>> {
        Ok(Err(writes))
    }
}

/// A value written to `key` by `unit` (a set, or a resolution): the key
/// opened for the unit (apartment, scope, write permission), the value
/// turned into checked JSON, and the write put into `sink`.
///
/// The typed part is only the conversion to JSON ([`into_json`]), made
/// once the key is open (a refused write serializes nothing); the rest is
/// one body for every value type ([`open_for_key`], [`put_json`]).
pub(super) fn put_value<S: Sink, T: Serialize + 'static>(
    sink: &mut S,
    unit: &UnitAddress,
    key: &SharedKey<T>,
    value: T,
    intent: impl FnOnce(Value) -> Intent,
) -> Result<S::Done> {
    let (spec, full) = open_for_key(sink.replica(), unit, key.spec())?;
    let value = into_json(value);
    let check = if key.is_erased() {
        TypeCheck::Full
    } else {
        TypeCheck::Nulls
    };
    put_json(sink, unit, (spec, full), check, value, intent)
}

/// The key of a write (a value or an increment), opened for `unit`
/// (apartment, scope, write permission) and checked for a backlog.
pub(super) fn open_for_key(
    replica: &Replica,
    unit: &UnitAddress,
    spec: &Arc<KeySpec>,
) -> Result<(Arc<KeySpec>, FullKey)> {
    let (spec, full) = replica.open_spec(unit, spec, Action::Write)?;
    replica.check_backlog(&spec)?;
    Ok((spec, full))
}

/// [`put_value`] once the key is open and the value is JSON (or failed to
/// become JSON).
pub(super) fn put_json<S: Sink>(
    sink: &mut S,
    unit: &UnitAddress,
    (spec, full): (Arc<KeySpec>, FullKey),
    check: TypeCheck,
    value: serde_json::Result<Value>,
    // A constructor (`Intent::Set`), not a pointer to one: a call through a
    // pointer is an indirect call on every write.
    intent: impl FnOnce(Value) -> Intent,
) -> Result<S::Done> {
    let value = value.map_err(|err| Error::TypeMismatch {
        key: full.to_string(),
        reason: serde_reason(&err),
    })?;
    let mut nulls = false;
    let len = check_written(spec.strategy(), &value, "value", &mut nulls)?;
    let decode = match check {
        TypeCheck::Full => true,
        TypeCheck::Nulls => nulls && !spec.holds_any_json(),
        TypeCheck::Done => false,
    };
    if decode {
        spec.check_type(full.as_str(), &value)?;
    }
    sink.put(&spec, full, unit, intent(value), len)
}

/// Whether [`put_json`] decodes a value as the key's type.
#[derive(Clone, Copy)]
pub(super) enum TypeCheck {
    /// Always: JSON the compiler did not check (a JSON view of a key
    /// declared with another Rust type, a path write's value).
    Full,
    /// When the JSON holds a null: a typed value serialized by serde_json,
    /// which writes a NaN or an infinite float as null, which the type
    /// then reads no more (here, and on every replica the write reaches).
    /// A null the type reads (an `Option`'s `None`) costs the decode.
    Nulls,
    /// Never: checked already, or any JSON is the key's type.
    Done,
}

/// Checks a value written to a key of `strategy`; the bound of its size
/// when the whole was measured (see [`check_value`](crate::limits::check_value)), noting in
/// `nulls` whether it holds a null.
///
/// A merge key's object goes out as its changed fields, and the op is
/// checked as every receiver checks it when it is built: each field must
/// be a value within the limit, the whole need not be (concurrent writes
/// of different fields merge past it, and the key must stay writable). A
/// whole value that goes out as one is refused there.
pub(super) fn check_written(
    strategy: Strategy,
    value: &Value,
    what: &'static str,
    nulls: &mut bool,
) -> Result<Option<usize>> {
    match check_value_noting_nulls(value, 0, what, nulls) {
        Ok(len) => Ok(Some(len)),
        Err(Error::TooLarge { .. }) if strategy.is_merge() && value.is_object() => Ok(None),
        Err(err) => Err(err),
    }
}

/// `value` as JSON. A [`Value`] is moved, not copied through a
/// serializer: a write of a large JSON document costs no second document.
fn into_json<T: Serialize + 'static>(value: T) -> serde_json::Result<Value> {
    // Decided when `T` is compiled: any other type skips the dynamic
    // downcast (a call through a vtable on every write).
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<Value>() {
        return serde_json::to_value(&value);
    }
    let mut slot = Some(value);
    if let Some(json) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Value>>() {
        return Ok(json.take().unwrap_or(Value::Null));
    }
    slot.map_or(Ok(Value::Null), |value| serde_json::to_value(&value))
}

/// An increment of `key` by `unit`, put into `sink`.
pub(super) fn put_delta<S: Sink, T>(
    sink: &mut S,
    unit: &UnitAddress,
    key: &SharedKey<T>,
    delta: i64,
) -> Result<S::Done> {
    let (spec, full) = open_for_key(sink.replica(), unit, key.spec())?;
    sink.put(&spec, full, unit, Intent::Add(delta), None)
}

impl Replica {
    /// What a payload needs to know about this tab at this moment.
    pub(super) fn context(&self) -> Context {
        self.context_at(self.now())
    }

    /// [`context`](Self::context) with the clock already read.
    pub(super) fn context_at(&self, now: u64) -> Context {
        Context {
            tab: self.tab,
            next: OpId {
                tab: self.tab,
                seq: self.seq.saturating_add(1),
            },
            now,
        }
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
        (Strategy::LastWriteWins, Intent::Set(value)) => Ok(Payload::Set {
            value: Arc::new(value),
        }),
        (Strategy::FirstWriteWins, Intent::Set(value)) => {
            if let Some(KeyState::FirstWriteWins(register)) = current
                && let Some(entry) = &register.entry
            {
                return Err(Error::FirstWriteWins {
                    key: key.clone(),
                    existing: entry.stamp,
                });
            }
            Ok(Payload::Set {
                value: Arc::new(value),
            })
        }
        #[cfg(feature = "merge")]
        (Strategy::Merge, Intent::Set(value)) => {
            let Value::Object(new) = value else {
                return Ok(Payload::Set {
                    value: Arc::new(value),
                });
            };
            match current.and_then(KeyState::value) {
                Some(Value::Object(old)) => {
                    let (set, remove) = merge_diff(&old, &new);
                    if set.len() + remove.len() > MAX_OP_ITEMS && fields_fit(&new) {
                        // More changed fields than an op may carry: the
                        // object goes whole (see below).
                        return Ok(Payload::Set {
                            value: Arc::new(Value::Object(new)),
                        });
                    }
                    Ok(Payload::Patch { set, remove })
                }
                // Over a value that is not an object, an object replaces it
                // whole (a patch would leave the old value where it sets no
                // field, as an empty object does).
                Some(_) => Ok(Payload::Set {
                    value: Arc::new(Value::Object(new)),
                }),
                // First write: fields, so concurrent first writes of other
                // fields survive; an empty object is a whole value, and so
                // is one of more fields than an op may carry.
                //
                // A whole value replaces the object as of its stamp: a
                // concurrent edit of another field stamped before it is
                // replaced too. That is the price of a write too wide for
                // a patch, which would otherwise be refused outright.
                None if new.is_empty() || (new.len() > MAX_OP_ITEMS && fields_fit(&new)) => {
                    Ok(Payload::Set {
                        value: Arc::new(Value::Object(new)),
                    })
                }
                None => {
                    // Extended, not collected (which sorts first, with a
                    // sort of its own in the wasm).
                    let mut set = std::collections::BTreeMap::new();
                    set.extend(new);
                    Ok(Payload::Patch {
                        set,
                        remove: Default::default(),
                    })
                }
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
        #[cfg(feature = "user-resolve")]
        (Strategy::UserResolve, Intent::Set(value) | Intent::Resolve(value)) => {
            let supersedes = match current {
                #[cfg(feature = "user-resolve")]
                Some(KeyState::UserResolve(state)) => state.live_ids(),
                _ => Vec::new(),
            };
            Ok(Payload::Resolve {
                value: Arc::new(value),
                supersedes,
            })
        }
        (_, Intent::Add(_)) => Err(wrong("increment")),
        (_, Intent::Resolve(_)) => Err(wrong("resolve")),
    }
}

/// Whether every field name of `object` is one a patch may carry: an
/// object going whole because it changes too many fields must not carry a
/// name that a later patch of that field could not (the write is then a
/// patch, refused for the name).
#[cfg(feature = "merge")]
fn fields_fit(object: &serde_json::Map<String, Value>) -> bool {
    object.keys().all(|name| name.len() <= MAX_FIELD_NAME_BYTES)
}

/// A sum key's increment: the writer's slot and the slot's totals after
/// adding `delta`. The slot is this tab's newest (see
/// [`SumState::slot_for`]) if it can take `delta`, else a new one.
///
/// A reset tells the totals of the slots its writer observed, and every
/// replica raises those slots to them (see `SumState::raise`): a peer can
/// raise this tab's slot so close to `u64::MAX` that an increment would
/// overflow it. A new slot counts the increment instead, alike everywhere.
/// What is refused ([`Error::Overflow`]) is an increment taking the
/// counter itself further past the `i64` range.
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
    let overflow = || Error::Overflow { key: key.clone() };
    let after = sum.map_or(0, SumState::wide_total) + i128::from(delta);
    if (delta > 0 && after > i128::from(i64::MAX)) || (delta < 0 && after < i128::from(i64::MIN)) {
        return Err(overflow());
    }
    let own = sum
        .and_then(|s| s.slot_for(context.tab, context.next.seq, context.now))
        .and_then(|(slot, totals)| added(totals, delta).map(|after| (slot, after)));
    let (slot, (p, n)) = match own {
        Some(found) => found,
        None => {
            if sum.is_some_and(|s| s.slot_count() >= MAX_SUM_SLOTS) {
                return Err(Error::TooLarge {
                    what: "sum slots",
                    size: MAX_SUM_SLOTS + 1,
                    limit: MAX_SUM_SLOTS,
                });
            }
            // From zero: |delta| ≤ 2^63 always fits.
            let totals = added(Totals::default(), delta).ok_or_else(overflow)?;
            (context.next, totals)
        }
    };
    Ok(Payload::Count { slot, p, n })
}

/// A slot's totals `(p, n)` after adding `delta`, unless one overflows.
fn added(totals: Totals, delta: i64) -> Option<(u64, u64)> {
    let magnitude = delta.unsigned_abs();
    if delta >= 0 {
        Some((totals.p.checked_add(magnitude)?, totals.n))
    } else {
        Some((totals.p, totals.n.checked_add(magnitude)?))
    }
}
