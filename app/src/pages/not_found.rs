//! The 404 page.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::paths;

/// Shown for any address that matches no route, or names an apartment,
/// building or unit the manifest does not have. The address is rendered as
/// text, never as markup.
#[component]
pub fn NotFound(
    /// What was missing, when the route matched but an id did not.
    #[prop(optional, into)]
    reason: Option<String>,
) -> impl IntoView {
    let path = use_location().pathname;
    view! {
        <div class="not-found">
            <h1>"Page not found"</h1>
            <p>"Nothing lives at " <code>{move || path.get()}</code> "."</p>
            {reason.map(|reason| view! { <p>{reason}</p> })}
            <p>
                <A href=paths::home()>"Go to the apartment"</A>
            </p>
        </div>
    }
}
