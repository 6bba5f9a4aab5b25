//! `use_unit_state`: unit-bound operations that span keys (batches).

use gaesup_state_core::{Batch, BatchWrite, Path, SharedKey};
use leptos::prelude::*;
use serde::Serialize;

use crate::containers::{UnitContext, use_unit};
use crate::error::{Result, StateError};

/// What [`use_unit_state`] returns: the enclosing unit's handle for
/// operations that span keys (batches). `Copy`, named like every hook's
/// return (`UseXReturn`).
#[derive(Clone, Copy)]
pub struct UseUnitStateReturn {
    unit: StoredValue<Option<UnitContext>>,
}

/// A batch bound to one unit: the writes are made as that unit.
pub struct UnitBatch<'b, 's> {
    batch: &'b mut Batch<'s>,
    unit: &'b UnitContext,
}

impl UnitBatch<'_, '_> {
    /// Stages a write of `value` to `key`.
    pub fn set<T: Serialize + 'static>(
        &mut self,
        key: &SharedKey<T>,
        value: T,
    ) -> gaesup_state_core::Result<()> {
        self.batch.set(&self.unit.address, key, value)
    }

    /// Stages a write of `value` at `path` inside `key`'s value (see
    /// [`Batch::set_path`]).
    pub fn set_path<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &SharedKey<T>,
        path: &Path,
        value: serde_json::Value,
    ) -> gaesup_state_core::Result<()> {
        self.batch.set_path(&self.unit.address, key, path, value)
    }

    /// Stages an increment of a sum key.
    pub fn increment<T>(
        &mut self,
        key: &SharedKey<T>,
        delta: i64,
    ) -> gaesup_state_core::Result<()> {
        self.batch.increment(&self.unit.address, key, delta)
    }

    /// Stages a resolution of a user-resolve key.
    pub fn resolve<T: Serialize + 'static>(
        &mut self,
        key: &SharedKey<T>,
        value: T,
    ) -> gaesup_state_core::Result<()> {
        self.batch.resolve(&self.unit.address, key, value)
    }
}

/// The enclosing unit's handle (see [`UseUnitStateReturn`]).
pub fn use_unit_state() -> UseUnitStateReturn {
    UseUnitStateReturn {
        unit: StoredValue::new(use_unit()),
    }
}

impl UseUnitStateReturn {
    fn unit(&self) -> Result<UnitContext> {
        match self.unit.try_get_value() {
            Some(Some(unit)) => Ok(unit),
            Some(None) => Err(StateError::NoUnit {
                hook: "use_unit_state",
            }),
            None => Err(StateError::Disposed),
        }
    }

    /// Applies several writes atomically: all or none, one broadcast, and
    /// each subscriber notified once. Every key must have been declared
    /// (by a hook, or [`UseUnitStateReturn::declare`]).
    ///
    /// ```
    /// # use gaesup_state::prelude::*;
    /// # fn demo(unit: UseUnitStateReturn, a: SharedKey<i64>, b: SharedKey<String>) -> Result<(), StateError> {
    /// unit.batch(|batch| {
    ///     batch.set(&a, 1)?;
    ///     batch.set(&b, "one".to_owned())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn batch(
        &self,
        writes: impl FnOnce(&mut UnitBatch<'_, '_>) -> gaesup_state_core::Result<()>,
    ) -> Result<BatchWrite> {
        let unit = self.unit()?;
        unit.manager.batch(|batch| {
            let mut bound = UnitBatch { batch, unit: &unit };
            writes(&mut bound)
        })
    }

    /// Declares a key without subscribing to it.
    pub fn declare<T>(&self, key: &SharedKey<T>) -> Result<()> {
        self.unit()?.manager.declare(key)
    }
}
