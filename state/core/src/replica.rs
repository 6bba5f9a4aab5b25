//! The replica: one tab's copy of every declared key.
//!
//! It is synchronous and single-owner (`&mut self` for writes), so the
//! reactive layer can keep it in an `Rc<RefCell<_>>` or a local stored value
//! and drive it from event handlers. Every mutating call reports what
//! changed ([`Change`]: full key, old and new value) so the layer can notify
//! only the affected subscribers, and path subscribers can ask
//! [`Path::changed`](crate::Path::changed) cheaply.
//!
//! What the replica does not do: talk to the browser, hold signals, or send
//! messages by itself. Writes return the [`Message`] to broadcast; incoming
//! text goes through [`Replica::receive_text`]; persistence is an explicit
//! [`Replica::persist`] the layer calls (coalesced, at most once per frame).
//!
//! One concern per file:
//!
//! | file | what |
//! |---|---|
//! | `declare.rs` | declarations, access checks, the apartment a replica serves |
//! | `read.rs` | reads |
//! | `intent.rs` | what a local write asks for, checked; the payload its strategy makes of it |
//! | `write.rs` | local writes applied at once: payload → op → state |
//! | `at_path.rs` | writes at a path inside a value, in place where they can be |
//! | `batch.rs` | atomic batches of local writes |
//! | `revert.rs` | rolling back an optimistic write |
//! | `admit.rs` | checking what comes from outside, item by item |
//! | `inbound.rs` | applying ops, states and messages from other tabs |
//! | `held.rs` | writes kept for later: undeclared keys, clocks ahead |
//! | `sync.rs` | anti-entropy: digests, answers, push-back |
//! | `snapshot.rs` | snapshot and restore |
//! | `load.rs` | loading from storage |
//! | `persist.rs` | saving to storage |
//! | `quarantine.rs` | stored entries set aside as unusable |

mod admit;
mod at_path;
mod batch;
mod declare;
mod held;
mod inbound;
mod intent;
mod load;
mod persist;
mod quarantine;
mod read;
mod revert;
mod snapshot;
mod sync;
mod write;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use batch::Batch;
pub use declare::Declared;
pub use load::LoadReport;
pub use persist::PersistReport;
pub use quarantine::Quarantine;
pub use sync::SYNC_ANSWER_INTERVAL_MS;

use crate::clock::{Clock, Hlc};
use crate::error::Error;
use crate::id::{ApartmentId, KeyName, TabId};
use crate::key::KeySpec;
use crate::message::{Event, Message};
use crate::op::{Op, OpGroup};
use crate::path::Path;
use crate::scope::{FullKey, Lifetime, Scope};
use crate::strategy::KeyState;
use crate::vec_map::{VecMap, VecSet};

pub(crate) use intent::{Intent, payload_for};

/// A key's value changed, or (for a user-resolve key) its set of conflicting
/// values did; in that case `old` may equal `new`.
///
/// The new value is shared with the key's state, so a change copies no
/// value however large. So is the old one, except after writes at paths
/// ([`Replica::set_path`], [`Replica::set_paths`], [`Replica::set_items`]),
/// which change the value in place: then the change keeps only what was
/// at the places written, and [`old`](Self::old) builds the whole old
/// value when someone asks for it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The key.
    pub key: FullKey,
    /// The value after.
    pub new: Arc<Value>,
    before: Prior,
}

/// What a [`Change`] keeps of the value before it.
#[derive(Debug, Clone)]
enum Prior {
    /// The whole value before (the default if the key was never written).
    Whole(Arc<Value>),
    /// Only some places changed: what was at each. The places lie apart
    /// (none holds another) and are sorted by [`Path::place_order`], so
    /// the places near a watched path are found by a binary search.
    At(Vec<Place>),
}

/// A place written in place, and what it held before (`None`: nothing).
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) path: Path,
    pub(crate) old: Option<Value>,
}

impl Place {
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.path.place_order(&b.path)
    }

    /// Whether the place holds something else in `new` than it did.
    fn changed(&self, new: &Value) -> bool {
        self.old.as_ref() != self.path.get(new)
    }
}

impl Change {
    /// A change from `old` to `new` (for tests and tools; the replica
    /// makes the changes it reports).
    pub fn new(key: FullKey, old: Arc<Value>, new: Arc<Value>) -> Self {
        Self {
            key,
            new,
            before: Prior::Whole(old),
        }
    }

    /// A change that put `new`'s sub-values at `places`, none of them the
    /// root and none inside another, where each place's `old` was.
    pub(crate) fn at(key: FullKey, places: Vec<Place>, new: Arc<Value>) -> Self {
        // Items written in the order of their indices (`set_items`) are
        // already in this order, which then costs one pass to confirm.
        let places = crate::vec_map::sorted_by(places, Place::order);
        Self {
            key,
            new,
            before: Prior::At(places),
        }
    }

    /// The value before (the default if the key was never written).
    /// Shared, except after writes at paths: then it is the new value
    /// with the old sub-values put back (a copy of the whole value).
    pub fn old(&self) -> Arc<Value> {
        match &self.before {
            Prior::Whole(old) => Arc::clone(old),
            Prior::At(places) => {
                let mut whole = Value::clone(&self.new);
                for place in places {
                    // Each path led to its place when the change was made,
                    // `new` is that same value after it, and no place lies
                    // inside another.
                    let _ = place.path.put(&mut whole, place.old.clone());
                }
                Arc::new(whole)
            }
        }
    }

    /// Whether the change is visible at `path` (for selective
    /// subscriptions). After writes at paths only the sub-values at the
    /// written places inside `path`, or at the one place holding it, are
    /// compared, each found by a binary search: whatever the size of the
    /// value and however many places were written.
    pub fn touches(&self, path: &Path) -> bool {
        match &self.before {
            Prior::Whole(old) => path.changed(old, &self.new),
            Prior::At(places) => Self::touches_at(places, &self.new, path),
        }
    }

    /// [`touches`](Self::touches) after writes at `places` (sorted, lying
    /// apart), or at any run of them that holds every place inside `path`
    /// and the one holding it.
    fn touches_at(places: &[Place], new: &Value, path: &Path) -> bool {
        // A subscriber watching the very place written (a row of a list
        // written by `set_items`): that place alone decides, with no
        // search.
        if let [place] = places
            && place.path == *path
        {
            return place.changed(new);
        }
        // Places inside `path` (or `path` itself) sort from here on,
        // together; a place holding `path` just before.
        let from = places.partition_point(|place| place.path.place_order(path).is_lt());
        let mut inside = places
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|place| place.path.starts_with(path))
            .peekable();
        if inside.peek().is_some() {
            // Places lie apart: none of them can also hold `path`.
            return inside.any(|place| place.changed(new));
        }
        match from.checked_sub(1).and_then(|before| places.get(before)) {
            // The watched place is inside this written one, so inside no
            // other: this one decides.
            Some(place) if path.starts_with(&place.path) => {
                let skip = place.path.len();
                place.old.as_ref().and_then(|old| path.get_after(skip, old)) != path.get(new)
            }
            _ => false,
        }
    }

    /// The first segments under which the value may have changed: as
    /// [`Path::changed_heads`] finds them between the old and the new
    /// value, or, after writes at paths, the first segments of the places
    /// written (borrowed, found without a diff of the value; a place
    /// written with what it held is among them, and
    /// [`touches`](Self::touches) tells it apart). A path whose first
    /// segment is not among them has not changed; `None`: any path may
    /// have.
    pub fn changed_heads(&self) -> Option<Vec<Cow<'_, str>>> {
        self.heads()
            .map(|heads| heads.into_iter().map(|head| head.name).collect())
    }

    /// [`changed_heads`](Self::changed_heads), each with what tells the
    /// paths under it that changed: how a change finds its path
    /// subscribers. After writes at many places, [`Head::touches`] looks
    /// only at the places under its segment, where
    /// [`touches`](Self::touches) searches them all.
    pub fn heads(&self) -> Option<Vec<Head<'_>>> {
        match &self.before {
            Prior::Whole(old) => Path::changed_heads(old, &self.new).map(|heads| {
                heads
                    .into_iter()
                    .map(|name| Head {
                        name: Cow::Owned(name),
                        change: self,
                        places: &[],
                    })
                    .collect()
            }),
            Prior::At(places) => {
                let mut heads: Vec<Head<'_>> = Vec::with_capacity(places.len());
                // Places are sorted by first segment first: those under one
                // segment come together.
                let mut rest = places.as_slice();
                while let Some(first) = rest.first() {
                    let name = first.path.first().unwrap_or_default();
                    // The first place, and those after it under its segment.
                    let run = 1 + rest
                        .iter()
                        .skip(1)
                        .take_while(|place| place.path.same_first(&first.path))
                        .count();
                    let (under, after) = rest.split_at(run);
                    heads.push(Head {
                        name: Cow::Borrowed(name),
                        change: self,
                        places: under,
                    });
                    rest = after;
                }
                Some(heads)
            }
        }
    }
}

/// One first segment under which a [`Change`] may have changed the value
/// (see [`Change::heads`]).
#[derive(Debug, Clone)]
pub struct Head<'c> {
    /// The first segment.
    pub name: Cow<'c, str>,
    change: &'c Change,
    /// After writes at paths: the places written under `name`.
    places: &'c [Place],
}

impl Head<'_> {
    /// [`Change::touches`] for a path whose first segment is this head's
    /// name (for any other path, whether the change touches it is not
    /// this head's to say: false).
    pub fn touches(&self, path: &Path) -> bool {
        let under = match self.places.first() {
            // Compared as segments: an index is not read as text.
            Some(place) => place.path.same_first(path),
            None => path.first() == Some(self.name.as_ref()),
        };
        if !under {
            return false;
        }
        match &self.change.before {
            Prior::Whole(_) => self.change.touches(path),
            Prior::At(_) => Change::touches_at(self.places, &self.change.new, path),
        }
    }
}

impl PartialEq for Change {
    /// Changes are equal when they change the same key from the same value
    /// to the same value, however each keeps its old value.
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.new == other.new && self.old() == other.old()
    }
}

/// The result of a local write.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The op (also applied locally).
    pub op: Op,
    /// The change it made, if the value changed.
    pub change: Option<Change>,
    /// What to broadcast to other tabs; `None` for memory-only keys.
    pub message: Option<Message>,
}

/// The result of a batch (or a restore).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchWrite {
    /// Every op of the batch, in order.
    pub group: OpGroup,
    /// One change per key whose value changed.
    pub changes: Vec<Change>,
    /// What to broadcast (the ops of keys that sync); `None` if nothing.
    pub message: Option<Message>,
    /// Keys a restore could not write yet because nothing here declared
    /// them: their values are kept and written when the key is declared.
    pub held: Vec<FullKey>,
}

/// What handling an incoming message produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inbound {
    /// Values that changed.
    pub changes: Vec<Change>,
    /// Messages to send back (state for a tab that asked, or what it
    /// turned out to lack).
    pub replies: Vec<Message>,
    /// Events to dispatch to listeners whose address the event
    /// [`reaches`](Event::reaches).
    pub events: Vec<Event>,
    /// What was refused, with why. A refused item changes nothing; the
    /// rest of the message still applies.
    pub errors: Vec<Error>,
    /// Items kept for later rather than applied now: for keys this replica
    /// has not declared, or stamped further ahead than the allowed clock
    /// skew (applied when the clock gets there). Not errors.
    pub held: usize,
    /// The message was for another apartment (managers of all apartments
    /// share one channel, for global keys): nothing in it concerned this
    /// store, and its refusals are not worth counting.
    pub foreign: bool,
}

/// One tab's replica.
pub struct Replica {
    tab: TabId,
    apartment: Option<ApartmentId>,
    clock: Box<dyn Clock>,
    hlc: Hlc,
    seq: u64,
    specs: VecMap<Scope, VecMap<KeyName, std::sync::Arc<KeySpec>>>,
    states: BTreeMap<FullKey, KeyState>,
    /// Full keys per declaration, against its bounds.
    counts: declare::KeyCounts,
    /// An upper bound of each state's serialized size (exact when last
    /// measured), so the size limit costs a measurement only near it.
    ///
    /// This and the two below are sorted vectors, where `states` is a
    /// B-tree (its type is public, and the relay ranges over it): each is
    /// looked up on every write, and grows only when a key is first
    /// written or loaded, moving the entries after it. They hold declared
    /// keys only, at most [`MAX_KEYS_PER_DECLARATION`](crate::MAX_KEYS_PER_DECLARATION) an apartment and
    /// the app's global keys, so even a load in storage's own order moves
    /// little. A B-tree of each cost 4 to 6 KB of wasm before `wasm-opt`;
    /// the state manager is 5.7 KiB brotli smaller without them (with
    /// `MemoryStorage`'s and the page's re-read set).
    sizes: VecMap<FullKey, usize>,
    /// Keys changed since they were last persisted.
    dirty: VecSet<FullKey>,
    quarantined: VecMap<FullKey, Quarantine>,
    held: held::Held,
    /// When each tab last got a sync answer from us (throttle).
    answered: VecMap<TabId, u64>,
    /// Changes made outside a call that reports them (items shed or
    /// re-admitted by the clock window), for [`Replica::poll`].
    unreported: Vec<Change>,
    /// While `Some`, local writes to persistent keys are refused: see
    /// [`set_backlog`](Self::set_backlog).
    backlog: Option<usize>,
    /// The key the last write or read opened (see
    /// [`open_spec`](Self::open_spec)).
    opened: std::cell::RefCell<Option<declare::Opened>>,
    /// This tab's increments reverted lately, newest last (at most
    /// [`revert::REVERTED_KEPT`]): a counter keeps no trace of one, and
    /// each further revert of it would subtract it again.
    reverted: std::collections::VecDeque<crate::OpId>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("tab", &self.tab)
            .field("apartment", &self.apartment)
            .field("seq", &self.seq)
            .field("keys", &self.states.len())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// An empty replica for `tab`, reading time from `clock`, serving any
    /// apartment until [`bind`](Self::bind) ties it to one.
    pub fn new(tab: TabId, clock: impl Clock + 'static) -> Self {
        Self {
            tab,
            apartment: None,
            clock: Box::new(clock),
            hlc: Hlc::new(tab),
            seq: 0,
            specs: VecMap::new(),
            states: BTreeMap::new(),
            counts: declare::KeyCounts::default(),
            sizes: VecMap::new(),
            dirty: VecSet::new(),
            quarantined: VecMap::new(),
            held: held::Held::default(),
            answered: VecMap::new(),
            unreported: Vec::new(),
            backlog: None,
            opened: std::cell::RefCell::new(None),
            reverted: std::collections::VecDeque::new(),
        }
    }

    /// A replica of one apartment's state (see [`bind`](Self::bind)).
    pub fn for_apartment(tab: TabId, apartment: ApartmentId, clock: impl Clock + 'static) -> Self {
        let mut store = Self::new(tab, clock);
        store.apartment = Some(apartment);
        store
    }

    /// Back-pressure from a transport that carries persistent keys on to
    /// other devices (a relay's outbox): while `waiting` is `Some(n)`, a
    /// local write to a persistent key fails with [`Error::Backlog`] and
    /// changes nothing, because the write could not be queued and would
    /// never reach them. Memory and session keys stay on this device and
    /// are written as usual; ops from other tabs are applied as usual.
    /// `None` lifts it.
    pub fn set_backlog(&mut self, waiting: Option<usize>) {
        self.backlog = waiting;
    }

    /// Refuses a local write to `spec`'s key while a backlog is set.
    pub(super) fn check_backlog(&self, spec: &KeySpec) -> crate::error::Result<()> {
        match self.backlog {
            Some(waiting) if spec.lifetime() == Lifetime::Persistent => {
                Err(Error::Backlog { waiting })
            }
            _ => Ok(()),
        }
    }

    /// This replica's tab id.
    pub fn tab(&self) -> TabId {
        self.tab
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Every key's replicated state (what the simulator compares).
    pub fn states(&self) -> &BTreeMap<FullKey, KeyState> {
        &self.states
    }

    /// The replicated state of a key, if it has one.
    pub fn state(&self, key: &FullKey) -> Option<&KeyState> {
        self.states.get(key)
    }

    fn touch(&mut self, spec: &KeySpec, key: &FullKey) {
        if spec.lifetime() != crate::scope::Lifetime::Memory {
            self.dirty.insert(key.clone());
        }
    }

    /// What `key` reads now (see [`current_of`](Self::current_of)).
    fn current(&self, spec: &KeySpec, key: &FullKey) -> Arc<Value> {
        Self::current_of(spec, self.states.get(key))
    }

    /// What a key whose state is `state` reads now, shared with the state
    /// where it holds the value whole (no copy of a large value per write).
    fn current_of(spec: &KeySpec, state: Option<&KeyState>) -> Arc<Value> {
        state
            .and_then(KeyState::shared_value)
            .unwrap_or_else(|| Arc::new(spec.default_value().clone()))
    }

    /// The ids of the open conflict of a user-resolve key whose state is
    /// `state` (empty for other strategies and when there is no conflict).
    /// A change of these is a visible change even when the winning value
    /// stays the same: a resolution that keeps the current value must
    /// still close every tab's conflict dialog.
    fn conflict_ids_of(state: Option<&KeyState>) -> Vec<crate::op::OpId> {
        match state {
            // The only strategy with conflicts: no other state is asked
            // for a list (every write compares them twice).
            #[cfg(feature = "user-resolve")]
            Some(KeyState::UserResolve(state)) => state.conflict_ids(),
            _ => Vec::new(),
        }
    }

    /// What a key reads now, to compare after a change ([`Replica::changed`]).
    fn before(&self, spec: &KeySpec, key: &FullKey) -> Before {
        Self::before_of(spec, self.states.get(key))
    }

    /// [`before`](Self::before) of the state `state`, already looked up.
    fn before_of(spec: &KeySpec, state: Option<&KeyState>) -> Before {
        Before {
            value: Self::current_of(spec, state),
            conflicts: Self::conflict_ids_of(state),
        }
    }

    /// The change from `before` to now, if anyone could see one.
    fn changed(&self, spec: &KeySpec, key: &FullKey, before: Before) -> Option<Change> {
        Self::change_of(spec, key, before, self.states.get(key))
    }

    /// [`changed`](Self::changed) of a key whose state is now `state`,
    /// already looked up.
    fn change_of(
        spec: &KeySpec,
        key: &FullKey,
        before: Before,
        state: Option<&KeyState>,
    ) -> Option<Change> {
        let new = Self::current_of(spec, state);
        let visible = before.value != new || before.conflicts != Self::conflict_ids_of(state);
        visible.then(|| Change::new(key.clone(), before.value, new))
    }
}

/// A key's value and open conflict before a change.
struct Before {
    value: Arc<Value>,
    conflicts: Vec<crate::op::OpId>,
}
