//! A build may leave out the merge and user-resolve strategies (this
//! crate's features `merge` and `user-resolve`, on by default). Their
//! states and ops still reach it from builds that have them: another
//! version of the app in another tab, the same origin's storage, a relay.
//! Such a build must refuse them with the reason and lose none of them.
//!
//! The fixtures below are what a build with both strategies writes, and
//! this file runs in both builds:
//! - with the features (`cargo test`, as the rest of the suite), it checks
//!   that a real replica writes exactly these texts, so the fixtures stay
//!   true to the format;
//! - without them (`cargo test -p gaesup-state-core --no-default-features
//!   --test strategies_left_out`, which `cargo xtask test` runs), it feeds
//!   them to a replica that declares the same keys with a strategy it has.

// Test code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gaesup_state_core::{
    FullKey, Lifetime, ManualClock, MemoryStorage, Replica, Scope, SharedKey, Storage, Strategy,
    TabId, UnitAddress,
};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000_000;

/// The merge key's stored entry after one write of `{"title": "hi"}`.
const MERGE_STORED: &str = r#"{"schema":1,"state":{"strategy":"merge","data":{"fields":{"title":{"stamp":{"wall_ms":1700000000000,"counter":0,"tab":"0000000000000001"},"id":{"tab":"0000000000000001","seq":1},"writer":"a/b/u","value":"hi"}}}}}"#;

/// The user-resolve key's stored entry after one write of `"blue"`.
const RESOLVE_STORED: &str = r#"{"schema":1,"state":{"strategy":"user_resolve","data":{"entries":[{"stamp":{"wall_ms":1700000000000,"counter":1,"tab":"0000000000000001"},"id":{"tab":"0000000000000001","seq":2},"writer":"a/b/u","value":"blue"}]}}}"#;

/// The message to other tabs of the merge write: a patch.
const MERGE_OPS: &str = r#"{"v":2,"type":"ops","body":{"ops":[{"id":{"tab":"0000000000000001","seq":1},"key":"apartment/a/doc","writer":"a/b/u","stamp":{"wall_ms":1700000000000,"counter":0,"tab":"0000000000000001"},"schema":1,"payload":{"kind":"patch","data":{"set":{"title":"hi"}}}}]}}"#;

/// The message to other tabs of the user-resolve write.
const RESOLVE_OPS: &str = r#"{"v":2,"type":"ops","body":{"ops":[{"id":{"tab":"0000000000000001","seq":2},"key":"apartment/a/pick","writer":"a/b/u","stamp":{"wall_ms":1700000000000,"counter":1,"tab":"0000000000000001"},"schema":1,"payload":{"kind":"resolve","data":{"value":"blue"}}}]}}"#;

/// The anti-entropy message carrying the three keys' states (a
/// last-write-wins key's between the two others').
const SYNC_STATE: &str = r#"{"v":2,"type":"sync_state","body":{"from":"0000000000000001","states":[{"key":"apartment/a/doc","schema":1,"state":{"strategy":"merge","data":{"fields":{"title":{"stamp":{"wall_ms":1700000000000,"counter":0,"tab":"0000000000000001"},"id":{"tab":"0000000000000001","seq":1},"writer":"a/b/u","value":"hi"}}}}},{"key":"apartment/a/name","schema":1,"state":{"strategy":"last_write_wins","data":{"entry":{"stamp":{"wall_ms":1700000000000,"counter":2,"tab":"0000000000000001"},"id":{"tab":"0000000000000001","seq":3},"writer":"a/b/u","value":"Ada"}}}},{"key":"apartment/a/pick","schema":1,"state":{"strategy":"user_resolve","data":{"entries":[{"stamp":{"wall_ms":1700000000000,"counter":1,"tab":"0000000000000001"},"id":{"tab":"0000000000000001","seq":2},"writer":"a/b/u","value":"blue"}]}}}]}}"#;

fn unit() -> UnitAddress {
    "a/b/u".parse().unwrap()
}

/// An apartment key of `strategy`, stored in localStorage.
fn key(name: &str, strategy: Strategy) -> SharedKey<Value> {
    SharedKey::<Value>::builder(name)
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .strategy(strategy)
        .build()
        .unwrap()
}

fn storage_key(full: &str) -> String {
    Replica::storage_key(&FullKey::parse(full).unwrap())
}

/// Every build knows every strategy of its version by name, built or
/// not: a name it does not know is a newer version's (what a device
/// fetches again once updated) or nonsense.
#[test]
fn every_build_knows_every_strategy_of_its_version_by_name() {
    for name in [
        "last_write_wins",
        "first_write_wins",
        "merge",
        "sum",
        "user_resolve",
    ] {
        assert!(Strategy::is_known(name), "{name}");
    }
    for name in ["majority", "Merge", ""] {
        assert!(!Strategy::is_known(name), "{name}");
        assert!(Strategy::from_name(name).is_err(), "{name}");
    }
    // A long name from elsewhere is cut short in what is said of it.
    let err = Strategy::from_name(&"x".repeat(100_000)).unwrap_err();
    assert!(err.len() < 400, "{} bytes", err.len());
}

/// [`Payload::KINDS`] names every kind an op of this version decodes as,
/// and no other.
#[test]
fn the_payload_kinds_are_those_ops_decode_as() {
    let op = |kind: &str| {
        format!(
            r#"{{"id":{{"tab":"0000000000000001","seq":1}},"key":"apartment/a/n","writer":"a/b/u","stamp":{{"wall_ms":1,"counter":0,"tab":"0000000000000001"}},"schema":1,"payload":{{"kind":"{kind}","data":{{}}}}}}"#
        )
    };
    for kind in gaesup_state_core::Payload::KINDS {
        let err = serde_json::from_str::<gaesup_state_core::Op>(&op(kind))
            .err()
            .map(|err| err.to_string())
            .unwrap_or_default();
        // Decoded, or refused for what its data lacks, not its kind.
        assert!(!err.contains("unknown variant"), "{kind}: {err}");
    }
    let err = serde_json::from_str::<gaesup_state_core::Op>(&op("majority")).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
    // And every payload's kind is among them.
    use gaesup_state_core::{OpId, Payload, TabId};
    let slot = OpId {
        tab: TabId::new(1),
        seq: 1,
    };
    let every = [
        Payload::Set {
            value: std::sync::Arc::new(Value::Null),
        },
        Payload::Patch {
            set: Default::default(),
            remove: Default::default(),
        },
        Payload::Count { slot, p: 1, n: 0 },
        Payload::Reset {
            target: 0,
            horizon: 0,
            observed: Vec::new(),
        },
        Payload::Resolve {
            value: std::sync::Arc::new(Value::Null),
            supersedes: Vec::new(),
        },
    ];
    let kinds: Vec<&str> = every.iter().map(Payload::kind).collect();
    assert_eq!(kinds, Payload::KINDS);
}

#[cfg(all(feature = "merge", feature = "user-resolve"))]
#[test]
fn the_fixtures_are_what_a_build_with_both_strategies_writes() {
    let mut replica = Replica::new(TabId::new(1), ManualClock::new(NOW));
    let doc = key("doc", Strategy::Merge);
    let pick = key("pick", Strategy::UserResolve);
    let name = key("name", Strategy::LastWriteWins);
    replica.declare(&doc).unwrap();
    replica.declare(&pick).unwrap();
    replica.declare(&name).unwrap();

    let merge = replica.set(&unit(), &doc, json!({"title": "hi"})).unwrap();
    assert_eq!(merge.message.unwrap().encode().unwrap(), MERGE_OPS);
    let resolve = replica.set(&unit(), &pick, json!("blue")).unwrap();
    assert_eq!(resolve.message.unwrap().encode().unwrap(), RESOLVE_OPS);
    replica.set(&unit(), &name, json!("Ada")).unwrap();

    let mut storage = MemoryStorage::new();
    replica.persist(Lifetime::Persistent, &mut storage);
    let stored = |full: &str| storage.get(&storage_key(full)).unwrap();
    assert_eq!(stored("apartment/a/doc").as_deref(), Some(MERGE_STORED));
    assert_eq!(stored("apartment/a/pick").as_deref(), Some(RESOLVE_STORED));

    let sync: Vec<String> = replica
        .sync_messages()
        .iter()
        .map(|message| message.encode().unwrap())
        .collect();
    assert_eq!(sync, [SYNC_STATE]);
}

#[cfg(not(any(feature = "merge", feature = "user-resolve")))]
mod without_them {
    use gaesup_state_core::{Error, Message};

    use super::*;

    /// A replica declaring the fixtures' keys as last-write-wins keys, the
    /// nearest a build without either strategy can come.
    fn replica() -> (Replica, SharedKey<Value>, SharedKey<Value>) {
        let mut replica = Replica::new(TabId::new(2), ManualClock::new(NOW + 1_000));
        let doc = key("doc", Strategy::LastWriteWins);
        let pick = key("pick", Strategy::LastWriteWins);
        replica.declare(&doc).unwrap();
        replica.declare(&pick).unwrap();
        (replica, doc, pick)
    }

    #[test]
    fn their_names_are_refused_with_the_feature_that_brings_them() {
        for (name, feature) in [("merge", "merge"), ("user_resolve", "user-resolve")] {
            let err = Strategy::from_name(name).unwrap_err();
            assert!(
                err.contains("not in this build") && err.contains(&format!("`{feature}`")),
                "{err}"
            );
            let decoded = serde_json::from_str::<Strategy>(&format!("{name:?}"));
            assert!(decoded.is_err(), "{name} decoded as {decoded:?}");
        }
        // A name no build knows says so instead.
        let err = Strategy::from_name("majority").unwrap_err();
        assert!(err.starts_with("unknown strategy"), "{err}");
    }

    #[test]
    fn their_stored_states_are_set_aside_unchanged_and_never_overwritten() {
        let mut storage = MemoryStorage::new();
        for (full, raw) in [
            ("apartment/a/doc", MERGE_STORED),
            ("apartment/a/pick", RESOLVE_STORED),
        ] {
            storage.set(&storage_key(full), raw).unwrap();
        }
        let (mut replica, doc, pick) = replica();
        let report = replica.load(Lifetime::Persistent, &mut storage).unwrap();

        assert_eq!(report.quarantined.len(), 2, "{report:?}");
        for (full, raw, name) in [
            ("apartment/a/doc", MERGE_STORED, "merge"),
            ("apartment/a/pick", RESOLVE_STORED, "user_resolve"),
        ] {
            let parsed = FullKey::parse(full).unwrap();
            let quarantine = report
                .quarantined
                .iter()
                .find(|q| q.key == parsed)
                .unwrap_or_else(|| panic!("{full} not set aside: {report:?}"));
            let reason = quarantine.error.to_string();
            assert!(
                matches!(quarantine.error, Error::Corrupt { .. })
                    && reason.contains(&format!("strategy {name} is not in this build")),
                "{full}: {reason}"
            );
            assert_eq!(quarantine.copy_error, None);
            let copy = storage.get(&Replica::quarantine_key(&parsed)).unwrap();
            assert_eq!(copy.as_deref(), Some(raw), "{full}: the copy set aside");
        }

        // The keys read their defaults and take writes in memory; saving
        // leaves the entries another build wrote as they were.
        assert_eq!(replica.get(&unit(), &doc).unwrap(), Value::Null);
        replica.set(&unit(), &doc, json!("mine")).unwrap();
        replica.set(&unit(), &pick, json!("red")).unwrap();
        replica.persist(Lifetime::Persistent, &mut storage);
        let stored = |full: &str| storage.get(&storage_key(full)).unwrap();
        assert_eq!(stored("apartment/a/doc").as_deref(), Some(MERGE_STORED));
        assert_eq!(stored("apartment/a/pick").as_deref(), Some(RESOLVE_STORED));
    }

    #[test]
    fn their_states_in_a_sync_message_are_left_out_and_the_rest_applies() {
        let message = Message::decode(SYNC_STATE).unwrap();
        let Message::SyncState { states, .. } = &message else {
            panic!("{message:?}");
        };
        let keys: Vec<&str> = states.iter().map(|entry| entry.key.as_str()).collect();
        assert_eq!(keys, ["apartment/a/name"]);

        let (mut replica, doc, pick) = replica();
        let name = key("name", Strategy::LastWriteWins);
        replica.declare(&name).unwrap();
        let inbound = replica.receive_text(SYNC_STATE);
        assert!(inbound.errors.is_empty(), "{inbound:?}");
        assert_eq!(inbound.changes.len(), 1, "{inbound:?}");
        assert_eq!(replica.get(&unit(), &name).unwrap(), json!("Ada"));
        assert_eq!(replica.get(&unit(), &doc).unwrap(), Value::Null);
        assert_eq!(replica.get(&unit(), &pick).unwrap(), Value::Null);
    }

    /// A list of states decoded as a relay's snapshot decodes its own.
    #[derive(serde::Deserialize)]
    struct Listed {
        #[serde(deserialize_with = "gaesup_state_core::sync_entries")]
        states: Vec<gaesup_state_core::SyncEntry>,
    }

    /// The same list, with the keys left out.
    #[derive(serde::Deserialize)]
    struct Said {
        #[serde(deserialize_with = "gaesup_state_core::sync_entries_and_left_out")]
        states: (Vec<gaesup_state_core::SyncEntry>, Vec<(FullKey, Error)>),
    }

    #[test]
    fn a_list_of_states_still_refuses_what_no_build_knows() {
        let states = |strategy: &str| {
            format!(
                r#"{{"states":[{{"key":"apartment/a/x","schema":1,"state":{{"strategy":"{strategy}","data":{{}}}}}}]}}"#
            )
        };
        // Left out here: skipped, and said by key with why.
        for strategy in ["merge", "user_resolve"] {
            let listed: Listed = serde_json::from_str(&states(strategy)).unwrap();
            assert!(listed.states.is_empty(), "{strategy}");
            let said: Said = serde_json::from_str(&states(strategy)).unwrap();
            let (kept, left_out) = said.states;
            assert!(kept.is_empty());
            match &left_out[..] {
                [(key, err)] => {
                    assert_eq!(key.as_str(), "apartment/a/x");
                    assert!(err.to_string().contains("not in this build"), "{err}");
                }
                other => panic!("{strategy}: {other:?}"),
            }
        }
        // No build knows it: the list is refused, as in a build with
        // every strategy.
        let err = serde_json::from_str::<Listed>(&states("majority"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown strategy"), "{err}");
        // A strategy this build has, but a broken state: refused too.
        let broken = r#"{"states":[{"key":"apartment/a/x","schema":1,"state":{"strategy":"sum","data":7}}]}"#;
        assert!(serde_json::from_str::<Listed>(broken).is_err());
        // Not an entry at all.
        assert!(serde_json::from_str::<Listed>(r#"{"states":[1]}"#).is_err());
    }

    #[test]
    fn their_ops_are_refused_as_ops_of_another_strategy() {
        for (text, operation) in [(MERGE_OPS, "patch"), (RESOLVE_OPS, "resolve")] {
            // The payload is known to every build: the op decodes, and
            // the key declared here refuses it.
            assert!(Message::decode(text).is_ok(), "{text}");
            let (mut replica, doc, pick) = replica();
            let inbound = replica.receive_text(text);
            assert!(inbound.changes.is_empty(), "{inbound:?}");
            match &inbound.errors[..] {
                [
                    Error::WrongStrategy {
                        strategy,
                        operation: refused,
                        ..
                    },
                ] => {
                    assert_eq!(*strategy, Strategy::LastWriteWins);
                    assert_eq!(*refused, operation);
                }
                other => panic!("{operation}: {other:?}"),
            }
            assert_eq!(replica.get(&unit(), &doc).unwrap(), Value::Null);
            assert_eq!(replica.get(&unit(), &pick).unwrap(), Value::Null);
        }
    }
}
