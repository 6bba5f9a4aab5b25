//! The page shown when the manifest is invalid.

use leptos::prelude::*;

use crate::manifest::ManifestError;

/// Names what is wrong with the manifest instead of showing a blank screen.
#[component]
pub fn ManifestErrorPage(
    /// Why the manifest was rejected.
    error: ManifestError,
) -> impl IntoView {
    view! {
        <main id="main" class="site-main manifest-error">
            <h1>"The manifest is invalid"</h1>
            <p role="alert">{error.to_string()}</p>
            <p>"Fix app/src/manifest.json and rebuild."</p>
        </main>
    }
}
