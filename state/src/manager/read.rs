//! Reads, as a unit sees them (its scope, its read permission).

use gaesup_state_core::{Conflict, Path, SharedKey, UnitAddress};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::StateManager;
use crate::error::Result;

impl StateManager {
    /// The value of `key` as `unit` sees it.
    pub fn get<T: DeserializeOwned>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<T> {
        Ok(self.shared()?.replica()?.get(unit, key)?)
    }

    /// The value of `key` as JSON.
    pub fn get_value<T>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<Value> {
        Ok(self.shared()?.replica()?.get_value(unit, key)?)
    }

    /// The sub-value of `key` at `path`, if present. Copies only that part
    /// for keys whose state holds the value whole (last/first-write-wins,
    /// user-resolve); merge and sum values are assembled first.
    pub fn get_path<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &Path,
    ) -> Result<Option<Value>> {
        Ok(self.shared()?.replica()?.get_path(unit, key, path)?)
    }

    /// Open conflicts of a user-resolve key, winner first.
    pub fn conflicts<T: DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
    ) -> Result<Vec<Conflict<T>>> {
        Ok(self.shared()?.replica()?.conflicts(unit, key)?)
    }
}
