//! The element, rendered with its unit's address once its keys are declared.

use gaesup_state::prelude::*;
use gaesup_state::use_unit;
use leptos::prelude::*;

use crate::count_key;

/// Declares the element's keys for its unit, then renders the element.
/// Must be inside a `<Unit>`.
#[component]
pub fn JsCounter() -> impl IntoView {
    let Some(unit) = use_unit() else {
        return view! { <p role="alert">"The JS counter must be inside a <Unit>."</p> }.into_any();
    };
    let declared = count_key()
        .map_err(StateError::from)
        .and_then(|key| unit.manager.declare(&key));
    if let Err(err) = declared {
        let message = format!("JS counter unavailable: {err}");
        return view! { <p role="alert">{message}</p> }.into_any();
    }
    let address = unit.address.to_string();
    view! { <gaesup-js-counter unit=address></gaesup-js-counter> }.into_any()
}
