//! The cart's view.

use gaesup_state::prelude::*;
use leptos::prelude::*;

use crate::{
    CartLine, CartLines, cart_key, cart_total, change_quantity, format_price, line_total,
    remove_line,
};

/// The cart: one line per product (name, −/+ buttons around the quantity,
/// line price, Remove), the total, and "Empty cart"; a message when it is
/// empty. Must be inside a `<Unit>`.
#[component]
pub fn Cart() -> impl IntoView {
    let key = match cart_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("cart unavailable: {err}")}</p> }.into_any();
        }
    };
    let cart = use_shared_state(&key);
    let (value, set, meta) = (cart.value, cart.set, cart.meta);
    let is_empty = move || value.with(CartLines::is_empty);
    let total = move || value.with(|cart| format_price(cart_total(cart)));

    // Keyed by product id and reading the line reactively, so a quantity
    // change updates the line in place and the focused button stays.
    let line = move |id: String| {
        let read = {
            let id = id.clone();
            move |show: fn(&CartLine) -> String| {
                value.with(|cart| cart.get(&id).map(show).unwrap_or_default())
            }
        };
        // Labels use the name the line had when it appeared (names do not
        // change under a line; the text below follows it anyway).
        let name = value.with_untracked(|cart| cart.get(&id).map(|line| line.0.clone()));
        let name = name.unwrap_or_default();
        let (less, more, remove) = (id.clone(), id.clone(), id);
        let (shown_name, quantity) = (read.clone(), read.clone());
        view! {
            <li class="cart-line">
                <span class="cart-line-name">{move || shown_name(|l| l.0.clone())}</span>
                <span class="cart-line-quantity">
                    <button
                        type="button"
                        aria-label=format!("Remove one {name}")
                        on:click=move |_| set.update(|cart| change_quantity(cart, &less, -1))
                    >
                        "−"
                    </button>
                    <output aria-label=format!("{name} quantity")>
                        {move || quantity(|l| l.2.to_string())}
                    </output>
                    <button
                        type="button"
                        aria-label=format!("Add one {name}")
                        on:click=move |_| set.update(|cart| change_quantity(cart, &more, 1))
                    >
                        "+"
                    </button>
                </span>
                <span class="cart-line-price">{move || read(|l| format_price(line_total(l)))}</span>
                <button
                    type="button"
                    aria-label=format!("Remove {name}")
                    on:click=move |_| set.update(|cart| remove_line(cart, &remove))
                >
                    "Remove"
                </button>
            </li>
        }
    };

    view! {
        <div class="cart">
            <Show
                when=move || !is_empty()
                fallback=|| view! { <p class="cart-empty">"Your cart is empty."</p> }
            >
                <ul class="cart-lines" aria-label="Cart lines">
                    <For
                        each=move || value.with(|cart| cart.keys().cloned().collect::<Vec<_>>())
                        key=String::clone
                        children=line
                    />
                </ul>
            </Show>
            <p class="cart-total">
                "Total: " <output aria-label="Cart total">{total}</output>
            </p>
            <button
                type="button"
                prop:disabled=is_empty
                on:click=move |_| set.set(CartLines::new())
            >
                "Empty cart"
            </button>
            <ErrorAlert error=meta.error />
        </div>
    }
    .into_any()
}
