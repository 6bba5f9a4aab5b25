//! The browser benchmark's write paths, natively: where a profiler can see
//! them (`perf record --call-graph dwarf`, `heaptrack`), which it cannot in
//! the release wasm (wasm-opt strips the names).
//!
//! A measurement, never an assertion: prints a Markdown table. The same
//! shapes as `bench/page`: one key written with no subscriber and with one
//! whole-key subscriber (an integer), then a small struct with one, then
//! an integer through a hook's setter with three readers; the
//! 1,000-row table's update (get the rows, change every tenth, set them;
//! one path subscriber per row), then as the page builds it (each row a
//! `use_state_path` hook read by an effect) beside the page's baseline of
//! one plain signal per row; one field of a value of N fields with a
//! path subscriber per field (the caller builds each new value, as a
//! whole-value API asks). Beside the integer writes, a model of the least
//! a replicated last-write-wins write does (see [`floor_model`]).
//!
//! Run with `cargo bench -p gaesup-state --bench writes`; to profile one
//! case, `cargo bench -p gaesup-state --bench writes -- <case>` runs only
//! the cases whose name contains `<case>`.

// Bench code: a panic here is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use gaesup_state::core::{ApartmentId, BuildingId, UnitAddress, UnitId};
use gaesup_state::{
    Lifetime, Path, Scope, SharedKey, StateManager, UnitContext, use_shared_state, use_state_path,
};
use leptos::prelude::{GetUntracked, ImmediateEffect, RwSignal, Set, Track, With, provide_context};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Serialize, Deserialize, Default, Clone)]
struct Task {
    name: String,
    count: i64,
    done: bool,
}

fn unit() -> UnitAddress {
    UnitAddress::new(
        ApartmentId::new("bench").expect("id"),
        BuildingId::new("b").expect("id"),
        UnitId::new("u").expect("id"),
    )
}

/// A manager, the unit every case writes as, and the memory key `name`
/// declared on it.
fn declared<T: Serialize + serde::de::DeserializeOwned + Default + 'static>(
    name: &str,
) -> (StateManager, UnitAddress, SharedKey<T>) {
    let manager = StateManager::with_system_clock();
    let key = SharedKey::builder(name)
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Memory)
        .build()
        .expect("key");
    manager.declare(&key).expect("declare");
    (manager, unit(), key)
}

/// Runs `body` under a fresh reactive owner (the manager lives in its
/// arena), `n` times after a tenth as many warm-up runs; time per run.
fn per_run(n: u32, mut body: impl FnMut(u32)) -> Duration {
    for i in 0..n.div_ceil(10) {
        body(i);
    }
    let start = Instant::now();
    for i in 0..n {
        body(i);
    }
    start.elapsed() / n
}

fn set_integer(subscribers: usize) -> Duration {
    let (manager, unit, key) = declared::<i64>("n");
    for _ in 0..subscribers {
        manager.subscribe(&unit, &key, None, |_| {}).unwrap();
    }
    per_run(200_000, |i| {
        black_box(manager.set(&unit, &key, i64::from(i)).unwrap());
    })
}

/// The least any replicated last-write-wins store does per write, as a
/// yardstick for "set an integer, 1 subscriber": the value turned into
/// JSON, the clock read and a hybrid stamp taken, the key looked up, the
/// entry replaced, the subscriber told if the value changed, the old value
/// freed. No scopes, permissions, size limits, op ids or writers, change
/// records or routing by path: what the manager adds is the difference.
fn floor_model() -> Duration {
    use gaesup_state::core::{Clock, FullKey, Hlc, Stamp, TabId};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let clock = gaesup_state::SystemClock;
    let mut hlc = Hlc::new(TabId::new(7));
    let key: FullKey = "apartment/main/n".parse().unwrap();
    let mut entries: BTreeMap<FullKey, (Arc<Value>, Stamp)> = BTreeMap::new();
    entries.insert(key.clone(), (Arc::new(Value::Null), hlc.tick(0)));
    let told = Cell::new(0_u32);
    type Subscriber<'a> = Box<dyn Fn(&Value) + 'a>;
    let subscribers: Vec<Subscriber<'_>> = vec![Box::new(|value| {
        black_box(value);
        told.set(told.get() + 1);
    })];
    let time = per_run(200_000, |i| {
        let value = serde_json::to_value(i64::from(i)).unwrap();
        let stamp = hlc.tick(clock.now_ms());
        let entry = entries.get_mut(black_box(&key)).unwrap();
        let old = std::mem::replace(entry, (Arc::new(value), stamp));
        if *old.0 != *entry.0 {
            subscribers.iter().for_each(|tell| tell(&entry.0));
        }
        drop(black_box(old));
    });
    assert!(told.get() > 0, "the model's subscriber was never told");
    time
}

fn set_struct() -> Duration {
    let (manager, unit, key) = declared::<Task>("task");
    manager.subscribe(&unit, &key, None, |_| {}).unwrap();
    per_run(200_000, |i| {
        let task = Task {
            name: String::from("a task"),
            count: i64::from(i),
            done: i % 2 == 0,
        };
        black_box(manager.set(&unit, &key, task).unwrap());
    })
}

/// A unit's write through its hook (`use_shared_state`), with one reader
/// each of the value, the last writer and the error, as a view holds
/// them: what a click in a unit costs before the DOM.
fn hook_set() -> Duration {
    let manager = StateManager::with_system_clock();
    let key = SharedKey::<i64>::builder("n")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Memory)
        .build()
        .expect("key");
    provide_context(UnitContext {
        address: unit(),
        manager,
    });
    let hook = use_shared_state(&key);
    let (value, meta) = (hook.value, hook.meta);
    let _readers = [
        ImmediateEffect::new(move || value.track()),
        ImmediateEffect::new(move || meta.last_writer.track()),
        ImmediateEffect::new(move || meta.error.track()),
    ];
    per_run(200_000, |i| hook.set.set(i64::from(i)))
}

/// The baseline of [`hook_set`]: a plain signal with one synchronous
/// reader of its value.
fn signal_set() -> Duration {
    let value = RwSignal::new(0_i64);
    let _reader = ImmediateEffect::new(move || value.track());
    per_run(200_000, |i| value.set(i64::from(i)))
}

/// The 1,000-row table of the bench page without the DOM: one subscriber
/// per row index; each round changes every 10th row, with one `set_items`
/// (`whole == false`) or a `get` + `set` of the whole list.
fn table(whole: bool) -> Duration {
    const ROWS: usize = 1_000;
    let (manager, unit, key) = declared::<Vec<String>>("rows");
    let rows: Vec<String> = (0..ROWS).map(|i| format!("row {i}")).collect();
    manager.set(&unit, &key, rows).unwrap();
    let seen = Rc::new(Cell::new(0usize));
    for i in 0..ROWS {
        let path = Path::index(i);
        let watched = path.clone();
        let seen = Rc::clone(&seen);
        manager
            .subscribe(&unit, &key, Some(path), move |change| {
                let row = watched.get(&change.new).map(String::deserialize);
                seen.set(seen.get() + row.map_or(0, |r| r.map_or(0, |r| r.len())));
            })
            .unwrap();
    }
    per_run(2_000, |round| {
        if whole {
            let mut next = manager.get(&unit, &key).unwrap();
            for i in (0..ROWS).step_by(10) {
                next[i] = format!("row {i} round {round}");
            }
            manager.set(&unit, &key, next).unwrap();
        } else {
            let items = (0..ROWS)
                .step_by(10)
                .map(|i| (i, format!("row {i} round {round}")));
            manager.set_items(&unit, &key, items).unwrap();
        }
    })
}

/// The same table as the bench page builds it: each row watches its index
/// through [`use_state_path`] and one reader (an effect, as a view's text
/// node) reads its signal; each round writes every 10th row with one
/// `set_items`. `signals: true` is the page's baseline instead: one
/// `RwSignal<String>` per row, each with its reader, 100 `set`s a round.
fn table_of_rows(signals: bool) -> Duration {
    const ROWS: usize = 1_000;
    let rows: Vec<String> = (0..ROWS).map(|i| format!("row {i}")).collect();
    if signals {
        let cells: Vec<RwSignal<String>> = rows.into_iter().map(RwSignal::new).collect();
        let _readers: Vec<_> = cells
            .iter()
            .map(|&cell| {
                ImmediateEffect::new(move || {
                    black_box(cell.with(String::len));
                })
            })
            .collect();
        return per_run(2_000, |round| {
            for i in (0..ROWS).step_by(10) {
                cells[i].set(format!("row {i} round {round}"));
            }
        });
    }
    let (manager, unit, key) = declared::<Vec<String>>("rows");
    manager.set(&unit, &key, rows).unwrap();
    provide_context(UnitContext {
        address: unit.clone(),
        manager,
    });
    let cells: Vec<_> = (0..ROWS)
        .map(|i| use_state_path::<Vec<String>, String>(&key, &i.to_string()))
        .collect();
    // A hook that failed to watch would leave its row out of the count.
    assert!(
        cells
            .iter()
            .all(|cell| cell.error.get_untracked().is_none()),
        "a row's hook is not watching"
    );
    let _readers: Vec<_> = cells
        .iter()
        .map(|cell| {
            let value = cell.value;
            ImmediateEffect::new(move || {
                black_box(value.with(|row| row.as_ref().map(String::len)));
            })
        })
        .collect();
    per_run(2_000, |round| {
        let items = (0..ROWS)
            .step_by(10)
            .map(|i| (i, format!("row {i} round {round}")));
        manager.set_items(&unit, &key, items).unwrap();
    })
}

fn one_field_of(fields: u32) -> Duration {
    let (manager, unit, key) = declared::<Value>("doc");
    let base: Map<String, Value> = (0..fields).map(|i| (format!("p{i}"), json!(0))).collect();
    manager
        .set(&unit, &key, Value::Object(base.clone()))
        .unwrap();
    for i in 0..fields {
        let path = Path::parse(&format!("p{i}")).unwrap();
        manager.subscribe(&unit, &key, Some(path), |_| {}).unwrap();
    }
    per_run(2_000_000 / fields, |u| {
        let mut next = base.clone();
        next.insert("p0".to_owned(), json!(u + 1));
        manager.set(&unit, &key, Value::Object(next)).unwrap();
    })
}

/// A case: its name and what measures it.
type Case = (&'static str, fn() -> Duration);

fn main() {
    // `cargo bench` passes `--bench`; anything else names cases to run.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let cases: [Case; 13] = [
        ("set an integer, 0 subscribers", || set_integer(0)),
        (
            "floor model: a bare replicated write, 1 subscriber",
            floor_model,
        ),
        ("set an integer, 1 subscriber", || set_integer(1)),
        ("set a small struct, 1 subscriber", set_struct),
        ("a hook's set of an integer, 3 readers", hook_set),
        ("a plain signal's set, 1 reader", signal_set),
        ("1,000-row table: update 100 rows (set_items)", || {
            table(false)
        }),
        ("1,000-row table: update 100 rows (get + set)", || {
            table(true)
        }),
        (
            "1,000-row table: update 100 rows (use_state_path rows)",
            || table_of_rows(false),
        ),
        ("1,000-row table: update 100 rows (plain signals)", || {
            table_of_rows(true)
        }),
        ("one field of 100 (100 path subscribers)", || {
            one_field_of(100)
        }),
        ("one field of 1,000 (1,000 path subscribers)", || {
            one_field_of(1_000)
        }),
        ("one field of 10,000 (10,000 path subscribers)", || {
            one_field_of(10_000)
        }),
    ];
    println!("| write (native, `cargo bench` profile) | time per write |");
    println!("|---|---:|");
    for (name, run) in cases {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let owner = leptos::prelude::Owner::new();
        let time = owner.with(run);
        owner.cleanup();
        println!("| {name} | {:.3} µs |", time.as_secs_f64() * 1e6);
    }
}
