//! Helpers shared by the browser tests (wasm-bindgen-test in Chromium) of
//! the state crate, the units and the app.
//!
//! Every such test mounts a view into the real page, acts on it, and waits
//! for Leptos to run what the action scheduled. Written once here, each
//! test file keeps only what is its own: the view it mounts and what it
//! checks.
//!
//! ```ignore
//! use gaesup_test_support::{mount, settle};
//!
//! let (host, _unmount) = mount(|| view! { <p>"hello"</p> });
//! settle().await;
//! assert_eq!(host.text_content().as_deref(), Some("hello"));
//! ```
//!
//! Empty outside wasm32: there is no page to mount into.
#![cfg(target_arch = "wasm32")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(
    clippy::expect_used,
    reason = "test support: a page without a body must fail the test loudly"
)]

use leptos::mount::mount_to;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// Mounts `view` in a fresh `<section>` appended to the page's body.
/// Returns the section (to query) and the handle that unmounts the view
/// when dropped.
///
/// # Panics
///
/// When the page has no body: a test environment fault, not a case to
/// handle.
pub fn mount<F, V>(view: F) -> (web_sys::Element, impl Drop)
where
    F: FnOnce() -> V + 'static,
    V: IntoView + 'static,
{
    let document = document();
    let host = document
        .create_element("section")
        .expect("the page can create a section");
    document
        .body()
        .expect("the test page has a body")
        .append_child(&host)
        .expect("a new section can be appended to the body");
    let handle = mount_to(host.clone().unchecked_into(), view);
    (host, handle)
}

/// Lets Leptos run what the last action scheduled (effects, spawned
/// tasks): three turns of its executor.
pub async fn settle() {
    for _ in 0..3 {
        leptos::task::tick().await;
    }
}
