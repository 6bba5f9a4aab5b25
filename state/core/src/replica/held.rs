//! Writes kept for later instead of refused: for a key this replica has not
//! declared yet (another tab has more units mounted; declaring it later
//! yields them), restores naming such a key, and items stamped further
//! ahead than the allowed clock skew (applied once the local clock gets
//! there, so a tab with a fast clock loses nothing and pins nobody's clock).
//!
//! Bounded: at most [`MAX_PARKED_KEYS`] undeclared keys and
//! [`MAX_HELD_BYTES`] in all; past that, incoming items are refused with
//! [`Error::TooLarge`] (this replica's own writes set aside after its clock
//! was set back are always kept).

use super::{Change, Declared, Replica};
use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::KeySpec;
use crate::limits::{MAX_HELD_BYTES, MAX_PARKED_KEYS, encoded_len};
use crate::message::{Message, SyncEntry};
use crate::op::Op;
use crate::scope::FullKey;
use crate::snapshot::SnapshotEntry;
use crate::vec_map::VecMap;

/// One held item.
#[derive(Debug, Clone)]
pub(super) enum HeldItem {
    Op(Op),
    State(SyncEntry),
}

/// A restore's value for a key not declared when it ran.
#[derive(Debug, Clone)]
pub(super) struct HeldRestore {
    pub unit: UnitAddress,
    pub entry: SnapshotEntry,
    /// Taken when the restore ran: the write's stamp, where it may be.
    pub stamp: Stamp,
}

/// A held item, when it may apply (`None`: when its key is declared), and
/// whether it is this replica's own write (set aside after its clock went
/// back: saved with the key's state, never dropped).
type Entry = (HeldItem, Option<u64>, bool);

/// Kept in sorted vectors: the restores number at most
/// [`MAX_PARKED_KEYS`], and the items' keys at most what
/// [`MAX_HELD_BYTES`] holds, or this replica's own keys with writes set
/// aside (few, and shed in key order: each joins at the end).
#[derive(Debug, Default)]
pub(super) struct Held {
    items: VecMap<FullKey, Vec<Entry>>,
    restores: VecMap<FullKey, HeldRestore>,
    bytes: usize,
}

impl Held {
    /// The earliest local time at which a held item may apply.
    fn due(&self) -> Option<u64> {
        // Asked before every write: nothing held is the usual answer.
        if self.items.is_empty() {
            return None;
        }
        self.items
            .values()
            .flat_map(|items| items.iter().filter_map(|(_, due, _)| *due))
            .min()
    }

    fn is_duplicate(&self, key: &FullKey, item: &HeldItem) -> bool {
        let Some(items) = self.items.get(key) else {
            return false;
        };
        items.iter().any(|(held, _, _)| match (held, item) {
            (HeldItem::Op(a), HeldItem::Op(b)) => a == b,
            (HeldItem::State(a), HeldItem::State(b)) => a == b,
            _ => false,
        })
    }
}

/// When the earliest write of `state` may apply: once local time is within
/// the allowed lead of its stamp, and of the write its fold horizon vouches
/// for (see `sum::implied_by`), without which none of it applies.
pub(super) fn due_of(state: &crate::strategy::KeyState) -> Option<u64> {
    let mut earliest: Option<u64> = None;
    state.visit(&mut |item| {
        if item.is_write() {
            let wall = item.stamp.wall_ms;
            earliest = Some(earliest.map_or(wall, |e| e.min(wall)));
        }
    });
    let horizon = state.implied_wall();
    let wall = match earliest {
        Some(earliest) => earliest.max(horizon),
        None if horizon > 0 => horizon,
        None => return None,
    };
    Some(wall.saturating_sub(crate::clock::MAX_CLOCK_AHEAD_MS))
}

fn item_size(item: &HeldItem) -> usize {
    match item {
        HeldItem::Op(op) => encoded_len(op, MAX_HELD_BYTES + 1),
        HeldItem::State(entry) => encoded_len(entry, MAX_HELD_BYTES + 1),
    }
}

fn too_much(size: usize) -> Error {
    Error::TooLarge {
        what: "writes held for later",
        size,
        limit: MAX_HELD_BYTES,
    }
}

impl Replica {
    /// Keeps `item` for later: until `key` is declared (`due` is `None`),
    /// or until local time `due`. `own` data (this replica's writes set aside
    /// after its clock went back) is kept whatever the bound.
    pub(super) fn hold(
        &mut self,
        key: &FullKey,
        item: HeldItem,
        due: Option<u64>,
        own: bool,
    ) -> Result<()> {
        if self.held.is_duplicate(key, &item) {
            return Ok(());
        }
        let size = item_size(&item);
        if !own {
            let new_key = !self.held.items.contains_key(key);
            let parked = self.held.items.len() + self.held.restores.len();
            if new_key && due.is_none() && parked >= MAX_PARKED_KEYS {
                return Err(Error::TooManyKeys {
                    key: String::from("(writes held for undeclared keys)"),
                    limit: MAX_PARKED_KEYS,
                });
            }
            let total = self.held.bytes.saturating_add(size);
            if total > MAX_HELD_BYTES {
                return Err(too_much(total));
            }
        }
        self.held.bytes = self.held.bytes.saturating_add(size);
        self.held
            .items
            .get_or_default(key.clone())
            .push((item, due, own));
        Ok(())
    }

    /// This replica's own writes to `key` set aside for a clock that went
    /// back: saved with the key's state so a reload keeps them.
    pub(super) fn own_held(&self, key: &FullKey) -> Vec<&crate::strategy::KeyState> {
        self.held
            .items
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(item, _, own)| match (item, own) {
                (HeldItem::State(entry), true) => Some(&entry.state),
                _ => None,
            })
            .collect()
    }

    /// What the held items and restores weigh once `restores` are held
    /// too (each replacing the one held for its key), or the limit they
    /// would pass.
    pub(super) fn room_for_restores<'a>(
        &self,
        restores: impl IntoIterator<Item = (&'a FullKey, &'a SnapshotEntry)>,
    ) -> Result<usize> {
        let mut bytes = self.held.bytes;
        let mut parked = self.held.items.len() + self.held.restores.len();
        for (key, entry) in restores {
            match self.held.restores.get(key) {
                Some(old) => {
                    bytes = bytes.saturating_sub(encoded_len(&old.entry, MAX_HELD_BYTES + 1));
                }
                None if parked >= MAX_PARKED_KEYS => {
                    return Err(Error::TooManyKeys {
                        key: String::from("(restores held for undeclared keys)"),
                        limit: MAX_PARKED_KEYS,
                    });
                }
                None => parked += 1,
            }
            bytes = bytes.saturating_add(encoded_len(entry, MAX_HELD_BYTES + 1));
            if bytes > MAX_HELD_BYTES {
                return Err(too_much(bytes));
            }
        }
        Ok(bytes)
    }

    /// Keeps restores' values for keys nobody declared yet: all, or none
    /// if they pass the limits.
    pub(super) fn hold_restores(&mut self, restores: Vec<(FullKey, HeldRestore)>) -> Result<()> {
        self.held.bytes =
            self.room_for_restores(restores.iter().map(|(key, held)| (key, &held.entry)))?;
        for (key, restore) in restores {
            self.held.restores.insert(key, restore);
        }
        Ok(())
    }

    fn take_held(
        &mut self,
        mut wanted: impl FnMut(&FullKey, Option<u64>) -> bool,
    ) -> Vec<HeldItem> {
        let mut taken = Vec::new();
        let bytes = &mut self.held.bytes;
        // One pass, in key order: a key's items that are wanted leave it,
        // and a key left with none leaves the map.
        self.held.items.retain(|key, items| {
            let (take, keep): (Vec<_>, Vec<_>) = std::mem::take(items)
                .into_iter()
                .partition(|(_, due, _)| wanted(key, *due));
            for (item, _, _) in take {
                *bytes = bytes.saturating_sub(item_size(&item));
                taken.push(item);
            }
            *items = keep;
            !items.is_empty()
        });
        taken
    }

    /// Admits again what was held for `spec`'s keys, now declared, and
    /// writes the restores that named them.
    pub(super) fn release_held(&mut self, spec: &KeySpec) -> Declared {
        let matches =
            |key: &FullKey| key.scope() == spec.scope() && key.name() == spec.name().as_str();
        let items = self.take_held(|key, _| matches(key));
        let mut declared = Declared::default();
        let inbound = self.readmit(items);
        declared.changes = inbound.changes;
        declared.errors = inbound.errors;
        let restores = self.held.restores.take_where(|key, _| matches(key));
        for (_, restore) in restores {
            self.held.bytes = self
                .held
                .bytes
                .saturating_sub(encoded_len(&restore.entry, MAX_HELD_BYTES + 1));
            match self.restore_one(&restore, spec) {
                Ok(Some(write)) => {
                    declared.changes.extend(write.change);
                    if let Some(Message::Ops(group)) = write.message {
                        match &mut declared.message {
                            Some(Message::Ops(all)) => all.ops.extend(group.ops),
                            _ => declared.message = Some(Message::Ops(group)),
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => declared.errors.push(err),
            }
        }
        declared
    }

    /// Sets aside this replica's own writes stamped beyond the allowed lead
    /// over the local clock (it was set back), so its next stamps, which
    /// stay within that lead, are still the newest it holds. They come
    /// back once the clock gets there. A no-op unless the clock moved back.
    pub(super) fn shed_future(&mut self) {
        self.shed_future_at(self.now());
    }

    /// [`shed_future`](Self::shed_future) with the clock already read.
    pub(super) fn shed_future_at(&mut self, now: u64) {
        if self.hlc.wall_ms() <= now.saturating_add(crate::clock::MAX_CLOCK_AHEAD_MS) {
            return;
        }
        let limit = now.saturating_add(crate::clock::MAX_CLOCK_AHEAD_MS);
        let keys: Vec<FullKey> = self.states.keys().cloned().collect();
        for key in keys {
            let Ok(spec) = self.spec_for(&key) else {
                continue;
            };
            let before = self.before(&spec, &key);
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            let ahead = state.split(&mut |item| item.is_write() && item.stamp.wall_ms > limit);
            if ahead.is_empty() {
                continue;
            }
            let due = due_of(&ahead);
            let entry = SyncEntry {
                key: key.clone(),
                schema: spec.schema().version(),
                state: ahead,
            };
            // Own data: never refused by the bound.
            let _ = self.hold(&key, HeldItem::State(entry), due, true);
            self.sizes.remove(&key);
            self.touch(&spec, &key);
            if let Some(change) = self.changed(&spec, &key, before) {
                self.unreported.push(change);
            }
        }
        self.hlc.clamp(now);
    }

    /// Changes nobody was told about yet, after setting aside what the
    /// clock no longer allows and admitting held items whose time has
    /// come. Call it now and then (the reactive layer does on every
    /// message, and before a write when [`polls_due`](Self::polls_due)).
    pub fn poll(&mut self) -> Vec<Change> {
        let now = self.now();
        self.shed_future_at(now);
        if self.held.due().is_some_and(|due| due <= now) {
            let items = self.take_held(|_, due| due.is_some_and(|d| d <= now));
            let inbound = self.readmit(items);
            self.unreported.extend(inbound.changes);
        }
        std::mem::take(&mut self.unreported)
    }

    /// Whether [`poll`](Self::poll) has anything to do before a local
    /// write: changes not reported yet, or held items that may be due.
    /// Found without reading the clock (in the browser a read is a call
    /// out to JavaScript). A write sets aside what the clock no longer
    /// allows itself; what that changes is in
    /// [`take_unreported`](Self::take_unreported) after it.
    pub fn polls_due(&self) -> bool {
        !self.unreported.is_empty() || self.held.due().is_some()
    }

    /// Changes nobody was told about yet, without reading the clock: what
    /// a write set aside before applying itself (they come before its own
    /// change, whose old value they already show).
    pub fn take_unreported(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.unreported)
    }

    /// Bytes held for later, and the number of keys they are for.
    pub fn held(&self) -> (usize, usize) {
        (
            self.held.bytes,
            self.held.items.len() + self.held.restores.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::due_of;
    use crate::clock::MAX_CLOCK_AHEAD_MS;
    use crate::limits::COMPACT_AFTER_MS;
    use crate::strategy::KeyState;

    const DAY: u64 = 24 * 60 * 60 * 1000;
    const NOW: u64 = 1_700_000_000_000;

    /// A sum state with one slot last written at `wall` and folded totals
    /// behind `horizon`.
    fn sum(wall: u64, horizon: u64) -> KeyState {
        let text = format!(
            r#"{{"strategy":"sum","data":{{"folded":{{"horizon":{horizon},"p":1,"n":0,"writers":["a/b/c"]}},
            "slots":[{{"slot":{{"tab":"1","seq":1}},"seq":1,"last":{{"wall_ms":{wall},"counter":0,"tab":"1"}},"writer":"a/b/c","p":2,"n":0}}]}}}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_state_is_due_when_its_horizon_s_write_would_be() {
        // The slot alone would be due now; the horizon vouches for a write
        // five days ahead.
        let horizon = NOW + 5 * DAY - COMPACT_AFTER_MS;
        let state = sum(NOW, horizon);
        assert_eq!(due_of(&state), Some(NOW + 5 * DAY - MAX_CLOCK_AHEAD_MS));
        // Without a horizon ahead, its earliest write decides.
        let state = sum(NOW + 3 * DAY, NOW - COMPACT_AFTER_MS);
        assert_eq!(due_of(&state), Some(NOW + 3 * DAY - MAX_CLOCK_AHEAD_MS));
    }
}
