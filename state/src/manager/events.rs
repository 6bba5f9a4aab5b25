//! The event bus: typed events scoped like state, optionally to other
//! tabs.

use std::rc::Rc;

use gaesup_state_core::{Event, FullKey, Message};

use super::notify::{MAX_CASCADE_CHANGES, MAX_CASCADE_DEPTH};
use super::{Shared, StateManager};
use crate::error::Result;

/// Identifies one event listener, to remove it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

pub(super) type OnEvent = Rc<dyn Fn(&Event)>;

impl StateManager {
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
    /// tabs too when `cross_tab`. Called from a listener, the event is
    /// delivered once that listener returns, after the events emitted
    /// before it; listeners that emit on every event they hear are cut
    /// off past [`MAX_CASCADE_DEPTH`] emits deep (see
    /// [`dropped`](Self::dropped)).
    pub fn emit(&self, event: Event, cross_tab: bool) -> Result<()> {
        let shared = self.shared()?;
        if cross_tab {
            Self::send(&shared, &Message::Event(event.clone()));
        }
        Self::dispatch(&shared, &event);
        Ok(())
    }

    /// Delivers `event` to this tab's listeners of its topic. An event a
    /// listener emits meanwhile waits until that listener returns and is
    /// delivered after the events before it, within the same dispatch
    /// (never by a call nested inside the listener, whose depth nothing
    /// bounded: two listeners answering each other overflowed the stack).
    /// Past [`MAX_CASCADE_DEPTH`] emits deep, or [`MAX_CASCADE_CHANGES`]
    /// emitted by listeners, events are not delivered (those emitted to
    /// other tabs were sent): listeners are answering their own events,
    /// a loop that would hang the page. Said once per dispatch, on the
    /// console and in [`dropped`](StateManager::dropped).
    pub(super) fn dispatch(shared: &Shared, event: &Event) {
        if shared.dispatching.get() {
            let depth = shared.event_depth.get().saturating_add(1);
            shared.events.borrow_mut().push_back((event.clone(), depth));
            return;
        }
        let mut dispatch = Dispatch::start(shared);
        // Events still queued (a listener's panic cut the dispatch that
        // queued them short) were emitted before this one.
        dispatch.drain();
        dispatch.deliver(event, 0);
        dispatch.drain();
    }
}

/// The dispatch running (only one at a time: events emitted meanwhile
/// wait in the manager's queue). Dropped when it ends, or when a
/// listener's panic unwinds through it.
struct Dispatch<'s> {
    shared: &'s Shared,
    /// Events delivered from the queue (emitted by listeners) so far.
    delivered: usize,
    /// An event past the bounds was left undelivered (said once).
    cut: bool,
}

impl<'s> Dispatch<'s> {
    fn start(shared: &'s Shared) -> Self {
        shared.dispatching.set(true);
        Self {
            shared,
            delivered: 0,
            cut: false,
        }
    }

    fn deliver(&mut self, event: &Event, depth: u32) {
        self.shared.event_depth.set(depth);
        // Collected first: a listener may register or remove listeners.
        let targets: Vec<OnEvent> = self
            .shared
            .listeners
            .borrow()
            .get(&event.topic)
            .cloned()
            .collect();
        for listener in targets {
            listener(event);
        }
    }

    fn drain(&mut self) {
        loop {
            let next = self.shared.events.borrow_mut().pop_front();
            match next {
                None => return,
                Some((event, depth))
                    if depth > MAX_CASCADE_DEPTH || self.delivered >= MAX_CASCADE_CHANGES =>
                {
                    self.cut(&event);
                }
                Some((event, depth)) => {
                    self.delivered += 1;
                    self.deliver(&event, depth);
                }
            }
        }
    }

    /// Leaves `event` undelivered (past the bounds), said once.
    fn cut(&mut self, event: &Event) {
        if self.cut {
            return;
        }
        self.cut = true;
        let text = format!(
            "Listeners kept emitting while being told of events: from an event on {} on, \
             events emitted more than {MAX_CASCADE_DEPTH} emits deep, or past \
             {MAX_CASCADE_CHANGES} emitted by listeners, in one dispatch were not delivered \
             here (those for other tabs were sent). A listener that emits on every event it \
             hears loops.",
            event.topic
        );
        leptos::logging::error!("{text}");
        StateManager::record_refusal(self.shared, text);
    }
}

impl Drop for Dispatch<'_> {
    fn drop(&mut self) {
        self.shared.dispatching.set(false);
        self.shared.event_depth.set(0);
    }
}
