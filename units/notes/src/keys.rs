//! The notes' keys, declared the same way by the app and by the relay.

use std::sync::Arc;

use gaesup_state_core::{KeySpec, Lifetime, Result, Scope, SharedKey, Strategy};

/// The private notes' key: `private/{apartment}/{building}/{unit}/notes`.
pub fn notes_key() -> Result<SharedKey<String>> {
    SharedKey::builder("notes")
        .scope(Scope::Private)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::LastWriteWins)
        .build()
}

/// The shared note's key: `apartment/{apartment}/shared-note`.
pub fn shared_note_key() -> Result<SharedKey<String>> {
    SharedKey::builder("shared-note")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::UserResolve)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![
        Arc::clone(notes_key()?.spec()),
        Arc::clone(shared_note_key()?.spec()),
    ])
}
