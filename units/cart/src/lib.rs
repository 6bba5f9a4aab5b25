//! Cart unit: the apartment's cart, filled by the catalog unit in another
//! building; lines with quantities, a total, and ways to change them.
//!
//! The cart never imports the catalog: the two micro-frontends meet only in
//! one apartment-wide state key. Together they demonstrate the
//! **apartment** scope and the **merge** strategy.
//!
//! # The key
//!
//! [`cart_key`] is `apartment/{apartment}/cart`, declared exactly as the
//! catalog declares it:
//!
//! - scope **Apartment**: the cart (building `checkout`) sees what the
//!   catalog (building `shop`) adds;
//! - lifetime **Persistent**: a cart survives a reload and a restart;
//! - strategy **merge**: one top-level field per product, each
//!   last-write-wins on its own. Two tabs that change *different* products
//!   at the same moment (add a mug here, remove the tea there) both keep
//!   their change; two concurrent changes of the same product settle on
//!   the later one. Quantity 0 removes the product's field, so the line
//!   disappears everywhere.
//!
//! The Rust type must be the catalog's exactly (the state manager refuses
//! one key declared with two types), so it is built of std types and the
//! core's ordered map only: [`CartLines`] =
//! `VecMap<String, (String, u64, u32)>`, product id → (name, unit price
//! in cents, quantity). `VecMap` rather than `BTreeMap`: a cart holds a few
//! lines, and a B-tree would compile its own code for this one type
//! (the cart's, catalog's and todo's maps together: 2.3 KiB of the
//! app's wasm, brotli). Name and price travel in the line, copied from the
//! catalog when it adds one, so the cart needs no product table of its own.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
#[cfg(feature = "view")]
mod view;

pub use keys::{CartLine, CartLines, cart_key};
#[cfg(feature = "view")]
pub use view::Cart;

/// Changes the quantity of product `id` by `delta`; a quantity that
/// reaches 0 removes the line. An unknown id is left alone (a line knows
/// its name and price; a bare id does not).
pub fn change_quantity(cart: &mut CartLines, id: &str, delta: i64) {
    let Some(line) = cart.get_mut(id) else {
        return;
    };
    let quantity = i64::from(line.2).saturating_add(delta);
    if quantity <= 0 {
        cart.remove(id);
    } else {
        line.2 = u32::try_from(quantity).unwrap_or(u32::MAX);
    }
}

/// Removes the line of product `id`.
pub fn remove_line(cart: &mut CartLines, id: &str) {
    cart.remove(id);
}

/// A line's price: unit price × quantity, in cents.
pub fn line_total(line: &CartLine) -> u64 {
    line.1.saturating_mul(u64::from(line.2))
}

/// The cart's total in cents.
pub fn cart_total(cart: &CartLines) -> u64 {
    cart.values().map(line_total).fold(0, u64::saturating_add)
}

/// A price in cents as dollars: `$4.50`.
pub fn format_price(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::StateManager;
    use gaesup_state::UnitAddress;
    use gaesup_state::core::{ManualClock, TabId};
    use gaesup_state::prelude::*;
    use leptos::prelude::*;
    use std::collections::BTreeMap;
    use unit_catalog::{PRODUCTS, add_to_cart};

    fn line(name: &str, cents: u64, quantity: u32) -> CartLine {
        (name.to_owned(), cents, quantity)
    }

    fn sample() -> CartLines {
        CartLines::from([
            ("tea".to_owned(), line("Tea", 450, 2)),
            ("mug".to_owned(), line("Mug", 1200, 1)),
        ])
    }

    #[test]
    fn the_cart_is_an_apartment_persistent_merge_key() {
        let key = cart_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Apartment);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::Merge);
    }

    #[test]
    fn quantity_changes_and_zero_removes_the_line() {
        let mut cart = sample();
        change_quantity(&mut cart, "tea", 1);
        assert_eq!(cart.get("tea").unwrap().2, 3);
        change_quantity(&mut cart, "mug", -1);
        assert!(!cart.contains_key("mug"));
        change_quantity(&mut cart, "tea", -10);
        assert!(cart.is_empty());
    }

    #[test]
    fn unknown_products_and_huge_quantities_are_safe() {
        let mut cart = sample();
        change_quantity(&mut cart, "teapot", 1);
        assert_eq!(cart, sample());
        change_quantity(&mut cart, "tea", i64::MAX);
        assert_eq!(cart.get("tea").unwrap().2, u32::MAX);
        cart.insert("gold".to_owned(), line("Gold", u64::MAX, u32::MAX));
        assert_eq!(cart_total(&cart), u64::MAX);
    }

    #[test]
    fn remove_line_and_totals() {
        let mut cart = sample();
        assert_eq!(line_total(cart.get("tea").unwrap()), 900);
        assert_eq!(cart_total(&cart), 2100);
        assert_eq!(format_price(cart_total(&cart)), "$21.00");
        remove_line(&mut cart, "tea");
        assert_eq!(cart_total(&cart), 1200);
        assert_eq!(cart_total(&CartLines::new()), 0);
    }

    #[test]
    fn both_units_declare_the_same_key() {
        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            state.declare(&unit_catalog::cart_key().unwrap()).unwrap();
            state.declare(&cart_key().unwrap()).unwrap();
            // The check is real: the same name with another type is refused.
            let other_type = SharedKey::<BTreeMap<String, u32>>::builder("cart")
                .scope(Scope::Apartment)
                .lifetime(Lifetime::Persistent)
                .strategy(Strategy::Merge)
                .build()
                .unwrap();
            assert!(state.declare(&other_type).is_err());
        });
    }

    #[test]
    fn the_catalog_fills_the_cart_of_another_building() {
        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            let catalog_key = unit_catalog::cart_key().unwrap();
            let key = cart_key().unwrap();
            state.declare(&catalog_key).unwrap();
            let catalog: UnitAddress = "main/shop/catalog".parse().unwrap();
            let cart: UnitAddress = "main/checkout/cart".parse().unwrap();
            let mut lines = state.get(&catalog, &catalog_key).unwrap();
            add_to_cart(&mut lines, &PRODUCTS[0]);
            state.set(&catalog, &catalog_key, lines).unwrap();
            let seen = state.get(&cart, &key).unwrap();
            assert_eq!(seen.get("green-tea"), Some(&line("Green tea", 450, 1)));
            // Another apartment has its own cart.
            let annex: UnitAddress = "annex/checkout/cart".parse().unwrap();
            assert!(state.get(&annex, &key).unwrap().is_empty());
        });
    }

    #[test]
    fn concurrent_changes_to_different_products_are_all_kept() {
        let owner = Owner::new();
        owner.with(|| {
            let key = cart_key().unwrap();
            let unit: UnitAddress = "main/checkout/cart".parse().unwrap();
            let here = StateManager::new(TabId::new(1), ManualClock::new(1_000));
            let there = StateManager::new(TabId::new(2), ManualClock::new(1_000));
            for replica in [here, there] {
                replica.declare(&key).unwrap();
            }
            let start = here.set_full(&unit, &key, sample()).unwrap();
            there
                .receive_text(&start.message.unwrap().encode().unwrap())
                .unwrap();

            // At the same moment: one tab adds a teapot and drops a mug,
            // the other adds a tea; neither has seen the other's write.
            let mut mine = here.get(&unit, &key).unwrap();
            add_to_cart(&mut mine, &PRODUCTS[3]);
            remove_line(&mut mine, "mug");
            let mine = here.set_full(&unit, &key, mine).unwrap();
            let mut theirs = there.get(&unit, &key).unwrap();
            change_quantity(&mut theirs, "tea", 1);
            let theirs = there.set_full(&unit, &key, theirs).unwrap();
            here.receive_text(&theirs.message.unwrap().encode().unwrap())
                .unwrap();
            there
                .receive_text(&mine.message.unwrap().encode().unwrap())
                .unwrap();

            let expected = CartLines::from([
                ("tea".to_owned(), line("Tea", 450, 3)),
                ("teapot".to_owned(), line("Teapot", 3400, 1)),
            ]);
            assert_eq!(here.get(&unit, &key).unwrap(), expected);
            assert_eq!(there.get(&unit, &key).unwrap(), expected);
        });
    }
}
