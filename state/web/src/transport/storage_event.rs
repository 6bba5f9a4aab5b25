//! The fallback where `BroadcastChannel` is missing: the `storage` event.

use std::cell::Cell;
use std::rc::Rc;

use gaesup_state_core::{Message, Storage as _, Transport};
use gloo_events::EventListener;
use web_sys::Window;

use super::{Inlet, send_with, storage_event};
use crate::error::{Result, WebError};
use crate::storage::{BrowserStorage, StorageArea};

/// Cross-tab messages through the `storage` event, for browsers without
/// `BroadcastChannel`.
///
/// Sending writes `nonce + "\n" + text` to one localStorage key and removes
/// it again: the nonce makes two identical messages two different writes
/// (an unchanged value fires no event), and the removal keeps the message
/// out of storage. Browsers fire `storage` only in the *other* documents of
/// the origin, so the sender never hears itself, and the other transports
/// of its own document (another apartment's manager in the same page)
/// are handed the text directly, in a microtask, as a `BroadcastChannel`
/// delivers to the other channels of its page. Dropping it removes the
/// listener.
pub struct StorageEventTransport {
    storage: BrowserStorage,
    key: String,
    nonce_base: u32,
    sent: Cell<u64>,
    inlet: Rc<Inlet>,
    /// This transport among the page's (see [`PAGE`]).
    id: u64,
    window: Window,
    _listener: EventListener,
}

/// A transport of this page, as the others of its document reach it.
struct Peer {
    id: u64,
    window: Window,
    key: String,
    inlet: std::rc::Weak<Inlet>,
}

thread_local! {
    /// The storage-event transports open in this page (the wasm's
    /// thread), and the next id.
    static PAGE: std::cell::RefCell<(Vec<Peer>, u64)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

impl std::fmt::Debug for StorageEventTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageEventTransport")
            .field("key", &self.key)
            .field("not_text", &self.not_text())
            .finish_non_exhaustive()
    }
}

impl StorageEventTransport {
    /// Posts through localStorage key `key` of this page.
    pub fn open(key: &str, on_text: impl Fn(String) + 'static) -> Result<Self> {
        Self::open_with(key, on_text, || {})
    }

    /// Like [`open`](Self::open), and calls `on_not_text` for each entry
    /// under `key` that is not in the `nonce\ntext` form.
    pub fn open_with(
        key: &str,
        on_text: impl Fn(String) + 'static,
        on_not_text: impl Fn() + 'static,
    ) -> Result<Self> {
        let window = web_sys::window().ok_or(WebError::NoWindow)?;
        Self::open_in(&window, key, on_text, on_not_text)
    }

    /// Like [`open_with`](Self::open_with) in another window (a
    /// same-origin iframe; that is how a single page tests it).
    pub fn open_in(
        window: &Window,
        key: &str,
        on_text: impl Fn(String) + 'static,
        on_not_text: impl Fn() + 'static,
    ) -> Result<Self> {
        let storage = BrowserStorage::open_in(window, StorageArea::Local)?;
        let inlet = Rc::new(Inlet::new(on_text, on_not_text));
        let to = Rc::clone(&inlet);
        let watched = key.to_owned();
        let area = storage.raw().clone();
        let listener = EventListener::new(window, "storage", move |event| {
            let Some((event, changed)) = storage_event(event) else {
                return;
            };
            if event.key().as_deref() != Some(watched.as_str())
                || !js_sys::Object::is(&changed, &area)
            {
                return;
            }
            // The removal that follows every post arrives as `None`.
            let Some(value) = event.new_value() else {
                return;
            };
            match value.split_once('\n') {
                Some((_nonce, text)) => to.text(text.to_owned()),
                None => to.not_text(),
            }
        });
        let id = PAGE.with_borrow_mut(|(peers, next)| {
            *next += 1;
            peers.push(Peer {
                id: *next,
                window: window.clone(),
                key: key.to_owned(),
                inlet: Rc::downgrade(&inlet),
            });
            *next
        });
        Ok(Self {
            storage,
            key: key.to_owned(),
            // Distinguishes this sender's nonces from another tab's that
            // happens to be at the same count.
            nonce_base: (js_sys::Math::random() * f64::from(u32::MAX)) as u32,
            sent: Cell::new(0),
            inlet,
            id,
            window: window.clone(),
            _listener: listener,
        })
    }

    /// Hands `text` to the other transports of this document on the same
    /// key, each in a microtask (never inside the sender's call: a manager
    /// sending is busy).
    fn deliver_in_page(&self, text: &str) {
        let inlets: Vec<std::rc::Weak<Inlet>> = PAGE.with_borrow(|(peers, _)| {
            peers
                .iter()
                .filter(|peer| {
                    peer.id != self.id
                        && peer.key == self.key
                        && js_sys::Object::is(&peer.window, &self.window)
                })
                .map(|peer| peer.inlet.clone())
                .collect()
        });
        for inlet in inlets {
            let text = text.to_owned();
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(inlet) = inlet.upgrade() {
                    inlet.text(text);
                }
            });
        }
    }

    /// Posts raw text. The page's other transports on the key get it even
    /// when posting to other tabs fails (storage full, say): an `Err` says
    /// the other tabs did not, so a caller that sends again reaches this
    /// page's twice.
    pub fn send_text(&self, text: &str) -> Result<()> {
        let sent = self.sent.get().wrapping_add(1);
        self.sent.set(sent);
        let value = format!("{:08x}{sent:x}\n{text}", self.nonce_base);
        // The page's own first: that needs no room in storage, which may
        // be full.
        self.deliver_in_page(text);
        let mut storage = self.storage.clone();
        storage.set(&self.key, &value)?;
        storage.remove(&self.key)?;
        Ok(())
    }

    /// Entries seen under the key that were not in the expected form.
    pub fn not_text(&self) -> usize {
        self.inlet.not_text_count()
    }

    /// The localStorage key it posts through.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for StorageEventTransport {
    fn drop(&mut self) {
        PAGE.with_borrow_mut(|(peers, _)| peers.retain(|peer| peer.id != self.id));
    }
}

impl Transport for StorageEventTransport {
    /// Posts `message` to the other documents of the origin.
    fn send(&self, message: &Message) -> gaesup_state_core::Result<()> {
        send_with(message, |text| self.send_text(text))
    }
}
