//! The shell's pages, one per route, and the pieces they share.

mod apartment;
mod breadcrumbs;
mod building;
mod frame;
mod manifest_error;
mod not_found;
mod unit;

pub use apartment::{ApartmentPage, HomePage};
pub use building::BuildingPage;
pub use manifest_error::ManifestErrorPage;
pub use not_found::NotFound;
pub use unit::UnitPage;

use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::manifest::Manifest;

/// The validated manifest, provided by [`crate::App`] before any page renders.
fn use_manifest() -> Arc<Manifest> {
    expect_context::<Arc<Manifest>>()
}

/// The state manager of `apartment` (one per apartment, made at start-up).
fn use_state_manager(apartment: &str) -> Option<gaesup_state::StateManager> {
    use_context::<crate::managers::Managers>().and_then(|m| m.get(apartment))
}

/// The sync status of an apartment's manager, for `<Apartment sync>`.
fn use_sync_status(apartment: &str) -> Option<gaesup_state::SyncStatus> {
    use_context::<crate::sync::SyncStatuses>().and_then(|s| s.get(apartment))
}

/// A route parameter, empty when absent (an empty id matches nothing).
///
/// Memoized, so a change elsewhere in the address (a unit's own sub-route,
/// such as a todo filter) does not rebuild the page and remount its unit.
fn param(name: &'static str) -> impl Fn() -> String + Copy {
    let params = use_params_map();
    let value = Memo::new(move |_| params.read().get(name).unwrap_or_default());
    move || value.get()
}
