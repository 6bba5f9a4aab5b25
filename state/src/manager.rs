//! The state manager: one per apartment, shared by its units.
//!
//! [`StateManager`] is a `Copy` handle to one tab's [`Replica`] of the
//! apartment's keys plus everything around it: the storages attached per
//! lifetime, the transports to other tabs, the subscribers and event
//! listeners to notify, and what an inspector reads. One concern per file:
//!
//! | file | what |
//! |---|---|
//! | `persistence.rs` | declaring (and loading) keys; attaching storages, loading, saving, quarantine |
//! | `storages.rs` | the storages attached, one per lifetime |
//! | `read.rs` | reads |
//! | `write.rs` | local writes, batches, reverts |
//! | `sync.rs` | other tabs: transports out, text in, refusals counted |
//! | `subscribe.rs` | who watches which key (or path inside it) |
//! | `notify.rs` | publishing a change: broadcast, log, deliver in order |
//! | `events.rs` | the event bus |
//! | `snapshot.rs` | snapshot and restore of a scope |
//! | `inspect.rs` | what devtools read: keys, the operation log, a revision |
//! | `registry.rs` | event listeners, by what they watch |

mod confirm;
mod events;
mod inspect;
mod notify;
mod persistence;
mod read;
mod registry;
mod snapshot;
mod storages;
mod subscribe;
mod sync;
mod write;

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use gaesup_state_core::{
    ApartmentId, Change, Clock, Event, FullKey, KeySpec, Quarantine, Replica, TabId, Transport,
};
use leptos::prelude::*;

use crate::error::{Result, StateError};
use crate::platform::{SystemClock, random_tab_id};

pub use confirm::{Confirmation, RelayAck};
pub use events::{ListenerId, MAX_QUEUED_EVENT_BYTES};
pub use inspect::{KeyInfo, LOG_CAPACITY, LogEntry, Origin};
pub use notify::{MAX_CASCADE_CHANGES, MAX_CASCADE_DEPTH};
pub use subscribe::SubscriptionId;
pub use write::Written;

use events::OnEvent;
use registry::Registry;
use storages::Storages;
use subscribe::Subscribers;

/// What runs when a flush becomes due (see [`StateManager::on_dirty`]).
type Schedulers = Rc<[Rc<dyn Fn()>]>;
/// What runs as a set-aside entry is discarded (see
/// [`StateManager::on_discard`]).
type OnDiscard = Rc<dyn Fn(&FullKey)>;
/// What runs as a key is declared for the first time (see
/// [`StateManager::on_declare`]).
type OnDeclare = Rc<dyn Fn(&KeySpec)>;

/// Everything one manager holds, behind its handle.
struct Shared {
    replica: RefCell<Replica>,
    storages: RefCell<Storages>,
    /// Shared, so a write that schedules them takes a reference rather
    /// than a copy of the list (a schedule may register another).
    on_dirty: RefCell<Schedulers>,
    subscribers: RefCell<Subscribers>,
    listeners: RefCell<Registry<FullKey, OnEvent>>,
    transports: RefCell<Vec<Rc<dyn Transport>>>,
    log: RefCell<VecDeque<LogEntry>>,
    /// Whether an inspector asked for the log or the revision: until one
    /// does, neither is kept (see [`StateManager::log`]).
    inspected: Cell<bool>,
    dropped: RefCell<Vec<String>>,
    quarantine: ArcRwSignal<Vec<Quarantine>>,
    /// What runs as a set-aside entry is discarded (see
    /// [`StateManager::on_discard`]).
    on_discard: RefCell<Rc<[OnDiscard]>>,
    /// What runs as a key is declared for the first time (see
    /// [`StateManager::on_declare`]).
    on_declare: RefCell<Rc<[OnDeclare]>>,
    revision: ArcRwSignal<u64>,
    /// Set while changes are being delivered to subscribers; a change
    /// published meanwhile (a subscriber wrote) waits in `pending`.
    delivering: Cell<bool>,
    /// Each queued change with its depth: how many subscribers' writes
    /// led to it from the change that started the delivery (see
    /// [`MAX_CASCADE_DEPTH`](notify::MAX_CASCADE_DEPTH)).
    pending: RefCell<VecDeque<(Change, u32)>>,
    /// The depth of the change being delivered now.
    depth: Cell<u32>,
    /// Whether `pending` may hold changes: set when one is queued, so a
    /// delivery with nothing queued does not borrow the queue.
    queued: Cell<bool>,
    /// Set while events are being dispatched to listeners; an event a
    /// listener emits meanwhile waits in `events`, with its depth (see
    /// [`MAX_CASCADE_DEPTH`](notify::MAX_CASCADE_DEPTH)).
    dispatching: Cell<bool>,
    /// Each waiting event with its depth and its data's length (JSON).
    events: RefCell<VecDeque<(Event, u32, usize)>>,
    /// The depth of the event being dispatched now.
    event_depth: Cell<u32>,
    /// What the events in `events` hold in all (see
    /// [`MAX_QUEUED_EVENT_BYTES`](events::MAX_QUEUED_EVENT_BYTES)).
    event_bytes: Cell<usize>,
    /// Events delivered from the queue in this dispatch.
    events_delivered: Cell<usize>,
    /// Whether this dispatch has said it cut events off.
    events_cut: Cell<bool>,
    /// The callbacks a change reaches, gathered here before they are
    /// called (so none is called with the registry borrowed); kept between
    /// deliveries so a write does not allocate a list for them.
    targets: RefCell<Vec<subscribe::OnChange>>,
    confirmations: RefCell<confirm::Confirmations>,
    /// Set as the owner goes (see [`StateManager::new`]): from then on
    /// every call says [`StateError::Disposed`], also one made while a
    /// write still holds this on the stack, before the arena drops it.
    disposed: Cell<bool>,
}

/// Where a manager's [`Shared`] lives: a slot of Leptos's reactive arena,
/// owned by the reactive owner that created the manager and freed with it.
/// (Leptos names the arena's storage for non-`Send` values `LocalStorage`;
/// it has nothing to do with the browser's `localStorage`.)
type Arena = StoredValue<Rc<Shared>, LocalStorage>;

thread_local! {
    /// The manager looked up last, and what it holds. Every call looks its
    /// manager up, and the reactive arena's lookup (a global map, a type
    /// check, a lock guard) cost a tenth of a small write; apps mostly
    /// have one manager. Weak, so a manager's state still goes with its
    /// owner; its `disposed` flag covers the time in between (see
    /// [`StateManager::new`]).
    ///
    /// Sound while arena ids are unique on a thread, as in client-side
    /// rendering; reactive_graph's `sandboxed-arenas` (one arena per
    /// server request) would break that, and this crate does not render
    /// on a server.
    static LAST: RefCell<Option<(Arena, Weak<Shared>)>> = const { RefCell::new(None) };
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
///
/// Two handles are equal when they are handles of the same manager.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StateManager {
    arena: Arena,
}

impl std::fmt::Debug for StateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateManager")
            .field("tab", &self.tab().ok())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The replica, or [`StateError::Busy`] when a call of this manager is
    /// using it (a user's closure, migration or serde impl called back in):
    /// an error the caller sees, where a second borrow would panic and, in
    /// a release build, abort the whole page.
    fn replica(&self) -> Result<Ref<'_, Replica>> {
        self.replica.try_borrow().map_err(|_| StateError::Busy)
    }

    /// The replica to change, or [`StateError::Busy`] (see
    /// [`replica`](Self::replica)).
    fn replica_mut(&self) -> Result<RefMut<'_, Replica>> {
        self.replica.try_borrow_mut().map_err(|_| StateError::Busy)
    }
}

impl StateManager {
    /// A manager for tab `tab` reading time from `clock`, owned by the
    /// current reactive owner.
    pub fn new(tab: TabId, clock: impl Clock + 'static) -> Self {
        let shared = Shared {
            replica: RefCell::new(Replica::new(tab, clock)),
            storages: RefCell::default(),
            on_dirty: RefCell::new(Rc::new([])),
            subscribers: RefCell::default(),
            listeners: RefCell::default(),
            transports: RefCell::default(),
            log: RefCell::default(),
            inspected: Cell::new(false),
            dropped: RefCell::default(),
            quarantine: ArcRwSignal::new(Vec::new()),
            on_discard: RefCell::new(Rc::new([])),
            on_declare: RefCell::new(Rc::new([])),
            revision: ArcRwSignal::new(0),
            delivering: Cell::new(false),
            pending: RefCell::default(),
            depth: Cell::new(0),
            queued: Cell::new(false),
            dispatching: Cell::new(false),
            events: RefCell::default(),
            event_depth: Cell::new(0),
            event_bytes: Cell::new(0),
            events_delivered: Cell::new(0),
            events_cut: Cell::new(false),
            targets: RefCell::default(),
            confirmations: RefCell::default(),
            disposed: Cell::new(false),
        };
        let arena = StoredValue::new_local(Rc::new(shared));
        // Marked disposed as the owner goes, before the arena drops the
        // state: later cleanups of the same owner may still reach it, and
        // a write may hold it on the stack (so LAST may still upgrade).
        on_cleanup(move || {
            let _ = arena.try_with_value(|shared| shared.disposed.set(true));
        });
        Self { arena }
    }

    /// A manager with a random tab id and the platform's clock.
    pub fn with_system_clock() -> Self {
        Self::new(random_tab_id(), SystemClock)
    }

    /// What the handle holds, unless its owner was disposed.
    fn shared(&self) -> Result<Rc<Shared>> {
        let cached = LAST.with_borrow(|last| match last {
            Some((arena, shared)) if *arena == self.arena => shared.upgrade(),
            _ => None,
        });
        if let Some(shared) = cached {
            return Self::live(shared);
        }
        let shared = self.arena.try_get_value().ok_or(StateError::Disposed)?;
        LAST.with_borrow_mut(|last| *last = Some((self.arena, Rc::downgrade(&shared))));
        Self::live(shared)
    }

    fn live(shared: Rc<Shared>) -> Result<Rc<Shared>> {
        if shared.disposed.get() {
            return Err(StateError::Disposed);
        }
        Ok(shared)
    }

    /// This tab's id.
    pub fn tab(&self) -> Result<TabId> {
        Ok(self.shared()?.replica()?.tab())
    }

    /// Reads the replica (for inspection: keys, states, quarantine).
    pub fn with_replica<R>(&self, read: impl FnOnce(&Replica) -> R) -> Result<R> {
        Ok(read(&*self.shared()?.replica()?))
    }

    /// Refuses local writes to persistent keys with
    /// [`Error::Backlog`](gaesup_state_core::Error::Backlog) while
    /// `waiting` is `Some` (a relay's outbox is full; see
    /// [`Replica::set_backlog`]); `None` lifts it.
    pub fn set_backlog(&self, waiting: Option<usize>) -> Result<()> {
        self.shared()?.replica_mut()?.set_backlog(waiting);
        Ok(())
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
}
