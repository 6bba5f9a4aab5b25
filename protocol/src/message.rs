//! The messages, their envelope and their decoding.

use std::fmt;

use gaesup_state_core::{
    FullKey, MAX_MESSAGE_BYTES, MAX_SYNC_STATES, Op, OpId, Payload, SyncEntry, encoded_len,
    parse_untrusted, preview, split_by_len,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::code;
use crate::stream::{Sequenced, StreamId, Subscription};

/// The relay protocol version this code speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest client name kept, in bytes.
const MAX_CLIENT_BYTES: usize = 128;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Who it is (for logs and metrics): a device id, not a secret.
    pub client: String,
    /// Its token (never in a URL). The HTTP fallback sends it in an
    /// `Authorization: Bearer` header instead.
    #[serde(default)]
    pub token: Option<String>,
    /// The streams it follows, each from its cursor.
    #[serde(default)]
    pub subscribe: Vec<Subscription>,
}

/// Ops a device sends; each is acknowledged on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// The ops, in the order they were made.
    pub ops: Vec<Op>,
}

/// A heartbeat, answered by a pong carrying the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The sender's clock (ms) when it sent the ping.
    pub at: u64,
}

/// What the relay says after a hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The node that answered (several nodes may serve one deployment).
    pub node: String,
    /// How often the relay pings; a socket silent for three times as long
    /// is dead.
    pub heartbeat_ms: u64,
    /// What the relay accepts.
    pub limits: Limits,
}

/// What a relay accepts, so a device can stay within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// The outcome of one pushed op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
/// `{"op":…,"status":"applied","stream":…,"seq":3,"value":…}`. Read and
/// written through `AckIn` and `AckOut` (private) rather than as a flattened,
/// internally tagged enum, which serde reads by buffering each ack in a
/// generic tree of content and reading that again: a second deserializer
/// in every build (some 20 KiB of wasm) for the same text. It writes the
/// same bytes, and reads what the enum read, except that a field of
/// another status with the wrong type or given twice, or a status given
/// as its index, is refused, and the fields as an array (in their order)
/// are taken, as for every other struct the protocol derives (the core's
/// types inside it, such as the op id, are read from objects only).
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The op.
    pub op: OpId,
    /// What became of it.
    pub status: AckStatus,
}

/// An [`Ack`] as it is read: every status's fields, each optional.
#[derive(Deserialize)]
struct AckIn {
    op: OpId,
    status: AckKind,
    stream: Option<StreamId>,
    seq: Option<u64>,
    /// `None` if absent; `Some(Null)` if `null`.
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AckKind {
    Applied,
    Duplicate,
    Refused,
}

fn present<'de, D: serde::Deserializer<'de>>(input: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(input).map(Some)
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

impl<'de> Deserialize<'de> for Ack {
    fn deserialize<D: serde::Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let AckIn {
            op,
            status,
            stream,
            seq,
            value,
            code,
            message,
        } = AckIn::deserialize(input)?;
        let given = |field: &'static str, found: bool| match found {
            true => Ok(()),
            false => Err(D::Error::missing_field(field)),
        };
        let status = match (status, stream, seq, value, code, message) {
            (AckKind::Applied, Some(stream), Some(seq), Some(value), _, _) => {
                AckStatus::Applied { stream, seq, value }
            }
            (AckKind::Duplicate, Some(stream), Some(seq), _, _, _) => {
                AckStatus::Duplicate { stream, seq }
            }
            (AckKind::Refused, _, _, _, Some(code), Some(message)) => {
                AckStatus::Refused { code, message }
            }
            // Named as the first field missing, in the order declared.
            (AckKind::Applied | AckKind::Duplicate, stream, seq, _, _, _) => {
                given("stream", stream.is_some())?;
                given("seq", seq.is_some())?;
                return Err(D::Error::missing_field("value"));
            }
            (AckKind::Refused, _, _, _, code, _) => {
                given("code", code.is_some())?;
                return Err(D::Error::missing_field("message"));
            }
        };
        Ok(Self { op, status })
    }
}

/// Acknowledgements of a push, one per op, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acks {
    /// The acks.
    pub acks: Vec<Ack>,
}

/// Ops of a stream the device had not seen, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "OpsWire")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// [`OpsBody`] as it is decoded: its ops one by one where the list does
/// not decode whole.
#[derive(Deserialize)]
struct OpsWire {
    stream: StreamId,
    #[serde(deserialize_with = "readable_ops")]
    ops: (Vec<Sequenced>, Vec<(u64, String)>),
    head: u64,
    #[serde(default)]
    through: Option<u64>,
}

impl From<OpsWire> for OpsBody {
    fn from(wire: OpsWire) -> Self {
        let (ops, unreadable) = wire.ops;
        Self {
            stream: wire.stream,
            ops,
            head: wire.head,
            through: wire.through,
            unreadable,
        }
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
fn readable_ops<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<(Vec<Sequenced>, Vec<(u64, String)>), D::Error> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Paid<'a> {
        #[serde(borrow)]
        payload: Kind<'a>,
    }
    #[derive(Deserialize)]
    struct Numbered<'a> {
        seq: u64,
        #[serde(borrow)]
        op: Paid<'a>,
    }
    let list = Box::<RawValue>::deserialize(deserializer)?;
    let mut unreadable = Vec::new();
    let ops = items_or_aside(&list, |item, err| {
        let newer = serde_json::from_str::<Numbered<'_>>(item)
            .ok()
            .filter(|numbered| !Payload::KINDS.contains(&&*numbered.op.payload.kind));
        let Some(numbered) = newer else {
            return false;
        };
        // Why is said for the first few only (a hostile message could
        // hold thousands).
        let why = if unreadable.len() < UNREADABLE_SAID {
            preview(&gaesup_state_core::decode_error_text(err))
        } else {
            String::new()
        };
        unreadable.push((numbered.seq, why));
        true
    })
    .map_err(serde::de::Error::custom)?;
    Ok((ops, unreadable))
}

/// The JSON list `list` decoded as `T`s: whole, as all but always; else
/// item by item, where `aside` is handed each item that does not decode
/// (its text and why) and says whether it set it aside. An item it does
/// not set aside refuses the list, with why (its position counted in the
/// item, not the message).
fn items_or_aside<T: DeserializeOwned>(
    list: &RawValue,
    mut aside: impl FnMut(&str, &serde_json::Error) -> bool,
) -> Result<Vec<T>, String> {
    if let Ok(all) = serde_json::from_str::<Vec<T>>(list.get()) {
        return Ok(all);
    }
    let items = serde_json::from_str::<Vec<Box<RawValue>>>(list.get())
        .map_err(|err| gaesup_state_core::decode_error_text(&err))?;
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        match serde_json::from_str::<T>(item.get()) {
            Ok(decoded) => kept.push(decoded),
            Err(err) if aside(item.get(), &err) => {}
            Err(err) => return Err(gaesup_state_core::decode_error_text(&err)),
        }
    }
    Ok(kept)
}

/// The state of a stream, for a device whose cursor is older than the log
/// the relay kept: it merges the states and resumes at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SnapshotWire")]
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
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// The key this piece's states follow (the last of the piece before,
    /// or the `after` the device asked with); absent for a piece that
    /// starts at the stream's first key. A device tells by it an answer to
    /// an older request from the next piece of the snapshot it is taking;
    /// a relay that predates it never says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// [`Snapshot`] as it comes: its states decoded entry by entry where the
/// list does not decode whole.
#[derive(Deserialize)]
struct SnapshotWire {
    stream: StreamId,
    seq: u64,
    #[serde(deserialize_with = "snapshot_states")]
    states: SnapshotStates,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    after: Option<FullKey>,
}

impl From<SnapshotWire> for Snapshot {
    fn from(wire: SnapshotWire) -> Self {
        Self {
            stream: wire.stream,
            seq: wire.seq,
            states: wire.states.kept,
            more: wire.more,
            after: wire.after,
            left_out: wire.states.left_out,
            newer: wire.states.newer,
            piece: PieceOf::Start,
        }
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
fn snapshot_states<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SnapshotStates, D::Error> {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(borrow)]
        strategy: std::borrow::Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Named<'a> {
        key: FullKey,
        #[serde(borrow)]
        state: Tag<'a>,
    }
    let list = Box::<RawValue>::deserialize(deserializer)?;
    let (mut left_out, mut newer) = (Vec::new(), false);
    let kept = items_or_aside(&list, |item, _| {
        let named = serde_json::from_str::<Named<'_>>(item).ok();
        let Some((named, reason)) = named.and_then(|named| {
            let reason = gaesup_state_core::Strategy::from_name(&named.state.strategy).err()?;
            Some((named, reason))
        }) else {
            return false;
        };
        newer |= !gaesup_state_core::Strategy::is_known(&named.state.strategy);
        left_out.push((
            named.key,
            gaesup_state_core::Error::Malformed {
                what: "key state",
                reason,
            },
        ));
        true
    })
    .map_err(serde::de::Error::custom)?;
    Ok(SnapshotStates {
        kept,
        left_out,
        newer,
    })
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One of [`code`](crate::code).
    pub code: String,
    /// Why, for people.
    pub message: String,
}

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

#[derive(Deserialize)]
struct In<'a> {
    v: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
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

/// Size, depth and envelope checks; the message's type and raw body.
fn open(text: &str, max_bytes: usize) -> Result<(String, &RawValue), ProtocolError> {
    if text.len() > max_bytes {
        return Err(ProtocolError::new(
            code::FRAME_TOO_LARGE,
            format!("{} bytes, over the {max_bytes}-byte limit", text.len()),
        ));
    }
    // Depth first: a deep document never reaches a recursive parser.
    parse_untrusted::<serde::de::IgnoredAny>(text, max_bytes, "message")
        .map_err(|err| ProtocolError::new(code::MALFORMED, err.to_string()))?;
    let envelope: In<'_> = serde_json::from_str(text)
        .map_err(|err| ProtocolError::new(code::MALFORMED, preview(&err.to_string())))?;
    match envelope.v {
        Some(PROTOCOL_VERSION) => {}
        other => {
            return Err(ProtocolError::new(
                code::UNSUPPORTED_VERSION,
                format!("protocol version {other:?}; this relay speaks {PROTOCOL_VERSION}"),
            ));
        }
    }
    match (envelope.kind, envelope.body) {
        (Some(kind), Some(body)) => Ok((kind, body)),
        _ => Err(ProtocolError::new(
            code::MALFORMED,
            "a message needs \"type\" and \"body\"",
        )),
    }
}

fn body<T: DeserializeOwned>(raw: &RawValue) -> Result<T, ProtocolError> {
    serde_json::from_str(raw.get())
        .map_err(|err| ProtocolError::new(code::MALFORMED, preview(&err.to_string())))
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
    /// follows comes in one.
    pub fn may_carry_state(text: &str) -> bool {
        match open(text, MAX_MESSAGE_BYTES) {
            Ok((kind, _)) => matches!(kind.as_str(), "ops" | "snapshot"),
            Err(_) => true,
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

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct Ack {
            pub op: OpId,
            #[serde(flatten)]
            pub status: AckStatus,
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
                status: ours.status.clone(),
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
                        (ours.op, &ours.status),
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
                "expected value",
            ),
        ] {
            assert!(
                serde_json::from_str::<derived::Ack>(&text).is_ok(),
                "{text}"
            );
            let err = serde_json::from_str::<Ack>(&text).unwrap_err().to_string();
            assert!(err.starts_with(error), "{text}: {err}");
        }
        // Taken where the enum refused it: the fields as an array in their
        // declared order, as every struct the protocol derives takes (the
        // op id inside is an object: the core's types read objects only).
        let array = format!(r#"[{op},"duplicate","global",5,null,null,null]"#);
        assert!(serde_json::from_str::<derived::Ack>(&array).is_err());
        assert_eq!(
            serde_json::from_str::<Ack>(&array).unwrap().status,
            AckStatus::Duplicate {
                stream: StreamId::Global,
                seq: 5
            }
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
