//! What reads cost the relay: a long poll is woken only by commits to the
//! stream it follows (on one node, and across nodes sharing Redis), a
//! poll or pull already at the head is answered from the head in memory
//! (no request to the hub, no read of the store), the polls a commit wakes
//! from the stream's recent ops (no request to the hub), a waiting poll
//! holds one of the node's connections, and a token subject's
//! pulls, snapshots, hellos and (with several nodes) pings draw on a read
//! budget that refuses what passes it as `rate_limited`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use gaesup_protocol::{ClientMessage, Hello, Ping, ServerMessage, code};
use gaesup_relay::token::Access;
use support::{
    Backend, Client, DEADLINE, Device, RedisServer, Relay, error_code, http, main_rw, main_rw_as,
    metric, metric_reaches, token, write_a_large_log,
};

const HUB: &str = "relay_reads_hub_total";
const CACHED: &str = "relay_reads_cached_total";
const BUILT: &str = "relay_poll_answers_built_total";

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
/// `applied` says `polled` has them): it costs the hub nothing, neither
/// while it waits nor once its own stream moves (the commit that woke it
/// answers it).
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
    assert_eq!(
        (metric(polled, HUB).await, metric(polled, CACHED).await),
        (hub, cached + 2),
        "woken once, and answered from the commit that woke it"
    );
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
    refused_within(20, || hello_refusal(&relay, &reader)).await;
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

support::on_both_backends!(
    a_long_poll_is_woken_only_by_commits_to_its_stream,
    polls_a_commit_wakes_are_answered_from_it,
);

/// A long poll that waits holds a connection as a socket does: with
/// `--max-connections 2`, two waiting polls fill the node, a third poll
/// about to wait and a WebSocket are refused as `too_many_connections`
/// (503), a pull that does not wait still goes through, and once a commit
/// ends the polls the node takes a poll again.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_long_polls_count_against_the_connection_bound() {
    const HELD: &str = "relay_polls_held";
    let relay = Relay::start(&["--max-connections", "2"]);
    let mut device = Device::new(1);
    // The stream at 1, pushed over HTTP: no socket held.
    let push = |ops| {
        let body = serde_json::to_string(&gaesup_protocol::Push { ops }).unwrap();
        http("POST", relay.url("/v1/push"), Some(main_rw()), Some(body))
    };
    assert_eq!(push(vec![device.count(1)]).await.0, 200);
    let polls = [long_poll(&relay, 1, "a"), long_poll(&relay, 1, "b")];
    metric_reaches(&relay, HELD, 2).await;

    let (status, body) = long_poll(&relay, 1, "c").await.unwrap();
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, code::TOO_MANY_CONNECTIONS),
        "a third waiting poll: {body}"
    );
    match tokio_tungstenite::connect_async(relay.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("a socket was not refused: {:?}", other.map(|_| ())),
    }
    let quick = relay.url("/v1/pull?stream=apartment:main&cursor=1&wait_ms=0");
    assert_eq!(http("GET", quick, Some(main_rw()), None).await.0, 200);

    assert_eq!(push(vec![device.count(1)]).await.0, 200);
    for poll in polls {
        let (status, body) = poll.await.unwrap();
        assert_eq!((status, seqs(&body)), (200, vec![2]), "{body}");
    }
    assert_eq!(metric(&relay, HELD).await, 0, "released when they end");
    let again = long_poll(&relay, 2, "c");
    metric_reaches(&relay, HELD, 1).await;
    assert_eq!(push(vec![device.count(1)]).await.0, 200);
    assert_eq!(seqs(&again.await.unwrap().1), [3]);
}

/// One commit wakes every long poll held on its stream, and each is
/// answered from that commit's ops as its token may read them (a token
/// for the lobby alone gets the lobby's op, not the apartment's, and is
/// told it has read through both), none
/// asking the hub: a thousand polls on a stream would otherwise make a
/// thousand requests to it in turn, holding up every other stream.
async fn polls_a_commit_wakes_are_answered_from_it(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    writer.push(vec![device.count(1)]).await;
    let polls: Vec<_> = (0..20)
        .map(|n| long_poll(&relay, 1, &format!("reader-{n}")))
        .collect();
    let lobby_only = token(&[("main", Access::R, Some(&["lobby"]))], None);
    let url = relay.url("/v1/pull?stream=apartment:main&cursor=1&wait_ms=25000");
    let blind = tokio::spawn(http("GET", url, Some(lobby_only), None));
    metric_reaches(&relay, "relay_polls_held", 21).await;
    let (hub, built) = (metric(&relay, HUB).await, metric(&relay, BUILT).await);

    writer
        .push(vec![device.count(1), device.note("hello")])
        .await;
    for poll in polls {
        let (status, body) = poll.await.unwrap();
        assert_eq!((status, seqs(&body)), (200, vec![2, 3]), "{body}");
    }
    let (status, body) = blind.await.unwrap();
    assert_eq!(status, 200, "{body}");
    match ServerMessage::decode(&body).unwrap() {
        ServerMessage::Ops(ops) => {
            let keys: Vec<_> = ops
                .ops
                .iter()
                .map(|s| (s.seq, s.op.key.to_string()))
                .collect();
            assert_eq!(keys, [(2, "building/main/lobby/count".to_owned())]);
            assert_eq!((ops.head, ops.through), (3, Some(3)));
        }
        other => panic!("not ops: {other:?}"),
    }
    assert_eq!(metric(&relay, HUB).await, hub, "a woken poll asked the hub");
    assert_eq!(
        metric(&relay, BUILT).await,
        built + 2,
        "one answer for the twenty polls that read it all, one for the lobby's"
    );

    // The recent ops answer any cursor among them (a poll woken after a
    // second commit came), and nothing before them.
    let pull = |cursor: u64| {
        let url = relay.url(&format!(
            "/v1/pull?stream=apartment:main&cursor={cursor}&wait_ms=0"
        ));
        http("GET", url, Some(main_rw()), None)
    };
    assert_eq!(seqs(&pull(2).await.1), [3]);
    assert_eq!(metric(&relay, HUB).await, hub, "from the recent ops");
    assert_eq!(seqs(&pull(0).await.1), [1, 2, 3]);
    assert_eq!(metric(&relay, HUB).await, hub + 1, "before them: the hub");

    // A commit of one large op (200 KB) too.
    let polls: Vec<_> = (0..20)
        .map(|n| long_poll(&relay, 3, &format!("reader-{n}")))
        .collect();
    metric_reaches(&relay, "relay_polls_held", 20).await;
    let built = metric(&relay, BUILT).await;
    writer.push(vec![device.note(&"x".repeat(200_000))]).await;
    for poll in polls {
        let (status, body) = poll.await.unwrap();
        assert_eq!((status, seqs(&body)), (200, vec![4]));
    }
    assert_eq!(
        metric(&relay, HUB).await,
        hub + 1,
        "a woken poll asked the hub"
    );
    assert_eq!(
        metric(&relay, BUILT).await,
        built + 1,
        "encoded once for twenty"
    );
}

/// Sockets fill the same bound as waiting polls: with two sockets open on
/// a node of two, a poll about to wait is refused, and a pull that does not
/// wait is answered.
#[tokio::test(flavor = "multi_thread")]
async fn sockets_fill_the_bound_waiting_polls_share() {
    // One subject's two sockets fill the node.
    let relay = Relay::start(&[
        "--max-connections",
        "2",
        "--max-connections-per-subject",
        "2",
    ]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let _other = Client::connect(&relay, &main_rw(), None).await;
    let mut device = Device::new(1);
    writer.push(vec![device.count(1)]).await;
    let (status, body) = long_poll(&relay, 1, "a").await.unwrap();
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, code::TOO_MANY_CONNECTIONS),
        "{body}"
    );
    let quick = relay.url("/v1/pull?stream=apartment:main&cursor=1&wait_ms=0");
    assert_eq!(http("GET", quick, Some(main_rw()), None).await.0, 200);
}

/// A waiting poll whose client goes away gives its connection back then,
/// not when its wait would have ended (25 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_poll_whose_client_leaves_gives_its_connection_back() {
    use tokio::io::AsyncWriteExt;
    const HELD: &str = "relay_polls_held";
    let relay = Relay::start(&[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    writer.push(vec![Device::new(1).count(1)]).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let request = format!(
        "GET /v1/pull?stream=apartment:main&cursor=1&wait_ms=25000 HTTP/1.1\r\n\
         Host: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        main_rw()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    metric_reaches(&relay, HELD, 1).await;
    let left = Instant::now();
    drop(socket);
    while metric(&relay, HELD).await != 0 {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "the poll held its connection after its client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With Redis, a node whose reader lags answers a pull from its recent
/// ops saying the store's head, which another node moved past them: the
/// device is not told it caught up (it would re-base, or end a resync,
/// while ops it lacks wait on the other node).
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_from_the_recent_ops_says_the_head_another_node_moved() {
    let redis = RedisServer::start();
    let lagging = Relay::node(&redis, &["--follow-delay-ms", "10000"]);
    let other = Relay::node(&redis, &[]);
    let mut device = Device::new(1);
    let pull = |relay: &Relay, cursor: u64| {
        let url = relay.url(&format!(
            "/v1/pull?stream=apartment:main&cursor={cursor}&wait_ms=0"
        ));
        http("GET", url, Some(main_rw()), None)
    };
    // Loaded, then looked at by a poll: its recent ops are kept.
    for _ in 0..2 {
        assert_eq!(pull(&lagging, 0).await.0, 200);
    }
    Client::writer(&lagging, &main_rw())
        .await
        .push(vec![device.count(1)])
        .await;
    Client::writer(&other, &main_rw())
        .await
        .push(vec![device.count(1)])
        .await;
    let hub = metric(&lagging, HUB).await;
    let (status, body) = pull(&lagging, 0).await;
    assert_eq!(status, 200, "{body}");
    match ServerMessage::decode(&body).unwrap() {
        ServerMessage::Ops(ops) => {
            let seqs: Vec<u64> = ops.ops.iter().map(|s| s.seq).collect();
            assert_eq!((seqs, ops.head), (vec![1], 2), "{body}");
        }
        other => panic!("not ops: {other:?}"),
    }
    assert_eq!(
        metric(&lagging, HUB).await,
        hub,
        "answered from the recent ops"
    );
}

/// Says hello on a new socket with `token`: `None` if the relay welcomed
/// it, else the code of its refusal (the socket then closed).
async fn hello_refusal(relay: &Relay, token: &str) -> Option<String> {
    let mut client = Client::raw(relay).await;
    client
        .send(&ClientMessage::Hello(Hello {
            client: "test-device".into(),
            token: Some(token.to_owned()),
            subscribe: Vec::new(),
        }))
        .await;
    match client
        .wait_for(|m| matches!(m, ServerMessage::Welcome(_) | ServerMessage::Error(_)))
        .await
    {
        ServerMessage::Error(body) => {
            assert!(
                client.closed().await.is_some(),
                "a refused hello's socket closes"
            );
            Some(body.code)
        }
        _ => None,
    }
}

/// One token subject holds at most `--max-connections-per-subject` of a
/// node's connections, its sockets and waiting long polls together: with
/// 2, subject a's socket and waiting poll fill its share, so its next
/// hello and its next poll about to wait are refused as
/// `too_many_connections` (HTTP 503), while subject b's socket and poll go
/// through (without the bound a's peer could fill the node and shut b
/// out). Once a's socket closes a says hello again, and once everything
/// ends the node holds no subject (`relay_connected_subjects`).
#[tokio::test(flavor = "multi_thread")]
async fn one_subject_holds_at_most_its_share_of_the_node() {
    const HELD: &str = "relay_polls_held";
    const SUBJECTS: &str = "relay_connected_subjects";
    let relay = Relay::start(&["--max-connections-per-subject", "2"]);
    let (a, b) = (main_rw_as("a"), main_rw_as("b"));
    let mut writer = Client::writer(&relay, &a).await;
    writer.push(vec![Device::new(1).count(1)]).await;
    let a_poll = long_poll(&relay, 1, "a");
    metric_reaches(&relay, HELD, 1).await;

    assert_eq!(
        hello_refusal(&relay, &a).await.as_deref(),
        Some(code::TOO_MANY_CONNECTIONS),
        "a third connection of a's"
    );
    let (status, body) = long_poll(&relay, 1, "a").await.unwrap();
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, code::TOO_MANY_CONNECTIONS),
        "a's poll past its share: {body}"
    );
    // A pull that does not wait holds nothing.
    let quick = relay.url("/v1/pull?stream=apartment:main&cursor=1&wait_ms=0");
    assert_eq!(http("GET", quick, Some(a.clone()), None).await.0, 200);

    let _b_socket = Client::connect(&relay, &b, None).await;
    let b_poll = long_poll(&relay, 1, "b");
    metric_reaches(&relay, HELD, 2).await;
    assert_eq!(metric(&relay, SUBJECTS).await, 2);

    // a's socket gives its share back when it ends.
    drop(writer);
    let deadline = Instant::now() + DEADLINE;
    while hello_refusal(&relay, &a).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "a closed socket kept its subject's share"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // b holds its two: a third subject writes.
    let mut writer = Client::writer(&relay, &main_rw_as("c")).await;
    writer.push(vec![Device::new(2).count(1)]).await;
    for poll in [a_poll, b_poll] {
        let (status, body) = poll.await.unwrap();
        assert_eq!((status, seqs(&body)), (200, vec![2]), "{body}");
    }
    drop((writer, _b_socket));
    let deadline = Instant::now() + DEADLINE;
    while metric(&relay, SUBJECTS).await != 0 {
        assert!(
            Instant::now() < deadline,
            "subjects kept after their connections ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A socket's share of its subject is given back when its connection is,
/// not when its session ends: a device of subject a that stops reading is
/// cut off as too slow (its queue passed `--send-queue-bytes`), but its
/// writer still holds the connection while it sends what was queued
/// (three heartbeats of a minute for each frame). Meanwhile a's hellos
/// are refused, or one token could open socket after socket, each left
/// closing, and fill the node past its share. Once the device reads,
/// its connection ends and a says hello again.
#[tokio::test(flavor = "multi_thread")]
async fn a_closing_socket_keeps_its_subjects_share_until_it_has_closed() {
    const CLOSING: &str = "relay_sockets_closing";
    let relay = Relay::start(&[
        "--max-connections-per-subject",
        "1",
        "--send-queue-bytes",
        "1048576",
        "--heartbeat-ms",
        "60000",
    ]);
    let a = main_rw_as("a");
    let mut deaf = Client::connect(&relay, &a, None).await;
    let mut writer = Client::writer(&relay, &main_rw_as("w")).await;
    write_a_large_log(&mut writer, &mut Device::new(1)).await;
    metric_reaches(&relay, CLOSING, 1).await;
    assert_eq!(
        hello_refusal(&relay, &a).await.as_deref(),
        Some(code::TOO_MANY_CONNECTIONS),
        "a's hello while its closing socket holds its connection"
    );
    assert_eq!(metric(&relay, "relay_connected_subjects").await, 2);
    assert_eq!(
        deaf.closed().await,
        Some((4008, code::SLOW_CONSUMER.to_owned()))
    );
    let deadline = Instant::now() + DEADLINE;
    while hello_refusal(&relay, &a).await.is_some() {
        assert!(Instant::now() < deadline, "a's share was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sockets that have not said hello yet (shown no token) hold at most
/// `--max-pending-hellos` of the node: with 2, two sockets that say
/// nothing fill them, and a third socket takes the oldest one's place
/// (that one is told `too_many_connections` and closed, which a device
/// takes as a socket that did not open), so peers without a token can
/// neither fill the node nor keep a device that says hello at once out.
/// A socket that says a valid hello gives its place back (and keeps its
/// connection, however many sockets open after it); one that never does
/// gives it back when it closes. (Hellos are due only after ten minutes
/// here: the oldest socket's `no_hello` comes at once, from the third.)
#[tokio::test(flavor = "multi_thread")]
async fn sockets_before_their_hello_hold_at_most_their_share_of_the_node() {
    const BEFORE: &str = "relay_sockets_before_hello";
    let relay = Relay::start(&["--max-pending-hellos", "2", "--hello-within-ms", "600000"]);
    let mut oldest = Client::raw(&relay).await;
    let silent = Client::raw(&relay).await;
    metric_reaches(&relay, BEFORE, 2).await;
    let mut speaker = Client::raw(&relay).await;
    assert_eq!(
        oldest.error_code().await,
        code::TOO_MANY_CONNECTIONS,
        "the oldest made room"
    );
    assert_eq!(
        oldest.closed().await,
        Some((1001, code::TOO_MANY_CONNECTIONS.to_owned()))
    );
    assert_eq!(metric(&relay, BEFORE).await, 2);

    speaker
        .send(&ClientMessage::Hello(Hello {
            client: "test-device".into(),
            token: Some(main_rw()),
            subscribe: Vec::new(),
        }))
        .await;
    speaker
        .wait_for(|m| matches!(m, ServerMessage::Welcome(_)))
        .await;
    assert_eq!(
        metric(&relay, BEFORE).await,
        1,
        "a welcomed socket gave its place back"
    );

    // The silent socket's place is free again once it has closed.
    drop(silent);
    let deadline = Instant::now() + DEADLINE;
    while metric(&relay, BEFORE).await != 0 {
        assert!(
            Instant::now() < deadline,
            "a closed silent socket kept its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New sockets take places from each other, never from a welcomed one.
    let _late: Vec<Client> =
        futures_util::future::join_all((0..4).map(|_| Client::raw(&relay))).await;
    speaker.send(&ClientMessage::Ping(Ping { at: 1 })).await;
    speaker
        .wait_for(|m| matches!(m, ServerMessage::Pong(_)))
        .await;
    assert!(metric(&relay, BEFORE).await <= 2);
}

/// A connection must send a request's headers within the header timeout
/// (here 500 ms), and must not sit idle longer between requests: one that
/// sends half a request line, and one that sends nothing, are closed, so
/// that peers cannot hold connections (and the process's file
/// descriptors) without ever reaching a handler. A long poll that waits
/// past the timeout and a WebSocket open past it are not cut: the timeout
/// is for headers only.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_sends_no_whole_request_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = Relay::start(&["--header-timeout-ms", "500"]);
    let mut socket = Client::writer(&relay, &main_rw()).await;
    socket.push(vec![Device::new(1).count(1)]).await;
    let poll = relay.url("/v1/pull?stream=apartment:main&cursor=1&wait_ms=1500");
    let waiting = tokio::spawn(http("GET", poll, Some(main_rw()), None));
    // Reads to the end (a 408, at most, before it): the relay closed it.
    let closed_within = |mut tcp: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer))
            .await
            .expect("the relay closes the connection in time")
            .map_or(0, |n| n)
    };
    let opened = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let (slow_answer, silent_answer) = tokio::join!(closed_within(slow), closed_within(silent));
    assert!(slow_answer < 512 && silent_answer < 512);
    assert!(
        opened.elapsed() >= Duration::from_millis(400),
        "closed before the timeout"
    );
    let (status, body) = waiting.await.unwrap();
    assert_eq!((status, seqs(&body)), (200, Vec::new()), "{body}");
    assert!(
        opened.elapsed() >= Duration::from_millis(1_000),
        "the poll waited"
    );
    socket.send(&ClientMessage::Ping(Ping { at: 1 })).await;
    socket
        .wait_for(|m| matches!(m, ServerMessage::Pong(_)))
        .await;
}

/// A connection busy with a request does not hold a shutdown for longer
/// than the header timeout (here 500 ms): a push whose body trickles in
/// (its handler waits up to `--body-within-ms`, here ten minutes) is
/// dropped then, and the relay exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_connection_does_not_hold_the_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut relay = Relay::start(&["--header-timeout-ms", "500", "--body-within-ms", "600000"]);
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    let headers = format!(
        "POST /v1/push HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\
         Expect: 100-continue\r\n\r\n",
        main_rw()
    );
    tcp.write_all(headers.as_bytes()).await.unwrap();
    // The handler reads the body: hyper says to go on.
    let mut answer = [0u8; 25];
    tokio::time::timeout(DEADLINE, tcp.read_exact(&mut answer))
        .await
        .expect("the relay asks for the body in time")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 100 Continue"), "{answer:?}");
    tcp.write_all(b"{\"ops\":").await.unwrap();
    let started = Instant::now();
    let status = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || relay.terminate()),
    )
    .await
    .expect("the relay exits although a connection is busy")
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(tcp);
}

/// A socket's hello is one read, and its catch-up's first page comes with
/// it; every page past that is a read too, waited for rather than refused.
/// Before, a hello from cursor 0 streamed the whole log through the hub
/// for its one read (an HTTP pull pays one read per page).
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_s_catch_up_pays_a_read_per_page_past_its_first() {
    let relay = Relay::start(&["--max-reads-per-second", "2"]);
    let mut writer = Client::writer(&relay, &main_rw_as("writer")).await;
    let mut device = Device::new(1);
    // Six pages of 512 ops.
    for _ in 0..15 {
        let ops = (0..200).map(|n| device.note(&n.to_string())).collect();
        writer.push(ops).await;
    }
    let mut reader = Client::connect(&relay, &main_rw_as("reader"), Some(0)).await;
    reader.ops_in_order(3000).await;
    // Two seconds' worth (4 reads): the hello and three pages went at
    // once, the last two pages waited.
    assert!(metric(&relay, "relay_catch_up_waits_total").await >= 1);
}
