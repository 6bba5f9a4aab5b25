//! The two note views: a unit's private notes and the apartment's shared note.

use gaesup_state::prelude::*;
use gaesup_state::{ConflictModal, use_unit};
use leptos::prelude::*;

use crate::{
    conflict_line, has_unsaved_changes, notes_key, parse_note, shared_note_key, shown_text,
    writer_line,
};

/// A unit's private notes: a labelled text area ("Private notes"), saved
/// on every input. Must be inside a `<Unit>`; two units each have their own.
#[component]
pub fn PrivateNotes() -> impl IntoView {
    let key = match notes_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("notes unavailable: {err}")}</p> }.into_any();
        }
    };
    let notes = use_shared_state(&key);
    let (value, set, meta) = (notes.value, notes.set, notes.meta);
    view! {
        <div class="notes">
            // The label wraps the field: no id to keep unique when several
            // notes units share a page.
            <label class="notes-field">
                <span>"Private notes"</span>
                <textarea
                    rows="5"
                    prop:value=move || value.get()
                    on:input=move |event| set.set(event_target_value(&event))
                ></textarea>
            </label>
            <ErrorAlert error=meta.error />
        </div>
    }
    .into_any()
}

/// The apartment's shared note: a labelled text area ("Shared note") and a
/// Save button; concurrent saves open a [`ConflictModal`]. Must be inside a
/// `<Unit>`.
///
/// Typing only changes a local draft; a save from another tab updates the
/// field unless there is an unsaved draft (which is kept, and flagged).
#[component]
pub fn SharedNote() -> impl IntoView {
    let key = match shared_note_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("shared note unavailable: {err}")}</p> }
                .into_any();
        }
    };
    let note = use_shared_state(&key);
    let (value, set, meta, conflicts) = (note.value, note.set, note.meta, note.conflicts);
    let tab = use_unit().and_then(|unit| unit.manager.tab().ok());
    let draft = RwSignal::new(None::<String>);

    let save = move |_| {
        let text = draft
            .get_untracked()
            .unwrap_or_else(|| value.get_untracked());
        if set.try_set(text).is_ok() {
            draft.set(None);
        }
    };
    let conflict = move || conflicts.with(Vec::len);
    let writer = move || {
        let this_tab = meta
            .version
            .with(|stamp| stamp.as_ref().is_some_and(|stamp| Some(stamp.tab) == tab));
        meta.last_writer
            .with(|writer| writer_line(writer.as_ref(), this_tab))
    };
    let unsaved =
        move || value.with(|saved| draft.with(|d| has_unsaved_changes(d.as_deref(), saved)));

    view! {
        <div class="shared-note">
            <label class="notes-field">
                <span>"Shared note"</span>
                <textarea
                    rows="5"
                    prop:value=move || value.with(|saved| draft.with(|d| shown_text(d.as_deref(), saved)))
                    on:input=move |event| draft.set(Some(event_target_value(&event)))
                ></textarea>
            </label>
            <div class="shared-note-actions">
                <button type="button" on:click=save>
                    "Save"
                </button>
                <span class="shared-note-unsaved">{move || unsaved().then_some("Unsaved changes")}</span>
            </div>
            <p class="shared-note-status" role="status">
                {move || conflict_line(conflict())}
            </p>
            <p class="shared-note-writer">{writer}</p>
            <ErrorAlert error=meta.error />
            <ConflictModal
                conflicts=conflicts
                set=set
                label="Shared note"
                format=|text: &String| text.clone()
                parse=parse_note
            />
        </div>
    }
    .into_any()
}
