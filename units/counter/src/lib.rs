//! Counter unit: a building-wide counter that never loses a click.
//!
//! The count lives in the state manager under one key, [`count_key`]:
//! building scope (every counter of the same building shows the same
//! number, another building has its own), persistent (survives reloads,
//! syncs between tabs) and the sum strategy, so clicks made at the same
//! moment in two tabs all count. Reset writes 0, which the sum strategy
//! turns into the increment that brings the total back to zero.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use gaesup_state::core::Result;
use gaesup_state::prelude::*;
use leptos::prelude::*;

/// The counter's key: `building/{apartment}/{building}/count`.
pub fn count_key() -> Result<SharedKey<i64>> {
    SharedKey::builder("count")
        .scope(Scope::Building)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Sum)
        .build()
}

/// A counter with decrement, increment and reset buttons. Must be inside a
/// `<Unit>`.
///
/// The count is announced politely to screen readers; every control is a
/// labelled button, so it is fully keyboard usable. A refused write (for
/// example a counter overflow) is shown, not thrown.
#[component]
pub fn Counter() -> impl IntoView {
    let key = match count_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("counter unavailable: {err}")}</p> }
                .into_any();
        }
    };
    let count = use_shared_state(&key);
    let (value, set, meta) = (count.value, count.set, count.meta);

    view! {
        <div class="counter">
            <output class="counter-value" aria-live="polite" aria-label="Count">
                {value}
            </output>
            <div class="counter-actions">
                <button type="button" aria-label="Decrement" on:click=move |_| set.increment(-1)>
                    "−"
                </button>
                <button type="button" aria-label="Increment" on:click=move |_| set.increment(1)>
                    "+"
                </button>
                <button type="button" on:click=move |_| set.set(0)>
                    "Reset"
                </button>
            </div>
            <ErrorAlert error=meta.error />
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_is_a_building_wide_persistent_sum() {
        let key = count_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Building);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::Sum);
    }

    #[test]
    fn same_building_shares_the_count_and_other_buildings_do_not() {
        use gaesup_state::core::{ManualClock, TabId};
        use gaesup_state::{StateManager, UnitAddress};

        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            let key = count_key().unwrap();
            state.declare(&key).unwrap();
            let lobby_a: UnitAddress = "main/lobby/a".parse().unwrap();
            let lobby_b: UnitAddress = "main/lobby/b".parse().unwrap();
            let shop: UnitAddress = "main/shop/a".parse().unwrap();
            state.increment(&lobby_a, &key, 2).unwrap();
            state.increment(&lobby_b, &key, 3).unwrap();
            assert_eq!(state.get(&lobby_a, &key).unwrap(), 5);
            assert_eq!(state.get(&shop, &key).unwrap(), 0);
        });
    }
}
