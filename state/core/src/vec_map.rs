//! Ordered maps and sets kept as one sorted vector.
//!
//! # The problem
//!
//! A key's state holds several small ordered maps: the slots of a sum,
//! the entries and watermarks of a user-resolve key, the tabs a replica
//! has answered. `BTreeMap` serves them well, but each map type compiles
//! its own copy of the B-tree (insert, remove and its rebalancing, drop,
//! clone, iteration): some 4 KiB of wasm per key and value type, about
//! 115 KiB of the state manager's code before `wasm-opt`. Most of these
//! maps hold a handful of entries, and their bounds are a few thousand.
//!
//! [`VecMap`] keeps the entries in one `Vec`, sorted by key, each key
//! once: a lookup is a binary search, an insert or a removal moves the
//! entries after it. That is as fast as a B-tree for small maps, slower
//! to insert into one of many thousands, and a fraction of the code.
//! [`VecSet`] is the same for a set. Both iterate in key order, as
//! `BTreeMap` does, and serialize the same way (a map, or a sequence),
//! so a type can switch without changing what it stores or sends.
//!
//! Use them for maps bounded small (by a limit or by what they count),
//! and for maps of a page's declared keys, bounded by the declaration
//! limits and looked up far more often than they grow (a replica's sizes
//! and dirty keys); keep `BTreeMap` where a large map takes keys in any
//! order.
//!
//! # Example
//!
//! ```
//! use gaesup_state_core::vec_map::VecMap;
//!
//! let mut seen: VecMap<u32, &str> = VecMap::new();
//! seen.insert(3, "c");
//! seen.insert(1, "a");
//! assert_eq!(seen.insert(3, "C"), Some("c"));
//! assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [1, 3]);
//! assert_eq!(seen.get(&3), Some(&"C"));
//! // Built from pairs in any order; a repeated key keeps its last value,
//! // as collecting into a `BTreeMap` would.
//! let built: VecMap<u32, &str> = [(2, "x"), (1, "y"), (2, "z")].into_iter().collect();
//! assert_eq!(built.iter().collect::<Vec<_>>(), [(&1, &"y"), (&2, &"z")]);
//! ```

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ordered map kept as a vector sorted by key (see the
/// [module](self)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecMap<K, V> {
    /// Sorted by key, each key once.
    items: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V> VecMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self { items: Vec::new() }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.items.iter().map(|(k, v)| (k, v))
    }

    /// The entries in key order, values mutable.
    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.items.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.items.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.items.iter().map(|(_, v)| v)
    }

    /// The values in key order, mutable.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.items.iter_mut().map(|(_, v)| v)
    }

    /// The entry with the smallest key.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.items.first().map(|(k, v)| (k, v))
    }

    /// The entry with the largest key.
    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.items.last().map(|(k, v)| (k, v))
    }

    /// Removes and returns the entry with the smallest key. It moves
    /// every other entry: O(n), unlike a B-tree's.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        (!self.items.is_empty()).then(|| self.items.remove(0))
    }

    /// Keeps only the entries `keep` returns `true` for, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.items.retain_mut(|(k, v)| keep(k, v));
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Moves the entries `pick` returns `true` for into a new map, in one
    /// pass (removing them one by one would move the rest each time).
    pub fn take_where(&mut self, mut pick: impl FnMut(&K, &V) -> bool) -> Self {
        let (taken, kept) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|(k, v)| pick(k, v));
        self.items = kept;
        Self { items: taken }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// Where `key` is (`Ok`) or would go (`Err`).
    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self.find(key).ok()?;
        self.items.get(at).map(|(_, v)| v)
    }

    /// The value under `key`, mutable.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self.find(key).ok()?;
        self.items.get_mut(at).map(|(_, v)| v)
    }

    /// Whether `key` has an entry.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Puts `value` under `key`; returns the value it replaced. A key
    /// larger than every other is appended without a search.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.slot(&key) {
            Ok(at) => self
                .items
                .get_mut(at)
                .map(|(_, old)| std::mem::replace(old, value)),
            Err(at) => {
                self.put_at(at, key, value);
                None
            }
        }
    }

    /// Puts an entry at `at`, moving the entries after it.
    fn put_at(&mut self, at: usize, key: K, value: V) {
        moved(self.items.len().saturating_sub(at));
        self.items.insert(at, (key, value));
    }

    /// [`find`](Self::find), answering at once for a key after the last.
    fn slot(&self, key: &K) -> Result<usize, usize> {
        match self.items.last() {
            Some((last, _)) if *last < *key => Err(self.items.len()),
            None => Err(0),
            Some(_) => self.find(key),
        }
    }

    /// The value under `key`, put there by `make` if there was none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let at = match self.slot(&key) {
            Ok(at) => at,
            Err(at) => {
                self.put_at(at, key, make());
                at
            }
        };
        // `at` holds an entry: found there, or just put there.
        &mut self.items[at].1
    }

    /// The value under `key`, the default put there if there was none.
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        self.get_or_insert_with(key, V::default)
    }

    /// Removes the entry under `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self.find(key).ok()?;
        Some(self.items.remove(at).1)
    }

    /// Builds the map from entries in any order: sorted, and of entries
    /// with equal keys only the last kept (what inserting them one by one
    /// would leave).
    fn from_vec(items: Vec<(K, V)>) -> Self {
        let mut map = Self::new();
        map.join_all(items, replace);
        map
    }

    /// Adds `entries`, in any order, as inserting them one by one would,
    /// except that an entry whose key is here already (or came earlier in
    /// `entries`) is combined with it by `join(current, incoming)`
    /// instead of replacing it.
    ///
    /// Costs O(m log m + n) for m entries into a map of n, whatever their
    /// order: inserting many keys one by one between the keys of a large
    /// map would move its tail each time, O(m · n), which a peer choosing
    /// the keys could make slow on purpose.
    pub fn join_all(&mut self, entries: Vec<(K, V)>, mut join: impl FnMut(&mut V, V)) {
        let entries = in_key_order(entries, |(key, _)| key);
        let after_last = match (self.items.last(), entries.first()) {
            (Some((last, _)), Some((first, _))) => last < first,
            _ => true,
        };
        if after_last || entries.len() <= FEW {
            // Each one appended, or few moves of the tail.
            for (key, value) in entries {
                match self.slot(&key) {
                    Ok(at) => {
                        if let Some((_, current)) = self.items.get_mut(at) {
                            join(current, value);
                        }
                    }
                    Err(at) => self.put_at(at, key, value),
                }
            }
            return;
        }
        // One pass over both, each in key order.
        let mut old = std::mem::take(&mut self.items).into_iter().peekable();
        let mut out = Vec::with_capacity(old.len().saturating_add(entries.len()));
        for (key, value) in entries {
            while let Some(before) = old.next_if(|(k, _)| *k < key) {
                out.push(before);
            }
            match out.last_mut() {
                // Repeated in `entries`.
                Some((k, current)) if *k == key => join(current, value),
                _ => match old.next_if(|(k, _)| *k == key) {
                    Some((k, mut current)) => {
                        join(&mut current, value);
                        out.push((k, current));
                    }
                    None => out.push((key, value)),
                },
            }
        }
        out.extend(old);
        moved(out.len());
        self.items = out;
    }
}

#[cfg(test)]
thread_local! {
    /// How many entries this thread's maps have moved to make room (or
    /// rebuilt): how a test tells a linear join from a quadratic one
    /// without timing it.
    pub(crate) static MOVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `n` entries moved (in tests; nothing otherwise).
#[cfg_attr(not(test), allow(unused_variables))]
fn moved(n: usize) {
    #[cfg(test)]
    MOVED.with(|moved| moved.set(moved.get().saturating_add(n)));
}

/// Up to how many entries [`VecMap::join_all`] inserts one by one: each
/// moves the tail at most once, so a few cost no more than one pass.
const FEW: usize = 8;

/// The `join` of [`VecMap::join_all`] that keeps the incoming value.
fn replace<V>(current: &mut V, incoming: V) {
    *current = incoming;
}

/// `items` sorted by `key`, stably (equal keys keep their order), in
/// O(n log n) whatever order they came in: what to insert into a
/// [`VecMap`] one by one, each after the last. Items already in order are
/// returned as they are.
///
/// The sort orders indices through a `dyn` comparison, so its code is
/// compiled once, not once per item type as `sort_by` would be.
pub fn in_key_order<T, K: Ord + ?Sized>(items: Vec<T>, key: impl Fn(&T) -> &K) -> Vec<T> {
    sorted_by(items, |a, b| key(a).cmp(key(b)))
}

/// `items` sorted by `cmp`, stably, in O(n log n); items already in order
/// are returned as they are. The `sort_by` of this crate and of the apps
/// built on it: the sort itself is compiled once (it orders indices
/// through a `dyn` comparison), where the standard library's compiles
/// some four kilobytes of wasm for each item type and comparison.
///
/// ```
/// use gaesup_state_core::vec_map::sorted_by;
///
/// let words = sorted_by(vec!["pear", "fig", "apple", "kiwi"], |a, b| a.len().cmp(&b.len()));
/// assert_eq!(words, ["fig", "pear", "kiwi", "apple"]);
/// ```
pub fn sorted_by<T>(items: Vec<T>, cmp: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    if items.windows(2).all(|w| cmp(&w[0], &w[1]).is_le()) {
        return items;
    }
    let order = sorted_indices(items.len(), &|a, b| {
        match (items.get(a), items.get(b)) {
            (Some(a), Some(b)) => cmp(a, b),
            // Indices come from `0..len`: never reached.
            _ => Ordering::Equal,
        }
    });
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|at| slots.get_mut(at).and_then(Option::take))
        .collect()
}

/// `0..len` stably sorted by `cmp`: a bottom-up merge sort, a few hundred
/// bytes of wasm where the standard library's sort is some four
/// thousand.
fn sorted_indices(len: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut merged = vec![0; len];
    let mut width = 1;
    while width < len {
        for (run, out) in order.chunks(2 * width).zip(merged.chunks_mut(2 * width)) {
            let (left, right) = run.split_at(width.min(run.len()));
            let (mut l, mut r) = (left.iter().peekable(), right.iter().peekable());
            for slot in out {
                // The left run's item first unless the right one is
                // smaller: equal items keep their order.
                let from_right = match (l.peek(), r.peek()) {
                    (Some(&&a), Some(&&b)) => cmp(b, a).is_lt(),
                    (None, _) => true,
                    (_, None) => false,
                };
                let next = if from_right { r.next() } else { l.next() };
                *slot = next.copied().unwrap_or_default();
            }
        }
        std::mem::swap(&mut order, &mut merged);
        width *= 2;
    }
    order
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_vec(iter.into_iter().collect())
    }
}

/// As collecting the pairs (the `BTreeMap::from([...])` of a literal map).
impl<K: Ord, V, const N: usize> From<[(K, V); N]> for VecMap<K, V> {
    fn from(items: [(K, V); N]) -> Self {
        Self::from_vec(Vec::from(items))
    }
}

/// As inserting each entry, in O(m log m + n) whatever their order (see
/// [`VecMap::join_all`]).
impl<K: Ord, V> Extend<(K, V)> for VecMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.join_all(iter.into_iter().collect(), replace);
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().map(|(k, v)| (k, v))
    }
}

/// A map: entries in key order, as `BTreeMap` writes them.
impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A map in any order; a repeated key keeps its last value, as
/// `BTreeMap` reads it.
impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for VecMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<fn() -> (K, V)>);
        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
            type Value = VecMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // Not sized by the input's hint: a hostile length claims
                // no memory ahead of its entries.
                let mut items = Vec::new();
                while let Some(entry) = access.next_entry()? {
                    items.push(entry);
                }
                Ok(VecMap::from_vec(items))
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// An ordered set kept as a sorted vector (see the [module](self)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecSet<K> {
    map: VecMap<K, ()>,
}

impl<K> Default for VecSet<K> {
    fn default() -> Self {
        Self { map: VecMap::new() }
    }
}

impl<K: fmt::Debug> fmt::Debug for VecSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K> VecSet<K> {
    /// An empty set.
    pub const fn new() -> Self {
        Self { map: VecMap::new() }
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The members in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.map.keys()
    }

    /// The smallest member.
    pub fn first(&self) -> Option<&K> {
        self.map.first_key_value().map(|(k, _)| k)
    }

    /// The largest member.
    pub fn last(&self) -> Option<&K> {
        self.map.last_key_value().map(|(k, _)| k)
    }

    /// Keeps only the members `keep` returns `true` for.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.map.retain(|k, ()| keep(k));
    }

    /// Removes every member.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

impl<K: Ord> VecSet<K> {
    /// Whether `key` is a member.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// Adds `key`; `false` if it was a member already.
    pub fn insert(&mut self, key: K) -> bool {
        self.map.insert(key, ()).is_none()
    }

    /// Removes `key`; `false` if it was not a member.
    pub fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key).is_some()
    }
}

impl<K: Ord> FromIterator<K> for VecSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        Self {
            map: iter.into_iter().map(|k| (k, ())).collect(),
        }
    }
}

/// As inserting each member, in O(m log m + n) whatever their order.
impl<K: Ord> Extend<K> for VecSet<K> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        self.map.extend(iter.into_iter().map(|k| (k, ())));
    }
}

impl<K> IntoIterator for VecSet<K> {
    type Item = K;
    type IntoIter = std::iter::Map<std::vec::IntoIter<(K, ())>, fn((K, ())) -> K>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.into_iter().map(|(k, ())| k)
    }
}

impl<'a, K> IntoIterator for &'a VecSet<K> {
    type Item = &'a K;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, ())>, fn(&'a (K, ())) -> &'a K>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.items.iter().map(|(k, ())| k)
    }
}

/// A sequence in order, as `BTreeSet` writes it.
impl<K: Serialize> Serialize for VecSet<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for key in self {
            seq.serialize_element(key)?;
        }
        seq.end()
    }
}

/// A sequence in any order, repeats dropped, as `BTreeSet` reads it.
impl<'de, K: Deserialize<'de> + Ord> Deserialize<'de> for VecSet<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<K>(PhantomData<fn() -> K>);
        impl<'de, K: Deserialize<'de> + Ord> Visitor<'de> for Members<K> {
            type Value = VecSet<K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(key) = access.next_element()? {
                    items.push((key, ()));
                }
                Ok(VecSet {
                    map: VecMap::from_vec(items),
                })
            }
        }
        deserializer.deserialize_seq(Members(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::{VecMap, VecSet};

    /// One step on a map, applied to ours and to `BTreeMap` alike.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8, u16),
        Remove(u8),
        Default(u8),
        Retain(u8),
        PopFirst,
        TakeOdd,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Step::Insert(k, v)),
            any::<u8>().prop_map(Step::Remove),
            any::<u8>().prop_map(Step::Default),
            any::<u8>().prop_map(Step::Retain),
            Just(Step::PopFirst),
            Just(Step::TakeOdd),
        ]
    }

    proptest! {
        /// `BTreeMap` is the oracle: after any steps both hold the same
        /// entries in the same order and answered every step alike.
        #[test]
        fn a_vec_map_does_what_a_btree_map_does(steps in prop::collection::vec(step(), 0..200)) {
            let mut ours: VecMap<u8, u16> = VecMap::new();
            let mut oracle: BTreeMap<u8, u16> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Insert(k, v) => prop_assert_eq!(ours.insert(k, v), oracle.insert(k, v)),
                    Step::Remove(k) => prop_assert_eq!(ours.remove(&k), oracle.remove(&k)),
                    Step::Default(k) => {
                        *ours.get_or_default(k) += 1;
                        *oracle.entry(k).or_default() += 1;
                    }
                    Step::Retain(below) => {
                        ours.retain(|k, _| *k < below);
                        oracle.retain(|k, _| *k < below);
                    }
                    Step::PopFirst => prop_assert_eq!(ours.pop_first(), oracle.pop_first()),
                    Step::TakeOdd => {
                        let taken = ours.take_where(|_, v| v % 2 == 1);
                        let oracle_taken: BTreeMap<u8, u16> =
                            oracle.extract_if(.., |_, v| *v % 2 == 1).collect();
                        prop_assert!(taken.iter().eq(oracle_taken.iter()));
                    }
                }
                prop_assert_eq!(ours.len(), oracle.len());
                prop_assert!(ours.iter().eq(oracle.iter()));
                for k in [0u8, 1, 127, 255] {
                    prop_assert_eq!(ours.get(&k), oracle.get(&k));
                    prop_assert_eq!(ours.contains_key(&k), oracle.contains_key(&k));
                }
            }
        }

        /// Built from pairs, and read from JSON, as a `BTreeMap` is: the
        /// last of repeated keys wins; written back, the same text.
        #[test]
        fn a_vec_map_is_built_and_read_as_a_btree_map_is(
            pairs in prop::collection::vec((0u8..16, any::<u16>()), 0..40),
        ) {
            let ours: VecMap<u8, u16> = pairs.iter().copied().collect();
            let oracle: BTreeMap<u8, u16> = pairs.iter().copied().collect();
            prop_assert!(ours.iter().eq(oracle.iter()));

            let mut text = String::from("{");
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&format!("\"{k}\":{v}"));
            }
            text.push('}');
            let read: VecMap<u8, u16> = serde_json::from_str(&text).unwrap();
            let read_oracle: BTreeMap<u8, u16> = serde_json::from_str(&text).unwrap();
            prop_assert!(read.iter().eq(read_oracle.iter()));
            prop_assert_eq!(
                serde_json::to_string(&read).unwrap(),
                serde_json::to_string(&read_oracle).unwrap()
            );
        }

        /// Sets, against `BTreeSet`: members, order, and their JSON.
        #[test]
        fn a_vec_set_does_what_a_btree_set_does(
            members in prop::collection::vec(any::<u8>(), 0..60),
            removed in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut ours: VecSet<u8> = members.iter().copied().collect();
            let mut oracle: BTreeSet<u8> = members.iter().copied().collect();
            for k in removed {
                prop_assert_eq!(ours.remove(&k), oracle.remove(&k));
                prop_assert_eq!(ours.insert(k / 2), oracle.insert(k / 2));
            }
            prop_assert!(ours.iter().eq(oracle.iter()));
            prop_assert_eq!(ours.first(), oracle.first());
            prop_assert_eq!(ours.last(), oracle.last());
            let text = serde_json::to_string(&members).unwrap();
            let read: VecSet<u8> = serde_json::from_str(&text).unwrap();
            let read_oracle: BTreeSet<u8> = serde_json::from_str(&text).unwrap();
            prop_assert!(read.iter().eq(read_oracle.iter()));
            prop_assert_eq!(
                serde_json::to_string(&read).unwrap(),
                serde_json::to_string(&read_oracle).unwrap()
            );
        }
    }

    proptest! {
        /// Stable, against the standard library's stable sort.
        #[test]
        fn in_key_order_is_a_stable_sort(items in prop::collection::vec((0u8..8, any::<u16>()), 0..80)) {
            let mut oracle = items.clone();
            oracle.sort_by_key(|(k, _)| *k);
            prop_assert_eq!(super::in_key_order(items, |(k, _)| k), oracle);
        }
    }

    proptest! {
        /// `join_all` is inserting one by one where an existing (or
        /// earlier) key is joined, not replaced: against `BTreeMap`'s
        /// entries, with an order-sensitive join, for both of its paths
        /// (a few entries, many, after the last key or between keys).
        /// `extend` is the same with the incoming value kept.
        #[test]
        fn join_all_joins_as_one_by_one_inserts_would(
            start in prop::collection::vec((any::<u8>(), any::<u16>()), 0..60),
            incoming in prop::collection::vec((any::<u8>(), any::<u16>()), 0..60),
            shift in any::<bool>(),
        ) {
            // Shifted, the incoming keys all lie after the map's.
            let incoming: Vec<(u16, u16)> = incoming
                .into_iter()
                .map(|(k, v)| (if shift { u16::from(k) + 256 } else { u16::from(k) }, v))
                .collect();
            let start: Vec<(u16, u16)> = start.into_iter().map(|(k, v)| (u16::from(k), v)).collect();
            let join = |current: &mut u16, new: u16| *current = current.wrapping_mul(31).wrapping_add(new);

            let mut ours: VecMap<u16, u16> = start.iter().copied().collect();
            let mut oracle: BTreeMap<u16, u16> = start.iter().copied().collect();
            ours.join_all(incoming.clone(), join);
            for (k, v) in incoming.iter().copied() {
                oracle.entry(k).and_modify(|current| join(current, v)).or_insert(v);
            }
            prop_assert!(ours.iter().eq(oracle.iter()));

            let mut ours: VecMap<u16, u16> = start.iter().copied().collect();
            let mut oracle: BTreeMap<u16, u16> = start.iter().copied().collect();
            ours.extend(incoming.iter().copied());
            oracle.extend(incoming.iter().copied());
            prop_assert!(ours.iter().eq(oracle.iter()));

            let mut ours: VecSet<u16> = start.iter().map(|(k, _)| *k).collect();
            let mut oracle: BTreeSet<u16> = start.iter().map(|(k, _)| *k).collect();
            ours.extend(incoming.iter().map(|(k, _)| *k));
            oracle.extend(incoming.iter().map(|(k, _)| *k));
            prop_assert!(ours.iter().eq(oracle.iter()));
        }
    }

    /// Many keys joined between the keys of a large map take one pass, not
    /// a move of the map's tail per key: 300,000 into 300,000 would move
    /// some 4.5 × 10^10 entries one by one, and moves 600,000 merged.
    #[test]
    fn many_keys_between_a_large_maps_keys_are_merged_in_one_pass() {
        let n = 300_000u32;
        let mut map: VecMap<u32, u32> = (0..n).map(|k| (2 * k, 0)).collect();
        // Odd keys, descending, each twice: joined, the second adds one.
        let incoming: Vec<(u32, u32)> = (0..n)
            .rev()
            .flat_map(|k| [(2 * k + 1, 0), (2 * k + 1, 1)])
            .collect();
        let before = super::MOVED.with(std::cell::Cell::get);
        map.join_all(incoming, |current, new| *current += new);
        let moved = super::MOVED.with(std::cell::Cell::get) - before;
        // One by one, each key would move the even keys after it.
        assert!(
            moved <= 2 * n as usize,
            "{moved} entries moved for {n} keys"
        );
        map.join_all(vec![(0, 5), (4, 7)], |current, new| *current += new);
        assert_eq!(map.len(), 2 * n as usize);
        assert!(map.keys().copied().eq(0..2 * n));
        assert!(map.iter().all(|(k, v)| *v
            == match k {
                0 => 5,
                4 => 7,
                k if k % 2 == 1 => 1,
                _ => 0,
            }));
    }

    /// Entries in reverse order are sorted, not inserted one by one at the
    /// front (which would move every entry for each: hostile input must
    /// not cost a square of its length).
    #[test]
    fn a_long_map_in_reverse_order_is_built_in_order() {
        let n = 200_000u32;
        let map: VecMap<u32, u32> = (0..n).rev().map(|k| (k, k)).collect();
        assert_eq!(map.len(), n as usize);
        assert!(map.keys().copied().eq(0..n));
    }

    #[test]
    fn a_literal_map_is_sorted_and_keeps_a_repeated_key_last() {
        let map = VecMap::from([(3, "c"), (1, "a"), (3, "C")]);
        let oracle = std::collections::BTreeMap::from([(3, "c"), (1, "a"), (3, "C")]);
        assert!(map.iter().eq(oracle.iter()));
    }

    #[test]
    fn a_map_that_is_not_a_map_is_refused() {
        assert!(serde_json::from_str::<VecMap<u8, u8>>("[1,2]").is_err());
        assert!(serde_json::from_str::<VecSet<u8>>("{\"1\":2}").is_err());
        assert!(serde_json::from_str::<VecMap<u8, u8>>("{\"x\":2}").is_err());
    }
}
