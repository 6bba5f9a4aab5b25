//! The breadcrumb trail above a building or unit.

use leptos::prelude::*;
use leptos_router::components::A;

/// A labelled breadcrumb navigation: links to the ancestors, then the
/// current page marked `aria-current="page"`.
#[component]
pub fn Breadcrumbs(
    /// Ancestors from the outermost: (label, address).
    trail: Vec<(String, String)>,
    /// The current page's label.
    current: String,
) -> impl IntoView {
    let links = trail
        .into_iter()
        .map(|(label, href)| {
            view! {
                <li>
                    <A href=href>{label}</A>
                </li>
            }
        })
        .collect_view();
    view! {
        <nav aria-label="Breadcrumb" class="breadcrumbs">
            <ol>{links} <li aria-current="page">{current}</li></ol>
        </nav>
    }
}
