//! Between devices: a connection's link to a relay.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | [`RelayConfig`]: where the relay is, read from `relay.json` |
//! | `leader.rs` | which tab of the browser holds the link (Web Locks) |
//! | `tab.rs` | what every tab does: queue its ops, show the status, settle confirmations |
//! | `lead.rs` | what the tab holding the link does: socket, link, applying relayed ops |
//! | `http.rs` | the HTTP fallback: pushes and long polls |
//! | `wire.rs` | the WebSocket, and HTTP requests for the fallback |
//!
//! The link itself (outbox, cursors, handshake, acks, heartbeats, backoff,
//! when to fall back to HTTP) is `gaesup_protocol::Link`, a state machine
//! without I/O tested natively against the real relay; this module feeds
//! it the browser's events and does what it says.
//!
//! **Every tab** writes the ops of its persistent keys to the outbox in
//! `localStorage` before anything else happens to them (so a reload, a
//! crash or a closed tab loses none); one that storage refuses waits in
//! memory, carried to the leading tab over the relay channel and kept
//! until the relay answers it (see `tab.rs`). **The leading tab** (one per
//! browser and apartment, elected with Web Locks) sends the outbox (it
//! reads it again on another tab's message about ops, and on the storage
//! event of each entry another tab adds: the message travels on another
//! channel and may come before the entry is readable in this tab), applies
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
mod http;
mod lead;
mod leader;
mod tab;
mod wire;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gaesup_protocol::{Ack, Link};
use gaesup_state::RelayStatus;
use gaesup_state_core::decode::{Fields, FromJson, Node, parse_tree_bounded};
use gaesup_state_core::vec_map::VecMap;
use gaesup_state_core::{ApartmentId, FullKey, Op, OpId, Storage};
use gloo_events::EventListener;
use gloo_timers::callback::{Interval, Timeout};
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

pub use config::{RelayConfig, RelayConfigError, fetch_relay_config, follow_relay_config};

use super::Inner;
use crate::storage::BrowserStorage;

/// Where the browser's device id is kept (shared by its tabs).
const DEVICE_KEY: &str = "gaesup/device";
/// How often the leader checks its heartbeat and announces its status.
pub(super) const TICK_MS: u32 = 1_000;

thread_local! {
    /// Each apartment's relay status on this page, for `gaesup.relay()`.
    static STATUSES: RefCell<gaesup_state_core::vec_map::VecMap<String, RelayStatus>> =
        RefCell::default();
}

/// The relay status of `apartment` on this page, if it has a connection
/// (for `window.gaesup`).
#[cfg(feature = "js")]
pub(crate) fn relay_status(apartment: &str) -> Option<RelayStatus> {
    STATUSES.with(|statuses| statuses.borrow().get(apartment).cloned())
}

/// What the tab holding the link tells the browser's other tabs (and what
/// they ask), on the apartment's relay channel: `{"kind":"status",…}`,
/// the variant's fields beside `kind`. Read by [`Announce::decode`].
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Announce {
    /// A tab asks for the status.
    Ask,
    /// The link's status.
    Status(RelayStatus),
    /// The relay's word on some writes (any tab may be waiting on them).
    Acks {
        acks: Vec<Ack>,
        /// The keys of the acknowledged ops, where known.
        keys: Vec<(OpId, FullKey)>,
    },
    /// Ops of a tab that does not hold the link, which storage refused to
    /// keep in the outbox: for the tab that holds it to send.
    Carry { ops: Vec<Op> },
    /// A tab has just taken the link: tabs carrying ops send them again.
    Leading,
}

impl Announce {
    /// Reads what another tab announced: the text parsed once into the
    /// core's tree, its `kind` looked at, then the variant's fields read
    /// from the same object. (Serde's derived reader for a tag among the
    /// fields buffers the message in a generic tree of content and reads
    /// that, a second deserializer in the app's wasm.) `None` for anything
    /// else, such as an announcement of a newer version this one does not
    /// know, one written as an array (which serde's reader also took and no
    /// tab writes), or one that names a field twice. Read whatever its
    /// size, as it was before: the acks of a relay's frame of up to a
    /// message's size, with their keys beside them, are larger than one
    /// message may be.
    fn decode(text: &str) -> Option<Self> {
        let tree = parse_tree_bounded(text, usize::MAX, "announcement").ok()?;
        let kind = tree.field("kind").and_then(Node::as_str)?.to_owned();
        match kind.as_str() {
            "ask" => Some(Self::Ask),
            "leading" => Some(Self::Leading),
            "status" => RelayStatus::from_json(tree).ok().map(Self::Status),
            "acks" => {
                let mut fields = Fields::of(tree, "acks").ok()?;
                Some(Self::Acks {
                    acks: fields.req("acks").ok()?,
                    keys: fields.req("keys").ok()?,
                })
            }
            "carry" => Fields::of(tree, "carried ops")
                .and_then(|mut fields| fields.req("ops"))
                .ok()
                .map(|ops| Self::Carry { ops }),
            _ => None,
        }
    }
}

/// What a connection does about a relay, before and after the app knows
/// whether one is configured.
pub(super) enum RelayState {
    /// No relay will come (the default).
    None,
    /// The configuration is being read: ops bound for a relay wait (past
    /// [`MAX_OUTBOX`], writes of persistent keys are refused), then go to
    /// the outbox or are forgotten.
    Waiting(Early),
    /// Linked (or trying to be).
    Attached(Rc<dyn RelayLink>),
}

/// What a connection asks of its link to a relay once one is attached.
///
/// A trait object, made only by [`RelayHandle::attach`](super::RelayHandle::attach):
/// a build that never attaches a relay never makes one, so none of the
/// link's code (socket, HTTP fallback, leader election, the protocol's
/// link) is linked into its wasm. A connection only ever holds a
/// [`Remote`].
pub(super) trait RelayLink {
    /// An op of this tab bound for the relay (see [`Remote::queue`]).
    fn queue(&self, op: Op);
    /// Another tab changed the outbox, or storage was cleared (see
    /// [`Remote::outbox_changed`]).
    fn outbox_changed(self: Rc<Self>);
    /// The ops held in memory only (see [`Remote::unsaved`]).
    fn unsaved(&self) -> Vec<Op>;
}

impl RelayLink for Remote {
    fn queue(&self, op: Op) {
        Remote::queue(self, op);
    }

    fn outbox_changed(self: Rc<Self>) {
        Remote::outbox_changed(&self);
    }

    fn unsaved(&self) -> Vec<Op> {
        Remote::unsaved(self)
    }
}

/// The ops a connection made while the relay's configuration was read.
#[derive(Default)]
pub(super) struct Early {
    /// Written to the outbox in `localStorage` already: a tab holding the
    /// link takes them from there (and answers them) like any tab's. Kept
    /// here too, for a clear of storage before any link took them.
    pub(super) saved: Vec<Op>,
    /// Storage refused them: they wait in this page, for its link.
    pub(super) unsaved: Vec<Op>,
}

impl Early {
    pub(super) fn len(&self) -> usize {
        self.saved.len() + self.unsaved.len()
    }

    /// What this page's link takes once the configuration comes: the ops
    /// storage refused, and those a clear of storage took out of the
    /// outbox since (not those a tab's link answered meanwhile: queued
    /// again, they would be pushed twice).
    pub(super) fn into_ops(self) -> Vec<Op> {
        let mut ops = self.unsaved;
        if let Ok(storage) = BrowserStorage::local() {
            ops.extend(gaesup_protocol::cleared_from_outbox(self.saved, &storage));
        }
        ops
    }
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
    /// The generation whose HTTP loops run (both: see
    /// [`start_http`](Self::start_http)), if any.
    http_loops: Cell<Option<u64>>,
    reconnect: RefCell<Option<Timeout>>,
    /// A re-read of the outbox, due shortly (other tabs' ops come in
    /// bursts).
    refresh: RefCell<Option<Timeout>>,
    /// Wakes the HTTP fallback's push loop when ops join the outbox.
    push_wake: Rc<http::Wake>,
    ticker: RefCell<Option<Interval>>,
    leadership: RefCell<Option<leader::Leadership>>,
    channel: Option<BroadcastChannel>,
    listeners: RefCell<Vec<EventListener>>,
    status: leptos::prelude::RwSignal<RelayStatus>,
    /// Ops of this tab that storage refused while another tab held the
    /// link, kept until the relay answers them (see [`Remote::queue`]).
    carried: RefCell<VecMap<OpId, Op>>,
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
            http_loops: Cell::new(None),
            reconnect: RefCell::new(None),
            refresh: RefCell::new(None),
            push_wake: Rc::default(),
            ticker: RefCell::new(None),
            leadership: RefCell::new(None),
            channel,
            listeners: RefCell::new(Vec::new()),
            status: conn.writer.relay,
            carried: RefCell::default(),
        });
        let _ = conn.manager.enable_confirmations();
        remote.show(RelayStatus {
            link: "waiting for the tab that holds the link".to_owned(),
            ..RelayStatus::default()
        });
        remote.listen();
        // The tabs of a browser share one link through the outbox in
        // localStorage. Without it there is nothing to share: each tab
        // links itself, before its first writes (`early`) are queued, so
        // they go from its own outbox in memory.
        // A storage that refuses writes (no quota, full) shares nothing
        // either: tried once with a key of its own.
        let shared = remote.storage.borrow_mut().as_mut().is_some_and(|storage| {
            let probe = "gaesup/relay-probe";
            storage.set(probe, "1").is_ok() && storage.remove(probe).is_ok()
        });
        if !shared {
            remote.lead();
        }
        for op in early {
            remote.queue(op);
        }
        if shared {
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
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.generation.set(self.generation.get().wrapping_add(1));
    }
}

/// Whether the relay refused with `code` only for now: the op stays in
/// the outbox and goes again, and nobody is told it was refused.
fn is_transient(code: &str) -> bool {
    gaesup_protocol::is_transient_code(code)
}

fn relay_error_notice(code: &str, message: &str) -> String {
    match code {
        gaesup_protocol::code::UNAUTHORIZED => format!(
            "The relay refused this app's token ({message}); changes stay on this device and wait in the outbox until the deployment's relay.json holds a valid token."
        ),
        gaesup_protocol::code::FORBIDDEN => format!(
            "The relay's token does not cover everything this page follows ({message}); the rest syncs."
        ),
        gaesup_protocol::code::UNREADABLE => format!("The relay sent {message}."),
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

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_protocol::{AckStatus, StreamId};
    use gaesup_state_core::TabId;

    /// The announcement as serde derives its reader: the oracle of
    /// [`Announce::decode`].
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Derived {
        Ask,
        Status(DerivedStatus),
        Acks {
            acks: Vec<Ack>,
            keys: Vec<(OpId, FullKey)>,
        },
        Carry {
            ops: Vec<Op>,
        },
        Leading,
    }

    /// [`RelayStatus`] as serde derives its reader.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct DerivedStatus {
        link: String,
        waiting: usize,
        last_ack_ms: Option<f64>,
        here: bool,
    }

    impl From<Derived> for Announce {
        fn from(derived: Derived) -> Self {
            match derived {
                Derived::Ask => Self::Ask,
                Derived::Status(status) => Self::Status(RelayStatus {
                    link: status.link,
                    waiting: status.waiting,
                    last_ack_ms: status.last_ack_ms,
                    here: status.here,
                }),
                Derived::Acks { acks, keys } => Self::Acks { acks, keys },
                Derived::Carry { ops } => Self::Carry { ops },
                Derived::Leading => Self::Leading,
            }
        }
    }

    /// An op as a tab carries it to the one holding the link.
    fn carried() -> Op {
        use gaesup_state_core::{Lifetime, ManualClock, Replica, Scope, SharedKey};
        let mut replica = Replica::new(TabId::new(4), ManualClock::new(1_000));
        let key = SharedKey::<i64>::builder("count")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap();
        replica.declare(&key).unwrap();
        replica
            .set(&"main/b/u".parse().unwrap(), &key, 3)
            .unwrap()
            .op
    }

    #[test]
    fn announcements_read_as_serde_derives_them() {
        let op = OpId {
            tab: TabId::new(4),
            seq: 2,
        };
        let key: FullKey = "global/count".parse().unwrap();
        let written = [
            Announce::Ask,
            Announce::Status(RelayStatus {
                link: "connected".to_owned(),
                waiting: 3,
                last_ack_ms: Some(1.5),
                here: true,
            }),
            Announce::Status(RelayStatus::off()),
            Announce::Acks {
                acks: vec![Ack {
                    op,
                    status: AckStatus::Duplicate {
                        stream: StreamId::Global,
                        seq: 8,
                    },
                }],
                keys: vec![(op, key)],
            },
            Announce::Acks {
                acks: Vec::new(),
                keys: Vec::new(),
            },
            Announce::Carry {
                ops: vec![carried()],
            },
            Announce::Carry { ops: Vec::new() },
            Announce::Leading,
        ];
        let mut texts: Vec<String> = written
            .iter()
            .map(|announce| serde_json::to_string(announce).unwrap())
            .collect();
        for (announce, text) in written.iter().zip(&texts) {
            assert_eq!(Announce::decode(text).as_ref(), Some(announce), "{text}");
        }
        texts.extend(
            [
                // Another order, fields this version does not know.
                r#"{"link":"offline","kind":"status","waiting":0,"last_ack_ms":null,"here":false,"new":1}"#,
                r#"{"kind":"ask","extra":[1]}"#,
                // A kind of a later version, missing or mistyped fields.
                r#"{"kind":"goodbye"}"#,
                r#"{"kind":"status","link":"x"}"#,
                r#"{"kind":"acks","acks":[]}"#,
                r#"{"kind":"acks","acks":{},"keys":[]}"#,
                r#"{"kind":7}"#,
                r#"{"waiting":1}"#,
                r#"{"kind":"acks","acks":[],"keys":[["x"]]}"#,
                r#"{"kind":"status","link":"x","waiting":1,"here":true,"here":false}"#,
                r#"{"kind":"carry"}"#,
                r#"{"kind":"carry","ops":{}}"#,
                r#"{"kind":"carry","ops":[{"id":1}]}"#,
                r#"{"kind":"leading","since":3}"#,
                r#""ask""#,
                "not json",
                "",
            ]
            .map(str::to_owned),
        );
        for text in &texts {
            let derived = serde_json::from_str::<Derived>(text)
                .ok()
                .map(Announce::from);
            assert_eq!(Announce::decode(text), derived, "{text}");
        }
        // The difference: serde's reader also took a variant as an array
        // of its kind and fields, which no tab writes.
        for text in [r#"["status","connected",1,null,true]"#, r#"["ask"]"#] {
            assert!(serde_json::from_str::<Derived>(text).is_ok(), "{text}");
            assert_eq!(Announce::decode(text), None, "{text}");
        }
    }

    /// The acks of a relay's frame as large as a message may be, with
    /// their keys, make an announcement larger than a message: the other
    /// tabs read it all the same (or their writes would wait for a
    /// confirmation forever).
    #[test]
    fn an_announcement_larger_than_a_message_is_read() {
        let op = |seq| OpId {
            tab: TabId::new(4),
            seq,
        };
        let value = serde_json::Value::String("x".repeat(100 << 10));
        let acks: Vec<Ack> = (0..11)
            .map(|seq| Ack {
                op: op(seq),
                status: AckStatus::Applied {
                    stream: StreamId::Global,
                    seq,
                    value: value.clone(),
                },
            })
            .collect();
        let key: FullKey = "global/doc".parse().unwrap();
        let keys = acks.iter().map(|ack| (ack.op, key.clone())).collect();
        let announce = Announce::Acks { acks, keys };
        let text = serde_json::to_string(&announce).unwrap();
        assert!(
            text.len() > gaesup_state_core::MAX_MESSAGE_BYTES,
            "{}",
            text.len()
        );
        assert_eq!(Announce::decode(&text), Some(announce));
    }
}
