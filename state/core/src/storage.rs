//! The storage trait the web layer implements (localStorage for persistent
//! keys, sessionStorage for ephemeral ones), plus an in-memory and a
//! fault-injecting implementation for tests.
//!
//! The replica keeps one entry per key under [`STATE_PREFIX`]` + full key`,
//! holding a [`StoredState`](crate::StoredState) as JSON, and copies
//! entries it cannot read to [`QUARANTINE_PREFIX`]` + full key`.

use crate::vec_map::VecMap;

/// Prefix of the storage key of a key's state.
pub const STATE_PREFIX: &str = "gaesup/state/";
/// Prefix of the storage key of a quarantined raw entry.
pub const QUARANTINE_PREFIX: &str = "gaesup/quarantine/";

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The write does not fit (`QuotaExceededError`).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// Storage is disabled or inaccessible (private mode, blocked cookies,
    /// no `window`).
    #[error("storage unavailable")]
    Unavailable,
    /// Anything else the backend reported.
    #[error("{0}")]
    Other(String),
}

/// A string key-value store.
///
/// Implementations must not panic; every failure is a [`StorageError`].
pub trait Storage {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<String>, StorageError>;
    /// Stores `value` under `key`.
    fn set(&mut self, key: &str, value: &str) -> Result<(), StorageError>;
    /// Removes `key` (removing a missing key is not an error).
    fn remove(&mut self, key: &str) -> Result<(), StorageError>;
    /// Every key currently stored.
    fn keys(&self) -> Result<Vec<String>, StorageError>;
}

/// Storage in a sorted map (keys list in order), with an optional quota
/// in bytes (keys plus values, like browsers count).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    entries: VecMap<String, String>,
    quota: Option<usize>,
}

impl MemoryStorage {
    /// Unlimited storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Storage that refuses writes beyond `bytes` in total.
    pub fn with_quota(bytes: usize) -> Self {
        Self {
            entries: VecMap::new(),
            quota: Some(bytes),
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Removes everything (like `localStorage.clear()` from another tab).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
        if let Some(quota) = self.quota {
            let replaced = self.entries.get(key).map_or(0, |old| key.len() + old.len());
            if self.used() - replaced + key.len() + value.len() > quota {
                return Err(StorageError::QuotaExceeded);
            }
        }
        self.entries.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), StorageError> {
        self.entries.remove(key);
        Ok(())
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.entries.keys().cloned().collect())
    }
}

/// Wraps a storage and fails on command: every call while unavailable,
/// writes while a write failure is armed, or the next `n` writes.
#[derive(Debug, Clone, Default)]
pub struct FaultyStorage<S> {
    inner: S,
    unavailable: bool,
    fail_writes: Option<StorageError>,
    fail_next: Vec<StorageError>,
    writes: usize,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner`, initially healthy.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            unavailable: false,
            fail_writes: None,
            fail_next: Vec::new(),
            writes: 0,
        }
    }

    /// Makes every call fail with [`StorageError::Unavailable`] (or heals).
    pub fn set_unavailable(&mut self, unavailable: bool) {
        self.unavailable = unavailable;
    }

    /// Makes every write fail with `error` until called with `None`.
    pub fn fail_writes(&mut self, error: Option<StorageError>) {
        self.fail_writes = error;
    }

    /// Makes the next write fail with `error` (queued, first in first out).
    pub fn fail_next_write(&mut self, error: StorageError) {
        self.fail_next.push(error);
    }

    /// Successful writes and removes so far.
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped storage, mutably (to corrupt entries behind the replica's
    /// back).
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn check_write(&mut self) -> Result<(), StorageError> {
        if self.unavailable {
            return Err(StorageError::Unavailable);
        }
        if !self.fail_next.is_empty() {
            return Err(self.fail_next.remove(0));
        }
        if let Some(error) = &self.fail_writes {
            return Err(error.clone());
        }
        Ok(())
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        if self.unavailable {
            return Err(StorageError::Unavailable);
        }
        self.inner.get(key)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
        self.check_write()?;
        self.inner.set(key, value)?;
        self.writes += 1;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), StorageError> {
        self.check_write()?;
        self.inner.remove(key)?;
        self.writes += 1;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        if self.unavailable {
            return Err(StorageError::Unavailable);
        }
        self.inner.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_keys_and_values_and_replacement() {
        let mut storage = MemoryStorage::with_quota(10);
        storage.set("ab", "cdef").unwrap();
        storage.set("ab", "cdefghij").unwrap();
        assert_eq!(storage.set("x", "y"), Err(StorageError::QuotaExceeded));
        assert_eq!(storage.get("ab").unwrap().as_deref(), Some("cdefghij"));
    }

    #[test]
    fn faults_fire_on_command() {
        let mut storage = FaultyStorage::new(MemoryStorage::new());
        storage.fail_next_write(StorageError::QuotaExceeded);
        assert_eq!(storage.set("a", "1"), Err(StorageError::QuotaExceeded));
        storage.set("a", "1").unwrap();
        storage.set_unavailable(true);
        assert_eq!(storage.get("a"), Err(StorageError::Unavailable));
        storage.set_unavailable(false);
        assert_eq!(storage.get("a").unwrap().as_deref(), Some("1"));
        assert_eq!(storage.writes(), 1);
    }
}
