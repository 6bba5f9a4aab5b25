//! The state manager: one per apartment, shared by its units.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use gaesup_state_core::{
    ApartmentId, Batch, BatchWrite, Change, Clock, Conflict, Event, FullKey, Inbound, KeyState,
    Lifetime, LoadReport, Message, Path, PersistReport, Quarantine, Replica, Scope, SharedKey,
    Stamp, Storage, Strategy, TabId, Transport, UnitAddress, Write,
};
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Result, StateError};
use crate::platform::{SystemClock, random_tab_id};
use crate::registry::Registry;

/// How many recent operations the manager remembers for inspection.
pub const LOG_CAPACITY: usize = 200;

/// Identifies one subscription, to remove it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

/// Identifies one event listener, to remove it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// Where an entry of the operation log came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Written in this tab.
    Local,
    /// Received from another tab.
    Remote,
}

/// One entry of the operation log: a value change and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// Local write or remote op.
    pub origin: Origin,
    /// What changed.
    pub change: Change,
}

/// What an inspector shows about one key of this tab's replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The full key (`scope/…/name`).
    pub key: FullKey,
    /// Who shares it.
    pub scope: Scope,
    /// How long it lives.
    pub lifetime: Lifetime,
    /// How concurrent writes combine.
    pub strategy: Strategy,
    /// The declared schema version.
    pub schema: u32,
    /// The newest stamp in the key's state (the current value's version);
    /// `None` while it holds its default.
    pub version: Option<Stamp>,
    /// The unit that wrote the current value (for a sum key, the newest
    /// increment or reset; `None` for keys never written).
    pub last_writer: Option<UnitAddress>,
    /// Live subscriptions in this tab.
    pub subscribers: usize,
}

type OnChange = Rc<dyn Fn(&Change)>;
type OnEvent = Rc<dyn Fn(&Event)>;

struct Subscriber {
    path: Option<Path>,
    on_change: OnChange,
}

/// What a subscriber is filed under: its key, and the first segment of its
/// path (`None` for the whole key). A change then visits only the
/// subscribers under the segments it touched ([`Path::changed_heads`]),
/// not every path subscriber of the key.
type Watch = (FullKey, Option<String>);

struct Shared {
    replica: RefCell<Replica>,
    storages: RefCell<Vec<(Lifetime, Box<dyn Storage>)>>,
    on_dirty: RefCell<Vec<Rc<dyn Fn()>>>,
    subscribers: RefCell<Registry<Watch, Subscriber>>,
    listeners: RefCell<Registry<FullKey, OnEvent>>,
    transports: RefCell<Vec<Rc<dyn Transport>>>,
    log: RefCell<VecDeque<LogEntry>>,
    dropped: RefCell<Vec<String>>,
    quarantine: ArcRwSignal<Vec<Quarantine>>,
    revision: ArcRwSignal<u64>,
    /// Set while changes are being delivered to subscribers; a change
    /// published meanwhile (a subscriber wrote) waits in `pending`.
    delivering: Cell<bool>,
    pending: RefCell<VecDeque<Change>>,
}

/// One apartment's state: the replica of every declared key, who watches
/// what, and the way out to other tabs.
///
/// A `Copy` handle (the data lives in the reactive arena of the owner that
/// created it, normally the `<Apartment>`), so closures take it freely. When
/// that owner is disposed every call returns [`StateError::Disposed`].
///
/// Units do not use it directly: hooks inside a `<Unit>` bind it to the
/// unit's address. The shell, the inspector and transports do.
///
/// Notification never happens while the replica is borrowed, so a subscriber
/// may read or write state from its callback.
#[derive(Clone, Copy)]
pub struct StateManager {
    shared: StoredValue<Rc<Shared>, LocalStorage>,
}

impl std::fmt::Debug for StateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateManager")
            .field("tab", &self.tab().ok())
            .finish_non_exhaustive()
    }
}

impl StateManager {
    /// A manager for tab `tab` reading time from `clock`, owned by the
    /// current reactive owner.
    pub fn new(tab: TabId, clock: impl Clock + 'static) -> Self {
        let shared = Shared {
            replica: RefCell::new(Replica::new(tab, clock)),
            storages: RefCell::default(),
            on_dirty: RefCell::default(),
            subscribers: RefCell::default(),
            listeners: RefCell::default(),
            transports: RefCell::default(),
            log: RefCell::default(),
            dropped: RefCell::default(),
            quarantine: ArcRwSignal::new(Vec::new()),
            revision: ArcRwSignal::new(0),
            delivering: Cell::new(false),
            pending: RefCell::default(),
        };
        Self {
            shared: StoredValue::new_local(Rc::new(shared)),
        }
    }

    /// A manager with a random tab id and the platform's clock.
    pub fn with_system_clock() -> Self {
        Self::new(random_tab_id(), SystemClock)
    }

    fn shared(&self) -> Result<Rc<Shared>> {
        self.shared.try_get_value().ok_or(StateError::Disposed)
    }

    /// This tab's id.
    pub fn tab(&self) -> Result<TabId> {
        Ok(self.shared()?.replica.borrow().tab())
    }

    /// Reads the replica (for inspection: keys, states, quarantine).
    pub fn with_replica<R>(&self, read: impl FnOnce(&Replica) -> R) -> Result<R> {
        Ok(read(&self.shared()?.replica.borrow()))
    }

    /// Ties the manager to its apartment (the `<Apartment>` and the browser
    /// connection do this): other apartments' ops, states and events are
    /// refused and their stored entries left alone (see
    /// [`Replica::bind`](gaesup_state_core::Replica::bind)).
    pub fn bind(&self, apartment: &ApartmentId) -> Result<()> {
        Ok(self
            .shared()?
            .replica
            .borrow_mut()
            .bind(apartment.clone())?)
    }

    /// Declares a key; declaring it again with the same rules is a no-op.
    ///
    /// A key declared for the first time is loaded at once from the
    /// storage attached for its lifetime, so a unit never renders a default
    /// that storage would have replaced; writes other tabs made to it
    /// before it was declared here (they were kept) apply too.
    pub fn declare<T>(&self, key: &SharedKey<T>) -> Result<()> {
        let shared = self.shared()?;
        let (new, declared) = {
            let mut replica = shared.replica.borrow_mut();
            let before = replica.specs().count();
            let declared = replica.declare(key)?;
            (replica.specs().count() > before, declared)
        };
        if new {
            let spec = key.spec();
            let report = {
                let mut replica = shared.replica.borrow_mut();
                let mut storages = shared.storages.borrow_mut();
                match storages.iter_mut().find(|(l, _)| *l == spec.lifetime()) {
                    Some((_, storage)) => Some(replica.load_declared(spec, storage.as_mut())?),
                    None => None,
                }
            };
            self.publish(
                &shared,
                &declared.changes,
                declared.message.as_ref(),
                Origin::Remote,
            );
            Self::record_dropped(&shared, &declared.errors);
            if let Some(report) = report {
                self.publish(&shared, &report.changes, None, Origin::Remote);
                Self::refresh_quarantine(&shared);
            }
            Self::bump(&shared);
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
        shared.storages.borrow_mut().retain(|(l, _)| *l != lifetime);
        shared.storages.borrow_mut().push((lifetime, storage));
        self.load(&shared, Some(lifetime))
    }

    /// Re-reads every attached storage and merges what it holds (a tab
    /// that becomes visible again, another tab's `clear()`), notifying the
    /// subscribers of every value that changed.
    pub fn reload(&self) -> Result<Vec<LoadReport>> {
        let shared = self.shared()?;
        self.load(&shared, None)
    }

    fn load(&self, shared: &Shared, only: Option<Lifetime>) -> Result<Vec<LoadReport>> {
        let mut reports = Vec::new();
        {
            let mut replica = shared.replica.borrow_mut();
            let mut storages = shared.storages.borrow_mut();
            for (lifetime, storage) in storages.iter_mut() {
                if only.is_none_or(|l| l == *lifetime) {
                    reports.push(replica.load(*lifetime, storage.as_mut())?);
                }
            }
        }
        let changes: Vec<Change> = reports
            .iter()
            .flat_map(|r| r.changes.iter().cloned())
            .collect();
        self.publish(shared, &changes, None, Origin::Remote);
        Self::refresh_quarantine(shared);
        Ok(reports)
    }

    /// Publishes the replica's quarantine list if it changed (called with
    /// nothing borrowed: the signal may run effects at once).
    fn refresh_quarantine(shared: &Shared) {
        let now: Vec<Quarantine> = shared.replica.borrow().quarantined().cloned().collect();
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
        let mut reports = Vec::new();
        {
            let mut replica = shared.replica.borrow_mut();
            let mut storages = shared.storages.borrow_mut();
            for (lifetime, storage) in storages.iter_mut() {
                reports.push(replica.persist(*lifetime, storage.as_mut()));
            }
        }
        let changes: Vec<Change> = reports
            .iter()
            .flat_map(|r| r.changes.iter().cloned())
            .collect();
        self.publish(&shared, &changes, None, Origin::Remote);
        Self::refresh_quarantine(&shared);
        Ok(reports)
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
        let lifetime = shared.replica.borrow().spec_for(key)?.lifetime();
        let storages = shared.storages.borrow();
        let Some((_, storage)) = storages.iter().find(|(l, _)| *l == lifetime) else {
            return Ok(None);
        };
        let copy = storage
            .get(&Replica::quarantine_key(key))
            .map_err(gaesup_state_core::Error::from)?;
        match copy {
            Some(text) => Ok(Some(text)),
            None => Ok(storage
                .get(&Replica::storage_key(key))
                .map_err(gaesup_state_core::Error::from)?),
        }
    }

    /// Gives up a quarantined entry (the user chose to discard it): both
    /// stored copies are removed and the key is saved again on the next
    /// flush.
    pub fn discard_quarantine(&self, key: &FullKey) -> Result<()> {
        let shared = self.shared()?;
        let lifetime = shared.replica.borrow().spec_for(key)?.lifetime();
        {
            let mut replica = shared.replica.borrow_mut();
            let mut storages = shared.storages.borrow_mut();
            if let Some((_, storage)) = storages.iter_mut().find(|(l, _)| *l == lifetime) {
                replica.discard_quarantine(key, storage.as_mut())?;
            }
        }
        Self::refresh_quarantine(&shared);
        self.notify_dirty(&shared);
        Self::bump(&shared);
        Ok(())
    }

    fn notify_dirty(&self, shared: &Shared) {
        if shared.storages.borrow().is_empty() {
            return;
        }
        let schedulers: Vec<Rc<dyn Fn()>> = shared.on_dirty.borrow().clone();
        for schedule in schedulers {
            schedule();
        }
    }

    /// Runs `schedule` whenever a [`flush`](Self::flush) becomes due: after
    /// a local write of a stored key, a changed value from any source, a
    /// discard, or [`mark_all_dirty`](Self::mark_all_dirty) (the web layer
    /// schedules one flush per animation frame). Only with storage attached.
    pub fn on_dirty(&self, schedule: impl Fn() + 'static) -> Result<()> {
        self.shared()?.on_dirty.borrow_mut().push(Rc::new(schedule));
        Ok(())
    }

    /// The value of `key` as `unit` sees it.
    pub fn get<T: DeserializeOwned>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<T> {
        Ok(self.shared()?.replica.borrow().get(unit, key)?)
    }

    /// The value of `key` as JSON.
    pub fn get_value<T>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<Value> {
        Ok(self.shared()?.replica.borrow().get_value(unit, key)?)
    }

    /// The sub-value of `key` at `path`, if present. Copies only that part
    /// for keys whose state holds the value whole (last/first-write-wins,
    /// user-resolve); merge and sum values are assembled first.
    pub fn get_path<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &Path,
    ) -> Result<Option<Value>> {
        Ok(self.shared()?.replica.borrow().get_path(unit, key, path)?)
    }

    /// Open conflicts of a user-resolve key, winner first.
    pub fn conflicts<T: DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
    ) -> Result<Vec<Conflict<T>>> {
        Ok(self.shared()?.replica.borrow().conflicts(unit, key)?)
    }

    /// Writes `value` to `key` for `unit`, then notifies and broadcasts.
    pub fn set<T: Serialize>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        self.write(|replica| replica.set(unit, key, value))
    }

    /// Adds `delta` to a sum key.
    pub fn increment<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<Write> {
        self.write(|replica| replica.increment(unit, key, delta))
    }

    /// Resolves a user-resolve conflict with `value`.
    pub fn resolve<T: Serialize>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<Write> {
        self.write(|replica| replica.resolve(unit, key, value))
    }

    /// Undoes the local write `written` if nobody wrote over it since
    /// (see [`Replica::revert`]); a later write by anyone is kept.
    pub fn revert<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        written: &Write,
    ) -> Result<Option<Write>> {
        let shared = self.shared()?;
        let reverted = shared.replica.borrow_mut().revert(unit, key, written)?;
        if let Some(write) = &reverted {
            self.publish(
                &shared,
                write.change.as_slice(),
                write.message.as_ref(),
                Origin::Local,
            );
        }
        Ok(reverted)
    }

    /// Publishes what the replica changed on its own since it last said
    /// (writes held for a clock that has now caught up, or set aside
    /// because this tab's clock went back).
    fn poll(&self, shared: &Shared) {
        let changes = shared.replica.borrow_mut().poll();
        if !changes.is_empty() {
            self.publish(shared, &changes, None, Origin::Remote);
        }
    }

    fn write(
        &self,
        run: impl FnOnce(&mut Replica) -> gaesup_state_core::Result<Write>,
    ) -> Result<Write> {
        let shared = self.shared()?;
        self.poll(&shared);
        let write = run(&mut shared.replica.borrow_mut())?;
        self.publish(
            &shared,
            write.change.as_slice(),
            write.message.as_ref(),
            Origin::Local,
        );
        Ok(write)
    }

    /// Several writes applied atomically: one broadcast, and each affected
    /// subscriber notified once. If `writes` fails, nothing applies.
    pub fn batch(
        &self,
        writes: impl FnOnce(&mut Batch<'_>) -> gaesup_state_core::Result<()>,
    ) -> Result<BatchWrite> {
        let shared = self.shared()?;
        self.poll(&shared);
        let batch = shared.replica.borrow_mut().batch(writes)?;
        self.publish(
            &shared,
            &batch.changes,
            batch.message.as_ref(),
            Origin::Local,
        );
        Ok(batch)
    }

    /// Handles text from another tab: applies ops, answers sync requests,
    /// dispatches events. Refused input is counted in
    /// [`dropped`](Self::dropped) and changes nothing.
    pub fn receive_text(&self, text: &str) -> Result<Inbound> {
        let shared = self.shared()?;
        let inbound = shared.replica.borrow_mut().receive_text(text);
        self.publish(&shared, &inbound.changes, None, Origin::Remote);
        for reply in &inbound.replies {
            Self::send(&shared, reply);
        }
        for event in &inbound.events {
            Self::dispatch(&shared, event);
        }
        Self::record_dropped(&shared, &inbound.errors);
        // Applied ops may move stamps and writers without changing a
        // value, and refusals are counted: either way, worth a re-read.
        Self::bump(&shared);
        Ok(inbound)
    }

    /// Whether a refusal of incoming data only means "not for this tab"
    /// rather than bad input: another apartment's data (every apartment's
    /// manager shares one channel, for global keys). Such refusals are not
    /// counted as dropped messages. (Writes to keys this tab has not
    /// declared are not refused: they are held until declared.)
    pub fn is_not_for_this_tab(error: &gaesup_state_core::Error) -> bool {
        matches!(error, gaesup_state_core::Error::UnknownKey { .. }) || error.is_foreign()
    }

    fn record_dropped(shared: &Shared, errors: &[gaesup_state_core::Error]) {
        if errors.iter().all(Self::is_not_for_this_tab) {
            return;
        }
        let mut dropped = shared.dropped.borrow_mut();
        dropped.extend(
            errors
                .iter()
                .filter(|e| !Self::is_not_for_this_tab(e))
                .map(ToString::to_string),
        );
        let excess = dropped.len().saturating_sub(LOG_CAPACITY);
        dropped.drain(..excess);
    }

    /// Marks every stored key as changed, so the next flush writes it again
    /// (after another tab cleared the storage).
    pub fn mark_all_dirty(&self) {
        if let Ok(shared) = self.shared() {
            shared.replica.borrow_mut().mark_all_dirty();
            self.notify_dirty(&shared);
        }
    }

    /// Why recent incoming messages were refused, oldest first (at most
    /// [`LOG_CAPACITY`]).
    pub fn dropped(&self) -> Vec<String> {
        self.shared()
            .map(|s| s.dropped.borrow().clone())
            .unwrap_or_default()
    }

    /// Recent value changes, oldest first (at most [`LOG_CAPACITY`]).
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared()
            .map(|s| s.log.borrow().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts every change an inspector could show: a local write (even of
    /// the same value: its stamp and writer move), a message from another
    /// tab, a key declared, a subscription that came or went, a
    /// quarantined entry discarded. Read it in a reactive closure and
    /// call [`keys`](Self::keys), [`log`](Self::log) and the like inside it
    /// to stay current. (`0` once the manager is disposed.)
    pub fn revision(&self) -> Signal<u64> {
        self.shared()
            .map(|shared| shared.revision.clone().into())
            .unwrap_or_else(|_| Signal::stored(0))
    }

    fn bump(shared: &Shared) {
        shared.revision.update(|n| *n = n.wrapping_add(1));
    }

    /// Every key this tab holds a value of or watches, sorted by full key,
    /// with its declaration, current version, last writer and subscriber
    /// count: what a devtools panel lists. Keys only declared (never
    /// written, nobody subscribed) have no full key yet and are left out.
    pub fn keys(&self) -> Vec<KeyInfo> {
        let Ok(shared) = self.shared() else {
            return Vec::new();
        };
        let replica = shared.replica.borrow();
        let subscribers = shared.subscribers.borrow();
        let names: std::collections::BTreeSet<&FullKey> = replica
            .states()
            .keys()
            .chain(subscribers.keys().map(|(key, _)| key))
            .collect();
        names
            .into_iter()
            .filter_map(|key| {
                let spec = replica.spec_for(key).ok()?;
                Some(KeyInfo {
                    key: key.clone(),
                    scope: spec.scope(),
                    lifetime: spec.lifetime(),
                    strategy: spec.strategy(),
                    schema: spec.schema().version(),
                    version: replica.state(key).and_then(KeyState::max_stamp),
                    last_writer: replica.last_write(key).map(|(writer, _)| writer),
                    subscribers: Self::watching(&subscribers, key).count(),
                })
            })
            .collect()
    }

    /// Exports, as JSON text, the values of the keys of `scope` that
    /// `unit` can read (see [`Replica::snapshot`]): relative names, so the
    /// text restores into another building or apartment too.
    pub fn snapshot(&self, unit: &UnitAddress, scope: Scope) -> Result<String> {
        let shared = self.shared()?;
        let snapshot = shared.replica.borrow().snapshot(unit, scope);
        Ok(snapshot.to_json()?)
    }

    /// Restores a [`snapshot`](Self::snapshot) as `unit`: validated
    /// completely first (a bad snapshot changes nothing), then written as
    /// one batch that reaches subscribers, storage and other tabs like any
    /// local write.
    pub fn restore(&self, unit: &UnitAddress, text: &str) -> Result<BatchWrite> {
        let shared = self.shared()?;
        let restored = shared.replica.borrow_mut().restore(unit, text)?;
        self.publish(
            &shared,
            &restored.changes,
            restored.message.as_ref(),
            Origin::Local,
        );
        Ok(restored)
    }

    /// Adds a way out to other tabs (a BroadcastChannel, a relay, a
    /// [`MemoryBus`](gaesup_state_core::MemoryBus) endpoint in tests).
    /// Every op, sync reply and cross-tab event is handed to each
    /// transport; what a transport receives comes back through
    /// [`receive_text`](Self::receive_text).
    pub fn connect(&self, transport: impl Transport + 'static) -> Result<()> {
        self.shared()?
            .transports
            .borrow_mut()
            .push(Rc::new(transport));
        Ok(())
    }

    /// Asks the other tabs for their state (a new or re-awakened tab).
    pub fn request_sync(&self) -> Result<()> {
        let shared = self.shared()?;
        let request = shared.replica.borrow().sync_request();
        Self::send(&shared, &request);
        Ok(())
    }

    /// Watches `key` (or only `path` inside it) as `unit`; `on_change` runs
    /// after each change. Checked against the key's read permission.
    pub fn subscribe<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: Option<Path>,
        on_change: impl Fn(&Change) + 'static,
    ) -> Result<SubscriptionId> {
        let shared = self.shared()?;
        let full = shared.replica.borrow().subscribe(unit, key)?;
        let subscriber = Subscriber {
            path,
            on_change: Rc::new(on_change),
        };
        let head = subscriber
            .path
            .as_ref()
            .and_then(|path| path.first().map(str::to_owned));
        let id = shared
            .subscribers
            .borrow_mut()
            .insert((full, head), subscriber);
        Self::bump(&shared);
        Ok(SubscriptionId(id))
    }

    /// Stops a subscription; `false` if it was already gone.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let Ok(shared) = self.shared() else {
            return false;
        };
        let removed = shared.subscribers.borrow_mut().remove(id.0);
        if removed {
            Self::bump(&shared);
        }
        removed
    }

    /// Live subscriptions in all (what the leak test watches).
    pub fn subscription_count(&self) -> usize {
        self.shared().map_or(0, |s| s.subscribers.borrow().len())
    }

    /// Live subscriptions of one key.
    pub fn subscriber_count(&self, key: &FullKey) -> usize {
        self.shared()
            .map_or(0, |s| Self::watching(&s.subscribers.borrow(), key).count())
    }

    /// Every subscriber of `key`, whatever its path.
    fn watching<'r>(
        subscribers: &'r Registry<Watch, Subscriber>,
        key: &'r FullKey,
    ) -> impl Iterator<Item = &'r Subscriber> {
        subscribers
            .range((key.clone(), None)..)
            .take_while(move |((watched, _), _)| watched == key)
            .map(|(_, subscriber)| subscriber)
    }

    /// The callbacks `change` must reach: whole-key subscribers and those
    /// whose path it touched, visiting only the paths under the top-level
    /// fields it changed.
    fn targets(subscribers: &Registry<Watch, Subscriber>, change: &Change) -> Vec<OnChange> {
        let touched = |s: &&Subscriber| s.path.as_ref().is_none_or(|path| change.touches(path));
        let callback = |s: &Subscriber| Rc::clone(&s.on_change);
        let whole = (change.key.clone(), None);
        // Most keys have no path subscriber: then there is nothing to diff.
        let has_paths = subscribers
            .range((change.key.clone(), Some(String::new()))..)
            .next()
            .is_some_and(|((key, _), _)| *key == change.key);
        if !has_paths {
            return subscribers
                .get(&whole)
                .filter(touched)
                .map(callback)
                .collect();
        }
        match Path::changed_heads(&change.old, &change.new) {
            // The top level changed shape: any path may be affected.
            None => Self::watching(subscribers, &change.key)
                .filter(touched)
                .map(callback)
                .collect(),
            Some(heads) => {
                let mut targets: Vec<OnChange> = subscribers
                    .get(&whole)
                    .filter(touched)
                    .map(callback)
                    .collect();
                for head in heads {
                    targets.extend(
                        subscribers
                            .get(&(change.key.clone(), Some(head)))
                            .filter(touched)
                            .map(callback),
                    );
                }
                targets
            }
        }
    }

    /// Listens to events on `topic` (an event name qualified by scope).
    pub fn listen(
        &self,
        topic: FullKey,
        on_event: impl Fn(&Event) + 'static,
    ) -> Result<ListenerId> {
        let shared = self.shared()?;
        let id = shared
            .listeners
            .borrow_mut()
            .insert(topic, Rc::new(on_event));
        Ok(ListenerId(id))
    }

    /// Stops a listener; `false` if it was already gone.
    pub fn unlisten(&self, id: ListenerId) -> bool {
        self.shared()
            .is_ok_and(|s| s.listeners.borrow_mut().remove(id.0))
    }

    /// Live event listeners in all.
    pub fn listener_count(&self) -> usize {
        self.shared().map_or(0, |s| s.listeners.borrow().len())
    }

    /// Delivers `event` to this tab's listeners of its topic, and to other
    /// tabs too when `cross_tab`.
    pub fn emit(&self, event: Event, cross_tab: bool) -> Result<()> {
        let shared = self.shared()?;
        if cross_tab {
            Self::send(&shared, &Message::Event(event.clone()));
        }
        Self::dispatch(&shared, &event);
        Ok(())
    }

    fn dispatch(shared: &Shared, event: &Event) {
        // Collected first: a listener may register or remove listeners.
        let targets: Vec<OnEvent> = shared
            .listeners
            .borrow()
            .get(&event.topic)
            .cloned()
            .collect();
        for listener in targets {
            listener(event);
        }
    }

    fn send(shared: &Shared, message: &Message) {
        let transports: Vec<Rc<dyn Transport>> = shared.transports.borrow().clone();
        for transport in transports {
            // A failure is the transport's to report (the browser's says so
            // in its status); the message still goes to the others, and
            // the tabs it missed catch up at their next sync.
            let _ = transport.send(message);
        }
    }

    /// Broadcasts, logs, then notifies the subscribers each change touches.
    fn publish(
        &self,
        shared: &Shared,
        changes: &[Change],
        message: Option<&Message>,
        origin: Origin,
    ) {
        if let Some(message) = message {
            Self::send(shared, message);
        }
        // A local write of a stored key (it goes out as a message) or a
        // changed value makes a save due: the one place that schedules it.
        if message.is_some() || !changes.is_empty() {
            self.notify_dirty(shared);
        }
        {
            let mut log = shared.log.borrow_mut();
            for change in changes {
                if log.len() == LOG_CAPACITY {
                    log.pop_front();
                }
                log.push_back(LogEntry {
                    origin,
                    change: change.clone(),
                });
            }
        }
        Self::deliver(shared, changes);
        // A local write moves the key's stamp and writer even when the
        // value stays the same: the inspector must see it.
        if origin == Origin::Local || message.is_some() || !changes.is_empty() {
            Self::bump(shared);
        }
    }

    /// Notifies the subscribers each change touches, every subscriber
    /// seeing changes in the order they were made: a change published by a
    /// subscriber while another is being delivered is queued and delivered
    /// after it, so nobody's last notification is an older value.
    fn deliver(shared: &Shared, changes: &[Change]) {
        if shared.delivering.get() {
            shared.pending.borrow_mut().extend(changes.iter().cloned());
            return;
        }
        shared.delivering.set(true);
        let notify = |change: &Change| {
            // Collected first and called with nothing borrowed, so a
            // subscriber may read, write or (un)subscribe.
            let targets = Self::targets(&shared.subscribers.borrow(), change);
            for target in targets {
                target(change);
            }
        };
        changes.iter().for_each(notify);
        loop {
            let next = shared.pending.borrow_mut().pop_front();
            let Some(change) = next else { break };
            notify(&change);
        }
        shared.delivering.set(false);
    }
}
