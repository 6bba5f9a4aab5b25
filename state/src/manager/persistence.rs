//! Declaring keys and keeping them in storage: attaching a storage per
//! lifetime, loading (a key is loaded when it is declared, so a unit never
//! renders a default storage would have replaced), saving when a flush is
//! due, and the entries set aside as unusable (quarantine).

use std::cell::RefCell;
use std::rc::Rc;

use gaesup_state_core::{
    Change, Error as CoreError, FullKey, KeySpec, Lifetime, LoadReport, PersistReport, Quarantine,
    Replica, Result as CoreResult, SharedKey, Storage,
};
use leptos::prelude::*;

use super::{Origin, Shared, StateManager};
use crate::error::Result;

impl StateManager {
    /// Declares a key; declaring it again with the same rules is a no-op.
    ///
    /// A key declared for the first time is loaded at once from the
    /// storage attached for its lifetime, so a unit never renders a default
    /// that storage would have replaced; writes other tabs made to it
    /// before it was declared here (they were kept) apply too.
    pub fn declare<T>(&self, key: &SharedKey<T>) -> Result<()> {
        let shared = self.shared()?;
        let (new, declared) = {
            let mut replica = shared.replica_mut()?;
            let mut storages = shared.storages.borrow_mut();
            let before = replica.specs().count();
            // What is stored first, then what was held for the key (see
            // `Replica::declare_from`).
            let declared = replica.declare_from(key, storages.get_mut(key.spec().lifetime()))?;
            (replica.specs().count() > before, declared)
        };
        if new {
            // In the order they were applied: what was stored, then what
            // was held.
            let loaded = match declared.loaded {
                Some(Ok(report)) => {
                    self.settle(&shared, &report.changes);
                    Ok(())
                }
                Some(Err(err)) => Err(err),
                None => Ok(()),
            };
            self.publish(
                &shared,
                &declared.changes,
                declared.message.as_ref(),
                Origin::Remote,
            );
            Self::record_dropped(&shared, &declared.errors);
            Self::bump(&shared);
            // Last, with nothing borrowed: a hook may call the manager.
            let hooks = Rc::clone(&shared.on_declare.borrow());
            for hook in hooks.iter() {
                hook(key.spec());
            }
            loaded?;
        }
        Ok(())
    }

    /// Attaches the storage for `lifetime` (localStorage for persistent
    /// keys, sessionStorage for ephemeral ones) and loads what it holds for
    /// the keys declared so far.
    pub fn attach_storage(
        &self,
        lifetime: Lifetime,
        storage: Box<dyn Storage>,
    ) -> Result<Vec<LoadReport>> {
        let shared = self.shared()?;
        shared.storages.borrow_mut().attach(lifetime, storage);
        self.load(&shared, Some(lifetime))
    }

    /// Re-reads every attached storage and merges what it holds (a tab
    /// that becomes visible again, another tab's `clear()`), notifying the
    /// subscribers of every value that changed.
    pub fn reload(&self) -> Result<Vec<LoadReport>> {
        let shared = self.shared()?;
        self.load(&shared, None)
    }

    /// Re-reads only the named storage entries (another tab's `storage`
    /// events name the keys it wrote) and merges them, notifying the
    /// subscribers of every value that changed. Costs what the named
    /// entries cost, not what everything stored does.
    pub fn reload_named(&self, storage_keys: &[String]) -> Result<Vec<LoadReport>> {
        let shared = self.shared()?;
        self.through_storages(
            &shared,
            None,
            |replica, lifetime, storage| Ok(replica.load_named(lifetime, storage, storage_keys)),
            |report| &report.changes,
        )
    }

    pub(super) fn load(&self, shared: &Shared, only: Option<Lifetime>) -> Result<Vec<LoadReport>> {
        self.through_storages(
            shared,
            only,
            |replica, lifetime, storage| replica.load(lifetime, storage),
            |report| &report.changes,
        )
    }

    /// Runs `each` with the replica over the attached storages (only
    /// `only`'s, if given), then [`settle`](Self::settle)s what the
    /// reports say changed: loading and saving, one way.
    pub(super) fn through_storages<R>(
        &self,
        shared: &Shared,
        only: Option<Lifetime>,
        mut each: impl FnMut(&mut Replica, Lifetime, &mut dyn Storage) -> CoreResult<R>,
        changes: impl Fn(&R) -> &[Change],
    ) -> Result<Vec<R>> {
        let mut reports = Vec::new();
        {
            let mut replica = shared.replica_mut()?;
            let mut storages = shared.storages.borrow_mut();
            for (lifetime, storage) in storages.each(only) {
                reports.push(each(&mut replica, lifetime, storage)?);
            }
        }
        let changed: Vec<Change> = reports
            .iter()
            .flat_map(|report| changes(report).iter().cloned())
            .collect();
        self.settle(shared, &changed);
        Ok(reports)
    }

    /// What a load or a save changed reaches subscribers (as changes from
    /// elsewhere: storage), and the quarantine list follows.
    pub(super) fn settle(&self, shared: &Shared, changes: &[Change]) {
        self.publish(shared, changes, None, Origin::Remote);
        Self::refresh_quarantine(shared);
    }

    /// Publishes the replica's quarantine list if it changed (called with
    /// nothing borrowed: the signal may run effects at once).
    pub(super) fn refresh_quarantine(shared: &Shared) {
        // Busy only inside a call that fails as busy itself: the next
        // settle refreshes.
        let now: Vec<Quarantine> = match shared.replica() {
            Ok(replica) => replica.quarantined().cloned().collect(),
            Err(_) => return,
        };
        if shared.quarantine.with_untracked(|list| *list != now) {
            shared.quarantine.set(now);
        }
    }

    /// The entries set aside, as a signal that updates whenever a load, a
    /// save or a discard changes the list (for a notice area).
    pub fn quarantine_signal(&self) -> Signal<Vec<Quarantine>> {
        self.shared()
            .map(|shared| shared.quarantine.clone().into())
            .unwrap_or_else(|_| Signal::stored(Vec::new()))
    }

    /// Writes every changed key to its attached storage (coalesced: the web
    /// layer calls this at most once per animation frame). Writes that
    /// fail stay pending and are retried on the next flush.
    pub fn flush(&self) -> Result<Vec<PersistReport>> {
        let shared = self.shared()?;
        self.through_storages(
            &shared,
            None,
            |replica, lifetime, storage| Ok(replica.persist(lifetime, storage)),
            |report| &report.changes,
        )
    }

    /// Stored entries set aside because they could not be used (corrupt,
    /// from a newer schema, failing migration); their keys read defaults.
    pub fn quarantined(&self) -> Vec<Quarantine> {
        self.with_replica(|replica| replica.quarantined().cloned().collect())
            .unwrap_or_default()
    }

    /// The raw stored text of a quarantined key, for export. Read from the
    /// quarantine copy, or else from the untouched original entry.
    pub fn quarantined_raw(&self, key: &FullKey) -> Result<Option<String>> {
        let shared = self.shared()?;
        let lifetime = shared.replica()?.spec_for(key)?.lifetime();
        let storages = shared.storages.borrow();
        let Some(storage) = storages.get(lifetime) else {
            return Ok(None);
        };
        let read = |entry: &str| storage.get(entry).map_err(CoreError::from);
        match read(&Replica::quarantine_key(key))? {
            Some(text) => Ok(Some(text)),
            None => Ok(read(&Replica::storage_key(key))?),
        }
    }

    /// Gives up a quarantined entry (the user chose to discard it): both
    /// stored copies are removed and the key is saved again on the next
    /// flush, from what this tab holds of it: what was written or received
    /// since the entry was set aside. What the entry held is gone here; a
    /// sync layer that can fetch it again hears of it first
    /// ([`on_discard`](Self::on_discard)).
    pub fn discard_quarantine(&self, key: &FullKey) -> Result<()> {
        let shared = self.shared()?;
        let (lifetime, quarantined) = {
            let replica = shared.replica()?;
            let lifetime = replica.spec_for(key)?.lifetime();
            (lifetime, replica.quarantined().any(|q| q.key == *key))
        };
        if quarantined {
            let hooks = Rc::clone(&shared.on_discard.borrow());
            for hook in hooks.iter() {
                hook(key);
            }
        }
        {
            let mut replica = shared.replica_mut()?;
            let mut storages = shared.storages.borrow_mut();
            if let Some(storage) = storages.get_mut(lifetime) {
                replica.discard_quarantine(key, storage)?;
            }
        }
        Self::refresh_quarantine(&shared);
        self.notify_dirty(&shared);
        Self::bump(&shared);
        Ok(())
    }

    /// Lets keys be saved again whose set-aside entries another tab took
    /// out of storage: `key`'s (its quarantine copy was removed: that tab
    /// discarded it), or every key's (`None`: the storage was cleared). See
    /// [`Replica::lift_quarantine`].
    pub fn quarantine_gone(&self, key: Option<&FullKey>) -> Result<()> {
        let shared = self.shared()?;
        let lifted = {
            let mut replica = shared.replica_mut()?;
            let keys: Vec<FullKey> = match key {
                Some(key) => vec![key.clone()],
                None => replica.quarantined().map(|q| q.key.clone()).collect(),
            };
            keys.iter()
                .fold(false, |lifted, key| replica.lift_quarantine(key) | lifted)
        };
        if lifted {
            Self::refresh_quarantine(&shared);
            self.notify_dirty(&shared);
            Self::bump(&shared);
        }
        Ok(())
    }

    /// Saves `key` again on the next flush: its stored entry was removed
    /// behind this tab's back (another tab, devtools, an extension), and
    /// this tab holds its value. Before, nobody wrote it back: once the
    /// tabs holding it closed, the value was gone without a word.
    pub fn stored_entry_removed(&self, key: &FullKey) -> Result<()> {
        let shared = self.shared()?;
        let marked = shared.replica_mut()?.mark_dirty(key);
        if marked {
            self.notify_dirty(&shared);
        }
        Ok(())
    }

    /// Marks every stored key as changed, so the next flush writes it again
    /// (after another tab cleared the storage).
    pub fn mark_all_dirty(&self) -> Result<()> {
        let shared = self.shared()?;
        shared.replica_mut()?.mark_all_dirty();
        self.notify_dirty(&shared);
        Ok(())
    }

    pub(super) fn notify_dirty(&self, shared: &Shared) {
        if shared.storages.borrow().is_empty() {
            return;
        }
        let schedulers = Rc::clone(&shared.on_dirty.borrow());
        for schedule in schedulers.iter() {
            schedule();
        }
    }

    /// Runs `schedule` whenever a [`flush`](Self::flush) becomes due: after
    /// a local write of a stored key, a changed value from any source, a
    /// discard, or [`mark_all_dirty`](Self::mark_all_dirty) (the web layer
    /// schedules one flush per animation frame). Only with storage attached.
    pub fn on_dirty(&self, schedule: impl Fn() + 'static) -> Result<()> {
        let shared = self.shared()?;
        append(&shared.on_dirty, Rc::new(schedule));
        Ok(())
    }

    /// Runs `hook` with the declaration of each key declared here for the
    /// first time (from Rust or JavaScript), at the end of
    /// [`declare`](Self::declare): after what storage held for it was
    /// loaded (or failed to load: the key is declared either way, and
    /// `declare` then returns that error) and its changes were published
    /// (delivered, or queued behind the delivery running when a
    /// subscriber declares). Declaring it again runs nothing. Whoever waits
    /// for a key another unit declares (a JavaScript unit subscribing
    /// before the Leptos unit that owns the key has mounted) learns of it
    /// here: `window.gaesup` announces each one as `gaesup:declared`.
    pub fn on_declare(&self, hook: impl Fn(&KeySpec) + 'static) -> Result<()> {
        let shared = self.shared()?;
        append(&shared.on_declare, Rc::new(hook));
        Ok(())
    }

    /// Runs `hook` with the key of each set-aside entry the user discards
    /// ([`discard_quarantine`](Self::discard_quarantine)), before its
    /// stored copies are removed: what the entry held is then gone from
    /// this browser, and a sync layer that can fetch it again (a relay
    /// link) records that it must, where a crash cannot lose the record
    /// between the two.
    pub fn on_discard(&self, hook: impl Fn(&FullKey) + 'static) -> Result<()> {
        let shared = self.shared()?;
        append(&shared.on_discard, Rc::new(hook));
        Ok(())
    }
}

/// Adds `added` to a list of callbacks as a new list: a call running them
/// holds the old one (by reference count, not a copy), and may register
/// another meanwhile.
fn append<F: ?Sized>(list: &RefCell<Rc<[Rc<F>]>>, added: Rc<F>) {
    let mut list = list.borrow_mut();
    *list = list.iter().cloned().chain([added]).collect();
}
