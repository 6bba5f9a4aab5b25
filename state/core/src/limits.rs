//! Size and depth limits, and the bounded JSON parsing every piece of
//! untrusted text goes through.
//!
//! Text from storage, other tabs or the user is checked for size first.
//! Read into the core's tree ([`parse_tree_bounded`]), it is then parsed
//! once, by a parser that counts its nesting as it goes and stops at
//! [`MAX_JSON_DEPTH`]: a ten-thousand-deep `[[[[…` is [`Error::TooDeep`]
//! after 96 levels of recursion, not ten thousand. Text read by serde
//! ([`parse_bounded`]) is scanned (iteratively) for its nesting depth
//! before serde_json sees it, whose own recursion limit stays as a second
//! line of defence.

use std::borrow::Cow;
use std::io;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result, preview};

/// Largest wire message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest snapshot, in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// Largest stored entry read back from storage, in bytes.
pub const MAX_STORED_BYTES: usize = 4 << 20;
/// Largest single value (serialized), in bytes. Keeps any one write well
/// inside a message.
pub const MAX_VALUE_BYTES: usize = 256 << 10;
/// Deepest nesting of any JSON document the core parses.
pub const MAX_JSON_DEPTH: usize = 96;
/// Deepest nesting of a value inside a document. The gap to
/// [`MAX_JSON_DEPTH`] leaves room for the envelopes around values.
pub const MAX_VALUE_DEPTH: usize = 64;
/// Most ops in one op group (one batch). The encoded message must still fit
/// [`MAX_MESSAGE_BYTES`], which a batch checks before it commits.
pub const MAX_GROUP_OPS: usize = 4096;
/// Most fields in one patch, and most op ids one write may supersede.
pub const MAX_OP_ITEMS: usize = 1024;
/// Most places one write at paths may write
/// ([`Replica::set_paths`](crate::Replica::set_paths)).
pub const MAX_PATH_WRITES: usize = 4096;
/// Most key states in one sync message.
pub const MAX_SYNC_STATES: usize = 1024;
/// Largest state of one key (serialized), in bytes: an incoming item that
/// would grow a state past it is refused, so every state fits a sync
/// message (with room for the digests beside it) and loads back from
/// storage.
pub const MAX_STATE_BYTES: usize = 896 << 10;
/// Largest state a local write may leave, in bytes: half of
/// [`MAX_STATE_BYTES`], so two tabs growing a key at once still merge
/// under the hard limit instead of refusing each other's writes.
pub const MAX_LOCAL_STATE_BYTES: usize = MAX_STATE_BYTES / 2;
/// Most live slots of one sum key (one per writer that wrote within
/// [`COMPACT_AFTER_MS`]), and most slots a reset may observe. A group of
/// ops, a reset or another tab's state that would leave more is refused
/// whole: a state past it is refused by every replica that reads it.
pub const MAX_SUM_SLOTS: usize = 4096;
/// Most full keys one declaration may have in a replica (a private key has
/// one per unit address, a building key one per building): a message
/// naming made-up units or buildings cannot fill the storage.
pub const MAX_KEYS_PER_DECLARATION: usize = 256;
/// Most full keys one private declaration may have in one building of an
/// apartment (one per unit address there): a peer allowed to write one
/// building, naming made-up units in it, takes that building's share of
/// [`MAX_KEYS_PER_DECLARATION`], not the whole apartment's.
pub const MAX_PRIVATE_KEYS_PER_BUILDING: usize = 64;
/// Most keys with writes held for a later declaration (see
/// [`Replica::declare`](crate::Replica::declare)).
pub const MAX_PARKED_KEYS: usize = 256;
/// Most bytes of writes held for later: for undeclared keys, and for items
/// stamped ahead of the local clock by more than the allowed skew.
pub const MAX_HELD_BYTES: usize = 1 << 20;
/// How long a write stays individually visible inside a key's state:
/// writes more than this older than the key's newest write are compacted
/// (sum slots folded, superseded ids and old conflicts dropped, old merge
/// fields folded into the whole value). A sum or merge op that reaches a
/// replica later than that behind the key's newest write is refused as
/// stale ([`Error::Stale`], see [`KeyState::floor`](crate::KeyState::floor)).
pub const COMPACT_AFTER_MS: u64 = 14 * 24 * 60 * 60 * 1000;
/// How far a merge key's fold horizon moves at a time: it is the key's
/// floor ([`MergeState::floor`](crate::MergeState::floor)) rounded down
/// to a whole step, so folds (each rebuilds the whole base) happen at most
/// once a step of the newest write's time, whoever stamps fields at the
/// floor. Below the floor, so every write admitted in time still beats
/// every folded one.
pub const FOLD_STEP_MS: u64 = 60 * 60 * 1000;
/// A sum writer opens a new slot instead of adding to one it last wrote
/// this long ago: replicas whose clocks run ahead (by at most
/// [`MAX_CLOCK_AHEAD_MS`](crate::MAX_CLOCK_AHEAD_MS), plus as much again
/// through what they observed) may fold a slot sooner than its writer's
/// clock says.
pub const ROTATE_SLOT_AFTER_MS: u64 = COMPACT_AFTER_MS - 3 * crate::clock::MAX_CLOCK_AHEAD_MS;
/// Longest object field name a patch may carry, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 1024;

/// Longest error detail kept from serde, in characters.
const REASON_CHARS: usize = 160;

/// The key serde_json gives an object standing for a raw value: with its
/// `raw_value` feature, a `Value` read from text takes an object whose
/// first key is this for the JSON text in its string, parsed again with a
/// nesting limit of its own. No crate of this workspace enables it, but
/// features unify: an application that does (for its own reasons) turns
/// it on for the state manager too, so such objects stay refused.
pub(crate) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Fails if `text` nests `[`/`{` deeper than `limit`. Strings are skipped
/// (with their escapes), so brackets inside them do not count. Also fails
/// on an object whose first key is serde_json's raw-value token
/// (however its characters are escaped): a `Value` would parse the
/// string under it as JSON of its own, deeper than this scan saw (and
/// the same again inside it), so untrusted text could reach any depth.
pub(crate) fn check_depth(text: &str, limit: usize, what: &'static str) -> Result<()> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Just after a `{` (and whitespace): the next string is a first key.
    let mut opened = false;
    // Where the first key being read starts (at its quote).
    let mut first_key = None;
    for (at, byte) in text.bytes().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
                if let Some(start) = first_key.take()
                    && is_raw_value_token(&text[start..=at])
                {
                    return Err(raw_value_token(what));
                }
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                if opened {
                    first_key = Some(at);
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(Error::TooDeep { what, limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !byte.is_ascii_whitespace() {
            opened = byte == b'{';
        }
    }
    Ok(())
}

/// The error for an object keyed first by [`RAW_VALUE_TOKEN`].
#[cold]
fn raw_value_token(what: &'static str) -> Error {
    Error::Malformed {
        what,
        reason: format!("{RAW_VALUE_TOKEN:?} is reserved as an object's first key"),
    }
}

/// Whether the JSON string `quoted` (with its quotes) is
/// [`RAW_VALUE_TOKEN`], escapes read.
fn is_raw_value_token(quoted: &str) -> bool {
    let raw = &quoted[1..quoted.len() - 1];
    if !raw.contains('\\') {
        return raw == RAW_VALUE_TOKEN;
    }
    // Escaped: at most six bytes per character.
    raw.len() <= RAW_VALUE_TOKEN.len() * 6
        && crate::decode::string_text(quoted).is_some_and(|key| key == RAW_VALUE_TOKEN)
}

/// Parses untrusted JSON text with serde: size cap, depth scan
/// (iterative, so a deep document never reaches a recursive parser), then
/// serde_json. For a type that reads only through serde; the core's own
/// formats and the relay protocol go through [`parse_tree_bounded`].
pub fn parse_bounded<T: DeserializeOwned>(
    text: &str,
    max_bytes: usize,
    what: &'static str,
) -> Result<T> {
    check_text(text, max_bytes, what)?;
    serde_json::from_str(text).map_err(|err| Error::Malformed {
        what,
        reason: serde_reason(&err),
    })
}

/// What a serde parse or a skim of outside text checks first: its size,
/// then its nesting (iteratively, before any recursive parser sees it).
fn check_text(text: &str, max_bytes: usize, what: &'static str) -> Result<()> {
    check_size(text, max_bytes, what)?;
    check_depth(text, MAX_JSON_DEPTH, what)
}

/// Refuses `text` longer than `max_bytes`.
fn check_size(text: &str, max_bytes: usize, what: &'static str) -> Result<()> {
    if text.len() > max_bytes {
        return Err(Error::TooLarge {
            what,
            size: text.len(),
            limit: max_bytes,
        });
    }
    Ok(())
}

/// Parses untrusted JSON text into a tree ([`Node`](crate::decode::Node)):
/// its size against `max_bytes`, then the parser, which refuses nesting
/// deeper than [`MAX_JSON_DEPTH`] as it reads ([`Error::TooDeep`]), a
/// name given twice in one object, and an object keyed first by
/// serde_json's raw-value token, as [`parse_bounded`]'s scan refuses it.
/// A text refused for its syntax is scanned too, so the error is the
/// scan's where it has one, as when the scan came first. `what` names
/// the text in the error.
pub fn parse_tree_bounded<'t>(
    text: &'t str,
    max_bytes: usize,
    what: &'static str,
) -> Result<crate::decode::Node<'t>> {
    use crate::decode::Refusal;
    check_size(text, max_bytes, what)?;
    // The parser keeps the depth limit and refuses the raw-value token
    // itself, as it reads: one pass over a text that parses, not a scan
    // and a parse. A text that does not is scanned then, so that one
    // nested too deep is refused as such wherever its syntax breaks.
    crate::decode::parse_tree(text, MAX_JSON_DEPTH).map_err(|err| match err.refusal() {
        Refusal::TooDeep => Error::TooDeep {
            what,
            limit: MAX_JSON_DEPTH,
        },
        Refusal::RawValueToken => raw_value_token(what),
        Refusal::Syntax => match check_depth(text, MAX_JSON_DEPTH, what) {
            Err(first) => first,
            Ok(()) => Error::Malformed {
                what,
                reason: short_reason(err.to_string()),
            },
        },
    })
}

/// The top-level fields of untrusted text, one JSON object, named in
/// `read` or `note`, in the text's order (a name given twice is there
/// twice), after its size and depth are checked (a scan, which also
/// refuses serde_json's raw-value token): those named in `read` read into
/// trees as [`parse_tree_bounded`] reads, those in `note` skipped by their
/// syntax alone ([`Skimmed::Null`](crate::decode::Skimmed::Null) or
/// [`Skimmed::Skipped`](crate::decode::Skimmed::Skipped)), the rest
/// skipped and not kept. Skipping sees no name given twice, no lone
/// surrogate, no number out of range, as serde's `IgnoredAny` does not:
/// for a message whose whole may not read, to learn what its envelope
/// says.
pub fn skim_bounded<'t>(
    text: &'t str,
    max_bytes: usize,
    what: &'static str,
    read: &[&str],
    note: &[&str],
) -> Result<Vec<(Cow<'t, str>, crate::decode::Skimmed<'t>)>> {
    check_text(text, max_bytes, what)?;
    crate::decode::skim(text, read, note).map_err(|err| Error::Malformed {
        what,
        reason: short_reason(err.to_string()),
    })
}

/// [`parse_tree_bounded`], then read as `T` by its
/// [`FromJson`](crate::decode::FromJson) reader.
pub fn read_bounded<T: crate::decode::FromJson>(
    text: &str,
    max_bytes: usize,
    what: &'static str,
) -> Result<T> {
    T::from_json(parse_tree_bounded(text, max_bytes, what)?).map_err(|why| Error::Malformed {
        what,
        reason: short_reason(why),
    })
}

/// A serde error as a short string.
pub(crate) fn serde_reason(err: &serde_json::Error) -> String {
    short_reason(err.to_string())
}

/// A reason cut to [`REASON_CHARS`].
pub(crate) fn short_reason(text: String) -> String {
    if text.chars().count() > REASON_CHARS {
        preview(&text)
    } else {
        text
    }
}

/// An upper bound of a scalar's serialized length, found without
/// serializing it; `None` for arrays and objects. An integer is its digits
/// and sign, any other number at most 24 characters
/// (`-2.2250738585072014e-308`); a string is its bytes plus its
/// quotes, one more per `"` or `\`, and at most five more per control
/// character (`\u001f`), which one pass over the bytes counts.
pub(crate) fn scalar_len_bound(value: &Value) -> Option<usize> {
    match value {
        Value::Null | Value::Bool(_) => Some(5),
        // An integer's digits and sign; any other number at most 24.
        Value::Number(number) => Some(match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => digits(n),
            (None, Some(n)) => digits(n.unsigned_abs()) + 1,
            (None, None) => 24,
        }),
        Value::String(text) => Some(string_len_bound(text)),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The serialized length of `value`, exactly, as [`encoded_len`] counts
/// it (stopping past `limit`), without serializing what is simple to count:
/// null, booleans, integers and strings without escapes are counted here
/// (a value written in place is usually one of them); anything else is
/// serialized.
pub(crate) fn exact_len(value: &Value, limit: usize) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => digits(n),
            (None, Some(n)) => digits(n.unsigned_abs()) + 1,
            (None, None) => encoded_len(value, limit),
        },
        Value::String(text) if plain(text) => text.len() + 2,
        // Text with escapes: counted by the encoder, which writes them.
        Value::String(_) | Value::Array(_) | Value::Object(_) => encoded_len(value, limit),
    }
}

/// Whether `text` is written as it is between its quotes (no byte needs
/// an escape): most text. Eight bytes at a time (whether any byte of a
/// word is below 0x20, or equal to `"` or `\\`, takes a few arithmetic
/// steps on the word), so the byte-by-byte count is only for the rest.
fn plain(text: &str) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // Exact as a whole-word answer: a byte ≥ 0x80 has its high bit set,
    // so `!word` keeps it out.
    let any_below =
        |word: u64, bound: u8| word.wrapping_sub(ONES * u64::from(bound)) & !word & HIGH;
    let any_equal = |word: u64, byte: u8| any_below(word ^ (ONES * u64::from(byte)), 1);
    let bytes = text.as_bytes();
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            return false;
        };
        let word = u64::from_le_bytes(word);
        if any_below(word, 0x20) | any_equal(word, b'"') | any_equal(word, b'\\') != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
}

/// Decimal digits of `n`.
pub(crate) fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// [`scalar_len_bound`] of a string (also an object's key).
pub(crate) fn string_len_bound(text: &str) -> usize {
    if plain(text) {
        return text.len() + 2;
    }
    text.bytes().fold(2usize, |len, byte| {
        len.saturating_add(match byte {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
    })
}

/// Checks a value's nesting depth and serialized size, without recursion.
/// Returns an upper bound of the serialized size, so a caller need not
/// measure the value a second time.
///
/// One walk over the tree checks the depth and adds up a bound of the
/// length ([`scalar_len_bound`] per scalar, exact for the brackets, commas,
/// colons and keys around them); only a value whose bound passes the limit
/// is serialized (counted, not built) to measure it exactly.
pub(crate) fn check_value(value: &Value, what: &'static str) -> Result<usize> {
    check_value_at(value, 0, what)
}

/// [`check_value`] for a value put `depth` levels deep inside another (a
/// write at a path of `depth` segments): its nesting counts from there.
pub(crate) fn check_value_at(value: &Value, depth: usize, what: &'static str) -> Result<usize> {
    check_value_noting_nulls(value, depth, what, &mut false)
}

/// [`check_value_at`], setting `nulls` if the value holds a null
/// anywhere (noted on the same walk; see `put_json`). Complete whenever
/// the value is measured, even past the size limit.
pub(crate) fn check_value_noting_nulls(
    value: &Value,
    depth: usize,
    what: &'static str,
    nulls: &mut bool,
) -> Result<usize> {
    // Scalars count at once; arrays and objects wait on the stack with
    // their depth.
    fn visit<'v>(
        child: &'v Value,
        depth: usize,
        bound: &mut usize,
        stack: &mut Vec<(&'v Value, usize)>,
        nulls: &mut bool,
    ) {
        match scalar_len_bound(child) {
            Some(len) => {
                *nulls |= child.is_null();
                *bound = bound.saturating_add(len);
            }
            None => stack.push((child, depth)),
        }
    }
    if depth > MAX_VALUE_DEPTH {
        return Err(Error::TooDeep {
            what,
            limit: MAX_VALUE_DEPTH,
        });
    }
    // A scalar within the limit (most writes) has nothing to walk.
    if let Some(len) = scalar_len_bound(value)
        && len <= MAX_VALUE_BYTES
    {
        *nulls |= value.is_null();
        return Ok(len);
    }
    let mut bound = 0usize;
    let mut stack = Vec::new();
    visit(value, depth, &mut bound, &mut stack, nulls);
    while let Some((container, depth)) = stack.pop() {
        if depth + 1 > MAX_VALUE_DEPTH {
            return Err(Error::TooDeep {
                what,
                limit: MAX_VALUE_DEPTH,
            });
        }
        match container {
            Value::Array(items) => {
                // Brackets and commas.
                bound = bound.saturating_add(items.len().max(1) + 1);
                for child in items {
                    visit(child, depth + 1, &mut bound, &mut stack, nulls);
                }
            }
            Value::Object(map) => {
                // Written first (maps are sorted), it would not read back
                // (see `check_depth`).
                if map.keys().next().is_some_and(|key| key == RAW_VALUE_TOKEN) {
                    return Err(raw_value_token(what));
                }
                // Braces and commas, then each key and its colon.
                bound = bound.saturating_add(map.len().max(1) + 1);
                for (field, child) in map {
                    bound = bound.saturating_add(string_len_bound(field) + 1);
                    visit(child, depth + 1, &mut bound, &mut stack, nulls);
                }
            }
            _ => {}
        }
    }
    if bound <= MAX_VALUE_BYTES {
        return Ok(bound);
    }
    let size = encoded_len(value, MAX_VALUE_BYTES);
    if size > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            what,
            size,
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(size)
}

/// Serialized JSON length of `value` without building the text; counting
/// stops a little past `limit`.
pub fn encoded_len<T: serde::Serialize + ?Sized>(value: &T, limit: usize) -> usize {
    let mut sink = Sink::Count { count: 0, limit };
    // The only error is the counter refusing to go on past the limit.
    let _ = serde_json::to_writer(&mut sink, value);
    match sink {
        Sink::Count { count, .. } => count,
        Sink::Text(_) | Sink::Hash(_) => 0,
    }
}

/// `value` as JSON text, as `serde_json::to_string` writes it, through
/// the writer [`encoded_len`] counts with: a type's `Serialize` code is
/// then compiled once for both (some 10 KiB of wasm for the core's
/// types), at the price of checking the text is UTF-8 (it always is).
pub fn to_text<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut sink = Sink::Text(Vec::with_capacity(128));
    serde_json::to_writer(&mut sink, value)?;
    let bytes = match sink {
        Sink::Text(bytes) => bytes,
        Sink::Count { .. } | Sink::Hash(_) => Vec::new(),
    };
    String::from_utf8(bytes).map_err(<serde_json::Error as serde::ser::Error>::custom)
}

/// The 64-bit FNV-1a hash of `value`'s JSON text, as [`to_text`] writes
/// it, without building the text; `None` if it does not serialize.
pub(crate) fn text_hash<T: serde::Serialize + ?Sized>(value: &T) -> Option<u64> {
    let mut sink = Sink::Hash(FNV_OFFSET);
    serde_json::to_writer(&mut sink, value).ok()?;
    match sink {
        Sink::Hash(hash) => Some(hash),
        Sink::Count { .. } | Sink::Text(_) => None,
    }
}

/// FNV-1a's starting value: the hash of no bytes.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes`, continuing from `hash`.
pub(crate) fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Splits `items`, each with its encoded length, in order, into groups of
/// at most `most` items whose lengths (with a comma after each) add up to at
/// most `budget`: how a list too large for one message goes as several
/// (sync states, a relay's snapshot, pushes, acks). An item over the budget
/// on its own gets a group of its own; a caller that cannot send it leaves
/// it out before.
pub fn split_by_len<T>(
    items: impl IntoIterator<Item = (T, usize)>,
    budget: usize,
    most: usize,
) -> Vec<Vec<T>> {
    first_groups_by_len(items, budget, most, usize::MAX).0
}

/// The first `groups` groups [`split_by_len`] makes of `items`, reading no
/// further than one item past them, and whether items are left: a list
/// sent a group at a time (a relay's snapshot over HTTP) costs what the
/// group costs, not what the whole list does.
pub fn first_groups_by_len<T>(
    items: impl IntoIterator<Item = (T, usize)>,
    budget: usize,
    most: usize,
    groups: usize,
) -> (Vec<Vec<T>>, bool) {
    let mut items = items.into_iter().peekable();
    let mut made = Vec::new();
    while made.len() < groups {
        let mut group = Vec::new();
        let mut size = 0usize;
        while let Some((_, len)) = items.peek() {
            let len = len.saturating_add(1);
            if !group.is_empty() && (group.len() >= most || size.saturating_add(len) > budget) {
                break;
            }
            size = size.saturating_add(len);
            if let Some((item, _)) = items.next() {
                group.push(item);
            }
        }
        if group.is_empty() {
            break;
        }
        made.push(group);
    }
    let left = items.peek().is_some();
    (made, left)
}

/// Where serialized JSON goes: counted (stopping past a limit), kept as
/// text, or hashed. One writer type for all three.
enum Sink {
    Count { count: usize, limit: usize },
    Text(Vec<u8>),
    Hash(u64),
}

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Count { count, limit } => {
                *count = count.saturating_add(buf.len());
                if *count > *limit {
                    return Err(io::Error::other("over limit"));
                }
            }
            Self::Text(bytes) => bytes.extend_from_slice(buf),
            Self::Hash(hash) => *hash = fnv1a(*hash, buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Canonical text of a value, used only to break exact ties between two
/// different values carrying the same stamp and op id (forged or buggy ops),
/// so even then every replica keeps the same one.
pub(crate) fn canonical(value: &Value) -> String {
    to_text(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_byte_that_needs_an_escape_is_found_wherever_it_is() {
        let needs = [0x00, 0x01, 0x08, 0x0c, b'\n', 0x1f, b'"', b'\\'];
        let never = [0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7e, 0x7f];
        for len in [1, 7, 8, 9, 16, 17, 23] {
            for at in 0..len {
                for byte in needs.into_iter().chain(never) {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    let text = String::from_utf8(bytes).unwrap();
                    assert_eq!(plain(&text), !needs.contains(&byte), "{text:?}");
                    let value = Value::String(text);
                    assert_eq!(
                        exact_len(&value, usize::MAX),
                        encoded_len(&value, usize::MAX)
                    );
                }
            }
        }
        // Multi-byte characters (every byte 0x80 or above) need none.
        assert!(plain("é ☃ 🎉 ünïcödé text of some length"));
    }

    #[test]
    fn exact_len_counts_what_the_encoder_writes() {
        let every_byte: String = (0u8..=0x7f).map(char::from).collect();
        for value in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(7),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.001),
            json!(1e300),
            json!(""),
            json!(every_byte),
            json!("é ☃ 🎉 \u{7f}"),
            json!([1, "a\n", null]),
            json!({"k\"": {"x": [true]}}),
        ] {
            assert_eq!(
                exact_len(&value, usize::MAX),
                encoded_len(&value, usize::MAX),
                "{value}"
            );
        }
    }

    /// The one writer writes what `serde_json` writes: the same text, its
    /// length, and the FNV-1a hash of that text (an independent byte loop).
    #[test]
    fn text_length_and_hash_come_from_the_same_text() {
        let every_byte: String = (0u8..=0x7f).map(char::from).collect();
        for value in [
            json!(null),
            json!(-1.5e300),
            json!(every_byte),
            json!("é ☃ 🎉"),
            json!({"k\"": {"x": [true, 1, null]}, "b": []}),
        ] {
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(to_text(&value).unwrap(), text);
            assert_eq!(encoded_len(&value, usize::MAX), text.len());
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in text.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            assert_eq!(text_hash(&value), Some(hash), "{text}");
        }
        // A map whose keys JSON cannot write: an error, as serde_json says.
        let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
        assert!(serde_json::to_string(&bad).is_err());
        assert!(to_text(&bad).is_err());
        assert_eq!(text_hash(&bad), None);
    }

    #[test]
    fn lists_split_by_length_and_count_in_order() {
        // Lengths count a comma each: 3 + 1 and 4 + 1 fit a budget of 9.
        let items = [("a", 3), ("b", 4), ("c", 4), ("d", 20), ("e", 1)];
        assert_eq!(
            split_by_len(items, 9, 10),
            vec![vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]
        );
        assert_eq!(
            split_by_len([(1, 0), (2, 0), (3, 0)], 100, 2),
            vec![vec![1, 2], vec![3]]
        );
        assert!(split_by_len(Vec::<(u8, usize)>::new(), 10, 10).is_empty());
    }

    /// Groups made the plain way, all at once: the oracle for
    /// [`first_groups_by_len`].
    fn groups_at_once(items: &[(usize, usize)], budget: usize, most: usize) -> Vec<Vec<usize>> {
        let mut groups = Vec::new();
        let mut group = Vec::new();
        let mut size = 0usize;
        for &(item, len) in items {
            let len = len + 1;
            if !group.is_empty() && (group.len() >= most || size + len > budget) {
                groups.push(std::mem::take(&mut group));
                size = 0;
            }
            size += len;
            group.push(item);
        }
        if !group.is_empty() {
            groups.push(group);
        }
        groups
    }

    #[test]
    fn the_first_groups_are_those_of_the_whole_split_and_say_what_is_left() {
        // Lengths from a small generator: a mix of small items, items near
        // the budget and items past it (alone in a group).
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            usize::try_from(seed >> 33).unwrap_or(0)
        };
        for round in 0..200 {
            let items: Vec<(usize, usize)> = (0..next() % 40).map(|i| (i, next() % 120)).collect();
            let (budget, most) = (50 + next() % 100, 1 + next() % 6);
            let all = groups_at_once(&items, budget, most);
            assert_eq!(split_by_len(items.iter().copied(), budget, most), all);
            for groups in [1, 2, 3, usize::MAX] {
                let (first, left) =
                    first_groups_by_len(items.iter().copied(), budget, most, groups);
                let want = all.len().min(groups);
                assert_eq!(first, all[..want], "round {round}, {groups} groups");
                assert_eq!(left, all.len() > want, "round {round}, {groups} groups");
            }
        }
    }

    #[test]
    fn an_object_keyed_first_by_serde_json_s_raw_value_token_is_refused() {
        // What the check stops: a `Value` parses the string under the key
        // as JSON of its own, at a depth the scan never saw (with
        // serde_json's `raw_value`, which the tests turn on as an
        // application may).
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let smuggled = format!(
            r#"{{"v":[{{"{RAW_VALUE_TOKEN}":{}}}]}}"#,
            serde_json::to_string(&deep).unwrap()
        );
        let value: Value = serde_json::from_str(&smuggled).unwrap();
        assert!(
            value["v"][0].is_array(),
            "serde_json read the string as JSON"
        );
        let escaped = smuggled
            .replacen('$', "\\u0024", 1)
            .replacen("Raw", "R\\u0061w", 1);
        assert_ne!(escaped, smuggled);
        for text in [&smuggled, &escaped] {
            let err = parse_bounded::<Value>(text, 1 << 20, "x").unwrap_err();
            assert!(
                err.to_string()
                    .contains("reserved as an object's first key"),
                "{err}"
            );
        }
        // Nor may a value written here hold one: it would not read back.
        let written = json!({"a": {RAW_VALUE_TOKEN: "[]"}});
        assert!(check_value(&written, "x").is_err());
        assert!(check_value(&json!({"a": {"!": 1, RAW_VALUE_TOKEN: "[]"}}), "x").is_ok());
        // As a value, or a key after the first, it is plain text to a
        // `Value`, and taken.
        for text in [
            format!(r#"{{"a":"{RAW_VALUE_TOKEN}"}}"#),
            format!(r#"{{"a":1,"{RAW_VALUE_TOKEN}":"[]"}}"#),
            format!(r#"["{RAW_VALUE_TOKEN}"]"#),
        ] {
            let value = parse_bounded::<Value>(&text, 1 << 20, "x").unwrap();
            assert_eq!(
                value,
                serde_json::from_str::<Value>(&text).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn the_tree_parser_keeps_the_depth_limit_and_the_token_rule_as_it_reads() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse_tree_bounded(&nested(MAX_JSON_DEPTH), 1 << 20, "x").is_ok());
        for text in [
            nested(MAX_JSON_DEPTH + 1),
            "[".repeat(1_000_000),
            format!(r#"{{"a":{}}}"#, nested(MAX_JSON_DEPTH)),
        ] {
            assert_eq!(
                parse_tree_bounded(&text, usize::MAX, "x").unwrap_err(),
                Error::TooDeep {
                    what: "x",
                    limit: MAX_JSON_DEPTH
                }
            );
        }
        // Brackets in strings are text.
        let text = format!("[\"{}\"]", "[".repeat(1000));
        assert!(parse_tree_bounded(&text, 1 << 20, "x").is_ok());
        // The raw-value token, spelt plainly or escaped, first in an
        // object at any depth.
        let smuggled = format!(r#"{{"v":[{{"{RAW_VALUE_TOKEN}":"[]"}}]}}"#);
        let escaped = smuggled.replacen('$', "\\u0024", 1);
        for text in [&smuggled, &escaped] {
            let err = parse_tree_bounded(text, 1 << 20, "x").unwrap_err();
            assert_eq!(err, raw_value_token("x"), "{text}");
        }
        for text in [
            format!(r#"{{"a":"{RAW_VALUE_TOKEN}"}}"#),
            format!(r#"{{"a":1,"{RAW_VALUE_TOKEN}":"[]"}}"#),
            format!(r#"["{RAW_VALUE_TOKEN}"]"#),
        ] {
            let tree = parse_tree_bounded(&text, 1 << 20, "x").unwrap();
            assert_eq!(
                tree.into_value(),
                serde_json::from_str::<Value>(&text).unwrap()
            );
        }
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        let text = format!("[\"{}\"]", "[".repeat(1000));
        assert!(check_depth(&text, 2, "x").is_ok());
        let escaped = r#"["\"[[[[" ]"#;
        assert!(check_depth(escaped, 1, "x").is_ok());
    }

    #[test]
    fn a_scalar_bound_is_never_below_the_serialized_length() {
        let long = "\u{1f}\"\\é\n\u{7f}".repeat(50);
        for value in [
            json!(null),
            json!(true),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(-f64::MAX),
            json!(f64::MIN_POSITIVE),
            json!(-f64::MIN_POSITIVE),
            json!(-1.234_567_890_123_456_7e-300),
            json!(""),
            json!(long),
        ] {
            let bound = scalar_len_bound(&value).unwrap();
            assert!(bound >= encoded_len(&value, usize::MAX), "{value}");
        }
        assert_eq!(scalar_len_bound(&json!([1])), None);
        // Text without escapes is bounded exactly, so mid-size strings stay
        // on the fast path.
        let plain = json!("plain text, é and ü".repeat(1_000));
        assert_eq!(
            scalar_len_bound(&plain),
            Some(encoded_len(&plain, usize::MAX))
        );
    }

    #[test]
    fn deep_input_is_a_typed_error_not_a_stack_overflow() {
        let text = "[".repeat(1_000_000);
        assert_eq!(
            parse_bounded::<Value>(&text, usize::MAX, "x"),
            Err(Error::TooDeep {
                what: "x",
                limit: MAX_JSON_DEPTH
            })
        );
    }

    #[test]
    fn json_maps_serialize_in_sorted_order() {
        // Replicas compare serialized states byte for byte. That holds only
        // while serde_json's `Map` is a sorted map; if some crate in the
        // build enables serde_json's `preserve_order` feature, this fails
        // here instead of replicas diverging silently.
        let value: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(value.to_string(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn value_limits() {
        let mut deep = json!(1);
        for _ in 0..MAX_VALUE_DEPTH {
            deep = json!([deep]);
        }
        assert!(check_value(&deep, "v").is_ok());
        let deeper = json!({ "a": deep });
        assert!(matches!(
            check_value(&deeper, "v"),
            Err(Error::TooDeep { .. })
        ));
        let big = Value::String("x".repeat(MAX_VALUE_BYTES));
        assert!(matches!(
            check_value(&big, "v"),
            Err(Error::TooLarge { .. })
        ));
        // An empty array is a level too.
        let mut empty = json!([]);
        for _ in 1..MAX_VALUE_DEPTH {
            empty = json!([empty]);
        }
        assert!(check_value(&empty, "v").is_ok());
        assert!(matches!(
            check_value(&json!([empty]), "v"),
            Err(Error::TooDeep { .. })
        ));
    }

    #[test]
    fn the_checked_size_is_never_below_the_serialized_length() {
        let scalars = [
            json!(null),
            json!(false),
            json!(0),
            json!(-7),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(-f64::MAX),
            json!(1.5e-300),
            json!(""),
            json!("\u{1f}\"\\é\n"),
        ];
        let mut values: Vec<Value> = scalars.to_vec();
        values.push(json!([]));
        values.push(json!({}));
        // Arrays and objects of every scalar, nested three levels.
        let mut level: Vec<Value> = scalars.to_vec();
        for _ in 0..3 {
            let array = Value::Array(level.clone());
            let object: serde_json::Map<String, Value> = level
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("k\"{i}\u{1}"), v.clone()))
                .collect();
            values.push(array.clone());
            values.push(Value::Object(object.clone()));
            level = vec![array, Value::Object(object), json!([[], {}, [[]]])];
            values.extend(level.iter().cloned());
        }
        for value in values {
            let checked = check_value(&value, "v").unwrap();
            assert!(checked >= encoded_len(&value, usize::MAX), "{value}");
        }
    }

    #[test]
    fn a_value_is_measured_exactly_when_its_bound_passes_the_limit() {
        // A newline counts six in the bound but takes two bytes: the bound
        // passes the limit, the value does not, and it is accepted.
        let lines = Value::String("\n".repeat(MAX_VALUE_BYTES / 4));
        assert_eq!(
            check_value(&lines, "v").unwrap(),
            encoded_len(&lines, usize::MAX)
        );
        let over = Value::Array(vec![lines.clone(), lines.clone(), lines]);
        assert!(matches!(
            check_value(&over, "v"),
            Err(Error::TooLarge { .. })
        ));
    }
}
