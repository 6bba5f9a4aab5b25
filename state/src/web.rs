//! Browser adapters: the manager's storages, its way to other tabs, and the
//! scheduling that ties them to the page.
//!
//! The reactive layer only knows the core's `Storage` trait and a send
//! callback; this module supplies the browser side:
//!
//! - `BrowserStorage`: `localStorage` for persistent keys, `sessionStorage`
//!   for ephemeral ones, every failure a [`StorageError`], never a panic.
//! - `BroadcastTransport`: the fast path between tabs, and
//!   `StorageEventTransport`, the fallback where `BroadcastChannel` is
//!   missing.
//! - `connect_browser`: wires both to a [`StateManager`](crate::StateManager)
//!   (save at most once per animation frame, re-read storage when the tab
//!   becomes visible or another tab writes, ask open tabs for what a new
//!   tab missed) and returns a `WebSync` whose [`SyncStatus`] signals feed
//!   a status display.
//!
//! Everything that touches the browser exists only on `wasm32` (so those
//! names are not links here: native docs do not have them); the error and
//! status types are plain Rust so native code can name them.

use gaesup_state_core::StorageError;

use crate::error::StateError;

#[cfg(target_arch = "wasm32")]
mod channel;
mod status;
#[cfg(target_arch = "wasm32")]
mod storage;
#[cfg(target_arch = "wasm32")]
mod sync;

#[cfg(target_arch = "wasm32")]
pub use channel::{BroadcastTransport, StorageEventTransport, bus_key, channel_name};
pub use status::SyncStatus;
#[cfg(target_arch = "wasm32")]
pub use storage::{BrowserStorage, StorageArea};
#[cfg(target_arch = "wasm32")]
pub use sync::{
    ConnectOptions, TransportChoice, TransportKind, WebSync, connect_browser,
    connect_browser_with_options,
};

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
