//! The focused unit view: one unit, with breadcrumbs and a way back.

use leptos::prelude::*;
use leptos_router::components::A;

use super::breadcrumbs::Breadcrumbs;
use super::frame::Contained;
use super::{NotFound, param, use_manifest, use_state_manager, use_sync_status};
use crate::paths;

/// `/apartment/{apartment}/building/{building}/unit/{unit}`.
#[component]
pub fn UnitPage() -> impl IntoView {
    let manifest = use_manifest();
    let apartment_id = param("apartment");
    let building_id = param("building");
    let unit_id = param("unit");
    move || {
        let (a, b, u) = (apartment_id(), building_id(), unit_id());
        let (apartment, building, unit) = match manifest.find_unit(&a, &b, &u) {
            Ok(found) => found,
            Err(missing) => return view! { <NotFound reason=missing.to_string() /> }.into_any(),
        };
        let trail = vec![
            (apartment.title.clone(), paths::apartment(&a)),
            (building.title.clone(), paths::building(&a, &b)),
        ];
        let back = format!("← Back to {}", apartment.title);
        let manager = use_state_manager(&a);
        let sync = use_sync_status(&a);
        let kind = unit.kind.clone();
        let unit_id = unit.id.clone();
        view! {
            <Breadcrumbs trail current=unit.title.clone() />
            <article class="unit unit-focused" aria-labelledby="unit-focused-title">
                <header class="unit-header">
                    <h1 id="unit-focused-title" class="unit-title">
                        {unit.title.clone()}
                    </h1>
                    <span class="unit-version">{building.version_label(unit)}</span>
                </header>
                <div class="unit-body">
                    <gaesup_state::Apartment id=a.clone() manager sync>
                        <gaesup_state::Building id=b.clone()>
                            <gaesup_state::Unit id=unit_id>
                                <Contained kind />
                            </gaesup_state::Unit>
                        </gaesup_state::Building>
                    </gaesup_state::Apartment>
                </div>
            </article>
            <p class="back">
                <A href=paths::apartment(&a)>{back}</A>
            </p>
        }
        .into_any()
    }
}
