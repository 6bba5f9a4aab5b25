//! Who watches what: subscriptions to a key, or to a path inside it,
//! filed so that a change visits only the subscribers it may concern.

use std::rc::Rc;

use gaesup_state_core::{Change, FullKey, Path, SharedKey, UnitAddress};

use super::StateManager;
use super::registry::Registry;
use crate::error::Result;

/// Identifies one subscription, to remove it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

pub(super) type OnChange = Rc<dyn Fn(&Change)>;
pub(super) struct Subscriber {
    path: Option<Path>,
    on_change: OnChange,
}

/// What a subscriber is filed under: its key, and the first segment of its
/// path (`None` for the whole key). A change then visits only the
/// subscribers under the segments it touched ([`Path::changed_heads`]),
/// not every path subscriber of the key.
pub(super) type Watch = (FullKey, Option<String>);

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
        let full = shared.replica.borrow().subscribe(unit, key)?;
        let subscriber = Subscriber {
            path,
            on_change: Rc::new(on_change),
        };
        let head = subscriber
            .path
            .as_ref()
            .and_then(|path| path.first().map(str::to_owned));
        let id = shared
            .subscribers
            .borrow_mut()
            .insert((full, head), subscriber);
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

    /// Every subscriber of `key`, whatever its path.
    pub(super) fn watching<'r>(
        subscribers: &'r Registry<Watch, Subscriber>,
        key: &'r FullKey,
    ) -> impl Iterator<Item = &'r Subscriber> {
        subscribers
            .range((key.clone(), None)..)
            .take_while(move |((watched, _), _)| watched == key)
            .map(|(_, subscriber)| subscriber)
    }

    /// The callbacks `change` must reach: whole-key subscribers and those
    /// whose path it touched, visiting only the paths under the top-level
    /// fields it changed.
    pub(super) fn targets(
        subscribers: &Registry<Watch, Subscriber>,
        change: &Change,
    ) -> Vec<OnChange> {
        let touched = |s: &&Subscriber| s.path.as_ref().is_none_or(|path| change.touches(path));
        let callback = |s: &Subscriber| Rc::clone(&s.on_change);
        let whole = (change.key.clone(), None);
        // Most keys have no path subscriber: then there is nothing to diff.
        let has_paths = subscribers
            .range((change.key.clone(), Some(String::new()))..)
            .next()
            .is_some_and(|((key, _), _)| *key == change.key);
        if !has_paths {
            return subscribers
                .get(&whole)
                .filter(touched)
                .map(callback)
                .collect();
        }
        match change.changed_heads() {
            // The top level changed shape: any path may be affected.
            None => Self::watching(subscribers, &change.key)
                .filter(touched)
                .map(callback)
                .collect(),
            Some(heads) => {
                let mut targets: Vec<OnChange> = subscribers
                    .get(&whole)
                    .filter(touched)
                    .map(callback)
                    .collect();
                for head in heads {
                    targets.extend(
                        subscribers
                            .get(&(change.key.clone(), Some(head)))
                            .filter(touched)
                            .map(callback),
                    );
                }
                targets
            }
        }
    }
}
