//! The messages, their envelope and their decoding.

use std::fmt;

use gaesup_state_core::decode::{
    Fields, FromJson, Node, Skimmed, Why, invalid, items, parse_tree_bounded, variant,
};
use gaesup_state_core::{
    FullKey, MAX_MESSAGE_BYTES, MAX_SYNC_STATES, Op, OpId, Payload, Strategy, SyncEntry,
    deserialize_through_tree, encoded_len, preview, split_by_len,
};
use serde::Serialize;
use serde_json::Value;

use crate::code;
use crate::stream::{Sequenced, StreamId, Subscription};

/// The relay protocol version this code speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest client name kept, in bytes.
const MAX_CLIENT_BYTES: usize = 128;

/// Longest frame a relay reads from a socket before its hello (whose
/// token it has not checked yet): a hello holds a client name of at most
/// 128 bytes, a token (the browser takes one of at most 4 KiB) and at most
/// 64 subscriptions, about 50 KiB at the very most (a test builds the
/// largest). A frame is parsed whole before it is read, so the frame
/// limit here would let anyone make a relay parse a megabyte per frame
/// without a token.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// Why a message was refused, with the stable [`code`] the other side
/// shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// One of [`code`].
    pub code: &'static str,
    /// What was wrong, for people.
    pub message: String,
}

impl ProtocolError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error as the body the relay sends back.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_owned(),
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ProtocolError {}

/// A device introduces itself on a socket, once, before anything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hello {
    /// Who it is (for logs and metrics): a device id, not a secret.
    pub client: String,
    /// Its token (never in a URL). The HTTP fallback sends it in an
    /// `Authorization: Bearer` header instead.
    pub token: Option<String>,
    /// The streams it follows, each from its cursor.
    pub subscribe: Vec<Subscription>,
}

impl FromJson for Hello {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "a hello")?;
        Ok(Self {
            client: fields.req("client")?,
            token: fields.opt("token")?,
            subscribe: fields.or_default("subscribe")?,
        })
    }
}

/// Ops a device sends; each is acknowledged on its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Push {
    /// The ops, in the order they were made.
    pub ops: Vec<Op>,
}

impl FromJson for Push {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Ok(Self {
            ops: Fields::of(node, "a push")?.req("ops")?,
        })
    }
}

/// A heartbeat, answered by a pong carrying the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ping {
    /// The sender's clock (ms) when it sent the ping.
    pub at: u64,
}

impl FromJson for Ping {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Ok(Self {
            at: Fields::of(node, "a ping")?.req("at")?,
        })
    }
}

/// What the relay says after a hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Welcome {
    /// The node that answered (several nodes may serve one deployment).
    pub node: String,
    /// How often the relay pings; a socket silent for three times as long
    /// is dead.
    pub heartbeat_ms: u64,
    /// What the relay accepts.
    pub limits: Limits,
}

impl FromJson for Welcome {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "a welcome")?;
        Ok(Self {
            node: fields.req("node")?,
            heartbeat_ms: fields.req("heartbeat_ms")?,
            limits: fields.req("limits")?,
        })
    }
}

/// What a relay accepts, so a device can stay within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest frame or body, in bytes.
    pub max_frame_bytes: usize,
    /// Most ops in one push.
    pub max_ops_per_push: usize,
    /// Most ops per second per token subject (on one relay node, shared
    /// by all the subject's connections and HTTP pushes: devices of one
    /// subject share it). The relay of this crate counts an op the core applies or
    /// tries once more per 16 KiB of its key's state, at most a second's
    /// worth; an op it cannot pay for is refused as rate limited, and so
    /// are the later ops of its push.
    pub max_ops_per_second: u32,
}

impl FromJson for Limits {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "limits")?;
        Ok(Self {
            max_frame_bytes: fields.req("max_frame_bytes")?,
            max_ops_per_push: fields.req("max_ops_per_push")?,
            max_ops_per_second: fields.req("max_ops_per_second")?,
        })
    }
}

/// The outcome of one pushed op.
///
/// On the wire, an object whose `status` names the variant, beside the
/// variant's fields: `{"status":"duplicate","stream":"global","seq":3}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AckStatus {
    /// Made durable at `seq` of `stream`; `value` is the key's value on the
    /// relay after it (what every device converges to).
    Applied {
        /// The stream.
        stream: StreamId,
        /// Its number there.
        seq: u64,
        /// The key's canonical value after the op.
        value: Value,
    },
    /// Already durable (a resend); nothing changed.
    Duplicate {
        /// The stream.
        stream: StreamId,
        /// The number it got the first time.
        seq: u64,
    },
    /// Refused; nothing changed. The device rolls the write back.
    Refused {
        /// One of [`code`](crate::code) or a core error code.
        code: String,
        /// Why, for people.
        message: String,
    },
}

/// One op's acknowledgement.
///
/// On the wire its status's fields sit beside `op`, named by `status`:
/// `{"op":…,"status":"applied","stream":…,"seq":3,"value":…}`. Written
/// through `AckOut` (private) and read by hand ([`FromJson`]) rather than
/// as a flattened, internally tagged enum, which serde reads by buffering
/// each ack in a generic tree of content and reading that again: a second
/// deserializer in every build (some 20 KiB of wasm) for the same text.
/// It writes the same bytes, and reads what the enum read, except that a
/// field of another status with the wrong type, a status given as its
/// index, or the fields given as an array, is refused (and a name given
/// twice anywhere, as in all of the protocol's messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The op.
    pub op: OpId,
    /// What became of it.
    pub status: AckStatus,
}

impl AckStatus {
    /// Reads a status from the fields of the object that holds it: every
    /// status's fields are read, whatever the status, so one of another
    /// status with the wrong type is refused; a field missing is named as
    /// the first missing in the order the variant declares them.
    fn from_fields(fields: &mut Fields<'_>) -> Result<Self, Why> {
        #[derive(Clone, Copy)]
        enum Kind {
            Applied,
            Duplicate,
            Refused,
        }
        let status = fields.node("status")?;
        let kind = match status.as_str() {
            Some(name) => variant(
                name,
                &[
                    ("applied", Kind::Applied),
                    ("duplicate", Kind::Duplicate),
                    ("refused", Kind::Refused),
                ],
            )?,
            None => return Err(invalid(&status, "a status")),
        };
        let stream = fields.opt::<StreamId>("stream")?;
        let seq = fields.opt::<u64>("seq")?;
        // Present, `null` included (an applied op's value may be null).
        let value = fields.take("value").map(Node::into_value);
        let code = fields.opt::<String>("code")?;
        let message = fields.opt::<String>("message")?;
        let missing = |field: &str| Err(format!("missing field `{field}`"));
        match kind {
            Kind::Applied | Kind::Duplicate => {
                let (stream, seq) = match (stream, seq) {
                    (Some(stream), Some(seq)) => (stream, seq),
                    (None, _) => return missing("stream"),
                    (Some(_), None) => return missing("seq"),
                };
                match (kind, value) {
                    (Kind::Applied, Some(value)) => Ok(Self::Applied { stream, seq, value }),
                    (Kind::Applied, None) => missing("value"),
                    _ => Ok(Self::Duplicate { stream, seq }),
                }
            }
            Kind::Refused => match (code, message) {
                (Some(code), Some(message)) => Ok(Self::Refused { code, message }),
                (None, _) => missing("code"),
                (Some(_), None) => missing("message"),
            },
        }
    }
}

impl FromJson for AckStatus {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Self::from_fields(&mut Fields::of(node, "an ack status")?)
    }
}

impl FromJson for Ack {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "an ack")?;
        let op = fields.req("op")?;
        let status = AckStatus::from_fields(&mut fields)?;
        Ok(Self { op, status })
    }
}

/// An [`Ack`] as it is written, borrowed: `op`, `status`, then the
/// status's fields in the order they are declared.
#[derive(Serialize)]
struct AckOut<'a> {
    op: &'a OpId,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a StreamId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl Serialize for Ack {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        let mut wire = AckOut {
            op: &self.op,
            status: "",
            stream: None,
            seq: None,
            value: None,
            code: None,
            message: None,
        };
        match &self.status {
            AckStatus::Applied { stream, seq, value } => {
                wire.status = "applied";
                (wire.stream, wire.seq, wire.value) = (Some(stream), Some(*seq), Some(value));
            }
            AckStatus::Duplicate { stream, seq } => {
                wire.status = "duplicate";
                (wire.stream, wire.seq) = (Some(stream), Some(*seq));
            }
            AckStatus::Refused { code, message } => {
                wire.status = "refused";
                (wire.code, wire.message) = (Some(code.as_str()), Some(message.as_str()));
            }
        }
        wire.serialize(out)
    }
}

/// Acknowledgements of a push, one per op, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acks {
    /// The acks.
    pub acks: Vec<Ack>,
}

impl FromJson for Acks {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Ok(Self {
            acks: Fields::of(node, "acks")?.req("acks")?,
        })
    }
}

/// Ops of a stream the device had not seen, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpsBody {
    /// The stream.
    pub stream: StreamId,
    /// The ops (catch-up or live), ascending and without gaps from the
    /// device's cursor.
    pub ops: Vec<Sequenced>,
    /// The stream's newest number on the relay when this was sent.
    pub head: u64,
    /// The last number this message covers, when past its last op: the
    /// ops between are not for this device (its token may not read their
    /// keys), so its cursor moves there too. Without it a device whose
    /// catch-up met only such ops could never move its cursor (and over
    /// HTTP would ask again at once, forever). Relays that predate it
    /// never say it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through: Option<u64>,
    /// The ops this build could not read as it decoded the message, by
    /// number, with why for the first [`UNREADABLE_SAID`] (empty after
    /// them; an op of a kind a newer version writes, say):
    /// not in `ops`. The device takes the others, and keeps its stored
    /// cursor before these, so that a later page (of a version that reads
    /// them) fetches them again. Never sent.
    #[serde(skip)]
    pub unreadable: Vec<(u64, String)>,
}

impl OpsBody {
    /// Ops `ops` of `stream`, whose head is `head`, covering up to
    /// `through` (see the fields).
    pub fn new(stream: StreamId, ops: Vec<Sequenced>, head: u64, through: Option<u64>) -> Self {
        Self {
            stream,
            ops,
            head,
            through,
            unreadable: Vec::new(),
        }
    }
}

impl FromJson for OpsBody {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "ops")?;
        let stream = fields.req("stream")?;
        let (ops, unreadable) = readable_ops(fields.node("ops")?)?;
        Ok(Self {
            stream,
            ops,
            head: fields.req("head")?,
            through: fields.opt("through")?,
            unreadable,
        })
    }
}

/// How many unreadable ops of a message [`OpsBody::unreadable`] says why
/// of.
pub const UNREADABLE_SAID: usize = 3;

/// Decodes a list of ops: those this build reads, and the numbers of
/// those of a kind it does not know (a newer version's), with why. Any
/// other op that does not decode refuses the list (the relay is broken,
/// and a device that passed it would never fetch it again), as does one
/// whose number or kind cannot be read.
#[allow(clippy::type_complexity)]
fn readable_ops(list: Node<'_>) -> Result<(Vec<Sequenced>, Vec<(u64, String)>), Why> {
    let list = items(list)?;
    let (mut ops, mut unreadable) = (Vec::with_capacity(list.len()), Vec::new());
    for item in list {
        // The number of an op of a kind this version does not know.
        let newer = item.field("seq").and_then(Node::as_u64).filter(|_| {
            let kind = item
                .field("op")
                .and_then(|op| op.field("payload"))
                .and_then(|payload| payload.field("kind"))
                .and_then(Node::as_str);
            kind.is_some_and(|kind| !Payload::KINDS.contains(&kind))
        });
        match (Sequenced::from_json(item), newer) {
            (Ok(op), _) => ops.push(op),
            (Err(why), Some(seq)) => {
                // Why is said for the first few only (a hostile message
                // could hold thousands).
                let why = match unreadable.len() < UNREADABLE_SAID {
                    true => preview(&why),
                    false => String::new(),
                };
                unreadable.push((seq, why));
            }
            (Err(why), None) => return Err(why),
        }
    }
    Ok((ops, unreadable))
}

/// The state of a stream, for a device whose cursor is older than the log
/// the relay kept: it merges the states and resumes at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The stream.
    pub stream: StreamId,
    /// The number the states include everything up to.
    pub seq: u64,
    /// One state per key.
    pub states: Vec<SyncEntry>,
    /// Another piece of this snapshot follows: the states of the keys
    /// after this piece's last (a stream's states may take several
    /// messages). A device moves its cursor only once the last piece is
    /// merged, so a socket or page closed between two pieces takes the
    /// snapshot again rather than skip the keys it had not received. Over
    /// HTTP the next piece is asked for with the last key of this one
    /// (`after=` of `/v1/pull`); a relay that predates pieces never says
    /// it (and sends the whole snapshot over a socket).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// The key this piece's states follow (the last of the piece before,
    /// or the `after` the device asked with); absent for a piece that
    /// starts at the stream's first key. A device tells by it an answer to
    /// an older request from the next piece of the snapshot it is taking;
    /// a relay that predates it never says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<FullKey>,
    /// The states this build left out as it decoded the piece, by key,
    /// with why: those of a strategy it was built without (see
    /// [`sync_entries_and_left_out`](gaesup_state_core::sync_entries_and_left_out); never in a build with every
    /// strategy), and those of a strategy this version does not know (a
    /// newer one's: see [`newer`](Self::newer)). Never sent.
    #[serde(skip)]
    pub left_out: Vec<(FullKey, gaesup_state_core::Error)>,
    /// Some of [`left_out`](Self::left_out) are of a strategy this version
    /// does not know (a newer version wrote them): the device keeps its
    /// stored cursor at the stream's start, so the next page of an
    /// updated app takes the stream again. (States of a strategy it was
    /// built without are not fetched again: no page of this app takes
    /// them.) Never sent.
    #[serde(skip)]
    pub newer: bool,
    /// Where this piece stands among those the device took, as the link
    /// read it ([`Link`](crate::Link) sets it as it takes the piece).
    /// Never sent.
    #[serde(skip)]
    pub piece: PieceOf,
}

/// Where a piece of a snapshot stands among the pieces a device took of
/// its stream (see [`Snapshot::piece`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PieceOf {
    /// The first piece of a run (or a snapshot in one piece).
    #[default]
    Start,
    /// The next piece of the run under way.
    Next,
    /// An answer to an older request: merged like any canonical state,
    /// but not part of the run (it moves no cursor).
    Stale,
}

impl FromJson for Snapshot {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "a snapshot")?;
        let stream = fields.req("stream")?;
        let seq = fields.req("seq")?;
        let states = snapshot_states(fields.node("states")?)?;
        Ok(Self {
            stream,
            seq,
            states: states.kept,
            more: fields.or_default("more")?,
            after: fields.opt("after")?,
            left_out: states.left_out,
            newer: states.newer,
            piece: PieceOf::Start,
        })
    }
}

/// A snapshot's states as [`snapshot_states`] decodes them.
struct SnapshotStates {
    kept: Vec<SyncEntry>,
    left_out: Vec<(FullKey, gaesup_state_core::Error)>,
    newer: bool,
}

/// Decodes a snapshot's states one by one, leaving out those of a
/// strategy this build does not have: one it was built without (as
/// [`sync_entries_and_left_out`](gaesup_state_core::sync_entries_and_left_out)
/// does) or one this version does not know
/// (`newer`). Any other state that does not decode refuses the list: the
/// relay is broken, and nothing says which key it held.
fn snapshot_states(list: Node<'_>) -> Result<SnapshotStates, Why> {
    let list = items(list)?;
    let mut states = SnapshotStates {
        kept: Vec::with_capacity(list.len()),
        left_out: Vec::new(),
        newer: false,
    };
    for item in list {
        // Why this build has no strategy of the name the state gives, and
        // whether it is one no version it knows has.
        let absent = item
            .field("state")
            .and_then(|state| state.field("strategy"))
            .and_then(Node::as_str)
            .and_then(|name| {
                let reason = Strategy::from_name(name).err()?;
                Some((reason, !Strategy::is_known(name)))
            });
        let Some((reason, unknown)) = absent else {
            states.kept.push(SyncEntry::from_json(item)?);
            continue;
        };
        let key = Fields::of(item, "a key state")?.req("key")?;
        states.newer |= unknown;
        states.left_out.push((
            key,
            gaesup_state_core::Error::Malformed {
                what: "key state",
                reason,
            },
        ));
    }
    Ok(states)
}

impl Snapshot {
    /// The key of this piece's last state as the relay sent it, whether
    /// this build kept or left it out: where the next piece starts. (The
    /// greater of the last kept and the last left out: a relay sends a
    /// piece's states in key order.)
    pub fn last_key(&self) -> Option<&FullKey> {
        let kept = self.states.last().map(|entry| &entry.key);
        let left = self.left_out.last().map(|(key, _)| key);
        kept.max(left)
    }

    /// The key of this piece's first state as the relay sent it, kept or
    /// left out (the lesser of the two firsts).
    pub fn first_key(&self) -> Option<&FullKey> {
        let kept = self.states.first().map(|entry| &entry.key);
        let left = self.left_out.first().map(|(key, _)| key);
        match (kept, left) {
            (Some(kept), Some(left)) => Some(kept.min(left)),
            (kept, left) => kept.or(left),
        }
    }

    /// What a browser's tabs take of this snapshot, in groups that each
    /// fit one sync message ([`MAX_SYNC_STATES`] states, [`MAX_MESSAGE_BYTES`]
    /// with room for the envelope), and the states left out with why.
    ///
    /// Every tab refuses a sync message whole when one of its states fails
    /// [`KeyState::validate`], when it lists too many states or when it is
    /// too long, and the browser's cursor moves past the snapshot all the
    /// same. So a state this version refuses (from a relay or device of
    /// another version, or a hostile peer) is left out rather than costing
    /// every other state, and a relay that sends more states in one frame
    /// than a tab takes at once (one older than this limit, or hostile)
    /// gets them passed on in pieces. The states this build left out as it
    /// decoded the piece ([`left_out`](Self::left_out)) come first among
    /// those refused.
    ///
    /// [`KeyState::validate`]: gaesup_state_core::KeyState::validate
    pub fn into_tab_groups(
        self,
    ) -> (
        Vec<Vec<SyncEntry>>,
        Vec<(FullKey, gaesup_state_core::Error)>,
    ) {
        // Room for the envelope around the states (sender, type).
        let budget = MAX_MESSAGE_BYTES - 1024;
        let mut refused = self.left_out;
        let mut sized = Vec::with_capacity(self.states.len());
        for entry in self.states {
            if let Err(err) = entry.state.validate() {
                refused.push((entry.key, err));
                continue;
            }
            let len = encoded_len(&entry, budget);
            if len > budget {
                refused.push((
                    entry.key,
                    gaesup_state_core::Error::TooLarge {
                        what: "snapshot state",
                        size: len,
                        limit: budget,
                    },
                ));
                continue;
            }
            sized.push((entry, len));
        }
        (split_by_len(sized, budget, MAX_SYNC_STATES), refused)
    }
}

/// An error about the connection or a message as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// One of [`code`](crate::code).
    pub code: String,
    /// Why, for people.
    pub message: String,
}

impl FromJson for ErrorBody {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "an error")?;
        Ok(Self {
            code: fields.req("code")?,
            message: fields.req("message")?,
        })
    }
}

deserialize_through_tree!(
    Hello, Push, Ping, Welcome, Limits, AckStatus, Ack, Acks, OpsBody, Snapshot, ErrorBody
);

/// Device → relay.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Push`].
    Push(Push),
    /// A heartbeat.
    Ping(Ping),
    /// The answer to the relay's ping.
    Pong(Ping),
}

/// Relay → device.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Acks`].
    Ack(Acks),
    /// See [`OpsBody`].
    Ops(OpsBody),
    /// See [`Snapshot`].
    Snapshot(Snapshot),
    /// See [`ErrorBody`].
    Error(ErrorBody),
    /// A heartbeat.
    Ping(Ping),
    /// The answer to the device's ping.
    Pong(Ping),
}

#[derive(Serialize)]
struct Out<'a, B: Serialize> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'a str,
    body: &'a B,
}

fn encode<B: Serialize>(kind: &str, body: &B) -> Result<String, ProtocolError> {
    let text = gaesup_state_core::to_text(&Out {
        v: PROTOCOL_VERSION,
        kind,
        body,
    })
    .map_err(|err| ProtocolError::new(code::MALFORMED, err.to_string()))?;
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::new(
            code::FRAME_TOO_LARGE,
            format!("{} bytes, over {MAX_MESSAGE_BYTES}", text.len()),
        ));
    }
    Ok(text)
}

/// Size, depth and envelope checks; the message's type and its body,
/// parsed (the whole text is parsed once, into a tree its readers take
/// apart: see [`gaesup_state_core::decode`]).
fn open(text: &str, max_bytes: usize) -> Result<(String, Node<'_>), ProtocolError> {
    if text.len() > max_bytes {
        return Err(ProtocolError::new(
            code::FRAME_TOO_LARGE,
            format!("{} bytes, over the {max_bytes}-byte limit", text.len()),
        ));
    }
    let malformed = |why: String| ProtocolError::new(code::MALFORMED, preview(&why));
    let unsupported = |version: Option<u32>| {
        ProtocolError::new(
            code::UNSUPPORTED_VERSION,
            format!("protocol version {version:?}; this relay speaks {PROTOCOL_VERSION}"),
        )
    };
    // Size first, then one parse that stops at the depth limit.
    let tree = match parse_tree_bounded(text, max_bytes, "message") {
        Ok(tree) => tree,
        Err(err) => {
            // Another version's text is said to be one, whatever else is
            // wrong with it (this version's reading of its names, say).
            return Err(match Envelope::sniff(text, max_bytes) {
                Some(envelope) if envelope.version != Some(PROTOCOL_VERSION) => {
                    unsupported(envelope.version)
                }
                _ => ProtocolError::new(code::MALFORMED, err.to_string()),
            });
        }
    };
    let mut envelope = Fields::of(tree, "a message").map_err(malformed)?;
    match envelope.opt::<u32>("v").map_err(malformed)? {
        Some(PROTOCOL_VERSION) => {}
        other => return Err(unsupported(other)),
    }
    let kind = envelope.opt::<String>("type").map_err(malformed)?;
    let body = envelope
        .take("body")
        .filter(|body| *body != Node::Scalar(Value::Null));
    match (kind, body) {
        (Some(kind), Some(body)) => Ok((kind, body)),
        _ => Err(ProtocolError::new(
            code::MALFORMED,
            "a message needs \"type\" and \"body\"",
        )),
    }
}

/// A message's envelope read leniently, for a text that did not parse
/// whole: its version, its type and whether it has a body, every other
/// field skipped unread (a name given twice in the body, say, or a string
/// that is no text, is not seen). `None` where even that does not read.
struct Envelope {
    version: Option<u32>,
    kind: Option<String>,
    body: bool,
}

impl Envelope {
    /// The envelope of `text` (checked for size and depth first): its
    /// `v` and `type` read, whether it has a `body` (not `null`), each
    /// given at most once, and every other field skipped by its syntax
    /// alone.
    fn sniff(text: &str, max_bytes: usize) -> Option<Self> {
        let fields = gaesup_state_core::decode::skim_bounded(
            text,
            max_bytes,
            "message",
            &["v", "type"],
            &["body"],
        )
        .ok()?;
        let mut envelope = Envelope {
            version: None,
            kind: None,
            body: false,
        };
        let mut seen = [false; 3];
        for (name, value) in fields {
            let at = match name.as_ref() {
                "v" => 0,
                "type" => 1,
                _ => 2,
            };
            if std::mem::replace(&mut seen[at], true) {
                return None;
            }
            match (at, value) {
                (0, Skimmed::Read(node)) => envelope.version = FromJson::from_json(node).ok()?,
                (1, Skimmed::Read(node)) => envelope.kind = FromJson::from_json(node).ok()?,
                (2, Skimmed::Null) => {}
                (2, Skimmed::Skipped) => envelope.body = true,
                _ => return None,
            }
        }
        Some(envelope)
    }
}

fn body<T: FromJson>(node: Node<'_>) -> Result<T, ProtocolError> {
    T::from_json(node).map_err(|why| ProtocolError::new(code::MALFORMED, preview(&why)))
}

impl ClientMessage {
    /// The message as text.
    pub fn encode(&self) -> Result<String, ProtocolError> {
        match self {
            Self::Hello(hello) => encode("hello", hello),
            Self::Push(push) => encode("push", push),
            Self::Ping(ping) => encode("ping", ping),
            Self::Pong(pong) => encode("pong", pong),
        }
    }

    /// Decodes untrusted text: size, depth, version, shape, and the
    /// structural rules of every op (see [`Op::validate`]).
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        Self::decode_bounded(text, MAX_MESSAGE_BYTES)
    }

    /// [`decode`](Self::decode) with a size limit of the relay's choosing.
    pub fn decode_bounded(text: &str, max_bytes: usize) -> Result<Self, ProtocolError> {
        let (kind, raw) = open(text, max_bytes)?;
        let message = match kind.as_str() {
            "hello" => Self::Hello(body(raw)?),
            "push" => Self::Push(body(raw)?),
            "ping" => Self::Ping(body(raw)?),
            "pong" => Self::Pong(body(raw)?),
            other => {
                return Err(ProtocolError::new(
                    code::MALFORMED,
                    format!("unknown message type {:?}", preview(other)),
                ));
            }
        };
        message.validate()?;
        Ok(message)
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Self::Hello(hello) => {
                if hello.client.is_empty() || hello.client.len() > MAX_CLIENT_BYTES {
                    return Err(ProtocolError::new(
                        code::MALFORMED,
                        format!("a client name has 1 to {MAX_CLIENT_BYTES} bytes"),
                    ));
                }
                if hello.subscribe.len() > 64 {
                    return Err(ProtocolError::new(
                        code::MALFORMED,
                        "at most 64 subscriptions",
                    ));
                }
                Ok(())
            }
            Self::Push(push) => push.ops.iter().try_for_each(|op| {
                op.validate()
                    .map_err(|err| ProtocolError::new(code::MALFORMED, err.to_string()))
            }),
            Self::Ping(_) | Self::Pong(_) => Ok(()),
        }
    }
}

impl ServerMessage {
    /// The message as text.
    pub fn encode(&self) -> Result<String, ProtocolError> {
        match self {
            Self::Welcome(body) => encode("welcome", body),
            Self::Ack(body) => encode("ack", body),
            Self::Ops(body) => encode("ops", body),
            Self::Snapshot(body) => encode("snapshot", body),
            Self::Error(body) => encode("error", body),
            Self::Ping(body) => encode("ping", body),
            Self::Pong(body) => encode("pong", body),
        }
    }

    /// Decodes untrusted text from a relay. An ops message with an op
    /// this version cannot read, or a snapshot with a state of a strategy
    /// it does not know, is refused whole (see
    /// [`decode_partial`](Self::decode_partial)).
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        let message = Self::decode_partial(text)?;
        let unread = match &message {
            ServerMessage::Ops(body) => body
                .unreadable
                .first()
                .map(|(seq, why)| format!("op {seq} cannot be read: {why}")),
            ServerMessage::Snapshot(snapshot) if snapshot.newer => snapshot
                .left_out
                .first()
                .map(|(key, err)| format!("the state of {key} cannot be read: {err}")),
            _ => None,
        };
        match unread {
            Some(why) => Err(ProtocolError::new(code::MALFORMED, why)),
            None => Ok(message),
        }
    }

    /// [`decode`](Self::decode), but an ops message with ops this version
    /// cannot read keeps the others and says which in
    /// [`OpsBody::unreadable`], and a snapshot with states of a strategy
    /// it does not know keeps the others and says which in
    /// [`Snapshot::left_out`] ([`Snapshot::newer`]): what a device takes,
    /// going on with the rest (see [`Link`](crate::Link)).
    pub fn decode_partial(text: &str) -> Result<Self, ProtocolError> {
        let (kind, raw) = open(text, MAX_MESSAGE_BYTES)?;
        Ok(match kind.as_str() {
            "welcome" => Self::Welcome(body(raw)?),
            "ack" => Self::Ack(body(raw)?),
            "ops" => Self::Ops(body(raw)?),
            "snapshot" => Self::Snapshot(body(raw)?),
            "error" => Self::Error(body(raw)?),
            "ping" => Self::Ping(body(raw)?),
            "pong" => Self::Pong(body(raw)?),
            other => {
                return Err(ProtocolError::new(
                    code::MALFORMED,
                    format!("unknown message type {:?}", preview(other)),
                ));
            }
        })
    }

    /// Whether `text`, which [`decode_partial`](Self::decode_partial)
    /// refused, may have
    /// carried ops or a snapshot: its type says so, or its envelope cannot
    /// be read far enough to tell (not JSON, too large, too deep, another
    /// protocol version). A message of a type this build does not know
    /// (from a newer relay) is not counted: nothing of what a device
    /// follows comes in one. Nor is one whose envelope reads when its
    /// whole does not (a pong that names a field twice, say): its type
    /// is read apart from the rest.
    pub fn may_carry_state(text: &str) -> bool {
        // The envelope alone: it reads wherever the whole does, and
        // where the whole does not, it may still.
        match Envelope::sniff(text, MAX_MESSAGE_BYTES) {
            Some(Envelope {
                version: Some(PROTOCOL_VERSION),
                kind: Some(kind),
                body: true,
            }) => matches!(kind.as_str(), "ops" | "snapshot"),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_shapes_get_specific_codes() {
        let cases = [
            ("not json", code::MALFORMED),
            (
                r#"{"type":"ping","body":{"at":1}}"#,
                code::UNSUPPORTED_VERSION,
            ),
            (
                r#"{"v":2,"type":"ping","body":{"at":1}}"#,
                code::UNSUPPORTED_VERSION,
            ),
            // Another version's, whatever else this version reads wrong
            // in it.
            (
                r#"{"v":2,"type":"x","body":{"a":1,"a":2}}"#,
                code::UNSUPPORTED_VERSION,
            ),
            (
                r#"{"v":1,"type":"ping","body":{"at":1,"a":1,"a":2}}"#,
                code::MALFORMED,
            ),
            (r#"{"v":1,"type":"nope","body":{}}"#, code::MALFORMED),
            (r#"{"v":1,"type":"ping"}"#, code::MALFORMED),
            (
                r#"{"v":1,"type":"hello","body":{"client":""}}"#,
                code::MALFORMED,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                ClientMessage::decode(text).unwrap_err().code,
                expected,
                "{text}"
            );
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            ClientMessage::decode(&deep).unwrap_err().code,
            code::MALFORMED
        );
        let huge = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            ClientMessage::decode(&huge).unwrap_err().code,
            code::FRAME_TOO_LARGE
        );
    }

    /// The ack as serde derives it (a flattened, internally tagged
    /// enum): the oracle [`Ack`]'s hand-written reading and writing must
    /// match.
    mod derived {
        use super::*;
        use serde::Deserialize;

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct Ack {
            pub op: OpId,
            #[serde(flatten)]
            pub status: Status,
        }

        /// [`AckStatus`] as serde derives it.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "status", rename_all = "snake_case")]
        pub enum Status {
            Applied {
                stream: StreamId,
                seq: u64,
                value: Value,
            },
            Duplicate {
                stream: StreamId,
                seq: u64,
            },
            Refused {
                code: String,
                message: String,
            },
        }

        impl Status {
            pub fn of(status: &AckStatus) -> Self {
                match status.clone() {
                    AckStatus::Applied { stream, seq, value } => {
                        Self::Applied { stream, seq, value }
                    }
                    AckStatus::Duplicate { stream, seq } => Self::Duplicate { stream, seq },
                    AckStatus::Refused { code, message } => Self::Refused { code, message },
                }
            }
        }
    }

    #[test]
    fn acks_read_and_write_as_serde_derives_them() {
        let op = OpId {
            tab: gaesup_state_core::TabId::new(3),
            seq: 9,
        };
        let statuses = [
            AckStatus::Applied {
                stream: StreamId::Global,
                seq: 7,
                value: serde_json::json!({"a": [1, null], "b": "x"}),
            },
            AckStatus::Applied {
                stream: "apartment:main".parse().unwrap(),
                seq: 0,
                value: Value::Null,
            },
            AckStatus::Duplicate {
                stream: StreamId::Global,
                seq: u64::MAX,
            },
            AckStatus::Refused {
                code: code::STALE.to_owned(),
                message: "too \"old\"".to_owned(),
            },
        ];
        for status in statuses {
            let ours = Ack { op, status };
            let theirs = derived::Ack {
                op,
                status: derived::Status::of(&ours.status),
            };
            let text = serde_json::to_string(&ours).unwrap();
            assert_eq!(text, serde_json::to_string(&theirs).unwrap());
            assert_eq!(serde_json::from_str::<Ack>(&text).unwrap(), ours);
        }
        let id = format!(r#""op":{}"#, serde_json::to_string(&op).unwrap());
        let texts = [
            // Any order, extra fields, a null value.
            format!(r#"{{"status":"applied","seq":1,{id},"value":null,"stream":"global"}}"#),
            format!(r#"{{{id},"status":"duplicate","stream":"global","seq":1,"later":[1]}}"#),
            format!(r#"{{{id},"status":"refused","code":"stale","message":"m","seq":2}}"#),
            // Missing fields, each status.
            format!(r#"{{{id},"status":"applied","stream":"global","seq":1}}"#),
            format!(r#"{{{id},"status":"applied","seq":1,"value":1}}"#),
            format!(r#"{{{id},"status":"applied","stream":"global","value":1}}"#),
            format!(r#"{{{id},"status":"duplicate","stream":"global"}}"#),
            format!(r#"{{{id},"status":"duplicate","seq":2}}"#),
            format!(r#"{{{id},"status":"refused","code":"stale"}}"#),
            format!(r#"{{{id},"status":"refused","message":"m"}}"#),
            format!(r#"{{{id}}}"#),
            r#"{"status":"duplicate","stream":"global","seq":1}"#.to_owned(),
            r#"{"op":"3-x","status":"duplicate","stream":"global","seq":1}"#.to_owned(),
            // Wrong status, wrong types.
            format!(r#"{{{id},"status":"done","stream":"global","seq":1}}"#),
            format!(r#"{{{id},"status":7}}"#),
            format!(r#"{{{id},"status":"duplicate","stream":"global","seq":-1}}"#),
            format!(r#"{{{id},"status":"refused","code":1,"message":"m"}}"#),
            format!(r#"{{{id},"status":"applied","stream":"nowhere","seq":1,"value":1}}"#),
            r#"[1,2]"#.to_owned(),
        ];
        for text in &texts {
            let ours = serde_json::from_str::<Ack>(text);
            let theirs = serde_json::from_str::<derived::Ack>(text);
            match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(
                        (ours.op, &derived::Status::of(&ours.status)),
                        (theirs.op, &theirs.status),
                        "{text}"
                    );
                }
                (Err(ours), Err(theirs)) => {
                    // The same missing field named, where one is.
                    let missing = |err: &serde_json::Error| {
                        let err = err.to_string();
                        err.find("missing field")
                            .map(|at| err[at..].split('`').nth(1).map(str::to_owned))
                    };
                    assert_eq!(missing(ours), missing(theirs), "{text}: {ours} / {theirs}");
                }
                _ => panic!("{text}: {ours:?} / {theirs:?}"),
            }
        }
    }

    #[test]
    fn acks_differ_from_serde_derived_enum_only_where_documented() {
        let op = serde_json::to_string(&OpId {
            tab: gaesup_state_core::TabId::new(3),
            seq: 9,
        })
        .unwrap();
        // Refused where the enum took them: every status's fields are read
        // whatever the status (a wrong type, or a field given twice), and
        // a status is its name, never its index.
        for (text, error) in [
            (
                format!(r#"{{"op":{op},"status":"refused","code":"c","message":"m","seq":"x"}}"#),
                "invalid type",
            ),
            (
                format!(r#"{{"op":{op},"status":"duplicate","stream":"global","seq":1,"code":5}}"#),
                "invalid type",
            ),
            (
                format!(
                    r#"{{"op":{op},"status":"refused","code":"c","message":"m","seq":1,"seq":2}}"#
                ),
                "duplicate field `seq`",
            ),
            (
                format!(r#"{{"op":{op},"status":1,"stream":"global","seq":5}}"#),
                "invalid type: integer `1`, expected a status",
            ),
        ] {
            assert!(
                serde_json::from_str::<derived::Ack>(&text).is_ok(),
                "{text}"
            );
            let err = serde_json::from_str::<Ack>(&text).unwrap_err().to_string();
            assert!(err.starts_with(error), "{text}: {err}");
        }
        // The fields as an array are refused, as the enum refused them
        // (and as every type of the protocol and the core refuses them).
        let array = format!(r#"[{op},"duplicate","global",5,null,null,null]"#);
        assert!(serde_json::from_str::<derived::Ack>(&array).is_err());
        let err = serde_json::from_str::<Ack>(&array).unwrap_err().to_string();
        assert!(err.starts_with("invalid type: sequence"), "{err}");
    }

    /// Every message, each optional field given, reads back as it was
    /// written.
    #[test]
    fn every_message_reads_back_with_every_field() {
        use gaesup_state_core::{Lifetime, ManualClock, Message, Replica, Scope, SharedKey, TabId};
        let mut replica = Replica::new(TabId::new(1), ManualClock::new(1_700_000_000_000));
        let key = SharedKey::<i64>::builder("n")
            .scope(Scope::Apartment)
            .lifetime(Lifetime::Persistent)
            .build()
            .unwrap();
        replica.declare(&key).unwrap();
        let op = replica
            .set(&"main/b/u".parse().unwrap(), &key, 4)
            .unwrap()
            .op;
        let stream: StreamId = "apartment:main".parse().unwrap();
        let after: FullKey = "apartment/main/n".parse().unwrap();
        let states: Vec<SyncEntry> = replica
            .sync_messages()
            .into_iter()
            .flat_map(|message| match message {
                Message::SyncState { states, .. } => states,
                _ => Vec::new(),
            })
            .collect();
        assert!(!states.is_empty());
        let clients = [
            ClientMessage::Hello(Hello {
                client: "device-1".into(),
                token: Some("t".into()),
                subscribe: vec![
                    Subscription {
                        stream: stream.clone(),
                        cursor: Some(3),
                        after: Some(after.clone()),
                    },
                    Subscription {
                        stream: StreamId::Global,
                        cursor: None,
                        after: None,
                    },
                ],
            }),
            ClientMessage::Push(Push {
                ops: vec![op.clone()],
            }),
            ClientMessage::Ping(Ping { at: 7 }),
            ClientMessage::Pong(Ping { at: 8 }),
        ];
        for message in clients {
            let text = message.encode().unwrap();
            assert_eq!(ClientMessage::decode(&text).unwrap(), message, "{text}");
        }
        let servers = [
            ServerMessage::Welcome(Welcome {
                node: "n1".into(),
                heartbeat_ms: 15_000,
                limits: Limits {
                    max_frame_bytes: 1 << 20,
                    max_ops_per_push: 100,
                    max_ops_per_second: 50,
                },
            }),
            ServerMessage::Ops(OpsBody::new(
                stream.clone(),
                vec![Sequenced { seq: 4, op }],
                9,
                Some(6),
            )),
            ServerMessage::Snapshot(Snapshot {
                stream: stream.clone(),
                seq: 9,
                states,
                more: true,
                after: Some(after),
                left_out: Vec::new(),
                newer: false,
                piece: PieceOf::Start,
            }),
            ServerMessage::Error(ErrorBody {
                code: code::FORBIDDEN.into(),
                message: "no".into(),
            }),
            ServerMessage::Ping(Ping { at: 1 }),
            ServerMessage::Pong(Ping { at: 2 }),
        ];
        for message in servers {
            let text = message.encode().unwrap();
            assert_eq!(ServerMessage::decode(&text).unwrap(), message, "{text}");
        }
    }

    /// The protocol's types as serde derived their readers before they
    /// were read from the tree: the oracle of what the hand-written
    /// readers take and refuse, field by field. Streams and keys are read
    /// from their text as `try_from = "String"` read them; the core's
    /// types inside (an op, a key state) are the core's own readers,
    /// tested in the core against serde's, and the ops and states a newer
    /// version writes, which the protocol sets aside, are tested in the
    /// link's tests, not here.
    mod old {
        use super::*;
        use serde::Deserialize;

        /// A type read from its text and written as it.
        pub struct Parsed<T>(T);

        impl<'de, T: std::str::FromStr<Err: fmt::Display>> Deserialize<'de> for Parsed<T> {
            fn deserialize<D: serde::Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
                let text = String::deserialize(input)?;
                text.parse().map(Parsed).map_err(serde::de::Error::custom)
            }
        }

        impl<T: fmt::Display> Serialize for Parsed<T> {
            fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
                out.collect_str(&self.0)
            }
        }

        #[derive(Serialize, Deserialize)]
        pub struct Hello {
            pub client: String,
            #[serde(default)]
            pub token: Option<String>,
            #[serde(default)]
            pub subscribe: Vec<Subscription>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Subscription {
            pub stream: Parsed<StreamId>,
            #[serde(default)]
            pub cursor: Option<u64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub after: Option<Parsed<FullKey>>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Push {
            pub ops: Vec<Op>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Welcome {
            pub node: String,
            pub heartbeat_ms: u64,
            pub limits: Limits,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Limits {
            pub max_frame_bytes: usize,
            pub max_ops_per_push: usize,
            pub max_ops_per_second: u32,
        }

        #[derive(Serialize, Deserialize)]
        pub struct OpsBody {
            pub stream: Parsed<StreamId>,
            pub ops: Vec<Sequenced>,
            pub head: u64,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub through: Option<u64>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Sequenced {
            pub seq: u64,
            pub op: Op,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Snapshot {
            pub stream: Parsed<StreamId>,
            pub seq: u64,
            pub states: Vec<SyncEntry>,
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub more: bool,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub after: Option<Parsed<FullKey>>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct ErrorBody {
            pub code: String,
            pub message: String,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Ping {
            pub at: u64,
        }
    }

    /// Reads `text` as ours and as [`old`]'s: both refuse it, or both
    /// take it and write it back alike.
    fn read_as_before<Ours, Theirs>(text: &str)
    where
        Ours: FromJson + Serialize,
        Theirs: serde::de::DeserializeOwned + Serialize,
    {
        let ours = gaesup_state_core::decode::read_bounded::<Ours>(text, 1 << 20, "body")
            .map(|read| serde_json::to_value(read).unwrap());
        let theirs =
            serde_json::from_str::<Theirs>(text).map(|read| serde_json::to_value(read).unwrap());
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{text}"),
            (Err(_), Err(_)) => {}
            (ours, theirs) => panic!("{text}: ours {ours:?}, before {theirs:?}"),
        }
    }

    /// Each body reads as serde's derive read it: fields absent, `null`,
    /// of the wrong type or unknown, each in turn.
    #[test]
    fn bodies_read_as_serde_derived_them() {
        let op = {
            use gaesup_state_core::{ManualClock, Replica, SharedKey, TabId};
            let mut replica = Replica::new(TabId::new(1), ManualClock::new(1_700_000_000_000));
            let key = SharedKey::<i64>::builder("n").build().unwrap();
            replica.declare(&key).unwrap();
            let op = replica
                .set(&"main/b/u".parse().unwrap(), &key, 4)
                .unwrap()
                .op;
            serde_json::to_string(&op).unwrap()
        };
        for text in [
            r#"{"client":"c"}"#,
            r#"{"client":"c","token":null,"subscribe":[],"later":{"x":1}}"#,
            r#"{"client":"c","token":"t","subscribe":null}"#,
            r#"{"client":"c","token":5}"#,
            r#"{"client":1}"#,
            r#"{"token":"t"}"#,
            r#"{"client":"c","subscribe":[{"stream":"global"}]}"#,
            r#"{"client":"c","subscribe":[{"stream":"global","cursor":null,"after":null}]}"#,
            r#"{"client":"c","subscribe":[{"stream":"apartment:main","cursor":3,"after":"apartment/main/k"}]}"#,
            r#"{"client":"c","subscribe":[{"stream":"nowhere"}]}"#,
            r#"{"client":"c","subscribe":[{"stream":"global","cursor":-1}]}"#,
            r#"{"client":"c","subscribe":[{"stream":"global","after":"x"}]}"#,
            r#"{"client":"c","subscribe":[{"cursor":1}]}"#,
            r#"{"client":"c","subscribe":{}}"#,
            "null",
        ] {
            read_as_before::<Hello, old::Hello>(text);
        }
        for text in [
            format!(r#"{{"ops":[{op}]}}"#),
            format!(r#"{{"ops":[{op}],"x":null}}"#),
            r#"{"ops":[]}"#.to_owned(),
            r#"{"ops":null}"#.to_owned(),
            r#"{}"#.to_owned(),
            r#"{"ops":[{}]}"#.to_owned(),
        ] {
            read_as_before::<Push, old::Push>(&text);
        }
        let limits =
            r#"{"max_frame_bytes":1048576,"max_ops_per_push":100,"max_ops_per_second":50}"#;
        for text in [
            format!(r#"{{"node":"n","heartbeat_ms":5,"limits":{limits}}}"#),
            format!(r#"{{"node":"n","heartbeat_ms":5,"limits":{limits},"x":[]}}"#),
            r#"{"node":"n","heartbeat_ms":5}"#.to_owned(),
            r#"{"node":"n","heartbeat_ms":5,"limits":null}"#.to_owned(),
            r#"{"node":"n","heartbeat_ms":5,"limits":{"max_frame_bytes":-1,"max_ops_per_push":1,"max_ops_per_second":1}}"#.to_owned(),
            r#"{"node":"n","heartbeat_ms":5,"limits":{"max_frame_bytes":1,"max_ops_per_push":1,"max_ops_per_second":4294967296}}"#.to_owned(),
            r#"{"node":"n","heartbeat_ms":5,"limits":{"max_frame_bytes":1,"max_ops_per_push":1}}"#.to_owned(),
            format!(r#"{{"node":null,"heartbeat_ms":5,"limits":{limits}}}"#),
            format!(r#"{{"node":"n","heartbeat_ms":1.5,"limits":{limits}}}"#),
        ] {
            read_as_before::<Welcome, old::Welcome>(&text);
        }
        for text in [
            r#"{"stream":"global","ops":[],"head":0}"#.to_owned(),
            r#"{"stream":"global","ops":[],"head":0,"through":null}"#.to_owned(),
            r#"{"stream":"global","ops":[],"head":9,"through":7,"x":1}"#.to_owned(),
            format!(r#"{{"stream":"global","ops":[{{"seq":4,"op":{op}}}],"head":4}}"#),
            format!(r#"{{"stream":"global","ops":[{{"seq":-4,"op":{op}}}],"head":4}}"#),
            format!(r#"{{"stream":"global","ops":[{{"op":{op}}}],"head":4}}"#),
            r#"{"stream":"global","ops":[{"seq":1,"op":{}}],"head":1}"#.to_owned(),
            r#"{"stream":"global","ops":null,"head":0}"#.to_owned(),
            r#"{"stream":"global","head":0}"#.to_owned(),
            r#"{"stream":"global","ops":[]}"#.to_owned(),
            r#"{"stream":"global","ops":[],"head":0,"through":"x"}"#.to_owned(),
        ] {
            read_as_before::<OpsBody, old::OpsBody>(&text);
        }
        for text in [
            r#"{"stream":"global","seq":1,"states":[]}"#,
            r#"{"stream":"global","seq":1,"states":[],"more":true,"after":"global/k"}"#,
            r#"{"stream":"global","seq":1,"states":[],"more":false,"after":null,"y":{}}"#,
            r#"{"stream":"global","seq":1,"states":[],"more":null}"#,
            r#"{"stream":"global","seq":1,"states":[],"more":1}"#,
            r#"{"stream":"global","seq":1,"states":[],"after":"nowhere"}"#,
            r#"{"stream":"global","seq":1}"#,
            r#"{"stream":"global","states":[]}"#,
            r#"{"stream":"global","seq":1,"states":{}}"#,
        ] {
            read_as_before::<Snapshot, old::Snapshot>(text);
        }
        for text in [
            r#"{"code":"c","message":"m"}"#,
            r#"{"code":"c","message":"m","x":1}"#,
            r#"{"code":"c"}"#,
            r#"{"code":null,"message":"m"}"#,
        ] {
            read_as_before::<ErrorBody, old::ErrorBody>(text);
        }
        for text in [
            r#"{"at":1}"#,
            r#"{"at":-1}"#,
            r#"{"at":"1"}"#,
            r#"{}"#,
            "[]",
        ] {
            read_as_before::<Ping, old::Ping>(text);
        }
    }

    /// A message is parsed once, whole: a name given twice anywhere in it
    /// is refused (in the envelope, the body, a core type inside), as is
    /// a struct given as an array or a body of `null`; fields this
    /// version does not know are ignored, wherever they are.
    #[test]
    fn a_name_given_twice_anywhere_or_a_struct_as_an_array_is_malformed() {
        for (text, says) in [
            (
                r#"{"v":1,"type":"ping","type":"pong","body":{"at":1}}"#,
                "duplicate field `type`",
            ),
            (
                r#"{"v":1,"type":"ping","body":{"at":1,"at":2}}"#,
                "duplicate field `at`",
            ),
            (
                r#"{"v":1,"type":"hello","body":{"client":"c","subscribe":[{"stream":"global","cursor":1,"cursor":2}]}}"#,
                "duplicate field `cursor`",
            ),
            (
                r#"{"v":1,"type":"ping","body":[1]}"#,
                "invalid type: sequence",
            ),
            (
                r#"{"v":1,"type":"hello","body":["c",null,[]]}"#,
                "invalid type: sequence",
            ),
            (r#"{"v":1,"type":"ping","body":null}"#, "needs \"type\""),
            (r#"{"v":"1","type":"ping","body":{"at":1}}"#, "invalid type"),
            (r#"{"v":1,"type":"ping","body":{}}"#, "missing field `at`"),
            (r#"[1,"ping",{"at":1}]"#, "invalid type: sequence"),
        ] {
            let err = ClientMessage::decode(text).unwrap_err();
            assert_eq!(err.code, code::MALFORMED, "{text}: {err}");
            assert!(err.message.contains(says), "{text}: {err}");
        }
        let text = r#"{"v":1,"type":"hello","body":{"client":"c","later":{"x":[1]},"subscribe":[{"stream":"global","z":1}]},"trace":"t"}"#;
        match ClientMessage::decode(text).unwrap() {
            ClientMessage::Hello(hello) => {
                assert_eq!(hello.subscribe[0].stream, StreamId::Global);
                assert_eq!((hello.token, hello.subscribe[0].cursor), (None, None));
            }
            other => panic!("{other:?}"),
        }
        let twice = r#"{"v":1,"type":"ops","body":{"stream":"global","ops":[],"head":1,"head":2}}"#;
        assert_eq!(
            ServerMessage::decode_partial(twice).unwrap_err().code,
            code::MALFORMED
        );
    }

    /// A device that cannot read a message holds its cursor if the
    /// message may have carried ops or a snapshot: its type says, read
    /// apart from the rest where the rest does not read.
    #[test]
    fn a_message_that_does_not_read_may_carry_state_only_by_its_type() {
        let deep = format!(
            r#"{{"v":1,"type":"pong","body":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let cases = [
            (
                r#"{"v":1,"type":"pong","body":{"at":1,"x":{"a":1,"a":2}}}"#,
                false,
            ),
            (r#"{"v":1,"type":"news","body":{"x":"\ud800"}}"#, false),
            (r#"{"v":1,"type":"ack","body":{"acks":[{"op":1}]}}"#, false),
            (r#"{"v":1,"type":"pong","body":{"at":"x"}}"#, false),
            (
                r#"{"v":1,"type":"ops","body":{"stream":"global","ops":[{"a":1,"a":2}],"head":1}}"#,
                true,
            ),
            (
                r#"{"v":1,"type":"snapshot","body":{"stream":"global"}}"#,
                true,
            ),
            (r#"{"v":2,"type":"pong","body":{"at":1,"a":1,"a":2}}"#, true),
            (
                r#"{"v":1,"type":"pong","type":"pong","body":{"at":1,"a":1,"a":2}}"#,
                true,
            ),
            (r#"{"v":1,"body":{"a":1,"a":2}}"#, true),
            (
                r#"{"v":1,"type":"pong","body":null,"x":{"a":1,"a":2}}"#,
                true,
            ),
            ("not json", true),
            (&deep, true),
        ];
        for (text, may) in cases {
            assert!(ServerMessage::decode_partial(text).is_err(), "{text}");
            assert_eq!(ServerMessage::may_carry_state(text), may, "{text}");
        }
    }

    /// The largest hello a device may say fits what a relay reads before
    /// its hello: 64 subscriptions of the longest ids and keys, each
    /// character one JSON escapes, the longest client name and a 4 KiB
    /// token (the most the browser takes).
    #[test]
    fn the_largest_hello_fits_what_a_relay_reads_before_it() {
        let id = "\"".repeat(gaesup_state_core::MAX_ID_LEN);
        let stream: StreamId = format!("apartment:{id}").parse().unwrap();
        let after: FullKey = format!("private/{id}/{id}/{id}/{id}").parse().unwrap();
        let subscription = Subscription {
            stream,
            cursor: Some(u64::MAX),
            after: Some(after),
        };
        let hello = ClientMessage::Hello(Hello {
            client: "\"".repeat(MAX_CLIENT_BYTES),
            token: Some("t".repeat(4096)),
            subscribe: vec![subscription; 64],
        });
        let text = hello.encode().unwrap();
        assert!(text.len() <= MAX_HELLO_BYTES, "{}", text.len());
        assert_eq!(
            ClientMessage::decode_bounded(&text, MAX_HELLO_BYTES).unwrap(),
            hello
        );
    }

    #[test]
    fn acks_read_back() {
        let acks = ServerMessage::Ack(Acks {
            acks: vec![
                Ack {
                    op: OpId {
                        tab: gaesup_state_core::TabId::new(1),
                        seq: 2,
                    },
                    status: AckStatus::Applied {
                        stream: StreamId::Global,
                        seq: 7,
                        value: Value::from(3),
                    },
                },
                Ack {
                    op: OpId {
                        tab: gaesup_state_core::TabId::new(1),
                        seq: 3,
                    },
                    status: AckStatus::Refused {
                        code: code::FORBIDDEN.into(),
                        message: "no".into(),
                    },
                },
            ],
        });
        let text = acks.encode().unwrap();
        assert_eq!(ServerMessage::decode(&text).unwrap(), acks);
    }

    /// What a snapshot's tabs take: a state this version refuses is left
    /// out, one too large for a message too, and the rest come in groups
    /// that each make a sync message every tab takes.
    #[test]
    fn a_snapshot_goes_to_the_tabs_in_messages_they_take() {
        use gaesup_state_core::{
            Lifetime, ManualClock, Message, Replica, Scope, SharedKey, Strategy, TabId, UnitAddress,
        };
        let mut replica = Replica::new(TabId::new(1), ManualClock::new(1_700_000_000_000));
        let unit: UnitAddress = "main/b/u".parse().unwrap();
        let declared = |name: &str, strategy| {
            SharedKey::<Value>::builder(name)
                .scope(Scope::Apartment)
                .lifetime(Lifetime::Persistent)
                .strategy(strategy)
                .build()
                .unwrap()
        };
        let (good, deep, large) = (
            declared("good", Strategy::LastWriteWins),
            declared("deep", Strategy::LastWriteWins),
            declared("large", Strategy::Merge),
        );
        for key in [&good, &deep, &large] {
            replica.declare(key).unwrap();
            replica
                .set(&unit, key, serde_json::json!({ "a": 1 }))
                .unwrap();
        }
        let states: Vec<SyncEntry> = replica
            .sync_messages()
            .into_iter()
            .flat_map(|message| match message {
                Message::SyncState { states, .. } => states,
                _ => Vec::new(),
            })
            .collect();
        let entry = |name: &str| {
            let found = states.iter().find(|e| e.key.name() == name).unwrap();
            serde_json::to_value(found).unwrap()
        };
        // A value nested past what a value may be (not past what a
        // message may be parsed at): every tab refuses it.
        let mut nested = serde_json::json!(1);
        for _ in 0..70 {
            nested = serde_json::json!([nested]);
        }
        let mut bad = entry("deep");
        bad["state"]["data"]["entry"]["value"] = nested;
        // Five fields of 250 KiB: each a valid value, together more than
        // one message holds.
        let mut big = entry("large");
        let field = big["state"]["data"]["fields"]["a"].clone();
        for name in ["b", "c", "d", "e", "f"] {
            let mut wide = field.clone();
            wide["value"] = Value::String("x".repeat(250 << 10));
            big["state"]["data"]["fields"][name] = wide;
        }
        let parse = |v: Value| serde_json::from_value::<SyncEntry>(v).unwrap();
        let (bad, big) = (parse(bad), parse(big));
        // More small states than one message may list.
        let mut all = vec![parse(entry("good")), bad.clone(), big.clone()];
        let good_entry = parse(entry("good"));
        all.extend(std::iter::repeat_n(good_entry, MAX_SYNC_STATES + 5));
        let whole = Message::SyncState {
            from: TabId::new(2),
            to: None,
            states: all.clone(),
            have: None,
        };
        assert!(whole.encode().is_err() || Message::decode(&whole.encode().unwrap()).is_err());

        let snapshot = Snapshot {
            stream: "apartment:main".parse().unwrap(),
            seq: 9,
            states: all,
            more: false,
            after: None,
            left_out: Vec::new(),
            newer: false,
            piece: PieceOf::Start,
        };
        let (groups, refused) = snapshot.into_tab_groups();
        let left_out: Vec<&FullKey> = refused.iter().map(|(key, _)| key).collect();
        assert_eq!(left_out, [&bad.key, &big.key]);
        assert!(matches!(
            refused[1].1,
            gaesup_state_core::Error::TooLarge { .. }
        ));
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups.iter().map(Vec::len).sum::<usize>(),
            MAX_SYNC_STATES + 6
        );
        for states in groups {
            let message = Message::SyncState {
                from: TabId::new(2),
                to: None,
                states,
                have: None,
            };
            assert!(Message::decode(&message.encode().unwrap()).is_ok());
        }
    }

    #[test]
    fn states_left_out_as_the_snapshot_decoded_are_said_with_those_refused() {
        let (key, other): (FullKey, FullKey) = (
            "apartment/main/doc".parse().unwrap(),
            "apartment/main/pick".parse().unwrap(),
        );
        let reason = |key: &FullKey| {
            (
                key.clone(),
                gaesup_state_core::Error::Malformed {
                    what: "key state",
                    reason: String::from("strategy merge is not in this build"),
                },
            )
        };
        let snapshot = Snapshot {
            stream: "apartment:main".parse().unwrap(),
            seq: 9,
            states: Vec::new(),
            more: true,
            after: None,
            left_out: vec![reason(&key), reason(&other)],
            newer: false,
            piece: PieceOf::Start,
        };
        assert_eq!(snapshot.last_key(), Some(&other));
        let (groups, refused) = snapshot.into_tab_groups();
        assert!(groups.iter().all(Vec::is_empty), "{groups:?}");
        let said: Vec<&FullKey> = refused.iter().map(|(key, _)| key).collect();
        assert_eq!(said, [&key, &other]);
        // Never sent, so never decoded from a relay's text.
        let text = ServerMessage::Snapshot(Snapshot {
            stream: "apartment:main".parse().unwrap(),
            seq: 9,
            states: Vec::new(),
            more: false,
            after: None,
            left_out: vec![reason(&key)],
            newer: false,
            piece: PieceOf::Start,
        })
        .encode()
        .unwrap();
        assert!(!text.contains("left_out"), "{text}");
        match ServerMessage::decode(&text).unwrap() {
            ServerMessage::Snapshot(decoded) => assert!(decoded.left_out.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
