//! Showing a hook's last error.

use leptos::prelude::*;

use crate::error::StateError;

/// The last error of a hook (`meta.error`), as a `role="alert"` paragraph,
/// or nothing while there is none. Rendered as text.
#[component]
pub fn ErrorAlert(
    /// The error signal, e.g. `use_shared_state(..).meta.error`.
    error: Signal<Option<StateError>>,
) -> impl IntoView {
    move || {
        error
            .get()
            .map(|error| view! { <p role="alert" class="unit-error">{error.to_string()}</p> })
    }
}
