//! Decoding of the wire types: JSON parsed once into a tree ([`Node`]),
//! then read by hand.
//!
//! serde's derive writes, for every type, a decoder per kind of input it
//! is read from: a visitor for maps, one for sequences (a struct may come
//! as an array), one for field names, a copy of serde_json's list and map
//! readers per element type. In the wasm that was most of what the state
//! manager's formats cost (BENCHMARKS.md, "What the formats alone cost").
//! Here one small parser (`decode/parse.rs`) builds the tree, and each
//! type's reader ([`FromJson`]) is plain code over it, compiled once. When
//! serde_json's parser built the tree, a decode cost about a third again
//! the derive's instructions for a small op message (the tree is built,
//! then read), for a wasm about 10 KiB brotli smaller; the parser of our
//! own reads such a message in about a quarter fewer instructions than
//! that path did, depth limit included.
//!
//! The tree refuses a name given twice in one object, wherever it is,
//! spelt alike or not (serde_json's own `Value` keeps the last): two
//! readers of the same text must never see two different documents.
//! Unknown fields are ignored, as serde's derive does, unless a type says
//! otherwise. A struct is read from an object only (serde's derive also
//! takes its fields as an array).
//!
//! Every type read so keeps a [`serde::Deserialize`] impl that goes
//! through the tree ([`through_tree`], written by
//! [`deserialize_through_tree!`](crate::deserialize_through_tree)), for
//! callers that decode with serde.
//!
//! # Reading a type of your own
//!
//! The relay protocol reads its messages, which hold the core's types, in
//! one parse with these: untrusted text goes through
//! [`parse_tree_bounded`] (size first, then a parse that keeps the depth
//! limit) or [`read_bounded`], and
//! a type's reader takes its fields out of its object with [`Fields`].
//!
//! ```
//! use gaesup_state_core::decode::{Fields, FromJson, Node, Why, read_bounded};
//! use gaesup_state_core::{FullKey, deserialize_through_tree};
//!
//! /// A key and how many times it was seen.
//! #[derive(Debug, PartialEq)]
//! struct Sighting {
//!     key: FullKey,
//!     times: u64,
//!     note: Option<String>,
//! }
//!
//! impl FromJson for Sighting {
//!     fn from_json(node: Node<'_>) -> Result<Self, Why> {
//!         let mut fields = Fields::of(node, "a sighting")?;
//!         Ok(Self {
//!             key: fields.req("key")?,
//!             times: fields.or_default("times")?,
//!             note: fields.opt("note")?,
//!         })
//!     }
//! }
//! deserialize_through_tree!(Sighting);
//!
//! let text = r#"{"key":"global/theme","times":2}"#;
//! let seen: Sighting = read_bounded(text, 1024, "sighting")?;
//! assert_eq!((seen.times, seen.note), (2, None));
//! // A name given twice is refused, as anywhere in these formats.
//! let twice = r#"{"key":"global/a","key":"global/b"}"#;
//! assert!(read_bounded::<Sighting>(twice, 1024, "sighting").is_err());
//! // serde reads it through the same tree.
//! let again: Sighting = serde_json::from_str(r#"{"key":"global/theme"}"#).unwrap();
//! assert_eq!(again.times, 0);
//! # Ok::<(), gaesup_state_core::Error>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::vec_map::{VecMap, VecSet};

pub use crate::limits::{parse_tree_bounded, read_bounded, skim_bounded};
pub(crate) use parse::{Refusal, parse_tree, skim, string_text};
pub use parse::{Skimmed, SyntaxError};

mod parse;

/// Why a value did not read: serde's wording where it has one.
pub type Why = String;

/// A type read from a parsed JSON tree.
pub trait FromJson: Sized {
    /// Reads `node`, taking what it keeps out of it.
    fn from_json(node: Node<'_>) -> Result<Self, Why>;
}

/// A parsed JSON value: scalars as serde_json holds them; lists; objects
/// as lists of fields, each name once, borrowed from the text where the
/// text spells it without escapes. A field name costs no
/// allocation, and an object one (its list), where a `serde_json::Value`
/// allocates a string per name and a map per object; a reader that keeps
/// a JSON value (a state's value) turns its part into one
/// ([`into_value`](Node::into_value)).
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// `null`, a boolean, a number or a string.
    Scalar(Value),
    /// An array.
    List(Vec<Node<'a>>),
    /// An object: its fields, each name once, in the text's order up to
    /// 16 fields and sorted by name past it (so look fields up with
    /// [`Node::field`] or [`Fields`], not by position). The parser keeps
    /// that rule; an object built by hand must keep it too, or lookups
    /// miss its fields.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Node<'_> {
    /// The JSON value it is.
    pub fn into_value(self) -> Value {
        match self {
            Self::Scalar(value) => value,
            Self::List(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Self::Object(fields) => {
                // Inserted one by one (see `BTreeSet`'s reader).
                let mut object = serde_json::Map::new();
                for (name, node) in fields {
                    object.insert(name.into_owned(), node.into_value());
                }
                Value::Object(object)
            }
        }
    }

    /// The field `name` of an object.
    pub fn field(&self, name: &str) -> Option<&Self> {
        match self {
            Self::Object(fields) => position(fields, name)
                .and_then(|at| fields.get(at))
                .map(|(_, node)| node),
            _ => None,
        }
    }

    /// The string it is, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Scalar(value) => value.as_str(),
            _ => None,
        }
    }

    /// The integer it is, if it is a non-negative one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Scalar(value) => value.as_u64(),
            _ => None,
        }
    }
}

/// The most fields an object keeps in the order the text gives them;
/// a larger one is sorted by name. Every struct of ours has fewer, and
/// looking through a few names costs less than sorting them; maps keyed
/// by name (a snapshot's keys, a merge state's fields) and user values
/// may be larger.
const SMALL_OBJECT: usize = 16;

/// Where the field `name` is among an object's `fields` (see
/// [`SMALL_OBJECT`]).
fn position<T>(fields: &[(Cow<'_, str>, T)], name: &str) -> Option<usize> {
    if fields.len() <= SMALL_OBJECT {
        fields.iter().position(|(known, _)| known == name)
    } else {
        fields
            .binary_search_by(|(known, _)| known.as_ref().cmp(name))
            .ok()
    }
}

/// Implements [`FromJson`] (and [`serde::Deserialize`] through the tree)
/// for types read from a string by their `TryFrom<String>`, whose error
/// is the reason.
macro_rules! from_json_text {
    ($($ty:ty),* $(,)?) => {
        $(
            impl $crate::decode::FromJson for $ty {
                fn from_json(node: $crate::decode::Node<'_>) -> Result<Self, $crate::decode::Why> {
                    <$ty>::try_from($crate::decode::text(node, "a string")?)
                        .map_err(|err| err.to_string())
                }
            }
            $crate::deserialize_through_tree!($ty);
        )*
    };
}
pub(crate) use from_json_text;

/// Implements [`serde::Deserialize`] for types that implement
/// [`FromJson`](crate::decode::FromJson): serde's input is read into the
/// tree, then by the type's reader (see [`decode`](crate::decode)).
#[macro_export]
macro_rules! deserialize_through_tree {
    ($($ty:ty),* $(,)?) => {
        $(
            impl<'de> ::serde::Deserialize<'de> for $ty {
                fn deserialize<D: ::serde::Deserializer<'de>>(
                    deserializer: D,
                ) -> ::core::result::Result<Self, D::Error> {
                    $crate::decode::through_tree(deserializer)
                }
            }
        )*
    };
}
pub use crate::deserialize_through_tree;

/// Deserializes a [`FromJson`] type: the tree first, then its reader.
pub fn through_tree<'de, D: de::Deserializer<'de>, T: FromJson>(
    deserializer: D,
) -> Result<T, D::Error> {
    let tree = deserializer.deserialize_any(Tree)?;
    T::from_json(tree).map_err(de::Error::custom)
}

/// Builds a [`Node`] from a serde input (text goes through
/// [`parse`](self::parse) instead), refusing a name repeated in an object.
#[derive(Clone, Copy)]
struct Tree;

impl<'de> DeserializeSeed<'de> for Tree {
    type Value = Node<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tree {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'de>, E> {
        // As serde_json's own `Value` reads it (text never holds a NaN).
        Ok(Node::Scalar(
            Number::from_f64(value).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::String(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::String(value)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        // Not sized by the input's hint: a hostile length claims no memory
        // ahead of its items.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut fields = Vec::new();
        while let Some(name) = map.next_key_seed(Name)? {
            fields.push((name, map.next_value_seed(self)?));
        }
        if let Some(name) = name_twice(&mut fields) {
            return Err(de::Error::custom(format_args!(
                "duplicate field `{}`",
                crate::error::preview(name)
            )));
        }
        Ok(Node::Object(fields))
    }
}

/// An object's fields as the tree keeps them (see [`Node::Object`]): in
/// the text's order up to [`SMALL_OBJECT`] fields, sorted by name past
/// it. Returns a name given twice, if one is.
fn name_twice<'n, T>(fields: &'n mut [(Cow<'_, str>, T)]) -> Option<&'n str> {
    if fields.len() <= SMALL_OBJECT {
        // Few names: each against those before it, in text order.
        (1..fields.len()).find_map(|at| {
            let (done, rest) = fields.split_at(at);
            let name = &rest.first()?.0;
            done.iter()
                .any(|(seen, _)| seen == name)
                .then_some(name.as_ref())
        })
    } else {
        // A name given twice is refused, so no order among equal
        // names matters (and an unstable sort takes no scratch memory).
        fields.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        fields
            .windows(2)
            .find(|pair| pair[0].0 == pair[1].0)
            .map(|pair| pair[0].0.as_ref())
    }
}

/// Reads an object's field name, borrowed from the text where it can be.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name.to_owned()))
    }

    fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name))
    }

    fn visit_borrowed_bytes<E: de::Error>(self, name: &'de [u8]) -> Result<Self::Value, E> {
        std::str::from_utf8(name)
            .map(Cow::Borrowed)
            .map_err(|_| E::invalid_value(de::Unexpected::Bytes(name), &self))
    }

    fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<Self::Value, E> {
        std::str::from_utf8(name)
            .map(|name| Cow::Owned(name.to_owned()))
            .map_err(|_| E::invalid_value(de::Unexpected::Bytes(name), &self))
    }
}

/// A decoding error's message without the line and column it names.
pub(crate) fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// What `node` is, in serde's words for an unexpected value.
fn found(node: &Node<'_>) -> String {
    match node {
        Node::Scalar(Value::Null) => "null".to_owned(),
        Node::Scalar(Value::Bool(value)) => format!("boolean `{value}`"),
        Node::Scalar(Value::Number(number)) if number.is_f64() => {
            format!("floating point `{number}`")
        }
        Node::Scalar(Value::Number(number)) => format!("integer `{number}`"),
        Node::Scalar(Value::String(text)) => format!("string {:?}", crate::error::preview(text)),
        Node::List(_) | Node::Scalar(Value::Array(_)) => "sequence".to_owned(),
        Node::Object(_) | Node::Scalar(Value::Object(_)) => "map".to_owned(),
    }
}

/// `node` is not what was `expected`.
pub fn invalid(node: &Node<'_>, expected: &str) -> Why {
    format!("invalid type: {}, expected {expected}", found(node))
}

/// The text of a string.
pub fn text(node: Node<'_>, expected: &str) -> Result<String, Why> {
    match node {
        Node::Scalar(Value::String(text)) => Ok(text),
        other => Err(invalid(&other, expected)),
    }
}

/// An object's fields, taken out one by one.
pub struct Fields<'a>(Vec<(Cow<'a, str>, Option<Node<'a>>)>);

impl<'a> Fields<'a> {
    /// The fields of `node`, which must be an object (`expected` names
    /// what it should be, for the error).
    pub fn of(node: Node<'a>, expected: &str) -> Result<Self, Why> {
        match node {
            Node::Object(fields) => Ok(Self(
                fields
                    .into_iter()
                    .map(|(name, node)| (name, Some(node)))
                    .collect(),
            )),
            other => Err(invalid(&other, expected)),
        }
    }

    /// The field `name`, as it is, if present (and not taken yet).
    pub fn take(&mut self, name: &str) -> Option<Node<'a>> {
        let at = position(&self.0, name)?;
        self.0.get_mut(at).and_then(|(_, node)| node.take())
    }

    /// The field `name`, as it is, which must be present.
    pub fn node(&mut self, name: &str) -> Result<Node<'a>, Why> {
        self.take(name)
            .ok_or_else(|| format!("missing field `{name}`"))
    }

    /// The field `name`, which must be present.
    pub fn req<T: FromJson>(&mut self, name: &str) -> Result<T, Why> {
        T::from_json(self.node(name)?)
    }

    /// The field `name`; absent or `null` is `None`.
    pub fn opt<T: FromJson>(&mut self, name: &str) -> Result<Option<T>, Why> {
        match self.take(name) {
            None | Some(Node::Scalar(Value::Null)) => Ok(None),
            Some(node) => T::from_json(node).map(Some),
        }
    }

    /// The field `name`, or `T`'s default when absent.
    pub fn or_default<T: FromJson + Default>(&mut self, name: &str) -> Result<T, Why> {
        match self.take(name) {
            Some(node) => T::from_json(node),
            None => Ok(T::default()),
        }
    }

    /// Reads `node`, an object (`expected` says of what, for errors),
    /// whose fields must all be among `names`: `read` takes what it
    /// needs, and a field it leaves is refused as unknown.
    pub fn read_only<T>(
        node: Node<'a>,
        expected: &str,
        names: &[&str],
        read: impl FnOnce(&mut Self) -> Result<T, Why>,
    ) -> Result<T, Why> {
        let mut fields = Self::of(node, expected)?;
        let read = read(&mut fields)?;
        fields.deny_unknown(names)?;
        Ok(read)
    }

    /// Refuses any field not taken yet.
    pub fn deny_unknown(&self, expected: &[&str]) -> Result<(), Why> {
        match self.0.iter().find(|(_, node)| node.is_some()) {
            Some((name, _)) => Err(format!(
                "unknown field `{}`, expected one of `{}`",
                crate::error::preview(name),
                expected.join("`, `")
            )),
            None => Ok(()),
        }
    }
}

/// The variant `name` of an enum with `names` (in `variants`' order).
pub fn variant<T: Copy>(name: &str, variants: &[(&str, T)]) -> Result<T, Why> {
    variants
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, variant)| *variant)
        .ok_or_else(|| {
            let names: Vec<&str> = variants.iter().map(|(known, _)| *known).collect();
            format!(
                "unknown variant `{}`, expected one of `{}`",
                crate::error::preview(name),
                names.join("`, `")
            )
        })
}

impl FromJson for Value {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Ok(node.into_value())
    }
}

impl FromJson for Arc<Value> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Ok(Arc::new(node.into_value()))
    }
}

impl FromJson for String {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        text(node, "a string")
    }
}

impl FromJson for u64 {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        node.as_u64().ok_or_else(|| invalid(&node, "u64"))
    }
}

impl FromJson for bool {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        match node {
            Node::Scalar(Value::Bool(value)) => Ok(value),
            other => Err(invalid(&other, "a boolean")),
        }
    }
}

/// A non-negative integer that `T` (named `name`) holds.
fn unsigned<T: TryFrom<u64>>(node: Node<'_>, name: &str) -> Result<T, Why> {
    match node.as_u64() {
        Some(number) => T::try_from(number)
            .map_err(|_| format!("invalid value: integer `{number}`, expected {name}")),
        None => Err(invalid(&node, name)),
    }
}

impl FromJson for usize {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        unsigned(node, "usize")
    }
}

impl FromJson for u32 {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        unsigned(node, "u32")
    }
}

impl FromJson for f64 {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        match &node {
            Node::Scalar(Value::Number(number)) => number.as_f64(),
            _ => None,
        }
        .ok_or_else(|| invalid(&node, "f64"))
    }
}

impl FromJson for i64 {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        match &node {
            Node::Scalar(value) => value.as_i64(),
            _ => None,
        }
        .ok_or_else(|| invalid(&node, "i64"))
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        match node {
            Node::Scalar(Value::Null) => Ok(None),
            node => T::from_json(node).map(Some),
        }
    }
}

/// A pair, from a list of exactly two items.
impl<A: FromJson, B: FromJson> FromJson for (A, B) {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut pair = items(node)?.into_iter();
        match (pair.next(), pair.next(), pair.len()) {
            (Some(a), Some(b), 0) => Ok((A::from_json(a)?, B::from_json(b)?)),
            (a, b, more) => Err(format!(
                "invalid length {}, expected a tuple of size 2",
                usize::from(a.is_some()) + usize::from(b.is_some()) + more
            )),
        }
    }
}

/// The items of a list.
pub fn items(node: Node<'_>) -> Result<Vec<Node<'_>>, Why> {
    match node {
        Node::List(items) => Ok(items),
        other => Err(invalid(&other, "a sequence")),
    }
}

/// A list's items, each read as `T`, in a loop: collecting into a
/// `Result` compiles an iterator adapter again for every `T`.
fn read_items<T: FromJson>(node: Node<'_>) -> Result<Vec<T>, Why> {
    let items = items(node)?;
    let mut read = Vec::with_capacity(items.len());
    for item in items {
        read.push(T::from_json(item)?);
    }
    Ok(read)
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        read_items(node)
    }
}

/// Inserted one by one: collecting into a `BTreeSet` or `BTreeMap` sorts
/// first, with a sort compiled for each type collected (some 3 KiB of
/// wasm each).
impl<K: FromJson + Ord> FromJson for BTreeSet<K> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut set = BTreeSet::new();
        for item in items(node)? {
            set.insert(K::from_json(item)?);
        }
        Ok(set)
    }
}

impl<K: FromJson + Ord> FromJson for VecSet<K> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Ok(read_items(node)?.into_iter().collect())
    }
}

/// A map's entries, each key read as `K` from its text.
fn read_entries<K: FromJson, V: FromJson>(node: Node<'_>) -> Result<Vec<(K, V)>, Why> {
    let fields = match node {
        Node::Object(fields) => fields,
        other => return Err(invalid(&other, "a map")),
    };
    let mut entries = Vec::with_capacity(fields.len());
    for (key, node) in fields {
        let key = Node::Scalar(Value::String(key.into_owned()));
        entries.push((K::from_json(key)?, V::from_json(node)?));
    }
    Ok(entries)
}

/// Two names that read as one key (a tab id in upper and lower case) are
/// refused: which of them counts would otherwise hang on the order the
/// tree keeps names in, not on the text.
fn each_key_once<M>(map: M, len: usize, given: usize) -> Result<M, Why> {
    match len == given {
        true => Ok(map),
        false => Err(String::from("a key is given twice, spelt two ways")),
    }
}

/// Inserted one by one (see [`BTreeSet`]'s reader).
impl<K: FromJson + Ord, V: FromJson> FromJson for BTreeMap<K, V> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let entries = read_entries(node)?;
        let given = entries.len();
        let mut map = BTreeMap::new();
        map.extend(entries);
        let len = map.len();
        each_key_once(map, len, given)
    }
}

impl<K: FromJson + Ord, V: FromJson> FromJson for VecMap<K, V> {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let entries = read_entries(node)?;
        let given = entries.len();
        let map: VecMap<K, V> = entries.into_iter().collect();
        let len = map.len();
        each_key_once(map, len, given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree of `text`, at the depth limit of outside text.
    fn parse_tree(text: &str) -> Result<Node<'_>, SyntaxError> {
        super::parse_tree(text, crate::limits::MAX_JSON_DEPTH)
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":[{"b":{},"b":{}}]}"#,
            r#"[{"a":1},{"c":1,"c":1}]"#,
        ] {
            let err = parse_tree(text).unwrap_err().to_string();
            assert!(err.contains("duplicate field"), "{text}: {err}");
        }
        let tree = parse_tree(r#"{"a":[1,-2,3.5,"x",null,true],"b":{}}"#).unwrap();
        assert_eq!(
            tree.into_value(),
            serde_json::json!({"a": [1, -2, 3.5, "x", null, true], "b": {}})
        );
        // Names without escapes borrow from the text; one with an escape
        // is copied, and reads the same.
        let tree = parse_tree(r#"{"b":1,"a\u0063":2,"ab":3}"#).unwrap();
        let Node::Object(fields) = &tree else {
            panic!("{tree:?}")
        };
        let name = |wanted: &str| {
            fields
                .iter()
                .map(|(name, _)| name)
                .find(|name| name.as_ref() == wanted)
                .cloned()
        };
        assert!(matches!(name("ac"), Some(Cow::Owned(_))), "{fields:?}");
        assert!(
            matches!(name("ab"), Some(Cow::Borrowed("ab"))),
            "{fields:?}"
        );
        let err = parse_tree(r#"{"ab":1,"a\u0062":2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `ab`"), "{err}");
        assert!(parse_tree("{} x").is_err(), "trailing text");
    }

    /// Past [`SMALL_OBJECT`] fields an object is sorted and searched: its
    /// fields are found, and a name given twice is refused, as in a small
    /// one.
    #[test]
    fn a_large_object_finds_its_fields_and_refuses_a_name_twice() {
        let names: Vec<String> = (0..40).rev().map(|n| format!("f{n}")).collect();
        let text = |extra: &str| {
            let fields: Vec<String> = names.iter().map(|n| format!(r#""{n}":1"#)).collect();
            format!("{{{}{extra}}}", fields.join(","))
        };
        let whole = text("");
        let tree = parse_tree(&whole).unwrap();
        assert_eq!(tree.field("f7").and_then(Node::as_u64), Some(1));
        assert_eq!(tree.field("f40"), None);
        let mut fields = Fields::of(tree, "x").unwrap();
        for name in &names {
            assert_eq!(fields.req::<u64>(name).unwrap(), 1, "{name}");
        }
        assert!(fields.deny_unknown(&[]).is_ok());
        let err = parse_tree(&text(r#","f3":2"#)).unwrap_err();
        assert!(err.to_string().contains("duplicate field `f3`"), "{err}");
    }

    #[test]
    fn numbers_read_only_into_types_that_hold_them() {
        fn read(text: &str) -> Node<'_> {
            parse_tree(text).unwrap()
        }
        assert_eq!(u64::from_json(read("7")).unwrap(), 7);
        assert!(
            u64::from_json(read("-1"))
                .unwrap_err()
                .contains("integer `-1`")
        );
        assert!(
            u64::from_json(read("1.5"))
                .unwrap_err()
                .contains("floating point")
        );
        assert!(
            u32::from_json(read("4294967296"))
                .unwrap_err()
                .contains("u32")
        );
        assert_eq!(usize::from_json(read("12")).unwrap(), 12);
        assert!(
            usize::from_json(read("-1"))
                .unwrap_err()
                .contains("expected usize")
        );
        assert!(bool::from_json(read("true")).unwrap());
        assert!(
            bool::from_json(read("1"))
                .unwrap_err()
                .contains("expected a boolean")
        );
        assert_eq!(i64::from_json(read("-3")).unwrap(), -3);
        assert_eq!(f64::from_json(read("-3")).unwrap(), -3.0);
        assert_eq!(f64::from_json(read("2.5")).unwrap(), 2.5);
        assert!(f64::from_json(read(r#""2""#)).is_err());
        assert_eq!(
            <(u64, String)>::from_json(read(r#"[1,"a"]"#)).unwrap(),
            (1, "a".to_owned())
        );
        for bad in ["[1]", r#"[1,"a",2]"#, "[]"] {
            let err = <(u64, String)>::from_json(read(bad)).unwrap_err();
            assert!(err.contains("tuple of size 2"), "{bad}: {err}");
        }
        assert!(i64::from_json(read("18446744073709551615")).is_err());
        assert!(
            String::from_json(read("1"))
                .unwrap_err()
                .contains("expected a string")
        );
    }

    /// The two tagged enums read in either order; bad shapes say what is
    /// wrong.
    #[test]
    fn tagged_enums_read_in_both_orders_and_bad_shapes_say_what_is_wrong() {
        use crate::op::Payload;
        use crate::strategy::KeyState;

        let payload = Payload::Resolve {
            value: serde_json::json!({"a": [1, null]}).into(),
            supersedes: Vec::new(),
        };
        let text = serde_json::to_string(&payload).unwrap();
        assert!(text.starts_with(r#"{"kind":"resolve","data":"#), "{text}");
        assert_eq!(serde_json::from_str::<Payload>(&text).unwrap(), payload);
        // Unknown fields around the data are ignored.
        let extra = r#"{"kind":"set","x":[1],"data":{"value":2},"y":{}}"#;
        assert_eq!(
            serde_json::from_str::<Payload>(extra).unwrap(),
            Payload::Set {
                value: serde_json::json!(2).into()
            }
        );
        // Content first (what a serde_json::Value writes back) reads too.
        let late = r#"{"data":{"value":1},"kind":"set"}"#;
        assert_eq!(
            serde_json::from_str::<Payload>(late).unwrap(),
            Payload::Set {
                value: serde_json::json!(1).into()
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
                "missing field `slot`",
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

    /// Both kinds of map refuse two spellings of one key, and keep each
    /// entry; a set keeps each member once.
    #[test]
    fn maps_refuse_a_key_spelt_two_ways_and_sets_keep_members_once() {
        use crate::id::TabId;
        fn read(text: &str) -> Node<'_> {
            parse_tree(text).unwrap()
        }
        let text = r#"{"0a":1,"b":2,"0c":3}"#;
        let tree = BTreeMap::<TabId, u64>::from_json(read(text)).unwrap();
        let vec = VecMap::<TabId, u64>::from_json(read(text)).unwrap();
        let expected = [
            (TabId::new(10), 1),
            (TabId::new(11), 2),
            (TabId::new(12), 3),
        ];
        assert_eq!(tree.into_iter().collect::<Vec<_>>(), expected);
        assert_eq!(vec.into_iter().collect::<Vec<_>>(), expected);
        let twice = r#"{"ab":1,"AB":2}"#;
        for err in [
            BTreeMap::<TabId, u64>::from_json(read(twice)).unwrap_err(),
            VecMap::<TabId, u64>::from_json(read(twice)).unwrap_err(),
        ] {
            assert!(err.contains("spelt two ways"), "{err}");
        }
        let set = BTreeSet::<String>::from_json(read(r#"["b","a","b"]"#)).unwrap();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        let value = read(r#"{"z":[1,{"b":null,"a":"x"}],"y":2.5}"#).into_value();
        assert_eq!(
            value,
            serde_json::json!({"y": 2.5, "z": [1, {"a": "x", "b": null}]})
        );
    }

    /// A map keyed by tab ids (a sum state as versions before resets
    /// stored it) names each tab once: two spellings of one id are
    /// refused, where before the later one in the text counted.
    #[test]
    fn a_map_key_spelt_two_ways_is_refused() {
        use crate::strategy::KeyState;
        let state = |tabs: &str| format!(r#"{{"strategy":"sum","data":{{"tabs":{{{tabs}}}}}}}"#);
        let err =
            serde_json::from_str::<KeyState>(&state(r#""ab":{"p":5,"n":0},"AB":{"p":1,"n":0}"#))
                .unwrap_err();
        assert!(err.to_string().contains("spelt two ways"), "{err}");
        let read =
            serde_json::from_str::<KeyState>(&state(r#""ab":{"p":5,"n":0},"cd":{"p":1,"n":0}"#))
                .unwrap();
        assert_eq!(read.value(), Some(serde_json::json!(6)));
    }

    #[test]
    fn fields_say_what_is_missing_or_unknown() {
        let mut fields = Fields::of(parse_tree(r#"{"a":1,"z":null}"#).unwrap(), "x").unwrap();
        assert_eq!(fields.opt::<u64>("z").unwrap(), None);
        assert_eq!(fields.or_default::<u64>("b").unwrap(), 0);
        assert_eq!(fields.req::<String>("c").unwrap_err(), "missing field `c`");
        assert!(
            fields
                .deny_unknown(&["a"])
                .unwrap_err()
                .contains("unknown field `a`")
        );
        assert_eq!(fields.req::<u64>("a").unwrap(), 1);
        assert!(fields.deny_unknown(&["a"]).is_ok());
        assert!(Fields::of(Node::Scalar(Value::Null), "a thing").is_err());
    }
}
