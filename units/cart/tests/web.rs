//! The cart in a real browser, next to the catalog in another building of
//! the same apartment: what the catalog adds shows here, the −/+/Remove
//! buttons and "Empty cart" change it, the total follows, and a product
//! added concurrently in another tab is merged in.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use gaesup_state::core::{ManualClock, Message, TabId};
use gaesup_state::{Apartment, Building, StateManager, Unit, UnitAddress};
use gaesup_test_support::settle;
use leptos::prelude::*;
use unit_cart::{Cart, CartLines, cart_key};
use unit_catalog::Catalog;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

fn mount(manager: StateManager) -> (web_sys::Element, impl Drop) {
    gaesup_test_support::mount(move || {
        view! {
            <Apartment id="main" manager>
                <Building id="shop">
                    <Unit id="catalog"><Catalog /></Unit>
                </Building>
                <Building id="checkout">
                    <Unit id="cart"><Cart /></Unit>
                </Building>
            </Apartment>
        }
    })
}

fn by_label(host: &web_sys::Element, selector: &str, label: &str) -> Option<HtmlElement> {
    host.query_selector(&format!("{selector}[aria-label=\"{label}\"]"))
        .unwrap()
        .map(JsCast::unchecked_into)
}

fn click(host: &web_sys::Element, label: &str) {
    by_label(host, "button", label).unwrap().click();
}

fn shown(host: &web_sys::Element, label: &str) -> Option<String> {
    by_label(host, "output", label).map(|o| o.text_content().unwrap_or_default())
}

fn empty_cart_button(host: &web_sys::Element) -> web_sys::HtmlButtonElement {
    let buttons = host.query_selector_all(".cart button").unwrap();
    (0..buttons.length())
        .filter_map(|i| buttons.get(i))
        .map(JsCast::unchecked_into::<web_sys::HtmlButtonElement>)
        .find(|b| b.text_content().as_deref() == Some("Empty cart"))
        .unwrap()
}

fn is_empty_shown(host: &web_sys::Element) -> bool {
    host.query_selector(".cart-empty")
        .unwrap()
        .is_some_and(|p| p.text_content().as_deref() == Some("Your cart is empty."))
}

#[wasm_bindgen_test]
async fn the_cart_shows_what_the_catalog_adds_and_changes_it() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    settle().await;
    assert!(is_empty_shown(&host));
    assert_eq!(shown(&host, "Cart total").as_deref(), Some("$0.00"));
    assert!(empty_cart_button(&host).disabled());

    click(&host, "Add Green tea to cart");
    click(&host, "Add Mug to cart");
    click(&host, "Add Green tea to cart");
    settle().await;
    assert!(!is_empty_shown(&host));
    assert_eq!(shown(&host, "Green tea quantity").as_deref(), Some("2"));
    assert_eq!(shown(&host, "Mug quantity").as_deref(), Some("1"));
    assert_eq!(shown(&host, "Cart total").as_deref(), Some("$21.00"));

    // + and − keep the focused line in place (keyed by product).
    let plus = by_label(&host, "button", "Add one Mug").unwrap();
    plus.focus().unwrap();
    plus.click();
    settle().await;
    assert_eq!(shown(&host, "Mug quantity").as_deref(), Some("2"));
    assert_eq!(shown(&host, "Mug in cart").as_deref(), Some("2"));
    assert_eq!(
        document()
            .active_element()
            .map(|e| e.get_attribute("aria-label")),
        Some(Some("Add one Mug".to_owned()))
    );

    click(&host, "Remove one Green tea");
    click(&host, "Remove one Green tea");
    settle().await;
    assert_eq!(
        shown(&host, "Green tea quantity"),
        None,
        "quantity 0 removes the line"
    );
    assert_eq!(shown(&host, "Green tea in cart").as_deref(), Some("0"));
    assert_eq!(shown(&host, "Cart total").as_deref(), Some("$24.00"));

    click(&host, "Add Teapot to cart");
    settle().await;
    click(&host, "Remove Mug");
    settle().await;
    assert_eq!(shown(&host, "Mug quantity"), None);
    assert_eq!(shown(&host, "Cart total").as_deref(), Some("$34.00"));

    empty_cart_button(&host).click();
    settle().await;
    assert!(is_empty_shown(&host));
    assert_eq!(shown(&host, "Cart total").as_deref(), Some("$0.00"));
    assert_eq!(shown(&host, "Teapot in cart").as_deref(), Some("0"));
}

#[wasm_bindgen_test]
async fn a_product_added_in_another_tab_at_the_same_time_is_kept() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    settle().await;

    // Another tab adds a mug before it hears of this tab's tea; this
    // tab's messages reach it, its own mug arrives here late.
    let (there, theirs) = owner.with(|| {
        let there = StateManager::new(TabId::new(2), ManualClock::new(1_000));
        let key = unit_catalog::cart_key().unwrap();
        there.declare(&key).unwrap();
        let catalog: UnitAddress = "main/shop/catalog".parse().unwrap();
        let mut lines = unit_catalog::CartLines::new();
        unit_catalog::add_to_cart(&mut lines, &unit_catalog::PRODUCTS[1]);
        let theirs = there.set_full(&catalog, &key, lines).unwrap();
        manager
            .connect(move |message: &Message| {
                there.receive_text(&message.encode().unwrap()).unwrap();
                Ok(())
            })
            .unwrap();
        (there, theirs)
    });
    click(&host, "Add Green tea to cart");
    settle().await;
    assert_eq!(shown(&host, "Mug quantity"), None);
    owner.with(|| {
        manager
            .receive_text(&theirs.message.unwrap().encode().unwrap())
            .unwrap();
    });
    settle().await;
    assert_eq!(shown(&host, "Green tea quantity").as_deref(), Some("1"));
    assert_eq!(shown(&host, "Mug quantity").as_deref(), Some("1"));
    assert_eq!(shown(&host, "Cart total").as_deref(), Some("$16.50"));

    // Both tabs end with the same cart.
    let cart: UnitAddress = "main/checkout/cart".parse().unwrap();
    let key = cart_key().unwrap();
    owner.with(|| {
        let here: CartLines = manager.get(&cart, &key).unwrap();
        assert_eq!(here.len(), 2);
        assert_eq!(there.get(&cart, &key).unwrap(), here);
    });
}
