//! `window.gaesup`: the state manager for units not written in Rust.
//!
//! A unit written in plain JavaScript (a custom element, or a React, Vue or
//! Svelte island) gets a handle for its own address and then uses the same
//! keys, scopes, permissions and strategies as a Leptos unit:
//!
//! ```js
//! const unit = window.gaesup.unit("main/lobby/js-counter");
//! unit.declare("clicks", { scope: "building", lifetime: "persistent", strategy: "sum" });
//! const stop = unit.subscribe("clicks", (value) => render(value));
//! unit.increment("clicks", 1);
//! unit.set("clicks", 0);
//! unit.emit("ping", { at: Date.now() }, { scope: "apartment", crossTab: true });
//! const off = unit.on("ping", (data, sender) => console.log(sender, data), { scope: "apartment" });
//! stop(); off();
//! ```
//!
//! Beyond that, what framework bindings need (`js/gaesup-bindings.js`
//! builds React hooks, Vue composables and Svelte stores on it):
//!
//! ```js
//! unit.subscribe("cart", (qty) => show(qty), { path: "items.0.qty" }); // only that path
//! unit.getPath("cart", "items.0.qty");
//! unit.meta("cart");                        // { lastWriter, version }
//! const write = unit.setOptimistic("cart", next);
//! save(next).then(() => write.confirm(), () => write.revert());
//! const stopAll = unit.subscribeBatch(["cart", "count"], (changed) => render(changed));
//! ```
//!
//! `subscribeBatch` calls back once per change set: every change delivered
//! while a task runs (a batch written here, one message from another tab
//! carrying a batch, or several writes in one event handler) is gathered
//! and handed over once, in a microtask, as `{ name: newValue }` for the
//! keys that changed.
//!
//! Failures throw an `Error` whose `code` is stable (`"permission_denied"`,
//! `"type_mismatch"`, `"unknown_key"`, … see [`StateError::code`]).
//! `window.gaesup` exists once the wasm has started; a `gaesup:ready` event
//! on `window` announces it. Each key declared from then on (by a Rust or
//! a JavaScript unit) is announced by a `gaesup:declared` event on
//! `window`, `{ apartment, name, scope }` as its detail: a unit that found
//! no key of a name (`"unknown_key"`) may try again when it hears of it.
//!
//! | file | what |
//! |---|---|
//! | `unit.rs` | the methods of a unit's handle |
//! | `keys.rs` | which key a name means: `declare`, and lookup by name |
//! | `batch.rs` | `subscribeBatch`: one callback per change set |
//! | `write.rs` | an optimistic write, to confirm or revert |
//! | `convert.rs` | values and options between JavaScript and Rust |

mod batch;
mod convert;
mod keys;
mod unit;
mod write;

use std::cell::RefCell;

use gaesup_state::{Result, StateError, StateManager, UnitContext};
use gaesup_state_core::vec_map::VecMap;
use gaesup_state_core::{SharedKey, UnitAddress};
use js_sys::{Function, Object, Reflect};
use serde_json::Value;
use wasm_bindgen::prelude::*;

pub use write::JsWrite;

thread_local! {
    /// The apartments JavaScript units may join, by id.
    static APARTMENTS: RefCell<VecMap<String, StateManager>> = RefCell::default();
}

/// Publishes `window.gaesup` for these apartments and fires
/// `gaesup:ready` on `window`. Call it once at start-up, after the
/// managers are connected to storage and the other tabs
/// ([`connect_browser`](crate::connect_browser)): a unit that reads when
/// it hears `gaesup:ready` must see what storage holds.
pub fn install_js_binding(
    apartments: impl IntoIterator<Item = (String, StateManager)>,
) -> std::result::Result<(), JsValue> {
    for (apartment, manager) in apartments {
        // A manager published before (a second call) announces already:
        // a hook more would announce each key twice.
        let known = APARTMENTS.with(|registry| registry.borrow().values().any(|m| *m == manager));
        if !known {
            announce_declarations(&apartment, manager).map_err(|e| js_error(&e))?;
        }
        APARTMENTS.with(|registry| registry.borrow_mut().insert(apartment, manager));
    }
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let api = Object::new();
    let unit = Closure::<dyn Fn(JsValue) -> std::result::Result<JsValue, JsValue>>::new(
        |address: JsValue| {
            text(&address, "unit")
                .and_then(|address| open_unit(&address))
                .map(JsValue::from)
                .map_err(|e| js_error(&e))
        },
    );
    Reflect::set(&api, &"unit".into(), &unit.into_js_value())?;
    let relay = Closure::<dyn Fn(JsValue) -> JsValue>::new(|apartment: JsValue| {
        apartment
            .as_string()
            .and_then(|apartment| crate::connect::relay_status(&apartment))
            .and_then(|status| relay_status_js(&status))
            .unwrap_or(JsValue::NULL)
    });
    Reflect::set(&api, &"relay".into(), &relay.into_js_value())?;
    Reflect::set(&api, &"version".into(), &env!("CARGO_PKG_VERSION").into())?;
    Reflect::set(&window, &"gaesup".into(), &api)?;
    let ready = web_sys::Event::new("gaesup:ready")?;
    window.dispatch_event(&ready)?;
    Ok(())
}

/// Announces each key `manager` declares from now on with a
/// `gaesup:declared` event on `window`, `{ apartment, name, scope }` as its
/// detail: a unit that asked for a key nobody had declared yet (a
/// JavaScript unit subscribing before the Leptos unit that declares it
/// has mounted) tries again when it hears of that name. Dispatched in a
/// microtask, so a listener never runs inside the manager's own call.
fn announce_declarations(apartment: &str, manager: StateManager) -> Result<()> {
    let apartment = apartment.to_owned();
    manager.on_declare(move |spec| {
        let Some(window) = web_sys::window() else {
            return;
        };
        let detail = Object::new();
        // Setting properties on a fresh plain object cannot fail.
        let _ = Reflect::set(&detail, &"apartment".into(), &apartment.as_str().into());
        let _ = Reflect::set(&detail, &"name".into(), &spec.name().as_str().into());
        let _ = Reflect::set(&detail, &"scope".into(), &spec.scope().to_string().into());
        let target = window.clone();
        let announce = Closure::once_into_js(move || {
            let init = web_sys::CustomEventInit::new();
            init.set_detail(&detail);
            if let Ok(event) =
                web_sys::CustomEvent::new_with_event_init_dict("gaesup:declared", &init)
            {
                let _ = target.dispatch_event(&event);
            }
        });
        window.queue_microtask(announce.unchecked_ref());
    })
}

fn open_unit(address: &str) -> Result<JsUnit> {
    let address: UnitAddress = address.parse()?;
    let id = address.apartment().as_str().to_owned();
    let manager = APARTMENTS
        .with(|registry| registry.borrow().get(&id).copied())
        .ok_or(StateError::UnknownApartment { id })?;
    Ok(JsUnit {
        unit: UnitContext { address, manager },
        keys: RefCell::default(),
    })
}

/// A JavaScript `Error` with the stable `code` of `err`.
fn js_error(err: &StateError) -> JsValue {
    let error = js_sys::Error::new(&err.to_string());
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&error, &"code".into(), &err.code().into());
    error.into()
}

/// `{ link, waiting, lastAck, here }` of a relay status.
fn relay_status_js(status: &gaesup_state::RelayStatus) -> Option<JsValue> {
    let object = Object::new();
    let set = |name: &str, value: JsValue| Reflect::set(&object, &name.into(), &value).ok();
    set("link", status.link.as_str().into())?;
    set("waiting", (status.waiting as f64).into())?;
    set(
        "lastAck",
        status.last_ack_ms.map_or(JsValue::NULL, JsValue::from_f64),
    )?;
    set("here", status.here.into())?;
    Some(object.into())
}

/// `value` as text: names, paths and addresses. Anything else is refused
/// here, in Rust: wasm-bindgen's glue would copy a number or an object
/// into the wasm as if it were a string (a trap, not an error).
fn text(value: &JsValue, call: &str) -> Result<String> {
    value.as_string().ok_or_else(|| {
        let kind = value.js_typeof().as_string().unwrap_or_default();
        bad(format!(
            "{call} takes names, paths and addresses as strings (this is of type {kind})"
        ))
    })
}

/// `value` as a function to call back, refused otherwise (a callback
/// forgotten would be taken and never fire).
fn function(value: JsValue, call: &str) -> Result<Function> {
    if value.is_function() {
        Ok(value.unchecked_into())
    } else {
        let kind = value.js_typeof().as_string().unwrap_or_default();
        Err(bad(format!(
            "{call} takes a function to call back (this is of type {kind})"
        )))
    }
}

#[wasm_bindgen]
extern "C" {
    /// The global `reportError`: an exception shown as an uncaught one
    /// (the console, `window.onerror`), without unwinding through us.
    #[wasm_bindgen(catch, js_name = reportError)]
    fn report_error(exception: &JsValue) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(exception: &JsValue);
}

/// What a unit's callback threw is reported as the browser reports an
/// uncaught exception, and does not stop the other callbacks.
fn reported(called: std::result::Result<JsValue, JsValue>) {
    if let Err(exception) = called
        && report_error(&exception).is_err()
    {
        console_error(&exception);
    }
}

/// The `message` of a JavaScript exception (a throwing getter, proxy
/// trap or `toJSON`), or `fallback` when it has none.
fn exception_message(exception: &JsValue, fallback: &str) -> String {
    Reflect::get(exception, &JsValue::from_str("message"))
        .ok()
        .and_then(|message| message.as_string())
        .unwrap_or_else(|| fallback.to_owned())
}

fn bad(reason: impl Into<String>) -> StateError {
    StateError::BadValue {
        reason: reason.into(),
    }
}

/// A JavaScript function that runs `stop` (the unsubscribe functions
/// handed out).
fn stopper(stop: impl Fn() + 'static) -> Function {
    Closure::<dyn Fn()>::new(stop)
        .into_js_value()
        .unchecked_into()
}

/// The handle `window.gaesup.unit(address)` returns.
#[wasm_bindgen(js_name = GaesupUnit)]
pub struct JsUnit {
    unit: UnitContext,
    keys: RefCell<VecMap<String, SharedKey<Value>>>,
}
