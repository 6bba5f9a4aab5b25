//! Writes at a path (`Replica::set_path`) against an oracle written
//! independently of `Path`: a plain recursive put into a cloned document.
//! Whatever the replica does in place must read, report and travel as the
//! whole-value set the oracle makes.

// Test code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gaesup_state_core::{
    Error, KeyState, Lifetime, MAX_VALUE_BYTES, ManualClock, Path, Replica, Scope, SharedKey,
    Strategy, TabId, UnitAddress, Write,
};
use proptest::prelude::*;
use proptest::strategy::Strategy as Generate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000_000;

fn unit(text: &str) -> UnitAddress {
    text.parse().unwrap()
}

fn doc_key(strategy: Strategy, lifetime: Lifetime) -> SharedKey<Value> {
    let name = format!("doc-{strategy}-{lifetime:?}");
    SharedKey::<Value>::builder(&name)
        .scope(Scope::Apartment)
        .lifetime(lifetime)
        .strategy(strategy)
        .build()
        .unwrap()
}

fn replica(tab: u64) -> Replica {
    Replica::new(TabId::new(tab), ManualClock::new(NOW))
}

fn path(text: &str) -> Path {
    Path::parse(text).unwrap()
}

/// The oracle: `value` put at `segments` of a copy of `doc`, or `None`
/// where the path does not lead to a place (a step missing or a scalar, an
/// array index that is not an existing item's canonical index).
fn oracle_put(doc: &Value, segments: &[&str], value: &Value) -> Option<Value> {
    fn index(segment: &str, len: usize) -> Option<usize> {
        let canonical = segment == "0" || !segment.starts_with('0');
        let i: usize = segment.parse().ok().filter(|_| canonical)?;
        (segment.bytes().all(|b| b.is_ascii_digit()) && i < len).then_some(i)
    }
    let (first, rest) = segments.split_first()?;
    let mut out = doc.clone();
    match &mut out {
        Value::Object(map) => {
            if rest.is_empty() {
                map.insert((*first).to_owned(), value.clone());
            } else {
                let child = map.get(*first)?;
                let replaced = oracle_put(child, rest, value)?;
                map.insert((*first).to_owned(), replaced);
            }
        }
        Value::Array(items) => {
            let i = index(first, items.len())?;
            items[i] = if rest.is_empty() {
                value.clone()
            } else {
                oracle_put(&items[i], rest, value)?
            };
        }
        _ => return None,
    }
    Some(out)
}

/// What the oracle reads at `segments` (same rules as `oracle_put`).
fn oracle_get<'v>(doc: &'v Value, segments: &[&str]) -> Option<&'v Value> {
    segments
        .iter()
        .try_fold(doc, |current, segment| match current {
            Value::Object(map) => map.get(*segment),
            Value::Array(items) => {
                let canonical = *segment == "0" || !segment.starts_with('0');
                let i: usize = segment.parse().ok().filter(|_| canonical)?;
                items.get(i)
            }
            _ => None,
        })
}

const SEGMENTS: [&str; 5] = ["a", "b", "0", "1", "01"];

fn segment() -> impl Generate<Value = &'static str> {
    prop::sample::select(SEGMENTS.to_vec())
}

fn leaf() -> impl Generate<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
    ]
}

fn document() -> impl Generate<Value = Value> {
    leaf().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(segment().prop_map(str::to_owned), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn write_at() -> impl Generate<Value = (Vec<&'static str>, Value)> {
    (prop::collection::vec(segment(), 1..4), document())
}

/// Every path of up to three segments over the alphabet: what the probes
/// of `touches` and `changed_heads` look at.
fn probes() -> Vec<Vec<&'static str>> {
    let mut all: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..3 {
        let longer: Vec<Vec<&str>> = all
            .iter()
            .filter(|p| p.len() == all.last().map_or(0, Vec::len))
            .flat_map(|p| {
                SEGMENTS.iter().map(move |s| {
                    let mut next = p.clone();
                    next.push(*s);
                    next
                })
            })
            .collect();
        all.extend(longer);
    }
    all
}

fn parse(segments: &[&str]) -> Path {
    if segments.is_empty() {
        Path::root()
    } else {
        path(&segments.join("."))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Path writes to an untyped last-write-wins key (in place) read,
    /// report and travel exactly as the oracle's whole-value sets; every
    /// change handed out earlier keeps the value it had.
    #[test]
    fn a_write_at_a_path_is_the_oracle_s_put(
        start in document(),
        writes in prop::collection::vec(write_at(), 1..8),
    ) {
        let writer = unit("main/shop/cart");
        let (mut here, mut there, [memory, synced, merged]) = started(&writer, &start);
        let mut expected = start.clone();
        let mut kept: Vec<(Write, Value)> = Vec::new();
        let probes = probes();
        for (segments, value) in writes {
            let at = parse(&segments);
            let oracle = oracle_put(&expected, &segments, &value);
            for key in [&memory, &synced, &merged] {
                let result = here.set_path(&writer, key, &at, value.clone());
                match (&oracle, result) {
                    (None, Err(Error::InvalidPath { .. })) => {}
                    (Some(next), Ok(write)) => {
                        let written = format!("{segments:?}");
                        let mut seen = Seen { here: &here, there: &mut there, writer: &writer, key, probes: &probes };
                        seen.check(&write, &expected, next, &written)?;
                        kept.push((write, next.clone()));
                    }
                    (oracle, result) => {
                        prop_assert!(false, "oracle {:?}, replica {:?}", oracle, result);
                    }
                }
            }
            if let Some(next) = oracle {
                expected = next;
            }
        }
        // A write changed in place later did not change what an earlier
        // one handed out.
        for (write, value) in &kept {
            if let Some(change) = &write.change {
                prop_assert_eq!(&*change.new, value);
            }
        }
    }
}

/// Two replicas holding `start` in three document keys: memory (here
/// only), synced last-write-wins and synced merge (received there).
fn started(writer: &UnitAddress, start: &Value) -> (Replica, Replica, [SharedKey<Value>; 3]) {
    let keys = [
        doc_key(Strategy::LastWriteWins, Lifetime::Memory),
        doc_key(Strategy::LastWriteWins, Lifetime::Persistent),
        doc_key(Strategy::Merge, Lifetime::Persistent),
    ];
    let mut here = replica(1);
    let mut there = replica(2);
    here.declare(&keys[0]).unwrap();
    for key in &keys[1..] {
        here.declare(key).unwrap();
        there.declare(key).unwrap();
    }
    for key in &keys {
        let write = here.set(writer, key, start.clone()).unwrap();
        if let Some(message) = &write.message {
            there.receive_text(&message.encode().unwrap());
        }
    }
    (here, there, keys)
}

/// What a test sees of a path write that the oracle says succeeds.
struct Seen<'a> {
    here: &'a Replica,
    there: &'a mut Replica,
    writer: &'a UnitAddress,
    key: &'a SharedKey<Value>,
    probes: &'a [Vec<&'static str>],
}

impl Seen<'_> {
    /// Checks `write`, which took the key from `expected` to the oracle's
    /// `next`: read back here, received there, and the change it reports
    /// (old and new value, and what each probe path is told) is the
    /// oracle's.
    fn check(
        &mut self,
        write: &Write,
        expected: &Value,
        next: &Value,
        written: &str,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            &self.here.get::<Value>(self.writer, self.key).unwrap(),
            next
        );
        if let Some(message) = &write.message {
            let inbound = self.there.receive_text(&message.encode().unwrap());
            prop_assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
            prop_assert_eq!(
                &self.there.get::<Value>(self.writer, self.key).unwrap(),
                next
            );
        }
        let Some(change) = &write.change else {
            prop_assert_eq!(expected, next);
            return Ok(());
        };
        prop_assert_ne!(expected, next);
        prop_assert_eq!(&*change.old(), expected);
        prop_assert_eq!(&*change.new, next);
        let heads = change.changed_heads();
        for probe in self.probes {
            let moved = oracle_get(expected, probe) != oracle_get(next, probe);
            prop_assert_eq!(
                change.touches(&parse(probe)),
                moved,
                "probe {:?} after writing {}",
                probe,
                written
            );
            if moved && let Some(first) = probe.first() {
                prop_assert!(heads.as_ref().is_none_or(|h| h.iter().any(|x| x == first)));
            }
            // What a subscriber filed under its first segment is told.
            if let (Some(heads), Some(first)) = (change.heads(), probe.first()) {
                let told = heads
                    .iter()
                    .find(|head| head.name == *first)
                    .is_some_and(|head| head.touches(&parse(probe)));
                prop_assert_eq!(
                    told,
                    moved,
                    "probe {:?} by its head after {}",
                    probe,
                    written
                );
            }
        }
        Ok(())
    }
}

/// Whether the paths lie apart by the oracle's reading: none empty, none
/// a prefix of another (or the same).
fn oracle_apart(paths: &[Vec<&str>]) -> bool {
    paths.iter().enumerate().all(|(i, a)| {
        !a.is_empty()
            && paths
                .iter()
                .enumerate()
                .all(|(j, b)| i == j || !(a.starts_with(b) || b.starts_with(a)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Several places written at once (`set_paths`) read, report and
    /// travel as the oracle's puts one after another; paths that do not
    /// lie apart, or one that leads nowhere, change nothing at all.
    #[test]
    fn writes_at_several_paths_are_the_oracle_s_puts(
        start in document(),
        groups in prop::collection::vec(prop::collection::vec(write_at(), 1..5), 1..5),
    ) {
        let writer = unit("main/shop/cart");
        let (mut here, mut there, [memory, synced, merged]) = started(&writer, &start);
        let probes = probes();
        let mut expected = start;
        for group in groups {
            let paths: Vec<Vec<&str>> = group.iter().map(|(p, _)| p.clone()).collect();
            let oracle = if oracle_apart(&paths) {
                group.iter().try_fold(expected.clone(), |doc, (segments, value)| {
                    oracle_put(&doc, segments, value)
                })
            } else {
                None
            };
            let writes: Vec<(Path, Value)> =
                group.iter().map(|(p, v)| (parse(p), v.clone())).collect();
            for key in [&memory, &synced, &merged] {
                let result = here.set_paths(&writer, key, writes.clone());
                match (&oracle, result) {
                    (None, Err(Error::InvalidPath { .. })) => {
                        prop_assert_eq!(&here.get::<Value>(&writer, key).unwrap(), &expected);
                    }
                    (Some(next), Ok(write)) => {
                        let written = format!("{paths:?}");
                        let mut seen = Seen { here: &here, there: &mut there, writer: &writer, key, probes: &probes };
                        seen.check(&write, &expected, next, &written)?;
                    }
                    (oracle, result) => {
                        prop_assert!(false, "oracle {:?}, replica {:?} for {:?}", oracle, result, paths);
                    }
                }
            }
            if let Some(next) = oracle {
                expected = next;
            }
        }
    }
}

#[test]
fn each_head_answers_for_the_places_under_it_alone() {
    let writer = unit("main/shop/cart");
    let key = SharedKey::<Value>::builder("doc")
        .scope(Scope::Apartment)
        .build()
        .unwrap();
    let mut store = replica(1);
    store.declare(&key).unwrap();
    let rows: Vec<Value> = (0..12).map(Value::from).collect();
    let doc = json!({"rows": rows, "n": {"a": 1, "b": 2}, "z": 0});
    drop(store.set(&writer, &key, doc).unwrap());
    // Several places under "rows" and "n", written out of order, one of
    // them with what it held.
    let writes = [
        ("rows.10", json!("ten")),
        ("n.b", json!(2)),
        ("z", json!(5)),
        ("rows.2", json!("two")),
        ("n.a", json!(9)),
        ("rows.11", json!(11)),
    ];
    let write = store
        .set_paths(&writer, &key, writes.map(|(at, value)| (path(at), value)))
        .unwrap();
    let change = write.change.unwrap();
    let heads = change.heads().unwrap();
    let names: Vec<&str> = heads.iter().map(|head| head.name.as_ref()).collect();
    assert_eq!(names, ["n", "z", "rows"], "one head per first segment");
    let mut probes = vec!["rows", "n", "n.a", "n.b", "n.c", "z", "q"];
    let items: Vec<String> = (0..13).map(|i| format!("rows.{i}")).collect();
    probes.extend(items.iter().map(String::as_str));
    for probe in probes {
        let at = path(probe);
        let by_head = heads.iter().filter(|head| head.touches(&at)).count();
        let expected = !matches!(probe, "n.b" | "n.c" | "q")
            && (!probe.starts_with("rows.") || ["rows.2", "rows.10"].contains(&probe));
        assert_eq!(change.touches(&at), expected, "{probe}");
        assert_eq!(by_head, usize::from(expected), "{probe}");
    }
}

/// Items written by index (their paths hold the digits inline) are found
/// under their heads by subscriptions parsed from text, and "01", a field
/// name, is not item 1.
#[test]
fn heads_of_items_written_by_index_answer_for_parsed_paths() {
    let writer = unit("main/shop/cart");
    let key = SharedKey::<Vec<Value>>::builder("rows")
        .scope(Scope::Apartment)
        .build()
        .unwrap();
    let mut store = replica(1);
    store.declare(&key).unwrap();
    let rows: Vec<Value> = (0..12).map(|i| json!({ "v": i })).collect();
    drop(store.set(&writer, &key, rows).unwrap());
    let items = [
        (10, json!({"v": 100})),
        (1, json!({"v": 1})),
        (3, json!({"v": 30})),
    ];
    let write = store.set_items(&writer, &key, items).unwrap();
    let change = write.change.unwrap();
    let heads = change.heads().unwrap();
    let names: Vec<&str> = heads.iter().map(|head| head.name.as_ref()).collect();
    assert_eq!(names, ["1", "3", "10"]);
    for probe in [
        "1", "01", "1.v", "3", "3.v", "03", "10", "10.v", "2", "11", "x",
    ] {
        let at = path(probe);
        let by_head = heads.iter().filter(|head| head.touches(&at)).count();
        // Item 1 was written with what it held.
        let expected = ["3", "3.v", "10", "10.v"].contains(&probe);
        assert_eq!(change.touches(&at), expected, "{probe}");
        assert_eq!(by_head, usize::from(expected), "{probe}");
    }
}

/// A head with one place, asked about the paths inside that place (what a
/// subscriber to one field of a written object asks): each answers by what
/// changed there, not by the place as a whole.
#[test]
fn a_head_of_one_place_tells_the_paths_inside_it_apart() {
    let writer = unit("main/shop/cart");
    let key = doc_key(Strategy::LastWriteWins, Lifetime::Memory);
    let mut store = replica(1);
    store.declare(&key).unwrap();
    drop(
        store
            .set(&writer, &key, json!({"n": {"a": 1, "b": 2}, "m": 0}))
            .unwrap(),
    );
    let write = store
        .set_path(&writer, &key, &path("n"), json!({"a": 1, "b": 3}))
        .unwrap();
    let change = write.change.unwrap();
    let heads = change.heads().unwrap();
    let names: Vec<&str> = heads.iter().map(|head| head.name.as_ref()).collect();
    assert_eq!(names, ["n"]);
    for (probe, expected) in [
        ("n", true),
        ("n.b", true),
        ("n.a", false),
        ("n.c", false),
        ("m", false),
        ("nn", false),
    ] {
        let at = path(probe);
        assert_eq!(heads[0].touches(&at), expected, "{probe}");
        assert_eq!(change.touches(&at), expected, "{probe}");
    }
}

#[test]
fn items_of_a_typed_list_are_written_in_place() {
    let writer = unit("main/shop/cart");
    let key = SharedKey::<Vec<String>>::builder("rows")
        .scope(Scope::Apartment)
        .build()
        .unwrap();
    let mut store = replica(1);
    store.declare(&key).unwrap();
    let rows: Vec<String> = (0..1000).map(|i| format!("row {i}")).collect();
    drop(store.set(&writer, &key, rows.clone()).unwrap());
    let full = key.full_key(&writer);
    let stored = |store: &Replica| match store.state(&full) {
        Some(KeyState::LastWriteWins(register)) => {
            Arc::as_ptr(&register.entry.as_ref().unwrap().value)
        }
        other => panic!("{other:?}"),
    };
    let before = stored(&store);
    let write = store
        .set_items(
            &writer,
            &key,
            [(3, "three".to_owned()), (999, "last".to_owned())],
        )
        .unwrap();
    let change = write.change.clone().unwrap();
    assert_eq!(change.changed_heads().unwrap(), ["3", "999"]);
    assert!(change.touches(&path("999")) && !change.touches(&path("4")));
    assert!(change.touches(&Path::root()));
    assert_eq!(*change.old(), json!(rows));
    drop((write, change));
    assert_eq!(stored(&store), before, "the list was copied");
    let mut expected = rows.clone();
    expected[3] = "three".to_owned();
    expected[999] = "last".to_owned();
    assert_eq!(store.get(&writer, &key).unwrap(), expected);
    // Writing what is there already changes nothing anyone sees.
    let same = store
        .set_items(&writer, &key, [(3, "three".to_owned())])
        .unwrap();
    assert!(same.change.is_none());
    // Refused, changing nothing: an index past the end (after a good one),
    // an index twice, no index at all.
    for (items, reason) in [
        (
            vec![(0, "a".to_owned()), (1000, "b".to_owned())],
            "the last step is not an index of the array",
        ),
        (
            vec![(5, "a".to_owned()), (5, "b".to_owned())],
            "written twice, or inside another place of the same write",
        ),
        (vec![], "no place to write: give at least one path"),
    ] {
        match store.set_items(&writer, &key, items) {
            Err(Error::InvalidPath { reason: got, .. }) => assert_eq!(got, reason),
            other => panic!("{reason}: {other:?}"),
        }
        assert_eq!(store.get(&writer, &key).unwrap(), expected);
    }
}

#[test]
fn items_of_a_list_in_other_keys_and_batches_are_written_whole() {
    let writer = unit("main/shop/cart");
    let tasks = SharedKey::<Vec<Profile>>::builder("tasks")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    let first = SharedKey::<Vec<Profile>>::builder("first")
        .scope(Scope::Apartment)
        .strategy(Strategy::FirstWriteWins)
        .build()
        .unwrap();
    let mut store = replica(1);
    let mut other = replica(2);
    for replica in [&mut store, &mut other] {
        replica.declare(&tasks).unwrap();
        replica.declare(&first).unwrap();
    }
    let profile = |name: &str, age| Profile {
        name: name.to_owned(),
        age,
        ..Profile::default()
    };
    let list = vec![profile("a", 1), profile("b", 2), profile("c", 3)];
    let write = store.set(&writer, &tasks, list.clone()).unwrap();
    assert!(
        other
            .receive_text(&write.message.unwrap().encode().unwrap())
            .errors
            .is_empty()
    );
    // A synced key in place still sends the whole list, which another tab
    // applies as ever.
    let write = store
        .set_items(&writer, &tasks, [(1, profile("B", 20))])
        .unwrap();
    assert!(
        other
            .receive_text(&write.message.unwrap().encode().unwrap())
            .errors
            .is_empty()
    );
    let expected = vec![profile("a", 1), profile("B", 20), profile("c", 3)];
    assert_eq!(other.get(&writer, &tasks).unwrap(), expected);
    // In a batch: staged beside another write, committed together.
    let batch = store
        .batch(|batch| {
            batch.set_items(
                &writer,
                &tasks,
                [(0, profile("A", 10)), (2, profile("C", 30))],
            )?;
            batch.set_path(&writer, &tasks, &path("1.age"), json!(21))
        })
        .unwrap();
    assert!(
        other
            .receive_text(&batch.message.unwrap().encode().unwrap())
            .errors
            .is_empty()
    );
    let expected = vec![profile("A", 10), profile("B", 21), profile("C", 30)];
    assert_eq!(store.get(&writer, &tasks).unwrap(), expected);
    assert_eq!(other.get(&writer, &tasks).unwrap(), expected);
    // First write wins: the key's first value stays.
    store.set(&writer, &first, list.clone()).unwrap();
    assert!(
        store
            .set_items(&writer, &first, [(0, profile("late", 0))])
            .is_err()
    );
    assert_eq!(store.get(&writer, &first).unwrap(), list);
}

#[test]
fn a_write_of_several_places_reverts_as_one() {
    let writer = unit("main/shop/cart");
    let key = doc_key(Strategy::LastWriteWins, Lifetime::Persistent);
    let mut store = replica(1);
    store.declare(&key).unwrap();
    let doc = json!({"rows": {"r1": {"qty": 1}, "r2": {"qty": 2}}, "total": 3});
    store.set(&writer, &key, doc.clone()).unwrap();
    let optimistic = store
        .set_paths(
            &writer,
            &key,
            [
                (path("rows.r3"), json!({"qty": 3})),
                (path("rows.r1.qty"), json!(5)),
                (path("total"), json!(10)),
            ],
        )
        .unwrap();
    assert_eq!(
        store.get::<Value>(&writer, &key).unwrap(),
        json!({"rows": {"r1": {"qty": 5}, "r2": {"qty": 2}, "r3": {"qty": 3}}, "total": 10})
    );
    store.revert(&writer, &key, &optimistic).unwrap().unwrap();
    assert_eq!(store.get::<Value>(&writer, &key).unwrap(), doc);
}

#[test]
fn a_write_at_a_path_changes_the_stored_value_in_place() {
    let writer = unit("main/shop/cart");
    let key = doc_key(Strategy::LastWriteWins, Lifetime::Memory);
    let mut store = replica(1);
    store.declare(&key).unwrap();
    let rows: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("r{i}"), json!(i))).collect();
    drop(store.set(&writer, &key, Value::Object(rows)).unwrap());
    let full = key.full_key(&writer);
    let stored = |store: &Replica| match store.state(&full) {
        Some(KeyState::LastWriteWins(register)) => {
            Arc::as_ptr(&register.entry.as_ref().unwrap().value)
        }
        other => panic!("{other:?}"),
    };
    let before = stored(&store);
    let write = store.set_path(&writer, &key, &path("r7"), json!("seven"));
    drop(write);
    assert_eq!(stored(&store), before, "the document was copied");
    // While a write still holds the value, the next one copies it and
    // leaves the held one as it was.
    let held = store
        .set_path(&writer, &key, &path("r8"), json!(8.5))
        .unwrap();
    drop(
        store
            .set_path(&writer, &key, &path("r9"), json!(null))
            .unwrap(),
    );
    assert_ne!(stored(&store), before);
    assert_eq!(held.change.as_ref().unwrap().new["r9"], json!(9));
    assert_eq!(held.change.as_ref().unwrap().old()["r8"], json!(8));
}

#[test]
fn a_write_at_a_path_that_leads_nowhere_changes_nothing() {
    let writer = unit("main/shop/cart");
    let key = doc_key(Strategy::LastWriteWins, Lifetime::Persistent);
    let mut store = replica(1);
    store.declare(&key).unwrap();
    let doc = json!({"list": [1, 2], "n": 3, "obj": {"x": 1}});
    store.set(&writer, &key, doc.clone()).unwrap();
    for (text, reason) in [
        (
            "missing.x",
            "a step before the last is missing from the value",
        ),
        ("n.x", "the step before the last is not an object or array"),
        ("n.x.y", "a step before the last is not an object or array"),
        ("list.2", "the last step is not an index of the array"),
        ("list.01", "the last step is not an index of the array"),
        ("list.x", "the last step is not an index of the array"),
    ] {
        let err = store
            .set_path(&writer, &key, &path(text), json!(0))
            .unwrap_err();
        match err {
            Error::InvalidPath { reason: got, .. } => assert_eq!(got, reason, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
        assert_eq!(store.get::<Value>(&writer, &key).unwrap(), doc);
    }
}

#[test]
fn a_write_at_a_path_is_checked_as_the_whole_value_would_be() {
    let writer = unit("main/shop/cart");
    let key = doc_key(Strategy::LastWriteWins, Lifetime::Memory);
    let mut store = replica(1);
    store.declare(&key).unwrap();
    // Nested 30 deep, then a value 35 deep put at the bottom: 65 levels.
    let mut deep = json!({});
    for _ in 0..30 {
        deep = json!({ "d": deep });
    }
    let mut text = vec!["d"; 30];
    store.set(&writer, &key, deep.clone()).unwrap();
    let mut nested = json!(1);
    for _ in 0..35 {
        nested = json!([nested]);
    }
    text.push("x");
    let at = path(&text.join("."));
    match store.set_path(&writer, &key, &at, nested) {
        Err(Error::TooDeep { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get::<Value>(&writer, &key).unwrap(), deep);
    store.set_path(&writer, &key, &at, json!([[1]])).unwrap();

    // Three fields of 100 KiB pass a value's limit.
    let big = "x".repeat(100 << 10);
    let doc = json!({"a": big, "b": big});
    store.set(&writer, &key, doc.clone()).unwrap();
    match store.set_path(&writer, &key, &path("c"), json!(big)) {
        Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, MAX_VALUE_BYTES),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get::<Value>(&writer, &key).unwrap(), doc);
    // Replacing one of them keeps within it, write after write.
    for round in 0..50 {
        let text = format!("{round}").repeat(50 << 10);
        store
            .set_path(&writer, &key, &path("a"), json!(text))
            .unwrap();
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    age: u32,
    #[serde(default)]
    score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nick: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default)]
    ratio: f32,
    #[serde(default)]
    labels: std::collections::BTreeSet<String>,
    #[serde(default)]
    settings: Option<Settings>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Settings {
    #[serde(default)]
    theme: String,
    #[serde(default)]
    size: u32,
}

#[test]
fn a_typed_key_written_at_a_path_still_decodes() {
    let writer = unit("main/shop/cart");
    let key = SharedKey::<Profile>::builder("profile")
        .scope(Scope::Apartment)
        .build()
        .unwrap();
    let mut store = replica(1);
    store.declare(&key).unwrap();
    store
        .set_path(&writer, &key, &path("age"), json!(41))
        .unwrap();
    assert_eq!(store.get(&writer, &key).unwrap().age, 41);
    for (at, value) in [
        ("age", json!("old")),
        ("age", json!(-1)),
        ("name", json!(1)),
    ] {
        match store.set_path(&writer, &key, &path(at), value) {
            Err(Error::TypeMismatch { .. }) => {}
            other => panic!("{at}: {other:?}"),
        }
    }
    // A field the type does not have decodes (serde skips it) but would
    // be lost: refused, whatever the value, however deep.
    store
        .set_path(&writer, &key, &path("settings"), json!({}))
        .unwrap();
    for (at, value) in [
        ("nmae", json!("typo")),
        ("nikc", json!(null)),
        ("settings.tehme", json!("dark")),
        ("settings", json!({"theme": "dark", "sise": 2})),
    ] {
        match store.set_path(&writer, &key, &path(at), value) {
            Err(Error::TypeMismatch { reason, .. }) => {
                assert!(reason.contains("has no place for"), "{at}: {reason}");
            }
            other => panic!("{at}: {other:?}"),
        }
    }
    // What the type takes in another form than written is taken: an empty
    // list it skips when encoding, an object missing fields that default,
    // a float only an f32 approximates, a set written out of order.
    for (at, value) in [
        ("tags", json!([])),
        ("settings", json!({"size": 2})),
        ("ratio", json!(0.1)),
        ("labels", json!(["b", "a"])),
    ] {
        store
            .set_path(&writer, &key, &path(at), value)
            .unwrap_or_else(|err| panic!("{at}: {err}"));
    }
    // And an integer in a float field, a null in an option skipped when
    // empty.
    store
        .set_path(&writer, &key, &path("score"), json!(2))
        .unwrap();
    store
        .set_path(&writer, &key, &path("nick"), json!("n"))
        .unwrap();
    store
        .set_path(&writer, &key, &path("nick"), json!(null))
        .unwrap();
    assert_eq!(
        store.get(&writer, &key).unwrap(),
        Profile {
            name: String::new(),
            age: 41,
            score: 2.0,
            nick: None,
            tags: Vec::new(),
            ratio: 0.1,
            labels: ["a".to_owned(), "b".to_owned()].into(),
            settings: Some(Settings {
                theme: String::new(),
                size: 2
            }),
        }
    );
    assert_eq!(
        store.get_value(&writer, &key).unwrap(),
        json!({"name": "", "age": 41, "score": 2, "nick": null, "tags": [],
               "settings": {"size": 2}, "ratio": 0.1, "labels": ["b", "a"]})
    );
    // The root path is a set of the whole value, checked the same way.
    assert!(matches!(
        store.set_path(&writer, &key, &Path::root(), json!(3)),
        Err(Error::TypeMismatch { .. })
    ));
    store
        .set_path(&writer, &key, &Path::root(), json!({"name": "n", "age": 2}))
        .unwrap();
    assert_eq!(store.get(&writer, &key).unwrap().name, "n");
}

#[test]
fn other_strategies_take_a_write_at_a_path_as_a_set() {
    let writer = unit("main/shop/cart");
    let first = doc_key(Strategy::FirstWriteWins, Lifetime::Memory);
    let mut store = replica(1);
    store.declare(&first).unwrap();
    // Over the default (null) there is no field to set.
    assert!(matches!(
        store.set_path(&writer, &first, &path("a"), json!(1)),
        Err(Error::InvalidPath { .. })
    ));
    store.set(&writer, &first, json!({})).unwrap();
    assert!(matches!(
        store.set_path(&writer, &first, &path("a"), json!(1)),
        Err(Error::FirstWriteWins { .. })
    ));
    assert_eq!(store.get::<Value>(&writer, &first).unwrap(), json!({}));
}

#[test]
fn a_write_at_a_path_reverts_to_the_value_before_it() {
    let writer = unit("main/shop/cart");
    let key = doc_key(Strategy::LastWriteWins, Lifetime::Persistent);
    let mut store = replica(1);
    // Its writes come later than this one's.
    let mut other = Replica::new(TabId::new(2), ManualClock::new(NOW + 1_000));
    for replica in [&mut store, &mut other] {
        replica.declare(&key).unwrap();
    }
    let doc = json!({"rows": {"r1": {"qty": 1}, "r2": {"qty": 2}}});
    store.set(&writer, &key, doc.clone()).unwrap();
    let optimistic = store
        .set_path(&writer, &key, &path("rows.r3"), json!({"qty": 3}))
        .unwrap();
    let undo = store.revert(&writer, &key, &optimistic).unwrap().unwrap();
    assert_eq!(store.get::<Value>(&writer, &key).unwrap(), doc);
    assert_eq!(undo.change.unwrap().old()["rows"]["r3"]["qty"], json!(3));
    // A revert after someone else's later write keeps theirs.
    let optimistic = store
        .set_path(&writer, &key, &path("rows.r1.qty"), json!(10))
        .unwrap();
    let later = other.set(&writer, &key, json!({"theirs": true})).unwrap();
    let text = later.message.unwrap().encode().unwrap();
    assert!(store.receive_text(&text).errors.is_empty());
    assert!(store.revert(&writer, &key, &optimistic).unwrap().is_none());
    assert_eq!(
        store.get::<Value>(&writer, &key).unwrap(),
        json!({"theirs": true})
    );
}

#[test]
fn path_writes_in_a_batch_see_each_other_and_commit_together() {
    let writer = unit("main/shop/cart");
    let doc = doc_key(Strategy::LastWriteWins, Lifetime::Persistent);
    let merged = doc_key(Strategy::Merge, Lifetime::Persistent);
    let profile = SharedKey::<Profile>::builder("profile")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap();
    let mut store = replica(1);
    let mut other = replica(2);
    for replica in [&mut store, &mut other] {
        replica.declare(&doc).unwrap();
        replica.declare(&merged).unwrap();
        replica.declare(&profile).unwrap();
    }
    for write in [
        store.set(&writer, &doc, json!({"rows": {}})).unwrap(),
        store.set(&writer, &merged, json!({"a": 1})).unwrap(),
    ] {
        let text = write.message.unwrap().encode().unwrap();
        assert!(other.receive_text(&text).errors.is_empty());
    }
    let batch = store
        .batch(|batch| {
            batch.set_path(&writer, &doc, &path("rows.r1"), json!({"qty": 1}))?;
            // Sees the write before it.
            batch.set_path(&writer, &doc, &path("rows.r1.qty"), json!(2))?;
            batch.set_path(&writer, &merged, &path("b"), json!(2))?;
            batch.set_path(&writer, &profile, &path("age"), json!(3))
        })
        .unwrap();
    assert_eq!(
        store.get::<Value>(&writer, &doc).unwrap(),
        json!({"rows": {"r1": {"qty": 2}}})
    );
    assert_eq!(
        store.get::<Value>(&writer, &merged).unwrap(),
        json!({"a": 1, "b": 2})
    );
    assert_eq!(store.get(&writer, &profile).unwrap().age, 3);
    assert_eq!(batch.changes.len(), 3);
    // Another tab, which had the values before, takes the batch's message.
    let text = batch.message.unwrap().encode().unwrap();
    assert!(other.receive_text(&text).errors.is_empty());
    for key in [&doc, &merged] {
        assert_eq!(
            other.get::<Value>(&writer, key).unwrap(),
            store.get::<Value>(&writer, key).unwrap()
        );
    }
    assert_eq!(other.get(&writer, &profile).unwrap().age, 3);
    // One refused path write (a typo on a typed key) refuses the batch.
    let refused = store.batch(|batch| {
        batch.set_path(&writer, &doc, &path("rows.r2"), json!({"qty": 9}))?;
        batch.set_path(&writer, &profile, &path("aeg"), json!(4))
    });
    assert!(
        matches!(refused, Err(Error::TypeMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.get::<Value>(&writer, &doc).unwrap(),
        json!({"rows": {"r1": {"qty": 2}}})
    );
    assert_eq!(store.get(&writer, &profile).unwrap().age, 3);
}
