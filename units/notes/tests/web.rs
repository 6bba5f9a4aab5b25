//! The notes units in a real browser, inside their containers: two private
//! notes never see each other, the shared note saves only on Save, and a
//! conflict injected by a second replica opens the dialog, whose choice
//! resolves it.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a missing element must fail the test loudly"
)]

use gaesup_state::core::{ManualClock, TabId};
use gaesup_state::{Apartment, Building, StateManager, Unit, UnitAddress};
use gaesup_test_support::settle;
use leptos::prelude::*;
use unit_notes::{PrivateNotes, SharedNote, notes_key, shared_note_key};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{HtmlDialogElement, HtmlElement, HtmlTextAreaElement};

wasm_bindgen_test_configure!(run_in_browser);

fn mount(view: impl Fn() -> AnyView + 'static) -> (web_sys::Element, impl Drop) {
    gaesup_test_support::mount(view)
}

fn field(host: &web_sys::Element, index: u32) -> HtmlTextAreaElement {
    host.query_selector_all("label > textarea")
        .unwrap()
        .get(index)
        .unwrap()
        .unchecked_into()
}

fn type_into(field: &HtmlTextAreaElement, text: &str) {
    field.set_value(text);
    field
        .dispatch_event(&web_sys::Event::new("input").unwrap())
        .unwrap();
}

fn button(host: &web_sys::Element, scope: &str, text: &str) -> HtmlElement {
    let buttons = host.query_selector_all(&format!("{scope} button")).unwrap();
    (0..buttons.length())
        .filter_map(|i| buttons.get(i))
        .map(|node| node.unchecked_into::<HtmlElement>())
        .find(|b| b.text_content().as_deref() == Some(text))
        .unwrap()
}

fn text_of(host: &web_sys::Element, selector: &str) -> String {
    host.query_selector(selector)
        .unwrap()
        .unwrap()
        .text_content()
        .unwrap_or_default()
}

fn dialog(host: &web_sys::Element) -> HtmlDialogElement {
    host.query_selector("dialog")
        .unwrap()
        .unwrap()
        .unchecked_into()
}

#[wasm_bindgen_test]
async fn two_private_notes_are_labelled_and_isolated() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) = owner.with(|| {
        mount(move || {
            view! {
                <Apartment id="notes" manager>
                    <Building id="study">
                        <Unit id="notes-a"><PrivateNotes /></Unit>
                        <Unit id="notes-b"><PrivateNotes /></Unit>
                    </Building>
                </Apartment>
            }
            .into_any()
        })
    });
    settle().await;
    let labels = host.query_selector_all("label > span").unwrap();
    assert_eq!(labels.length(), 2);
    assert_eq!(
        labels.get(0).unwrap().text_content().as_deref(),
        Some("Private notes")
    );

    type_into(&field(&host, 0), "only for a <b>");
    settle().await;
    assert_eq!(field(&host, 0).value(), "only for a <b>");
    assert_eq!(field(&host, 1).value(), "");
    // Saved on input, under the unit's own private key.
    let a: UnitAddress = "notes/study/notes-a".parse().unwrap();
    let b: UnitAddress = "notes/study/notes-b".parse().unwrap();
    let key = notes_key().unwrap();
    owner.with(|| {
        assert_eq!(manager.get(&a, &key).unwrap(), "only for a <b>");
        assert_eq!(manager.get(&b, &key).unwrap(), "");
    });
    // Text stays text.
    assert!(host.query_selector("b").unwrap().is_none());

    type_into(&field(&host, 1), "b's own");
    settle().await;
    assert_eq!(field(&host, 0).value(), "only for a <b>");
    assert_eq!(field(&host, 1).value(), "b's own");
}

#[component]
fn SharedNotePage(manager: StateManager) -> impl IntoView {
    view! {
        <Apartment id="shared" manager>
            <Building id="study">
                <Unit id="shared-note"><SharedNote /></Unit>
            </Building>
        </Apartment>
    }
}

#[wasm_bindgen_test]
async fn the_shared_note_saves_on_save_and_says_who_wrote_it() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) =
        owner.with(|| mount(move || view! { <SharedNotePage manager /> }.into_any()));
    settle().await;
    let unit: UnitAddress = "shared/study/shared-note".parse().unwrap();
    let key = shared_note_key().unwrap();

    type_into(&field(&host, 0), "draft");
    settle().await;
    assert!(text_of(&host, ".shared-note-unsaved").contains("Unsaved changes"));
    owner.with(|| assert_eq!(manager.get(&unit, &key).unwrap(), ""));

    button(&host, ".shared-note-actions", "Save").click();
    settle().await;
    owner.with(|| assert_eq!(manager.get(&unit, &key).unwrap(), "draft"));
    assert_eq!(text_of(&host, ".shared-note-unsaved"), "");
    assert_eq!(
        text_of(&host, ".shared-note-writer"),
        "Current version saved by shared/study/shared-note in this tab."
    );
    assert!(!dialog(&host).open());
}

/// Two replicas save the note concurrently, then exchange their ops, so
/// `here` holds a conflict of "mine" and "theirs".
fn conflict(here: StateManager, other_tab: u64) {
    let key = shared_note_key().unwrap();
    let there = StateManager::new(TabId::new(other_tab), ManualClock::new(1_000));
    there.declare(&key).unwrap();
    let me: UnitAddress = "shared/study/shared-note".parse().unwrap();
    let other: UnitAddress = "shared/desk/shared-note".parse().unwrap();
    let mine = here.set_full(&me, &key, "mine".to_owned()).unwrap();
    let theirs = there
        .set_full(&other, &key, "<i>theirs</i>".to_owned())
        .unwrap();
    here.receive_text(&theirs.message.unwrap().encode().unwrap())
        .unwrap();
    there
        .receive_text(&mine.message.unwrap().encode().unwrap())
        .unwrap();
}

#[wasm_bindgen_test]
async fn a_conflict_opens_the_dialog_and_a_custom_value_resolves_it() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) =
        owner.with(|| mount(move || view! { <SharedNotePage manager /> }.into_any()));
    settle().await;
    assert!(!dialog(&host).open());
    assert_eq!(text_of(&host, ".shared-note-status"), "");

    owner.with(|| conflict(manager, 2));
    settle().await;
    assert!(dialog(&host).open());
    assert_eq!(
        text_of(&host, "dialog h2"),
        "Conflicting edits: Shared note"
    );
    assert_eq!(
        text_of(&host, ".shared-note-status"),
        "2 conflicting versions: choose the one to keep."
    );
    assert!(text_of(&host, ".shared-note-writer").starts_with("Current version saved by shared/"));
    // Both versions shown as text.
    assert!(text_of(&host, "dialog").contains("<i>theirs</i>"));
    assert!(host.query_selector("i").unwrap().is_none());

    // A blank custom value is refused with a message, the dialog stays.
    button(&host, "dialog", "Use custom value").click();
    settle().await;
    assert!(text_of(&host, "dialog [role=alert]").starts_with("Write the note to keep"));
    assert!(dialog(&host).open());

    let custom: HtmlTextAreaElement = host
        .query_selector("dialog textarea")
        .unwrap()
        .unwrap()
        .unchecked_into();
    type_into(&custom, "  both, merged  ");
    button(&host, "dialog", "Use custom value").click();
    settle().await;
    assert!(!dialog(&host).open());
    assert_eq!(field(&host, 0).value(), "both, merged");
    assert_eq!(text_of(&host, ".shared-note-status"), "");
}

#[wasm_bindgen_test]
async fn keeping_the_current_version_resolves_the_conflict() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let (host, _mounted) =
        owner.with(|| mount(move || view! { <SharedNotePage manager /> }.into_any()));
    owner.with(|| conflict(manager, 3));
    settle().await;
    assert!(dialog(&host).open());
    let current = field(&host, 0).value();
    button(&host, "dialog", "Keep current").click();
    settle().await;
    assert!(!dialog(&host).open());
    assert_eq!(field(&host, 0).value(), current);
    let unit: UnitAddress = "shared/study/shared-note".parse().unwrap();
    let open = owner.with(|| {
        manager
            .conflicts(&unit, &shared_note_key().unwrap())
            .unwrap()
    });
    assert!(open.len() < 2);
}
