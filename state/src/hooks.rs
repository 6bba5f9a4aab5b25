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
