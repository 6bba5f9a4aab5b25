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
pub use resolve::{ResolveState, Seen};
pub use sum::{Folded, Observed, Reset, Slot, SumState, Totals};

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
                | (Self::Sum, Payload::Count { .. } | Payload::Reset { .. })
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
        result?;
        if let Self::Sum(sum) = self {
            sum.validate()?;
        }
        Ok(())
    }

    /// Calls `f` for every recorded write: entries, merge fields, sum
    /// slots, resets and folded totals, user-resolve watermarks.
    pub(crate) fn visit(&self, f: &mut dyn FnMut(Item<'_>)) {
        fn entry<'a>(e: &'a Entry, kind: ItemKind<'a>) -> Item<'a> {
            Item {
                stamp: e.stamp,
                id: e.id,
                writer: Some(&e.writer),
                value: Some(&e.value),
                kind,
            }
        }
        match self {
            Self::LastWriteWins(reg) | Self::FirstWriteWins(reg) => {
                if let Some(e) = &reg.entry {
                    f(entry(e, ItemKind::Whole));
                }
            }
            Self::Merge(state) => {
                if let Some(e) = &state.base {
                    f(entry(e, ItemKind::Whole));
                }
                for (name, field) in &state.fields {
                    f(Item {
                        stamp: field.stamp,
                        id: field.id,
                        writer: Some(&field.writer),
                        value: field.value.as_ref(),
                        kind: ItemKind::Field(name),
                    });
                }
            }
            Self::Sum(state) => {
                if let Some(reset) = state.reset() {
                    f(Item {
                        stamp: reset.stamp,
                        id: reset.id,
                        writer: Some(&reset.writer),
                        value: None,
                        kind: ItemKind::Reset,
                    });
                }
                for slot in state.slots() {
                    f(Item {
                        stamp: slot.last,
                        id: OpId {
                            tab: slot.slot.tab,
                            seq: slot.seq,
                        },
                        writer: Some(&slot.writer),
                        value: None,
                        kind: ItemKind::Slot(slot.slot),
                    });
                }
                let folded = state.folded();
                let unattributed = folded.writers.is_empty() && (folded.p, folded.n) != (0, 0);
                let writers = folded.writers.iter().map(Some);
                let writers: Vec<Option<&UnitAddress>> = if unattributed {
                    vec![None]
                } else {
                    writers.collect()
                };
                for writer in writers {
                    f(Item {
                        stamp: Stamp {
                            wall_ms: folded.horizon,
                            counter: 0,
                            tab: TabId::new(0),
                        },
                        id: OpId {
                            tab: TabId::new(0),
                            seq: 0,
                        },
                        writer,
                        value: None,
                        kind: ItemKind::Folded,
                    });
                }
            }
            Self::UserResolve(state) => {
                for e in state.entries() {
                    f(entry(e, ItemKind::Whole));
                }
                for seen in state.seen() {
                    f(Item {
                        stamp: seen.stamp,
                        id: OpId {
                            tab: seen.tab,
                            seq: seen.seq,
                        },
                        writer: seen.writer.as_ref(),
                        value: None,
                        kind: ItemKind::Seen,
                    });
                }
            }
        }
    }

    /// Moves the items `take` picks into a new state of the same strategy
    /// (empty when it picks none) and keeps the rest. Both parts are states
    /// the original is the join of, so either can be joined anywhere later
    /// without breaking convergence.
    pub(crate) fn split(&mut self, take: &mut dyn FnMut(&Item<'_>) -> bool) -> KeyState {
        let mut picked = Vec::new();
        let mut index = 0usize;
        self.visit(&mut |item| {
            if take(&item) {
                picked.push(index);
            }
            index += 1;
        });
        let mut out = KeyState::empty(self.strategy());
        if picked.is_empty() {
            return out;
        }
        let is_picked = |i: usize| picked.binary_search(&i).is_ok();
        match (self, &mut out) {
            (Self::LastWriteWins(reg), Self::LastWriteWins(o))
            | (Self::FirstWriteWins(reg), Self::FirstWriteWins(o))
                if is_picked(0) =>
            {
                o.entry = reg.entry.take();
            }
            (Self::Merge(state), Self::Merge(o)) => {
                let mut i = 0;
                if state.base.is_some() {
                    if is_picked(0) {
                        o.base = state.base.take();
                    }
                    i = 1;
                }
                let names: Vec<String> = state.fields.keys().cloned().collect();
                for name in names {
                    if is_picked(i)
                        && let Some(field) = state.fields.remove(&name)
                    {
                        o.fields.insert(name, field);
                    }
                    i += 1;
                }
            }
            (Self::Sum(state), Self::Sum(o)) => {
                let mut i = 0;
                if state.reset().is_some() {
                    if is_picked(0) {
                        *o.reset_mut() = state.reset_mut().take();
                    }
                    i = 1;
                }
                let ids: Vec<OpId> = state.slots().map(|s| s.slot).collect();
                for id in ids {
                    if is_picked(i)
                        && let Some(slot) = state.slots_mut().remove(&id)
                    {
                        o.slots_mut().insert(id, slot);
                    }
                    i += 1;
                }
                if picked.iter().any(|&p| p >= i) {
                    let folded = state.folded_mut();
                    let empty = Folded {
                        after: folded.after,
                        horizon: folded.horizon,
                        ..Folded::default()
                    };
                    *o.folded_mut() = std::mem::replace(folded, empty);
                }
            }
            (Self::UserResolve(state), Self::UserResolve(o)) => {
                let ids: Vec<OpId> = state.entries().map(|e| e.id).collect();
                let mut i = 0;
                for id in ids {
                    if is_picked(i)
                        && let Some(entry) = state.entries_mut().remove(&id)
                    {
                        o.entries_mut().insert(id, entry);
                    }
                    i += 1;
                }
                let tabs: Vec<TabId> = state.seen().map(|s| s.tab).collect();
                for tab in tabs {
                    if is_picked(i)
                        && let Some(seen) = state.seen_mut().remove(&tab)
                    {
                        o.seen_mut().insert(tab, seen);
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        out
    }

    /// Whether the state holds no write at all.
    pub fn is_empty(&self) -> bool {
        let mut any = false;
        self.visit(&mut |_| any = true);
        !any
    }

    /// The write behind the current value: its writer and stamp. For merge
    /// keys, the newest write to any part of the value; for sum keys, the
    /// newest increment or reset. `None` for a key never written.
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
            Self::Sum(state) => {
                let reset = state.reset().map(|r| (&r.writer, r.stamp));
                let slots = state.slots().map(|s| (&s.writer, s.last));
                reset
                    .into_iter()
                    .chain(slots)
                    .max_by_key(|(_, stamp)| *stamp)
            }
            Self::UserResolve(state) => state.winner().map(|e| (&e.writer, e.stamp)),
        }
    }

    /// Highest stamp of a write recorded in the state (folded totals carry
    /// none).
    pub fn max_stamp(&self) -> Option<Stamp> {
        let mut max = None;
        self.visit(&mut |item| {
            if item.kind != ItemKind::Folded {
                max = max.max(Some(item.stamp));
            }
        });
        max
    }

    /// Highest op sequence number recorded for `tab`. A tab whose id
    /// survived a reload uses it to never reissue an op id.
    pub(crate) fn max_seq(&self, tab: TabId) -> u64 {
        let mut max = 0;
        self.visit(&mut |item| {
            if item.kind != ItemKind::Folded && item.id.tab == tab {
                max = max.max(item.id.seq);
            }
        });
        max
    }

    /// Rewrites every stored value with a migration step (a migration sees
    /// whole values, never single fields; see [`MergeState`] for how merge
    /// fields keep their identities). Sum states hold no values and are
    /// unchanged.
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

/// What part of a state an [`Item`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind<'a> {
    /// A whole value of the key's type (registers, merge base,
    /// user-resolve entries), which can be type-checked.
    Whole,
    /// One top-level field of a merge value.
    Field(&'a str),
    /// A sum slot (by slot id).
    Slot(OpId),
    /// A sum reset.
    Reset,
    /// Folded sum totals, once per writer (the stamp is the horizon).
    Folded,
    /// A user-resolve watermark (the stamp is the superseding write's; the
    /// id is the superseded tab and sequence number).
    Seen,
}

/// One recorded write, as seen by [`KeyState::visit`].
pub(crate) struct Item<'a> {
    pub stamp: Stamp,
    pub id: OpId,
    /// `None` only for data stored by versions that kept no writer.
    pub writer: Option<&'a UnitAddress>,
    /// `None` for a removed merge field and for parts that hold no value.
    pub value: Option<&'a Value>,
    pub kind: ItemKind<'a>,
}

impl Item<'_> {
    /// Whether the item is a write this tab's clock and op ids vouch for:
    /// everything but folded totals.
    pub(crate) fn is_write(&self) -> bool {
        self.kind != ItemKind::Folded
    }
}

fn check_item(item: &Item<'_>) -> Result<()> {
    let own_stamp = !matches!(item.kind, ItemKind::Seen | ItemKind::Folded);
    if own_stamp && item.stamp.tab != item.id.tab {
        return Err(Error::Malformed {
            what: "key state",
            reason: format!("stamp tab differs from op tab (op {})", item.id),
        });
    }
    if let ItemKind::Field(name) = item.kind
        && name.len() > MAX_FIELD_NAME_BYTES
    {
        return Err(Error::Malformed {
            what: "key state",
            reason: String::from("field name too long"),
        });
    }
    item.value
        .map_or(Ok(()), |value| check_value(value, "state value"))
}
