//! Start-up with a large persisted value: from creating the manager to the
//! value rendered in the DOM.

use gaesup_state::core::ApartmentId;
use gaesup_state::prelude::*;
use gaesup_state::{SharedKey, StateManager};
use gaesup_state_web::{BrowserStorage, connect_browser};
use leptos::prelude::*;
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::fixture::{address, js, key, now, report, stage, text_of};

const APARTMENT: &str = "hydrate";

fn big_key() -> Result<SharedKey<Vec<String>>, JsValue> {
    key("big", gaesup_state::Lifetime::Persistent)
}

fn local_storage() -> Result<web_sys::Storage, JsValue> {
    web_sys::window()
        .ok_or_else(|| js("no window"))?
        .local_storage()?
        .ok_or_else(|| js("no localStorage"))
}

/// Clears localStorage and stores, through the manager, a value of about
/// `bytes` bytes of JSON (100-character strings) under the persistent key
/// the measurement reads: `{items, value_bytes, stored_chars}` (stored:
/// UTF-16 units of every key and value in localStorage, what browsers
/// count towards the quota).
#[wasm_bindgen]
pub fn plant(bytes: u32) -> Result<String, JsValue> {
    let storage = local_storage()?;
    storage.clear()?;
    let items: Vec<String> = (0..bytes as usize / 103)
        .map(|i| format!("{i:>6} {}", "x".repeat(93)))
        .collect();
    let value_bytes = serde_json::to_string(&items).map_err(js)?.len();
    let owner = Owner::new();
    let planted = owner.with(|| {
        let manager = StateManager::with_system_clock();
        let storage = BrowserStorage::local().map_err(js)?;
        manager
            .attach_storage(gaesup_state::Lifetime::Persistent, Box::new(storage))
            .map_err(js)?;
        let key = big_key()?;
        manager.declare(&key).map_err(js)?;
        manager
            .set(&address(APARTMENT)?, &key, items.clone())
            .map_err(js)?;
        manager.flush().map_err(js)?;
        Ok::<_, JsValue>(())
    });
    owner.cleanup();
    planted?;
    let mut stored = 0;
    for i in 0..storage.length()? {
        if let Some(name) = storage.key(i)? {
            let value = storage.get_item(&name)?.unwrap_or_default();
            stored += name.encode_utf16().count() + value.encode_utf16().count();
        }
    }
    Ok(report(json!({
        "items": items.len(),
        "value_bytes": value_bytes,
        "stored_chars": stored,
    })))
}

/// One cold start against what [`plant`] stored: `StateManager` created,
/// `connect_browser` (attaches localStorage and sessionStorage, opens the
/// BroadcastChannel, asks other tabs for state), then `mount_to` of an
/// `<Apartment>/<Building>/<Unit>` whose component declares the key with
/// `use_shared_state` (which loads and decodes it) and renders it; timed
/// until the rendered text is in the DOM. `{ms, connect_ms, mount_ms,
/// items}`.
#[wasm_bindgen]
pub fn hydrate() -> Result<String, JsValue> {
    let parent = stage()?;
    let key = big_key()?;
    let apartment = ApartmentId::new(APARTMENT).map_err(js)?;
    let owner = Owner::new();
    let result = owner.with(|| {
        let start = now();
        let manager = StateManager::with_system_clock();
        let sync = connect_browser(manager, &apartment).map_err(js)?;
        let connected = now();
        let handle = leptos::mount::mount_to(parent, move || {
            view! {
                <Apartment id=APARTMENT manager=manager>
                    <Building id="b">
                        <Unit id="u">
                            <Big key=key />
                        </Unit>
                    </Building>
                </Apartment>
            }
        });
        let shown = text_of("#big").unwrap_or_default();
        let end = now();
        drop(handle);
        drop(sync);
        let items: usize = shown
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok::<_, JsValue>(report(json!({
            "ms": end - start,
            "connect_ms": connected - start,
            "mount_ms": end - connected,
            "items": items,
        })))
    });
    owner.cleanup();
    result
}

/// Shows how many items the value holds and the last one.
#[component]
fn Big(key: SharedKey<Vec<String>>) -> impl IntoView {
    let big = use_shared_state(&key);
    view! {
        <p id="big">
            {move || {
                big.value
                    .with(|v| format!("{} items, last: {}", v.len(), v.last().cloned().unwrap_or_default()))
            }}
        </p>
    }
}
