//! One state manager per apartment of the manifest.

use std::sync::Arc;

use gaesup_state::StateManager;
use gaesup_state::core::vec_map::VecMap;

use crate::manifest::Manifest;

/// The apartments' state managers, made once at start-up under the app's
/// root owner, so they outlive every route change.
#[derive(Clone, Debug)]
pub struct Managers(Arc<VecMap<String, StateManager>>);

impl Managers {
    /// A manager (random tab id, system clock) for each apartment.
    pub fn new(manifest: &Manifest) -> Self {
        // Inserted one by one: collecting into a map compiles a sort of its
        // own for each place that collects (about 4 KiB of wasm each).
        let mut managers = VecMap::new();
        for apartment in &manifest.apartments {
            managers.insert(apartment.id.clone(), StateManager::with_system_clock());
        }
        Self(Arc::new(managers))
    }

    /// Every apartment id with its manager.
    pub fn iter(&self) -> impl Iterator<Item = (String, StateManager)> + '_ {
        self.0.iter().map(|(id, manager)| (id.clone(), *manager))
    }

    /// The manager of `apartment`.
    pub fn get(&self, apartment: &str) -> Option<StateManager> {
        self.0.get(apartment).copied()
    }
}
