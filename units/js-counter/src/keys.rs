//! The keys the JavaScript element uses, declared the same way by the app and by the relay.

use std::sync::Arc;

use gaesup_state_core::{KeySpec, Lifetime, Result, Scope, SharedKey, Strategy};

/// The building's shared count: `building/{apartment}/{building}/count`.
pub fn count_key() -> Result<SharedKey<i64>> {
    SharedKey::builder("count")
        .scope(Scope::Building)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Sum)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![Arc::clone(count_key()?.spec())])
}
