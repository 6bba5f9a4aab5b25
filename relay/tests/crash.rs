//! The relay killed with SIGKILL, over and over, while three writers push:
//! afterwards every acknowledged op is in the log exactly once, the
//! numbers have no gaps, and the counter is exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use support::Relay;
use support::load::{
    KEEP_WHOLE_LOG, Shared, acked_at_least, check, finish, observed, observer, writer,
};

const KILLS: usize = 25;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_ops_survive_repeated_sigkills() {
    // Devices hold a core replica, which is single-owner: local tasks.
    tokio::task::LocalSet::new().run_until(crash_test()).await;
}

async fn crash_test() {
    let mut relay = Relay::start(&KEEP_WHOLE_LOG);
    let port = Arc::new(AtomicU16::new(relay.port));
    let shared = Arc::new(Shared::default());
    let writers: Vec<_> = (1..=3)
        .map(|id| tokio::task::spawn_local(writer(id, Arc::clone(&port), Arc::clone(&shared))))
        .collect();
    let watching = vec![tokio::task::spawn_local(observer(
        50,
        Arc::clone(&port),
        Arc::clone(&shared),
    ))];
    // Writers push the whole time; the relay dies under them.
    for kill in 0..KILLS {
        let before = shared.acked.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60 + (kill as u64 * 37) % 140)).await;
        // However slow the machine, each life of the relay acknowledges
        // some ops before it dies.
        acked_at_least(&shared, before + 4).await;
        relay.restart();
        port.store(relay.port, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (acked, sessions) = finish(&shared, writers).await;
    let tally = check(&relay, &acked).await;
    assert!(acked.len() > 3 * KILLS, "the writers kept writing");
    let seen = observed(&relay, &shared, watching, tally.counter).await;
    println!(
        "crash test: {KILLS} SIGKILLs, {sessions} sessions, {} ops acknowledged, {} found in the \
         log (numbers 1..={}, no gaps, {} duplicates), counter {}; an observer (every number \
         once, in order): {seen:?}",
        tally.acked, tally.found, tally.found, tally.duplicates, tally.counter
    );
}
