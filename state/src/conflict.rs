//! A ready-made, accessible dialog for user-resolve conflicts.

use gaesup_state_core::{Conflict, OpId};
use leptos::html;
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hooks::StateSetter;

/// Shows the concurrent values of a user-resolve key and lets the user keep
/// the current one, take an incoming one, or type a custom value. The
/// choice is a new write that supersedes every value in the conflict.
///
/// It is a native modal `<dialog>`: the rest of the page is inert while it
/// is open (focus stays inside), it is labelled by its heading, every
/// control is a button or a labelled field, and Escape defers the decision
/// until the conflict changes. Values are rendered as text, never as HTML.
///
/// ```
/// use gaesup_state::prelude::*;
/// use gaesup_state::ConflictModal;
/// use leptos::prelude::*;
///
/// #[component]
/// fn Note() -> impl IntoView {
///     let key = SharedKey::<String>::builder("note")
///         .strategy(Strategy::UserResolve)
///         .build()
///         .expect("valid");
///     let note = use_shared_state(&key);
///     view! {
///         <ConflictModal
///             conflicts=note.conflicts
///             set=note.set
///             label="Shared note"
///             format=|text: &String| text.clone()
///             parse=|text: &str| Ok(text.to_owned())
///         />
///     }
/// }
/// ```
#[component]
pub fn ConflictModal<T>(
    /// Open conflicts, winner first (`use_shared_state(..).conflicts`).
    conflicts: Signal<Vec<Conflict<T>>>,
    /// The setter of the same key; resolving writes through it.
    set: StateSetter<T>,
    /// What the value is, for the dialog's title.
    #[prop(into)]
    label: String,
    /// Shows a value as text.
    format: fn(&T) -> String,
    /// Reads a custom value; its error is shown next to the field.
    parse: fn(&str) -> Result<T, String>,
) -> impl IntoView
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let dialog = NodeRef::<html::Dialog>::new();
    // The conflict the user deferred with Escape; a different conflict
    // (new ids) opens the dialog again.
    let deferred = RwSignal::new(Vec::<OpId>::new());
    let custom = RwSignal::new(String::new());
    let parse_error = RwSignal::new(None::<String>);
    let ids = move || conflicts.with(|list| list.iter().map(|c| c.id).collect::<Vec<_>>());
    let open = move || conflicts.with(|list| list.len() > 1) && deferred.with(|d| *d != ids());

    Effect::new(move || {
        let should_open = open();
        let Some(dialog) = dialog.get() else {
            return;
        };
        if should_open && !dialog.open() {
            // Fails only if the dialog is detached; then there is nothing
            // to show it in.
            let _ = dialog.show_modal();
        } else if !should_open && dialog.open() {
            dialog.close();
        }
    });

    let resolve = move |value: T| {
        set.resolve(value);
        custom.set(String::new());
        parse_error.set(None);
    };
    let use_custom = move |_| match parse(&custom.get_untracked()) {
        Ok(value) => resolve(value),
        Err(reason) => parse_error.set(Some(reason)),
    };
    let on_cancel = move |event: leptos::ev::Event| {
        // Escape: keep the dialog's state in our hands, defer this conflict.
        event.prevent_default();
        deferred.set(ids());
    };

    let options = move || {
        conflicts
            .get()
            .into_iter()
            .enumerate()
            .map(|(index, conflict)| {
                let (heading, action) = if index == 0 {
                    ("Current", "Keep current".to_owned())
                } else {
                    ("Incoming", format!("Take incoming {index}"))
                };
                let shown = format(&conflict.value);
                let origin = format!("{heading}, from {}", conflict.writer);
                let value = conflict.value;
                view! {
                    <li class="conflict-option">
                        <p class="conflict-origin">{origin}</p>
                        <pre class="conflict-value">{shown}</pre>
                        <button type="button" on:click=move |_| resolve(value.clone())>
                            {action}
                        </button>
                    </li>
                }
            })
            .collect_view()
    };

    view! {
        <dialog
            node_ref=dialog
            class="conflict-modal"
            aria-labelledby="conflict-modal-title"
            aria-describedby="conflict-modal-description"
            on:cancel=on_cancel
        >
            <h2 id="conflict-modal-title">{format!("Conflicting edits: {label}")}</h2>
            <p id="conflict-modal-description">
                "This value was changed in more than one place at the same time. "
                "Choose the value to keep; your choice replaces all of them."
            </p>
            <ul class="conflict-options">{options}</ul>
            <div class="conflict-custom">
                <label for="conflict-modal-custom">"Custom value"</label>
                <textarea
                    id="conflict-modal-custom"
                    prop:value=move || custom.get()
                    on:input=move |event| custom.set(event_target_value(&event))
                ></textarea>
                <p role="alert" class="conflict-error">{move || parse_error.get()}</p>
                <button type="button" on:click=use_custom>
                    "Use custom value"
                </button>
            </div>
            <button type="button" class="conflict-later" on:click=move |_| deferred.set(ids())>
                "Decide later"
            </button>
        </dialog>
    }
}
