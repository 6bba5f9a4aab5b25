//! A key state seen item by item: every recorded write (an entry, a merge
//! field, a sum slot, reset or folded totals, a user-resolve watermark) as
//! one [`Item`]. What checks data from outside, compacts, finds the newest
//! stamp or splits a state works on items, whatever the strategy.

use serde_json::Value;

use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::{TabId, UnitAddress};
use crate::limits::{MAX_FIELD_NAME_BYTES, check_value};
use crate::op::OpId;

use super::{Entry, Folded, KeyState};

impl KeyState {
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
            #[cfg(feature = "merge")]
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
            #[cfg(feature = "user-resolve")]
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
            #[cfg(feature = "merge")]
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
                *o.slots_mut() = state.slots_mut().take_where(|_, _| {
                    i += 1;
                    is_picked(i - 1)
                });
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
            #[cfg(feature = "user-resolve")]
            (Self::UserResolve(state), Self::UserResolve(o)) => {
                // Entries, then watermarks: numbered in `visit`'s order.
                let mut i = 0;
                let mut pick = || {
                    i += 1;
                    is_picked(i - 1)
                };
                *o.entries_mut() = state.entries_mut().take_where(|_, _| pick());
                *o.seen_mut() = state.seen_mut().take_where(|_, _| pick());
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
}

/// What part of a state an [`Item`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind<'a> {
    /// A whole value of the key's type (registers, merge base,
    /// user-resolve entries), which can be type-checked.
    Whole,
    /// One top-level field of a merge value (none in a build without
    /// merge, which still checks the name's length like any other).
    #[cfg_attr(not(feature = "merge"), allow(dead_code))]
    Field(&'a str),
    /// A sum slot (by slot id).
    Slot(OpId),
    /// A sum reset.
    Reset,
    /// Folded sum totals, once per writer (the stamp is the horizon).
    Folded,
    /// A user-resolve watermark (the stamp is the superseding write's; the
    /// id is the superseded tab and sequence number).
    #[cfg(feature = "user-resolve")]
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

    /// Whether the item is a user-resolve watermark: the writes it names
    /// are another writer's claim of what it saw, not writes of its own.
    pub(crate) fn is_watermark(&self) -> bool {
        #[cfg(feature = "user-resolve")]
        return self.kind == ItemKind::Seen;
        #[cfg(not(feature = "user-resolve"))]
        false
    }
}

fn check_item(item: &Item<'_>) -> Result<()> {
    // A watermark carries the superseding write's stamp, folded totals
    // their horizon: neither is the item's own.
    let own_stamp = match item.kind {
        #[cfg(feature = "user-resolve")]
        ItemKind::Seen => false,
        ItemKind::Folded => false,
        _ => true,
    };
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
        .map_or(Ok(()), |value| check_value(value, "state value").map(drop))
}
