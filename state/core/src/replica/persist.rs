//! Saving to storage: each changed key written at most once per flush,
//! merged first with what storage holds (another tab may have written).
//! Loading is `load.rs`, entries set aside `quarantine.rs`.
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

use super::quarantine::{Failure, Quarantine};
use super::{Change, Replica};
use crate::error::Error;
use crate::limits::MAX_STORED_BYTES;
use crate::scope::{FullKey, Lifetime};
use crate::storage::{STATE_PREFIX, Storage};
use crate::strategy::KeyState;

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

#[derive(Serialize)]
pub(super) struct StoredRef<'a> {
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

    pub(super) fn persist_one(
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
        let text = match crate::limits::to_text(&StoredRef {
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

    /// Marks `key` as changed, so the next [`persist`](Replica::persist)
    /// writes it again (its stored entry was removed behind this tab's
    /// back); whether this tab holds a state of it to write.
    pub fn mark_dirty(&mut self, key: &FullKey) -> bool {
        if !self.states.contains_key(key) {
            return false;
        }
        match self.spec_for(key) {
            Ok(spec) => {
                self.touch(&spec, key);
                true
            }
            Err(_) => false,
        }
    }

    /// Marks every stored key as changed, so the next [`persist`]
    /// rewrites it (after another tab called `localStorage.clear()`).
    ///
    /// [`persist`]: Replica::persist
    pub fn mark_all_dirty(&mut self) {
        let keys: Vec<FullKey> = self.states.keys().cloned().collect();
        for key in keys {
            self.mark_dirty(&key);
        }
    }

    /// Whether `key` has changes not yet persisted.
    pub fn is_dirty(&self, key: &FullKey) -> bool {
        self.dirty.contains(key)
    }

    /// How many keys have changes not yet persisted.
    pub fn unsaved(&self) -> usize {
        self.dirty.len()
    }
}
