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
