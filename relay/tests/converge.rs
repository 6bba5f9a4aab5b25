//! Devices writing through the relay in a random order, disconnecting and
//! coming back from their cursors (some after the log was trimmed past
//! them), converge to the relay's state: byte-equal states, the counter
//! equal to every increment made. On the embedded store with one relay,
//! and on Redis with two relay nodes, each device reconnecting to either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gaesup_protocol::{AckStatus, ServerMessage};
use gaesup_state_core::Op;
use serde_json::json;
use support::{Client, Device, RedisServer, Relay, main_pull, main_rw, main_snapshot};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Sim {
    device: Device,
    client: Option<Client>,
    cursor: u64,
    outbox: Vec<Op>,
    /// Sockets the relay closed (not the device going offline).
    closed_by_relay: usize,
}

impl Sim {
    /// Applies whatever the relay sent, moving the cursor.
    fn absorb(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Ops(body) => {
                let empty = body.ops.is_empty();
                for sequenced in body.ops {
                    assert_eq!(
                        sequenced.seq,
                        self.cursor + 1,
                        "after {} came {}: a gap, a duplicate or out of order",
                        self.cursor,
                        sequenced.seq
                    );
                    // Own ops come back too; applying them again is a no-op.
                    self.device.store.apply_remote(&sequenced.op).unwrap();
                    self.cursor = sequenced.seq;
                }
                // Nothing readable up to the head (a chunk of catch-up
                // always carries ops).
                if empty {
                    self.cursor = self.cursor.max(body.head);
                }
            }
            ServerMessage::Snapshot(snapshot) => {
                for entry in &snapshot.states {
                    self.device.store.merge_state(entry).unwrap();
                }
                self.cursor = snapshot.seq;
            }
            ServerMessage::Ack(acks) => {
                for ack in acks.acks {
                    match ack.status {
                        AckStatus::Applied { .. } | AckStatus::Duplicate { .. } => {
                            self.outbox.retain(|op| op.id != ack.op);
                        }
                        // Redis busy or away: sent again with the outbox.
                        AckStatus::Refused { code, .. }
                            if code == gaesup_protocol::code::STORAGE => {}
                        AckStatus::Refused { code, message } => panic!("{code}: {message}"),
                    }
                }
            }
            _ => {}
        }
    }

    /// Reads what arrived; a socket the relay closed (a slow consumer, or
    /// a node that could not forward what its log no longer holds) leaves
    /// the device offline, to come back from its cursor.
    async fn drain(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let mut messages = Vec::new();
        let mut closed = false;
        loop {
            match tokio::time::timeout(Duration::from_millis(5), client.next()).await {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        for message in messages {
            self.absorb(message);
        }
        if closed {
            self.client = None;
            self.closed_by_relay += 1;
        }
    }

    /// Sends the whole outbox again (the relay acknowledges resends as
    /// duplicates).
    async fn push_outbox(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let push = gaesup_protocol::ClientMessage::Push(gaesup_protocol::Push {
            ops: self.outbox.clone(),
        });
        if !client.try_send(&push).await {
            self.client = None;
            self.closed_by_relay += 1;
        }
    }
}

async fn run(seed: u64, nodes: &[Relay]) {
    let mut rng = Rng(seed);
    let mut sims: Vec<Sim> = (0..3)
        .map(|i| Sim {
            device: Device::new(seed * 10 + i + 1),
            client: None,
            cursor: 0,
            outbox: Vec::new(),
            closed_by_relay: 0,
        })
        .collect();
    let mut expected = 0i64;
    for _ in 0..150 {
        let sim = &mut sims[rng.below(3) as usize];
        match rng.below(10) {
            0..=4 => {
                let delta = rng.below(9) as i64 - 4;
                expected += delta;
                let op = if rng.below(3) == 0 {
                    sim.device.note(&format!("note {}", rng.below(100)))
                } else {
                    sim.device.count(delta)
                };
                if !matches!(op.payload, gaesup_state_core::Payload::Count { .. }) {
                    expected -= delta;
                }
                sim.outbox.push(op);
                sim.push_outbox().await;
            }
            5..=6 => sim.drain().await,
            7 => {
                // Offline.
                sim.drain().await;
                sim.client = None;
            }
            _ => {
                if sim.client.is_none() {
                    let relay = &nodes[rng.below(nodes.len() as u64) as usize];
                    sim.client = Some(Client::connect(relay, &main_rw(), Some(sim.cursor)).await);
                    if !sim.outbox.is_empty() {
                        sim.push_outbox().await;
                    }
                }
            }
        }
    }
    // Everyone back, outboxes flushed, caught up to the head.
    let relay = &nodes[0];
    let deadline = std::time::Instant::now() + support::DEADLINE;
    let head = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: the devices did not catch up"
        );
        for (i, sim) in sims.iter_mut().enumerate() {
            if sim.client.is_none() {
                let node = &nodes[i % nodes.len()];
                sim.client = Some(Client::connect(node, &main_rw(), Some(sim.cursor)).await);
            }
            if !sim.outbox.is_empty() {
                sim.push_outbox().await;
            }
            sim.drain().await;
        }
        let head = match main_pull(relay, 0).await {
            ServerMessage::Ops(body) => body.head,
            ServerMessage::Snapshot(snapshot) => snapshot.seq,
            other => panic!("{other:?}"),
        };
        if sims.iter().all(|s| s.outbox.is_empty() && s.cursor == head) {
            break head;
        }
    };
    let snapshot = main_snapshot(relay).await;
    assert_eq!(snapshot.seq, head);
    for node in &nodes[1..] {
        let other = main_snapshot(node).await;
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            serde_json::to_string(&snapshot).unwrap(),
            "seed {seed}: the relay nodes' canonical states differ"
        );
    }
    for (i, sim) in sims.iter().enumerate() {
        if nodes.len() == 1 {
            // One node never has a reason to close a device's socket here
            // (its queue is far from full; nothing is trimmed from under a
            // fan-out).
            assert_eq!(
                sim.closed_by_relay, 0,
                "seed {seed}: device {i}'s socket was closed"
            );
        }
        for entry in &snapshot.states {
            assert_eq!(
                serde_json::to_string(sim.device.store.state(&entry.key).unwrap()).unwrap(),
                serde_json::to_string(&entry.state).unwrap(),
                "seed {seed}: device {i} differs from the relay on {}",
                entry.key
            );
        }
        let key = sim.device.key("count");
        assert_eq!(
            sim.device.store.get_value(&support::lobby(), &key).unwrap(),
            json!(expected),
            "seed {seed}: device {i}'s counter"
        );
    }
}

/// Seeds the test command runs (about 10 s); `RELAY_SIM_SEEDS=200` runs more.
const DEFAULT_SEEDS: u64 = 16;

fn seeds() -> u64 {
    std::env::var("RELAY_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_converge_to_the_relays_state_whatever_the_order() {
    for seed in 0..seeds() {
        let relay = Relay::start(&["--log-keep", "16"]);
        tokio::task::LocalSet::new()
            .run_until(run(seed, std::slice::from_ref(&relay)))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_on_two_relay_nodes_sharing_redis_converge_whatever_the_order() {
    for seed in 0..seeds() {
        let redis = RedisServer::start();
        let nodes = [
            Relay::node(&redis, &["--log-keep", "16"]),
            Relay::node(&redis, &["--log-keep", "16"]),
        ];
        tokio::task::LocalSet::new()
            .run_until(run(seed, &nodes))
            .await;
    }
}
