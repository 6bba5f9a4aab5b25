//! Hostile and broken input: corrupt storage, wrong types, newer schemas,
//! huge strings, deep nesting, hostile names, malformed messages and
//! snapshots, failing storage. In every case: no panic, a typed error, and
//! nothing overwritten.

// Test and bench code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gaesup_state_core::{
    Access, Error, FaultyStorage, FullKey, IdRule, Lifetime, MAX_JSON_DEPTH, MAX_VALUE_DEPTH,
    ManualClock, MemoryStorage, Message, Replica, Scope, SharedKey, Snapshot, Storage,
    StorageError, Strategy, TabId, UnitAddress,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000_000;

fn unit(text: &str) -> UnitAddress {
    text.parse().unwrap()
}

fn count_key() -> SharedKey<i64> {
    SharedKey::<i64>::builder("count")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap()
}

fn text_key() -> SharedKey<String> {
    SharedKey::<String>::builder("text")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap()
}

fn v2_key() -> SharedKey<Value> {
    fn wrap(v: Value) -> Result<Value, String> {
        Ok(json!({ "v1": v }))
    }
    SharedKey::<Value>::builder("versioned")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .schema(2)
        .migrate(1, wrap)
        .build()
        .unwrap()
}

fn store(tab: u64) -> Replica {
    let mut store = Replica::new(TabId::new(tab), ManualClock::new(NOW));
    store.declare(&count_key()).unwrap();
    store.declare(&text_key()).unwrap();
    store.declare(&v2_key()).unwrap();
    store
}

fn snapshot_of(store: &Replica) -> String {
    serde_json::to_string(store.states()).unwrap()
}

/// A real, valid op message for the count key, from another tab.
fn valid_message() -> String {
    let mut other = store(2);
    let write = other.set(&unit("a/b/u"), &count_key(), 7).unwrap();
    write.message.unwrap().encode().unwrap()
}

fn deep_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

// ----- storage -------------------------------------------------------------

fn stored(storage: &mut MemoryStorage, key: &str, raw: &str) -> String {
    let storage_key = Replica::storage_key(&FullKey::parse(key).unwrap());
    storage.set(&storage_key, raw).unwrap();
    storage_key
}

/// Loads `raw` as the count key's entry and checks it is quarantined
/// with an error matching `expect`, the original kept, the default read.
fn assert_quarantined(key: &str, raw: &str, expect: impl Fn(&Error) -> bool) {
    let mut storage = MemoryStorage::new();
    let storage_key = stored(&mut storage, key, raw);
    let mut store = store(1);
    let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let quarantine = &report.quarantined[0];
    assert!(
        expect(&quarantine.error),
        "unexpected error {:?}",
        quarantine.error
    );
    assert_eq!(quarantine.copy_error, None);
    let full = FullKey::parse(key).unwrap();
    assert_eq!(
        storage
            .get(&Replica::quarantine_key(&full))
            .unwrap()
            .as_deref(),
        Some(raw)
    );
    // The key reads its default and keeps working in memory.
    let u = unit("a/b/u");
    match full.name() {
        "count" => {
            assert_eq!(store.get(&u, &count_key()).unwrap(), 0);
            store.set(&u, &count_key(), 5).unwrap();
        }
        "text" => {
            assert_eq!(store.get(&u, &text_key()).unwrap(), "");
            store.set(&u, &text_key(), "new".to_owned()).unwrap();
        }
        _ => {
            store.set(&u, &v2_key(), json!(1)).unwrap();
        }
    }
    // Persisting never overwrites the original entry.
    let report = store.persist(Lifetime::Persistent, &mut storage);
    assert!(report.written.is_empty());
    assert_eq!(storage.get(&storage_key).unwrap().as_deref(), Some(raw));
    // Until the user discards it.
    store.discard_quarantine(&full, &mut storage).unwrap();
    let report = store.persist(Lifetime::Persistent, &mut storage);
    assert_eq!(report.written, vec![full.clone()]);
    assert_eq!(storage.get(&Replica::quarantine_key(&full)).unwrap(), None);
    assert_ne!(storage.get(&storage_key).unwrap().as_deref(), Some(raw));
}

/// Discarding an entry an older tab set aside (a newer schema) removes
/// only what it set aside: an entry the newer tab wrote since stays, and
/// the older tab sets it aside again rather than saving over it.
#[test]
fn discarding_a_set_aside_entry_leaves_one_a_newer_tab_wrote_since() {
    fn v1_key() -> SharedKey<Value> {
        SharedKey::<Value>::builder("versioned")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap()
    }
    let u = unit("a/b/u");
    let mut storage = MemoryStorage::new();
    let mut newer = store(1);
    newer.set(&u, &v2_key(), json!({ "v1": 1 })).unwrap();
    newer.persist(Lifetime::Persistent, &mut storage);
    let mut older = Replica::new(TabId::new(2), ManualClock::new(NOW));
    older.declare(&v1_key()).unwrap();
    let report = older.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let full = report.quarantined[0].key.clone();
    // The newer tab writes again after the older one set the entry aside.
    newer.set(&u, &v2_key(), json!({ "v1": 2 })).unwrap();
    newer.persist(Lifetime::Persistent, &mut storage);
    let written = storage.get(&Replica::storage_key(&full)).unwrap();
    older.discard_quarantine(&full, &mut storage).unwrap();
    assert_eq!(storage.get(&Replica::storage_key(&full)).unwrap(), written);
    assert_eq!(storage.get(&Replica::quarantine_key(&full)).unwrap(), None);
    // The older tab's own write is not saved over it: set aside again.
    older.set(&u, &v1_key(), json!("old")).unwrap();
    let report = older.persist(Lifetime::Persistent, &mut storage);
    assert!(report.written.is_empty(), "{report:?}");
    assert_eq!(storage.get(&Replica::storage_key(&full)).unwrap(), written);
    let mut fresh = store(3);
    fresh.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(fresh.get(&u, &v2_key()).unwrap(), json!({ "v1": 2 }));
}

#[test]
fn corrupt_json_is_quarantined_and_never_overwritten() {
    for raw in [
        "{not json",
        "",
        "null",
        "[]",
        r#"{"schema":1}"#,
        r#"{"schema":1,"state":{"strategy":"nope","data":{}}}"#,
        r#"{"schema":"1","state":{"strategy":"last_write_wins","data":{}}}"#,
        r#"{"schema":-1,"state":{"strategy":"last_write_wins","data":{}}}"#,
    ] {
        assert_quarantined("apartment/a/count", raw, |e| {
            matches!(e, Error::Corrupt { .. })
        });
    }
}

fn lww_entry(value: Value, writer: &str, wall: u64) -> Value {
    json!({
        "stamp": {"wall_ms": wall, "counter": 0, "tab": "00000000000000aa"},
        "id": {"tab": "00000000000000aa", "seq": 1},
        "writer": writer,
        "value": value,
    })
}

fn lww_stored(schema: u32, value: Value) -> String {
    json!({
        "schema": schema,
        "state": {"strategy": "last_write_wins", "data": {"entry": lww_entry(value, "a/b/u", NOW)}},
    })
    .to_string()
}

/// A name given twice in one object, anywhere (the envelope, an op, a
/// user's value), is refused by every reader of the state manager's
/// formats: JSON leaves open which of the two counts, and two readers of
/// one text must not see two documents.
#[test]
fn a_field_named_twice_is_refused_in_messages_storage_and_snapshots() {
    let duplicate = |text: &str, at: &str| {
        assert!(text.contains(at), "{at} not in {text}");
        text.replacen(at, &format!("{at}{at}"), 1)
    };
    let message = valid_message();
    let mut receiver = store(1);
    for twice in [
        duplicate(&message, r#""v":2,"#),
        duplicate(&message, r#""schema":1,"#),
        message.replacen(r#""value":7"#, r#""value":{"a":1,"a":2}"#, 1),
    ] {
        let err = Message::decode(&twice).unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason.contains("duplicate field")),
            "{twice}: {err:?}"
        );
        assert!(receiver.receive_text(&twice).errors.len() == 1);
    }
    assert_eq!(receiver.get(&unit("a/b/u"), &count_key()).unwrap(), 0);
    // The envelope holds `v`, `type` and `body` and nothing else.
    let extra = message.replacen(r#""v":2,"#, r#""v":2,"x":1,"#, 1);
    let err = Message::decode(&extra).unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { reason, .. } if reason.contains("unknown field `x`")),
        "{extra}: {err:?}"
    );
    // Storage: the entry is set aside, kept as it was.
    let stored = lww_stored(1, json!({"x": 1})).replacen(r#""x":1"#, r#""x":1,"x":2"#, 1);
    assert_quarantined(
        "apartment/a/count",
        &stored,
        |err| matches!(err, Error::Corrupt { reason, .. } if reason.contains("duplicate field")),
    );
    // A snapshot.
    let mut writer = store(3);
    writer
        .set(&unit("a/b/u"), &text_key(), "x".to_owned())
        .unwrap();
    let snapshot = writer
        .snapshot(&unit("a/b/u"), Scope::Apartment)
        .to_json()
        .unwrap();
    let twice = duplicate(&snapshot, r#""schema":1,"#);
    let err = Snapshot::parse(&twice).unwrap_err();
    assert!(
        err.to_string().contains("duplicate field"),
        "{twice}: {err}"
    );
}

#[test]
fn wrong_types_are_quarantined() {
    assert_quarantined("apartment/a/count", &lww_stored(1, json!("seven")), |e| {
        matches!(e, Error::TypeMismatch { .. })
    });
    // A state of another strategy than the key's.
    let sum = r#"{"schema":1,"state":{"strategy":"sum","data":{"tabs":{}}}}"#;
    assert_quarantined("apartment/a/count", sum, |e| {
        matches!(e, Error::WrongStrategy { .. })
    });
}

#[test]
fn newer_schema_is_quarantined() {
    assert_quarantined("apartment/a/versioned", &lww_stored(3, json!(1)), |e| {
        matches!(
            e,
            Error::NewerSchema {
                found: 3,
                supported: 2,
                ..
            }
        )
    });
}

#[test]
fn failing_and_missing_migrations_are_quarantined() {
    assert_quarantined("apartment/a/count", &lww_stored(0, json!(1)), |e| {
        matches!(e, Error::Migration { .. })
    });
}

#[test]
fn older_schema_is_migrated_on_load() {
    let mut storage = MemoryStorage::new();
    stored(
        &mut storage,
        "apartment/a/versioned",
        &lww_stored(1, json!(5)),
    );
    let mut store = store(1);
    let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
    assert!(report.quarantined.is_empty(), "{report:?}");
    assert_eq!(
        store.get(&unit("a/b/u"), &v2_key()).unwrap(),
        json!({"v1": 5})
    );
}

#[test]
fn forged_writers_and_far_future_stamps_in_storage_are_quarantined() {
    let restricted = SharedKey::<i64>::builder("count")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .write(Access::units(["owner"]).unwrap())
        .build()
        .unwrap();
    let mut storage = MemoryStorage::new();
    stored(&mut storage, "apartment/a/count", &lww_stored(1, json!(1)));
    let mut store = Replica::new(TabId::new(1), ManualClock::new(NOW));
    store.declare(&restricted).unwrap();
    let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
    assert!(matches!(
        report.quarantined[0].error,
        Error::PermissionDenied { .. }
    ));

    let future = json!({
        "schema": 1,
        "state": {"strategy": "last_write_wins", "data": {"entry": lww_entry(json!(1), "a/b/u", u64::MAX)}},
    })
    .to_string();
    assert_quarantined("apartment/a/count", &future, |e| {
        matches!(e, Error::ClockSkew { .. })
    });
}

#[test]
fn four_megabyte_strings_are_refused_everywhere() {
    let huge = "x".repeat(4 << 20);
    let u = unit("a/b/u");
    let mut store = store(1);
    let before = snapshot_of(&store);

    // A local write.
    assert!(matches!(
        store.set(&u, &text_key(), huge.clone()),
        Err(Error::TooLarge { .. })
    ));
    // A message.
    let message = json!({"v": 2, "type": "ops", "body": {"ops": [{"value": huge}]}}).to_string();
    let inbound = store.receive_text(&message);
    assert!(matches!(inbound.errors[..], [Error::TooLarge { .. }]));
    // A snapshot.
    let snapshot = json!({
        "format": "gaesup-snapshot", "version": 1, "scope": "apartment",
        "keys": {"text": {"schema": 1, "value": huge}},
    })
    .to_string();
    assert!(matches!(
        store.restore(&u, &snapshot),
        Err(Error::TooLarge { .. })
    ));
    // A key name.
    let err = SharedKey::<i64>::builder(&huge).build().unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidId {
            rule: IdRule::TooLong,
            ..
        }
    ));
    assert!(err.to_string().len() < 300, "errors do not echo megabytes");
    assert_eq!(snapshot_of(&store), before);

    // A stored entry just under the storage cap: a value over the value cap.
    let big = "y".repeat(1 << 20);
    assert_quarantined("apartment/a/text", &lww_stored(1, json!(big)), |e| {
        matches!(e, Error::TooLarge { .. })
    });
    // A stored entry over the storage cap.
    assert_quarantined("apartment/a/text", &lww_stored(1, json!(huge)), |e| {
        matches!(e, Error::TooLarge { .. })
    });
}

#[test]
fn deep_nesting_is_a_typed_error_not_a_stack_overflow() {
    let u = unit("a/b/u");
    let mut store = store(1);
    let before = snapshot_of(&store);
    for depth in [MAX_JSON_DEPTH + 1, 10_000, 1_000_000] {
        let deep = deep_array(depth);
        let inbound = store.receive_text(&deep);
        assert!(
            matches!(
                inbound.errors[..],
                [Error::TooDeep { .. }] | [Error::TooLarge { .. }]
            ),
            "{:?}",
            inbound.errors
        );
        let wrapped = format!(r#"{{"v":2,"type":"ops","body":{{"ops":[{{"value":{deep}}}]}}}}"#);
        assert!(!store.receive_text(&wrapped).errors.is_empty());
        assert!(Snapshot::parse(&deep).is_err());
        assert!(store.restore(&u, &deep).is_err());
    }
    assert_quarantined("apartment/a/count", &deep_array(500), |e| {
        matches!(e, Error::TooDeep { .. })
    });
    // A local value deeper than the value limit.
    let mut value = json!(1);
    for _ in 0..=MAX_VALUE_DEPTH {
        value = json!([value]);
    }
    assert!(matches!(
        store.set(&u, &v2_key(), value),
        Err(Error::TooDeep { .. })
    ));
    assert_eq!(snapshot_of(&store), before);
}

#[test]
fn nesting_at_the_limits_is_handled_and_one_more_level_is_refused() {
    // The deepest value a local write accepts travels and applies fine.
    let mut value = json!(1);
    for _ in 0..MAX_VALUE_DEPTH {
        value = json!([value]);
    }
    let u = unit("a/b/u");
    let mut sender = store(2);
    let write = sender.set(&u, &v2_key(), value.clone()).unwrap();
    let mut store = store(1);
    let inbound = store.receive_text(&write.message.unwrap().encode().unwrap());
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(store.get(&u, &v2_key()).unwrap(), value);
    // A document exactly at the parser's depth limit reaches serde and
    // comes back as a typed error, not a stack overflow.
    let at_limit = format!(
        r#"{{"v":2,"type":"ops","body":{{"ops":[{{"value":{}}}]}}}}"#,
        deep_array(MAX_JSON_DEPTH - 4)
    );
    let inbound = store.receive_text(&at_limit);
    assert!(matches!(inbound.errors[..], [Error::Malformed { .. }]));
}

#[test]
fn hostile_key_names_are_typed_errors() {
    let long = "k".repeat(65);
    for name in [
        "",
        "a/b",
        "..",
        "a..b",
        ".",
        "__proto__",
        "\u{0}",
        "tab\there",
        " lead",
        "trail ",
        "\u{202e}\n",
        &long,
    ] {
        assert!(
            matches!(
                SharedKey::<i64>::builder(name).build(),
                Err(Error::InvalidId { .. })
            ),
            "{name:?}"
        );
        assert!(format!("a/b/{name}").parse::<UnitAddress>().is_err());
        assert!(FullKey::parse(&format!("global/{name}")).is_err());
    }
    // A hostile full key inside an otherwise valid message.
    let mut store = store(1);
    let message = valid_message().replace("apartment/a/count", "apartment/../count");
    let inbound = store.receive_text(&message);
    assert!(matches!(inbound.errors[..], [Error::Malformed { .. }]));
    let message = valid_message().replace("apartment/a/count", "apartment/a/__proto__");
    assert!(!store.receive_text(&message).errors.is_empty());
    assert!(store.states().is_empty());
}

#[test]
fn malformed_op_messages_are_refused_and_change_nothing() {
    let mut store = store(1);
    store.set(&unit("a/b/u"), &count_key(), 1).unwrap();
    let before = snapshot_of(&store);
    let valid = valid_message();
    let op: Value = serde_json::from_str::<Value>(&valid).unwrap()["body"]["ops"][0].clone();
    let with = |path: &[&str], value: Value| {
        let mut op = op.clone();
        let mut at = &mut op;
        for step in &path[..path.len() - 1] {
            at = &mut at[*step];
        }
        at[path[path.len() - 1]] = value;
        json!({"v": 2, "type": "ops", "body": {"ops": [op]}}).to_string()
    };
    let cases = vec![
        String::new(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "\"ops\"".into(),
        r#"{"v":2,"type":"ops"}"#.into(),
        r#"{"v":2,"type":"ops","body":{"ops":[]}}"#.into(),
        r#"{"v":2,"type":"nope","body":{}}"#.into(),
        r#"{"v":2,"type":"sync_request","body":{"from":"zz"}}"#.into(),
        r#"{"v":3,"type":"ops","body":{"ops":[]}}"#.into(),
        r#"{"type":"ops","body":{"ops":[]}}"#.into(),
        valid[..valid.len() / 2].to_owned(),
        with(&["key"], json!("undeclared/a/b")),
        with(&["key"], json!(42)),
        with(&["writer"], json!("a/b")),
        with(&["writer"], json!("other-apartment/b/u")),
        with(&["id", "seq"], json!(-1)),
        with(&["id", "seq"], json!(1e300)),
        with(&["id", "tab"], json!("0000000000000099")),
        with(&["stamp", "wall_ms"], json!(u64::MAX)),
        with(&["stamp", "counter"], json!(u64::MAX)),
        with(&["schema"], json!(99)),
        with(
            &["payload"],
            json!({"kind": "count", "data": {"p": 1, "n": 0}}),
        ),
        with(
            &["payload"],
            json!({"kind": "set", "data": {"value": "not a number"}}),
        ),
        with(&["payload"], json!({"kind": "set"})),
        with(
            &["payload"],
            json!({"kind": "patch", "data": {"set": {"a": 1}, "remove": ["a"]}}),
        ),
        with(
            &["payload"],
            json!({"kind": "resolve", "data": {"value": 1, "supersedes": [op["id"].clone()]}}),
        ),
    ];
    for text in &cases {
        let inbound = store.receive_text(text);
        assert!(!inbound.errors.is_empty(), "accepted: {text}");
        assert!(inbound.changes.is_empty());
        assert_eq!(snapshot_of(&store), before, "changed by: {text}");
    }
    // An op for a key this tab has not declared is neither refused nor
    // applied: it is held for when the key is declared.
    let undeclared = with(&["key"], json!("apartment/a/undeclared"));
    let inbound = store.receive_text(&undeclared);
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(inbound.held, 1);
    assert_eq!(snapshot_of(&store), before);
    // The valid message itself is accepted, twice harmlessly.
    assert!(store.receive_text(&valid).errors.is_empty());
    assert!(store.receive_text(&valid).changes.is_empty());
}

#[test]
fn a_group_with_one_bad_op_applies_nothing() {
    let mut other = store(2);
    let u = unit("a/b/u");
    let batch = other
        .batch(|b| {
            b.set(&u, &count_key(), 3)?;
            b.set(&u, &text_key(), "hi".to_owned())
        })
        .unwrap();
    let mut group = batch.group.clone();
    group.ops[1].writer = unit("elsewhere/b/u");
    let mut store = store(1);
    let inbound = store.receive(&Message::Ops(group));
    assert!(matches!(inbound.errors[..], [Error::OutOfScope { .. }]));
    assert!(store.states().is_empty());
    assert_eq!(store.receive(&batch.message.unwrap()).changes.len(), 2);
}

#[test]
fn bad_snapshots_change_nothing() {
    let u = unit("a/b/u");
    let mut store = store(1);
    store.set(&u, &count_key(), 1).unwrap();
    let before = snapshot_of(&store);
    let snap = |keys: Value| {
        json!({"format": "gaesup-snapshot", "version": 1, "scope": "apartment", "keys": keys})
            .to_string()
    };
    let cases = [
        String::from("not json"),
        json!({"format": "other", "version": 1, "scope": "apartment", "keys": {}}).to_string(),
        json!({"format": "gaesup-snapshot", "version": 2, "scope": "apartment", "keys": {}})
            .to_string(),
        json!({"format": "gaesup-snapshot", "version": 1, "scope": "apartment", "keys": {}, "x": 1})
            .to_string(),
        snap(json!({"count": {"schema": 1, "value": 2}, "text": {"schema": 1, "value": 5}})),
        snap(json!({"count": {"schema": 1, "value": 2}, "versioned": {"schema": 3, "value": 1}})),
        snap(json!({"__proto__": {"schema": 1, "value": 2}})),
    ];
    for text in &cases {
        assert!(store.restore(&u, text).is_err(), "accepted: {text}");
        assert_eq!(snapshot_of(&store), before, "changed by: {text}");
    }
}

#[test]
fn storage_failures_are_typed_and_retried() {
    let u = unit("a/b/u");
    let mut storage = FaultyStorage::new(MemoryStorage::new());
    let mut store = store(1);
    store.set(&u, &count_key(), 4).unwrap();
    let full = count_key().full_key(&u);

    storage.fail_writes(Some(StorageError::QuotaExceeded));
    let report = store.persist(Lifetime::Persistent, &mut storage);
    assert_eq!(
        report.failed,
        vec![(full.clone(), Error::Storage(StorageError::QuotaExceeded))]
    );
    assert!(store.is_dirty(&full));

    storage.fail_writes(None);
    storage.set_unavailable(true);
    assert_eq!(
        store.load(Lifetime::Persistent, &mut storage).unwrap_err(),
        Error::Storage(StorageError::Unavailable)
    );
    assert!(
        !store
            .persist(Lifetime::Persistent, &mut storage)
            .failed
            .is_empty()
    );

    storage.set_unavailable(false);
    let report = store.persist(Lifetime::Persistent, &mut storage);
    assert_eq!(report.written, vec![full.clone()]);
    assert!(!store.is_dirty(&full));

    // Another tab calls localStorage.clear(): state survives in memory and
    // is written back.
    storage.inner_mut().clear();
    store.mark_all_dirty();
    assert_eq!(
        store.persist(Lifetime::Persistent, &mut storage).written,
        vec![full]
    );
    let mut reloaded = Replica::new(TabId::new(1), ManualClock::new(NOW));
    reloaded.declare(&count_key()).unwrap();
    reloaded.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(reloaded.get(&u, &count_key()).unwrap(), 4);
}

#[test]
fn a_full_quota_while_quarantining_keeps_the_original() {
    let raw = "{corrupt";
    let mut inner = MemoryStorage::with_quota(200);
    let storage_key = stored(&mut inner, "apartment/a/count", raw);
    let mut storage = FaultyStorage::new(inner);
    storage.fail_next_write(StorageError::QuotaExceeded);
    let mut store = store(1);
    let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
    assert_eq!(
        report.quarantined[0].copy_error,
        Some(StorageError::QuotaExceeded)
    );
    assert_eq!(storage.get(&storage_key).unwrap().as_deref(), Some(raw));
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_or_changes_state(text in ".{0,200}") {
        let mut store = store(1);
        store.set(&unit("a/b/u"), &count_key(), 1).unwrap();
        let before = snapshot_of(&store);
        let inbound = store.receive_text(&text);
        prop_assert!(!inbound.errors.is_empty());
        prop_assert_eq!(snapshot_of(&store), before);
    }

    #[test]
    fn mutated_messages_never_panic(
        cut in 0usize..400,
        splice in "[\\[\\]{}\",:0-9a-z/._-]{0,8}",
    ) {
        let valid = valid_message();
        let mut cut = cut.min(valid.len());
        while !valid.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = format!("{}{}{}", &valid[..cut], splice, &valid[cut..]);
        let mut store = store(1);
        let inbound = store.receive_text(&text);
        // Either refused with nothing changed, or a valid message applied.
        if !inbound.errors.is_empty() {
            prop_assert!(store.states().is_empty());
        }
    }
}

#[test]
fn a_restricted_sum_key_refuses_forged_totals_from_other_units() {
    let clicks = SharedKey::<i64>::builder("clicks")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .strategy(Strategy::Sum)
        .write(Access::units(["counter"]).unwrap())
        .build()
        .unwrap();
    let mut good = Replica::new(TabId::new(2), ManualClock::new(NOW));
    good.declare(&clicks).unwrap();
    let write = good.increment(&unit("a/b/counter"), &clicks, 1).unwrap();
    let mut op = write.op.clone();
    op.writer = unit("a/b/intruder");
    let mut store = Replica::new(TabId::new(1), ManualClock::new(NOW));
    store.declare(&clicks).unwrap();
    assert!(matches!(
        store.apply_remote(&op),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(store.states().is_empty());
}

#[test]
fn forged_unnormalized_states_are_normalized_on_receipt() {
    let doc = SharedKey::<Value>::builder("doc")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .strategy(Strategy::Merge)
        .build()
        .unwrap();
    // A merge state whose field entry is older than its base: a replica
    // would have pruned it.
    let entry = |wall: u64, seq: u64| {
        json!({
            "stamp": {"wall_ms": wall, "counter": 0, "tab": "00000000000000aa"},
            "id": {"tab": "00000000000000aa", "seq": seq},
            "writer": "a/b/u",
        })
    };
    let mut base = entry(NOW, 2);
    base["value"] = json!({"x": 1});
    let mut stale = entry(NOW - 5, 1);
    stale["value"] = json!(9);
    let text = json!({
        "v": 2,
        "type": "sync_state",
        "body": {"from": "00000000000000aa", "states": [{
            "key": "apartment/a/doc",
            "schema": 1,
            "state": {"strategy": "merge", "data": {"base": base, "fields": {"y": stale}}},
        }]},
    })
    .to_string();
    let mut store = Replica::new(TabId::new(1), ManualClock::new(NOW));
    store.declare(&doc).unwrap();
    let inbound = store.receive_text(&text);
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(store.get(&unit("a/b/u"), &doc).unwrap(), json!({"x": 1}));
    let state = serde_json::to_value(store.states()).unwrap();
    assert_eq!(state["apartment/a/doc"]["data"].get("fields"), None);
}
