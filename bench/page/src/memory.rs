//! Mount/unmount cycles of a unit: do subscriptions or memory stay behind?

use std::cell::RefCell;

use gaesup_state::prelude::*;
use gaesup_state::{SharedKey, StateManager};
use leptos::context::Provider;
use leptos::prelude::*;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::fixture::{key, now, report, stage};

thread_local! {
    /// One manager for every call, so a leak would accumulate across calls.
    static MANAGER: RefCell<Option<(Owner, StateManager)>> = const { RefCell::new(None) };
}

fn manager() -> StateManager {
    MANAGER.with(|slot| {
        slot.borrow_mut()
            .get_or_insert_with(|| {
                let owner = Owner::new();
                let manager = owner.with(StateManager::with_system_clock);
                (owner, manager)
            })
            .1
    })
}

/// Bytes of the wasm linear memory (it grows, never shrinks).
fn wasm_bytes() -> Result<f64, JsValue> {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().dyn_into()?;
    let buffer: js_sys::ArrayBuffer = memory.buffer().dyn_into()?;
    Ok(f64::from(buffer.byte_length()))
}

/// Which hooks the cycled unit uses: `bare` (a plain signal, no
/// containers: Leptos alone), `providers` (a plain signal inside three
/// nested Leptos `<Provider>`s, the mechanism the containers use),
/// `containers` (a plain signal in `<Apartment>/<Building>/<Unit>`),
/// `keys` (builds the two `SharedKey`s the unit uses, then shows a plain
/// signal, no containers),
/// `plain` (a plain signal inside the same
/// containers, the baseline), `shared` (`use_shared_state`), `path`
/// (`use_state_path`), `event` (`use_container_event`) or `all`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hooks {
    Bare,
    Providers,
    Containers,
    Keys,
    Plain,
    Shared,
    Path,
    Event,
    All,
}

impl Hooks {
    fn parse(kind: &str) -> Result<Self, JsValue> {
        Ok(match kind {
            "bare" => Self::Bare,
            "providers" => Self::Providers,
            "containers" => Self::Containers,
            "keys" => Self::Keys,
            "plain" => Self::Plain,
            "shared" => Self::Shared,
            "path" => Self::Path,
            "event" => Self::Event,
            "all" => Self::All,
            other => return Err(JsValue::from_str(&format!("unknown unit kind {other:?}"))),
        })
    }

    fn uses(self, hook: Self) -> bool {
        self == hook || self == Self::All
    }
}

/// Mounts and unmounts a unit using `kind` hooks (see [`Hooks`]) `cycles`
/// times on the same manager: `{ms, subscriptions_before,
/// subscriptions_mounted, subscriptions_after, listeners_before,
/// listeners_after, bytes_before, bytes_after}`.
#[wasm_bindgen]
pub fn mount_cycles(kind: String, cycles: u32) -> Result<String, JsValue> {
    let hooks = Hooks::parse(&kind)?;
    let parent = stage()?;
    let manager = manager();
    let subscriptions_before = manager.subscription_count();
    let listeners_before = manager.listener_count();
    let bytes_before = wasm_bytes()?;
    let mut mounted = 0;
    let start = now();
    for _ in 0..cycles {
        let handle = leptos::mount::mount_to(parent.clone(), move || cycled(hooks, manager));
        mounted = mounted.max(manager.subscription_count());
        drop(handle);
    }
    let ms = now() - start;
    Ok(report(json!({
        "ms": ms,
        "subscriptions_before": subscriptions_before,
        "subscriptions_mounted": mounted,
        "subscriptions_after": manager.subscription_count(),
        "listeners_before": listeners_before,
        "listeners_after": manager.listener_count(),
        "bytes_before": bytes_before,
        "bytes_after": wasm_bytes()?,
    })))
}

/// What is held now, between calls of [`mount_cycles`]: `{bytes,
/// subscriptions, listeners}` (wasm memory and the manager's live
/// subscriptions and event listeners). Called once the event loop has
/// turned after a call, it shows what outlives the tasks a cycle queued:
/// Leptos ends each render effect's task (`spawn_local`) only when the
/// event loop runs it, so a call of many cycles holds every one of them
/// until it returns.
#[wasm_bindgen]
pub fn memory_now() -> Result<String, JsValue> {
    let manager = manager();
    Ok(report(json!({
        "bytes": wasm_bytes()?,
        "subscriptions": manager.subscription_count(),
        "listeners": manager.listener_count(),
    })))
}

/// What one cycle mounts (see [`Hooks`]).
fn cycled(hooks: Hooks, manager: StateManager) -> AnyView {
    let plain = RwSignal::new(0_i64);
    match hooks {
        Hooks::Bare => view! { <p>{plain}</p> }.into_any(),
        Hooks::Providers => view! {
            <Provider value=1_u8>
                <Provider value=2_u16>
                    <Provider value=3_u32>
                        <p>{plain}</p>
                    </Provider>
                </Provider>
            </Provider>
        }
        .into_any(),
        Hooks::Keys => {
            let count: Result<SharedKey<i64>, JsValue> =
                key("count", gaesup_state::Lifetime::Memory);
            let doc: Result<SharedKey<Value>, JsValue> = key("doc", gaesup_state::Lifetime::Memory);
            let built = count.is_ok() && doc.is_ok();
            view! { <p>{plain} {built}</p> }.into_any()
        }
        Hooks::Containers => view! {
            <Apartment id="memory" manager=manager>
                <Building id="b">
                    <Unit id="u">
                        <p>{plain}</p>
                    </Unit>
                </Building>
            </Apartment>
        }
        .into_any(),
        _ => view! {
            <Apartment id="memory" manager=manager>
                <Building id="b">
                    <Unit id="u">
                        <Cycled hooks=hooks />
                    </Unit>
                </Building>
            </Apartment>
        }
        .into_any(),
    }
}

/// A unit using the hooks `hooks` asks for, each once.
#[component]
fn Cycled(hooks: Hooks) -> impl IntoView {
    let count: Result<SharedKey<i64>, JsValue> = key("count", gaesup_state::Lifetime::Memory);
    let doc: Result<SharedKey<Value>, JsValue> = key("doc", gaesup_state::Lifetime::Memory);
    let (Ok(count), Ok(doc)) = (count, doc) else {
        return view! { <p>"invalid key"</p> }.into_any();
    };
    let plain = RwSignal::new(0_i64);
    let count = hooks
        .uses(Hooks::Shared)
        .then(|| use_shared_state(&count).value);
    let field = hooks
        .uses(Hooks::Path)
        .then(|| use_state_path::<Value, i64>(&doc, "a").value);
    let ping = hooks
        .uses(Hooks::Event)
        .then(|| use_container_event::<i64>("ping", Scope::Building).last);
    view! {
        <p>
            {plain} " " {move || count.map_or(0, |c| c.get())} " "
            {move || field.and_then(|f| f.get()).unwrap_or(0)} " "
            {move || ping.and_then(|p| p.get()).unwrap_or(0)}
        </p>
    }
    .into_any()
}
