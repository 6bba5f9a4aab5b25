//! The fast path between tabs: a `BroadcastChannel`.

use std::rc::Rc;

use gaesup_state_core::{Message, Transport};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use web_sys::{BroadcastChannel, MessageEvent};

use super::{Inlet, send_with};
use crate::error::{Result, WebError};
use crate::storage::js_message;

/// A `BroadcastChannel` carrying encoded messages as strings.
///
/// Dropping it detaches the handlers and closes the channel.
pub struct BroadcastTransport {
    channel: BroadcastChannel,
    // Held so the JS side can keep calling them; released after `Drop`
    // has detached them from the channel.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_message_error: Closure<dyn FnMut(MessageEvent)>,
    inlet: Rc<Inlet>,
}

impl std::fmt::Debug for BroadcastTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastTransport")
            .field("name", &self.channel.name())
            .field("not_text", &self.not_text())
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
        let inlet = Rc::new(Inlet::new(on_text, on_not_text));
        let to = Rc::clone(&inlet);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            match event.data().as_string() {
                Some(text) => to.text(text),
                None => to.not_text(),
            }
        });
        let to = Rc::clone(&inlet);
        let on_message_error =
            Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| to.not_text());
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        channel.set_onmessageerror(Some(on_message_error.as_ref().unchecked_ref()));
        Ok(Self {
            channel,
            _on_message: on_message,
            _on_message_error: on_message_error,
            inlet,
        })
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
        self.inlet.not_text_count()
    }

    /// The channel's name.
    pub fn name(&self) -> String {
        self.channel.name()
    }
}

impl Transport for BroadcastTransport {
    /// Posts `message` to the other instances on the channel.
    fn send(&self, message: &Message) -> gaesup_state_core::Result<()> {
        send_with(message, |text| self.send_text(text))
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
