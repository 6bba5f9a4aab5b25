//! Reactive state for Leptos micro-frontends.
//!
//! # The problem
//!
//! An apartment (one app) holds buildings (page regions) holding units
//! (independent micro-frontends, one crate each). Units must share some
//! state and keep the rest to themselves: a cart both the catalog and the
//! cart units see, a counter for one building, notes private to one unit.
//! Shared state has to survive reloads when asked to, stay equal across
//! browser tabs, and never let one unit's bug corrupt another's data.
//!
//! This crate is the Leptos face of that state manager. Keys are declared
//! once, typed ([`SharedKey`]), with a scope, a lifetime, a conflict
//! strategy, a schema and permissions; the containers [`Apartment`],
//! [`Building`] and [`Unit`] tell each hook where it is, so a unit only
//! ever names its keys, never another unit.
//!
//! # Example
//!
//! ```
//! use gaesup_state::prelude::*;
//! use leptos::prelude::*;
//!
//! fn visits() -> SharedKey<i64> {
//!     SharedKey::builder("visits")
//!         .scope(Scope::Building)       // shared by the building's units
//!         .lifetime(Lifetime::Persistent) // survives reloads, syncs tabs
//!         .strategy(Strategy::Sum)      // concurrent increments all count
//!         .build()
//!         .expect("a valid declaration")
//! }
//!
//! #[component]
//! fn Visits() -> impl IntoView {
//!     let visits = use_shared_state(&visits());
//!     let set = visits.set;
//!     view! {
//!         <button on:click=move |_| set.increment(1)>"Visit"</button>
//!         <output>{visits.value}</output>
//!     }
//! }
//!
//! #[component]
//! fn App() -> impl IntoView {
//!     view! {
//!         <Apartment id="shop">
//!             <Building id="lobby">
//!                 <Unit id="visits"><Visits /></Unit>
//!             </Building>
//!         </Apartment>
//!     }
//! }
//! ```
//!
//! # Containers and scope
//!
//! [`Apartment`] owns one [`StateManager`]; [`Building`] and [`Unit`]
//! provide their ids through their own reactive owners, so a hook inside a
//! unit resolves `Private`, `Building`, `Apartment` and `Global` keys to
//! the right fully qualified key without being told. Two buildings that
//! both declare `"count"` get two independent counters.
//!
//! # Reading and writing
//!
//! [`use_shared_state`] returns a read signal, a `Copy` setter and
//! metadata signals (pending, last error, last writer, version), plus the
//! open conflicts of a user-resolve key. [`StateSetter::set_optimistic`]
//! shows a value at once and rolls back only that write if its
//! confirmation fails. [`use_state_path`] watches one path inside a value
//! and is not notified by changes elsewhere. [`UseUnitStateReturn::batch`] writes
//! several keys atomically and notifies each subscriber once.
//!
//! # Conflicts
//!
//! A user-resolve key keeps concurrent values side by side;
//! [`ConflictModal`] shows them in an accessible dialog and resolves with
//! the user's choice (current, incoming or custom).
//!
//! # Strategies a build leaves out
//!
//! Last-write-wins, first-write-wins and sum are always built. Merge and
//! user-resolve are this crate's features `merge` and `user-resolve`, on
//! by default. An app that declares no key of one can turn it off, and its
//! code is then not in the wasm:
//!
//! ```toml
//! gaesup-state = { version = "0.1", default-features = false, features = ["merge"] }
//! ```
//!
//! `gaesup-state-web` has the same two features, also on by default, so
//! an app turns them off in both. Without a feature, its [`Strategy`]
//! variant does not exist. Cargo turns a feature on for the whole build if
//! any crate in it asks, so a dependency with default features brings
//! both back. States of a left-out
//! strategy can still arrive from a build that has it: another version of
//! the app in another tab, the same origin's storage, a relay. A stored
//! entry of it is set aside unchanged with the reason ("strategy merge is
//! not in this build …"), as a corrupt one is, and nothing overwrites it;
//! in a sync message or a relay's snapshot its states are left out and the
//! others apply (a snapshot's are said in the page's notices, and the
//! device's cursor moves past them). Its ops are refused as of the wrong
//! strategy, or held for a key this build has not declared, as any such
//! op is.
//!
//! # Events
//!
//! [`use_container_event`] is a typed event bus scoped like state
//! (building, apartment, global), optionally reaching other tabs.
//!
//! # In the browser
//!
//! This crate holds no browser code: a [`StateManager`] keeps state in
//! memory until something connects it. `gaesup-state-web` does, in the
//! browser: localStorage and sessionStorage through the core's `Storage`
//! trait, other tabs through its `Transport` trait (BroadcastChannel, the
//! storage-event fallback), the page events that decide when to save and
//! re-read, and `window.gaesup` for units written in JavaScript. What it
//! reports comes back as a [`SyncStatus`], which the `<Apartment>` hands
//! to its units.
//!
//! # Lifetime of subscriptions
//!
//! Every subscription and listener belongs to the owner of the component
//! that made it and is removed when that unit unmounts
//! ([`StateManager::subscription_count`] shows it).
//!
//! # What this is not
//!
//! Permissions stop one unit's bug from touching another unit's data. On a
//! shared origin they are not a security boundary against hostile scripts,
//! which can read localStorage directly: keep no secrets in it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod alert;
mod conflict;
mod containers;
pub mod display;
mod error;
mod hooks;
mod manager;
mod platform;
mod sync_status;

pub use gaesup_state_core as core;
pub use gaesup_state_core::{
    Access, Conflict, Lifetime, Path, Scope, SharedKey, Stamp, Strategy, UnitAddress,
};

pub use alert::ErrorAlert;
pub use conflict::ConflictModal;
pub use containers::{
    Apartment, ApartmentContext, Building, BuildingContext, Unit, UnitContext, use_apartment,
    use_unit,
};
pub use error::{Result, StateError};
pub use hooks::{
    EventEmitter, StateMeta, StateSetter, UnitBatch, UseContainerEventOptions,
    UseContainerEventReturn, UseSharedStateOptions, UseSharedStateReturn, UseStatePathReturn,
    UseUnitStateReturn, use_container_event, use_container_event_with_options, use_shared_state,
    use_shared_state_with_options, use_state_path, use_unit_state,
};
pub use manager::{
    Confirmation, KeyInfo, LOG_CAPACITY, ListenerId, LogEntry, MAX_CASCADE_CHANGES,
    MAX_CASCADE_DEPTH, MAX_QUEUED_EVENT_BYTES, Origin, RelayAck, StateManager, SubscriptionId,
    Written,
};
pub use platform::{SystemClock, random_tab_id};
pub use sync_status::{RelayStatus, SyncStatus};

/// Everything a unit needs: `use gaesup_state::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Access, Apartment, Building, ErrorAlert, Lifetime, Scope, SharedKey, StateError,
        StateSetter, Strategy, Unit, UseContainerEventOptions, UseSharedStateOptions,
        UseUnitStateReturn, use_container_event, use_container_event_with_options,
        use_shared_state, use_shared_state_with_options, use_state_path, use_unit_state,
    };
}
