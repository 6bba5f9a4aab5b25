//! The cart's key and the value it holds, declared the same way by the
//! app and by the relay.

use std::sync::Arc;

use gaesup_state_core::vec_map::VecMap;
use gaesup_state_core::{KeySpec, Lifetime, Result, Scope, SharedKey, Strategy};

/// One cart line: (product name, unit price in cents, quantity).
pub type CartLine = (String, u64, u32);

/// The cart: product id → its line; one merge field per product.
pub type CartLines = VecMap<String, CartLine>;

/// The cart key shared with the catalog unit: `apartment/{apartment}/cart`.
pub fn cart_key() -> Result<SharedKey<CartLines>> {
    SharedKey::builder("cart")
        .scope(Scope::Apartment)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Merge)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![Arc::clone(cart_key()?.spec())])
}
