//! Two size probes of `cargo xtask bench`, each `bench-hello`'s counter
//! plus one thing done on every click to the page's URL fragment (a text
//! the compiler cannot see at build time), its length added to the count:
//!
//! - `bench-hello-json` parses it as untyped JSON (`serde_json::Value`)
//!   and prints it back: what JSON itself costs a page;
//! - `bench-hello-codecs` decodes it as each format the state manager
//!   reads from outside (a message between tabs, a stored key, a
//!   snapshot), with the checks it makes on untrusted text, and encodes
//!   what it got. None of the state manager's logic is called.
//!
//! Their release builds minus `bench-hello`'s split what the state manager
//! costs (`bench-hello-state` minus `bench-hello`): JSON, the formats of
//! our types, and the rest. The formats are the part no change to the
//! logic can remove.

use gaesup_state_core::decode::read_bounded;
use gaesup_state_core::{MAX_STORED_BYTES, Message, Snapshot, StoredState, to_text};
use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// Mounts the page, whose counter adds `round_trip`'s result per click.
pub fn mount(round_trip: fn(&str) -> usize) {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(move || {
        view! {
            <Router>
                <main>
                    <Routes fallback=|| "Not found.">
                        <Route path=path!("/") view=move || view! { <Counter round_trip /> } />
                    </Routes>
                </main>
            </Router>
        }
    });
}

/// A button adding `round_trip` of the URL fragment to a plain signal.
#[component]
fn Counter(round_trip: fn(&str) -> usize) -> impl IntoView {
    let count = RwSignal::new(0_usize);
    let fragment = || {
        web_sys::window()
            .and_then(|window| window.location().hash().ok())
            .unwrap_or_default()
    };
    view! {
        <button on:click=move |_| count.update(|n| *n += round_trip(&fragment()))>"Count"</button>
        <output>{count}</output>
    }
}

/// `text` parsed as JSON and printed back: the length printed, or 0.
pub fn json(text: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string(&value).ok())
        .map_or(0, |text| text.len())
}

/// `text` decoded as each of the state manager's formats, and what
/// decoded encoded again: the total length encoded.
pub fn codecs(text: &str) -> usize {
    let message = Message::decode(text)
        .ok()
        .and_then(|message| message.encode().ok());
    // As the replica reads a stored key (`replica/load.rs`).
    let stored = read_bounded::<StoredState>(text, MAX_STORED_BYTES, "stored state")
        .ok()
        .filter(|stored| stored.state.validate().is_ok())
        .and_then(|stored| to_text(&stored).ok());
    let snapshot = Snapshot::parse(text)
        .ok()
        .and_then(|snapshot| to_text(&snapshot).ok());
    [message, stored, snapshot]
        .iter()
        .flatten()
        .map(String::len)
        .sum()
}
