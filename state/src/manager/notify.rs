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
            shared.pending.borrow_mut().extend(changes.iter().cloned());
            return;
        }
        let mut delivery = Delivery::start(shared);
        // Changes still queued (a subscriber's panic cut the delivery
        // that queued them short) were made before these.
        delivery.drain_queue();
        changes.iter().for_each(|change| delivery.notify(change));
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
    /// Changes delivered from the queue (published by subscribers) so far.
    cascade: usize,
}

/// Most changes that subscribers may publish, one after another, while
/// one delivery of changes to subscribers runs. Past it, subscribers are
/// writing on every change they hear (a loop that would hang the page):
/// the rest are not delivered (the writes themselves stand), and the
/// manager says so on the console and in
/// [`dropped`](StateManager::dropped). A batch's changes are published at
/// once, not one after another, and never count.
pub const MAX_CASCADE: usize = 10_000;

impl<'s> Delivery<'s> {
    fn start(shared: &'s Shared) -> Self {
        shared.delivering.set(true);
        // The manager's list is taken only by a change routed by path
        // (most changes reach their callbacks without one).
        Self {
            shared,
            targets: Vec::new(),
            cascade: 0,
        }
    }

    /// Delivers the changes queued meanwhile, in order: at most
    /// [`MAX_CASCADE`] of them. Past that, subscribers write on every
    /// change they are told of (a loop, which would hang the page): the
    /// rest are not delivered (the writes themselves stand), and the
    /// manager says so among its dropped messages and on the console.
    fn drain_queue(&mut self) {
        while self.shared.queued.get() {
            if self.cascade == MAX_CASCADE {
                let key = self
                    .shared
                    .pending
                    .borrow()
                    .front()
                    .map(|c| c.key.to_string());
                self.shared.pending.borrow_mut().clear();
                self.shared.queued.set(false);
                let text = format!(
                    "Subscribers kept writing while being told of changes (the last to {}): \
                     after {MAX_CASCADE} changes in one delivery, the rest were not delivered. \
                     A subscriber that writes on every change loops.",
                    key.unwrap_or_default()
                );
                leptos::logging::error!("{text}");
                StateManager::record_refusal(self.shared, text);
                return;
            }
            let next = self.shared.pending.borrow_mut().pop_front();
            match next {
                Some(change) => {
                    self.cascade += 1;
                    self.notify(&change);
                }
                None => self.shared.queued.set(false),
            }
        }
    }

    fn notify(&mut self, change: &Change) {
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
    }
}
