//! The unit's view and the hooks it uses (feature `view`, on by default).

use gaesup_state::prelude::*;
use gaesup_state::{UseContainerEventReturn, UseSharedStateReturn};
use leptos::prelude::*;

use crate::{PING_TOPIC, check_note, note_key, ping_line};

/// Reads and writes [`note_key`] for the enclosing unit, refusing notes
/// that fail [`check_note`] (the refusal shows in `meta.error`).
pub fn use_note(key: &SharedKey<String>) -> UseSharedStateReturn<String> {
    let options = UseSharedStateOptions::default().validate(|text: &String| check_note(text));
    use_shared_state_with_options(key, options)
}

/// Joins the building's [`PING_TOPIC`]: `emit` sends a note to the
/// building, `last` and `last_sender` show the last one received.
pub fn use_ping() -> UseContainerEventReturn<String> {
    use_container_event::<String>(PING_TOPIC, Scope::Building)
}

/// The template unit: a labelled "Note" field saved on every input, the
/// saved note shown back, and a "Ping the building" button whose last ping
/// every unit of the building shows. Must be inside a `<Unit>`.
#[component]
pub fn Template() -> impl IntoView {
    let key = match note_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("unit unavailable: {err}")}</p> }.into_any();
        }
    };
    let note = use_note(&key);
    let (value, set, meta) = (note.value, note.set, note.meta);
    let ping = use_ping();
    let (emit, last, sender) = (ping.emit, ping.last, ping.last_sender);
    let line = move || last.with(|text| sender.with(|by| ping_line(text.as_deref(), by.as_ref())));

    view! {
        <div class="template">
            // The label wraps the field: no id to keep unique when the unit
            // is mounted twice on one page.
            <label class="notes-field">
                <span>"Note"</span>
                <input
                    type="text"
                    prop:value=move || value.get()
                    on:input=move |event| set.set(event_target_value(&event))
                />
            </label>
            <p>
                "Saved: " <output aria-label="Saved note">{move || value.get()}</output>
            </p>
            <button type="button" on:click=move |_| emit.emit(value.get_untracked())>
                "Ping the building"
            </button>
            <p role="status" aria-label="Last ping">
                {line}
            </p>
            <ErrorAlert error=meta.error />
            <ErrorAlert error=ping.error />
        </div>
    }
    .into_any()
}
