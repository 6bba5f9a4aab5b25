//! The flaky unit's key, declared the same way by the app and by the relay.

use std::sync::Arc;

use gaesup_state_core::{KeySpec, Result, Scope, SharedKey};

/// Whether the flaky unit fails: `apartment/{apartment}/flaky-broken`.
pub fn broken_key() -> Result<SharedKey<bool>> {
    SharedKey::builder("flaky-broken")
        .scope(Scope::Apartment)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![Arc::clone(broken_key()?.spec())])
}
