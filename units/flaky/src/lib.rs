//! A unit that can be told to fail.
//!
//! Micro-frontends fail on their own: a bad deploy, bad data, a bug. A
//! failure must stay inside the failing unit's frame while every other unit
//! keeps working. This unit renders an error on demand so that can be seen
//! and tested: its key [`broken_key`] (apartment scope, so a control in any
//! unit of the apartment, such as the inspector, can break or repair it;
//! memory only, so a reload repairs it) says whether it fails.
//!
//! It fails the way a Leptos view should: by rendering an `Err`, which the
//! shell's `ErrorBoundary` around every unit turns into a fallback with the
//! error and a retry button. (A panic would abort the whole wasm in a
//! release build, which is why units never panic.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;

pub mod keys;
#[cfg(feature = "view")]
mod view;

pub use keys::broken_key;
#[cfg(feature = "view")]
pub use view::Flaky;

/// The failure the unit renders when it is told to fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken;

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the flaky unit was told to fail")
    }
}

impl std::error::Error for Broken {}

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::prelude::*;

    #[test]
    fn broken_is_an_apartment_wide_memory_flag() {
        let key = broken_key().unwrap();
        assert_eq!(key.spec().scope(), Scope::Apartment);
        assert_eq!(key.spec().lifetime(), Lifetime::Memory);
    }

    #[test]
    fn the_failure_explains_itself() {
        assert_eq!(Broken.to_string(), "the flaky unit was told to fail");
    }
}
