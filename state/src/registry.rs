//! Subscribers and listeners, grouped by the key (or event topic) they watch.

use std::collections::{BTreeMap, HashMap};

use gaesup_state_core::FullKey;

/// Items registered under a full key, removable by id.
///
/// Lookup by key is what notification needs (only the watchers of a
/// changed key are visited); removal by id is what cleanup needs.
pub(crate) struct Registry<T> {
    next: u64,
    by_key: BTreeMap<FullKey, Vec<(u64, T)>>,
    keys: HashMap<u64, FullKey>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            next: 0,
            by_key: BTreeMap::new(),
            keys: HashMap::new(),
        }
    }
}

impl<T> Registry<T> {
    /// Registers `item` under `key`; the id removes it again.
    pub(crate) fn insert(&mut self, key: FullKey, item: T) -> u64 {
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
    pub(crate) fn get(&self, key: &FullKey) -> impl Iterator<Item = &T> {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, item)| item)
    }

    /// The keys watched by at least one item.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &FullKey> {
        self.by_key.keys()
    }

    /// How many items are registered in all.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// How many items watch `key`.
    pub(crate) fn count(&self, key: &FullKey) -> usize {
        self.by_key.get(key).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(registry.count(&key("a")), 0);
        assert_eq!(registry.len(), 1);
    }
}
