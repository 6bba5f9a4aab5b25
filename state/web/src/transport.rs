//! Ways to other tabs of the same origin: `BroadcastChannel`, and the
//! `storage` event where it is missing. A relay transport (other devices,
//! being added) is one more module here.
//!
//! Each is a core [`Transport`](gaesup_state_core::Transport) for the way
//! out, and hands what it receives, as text and untouched, to the
//! callback it was opened with: decoding and every check on it happen
//! once, in the core
//! ([`StateManager::receive_text`](gaesup_state::StateManager::receive_text)).
//! Neither delivers to the instance that sent, which is what the manager
//! expects (its own ops are not applied twice anyway).

mod broadcast;
mod storage_event;

use std::cell::Cell;

use gaesup_state_core::{ApartmentId, Error as CoreError, Message};
use wasm_bindgen::JsCast;
use web_sys::{Event, StorageEvent};

use crate::error::{Result, WebError};

pub use broadcast::BroadcastTransport;
pub use storage_event::StorageEventTransport;

/// The BroadcastChannel every manager of the origin joins, whatever its
/// apartment: `Global` keys must reach every apartment, in this tab (each
/// manager has its own channel object, and a channel delivers to the
/// other objects of the same page) and in the others. A manager ignores,
/// without counting them as dropped, ops of keys it has not declared, such
/// as another apartment's.
pub fn channel_name(_apartment: &ApartmentId) -> String {
    "gaesup".to_owned()
}

/// The localStorage key the storage-event fallback posts through, the
/// same for every apartment, as [`channel_name`] is (outside the state
/// prefix, so it is never loaded as state).
pub fn bus_key(_apartment: &ApartmentId) -> String {
    "gaesup/bus".to_owned()
}

/// `event` as a `storage` event, with the storage area it changed.
///
/// Not `dyn_ref`: that is an `instanceof` check against this realm's
/// `StorageEvent`, which fails for the events of another window (a
/// same-origin iframe). The getters are structural, so an object that is
/// not a storage event reads as having no storage area and is ignored.
pub(crate) fn storage_event(event: &Event) -> Option<(&StorageEvent, web_sys::Storage)> {
    let event: &StorageEvent = event.unchecked_ref();
    let area = event.storage_area()?;
    Some((event, area))
}

/// The way in, the same for every browser transport: text goes to the
/// callback the transport was opened with; anything that is not text is
/// counted and reported, never delivered.
pub(crate) struct Inlet {
    on_text: Box<dyn Fn(String)>,
    on_not_text: Box<dyn Fn()>,
    not_text: Cell<usize>,
}

impl Inlet {
    pub(crate) fn new(
        on_text: impl Fn(String) + 'static,
        on_not_text: impl Fn() + 'static,
    ) -> Self {
        Self {
            on_text: Box::new(on_text),
            on_not_text: Box::new(on_not_text),
            not_text: Cell::new(0),
        }
    }

    /// Delivers received text.
    pub(crate) fn text(&self, text: String) {
        (self.on_text)(text);
    }

    /// Counts and reports something received that is not text.
    pub(crate) fn not_text(&self) {
        self.not_text.set(self.not_text.get().saturating_add(1));
        (self.on_not_text)();
    }

    /// How much arrived that was not text.
    pub(crate) fn not_text_count(&self) -> usize {
        self.not_text.get()
    }
}

/// The way out, the same for every browser transport: encodes `message`
/// and hands the text to `post`. Failures become the core's
/// [`Error::Transport`](CoreError::Transport), worded as a [`WebError`].
pub(crate) fn send_with(
    message: &Message,
    post: impl FnOnce(&str) -> Result<()>,
) -> gaesup_state_core::Result<()> {
    let sent = message
        .encode()
        .map_err(|err| WebError::Send(err.to_string()))
        .and_then(|text| post(&text));
    sent.map_err(|err| CoreError::Transport {
        reason: err.to_string(),
    })
}
