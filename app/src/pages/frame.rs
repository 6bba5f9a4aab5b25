//! Containers shared by the pages: a building region and a unit frame.

use gaesup_state::{Building, Unit};
use leptos::prelude::*;
use leptos_router::components::A;

use crate::manifest::{BuildingSpec, UnitSpec};
use crate::{paths, registry};

/// A building: a labelled region holding its units' frames.
#[component]
pub fn BuildingSection(
    /// Id of the apartment the building belongs to.
    apartment: String,
    /// The building to render.
    building: BuildingSpec,
) -> impl IntoView {
    let title_id = format!("building-{}-title", building.id);
    let labelled_by = title_id.clone();
    let href = paths::building(&apartment, &building.id);
    let id = building.id.clone();
    let title = building.title.clone();
    // Built inside <Building>'s children (which run under its owner), so
    // each <Unit> finds the building's context.
    let units = move || {
        building
            .shown()
            .into_iter()
            .map(|unit| {
                let version = building.version_label(unit);
                let unit = unit.clone();
                view! { <UnitFrame apartment=apartment.clone() building=building.id.clone() unit version /> }
            })
            .collect_view()
    };
    view! {
        <section class="building" aria-labelledby=labelled_by>
            <h2 id=title_id class="building-title">
                <A href=href>{title}</A>
            </h2>
            <Building id>
                <div class="building-units">{units()}</div>
            </Building>
        </section>
    }
}

/// A unit inside a building: a labelled frame with a link to its address.
#[component]
pub fn UnitFrame(
    /// Id of the apartment.
    apartment: String,
    /// Id of the building.
    building: String,
    /// The unit to render.
    unit: UnitSpec,
    /// Its version text (see [`BuildingSpec::version_label`]).
    version: String,
) -> impl IntoView {
    let title_id = format!("unit-{building}-{}-title", unit.id);
    let labelled_by = title_id.clone();
    let href = paths::unit(&apartment, &building, &unit.id);
    view! {
        <article class="unit" aria-labelledby=labelled_by>
            <header class="unit-header">
                <h3 id=title_id class="unit-title">
                    <A href=href>{unit.title}</A>
                </h3>
                <span class="unit-version">{version}</span>
            </header>
            <div class="unit-body">
                <Unit id=unit.id>
                    <Contained kind=unit.kind />
                </Unit>
            </div>
        </article>
    }
}

/// A unit's view inside an error boundary: if the unit renders an error,
/// its frame shows what failed and a retry button, and nothing outside the
/// frame is affected.
#[component]
pub fn Contained(
    /// The unit's kind (a name in the registry).
    kind: String,
) -> impl IntoView {
    let attempt = RwSignal::new(0_u32);
    // A retry builds a fresh boundary around a fresh unit: errors a view
    // renders are caught by the boundary that was current when the view
    // was built.
    move || {
        attempt.track();
        let kind = kind.clone();
        view! {
            <ErrorBoundary fallback=move |errors| view! { <UnitFailure errors attempt /> }>
                {unit_body(&kind)}
            </ErrorBoundary>
        }
    }
}

/// What a failed unit's frame shows.
#[component]
fn UnitFailure(
    /// The errors the unit rendered.
    errors: ArcRwSignal<Errors>,
    /// Bumped to rebuild the unit.
    attempt: RwSignal<u32>,
) -> impl IntoView {
    let messages = {
        move || {
            errors.with(|errors| {
                errors
                    .iter()
                    .map(|(_, error)| error.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        }
    };
    let retry = move |_| attempt.update(|n| *n += 1);
    view! {
        <div class="unit-failure" role="alert">
            <p>"This unit failed: " {messages}</p>
            <button type="button" on:click=retry>
                "Retry"
            </button>
        </div>
    }
}

/// The unit's own view, or a notice when this build lacks its kind (the
/// manifest is validated against the registry, so that is a shell bug).
pub fn unit_body(kind: &str) -> AnyView {
    match registry::find(kind) {
        Some(unit) => (unit.render)(),
        None => {
            let message = format!("This build has no unit of kind {kind:?}.");
            view! { <p role="alert" class="unit-error">{message}</p> }.into_any()
        }
    }
}
