//! The relay killed with SIGKILL, over and over, while three writers push:
//! afterwards every acknowledged op is in the log exactly once, the
//! numbers have no gaps, and the counter is exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gaesup_protocol::{AckStatus, ClientMessage, Hello, Push, ServerMessage};
use gaesup_state_core::{Op, OpId};
use serde_json::json;
use support::{Device, Relay, http, main_rw, main_snapshot};
use tokio_tungstenite::tungstenite::Message;

const KILLS: usize = 25;

/// What a writer saw acknowledged: op id → delta.
type Acked = BTreeMap<OpId, i64>;

async fn writer(id: u64, port: Arc<AtomicU16>, done: Arc<AtomicBool>) -> (Acked, usize) {
    let mut device = Device::new(id);
    let mut outbox: Vec<(Op, i64)> = Vec::new();
    let mut acked = Acked::new();
    let mut made = 0;
    let mut reconnects = 0;
    'session: loop {
        if done.load(Ordering::SeqCst) && outbox.is_empty() {
            break;
        }
        let url = format!("ws://127.0.0.1:{}/v1/ws", port.load(Ordering::SeqCst));
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        reconnects += 1;
        let hello = ClientMessage::Hello(Hello {
            client: format!("writer-{id}"),
            token: Some(main_rw()),
            subscribe: Vec::new(),
        });
        if socket
            .send(Message::text(hello.encode().unwrap()))
            .await
            .is_err()
        {
            continue;
        }
        loop {
            // Fill the outbox, a few ops at a time (made before they are
            // sent, as a device does offline).
            while outbox.len() < 3 && !done.load(Ordering::SeqCst) {
                let delta = (made % 7) as i64 + 1;
                outbox.push((device.count(delta), delta));
                made += 1;
            }
            if outbox.is_empty() {
                break 'session;
            }
            let push = ClientMessage::Push(Push {
                ops: outbox.iter().map(|(op, _)| op.clone()).collect(),
            });
            if socket
                .send(Message::text(push.encode().unwrap()))
                .await
                .is_err()
            {
                continue 'session;
            }
            // Wait for the acks (or the connection's death).
            let acks = loop {
                let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
                let Ok(Some(Ok(Message::Text(text)))) = frame else {
                    continue 'session;
                };
                match ServerMessage::decode(text.as_str()).unwrap() {
                    ServerMessage::Ack(acks) => break acks.acks,
                    ServerMessage::Ping(ping) => {
                        let pong = ClientMessage::Pong(ping);
                        let _ = socket.send(Message::text(pong.encode().unwrap())).await;
                    }
                    _ => {}
                }
            };
            for ack in acks {
                match ack.status {
                    AckStatus::Applied { .. } | AckStatus::Duplicate { .. } => {
                        if let Some(at) = outbox.iter().position(|(op, _)| op.id == ack.op) {
                            let (_, delta) = outbox.remove(at);
                            acked.insert(ack.op, delta);
                        }
                    }
                    // Refused only because the relay was going down:
                    // resend.
                    AckStatus::Refused { code, message } => {
                        assert!(
                            code == gaesup_protocol::code::STORAGE
                                || code == gaesup_protocol::code::SHUTTING_DOWN,
                            "{code}: {message}"
                        );
                    }
                }
            }
        }
    }
    (acked, reconnects)
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_ops_survive_repeated_sigkills() {
    // Devices hold a core replica, which is single-owner: local tasks.
    tokio::task::LocalSet::new().run_until(crash_test()).await;
}

async fn crash_test() {
    let mut relay = Relay::start(&[]);
    let port = Arc::new(AtomicU16::new(relay.port));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=3)
        .map(|id| tokio::task::spawn_local(writer(id, Arc::clone(&port), Arc::clone(&done))))
        .collect();
    // Writers push the whole time; the relay dies under them.
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(60 + (kill as u64 * 37) % 140)).await;
        relay.restart();
        port.store(relay.port, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::SeqCst);
    let mut acked = Acked::new();
    let mut reconnects = 0;
    for writer in writers {
        let (theirs, sessions) = tokio::time::timeout(Duration::from_secs(120), writer)
            .await
            .expect("the writers finish")
            .unwrap();
        reconnects += sessions;
        acked.extend(theirs);
    }
    // The whole log, from the start.
    let mut found: Vec<(u64, Op)> = Vec::new();
    let mut cursor = 0;
    loop {
        let (status, body) = http(
            "GET",
            relay.url(&format!("/v1/pull?stream=apartment:main&cursor={cursor}")),
            Some(main_rw()),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let ServerMessage::Ops(page) = ServerMessage::decode(&body).unwrap() else {
            panic!("{body}")
        };
        if page.ops.is_empty() {
            break;
        }
        for sequenced in page.ops {
            cursor = sequenced.seq;
            found.push((sequenced.seq, sequenced.op));
        }
    }
    let seqs: Vec<u64> = found.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=found.len() as u64).collect::<Vec<_>>(),
        "numbers without gaps"
    );
    let ids: BTreeSet<OpId> = found.iter().map(|(_, op)| op.id).collect();
    assert_eq!(ids.len(), found.len(), "every op once");
    let missing: Vec<&OpId> = acked.keys().filter(|id| !ids.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(acked.len() > 3 * KILLS, "the writers kept writing");
    // The counter is exact.
    let expected: i64 = acked.values().sum();
    let snapshot = main_snapshot(&relay).await;
    let mut replica = Device::new(99);
    for entry in &snapshot.states {
        replica.store.merge_state(entry).unwrap();
    }
    let key = replica.key("count");
    assert_eq!(
        replica.store.get_value(&support::lobby(), &key).unwrap(),
        json!(expected)
    );
    println!(
        "crash test: {KILLS} SIGKILLs, {} sessions, {} ops acknowledged, {} found in the log \
         (numbers 1..={}, no gaps, no duplicates), counter {expected}",
        reconnects,
        acked.len(),
        found.len(),
        found.len()
    );
}
