//! Throughput of local writes and their remote application, per strategy.
//!
//! A measurement, never an assertion: prints a Markdown table. Each row
//! times N writes on one store (`set`) and their application on a second
//! store, directly (`apply`) and through the wire (`encode` + `decode` +
//! apply). Ratios compare with last-write-wins measured in the same run.
//!
//! Run with `cargo bench -p gaesup-state-core`.

// Test and bench code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use gaesup_state_core::{
    COMPACT_AFTER_MS, FOLD_STEP_MS, Lifetime, MAX_STATE_BYTES, ManualClock, Message, Op, Replica,
    Scope, SharedKey, Strategy, TabId, UnitAddress, encoded_len,
};
use serde_json::{Map, Value, json};

const OPS: usize = 20_000;
/// The wall time every bench starts at.
const T0: u64 = 1_700_000_000_000;

struct Row {
    name: &'static str,
    set: Duration,
    apply: Duration,
    wire: Duration,
}

fn per_second(duration: Duration) -> f64 {
    OPS as f64 / duration.as_secs_f64()
}

fn key(name: &str, scope: Scope, strategy: Strategy) -> SharedKey<Value> {
    SharedKey::<Value>::builder(name)
        .scope(scope)
        .lifetime(Lifetime::Ephemeral)
        .strategy(strategy)
        .default_value(json!(0))
        .build()
        .expect("valid key")
}

/// A store of tab `tab` on `clock`, with `keys` declared.
fn replica(tab: u64, clock: &ManualClock, keys: &[SharedKey<Value>]) -> Replica {
    let mut store = Replica::new(TabId::new(tab), clock.clone());
    for key in keys {
        store.declare(key).expect("declare");
    }
    store
}

fn pair(keys: &[SharedKey<Value>]) -> (Replica, Replica, Replica) {
    let make = |tab| replica(tab, &ManualClock::new(T0), keys);
    (make(1), make(2), make(3))
}

/// Times `OPS` writes made by `write`, then applying them remotely.
fn measure(
    name: &'static str,
    keys: &[SharedKey<Value>],
    mut write: impl FnMut(&mut Replica, usize) -> Op,
) -> Row {
    let (mut writer, mut direct, mut wired) = pair(keys);
    let start = Instant::now();
    let ops: Vec<Op> = (0..OPS).map(|i| write(&mut writer, i)).collect();
    let set = start.elapsed();

    let start = Instant::now();
    for op in &ops {
        black_box(direct.apply_remote(op).expect("apply"));
    }
    let apply = start.elapsed();

    let messages: Vec<Message> = ops
        .into_iter()
        .map(|op| Message::Ops(gaesup_state_core::OpGroup { ops: vec![op] }))
        .collect();
    let start = Instant::now();
    for message in &messages {
        let text = message.encode().expect("encode");
        let inbound = wired.receive_text(&text);
        assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
        black_box(inbound);
    }
    let wire = start.elapsed();
    Row {
        name,
        set,
        apply,
        wire,
    }
}

fn main() {
    let unit: UnitAddress = "bench/b/u".parse().expect("address");
    let mut rows = Vec::new();

    let lww = key("lww", Scope::Apartment, Strategy::LastWriteWins);
    rows.push(measure(
        "last_write_wins",
        std::slice::from_ref(&lww),
        |s, i| s.set(&unit, &lww, json!(i)).expect("set").op,
    ));

    // A first-write-wins key accepts one write; use private keys, one per
    // unit, so every write is a first write. A declaration holds at most
    // MAX_KEYS_PER_DECLARATION keys, so the units are spread over several
    // declarations, and MAX_PRIVATE_KEYS_PER_BUILDING in one building, so
    // each unit has a building of its own.
    let per = gaesup_state_core::MAX_KEYS_PER_DECLARATION;
    let fww: Vec<SharedKey<Value>> = (0..OPS.div_ceil(per))
        .map(|k| key(&format!("fww{k}"), Scope::Private, Strategy::FirstWriteWins))
        .collect();
    let units: Vec<UnitAddress> = (0..per)
        .map(|i| format!("bench/b{i}/u").parse().expect("address"))
        .collect();
    rows.push(measure("first_write_wins", &fww, |s, i| {
        s.set(&units[i % per], &fww[i / per], json!(i))
            .expect("set")
            .op
    }));

    let merge = key("merge", Scope::Apartment, Strategy::Merge);
    let mut object: Map<String, Value> = (0..8).map(|f| (format!("f{f}"), json!(0))).collect();
    rows.push(measure(
        "merge (1 of 8 fields)",
        std::slice::from_ref(&merge),
        |s, i| {
            object.insert(format!("f{}", i % 8), json!(i));
            s.set(&unit, &merge, Value::Object(object.clone()))
                .expect("set")
                .op
        },
    ));

    let sum = key("sum", Scope::Apartment, Strategy::Sum);
    rows.push(measure("sum", std::slice::from_ref(&sum), |s, _| {
        s.increment(&unit, &sum, 1).expect("increment").op
    }));

    let resolve = key("resolve", Scope::Apartment, Strategy::UserResolve);
    rows.push(measure(
        "user_resolve",
        std::slice::from_ref(&resolve),
        |s, i| s.set(&unit, &resolve, json!(i)).expect("set").op,
    ));

    let base = per_second(rows[0].set + rows[0].apply);
    println!(
        "\n{OPS} ops per row, native, `cargo bench` profile; one key per row except \
         first_write_wins (one private key per unit: each accepts a single write)\n"
    );
    println!(
        "| strategy | set (ops/s) | apply (ops/s) | set+apply (ops/s) | vs lww | wire apply: encode+decode+apply (ops/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        let both = per_second(row.set + row.apply);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.0} |",
            row.name,
            per_second(row.set),
            per_second(row.apply),
            both,
            both / base,
            per_second(row.wire),
        );
    }
    refused_fold(&unit);
    near_the_state_limit(&unit);
}

/// A merge key whose state lies within 300 bytes of
/// [`MAX_STATE_BYTES`]: four fields of 200 KiB from four devices and one
/// filling the rest. Times small patches from another device applied
/// there, against the same patches at 90 % of the limit (before the fill):
/// near the limit, each op is tried on a copy of the state, measured whole
/// (an op that would pass the limit must change nothing).
fn near_the_state_limit(unit: &UnitAddress) {
    const PATCHES: u64 = 200;
    let doc = key("doc", Scope::Apartment, Strategy::Merge);
    let clock = ManualClock::new(T0);
    let store = |tab| replica(tab, &clock, std::slice::from_ref(&doc));
    let mut relay = store(99);
    let big = "x".repeat(200 << 10);
    for tab in 1..=4 {
        let op = store(tab)
            .set(unit, &doc, json!({ format!("f{tab}"): big }))
            .expect("set")
            .op;
        relay.apply_remote(&op).expect("apply");
    }
    let mut writer = store(50);
    // `PATCHES` small patches made from `from` ms on, applied to `relay`.
    let mut patches = |relay: &mut Replica, from: u64| -> Duration {
        let ops: Vec<Op> = (0..PATCHES)
            .map(|i| {
                clock.set(T0 + from + i);
                writer
                    .set(unit, &doc, json!({ "z": from + i }))
                    .expect("set")
                    .op
            })
            .collect();
        let started = Instant::now();
        for op in &ops {
            relay.apply_remote(op).expect("apply");
        }
        started.elapsed()
    };
    let roomy = patches(&mut relay, 1_000);
    let state_len = |relay: &Replica| {
        relay
            .state(&doc.full_key(unit))
            .map_or(0, |state| encoded_len(state, usize::MAX))
    };
    let fill = MAX_STATE_BYTES - state_len(&relay) - 300;
    let op = store(20)
        .set(unit, &doc, json!({ "g": "y".repeat(fill) }))
        .expect("set")
        .op;
    relay.apply_remote(&op).expect("apply");
    let full = patches(&mut relay, 2_000);
    println!(
        "\nA merge key whose state holds 800 KiB of fields: a small patch applied at 90 % of a \
         state's limit: {:.0} µs per op; within 300 bytes of it ({} of {MAX_STATE_BYTES} bytes): \
         {:.0} µs per op ({PATCHES} patches each).",
        roomy.as_secs_f64() * 1e6 / PATCHES as f64,
        state_len(&relay),
        full.as_secs_f64() * 1e6 / PATCHES as f64
    );
}

/// A merge key whose fold the value limits refuse: two fields of 150 KiB,
/// written on two devices (each value fits, both together do not), lie
/// behind the horizon. Times the small patches another device makes
/// afterwards, applied here (what every tab and the relay's hub pay per
/// op: the fields' measures tell the fold refused without building it),
/// then the same with a writer rewriting a small field at the key's floor
/// between them.
fn refused_fold(unit: &UnitAddress) {
    const PATCHES: u64 = 1_000;
    let doc = key("doc", Scope::Apartment, Strategy::Merge);
    let day = 24 * 60 * 60 * 1000;
    let clock = ManualClock::new(T0);
    let store = |tab| replica(tab, &clock, std::slice::from_ref(&doc));
    let (mut a, mut b, mut c, mut writer) = (store(1), store(2), store(3), store(4));
    let base = a.set(unit, &doc, json!({})).expect("set").op;
    for store in [&mut b, &mut c, &mut writer] {
        store.apply_remote(&base).expect("apply");
    }
    let big = "x".repeat(150 << 10);
    let first = a.set(unit, &doc, json!({ "a": big })).expect("set").op;
    let second = b.set(unit, &doc, json!({ "b": big })).expect("set").op;
    c.apply_remote(&first).expect("apply");
    c.apply_remote(&second).expect("apply");
    clock.set(T0 + 15 * day);
    let patches: Vec<Op> = (0..PATCHES)
        .map(|i| writer.set(unit, &doc, json!({ "z": i })).expect("set").op)
        .collect();
    let started = Instant::now();
    for op in &patches {
        c.apply_remote(op).expect("apply");
    }
    let elapsed = started.elapsed();
    black_box(c.get_value(unit, &doc).expect("get"));
    // A writer that also rewrites a small field at the key's floor between
    // its patches, each patch an hour on (so the fold's horizon steps past
    // the field): an entry behind the fold changes on every other op.
    let at_floor = ManualClock::new(T0 + 15 * day - COMPACT_AFTER_MS);
    let mut old = replica(5, &at_floor, std::slice::from_ref(&doc));
    old.apply_remote(&base).expect("apply");
    let mut mixed = Vec::new();
    for i in 0..PATCHES / 2 {
        let newest = T0 + 15 * day + 1_000 + i * FOLD_STEP_MS;
        clock.set(newest);
        mixed.push(writer.set(unit, &doc, json!({ "z": i })).expect("set").op);
        at_floor.set(newest - COMPACT_AFTER_MS);
        mixed.push(old.set(unit, &doc, json!({ "p": i })).expect("set").op);
    }
    let started = Instant::now();
    for op in &mixed {
        c.apply_remote(op).expect("apply");
    }
    let rewritten = started.elapsed();
    black_box(c.get_value(unit, &doc).expect("get"));
    println!(
        "\nA merge key holding two fields of 150 KiB behind its horizon, whose fold into one \
         value the value limits refuse: a small patch from another device, applied: {:.1} µs \
         per op ({PATCHES} patches); with every other patch rewriting a small field at the \
         key's floor, an hour on each time: {:.1} µs per op.",
        elapsed.as_secs_f64() * 1e6 / PATCHES as f64,
        rewritten.as_secs_f64() * 1e6 / PATCHES as f64
    );
}
