//! An invalid manifest in a real browser: the app shows an error page that
//! names the problem, never a blank screen or a panic.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use gaesup_app::AppFrom;
use leptos::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Mounts the app on `manifest` and returns (heading, alert) texts.
fn shown(manifest: &'static str) -> (String, String) {
    let (host, handle) = gaesup_test_support::mount(move || view! { <AppFrom manifest /> });
    let text = |selector: &str| {
        host.query_selector(selector)
            .unwrap()
            .and_then(|e| e.text_content())
            .unwrap_or_default()
    };
    let result = (text("h1"), text("[role=alert]"));
    drop(handle);
    host.remove();
    result
}

#[wasm_bindgen_test]
fn each_invalid_manifest_names_its_problem() {
    for (manifest, expected) in [
        ("{\"apartments\": [", "manifest is not valid: EOF"),
        (r#"{"apartments":[]}"#, "manifest lists no apartment"),
        (
            r#"{"apartments":[{"id":"a","title":"A","buildings":[{"id":"b","title":"B","units":[
                {"id":"u","kind":"rocket","title":"U","version":"1"}]}]}]}"#,
            r#"unit "a/b/u" has unknown kind "rocket""#,
        ),
        (
            r#"{"apartments":[{"id":"a/..","title":"A","buildings":[]}]}"#,
            r#"apartment id "a/.." is invalid"#,
        ),
        (
            r#"{"apartments":[{"id":"a","title":"A","buildings":[{"id":"b","title":"B","units":[
                {"id":"u","kind":"counter","title":"U","version":"1"},
                {"id":"u","kind":"counter","title":"U","version":"2"}]}]}]}"#,
            r#"unit "a/b/u" is offered in versions 1, 2 but "active" names none of them"#,
        ),
    ] {
        let (heading, alert) = shown(manifest);
        assert_eq!(heading, "The manifest is invalid");
        assert!(
            alert.contains(expected),
            "{alert:?} should contain {expected:?}"
        );
    }
}

#[wasm_bindgen_test]
fn a_hostile_manifest_is_shown_as_text() {
    let (_, alert) = shown(
        r#"{"apartments":[{"id":"<img src=x onerror=alert(1)>","title":"A","buildings":[]}]}"#,
    );
    assert!(alert.contains("<img src=x onerror=alert(1)>"), "{alert}");
    assert!(document().query_selector("img").unwrap().is_none());
}

/// Runs `body` as a JavaScript function of no arguments.
fn js(body: &str) -> wasm_bindgen::JsValue {
    js_sys::Function::new_no_args(body)
        .call0(&wasm_bindgen::JsValue::NULL)
        .unwrap()
}

/// A JavaScript unit that starts on `gaesup:ready` reads what storage
/// holds: the event fires once storage and the other tabs are attached,
/// not before (where a persistent key still held its default, and a
/// read-then-write from it would overwrite what was stored).
#[wasm_bindgen_test]
async fn gaesup_ready_fires_once_storage_is_attached() {
    const MANIFEST: &str = include_str!("../src/manifest.json");
    web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .clear()
        .unwrap();
    // A first page stores a count of 5 for the lobby.
    let (host, handle) = gaesup_test_support::mount(|| view! { <AppFrom manifest=MANIFEST /> });
    js("window.gaesup.unit('main/lobby/counter').increment('count', 5)");
    let stored = || {
        js("return Object.keys(localStorage).some((key) => key.includes('main/lobby/count'))")
            .as_bool()
            .unwrap_or(false)
    };
    for _ in 0..500 {
        if stored() {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(10).await;
    }
    assert!(stored(), "the count was never saved");
    drop(handle);
    host.remove();

    // The next start: a unit listening for gaesup:ready reads at once.
    js(
        "window.__readAtReady = null; window.addEventListener('gaesup:ready', () => { \
        window.__readAtReady = window.gaesup.unit('main/lobby/counter').get('count'); }, { once: true })",
    );
    let (host, handle) = gaesup_test_support::mount(|| view! { <AppFrom manifest=MANIFEST /> });
    let read = js("return window.__readAtReady");
    drop(handle);
    host.remove();
    assert_eq!(read.as_f64(), Some(5.0), "read at gaesup:ready: {read:?}");
}
