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
//! on `window` announces it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use gaesup_state_core::{
    Event, FullKey, KeyName, KeyState, Lifetime, Path, Scope, SharedKey, Strategy, UnitAddress,
    Write,
};
use js_sys::{Array, Function, JSON, Object, Reflect};
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
#[serde(deny_unknown_fields)]
struct SubscribeOptions {
    /// Watch only this path inside the value (`"items.0.qty"`).
    path: Option<String>,
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
    /// With `{ path }`, only a change at that path calls back, with the
    /// sub-value there (`undefined` when absent).
    pub fn subscribe(
        &self,
        name: &str,
        callback: Function,
        options: JsValue,
    ) -> std::result::Result<Function, JsValue> {
        let watch = || -> Result<Function> {
            let options: SubscribeOptions = self::options(&options)?;
            let key = self.key(name)?;
            let path = options.path.as_deref().map(Path::parse).transpose()?;
            let at = path.clone();
            let manager = self.unit.manager;
            let id = manager.subscribe(&self.unit.address, &key, path, move |change| {
                let value = match &at {
                    Some(path) => path.get(&change.new).map_or(JsValue::UNDEFINED, to_js),
                    None => to_js(&change.new),
                };
                // A throwing callback must not stop the other subscribers;
                // the browser reports the exception itself.
                let _ = callback.call1(&JsValue::NULL, &value);
            })?;
            Ok(stopper(move || {
                manager.unsubscribe(id);
            }))
        };
        watch().map_err(|e| js_error(&e))
    }

    /// The sub-value of `name` at `path` (`"items.0.qty"`), or `undefined`
    /// when the path is absent.
    #[wasm_bindgen(js_name = getPath)]
    pub fn get_path(&self, name: &str, path: &str) -> std::result::Result<JsValue, JsValue> {
        let read = || -> Result<JsValue> {
            let key = self.key(name)?;
            let path = Path::parse(path)?;
            let value = self
                .unit
                .manager
                .get_path(&self.unit.address, &key, &path)?;
            Ok(value.as_ref().map_or(JsValue::UNDEFINED, to_js))
        };
        read().map_err(|e| js_error(&e))
    }

    /// `{ lastWriter, version }` of `name`: the address of the unit that
    /// wrote the current value and its version stamp, both `null` while
    /// the key holds its default (and for sum keys, where every writer
    /// counts and the value is made of per-tab totals).
    pub fn meta(&self, name: &str) -> std::result::Result<JsValue, JsValue> {
        let read = || -> Result<JsValue> {
            let key = self.key(name)?;
            let address = &self.unit.address;
            let (writer, version) = self.unit.manager.with_replica(|store| {
                // The key's read permission decides who may see its writer.
                let full = store.subscribe(address, &key)?;
                let writer = store.last_write(&full).map(|(unit, _)| unit.to_string());
                let version = store
                    .state(&full)
                    .and_then(KeyState::max_stamp)
                    .map(|stamp| stamp.to_string());
                Ok::<_, gaesup_state_core::Error>((writer, version))
            })??;
            let meta = Object::new();
            let text = |value: Option<String>| value.map_or(JsValue::NULL, JsValue::from);
            // Setting properties on a fresh plain object cannot fail.
            let _ = Reflect::set(&meta, &"lastWriter".into(), &text(writer));
            let _ = Reflect::set(&meta, &"version".into(), &text(version));
            Ok(meta.into())
        };
        read().map_err(|e| js_error(&e))
    }

    /// Writes `value` to `name` at once, to be confirmed or taken back:
    /// the returned write's `revert()` undoes it unless someone wrote over
    /// it meanwhile (their write is kept), `confirm()` keeps it. Either
    /// one releases the write.
    #[wasm_bindgen(js_name = setOptimistic)]
    pub fn set_optimistic(
        &self,
        name: &str,
        value: JsValue,
    ) -> std::result::Result<JsWrite, JsValue> {
        let write = || -> Result<JsWrite> {
            let key = self.key(name)?;
            let value = from_js(&value)?;
            let written = self.unit.manager.set(&self.unit.address, &key, value)?;
            Ok(JsWrite {
                unit: self.unit.clone(),
                key,
                written,
            })
        };
        write().map_err(|e| js_error(&e))
    }

    /// Watches several keys with one callback, called once per change set
    /// with `{ name: newValue }` of the keys that changed (see the module
    /// docs); returns the one function that stops every part of it.
    #[wasm_bindgen(js_name = subscribeBatch)]
    pub fn subscribe_batch(
        &self,
        names: Array,
        callback: Function,
    ) -> std::result::Result<Function, JsValue> {
        self.try_subscribe_batch(&names, callback)
            .map_err(|e| js_error(&e))
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
            Ok(stopper(move || {
                manager.unlisten(id);
            }))
        };
        listen().map_err(|e| js_error(&e))
    }
}

/// A JavaScript function that runs `stop` (the unsubscribe functions
/// handed out).
fn stopper(stop: impl Fn() + 'static) -> Function {
    Closure::<dyn Fn()>::new(stop)
        .into_js_value()
        .unchecked_into()
}

/// The changes a batch subscription has gathered in the current task.
struct BatchWatch {
    callback: Function,
    changed: RefCell<BTreeMap<String, Value>>,
    /// A flush is queued for the end of the task.
    queued: Cell<bool>,
    stopped: Cell<bool>,
}

impl BatchWatch {
    /// Records one change; the first of a task queues the flush.
    fn record(self: &Rc<Self>, name: &str, value: &Value) {
        if self.stopped.get() {
            return;
        }
        self.changed
            .borrow_mut()
            .insert(name.to_owned(), value.clone());
        if !self.queued.replace(true) {
            let watch = Rc::clone(self);
            // Every change of one batch, local or from another tab, is
            // delivered before the task that applied it ends: a microtask
            // sees the whole set.
            wasm_bindgen_futures::spawn_local(async move { watch.flush() });
        }
    }

    fn flush(&self) {
        self.queued.set(false);
        let changed = std::mem::take(&mut *self.changed.borrow_mut());
        if self.stopped.get() || changed.is_empty() {
            return;
        }
        let values = Object::new();
        for (name, value) in &changed {
            // Key names are validated (no `__proto__`): plain properties.
            let _ = Reflect::set(&values, &name.into(), &to_js(value));
        }
        let _ = self.callback.call1(&JsValue::NULL, &values);
    }
}

/// An optimistic write, from [`JsUnit::set_optimistic`].
#[wasm_bindgen(js_name = GaesupWrite)]
pub struct JsWrite {
    unit: UnitContext,
    key: SharedKey<Value>,
    written: Write,
}

#[wasm_bindgen(js_class = GaesupWrite)]
impl JsWrite {
    /// Undoes the write unless someone wrote over it since; `true` when it
    /// was undone.
    pub fn revert(self) -> std::result::Result<bool, JsValue> {
        self.unit
            .manager
            .revert(&self.unit.address, &self.key, &self.written)
            .map(|undone| undone.is_some())
            .map_err(|e| js_error(&e))
    }

    /// Keeps the write.
    pub fn confirm(self) {}
}

impl JsUnit {
    fn try_subscribe_batch(&self, names: &Array, callback: Function) -> Result<Function> {
        let mut keys = BTreeMap::new();
        for name in names.iter() {
            let name = name
                .as_string()
                .ok_or_else(|| bad("subscribeBatch takes an array of key names"))?;
            let key = self.key(&name)?;
            keys.insert(name, key);
        }
        if keys.is_empty() {
            return Err(bad("subscribeBatch needs at least one key name"));
        }
        let watch = Rc::new(BatchWatch {
            callback,
            changed: RefCell::default(),
            queued: Cell::new(false),
            stopped: Cell::new(false),
        });
        let manager = self.unit.manager;
        let mut ids = Vec::with_capacity(keys.len());
        for (name, key) in keys {
            let part = Rc::clone(&watch);
            let subscribed = manager.subscribe(&self.unit.address, &key, None, move |change| {
                part.record(&name, &change.new);
            });
            match subscribed {
                Ok(id) => ids.push(id),
                Err(err) => {
                    // All or nothing: no part of a refused subscription stays.
                    for id in ids {
                        manager.unsubscribe(id);
                    }
                    return Err(err);
                }
            }
        }
        Ok(stopper(move || {
            watch.stopped.set(true);
            watch.changed.borrow_mut().clear();
            for id in &ids {
                manager.unsubscribe(*id);
            }
        }))
    }

    fn try_declare(&self, name: &str, options: &JsValue) -> Result<()> {
        let options: DeclareOptions = self::options(options)?;
        let name = KeyName::new(name)?;
        let scope = options.scope.unwrap_or(Scope::Private);
        let full = FullKey::new(scope, &self.unit.address, &name);
        let existing = self
            .unit
            .manager
            .with_replica(|replica| replica.spec_for(&full).ok())?;
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
        let found: Vec<_> = self.unit.manager.with_replica(|store| {
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
