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
//! # The files
//!
//! `src/keys.rs` holds the key and [`keys::declarations`], and needs only
//! `gaesup-state-core`: the relay links it (through `gaesup-keys`) to apply
//! this unit's ops with the same rules as the tabs, without Leptos.
//! `src/view.rs` holds the component and its hooks, behind the `view`
//! feature (on by default). `src/lib.rs` keeps what both use.
//!
//! # The event
//!
//! [`use_ping`] joins the building-scoped topic [`PING_TOPIC`]: "Ping the
//! building" sends the note to every unit of this building that listens,
//! this one included, and each shows who sent the last ping.
//!
//! Every value is rendered as text, never as HTML; every failure is shown
//! in an [`ErrorAlert`](gaesup_state::ErrorAlert), never a panic.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
#[cfg(feature = "view")]
mod view;

use gaesup_state_core::UnitAddress;

pub use keys::note_key;
#[cfg(feature = "view")]
pub use view::{Template, use_note, use_ping};

/// The longest note [`use_note`] accepts, in characters.
pub const MAX_NOTE_CHARS: usize = 280;

/// The event topic of [`use_ping`], shared by the units of one building.
/// Named after the unit so two unit kinds in one building never mix their
/// pings.
pub const PING_TOPIC: &str = "template-ping";

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

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::prelude::*;

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
