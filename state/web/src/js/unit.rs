//! What a [`JsUnit`] offers JavaScript: reads, writes, subscriptions,
//! events.

use std::cell::Cell;
use std::rc::Rc;

use gaesup_state::{Confirmation, Result, StateError};
use gaesup_state_core::{Event, FullKey, KeyName, KeyState, Path, Scope};
use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::convert::{EventOptions, JsonBudget, SubscribeOptions, from_js, options, to_js};
use super::{JsUnit, JsWrite, bad, exception_message, function, js_error, reported, stopper, text};

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
    pub fn declare(&self, name: JsValue, options: JsValue) -> std::result::Result<(), JsValue> {
        text(&name, "declare")
            .and_then(|name| self.try_declare(&name, &options))
            .map_err(|e| js_error(&e))
    }

    /// The current value of `name`.
    pub fn get(&self, name: JsValue) -> std::result::Result<JsValue, JsValue> {
        text(&name, "get")
            .and_then(|name| self.key(&name))
            .and_then(|key| self.unit.manager.get_value(&self.unit.address, &key))
            .map(|value| to_js(&value))
            .map_err(|e| js_error(&e))
    }

    /// Writes `value` to `name` (for a sum key: the increment that makes
    /// the total equal `value`).
    pub fn set(&self, name: JsValue, value: JsValue) -> std::result::Result<(), JsValue> {
        let write = || -> Result<()> {
            let key = self.key(&text(&name, "set")?)?;
            let value = from_js(&value)?;
            self.unit.manager.set(&self.unit.address, &key, value)?;
            Ok(())
        };
        write().map_err(|e| js_error(&e))
    }

    /// Writes `value` at `path` (`"rows.r1.qty"`) inside `name`'s value:
    /// the object field the last step names is set, or the array item it
    /// names replaced; every step before it must exist. For a key declared
    /// from JavaScript (any JSON) with last-write-wins, the stored value
    /// changes in place, so one field of a large document costs what the
    /// field costs.
    #[wasm_bindgen(js_name = setPath)]
    pub fn set_path(
        &self,
        name: JsValue,
        path: JsValue,
        value: JsValue,
    ) -> std::result::Result<(), JsValue> {
        let write = || -> Result<()> {
            let key = self.key(&text(&name, "setPath")?)?;
            let path = Path::parse(&text(&path, "setPath")?)?;
            let value = from_js(&value)?;
            self.unit
                .manager
                .set_path(&self.unit.address, &key, &path, value)?;
            Ok(())
        };
        write().map_err(|e| js_error(&e))
    }

    /// Writes several places inside `name`'s value at once: `writes` is a
    /// list of `[path, value]` pairs (`Object.entries({ path: value })`
    /// makes one). One write, one notification per subscriber, and all or
    /// nothing: if a path leads nowhere, two lie one inside the other, or
    /// there are none or more than `MAX_PATH_WRITES` (4,096), nothing
    /// changes (code `invalid_path`). How to update rows of a long list
    /// (paths `"3"`, `"17"`) or fields of a large document: for a
    /// last-write-wins key declared from JavaScript the value changes in
    /// place, and only the subscribers of the places written are told.
    #[wasm_bindgen(js_name = setPaths)]
    pub fn set_paths(&self, name: JsValue, writes: JsValue) -> std::result::Result<(), JsValue> {
        let write = || -> Result<()> {
            let key = self.key(&text(&name, "setPaths")?)?;
            let writes = path_writes(&writes)?;
            self.unit
                .manager
                .set_paths(&self.unit.address, &key, writes)?;
            Ok(())
        };
        write().map_err(|e| js_error(&e))
    }

    /// Adds `delta` (a whole number) to sum key `name`.
    pub fn increment(&self, name: JsValue, delta: f64) -> std::result::Result<(), JsValue> {
        let write = || -> Result<()> {
            let name = text(&name, "increment")?;
            if delta.fract() != 0.0 || delta.abs() > 9_007_199_254_740_991.0 {
                // Shown as JavaScript writes it (Rust's float formatting
                // would add about 12 KiB to the wasm for this one message).
                let shown = String::from(
                    js_sys::Number::from(delta)
                        .to_string_with_radix(10)
                        .unwrap_or_default(),
                );
                return Err(bad(format!("increment {shown} is not a safe whole number")));
            }
            let key = self.key(&name)?;
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
        name: JsValue,
        callback: JsValue,
        options: JsValue,
    ) -> std::result::Result<Function, JsValue> {
        let watch = || -> Result<Function> {
            let key = self.key(&text(&name, "subscribe")?)?;
            let callback = function(callback, "subscribe")?;
            let options: SubscribeOptions = self::options(&options)?;
            let path = options.path.as_deref().map(Path::parse).transpose()?;
            let at = path.clone();
            let manager = self.unit.manager;
            let live = Rc::new(Cell::new(true));
            let stop = Rc::clone(&live);
            let id = manager.subscribe(&self.unit.address, &key, path, move |change| {
                // Stopped by another callback of the same change: not told.
                if !live.get() {
                    return;
                }
                let value = match &at {
                    Some(path) => path.get(&change.new).map_or(JsValue::UNDEFINED, to_js),
                    None => to_js(&change.new),
                };
                reported(callback.call1(&JsValue::NULL, &value));
            })?;
            Ok(stopper(move || {
                stop.set(false);
                manager.unsubscribe(id);
            }))
        };
        watch().map_err(|e| js_error(&e))
    }

    /// The sub-value of `name` at `path` (`"items.0.qty"`), or `undefined`
    /// when the path is absent.
    #[wasm_bindgen(js_name = getPath)]
    pub fn get_path(&self, name: JsValue, path: JsValue) -> std::result::Result<JsValue, JsValue> {
        let read = || -> Result<JsValue> {
            let key = self.key(&text(&name, "getPath")?)?;
            let path = Path::parse(&text(&path, "getPath")?)?;
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
    pub fn meta(&self, name: JsValue) -> std::result::Result<JsValue, JsValue> {
        let read = || -> Result<JsValue> {
            let key = self.key(&text(&name, "meta")?)?;
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
        name: JsValue,
        value: JsValue,
    ) -> std::result::Result<JsWrite, JsValue> {
        let write = || -> Result<JsWrite> {
            let key = self.key(&text(&name, "setOptimistic")?)?;
            let value = from_js(&value)?;
            let written = self
                .unit
                .manager
                .set_full(&self.unit.address, &key, value)?;
            Ok(JsWrite {
                unit: self.unit.clone(),
                key,
                written: Some(written),
            })
        };
        write().map_err(|e| js_error(&e))
    }

    /// Sets key `name` at once and returns a `Promise` that resolves when
    /// the relay has applied the write, or rejects (an `Error` with `code`
    /// `"rejected"`) when it refused it, after rolling the write back
    /// (unless someone wrote over it meanwhile). Offline, it waits until
    /// the relay is reached. Without a relay the write is kept and the
    /// call throws (`code` `"no_confirmer"`); so it does for session or
    /// memory state, which no relay sees (`"not_relayed"`). When nobody
    /// will say (more than 10,000 writes wait), it rejects with
    /// `"unconfirmed"` and the write is kept.
    #[wasm_bindgen(js_name = setConfirmed)]
    pub fn set_confirmed(
        &self,
        name: JsValue,
        value: JsValue,
    ) -> std::result::Result<js_sys::Promise, JsValue> {
        let write = || -> Result<js_sys::Promise> {
            let key = self.key(&text(&name, "setConfirmed")?)?;
            let value = from_js(&value)?;
            let manager = self.unit.manager;
            let written = manager.set_full(&self.unit.address, &key, value)?;
            let confirmation = manager.confirmation(written.op.id, &written.op.key)?;
            let address = self.unit.address.clone();
            Ok(wasm_bindgen_futures::future_to_promise(async move {
                match confirmation.await {
                    Confirmation::Confirmed => Ok(JsValue::UNDEFINED),
                    // Kept, but nobody will say the relay applied it.
                    Confirmation::Unknown => Err(js_error(&StateError::Unconfirmed {
                        key: written.op.key.to_string(),
                    })),
                    Confirmation::Refused(reason) => {
                        let _ = manager.revert(&address, &key, &written);
                        Err(js_error(&StateError::Rejected {
                            key: written.op.key.to_string(),
                            reason,
                        }))
                    }
                }
            }))
        };
        write().map_err(|e| js_error(&e))
    }

    /// Watches several keys with one callback, called once per change set
    /// with `{ name: newValue }` of the keys that changed (see the module
    /// docs); returns the one function that stops every part of it.
    #[wasm_bindgen(js_name = subscribeBatch)]
    pub fn subscribe_batch(
        &self,
        names: JsValue,
        callback: JsValue,
    ) -> std::result::Result<Function, JsValue> {
        function(callback, "subscribeBatch")
            .and_then(|callback| self.try_subscribe_batch(&names, callback))
            .map_err(|e| js_error(&e))
    }

    /// Sends event `name` with `data` to the units in `options.scope`
    /// (default: apartment), and to other tabs with `crossTab: true`.
    pub fn emit(
        &self,
        name: JsValue,
        data: JsValue,
        options: JsValue,
    ) -> std::result::Result<(), JsValue> {
        let send = || -> Result<()> {
            let name = KeyName::new(&text(&name, "emit")?)?;
            let options: EventOptions = self::options(&options)?;
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
        name: JsValue,
        callback: JsValue,
        options: JsValue,
    ) -> std::result::Result<Function, JsValue> {
        let listen = || -> Result<Function> {
            let name = KeyName::new(&text(&name, "on")?)?;
            let callback = function(callback, "on")?;
            let options: EventOptions = self::options(&options)?;
            let topic = FullKey::new(
                options.scope.unwrap_or(Scope::Apartment),
                &self.unit.address,
                &name,
            );
            let manager = self.unit.manager;
            let live = Rc::new(Cell::new(true));
            let stop = Rc::clone(&live);
            let id = manager.listen(topic, move |event| {
                if !live.get() {
                    return;
                }
                let sender = JsValue::from_str(&event.sender.to_string());
                reported(callback.call2(&JsValue::NULL, &to_js(&event.data), &sender));
            })?;
            Ok(stopper(move || {
                stop.set(false);
                manager.unlisten(id);
            }))
        };
        listen().map_err(|e| js_error(&e))
    }
}

/// The `[path, value]` pairs of [`JsUnit::set_paths`]. Hostile input is
/// refused before it costs anything: a list longer than a write takes is
/// refused by its length alone, items are read by index (never through an
/// iterator a caller may replace, nor a copy of the list), each value is
/// converted alone, and all of them together may not pass
/// `MAX_LOCAL_STATE_BYTES` of JSON. A getter or proxy that throws comes
/// back as that exception, with nothing written.
fn path_writes(writes: &JsValue) -> Result<Vec<(Path, serde_json::Value)>> {
    const SHAPE: &str = "setPaths takes a list of [path, value] pairs";
    let Some(count) = list_length(writes)? else {
        return Err(bad(SHAPE));
    };
    if usize::try_from(count).map_or(true, |n| n > gaesup_state_core::MAX_PATH_WRITES) {
        return Err(gaesup_state_core::Error::InvalidPath {
            path: String::new(),
            reason: "more places in one write than MAX_PATH_WRITES",
        }
        .into());
    }
    let mut budget = JsonBudget::new();
    let mut pairs = Vec::new();
    for at in 0..count {
        let pair = list_item(writes, at)?;
        let path = match list_length(&pair)? {
            Some(2) => list_item(&pair, 0)?.as_string(),
            _ => None,
        };
        let Some(path) = path else {
            return Err(bad(format!("{SHAPE}; item {at} is not one")));
        };
        let value = budget.convert(&list_item(&pair, 1)?)?;
        pairs.push((Path::parse(&path)?, value));
    }
    Ok(pairs)
}

/// The length of `list` if it is an array, read through `Reflect` so a
/// proxy or getter that throws comes back as an error: an exception
/// crossing this crate's frames would leave the unit's handle borrowed.
pub(super) fn list_length(list: &JsValue) -> Result<Option<u32>> {
    if !is_array(list).map_err(thrown)? {
        return Ok(None);
    }
    let length = Reflect::get(list, &JsValue::from_str("length")).map_err(thrown)?;
    Ok(length.as_f64().and_then(|n| u32::try_from(n as i64).ok()))
}

/// Item `at` of `list`, read as [`list_length`] reads the length.
pub(super) fn list_item(list: &JsValue, at: u32) -> Result<JsValue> {
    Reflect::get_u32(list, at).map_err(thrown)
}

#[wasm_bindgen]
extern "C" {
    /// `Array.isArray`, which throws for a revoked proxy: caught.
    #[wasm_bindgen(catch, js_namespace = Array, js_name = isArray)]
    fn is_array(value: &JsValue) -> std::result::Result<bool, JsValue>;
}

/// A JavaScript exception (a throwing getter or proxy trap) as an error.
fn thrown(exception: JsValue) -> StateError {
    let message = exception_message(&exception, "an exception");
    bad(format!("reading the list threw: {message}"))
}
