//! Streams (what a cursor counts) and subscriptions.

use std::fmt;
use std::str::FromStr;

use gaesup_state_core::decode::{Fields, FromJson, Node, Why, text};
use gaesup_state_core::{ApartmentId, FullKey, Op, deserialize_through_tree};
use serde::Serialize;

/// An ordered log of ops: one apartment's keys, or the global keys.
///
/// On the wire, `"apartment:<id>"` or `"global"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    /// Private, building and apartment keys of one apartment.
    Apartment(ApartmentId),
    /// Global keys.
    Global,
}

impl StreamId {
    /// The stream a key's ops belong to.
    pub fn of(key: &FullKey) -> Self {
        match key.apartment() {
            // A full key's apartment segment was validated when it parsed.
            Some(apartment) => apartment.parse().map_or(Self::Global, Self::Apartment),
            None => Self::Global,
        }
    }

    /// Whether `key` belongs to this stream.
    pub fn holds(&self, key: &FullKey) -> bool {
        Self::of(key) == *self
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Apartment(id) => write!(f, "apartment:{id}"),
            Self::Global => f.write_str("global"),
        }
    }
}

impl FromStr for StreamId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "global" {
            return Ok(Self::Global);
        }
        match text.strip_prefix("apartment:") {
            Some(id) => id
                .parse()
                .map(Self::Apartment)
                .map_err(|err: gaesup_state_core::Error| err.to_string()),
            None => Err(format!(
                "a stream is \"apartment:<id>\" or \"global\", not {:?}",
                gaesup_state_core::preview(text)
            )),
        }
    }
}

impl TryFrom<String> for StreamId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<StreamId> for String {
    fn from(stream: StreamId) -> String {
        stream.to_string()
    }
}

/// As its text, written straight into the output (no `String` made).
impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From its text.
impl FromJson for StreamId {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        text(node, "a stream")?.parse()
    }
}

/// A stream a device follows, and the last sequence number it applied
/// (`None`: nothing yet, send everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    /// The stream.
    pub stream: StreamId,
    /// The device's cursor.
    pub cursor: Option<u64>,
    /// The last key of the snapshot pieces the device merged so far, when
    /// a connection ended between two pieces (its cursor is then past any
    /// head, which asks for a snapshot): the relay sends only the pieces
    /// after it, so a device whose connections are short still gets every
    /// state, a piece or more a connection. Over HTTP, the `after=` of a
    /// pull. A relay that predates it starts the snapshot over, which the
    /// device sees in a first piece that says it follows no key
    /// ([`Snapshot::after`](crate::message::Snapshot::after)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<FullKey>,
}

impl FromJson for Subscription {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "a subscription")?;
        Ok(Self {
            stream: fields.req("stream")?,
            cursor: fields.opt("cursor")?,
            after: fields.opt("after")?,
        })
    }
}

/// An op with the number the relay gave it in its stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sequenced {
    /// Position in the stream, from 1, without gaps.
    pub seq: u64,
    /// The op.
    pub op: Op,
}

impl FromJson for Sequenced {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "a numbered op")?;
        Ok(Self {
            seq: fields.req("seq")?,
            op: fields.req("op")?,
        })
    }
}

deserialize_through_tree!(StreamId, Subscription, Sequenced);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_serialize_as_the_strings_they_were() {
        for text in ["global", "apartment:main", "apartment:a \"q\" \\ é"] {
            let stream: StreamId = text.parse().unwrap();
            let json = serde_json::to_string(&stream).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<StreamId>(&json).unwrap(), stream);
            // As a map key (a device's cursors are kept by stream), and
            // through a `Value`.
            let map = std::collections::BTreeMap::from([(stream.clone(), 1)]);
            let as_text = std::collections::BTreeMap::from([(text, 1)]);
            assert_eq!(
                serde_json::to_string(&map).unwrap(),
                serde_json::to_string(&as_text).unwrap()
            );
            assert_eq!(
                serde_json::to_value(&map).unwrap(),
                serde_json::to_value(&as_text).unwrap()
            );
        }
    }

    #[test]
    fn streams_round_trip_and_refuse_garbage() {
        for text in ["global", "apartment:main"] {
            let stream: StreamId = text.parse().unwrap();
            assert_eq!(stream.to_string(), text);
        }
        for bad in ["", "apartment:", "apartment:a/b", "building:x", "Global"] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad}");
        }
        let key = FullKey::parse("private/main/b/u/k").unwrap();
        assert_eq!(StreamId::of(&key), "apartment:main".parse().unwrap());
        assert_eq!(
            StreamId::of(&FullKey::parse("global/theme").unwrap()),
            StreamId::Global
        );
    }
}
