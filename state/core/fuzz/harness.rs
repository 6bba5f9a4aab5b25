// The fuzz harness, shared by the libFuzzer target (`fuzz/fuzz_targets/`)
// and the proptest run in the test command (`tests/fuzz.rs`), which
// `include!` this file.
//
// `exercise` feeds the same bytes to every entry point that takes text from
// outside the core: a channel message, a stored entry (under every declared
// key), and a snapshot to restore. Whatever the bytes, nothing panics, a
// refusal changes nothing, and whatever is accepted leaves a replica that
// saves and loads back to the same bytes. An accepted item may change
// state without changing a value (a late user-resolve write still carries
// what it superseded), so "refused" is judged item by item: a message is
// cut into single items (an op group, an event, one key's state), each fed
// to a fresh replica.

#[allow(unused_imports)]
use gaesup_state_core::{
    Lifetime, ManualClock, MemoryStorage, Message, Replica, Scope, SharedKey, Storage, Strategy as Kind,
    TabId, UnitAddress,
};

const FUZZ_NOW: u64 = 1_700_000_000_000;

fn fuzz_keys() -> Vec<SharedKey<serde_json::Value>> {
    let key = |name: &str, strategy: Kind, default: serde_json::Value| {
        SharedKey::<serde_json::Value>::builder_with_default(name, default)
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .strategy(strategy)
            .build()
            .expect("valid declaration")
    };
    vec![
        key("lww", Kind::LastWriteWins, serde_json::Value::Null),
        key("fww", Kind::FirstWriteWins, serde_json::Value::Null),
        key("merge", Kind::Merge, serde_json::json!({})),
        key("sum", Kind::Sum, serde_json::json!(0)),
        key("resolve", Kind::UserResolve, serde_json::Value::Null),
    ]
}

fn fuzz_unit() -> UnitAddress {
    "apt/b/u".parse().expect("valid address")
}

/// A store of apartment `apt` with every key declared and written.
fn fuzz_store(tab: u64) -> Replica {
    let mut store = Replica::for_apartment(
        TabId::new(tab),
        "apt".parse().expect("valid id"),
        ManualClock::new(FUZZ_NOW),
    );
    let unit = fuzz_unit();
    for key in fuzz_keys() {
        store.declare(&key).expect("declare");
    }
    let keys = fuzz_keys();
    let _ = store.set(&unit, &keys[0], serde_json::json!("a"));
    let _ = store.set(&unit, &keys[1], serde_json::json!(1));
    let _ = store.set(&unit, &keys[2], serde_json::json!({"x": 1, "y": [2]}));
    let _ = store.increment(&unit, &keys[3], 3);
    let _ = store.set(&unit, &keys[4], serde_json::json!({"t": "n"}));
    store
}

fn fuzz_bytes(store: &Replica) -> String {
    serde_json::to_string(store.states()).expect("states serialize")
}

/// Saves `store` and loads it into a fresh store: the same bytes, and
/// every value reads.
fn fuzz_round_trip(store: &mut Replica) {
    let mut storage = MemoryStorage::new();
    let report = store.persist(Lifetime::Persistent, &mut storage);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut reloaded = Replica::for_apartment(
        TabId::new(97),
        "apt".parse().expect("valid id"),
        ManualClock::new(FUZZ_NOW),
    );
    for key in fuzz_keys() {
        reloaded.declare(&key).expect("declare");
    }
    let report = reloaded
        .load(Lifetime::Persistent, &mut storage)
        .expect("load");
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    assert_eq!(fuzz_bytes(&reloaded), fuzz_bytes(store), "save and load");
    for key in fuzz_keys() {
        let _ = reloaded.get_value(&fuzz_unit(), &key).expect("value reads");
    }
}

/// A decodable message cut into messages of one item each: a state
/// message into one per state (an op group is atomic: one item).
fn fuzz_items(text: &str) -> Vec<Message> {
    match Message::decode(text) {
        Ok(Message::SyncState {
            from, to, states, ..
        }) => states
            .into_iter()
            .map(|state| Message::SyncState {
                from,
                to,
                states: vec![state],
                have: None,
            })
            .collect(),
        Ok(message) => vec![message],
        Err(_) => Vec::new(),
    }
}

/// Receiving what was already received changes nothing.
fn fuzz_received_twice(store: &mut Replica, text: &str) {
    let once = fuzz_bytes(store);
    let inbound = store.receive_text(text);
    assert!(inbound.changes.is_empty(), "a repeat changed a value");
    assert_eq!(fuzz_bytes(store), once, "a repeat changed state");
}

/// Feeds `data` to every entry point; see the file's docs.
pub fn exercise(data: &[u8]) {
    let text = String::from_utf8_lossy(data);

    // A message from another tab: whole, then item by item.
    let mut store = fuzz_store(1);
    let before = fuzz_bytes(&store);
    let inbound = store.receive_text(&text);
    if Message::decode(&text).is_err() {
        assert!(!inbound.errors.is_empty(), "an undecodable message refused");
        assert_eq!(fuzz_bytes(&store), before, "a refused message changed state");
    }
    fuzz_received_twice(&mut store, &text);
    fuzz_round_trip(&mut store);
    for item in fuzz_items(&text) {
        let mut store = fuzz_store(1);
        let before = fuzz_bytes(&store);
        let refused = !store.receive(&item).errors.is_empty();
        // A state is admitted item by item (see `replica/admit.rs`): its refused entries are dropped and the rest
        // applies, which the round trip below checks (a reload refuses
        // every entry a message could not carry).
        if refused && !matches!(item, Message::SyncState { .. }) {
            assert_eq!(fuzz_bytes(&store), before, "a refused item changed state");
        }
        fuzz_received_twice(&mut store, &item.encode().expect("encodes"));
        fuzz_round_trip(&mut store);
    }

    // A stored entry, under every key.
    for key in fuzz_keys() {
        let mut storage = MemoryStorage::new();
        let storage_key = Replica::storage_key(&key.full_key(&fuzz_unit()));
        storage.set(&storage_key, &text).expect("memory storage");
        let mut store = Replica::for_apartment(
            TabId::new(2),
            "apt".parse().expect("valid id"),
            ManualClock::new(FUZZ_NOW),
        );
        for key in fuzz_keys() {
            store.declare(&key).expect("declare");
        }
        let report = store
            .load(Lifetime::Persistent, &mut storage)
            .expect("load");
        if !report.quarantined.is_empty() {
            // Set aside, never rewritten.
            let _ = store.persist(Lifetime::Persistent, &mut storage);
            assert_eq!(
                storage
                    .get(&storage_key)
                    .expect("memory storage")
                    .as_deref(),
                Some(&*text)
            );
        } else {
            fuzz_round_trip(&mut store);
        }
    }

    // A snapshot to restore.
    let mut store = fuzz_store(3);
    let before = fuzz_bytes(&store);
    match store.restore(&fuzz_unit(), &text) {
        Err(_) => assert_eq!(
            fuzz_bytes(&store),
            before,
            "a refused restore changed state"
        ),
        Ok(_) => fuzz_round_trip(&mut store),
    }
}
