//! The apartment shell.
//!
//! A micro-frontend app is an *apartment* made of *buildings* (regions of the
//! page) that hold *units* (independent micro-frontends, one crate each under
//! `units/`). The shell reads the [`manifest`] to know what exists,
//! renders it, and routes between the whole apartment, one building and one
//! focused unit:
//!
//! | address | shows |
//! |---|---|
//! | `/` | the first apartment of the manifest |
//! | `/apartment/{apartment}` | that apartment |
//! | `/apartment/{apartment}/building/{building}` | one building |
//! | `/apartment/{apartment}/building/{building}/unit/{unit}` | one unit, focused |
//! | `/apartment/{apartment}/building/{building}/unit/{unit}/…` | the same unit, at one of its own routes |
//!
//! Anything else is a 404 page.
#![forbid(unsafe_code)]

pub mod managers;
pub mod manifest;
mod pages;
pub mod paths;
pub mod registry;
pub mod script_unit;
pub mod sync;

// The unit-writing guide's Rust snippets run as doctests of this crate
// (it depends on everything they use), so the guide cannot drift from the
// API.
#[cfg(doctest)]
#[doc = include_str!("../../units/README.md")]
pub struct WriteAUnitGuide;

use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use managers::Managers;
use manifest::Manifest;
use pages::{ApartmentPage, BuildingPage, HomePage, ManifestErrorPage, NotFound, UnitPage};

/// The whole application, laid out from the bundled manifest.
#[component]
pub fn App() -> impl IntoView {
    view! { <AppFrom manifest=manifest::BUNDLED /> }
}

/// The application laid out from `manifest` (JSON text): validates it,
/// then routes.
///
/// An invalid manifest renders an error page naming the problem instead of
/// the apartment, so a bad edit never shows a blank screen.
#[component]
pub fn AppFrom(
    /// The manifest's JSON text (see `app/src/manifest.json`).
    manifest: &'static str,
) -> impl IntoView {
    match Manifest::parse(manifest, registry::KINDS) {
        Ok(manifest) => {
            // One state manager per apartment, for the life of the page:
            // navigating between views must not lose memory-only state.
            let managers = Managers::new(&manifest);
            // Storage and tabs are attached before any unit declares a key,
            // so each key is rehydrated before its unit first renders.
            provide_context(sync::connect_all(&managers));
            // Units written in JavaScript reach the same managers, once
            // storage and tabs are attached: `gaesup:ready` fires here, and
            // a unit that reads then (and writes what it read) must see
            // what storage holds, not a default.
            #[cfg(target_arch = "wasm32")]
            if let Err(err) = gaesup_state_web::install_js_binding(managers.iter()) {
                leptos::logging::error!("window.gaesup unavailable: {err:?}");
            }
            follow_theme(&managers);
            provide_context(managers);
            provide_context(Arc::new(manifest));
            view! { <Shell /> }.into_any()
        }
        Err(error) => view! { <ManifestErrorPage error /> }.into_any(),
    }
}

/// Applies the global theme (the theme unit's key) to the document on every
/// page, whether or not a theme switcher is mounted. Every apartment's
/// manager holds the same global key, so whichever hears a change first
/// applies it.
fn follow_theme(managers: &Managers) {
    let Ok(key) = unit_theme::theme_key() else {
        return;
    };
    for (apartment, manager) in managers.iter() {
        let Ok(shell) = gaesup_state::UnitAddress::parse_parts(&apartment, "shell", "theme") else {
            continue;
        };
        if manager.declare(&key).is_err() {
            continue;
        }
        if let Ok(theme) = manager.get(&shell, &key) {
            unit_theme::apply_theme(theme);
        }
        // Lives as long as the page, like the managers.
        let _ = manager.subscribe(&shell, &key, None, |change| {
            if let Ok(theme) = serde::Deserialize::deserialize(&*change.new) {
                unit_theme::apply_theme(theme);
            }
        });
    }
}

/// Links to every apartment of the manifest.
#[component]
fn ApartmentNav() -> impl IntoView {
    let manifest = expect_context::<Arc<Manifest>>();
    let links = manifest
        .apartments
        .iter()
        .map(|apartment| {
            let href = paths::apartment(&apartment.id);
            let title = apartment.title.clone();
            view! {
                <li>
                    <A href=href>{title}</A>
                </li>
            }
        })
        .collect_view();
    view! {
        <nav aria-label="Apartments" class="apartment-nav">
            <ul>{links}</ul>
        </nav>
    }
}

/// One storage-and-sync panel per apartment.
#[component]
fn SyncPanels() -> impl IntoView {
    let manifest = expect_context::<Arc<Manifest>>();
    let managers = expect_context::<Managers>();
    let statuses = expect_context::<sync::SyncStatuses>();
    manifest
        .apartments
        .iter()
        .filter_map(|apartment| {
            let status = statuses.get(&apartment.id)?;
            let manager = managers.get(&apartment.id)?;
            let title = apartment.title.clone();
            Some(view! { <sync::SyncPanel title status manager /> })
        })
        .collect_view()
}

/// Header and routes around the pages. Needs the manifest in context.
#[component]
fn Shell() -> impl IntoView {
    view! {
        <Router base=paths::base()>
            <header class="site-header">
                <A href=paths::home()>
                    <span class="brand">"gaesup"</span>
                </A>
                <span class="tagline">"Rust micro-frontends on Leptos"</span>
                <ApartmentNav />
            </header>
            <main id="main" class="site-main">
                <Routes fallback=|| view! { <NotFound /> }>
                    <Route path=path!("/") view=HomePage />
                    <Route path=path!("/apartment/:apartment") view=ApartmentPage />
                    <Route path=path!("/apartment/:apartment/building/:building") view=BuildingPage />
                    <Route
                        path=path!("/apartment/:apartment/building/:building/unit/:unit")
                        view=UnitPage
                    />
                    // A unit may route inside its own address (the todo
                    // unit's filters); the shell shows the same unit.
                    <Route
                        path=path!("/apartment/:apartment/building/:building/unit/:unit/*rest")
                        view=UnitPage
                    />
                </Routes>
            </main>
            <footer class="site-footer">
                <SyncPanels />
            </footer>
        </Router>
    }
}
