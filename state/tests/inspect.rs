//! What the inspector reads from a manager: the key list with its
//! metadata, the revision signal that says when to re-read, and snapshot
//! export/restore that behaves like any other local write.
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gaesup_state::core::{Error as CoreError, ManualClock, Message, Stamp, TabId};
use gaesup_state::prelude::*;
use gaesup_state::{Origin, StateManager, UnitAddress};
use leptos::prelude::*;
use serde_json::json;

fn manager(tab: u64) -> StateManager {
    StateManager::new(TabId::new(tab), ManualClock::new(1_000))
}

fn address(text: &str) -> UnitAddress {
    text.parse().unwrap()
}

fn visits() -> SharedKey<i64> {
    SharedKey::builder("visits")
        .scope(Scope::Building)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Sum)
        .build()
        .unwrap()
}

fn motto() -> SharedKey<String> {
    SharedKey::builder("motto")
        .scope(Scope::Apartment)
        .schema(2)
        .build()
        .unwrap()
}

#[test]
fn keys_list_metadata_writer_and_subscribers() {
    Owner::new().with(|| {
        let state = manager(7);
        let counter = address("main/lobby/counter");
        let (visits, motto) = (visits(), motto());
        state.declare(&visits).unwrap();
        state.declare(&motto).unwrap();
        assert!(state.keys().is_empty(), "declared only: no full key yet");

        let sub = state.subscribe(&counter, &motto, None, |_| {}).unwrap();
        state.subscribe(&counter, &motto, None, |_| {}).unwrap();
        state.increment(&counter, &visits, 2).unwrap();

        let keys = state.keys();
        let names: Vec<_> = keys.iter().map(|k| k.key.to_string()).collect();
        assert_eq!(
            names,
            ["apartment/main/motto", "building/main/lobby/visits"]
        );

        let motto_info = &keys[0];
        assert_eq!(motto_info.scope, Scope::Apartment);
        assert_eq!(motto_info.lifetime, Lifetime::Memory);
        assert_eq!(motto_info.strategy, Strategy::LastWriteWins);
        assert_eq!(motto_info.schema, 2);
        assert_eq!(motto_info.version, None, "never written");
        assert_eq!(motto_info.last_writer, None);
        assert_eq!(motto_info.subscribers, 2);

        let visits_info = &keys[1];
        assert_eq!(visits_info.strategy, Strategy::Sum);
        assert_eq!(visits_info.lifetime, Lifetime::Persistent);
        assert_eq!(
            visits_info.last_writer,
            Some(counter.clone()),
            "sum keys record who added last"
        );
        assert_eq!(visits_info.version.map(|s| s.tab), Some(TabId::new(7)));
        assert_eq!(visits_info.subscribers, 0);

        state.set(&counter, &motto, "hi".to_owned()).unwrap();
        assert_eq!(state.keys()[0].last_writer, Some(counter.clone()));
        let stamp: Stamp = state.keys()[0].version.unwrap();
        assert_eq!(stamp.tab, TabId::new(7));

        assert!(state.unsubscribe(sub));
        assert_eq!(state.keys()[0].subscribers, 1);
    });
}

#[test]
fn an_app_without_an_inspector_keeps_no_log_and_counts_no_revisions() {
    Owner::new().with(|| {
        let state = manager(1);
        let unit = address("main/lobby/counter");
        let key = motto();
        state.declare(&key).unwrap();
        state.set(&unit, &key, "unseen".to_owned()).unwrap();
        // The first request starts both, from nothing.
        let revision = state.revision();
        assert_eq!(revision.get_untracked(), 0);
        assert!(state.log().is_empty());
        state.set(&unit, &key, "seen".to_owned()).unwrap();
        assert_eq!(revision.get_untracked(), 1);
        let log = state.log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].change.new, serde_json::json!("seen").into());
    });
}

#[test]
fn the_recent_log_is_the_newest_entries_newest_first() {
    Owner::new().with(|| {
        let state = manager(1);
        let unit = address("main/lobby/counter");
        let key = motto();
        state.declare(&key).unwrap();
        assert!(state.recent_log(5).is_empty());
        // Past the capacity: the oldest entries are gone from both.
        let writes = gaesup_state::LOG_CAPACITY + 3;
        for i in 0..writes {
            state.set(&unit, &key, format!("v{i}")).unwrap();
        }
        let all = state.log();
        assert_eq!(all.len(), gaesup_state::LOG_CAPACITY);
        assert_eq!(all[0].change.new, json!("v3").into());

        let recent = state.recent_log(3);
        let newest: Vec<_> = all.iter().rev().take(3).cloned().collect();
        assert_eq!(recent, newest);
        assert_eq!(
            recent[0].change.new,
            json!(format!("v{}", writes - 1)).into()
        );
        assert_eq!(
            state.recent_log(usize::MAX),
            all.into_iter().rev().collect::<Vec<_>>()
        );
    });
}

#[test]
fn revision_moves_on_every_inspectable_change_and_only_then() {
    Owner::new().with(|| {
        let state = manager(1);
        let unit = address("main/lobby/counter");
        let key = motto();
        let revision = state.revision();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let _effect = ImmediateEffect::new(move || {
            revision.track();
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let seen = || runs.load(Ordering::SeqCst);
        assert_eq!(seen(), 1);

        state.declare(&key).unwrap();
        assert_eq!(seen(), 2, "a new declaration");
        state.declare(&key).unwrap();
        assert_eq!(seen(), 2, "declaring again changes nothing");

        let id = state.subscribe(&unit, &key, None, |_| {}).unwrap();
        assert_eq!(seen(), 3, "a subscription");
        state.set(&unit, &key, "hello".to_owned()).unwrap();
        assert_eq!(seen(), 4, "a write");
        let _ = state.get(&unit, &key).unwrap();
        assert_eq!(seen(), 4, "reads are not changes");
        assert!(state.unsubscribe(id));
        assert!(!state.unsubscribe(id));
        assert_eq!(seen(), 5, "an unsubscription, counted once");

        state.receive_text("not json").unwrap();
        assert_eq!(seen(), 6, "a dropped message");
        assert_eq!(state.dropped().len(), 1);
    });
}

#[test]
fn snapshot_restore_round_trip_notifies_and_broadcasts() {
    Owner::new().with(|| {
        let state = manager(1);
        let inspector = address("main/devtools/inspector");
        let writer = address("main/lobby/counter");
        // Persistent: memory keys never leave the tab.
        let key: SharedKey<String> = SharedKey::builder("motto")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap();
        state.declare(&key).unwrap();
        state.set(&writer, &key, "before".to_owned()).unwrap();

        let snapshot = state.snapshot(&inspector, Scope::Apartment).unwrap();
        assert!(snapshot.contains("\"motto\""), "{snapshot}");
        state.set(&writer, &key, "after".to_owned()).unwrap();

        let sent = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&sent);
        state
            .connect(move |message: &Message| {
                if matches!(message, Message::Ops(_)) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            })
            .unwrap();
        let notified = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&notified);
        state
            .subscribe(&writer, &key, None, move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();

        // Nothing was logged before an inspector asked; from now on it is.
        assert!(state.log().is_empty(), "{:?}", state.log());
        let restored = state.restore(&inspector, &snapshot).unwrap();
        assert_eq!(restored.changes.len(), 1);
        assert_eq!(state.get(&writer, &key).unwrap(), "before");
        assert_eq!(notified.load(Ordering::SeqCst), 1, "subscriber told once");
        assert_eq!(sent.load(Ordering::SeqCst), 1, "other tabs told once");
        let last = state.log().pop().unwrap();
        assert_eq!(last.origin, Origin::Local);
        assert_eq!(last.change.new, json!("before").into());
        assert_eq!(
            state.keys()[0].last_writer,
            Some(inspector),
            "the restore is the inspector's write"
        );
    });
}

#[test]
fn a_bad_snapshot_changes_nothing_and_says_why() {
    Owner::new().with(|| {
        let state = manager(1);
        let inspector = address("main/devtools/inspector");
        let key = motto();
        state.declare(&key).unwrap();
        state.set(&inspector, &key, "kept".to_owned()).unwrap();
        let before = state.log().len();

        for bad in [
            "",
            "not json",
            "<img src=x onerror=alert(1)>",
            r#"{"format":"gaesup-snapshot","version":1,"scope":"apartment","keys":{"motto":{"schema":2,"value":42}}}"#,
        ] {
            let err = state.restore(&inspector, bad).unwrap_err();
            assert!(!err.to_string().is_empty());
            assert!(
                matches!(err, StateError::Core(CoreError::InvalidSnapshot { .. } | CoreError::TypeMismatch { .. })),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(state.get(&inspector, &key).unwrap(), "kept");
        assert_eq!(state.log().len(), before, "nothing was written");

        // A key nothing declared yet is not refused: it waits for its
        // declaration, and the rest of the snapshot is restored at once.
        let later = r#"{"format":"gaesup-snapshot","version":1,"scope":"apartment","keys":{"motto":{"schema":2,"value":"now"},"nope":{"schema":1,"value":1}}}"#;
        let restored = state.restore(&inspector, later).unwrap();
        assert_eq!(restored.held.len(), 1);
        assert_eq!(state.get(&inspector, &key).unwrap(), "now");
        let nope = SharedKey::<i64>::builder("nope")
            .scope(Scope::Apartment)
            .build()
            .unwrap();
        state.declare(&nope).unwrap();
        assert_eq!(state.get(&inspector, &nope).unwrap(), 1, "restored on declaration");
    });
}
