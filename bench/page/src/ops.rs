//! Raw state operations on one manager, with no view: set with and without
//! a subscriber, selective (path) subscriptions, batches.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gaesup_state::core::{MAX_GROUP_OPS, ManualClock, Replica, TabId};
use gaesup_state::{
    Lifetime, Path, SharedKey, StateManager, SystemClock, UnitContext, use_shared_state,
};
use leptos::prelude::*;
use serde_json::{Map, Value, json};
use wasm_bindgen::prelude::*;

use crate::fixture::{address, js, key, now, report};

/// Counts the calls of the callbacks it hands out.
#[derive(Clone, Default)]
struct Counter(Rc<Cell<u64>>);

impl Counter {
    fn callback(&self) -> impl Fn(&gaesup_state::core::Change) + 'static {
        let count = Rc::clone(&self.0);
        move |_| count.set(count.get() + 1)
    }

    fn take(&self) -> u64 {
        self.0.replace(0)
    }
}

/// Runs `body` under a fresh reactive owner, disposed afterwards, so one
/// measurement's arena does not weigh on the next.
fn owned<R>(body: impl FnOnce() -> R) -> R {
    let owner = Owner::new();
    let result = owner.with(body);
    owner.cleanup();
    result
}

/// `n` writes of an integer key with `subscribers` whole-key subscribers:
/// `{ms, notified}`.
#[wasm_bindgen]
pub fn set_bench(subscribers: u32, n: u32) -> Result<String, JsValue> {
    owned(|| {
        let manager = StateManager::with_system_clock();
        let unit = address("ops")?;
        let key: SharedKey<i64> = key("n", Lifetime::Memory)?;
        manager.declare(&key).map_err(js)?;
        let counter = Counter::default();
        for _ in 0..subscribers {
            manager
                .subscribe(&unit, &key, None, counter.callback())
                .map_err(js)?;
        }
        let start = now();
        for i in 0..n {
            manager.set(&unit, &key, i64::from(i) + 1).map_err(js)?;
        }
        let ms = now() - start;
        Ok(report(json!({ "ms": ms, "notified": counter.take() })))
    })
}

/// `n` writes as a unit writes: through its hook's setter
/// (`use_shared_state`), with three synchronous readers (`ImmediateEffect`)
/// of what a unit's view shows: the value, the last writer and the error.
/// With `plain`, the same `n` writes of a plain `RwSignal<i64>` with one
/// reader of its value, the baseline: `{ms, reads}` (reads: how often the
/// value's reader ran, the first run included).
#[wasm_bindgen]
pub fn hook_set_bench(n: u32, plain: bool) -> Result<String, JsValue> {
    owned(|| {
        // An effect's closure must be `Send`: the count is atomic.
        let reads = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reads);
        let count = move || counted.fetch_add(1, Ordering::Relaxed);
        let ms = if plain {
            let value = RwSignal::new(0_i64);
            let _reader = ImmediateEffect::new(move || {
                value.track();
                count();
            });
            let start = now();
            for i in 0..n {
                value.set(i64::from(i) + 1);
            }
            now() - start
        } else {
            let key: SharedKey<i64> = key("n", Lifetime::Memory)?;
            provide_context(UnitContext {
                address: address("hooks")?,
                manager: StateManager::with_system_clock(),
            });
            let hook = use_shared_state(&key);
            let (value, meta) = (hook.value, hook.meta);
            let _readers = (
                ImmediateEffect::new(move || {
                    value.track();
                    count();
                }),
                ImmediateEffect::new(move || meta.last_writer.track()),
                ImmediateEffect::new(move || meta.error.track()),
            );
            let start = now();
            for i in 0..n {
                hook.set.set(i64::from(i) + 1);
            }
            let ms = now() - start;
            if value.get_untracked() != i64::from(n) {
                return Err(js("the hook lost writes"));
            }
            ms
        };
        Ok(report(
            json!({ "ms": ms, "reads": reads.load(Ordering::Relaxed) }),
        ))
    })
}

/// `n` writes of the same key straight to the core's `Replica`, with no
/// manager around it (no notification pass, no log): `{ms}`. With
/// `manual_clock` the replica reads a fixed clock instead of `Date.now()`.
/// Together with [`set_bench`] it splits the cost of a write between the
/// core and the reactive layer.
#[wasm_bindgen]
pub fn core_set_bench(n: u32, manual_clock: bool) -> Result<String, JsValue> {
    let unit = address("ops")?;
    let key: SharedKey<i64> = key("n", Lifetime::Memory)?;
    let tab = TabId::new(1);
    let mut store = if manual_clock {
        Replica::new(tab, ManualClock::new(1_700_000_000_000))
    } else {
        Replica::new(tab, SystemClock)
    };
    store.declare(&key).map_err(js)?;
    let start = now();
    for i in 0..n {
        store.set(&unit, &key, i64::from(i) + 1).map_err(js)?;
    }
    let ms = now() - start;
    Ok(report(json!({ "ms": ms })))
}

/// `n` writes of the least any replicated last-write-wins store does per
/// write, with one subscriber: the value turned into JSON, `Date.now()`
/// read and a hybrid stamp taken, the key looked up, the entry replaced,
/// the subscriber told if the value changed, the old value freed: `{ms,
/// notified}`. No scopes, permissions, size limits, op ids or writers,
/// change records, strategies or routing by path. The yardstick of
/// [`set_bench`] with one subscriber: what the manager adds is the
/// difference (the native twin is `floor_model` in `state/benches/writes.rs`).
#[wasm_bindgen]
pub fn floor_set_bench(n: u32) -> Result<String, JsValue> {
    use gaesup_state::core::{Clock, FullKey, Hlc, Stamp};
    use std::collections::BTreeMap;

    let mut hlc = Hlc::new(TabId::new(7));
    let key: FullKey = "apartment/main/n".parse().map_err(js)?;
    let mut entries: BTreeMap<FullKey, (Arc<Value>, Stamp)> = BTreeMap::new();
    entries.insert(key.clone(), (Arc::new(Value::Null), hlc.tick(0)));
    let notified = Counter::default();
    let count = Rc::clone(&notified.0);
    type Subscriber = Box<dyn Fn(&Value)>;
    let subscribers: Vec<Subscriber> = vec![Box::new(move |value| {
        std::hint::black_box(value);
        count.set(count.get() + 1);
    })];
    let start = now();
    for i in 0..n {
        let value = serde_json::to_value(i64::from(i) + 1).map_err(js)?;
        let stamp = hlc.tick(SystemClock.now_ms());
        let entry = entries
            .get_mut(std::hint::black_box(&key))
            .ok_or_else(|| js("the model lost its key"))?;
        let old = std::mem::replace(entry, (Arc::new(value), stamp));
        if *old.0 != *entry.0 {
            subscribers.iter().for_each(|tell| tell(&entry.0));
        }
        drop(std::hint::black_box(old));
    }
    let ms = now() - start;
    Ok(report(json!({ "ms": ms, "notified": notified.take() })))
}

/// `subscribers` subscriptions on the distinct paths `p0`, `p1`, … of one
/// key, then `updates` writes that change only `p0`:
/// `{ms, notified, subscriptions}`.
///
/// `value` says what the key holds and how it is written:
///
/// - `"sparse"`: the value is `{p0: i}` whatever N, written whole; this
///   isolates the cost of the subscribers themselves;
/// - `"whole"`: the value holds every watched field (`{p0: …, p1: …, …}`)
///   and each update sets a copy of it with `p0` changed (the caller's
///   copy, then the replica's check and diff, grow with N);
/// - `"path"`: the same value, each update a
///   [`set_path`](StateManager::set_path) of `p0`.
#[wasm_bindgen]
pub fn path_bench(subscribers: u32, updates: u32, value: String) -> Result<String, JsValue> {
    owned(|| {
        let manager = StateManager::with_system_clock();
        let unit = address("paths")?;
        let key: SharedKey<Value> = key("doc", Lifetime::Memory)?;
        manager.declare(&key).map_err(js)?;
        let mut base = Map::new();
        let fields = if value == "sparse" { 1 } else { subscribers };
        for i in 0..fields {
            base.insert(format!("p{i}"), json!(0));
        }
        manager
            .set(&unit, &key, Value::Object(base.clone()))
            .map_err(js)?;
        let counter = Counter::default();
        for i in 0..subscribers {
            let path = Path::parse(&format!("p{i}")).map_err(js)?;
            manager
                .subscribe(&unit, &key, Some(path), counter.callback())
                .map_err(js)?;
        }
        let subscriptions = manager.subscription_count();
        let p0 = Path::parse("p0").map_err(js)?;
        let start = now();
        match value.as_str() {
            "sparse" | "whole" => {
                for u in 0..updates {
                    let mut next = base.clone();
                    next.insert("p0".to_owned(), json!(u + 1));
                    manager.set(&unit, &key, Value::Object(next)).map_err(js)?;
                }
            }
            "path" => {
                for u in 0..updates {
                    manager
                        .set_path(&unit, &key, &p0, json!(u + 1))
                        .map_err(js)?;
                }
            }
            other => return Err(js(format!("unknown value kind {other:?}"))),
        }
        let ms = now() - start;
        Ok(report(json!({
            "ms": ms,
            "notified": counter.take(),
            "subscriptions": subscriptions,
        })))
    })
}

/// `writes` writes spread over `keys` keys with one subscriber each, as one
/// batch, as batches of at most the core's limit, and one by one:
/// per-subscriber notification counts and times.
#[wasm_bindgen]
pub fn batch_bench(keys: u32, writes: u32) -> Result<String, JsValue> {
    owned(|| {
        let manager = StateManager::with_system_clock();
        let unit = address("batch")?;
        let mut all = Vec::new();
        let mut counters = Vec::new();
        for k in 0..keys {
            let key: SharedKey<i64> = key(&format!("k{k}"), Lifetime::Memory)?;
            manager.declare(&key).map_err(js)?;
            let counter = Counter::default();
            manager
                .subscribe(&unit, &key, None, counter.callback())
                .map_err(js)?;
            all.push(key);
            counters.push(counter);
        }
        let spread =
            |range: std::ops::Range<u32>| range.map(|i| (i as usize % all.len(), i64::from(i) + 1));
        let tally = || {
            let counts: Vec<u64> = counters.iter().map(Counter::take).collect();
            json!({
                "min": counts.iter().min().copied().unwrap_or(0),
                "max": counts.iter().max().copied().unwrap_or(0),
            })
        };

        // The whole batch at once.
        let start = now();
        let whole = manager.batch(|batch| {
            for (k, value) in spread(0..writes) {
                batch.set(&unit, &all[k], value)?;
            }
            Ok(())
        });
        let whole_ms = now() - start;
        let whole_notified = tally();
        let whole_error = whole.err().map(|e| e.to_string());

        // In batches of at most MAX_GROUP_OPS writes.
        let chunk = u32::try_from(MAX_GROUP_OPS).map_err(js)?;
        let mut batches = 0;
        let start = now();
        let mut from = 0;
        while from < writes {
            let to = (from + chunk).min(writes);
            manager
                .batch(|batch| {
                    for (k, value) in spread(from..to) {
                        batch.set(&unit, &all[k], value + i64::from(writes))?;
                    }
                    Ok(())
                })
                .map_err(js)?;
            batches += 1;
            from = to;
        }
        let chunked_ms = now() - start;
        let chunked_notified = tally();

        // One by one.
        let start = now();
        for (k, value) in spread(0..writes) {
            manager
                .set(&unit, &all[k], value + 2 * i64::from(writes))
                .map_err(js)?;
        }
        let single_ms = now() - start;
        let single_notified = tally();

        Ok(report(json!({
            "limit": MAX_GROUP_OPS,
            "whole": { "ms": whole_ms, "error": whole_error, "notified": whole_notified },
            "chunked": { "ms": chunked_ms, "batches": batches, "notified": chunked_notified },
            "single": { "ms": single_ms, "notified": single_notified },
        })))
    })
}
