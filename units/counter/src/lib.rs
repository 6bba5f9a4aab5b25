//! Counter unit: the smallest real micro-frontend of the apartment.
//!
//! It shows a count with buttons to change it. The arithmetic lives in
//! [`Tally`], plain Rust tested natively; [`Counter`] is the Leptos view over
//! it. Today the count is local to the unit instance; it moves into the
//! state manager (building scope, sum strategy) once the reactive layer lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use leptos::prelude::*;

/// The counter's value and the only ways to change it.
///
/// Arithmetic saturates at the ends of `i64` so that no click sequence can
/// overflow (which would panic in a debug build and abort the page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally(i64);

impl Tally {
    /// A tally holding `value`.
    pub const fn new(value: i64) -> Self {
        Self(value)
    }

    /// The current value.
    pub const fn value(self) -> i64 {
        self.0
    }

    /// The tally after adding `delta`, saturating at the `i64` bounds.
    #[must_use]
    pub const fn add(self, delta: i64) -> Self {
        Self(self.0.saturating_add(delta))
    }
}

/// A counter with decrement, increment and reset buttons.
///
/// The count is announced politely to screen readers; every control is a
/// labelled button, so it is fully keyboard usable.
#[component]
pub fn Counter(
    /// Value shown before the first click.
    #[prop(default = 0)]
    initial: i64,
) -> impl IntoView {
    let tally = RwSignal::new(Tally::new(initial));
    let change = move |delta: i64| tally.update(|t| *t = t.add(delta));

    view! {
        <div class="counter">
            <output class="counter-value" aria-live="polite" aria-label="Count">
                {move || tally.get().value()}
            </output>
            <div class="counter-actions">
                <button type="button" aria-label="Decrement" on:click=move |_| change(-1)>
                    "−"
                </button>
                <button type="button" aria-label="Increment" on:click=move |_| change(1)>
                    "+"
                </button>
                <button type="button" on:click=move |_| tally.set(Tally::default())>
                    "Reset"
                </button>
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_moves_by_delta() {
        assert_eq!(Tally::new(3).add(2).value(), 5);
        assert_eq!(Tally::new(3).add(-5).value(), -2);
    }

    #[test]
    fn add_saturates_instead_of_overflowing() {
        assert_eq!(Tally::new(i64::MAX).add(1).value(), i64::MAX);
        assert_eq!(Tally::new(i64::MIN).add(-1).value(), i64::MIN);
    }

    #[test]
    fn default_is_zero() {
        assert_eq!(Tally::default().value(), 0);
    }
}
