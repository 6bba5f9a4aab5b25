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
//! | [`Sum`](Strategy::Sum) | per-tab cumulative (p, n) totals | Σp − Σn |
//! | [`UserResolve`](Strategy::UserResolve) | multi-value register with tombstones | all concurrent values, highest stamp shown |

mod merge;
mod register;
mod resolve;
mod sum;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use merge::diff as merge_diff;
pub use merge::{FieldEntry, MergeState};
pub use register::Register;
pub use resolve::ResolveState;
pub use sum::{SumState, Totals};

use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::{TabId, UnitAddress};
use crate::limits::{MAX_FIELD_NAME_BYTES, canonical, check_value};
use crate::op::{Op, OpId, Payload};

/// How concurrent writes to a key are reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The write with the highest stamp wins; ties broken by tab id.
    LastWriteWins,
    /// The write with the lowest stamp wins; a local write to a key that
    /// already holds a value is refused with [`Error::FirstWriteWins`].
    FirstWriteWins,
    /// Objects merge field by field (top-level fields), each field
    /// last-write-wins; non-objects fall back to last-write-wins.
    Merge,
    /// A counter: writes are increments, the value is their sum, each
    /// increment counts exactly once.
    Sum,
    /// Concurrent writes are kept side by side as a conflict for the user to
    /// resolve; any write supersedes every value its writer had seen.
    UserResolve,
}

impl Strategy {
    /// All strategies.
    pub const ALL: [Strategy; 5] = [
        Strategy::LastWriteWins,
        Strategy::FirstWriteWins,
        Strategy::Merge,
        Strategy::Sum,
        Strategy::UserResolve,
    ];

    /// Whether ops with this payload are meaningful for this strategy.
    pub fn accepts(self, payload: &Payload) -> bool {
        matches!(
            (self, payload),
            (
                Self::LastWriteWins | Self::FirstWriteWins | Self::Merge,
                Payload::Set { .. }
            ) | (Self::Merge, Payload::Patch { .. })
                | (Self::Sum, Payload::Count { .. })
                | (Self::UserResolve, Payload::Resolve { .. })
        )
    }

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LastWriteWins => "last_write_wins",
            Self::FirstWriteWins => "first_write_wins",
            Self::Merge => "merge",
            Self::Sum => "sum",
            Self::UserResolve => "user_resolve",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value together with the write that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The write's stamp.
    pub stamp: Stamp,
    /// The write's op id.
    pub id: OpId,
    /// Who wrote it.
    pub writer: UnitAddress,
    /// The value.
    pub value: Value,
}

impl Entry {
    pub(crate) fn from_op(op: &Op, value: Value) -> Self {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Adjacently tagged (tag first) so decoding needs no buffering.
#[serde(tag = "strategy", content = "data", rename_all = "snake_case")]
pub enum KeyState {
    /// See [`Strategy::LastWriteWins`].
    LastWriteWins(Register),
    /// See [`Strategy::FirstWriteWins`].
    FirstWriteWins(Register),
    /// See [`Strategy::Merge`].
    Merge(MergeState),
    /// See [`Strategy::Sum`].
    Sum(SumState),
    /// See [`Strategy::UserResolve`].
    UserResolve(ResolveState),
}

impl KeyState {
    /// The state of a key nobody has written yet.
    pub fn empty(strategy: Strategy) -> Self {
        match strategy {
            Strategy::LastWriteWins => Self::LastWriteWins(Register::default()),
            Strategy::FirstWriteWins => Self::FirstWriteWins(Register::default()),
            Strategy::Merge => Self::Merge(MergeState::default()),
            Strategy::Sum => Self::Sum(SumState::default()),
            Strategy::UserResolve => Self::UserResolve(ResolveState::default()),
        }
    }

    /// The strategy this state belongs to.
    pub fn strategy(&self) -> Strategy {
        match self {
            Self::LastWriteWins(_) => Strategy::LastWriteWins,
            Self::FirstWriteWins(_) => Strategy::FirstWriteWins,
            Self::Merge(_) => Strategy::Merge,
            Self::Sum(_) => Strategy::Sum,
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
            (Self::Merge(state), Payload::Set { value }) => {
                state.apply_set(Entry::from_op(op, value.clone()));
            }
            (Self::Merge(state), Payload::Patch { set, remove }) => {
                state.apply_patch(op, set, remove);
            }
            (Self::Sum(state), Payload::Count { p, n }) => {
                state.apply(op.id.tab, Totals { p: *p, n: *n });
            }
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
            (Self::Merge(a), Self::Merge(b)) => a.merge(b),
            (Self::Sum(a), Self::Sum(b)) => a.merge(b),
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

    /// The materialized value, or `None` if nothing was ever written (the
    /// key then reads its default). Sum keys always have a value.
    pub fn value(&self) -> Option<Value> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                reg.entry.as_ref().map(|entry| entry.value.clone())
            }
            Self::Merge(state) => state.value(),
            Self::Sum(state) => Some(Value::from(state.total())),
            Self::UserResolve(state) => state.winner().map(|entry| entry.value.clone()),
        }
    }

    /// [`value`](Self::value) without a copy where the state holds the
    /// value whole (registers); merge and sum values are built.
    pub fn value_ref(&self) -> Option<Cow<'_, Value>> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                reg.entry.as_ref().map(|entry| Cow::Borrowed(&entry.value))
            }
            Self::UserResolve(state) => state.winner().map(|entry| Cow::Borrowed(&entry.value)),
            Self::Merge(_) | Self::Sum(_) => self.value().map(Cow::Owned),
        }
    }

    /// Concurrent values of a user-resolve key, winner first; empty when
    /// there is no conflict (zero or one value) or for other strategies.
    pub fn conflicts(&self) -> Vec<Conflict> {
        match self {
            Self::UserResolve(state) => state.conflicts(),
            _ => Vec::new(),
        }
    }

    /// Structural checks for a state that came from outside: values within
    /// limits, field names bounded, entries consistent.
    pub fn validate(&self) -> Result<()> {
        let mut result = Ok(());
        self.visit(&mut |item| {
            if result.is_err() {
                return;
            }
            result = check_item(&item);
        });
        result
    }

    /// Calls `f` for every recorded write (entries and field entries).
    pub(crate) fn visit(&self, f: &mut dyn FnMut(Item<'_>)) {
        fn entry(e: &Entry, whole: bool) -> Item<'_> {
            Item {
                stamp: e.stamp,
                id: e.id,
                writer: Some(&e.writer),
                value: Some(&e.value),
                field: None,
                whole,
            }
        }
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                if let Some(e) = &reg.entry {
                    f(entry(e, true));
                }
            }
            Self::Merge(state) => {
                if let Some(e) = &state.base {
                    f(entry(e, true));
                }
                for (name, field) in &state.fields {
                    f(Item {
                        stamp: field.stamp,
                        id: field.id,
                        writer: Some(&field.writer),
                        value: field.value.as_ref(),
                        field: Some(name),
                        whole: false,
                    });
                }
            }
            Self::Sum(_) => {}
            Self::UserResolve(state) => {
                for e in state.entries() {
                    f(entry(e, true));
                }
            }
        }
    }

    /// The write behind the current value: its writer and stamp. For merge
    /// keys, the newest write to any part of the value. Sum keys record no
    /// writers, so they report `None`, as does a key never written.
    pub fn last_write(&self) -> Option<(&UnitAddress, Stamp)> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                reg.entry.as_ref().map(|e| (&e.writer, e.stamp))
            }
            Self::Merge(state) => {
                let base = state.base.iter().map(|e| (&e.writer, e.stamp, e.id));
                let fields = state.fields.values().map(|f| (&f.writer, f.stamp, f.id));
                base.chain(fields)
                    .max_by_key(|(_, stamp, id)| (*stamp, *id))
                    .map(|(writer, stamp, _)| (writer, stamp))
            }
            Self::Sum(_) => None,
            Self::UserResolve(state) => state.winner().map(|e| (&e.writer, e.stamp)),
        }
    }

    /// Highest stamp recorded anywhere in the state.
    pub fn max_stamp(&self) -> Option<Stamp> {
        let mut max = None;
        self.visit(&mut |item| max = max.max(Some(item.stamp)));
        max
    }

    /// Highest op sequence number recorded for `tab`. A tab whose id
    /// survived a reload uses it to never reissue an op id.
    pub(crate) fn max_seq(&self, tab: TabId) -> u64 {
        let mut max = 0;
        self.visit(&mut |item| {
            if item.id.tab == tab {
                max = max.max(item.id.seq);
            }
        });
        if let Self::UserResolve(state) = self {
            for id in state.tombstones() {
                if id.tab == tab {
                    max = max.max(id.seq);
                }
            }
        }
        max
    }

    /// Rewrites every stored value with a migration step. Merge states are
    /// materialized, migrated as a whole and kept as one whole-value entry
    /// (a migration sees whole values, never single fields). Sum states hold
    /// no values and are unchanged.
    pub(crate) fn migrate(&mut self, step: &mut dyn FnMut(Value) -> Result<Value>) -> Result<()> {
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                if let Some(entry) = &mut reg.entry {
                    entry.value = step(std::mem::take(&mut entry.value))?;
                }
            }
            Self::Merge(state) => state.migrate(step)?,
            Self::Sum(_) => {}
            Self::UserResolve(state) => state.migrate(step)?,
        }
        Ok(())
    }
}

/// One recorded write, as seen by [`KeyState::visit`].
pub(crate) struct Item<'a> {
    pub stamp: Stamp,
    pub id: OpId,
    pub writer: Option<&'a UnitAddress>,
    /// `None` for a removed merge field.
    pub value: Option<&'a Value>,
    /// The merge field name, for field entries.
    pub field: Option<&'a str>,
    /// Whether `value` is a whole value of the key's type (as opposed to one
    /// field of it), so it can be type-checked.
    pub whole: bool,
}

fn check_item(item: &Item<'_>) -> Result<()> {
    if item.stamp.tab != item.id.tab {
        return Err(Error::Malformed {
            what: "key state",
            reason: format!("stamp tab differs from op tab (op {})", item.id),
        });
    }
    if item
        .field
        .is_some_and(|name| name.len() > MAX_FIELD_NAME_BYTES)
    {
        return Err(Error::Malformed {
            what: "key state",
            reason: String::from("field name too long"),
        });
    }
    item.value
        .map_or(Ok(()), |value| check_value(value, "state value"))
}
