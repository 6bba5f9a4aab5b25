//! The storages attached to a manager, at most one per lifetime
//! (localStorage for persistent keys and sessionStorage for ephemeral ones,
//! in the browser): the one place a lifetime's storage is looked up.

use gaesup_state_core::{Lifetime, Storage};

/// The storages attached to a manager, in the order they were attached.
#[derive(Default)]
pub(super) struct Storages(Vec<(Lifetime, Box<dyn Storage>)>);

impl Storages {
    /// Attaches `storage` for `lifetime`, replacing the one it had.
    pub(super) fn attach(&mut self, lifetime: Lifetime, storage: Box<dyn Storage>) {
        self.0.retain(|(l, _)| *l != lifetime);
        self.0.push((lifetime, storage));
    }

    /// The storage of `lifetime`, if one is attached.
    pub(super) fn get(&self, lifetime: Lifetime) -> Option<&dyn Storage> {
        self.0
            .iter()
            .find(|(l, _)| *l == lifetime)
            .map(|(_, storage)| storage.as_ref())
    }

    /// [`get`](Self::get), to write.
    pub(super) fn get_mut(&mut self, lifetime: Lifetime) -> Option<&mut dyn Storage> {
        self.0
            .iter_mut()
            .find(|(l, _)| *l == lifetime)
            .map(|(_, storage)| -> &mut dyn Storage { storage.as_mut() })
    }

    /// Every attached storage (only `only`'s, if given), in attach order.
    pub(super) fn each(
        &mut self,
        only: Option<Lifetime>,
    ) -> impl Iterator<Item = (Lifetime, &mut dyn Storage)> {
        self.0
            .iter_mut()
            .filter(move |(lifetime, _)| only.is_none_or(|l| l == *lifetime))
            .map(|(lifetime, storage)| -> (Lifetime, &mut dyn Storage) {
                (*lifetime, storage.as_mut())
            })
    }

    /// Whether nothing is attached (the manager then never saves).
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
