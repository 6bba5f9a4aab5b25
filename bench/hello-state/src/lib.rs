//! The size probe of `cargo xtask bench`: `bench-hello`'s counter, kept by
//! the state manager the way a unit keeps it (an `<Apartment>` connected to
//! localStorage and the other tabs, a `<Unit>`, `use_shared_state`). Its
//! release build minus `bench-hello`'s is what the state manager costs an
//! app. The JavaScript binding (`window.gaesup`) is left out: it is the
//! opt-in `js` feature of `gaesup-state-web`.

use gaesup_state::prelude::*;
use gaesup_state::{SharedKey, StateManager};
use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The page: one route showing the counter inside its containers.
#[component]
pub fn App() -> impl IntoView {
    let manager = StateManager::with_system_clock();
    connect(manager);
    view! {
        <Router>
            <main>
                <Routes fallback=|| "Not found.">
                    <Route
                        path=path!("/")
                        view=move || {
                            view! {
                                <Apartment id="hello" manager=manager>
                                    <Building id="lobby">
                                        <Unit id="counter">
                                            <Counter />
                                        </Unit>
                                    </Building>
                                </Apartment>
                            }
                        }
                    />
                </Routes>
            </main>
        </Router>
    }
}

/// Persistence and cross-tab sync, as the app has them.
#[cfg(target_arch = "wasm32")]
fn connect(manager: StateManager) {
    let Ok(id) = gaesup_state::core::ApartmentId::new("hello") else {
        return;
    };
    if let Ok(sync) = gaesup_state_web::connect_browser(manager, &id) {
        // Lives as long as the page's root owner.
        StoredValue::new_local(sync);
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn connect(_: StateManager) {}

fn count_key() -> Option<SharedKey<i64>> {
    SharedKey::builder("count")
        .scope(Scope::Building)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Sum)
        .build()
        .ok()
}

/// A button counting its clicks in a shared, persistent sum key.
#[component]
fn Counter() -> impl IntoView {
    let Some(key) = count_key() else {
        return view! { <p role="alert">"invalid key"</p> }.into_any();
    };
    let count = use_shared_state(&key);
    let set = count.set;
    view! {
        <button on:click=move |_| set.increment(1)>"Count"</button>
        <output>{count.value}</output>
    }
    .into_any()
}
