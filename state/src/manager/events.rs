//! The event bus: typed events scoped like state, optionally to other
//! tabs.

use std::rc::Rc;

use gaesup_state_core::{Event, FullKey, Message};

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
    /// tabs too when `cross_tab`.
    pub fn emit(&self, event: Event, cross_tab: bool) -> Result<()> {
        let shared = self.shared()?;
        if cross_tab {
            Self::send(&shared, &Message::Event(event.clone()));
        }
        Self::dispatch(&shared, &event);
        Ok(())
    }

    pub(super) fn dispatch(shared: &Shared, event: &Event) {
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
}
