//! Snapshot and restore of a scope.

use std::sync::Arc;

use super::held::HeldRestore;
use super::intent::check_written;
use super::revert::earlier_stamp;
use super::write::Stamping;
use super::{BatchWrite, Intent, Replica, Write, payload_for};
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::KeySpec;
use crate::permission::Action;
use crate::scope::{FullKey, Scope};
use crate::snapshot::{Snapshot, SnapshotEntry};
use crate::strategy::KeyState;
use crate::strategy::Strategy;
use crate::vec_map::VecMap;

impl Replica {
    /// Exports the keys of `scope` that `unit` can see and read, as values
    /// with their schema version. Keys never written are left out.
    pub fn snapshot(&self, unit: &UnitAddress, scope: Scope) -> Snapshot {
        let mut snapshot = Snapshot::new(scope);
        for spec in self.specs.get(&scope).into_iter().flat_map(VecMap::values) {
            let key = spec.full_key(unit);
            if Self::check_access(spec, &key, unit, Action::Read).is_err() {
                continue;
            }
            if let Some(value) = self.states.get(&key).and_then(KeyState::value) {
                snapshot.keys.insert(
                    spec.name().clone(),
                    SnapshotEntry {
                        schema: spec.schema().version(),
                        value,
                    },
                );
            }
        }
        snapshot
    }

    /// Restores a snapshot made by [`snapshot`](Self::snapshot) as `unit`.
    ///
    /// The text is validated like any untrusted input, then every declared
    /// key is checked (writable by `unit`, schema migrated, type) before
    /// anything is written. The writes form one batch: new ops, so the
    /// restored values reach other tabs and win over older writes. Keys
    /// already holding the snapshot's value are skipped. Any failure
    /// (including a first-write-wins key already holding another value)
    /// changes nothing.
    ///
    /// Keys nothing here declared yet are not refused: their values are
    /// kept ([`BatchWrite::held`]) and written when the key is declared
    /// (see [`Declared`](super::Declared)), checked then, with the stamp
    /// of the moment the restore ran: a write made in between is newer
    /// and stays. Two exceptions: a first-write-wins key's write is as of
    /// its writing (as of the restore, it would displace a first write
    /// made since); and a counter's restore is a reset, which gives way
    /// to a reset made since but, when someone counted since, is a reset
    /// of its writing (a reset may not be older than the counts it
    /// observes) that counts those increments away.
    pub fn restore(&mut self, unit: &UnitAddress, text: &str) -> Result<BatchWrite> {
        let snapshot = Snapshot::parse(text)?;
        let mut writes = Vec::new();
        let mut held = Vec::new();
        for (name, entry) in &snapshot.keys {
            let Some(spec) = self
                .specs
                .get(&snapshot.scope)
                .and_then(|by_name| by_name.get(name.as_str()))
                .cloned()
            else {
                held.push((FullKey::new(snapshot.scope, unit, name), entry.clone()));
                continue;
            };
            // As every local write: none to a stored key while the outbox
            // is full. (A held one is written later, when it may be.)
            self.check_backlog(&spec)?;
            if let Some(value) = self.restore_value(unit, &spec, entry)? {
                writes.push((spec, value));
            }
        }
        for (key, _) in &held {
            self.check_apartment(key)?;
        }
        // Its own writes stamped ahead of a clock set back are set aside
        // now (every check that may refuse the restore passed), not by the
        // batch below: the room checked for the held restores is what is
        // left when the batch commits.
        self.shed_future();
        // Checked before anything is written: the batch below commits.
        self.room_for_restores(held.iter().map(|(key, entry)| (key, entry)))?;
        let mut restored = self.batch(|batch| {
            writes
                .into_iter()
                .try_for_each(|(spec, value)| batch.write(unit, &spec, Intent::Set(value)))
        })?;
        if held.is_empty() {
            return Ok(restored);
        }
        // Written when each key is declared, with the stamp of now: a
        // write made meanwhile is newer than the restore, and stays.
        let stamp = self.hlc.tick(self.now());
        restored.held = held.iter().map(|(key, _)| key.clone()).collect();
        let held = held
            .into_iter()
            .map(|(key, entry)| {
                let restore = HeldRestore {
                    unit: unit.clone(),
                    entry,
                    stamp,
                };
                (key, restore)
            })
            .collect();
        self.hold_restores(held)?;
        Ok(restored)
    }

    /// Checks a snapshot entry for `spec` as `unit`; `None` when the key
    /// already holds that value.
    fn restore_value(
        &self,
        unit: &UnitAddress,
        spec: &Arc<KeySpec>,
        entry: &SnapshotEntry,
    ) -> Result<Option<serde_json::Value>> {
        let key = spec.full_key(unit);
        self.check_apartment(&key)?;
        Self::check_access(spec, &key, unit, Action::Write)?;
        let value = spec.schema().migrate_value(
            key.as_str(),
            entry.schema,
            serde_json::Value::clone(&entry.value),
        )?;
        // As a write of it would be: a merge key's object is checked field
        // by field when the restore's op is built.
        check_written(spec.strategy(), &value, "snapshot value", &mut false)?;
        spec.check_type(key.as_str(), &value)?;
        Ok((*self.current(spec, &key) != value).then_some(value))
    }

    /// Writes one held restore entry, now that its key is declared, with
    /// the stamp of the moment the restore ran (see
    /// [`earlier_stamp`](super::revert::earlier_stamp)).
    pub(super) fn restore_one(
        &mut self,
        restore: &HeldRestore,
        spec: &KeySpec,
    ) -> Result<Option<Write>> {
        let spec = self.registered_by_name(spec)?;
        let unit = &restore.unit;
        let Some(value) = self.restore_value(unit, &spec, &restore.entry)? else {
            return Ok(None);
        };
        let key = spec.full_key(unit);
        // A counter reset since the restore ran is newer than it: the
        // restore (a reset too) gives way.
        if let Some(KeyState::Sum(sum)) = self.states.get(&key)
            && sum.reset().is_some_and(|reset| reset.stamp > restore.stamp)
        {
            return Ok(None);
        }
        let now = self.now();
        self.shed_future_at(now);
        let payload = payload_for(
            &self.context_at(now),
            &spec,
            &key,
            self.states.get(&key),
            Intent::Set(value),
        )?;
        // A first-write-wins key is written as of now: stamped as of the
        // restore, it would displace a first write made since, accepted
        // everywhere else.
        let reuse = match spec.strategy() {
            Strategy::FirstWriteWins => None,
            _ => earlier_stamp(&payload, restore.stamp),
        };
        let how = Stamping {
            now,
            reuse,
            value_len: None,
        };
        self.write_payload(&spec, key, unit, payload, how).map(Some)
    }

    fn registered_by_name(&self, spec: &KeySpec) -> Result<Arc<KeySpec>> {
        self.specs
            .get(&spec.scope())
            .and_then(|by_name| by_name.get(spec.name().as_str()))
            .cloned()
            .ok_or_else(|| Error::UnknownKey { key: spec.label() })
    }
}
