//! Writes at a path inside a value: one field of a large document
//! changed without handing the whole document around.
//!
//! A [`set`](Replica::set) of a value with 10,000 fields costs the caller a
//! copy of the value and the replica a walk of it (the size check, the
//! change it reports), whatever changed. [`Replica::set_path`] writes one
//! place, [`Replica::set_paths`] several apart in one write, and
//! [`Replica::set_items`] items of a typed list. For a last-write-wins key
//! holding an untyped [`Value`](serde_json::Value) (or, for `set_items`, a
//! list of any item type) they change the stored value in place, and what
//! they do is bounded by the sub-values written and replaced, not by the
//! document:
//!
//! - the value is shared copy-on-write: nobody else holds it, so nothing
//!   is copied (whoever still holds an older change or write keeps their
//!   own copy, made at that moment);
//! - the size limit is kept by updating the key's size estimate with the
//!   lengths of the sub-values written and replaced;
//! - the [`Change`](super::Change) keeps only what was at the path, so
//!   subscribers to other paths are told apart without a diff.
//!
//! What stays in proportion to the document:
//!
//! - The op it makes is an ordinary set of the whole new value, so every
//!   receiver (another tab, the relay, a device of an older version)
//!   applies it as it always did. For a key that syncs (session or
//!   persistent), sending and saving it cost what the value costs: the
//!   flat cost is a memory key's. Two tabs writing different paths of one
//!   last-write-wins key at once keep one whole value, as two sets would;
//!   fields edited concurrently belong in a merge key, whose path writes
//!   go out as the top-level fields they change.
//! - While an inspector keeps the log of changes, each write copies the
//!   value the log still holds.
//! - A value whose size estimate nears a value's limit is measured again
//!   (once, then the estimate is exact), and past it the write is the
//!   whole-value set below, which says by how much it is too large.
//!
//! Any other key (a typed one, outside `set_items`; a merge, sum,
//! first-write-wins or user-resolve key; a write inside a batch) is
//! written as a set of the current value with the paths replaced: the same
//! result, at the cost of a whole-value write.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::intent::{Intent, Sink, TypeCheck, open_for_key, put_json};
use super::{Change, Place, Replica, Write};
use crate::clock::Stamp;
use crate::error::{Error, Result, preview};
use crate::id::UnitAddress;
use crate::key::{CheckFn, KeySpec, SharedKey, check_type};
use crate::limits::{
    MAX_PATH_WRITES, MAX_STATE_BYTES, MAX_VALUE_BYTES, check_value_noting_nulls, digits,
    encoded_len, exact_len, serde_reason, string_len_bound,
};
use crate::op::{Op, OpId, Payload};
use crate::path::Path;
use crate::scope::FullKey;
use crate::strategy::{KeyState, Register, Strategy};

/// Writes at paths, each value measured (its serialized length at most the
/// number beside it).
pub(super) type Measured = Vec<(Path, Value, usize)>;

/// How the writes of a path write are checked against the key's type.
#[derive(Clone, Copy)]
pub(super) enum Typing {
    /// The value after the writes must decode as the key's type, which
    /// must not skip a written place: a function made for that type,
    /// given the key, the value and the written paths.
    Decode(fn(&str, &Value, &[Path]) -> Result<()>),
    /// The caller's types prove it: items of a `Vec<E>` written as `E`s
    /// (the items of a list decode one by one, each as `E`, so the others
    /// need no second look). An item whose JSON holds a null is decoded
    /// as an `E` by the function (`check_type::<E>`: a NaN became that
    /// null).
    Proven(CheckFn),
}

impl Replica {
    /// Writes `value` at `path` inside the value of `key`, on behalf of
    /// `unit`: the object field the path's last segment names is set (added
    /// if missing), or the array item it names replaced. Every step before
    /// the last must exist and be an object or an array, and an array item
    /// must exist: otherwise [`Error::InvalidPath`](crate::Error::InvalidPath)
    /// and nothing changes. The root path is a [`set`](Self::set) of the
    /// whole value.
    ///
    /// Checked as a set of the whole new value would be: permissions, the
    /// key's strategy, and the size and depth limits. Per strategy it is
    /// that set: a first-write-wins key that holds a value refuses it, and
    /// on a user-resolve key it resolves an open conflict with the shown
    /// value, the path replaced. A key of another type than
    /// `serde_json::Value` must still decode as its type, and the type
    /// must not skip what was written: a path naming a field the type does
    /// not have (a typo) fails with [`Error::TypeMismatch`] rather than
    /// store a field nobody reads. Through a JSON view of a typed key
    /// ([`SharedKey::erased`], a JavaScript unit) only the decoding is
    /// checked, as for that view's whole-value writes. See the module docs for what it costs.
    pub fn set_path<T: DeserializeOwned>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &Path,
        value: Value,
    ) -> Result<Write> {
        let writes = vec![(path.clone(), Ok(value))];
        put_paths(self, unit, key, writes, Typing::Decode(check_kept::<T>))
    }

    /// Writes several places inside the value of `key` at once, on behalf
    /// of `unit`: one write (one op, one change, one notification per
    /// subscriber) with each `(path, value)` put as
    /// [`set_path`](Self::set_path) puts it. The paths must lie apart (none
    /// inside another, none the root) and be at most
    /// [`MAX_PATH_WRITES`](crate::MAX_PATH_WRITES); if one of them leads
    /// nowhere, nothing changes. Where `set_path` writes in place, so does
    /// this, each place costing what its value costs.
    pub fn set_paths<T: DeserializeOwned>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        writes: impl IntoIterator<Item = (Path, Value)>,
    ) -> Result<Write> {
        let writes = json_writes(writes);
        put_paths(self, unit, key, writes, Typing::Decode(check_kept::<T>))
    }

    /// Replaces items of the list held by `key`, on behalf of `unit`: one
    /// write of every `(index, item)`, as [`set_paths`](Self::set_paths)
    /// makes it. Each index must exist and appear once, and there must be
    /// at least one and at most [`MAX_PATH_WRITES`](crate::MAX_PATH_WRITES)
    /// (else [`Error::InvalidPath`] and nothing changes).
    ///
    /// What makes it cheap: a list decodes item by item, so an `E` written
    /// as an item keeps the list a `Vec<E>` without a second look at the
    /// other items. For a last-write-wins key it is written in place,
    /// typed as it is, and costs what the items written cost, however long
    /// the list (a key that syncs still sends the whole list). Any other
    /// key gets a set of the list with the items replaced.
    pub fn set_items<E: Serialize + DeserializeOwned>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<Vec<E>>,
        items: impl IntoIterator<Item = (usize, E)>,
    ) -> Result<Write> {
        put_paths(
            self,
            unit,
            key,
            item_writes(items),
            Typing::Proven(check_type::<E>),
        )
    }

    /// Writes `writes` into the stored value of `full` in place, if it is
    /// a last-write-wins key that any JSON fits (untyped, or `proven` by
    /// the caller's types). The writes come back (and nothing changed) for
    /// any other key and when this is not a plain local write over a value
    /// already stored: the key was never written, the new value could pass
    /// a value's size limit (the caller's whole-value write then says by
    /// how much), or the stored write is stamped ahead of this one.
    ///
    /// The paths lie apart (checked by [`check_apart`]), so each replaces
    /// what the value held before any of them, and whether one leads
    /// anywhere does not depend on the others.
    pub(super) fn write_in_place(
        &mut self,
        spec: &KeySpec,
        full: &FullKey,
        unit: &UnitAddress,
        writes: Measured,
        proven: bool,
    ) -> Result<std::result::Result<Write, Measured>> {
        if !(spec.holds_any_json() || proven) || spec.strategy() != Strategy::LastWriteWins {
            return Ok(Err(writes));
        }
        let now = self.now();
        self.shed_future_at(now);
        let (stored, old_meta_len, removed_len, added_len) = match self.states.get(full) {
            Some(KeyState::LastWriteWins(Register { entry: Some(entry) })) => {
                let (mut removed, mut added) = (0, 0);
                for (path, value, value_len) in &writes {
                    let replaced = path.get(&entry.value);
                    // Measured exactly (the bound `value_len` errs high,
                    // and an estimate grown by it write after write would
                    // need measuring the whole state again sooner): one
                    // more walk of the value written, none of the document.
                    let written = match value {
                        // A bound of exactly its length and quotes: text
                        // with nothing to escape, measured already.
                        Value::String(text) if *value_len == text.len() + 2 => *value_len,
                        _ => exact_len(value, *value_len),
                    };
                    added += match replaced {
                        // A new field: its name too.
                        None => path
                            .last()
                            .map_or(written, |name| written + string_len_bound(name) + 2),
                        Some(_) => written,
                    };
                    removed += replaced.map_or(0, |old| exact_len(old, MAX_STATE_BYTES));
                }
                (
                    (entry.stamp, entry.id),
                    meta_len(entry.stamp, &entry.id, &entry.writer),
                    removed,
                    added,
                )
            }
            _ => return Ok(Err(writes)),
        };
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Overflow { key: full.clone() })?;
        let id = OpId { tab: self.tab, seq };
        let stamp = self.hlc.tick(now);
        if (stamp, id) <= stored {
            return Ok(Err(writes));
        }
        // The state's size after the write: what the estimate held, with
        // the entry's stamp, id and writer and the sub-values at the paths
        // (and their field names, when new) replaced. An upper bound, as
        // the estimate before it is; the state holds the value, so it
        // bounds the value too.
        let after = |held: usize| {
            (held + meta_len(stamp, &id, unit) + added_len)
                .saturating_sub(old_meta_len + removed_len)
        };
        let mut estimate = after(self.size_estimate(full));
        if estimate > MAX_VALUE_BYTES {
            // An estimate grown by bounds, write after write, becomes exact
            // once measured; only a value really near the limit goes on to
            // the whole-value write.
            let exact = self
                .states
                .get(full)
                .map_or(0, |state| encoded_len(state, MAX_STATE_BYTES + 1));
            self.sizes.insert(full.clone(), exact);
            estimate = after(exact);
            if estimate > MAX_VALUE_BYTES {
                return Ok(Err(writes));
            }
        }
        let Some(KeyState::LastWriteWins(Register { entry: Some(entry) })) =
            self.states.get_mut(full)
        else {
            return Ok(Err(writes));
        };
        // Copies the value only if someone else still holds it.
        let document = Arc::make_mut(&mut entry.value);
        let mut places = Vec::with_capacity(writes.len());
        for (path, value, _) in writes {
            match path.put(document, Some(value)) {
                Ok(old) => places.push(Place { path, old }),
                Err(err) => {
                    // Put back what the earlier paths replaced: the paths
                    // lie apart, so in any order.
                    for place in places {
                        let _ = place.path.put(document, place.old);
                    }
                    return Err(err);
                }
            }
        }
        let visible = places.iter().any(|place| place.changed(document));
        entry.stamp = stamp;
        entry.id = id;
        entry.writer = unit.clone();
        let new = Arc::clone(&entry.value);
        self.seq = seq;
        self.sizes.insert(full.clone(), estimate);
        self.touch(spec, full);
        let op = Op {
            id,
            key: full.clone(),
            writer: unit.clone(),
            stamp,
            schema: spec.schema().version(),
            payload: Payload::Set {
                value: Arc::clone(&new),
            },
        };
        let message = super::write::message_of(spec, &op);
        let change = visible.then(|| Change::at(full.clone(), places, new));
        Ok(Ok(Write {
            op,
            change,
            message,
        }))
    }
}

/// The length of an entry's stamp, id and writer in JSON, exactly as
/// [`encoded_len`] counts `(stamp, id, writer)`, by arithmetic: each write
/// in place takes it twice, and the encoder's formatting machinery cost
/// some 5,000 instructions a time. The writer's names cannot hold control
/// characters (their validation refuses them), so their escaped length is
/// what [`string_len_bound`] says; a test holds this to the encoder.
fn meta_len(stamp: Stamp, id: &OpId, writer: &UnitAddress) -> usize {
    // `{"wall_ms":`, `,"counter":`, `,"tab":` and the tab's 16 hex digits
    // quoted, `}`.
    const STAMP: usize = 11 + 11 + 7 + 18 + 1;
    // `{"tab":`, the tab quoted, `,"seq":`, `}`.
    const ID: usize = 7 + 18 + 7 + 1;
    let name = |text: &str| string_len_bound(text) - 2;
    let writer_len = name(writer.apartment().as_str())
        + name(writer.building().as_str())
        + name(writer.unit().as_str())
        // Two slashes, two quotes.
        + 4;
    // The tuple's brackets and two commas.
    4 + STAMP
        + digits(stamp.wall_ms)
        + digits(u64::from(stamp.counter))
        + ID
        + digits(id.seq)
        + writer_len
}

/// The writes of [`Replica::set_paths`], as [`put_paths`] takes them.
pub(super) fn json_writes(
    writes: impl IntoIterator<Item = (Path, Value)>,
) -> Vec<(Path, serde_json::Result<Value>)> {
    writes
        .into_iter()
        .map(|(path, value)| (path, Ok(value)))
        .collect()
}

/// The writes of [`Replica::set_items`]: each item at its index, as JSON.
pub(super) fn item_writes<E: Serialize>(
    items: impl IntoIterator<Item = (usize, E)>,
) -> Vec<(Path, serde_json::Result<Value>)> {
    items
        .into_iter()
        .map(|(index, item)| (Path::index(index), serde_json::to_value(item)))
        .collect()
}

/// Checks that `value`, a key's value after writes at `paths`, decodes as
/// `T` and that `T` does not skip what was written. Decoding alone would
/// accept a field `T` does not have (serde skips it, and the write would
/// be lost: a typo in the path). Fields skipped elsewhere in the value
/// (written by a newer version, say) are not this write's concern.
///
/// Generic over `T` where a path write is made, not per declared key: only
/// the types written at a path pay for the second decoder.
pub(super) fn check_kept<T: DeserializeOwned>(
    key: &str,
    value: &Value,
    paths: &[Path],
) -> Result<()> {
    let mismatch = |reason| Error::TypeMismatch {
        key: key.to_owned(),
        reason,
    };
    let ignored = ignored_by::<T>(value).map_err(mismatch)?;
    for at in &ignored {
        if let Some(path) = paths.iter().find(|path| path.overlaps(at)) {
            return Err(mismatch(format!(
                "{} has no place for {} (it skips {})",
                std::any::type_name::<T>(),
                preview(&path.to_string()),
                preview(&at.join("."))
            )));
        }
    }
    Ok(())
}

/// Decodes `value` as `T` and lists the places it skipped doing so (fields
/// `T` does not have), each as its path's segments.
fn ignored_by<T: DeserializeOwned>(value: &Value) -> Result<Vec<Vec<String>>, String> {
    fn segments(path: &serde_ignored::Path<'_>, out: &mut Vec<String>) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                segments(parent, out);
                out.push(index.to_string());
            }
            serde_ignored::Path::Map { parent, key } => {
                segments(parent, out);
                out.push(key.clone());
            }
            // An option or a newtype around a value is not a step.
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => segments(parent, out),
        }
    }
    let mut ignored = Vec::new();
    serde_ignored::deserialize(value, |path| {
        let mut at = Vec::new();
        segments(&path, &mut at);
        ignored.push(at);
    })
    .map(|_: T| ignored)
    .map_err(|err| serde_reason(&err))
}

/// Refuses writes at paths that do not lie apart: none may be the root,
/// and none inside another (or the same), so that no write's place depends
/// on another's and the order they are given in does not matter. Also
/// refuses no writes at all, and more than [`MAX_PATH_WRITES`].
fn check_apart(paths: Vec<&Path>) -> Result<()> {
    let bad = |path: &Path, reason| Error::InvalidPath {
        path: preview(&path.to_string()),
        reason,
    };
    let Some(first) = paths.first() else {
        return Err(Error::InvalidPath {
            path: String::new(),
            reason: "no place to write: give at least one path",
        });
    };
    if paths.len() > MAX_PATH_WRITES {
        return Err(bad(first, "more places in one write than MAX_PATH_WRITES"));
    }
    if let Some(root) = paths.iter().find(|path| path.is_empty()) {
        return Err(bad(
            root,
            "the root path names the whole value, with other places: set it alone",
        ));
    }
    // Sorted by `Path::place_order`, every path inside another sorts
    // right after it, before any path not inside it: if one lies inside
    // another, one lies inside the path just before it.
    // Items written in the order of their indices are in this order
    // already: one pass confirms it.
    let paths = crate::vec_map::sorted_by(paths, |a, b| a.place_order(b));
    match paths.windows(2).find(|pair| pair[1].starts_with(pair[0])) {
        None => Ok(()),
        Some(pair) => Err(bad(
            pair[1],
            "written twice, or inside another place of the same write",
        )),
    }
}

/// Writes at paths inside `key`'s value, by `unit`, put into `sink` (see
/// [`Replica::set_paths`]): in place where the sink can, else as a set of
/// the current value (the sink's: a batch's earlier writes count) with the
/// paths replaced. A single root path is a set of the whole value.
pub(super) fn put_paths<S: Sink, T>(
    sink: &mut S,
    unit: &UnitAddress,
    key: &SharedKey<T>,
    writes: Vec<(Path, serde_json::Result<Value>)>,
    typing: Typing,
) -> Result<S::Done> {
    let (spec, full) = open_for_key(sink.replica(), unit, key.spec())?;
    // Only a key declared as untyped JSON takes any JSON; the value of a
    // typed one must still decode after the write, whoever writes (a JSON
    // view of it included), unless the caller's types prove it does.
    let untyped = spec.holds_any_json();
    let proven = matches!(typing, Typing::Proven(_));
    let mut writes = writes;
    if writes.len() == 1
        && writes.first().is_some_and(|(path, _)| path.is_empty())
        && let Some((_, value)) = writes.pop()
    {
        let check = if untyped {
            TypeCheck::Done
        } else {
            TypeCheck::Full
        };
        return put_json(sink, unit, (spec, full), check, value, Intent::Set);
    }
    check_apart(writes.iter().map(|(path, _)| path).collect())?;
    let mut measured = Vec::with_capacity(writes.len());
    for (path, value) in writes {
        let value = value.map_err(|err| Error::TypeMismatch {
            key: full.to_string(),
            reason: serde_reason(&err),
        })?;
        let mut nulls = false;
        let value_len = check_value_noting_nulls(&value, path.len(), "value", &mut nulls)?;
        // An item with a null in it may hold a NaN serde_json wrote as
        // null (see `put_json`): it must decode as an item.
        if let Typing::Proven(check_item) = typing
            && nulls
            && !untyped
        {
            check_item(&value).map_err(|reason| Error::TypeMismatch {
                key: full.to_string(),
                reason,
            })?;
        }
        measured.push((path, value, value_len));
    }
    let measured = match sink.put_in_place(&spec, &full, unit, measured, proven)? {
        Ok(done) => return Ok(done),
        // Not in place (see `Replica::write_in_place`): the usual write
        // below decides.
        Err(measured) => measured,
    };
    let mut whole = Value::clone(&sink.current(&spec, &full));
    let mut paths = Vec::with_capacity(measured.len());
    for (path, value, _) in measured {
        path.put(&mut whole, Some(value))?;
        paths.push(path);
    }
    match typing {
        _ if untyped => {}
        Typing::Proven(_) => {}
        // A JSON view (a JavaScript unit): checked as its whole-value
        // writes are, by decoding.
        Typing::Decode(_) if key.is_erased() => spec.check_type(full.as_str(), &whole)?,
        Typing::Decode(check) => check(full.as_str(), &whole, &paths)?,
    }
    // Checked above: as JSON for any key.
    put_json(
        sink,
        unit,
        (spec, full),
        TypeCheck::Done,
        Ok(whole),
        Intent::Set,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::id::TabId;
    use crate::scope::Scope;
    use serde_json::json;

    #[test]
    fn an_entry_s_meta_length_is_what_the_encoder_writes() {
        let names = [
            "a/b/u",
            "apartment/a building/a \"quoted\" unit",
            "back\\slash/é\u{2028}x/~",
            "x/y/\u{10FFFF}",
        ];
        // What the arithmetic rests on: no name holds a control character,
        // which the encoder writes in 2 or 6 bytes.
        assert!("a/b/u\n".parse::<UnitAddress>().is_err());
        assert!("a/b/u\u{7f}".parse::<UnitAddress>().is_err());
        let long = "n".repeat(crate::id::MAX_ID_LEN);
        let writers = names
            .iter()
            .map(|text| text.parse::<UnitAddress>())
            .chain([UnitAddress::parse_parts(&long, &long, &long)]);
        let numbers = [0, 1, 9, 10, 99, 1_700_000_000_000, u64::MAX];
        for writer in writers {
            let writer = writer.unwrap();
            for &n in &numbers {
                let stamp = Stamp {
                    wall_ms: n,
                    counter: u32::try_from(n).unwrap_or(u32::MAX),
                    tab: TabId::new(n),
                };
                let id = OpId {
                    tab: TabId::new(u64::MAX - n),
                    seq: n,
                };
                assert_eq!(
                    meta_len(stamp, &id, &writer),
                    encoded_len(&(stamp, &id, &writer), usize::MAX),
                    "{stamp} {id} {writer}"
                );
            }
        }
    }

    #[test]
    fn the_size_estimate_of_writes_in_place_stays_above_the_state_and_near_it() {
        let mut replica = Replica::new(TabId::new(1), ManualClock::new(1_700_000_000_000));
        let key = SharedKey::<Value>::builder("doc")
            .scope(Scope::Apartment)
            .build()
            .unwrap();
        replica.declare(&key).unwrap();
        let first: UnitAddress = "a/b/u".parse().unwrap();
        replica.set(&first, &key, json!({"rows": {}})).unwrap();
        let full = key.full_key(&first);
        // Writers of other lengths, new and replaced fields, values that
        // shrink and grow, strings whose escapes a bound overestimates.
        let writers: Vec<UnitAddress> = ["a/b/u", "a/building/a-longer-unit"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        for round in 0..2_000u32 {
            let writer = &writers[round as usize % 2];
            let field = format!("rows.r{}", round % 300);
            let value = match round % 4 {
                0 => json!(round),
                1 => json!("\"é\n".repeat(round as usize % 40)),
                2 => json!({"nested": [round, null, true]}),
                _ => json!(null),
            };
            let path = Path::parse(&field).unwrap();
            replica.set_path(writer, &key, &path, value).unwrap();
            let exact = encoded_len(&replica.states[&full], usize::MAX);
            let estimate = *replica.sizes.get(&full).unwrap();
            assert!(estimate >= exact, "round {round}: {estimate} < {exact}");
            // What the set before them left over, not growing.
            assert!(
                estimate <= exact + 1024,
                "round {round}: {estimate} drifted from {exact}"
            );
        }
    }
}
