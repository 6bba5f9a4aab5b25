//! The theme switcher in a real browser, inside its containers: the radios
//! store the choice, the choice is saved to localStorage under the global
//! key and read back by another apartment, and only `apply_theme` touches
//! `<html>`.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use gaesup_state::core::{ApartmentId, ManualClock, TabId};
use gaesup_state::{Apartment, Building, StateManager, Unit, UnitAddress};
use gaesup_state_web::connect_browser;
use gaesup_test_support::settle;
use leptos::prelude::*;
use unit_theme::{Theme, ThemeSwitcher, apply_theme, theme_key};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{HtmlElement, HtmlInputElement};

wasm_bindgen_test_configure!(run_in_browser);

const STORED: &str = "gaesup/state/global/theme";

fn mount(apartment: &'static str, manager: StateManager) -> (web_sys::Element, impl Drop) {
    gaesup_test_support::mount(move || {
        view! {
            <Apartment id=apartment manager>
                <Building id="settings">
                    <Unit id="theme"><ThemeSwitcher /></Unit>
                </Building>
            </Apartment>
        }
    })
}

fn radio(host: &web_sys::Element, value: &str) -> HtmlInputElement {
    host.query_selector(&format!("input[type=radio][value={value}]"))
        .unwrap()
        .unwrap()
        .unchecked_into()
}

fn checked(host: &web_sys::Element) -> Vec<String> {
    let radios = host.query_selector_all("input[type=radio]").unwrap();
    (0..radios.length())
        .filter_map(|i| radios.get(i))
        .map(|node| node.unchecked_into::<HtmlInputElement>())
        .filter(HtmlInputElement::checked)
        .map(|input| input.value())
        .collect()
}

fn local_storage() -> web_sys::Storage {
    window().local_storage().unwrap().unwrap()
}

fn data_theme() -> Option<String> {
    document()
        .document_element()
        .unwrap()
        .get_attribute("data-theme")
}

#[wasm_bindgen_test]
async fn renders_a_labelled_radio_group_with_system_checked() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount("group", manager));
    settle().await;
    let legend = host.query_selector("fieldset > legend").unwrap().unwrap();
    assert_eq!(legend.text_content().as_deref(), Some("Theme"));
    let labels = host.query_selector_all("fieldset label").unwrap();
    let texts: Vec<String> = (0..labels.length())
        .filter_map(|i| labels.get(i))
        .map(|label| label.text_content().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["System", "Light", "Dark"]);
    // One group: the radios share a name, so the arrow keys move the choice.
    let name = radio(&host, "system").name();
    assert!(!name.is_empty());
    assert!(
        Theme::ALL
            .iter()
            .all(|t| radio(&host, t.as_str()).name() == name)
    );
    assert_eq!(checked(&host), ["system"]);
}

#[wasm_bindgen_test]
async fn picking_stores_the_choice_and_does_not_touch_html() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount("pick", manager));
    apply_theme(Theme::System);
    settle().await;

    radio(&host, "dark").unchecked_into::<HtmlElement>().click();
    settle().await;
    assert_eq!(checked(&host), ["dark"]);
    let unit: UnitAddress = "pick/settings/theme".parse().unwrap();
    let stored = owner.with(|| manager.get(&unit, &theme_key().unwrap()).unwrap());
    assert_eq!(stored, Theme::Dark);
    assert_eq!(data_theme(), None, "the switcher must not apply the theme");

    // A write from elsewhere (another tab, another unit) moves the radios.
    let other: UnitAddress = "pick/elsewhere/theme".parse().unwrap();
    owner.with(|| {
        manager
            .set(&other, &theme_key().unwrap(), Theme::Light)
            .unwrap()
    });
    settle().await;
    assert_eq!(checked(&host), ["light"]);
}

#[wasm_bindgen_test]
fn apply_theme_sets_and_removes_the_attribute() {
    apply_theme(Theme::Dark);
    assert_eq!(data_theme().as_deref(), Some("dark"));
    apply_theme(Theme::Light);
    assert_eq!(data_theme().as_deref(), Some("light"));
    apply_theme(Theme::System);
    assert_eq!(data_theme(), None);
}

#[wasm_bindgen_test]
async fn the_choice_is_saved_and_another_apartment_reads_it() {
    local_storage().remove_item(STORED).unwrap();
    let owner = Owner::new();
    let (manager, sync) = owner.with(|| {
        let manager = StateManager::new(TabId::new(1), ManualClock::new(1_000));
        let apartment = ApartmentId::new("theme-main").unwrap();
        let sync = connect_browser(manager, &apartment).unwrap();
        (manager, sync)
    });
    let (host, _mounted) = owner.with(|| mount("theme-main", manager));
    settle().await;
    radio(&host, "dark").unchecked_into::<HtmlElement>().click();
    settle().await;
    sync.flush_now();
    let stored = local_storage().get_item(STORED).unwrap().unwrap();
    assert!(stored.contains("\"dark\""), "stored: {stored}");

    // A second apartment (its own manager, its own channel) loads the
    // global key from storage when its switcher declares it.
    let annex_owner = Owner::new();
    let (annex, _annex_sync) = annex_owner.with(|| {
        let manager = StateManager::new(TabId::new(2), ManualClock::new(2_000));
        let apartment = ApartmentId::new("theme-annex").unwrap();
        let sync = connect_browser(manager, &apartment).unwrap();
        (manager, sync)
    });
    let (annex_host, _annex_mounted) = annex_owner.with(|| mount("theme-annex", annex));
    settle().await;
    assert_eq!(checked(&annex_host), ["dark"]);
    local_storage().remove_item(STORED).unwrap();
}
