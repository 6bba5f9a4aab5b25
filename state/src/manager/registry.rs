//! Listeners, grouped by what they watch (a full key, an event topic).
//! Subscribers to values have their own two-level registry (key, then
//! path), in `subscribe.rs`.

use std::hash::Hash;

use rustc_hash::FxHashMap;

/// Items registered under a key `K`, removable by id.
///
/// Lookup by key is what notification needs (only the watchers of a
/// changed key are visited); removal by id is what cleanup needs. Both
/// maps are hashed: neither is walked in order.
pub(crate) struct Registry<K, T> {
    next: u64,
    by_key: FxHashMap<K, Vec<(u64, T)>>,
    keys: FxHashMap<u64, K>,
}

impl<K, T> Default for Registry<K, T> {
    fn default() -> Self {
        Self {
            next: 0,
            by_key: FxHashMap::default(),
            keys: FxHashMap::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, T> Registry<K, T> {
    /// Registers `item` under `key`; the id removes it again.
    pub(crate) fn insert(&mut self, key: K, item: T) -> u64 {
        self.next += 1;
        let id = self.next;
        self.by_key.entry(key.clone()).or_default().push((id, item));
        self.keys.insert(id, key);
        id
    }

    /// Removes an item; `false` if it was already gone.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(key) = self.keys.remove(&id) else {
            return false;
        };
        if let Some(items) = self.by_key.get_mut(&key) {
            items.retain(|(item_id, _)| *item_id != id);
            if items.is_empty() {
                self.by_key.remove(&key);
            }
        }
        true
    }

    /// The items watching `key`.
    pub(crate) fn get(&self, key: &K) -> impl Iterator<Item = &T> {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, item)| item)
    }

    /// How many items are registered in all.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_state_core::FullKey;

    fn key(name: &str) -> FullKey {
        FullKey::parse(&format!("global/{name}")).unwrap()
    }

    #[test]
    fn insert_get_remove() {
        let mut registry = Registry::default();
        let a = registry.insert(key("a"), 1);
        let b = registry.insert(key("a"), 2);
        registry.insert(key("b"), 3);
        assert_eq!(registry.get(&key("a")).copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(registry.len(), 3);
        assert!(registry.remove(a));
        assert!(!registry.remove(a));
        assert!(registry.remove(b));
        assert_eq!(registry.get(&key("a")).count(), 0);
        assert_eq!(registry.len(), 1);
    }
}
