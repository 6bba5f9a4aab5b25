//! Why a browser adapter could not be set up or could not send.

use gaesup_state::StateError;
use gaesup_state_core::StorageError;

/// Why a browser adapter could not be set up or could not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    /// There is no `window` (a worker, or not a browser at all).
    #[error("no browser window")]
    NoWindow,
    /// `BroadcastChannel` is missing or refused to open.
    #[error("BroadcastChannel unavailable: {0}")]
    NoBroadcastChannel(String),
    /// A storage the adapter needs failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A message could not be encoded or posted.
    #[error("could not send to other tabs: {0}")]
    Send(String),
    /// The state manager refused (normally: it was disposed).
    #[error(transparent)]
    State(#[from] StateError),
}

/// Result of the browser adapters.
pub type Result<T, E = WebError> = std::result::Result<T, E>;
