//! Publishing a change: broadcast it, schedule a save, log it, and
//! deliver it to the subscribers it touched, in the order changes were
//! made.

use gaesup_state_core::{Change, Message};

use super::subscribe::{OnChange, Route};
use super::{LOG_CAPACITY, LogEntry, Origin, Shared, StateManager};

impl StateManager {
    /// Broadcasts, logs, then notifies the subscribers each change touches.
    pub(super) fn publish(
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
        if shared.inspected.get() {
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
    pub(super) fn deliver(shared: &Shared, changes: &[Change]) {
        if shared.delivering.get() {
            shared.queued.set(true);
            // Made by a subscriber of the change being delivered: one
            // step deeper than it.
            let depth = shared.depth.get().saturating_add(1);
            shared
                .pending
                .borrow_mut()
                .extend(changes.iter().map(|change| (change.clone(), depth)));
            return;
        }
        let mut delivery = Delivery::start(shared);
        // Changes still queued (a subscriber's panic cut the delivery
        // that queued them short) were made before these.
        delivery.drain_queue();
        changes.iter().for_each(|change| delivery.notify(change, 0));
        delivery.drain_queue();
    }
}

/// The delivery running (only one at a time: others wait in `pending`).
/// Dropped when it ends, or when a subscriber's panic unwinds through it:
/// either way the next change is delivered again, with what was queued.
struct Delivery<'s> {
    shared: &'s Shared,
    /// The manager's list of targets, taken out (by the first change
    /// routed by path) so none is borrowed while a subscriber runs, and
    /// handed back at the end.
    targets: Vec<OnChange>,
    /// Changes delivered from the queue (made by subscribers) so far.
    delivered: usize,
    /// A change past the bounds was left undelivered (said once).
    cut: bool,
}

/// Most changes made by subscribers that one delivery delivers, however
/// shallow: two subscribers that each write on every change double the
/// changes at every step, and would reach [`MAX_CASCADE_DEPTH`] only
/// after 2^100 of them. Far above what answering each change of the
/// largest batch makes.
pub const MAX_CASCADE_CHANGES: usize = 100_000;

/// How deep subscribers' writes may lead within one delivery: a change
/// made by a subscriber of a change made by a subscriber … of the change
/// that started it, at most this many writes down, is delivered. Past
/// it, subscribers are answering their own writes, a loop that would
/// hang the page (and fill the outbox of a synced key): those changes
/// are not delivered (the writes themselves stand), and the manager says
/// so on the console and in [`dropped`](StateManager::dropped). Depth
/// first: a subscriber answering each change of a large batch, or of
/// another tab's message, is one step deep however many there are
/// ([`MAX_CASCADE_CHANGES`] bounds a loop that branches). A loop through
/// a microtask (`subscribeBatch`'s), a Leptos effect (they run later) or
/// two tabs starts a new delivery each round and is not caught here.
/// Events a listener emits are bounded the same way, with this and
/// [`MAX_CASCADE_CHANGES`] (see [`StateManager::emit`]).
pub const MAX_CASCADE_DEPTH: u32 = 100;

impl<'s> Delivery<'s> {
    fn start(shared: &'s Shared) -> Self {
        shared.delivering.set(true);
        // The manager's list is taken only by a change routed by path
        // (most changes reach their callbacks without one).
        Self {
            shared,
            targets: Vec::new(),
            delivered: 0,
            cut: false,
        }
    }

    /// Delivers the changes queued meanwhile, in order. A change deeper
    /// than [`MAX_CASCADE_DEPTH`], or past [`MAX_CASCADE_CHANGES`] of them,
    /// is not delivered (the write that made it stands): subscribers are
    /// answering their own writes (a loop that would hang the page). The
    /// manager says so once per delivery, on the console and in
    /// [`dropped`](StateManager::dropped), naming the key.
    fn drain_queue(&mut self) {
        while self.shared.queued.get() {
            let next = self.shared.pending.borrow_mut().pop_front();
            match next {
                Some((change, depth))
                    if depth > MAX_CASCADE_DEPTH || self.delivered >= MAX_CASCADE_CHANGES =>
                {
                    self.cut(&change);
                }
                Some((change, depth)) => {
                    self.delivered += 1;
                    self.notify(&change, depth);
                }
                None => self.shared.queued.set(false),
            }
        }
    }

    /// Leaves `change` undelivered (past the bounds), said once.
    fn cut(&mut self, change: &Change) {
        if self.cut {
            return;
        }
        self.cut = true;
        let text = format!(
            "Subscribers kept writing while being told of changes: from a change to {} on, \
             changes made more than {MAX_CASCADE_DEPTH} writes deep, or past \
             {MAX_CASCADE_CHANGES} made by subscribers, in one delivery were not delivered \
             (the writes stand). A subscriber that writes on every change it hears loops.",
            change.key
        );
        leptos::logging::error!("{text}");
        StateManager::record_refusal(self.shared, text);
    }

    fn notify(&mut self, change: &Change, depth: u32) {
        self.shared.depth.set(depth);
        let subscribers = self.shared.subscribers.borrow();
        // Taken out before any subscriber runs: one may subscribe or
        // unsubscribe, which changes the lists (not these).
        let watchers = match subscribers.route(&change.key) {
            Route::All(callbacks) => {
                drop(subscribers);
                callbacks.iter().for_each(|target| target(change));
                return;
            }
            Route::ByPath(watchers) => watchers,
        };
        if self.targets.capacity() == 0 {
            self.targets = self.shared.targets.take();
        }
        StateManager::targets(watchers, change, &mut self.targets);
        drop(subscribers);
        for target in self.targets.drain(..) {
            target(change);
        }
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        // Empty but for what a panic left undrained; the manager's list
        // (if a change routed by path took it out) is empty and
        // unallocated. A list never allocated has nothing to hand back.
        if self.targets.capacity() > 0 {
            self.targets.clear();
            std::mem::swap(&mut *self.shared.targets.borrow_mut(), &mut self.targets);
        }
        self.shared.delivering.set(false);
        self.shared.depth.set(0);
    }
}
