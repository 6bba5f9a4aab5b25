//! Browser adapters of the gaesup state manager.
//!
//! # The problem
//!
//! A [`StateManager`](gaesup_state::StateManager) keeps an apartment's state in memory and knows the
//! core's two outward seams: `Storage`, where entries persist, and
//! `Transport`, the way out to other tabs. In a browser those are
//! `localStorage` and `sessionStorage`, and a `BroadcastChannel` (or, where
//! it is missing, the `storage` event). Something must also decide when to
//! save (at most once per animation frame, at once when the page is
//! hidden), when to re-read (the tab became visible, another tab wrote or
//! cleared storage) and when to ask the other tabs for what this one
//! missed; and units written in JavaScript need the same state through
//! `window.gaesup`. This crate is that browser side. The core and the
//! Leptos layer (`gaesup-state`) hold none of it, so whatever runs the core
//! elsewhere (a relay server) links none of it either.
//!
//! # Example
//!
//! ```no_run
//! use gaesup_state::StateManager;
//! use gaesup_state_web::connect_browser;
//! use leptos::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let owner = Owner::new();
//! owner.set();
//! let manager = StateManager::with_system_clock();
//! // Storage attached and loaded, other tabs reached, saves scheduled.
//! let sync = connect_browser(manager, &"main".parse()?)?;
//! // For the <Apartment sync=…> prop and a status panel; keep `sync`
//! // itself alive as long as the page (dropping it disconnects).
//! let status = sync.status();
//! # let _ = status;
//! # Ok(())
//! # }
//! ```
//!
//! # Storage
//!
//! [`BrowserStorage`] is one of the page's storage areas ([`StorageArea`])
//! behind the core's `Storage` trait: every failure is a specific
//! `StorageError` (quota exceeded, unavailable), never a panic.
//!
//! # Other tabs
//!
//! [`BroadcastTransport`] (the fast path) and [`StorageEventTransport`]
//! (the fallback) implement the core's `Transport` for the way out, and
//! hand what they receive, as raw text, to the callback they were opened
//! with.
//!
//! # Other devices
//!
//! [`RelayHandle::attach`] (from [`WebSync::relay`]) links a connection to
//! a relay named by a [`RelayConfig`] (read from `relay.json` with
//! [`fetch_relay_config`], or followed with [`follow_relay_config`], which
//! asks again while it cannot be fetched): one tab per browser and
//! apartment holds the link (Web Locks), every tab writes its persistent
//! ops to an outbox in `localStorage` first, and the link falls back to
//! HTTP when WebSockets fail. Connect with
//! [`ConnectOptions::expect_relay`] so writes made while the configuration
//! is read wait for it.
//!
//! ```no_run
//! # async fn f(sync: gaesup_state_web::WebSync) {
//! gaesup_state_web::follow_relay_config("relay.json", vec![sync.relay()]).await;
//! # }
//! ```
//!
//! # Connecting a manager
//!
//! [`connect_browser`] (or [`connect_browser_with_options`]: custom
//! storages, a forced transport) wires storage, transport and page events
//! to one manager and returns a [`WebSync`]; its [`SyncStatus`] signals
//! feed a status display.
//!
//! # Units written in JavaScript
//!
//! `install_js_binding` publishes `window.gaesup`:
//! `gaesup.unit("apartment/building/unit")` returns a `JsUnit` with
//! `get`, `set`, `increment`, `subscribe`, `emit`, `on`, `declare` and
//! what framework bindings need, under the same scopes, permissions and
//! strategies; errors are thrown as `Error`s with a stable `code`.
//!
//! Behind the `js` feature: the binding's wasm exports are linked into
//! every build that has it, whether or not the page installs it, so a
//! Leptos-only app leaves it out (about 20 KiB of exports and the code
//! only they reach).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod connect;
mod error;
#[cfg(feature = "js")]
mod js;
mod storage;
mod transport;

pub use gaesup_state::SyncStatus;

pub use connect::{
    ConnectOptions, RelayConfig, RelayConfigError, RelayHandle, TransportChoice, TransportKind,
    WebSync, connect_browser, connect_browser_with_options, fetch_relay_config,
    follow_relay_config,
};
pub use error::{Result, WebError};
#[cfg(feature = "js")]
pub use js::{JsUnit, JsWrite, install_js_binding};
pub use storage::{BrowserStorage, StorageArea};
pub use transport::{BroadcastTransport, StorageEventTransport, bus_key, channel_name};
