//! Subscribers and listeners, grouped by what they watch: a full key, an
//! event topic, or a key and the first segment of a path.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeBounds;

/// Items registered under an ordered key `K`, removable by id.
///
/// Lookup by key is what notification needs (only the watchers of a
/// changed key are visited); removal by id is what cleanup needs.
pub(crate) struct Registry<K, T> {
    next: u64,
    by_key: BTreeMap<K, Vec<(u64, T)>>,
    keys: HashMap<u64, K>,
}

impl<K, T> Default for Registry<K, T> {
    fn default() -> Self {
        Self {
            next: 0,
            by_key: BTreeMap::new(),
            keys: HashMap::new(),
        }
    }
}

impl<K: Ord + Clone, T> Registry<K, T> {
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

    /// The items watching any key in `range`, with their keys.
    pub(crate) fn range(&self, range: impl RangeBounds<K>) -> impl Iterator<Item = (&K, &T)> {
        self.by_key
            .range(range)
            .flat_map(|(key, items)| items.iter().map(move |(_, item)| (key, item)))
    }

    /// The keys watched by at least one item.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.by_key.keys()
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
        let c = registry.insert(key("c"), 4);
        let in_range: Vec<_> = registry.range(key("b")..).map(|(_, v)| *v).collect();
        assert_eq!(in_range, [3, 4]);
        assert!(registry.remove(c));
    }
}
