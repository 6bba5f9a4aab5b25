//! The catalog's view.

use gaesup_state::prelude::*;
use leptos::prelude::*;

use crate::{PRODUCTS, add_to_cart, cart_key, format_price, quantity_in_cart};

/// The catalog: one item per product with its price, how many are in the
/// cart, and a button "Add {name} to cart". Must be inside a `<Unit>`.
#[component]
pub fn Catalog() -> impl IntoView {
    let key = match cart_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("catalog unavailable: {err}")}</p> }
                .into_any();
        }
    };
    let cart = use_shared_state(&key);
    let (value, set, meta) = (cart.value, cart.set, cart.meta);

    let items = PRODUCTS
        .iter()
        .map(|product| {
            let product = *product;
            let in_cart = move || value.with(|cart| quantity_in_cart(cart, product.id));
            view! {
                <li class="product">
                    <span class="product-name">{product.name}</span>
                    <span class="product-price">{format_price(product.price_cents)}</span>
                    <span class="product-in-cart">
                        "In cart: "
                        <output aria-label=format!("{} in cart", product.name)>{in_cart}</output>
                    </span>
                    <button
                        type="button"
                        aria-label=format!("Add {} to cart", product.name)
                        on:click=move |_| set.update(|cart| add_to_cart(cart, &product))
                    >
                        "Add"
                    </button>
                </li>
            }
        })
        .collect_view();

    view! {
        <div class="catalog">
            <ul class="products" aria-label="Products">{items}</ul>
            <ErrorAlert error=meta.error />
        </div>
    }
    .into_any()
}
