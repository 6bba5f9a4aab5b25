//! The counter in a real browser, inside its containers: clicks change the
//! rendered count, and two counters of one building share it.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use gaesup_state::{Apartment, Building, Unit};
use leptos::prelude::*;
use leptos::task::tick;
use unit_counter::Counter;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

fn mount(view: impl Fn() -> AnyView + 'static) -> (web_sys::Element, impl Drop) {
    gaesup_test_support::mount(view)
}

fn click(host: &web_sys::Element, selector: &str, index: u32) {
    host.query_selector_all(selector)
        .unwrap()
        .get(index)
        .unwrap()
        .unchecked_into::<HtmlElement>()
        .click();
}

fn shown(host: &web_sys::Element, index: u32) -> String {
    host.query_selector_all("output")
        .unwrap()
        .get(index)
        .unwrap()
        .text_content()
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn buttons_change_the_rendered_count() {
    let (host, _mounted) = mount(|| {
        view! {
            <Apartment id="test">
                <Building id="b">
                    <Unit id="c">
                        <Counter />
                    </Unit>
                </Building>
            </Apartment>
        }
        .into_any()
    });
    assert_eq!(shown(&host, 0), "0");
    click(&host, "button[aria-label=Increment]", 0);
    click(&host, "button[aria-label=Increment]", 0);
    tick().await;
    assert_eq!(shown(&host, 0), "2");

    for _ in 0..3 {
        click(&host, "button[aria-label=Decrement]", 0);
    }
    tick().await;
    assert_eq!(shown(&host, 0), "-1");

    click(&host, "button:not([aria-label])", 0);
    tick().await;
    assert_eq!(shown(&host, 0), "0");
}

#[wasm_bindgen_test]
async fn counters_of_one_building_share_and_other_buildings_do_not() {
    let (host, _mounted) = mount(|| {
        view! {
            <Apartment id="test">
                <Building id="one">
                    <Unit id="a"><Counter /></Unit>
                    <Unit id="b"><Counter /></Unit>
                </Building>
                <Building id="two">
                    <Unit id="a"><Counter /></Unit>
                </Building>
            </Apartment>
        }
        .into_any()
    });
    click(&host, "button[aria-label=Increment]", 0);
    click(&host, "button[aria-label=Increment]", 1);
    tick().await;
    assert_eq!(shown(&host, 0), "2");
    assert_eq!(shown(&host, 1), "2");
    assert_eq!(shown(&host, 2), "0");
}
