//! A device's link to a relay, without I/O: the outbox, the cursors, the
//! handshake, acks, heartbeats, reconnection delays and the HTTP fallback
//! as a state machine. The browser adapter feeds it socket events and
//! timer ticks and does what it says; the native tests drive it against
//! the real relay binary the same way.
//!
//! **Outbox.** Every op bound for the relay is written to storage before it
//! is sent (`gaesup/outbox/<op id>`) and removed only when the relay
//! acknowledges it, applied, duplicate or refused. It survives reloads and
//! restarts (every tab of a browser shares it), and is sent oldest first (by stamp) on every
//! (re)connection, or, while the relay's rate limit paces resends, when
//! the next resend is due. Ops carry their ids, so a resend is harmless.
//!
//! **Cursors.** The last number applied per stream
//! (`gaesup/cursor/<stream>`), written by the adapter only after what it
//! applied is saved ([`Link::save_cursor`]), so a reload never skips ops.
//!
//! **Stale writes.** A device offline for longer than the compaction
//! horizon finds its old counter and merge ops refused as `stale`: they
//! lie more than 14 days behind the key's newest write on the relay (see
//! `KeyState::floor`), where replicas cannot all judge them alike. Its own state still holds their effect, so the link
//! does not let them go: it holds their acks, waits until the key's stream
//! has caught up with the relay (a re-base made before would drop or
//! overwrite what the relay folded and the device never saw), and asks the
//! adapter to re-base the key ([`LinkOutput::rebase`], then
//! [`Link::rebased`]); the re-base (a fresh reset to the device's total,
//! or the fields the refused merge ops wrote, as the device reads them
//! now) carries them, and the held ops are answered with its ack. The
//! link decides in [`Link::settle`], once the adapter has applied what came.
//! Never for a stream the device caught up on from a snapshot, or of
//! which it refused one of the relay's ops as stale
//! ([`Link::refused_stale`]): its state may then lack something the
//! relay holds, which a re-base would make every device lose. The mark
//! is kept in storage; the held ops are refused for good, and once none
//! of the stream's ops waits in the outbox the link takes the stream
//! whole from the relay (a snapshot, merged). A stream is taken whole the
//! same way when this browser lost what it held of one of its keys (an
//! unreadable stored entry, discarded: [`mark_resync`]); the snapshot
//! marks it never to re-base, as any snapshot does.

use std::collections::{BTreeMap, BTreeSet};

use gaesup_state_core::decode::read_bounded;
use gaesup_state_core::{
    FullKey, MAX_MESSAGE_BYTES, MAX_STORED_BYTES, Op, OpId, Payload, Stamp, Storage, StorageError,
    UnitAddress, encoded_len, split_by_len,
};

use crate::message::{
    Ack, AckStatus, ClientMessage, Hello, Limits, PieceOf, Ping, Push, ServerMessage, Snapshot,
};
use crate::stream::{Sequenced, StreamId, Subscription};
use gaesup_state_core::vec_map::{VecMap, VecSet};

/// Most ops waiting in the outbox.
pub const MAX_OUTBOX: usize = 10_000;
/// Prefix of outbox entries in storage.
pub const OUTBOX_PREFIX: &str = "gaesup/outbox/";
/// Prefix of cursors in storage.
pub const CURSOR_PREFIX: &str = "gaesup/cursor/";
/// Prefix of the marks of streams this device must never re-base (see
/// [`Link::refused_stale`]).
pub const NO_REBASE_PREFIX: &str = "gaesup/no-rebase/";
/// Prefix of the marks of streams to take whole from the relay.
pub const RESYNC_PREFIX: &str = "gaesup/resync/";

/// Set beside the outbox entries whenever one is written, and never
/// removed by an answer: a `localStorage.clear()` takes it with them. It
/// tells an outbox cleared from storage from entries another link removed
/// as answered (another tab without Web Locks, or another apartment's
/// link for a global op), which must not be written back.
pub const OUTBOX_MARK: &str = "gaesup/outbox-mark";

/// Marks, in the storage every tab of the browser shares, that this
/// device refused an op of `key`'s stream as stale (any tab, whatever
/// brought the op): its state may lack what the relay holds, so the
/// stream is never re-based from here, and the tab holding the link takes
/// it whole from the relay (see [`Link::refused_stale`]).
pub fn mark_refused_stale(key: &FullKey, storage: &mut dyn Storage) {
    let stream = StreamId::of(key);
    let _ = storage.set(&format!("{NO_REBASE_PREFIX}{stream}"), "1");
    mark_resync(key, storage);
}

/// Marks, in the storage every tab of the browser shares, that `key`'s
/// stream must be taken whole from the relay: this browser lost what it
/// held of the key (its stored entry was set aside, then discarded), and
/// the ops that brought it lie behind the stored cursor. The tab holding
/// the link reads the mark at its next settle (see [`Link::settle`]) and
/// takes the stream whole once none of its ops waits in the outbox (a
/// resync already under way takes it instead); the mark stays until the
/// stream has been taken whole. Like any snapshot, that marks the stream
/// never to re-base.
pub fn mark_resync(key: &FullKey, storage: &mut dyn Storage) {
    let _ = storage.set(&format!("{RESYNC_PREFIX}{}", StreamId::of(key)), "1");
}
/// Most ops sent in one push.
const PUSH_OPS: usize = 256;
/// How long ops the relay refused for now (rate limited, storage trouble,
/// shutting down) wait in the outbox before they go again (over a socket
/// or HTTP, unless a new connection takes them first: see
/// [`Link::connection_ended`]).
const RESEND_AFTER_MS: u64 = 1_000;
/// How early a resend may go: a timer firing a little before its second.
const RESEND_SLACK_MS: u64 = 250;
/// How long an ask for the relay's limits that got no answer waits before
/// it is made again.
const LIMITS_RETRY_MS: u64 = 2_000;
/// How long an ask for the relay's limits answered with something else
/// than limits waits before it is made again.
const LIMITS_RETRY_LATER_MS: u64 = 60_000;
/// Room left in a push for its envelope (`{"v":…,"type":"push","body":{"ops":[…]}}`).
const PUSH_ENVELOPE_BYTES: usize = 64;
/// Heartbeat before the relay says its own.
const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
/// Failed WebSocket attempts (never opened) before falling back to HTTP.
const WS_FAILURES_BEFORE_HTTP: u32 = 2;
/// While on HTTP, how often to try the WebSocket again.
const WS_RETRY_MS: u64 = 30_000;

/// How the link reaches the relay right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// No relay configured.
    Off,
    /// Waiting to (re)connect.
    Offline,
    /// Opening a socket.
    Connecting,
    /// A WebSocket is open and the relay said welcome.
    Connected,
    /// WebSockets fail; pushing and long-polling over HTTP.
    HttpFallback,
    /// The relay refused the token (`unauthorized`, `token_expired`): no
    /// retry until a new token is given.
    Refused(String),
}

impl LinkStatus {
    /// Words for a status line.
    pub fn describe(&self) -> String {
        match self {
            Self::Off => "off".into(),
            Self::Offline => "offline".into(),
            Self::Connecting => "connecting".into(),
            Self::Connected => "connected".into(),
            Self::HttpFallback => "HTTP fallback".into(),
            Self::Refused(code) => format!("refused: {}", refusal_words(code)),
        }
    }
}

fn refusal_words(code: &str) -> &str {
    match code {
        crate::code::UNAUTHORIZED => "bad token",
        crate::code::TOKEN_EXPIRED => "token expired",
        crate::code::FORBIDDEN => "not allowed",
        other => other,
    }
}

/// What the adapter must do after feeding the link.
#[derive(Debug, Default)]
pub struct LinkOutput {
    /// Text frames to send on the socket (or, on HTTP, push bodies).
    pub send: Vec<String>,
    /// Ops from other devices to apply, in order, per stream.
    pub ops: Vec<(StreamId, Vec<Sequenced>)>,
    /// Snapshots to merge (a cursor older than the relay's log).
    pub snapshots: Vec<Snapshot>,
    /// Acks of this browser's ops (for optimistic writes waiting on them).
    pub acks: Vec<Ack>,
    /// The key of each acknowledged op that was in the outbox (for a log
    /// that names what was confirmed).
    pub keys: Vec<(OpId, FullKey)>,
    /// Close the socket (silent relay, refused token, or a stream to take
    /// whole, which the next hello asks for).
    pub close: bool,
    /// An error the relay reported about the link as a whole.
    pub error: Option<(String, String)>,
    /// Sum and merge keys to re-base now (see the module docs): for each,
    /// write [`gaesup_state_core::Replica::rebase`] as `writer` with
    /// `fields`, queue the write and call [`Link::rebased`]; or, when this
    /// tab has not declared the key, call [`Link::rebase_later`].
    pub rebase: Vec<Rebase>,
}

impl LinkOutput {
    /// Adds what came after (what [`Link::settle`] decided once this
    /// output was applied) to this output.
    pub fn absorb(&mut self, later: LinkOutput) {
        self.send.extend(later.send);
        self.ops.extend(later.ops);
        self.snapshots.extend(later.snapshots);
        self.acks.extend(later.acks);
        self.keys.extend(later.keys);
        self.close |= later.close;
        if self.error.is_none() {
            self.error = later.error;
        }
        self.rebase.extend(later.rebase);
    }
}

/// An ask for the relay's limits over HTTP (see [`Link::http_limits`]),
/// to hand back with its answer to [`Link::on_http_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsAsk {
    /// The connection it was asked on.
    connection: u64,
}

impl LimitsAsk {
    /// The path to `GET`.
    pub fn path(&self) -> &'static str {
        "/v1/limits"
    }
}

/// What the pieces of one snapshot of a stream left out and passed on,
/// added up (see [`Link::snapshot_refusals`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRefusals {
    /// States left out (refused by this app), in every piece.
    pub refused: usize,
    /// States passed on.
    pub passed: usize,
    /// The first state left out, and why.
    pub first: Option<(FullKey, String)>,
}

/// A sum or merge key whose ops the relay refused as stale, to re-base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebase {
    /// The key.
    pub key: FullKey,
    /// The writer of the first refused op (who may write the key).
    pub writer: UnitAddress,
    /// For a merge key, the fields the refused ops wrote; `None` when one
    /// of them wrote the whole value (and for counters). What
    /// [`gaesup_state_core::Replica::rebase`] takes.
    pub fields: Option<Vec<String>>,
    /// For a user-resolve key, what the refused ops wrote (the replica
    /// no longer holds it): what `Replica::rebase_resolve` takes.
    pub resolved: Option<Resolved>,
}

/// The refused writes of a user-resolve key, to write again: the value of
/// the newest, and every entry they superseded, with the refused ops
/// themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The newest refused write's value.
    pub value: serde_json::Value,
    /// What the refused writes superseded, and the refused writes.
    pub supersedes: Vec<OpId>,
}

/// What the held writes of a user-resolve key wrote (see [`Held`]).
#[derive(Debug)]
struct HeldResolve {
    stamp: Stamp,
    value: serde_json::Value,
    writer: UnitAddress,
    supersedes: BTreeSet<OpId>,
}

/// Ops of a key refused as stale, held until a re-base carries them.
#[derive(Debug)]
struct Held {
    writer: UnitAddress,
    /// Each op, with the relay's words about it.
    ops: BTreeMap<OpId, String>,
    /// The fields the held merge patches wrote.
    fields: BTreeSet<String>,
    /// Whether a held op wrote the whole value (a set, or a counter op).
    whole: bool,
    /// The held user-resolve writes: the newest one's stamp, value and
    /// writer, and what they superseded with their own ids.
    resolved: Option<HeldResolve>,
    /// The tab holding the link could not write the re-base yet (see
    /// [`Link::rebase_later`]): these ops keep no stream from being taken
    /// whole meanwhile.
    put_off: bool,
}

impl Held {
    fn new(writer: UnitAddress) -> Self {
        Self {
            writer,
            ops: BTreeMap::new(),
            fields: BTreeSet::new(),
            whole: false,
            resolved: None,
            put_off: false,
        }
    }

    /// Holds `op`, refused with `message`.
    fn hold(&mut self, op: &Op, message: &str) {
        self.ops.insert(op.id, message.to_owned());
        match &op.payload {
            Payload::Patch { set, remove } => {
                self.fields.extend(set.keys().cloned());
                self.fields.extend(remove.iter().cloned());
            }
            Payload::Resolve { value, supersedes } => {
                self.whole = true;
                self.join_resolved(HeldResolve {
                    stamp: op.stamp,
                    value: serde_json::Value::clone(value),
                    writer: op.writer.clone(),
                    supersedes: supersedes.iter().copied().chain([op.id]).collect(),
                });
            }
            _ => self.whole = true,
        }
    }

    /// Keeps the newer of two held user-resolve values (with its writer),
    /// and both sets of superseded entries.
    fn join_resolved(&mut self, other: HeldResolve) {
        match &mut self.resolved {
            Some(kept) => {
                kept.supersedes.extend(other.supersedes);
                if other.stamp > kept.stamp {
                    kept.stamp = other.stamp;
                    kept.value = other.value;
                    kept.writer = other.writer;
                }
            }
            None => self.resolved = Some(other),
        }
    }

    /// Adds what `later` holds.
    fn absorb(&mut self, later: Held) {
        self.ops.extend(later.ops);
        self.fields.extend(later.fields);
        self.whole |= later.whole;
        self.put_off &= later.put_off;
        if let Some(resolved) = later.resolved {
            self.join_resolved(resolved);
        }
    }

    /// What a re-base of `key` must write again.
    fn rebase(&self, key: &FullKey) -> Rebase {
        Rebase {
            key: key.clone(),
            // The newest value's writer writes it again.
            writer: self
                .resolved
                .as_ref()
                .map_or(&self.writer, |resolved| &resolved.writer)
                .clone(),
            fields: (!self.whole).then(|| self.fields.iter().cloned().collect()),
            resolved: self.resolved.as_ref().map(|resolved| Resolved {
                value: resolved.value.clone(),
                // A watermark keeps one number per tab, the highest: the
                // rest say nothing more (and a long offline chain of saves
                // would pass what one op may name).
                supersedes: highest_per_tab(&resolved.supersedes),
            }),
        }
    }
}

/// The highest of `ids` per tab, ascending (ids sort by tab, then number).
fn highest_per_tab(ids: &BTreeSet<OpId>) -> Vec<OpId> {
    let mut highest: Vec<OpId> = Vec::new();
    for &id in ids {
        match highest.last_mut() {
            Some(last) if last.tab == id.tab => *last = id,
            _ => highest.push(id),
        }
    }
    highest
}

/// How many ops a resend sends. A relay counts an op on a large key as
/// several against its rate (see
/// [`Limits::max_ops_per_second`](crate::Limits::max_ops_per_second)),
/// and takes a push's one-per-op part before it applies any: a resend of a
/// second's worth of such ops would spend each second's refill on ops it
/// then refuses, and the first op would never go in. So after a resend
/// the relay refused some of as rate limited, the next sends as many as
/// that one got in (at least one), and each resend it takes whole doubles
/// that again, up to a second's worth (one not all answered yet sends as
/// many as the last). Meanwhile new writes wait for the resends (see
/// [`Link::pushes`]); over HTTP alike (see [`Link::http_push`]).
#[derive(Debug, Default)]
struct Resend {
    /// The most the next resend sends (`None`: a second's worth).
    most: Option<usize>,
    /// Since the last resend: ops the relay took (applied or already
    /// held), and whether it refused any as rate limited.
    taken: usize,
    limited: bool,
    /// Whether the relay refused any op as rate limited since the round
    /// of resends began: it paces them, whatever size they grew back to.
    rate_round: bool,
    /// Whether it refused any op for now (for any reason) since the last
    /// resend.
    held_back: bool,
    /// How many ops the last resend sent: what the relay's bucket paid
    /// for just now.
    last_sent: usize,
}

impl Resend {
    fn answered(&mut self, status: &AckStatus) {
        match status {
            AckStatus::Refused { code, .. } if code == crate::code::RATE_LIMITED => {
                self.limited = true;
                self.rate_round = true;
                self.held_back = true;
            }
            // Storage trouble, shutting down: not an answer about the rate.
            status if is_transient(status) => self.held_back = true,
            // Applied, already held, or refused for good: the relay took it.
            _ => self.taken += 1,
        }
    }

    /// Whether the relay's rate limit shapes this round of resends: it
    /// refused some as rate limited since the round began.
    fn paced(&self) -> bool {
        self.rate_round
    }

    /// The round of resends is over (nothing left to resend): the next
    /// starts from what its own acks say, at a second's worth unless they
    /// refuse some for the rate. What was taken since the last resend
    /// still counts (its acks may come after).
    fn round_over(&mut self) {
        self.most = None;
        self.rate_round = false;
    }

    /// How many ops this resend sends, at most `second`.
    fn next(&mut self, second: usize) -> usize {
        let most = match (self.limited, self.most) {
            (true, _) => Some(self.taken.max(1)),
            (false, Some(most)) if self.taken >= most => Some(most.saturating_mul(2)),
            // Not all answered since (a slow relay): as many as before.
            (false, most) => most,
        }
        .filter(|most| *most < second);
        self.most = most;
        self.taken = 0;
        self.limited = false;
        self.held_back = false;
        most.unwrap_or(second)
    }

    /// Whether the relay refused nothing for now since the last resend
    /// (once that resend is answered: it went in whole).
    fn settled(&self) -> bool {
        !self.held_back
    }

    /// The most the resends of this round send a second: the last one's
    /// size.
    fn pace(&self, second: usize) -> usize {
        self.most.unwrap_or(second).min(second)
    }
}

/// The link's state.
#[derive(Debug)]
pub struct Link {
    client: String,
    token: Option<String>,
    streams: Vec<StreamId>,
    cursors: VecMap<StreamId, u64>,
    outbox: BTreeMap<(Stamp, OpId), Op>,
    in_flight: BTreeSet<OpId>,
    status: LinkStatus,
    heartbeat_ms: u64,
    /// What the relay said it accepts (its welcome, or `GET /v1/limits`
    /// over HTTP); until then, this build's own limits.
    limits: Option<Limits>,
    /// Whether the relay answered the ask for its limits over HTTP for
    /// good (with them, or as a relay from before the route), and whether
    /// this connection's ask is out (an ask of an earlier one does not
    /// count: see `connections`).
    limits_settled: bool,
    limits_asking: bool,
    /// Before this, an ask that got no answer is not made again (on the
    /// same connection: the next asks at once).
    limits_retry_at_ms: u64,
    /// Connections ended so far: what tells an answer to an ask of an
    /// earlier connection from one of this connection.
    connections: u64,
    last_heard_ms: u64,
    last_ping_ms: u64,
    failures: u32,
    opened: bool,
    /// The relay refused something on this socket for now (a hello past
    /// its read budget, storage trouble, shutting down).
    refused_for_now: bool,
    /// Sockets in a row that opened and ended after such a refusal: the
    /// backoff grows with them, though each socket opened.
    refused_closes: u32,
    /// This socket brought a frame the link could not read, which may have
    /// carried ops or a snapshot: the link asked the adapter to close it
    /// and reads nothing more from it. Ops of a later frame would move
    /// the cursor past what that one carried, for good; the next socket's
    /// hello asks again from the cursor instead.
    unreadable: bool,
    /// Sockets in a row closed for such a frame: after
    /// `WS_FAILURES_BEFORE_HTTP` of them the link goes to HTTP, which
    /// pulls each stream on its own and pushes without a socket (a proxy
    /// that garbles large socket frames, a relay whose catch-up for one
    /// stream cannot be read, would otherwise stop every write's ack).
    unreadable_closes: u32,
    /// The relay had no room for this socket before its welcome
    /// (`too_many_connections`: its token's subject holds all of the
    /// node's connections it may, or newer sockets took its place before
    /// its hello): the socket counts as one that failed to open, so that
    /// after two the link pushes and polls over HTTP (pushes hold no
    /// connection) rather than wait offline for a connection to free.
    refused_full: bool,
    socket_retry_at_ms: Option<u64>,
    /// On HTTP after socket failures never seen while the relay answered:
    /// they may only mean the relay was down (restarting, say), not that
    /// WebSockets are blocked.
    socket_unproven: bool,
    last_ack_ms: Option<u64>,
    /// When ops the relay refused for now (rate limited, storage trouble)
    /// go again, if some did.
    resend_at_ms: Option<u64>,
    /// Over HTTP, what is left of the resend under way (a push carries
    /// fewer ops than a resend may: the rest go in the next pushes).
    quota: Option<usize>,
    /// How many ops the next resend sends at most, while the relay's rate
    /// limit refuses some (see [`Resend`]).
    resend: Resend,
    /// Streams whose ops this connection has received up to the relay's
    /// head (cleared whenever the connection changes).
    caught_up: VecSet<StreamId>,
    /// Streams this socket has carried ops or a snapshot of: the relay
    /// sends every subscribed stream's catch-up before any ack.
    heard: VecSet<StreamId>,
    /// Stale ops per key, waiting for every stream to catch up.
    stale: VecMap<FullKey, Held>,
    /// Released to the adapter, waiting for [`Link::rebased`].
    rebasing: VecMap<FullKey, Held>,
    /// Re-base ops in flight, and the held ops their ack answers.
    rebases: VecMap<OpId, (FullKey, Vec<OpId>)>,
    /// User-resolve writes refused as stale that a later write of this
    /// device saved over (drafts), by that write: its word is theirs (see
    /// [`draft_carrier`](Self::draft_carrier)).
    drafts: VecMap<OpId, (FullKey, Vec<OpId>)>,
    /// Streams this device must never re-base a key of (kept in storage):
    /// it refused one of their ops from the relay as stale, or merged a
    /// snapshot of them, so its state may lack something the relay holds.
    no_rebase: VecSet<StreamId>,
    /// Streams of which this page passed ops it cannot read (a newer
    /// version's): their stale keys wait, held, for a page that reads
    /// them (a re-base now could undo what those ops did). Not kept in
    /// storage: the next page fetches them again (see the pins).
    unread: VecSet<StreamId>,
    /// What the pieces of a snapshot taking place left out so far, by
    /// stream (see [`Link::snapshot_refusals`]).
    refusals: VecMap<StreamId, SnapshotRefusals>,
    /// Streams to take whole from the relay (a snapshot) once none of
    /// their ops waits in the outbox: this device refused some of their
    /// ops as stale, or lost what it held of one of their keys.
    resync: VecSet<StreamId>,
    /// Streams asked for whole, until their snapshot came and the stream
    /// then caught up on the same connection (kept across reconnections).
    resyncing: VecSet<StreamId>,
    /// Streams this connection carried a snapshot of.
    snapshotted: VecSet<StreamId>,
    /// Streams taken whole whose snapshot is known whole though its
    /// connection ended: its last piece continued a run of pieces (only a
    /// relay that marks pieces says which key one follows), so unlike
    /// [`snapshotted`](Self::snapshotted) it needs no catch-up on the same
    /// connection to be trusted; the next connection catches up from its
    /// number. Cleared when the resync ends or begins again.
    whole: VecSet<StreamId>,
    /// Ops of this browser's the relay answered lately, oldest first (at
    /// most [`MAX_OUTBOX`]): over HTTP an op's ack may come before the pull
    /// that brings it back.
    answered: std::collections::VecDeque<OpId>,
    answered_set: BTreeSet<OpId>,
    /// Snapshots coming in pieces: the last key of the piece merged so far
    /// (the next is asked for after it) and the lowest number the pieces
    /// said, which the cursor moves to once the last piece is merged. Kept
    /// across connections: the next asks for the pieces after it.
    pieces: VecMap<StreamId, Piece>,
    /// The key each stream's last HTTP pull asked for the piece after
    /// (`None`: no piece under way then): an answer to a pull made before
    /// the pieces changed (a resync dropped them) is not counted, whether
    /// or not the relay says which key its piece follows.
    asked: VecMap<StreamId, Option<FullKey>>,
    /// The highest number each stream's stored cursor may take on this
    /// page: an op or snapshot state before it was kept in memory only
    /// (for a key no tab had declared yet, or refused by this version for
    /// now), so a reload must fetch it again.
    pins: VecMap<StreamId, u64>,
    /// Outbox ops storage refused (see [`Link::queue_unsaved`]).
    unsaved: BTreeMap<OpId, Op>,
    /// The number the last ops message of each stream covered past its
    /// last op (see [`OpsBody::through`](crate::message::OpsBody)): the
    /// cursor moves there once those ops are saved.
    covered: VecMap<StreamId, u64>,
    /// Streams the relay refused to let this device read (see
    /// [`Link::forbid`]).
    forbidden: VecSet<StreamId>,
}

/// What a device says of ops of `stream` it cannot read: the same words
/// each time (a page shows each notice once), whatever the ops.
fn unreadable_ops(stream: &StreamId) -> String {
    format!(
        "changes to {stream} that this version of the app cannot read (a newer version wrote them); this page takes the rest, and the next page of the updated app fetches them"
    )
}

/// The stream an ops or snapshot message carries, and what to call the
/// message.
fn carried(message: &ServerMessage) -> Option<(&StreamId, &'static str)> {
    match message {
        ServerMessage::Ops(body) => Some((&body.stream, "ops")),
        ServerMessage::Snapshot(snapshot) => Some((&snapshot.stream, "a snapshot")),
        _ => None,
    }
}

/// `text` as a URL query value: bytes other than letters, digits and
/// `-._~:/` percent-encoded (a key name may hold `&`, `#`, `+`, spaces…).
fn encode_query(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A snapshot merged up to a key, its other pieces still to come.
#[derive(Debug, Clone)]
struct Piece {
    after: FullKey,
    floor: u64,
}

/// What a snapshot piece was to the snapshot being taken (see
/// [`Link::piece_of`]).
enum Piecing {
    /// Merged and counted; `lowered`: its number was lowered to an earlier
    /// piece's (the pieces came at different heads).
    Counted { lowered: bool },
    /// An answer to an older request: merged, not counted.
    Stale,
}

impl Link {
    /// A link for `client` (a device id) following `streams`, reading what
    /// an earlier page left in `storage` (outbox, cursors). `token: None`
    /// makes a link that stays [`LinkStatus::Off`].
    pub fn new(
        client: String,
        token: Option<String>,
        streams: Vec<StreamId>,
        storage: &dyn Storage,
    ) -> Self {
        let mut link = Self {
            status: if token.is_some() {
                LinkStatus::Offline
            } else {
                LinkStatus::Off
            },
            client,
            token,
            streams,
            cursors: VecMap::new(),
            outbox: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            limits: None,
            limits_settled: false,
            limits_asking: false,
            limits_retry_at_ms: 0,
            connections: 0,
            last_heard_ms: 0,
            last_ping_ms: 0,
            failures: 0,
            opened: false,
            refused_for_now: false,
            unreadable: false,
            unreadable_closes: 0,
            refused_closes: 0,
            refused_full: false,
            socket_retry_at_ms: None,
            socket_unproven: false,
            last_ack_ms: None,
            resend_at_ms: None,
            quota: None,
            resend: Resend::default(),
            caught_up: VecSet::default(),
            heard: VecSet::default(),
            stale: VecMap::new(),
            rebasing: VecMap::new(),
            rebases: VecMap::new(),
            drafts: VecMap::new(),
            no_rebase: VecSet::default(),
            unread: VecSet::default(),
            refusals: VecMap::new(),
            resync: VecSet::default(),
            resyncing: VecSet::default(),
            snapshotted: VecSet::default(),
            whole: VecSet::default(),
            pieces: VecMap::new(),
            asked: VecMap::new(),
            pins: VecMap::new(),
            unsaved: BTreeMap::new(),
            covered: VecMap::new(),
            forbidden: VecSet::default(),
            answered: std::collections::VecDeque::new(),
            answered_set: BTreeSet::new(),
        };
        for stream in link.streams.clone() {
            let cursor = storage
                .get(&format!("{CURSOR_PREFIX}{stream}"))
                .ok()
                .flatten()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            link.cursors.insert(stream, cursor);
        }
        link.read_marks(storage);
        link.reload_outbox(storage);
        link
    }

    /// The status.
    pub fn status(&self) -> &LinkStatus {
        &self.status
    }

    /// Ops waiting for an ack.
    pub fn waiting(&self) -> usize {
        self.outbox.len()
    }

    /// When (ms) the relay last acknowledged something.
    pub fn last_ack_ms(&self) -> Option<u64> {
        self.last_ack_ms
    }

    /// The ops storage refused, which wait in this page's memory only
    /// (see [`queue_unsaved`](Self::queue_unsaved)): what a link that
    /// replaces this one must take over.
    pub fn unsaved(&self) -> Vec<Op> {
        self.unsaved.values().cloned().collect()
    }

    /// The cursor of `stream`.
    pub fn cursor(&self, stream: &StreamId) -> u64 {
        self.cursors.get(stream).copied().unwrap_or(0)
    }

    /// Re-reads the outbox from storage (another tab of this browser added
    /// ops, or this is a new page). Only ops of the streams this link
    /// follows are taken: another apartment's link (with perhaps another
    /// token) sends its own.
    pub fn reload_outbox(&mut self, storage: &dyn Storage) {
        self.read_outbox(storage);
    }

    /// [`reload_outbox`](Self::reload_outbox); the storage keys of the ops
    /// it left out as answered by this link already (written back since
    /// by a page or link that still held them), to take out.
    fn read_outbox(&mut self, storage: &dyn Storage) -> Vec<String> {
        let Ok(keys) = storage.keys() else {
            return Vec::new();
        };
        let mut outbox = BTreeMap::new();
        let mut answered = Vec::new();
        for key in keys.iter().filter(|k| k.starts_with(OUTBOX_PREFIX)) {
            let Some(op) = storage
                .get(key)
                .ok()
                .flatten()
                .and_then(|text| {
                    read_bounded::<Op>(&text, MAX_STORED_BYTES, "an op of the outbox").ok()
                })
                .filter(|op| op.validate().is_ok())
                .filter(|op| self.streams.contains(&StreamId::of(&op.key)))
            else {
                continue;
            };
            if self.answered_set.contains(&op.id) {
                answered.push(key.clone());
            } else {
                outbox.insert((op.stamp, op.id), op);
            }
        }
        // Ops storage refused live in this page only.
        for op in self.unsaved.values() {
            outbox.insert((op.stamp, op.id), op.clone());
        }
        self.outbox = outbox;
        answered
    }

    /// Re-reads the outbox (other tabs of this browser queue their own ops
    /// there) and returns the frames that send what is new, if connected.
    ///
    /// Only the relay's answer takes an op out of the outbox: one this
    /// link holds that left storage meanwhile (another tab cleared it,
    /// `localStorage.clear()`) is written back, and kept in this page if
    /// storage refuses it.
    pub fn refresh_outbox(&mut self, storage: &mut dyn Storage) -> Vec<String> {
        self.write_back(storage);
        if self.status == LinkStatus::Connected {
            self.pushes()
        } else {
            Vec::new()
        }
    }

    /// Re-reads the outbox and writes back what this link holds that left
    /// it (see [`refresh_outbox`](Self::refresh_outbox)).
    fn write_back(&mut self, storage: &mut dyn Storage) {
        let before = std::mem::take(&mut self.outbox);
        for answered in self.read_outbox(&*storage) {
            let _ = storage.remove(&answered);
        }
        for (at, op) in before {
            if self.outbox.contains_key(&at) {
                continue;
            }
            if write_outbox_entry(&op, storage).is_err() {
                self.unsaved.insert(op.id, op.clone());
            }
            self.outbox.insert(at, op);
        }
    }

    /// Whether the outbox was cleared from storage while this link waits
    /// on ops in it: [`OUTBOX_MARK`] is gone, and so is the first op it
    /// saved (two reads). A `localStorage.clear()` made in the tab holding
    /// the link fires no storage event there; the adapter asks this on
    /// each tick, [`queue`](Self::queue) before it writes, and
    /// [`refresh_outbox`](Self::refresh_outbox) writes the ops back.
    /// Entries another link removed as answered leave the mark: writing
    /// them back would have the two links write and remove them in turn.
    /// An outbox write made by another link of the same tab after the clear
    /// (another apartment's) sets the mark again first: this link then
    /// writes back at its next read of the outbox only.
    pub fn outbox_gone(&self, storage: &dyn Storage) -> bool {
        matches!(storage.get(OUTBOX_MARK), Ok(None))
            && self
                .outbox
                .values()
                .find(|op| !self.unsaved.contains_key(&op.id))
                .is_some_and(|op| matches!(storage.get(&outbox_key(op.id)), Ok(None)))
    }

    /// Writes `op` to the outbox before anything else happens to it, and
    /// (if connected) returns the frame that sends it.
    ///
    /// Never refused for room: `op` is applied on this device already, and
    /// an op left out would never reach the others. The bound is the
    /// adapter's, before a write applies: once [`waiting`](Self::waiting)
    /// reaches its limit (at most [`MAX_OUTBOX`]) it has the manager
    /// refuse writes of persistent keys, so the outbox passes the limit by
    /// at most the ops of writes already under way (a batch).
    pub fn queue(
        &mut self,
        op: Op,
        storage: &mut dyn Storage,
    ) -> Result<Vec<String>, StorageError> {
        // Cleared in this very tab (no storage event): what this link
        // waits on goes back first, before this write sets the mark again.
        if self.outbox_gone(&*storage) {
            self.write_back(storage);
        }
        write_outbox_entry(&op, storage)?;
        Ok(self.enqueue(op))
    }

    /// [`queue`](Self::queue) for an op storage refused (full, or none):
    /// it waits in this page's memory only, kept across
    /// [`reload_outbox`](Self::reload_outbox) until the relay answers it,
    /// and is lost if the page closes first.
    pub fn queue_unsaved(&mut self, op: Op) -> Vec<String> {
        self.unsaved.insert(op.id, op.clone());
        self.enqueue(op)
    }

    fn enqueue(&mut self, op: Op) -> Vec<String> {
        self.outbox.insert((op.stamp, op.id), op);
        if self.status == LinkStatus::Connected {
            self.pushes()
        } else {
            Vec::new()
        }
    }

    /// Push frames for every op not yet sent in this session, oldest first;
    /// none while ops the relay refused for now wait for their resend (the
    /// next [`tick`](Self::tick) sends them first, as many as it may: a
    /// new write pushed meanwhile would take the relay's budget ahead of
    /// them, see [`Resend`]).
    fn pushes(&mut self) -> Vec<String> {
        if self.resend_at_ms.is_some() {
            return Vec::new();
        }
        self.pushes_at_most(usize::MAX)
    }

    /// Outbox ops to send, oldest first: neither in flight nor `held`
    /// (see [`held`](Self::held)).
    fn unsent<'s>(&'s self, held: &'s BTreeSet<OpId>) -> impl Iterator<Item = &'s Op> {
        self.outbox
            .values()
            .filter(|op| !self.in_flight.contains(&op.id) && !held.contains(&op.id))
    }

    /// [`pushes`](Self::pushes) of the oldest `most` ops not yet in flight.
    fn pushes_at_most(&mut self, most: usize) -> Vec<String> {
        let held = self.held();
        let groups = self.push_groups(self.unsent(&held), most);
        let mut frames = Vec::new();
        for ops in groups {
            let ids: Vec<OpId> = ops.iter().map(|op| op.id).collect();
            if let Ok(text) = ClientMessage::Push(Push { ops }).encode() {
                self.in_flight.extend(ids);
                frames.push(text);
            }
        }
        frames
    }

    /// The first push [`push_groups`](Self::push_groups) would make of
    /// `ops`, looking at no more of them than one push can hold.
    fn first_push<'o>(&self, ops: impl Iterator<Item = &'o Op>, most: usize) -> Option<Vec<Op>> {
        let (_, per_push) = self.push_caps();
        self.push_groups(ops, most.min(per_push)).into_iter().next()
    }

    /// The most bytes and ops one push holds: what the relay's welcome
    /// said (before one, this build's limits), no more ops than it takes
    /// in a second (its bucket holds two seconds' worth: a larger push
    /// could never pass).
    fn push_caps(&self) -> (usize, usize) {
        let (max_bytes, max_ops) = self.limits.map_or((MAX_MESSAGE_BYTES, PUSH_OPS), |l| {
            let per_second = usize::try_from(l.max_ops_per_second).unwrap_or(usize::MAX);
            (l.max_frame_bytes, l.max_ops_per_push.min(per_second))
        });
        let budget = max_bytes
            .min(MAX_MESSAGE_BYTES)
            .saturating_sub(PUSH_ENVELOPE_BYTES);
        (budget, max_ops.clamp(1, PUSH_OPS))
    }

    /// The ops of `ops` a push can carry: an op too large for any push on
    /// its own is left out for good, so it neither waits nor holds new
    /// writes back (the same test as [`push_groups`](Self::push_groups)'s).
    fn carriable<'o>(&self, ops: impl Iterator<Item = &'o Op>) -> impl Iterator<Item = &'o Op> {
        let (budget, _) = self.push_caps();
        ops.filter(move |op| encoded_len(*op, budget) < budget)
    }

    /// Splits `ops` (oldest first) into pushes the relay takes: at most its
    /// ops per push and, encoded, at most its frame size (what its welcome
    /// said; before one, this build's limits), so no push is refused or
    /// fails to encode for its size and holds the outbox up. An op too
    /// large for any push on its own (only a relay with a frame limit
    /// under one value's size has those) is left out and stays queued.
    fn push_groups<'o>(&self, ops: impl Iterator<Item = &'o Op>, most: usize) -> Vec<Vec<Op>> {
        let (budget, most_ops) = self.push_caps();
        let sendable = ops
            .filter_map(|op| {
                // With the comma after it, within one push.
                let len = encoded_len(op, budget);
                (len < budget).then(|| (op.clone(), len))
            })
            .take(most);
        split_by_len(sendable, budget, most_ops)
    }

    /// Whether the adapter should open a WebSocket now (not while on HTTP,
    /// except to retry it every 30 s).
    pub fn wants_socket(&self, now_ms: u64) -> bool {
        match &self.status {
            LinkStatus::Offline => true,
            LinkStatus::HttpFallback => self.socket_retry_at_ms.is_some_and(|at| now_ms >= at),
            _ => false,
        }
    }

    /// The adapter starts opening a socket.
    pub fn connecting(&mut self) {
        if !matches!(
            self.status,
            LinkStatus::Refused(_) | LinkStatus::Off | LinkStatus::HttpFallback
        ) {
            self.status = LinkStatus::Connecting;
        }
    }

    /// Forgets what held for one connection only: ops in flight, what it
    /// brought and caught up. (Snapshot pieces under way stay: the next
    /// connection asks for the rest.)
    fn connection_ended(&mut self) {
        self.in_flight.clear();
        self.quota = None;
        // The next connection on HTTP asks the relay's limits before its
        // first push, however soon: an ask that failed (or is still out)
        // on this one was made while the relay was down, or through a
        // connection that is gone, and the relay may have come back with
        // other limits (a push past them is refused as too_many_ops).
        self.connections = self.connections.wrapping_add(1);
        self.limits_asking = false;
        self.limits_retry_at_ms = 0;
        // Resends the relay's rate limit paces keep their time and size:
        // the budget is the token subject's, and a socket to the same node
        // finds it as the last one left it (ops in flight on this one go
        // with the next resend). Ops refused for another reason (storage
        // trouble, shutting down) go at once on the next connection.
        if !self.resend.paced() {
            self.resend_at_ms = None;
            self.resend = Resend::default();
        }
        self.caught_up.clear();
        self.heard.clear();
        self.snapshotted.clear();
        self.covered.clear();
    }

    /// The socket opened: say hello (with every cursor) and send the
    /// outbox.
    pub fn on_open(&mut self, now_ms: u64) -> Vec<String> {
        self.opened = true;
        self.refused_for_now = false;
        self.refused_full = false;
        self.unreadable = false;
        self.last_heard_ms = now_ms;
        self.connection_ended();
        self.forbidden.clear();
        let hello = ClientMessage::Hello(Hello {
            client: self.client.clone(),
            token: self.token.clone(),
            subscribe: self
                .streams
                .iter()
                .map(|stream| Subscription {
                    stream: stream.clone(),
                    cursor: Some(self.pull_cursor(stream)),
                    after: self.pieces.get(stream).map(|piece| piece.after.clone()),
                })
                .collect(),
        });
        hello.encode().into_iter().collect()
    }

    /// The socket closed (or never opened). Returns the delay (ms) before
    /// the next attempt: jittered exponential backoff, from `jitter` in
    /// `[0, 1)`; `None` when no retry should happen (refused token).
    pub fn on_close(&mut self, jitter: f64, now_ms: u64) -> Option<u64> {
        self.connection_ended();
        if matches!(self.status, LinkStatus::Refused(_) | LinkStatus::Off) {
            return None;
        }
        // A socket that opened proves WebSockets get through, but one the
        // relay refused for now (a hello past its read budget) is no
        // reason to come back sooner: the wait grows as for a failure,
        // without falling back to HTTP (whose reads the relay would count
        // the same).
        // So does one closed for a frame it could not read: a relay (or
        // a proxy) that garbles one is likely to garble it again.
        let unreadable = std::mem::take(&mut self.unreadable);
        self.unreadable_closes = if unreadable {
            self.unreadable_closes.saturating_add(1)
        } else {
            0
        };
        let refused_for_now = std::mem::take(&mut self.refused_for_now) | unreadable;
        let full = std::mem::take(&mut self.refused_full);
        if self.opened && !full {
            self.failures = 0;
            self.refused_closes = if refused_for_now {
                self.refused_closes.saturating_add(1)
            } else {
                0
            };
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        self.opened = false;
        if self.status == LinkStatus::HttpFallback
            || self.failures >= WS_FAILURES_BEFORE_HTTP
            || self.unreadable_closes >= WS_FAILURES_BEFORE_HTTP
        {
            // WebSockets do not get through: HTTP until they do (tried
            // again every WS_RETRY_MS). Failures that sent the link here
            // from elsewhere are proven only once HTTP answers.
            // (A socket refused for its subject's connections opened: the
            // relay was up.)
            if self.status != LinkStatus::HttpFallback && !full && !unreadable {
                self.socket_unproven = true;
            }
            self.socket_retry_at_ms = Some(now_ms.saturating_add(WS_RETRY_MS));
            self.status = LinkStatus::HttpFallback;
            return Some(0);
        }
        self.status = LinkStatus::Offline;
        let tries = self.failures.max(self.refused_closes);
        let base = 500u64.saturating_mul(1 << tries.min(6));
        let delay = (base as f64 * (0.5 + jitter.clamp(0.0, 1.0))).round() as u64;
        Some(delay.min(30_000))
    }

    /// An HTTP request could not reach the relay at all (not just its
    /// WebSocket): the relay is down or the device offline, not behind a
    /// proxy. Back to trying the WebSocket, after the returned delay (ms).
    pub fn on_http_failed(&mut self, jitter: f64) -> u64 {
        self.connection_ended();
        self.forbidden.clear();
        self.socket_retry_at_ms = None;
        if !matches!(self.status, LinkStatus::Refused(_) | LinkStatus::Off) {
            self.status = LinkStatus::Offline;
        }
        self.failures = 1;
        let delay = (1_000.0 * (0.5 + jitter.clamp(0.0, 1.0))).round() as u64;
        delay.min(30_000)
    }

    /// The browser came back online: retry at once, backoff reset.
    pub fn online(&mut self) {
        self.failures = 0;
        self.forbidden.clear();
        if self.status == LinkStatus::HttpFallback {
            // Try the WebSocket again now, whatever the clock says.
            self.socket_retry_at_ms = Some(0);
        }
    }

    /// A text frame from the relay, on the socket.
    pub fn on_text(&mut self, text: &str, now_ms: u64, storage: &mut dyn Storage) -> LinkOutput {
        self.on_frame(text, now_ms, storage, true)
    }

    /// A message from the relay: a socket's text frame (`socket`) or an
    /// HTTP answer's body.
    fn on_frame(
        &mut self,
        text: &str,
        now_ms: u64,
        storage: &mut dyn Storage,
        socket: bool,
    ) -> LinkOutput {
        let mut out = LinkOutput::default();
        if socket && self.unreadable {
            // Asked to close: what follows an unread frame is not read.
            return out;
        }
        self.last_heard_ms = now_ms;
        let message = match ServerMessage::decode_partial(text) {
            Ok(message) => message,
            Err(err) => {
                let mut message = err.message;
                // Over HTTP nothing follows an answer on its connection:
                // the next pull asks from the cursor anyway.
                if socket && ServerMessage::may_carry_state(text) {
                    self.unreadable = true;
                    out.close = true;
                    message.push_str(
                        "; the socket is closed so that nothing after it moves this device past what it held, and is opened again later",
                    );
                }
                out.error = Some((err.code.to_owned(), message));
                return out;
            }
        };
        self.on_message(message, now_ms, storage, &mut out, socket);
        out
    }

    fn on_message(
        &mut self,
        message: ServerMessage,
        now_ms: u64,
        storage: &mut dyn Storage,
        out: &mut LinkOutput,
        socket: bool,
    ) {
        if let Some((stream, what)) = carried(&message)
            && !self.streams.contains(stream)
        {
            // A relay sends only the streams a hello or pull asked for.
            // One that does not is broken or hostile: taking it would
            // store a cursor per stream it names (without bound) and
            // apply what the device never asked for.
            out.error = Some((
                crate::code::MALFORMED.to_owned(),
                format!(
                    "the relay sent {what} of stream {stream}, which this device does not follow; ignored"
                ),
            ));
            return;
        }
        match message {
            ServerMessage::Welcome(welcome) => {
                self.heartbeat_ms = welcome.heartbeat_ms.clamp(1_000, 60_000);
                self.limits = Some(welcome.limits);
                self.status = LinkStatus::Connected;
                self.failures = 0;
                self.socket_retry_at_ms = None;
                self.socket_unproven = false;
                // A pace kept from a connection that ended long enough ago
                // for the relay's bucket to fill again (two seconds' worth)
                // no longer holds.
                if self
                    .resend_at_ms
                    .is_some_and(|at| now_ms >= at.saturating_add(2 * RESEND_AFTER_MS))
                {
                    self.resend = Resend::default();
                }
                // A resend due (kept from the last connection) goes now.
                let frames = if self.resend_due(now_ms) {
                    self.resend_frames(now_ms)
                } else {
                    self.pushes()
                };
                out.send.extend(frames);
            }
            ServerMessage::Ack(acks) => {
                for ack in acks.acks {
                    if self.hold_stale(&ack) {
                        continue;
                    }
                    if let Some((carrier, key)) = self.draft_carrier(&ack) {
                        // Out of the outbox, answered when its carrier is.
                        self.acknowledged(&ack, now_ms, storage);
                        self.drafts
                            .get_or_insert_with(carrier, || (key, Vec::new()))
                            .1
                            .push(ack.op);
                        continue;
                    }
                    if let Some(op) = self.queued(&ack.op) {
                        out.keys.push((ack.op, op.key.clone()));
                    }
                    self.acknowledged(&ack, now_ms, storage);
                    if !is_transient(&ack.status)
                        && let Some((key, drafts)) = self.drafts.remove(&ack.op)
                    {
                        // The write that saved over them says for them.
                        for op in drafts {
                            out.keys.push((op, key.clone()));
                            out.acks.push(Ack {
                                op,
                                status: ack.status.clone(),
                            });
                        }
                    }
                    if !is_transient(&ack.status)
                        && let Some((key, held)) = self.rebases.remove(&ack.op)
                    {
                        if matches!(ack.status, AckStatus::Refused { .. }) {
                            // Nothing carried them: take the stream whole.
                            self.want_resync(&key, storage);
                        }
                        // The re-base's word is the word on what it carried.
                        for op in held {
                            out.keys.push((op, key.clone()));
                            out.acks.push(Ack {
                                op,
                                status: ack.status.clone(),
                            });
                        }
                    }
                    out.acks.push(ack);
                }
                // The round's last resend answered whole, with no more
                // waiting than its pace leaves room for: the round is
                // over, and what waits goes now (new writes under a
                // steady stream must not wait for ticks for good).
                if self.resend_at_ms.is_some() && self.round_settled() {
                    self.resend_done(false, now_ms);
                    if socket {
                        out.send.extend(self.pushes());
                    }
                }
                self.socket_caught_up();
            }
            ServerMessage::Ops(mut body) => {
                self.heard.insert(body.stream.clone());
                // Ops this version cannot read (a newer one's), of those
                // this device has not passed and the relay has: the stored
                // cursor stays before them, so a later page fetches them
                // again; this page takes the rest, and its cursor moves
                // past them as past ops not for it. Its state now lacks
                // what they did: its stale keys wait for that page.
                let (cursor, head) = (self.cursor(&body.stream), body.head);
                let unread = || {
                    body.unreadable
                        .iter()
                        .map(|(seq, _)| *seq)
                        .filter(move |seq| *seq > cursor && *seq <= head)
                };
                if let (Some(first), Some(past)) = (unread().min(), unread().max()) {
                    self.pin_cursor(&body.stream, first - 1);
                    self.unread.insert(body.stream.clone());
                    body.through = body.through.filter(|t| *t <= head).max(Some(past));
                    out.error = Some((
                        crate::code::UNREADABLE.to_owned(),
                        unreadable_ops(&body.stream),
                    ));
                }
                let last = body.ops.last().map(|last| last.seq);
                // Ops this device may not read, between its last op and
                // `through`: its cursor moves past them too (once the ops
                // before are applied, or now if there are none).
                let through = body
                    .through
                    .filter(|through| *through <= body.head && last.is_none_or(|l| *through > l));
                let reached = through
                    .or(last)
                    .unwrap_or_else(|| self.cursor(&body.stream));
                if reached >= body.head {
                    self.caught_up.insert(body.stream.clone());
                }
                match through {
                    Some(through) if body.ops.is_empty() => {
                        self.save_cursor(&body.stream, through, storage);
                    }
                    Some(through) => {
                        self.covered.insert(body.stream.clone(), through);
                    }
                    None => {}
                }
                if !body.ops.is_empty() {
                    out.ops.push((body.stream.clone(), body.ops));
                }
            }
            ServerMessage::Snapshot(mut snapshot) => {
                // Caught up only once all of it came: a snapshot may take
                // several messages.
                self.heard.insert(snapshot.stream.clone());
                match self.piece_of(&mut snapshot, socket) {
                    // A socket whose pieces follow another key than the
                    // one merged last brings nothing that counts: the next
                    // hello asks after the right one.
                    Piecing::Stale => out.close |= socket,
                    Piecing::Counted { lowered } if !snapshot.more => {
                        self.snapshotted.insert(snapshot.stream.clone());
                        if snapshot.after.is_some() && self.resyncing.contains(&snapshot.stream) {
                            self.whole.insert(snapshot.stream.clone());
                        }
                        // Its first pieces are older than its last: the
                        // ops this socket sends next follow the last, so
                        // those written between would be skipped. The next
                        // hello asks from the oldest piece's number. (Over
                        // HTTP the next pull does. A last piece that
                        // follows no key ends a run from the first key on
                        // this socket, at one head: nothing to skip, and a
                        // relay that predates `more` still has pieces of it
                        // to send.)
                        out.close |= lowered && socket && snapshot.after.is_some();
                    }
                    Piecing::Counted { .. } => {}
                }
                // Merging it may drop what lies behind this device's own
                // horizon without a word: never re-base this stream.
                self.mark_no_rebase(&snapshot.stream, storage);
                // States this version cannot read (a newer one's): the
                // next page takes the stream again from its start (the
                // tabs name the states among those refused).
                if snapshot.newer {
                    self.pin_cursor(&snapshot.stream, 0);
                }
                out.snapshots.push(snapshot);
            }
            ServerMessage::Error(mut body) => {
                // The device's own word for ops it cannot read, never a
                // relay's: from one, it is the relay's problem like any.
                if body.code == crate::code::UNREADABLE {
                    crate::code::MALFORMED.clone_into(&mut body.code);
                }
                if body.code == crate::code::UNAUTHORIZED || body.code == crate::code::TOKEN_EXPIRED
                {
                    self.status = LinkStatus::Refused(body.code.clone());
                    out.close = true;
                }
                if socket && is_transient_code(&body.code) {
                    self.refused_for_now = true;
                }
                // No room for this socket before its welcome (its subject's
                // share is taken, or newer sockets took its place): as if
                // it had not opened, as when the node refuses it whole (a
                // 503).
                if socket
                    && body.code == crate::code::TOO_MANY_CONNECTIONS
                    && self.status != LinkStatus::Connected
                {
                    self.refused_full = true;
                }
                out.error = Some((body.code, body.message));
            }
            ServerMessage::Ping(ping) => {
                out.send.extend(ClientMessage::Pong(ping).encode());
            }
            // It answers a ping sent after the welcome, so it follows every
            // stream's catch-up: as good as an ack.
            ServerMessage::Pong(_) => {
                // The socket works, whatever was refused on it before: a
                // refusal later on it waits as after the first.
                self.refused_for_now = false;
                self.refused_closes = 0;
                self.unreadable_closes = 0;
                self.socket_caught_up();
            }
        }
    }

    /// Holds `ack` back if it refuses a counter or merge op as stale (and
    /// the op is not itself a re-base): the op stays in the outbox until a re-base
    /// carries it, and is not sent again on this connection.
    fn hold_stale(&mut self, ack: &Ack) -> bool {
        let AckStatus::Refused { code, message } = &ack.status else {
            return false;
        };
        if code != crate::code::STALE || self.rebases.contains_key(&ack.op) {
            return false;
        }
        // The outbox field itself, not `queued`: the fields below change.
        let Some(op) = self.outbox.values().find(|op| op.id == ack.op) else {
            return false;
        };
        if self.superseded_in_outbox(op).is_some() {
            // A draft: see `draft_carrier`.
            return false;
        }
        // Only counter and merge keys have a floor (`KeyState::floor`):
        // whatever the relay refused as stale is one of theirs.
        // Whatever came before is no proof the stream is caught up now.
        self.caught_up.remove(&StreamId::of(&op.key));
        let held = self
            .stale
            .get_or_insert_with(op.key.clone(), || Held::new(op.writer.clone()));
        held.hold(op, message);
        // Drafts it saved over go with it: the re-base's word is theirs.
        if let Some((_, drafts)) = self.drafts.remove(&ack.op) {
            for draft in drafts {
                held.ops.insert(draft, message.clone());
            }
        }
        true
    }

    /// A user-resolve write a later write of this device in the outbox
    /// superseded: that write, if there is one.
    fn superseded_in_outbox(&self, op: &Op) -> Option<OpId> {
        if !matches!(op.payload, Payload::Resolve { .. }) {
            return None;
        }
        self.outbox
            .values()
            .find(|later| {
                later.key == op.key
                    && matches!(&later.payload, Payload::Resolve { supersedes, .. }
                        if supersedes.contains(&op.id))
            })
            .map(|later| later.id)
    }

    /// For a user-resolve write refused as stale that a later write of
    /// this device saved over (a draft, offline), that write and the key.
    /// The draft is not written again (it would stand beside the write
    /// that replaced it): it leaves the outbox, and the later write's
    /// final word, or its re-base's, answers it too.
    fn draft_carrier(&self, ack: &Ack) -> Option<(OpId, FullKey)> {
        let AckStatus::Refused { code, .. } = &ack.status else {
            return None;
        };
        if code != crate::code::STALE || self.rebases.contains_key(&ack.op) {
            return None;
        }
        let op = self.outbox.values().find(|op| op.id == ack.op)?;
        Some((self.superseded_in_outbox(op)?, op.key.clone()))
    }

    /// The ops refused as stale that wait for a re-base.
    fn held(&self) -> BTreeSet<OpId> {
        // Inserted one by one: collecting into a set compiles a sort of its
        // own for each place that collects (about 4 KiB of wasm each).
        let mut ids = BTreeSet::new();
        for held in self.stale.values().chain(self.rebasing.values()) {
            ids.extend(held.ops.keys().copied());
        }
        ids
    }

    /// The adapter applied an op of `key` from the relay and this device
    /// refused it as stale (its own writes moved its floor past it). Its
    /// state then lacks what the relay holds, and a re-base would make
    /// every device lose it: the stream is never re-based from here (the
    /// mark is kept in storage, before the cursor moves past the op), its
    /// ops refused as stale are refused for good, and once none of its ops
    /// waits in the outbox the link takes it whole from the relay.
    pub fn refused_stale(&mut self, key: &FullKey, storage: &mut dyn Storage) {
        // In memory too: storage may be full (a long absence fills it).
        mark_refused_stale(key, storage);
        let stream = StreamId::of(key);
        self.no_rebase.insert(stream.clone());
        if !self.resyncing.contains(&stream) {
            self.resync.insert(stream);
        }
    }

    /// Reads the marks any tab of this browser left (see
    /// [`mark_refused_stale`] and [`mark_resync`]).
    fn read_marks(&mut self, storage: &dyn Storage) {
        for stream in &self.streams {
            let marked = |prefix: &str| {
                storage
                    .get(&format!("{prefix}{stream}"))
                    .ok()
                    .flatten()
                    .is_some()
            };
            if marked(NO_REBASE_PREFIX) {
                self.no_rebase.insert(stream.clone());
            }
            if marked(RESYNC_PREFIX) && !self.resyncing.contains(stream) {
                self.resync.insert(stream.clone());
            }
        }
    }

    /// On a socket the relay writes every subscribed stream's catch-up
    /// before any ack or pong (and none at all on a socket that closes
    /// before its catch-up is through), and fans out the ops committed
    /// with a push before its ack: an ack or a pong means every stream
    /// this socket carried has caught up. (Over HTTP a pull must reach
    /// the head.)
    fn socket_caught_up(&mut self) {
        if self.opened && self.status == LinkStatus::Connected {
            self.caught_up.extend(self.heard.iter().cloned());
        }
    }

    /// Whether `op` is this browser's own: in the outbox, or answered by
    /// the relay lately. The relay sends every op back to its sender too.
    pub fn is_own(&self, op: &OpId) -> bool {
        self.answered_set.contains(op) || self.queued(op).is_some()
    }

    /// The op `id` if it waits in the outbox.
    fn queued(&self, id: &OpId) -> Option<&Op> {
        self.outbox.values().find(|op| op.id == *id)
    }

    fn remember_answered(&mut self, op: OpId) {
        if self.answered_set.insert(op) {
            self.answered.push_back(op);
            if self.answered.len() > MAX_OUTBOX
                && let Some(oldest) = self.answered.pop_front()
            {
                self.answered_set.remove(&oldest);
            }
        }
    }

    /// Keeps track of a snapshot that comes in pieces. A piece with
    /// [`more`](Snapshot::more) to come is remembered (the next is asked
    /// for after its last key: over HTTP in the pull, over a socket that
    /// closed between pieces in the next hello); the last piece's number
    /// becomes the lowest any piece said, as keys merged from earlier
    /// pieces are only as recent as those.
    ///
    /// A piece that says which key it follows ([`Snapshot::after`]) counts
    /// only if that is the key merged last, and an HTTP answer only if the
    /// pull was asked after the key merged last (`socket`: it came on the
    /// socket): otherwise it answers an older request (a pull still in
    /// flight when a socket opened, or when a resync dropped the pieces
    /// under way) and is [`Piecing::Stale`]: merged, as any canonical state
    /// may be, but not counted, and the snapshot goes on. A piece that
    /// says none starts at the first key (or comes from a relay that
    /// predates `after`, which starts over or answers the `after=` it was
    /// asked): a new run of pieces that covers the stream from the first
    /// key with what was merged before, keeping the lowest number. A piece
    /// with more to come but no states (a relay in error) ends the
    /// snapshot there rather than ask again after the same key forever.
    fn piece_of(&mut self, snapshot: &mut Snapshot, socket: bool) -> Piecing {
        let before = self.pieces.remove(&snapshot.stream);
        let merged = before.as_ref().map(|before| &before.after);
        let asked = if socket {
            None
        } else {
            self.asked.remove(&snapshot.stream)
        };
        let stale = snapshot
            .after
            .as_ref()
            .is_some_and(|follows| merged != Some(follows))
            || asked.is_some_and(|asked| asked.as_ref() != merged);
        if stale {
            if let Some(before) = before {
                self.pieces.insert(snapshot.stream.clone(), before);
            }
            // Not the end of anything: the cursor stays where it is.
            snapshot.more = true;
            snapshot.piece = PieceOf::Stale;
            return Piecing::Stale;
        }
        // A piece that follows no key while a run is under way: the next
        // piece from a relay that predates `after`, or the snapshot sent
        // again from its start (such a relay ignores `after=` on a new
        // socket) when its first key is not past the run's last.
        let restarts = snapshot.after.is_none()
            && before.as_ref().is_some_and(|before| {
                snapshot
                    .first_key()
                    .is_none_or(|first| *first <= before.after)
            });
        snapshot.piece = if before.is_some() && !restarts {
            PieceOf::Next
        } else {
            PieceOf::Start
        };
        let mut lowered = false;
        if let Some(before) = before {
            lowered = before.floor < snapshot.seq;
            snapshot.seq = snapshot.seq.min(before.floor);
        }
        if snapshot.more {
            // The piece's last key as the relay sent it: a state this
            // build left out still moves the next piece past it.
            match snapshot.last_key().cloned() {
                Some(last) => {
                    self.pieces.insert(
                        snapshot.stream.clone(),
                        Piece {
                            after: last,
                            floor: snapshot.seq,
                        },
                    );
                }
                None => snapshot.more = false,
            }
        }
        Piecing::Counted { lowered }
    }

    /// The relay refused to let this device read `stream` (its token has
    /// no grant for it: a token without global keys, say): the HTTP
    /// fallback stops pulling it until the link reconnects, the other
    /// streams go on. When it may read none of them the link is refused,
    /// as for a bad token. Only a refusal the relay itself said (an error
    /// of code `forbidden`) counts: a proxy's 403 page is no such word.
    pub fn forbid(&mut self, stream: &StreamId, answer: &str) {
        let said = matches!(
            ServerMessage::decode(answer),
            Ok(ServerMessage::Error(body)) if body.code == crate::code::FORBIDDEN
        );
        if !said {
            return;
        }
        self.forbidden.insert(stream.clone());
        if self.streams.iter().all(|s| self.forbidden.contains(s)) {
            self.status = LinkStatus::Refused(crate::code::FORBIDDEN.to_owned());
        }
    }

    /// Whether the HTTP fallback pulls `stream` (see
    /// [`forbid`](Self::forbid)).
    pub fn may_pull(&self, stream: &StreamId) -> bool {
        !self.forbidden.contains(stream)
    }

    /// Keeps `stream`'s stored cursor at `through` at most for the rest of
    /// this page (see [`save_cursor`](Self::save_cursor)): something after
    /// it was kept in memory only, or refused by this version for now, so
    /// a reload must fetch it again. The cursor this page asks the relay
    /// from still moves on.
    pub fn pin_cursor(&mut self, stream: &StreamId, through: u64) {
        let pin = self.pins.get_or_insert_with(stream.clone(), || through);
        *pin = (*pin).min(through);
    }

    /// [`pin_cursor`](Self::pin_cursor) at the cursor `stream` has now:
    /// what comes next was not saved.
    pub fn pin_here(&mut self, stream: &StreamId) {
        self.pin_cursor(stream, self.cursor(stream));
    }

    fn mark_no_rebase(&mut self, stream: &StreamId, storage: &mut dyn Storage) {
        if self.no_rebase.insert(stream.clone()) {
            let _ = storage.set(&format!("{NO_REBASE_PREFIX}{stream}"), "1");
        }
    }

    /// What the link decides once the adapter has applied (and saved) what
    /// the last messages brought: re-bases of stale keys whose stream
    /// has caught up, refusals of those it must not re-base, and streams
    /// to take whole. Called after every message's ops were applied: only
    /// then does the link know whether any of them was refused as stale.
    pub fn settle(&mut self, storage: &mut dyn Storage) -> LinkOutput {
        let mut out = LinkOutput::default();
        let done: Vec<StreamId> = self
            .resyncing
            .iter()
            .filter(|s| {
                (self.snapshotted.contains(*s) || self.whole.contains(*s))
                    && self.caught_up.contains(*s)
            })
            .cloned()
            .collect();
        for stream in done {
            self.whole.remove(&stream);
            self.resyncing.remove(&stream);
            let _ = storage.remove(&format!("{RESYNC_PREFIX}{stream}"));
        }
        self.read_marks(storage);
        self.release(&mut out, storage);
        self.resync_due(&mut out);
        out
    }

    /// Streams to take whole whose ops no longer wait in the outbox: their
    /// snapshot now holds everything this device sent, and merging it
    /// brings what the device refused as stale (the relay's compacted
    /// state covers it). On a socket that means reconnecting, since a stream's
    /// cursor is said in the hello; on HTTP the next pull asks for it.
    fn resync_due(&mut self, out: &mut LinkOutput) {
        let due: Vec<StreamId> = self
            .resync
            .iter()
            .filter(|stream| {
                !self.outbox.values().any(|op| {
                    // Waiting for a re-base put off: held again (`stale`)
                    // or handed out for another try (`rebasing`).
                    let put_off = |held: &Held| held.put_off && held.ops.contains_key(&op.id);
                    StreamId::of(&op.key) == **stream
                        && !self.stale.get(&op.key).is_some_and(put_off)
                        && !self.rebasing.get(&op.key).is_some_and(put_off)
                })
            })
            .cloned()
            .collect();
        for stream in due {
            self.resync.remove(&stream);
            self.snapshotted.remove(&stream);
            self.whole.remove(&stream);
            // Taken whole: not the rest of a snapshot begun before (an
            // answer to a pull for that rest is then stale).
            self.pieces.remove(&stream);
            self.resyncing.insert(stream);
            if self.opened {
                out.close = true;
            }
        }
    }

    /// Hands the held keys whose streams have caught up to the adapter.
    fn release(&mut self, out: &mut LinkOutput, storage: &mut dyn Storage) {
        let ready: Vec<FullKey> = self
            .stale
            .keys()
            .filter(|key| {
                // (One never re-based is refused now, unread or not.)
                let stream = StreamId::of(key);
                self.caught_up.contains(&stream)
                    && (!self.unread.contains(&stream) || self.no_rebase.contains(&stream))
            })
            .cloned()
            .collect();
        for key in ready {
            if let Some(held) = self.stale.remove(&key) {
                if self.no_rebase.contains(&StreamId::of(&key)) {
                    self.rebasing.insert(key.clone(), held);
                    let refused = self.rebased(&key, None, storage);
                    out.keys
                        .extend(refused.iter().map(|ack| (ack.op, key.clone())));
                    out.acks.extend(refused);
                    continue;
                }
                match self.rebasing.get_mut(&key) {
                    Some(earlier) => {
                        earlier.absorb(held);
                        out.rebase.push(earlier.rebase(&key));
                    }
                    None => {
                        out.rebase.push(held.rebase(&key));
                        self.rebasing.insert(key, held);
                    }
                }
            }
        }
    }

    /// The adapter cannot re-base `key` yet: this tab has not declared it
    /// (its unit is not shown here). The held ops stay in the outbox,
    /// unanswered and not sent again on this connection, and the re-base
    /// is asked for again at the next [`settle`](Self::settle), until a
    /// tab holding the link can write it (after a reload, the outbox is
    /// sent again and refused again, and held again).
    ///
    /// While it waits, its ops keep no stream from being taken whole (a
    /// resync the stream needs for another key goes ahead; the re-base is
    /// then refused, as for any stream taken whole).
    pub fn rebase_later(&mut self, key: &FullKey) {
        let Some(mut held) = self.rebasing.remove(key) else {
            return;
        };
        if let Some(later) = self.stale.remove(key) {
            held.absorb(later);
        }
        held.put_off = true;
        self.stale.insert(key.clone(), held);
    }

    /// The adapter re-based `key` with the op `rebase` (already queued), or
    /// could not (`None`: the held ops are refused after all, and the acks
    /// returned say so). A re-base that is not in the outbox (it could not
    /// be queued) counts as none. Either way the held ops leave the outbox.
    pub fn rebased(
        &mut self,
        key: &FullKey,
        rebase: Option<OpId>,
        storage: &mut dyn Storage,
    ) -> Vec<Ack> {
        let Some(held) = self.rebasing.remove(key) else {
            return Vec::new();
        };
        let rebase = rebase.filter(|id| self.queued(id).is_some());
        for &id in held.ops.keys() {
            self.remember_answered(id);
            self.in_flight.remove(&id);
            self.outbox.retain(|_, op| op.id != id);
            self.unsaved.remove(&id);
            remove_outbox_entry(id, storage);
        }
        match rebase {
            Some(rebase) => {
                let ids = held.ops.into_keys();
                self.rebases
                    .get_or_insert_with(rebase, || (key.clone(), Vec::new()))
                    .1
                    .extend(ids);
                Vec::new()
            }
            None => {
                self.want_resync(key, storage);
                held.ops
                    .into_iter()
                    .map(|(op, message)| Ack {
                        op,
                        status: AckStatus::Refused {
                            code: crate::code::STALE.to_owned(),
                            message,
                        },
                    })
                    .collect()
            }
        }
    }

    /// The held ops of `key` are refused for good: take its stream whole
    /// from the relay once nothing of it waits in the outbox.
    fn want_resync(&mut self, key: &FullKey, storage: &mut dyn Storage) {
        let stream = StreamId::of(key);
        let _ = storage.set(&format!("{RESYNC_PREFIX}{stream}"), "1");
        if !self.resyncing.contains(&stream) {
            self.resync.insert(stream);
        }
    }

    fn acknowledged(&mut self, ack: &Ack, now_ms: u64, storage: &mut dyn Storage) {
        self.in_flight.remove(&ack.op);
        self.resend.answered(&ack.status);
        if is_transient(&ack.status) {
            // Refused for now: the resend under way over HTTP stops (what
            // the relay refuses now it refuses again at once).
            self.quota = None;
            if self.resend_at_ms.is_none() {
                // It stays in the outbox; the next resend (a tick, an HTTP
                // push, a new connection) sends it again.
                self.resend_at_ms = Some(now_ms.saturating_add(RESEND_AFTER_MS));
            }
        }
        match &ack.status {
            AckStatus::Applied { .. } | AckStatus::Duplicate { .. } | AckStatus::Refused { .. }
                if !is_transient(&ack.status) =>
            {
                self.outbox.retain(|_, op| op.id != ack.op);
                self.unsaved.remove(&ack.op);
                remove_outbox_entry(ack.op, storage);
                self.last_ack_ms = Some(now_ms);
                self.remember_answered(ack.op);
            }
            // Rate limited, storage trouble, shutting down: it stays in the
            // outbox and goes again.
            _ => {}
        }
    }

    /// Called every second or so: a ping when due, and `true` when the
    /// relay has been silent for three heartbeats (close the socket).
    pub fn tick(&mut self, now_ms: u64) -> (Vec<String>, bool) {
        if self.status != LinkStatus::Connected {
            return (Vec::new(), false);
        }
        if now_ms.saturating_sub(self.last_heard_ms) > self.heartbeat_ms * 3 {
            return (Vec::new(), true);
        }
        if self.resend_due(now_ms) {
            let frames = self.resend_frames(now_ms);
            if !frames.is_empty() {
                return (frames, false);
            }
        }
        if now_ms.saturating_sub(self.last_ping_ms) >= self.heartbeat_ms {
            self.last_ping_ms = now_ms;
            return (
                ClientMessage::Ping(Ping { at: now_ms })
                    .encode()
                    .into_iter()
                    .collect(),
                false,
            );
        }
        (Vec::new(), false)
    }

    /// The resend due now, over a socket: as many ops as [`Resend`]
    /// allows, in as many pushes as they take.
    fn resend_frames(&mut self, now_ms: u64) -> Vec<String> {
        let most = self.resend.next(self.second());
        let before = self.in_flight.len();
        let frames = self.pushes_at_most(most);
        // A resend that found nothing to send leaves the last one's count
        // (its ops may still be unanswered).
        let sent = self.in_flight.len().saturating_sub(before);
        if sent > 0 {
            self.resend.last_sent = sent;
        }
        let held = self.held();
        // Ops still unanswered keep the round open: new writes must not go
        // ahead of a resend the relay may yet refuse (ops held as stale
        // wait for a re-base, not for the relay: they do not).
        let left = self.in_flight.iter().any(|id| !held.contains(id))
            || self.carriable(self.unsent(&held)).next().is_some();
        self.resend_done(left, now_ms);
        frames
    }

    /// Whether the round of resends can end now: its last resend was
    /// answered whole (no op of it unanswered but those held as stale, and
    /// over HTTP all its pushes sent), and what waits fits in what that
    /// resend left of the round's pace.
    fn round_settled(&self) -> bool {
        // Over HTTP, a resend under way (more pushes of it to come) is not
        // answered whole yet.
        if !self.resend.settled() || self.quota.is_some() {
            return false;
        }
        let held = self.held();
        if self.in_flight.iter().any(|id| !held.contains(id)) {
            return false;
        }
        // What waits goes at once with the round's end, right after the
        // resend the relay just paid for: the two together within the
        // round's pace (a second's worth once it grew back). A resend that
        // took all there was ends the round too, so writes trickling in
        // go at once again.
        let room = self
            .resend
            .pace(self.second())
            .saturating_sub(self.resend.last_sent);
        // Counted as pushes carry them; measured only when more wait.
        if self.unsent(&held).nth(room).is_none() {
            return true;
        }
        self.carriable(self.unsent(&held)).nth(room).is_none()
    }

    /// A resend was sent, leaving ops that a push can carry or not (one too
    /// large for any is left out for good, and must not hold new writes
    /// back): the next one a second later, or none. With none left the
    /// round of resends is over (a round paced down long ago must not
    /// slow a later one: see [`Resend::round_over`]).
    fn resend_done(&mut self, left: bool, now_ms: u64) {
        let from = self.resend_base(now_ms);
        self.resend_at_ms = left.then(|| from.saturating_add(RESEND_AFTER_MS));
        if !left {
            self.resend.round_over();
        }
    }

    /// When the resend going at `now_ms` was due: the next one is a second
    /// after it, so one sent a little early (see [`resend_due`](Self::resend_due))
    /// does not bring the next ones earlier too. A time set further ahead
    /// than a resend waits (the clock went back) counts from now.
    fn resend_base(&self, now_ms: u64) -> u64 {
        match self.resend_at_ms {
            Some(at) if at > now_ms && at <= now_ms.saturating_add(RESEND_AFTER_MS) => at,
            _ => now_ms,
        }
    }

    /// Whether a resend is due at `now_ms`: it was set and its time has
    /// come, or it was set further ahead than a resend waits (the clock
    /// went back). Until then ops wait for it, new writes too.
    fn resend_due(&self, now_ms: u64) -> bool {
        // A tick a little early (timers drift) must not put the resend off
        // by a whole tick.
        // A time further ahead than the next resend can be (a second
        // after one sent early: see `resend_base`) means the clock went
        // back.
        self.resend_at_ms.is_some_and(|at| {
            now_ms.saturating_add(RESEND_SLACK_MS) >= at
                || at > now_ms.saturating_add(RESEND_AFTER_MS + RESEND_SLACK_MS)
        })
    }

    /// A second's worth of ops (what the relay takes of small ops), the
    /// most a resend sends.
    fn second(&self) -> usize {
        self.limits.map_or(PUSH_OPS, |l| {
            usize::try_from(l.max_ops_per_second)
                .unwrap_or(usize::MAX)
                .max(1)
        })
    }

    /// Records that everything up to `seq` of `stream` was applied and
    /// saved: later sessions resume after it (or after the stream's pin,
    /// if lower: see [`pin_cursor`](Self::pin_cursor)).
    pub fn save_cursor(&mut self, stream: &StreamId, seq: u64, storage: &mut dyn Storage) {
        // The last ops applied were followed by ops not for this device.
        let seq = match self.covered.remove(stream) {
            Some(through) if through > seq => through,
            _ => seq,
        };
        let cursor = self.cursors.get_or_default(stream.clone());
        if seq > *cursor {
            *cursor = seq;
            self.store_cursor(stream, seq, storage);
        }
    }

    /// Stores `seq` as `stream`'s cursor for later sessions, no further
    /// than its pin.
    fn store_cursor(&self, stream: &StreamId, seq: u64, storage: &mut dyn Storage) {
        let stored = self.pins.get(stream).map_or(seq, |pin| seq.min(*pin));
        let _ = storage.set(&format!("{CURSOR_PREFIX}{stream}"), &stored.to_string());
    }

    /// The last piece of a snapshot of `stream` at `seq` was merged and
    /// saved: later sessions resume after `seq`, even where the cursor was
    /// further on. The relay answers a cursor past its head with a
    /// snapshot (its store was restored from an older backup, or
    /// `relay.json` names another relay, or a broken relay once said a
    /// wrong number): the ops that follow it come under numbers the old
    /// cursor already passed, and kept there, the next session would skip
    /// them. (Where the cursor was behind, this is
    /// [`save_cursor`](Self::save_cursor).)
    ///
    /// A pin ([`pin_cursor`](Self::pin_cursor)) counts in the numbers of
    /// the log it was taken in: where the snapshot lowered the cursor, what
    /// it kept from being stored (a state of this snapshot not saved, say)
    /// is fetched again from the start of this log.
    pub fn snapshot_saved(&mut self, stream: &StreamId, seq: u64, storage: &mut dyn Storage) {
        self.covered.remove(stream);
        let cursor = self.cursors.get_or_default(stream.clone());
        if seq < *cursor
            && let Some(pin) = self.pins.get_mut(stream)
        {
            *pin = 0;
        }
        *cursor = seq;
        self.store_cursor(stream, seq, storage);
    }

    /// Adds up what a piece of a snapshot of `stream` left out
    /// (`refused`) and passed on (`passed`), so a page says it once per
    /// snapshot, with the totals, rather than once per piece (a snapshot
    /// of many keys comes in many pieces). Returns the totals at the
    /// snapshot's last piece (`more` false) if any state was left out.
    /// `piece` is where the link placed the piece ([`Snapshot::piece`]):
    /// the first of a run starts the sum again (the snapshot was asked for
    /// again), and an answer to an older request is not counted (its
    /// states were merged; a later piece brings them again if need be).
    pub fn snapshot_refusals(
        &mut self,
        stream: &StreamId,
        piece: PieceOf,
        more: bool,
        refused: &[(FullKey, gaesup_state_core::Error)],
        passed: usize,
    ) -> Option<SnapshotRefusals> {
        match piece {
            PieceOf::Stale => return None,
            PieceOf::Start => {
                self.refusals.remove(stream);
            }
            PieceOf::Next => {}
        }
        let sum = self.refusals.get_or_default(stream.clone());
        sum.refused = sum.refused.saturating_add(refused.len());
        sum.passed = sum.passed.saturating_add(passed);
        if sum.first.is_none()
            && let Some((key, err)) = refused.first()
        {
            sum.first = Some((key.clone(), err.to_string()));
        }
        if more {
            return None;
        }
        self.refusals.remove(stream).filter(|sum| sum.refused > 0)
    }

    // ----- HTTP fallback ------------------------------------------------

    /// The path to ask the relay's limits at (`GET`, before a push), while
    /// the link knows none and has ops to push: a link on HTTP alone has
    /// had no welcome, and a push past the relay's limits (ops a push,
    /// frame size) would be refused again and again. Asked until the
    /// relay answers for good (see [`on_http_limits`](Self::on_http_limits)),
    /// one ask at a time, at most one every two seconds.
    pub fn http_limits(&mut self, now_ms: u64) -> Option<LimitsAsk> {
        if self.limits.is_some()
            || self.limits_settled
            || self.limits_asking
            || self.outbox.is_empty()
            || now_ms < self.limits_retry_at_ms
        {
            return None;
        }
        self.limits_asking = true;
        Some(LimitsAsk {
            connection: self.connections,
        })
    }

    /// The answer to [`http_limits`](Self::http_limits) at `now_ms`,
    /// `None` if the request failed: the relay's limits, if it said them
    /// and no welcome said them first. A relay from before the route (404
    /// or 405) leaves this build's limits, for good; a failure or an error
    /// page is asked again two seconds later, and a page that is not
    /// limits (a site's page for any path, a captive portal) a minute
    /// later. An ask made on a connection that has ended since only
    /// brings limits, if the relay said them: its failure says nothing of
    /// this connection, which asks on its own.
    pub fn on_http_limits(&mut self, ask: LimitsAsk, answer: Option<(u16, &str)>, now_ms: u64) {
        let current = ask.connection == self.connections;
        if current {
            self.limits_asking = false;
        }
        let said = match answer {
            Some((200..=299, text)) => read_bounded::<Limits>(text, 1024, "limits").ok(),
            _ => None,
        };
        if let Some(limits) = said {
            if self.limits.is_none() {
                self.limits = Some(limits);
            }
            return;
        }
        if !current {
            return;
        }
        match answer {
            // A page that is not limits (a site's page for any path).
            Some((200..=299, _)) => {
                self.limits_retry_at_ms = now_ms.saturating_add(LIMITS_RETRY_LATER_MS);
            }
            Some((404 | 405, _)) => self.limits_settled = true,
            _ => self.limits_retry_at_ms = now_ms.saturating_add(LIMITS_RETRY_MS),
        }
    }

    /// The token, for an `Authorization: Bearer` header.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A push body for the oldest ops in the outbox (one push's worth,
    /// within the relay's limits), or `None` when there is nothing to send
    /// now.
    ///
    /// Paced as over a socket (see [`tick`](Self::tick)): once the relay
    /// refused ops for now (rate limited, storage trouble), nothing goes
    /// until the resend is due (`None` before `now_ms` reaches it); a
    /// resend sends only as many as the last one got in, doubling once one
    /// is answered whole, in as many pushes as that takes (unless one is
    /// refused for now again: the rest wait); ops left past it, and new
    /// writes, wait for the next resend.
    pub fn http_push(&mut self, now_ms: u64) -> Option<String> {
        let most = match (self.quota, self.resend_at_ms) {
            (Some(quota), _) => quota,
            (None, None) => usize::MAX,
            (None, Some(_)) if self.resend_due(now_ms) => {
                // The next resend, a second from when this one was due.
                let from = self.resend_base(now_ms);
                self.resend_at_ms = Some(from.saturating_add(RESEND_AFTER_MS));
                self.resend.last_sent = 0;
                self.resend.next(self.second())
            }
            (None, Some(_)) => return None,
        };
        let held = self.held();
        let pending = self.outbox.values().filter(|op| !held.contains(&op.id));
        let ops = self.first_push(pending, most);
        if self.resend_at_ms.is_some() {
            // Extended, not collected (see `held`).
            let mut sent = BTreeSet::new();
            sent.extend(ops.iter().flatten().map(|op| op.id));
            let rest = self
                .outbox
                .values()
                .filter(|op| !held.contains(&op.id) && !sent.contains(&op.id));
            let left = self.carriable(rest).next().is_some();
            self.resend.last_sent = self.resend.last_sent.saturating_add(sent.len());
            let quota = most.saturating_sub(sent.len());
            self.quota = (left && quota > 0).then_some(quota);
            // A resend that took the last ops ends its round with its
            // answer (see `round_settled`), not before: writes made
            // meanwhile must keep within the second's worth. One that
            // found nothing ends it now (no answer will come).
            if !left && sent.is_empty() {
                self.resend_done(false, now_ms);
            }
        }
        gaesup_state_core::to_text(&Push { ops: ops? }).ok()
    }

    /// The query of a long poll of `stream` (path and query, no host): for
    /// a snapshot coming in pieces, the next piece.
    pub fn http_pull(&mut self, stream: &StreamId, wait_ms: u64) -> String {
        let asked = self.pieces.get(stream).map(|piece| piece.after.clone());
        let after = asked.as_ref().map_or_else(String::new, |after| {
            format!("&after={}", encode_query(after.as_str()))
        });
        self.asked.insert(stream.clone(), asked);
        format!(
            "/v1/pull?stream={stream}&cursor={}&wait_ms={wait_ms}{after}",
            self.pull_cursor(stream)
        )
    }

    /// The cursor to ask the relay from: past any head (which the relay
    /// answers with a snapshot) for a stream to take whole, or whose
    /// snapshot's next piece is due.
    fn pull_cursor(&self, stream: &StreamId) -> u64 {
        if self.pieces.contains_key(stream)
            || (self.resyncing.contains(stream)
                && !self.snapshotted.contains(stream)
                && !self.whole.contains(stream))
        {
            u64::MAX
        } else {
            self.cursor(stream)
        }
    }

    /// An HTTP answer (an ack, ops, snapshot or error message).
    pub fn on_http(
        &mut self,
        status: u16,
        text: &str,
        now_ms: u64,
        storage: &mut dyn Storage,
    ) -> LinkOutput {
        let mut out = self.on_frame(text, now_ms, storage, false);
        if out.error.as_ref().is_some_and(|(code, _)| {
            code == crate::code::TOO_MANY_OPS || code == crate::code::FRAME_TOO_LARGE
        }) {
            // A push past the relay's limits: what the link holds of them
            // is stale (the relay restarted with others) or was never
            // heard. Ask again.
            self.limits = None;
            self.limits_settled = false;
            self.limits_retry_at_ms = 0;
        }
        if out
            .error
            .as_ref()
            .is_some_and(|(code, _)| is_transient_code(code))
        {
            // Refused for now as a whole, without an ack per op (a push
            // the relay could not store, or it is shutting down): the
            // resend under way stops, and the ops go again at the next.
            self.quota = None;
            if self.resend_at_ms.is_none() {
                self.resend_at_ms = Some(now_ms.saturating_add(RESEND_AFTER_MS));
            }
        }
        // Only the relay's own answer says it is up: a proxy's 502 page
        // while it restarts does not.
        let from_relay = (200..300).contains(&status);
        if from_relay && self.socket_unproven && self.status == LinkStatus::HttpFallback {
            // The relay answers. The socket attempts that sent this link to
            // HTTP may have failed only because it was down (a restart that
            // ended between the last one and this request): try the socket
            // once more now rather than poll until WS_RETRY_MS. If it fails
            // while HTTP answers, WebSockets are blocked.
            self.socket_unproven = false;
            self.socket_retry_at_ms = Some(0);
        }
        // A bad or expired token ends the link, when the relay says so: a
        // 401 page of something in between (a gateway asking for its own
        // login) says nothing of the token, and is an error like any
        // other. A stream the token may not read (403) ends only the
        // pulls of that stream (see [`forbid`](Self::forbid)).
        if status == 401
            && !matches!(self.status, LinkStatus::Refused(_))
            && let Some((code, _)) = out.error.as_ref().filter(|(code, _)| {
                code == crate::code::UNAUTHORIZED || code == crate::code::TOKEN_EXPIRED
            })
        {
            self.status = LinkStatus::Refused(code.clone());
            out.close = true;
        }
        out
    }

    /// The streams followed.
    pub fn streams(&self) -> &[StreamId] {
        &self.streams
    }
}

/// Writes `op` to the outbox in `storage`, for whichever tab holds the
/// link to send: what a tab that does not hold it does with its own ops.
pub fn write_outbox_entry(op: &Op, storage: &mut dyn Storage) -> Result<(), StorageError> {
    let text = gaesup_state_core::to_text(op)
        .map_err(|err| StorageError::Other(format!("op {} does not encode: {err}", op.id)))?;
    // The mark first, the same value each time (no storage event): an
    // entry is never saved without it, and one that found no room for the
    // mark would find none for itself (it waits in memory).
    storage.set(OUTBOX_MARK, "1")?;
    storage.set(&outbox_key(op.id), &text)?;
    Ok(())
}

/// Takes op `id` out of the outbox in `storage` (nothing if it is not
/// there, or storage refuses: the relay answers it again as a
/// duplicate).
pub fn remove_outbox_entry(id: OpId, storage: &mut dyn Storage) {
    let _ = storage.remove(&outbox_key(id));
}

fn outbox_key(id: OpId) -> String {
    format!("{OUTBOX_PREFIX}{id}")
}

/// Of `ops` a tab wrote to the outbox (with [`write_outbox_entry`]), those
/// a clear of storage (`localStorage.clear()`) took out since: the
/// outbox's mark is gone ([`OUTBOX_MARK`]), and so is each one's entry.
/// Entries another link removed as answered leave the mark: none of them
/// is among these.
pub fn cleared_from_outbox(ops: Vec<Op>, storage: &dyn Storage) -> Vec<Op> {
    if !matches!(storage.get(OUTBOX_MARK), Ok(None)) {
        return Vec::new();
    }
    ops.into_iter()
        .filter(|op| matches!(storage.get(&outbox_key(op.id)), Ok(None)))
        .collect()
}

fn is_transient(status: &AckStatus) -> bool {
    matches!(status, AckStatus::Refused { code, .. } if is_transient_code(code))
}

/// Whether a refusal with `code` is only for now (the op goes again).
pub fn is_transient_code(code: &str) -> bool {
    code == crate::code::RATE_LIMITED
        || code == crate::code::STORAGE
        || code == crate::code::SHUTTING_DOWN
        || code == crate::code::NEWER_SCHEMA
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Acks, Welcome};
    use gaesup_state_core::{
        Lifetime, ManualClock, MemoryStorage, Replica, Scope, SharedKey, SharedKeyBuilder,
        Strategy, TabId,
    };

    /// An apartment key that persists, declared on `store`.
    fn declared<T>(
        store: &mut Replica,
        key: SharedKeyBuilder<T>,
        strategy: Strategy,
    ) -> SharedKey<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        let key = key
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .strategy(strategy)
            .build()
            .unwrap();
        store.declare(&key).unwrap();
        key
    }

    fn op(store: &mut Replica, n: i64) -> Op {
        let key = declared(store, SharedKey::<i64>::builder("count"), Strategy::Sum);
        store
            .increment(&"main/b/u".parse().unwrap(), &key, n)
            .unwrap()
            .op
    }

    /// A write of the cart (a merge key) on `store`: a patch of the lines
    /// that differ from what `store` holds.
    fn cart_op(store: &mut Replica, value: serde_json::Value) -> Op {
        let builder =
            SharedKey::<serde_json::Value>::builder_with_default("cart", serde_json::json!({}));
        let key = declared(store, builder, Strategy::Merge);
        store
            .set(&"main/b/u".parse().unwrap(), &key, value)
            .unwrap()
            .op
    }

    fn link(storage: &MemoryStorage) -> Link {
        Link::new(
            "d".into(),
            Some("t".into()),
            vec!["apartment:main".parse().unwrap()],
            storage,
        )
    }

    /// An error message from the relay.
    fn error(code: &str, message: &str) -> String {
        ServerMessage::Error(crate::message::ErrorBody {
            code: code.into(),
            message: message.into(),
        })
        .encode()
        .unwrap()
    }

    fn welcome(heartbeat_ms: u64) -> String {
        welcome_with(heartbeat_ms, 1 << 20, 512)
    }

    /// A welcome from a relay taking frames of `max_frame_bytes` and
    /// `max_ops_per_push` ops per push.
    fn welcome_with(heartbeat_ms: u64, max_frame_bytes: usize, max_ops_per_push: usize) -> String {
        welcome_limits(
            heartbeat_ms,
            crate::message::Limits {
                max_frame_bytes,
                max_ops_per_push,
                max_ops_per_second: 100,
            },
        )
    }

    /// A welcome from a relay announcing `limits`.
    fn welcome_limits(heartbeat_ms: u64, limits: crate::message::Limits) -> String {
        ServerMessage::Welcome(Welcome {
            node: "n".into(),
            heartbeat_ms,
            limits,
        })
        .encode()
        .unwrap()
    }

    #[test]
    fn an_outbox_cleared_from_storage_is_seen_gone_and_written_back() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        assert!(!link.outbox_gone(&storage), "nothing waits");
        // The oldest op storage refused: looked past (it was never there).
        link.queue_unsaved(op(&mut store, 1));
        let saved = op(&mut store, 2);
        link.queue(saved.clone(), &mut storage).unwrap();
        link.queue(op(&mut store, 3), &mut storage).unwrap();
        assert!(!link.outbox_gone(&storage));
        // Another link answered the oldest saved op and took its entry out
        // (another tab without Web Locks, or another apartment's link for a
        // global op): not a clear, nothing to write back.
        remove_outbox_entry(saved.id, &mut storage);
        assert!(
            !link.outbox_gone(&storage),
            "an answer elsewhere is no clear"
        );
        // Entries there but the mark gone (a store from before it): the
        // first saved op is there, so no clear.
        storage.remove(OUTBOX_MARK).unwrap();
        link.queue(op(&mut store, 4), &mut storage).unwrap();
        storage.remove(OUTBOX_MARK).unwrap();
        assert!(
            !link.outbox_gone(&storage),
            "the first saved op is there (the older refused one never was)"
        );
        // localStorage.clear() in this very tab.
        clear(&mut storage);
        assert!(link.outbox_gone(&storage));
        link.refresh_outbox(&mut storage);
        assert!(!link.outbox_gone(&storage), "written back");
        assert_eq!(
            outbox_len(&storage),
            3,
            "each op it saved (the one storage refused waits in memory)"
        );
    }

    #[test]
    fn a_write_after_a_clear_writes_back_what_waits_first() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        for n in [1, 2] {
            link.queue(op(&mut store, n), &mut storage).unwrap();
        }
        clear(&mut storage);
        // The write sets the mark again: what waits goes back before it.
        link.queue(op(&mut store, 3), &mut storage).unwrap();
        assert_eq!(outbox_len(&storage), 3);
    }

    /// The outbox entries in `storage`.
    fn outbox_len(storage: &MemoryStorage) -> usize {
        let keys = storage.keys().unwrap();
        keys.iter().filter(|k| k.starts_with(OUTBOX_PREFIX)).count()
    }

    /// `localStorage.clear()`.
    fn clear(storage: &mut MemoryStorage) {
        for key in storage.keys().unwrap() {
            storage.remove(&key).unwrap();
        }
    }

    #[test]
    fn the_outbox_is_saved_first_and_emptied_only_by_final_acks() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let first = op(&mut store, 1);
        assert!(
            link.queue(first.clone(), &mut storage).unwrap().is_empty(),
            "offline: nothing sent"
        );
        assert_eq!(
            Link::new(
                "d".into(),
                Some("t".into()),
                vec!["apartment:main".parse().unwrap()],
                &storage
            )
            .waiting(),
            1,
            "a new page finds it"
        );
        // Another apartment's link (perhaps with another token) leaves it.
        assert_eq!(
            Link::new(
                "d".into(),
                Some("t".into()),
                vec!["apartment:other".parse().unwrap()],
                &storage
            )
            .waiting(),
            0
        );
        link.on_open(0);
        let out = link.on_text(&welcome(10_000), 1, &mut storage);
        assert_eq!(out.send.len(), 1, "the outbox goes on welcome");
        // Rate limited: stays.
        let limited = ServerMessage::Ack(Acks {
            acks: vec![Ack {
                op: first.id,
                status: AckStatus::Refused {
                    code: crate::code::RATE_LIMITED.into(),
                    message: String::new(),
                },
            }],
        });
        link.on_text(&limited.encode().unwrap(), 2, &mut storage);
        assert_eq!(link.waiting(), 1);
        // ... and goes again a second later on the same socket, once.
        assert!(
            link.tick(2 + RESEND_AFTER_MS - RESEND_SLACK_MS - 1)
                .0
                .is_empty()
        );
        let (again, close) = link.tick(2 + RESEND_AFTER_MS);
        assert!(!close);
        assert_eq!(pushed(&again), [vec![first.id]]);
        assert!(link.tick(2 + 2 * RESEND_AFTER_MS).0.is_empty());
        let applied = ServerMessage::Ack(Acks {
            acks: vec![Ack {
                op: first.id,
                status: AckStatus::Applied {
                    stream: "apartment:main".parse().unwrap(),
                    seq: 1,
                    value: serde_json::Value::from(1),
                },
            }],
        });
        link.on_text(&applied.encode().unwrap(), 3, &mut storage);
        assert_eq!(link.waiting(), 0);
        assert!(
            storage
                .keys()
                .unwrap()
                .iter()
                .all(|k| !k.starts_with(OUTBOX_PREFIX))
        );
    }

    fn acks(list: &[(OpId, &str)]) -> String {
        ServerMessage::Ack(Acks {
            acks: list
                .iter()
                .map(|(op, code)| Ack {
                    op: *op,
                    status: if code.is_empty() {
                        AckStatus::Applied {
                            stream: "apartment:main".parse().unwrap(),
                            seq: 9,
                            value: serde_json::Value::from(9),
                        }
                    } else {
                        AckStatus::Refused {
                            code: (*code).into(),
                            message: "old".into(),
                        }
                    },
                })
                .collect(),
        })
        .encode()
        .unwrap()
    }

    /// The relay's catch-up of the main stream on a new socket, whose last
    /// ops this token may not read (so it does not reach the head).
    fn catch_up() -> String {
        no_ops(5)
    }

    /// The main stream's ops message with no ops, saying `head`.
    fn no_ops(head: u64) -> String {
        ServerMessage::Ops(crate::message::OpsBody::new(
            "apartment:main".parse().unwrap(),
            Vec::new(),
            head,
            None,
        ))
        .encode()
        .unwrap()
    }

    /// An HTTP pull's answer with nothing new.
    fn empty_ops() -> String {
        no_ops(0)
    }

    /// A message, then what the link settles once the adapter applied it.
    /// Writes the re-base `asked` for as the browser's adapter does:
    /// queued, and told to the link, which answers nothing yet. Returns
    /// the re-base op.
    fn write_rebase(
        link: &mut Link,
        store: &mut Replica,
        asked: &Rebase,
        storage: &mut MemoryStorage,
    ) -> Op {
        let rebase = store
            .rebase(&asked.writer, &asked.key, asked.fields.as_deref())
            .unwrap()
            .op;
        link.queue(rebase.clone(), storage).unwrap();
        assert!(
            link.rebased(&asked.key, Some(rebase.id), storage)
                .is_empty()
        );
        rebase
    }

    fn feed(link: &mut Link, text: &str, now: u64, storage: &mut MemoryStorage) -> LinkOutput {
        let mut out = link.on_text(text, now, storage);
        out.absorb(link.settle(storage));
        out
    }

    /// The states of two apartment keys, `a` and `b` (in key order).
    fn two_states() -> Vec<gaesup_state_core::SyncEntry> {
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let unit: gaesup_state_core::UnitAddress = "main/b/u".parse().unwrap();
        for name in ["a", "b"] {
            let key = SharedKey::<i64>::builder(name)
                .scope(Scope::Apartment)
                .lifetime(Lifetime::Persistent)
                .build()
                .unwrap();
            store.declare(&key).unwrap();
            store.set(&unit, &key, 1).unwrap();
        }
        store
            .states()
            .iter()
            .map(|(key, state)| gaesup_state_core::SyncEntry {
                key: key.clone(),
                schema: 1,
                state: state.clone(),
            })
            .collect()
    }

    fn piece(seq: u64, states: Vec<gaesup_state_core::SyncEntry>, more: bool) -> String {
        piece_after(seq, states, more, None)
    }

    /// A snapshot piece that says it follows `after`.
    fn piece_after(
        seq: u64,
        states: Vec<gaesup_state_core::SyncEntry>,
        more: bool,
        after: Option<&gaesup_state_core::SyncEntry>,
    ) -> String {
        ServerMessage::Snapshot(Snapshot {
            stream: "apartment:main".parse().unwrap(),
            seq,
            states,
            more,
            after: after.map(|entry| entry.key.clone()),
            left_out: Vec::new(),
            newer: false,
            piece: crate::message::PieceOf::Start,
        })
        .encode()
        .unwrap()
    }

    /// A fresh link on fresh storage, the apartment stream it follows,
    /// and the states of its keys `a` and `b`, for the snapshot tests.
    fn pieces_fixture() -> (
        MemoryStorage,
        Link,
        StreamId,
        gaesup_state_core::SyncEntry,
        gaesup_state_core::SyncEntry,
    ) {
        let storage = MemoryStorage::new();
        let link = link(&storage);
        let mut states = two_states().into_iter();
        let (a, b) = (states.next().unwrap(), states.next().unwrap());
        (storage, link, "apartment:main".parse().unwrap(), a, b)
    }

    #[test]
    fn ops_and_snapshots_of_streams_the_device_does_not_follow_are_refused_unstored() {
        let (mut storage, mut link, main, a, _) = pieces_fixture();
        link.on_open(0);
        link.on_text(&welcome(10_000), 0, &mut storage);
        let before = storage.keys().unwrap();
        for n in 0..50 {
            let stream: StreamId = format!("apartment:stranger{n}").parse().unwrap();
            let ops = ServerMessage::Ops(crate::message::OpsBody::new(
                stream.clone(),
                Vec::new(),
                7,
                Some(7),
            ))
            .encode()
            .unwrap();
            let out = feed(&mut link, &ops, 1, &mut storage);
            let (code, message) = out.error.expect("refused");
            assert_eq!(code, crate::code::MALFORMED);
            assert!(
                message.contains(&format!("ops of stream {stream}")),
                "{message}"
            );
            assert!(out.ops.is_empty() && out.send.is_empty() && !out.close);
            let snapshot = ServerMessage::Snapshot(Snapshot {
                stream: stream.clone(),
                seq: 7,
                states: vec![a.clone()],
                more: false,
                after: None,
                left_out: Vec::new(),
                newer: false,
                piece: crate::message::PieceOf::Start,
            })
            .encode()
            .unwrap();
            let out = feed(&mut link, &snapshot, 1, &mut storage);
            assert!(
                out.error
                    .expect("refused")
                    .1
                    .contains("a snapshot of stream")
            );
            assert!(out.snapshots.is_empty());
            assert_eq!(link.cursor(&stream), 0);
        }
        assert_eq!(storage.keys().unwrap(), before, "nothing stored for them");
        // The stream it follows is taken as before.
        let out = feed(&mut link, &no_ops(3), 2, &mut storage);
        assert_eq!(out.error, None);
        assert_eq!(
            link.cursor(&main),
            0,
            "moved once ops are saved, not before"
        );
        link.save_cursor(&main, 3, &mut storage);
        assert_eq!(link.cursor(&main), 3);
    }

    /// `state`'s key, left out as a build without its strategy leaves it.
    fn left_out(state: &gaesup_state_core::SyncEntry) -> (FullKey, gaesup_state_core::Error) {
        (
            state.key.clone(),
            gaesup_state_core::Error::Malformed {
                what: "key state",
                reason: String::from("strategy merge is not in this build"),
            },
        )
    }

    #[test]
    fn what_a_snapshot_in_pieces_left_out_is_said_once_with_its_totals() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        let refused = |name: &str| {
            let key: FullKey = a
                .key
                .as_str()
                .replacen("/a", &format!("/{name}"), 1)
                .parse()
                .unwrap();
            left_out(&gaesup_state_core::SyncEntry { key, ..a.clone() })
        };
        let (r1, r9) = (refused("a0"), refused("b9"));
        // What the page does with a piece (lead.rs `apply_snapshot`): the
        // link takes it over a socket, then the sum is asked.
        type Left = Vec<(FullKey, gaesup_state_core::Error)>;
        fn take(
            link: &mut Link,
            storage: &mut MemoryStorage,
            main: &StreamId,
            (states, left, after, more): (
                Vec<gaesup_state_core::SyncEntry>,
                Left,
                Option<FullKey>,
                bool,
            ),
        ) -> (PieceOf, Option<SnapshotRefusals>) {
            let mut out = LinkOutput::default();
            link.on_message(
                ServerMessage::Snapshot(Snapshot {
                    stream: main.clone(),
                    seq: 7,
                    states,
                    more,
                    after,
                    left_out: left,
                    newer: false,
                    piece: PieceOf::Start,
                }),
                1,
                storage,
                &mut out,
                true,
            );
            let taken = out.snapshots.pop().unwrap();
            let sum = link.snapshot_refusals(
                &taken.stream,
                taken.piece,
                taken.more,
                &taken.left_out,
                taken.states.len(),
            );
            (taken.piece, sum)
        }
        let mut piece = |states, left, after, more| {
            take(&mut link, &mut storage, &main, (states, left, after, more))
        };
        // Three pieces, states left out in the first and the last: said
        // once, at the last, with the totals and the first one left out.
        let k1 = r1.0.clone();
        assert_eq!(
            piece(vec![], vec![r1.clone()], None, true),
            (PieceOf::Start, None)
        );
        assert_eq!(
            piece(vec![a.clone()], vec![], Some(k1.clone()), true),
            (PieceOf::Next, None)
        );
        // An answer to an older request (it follows another key than the
        // one merged last): not counted, nothing said, the run goes on.
        assert_eq!(
            piece(vec![], vec![r9.clone()], Some(k1.clone()), false),
            (PieceOf::Stale, None)
        );
        let (placed, said) = piece(
            vec![b.clone()],
            vec![r9.clone()],
            Some(a.key.clone()),
            false,
        );
        assert_eq!(placed, PieceOf::Next);
        assert_eq!(
            said,
            Some(SnapshotRefusals {
                refused: 2,
                passed: 2,
                first: Some((k1.clone(), r1.1.to_string())),
            })
        );
        // A relay that predates `after`: its pieces follow no key, yet the
        // second continues the run and the first one's refusal is said.
        // Sent again from its start (such a relay ignores `after=` on a
        // new socket), the first piece is counted once.
        assert_eq!(piece(vec![a.clone()], vec![r1.clone()], None, true).1, None);
        assert_eq!(
            piece(vec![a.clone()], vec![r1.clone()], None, true),
            (PieceOf::Start, None)
        );
        let (placed, said) = piece(vec![b.clone()], vec![], None, false);
        assert_eq!(placed, PieceOf::Next);
        assert_eq!(said.map(|sum| (sum.refused, sum.passed)), Some((1, 2)));
        // A run asked again from its start midway (a resync begins: the
        // link forgets the run): the first try's pieces no longer count,
        // and a clean snapshot says nothing.
        piece(vec![], vec![r1.clone()], None, true);
        link.pieces.remove(&main);
        let clean = (vec![a.clone(), b.clone()], vec![], None, false);
        let clean = take(&mut link, &mut storage, &main, clean);
        assert_eq!(clean, (PieceOf::Start, None));
    }

    #[test]
    fn a_piece_ending_in_states_this_build_left_out_goes_on_after_them() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        let mut taken = |snapshot: Snapshot, now| {
            let mut out = LinkOutput::default();
            link.on_message(
                ServerMessage::Snapshot(snapshot),
                now,
                &mut storage,
                &mut out,
                false,
            );
            out
        };
        // `b`, the piece's last state, was left out as it decoded: the
        // next piece starts after it, not again after `a`.
        let out = taken(
            Snapshot {
                stream: main.clone(),
                seq: 7,
                states: vec![a.clone()],
                more: true,
                after: None,
                left_out: vec![left_out(&b)],
                newer: false,
                piece: crate::message::PieceOf::Start,
            },
            1,
        );
        assert!(out.snapshots[0].more);
        let pull = link.http_pull(&main, 0);
        assert!(
            pull.ends_with(&format!("&after={}", encode_query(b.key.as_str()))),
            "{pull}"
        );
        // A piece of nothing but such states goes on too, where one of
        // nothing at all ends the snapshot (a relay in error).
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        let mut out = LinkOutput::default();
        link.on_message(
            ServerMessage::Snapshot(Snapshot {
                stream: main.clone(),
                seq: 7,
                states: Vec::new(),
                more: true,
                after: None,
                left_out: vec![left_out(&a), left_out(&b)],
                newer: false,
                piece: crate::message::PieceOf::Start,
            }),
            1,
            &mut storage,
            &mut out,
            false,
        );
        assert!(out.snapshots[0].more);
        let pull = link.http_pull(&main, 0);
        assert!(
            pull.ends_with(&format!("&after={}", encode_query(b.key.as_str()))),
            "{pull}"
        );
    }

    #[test]
    fn a_snapshot_in_pieces_moves_the_cursor_only_once_its_last_piece_came() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        // The first piece: merged, but no cursor to save yet; the next
        // pull asks for the piece after its last key, of a snapshot.
        let out = link.on_http(200, &piece(7, vec![a.clone()], true), 1, &mut storage);
        assert!(out.snapshots[0].more);
        let pull = link.http_pull(&main, 0);
        assert!(pull.contains(&format!("cursor={}", u64::MAX)), "{pull}");
        assert!(
            pull.ends_with(&format!("&after={}", encode_query(a.key.as_str()))),
            "{pull}"
        );
        // The last piece, of a stream that moved on meanwhile: the cursor
        // may go only as far as the first piece's number, and the next
        // pull asks from there (over HTTP nothing closes).
        let last = piece_after(9, vec![b.clone()], false, Some(&a));
        let out = link.on_http(200, &last, 2, &mut storage);
        assert!(!out.snapshots[0].more);
        assert_eq!(out.snapshots[0].seq, 7);
        assert!(!out.close);
        assert!(!link.http_pull(&main, 0).contains("after="));
        // A relay in error that says more with no states ends the
        // snapshot rather than ask after the same key forever.
        let out = feed(&mut link, &piece(9, Vec::new(), true), 3, &mut storage);
        assert!(!out.snapshots[0].more);
        // A piece that says no key starts a new run from the first key
        // (a relay that predates `after` starting over): it goes on from
        // its own last key, at the lowest number.
        link.on_http(200, &piece(9, vec![b.clone()], true), 4, &mut storage);
        let out = link.on_http(200, &piece(10, vec![a.clone()], true), 5, &mut storage);
        assert!(out.snapshots[0].more);
        let pull = link.http_pull(&main, 0);
        assert!(pull.ends_with(&format!("&after={}", encode_query(a.key.as_str()))));
        let last = piece_after(12, vec![b.clone()], false, Some(&a));
        let out = link.on_http(200, &last, 6, &mut storage);
        assert_eq!(out.snapshots[0].seq, 9);
        // Pieces at one head, on one socket, close nothing.
        feed(
            &mut link,
            &piece(16, vec![a.clone()], true),
            7,
            &mut storage,
        );
        let last = piece_after(16, vec![b.clone()], false, Some(&a));
        let out = feed(&mut link, &last, 8, &mut storage);
        assert_eq!(out.snapshots[0].seq, 16);
        assert!(!out.close);
    }

    #[test]
    fn a_snapshot_cut_between_pieces_goes_on_after_the_last_key_on_the_next_socket() {
        let (mut storage, mut link, _, a, b) = pieces_fixture();
        link.on_open(0);
        feed(
            &mut link,
            &piece(11, vec![a.clone()], true),
            1,
            &mut storage,
        );
        link.on_close(0.0, 2);
        let hello = link.on_open(3).join("");
        assert!(
            hello.contains(&format!(r#""after":"{}""#, a.key)),
            "{hello}"
        );
        assert!(
            hello.contains(&format!(r#""cursor":{}"#, u64::MAX)),
            "{hello}"
        );
        // The rest, at a later head: merged, the cursor saved at the first
        // piece's number, and the socket closed, since the ops it sends
        // next would follow the later head.
        let rest = piece_after(13, vec![b.clone()], false, Some(&a));
        let out = feed(&mut link, &rest, 4, &mut storage);
        assert_eq!(out.snapshots[0].seq, 11);
        assert!(out.close);
        link.on_close(0.0, 5);
        let hello = link.on_open(6).join("");
        assert!(!hello.contains("after"), "{hello}");
    }

    #[test]
    fn an_answer_to_an_older_request_for_a_piece_is_not_counted() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        // Over HTTP: after `a`, a pull for the piece after `b` was still in
        // flight (an earlier run). Its answer follows another key than the
        // one merged last: merged, but neither the end of the snapshot nor
        // a step of it.
        link.on_http(200, &piece(7, vec![a.clone()], true), 1, &mut storage);
        let old = piece_after(8, vec![b.clone()], false, Some(&b));
        let out = link.on_http(200, &old, 2, &mut storage);
        assert!(out.snapshots[0].more, "not the end");
        assert!(!out.close);
        let pull = link.http_pull(&main, 0);
        assert!(pull.ends_with(&format!("&after={}", encode_query(a.key.as_str()))));
        // On a socket the same closes it: the next hello asks after the
        // key merged last.
        link.on_open(3);
        let out = feed(&mut link, &old, 4, &mut storage);
        assert!(out.snapshots[0].more);
        assert!(out.close);
        link.on_close(0.0, 5);
        let hello = link.on_open(6).join("");
        assert!(
            hello.contains(&format!(r#""after":"{}""#, a.key)),
            "{hello}"
        );
        // With no snapshot under way, a piece that follows a key is stale
        // too.
        let mut other = Link::new(
            "other".to_owned(),
            Some("token".to_owned()),
            vec![main.clone()],
            &storage,
        );
        let out = other.on_http(200, &old, 7, &mut storage);
        assert!(out.snapshots[0].more);
        assert!(!other.http_pull(&main, 0).contains("after="));
    }

    #[test]
    fn a_stream_taken_whole_starts_its_snapshot_from_the_first_key() {
        let (mut storage, mut link, _, a, b) = pieces_fixture();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        feed(&mut link, &piece(7, vec![a.clone()], true), 2, &mut storage);
        // An op of this stream was refused as stale: the stream is to be
        // taken whole, which the rest of the snapshot under way is not.
        link.refused_stale(&b.key, &mut storage);
        let out = link.settle(&mut storage);
        assert!(out.close);
        link.on_close(0.0, 3);
        let hello = link.on_open(4).join("");
        assert!(!hello.contains("after"), "{hello}");
        assert!(
            hello.contains(&format!(r#""cursor":{}"#, u64::MAX)),
            "{hello}"
        );
        // An answer to the pull for that rest is not counted.
        let out = feed(
            &mut link,
            &piece_after(8, vec![b], false, Some(&a)),
            5,
            &mut storage,
        );
        assert!(out.snapshots[0].more);
    }

    #[test]
    fn an_answer_to_a_pull_made_before_a_resync_is_not_counted_even_without_an_echo() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        // A relay that does not say which key a piece follows.
        link.on_http(200, &piece(7, vec![a.clone()], true), 1, &mut storage);
        let pull = link.http_pull(&main, 0);
        assert!(pull.contains("after="), "{pull}");
        // While that pull is out, the stream is to be taken whole.
        link.refused_stale(&b.key, &mut storage);
        link.settle(&mut storage);
        // Its answer, the rest after `a`, is no snapshot from the first
        // key: merged, not counted, and the cursor stays.
        let out = link.on_http(200, &piece(8, vec![b], false), 2, &mut storage);
        assert!(out.snapshots[0].more, "counted as a whole snapshot");
        let pull = link.http_pull(&main, 0);
        assert!(!pull.contains("after="), "{pull}");
        assert!(pull.contains(&format!("cursor={}", u64::MAX)), "{pull}");
    }

    #[test]
    fn a_last_piece_from_the_first_key_on_a_socket_closes_nothing() {
        let (mut storage, mut link, _, a, b) = pieces_fixture();
        link.on_open(0);
        feed(&mut link, &piece(9, vec![a.clone()], true), 1, &mut storage);
        link.on_close(0.0, 2);
        link.on_open(3);
        // A relay that predates `more` sends its whole snapshot in
        // messages that each look like the last, from the first key: the
        // first must not close the socket before the others come.
        let out = feed(&mut link, &piece(12, vec![a], false), 4, &mut storage);
        assert_eq!(out.snapshots[0].seq, 9);
        assert!(!out.close);
        let out = feed(&mut link, &piece(12, vec![b], false), 5, &mut storage);
        assert_eq!(out.snapshots[0].seq, 12);
        assert!(!out.close);
    }

    #[test]
    fn a_resync_whose_snapshot_spans_two_sockets_catches_up_from_its_number() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        let cursor = |link: &mut Link| {
            let hello = link.on_open(0).join("");
            link.on_close(0.0, 0);
            hello
        };
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        link.refused_stale(&b.key, &mut storage);
        assert!(link.settle(&mut storage).close);
        link.on_close(0.0, 2);
        // Taken whole: the first piece on one socket, the rest, at a later
        // head, on the next, which then closes.
        link.on_open(3);
        feed(&mut link, &piece(7, vec![a.clone()], true), 4, &mut storage);
        link.on_close(0.0, 5);
        link.on_open(6);
        let rest = piece_after(9, vec![b], false, Some(&a));
        assert!(feed(&mut link, &rest, 7, &mut storage).close);
        link.save_cursor(&main, 7, &mut storage);
        link.on_close(0.0, 8);
        // The next socket catches up from the snapshot's number, not the
        // whole stream again.
        let hello = cursor(&mut link);
        assert!(hello.contains(r#""cursor":7"#), "{hello}");
        link.on_open(9);
        feed(&mut link, &welcome(10_000), 10, &mut storage);
        let caught_up = ServerMessage::Ops(crate::message::OpsBody::new(
            main.clone(),
            Vec::new(),
            7,
            None,
        ));
        feed(&mut link, &caught_up.encode().unwrap(), 10, &mut storage);
        let pong = ServerMessage::Pong(Ping { at: 10 }).encode().unwrap();
        feed(&mut link, &pong, 11, &mut storage);
        assert!(
            storage
                .get(&format!("{RESYNC_PREFIX}{main}"))
                .unwrap()
                .is_none()
        );
        link.on_close(0.0, 12);
        assert!(cursor(&mut link).contains(r#""cursor":7"#));
    }

    #[test]
    fn sockets_the_relay_refuses_for_now_come_back_later_each_time() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        // A hello past the relay's read budget: refused, and the socket
        // closed, though it opened.
        let refusal = error(crate::code::RATE_LIMITED, "more than 1 reads per second");
        let delays: Vec<_> = (0..4)
            .map(|now| {
                link.on_open(now);
                feed(&mut link, &refusal, now, &mut storage);
                link.on_close(0.0, now)
            })
            .collect();
        assert_eq!(delays, [Some(500), Some(1_000), Some(2_000), Some(4_000)]);
        assert_eq!(link.status(), &LinkStatus::Offline, "no HTTP fallback");
        // A socket that works (a pong) ends the run, even after a refusal.
        link.on_open(10);
        feed(&mut link, &welcome(10_000), 10, &mut storage);
        feed(&mut link, &refusal, 11, &mut storage);
        let pong = ServerMessage::Pong(Ping { at: 11 }).encode().unwrap();
        feed(&mut link, &pong, 12, &mut storage);
        assert_eq!(link.on_close(0.0, 13), Some(250));
    }

    /// An ops frame of the apartment stream carrying `n` at `seq`.
    fn count_at(store: &mut Replica, seq: u64, n: i64) -> String {
        ServerMessage::Ops(crate::message::OpsBody::new(
            "apartment:main".parse().unwrap(),
            vec![Sequenced {
                seq,
                op: op(store, n),
            }],
            seq,
            None,
        ))
        .encode()
        .unwrap()
    }

    /// Frames a broken or hostile relay (or a proxy) might send in place
    /// of `frame`, an ops frame of a count op: an op of a kind this
    /// version has that does not decode, cut short, not JSON at all,
    /// another protocol version, and an op without its number.
    fn garbled(frame: &str) -> Vec<String> {
        let newer = frame.replacen(r#""v":1"#, r#""v":99"#, 1);
        assert_ne!(newer, frame, "the frame says its version");
        let unnumbered = frame.replacen(r#""seq":"#, r#""sequence":"#, 1);
        assert_ne!(unnumbered, frame, "the frame numbers its ops");
        // A count op without its positive total: of a kind this version
        // has, so broken, not newer.
        let broken = frame.replacen(r#""p":"#, r#""q":"#, 1);
        assert_ne!(broken, frame, "the frame carries a count op");
        vec![
            broken,
            cut(frame),
            String::from("\u{1}garbage"),
            newer,
            unnumbered,
        ]
    }

    /// `frame` cut short.
    fn cut(frame: &str) -> String {
        frame[..frame.len() / 2].to_owned()
    }

    /// `frame` with the kind of its `nth` count op (from 0) renamed to one
    /// no version writes, as if a newer version wrote it.
    fn newer_kind(frame: &str, nth: usize) -> String {
        let kind = r#""kind":"count""#;
        let (at, _) = frame
            .match_indices(kind)
            .nth(nth)
            .expect("that many count ops");
        format!(
            "{}\"kind\":\"frobnicate\"{}",
            &frame[..at],
            &frame[at + kind.len()..]
        )
    }

    /// An ops frame of the apartment stream: counts `1..=n` at numbers
    /// `from..`, its head the last.
    fn counts_from(store: &mut Replica, from: u64, n: i64) -> String {
        let ops: Vec<_> = (1..=n)
            .zip(from..)
            .map(|(count, seq)| Sequenced {
                seq,
                op: op(store, count),
            })
            .collect();
        let head = ops.last().map_or(from, |last| last.seq);
        ServerMessage::Ops(crate::message::OpsBody::new(
            "apartment:main".parse().unwrap(),
            ops,
            head,
            None,
        ))
        .encode()
        .unwrap()
    }

    /// The apartment stream, fresh storage, a replica to write ops on,
    /// and a link on that storage whose socket was welcomed.
    fn welcomed_main() -> (StreamId, MemoryStorage, Replica, Link) {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        let store = Replica::new(TabId::new(2), ManualClock::new(1_000));
        ("apartment:main".parse().unwrap(), storage, store, link)
    }

    /// The body of the ops message `text`, as a link decodes it.
    fn ops_body(text: &str) -> crate::message::OpsBody {
        match ServerMessage::decode_partial(text).unwrap() {
            ServerMessage::Ops(body) => body,
            other => panic!("not ops: {other:?}"),
        }
    }

    #[test]
    fn ops_this_version_cannot_read_are_said_and_fetched_again_by_a_later_page() {
        let (main, mut storage, mut store, mut link) = welcomed_main();
        // Ops 1 to 3, the second of a kind a newer version writes: the
        // others are taken, the socket stays.
        let frame = newer_kind(&counts_from(&mut store, 1, 3), 1);
        let out = feed(&mut link, &frame, 1, &mut storage);
        assert!(!out.close);
        let taken: Vec<u64> = out
            .ops
            .iter()
            .flat_map(|(_, ops)| ops.iter().map(|s| s.seq))
            .collect();
        assert_eq!(taken, [1, 3]);
        let (code, message) = out.error.expect("said");
        assert_eq!(code, crate::code::UNREADABLE);
        assert!(message.contains("changes to apartment:main"), "{message}");
        link.save_cursor(&main, 3, &mut storage);
        // This page asks on from op 3; a later one from op 1.
        assert_eq!(link.cursor(&main), 3);
        assert_eq!(self::link(&storage).cursor(&main), 1);
        // A frame of nothing but such ops moves this page past them (over
        // HTTP it would otherwise ask for them again at once, forever).
        let only = newer_kind(&count_at(&mut store, 4, 4), 0);
        let again = feed(&mut link, &only, 2, &mut storage);
        assert!(again.ops.is_empty() && !again.close);
        // In the same words: a page shows a notice once.
        assert_eq!(again.error, Some((code, message)));
        assert_eq!(link.cursor(&main), 4);
        assert!(link.http_pull(&main, 0).contains("cursor=4&"));
        assert_eq!(self::link(&storage).cursor(&main), 1);
        // Readable ops after them are taken as ever.
        let out = feed(&mut link, &count_at(&mut store, 5, 5), 3, &mut storage);
        assert_eq!(out.ops.len(), 1);
        assert_eq!(out.error, None);
        // A later page (a version that reads them) fetches them again.
        let mut later = self::link(&storage);
        let hello = later.on_open(4).join("");
        assert!(hello.contains(r#""cursor":1"#), "{hello}");
    }

    #[test]
    fn unreadable_ops_the_device_passed_or_past_the_head_are_ignored() {
        let (main, mut storage, mut store, mut link) = welcomed_main();
        feed(&mut link, &counts_from(&mut store, 1, 5), 1, &mut storage);
        link.save_cursor(&main, 5, &mut storage);
        // Ops 3 (passed), 6 (readable) and 12 (past the head, 10): a
        // broken relay's numbers pin nothing and say nothing.
        let mut text = counts_from(&mut store, 3, 1);
        text = newer_kind(&text, 0);
        let mut ops = ops_body(&counts_from(&mut store, 6, 1));
        ops.unreadable = ops_body(&text).unreadable;
        ops.unreadable
            .push((12, String::from("from a broken relay")));
        ops.head = 10;
        ops.through = Some(8);
        let frame = ServerMessage::Ops(ops.clone()).encode().unwrap();
        // (Encoding drops `unreadable`: the link is given the body.)
        assert!(!frame.contains("broken relay"));
        let mut out = LinkOutput::default();
        link.on_message(ServerMessage::Ops(ops), 2, &mut storage, &mut out, true);
        assert_eq!(out.error, None);
        link.save_cursor(&main, 6, &mut storage);
        assert_eq!(link.cursor(&main), 8, "the relay's `through` holds");
        assert_eq!(self::link(&storage).cursor(&main), 8, "nothing pinned");
    }

    #[test]
    fn ops_unread_between_readable_ones_and_a_through_move_the_cursor_to_the_furthest() {
        let (main, mut storage, mut store, mut link) = welcomed_main();
        // Ops 1 (readable) and 2 (not), then ops the token may not read
        // up to 3 (the relay's `through`), of a head of 4.
        let mut ops = ops_body(&newer_kind(&counts_from(&mut store, 1, 2), 1));
        assert_eq!(ops.unreadable.len(), 1);
        ops.head = 4;
        ops.through = Some(3);
        let mut out = LinkOutput::default();
        link.on_message(ServerMessage::Ops(ops), 1, &mut storage, &mut out, true);
        assert_eq!(out.ops[0].1.len(), 1);
        link.save_cursor(&main, 1, &mut storage);
        assert_eq!(link.cursor(&main), 3);
        assert_eq!(self::link(&storage).cursor(&main), 1);
        // With no `through`, past the unread op.
        let mut ops = ops_body(&newer_kind(&counts_from(&mut store, 4, 2), 1));
        ops.head = 5;
        let mut out = LinkOutput::default();
        link.on_message(ServerMessage::Ops(ops), 2, &mut storage, &mut out, true);
        link.save_cursor(&main, 4, &mut storage);
        assert_eq!(link.cursor(&main), 5);
        assert_eq!(self::link(&storage).cursor(&main), 1);
    }

    /// A snapshot piece of `states` at 9 whose `nth` state (from 0) is of
    /// a strategy renamed with `prefix`.
    fn renamed_strategy(
        states: Vec<gaesup_state_core::SyncEntry>,
        nth: usize,
        prefix: &str,
    ) -> String {
        let text = piece(9, states, false);
        let tag = r#"{"strategy":""#;
        let (at, _) = text.match_indices(tag).nth(nth).expect("that many states");
        let at = at + tag.len();
        format!("{}{prefix}{}", &text[..at], &text[at..])
    }

    #[test]
    fn a_snapshot_state_of_a_strategy_this_version_does_not_know_is_taken_again_by_a_later_page() {
        let (mut storage, mut link, main, a, b) = pieces_fixture();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        feed(&mut link, &no_ops(0), 0, &mut storage);
        link.save_cursor(&main, 4, &mut storage);
        let text = renamed_strategy(vec![a.clone(), b.clone()], 1, "quantum_");
        let err = ServerMessage::decode(&text).unwrap_err();
        assert!(err.message.contains("cannot be read"), "{}", err.message);
        let out = feed(&mut link, &text, 1, &mut storage);
        assert!(!out.close && out.error.is_none());
        let snapshot = &out.snapshots[0];
        assert_eq!(snapshot.states, std::slice::from_ref(&a));
        assert!(snapshot.newer);
        assert_eq!(snapshot.left_out[0].0, b.key);
        assert!(snapshot.left_out[0].1.to_string().contains("quantum_"));
        // The tabs name it among the states refused.
        let (_, refused) = snapshot.clone().into_tab_groups();
        assert_eq!(refused[0].0, b.key);
        link.snapshot_saved(&main, 9, &mut storage);
        assert_eq!(link.cursor(&main), 9);
        assert_eq!(self::link(&storage).cursor(&main), 0, "from the start");
        // A state of a strategy it knows that does not decode still
        // refuses the piece: a broken relay, not a newer one.
        let broken = piece(9, vec![a.clone()], false).replacen(r#""data":"#, r#""data":7,"x":"#, 1);
        assert!(ServerMessage::decode_partial(&broken).is_err(), "{broken}");
    }

    #[test]
    fn a_socket_that_answered_a_ping_ends_a_run_of_unreadable_frames() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(2), ManualClock::new(1_000));
        let mut link = link(&storage);
        let bad = cut(&count_at(&mut store, 1, 1));
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        assert!(feed(&mut link, &bad, 0, &mut storage).close);
        let mut delays = vec![link.on_close(0.0, 1)];
        // Then a socket that works for a while (a pong) before one: as
        // after the first, not the second in a row (HTTP).
        link.on_open(5);
        feed(&mut link, &welcome(10_000), 5, &mut storage);
        let pong = ServerMessage::Pong(Ping { at: 5 }).encode().unwrap();
        feed(&mut link, &pong, 6, &mut storage);
        assert!(feed(&mut link, &bad, 7, &mut storage).close);
        delays.push(link.on_close(0.0, 8));
        assert_eq!(delays, [Some(500), Some(500)]);
        assert_eq!(link.status(), &LinkStatus::Offline);
    }

    #[test]
    fn a_relay_saying_the_device_s_own_code_is_taken_as_malformed() {
        let (_, mut storage, _, mut link) = welcomed_main();
        let out = feed(
            &mut link,
            &error(crate::code::UNREADABLE, "pull again at once"),
            1,
            &mut storage,
        );
        let (code, _) = out.error.expect("said");
        assert_eq!(code, crate::code::MALFORMED);
    }

    #[test]
    fn a_relay_through_past_its_head_does_not_hold_the_cursor_before_an_unread_op() {
        let (main, mut storage, mut store, mut link) = welcomed_main();
        let mut ops = ops_body(&newer_kind(&counts_from(&mut store, 1, 2), 1));
        ops.through = Some(99);
        let mut out = LinkOutput::default();
        link.on_message(ServerMessage::Ops(ops), 1, &mut storage, &mut out, true);
        link.save_cursor(&main, 1, &mut storage);
        assert_eq!(link.cursor(&main), 2);
        assert_eq!(self::link(&storage).cursor(&main), 1);
    }

    #[test]
    fn stale_writes_of_a_stream_never_rebased_are_refused_unread_ops_or_not() {
        let stale = crate::code::STALE;
        let (main, mut storage, mut store, mut link) = welcomed_main();
        let x = op(&mut store, 1);
        link.queue(x.clone(), &mut storage).unwrap();
        // A snapshot marks the stream never to re-base; an op after it
        // cannot be read.
        let whole = piece(1, Vec::new(), false);
        feed(&mut link, &whole, 1, &mut storage);
        link.snapshot_saved(&main, 1, &mut storage);
        feed(
            &mut link,
            &newer_kind(&count_at(&mut store, 2, 2), 0),
            1,
            &mut storage,
        );
        let pong = ServerMessage::Pong(Ping { at: 1 }).encode().unwrap();
        feed(&mut link, &pong, 1, &mut storage);
        // x comes back stale: refused now, not held for a later page (it
        // would keep the stream's resync waiting).
        let out = feed(&mut link, &acks(&[(x.id, stale)]), 2, &mut storage);
        assert!(out.rebase.is_empty(), "{out:?}");
        assert!(matches!(&out.acks[..], [ack] if ack.op == x.id), "{out:?}");
        assert_eq!(link.waiting(), 0);
    }

    #[test]
    fn an_op_of_a_kind_it_does_not_know_without_its_number_refuses_the_message() {
        let (_, mut storage, mut store, mut link) = welcomed_main();
        let frame = newer_kind(&counts_from(&mut store, 1, 2), 1);
        for unnumbered in [r#""seq":2.0"#, r#""sequence":2"#] {
            let text = frame.replacen(r#""seq":2"#, unnumbered, 1);
            assert_ne!(text, frame);
            assert!(ServerMessage::decode_partial(&text).is_err(), "{text}");
            assert!(feed(&mut link, &text, 1, &mut storage).close, "{text}");
            link.on_close(0.0, 1);
            link.on_open(1);
            feed(&mut link, &welcome(10_000), 1, &mut storage);
        }
    }

    #[test]
    fn stale_writes_of_a_stream_with_unread_ops_wait_for_a_page_that_reads_them() {
        let stale = crate::code::STALE;
        let (main, mut storage, mut store, mut link) = welcomed_main();
        let x = op(&mut store, 1);
        link.queue(x.clone(), &mut storage).unwrap();
        // Caught up, past an op it cannot read; then x comes back stale.
        feed(
            &mut link,
            &newer_kind(&count_at(&mut store, 1, 1), 0),
            1,
            &mut storage,
        );
        let pong = ServerMessage::Pong(Ping { at: 1 }).encode().unwrap();
        feed(&mut link, &pong, 1, &mut storage);
        let out = feed(&mut link, &acks(&[(x.id, stale)]), 2, &mut storage);
        // Neither re-based (it could undo the unread op) nor refused.
        assert!(out.rebase.is_empty() && out.acks.is_empty(), "{out:?}");
        assert_eq!(link.waiting(), 1);
        assert!(
            storage
                .get(&format!("{NO_REBASE_PREFIX}{main}"))
                .unwrap()
                .is_none()
        );
        // The next page reads the op, catches up, and re-bases x's key.
        let mut link = self::link(&storage);
        assert!(link.on_open(3).join("").contains(r#""cursor":0"#));
        feed(&mut link, &welcome(10_000), 3, &mut storage);
        let out = feed(&mut link, &count_at(&mut store, 1, 1), 3, &mut storage);
        link.save_cursor(&main, out.ops[0].1[0].seq, &mut storage);
        feed(&mut link, &pong, 4, &mut storage);
        let out = feed(&mut link, &acks(&[(x.id, stale)]), 5, &mut storage);
        assert_eq!(out.rebase.len(), 1, "{out:?}");
    }

    #[test]
    fn a_message_of_many_unreadable_ops_says_why_of_a_few_and_decode_refuses_it() {
        let mut store = Replica::new(TabId::new(2), ManualClock::new(1_000));
        let mut frame = counts_from(&mut store, 1, 50);
        for _ in 0..50 {
            frame = newer_kind(&frame, 0);
        }
        let err = ServerMessage::decode(&frame).unwrap_err();
        assert_eq!(err.code, crate::code::MALFORMED);
        assert!(
            err.message.contains("op 1 cannot be read"),
            "{}",
            err.message
        );
        let body = ServerMessage::decode_partial(&frame).unwrap();
        let ServerMessage::Ops(body) = body else {
            panic!("ops");
        };
        assert!(body.ops.is_empty());
        let seqs: Vec<u64> = body.unreadable.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        let said = body
            .unreadable
            .iter()
            .filter(|(_, why)| !why.is_empty())
            .count();
        assert_eq!(said, crate::message::UNREADABLE_SAID);
        assert!(
            body.unreadable
                .iter()
                .all(|(_, why)| why.chars().count() <= 81)
        );
    }

    #[test]
    fn an_unreadable_frame_on_a_socket_closes_it_before_anything_after_moves_the_cursor() {
        let main: StreamId = "apartment:main".parse().unwrap();
        for (case, bad) in garbled(&count_at(
            &mut Replica::new(TabId::new(1), ManualClock::new(1_000)),
            2,
            2,
        ))
        .into_iter()
        .enumerate()
        {
            let mut storage = MemoryStorage::new();
            let mut store = Replica::new(TabId::new(2), ManualClock::new(1_000));
            let mut link = link(&storage);
            link.on_open(0);
            feed(&mut link, &welcome(10_000), 0, &mut storage);
            // Op 1 is applied and saved.
            let out = feed(&mut link, &count_at(&mut store, 1, 1), 1, &mut storage);
            assert_eq!(out.ops.len(), 1, "case {case}");
            link.save_cursor(&main, 1, &mut storage);
            // Op 2's frame cannot be read: the link says why and asks for
            // the socket to close.
            let out = feed(&mut link, &bad, 2, &mut storage);
            assert!(out.close, "case {case}: {bad}");
            assert!(out.ops.is_empty() && out.send.is_empty(), "case {case}");
            let (_, message) = out.error.expect("said");
            assert!(
                message.contains("the socket is closed"),
                "case {case}: {message}"
            );
            // Op 3 comes on the same socket before it closes: not taken,
            // or its cursor would skip op 2 for good.
            let out = feed(&mut link, &count_at(&mut store, 3, 3), 3, &mut storage);
            assert!(out.ops.is_empty() && out.error.is_none(), "case {case}");
            assert_eq!(link.cursor(&main), 1, "case {case}");
            // The next socket asks again from op 1, after a wait longer
            // than after a clean close (250 ms).
            let first = link.on_close(0.0, 4);
            assert_eq!(first, Some(500), "case {case}");
            let hello = link.on_open(5).join("");
            assert!(hello.contains(r#""cursor":1"#), "case {case}: {hello}");
            feed(&mut link, &welcome(10_000), 5, &mut storage);
            assert!(feed(&mut link, &bad, 5, &mut storage).close);
            // Twice in a row: HTTP, which pulls each stream on its own and
            // pushes without the socket; the socket is tried again later.
            assert_eq!(link.on_close(0.0, 6), Some(0), "case {case}");
            assert_eq!(link.status(), &LinkStatus::HttpFallback, "case {case}");
            assert!(link.wants_socket(6 + WS_RETRY_MS), "case {case}");
            // The pull asks from op 1 and takes op 2 once it reads.
            assert!(
                link.http_pull(&main, 0).contains("cursor=1&"),
                "case {case}"
            );
            let out = link.on_http(200, &count_at(&mut store, 2, 2), 7, &mut storage);
            assert_eq!(out.ops.len(), 1, "case {case}");
            assert_eq!(out.error, None, "case {case}");
        }
    }

    #[test]
    fn frames_that_cannot_carry_ops_or_states_do_not_close_the_socket() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        let pong = ServerMessage::Pong(Ping { at: 1 }).encode().unwrap();
        let unreadable = [
            // A message type a newer relay may send.
            r#"{"v":1,"type":"news","body":{}}"#.to_owned(),
            // Messages of known types that carry no ops and no states.
            pong.replacen(r#""at":1"#, r#""at":"one""#, 1),
            r#"{"v":1,"type":"ack","body":{"acks":7}}"#.to_owned(),
        ];
        for text in &unreadable {
            let out = feed(&mut link, text, 1, &mut storage);
            assert!(out.error.is_some(), "{text}");
            assert!(!out.close, "{text}");
        }
        // The socket is read on.
        let out = feed(&mut link, &count_at(&mut store, 1, 1), 2, &mut storage);
        assert_eq!(out.ops.len(), 1);
    }

    #[test]
    fn over_http_an_unreadable_answer_is_not_taken_and_the_next_pull_asks_again() {
        let main: StreamId = "apartment:main".parse().unwrap();
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let frame = count_at(&mut store, 1, 1);
        for bad in garbled(&frame) {
            let out = link.on_http(200, &bad, 1, &mut storage);
            assert!(out.error.is_some() && out.ops.is_empty(), "{bad}");
            assert!(link.http_pull(&main, 0).contains("cursor=0&"));
        }
        let out = link.on_http(200, &frame, 2, &mut storage);
        assert_eq!(out.ops.len(), 1);
    }

    #[test]
    fn sockets_refused_for_their_subjects_connections_mean_http() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        let full = error(
            crate::code::TOO_MANY_CONNECTIONS,
            "this token's subject holds 2 connections on this node",
        );
        // Refused at its hello, though it opened: as a socket that did
        // not open (the backoff grows from the first step)…
        link.on_open(0);
        feed(&mut link, &full, 0, &mut storage);
        assert_eq!(link.on_close(0.0, 1), Some(500));
        assert_eq!(link.status(), &LinkStatus::Offline);
        // …and after two, HTTP (whose pushes hold no connection), the
        // socket tried again only after WS_RETRY_MS: the relay is up, so
        // an HTTP answer does not send the link back to it at once.
        link.on_open(2);
        feed(&mut link, &full, 2, &mut storage);
        assert_eq!(link.on_close(0.0, 3), Some(0));
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        assert!(!link.socket_unproven);
        assert_eq!(link.socket_retry_at_ms, Some(3 + WS_RETRY_MS));
        // A socket that works after all ends the run.
        link.on_open(40_000);
        feed(&mut link, &welcome(10_000), 40_000, &mut storage);
        assert_eq!(link.status(), &LinkStatus::Connected);
        assert_eq!(link.on_close(0.0, 40_001), Some(250));
    }

    #[test]
    fn a_key_in_a_query_is_percent_encoded() {
        assert_eq!(
            encode_query("apartment:main/a&b=c d#é"),
            "apartment:main/a%26b%3Dc%20d%23%C3%A9"
        );
    }

    #[test]
    fn an_op_storage_refused_waits_in_memory_through_outbox_reloads_until_answered() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let (x, y) = (op(&mut store, 1), op(&mut store, 2));
        link.queue_unsaved(x.clone());
        // Another tab queued y: the leader reads the outbox again.
        write_outbox_entry(&y, &mut storage).unwrap();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        assert!(link.refresh_outbox(&mut storage).len() <= 1);
        assert_eq!(link.waiting(), 2, "x is still there");
        assert!(link.is_own(&x.id));
        feed(&mut link, &acks(&[(x.id, "")]), 2, &mut storage);
        link.reload_outbox(&storage);
        assert_eq!(link.waiting(), 1, "answered: gone for good");
        assert!(link.queued(&x.id).is_none());
    }

    #[test]
    fn ops_cleared_from_storage_by_another_tab_are_written_back_until_answered() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let (x, y) = (op(&mut store, 1), op(&mut store, 2));
        link.queue(x.clone(), &mut storage).unwrap();
        link.queue(y.clone(), &mut storage).unwrap();
        // Another tab clears localStorage; the leader reads the outbox
        // again (a storage event, another tab's ops).
        for key in storage.keys().unwrap() {
            storage.remove(&key).unwrap();
        }
        link.refresh_outbox(&mut storage);
        assert_eq!(link.waiting(), 2, "nothing answered them");
        assert_eq!(self::link(&storage).waiting(), 2, "written back");
        // The relay's answer still takes one out for good.
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        feed(&mut link, &acks(&[(x.id, "")]), 2, &mut storage);
        link.refresh_outbox(&mut storage);
        assert_eq!(link.waiting(), 1);
        assert_eq!(self::link(&storage).waiting(), 1);
        assert!(link.queued(&x.id).is_none());
        // Another link that still held x (another apartment's, following
        // the same stream) writes it back: this one does not send it
        // again, and takes it out.
        write_outbox_entry(&x, &mut storage).unwrap();
        link.refresh_outbox(&mut storage);
        assert_eq!(link.waiting(), 1);
        assert!(link.queued(&x.id).is_none());
        assert_eq!(self::link(&storage).waiting(), 1);
    }

    #[test]
    fn ops_this_device_may_not_read_move_its_cursor_once_the_ops_before_are_saved() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let main: StreamId = "apartment:main".parse().unwrap();
        let ops = |ops: Vec<Sequenced>, head, through| {
            ServerMessage::Ops(crate::message::OpsBody::new(
                "apartment:main".parse().unwrap(),
                ops,
                head,
                through,
            ))
            .encode()
            .unwrap()
        };
        // Nothing it may read up to 600: the cursor moves at once, and the
        // next pull asks from there.
        feed(&mut link, &ops(Vec::new(), 900, Some(600)), 1, &mut storage);
        assert_eq!(link.cursor(&main), 600);
        assert!(link.http_pull(&main, 0).contains("cursor=600&"));
        // One op it may read, then more it may not: the adapter saves the
        // op, and the cursor goes to 800.
        let x = Sequenced {
            seq: 601,
            op: op(&mut store, 1),
        };
        let out = feed(&mut link, &ops(vec![x], 900, Some(800)), 2, &mut storage);
        assert_eq!(link.cursor(&main), 600, "not before the op is saved");
        let (_, applied) = &out.ops[0];
        link.save_cursor(&main, applied[0].seq, &mut storage);
        assert_eq!(self::link(&storage).cursor(&main), 800);
        // A `through` past the head, or behind the last op, is ignored.
        feed(&mut link, &ops(Vec::new(), 900, Some(950)), 3, &mut storage);
        assert_eq!(link.cursor(&main), 800);
        let y = Sequenced {
            seq: 801,
            op: op(&mut store, 2),
        };
        let out = feed(&mut link, &ops(vec![y], 900, Some(700)), 4, &mut storage);
        let (_, applied) = &out.ops[0];
        link.save_cursor(&main, applied[0].seq, &mut storage);
        assert_eq!(link.cursor(&main), 801);
    }

    #[test]
    fn a_stream_the_token_may_not_read_stops_its_pulls_not_the_link() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        link.on_close(0.0, 0);
        link.on_close(0.0, 1);
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        let forbidden = error(crate::code::FORBIDDEN, "the token may not read global");
        let out = link.on_http(403, &forbidden, 2, &mut storage);
        assert!(!out.close);
        assert_eq!(link.status(), &LinkStatus::HttpFallback, "not refused");
        let main: StreamId = "apartment:main".parse().unwrap();
        // A proxy's 403 page is not the relay's word.
        link.forbid(&StreamId::Global, "<html>Forbidden</html>");
        assert!(link.may_pull(&StreamId::Global));
        link.forbid(&StreamId::Global, &forbidden);
        assert!(!link.may_pull(&StreamId::Global));
        assert!(link.may_pull(&main));
        // Back online: asked again.
        link.online();
        assert!(link.may_pull(&StreamId::Global));
        // Nothing it may read: refused, as for a bad token.
        link.forbid(&StreamId::Global, &forbidden);
        link.forbid(&main, &forbidden);
        assert_eq!(
            link.status(),
            &LinkStatus::Refused(crate::code::FORBIDDEN.into())
        );
        let mut link = self::link(&storage);
        link.on_close(0.0, 0);
        link.on_close(0.0, 1);
        // A 401 page of something in between (a gateway's own login) is
        // an error, not the relay refusing the token: the link goes on.
        let gateway = link.on_http(401, "<html><h1>Sign in</h1></html>", 2, &mut storage);
        assert!(gateway.error.is_some() && !gateway.close);
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        // A bad token still ends it.
        let unauthorized = error(crate::code::UNAUTHORIZED, "bad token");
        assert!(link.on_http(401, &unauthorized, 3, &mut storage).close);
        assert!(matches!(link.status(), LinkStatus::Refused(_)));
    }

    #[test]
    fn a_whole_snapshot_sets_the_cursor_back_where_it_was_further_on() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        let main: StreamId = "apartment:main".parse().unwrap();
        link.save_cursor(&main, 5_000, &mut storage);
        // Ops go no further back; a snapshot of a relay at 40 does.
        link.save_cursor(&main, 40, &mut storage);
        assert_eq!(link.cursor(&main), 5_000);
        link.snapshot_saved(&main, 40, &mut storage);
        assert_eq!(link.cursor(&main), 40);
        assert_eq!(self::link(&storage).cursor(&main), 40);
        assert!(link.http_pull(&main, 0).contains("cursor=40&"));
        // Still stored no further than a pin.
        link.pin_cursor(&main, 30);
        link.snapshot_saved(&main, 45, &mut storage);
        assert_eq!(self::link(&storage).cursor(&main), 30);
        // A snapshot that lowers the cursor, some of it not saved (the
        // adapter pins where the cursor was): the next page fetches this
        // log from its start, not from the snapshot's number.
        let mut unsaved = self::link(&storage);
        unsaved.save_cursor(&main, 5_000, &mut storage);
        unsaved.pin_here(&main);
        unsaved.snapshot_saved(&main, 40, &mut storage);
        assert_eq!(unsaved.cursor(&main), 40, "this page goes on from it");
        assert_eq!(self::link(&storage).cursor(&main), 0);
    }

    #[test]
    fn a_pinned_cursor_is_stored_no_further_than_its_pin() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        let main: StreamId = "apartment:main".parse().unwrap();
        link.save_cursor(&main, 3, &mut storage);
        // Op 5 was kept in memory only: this page reads on past it, the
        // next page fetches it again.
        link.pin_cursor(&main, 4);
        link.save_cursor(&main, 10, &mut storage);
        assert_eq!(link.cursor(&main), 10);
        assert!(link.http_pull(&main, 0).contains("cursor=10&"));
        link.pin_cursor(&main, 8);
        link.save_cursor(&main, 12, &mut storage);
        assert_eq!(self::link(&storage).cursor(&main), 4);
    }

    #[test]
    fn a_stale_counter_op_waits_for_catch_up_and_is_answered_by_its_rebase() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let (x, y) = (op(&mut store, 1), op(&mut store, 2));
        link.queue(x.clone(), &mut storage).unwrap();
        link.queue(y.clone(), &mut storage).unwrap();
        // Over HTTP, where a push's answer may come before the pulls have
        // caught up; a socket is being tried meanwhile (opened, no welcome
        // yet), which must not make an HTTP ack count as a socket's.
        // Refused as stale: held, not reported, not sent again.
        link.on_open(1);
        feed(&mut link, &catch_up(), 1, &mut storage);
        let stale = crate::code::STALE;
        let out = feed(
            &mut link,
            &acks(&[(x.id, stale), (y.id, stale)]),
            2,
            &mut storage,
        );
        assert!(out.acks.is_empty() && out.rebase.is_empty(), "{out:?}");
        assert_eq!(link.waiting(), 2, "kept until a re-base carries them");
        assert!(link.http_push(2).is_none());
        // Ops short of the head: not caught up yet.
        let behind = ServerMessage::Ops(crate::message::OpsBody::new(
            "apartment:main".parse().unwrap(),
            vec![Sequenced {
                seq: 1,
                op: x.clone(),
            }],
            2,
            None,
        ));
        let out = feed(&mut link, &behind.encode().unwrap(), 3, &mut storage);
        assert!(out.rebase.is_empty());
        // Caught up with the stream: re-base now.
        let caught_up = ServerMessage::Ops(crate::message::OpsBody::new(
            "apartment:main".parse().unwrap(),
            Vec::new(),
            0,
            None,
        ));
        let out = feed(&mut link, &caught_up.encode().unwrap(), 3, &mut storage);
        assert_eq!(out.rebase.len(), 1, "one re-base per key");
        assert_eq!(out.rebase[0].key, x.key);
        let rebase = write_rebase(&mut link, &mut store, &out.rebase[0], &mut storage);
        assert_eq!(link.waiting(), 1, "only the re-base waits");
        // Its ack answers the held ops too.
        let out = feed(&mut link, &acks(&[(rebase.id, "")]), 4, &mut storage);
        let answered: BTreeSet<OpId> = out.acks.iter().map(|ack| ack.op).collect();
        assert_eq!(answered, BTreeSet::from([x.id, y.id, rebase.id]));
        assert!(
            out.acks
                .iter()
                .all(|ack| matches!(ack.status, AckStatus::Applied { .. }))
        );
        assert_eq!(link.waiting(), 0);
    }

    /// A link that queued `ops`, connected and caught up, then heard the
    /// relay refuse them all as stale; and what it said then.
    fn refused_as_stale(ops: &[&Op], storage: &mut MemoryStorage) -> (Link, LinkOutput) {
        let mut link = link(storage);
        for op in ops {
            link.queue((*op).clone(), storage).unwrap();
        }
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, storage);
        feed(&mut link, &catch_up(), 1, storage);
        let stale: Vec<(OpId, &str)> = ops.iter().map(|op| (op.id, crate::code::STALE)).collect();
        let out = feed(&mut link, &acks(&stale), 2, storage);
        (link, out)
    }

    /// A merge key's stale ops are held like a counter's; the re-base
    /// names the fields their patches wrote, or none once one of them
    /// wrote the whole value.
    #[test]
    fn stale_merge_ops_ask_to_rebase_the_fields_they_wrote() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut write = |value| cart_op(&mut store, value);
        let first = write(serde_json::json!({"x": 1, "y": 1}));
        let second = write(serde_json::json!({"x": 1, "z": 2}));
        let whole = write(serde_json::json!(7));
        let mut rebase_after = |refused: &[&Op]| {
            let (_, out) = refused_as_stale(refused, &mut storage);
            assert!(out.acks.is_empty(), "held, not reported: {out:?}");
            for op in refused {
                remove_outbox_entry(op.id, &mut storage);
            }
            out.rebase
        };
        let rebase = rebase_after(&[&first, &second]);
        assert_eq!(rebase.len(), 1, "{rebase:?}");
        assert_eq!(rebase[0].key, first.key);
        // Patches: x and y, then y removed and z set.
        assert_eq!(
            rebase[0].fields.as_deref(),
            Some(&["x", "y", "z"].map(String::from)[..])
        );
        let rebase = rebase_after(&[&second, &whole]);
        assert_eq!(rebase[0].fields, None, "a whole value went");
    }

    /// A replica's writes of `texts` to a user-resolve key, one after the
    /// other (each superseding the one before).
    fn note_writes<const N: usize>(texts: [&str; N]) -> (Replica, [Op; N]) {
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let builder =
            SharedKey::<serde_json::Value>::builder_with_default("note", serde_json::json!(""));
        let key = declared(&mut store, builder, Strategy::UserResolve);
        let unit = "main/b/u".parse().unwrap();
        let ops = texts.map(|text| store.set(&unit, &key, serde_json::json!(text)).unwrap().op);
        (store, ops)
    }

    /// A user-resolve key's stale writes ask to be written again as they
    /// were (the replica that made them no longer holds them): the newest
    /// value, and what they superseded with their own ids.
    #[test]
    fn stale_user_resolve_ops_ask_to_write_their_newest_value_again() {
        let mut storage = MemoryStorage::new();
        let (mut store, [first, second]) = note_writes(["one", "two"]);
        let (_, out) = refused_as_stale(&[&first, &second], &mut storage);
        assert_eq!(out.rebase.len(), 1, "{out:?}");
        assert_eq!(out.rebase[0].fields, None);
        let resolved = out.rebase[0]
            .resolved
            .as_ref()
            .expect("a user-resolve re-base");
        assert_eq!(resolved.value, serde_json::json!("two"));
        // One number per tab: the highest (the first write's is lower).
        assert_eq!(resolved.supersedes, [second.id]);
        // The draft the second write saved over is not written again, nor
        // answered yet: the re-base's word is its word too.
        assert!(out.acks.is_empty(), "{:?}", out.acks);
        let (mut link, out) = refused_as_stale(&[&first, &second], &mut storage);
        let rebase = store
            .rebase_resolve(
                &out.rebase[0].writer,
                &out.rebase[0].key,
                &resolved.value,
                &resolved.supersedes,
            )
            .unwrap()
            .op;
        link.queue(rebase.clone(), &mut storage).unwrap();
        assert!(
            link.rebased(&out.rebase[0].key, Some(rebase.id), &mut storage)
                .is_empty()
        );
        let out = feed(&mut link, &acks(&[(rebase.id, "")]), 5, &mut storage);
        let mut answered: Vec<OpId> = out.acks.iter().map(|ack| ack.op).collect();
        answered.sort();
        assert_eq!(answered, [first.id, second.id, rebase.id]);
        assert!(
            out.acks
                .iter()
                .all(|ack| matches!(ack.status, AckStatus::Applied { .. }))
        );
        assert_eq!(link.waiting(), 0);
    }

    /// A draft refused as stale whose later write went in: that write's
    /// ack answers it, and nothing is re-based.
    #[test]
    fn a_stale_draft_is_answered_by_the_write_that_saved_over_it() {
        let mut storage = MemoryStorage::new();
        let (_, [draft, kept]) = note_writes(["draft", "kept"]);
        let mut link = link(&storage);
        for op in [&draft, &kept] {
            link.queue(op.clone(), &mut storage).unwrap();
        }
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        feed(&mut link, &catch_up(), 1, &mut storage);
        let stale = crate::code::STALE;
        let out = feed(
            &mut link,
            &acks(&[(draft.id, stale), (kept.id, "")]),
            2,
            &mut storage,
        );
        assert!(out.rebase.is_empty(), "{out:?}");
        let answered: Vec<(OpId, bool)> = out
            .acks
            .iter()
            .map(|ack| (ack.op, matches!(ack.status, AckStatus::Applied { .. })))
            .collect();
        assert_eq!(answered, [(draft.id, true), (kept.id, true)]);
        assert_eq!(link.waiting(), 0);
    }

    /// A tab that cannot write the re-base yet (the key is not declared
    /// there) puts it off: the held op waits, unanswered, and the re-base
    /// is asked for again, with the same fields, at the next settle.
    #[test]
    fn a_rebase_put_off_is_asked_for_again_and_nothing_is_answered() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let x = cart_op(&mut store, serde_json::json!({"fig": 1}));
        let (mut link, out) = refused_as_stale(&[&x], &mut storage);
        let asked = vec![Rebase {
            key: x.key.clone(),
            writer: x.writer.clone(),
            fields: Some(vec![String::from("fig")]),
            resolved: None,
        }];
        assert_eq!(out.rebase, asked);
        link.rebase_later(&x.key);
        assert_eq!(link.waiting(), 1, "still in the outbox");
        let out = feed(&mut link, &catch_up(), 3, &mut storage);
        assert!(out.acks.is_empty(), "nothing answered: {out:?}");
        assert_eq!(out.rebase, asked);
        let rebase = write_rebase(&mut link, &mut store, &out.rebase[0], &mut storage);
        let out = feed(&mut link, &acks(&[(rebase.id, "")]), 4, &mut storage);
        let answered: BTreeSet<OpId> = out.acks.iter().map(|ack| ack.op).collect();
        assert_eq!(answered, BTreeSet::from([x.id, rebase.id]));
        assert_eq!(link.waiting(), 0);
    }

    /// Ops waiting for a re-base put off do not hold back taking their
    /// stream whole, which another key of it needs (its re-base could not
    /// be written): the socket closes to ask for it.
    #[test]
    fn a_rebase_put_off_does_not_hold_back_a_resync_of_its_stream() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let (count, cart) = (
            op(&mut store, 1),
            cart_op(&mut store, serde_json::json!({"fig": 1})),
        );
        let (mut link, out) = refused_as_stale(&[&count, &cart], &mut storage);
        assert_eq!(out.rebase.len(), 2, "{out:?}");
        // The cart is not declared here; the counter's re-base failed.
        link.rebase_later(&cart.key);
        let refused = link.rebased(&count.key, None, &mut storage);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(link.waiting(), 1, "the cart's op still waits");
        let out = feed(&mut link, &catch_up(), 3, &mut storage);
        assert!(out.close, "the stream is taken whole: {out:?}");
    }

    #[test]
    fn a_rebase_refused_as_stale_is_not_rebased_again_and_a_failed_one_refuses() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let x = op(&mut store, 1);
        link.queue(x.clone(), &mut storage).unwrap();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        let stale = crate::code::STALE;
        // Refused before this socket heard the stream: wait.
        let out = feed(&mut link, &acks(&[(x.id, stale)]), 2, &mut storage);
        assert!(out.rebase.is_empty());
        // The catch-up falls short of the head (ops this token may not
        // read), but the relay sends it all before any ack: the next ack
        // means caught up.
        assert!(
            feed(&mut link, &catch_up(), 3, &mut storage)
                .rebase
                .is_empty()
        );
        let other = OpId {
            tab: TabId::new(9),
            seq: 1,
        };
        let out = feed(&mut link, &acks(&[(other, "")]), 3, &mut storage);
        assert_eq!(out.rebase.len(), 1);
        let rebase = write_rebase(&mut link, &mut store, &out.rebase[0], &mut storage);
        // A relay that refuses everything as stale gets no loop: the
        // re-base's refusal is final, and answers what it carried.
        let out = feed(&mut link, &acks(&[(rebase.id, stale)]), 4, &mut storage);
        assert!(out.rebase.is_empty());
        let refused: BTreeSet<OpId> = out.acks.iter().map(|ack| ack.op).collect();
        assert_eq!(refused, BTreeSet::from([x.id, rebase.id]));
        assert_eq!(link.waiting(), 0);
        // Nothing carried them: the stream is taken whole (kept in storage
        // until the snapshot is applied).
        assert!(out.close, "reconnect, to ask for the stream whole");
        assert!(
            storage
                .get(&format!("{RESYNC_PREFIX}apartment:main"))
                .unwrap()
                .is_some()
        );
        // A re-base the device could not write refuses the held ops.
        let z = op(&mut store, 3);
        link.queue(z.clone(), &mut storage).unwrap();
        let out = feed(&mut link, &acks(&[(z.id, stale)]), 5, &mut storage);
        assert_eq!(out.rebase.len(), 1);
        let refused = link.rebased(&z.key, None, &mut storage);
        assert_eq!(refused.len(), 1);
        assert!(matches!(
            &refused[0].status,
            AckStatus::Refused { code, .. } if code == crate::code::STALE
        ));
        assert_eq!(link.waiting(), 0);
    }

    #[test]
    fn a_stream_with_a_refused_stale_op_is_taken_whole_once_nothing_of_it_waits() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let x = op(&mut store, 1);
        link.queue(x.clone(), &mut storage).unwrap();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        // Another tab of this browser refused one of the stream's ops from
        // the relay as stale: the mark is in the storage they share.
        mark_refused_stale(&x.key, &mut storage);
        // x still waits: not yet.
        assert!(!feed(&mut link, &welcome(10_000), 2, &mut storage).close);
        // A reload forgets nothing.
        let mut link = self::link(&storage);
        link.on_open(2);
        feed(&mut link, &welcome(10_000), 2, &mut storage);
        let out = feed(&mut link, &acks(&[(x.id, "")]), 3, &mut storage);
        assert!(out.close, "reconnect, to say the cursor in a hello");
        link.on_close(0.0, 4);
        let hello = link.on_open(5);
        assert!(hello[0].contains(&u64::MAX.to_string()), "{hello:?}");
        let snapshot = piece_after(7, Vec::new(), false, None);
        feed(&mut link, &welcome(10_000), 6, &mut storage);
        feed(&mut link, &snapshot, 6, &mut storage);
        // Lost before it is known whole (a snapshot may take several
        // messages): asked again.
        link.on_close(0.0, 7);
        assert!(link.on_open(7)[0].contains(&u64::MAX.to_string()));
        feed(&mut link, &welcome(10_000), 8, &mut storage);
        feed(&mut link, &snapshot, 8, &mut storage);
        // A pong follows the whole catch-up: done, once.
        let pong = ServerMessage::Pong(Ping { at: 8 }).encode().unwrap();
        feed(&mut link, &pong, 9, &mut storage);
        link.on_close(0.0, 9);
        assert!(link.on_open(10)[0].contains("\"cursor\":0"), "once");
        assert!(self::link(&storage).on_open(11)[0].contains("\"cursor\":0"));
        assert!(
            link.http_pull(&"apartment:main".parse().unwrap(), 0)
                .contains("cursor=0&")
        );
    }

    #[test]
    fn a_stream_marked_by_a_discarded_entry_is_taken_whole_at_the_next_message() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let x = op(&mut store, 1);
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 1, &mut storage);
        // Another tab discarded the set-aside entry of x's key.
        mark_resync(&x.key, &mut storage);
        let no_rebase = format!("{NO_REBASE_PREFIX}apartment:main");
        assert!(storage.get(&no_rebase).unwrap().is_none());
        let pong = ServerMessage::Pong(Ping { at: 2 }).encode().unwrap();
        assert!(feed(&mut link, &pong, 2, &mut storage).close);
        link.on_close(0.0, 3);
        assert!(link.on_open(4)[0].contains(&u64::MAX.to_string()), "whole");
        // The snapshot, as any, marks the stream never to re-base; once
        // caught up, the mark to take it whole is gone.
        feed(&mut link, &welcome(10_000), 5, &mut storage);
        feed(
            &mut link,
            &piece_after(7, Vec::new(), false, None),
            5,
            &mut storage,
        );
        assert!(storage.get(&no_rebase).unwrap().is_some());
        let pong = ServerMessage::Pong(Ping { at: 6 }).encode().unwrap();
        feed(&mut link, &pong, 6, &mut storage);
        let resync = format!("{RESYNC_PREFIX}apartment:main");
        assert!(storage.get(&resync).unwrap().is_none());
        link.on_close(0.0, 7);
        assert!(!link.on_open(8)[0].contains(&u64::MAX.to_string()), "once");
    }

    #[test]
    fn no_rebase_after_a_snapshot_or_a_refused_relayed_op_even_after_a_reload() {
        let stale = crate::code::STALE;
        let main: StreamId = "apartment:main".parse().unwrap();
        for snapshot in [true, false] {
            let mut storage = MemoryStorage::new();
            let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
            let mut link = link(&storage);
            let x = op(&mut store, 1);
            link.queue(x.clone(), &mut storage).unwrap();
            if snapshot {
                let whole = ServerMessage::Snapshot(Snapshot {
                    stream: main.clone(),
                    seq: 3,
                    states: Vec::new(),
                    more: false,
                    after: None,
                    left_out: Vec::new(),
                    newer: false,
                    piece: crate::message::PieceOf::Start,
                });
                feed(&mut link, &whole.encode().unwrap(), 1, &mut storage);
            } else {
                link.refused_stale(&x.key, &mut storage);
            }
            // A new page (a reload, another tab taking the lead) remembers.
            let mut link = self::link(&storage);
            link.on_open(2);
            feed(&mut link, &welcome(10_000), 2, &mut storage);
            feed(&mut link, &catch_up(), 2, &mut storage);
            let out = feed(&mut link, &acks(&[(x.id, stale)]), 3, &mut storage);
            assert!(out.rebase.is_empty(), "snapshot: {snapshot}");
            assert!(
                matches!(&out.acks[..], [ack] if ack.op == x.id),
                "refused for good: {out:?}"
            );
            assert_eq!(link.waiting(), 0);
        }
        // A re-base that never reached the outbox carries nothing.
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let x = op(&mut store, 1);
        link.queue(x.clone(), &mut storage).unwrap();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        feed(&mut link, &catch_up(), 0, &mut storage);
        let out = feed(&mut link, &acks(&[(x.id, stale)]), 1, &mut storage);
        assert_eq!(out.rebase.len(), 1);
        let unqueued = store
            .rebase(&out.rebase[0].writer, &x.key, None)
            .unwrap()
            .op;
        let refused = link.rebased(&x.key, Some(unqueued.id), &mut storage);
        assert!(matches!(&refused[..], [ack] if ack.op == x.id));
        assert_eq!(link.waiting(), 0);
    }

    /// A relay older than the page refuses its ops as `newer_schema`: they
    /// wait in the outbox and go again (for a relay upgraded since), where
    /// they were taken out as refused for good and never reached it.
    #[test]
    fn an_op_a_relay_refuses_as_newer_schema_waits_and_goes_again() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let x = op(&mut store, 1);
        link.queue(x.clone(), &mut storage).unwrap();
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        feed(&mut link, &catch_up(), 0, &mut storage);
        answer_all(
            &mut link,
            &[x.id],
            crate::code::NEWER_SCHEMA,
            1,
            &mut storage,
        );
        assert_eq!(link.waiting(), 1);
        assert!(storage.get(&outbox_key(x.id)).unwrap().is_some());
        let again = pushed(&link.tick(1 + RESEND_AFTER_MS).0).concat();
        assert_eq!(again, vec![x.id]);
    }

    #[test]
    fn held_ops_filling_the_outbox_are_replaced_by_their_rebase() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let (x, y) = (op(&mut store, 1), op(&mut store, 2));
        link.queue(x.clone(), &mut storage).unwrap();
        link.queue(y.clone(), &mut storage).unwrap();
        let stale = crate::code::STALE;
        link.on_open(0);
        feed(&mut link, &welcome(10_000), 0, &mut storage);
        feed(&mut link, &catch_up(), 0, &mut storage);
        let out = feed(
            &mut link,
            &acks(&[(x.id, stale), (y.id, stale)]),
            1,
            &mut storage,
        );
        assert_eq!(out.rebase.len(), 1);
        // The adapter holds writes back (the outbox is full to its limit):
        // the re-base is written all the same.
        store.set_backlog(Some(2));
        write_rebase(&mut link, &mut store, &out.rebase[0], &mut storage);
        assert_eq!(link.waiting(), 1, "the re-base replaced them");
    }

    #[test]
    fn ops_a_clear_took_out_of_the_outbox_are_told_from_answered_ones() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let (x, y) = (op(&mut store, 1), op(&mut store, 2));
        for op in [&x, &y] {
            write_outbox_entry(op, &mut storage).unwrap();
        }
        let both = || vec![x.clone(), y.clone()];
        assert!(cleared_from_outbox(both(), &storage).is_empty());
        // Another link answered `x`: its entry goes, the mark stays.
        remove_outbox_entry(x.id, &mut storage);
        assert!(cleared_from_outbox(both(), &storage).is_empty());
        // A clear takes the mark with the entries.
        storage.remove(OUTBOX_MARK).unwrap();
        remove_outbox_entry(y.id, &mut storage);
        let cleared: Vec<OpId> = cleared_from_outbox(both(), &storage)
            .iter()
            .map(|op| op.id)
            .collect();
        assert_eq!(cleared, vec![x.id, y.id]);
    }

    /// Past any limit an adapter keeps, an op is taken: it is applied on
    /// this device already (a batch that began below the limit), and one
    /// left out would never reach the others.
    #[test]
    fn an_op_is_never_refused_for_room() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let ops: Vec<Op> = (1..=MAX_OUTBOX as i64 + 2)
            .map(|n| op(&mut store, n))
            .collect();
        for op in &ops[..MAX_OUTBOX] {
            link.queue(op.clone(), &mut storage).unwrap();
        }
        link.queue(ops[MAX_OUTBOX].clone(), &mut storage).unwrap();
        link.queue_unsaved(ops[MAX_OUTBOX + 1].clone());
        assert_eq!(link.waiting(), MAX_OUTBOX + 2);
        let stored = storage.keys().unwrap();
        assert_eq!(
            stored
                .iter()
                .filter(|k| k.starts_with(OUTBOX_PREFIX))
                .count(),
            MAX_OUTBOX + 1
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_two_failed_opens_mean_http() {
        let storage = MemoryStorage::new();
        let mut link = link(&storage);
        link.connecting();
        let first = link.on_close(0.0, 0).unwrap();
        assert!((500..=2_000).contains(&first), "{first}");
        assert_eq!(link.status(), &LinkStatus::Offline);
        link.connecting();
        link.on_close(0.5, 10);
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        assert!(!link.wants_socket(10 + 1_000));
        assert!(
            link.wants_socket(10 + WS_RETRY_MS),
            "the socket is tried again"
        );
        // A relay that is simply down is not a proxy: back to offline.
        link.on_http_failed(0.0);
        assert_eq!(link.status(), &LinkStatus::Offline);
    }

    #[test]
    fn a_relay_silent_for_three_heartbeats_is_dropped_and_anything_heard_resets_the_wait() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        link.connecting();
        link.on_open(0);
        link.on_text(&welcome(1_000), 0, &mut storage);
        assert_eq!(link.status(), &LinkStatus::Connected);
        let (pings, close) = link.tick(1_000);
        assert_eq!((pings.len(), close), (1, false), "a ping each heartbeat");
        assert!(!link.tick(3_000).1, "three heartbeats are not yet silence");
        // Anything from the relay (a pong, ops) counts as heard.
        let pong = ServerMessage::Pong(Ping { at: 1_000 }).encode().unwrap();
        link.on_text(&pong, 2_500, &mut storage);
        assert!(!link.tick(5_000).1);
        assert!(link.tick(5_501).1, "silent for more than three: close it");
        // The relay's heartbeat is clamped: a hostile 1 ms does not make
        // a device drop its socket every few milliseconds.
        let mut link = super::Link::new("d".into(), None, Vec::new(), &storage);
        link.on_open(0);
        link.on_text(&welcome(1), 0, &mut storage);
        assert!(!link.tick(2_999).1);
    }

    #[test]
    fn coming_back_online_resets_the_backoff_and_tries_the_socket_again_from_http() {
        let storage = MemoryStorage::new();
        let mut link = link(&storage);
        // Two sockets that never opened: HTTP, with the socket retried
        // only after WS_RETRY_MS.
        for now in [0, 10] {
            link.connecting();
            link.on_close(0.5, now);
        }
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        assert!(!link.wants_socket(1_000));
        link.online();
        assert!(link.wants_socket(1_000), "online: the socket at once");
        // The relay itself unreachable over HTTP: one failure counted. A
        // socket failing after that would mean HTTP again, unless the
        // browser said it is back online, which starts the count over.
        link.on_http_failed(0.5);
        assert_eq!(link.status(), &LinkStatus::Offline);
        link.online();
        link.connecting();
        let delay = link.on_close(0.5, 2_000).unwrap();
        assert_eq!(link.status(), &LinkStatus::Offline, "not HTTP: count reset");
        assert_eq!(delay, 1_000, "the first backoff step again");
    }

    #[test]
    fn a_relay_back_between_a_failed_socket_and_http_gets_the_socket_tried_at_once() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        link.connecting();
        link.on_open(0);
        link.on_text(&welcome(10_000), 0, &mut storage);
        // The relay restarts: its socket closes, the next two fail, and it
        // is back just before the HTTP request that follows.
        link.on_close(0.5, 100);
        for now in [1_000, 2_000] {
            link.connecting();
            link.on_close(0.5, now);
        }
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        assert!(!link.wants_socket(2_000));
        link.on_http(200, &empty_ops(), 2_010, &mut storage);
        assert!(
            link.wants_socket(2_010),
            "the relay answers: the socket at once, not after WS_RETRY_MS"
        );
        link.connecting();
        link.on_open(2_020);
        link.on_text(&welcome(10_000), 2_020, &mut storage);
        assert_eq!(link.status(), &LinkStatus::Connected);
    }

    #[test]
    fn a_socket_failing_while_http_answers_waits_for_the_retry() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        for now in [0, 10] {
            link.connecting();
            link.on_close(0.5, now);
        }
        // A proxy's error page while the relay restarts is no answer.
        link.on_http(502, "<html>Bad Gateway</html>", 15, &mut storage);
        assert!(!link.wants_socket(15));
        // HTTP answers: the socket once more, at once.
        link.on_http(200, &empty_ops(), 20, &mut storage);
        assert!(link.wants_socket(20));
        // It fails while the relay answers: WebSockets are blocked. HTTP
        // answering again is no reason to try before WS_RETRY_MS.
        link.connecting();
        link.on_close(0.5, 30);
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
        link.on_http(200, &empty_ops(), 40, &mut storage);
        assert!(!link.wants_socket(40));
        assert!(link.wants_socket(30 + WS_RETRY_MS));
        // The relay down and back: HTTP fails, so do the sockets after it,
        // then HTTP answers: the socket is unproven again.
        link.on_http_failed(0.5);
        for now in [50_000, 51_000] {
            link.connecting();
            link.on_close(0.5, now);
        }
        link.on_http(200, &empty_ops(), 51_010, &mut storage);
        assert!(link.wants_socket(51_010));
    }

    #[test]
    fn a_socket_that_opens_while_on_http_takes_over() {
        let mut storage = MemoryStorage::new();
        let mut link = link(&storage);
        for now in [0, 10] {
            link.connecting();
            link.on_close(0.5, now);
        }
        assert!(link.wants_socket(10 + WS_RETRY_MS));
        link.connecting();
        assert_eq!(
            link.status(),
            &LinkStatus::HttpFallback,
            "HTTP goes on while the socket is tried"
        );
        link.on_open(10 + WS_RETRY_MS);
        link.on_text(&welcome(10_000), 10 + WS_RETRY_MS, &mut storage);
        assert_eq!(link.status(), &LinkStatus::Connected);
        assert!(!link.wants_socket(10 + 3 * WS_RETRY_MS));
        // A later close of that working socket starts from the socket
        // again, not from HTTP.
        let delay = link.on_close(0.5, 10 + 3 * WS_RETRY_MS);
        assert_eq!(link.status(), &LinkStatus::Offline);
        assert_eq!(delay, Some(500));
    }

    /// `n` writes of a last-write-wins text of `bytes` bytes each.
    fn big_ops(store: &mut Replica, n: usize, bytes: usize) -> Vec<Op> {
        let key = SharedKey::<String>::builder("note")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap();
        store.declare(&key).unwrap();
        (0..n)
            .map(|i| {
                let text = char::from(b'a' + (i % 26) as u8).to_string().repeat(bytes);
                store
                    .set(&"main/b/u".parse().unwrap(), &key, text)
                    .unwrap()
                    .op
            })
            .collect()
    }

    /// The ops of each push frame, in order.
    fn pushed(frames: &[String]) -> Vec<Vec<OpId>> {
        frames
            .iter()
            .map(|frame| match ClientMessage::decode(frame).unwrap() {
                ClientMessage::Push(push) => push.ops.iter().map(|op| op.id).collect(),
                other => panic!("not a push: {other:?}"),
            })
            .collect()
    }

    /// A relay's limits: frames of 1 MiB, `per_push` ops a push,
    /// `per_second` ops a second.
    fn limits(per_push: usize, per_second: u32) -> crate::message::Limits {
        crate::message::Limits {
            max_frame_bytes: 1 << 20,
            max_ops_per_push: per_push,
            max_ops_per_second: per_second,
        }
    }

    /// A link with `n` ops of `store` (tab 1) queued, and its storage.
    fn queued(n: i64) -> (MemoryStorage, Replica, Link) {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        for n in 1..=n {
            link.queue(op(&mut store, n), &mut storage).unwrap();
        }
        (storage, store, link)
    }

    #[test]
    fn no_push_holds_more_ops_than_the_relay_takes_in_a_second() {
        let (mut storage, _, mut link) = queued(5);
        link.on_open(0);
        let limits = limits(512, 2);
        let out = feed(&mut link, &welcome_limits(10_000, limits), 1, &mut storage);
        let frames = pushed(&out.send);
        assert!(frames.iter().all(|ops| ops.len() <= 2), "{frames:?}");
        let ids = frames.concat();
        assert_eq!(ids.len(), 5);
        // All refused for the rate: they go again a second's worth a
        // second at most, oldest first (the last once a resend of a
        // second's worth went in whole, with its answer).
        let limited: Vec<(OpId, &str)> = ids
            .iter()
            .map(|id| (*id, crate::code::RATE_LIMITED))
            .collect();
        feed(&mut link, &acks(&limited), 2, &mut storage);
        let mut again = Vec::new();
        for second in 1..=4 {
            let now = 2 + second * RESEND_AFTER_MS;
            let (frames, _) = link.tick(now);
            let mut sent = pushed(&frames).concat();
            let taken: Vec<(OpId, &str)> = sent.iter().map(|id| (*id, "")).collect();
            // What the round's end sends with the answer counts for the
            // same second.
            let ended = feed(&mut link, &acks(&taken), now, &mut storage).send;
            sent.extend(pushed(&ended).concat());
            assert!(sent.len() <= 2, "second {second}: {sent:?}");
            let taken: Vec<(OpId, &str)> =
                pushed(&ended).concat().iter().map(|id| (*id, "")).collect();
            feed(&mut link, &acks(&taken), now, &mut storage);
            again.extend(sent);
        }
        assert_eq!(again, ids, "each once, in order");
    }

    #[test]
    fn after_ops_refused_for_the_rate_a_resend_sends_what_the_relay_took_then_doubles() {
        // A relay counting ops on a large key as many (see `Resend`): a
        // resend of a second's worth would spend the refill on ops it then
        // refuses.
        let (mut storage, mut store, mut link) = queued(40);
        link.on_open(0);
        let limits = limits(512, 50);
        let out = feed(&mut link, &welcome_limits(10_000, limits), 1, &mut storage);
        let ids = pushed(&out.send).concat();
        assert_eq!(ids.len(), 40);
        // The relay took the first; the rest it refused for the rate.
        let mut answer: Vec<(OpId, &str)> = vec![(ids[0], "")];
        answer.extend(ids[1..].iter().map(|id| (*id, crate::code::RATE_LIMITED)));
        feed(&mut link, &acks(&answer), 2, &mut storage);
        let mut next = 1;
        let mut now = 2;
        // (what the relay answers each resend, how many that resend holds)
        for (took_all, expected) in [(false, 1), (false, 1), (true, 1), (true, 2), (true, 4)] {
            now += RESEND_AFTER_MS;
            let (frames, _) = link.tick(now);
            let sent = pushed(&frames).concat();
            assert_eq!(sent, ids[next..next + expected], "at {now}");
            let answer: Vec<(OpId, &str)> = sent
                .iter()
                .map(|id| {
                    (
                        *id,
                        if took_all {
                            ""
                        } else {
                            crate::code::RATE_LIMITED
                        },
                    )
                })
                .collect();
            feed(&mut link, &acks(&answer), now, &mut storage);
            if took_all {
                next += expected;
            }
        }
        // A new write while resends wait goes after them, not ahead.
        let late = op(&mut store, 41);
        assert!(link.queue(late.clone(), &mut storage).unwrap().is_empty());
        // A resend nothing answered yet does not grow.
        now += RESEND_AFTER_MS;
        let unanswered = pushed(&link.tick(now).0).concat();
        assert_eq!(unanswered, ids[next..next + 8]);
        now += RESEND_AFTER_MS;
        let more = pushed(&link.tick(now).0).concat();
        assert_eq!(more, ids[next + 8..next + 16], "as many as the last");
        let answer: Vec<(OpId, &str)> =
            unanswered.iter().chain(&more).map(|id| (*id, "")).collect();
        feed(&mut link, &acks(&answer), now, &mut storage);
        next += 16;
        // Once resends are taken whole, they grow back to a second's worth
        // (then pings, due by now, are all a tick sends).
        let mut rest = Vec::new();
        for _ in 0..3 {
            now += RESEND_AFTER_MS;
            let (frames, _) = link.tick(now);
            let frames: Vec<String> = frames
                .into_iter()
                .filter(|frame| matches!(ClientMessage::decode(frame), Ok(ClientMessage::Push(_))))
                .collect();
            let sent = pushed(&frames).concat();
            let answer: Vec<(OpId, &str)> = sent.iter().map(|id| (*id, "")).collect();
            feed(&mut link, &acks(&answer), now, &mut storage);
            rest.extend(sent);
        }
        let mut expected = ids[next..].to_vec();
        expected.push(late.id);
        assert_eq!(rest, expected, "every op went in, each once, in order");
    }

    /// The relay answers each of `ids` with `code` (empty: applied) at
    /// `now`: what the link sends then.
    fn answer_all(
        link: &mut Link,
        ids: &[OpId],
        code: &str,
        now: u64,
        storage: &mut MemoryStorage,
    ) -> Vec<String> {
        let answered: Vec<(OpId, &str)> = ids.iter().map(|id| (*id, code)).collect();
        feed(link, &acks(&answered), now, storage).send
    }

    /// [`answer_all`] over HTTP: an ack answer to a push.
    fn answer_http(
        link: &mut Link,
        ids: &[OpId],
        code: &str,
        now: u64,
        storage: &mut MemoryStorage,
    ) {
        let answered: Vec<(OpId, &str)> = ids.iter().map(|id| (*id, code)).collect();
        let out = link.on_http(200, &acks(&answered), now, storage);
        assert!(out.send.is_empty(), "nothing goes over a socket");
    }

    /// The relay answers the first `k` of `ids` with `code` (empty:
    /// applied) and refuses the rest as rate limited, at `now`.
    fn answer_then_limit(
        link: &mut Link,
        ids: &[OpId],
        k: usize,
        code: &str,
        now: u64,
        storage: &mut MemoryStorage,
    ) {
        answer_all(link, &ids[..k], code, now, storage);
        answer_all(link, &ids[k..], crate::code::RATE_LIMITED, now, storage);
    }

    /// A link with `n` ops queued, opened and welcomed by a relay of
    /// `limits` at 1: its storage, and the ops the welcome sent.
    fn welcomed(
        n: i64,
        limits: crate::message::Limits,
    ) -> (MemoryStorage, Replica, Link, Vec<OpId>) {
        let (mut storage, store, mut link) = queued(n);
        link.on_open(0);
        let out = feed(&mut link, &welcome_limits(10_000, limits), 1, &mut storage);
        (storage, store, link, pushed(&out.send).concat())
    }

    /// The socket closes at `now` and another opens and is welcomed
    /// (`limits`): the ops the welcome sends.
    fn reconnect(
        link: &mut Link,
        limits: crate::message::Limits,
        now: u64,
        storage: &mut MemoryStorage,
    ) -> Vec<OpId> {
        link.on_close(0.0, now);
        link.connecting();
        link.on_open(now + 1);
        let out = feed(link, &welcome_limits(10_000, limits), now + 2, storage);
        pushed(&out.send).concat()
    }

    #[test]
    fn a_new_connection_keeps_the_pace_of_resends() {
        let (mut storage, _, mut link) = queued(200);
        let limits = limits(512, 50);
        link.on_open(0);
        let out = feed(&mut link, &welcome_limits(10_000, limits), 1, &mut storage);
        let ids = pushed(&out.send).concat();
        assert_eq!(ids.len(), 200, "four pushes of a second's worth");
        // The relay's bucket held two seconds' worth: it took 100.
        let mut answer: Vec<(OpId, &str)> = ids[..100].iter().map(|id| (*id, "")).collect();
        answer.extend(ids[100..].iter().map(|id| (*id, crate::code::RATE_LIMITED)));
        feed(&mut link, &acks(&answer), 2, &mut storage);
        // The socket drops and another opens at once, twice: right after
        // the refusal, then after a resend grown back to a second's worth
        // (unanswered). The relay's budget is the token subject's, as
        // spent as it was: nothing goes before the resend is due.
        let mut now = 2;
        for _ in 0..2 {
            let sent = reconnect(&mut link, limits, now + 1, &mut storage);
            assert_eq!(sent, Vec::<OpId>::new(), "at {now}");
            now += RESEND_AFTER_MS;
            assert_eq!(pushed(&link.tick(now).0).concat(), ids[100..150]);
        }
    }

    #[test]
    fn a_round_of_resends_ends_once_one_goes_in_whole_and_new_writes_go_at_once() {
        // Half refused for the rate; the resend (a second's worth) goes in
        // whole: the round is over with its answer, and the next write
        // goes at once, not at the next tick.
        let (mut storage, mut store, mut link, ids) = welcomed(10, limits(512, 5));
        answer_then_limit(&mut link, &ids, 5, "", 2, &mut storage);
        let resent = pushed(&link.tick(2 + RESEND_AFTER_MS).0).concat();
        assert_eq!(resent, ids[5..]);
        answer_all(&mut link, &resent, "", 3 + RESEND_AFTER_MS, &mut storage);
        let next = link.queue(op(&mut store, 11), &mut storage).unwrap();
        assert_eq!(pushed(&next).concat().len(), 1, "at once");
        // An op held as stale (it waits for a re-base, not for the relay)
        // does not keep a round open.
        let (mut storage, mut store, mut link, ids) = welcomed(2, limits(512, 50));
        answer_then_limit(&mut link, &ids, 1, crate::code::STALE, 2, &mut storage);
        let mut now = 2;
        for _ in 0..3 {
            now += RESEND_AFTER_MS;
            let sent = pushed(&link.tick(now).0).concat();
            answer_all(&mut link, &sent, "", now, &mut storage);
        }
        let next = link.queue(op(&mut store, 12), &mut storage).unwrap();
        assert_eq!(pushed(&next).concat().len(), 1, "at once");
    }

    #[test]
    fn a_resend_a_little_early_does_not_bring_the_next_ones_earlier() {
        let (mut storage, _, mut link, ids) = welcomed(10, limits(512, 1));
        answer_then_limit(&mut link, &ids, 1, "", 2, &mut storage);
        // Due at 1002: a tick 100 ms early sends it.
        let at = 2 + RESEND_AFTER_MS;
        assert_eq!(pushed(&link.tick(at - 100).0).concat(), ids[1..2]);
        answer_all(&mut link, &ids[1..2], "", at - 100, &mut storage);
        // Not again before it was due, nor when it was.
        assert!(link.tick(at - 99).0.is_empty());
        assert!(link.tick(at).0.is_empty());
        // The next is due a second after 1002, not after 902.
        assert!(
            link.tick(at + RESEND_AFTER_MS - RESEND_SLACK_MS - 50)
                .0
                .is_empty()
        );
        assert_eq!(
            pushed(&link.tick(at + RESEND_AFTER_MS).0).concat(),
            ids[2..3]
        );
    }

    #[test]
    fn a_resend_set_further_ahead_than_one_can_be_means_the_clock_went_back() {
        let (mut storage, _, mut link, ids) = welcomed(10, limits(512, 50));
        answer_then_limit(&mut link, &ids, 1, "", 5_000, &mut storage);
        // Due at 6000; the furthest a next resend can be set is 1250 ms
        // ahead (a second after one sent 250 ms early).
        assert!(
            link.tick(6_000 - RESEND_AFTER_MS - RESEND_SLACK_MS)
                .0
                .is_empty()
        );
        let back = 6_000 - RESEND_AFTER_MS - RESEND_SLACK_MS - 1;
        assert_eq!(pushed(&link.tick(back).0).concat(), ids[1..2]);
    }

    #[test]
    fn over_http_a_resend_spanning_pushes_and_the_round_s_end_send_a_second_s_worth() {
        // Two ops a push, five a second: a resend of a second's worth
        // takes three pushes; seven ops wait for it.
        let (mut storage, mut store, mut link) = queued(13);
        on_http_after_a_welcome(&mut link, limits(2, 5), &mut storage);
        // Three pushes go in (six ops), the fourth is refused for the
        // rate: the next resend is a second's worth (three pushes), a
        // second later.
        for _ in 0..3 {
            let pushed = ids_of(link.http_push(20));
            answer_http(&mut link, &pushed, "", 20, &mut storage);
        }
        let refused = ids_of(link.http_push(20));
        answer_http(
            &mut link,
            &refused,
            crate::code::RATE_LIMITED,
            20,
            &mut storage,
        );
        // Answered whole push by push, it sends a second's worth, 100 ms
        // early; then nothing until a second after it was due.
        let waiting: Vec<OpId> = link.outbox.values().map(|op| op.id).collect();
        assert_eq!(waiting.len(), 7);
        let at = 20 + RESEND_AFTER_MS;
        let send_all = |link: &mut Link, now, storage: &mut MemoryStorage| {
            let mut sent = Vec::new();
            while let Some(body) = link.http_push(now) {
                let pushed = ids_of(Some(body));
                answer_http(link, &pushed, "", now, storage);
                sent.extend(pushed);
            }
            sent
        };
        assert_eq!(send_all(&mut link, at - 100, &mut storage), waiting[..5]);
        assert_eq!(send_all(&mut link, at, &mut storage), Vec::<OpId>::new());
        // The next takes the last two; four writes made while its push is
        // out wait for the round's end or the next resend, so that the
        // second holds no more than its worth.
        let next = at + RESEND_AFTER_MS;
        assert_eq!(ids_of(link.http_push(next)), waiting[5..]);
        for n in 14..=17 {
            link.queue(op(&mut store, n), &mut storage).unwrap();
        }
        answer_http(&mut link, &waiting[5..], "", next, &mut storage);
        assert!(link.http_push(next).is_none(), "2 + 4 > 5");
        assert_eq!(
            send_all(&mut link, next + RESEND_AFTER_MS, &mut storage).len(),
            4
        );
    }

    #[test]
    fn a_round_ends_with_what_its_pace_leaves_room_for_waiting_and_no_more() {
        // Refused for the rate; resends of 1, 2, then 4 of which only 3
        // are left: room for one more in that second. Writes made while
        // that last resend is out go with its answer if they fit.
        for (writes, at_once) in [(1, true), (2, false)] {
            let (mut storage, mut store, mut link, ids) = welcomed(7, limits(512, 50));
            answer_then_limit(&mut link, &ids, 1, "", 2, &mut storage);
            let mut now = 2;
            for expected in [1, 2] {
                now += RESEND_AFTER_MS;
                let sent = pushed(&link.tick(now).0).concat();
                assert_eq!(sent.len(), expected);
                answer_all(&mut link, &sent, "", now, &mut storage);
            }
            now += RESEND_AFTER_MS;
            let last = pushed(&link.tick(now).0).concat();
            assert_eq!(last, ids[4..7]);
            let made: Vec<OpId> = (8..8 + writes)
                .map(|n| {
                    let op = op(&mut store, n);
                    assert!(link.queue(op.clone(), &mut storage).unwrap().is_empty());
                    op.id
                })
                .collect();
            let ended = answer_all(&mut link, &last, "", now, &mut storage);
            let went = pushed(&ended).concat();
            if at_once {
                assert_eq!(went, made, "one fits: it goes with the answer");
            } else {
                assert!(went.is_empty(), "two do not: they wait");
                let next = pushed(&link.tick(now + RESEND_AFTER_MS).0).concat();
                assert_eq!(next, made);
            }
        }
    }

    #[test]
    fn a_pace_kept_from_a_connection_long_gone_no_longer_holds() {
        let limits = limits(512, 5);
        let (mut storage, _, mut link, ids) = welcomed(10, limits);
        answer_then_limit(&mut link, &ids, 1, "", 2, &mut storage);
        // Back five seconds later: the relay's bucket has filled again,
        // and the resend is a second's worth, not the one op that got in.
        let sent = reconnect(&mut link, limits, 2 + 5 * RESEND_AFTER_MS, &mut storage);
        assert_eq!(sent, ids[1..6]);
    }

    #[test]
    fn ops_refused_for_storage_trouble_go_at_once_on_a_new_connection_and_whole() {
        let limits = limits(512, 50);
        let (mut storage, mut store, mut link, ids) = welcomed(10, limits);
        // A round paced down by the rate limit, to its end: 1, 2, 4, then
        // the last 2.
        answer_then_limit(&mut link, &ids, 1, "", 2, &mut storage);
        let mut now = 2;
        let mut next = 1;
        for expected in [1, 2, 4, 2] {
            now += RESEND_AFTER_MS;
            let sent = pushed(&link.tick(now).0).concat();
            assert_eq!(sent, ids[next..next + expected]);
            answer_all(&mut link, &sent, "", now, &mut storage);
            next += expected;
        }
        // The last resend took all there was and went in whole: the round
        // is over with its answer, and a new write goes at once.
        let last = link.queue(op(&mut store, 11), &mut storage).unwrap();
        assert_eq!(pushed(&last).concat().len(), 1, "at once");
        answer_all(&mut link, &pushed(&last).concat(), "", now, &mut storage);
        // Later writes the relay cannot store for now: their resend is a
        // second's worth again, not what the old round was paced down to.
        let later: Vec<OpId> = (12..=21)
            .flat_map(|n| link.queue(op(&mut store, n), &mut storage).unwrap())
            .flat_map(|frame| pushed(&[frame]).concat())
            .collect();
        assert_eq!(later.len(), 10);
        answer_all(&mut link, &later, crate::code::STORAGE, now, &mut storage);
        now += RESEND_AFTER_MS;
        assert_eq!(pushed(&link.tick(now).0).concat(), later);
        answer_all(&mut link, &later[..5], "", now, &mut storage);
        answer_all(
            &mut link,
            &later[5..],
            crate::code::SHUTTING_DOWN,
            now,
            &mut storage,
        );
        // The relay restarts: the next connection sends what it refused at
        // once, without waiting for the resend.
        let sent = reconnect(&mut link, limits, now, &mut storage);
        assert_eq!(sent, later[5..]);
    }

    /// `link` hears of the relay's `limits` over a socket that then
    /// fails, and twice more: on HTTP.
    fn on_http_after_a_welcome(
        link: &mut Link,
        limits: crate::message::Limits,
        storage: &mut MemoryStorage,
    ) {
        link.on_open(0);
        link.on_text(&welcome_limits(10_000, limits), 0, storage);
        for now in [1, 2, 3] {
            link.on_close(0.5, now);
            link.connecting();
        }
        assert_eq!(link.status(), &LinkStatus::HttpFallback);
    }

    /// The ids of the ops an HTTP push body carries (none without one).
    fn ids_of(body: Option<String>) -> Vec<OpId> {
        body.map_or_else(Vec::new, |body| {
            let push: Push = serde_json::from_str(&body).unwrap();
            push.ops.iter().map(|op| op.id).collect()
        })
    }

    #[test]
    fn a_link_on_http_alone_asks_the_relay_s_limits_until_it_answers_for_good() {
        let to_http = |link: &mut Link| {
            for now in [0, 10] {
                link.connecting();
                link.on_close(0.5, now);
            }
            assert_eq!(link.status(), &LinkStatus::HttpFallback);
        };
        // Nothing to push, nothing to ask.
        let (_, _, mut idle) = queued(0);
        to_http(&mut idle);
        assert_eq!(idle.http_limits(20), None);
        let (mut storage, _, mut link) = queued(12);
        to_http(&mut link);
        // One ask at a time; a failed one, or a proxy's error page, is
        // asked again two seconds later.
        let ask = link.http_limits(20).expect("asked");
        assert_eq!(ask.path(), "/v1/limits");
        assert_eq!(link.http_limits(20), None, "one ask at a time");
        link.on_http_limits(ask, None, 30);
        assert_eq!(link.http_limits(30 + LIMITS_RETRY_MS - 1), None, "not yet");
        let ask = link.http_limits(30 + LIMITS_RETRY_MS).expect("asked again");
        link.on_http_limits(ask, Some((502, "<html>Bad Gateway</html>")), 3_000);
        let ask = link
            .http_limits(3_000 + LIMITS_RETRY_MS)
            .expect("asked again");
        // The relay says them: five ops a push.
        let said = serde_json::to_string(&limits(5, 50)).unwrap();
        link.on_http_limits(ask, Some((200, &said)), 6_000);
        assert_eq!(link.http_limits(9_000), None, "known");
        assert_eq!(ids_of(link.http_push(9_000)).len(), 5);
        // A push past them (the relay restarted with others): asked again,
        // at once even after an ask that failed just now.
        let refusal = error(crate::code::TOO_MANY_OPS, "5 ops in one push; at most 2");
        link.on_http(400, &refusal, 9_001, &mut storage);
        let ask = link.http_limits(9_001).expect("asked again");
        link.on_http_limits(ask, None, 9_002);
        link.on_http(400, &refusal, 9_003, &mut storage);
        let ask = link.http_limits(9_003).expect("asked at once");
        // A relay from before the route: this build's limits, for good.
        link.on_http_limits(ask, Some((404, "not found")), 9_004);
        assert_eq!(link.http_limits(99_000), None);
        assert_eq!(ids_of(link.http_push(99_000)).len(), 12);
        // An answer that is not limits (a site's page for any path, a
        // captive portal) changes nothing, and is asked again a minute
        // later.
        let (_, _, mut other) = queued(12);
        to_http(&mut other);
        let ask = other.http_limits(20).expect("asked");
        other.on_http_limits(ask, Some((200, "<!doctype html><title>App</title>")), 20);
        assert_eq!(other.limits, None);
        assert_eq!(other.http_limits(20 + LIMITS_RETRY_LATER_MS - 1), None);
        assert!(other.http_limits(20 + LIMITS_RETRY_LATER_MS).is_some());
        // A late answer never replaces what a welcome said.
        let (mut storage, _, mut welcomed) = queued(12);
        to_http(&mut welcomed);
        let ask = welcomed.http_limits(20).expect("asked");
        welcomed.on_open(30);
        welcomed.on_text(&welcome_limits(10_000, limits(7, 50)), 30, &mut storage);
        welcomed.on_http_limits(ask, Some((200, &said)), 40);
        assert_eq!(welcomed.limits, Some(limits(7, 50)));
    }

    #[test]
    fn an_ask_for_limits_from_a_connection_gone_neither_holds_nor_delays_the_next() {
        let to_http = |link: &mut Link, now: u64| {
            for now in [now, now + 10] {
                link.connecting();
                link.on_close(0.5, now);
            }
            assert_eq!(link.status(), &LinkStatus::HttpFallback);
        };
        // The relay goes down while the link is on HTTP with ops to push:
        // a pull finds nobody (the connection ends), then the ask out
        // finds nobody either.
        let (_, _, mut link) = queued(12);
        to_http(&mut link, 0);
        let lost = link.http_limits(20).expect("asked");
        link.on_http_failed(0.5);
        link.on_http_limits(lost, None, 30);
        // The relay is back a moment later: the next connection asks
        // before it pushes, whatever the failure just now said.
        to_http(&mut link, 1_000);
        let ask = link.http_limits(1_020).expect("asked at once");
        // Nor does an ask still out from the connection before hold it:
        // it asks on its own, and the old one's failure changes nothing.
        let (_, _, mut held) = queued(12);
        to_http(&mut held, 0);
        let stuck = held.http_limits(20).expect("asked");
        held.on_http_failed(0.5);
        to_http(&mut held, 1_000);
        let fresh = held
            .http_limits(1_020)
            .expect("asked on the new connection");
        held.on_http_limits(stuck, None, 21_000);
        assert_eq!(held.http_limits(21_000), None, "its own ask is still out");
        // An old ask that brings the limits is as good as any.
        let said = serde_json::to_string(&limits(5, 50)).unwrap();
        link.on_http_limits(lost, Some((200, &said)), 1_030);
        assert_eq!(link.limits, Some(limits(5, 50)));
        link.on_http_limits(ask, Some((502, "Bad Gateway")), 1_040);
        assert_eq!(link.limits, Some(limits(5, 50)));
        held.on_http_limits(fresh, Some((200, &said)), 21_010);
        assert_eq!(ids_of(held.http_push(21_010)).len(), 5);
    }

    #[test]
    fn over_http_a_push_refused_whole_for_now_stops_the_resend_under_way() {
        let (mut storage, _, mut link) = queued(30);
        on_http_after_a_welcome(&mut link, limits(10, 50), &mut storage);
        // The relay cannot store (an error, no ack per op).
        let trouble = error(crate::code::STORAGE, "the store is unreachable");
        let ids: Vec<OpId> = link.outbox.values().map(|op| op.id).collect();
        assert_eq!(ids_of(link.http_push(10)), ids[..10]);
        link.on_http(500, &trouble, 10, &mut storage);
        assert!(link.http_push(10).is_none(), "they wait for the resend");
        // The resend: a second's worth, three pushes; the relay takes the
        // first and cannot store the second, and the third waits.
        let now = 10 + RESEND_AFTER_MS;
        let first = ids_of(link.http_push(now));
        assert_eq!(first, ids[..10]);
        let applied: Vec<(OpId, &str)> = first.iter().map(|id| (*id, "")).collect();
        link.on_http(200, &acks(&applied), now, &mut storage);
        assert_eq!(ids_of(link.http_push(now)), ids[10..20]);
        link.on_http(500, &trouble, now, &mut storage);
        assert!(
            link.http_push(now).is_none(),
            "the rest of the resend waits"
        );
        let later = now + RESEND_AFTER_MS;
        assert_eq!(ids_of(link.http_push(later)), ids[10..20]);
    }

    #[test]
    fn over_http_ops_refused_for_the_rate_wait_and_resend_as_over_a_socket() {
        let (mut storage, mut store, mut link) = queued(60);
        // A relay taking 10 ops a push and 50 a second.
        on_http_after_a_welcome(&mut link, limits(10, 50), &mut storage);
        let mut now = 20;
        let first = ids_of(link.http_push(now));
        assert_eq!(first.len(), 10, "a push's worth");
        let ids: Vec<OpId> = link.outbox.values().map(|op| op.id).collect();
        assert_eq!(first, ids[..10]);
        // The relay took the first; the rest it refused for the rate.
        let mut answer: Vec<(OpId, &str)> = vec![(ids[0], "")];
        answer.extend(first[1..].iter().map(|id| (*id, crate::code::RATE_LIMITED)));
        link.on_http(200, &acks(&answer), now, &mut storage);
        assert!(link.http_push(now).is_none(), "the refused ops wait");
        let mut next = 1;
        // (how the relay answers each push, how many ops each resend holds:
        // 16 go in two pushes, 10 and 6, one right after the other)
        let rounds = [(429, 1), (200, 1), (200, 2), (200, 4), (200, 8), (200, 16)];
        for (answer, expected) in rounds {
            now += RESEND_AFTER_MS;
            let mut sent = Vec::new();
            while let Some(body) = link.http_push(now) {
                let pushed = ids_of(Some(body));
                assert!(pushed.len() <= 10);
                let code = if answer == 429 {
                    crate::code::RATE_LIMITED
                } else {
                    ""
                };
                let answered: Vec<(OpId, &str)> = pushed.iter().map(|id| (*id, code)).collect();
                link.on_http(answer, &acks(&answered), now, &mut storage);
                sent.extend(pushed);
            }
            assert_eq!(sent, ids[next..next + expected], "at {now}");
            if answer == 200 {
                next += expected;
            }
        }
        // A resend spanning pushes (32: 10, 10, 10, 2) stops at the first
        // the relay refuses in part for now: the rest of it waits.
        now += RESEND_AFTER_MS;
        let sent = ids_of(link.http_push(now));
        assert_eq!(sent, ids[next..next + 10]);
        let mut answer: Vec<(OpId, &str)> = sent[..5].iter().map(|id| (*id, "")).collect();
        answer.extend(sent[5..].iter().map(|id| (*id, crate::code::RATE_LIMITED)));
        link.on_http(200, &acks(&answer), now, &mut storage);
        assert!(
            link.http_push(now).is_none(),
            "the rest of the resend waits"
        );
        next += 5;
        // A new write while resends wait goes after them, not ahead.
        let late = op(&mut store, 61);
        link.queue(late.clone(), &mut storage).unwrap();
        assert!(link.http_push(now).is_none());
        // The rest, every op once, in order, the new write last; then the
        // round is over and nothing waits.
        let mut rest = Vec::new();
        while rest.len() < ids.len() - next + 1 {
            now += RESEND_AFTER_MS;
            while let Some(body) = link.http_push(now) {
                let pushed = ids_of(Some(body));
                let answer: Vec<(OpId, &str)> = pushed.iter().map(|id| (*id, "")).collect();
                link.on_http(200, &acks(&answer), now, &mut storage);
                rest.extend(pushed);
            }
        }
        let mut expected = ids[next..].to_vec();
        expected.push(late.id);
        assert_eq!(rest, expected);
        // The last resend took all there was and went in whole: the round
        // is over with its answer, and a new write goes at once.
        let another = op(&mut store, 62);
        link.queue(another.clone(), &mut storage).unwrap();
        assert_eq!(ids_of(link.http_push(now)), vec![another.id], "at once");
    }

    #[test]
    fn ops_that_add_up_past_a_frame_go_in_several_pushes_and_none_is_left_behind() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        // Five writes of 220 KiB while offline: about 1.1 MiB in all, over
        // one frame (1 MiB), each well under it.
        let ops = big_ops(&mut store, 5, 220 << 10);
        for op in &ops {
            link.queue(op.clone(), &mut storage).unwrap();
        }
        link.on_open(0);
        let out = feed(&mut link, &welcome(10_000), 1, &mut storage);
        assert!(out.send.len() >= 2, "{} frames", out.send.len());
        assert!(
            out.send
                .iter()
                .all(|frame| frame.len() <= MAX_MESSAGE_BYTES)
        );
        let sent: Vec<OpId> = pushed(&out.send).concat();
        assert_eq!(sent, ops.iter().map(|op| op.id).collect::<Vec<_>>());
        // Over HTTP: the oldest push's worth, within a frame.
        let body = link.http_push(1).unwrap();
        assert!(body.len() <= MAX_MESSAGE_BYTES, "{} bytes", body.len());
        let push: Push = serde_json::from_str(&body).unwrap();
        assert_eq!(push.ops[0].id, ops[0].id);
        assert!(push.ops.len() < ops.len());
    }

    #[test]
    fn pushes_keep_to_the_limits_the_relay_announced() {
        let mut storage = MemoryStorage::new();
        let mut store = Replica::new(TabId::new(1), ManualClock::new(1_000));
        let mut link = link(&storage);
        let small: Vec<Op> = (1..=5).map(|n| op(&mut store, n)).collect();
        let big = big_ops(&mut store, 2, 100 << 10);
        for op in small.iter().chain(&big) {
            link.queue(op.clone(), &mut storage).unwrap();
        }
        link.on_open(0);
        // A relay taking two ops and 150 KiB per push.
        let out = feed(
            &mut link,
            &welcome_with(10_000, 150 << 10, 2),
            1,
            &mut storage,
        );
        let frames = pushed(&out.send);
        assert!(frames.iter().all(|ops| ops.len() <= 2), "{frames:?}");
        assert!(out.send.iter().all(|frame| frame.len() <= 150 << 10));
        assert_eq!(frames.concat().len(), 7, "every op goes");
        // An op larger than the relay's frame stays queued, the rest go.
        let mut link = Link::new(
            "d".into(),
            Some("t".into()),
            vec!["apartment:main".parse().unwrap()],
            &storage,
        );
        link.on_open(2);
        let out = feed(
            &mut link,
            &welcome_with(10_000, 64 << 10, 512),
            3,
            &mut storage,
        );
        assert_eq!(pushed(&out.send).concat().len(), 5, "the small ones go");
        assert_eq!(link.waiting(), 7, "the large ones wait");
    }
}
