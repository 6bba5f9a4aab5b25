//! The theme switcher, and what puts a theme on the page.

use gaesup_state::prelude::*;
use gaesup_state::use_unit;
use leptos::prelude::*;

use crate::{Theme, theme_key};

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
