//! What needs the browser's task queue: optimistic writes, and the system
//! clock's one reading per task.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]

use futures_channel::oneshot;
use gaesup_state::core::Clock;
use gaesup_state::core::{ManualClock, TabId};
use gaesup_state::prelude::*;
use gaesup_state::{StateManager, SystemClock, UnitAddress, UnitContext, UseSharedStateReturn};
use leptos::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Persistent: only such state goes to a relay, so only its writes can
/// wait for one's confirmation.
fn title() -> SharedKey<String> {
    SharedKey::<String>::builder("title")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap()
}

fn hook(owner: &Owner, manager: StateManager, address: &str) -> UseSharedStateReturn<String> {
    let address: UnitAddress = address.parse().unwrap();
    owner.with(|| {
        provide_context(UnitContext { address, manager });
        use_shared_state(&title())
    })
}

/// Lets queued microtasks run (the confirmations are spawned on
/// wasm-bindgen's queue; these tests mount no app, so Leptos's own tick,
/// which needs its executor, is not used).
async fn settle() {
    for _ in 0..3 {
        let ready = js_sys::Promise::resolve(&wasm_bindgen::JsValue::UNDEFINED);
        let _ = wasm_bindgen_futures::JsFuture::from(ready).await;
    }
}

#[wasm_bindgen_test]
async fn optimistic_write_shows_at_once_and_rolls_back_on_rejection() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let state = hook(&owner, manager, "a/b/u");
    state.set.set("saved".to_owned());

    let (reject, confirmation) = oneshot::channel::<Result<(), String>>();
    owner.with(|| {
        state.set.set_optimistic("draft".to_owned(), async move {
            confirmation.await.unwrap_or(Err("dropped".to_owned()))
        });
    });
    assert_eq!(state.value.get_untracked(), "draft", "shown at once");
    assert!(state.meta.pending.get_untracked());

    reject.send(Err("server said no".to_owned())).unwrap();
    settle().await;
    assert!(!state.meta.pending.get_untracked());
    assert_eq!(state.value.get_untracked(), "saved", "rolled back");
    let error = state.meta.error.get_untracked().unwrap();
    assert_eq!(error.code(), "rejected");
    assert!(error.to_string().contains("server said no"));
}

#[wasm_bindgen_test]
async fn rollback_spares_a_write_made_while_waiting() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let mine = hook(&owner, manager, "a/b/u");
    let other = hook(&owner, manager, "a/c/v");
    mine.set.set("saved".to_owned());

    let (reject, confirmation) = oneshot::channel::<Result<(), String>>();
    owner.with(|| {
        mine.set.set_optimistic("draft".to_owned(), async move {
            confirmation.await.unwrap_or(Err("dropped".to_owned()))
        });
    });
    other.set.set("someone else's".to_owned());
    reject.send(Err("no".to_owned())).unwrap();
    settle().await;
    assert_eq!(mine.value.get_untracked(), "someone else's");
}

/// A refused write is rolled back even when the component that made it
/// is gone by the time the answer comes (the user saved, then navigated
/// away). Before, the rollback looked the key up through the component's
/// handle, found it disposed, and kept the refused value: saved, and sent
/// to the other tabs.
#[wasm_bindgen_test]
async fn a_refused_write_is_rolled_back_after_its_component_is_gone() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let component = owner.with(Owner::new);
    let state = hook(&component, manager, "a/b/u");
    state.set.set("saved".to_owned());
    let (reject, confirmation) = oneshot::channel::<Result<(), String>>();
    component.with(|| {
        state.set.set_optimistic("draft".to_owned(), async move {
            confirmation.await.unwrap_or(Err("dropped".to_owned()))
        });
    });
    let unit: UnitAddress = "a/b/u".parse().unwrap();
    assert_eq!(manager.get(&unit, &title()).unwrap(), "draft");
    component.cleanup();
    reject.send(Err("server said no".to_owned())).unwrap();
    settle().await;
    assert_eq!(
        manager.get(&unit, &title()).unwrap(),
        "saved",
        "rolled back"
    );
}

#[wasm_bindgen_test]
async fn confirmed_write_stays() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    let state = hook(&owner, manager, "a/b/u");
    owner.with(|| {
        state
            .set
            .set_optimistic("kept".to_owned(), async { Ok(()) });
    });
    settle().await;
    assert!(!state.meta.pending.get_untracked());
    assert_eq!(state.value.get_untracked(), "kept");
    assert!(state.meta.error.get_untracked().is_none());
}

#[wasm_bindgen_test]
async fn the_system_clock_reads_afresh_once_the_task_ends() {
    // Whatever an earlier test read is forgotten by now.
    settle().await;
    let first = SystemClock.now_ms();
    // Spin on Date.now() itself (not the clock under test) until the wall
    // clock has moved on.
    while (js_sys::Date::now() as u64) <= first {}
    assert_eq!(SystemClock.now_ms(), first, "one reading serves the task");
    settle().await;
    assert!(SystemClock.now_ms() > first, "the next task reads afresh");
}

#[wasm_bindgen_test]
async fn a_confirmed_write_nobody_will_answer_is_kept_and_says_unconfirmed() {
    let owner = Owner::new();
    let manager = owner.with(|| StateManager::new(TabId::new(1), ManualClock::new(1_000)));
    manager.enable_confirmations().unwrap();
    let state = hook(&owner, manager, "a/b/u");
    owner.with(|| state.set.set_confirmed("sent".to_owned()).unwrap());
    assert!(state.meta.pending.get_untracked());
    // 10,000 other writes wait after it: the oldest waiter, this one, is
    // told nobody will say.
    // Of a key another tab wrote (undeclared here: it may go to a relay).
    let elsewhere: gaesup_state::core::FullKey = "global/elsewhere".parse().unwrap();
    let others: Vec<_> = (0..10_000u64)
        .map(|seq| {
            let op = gaesup_state::core::OpId {
                tab: TabId::new(99),
                seq,
            };
            manager.confirmation(op, &elsewhere).unwrap()
        })
        .collect();
    settle().await;
    assert!(!state.meta.pending.get_untracked());
    assert_eq!(state.value.get_untracked(), "sent", "kept");
    let error = state.meta.error.get_untracked().unwrap();
    assert_eq!(error.code(), "unconfirmed", "{error}");
    drop(others);
}
