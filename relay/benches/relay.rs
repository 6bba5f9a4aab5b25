//! Relay benchmarks (`cargo bench -p gaesup-relay --bench relay`): the
//! release binary on loopback with its durable default store, measured from
//! outside like a device would. Writes `target/bench/relay.json`; never
//! asserts.
//!
//! - acknowledged ops per second, 16 writers pushing batches of 32;
//! - push → ack latency of one op at a time (p50, p95, p99), commit
//!   included;
//! - deliveries per second, one writer and 200 subscribers;
//! - sockets one node holds (hello + subscription each) and its memory;
//! - time for a device 10,000 ops behind to catch up;
//! - the same acked ops/s, and push → delivery to another device (p50,
//!   p95), on the embedded store, on Redis with one node, and on Redis with
//!   two nodes (writers on both, the reader on the other node), each with
//!   its own `redis-server` (AOF, `appendfsync always`);
//! - the time for a device whose node is SIGKILLed to resume on the other
//!   node: from the kill to the first op it receives there;
//! - a device resending 511 ops the relay already holds (its acks were
//!   lost) and one other op under a held id, each read back to tell the
//!   same op from another one: push → acks, on the embedded store and on
//!   Redis.
//!
//! Names given as arguments (`-- resend`, any of `SECTIONS`) run those
//! sections alone and print them without writing `relay.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gaesup_protocol::{Acks, ClientMessage, Hello, Push, ServerMessage, Subscription};
use gaesup_state_core::Op;
use serde_json::json;
use support::{Device, RedisServer, Relay, main_rw, main_stream};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(relay: &Relay, subscribe: bool, cursor: Option<u64>) -> Socket {
    // TCP_NODELAY, as browsers set it on their sockets.
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(relay.ws_url(), None, true)
        .await
        .unwrap();
    let hello = ClientMessage::Hello(Hello {
        client: "bench".into(),
        token: Some(main_rw()),
        subscribe: if subscribe {
            vec![Subscription {
                stream: main_stream(),
                cursor,
                after: None,
            }]
        } else {
            Vec::new()
        },
    });
    socket
        .send(Message::text(hello.encode().unwrap()))
        .await
        .unwrap();
    socket
}

/// Reads until a message matches.
async fn until(socket: &mut Socket, wanted: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
    loop {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("socket closed");
        };
        let message = ServerMessage::decode(text.as_str()).unwrap();
        if wanted(&message) {
            return message;
        }
    }
}

/// Pushes `ops` and waits for their acks.
async fn push(socket: &mut Socket, ops: Vec<Op>) -> Acks {
    let push = ClientMessage::Push(Push { ops });
    socket
        .send(Message::text(push.encode().unwrap()))
        .await
        .unwrap();
    let ServerMessage::Ack(acks) = until(socket, |m| matches!(m, ServerMessage::Ack(_))).await
    else {
        unreachable!("until returns an ack");
    };
    acks
}

fn ops(device: u64, n: usize) -> Vec<Op> {
    let mut device = Device::new(device);
    (0..n).map(|_| device.count(1)).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

async fn throughput() -> serde_json::Value {
    let relay = Relay::start(&["--max-ops-per-second", "1000000", "--log-keep", "1000000"]);
    throughput_on(&[&relay]).await
}

/// 16 writers pushing batches of 32, spread over `nodes`.
async fn throughput_on(nodes: &[&Relay]) -> serde_json::Value {
    const WRITERS: u64 = 16;
    const BATCH: usize = 32;
    const PUSHES: usize = 40;
    let batches: Vec<Vec<Vec<Op>>> = (0..WRITERS)
        .map(|w| {
            ops(w + 1, BATCH * PUSHES)
                .chunks(BATCH)
                .map(<[Op]>::to_vec)
                .collect()
        })
        .collect();
    let mut sockets = Vec::new();
    for w in 0..WRITERS {
        let relay = nodes[w as usize % nodes.len()];
        let mut socket = connect(relay, false, None).await;
        until(&mut socket, |m| matches!(m, ServerMessage::Welcome(_))).await;
        sockets.push(socket);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(batches)
        .map(|(mut socket, batches)| {
            tokio::spawn(async move {
                for ops in batches {
                    push(&mut socket, ops).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let total = WRITERS as f64 * (BATCH * PUSHES) as f64;
    json!({"writers": WRITERS, "batch": BATCH, "ops": total, "seconds": seconds, "ops_per_second": total / seconds})
}

async fn latency() -> serde_json::Value {
    let relay = Relay::start(&["--max-ops-per-second", "1000000"]);
    let mut socket = connect(&relay, false, None).await;
    until(&mut socket, |m| matches!(m, ServerMessage::Welcome(_))).await;
    let mut samples = Vec::new();
    for op in ops(1, 2_000) {
        let started = Instant::now();
        push(&mut socket, vec![op]).await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    json!({
        "samples": samples.len(),
        "p50_ms": percentile(&samples, 0.50),
        "p95_ms": percentile(&samples, 0.95),
        "p99_ms": percentile(&samples, 0.99),
    })
}

async fn fanout() -> serde_json::Value {
    const SUBSCRIBERS: usize = 200;
    const OPS: usize = 2_000;
    let relay = Relay::start(&["--max-ops-per-second", "1000000", "--send-queue", "4096"]);
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut socket = connect(&relay, true, Some(0)).await;
        until(&mut socket, |m| matches!(m, ServerMessage::Welcome(_))).await;
        readers.push(socket);
    }
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < OPS as u64 {
                    if let ServerMessage::Ops(body) =
                        until(&mut socket, |m| matches!(m, ServerMessage::Ops(_))).await
                    {
                        seen = body.ops.last().map_or(seen, |s| s.seq);
                    }
                }
            })
        })
        .collect();
    let mut writer = connect(&relay, false, None).await;
    until(&mut writer, |m| matches!(m, ServerMessage::Welcome(_))).await;
    let started = Instant::now();
    for chunk in ops(1, OPS).chunks(50) {
        push(&mut writer, chunk.to_vec()).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let deliveries = (SUBSCRIBERS * OPS) as f64;
    json!({"subscribers": SUBSCRIBERS, "ops": OPS, "seconds": seconds, "deliveries_per_second": deliveries / seconds})
}

async fn sockets() -> serde_json::Value {
    // Every socket has the one token (one subject): the subject's share
    // of the node is as large as the node's.
    let relay = Relay::start(&[
        "--max-connections",
        "100000",
        "--max-connections-per-subject",
        "100000",
    ]);
    let pid = relay.pid();
    let idle = rss_kib(pid);
    let mut held = Vec::new();
    let mut steps = Vec::new();
    let mut broke = None;
    // Up to just below the 20,000 descriptors a process may open here
    // (`ulimit -n`): the bench holds one per socket, and so does the relay.
    for target in [500usize, 1_000, 2_000, 4_000, 8_000, 12_000, 16_000, 19_000] {
        while held.len() < target {
            match tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async(relay.ws_url()),
            )
            .await
            {
                Ok(Ok((mut socket, _))) => {
                    let hello = ClientMessage::Hello(Hello {
                        client: "idle".into(),
                        token: Some(main_rw()),
                        subscribe: vec![Subscription {
                            stream: main_stream(),
                            cursor: Some(0),
                            after: None,
                        }],
                    });
                    if socket
                        .send(Message::text(hello.encode().unwrap()))
                        .await
                        .is_err()
                    {
                        broke = Some(format!("send failed at {}", held.len()));
                        break;
                    }
                    held.push(socket);
                }
                Ok(Err(err)) => {
                    broke = Some(format!("connect failed at {}: {err}", held.len()));
                    break;
                }
                Err(_) => {
                    broke = Some(format!("connect timed out at {}", held.len()));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        steps.push(json!({"sockets": held.len(), "rss_mib": rss_kib(pid) as f64 / 1024.0}));
        if broke.is_some() {
            break;
        }
    }
    json!({"idle_rss_mib": idle as f64 / 1024.0, "steps": steps, "broke": broke})
}

async fn catch_up() -> serde_json::Value {
    const BEHIND: usize = 10_000;
    let relay = Relay::start(&["--max-ops-per-second", "1000000", "--log-keep", "20000"]);
    let mut writer = connect(&relay, false, None).await;
    until(&mut writer, |m| matches!(m, ServerMessage::Welcome(_))).await;
    for chunk in ops(1, BEHIND).chunks(500) {
        push(&mut writer, chunk.to_vec()).await;
    }
    let started = Instant::now();
    let mut reader = connect(&relay, true, Some(0)).await;
    let mut seen = 0;
    while seen < BEHIND as u64 {
        if let ServerMessage::Ops(body) =
            until(&mut reader, |m| matches!(m, ServerMessage::Ops(_))).await
        {
            seen = body.ops.last().map_or(seen, |s| s.seq);
        }
    }
    json!({"behind": BEHIND, "seconds": started.elapsed().as_secs_f64()})
}

/// Push → delivery: a writer on `from` pushes one op at a time, a reader on
/// `to` subscribed; the time from the push to the op reaching the reader.
async fn delivery_on(from: &Relay, to: &Relay) -> serde_json::Value {
    let mut reader = connect(to, true, Some(0)).await;
    until(&mut reader, |m| matches!(m, ServerMessage::Welcome(_))).await;
    let mut writer = connect(from, false, None).await;
    until(&mut writer, |m| matches!(m, ServerMessage::Welcome(_))).await;
    let mut samples = Vec::new();
    for op in ops(1, 1_000) {
        let id = op.id;
        let push = ClientMessage::Push(Push { ops: vec![op] });
        let started = Instant::now();
        writer
            .send(Message::text(push.encode().unwrap()))
            .await
            .unwrap();
        until(
            &mut reader,
            |m| matches!(m, ServerMessage::Ops(body) if body.ops.iter().any(|s| s.op.id == id)),
        )
        .await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        until(&mut writer, |m| matches!(m, ServerMessage::Ack(_))).await;
    }
    samples.sort_by(f64::total_cmp);
    json!({
        "samples": samples.len(),
        "p50_ms": percentile(&samples, 0.50),
        "p95_ms": percentile(&samples, 0.95),
    })
}

const FAST: [&str; 4] = ["--max-ops-per-second", "1000000", "--log-keep", "1000000"];

/// A device pushes 511 ops (among another device's), then pushes them all
/// again in one push with another op under the id of its first: the time
/// from that push to its acks, median of 5, on `relay`. Every resent op
/// must come back a duplicate and the other one refused (an op the relay
/// could not read back would pass as a duplicate too: the refusal shows
/// the reads worked).
async fn resend_on(relay: &Relay) -> serde_json::Value {
    const OPS: usize = 511;
    let mut socket = connect(relay, false, None).await;
    until(&mut socket, |m| matches!(m, ServerMessage::Welcome(_))).await;
    let mine = ops(1, OPS);
    let others = ops(2, OPS);
    for (a, b) in mine.chunks(32).zip(others.chunks(32)) {
        for batch in [a, b] {
            push(&mut socket, batch.to_vec()).await;
        }
    }
    let squat = Device::new(1).note("not the first op");
    assert_eq!(squat.id, mine[0].id);
    let mut resent = mine.clone();
    resent.push(squat);
    let mut samples = Vec::new();
    for _ in 0..5 {
        let ops = resent.clone();
        let started = Instant::now();
        let acks = push(&mut socket, ops).await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        let (squatted, resent) = acks.acks.split_last().unwrap();
        assert!(
            resent
                .iter()
                .all(|ack| matches!(ack.status, gaesup_protocol::AckStatus::Duplicate { .. })),
            "a resent op was not a duplicate"
        );
        assert!(
            matches!(&squatted.status, gaesup_protocol::AckStatus::Refused { code, .. } if code == gaesup_protocol::code::OP_ID_TAKEN),
            "the op under a taken id was not refused: {squatted:?}"
        );
    }
    samples.sort_by(f64::total_cmp);
    json!({"ops": OPS, "median_ms": percentile(&samples, 0.5)})
}

/// [`resend_on`] on the embedded store and on Redis with one node.
async fn resend() -> serde_json::Value {
    let embedded = resend_on(&Relay::start(&FAST)).await;
    let redis = RedisServer::start();
    let redis = resend_on(&Relay::node(&redis, &FAST)).await;
    json!({"embedded": embedded, "redis_1_node": redis})
}

/// Acked ops/s and push → delivery on each store: embedded, Redis with one
/// node, Redis with two nodes.
async fn stores() -> serde_json::Value {
    let embedded = {
        let relay = Relay::start(&FAST);
        let throughput = throughput_on(&[&relay]).await;
        let relay = Relay::start(&FAST);
        json!({"throughput": throughput, "delivery": delivery_on(&relay, &relay).await})
    };
    let one = {
        let relay = Relay::node(&RedisServer::start(), &FAST);
        let throughput = throughput_on(&[&relay]).await;
        let relay = Relay::node(&RedisServer::start(), &FAST);
        json!({"throughput": throughput, "delivery": delivery_on(&relay, &relay).await})
    };
    let two = {
        let redis = RedisServer::start();
        let (a, b) = (Relay::node(&redis, &FAST), Relay::node(&redis, &FAST));
        let throughput = throughput_on(&[&a, &b]).await;
        let redis = RedisServer::start();
        let (a, b) = (Relay::node(&redis, &FAST), Relay::node(&redis, &FAST));
        json!({"throughput": throughput, "delivery": delivery_on(&a, &b).await})
    };
    json!({"embedded": embedded, "redis_1_node": one, "redis_2_nodes": two})
}

/// A device subscribed on node B, a writer on node A pushing an op every
/// 2 ms; B is SIGKILLed; the device reconnects to A from its cursor. The
/// time from the kill to the first op the device receives on A (median and
/// worst of several kills).
async fn failover() -> serde_json::Value {
    const ROUNDS: usize = 10;
    let redis = RedisServer::start();
    let a = Relay::node(&redis, &FAST);
    let mut samples = Vec::new();
    let mut writer = connect(&a, false, None).await;
    until(&mut writer, |m| matches!(m, ServerMessage::Welcome(_))).await;
    let mut device = Device::new(1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushing = {
        let stop = std::sync::Arc::clone(&stop);
        let ops: Vec<Op> = (0..200_000).map(|_| device.count(1)).collect();
        tokio::spawn(async move {
            for op in ops {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                push(&mut writer, vec![op]).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for _ in 0..ROUNDS {
        let mut b = Relay::node(&redis, &FAST);
        let mut on_b = connect(&b, true, Some(0)).await;
        let mut cursor = 0;
        // Live on B: a few ops arrive.
        while cursor < 3 {
            if let ServerMessage::Ops(body) =
                until(&mut on_b, |m| matches!(m, ServerMessage::Ops(_))).await
            {
                cursor = body.ops.last().map_or(cursor, |s| s.seq).max(cursor);
            }
        }
        let killed = Instant::now();
        b.kill();
        // The device notices the socket died, then resumes on A.
        while let Some(Ok(message)) = on_b.next().await {
            if let Message::Text(text) = message
                && let Ok(ServerMessage::Ops(body)) = ServerMessage::decode(text.as_str())
            {
                cursor = body.ops.last().map_or(cursor, |s| s.seq).max(cursor);
            }
        }
        let mut on_a = connect(&a, true, Some(cursor)).await;
        loop {
            if let ServerMessage::Ops(body) =
                until(&mut on_a, |m| matches!(m, ServerMessage::Ops(_))).await
                && !body.ops.is_empty()
            {
                break;
            }
        }
        samples.push(killed.elapsed().as_secs_f64() * 1000.0);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    pushing.await.unwrap();
    samples.sort_by(f64::total_cmp);
    json!({
        "kills": ROUNDS,
        "p50_ms": percentile(&samples, 0.50),
        "max_ms": samples.last().copied().unwrap_or(0.0),
    })
}

/// Every section, in the order a full run takes them.
const SECTIONS: [&str; 8] = [
    "throughput",
    "latency",
    "fanout",
    "sockets",
    "catch_up",
    "stores",
    "failover",
    "resend",
];

/// Runs the section `name` (one of [`SECTIONS`]).
async fn section(name: &str) -> serde_json::Value {
    match name {
        "throughput" => throughput().await,
        "latency" => latency().await,
        "fanout" => fanout().await,
        "sockets" => sockets().await,
        "catch_up" => catch_up().await,
        "stores" => stores().await,
        "failover" => failover().await,
        "resend" => resend().await,
        other => unreachable!("no section {other:?}"),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench` passes `--bench`; anything else names sections.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    if let Some(unknown) = only.iter().find(|name| !SECTIONS.contains(&name.as_str())) {
        panic!("no section {unknown:?} (one of {SECTIONS:?})");
    }
    let results = runtime.block_on(async {
        let mut results = serde_json::Map::new();
        for name in SECTIONS {
            if only.is_empty() || only.iter().any(|wanted| wanted == name) {
                results.insert(name.to_owned(), section(name).await);
            }
        }
        results
    });
    let text = serde_json::to_string_pretty(&results).unwrap();
    println!("{text}");
    if !only.is_empty() {
        return;
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("relay.json"), text).unwrap();
}
