//! Units written with JavaScript frameworks (React, Svelte, Vue), mounted
//! next to Leptos units.
//!
//! Such a unit is a crate under `units/` whose Rust side only declares,
//! typed, the keys its JavaScript uses, plus the bundle `js/build.mjs`
//! makes of its `js/` folder. [`ScriptUnit`] declares the keys, then
//! renders `<gaesup-unit>` (`js/gaesup-unit.js`), which imports the bundle
//! (the framework with it) only now that the unit is shown, mounts it, and
//! unmounts it when the unit leaves the page.
//!
//! A failure the element reports (the bundle does not load, the unit
//! throws while rendering) becomes an error rendered in the unit's place,
//! so the frame's error boundary shows it with a retry, as for a Leptos
//! unit; the rest of the page keeps working.

use gaesup_state::{StateError, StateManager, use_unit};
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use leptos::web_sys::CustomEvent;

/// Declares the keys a unit's JavaScript uses (its crate's `declare`).
pub type Declare = fn(&StateManager) -> Result<(), StateError>;

/// What a framework unit reported when it failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScriptUnitFailed(pub String);

/// A unit written with a JavaScript framework: its keys are declared, then
/// its bundle `module` (relative to the site's root) is loaded and
/// mounted. Must be inside a `<Unit>`, under an error boundary.
#[component]
pub fn ScriptUnit(
    /// The unit's bundle, e.g. `units/react-counter.js`.
    module: &'static str,
    /// Declares the keys the unit's JavaScript uses.
    declare: Declare,
) -> impl IntoView {
    let Some(unit) = use_unit() else {
        let error = StateError::NoUnit { hook: "ScriptUnit" };
        return view! { <p role="alert">{error.to_string()}</p> }.into_any();
    };
    if let Err(error) = declare(&unit.manager) {
        return (move || Err::<(), _>(error.clone())).into_any();
    }
    let failed = RwSignal::new(None::<String>);
    let on_failed = move |event: leptos::web_sys::Event| {
        let detail = event.unchecked_ref::<CustomEvent>().detail().as_string();
        failed.set(Some(detail.unwrap_or_else(|| "the unit failed".to_owned())));
    };
    let address = unit.address.to_string();
    view! {
        <gaesup-unit src=module unit=address on:gaesup-unit-failed=on_failed></gaesup-unit>
        {move || failed.get().map(|message| Err::<(), _>(ScriptUnitFailed(message)))}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use gaesup_state::core::{ManualClock, TabId};

    use super::*;
    use crate::registry::SCRIPT_UNITS;

    #[test]
    fn script_units_declare_the_keys_of_the_leptos_units_they_share() {
        Owner::new().with(|| {
            let manager = StateManager::new(TabId::new(1), ManualClock::new(0));
            manager
                .declare(&unit_counter::count_key().unwrap())
                .unwrap();
            manager
                .declare(&unit_notes::shared_note_key().unwrap())
                .unwrap();
            for (kind, _, declare) in SCRIPT_UNITS {
                declare(&manager).unwrap_or_else(|e| panic!("{kind}: {e}"));
                declare(&manager).unwrap_or_else(|e| panic!("{kind} again: {e}"));
            }
        });
    }
}
