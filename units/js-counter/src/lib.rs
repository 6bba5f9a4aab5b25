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
//! and rules. The declaration below matches the counter unit's exactly
//! (a mismatch would be reported as a key mismatch, never silently mixed),
//! and the state manager then checks every value the element writes
//! against `i64`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use gaesup_state::core::Result;
use gaesup_state::prelude::*;
use gaesup_state::use_unit;
use leptos::prelude::*;

/// The building's shared count: `building/{apartment}/{building}/count`.
pub fn count_key() -> Result<SharedKey<i64>> {
    SharedKey::builder("count")
        .scope(Scope::Building)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Sum)
        .build()
}

/// Declares the element's keys for its unit, then renders the element.
/// Must be inside a `<Unit>`.
#[component]
pub fn JsCounter() -> impl IntoView {
    let Some(unit) = use_unit() else {
        return view! { <p role="alert">"The JS counter must be inside a <Unit>."</p> }.into_any();
    };
    let declared = count_key()
        .map_err(StateError::from)
        .and_then(|key| unit.manager.declare(&key));
    if let Err(err) = declared {
        let message = format!("JS counter unavailable: {err}");
        return view! { <p role="alert">{message}</p> }.into_any();
    }
    let address = unit.address.to_string();
    view! { <gaesup-js-counter unit=address></gaesup-js-counter> }.into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_key_is_the_building_sum() {
        let key = count_key().unwrap();
        assert_eq!(key.spec().scope(), Scope::Building);
        assert_eq!(key.spec().strategy(), Strategy::Sum);
        assert_eq!(key.spec().lifetime(), Lifetime::Persistent);
    }
}
