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

pub mod keys;
#[cfg(feature = "view")]
mod view;

pub use keys::count_key;
#[cfg(feature = "view")]
pub use view::Counter;

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::prelude::*;
    use leptos::prelude::*;

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
