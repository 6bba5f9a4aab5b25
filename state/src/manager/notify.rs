//! Publishing a change: broadcast it, schedule a save, log it, and
//! deliver it to the subscribers it touched, in the order changes were
//! made.

use gaesup_state_core::{Change, Message};

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
            shared.pending.borrow_mut().extend(changes.iter().cloned());
            return;
        }
        shared.delivering.set(true);
        // Only one delivery runs at a time (others wait in `pending`), so
        // one list of targets serves it; taken out so none is borrowed
        // while a subscriber runs.
        let mut targets = shared.targets.take();
        let mut notify = |change: &Change| {
            Self::targets(&shared.subscribers.borrow(), change, &mut targets);
            for target in targets.drain(..) {
                target(change);
            }
        };
        changes.iter().for_each(&mut notify);
        loop {
            let next = shared.pending.borrow_mut().pop_front();
            let Some(change) = next else { break };
            notify(&change);
        }
        *shared.targets.borrow_mut() = targets;
        shared.delivering.set(false);
    }
}
