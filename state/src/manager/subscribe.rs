//! Who watches what: subscriptions to a key, or to a path inside it,
//! filed so that a change visits only the subscribers it may concern.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use gaesup_state_core::{Change, FullKey, Path, SharedKey, UnitAddress};
use rustc_hash::FxHashMap;

use super::StateManager;
use crate::error::Result;

/// Identifies one subscription, to remove it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

pub(super) type OnChange = Rc<dyn Fn(&Change)>;
pub(super) struct Subscriber {
    path: Option<Path>,
    on_change: OnChange,
}

/// Every subscriber, filed under its key, then under the first segment of
/// its path (or as a whole-key subscriber). A change then visits only the
/// subscribers under the segments it touched ([`Change::heads`]),
/// each found by one lookup of the key and one of the segment (borrowed
/// from the change: nothing is built to look it up).
pub(super) struct Subscribers {
    next: u64,
    /// Hashed: looked up on every change, and never walked in order.
    by_key: FxHashMap<FullKey, Watchers>,
    /// Where each subscription is filed, to remove it by id.
    filed: FxHashMap<u64, (FullKey, Option<String>)>,
    /// The key a change was last delivered for, with every callback a
    /// change of it reaches, if that needs no path compared (see
    /// [`Watchers::callbacks`]): most writes repeat the last key, and
    /// then nothing is hashed or collected. Cleared by every subscribe
    /// and unsubscribe.
    last: RefCell<Option<(FullKey, Rc<[OnChange]>)>>,
    /// No callback: what a change of a key nobody watches reaches.
    none: Rc<[OnChange]>,
}

impl Default for Subscribers {
    fn default() -> Self {
        Self {
            next: 0,
            by_key: FxHashMap::default(),
            filed: FxHashMap::default(),
            last: RefCell::new(None),
            none: Rc::from(Vec::new()),
        }
    }
}

/// The subscribers of one key.
#[derive(Default)]
pub(super) struct Watchers {
    whole: Vec<(u64, Subscriber)>,
    /// By first segment: hashed, since a write of rows looks up one head
    /// per row (an ordered map compared ten or so texts for each among a
    /// thousand rows). Heads are named by the app's own subscriptions.
    by_head: FxHashMap<String, Vec<(u64, Subscriber)>>,
    /// Every callback, in order, while every subscriber watches the whole
    /// key (no path): then any change of the key reaches all of them, and
    /// a delivery takes this list as it is. Built by the first delivery
    /// that asks for it (not by each subscribe: mounting N subscribers
    /// of one key would copy N lists), forgotten when one comes or goes.
    callbacks: OnceCell<Option<Rc<[OnChange]>>>,
}

/// Where a change goes: to every callback of a list, or by path among a
/// key's subscribers ([`StateManager::targets`]).
pub(super) enum Route<'s> {
    All(Rc<[OnChange]>),
    ByPath(&'s Watchers),
}

impl Watchers {
    fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.by_head.is_empty()
    }

    /// [`callbacks`](Self::callbacks), if every subscriber watches the
    /// whole key.
    fn callbacks(&self) -> Option<&Rc<[OnChange]>> {
        self.callbacks
            .get_or_init(|| {
                let whole_only =
                    self.by_head.is_empty() && self.whole.iter().all(|(_, s)| s.path.is_none());
                whole_only.then(|| {
                    self.whole
                        .iter()
                        .map(|(_, s)| Rc::clone(&s.on_change))
                        .collect()
                })
            })
            .as_ref()
    }
}

impl Subscribers {
    fn insert(&mut self, key: FullKey, subscriber: Subscriber) -> u64 {
        self.next += 1;
        let id = self.next;
        let head = subscriber
            .path
            .as_ref()
            .and_then(|path| path.first().map(str::to_owned));
        let watchers = self.by_key.entry(key.clone()).or_default();
        match &head {
            None => watchers.whole.push((id, subscriber)),
            Some(head) => watchers
                .by_head
                .entry(head.clone())
                .or_default()
                .push((id, subscriber)),
        }
        watchers.callbacks = OnceCell::new();
        self.filed.insert(id, (key, head));
        *self.last.get_mut() = None;
        id
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some((key, head)) = self.filed.remove(&id) else {
            return false;
        };
        if let Some(watchers) = self.by_key.get_mut(&key) {
            match head {
                None => watchers.whole.retain(|(item, _)| *item != id),
                Some(head) => {
                    if let Some(items) = watchers.by_head.get_mut(&head) {
                        items.retain(|(item, _)| *item != id);
                        if items.is_empty() {
                            watchers.by_head.remove(&head);
                        }
                    }
                }
            }
            if watchers.is_empty() {
                self.by_key.remove(&key);
            } else {
                watchers.callbacks = OnceCell::new();
            }
        }
        *self.last.get_mut() = None;
        true
    }

    /// Where a change of `key` goes: every callback of a list when that
    /// needs no path compared (nobody watches the key, or everyone
    /// watches all of it), else its subscribers, to route by path.
    pub(super) fn route(&self, key: &FullKey) -> Route<'_> {
        if let Some((last, callbacks)) = &*self.last.borrow()
            && last == key
        {
            return Route::All(Rc::clone(callbacks));
        }
        let callbacks = match self.by_key.get(key) {
            None => Rc::clone(&self.none),
            Some(watchers) => match watchers.callbacks() {
                Some(callbacks) => Rc::clone(callbacks),
                None => return Route::ByPath(watchers),
            },
        };
        *self.last.borrow_mut() = Some((key.clone(), Rc::clone(&callbacks)));
        Route::All(callbacks)
    }

    /// How many subscriptions there are in all.
    pub(super) fn len(&self) -> usize {
        self.filed.len()
    }

    /// The keys watched by at least one subscriber.
    pub(super) fn keys(&self) -> impl Iterator<Item = &FullKey> {
        self.by_key.keys()
    }
}

impl StateManager {
    /// Watches `key` (or only `path` inside it) as `unit`; `on_change` runs
    /// after each change. Checked against the key's read permission.
    pub fn subscribe<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: Option<Path>,
        on_change: impl Fn(&Change) + 'static,
    ) -> Result<SubscriptionId> {
        let shared = self.shared()?;
        let full = shared.replica()?.subscribe(unit, key)?;
        let subscriber = Subscriber {
            path,
            on_change: Rc::new(on_change),
        };
        let id = shared.subscribers.borrow_mut().insert(full, subscriber);
        Self::bump(&shared);
        Ok(SubscriptionId(id))
    }

    /// Stops a subscription; `false` if it was already gone.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let Ok(shared) = self.shared() else {
            return false;
        };
        let removed = shared.subscribers.borrow_mut().remove(id.0);
        if removed {
            Self::bump(&shared);
        }
        removed
    }

    /// Live subscriptions in all (what the leak test watches).
    pub fn subscription_count(&self) -> usize {
        self.shared().map_or(0, |s| s.subscribers.borrow().len())
    }

    /// Live subscriptions of one key.
    pub fn subscriber_count(&self, key: &FullKey) -> usize {
        self.shared()
            .map_or(0, |s| Self::watching(&s.subscribers.borrow(), key).count())
    }

    /// Every subscriber of `key`, whatever its path: the whole-key ones,
    /// then the others by their path's first segment.
    pub(super) fn watching<'r>(
        subscribers: &'r Subscribers,
        key: &FullKey,
    ) -> impl Iterator<Item = &'r Subscriber> {
        subscribers
            .by_key
            .get(key)
            .into_iter()
            .flat_map(|watchers| {
                watchers
                    .whole
                    .iter()
                    .chain(watchers.by_head.values().flatten())
                    .map(|(_, subscriber)| subscriber)
            })
    }

    /// Appends to `targets` the callbacks `change` must reach: whole-key
    /// subscribers and those whose path it touched, visiting only the
    /// paths under the top-level fields it changed.
    pub(super) fn targets(watchers: &Watchers, change: &Change, targets: &mut Vec<OnChange>) {
        let touched = |s: &&Subscriber| s.path.as_ref().is_none_or(|path| change.touches(path));
        let callback = |(_, s): &(u64, Subscriber)| Rc::clone(&s.on_change);
        let whole = watchers.whole.iter().filter(|(_, s)| touched(&s));
        targets.extend(whole.map(callback));
        // Most keys have no path subscriber: then there is nothing to diff.
        if watchers.by_head.is_empty() {
            return;
        }
        match change.heads() {
            // The top level changed shape: any path may be affected.
            None => {
                for items in watchers.by_head.values() {
                    targets.extend(items.iter().filter(|(_, s)| touched(&s)).map(callback));
                }
            }
            Some(heads) => {
                for head in heads {
                    if let Some(items) = watchers.by_head.get(head.name.as_ref()) {
                        // Filed under this head: its path starts with it.
                        let touched = |(_, s): &&(u64, Subscriber)| {
                            s.path.as_ref().is_some_and(|path| head.touches(path))
                        };
                        targets.extend(items.iter().filter(touched).map(callback));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;

    fn key(text: &str) -> FullKey {
        FullKey::parse(text).unwrap()
    }

    fn whole(calls: &Rc<Cell<u32>>) -> Subscriber {
        let calls = Rc::clone(calls);
        Subscriber {
            path: None,
            on_change: Rc::new(move |_| calls.set(calls.get() + 1)),
        }
    }

    fn callbacks(route: Route<'_>) -> Rc<[OnChange]> {
        match route {
            Route::All(callbacks) => callbacks,
            Route::ByPath(_) => panic!("routed by path"),
        }
    }

    /// The shortcut of a delivery: a change of the key delivered last
    /// reaches the list kept for it, without a lookup or a new list.
    #[test]
    fn a_change_of_the_key_delivered_last_reuses_its_list() {
        let calls = Rc::new(Cell::new(0));
        let mut subscribers = Subscribers::default();
        let (a, b) = (key("global/a"), key("global/b"));
        for _ in 0..3 {
            subscribers.insert(a.clone(), whole(&calls));
        }
        subscribers.insert(b.clone(), whole(&calls));
        // Mounting builds no list; the first delivery does.
        let watchers = subscribers.by_key.get(&a).unwrap();
        assert!(watchers.callbacks.get().is_none());
        let first = callbacks(subscribers.route(&a));
        assert_eq!(first.len(), 3);
        let last = subscribers.last.borrow().clone().map(|(k, l)| (k, l.len()));
        assert_eq!(last, Some((a.clone(), 3)));
        // Again: the very list, not a copy, from the memory of the last key.
        assert!(Rc::ptr_eq(&first, &callbacks(subscribers.route(&a))));
        // Another key moves the memory; back to the first, its list is the
        // one its watchers kept.
        assert_eq!(callbacks(subscribers.route(&b)).len(), 1);
        assert!(Rc::ptr_eq(&first, &callbacks(subscribers.route(&a))));
        // A key nobody watches reaches nothing.
        assert!(callbacks(subscribers.route(&key("global/c"))).is_empty());
        first.iter().for_each(|call| call(&change(&a)));
        assert_eq!(calls.get(), 3);
    }

    /// Whoever comes or goes is reached (or not) by the next change.
    #[test]
    fn subscribing_or_leaving_forgets_the_list() {
        let calls = Rc::new(Cell::new(0));
        let mut subscribers = Subscribers::default();
        let a = key("global/a");
        let one = subscribers.insert(a.clone(), whole(&calls));
        let before = callbacks(subscribers.route(&a));
        subscribers.insert(a.clone(), whole(&calls));
        assert!(subscribers.last.borrow().is_none());
        let after = callbacks(subscribers.route(&a));
        assert_eq!((before.len(), after.len()), (1, 2));
        assert!(subscribers.remove(one));
        assert!(subscribers.last.borrow().is_none());
        assert_eq!(callbacks(subscribers.route(&a)).len(), 1);
        // A path subscriber: changes are routed by path from then on.
        let path = Subscriber {
            path: Some(Path::parse("x").unwrap()),
            on_change: Rc::new(|_| {}),
        };
        subscribers.insert(a.clone(), path);
        assert!(matches!(subscribers.route(&a), Route::ByPath(_)));
        assert!(subscribers.last.borrow().is_none());
        // The last subscriber of a key leaves: its list goes with it.
        let b = key("global/b");
        let only = subscribers.insert(b.clone(), whole(&calls));
        assert_eq!(callbacks(subscribers.route(&b)).len(), 1);
        assert!(subscribers.remove(only));
        assert!(subscribers.last.borrow().is_none());
        assert!(callbacks(subscribers.route(&b)).is_empty());
    }

    fn change(key: &FullKey) -> Change {
        Change::new(
            key.clone(),
            Arc::new(serde_json::json!(1)),
            Arc::new(serde_json::json!(2)),
        )
    }
}
