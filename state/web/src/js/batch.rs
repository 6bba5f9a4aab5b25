//! `subscribeBatch`: one callback for several keys, once per change set.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use gaesup_state::Result;
use gaesup_state_core::MAX_GROUP_OPS;
use js_sys::{Function, Object, Reflect};
use serde_json::Value;
use wasm_bindgen::JsValue;

use super::convert::to_js;
use super::unit::{list_item, list_length};
use super::{JsUnit, bad, stopper};

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
        super::reported(self.callback.call1(&JsValue::NULL, &values));
    }
}

impl JsUnit {
    /// Names are read by index through `Reflect` (a proxy or getter that
    /// throws is an error, not an exception through this frame), at most
    /// [`MAX_GROUP_OPS`] of them: the most keys one batch writes.
    pub(super) fn try_subscribe_batch(
        &self,
        names: &JsValue,
        callback: Function,
    ) -> Result<Function> {
        const SHAPE: &str = "subscribeBatch takes an array of key names";
        let count = list_length(names)?.ok_or_else(|| bad(SHAPE))?;
        if usize::try_from(count).map_or(true, |n| n > MAX_GROUP_OPS) {
            return Err(bad(format!(
                "subscribeBatch watches at most {MAX_GROUP_OPS} keys"
            )));
        }
        let mut keys = BTreeMap::new();
        for at in 0..count {
            let name = list_item(names, at)?
                .as_string()
                .ok_or_else(|| bad(SHAPE))?;
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
}
