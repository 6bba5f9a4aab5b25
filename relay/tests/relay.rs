//! The relay binary, tried as devices (and hostile peers) would: the real
//! process on 127.0.0.1, port 0, a temporary store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gaesup_protocol::{
    AckStatus, ClientMessage, Hello, Push, ServerMessage, StreamId, Subscription, code,
};
use gaesup_relay::token::Access;
use gaesup_state_core::MAX_PRIVATE_KEYS_PER_BUILDING;
use serde_json::{Value, json};
use support::{
    Backend, Client, Device, KeptLog, Relay, error_code, http, log_ops, main_log_holds, main_pull,
    main_rw, main_rw_as, main_snapshot, main_stream, metric, stored_len, token, token_until,
    write_a_large_log,
};

fn applied_seq(status: &AckStatus) -> u64 {
    match status {
        AckStatus::Applied { seq, .. } | AckStatus::Duplicate { seq, .. } => *seq,
        AckStatus::Refused { code, message } => panic!("refused: {code}: {message}"),
    }
}

fn refusal(status: &AckStatus) -> &str {
    match status {
        AckStatus::Refused { code, .. } => code,
        other => panic!("not refused: {other:?}"),
    }
}

async fn the_same_op_twice_is_one_op_and_the_ack_carries_the_canonical_value(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::connect(&relay, &main_rw(), Some(0)).await;
    let mut device = Device::new(1);
    let op = device.count(3);
    let first = client.push(vec![op.clone()]).await;
    assert!(matches!(
        &first[0].status,
        AckStatus::Applied { seq: 1, value, .. } if *value == json!(3)
    ));
    let again = client.push(vec![op.clone(), op]).await;
    for ack in &again {
        assert!(
            matches!(ack.status, AckStatus::Duplicate { seq: 1, .. }),
            "{ack:?}"
        );
    }
    // Another device sees the op once.
    let mut other = Client::connect(&relay, &main_rw(), Some(0)).await;
    let ServerMessage::Ops(body) = other.wait_for(|m| matches!(m, ServerMessage::Ops(_))).await
    else {
        unreachable!()
    };
    assert_eq!(body.ops.len(), 1);
    assert_eq!(body.head, 1);
}

async fn a_device_catches_up_from_its_cursor_then_gets_live_ops(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut writer = Client::connect(&relay, &main_rw(), None).await;
    let mut device = Device::new(1);
    for delta in 1..=5 {
        writer.push(vec![device.count(delta)]).await;
    }
    let mut reader = Client::connect(&relay, &main_rw(), Some(2)).await;
    let ServerMessage::Ops(body) = reader
        .wait_for(|m| matches!(m, ServerMessage::Ops(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        body.ops.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [3, 4, 5],
        "exactly what follows the cursor"
    );
    writer.push(vec![device.count(10)]).await;
    let ServerMessage::Ops(live) = reader
        .wait_for(|m| matches!(m, ServerMessage::Ops(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(live.ops[0].seq, 6);
}

async fn a_device_behind_the_trimmed_log_gets_a_snapshot(backend: Backend) {
    let relay = Relay::on(backend, &["--log-keep", "4"]);
    let mut writer = Client::connect(&relay, &main_rw(), None).await;
    let mut device = Device::new(1);
    for _ in 0..12 {
        writer.push(vec![device.count(1)]).await;
    }
    writer.push(vec![device.note("hello")]).await;
    let mut late = Client::connect(&relay, &main_rw(), Some(1)).await;
    let ServerMessage::Snapshot(snapshot) = late
        .wait_for(|m| matches!(m, ServerMessage::Snapshot(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(snapshot.seq, 13);
    let mut replica = Device::new(2);
    for entry in &snapshot.states {
        replica.store.merge_state(entry).unwrap();
    }
    let key = replica.key("count");
    assert_eq!(
        replica.store.get_value(&support::lobby(), &key).unwrap(),
        json!(12),
        "the snapshot holds every increment, trimmed or not"
    );
    // A device whose cursor is recent still gets ops, not a snapshot.
    let mut recent = Client::connect(&relay, &main_rw(), Some(11)).await;
    let message = recent
        .wait_for(|m| matches!(m, ServerMessage::Ops(_) | ServerMessage::Snapshot(_)))
        .await;
    assert!(matches!(message, ServerMessage::Ops(body) if body.ops.len() == 2));
}

/// `--log-keep-bytes` in the tests: a few ops of [`LARGE`] text.
const KEEP_BYTES: u64 = 8_000;

/// Most of an op's text.
const LARGE: usize = 1_500;

/// A peer holding a write token pushes large ops: the log keeps
/// `--log-keep-bytes` of them, far fewer than `--log-keep` (a device
/// behind gets a snapshot, `/metrics` counts what is kept), and a tab
/// whose ops were trimmed is still its owner's.
async fn the_log_is_trimmed_by_bytes_as_well_as_by_count(backend: Backend) {
    let bytes = KEEP_BYTES.to_string();
    let relay = Relay::on(backend, &["--log-keep", "1000", "--log-keep-bytes", &bytes]);
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    let mut mallory = Client::writer(&relay, &main_rw_as("mallory")).await;
    let mut log = KeptLog::new(1000, KEEP_BYTES);
    let (mut victim, mut squatter) = (Device::new(7), Device::new(7));
    let op = victim.note("mine");
    log.commit(stored_len(&op));
    assert_eq!(applied_seq(&alice.push(vec![op]).await[0].status), 1);
    let mut flood = Device::new(9);
    for n in 0..12 {
        let op = flood.note(&format!("{n}{}", "x".repeat(LARGE)));
        log.commit(stored_len(&op));
        assert_eq!(applied_seq(&mallory.push(vec![op]).await[0].status), n + 2);
    }
    assert_eq!(log.head(), 13);
    assert!(log.first() > 2, "by bytes, op 1 is gone: {}", log.first());
    main_log_holds(&relay, log.first(), log.head()).await;
    assert_eq!(log_ops(&relay).await, log.head() - log.first() + 1);
    let _ = squatter.count(1);
    let acks = mallory.push(vec![squatter.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
}

/// Pushes large ops of `device` through `relay` while none of them would
/// trim the log (`log` says); returns the next one, which would.
async fn fill_to_the_brink(
    relay: &Relay,
    device: &mut Device,
    log: &mut KeptLog,
) -> gaesup_state_core::Op {
    let mut writer = Client::writer(relay, &main_rw()).await;
    loop {
        let op = device.note(&format!("{}{}", log.head(), "x".repeat(LARGE)));
        if log.would_trim(stored_len(&op)) {
            return op;
        }
        log.commit(stored_len(&op));
        assert_eq!(
            applied_seq(&writer.push(vec![op]).await[0].status),
            log.head()
        );
    }
}

/// The log's bytes are the store's, not the process's: a relay killed
/// just before the op that takes the log past its bound, and started
/// again, trims at that op as one that ran all along would (on Redis
/// also once the log's count is gone, as from a store an older relay
/// wrote).
async fn the_log_s_bytes_are_known_again_after_a_restart(backend: Backend) {
    let bytes = KEEP_BYTES.to_string();
    let mut relay = Relay::on(backend, &["--log-keep", "1000", "--log-keep-bytes", &bytes]);
    let mut log = KeptLog::new(1000, KEEP_BYTES);
    let mut device = Device::new(1);
    let rounds = if backend == Backend::Redis { 3 } else { 2 };
    for round in 0..rounds {
        let next = fill_to_the_brink(&relay, &mut device, &mut log).await;
        if round == 2 {
            // `::redis`: the crate (`redis` here is the tests' module).
            let url = relay.redis().unwrap().url();
            let client = ::redis::Client::open(url).unwrap();
            let mut raw = client.get_multiplexed_async_connection().await.unwrap();
            let gone: u64 = ::redis::cmd("DEL")
                .arg("gaesup:{apartment:main}:bytes")
                .query_async(&mut raw)
                .await
                .unwrap();
            assert_eq!(gone, 1);
        }
        relay.restart();
        let first = log.first();
        log.commit(stored_len(&next));
        assert!(log.first() > first, "the op trims the log");
        let mut writer = Client::writer(&relay, &main_rw()).await;
        assert_eq!(
            applied_seq(&writer.push(vec![next]).await[0].status),
            log.head()
        );
        main_log_holds(&relay, log.first(), log.head()).await;
    }
}

async fn every_auth_case_is_refused_with_its_code(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut device = Device::new(1);
    // No token.
    let mut client = Client::raw(&relay).await;
    client
        .send(&ClientMessage::Hello(Hello {
            client: "x".into(),
            token: None,
            subscribe: vec![],
        }))
        .await;
    assert_eq!(client.error_code().await, code::UNAUTHORIZED);
    assert_eq!(client.closed().await.map(|c| c.0), Some(4001));
    // A forged token, an expired one.
    for (bad, expected) in [
        ("gs1.e30.AAAA".to_owned(), code::UNAUTHORIZED),
        (
            token_until(&[("main", Access::Rw, None)], None, support::now_s() - 1),
            code::TOKEN_EXPIRED,
        ),
    ] {
        let mut client = Client::raw(&relay).await;
        client
            .send(&ClientMessage::Hello(Hello {
                client: "x".into(),
                token: Some(bad),
                subscribe: vec![],
            }))
            .await;
        assert_eq!(client.error_code().await, expected);
    }
    // Another apartment's token cannot read main.
    let annex = token(&[("annex", Access::Rw, None)], None);
    let mut client = Client::raw(&relay).await;
    client
        .send(&ClientMessage::Hello(Hello {
            client: "x".into(),
            token: Some(annex.clone()),
            subscribe: vec![Subscription {
                stream: main_stream(),
                cursor: None,
                after: None,
            }],
        }))
        .await;
    assert_eq!(client.error_code().await, code::FORBIDDEN);
    // ... nor write it; read-only cannot write; global needs its grant;
    // a building-narrowed grant writes only its buildings.
    for (grant, op, expected) in [
        (annex, device.count(1), code::FORBIDDEN),
        (
            token(&[("main", Access::R, None)], Some(Access::Rw)),
            device.count(1),
            code::FORBIDDEN,
        ),
        (
            token(&[("main", Access::Rw, None)], Some(Access::R)),
            device.theme("dark"),
            code::FORBIDDEN,
        ),
        (
            token(&[("main", Access::Rw, Some(&["shop"]))], None),
            device.count(1),
            code::FORBIDDEN,
        ),
    ] {
        let mut client = Client::raw(&relay).await;
        client
            .send(&ClientMessage::Hello(Hello {
                client: "x".into(),
                token: Some(grant),
                subscribe: vec![],
            }))
            .await;
        client
            .wait_for(|m| matches!(m, ServerMessage::Welcome(_)))
            .await;
        let acks = client.push(vec![op]).await;
        assert_eq!(refusal(&acks[0].status), expected);
    }
    // A push before hello.
    let mut client = Client::raw(&relay).await;
    client
        .send(&ClientMessage::Push(Push {
            ops: vec![device.count(1)],
        }))
        .await;
    assert_eq!(client.error_code().await, code::NO_HELLO);
    // Before its hello, a socket's frames are read up to what a hello
    // needs, not the frame limit: a hello padded past it is refused, and
    // one that fits is then taken.
    let mut client = Client::raw(&relay).await;
    let padded = format!(
        r#"{{"v":1,"type":"hello","body":{{"client":"x","token":{},"pad":[{}0]}}}}"#,
        serde_json::to_string(&main_rw()).unwrap(),
        "0,".repeat(gaesup_protocol::MAX_HELLO_BYTES / 2)
    );
    client.send_text(padded).await;
    let answer = client
        .wait_for(|m| matches!(m, ServerMessage::Error(_) | ServerMessage::Welcome(_)))
        .await;
    assert!(
        matches!(&answer, ServerMessage::Error(e) if e.code == code::FRAME_TOO_LARGE),
        "{answer:?}"
    );
    client
        .send(&ClientMessage::Hello(Hello {
            client: "x".into(),
            token: Some(main_rw()),
            subscribe: vec![],
        }))
        .await;
    client
        .wait_for(|m| matches!(m, ServerMessage::Welcome(_)))
        .await;
    // HTTP: no token, forged token.
    let (status, body) = http(
        "GET",
        relay.url("/v1/pull?stream=apartment:main"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, code::UNAUTHORIZED)
    );
    let (status, _) = http(
        "GET",
        relay.url("/v1/pull?stream=apartment:main"),
        Some("gs1.x.y".into()),
        None,
    )
    .await;
    assert_eq!(status, 401);
    // Nothing of that reached the log.
    assert!(matches!(main_pull(&relay, 0).await, ServerMessage::Ops(b) if b.head == 0));
}

async fn the_core_decides_on_the_relay_as_in_a_tab(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::connect(&relay, &main_rw(), None).await;
    let mut device = Device::new(1);
    // A unit outside the key's scope (another building's counter).
    let mut op = device.count(1);
    op.writer = "main/shop/catalog".parse().unwrap();
    // A value of the wrong type.
    let mut wrong = device.note("x");
    if let gaesup_state_core::Payload::Resolve { value, .. } = &mut wrong.payload {
        *value = json!(42).into();
    }
    // A key nobody declared, and a memory-only one.
    let mut unknown = device.note("y");
    unknown.key = "apartment/main/nobody-declared-this".parse().unwrap();
    let acks = client.push(vec![op, wrong, unknown]).await;
    assert_eq!(refusal(&acks[0].status), "out_of_scope");
    assert_eq!(refusal(&acks[1].status), "type_mismatch");
    assert_eq!(refusal(&acks[2].status), code::UNKNOWN_KEY);
}

async fn every_limit_answers_with_its_code_and_the_relay_keeps_serving(backend: Backend) {
    let relay = Relay::on(
        backend,
        &[
            "--max-ops-per-push",
            "4",
            "--max-ops-per-second",
            "2",
            "--max-frame-bytes",
            "65536",
            "--max-connections",
            "3",
            // One subject's three sockets fill the node.
            "--max-connections-per-subject",
            "3",
        ],
    );
    let mut device = Device::new(1);
    let mut client = Client::connect(&relay, &main_rw(), None).await;
    // Too many ops in one push.
    let ops: Vec<_> = (0..5).map(|_| device.count(1)).collect();
    client.send(&ClientMessage::Push(Push { ops })).await;
    assert_eq!(client.error_code().await, code::TOO_MANY_OPS);
    // Too many per second: the bucket holds two seconds' worth (4), so a
    // push of 4 right after one of 4 is refused unless two seconds passed
    // between them.
    let mut limited = false;
    for _ in 0..8 {
        let ops: Vec<_> = (0..4).map(|_| device.count(1)).collect();
        let acks = client.push(ops).await;
        if acks.iter().any(
            |a| matches!(&a.status, AckStatus::Refused { code: c, .. } if c == code::RATE_LIMITED),
        ) {
            limited = true;
            break;
        }
    }
    assert!(limited, "a burst past the rate is refused");
    // A frame over the limit (but under twice it) gets an error, and the
    // socket stays usable.
    let big = format!(
        r#"{{"v":1,"type":"ping","body":{{"at":1,"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    client.send_text(big).await;
    assert_eq!(client.error_code().await, code::FRAME_TOO_LARGE);
    client
        .send(&ClientMessage::Ping(gaesup_protocol::Ping { at: 7 }))
        .await;
    client
        .wait_for(|m| matches!(m, ServerMessage::Pong(p) if p.at == 7))
        .await;
    // Connections: three at most.
    let _second = Client::connect(&relay, &main_rw(), None).await;
    let _third = Client::connect(&relay, &main_rw(), None).await;
    let refused = tokio_tungstenite::connect_async(relay.ws_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!(
            "a fourth connection was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // HTTP: a body over the limit.
    let (status, body) = http(
        "POST",
        relay.url("/v1/push"),
        Some(main_rw()),
        Some(format!(r#"{{"ops":[],"pad":"{}"}}"#, "x".repeat(70_000))),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, code::FRAME_TOO_LARGE)
    );
    let (status, _) = http("GET", relay.url("/health"), None, None).await;
    assert_eq!(status, 200);
}

async fn malformed_frames_get_specific_codes_and_others_are_still_served(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut hostile = Client::connect(&relay, &main_rw(), None).await;
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), code::MALFORMED),
        (
            r#"{"type":"ping","body":{"at":1}}"#.into(),
            code::UNSUPPORTED_VERSION,
        ),
        (
            r#"{"v":99,"type":"ping","body":{"at":1}}"#.into(),
            code::UNSUPPORTED_VERSION,
        ),
        (
            r#"{"v":1,"type":"launch","body":{}}"#.into(),
            code::MALFORMED,
        ),
        (
            r#"{"v":1,"type":"push","body":{"ops":[{"id":1}]}}"#.into(),
            code::MALFORMED,
        ),
        (deep, code::MALFORMED),
        ("x".repeat((1 << 20) + 10), code::FRAME_TOO_LARGE),
    ];
    for (text, expected) in cases {
        hostile.send_text(text).await;
        assert_eq!(hostile.error_code().await, expected);
    }
    // Way past twice the limit: the socket layer closes (1009), the node
    // goes on.
    hostile.send_text("y".repeat(3 << 20)).await;
    let closed = hostile.closed().await;
    assert!(closed.as_ref().is_none_or(|c| c.0 == 1009), "{closed:?}");
    let mut honest = Client::connect(&relay, &main_rw(), None).await;
    let mut device = Device::new(1);
    let acks = honest.push(vec![device.count(1)]).await;
    applied_seq(&acks[0].status);
}

async fn a_slow_reader_is_disconnected_and_resyncs_from_its_cursor(backend: Backend) {
    let relay = Relay::on(backend, &["--send-queue", "4"]);
    // A reader that never reads: its queue fills.
    let mut slow = Client::connect(&relay, &main_rw(), None).await;
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    // Enough bytes to fill the socket buffers between the relay and the
    // reader, then its queue.
    let page = "x".repeat(100 * 1024);
    for _ in 0..80 {
        writer.push(vec![device.note(&page)]).await;
    }
    let closed = slow.closed().await;
    assert_eq!(closed, Some((4008, code::SLOW_CONSUMER.to_owned())));
    // The node kept serving; the reader comes back from its cursor.
    let mut back = Client::connect(&relay, &main_rw(), Some(0)).await;
    let mut seen = 0;
    while seen < 80 {
        match back.wait_for(|m| matches!(m, ServerMessage::Ops(_))).await {
            ServerMessage::Ops(body) => seen = body.ops.last().map_or(seen, |s| s.seq),
            _ => unreachable!(),
        }
    }
    assert_eq!(seen, 80);
}

async fn the_http_fallback_pushes_pulls_with_a_long_poll_and_snapshots(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut device = Device::new(1);
    let push = |ops| serde_json::to_string(&Push { ops }).unwrap();
    let (status, body) = http(
        "POST",
        relay.url("/v1/push"),
        Some(main_rw()),
        Some(push(vec![device.count(2)])),
    )
    .await;
    assert_eq!(status, 200);
    let ServerMessage::Ack(acks) = ServerMessage::decode(&body).unwrap() else {
        panic!("{body}")
    };
    assert_eq!(applied_seq(&acks.acks[0].status), 1);
    // A long poll from the head waits for the next op.
    let url = relay.url("/v1/pull?stream=apartment:main&cursor=1&wait_ms=25000");
    let poll = tokio::spawn(http("GET", url, Some(main_rw()), None));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "it waits");
    let mut client = Client::connect(&relay, &main_rw(), None).await;
    client.push(vec![device.count(5)]).await;
    // Woken by the commit, not by the poll's deadline (which would answer
    // with the op too).
    let pushed = std::time::Instant::now();
    let (status, body) = poll.await.unwrap();
    assert!(
        pushed.elapsed() < std::time::Duration::from_secs(10),
        "the long poll answered only at its deadline"
    );
    assert_eq!(status, 200);
    let ServerMessage::Ops(ops) = ServerMessage::decode(&body).unwrap() else {
        panic!("{body}")
    };
    assert_eq!(ops.ops.iter().map(|s| s.seq).collect::<Vec<_>>(), [2]);
    // A snapshot.
    let snapshot = main_snapshot(&relay).await;
    assert_eq!(snapshot.seq, 2);
    assert_eq!(snapshot.states.len(), 1);
    // Health and metrics.
    let (_, metrics) = http("GET", relay.url("/metrics"), None, None).await;
    assert!(metrics.contains("relay_ops_applied_total 2"), "{metrics}");
    let _ = Value::Null;
}

/// A token narrowed to one building may not read the apartment's own keys:
/// a catch-up that meets only those must still move the device's cursor
/// (`through`), or its next pull asks for the same ops again, at once,
/// forever, and never reaches the ops it may read after them.
async fn a_narrowed_device_on_http_moves_past_ops_it_may_not_read(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut device = Device::new(1);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    for _ in 0..6 {
        let notes = (0..100).map(|n| device.note(&format!("{n}"))).collect();
        writer.push(notes).await;
    }
    writer.push(vec![device.count(1)]).await;
    let lobby = token(&[("main", Access::R, Some(&["lobby"]))], None);
    let mut cursor = 0;
    let mut read = Vec::new();
    for _ in 0..3 {
        let url = relay.url(&format!(
            "/v1/pull?stream=apartment:main&cursor={cursor}&wait_ms=0"
        ));
        let (status, body) = http("GET", url, Some(lobby.clone()), None).await;
        assert_eq!(status, 200, "{body}");
        let ServerMessage::Ops(ops) = ServerMessage::decode(&body).unwrap() else {
            panic!("{body}")
        };
        read.extend(ops.ops.iter().map(|s| s.seq));
        let last = ops.ops.last().map_or(cursor, |s| s.seq);
        cursor = ops.through.unwrap_or(last).max(last);
    }
    assert_eq!(read, [601], "the one op it may read");
    assert_eq!(cursor, 601);
}

/// A token narrowed to one building names made-up units there, as many as
/// a private declaration may hold in all (256): their keys take that
/// building's share (`MAX_PRIVATE_KEYS_PER_BUILDING`), the rest is
/// refused, and a unit of another building still makes its first write.
/// Without the share, the made-up units took all 256 keys and that write
/// was refused, for good.
async fn made_up_units_of_one_building_take_only_its_share(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let shop = token(&[("main", Access::Rw, Some(&["shop"]))], None);
    let mut intruder = Client::writer(&relay, &shop).await;
    let note = |device: &mut Device, unit: &str| {
        let notes = device.key("notes");
        let unit: gaesup_state_core::UnitAddress = unit.parse().unwrap();
        let value = notes.spec().default_value().clone();
        device.store.set(&unit, &notes, value).unwrap().op
    };
    // Four devices, each within the share on its own store.
    let per_device = MAX_PRIVATE_KEYS_PER_BUILDING;
    let mut applied = 0;
    let mut refused = 0;
    for tab in 1..=(256 / per_device) as u64 {
        let mut device = Device::new(tab);
        let ops = (0..per_device)
            .map(|n| note(&mut device, &format!("main/shop/made-up-{tab}-{n}")))
            .collect();
        for ack in intruder.push(ops).await {
            match &ack.status {
                AckStatus::Applied { .. } => applied += 1,
                status => {
                    assert_eq!(refusal(status), "too_many_keys");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((applied, refused), (per_device, 256 - per_device));
    let mut owner = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(9);
    let acks = owner.push(vec![note(&mut device, "main/home/notes")]).await;
    applied_seq(&acks[0].status);
}

/// A live fan-out is built once for the devices that may read the same of
/// its ops: each still gets exactly what its token reads (a token narrowed
/// to the lobby, the lobby's ops; the others, all), with the head.
async fn live_ops_reach_each_device_as_its_token_reads_them(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let lobby = token(&[("main", Access::R, Some(&["lobby"]))], None);
    let mut narrowed = Vec::new();
    let mut whole = Vec::new();
    for _ in 0..2 {
        narrowed.push(Client::connect(&relay, &lobby, None).await);
        whole.push(Client::connect(&relay, &main_rw(), None).await);
    }
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    writer
        .push(vec![device.note("a"), device.count(1), device.note("b")])
        .await;
    let live = |m: &ServerMessage| matches!(m, ServerMessage::Ops(body) if body.head == 3);
    // A device that may not read the last op is told it may pass it
    // (`through`), or its cursor would lag behind every op it may not
    // read, and a reconnection after the log is trimmed past it would
    // take a snapshot.
    for (clients, expected, through) in [
        (&mut narrowed, vec![2], Some(3)),
        (&mut whole, vec![1, 2, 3], None),
    ] {
        for client in clients.iter_mut() {
            let ServerMessage::Ops(body) = client.wait_for(live).await else {
                unreachable!()
            };
            let seqs: Vec<u64> = body.ops.iter().map(|s| s.seq).collect();
            assert_eq!(seqs, expected);
            assert_eq!(body.through, through);
        }
    }
}

async fn a_silent_socket_is_closed_within_three_heartbeats(backend: Backend) {
    let relay = Relay::on(backend, &["--heartbeat-ms", "200"]);
    let mut silent = Client::raw(&relay).await;
    silent
        .send(&ClientMessage::Hello(Hello {
            client: "silent".into(),
            token: Some(main_rw()),
            subscribe: vec![],
        }))
        .await;
    let started = std::time::Instant::now();
    // It never answers the relay's pings.
    while silent.read_silently().await.is_some() {}
    assert_eq!(silent.closed.as_ref().map(|c| c.0), Some(4009));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A device that answers stays connected for seven heartbeats, more
    // than twice the three after which silence closes a socket. (On a
    // relay of its own with a longer heartbeat: at 200 ms a stall of this
    // test process for 600 ms, which a loaded machine can cause, would
    // close a socket that does answer; at 500 ms it takes 1.5 s.)
    let relay = Relay::on(backend, &["--heartbeat-ms", "500"]);
    let mut alive = Client::connect(&relay, &main_rw(), None).await;
    let until = std::time::Instant::now() + std::time::Duration::from_millis(3_500);
    while std::time::Instant::now() < until {
        // Reading answers the relay's pings.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), alive.next()).await;
    }
    alive
        .send(&ClientMessage::Ping(gaesup_protocol::Ping { at: 9 }))
        .await;
    alive
        .wait_for(|m| matches!(m, ServerMessage::Pong(p) if p.at == 9))
        .await;
    let _ = StreamId::Global;
}

/// A token checked once at the hello would outlive its expiry for as long
/// as the socket stays open: a push after it is refused and the socket
/// closed, and a socket that only reads is closed within a heartbeat.
async fn a_socket_ends_when_its_token_does(backend: Backend) {
    let soon = || token_until(&[("main", Access::Rw, None)], None, support::now_s() + 2);
    let mut device = Device::new(1);
    // A heartbeat longer than the test: only the push finds the expiry.
    let relay = Relay::on(backend, &["--heartbeat-ms", "20000"]);
    let mut writer = Client::writer(&relay, &soon()).await;
    assert!(matches!(
        writer.push(vec![device.count(1)]).await[0].status,
        AckStatus::Applied { .. }
    ));
    // A short one: the heartbeat finds it (the reader answers pings
    // while it waits, so only the expiry closes it).
    let beating = Relay::on(backend, &["--heartbeat-ms", "200"]);
    let mut reader = Client::connect(&beating, &soon(), None).await;
    assert_eq!(reader.error_code().await, code::TOKEN_EXPIRED);
    assert_eq!(reader.closed().await.map(|c| c.0), Some(4001));
    // The writer's token, made first, has expired too.
    writer
        .send(&ClientMessage::Push(Push {
            ops: vec![device.count(1)],
        }))
        .await;
    assert_eq!(writer.error_code().await, code::TOKEN_EXPIRED);
    assert_eq!(writer.closed().await.map(|c| c.0), Some(4001));
    // The refused op was not applied.
    assert_eq!(main_snapshot(&relay).await.seq, 1);
}

/// A socket that never says hello has shown no token: it may not hold a
/// connection slot for longer than the hello deadline, whether it says
/// nothing or keeps it open with WebSocket pings. A device that said hello
/// goes on.
async fn a_socket_that_never_says_hello_is_closed_however_it_pings(backend: Backend) {
    let relay = Relay::on(backend, &["--hello-within-ms", "2000"]);
    let mut device = Device::new(1);
    let mut honest = Client::connect(&relay, &main_rw(), None).await;
    let mut mute = Client::raw(&relay).await;
    let mut pinging = Client::raw(&relay).await;
    let no_hello = Some((4001, code::NO_HELLO.to_owned()));
    assert_eq!(
        pinging
            .ping_until_closed(std::time::Duration::from_millis(100))
            .await,
        no_hello
    );
    assert_eq!(pinging.error_code().await, code::NO_HELLO);
    while mute.read_silently().await.is_some() {}
    assert_eq!(mute.closed, no_hello);
    // Past the deadline, the device that said hello is still served.
    applied_seq(&honest.push(vec![device.count(1)]).await[0].status);
    let mut late = Client::connect(&relay, &main_rw(), None).await;
    applied_seq(&late.push(vec![device.count(1)]).await[0].status);
}

/// Before a hello, WebSocket pings do not count as a socket being heard:
/// one that only pings is closed as silent, even with a hello deadline
/// longer than its patience.
async fn websocket_pings_before_a_hello_do_not_keep_a_socket_alive(backend: Backend) {
    let relay = Relay::on(
        backend,
        &["--heartbeat-ms", "200", "--hello-within-ms", "600000"],
    );
    let mut pinging = Client::raw(&relay).await;
    let closed = pinging
        .ping_until_closed(std::time::Duration::from_millis(50))
        .await;
    assert_eq!(closed.map(|c| c.0), Some(4009));
}

/// A push's token is checked before its body is read: a request without a
/// valid one is refused for it (as before, with its status and code)
/// while its body, declared past the frame limit, has not even been sent.
/// A valid one's body is read under the limit and a time bound.
async fn a_push_is_refused_for_its_token_before_its_body_is_read(backend: Backend) {
    let relay = Relay::on(
        backend,
        &["--max-frame-bytes", "65536", "--body-within-ms", "500"],
    );
    let head = |token: Option<&str>, length: usize| {
        let authorization = token.map_or_else(String::new, |token| {
            format!("\r\nAuthorization: Bearer {token}")
        });
        format!(
            "POST /v1/push HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}{authorization}"
        )
    };
    let expired = token_until(&[("main", Access::Rw, None)], None, support::now_s() - 1);
    for (token, expected) in [
        (None, code::UNAUTHORIZED),
        (Some("gs1.x.y"), code::UNAUTHORIZED),
        (Some(expired.as_str()), code::TOKEN_EXPIRED),
    ] {
        let (status, body) = support::raw_http(relay.port, &head(token, 200_000), b"").await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (401, expected),
            "{token:?}"
        );
    }
    let valid = main_rw();
    // Declared past the limit: refused for its size, unread.
    let (status, body) = support::raw_http(relay.port, &head(Some(&valid), 200_000), b"").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, code::FRAME_TOO_LARGE)
    );
    // Undeclared (chunked), refused once what came passes the limit.
    let chunked = format!(
        "POST /v1/push HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer {valid}"
    );
    // One byte past the limit and no more: all of it is read.
    let chunk = format!("{:x}\r\n{}", 65_537, "x".repeat(65_537));
    let (status, body) = support::raw_http(relay.port, &chunked, chunk.as_bytes()).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, code::FRAME_TOO_LARGE)
    );
    // A body that stops coming is given up.
    let (status, body) =
        support::raw_http(relay.port, &head(Some(&valid), 100), br#"{"ops":["#).await;
    assert_eq!((status, error_code(&body).as_str()), (408, code::MALFORMED));
    // A whole body is read and pushed.
    let mut device = Device::new(1);
    let push = serde_json::to_string(&Push {
        ops: vec![device.count(1)],
    })
    .unwrap();
    let (status, body) =
        support::raw_http(relay.port, &head(Some(&valid), push.len()), push.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let ServerMessage::Ack(acks) = ServerMessage::decode(&body).unwrap() else {
        panic!("{body}")
    };
    assert_eq!(applied_seq(&acks.acks[0].status), 1);
}

/// Op ids are fanned out: a peer that may write one key of an apartment
/// learns another device's tab and next number. Another op under that id
/// is refused, before the device's real op and after it (in one push
/// too), and never answered as a duplicate of it.
async fn another_op_under_a_taken_id_is_refused_not_a_duplicate(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::writer(&relay, &main_rw()).await;
    let (mut squatter, mut victim) = (Device::new(7), Device::new(7));
    let squat = squatter.count(1);
    let real = victim.note("mine");
    assert_eq!(squat.id, real.id);
    assert!(matches!(
        client.push(vec![squat.clone()]).await[0].status,
        AckStatus::Applied { seq: 1, .. }
    ));
    let acks = client.push(vec![real.clone()]).await;
    assert_eq!(refusal(&acks[0].status), code::OP_ID_TAKEN, "{acks:?}");
    // The same op again is still a duplicate.
    assert!(matches!(
        client.push(vec![squat]).await[0].status,
        AckStatus::Duplicate { seq: 1, .. }
    ));
    // Two different ops under one new id in one push: the first holds it.
    let (mut first, mut second) = (Device::new(8), Device::new(8));
    let acks = client
        .push(vec![first.note("first"), second.count(1)])
        .await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    assert_eq!(refusal(&acks[1].status), code::OP_ID_TAKEN, "{acks:?}");
    assert_eq!(main_snapshot(&relay).await.seq, 2);
}

/// A tab belongs to the token subject that pushed its first op: a peer
/// with a token of its own that read the tab's op ids (they are fanned
/// out) cannot take the tab's next id before the tab does, in the stream
/// it read them in or any other, nor after flooding the stream until the
/// tab's ops are trimmed, nor after the relay is killed and started
/// again; it can still write under tabs of its own, and the same op again
/// is still only a duplicate.
async fn a_tab_belongs_to_the_subject_that_pushed_its_first_op(backend: Backend) {
    let mut relay = Relay::on(backend, &["--log-keep", "10"]);
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    let mut mallory = Client::writer(&relay, &main_rw_as("mallory")).await;
    let (mut victim, mut squatter) = (Device::new(7), Device::new(7));
    let first = victim.note("one");
    assert!(matches!(
        alice.push(vec![first.clone()]).await[0].status,
        AckStatus::Applied { seq: 1, .. }
    ));
    // The squatter's second op takes the id the victim writes next.
    let _ = squatter.count(1);
    let squat = squatter.count(1);
    let acks = mallory.push(vec![squat.clone()]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    // In the global stream, where the victim's tab has written nothing yet.
    let acks = mallory.push(vec![squatter.theme("dark")]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    let real = victim.note("two");
    assert_eq!(real.id, squat.id);
    assert!(matches!(
        alice.push(vec![real.clone()]).await[0].status,
        AckStatus::Applied { seq: 2, .. }
    ));
    // A replay of the victim's own op changes nothing.
    assert!(matches!(
        mallory.push(vec![real]).await[0].status,
        AckStatus::Duplicate { seq: 2, .. }
    ));
    // A tab first pushed by mallory is hers, in the same push as a squat.
    let mut own = Device::new(9);
    let acks = mallory.push(vec![own.count(1), squatter.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { seq: 3, .. }),
        "{acks:?}"
    );
    assert_eq!(refusal(&acks[1].status), code::TAB_TAKEN, "{acks:?}");
    let mut theirs = Device::new(9);
    let _ = theirs.count(1);
    let acks = alice.push(vec![theirs.note("theirs")]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    // Flooded until the log (10 kept) holds none of the victim's ops.
    for _ in 0..30 {
        let acks = mallory.push(vec![own.count(1)]).await;
        assert!(
            matches!(acks[0].status, AckStatus::Applied { .. }),
            "{acks:?}"
        );
    }
    let pulled = main_pull(&relay, 0).await;
    assert!(
        matches!(pulled, ServerMessage::Snapshot(_)),
        "the log no longer holds op 2: {pulled:?}"
    );
    let acks = mallory.push(vec![squatter.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    // Owners are stored: a relay killed and started again still knows them.
    drop((alice, mallory));
    relay.restart();
    let mut mallory = Client::writer(&relay, &main_rw_as("mallory")).await;
    let acks = mallory.push(vec![squatter.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    assert!(matches!(
        alice.push(vec![victim.note("three")]).await[0].status,
        AckStatus::Applied { seq: 34, .. }
    ));
    assert_eq!(main_snapshot(&relay).await.seq, 34);
}

/// Ops naming apartments the token may not write are refused before the
/// hub loads anything for them: a peer cannot make a node hold a stream
/// per apartment name it makes up.
async fn ops_for_apartments_the_token_may_not_write_leave_no_stream_behind(backend: Backend) {
    let mut relay = Relay::on(backend, &[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    assert!(matches!(
        writer.push(vec![device.count(1)]).await[0].status,
        AckStatus::Applied { .. }
    ));
    let held = streams_held(&relay).await;
    let made_up: Vec<_> = (0..50)
        .map(|i| {
            let mut op = device.count(1);
            op.key = format!("apartment/x{i}/count").parse().unwrap();
            op
        })
        .collect();
    let acks = writer.push(made_up).await;
    assert!(
        acks.iter()
            .all(|ack| refusal(&ack.status) == code::FORBIDDEN),
        "{acks:?}"
    );
    assert_eq!(streams_held(&relay).await, held);
    // A restarted relay counts the streams it loads from its store.
    relay.restart();
    assert_eq!(streams_held(&relay).await, held);
}

/// A reset observing thousands of slots nobody wrote would leave a counter
/// past the slot bound, which the relay (after a restart) and every device
/// would set aside: refused, and the counter still counts.
async fn a_reset_that_would_pass_the_slot_bound_is_refused(backend: Backend) {
    use gaesup_state_core::{MAX_SUM_SLOTS, Observed, OpId, Payload, TabId};

    let mut relay = Relay::on(backend, &[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    let first = device.count(1);
    assert!(matches!(
        writer.push(vec![first]).await[0].status,
        AckStatus::Applied { .. }
    ));
    let mut reset = device.reset(0);
    let stamp = reset.stamp.wall_ms;
    let Payload::Reset { observed, .. } = &mut reset.payload else {
        panic!("a set of a sum key is a reset: {:?}", reset.payload);
    };
    *observed = (0..MAX_SUM_SLOTS as u64)
        .map(|t| Observed {
            slot: OpId {
                tab: TabId::new(0x100_000 + t),
                seq: 1,
            },
            p: 1,
            n: 0,
            last: stamp,
        })
        .collect();
    let acks = writer.push(vec![reset]).await;
    assert_eq!(refusal(&acks[0].status), "too_large", "{acks:?}");
    relay.restart();
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let acks = writer.push(vec![device.count(2)]).await;
    assert!(
        matches!(&acks[0].status, AckStatus::Applied { value, .. } if *value == json!(3)),
        "{acks:?}"
    );
}

/// The `relay_streams` gauge of `/metrics`.
async fn streams_held(relay: &Relay) -> u64 {
    metric(relay, "relay_streams").await
}

/// Where the store keeps `tab`'s owner, if anywhere: SQLite's row, or
/// Redis's key with its time to live (ms).
async fn stored_owner(relay: &Relay, tab: u64) -> Option<(String, Option<i64>)> {
    let tab = format!("{tab:016x}");
    match relay.redis() {
        Some(redis) => {
            let client = ::redis::Client::open(redis.url()).unwrap();
            let mut raw = client.get_multiplexed_async_connection().await.unwrap();
            let key = format!("gaesup:tab:{tab}");
            let owner: Option<String> = ::redis::cmd("GET")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .unwrap();
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .unwrap();
            owner.map(|owner| (owner, Some(ttl)))
        }
        None => {
            let db = rusqlite::Connection::open(relay.data.join("relay.sqlite3")).unwrap();
            db.query_row(
                "SELECT owner FROM tab_owners WHERE tab = ?1",
                [tab],
                |row| row.get(0),
            )
            .ok()
            .map(|owner| (owner, None))
        }
    }
}

/// An op refused when admitted (here, stamped too far ahead) leaves no
/// owner for its tab; a committed op's owner lasts 30 days.
async fn an_op_refused_when_admitted_leaves_no_owner(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut mallory = Client::writer(&relay, &main_rw_as("mallory")).await;
    let clock = support::clock();
    clock.set(gaesup_relay::hub::now_ms() + 2 * 24 * 3_600_000);
    let mut ahead = Device::with_clock(11, clock);
    let acks = mallory.push(vec![ahead.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), "clock_skew", "{acks:?}");
    assert_eq!(stored_owner(&relay, 11).await, None);
    let acks = mallory.push(vec![Device::new(12).count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    let full = i64::try_from(gaesup_relay::store::TAB_OWNER_TTL_MS).unwrap();
    match stored_owner(&relay, 12).await {
        Some((owner, Some(ttl))) => assert!(owner == "mallory" && ttl > full - 60_000, "{ttl}"),
        Some((owner, None)) => assert_eq!(owner, "mallory"),
        None => panic!("no owner stored for a committed op's tab"),
    }
}

/// A subject may have at most 600 tabs claimed an hour on a node (each is
/// a record kept 30 days): past that, its new tabs are left unowned, their
/// ops still applied; the tabs it owns are still its own, and other
/// subjects' tabs still refuse it (read from the store: the relay was
/// restarted, so it has seen no owner yet).
async fn a_subject_s_new_tabs_past_its_hourly_claims_are_left_unowned(backend: Backend) {
    let mut relay = Relay::on(backend, &["--max-ops-per-second", "100000"]);
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    let mut victim = Device::new(7);
    let acks = alice.push(vec![victim.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    drop(alice);
    relay.restart();
    let mut mallory = Client::writer(&relay, &main_rw_as("mallory")).await;
    let mut devices: Vec<Device> = (1_000..1_601).map(Device::new).collect();
    for chunk in devices.chunks_mut(300) {
        let ops = chunk.iter_mut().map(|device| device.count(1)).collect();
        let acks = mallory.push(ops).await;
        assert!(
            acks.iter()
                .all(|ack| matches!(ack.status, AckStatus::Applied { .. })),
            "{acks:?}"
        );
    }
    let mut squatter = Device::new(7);
    let _ = squatter.count(1);
    let acks = mallory.push(vec![squatter.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    // The first new tab is mallory's; the 601st is nobody's.
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    let mut first = Device::new(1_000);
    let _ = first.count(1);
    let acks = alice.push(vec![first.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
    assert!(stored_owner(&relay, 1_600).await.is_none());
    let mut last = Device::new(1_600);
    let _ = last.count(1);
    let acks = alice.push(vec![last.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
}

/// A store written before tabs had owners (SQLite: its owners table
/// dropped while the relay was down): the tabs its log holds stay
/// anybody's to push and nobody's to take; new tabs are owned.
#[tokio::test(flavor = "multi_thread")]
async fn tabs_of_a_store_from_before_owners_are_anybody_s_to_push() {
    let mut relay = Relay::start(&[]);
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    let mut victim = Device::new(21);
    let acks = alice.push(vec![victim.note("before")]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    drop(alice);
    relay.kill();
    let db = rusqlite::Connection::open(relay.data.join("relay.sqlite3")).unwrap();
    db.execute_batch("DROP TABLE tab_owners").unwrap();
    drop(db);
    relay.restart();
    let mut mallory = Client::writer(&relay, &main_rw_as("mallory")).await;
    let mut squatter = Device::new(21);
    let _ = squatter.count(1);
    let acks = mallory.push(vec![squatter.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    let mut alice = Client::writer(&relay, &main_rw_as("alice")).await;
    let _ = victim.note("lost to the squat, as before owners");
    let acks = alice.push(vec![victim.note("after")]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    let mut own = Device::new(22);
    let acks = mallory.push(vec![own.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
    let mut taken = Device::new(22);
    let _ = taken.count(1);
    let acks = alice.push(vec![taken.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), code::TAB_TAKEN, "{acks:?}");
}

/// A device back from a lost connection resends its outbox: every op
/// already in the log (read back together, among other devices' ops) is a
/// duplicate at the number it got, and an op under an id a peer took
/// first is still refused, in the same push.
async fn a_resent_outbox_is_answered_as_duplicates_in_one_push(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::writer(&relay, &main_rw()).await;
    let (mut device, mut other) = (Device::new(5), Device::new(6));
    let mut sent = Vec::new();
    for n in 0..40 {
        let op = if n % 3 == 0 {
            device.note(&format!("note {n}"))
        } else {
            device.count(1)
        };
        let AckStatus::Applied { seq, .. } = client.push(vec![op.clone()]).await[0].status else {
            panic!("not applied");
        };
        sent.push((op, seq));
        // Another device's op between each: the numbers are not a run.
        let acks = client.push(vec![other.count(1)]).await;
        assert!(matches!(acks[0].status, AckStatus::Applied { .. }));
    }
    let real = device.count(2);
    let mut squatter = Device::new(5);
    for n in 0..40 {
        squatter.note(&format!("squatter {n}"));
    }
    let squat = squatter.note("squat");
    assert_eq!(squat.id, real.id);
    assert!(matches!(
        client.push(vec![squat]).await[0].status,
        AckStatus::Applied { .. }
    ));
    let mut resend: Vec<gaesup_state_core::Op> =
        sent.iter().rev().map(|(op, _)| op.clone()).collect();
    resend.push(real);
    let acks = client.push(resend).await;
    for ((op, seq), ack) in sent.iter().rev().zip(&acks) {
        assert_eq!(ack.op, op.id);
        assert!(
            matches!(ack.status, AckStatus::Duplicate { seq: s, .. } if s == *seq),
            "{op:?}: {ack:?}"
        );
    }
    assert_eq!(refusal(&acks[40].status), code::OP_ID_TAKEN, "{acks:?}");
    assert_eq!(main_snapshot(&relay).await.seq, 81);
}

/// A node admits ops stamped at most 23 h ahead of its clock, an hour
/// short of the core's horizon: another node of the same store whose clock
/// lags by less than that applies them instead of holding them (for ever:
/// nothing would admit them later, and its stored state would lack them).
async fn ops_stamped_near_the_horizon_are_refused_so_every_node_applies_what_one_admits(
    backend: Backend,
) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::writer(&relay, &main_rw()).await;
    let ahead = |ms: u64| {
        let clock = support::clock();
        clock.set(gaesup_relay::hub::now_ms() + ms);
        Device::with_clock(3, clock)
    };
    let mut near = ahead(gaesup_state_core::MAX_CLOCK_AHEAD_MS - 30 * 60 * 1000);
    let acks = client.push(vec![near.count(1)]).await;
    assert_eq!(refusal(&acks[0].status), "clock_skew", "{acks:?}");
    let limit = gaesup_state_core::MAX_CLOCK_AHEAD_MS - gaesup_relay::hub::NODE_CLOCK_SLACK_MS;
    let mut within = ahead(limit - 60 * 1000);
    let acks = client.push(vec![within.count(1)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
}

/// A reset's fold horizon vouches for a write of its writer's 14 days
/// after it: judged as that write's stamp would be. The core holds such a
/// reset until the clock gets there, and a node never calls it again: one
/// let through was logged, fanned out and acknowledged as applied while
/// the node's own state (what it stores and snapshots) never got it.
async fn a_reset_whose_horizon_vouches_for_a_write_ahead_is_refused_not_acked(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(3);
    assert!(matches!(
        client.push(vec![device.count(2)]).await[0].status,
        AckStatus::Applied { .. }
    ));
    let day = 24 * 3_600_000;
    let ahead = gaesup_relay::hub::now_ms() + 2 * day - gaesup_state_core::COMPACT_AFTER_MS;
    let acks = client
        .push(vec![device.reset_with_horizon(10, ahead)])
        .await;
    assert_eq!(refusal(&acks[0].status), "clock_skew", "{acks:?}");
    let text = format!("{acks:?}");
    assert!(text.contains("fold horizon"), "{text}");
    // The same reset with the device's own horizon is taken.
    let acks = client.push(vec![device.reset(10)]).await;
    assert!(
        matches!(acks[0].status, AckStatus::Applied { .. }),
        "{acks:?}"
    );
}

/// A page follows its apartment and the global keys; a token without a
/// global grant is refused the global stream alone, and the apartment still
/// syncs.
async fn a_stream_the_token_may_not_read_is_refused_alone(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let main_only = token(&[("main", Access::Rw, None)], None);
    let mut device = Device::new(1);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    writer.push(vec![device.count(1)]).await;
    let mut client = Client::raw(&relay).await;
    client
        .send(&ClientMessage::Hello(Hello {
            client: "x".into(),
            token: Some(main_only),
            subscribe: vec![
                Subscription {
                    stream: main_stream(),
                    cursor: Some(0),
                    after: None,
                },
                Subscription {
                    stream: StreamId::Global,
                    cursor: Some(0),
                    after: None,
                },
            ],
        }))
        .await;
    assert_eq!(client.error_code().await, code::FORBIDDEN);
    let caught_up = client
        .wait_for(|m| matches!(m, ServerMessage::Ops(body) if body.stream == main_stream()))
        .await;
    let ServerMessage::Ops(body) = caught_up else {
        unreachable!()
    };
    assert_eq!(body.ops.len(), 1);
    // Live ops of the apartment still come; the global ones, written
    // first, never do.
    let global = token(&[("main", Access::Rw, None)], Some(Access::Rw));
    Client::writer(&relay, &global)
        .await
        .push(vec![device.theme("dark")])
        .await;
    writer.push(vec![device.count(1)]).await;
    loop {
        match client.next().await {
            Some(ServerMessage::Ops(body)) => {
                assert_ne!(body.stream, StreamId::Global, "{body:?}");
                if body.ops.iter().any(|s| s.seq == 2) {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the socket closed"),
        }
    }
}

/// A device that says hello following `main` from 0, then reads nothing.
async fn deaf_from_zero(relay: &Relay) -> Client {
    let mut deaf = Client::raw(relay).await;
    deaf.send(&ClientMessage::Hello(Hello {
        client: "deaf".into(),
        token: Some(main_rw()),
        subscribe: vec![Subscription {
            stream: main_stream(),
            cursor: Some(0),
            after: None,
        }],
    }))
    .await;
    deaf
}

/// A device that stops reading fills its socket's buffers: the relay lets
/// it go within a few heartbeats, rather than hold the connection (and
/// its own shutdown) for as long as the device keeps the socket open.
async fn a_device_that_never_reads_is_let_go(backend: Backend) {
    let mut relay = Relay::on(backend, &["--heartbeat-ms", "200"]);
    let mut device = Device::new(1);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    write_a_large_log(&mut writer, &mut device).await;
    drop(writer);
    let deaf = deaf_from_zero(&relay).await;
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        let (_, body) = http("GET", relay.url("/health"), None, None).await;
        let health: Value = serde_json::from_str(&body).unwrap();
        if health["connections"] == json!(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the device that never reads still holds its connection: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = relay.terminate();
    assert!(status.success(), "{status:?}");
    drop(deaf);
}

/// A device's live queue is bounded by bytes as well as by messages: one
/// that follows `main` and never reads is cut off as too slow once what
/// waits for it passes `--send-queue-bytes` (here 1 MiB), though its count
/// (10,000 messages) is far from full and its writer's patience (three
/// heartbeats of a minute) far from spent; a device that reads gets
/// everything.
async fn a_device_that_never_reads_is_cut_off_by_its_queued_bytes(backend: Backend) {
    let relay = Relay::on(
        backend,
        &[
            "--send-queue",
            "10000",
            "--send-queue-bytes",
            "1048576",
            "--heartbeat-ms",
            "60000",
        ],
    );
    let mut deaf = Client::connect(&relay, &main_rw(), None).await;
    let mut reader = Client::connect(&relay, &main_rw(), None).await;
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    // The reader reads as the ops come.
    let reading = tokio::spawn(async move {
        reader.ops_in_order(120).await;
        reader
    });
    // 24 MB: past the socket buffers between the relay and the deaf
    // device, then past its byte budget, in 120 messages.
    write_a_large_log(&mut writer, &mut device).await;
    let mut reader = reading.await.unwrap();
    // What was queued for the deaf device before it was cut off is still
    // written, then the close.
    let closed = deaf.closed().await;
    assert_eq!(closed, Some((4008, code::SLOW_CONSUMER.to_owned())));
    // The reader was not cut off: its pings are answered.
    reader
        .send(&ClientMessage::Ping(gaesup_protocol::Ping { at: 7 }))
        .await;
    reader
        .wait_for(|m| matches!(m, ServerMessage::Pong(_)))
        .await;
}

/// The relay process's resident memory, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A device catching up from cursor 0 costs the relay one page of the log
/// at a time, fetched once the page before is written: eight devices that
/// subscribe and then read nothing, against a 24 MB log, grow it by about
/// 20 MB between them (before, each had the whole log read into memory for it
/// at once, on the hub's thread). The hub still serves everyone else, and
/// a device that reads gets all of it, in order.
async fn devices_that_never_read_their_catch_up_hold_a_page_each(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut device = Device::new(1);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    write_a_large_log(&mut writer, &mut device).await;
    let before = resident_kib(relay.pid());
    let mut deaf = Vec::new();
    for _ in 0..8 {
        let mut client = deaf_from_zero(&relay).await;
        // The welcome, then the first of what it missed: the hub has taken
        // the subscription (and, before, queued the whole log for it).
        for _ in 0..2 {
            client.read_silently().await.unwrap();
        }
        deaf.push(client);
    }
    let grown = resident_kib(relay.pid()).saturating_sub(before);
    assert!(
        grown < 48 << 10,
        "eight deaf catch-ups took {grown} KiB (the log is 24 MB)"
    );
    // Everyone else is served meanwhile, and a reader gets every op.
    let acks = writer.push(vec![device.note("after")]).await;
    assert_eq!(applied_seq(&acks[0].status), 121);
    let mut reader = Client::connect(&relay, &main_rw(), Some(0)).await;
    reader.ops_in_order(121).await;
    drop(deaf);
}

/// A catch-up of many pages (more than the socket's buffers take) while
/// ops keep coming: every number once, in order, the live ones after the
/// last page, and an ack only once everything committed before it was
/// sent (a device takes an ack to mean it has caught up).
async fn a_catch_up_of_many_pages_meets_live_ops_without_a_gap(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut device = Device::new(1);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    write_a_large_log(&mut writer, &mut device).await;
    let mut reader = Client::connect(&relay, &main_rw(), Some(0)).await;
    // Committed while the reader has read nothing of its catch-up: live.
    let live = writer.push(vec![device.count(1)]).await;
    assert_eq!(applied_seq(&live[0].status), 121);
    let mut own = Device::new(2);
    reader
        .send(&ClientMessage::Push(Push {
            ops: vec![own.count(1)],
        }))
        .await;
    let mut seen = 0;
    loop {
        match reader.next().await.unwrap() {
            ServerMessage::Ops(body) => {
                for op in &body.ops {
                    assert_eq!(op.seq, seen + 1, "a gap or a repeat");
                    seen = op.seq;
                }
            }
            ServerMessage::Ack(acks) => {
                // The relay fans a push's ops out before its ack.
                assert_eq!(seen, 122, "an ack before everything committed");
                assert_eq!(applied_seq(&acks.acks[0].status), 122);
                break;
            }
            _ => {}
        }
    }
}

/// A socket that closes with its catch-up cut short (its token expires
/// while it reads nothing) writes nothing live after the gap: no op past
/// the catch-up, no ack (a device would move its cursor over the gap, or
/// take the ack to mean it caught up); only the error saying why, then
/// the close. The device resumes from its cursor.
async fn a_catch_up_cut_short_sends_nothing_live_after_it(backend: Backend) {
    let relay = Relay::on(backend, &["--heartbeat-ms", "20000"]);
    let mut device = Device::new(1);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    // 48 MB: more than the socket's buffers take even grown to their
    // largest (32 MiB to read here), so the catch-up is cut short.
    write_a_large_log(&mut writer, &mut device).await;
    write_a_large_log(&mut writer, &mut device).await;
    // Time enough to subscribe and push once (a token expires at a whole
    // second), little enough to wait for.
    let expires = support::now_s() + 4;
    let mut reader = Client::raw(&relay).await;
    reader
        .send(&ClientMessage::Hello(Hello {
            client: "reader".into(),
            token: Some(token_until(&[("main", Access::Rw, None)], None, expires)),
            subscribe: vec![Subscription {
                stream: main_stream(),
                cursor: Some(0),
                after: None,
            }],
        }))
        .await;
    // The welcome, then the first of what it missed.
    let mut last = 0;
    for _ in 0..2 {
        if let ServerMessage::Ops(body) = reader.read_silently().await.unwrap() {
            last = body.ops.last().map_or(last, |op| op.seq);
        }
    }
    // Live for this socket: its own op (and its ack), queued behind the
    // catch-up it is not reading.
    let mut own = Device::new(2);
    reader
        .send(&ClientMessage::Push(Push {
            ops: vec![own.count(1)],
        }))
        .await;
    let deadline = std::time::Instant::now() + support::DEADLINE;
    while main_snapshot(&relay).await.seq < 241 || support::now_s() <= expires {
        assert!(
            std::time::Instant::now() < deadline,
            "the push never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Its token has expired: the next push closes the socket.
    reader
        .send(&ClientMessage::Push(Push {
            ops: vec![own.count(1)],
        }))
        .await;
    let mut said = Vec::new();
    while let Some(message) = reader.read_silently().await {
        match message {
            ServerMessage::Ops(body) => {
                for op in &body.ops {
                    assert_eq!(op.seq, last + 1, "a gap or a repeat");
                    last = op.seq;
                }
            }
            ServerMessage::Ack(acks) => panic!("an ack after a gap: {acks:?} (at {last})"),
            ServerMessage::Error(body) => said.push(body.code),
            _ => {}
        }
    }
    assert!(last < 240, "the catch-up was not cut short: {last}");
    assert_eq!(said, [code::TOKEN_EXPIRED]);
    assert_eq!(reader.closed.as_ref().map(|c| c.0), Some(4001));
}

/// Each subscription of a hello is caught up on its own: one naming a
/// stream twice is refused, not served twice.
async fn a_hello_naming_a_stream_twice_is_refused(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut client = Client::raw(&relay).await;
    let twice = Subscription {
        stream: main_stream(),
        cursor: None,
        after: None,
    };
    client
        .send(&ClientMessage::Hello(Hello {
            client: "x".into(),
            token: Some(main_rw()),
            subscribe: vec![twice.clone(), twice],
        }))
        .await;
    assert_eq!(client.error_code().await, code::MALFORMED);
}

async fn sigterm_finishes_what_is_in_flight_and_exits_cleanly(backend: Backend) {
    let mut relay = Relay::on(backend, &[]);
    let mut client = Client::connect(&relay, &main_rw(), None).await;
    let mut device = Device::new(1);
    for _ in 0..20 {
        client.push(vec![device.count(1)]).await;
    }
    let status = relay.terminate();
    assert!(status.success(), "{status:?}");
    let relay = relay.successor(&[]);
    let snapshot = main_snapshot(&relay).await;
    assert_eq!(snapshot.seq, 20);
}

/// Cart lines `{prefix}0..{prefix}{n-1}`, each named with `bytes` bytes:
/// large values made of fields a merge key merges.
fn heavy_lines(prefix: &str, n: usize, bytes: usize, quantity: u32) -> Value {
    let lines: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("{prefix}{i}"),
                json!(["x".repeat(bytes), 100, quantity]),
            )
        })
        .collect();
    Value::Object(lines)
}

/// Pushes `ops` and gathers their acks, however many frames they take (an
/// ack carrying a large value takes one of its own).
async fn push_all(
    client: &mut Client,
    ops: Vec<gaesup_state_core::Op>,
) -> Vec<gaesup_protocol::Ack> {
    let wanted = ops.len();
    client.send(&ClientMessage::Push(Push { ops })).await;
    let mut acks = Vec::new();
    while acks.len() < wanted {
        match client
            .wait_for(|m| matches!(m, ServerMessage::Ack(_)))
            .await
        {
            ServerMessage::Ack(more) => acks.extend(more.acks),
            _ => unreachable!(),
        }
    }
    acks
}

/// Pushes one op at a time, the `n`th made by `op(n)`, until the relay
/// refuses one as rate limited, each answer before it checked by
/// `answered`: how many went through, of at most 20.
async fn pushes_until_limited(
    client: &mut Client,
    mut op: impl FnMut(u32) -> gaesup_state_core::Op,
    answered: impl Fn(&AckStatus),
) -> u32 {
    for n in 1..=20 {
        let acks = client.push(vec![op(n)]).await;
        if rate_limited(&acks) {
            return n - 1;
        }
        answered(&acks[0].status);
    }
    20
}

/// The first ack refused as rate limited, after checking that every ack
/// before it was applied and every one after it refused so too.
fn refused_from(acks: &[gaesup_protocol::Ack]) -> Option<usize> {
    let first = acks
        .iter()
        .position(|ack| rate_limited(std::slice::from_ref(ack)))?;
    for ack in &acks[..first] {
        applied_seq(&ack.status);
    }
    for ack in &acks[first..] {
        assert!(rate_limited(std::slice::from_ref(ack)), "{ack:?}");
    }
    Some(first)
}

fn rate_limited(acks: &[gaesup_protocol::Ack]) -> bool {
    acks.iter()
        .any(|a| matches!(&a.status, AckStatus::Refused { code: c, .. } if c == code::RATE_LIMITED))
}

/// A push counts against the rate limit by the work it cost the hub, not
/// only by its ops: a small patch of a large merge key costs building the
/// key's whole value (its ack carries it), and an op refused near the
/// state's size limit costs trying the whole state. A peer sending such
/// ops at the rate small ones may go is refused long before; small ops on
/// small keys go as before (WebSocket and HTTP alike).
async fn ops_count_against_the_rate_by_the_work_they_cost(backend: Backend) {
    // A bucket of 100 ops (two seconds of 50) per token subject: each step
    // below that needs a full one pushes as a subject of its own, with
    // devices of its own (a tab's ops come from the subject that pushed
    // its first one).
    let relay = Relay::on(backend, &["--max-ops-per-second", "50"]);
    let mut patcher = Device::new(3);

    // A key that grows within one push: its next ops cost what it grew to
    // before any commit measured it. The cart gets twenty 20 KB lines
    // (400 KB: an op on it costs 24 more), then ten small patches.
    let mut first = Device::new(1);
    let mut growing = Client::connect(&relay, &main_rw(), None).await;
    let mut ops = vec![first.cart(heavy_lines("a", 20, 20_000, 1))];
    ops.extend((101..=110).map(|quantity| patcher.cart(heavy_lines("f", 1, 10, quantity))));
    let acks = push_all(&mut growing, ops).await;
    applied_seq(&acks[0].status);
    let refused = refused_from(&acks).expect("the bucket paid for ten patches of 400 KB");
    assert!(
        (2..=8).contains(&refused),
        "{refused} ops of the growing cart went in before the first refused"
    );

    // A cart of about 800 KB: two more devices add ten lines each (a
    // device holds at most 448 KiB of its own), each as a subject of its
    // own so that building the cart is not rate limited.
    for (tab, prefix) in [(2, "b"), (12, "c")] {
        let op = Device::new(tab).cart(heavy_lines(prefix, 10, 20_000, 1));
        let token = main_rw_as(&format!("builder-{prefix}"));
        let mut client = Client::connect(&relay, &token, None).await;
        applied_seq(&push_all(&mut client, vec![op]).await[0].status);
    }

    // Small patches of it: each costs about 50 ops (the bucket holds 100;
    // time adds one every 20 ms). By count, twenty of them would cost 20.
    let mut patcher = Device::new(10);
    let mut heavy = Client::connect(&relay, &main_rw_as("heavy-ws"), None).await;
    let pushed = pushes_until_limited(
        &mut heavy,
        |quantity| patcher.cart(heavy_lines("f", 1, 10, quantity)),
        |status| {
            applied_seq(status);
        },
    )
    .await;
    assert!(
        (1..10).contains(&pushed),
        "small patches of an 800 KB cart were rate limited after {pushed} pushes, not 1 to 9"
    );

    // Within one push: the ops the bucket pays for go in; from the first
    // it cannot, the rest (even an op that alone would fit) is refused as
    // rate limited, for the device to send again. A fresh subject's
    // bucket (100, less 6 for the push's ops) pays for one or two ops on
    // the cart (50 each, less what time adds meanwhile).
    let mut patcher = Device::new(11);
    let mut other = Device::new(8);
    let mut partial = Client::connect(&relay, &main_rw_as("partial"), None).await;
    let mut ops: Vec<_> = (21..26)
        .map(|quantity| patcher.cart(heavy_lines("f", 1, 10, quantity)))
        .collect();
    ops.push(other.count(1));
    let acks = push_all(&mut partial, ops).await;
    let refused = refused_from(&acks).expect("the bucket paid for five patches of 800 KB");
    assert!(
        (1..=3).contains(&refused),
        "{refused} ops went in before the first refused"
    );

    // Ops refused because the state would pass its limit: short acks, but
    // each was tried on the whole state first.
    let mut grower = Device::new(4);
    let mut at_limit = Client::connect(&relay, &main_rw_as("at-limit"), None).await;
    let tried = pushes_until_limited(
        &mut at_limit,
        |quantity| grower.cart(heavy_lines("g", 1, 120_000, quantity)),
        |status| assert_eq!(refusal(status), "too_large"),
    )
    .await;
    assert!(
        (1..10).contains(&tried),
        "ops refused at the size limit were rate limited after {tried} pushes, not 1 to 9"
    );

    // A key written over and over in one push (a 5 KB note, 90 times):
    // each op costs what the key holds, not the sum of what was written.
    let mut writer = Device::new(9);
    let mut rewriting = Client::connect(&relay, &main_rw_as("rewriting"), None).await;
    let notes: Vec<_> = (0..90)
        .map(|i| writer.note(&format!("{i:05}{}", "n".repeat(5_000))))
        .collect();
    for ack in push_all(&mut rewriting, notes).await {
        applied_seq(&ack.status);
    }

    // Small ops of a small key: twenty pushes cost twenty ops, well within.
    let mut counter = Device::new(5);
    let mut light = Client::connect(&relay, &main_rw_as("light-ws"), None).await;
    for _ in 0..20 {
        let acks = light.push(vec![counter.count(1)]).await;
        applied_seq(&acks[0].status);
    }

    // Over HTTP: the same.
    let push = |op| serde_json::to_string(&Push { ops: vec![op] }).unwrap();
    let mut patcher = Device::new(6);
    let mut counter = Device::new(7);
    let mut over_http = 0;
    for quantity in 21..=40 {
        let (status, body) = http(
            "POST",
            relay.url("/v1/push"),
            Some(main_rw_as("heavy")),
            Some(push(patcher.cart(heavy_lines("f", 1, 10, quantity)))),
        )
        .await;
        // Refused whole (429), or by the hub (its ack).
        let ServerMessage::Ack(acks) = ServerMessage::decode(&body).unwrap() else {
            panic!("{body}")
        };
        if status == 429 || rate_limited(&acks.acks) {
            break;
        }
        assert_eq!(status, 200);
        applied_seq(&acks.acks[0].status);
        over_http += 1;
    }
    assert!(
        (1..10).contains(&over_http),
        "small patches over HTTP were rate limited after {over_http} pushes, not 1 to 9"
    );
    for _ in 0..20 {
        let (status, body) = http(
            "POST",
            relay.url("/v1/push"),
            Some(main_rw_as("light")),
            Some(push(counter.count(1))),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Pushes `ops` and checks they are all refused as rate limited.
async fn refused_whole(client: &mut Client, ops: Vec<gaesup_state_core::Op>, what: &str) {
    let acks = push_all(client, ops).await;
    assert_eq!(refused_from(&acks), Some(0), "{what}");
}

/// The rate budget is the token subject's, not the connection's: a peer
/// holding one token gets no more ops a second by opening more sockets,
/// by opening a new one once its budget is spent, or by pushing over HTTP
/// beside them. Another subject keeps its own budget.
async fn a_subject_s_connections_and_http_pushes_share_one_budget(backend: Backend) {
    // A bucket of 100 ops (two seconds of 50). Pushes of 100 small ops:
    // the first empties it, and it takes two seconds to hold 100 again,
    // far longer than the steps below take (a refused push takes nothing).
    let relay = Relay::on(backend, &["--max-ops-per-second", "50"]);
    let token = main_rw_as("mallory");
    let mut device = Device::new(1);
    let mut whole = || (0..100).map(|_| device.count(1)).collect::<Vec<_>>();
    let mut first = Client::connect(&relay, &token, None).await;
    for ack in push_all(&mut first, whole()).await {
        applied_seq(&ack.status);
    }
    // A second socket beside the first, then a third once both closed:
    // the same spent budget, so each push is refused whole.
    let mut second = Client::connect(&relay, &token, None).await;
    refused_whole(&mut second, whole(), "a second socket, beside the first").await;
    drop((first, second));
    let mut third = Client::connect(&relay, &token, None).await;
    refused_whole(&mut third, whole(), "a new socket, once both closed").await;
    // Over HTTP: the same budget.
    let push = serde_json::to_string(&Push { ops: whole() }).unwrap();
    let (status, body) = http("POST", relay.url("/v1/push"), Some(token), Some(push)).await;
    assert_eq!(status, 429, "{body}");
    // Another subject, its own full budget.
    let mut other = Device::new(2);
    let ops: Vec<_> = (0..100).map(|_| other.count(1)).collect();
    let mut alice = Client::connect(&relay, &main_rw_as("alice"), None).await;
    for ack in push_all(&mut alice, ops).await {
        applied_seq(&ack.status);
    }
}

/// A stored state this relay cannot load is left as it is, where a write
/// to its key used to be applied to an empty state and committed over
/// what the store kept. One of a newer schema than the relay knows (as a
/// node not yet upgraded meets one an upgraded node wrote) refuses writes
/// for now (`storage`, so the device sends them again); one no upgrade
/// reads refuses them for good, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_state_the_relay_cannot_load_is_never_written_over() {
    let mut relay = Relay::on(Backend::Sqlite, &[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut device = Device::new(1);
    for op in [device.note("kept"), device.count(1)] {
        applied_seq(&writer.push(vec![op]).await[0].status);
    }
    drop(writer);
    relay.kill();
    let db = relay.data.join("relay.sqlite3");
    let stored = |name: &str| -> String {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT stored FROM states WHERE key LIKE '%/' || ?1",
                [name],
                |row| row.get(0),
            )
            .unwrap()
    };
    let store = |name: &str, text: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "UPDATE states SET stored = ?2 WHERE key LIKE '%/' || ?1",
                [name, text],
            )
            .unwrap();
    };
    let newer = stored("shared-note").replacen("\"schema\":1", "\"schema\":99", 1);
    assert_ne!(newer, stored("shared-note"), "{newer}");
    store("shared-note", &newer);
    store("count", "{not json");
    relay.restart();
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let acks = writer.push(vec![device.note("over it")]).await;
    assert_eq!(refusal(&acks[0].status), code::STORAGE, "{acks:?}");
    let acks = writer.push(vec![device.count(1)]).await;
    let code = refusal(&acks[0].status);
    assert!(!gaesup_protocol::is_transient_code(code), "{acks:?}");
    // Other keys are written as ever.
    applied_seq(&writer.push(vec![device.theme("dark")]).await[0].status);
    drop(writer);
    relay.kill();
    assert_eq!(stored("shared-note"), newer);
    assert_eq!(stored("count"), "{not json");
}

/// A resolve naming another tab's future writes as superseded (a peer
/// reads the tab's id off any op it is sent) reaches only what that tab
/// wrote before it: the tab's next write still counts on the relay, and
/// its ack says so.
async fn a_resolve_naming_another_tab_s_future_writes_does_not_silence_them(backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut alice = Client::connect(&relay, &main_rw_as("alice"), None).await;
    let mut mallory = Client::connect(&relay, &main_rw_as("mallory"), None).await;
    let mut alice_device = Device::new(1);
    // Stamped a minute back, so alice's next write is later whatever the
    // two clocks read within one millisecond.
    let past = gaesup_relay::hub::now_ms() - 60_000;
    let mut mallory_device = Device::with_clock(2, gaesup_state_core::ManualClock::new(past));
    applied_seq(&alice.push(vec![alice_device.note("v1")]).await[0].status);
    let mut forged = mallory_device.note("m");
    let gaesup_state_core::Payload::Resolve { supersedes, .. } = &mut forged.payload else {
        panic!("the note is a user-resolve key")
    };
    supersedes.push(gaesup_state_core::OpId {
        tab: gaesup_state_core::TabId::new(1),
        seq: 1 << 40,
    });
    applied_seq(&mallory.push(vec![forged]).await[0].status);
    let acks = alice.push(vec![alice_device.note("v2")]).await;
    // Alice never saw mallory's note: both stand, hers shown (the later).
    assert!(
        matches!(&acks[0].status, AckStatus::Applied { value, .. } if *value == json!("v2")),
        "{acks:?}"
    );
    let snapshot = main_snapshot(&relay).await;
    let note = snapshot
        .states
        .iter()
        .find(|entry| entry.key.as_str() == "apartment/main/shared-note")
        .expect("the note");
    let gaesup_state_core::KeyState::UserResolve(state) = &note.state else {
        panic!("{note:?}")
    };
    let mut values: Vec<String> = state.entries().map(|e| e.value.to_string()).collect();
    values.sort();
    assert_eq!(values, ["\"m\"", "\"v2\""]);
}

/// A cart patch whose line is not a cart line is refused, and the cart
/// (stored and reloaded) still takes writes. Before, the line went in
/// unchecked; once a fold put it in the cart's base, a restart found the
/// stored cart unreadable and refused every cart write for good.
async fn a_cart_patch_of_the_wrong_type_is_refused_and_the_cart_stays_writable(backend: Backend) {
    let mut relay = Relay::on(backend, &[]);
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let mut honest = Device::new(1);
    let line = |id: &str, n: u32| json!([id.to_uppercase(), 100, n]);
    applied_seq(
        &writer
            .push(vec![honest.cart(json!({"apple": line("apple", 1)}))])
            .await[0]
            .status,
    );
    let mut peer = Device::new(2);
    let mut forged = peer.cart(json!({"pear": line("pear", 1)}));
    let gaesup_state_core::Payload::Patch { set, .. } = &mut forged.payload else {
        panic!("{forged:?}")
    };
    set.insert("pear".into(), json!("garbage"));
    let acks = writer.push(vec![forged]).await;
    assert_eq!(refusal(&acks[0].status), "type_mismatch", "{acks:?}");
    relay.restart();
    let mut writer = Client::writer(&relay, &main_rw()).await;
    let acks = writer
        .push(vec![honest.cart(json!({"apple": line("apple", 2)}))])
        .await;
    assert!(
        matches!(&acks[0].status, AckStatus::Applied { value, .. } if *value == json!({"apple": line("apple", 2)})),
        "{acks:?}"
    );
}

support::on_both_backends!(
    the_same_op_twice_is_one_op_and_the_ack_carries_the_canonical_value,
    a_device_catches_up_from_its_cursor_then_gets_live_ops,
    a_device_behind_the_trimmed_log_gets_a_snapshot,
    the_log_is_trimmed_by_bytes_as_well_as_by_count,
    the_log_s_bytes_are_known_again_after_a_restart,
    every_auth_case_is_refused_with_its_code,
    the_core_decides_on_the_relay_as_in_a_tab,
    every_limit_answers_with_its_code_and_the_relay_keeps_serving,
    ops_count_against_the_rate_by_the_work_they_cost,
    a_subject_s_connections_and_http_pushes_share_one_budget,
    malformed_frames_get_specific_codes_and_others_are_still_served,
    a_slow_reader_is_disconnected_and_resyncs_from_its_cursor,
    the_http_fallback_pushes_pulls_with_a_long_poll_and_snapshots,
    a_silent_socket_is_closed_within_three_heartbeats,
    sigterm_finishes_what_is_in_flight_and_exits_cleanly,
    a_socket_ends_when_its_token_does,
    a_socket_that_never_says_hello_is_closed_however_it_pings,
    websocket_pings_before_a_hello_do_not_keep_a_socket_alive,
    a_push_is_refused_for_its_token_before_its_body_is_read,
    a_hello_naming_a_stream_twice_is_refused,
    a_device_that_never_reads_is_let_go,
    a_device_that_never_reads_is_cut_off_by_its_queued_bytes,
    another_op_under_a_taken_id_is_refused_not_a_duplicate,
    a_tab_belongs_to_the_subject_that_pushed_its_first_op,
    an_op_refused_when_admitted_leaves_no_owner,
    a_subject_s_new_tabs_past_its_hourly_claims_are_left_unowned,
    a_resent_outbox_is_answered_as_duplicates_in_one_push,
    a_narrowed_device_on_http_moves_past_ops_it_may_not_read,
    live_ops_reach_each_device_as_its_token_reads_them,
    made_up_units_of_one_building_take_only_its_share,
    ops_stamped_near_the_horizon_are_refused_so_every_node_applies_what_one_admits,
    a_reset_whose_horizon_vouches_for_a_write_ahead_is_refused_not_acked,
    a_stream_the_token_may_not_read_is_refused_alone,
    ops_for_apartments_the_token_may_not_write_leave_no_stream_behind,
    a_reset_that_would_pass_the_slot_bound_is_refused,
    devices_that_never_read_their_catch_up_hold_a_page_each,
    a_catch_up_of_many_pages_meets_live_ops_without_a_gap,
    a_catch_up_cut_short_sends_nothing_live_after_it,
    a_resolve_naming_another_tab_s_future_writes_does_not_silence_them,
    a_cart_patch_of_the_wrong_type_is_refused_and_the_cart_stays_writable,
);
