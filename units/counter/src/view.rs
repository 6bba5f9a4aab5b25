//! The counter's view.

use gaesup_state::prelude::*;
use leptos::prelude::*;

use crate::count_key;

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
