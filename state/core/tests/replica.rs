//! Replica behaviour through its public API: strategies end to end, batches,
//! snapshots, persistence, migrations, paths and clocks.

// Test and bench code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use gaesup_state_core::{
    Error, Lifetime, MAX_FIELD_NAME_BYTES, MAX_OP_ITEMS, ManualClock, MemoryStorage, Message, Path,
    Replica, Scope, SharedKey, Storage, StorageError, Strategy, TabId, UnitAddress, Write,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000_000;

fn unit(text: &str) -> UnitAddress {
    text.parse().unwrap()
}

fn key<T>(name: &str, strategy: Strategy) -> SharedKey<T>
where
    T: Serialize + serde::de::DeserializeOwned + Default + 'static,
{
    SharedKey::<T>::builder(name)
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .strategy(strategy)
        .build()
        .unwrap()
}

struct Tab {
    clock: ManualClock,
    store: Replica,
}

fn tab(id: u64) -> Tab {
    let clock = ManualClock::new(NOW);
    Tab {
        store: Replica::new(TabId::new(id), clock.clone()),
        clock,
    }
}

fn send(write: &Write, to: &mut Replica) {
    let text = write.message.as_ref().unwrap().encode().unwrap();
    let inbound = to.receive_text(&text);
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    age: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nick: Option<String>,
}

#[test]
fn last_write_wins_even_when_the_later_writer_has_a_slower_clock() {
    let k = key::<i64>("k", Strategy::LastWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    b.clock.set(NOW - 60_000); // b's clock is a minute behind
    let u = unit("x/y/z");
    let first = a.store.set(&u, &k, 1).unwrap();
    send(&first, &mut b.store);
    // b writes after seeing a's write: it must win although its wall clock
    // is behind.
    let second = b.store.set(&u, &k, 2).unwrap();
    assert!(second.op.stamp > first.op.stamp);
    send(&second, &mut a.store);
    assert_eq!(a.store.get(&u, &k).unwrap(), 2);
    assert_eq!(b.store.get(&u, &k).unwrap(), 2);
}

#[test]
fn a_stamp_ahead_of_the_clock_waits_and_a_far_future_one_is_refused() {
    const DAY: u64 = 24 * 3600 * 1000;
    let k = key::<i64>("k", Strategy::LastWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    // Three days ahead: kept, and applied once b's clock is within a day.
    a.clock.set(NOW + 3 * DAY);
    let write = a.store.set(&u, &k, 1).unwrap();
    let inbound = b.store.receive(write.message.as_ref().unwrap());
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(inbound.held, 1);
    assert_eq!(b.store.get(&u, &k).unwrap(), 0);
    b.clock.set(NOW + 2 * DAY);
    let changes = b.store.poll();
    assert_eq!(changes.len(), 1);
    assert_eq!(b.store.get(&u, &k).unwrap(), 1);
    // Eight days ahead of b: refused.
    a.clock.set(NOW + 10 * DAY + 1);
    let write = a.store.set(&u, &k, 2).unwrap();
    let inbound = b.store.receive(write.message.as_ref().unwrap());
    assert!(matches!(inbound.errors[..], [Error::ClockSkew { .. }]));
}

#[test]
fn first_write_wins_refuses_later_writes_and_the_lowest_stamp_wins_concurrently() {
    let k = key::<String>("owner", Strategy::FirstWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    // Concurrent first writes: b's is earlier.
    let late = {
        a.clock.advance(10);
        a.store.set(&u, &k, "a".to_owned()).unwrap()
    };
    let early = b.store.set(&u, &k, "b".to_owned()).unwrap();
    send(&late, &mut b.store);
    send(&early, &mut a.store);
    assert_eq!(a.store.get(&u, &k).unwrap(), "b");
    assert_eq!(b.store.get(&u, &k).unwrap(), "b");
    // A later write is refused with a clear error.
    let err = a.store.set(&u, &k, "c".to_owned()).unwrap_err();
    assert!(matches!(err, Error::FirstWriteWins { existing, .. } if existing == early.op.stamp));
    assert!(err.to_string().contains("first write wins"));
}

/// A merge key of `Profile`s declared on two tabs, a unit, and a first
/// value.
fn profile_on_two_tabs() -> (SharedKey<Profile>, Tab, Tab, UnitAddress, Profile) {
    let k = key::<Profile>("profile", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let start = Profile {
        name: "kim".into(),
        age: 30,
        nick: Some("k".into()),
    };
    (k, a, b, unit("x/y/z"), start)
}

#[test]
fn merge_keeps_concurrent_edits_of_different_fields() {
    let (k, mut a, mut b, u, start) = profile_on_two_tabs();
    let first = a.store.set(&u, &k, start.clone()).unwrap();
    send(&first, &mut b.store);
    // a renames, b has a birthday and drops the nickname, concurrently.
    let rename = a
        .store
        .set(
            &u,
            &k,
            Profile {
                name: "lee".into(),
                ..start.clone()
            },
        )
        .unwrap();
    let birthday = b
        .store
        .set(
            &u,
            &k,
            Profile {
                age: 31,
                nick: None,
                ..start.clone()
            },
        )
        .unwrap();
    // Only changed fields travel.
    assert_eq!(
        serde_json::to_value(&rename.op.payload).unwrap(),
        json!({"kind": "patch", "data": {"set": {"name": "lee"}}})
    );
    send(&rename, &mut b.store);
    send(&birthday, &mut a.store);
    let expected = Profile {
        name: "lee".into(),
        age: 31,
        nick: None,
    };
    assert_eq!(a.store.get(&u, &k).unwrap(), expected);
    assert_eq!(b.store.get(&u, &k).unwrap(), expected);
}

#[test]
fn a_merge_patch_that_would_not_read_as_the_key_s_type_is_refused() {
    // A peer's patch is type-checked as a whole value is: set into what
    // the key holds, it must still decode. Before, its fields went in
    // unchecked, every reader failed, and a fold made the stored state
    // unreadable for good.
    let (k, mut a, mut b, u, start) = profile_on_two_tabs();
    send(&a.store.set(&u, &k, start.clone()).unwrap(), &mut b.store);
    let birthday = Profile {
        age: 31,
        ..start.clone()
    };
    let birthday = a.store.set(&u, &k, birthday).unwrap();
    let forge = |payload: Value| {
        let mut op = birthday.op.clone();
        op.payload = serde_json::from_value(payload).unwrap();
        Message::Ops(gaesup_state_core::OpGroup { ops: vec![op] })
    };
    for forged in [
        json!({"kind": "patch", "data": {"set": {"age": "old"}}}),
        // A field the type needs, removed.
        json!({"kind": "patch", "data": {"remove": ["name"]}}),
    ] {
        let inbound = b.store.receive_text(&forge(forged).encode().unwrap());
        assert!(
            matches!(&inbound.errors[..], [Error::TypeMismatch { key, .. }] if key.contains("profile")),
            "{:?}",
            inbound.errors
        );
        assert_eq!(b.store.get(&u, &k).unwrap(), start);
    }
    // A field the type may leave out can go; the honest patch applies.
    let inbound = b.store.receive_text(
        &forge(json!({"kind": "patch", "data": {"remove": ["nick"]}}))
            .encode()
            .unwrap(),
    );
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(b.store.get(&u, &k).unwrap().nick, None);
}

#[test]
fn a_merge_patch_arriving_before_the_object_it_patches_is_not_blamed_for_it() {
    // The type check of a patch from elsewhere refuses only where the key
    // holds an object that decodes: a replica still holding the default
    // null takes the patch, as the one that made it did, and both end
    // alike once the whole value arrives.
    let k = key::<Option<Profile>>("maybe", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    let start = Profile {
        name: "kim".into(),
        age: 30,
        nick: None,
    };
    let whole = a.store.set(&u, &k, Some(start.clone())).unwrap();
    let older = Profile { age: 31, ..start };
    let patch = a.store.set(&u, &k, Some(older.clone())).unwrap();
    assert!(matches!(
        patch.op.payload,
        gaesup_state_core::Payload::Patch { .. }
    ));
    send(&patch, &mut b.store);
    send(&whole, &mut b.store);
    assert_eq!(b.store.get(&u, &k).unwrap(), Some(older.clone()));
    assert_eq!(a.store.get(&u, &k).unwrap(), Some(older));
}

#[test]
fn merge_of_non_objects_is_last_write_wins() {
    let k = key::<Value>("v", Strategy::Merge);
    let mut a = tab(1);
    a.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    a.store.set(&u, &k, json!({"a": 1})).unwrap();
    a.store.set(&u, &k, json!([1, 2])).unwrap();
    assert_eq!(a.store.get(&u, &k).unwrap(), json!([1, 2]));
    a.store.set(&u, &k, json!({"b": 2})).unwrap();
    assert_eq!(a.store.get(&u, &k).unwrap(), json!({"b": 2}));
}

#[test]
fn sum_counts_every_increment_once_and_set_becomes_an_increment() {
    let k = key::<i64>("clicks", Strategy::Sum);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    let one = a.store.increment(&u, &k, 5).unwrap();
    let two = b.store.increment(&u, &k, -2).unwrap();
    send(&one, &mut b.store);
    send(&one, &mut b.store);
    send(&two, &mut a.store);
    assert_eq!(a.store.get(&u, &k).unwrap(), 3);
    assert_eq!(b.store.get(&u, &k).unwrap(), 3);
    let reset = a.store.set(&u, &k, 0).unwrap();
    send(&reset, &mut b.store);
    assert_eq!(b.store.get(&u, &k).unwrap(), 0);
    assert!(matches!(
        a.store
            .increment(&u, &key::<i64>("lww", Strategy::LastWriteWins), 1),
        Err(Error::UnknownKey { .. })
    ));
    let lww = key::<i64>("lww", Strategy::LastWriteWins);
    a.store.declare(&lww).unwrap();
    assert!(matches!(
        a.store.increment(&u, &lww, 1),
        Err(Error::WrongStrategy { .. })
    ));
    assert!(matches!(
        a.store
            .increment(&u, &k, i64::MAX)
            .and_then(|_| a.store.increment(&u, &k, i64::MAX)),
        Err(Error::Overflow { .. })
    ));
}

#[test]
fn user_resolve_shows_conflicts_until_a_resolution_supersedes_them() {
    let k = key::<String>("title", Strategy::UserResolve);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    let mine = a.store.set(&u, &k, "mine".to_owned()).unwrap();
    let theirs = b.store.set(&u, &k, "theirs".to_owned()).unwrap();
    send(&mine, &mut b.store);
    send(&theirs, &mut a.store);
    let conflicts = a.store.conflicts(&u, &k).unwrap();
    assert_eq!(conflicts, b.store.conflicts(&u, &k).unwrap());
    let values: Vec<&str> = conflicts.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(
        values,
        ["theirs", "mine"],
        "winner first: b's stamp ties on tab"
    );
    assert_eq!(a.store.get(&u, &k).unwrap(), "theirs");
    // The user picks a custom value.
    let pick = a.store.resolve(&u, &k, "both".to_owned()).unwrap();
    send(&pick, &mut b.store);
    for store in [&a.store, &b.store] {
        assert!(store.conflicts(&u, &k).unwrap().is_empty());
        assert_eq!(store.get(&u, &k).unwrap(), "both");
    }
}

#[test]
fn keeping_the_current_value_still_reports_the_conflict_closed() {
    let k = key::<String>("title", Strategy::UserResolve);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    let mine = a.store.set(&u, &k, "mine".to_owned()).unwrap();
    let theirs = b.store.set(&u, &k, "theirs".to_owned()).unwrap();
    send(&mine, &mut b.store);
    send(&theirs, &mut a.store);
    let current = a.store.get(&u, &k).unwrap();
    let keep = a.store.resolve(&u, &k, current.clone()).unwrap();
    let change = keep
        .change
        .clone()
        .expect("the conflict closing is a change");
    assert_eq!(change.old(), change.new, "the value itself did not move");
    let text = keep.message.as_ref().unwrap().encode().unwrap();
    let inbound = b.store.receive_text(&text);
    assert_eq!(inbound.changes.len(), 1, "the other tab hears of it too");
    assert!(b.store.conflicts(&u, &k).unwrap().is_empty());
}

#[test]
fn a_batch_is_all_or_nothing_and_one_message() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let first = key::<String>("first", Strategy::FirstWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    for store in [&mut a.store, &mut b.store] {
        store.declare(&count).unwrap();
        store.declare(&first).unwrap();
    }
    let u = unit("x/y/z");
    let before = serde_json::to_string(a.store.states()).unwrap();
    let failed = a.store.batch(|batch| {
        batch.set(&u, &count, 1)?;
        batch.set(&u, &first, "one".to_owned())?;
        batch.set(&u, &first, "two".to_owned())
    });
    assert!(matches!(failed, Err(Error::FirstWriteWins { .. })));
    assert_eq!(serde_json::to_string(a.store.states()).unwrap(), before);

    let done = a
        .store
        .batch(|batch| {
            batch.set(&u, &count, 1)?;
            batch.set(&u, &count, 2)?;
            batch.set(&u, &first, "one".to_owned())
        })
        .unwrap();
    assert_eq!(done.group.ops.len(), 3);
    assert_eq!(done.changes.len(), 2, "one change per key");
    // Op ids of the failed batch were not burnt.
    assert_eq!(done.group.ops[0].id.seq, 1);
    let inbound = b.store.receive(done.message.as_ref().unwrap());
    assert_eq!(inbound.changes.len(), 2);
    assert_eq!(b.store.get(&u, &count).unwrap(), 2);
}

#[test]
fn snapshot_and_restore_round_trip_and_reach_other_tabs() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let profile = key::<Profile>("profile", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    for store in [&mut a.store, &mut b.store] {
        store.declare(&count).unwrap();
        store.declare(&clicks).unwrap();
        store.declare(&profile).unwrap();
    }
    let u = unit("x/y/z");
    a.store.set(&u, &count, 4).unwrap();
    a.store.increment(&u, &clicks, 10).unwrap();
    a.store
        .set(
            &u,
            &profile,
            Profile {
                name: "kim".into(),
                age: 1,
                nick: None,
            },
        )
        .unwrap();
    let snapshot = a.store.snapshot(&u, Scope::Apartment);
    let text = snapshot.to_json().unwrap();
    assert!(text.starts_with(r#"{"format":"gaesup-snapshot","version":1"#));

    a.store.set(&u, &count, 99).unwrap();
    a.store.increment(&u, &clicks, 5).unwrap();
    let restored = a.store.restore(&u, &text).unwrap();
    assert_eq!(
        restored.group.ops.len(),
        2,
        "the unchanged profile is skipped"
    );
    assert_eq!(a.store.get(&u, &count).unwrap(), 4);
    assert_eq!(a.store.get(&u, &clicks).unwrap(), 10);
    // Restoring the same snapshot again writes nothing.
    assert!(a.store.restore(&u, &text).unwrap().group.is_empty());
    // A snapshot taken in one place restores in another apartment.
    let elsewhere = unit("other/y/z");
    b.store.restore(&elsewhere, &text).unwrap();
    assert_eq!(b.store.get(&elsewhere, &count).unwrap(), 4);
    assert_eq!(b.store.get(&u, &count).unwrap(), 0);
}

#[test]
fn persist_and_load_round_trip_by_lifetime() {
    let kept = key::<i64>("kept", Strategy::LastWriteWins);
    let session = SharedKey::<i64>::builder("session")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap();
    let scratch = SharedKey::<i64>::builder("scratch")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Memory)
        .build()
        .unwrap();
    let u = unit("x/y/z");
    let mut local = MemoryStorage::new();
    let mut session_storage = MemoryStorage::new();
    let mut a = tab(1);
    a.store.declare(&kept).unwrap();
    a.store.declare(&session).unwrap();
    a.store.declare(&scratch).unwrap();
    a.store.set(&u, &kept, 1).unwrap();
    a.store.set(&u, &session, 2).unwrap();
    a.store.set(&u, &scratch, 3).unwrap();
    assert!(
        a.store
            .persist(Lifetime::Memory, &mut local)
            .written
            .is_empty()
    );
    assert_eq!(
        a.store
            .persist(Lifetime::Persistent, &mut local)
            .written
            .len(),
        1
    );
    assert_eq!(
        a.store
            .persist(Lifetime::Ephemeral, &mut session_storage)
            .written
            .len(),
        1
    );
    // Nothing changed: nothing rewritten.
    assert!(
        a.store
            .persist(Lifetime::Persistent, &mut local)
            .written
            .is_empty()
    );
    assert_eq!(local.keys().unwrap(), vec!["gaesup/state/apartment/x/kept"]);

    let mut b = tab(3);
    b.store.declare(&kept).unwrap();
    b.store.declare(&session).unwrap();
    b.store.declare(&scratch).unwrap();
    let report = b.store.load(Lifetime::Persistent, &mut local).unwrap();
    assert_eq!(report.changes.len(), 1);
    b.store
        .load(Lifetime::Ephemeral, &mut session_storage)
        .unwrap();
    assert_eq!(b.store.get(&u, &kept).unwrap(), 1);
    assert_eq!(b.store.get(&u, &session).unwrap(), 2);
    assert_eq!(b.store.get(&u, &scratch).unwrap(), 0);
}

#[test]
fn persist_merges_what_another_tab_stored_instead_of_overwriting_it() {
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let u = unit("x/y/z");
    let mut storage = MemoryStorage::new();
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&clicks).unwrap();
    b.store.declare(&clicks).unwrap();
    // Their broadcasts are lost; both persist to the same storage.
    a.store.increment(&u, &clicks, 2).unwrap();
    b.store.increment(&u, &clicks, 3).unwrap();
    a.store.persist(Lifetime::Persistent, &mut storage);
    let report = b.store.persist(Lifetime::Persistent, &mut storage);
    assert_eq!(report.changes.len(), 1);
    assert_eq!(b.store.get(&u, &clicks).unwrap(), 5);
    let mut c = tab(3);
    c.store.declare(&clicks).unwrap();
    c.store.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(c.store.get(&u, &clicks).unwrap(), 5);
}

#[test]
fn loading_a_declaration_reads_only_its_own_entries() {
    let notes = SharedKey::<String>::builder("notes")
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    let other = key::<i64>("other", Strategy::LastWriteWins);
    let mut storage = MemoryStorage::new();
    let mut a = tab(1);
    a.store.declare(&notes).unwrap();
    a.store.declare(&other).unwrap();
    a.store.set(&unit("x/y/one"), &notes, "1".into()).unwrap();
    a.store.set(&unit("x/y/two"), &notes, "2".into()).unwrap();
    a.store.set(&unit("x/y/one"), &other, 7).unwrap();
    a.store.persist(Lifetime::Persistent, &mut storage);
    // Another key's entry is corrupt: loading `notes` must not touch it.
    storage
        .set("gaesup/state/apartment/x/other", "{broken")
        .unwrap();

    let mut b = tab(2);
    b.store.declare(&notes).unwrap();
    b.store.declare(&other).unwrap();
    let report = b.store.load_declared(notes.spec(), &mut storage).unwrap();
    let loaded: Vec<String> = report.loaded.iter().map(ToString::to_string).collect();
    assert_eq!(
        loaded,
        ["private/x/y/one/notes", "private/x/y/two/notes"],
        "every address of the declaration, nothing else"
    );
    assert!(report.quarantined.is_empty() && report.failed.is_empty());
    assert_eq!(b.store.get(&unit("x/y/two"), &notes).unwrap(), "2");
    assert_eq!(
        b.store.get(&unit("x/y/one"), &other).unwrap(),
        0,
        "not loaded"
    );

    // The full load still finds the corrupt entry and sets it aside.
    let report = b.store.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(report.quarantined.len(), 1);
}

#[test]
fn loading_named_entries_reads_those_and_lists_nothing() {
    /// A storage that refuses to be listed: a load by name must not ask.
    struct Unlisted(MemoryStorage);
    impl Storage for Unlisted {
        fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
            self.0.get(key)
        }
        fn set(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
            self.0.set(key, value)
        }
        fn remove(&mut self, key: &str) -> Result<(), StorageError> {
            self.0.remove(key)
        }
        fn keys(&self) -> Result<Vec<String>, StorageError> {
            Err(StorageError::Unavailable)
        }
    }

    let notes = SharedKey::<String>::builder("notes")
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    let mut storage = MemoryStorage::new();
    let mut a = tab(1);
    a.store.declare(&notes).unwrap();
    a.store.set(&unit("x/y/one"), &notes, "1".into()).unwrap();
    a.store.set(&unit("x/y/two"), &notes, "2".into()).unwrap();
    a.store.persist(Lifetime::Persistent, &mut storage);
    storage.set("gaesup/state/nonsense", "{}").unwrap();
    let mut storage = Unlisted(storage);

    let mut b = tab(2);
    b.store.declare(&notes).unwrap();
    let named = [
        "gaesup/state/private/x/y/two/notes".to_owned(),
        "gaesup/state/nonsense".to_owned(),
        "gaesup/outbox/not-state".to_owned(),
        "gaesup/state/private/x/y/gone/notes".to_owned(),
    ];
    let report = b
        .store
        .load_named(Lifetime::Persistent, &mut storage, &named);
    let loaded: Vec<String> = report.loaded.iter().map(ToString::to_string).collect();
    assert_eq!(
        loaded,
        ["private/x/y/two/notes"],
        "what was named, nothing else"
    );
    assert_eq!(report.changes.len(), 1);
    assert_eq!(b.store.get(&unit("x/y/two"), &notes).unwrap(), "2");
    assert_eq!(
        b.store.get(&unit("x/y/one"), &notes).unwrap(),
        "",
        "not named"
    );
    assert_eq!(report.failed.len(), 1, "a name that is no key is reported");
    // Another lifetime's storage: the named persistent entry is not its own.
    let report = b
        .store
        .load_named(Lifetime::Ephemeral, &mut storage, &named);
    assert!(report.loaded.is_empty());
}

#[test]
fn old_schema_ops_are_migrated_on_receipt_and_newer_ones_refused() {
    fn to_object(v: Value) -> Result<Value, String> {
        Ok(json!({ "n": v }))
    }
    let v1 = SharedKey::<Value>::builder("doc")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    let v2 = SharedKey::<Value>::builder("doc")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .schema(2)
        .migrate(1, to_object)
        .build()
        .unwrap();
    let (mut old, mut new) = (tab(1), tab(2));
    old.store.declare(&v1).unwrap();
    new.store.declare(&v2).unwrap();
    let u = unit("x/y/z");
    let write = old.store.set(&u, &v1, json!(7)).unwrap();
    send(&write, &mut new.store);
    assert_eq!(new.store.get(&u, &v2).unwrap(), json!({"n": 7}));
    let write = new.store.set(&u, &v2, json!({"n": 8})).unwrap();
    let inbound = old.store.receive(write.message.as_ref().unwrap());
    assert!(matches!(
        inbound.errors[..],
        [Error::NewerSchema {
            found: 2,
            supported: 1,
            ..
        }]
    ));
}

#[test]
fn path_subscribers_see_only_changes_at_their_path() {
    type Cart = BTreeMap<String, Value>;
    let cart = key::<Cart>("cart", Strategy::Merge);
    let mut a = tab(1);
    a.store.declare(&cart).unwrap();
    let u = unit("x/y/z");
    let qty = Path::parse("items.0.qty").unwrap();
    let first = a
        .store
        .set(
            &u,
            &cart,
            Cart::from([
                ("items".into(), json!([{"qty": 1}])),
                ("note".into(), json!("")),
            ]),
        )
        .unwrap();
    assert!(first.change.as_ref().unwrap().touches(&qty));
    let note = a
        .store
        .set(
            &u,
            &cart,
            Cart::from([
                ("items".into(), json!([{"qty": 1}])),
                ("note".into(), json!("gift")),
            ]),
        )
        .unwrap();
    assert!(!note.change.as_ref().unwrap().touches(&qty));
    assert_eq!(a.store.get_path(&u, &cart, &qty).unwrap(), Some(json!(1)));
    assert_eq!(
        a.store
            .get_path(&u, &cart, &Path::parse("items.5").unwrap())
            .unwrap(),
        None
    );
}

#[test]
fn a_reloaded_tab_that_kept_its_id_never_reuses_op_ids() {
    let k = key::<i64>("k", Strategy::UserResolve);
    let u = unit("x/y/z");
    let mut storage = MemoryStorage::new();
    let mut a = tab(1);
    a.store.declare(&k).unwrap();
    let last = (0..3)
        .map(|i| a.store.set(&u, &k, i).unwrap())
        .last()
        .unwrap();
    a.store.persist(Lifetime::Persistent, &mut storage);
    let mut again = Replica::new(TabId::new(1), a.clock.clone());
    again.declare(&k).unwrap();
    again.load(Lifetime::Persistent, &mut storage).unwrap();
    let next = again.set(&u, &k, 9).unwrap();
    assert!(next.op.id.seq > last.op.id.seq);
    assert!(next.op.stamp > last.op.stamp);
    assert_eq!(again.get(&u, &k).unwrap(), 9);
}

#[test]
fn tabs_talk_through_a_transport() {
    use gaesup_state_core::{MemoryBus, Transport};
    let k = key::<i64>("k", Strategy::Sum);
    let u = unit("x/y/z");
    let bus = MemoryBus::new();
    let mut tabs: Vec<(Replica, _)> = (1..=3)
        .map(|id| {
            let mut store = Replica::new(TabId::new(id), ManualClock::new(NOW));
            store.declare(&k).unwrap();
            (store, bus.connect(TabId::new(id)))
        })
        .collect();
    bus.set_duplicate_all(true);
    for (store, endpoint) in &mut tabs {
        let write = store.increment(&u, &k, 1).unwrap();
        endpoint.send(write.message.as_ref().unwrap()).unwrap();
    }
    // Tab 3 misses a write from tab 1 while the bus drops messages.
    bus.set_duplicate_all(false);
    bus.set_drop_all(true);
    let write = tabs[0].0.increment(&u, &k, 10).unwrap();
    tabs[0].1.send(write.message.as_ref().unwrap()).unwrap();
    bus.set_drop_all(false);
    for (store, endpoint) in &mut tabs {
        for text in endpoint.drain() {
            assert!(store.receive_text(&text).errors.is_empty());
        }
    }
    assert_eq!(tabs[2].0.get(&u, &k).unwrap(), 3);
    // Tab 3 asks for state; the others answer through the bus.
    let request = tabs[2].0.sync_request();
    tabs[2].1.send(&request).unwrap();
    for _ in 0..2 {
        for (store, endpoint) in &mut tabs {
            for text in endpoint.drain() {
                let inbound = store.receive_text(&text);
                for reply in &inbound.replies {
                    endpoint.send(reply).unwrap();
                }
            }
        }
    }
    for (store, _) in &tabs {
        assert_eq!(store.get(&u, &k).unwrap(), 13);
    }
    assert!(bus.sent() > 0);
}

#[test]
fn a_new_tab_catches_up_through_sync() {
    let k = key::<i64>("k", Strategy::LastWriteWins);
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let u = unit("x/y/z");
    let (mut a, mut b) = (tab(1), tab(2));
    for store in [&mut a.store, &mut b.store] {
        store.declare(&k).unwrap();
        store.declare(&clicks).unwrap();
    }
    a.store.set(&u, &k, 5).unwrap();
    a.store.increment(&u, &clicks, 3).unwrap();
    let request = b.store.sync_request().encode().unwrap();
    let inbound = a.store.receive_text(&request);
    assert_eq!(inbound.replies.len(), 1);
    for reply in &inbound.replies {
        let inbound = b.store.receive_text(&reply.encode().unwrap());
        assert_eq!(inbound.changes.len(), 2);
    }
    assert_eq!(b.store.get(&u, &k).unwrap(), 5);
    assert_eq!(b.store.get(&u, &clicks).unwrap(), 3);
    assert_eq!(
        serde_json::to_string(a.store.states()).unwrap(),
        serde_json::to_string(b.store.states()).unwrap()
    );
    // Its own request echoed back is ignored.
    assert!(b.store.receive_text(&request).replies.is_empty());
    let _: Message = Message::decode(&request).unwrap();
}

#[test]
fn revert_restores_the_previous_value_but_never_erases_a_later_write() {
    let k = key::<i64>("k", Strategy::LastWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let u = unit("x/y/z");
    let base = a.store.set(&u, &k, 1).unwrap();
    send(&base, &mut b.store);
    a.clock.advance(1);
    let optimistic = a.store.set(&u, &k, 2).unwrap();
    // b writes later, but a has not received it when it reverts.
    b.clock.advance(5);
    let later = b.store.set(&u, &k, 3).unwrap();
    a.clock.advance(10);
    let revert = a.store.revert(&u, &k, &optimistic).unwrap().unwrap();
    assert_eq!(a.store.get(&u, &k).unwrap(), 1);
    send(&later, &mut a.store);
    send(&optimistic, &mut b.store);
    send(&revert, &mut b.store);
    assert_eq!(a.store.get(&u, &k).unwrap(), 3);
    assert_eq!(b.store.get(&u, &k).unwrap(), 3);
    // Once overwritten, there is nothing left to revert.
    assert_eq!(a.store.revert(&u, &k, &optimistic).unwrap(), None);
}

#[test]
fn reverting_a_user_resolve_write_leaves_no_conflict_behind() {
    // A revert reuses the stamp of the write it undoes; with a tab's chain
    // judged by stamp too, that write stayed beside it as a conflict.
    let k = key::<String>("note", Strategy::UserResolve);
    let u = unit("x/y/z");
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&k).unwrap();
    b.store.declare(&k).unwrap();
    let before = a.store.set(&u, &k, "before".to_owned()).unwrap();
    a.clock.advance(1);
    let chosen = a.store.set(&u, &k, "chosen".to_owned()).unwrap();
    let revert = a.store.revert(&u, &k, &chosen).unwrap().unwrap();
    // The other tab takes the three writes, the undone one last.
    for write in [&before, &revert, &chosen] {
        send(write, &mut b.store);
    }
    for store in [&a.store, &b.store] {
        assert_eq!(store.get(&u, &k).unwrap(), "before");
        assert!(store.conflicts(&u, &k).unwrap().is_empty());
    }
}

#[test]
fn revert_per_strategy() {
    let u = unit("x/y/z");
    let (mut a, mut b) = (tab(1), tab(2));
    // Merge: only the fields nobody wrote since come back.
    let cart = key::<BTreeMap<String, i64>>("cart", Strategy::Merge);
    a.store.declare(&cart).unwrap();
    b.store.declare(&cart).unwrap();
    let start = BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 1)]);
    send(
        &a.store.set(&u, &cart, start.clone()).unwrap(),
        &mut b.store,
    );
    a.clock.advance(1);
    let both = BTreeMap::from([("x".to_owned(), 2), ("y".to_owned(), 2)]);
    let optimistic = a.store.set(&u, &cart, both).unwrap();
    b.clock.advance(5);
    let y = BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 3)]);
    send(&b.store.set(&u, &cart, y).unwrap(), &mut a.store);
    let revert = a.store.revert(&u, &cart, &optimistic).unwrap().unwrap();
    send(&optimistic, &mut b.store);
    send(&revert, &mut b.store);
    let expected = BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 3)]);
    assert_eq!(a.store.get(&u, &cart).unwrap(), expected);
    assert_eq!(b.store.get(&u, &cart).unwrap(), expected);

    // Sum: the increment is subtracted, other increments stay.
    let clicks = key::<i64>("clicks", Strategy::Sum);
    a.store.declare(&clicks).unwrap();
    let mine = a.store.increment(&u, &clicks, 5).unwrap();
    a.store.increment(&u, &clicks, 2).unwrap();
    a.store.revert(&u, &clicks, &mine).unwrap().unwrap();
    assert_eq!(a.store.get(&u, &clicks).unwrap(), 2);

    // User-resolve: a concurrent value survives the revert.
    let title = key::<String>("title", Strategy::UserResolve);
    a.store.declare(&title).unwrap();
    b.store.declare(&title).unwrap();
    send(
        &a.store.set(&u, &title, "old".to_owned()).unwrap(),
        &mut b.store,
    );
    let optimistic = a.store.set(&u, &title, "new".to_owned()).unwrap();
    send(
        &b.store.set(&u, &title, "theirs".to_owned()).unwrap(),
        &mut a.store,
    );
    a.store.revert(&u, &title, &optimistic).unwrap().unwrap();
    let values: Vec<String> = a
        .store
        .conflicts(&u, &title)
        .unwrap()
        .into_iter()
        .map(|c| c.value)
        .collect();
    assert_eq!(values.len(), 2);
    assert!(values.contains(&"theirs".to_owned()) && values.contains(&"old".to_owned()));

    // First-write-wins: the first value is final.
    let owner = key::<i64>("owner", Strategy::FirstWriteWins);
    a.store.declare(&owner).unwrap();
    let first = a.store.set(&u, &owner, 1).unwrap();
    assert!(matches!(
        a.store.revert(&u, &owner, &first),
        Err(Error::WrongStrategy { .. })
    ));
    // A write of another key or another store is refused.
    assert!(matches!(
        a.store.revert(&u, &clicks, &first),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn an_erased_key_is_the_same_key_and_keeps_its_type() {
    let typed = key::<i64>("count", Strategy::LastWriteWins);
    let mut a = tab(1);
    a.store.declare(&typed).unwrap();
    let u = unit("x/y/z");
    let json = SharedKey::erased(Arc::clone(typed.spec()));
    a.store.set(&u, &json, json!(4)).unwrap();
    assert_eq!(a.store.get(&u, &typed).unwrap(), 4);
    let err = a.store.set(&u, &json, json!("four")).unwrap_err();
    assert_eq!(err.code(), "type_mismatch");
    assert_eq!(
        a.store.get(&u, &typed).unwrap(),
        4,
        "refused write changed nothing"
    );
    let err = a
        .store
        .batch(|b| b.set(&u, &json, json!({"no": 1})))
        .unwrap_err();
    assert_eq!(err.code(), "type_mismatch");
}

#[test]
fn reads_borrow_or_build_the_value_per_strategy_and_agree_with_get_value() {
    let u = unit("x/y/z");
    let doc = SharedKey::<Value>::builder_with_default("doc", json!({"a": [1, 2]}))
        .build()
        .unwrap();
    let total = key::<i64>("total", Strategy::Sum);
    let profile = key::<Profile>("profile", Strategy::Merge);
    let mut a = tab(1);
    a.store.declare(&doc).unwrap();
    a.store.declare(&total).unwrap();
    a.store.declare(&profile).unwrap();
    let second = Path::parse("a.1").unwrap();
    assert_eq!(
        a.store.get_path(&u, &doc, &second).unwrap(),
        Some(json!(2)),
        "default"
    );
    a.store.set(&u, &doc, json!({"a": [1, 5]})).unwrap();
    assert_eq!(a.store.get_path(&u, &doc, &second).unwrap(), Some(json!(5)));
    assert_eq!(
        a.store.get(&u, &doc).unwrap(),
        a.store.get_value(&u, &doc).unwrap()
    );
    a.store.increment(&u, &total, 4).unwrap();
    assert_eq!(a.store.get(&u, &total).unwrap(), 4);
    let ann = Profile {
        name: "Ann".into(),
        age: 3,
        nick: None,
    };
    a.store.set(&u, &profile, ann.clone()).unwrap();
    assert_eq!(a.store.get(&u, &profile).unwrap(), ann);
    assert_eq!(
        a.store
            .get_path(&u, &profile, &Path::parse("name").unwrap())
            .unwrap(),
        Some(json!("Ann"))
    );
}

/// Every op a replica sends must pass the checks its receivers make
/// ([`Op::validate`]): otherwise the writer keeps a value nobody else does.
/// A write changing more fields than a patch may carry goes as the whole
/// object instead (as a set, a batch and a restore), and every receiver
/// ends with the same value.
#[test]
fn a_merge_write_that_no_receiver_would_take_is_refused_where_it_is_made() {
    let doc = key::<Value>("doc", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&doc).unwrap();
    b.store.declare(&doc).unwrap();
    let u = unit("x/y/z");
    let long_name = "n".repeat(MAX_FIELD_NAME_BYTES + 1);
    let err = a
        .store
        .set(&u, &doc, json!({ long_name.clone(): 1 }))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { reason, .. } if reason.contains("field name too long")),
        "{err}"
    );
    // Nor does a long name go out in a whole object.
    let mut wide_and_long: serde_json::Map<String, Value> = (0..=MAX_OP_ITEMS)
        .map(|i| (format!("f{i}"), json!(i)))
        .collect();
    wide_and_long.insert(long_name.clone(), json!(1));
    let err = a
        .store
        .set(&u, &doc, Value::Object(wide_and_long))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { reason, .. } if reason.contains("field name too long")),
        "{err}"
    );
    assert_eq!(a.store.get(&u, &doc).unwrap(), Value::Null);
    let wide = |round: usize| -> Value {
        (0..=MAX_OP_ITEMS)
            .map(|i| (format!("f{i}"), json!(i + round)))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    };
    // A first write, a write over an object, and one in a batch.
    for round in 0..2 {
        let write = a.store.set(&u, &doc, wide(round)).unwrap();
        assert!(
            matches!(write.op.payload, gaesup_state_core::Payload::Set { .. }),
            "{:?}",
            write.op.payload
        );
        send(&write, &mut b.store);
        assert_eq!(b.store.get(&u, &doc).unwrap(), wide(round));
    }
    let batch = a.store.batch(|batch| batch.set(&u, &doc, wide(2))).unwrap();
    let text = batch.message.unwrap().encode().unwrap();
    assert!(b.store.receive_text(&text).errors.is_empty());
    assert_eq!(b.store.get(&u, &doc).unwrap(), wide(2));
    // A narrow write after it is a patch again.
    let mut narrow = wide(2);
    narrow["f0"] = json!("changed");
    let write = a.store.set(&u, &doc, narrow.clone()).unwrap();
    assert!(matches!(
        write.op.payload,
        gaesup_state_core::Payload::Patch { .. }
    ));
    send(&write, &mut b.store);
    assert_eq!(b.store.get(&u, &doc).unwrap(), narrow);

    // The refused writes used no op number: the next write reaches b.
    send(
        &a.store.set(&u, &doc, json!({ "f0": 1 })).unwrap(),
        &mut b.store,
    );
    assert_eq!(b.store.get(&u, &doc).unwrap(), json!({ "f0": 1 }));
}

/// A merge key grown past a patch's field count by many small writes: its
/// scope snapshot restores in another tab, whose value and the restore's
/// message both reach the same object.
#[test]
fn a_snapshot_of_a_merge_key_wider_than_a_patch_restores() {
    let doc = key::<Value>("doc", Strategy::Merge);
    let (mut a, mut b, mut c) = (tab(1), tab(2), tab(3));
    for tab in [&mut a, &mut b, &mut c] {
        tab.store.declare(&doc).unwrap();
    }
    let u = unit("x/y/z");
    a.store.set(&u, &doc, json!({})).unwrap();
    for i in 0..MAX_OP_ITEMS + 10 {
        let field = Path::parse(&format!("f{i}")).unwrap();
        let write = a.store.set_path(&u, &doc, &field, json!(i)).unwrap();
        assert!(matches!(
            write.op.payload,
            gaesup_state_core::Payload::Patch { .. }
        ));
    }
    let grown = a.store.get::<Value>(&u, &doc).unwrap();
    assert_eq!(grown.as_object().unwrap().len(), MAX_OP_ITEMS + 10);
    let text = a.store.snapshot(&u, Scope::Apartment).to_json().unwrap();
    let restored = b.store.restore(&u, &text).unwrap();
    assert_eq!(b.store.get::<Value>(&u, &doc).unwrap(), grown);
    let message = restored.message.unwrap().encode().unwrap();
    let inbound = c.store.receive_text(&message);
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(c.store.get::<Value>(&u, &doc).unwrap(), grown);
}

#[test]
fn a_merge_revert_that_would_send_a_value_over_the_limit_is_refused() {
    let doc = key::<Value>("doc", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&doc).unwrap();
    b.store.declare(&doc).unwrap();
    let u = unit("x/y/z");
    // Two concurrent first writes of different fields: each under the
    // value limit, their merge over it.
    let big = "x".repeat(150 << 10);
    let from_a = a.store.set(&u, &doc, json!({ "a": big })).unwrap();
    let from_b = b.store.set(&u, &doc, json!({ "b": big })).unwrap();
    send(&from_a, &mut b.store);
    send(&from_b, &mut a.store);
    a.clock.advance(2);
    let optimistic = a.store.set(&u, &doc, json!(5)).unwrap();
    send(&optimistic, &mut b.store);
    // Restoring the merged value would take one op value over the limit:
    // refused where it is made, not kept here and refused everywhere else.
    let err = a.store.revert(&u, &doc, &optimistic).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(a.store.get(&u, &doc).unwrap(), json!(5));
    assert_eq!(b.store.get(&u, &doc).unwrap(), json!(5));
}

#[test]
fn reverting_a_reset_after_another_tab_counted_reaches_every_tab() {
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&clicks).unwrap();
    b.store.declare(&clicks).unwrap();
    let u = unit("x/y/z");
    send(&a.store.increment(&u, &clicks, 3).unwrap(), &mut b.store);
    a.clock.advance(1);
    let reset = a.store.set(&u, &clicks, 10).unwrap();
    send(&reset, &mut b.store);
    b.clock.advance(5);
    send(&b.store.increment(&u, &clicks, 4).unwrap(), &mut a.store);
    assert_eq!(a.store.get(&u, &clicks).unwrap(), 14);
    a.clock.advance(10);
    let revert = a.store.revert(&u, &clicks, &reset).unwrap().unwrap();
    send(&revert, &mut b.store);
    // Back to what the reset replaced, plus what was added since.
    assert_eq!(a.store.get(&u, &clicks).unwrap(), 7);
    assert_eq!(b.store.get(&u, &clicks).unwrap(), 7);
}

/// Merge compaction folds old fields into the base; a base over the value
/// limit would get the whole key refused wherever the state is read
/// (reload, sync, the relay), so the fields stay unfolded instead.
#[test]
fn merge_compaction_never_builds_a_base_that_a_reload_or_a_sync_refuses() {
    let doc = key::<Value>("doc", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&doc).unwrap();
    b.store.declare(&doc).unwrap();
    let u = unit("x/y/z");
    let big = "x".repeat(200 << 10);
    let day = 24 * 60 * 60 * 1000;
    a.store.set(&u, &doc, json!({ "a": big })).unwrap();
    a.clock.advance(15 * day);
    a.store.set(&u, &doc, json!({ "a": big, "z": 1 })).unwrap();
    a.clock.advance(day);
    a.store
        .set(&u, &doc, json!({ "a": "", "b": big, "z": 1 }))
        .unwrap();
    a.clock.advance(15 * day);
    a.store
        .set(&u, &doc, json!({ "a": "x", "b": big, "z": 1 }))
        .unwrap();
    let expected = json!({ "a": "x", "b": big, "z": 1 });
    assert_eq!(a.store.get(&u, &doc).unwrap(), expected);

    b.clock.advance(31 * day);
    let mut local = MemoryStorage::new();
    a.store.persist(Lifetime::Persistent, &mut local);
    let report = b.store.load(Lifetime::Persistent, &mut local).unwrap();
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(b.store.get(&u, &doc).unwrap(), expected);

    let mut c = tab(3);
    c.clock.advance(31 * day);
    c.store.declare(&doc).unwrap();
    let sync = a.store.sync_messages();
    for message in &sync {
        let inbound = c.store.receive_text(&message.encode().unwrap());
        assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    }
    assert_eq!(c.store.get(&u, &doc).unwrap(), expected);
}

/// What a migration makes is checked like anything else from outside: a
/// step that grows a value past a limit fails like a failing step (the
/// stored entry is quarantined, kept raw; the op is refused), instead of
/// being kept here and refused by every other tab and the next reload.
#[test]
fn a_migration_that_makes_what_no_receiver_takes_fails_like_a_failing_step() {
    fn doubled(v: Value) -> Result<Value, String> {
        let text = v.as_str().ok_or("not a text")?;
        Ok(json!(text.repeat(2)))
    }
    fn widened(v: Value) -> Result<Value, String> {
        let mut object = v.as_object().cloned().ok_or("not an object")?;
        for i in 0..=MAX_OP_ITEMS {
            object.insert(format!("f{i}"), json!(i));
        }
        Ok(Value::Object(object))
    }
    let declared = |name: &str, strategy, migration: Option<fn(Value) -> Result<Value, String>>| {
        let builder = SharedKey::<Value>::builder(name)
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .strategy(strategy);
        match migration {
            Some(step) => builder.schema(2).migrate(1, step).build().unwrap(),
            None => builder.build().unwrap(),
        }
    };
    let u = unit("x/y/z");
    let (mut old, mut new) = (tab(1), tab(2));

    // A stored 200 KiB text that the migration doubles past 256 KiB.
    let text_v1 = declared("text", Strategy::LastWriteWins, None);
    let text_v2 = declared("text", Strategy::LastWriteWins, Some(doubled));
    old.store.declare(&text_v1).unwrap();
    new.store.declare(&text_v2).unwrap();
    old.store
        .set(&u, &text_v1, json!("x".repeat(200 << 10)))
        .unwrap();
    let mut local = MemoryStorage::new();
    old.store.persist(Lifetime::Persistent, &mut local);
    let report = new.store.load(Lifetime::Persistent, &mut local).unwrap();
    assert!(
        matches!(&report.quarantined[..], [q] if matches!(q.error, Error::TooLarge { .. })),
        "{:?}",
        report.quarantined
    );
    assert_eq!(new.store.get(&u, &text_v2).unwrap(), Value::Null);

    // A merge patch that the migration widens past an op's field count.
    let doc_v1 = declared("doc", Strategy::Merge, None);
    let doc_v2 = declared("doc", Strategy::Merge, Some(widened));
    old.store.declare(&doc_v1).unwrap();
    new.store.declare(&doc_v2).unwrap();
    let write = old.store.set(&u, &doc_v1, json!({ "a": 1 })).unwrap();
    let inbound = new.store.receive(write.message.as_ref().unwrap());
    assert!(
        matches!(&inbound.errors[..], [Error::Malformed { reason, .. }] if reason.contains("too many fields")),
        "{:?}",
        inbound.errors
    );
    assert_eq!(new.store.get(&u, &doc_v2).unwrap(), Value::Null);
}

/// A counter written by more units than a state may list as folded writers
/// (`MAX_OP_ITEMS`): compaction folds their old slots, and the state it
/// builds must still be one that a reload and every other tab take.
#[test]
fn a_counter_folding_more_writers_than_a_state_lists_still_syncs_and_reloads() {
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&clicks).unwrap();
    // A slot is a tab's: each writer counts from a tab of its own.
    let writers = MAX_OP_ITEMS + 6;
    for i in 0..writers {
        let mut other = tab(10 + u64::try_from(i).unwrap());
        other.store.declare(&clicks).unwrap();
        let write = other
            .store
            .increment(&unit(&format!("x/y/u{i}")), &clicks, 1)
            .unwrap();
        send(&write, &mut a.store);
    }
    // Every slot falls behind the compaction horizon and is folded.
    let day = 24 * 60 * 60 * 1000;
    a.clock.advance(15 * day);
    let u = unit("x/y/z");
    a.store.increment(&u, &clicks, 1).unwrap();
    let total = i64::try_from(writers).unwrap() + 1;
    assert_eq!(a.store.get(&u, &clicks).unwrap(), total);
    let Some(gaesup_state_core::KeyState::Sum(state)) = a.store.state(&clicks.full_key(&u)) else {
        panic!("no sum state");
    };
    assert_eq!(state.slots().count(), 1, "the old slots are folded");
    assert_eq!(state.folded().p, u64::try_from(writers).unwrap());

    b.clock.advance(15 * day);
    b.store.declare(&clicks).unwrap();
    for message in a.store.sync_messages() {
        let inbound = b.store.receive_text(&message.encode().unwrap());
        assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    }
    assert_eq!(b.store.get(&u, &clicks).unwrap(), total);

    let mut c = tab(3);
    c.clock.advance(15 * day);
    c.store.declare(&clicks).unwrap();
    let mut local = MemoryStorage::new();
    a.store.persist(Lifetime::Persistent, &mut local);
    let report = c.store.load(Lifetime::Persistent, &mut local).unwrap();
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(c.store.get(&u, &clicks).unwrap(), total);

    // Both keep counting together.
    let write = c.store.increment(&u, &clicks, 2).unwrap();
    send(&write, &mut b.store);
    assert_eq!(b.store.get(&u, &clicks).unwrap(), total + 2);
}

/// Concurrent writes of different fields can grow a merge key past what one
/// value may be (256 KiB). A write goes out as its changed fields, each
/// checked as a value, so the key stays writable: only a field or a whole
/// value over the limit is refused.
#[test]
fn a_merge_key_merged_past_one_value_s_limit_stays_writable() {
    let doc = key::<Value>("doc", Strategy::Merge);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&doc).unwrap();
    b.store.declare(&doc).unwrap();
    let u = unit("x/y/z");
    let (x, y) = ("x".repeat(150 << 10), "y".repeat(150 << 10));
    let from_a = a.store.set(&u, &doc, json!({ "a": x })).unwrap();
    let from_b = b.store.set(&u, &doc, json!({ "b": y })).unwrap();
    send(&from_b, &mut a.store);
    send(&from_a, &mut b.store);
    let merged = json!({ "a": x, "b": y });
    assert_eq!(a.store.get(&u, &doc).unwrap(), merged);

    // Both tabs edit the merged value as a whole.
    let edited = json!({ "a": x, "b": y, "n": 1 });
    send(
        &a.store.set(&u, &doc, edited.clone()).unwrap(),
        &mut b.store,
    );
    assert_eq!(b.store.get(&u, &doc).unwrap(), edited);
    let edited = json!({ "a": "short", "b": y, "n": 2 });
    let write = b
        .store
        .batch(|batch| batch.set(&u, &doc, edited.clone()))
        .unwrap();
    let text = write.message.unwrap().encode().unwrap();
    assert!(a.store.receive_text(&text).errors.is_empty());
    assert_eq!(a.store.get(&u, &doc).unwrap(), edited);

    // One tab alone grows it past the limit too; a snapshot of it still
    // restores, elsewhere and over a smaller value.
    let grown = json!({ "a": x, "b": y, "n": 3 });
    a.store.set(&u, &doc, grown.clone()).unwrap();
    let text = a.store.snapshot(&u, Scope::Apartment).to_json().unwrap();
    let mut c = tab(3);
    c.store.declare(&doc).unwrap();
    c.store.set(&u, &doc, json!({ "a": 1 })).unwrap();
    c.store.restore(&u, &text).unwrap();
    assert_eq!(c.store.get(&u, &doc).unwrap(), grown);
    a.store.set(&u, &doc, edited.clone()).unwrap();
    a.store.restore(&u, &text).unwrap();
    assert_eq!(a.store.get(&u, &doc).unwrap(), grown);
    a.store.set(&u, &doc, edited.clone()).unwrap();

    // A field over the limit is still refused, and changes nothing.
    let huge = "z".repeat(300 << 10);
    for strategy_write in [
        a.store
            .set(&u, &doc, json!({ "a": "short", "b": y, "n": huge })),
        a.store.set(&u, &doc, json!([huge])),
    ] {
        assert!(
            matches!(strategy_write, Err(Error::TooLarge { .. })),
            "{strategy_write:?}"
        );
    }
    assert_eq!(a.store.get(&u, &doc).unwrap(), edited);
}

#[test]
fn a_key_opened_again_is_the_same_key_only_for_the_same_declaration_and_unit() {
    let mut t = tab(1);
    let note = SharedKey::<i64>::builder("note")
        .scope(Scope::Private)
        .build()
        .unwrap();
    t.store.declare(&note).unwrap();
    let (one, two) = (unit("a/b/one"), unit("a/b/two"));
    // Alternating units, and the same unit twice in a row.
    for (writer, value) in [(&one, 1), (&two, 2), (&two, 3), (&one, 4)] {
        t.store.set(writer, &note, value).unwrap();
    }
    assert_eq!(t.store.get(&one, &note).unwrap(), 4);
    assert_eq!(t.store.get(&two, &note).unwrap(), 3);
    assert_ne!(note.full_key(&one), note.full_key(&two));
    // Another declaration of the same name, right after this one was
    // opened: the same rules read the same key, other rules are refused.
    let again = SharedKey::<i64>::builder("note")
        .scope(Scope::Private)
        .build()
        .unwrap();
    // Twice: the second time from what the first one opened.
    assert_eq!(t.store.get(&one, &again).unwrap(), 4);
    assert_eq!(t.store.get(&one, &again).unwrap(), 4);
    let other = SharedKey::<i64>::builder("note")
        .scope(Scope::Private)
        .strategy(Strategy::Sum)
        .build()
        .unwrap();
    t.store.get(&one, &note).unwrap();
    assert!(matches!(
        t.store.set(&one, &other, 5),
        Err(Error::KeyMismatch { .. })
    ));
    let undeclared = SharedKey::<i64>::builder("other").build().unwrap();
    t.store.get(&one, &note).unwrap();
    assert!(matches!(
        t.store.get(&one, &undeclared),
        Err(Error::UnknownKey { .. })
    ));
    assert_eq!(t.store.get(&one, &note).unwrap(), 4);
}

/// A restore naming keys nothing here declared yet waits for their
/// declaration, then writes them with the stamp of the moment it ran. A
/// write another tab made in between is newer and stays; one made before
/// the restore gives way to it. Before, the restore took the stamp of the
/// declaration, which could come hours later, and overwrote the newer
/// write everywhere.
#[test]
fn a_restore_held_for_a_declaration_is_as_old_as_the_restore() {
    let motto = key::<String>("motto", Strategy::LastWriteWins);
    let theme = key::<String>("theme", Strategy::LastWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    let u = unit("x/y/z");
    b.store.declare(&motto).unwrap();
    b.store.declare(&theme).unwrap();
    let before = b
        .store
        .set(&u, &theme, "written before".to_owned())
        .unwrap();
    b.clock.advance(10);
    a.clock.advance(10);
    let text = r#"{"format":"gaesup-snapshot","version":1,"scope":"apartment","keys":{"motto":{"schema":1,"value":"restored"},"theme":{"schema":1,"value":"restored"}}}"#;
    let restored = a.store.restore(&u, text).unwrap();
    assert_eq!(restored.held.len(), 2);
    b.clock.advance(10);
    let since = b.store.set(&u, &motto, "written since".to_owned()).unwrap();
    for write in [&before, &since] {
        send(write, &mut a.store);
    }
    // The declarations come a minute later.
    a.clock.advance(60_000);
    for declared in [
        a.store.declare(&motto).unwrap(),
        a.store.declare(&theme).unwrap(),
    ] {
        assert!(declared.errors.is_empty(), "{:?}", declared.errors);
        if let Some(message) = declared.message {
            let inbound = b.store.receive_text(&message.encode().unwrap());
            assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
        }
    }
    for tab in [&a, &b] {
        assert_eq!(tab.store.get(&u, &motto).unwrap(), "written since");
        assert_eq!(tab.store.get(&u, &theme).unwrap(), "restored");
    }
}

/// A write refused inside a batch fails the batch, even when the closure
/// goes on and returns `Ok`. Before, the batch committed the writes that
/// passed: "all or none" held only for a closure that passed the error on.
#[test]
fn a_write_refused_inside_a_batch_fails_it_even_if_the_closure_goes_on() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let claim = key::<String>("claim", Strategy::FirstWriteWins);
    let mut a = tab(1);
    a.store.declare(&count).unwrap();
    a.store.declare(&claim).unwrap();
    let u = unit("x/y/z");
    a.store.set(&u, &claim, "first".to_owned()).unwrap();
    let seq = a.store.set(&u, &count, 1).unwrap().op.id.seq;
    let refused = a.store.batch(|batch| {
        batch.set(&u, &count, 2)?;
        // Refused (the claim is taken): the closure swallows it.
        let _ = batch.set(&u, &claim, "second".to_owned());
        batch.increment(&u, &count, 1).ok();
        Ok(())
    });
    assert!(
        matches!(refused, Err(Error::FirstWriteWins { .. })),
        "{refused:?}"
    );
    assert_eq!(a.store.get(&u, &count).unwrap(), 1);
    assert_eq!(a.store.get(&u, &claim).unwrap(), "first");
    // Nothing was used up: the next write takes the next op id.
    assert_eq!(a.store.set(&u, &count, 3).unwrap().op.id.seq, seq + 1);
}

/// A snapshot of declared and undeclared keys: `count` and, for each
/// name of `undeclared`, a string of `len` bytes.
fn snapshot_text(count: i64, undeclared: &[&str], len: usize) -> String {
    let mut keys = serde_json::Map::new();
    keys.insert("count".into(), json!({"schema": 1, "value": count}));
    for name in undeclared {
        keys.insert(
            (*name).into(),
            json!({"schema": 1, "value": "x".repeat(len)}),
        );
    }
    json!({"format": "gaesup-snapshot", "version": 1, "scope": "apartment", "keys": keys})
        .to_string()
}

/// A restore whose undeclared keys cannot be held (past the held bytes)
/// changes nothing. Before, it wrote the declared keys first, then failed
/// holding the rest: this tab kept the restored values (saved later)
/// while nothing was broadcast and the caller heard it had failed.
#[test]
fn a_restore_that_cannot_hold_its_undeclared_keys_writes_nothing() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let mut a = tab(1);
    a.store.declare(&count).unwrap();
    let u = unit("x/y/z");
    a.store.set(&u, &count, 4).unwrap();
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let text = snapshot_text(9, &names, 210 << 10);
    let err = a.store.restore(&u, &text).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    assert_eq!(a.store.get(&u, &count).unwrap(), 4);
    assert_eq!(a.store.held(), (0, 0));
}

/// Restoring the same snapshot again replaces what the first restore
/// held for its undeclared keys. Before, each restore added the held
/// value's size again and never took the replaced one off: five restores
/// of a 200 KiB value filled the 1 MiB held for undeclared keys and
/// clocks ahead, and every op such a key or clock needed was refused.
#[test]
fn restoring_a_snapshot_again_holds_its_undeclared_keys_once() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let mut a = tab(1);
    a.store.declare(&count).unwrap();
    let u = unit("x/y/z");
    let text = snapshot_text(9, &["later"], 200 << 10);
    a.store.restore(&u, &text).unwrap();
    let once = a.store.held();
    assert_eq!(once.1, 1);
    for _ in 0..5 {
        a.store.restore(&u, &text).unwrap();
    }
    assert_eq!(a.store.held(), once);
    let later = key::<String>("later", Strategy::LastWriteWins);
    a.store.declare(&later).unwrap();
    assert_eq!(a.store.held(), (0, 0));
    assert_eq!(a.store.get(&u, &later).unwrap(), "x".repeat(200 << 10));
}

/// A restore is a write like any other: refused with `outbox_full` for a
/// stored key while the outbox is full, as `set` is. Before, it queued
/// its ops past the outbox's bound.
#[test]
fn a_restore_is_refused_while_the_outbox_is_full() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let mut a = tab(1);
    a.store.declare(&count).unwrap();
    let u = unit("x/y/z");
    a.store.set_backlog(Some(10_000));
    assert!(matches!(
        a.store.set(&u, &count, 1),
        Err(Error::Backlog { .. })
    ));
    let err = a.store.restore(&u, &snapshot_text(9, &[], 0)).unwrap_err();
    assert!(matches!(err, Error::Backlog { .. }), "{err:?}");
    a.store.set_backlog(None);
    a.store.restore(&u, &snapshot_text(9, &[], 0)).unwrap();
    assert_eq!(a.store.get(&u, &count).unwrap(), 9);
}

/// Reverting an increment that a later reset observed changes nothing
/// (the reset counted it away already), and neither does reverting one
/// again. Before, both subtracted it once more: the counter went to -5
/// where another tab's reset had set 0, and a second revert of "+3" took
/// 3 off again.
#[test]
fn reverting_an_increment_a_reset_observed_or_already_reverted_changes_nothing() {
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let (mut a, mut b) = (tab(1), tab(2));
    a.store.declare(&clicks).unwrap();
    b.store.declare(&clicks).unwrap();
    let u = unit("x/y/z");
    let five = a.store.increment(&u, &clicks, 5).unwrap();
    send(&five, &mut b.store);
    b.clock.advance(1);
    let reset = b.store.set(&u, &clicks, 0).unwrap();
    send(&reset, &mut a.store);
    assert!(a.store.revert(&u, &clicks, &five).unwrap().is_none());
    let three = a.store.increment(&u, &clicks, 3).unwrap();
    let undo = a.store.revert(&u, &clicks, &three).unwrap().unwrap();
    send(&undo, &mut b.store);
    assert!(a.store.revert(&u, &clicks, &three).unwrap().is_none());
    for tab in [&a, &b] {
        assert_eq!(tab.store.get(&u, &clicks).unwrap(), 0);
    }
    // An increment made after the reset is still undone.
    let two = a.store.increment(&u, &clicks, 2).unwrap();
    assert!(a.store.revert(&u, &clicks, &two).unwrap().is_some());
    assert_eq!(a.store.get(&u, &clicks).unwrap(), 0);
}

/// A typed write whose JSON holds a null its type cannot read back is
/// refused where it is made: serde_json writes a NaN or an infinite float
/// as null. Before, the writing tab stored the null (its own reads of the
/// key then failed) while every other replica refused the write: they
/// diverged. A null the type reads (an `Option`'s `None`) still goes in,
/// in place for a list's items.
#[test]
fn a_nan_in_a_typed_write_is_refused_not_stored_as_null() {
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Row {
        w: f64,
        note: Option<String>,
    }
    let ratio = key::<f64>("ratio", Strategy::LastWriteWins);
    let rows = key::<Vec<Row>>("rows", Strategy::LastWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    for tab in [&mut a, &mut b] {
        tab.store.declare(&ratio).unwrap();
        tab.store.declare(&rows).unwrap();
    }
    let u = unit("x/y/z");
    let mismatch = |result: Result<Write, Error>| {
        assert!(
            matches!(result, Err(Error::TypeMismatch { .. })),
            "{result:?}"
        );
    };
    mismatch(a.store.set(&u, &ratio, f64::NAN));
    mismatch(a.store.set(&u, &ratio, f64::INFINITY));
    let row = |w: f64, note: Option<&str>| Row {
        w,
        note: note.map(str::to_owned),
    };
    let first = a
        .store
        .set(&u, &rows, vec![row(1.0, None), row(2.0, Some("b"))])
        .unwrap();
    send(&first, &mut b.store);
    mismatch(
        a.store
            .set_items(&u, &rows, [(1, row(f64::NAN, Some("b")))]),
    );
    let refused = a
        .store
        .batch(|batch| batch.set(&u, &rows, vec![row(f64::NEG_INFINITY, None)]));
    assert!(
        matches!(refused, Err(Error::TypeMismatch { .. })),
        "{refused:?}"
    );
    let items = a.store.set_items(&u, &rows, [(0, row(3.0, None))]).unwrap();
    send(&items, &mut b.store);
    for tab in [&a, &b] {
        assert_eq!(tab.store.get(&u, &ratio).unwrap(), 0.0);
        assert_eq!(
            tab.store.get(&u, &rows).unwrap(),
            [row(3.0, None), row(2.0, Some("b"))]
        );
    }
}

/// A restore held for a key's declaration is written when the key is
/// declared even if the outbox is full then (it was taken when the
/// restore ran); and a counter's held restore gives way to a reset made
/// since the restore. Before, the first was refused at the declaration
/// and lost for good, the second overwrote the newer reset.
#[test]
fn a_held_restore_outlives_a_full_outbox_and_gives_way_to_a_newer_reset() {
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let clicks = key::<i64>("clicks", Strategy::Sum);
    let (mut a, mut b) = (tab(1), tab(2));
    b.store.declare(&clicks).unwrap();
    let u = unit("x/y/z");
    let text = r#"{"format":"gaesup-snapshot","version":1,"scope":"apartment","keys":{"count":{"schema":1,"value":7},"clicks":{"schema":1,"value":3}}}"#;
    assert_eq!(a.store.restore(&u, text).unwrap().held.len(), 2);
    b.clock.advance(10);
    let reset = b.store.set(&u, &clicks, 0).unwrap();
    send(&reset, &mut a.store);
    a.clock.advance(10);
    a.store.set_backlog(Some(10_000));
    let declared = a.store.declare(&count).unwrap();
    assert!(declared.errors.is_empty(), "{:?}", declared.errors);
    assert_eq!(a.store.get(&u, &count).unwrap(), 7);
    a.store.set_backlog(None);
    let declared = a.store.declare(&clicks).unwrap();
    assert!(declared.errors.is_empty() && declared.message.is_none());
    assert_eq!(a.store.get(&u, &clicks).unwrap(), 0);
}

/// A first-write-wins key's held restore is written as of its writing: a
/// first write another tab made after the restore ran, but before this
/// tab declared the key, stays the first everywhere.
#[test]
fn a_held_restore_of_a_first_write_wins_key_does_not_displace_a_first_write_made_since() {
    let claim = key::<String>("claim", Strategy::FirstWriteWins);
    let (mut a, mut b) = (tab(1), tab(2));
    b.store.declare(&claim).unwrap();
    let u = unit("x/y/z");
    let text = r#"{"format":"gaesup-snapshot","version":1,"scope":"apartment","keys":{"claim":{"schema":1,"value":"restored"}}}"#;
    a.store.restore(&u, text).unwrap();
    b.clock.advance(10);
    let first = b.store.set(&u, &claim, "theirs".to_owned()).unwrap();
    a.clock.advance(60_000);
    let declared = a.store.declare(&claim).unwrap();
    let restore = declared.message.unwrap().encode().unwrap();
    assert!(b.store.receive_text(&restore).errors.is_empty());
    send(&first, &mut a.store);
    for tab in [&a, &b] {
        assert_eq!(tab.store.get(&u, &claim).unwrap(), "theirs");
    }
}

/// A restore refused (a value of the wrong type) changes nothing, not
/// even by setting aside this tab's writes stamped ahead of a clock set
/// back, which only a write does.
#[test]
fn a_refused_restore_sets_nothing_aside() {
    const DAY: u64 = 24 * 3_600_000;
    let count = key::<i64>("count", Strategy::LastWriteWins);
    let mut a = tab(1);
    a.store.declare(&count).unwrap();
    let u = unit("x/y/z");
    a.clock.set(NOW + 3 * DAY);
    a.store.set(&u, &count, 5).unwrap();
    a.clock.set(NOW);
    let text = r#"{"format":"gaesup-snapshot","version":1,"scope":"apartment","keys":{"count":{"schema":1,"value":"five"}}}"#;
    let err = a.store.restore(&u, text).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    assert_eq!(a.store.get(&u, &count).unwrap(), 5);
}
