//! The relay protocol: what devices and a relay say to each other.
//!
//! # The problem
//!
//! Tabs of one browser already share ops over a BroadcastChannel. Devices do
//! not share a channel: they meet at a relay, possibly after days offline,
//! through proxies that drop WebSockets, over connections that die without
//! a word. So every op carries its id (a resend is harmless), every stream
//! has a server-assigned sequence (a device resumes from its cursor after
//! any gap), and every message is typed and versioned (a device running an
//! older build gets a specific error, not a dropped connection).
//!
//! This crate is the one place both sides compile: the relay (native) and
//! the browser client (wasm). It holds types and their JSON shape only.
//!
//! # Example
//!
//! ```
//! use gaesup_protocol::{ClientMessage, Hello, StreamId, Subscription};
//!
//! let hello = ClientMessage::Hello(Hello {
//!     client: "device-1".into(),
//!     token: Some("gs1.…".into()),
//!     subscribe: vec![Subscription {
//!         stream: StreamId::Apartment("main".parse().unwrap()),
//!         cursor: Some(41),
//!         after: None,
//!     }],
//! });
//! let text = hello.encode().unwrap();
//! assert!(text.starts_with(r#"{"v":1,"type":"hello""#));
//! assert_eq!(ClientMessage::decode(&text).unwrap(), hello);
//! ```
//!
//! # Streams and cursors
//!
//! A [`StreamId`] is an apartment's keys (private, building and apartment
//! scope) or the global keys. The relay numbers the ops of each stream
//! 1, 2, 3, … as it makes them durable; a device remembers the last number
//! it applied (its cursor) and asks to resume after it. A cursor older
//! than the log the relay kept gets a [`Snapshot`] instead, in pieces when
//! the states do not fit one message ([`Snapshot::more`]; over HTTP each
//! piece is asked for after the last key of the one before), and the
//! cursor moves only once the last piece is merged. Ops a device's token
//! may not read are left out of what it gets; an ops message then says how
//! far it read ([`OpsBody::through`]), so the cursor moves past them too.
//! A device moves its stored cursor only past what it saved: an op it
//! could only hold in memory pins it ([`Link::pin_cursor`]).
//!
//! # Messages
//!
//! Every message is `{"v": 1, "type": …, "body": …}`. Device → relay:
//! [`ClientMessage`] (hello, push, ping, pong). Relay → device:
//! [`ServerMessage`] (welcome, ack, ops, snapshot, error, ping, pong). The
//! HTTP fallback carries the same bodies: a push body in, an ack body out;
//! a pull answers with an ops or snapshot body.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod link;
mod message;
mod stream;

pub use link::{
    LimitsAsk, Link, LinkOutput, LinkStatus, MAX_OUTBOX, Rebase, Resolved, SnapshotRefusals,
    cleared_from_outbox, is_transient_code, mark_refused_stale, mark_resync, remove_outbox_entry,
    write_outbox_entry,
};
pub use message::{
    Ack, AckStatus, Acks, ClientMessage, ErrorBody, Hello, Limits, MAX_HELLO_BYTES, OpsBody,
    PROTOCOL_VERSION, PieceOf, Ping, ProtocolError, Push, ServerMessage, Snapshot, UNREADABLE_SAID,
    Welcome,
};
pub use stream::{Sequenced, StreamId, Subscription};

/// Stable codes of refusals and errors, shared by the relay, the browser
/// client and the docs.
pub mod code {
    /// The message is not valid JSON of the expected shape.
    pub const MALFORMED: &str = "malformed";
    /// The message declares a protocol version the relay does not speak.
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    /// No token, or one that does not verify.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The token has expired.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The token does not grant this (apartment, building, write, global).
    pub const FORBIDDEN: &str = "forbidden";
    /// A frame or body over the size limit.
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    /// More ops in one push than allowed.
    pub const TOO_MANY_OPS: &str = "too_many_ops";
    /// More ops per second than allowed for this token subject, on all its
    /// connections and HTTP pushes together (counted by the work they cost: see
    /// [`Limits::max_ops_per_second`](crate::Limits::max_ops_per_second)).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The node holds as many connections as it may, or as many of this
    /// token subject's as it may (a WebSocket hello, or an HTTP long poll
    /// about to wait); a node refuses a socket's upgrade with HTTP 503.
    pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
    /// The device reads too slowly: its queue filled; it resyncs from its
    /// cursor after reconnecting.
    pub const SLOW_CONSUMER: &str = "slow_consumer";
    /// A push before a hello on a socket.
    pub const NO_HELLO: &str = "no_hello";
    /// The relay knows no declaration for the key (a key declared only in
    /// JavaScript on one device).
    pub const UNKNOWN_KEY: &str = "unknown_key";
    /// Keys that live in memory or for one browser session do not travel to
    /// other devices.
    pub const NOT_RELAYED: &str = "not_relayed";
    /// Another op already holds this op's id (tab and number) in the
    /// stream: a peer pushed a different op under an id it saw fanned out.
    /// The same op again is a duplicate, not this.
    pub const OP_ID_TAKEN: &str = "op_id_taken";
    /// The op's tab belongs to another token subject: the subject whose
    /// token pushed the tab's first op owns the tab's ids (until the tab
    /// has had no op for 30 days), so a peer that read them cannot take
    /// the next one first. A device meets it for its own op when it pushes
    /// with a token of another subject than before, or when a peer took its
    /// tab after 30 days without an op.
    pub const TAB_TAKEN: &str = "tab_taken";
    /// Said by a device, never by a relay: the relay sent ops or states
    /// this version of the app cannot read (a newer version wrote them).
    /// The device takes the rest and keeps its stored cursor before them,
    /// so the next page of an updated app fetches them.
    pub const UNREADABLE: &str = "unreadable";
    /// The relay is shutting down; reconnect to it or another node.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// The relay failed to store the op (nothing was acknowledged), or
    /// holds a stored state of its key it could not load (a newer schema
    /// than it knows): it takes the op again later.
    pub const STORAGE: &str = "storage";
    /// The op was written by a newer version of the app than the relay
    /// knows (its key's schema is newer): the device sends it again later,
    /// for a relay upgraded since (upgrade relays before pages).
    pub const NEWER_SCHEMA: &str = "newer_schema";
    /// A sum key's op older than the key's compaction horizon (its writer
    /// was offline for longer than that); the device re-bases the key.
    pub const STALE: &str = "stale";
}
