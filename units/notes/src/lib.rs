//! Notes units: notes only one unit sees, and one note the whole apartment
//! edits together.
//!
//! Two unit kinds live in this crate, one per scope question:
//!
//! - [`PrivateNotes`]: a scratch pad that belongs to the unit it is mounted
//!   in. Two of them on one page (two units) never see each other's text;
//!   each keeps its own across reloads. It demonstrates the **private**
//!   scope.
//! - [`SharedNote`]: one note for the whole apartment, saved with a button.
//!   When two tabs save different texts without having seen each other's,
//!   neither silently wins: both versions are kept and the user picks one
//!   in a [`ConflictModal`](gaesup_state::ConflictModal). It demonstrates the **user-resolve** strategy.
//!
//! # The keys
//!
//! [`notes_key`] is `private/{apartment}/{building}/{unit}/notes`:
//! scope **Private** (a unit's scratch pad is nobody else's business, and
//! no other unit can even address it), lifetime **Persistent** (notes
//! must survive a restart), strategy **last-write-wins** (it is saved on
//! every keystroke; the latest text is the note, and asking the user to
//! pick between two keystrokes would be absurd).
//!
//! [`shared_note_key`] is `apartment/{apartment}/shared-note`: scope
//! **Apartment** (every unit of the apartment reads the same note),
//! lifetime **Persistent**, strategy **user-resolve**: a note is prose
//! written on purpose and saved on purpose, so losing one of two
//! concurrent saves to a clock would lose someone's work. Concurrent saves
//! become a conflict; the user's pick is a new write that supersedes them
//! all, in every tab.
//!
//! Everything from state is rendered as text, never as HTML.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
#[cfg(feature = "view")]
mod view;

use gaesup_state_core::UnitAddress;

pub use keys::{notes_key, shared_note_key};
#[cfg(feature = "view")]
pub use view::{PrivateNotes, SharedNote};

/// Reads a custom value typed into the conflict dialog: the text, trimmed;
/// blank text is refused (it would erase everyone's version).
pub fn parse_note(text: &str) -> std::result::Result<String, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err("Write the note to keep, or pick one of the versions above.".to_owned())
    } else {
        Ok(trimmed.to_owned())
    }
}

/// What the shared note's field shows: the unsaved draft if there is one,
/// else the saved note.
pub fn shown_text(draft: Option<&str>, saved: &str) -> String {
    draft.unwrap_or(saved).to_owned()
}

/// Whether the draft differs from the saved note.
pub fn has_unsaved_changes(draft: Option<&str>, saved: &str) -> bool {
    draft.is_some_and(|draft| draft != saved)
}

/// The line telling there is a conflict, for `versions` concurrent values
/// (none below two: one value is no conflict).
pub fn conflict_line(versions: usize) -> Option<String> {
    (versions > 1).then(|| format!("{versions} conflicting versions: choose the one to keep."))
}

/// The line telling who saved the current note; `this_tab` says whether
/// the save was made in this tab. `None` before the first save.
pub fn writer_line(writer: Option<&UnitAddress>, this_tab: bool) -> Option<String> {
    let where_ = if this_tab { "this tab" } else { "another tab" };
    writer.map(|writer| format!("Current version saved by {writer} in {where_}."))
}

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::StateManager;
    use gaesup_state::core::{ManualClock, TabId};
    use gaesup_state::prelude::*;
    use leptos::prelude::*;

    #[test]
    fn notes_are_private_persistent_last_write_wins() {
        let key = notes_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Private);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::LastWriteWins);
    }

    #[test]
    fn the_shared_note_is_an_apartment_persistent_user_resolve_key() {
        let key = shared_note_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Apartment);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::UserResolve);
    }

    #[test]
    fn parse_note_trims_and_refuses_blank_text() {
        assert_eq!(parse_note("  both, merged \n").unwrap(), "both, merged");
        assert!(parse_note("").is_err());
        assert!(parse_note(" \n\t ").is_err());
    }

    #[test]
    fn the_draft_wins_over_the_saved_text_until_saved() {
        assert_eq!(shown_text(None, "saved"), "saved");
        assert_eq!(shown_text(Some("draft"), "saved"), "draft");
        assert_eq!(shown_text(Some(""), "saved"), "");
        assert!(!has_unsaved_changes(None, "saved"));
        assert!(!has_unsaved_changes(Some("saved"), "saved"));
        assert!(has_unsaved_changes(Some("draft"), "saved"));
    }

    #[test]
    fn one_version_is_no_conflict() {
        assert_eq!(conflict_line(0), None);
        assert_eq!(conflict_line(1), None);
        assert_eq!(
            conflict_line(3).as_deref(),
            Some("3 conflicting versions: choose the one to keep.")
        );
    }

    #[test]
    fn writer_line_names_the_unit_and_the_tab() {
        let unit: UnitAddress = "main/study/shared-note".parse().unwrap();
        assert_eq!(writer_line(None, true), None);
        assert_eq!(
            writer_line(Some(&unit), true).as_deref(),
            Some("Current version saved by main/study/shared-note in this tab.")
        );
        assert!(
            writer_line(Some(&unit), false)
                .unwrap()
                .ends_with("in another tab.")
        );
    }

    #[test]
    fn private_notes_of_two_units_are_isolated() {
        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            let key = notes_key().unwrap();
            state.declare(&key).unwrap();
            let a: UnitAddress = "main/study/notes-a".parse().unwrap();
            let b: UnitAddress = "main/study/notes-b".parse().unwrap();
            state.set(&a, &key, "for a".to_owned()).unwrap();
            assert_eq!(state.get(&a, &key).unwrap(), "for a");
            assert_eq!(state.get(&b, &key).unwrap(), "");
        });
    }

    #[test]
    fn concurrent_saves_of_the_shared_note_conflict_and_a_pick_resolves_them() {
        let owner = Owner::new();
        owner.with(|| {
            let key = shared_note_key().unwrap();
            let here = StateManager::new(TabId::new(1), ManualClock::new(1_000));
            let there = StateManager::new(TabId::new(2), ManualClock::new(1_000));
            here.declare(&key).unwrap();
            there.declare(&key).unwrap();
            let unit: UnitAddress = "main/study/shared-note".parse().unwrap();
            // What each tab broadcasts, carried to the other by hand.
            let outbox = |from: StateManager| {
                let sent = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let queue = std::rc::Rc::clone(&sent);
                from.connect(move |message: &gaesup_state::core::Message| {
                    queue.borrow_mut().push(message.encode()?);
                    Ok(())
                })
                .unwrap();
                move |to: StateManager| {
                    for text in sent.borrow_mut().drain(..) {
                        to.receive_text(&text).unwrap();
                    }
                }
            };
            let (from_here, from_there) = (outbox(here), outbox(there));
            here.set(&unit, &key, "mine".to_owned()).unwrap();
            there.set(&unit, &key, "theirs".to_owned()).unwrap();
            from_here(there);
            from_there(here);
            assert_eq!(here.conflicts(&unit, &key).unwrap().len(), 2);
            assert_eq!(there.conflicts(&unit, &key).unwrap().len(), 2);

            here.resolve(&unit, &key, "both".to_owned()).unwrap();
            from_here(there);
            for replica in [here, there] {
                assert!(replica.conflicts(&unit, &key).unwrap().len() < 2);
                assert_eq!(replica.get(&unit, &key).unwrap(), "both");
            }
        });
    }
}
