//! Between devices: a connection's link to a relay.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | [`RelayConfig`]: where the relay is, read from `relay.json` |
//! | `leader.rs` | which tab of the browser holds the link (Web Locks) |
//! | `wire.rs` | the WebSocket, and HTTP requests for the fallback |
//!
//! The link itself (outbox, cursors, handshake, acks, heartbeats, backoff,
//! when to fall back to HTTP) is `gaesup_protocol::Link`, a state machine
//! without I/O tested natively against the real relay; this module feeds
//! it the browser's events and does what it says.
//!
//! **Every tab** writes the ops of its persistent keys to the outbox in
//! `localStorage` before anything else happens to them (so a reload, a
//! crash or a closed tab loses none). **The leading tab** (one per
//! browser and apartment, elected with Web Locks) sends the outbox, applies
//! what the relay sends to its manager, passes it on to the other tabs
//! like any tab message, saves it, and only then advances its cursor; it
//! announces the link's status to the other tabs on a BroadcastChannel of
//! its own. Without Web Locks every tab leads; without BroadcastChannel
//! the others see relayed changes through the storage-event fallback but
//! not the link's status.
//!
//! Memory and ephemeral keys never leave the device (the relay refuses
//! them): ephemeral state belongs to one browser session.

mod config;
mod leader;
mod wire;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gaesup_protocol::{
    Ack, AckStatus, Link, LinkOutput, LinkStatus, MAX_OUTBOX, Sequenced, Snapshot, StreamId,
    write_outbox_entry,
};
use gaesup_state::{Confirmation, RelayStatus};
use gaesup_state_core::{ApartmentId, Lifetime, Message, Op, OpGroup, Storage};
use gloo_events::EventListener;
use gloo_timers::callback::{Interval, Timeout};
use leptos::prelude::{GetUntracked, Set, Update, WithUntracked};
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

pub use config::{RelayConfig, fetch_relay_config};

use super::Inner;
use crate::storage::BrowserStorage;

/// Where the browser's device id is kept (shared by its tabs).
const DEVICE_KEY: &str = "gaesup/device";
/// How often the leader checks its heartbeat and announces its status.
const TICK_MS: u32 = 1_000;
/// Longest long poll on the HTTP fallback (of the apartment's stream;
/// global keys are looked at between two, so they arrive within this).
const PULL_WAIT_MS: u64 = 10_000;
/// How often the HTTP fallback looks for ops to push.
const PUSH_EVERY_MS: u32 = 200;

thread_local! {
    /// Each apartment's relay status on this page, for `gaesup.relay()`.
    static STATUSES: RefCell<std::collections::BTreeMap<String, RelayStatus>> =
        RefCell::default();
}

/// The relay status of `apartment` on this page, if it has a connection.
pub(crate) fn relay_status(apartment: &str) -> Option<RelayStatus> {
    STATUSES.with(|statuses| statuses.borrow().get(apartment).cloned())
}

/// What the tab holding the link tells the browser's other tabs (and what
/// they ask), on the apartment's relay channel.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Announce {
    /// A tab asks for the status.
    Ask,
    /// The link's status.
    Status(RelayStatus),
    /// The relay's word on some writes (any tab may be waiting on them).
    Acks { acks: Vec<Ack> },
}

/// What a connection does about a relay, before and after the app knows
/// whether one is configured.
pub(super) enum RelayState {
    /// No relay will come (the default).
    None,
    /// The configuration is being read: ops bound for a relay wait here
    /// (at most [`MAX_OUTBOX`]), then go to the outbox or are forgotten.
    Waiting(Vec<Op>),
    /// Linked (or trying to be).
    Attached(Rc<Remote>),
}

/// The link of one connection (one apartment's manager) to a relay.
pub(super) struct Remote {
    conn: Weak<Inner>,
    config: RelayConfig,
    apartment: ApartmentId,
    client: String,
    storage: RefCell<Option<BrowserStorage>>,
    /// `Some` while this tab leads.
    link: RefCell<Option<Link>>,
    socket: RefCell<Option<wire::Socket>>,
    /// Bumped whenever a socket or an HTTP loop is replaced, so callbacks
    /// of an old one do nothing.
    generation: Cell<u64>,
    reconnect: RefCell<Option<Timeout>>,
    /// A re-read of the outbox, due shortly (other tabs' ops come in
    /// bursts).
    refresh: RefCell<Option<Timeout>>,
    ticker: RefCell<Option<Interval>>,
    leadership: RefCell<Option<leader::Leadership>>,
    channel: Option<BroadcastChannel>,
    listeners: RefCell<Vec<EventListener>>,
    status: leptos::prelude::RwSignal<RelayStatus>,
}

impl Remote {
    /// Starts linking `conn` to the relay of `config`, queueing `early`
    /// (ops made while the configuration was read).
    pub(super) fn start(
        conn: &Rc<Inner>,
        apartment: &ApartmentId,
        config: RelayConfig,
        early: Vec<Op>,
    ) -> Rc<Self> {
        let storage = BrowserStorage::local().ok();
        if storage.is_none() {
            conn.writer.notice(
                "localStorage is unavailable, so writes cannot wait for the relay across reloads; they are sent while this page is open.".to_owned(),
            );
        }
        let client = storage.as_ref().map_or_else(random_id, device_id);
        let channel = BroadcastChannel::new(&format!("gaesup-relay/{apartment}")).ok();
        let remote = Rc::new(Self {
            conn: Rc::downgrade(conn),
            config,
            apartment: apartment.clone(),
            client,
            storage: RefCell::new(storage),
            link: RefCell::new(None),
            socket: RefCell::new(None),
            generation: Cell::new(0),
            reconnect: RefCell::new(None),
            refresh: RefCell::new(None),
            ticker: RefCell::new(None),
            leadership: RefCell::new(None),
            channel,
            listeners: RefCell::new(Vec::new()),
            status: conn.writer.relay,
        });
        let _ = conn.manager.enable_confirmations();
        remote.show(RelayStatus {
            link: "waiting for the tab that holds the link".to_owned(),
            ..RelayStatus::default()
        });
        for op in early {
            remote.queue(op);
        }
        remote.listen();
        let weak = Rc::downgrade(&remote);
        let granted = move || {
            if let Some(remote) = weak.upgrade() {
                remote.lead();
            }
        };
        match leader::request(&format!("gaesup-relay/{apartment}"), granted.clone()) {
            Ok(leadership) => *remote.leadership.borrow_mut() = Some(leadership),
            Err(_) => granted(),
        }
        // Ask the leading tab (if another) for its status.
        remote.announce(&Announce::Ask);
        remote
    }

    fn listen(self: &Rc<Self>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        let weak = Rc::downgrade(self);
        listeners.push(EventListener::new(&window, "online", move |_| {
            if let Some(remote) = weak.upgrade() {
                remote.online();
            }
        }));
        if let Some(channel) = &self.channel {
            let weak = Rc::downgrade(self);
            listeners.push(EventListener::new(channel, "message", move |event| {
                let (Some(remote), Some(event)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>())
                else {
                    return;
                };
                if let Some(text) = event.data().as_string() {
                    remote.on_status_message(&text);
                }
            }));
        }
        *self.listeners.borrow_mut() = listeners;
    }

    // ----- every tab --------------------------------------------------

    /// An op of this tab bound for the relay: into the outbox (and out, if
    /// this tab leads and is connected).
    pub(super) fn queue(&self, op: Op) {
        let mut storage = self.storage.borrow_mut();
        let mut link = self.link.borrow_mut();
        let result = match (link.as_mut(), storage.as_mut()) {
            (Some(link), Some(storage)) => link.queue(op, storage).map(Some),
            (Some(link), None) => {
                // No storage: the outbox lives in this page only.
                let mut memory = gaesup_state_core::MemoryStorage::new();
                link.queue(op, &mut memory).map(Some)
            }
            (None, Some(storage)) => {
                if self.status.with_untracked(|s| s.waiting) >= MAX_OUTBOX {
                    Err(gaesup_protocol::QueueError::Full(MAX_OUTBOX))
                } else {
                    write_outbox_entry(&op, storage).map(|()| None)
                }
            }
            (None, None) => Ok(None),
        };
        drop((link, storage));
        match result {
            Ok(Some(frames)) => self.send_frames(&frames),
            Ok(None) => self
                .status
                .update(|status| status.waiting = status.waiting.saturating_add(1)),
            Err(err) => self.notice(format!("Not sent to the relay: {err}.")),
        }
        self.publish();
    }

    /// Another tab of this browser sent ops: the leader soon takes what
    /// they queued in the outbox (once per burst).
    pub(super) fn outbox_changed(self: &Rc<Self>) {
        if self.link.borrow().is_none() || self.refresh.borrow().is_some() {
            return;
        }
        let weak = Rc::downgrade(self);
        *self.refresh.borrow_mut() = Some(Timeout::new(20, move || {
            if let Some(remote) = weak.upgrade() {
                remote.refresh.borrow_mut().take();
                remote.refresh_outbox();
            }
        }));
    }

    fn refresh_outbox(&self) {
        let frames = {
            let mut link = self.link.borrow_mut();
            let storage = self.storage.borrow();
            match (link.as_mut(), storage.as_ref()) {
                (Some(link), Some(storage)) => link.refresh_outbox(storage),
                _ => return,
            }
        };
        self.send_frames(&frames);
        self.publish();
    }

    fn notice(&self, text: String) {
        if let Some(conn) = self.conn.upgrade() {
            conn.writer.notice(text);
        }
    }

    /// A word from the tab holding the link (or a tab asking for it).
    fn on_status_message(&self, text: &str) {
        let Ok(announce) = serde_json::from_str::<Announce>(text) else {
            return;
        };
        let leading = self.link.borrow().is_some();
        match announce {
            Announce::Ask if leading => self.announce_status(),
            Announce::Status(status) if !leading => self.show(RelayStatus {
                here: false,
                ..status
            }),
            Announce::Acks { acks } if !leading => self.confirm(&acks),
            _ => {}
        }
    }

    fn announce(&self, announce: &Announce) {
        if let (Some(channel), Ok(text)) = (&self.channel, serde_json::to_string(announce)) {
            let _ = channel.post_message(&text.into());
        }
    }

    /// Writes the status signal (and what `gaesup.relay()` reads).
    fn show(&self, status: RelayStatus) {
        STATUSES.with(|statuses| {
            statuses
                .borrow_mut()
                .insert(self.apartment.as_str().to_owned(), status.clone());
        });
        self.status.set(status);
    }

    /// Tells writes waiting on these acks.
    fn confirm(&self, acks: &[Ack]) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        for ack in acks {
            let outcome = match &ack.status {
                AckStatus::Applied { .. } | AckStatus::Duplicate { .. } => Confirmation::Confirmed,
                AckStatus::Refused { code, .. } if is_transient(code) => continue,
                AckStatus::Refused { code, message } => {
                    Confirmation::Refused(format!("{code}: {message}"))
                }
            };
            conn.manager.acknowledge(ack.op, outcome);
        }
    }

    // ----- the leading tab ----------------------------------------------

    /// This tab now holds the link.
    fn lead(self: &Rc<Self>) {
        let streams = vec![
            StreamId::Apartment(self.apartment.clone()),
            StreamId::Global,
        ];
        let link = {
            let storage = self.storage.borrow();
            let empty = gaesup_state_core::MemoryStorage::new();
            let storage: &dyn Storage = match storage.as_ref() {
                Some(storage) => storage,
                None => &empty,
            };
            Link::new(
                self.client.clone(),
                Some(self.config.token().to_owned()),
                streams,
                storage,
            )
        };
        *self.link.borrow_mut() = Some(link);
        let weak = Rc::downgrade(self);
        *self.ticker.borrow_mut() = Some(Interval::new(TICK_MS, move || {
            if let Some(remote) = weak.upgrade() {
                remote.tick();
            }
        }));
        self.connect();
    }

    fn with_link<R>(&self, f: impl FnOnce(&mut Link, &mut dyn Storage) -> R) -> Option<R> {
        let mut link = self.link.borrow_mut();
        let link = link.as_mut()?;
        let mut storage = self.storage.borrow_mut();
        let mut memory = gaesup_state_core::MemoryStorage::new();
        let storage: &mut dyn Storage = match storage.as_mut() {
            Some(storage) => storage,
            None => &mut memory,
        };
        Some(f(link, storage))
    }

    fn link_status(&self) -> Option<LinkStatus> {
        self.link
            .borrow()
            .as_ref()
            .map(|link| link.status().clone())
    }

    /// Opens a WebSocket (replacing any other).
    fn connect(self: &Rc<Self>) {
        self.reconnect.borrow_mut().take();
        if matches!(
            self.link_status(),
            None | Some(LinkStatus::Refused(_) | LinkStatus::Off)
        ) {
            return;
        }
        self.with_link(|link, _| link.connecting());
        let generation = self.bump();
        let weak = Rc::downgrade(self);
        let opened = wire::Socket::open(&self.config.ws_url(), move |event| {
            if let Some(remote) = weak.upgrade()
                && remote.generation.get() == generation
            {
                remote.on_socket(event);
            }
        });
        match opened {
            Ok(socket) => *self.socket.borrow_mut() = Some(socket),
            Err(_) => {
                // No WebSocket at all (removed, blocked): as a socket that
                // never opened, which leads to the HTTP fallback.
                let weak = Rc::downgrade(self);
                *self.reconnect.borrow_mut() = Some(Timeout::new(0, move || {
                    if let Some(remote) = weak.upgrade() {
                        remote.on_socket(wire::SocketEvent::Closed);
                    }
                }));
            }
        }
        self.publish();
    }

    fn bump(&self) -> u64 {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        generation
    }

    fn on_socket(self: &Rc<Self>, event: wire::SocketEvent) {
        let now = now_ms();
        match event {
            wire::SocketEvent::Open => {
                let frames = self
                    .with_link(|link, _| link.on_open(now))
                    .unwrap_or_default();
                self.send_frames(&frames);
            }
            wire::SocketEvent::Text(text) => {
                if let Some(out) = self.with_link(|link, storage| link.on_text(&text, now, storage))
                {
                    self.handle(out);
                }
            }
            wire::SocketEvent::Closed => {
                self.socket.borrow_mut().take();
                self.closed();
            }
        }
        self.publish();
    }

    /// The socket is gone: retry after the link's delay, or fall back to
    /// HTTP.
    fn closed(self: &Rc<Self>) {
        let delay = self
            .with_link(|link, _| link.on_close(js_sys::Math::random(), now_ms()))
            .flatten();
        let Some(delay) = delay else {
            return;
        };
        if self.link_status() == Some(LinkStatus::HttpFallback) {
            self.start_http();
        } else {
            self.retry_in(delay);
        }
    }

    fn retry_in(self: &Rc<Self>, delay_ms: u64) {
        let weak = Rc::downgrade(self);
        *self.reconnect.borrow_mut() = Some(Timeout::new(
            u32::try_from(delay_ms).unwrap_or(u32::MAX),
            move || {
                if let Some(remote) = weak.upgrade() {
                    remote.connect();
                }
            },
        ));
    }

    fn online(self: &Rc<Self>) {
        self.with_link(|link, _| link.online());
        if self.link_status() == Some(LinkStatus::Offline) {
            self.connect();
        }
    }

    fn tick(self: &Rc<Self>) {
        let now = now_ms();
        let Some((frames, dead)) = self.with_link(|link, _| link.tick(now)) else {
            return;
        };
        self.send_frames(&frames);
        if dead {
            // Three heartbeats without a word: the socket is dead even if
            // the browser has not noticed.
            self.bump();
            self.socket.borrow_mut().take();
            self.closed();
        } else if self.link.borrow().as_ref().is_some_and(|link| {
            link.status() == &LinkStatus::HttpFallback && link.wants_socket(now)
        }) && self.socket.borrow().is_none()
        {
            // On HTTP: try the WebSocket again now and then.
            self.probe_socket();
        }
        self.publish();
    }

    /// While on HTTP, tries a WebSocket without leaving HTTP until it is
    /// welcomed.
    fn probe_socket(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let generation = self.generation.get();
        if let Ok(socket) = wire::Socket::open(&self.config.ws_url(), move |event| {
            if let Some(remote) = weak.upgrade()
                && remote.generation.get() == generation
            {
                remote.on_socket(event);
            }
        }) {
            *self.socket.borrow_mut() = Some(socket);
        } else {
            // Still no WebSocket: wait for the next retry.
            self.with_link(|link, _| link.online());
            self.with_link(|link, _| link.on_close(0.0, now_ms()));
        }
    }

    fn send_frames(&self, frames: &[String]) {
        if frames.is_empty() {
            return;
        }
        let socket = self.socket.borrow();
        if let Some(socket) = socket.as_ref() {
            for frame in frames {
                if !socket.send(frame) {
                    // Not open after all: the close event follows and the
                    // ops go again after the next hello.
                    break;
                }
            }
        }
    }

    /// Does what the link says.
    fn handle(self: &Rc<Self>, out: LinkOutput) {
        self.send_frames(&out.send);
        for (stream, ops) in out.ops {
            self.apply_ops(&stream, ops);
        }
        for snapshot in out.snapshots {
            self.apply_snapshot(snapshot);
        }
        if !out.acks.is_empty() {
            self.confirm(&out.acks);
            self.announce(&Announce::Acks {
                acks: out.acks.clone(),
            });
        }
        for ack in &out.acks {
            if let AckStatus::Refused { code, message } = &ack.status
                && !is_transient(code)
            {
                self.notice(format!(
                    "The relay refused write {} ({code}: {message}); it stays on this device only.",
                    ack.op
                ));
            }
        }
        if let Some((code, message)) = out.error {
            self.notice(relay_error_notice(&code, &message));
        }
        if out.close {
            self.bump();
            self.socket.borrow_mut().take();
            self.closed();
        }
    }

    /// Applies the relay's ops one by one (one hostile op refuses only
    /// itself), passes them to the other tabs, saves, then moves the
    /// cursor: a reload in between fetches them again, never skips them.
    fn apply_ops(&self, stream: &StreamId, ops: Vec<Sequenced>) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        let Some(last) = ops.last().map(|sequenced| sequenced.seq) else {
            return;
        };
        for sequenced in ops {
            let message = Message::Ops(OpGroup {
                ops: vec![sequenced.op],
            });
            conn.receive_relayed(&message);
        }
        conn.save_now();
        self.with_link(|link, storage| link.save_cursor(stream, last, storage));
    }

    fn apply_snapshot(&self, snapshot: Snapshot) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        let Ok(from) = conn.manager.tab() else {
            return;
        };
        let message = Message::SyncState {
            from,
            to: None,
            states: snapshot.states,
            have: None,
        };
        conn.receive_relayed(&message);
        conn.save_now();
        self.with_link(|link, storage| link.save_cursor(&snapshot.stream, snapshot.seq, storage));
    }

    // ----- HTTP fallback ------------------------------------------------

    fn start_http(self: &Rc<Self>) {
        let generation = self.bump();
        let streams = self
            .link
            .borrow()
            .as_ref()
            .map(|link| link.streams().to_vec())
            .unwrap_or_default();
        wasm_bindgen_futures::spawn_local(push_loop(Rc::downgrade(self), generation));
        wasm_bindgen_futures::spawn_local(pull_loop(Rc::downgrade(self), generation, streams));
    }

    /// Whether an HTTP loop of `generation` should go on.
    fn on_http(&self, generation: u64) -> bool {
        self.generation.get() == generation && self.link_status() == Some(LinkStatus::HttpFallback)
    }

    /// A request could not reach the relay: back to trying the socket.
    fn http_failed(self: &Rc<Self>) {
        self.bump();
        if let Some(delay) = self.with_link(|link, _| link.on_http_failed(js_sys::Math::random())) {
            self.retry_in(delay);
        }
        self.publish();
    }

    // ----- status ---------------------------------------------------------

    /// Writes this tab's status and, if it leads, tells the other tabs.
    fn publish(&self) {
        let status = {
            let link = self.link.borrow();
            let Some(link) = link.as_ref() else {
                return;
            };
            RelayStatus {
                link: link.status().describe(),
                waiting: link.waiting(),
                last_ack_ms: link.last_ack_ms().map(|ms| ms as f64),
                here: true,
            }
        };
        if self.status.with_untracked(|current| current != &status) {
            self.announce(&Announce::Status(status.clone()));
            self.show(status);
        }
    }

    /// Tells the other tabs the status as it is.
    fn announce_status(&self) {
        let status = self.status.get_untracked();
        self.announce(&Announce::Status(status));
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.generation.set(self.generation.get().wrapping_add(1));
    }
}

async fn push_loop(weak: Weak<Remote>, generation: u64) {
    loop {
        let request = {
            let Some(remote) = weak.upgrade() else {
                return;
            };
            if !remote.on_http(generation) {
                return;
            }
            remote
                .link
                .borrow()
                .as_ref()
                .and_then(Link::http_push)
                .map(|body| {
                    (
                        remote.config.http_url("/v1/push"),
                        remote.config.token().to_owned(),
                        body,
                    )
                })
        };
        if let Some((url, token, body)) = request {
            let answer = wire::request("POST", &url, &token, Some(&body)).await;
            let Some(remote) = weak.upgrade() else {
                return;
            };
            if !remote.on_http(generation) {
                return;
            }
            match answer {
                Ok((status, text)) => {
                    if let Some(out) = remote
                        .with_link(|link, storage| link.on_http(status, &text, now_ms(), storage))
                    {
                        remote.handle(out);
                    }
                    remote.publish();
                }
                Err(_) => return remote.http_failed(),
            }
        } else {
            gloo_timers::future::TimeoutFuture::new(PUSH_EVERY_MS).await;
        }
    }
}

/// Pulls each stream in turn: a long poll on the first (the apartment's),
/// a quick look at the others. One request at a time per link, because a
/// browser opens at most six HTTP/1.1 connections to a host and every
/// apartment's link shares them (pushes must still get through).
async fn pull_loop(weak: Weak<Remote>, generation: u64, streams: Vec<StreamId>) {
    for (index, stream) in streams.iter().enumerate().cycle() {
        let wait = if index == 0 { PULL_WAIT_MS } else { 0 };
        let (url, token) = {
            let Some(remote) = weak.upgrade() else {
                return;
            };
            if !remote.on_http(generation) {
                return;
            }
            let Some(path) = remote
                .link
                .borrow()
                .as_ref()
                .map(|link| link.http_pull(stream, wait))
            else {
                return;
            };
            (
                remote.config.http_url(&path),
                remote.config.token().to_owned(),
            )
        };
        let answer = wire::request("GET", &url, &token, None).await;
        let Some(remote) = weak.upgrade() else {
            return;
        };
        if !remote.on_http(generation) {
            return;
        }
        match answer {
            Ok((status, text)) => {
                if let Some(out) =
                    remote.with_link(|link, storage| link.on_http(status, &text, now_ms(), storage))
                {
                    let refused = out.close;
                    remote.handle(out);
                    if refused || status >= 400 {
                        // Refused, or an answer that is no answer: wait
                        // before asking again.
                        gloo_timers::future::TimeoutFuture::new(2_000).await;
                    }
                }
                remote.publish();
            }
            Err(_) => return remote.http_failed(),
        }
    }
}

impl Inner {
    /// Whether `op` is bound for a relay: its key persists (memory and
    /// session state stay on this device).
    fn relayable(&self, op: &Op) -> bool {
        self.manager
            .with_replica(|replica| {
                replica
                    .spec_for(&op.key)
                    .is_ok_and(|spec| spec.lifetime() == Lifetime::Persistent)
            })
            .unwrap_or(false)
    }

    /// Ops this tab made: to the relay's outbox (or to wait for the
    /// configuration).
    pub(super) fn relay_outgoing(&self, message: &Message) {
        let Message::Ops(group) = message else {
            return;
        };
        let mut state = self.relay.borrow_mut();
        match &mut *state {
            RelayState::None => {}
            RelayState::Waiting(early) => {
                let room = MAX_OUTBOX.saturating_sub(early.len());
                early.extend(
                    group
                        .ops
                        .iter()
                        .filter(|op| self.relayable(op))
                        .take(room)
                        .cloned(),
                );
            }
            RelayState::Attached(remote) => {
                let remote = Rc::clone(remote);
                drop(state);
                for op in group.ops.iter().filter(|op| self.relayable(op)) {
                    remote.queue(op.clone());
                }
            }
        }
    }

    /// Another tab's message came in: if it carried ops, the leader looks
    /// for them in the outbox.
    pub(super) fn relay_incoming(&self, text: &str) {
        if !text.contains("\"ops\"") {
            return;
        }
        let remote = match &*self.relay.borrow() {
            RelayState::Attached(remote) => Rc::clone(remote),
            _ => return,
        };
        remote.outbox_changed();
    }

    /// Applies a message from the relay and passes it on to the other tabs
    /// (not to the relay again).
    fn receive_relayed(&self, message: &Message) {
        let Ok(text) = message.encode() else {
            return;
        };
        self.receive(&text);
        if let Some(opened) = &self.transport {
            let _ = opened.transport.send(message);
        }
    }
}

fn is_transient(code: &str) -> bool {
    code == gaesup_protocol::code::RATE_LIMITED
        || code == gaesup_protocol::code::STORAGE
        || code == gaesup_protocol::code::SHUTTING_DOWN
}

fn relay_error_notice(code: &str, message: &str) -> String {
    match code {
        gaesup_protocol::code::UNAUTHORIZED => format!(
            "The relay refused this app's token ({message}); changes stay on this device and wait in the outbox until the deployment's relay.json holds a valid token."
        ),
        gaesup_protocol::code::TOKEN_EXPIRED => format!(
            "The relay token has expired ({message}); changes stay on this device and wait in the outbox until the deployment's relay.json holds a new token."
        ),
        _ => {
            format!("The relay reported a problem ({code}: {message}); changes wait in the outbox.")
        }
    }
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn random_id() -> String {
    let high = (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    let low = (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    format!("{:016x}", (high << 32) | low)
}

/// This browser's device id, made once and shared by its tabs.
fn device_id(storage: &BrowserStorage) -> String {
    if let Ok(Some(id)) = storage.get(DEVICE_KEY)
        && !id.is_empty()
        && id.len() <= 64
    {
        return id;
    }
    let id = random_id();
    let mut storage = storage.clone();
    let _ = storage.set(DEVICE_KEY, &id);
    id
}
