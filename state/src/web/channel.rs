//! Ways to other tabs of the same origin: `BroadcastChannel`, and the
//! `storage` event where it is missing.
//!
//! Both hand incoming text to a callback untouched: decoding and every
//! check on it happen once, in the core
//! ([`StateManager::receive_text`](crate::StateManager::receive_text)).
//! Neither delivers to the instance that sent, which is what the manager
//! expects (its own ops are not applied twice anyway).

use std::cell::Cell;
use std::rc::Rc;

use gaesup_state_core::{ApartmentId, Message, Storage as _};
use gloo_events::EventListener;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use web_sys::{BroadcastChannel, Event, MessageEvent, StorageEvent, Window};

use super::storage::{BrowserStorage, StorageArea, js_message};
use super::{Result, WebError};

/// The BroadcastChannel every manager of the origin joins, whatever its
/// apartment: `Global` keys must reach every apartment, in this tab (each
/// manager has its own channel object, and a channel delivers to the
/// other objects of the same page) and in the others. A manager ignores,
/// without counting them as dropped, ops of keys it has not declared, such
/// as another apartment's.
pub fn channel_name(_apartment: &ApartmentId) -> String {
    "gaesup".to_owned()
}

/// The localStorage key the storage-event fallback posts through for an
/// apartment (outside the state prefix, so it is never loaded as state).
pub fn bus_key(apartment: &ApartmentId) -> String {
    format!("gaesup/bus/{apartment}")
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

fn encode(message: &Message) -> Result<String> {
    message
        .encode()
        .map_err(|err| WebError::Send(err.to_string()))
}

/// A `BroadcastChannel` carrying encoded messages as strings.
///
/// Dropping it detaches the handlers and closes the channel.
pub struct BroadcastTransport {
    channel: BroadcastChannel,
    // Held so the JS side can keep calling them; released after `Drop`
    // has detached them from the channel.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_message_error: Closure<dyn FnMut(MessageEvent)>,
    not_text: Rc<Cell<usize>>,
}

impl std::fmt::Debug for BroadcastTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastTransport")
            .field("name", &self.channel.name())
            .field("not_text", &self.not_text.get())
            .finish_non_exhaustive()
    }
}

impl BroadcastTransport {
    /// Opens channel `name`; `on_text` receives every string posted on it
    /// by other instances. Anything else is counted in
    /// [`not_text`](Self::not_text).
    pub fn open(name: &str, on_text: impl Fn(String) + 'static) -> Result<Self> {
        Self::open_with(name, on_text, || {})
    }

    /// Like [`open`](Self::open), and calls `on_not_text` for each message
    /// that is not a string or could not be deserialized.
    pub fn open_with(
        name: &str,
        on_text: impl Fn(String) + 'static,
        on_not_text: impl Fn() + 'static,
    ) -> Result<Self> {
        // Checked first so the notice says what is missing: without it the
        // (catching) constructor binding fails with a bare
        // "ReferenceError: BroadcastChannel is not defined".
        let global = js_sys::global();
        let present =
            js_sys::Reflect::has(&global, &JsValue::from_str("BroadcastChannel")).unwrap_or(false);
        if !present {
            return Err(WebError::NoBroadcastChannel(
                "this browser has no BroadcastChannel".to_owned(),
            ));
        }
        let channel = BroadcastChannel::new(name)
            .map_err(|err| WebError::NoBroadcastChannel(js_message(&err)))?;
        let not_text = Rc::new(Cell::new(0usize));
        let on_not_text = Rc::new(on_not_text);

        let count = Rc::clone(&not_text);
        let refused = Rc::clone(&on_not_text);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            match event.data().as_string() {
                Some(text) => on_text(text),
                None => {
                    count.set(count.get().saturating_add(1));
                    refused();
                }
            }
        });
        let count = Rc::clone(&not_text);
        let on_message_error = Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| {
            count.set(count.get().saturating_add(1));
            on_not_text();
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        channel.set_onmessageerror(Some(on_message_error.as_ref().unchecked_ref()));
        Ok(Self {
            channel,
            _on_message: on_message,
            _on_message_error: on_message_error,
            not_text,
        })
    }

    /// Posts `message` to the other instances on the channel.
    pub fn send(&self, message: &Message) -> Result<()> {
        self.send_text(&encode(message)?)
    }

    /// Posts raw text (already encoded, or deliberately not: tests post
    /// hostile strings with it).
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.channel
            .post_message(&JsValue::from_str(text))
            .map_err(|err| WebError::Send(js_message(&err)))
    }

    /// Incoming messages that were not strings, so never delivered.
    pub fn not_text(&self) -> usize {
        self.not_text.get()
    }

    /// The channel's name.
    pub fn name(&self) -> String {
        self.channel.name()
    }
}

impl Drop for BroadcastTransport {
    fn drop(&mut self) {
        // Detached before the closures are freed, so the browser never
        // calls into a dropped closure.
        self.channel.set_onmessage(None);
        self.channel.set_onmessageerror(None);
        self.channel.close();
    }
}

/// Cross-tab messages through the `storage` event, for browsers without
/// `BroadcastChannel`.
///
/// Sending writes `nonce + "\n" + text` to one localStorage key and removes
/// it again: the nonce makes two identical messages two different writes
/// (an unchanged value fires no event), and the removal keeps the message
/// out of storage. Browsers fire `storage` only in the *other* documents of
/// the origin, so the sender never hears itself. Dropping it removes the
/// listener.
pub struct StorageEventTransport {
    storage: BrowserStorage,
    key: String,
    nonce_base: u32,
    sent: Cell<u64>,
    not_text: Rc<Cell<usize>>,
    _listener: EventListener,
}

impl std::fmt::Debug for StorageEventTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageEventTransport")
            .field("key", &self.key)
            .field("not_text", &self.not_text.get())
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
        let not_text = Rc::new(Cell::new(0usize));
        let count = Rc::clone(&not_text);
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
                Some((_nonce, text)) => on_text(text.to_owned()),
                None => {
                    count.set(count.get().saturating_add(1));
                    on_not_text();
                }
            }
        });
        Ok(Self {
            storage,
            key: key.to_owned(),
            // Distinguishes this sender's nonces from another tab's that
            // happens to be at the same count.
            nonce_base: (js_sys::Math::random() * f64::from(u32::MAX)) as u32,
            sent: Cell::new(0),
            not_text,
            _listener: listener,
        })
    }

    /// Posts `message` to the other documents of the origin.
    pub fn send(&self, message: &Message) -> Result<()> {
        self.send_text(&encode(message)?)
    }

    /// Posts raw text.
    pub fn send_text(&self, text: &str) -> Result<()> {
        let sent = self.sent.get().wrapping_add(1);
        self.sent.set(sent);
        let value = format!("{:08x}{sent:x}\n{text}", self.nonce_base);
        let mut storage = self.storage.clone();
        storage.set(&self.key, &value)?;
        storage.remove(&self.key)?;
        Ok(())
    }

    /// Entries seen under the key that were not in the expected form.
    pub fn not_text(&self) -> usize {
        self.not_text.get()
    }

    /// The localStorage key it posts through.
    pub fn key(&self) -> &str {
        &self.key
    }
}
