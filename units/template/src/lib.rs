//! Template unit: the smallest complete unit, made to be copied.
//!
//! # The problem
//!
//! A new micro-frontend needs the same handful of things every time: a
//! crate the shell can mount, one state key declared with its rules, a way
//! to talk to its neighbours, errors shown instead of thrown, and tests.
//! Getting them from an existing unit means deleting its features first.
//! This crate has exactly those things and nothing else; `cargo xtask
//! new-unit <name>` copies it to `units/<name>`, renames it and registers
//! it in the app.
//!
//! # Example
//!
//! Mount it inside a `<Unit>` (the shell does this from the manifest):
//!
//! ```
//! use gaesup_state::prelude::*;
//! use leptos::prelude::*;
//! use unit_template::Template;
//!
//! #[component]
//! fn App() -> impl IntoView {
//!     view! {
//!         <Apartment id="main">
//!             <Building id="garage">
//!                 <Unit id="template"><Template /></Unit>
//!             </Building>
//!         </Apartment>
//!     }
//! }
//! ```
//!
//! # The key
//!
//! [`note_key`] is `private/{apartment}/{building}/{unit}/template-note`:
//! scope **Private** (no other unit can address it), lifetime
//! **Persistent** (survives reloads, syncs between tabs), strategy
//! **last-write-wins** (it is saved on every keystroke, so the latest text
//! is the note), schema **1** (bump it and add a `.migrate(1, step)` when
//! the stored shape changes). [`use_note`] reads and writes it and refuses
//! text longer than [`MAX_NOTE_CHARS`].
//!
//! # The event
//!
//! [`use_ping`] joins the building-scoped topic [`PING_TOPIC`]: "Ping the
//! building" sends the note to every unit of this building that listens,
//! this one included, and each shows who sent the last ping.
//!
//! Every value is rendered as text, never as HTML; every failure is shown
//! in an [`ErrorAlert`], never a panic.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use gaesup_state::core::Result;
use gaesup_state::prelude::*;
use gaesup_state::{UnitAddress, UseContainerEventReturn, UseSharedStateReturn};
use leptos::prelude::*;

/// The longest note [`use_note`] accepts, in characters.
pub const MAX_NOTE_CHARS: usize = 280;

/// The event topic of [`use_ping`], shared by the units of one building.
/// Named after the unit so two unit kinds in one building never mix their
/// pings.
pub const PING_TOPIC: &str = "template-ping";

/// The unit's note: `private/{apartment}/{building}/{unit}/template-note`,
/// persistent, last-write-wins, schema 1.
pub fn note_key() -> Result<SharedKey<String>> {
    SharedKey::builder("template-note")
        .scope(Scope::Private)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::LastWriteWins)
        .schema(1)
        .build()
}

/// Accepts a note of at most [`MAX_NOTE_CHARS`] characters; the error is
/// the text the user sees.
pub fn check_note(text: &str) -> std::result::Result<(), String> {
    let chars = text.chars().count();
    if chars > MAX_NOTE_CHARS {
        Err(format!(
            "the note has {chars} characters; at most {MAX_NOTE_CHARS} are kept"
        ))
    } else {
        Ok(())
    }
}

/// The line telling what the last ping said and who sent it; `None`
/// before the first ping.
pub fn ping_line(text: Option<&str>, sender: Option<&UnitAddress>) -> Option<String> {
    let text = text?;
    let sender = sender.map_or_else(|| "an unknown unit".to_owned(), ToString::to_string);
    if text.is_empty() {
        Some(format!("Empty ping from {sender}"))
    } else {
        Some(format!("“{text}” from {sender}"))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_is_private_persistent_last_write_wins_at_schema_1() {
        let key = note_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Private);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::LastWriteWins);
        assert_eq!(spec.schema().version(), 1);
    }

    #[test]
    fn check_note_counts_characters_not_bytes() {
        assert!(check_note("").is_ok());
        assert!(check_note(&"é".repeat(MAX_NOTE_CHARS)).is_ok());
        let error = check_note(&"a".repeat(MAX_NOTE_CHARS + 1)).unwrap_err();
        assert_eq!(error, "the note has 281 characters; at most 280 are kept");
    }

    #[test]
    fn ping_line_names_the_text_and_the_sender() {
        let unit: UnitAddress = "main/garage/template".parse().unwrap();
        assert_eq!(ping_line(None, Some(&unit)), None);
        assert_eq!(
            ping_line(Some("hi"), Some(&unit)).as_deref(),
            Some("“hi” from main/garage/template")
        );
        assert_eq!(
            ping_line(Some(""), None).as_deref(),
            Some("Empty ping from an unknown unit")
        );
    }
}
