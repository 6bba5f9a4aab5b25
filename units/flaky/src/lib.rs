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

use gaesup_state::core::Result;
use gaesup_state::prelude::*;
use leptos::prelude::*;

/// Whether the flaky unit fails: `apartment/{apartment}/flaky-broken`.
pub fn broken_key() -> Result<SharedKey<bool>> {
    SharedKey::builder("flaky-broken")
        .scope(Scope::Apartment)
        .build()
}

/// The failure the unit renders when it is told to fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken;

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the flaky unit was told to fail")
    }
}

impl std::error::Error for Broken {}

/// Works until it is told to fail, then renders [`Broken`].
#[component]
pub fn Flaky() -> impl IntoView {
    let key = match broken_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("flaky unit unavailable: {err}")}</p> }
                .into_any();
        }
    };
    let broken = use_shared_state(&key);
    let (value, set) = (broken.value, broken.set);
    (move || {
        if value.get() {
            Err(Broken)
        } else {
            Ok(view! {
                <div class="flaky">
                    <p>"Working."</p>
                    <button type="button" on:click=move |_| set.set(true)>
                        "Break this unit"
                    </button>
                </div>
            })
        }
    })
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

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
