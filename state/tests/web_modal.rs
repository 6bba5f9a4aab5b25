//! The conflict modal in a real browser: it opens on a conflict, is a
//! labelled modal dialog, and each choice resolves the conflict.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]

use gaesup_state::core::{ManualClock, TabId};
use gaesup_state::prelude::*;
use gaesup_state::{ConflictModal, StateManager, UnitAddress};
use gaesup_test_support::settle;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{HtmlDialogElement, HtmlElement};

wasm_bindgen_test_configure!(run_in_browser);

fn note_key() -> SharedKey<String> {
    SharedKey::<String>::builder("note")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::UserResolve)
        .build()
        .unwrap()
}

/// Two replicas write the note concurrently, then exchange their ops, so
/// `here` holds a conflict of "mine" and "theirs".
fn conflict(here: StateManager, other_tab: u64) {
    let there = StateManager::new(TabId::new(other_tab), ManualClock::new(1_000));
    there.declare(&note_key()).unwrap();
    let me: UnitAddress = "m/b/note".parse().unwrap();
    let other: UnitAddress = "m/c/note".parse().unwrap();
    let mine = here.set_full(&me, &note_key(), "mine".to_owned()).unwrap();
    let theirs = there
        .set_full(&other, &note_key(), "<b>theirs</b>".to_owned())
        .unwrap();
    here.receive_text(&theirs.message.unwrap().encode().unwrap())
        .unwrap();
    there
        .receive_text(&mine.message.unwrap().encode().unwrap())
        .unwrap();
}

#[component]
fn Note() -> impl IntoView {
    let note = use_shared_state(&note_key());
    view! {
        <p class="note">{note.value}</p>
        <ConflictModal
            conflicts=note.conflicts
            set=note.set
            label="Shared note"
            format=|text: &String| text.clone()
            parse=|text: &str| {
                if text.trim().is_empty() { Err("write something".to_owned()) } else { Ok(text.to_owned()) }
            }
        />
    }
}

fn mount(manager: StateManager) -> (web_sys::Element, impl Drop) {
    gaesup_test_support::mount(move || {
        view! {
            <Apartment id="m" manager>
                <Building id="b">
                    <Unit id="note"><Note /></Unit>
                </Building>
            </Apartment>
        }
    })
}

fn dialog(host: &web_sys::Element) -> HtmlDialogElement {
    host.query_selector("dialog")
        .unwrap()
        .unwrap()
        .unchecked_into()
}

fn button(host: &web_sys::Element, text: &str) -> HtmlElement {
    let buttons = host.query_selector_all("dialog button").unwrap();
    (0..buttons.length())
        .filter_map(|i| buttons.get(i))
        .map(|node| node.unchecked_into::<HtmlElement>())
        .find(|b| b.text_content().as_deref() == Some(text))
        .unwrap()
}

#[wasm_bindgen_test]
async fn opens_labelled_on_conflict_and_keeps_current() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    settle().await;
    assert!(!dialog(&host).open(), "no conflict, no dialog");

    owner.with(|| conflict(manager, 2));
    settle().await;
    let dialog = dialog(&host);
    assert!(dialog.open());
    let title = document()
        .get_element_by_id("conflict-modal-title")
        .unwrap();
    assert_eq!(
        dialog.get_attribute("aria-labelledby").as_deref(),
        Some("conflict-modal-title")
    );
    assert_eq!(
        title.text_content().as_deref(),
        Some("Conflicting edits: Shared note")
    );
    // Values are text: the markup in "theirs" is shown, not parsed.
    assert!(host.query_selector("dialog b").unwrap().is_none());
    assert!(dialog.text_content().unwrap().contains("<b>theirs</b>"));

    let current = host
        .query_selector(".note")
        .unwrap()
        .unwrap()
        .text_content()
        .unwrap();
    button(&host, "Keep current").click();
    settle().await;
    assert!(!dialog.open());
    assert_eq!(
        host.query_selector(".note")
            .unwrap()
            .unwrap()
            .text_content()
            .unwrap(),
        current
    );
}

#[wasm_bindgen_test]
async fn custom_value_is_validated_then_resolves() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    owner.with(|| conflict(manager, 2));
    settle().await;
    button(&host, "Use custom value").click();
    settle().await;
    let alert = host.query_selector("dialog [role=alert]").unwrap().unwrap();
    assert_eq!(alert.text_content().as_deref(), Some("write something"));
    assert!(dialog(&host).open());

    let field: web_sys::HtmlTextAreaElement = host
        .query_selector("dialog textarea")
        .unwrap()
        .unwrap()
        .unchecked_into();
    field.set_value("both, merged");
    field
        .dispatch_event(&web_sys::Event::new("input").unwrap())
        .unwrap();
    button(&host, "Use custom value").click();
    settle().await;
    assert!(!dialog(&host).open());
    assert_eq!(
        host.query_selector(".note")
            .unwrap()
            .unwrap()
            .text_content()
            .as_deref(),
        Some("both, merged")
    );
}

#[wasm_bindgen_test]
async fn deciding_later_closes_until_the_conflict_changes() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| mount(manager));
    owner.with(|| conflict(manager, 2));
    settle().await;
    button(&host, "Decide later").click();
    settle().await;
    assert!(!dialog(&host).open());

    // A third tab joins the quarrel: a different conflict opens it again.
    owner.with(|| conflict(manager, 3));
    settle().await;
    assert!(dialog(&host).open());
}
