//! The size baseline of `cargo xtask bench`: a routed Leptos counter with a
//! plain signal. `bench-hello-state` is the same page with the counter
//! going through the state manager; the difference of the two release
//! builds is what the state manager costs.

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The page: one route showing the counter.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <main>
                <Routes fallback=|| "Not found.">
                    <Route path=path!("/") view=Counter />
                </Routes>
            </main>
        </Router>
    }
}

/// A button counting its clicks in a plain signal.
#[component]
fn Counter() -> impl IntoView {
    let count = RwSignal::new(0_i64);
    view! {
        <button on:click=move |_| count.update(|n| *n += 1)>"Count"</button>
        <output>{count}</output>
    }
}
