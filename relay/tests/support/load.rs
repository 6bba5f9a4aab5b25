//! Writers that keep pushing counter increments through relays that die
//! under them, observers following the stream through the same deaths, and
//! the check afterwards: every acknowledged op in the log exactly once,
//! numbers without gaps, the counter exact, and every observer got each
//! number once, in order, and ended with the same counter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gaesup_protocol::{AckStatus, ClientMessage, Hello, Push, ServerMessage, Subscription};
use gaesup_state_core::{Op, OpId};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Device, Relay, http, lobby, main_rw, main_rw_as, main_snapshot, main_stream};

/// Arguments for a relay whose whole log [`check`] reads afterwards: the
/// writers push as fast as the machine lets them, so a run can pass the
/// default of 10,000 ops kept (or of 64 MiB), and a trimmed log answers
/// with a snapshot.
pub const KEEP_WHOLE_LOG: [&str; 4] = [
    "--log-keep",
    "100000000",
    "--log-keep-bytes",
    "100000000000",
];

/// What a writer saw acknowledged: op id → delta.
pub type Acked = BTreeMap<OpId, i64>;

/// What the writers share: whether to stop, and how many ops were
/// acknowledged so far (to time a fault).
#[derive(Default)]
pub struct Shared {
    pub done: AtomicBool,
    pub acked: AtomicUsize,
    /// Set once the writers are done: the head observers must reach.
    pub final_head: AtomicU64,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket to the relay whose port `port` holds now, hello said (as
/// `client`, a token subject of its own, following `subscribe`: the
/// relay's rate budget is per subject, and each writer here pushes as fast
/// as it can); `None` if it cannot be reached (after
/// a short pause, so a caller looping on it does not spin) or closed at
/// once.
async fn open(port: &AtomicU16, client: String, subscribe: Vec<Subscription>) -> Option<Socket> {
    let url = format!("ws://127.0.0.1:{}/v1/ws", port.load(Ordering::SeqCst));
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
        tokio::time::sleep(Duration::from_millis(20)).await;
        return None;
    };
    let hello = ClientMessage::Hello(Hello {
        token: Some(main_rw_as(&client)),
        client,
        subscribe,
    });
    socket
        .send(Message::text(hello.encode().unwrap()))
        .await
        .ok()?;
    Some(socket)
}

/// A device pushing increments (three at a time, kept until
/// acknowledged) to the relay whose port `port` holds, reconnecting
/// (there, or wherever `port` moved) whenever the connection dies.
/// Returns what was acknowledged and how many sessions it took.
pub async fn writer(id: u64, port: Arc<AtomicU16>, shared: Arc<Shared>) -> (Acked, usize) {
    let mut device = Device::new(id);
    let mut outbox: Vec<(Op, i64)> = Vec::new();
    let mut acked = Acked::new();
    let mut made = 0;
    let mut reconnects = 0;
    'session: loop {
        if shared.done.load(Ordering::SeqCst) && outbox.is_empty() {
            break;
        }
        let Some(mut socket) = open(&port, format!("writer-{id}"), Vec::new()).await else {
            continue;
        };
        reconnects += 1;
        loop {
            // Fill the outbox, a few ops at a time (made before they are
            // sent, as a device does offline).
            while outbox.len() < 3 && !shared.done.load(Ordering::SeqCst) {
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
                            shared.acked.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // Refused only because the relay was going down or
                    // its store was unreachable: resend.
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

/// What an observer saw.
#[derive(Debug)]
pub struct Observed {
    /// Connections it took.
    pub sessions: usize,
    /// Ops it received live or in catch-up.
    pub ops: usize,
    /// Snapshots it received (a cursor behind the log).
    pub snapshots: usize,
    /// Its counter at the end.
    pub counter: serde_json::Value,
}

/// A device following the stream on the relay whose port `port` holds,
/// through deaths of that relay (it reconnects from its cursor, wherever
/// `port` moved), until the writers are done and it reached their final
/// head. Panics if any session brings a number other than the next one
/// (a gap, a duplicate, an op out of order).
pub async fn observer(id: u64, port: Arc<AtomicU16>, shared: Arc<Shared>) -> Observed {
    let mut device = Device::new(id);
    let mut cursor = 0u64;
    let mut seen = Observed {
        sessions: 0,
        ops: 0,
        snapshots: 0,
        counter: json!(null),
    };
    'session: loop {
        let target = shared.final_head.load(Ordering::SeqCst);
        if shared.done.load(Ordering::SeqCst) && target > 0 && cursor >= target {
            break;
        }
        let subscribe = vec![Subscription {
            stream: main_stream(),
            cursor: Some(cursor),
            after: None,
        }];
        let Some(mut socket) = open(&port, format!("observer-{id}"), subscribe).await else {
            continue;
        };
        seen.sessions += 1;
        loop {
            let target = shared.final_head.load(Ordering::SeqCst);
            if shared.done.load(Ordering::SeqCst) && target > 0 && cursor >= target {
                break 'session;
            }
            let frame = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
            let text = match frame {
                Err(_) => continue,
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => continue 'session,
            };
            match ServerMessage::decode(text.as_str()).unwrap() {
                ServerMessage::Ops(body) => {
                    for sequenced in body.ops {
                        assert_eq!(
                            sequenced.seq,
                            cursor + 1,
                            "observer {id}: after {cursor} came {} (a gap, a duplicate or \
                             out of order)",
                            sequenced.seq
                        );
                        device.store.apply_remote(&sequenced.op).unwrap();
                        cursor = sequenced.seq;
                        seen.ops += 1;
                    }
                }
                ServerMessage::Snapshot(snapshot) => {
                    for entry in &snapshot.states {
                        device.store.merge_state(entry).unwrap();
                    }
                    cursor = snapshot.seq;
                    seen.snapshots += 1;
                }
                ServerMessage::Ping(ping) => {
                    let pong = ClientMessage::Pong(ping);
                    let _ = socket.send(Message::text(pong.encode().unwrap())).await;
                }
                _ => {}
            }
        }
    }
    let key = device.key("count");
    seen.counter = device.store.get_value(&lobby(), &key).unwrap();
    seen
}

/// Once the writers are done: tells the observers the final head (what
/// `relay`'s log holds) and gathers what they saw; each must end with
/// `counter`.
pub async fn observed(
    relay: &Relay,
    shared: &Shared,
    observers: Vec<tokio::task::JoinHandle<Observed>>,
    counter: i64,
) -> Vec<Observed> {
    let head = whole_log(relay).await.len() as u64;
    shared.final_head.store(head.max(1), Ordering::SeqCst);
    let mut all = Vec::new();
    for observer in observers {
        let seen = tokio::time::timeout(Duration::from_secs(60), observer)
            .await
            .expect("the observers reach the head")
            .unwrap();
        assert_eq!(
            seen.counter,
            json!(counter),
            "an observer's counter: {seen:?}"
        );
        all.push(seen);
    }
    all
}

/// Waits until the writers have had `n` ops acknowledged in all.
pub async fn acked_at_least(shared: &Shared, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while shared.acked.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers stalled at {} acknowledged ops",
            shared.acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops the writers once their outboxes are empty and gathers what they
/// saw acknowledged, and their sessions.
pub async fn finish(
    shared: &Shared,
    writers: Vec<tokio::task::JoinHandle<(Acked, usize)>>,
) -> (Acked, usize) {
    shared.done.store(true, Ordering::SeqCst);
    let mut acked = Acked::new();
    let mut sessions = 0;
    for writer in writers {
        let (theirs, n) = tokio::time::timeout(Duration::from_secs(120), writer)
            .await
            .expect("the writers finish")
            .unwrap();
        sessions += n;
        acked.extend(theirs);
    }
    (acked, sessions)
}

/// What the log holds, from the start, as `relay` serves it.
pub async fn whole_log(relay: &Relay) -> Vec<(u64, Op)> {
    let mut found = Vec::new();
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
        let page = match ServerMessage::decode(&body).unwrap() {
            ServerMessage::Ops(page) => page,
            ServerMessage::Snapshot(_) => panic!(
                "the relay trimmed its log before seq {}: start it with KEEP_WHOLE_LOG",
                cursor + 1
            ),
            other => panic!("a pull answered {other:?}"),
        };
        if page.ops.is_empty() {
            break;
        }
        for sequenced in page.ops {
            cursor = sequenced.seq;
            found.push((sequenced.seq, sequenced.op));
        }
    }
    found
}

/// What the check found.
#[derive(Debug)]
pub struct Tally {
    /// Ops the writers saw acknowledged.
    pub acked: usize,
    /// Ops in the log.
    pub found: usize,
    /// Op ids in the log more than once.
    pub duplicates: usize,
    /// The counter's value (equal to the sum of acknowledged deltas).
    pub counter: i64,
}

/// Asserts that `relay` serves every acknowledged op exactly once, with
/// numbers 1..=n without gaps, and a counter equal to the acknowledged
/// increments.
pub async fn check(relay: &Relay, acked: &Acked) -> Tally {
    let found = whole_log(relay).await;
    let seqs: Vec<u64> = found.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=found.len() as u64).collect::<Vec<_>>(),
        "numbers without gaps"
    );
    let ids: BTreeSet<OpId> = found.iter().map(|(_, op)| op.id).collect();
    let duplicates = found.len() - ids.len();
    assert_eq!(duplicates, 0, "every op once");
    let missing: Vec<&OpId> = acked.keys().filter(|id| !ids.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let expected: i64 = acked.values().sum();
    let snapshot = main_snapshot(relay).await;
    let mut replica = Device::new(99);
    for entry in &snapshot.states {
        replica.store.merge_state(entry).unwrap();
    }
    let key = replica.key("count");
    assert_eq!(
        replica.store.get_value(&lobby(), &key).unwrap(),
        json!(expected),
        "the counter is every acknowledged increment"
    );
    Tally {
        acked: acked.len(),
        found: found.len(),
        duplicates,
        counter: expected,
    }
}
