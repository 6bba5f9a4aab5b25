//! Rolling back an optimistic local write.
//!
//! The UI shows a write at once; if the action behind it fails (a server
//! said no), the write is reverted. A revert is a new write that restores
//! the previous value *only where the reverted write is still the latest*:
//! anything written since, by anyone, is kept. Because it is an ordinary
//! write, it reaches other tabs like any other.
//!
//! The revert op carries the *reverted op's stamp* and a fresh op id.
//! Registers order by (stamp, op id), so the revert beats exactly the
//! reverted write and everything older, and loses to every write stamped
//! after it, including concurrent writes this tab has not received yet.
//! A fresh stamp would beat those too and erase someone else's later
//! write once it arrived.

use std::sync::Arc;

use serde_json::Value;

use super::{Intent, Replica, Write, payload_for};
use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::SharedKey;
use crate::op::Payload;
use crate::permission::Action;
use crate::strategy::KeyState;

impl Replica {
    /// Reverts `written` (returned by an earlier [`set`](Replica::set),
    /// [`increment`](Replica::increment) or [`resolve`](Replica::resolve) on
    /// this replica for `key` and `unit`).
    ///
    /// Per strategy: last-write-wins and user-resolve restore the previous
    /// value if the write is still current (user-resolve keeps values
    /// written concurrently); merge restores only the fields nobody has
    /// written since (a write that went as the whole object, because it
    /// changed more fields than a patch carries, is undone only while
    /// nobody has written a field since); sum subtracts the increment (counters commute, so
    /// this is always possible; a reset is undone by resetting to the value
    /// it replaced, plus whatever was added since). First-write-wins keys
    /// cannot be reverted
    /// ([`Error::WrongStrategy`]): their first value is final everywhere.
    ///
    /// Returns `None` if there is nothing to undo (the write changed
    /// nothing, or everything it wrote was overwritten since: for an
    /// increment, a reset that observed it, or a revert of it among this
    /// replica's last 256).
    pub fn revert<T>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        written: &Write,
    ) -> Result<Option<Write>> {
        // One read of the clock for the future-stamp check and the undo.
        let now = self.now();
        self.shed_future_at(now);
        let (spec, full) = self.open(unit, key, Action::Write)?;
        let op = &written.op;
        if op.key != full || op.id.tab != self.tab {
            return Err(Error::Malformed {
                what: "revert",
                reason: String::from("the write was not made by this store for this key"),
            });
        }
        let Some(change) = &written.change else {
            return Ok(None);
        };
        let context = self.context_at(now);
        let state = self.states.get(&full);
        // What the undo asks for, as the key's strategy writes it.
        let undo = |intent| payload_for(&context, &spec, &full, state, intent);
        let payload = match (state, &op.payload) {
            (Some(KeyState::LastWriteWins(register)), _) => {
                if register.entry.as_ref().is_none_or(|e| e.id != op.id) {
                    return Ok(None);
                }
                undo(Intent::Set(Arc::unwrap_or_clone(change.old())))?
            }
            #[cfg(feature = "merge")]
            (Some(KeyState::Merge(merge)), Payload::Set { .. }) => {
                let current = merge.base.as_ref().is_some_and(|b| b.id == op.id);
                if !current || !merge.fields.is_empty() {
                    return Ok(None);
                }
                undo(Intent::Set(Arc::unwrap_or_clone(change.old())))?
            }
            #[cfg(feature = "merge")]
            (Some(KeyState::Merge(merge)), Payload::Patch { set, remove }) => {
                let Some(Value::Object(mut target)) = merge.value() else {
                    return Ok(None);
                };
                let old_value = change.old();
                let old = old_value.as_object();
                let mut reverted = false;
                for name in set.keys().chain(remove) {
                    if merge.fields.get(name).is_none_or(|f| f.id != op.id) {
                        continue;
                    }
                    reverted = true;
                    match old.and_then(|o| o.get(name)) {
                        Some(value) => target.insert(name.clone(), value.clone()),
                        None => target.remove(name),
                    };
                }
                if !reverted {
                    return Ok(None);
                }
                undo(Intent::Set(Value::Object(target)))?
            }
            (Some(KeyState::Sum(sum)), Payload::Reset { .. }) => {
                if sum.reset().is_none_or(|r| r.id != op.id) {
                    return Ok(None);
                }
                // Back to the value it replaced, keeping what was added since.
                let target = match (change.old().as_i64(), change.new.as_i64()) {
                    (Some(old), Some(new)) => old
                        .checked_sub(new)
                        .and_then(|undo| undo.checked_add(sum.total())),
                    _ => None,
                }
                .ok_or_else(|| Error::Overflow { key: full.clone() })?;
                undo(Intent::Set(Value::from(target)))?
            }
            (Some(KeyState::Sum(sum)), _) => {
                // A reset that observed the increment wiped it already,
                // and a revert of it undid it: nothing left to undo.
                let wiped = match &op.payload {
                    Payload::Count { slot, p, n } => sum.reset_observed(slot, *p, *n),
                    _ => false,
                };
                if wiped || self.reverted.contains(&op.id) {
                    return Ok(None);
                }
                let delta = match (change.new.as_i64(), change.old().as_i64()) {
                    (Some(new), Some(old)) => new.checked_sub(old),
                    _ => None,
                }
                .and_then(i64::checked_neg)
                .ok_or_else(|| Error::Overflow { key: full.clone() })?;
                undo(Intent::Add(delta))?
            }
            #[cfg(feature = "user-resolve")]
            (Some(KeyState::UserResolve(resolve)), _) => {
                if !resolve.entries().any(|e| e.id == op.id) {
                    return Ok(None);
                }
                // Supersede only the reverted write: values written
                // concurrently by others stay.
                Payload::Resolve {
                    value: change.old(),
                    supersedes: vec![op.id],
                }
            }
            (Some(KeyState::FirstWriteWins(_)), _) => {
                return Err(Error::WrongStrategy {
                    key: full.to_string(),
                    strategy: spec.strategy(),
                    operation: "revert",
                });
            }
            (None, _) => return Ok(None),
            #[cfg(feature = "merge")]
            (Some(KeyState::Merge(_)), _) => return Ok(None),
        };
        let how = super::write::Stamping {
            now: context.now,
            reuse: earlier_stamp(&payload, op.stamp),
            value_len: None,
        };
        let counted = matches!(payload, Payload::Count { .. });
        let undone = self.write_payload(&spec, full, unit, payload, how)?;
        if counted {
            if self.reverted.len() == REVERTED_KEPT {
                self.reverted.pop_front();
            }
            self.reverted.push_back(op.id);
        }
        Ok(Some(undone))
    }
}

/// How many reverted increments a replica remembers (see `reverted`): a
/// write is reverted once, when its confirmation fails, so only a caller
/// reverting one again after this many others would subtract it twice.
pub(super) const REVERTED_KEPT: usize = 256;

/// The stamp a write made now on behalf of an earlier moment takes (a
/// revert: the reverted write's; a held restore: the restore's), where
/// its payload may carry it. `None`: a fresh stamp.
pub(super) fn earlier_stamp(payload: &Payload, stamp: Stamp) -> Option<Stamp> {
    match payload {
        // Sum increments commute; they need no special stamp.
        Payload::Count { .. } => None,
        // A reset may not observe slots written after its stamp (every
        // receiver refuses that), and it observes every slot: when
        // another tab counted since that moment, the write is a reset of
        // now. (An undo then also beats a reset stamped in between that
        // this tab has not received yet.)
        Payload::Reset { observed, .. } if observed.iter().any(|o| o.last > stamp.wall_ms) => None,
        _ => Some(stamp),
    }
}
