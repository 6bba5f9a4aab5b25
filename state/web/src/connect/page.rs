//! The page events a connection follows: re-read when the tab becomes
//! visible, save when it is hidden or left, re-read when another tab
//! writes state or clears storage, and (in the tab holding the relay link)
//! take what another tab put in the outbox.

use std::rc::Weak;

use gaesup_protocol::link::OUTBOX_PREFIX;
use gaesup_state_core::{FullKey, QUARANTINE_PREFIX, STATE_PREFIX};
use gloo_events::EventListener;
use web_sys::{VisibilityState, Window};

use super::Inner;
use crate::transport::storage_event;

/// Page events: re-read when visible, save when hidden or left (and
/// every write after, at once, while the page is being left), re-read
/// when another tab writes state or clears storage.
pub(super) fn page_listeners(window: &Window, weak: &Weak<Inner>) -> Vec<EventListener> {
    let mut listeners = Vec::with_capacity(4);
    if let Some(document) = window.document() {
        let weak = weak.clone();
        let watched = document.clone();
        listeners.push(EventListener::new(
            &document,
            "visibilitychange",
            move |_| {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if watched.visibility_state() == VisibilityState::Visible {
                    // Background tabs are throttled and may have missed
                    // messages: merge what storage holds, then ask the others.
                    inner.reload();
                    inner.request_sync();
                } else {
                    // A hidden page may be discarded without another event, and
                    // animation frames stop while hidden.
                    inner.save_now();
                }
            },
        ));
    }
    let save_weak = weak.clone();
    listeners.push(EventListener::new(window, "pagehide", move |_| {
        if let Some(inner) = save_weak.upgrade() {
            inner.leaving.set(true);
            inner.save_now();
        }
    }));
    // Back from the back/forward cache: frames and timeouts run again.
    let shown_weak = weak.clone();
    listeners.push(EventListener::new(window, "pageshow", move |_| {
        if let Some(inner) = shown_weak.upgrade() {
            inner.leaving.set(false);
        }
    }));
    let storage_weak = weak.clone();
    listeners.push(EventListener::new(window, "storage", move |event| {
        let Some(inner) = storage_weak.upgrade() else {
            return;
        };
        let Some((event, _)) = storage_event(event) else {
            return;
        };
        match event.key() {
            // `clear()` in another tab.
            None => {
                inner.writer.notice(
                    "Another tab cleared the browser storage; this tab keeps its values and saves them again.".to_owned(),
                );
                // Fails only for a manager gone or busy, neither of which
                // a storage event finds. Entries set aside went too.
                let _ = inner.manager.quarantine_gone(None);
                let _ = inner.manager.mark_all_dirty();
                inner.reload_soon();
                // The outbox went too: the tab holding the link writes
                // back the ops it still waits on.
                inner.relay_outbox_changed();
            }
            Some(key) if key.starts_with(STATE_PREFIX) => {
                // Removed (by hand, or by another tab discarding what it
                // set aside): what this tab holds is saved again. A tab
                // that cannot read it sets it aside again.
                if event.new_value().is_none()
                    && let Ok(full) = key[STATE_PREFIX.len()..].parse::<FullKey>()
                {
                    let _ = inner.manager.stored_entry_removed(&full);
                }
                inner.reload_soon_named(key);
            }
            // Another tab discarded an entry set aside: if this tab set it
            // aside too, it saves the key again.
            Some(key) if key.starts_with(QUARANTINE_PREFIX) && event.new_value().is_none() => {
                if let Ok(full) = key[QUARANTINE_PREFIX.len()..].parse::<FullKey>() {
                    let _ = inner.manager.quarantine_gone(Some(&full));
                }
            }
            // Another tab queued an op for the relay. Only this event says
            // the entry is readable here: the other tab's message about the
            // same write comes on another channel, and may come first.
            // A removal (an op answered) needs nothing, and must not
            // start a re-read: tabs that each lead (no Web Locks) would
            // write back and remove the same entries in turn.
            Some(key) if key.starts_with(OUTBOX_PREFIX) => {
                if event.new_value().is_some() {
                    inner.relay_outbox_changed();
                }
            }
            Some(_) => {}
        }
    }));
    listeners
}
