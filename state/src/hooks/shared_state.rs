//! `use_shared_state`: read and write one typed key.

use gaesup_state_core::{Conflict, SharedKey, Stamp, UnitAddress};
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::state_setter::{StateSetter, Target};
use crate::containers::{UnitContext, use_unit};
use crate::error::StateError;

pub(super) const HOOK: &str = "use_shared_state";

/// A synchronous check a value must pass before it is written.
pub type Validator<T> = fn(&T) -> std::result::Result<(), String>;

/// Options of [`use_shared_state_with_options`].
pub struct UseSharedStateOptions<T> {
    validate: Option<Validator<T>>,
}

impl<T> Default for UseSharedStateOptions<T> {
    fn default() -> Self {
        Self { validate: None }
    }
}

impl<T> UseSharedStateOptions<T> {
    /// Refuses writes for which `check` returns an error; the error shows in
    /// [`StateMeta::error`] and nothing is written.
    #[must_use]
    pub fn validate(mut self, check: Validator<T>) -> Self {
        self.validate = Some(check);
        self
    }
}

/// What [`use_shared_state`] returns.
pub struct UseSharedStateReturn<T: Send + Sync + 'static> {
    /// The current value; updates on every change, local or from another
    /// tab. Reads the key's default until something is written.
    pub value: Signal<T>,
    /// Writes (the narrowest handle to pass to a child that only writes).
    pub set: StateSetter<T>,
    /// Pending optimistic writes, the last error, who wrote last, when.
    pub meta: StateMeta,
    /// For user-resolve keys: the concurrent values awaiting a choice,
    /// winner first; empty when there is no conflict (and for every other
    /// strategy).
    pub conflicts: Signal<Vec<Conflict<T>>>,
}

/// Metadata of a key as seen by one hook.
#[derive(Clone, Copy)]
pub struct StateMeta {
    /// An optimistic write is waiting for its confirmation.
    pub pending: Signal<bool>,
    /// The last failure of a read or write through this hook, if any.
    pub error: Signal<Option<StateError>>,
    /// The unit that wrote the current value (none before the first write).
    pub last_writer: Signal<Option<UnitAddress>>,
    /// The version stamp of the current value.
    pub version: Signal<Option<Stamp>>,
    error_slot: RwSignal<Option<StateError>>,
}

impl StateMeta {
    /// Dismisses the current error.
    pub fn clear_error(&self) {
        self.error_slot.set(None);
    }
}

/// Reads and writes the typed `key` from inside a `<Unit>`.
///
/// The key is declared on first use, resolved against the unit's address
/// (so a `Building` key is this building's, a `Private` key this unit's)
/// and checked against its permissions. The subscription belongs to the
/// calling component's owner and ends when the unit unmounts.
///
/// ```
/// use gaesup_state::prelude::*;
/// use leptos::prelude::*;
///
/// #[component]
/// fn Likes() -> impl IntoView {
///     let key = SharedKey::<i64>::builder("likes")
///         .scope(Scope::Building)
///         .strategy(Strategy::Sum)
///         .build()
///         .expect("a valid declaration");
///     let likes = use_shared_state(&key);
///     let set = likes.set;
///     view! {
///         <button on:click=move |_| set.increment(1)>{likes.value}</button>
///         <p role="alert">{move || likes.meta.error.get().map(|e| e.to_string())}</p>
///     }
/// }
/// ```
pub fn use_shared_state<T>(key: &SharedKey<T>) -> UseSharedStateReturn<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    use_shared_state_with_options(key, UseSharedStateOptions::default())
}

/// [`use_shared_state`] with options (validation).
pub fn use_shared_state_with_options<T>(
    key: &SharedKey<T>,
    options: UseSharedStateOptions<T>,
) -> UseSharedStateReturn<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let error = RwSignal::new(None);
    let conflicts = RwSignal::new(Vec::new());

    let (initial, target) = match open(key) {
        Ok((initial, target)) => (initial, Some(target)),
        Err((initial, err)) => {
            error.set(Some(err));
            (initial, None)
        }
    };
    let value = RwSignal::new(initial);
    // Only this much depends on `T`: decoding a new value and reading the
    // conflicts. The rest of the hook is `watch`, compiled once.
    let typed = target.as_ref().map(|target| {
        let on_value: OnValue = Box::new(move |json| {
            let next = T::deserialize(json).map_err(|err| err.to_string())?;
            let _ = value.try_set(next);
            Ok(())
        });
        let on_conflicts = target.key.spec().strategy().is_user_resolve().then(|| {
            let target = target.clone();
            Box::new(move || {
                let list = target
                    .unit
                    .manager
                    .conflicts(&target.unit.address, &target.key)?;
                let _ = conflicts.try_set(list);
                Ok(())
            }) as OnConflicts
        });
        (
            target.unit.clone(),
            SharedKey::erased(target.key.spec().clone()),
            on_value,
            on_conflicts,
        )
    });
    let watched = watch(error, typed);

    UseSharedStateReturn {
        value: value.into(),
        set: StateSetter {
            target: StoredValue::new(target),
            error,
            pending: watched.pending,
            validate: options.validate,
        },
        meta: watched.meta,
        conflicts: conflicts.into(),
    }
}

/// Decodes a new value into the hook's signal; the error says why not.
type OnValue = Box<dyn Fn(&Value) -> std::result::Result<(), String>>;
/// Reads a user-resolve key's conflicts into the hook's signal.
type OnConflicts = Box<dyn Fn() -> crate::error::Result<()>>;

/// What [`watch`] sets up for the typed hook.
struct Watched {
    pending: RwSignal<u32>,
    meta: StateMeta,
}

/// The part of [`use_shared_state`] that does not depend on the value's
/// type: the metadata signals, and (if the key opened) the subscription
/// that decodes each change through `on_value` and refreshes the writer,
/// version and conflicts, ended with the calling component.
fn watch(
    error: RwSignal<Option<StateError>>,
    target: Option<(UnitContext, SharedKey<Value>, OnValue, Option<OnConflicts>)>,
) -> Watched {
    let pending = RwSignal::new(0_u32);
    // Who wrote last and when, looked up after each change (the replica
    // cannot be read inside a batch, when a reader may come) and kept
    // here; the memos read it when someone reads them. Setting two
    // signals on every change, read or not, cost a tenth of a hook's
    // write; a memo of the writer also wakes its readers only when the
    // writer changes.
    let changed = Trigger::new();
    let last = StoredValue::new(None::<(UnitAddress, Stamp)>);
    let last_writer = Memo::new(move |_| {
        changed.track();
        last.with_value(|last| last.as_ref().map(|(writer, _)| writer.clone()))
    });
    let version = Memo::new(move |_| {
        changed.track();
        last.with_value(|last| last.as_ref().map(|(_, stamp)| *stamp))
    });
    if let Some((unit, key, on_value, on_conflicts)) = target {
        let manager = unit.manager;
        let full = key.full_key(&unit.address);
        let refresh = move || {
            if let Ok(found) = manager.with_replica(|replica| replica.last_write(&full)) {
                last.set_value(found);
                changed.notify();
            }
            if let Some(Err(err)) = on_conflicts.as_ref().map(|read| read()) {
                let _ = error.try_set(Some(err));
            }
        };
        refresh();
        let subscribed = manager.subscribe(&unit.address, &key, None, move |change| {
            if let Err(reason) = on_value(&change.new) {
                let mismatch = gaesup_state_core::Error::TypeMismatch {
                    key: change.key.to_string(),
                    reason,
                };
                let _ = error.try_set(Some(mismatch.into()));
            }
            refresh();
        });
        match subscribed {
            Ok(id) => on_cleanup(move || {
                manager.unsubscribe(id);
            }),
            Err(err) => error.set(Some(err)),
        }
    }
    Watched {
        pending,
        meta: StateMeta {
            pending: Signal::derive(move || pending.get() > 0),
            error: error.into(),
            last_writer: last_writer.into(),
            version: version.into(),
            error_slot: error,
        },
    }
}

/// Declares the key for the enclosing unit and reads its value. On failure
/// the hook still works, showing the key's default and the error.
fn open<T>(key: &SharedKey<T>) -> std::result::Result<(T, Target<T>), (T, StateError)>
where
    T: DeserializeOwned,
{
    let fallback = || T::deserialize(key.spec().default_value());
    let Some(unit) = use_unit() else {
        return Err(default_or(fallback(), StateError::NoUnit { hook: HOOK }));
    };
    if let Err(err) = unit.manager.declare(key) {
        return Err(default_or(fallback(), err));
    }
    match unit.manager.get(&unit.address, key) {
        Ok(value) => Ok((
            value,
            Target {
                unit,
                key: key.clone(),
            },
        )),
        Err(err) => Err(default_or(fallback(), err)),
    }
}

/// The key's default, paired with the error to show.
fn default_or<T>(
    default: std::result::Result<T, serde_json::Error>,
    err: StateError,
) -> (T, StateError) {
    match default {
        Ok(value) => (value, err),
        Err(decode) => default_unreadable(&decode, &err),
    }
}

/// `SharedKey::build` refuses a default that does not read back as `T`, so
/// a key that got this far always decodes its default: reaching this is a
/// bug in the core, not bad input.
#[allow(clippy::panic, reason = "invariant enforced by SharedKey::build")]
fn default_unreadable<T>(decode: &serde_json::Error, err: &StateError) -> T {
    panic!("a built key's default does not decode ({decode}) while reporting: {err}")
}
