//! Writes at a path inside a value: one field of a large document
//! changed without handing the whole document around.
//!
//! A [`set`](Replica::set) of a value with 10,000 fields costs the caller a
//! copy of the value and the replica a walk of it (the size check, the
//! change it reports), whatever changed. [`Replica::set_path`] writes one
//! place. For a last-write-wins key holding an untyped
//! [`Value`](serde_json::Value) it changes the stored value in place, and
//! what it does is bounded by the sub-values written and replaced, not by
//! the document:
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
//! Any other key (a typed one; a merge, sum, first-write-wins or
//! user-resolve key) is written as a set of the current value with the
//! path replaced: the same result, at the cost of a whole-value write.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::intent::{Intent, Sink, open_for_key, put_json};
use super::{Change, Replica, Write};
use crate::error::{Error, Result, preview};
use crate::id::UnitAddress;
use crate::key::{KeySpec, SharedKey};
use crate::limits::{
    MAX_STATE_BYTES, MAX_VALUE_BYTES, check_value_at, encoded_len, serde_reason, string_len_bound,
};
use crate::message::Message;
use crate::op::{Op, OpGroup, OpId, Payload};
use crate::path::Path;
use crate::scope::{FullKey, Lifetime};
use crate::strategy::{KeyState, Register, Strategy};

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
        put_path(self, unit, key, path, value)
    }

    /// Writes `value` (of serialized length at most `value_len`) at `path`
    /// into the stored value of `full`, in place, if it is an untyped
    /// last-write-wins key. The value comes back (and nothing changed) for
    /// any other key and when this is not a plain local write over a value
    /// already stored: the key was never written, the new value could pass
    /// a value's size limit (the caller's whole-value write then says by
    /// how much), or the stored write is stamped ahead of this one.
    pub(super) fn write_in_place(
        &mut self,
        spec: &KeySpec,
        full: &FullKey,
        unit: &UnitAddress,
        path: &Path,
        (value, value_len): (Value, usize),
    ) -> Result<std::result::Result<Write, Value>> {
        if !spec.holds_any_json() || spec.strategy() != Strategy::LastWriteWins {
            return Ok(Err(value));
        }
        let now = self.now();
        self.shed_future_at(now);
        // The stamp, id and writer of an entry, as its encoding holds them.
        let meta_len =
            |stamp, id: &OpId, writer: &UnitAddress| encoded_len(&(stamp, id, writer), usize::MAX);
        let (stored, old_meta_len, removed_len, added_len) = match self.states.get(full) {
            Some(KeyState::LastWriteWins(Register { entry: Some(entry) })) => {
                let replaced = path.get(&entry.value);
                // Measured exactly (the bound `value_len` errs high, and
                // an estimate grown by it write after write would need
                // measuring the whole state again sooner): one more walk
                // of the value written, none of the document.
                let written = encoded_len(&value, value_len);
                let added_len = match (replaced, path.last()) {
                    (None, Some(name)) => written + string_len_bound(name) + 2,
                    _ => written,
                };
                (
                    (entry.stamp, entry.id),
                    meta_len(entry.stamp, &entry.id, &entry.writer),
                    replaced.map_or(0, |old| encoded_len(old, MAX_STATE_BYTES)),
                    added_len,
                )
            }
            _ => return Ok(Err(value)),
        };
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Overflow { key: full.clone() })?;
        let id = OpId { tab: self.tab, seq };
        let stamp = self.hlc.tick(now);
        if (stamp, id) <= stored {
            return Ok(Err(value));
        }
        // The state's size after the write: what the estimate held, with
        // the entry's stamp, id and writer and the sub-value at the path
        // (and its field name, when new) replaced. An upper bound, as the
        // estimate before it is; the state holds the value, so it bounds
        // the value too.
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
                return Ok(Err(value));
            }
        }
        let Some(KeyState::LastWriteWins(Register { entry: Some(entry) })) =
            self.states.get_mut(full)
        else {
            return Ok(Err(value));
        };
        // Copies the value only if someone else still holds it.
        let document = Arc::make_mut(&mut entry.value);
        let old = path.put(document, Some(value))?;
        let visible = old.as_ref() != path.get(document);
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
        let message = (spec.lifetime() != Lifetime::Memory).then(|| {
            Message::Ops(OpGroup {
                ops: vec![op.clone()],
            })
        });
        let change = visible.then(|| Change::at(full.clone(), path.clone(), old, new));
        Ok(Ok(Write {
            op,
            change,
            message,
        }))
    }
}

/// Checks that `value`, a key's value after a write at `path`, decodes as
/// `T` and that `T` does not skip what was written. Decoding alone would
/// accept a field `T` does not have (serde skips it, and the write would
/// be lost: a typo in the path). Fields skipped elsewhere in the value
/// (written by a newer version, say) are not this write's concern.
///
/// Generic over `T` where a path write is made, not per declared key: only
/// the types written at a path pay for the second decoder.
fn check_kept<T: DeserializeOwned>(key: &str, value: &Value, path: &Path) -> Result<()> {
    let mismatch = |reason| Error::TypeMismatch {
        key: key.to_owned(),
        reason,
    };
    let ignored = ignored_by::<T>(value).map_err(mismatch)?;
    match ignored.iter().find(|at| path.overlaps(at)) {
        None => Ok(()),
        Some(at) => Err(mismatch(format!(
            "{} has no place for {} (it skips {})",
            std::any::type_name::<T>(),
            preview(&path.to_string()),
            preview(&at.join("."))
        ))),
    }
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

/// A write of `value` at `path` inside `key`'s value, by `unit`, put into
/// `sink` (see [`Replica::set_path`]): in place where the sink can, else
/// as a set of the current value (the sink's: a batch's earlier writes
/// count) with the path replaced.
pub(super) fn put_path<S: Sink, T: DeserializeOwned>(
    sink: &mut S,
    unit: &UnitAddress,
    key: &SharedKey<T>,
    path: &Path,
    value: Value,
) -> Result<S::Done> {
    let (spec, full) = open_for_key(sink.replica(), unit, key.spec())?;
    // Only a key declared as untyped JSON takes any JSON; the value of a
    // typed one must still decode after the write, whoever writes (a JSON
    // view of it included).
    let untyped = spec.holds_any_json();
    if path.is_empty() {
        return put_json(sink, unit, (spec, full), !untyped, Ok(value), Intent::Set);
    }
    let value_len = check_value_at(&value, path.len(), "value")?;
    let value = match sink.put_in_place(&spec, &full, unit, path, (value, value_len))? {
        Ok(done) => return Ok(done),
        // Not in place (see `Replica::write_in_place`): the usual write
        // below decides.
        Err(value) => value,
    };
    let mut whole = Value::clone(&sink.current(&spec, &full));
    path.put(&mut whole, Some(value))?;
    if !untyped {
        if key.is_erased() {
            // A JSON view (a JavaScript unit): checked as its whole-value
            // writes are, by decoding.
            spec.check_type(full.as_str(), &whole)?;
        } else {
            check_kept::<T>(full.as_str(), &whole, path)?;
        }
    }
    // Checked above: as JSON for any key.
    put_json(sink, unit, (spec, full), false, Ok(whole), Intent::Set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::id::TabId;
    use crate::scope::Scope;
    use serde_json::json;

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
            let estimate = replica.sizes[&full];
            assert!(estimate >= exact, "round {round}: {estimate} < {exact}");
            // What the set before them left over, not growing.
            assert!(
                estimate <= exact + 1024,
                "round {round}: {estimate} drifted from {exact}"
            );
        }
    }
}
