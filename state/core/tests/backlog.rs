//! Back-pressure from a full relay outbox: a local write that could never
//! reach the other devices is refused, whole, and changes nothing.

// Test code: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gaesup_state_core::{
    Error, Lifetime, ManualClock, Replica, Scope, SharedKey, Strategy, TabId, UnitAddress,
};

fn key(name: &str, lifetime: Lifetime, strategy: Strategy) -> SharedKey<i64> {
    SharedKey::<i64>::builder(name)
        .scope(Scope::Apartment)
        .lifetime(lifetime)
        .strategy(strategy)
        .build()
        .unwrap()
}

#[test]
fn a_full_backlog_refuses_persistent_writes_whole_and_lets_the_rest_through() {
    let unit: UnitAddress = "main/b/u".parse().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let mut replica = Replica::new(TabId::new(1), clock.clone());
    let mut other = Replica::new(TabId::new(2), clock);
    let count = key("count", Lifetime::Persistent, Strategy::Sum);
    let title = key("title", Lifetime::Persistent, Strategy::LastWriteWins);
    let draft = key("draft", Lifetime::Ephemeral, Strategy::LastWriteWins);
    let scratch = key("scratch", Lifetime::Memory, Strategy::LastWriteWins);
    for key in [&count, &title, &draft, &scratch] {
        replica.declare(key).unwrap();
        other.declare(key).unwrap();
    }
    replica.increment(&unit, &count, 3).unwrap();
    replica.set_backlog(Some(10_000));

    let full = Err(Error::Backlog { waiting: 10_000 });
    assert_eq!(replica.increment(&unit, &count, 1).map(|_| ()), full);
    assert_eq!(replica.set(&unit, &count, 0).map(|_| ()), full);
    assert_eq!(replica.set(&unit, &title, 5).map(|_| ()), full);
    // A batch touching one persistent key is refused whole.
    let batch = replica.batch(|batch| {
        batch.set(&unit, &draft, 1)?;
        batch.set(&unit, &title, 2)?;
        Ok(())
    });
    assert_eq!(batch.map(|_| ()), full);
    assert_eq!(replica.get(&unit, &count).unwrap(), 3);
    assert_eq!(replica.get(&unit, &title).unwrap(), 0);
    assert_eq!(replica.get(&unit, &draft).unwrap(), 0);
    assert_eq!(
        Error::Backlog { waiting: 10_000 }.code(),
        "outbox_full",
        "the JS binding and the relay read this code"
    );

    // What stays on this device is written as usual.
    replica.set(&unit, &draft, 7).unwrap();
    replica.set(&unit, &scratch, 8).unwrap();
    assert_eq!(replica.get(&unit, &draft).unwrap(), 7);

    // Other tabs' writes still arrive.
    let theirs = other.set(&unit, &title, 9).unwrap();
    let inbound = replica.receive_text(&theirs.message.unwrap().encode().unwrap());
    assert!(inbound.errors.is_empty(), "{:?}", inbound.errors);
    assert_eq!(replica.get(&unit, &title).unwrap(), 9);

    // Room again: writes go through.
    replica.set_backlog(None);
    replica.increment(&unit, &count, 1).unwrap();
    assert_eq!(replica.get(&unit, &count).unwrap(), 4);
}
