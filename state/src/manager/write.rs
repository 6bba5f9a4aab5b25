//! Local writes: one key, several keys at once (a batch), and taking an
//! optimistic write back. Each is published at once: broadcast, logged,
//! delivered to the subscribers it touched.

use gaesup_state_core::{
    Batch, BatchWrite, FullKey, OpId, Path, Replica, SharedKey, UnitAddress, Write,
};
use serde::Serialize;
use serde_json::Value;
use std::cell::RefMut;

use super::{Origin, Shared, StateManager};
use crate::error::Result;

/// What a write of one key ([`StateManager::set`], `set_path`, `set_paths`,
/// `set_items`, `increment`, `resolve`, `rebase`) did, in brief: the
/// write's op id and whether it made a visible change.
///
/// The whole [`Write`] (op, change, message) is some 300 bytes, and in the
/// browser every move of it through a caller's `?` or `map_err` is a copy
/// that costs about half of what a whole write of zustand does. A caller
/// that needs it, to [`revert`](StateManager::revert) the write, asks
/// [`set_full`](StateManager::set_full),
/// [`increment_full`](StateManager::increment_full) or
/// [`resolve_full`](StateManager::resolve_full): the writes a revert
/// undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The write's op id: what [`confirmation`](StateManager::confirmation)
    /// waits for when the key syncs through a relay.
    pub id: OpId,
    /// Whether the write made a visible change: a new value, or for a
    /// user-resolve key a conflict it closed. Then the change was
    /// published, to the subscribers whose path it touches.
    pub changed: bool,
}

impl Written {
    fn of(write: &Write) -> Self {
        Self {
            id: write.op.id,
            changed: write.change.is_some(),
        }
    }
}

impl StateManager {
    /// Writes `value` to `key` for `unit`, then notifies and broadcasts.
    ///
    /// ```
    /// # use gaesup_state::{StateManager, SharedKey, UnitAddress};
    /// # let owner = leptos::prelude::Owner::new();
    /// # owner.with(|| {
    /// let manager = StateManager::with_system_clock();
    /// let unit: UnitAddress = "main/shop/cart".parse().unwrap();
    /// let count = SharedKey::<i64>::builder("count").build().unwrap();
    /// manager.declare(&count).unwrap();
    /// let first = manager.set(&unit, &count, 1).unwrap();
    /// assert!(first.changed);
    /// // The same value again: a write (a new op), but no change.
    /// let again = manager.set_full(&unit, &count, 1).unwrap();
    /// assert!(again.change.is_none());
    /// assert_eq!(again.op.id.seq, first.id.seq + 1);
    /// # });
    /// ```
    pub fn set<T: Serialize + 'static>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.set(unit, key, value))
    }

    /// [`set`](Self::set), returning the whole [`Write`]: its op, the
    /// change it made and the message it broadcast (what
    /// [`revert`](Self::revert) takes).
    pub fn set_full<T: Serialize + 'static>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        self.write(|replica| replica.set(unit, key, value))
    }

    /// Writes `value` at `path` inside the value of `key`, for `unit`, then
    /// notifies and broadcasts (see [`Replica::set_path`]).
    ///
    /// For a last-write-wins key of type `serde_json::Value` this is how to
    /// change one field of a large document: the stored value changes in
    /// place, and only subscribers whose path holds or lies inside `path`
    /// (and whole-key subscribers) are told, found without a diff of the
    /// document. A key that syncs still sends and saves the whole value.
    ///
    /// ```
    /// # use gaesup_state::{StateManager, SharedKey, UnitAddress, Path};
    /// # use serde_json::{json, Value};
    /// # let owner = leptos::prelude::Owner::new();
    /// # owner.with(|| {
    /// let manager = StateManager::with_system_clock();
    /// let unit: UnitAddress = "main/shop/cart".parse().unwrap();
    /// let doc = SharedKey::<Value>::builder("doc").build().unwrap();
    /// manager.declare(&doc).unwrap();
    /// manager.set(&unit, &doc, json!({"rows": {"r1": {"qty": 1}}})).unwrap();
    /// let qty = Path::parse("rows.r1.qty").unwrap();
    /// manager.set_path(&unit, &doc, &qty, json!(2)).unwrap();
    /// assert_eq!(manager.get(&unit, &doc).unwrap(), json!({"rows": {"r1": {"qty": 2}}}));
    /// # });
    /// ```
    pub fn set_path<T: serde::de::DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &Path,
        value: Value,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.set_path(unit, key, path, value))
    }

    /// Writes several places inside the value of `key` at once, for
    /// `unit`, then notifies (each subscriber once) and broadcasts (see
    /// [`Replica::set_paths`]): the paths lie apart, and if one leads
    /// nowhere nothing changes.
    pub fn set_paths<T: serde::de::DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        writes: impl IntoIterator<Item = (Path, Value)>,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.set_paths(unit, key, writes))
    }

    /// Replaces items of the list held by `key`, for `unit`: one write of
    /// every `(index, item)`, then one notification per subscriber and a
    /// broadcast (see [`Replica::set_items`]). Each index must exist and
    /// appear once; one write takes from one item to
    /// [`MAX_PATH_WRITES`](gaesup_state_core::MAX_PATH_WRITES).
    ///
    /// How to update rows of a long list: for a last-write-wins key the
    /// list changes in place, typed as it is, and a subscriber to one
    /// index ([`use_state_path`](crate::use_state_path) on `"3"`) is found
    /// and told without a diff of the list, so 100 rows of 1,000 cost
    /// what 100 rows cost. A key that syncs still sends the whole list.
    ///
    /// ```
    /// # use gaesup_state::{StateManager, SharedKey, UnitAddress};
    /// # let owner = leptos::prelude::Owner::new();
    /// # owner.with(|| {
    /// let manager = StateManager::with_system_clock();
    /// let unit: UnitAddress = "main/shop/table".parse().unwrap();
    /// let rows = SharedKey::<Vec<String>>::builder("rows").build().unwrap();
    /// manager.declare(&rows).unwrap();
    /// manager.set(&unit, &rows, vec!["a".into(), "b".into(), "c".into()]).unwrap();
    /// manager.set_items(&unit, &rows, [(0, "A".to_owned()), (2, "C".to_owned())]).unwrap();
    /// assert_eq!(manager.get(&unit, &rows).unwrap(), ["A", "b", "C"]);
    /// # });
    /// ```
    pub fn set_items<E: Serialize + serde::de::DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<Vec<E>>,
        items: impl IntoIterator<Item = (usize, E)>,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.set_items(unit, key, items))
    }

    /// Adds `delta` to a sum key.
    pub fn increment<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.increment(unit, key, delta))
    }

    /// [`increment`](Self::increment), returning the whole [`Write`] (what
    /// [`revert`](Self::revert) takes to subtract it again).
    pub fn increment_full<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<Write> {
        self.write(|replica| replica.increment(unit, key, delta))
    }

    /// Resolves a user-resolve conflict with `value`.
    pub fn resolve<T: Serialize + 'static>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.resolve(unit, key, value))
    }

    /// [`resolve`](Self::resolve), returning the whole [`Write`] (what
    /// [`revert`](Self::revert) takes).
    pub fn resolve_full<T: Serialize + 'static>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        self.write(|replica| replica.resolve(unit, key, value))
    }

    /// Re-bases `key` on what this tab holds, for `unit` (see
    /// [`Replica::rebase`], which says what `fields` are): what the relay
    /// link does when the relay refused this device's counter or merge ops
    /// as stale.
    pub fn rebase(
        &self,
        unit: &UnitAddress,
        key: &FullKey,
        fields: Option<&[String]>,
    ) -> Result<Written> {
        self.write_summed(|replica| replica.rebase(unit, key, fields))
    }

    /// Writes again a user-resolve key's write the relay refused as stale,
    /// for `unit` (see [`Replica::rebase_resolve`], which says what
    /// `value` and `supersedes` are): what the relay link does when this
    /// device was offline for longer than the compaction horizon.
    #[cfg(feature = "user-resolve")]
    pub fn rebase_resolve(
        &self,
        unit: &UnitAddress,
        key: &FullKey,
        value: &serde_json::Value,
        supersedes: &[gaesup_state_core::OpId],
    ) -> Result<Written> {
        self.write_summed(|replica| replica.rebase_resolve(unit, key, value, supersedes))
    }

    /// Undoes the local write `written` (from [`set_full`](Self::set_full),
    /// [`increment_full`](Self::increment_full) or
    /// [`resolve_full`](Self::resolve_full)) if nobody wrote over it since
    /// (see [`Replica::revert`]); a later write by anyone is kept.
    pub fn revert<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        written: &Write,
    ) -> Result<Option<Write>> {
        let shared = self.shared()?;
        let replica = shared.replica_mut()?;
        let reverted = self.run_local(&shared, replica, |replica| {
            replica.revert(unit, key, written)
        })?;
        if let Some(write) = &reverted {
            self.publish_local(&shared, write);
        }
        Ok(reverted)
    }

    /// Publishes what the replica changed on its own since it last said
    /// (writes held for a clock that has now caught up, or set aside
    /// because this tab's clock went back).
    pub(super) fn poll(&self, shared: &Shared) -> Result<()> {
        let changes = shared.replica_mut()?.poll();
        if !changes.is_empty() {
            self.publish(shared, &changes, None, Origin::Remote);
        }
        Ok(())
    }

    /// Runs a local write (or revert) on `replica` (the caller borrowed
    /// it: a busy manager runs nothing), then publishes what it set aside
    /// first (its own writes ahead of a clock that went back): before the
    /// write's own change, whose old value already shows it, and even
    /// when the write itself was refused.
    fn run_local<R>(
        &self,
        shared: &Shared,
        mut replica: RefMut<'_, Replica>,
        run: impl FnOnce(&mut Replica) -> gaesup_state_core::Result<R>,
    ) -> Result<R> {
        let done = run(&mut replica);
        self.report_earlier(shared, replica);
        Ok(done?)
    }

    /// Once a local write ran on `replica`: lets it go, then publishes
    /// what it set aside first (see [`run_local`](Self::run_local)).
    fn report_earlier(&self, shared: &Shared, mut replica: RefMut<'_, Replica>) {
        let earlier = replica.take_unreported();
        drop(replica);
        if !earlier.is_empty() {
            self.publish(shared, &earlier, None, Origin::Remote);
        }
    }

    /// The replica, borrowed for a write. Held items may be due: they are
    /// admitted (and published, with the replica let go) before the
    /// write, as time goes. Otherwise nothing to poll, and no clock read
    /// for it.
    fn writable<'s>(&self, shared: &'s Shared) -> Result<RefMut<'s, Replica>> {
        let replica = shared.replica_mut()?;
        if !replica.polls_due() {
            return Ok(replica);
        }
        drop(replica);
        self.poll(shared)?;
        shared.replica_mut()
    }

    /// Runs a local write (as [`write`](Self::write)) and sums it up: the
    /// write is published and summed up by reference, and its caller gets
    /// the summary, not the write (see [`Written`]).
    fn write_summed(
        &self,
        run: impl FnOnce(&mut Replica) -> gaesup_state_core::Result<Write>,
    ) -> Result<Written> {
        let shared = self.shared()?;
        let mut replica = self.writable(&shared)?;
        let done = run(&mut replica);
        self.sum_up(&shared, replica, done)
    }

    /// The rest of [`write_summed`](Self::write_summed), compiled once
    /// rather than once per kind of write.
    fn sum_up(
        &self,
        shared: &Shared,
        replica: RefMut<'_, Replica>,
        done: gaesup_state_core::Result<Write>,
    ) -> Result<Written> {
        self.report_earlier(shared, replica);
        if let Ok(write) = &done {
            self.publish_local(shared, write);
            return Ok(Written::of(write));
        }
        Ok(done.map(|write| Written::of(&write))?)
    }

    pub(super) fn write(
        &self,
        run: impl FnOnce(&mut Replica) -> gaesup_state_core::Result<Write>,
    ) -> Result<Write> {
        let shared = self.shared()?;
        let replica = self.writable(&shared)?;
        // The write is published where it lies and returned as it is: a
        // `Write` is some 300 bytes, and each `?` on the way out moved it.
        let done = self.run_local(&shared, replica, run);
        if let Ok(write) = &done {
            self.publish_local(&shared, write);
        }
        done
    }

    /// Publishes a local write: its change and its message.
    fn publish_local(&self, shared: &Shared, write: &Write) {
        self.publish(
            shared,
            write.change.as_slice(),
            write.message.as_ref(),
            Origin::Local,
        );
    }

    /// Several writes applied atomically: one broadcast, and each affected
    /// subscriber notified once. If `writes` fails, nothing applies.
    pub fn batch(
        &self,
        writes: impl FnOnce(&mut Batch<'_>) -> gaesup_state_core::Result<()>,
    ) -> Result<BatchWrite> {
        let shared = self.shared()?;
        self.poll(&shared)?;
        let batch = shared.replica_mut()?.batch(writes)?;
        self.publish(
            &shared,
            &batch.changes,
            batch.message.as_ref(),
            Origin::Local,
        );
        Ok(batch)
    }
}
