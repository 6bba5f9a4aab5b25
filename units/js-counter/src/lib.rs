//! A unit written in plain JavaScript.
//!
//! The unit itself is `js/js-counter.js`: a custom element,
//! `<gaesup-js-counter unit="apartment/building/unit">`, that reaches the
//! state manager through `window.gaesup` (see `gaesup_state_web::install_js_binding`).
//! This crate is its thin Rust side: it declares, typed, the keys the
//! element uses, and renders the element with the unit's address.
//!
//! Declaring in Rust is the contract: the element shares the building's
//! `count` with the Leptos counter unit, and both must agree on its type
//! and rules. The declaration in `keys.rs` matches the counter unit's exactly
//! (a mismatch would be reported as a key mismatch, never silently mixed),
//! and the state manager then checks every value the element writes
//! against `i64`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
#[cfg(feature = "view")]
mod view;

pub use keys::count_key;
#[cfg(feature = "view")]
pub use view::JsCounter;

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::prelude::*;

    #[test]
    fn count_key_is_the_building_sum() {
        let key = count_key().unwrap();
        assert_eq!(key.spec().scope(), Scope::Building);
        assert_eq!(key.spec().strategy(), Strategy::Sum);
        assert_eq!(key.spec().lifetime(), Lifetime::Persistent);
    }
}
