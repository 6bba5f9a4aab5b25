//! The browser's link logic (`gaesup_protocol::Link`, no I/O of its own)
//! driven against the real relay the way the browser adapter drives it:
//! offline edits kept across a reload and flushed on reconnect, two devices
//! converging, a refused token, the HTTP fallback, a device back after the
//! compaction horizon. Each test runs on both stores (embedded and Redis).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gaesup_protocol::{Link, LinkStatus, StreamId};
use gaesup_state_core::{
    MAX_KEYS_PER_DECLARATION, MAX_SYNC_STATES, ManualClock, MemoryStorage, Scope, Storage, Strategy,
};
use serde_json::json;
use support::{Backend, Device, Relay, main_rw, now_s};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now_ms() -> u64 {
    gaesup_relay::hub::now_ms()
}

/// A device: its replica, its storage (localStorage), its link, its socket.
struct Browser {
    device: Device,
    storage: MemoryStorage,
    link: Link,
    socket: Option<Socket>,
    /// Pretend WebSockets are blocked (a proxy).
    ws_blocked: bool,
    /// Frames to send on the next turn.
    pending: Vec<String>,
    /// Every ack the link reported, in order.
    acks: Vec<gaesup_protocol::Ack>,
    /// The number of states in each snapshot received, in order.
    snapshot_sizes: Vec<usize>,
    /// The key each snapshot received said it follows, and its last key.
    snapshot_keys: Vec<(
        Option<gaesup_state_core::FullKey>,
        Option<gaesup_state_core::FullKey>,
    )>,
    /// Cut the socket once it brought this many snapshot pieces with more
    /// to come (a connection that never lasts a whole snapshot).
    pieces_per_connection: Option<usize>,
    /// Snapshot pieces with more to come the open socket brought.
    pieces_on_socket: usize,
    /// The code of every error the link reported, in order.
    errors: Vec<String>,
    /// Every re-base this device wrote, in order.
    rebases: Vec<gaesup_state_core::Op>,
    /// Re-bases put off: the key was not declared on this page.
    put_off: usize,
    /// How to garble the next ops frames that carry ops on their way in,
    /// in turn (a broken proxy, a relay or writer of a newer version).
    garble: Vec<fn(&str) -> String>,
}

fn streams() -> Vec<StreamId> {
    vec!["apartment:main".parse().unwrap(), StreamId::Global]
}

impl Browser {
    fn new(tab: u64, token: Option<String>) -> Self {
        Self::on(Device::new(tab), token)
    }

    fn on(device: Device, token: Option<String>) -> Self {
        let storage = MemoryStorage::new();
        let link = Link::new(
            format!("device-{}", device.store.tab()),
            token,
            streams(),
            &storage,
        );
        Self {
            device,
            storage,
            link,
            socket: None,
            ws_blocked: false,
            pending: Vec::new(),
            acks: Vec::new(),
            snapshot_sizes: Vec::new(),
            snapshot_keys: Vec::new(),
            pieces_per_connection: None,
            pieces_on_socket: 0,
            errors: Vec::new(),
            rebases: Vec::new(),
            put_off: 0,
            garble: Vec::new(),
        }
    }

    /// A reload: a new page (new tab id) over the same storage.
    fn reload(self, tab: u64, token: Option<String>) -> Self {
        self.reload_onto(Device::new(tab), token)
    }

    /// A reload onto a page that has not declared the key `missing`.
    fn reload_without(self, tab: u64, token: Option<String>, missing: &str) -> Self {
        self.reload_onto(Device::without(tab, missing), token)
    }

    fn reload_onto(self, mut device: Device, token: Option<String>) -> Self {
        let storage = self.storage;
        let tab = device.store.tab();
        let link = Link::new(format!("device-{tab}"), token, streams(), &storage);
        device
            .store
            .load(
                gaesup_state_core::Lifetime::Persistent,
                &mut storage.clone(),
            )
            .unwrap();
        Self {
            device,
            storage,
            link,
            socket: None,
            ws_blocked: self.ws_blocked,
            pending: Vec::new(),
            acks: Vec::new(),
            snapshot_sizes: Vec::new(),
            snapshot_keys: Vec::new(),
            pieces_per_connection: None,
            pieces_on_socket: 0,
            errors: Vec::new(),
            rebases: Vec::new(),
            put_off: 0,
            garble: Vec::new(),
        }
    }

    fn count(&mut self, delta: i64) {
        let op = self.device.count(delta);
        self.save();
        let frames = self.link.queue(op, &mut self.storage).unwrap();
        assert!(frames.is_empty() || self.socket.is_some());
        // Pushes of earlier writes not sent yet go too.
        self.pending.extend(frames);
    }

    /// Writes the shared note, as [`count`](Self::count) increments.
    fn note(&mut self, text: &str) {
        let op = self.device.note(text);
        self.save();
        let frames = self.link.queue(op, &mut self.storage).unwrap();
        assert!(frames.is_empty() || self.socket.is_some());
        // Pushes of earlier writes not sent yet go too.
        self.pending.extend(frames);
    }

    /// Declares the key `name` as a page does when its unit shows: then
    /// merges what storage holds of it.
    fn declare(&mut self, name: &str) {
        let key = self.device.key(name);
        let declared = self
            .device
            .store
            .declare_from(&key, Some(&mut self.storage))
            .unwrap();
        declared.loaded.unwrap().unwrap();
    }

    /// Writes the cart, as [`count`](Self::count) increments.
    fn cart(&mut self, lines: serde_json::Value) {
        let op = self.device.cart(lines);
        self.save();
        let frames = self.link.queue(op, &mut self.storage).unwrap();
        assert!(frames.is_empty() || self.socket.is_some());
        // Pushes of earlier writes not sent yet go too.
        self.pending.extend(frames);
    }

    fn save(&mut self) {
        self.device
            .store
            .persist(gaesup_state_core::Lifetime::Persistent, &mut self.storage);
    }

    /// The counter, as the lobby reads it.
    fn value(&self) -> serde_json::Value {
        self.read("count")
    }

    /// The key `name`, as the lobby reads it.
    fn read(&self, name: &str) -> serde_json::Value {
        let key = self.device.key(name);
        self.device
            .store
            .get_value(&support::lobby(), &key)
            .unwrap()
    }

    /// Whether the relay answered every op in the outbox.
    fn flushed(&self) -> bool {
        self.link.waiting() == 0
    }

    /// Whether every op of this device the relay stored came back to it
    /// (its cursor reached the op's number).
    fn heard_own_writes(&self) -> bool {
        self.acks.iter().all(|ack| match &ack.status {
            gaesup_protocol::AckStatus::Applied { stream, seq, .. }
            | gaesup_protocol::AckStatus::Duplicate { stream, seq } => {
                self.link.cursor(stream) >= *seq
            }
            gaesup_protocol::AckStatus::Refused { .. } => true,
        })
    }

    /// Does what the link says, as the browser's leading tab does; returns
    /// the frames to send and whether to close the socket.
    fn apply(&mut self, mut out: gaesup_protocol::LinkOutput) -> (Vec<String>, bool) {
        for (stream, ops) in std::mem::take(&mut out.ops) {
            let last = ops.last().map(|s| s.seq);
            for sequenced in ops {
                // Its own ops come back too: applied again, and a stale
                // refusal of one is no sign of something missed.
                let own = self.link.is_own(&sequenced.op.id);
                match self.device.store.apply_remote(&sequenced.op) {
                    Err(gaesup_state_core::Error::Stale { .. }) if own => {}
                    // As the browser (`connect/link.rs`): an op that late
                    // which would have been dropped here anyway (a
                    // user-resolve op) marks nothing.
                    Err(gaesup_state_core::Error::Stale {
                        key,
                        dropped_anyway: false,
                        ..
                    }) => self.link.refused_stale(&key, &mut self.storage),
                    Err(gaesup_state_core::Error::Stale { .. }) => {}
                    other => {
                        other.unwrap();
                    }
                }
            }
            self.save();
            if let Some(seq) = last {
                self.link.save_cursor(&stream, seq, &mut self.storage);
            }
        }
        let mut cut = false;
        for snapshot in std::mem::take(&mut out.snapshots) {
            self.snapshot_sizes.push(snapshot.states.len());
            self.snapshot_keys.push((
                snapshot.after.clone(),
                snapshot.states.last().map(|entry| entry.key.clone()),
            ));
            if snapshot.more {
                self.pieces_on_socket += 1;
                cut |= self
                    .pieces_per_connection
                    .is_some_and(|n| self.pieces_on_socket >= n);
            }
            for entry in &snapshot.states {
                self.device.store.merge_state(entry).unwrap();
            }
            self.save();
            // As the browser does: the cursor moves once the last piece is
            // merged (the link set its number).
            if !snapshot.more {
                self.link
                    .snapshot_saved(&snapshot.stream, snapshot.seq, &mut self.storage);
            }
        }
        out.absorb(self.link.settle(&mut self.storage));
        let mut send = std::mem::take(&mut out.send);
        // What the browser's leading tab does with a stale counter.
        for rebase in std::mem::take(&mut out.rebase) {
            let written = match &rebase.resolved {
                Some(resolved) => self.device.store.rebase_resolve(
                    &rebase.writer,
                    &rebase.key,
                    &resolved.value,
                    &resolved.supersedes,
                ),
                None => {
                    self.device
                        .store
                        .rebase(&rebase.writer, &rebase.key, rebase.fields.as_deref())
                }
            };
            if let Err(gaesup_state_core::Error::UnknownKey { .. }) = written {
                // Not declared on this page: the held writes wait.
                self.link.rebase_later(&rebase.key);
                self.put_off += 1;
                continue;
            }
            let id = match written {
                Ok(write) => {
                    self.save();
                    self.rebases.push(write.op.clone());
                    let id = write.op.id;
                    send.extend(self.link.queue(write.op, &mut self.storage).unwrap());
                    Some(id)
                }
                Err(_) => None,
            };
            let refused = self.link.rebased(&rebase.key, id, &mut self.storage);
            self.acks.extend(refused);
        }
        self.acks.extend(out.acks);
        self.errors.extend(out.error.map(|(code, _)| code));
        (send, out.close || cut)
    }

    /// Runs the adapter's loop against `relay` for a fixed time, whatever
    /// happens: only for checking that something does not happen.
    async fn pump(&mut self, relay: &Relay, for_ms: u64) {
        let end = Instant::now() + Duration::from_millis(for_ms);
        self.run(relay, end, |_| false).await;
    }

    /// Runs the adapter's loop against `relay` until `done` (checked after
    /// every turn); panics naming `what` if it takes longer than
    /// [`support::DEADLINE`].
    async fn pump_until(&mut self, relay: &Relay, what: &str, done: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        if !self.run(relay, started + support::DEADLINE, done).await {
            panic!(
                "device-{} gave up after {:?} waiting until {what}: link {:?}, {} op(s) waiting, \
                 {} ack(s), errors {:?}",
                self.device.store.tab(),
                started.elapsed(),
                self.link.status(),
                self.link.waiting(),
                self.acks.len(),
                self.errors,
            );
        }
    }

    /// Turns the adapter's loop until `stop` (checked after every turn) or
    /// `end`; whether it stopped.
    async fn run(&mut self, relay: &Relay, end: Instant, stop: impl Fn(&Self) -> bool) -> bool {
        while Instant::now() < end {
            self.turn(relay).await;
            if stop(self) {
                return true;
            }
        }
        false
    }

    /// One turn of the adapter's loop.
    async fn turn(&mut self, relay: &Relay) {
        if self.socket.is_none() && self.link.wants_socket(now_ms()) {
            self.link.connecting();
            let opened = if self.ws_blocked {
                None
            } else {
                tokio_tungstenite::connect_async(relay.ws_url()).await.ok()
            };
            match opened {
                Some((mut socket, _)) => {
                    self.pieces_on_socket = 0;
                    for frame in self.link.on_open(now_ms()) {
                        socket.send(Message::text(frame)).await.unwrap();
                    }
                    self.socket = Some(socket);
                }
                None => {
                    self.link.on_close(0.0, now_ms());
                }
            }
        }
        if self.link.status() == &LinkStatus::HttpFallback {
            // As the browser's push loop does: the relay's limits first.
            if let Some(ask) = self.link.http_limits(now_ms()) {
                let answer =
                    support::try_http("GET", relay.url(ask.path()), Some(main_rw()), None).await;
                let answer = answer
                    .as_ref()
                    .map(|(status, text)| (*status, text.as_str()));
                self.link.on_http_limits(ask, answer, now_ms());
            }
            let mut requests = Vec::new();
            if let Some(body) = self.link.http_push(now_ms()) {
                requests.push(("POST", "/v1/push".to_owned(), Some(body)));
            }
            for stream in streams() {
                requests.push(("GET", self.link.http_pull(&stream, 200), None));
            }
            for (method, path, body) in requests {
                match support::try_http(method, relay.url(&path), Some(main_rw()), body).await {
                    Some((status, text)) => {
                        let out = self
                            .link
                            .on_http(status, &text, now_ms(), &mut self.storage);
                        let _ = self.apply(out);
                    }
                    None => {
                        // The relay itself is down, not just its socket.
                        let delay = self.link.on_http_failed(0.0);
                        tokio::time::sleep(Duration::from_millis(delay.min(100))).await;
                        break;
                    }
                }
            }
            return;
        }
        let Some(socket) = self.socket.as_mut() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        };
        let pending = std::mem::take(&mut self.pending);
        for frame in pending {
            let _ = socket.send(Message::text(frame)).await;
        }
        // As the browser's timer does (each second; a tick does nothing
        // before it is due): pings, resends of ops refused for now, and
        // the close of a socket silent for three heartbeats.
        let (frames, silent) = self.link.tick(now_ms());
        for frame in frames {
            let _ = socket.send(Message::text(frame)).await;
        }
        if silent {
            self.socket = None;
            self.link.on_close(0.0, now_ms());
            return;
        }
        match tokio::time::timeout(Duration::from_millis(30), socket.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Text(text)))) => {
                let mut text = text.as_str().to_owned();
                if !self.garble.is_empty() && text.contains(r#""payload":"#) {
                    text = self.garble.remove(0)(&text);
                }
                let out = self.link.on_text(&text, now_ms(), &mut self.storage);
                let (frames, close) = self.apply(out);
                let socket = self.socket.as_mut().unwrap();
                for frame in frames {
                    let _ = socket.send(Message::text(frame)).await;
                }
                if close {
                    self.socket = None;
                    self.link.on_close(0.0, now_ms());
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => {
                self.socket = None;
                self.link.on_close(0.0, now_ms());
            }
        }
    }
}

/// A relay started with `args`, and device A (over HTTP alone if `http`)
/// once `n` counts it made offline were all acknowledged.
async fn flushed_offline_counts(
    backend: Backend,
    args: &[&str],
    http: bool,
    n: usize,
) -> (Relay, Browser) {
    let relay = Relay::on(backend, args);
    let mut a = Browser::new(1, Some(main_rw()));
    a.ws_blocked = http;
    for _ in 0..n {
        a.count(1);
    }
    a.pump_until(
        &relay,
        &format!("A's {n} counts are acknowledged"),
        Browser::flushed,
    )
    .await;
    (relay, a)
}

/// A device back with more offline writes than the relay takes at once
/// (15, at five ops a second, bursts of ten): the pushes past the budget are
/// refused for now, as rate limited, and the device sends them again,
/// paced, until every one is in. None is refused for good, and another
/// device counts them all.
async fn rate_limited_offline_writes(http: bool, backend: Backend) {
    let (relay, a) =
        flushed_offline_counts(backend, &["--max-ops-per-second", "5"], http, 15).await;
    let limited = |ack: &&gaesup_protocol::Ack| {
        matches!(&ack.status, gaesup_protocol::AckStatus::Refused { code, .. }
            if code == gaesup_protocol::code::RATE_LIMITED)
    };
    // Over a socket the welcome sends every push at once, past the
    // bucket; over HTTP one push a turn, which passes the bucket too as
    // long as a turn takes under a second: not asserted there.
    assert!(
        http || a.acks.iter().any(|ack| limited(&ack)),
        "none was rate limited"
    );
    let answered: Vec<_> = a.acks.iter().filter(|ack| !limited(ack)).collect();
    assert_eq!(answered.len(), 15, "{:?}", a.acks);
    assert!(refused(&a).iter().all(limited), "{:?}", a.acks);
    let mut b = Browser::new(2, Some(main_rw()));
    b.pump_until(&relay, "B has A's 15 counts", |b| b.value() == json!(15))
        .await;
}

async fn offline_writes_past_the_rate_are_resent_until_all_are_in(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(rate_limited_offline_writes(false, backend))
        .await;
}

async fn over_http_too_offline_writes_past_the_rate_are_resent_until_all_are_in(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(rate_limited_offline_writes(true, backend))
        .await;
}

/// A device whose WebSocket never gets through, to a relay taking five
/// ops a push (this build pushes up to 256): it asks the relay's limits
/// over HTTP before pushing, and its offline writes all go in.
async fn over_http_alone_a_device_keeps_to_the_relay_s_limits(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let (_relay, a) =
                flushed_offline_counts(backend, &["--max-ops-per-push", "5"], true, 12).await;
            assert!(refused(&a).is_empty(), "{:?}", a.acks);
            assert!(a.errors.is_empty(), "{:?}", a.errors);
            assert_eq!(a.link.status(), &LinkStatus::HttpFallback);
        })
        .await;
}

async fn offline_edits_survive_a_reload_and_reach_another_device(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let mut relay = Relay::on(backend, &[]);
            relay.kill();
            // Device A edits while the relay is down, then reloads.
            let mut a = Browser::new(1, Some(main_rw()));
            a.count(2);
            a.count(3);
            // Fixed time: the relay is down, nothing may get through.
            a.pump(&relay, 300).await;
            assert_eq!(a.link.waiting(), 2);
            assert_ne!(a.link.status(), &LinkStatus::Connected);
            let mut a = a.reload(11, Some(main_rw()));
            assert_eq!(a.link.waiting(), 2, "the outbox survived the reload");
            a.count(5);
            // The relay comes back (on the same store).
            let relay = relay.successor(&[]);
            a.link.online();
            a.pump_until(&relay, "A is connected and its outbox flushed", |a| {
                a.link.status() == &LinkStatus::Connected && a.link.waiting() == 0
            })
            .await;
            assert_eq!(a.link.status(), &LinkStatus::Connected);
            assert_eq!(a.link.waiting(), 0, "flushed in order, acknowledged");
            // Device B starts from nothing and catches up.
            let mut b = Browser::new(2, Some(main_rw()));
            b.pump_until(&relay, "B has A's three counts", |b| b.value() == json!(10))
                .await;
            assert_eq!(b.value(), json!(10));
            b.count(-1);
            b.pump_until(&relay, "B's count is acknowledged", Browser::flushed)
                .await;
            a.pump_until(&relay, "A has B's count", |a| a.value() == json!(9))
                .await;
            assert_eq!(a.value(), json!(9));
            assert_eq!(a.device.store.states(), b.device.store.states());
        })
        .await;
}

/// An ops frame cut short, as a broken proxy might pass it on.
fn cut_short(frame: &str) -> String {
    frame[..frame.len() / 2].to_owned()
}

/// An ops frame whose first op is of a kind no version writes yet, as a
/// writer of a newer version might send it.
fn newer_kind(frame: &str) -> String {
    let kind = r#""payload":{"kind":""#;
    frame.replacen(kind, &format!("{kind}frobnicated_"), 1)
}

/// A writes a line of the cart, then another, to the cart B follows; the
/// frame that brings B the first is garbled by `garble`. Returns A and B
/// once B has the second line, and the cart with both.
async fn a_garbled_line(
    relay: &Relay,
    garble: fn(&str) -> String,
) -> (Browser, Browser, serde_json::Value) {
    let mut a = Browser::new(1, Some(main_rw()));
    let mut b = Browser::new(2, Some(main_rw()));
    for device in [&mut a, &mut b] {
        device
            .pump_until(relay, "connected", |d| {
                d.link.status() == &LinkStatus::Connected
            })
            .await;
    }
    // A merge key: each write carries only the lines it changed, so one
    // skipped is lost for good (a counter's carries its writer's total,
    // which a later one brings too).
    b.garble = vec![garble];
    a.cart(lines(&[("apple", 1)]));
    a.pump_until(relay, "A's apple is acknowledged", Browser::flushed)
        .await;
    b.pump_until(relay, "B got the garbled frame", |b| b.garble.is_empty())
        .await;
    a.cart(lines(&[("apple", 1), ("pear", 2)]));
    a.pump_until(relay, "A's pear is acknowledged", Browser::flushed)
        .await;
    b.pump_until(relay, "B has A's pear", |b| {
        b.read("cart").get("pear").is_some()
    })
    .await;
    let both = lines(&[("apple", 1), ("pear", 2)]);
    assert_eq!(a.read("cart"), both);
    (a, b, both)
}

/// A frame the device cannot read arrives between two it can (a broken
/// proxy): the device does not take the next one, whose cursor would
/// move past it, but closes the socket and asks again from its cursor, so
/// nothing of the unread frame is lost.
async fn an_unreadable_ops_frame_is_fetched_again_not_skipped(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let (a, b, both) = a_garbled_line(&relay, cut_short).await;
            assert_eq!(b.read("cart"), both, "the apple came again");
            assert_eq!(b.errors, [gaesup_protocol::code::MALFORMED]);
            assert_eq!(b.link.status(), &LinkStatus::Connected);
            assert_eq!(a.device.store.states(), b.device.store.states());
        })
        .await;
}

/// An op of a kind this version cannot read (a newer writer's) arrives
/// between two it can: the device takes the others and goes on, and keeps
/// its stored cursor before that op, so its next page (a version that
/// reads it, here the same with the op intact) fetches it again.
async fn an_op_this_version_cannot_read_is_fetched_again_by_the_next_page(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let (a, b, both) = a_garbled_line(&relay, newer_kind).await;
            assert_eq!(
                b.read("cart"),
                lines(&[("pear", 2)]),
                "the apple is not read"
            );
            assert_eq!(b.errors, [gaesup_protocol::code::UNREADABLE]);
            let mut b = b.reload(12, Some(main_rw()));
            b.pump_until(&relay, "B's next page has the apple", |b| {
                b.read("cart") == both
            })
            .await;
            assert_eq!(a.device.store.states(), b.device.store.states());
        })
        .await;
}

/// A device whose cursor is past the relay's head (the relay's store was
/// restored from an older backup, or relay.json now names another relay)
/// takes the relay's snapshot, and after a reload every op that followed
/// it, under numbers its old cursor had already passed.
async fn a_cursor_past_the_relay_s_head_starts_again_from_its_snapshot(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let mut old = Relay::on(backend, &[]);
            let mut a = Browser::new(1, Some(main_rw()));
            for _ in 0..5 {
                a.count(1);
            }
            a.pump_until(&old, "A's five counts are in", Browser::flushed)
                .await;
            a.pump_until(&old, "A heard its own counts", Browser::heard_own_writes)
                .await;
            // Another relay, with less in it: one op.
            old.kill();
            let new = Relay::on(backend, &[]);
            let mut b = Browser::new(2, Some(main_rw()));
            b.count(10);
            b.pump_until(&new, "B's count is in", Browser::flushed)
                .await;
            a.pump_until(&new, "A took the new relay's snapshot", |a| {
                a.value() == json!(15)
            })
            .await;
            // While A is away, C counts a hundred (op 2, under a number
            // A's old cursor, 5, had passed), then B four more (3 to 6).
            let mut c = Browser::new(3, Some(main_rw()));
            c.count(100);
            c.pump_until(&new, "C's count is in", Browser::flushed)
                .await;
            for _ in 0..4 {
                b.count(1);
            }
            b.pump_until(&new, "B's counts are in", Browser::flushed)
                .await;
            let mut a = a.reload(11, Some(main_rw()));
            a.pump_until(&new, "A has B's and C's counts", |a| {
                a.value() == json!(119)
            })
            .await;
        })
        .await;
}

async fn a_refused_token_stops_the_link_and_the_edits_stay(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let expired = support::token_until(
                &[("main", gaesup_relay::token::Access::Rw, None)],
                None,
                now_s() - 10,
            );
            let mut a = Browser::new(1, Some(expired));
            a.count(4);
            let expired = LinkStatus::Refused(gaesup_protocol::code::TOKEN_EXPIRED.into());
            a.pump_until(&relay, "the relay refuses the expired token", |a| {
                a.link.status() == &expired
            })
            .await;
            // Fixed time: the link must not try again with the refused token.
            a.pump(&relay, 500).await;
            assert!(a.socket.is_none(), "no socket opened again");
            assert_eq!(
                a.link.status(),
                &LinkStatus::Refused(gaesup_protocol::code::TOKEN_EXPIRED.into())
            );
            assert!(
                !a.link.wants_socket(now_ms()),
                "no retry with a refused token"
            );
            assert_eq!(a.link.waiting(), 1, "nothing lost");
            assert_eq!(a.value(), json!(4), "the app keeps working locally");
        })
        .await;
}

async fn blocked_websockets_fall_back_to_http_and_still_sync(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let mut a = Browser::new(1, Some(main_rw()));
            a.ws_blocked = true;
            a.count(7);
            a.pump_until(&relay, "A's count is pushed over HTTP", |a| {
                a.link.status() == &LinkStatus::HttpFallback && a.link.waiting() == 0
            })
            .await;
            assert_eq!(a.link.status(), &LinkStatus::HttpFallback);
            assert_eq!(a.link.waiting(), 0, "pushed over HTTP");
            let mut b = Browser::new(2, Some(main_rw()));
            b.pump_until(&relay, "B has A's count", |b| b.value() == json!(7))
                .await;
            assert_eq!(b.value(), json!(7));
            b.count(1);
            b.pump_until(&relay, "B's count is acknowledged", Browser::flushed)
                .await;
            a.pump_until(&relay, "A has pulled B's count", |a| a.value() == json!(8))
                .await;
            assert_eq!(a.value(), json!(8), "pulled over HTTP");
        })
        .await;
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Device A, its clock twenty days back.
fn twenty_days_ago() -> (Browser, ManualClock) {
    let clock = support::clock();
    clock.set(now_ms() - 20 * DAY_MS);
    let a = Browser::on(Device::with_clock(1, clock.clone()), Some(main_rw()));
    (a, clock)
}

/// Device A counts once online at twenty days ago, then goes away and
/// counts 2 more; two days later C counts 100 (A never sees it). Returns A
/// and A's clock.
async fn away_twenty_days(relay: &Relay) -> (Browser, ManualClock) {
    let (mut a, clock) = twenty_days_ago();
    a.count(1);
    a.pump_until(relay, "A's count is acknowledged", Browser::flushed)
        .await;
    assert_eq!(a.link.waiting(), 0);
    a.socket = None;
    a.link.on_close(0.0, now_ms());
    a.count(2);
    let later = support::clock();
    later.set(now_ms() - 18 * DAY_MS);
    let mut c = Browser::on(Device::with_clock(3, later), Some(main_rw()));
    c.pump_until(relay, "C has A's count", |c| c.value() == json!(1))
        .await;
    c.count(100);
    c.pump_until(relay, "C's count is acknowledged", Browser::flushed)
        .await;
    (a, clock)
}

/// B catches up, counts 10 today (so on the relay A's and C's slots fall
/// behind the counter's compaction horizon), and A comes back until the
/// relay answered every op in its outbox. What B then sees of it is the
/// caller's to wait for.
async fn b_counts_and_a_comes_back(relay: &Relay, a: &mut Browser, clock: &ManualClock) -> Browser {
    let mut b = Browser::new(2, Some(main_rw()));
    b.pump_until(relay, "B has A's and C's counts", |b| {
        b.value() == json!(101)
    })
    .await;
    b.count(10);
    b.pump_until(relay, "B's count is acknowledged", Browser::flushed)
        .await;
    clock.set(now_ms());
    a.link.online();
    a.pump_until(relay, "A's outbox is answered", Browser::flushed)
        .await;
    b
}

fn refused(browser: &Browser) -> Vec<&gaesup_protocol::Ack> {
    browser
        .acks
        .iter()
        .filter(|ack| matches!(ack.status, gaesup_protocol::AckStatus::Refused { .. }))
        .collect()
}

/// A's offline ops fall behind the horizon and the relay refuses them as
/// stale. A re-bases the counter once caught up (a re-base made before
/// would drop C's count, folded away on the relay and never seen by A):
/// every device ends at the exact total, and A's offline writes are
/// answered with the re-base's ack.
async fn away_past_the_horizon(http: bool, backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let (mut a, clock) = away_twenty_days(&relay).await;
    a.count(3);
    assert_eq!(a.link.waiting(), 2);
    a.ws_blocked = http;
    let mut b = b_counts_and_a_comes_back(&relay, &mut a, &clock).await;
    b.pump_until(&relay, "B has A's re-base", |b| b.value() == json!(116))
        .await;
    assert_eq!(a.link.waiting(), 0, "the re-base was acknowledged");
    assert_eq!(a.value(), json!(116));
    assert_eq!(b.value(), json!(116), "B counts A's offline increments");
    assert!(refused(&a).is_empty(), "{:?}", a.acks);
    assert_eq!(
        a.acks.len(),
        4,
        "three counts and the re-base: {:?}",
        a.acks
    );
    // Both keep counting from there, exactly.
    b.count(-1);
    b.pump_until(&relay, "B's count is acknowledged", Browser::flushed)
        .await;
    a.pump_until(&relay, "A has B's count", |a| a.value() == json!(115))
        .await;
    assert_eq!(a.value(), json!(115));
    assert_eq!(b.value(), json!(115));
}

async fn a_device_away_past_the_horizon_rebases_its_counter_and_nothing_is_lost(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(away_past_the_horizon(false, backend))
        .await;
}

async fn over_http_the_rebase_waits_until_the_device_has_caught_up(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(away_past_the_horizon(true, backend))
        .await;
}

/// A cart of `(product, quantity)` lines, as the cart unit stores them.
fn lines(items: &[(&str, u32)]) -> serde_json::Value {
    let lines: serde_json::Map<String, serde_json::Value> = items
        .iter()
        .map(|(id, quantity)| ((*id).to_owned(), json!([id.to_uppercase(), 100, quantity])))
        .collect();
    serde_json::Value::Object(lines)
}

/// A's cart twenty days back, its offline edit, C's apple two days later
/// and B's pear today (see [`cart_away_past_the_horizon`]); A's clock set
/// back to now, A still offline. Returns A and B.
async fn cart_edited_while_a_was_away(relay: &Relay) -> (Browser, Browser) {
    let (mut a, clock) = twenty_days_ago();
    a.cart(lines(&[("apple", 1), ("pear", 1)]));
    a.pump_until(relay, "A's cart is acknowledged", Browser::flushed)
        .await;
    a.socket = None;
    a.link.on_close(0.0, now_ms());
    a.cart(lines(&[("apple", 2), ("pear", 1), ("fig", 1)]));
    let later = support::clock();
    later.set(now_ms() - 18 * DAY_MS);
    let mut c = Browser::on(Device::with_clock(3, later), Some(main_rw()));
    c.pump_until(relay, "C has A's cart", |c| {
        c.read("cart") == lines(&[("apple", 1), ("pear", 1)])
    })
    .await;
    c.cart(lines(&[("apple", 5), ("pear", 1)]));
    c.pump_until(relay, "C's apple is acknowledged", Browser::flushed)
        .await;
    let mut b = Browser::new(2, Some(main_rw()));
    b.pump_until(relay, "B has C's apple", |b| {
        b.read("cart") == lines(&[("apple", 5), ("pear", 1)])
    })
    .await;
    b.cart(lines(&[("apple", 5), ("pear", 3)]));
    b.pump_until(relay, "B's pear is acknowledged", Browser::flushed)
        .await;
    clock.set(now_ms());
    (a, b)
}

/// The same for a merge key. A, twenty days back, writes the cart, then
/// offline changes apple and adds fig; C, two days later, changes apple
/// again (newer than A's); B today changes pear, so on the relay A's
/// offline write falls behind the fold and is refused as stale. A catches
/// up and re-bases the fields its write touched as it reads them then:
/// its fig, C's apple (a re-base takes back nothing a later write
/// decided). Every device ends with the same cart.
async fn cart_away_past_the_horizon(http: bool, backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let (mut a, mut b) = cart_edited_while_a_was_away(&relay).await;
    a.ws_blocked = http;
    a.link.online();
    let expected = lines(&[("apple", 5), ("pear", 3), ("fig", 1)]);
    a.pump_until(&relay, "A's outbox is answered", |a| {
        a.flushed() && a.read("cart") == expected
    })
    .await;
    b.pump_until(&relay, "B has A's re-based fig", |b| {
        b.read("cart") == expected
    })
    .await;
    assert_eq!(a.read("cart"), expected);
    assert_eq!(
        b.read("cart"),
        expected,
        "A's fig reached B; C's apple stays"
    );
    assert!(refused(&a).is_empty(), "{:?}", a.acks);
    assert_eq!(a.acks.len(), 3, "two writes and the re-base: {:?}", a.acks);
    // The fields A's refused write touched, not the whole cart.
    match &a.rebases[..] {
        [rebase] => match &rebase.payload {
            gaesup_state_core::Payload::Patch { set, remove } => {
                let fields: Vec<&String> = set.keys().chain(remove).collect();
                assert_eq!(fields, ["apple", "fig"], "{rebase:?}");
            }
            other => panic!("a whole value: {other:?}"),
        },
        other => panic!("one re-base: {other:?}"),
    }
    let mut fresh = Browser::new(5, Some(main_rw()));
    fresh
        .pump_until(&relay, "a fresh device has the same cart", |f| {
            f.read("cart") == expected
        })
        .await;
}

/// A comes back on a page that does not show the cart (its unit is not
/// on it), so the tab holding the link cannot write the re-base when the
/// relay refuses A's offline edit as stale: the edit waits in the outbox,
/// unanswered and not refused, and is re-based once the cart shows (at
/// the next message from the relay: a heartbeat of a second here).
async fn a_rebase_waits_until_the_key_is_declared(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &["--heartbeat-ms", "1000"]);
            let (a, mut b) = cart_edited_while_a_was_away(&relay).await;
            let mut a = a.reload_without(11, Some(main_rw()), "cart");
            a.pump_until(&relay, "A's re-base is put off", |a| a.put_off > 0)
                .await;
            // Fixed time: nothing may be refused while the cart is unknown.
            a.pump(&relay, 1_000).await;
            assert!(a.acks.is_empty(), "{:?}", a.acks);
            assert!(a.rebases.is_empty(), "{:?}", a.rebases);
            assert_eq!(a.link.waiting(), 1, "the offline edit still waits");
            assert!(
                a.put_off > 0,
                "the relay refused it and the re-base was put off"
            );
            a.declare("cart");
            let expected = lines(&[("apple", 5), ("pear", 3), ("fig", 1)]);
            a.pump_until(&relay, "A re-based the cart", |a| {
                a.flushed() && a.read("cart") == expected
            })
            .await;
            b.pump_until(&relay, "B has A's fig", |b| b.read("cart") == expected)
                .await;
            assert!(refused(&a).is_empty(), "{:?}", a.acks);
            assert_eq!(a.rebases.len(), 1, "{:?}", a.rebases);
        })
        .await;
}

/// The notes of the shared note's conflict, as the lobby reads them.
fn note_conflicts(browser: &Browser) -> Vec<serde_json::Value> {
    let key = browser.device.key("shared-note");
    let mut values: Vec<serde_json::Value> = browser
        .device
        .store
        .conflicts(&support::lobby(), &key)
        .unwrap()
        .into_iter()
        .map(|conflict| conflict.value)
        .collect();
    values.sort_by_key(serde_json::Value::to_string);
    values
}

/// The same for the shared note (user-resolve). A, twenty days back,
/// writes the note and, offline, edits it; B today edits it too, so on
/// the relay A's edit lies more than 14 days behind B's and is refused as
/// stale. Before, the relay took it, dropped it on arrival and acked it
/// as applied: the edit was gone without a word, on A too. A catches up
/// and writes its edit again: every device shows both edits side by side,
/// the conflict it would have been had A come back in time.
async fn a_device_away_past_the_horizon_writes_its_note_again_beside_the_newer_one(
    backend: Backend,
) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let (mut a, clock) = twenty_days_ago();
            a.note("before");
            a.pump_until(&relay, "A's note is acknowledged", Browser::flushed)
                .await;
            a.socket = None;
            a.link.on_close(0.0, now_ms());
            a.note("edited offline");
            let mut b = Browser::new(2, Some(main_rw()));
            b.pump_until(&relay, "B has A's note", |b| {
                b.read("shared-note") == json!("before")
            })
            .await;
            b.note("edited here");
            b.pump_until(&relay, "B's note is acknowledged", Browser::flushed)
                .await;
            clock.set(now_ms());
            a.link.online();
            let both = [json!("edited here"), json!("edited offline")];
            a.pump_until(&relay, "A's outbox is answered", |a| {
                a.flushed() && note_conflicts(a) == both
            })
            .await;
            b.pump_until(&relay, "B has A's edit beside its own", |b| {
                note_conflicts(b) == both
            })
            .await;
            assert!(refused(&a).is_empty(), "{:?}", a.acks);
            assert_eq!(a.rebases.len(), 1, "{:?}", a.rebases);
            let mut fresh = Browser::new(5, Some(main_rw()));
            fresh
                .pump_until(&relay, "a fresh device has the conflict", |f| {
                    note_conflicts(f) == both
                })
                .await;
        })
        .await;
}

/// A device away since before another's note, which writes the note
/// itself nineteen days later: that note lies more than 14 days behind its
/// own when it comes back, and is refused there as stale. It would have
/// been dropped anyway, so it marks nothing: the device's stale cart edit
/// made meanwhile is still re-based (a mark would have refused it for good).
async fn a_late_note_from_elsewhere_leaves_the_stream_re_basing(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let (mut a, _) = cart_edited_while_a_was_away(&relay).await;
            // D's note, long before A's: D's clock 19 days back.
            let clock = support::clock();
            clock.set(now_ms() - 19 * DAY_MS);
            let mut d = Device::with_clock(6, clock);
            let mut writer = support::Client::writer(&relay, &main_rw()).await;
            let acks = writer.push(vec![d.note("from D, long ago")]).await;
            assert!(
                matches!(acks[0].status, gaesup_protocol::AckStatus::Applied { .. }),
                "{acks:?}"
            );
            a.note("from A, today");
            a.link.online();
            let expected = lines(&[("apple", 5), ("pear", 3), ("fig", 1)]);
            a.pump_until(&relay, "A re-based its cart", |a| {
                a.flushed() && a.read("cart") == expected
            })
            .await;
            let mark = format!("{}apartment:main", gaesup_protocol::link::NO_REBASE_PREFIX);
            assert_eq!(a.storage.get(&mark).unwrap(), None);
            assert_eq!(a.read("shared-note"), json!("from A, today"));
        })
        .await;
}

async fn a_device_away_past_the_horizon_rebases_the_cart_lines_it_wrote(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(cart_away_past_the_horizon(false, backend))
        .await;
}

async fn over_http_too_the_cart_lines_are_rebased_once_caught_up(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(cart_away_past_the_horizon(true, backend))
        .await;
}

/// The edge a re-base must not cross: A also counts a day before it is
/// back, so its own horizon passes C's count, which it then refuses as
/// stale when it catches up. A re-base from A would make every device
/// lose C's count; A does not re-base, its stale write is refused for
/// good (the documented limit), and it takes the relay's state whole,
/// which counts C's: every device agrees. Over HTTP the push's answer may
/// come before the pull that brings C's count: the decision waits for it.
async fn refused_a_relayed_op(http: bool, backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let (mut a, clock) = away_twenty_days(&relay).await;
    clock.set(now_ms() - DAY_MS);
    a.count(3);
    a.ws_blocked = http;
    let mut b = b_counts_and_a_comes_back(&relay, &mut a, &clock).await;
    b.pump_until(&relay, "B has A's +3", |b| b.value() == json!(114))
        .await;
    assert_eq!(b.value(), json!(114), "C's count survives; A's +2 is lost");
    a.pump_until(&relay, "A took the relay's count", |a| {
        a.value() == json!(114)
    })
    .await;
    assert_eq!(a.value(), json!(114), "A took the relay's count, C's in it");
    let stale = refused(&a);
    assert!(
        matches!(&stale[..], [ack] if matches!(&ack.status,
            gaesup_protocol::AckStatus::Refused { code, .. }
                if code == gaesup_protocol::code::STALE)),
        "{:?}",
        a.acks
    );
    assert_eq!(a.link.waiting(), 0);
}

async fn a_device_that_refused_a_relayed_op_as_stale_does_not_rebase_over_it(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(refused_a_relayed_op(false, backend))
        .await;
}

async fn over_http_too_the_device_does_not_rebase_over_a_relayed_op_it_refused(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(refused_a_relayed_op(true, backend))
        .await;
}

/// A device whose cursor the relay's log no longer reaches catches up
/// from a snapshot, whose merge may drop without a word what lies behind
/// the device's own horizon: it never re-bases that stream, its stale
/// writes are refused for good, and nobody loses C's count.
async fn a_device_that_caught_up_from_a_snapshot_does_not_rebase(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &["--log-keep", "1"]);
            let (mut a, clock) = away_twenty_days(&relay).await;
            let mut b = b_counts_and_a_comes_back(&relay, &mut a, &clock).await;
            a.pump_until(&relay, "A took the relay's count", |a| {
                a.value() == json!(111)
            })
            .await;
            // Fixed time: B already has 111; A's refused +2 must not reach it.
            b.pump(&relay, 600).await;
            assert_eq!(b.value(), json!(111), "A's +2 never counted");
            assert_eq!(a.value(), json!(111), "A took the relay's count");
            assert!(
                matches!(&refused(&a)[..], [ack] if matches!(&ack.status,
                    gaesup_protocol::AckStatus::Refused { code, .. }
                        if code == gaesup_protocol::code::STALE)),
                "{:?}",
                a.acks
            );
            assert_eq!(a.link.waiting(), 0);
            b.count(1);
            b.pump_until(&relay, "B's count is acknowledged", Browser::flushed)
                .await;
            a.pump_until(&relay, "A has B's count", |a| a.value() == json!(112))
                .await;
            assert_eq!(a.value(), json!(112));
        })
        .await;
}

/// A device that counts before it first catches up, when the relay holds
/// an increment over fourteen days older than that: the device refuses it
/// as stale (its own write moved its horizon past it), so once its write
/// is acknowledged it takes the stream whole from the relay and counts it.
async fn a_device_that_counted_before_catching_up_takes_the_relay_s_count(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &[]);
            let (mut a, clock) = twenty_days_ago();
            a.count(1);
            a.pump_until(&relay, "A's count is acknowledged", Browser::flushed)
                .await;
            assert_eq!(a.link.waiting(), 0);
            let mut d = Browser::new(4, Some(main_rw()));
            d.count(10);
            d.pump_until(
                &relay,
                "D's count is acknowledged and D took the relay's count",
                |d| d.link.waiting() == 0 && d.value() == json!(11),
            )
            .await;
            assert_eq!(d.link.waiting(), 0);
            assert_eq!(d.value(), json!(11), "the relay's count, A's in it");
            let mut fresh = Browser::new(5, Some(main_rw()));
            fresh
                .pump_until(&relay, "the fresh device has both counts", |f| {
                    f.value() == json!(11)
                })
                .await;
            assert_eq!(fresh.value(), json!(11));
            clock.set(now_ms());
            a.pump_until(&relay, "A has D's count", |a| a.value() == json!(11))
                .await;
            assert_eq!(a.value(), json!(11));
        })
        .await;
}

/// A device's own writes that span more than the horizon come back from
/// the relay (it sends every op to every subscriber): the oldest is behind
/// the device's own horizon by then, but it is its own, not something it
/// missed, so nothing marks the stream against re-basing. Over HTTP the
/// ack comes before the pull that brings the op back.
async fn own_writes_come_back(http: bool, backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let (mut a, clock) = twenty_days_ago();
    a.ws_blocked = http;
    a.count(2);
    clock.set(now_ms() - DAY_MS);
    a.count(3);
    clock.set(now_ms());
    a.pump_until(&relay, "A's writes are acknowledged and came back", |a| {
        a.link.waiting() == 0 && a.heard_own_writes()
    })
    .await;
    assert_eq!(a.link.waiting(), 0);
    assert!(refused(&a).is_empty(), "{:?}", a.acks);
    assert_eq!(a.value(), json!(5));
    let mark = format!("{}apartment:main", gaesup_protocol::link::NO_REBASE_PREFIX);
    assert_eq!(a.storage.get(&mark).unwrap(), None);
    let mut fresh = Browser::new(5, Some(main_rw()));
    fresh
        .pump_until(&relay, "the fresh device has A's counts", |f| {
            f.value() == json!(5)
        })
        .await;
    assert_eq!(fresh.value(), json!(5));
}

async fn a_device_s_own_writes_coming_back_do_not_mark_the_stream(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(own_writes_come_back(false, backend))
        .await;
}

async fn over_http_too_a_device_s_own_writes_coming_back_do_not_mark_the_stream(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(own_writes_come_back(true, backend))
        .await;
}

/// Writes that add up to more than one frame while offline (five notes of
/// 220 KiB: 1.1 MiB, the relay's frames hold 1 MiB) all reach the relay,
/// in several pushes, and another device.
async fn offline_writes_larger_than_a_frame_together(http: bool, backend: Backend) {
    let relay = Relay::on(backend, &[]);
    let mut a = Browser::new(1, Some(main_rw()));
    a.ws_blocked = http;
    let texts: Vec<String> = (b'a'..=b'e')
        .map(|c| char::from(c).to_string().repeat(220 << 10))
        .collect();
    for text in &texts {
        a.note(text);
    }
    assert_eq!(a.link.waiting(), 5);
    a.pump_until(&relay, "A's notes are acknowledged", Browser::flushed)
        .await;
    assert_eq!(a.link.waiting(), 0, "every write acknowledged");
    let mut b = Browser::new(2, Some(main_rw()));
    b.ws_blocked = http;
    b.pump_until(&relay, "B has A's last note", |b| {
        b.read("shared-note") == json!(texts[4])
    })
    .await;
    assert_eq!(b.read("shared-note"), json!(texts[4]));
}

async fn offline_writes_larger_than_a_frame_together_all_reach_the_relay(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(offline_writes_larger_than_a_frame_together(false, backend))
        .await;
}

async fn over_http_too_offline_writes_larger_than_a_frame_together_all_reach_the_relay(
    backend: Backend,
) {
    tokio::task::LocalSet::new()
        .run_until(offline_writes_larger_than_a_frame_together(true, backend))
        .await;
}

/// Writes every key of the apartment's stream, the building- and
/// unit-scoped ones under as many units as one declaration may hold (more
/// states than one sync message may carry), and queues the ops: the
/// number written. Again, it writes every key it may write again (a
/// first-write-wins key only once).
fn write_every_key(a: &mut Browser) -> usize {
    let mut written = 0;
    for name in [
        "count",
        "notes",
        "template-note",
        "todos",
        "cart",
        "shared-note",
    ] {
        let key = a.device.key(name);
        let spec = key.spec();
        let units = match spec.scope() {
            Scope::Apartment => 1,
            _ => MAX_KEYS_PER_DECLARATION,
        };
        for n in 0..units {
            let unit: gaesup_state_core::UnitAddress = format!("main/b{n}/u{n}").parse().unwrap();
            let write = match spec.strategy() {
                Strategy::Sum => a.device.store.increment(&unit, &key, 1),
                _ => a
                    .device
                    .store
                    .set(&unit, &key, spec.default_value().clone()),
            };
            match write {
                Ok(write) => {
                    // Frames to send at once, if a socket is open.
                    let frames = a.link.queue(write.op, &mut a.storage).unwrap();
                    a.pending.extend(frames);
                    written += 1;
                }
                Err(gaesup_state_core::Error::FirstWriteWins { .. }) => {}
                Err(err) => panic!("{name}: {err}"),
            }
        }
    }
    a.save();
    written
}

/// How a device reaches the relay in [`snapshot_in_pieces`].
#[derive(Clone, Copy, PartialEq)]
enum Reach {
    Socket,
    Http,
    /// A socket cut after every snapshot piece with more to come.
    ShortSockets,
}

/// A device behind the trimmed log gets the stream's states as snapshots;
/// the browser hands each to its tabs as one sync message, which holds at
/// most MAX_SYNC_STATES states, so a stream with more keys comes in pieces
/// (over HTTP one a request, each asked for after the last key of the one
/// before; over a socket that closed between pieces, the next hello asks
/// for those after the last key merged). Every state comes exactly once.
async fn snapshot_in_pieces(reach: Reach, backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &["--log-keep", "16"]);
            let mut a = Browser::new(1, Some(main_rw()));
            let written = write_every_key(&mut a);
            assert!(written > MAX_SYNC_STATES);
            a.pump_until(&relay, "A's writes are acknowledged", Browser::flushed)
                .await;
            assert_eq!(a.link.waiting(), 0);
            let mut b = Browser::new(2, Some(main_rw()));
            b.ws_blocked = reach == Reach::Http;
            if reach == Reach::ShortSockets {
                b.pieces_per_connection = Some(1);
            }
            b.pump_until(&relay, "B has every state A wrote", |b| {
                b.device.store.states() == a.device.store.states()
            })
            .await;
            assert!(a.device.store.states().len() > MAX_SYNC_STATES);
            assert!(b.snapshot_sizes.len() >= 2, "{:?}", b.snapshot_sizes);
            assert!(
                b.snapshot_sizes.iter().all(|n| *n <= MAX_SYNC_STATES),
                "{:?}",
                b.snapshot_sizes
            );
            assert_eq!(b.device.store.states(), a.device.store.states());
            // No piece started over: each state came once, each piece
            // saying it follows the last key of the one before.
            let received: usize = b.snapshot_sizes.iter().sum();
            assert_eq!(
                received,
                a.device.store.states().len(),
                "{:?}",
                b.snapshot_sizes
            );
            let mut follows = None;
            for (after, last) in &b.snapshot_keys {
                assert_eq!(*after, follows, "{:?}", b.snapshot_keys);
                follows = last.clone();
            }
            // Its cursor moved to the snapshot's number once every piece
            // was merged, and a reload resumes there.
            let stream: StreamId = "apartment:main".parse().unwrap();
            b.pump_until(&relay, "B's cursor reaches the head", |b| {
                b.link.cursor(&stream) > 0
            })
            .await;
            let cursor = b.link.cursor(&stream);
            let b = b.reload(3, Some(main_rw()));
            assert_eq!(b.link.cursor(&stream), cursor);
        })
        .await;
}

async fn a_snapshot_of_more_states_than_a_sync_message_holds_comes_in_pieces(backend: Backend) {
    snapshot_in_pieces(Reach::Socket, backend).await;
}

async fn over_http_too_a_snapshot_in_pieces_brings_every_state(backend: Backend) {
    snapshot_in_pieces(Reach::Http, backend).await;
}

/// Before, a socket that closed between two pieces started the snapshot
/// over on the next: a device whose connections never lasted a whole
/// snapshot never caught up.
async fn sockets_cut_between_pieces_resume_the_snapshot_after_the_last_key(backend: Backend) {
    snapshot_in_pieces(Reach::ShortSockets, backend).await;
}

/// A snapshot resumed on a later socket is spliced from two heads: the
/// keys of its first pieces are only as recent as the first. What was
/// written to them in between must still come, though the socket that
/// brought the last piece goes on from the later head.
async fn writes_between_the_pieces_of_a_resumed_snapshot_still_arrive(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(async {
            let relay = Relay::on(backend, &["--log-keep", "16"]);
            let mut a = Browser::new(1, Some(main_rw()));
            write_every_key(&mut a);
            a.pump_until(&relay, "A's writes are acknowledged", Browser::flushed)
                .await;
            let mut b = Browser::new(2, Some(main_rw()));
            b.pieces_per_connection = Some(1);
            b.pump_until(&relay, "B has the first piece", |b| {
                !b.snapshot_sizes.is_empty()
            })
            .await;
            assert!(b.socket.is_none(), "cut after the first piece");
            // Every key again, those of B's first piece among them.
            assert!(write_every_key(&mut a) > 0);
            a.pump_until(
                &relay,
                "A's second writes are acknowledged",
                Browser::flushed,
            )
            .await;
            // The rest of the snapshot on sockets that last as long as
            // they need.
            b.pieces_per_connection = None;
            b.pump_until(&relay, "B has every state A wrote", |b| {
                b.device.store.states() == a.device.store.states()
            })
            .await;
        })
        .await;
}

/// Each ack carries the key's value after the op: acks of small patches to
/// a large merged value add up past a frame, and must still all arrive.
async fn acks_adding_up_past_a_frame(http: bool, backend: Backend) {
    let relay = Relay::on(backend, &[]);
    // B puts a 200 KiB line in the cart.
    let mut b = Browser::new(2, Some(main_rw()));
    let key = b.device.key("cart");
    let write = b.device.store.set(
        &support::lobby(),
        &key,
        json!({ "p1": ["y".repeat(200 << 10), 1, 1] }),
    );
    b.link.queue(write.unwrap().op, &mut b.storage).unwrap();
    b.pump_until(&relay, "B's line is acknowledged", Browser::flushed)
        .await;
    assert_eq!(b.link.waiting(), 0);
    // A, not having seen it, adds a 200 KiB line and four small
    // ones: one push of about 200 KiB, whose acks each carry the
    // relay's whole cart (both large lines, 400 KiB).
    let mut a = Browser::new(1, Some(main_rw()));
    a.ws_blocked = http;
    let mut cart = serde_json::Map::new();
    let lines = [
        json!(["x".repeat(200 << 10), 1, 1]),
        json!(["a", 1, 1]),
        json!(["b", 1, 1]),
        json!(["c", 1, 1]),
        json!(["d", 1, 1]),
    ];
    for (n, line) in lines.into_iter().enumerate() {
        cart.insert(format!("a{n}"), line);
        let write = a.device.store.set(
            &support::lobby(),
            &key,
            serde_json::Value::Object(cart.clone()),
        );
        a.link.queue(write.unwrap().op, &mut a.storage).unwrap();
    }
    a.save();
    a.pump_until(&relay, "every write of A is acknowledged", Browser::flushed)
        .await;
    let linked = if http {
        LinkStatus::HttpFallback
    } else {
        LinkStatus::Connected
    };
    assert_eq!(a.link.status(), &linked);
    assert_eq!(a.link.waiting(), 0, "every write acknowledged");
    assert_eq!(a.acks.len(), 5, "{:?}", a.acks.len());
    assert!(a.errors.is_empty(), "{:?}", a.errors);
    if http {
        // The premise: every ack with its value would not fit one answer,
        // so the last ones come without it.
        assert!(
            a.acks
                .iter()
                .any(|ack| matches!(ack.status, gaesup_protocol::AckStatus::Duplicate { .. })),
            "{:?}",
            a.acks
        );
    }
}

async fn acks_adding_up_past_a_frame_all_arrive(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(acks_adding_up_past_a_frame(false, backend))
        .await;
}

/// Over HTTP a push's acks are one answer: those that no longer fit it
/// come without their value, and every write is still acknowledged at
/// once (before, the relay answered 500 and the device resent the push).
async fn over_http_too_acks_adding_up_past_a_frame_all_arrive(backend: Backend) {
    tokio::task::LocalSet::new()
        .run_until(acks_adding_up_past_a_frame(true, backend))
        .await;
}

support::on_both_backends!(
    acks_adding_up_past_a_frame_all_arrive,
    a_late_note_from_elsewhere_leaves_the_stream_re_basing,
    a_device_away_past_the_horizon_writes_its_note_again_beside_the_newer_one,
    a_cursor_past_the_relay_s_head_starts_again_from_its_snapshot,
    over_http_too_acks_adding_up_past_a_frame_all_arrive,
    a_snapshot_of_more_states_than_a_sync_message_holds_comes_in_pieces,
    over_http_too_a_snapshot_in_pieces_brings_every_state,
    sockets_cut_between_pieces_resume_the_snapshot_after_the_last_key,
    writes_between_the_pieces_of_a_resumed_snapshot_still_arrive,
    offline_writes_larger_than_a_frame_together_all_reach_the_relay,
    over_http_too_offline_writes_larger_than_a_frame_together_all_reach_the_relay,
    offline_writes_past_the_rate_are_resent_until_all_are_in,
    over_http_too_offline_writes_past_the_rate_are_resent_until_all_are_in,
    over_http_alone_a_device_keeps_to_the_relay_s_limits,
    offline_edits_survive_a_reload_and_reach_another_device,
    an_unreadable_ops_frame_is_fetched_again_not_skipped,
    an_op_this_version_cannot_read_is_fetched_again_by_the_next_page,
    a_refused_token_stops_the_link_and_the_edits_stay,
    blocked_websockets_fall_back_to_http_and_still_sync,
    a_device_away_past_the_horizon_rebases_its_counter_and_nothing_is_lost,
    over_http_the_rebase_waits_until_the_device_has_caught_up,
    a_device_away_past_the_horizon_rebases_the_cart_lines_it_wrote,
    over_http_too_the_cart_lines_are_rebased_once_caught_up,
    a_rebase_waits_until_the_key_is_declared,
    a_device_that_refused_a_relayed_op_as_stale_does_not_rebase_over_it,
    over_http_too_the_device_does_not_rebase_over_a_relayed_op_it_refused,
    a_device_that_caught_up_from_a_snapshot_does_not_rebase,
    a_device_that_counted_before_catching_up_takes_the_relay_s_count,
    a_device_s_own_writes_coming_back_do_not_mark_the_stream,
    over_http_too_a_device_s_own_writes_coming_back_do_not_mark_the_stream,
);
