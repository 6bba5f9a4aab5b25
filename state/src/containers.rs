//! `<Apartment>`, `<Building>` and `<Unit>`: the containers that give each
//! unit its scope.
//!
//! Each container provides its id as context through its own owner, so a
//! lower container shadows a higher one and siblings never see each other's
//! context. A hook inside a `<Unit>` finds its full address (apartment,
//! building, unit) and the apartment's [`StateManager`] without being told.

use gaesup_state_core::{ApartmentId, BuildingId, UnitAddress, UnitId};
use leptos::context::Provider;
use leptos::prelude::*;

use crate::error::StateError;
use crate::manager::StateManager;
use crate::sync_status::SyncStatus;

/// Context of an `<Apartment>`: its id, its state manager and, when the
/// shell connected it to the browser, its sync status.
#[derive(Clone, Debug)]
pub struct ApartmentContext {
    /// The apartment's id.
    pub id: ApartmentId,
    /// The one state manager of the apartment.
    pub manager: StateManager,
    /// How the manager's storage and cross-tab link are doing; `None` when
    /// nothing connected it (tests, a manager kept in memory on purpose).
    pub sync: Option<SyncStatus>,
}

/// Context of a `<Building>` inside an apartment.
#[derive(Clone, Debug)]
pub struct BuildingContext {
    /// The building's id.
    pub id: BuildingId,
}

/// Context of a `<Unit>`: its full address and the apartment's manager.
/// Hooks read it; units never build one by hand.
#[derive(Clone, Debug)]
pub struct UnitContext {
    /// apartment/building/unit.
    pub address: UnitAddress,
    /// The apartment's state manager.
    pub manager: StateManager,
}

/// The enclosing apartment, if any.
pub fn use_apartment() -> Option<ApartmentContext> {
    use_context::<ApartmentContext>()
}

/// The enclosing unit, if any.
pub fn use_unit() -> Option<UnitContext> {
    use_context::<UnitContext>()
}

/// The whole application: owns one [`StateManager`] for everything inside.
#[component]
pub fn Apartment(
    /// The apartment's id (address segment and state scope).
    #[prop(into)]
    id: String,
    /// The state manager to use; by default a new one with a random tab id
    /// and the system clock, owned by this apartment.
    #[prop(default = None, into)]
    manager: Option<StateManager>,
    /// The sync status of `manager`'s browser connection, for units that
    /// show it (the inspector).
    #[prop(default = None, into)]
    sync: Option<SyncStatus>,
    /// Buildings and anything else.
    children: Children,
) -> impl IntoView {
    match ApartmentId::new(id.as_str()) {
        Ok(id) => {
            let manager = manager.unwrap_or_else(StateManager::with_system_clock);
            if let Err(err) = manager.bind(&id) {
                return container_error("apartment", id.to_string(), err.to_string());
            }
            let context = ApartmentContext { id, manager, sync };
            view! { <Provider value=context>{children()}</Provider> }.into_any()
        }
        Err(err) => container_error("apartment", id, err.to_string()),
    }
}

/// A region of the apartment grouping units; scopes `Building` keys.
#[component]
pub fn Building(
    /// The building's id, unique in its apartment.
    #[prop(into)]
    id: String,
    /// Units and anything else.
    children: Children,
) -> impl IntoView {
    match BuildingId::new(id.as_str()) {
        Ok(id) => {
            let context = BuildingContext { id };
            view! { <Provider value=context>{children()}</Provider> }.into_any()
        }
        Err(err) => container_error("building", id, err.to_string()),
    }
}

/// One micro-frontend. Hooks inside resolve keys against this unit's
/// address. Must sit inside a `<Building>` inside an `<Apartment>`.
#[component]
pub fn Unit(
    /// The unit's id, unique in its building.
    #[prop(into)]
    id: String,
    /// The unit's root component.
    children: Children,
) -> impl IntoView {
    let (Some(apartment), Some(building)) = (
        use_context::<ApartmentContext>(),
        use_context::<BuildingContext>(),
    ) else {
        let reason = "a <Unit> must sit inside a <Building> inside an <Apartment>".to_owned();
        return container_error("unit", id, reason);
    };
    match UnitId::new(id.as_str()) {
        Ok(unit) => {
            let context = UnitContext {
                address: UnitAddress::new(apartment.id, building.id, unit),
                manager: apartment.manager,
            };
            view! { <Provider value=context>{children()}</Provider> }.into_any()
        }
        Err(err) => container_error("unit", id, err.to_string()),
    }
}

fn container_error(what: &'static str, id: String, reason: String) -> AnyView {
    let error = StateError::InvalidContainer { what, id, reason };
    view! { <p role="alert" class="container-error">{error.to_string()}</p> }.into_any()
}
