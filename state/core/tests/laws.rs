//! Property tests: every strategy's state is a join-semilattice, and
//! applying ops is order- and duplicate-insensitive. Test names state the
//! law.

// Test and bench code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use gaesup_state_core::{
    FullKey, KeyState, Op, OpId, Payload, Stamp, Strategy as Kind, TabId, UnitAddress,
};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use serde_json::{Value, json};

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
                op(i as u64, tab, wall, counter, Payload::Set { value })
            })
            .collect()
    })
}

fn merge_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        small_value().prop_map(|value| Payload::Set { value }),
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
    vec((stamp_parts(), merge_payload()), 0..12).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, ((tab, wall, counter), payload))| op(i as u64, tab, wall, counter, payload))
            .collect()
    })
}

/// Per-tab increments turned into cumulative PN ops.
fn sum_ops() -> impl Strategy<Value = Vec<Op>> {
    vec((1..=3u8, -5..=5i64), 0..16).prop_map(|items| {
        let mut totals: BTreeMap<u8, (u64, u64, u64)> = BTreeMap::new();
        items
            .into_iter()
            .map(|(tab, delta)| {
                let slot = totals.entry(tab).or_default();
                if delta >= 0 {
                    slot.0 += delta.unsigned_abs();
                } else {
                    slot.1 += delta.unsigned_abs();
                }
                slot.2 += 1;
                op(
                    slot.2,
                    tab,
                    slot.2,
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

fn sum_of(ops: &[Op]) -> i64 {
    // The last op of each tab carries its totals.
    let mut last: BTreeMap<TabId, (u64, u64)> = BTreeMap::new();
    for op in ops {
        if let Payload::Count { p, n, .. } = op.payload {
            let slot = last.entry(op.id.tab).or_default();
            *slot = (slot.0.max(p), slot.1.max(n));
        }
    }
    last.values().map(|(p, n)| *p as i64 - *n as i64).sum()
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
                i as u64,
                tab,
                wall,
                counter,
                Payload::Resolve { value, supersedes },
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
    fn duplicate_delivery_counts_once((ops, schedule) in sum_ops().prop_flat_map(deliveries)) {
        let state = state_of(Kind::Sum, &schedule);
        prop_assert_eq!(state.value(), Some(Value::from(sum_of(&ops))));
    }

    #[test]
    fn ties_are_broken_by_tab_identically_everywhere(
        wall in 0..1_000u64,
        counter in 0..4u32,
        x in small_value(),
        y in small_value(),
    ) {
        // Same wall time and counter from two tabs: a tie only the tab id
        // can break.
        let low = op(1, 1, wall, counter, Payload::Set { value: x.clone() });
        let high = op(1, 2, wall, counter, Payload::Set { value: y.clone() });
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
            payload: Payload::Resolve { value: value.clone(), supersedes: vec![] },
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
        let base = op(1, 1, 1, 0, Payload::Set { value: json!({"x": 0, "y": 0}) });
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
        let first = op(1, 1, 1, 0, Payload::Resolve { value: x, supersedes: vec![] });
        let second = op(1, 2, 1, 0, Payload::Resolve { value: y, supersedes: vec![] });
        let pick = op(2, 1, 2, 0, Payload::Resolve {
            value: z.clone(),
            supersedes: vec![first.id, second.id],
        });
        // The resolution arrives before what it supersedes: still wins.
        let state = state_of(Kind::UserResolve, [&pick, &second, &first]);
        prop_assert_eq!(state.value(), Some(z));
        prop_assert!(state.conflicts().is_empty());
    }
}
