//! One state manager per apartment of the manifest.

use std::sync::Arc;

use gaesup_state::StateManager;
use gaesup_state::core::SharedKey;
use gaesup_state::core::vec_map::VecMap;

use crate::manifest::Manifest;

/// Declares on `manager` every key the app's units declare (the list the
/// relay applies ops with, `gaesup_keys::UNITS`), before any unit shows,
/// and returns what failed (each unit would meet the same error when
/// shown).
///
/// A relayed op of a key no tab has declared cannot be applied: the page
/// holds it in memory and keeps its stored cursor before it, so every
/// load fetches the apartment's log again from there (up to the relay's
/// retained log, or a snapshot) and a reload while offline has none of
/// it. Every apartment's link starts at load, its units only when a page
/// shows them: declared here, the ops of units this page does not show
/// are applied and saved like the others, and the cursor moves on.
pub fn declare_app_keys(manager: &StateManager) -> Vec<String> {
    let mut failed = Vec::new();
    for unit in gaesup_keys::UNITS {
        let specs = match unit() {
            Ok(specs) => specs,
            Err(err) => {
                failed.push(format!("a unit's keys could not be built: {err}"));
                continue;
            }
        };
        for spec in specs {
            if let Err(err) = manager.declare(&SharedKey::erased(spec)) {
                failed.push(err.to_string());
            }
        }
    }
    failed
}

/// The apartments' state managers, made once at start-up under the app's
/// root owner, so they outlive every route change.
#[derive(Clone, Debug)]
pub struct Managers(Arc<VecMap<String, StateManager>>);

impl Managers {
    /// A manager (random tab id, system clock) for each apartment, with
    /// every key of the app's units declared (see [`declare_app_keys`]).
    pub fn new(manifest: &Manifest) -> Self {
        // Inserted one by one: collecting into a map compiles a sort of its
        // own for each place that collects (about 4 KiB of wasm each).
        let mut managers = VecMap::new();
        for apartment in &manifest.apartments {
            let manager = StateManager::with_system_clock();
            for err in declare_app_keys(&manager) {
                leptos::logging::error!("apartment {}: {err}", apartment.id);
            }
            managers.insert(apartment.id.clone(), manager);
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

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_state::core::{Lifetime, ManualClock, Scope, Strategy, TabId};
    use leptos::prelude::Owner;

    #[test]
    fn every_key_of_the_apps_units_is_declared_before_any_unit_shows() {
        Owner::new().with(|| {
            let manager = StateManager::new(TabId::new(1), ManualClock::new(0));
            assert_eq!(declare_app_keys(&manager), Vec::<String>::new());
            // Again: the same declarations, a no-op.
            assert_eq!(declare_app_keys(&manager), Vec::<String>::new());
            // Each is declared: the same name and scope with other rules
            // is refused, where a manager without them takes it.
            let fresh = StateManager::new(TabId::new(2), ManualClock::new(0));
            for spec in gaesup_keys::declarations().unwrap() {
                let other = SharedKey::<serde_json::Value>::builder(spec.name().as_str())
                    .scope(spec.scope())
                    .lifetime(match spec.lifetime() {
                        Lifetime::Memory => Lifetime::Persistent,
                        _ => Lifetime::Memory,
                    })
                    .strategy(Strategy::LastWriteWins)
                    .build()
                    .unwrap();
                let refused = manager.declare(&other);
                assert!(
                    refused.is_err(),
                    "{:?} {} was not declared",
                    spec.scope(),
                    spec.name().as_str()
                );
                fresh.declare(&other).unwrap();
            }
            // Not a key of the app: left to whoever declares it.
            let probe = SharedKey::<i64>::builder("probe")
                .scope(Scope::Apartment)
                .build()
                .unwrap();
            manager.declare(&probe).unwrap();
        });
    }
}
