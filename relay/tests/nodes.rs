//! Two relay nodes on one real `redis-server` (a temporary directory, a
//! port chosen at run time, AOF with `appendfsync always`), killed for
//! real: a node SIGKILLed during writes (its writers move to the other
//! node), and Redis SIGKILLed and restarted during writes. Afterwards
//! every acknowledged op is in the log exactly once, the numbers have no
//! gaps, the counter is exact, and both nodes serve the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use gaesup_protocol::{AckStatus, ClientMessage, Ping, Push, ServerMessage};
use serde_json::json;
use support::load::{
    KEEP_WHOLE_LOG, Observed, Shared, Tally, acked_at_least, check, finish, observed, observer,
    writer,
};
use support::{
    Client, Device, KeptLog, RedisServer, Relay, main_log_holds, main_pull, main_rw, main_rw_as,
    main_snapshot, stored_len,
};

/// The writers' tasks.
type Writers = Vec<tokio::task::JoinHandle<(support::load::Acked, usize)>>;
/// The observers' tasks.
type Observers = Vec<tokio::task::JoinHandle<Observed>>;

/// Four writers, two on each node, and an observer on each node; returns
/// their ports (one per node: moving a node's port moves its devices).
fn devices(nodes: &[&Relay; 2], shared: &Arc<Shared>) -> ([Arc<AtomicU16>; 2], Writers, Observers) {
    let ports = [
        Arc::new(AtomicU16::new(nodes[0].port)),
        Arc::new(AtomicU16::new(nodes[1].port)),
    ];
    let writers = (1..=4)
        .map(|id| {
            let port = Arc::clone(&ports[(id % 2) as usize]);
            tokio::task::spawn_local(writer(id, port, Arc::clone(shared)))
        })
        .collect();
    let observers = (0..2)
        .map(|n| {
            let port = Arc::clone(&ports[n]);
            tokio::task::spawn_local(observer(50 + n as u64, port, Arc::clone(shared)))
        })
        .collect();
    (ports, writers, observers)
}

/// Both nodes serve the same canonical state.
async fn same_state(a: &Relay, b: &Relay) {
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        let (left, right) = (main_snapshot(a).await, main_snapshot(b).await);
        if serde_json::to_string(&left).unwrap() == serde_json::to_string(&right).unwrap() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the nodes disagree: {left:?} / {right:?}"
        );
    }
}

/// Stops the writers, then checks both nodes' logs against what was
/// acknowledged (the same log on both), their states equal, and every
/// observer's view; returns the tally, the writers' sessions and what the
/// observers saw.
async fn settle(
    a: &Relay,
    b: &Relay,
    shared: &Shared,
    writers: Writers,
    observers: Observers,
) -> (Tally, usize, Vec<Observed>) {
    let (acked, sessions) = finish(shared, writers).await;
    let tally = check(a, &acked).await;
    let on_b = check(b, &acked).await;
    assert_eq!(on_b.found, tally.found, "both nodes serve the same log");
    same_state(a, b).await;
    let seen = observed(a, shared, observers, tally.counter).await;
    (tally, sessions, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_on_two_nodes_see_each_other_s_ops_live() {
    let redis = RedisServer::start();
    let (a, b) = (Relay::node(&redis, &[]), Relay::node(&redis, &[]));
    let mut on_a = Client::connect(&a, &main_rw(), Some(0)).await;
    let mut on_b = Client::connect(&b, &main_rw(), Some(0)).await;
    let mut device = Device::new(1);
    for delta in [2, 3] {
        on_a.push(vec![device.count(delta)]).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let ServerMessage::Ops(body) = on_b
            .wait_for(|m| matches!(m, ServerMessage::Ops(body) if !body.ops.is_empty()))
            .await
        {
            seen.extend(body.ops.iter().map(|s| s.seq));
        }
    }
    assert_eq!(
        seen,
        [1, 2],
        "B's device gets A's ops, in order, numbered once"
    );
    let mut other = Device::new(2);
    let acks = on_b.push(vec![other.count(10)]).await;
    assert!(
        matches!(&acks[0].status, gaesup_protocol::AckStatus::Applied { seq: 3, value, .. } if *value == json!(15)),
        "{acks:?}"
    );
    same_state(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_during_writes_loses_and_doubles_nothing() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let redis = RedisServer::start();
            let a = Relay::node(&redis, &KEEP_WHOLE_LOG);
            let mut b = Relay::node(&redis, &KEEP_WHOLE_LOG);
            let shared = Arc::new(Shared::default());
            let (ports, handles, watching) = devices(&[&a, &b], &shared);
            acked_at_least(&shared, 150).await;
            // B dies mid-write; its writers come back on A, from their
            // outboxes.
            let at_kill = shared.acked.load(Ordering::SeqCst);
            b.kill();
            ports[1].store(a.port, Ordering::SeqCst);
            acked_at_least(&shared, at_kill + 150).await;
            // B restarts and catches up from Redis; its writers go back.
            b = b.successor(&KEEP_WHOLE_LOG);
            ports[1].store(b.port, Ordering::SeqCst);
            let back = shared.acked.load(Ordering::SeqCst);
            acked_at_least(&shared, back + 150).await;
            let (tally, sessions, seen) = settle(&a, &b, &shared, handles, watching).await;
            println!(
                "node kill: 4 writers on 2 nodes, one node SIGKILLed after {at_kill} acks and \
                 restarted, {sessions} sessions; {} ops acknowledged, {} found in the log \
                 (no gaps), {} duplicates, counter {}; observers (every number once, in \
                 order): {seen:?}",
                tally.acked, tally.found, tally.duplicates, tally.counter
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_during_writes_keeps_every_acked_op() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let redis = RedisServer::start();
            let a = Relay::node(&redis, &KEEP_WHOLE_LOG);
            let b = Relay::node(&redis, &KEEP_WHOLE_LOG);
            let shared = Arc::new(Shared::default());
            let (_ports, handles, watching) = devices(&[&a, &b], &shared);
            let mut restarts = Vec::new();
            for _ in 0..3 {
                let before = shared.acked.load(Ordering::SeqCst);
                acked_at_least(&shared, before + 100).await;
                restarts.push(shared.acked.load(Ordering::SeqCst));
                redis.restart();
            }
            let last = shared.acked.load(Ordering::SeqCst);
            acked_at_least(&shared, last + 100).await;
            let (tally, sessions, seen) = settle(&a, &b, &shared, handles, watching).await;
            println!(
                "redis restart: 4 writers on 2 nodes, Redis SIGKILLed and restarted after \
                 {restarts:?} acks, {sessions} sessions; {} ops acknowledged, {} found in the \
                 log (no gaps), {} duplicates, counter {}; observers (every number once, in \
                 order): {seen:?}",
                tally.acked, tally.found, tally.duplicates, tally.counter
            );
        })
        .await;
}

/// The seqs of the ops in `messages`.
fn seqs(messages: &[ServerMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Ops(body) => Some(body.ops.iter().map(|s| s.seq).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Reads messages up to and including the first that `last` matches.
async fn read_until(
    client: &mut Client,
    last: impl Fn(&ServerMessage) -> bool,
) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    loop {
        let message = client.next().await.expect("the socket stays open");
        let done = last(&message);
        messages.push(message);
        if done {
            return messages;
        }
    }
}

/// Node A's reader lags ten seconds behind node B's commits (the relay's
/// fault-injection flag), longer than the test. What A answers must still
/// account for what Redis holds: a pong and an ack come after every op of
/// the device's streams committed before, a pull says the store's head,
/// and a device moving to A with a cursor past A's lagging head gets ops,
/// not a snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_node_answers_with_what_the_store_holds() {
    let redis = RedisServer::start();
    let a = Relay::node(&redis, &["--follow-delay-ms", "10000"]);
    let b = Relay::node(&redis, &[]);
    let mut on_a = Client::connect(&a, &main_rw(), Some(0)).await;
    let mut on_b = Client::writer(&b, &main_rw()).await;
    let mut device = Device::new(1);
    on_b.push(vec![device.count(1), device.count(2)]).await;

    on_a.send(&ClientMessage::Ping(Ping { at: 7 })).await;
    let before_pong = read_until(&mut on_a, |m| matches!(m, ServerMessage::Pong(_))).await;
    assert_eq!(
        seqs(&before_pong),
        [1, 2],
        "the ops B committed come before A's pong"
    );

    // B commits op 3 of the apartment; the device on A writes a global key
    // (another stream: no conflict on the apartment's to bring op 3 along).
    on_b.push(vec![device.count(3)]).await;
    let mut other = Device::new(2);
    on_a.send(&ClientMessage::Push(Push {
        ops: vec![other.theme("dark")],
    }))
    .await;
    let before_ack = read_until(&mut on_a, |m| matches!(m, ServerMessage::Ack(_))).await;
    assert_eq!(seqs(&before_ack), [3], "B's op 3 comes before A's ack");

    on_b.push(vec![device.count(4)]).await;
    let pulled = main_pull(&a, 3).await;
    assert!(
        matches!(pulled, ServerMessage::Ops(ref page) if page.head == 4 && page.ops.len() == 1),
        "a pull from A brings B's op 4 and says the store's head: {pulled:?}"
    );

    on_b.push(vec![device.count(5)]).await;
    let mut moved = Client::connect(&a, &main_rw(), Some(5)).await;
    let first = read_until(&mut moved, |m| {
        matches!(m, ServerMessage::Ops(_) | ServerMessage::Snapshot(_))
    })
    .await;
    assert!(
        matches!(first.last(), Some(ServerMessage::Ops(body)) if body.head == 5 && body.ops.is_empty()),
        "a cursor at the store's head needs nothing: {first:?}"
    );
}

/// A tab's owner is the store's, not a node's: a peer on node A (whose
/// reader lags behind, so A has not applied what B committed) cannot take
/// the next op id of a tab whose first op another subject pushed on B.
#[tokio::test(flavor = "multi_thread")]
async fn a_tab_owned_on_one_node_cannot_be_taken_on_another() {
    let redis = RedisServer::start();
    let a = Relay::node(&redis, &["--follow-delay-ms", "10000"]);
    let b = Relay::node(&redis, &[]);
    let mut alice = Client::writer(&b, &main_rw_as("alice")).await;
    let mut mallory = Client::writer(&a, &main_rw_as("mallory")).await;
    let (mut victim, mut squatter) = (Device::new(7), Device::new(7));
    let acks = alice.push(vec![victim.note("one")]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { seq: 1, .. }),
        "{acks:?}"
    );
    let _ = squatter.count(1);
    let acks = mallory.push(vec![squatter.count(1)]).await;
    assert!(
        matches!(&acks[0].status, AckStatus::Refused { code, .. } if code == gaesup_protocol::code::TAB_TAKEN),
        "{acks:?}"
    );
    let acks = alice.push(vec![victim.note("two")]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { seq: 2, .. }),
        "{acks:?}"
    );
}

/// A claim lost between reading a tab's owner and claiming it (node A
/// holds its claims back: fault injection; another subject claims the
/// same new tab through node B meanwhile) sends A's stream back: the op
/// and a second copy of it in the same push are both refused as
/// `tab_taken` (no duplicate left pointing at a number never committed),
/// while an op of another stream in the same push is committed.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_lost_to_another_node_sends_its_stream_back() {
    let redis = RedisServer::start();
    let a = Relay::node(&redis, &["--claim-delay-ms", "1500"]);
    let b = Relay::node(&redis, &[]);
    let mut alice = Client::writer(&a, &main_rw_as("alice")).await;
    let mut bob = Client::writer(&b, &main_rw_as("bob")).await;
    // Both nodes hold both streams already: A reads the new tab's owner
    // (none) at once, well before B can claim it.
    for (client, tab) in [(&mut alice, 41), (&mut bob, 42)] {
        let mut warm = Device::new(tab);
        let acks = client
            .push(vec![warm.note("warm"), warm.theme("light")])
            .await;
        assert!(
            acks.iter()
                .all(|ack| matches!(ack.status, AckStatus::Applied { .. })),
            "{acks:?}"
        );
    }
    let (mut mine, mut theirs) = (Device::new(31), Device::new(31));
    let note = mine.note("mine");
    let theme = Device::new(32).theme("dark");
    alice
        .send(&ClientMessage::Push(Push {
            ops: vec![note.clone(), note, theme],
        }))
        .await;
    // Bob's op of the same tab (its next number) goes in through B while
    // A holds its claim.
    let _ = theirs.count(1);
    let acks = bob.push(vec![theirs.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    let ServerMessage::Ack(acks) = alice.wait_for(|m| matches!(m, ServerMessage::Ack(_))).await
    else {
        unreachable!("wait_for returns an ack");
    };
    let taken = |status: &AckStatus| matches!(status, AckStatus::Refused { code, .. } if code == gaesup_protocol::code::TAB_TAKEN);
    assert!(
        taken(&acks.acks[0].status) && taken(&acks.acks[1].status),
        "{acks:?}"
    );
    assert!(
        matches!(acks.acks[2].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
}

/// A node counts the bytes other nodes commit to the streams it holds:
/// node B, which held the stream before node A wrote most of its log,
/// trims the log by bytes at the op of its own that takes the log past
/// the bound, and both nodes then serve the log from there.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_trims_by_the_bytes_other_nodes_committed() {
    let redis = RedisServer::start();
    let args = ["--log-keep", "1000", "--log-keep-bytes", "8000"];
    let (a, b) = (Relay::node(&redis, &args), Relay::node(&redis, &args));
    let mut follower = Client::connect(&b, &main_rw(), Some(0)).await;
    let mut on_a = Client::writer(&a, &main_rw()).await;
    let mut log = KeptLog::new(1000, 8000);
    let mut device = Device::new(1);
    let last = loop {
        let op = device.note(&format!("{}{}", log.head(), "x".repeat(1_500)));
        if log.would_trim(stored_len(&op)) {
            break op;
        }
        log.commit(stored_len(&op));
        let acks = on_a.push(vec![op]).await;
        assert!(
            matches!(acks[0].status, AckStatus::Applied { .. }),
            "{acks:?}"
        );
    };
    // B has applied all of them (from its reader, as it follows the stream).
    follower.ops_in_order(log.head()).await;
    let first = log.first();
    log.commit(stored_len(&last));
    assert!(log.first() > first, "the op trims the log");
    let mut on_b = Client::writer(&b, &main_rw()).await;
    let acks = on_b.push(vec![last]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { seq, .. } if seq == log.head()),
        "{acks:?}"
    );
    main_log_holds(&b, log.first(), log.head()).await;
    main_log_holds(&a, log.first(), log.head()).await;
}
