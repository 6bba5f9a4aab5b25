//! The browser adapters in headless Chromium: storage mapping (including a
//! real `QuotaExceededError`), both transports, and `connect_browser` end
//! to end with two managers in one page.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]
#![allow(clippy::expect_used, reason = "tests: a failure should fail loudly")]

use std::cell::RefCell;
use std::rc::Rc;

use gaesup_state::core::{
    FaultyStorage, MemoryStorage, Replica, STATE_PREFIX, Storage as _, StorageError, TabId,
    Transport as _,
};
use gaesup_state::{Lifetime, Scope, SharedKey, StateManager, SystemClock, UnitAddress};
use gaesup_state_web::{
    BroadcastTransport, BrowserStorage, ConnectOptions, StorageArea, StorageEventTransport,
    TransportChoice, TransportKind, WebSync, channel_name, connect_browser,
    connect_browser_with_options,
};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn window() -> web_sys::Window {
    web_sys::window().unwrap()
}

fn local() -> web_sys::Storage {
    window().local_storage().unwrap().unwrap()
}

/// Every test starts from empty storages.
fn clean() {
    local().clear().unwrap();
    window()
        .session_storage()
        .unwrap()
        .unwrap()
        .clear()
        .unwrap();
}

/// Waits for `condition` between macrotasks (messages and storage events
/// are tasks), failing after about two seconds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        TimeoutFuture::new(10).await;
    }
    panic!("timed out waiting for {what}");
}

/// Lets pending tasks run, for asserting that something did *not* happen
/// after a positive condition already proved delivery works.
async fn settle() {
    for _ in 0..5 {
        TimeoutFuture::new(10).await;
    }
}

/// A loaded `srcdoc` iframe: a separate document of the same origin
/// sharing localStorage, so it stands in for another tab (storage events go
/// to every document except the writer's).
async fn same_origin_frame() -> web_sys::HtmlIFrameElement {
    let document = window().document().unwrap();
    let frame: web_sys::HtmlIFrameElement =
        document.create_element("iframe").unwrap().unchecked_into();
    frame.set_srcdoc("<!doctype html><title>other tab</title>");
    let loaded = Rc::new(std::cell::Cell::new(false));
    let flag = Rc::clone(&loaded);
    let _on_load = gloo_events::EventListener::once(&frame, "load", move |_| flag.set(true));
    document.body().unwrap().append_child(&frame).unwrap();
    wait_until("the iframe to load", || loaded.get()).await;
    frame
}

fn greeting() -> SharedKey<String> {
    SharedKey::builder("greeting")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap()
}

fn unit(address: &str) -> UnitAddress {
    address.parse().unwrap()
}

fn manager(tab: u64) -> StateManager {
    StateManager::new(TabId::new(tab), SystemClock)
}

/// The localStorage key holding `key` for `unit`.
fn storage_key(manager: StateManager, unit: &UnitAddress, key: &SharedKey<String>) -> String {
    let full = manager
        .with_replica(|replica| replica.subscribe(unit, key))
        .unwrap()
        .unwrap();
    Replica::storage_key(&full)
}

fn collector() -> (Rc<RefCell<Vec<String>>>, impl Fn(String) + 'static) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&seen);
    (seen, move |text| sink.borrow_mut().push(text))
}

#[wasm_bindgen_test]
fn browser_storage_round_trips_lists_and_removes() {
    clean();
    for mut storage in [
        BrowserStorage::local().unwrap(),
        BrowserStorage::session().unwrap(),
    ] {
        assert_eq!(storage.get("a").unwrap(), None);
        storage.set("a", "1").unwrap();
        storage.set("b", "é✓").unwrap();
        storage.set("a", "one").unwrap();
        assert_eq!(storage.get("a").unwrap().as_deref(), Some("one"));
        assert_eq!(storage.get("b").unwrap().as_deref(), Some("é✓"));
        let mut keys = storage.keys().unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        // Keys plus values in UTF-16 units, two bytes each: "a"+"one",
        // "b"+"é✓".
        assert_eq!(storage.quota_used().unwrap(), (1 + 3 + 1 + 2) * 2);
        storage.remove("a").unwrap();
        storage.remove("missing").unwrap();
        assert_eq!(storage.get("a").unwrap(), None);
        assert_eq!(storage.keys().unwrap(), ["b"]);
    }
    // The two areas are separate.
    assert_eq!(local().length().unwrap(), 1);
    clean();
}

#[wasm_bindgen_test]
async fn full_local_storage_maps_to_quota_exceeded_and_a_notice() {
    clean();
    let mut storage = BrowserStorage::local().unwrap();
    // 1 Mi UTF-16 units (2 MiB) per entry: Chromium's 10 MiB (5 Mi units)
    // per-origin quota is reached within a handful of writes; 32 bounds the
    // loop should an engine allow far more.
    // Fill in halving chunks: 1 Mi UTF-16 units (2 MiB) first, which
    // reaches Chromium's per-origin quota (about 5 Mi units) within a
    // handful of writes, then smaller ones until even 1 Ki units no longer
    // fit. At most 32 + 10 writes, so the loop stays bounded whatever an
    // engine allows.
    let started = js_sys::Date::now();
    let mut size = 1usize << 20;
    let mut first_failure = None;
    let mut writes = 0;
    while size >= 1 << 10 && writes < 42 {
        writes += 1;
        match storage.set(&format!("fill/{writes}"), &"x".repeat(size)) {
            Ok(()) => {}
            Err(err) => {
                first_failure.get_or_insert(err);
                size /= 2;
            }
        }
    }
    assert_eq!(first_failure, Some(StorageError::QuotaExceeded));
    // Full now: even a small write fails the same way, and reads still work.
    assert_eq!(
        storage.set("one-more", &"y".repeat(1 << 10)),
        Err(StorageError::QuotaExceeded)
    );
    let used = storage.quota_used().unwrap();
    assert!(used > 4 << 20, "{used} bytes");
    assert_eq!(
        storage.get("fill/1").unwrap().map(|v| v.len()),
        Some(1 << 20)
    );
    console_log!(
        "quota reached at {used} bytes after {writes} writes in {} ms",
        js_sys::Date::now() - started
    );

    // The storage-event fallback cannot post to other tabs now, but the
    // other transports of this page still hear it (that takes no room).
    let (seen, sink) = collector();
    let sender = StorageEventTransport::open("gaesup/bus-full", |_| {}).unwrap();
    let _peer = StorageEventTransport::open("gaesup/bus-full", sink).unwrap();
    assert!(sender.send_text(&"z".repeat(1 << 12)).is_err());
    wait_until("the page's peer to hear it", || seen.borrow().len() == 1).await;

    // A manager saving into the full storage says which key could not be
    // saved, and saves it once there is room again.
    let owner = Owner::new();
    let (state, sync) = unlinked(&owner, "quota");
    let writer = unit("quota/lobby/a");
    state
        .set(&writer, &greeting(), "y".repeat(4 << 10))
        .unwrap();
    let status = sync.status();
    wait_until("the full storage to be noticed", || {
        status.notices.get_untracked()
            == [
                "Could not save apartment/quota/greeting: browser storage is full. \
                 The value is kept in this tab and saving is retried on the next change.",
            ]
    })
    .await;
    for index in 1..=writes {
        storage.remove(&format!("fill/{index}")).unwrap();
    }
    state.set(&writer, &greeting(), "fits".to_owned()).unwrap();
    let stored_key = storage_key(state, &writer, &greeting());
    wait_until("the retried save", || {
        local()
            .get_item(&stored_key)
            .unwrap()
            .is_some_and(|text| text.contains("fits"))
    })
    .await;
    assert!(status.quota_used.get_untracked() < 1 << 16);
    drop(sync);
    clean();
}

#[wasm_bindgen_test]
async fn unavailable_storage_reaches_the_manager_as_notices() {
    clean();
    let owner = Owner::new();
    let (state, sync) = owner.with(|| {
        let state = manager(1);
        // Unavailable from the start: cannot even list keys.
        let mut dead = FaultyStorage::new(BrowserStorage::local().unwrap());
        dead.set_unavailable(true);
        // Readable, but refuses writes: fails at the first save.
        let mut read_only = FaultyStorage::new(BrowserStorage::session().unwrap());
        read_only.fail_writes(Some(StorageError::Unavailable));
        let options = ConnectOptions::default()
            .persistent_storage(dead)
            .ephemeral_storage(read_only)
            .transport(TransportChoice::Off);
        let apartment = "faulty".parse().unwrap();
        let sync = connect_browser_with_options(state, &apartment, options).unwrap();
        (state, sync)
    });
    let status = sync.status();
    assert!(!status.channel_up.get_untracked());
    assert_eq!(sync.transport(), None);
    let notices = status.notices.get_untracked();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].starts_with("localStorage could not be read (storage: storage unavailable)"),
        "{notices:?}"
    );

    // The persistent lifetime now lives in memory: declaring and writing
    // work, and nothing reaches localStorage.
    let writer = unit("faulty/lobby/a");
    state.declare(&greeting()).unwrap();
    state.set(&writer, &greeting(), "kept".to_owned()).unwrap();
    let draft = SharedKey::<String>::builder("draft")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap();
    state.declare(&draft).unwrap();
    state.set(&writer, &draft, "typed".to_owned()).unwrap();
    // Saved by the frame-scheduled flush (no transport needed for that).
    wait_until("the failed save to be noticed", || {
        status.notices.get_untracked().len() == 2
    })
    .await;
    assert_eq!(state.get(&writer, &greeting()).unwrap(), "kept");
    assert_eq!(local().length().unwrap(), 0);
    let notices = status.notices.get_untracked();
    assert_eq!(
        notices.get(1).map(String::as_str),
        Some(
            "Could not save apartment/faulty/draft: browser storage is unavailable. \
             The value is kept in this tab only and saving is retried on the next change."
        ),
        "{notices:?}"
    );
    // A save that keeps failing says so once.
    state.set(&writer, &draft, "typed more".to_owned()).unwrap();
    sync.flush_now();
    assert_eq!(status.notices.get_untracked().len(), 2);
    drop(sync);
    clean();
}

#[wasm_bindgen_test]
async fn broadcast_transports_deliver_to_each_other_but_not_to_themselves() {
    let name = "gaesup-test:pair";
    let (seen_a, sink_a) = collector();
    let (seen_b, sink_b) = collector();
    let a = BroadcastTransport::open(name, sink_a).unwrap();
    let b = BroadcastTransport::open(name, sink_b).unwrap();
    a.send_text("from a").unwrap();
    b.send_text("from b").unwrap();
    let request = gaesup_state::core::Message::SyncRequest {
        from: TabId::new(7),
        to: None,
        have: Default::default(),
    };
    a.send(&request).unwrap();
    wait_until("both sides to receive", || {
        seen_a.borrow().len() == 1 && seen_b.borrow().len() == 2
    })
    .await;
    settle().await;
    assert_eq!(*seen_a.borrow(), ["from b"]);
    assert_eq!(seen_b.borrow()[0], "from a");
    assert_eq!(
        gaesup_state::core::Message::decode(&seen_b.borrow()[1]).unwrap(),
        request
    );

    // Data that is not a string is counted, never delivered.
    let raw = web_sys::BroadcastChannel::new(name).unwrap();
    raw.post_message(&js_sys::Object::new()).unwrap();
    raw.post_message(&JsValue::from_f64(1.0)).unwrap();
    wait_until("non-text to be counted", || a.not_text() == 2).await;
    assert_eq!(seen_a.borrow().len(), 1);

    // A dropped transport hears nothing more: a third one proves the
    // message was sent.
    drop(b);
    let (seen_c, sink_c) = collector();
    let c = BroadcastTransport::open(name, sink_c).unwrap();
    a.send_text("after drop").unwrap();
    wait_until("the third to receive", || seen_c.borrow().len() == 1).await;
    settle().await;
    assert_eq!(seen_b.borrow().len(), 2);
    raw.close();
    drop(c);
}

#[wasm_bindgen_test]
async fn storage_event_transport_reaches_another_window_only() {
    clean();
    let frame = same_origin_frame().await;
    let other = frame.content_window().unwrap();

    let key = "gaesup/bus/test";
    let (seen_here, sink_here) = collector();
    let (seen_there, sink_there) = collector();
    let here = StorageEventTransport::open(key, sink_here).unwrap();
    let there = StorageEventTransport::open_in(&other, key, sink_there, || {}).unwrap();
    here.send_text("ping").unwrap();
    here.send_text("ping").unwrap();
    there.send_text("pong\nwith a newline").unwrap();
    wait_until("both windows to receive", || {
        seen_here.borrow().len() == 1 && seen_there.borrow().len() == 2
    })
    .await;
    settle().await;
    // Identical messages both arrive (the nonce), newlines in the text
    // survive, nobody hears itself, and nothing stays in storage.
    assert_eq!(*seen_there.borrow(), ["ping", "ping"]);
    assert_eq!(*seen_here.borrow(), ["pong\nwith a newline"]);
    assert_eq!(local().get_item(key).unwrap(), None);

    // An entry not in the `nonce\ntext` form is counted, not delivered.
    other
        .local_storage()
        .unwrap()
        .unwrap()
        .set_item(key, "garbage")
        .unwrap();
    wait_until("garbage to be counted", || here.not_text() == 1).await;
    assert_eq!(seen_here.borrow().len(), 1);

    drop(there);
    frame.remove();
    clean();
}

/// Tab 1's manager of `apartment`, with `greeting` declared, connected
/// with no transport to other tabs: only storage events reach it.
fn unlinked(owner: &Owner, apartment: &str) -> (StateManager, WebSync) {
    owner.with(|| {
        let state = manager(1);
        state.declare(&greeting()).unwrap();
        let options = ConnectOptions::default().transport(TransportChoice::Off);
        let sync =
            connect_browser_with_options(state, &apartment.parse().unwrap(), options).unwrap();
        (state, sync)
    })
}

/// Connects a fresh manager for tab `tab` of apartment `apartment`.
fn connected(owner: &Owner, tab: u64, apartment: &str) -> (StateManager, WebSync) {
    owner.with(|| {
        let state = manager(tab);
        state.declare(&greeting()).unwrap();
        let sync = connect_browser(state, &apartment.parse().unwrap()).unwrap();
        (state, sync)
    })
}

#[wasm_bindgen_test]
async fn hostile_text_on_the_channel_is_dropped_and_changes_nothing() {
    clean();
    let owner = Owner::new();
    let (state, sync) = connected(&owner, 1, "hostile");
    let writer = unit("hostile/lobby/a");
    state.set(&writer, &greeting(), "safe".to_owned()).unwrap();
    sync.flush_now();
    let stored_key = storage_key(state, &writer, &greeting());
    let stored = local().get_item(&stored_key).unwrap();
    assert!(stored.is_some());
    let status = sync.status();

    let attacker =
        BroadcastTransport::open(&channel_name(&"hostile".parse().unwrap()), |_| {}).unwrap();
    let hostile = [
        "not json".to_owned(),
        "<img src=x onerror=alert(1)>".to_owned(),
        // A forged op for a key this tab holds, with a malformed body.
        r#"{"type":"ops","body":{"ops":[{"key":"apartment:hostile/greeting","payload":42}]}}"#
            .to_owned(),
        // Nesting far beyond the limit.
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        // Over the message size limit.
        format!("\"{}\"", "z".repeat(2 << 20)),
    ];
    for text in &hostile {
        attacker.send_text(text).unwrap();
    }
    let raw = web_sys::BroadcastChannel::new(&channel_name(&"hostile".parse().unwrap())).unwrap();
    raw.post_message(&js_sys::Array::new()).unwrap();
    let expected = hostile.len() + 1;
    wait_until("every hostile message to be dropped", || {
        status.dropped.get_untracked() == expected
    })
    .await;
    settle().await;
    assert_eq!(status.dropped.get_untracked(), expected);
    assert_eq!(state.dropped().len(), hostile.len());
    assert_eq!(state.get(&writer, &greeting()).unwrap(), "safe");
    assert_eq!(status.last_sync_ms.get_untracked(), None);
    assert_eq!(local().get_item(&stored_key).unwrap(), stored);
    assert!(status.notices.get_untracked().is_empty());
    raw.close();
    drop(sync);
    clean();
}

#[wasm_bindgen_test]
async fn connect_browser_syncs_two_managers_and_saves_to_local_storage() {
    clean();
    let owner = Owner::new();
    let (first, first_sync) = connected(&owner, 1, "e2e");
    let (second, second_sync) = connected(&owner, 2, "e2e");
    assert_eq!(
        first_sync.transport(),
        Some(TransportKind::BroadcastChannel)
    );
    assert!(first_sync.status().channel_up.get_untracked());

    let writer = unit("e2e/lobby/a");
    let reader = unit("e2e/shop/b");
    first.set(&writer, &greeting(), "hello".to_owned()).unwrap();
    wait_until("the second manager to see the write", || {
        second.get(&reader, &greeting()).unwrap() == "hello"
    })
    .await;
    assert!(second_sync.status().last_sync_ms.get_untracked().is_some());

    // Saved by the frame-scheduled flush, without calling flush here.
    let stored_key = storage_key(first, &writer, &greeting());
    assert!(stored_key.starts_with(STATE_PREFIX));
    wait_until("the write to reach localStorage", || {
        local()
            .get_item(&stored_key)
            .unwrap()
            .is_some_and(|text| text.contains("hello"))
    })
    .await;
    assert!(first_sync.status().quota_used.get_untracked() > 0);

    // A new tab that cannot read localStorage (its own memory storage)
    // still gets the value by asking the open tabs.
    let (third, third_sync) = owner.with(|| {
        let state = manager(3);
        state.declare(&greeting()).unwrap();
        let options = ConnectOptions::default().persistent_storage(MemoryStorage::new());
        let sync = connect_browser_with_options(state, &"e2e".parse().unwrap(), options).unwrap();
        (state, sync)
    });
    assert_eq!(third.get(&reader, &greeting()).unwrap(), "");
    wait_until("the new tab to catch up", || {
        third.get(&reader, &greeting()).unwrap() == "hello"
    })
    .await;
    for sync in [&first_sync, &second_sync, &third_sync] {
        assert_eq!(sync.status().dropped.get_untracked(), 0);
        assert!(sync.status().notices.get_untracked().is_empty());
    }

    // Dropping a WebSync disconnects it: later writes stay local.
    drop(third_sync);
    first.set(&writer, &greeting(), "bye".to_owned()).unwrap();
    wait_until("the second manager to see the next write", || {
        second.get(&reader, &greeting()).unwrap() == "bye"
    })
    .await;
    settle().await;
    assert_eq!(third.get(&reader, &greeting()).unwrap(), "hello");
    drop(first_sync);
    drop(second_sync);
    clean();
}

#[wasm_bindgen_test]
async fn another_windows_storage_write_and_clear_are_reloaded() {
    clean();
    let frame = same_origin_frame().await;
    let other_window = frame.content_window().unwrap();

    let owner = Owner::new();
    // No transport: only the storage event can bring the value in.
    let (state, sync) = unlinked(&owner, "reload");
    let reader = unit("reload/lobby/a");

    // Another tab: a replica saving through the iframe's localStorage.
    let other = owner.with(|| manager(2));
    let other_storage = BrowserStorage::open_in(&other_window, StorageArea::Local).unwrap();
    other
        .attach_storage(Lifetime::Persistent, Box::new(other_storage))
        .unwrap();
    other.declare(&greeting()).unwrap();
    other
        .set(
            &unit("reload/shop/b"),
            &greeting(),
            "from storage".to_owned(),
        )
        .unwrap();
    other.flush().unwrap();
    wait_until("the storage event to reload the value", || {
        state.get(&reader, &greeting()).unwrap() == "from storage"
    })
    .await;

    // The event names the entry written, and only that one is read again:
    // an entry of another declared key, put in storage behind this tab's
    // back (a write in this window fires no event here), stays unread.
    let farewell = SharedKey::<String>::builder("farewell")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    state.declare(&farewell).unwrap();
    let local = web_sys::window().unwrap().local_storage().unwrap().unwrap();
    let stored = local
        .get_item("gaesup/state/apartment/reload/greeting")
        .unwrap()
        .unwrap();
    local
        .set_item("gaesup/state/apartment/reload/farewell", &stored)
        .unwrap();
    other
        .set(&unit("reload/shop/b"), &greeting(), "again".to_owned())
        .unwrap();
    other.flush().unwrap();
    wait_until("the second storage event", || {
        state.get(&reader, &greeting()).unwrap() == "again"
    })
    .await;
    assert_eq!(
        state.get(&reader, &farewell).unwrap(),
        "",
        "not named: not read"
    );

    // `clear()` in the other window is noticed, and the value stays.
    other_window
        .local_storage()
        .unwrap()
        .unwrap()
        .clear()
        .unwrap();
    let status = sync.status();
    wait_until("the clear to be noticed", || {
        status
            .notices
            .get_untracked()
            .iter()
            .any(|notice| notice.starts_with("Another tab cleared the browser storage"))
    })
    .await;
    assert_eq!(state.get(&reader, &greeting()).unwrap(), "again");
    drop(sync);
    frame.remove();
    clean();
}

#[wasm_bindgen_test]
fn becoming_visible_reloads_storage() {
    clean();
    let owner = Owner::new();
    let (state, sync) = unlinked(&owner, "visible");
    let reader = unit("visible/lobby/a");

    // Written by a replica in this same window: no storage event fires
    // here, as with a write this background tab slept through.
    let other = owner.with(|| manager(2));
    other
        .attach_storage(
            Lifetime::Persistent,
            Box::new(BrowserStorage::local().unwrap()),
        )
        .unwrap();
    other.declare(&greeting()).unwrap();
    other
        .set(
            &unit("visible/shop/b"),
            &greeting(),
            "while hidden".to_owned(),
        )
        .unwrap();
    other.flush().unwrap();
    assert_eq!(state.get(&reader, &greeting()).unwrap(), "");

    // The page is visible in headless Chromium, so the event takes the
    // "became visible" path, synchronously.
    let event = web_sys::Event::new("visibilitychange").unwrap();
    window().document().unwrap().dispatch_event(&event).unwrap();
    assert_eq!(state.get(&reader, &greeting()).unwrap(), "while hidden");
    assert!(sync.status().notices.get_untracked().is_empty());
    drop(sync);
    clean();
}

/// A manager of `apartment` with `keys` declared, connected (no way to
/// other tabs) and linked to a relay nobody answers for
/// (`ws://127.0.0.1:1`), whose outbox keeps 3 ops: every op waits in it.
fn linked_to_nobody(
    owner: &Owner,
    apartment: &str,
    keys: &[&SharedKey<String>],
) -> (StateManager, WebSync) {
    let (state, sync) = owner.with(|| {
        let state = manager(1);
        for key in keys {
            state.declare(key).unwrap();
        }
        let options = ConnectOptions::default()
            .expect_relay()
            .transport(TransportChoice::Off);
        let sync =
            connect_browser_with_options(state, &apartment.parse().unwrap(), options).unwrap();
        (state, sync)
    });
    let config = gaesup_state_web::RelayConfig::parse(
        r#"{"url":"ws://127.0.0.1:1","token":"t","outbox_limit":3}"#,
    )
    .unwrap()
    .unwrap();
    owner.with(|| sync.relay().attach(config));
    (state, sync)
}

/// A batch that begins below the outbox's limit and ends past it goes into
/// the outbox whole: it applied on this device, so an op left out would
/// never reach another one. Only the next write is refused, before it
/// applies.
#[wasm_bindgen_test]
async fn a_batch_crossing_the_outbox_limit_goes_into_it_whole() {
    clean();
    let owner = Owner::new();
    let farewell = SharedKey::<String>::builder("farewell")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    let (state, sync) = linked_to_nobody(&owner, "limit", &[&greeting(), &farewell]);
    let writer = unit("limit/lobby/a");
    state.set(&writer, &greeting(), "one".to_owned()).unwrap();
    state.set(&writer, &greeting(), "two".to_owned()).unwrap();
    state
        .batch(|batch| {
            batch.set(&writer, &greeting(), "three".to_owned())?;
            batch.set(&writer, &farewell, "bye".to_owned())?;
            Ok(())
        })
        .unwrap();
    let outbox = || {
        let storage = local();
        (0..storage.length().unwrap())
            .filter_map(|index| storage.key(index).unwrap())
            .filter(|key| key.starts_with("gaesup/outbox/"))
            .count()
    };
    assert_eq!(outbox(), 4);
    let refused = state.set(&writer, &farewell, "again".to_owned());
    assert_eq!(refused.map_err(|err| err.code()), Err("outbox_full"));
    // Once this tab holds the link, it waits on all four.
    let status = sync.status();
    wait_until("this tab to hold the link", || {
        status
            .relay
            .with_untracked(|relay| relay.here && relay.waiting == 4)
    })
    .await;
    assert_eq!(outbox(), 4);
    assert_eq!(
        state.get(&writer, &farewell).unwrap(),
        "bye",
        "the refused write did not apply"
    );
    drop(sync);
    clean();
}

/// Runs `script` in the page.
fn run(script: &str) {
    js_sys::eval(script).unwrap();
}

/// Writes this tab carries for the one holding the link (its outbox
/// entries refused) count against the outbox's limit, even where the tab
/// holding the link does not count them (one of an older version, which
/// does not know what a carried op is, says it waits on nothing).
#[wasm_bindgen_test]
async fn carried_writes_count_against_the_outbox_limit_whatever_the_link_s_tab_says() {
    clean();
    // Another tab holds the link: its lock is taken first, and released
    // at the end.
    run(
        "navigator.locks.request('gaesup-relay/carry', () => new Promise((release) => { window.releaseCarryLock = release; }))",
    );
    // Storage refuses outbox entries, as a full one would.
    run(r"(() => {
        const setItem = Storage.prototype.setItem;
        window.restoreSetItem = () => { Storage.prototype.setItem = setItem; };
        Storage.prototype.setItem = function (key, value) {
            if (/^gaesup\/outbox\//.test(key)) throw new DOMException('full', 'QuotaExceededError');
            return setItem.call(this, key, value);
        };
    })()");
    let owner = Owner::new();
    let (state, sync) = linked_to_nobody(&owner, "carry", &[&greeting()]);
    let writer = unit("carry/lobby/a");
    let status =
        r#"{"kind":"status","link":"connected","waiting":0,"last_ack_ms":null,"here":true}"#;
    for n in 0..3 {
        state
            .set(&writer, &greeting(), format!("write {n}"))
            .unwrap();
        run(&format!(
            "new BroadcastChannel('gaesup-relay/carry').postMessage('{status}')"
        ));
        let relay = sync.status().relay;
        wait_until("the other tab's status", || {
            relay.with_untracked(|relay| relay.link == "connected")
        })
        .await;
        settle().await;
    }
    let refused = state.set(&writer, &greeting(), "a fourth".to_owned());
    run("window.restoreSetItem(); window.releaseCarryLock()");
    assert_eq!(refused.map_err(|err| err.code()), Err("outbox_full"));
    drop(sync);
    clean();
}

/// Two apartments' managers in one page on the storage-event fallback (no
/// BroadcastChannel): a global key written in one reaches the other. The
/// fallback posts through one key for every apartment, as the channel is
/// one for every apartment, and what a transport sends is handed to the
/// page's other transports on that key (in a microtask), as a channel's
/// message is. Before, each apartment had its own key and a document never
/// hears its own storage events: the theme chosen on one apartment's page
/// never reached the next apartment's manager in the same tab.
#[wasm_bindgen_test]
async fn the_storage_event_fallback_reaches_another_apartment_of_the_same_page() {
    clean();
    let owner = Owner::new();
    let theme = SharedKey::<String>::builder("theme")
        .scope(Scope::Global)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap();
    let open = |tab: u64, apartment: &str| {
        owner.with(|| {
            let state = manager(tab);
            state.declare(&theme).unwrap();
            let options = ConnectOptions::default()
                .transport(TransportChoice::StorageEvents)
                .persistent_storage(MemoryStorage::new())
                .ephemeral_storage(MemoryStorage::new());
            let sync =
                connect_browser_with_options(state, &apartment.parse().unwrap(), options).unwrap();
            (state, sync)
        })
    };
    let (main, main_sync) = open(1, "main");
    let (annex, annex_sync) = open(2, "annex");
    assert_eq!(main_sync.transport(), Some(TransportKind::StorageEvents));
    main.set(&unit("main/b/u"), &theme, "dark".to_owned())
        .unwrap();
    wait_until("the other apartment to hear", || {
        annex.get(&unit("annex/b/u"), &theme).unwrap() == "dark"
    })
    .await;
    annex
        .set(&unit("annex/b/u"), &theme, "light".to_owned())
        .unwrap();
    wait_until("and back", || {
        main.get(&unit("main/b/u"), &theme).unwrap() == "light"
    })
    .await;
    drop((main_sync, annex_sync));
    clean();
}

/// The page's other storage-event transports on the key hear what one
/// sends, never inside its call; the sender does not, nor a transport on
/// another key, nor one dropped.
#[wasm_bindgen_test]
async fn a_storage_event_transport_reaches_the_others_of_its_page() {
    clean();
    let key = gaesup_state_web::bus_key(&"a".parse().unwrap());
    assert_eq!(key, gaesup_state_web::bus_key(&"b".parse().unwrap()));
    let (seen_a, sink_a) = collector();
    let (seen_b, sink_b) = collector();
    let (seen_c, sink_c) = collector();
    let a = StorageEventTransport::open(&key, sink_a).unwrap();
    let b = StorageEventTransport::open(&key, sink_b).unwrap();
    let c = StorageEventTransport::open("gaesup/bus-elsewhere", sink_c).unwrap();
    a.send_text("from a").unwrap();
    assert!(seen_b.borrow().is_empty(), "not inside the sender's call");
    wait_until("b to hear a", || seen_b.borrow().len() == 1).await;
    settle().await;
    assert_eq!(*seen_b.borrow(), ["from a"]);
    assert!(seen_a.borrow().is_empty() && seen_c.borrow().is_empty());
    drop(b);
    a.send_text("after the drop").unwrap();
    c.send_text("elsewhere").unwrap();
    settle().await;
    assert_eq!(seen_b.borrow().len(), 1);
    assert!(seen_a.borrow().is_empty());
    clean();
}

/// Two tabs set the same unreadable entry aside; the user discards it in
/// the other one: this tab hears the set-aside copy leave storage, and
/// saves the key again from what it holds. Before, only the discarding
/// tab lifted the set-aside: this tab went on taking edits of the key and
/// never saved them (they were gone on reload).
#[wasm_bindgen_test]
async fn an_entry_discarded_in_another_tab_is_saved_again_here() {
    clean();
    let stored_at = "gaesup/state/apartment/discard/greeting";
    local().set_item(stored_at, "{ not json").unwrap();
    let frame = same_origin_frame().await;
    let other_window = frame.content_window().unwrap();
    let owner = Owner::new();
    let (state, sync) = unlinked(&owner, "discard");
    assert_eq!(state.quarantined().len(), 1);
    // The other tab, through the iframe's storage, sets it aside too and
    // discards it.
    let other = owner.with(|| manager(2));
    let other_storage = BrowserStorage::open_in(&other_window, StorageArea::Local).unwrap();
    other
        .attach_storage(Lifetime::Persistent, Box::new(other_storage))
        .unwrap();
    other.declare(&greeting()).unwrap();
    let key = greeting().full_key(&unit("discard/lobby/a"));
    assert_eq!(other.quarantined().len(), 1);
    other.discard_quarantine(&key).unwrap();
    wait_until("the discard to be heard", || state.quarantined().is_empty()).await;
    state
        .set(&unit("discard/lobby/a"), &greeting(), "kept".to_owned())
        .unwrap();
    state.flush().unwrap();
    let saved = local().get_item(stored_at).unwrap().unwrap_or_default();
    assert!(saved.contains("kept"), "{saved}");
    drop(sync);
    frame.remove();
    clean();
}

/// Lets the microtasks queued so far run, and nothing else (no frame, no
/// timeout).
async fn microtasks() {
    let ready = js_sys::Promise::resolve(&JsValue::UNDEFINED);
    let _ = wasm_bindgen_futures::JsFuture::from(ready).await;
}

/// A write made after the page's own save on `pagehide` (in a unit's
/// handler of it, or of the `visibilitychange` that follows) is saved
/// before the task ends. Before, it waited for an animation frame or a
/// timeout, which never come once the page is torn down: lost on reload.
/// Back from the back/forward cache (`pageshow`), saves wait for a frame
/// again.
#[wasm_bindgen_test]
async fn a_write_made_while_the_page_is_left_is_saved_before_the_task_ends() {
    clean();
    let owner = Owner::new();
    let (state, sync) = unlinked(&owner, "leave");
    let u = unit("leave/lobby/a");
    let stored_at = "gaesup/state/apartment/leave/greeting";
    let saved = || local().get_item(stored_at).unwrap().unwrap_or_default();
    let event = |name: &str| {
        window()
            .dispatch_event(&web_sys::Event::new(name).unwrap())
            .unwrap();
    };
    event("pagehide");
    state.set(&u, &greeting(), "draft".to_owned()).unwrap();
    assert!(!saved().contains("draft"), "not inside the write");
    microtasks().await;
    assert!(saved().contains("draft"), "{}", saved());
    event("pageshow");
    state.set(&u, &greeting(), "later".to_owned()).unwrap();
    microtasks().await;
    assert!(!saved().contains("later"), "{}", saved());
    wait_until("the frame's save", || saved().contains("later")).await;
    drop(sync);
    clean();
}

/// An entry removed from localStorage behind this tab's back (in another
/// tab: devtools, an extension) is written back from what this tab holds.
/// Before, nobody wrote it back: once the tabs holding the value closed,
/// it was gone without a word.
#[wasm_bindgen_test]
async fn an_entry_removed_elsewhere_is_written_back() {
    clean();
    let frame = same_origin_frame().await;
    let other_window = frame.content_window().unwrap();
    let owner = Owner::new();
    let (state, sync) = unlinked(&owner, "removed");
    state
        .set(&unit("removed/lobby/a"), &greeting(), "kept".to_owned())
        .unwrap();
    state.flush().unwrap();
    let stored_at = "gaesup/state/apartment/removed/greeting";
    let saved = || local().get_item(stored_at).unwrap().unwrap_or_default();
    assert!(saved().contains("kept"));
    other_window
        .local_storage()
        .unwrap()
        .unwrap()
        .remove_item(stored_at)
        .unwrap();
    wait_until("the entry to be written back", || saved().contains("kept")).await;
    drop(sync);
    frame.remove();
    clean();
}
