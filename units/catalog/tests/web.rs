//! The catalog in a real browser, inside its containers: each product has
//! a named "Add to cart" button, and the counts follow the apartment's cart.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use gaesup_state::core::{ManualClock, TabId};
use gaesup_state::{Apartment, Building, StateManager, Unit, UnitAddress};
use gaesup_test_support::settle;
use leptos::prelude::*;
use unit_catalog::{CartLines, Catalog, PRODUCTS, cart_key};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

fn mount(manager: StateManager) -> (web_sys::Element, impl Drop) {
    gaesup_test_support::mount(move || {
        view! {
            <Apartment id="catalog" manager>
                <Building id="shop">
                    <Unit id="catalog"><Catalog /></Unit>
                </Building>
            </Apartment>
        }
    })
}

fn by_label(host: &web_sys::Element, selector: &str, label: &str) -> HtmlElement {
    host.query_selector(&format!("{selector}[aria-label=\"{label}\"]"))
        .unwrap()
        .unwrap()
        .unchecked_into()
}

fn in_cart(host: &web_sys::Element, name: &str) -> String {
    by_label(host, "output", &format!("{name} in cart"))
        .text_content()
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn every_product_has_a_named_add_button_and_a_count() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    settle().await;
    for product in PRODUCTS {
        let add = by_label(&host, "button", &format!("Add {} to cart", product.name));
        assert_eq!(add.get_attribute("type").as_deref(), Some("button"));
        assert_eq!(in_cart(&host, product.name), "0");
    }
}

#[wasm_bindgen_test]
async fn adding_fills_the_apartment_cart_and_counts_follow_it() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    settle().await;
    by_label(&host, "button", "Add Mug to cart").click();
    by_label(&host, "button", "Add Mug to cart").click();
    by_label(&host, "button", "Add Green tea to cart").click();
    settle().await;
    assert_eq!(in_cart(&host, "Mug"), "2");
    assert_eq!(in_cart(&host, "Green tea"), "1");
    assert_eq!(in_cart(&host, "Teapot"), "0");

    // The cart unit lives in another building of the same apartment.
    let cart: UnitAddress = "catalog/checkout/cart".parse().unwrap();
    let key = cart_key().unwrap();
    let lines = owner.with(|| manager.get(&cart, &key).unwrap());
    assert_eq!(lines.get("mug"), Some(&("Mug".to_owned(), 1200, 2)));

    // A change made there (the cart emptied) shows here.
    owner.with(|| manager.set(&cart, &key, CartLines::new()).unwrap());
    settle().await;
    assert_eq!(in_cart(&host, "Mug"), "0");
}
