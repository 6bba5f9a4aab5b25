//! Loading from storage: every stored entry of a declared key merged into
//! the replica, checked like anything else from outside; an entry that
//! cannot be used is set aside (`quarantine.rs`), never silently dropped.

use super::admit::{Source, StateVerdict};
use super::held::HeldItem;
use super::quarantine::{Failure, Quarantine};
use super::{Change, Replica};
use crate::error::{Error, Result};
use crate::key::KeySpec;
use crate::limits::{MAX_STORED_BYTES, read_bounded};
use crate::message::SyncEntry;
use crate::schema::StoredState;
use crate::scope::{FullKey, Lifetime};
use crate::storage::{STATE_PREFIX, Storage};
use crate::strategy::KeyState;

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

impl Replica {
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

    /// [`load`](Self::load) for the named storage entries only, with this
    /// `lifetime`: what another tab's `storage` events name. Lists nothing
    /// and decodes nothing else, so its cost follows the entries named, not
    /// everything stored. Names that are not state entries are skipped.
    pub fn load_named(
        &mut self,
        lifetime: Lifetime,
        storage: &mut dyn Storage,
        storage_keys: &[String],
    ) -> LoadReport {
        let mut report = LoadReport::default();
        for storage_key in storage_keys {
            self.load_entry(lifetime, storage, storage_key, |_| true, &mut report);
        }
        report
    }

    pub(super) fn load_where(
        &mut self,
        lifetime: Lifetime,
        storage: &mut dyn Storage,
        wanted: impl Fn(&FullKey) -> bool,
    ) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        for storage_key in storage.keys()? {
            self.load_entry(lifetime, storage, &storage_key, &wanted, &mut report);
        }
        Ok(report)
    }

    /// Merges one storage entry, if it is the state of a declared key of
    /// this apartment with this `lifetime` that `wanted` accepts; what
    /// happened goes in `report`.
    fn load_entry(
        &mut self,
        lifetime: Lifetime,
        storage: &mut dyn Storage,
        storage_key: &str,
        wanted: impl Fn(&FullKey) -> bool,
        report: &mut LoadReport,
    ) {
        let Some(rest) = storage_key.strip_prefix(STATE_PREFIX) else {
            return;
        };
        let key = match FullKey::parse(rest) {
            Ok(key) => key,
            Err(err) => {
                report.failed.push((storage_key.to_owned(), err));
                return;
            }
        };
        // Another apartment's entries (storage is shared by the origin)
        // belong to that apartment's store.
        if !wanted(&key) || self.is_foreign(&key) {
            return;
        }
        // Undeclared keys stay in storage untouched until declared.
        let Ok(spec) = self.spec_for(&key) else {
            return;
        };
        if spec.lifetime() != lifetime || self.quarantined.contains_key(&key) {
            return;
        }
        match self.merge_stored(&spec, &key, storage) {
            Ok((change, Some(_))) => {
                report.loaded.push(key);
                report.changes.extend(change);
            }
            // Named, but gone since (another tab removed it).
            Ok((_, None)) => {}
            Err(Failure::Storage(err)) => report.failed.push((storage_key.to_owned(), err)),
            Err(Failure::Quarantined(q)) => report.quarantined.push(*q),
        }
    }

    /// Reads `key`'s entry and joins it in; returns the change and the raw
    /// text read.
    pub(super) fn merge_stored(
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
                    // kept, and applied when the clock gets there. Its op
                    // ids are this tab's too: never issued again, and not
                    // taken for forged ones when they come back.
                    let own = ahead.state.max_seq(self.tab).min(u64::MAX / 2);
                    self.seq = self.seq.max(own);
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

    pub(super) fn decode_stored(
        &self,
        key: &FullKey,
        raw: &str,
    ) -> Result<(KeyState, Option<SyncEntry>)> {
        let stored: StoredState =
            read_bounded(raw, MAX_STORED_BYTES, "stored state").map_err(|err| match err {
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
}
