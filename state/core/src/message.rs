//! Wire messages between tabs.
//!
//! Every message is JSON shaped `{"v": 2, "type": …, "body": …}`, in that
//! order. [`Message::decode`] is the only way text from another tab
//! becomes a message: it enforces [`MAX_MESSAGE_BYTES`], a nesting limit,
//! the protocol version ([`PROTOCOL_VERSION`]; any other is
//! [`Error::Protocol`], so a tab running an older build is told apart from
//! garbage), serde's shape checks (ids and full keys validate while
//! deserializing) and the structural rules of [`Message::validate`].
//! Replica-level checks (declared key, strategy, scope, permissions, clock
//! skew) happen when the replica applies it.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::id::{ApartmentId, KeyName, TabId, UnitAddress};
use crate::limits::{MAX_MESSAGE_BYTES, MAX_SYNC_STATES, check_value, parse_bounded};
use crate::op::OpGroup;
use crate::scope::{FullKey, Scope};
use crate::strategy::KeyState;
use crate::tagged::Content;

/// The version of the tab protocol this code speaks. Version 1 (no `v`
/// field) carried per-tab sum totals and user-resolve tombstone lists.
pub const PROTOCOL_VERSION: u32 = 2;

/// One key's state in an anti-entropy exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncEntry {
    /// The key.
    pub key: FullKey,
    /// Schema version of the values in `state`.
    pub schema: u32,
    /// The sender's full state of the key.
    pub state: KeyState,
}

/// Decodes a list of [`SyncEntry`] (a sync message's states) as
/// `#[serde(deserialize_with = "sync_entries")]`: the entries of
/// [`sync_entries_and_left_out`], without the keys left out.
pub fn sync_entries<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<SyncEntry>, D::Error> {
    sync_entries_and_left_out(deserializer).map(|(entries, _)| entries)
}

/// Decodes a list of [`SyncEntry`] (a sync message's states, a relay's
/// snapshot): the entries, and the keys of those left out with why.
///
/// A build without a strategy (see [`Strategy`](crate::Strategy)'s
/// features) leaves out the entries of that strategy instead of refusing
/// the whole list: no key of it can be declared here, so none of them
/// could ever apply, and refusing the list would cost every other key in
/// it (a sync message's, a snapshot's) its exchange. Any other entry that
/// does not decode refuses the list, as in a build with every strategy,
/// which decodes the list as it is and leaves nothing out.
#[allow(clippy::type_complexity)]
pub fn sync_entries_and_left_out<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<(Vec<SyncEntry>, Vec<(FullKey, Error)>), D::Error> {
    #[cfg(all(feature = "merge", feature = "user-resolve"))]
    return Vec::<SyncEntry>::deserialize(deserializer).map(|entries| (entries, Vec::new()));
    #[cfg(not(all(feature = "merge", feature = "user-resolve")))]
    {
        let raw = Vec::<Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        let mut entries = Vec::with_capacity(raw.len());
        let mut left_out = Vec::new();
        for entry in raw {
            match serde_json::from_str::<SyncEntry>(entry.get()) {
                Ok(decoded) => entries.push(decoded),
                Err(err) => match left_out_state(entry.get()) {
                    Some(left) => left_out.push(left),
                    // Its position counts in the entry, not the input.
                    None => return Err(de::Error::custom(crate::tagged::without_position(&err))),
                },
            }
        }
        Ok((entries, left_out))
    }
}

/// The key of an entry whose state is of a strategy this build leaves
/// out, with why; `None` for any other entry.
#[cfg(not(all(feature = "merge", feature = "user-resolve")))]
fn left_out_state(entry: &str) -> Option<(FullKey, Error)> {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(borrow)]
        strategy: std::borrow::Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Entry<'a> {
        key: FullKey,
        #[serde(borrow)]
        state: Tag<'a>,
    }
    let entry = serde_json::from_str::<Entry<'_>>(entry).ok()?;
    let reason = crate::strategy::left_out(&entry.state.strategy)?;
    Some((
        entry.key,
        Error::Malformed {
            what: "key state",
            reason,
        },
    ))
}

/// What a tab holds of one key: a hash of its state's bytes. Equal states
/// serialize to equal bytes on every replica, so equal digests mean there
/// is nothing to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The key.
    pub key: FullKey,
    /// FNV-1a of the stored form of the key's state.
    pub hash: u64,
}

/// What a tab holds: its apartment (so a tab of another apartment sharing
/// the channel answers with global keys only) and a digest per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Have {
    /// The apartment the sender serves, if bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apartment: Option<ApartmentId>,
    /// One digest per syncing key the sender holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<Digest>,
}

/// A scoped event on the event bus.
///
/// The topic is a full key built from the event's scope, the sender's
/// address and the event name, so a building-scoped event only reaches
/// listeners of the same building, exactly like state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Scope-qualified event name.
    pub topic: FullKey,
    /// Who sent it.
    pub sender: UnitAddress,
    /// The payload.
    pub data: Value,
}

impl Event {
    /// An event named `name` in `scope`, sent by `sender`. Fails if `data`
    /// is over the value limits.
    pub fn new(scope: Scope, sender: &UnitAddress, name: &KeyName, data: Value) -> Result<Self> {
        check_value(&data, "event data")?;
        Ok(Self {
            topic: FullKey::new(scope, sender, name),
            sender: sender.clone(),
            data,
        })
    }

    /// Whether a listener at `address` is inside the event's scope.
    pub fn reaches(&self, address: &UnitAddress) -> bool {
        self.topic.reachable_by(address)
    }
}

/// Everything tabs say to each other.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// New writes (one op, or a batch), applied atomically.
    Ops(OpGroup),
    /// "Send me what I lack": a new or re-awakened tab asks, saying what
    /// it holds, so only differences travel back.
    SyncRequest {
        /// The asking tab.
        from: TabId,
        /// The one tab asked, or `None` for every tab.
        to: Option<TabId>,
        /// What the asking tab holds.
        have: Have,
    },
    /// States of some keys (anti-entropy); receivers merge them.
    SyncState {
        /// The sending tab.
        from: TabId,
        /// The tab this answers, if it is an answer.
        to: Option<TabId>,
        /// The states.
        states: Vec<SyncEntry>,
        /// In an answer: what the sender holds, so the asking tab can send
        /// back what the sender lacks. `None` in a push-back (which gets
        /// no answer, so an exchange always ends).
        have: Option<Have>,
    },
    /// An event-bus event.
    Event(Event),
}

impl Message {
    /// Decodes and validates untrusted text.
    pub fn decode(text: &str) -> Result<Self> {
        match parse_bounded::<Message>(text, MAX_MESSAGE_BYTES, "message") {
            Ok(message) => {
                message.validate()?;
                Ok(message)
            }
            Err(err @ (Error::TooLarge { .. } | Error::TooDeep { .. })) => Err(err),
            Err(err) => match sniff_version(text) {
                Some(found) if found == Some(PROTOCOL_VERSION) => Err(err),
                Some(found) => Err(Error::Protocol {
                    found,
                    supported: PROTOCOL_VERSION,
                }),
                None => Err(err),
            },
        }
    }

    /// Encodes the message, refusing to produce text other tabs would
    /// refuse as too large.
    pub fn encode(&self) -> Result<String> {
        let text = crate::limits::to_text(self).map_err(|err| Error::Malformed {
            what: "message",
            reason: err.to_string(),
        })?;
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(Error::TooLarge {
                what: "message",
                size: text.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        Ok(text)
    }

    /// Structural rules: bounded lists, values within limits, event
    /// senders inside their topic's scope.
    pub fn validate(&self) -> Result<()> {
        let too_many = |what: &str| Error::Malformed {
            what: "message",
            reason: format!("more than {MAX_SYNC_STATES} {what}"),
        };
        match self {
            Self::Ops(group) => group.validate(),
            Self::SyncRequest { have, .. } => {
                if have.digests.len() > MAX_SYNC_STATES {
                    return Err(too_many("digests"));
                }
                Ok(())
            }
            Self::SyncState { states, have, .. } => {
                if states.len() > MAX_SYNC_STATES {
                    return Err(too_many("states"));
                }
                if have
                    .as_ref()
                    .is_some_and(|h| h.digests.len() > MAX_SYNC_STATES)
                {
                    return Err(too_many("digests"));
                }
                states.iter().try_for_each(|entry| entry.state.validate())
            }
            Self::Event(event) => {
                check_value(&event.data, "event data")?;
                if !event.reaches(&event.sender) {
                    return Err(Error::OutOfScope {
                        key: event.topic.clone(),
                        unit: event.sender.clone(),
                    });
                }
                Ok(())
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Ops(_) => "ops",
            Self::SyncRequest { .. } => "sync_request",
            Self::SyncState { .. } => "sync_state",
            Self::Event(_) => "event",
        }
    }
}

/// The `v` field of text that did not decode: `Some(None)` when it is a
/// JSON object without one (protocol 1), `None` when it is not even that.
fn sniff_version(text: &str) -> Option<Option<u32>> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        v: Option<Value>,
    }
    let probe: Probe = serde_json::from_str(text).ok()?;
    Some(
        probe
            .v
            .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0)),
    )
}

fn none<T>(value: &Option<T>) -> bool {
    value.is_none()
}

#[derive(Serialize, Deserialize)]
struct SyncRequestBody {
    from: TabId,
    #[serde(default, skip_serializing_if = "none")]
    to: Option<TabId>,
    #[serde(default)]
    have: Have,
}

#[derive(Serialize)]
struct SyncRequestRef<'a> {
    from: &'a TabId,
    #[serde(skip_serializing_if = "none")]
    to: &'a Option<TabId>,
    have: &'a Have,
}

#[derive(Deserialize)]
struct SyncStateBody {
    from: TabId,
    #[serde(default)]
    to: Option<TabId>,
    #[serde(deserialize_with = "sync_entries")]
    states: Vec<SyncEntry>,
    #[serde(default)]
    have: Option<Have>,
}

#[derive(Serialize)]
struct SyncStateRef<'a> {
    from: &'a TabId,
    #[serde(skip_serializing_if = "none")]
    to: &'a Option<TabId>,
    states: &'a Vec<SyncEntry>,
    #[serde(skip_serializing_if = "none")]
    have: &'a Option<Have>,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Message", 3)?;
        out.serialize_field("v", &PROTOCOL_VERSION)?;
        out.serialize_field("type", self.kind())?;
        match self {
            Self::Ops(group) => out.serialize_field("body", group)?,
            Self::SyncRequest { from, to, have } => {
                out.serialize_field("body", &SyncRequestRef { from, to, have })?;
            }
            Self::SyncState {
                from,
                to,
                states,
                have,
            } => out.serialize_field(
                "body",
                &SyncStateRef {
                    from,
                    to,
                    states,
                    have,
                },
            )?,
            Self::Event(event) => out.serialize_field("body", event)?,
        }
        out.end()
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    V,
    Type,
    Body,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Ops,
    SyncRequest,
    SyncState,
    Event,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct MessageVisitor;

        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message {\"v\", \"type\", \"body\"}")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Message, A::Error> {
                let mut version = None;
                let mut kind = None;
                let mut message = None;
                // A body before its type (not what this code writes, but
                // valid JSON) is buffered and read once the type is known.
                let mut early: Option<Value> = None;
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::V => version = Some(map.next_value::<u32>()?),
                        Field::Type => kind = Some(map.next_value::<Kind>()?),
                        Field::Body => match &kind {
                            Some(kind) if version == Some(PROTOCOL_VERSION) => {
                                message = Some(read_body(kind, Content::Next(&mut map))?);
                            }
                            _ => early = Some(map.next_value()?),
                        },
                    }
                }
                if version != Some(PROTOCOL_VERSION) {
                    return Err(de::Error::custom(format!(
                        "protocol version must be {PROTOCOL_VERSION}"
                    )));
                }
                if let Some(message) = message {
                    return Ok(message);
                }
                let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
                let body = early.ok_or_else(|| de::Error::missing_field("body"))?;
                read_body::<A>(&kind, Content::Buffered(body))
            }
        }

        fn read_body<'de, M: MapAccess<'de>>(
            kind: &Kind,
            source: Content<'_, M>,
        ) -> std::result::Result<Message, M::Error> {
            fn get<'de, T: serde::de::DeserializeOwned, M: MapAccess<'de>>(
                source: Content<'_, M>,
            ) -> std::result::Result<T, M::Error> {
                source.read()
            }
            Ok(match kind {
                Kind::Ops => Message::Ops(get(source)?),
                Kind::SyncRequest => {
                    let body: SyncRequestBody = get(source)?;
                    Message::SyncRequest {
                        from: body.from,
                        to: body.to,
                        have: body.have,
                    }
                }
                Kind::SyncState => {
                    let body: SyncStateBody = get(source)?;
                    Message::SyncState {
                        from: body.from,
                        to: body.to,
                        states: body.states,
                        have: body.have,
                    }
                }
                Kind::Event => Message::Event(get(source)?),
            })
        }

        deserializer.deserialize_map(MessageVisitor)
    }
}
