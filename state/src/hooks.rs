//! Hooks: how a unit reads and writes state and talks to other units.

mod event;
mod shared_state;
mod state_path;
mod state_setter;
mod unit_state;

pub use event::{
    EventEmitter, UseContainerEventOptions, UseContainerEventReturn, use_container_event,
    use_container_event_with_options,
};
pub use shared_state::{
    StateMeta, UseSharedStateOptions, UseSharedStateReturn, use_shared_state,
    use_shared_state_with_options,
};
pub use state_path::{UseStatePathReturn, use_state_path};
pub use state_setter::StateSetter;
pub use unit_state::{UnitBatch, UseUnitStateReturn, use_unit_state};

use leptos::prelude::*;

use crate::error::StateError;

/// Shows `outcome` in a hook's error signal: a failure always (a new one
/// replaces the last, even an equal one), a success only to clear an error
/// shown. Every write and every event passes here, and a set wakes every
/// reader even when the signal stays `None`.
fn record_error(error: RwSignal<Option<StateError>>, outcome: Option<StateError>) {
    if outcome.is_some() || error.try_with_untracked(Option::is_some) == Some(true) {
        let _ = error.try_set(outcome);
    }
}
