//! The two ways to the relay: a WebSocket, and HTTP requests for the
//! fallback (push, long-poll pull) with the same bodies.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MessageEvent, WebSocket};

use super::config::describe;

/// What a socket reports.
pub(super) enum SocketEvent {
    Open,
    Text(String),
    /// Closed, or failed to open (the close always follows an error).
    Closed,
}

/// An open (or opening) WebSocket and its handlers; dropping it closes the
/// socket and detaches the handlers first, so a late event reaches no
/// freed closure.
pub(super) struct Socket {
    socket: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
}

impl Socket {
    /// Opens `url`; `on_event` hears everything. Fails when the page has no
    /// usable `WebSocket` (removed, or blocked by the page's policy).
    pub(super) fn open(
        url: &str,
        on_event: impl Fn(SocketEvent) + 'static,
    ) -> Result<Self, String> {
        let socket = WebSocket::new(url).map_err(|err| describe(&err))?;
        let on_event = std::rc::Rc::new(on_event);
        let opened = std::rc::Rc::clone(&on_event);
        let on_open = Closure::<dyn FnMut()>::new(move || opened(SocketEvent::Open));
        let received = std::rc::Rc::clone(&on_event);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // The relay sends text only; anything else is ignored (and the
            // heartbeat notices a relay that sends nothing useful).
            if let Some(text) = event.data().as_string() {
                received(SocketEvent::Text(text));
            }
        });
        let on_close = Closure::<dyn FnMut()>::new(move || on_event(SocketEvent::Closed));
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Self {
            socket,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Sends a text frame; `false` if the socket is not open.
    pub(super) fn send(&self, text: &str) -> bool {
        self.socket.ready_state() == WebSocket::OPEN && self.socket.send_with_str(text).is_ok()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}

/// An HTTP request to the relay: `(status, body)`, or `Err` when the relay
/// could not be reached at all (down, or this device offline), or did not
/// answer whole within `timeout_ms` (a relay or proxy that holds the
/// request open would otherwise hold the loop that sent it for good).
pub(super) async fn request(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&str>,
    timeout_ms: u32,
) -> Result<(u16, String), String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(timeout_ms)));
    let headers = web_sys::Headers::new().map_err(|err| describe(&err))?;
    headers
        .set("Authorization", &format!("Bearer {token}"))
        .map_err(|err| describe(&err))?;
    if let Some(body) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(|err| describe(&err))?;
        init.set_body(&JsValue::from_str(body));
    }
    init.set_headers(&headers);
    let request =
        web_sys::Request::new_with_str_and_init(url, &init).map_err(|err| describe(&err))?;
    let response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|err| describe(&err))?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| "fetch did not answer a response".to_owned())?;
    let text = JsFuture::from(response.text().map_err(|err| describe(&err))?)
        .await
        .map_err(|err| describe(&err))?;
    Ok((response.status(), text.as_string().unwrap_or_default()))
}
