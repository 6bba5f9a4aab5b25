//! Errors of the reactive layer.

use gaesup_state_core::Error as CoreError;

/// Why a state operation failed. Shown to the user through
/// [`StateMeta::error`](crate::StateMeta::error); never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The core refused: bad id, permission, first-write-wins, type, …
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A hook ran outside a `<Unit>`, so it has no scope to resolve keys in.
    #[error("{hook} was used outside a <Unit>; wrap the component in <Unit id=…>")]
    NoUnit {
        /// The hook's name.
        hook: &'static str,
    },
    /// The apartment that owned the state manager was unmounted.
    #[error("the state manager is gone (its apartment was unmounted)")]
    Disposed,
    /// An optimistic write was rejected by its confirmation and rolled back.
    #[error("write to {key} was rejected and rolled back: {reason}")]
    Rejected {
        /// The full key.
        key: String,
        /// What the confirmation said.
        reason: String,
    },
    /// A container was given an id that breaks the id grammar.
    #[error("invalid {what} id {id:?}: {reason}")]
    InvalidContainer {
        /// apartment, building or unit.
        what: &'static str,
        /// The id as given.
        id: String,
        /// Which rule it breaks.
        reason: String,
    },
}

/// Result of the reactive layer.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
