//! Reactive state manager for Leptos micro-frontends.
//!
//! Units of an apartment need state that is scoped (private to a unit, or
//! shared with its building, its apartment or every apartment), that
//! survives reloads when asked to, and that stays consistent between browser
//! tabs. This crate is the Leptos face of that state manager; the pure,
//! browser-free rules (keys, clock, operations, conflict strategies) live in
//! [`core`], re-exported here so units depend on this crate alone.
//!
//! The reactive layer (containers, hooks, event bus) is being built; today
//! this crate only re-exports the core.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use gaesup_state_core as core;
