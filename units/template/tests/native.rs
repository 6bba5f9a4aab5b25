//! The unit's hooks natively, under a Leptos owner (no browser): the note
//! is private to its unit, a too-long note is refused and shown, and a
//! ping reaches the building and stops there.
#![allow(clippy::unwrap_used, reason = "tests: a failure should fail loudly")]

use gaesup_state::core::{ManualClock, TabId};
use gaesup_state::{StateManager, UnitAddress, UnitContext};
use leptos::prelude::*;
use unit_template::{MAX_NOTE_CHARS, note_key, use_note, use_ping};

/// Runs `body` as the unit at `address` (apartment/building/unit), in a
/// child owner kept alive by the caller.
fn in_unit<R>(manager: StateManager, address: &str, body: impl FnOnce() -> R) -> (Owner, R) {
    let owner = Owner::current().unwrap_or_default().child();
    let address: UnitAddress = address.parse().unwrap();
    let result = owner.with(|| {
        provide_context(UnitContext { address, manager });
        body()
    });
    (owner, result)
}

fn manager() -> StateManager {
    StateManager::new(TabId::new(1), ManualClock::new(1_000))
}

#[test]
fn each_unit_keeps_its_own_note() {
    Owner::new().with(|| {
        let state = manager();
        let (_a, mine) = in_unit(state, "main/garage/a", || use_note(&note_key().unwrap()));
        let (_b, theirs) = in_unit(state, "main/garage/b", || use_note(&note_key().unwrap()));
        mine.set.set("oil change on Friday".to_owned());
        assert_eq!(mine.value.get_untracked(), "oil change on Friday");
        assert_eq!(theirs.value.get_untracked(), "");
        assert_eq!(mine.meta.error.get_untracked(), None);
    });
}

#[test]
fn a_too_long_note_is_refused_and_shown_not_written() {
    Owner::new().with(|| {
        let state = manager();
        let (_a, note) = in_unit(state, "main/garage/a", || use_note(&note_key().unwrap()));
        note.set.set("kept".to_owned());
        note.set.set("x".repeat(MAX_NOTE_CHARS + 1));
        assert_eq!(note.value.get_untracked(), "kept");
        let error = note.meta.error.get_untracked().unwrap().to_string();
        assert!(error.contains("at most 280"), "{error}");
    });
}

#[test]
fn a_ping_reaches_the_building_and_not_the_next_one() {
    Owner::new().with(|| {
        let state = manager();
        let (_a, sender) = in_unit(state, "main/garage/a", use_ping);
        let (_b, neighbour) = in_unit(state, "main/garage/b", use_ping);
        let (_c, stranger) = in_unit(state, "main/lobby/c", use_ping);
        sender.emit.emit("hello".to_owned());
        assert_eq!(sender.last.get_untracked().as_deref(), Some("hello"));
        assert_eq!(neighbour.last.get_untracked().as_deref(), Some("hello"));
        assert_eq!(
            neighbour.last_sender.get_untracked().map(|a| a.to_string()),
            Some("main/garage/a".to_owned())
        );
        assert_eq!(stranger.last.get_untracked(), None);
        assert_eq!(sender.error.get_untracked(), None);
    });
}
