//! Conflict strategies and the per-key replicated state ([`KeyState`]).
//!
//! Each strategy is a state-based CRDT: [`KeyState::apply`] folds one op in,
//! [`KeyState::merge`] joins two states (commutative, associative,
//! idempotent), and [`KeyState::value`] materializes the value. Applying the
//! same ops in any order, with any duplicates, or merging states that saw
//! them through different paths, yields equal states; equal states
//! serialize to equal bytes. The state is what gets stored and what
//! anti-entropy exchanges.
//!
//! | strategy | state | winner |
//! |---|---|---|
//! | [`LastWriteWins`](Strategy::LastWriteWins) | one register | highest (stamp, op id) |
//! | [`FirstWriteWins`](Strategy::FirstWriteWins) | one register | lowest (stamp, op id) |
//! | [`Merge`](Strategy::Merge) | a whole-value register plus one register per top-level field | see [`MergeState`] |
//! | [`Sum`](Strategy::Sum) | per-slot cumulative (p, n) totals, the newest reset, folded old slots | reset + folded + Σ (slot − observed) |
//! | [`UserResolve`](Strategy::UserResolve) | multi-value register with per-tab watermarks | all concurrent values, highest stamp shown |
//!
//! Every state stays bounded by the live data: what lies more than
//! [`COMPACT_AFTER_MS`](crate::COMPACT_AFTER_MS) behind a key's newest write
//! is compacted, by a rule that depends on the state alone.
//!
//! One file per strategy's state (`register.rs`, `merge.rs`, `sum.rs`,
//! `resolve.rs`); `item.rs` sees any state write by write, which is how
//! states from outside are checked, split and searched. A new strategy is
//! a variant of [`Strategy`] and of [`KeyState`], a file here for its
//! state, and its payload in `replica/intent.rs`.
//!
//! **Strategies a build leaves out.** Merge and user-resolve are cargo
//! features of this crate (`merge`, `user-resolve`, both on by default):
//! a build without one has no such [`Strategy`] variant, so no unit can
//! declare a key of it and none of its code is linked. Its name decodes to
//! an error naming the feature ([`Strategy::from_name`]), so a stored
//! state of it is set aside unchanged by the replica's quarantine; in a
//! list of states from another tab or a relay its entries are left out and
//! the others kept ([`sync_entries`](crate::sync_entries)).

mod item;
#[cfg(feature = "merge")]
mod merge;
mod register;
#[cfg(feature = "user-resolve")]
mod resolve;
mod sum;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decode::{Fields, FromJson, Why, deserialize_through_tree};

pub(crate) use item::{Item, ItemKind};
#[cfg(feature = "merge")]
pub(crate) use merge::diff as merge_diff;
#[cfg(feature = "merge")]
pub use merge::{FieldEntry, MergeState};
pub use register::Register;
#[cfg(feature = "user-resolve")]
pub use resolve::{ResolveState, Seen};
pub(crate) use sum::implied_by;
pub use sum::{Folded, Observed, Reset, Slot, SumState, Totals};

use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::limits::canonical;
use crate::op::{Op, OpId, Payload};

/// How concurrent writes to a key are reconciled.
///
/// Decoded from its snake_case name; a strategy this build leaves out is
/// refused with the feature that brings it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The write with the highest stamp wins; ties broken by tab id.
    LastWriteWins,
    /// The write with the lowest stamp wins; a local write to a key that
    /// already holds a value is refused with [`Error::FirstWriteWins`].
    FirstWriteWins,
    /// Objects merge field by field (top-level fields), each field
    /// last-write-wins; non-objects fall back to last-write-wins. (Feature
    /// `merge`.)
    #[cfg(feature = "merge")]
    Merge,
    /// A counter: writes are increments, the value is their sum, each
    /// increment counts exactly once.
    Sum,
    /// Concurrent writes are kept side by side as a conflict for the user to
    /// resolve; any write supersedes every value its writer had seen.
    /// (Feature `user-resolve`.)
    #[cfg(feature = "user-resolve")]
    UserResolve,
}

impl Strategy {
    /// Whether ops with this payload are meaningful for this strategy.
    pub fn accepts(self, payload: &Payload) -> bool {
        match self {
            Self::LastWriteWins | Self::FirstWriteWins => matches!(payload, Payload::Set { .. }),
            #[cfg(feature = "merge")]
            Self::Merge => matches!(payload, Payload::Set { .. } | Payload::Patch { .. }),
            Self::Sum => matches!(payload, Payload::Count { .. } | Payload::Reset { .. }),
            #[cfg(feature = "user-resolve")]
            Self::UserResolve => matches!(payload, Payload::Resolve { .. }),
        }
    }

    /// Whether this is the merge strategy (always `false` in a build
    /// without it).
    pub const fn is_merge(self) -> bool {
        #[cfg(feature = "merge")]
        return matches!(self, Self::Merge);
        #[cfg(not(feature = "merge"))]
        return false;
    }

    /// Whether this is the user-resolve strategy (always `false` in a
    /// build without it).
    pub const fn is_user_resolve(self) -> bool {
        #[cfg(feature = "user-resolve")]
        return matches!(self, Self::UserResolve);
        #[cfg(not(feature = "user-resolve"))]
        return false;
    }

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LastWriteWins => "last_write_wins",
            Self::FirstWriteWins => "first_write_wins",
            #[cfg(feature = "merge")]
            Self::Merge => "merge",
            Self::Sum => "sum",
            #[cfg(feature = "user-resolve")]
            Self::UserResolve => "user_resolve",
        }
    }
}

/// Every strategy's name, with the cargo feature that brings it (`None`:
/// always built).
const NAMES: [(&str, Option<&str>); 5] = [
    ("last_write_wins", None),
    ("first_write_wins", None),
    ("merge", Some("merge")),
    ("sum", None),
    ("user_resolve", Some("user-resolve")),
];

impl Strategy {
    /// The strategy named `name` (its snake_case name). The error says
    /// whether the name is unknown or a strategy this build leaves out.
    pub fn from_name(name: &str) -> std::result::Result<Self, String> {
        let built = [
            Self::LastWriteWins,
            Self::FirstWriteWins,
            #[cfg(feature = "merge")]
            Self::Merge,
            Self::Sum,
            #[cfg(feature = "user-resolve")]
            Self::UserResolve,
        ];
        if let Some(found) = built.into_iter().find(|s| s.as_str() == name) {
            return Ok(found);
        }
        let all = NAMES.map(|(name, _)| name).join(", ");
        Err(match feature_of(name) {
            Some(feature) => format!(
                "strategy {name} is not in this build (the gaesup-state crates' feature `{feature}`)"
            ),
            None => format!(
                "unknown strategy {:?}: expected one of {all}",
                crate::error::preview(name)
            ),
        })
    }
}

impl Strategy {
    /// Whether `name` is a strategy of this version of the crate, built
    /// here or left out by a feature; `false` for a name no build of it
    /// knows (a newer version's strategy, or nonsense).
    pub fn is_known(name: &str) -> bool {
        NAMES.iter().any(|(known, _)| *known == name)
    }
}

/// The cargo feature that brings the strategy named `name`; `None` for a
/// strategy always built and for a name no build knows.
fn feature_of(name: &str) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|(known, _)| *known == name)
        .and_then(|(_, feature)| *feature)
}

/// Why `name` is not a strategy of this build, if it is one this build
/// leaves out (a feature it was built without) rather than one no build
/// knows.
#[cfg(not(all(feature = "merge", feature = "user-resolve")))]
pub(crate) fn left_out(name: &str) -> Option<String> {
    feature_of(name)?;
    Strategy::from_name(name).err()
}

impl FromJson for Strategy {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        Strategy::from_name(&crate::decode::text(value, "a strategy name")?)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value together with the write that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The write's stamp.
    pub stamp: Stamp,
    /// The write's op id.
    pub id: OpId,
    /// Who wrote it.
    pub writer: UnitAddress,
    /// The value (shared with the op that wrote it).
    pub value: Arc<Value>,
}

/// Replaces a shared value by `step` of it, taking the value out without a
/// copy when nothing else holds it (a migration).
pub(crate) fn migrate_shared(
    value: &mut Arc<Value>,
    step: impl FnOnce(Value) -> Result<Value>,
) -> Result<()> {
    let old = Arc::unwrap_or_clone(std::mem::take(value));
    *value = Arc::new(step(old)?);
    Ok(())
}

impl Entry {
    pub(crate) fn from_op(op: &Op, value: Arc<Value>) -> Self {
        Self {
            stamp: op.stamp,
            id: op.id,
            writer: op.writer.clone(),
            value,
        }
    }

    /// The total order all registers use: (stamp, op id), then writer and
    /// value text, which only matter if two different entries were forged
    /// with the same stamp and id; even then every replica picks the same.
    pub fn order(&self, other: &Self) -> Ordering {
        (self.stamp, self.id)
            .cmp(&(other.stamp, other.id))
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| {
                if self.value == other.value {
                    Ordering::Equal
                } else {
                    canonical(&self.value).cmp(&canonical(&other.value))
                }
            })
    }
}

/// One of several concurrent values of a user-resolve key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict<T = Value> {
    /// The write's op id (what a resolution supersedes).
    pub id: OpId,
    /// Who wrote it.
    pub writer: UnitAddress,
    /// Its stamp.
    pub stamp: Stamp,
    /// The value.
    pub value: T,
}

/// The replicated state of one key; one variant per strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "strategy", content = "data", rename_all = "snake_case")]
pub enum KeyState {
    /// See [`Strategy::LastWriteWins`].
    LastWriteWins(Register),
    /// See [`Strategy::FirstWriteWins`].
    FirstWriteWins(Register),
    /// See [`Strategy::Merge`].
    #[cfg(feature = "merge")]
    Merge(MergeState),
    /// See [`Strategy::Sum`].
    Sum(SumState),
    /// See [`Strategy::UserResolve`].
    #[cfg(feature = "user-resolve")]
    UserResolve(ResolveState),
}

impl KeyState {
    /// How many of `names` this state keeps a field entry for: a merge
    /// key's fields written since its base; none for any other strategy.
    pub(crate) fn held_fields<'a>(&self, names: impl Iterator<Item = &'a String>) -> usize {
        match self {
            #[cfg(feature = "merge")]
            Self::Merge(merge) => names
                .filter(|name| merge.fields.contains_key(*name))
                .count(),
            _ => {
                let _ = names;
                0
            }
        }
    }
}

impl FromJson for KeyState {
    /// `{"strategy": <name>, "data": <state>}`, in either order, other
    /// fields ignored.
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let mut tagged = Fields::of(value, "a key state {\"strategy\": …, \"data\": …}")?;
        let strategy: Strategy = tagged.req("strategy")?;
        let data = tagged.node("data")?;
        Ok(match strategy {
            Strategy::LastWriteWins => Self::LastWriteWins(Register::from_json(data)?),
            Strategy::FirstWriteWins => Self::FirstWriteWins(Register::from_json(data)?),
            #[cfg(feature = "merge")]
            Strategy::Merge => Self::Merge(MergeState::from_json(data)?),
            Strategy::Sum => Self::Sum(SumState::from_json(data)?),
            #[cfg(feature = "user-resolve")]
            Strategy::UserResolve => Self::UserResolve(ResolveState::from_json(data)?),
        })
    }
}

impl FromJson for Entry {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let mut fields = Fields::of(value, "an entry")?;
        Ok(Self {
            stamp: fields.req("stamp")?,
            id: fields.req("id")?,
            writer: fields.req("writer")?,
            value: fields.req("value")?,
        })
    }
}

deserialize_through_tree!(Strategy, KeyState, Entry);

impl KeyState {
    /// The state of a key nobody has written yet.
    pub fn empty(strategy: Strategy) -> Self {
        match strategy {
            Strategy::LastWriteWins => Self::LastWriteWins(Register::default()),
            Strategy::FirstWriteWins => Self::FirstWriteWins(Register::default()),
            #[cfg(feature = "merge")]
            Strategy::Merge => Self::Merge(MergeState::default()),
            Strategy::Sum => Self::Sum(SumState::default()),
            #[cfg(feature = "user-resolve")]
            Strategy::UserResolve => Self::UserResolve(ResolveState::default()),
        }
    }

    /// The strategy this state belongs to.
    pub fn strategy(&self) -> Strategy {
        match self {
            Self::LastWriteWins(_) => Strategy::LastWriteWins,
            Self::FirstWriteWins(_) => Strategy::FirstWriteWins,
            #[cfg(feature = "merge")]
            Self::Merge(_) => Strategy::Merge,
            Self::Sum(_) => Strategy::Sum,
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(_) => Strategy::UserResolve,
        }
    }

    /// Folds one op in. Fails only if the payload does not fit the
    /// strategy; applying an op twice is a no-op.
    pub fn apply(&mut self, op: &Op) -> Result<()> {
        let strategy = self.strategy();
        let mismatch = || Error::WrongStrategy {
            key: op.key.to_string(),
            strategy,
            operation: op.payload.kind(),
        };
        match (self, &op.payload) {
            (Self::LastWriteWins(reg), Payload::Set { value }) => {
                reg.keep_max(Entry::from_op(op, value.clone()));
            }
            (Self::FirstWriteWins(reg), Payload::Set { value }) => {
                reg.keep_min(Entry::from_op(op, value.clone()));
            }
            #[cfg(feature = "merge")]
            (Self::Merge(state), Payload::Set { value }) => {
                state.apply_set(Entry::from_op(op, value.clone()));
            }
            #[cfg(feature = "merge")]
            (Self::Merge(state), Payload::Patch { set, remove }) => {
                state.apply_patch(op, set, remove);
            }
            (Self::Sum(state), Payload::Count { slot, p, n }) => {
                state.apply_count(Slot {
                    slot: *slot,
                    seq: op.id.seq,
                    last: op.stamp,
                    writer: op.writer.clone(),
                    p: *p,
                    n: *n,
                });
            }
            (
                Self::Sum(state),
                Payload::Reset {
                    target,
                    horizon,
                    observed,
                },
            ) => {
                state.apply_reset(Reset {
                    stamp: op.stamp,
                    id: op.id,
                    writer: op.writer.clone(),
                    target: *target,
                    horizon: *horizon,
                    observed: observed.clone(),
                });
            }
            #[cfg(feature = "user-resolve")]
            (Self::UserResolve(state), Payload::Resolve { value, supersedes }) => {
                state.apply(Entry::from_op(op, value.clone()), supersedes);
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    /// Joins `other` into `self` (commutative, associative, idempotent).
    pub fn merge(&mut self, other: &KeyState) -> Result<()> {
        match (self, other) {
            (Self::LastWriteWins(a), Self::LastWriteWins(b)) => a.merge_max(b),
            (Self::FirstWriteWins(a), Self::FirstWriteWins(b)) => a.merge_min(b),
            #[cfg(feature = "merge")]
            (Self::Merge(a), Self::Merge(b)) => a.merge(b),
            (Self::Sum(a), Self::Sum(b)) => a.merge(b),
            #[cfg(feature = "user-resolve")]
            (Self::UserResolve(a), Self::UserResolve(b)) => a.merge(b),
            (this, _) => {
                return Err(Error::WrongStrategy {
                    key: String::from("(state merge)"),
                    strategy: this.strategy(),
                    operation: other.strategy().as_str(),
                });
            }
        }
        Ok(())
    }

    /// Writes stamped before this wall time are refused as stale: they lie
    /// more than 14 days behind the key's newest write, where replicas that
    /// compacted and replicas that did not could not judge them alike (sum,
    /// merge and user-resolve keys; see [`SumState::floor`],
    /// [`MergeState::floor`] and [`ResolveState::floor`]). `None` for
    /// strategies that compact nothing a late write needs.
    pub fn floor(&self) -> Option<u64> {
        match self {
            Self::Sum(state) => Some(state.floor()),
            #[cfg(feature = "merge")]
            Self::Merge(state) => Some(state.floor()),
            Self::LastWriteWins(_) | Self::FirstWriteWins(_) => None,
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => Some(state.floor()),
        }
    }

    /// Whether the state drops on arrival a write stamped behind its
    /// [`floor`](Self::floor), had it been taken (a user-resolve key
    /// compacts such a write at once): refusing it then loses nothing
    /// (see [`Error::Stale`](crate::Error::Stale)'s `dropped_anyway`).
    pub fn drops_behind_floor(&self) -> bool {
        match self {
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(_) => true,
            _ => false,
        }
    }

    /// The newest write the state's fold horizons vouch for (0 for none):
    /// a sum's folded totals and reset carry a horizon of their own,
    /// taken only once the clock would take that write (see
    /// [`sum::implied_by`]). Other strategies derive their floor from the
    /// writes they hold, each judged by its own stamp.
    pub(crate) fn implied_wall(&self) -> u64 {
        match self {
            Self::Sum(state) => state.implied_wall(),
            _ => 0,
        }
    }

    /// The materialized value, or `None` if nothing was ever written (the
    /// key then reads its default). Sum keys always have a value.
    pub fn value(&self) -> Option<Value> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                reg.entry.as_ref().map(|entry| Value::clone(&entry.value))
            }
            #[cfg(feature = "merge")]
            Self::Merge(state) => state.value(),
            Self::Sum(state) => Some(Value::from(state.total())),
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => state.winner().map(|entry| Value::clone(&entry.value)),
        }
    }

    /// [`value`](Self::value), shared: no copy where the state holds the
    /// value whole (registers); merge and sum values are built.
    pub fn shared_value(&self) -> Option<Arc<Value>> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => reg.shared_value(),
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => state.winner().map(|entry| Arc::clone(&entry.value)),
            #[cfg(feature = "merge")]
            Self::Merge(_) => self.value().map(Arc::new),
            Self::Sum(_) => self.value().map(Arc::new),
        }
    }

    /// [`value`](Self::value) without a copy where the state holds the
    /// value whole (registers); merge and sum values are built.
    pub fn value_ref(&self) -> Option<Cow<'_, Value>> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                reg.entry.as_ref().map(|entry| Cow::Borrowed(&*entry.value))
            }
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => state.winner().map(|entry| Cow::Borrowed(&*entry.value)),
            #[cfg(feature = "merge")]
            Self::Merge(_) => self.value().map(Cow::Owned),
            Self::Sum(_) => self.value().map(Cow::Owned),
        }
    }

    /// Concurrent values of a user-resolve key, winner first; empty when
    /// there is no conflict (zero or one value) or for other strategies.
    pub fn conflicts(&self) -> Vec<Conflict> {
        match self {
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => state.conflicts(),
            _ => Vec::new(),
        }
    }

    /// The write behind the current value: its writer and stamp. For merge
    /// keys, the newest write to any part of the value; for sum keys, the
    /// newest increment or reset. `None` for a key never written.
    pub fn last_write(&self) -> Option<(&UnitAddress, Stamp)> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                reg.entry.as_ref().map(|e| (&e.writer, e.stamp))
            }
            #[cfg(feature = "merge")]
            Self::Merge(state) => {
                let base = state.base.iter().map(|e| (&e.writer, e.stamp, e.id));
                let fields = state.fields.values().map(|f| (&f.writer, f.stamp, f.id));
                base.chain(fields)
                    .max_by_key(|(_, stamp, id)| (*stamp, *id))
                    .map(|(writer, stamp, _)| (writer, stamp))
            }
            Self::Sum(state) => {
                let reset = state.reset().map(|r| (&r.writer, r.stamp));
                let slots = state.slots().map(|s| (&s.writer, s.last));
                reset
                    .into_iter()
                    .chain(slots)
                    .max_by_key(|(_, stamp)| *stamp)
            }
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => state.winner().map(|e| (&e.writer, e.stamp)),
        }
    }

    /// Rewrites every stored value with a migration step (a migration sees
    /// whole values, never single fields; see [`MergeState`] for how merge
    /// fields keep their identities). Sum states hold no values and are
    /// unchanged.
    pub(crate) fn migrate(&mut self, step: &mut dyn FnMut(Value) -> Result<Value>) -> Result<()> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                if let Some(entry) = &mut reg.entry {
                    migrate_shared(&mut entry.value, step)?;
                }
            }
            #[cfg(feature = "merge")]
            Self::Merge(state) => state.migrate(step)?,
            Self::Sum(_) => {}
            #[cfg(feature = "user-resolve")]
            Self::UserResolve(state) => state.migrate(step)?,
        }
        Ok(())
    }
}
