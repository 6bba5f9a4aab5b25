//! [`StateSetter`]: the write half of `use_shared_state`, `Copy`, with
//! optimistic writes that roll back.

use std::future::Future;

use gaesup_state_core::{Error as CoreError, Path, SharedKey, UnitAddress, Write};
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::shared_state::{HOOK, Validator};
use crate::containers::UnitContext;
use crate::error::{Result, StateError};
use crate::manager::Confirmation;

/// The key a setter writes, and the unit it writes as.
pub(super) struct Target<T> {
    pub(super) unit: UnitContext,
    pub(super) key: SharedKey<T>,
}

impl<T> Clone for Target<T> {
    fn clone(&self) -> Self {
        Self {
            unit: self.unit.clone(),
            key: self.key.clone(),
        }
    }
}

/// The write half of [`use_shared_state`](crate::use_shared_state): `Copy`,
/// so event handlers take it freely. Every method records its failure in
/// [`StateMeta::error`](crate::StateMeta::error); the `try_` methods also
/// return it.
pub struct StateSetter<T: Send + Sync + 'static> {
    pub(super) target: StoredValue<Option<Target<T>>>,
    pub(super) error: RwSignal<Option<StateError>>,
    pub(super) pending: RwSignal<u32>,
    pub(super) validate: Option<Validator<T>>,
}

impl<T: Send + Sync + 'static> Clone for StateSetter<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Send + Sync + 'static> Copy for StateSetter<T> {}

/// `value` read as the key's type `T`, as `unit` would write it (what a
/// validator judges).
fn decoded<T: DeserializeOwned>(
    key: &SharedKey<T>,
    unit: &UnitAddress,
    value: &serde_json::Value,
) -> Result<T> {
    T::deserialize(value).map_err(|err| {
        CoreError::TypeMismatch {
            key: key.full_key(unit).to_string(),
            reason: err.to_string(),
        }
        .into()
    })
}

/// Runs the confirmation. In the browser through wasm-bindgen's own queue,
/// so it works whether or not a Leptos executor was set up (a unit test,
/// an app that never mounted); natively through Leptos's executor.
fn spawn(task: impl Future<Output = ()> + 'static) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_futures::spawn_local(task);
    #[cfg(not(target_arch = "wasm32"))]
    leptos::task::spawn_local(task);
}

impl<T> StateSetter<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn target(&self) -> Result<Target<T>> {
        match self.target.try_get_value() {
            Some(Some(target)) => Ok(target),
            Some(None) => Err(StateError::NoUnit { hook: HOOK }),
            None => Err(StateError::Disposed),
        }
    }

    /// Shows `result`'s failure in [`StateMeta::error`](crate::StateMeta::error),
    /// or clears the error a success ends (see [`record_error`](super::record_error)).
    fn record<R>(&self, result: Result<R>) -> Result<R> {
        super::record_error(self.error, result.as_ref().err().cloned());
        result
    }

    fn checked(&self, value: &T) -> Result<Target<T>> {
        let target = self.target()?;
        if let Some(check) = self.validate {
            check(value).map_err(|reason| StateError::Rejected {
                key: target.key.spec().label(),
                reason,
            })?;
        }
        Ok(target)
    }

    /// Writes `value`.
    pub fn set(&self, value: T) {
        let _ = self.try_set(value);
    }

    /// Writes `value`, or says why it was refused (the refusal also shows
    /// in [`StateMeta::error`](crate::StateMeta::error)). What a write
    /// changed reaches the UI through the hook's `value` and `meta`
    /// signals, so `Ok` carries nothing: the wire-level op stays inside the
    /// state manager.
    pub fn try_set(&self, value: T) -> Result<()> {
        let result = self
            .checked(&value)
            .and_then(|t| t.unit.manager.set(&t.unit.address, &t.key, value));
        self.record(result).map(drop)
    }

    /// [`try_set`](Self::try_set), keeping the core's record of the write
    /// (what [`set_optimistic`](Self::set_optimistic) rolls back).
    fn write(&self, value: T) -> Result<Write> {
        let result = self
            .checked(&value)
            .and_then(|t| t.unit.manager.set_full(&t.unit.address, &t.key, value));
        self.record(result)
    }

    /// Reads the current value, changes it with `change`, writes it back.
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        let _ = self.try_update(change);
    }

    /// [`update`](Self::update), or why it failed.
    pub fn try_update(&self, change: impl FnOnce(&mut T)) -> Result<()> {
        let current = self
            .target()
            .and_then(|t| t.unit.manager.get(&t.unit.address, &t.key));
        match self.record(current) {
            Ok(mut value) => {
                change(&mut value);
                self.try_set(value)
            }
            Err(err) => Err(err),
        }
    }

    /// Writes `value` at `path` (`"rows.r1.qty"`) inside the value: the
    /// object field the last step names is set, or the array item it names
    /// replaced; every step before it must exist.
    ///
    /// For a last-write-wins key of type `serde_json::Value` the stored
    /// value changes in place (see [`StateManager::set_path`]), so one
    /// field of a large document costs what the field costs (for a
    /// memory key; one that syncs still sends the whole value). With a
    /// validator, the value the write would leave is read, decoded and
    /// validated first, as a [`set`](Self::set) of it would be (so the
    /// unit must also be allowed to read the key).
    ///
    /// [`StateManager::set_path`]: crate::StateManager::set_path
    pub fn set_path(&self, path: &str, value: impl Serialize) {
        let _ = self.try_set_path(path, value);
    }

    /// [`set_path`](Self::set_path), or why it was refused.
    pub fn try_set_path(&self, path: &str, value: impl Serialize) -> Result<()> {
        let write = || -> Result<()> {
            let target = self.target()?;
            let path = Path::parse(path)?;
            let value = serde_json::to_value(value).map_err(|err| StateError::BadValue {
                reason: err.to_string(),
            })?;
            let (unit, key) = (&target.unit.address, &target.key);
            if self.validate.is_some() {
                // The validator judges the value the write leaves, read
                // and decoded here; the write itself is the same path
                // write as without one.
                let mut whole = target.unit.manager.get_value(unit, key)?;
                path.put(&mut whole, Some(value.clone()))?;
                self.checked(&decoded(key, unit, &whole)?)?;
            }
            target.unit.manager.set_path(unit, key, &path, value)?;
            Ok(())
        };
        self.record(write())
    }

    /// Adds `delta` to a sum key (concurrent increments from every tab
    /// all count). With a validator, the value the increment leaves here
    /// is read (so the unit must also be allowed to read the key) and
    /// validated first: the increment is refused if the value it leaves is
    /// one the validator refuses. Except on the way back: from a value
    /// already refused (others' increments took it there, or out of the
    /// type's range), a step toward zero is taken, so the unit can bring
    /// the counter back.
    pub fn increment(&self, delta: i64) {
        let write = || -> Result<()> {
            let target = self.target()?;
            let (unit, key) = (&target.unit.address, &target.key);
            if let Some(validate) = self.validate {
                let decode = |n: i64| decoded(key, unit, &serde_json::Value::from(n));
                let now = target.unit.manager.get_value(unit, key)?.as_i64();
                let next = now.and_then(|now| now.checked_add(delta)).ok_or_else(|| {
                    CoreError::Overflow {
                        key: key.full_key(unit),
                    }
                })?;
                // Refused as it stands (or not of the type at all): a step
                // toward zero brings it back.
                let refused_now = now.is_some_and(|now| {
                    decode(now)
                        .ok()
                        .is_none_or(|value| validate(&value).is_err())
                });
                let back =
                    refused_now && now.is_some_and(|now| next.unsigned_abs() < now.unsigned_abs());
                if !back {
                    self.checked(&decode(next)?)?;
                }
            }
            target.unit.manager.increment(unit, key, delta)?;
            Ok(())
        };
        let _ = self.record(write());
    }

    /// Resolves a user-resolve conflict with `value` (current, incoming or
    /// custom): supersedes every concurrent value.
    pub fn resolve(&self, value: T) {
        let result = self
            .checked(&value)
            .and_then(|t| t.unit.manager.resolve(&t.unit.address, &t.key, value));
        let _ = self.record(result);
    }

    /// Shows `value` at once, then waits for `confirm` (a server call, a
    /// slow validation). If it fails, the write is rolled back: only this
    /// write, and only if nobody wrote over it meanwhile. While waiting,
    /// [`StateMeta::pending`](crate::StateMeta::pending) is true; a
    /// rejection shows in [`StateMeta::error`](crate::StateMeta::error). A
    /// write the replica refuses outright
    /// (permission, first-write-wins) never shows at all.
    pub fn set_optimistic<F>(&self, value: T, confirm: F)
    where
        F: Future<Output = std::result::Result<(), String>> + 'static,
    {
        let Ok(write) = self.write(value) else {
            return;
        };
        self.await_confirmation(write, async move {
            match confirm.await {
                Ok(()) => Confirmation::Confirmed,
                Err(reason) => Confirmation::Refused(reason),
            }
        });
    }

    /// Shows `value` at once and waits for the relay to apply it, like
    /// [`set_optimistic`](Self::set_optimistic) with the relay as the
    /// confirmation: a refusal rolls the write back (only it, and only if
    /// nobody wrote over it meanwhile). Where the relay's canonical value
    /// differs (a concurrent write on another device won), the relay's
    /// ops bring that value, like any remote change. Offline, the write
    /// stays pending until the relay is reached. Without a relay the write
    /// is kept and [`StateError::NoConfirmer`] is returned; for session or
    /// memory state, which never leaves the device, the write is kept and
    /// [`StateError::NotRelayed`] is returned. When nobody
    /// will say (too many writes wait), the write is kept and
    /// [`StateError::Unconfirmed`] shows in the error.
    pub fn set_confirmed(&self, value: T) -> Result<()> {
        let write = self.write(value)?;
        let confirmation = self
            .target()
            .and_then(|t| t.unit.manager.confirmation(write.op.id, &write.op.key));
        let confirmation = self.record(confirmation)?;
        self.await_confirmation(write, confirmation);
        Ok(())
    }

    /// Pending until `confirm` settles: a refusal rolls the write back
    /// and shows [`StateError::Rejected`]; no word at all keeps it and
    /// shows [`StateError::Unconfirmed`].
    fn await_confirmation<F>(&self, write: Write, confirm: F)
    where
        F: Future<Output = Confirmation> + 'static,
    {
        let this = *self;
        // Taken now: the component may be gone when the answer comes, and
        // a refused write must be rolled back all the same (the manager
        // outlives its units).
        let target = self.target();
        self.pending.update(|n| *n += 1);
        spawn(async move {
            let outcome = confirm.await;
            let _ = this.pending.try_update(|n| *n = n.saturating_sub(1));
            let key = write.op.key.to_string();
            let result: Result<()> = match outcome {
                Confirmation::Confirmed => return,
                Confirmation::Unknown => Err(StateError::Unconfirmed { key }),
                Confirmation::Refused(reason) => target.and_then(|t| {
                    t.unit.manager.revert(&t.unit.address, &t.key, &write)?;
                    Err(StateError::Rejected { key, reason })
                }),
            };
            // Shown while the component lives (its error signal is gone
            // after).
            let _ = this.record(result);
        });
    }
}

impl<E> StateSetter<Vec<E>>
where
    E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Replaces items of the list: one write of every `(index, item)`, one
    /// notification per subscriber. For a last-write-wins key the list
    /// changes in place (see [`StateManager::set_items`]), so updating 100
    /// rows of 1,000 costs what 100 rows cost. Each index must exist and
    /// appear once, and one write takes at most
    /// [`MAX_PATH_WRITES`](gaesup_state_core::MAX_PATH_WRITES) items (more
    /// are refused: [`set`](Self::set) the whole list instead); no items at
    /// all is no write. With a validator, the list the write would leave
    /// is read (so the unit needs read access, as for
    /// [`update`](Self::update)) and validated first, as a
    /// [`set`](Self::set) of it would be.
    ///
    /// [`StateManager::set_items`]: crate::StateManager::set_items
    pub fn set_items(&self, items: impl IntoIterator<Item = (usize, E)>) {
        let _ = self.try_set_items(items);
    }

    /// [`set_items`](Self::set_items), or why it was refused.
    pub fn try_set_items(&self, items: impl IntoIterator<Item = (usize, E)>) -> Result<()> {
        let write = || -> Result<()> {
            let target = self.target()?;
            let (unit, key) = (&target.unit.address, &target.key);
            let items: Vec<(usize, E)> = items.into_iter().collect();
            if items.is_empty() {
                // Nothing to change (the manager refuses a write of no
                // place; a caller passing "the rows that changed" should
                // not have to guard against none).
                return Ok(());
            }
            if self.validate.is_some() {
                // The validator judges the list the write leaves; the
                // write itself is the same in-place write as without one.
                let mut list = target.unit.manager.get(unit, key)?;
                for (index, item) in &items {
                    match list.get_mut(*index) {
                        Some(slot) => *slot = item.clone(),
                        None => {
                            return Err(CoreError::InvalidPath {
                                path: index.to_string(),
                                reason: "the last step is not an index of the array",
                            }
                            .into());
                        }
                    }
                }
                self.checked(&list)?;
            }
            target.unit.manager.set_items(unit, key, items)?;
            Ok(())
        };
        self.record(write())
    }
}
