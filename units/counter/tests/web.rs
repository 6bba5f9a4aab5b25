//! The counter in a real browser: clicks change the rendered count.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use leptos::mount::mount_to;
use leptos::prelude::*;
use leptos::task::tick;
use unit_counter::Counter;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

fn mount(initial: i64) -> (web_sys::Element, impl Drop) {
    let document = document();
    let host = document.create_element("section").unwrap();
    document.body().unwrap().append_child(&host).unwrap();
    let handle = mount_to(host.clone().unchecked_into(), move || {
        view! { <Counter initial=initial /> }
    });
    (host, handle)
}

fn button(host: &web_sys::Element, selector: &str) -> HtmlElement {
    host.query_selector(selector)
        .unwrap()
        .unwrap()
        .unchecked_into::<HtmlElement>()
}

fn shown(host: &web_sys::Element) -> String {
    host.query_selector("output")
        .unwrap()
        .unwrap()
        .text_content()
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn starts_at_initial_value() {
    let (host, _mounted) = mount(7);
    assert_eq!(shown(&host), "7");
}

#[wasm_bindgen_test]
async fn buttons_change_the_rendered_count() {
    let (host, _mounted) = mount(0);
    let inc = button(&host, "button[aria-label=Increment]");
    let dec = button(&host, "button[aria-label=Decrement]");

    inc.click();
    inc.click();
    tick().await;
    assert_eq!(shown(&host), "2");

    dec.click();
    dec.click();
    dec.click();
    tick().await;
    assert_eq!(shown(&host), "-1");

    button(&host, "button:not([aria-label])").click();
    tick().await;
    assert_eq!(shown(&host), "0");
}
