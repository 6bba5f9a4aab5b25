//! Theme unit: one colour-scheme choice that follows the user everywhere.
//!
//! The user picks System, Light or Dark once; every page of every
//! apartment on this origin uses it, after reloads and in every open tab.
//! The unit shows the choice as a labelled radio group (native radios, so
//! Tab reaches the group and the arrow keys move the choice).
//!
//! It demonstrates the **global** scope: the one key here is shared by
//! every apartment, where a building or apartment key would not be.
//!
//! # The key
//!
//! [`theme_key`] is `global/theme`:
//!
//! - scope **Global**: a colour scheme is a preference of the person, not of
//!   one apartment, so the annex shows the theme picked in the main
//!   apartment;
//! - lifetime **Persistent**: a preference must survive a restart;
//! - strategy **last-write-wins**: a theme is one whole value; if two tabs
//!   pick at once, every tab settles on the same (latest) pick, and nothing
//!   is worth asking the user about.
//!
//! The value is [`Theme`], stored as `"system"`, `"light"` or `"dark"`
//! (what a JavaScript unit reading the key sees too).
//!
//! # Who applies it
//!
//! The switcher only records the choice. [`apply_theme`] puts it on the
//! page (`<html data-theme="light|dark">`, no attribute for System); the
//! shell calls it from one effect on every page, so the theme applies where
//! the switcher is not mounted and there is a single owner of the
//! attribute. Style sheets key their tokens on `:root[data-theme="dark"]`
//! and `:root[data-theme="light"]`, and follow `prefers-color-scheme`
//! without the attribute.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use gaesup_state::core::Result;
use gaesup_state::prelude::*;
use gaesup_state::use_unit;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// A colour scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Follow the operating system (`prefers-color-scheme`).
    #[default]
    System,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    /// Every theme, in the order the switcher shows them.
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    /// The label the switcher shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::System => "System",
            Self::Light => "Light",
            Self::Dark => "Dark",
        }
    }

    /// The stored form, also the radio's `value`: `system`, `light`, `dark`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    /// The `data-theme` attribute for this theme; `None` (no attribute)
    /// lets the style sheet follow the system.
    pub fn data_theme(self) -> Option<&'static str> {
        match self {
            Self::System => None,
            Self::Light => Some("light"),
            Self::Dark => Some("dark"),
        }
    }
}

/// The theme key: `global/theme`, persistent, last-write-wins.
pub fn theme_key() -> Result<SharedKey<Theme>> {
    SharedKey::builder("theme")
        .scope(Scope::Global)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::LastWriteWins)
        .build()
}

/// Puts `theme` on the page: sets `data-theme` on `document.documentElement`
/// to `light` or `dark`, removes it for [`Theme::System`].
///
/// For the shell, from one effect on every page; the switcher never calls
/// it. Does nothing outside a browser page (natively, in a worker).
pub fn apply_theme(theme: Theme) {
    #[cfg(target_arch = "wasm32")]
    {
        let Some(root) = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.document_element())
        else {
            return;
        };
        // Setting or removing an attribute with a valid name cannot fail.
        let _ = match theme.data_theme() {
            Some(value) => root.set_attribute("data-theme", value),
            None => root.remove_attribute("data-theme"),
        };
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = theme;
}

/// The theme switcher: a `<fieldset>` named "Theme" with one radio per
/// [`Theme`]. Must be inside a `<Unit>`.
///
/// Picking a radio stores the choice; the radios follow the stored value,
/// so a pick made in another tab or apartment shows here too. It does not
/// apply the theme to the page (see [`apply_theme`]).
#[component]
pub fn ThemeSwitcher() -> impl IntoView {
    let key = match theme_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("theme switcher unavailable: {err}")}</p> }
                .into_any();
        }
    };
    let theme = use_shared_state(&key);
    let (value, set, meta) = (theme.value, theme.set, theme.meta);
    // Radios are grouped by name, and names are page-wide: one group per
    // unit address keeps two switchers on one page apart.
    let group = use_unit().map_or_else(
        || "theme".to_owned(),
        |unit| format!("theme-{}", unit.address),
    );

    let radios = Theme::ALL
        .into_iter()
        .map(|choice| {
            let group = group.clone();
            view! {
                <label class="theme-choice">
                    <input
                        type="radio"
                        name=group
                        value=choice.as_str()
                        prop:checked=move || value.get() == choice
                        on:change=move |_| set.set(choice)
                    />
                    {choice.label()}
                </label>
            }
        })
        .collect_view();

    view! {
        <fieldset class="theme-switcher">
            <legend>"Theme"</legend>
            {radios}
        </fieldset>
        <ErrorAlert error=meta.error />
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_state::core::{ManualClock, TabId};
    use gaesup_state::{StateManager, UnitAddress};

    #[test]
    fn theme_is_a_global_persistent_last_write_wins_key() {
        let key = theme_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Global);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::LastWriteWins);
        assert_eq!(spec.default_value(), &serde_json::json!("system"));
    }

    #[test]
    fn themes_are_stored_lowercase_and_read_back() {
        for theme in Theme::ALL {
            let json = serde_json::to_value(theme).unwrap();
            assert_eq!(json, serde_json::json!(theme.as_str()));
            assert_eq!(serde_json::from_value::<Theme>(json).unwrap(), theme);
        }
        assert!(serde_json::from_value::<Theme>(serde_json::json!("Dark")).is_err());
    }

    #[test]
    fn only_light_and_dark_set_the_attribute() {
        assert_eq!(Theme::System.data_theme(), None);
        assert_eq!(Theme::Light.data_theme(), Some("light"));
        assert_eq!(Theme::Dark.data_theme(), Some("dark"));
        assert_eq!(Theme::default(), Theme::System);
    }

    #[test]
    fn apply_theme_is_a_no_op_natively() {
        apply_theme(Theme::Dark);
    }

    #[test]
    fn every_apartment_sees_the_same_theme() {
        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            let key = theme_key().unwrap();
            state.declare(&key).unwrap();
            let main: UnitAddress = "main/settings/theme".parse().unwrap();
            let annex: UnitAddress = "annex/settings/theme".parse().unwrap();
            assert_eq!(state.get(&annex, &key).unwrap(), Theme::System);
            state.set(&main, &key, Theme::Dark).unwrap();
            assert_eq!(state.get(&annex, &key).unwrap(), Theme::Dark);
            assert_eq!(key.full_key(&annex).as_str(), "global/theme");
        });
    }
}
