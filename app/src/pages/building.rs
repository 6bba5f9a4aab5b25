//! The building view: one building on its own.

use leptos::prelude::*;

use super::breadcrumbs::Breadcrumbs;
use super::frame::BuildingSection;
use super::{NotFound, param, use_manifest, use_state_manager, use_sync_status};
use crate::paths;

/// `/apartment/{apartment}/building/{building}`.
#[component]
pub fn BuildingPage() -> impl IntoView {
    let manifest = use_manifest();
    let apartment_id = param("apartment");
    let building_id = param("building");
    move || {
        let (a, b) = (apartment_id(), building_id());
        match manifest.find_building(&a, &b) {
            Err(missing) => view! { <NotFound reason=missing.to_string() /> }.into_any(),
            Ok((apartment, building)) => {
                let trail = vec![(apartment.title.clone(), paths::apartment(&a))];
                let manager = use_state_manager(&a);
                let sync = use_sync_status(&a);
                let building = building.clone();
                view! {
                    <Breadcrumbs trail current=building.title.clone() />
                    <gaesup_state::Apartment id=a.clone() manager sync>
                        <BuildingSection apartment=a building />
                    </gaesup_state::Apartment>
                }
                .into_any()
            }
        }
    }
}
