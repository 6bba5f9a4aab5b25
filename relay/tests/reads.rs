//! What reads cost the relay: a long poll is woken only by commits to the
//! stream it follows (on one node, and across nodes sharing Redis), a
//! poll or pull already at the head is answered from the head in memory
//! (no request to the hub, no read of the store), and a token subject's
//! pulls, snapshots, hellos and (with several nodes) pings draw on a read
//! budget that refuses what passes it as `rate_limited`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use gaesup_protocol::{ClientMessage, Hello, Ping, ServerMessage, code};
use support::{
    Backend, Client, DEADLINE, Device, RedisServer, Relay, error_code, http, main_rw, main_rw_as,
    metric, metric_reaches,
};

const HUB: &str = "relay_reads_hub_total";
const CACHED: &str = "relay_reads_cached_total";

/// The ops of a pull's answer, by number (panics on anything but ops).
fn seqs(body: &str) -> Vec<u64> {
    match ServerMessage::decode(body).unwrap() {
        ServerMessage::Ops(ops) => ops.ops.iter().map(|s| s.seq).collect(),
        other => panic!("not ops: {other:?}"),
    }
}

/// A long poll of apartment `main` from `cursor` on `relay` (25 s).
fn long_poll(relay: &Relay, cursor: u64, sub: &str) -> tokio::task::JoinHandle<(u16, String)> {
    let url = relay.url(&format!(
        "/v1/pull?stream=apartment:main&cursor={cursor}&wait_ms=25000"
    ));
    tokio::spawn(http("GET", url, Some(main_rw_as(sub)), None))
}

/// A long poll of `main` from cursor 1 on `polled` is not woken by
/// `others` commits to the global stream made with `writer` (once
/// `applied` says `polled` has them): it costs the hub nothing until its
/// own stream moves, and then one request.
async fn woken_only_by_its_stream(
    polled: &Relay,
    writer: &mut Client,
    device: &mut Device,
    others: usize,
    applied: impl AsyncFn(),
) {
    let (hub, cached) = (metric(polled, HUB).await, metric(polled, CACHED).await);
    let poll = long_poll(polled, 1, "reader");
    // Waiting once answered "nothing new" from the head in memory.
    metric_reaches(polled, CACHED, cached + 1).await;
    for n in 0..others {
        writer
            .push(vec![device.theme(["light", "dark"][n % 2])])
            .await;
    }
    applied().await;
    assert_eq!(
        (metric(polled, HUB).await, metric(polled, CACHED).await),
        (hub, cached + 1),
        "commits to another stream woke the poll"
    );
    assert!(!poll.is_finished(), "it still waits");

    let pushed = Instant::now();
    writer.push(vec![device.count(2)]).await;
    let (status, body) = poll.await.unwrap();
    assert!(
        pushed.elapsed() < Duration::from_secs(10),
        "woken, not ended"
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(&body), [2]);
    assert_eq!(metric(polled, HUB).await, hub + 1, "one wake, one request");
}

/// Commits on the global stream do not wake a long poll of the
/// apartment's (see [`woken_only_by_its_stream`]).
async fn a_long_poll_is_woken_only_by_commits_to_its_stream(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    writer.push(vec![device.count(1)]).await;
    woken_only_by_its_stream(&relay, &mut writer, &mut device, 20, async || {}).await;
}

/// On one node the head in memory is the store's: a pull at the head, a
/// long poll's start and its empty end, are answered from it.
#[tokio::test(flavor = "multi_thread")]
async fn a_caught_up_pull_is_answered_from_the_head_in_memory() {
    let relay = Relay::start(&[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    writer
        .push(vec![device.count(1), device.count(2), device.count(3)])
        .await;
    let (hub, cached) = (metric(&relay, HUB).await, metric(&relay, CACHED).await);
    let pull = |cursor: u64, wait_ms: u64| {
        let url = relay.url(&format!(
            "/v1/pull?stream=apartment:main&cursor={cursor}&wait_ms={wait_ms}"
        ));
        http("GET", url, Some(main_rw()), None)
    };
    for _ in 0..3 {
        let (status, body) = pull(3, 0).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            matches!(ServerMessage::decode(&body).unwrap(),
                ServerMessage::Ops(ops) if ops.ops.is_empty() && ops.head == 3),
            "{body}"
        );
    }
    // A long poll that ends with nothing: its start and its end.
    let (_, body) = pull(3, 300).await;
    assert!(seqs(&body).is_empty(), "{body}");
    assert_eq!(metric(&relay, CACHED).await, cached + 5);
    assert_eq!(metric(&relay, HUB).await, hub, "no request to the hub");
    // Behind the head: the hub reads the log.
    let (_, body) = pull(1, 0).await;
    assert_eq!(seqs(&body), [2, 3]);
    assert_eq!(metric(&relay, HUB).await, hub + 1);
}

/// Two nodes on one Redis: what node B commits reaches node A through its
/// reader, and wakes only A's polls of that stream.
#[tokio::test(flavor = "multi_thread")]
async fn across_nodes_a_long_poll_is_woken_only_by_commits_to_its_stream() {
    let redis = RedisServer::start();
    let b = Relay::node(&redis, &[]);
    let mut writer = Client::writer(&b, &main_rw()).await;
    let mut device = Device::new(1);
    writer
        .push(vec![device.count(1), device.theme("light")])
        .await;
    // A loads (and follows) both streams as it starts.
    let a = Relay::node(&redis, &[]);
    let remote = metric(&a, "relay_ops_remote_total").await;
    // A applied them all (and would have woken a poll by now).
    let applied = async || metric_reaches(&a, "relay_ops_remote_total", remote + 10).await;
    woken_only_by_its_stream(&a, &mut writer, &mut device, 10, applied).await;
}

/// Sends `request` until the relay refuses it for want of reads (at most
/// `tries` times: the budget refills a read a second meanwhile); panics
/// if it never does. `request` answers the code of a refusal, or `None`.
async fn refused_within<F, R>(tries: usize, mut request: F)
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Option<String>>,
{
    for _ in 0..tries {
        if let Some(code) = request().await {
            assert_eq!(code, code::RATE_LIMITED);
            return;
        }
    }
    panic!("{tries} requests in a row went through one read a second");
}

/// The code of an HTTP request's refusal (a 429), or `None` if it went
/// through.
async fn http_refusal(answer: impl std::future::Future<Output = (u16, String)>) -> Option<String> {
    let (status, body) = answer.await;
    (status != 200).then(|| {
        assert_eq!(status, 429, "{body}");
        error_code(&body)
    })
}

/// One read a second (bursts of two): pulls, snapshots and a socket's
/// hello past it are refused as `rate_limited`, a ping on one node costs
/// nothing, another subject's reads are not refused, and the subject
/// reads again once its budget has refilled.
#[tokio::test(flavor = "multi_thread")]
async fn reads_past_the_budget_are_refused_and_recover() {
    let relay = Relay::start(&["--max-reads-per-second", "1"]);
    let reader = main_rw_as("reader");
    let pull = |token: String| {
        let url = relay.url("/v1/pull?stream=apartment:main&cursor=0&wait_ms=0");
        http("GET", url, Some(token), None)
    };
    // Its hello is a read.
    let mut socket = Client::connect(&relay, &reader, None).await;
    refused_within(4, || http_refusal(pull(reader.clone()))).await;
    refused_within(20, || {
        http_refusal(http(
            "GET",
            relay.url("/v1/snapshot?stream=apartment:main"),
            Some(reader.clone()),
            None,
        ))
    })
    .await;
    // A hello past it: refused, and its socket closed.
    let hello = || async {
        let mut late = Client::raw(&relay).await;
        late.send(&ClientMessage::Hello(Hello {
            client: "late".into(),
            token: Some(reader.clone()),
            subscribe: Vec::new(),
        }))
        .await;
        match late
            .wait_for(|m| matches!(m, ServerMessage::Welcome(_) | ServerMessage::Error(_)))
            .await
        {
            ServerMessage::Error(body) => {
                assert!(late.closed().await.is_some(), "closed");
                Some(body.code)
            }
            _ => None,
        }
    };
    refused_within(20, hello).await;
    // On one node a pong needs no read of the store: it is answered
    // however spent the budget is.
    socket.send(&ClientMessage::Ping(Ping { at: 1 })).await;
    let answer = socket
        .wait_for(|m| matches!(m, ServerMessage::Pong(_) | ServerMessage::Error(_)))
        .await;
    assert!(matches!(answer, ServerMessage::Pong(_)), "{answer:?}");
    // Another subject has a budget of its own.
    assert_eq!(pull(main_rw_as("other")).await.0, 200);
    // Refilled within a second or so.
    let deadline = Instant::now() + DEADLINE;
    while pull(reader.clone()).await.0 != 200 {
        assert!(Instant::now() < deadline, "the budget never refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

support::on_both_backends!(a_long_poll_is_woken_only_by_commits_to_its_stream);
