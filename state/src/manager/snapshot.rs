//! Snapshot and restore of a scope, as a unit sees it.

use gaesup_state_core::{BatchWrite, Scope, UnitAddress};

use super::{Origin, StateManager};
use crate::error::Result;

impl StateManager {
    /// Exports, as JSON text, the values of the keys of `scope` that
    /// `unit` can read (see
    /// [`Replica::snapshot`](gaesup_state_core::Replica::snapshot)):
    /// relative names, so the text restores into another building or
    /// apartment too.
    pub fn snapshot(&self, unit: &UnitAddress, scope: Scope) -> Result<String> {
        let shared = self.shared()?;
        let snapshot = shared.replica()?.snapshot(unit, scope);
        Ok(snapshot.to_json()?)
    }

    /// Restores a [`snapshot`](Self::snapshot) as `unit`: validated
    /// completely first (a bad snapshot changes nothing), then written as
    /// one batch that reaches subscribers, storage and other tabs like any
    /// local write.
    pub fn restore(&self, unit: &UnitAddress, text: &str) -> Result<BatchWrite> {
        let shared = self.shared()?;
        let restored = shared.replica_mut()?.restore(unit, text)?;
        self.publish(
            &shared,
            &restored.changes,
            restored.message.as_ref(),
            Origin::Local,
        );
        Ok(restored)
    }
}
