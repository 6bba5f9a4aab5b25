//! Wire messages between tabs.
//!
//! Every message is JSON shaped `{"type": …, "body": …}`.
//! [`Message::decode`] is the only
//! way text from another tab becomes a message: it enforces
//! [`MAX_MESSAGE_BYTES`], a nesting limit, serde's shape checks (ids and
//! full keys validate while deserializing) and the structural rules of
//! [`Message::validate`]. Store-level checks (declared key, strategy,
//! scope, permissions, clock skew) happen when the store applies it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::id::{KeyName, TabId, UnitAddress};
use crate::limits::{MAX_MESSAGE_BYTES, MAX_SYNC_STATES, check_value, parse_bounded};
use crate::op::OpGroup;
use crate::scope::{FullKey, Scope};
use crate::strategy::KeyState;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Adjacently tagged with the tag first: serde then decodes the body
// directly instead of buffering the whole message to find the tag.
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Message {
    /// New writes (one op, or a batch), applied atomically.
    Ops(OpGroup),
    /// "Send me your state": a new or re-awakened tab asks for what it
    /// missed.
    SyncRequest {
        /// The asking tab.
        from: TabId,
    },
    /// Full states of some keys (anti-entropy); receivers merge them.
    SyncState {
        /// The sending tab.
        from: TabId,
        /// The states.
        states: Vec<SyncEntry>,
    },
    /// An event-bus event.
    Event(Event),
}

impl Message {
    /// Decodes and validates untrusted text.
    pub fn decode(text: &str) -> Result<Self> {
        let message: Message = parse_bounded(text, MAX_MESSAGE_BYTES, "message")?;
        message.validate()?;
        Ok(message)
    }

    /// Encodes the message, refusing to produce text other tabs would
    /// refuse as too large.
    pub fn encode(&self) -> Result<String> {
        let text = serde_json::to_string(self).map_err(|err| Error::Malformed {
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
        match self {
            Self::Ops(group) => group.validate(),
            Self::SyncRequest { .. } => Ok(()),
            Self::SyncState { states, .. } => {
                if states.len() > MAX_SYNC_STATES {
                    return Err(Error::Malformed {
                        what: "message",
                        reason: format!("more than {MAX_SYNC_STATES} states"),
                    });
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
}
