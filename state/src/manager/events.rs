//! The event bus: typed events scoped like state, optionally to other
//! tabs.

use std::rc::Rc;

use gaesup_state_core::{Event, FullKey, Message, encoded_len};

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
    /// off past [`MAX_CASCADE_DEPTH`] emits deep, [`MAX_CASCADE_CHANGES`]
    /// events emitted by listeners, or [`MAX_QUEUED_EVENT_BYTES`] waiting
    /// (see [`dropped`](Self::dropped)).
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
    /// An event is not queued (those emitted to other tabs were sent) past
    /// [`MAX_CASCADE_DEPTH`] emits deep, past [`MAX_CASCADE_CHANGES`]
    /// emitted by listeners in one dispatch, or past
    /// [`MAX_QUEUED_EVENT_BYTES`] of data waiting: listeners are answering
    /// their own events, a loop that would hang the page or fill its
    /// memory (two answers to each event double the queue at every
    /// step). Said once per dispatch, on the console and in
    /// [`dropped`](StateManager::dropped).
    pub(super) fn dispatch(shared: &Shared, event: &Event) {
        if shared.dispatching.get() {
            Self::queue(shared, event);
            return;
        }
        let mut dispatch = Dispatch::start(shared);
        // Events still queued (a listener's panic cut the dispatch that
        // queued them short) were emitted before this one.
        dispatch.drain();
        dispatch.deliver(event, 0);
        dispatch.drain();
    }

    /// Queues `event`, emitted by a listener during a dispatch, one step
    /// deeper than the event being delivered, unless past the bounds.
    fn queue(shared: &Shared, event: &Event) {
        let depth = shared.event_depth.get().saturating_add(1);
        let waiting = shared.events.borrow().len();
        let room = MAX_QUEUED_EVENT_BYTES.saturating_sub(shared.event_bytes.get());
        let within = depth <= MAX_CASCADE_DEPTH
            && waiting.saturating_add(shared.events_delivered.get()) < MAX_CASCADE_CHANGES;
        // Measured only within those bounds, and only as far as the room
        // left (the count stops there).
        let bytes = within
            .then(|| encoded_len(&event.data, room))
            .filter(|&bytes| bytes <= room);
        let Some(bytes) = bytes else {
            Self::cut_events(shared, event);
            return;
        };
        shared.event_bytes.set(shared.event_bytes.get() + bytes);
        shared
            .events
            .borrow_mut()
            .push_back((event.clone(), depth, bytes));
    }

    /// Leaves `event` undelivered (past the bounds), said once per dispatch.
    fn cut_events(shared: &Shared, event: &Event) {
        if shared.events_cut.replace(true) {
            return;
        }
        let text = format!(
            "Listeners kept emitting while being told of events: from an event on {} on, \
             events emitted more than {MAX_CASCADE_DEPTH} emits deep, past \
             {MAX_CASCADE_CHANGES} emitted by listeners, or past {MAX_QUEUED_EVENT_BYTES} bytes \
             of data waiting, in one dispatch were not delivered here (those for other tabs \
             were sent). A listener that emits on every event it hears loops.",
            event.topic
        );
        leptos::logging::error!("{text}");
        StateManager::record_refusal(shared, text);
    }
}

/// Most bytes of event data (as JSON) that events emitted by listeners may
/// hold while they wait in one dispatch: 16 events of the largest size an
/// event may carry, or thousands of small ones. Past it, a listener's
/// emit is not delivered (see [`StateManager::emit`]).
pub const MAX_QUEUED_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The dispatch running (only one at a time: events emitted meanwhile
/// wait in the manager's queue). Dropped when it ends, or when a
/// listener's panic unwinds through it (in a native build: a panic in
/// the wasm aborts, and leaves the manager as it was, mid-dispatch).
struct Dispatch<'s> {
    shared: &'s Shared,
}

impl<'s> Dispatch<'s> {
    fn start(shared: &'s Shared) -> Self {
        shared.dispatching.set(true);
        shared.events_delivered.set(0);
        shared.events_cut.set(false);
        Self { shared }
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
            let Some((event, depth, bytes)) = next else {
                return;
            };
            let shared = self.shared;
            shared
                .event_bytes
                .set(shared.event_bytes.get().saturating_sub(bytes));
            shared
                .events_delivered
                .set(shared.events_delivered.get() + 1);
            self.deliver(&event, depth);
        }
    }
}

impl Drop for Dispatch<'_> {
    fn drop(&mut self) {
        self.shared.dispatching.set(false);
        self.shared.event_depth.set(0);
    }
}
