//! Property tests, in two parts.
//!
//! **Laws of the states.** Every strategy's state is a join-semilattice:
//! merging is commutative, associative and idempotent, merging replicas
//! equals applying the union of their ops, and applying ops ignores order
//! and duplicates. Test names state the law.
//!
//! **Against an oracle.** Replicas made of real [`Replica`]s write through
//! the public API and exchange ops in random orders, with duplicates. The
//! oracle knows only what each writer meant and what it had seen when it
//! wrote (the ground truth the test itself records), never the
//! implementation's slots, registers or watermarks:
//!
//! - last/first-write-wins: the newest/oldest write by (stamp, op id);
//! - merge: per field, the newest write that touched it;
//! - sum: the newest reset's target plus every increment its writer had not
//!   seen, or the plain sum of every delta without a reset;
//! - user-resolve: the writes no other write had seen, newest shown.
//!
//! A third part checks admission op by op against a predicate written from
//! the rules (permissions, scope, apartment, schema, clock window, limits).
//!
//! Case counts: `PROPTEST_CASES` (default 256 for the laws); the oracle
//! tests run [`ORACLE_CASES`] each (10,000) in the test command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use gaesup_state_core::{
    Access, COMPACT_AFTER_MS, Error, FOLD_STEP_MS, FullKey, KeyState, Lifetime, MAX_CLOCK_AHEAD_MS,
    MAX_HOLD_AHEAD_MS, MAX_VALUE_BYTES, ManualClock, Message, Op, OpGroup, OpId, Payload, Replica,
    Scope, SharedKey, Stamp, Strategy as Kind, TabId, UnitAddress,
};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// Cases per oracle test.
const ORACLE_CASES: u32 = 10_000;

fn key() -> FullKey {
    FullKey::parse("apartment/a/k").unwrap()
}

fn writer(tab: u8) -> UnitAddress {
    format!("a/b/u{tab}").parse().unwrap()
}

fn op(seq: u64, tab: u8, wall: u64, counter: u32, payload: Payload) -> Op {
    let tab_id = TabId::new(u64::from(tab));
    Op {
        id: OpId { tab: tab_id, seq },
        key: key(),
        writer: writer(tab),
        stamp: Stamp {
            wall_ms: wall,
            counter,
            tab: tab_id,
        },
        schema: 1,
        payload,
    }
}

fn state_of<'a>(kind: Kind, ops: impl IntoIterator<Item = &'a Op>) -> KeyState {
    let mut state = KeyState::empty(kind);
    for op in ops {
        state.apply(op).unwrap();
    }
    state
}

fn merged(a: &KeyState, b: &KeyState) -> KeyState {
    let mut out = a.clone();
    out.merge(b).unwrap();
    out
}

fn bytes(state: &KeyState) -> String {
    serde_json::to_string(state).unwrap()
}

/// Equal as values and as serialized bytes, and the bytes read back equal.
fn assert_same(a: &KeyState, b: &KeyState) -> Result<(), TestCaseError> {
    prop_assert_eq!(bytes(a), bytes(b));
    prop_assert_eq!(a, b);
    let back: KeyState = serde_json::from_str(&bytes(a)).unwrap();
    prop_assert_eq!(bytes(&back), bytes(a));
    Ok(())
}

fn small_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0..4i64).prop_map(Value::from),
        Just(Value::Null),
        "[xy]{0,2}".prop_map(Value::from),
        btree_map("[abc]", 0..3i64, 0..3).prop_map(|m| json!(m)),
    ]
}

/// (tab, wall, counter) with few distinct values, so ties are common.
fn stamp_parts() -> impl Strategy<Value = (u8, u64, u32)> {
    (1..=3u8, 0..4u64, 0..2u32)
}

fn set_ops() -> impl Strategy<Value = Vec<Op>> {
    vec((stamp_parts(), small_value()), 0..12).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, ((tab, wall, counter), value))| {
                op(
                    i as u64 + 1,
                    tab,
                    wall,
                    counter,
                    Payload::Set {
                        value: value.into(),
                    },
                )
            })
            .collect()
    })
}

fn merge_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        small_value().prop_map(|value| Payload::Set {
            value: value.into()
        }),
        (
            btree_map("[abcd]", small_value(), 0..3),
            btree_set("[abcd]", 0..2)
        )
            .prop_map(
                |(set, remove): (BTreeMap<String, Value>, BTreeSet<String>)| {
                    let remove = remove
                        .into_iter()
                        .filter(|f| !set.contains_key(f))
                        .collect();
                    Payload::Patch { set, remove }
                }
            ),
    ]
}

fn merge_ops() -> impl Strategy<Value = Vec<Op>> {
    merge_ops_stamped(stamp_parts())
}

/// Merge ops stamped from `stamps` (tab, wall, counter).
fn merge_ops_stamped(
    stamps: impl Strategy<Value = (u8, u64, u32)>,
) -> impl Strategy<Value = Vec<Op>> {
    vec((stamps, merge_payload()), 0..12).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, ((tab, wall, counter), payload))| {
                op(i as u64 + 1, tab, wall, counter, payload)
            })
            .collect()
    })
}

/// Per-tab increments and resets, as raw ops: each tab's slot totals are
/// cumulative, resets observe arbitrary totals (forged or not, the laws
/// must hold).
fn sum_ops() -> impl Strategy<Value = Vec<Op>> {
    vec((1..=3u8, -5..=5i64, 0..10u8, 0..4u64), 0..16).prop_map(|items| {
        let mut totals: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
        items
            .into_iter()
            .enumerate()
            .map(|(i, (tab, delta, reset, wall))| {
                let seq = i as u64 + 1;
                if reset == 0 {
                    let observed = totals
                        .iter()
                        .map(|(t, (p, n))| gaesup_state_core::Observed {
                            slot: OpId {
                                tab: TabId::new(u64::from(*t)),
                                seq: 1,
                            },
                            p: *p / 2,
                            n: *n,
                            last: wall,
                        })
                        .collect();
                    return op(
                        seq,
                        tab,
                        wall,
                        0,
                        Payload::Reset {
                            target: delta,
                            horizon: 0,
                            observed,
                        },
                    );
                }
                let slot = totals.entry(tab).or_default();
                if delta >= 0 {
                    slot.0 += delta.unsigned_abs();
                } else {
                    slot.1 += delta.unsigned_abs();
                }
                op(
                    seq,
                    tab,
                    wall,
                    0,
                    Payload::Count {
                        slot: OpId {
                            tab: TabId::new(u64::from(tab)),
                            seq: 1,
                        },
                        p: slot.0,
                        n: slot.1,
                    },
                )
            })
            .collect()
    })
}

/// Each op may supersede any earlier op (what its writer had seen).
fn resolve_ops() -> impl Strategy<Value = Vec<Op>> {
    vec((stamp_parts(), small_value(), any::<u64>()), 0..12).prop_map(|items| {
        let mut ids: Vec<OpId> = Vec::new();
        let mut ops = Vec::new();
        for (i, ((tab, wall, counter), value, seen)) in items.into_iter().enumerate() {
            let supersedes = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| seen & (1 << (j % 64)) != 0)
                .map(|(_, id)| *id)
                .collect();
            let op = op(
                i as u64 + 1,
                tab,
                wall,
                counter,
                Payload::Resolve {
                    value: value.into(),
                    supersedes,
                },
            );
            ids.push(op.id);
            ops.push(op);
        }
        ops
    })
}

/// Three replicas' views: which ops each one received.
fn pick(ops: &[Op], mask: u64) -> Vec<&Op> {
    ops.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << (i % 64)) != 0)
        .map(|(_, op)| op)
        .collect()
}

/// A delivery schedule: every op at least once, some several times, in a
/// shuffled order.
fn deliveries(ops: Vec<Op>) -> impl Strategy<Value = (Vec<Op>, Vec<Op>)> {
    let n = ops.len();
    (Just(ops), vec(0..3usize, n)).prop_flat_map(|(ops, repeats)| {
        let mut schedule = Vec::new();
        for (op, extra) in ops.iter().zip(repeats) {
            for _ in 0..=extra {
                schedule.push(op.clone());
            }
        }
        (Just(ops), Just(schedule).prop_shuffle())
    })
}

macro_rules! laws {
    ($module:ident, $kind:expr, $ops:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #[test]
                fn merge_is_commutative(ops in $ops, a in any::<u64>(), b in any::<u64>()) {
                    let x = state_of($kind, pick(&ops, a));
                    let y = state_of($kind, pick(&ops, b));
                    assert_same(&merged(&x, &y), &merged(&y, &x))?;
                }

                #[test]
                fn merge_is_associative(
                    ops in $ops,
                    a in any::<u64>(),
                    b in any::<u64>(),
                    c in any::<u64>(),
                ) {
                    let x = state_of($kind, pick(&ops, a));
                    let y = state_of($kind, pick(&ops, b));
                    let z = state_of($kind, pick(&ops, c));
                    assert_same(&merged(&merged(&x, &y), &z), &merged(&x, &merged(&y, &z)))?;
                }

                #[test]
                fn merge_is_idempotent(ops in $ops, a in any::<u64>()) {
                    let x = state_of($kind, pick(&ops, a));
                    assert_same(&merged(&x, &x), &x)?;
                }

                #[test]
                fn merging_replicas_equals_applying_every_op(
                    ops in $ops,
                    a in any::<u64>(),
                    b in any::<u64>(),
                ) {
                    let x = state_of($kind, pick(&ops, a));
                    let y = state_of($kind, pick(&ops, b));
                    let union = state_of($kind, pick(&ops, a | b));
                    assert_same(&merged(&x, &y), &union)?;
                }

                #[test]
                fn apply_ignores_order_and_duplicates(
                    (ops, schedule) in $ops.prop_flat_map(deliveries),
                ) {
                    let in_order = state_of($kind, &ops);
                    let shuffled = state_of($kind, &schedule);
                    assert_same(&in_order, &shuffled)?;
                    prop_assert_eq!(in_order.value(), shuffled.value());
                }
            }
        }
    };
}

laws!(last_write_wins, Kind::LastWriteWins, set_ops());
laws!(first_write_wins, Kind::FirstWriteWins, set_ops());
laws!(merge, Kind::Merge, merge_ops());
laws!(sum, Kind::Sum, sum_ops());
laws!(user_resolve, Kind::UserResolve, resolve_ops());

proptest! {
    #[test]
    fn ties_are_broken_by_tab_identically_everywhere(
        wall in 0..1_000u64,
        counter in 0..4u32,
        x in small_value(),
        y in small_value(),
    ) {
        // Same wall time and counter from two tabs: a tie only the tab id
        // can break.
        let low = op(1, 1, wall, counter, Payload::Set { value: x.clone().into() });
        let high = op(1, 2, wall, counter, Payload::Set { value: y.clone().into() });
        for (kind, winner) in [
            (Kind::LastWriteWins, &y),
            (Kind::FirstWriteWins, &x),
            (Kind::Merge, &y),
        ] {
            let one = state_of(kind, [&low, &high]);
            let two = state_of(kind, [&high, &low]);
            assert_same(&one, &two)?;
            prop_assert_eq!(one.value(), Some(winner.clone()));
        }
        let resolve = |op: &Op, value: &Value| Op {
            payload: Payload::Resolve { value: value.clone().into(), supersedes: vec![] },
            ..op.clone()
        };
        let (low, high) = (resolve(&low, &x), resolve(&high, &y));
        let one = state_of(Kind::UserResolve, [&low, &high]);
        let two = state_of(Kind::UserResolve, [&high, &low]);
        assert_same(&one, &two)?;
        prop_assert_eq!(one.value(), Some(y.clone()));
        prop_assert_eq!(one.conflicts().len(), 2);
        prop_assert_eq!(one.conflicts(), two.conflicts());
    }

    #[test]
    fn concurrent_field_edits_both_survive(a in small_value(), b in small_value()) {
        let base = op(1, 1, 1, 0, Payload::Set { value: json!({"x": 0, "y": 0}).into() });
        let patch = |seq, tab, field: &str, value: &Value| {
            op(seq, tab, 2, 0, Payload::Patch {
                set: BTreeMap::from([(field.to_owned(), value.clone())]),
                remove: BTreeSet::new(),
            })
        };
        let one = patch(2, 1, "x", &a);
        let two = patch(2, 2, "y", &b);
        let state = state_of(Kind::Merge, [&base, &two, &one]);
        prop_assert_eq!(state.value(), Some(json!({"x": a, "y": b})));
    }

    #[test]
    fn a_resolution_supersedes_every_value_it_saw(x in small_value(), y in small_value(), z in small_value()) {
        let first = op(1, 1, 1, 0, Payload::Resolve { value: x.into(), supersedes: vec![] });
        let second = op(1, 2, 1, 0, Payload::Resolve { value: y.into(), supersedes: vec![] });
        let pick = op(2, 1, 2, 0, Payload::Resolve {
            value: z.clone().into(),
            supersedes: vec![first.id, second.id],
        });
        // The resolution arrives before what it supersedes: still wins.
        let state = state_of(Kind::UserResolve, [&pick, &second, &first]);
        prop_assert_eq!(state.value(), Some(z));
        prop_assert!(state.conflicts().is_empty());
    }
}

// ----- across the fold window ---------------------------------------------------
//
// Merge fields behind a key's floor (COMPACT_AFTER_MS behind its newest
// write), rounded down to a whole FOLD_STEP_MS, are folded into its base,
// which forgets which field each folded write touched. A write stamped
// behind the floor (late) is refused as stale; every write a replica
// admits is judged exactly. The oracle knows nothing of folds or floors:
// per field, the newest admitted write that said anything about it.

const DAY: u64 = 24 * 3_600_000;

/// Merge ops stamped on both sides of the fold window, so that some
/// arrive after a newer write moved the key's floor past them; some
/// stamped off the hour, so that the floor and the fold's horizon (the
/// floor rounded down to an hour) differ, and some between the two.
fn merge_ops_across_the_fold_window() -> impl Strategy<Value = Vec<Op>> {
    let wall = prop_oneof![
        0..2u64,
        Just(FOLD_STEP_MS / 2),
        Just(FOLD_STEP_MS / 2 + 1),
        Just(FOLD_STEP_MS - 1),
        Just(COMPACT_AFTER_MS),
        Just(COMPACT_AFTER_MS + FOLD_STEP_MS / 2 + 1),
        Just(COMPACT_AFTER_MS + FOLD_STEP_MS - 1),
        Just(COMPACT_AFTER_MS + DAY),
        Just(2 * COMPACT_AFTER_MS + 2 * DAY),
    ];
    merge_ops_stamped((1..=3u8, wall, 0..2u32))
}

/// The value `ops` make, from the definition alone: the newest whole
/// value, with every field a newer patch wrote laid over it (over a value
/// that is not an object, those fields alone).
fn merge_oracle(ops: &[&Op]) -> Option<Value> {
    let order = |op: &Op| (op.stamp, op.id);
    let base = ops
        .iter()
        .filter(|op| matches!(op.payload, Payload::Set { .. }))
        .max_by_key(|op| order(op));
    let mut fields: BTreeMap<String, ((Stamp, OpId), Option<Value>)> = BTreeMap::new();
    for op in ops {
        if base.is_some_and(|base| order(op) <= order(base)) {
            continue;
        }
        let Payload::Patch { set, remove } = &op.payload else {
            continue;
        };
        let said = set
            .iter()
            .map(|(name, value)| (name, Some(value.clone())))
            .chain(remove.iter().map(|name| (name, None)));
        for (name, value) in said {
            if fields.get(name).is_none_or(|(seen, _)| order(op) > *seen) {
                fields.insert(name.clone(), (order(op), value));
            }
        }
    }
    let base = base.map(|op| match &op.payload {
        Payload::Set { value } => Value::clone(value),
        _ => unreachable!(),
    });
    let mut object = match base {
        Some(Value::Object(object)) => object,
        _ if fields.is_empty() => return base,
        _ => serde_json::Map::new(),
    };
    for (name, (_, value)) in fields {
        match value {
            Some(value) => object.insert(name, value),
            None => object.remove(&name),
        };
    }
    Some(Value::Object(object))
}

/// A patch that reached a replica before a newer whole value is beaten by
/// it, also when the whole value moves the fold past the patch: the fold
/// once laid the beaten fields over the newer value.
#[test]
fn a_fold_never_lays_beaten_fields_over_a_newer_whole_value() {
    let patch = op(
        1,
        1,
        COMPACT_AFTER_MS + DAY,
        0,
        Payload::Patch {
            set: BTreeMap::from([(String::from("a"), json!(2))]),
            remove: BTreeSet::new(),
        },
    );
    let whole = op(
        2,
        2,
        2 * COMPACT_AFTER_MS + 2 * DAY,
        0,
        Payload::Set {
            value: json!("whole").into(),
        },
    );
    for order in [[&patch, &whole], [&whole, &patch]] {
        assert_eq!(state_of(Kind::Merge, order).value(), Some(json!("whole")));
    }
}

proptest! {
    /// One replica (a relay, say) takes ops stamped across the fold window
    /// in any order, with duplicates: it refuses some as stale, and holds
    /// exactly what the ops it admitted make.
    #[test]
    fn a_replica_holds_exactly_what_it_admitted_across_the_fold_window(
        (ops, schedule) in merge_ops_across_the_fold_window().prop_flat_map(deliveries),
    ) {
        let k = SharedKey::<Value>::builder_with_default("k", Value::Null)
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Ephemeral)
            .strategy(Kind::Merge)
            .build()
            .unwrap();
        let clock = ManualClock::new(2 * COMPACT_AFTER_MS + 3 * DAY);
        let mut relay = Replica::new(TabId::new(99), clock);
        relay.declare(&k).unwrap();
        let mut admitted = BTreeSet::new();
        let mut stale = 0;
        for op in &schedule {
            let message = Message::Ops(OpGroup { ops: vec![op.clone()] });
            let inbound = relay.receive_text(&message.encode().unwrap());
            match &inbound.errors[..] {
                [] => {
                    admitted.insert(op.id);
                }
                [Error::Stale { .. }] => stale += 1,
                errors => prop_assert!(false, "{errors:?}"),
            }
        }
        // Refused only what lies behind the newest write's window.
        let newest = ops.iter().map(|op| op.stamp.wall_ms).max().unwrap_or(0);
        for op in &ops {
            if op.stamp.wall_ms >= newest.saturating_sub(COMPACT_AFTER_MS) {
                prop_assert!(admitted.contains(&op.id), "refused in time: {op:?}");
            }
        }
        let kept: Vec<&Op> = ops.iter().filter(|op| admitted.contains(&op.id)).collect();
        let unit: UnitAddress = "a/b/u".parse().unwrap();
        let held = relay.get_value(&unit, &k).unwrap();
        prop_assert_eq!(
            held,
            merge_oracle(&kept).unwrap_or(Value::Null),
            "admitted {} of {} ops ({} stale deliveries)",
            kept.len(),
            ops.len(),
            stale
        );
    }

    /// A write stamped behind a state's floor changes nothing there, even
    /// applied directly (the state itself, not only admission, refuses it).
    #[test]
    fn a_late_merge_write_changes_nothing(
        ops in merge_ops_across_the_fold_window(),
        late in ((1..=3u8, 0..2u32), merge_payload()),
    ) {
        let state = state_of(Kind::Merge, &ops);
        let Some(floor) = state.floor().filter(|floor| *floor > 0) else {
            return Ok(());
        };
        let ((tab, counter), payload) = late;
        let late = op(99, tab, floor - 1, counter, payload);
        let mut after = state.clone();
        after.apply(&late).unwrap();
        assert_same(&after, &state)?;
    }

    /// Whatever a replica admitted, joining states across the window is
    /// still commutative and idempotent (the state exchange between tabs
    /// and a relay's snapshots rely on it).
    #[test]
    fn across_the_fold_window_joins_commute_and_are_idempotent(
        ops in merge_ops_across_the_fold_window(),
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        let x = state_of(Kind::Merge, pick(&ops, a));
        let y = state_of(Kind::Merge, pick(&ops, b));
        assert_same(&merged(&x, &y), &merged(&y, &x))?;
        assert_same(&merged(&x, &x), &x)?;
    }
}

// ----- against an oracle ------------------------------------------------------

const NOW: u64 = 1_700_000_000_000;

/// One step of a run: replica `who` writes (what depends on the strategy),
/// or receives the op at `pick` of everything written so far.
#[derive(Debug, Clone)]
enum Step {
    Write { who: usize, arg: i64, field: u8 },
    Deliver { who: usize, pick: usize },
    Tick { who: usize, ms: u64 },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (0..3usize, -4..6i64, 0..4u8).prop_map(|(who, arg, field)| Step::Write { who, arg, field }),
        5 => (0..3usize, any::<usize>()).prop_map(|(who, pick)| Step::Deliver { who, pick }),
        1 => (0..3usize, 0..50u64).prop_map(|(who, ms)| Step::Tick { who, ms }),
    ];
    vec(step, 1..40)
}

/// The fields a merge patch sets.
fn object_fields(payload: &Payload) -> Option<BTreeMap<String, Option<Value>>> {
    match payload {
        Payload::Patch { set, .. } => Some(
            set.iter()
                .map(|(name, value)| (name.clone(), Some(value.clone())))
                .collect(),
        ),
        _ => None,
    }
}

/// What the oracle knows about one write.
#[derive(Debug, Clone)]
struct Truth {
    id: OpId,
    stamp: Stamp,
    /// The ops its writer had applied when it wrote (including its own).
    seen: BTreeSet<OpId>,
    intent: Intent,
}

#[derive(Debug, Clone)]
enum Intent {
    /// A whole value (lww, fww, resolve; merge: the whole object written).
    Whole(Value),
    /// Merge: fields set and removed.
    Fields(BTreeMap<String, Option<Value>>),
    Add(i64),
    Reset(i64),
}

struct Run {
    kind: Kind,
    key: SharedKey<Value>,
    unit: UnitAddress,
    clocks: Vec<ManualClock>,
    stores: Vec<Replica>,
    applied: Vec<BTreeSet<OpId>>,
    ops: Vec<Op>,
    truths: Vec<Truth>,
}

impl Run {
    fn new(kind: Kind) -> Self {
        let key = SharedKey::<Value>::builder_with_default(
            "k",
            if kind == Kind::Sum {
                json!(0)
            } else {
                Value::Null
            },
        )
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .strategy(kind)
        .build()
        .unwrap();
        let clocks: Vec<ManualClock> = (0..3).map(|i| ManualClock::new(NOW + i * 7)).collect();
        let stores = clocks
            .iter()
            .enumerate()
            .map(|(i, clock)| {
                let mut store = Replica::new(TabId::new(i as u64 + 1), clock.clone());
                store.declare(&key).unwrap();
                store
            })
            .collect();
        Self {
            kind,
            key,
            unit: "a/b/u".parse().unwrap(),
            clocks,
            stores,
            applied: vec![BTreeSet::new(); 3],
            ops: Vec::new(),
            truths: Vec::new(),
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Write { who, arg, field } => self.write(who, arg, field)?,
            Step::Deliver { who, pick } => {
                if !self.ops.is_empty() {
                    let op = self.ops[pick % self.ops.len()].clone();
                    self.deliver(who, &op)?;
                }
            }
            Step::Tick { who, ms } => self.clocks[who].advance(ms),
        }
        Ok(())
    }

    fn deliver(&mut self, who: usize, op: &Op) -> Result<(), TestCaseError> {
        let message = Message::Ops(OpGroup {
            ops: vec![op.clone()],
        });
        let inbound = self.stores[who].receive_text(&message.encode().unwrap());
        prop_assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
        self.applied[who].insert(op.id);
        // A reset tells what its writer had counted (its observed totals):
        // the receiver knows those increments from then on.
        if let Some(truth) = self.truths.iter().find(|t| t.id == op.id)
            && matches!(truth.intent, Intent::Reset(_))
        {
            let seen = truth.seen.clone();
            self.applied[who].extend(seen);
        }
        Ok(())
    }

    fn write(&mut self, who: usize, arg: i64, field: u8) -> Result<(), TestCaseError> {
        let store = &mut self.stores[who];
        let (key, unit) = (&self.key, &self.unit);
        let (write, intent) = match self.kind {
            Kind::LastWriteWins | Kind::UserResolve => (
                store.set(unit, key, json!(arg)).unwrap(),
                Intent::Whole(json!(arg)),
            ),
            Kind::FirstWriteWins => match store.set(unit, key, json!(arg)) {
                Ok(write) => (write, Intent::Whole(json!(arg))),
                Err(Error::FirstWriteWins { .. }) => return Ok(()),
                Err(err) => return Err(TestCaseError::fail(err.to_string())),
            },
            Kind::Merge => {
                let name = format!("f{field}");
                let current = store.get_value(unit, key).unwrap();
                if arg < 0 && field == 0 {
                    // A value that is not an object replaces every field.
                    let whole = json!(arg);
                    (
                        store.set(unit, key, whole.clone()).unwrap(),
                        Intent::Whole(whole),
                    )
                } else {
                    let before = current.as_object().cloned().unwrap_or_default();
                    let mut object = before.clone();
                    if arg < 0 {
                        object.remove(&name);
                    } else {
                        object.insert(name.clone(), json!(arg));
                    }
                    // What the user changed in what they saw: removing a
                    // field they never had is no change at all.
                    let changed = (before.get(&name) != object.get(&name))
                        .then(|| (name.clone(), object.get(&name).cloned()));
                    let write = store.set(unit, key, Value::Object(object)).unwrap();
                    // Over a value that was not an object, the object
                    // replaces it whole; over an object, the change is what
                    // the user changed in what they saw; on a fresh key,
                    // every field written.
                    let intent = match (&write.op.payload, current.is_object()) {
                        (Payload::Set { value }, _) => Intent::Whole(Value::clone(value)),
                        (_, true) => Intent::Fields(changed.into_iter().collect()),
                        (payload, false) => {
                            Intent::Fields(object_fields(payload).unwrap_or_default())
                        }
                    };
                    (write, intent)
                }
            }
            Kind::Sum => {
                if field == 0 {
                    (
                        store.set(unit, key, json!(arg)).unwrap(),
                        Intent::Reset(arg),
                    )
                } else {
                    (store.increment(unit, key, arg).unwrap(), Intent::Add(arg))
                }
            }
        };
        let mut seen = self.applied[who].clone();
        seen.insert(write.op.id);
        self.applied[who].insert(write.op.id);
        self.truths.push(Truth {
            id: write.op.id,
            stamp: write.op.stamp,
            seen,
            intent,
        });
        self.ops.push(write.op);
        Ok(())
    }

    /// Every replica receives every op (again), in its own shuffled order.
    fn finish(&mut self, order: &[usize]) -> Result<(), TestCaseError> {
        let ops = self.ops.clone();
        for who in 0..self.stores.len() {
            for i in 0..ops.len() {
                let pick = order.get(i).copied().unwrap_or(i) % ops.len().max(1);
                self.deliver(who, &ops[(pick + who + i) % ops.len()])?;
            }
            for op in &ops {
                self.deliver(who, op)?;
            }
        }
        Ok(())
    }

    /// The oracle: the value every replica must end with.
    fn expected(&self) -> Value {
        let by_time = |t: &&Truth| (t.stamp, t.id);
        match self.kind {
            Kind::LastWriteWins | Kind::FirstWriteWins => {
                let pick = if self.kind == Kind::LastWriteWins {
                    self.truths.iter().max_by_key(by_time)
                } else {
                    self.truths.iter().min_by_key(by_time)
                };
                match pick.map(|t| &t.intent) {
                    Some(Intent::Whole(value)) => value.clone(),
                    _ => Value::Null,
                }
            }
            Kind::UserResolve => {
                // Live: no other write had seen it.
                let live: Vec<&Truth> = self
                    .truths
                    .iter()
                    .filter(|t| {
                        !self
                            .truths
                            .iter()
                            .any(|o| o.id != t.id && o.seen.contains(&t.id))
                    })
                    .collect();
                match live
                    .into_iter()
                    .max_by_key(|t| (t.stamp, t.id))
                    .map(|t| &t.intent)
                {
                    Some(Intent::Whole(value)) => value.clone(),
                    _ => Value::Null,
                }
            }
            Kind::Merge => self.expected_merge(),
            Kind::Sum => self.expected_sum(),
        }
    }

    fn expected_merge(&self) -> Value {
        let newest_whole = self
            .truths
            .iter()
            .filter(|t| matches!(t.intent, Intent::Whole(_)))
            .max_by_key(|t| (t.stamp, t.id));
        let mut names = BTreeSet::new();
        for truth in &self.truths {
            match &truth.intent {
                Intent::Whole(Value::Object(map)) => names.extend(map.keys().cloned()),
                Intent::Fields(fields) => names.extend(fields.keys().cloned()),
                _ => {}
            }
        }
        let mut object = serde_json::Map::new();
        for name in names {
            // The newest write that says anything about this field.
            let newest = self
                .truths
                .iter()
                .filter_map(|t| {
                    let says = match &t.intent {
                        Intent::Whole(Value::Object(map)) => Some(map.get(&name).cloned()),
                        Intent::Whole(_) => Some(None),
                        Intent::Fields(fields) => fields.get(&name).cloned(),
                        _ => None,
                    };
                    says.map(|value| ((t.stamp, t.id), value))
                })
                .max_by_key(|(order, _)| *order);
            if let Some((_, Some(value))) = newest {
                object.insert(name, value);
            }
        }
        match newest_whole {
            Some(whole) if !matches!(whole.intent, Intent::Whole(Value::Object(_))) => {
                // A patch that changed nothing says nothing.
                let patched_later = self.truths.iter().any(|t| {
                    matches!(&t.intent, Intent::Fields(f) if !f.is_empty())
                        && (t.stamp, t.id) > (whole.stamp, whole.id)
                });
                match (&whole.intent, patched_later) {
                    (Intent::Whole(value), false) => value.clone(),
                    _ => Value::Object(object),
                }
            }
            None if object.is_empty()
                && !self
                    .truths
                    .iter()
                    .any(|t| matches!(&t.intent, Intent::Fields(f) if !f.is_empty())) =>
            {
                Value::Null
            }
            _ => Value::Object(object),
        }
    }

    fn expected_sum(&self) -> Value {
        let reset = self
            .truths
            .iter()
            .filter(|t| matches!(t.intent, Intent::Reset(_)))
            .max_by_key(|t| (t.stamp, t.id));
        let adds = self.truths.iter().filter_map(|t| match t.intent {
            Intent::Add(delta) => Some((t, delta)),
            _ => None,
        });
        let total: i64 = match reset {
            None => adds.map(|(_, delta)| delta).sum(),
            Some(reset) => {
                let Intent::Reset(target) = reset.intent else {
                    unreachable!()
                };
                // An increment counts on top of the reset unless the
                // resetter had seen it, or a later op of the same tab
                // (whose totals include it).
                let seen = |t: &Truth| {
                    reset
                        .seen
                        .iter()
                        .any(|s| s.tab == t.id.tab && s.seq >= t.id.seq)
                };
                target + adds.filter(|(t, _)| !seen(t)).map(|(_, d)| d).sum::<i64>()
            }
        };
        json!(total)
    }
}

fn oracle(kind: Kind) {
    let mut runner = TestRunner::new(Config {
        cases: ORACLE_CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(steps(), vec(any::<usize>(), 0..40)), |(steps, order)| {
            let mut run = Run::new(kind);
            for step in &steps {
                run.step(step)?;
            }
            run.finish(&order)?;
            let expected = run.expected();
            let reference = serde_json::to_string(run.stores[0].states()).unwrap();
            for store in &run.stores {
                prop_assert_eq!(&store.get_value(&run.unit, &run.key).unwrap(), &expected);
                prop_assert_eq!(&serde_json::to_string(store.states()).unwrap(), &reference);
            }
            if kind == Kind::UserResolve {
                let live = run.stores[0].conflicts(&run.unit, &run.key).unwrap().len();
                let oracle_live = run
                    .truths
                    .iter()
                    .filter(|t| {
                        !run.truths
                            .iter()
                            .any(|o| o.id != t.id && o.seen.contains(&t.id))
                    })
                    .count();
                prop_assert_eq!(live, if oracle_live >= 2 { oracle_live } else { 0 });
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn last_write_wins_matches_the_newest_write() {
    oracle(Kind::LastWriteWins);
}

#[test]
fn first_write_wins_matches_the_oldest_write() {
    oracle(Kind::FirstWriteWins);
}

#[test]
fn merge_matches_the_newest_write_of_each_field() {
    oracle(Kind::Merge);
}

#[test]
fn sum_matches_the_deltas_on_top_of_the_newest_reset() {
    oracle(Kind::Sum);
}

#[test]
fn user_resolve_keeps_exactly_the_writes_nobody_had_seen() {
    oracle(Kind::UserResolve);
}

// ----- admission ----------------------------------------------------------------

/// An op as a forger would vary it.
#[derive(Debug, Clone)]
struct Forged {
    writer: u8,
    apartment: bool,
    declared: bool,
    schema: u32,
    ahead_ms: i64,
    huge: bool,
    value: i64,
}

fn forged() -> impl Strategy<Value = Forged> {
    (
        0..4u8,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
        1..4u32,
        prop_oneof![
            Just(0i64),
            -3_600_000i64..3_600_000,
            Just(MAX_CLOCK_AHEAD_MS as i64 + 1),
            Just(MAX_HOLD_AHEAD_MS as i64 + 1),
            Just(-(20 * 24 * 3_600_000)),
        ],
        prop::bool::weighted(0.05),
        -5..5i64,
    )
        .prop_map(
            |(writer, apartment, declared, schema, ahead_ms, huge, value)| Forged {
                writer,
                apartment,
                declared,
                schema,
                ahead_ms,
                huge,
                value,
            },
        )
}

/// What the rules say about an op: applied, held, or refused (and why).
#[derive(Debug, PartialEq)]
enum Verdict {
    Apply,
    Hold,
    Refuse(&'static str),
}

fn rule(forged: &Forged) -> Verdict {
    // Order matters only for which reason is given; each is checked on its
    // own by the stores' own tests.
    if forged.huge {
        return Verdict::Refuse("too_large");
    }
    if !forged.apartment {
        return Verdict::Refuse("foreign_apartment");
    }
    if !forged.declared {
        return Verdict::Hold;
    }
    if forged.writer == 3 {
        return Verdict::Refuse("out_of_scope");
    }
    if forged.writer == 2 {
        return Verdict::Refuse("permission_denied");
    }
    if forged.ahead_ms > MAX_HOLD_AHEAD_MS as i64 {
        return Verdict::Refuse("clock_skew");
    }
    if forged.ahead_ms > MAX_CLOCK_AHEAD_MS as i64 {
        return Verdict::Hold;
    }
    if forged.schema > 2 {
        return Verdict::Refuse("newer_schema");
    }
    Verdict::Apply
}

fn v1_to_v2(value: Value) -> Result<Value, String> {
    Ok(json!({ "v1": value }))
}

#[test]
fn admission_follows_the_rules_op_by_op() {
    let declared = SharedKey::<Value>::builder("k")
        .scope(Scope::Building)
        .lifetime(Lifetime::Ephemeral)
        .write(Access::units(["w0", "w1"]).unwrap())
        .schema(2)
        .migrate(1, v1_to_v2)
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: ORACLE_CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&vec(forged(), 1..12), |forgeries| {
            let clock = ManualClock::new(NOW);
            let mut store = Replica::for_apartment(TabId::new(1), "apt".parse().unwrap(), clock);
            store.declare(&declared).unwrap();
            let mut expected: Option<(Stamp, OpId, Value)> = None;
            for (i, f) in forgeries.iter().enumerate() {
                let apartment = if f.apartment { "apt" } else { "other" };
                let building = if f.writer == 3 { "elsewhere" } else { "b" };
                let writer: UnitAddress = format!("{apartment}/{building}/w{}", f.writer.min(2))
                    .parse()
                    .unwrap();
                let name = if f.declared { "k" } else { "undeclared" };
                let key = FullKey::parse(&format!("building/{apartment}/b/{name}")).unwrap();
                let tab = TabId::new(100 + i as u64);
                let stamp = Stamp {
                    wall_ms: NOW.saturating_add_signed(f.ahead_ms),
                    counter: 0,
                    tab,
                };
                let value = if f.huge {
                    json!("x".repeat(MAX_VALUE_BYTES + 1))
                } else {
                    json!(f.value)
                };
                let op = Op {
                    id: OpId { tab, seq: 1 },
                    key,
                    writer,
                    stamp,
                    schema: f.schema,
                    payload: Payload::Set {
                        value: value.clone().into(),
                    },
                };
                let inbound = store.receive(&Message::Ops(OpGroup {
                    ops: vec![op.clone()],
                }));
                let verdict = match (inbound.errors.first(), inbound.held) {
                    (Some(err), _) => Verdict::Refuse(err.code()),
                    (None, 1) => Verdict::Hold,
                    (None, _) => Verdict::Apply,
                };
                prop_assert_eq!(verdict, rule(f), "{:?}", f);
                if rule(f) == Verdict::Apply {
                    let migrated = if f.schema == 1 {
                        v1_to_v2(value).unwrap()
                    } else {
                        value
                    };
                    let candidate = (op.stamp, op.id, migrated);
                    if expected
                        .as_ref()
                        .is_none_or(|e| (e.0, e.1) < (candidate.0, candidate.1))
                    {
                        expected = Some(candidate);
                    }
                }
            }
            let reader: UnitAddress = "apt/b/w0".parse().unwrap();
            let value = store.get_value(&reader, &declared).unwrap();
            prop_assert_eq!(value, expected.map_or(Value::Null, |e| e.2));
            Ok(())
        })
        .unwrap();
}
