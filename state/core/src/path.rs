//! Paths inside a value, for selective reads and subscriptions.
//!
//! `items.3.qty` walks object field `items`, array index 3 (or object field
//! `"3"` if that level is an object), then field `qty`. A subscriber to a
//! path asks [`Path::changed`] after each change of the key; it compares
//! only the two sub-values at the path, never the whole value.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::error::{Error, Result, preview};

/// Most segments in a path.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest path segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 256;

/// A validated path of field names and array indices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Path {
    segments: Segments,
}

/// A path's segments. A path of one segment (a field, a list item: most
/// paths a write or a subscription names) keeps it inline, so making one
/// costs one allocation (its text), not two. Always the variant for its
/// length (`Many` holds two or more), so the derived equality holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
enum Segments {
    #[default]
    Root,
    One(Segment),
    Many(Vec<Segment>),
}

impl Segments {
    fn from_vec(mut segments: Vec<Segment>) -> Self {
        match segments.len() {
            0 => Self::Root,
            1 => segments.pop().map_or(Self::Root, Self::One),
            _ => Self::Many(segments),
        }
    }

    fn as_slice(&self) -> &[Segment] {
        match self {
            Self::Root => &[],
            Self::One(segment) => std::slice::from_ref(segment),
            Self::Many(segments) => segments,
        }
    }
}

/// Equal as [`Segment::same`] says, hashed as its text: a segment's index
/// is read from its text, so equal texts mean equal indices and equal
/// indices equal texts.
#[derive(Debug, Clone, Eq)]
struct Segment {
    text: Text,
    /// The segment read as an array index, when it is one.
    index: Option<usize>,
}

/// A segment's text. [`Path::index`] keeps its digits inline, so a write
/// of many list items makes a path per item without allocating; any other
/// segment owns a `String`. Equal and hashed as the text it holds, however
/// it holds it.
#[derive(Debug, Clone)]
enum Text {
    /// ASCII digits in `bytes[start..]` (a `usize` has at most 20).
    Digits {
        bytes: [u8; 20],
        start: u8,
    },
    Owned(String),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            // Only ever ASCII digits, so always UTF-8.
            Self::Digits { bytes, start } => {
                std::str::from_utf8(bytes.get(usize::from(*start)..).unwrap_or_default())
                    .unwrap_or_default()
            }
            Self::Owned(text) => text,
        }
    }

    /// The decimal digits of `index`.
    fn digits(index: usize) -> Self {
        let mut bytes = [0u8; 20];
        let mut at = bytes.len();
        let mut rest = index;
        loop {
            at -= 1;
            bytes[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        // `at` < 20.
        Self::Digits {
            bytes,
            start: at as u8,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for Segment {
    fn eq(&self, other: &Self) -> bool {
        self.same(other)
    }
}

impl std::hash::Hash for Segment {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl Segment {
    /// The sub-value this segment names inside `value`: an object's field,
    /// or a list's item.
    fn step<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        match value {
            Value::Object(map) => map.get(self.text.as_str()),
            Value::Array(items) => self.index.and_then(|i| items.get(i)),
            _ => None,
        }
    }

    /// Whether two segments are the same: two indices by their numbers
    /// (a segment's index is read from its text, canonical decimals only,
    /// so equal numbers mean equal text), anything else by its text.
    fn same(&self, other: &Segment) -> bool {
        match (self.index, other.index) {
            (Some(a), Some(b)) => a == b,
            _ => self.text == other.text,
        }
    }
}

impl Path {
    /// The empty path: the whole value.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses `a.b.3`; segments are non-empty, at most
    /// [`MAX_SEGMENT_LEN`] bytes, without control characters, and there are
    /// at most [`MAX_PATH_DEPTH`] of them.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidPath {
            path: preview(text),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty (use Path::root for the whole value)"));
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            if segments.len() == MAX_PATH_DEPTH {
                return Err(bad("too many segments"));
            }
            if part.is_empty() {
                return Err(bad("empty segment"));
            }
            if part.len() > MAX_SEGMENT_LEN {
                return Err(bad("segment too long"));
            }
            if part.chars().any(char::is_control) {
                return Err(bad("control character"));
            }
            // Only canonical decimal numbers are indices ("03" is a field).
            let canonical = part == "0" || !part.starts_with('0');
            let index = part
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
                .filter(|_| canonical);
            segments.push(Segment {
                text: Text::Owned(part.to_owned()),
                index,
            });
        }
        Ok(Self {
            segments: Segments::from_vec(segments),
        })
    }

    /// The path of one array item (or of the object field named by the
    /// index's decimal text): `Path::index(3)` is `Path::parse("3")`.
    pub fn index(index: usize) -> Self {
        // The digits by hand and inline: `to_string` goes through the
        // formatting machinery and allocates, which a write of many items
        // would pay per item.
        Self {
            segments: Segments::One(Segment {
                text: Text::digits(index),
                index: Some(index),
            }),
        }
    }

    /// The first segment as written, `None` for the root path: what
    /// subscriptions are indexed by (see [`Path::changed_heads`]).
    pub fn first(&self) -> Option<&str> {
        self.segments
            .as_slice()
            .first()
            .map(|segment| segment.text.as_str())
    }

    /// Whether this path and `other` start with the same segment (both
    /// the root, or first segments alike): [`first`](Self::first) compared
    /// without reading either segment as text.
    pub(crate) fn same_first(&self, other: &Path) -> bool {
        match (
            self.segments.as_slice().first(),
            other.segments.as_slice().first(),
        ) {
            (Some(mine), Some(theirs)) => mine.same(theirs),
            (mine, theirs) => mine.is_none() && theirs.is_none(),
        }
    }

    /// The first segments under which `old` and `new` differ: the object
    /// fields, or the array indices (as canonical decimal text), whose
    /// sub-values are not equal. A path whose [`first`](Self::first)
    /// segment is not among them has not changed. `None` when the top
    /// level is not an object on both sides nor an array on both sides:
    /// then any path may have changed.
    ///
    /// One pass over the top level, however many paths are watched: what
    /// keeps notifying selective subscribers flat in their number.
    pub fn changed_heads(old: &Value, new: &Value) -> Option<Vec<String>> {
        match (old, new) {
            (Value::Object(before), Value::Object(after)) => Some(changed_fields(before, after)),
            (Value::Array(before), Value::Array(after)) => Some(
                (0..before.len().max(after.len()))
                    .filter(|&i| before.get(i) != after.get(i))
                    .map(|i| i.to_string())
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.as_slice().len()
    }

    /// Whether this is the root path.
    pub fn is_empty(&self) -> bool {
        self.segments.as_slice().is_empty()
    }

    /// The sub-value at this path, if every step exists.
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        match &self.segments {
            // One step (a row, a field): what a path subscriber asks after
            // every write under its head.
            Segments::One(segment) => segment.step(value),
            segments => Self::walk(segments.as_slice(), value),
        }
    }

    /// Whether the sub-values at this path differ between `old` and `new`
    /// (a missing sub-value differs from any present one).
    pub fn changed(&self, old: &Value, new: &Value) -> bool {
        self.get(old) != self.get(new)
    }

    /// Whether this path starts with every segment of `prefix` (a path
    /// starts with itself and with the root).
    pub fn starts_with(&self, prefix: &Path) -> bool {
        let (mine, theirs) = (self.segments.as_slice(), prefix.segments.as_slice());
        mine.len() >= theirs.len() && mine.iter().zip(theirs).all(|(a, b)| a.same(b))
    }

    /// The order writes at several places are kept in: segment by
    /// segment, each segment shorter first, then by its bytes (so list
    /// indices come in their numeric order), and a path before the paths
    /// inside it. Every path inside a path `p` therefore sorts right after
    /// `p`, together: the places inside a path are found by a binary
    /// search, and among places none of which lies inside another, the
    /// only one that can hold a path is the one sorted just before it.
    pub(crate) fn place_order(&self, other: &Path) -> std::cmp::Ordering {
        // Two list items (the places `set_items` writes): their numbers.
        if let (Segments::One(a), Segments::One(b)) = (&self.segments, &other.segments)
            && let (Some(a), Some(b)) = (a.index, b.index)
        {
            return a.cmp(&b);
        }
        let (mine, theirs) = (self.segments.as_slice(), other.segments.as_slice());
        for (a, b) in mine.iter().zip(theirs) {
            let order = match (a.index, b.index) {
                // Canonical decimals: their numeric order is this order.
                (Some(a), Some(b)) => a.cmp(&b),
                _ => {
                    let (a, b) = (a.text.as_str(), b.text.as_str());
                    (a.len(), a).cmp(&(b.len(), b))
                }
            };
            if order.is_ne() {
                return order;
            }
        }
        mine.len().cmp(&theirs.len())
    }

    /// Whether this path and the path of `segments` lie one inside the
    /// other (or are the same): a write at one touches the other.
    pub(crate) fn overlaps(&self, segments: &[String]) -> bool {
        self.segments
            .as_slice()
            .iter()
            .zip(segments)
            .all(|(mine, theirs)| mine.text.as_str() == theirs)
    }

    /// The sub-value of `value` reached by this path's segments after the
    /// first `skip`: where this path leads inside the value found at its
    /// first `skip` segments.
    pub(crate) fn get_after<'v>(&self, skip: usize, value: &'v Value) -> Option<&'v Value> {
        Self::walk(
            self.segments.as_slice().get(skip..).unwrap_or_default(),
            value,
        )
    }

    fn walk<'v>(segments: &[Segment], value: &'v Value) -> Option<&'v Value> {
        segments
            .iter()
            .try_fold(value, |current, segment| segment.step(current))
    }

    /// Puts `value` at this path inside `target` and returns what was
    /// there: `Some(value)` sets the object field or array item the last
    /// segment names, `None` removes the object field. Every step before
    /// the last must exist; an array item must exist already (an array
    /// neither grows nor shrinks here, so no other index moves).
    ///
    /// On error `target` is unchanged. The root path is refused: a write
    /// of the whole value is a set.
    pub fn put(&self, target: &mut Value, value: Option<Value>) -> Result<Option<Value>> {
        let bad = |reason| Error::InvalidPath {
            path: preview(&self.to_string()),
            reason,
        };
        let Some((last, parents)) = self.segments.as_slice().split_last() else {
            return Err(bad("the root path names the whole value: set it instead"));
        };
        let mut parent = target;
        for segment in parents {
            parent = match parent {
                Value::Object(map) => map.get_mut(segment.text.as_str()),
                Value::Array(items) => segment.index.and_then(|i| items.get_mut(i)),
                _ => return Err(bad("a step before the last is not an object or array")),
            }
            .ok_or_else(|| bad("a step before the last is missing from the value"))?;
        }
        match (parent, value) {
            (Value::Object(map), Some(value)) => {
                Ok(map.insert(last.text.as_str().to_owned(), value))
            }
            (Value::Object(map), None) => Ok(map.remove(last.text.as_str())),
            (Value::Array(items), value) => {
                let slot = last
                    .index
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| bad("the last step is not an index of the array"))?;
                match value {
                    Some(value) => Ok(Some(std::mem::replace(slot, value))),
                    None => Err(bad("an array item cannot be removed")),
                }
            }
            _ => Err(bad("the step before the last is not an object or array")),
        }
    }

    /// The last segment as written, `None` for the root path.
    pub(crate) fn last(&self) -> Option<&str> {
        self.segments
            .as_slice()
            .last()
            .map(|segment| segment.text.as_str())
    }
}

/// The fields whose values differ between two objects (present on one
/// side only, or unequal), in key order.
///
/// One merge walk over both maps, which iterate in key order (serde_json's
/// map is a `BTreeMap`; `preserve_order` would break that, and
/// `limits::tests::json_maps_serialize_in_sorted_order` fails if any build
/// enables it): linear in the number of fields, one string comparison per
/// step instead of a lookup per field.
fn changed_fields(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let mut heads = Vec::new();
    let mut old = before.iter().peekable();
    let mut new = after.iter().peekable();
    loop {
        let step = match (old.peek(), new.peek()) {
            (None, None) => return heads,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match step {
            // Only before has this field.
            std::cmp::Ordering::Less => heads.extend(old.next().map(|(f, _)| f.clone())),
            // Only after has it.
            std::cmp::Ordering::Greater => heads.extend(new.next().map(|(f, _)| f.clone())),
            std::cmp::Ordering::Equal => {
                if let (Some((field, a)), Some((_, b))) = (old.next(), new.next())
                    && a != b
                {
                    heads.push(field.clone());
                }
            }
        }
    }
}

impl FromStr for Path {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(segment.text.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn places_sort_with_the_paths_inside_them_right_after() {
        let texts = [
            "b", "a.b", "10", "a", "2", "a.b.c", "ab", "a.c", "a.b.c.d", "a.bb", "1", "b.a",
        ];
        let mut paths: Vec<Path> = texts.iter().map(|t| Path::parse(t).unwrap()).collect();
        paths.sort_by(|a, b| a.place_order(b));
        let sorted: Vec<String> = paths.iter().map(ToString::to_string).collect();
        assert_eq!(
            sorted,
            [
                "1", "2", "a", "a.b", "a.b.c", "a.b.c.d", "a.c", "a.bb", "b", "b.a", "10", "ab",
            ]
        );
        // Whatever lies inside a path follows it, together.
        for (at, path) in paths.iter().enumerate() {
            let inside = paths.iter().filter(|other| other.starts_with(path)).count();
            assert!(
                paths[at..at + inside].iter().all(|p| p.starts_with(path)),
                "{path}"
            );
        }
    }

    #[test]
    fn an_index_path_is_the_parsed_one() {
        for index in [0, 7, 9, 10, 99, 100, 12_345, usize::MAX] {
            let text = index.to_string();
            let parsed = Path::parse(&text).unwrap();
            assert_eq!(Path::index(index), parsed, "{index}");
            assert_eq!(Path::index(index).to_string(), text);
            // Inline digits and an owned text hash alike (subscriptions and
            // sets of paths find one by the other).
            let set: std::collections::HashSet<Path> = [Path::index(index)].into();
            assert!(set.contains(&parsed), "{index}");
            assert_eq!(Path::index(index).first(), Some(text.as_str()));
            let value = json!({ text.clone(): 1 });
            assert_eq!(Path::index(index).get(&value), Some(&json!(1)));
        }
        // "01" is an object field, never item 1.
        assert_ne!(Path::parse("01").unwrap(), Path::index(1));
        // One segment or several, built either way, compare as paths.
        assert_eq!(Path::parse("a").unwrap().len(), 1);
        assert!(
            Path::parse("a.b")
                .unwrap()
                .starts_with(&Path::parse("a").unwrap())
        );
        assert!(Path::parse("a").unwrap().starts_with(&Path::root()));
        assert_eq!(Path::root(), Path::default());
    }

    #[test]
    fn walks_objects_and_arrays() {
        let value = json!({"items": [{"qty": 1}, {"qty": 2}], "3": {"x": true}});
        let path = Path::parse("items.1.qty").unwrap();
        assert_eq!(path.get(&value), Some(&json!(2)));
        assert_eq!(Path::parse("3.x").unwrap().get(&value), Some(&json!(true)));
        assert_eq!(Path::parse("items.9.qty").unwrap().get(&value), None);
        assert_eq!(Path::parse("items.01").unwrap().get(&value), None);
        assert_eq!(Path::root().get(&value), Some(&value));
        assert_eq!(path.to_string(), "items.1.qty");
    }

    #[test]
    fn changed_looks_only_at_the_path() {
        let path = Path::parse("items.0.qty").unwrap();
        let old = json!({"items": [{"qty": 1, "name": "a"}], "total": 1});
        let other = json!({"items": [{"qty": 1, "name": "b"}], "total": 9});
        let moved = json!({"items": [{"qty": 2, "name": "a"}], "total": 1});
        assert!(!path.changed(&old, &other));
        assert!(path.changed(&old, &moved));
        assert!(path.changed(&old, &json!(null)));
    }

    #[test]
    fn a_changed_path_always_starts_with_a_changed_head() {
        let values = [
            json!(null),
            json!(3),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2, "b": {"c": [1, 2]}}),
            json!({"a": 1, "b": {"c": [1, 3]}, "0": true}),
            json!({"b": {"c": [1, 2]}}),
            json!([]),
            json!([1, {"x": 1}]),
            json!([1, {"x": 2}, 3]),
            json!([2]),
        ];
        let paths = [
            "a", "b", "b.c", "b.c.1", "0", "0.x", "1", "1.x", "2", "00", "z",
        ];
        for old in &values {
            for new in &values {
                let heads = Path::changed_heads(old, new);
                for text in paths {
                    let path = Path::parse(text).unwrap();
                    if path.changed(old, new) {
                        let head = path.first().unwrap();
                        assert!(
                            heads.as_ref().is_none_or(|h| h.iter().any(|x| x == head)),
                            "{text} changed from {old} to {new} but heads are {heads:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            Path::changed_heads(&json!({"a": 1, "b": 2}), &json!({"a": 1, "b": 3, "c": 0})),
            Some(vec!["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            Path::changed_heads(&json!([1, 2]), &json!([1, 5, 6])),
            Some(vec!["1".to_owned(), "2".to_owned()])
        );
        assert_eq!(Path::changed_heads(&json!([1]), &json!({"0": 1})), None);
    }

    #[test]
    fn the_merge_walk_finds_exactly_the_fields_that_differ() {
        // Every pair of objects over the fields a..e, each absent or 0 or 1
        // (3^5 = 243 objects, 59,049 pairs), against the definition.
        let fields = ["a", "b", "c", "d", "e"];
        let objects: Vec<Map<String, Value>> = (0..243u32)
            .map(|mut code| {
                let mut map = Map::new();
                for field in fields {
                    match code % 3 {
                        0 => {}
                        digit => {
                            map.insert(field.to_owned(), json!(digit - 1));
                        }
                    }
                    code /= 3;
                }
                map
            })
            .collect();
        for before in &objects {
            for after in &objects {
                let expected: Vec<String> = fields
                    .iter()
                    .filter(|field| before.get(**field) != after.get(**field))
                    .map(|field| (*field).to_owned())
                    .collect();
                assert_eq!(changed_fields(before, after), expected);
            }
        }
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "a..b", ".a", "a.", "a.\u{0}"] {
            assert!(Path::parse(bad).is_err(), "{bad:?}");
        }
        let deep = vec!["a"; MAX_PATH_DEPTH + 1].join(".");
        assert!(Path::parse(&deep).is_err());
        assert!(Path::parse(&"a".repeat(MAX_SEGMENT_LEN + 1)).is_err());
        let huge = "a.".repeat(1 << 20);
        assert!(Path::parse(&huge).is_err());
    }
}
