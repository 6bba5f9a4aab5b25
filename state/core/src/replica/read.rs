//! Reads: values, paths, conflicts, who wrote last.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Replica;
use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::{KeySpec, SharedKey};
use crate::limits::serde_reason;
use crate::path::Path;
use crate::permission::Action;
use crate::scope::FullKey;
use crate::strategy::{Conflict, KeyState};

impl Replica {
    /// The current value, borrowed where the state holds it whole: reads
    /// that decode or walk it need no copy.
    fn current_ref<'s>(&'s self, spec: &'s KeySpec, key: &FullKey) -> Cow<'s, Value> {
        self.states
            .get(key)
            .and_then(KeyState::value_ref)
            .unwrap_or(Cow::Borrowed(spec.default_value()))
    }

    /// The value of `key` as seen by `unit`, decoded as `T`.
    ///
    /// A value that does not decode (possible for merge keys whose
    /// concurrent field edits combine into something the type rejects) is
    /// [`Error::TypeMismatch`]; the state itself is left alone.
    pub fn get<T: DeserializeOwned>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<T> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        let value = self.current_ref(&spec, &full);
        T::deserialize(value.as_ref()).map_err(|err| Error::TypeMismatch {
            key: full.to_string(),
            reason: serde_reason(&err),
        })
    }

    /// The value of `key` as JSON (the default if never written).
    pub fn get_value<T>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<Value> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        Ok(Value::clone(&self.current(&spec, &full)))
    }

    /// The sub-value at `path`, if present.
    pub fn get_path<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &Path,
    ) -> Result<Option<Value>> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        Ok(path.get(&self.current_ref(&spec, &full)).cloned())
    }

    /// Checks that `unit` may subscribe to `key` and returns the full key
    /// whose [`Change`](super::Change)s it should watch.
    pub fn subscribe<T>(&self, unit: &UnitAddress, key: &SharedKey<T>) -> Result<FullKey> {
        self.open(unit, key, Action::Subscribe)
            .map(|(_, full)| full)
    }

    /// Concurrent values of a user-resolve key, winner first (empty when
    /// there is no conflict). Entries that do not decode as `T` are
    /// reported as [`Error::TypeMismatch`].
    pub fn conflicts<T: DeserializeOwned>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
    ) -> Result<Vec<Conflict<T>>> {
        let (spec, full) = self.open(unit, key, Action::Read)?;
        if !spec.strategy().is_user_resolve() {
            return Err(Error::WrongStrategy {
                key: full.to_string(),
                strategy: spec.strategy(),
                operation: "conflicts",
            });
        }
        let conflicts = self
            .states
            .get(&full)
            .map(KeyState::conflicts)
            .unwrap_or_default();
        conflicts
            .into_iter()
            .map(|c| {
                let value = T::deserialize(&c.value).map_err(|err| Error::TypeMismatch {
                    key: full.to_string(),
                    reason: serde_reason(&err),
                })?;
                Ok(Conflict {
                    id: c.id,
                    writer: c.writer,
                    stamp: c.stamp,
                    value,
                })
            })
            .collect()
    }

    /// Who wrote `key`'s current value, and when (see
    /// [`KeyState::last_write`]).
    pub fn last_write(&self, key: &FullKey) -> Option<(UnitAddress, Stamp)> {
        self.states
            .get(key)
            .and_then(KeyState::last_write)
            .map(|(writer, stamp)| (writer.clone(), stamp))
    }
}
