//! Entries set aside as unusable (corrupt JSON, wrong shape or type, newer
//! schema, failing migration, forged writers, far-future stamps): the raw
//! text is copied aside, the original left as it was, and the key is not
//! written again until the entry is discarded.

use super::Replica;
use crate::error::{Error, Result};
use crate::scope::FullKey;
use crate::storage::{QUARANTINE_PREFIX, Storage, StorageError};

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

/// Why a stored entry could not be merged: storage failed, or the entry
/// was set aside.
pub(super) enum Failure {
    Storage(Error),
    Quarantined(Box<Quarantine>),
}

impl Replica {
    /// The storage key holding `key`'s quarantined raw entry.
    pub fn quarantine_key(key: &FullKey) -> String {
        format!("{QUARANTINE_PREFIX}{key}")
    }

    pub(super) fn quarantine(
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

    /// Keys currently quarantined.
    pub fn quarantined(&self) -> impl Iterator<Item = &Quarantine> {
        self.quarantined.values()
    }

    /// Gives up a quarantined entry: removes the quarantine copy and the
    /// original entry, and lets the key be persisted again.
    ///
    /// Only the entry that was set aside: one another tab wrote since (a
    /// newer version of the app, which can read what this one cannot) is
    /// left as it is, and this tab's next save reads it again.
    pub fn discard_quarantine(&mut self, key: &FullKey, storage: &mut dyn Storage) -> Result<()> {
        let copy_key = Self::quarantine_key(key);
        let set_aside = storage.get(&copy_key)?;
        let stored = storage.get(&Self::storage_key(key))?;
        storage.remove(&copy_key)?;
        // Without the copy (storage refused it), what was set aside is not
        // known: the entry goes, as it always did.
        if set_aside.is_none() || stored == set_aside {
            storage.remove(&Self::storage_key(key))?;
        }
        self.lift_quarantine(key);
        Ok(())
    }

    /// Lets `key` be persisted again once its set-aside entry is gone
    /// from storage by another tab's hand: that tab discarded it (its copy
    /// left storage), or cleared the storage. This tab's state of the key
    /// (what was written or received since it was set aside) is saved on
    /// the next flush, read-merge-write as any save. Without this, a tab
    /// that had set the entry aside too never saved the key again.
    /// Whether `key` was set aside here.
    pub fn lift_quarantine(&mut self, key: &FullKey) -> bool {
        let lifted = self.quarantined.remove(key).is_some();
        if lifted {
            self.mark_dirty(key);
        }
        lifted
    }
}
