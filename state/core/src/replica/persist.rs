//! Loading from and persisting to storage, with quarantine.
//!
//! Entries live under [`STATE_PREFIX`]` + full key` as
//! `{"schema": n, "state": …}`. An entry that cannot be used (corrupt JSON,
//! wrong shape or type, newer schema, failing migration, forged writers,
//! far-future stamps) is *quarantined*: its raw text is copied to
//! [`QUARANTINE_PREFIX`]` + full key`, the original entry is left exactly
//! as it was, the key is never written to storage again until
//! [`Replica::discard_quarantine`], and the key reads its default (or
//! whatever other tabs send) in the meantime.

use serde::Serialize;

use super::admit::{Source, StateVerdict};
use super::held::HeldItem;
use super::{Change, Replica};
use crate::error::{Error, Result};
use crate::key::KeySpec;
use crate::limits::{MAX_STORED_BYTES, parse_bounded};
use crate::message::SyncEntry;
use crate::schema::StoredState;
use crate::scope::{FullKey, Lifetime};
use crate::storage::{QUARANTINE_PREFIX, STATE_PREFIX, Storage, StorageError};
use crate::strategy::KeyState;

/// A key whose stored entry was set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// The key.
    pub key: FullKey,
    /// Why the entry could not be used.
    pub error: Error,
    /// Set if copying the raw text to the quarantine entry failed (for
    /// example the quota is full). The original entry is kept either way.
    pub copy_error: Option<StorageError>,
}

/// What [`Replica::load`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadReport {
    /// Keys whose stored state was merged in.
    pub loaded: Vec<FullKey>,
    /// Values that changed as a result.
    pub changes: Vec<Change>,
    /// Entries set aside.
    pub quarantined: Vec<Quarantine>,
    /// Storage keys that could not be read, or whose name is not a valid
    /// full key (left untouched).
    pub failed: Vec<(String, Error)>,
}

/// What [`Replica::persist`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersistReport {
    /// Keys written.
    pub written: Vec<FullKey>,
    /// Values that changed because storage held writes this replica had
    /// not seen (merged before writing, so nothing is overwritten).
    pub changes: Vec<Change>,
    /// Entries found unusable while persisting, set aside and not written.
    pub quarantined: Vec<Quarantine>,
    /// Keys that could not be written (still dirty; retried next time).
    pub failed: Vec<(FullKey, Error)>,
}

enum Failure {
    Storage(Error),
    Quarantined(Box<Quarantine>),
}

#[derive(Serialize)]
struct StoredRef<'a> {
    schema: u32,
    state: &'a KeyState,
    #[serde(skip_serializing_if = "Option::is_none")]
    ahead: Option<KeyState>,
}

impl Replica {
    /// The storage key holding `key`'s state.
    pub fn storage_key(key: &FullKey) -> String {
        format!("{STATE_PREFIX}{key}")
    }

    /// The storage key holding `key`'s quarantined raw entry.
    pub fn quarantine_key(key: &FullKey) -> String {
        format!("{QUARANTINE_PREFIX}{key}")
    }

    /// Merges every stored entry of a declared key with this `lifetime`
    /// into the replica. Call it at start-up, after declaring keys later,
    /// and when a hidden tab becomes visible; merging is idempotent.
    ///
    /// Fails only if the storage cannot list its keys; per-entry problems
    /// are in the report.
    pub fn load(&mut self, lifetime: Lifetime, storage: &mut dyn Storage) -> Result<LoadReport> {
        self.load_where(lifetime, storage, |_| true)
    }

    /// [`load`](Self::load) for one declaration: merges the stored entries
    /// of `spec`'s key (under every address) from the storage of its
    /// lifetime, and decodes nothing else. What a key declared after
    /// start-up needs: its own entries, without re-reading every other
    /// key's.
    pub fn load_declared(
        &mut self,
        spec: &KeySpec,
        storage: &mut dyn Storage,
    ) -> Result<LoadReport> {
        let (scope, name) = (spec.scope(), spec.name().as_str().to_owned());
        self.load_where(spec.lifetime(), storage, |key| {
            key.scope() == scope && key.name() == name
        })
    }

    fn load_where(
        &mut self,
        lifetime: Lifetime,
        storage: &mut dyn Storage,
        wanted: impl Fn(&FullKey) -> bool,
    ) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        for storage_key in storage.keys()? {
            let Some(rest) = storage_key.strip_prefix(STATE_PREFIX) else {
                continue;
            };
            let key = match FullKey::parse(rest) {
                Ok(key) => key,
                Err(err) => {
                    report.failed.push((storage_key, err));
                    continue;
                }
            };
            // Another apartment's entries (storage is shared by the origin)
            // belong to that apartment's store.
            if !wanted(&key) || self.is_foreign(&key) {
                continue;
            }
            // Undeclared keys stay in storage untouched until declared.
            let Ok(spec) = self.spec_for(&key) else {
                continue;
            };
            if spec.lifetime() != lifetime || self.quarantined.contains_key(&key) {
                continue;
            }
            match self.merge_stored(&spec, &key, storage) {
                Ok((change, _)) => {
                    report.loaded.push(key);
                    report.changes.extend(change);
                }
                Err(Failure::Storage(err)) => report.failed.push((storage_key, err)),
                Err(Failure::Quarantined(q)) => report.quarantined.push(*q),
            }
        }
        Ok(report)
    }

    /// Reads `key`'s entry and joins it in; returns the change and the raw
    /// text read.
    fn merge_stored(
        &mut self,
        spec: &KeySpec,
        key: &FullKey,
        storage: &mut dyn Storage,
    ) -> Result<(Option<Change>, Option<String>), Failure> {
        let raw = storage
            .get(&Self::storage_key(key))
            .map_err(|err| Failure::Storage(err.into()))?;
        let Some(raw) = raw else {
            return Ok((None, None));
        };
        match self.decode_stored(key, &raw) {
            Ok((state, ahead)) => {
                if let Some(ahead) = ahead {
                    // Stored by this tab before its clock was set back:
                    // kept, and applied when the clock gets there.
                    let due = super::held::due_of(&ahead.state);
                    let _ = self.hold(key, HeldItem::State(ahead), due, true);
                }
                let change = self
                    .join_state(spec, key, &state, Source::Storage)
                    .map_err(Failure::Storage)?;
                Ok((change, Some(raw)))
            }
            Err(err) => Err(Failure::Quarantined(Box::new(
                self.quarantine(key, &raw, err, storage),
            ))),
        }
    }

    fn decode_stored(&self, key: &FullKey, raw: &str) -> Result<(KeyState, Option<SyncEntry>)> {
        let stored: StoredState =
            parse_bounded(raw, MAX_STORED_BYTES, "stored state").map_err(|err| match err {
                Error::Malformed { reason, .. } => Error::Corrupt {
                    key: key.to_string(),
                    reason,
                },
                other => other,
            })?;
        stored.state.validate()?;
        if let Some(ahead) = &stored.ahead {
            ahead.validate()?;
        }
        let admit = |state: KeyState| {
            let entry = SyncEntry {
                key: key.clone(),
                schema: stored.schema,
                state,
            };
            match self.admit_state(&entry, Source::Storage) {
                StateVerdict::Apply(admitted) => Ok(*admitted),
                StateVerdict::Refuse(err) | StateVerdict::Foreign(err) => Err(err),
                StateVerdict::Hold => Err(Error::UnknownKey {
                    key: key.to_string(),
                }),
            }
        };
        let now = admit(stored.state)?;
        let mut ahead = now.ahead;
        if let Some(saved) = stored.ahead {
            // Saved apart: whatever of it the clock now allows joins the
            // state on the next poll, through the same admission.
            let saved = SyncEntry {
                key: key.clone(),
                schema: stored.schema,
                state: saved,
            };
            admit(saved.state.clone())?;
            ahead = Some(match ahead {
                None => saved,
                Some(mut split) => {
                    let _ = split.state.merge(&saved.state);
                    split
                }
            });
        }
        Ok((now.state, ahead))
    }

    fn quarantine(
        &mut self,
        key: &FullKey,
        raw: &str,
        error: Error,
        storage: &mut dyn Storage,
    ) -> Quarantine {
        let copy_key = Self::quarantine_key(key);
        let copy_error = match storage.get(&copy_key) {
            Ok(Some(existing)) if existing == raw => None,
            _ => storage.set(&copy_key, raw).err(),
        };
        let quarantine = Quarantine {
            key: key.clone(),
            error,
            copy_error,
        };
        self.quarantined.insert(key.clone(), quarantine.clone());
        quarantine
    }

    /// Writes every changed key of this `lifetime` (memory keys never).
    ///
    /// Read-merge-write: the stored entry is merged in first, so writes
    /// another tab stored but never broadcast (or that were lost) are not
    /// overwritten. Quarantined keys are skipped. Keys that fail to write
    /// (quota, unavailable) stay dirty and are retried on the next call.
    pub fn persist(&mut self, lifetime: Lifetime, storage: &mut dyn Storage) -> PersistReport {
        let mut report = PersistReport::default();
        if lifetime == Lifetime::Memory {
            return report;
        }
        let keys: Vec<FullKey> = self
            .dirty
            .iter()
            .filter(|key| !self.quarantined.contains_key(*key))
            .cloned()
            .collect();
        for key in keys {
            self.persist_one(&key, Some(lifetime), storage, &mut report);
        }
        report
    }

    /// Writes one key now if it has unpersisted changes (same rules as
    /// [`persist`](Replica::persist)); `storage` must be the one for the
    /// key's lifetime.
    pub fn persist_key(&mut self, key: &FullKey, storage: &mut dyn Storage) -> PersistReport {
        let mut report = PersistReport::default();
        if self.dirty.contains(key) && !self.quarantined.contains_key(key) {
            self.persist_one(key, None, storage, &mut report);
        }
        report
    }

    fn persist_one(
        &mut self,
        key: &FullKey,
        lifetime: Option<Lifetime>,
        storage: &mut dyn Storage,
        report: &mut PersistReport,
    ) {
        let Ok(spec) = self.spec_for(key) else {
            self.dirty.remove(key);
            return;
        };
        if spec.lifetime() == Lifetime::Memory {
            self.dirty.remove(key);
            return;
        }
        if lifetime.is_some_and(|l| l != spec.lifetime()) {
            return;
        }
        let stored = match self.merge_stored(&spec, key, storage) {
            Ok((change, raw)) => {
                report.changes.extend(change);
                raw
            }
            Err(Failure::Storage(err)) => {
                report.failed.push((key.clone(), err));
                return;
            }
            Err(Failure::Quarantined(q)) => {
                report.quarantined.push(*q);
                return;
            }
        };
        let Some(state) = self.states.get(key) else {
            self.dirty.remove(key);
            return;
        };
        // This tab's own writes set aside after its clock went back are
        // saved beside the state: a reload sets them aside again instead of
        // losing them.
        let ahead = self.own_held(key).into_iter().fold(None, |ahead, held| {
            let mut ahead: KeyState = ahead.unwrap_or_else(|| KeyState::empty(held.strategy()));
            let _ = ahead.merge(held);
            Some(ahead)
        });
        let text = match serde_json::to_string(&StoredRef {
            schema: spec.schema().version(),
            state,
            ahead,
        }) {
            Ok(text) => text,
            Err(err) => {
                report.failed.push((
                    key.clone(),
                    Error::Malformed {
                        what: "stored state",
                        reason: err.to_string(),
                    },
                ));
                return;
            }
        };
        if text.len() > MAX_STORED_BYTES {
            // Cannot happen while states stay under MAX_STATE_BYTES; never
            // store what could not be loaded back.
            report.failed.push((
                key.clone(),
                Error::TooLarge {
                    what: "stored state",
                    size: text.len(),
                    limit: MAX_STORED_BYTES,
                },
            ));
            return;
        }
        if stored.as_deref() == Some(text.as_str()) {
            self.dirty.remove(key);
            return;
        }
        match storage.set(&Self::storage_key(key), &text) {
            Ok(()) => {
                self.dirty.remove(key);
                report.written.push(key.clone());
            }
            Err(err) => report.failed.push((key.clone(), err.into())),
        }
    }

    /// Keys currently quarantined.
    pub fn quarantined(&self) -> impl Iterator<Item = &Quarantine> {
        self.quarantined.values()
    }

    /// Gives up a quarantined entry: removes the quarantine copy and the
    /// original entry, and lets the key be persisted again.
    pub fn discard_quarantine(&mut self, key: &FullKey, storage: &mut dyn Storage) -> Result<()> {
        storage.remove(&Self::quarantine_key(key))?;
        storage.remove(&Self::storage_key(key))?;
        if self.quarantined.remove(key).is_some()
            && self.states.contains_key(key)
            && let Ok(spec) = self.spec_for(key)
        {
            self.touch(&spec, key);
        }
        Ok(())
    }

    /// Marks every stored key as changed, so the next [`persist`]
    /// rewrites it (after another tab called `localStorage.clear()`).
    ///
    /// [`persist`]: Replica::persist
    pub fn mark_all_dirty(&mut self) {
        let keys: Vec<FullKey> = self.states.keys().cloned().collect();
        for key in keys {
            if let Ok(spec) = self.spec_for(&key) {
                self.touch(&spec, &key);
            }
        }
    }

    /// Whether `key` has changes not yet persisted.
    pub fn is_dirty(&self, key: &FullKey) -> bool {
        self.dirty.contains(key)
    }
}
