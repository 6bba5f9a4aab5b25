//! The unit's keys, declared the same way by the app and by the relay.
//!
//! Only `gaesup-state-core` here (no Leptos): the relay links this module
//! (through `gaesup-keys`) to apply the unit's ops with the same rules as
//! the tabs. A key the unit adds goes here and into [`declarations`].

use std::sync::Arc;

use gaesup_state_core::{KeySpec, Lifetime, Result, Scope, SharedKey, Strategy};

/// The unit's note: `private/{apartment}/{building}/{unit}/template-note`,
/// persistent, last-write-wins, schema 1.
pub fn note_key() -> Result<SharedKey<String>> {
    SharedKey::builder("template-note")
        .scope(Scope::Private)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::LastWriteWins)
        .schema(1)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![Arc::clone(note_key()?.spec())])
}
