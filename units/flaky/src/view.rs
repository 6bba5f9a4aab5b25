//! The flaky unit's view.

use gaesup_state::prelude::*;
use leptos::prelude::*;

use crate::{Broken, broken_key};

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
