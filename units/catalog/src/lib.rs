//! Catalog unit: the products on sale, each with an "Add to cart" button,
//! filling a cart that the cart unit shows in another building.
//!
//! The catalog and the cart are two micro-frontends in two buildings that
//! never import each other; they meet only in one apartment-wide state key.
//! Together they demonstrate the **apartment** scope and the **merge**
//! strategy.
//!
//! # The key
//!
//! [`cart_key`] is `apartment/{apartment}/cart`:
//!
//! - scope **Apartment**: the catalog (building `shop`) and the cart
//!   (building `checkout`) must see the same cart; a building key would
//!   give each its own;
//! - lifetime **Persistent**: a cart survives a reload and a restart;
//! - strategy **merge**: the value is an object with one top-level field
//!   per product, and each field is last-write-wins on its own. Adding
//!   different products in two tabs at the same moment keeps both; only
//!   two concurrent changes of the *same* product settle on one of them
//!   (the later). Removing a product removes its field.
//!
//! The cart unit declares the same key, identically: same name, rules and
//! Rust type. The state manager refuses a key declared twice with
//! different Rust types, so the type uses std types and the core's
//! ordered map only, [`CartLines`] = `VecMap<String, (String, u64, u32)>`
//! (a sorted vector: a cart holds a few lines): product id →
//! (name, unit price in cents, quantity). The catalog owns the products
//! ([`PRODUCTS`]) and copies name and price into the line when it adds
//! one, so the cart shows lines without knowing the catalog (as a shop's
//! cart keeps the price it was added at).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
#[cfg(feature = "view")]
mod view;

pub use keys::{CartLine, CartLines, cart_key};
#[cfg(feature = "view")]
pub use view::Catalog;

/// A product on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Its id: the field name in the cart.
    pub id: &'static str,
    /// Its name, as shown.
    pub name: &'static str,
    /// Its price in cents.
    pub price_cents: u64,
}

/// The products on sale.
pub const PRODUCTS: [Product; 4] = [
    Product {
        id: "green-tea",
        name: "Green tea",
        price_cents: 450,
    },
    Product {
        id: "mug",
        name: "Mug",
        price_cents: 1200,
    },
    Product {
        id: "coffee-beans",
        name: "Coffee beans",
        price_cents: 1650,
    },
    Product {
        id: "teapot",
        name: "Teapot",
        price_cents: 3400,
    },
];

/// Adds one `product` to `cart`, refreshing the line's name and price from
/// the catalog.
pub fn add_to_cart(cart: &mut CartLines, product: &Product) {
    let line = cart.get_or_insert_with(product.id.to_owned(), || (String::new(), 0, 0));
    line.0 = product.name.to_owned();
    line.1 = product.price_cents;
    line.2 = line.2.saturating_add(1);
}

/// How many of product `id` are in `cart`.
pub fn quantity_in_cart(cart: &CartLines, id: &str) -> u32 {
    cart.get(id).map_or(0, |line| line.2)
}

/// A price in cents as dollars: `$4.50`.
pub fn format_price(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::prelude::*;

    #[test]
    fn the_cart_is_an_apartment_persistent_merge_key() {
        let key = cart_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Apartment);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::Merge);
        assert_eq!(spec.default_value(), &serde_json::json!({}));
    }

    #[test]
    fn adding_counts_up_and_copies_name_and_price() {
        let mut cart = CartLines::new();
        add_to_cart(&mut cart, &PRODUCTS[0]);
        add_to_cart(&mut cart, &PRODUCTS[0]);
        add_to_cart(&mut cart, &PRODUCTS[1]);
        assert_eq!(quantity_in_cart(&cart, "green-tea"), 2);
        assert_eq!(quantity_in_cart(&cart, "mug"), 1);
        assert_eq!(quantity_in_cart(&cart, "teapot"), 0);
        assert_eq!(
            *cart.get("green-tea").unwrap(),
            ("Green tea".to_owned(), 450, 2)
        );
    }

    #[test]
    fn adding_refreshes_a_stale_line_and_never_overflows() {
        let mut cart = CartLines::from([("mug".to_owned(), ("Old mug".to_owned(), 1, u32::MAX))]);
        add_to_cart(&mut cart, &PRODUCTS[1]);
        assert_eq!(
            *cart.get("mug").unwrap(),
            ("Mug".to_owned(), 1200, u32::MAX)
        );
    }

    #[test]
    fn each_product_is_one_top_level_field() {
        let mut cart = CartLines::new();
        add_to_cart(&mut cart, &PRODUCTS[2]);
        assert_eq!(
            serde_json::to_value(&cart).unwrap(),
            serde_json::json!({ "coffee-beans": ["Coffee beans", 1650, 1] })
        );
    }

    #[test]
    fn product_ids_are_unique_and_valid_field_names() {
        let mut ids: Vec<_> = PRODUCTS.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PRODUCTS.len());
        let fits =
            |id: &&str| !id.is_empty() && id.len() <= gaesup_state::core::MAX_FIELD_NAME_BYTES;
        assert!(ids.iter().all(fits));
    }

    #[test]
    fn prices_show_as_dollars_and_cents() {
        assert_eq!(format_price(0), "$0.00");
        assert_eq!(format_price(450), "$4.50");
        assert_eq!(format_price(123_405), "$1234.05");
    }
}
