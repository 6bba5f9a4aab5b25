//! The reactive layer natively, under a Leptos owner: scoping, isolation,
//! notification counts, batches, rollback, events and cleanup.
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gaesup_state::core::{ManualClock, Message, TabId};
use gaesup_state::prelude::*;
use gaesup_state::{Path, StateManager, UnitAddress, UnitContext, UseSharedStateReturn};
use leptos::prelude::*;
use serde_json::{Value, json};

fn manager(tab: u64) -> StateManager {
    StateManager::new(TabId::new(tab), ManualClock::new(1_000))
}

/// Runs `body` as the unit at `address` (apartment/building/unit), in a
/// child owner that is returned so the test decides when it unmounts.
fn in_unit<R>(manager: StateManager, address: &str, body: impl FnOnce() -> R) -> (Owner, R) {
    let owner = Owner::current().unwrap_or_default().child();
    let address: UnitAddress = address.parse().unwrap();
    let result = owner.with(|| {
        provide_context(UnitContext { address, manager });
        body()
    });
    (owner, result)
}

/// Counts how often an effect reading `read` runs (the first run included).
fn runs(read: impl Fn() + Send + Sync + 'static) -> (Arc<AtomicUsize>, ImmediateEffect) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    let effect = ImmediateEffect::new(move || {
        read();
        counter.fetch_add(1, Ordering::SeqCst);
    });
    (count, effect)
}

fn count_key() -> SharedKey<i64> {
    SharedKey::builder("count")
        .scope(Scope::Building)
        .build()
        .unwrap()
}

#[test]
fn two_buildings_same_key_name_are_independent() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let (_a, lobby) = in_unit(state, "main/lobby/counter", || {
            use_shared_state(&count_key())
        });
        let (_b, shop) = in_unit(
            state,
            "main/shop/counter",
            || use_shared_state(&count_key()),
        );
        let (_c, lobby_too) = in_unit(state, "main/lobby/other", || use_shared_state(&count_key()));
        lobby.set.set(5);
        assert_eq!(lobby.value.get_untracked(), 5);
        assert_eq!(lobby_too.value.get_untracked(), 5, "same building shares");
        assert_eq!(
            shop.value.get_untracked(),
            0,
            "other building is independent"
        );
    });
}

#[test]
fn private_keys_are_isolated_between_units() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let notes = || SharedKey::<String>::builder("notes").build().unwrap();
        let (_a, mine) = in_unit(state, "main/lobby/a", || use_shared_state(&notes()));
        let (_b, theirs) = in_unit(state, "main/lobby/b", || use_shared_state(&notes()));
        mine.set.set("secret".to_owned());
        assert_eq!(mine.value.get_untracked(), "secret");
        assert_eq!(theirs.value.get_untracked(), "");
    });
}

#[test]
fn path_hook_does_not_rerun_on_unrelated_change() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let doc = SharedKey::<Value>::builder_with_default("doc", json!({"a": {"x": 1}, "b": 1}))
            .build()
            .unwrap();
        let (_u, (whole, x)) = in_unit(state, "main/lobby/u", || {
            (
                use_shared_state(&doc),
                use_state_path::<Value, i64>(&doc, "a.x"),
            )
        });
        let x_value = x.value;
        let (path_runs, _effect) = runs(move || {
            x_value.get();
        });
        assert_eq!(path_runs.load(Ordering::SeqCst), 1);

        whole.set.set(json!({"a": {"x": 1}, "b": 2}));
        assert_eq!(path_runs.load(Ordering::SeqCst), 1, "b changed, not a.x");

        whole.set.set(json!({"a": {"x": 7}, "b": 2}));
        assert_eq!(path_runs.load(Ordering::SeqCst), 2);
        assert_eq!(x.value.get_untracked(), Some(7));
    });
}

#[test]
fn path_hook_reports_a_value_of_another_type_until_it_decodes_again() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let doc = SharedKey::<Value>::builder_with_default("doc", json!({"a": {"x": 1}}))
            .build()
            .unwrap();
        let (_u, (whole, x)) = in_unit(state, "main/lobby/u", || {
            (
                use_shared_state(&doc),
                use_state_path::<Value, i64>(&doc, "a.x"),
            )
        });
        let error = x.error;
        let (error_runs, _effect) = runs(move || {
            error.get();
        });
        assert!(x.error.get_untracked().is_none());
        whole.set.set_path("a.x", "seven");
        assert_eq!(x.value.get_untracked(), None);
        let shown = x.error.get_untracked().unwrap().to_string();
        assert!(shown.contains("a.x"), "{shown}");
        whole.set.set_path("a.x", 7);
        assert_eq!(x.value.get_untracked(), Some(7));
        assert!(x.error.get_untracked().is_none());
        // Set and cleared once each; a good value after a good one leaves
        // the error signal alone.
        whole.set.set_path("a.x", 8);
        assert_eq!(x.value.get_untracked(), Some(8));
        assert_eq!(error_runs.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn batch_notifies_each_subscriber_once() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let first = SharedKey::<i64>::builder("first").build().unwrap();
        let second = SharedKey::<i64>::builder("second").build().unwrap();
        let (_u, (a, b, unit)) = in_unit(state, "main/lobby/u", || {
            (
                use_shared_state(&first),
                use_shared_state(&second),
                use_unit_state(),
            )
        });
        let (a_value, b_value) = (a.value, b.value);
        let (a_runs, _ea) = runs(move || {
            a_value.get();
        });
        let (b_runs, _eb) = runs(move || {
            b_value.get();
        });
        unit.batch(|batch| {
            batch.set(&first, 1)?;
            batch.set(&first, 2)?;
            batch.set(&second, 3)
        })
        .unwrap();
        assert_eq!(
            a_runs.load(Ordering::SeqCst),
            2,
            "initial run + one notification"
        );
        assert_eq!(b_runs.load(Ordering::SeqCst), 2);
        assert_eq!((a.value.get_untracked(), b.value.get_untracked()), (2, 3));
    });
}

#[test]
fn failed_batch_changes_nothing_and_notifies_nobody() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let open = SharedKey::<i64>::builder("open").build().unwrap();
        let first = SharedKey::<i64>::builder("fww")
            .strategy(Strategy::FirstWriteWins)
            .build()
            .unwrap();
        let (_u, (a, f, unit)) = in_unit(state, "main/lobby/u", || {
            (
                use_shared_state(&open),
                use_shared_state(&first),
                use_unit_state(),
            )
        });
        f.set.set(1);
        let a_value = a.value;
        let (a_runs, _e) = runs(move || {
            a_value.get();
        });
        let result = unit.batch(|batch| {
            batch.set(&open, 9)?;
            batch.set(&first, 2) // refused: already written
        });
        assert!(result.is_err());
        assert_eq!(a.value.get_untracked(), 0);
        assert_eq!(a_runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn optimistic_rollback_restores_own_write() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let title = SharedKey::<String>::builder("title").build().unwrap();
        let unit: UnitAddress = "main/lobby/u".parse().unwrap();
        state.declare(&title).unwrap();
        state.set(&unit, &title, "before".to_owned()).unwrap();
        let optimistic = state
            .set_full(&unit, &title, "optimistic".to_owned())
            .unwrap();
        state.revert(&unit, &title, &optimistic).unwrap();
        assert_eq!(state.get(&unit, &title).unwrap(), "before");
    });
}

/// The other writes a revert undoes, through the manager: an increment
/// (subtracted again, later increments kept) and a resolve.
#[test]
fn increments_and_resolves_are_rolled_back_from_their_whole_write() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let unit: UnitAddress = "main/lobby/u".parse().unwrap();
        let total = SharedKey::<i64>::builder("total")
            .strategy(Strategy::Sum)
            .build()
            .unwrap();
        let pick = SharedKey::<String>::builder("pick")
            .strategy(Strategy::UserResolve)
            .build()
            .unwrap();
        state.declare(&total).unwrap();
        state.declare(&pick).unwrap();
        let optimistic = state.increment_full(&unit, &total, 5).unwrap();
        assert!(state.increment(&unit, &total, 2).unwrap().changed);
        assert!(state.revert(&unit, &total, &optimistic).unwrap().is_some());
        assert_eq!(state.get(&unit, &total).unwrap(), 2);

        state.set(&unit, &pick, "before".to_owned()).unwrap();
        let chosen = state
            .resolve_full(&unit, &pick, "chosen".to_owned())
            .unwrap();
        assert_eq!(state.get(&unit, &pick).unwrap(), "chosen");
        assert!(state.revert(&unit, &pick, &chosen).unwrap().is_some());
        assert_eq!(state.get(&unit, &pick).unwrap(), "before");
    });
}

#[test]
fn optimistic_rollback_spares_a_later_write_from_another_tab() {
    let owner = Owner::new();
    owner.with(|| {
        let here = manager(1);
        let there = manager(2);
        let title = SharedKey::<String>::builder("title")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap();
        let unit: UnitAddress = "main/lobby/u".parse().unwrap();
        let other: UnitAddress = "main/shop/v".parse().unwrap();
        here.declare(&title).unwrap();
        there.declare(&title).unwrap();

        let optimistic = here
            .set_full(&unit, &title, "optimistic".to_owned())
            .unwrap();
        let deliver = |from: &gaesup_state::core::Write, to: StateManager| {
            let text = from.message.as_ref().unwrap().encode().unwrap();
            to.receive_text(&text).unwrap();
        };
        deliver(&optimistic, there);
        let later = there.set_full(&other, &title, "later".to_owned()).unwrap();
        deliver(&later, here);

        here.revert(&unit, &title, &optimistic).unwrap();
        assert_eq!(here.get(&unit, &title).unwrap(), "later");
    });
}

#[test]
fn refused_write_shows_error_and_keeps_value() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let locked = SharedKey::<i64>::builder("locked")
            .scope(Scope::Building)
            .write(Access::units(["owner"]).unwrap())
            .build()
            .unwrap();
        let (_u, hook) = in_unit(state, "main/lobby/intruder", || use_shared_state(&locked));
        hook.set.set(3);
        assert_eq!(hook.value.get_untracked(), 0);
        let error = hook.meta.error.get_untracked().unwrap().to_string();
        assert!(error.contains("intruder"), "{error}");
        hook.meta.clear_error();
        assert!(hook.meta.error.get_untracked().is_none());
    });
}

#[test]
fn writes_that_succeed_do_not_wake_readers_of_the_error() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let positive = SharedKey::<i64>::builder("positive")
            .scope(Scope::Building)
            .build()
            .unwrap();
        let (_u, hook) = in_unit(state, "main/lobby/u", || {
            use_shared_state_with_options(
                &positive,
                UseSharedStateOptions::default().validate(|n: &i64| {
                    if *n > 0 {
                        Ok(())
                    } else {
                        Err("must be positive".to_owned())
                    }
                }),
            )
        });
        let error = hook.meta.error;
        let (error_runs, _effect) = runs(move || {
            error.track();
        });
        for n in 1..=3 {
            hook.set.set(n);
        }
        hook.set.update(|n| *n += 1);
        assert_eq!(hook.value.get_untracked(), 4);
        assert_eq!(
            error_runs.load(Ordering::SeqCst),
            1,
            "no error came or went"
        );

        hook.set.set(-1);
        assert_eq!(error_runs.load(Ordering::SeqCst), 2, "the refusal shows");
        hook.set.set(-2);
        assert_eq!(
            error_runs.load(Ordering::SeqCst),
            3,
            "a new refusal replaces it"
        );
        hook.set.set(5);
        assert!(error.get_untracked().is_none());
        assert_eq!(error_runs.load(Ordering::SeqCst), 4, "a success clears it");
        hook.set.set(6);
        assert_eq!(error_runs.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_hook_writes_at_a_path_and_its_validator_sees_the_whole_value() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let doc = SharedKey::<Value>::builder("doc")
            .scope(Scope::Building)
            .build()
            .unwrap();
        let (_u, free) = in_unit(state, "main/lobby/a", || use_shared_state(&doc));
        free.set.set(json!({"rows": {"r1": {"qty": 1}}}));
        free.set.set_path("rows.r1.qty", 2);
        assert_eq!(
            free.value.get_untracked(),
            json!({"rows": {"r1": {"qty": 2}}})
        );
        assert!(free.set.try_set_path("rows.r9.qty", 1).is_err());
        assert!(free.meta.error.get_untracked().is_some());

        fn small(value: &Value) -> Result<(), String> {
            match value["rows"]["r1"]["qty"].as_i64() {
                Some(qty) if qty > 9 => Err(format!("qty {qty} is over 9")),
                _ => Ok(()),
            }
        }
        let options = UseSharedStateOptions::default().validate(small);
        let (_v, checked) = in_unit(state, "main/lobby/b", || {
            use_shared_state_with_options(&doc, options)
        });
        checked.set.set_path("rows.r1.qty", 5);
        assert_eq!(
            state.get(&"main/lobby/b".parse().unwrap(), &doc).unwrap()["rows"]["r1"]["qty"],
            5
        );
        let refused = checked.set.try_set_path("rows.r1.qty", 10).unwrap_err();
        assert!(refused.to_string().contains("over 9"), "{refused}");
        assert_eq!(checked.value.get_untracked()["rows"]["r1"]["qty"], 5);
    });
}

#[test]
fn a_hook_replaces_items_of_a_list_and_rows_see_only_their_own() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let rows = SharedKey::<Vec<String>>::builder("rows")
            .scope(Scope::Building)
            .build()
            .unwrap();
        let writer: UnitAddress = "main/lobby/a".parse().unwrap();
        state.declare(&rows).unwrap();
        let labels: Vec<String> = (0..10).map(|i| format!("row {i}")).collect();
        state.set(&writer, &rows, labels).unwrap();
        let (_u, list) = in_unit(state, "main/lobby/a", || use_shared_state(&rows));
        // Each row watches its own index; count what each is told.
        let told: Vec<Arc<std::sync::atomic::AtomicUsize>> =
            (0..10).map(|_| Arc::default()).collect();
        for (i, count) in told.iter().enumerate() {
            let count = Arc::clone(count);
            state
                .subscribe(&writer, &rows, Some(Path::index(i)), move |_| {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
                .unwrap();
        }
        let counts = || -> Vec<usize> {
            told.iter()
                .map(|c| c.swap(0, std::sync::atomic::Ordering::SeqCst))
                .collect()
        };
        list.set
            .set_items([(2, "two".to_owned()), (7, "seven".to_owned())]);
        assert_eq!(counts(), [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(list.value.get_untracked()[2], "two");
        assert_eq!(list.value.get_untracked()[7], "seven");
        // An index past the end: refused, nothing told, nothing changed.
        assert!(list.set.try_set_items([(10, "x".to_owned())]).is_err());
        assert!(list.meta.error.get_untracked().is_some());
        assert_eq!(counts(), [0; 10]);

        let short = |rows: &Vec<String>| match rows.iter().find(|row| row.len() > 5) {
            Some(row) => Err(format!("{row:?} is longer than 5")),
            None => Ok(()),
        };
        let options = UseSharedStateOptions::default().validate(short);
        let (_v, checked) = in_unit(state, "main/lobby/b", || {
            use_shared_state_with_options(&rows, options)
        });
        checked.set.set_items([(2, "deux".to_owned())]);
        assert_eq!(counts(), [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let refused = checked
            .set
            .try_set_items([(3, "trois!".to_owned())])
            .unwrap_err();
        assert!(refused.to_string().contains("longer than 5"), "{refused}");
        assert!(checked.set.try_set_items([(11, "x".to_owned())]).is_err());
        assert_eq!(counts(), [0; 10]);
        assert_eq!(checked.value.get_untracked()[3], "row 3");
        // No items: no write (the same stamp), nothing told, no error.
        let version = checked.meta.version.get_untracked();
        checked.set.try_set_items(std::iter::empty()).unwrap();
        assert_eq!(counts(), [0; 10]);
        assert_eq!(checked.meta.version.get_untracked(), version);
        assert!(checked.meta.error.get_untracked().is_none());
    });
}

#[test]
fn the_manager_called_from_inside_its_own_call_says_busy_instead_of_panicking() {
    // Found by a review: a second borrow of the replica panicked, and a
    // release build aborts the whole page on a panic.
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let key = count_key();
        let (_u, (hook, unit)) = in_unit(state, "main/lobby/u", || {
            (use_shared_state(&key), use_unit_state())
        });
        let address: UnitAddress = "main/lobby/u".parse().unwrap();
        // A hook's setter and a read from inside a batch: refused, the
        // batch's own writes still apply.
        let mut inside = None;
        unit.batch(|batch| {
            hook.set.set(7);
            inside = Some(state.get(&address, &key));
            batch.set(&key, 1)
        })
        .unwrap();
        assert_eq!(inside, Some(Err(StateError::Busy)));
        assert_eq!(hook.meta.error.get_untracked(), Some(StateError::Busy));
        assert_eq!(hook.value.get_untracked(), 1);
        // A write from inside a read; reads inside a read are fine.
        let nested = state.with_replica(|_| {
            (
                state.set(&address, &key, 2).map(|_| ()),
                state.get(&address, &key),
                state.keys().len(),
            )
        });
        assert_eq!(nested.unwrap(), (Err(StateError::Busy), Ok(1), 1));
        assert_eq!(StateError::Busy.code(), "busy");
        // Nothing stays borrowed.
        state.set(&address, &key, 3).unwrap();
        assert_eq!(hook.value.get_untracked(), 3);
    });
}

#[test]
fn hook_outside_a_unit_reports_instead_of_panicking() {
    let owner = Owner::new();
    owner.with(|| {
        let hook = use_shared_state(&count_key());
        assert_eq!(hook.value.get_untracked(), 0);
        assert!(matches!(
            hook.meta.error.get_untracked(),
            Some(StateError::NoUnit { .. })
        ));
        hook.set.set(1);
        assert_eq!(hook.value.get_untracked(), 0);
    });
}

#[test]
fn metadata_names_the_last_writer() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let (_u, hook) = in_unit(
            state,
            "main/lobby/writer",
            || use_shared_state(&count_key()),
        );
        assert_eq!(hook.meta.last_writer.get_untracked(), None);
        let (last_writer, version) = (hook.meta.last_writer, hook.meta.version);
        let (writer_runs, _writer_effect) = runs(move || last_writer.track());
        let (version_runs, _version_effect) = runs(move || version.track());
        hook.set.set(2);
        assert_eq!(
            hook.meta.last_writer.get_untracked().map(|a| a.to_string()),
            Some("main/lobby/writer".to_owned())
        );
        assert!(hook.meta.version.get_untracked().is_some());
        hook.set.set(3);
        hook.set.set(4);
        assert_eq!(
            writer_runs.load(Ordering::SeqCst),
            2,
            "the same writer again"
        );
        assert_eq!(
            version_runs.load(Ordering::SeqCst),
            4,
            "a new stamp per write"
        );

        let (_v, visitor) = in_unit(state, "main/lobby/visitor", || {
            use_shared_state(&count_key())
        });
        visitor.set.set(5);
        assert_eq!(writer_runs.load(Ordering::SeqCst), 3, "another writer");
        assert_eq!(
            hook.meta.last_writer.get_untracked().map(|a| a.to_string()),
            Some("main/lobby/visitor".to_owned())
        );
    });
}

#[test]
fn metadata_read_inside_a_batch_shows_the_last_write_delivered() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let (_u, hook) = in_unit(
            state,
            "main/lobby/writer",
            || use_shared_state(&count_key()),
        );
        hook.set.set(1);
        let writer = |hook: &gaesup_state::UseSharedStateReturn<i64>| {
            hook.meta.last_writer.get_untracked().map(|a| a.to_string())
        };
        assert_eq!(writer(&hook).as_deref(), Some("main/lobby/writer"));
        let version = hook.meta.version;
        // Another unit writes, and nothing reads the metadata until a
        // batch runs (the replica cannot be read inside one): it must show
        // that write there, and still after a batch of another key.
        let other: UnitAddress = "main/lobby/other".parse().unwrap();
        state.set(&other, &count_key(), 2).unwrap();
        let written = version.get_untracked();
        assert!(written.is_some());
        let elsewhere = SharedKey::<i64>::builder("elsewhere")
            .scope(Scope::Building)
            .build()
            .unwrap();
        state.declare(&elsewhere).unwrap();
        state
            .batch(|batch| {
                assert_eq!(writer(&hook).as_deref(), Some("main/lobby/other"));
                assert_eq!(version.get_untracked(), written);
                batch.set(&other, &elsewhere, 3)
            })
            .unwrap();
        assert_eq!(writer(&hook).as_deref(), Some("main/lobby/other"));
        assert_eq!(version.get_untracked(), written);
    });
}

#[test]
fn building_events_reach_the_building_only() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let topic = "ping";
        let (_a, sender) = in_unit(state, "main/lobby/a", || {
            use_container_event::<String>(topic, Scope::Building)
        });
        let (_b, neighbour) = in_unit(state, "main/lobby/b", || {
            use_container_event::<String>(topic, Scope::Building)
        });
        let (_c, stranger) = in_unit(state, "main/shop/c", || {
            use_container_event::<String>(topic, Scope::Building)
        });
        let error = sender.error;
        let (error_runs, _effect) = runs(move || error.track());
        sender.emit.emit("hi".to_owned());
        sender.emit.emit("hi".to_owned());
        assert_eq!(
            error_runs.load(Ordering::SeqCst),
            1,
            "no error came or went"
        );
        assert_eq!(neighbour.last.get_untracked().as_deref(), Some("hi"));
        assert_eq!(
            neighbour.last_sender.get_untracked().map(|a| a.to_string()),
            Some("main/lobby/a".to_owned())
        );
        assert_eq!(stranger.last.get_untracked(), None);
    });
}

#[test]
fn cross_tab_events_go_out_through_transports() {
    let owner = Owner::new();
    owner.with(|| {
        let here = manager(1);
        let there = manager(2);
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let outbox = Arc::clone(&sent);
        here.connect(move |message: &Message| {
            outbox.lock().unwrap().push(message.encode().unwrap());
            Ok(())
        })
        .unwrap();
        let options = UseContainerEventOptions::default().cross_tab(true);
        let (_a, sender) = in_unit(here, "main/lobby/a", || {
            use_container_event_with_options::<i64>("tick", Scope::Apartment, options)
        });
        let (_b, receiver) = in_unit(there, "main/shop/b", || {
            use_container_event::<i64>("tick", Scope::Apartment)
        });
        sender.emit.emit(42);
        for text in sent.lock().unwrap().iter() {
            there.receive_text(text).unwrap();
        }
        assert_eq!(receiver.last.get_untracked(), Some(42));
    });
}

#[test]
fn hostile_messages_are_dropped_and_counted() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let (_u, hook) = in_unit(state, "main/lobby/u", || use_shared_state(&count_key()));
        for text in [
            "",
            "{",
            "null",
            r#"{"type":"ops","body":{"ops":[{"key":"../x"}]}}"#,
        ] {
            let inbound = state.receive_text(text).unwrap();
            assert!(inbound.changes.is_empty());
        }
        assert_eq!(state.dropped().len(), 4);
        assert_eq!(hook.value.get_untracked(), 0);
    });
}

#[test]
fn unmounting_ten_thousand_units_leaves_no_subscription() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let doc = SharedKey::<Value>::builder("doc").build().unwrap();
        let (_resident, _hook) = in_unit(state, "main/lobby/resident", || use_shared_state(&doc));
        let before = (state.subscription_count(), state.listener_count());
        for i in 0..10_000 {
            let (unit, _) = in_unit(state, "main/lobby/visitor", || {
                let _ = use_shared_state(&doc);
                let _ = use_state_path::<Value, i64>(&doc, "a");
                let _ = use_container_event::<i64>("bus", Scope::Building);
            });
            if i == 0 {
                assert_eq!(state.subscription_count(), before.0 + 2);
                assert_eq!(state.listener_count(), before.1 + 1);
            }
            unit.cleanup();
        }
        let after = (state.subscription_count(), state.listener_count());
        println!("subscriptions, listeners before: {before:?}, after 10,000 mounts: {after:?}");
        assert_eq!(before, after);
    });
}

/// One storage shared by several managers, like localStorage between tabs.
#[derive(Clone, Default)]
struct SharedStorage(std::rc::Rc<std::cell::RefCell<gaesup_state::core::MemoryStorage>>);

impl gaesup_state::core::Storage for SharedStorage {
    fn get(&self, key: &str) -> Result<Option<String>, gaesup_state::core::StorageError> {
        self.0.borrow().get(key)
    }
    fn set(&mut self, key: &str, value: &str) -> Result<(), gaesup_state::core::StorageError> {
        self.0.borrow_mut().set(key, value)
    }
    fn remove(&mut self, key: &str) -> Result<(), gaesup_state::core::StorageError> {
        self.0.borrow_mut().remove(key)
    }
    fn keys(&self) -> Result<Vec<String>, gaesup_state::core::StorageError> {
        self.0.borrow().keys()
    }
}

/// An apartment's persistent text key, `draft`.
fn draft_key() -> SharedKey<String> {
    SharedKey::<String>::builder("draft")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .build()
        .unwrap()
}

#[test]
fn a_key_is_rehydrated_from_storage_when_first_declared() {
    let owner = Owner::new();
    owner.with(|| {
        let disk = SharedStorage::default();
        let first = manager(1);
        first
            .attach_storage(Lifetime::Persistent, Box::new(disk.clone()))
            .unwrap();
        let (_a, writer) = in_unit(first, "main/lobby/a", || use_shared_state(&draft_key()));
        writer.set.set("kept".to_owned());
        first.flush().unwrap();

        // A reload: a new manager on the same storage; the hook's very
        // first value is the stored one, not the default.
        let second = manager(2);
        second
            .attach_storage(Lifetime::Persistent, Box::new(disk))
            .unwrap();
        let (_b, reader) = in_unit(second, "main/shop/b", || use_shared_state(&draft_key()));
        assert_eq!(reader.value.get_untracked(), "kept");
    });
}

#[test]
fn memory_keys_never_reach_storage() {
    let owner = Owner::new();
    owner.with(|| {
        let disk = SharedStorage::default();
        let state = manager(1);
        state
            .attach_storage(Lifetime::Persistent, Box::new(disk.clone()))
            .unwrap();
        let (_u, hook) = in_unit(state, "main/lobby/u", || use_shared_state(&count_key()));
        hook.set.set(3);
        state.flush().unwrap();
        use gaesup_state::core::Storage as _;
        assert!(disk.keys().unwrap().is_empty());
    });
}

#[test]
fn corrupt_stored_value_is_quarantined_exported_and_discarded() {
    use gaesup_state::core::{Replica, Storage as _};
    let owner = Owner::new();
    owner.with(|| {
        let mut disk = SharedStorage::default();
        let draft = SharedKey::<String>::builder("draft")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap();
        let address: UnitAddress = "main/lobby/a".parse().unwrap();
        let full = draft.full_key(&address);
        let stored_at = Replica::storage_key(&full);
        disk.set(&stored_at, "{ not json").unwrap();

        let state = manager(1);
        state
            .attach_storage(Lifetime::Persistent, Box::new(disk.clone()))
            .unwrap();
        let (_u, hook) = in_unit(state, "main/lobby/a", || use_shared_state(&draft));
        assert_eq!(
            hook.value.get_untracked(),
            "",
            "the default, not the corrupt text"
        );
        let quarantined = state.quarantined();
        assert_eq!(quarantined.len(), 1);
        assert_eq!(state.quarantine_signal().get_untracked(), quarantined);
        assert_eq!(quarantined[0].key, full);
        assert_eq!(quarantined[0].error.code(), "corrupt");
        assert_eq!(
            state.quarantined_raw(&full).unwrap().as_deref(),
            Some("{ not json")
        );

        // Writing does not overwrite the original while it is quarantined.
        hook.set.set("new".to_owned());
        state.flush().unwrap();
        assert_eq!(disk.get(&stored_at).unwrap().as_deref(), Some("{ not json"));

        // A sync layer hears of the discard while the entry is still there.
        let heard = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let hook = {
            let (heard, disk) = (std::rc::Rc::clone(&heard), disk.clone());
            let stored_at = stored_at.clone();
            move |key: &gaesup_state::core::FullKey| {
                let entry = disk.get(&stored_at).unwrap();
                heard.borrow_mut().push((key.clone(), entry));
            }
        };
        state.on_discard(hook).unwrap();
        state.discard_quarantine(&full).unwrap();
        assert!(state.quarantined().is_empty());
        assert!(state.quarantine_signal().get_untracked().is_empty());
        assert_eq!(
            *heard.borrow(),
            [(full.clone(), Some("{ not json".to_owned()))]
        );
        // A key not set aside (a second click) is not heard of again.
        state.discard_quarantine(&full).unwrap();
        assert_eq!(heard.borrow().len(), 1);
        state.flush().unwrap();
        let saved = disk.get(&stored_at).unwrap().unwrap();
        assert!(saved.contains("new"), "{saved}");
    });
}

#[test]
fn declaration_hooks_hear_each_key_once_after_it_loaded() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let unit: UnitAddress = "main/shop/cart".parse().unwrap();
        let heard = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let hook = {
            let (heard, state, unit) = (std::rc::Rc::clone(&heard), state, unit.clone());
            move |spec: &gaesup_state::core::KeySpec| {
                // Called with nothing borrowed: the key reads already.
                let value = state
                    .get(
                        &unit,
                        &SharedKey::<Value>::erased(std::sync::Arc::new(spec.clone())),
                    )
                    .unwrap();
                heard.borrow_mut().push((spec.name().to_string(), value));
            }
        };
        state.on_declare(hook).unwrap();

        let count = count_key();
        state.declare(&count).unwrap();
        assert_eq!(*heard.borrow(), [("count".to_owned(), json!(0))]);
        // The same rules again: declared already, not heard again.
        state.declare(&count).unwrap();
        assert_eq!(heard.borrow().len(), 1);
        // Refused (other rules under the same name): not declared, not heard.
        let clash = SharedKey::<i64>::builder("count")
            .scope(Scope::Building)
            .strategy(Strategy::Sum)
            .build()
            .unwrap();
        assert!(state.declare(&clash).is_err());
        assert_eq!(heard.borrow().len(), 1);

        let note = SharedKey::<String>::builder("note").build().unwrap();
        state.declare(&note).unwrap();
        assert_eq!(heard.borrow().len(), 2);
        assert_eq!(heard.borrow()[1], ("note".to_owned(), json!("")));
    });
}

#[test]
fn a_declaration_hook_sees_what_storage_held_for_the_key() {
    let owner = Owner::new();
    owner.with(|| {
        let disk = SharedStorage::default();
        let unit: UnitAddress = "main/lobby/a".parse().unwrap();
        let first = manager(1);
        first
            .attach_storage(Lifetime::Persistent, Box::new(disk.clone()))
            .unwrap();
        first.declare(&draft_key()).unwrap();
        first.set(&unit, &draft_key(), "kept".to_owned()).unwrap();
        first.flush().unwrap();

        let second = manager(2);
        second
            .attach_storage(Lifetime::Persistent, Box::new(disk))
            .unwrap();
        let heard = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let hook = {
            let (heard, unit) = (std::rc::Rc::clone(&heard), unit.clone());
            move |_: &gaesup_state::core::KeySpec| {
                heard
                    .borrow_mut()
                    .push(second.get(&unit, &draft_key()).unwrap());
            }
        };
        second.on_declare(hook).unwrap();
        second.declare(&draft_key()).unwrap();
        assert_eq!(*heard.borrow(), ["kept"]);
    });
}

/// Path subscribers on one untyped key that record, by path, who was
/// told: `take` says who since the last call, sorted.
struct Hits {
    state: StateManager,
    unit: UnitAddress,
    key: SharedKey<Value>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hits {
    fn new(state: StateManager) -> Self {
        let unit: UnitAddress = "main/lobby/paths".parse().unwrap();
        let key: SharedKey<Value> = SharedKey::builder("doc").build().unwrap();
        state.declare(&key).unwrap();
        Self {
            state,
            unit,
            key,
            seen: Arc::default(),
        }
    }

    /// Subscribes to `path` (`""`: the whole key).
    fn watch(&self, path: &str) -> gaesup_state::SubscriptionId {
        self.watch_key(&self.key, path, path)
    }

    /// Subscribes to `path` of `key`, seen as `name`.
    fn watch_key(
        &self,
        key: &SharedKey<Value>,
        path: &str,
        name: &str,
    ) -> gaesup_state::SubscriptionId {
        let seen = Arc::clone(&self.seen);
        let name = name.to_owned();
        let path = (!path.is_empty()).then(|| Path::parse(path).unwrap());
        self.state
            .subscribe(&self.unit, key, path, move |_| {
                seen.lock().unwrap().push(name.clone())
            })
            .unwrap()
    }

    fn take(&self) -> Vec<String> {
        let mut seen = std::mem::take(&mut *self.seen.lock().unwrap());
        seen.sort();
        seen
    }
}

#[test]
fn changes_of_the_key_written_last_reach_whoever_watches_it_now() {
    // A change of the key delivered last takes the callbacks found for
    // it then: every subscribe and unsubscribe must start over.
    let owner = Owner::new();
    owner.with(|| {
        let hits = Hits::new(manager(1));
        let set = |key: &SharedKey<Value>, value: Value| {
            hits.state.set(&hits.unit, key, value).unwrap();
        };
        let key = hits.key.clone();
        let whole = hits.watch("");
        set(&key, json!({"a": 1, "b": 1}));
        set(&key, json!({"a": 1, "b": 2}));
        assert_eq!(hits.take(), ["", ""]);
        // A path subscriber after those writes: reached by what touches
        // its path, and only that.
        hits.watch("a");
        set(&key, json!({"a": 1, "b": 3}));
        assert_eq!(hits.take(), [""]);
        set(&key, json!({"a": 2, "b": 3}));
        assert_eq!(hits.take(), ["", "a"]);
        // Gone: no longer reached, whoever stays is.
        assert!(hits.state.unsubscribe(whole));
        set(&key, json!({"a": 3, "b": 3}));
        assert_eq!(hits.take(), ["a"]);
        // Two keys written in turn, each reaching its own subscriber; one
        // nobody watched until now.
        let other: SharedKey<Value> = SharedKey::builder("other").build().unwrap();
        hits.state.declare(&other).unwrap();
        set(&other, json!(1));
        assert_eq!(hits.take(), Vec::<String>::new());
        let on_other = hits.watch_key(&other, "", "other");
        for n in 2..4 {
            set(&other, json!(n));
            set(&key, json!({"a": n * 10}));
        }
        assert_eq!(hits.take(), ["a", "a", "other", "other"]);
        // Two watch all of it; one leaves.
        let second = hits.watch_key(&other, "", "second");
        set(&other, json!(5));
        assert_eq!(hits.take(), ["other", "second"]);
        assert!(hits.state.unsubscribe(on_other));
        set(&other, json!(6));
        assert_eq!(hits.take(), ["second"]);
        assert!(hits.state.unsubscribe(second));
        set(&other, json!(9));
        assert_eq!(hits.take(), Vec::<String>::new());
    });
}

#[test]
fn path_subscribers_are_reached_through_the_fields_a_change_touched() {
    let owner = Owner::new();
    owner.with(|| {
        let hits = Hits::new(manager(1));
        let (state, unit, key) = (hits.state, hits.unit.clone(), hits.key.clone());
        let watch = |path: &str| hits.watch(path);
        let take = || hits.take();
        for i in 0..1_000 {
            watch(&format!("p{i}"));
        }
        for path in ["", "list.1", "list", "p7.deep"] {
            watch(path);
        }

        state.set(&unit, &key, json!({"p7": 1})).unwrap();
        assert_eq!(
            take(),
            ["", "p7"],
            "one path of a thousand, plus the whole key"
        );
        state.set(&unit, &key, json!({"p7": {"deep": 2}})).unwrap();
        assert_eq!(take(), ["", "p7", "p7.deep"]);
        state
            .set(&unit, &key, json!({"p7": {"deep": 2}, "list": [0, 1]}))
            .unwrap();
        assert_eq!(take(), ["", "list", "list.1"]);
        state
            .set(&unit, &key, json!({"p7": {"deep": 2}, "list": [0, 5, 9]}))
            .unwrap();
        assert_eq!(take(), ["", "list", "list.1"]);
        // The top level changes shape: every path that changed hears it.
        state.set(&unit, &key, json!([1])).unwrap();
        assert_eq!(take(), ["", "list", "list.1", "p7", "p7.deep"]);
        assert_eq!(state.subscriber_count(&key.full_key(&unit)), 1_004);
    });
}

#[test]
fn a_write_at_a_path_reaches_the_paths_over_and_under_it_only() {
    let owner = Owner::new();
    owner.with(|| {
        let hits = Hits::new(manager(1));
        let (state, unit, key) = (hits.state, hits.unit.clone(), hits.key.clone());
        state
            .set(
                &unit,
                &key,
                json!({"rows": {"r1": {"qty": 1}, "r2": {"qty": 2}}, "n": 0}),
            )
            .unwrap();
        for path in [
            "",
            "rows",
            "rows.r1",
            "rows.r1.qty",
            "rows.r2",
            "rows.r2.qty",
            "n",
        ] {
            hits.watch(path);
        }
        let take = || hits.take();
        let at = |text: &str| Path::parse(text).unwrap();

        state
            .set_path(&unit, &key, &at("rows.r1.qty"), json!(5))
            .unwrap();
        assert_eq!(take(), ["", "rows", "rows.r1", "rows.r1.qty"]);
        // The same value again: a write, but no change to tell.
        let same = state
            .set_path(&unit, &key, &at("rows.r1.qty"), json!(5))
            .unwrap();
        assert!(!same.changed);
        assert!(take().is_empty());
        // Replacing a whole row reaches what lies inside it, if it moved.
        state
            .set_path(&unit, &key, &at("rows.r2"), json!({"qty": 2, "note": "x"}))
            .unwrap();
        assert_eq!(take(), ["", "rows", "rows.r2"]);
        state
            .set_path(&unit, &key, &at("rows.r2"), json!({"qty": 3}))
            .unwrap();
        assert_eq!(take(), ["", "rows", "rows.r2", "rows.r2.qty"]);
        state.set_path(&unit, &key, &at("n"), json!(1)).unwrap();
        assert_eq!(take(), ["", "n"]);
        assert_eq!(
            state.get(&unit, &key).unwrap(),
            json!({"rows": {"r1": {"qty": 5}, "r2": {"qty": 3}}, "n": 1})
        );
        // A path that leads nowhere tells nobody and changes nothing.
        assert!(
            state
                .set_path(&unit, &key, &at("rows.r9.qty"), json!(1))
                .is_err()
        );
        assert!(take().is_empty());
    });
}

/// Subscribes, as `unit`, a subscriber that clamps 11 to 10 by writing
/// from inside its notification.
fn subscribe_clamp(state: StateManager, unit: &UnitAddress, key: &SharedKey<i64>) {
    let (writer, written) = (unit.clone(), key.clone());
    state
        .subscribe(unit, key, None, move |change| {
            if change.new == json!(11).into() {
                state.set(&writer, &written, 10).unwrap();
            }
        })
        .unwrap();
}

#[test]
fn a_write_made_while_a_change_is_delivered_is_what_later_subscribers_keep() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let clamp: UnitAddress = "main/lobby/clamp".parse().unwrap();
        let key = count_key();
        state.declare(&key).unwrap();
        // Subscribed first, so it hears each change before the hook.
        subscribe_clamp(state, &clamp, &key);
        let (_b, hook) = in_unit(state, "main/lobby/counter", || {
            use_shared_state(&count_key())
        });
        let (_c, path) = in_unit(state, "main/lobby/other", || {
            use_state_path::<i64, i64>(&count_key(), "x")
        });
        // A plain subscriber after them records what it is told, in order.
        let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
        let record = Arc::clone(&seen);
        state
            .subscribe(&clamp, &key, None, move |change| {
                record
                    .lock()
                    .unwrap()
                    .push(serde_json::Value::clone(&change.new));
            })
            .unwrap();
        state.set(&clamp, &key, 11).unwrap();
        assert_eq!(state.get(&clamp, &key).unwrap(), 10);
        assert_eq!(hook.value.get_untracked(), 10, "not the stale 11");
        assert_eq!(
            *seen.lock().unwrap(),
            [json!(11), json!(10)],
            "every subscriber hears the changes in the order they were made"
        );
        assert_eq!(path.value.get_untracked(), None);
    });
}

/// Subscribes a subscriber that panics on `fails_on` and records every
/// other value it is told, in order.
fn subscribe_failing_on(
    state: StateManager,
    unit: &UnitAddress,
    key: &SharedKey<i64>,
    fails_on: i64,
) -> Arc<std::sync::Mutex<Vec<Value>>> {
    let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let record = Arc::clone(&seen);
    state
        .subscribe(unit, key, None, move |change| {
            let new = serde_json::Value::clone(&change.new);
            assert_ne!(new, json!(fails_on), "this subscriber fails on {fails_on}");
            record.lock().unwrap().push(new);
        })
        .unwrap();
    seen
}

/// Writes `value`, which a subscriber panics on: the panic reaches the
/// writer.
fn assert_set_panics(state: StateManager, unit: &UnitAddress, key: &SharedKey<i64>, value: i64) {
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        state.set(unit, key, value).unwrap();
    }));
    assert!(panicked.is_err());
}

/// A subscriber that panics (where panics unwind: native builds, tests)
/// loses its own notification, not everyone's later ones.
#[test]
fn a_panicking_subscriber_does_not_stop_later_deliveries() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let unit: UnitAddress = "main/lobby/counter".parse().unwrap();
        let key = count_key();
        state.declare(&key).unwrap();
        let seen = subscribe_failing_on(state, &unit, &key, 1);
        assert_set_panics(state, &unit, &key, 1);
        state.set(&unit, &key, 2).unwrap();
        state.set(&unit, &key, 3).unwrap();
        assert_eq!(*seen.lock().unwrap(), [json!(2), json!(3)]);
    });
}

/// The same for a change routed by path (a delivery that took the
/// manager's list of targets out): the next changes still reach their
/// subscribers, and nothing stays borrowed.
#[test]
fn a_panicking_path_subscriber_does_not_stop_later_deliveries() {
    let owner = Owner::new();
    owner.with(|| {
        let hits = Hits::new(manager(1));
        hits.watch("a");
        hits.watch("");
        let seen = Arc::clone(&hits.seen);
        hits.state
            .subscribe(
                &hits.unit,
                &hits.key,
                Some(Path::parse("b").unwrap()),
                move |change| {
                    assert_ne!(
                        change.new,
                        json!({"b": 1}).into(),
                        "this subscriber fails on b = 1"
                    );
                    seen.lock().unwrap().push("b".to_owned());
                },
            )
            .unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hits.state
                .set(&hits.unit, &hits.key, json!({"b": 1}))
                .unwrap();
        }));
        assert!(panicked.is_err());
        hits.take();
        hits.state
            .set(&hits.unit, &hits.key, json!({"a": 1, "b": 2}))
            .unwrap();
        assert_eq!(hits.take(), ["", "a", "b"]);
        hits.state
            .set(&hits.unit, &hits.key, json!({"a": 2, "b": 2}))
            .unwrap();
        assert_eq!(hits.take(), ["", "a"]);
    });
}

/// A change queued by a subscriber's write, when a later subscriber
/// panics before the queue is delivered, still comes before the next
/// write's change: nobody's last notification is the older value.
#[test]
fn changes_queued_before_a_panic_come_before_the_next_write() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let unit: UnitAddress = "main/lobby/counter".parse().unwrap();
        let key = count_key();
        state.declare(&key).unwrap();
        subscribe_clamp(state, &unit, &key);
        let seen = subscribe_failing_on(state, &unit, &key, 11);
        assert_set_panics(state, &unit, &key, 11);
        state.set(&unit, &key, 5).unwrap();
        assert_eq!(state.get(&unit, &key).unwrap(), 5);
        assert_eq!(*seen.lock().unwrap(), [json!(10), json!(5)]);
    });
}

/// A subscriber that subscribes another, or unsubscribes one, from inside
/// its notification, then writes: the write's change reaches whoever
/// watches when it is delivered, and the subscription gone, once gone,
/// holds nothing alive.
#[test]
fn subscribers_that_come_and_go_during_a_delivery_are_reached_as_they_stand() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let unit: UnitAddress = "main/lobby/counter".parse().unwrap();
        let key = count_key();
        state.declare(&key).unwrap();
        let record: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let log = Arc::clone(&record);
        // A subscriber that records what it is told, holding `alive`.
        let named = move |name: &'static str, alive: Option<Arc<()>>| {
            let log = Arc::clone(&log);
            move |change: &gaesup_state::core::Change| {
                let _ = &alive;
                log.lock().unwrap().push(format!("{name} {}", change.new));
            }
        };
        let take = || std::mem::take(&mut *record.lock().unwrap());
        // `leaving` holds `alive`: once unsubscribed, nothing may keep it.
        let alive = Arc::new(());
        let leaving = state
            .subscribe(
                &unit,
                &key,
                None,
                named("leaving", Some(Arc::clone(&alive))),
            )
            .unwrap();
        state.set(&unit, &key, 1).unwrap();
        assert_eq!(take(), ["leaving 1"]);
        // On 2, `host` lets `leaving` go, brings `joining` in, and writes 3.
        let (host_unit, host_key) = (unit.clone(), key.clone());
        let joining = named("joining", None);
        let joining = std::cell::Cell::new(Some(joining));
        state
            .subscribe(&unit, &key, None, move |change| {
                if change.new == json!(2).into() {
                    assert!(state.unsubscribe(leaving));
                    if let Some(joining) = joining.take() {
                        state
                            .subscribe(&host_unit, &host_key, None, joining)
                            .unwrap();
                    }
                    state.set(&host_unit, &host_key, 3).unwrap();
                }
            })
            .unwrap();
        state.set(&unit, &key, 2).unwrap();
        // 2 reached `leaving` (listed before `host` when 2 was delivered);
        // 3 reached only who watched then.
        assert_eq!(take(), ["leaving 2", "joining 3"]);
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the gone subscription is dropped"
        );
        state.set(&unit, &key, 4).unwrap();
        assert_eq!(take(), ["joining 4"]);
    });
}

/// A manager lives as long as the owner it was made under: once that owner
/// is disposed, every call says so, even right after a call that worked
/// (the last manager used is remembered for speed, and must not outlive
/// its owner), while another manager still works.
#[test]
fn a_disposed_manager_says_so_even_right_after_it_was_used() {
    let unit: UnitAddress = "main/lobby/counter".parse().unwrap();
    let key = count_key();
    let outer = Owner::new();
    outer.with(|| {
        let inner = Owner::current().unwrap().child();
        let gone = inner.with(|| manager(1));
        let kept = manager(2);
        for state in [gone, kept] {
            state.declare(&key).unwrap();
            state.set(&unit, &key, 1).unwrap();
        }
        assert_eq!(gone.get(&unit, &key).unwrap(), 1);
        inner.cleanup();
        assert!(matches!(
            gone.set(&unit, &key, 2),
            Err(gaesup_state::StateError::Disposed)
        ));
        assert!(matches!(
            gone.get(&unit, &key),
            Err(gaesup_state::StateError::Disposed)
        ));
        assert_eq!(kept.get(&unit, &key).unwrap(), 1);
        kept.set(&unit, &key, 3).unwrap();
        assert!(gone.get(&unit, &key).is_err());

        // Disposed by a subscriber, during a write that still holds it, and
        // used by a later cleanup of the same owner on the way out.
        let inner = Owner::current().unwrap().child();
        let going = inner.with(|| {
            let going = manager(3);
            let (watched, counted) = (unit.clone(), key.clone());
            on_cleanup(move || {
                let _ = going.get(&watched, &counted);
            });
            going
        });
        going.declare(&key).unwrap();
        let after = std::rc::Rc::new(std::cell::Cell::new(None));
        let (owner, seen) = (inner.clone(), std::rc::Rc::clone(&after));
        let (watched, counted) = (unit.clone(), key.clone());
        going
            .subscribe(&unit, &key, None, move |_| {
                owner.cleanup();
                seen.set(Some(going.get(&watched, &counted).is_err()));
            })
            .unwrap();
        going.set(&unit, &key, 1).unwrap();
        assert_eq!(
            after.get(),
            Some(true),
            "a call after disposal still worked"
        );
    });
}

const DAY: u64 = 24 * 3600 * 1000;

/// This tab at day 10 and another tab three days ahead, both with an
/// ephemeral apartment key `n` declared, written by one unit.
struct Skewed {
    clock: ManualClock,
    here: StateManager,
    ahead: StateManager,
    key: SharedKey<i64>,
    unit: UnitAddress,
}

impl Skewed {
    fn new() -> Self {
        let clock = ManualClock::new(10 * DAY);
        let here = StateManager::new(TabId::new(1), clock.clone());
        let ahead = StateManager::new(TabId::new(2), ManualClock::new(13 * DAY));
        let key = SharedKey::<i64>::builder("n")
            .scope(Scope::Apartment)
            .lifetime(gaesup_state::Lifetime::Ephemeral)
            .build()
            .unwrap();
        here.declare(&key).unwrap();
        ahead.declare(&key).unwrap();
        Self {
            clock,
            here,
            ahead,
            key,
            unit: "main/lobby/u".parse().unwrap(),
        }
    }
}

/// Every change `state` delivers for `key`, as (old, new) in order.
fn record_changes(
    state: StateManager,
    unit: &UnitAddress,
    key: &SharedKey<i64>,
) -> std::rc::Rc<std::cell::RefCell<Vec<(Value, Value)>>> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = std::rc::Rc::clone(&seen);
    state
        .subscribe(unit, key, None, move |change| {
            log.borrow_mut()
                .push((Value::clone(&change.old()), (*change.new).clone()));
        })
        .unwrap();
    seen
}

/// Writes `value` in `from` and hands the message it broadcast to `to`.
fn send(
    from: StateManager,
    to: StateManager,
    unit: &UnitAddress,
    key: &SharedKey<i64>,
    value: i64,
) {
    let write = from.set_full(unit, key, value).unwrap();
    to.receive_text(&write.message.unwrap().encode().unwrap())
        .unwrap();
}

/// What the replica changes on its own (a held write whose time came, this
/// tab's writes set aside because its clock went back) reaches subscribers
/// before the next local write's change, in the order it happened.
#[test]
fn changes_the_replica_makes_on_its_own_come_before_the_next_write() {
    let owner = Owner::new();
    owner.with(|| {
        let Skewed {
            clock,
            here,
            ahead,
            key,
            unit,
        } = Skewed::new();
        let seen = record_changes(here, &unit, &key);
        // A write from a tab three days ahead: held here for now.
        send(ahead, here, &unit, &key, 1);
        assert_eq!(here.get(&unit, &key).unwrap(), 0);
        assert!(seen.borrow().is_empty());
        // Its time comes; the next local write admits it first.
        clock.set(12 * DAY);
        here.set(&unit, &key, 2).unwrap();
        assert_eq!(*seen.borrow(), [(json!(0), json!(1)), (json!(1), json!(2))]);
        // The clock goes back three days: both writes, stamped ahead of
        // it now, are set aside until it catches up, before the next one.
        seen.borrow_mut().clear();
        clock.set(9 * DAY);
        here.set(&unit, &key, 3).unwrap();
        assert_eq!(*seen.borrow(), [(json!(2), json!(0)), (json!(0), json!(3))]);
    });
}

/// A subscriber may write from inside a change the replica made on its
/// own (a held write whose time came, published as the next local write
/// begins): its write comes after that change, the local write after
/// both, and every subscriber keeps the last.
#[test]
fn a_subscriber_writing_inside_a_change_a_poll_published_comes_before_the_next_write() {
    let owner = Owner::new();
    owner.with(|| {
        let Skewed {
            clock,
            here,
            ahead,
            key,
            unit,
        } = Skewed::new();
        subscribe_clamp(here, &unit, &key);
        let seen = record_changes(here, &unit, &key);
        // 11 from a tab three days ahead: held here until its time comes.
        send(ahead, here, &unit, &key, 11);
        assert!(seen.borrow().is_empty());
        clock.set(12 * DAY);
        here.set(&unit, &key, 2).unwrap();
        assert_eq!(
            *seen.borrow(),
            [
                (json!(0), json!(11)),
                (json!(11), json!(10)),
                (json!(10), json!(2))
            ]
        );
        assert_eq!(here.get(&unit, &key).unwrap(), 2);
        let held = here.with_replica(|replica| replica.held()).unwrap();
        assert_eq!(held, (0, 0), "admitted once, nothing left held");
    });
}

/// A building sum key `name`, declared on `manager`.
fn declared_sum(manager: StateManager, name: &str) -> SharedKey<i64> {
    let key = SharedKey::<i64>::builder(name)
        .scope(Scope::Building)
        .strategy(Strategy::Sum)
        .build()
        .unwrap();
    manager.declare(&key).unwrap();
    key
}

/// Subscribes to `key` a callback that counts in `heard` each change it
/// is told of and answers it with another increment of `key`: a loop.
fn subscribe_looping(
    manager: StateManager,
    unit: &UnitAddress,
    key: &SharedKey<i64>,
    heard: &Arc<AtomicUsize>,
) {
    let (seen, writer, again) = (Arc::clone(heard), unit.clone(), key.clone());
    manager
        .subscribe(unit, key, None, move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = manager.increment(&writer, &again, 1);
        })
        .unwrap();
}

#[test]
fn a_subscriber_that_writes_on_every_change_is_cut_off_not_looped_forever() {
    Owner::new().with(|| {
        let manager = manager(1);
        let key = declared_sum(manager, "n");
        let unit: UnitAddress = "a/b/u".parse().unwrap();
        let heard = Arc::new(AtomicUsize::new(0));
        // Each change it hears makes another.
        subscribe_looping(manager, &unit, &key, &heard);
        manager.increment(&unit, &key, 1).unwrap();
        // The first change, then MAX_CASCADE_DEPTH of its own; the writes
        // stand.
        let depth = gaesup_state::MAX_CASCADE_DEPTH as usize;
        assert_eq!(heard.load(Ordering::SeqCst), 1 + depth);
        assert_eq!(manager.get(&unit, &key).unwrap(), 2 + depth as i64);
        let dropped = manager.dropped();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("kept writing"), "{dropped:?}");
        assert!(dropped[0].contains("building/a/b/n"), "{dropped:?}");
        // A later write is delivered again (and cut off again).
        manager.increment(&unit, &key, 1).unwrap();
        assert_eq!(heard.load(Ordering::SeqCst), 2 * (1 + depth));
        assert_eq!(manager.dropped().len(), 2);
    });
}

#[test]
fn a_subscriber_answering_many_changes_at_one_depth_is_never_cut() {
    Owner::new().with(|| {
        let manager = manager(1);
        let (trigger, derived) = (
            declared_sum(manager, "trigger"),
            declared_sum(manager, "derived"),
        );
        let unit: UnitAddress = "a/b/u".parse().unwrap();
        let (writer, target) = (unit.clone(), derived.clone());
        // One change heard, 20,000 writes made: each one step deep.
        manager
            .subscribe(&unit, &trigger, None, move |_| {
                for _ in 0..20_000 {
                    manager.increment(&writer, &target, 1).unwrap();
                }
            })
            .unwrap();
        let told = Arc::new(AtomicUsize::new(0));
        let tell = Arc::clone(&told);
        manager
            .subscribe(&unit, &derived, None, move |_| {
                tell.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        manager.increment(&unit, &trigger, 1).unwrap();
        assert_eq!(told.load(Ordering::SeqCst), 20_000);
        assert_eq!(manager.get(&unit, &derived).unwrap(), 20_000);
        assert_eq!(manager.dropped(), Vec::<String>::new());
    });
}

#[test]
fn two_subscribers_writing_on_every_change_are_cut_off_too() {
    Owner::new().with(|| {
        let manager = manager(1);
        let key = declared_sum(manager, "n");
        let unit: UnitAddress = "a/b/u".parse().unwrap();
        let heard = Arc::new(AtomicUsize::new(0));
        // Each change makes two: the changes double at every step, and
        // depth alone would stop them only after 2^100.
        for _ in 0..2 {
            subscribe_looping(manager, &unit, &key, &heard);
        }
        manager.increment(&unit, &key, 1).unwrap();
        // Two subscribers told of each change delivered: the first, then
        // at most MAX_CASCADE_CHANGES more.
        let delivered = heard.load(Ordering::SeqCst) / 2;
        assert_eq!(delivered, 1 + gaesup_state::MAX_CASCADE_CHANGES);
        let dropped = manager.dropped();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("building/a/b/n"), "{dropped:?}");
    });
}

/// A `ping` event on the building of `a/b/u`, carrying `n`.
fn ping(n: i64) -> gaesup_state::core::Event {
    let unit: UnitAddress = "a/b/u".parse().unwrap();
    let name: gaesup_state::core::KeyName = "ping".parse().unwrap();
    gaesup_state::core::Event::new(Scope::Building, &unit, &name, json!(n)).unwrap()
}

/// Listens to `ping` on `manager`: each event heard is counted in `heard`,
/// recorded in `order`, and, while `answer` says so for its number,
/// answered with another (one more) from inside the listener.
fn listen_answering(
    manager: StateManager,
    heard: &Arc<AtomicUsize>,
    order: &Arc<std::sync::Mutex<Vec<i64>>>,
    answer: fn(i64) -> bool,
) {
    let (seen, order) = (Arc::clone(heard), Arc::clone(order));
    manager
        .listen(ping(0).topic, move |event| {
            seen.fetch_add(1, Ordering::SeqCst);
            let n = event.data.as_i64().unwrap();
            order.lock().unwrap().push(n);
            if answer(n) {
                manager.emit(ping(n + 1), false).unwrap();
            }
        })
        .unwrap();
}

// Found by a hostile review: a listener's emit was delivered by a call
// nested inside the listener, with no bound, so a listener answering each
// event it hears (a JavaScript unit's `on` calling `emit`, or two units
// playing ping-pong) recursed until the stack overflowed: a trap that
// unwinds nothing and leaves the manager's borrows and delivery flag
// stuck. Events now wait in a queue, like changes, within the same bounds.

#[test]
fn a_listener_that_emits_on_every_event_is_cut_off_not_recursed_into() {
    Owner::new().with(|| {
        let manager = manager(1);
        let heard = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        listen_answering(manager, &heard, &order, |_| true);
        manager.emit(ping(0), false).unwrap();
        let depth = gaesup_state::MAX_CASCADE_DEPTH as usize;
        assert_eq!(heard.load(Ordering::SeqCst), 1 + depth);
        let dropped = manager.dropped();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("kept emitting"), "{dropped:?}");
        assert!(dropped[0].contains("building/a/b/ping"), "{dropped:?}");
        // The next emit is delivered again (and cut off again).
        manager.emit(ping(0), false).unwrap();
        assert_eq!(heard.load(Ordering::SeqCst), 2 * (1 + depth));
        assert_eq!(manager.dropped().len(), 2);
    });
}

#[test]
fn an_event_a_listener_emits_reaches_every_listener_after_the_one_that_was_being_told() {
    Owner::new().with(|| {
        let manager = manager(1);
        let heard = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Two listeners; both answer 0 with 1, once each.
        listen_answering(manager, &heard, &order, |n| n == 0);
        listen_answering(manager, &heard, &order, |n| n == 0);
        manager.emit(ping(0), false).unwrap();
        // Both hear 0 before anyone hears a 1; then each 1, by both.
        assert_eq!(*order.lock().unwrap(), [0, 0, 1, 1, 1, 1]);
        assert_eq!(manager.dropped(), Vec::<String>::new());
    });
}

#[test]
fn two_listeners_emitting_on_every_event_are_cut_off_too() {
    Owner::new().with(|| {
        let manager = manager(1);
        let heard = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Each event makes two: depth alone would stop them after 2^100.
        listen_answering(manager, &heard, &order, |_| true);
        listen_answering(manager, &heard, &order, |_| true);
        manager.emit(ping(0), false).unwrap();
        let delivered = heard.load(Ordering::SeqCst) / 2;
        assert_eq!(delivered, 1 + gaesup_state::MAX_CASCADE_CHANGES);
        assert_eq!(manager.dropped().len(), 1);
    });
}

/// Found by the review of the queue: the bounds counted events delivered,
/// not waiting. Two answers to each event double the queue at every step,
/// each a copy of its data (up to 256 KiB), so it filled the memory long
/// before 100,000 were delivered. What waits is bounded in bytes too.
#[test]
fn listeners_doubling_large_events_are_cut_off_by_the_bytes_waiting() {
    Owner::new().with(|| {
        let manager = manager(1);
        let unit: UnitAddress = "a/b/u".parse().unwrap();
        let name: gaesup_state::core::KeyName = "ping".parse().unwrap();
        let data = json!("x".repeat(10_000));
        let big = gaesup_state::core::Event::new(Scope::Building, &unit, &name, data).unwrap();
        let heard = Arc::new(AtomicUsize::new(0));
        let (seen, answer) = (Arc::clone(&heard), big.clone());
        // Two answers to each of the first 1,000 events heard: 2,000 of
        // 10,002 bytes (as JSON) would wait at once.
        const ANSWERED: usize = 1_000;
        manager
            .listen(big.topic.clone(), move |_| {
                if seen.fetch_add(1, Ordering::SeqCst) < ANSWERED {
                    manager.emit(answer.clone(), false).unwrap();
                    manager.emit(answer.clone(), false).unwrap();
                }
            })
            .unwrap();
        manager.emit(big, false).unwrap();
        // At most this many waited at once, each heard after the answers.
        let waiting = gaesup_state::MAX_QUEUED_EVENT_BYTES / 10_002;
        let heard = heard.load(Ordering::SeqCst);
        assert!(heard <= ANSWERED + waiting + 1, "{heard}");
        let dropped = manager.dropped();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("bytes of data waiting"), "{dropped:?}");
    });
}

/// A building's counter `name` of type `T`, and a hook of unit
/// `main/lobby/u` (its owner first) writing it with a validator: at most
/// 10.
fn at_most_ten<T>(state: StateManager, name: &str) -> (Owner, SharedKey<T>, UseSharedStateReturn<T>)
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + Default
        + PartialOrd
        + From<u8>
        + Send
        + Sync
        + 'static,
{
    let key = SharedKey::<T>::builder(name)
        .scope(Scope::Building)
        .strategy(Strategy::Sum)
        .build()
        .unwrap();
    let (unit, hook) = in_unit(state, "main/lobby/u", || {
        use_shared_state_with_options(
            &key,
            UseSharedStateOptions::default().validate(|n: &T| {
                if *n <= T::from(10) {
                    Ok(())
                } else {
                    Err("at most 10".to_owned())
                }
            }),
        )
    });
    (unit, key, hook)
}

/// Counts the saves `state` asks for (its `on_dirty` calls).
fn counting_saves(state: StateManager) -> Arc<AtomicUsize> {
    let scheduled = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&scheduled);
    state
        .on_dirty(move || {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    scheduled
}

/// An increment is validated as a set of the value it leaves. Before, a
/// validator bounding a counter was skipped by `increment`: "+1" went past
/// the bound.
#[test]
fn an_increment_is_validated_as_the_value_it_leaves() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let (_u, clicks, hook) = at_most_ten::<i64>(state, "clicks");
        hook.set.increment(7);
        hook.set.increment(3);
        assert_eq!(hook.value.get_untracked(), 10);
        assert!(hook.meta.error.get_untracked().is_none());
        hook.set.increment(1);
        assert_eq!(hook.value.get_untracked(), 10, "refused past the bound");
        let error = hook.meta.error.get_untracked().unwrap().to_string();
        assert!(error.contains("at most 10"), "{error}");
        hook.set.increment(-4);
        assert_eq!(hook.value.get_untracked(), 6);
        assert!(hook.meta.error.get_untracked().is_none());
        // Past the bound by others' increments: the unit can bring it
        // back (each step toward zero taken), not take it further, and is
        // refused again only once back.
        let other: UnitAddress = "main/lobby/v".parse().unwrap();
        state.increment(&other, &clicks, 9).unwrap();
        assert_eq!(hook.value.get_untracked(), 15);
        hook.set.increment(100);
        assert_eq!(hook.value.get_untracked(), 15, "not further away");
        hook.set.increment(-1);
        hook.set.increment(-4);
        assert_eq!(hook.value.get_untracked(), 10);
        assert!(hook.meta.error.get_untracked().is_none());
        hook.set.increment(1);
        assert_eq!(hook.value.get_untracked(), 10);
    });
}

/// A counter of an unsigned type that others' decrements took below zero
/// (a sum key counts in i64, whatever its type) is brought back by a
/// validated unit's increments: the value it holds does not read as the
/// type, which is no reason to refuse the way back.
#[test]
fn a_validated_increment_brings_back_a_counter_out_of_its_type_s_range() {
    let owner = Owner::new();
    owner.with(|| {
        let state = manager(1);
        let (_u, stock, hook) = at_most_ten::<u32>(state, "stock");
        let other: UnitAddress = "main/lobby/v".parse().unwrap();
        state.increment(&other, &stock, -2).unwrap();
        hook.set.increment(3);
        assert!(hook.meta.error.get_untracked().is_none());
        assert_eq!(hook.value.get_untracked(), 1);
    });
}

/// Another tab's write of the value this tab holds changes no value, but
/// moves the key's stamp and writer, which are saved: a save is scheduled
/// for it. Before, none was until the page was next hidden or shown.
#[test]
fn a_remote_write_of_the_same_value_schedules_a_save() {
    let owner = Owner::new();
    owner.with(|| {
        let (here, there) = (manager(1), manager(2));
        here.attach_storage(Lifetime::Persistent, Box::new(SharedStorage::default()))
            .unwrap();
        let scheduled = counting_saves(here);
        for state in [here, there] {
            state.declare(&draft_key()).unwrap();
        }
        let unit: UnitAddress = "main/lobby/a".parse().unwrap();
        let first = there
            .set_full(&unit, &draft_key(), "same".to_owned())
            .unwrap();
        here.receive_text(&first.message.unwrap().encode().unwrap())
            .unwrap();
        here.flush().unwrap();
        let before = scheduled.load(Ordering::SeqCst);
        let again = there
            .set_full(&unit, &draft_key(), "same".to_owned())
            .unwrap();
        assert!(again.change.is_none());
        let inbound = here
            .receive_text(&again.message.unwrap().encode().unwrap())
            .unwrap();
        assert!(inbound.changes.is_empty() && inbound.errors.is_empty());
        assert!(
            scheduled.load(Ordering::SeqCst) > before,
            "no save scheduled"
        );
    });
}

/// After another tab cleared the storage, an entry this tab had set aside
/// is gone: the key is saved again from what this tab holds (the web
/// layer calls `quarantine_gone(None)` on the `clear()` event).
#[test]
fn a_cleared_storage_lifts_what_was_set_aside() {
    use gaesup_state::core::{Replica, Storage as _};
    let owner = Owner::new();
    owner.with(|| {
        let mut disk = SharedStorage::default();
        let address: UnitAddress = "main/lobby/a".parse().unwrap();
        let stored_at = Replica::storage_key(&draft_key().full_key(&address));
        disk.set(&stored_at, "{ not json").unwrap();
        let state = manager(1);
        state
            .attach_storage(Lifetime::Persistent, Box::new(disk.clone()))
            .unwrap();
        state.declare(&draft_key()).unwrap();
        assert_eq!(state.quarantined().len(), 1);
        state
            .set(&address, &draft_key(), "mine".to_owned())
            .unwrap();
        state.flush().unwrap();
        assert_eq!(disk.get(&stored_at).unwrap().as_deref(), Some("{ not json"));
        // Another tab's clear().
        for key in disk.keys().unwrap() {
            disk.remove(&key).unwrap();
        }
        state.quarantine_gone(None).unwrap();
        state.mark_all_dirty().unwrap();
        assert!(state.quarantined().is_empty());
        state.flush().unwrap();
        let saved = disk.get(&stored_at).unwrap().unwrap();
        assert!(saved.contains("mine"), "{saved}");
    });
}

/// A key that cannot be saved (storage full) stays unsaved: a message
/// from another tab that changes nothing and leaves no other key to save
/// schedules no save of its own (each would write and fail again).
#[test]
fn a_message_that_leaves_nothing_new_to_save_schedules_no_save() {
    use gaesup_state::core::{FaultyStorage, MemoryStorage, StorageError};
    let owner = Owner::new();
    owner.with(|| {
        let (here, there) = (manager(1), manager(2));
        let mut full = FaultyStorage::new(MemoryStorage::new());
        full.fail_writes(Some(StorageError::QuotaExceeded));
        here.attach_storage(Lifetime::Persistent, Box::new(full))
            .unwrap();
        let scheduled = counting_saves(here);
        for state in [here, there] {
            state.declare(&draft_key()).unwrap();
        }
        let unit: UnitAddress = "main/lobby/a".parse().unwrap();
        let first = there
            .set_full(&unit, &draft_key(), "same".to_owned())
            .unwrap();
        here.receive_text(&first.message.unwrap().encode().unwrap())
            .unwrap();
        let _ = here.flush();
        let before = scheduled.load(Ordering::SeqCst);
        for _ in 0..3 {
            let again = there
                .set_full(&unit, &draft_key(), "same".to_owned())
                .unwrap();
            here.receive_text(&again.message.unwrap().encode().unwrap())
                .unwrap();
        }
        assert_eq!(scheduled.load(Ordering::SeqCst), before);
    });
}
