//! Permissions and isolation: scope keeps keys apart, access lists narrow
//! who may read, write and subscribe, and incoming ops and states are held
//! to the same rules as local calls.

// Test and bench code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gaesup_state_core::{
    Access, Action, Error, Event, FullKey, KeyName, Lifetime, ManualClock, Message, Replica, Scope,
    SharedKey, Strategy, SyncEntry, TabId, UnitAddress,
};
use serde_json::json;

const NOW: u64 = 1_700_000_000_000;

fn unit(text: &str) -> UnitAddress {
    text.parse().unwrap()
}

fn key(name: &str, scope: Scope) -> SharedKey<i64> {
    SharedKey::<i64>::builder(name)
        .scope(scope)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap()
}

fn store_with(tab: u64, keys: &[&SharedKey<i64>]) -> Replica {
    let mut store = Replica::new(TabId::new(tab), ManualClock::new(NOW));
    for key in keys {
        store.declare(key).unwrap();
    }
    store
}

#[test]
fn violations_name_the_key_the_unit_and_the_action() {
    let cart = SharedKey::<i64>::builder("cart")
        .scope(Scope::Apartment)
        .read(Access::buildings(["shop"]).unwrap())
        .write(Access::units(["cart"]).unwrap())
        .build()
        .unwrap();
    let mut store = store_with(1, &[&cart]);
    let header = unit("mall/top/header");
    let full = FullKey::parse("apartment/mall/cart").unwrap();
    let denied = |action| Error::PermissionDenied {
        key: full.clone(),
        unit: header.clone(),
        action,
    };
    assert_eq!(store.get(&header, &cart).unwrap_err(), denied(Action::Read));
    assert_eq!(
        store.subscribe(&header, &cart).unwrap_err(),
        denied(Action::Subscribe)
    );
    assert_eq!(
        store.set(&header, &cart, 1).unwrap_err(),
        denied(Action::Write)
    );
    let message = denied(Action::Write).to_string();
    assert!(message.contains("apartment/mall/cart") && message.contains("mall/top/header"));

    // Allowed by building for reads, by unit for writes.
    let shopper = unit("mall/shop/cart");
    store.set(&shopper, &cart, 3).unwrap();
    assert_eq!(store.get(&unit("mall/shop/list"), &cart).unwrap(), 3);
    assert_eq!(store.subscribe(&shopper, &cart).unwrap(), full);
    assert!(store.set(&unit("mall/shop/list"), &cart, 1).is_err());
    // A batch is held to the same rules, and fails as a whole.
    assert!(
        store
            .batch(|b| {
                b.set(&shopper, &cart, 9)?;
                b.set(&header, &cart, 10)
            })
            .is_err()
    );
    assert_eq!(store.get(&shopper, &cart).unwrap(), 3);
}

#[test]
fn a_unit_allowed_one_action_on_a_key_is_checked_again_for_another() {
    // The replica remembers which actions passed for the key and unit it
    // opened last; one that passed must not let another through, and a
    // refusal must not be remembered as a pass.
    let cart = SharedKey::<i64>::builder("cart")
        .scope(Scope::Apartment)
        .write(Access::units(["cart"]).unwrap())
        .build()
        .unwrap();
    let mut store = store_with(1, &[&cart]);
    let (header, shopper) = (unit("mall/top/header"), unit("mall/shop/cart"));
    for _ in 0..2 {
        assert_eq!(store.get(&header, &cart).unwrap(), 0);
        assert!(matches!(
            store.set(&header, &cart, 1),
            Err(Error::PermissionDenied {
                action: Action::Write,
                ..
            })
        ));
    }
    store.set(&shopper, &cart, 2).unwrap();
    assert!(store.set(&header, &cart, 3).is_err());
    assert_eq!(store.get(&header, &cart).unwrap(), 2);
    // Reads allowed to one building only: a write that passed does not
    // let a read through.
    let shelf = SharedKey::<i64>::builder("shelf")
        .scope(Scope::Apartment)
        .read(Access::buildings(["shop"]).unwrap())
        .build()
        .unwrap();
    store.declare(&shelf).unwrap();
    store.set(&header, &shelf, 4).unwrap();
    for _ in 0..2 {
        assert!(matches!(
            store.get(&header, &shelf),
            Err(Error::PermissionDenied {
                action: Action::Read,
                ..
            })
        ));
        assert!(store.subscribe(&header, &shelf).is_err());
    }
    assert_eq!(store.get(&shopper, &shelf).unwrap(), 4);
}

#[test]
fn private_keys_of_two_units_never_collide() {
    let draft = key("draft", Scope::Private);
    let mut store = store_with(1, &[&draft]);
    let one = unit("a/b/one");
    let two = unit("a/b/two");
    store.set(&one, &draft, 1).unwrap();
    store.set(&two, &draft, 2).unwrap();
    assert_eq!(store.get(&one, &draft).unwrap(), 1);
    assert_eq!(store.get(&two, &draft).unwrap(), 2);
    assert_ne!(draft.full_key(&one), draft.full_key(&two));
}

#[test]
fn the_same_name_in_two_buildings_never_collides() {
    let count = key("count", Scope::Building);
    let shared = key("count", Scope::Apartment);
    let mut store = store_with(1, &[&count, &shared]);
    let left = unit("a/left/u");
    let right = unit("a/right/u");
    store.set(&left, &count, 1).unwrap();
    store.set(&right, &count, 2).unwrap();
    store.set(&left, &shared, 3).unwrap();
    assert_eq!(store.get(&left, &count).unwrap(), 1);
    assert_eq!(store.get(&right, &count).unwrap(), 2);
    assert_eq!(store.get(&right, &shared).unwrap(), 3);
    assert_eq!(store.get(&unit("a/left/other"), &count).unwrap(), 1);
    // Global keys reach every apartment.
    let global = key("theme", Scope::Global);
    store.declare(&global).unwrap();
    store.set(&left, &global, 7).unwrap();
    assert_eq!(store.get(&unit("other/x/y"), &global).unwrap(), 7);
}

#[test]
fn incoming_ops_must_come_from_inside_the_scope() {
    let draft = key("draft", Scope::Private);
    let count = key("count", Scope::Building);
    let mut sender = store_with(2, &[&draft, &count]);
    let mut store = store_with(1, &[&draft, &count]);

    // A forged op: unit "two" claims to write unit "one"'s private key.
    let mut op = sender.set(&unit("a/b/one"), &draft, 1).unwrap().op;
    op.writer = unit("a/b/two");
    assert_eq!(
        store.apply_remote(&op).unwrap_err(),
        Error::OutOfScope {
            key: FullKey::parse("private/a/b/one/draft").unwrap(),
            unit: unit("a/b/two"),
        }
    );
    // A writer from another building for a building key.
    let mut op = sender.set(&unit("a/b/u"), &count, 1).unwrap().op;
    op.writer = unit("a/elsewhere/u");
    assert!(matches!(
        store.apply_remote(&op),
        Err(Error::OutOfScope { .. })
    ));
    assert!(store.states().is_empty());
}

#[test]
fn incoming_ops_and_states_are_checked_against_the_write_list() {
    let open = SharedKey::<i64>::builder("limit")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap();
    let locked = SharedKey::<i64>::builder("limit")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .write(Access::units(["admin"]).unwrap())
        .build()
        .unwrap();
    // The sender runs a buggy declaration that lets anyone write.
    let mut sender = store_with(2, &[&open]);
    let mut store = store_with(1, &[&locked]);
    let write = sender.set(&unit("a/b/intruder"), &open, 99).unwrap();
    let inbound = store.receive(&write.message.unwrap());
    assert!(matches!(
        inbound.errors[..],
        [Error::PermissionDenied {
            action: Action::Write,
            ..
        }]
    ));
    // Anti-entropy with the same forged write is refused too.
    let full = open.full_key(&unit("a/b/intruder"));
    let entry = SyncEntry {
        key: full.clone(),
        schema: 1,
        state: sender.state(&full).unwrap().clone(),
    };
    assert!(matches!(
        store.merge_state(&entry),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(store.states().is_empty());
    // The admin's writes go through.
    let write = sender.set(&unit("a/b/admin"), &open, 5).unwrap();
    assert!(store.receive(&write.message.unwrap()).errors.is_empty());
    assert_eq!(store.get(&unit("a/b/admin"), &locked).unwrap(), 5);
}

#[test]
fn memory_keys_never_leave_their_page() {
    let local = SharedKey::<i64>::builder("scratch")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Memory)
        .build()
        .unwrap();
    let mut sender = store_with(2, &[]);
    sender.declare(&local).unwrap();
    let mut store = store_with(1, &[]);
    store.declare(&local).unwrap();
    let write = sender.set(&unit("a/b/u"), &local, 1).unwrap();
    assert_eq!(write.message, None);
    assert!(sender.sync_messages().is_empty());
    assert!(matches!(
        store.apply_remote(&write.op),
        Err(Error::LocalOnly { .. })
    ));
}

#[test]
fn events_reach_only_their_scope_and_forged_senders_are_refused() {
    let sender = unit("a/shop/cart");
    let name = KeyName::new("added").unwrap();
    let event = Event::new(Scope::Building, &sender, &name, json!({"sku": 1})).unwrap();
    assert!(event.reaches(&unit("a/shop/list")));
    assert!(!event.reaches(&unit("a/header/menu")));
    assert!(!event.reaches(&unit("b/shop/list")));

    let mut store = store_with(1, &[]);
    let text = Message::Event(event.clone()).encode().unwrap();
    assert_eq!(store.receive_text(&text).events, vec![event.clone()]);

    let mut forged = event;
    forged.sender = unit("a/header/menu");
    let inbound = store.receive_text(&Message::Event(forged).encode().unwrap());
    assert!(matches!(inbound.errors[..], [Error::OutOfScope { .. }]));
    assert!(inbound.events.is_empty());
}

#[test]
fn a_unit_cannot_use_a_key_declared_differently() {
    let a = key("count", Scope::Apartment);
    let b = SharedKey::<i64>::builder("count")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .strategy(Strategy::Sum)
        .build()
        .unwrap();
    let text = SharedKey::<String>::builder("count")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Ephemeral)
        .build()
        .unwrap();
    let mut store = store_with(1, &[&a]);
    store.declare(&key("count", Scope::Apartment)).unwrap();
    assert!(matches!(store.declare(&b), Err(Error::KeyMismatch { .. })));
    assert!(matches!(
        store.declare(&text),
        Err(Error::KeyMismatch { .. })
    ));
    assert!(matches!(
        store.get(&unit("a/b/u"), &text),
        Err(Error::KeyMismatch { .. })
    ));
    let undeclared = key("other", Scope::Apartment);
    assert!(matches!(
        store.get(&unit("a/b/u"), &undeclared),
        Err(Error::UnknownKey { .. })
    ));
}
