//! A unit written in React.
//!
//! The unit itself is `js/`: `js/main.tsx` mounts `js/ReactCounter.tsx`, which
//! uses the framework bindings (`gaesup-bindings`) on `window.gaesup`.
//! `js/build.mjs` bundles it with React into [`MODULE`], and the shell's
//! `<gaesup-unit>` imports that only when the unit is shown.
//!
//! This crate is its Rust side, the contract: the keys its JavaScript
//! uses, declared typed before it mounts, so the state manager checks
//! every value it writes against their Rust types. It shares the
//! building's count with the Leptos counter and the apartment's shared
//! note with the Leptos notes unit, by their own declarations.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use gaesup_state::{StateError, StateManager};

/// The unit's bundle, relative to the site's root.
pub const MODULE: &str = "units/react-counter.js";

/// Declares the keys the unit's JavaScript uses.
pub fn declare(manager: &StateManager) -> Result<(), StateError> {
    manager.declare(&unit_counter::count_key()?)?;
    manager.declare(&unit_notes::shared_note_key()?)
}
