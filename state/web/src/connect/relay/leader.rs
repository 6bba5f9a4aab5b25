//! One connection per browser, not per tab: the tab holding the Web Lock
//! `gaesup-relay/<apartment>` holds the relay link; when it closes, the
//! browser hands the lock (and the link) to another tab.
//!
//! Where the Web Locks API is missing, every tab holds its own link (the
//! relay takes duplicates by op id, so this costs connections, not
//! correctness).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (web-sys has it behind its unstable APIs).
    type LockManager;

    #[wasm_bindgen(method, catch)]
    fn request(this: &LockManager, name: &str, callback: &Function) -> Result<Promise, JsValue>;
}

/// A request for the lock; dropping it gives the lock up (or withdraws the
/// request).
pub(super) struct Leadership {
    alive: Rc<Cell<bool>>,
    release: Rc<RefCell<Option<Function>>>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // A lock granted later is given back at once.
        self.alive.set(false);
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

/// Asks for the lock `name`; `granted` runs when this tab holds it (at
/// once, or when the tab holding it closes). `Err` when the browser has no
/// Web Locks: the caller then leads at once.
pub(super) fn request(name: &str, granted: impl Fn() + 'static) -> Result<Leadership, String> {
    let navigator = web_sys::window().ok_or("no window")?.navigator();
    let locks = Reflect::get(&navigator, &JsValue::from_str("locks"))
        .ok()
        .filter(|locks| !locks.is_undefined() && !locks.is_null())
        .ok_or("this browser has no Web Locks")?;
    let locks: LockManager = locks.unchecked_into();
    let release = Rc::new(RefCell::new(None::<Function>));
    let alive = Rc::new(Cell::new(true));
    let (held, live) = (Rc::clone(&release), Rc::clone(&alive));
    // Owned by JavaScript from here, so the browser may call it whenever
    // it grants the lock, even after the Leadership is gone.
    let callback = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
        if !live.get() {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        // The lock is held until this promise settles: at drop, or when
        // the page goes away.
        let promise = Promise::new(&mut |resolve, _reject| {
            *held.borrow_mut() = Some(resolve);
        });
        granted();
        promise
    })
    .into_js_value();
    // Its promise settles when the lock is given back; nothing waits on it.
    let _released = locks
        .request(name, callback.unchecked_ref())
        .map_err(|err| super::config::describe(&err))?;
    Ok(Leadership { alive, release })
}
