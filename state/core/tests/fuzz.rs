//! Fuzzing every input the core takes from outside (channel messages,
//! stored entries, snapshots) through the harness in `fuzz/harness.rs`:
//! arbitrary bytes, and valid inputs of every kind mutated byte by byte.
//!
//! The test command runs `FUZZ_CASES` (default 5,000) cases per generator.
//! For a long coverage-guided run, see `state/core/fuzz/README.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

include!("../fuzz/harness.rs");

use gaesup_state_core::Snapshot;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000)
}

/// Valid inputs of every kind: ops and full states of each strategy, sync
/// requests and answers, events, stored entries, snapshots.
fn corpus() -> Vec<String> {
    let mut writer = fuzz_store(5);
    let reader = fuzz_store(6);
    let unit = fuzz_unit();
    let keys = fuzz_keys();
    let mut texts = Vec::new();
    for message in writer.sync_messages() {
        texts.push(message.encode().unwrap());
    }
    texts.push(reader.sync_request().encode().unwrap());
    for write in [
        writer.set(&unit, &keys[0], serde_json::json!([1, {"a": null}])),
        writer.set(&unit, &keys[2], serde_json::json!({"x": 2})),
        writer.increment(&unit, &keys[3], -7),
        writer.set(&unit, &keys[3], serde_json::json!(40)),
        writer.resolve(&unit, &keys[4], serde_json::json!("r")),
    ] {
        texts.push(write.unwrap().message.unwrap().encode().unwrap());
    }
    let event = gaesup_state_core::Event::new(
        Scope::Apartment,
        &unit,
        &"ping".parse().unwrap(),
        serde_json::json!({"at": 1}),
    )
    .unwrap();
    texts.push(Message::Event(event).encode().unwrap());
    let mut storage = MemoryStorage::new();
    writer.persist(Lifetime::Persistent, &mut storage);
    for key in storage.keys().unwrap() {
        texts.push(storage.get(&key).unwrap().unwrap());
    }
    texts.push(writer.snapshot(&unit, Scope::Apartment).to_json().unwrap());
    assert!(Snapshot::parse(texts.last().unwrap()).is_ok());
    texts
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, String),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Number(usize, i64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), "[\\[\\]{}\",:0-9a-zA-Z/._\\-\\\\ ]{0,12}")
            .prop_map(|(at, text)| Mutation::Insert(at, text)),
        (any::<usize>(), 0..40usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), 0..200usize).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        (any::<usize>(), any::<i64>()).prop_map(|(at, n)| Mutation::Number(at, n)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for mutation in mutations {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Flip(at, bit) => {
                if let Some(byte) = bytes.get_mut(at % len) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            Mutation::Insert(at, text) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, text.bytes());
            }
            Mutation::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    let copy: Vec<u8> = bytes[at..end].to_vec();
                    bytes.splice(end..end, copy);
                }
            }
            Mutation::Number(at, n) => {
                // Replace the digits at a position by another number.
                let at = at % len;
                let end = bytes[at.min(bytes.len())..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(bytes.len(), |p| at + p);
                if at <= end && end <= bytes.len() {
                    bytes.splice(at..end, n.to_string().bytes());
                }
            }
        }
    }
    bytes
}

fn run(strategy: impl Strategy<Value = Vec<u8>>) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |data| {
            exercise(&data);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_never_panic_and_refusals_change_nothing() {
    run(vec(any::<u8>(), 0..600));
}

#[test]
fn mutated_valid_inputs_never_panic_and_refusals_change_nothing() {
    let corpus = corpus();
    let n = corpus.len();
    run((0..n, vec(mutation(), 1..6))
        .prop_map(move |(i, mutations)| mutate(&corpus[i], &mutations)));
}

#[test]
fn every_valid_input_is_accepted_somewhere() {
    // The corpus really is valid (a mutation of garbage would prove
    // little): each text is taken whole by at least one entry point.
    for text in corpus() {
        exercise(text.as_bytes());
        let as_message = fuzz_store(7).receive_text(&text).errors.is_empty();
        let as_snapshot = fuzz_store(8).restore(&fuzz_unit(), &text).is_ok();
        let as_stored = fuzz_keys().iter().any(|key| {
            let mut storage = MemoryStorage::new();
            let storage_key = Replica::storage_key(&key.full_key(&fuzz_unit()));
            storage.set(&storage_key, &text).unwrap();
            let mut store = fuzz_store(9);
            let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
            report.quarantined.is_empty() && report.loaded.len() == 1
        });
        assert!(
            as_message || as_snapshot || as_stored,
            "nothing takes {text}"
        );
    }
}
