//! `use_state_path`: watch one path inside a key's value.

use std::cell::Cell;

use gaesup_state_core::{Path, SharedKey};
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::containers::use_unit;
use crate::error::StateError;

/// What [`use_state_path`] returns.
pub struct UseStatePathReturn<P: Send + Sync + 'static> {
    /// The sub-value at the path; `None` when the path is absent (or holds
    /// something that is not a `P`, which also sets `error`).
    pub value: Signal<Option<P>>,
    /// Why the path could not be watched or decoded, if it could not.
    pub error: Signal<Option<StateError>>,
}

/// Watches `path` (dot-separated, e.g. `"items.3.qty"`) inside `key`'s
/// value. Only a change at that path notifies: writes elsewhere in the
/// value do not re-run anything that reads this signal.
///
/// ```
/// use gaesup_state::prelude::*;
/// use leptos::prelude::*;
/// use serde_json::Value;
///
/// #[component]
/// fn Quantity() -> impl IntoView {
///     let cart = SharedKey::<Value>::builder("cart").build().expect("valid");
///     let qty = use_state_path::<Value, u32>(&cart, "items.0.qty");
///     view! { <span>{move || qty.value.get().unwrap_or(0)}</span> }
/// }
/// ```
pub fn use_state_path<T, P>(key: &SharedKey<T>, path: &str) -> UseStatePathReturn<P>
where
    T: Serialize + DeserializeOwned + 'static,
    P: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let value = RwSignal::new(None);
    let error = RwSignal::new(None);
    if let Err(err) = watch(key, path, value, error) {
        error.set(Some(err));
    }
    UseStatePathReturn {
        value: value.into(),
        error: error.into(),
    }
}

fn watch<T, P>(
    key: &SharedKey<T>,
    path: &str,
    value: RwSignal<Option<P>>,
    error: RwSignal<Option<StateError>>,
) -> Result<(), StateError>
where
    T: Serialize + DeserializeOwned + 'static,
    P: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let unit = use_unit().ok_or(StateError::NoUnit {
        hook: "use_state_path",
    })?;
    let path = Path::parse(path)?;
    let manager = unit.manager;
    manager.declare(key)?;
    let first = manager.get_path(&unit.address, key, &path)?;
    let decode = {
        let path = path.clone();
        // Whether `error` shows a decoding error: only this closure sets it
        // from here on, so a success asks it nothing (a look into a signal
        // per notification costs a row of a long list what its own signal
        // costs).
        let shown = Cell::new(false);
        move |found: Option<&Value>| match found {
            None => {
                let _ = value.try_set(None);
            }
            Some(found) => match P::deserialize(found) {
                Ok(found) => {
                    let _ = value.try_set(Some(found));
                    if shown.replace(false) {
                        let _ = error.try_set(None);
                    }
                }
                Err(err) => {
                    let _ = value.try_set(None);
                    shown.set(true);
                    let _ = error.try_set(Some(StateError::Core(
                        gaesup_state_core::Error::TypeMismatch {
                            key: path.to_string(),
                            reason: err.to_string(),
                        },
                    )));
                }
            },
        }
    };
    decode(first.as_ref());
    let watched = path.clone();
    let id = manager.subscribe(&unit.address, key, Some(path), move |change| {
        decode(watched.get(&change.new));
    })?;
    on_cleanup(move || {
        manager.unsubscribe(id);
    });
    Ok(())
}
