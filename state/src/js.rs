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
//! Failures throw an `Error` whose `code` is stable (`"permission_denied"`,
//! `"type_mismatch"`, `"unknown_key"`, … see [`StateError::code`]).
//! `window.gaesup` exists once the wasm has started; a `gaesup:ready` event
//! on `window` announces it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use gaesup_state_core::{
    Event, FullKey, KeyName, Lifetime, Scope, SharedKey, Strategy, UnitAddress,
};
use js_sys::{Function, JSON, Object, Reflect};
use serde::Deserialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::containers::UnitContext;
use crate::error::{Result, StateError};
use crate::manager::StateManager;

thread_local! {
    /// The apartments JavaScript units may join, by id.
    static APARTMENTS: RefCell<BTreeMap<String, StateManager>> = RefCell::default();
}

/// Publishes `window.gaesup` for these apartments (call once at start-up,
/// after the managers exist) and fires `gaesup:ready` on `window`.
pub fn install_js_binding(
    apartments: impl IntoIterator<Item = (String, StateManager)>,
) -> std::result::Result<(), JsValue> {
    APARTMENTS.with(|registry| registry.borrow_mut().extend(apartments));
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let api = Object::new();
    let unit = Closure::<dyn Fn(String) -> std::result::Result<JsValue, JsValue>>::new(
        |address: String| {
            open_unit(&address)
                .map(JsValue::from)
                .map_err(|e| js_error(&e))
        },
    );
    Reflect::set(&api, &"unit".into(), &unit.into_js_value())?;
    Reflect::set(&api, &"version".into(), &env!("CARGO_PKG_VERSION").into())?;
    Reflect::set(&window, &"gaesup".into(), &api)?;
    let ready = web_sys::Event::new("gaesup:ready")?;
    window.dispatch_event(&ready)?;
    Ok(())
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

fn bad(reason: impl Into<String>) -> StateError {
    StateError::BadValue {
        reason: reason.into(),
    }
}

/// JavaScript value → JSON, through `JSON.stringify` (so the rules are the
/// ones JavaScript developers know: `undefined` and functions have none).
fn from_js(value: &JsValue) -> Result<Value> {
    let text = JSON::stringify(value)
        .map_err(|_| bad("the value cannot be turned into JSON"))?
        .as_string()
        .ok_or_else(|| bad("undefined (and functions, symbols) have no JSON form"))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// JSON → JavaScript value, through `JSON.parse`.
fn to_js(value: &Value) -> JsValue {
    serde_json::to_string(value)
        .ok()
        .and_then(|text| JSON::parse(&text).ok())
        .unwrap_or(JsValue::NULL)
}

fn options<T: for<'de> Deserialize<'de> + Default>(value: &JsValue) -> Result<T> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(from_js(value)?).map_err(|e| bad(format!("options: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeclareOptions {
    scope: Option<Scope>,
    lifetime: Option<Lifetime>,
    strategy: Option<Strategy>,
    default: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventOptions {
    scope: Option<Scope>,
    cross_tab: Option<bool>,
}

/// The handle `window.gaesup.unit(address)` returns.
#[wasm_bindgen(js_name = GaesupUnit)]
pub struct JsUnit {
    unit: UnitContext,
    keys: RefCell<BTreeMap<String, SharedKey<Value>>>,
}

#[wasm_bindgen(js_class = GaesupUnit)]
impl JsUnit {
    /// `"apartment/building/unit"`.
    #[wasm_bindgen(getter)]
    pub fn address(&self) -> String {
        self.unit.address.to_string()
    }

    /// Declares key `name` with `{scope, lifetime, strategy, default}`
    /// (defaults: private, memory, last-write-wins, null; a sum key's
    /// default is 0). If a unit already declared it in that scope, the
    /// rules must match and its type is enforced on every write.
    pub fn declare(&self, name: &str, options: JsValue) -> std::result::Result<(), JsValue> {
        self.try_declare(name, &options).map_err(|e| js_error(&e))
    }

    /// The current value of `name`.
    pub fn get(&self, name: &str) -> std::result::Result<JsValue, JsValue> {
        self.key(name)
            .and_then(|key| self.unit.manager.get_value(&self.unit.address, &key))
            .map(|value| to_js(&value))
            .map_err(|e| js_error(&e))
    }

    /// Writes `value` to `name` (for a sum key: the increment that makes
    /// the total equal `value`).
    pub fn set(&self, name: &str, value: JsValue) -> std::result::Result<(), JsValue> {
        let write = || -> Result<()> {
            let key = self.key(name)?;
            let value = from_js(&value)?;
            self.unit.manager.set(&self.unit.address, &key, value)?;
            Ok(())
        };
        write().map_err(|e| js_error(&e))
    }

    /// Adds `delta` (a whole number) to sum key `name`.
    pub fn increment(&self, name: &str, delta: f64) -> std::result::Result<(), JsValue> {
        let write = || -> Result<()> {
            if delta.fract() != 0.0 || delta.abs() > 9_007_199_254_740_991.0 {
                return Err(bad(format!("increment {delta} is not a safe whole number")));
            }
            let key = self.key(name)?;
            // Checked above: a safe integer converts exactly.
            self.unit
                .manager
                .increment(&self.unit.address, &key, delta as i64)?;
            Ok(())
        };
        write().map_err(|e| js_error(&e))
    }

    /// Calls `callback(value)` after every change of `name`; returns the
    /// function that stops it (call it when the element disconnects).
    pub fn subscribe(
        &self,
        name: &str,
        callback: Function,
    ) -> std::result::Result<Function, JsValue> {
        let watch = || -> Result<Function> {
            let key = self.key(name)?;
            let manager = self.unit.manager;
            let id = manager.subscribe(&self.unit.address, &key, None, move |change| {
                // A throwing callback must not stop the other subscribers;
                // the browser reports the exception itself.
                let _ = callback.call1(&JsValue::NULL, &to_js(&change.new));
            })?;
            let stop = Closure::<dyn Fn()>::new(move || {
                manager.unsubscribe(id);
            });
            Ok(stop.into_js_value().unchecked_into())
        };
        watch().map_err(|e| js_error(&e))
    }

    /// Sends event `name` with `data` to the units in `options.scope`
    /// (default: apartment), and to other tabs with `crossTab: true`.
    pub fn emit(
        &self,
        name: &str,
        data: JsValue,
        options: JsValue,
    ) -> std::result::Result<(), JsValue> {
        let send = || -> Result<()> {
            let options: EventOptions = self::options(&options)?;
            let name = KeyName::new(name)?;
            let scope = options.scope.unwrap_or(Scope::Apartment);
            let event = Event::new(scope, &self.unit.address, &name, from_js(&data)?)?;
            self.unit
                .manager
                .emit(event, options.cross_tab.unwrap_or(false))
        };
        send().map_err(|e| js_error(&e))
    }

    /// Calls `callback(data, sender)` for every event `name` in
    /// `options.scope` (default: apartment); returns the function that
    /// stops it.
    pub fn on(
        &self,
        name: &str,
        callback: Function,
        options: JsValue,
    ) -> std::result::Result<Function, JsValue> {
        let listen = || -> Result<Function> {
            let options: EventOptions = self::options(&options)?;
            let name = KeyName::new(name)?;
            let topic = FullKey::new(
                options.scope.unwrap_or(Scope::Apartment),
                &self.unit.address,
                &name,
            );
            let manager = self.unit.manager;
            let id = manager.listen(topic, move |event| {
                let sender = JsValue::from_str(&event.sender.to_string());
                let _ = callback.call2(&JsValue::NULL, &to_js(&event.data), &sender);
            })?;
            let stop = Closure::<dyn Fn()>::new(move || {
                manager.unlisten(id);
            });
            Ok(stop.into_js_value().unchecked_into())
        };
        listen().map_err(|e| js_error(&e))
    }
}

impl JsUnit {
    fn try_declare(&self, name: &str, options: &JsValue) -> Result<()> {
        let options: DeclareOptions = self::options(options)?;
        let name = KeyName::new(name)?;
        let scope = options.scope.unwrap_or(Scope::Private);
        let full = FullKey::new(scope, &self.unit.address, &name);
        let existing = self
            .unit
            .manager
            .with_store(|store| store.spec_for(&full).ok())?;
        let key = match existing {
            Some(spec) => {
                let clash = |what: &str, ours: String, theirs: String| {
                    StateError::Core(gaesup_state_core::Error::KeyMismatch {
                        key: spec.label(),
                        reason: format!("{what} is {theirs}, not {ours}"),
                    })
                };
                if let Some(lifetime) = options.lifetime.filter(|l| *l != spec.lifetime()) {
                    return Err(clash(
                        "lifetime",
                        lifetime.to_string(),
                        spec.lifetime().to_string(),
                    ));
                }
                if let Some(strategy) = options.strategy.filter(|s| *s != spec.strategy()) {
                    return Err(clash(
                        "strategy",
                        strategy.as_str().to_owned(),
                        spec.strategy().as_str().to_owned(),
                    ));
                }
                SharedKey::erased(spec)
            }
            None => {
                let strategy = options.strategy.unwrap_or(Strategy::LastWriteWins);
                let default = options.default.unwrap_or(if strategy == Strategy::Sum {
                    Value::from(0)
                } else {
                    Value::Null
                });
                let key = SharedKey::builder_with_default(name.as_str(), default)
                    .scope(scope)
                    .lifetime(options.lifetime.unwrap_or(Lifetime::Memory))
                    .strategy(strategy)
                    .build()?;
                self.unit.manager.declare(&key)?;
                key
            }
        };
        self.keys.borrow_mut().insert(name.as_str().to_owned(), key);
        Ok(())
    }

    /// The key `name`: declared through this handle, or else the one
    /// declaration of that name visible from this unit.
    fn key(&self, name: &str) -> Result<SharedKey<Value>> {
        if let Some(key) = self.keys.borrow().get(name) {
            return Ok(key.clone());
        }
        let name = KeyName::new(name)?;
        let found: Vec<_> = self.unit.manager.with_store(|store| {
            store
                .specs()
                .filter(|spec| spec.name() == &name)
                .cloned()
                .collect()
        })?;
        match found.as_slice() {
            [] => Err(StateError::Core(gaesup_state_core::Error::UnknownKey {
                key: name.to_string(),
            })),
            [spec] => {
                let key = SharedKey::erased(spec.clone());
                self.keys.borrow_mut().insert(name.to_string(), key.clone());
                Ok(key)
            }
            many => Err(StateError::AmbiguousKey {
                name: name.to_string(),
                scopes: many
                    .iter()
                    .map(|spec| spec.scope().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}
