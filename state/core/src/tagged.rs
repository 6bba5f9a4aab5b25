//! Decoding of the two adjacently tagged wire enums ([`Payload`] and
//! [`KeyState`]): `{"<tag>": "<variant>", "data": <content>}`.
//!
//! serde's derive for adjacent tagging buffers the content in its own
//! `Content` type when it comes before the tag, which takes a second
//! deserializer per enum and per input type (about 25 KiB of wasm each).
//! Every encoder of ours writes the tag first, so the decoder here reads
//! that order straight into the variant, and buffers the other order (a
//! `serde_json::Value` sorts its keys: `data` comes before the tag) as a
//! `Value`, decoded once the tag is known.
//!
//! [`Payload`]: crate::op::Payload
//! [`KeyState`]: crate::strategy::KeyState

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// Where a tagged value's content is read from: the next value of the map
/// being decoded, or a value buffered because it came first.
pub(crate) enum Content<'m, A> {
    /// The map's next value.
    Next(&'m mut A),
    /// Buffered earlier.
    Buffered(Value),
}

impl<'de, A: MapAccess<'de>> Content<'_, A> {
    /// Decodes the content as `X`.
    ///
    /// Buffered content is written back to text and parsed like the rest
    /// of the input, not decoded from the `Value`: a decoder of every wire
    /// type from a `Value` would be a second copy of them all in the wasm
    /// (about 40 KiB before wasm-opt), for input in the order this code
    /// never writes. (The parse holds the content to serde_json's nesting
    /// limit of 128, which text input never reaches: it is refused past
    /// [`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH) first. A `Value`
    /// built in Rust and decoded with `from_value` could be deeper.)
    pub(crate) fn read<X: DeserializeOwned>(self) -> Result<X, A::Error> {
        match self {
            Self::Next(map) => map.next_value(),
            Self::Buffered(value) => serde_json::from_str(&value.to_string())
                .map_err(|err| de::Error::custom(without_position(&err))),
        }
    }
}

/// A decoding error's message without the line and column it names: they
/// count in the text written back from a buffered value, not in the input.
pub(crate) fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// An enum encoded as `{TAG: tag, "data": content}`.
pub(crate) trait TagFirst: Sized {
    /// The tag's field name.
    const TAG: &'static str;
    /// What the input should have been, for errors.
    const EXPECTING: &'static str;
    /// The tag's type (names the variant).
    type Tag: DeserializeOwned;

    /// Reads the variant `tag`'s content.
    fn content<'de, A: MapAccess<'de>>(
        tag: Self::Tag,
        content: Content<'_, A>,
    ) -> Result<Self, A::Error>;
}

/// Deserializes a [`TagFirst`] enum.
pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: de::Deserializer<'de>,
    T: TagFirst,
{
    deserializer.deserialize_map(TagFirstVisitor(PhantomData))
}

struct TagFirstVisitor<T>(PhantomData<T>);

impl<'de, T: TagFirst> Visitor<'de> for TagFirstVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut tag: Option<T::Tag> = None;
        let mut early: Option<Value> = None;
        let mut found: Option<T> = None;
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            if field == T::TAG {
                if tag.is_some() || found.is_some() {
                    return Err(de::Error::duplicate_field(T::TAG));
                }
                let read: T::Tag = map.next_value()?;
                match early.take() {
                    Some(value) => found = Some(T::content(read, Content::<A>::Buffered(value))?),
                    None => tag = Some(read),
                }
            } else if field == "data" {
                if early.is_some() || found.is_some() {
                    return Err(de::Error::duplicate_field("data"));
                }
                match tag.take() {
                    Some(read) => found = Some(T::content(read, Content::Next(&mut map))?),
                    None => early = Some(map.next_value()?),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        match (found, tag) {
            (Some(value), _) => Ok(value),
            (None, Some(_)) => Err(de::Error::missing_field("data")),
            (None, None) => Err(de::Error::missing_field(T::TAG)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::op::Payload;
    use crate::strategy::KeyState;

    #[test]
    fn both_orders_read_and_bad_shapes_say_what_is_wrong() {
        let payload = Payload::Resolve {
            value: json!({"a": [1, null]}).into(),
            supersedes: Vec::new(),
        };
        let text = serde_json::to_string(&payload).unwrap();
        assert!(text.starts_with(r#"{"kind":"resolve","data":"#), "{text}");
        assert_eq!(serde_json::from_str::<Payload>(&text).unwrap(), payload);
        // Unknown fields around the data are ignored, as before.
        let extra = r#"{"kind":"set","x":[1],"data":{"value":2},"y":{}}"#;
        assert_eq!(
            serde_json::from_str::<Payload>(extra).unwrap(),
            Payload::Set {
                value: json!(2).into()
            }
        );
        // Content first (what a serde_json::Value writes back) still reads.
        let late = r#"{"data":{"value":1},"kind":"set"}"#;
        assert_eq!(
            serde_json::from_str::<Payload>(late).unwrap(),
            Payload::Set {
                value: json!(1).into()
            }
        );
        for (bad, says) in [
            (r#"{"kind":"set"}"#, "missing field `data`"),
            (r#"{"data":{}}"#, "missing field `kind`"),
            (
                r#"{"kind":"set","data":{"value":1},"data":{"value":2}}"#,
                "duplicate field `data`",
            ),
            (
                r#"{"kind":"set","kind":"set","data":{"value":2}}"#,
                "duplicate field `kind`",
            ),
            (r#"{"kind":"nope","data":{}}"#, "unknown variant `nope`"),
            (
                r#"{"kind":"count","data":{"value":1}}"#,
                "missing field `slot`",
            ),
            (
                r#"{"data":{"value":1},"kind":"count"}"#,
                "missing field `slot` at line 1 column 35",
            ),
            (r#"[]"#, "an op payload"),
        ] {
            let err = serde_json::from_str::<Payload>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let state = KeyState::empty(crate::strategy::Strategy::Sum);
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<KeyState>(&text).unwrap(), state);
        let value = serde_json::to_value(&state).unwrap();
        assert_eq!(serde_json::from_value::<KeyState>(value).unwrap(), state);
    }
}
