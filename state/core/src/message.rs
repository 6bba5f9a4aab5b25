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

use serde::ser::SerializeStruct;
use serde::{Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::decode::{Fields, FromJson, Node, Why, deserialize_through_tree, variant};
use crate::error::{Error, Result};
use crate::id::{ApartmentId, KeyName, TabId, UnitAddress};
use crate::limits::{
    MAX_MESSAGE_BYTES, MAX_SYNC_STATES, check_value, parse_tree_bounded, short_reason,
};
use crate::op::OpGroup;
use crate::scope::{FullKey, Scope};
use crate::strategy::KeyState;

/// The version of the tab protocol this code speaks. Version 1 (no `v`
/// field) carried per-tab sum totals and user-resolve tombstone lists.
pub const PROTOCOL_VERSION: u32 = 2;

/// One key's state in an anti-entropy exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    let list: Entries = crate::decode::through_tree(deserializer)?;
    Ok((list.entries, list.left_out))
}

/// A list of [`SyncEntry`], with the keys left out (see
/// [`sync_entries_and_left_out`]).
struct Entries {
    entries: Vec<SyncEntry>,
    left_out: Vec<(FullKey, Error)>,
}

impl FromJson for Entries {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let items = crate::decode::items(value)?;
        let mut list = Entries {
            entries: Vec::with_capacity(items.len()),
            left_out: Vec::new(),
        };
        for item in items {
            #[cfg(not(all(feature = "merge", feature = "user-resolve")))]
            if let Some(left) = left_out_state(&item) {
                list.left_out.push(left);
                continue;
            }
            list.entries.push(SyncEntry::from_json(item)?);
        }
        Ok(list)
    }
}

/// The key of an entry whose state is of a strategy this build leaves
/// out, with why; `None` for any other entry.
#[cfg(not(all(feature = "merge", feature = "user-resolve")))]
fn left_out_state(entry: &Node<'_>) -> Option<(FullKey, Error)> {
    let strategy = entry.field("state")?.field("strategy")?.as_str()?;
    let reason = crate::strategy::left_out(strategy)?;
    let key = entry.field("key")?.as_str()?.parse().ok()?;
    Some((
        key,
        Error::Malformed {
            what: "key state",
            reason,
        },
    ))
}

impl FromJson for SyncEntry {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let mut fields = Fields::of(value, "a key's state")?;
        Ok(Self {
            key: fields.req("key")?,
            schema: fields.req("schema")?,
            state: fields.req("state")?,
        })
    }
}

impl FromJson for Digest {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let mut fields = Fields::of(value, "a digest")?;
        Ok(Self {
            key: fields.req("key")?,
            hash: fields.req("hash")?,
        })
    }
}

impl FromJson for Have {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let mut fields = Fields::of(value, "what a tab holds")?;
        Ok(Self {
            apartment: fields.opt("apartment")?,
            digests: fields.or_default("digests")?,
        })
    }
}

impl FromJson for Event {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let mut fields = Fields::of(value, "an event")?;
        Ok(Self {
            topic: fields.req("topic")?,
            sender: fields.req("sender")?,
            data: fields.req("data")?,
        })
    }
}

deserialize_through_tree!(SyncEntry, Digest, Have, Event, Message);

/// What a tab holds of one key: a hash of its state's bytes. Equal states
/// serialize to equal bytes on every replica, so equal digests mean there
/// is nothing to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// The key.
    pub key: FullKey,
    /// FNV-1a of the stored form of the key's state.
    pub hash: u64,
}

/// What a tab holds: its apartment (so a tab of another apartment sharing
/// the channel answers with global keys only) and a digest per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        let tree = parse_tree_bounded(text, MAX_MESSAGE_BYTES, "message")?;
        // The `v` of an object, if it does not read: `Some(None)` when
        // absent (protocol 1).
        let version = matches!(tree, Node::Object(_)).then(|| match tree.field("v") {
            None | Some(Node::Scalar(Value::Null)) => None,
            Some(v) => Some(v.as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0)),
        });
        match Message::from_json(tree) {
            Ok(message) => {
                message.validate()?;
                Ok(message)
            }
            Err(why) => match version {
                Some(found) if found != Some(PROTOCOL_VERSION) => Err(Error::Protocol {
                    found,
                    supported: PROTOCOL_VERSION,
                }),
                _ => Err(Error::Malformed {
                    what: "message",
                    reason: short_reason(why),
                }),
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

fn none<T>(value: &Option<T>) -> bool {
    value.is_none()
}

#[derive(Serialize)]
struct SyncRequestRef<'a> {
    from: &'a TabId,
    #[serde(skip_serializing_if = "none")]
    to: &'a Option<TabId>,
    have: &'a Have,
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

impl FromJson for Message {
    /// `{"v": 2, "type": …, "body": …}`, in any order, and nothing else.
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        #[derive(Clone, Copy)]
        enum Kind {
            Ops,
            SyncRequest,
            SyncState,
            Event,
        }
        let mut fields = Fields::of(value, "a message {\"v\", \"type\", \"body\"}")?;
        if fields.take("v").and_then(|v| v.as_u64()) != Some(PROTOCOL_VERSION.into()) {
            return Err(format!("protocol version must be {PROTOCOL_VERSION}"));
        }
        let kind: String = fields.req("type")?;
        let kind = variant(
            &kind,
            &[
                ("ops", Kind::Ops),
                ("sync_request", Kind::SyncRequest),
                ("sync_state", Kind::SyncState),
                ("event", Kind::Event),
            ],
        )?;
        let body = fields.node("body")?;
        fields.deny_unknown(&["v", "type", "body"])?;
        Ok(match kind {
            Kind::Ops => Message::Ops(OpGroup::from_json(body)?),
            Kind::SyncRequest => {
                let mut body = Fields::of(body, "a sync request")?;
                Message::SyncRequest {
                    from: body.req("from")?,
                    to: body.opt("to")?,
                    have: body.or_default("have")?,
                }
            }
            Kind::SyncState => {
                let mut body = Fields::of(body, "a sync answer")?;
                Message::SyncState {
                    from: body.req("from")?,
                    to: body.opt("to")?,
                    states: body.req::<Entries>("states")?.entries,
                    have: body.opt("have")?,
                }
            }
            Kind::Event => Message::Event(Event::from_json(body)?),
        })
    }
}
