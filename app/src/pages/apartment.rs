//! The apartment view: every building with its units.

use leptos::prelude::*;

use super::frame::BuildingSection;
use super::{NotFound, param, use_manifest, use_state_manager, use_sync_status};
use crate::manifest::ApartmentSpec;

/// `/`: the first apartment of the manifest.
#[component]
pub fn HomePage() -> impl IntoView {
    let manifest = use_manifest();
    match manifest.default_apartment() {
        Some(apartment) => view! { <ApartmentView apartment=apartment.clone() /> }.into_any(),
        None => view! { <NotFound /> }.into_any(),
    }
}

/// `/apartment/{apartment}`.
#[component]
pub fn ApartmentPage() -> impl IntoView {
    let manifest = use_manifest();
    let id = param("apartment");
    move || match manifest.find_apartment(&id()) {
        Ok(apartment) => view! { <ApartmentView apartment=apartment.clone() /> }.into_any(),
        Err(missing) => view! { <NotFound reason=missing.to_string() /> }.into_any(),
    }
}

/// One apartment: its title and buildings.
#[component]
fn ApartmentView(
    /// The apartment to render.
    apartment: ApartmentSpec,
) -> impl IntoView {
    let id = apartment.id.clone();
    let manager = use_state_manager(&id);
    let sync = use_sync_status(&id);
    // Built inside <Apartment>'s children (which run under its owner), so
    // every building and unit finds the apartment's context.
    let buildings = move || {
        apartment
            .buildings
            .into_iter()
            .map(|building| view! { <BuildingSection apartment=id.clone() building /> })
            .collect_view()
    };
    view! {
        <div class="apartment">
            <h1 class="apartment-title">{apartment.title.clone()}</h1>
            <gaesup_state::Apartment id=apartment.id.clone() manager sync>
                <div class="apartment-buildings">{buildings()}</div>
            </gaesup_state::Apartment>
        </div>
    }
}
