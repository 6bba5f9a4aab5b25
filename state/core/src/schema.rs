//! Schema versions, migration chains and the stored envelope.
//!
//! Every key has a schema version (starting at 1). Data written under an
//! older version runs through the key's migration chain, one step per
//! version, when it is loaded or received. Data that cannot be decoded, that
//! comes from a newer version, or whose migration fails is an error; the
//! store then quarantines the raw text instead of overwriting it (see
//! [`Replica::load`](crate::Replica::load)).

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::strategy::KeyState;
use crate::vec_map::VecMap;

/// One migration step: a value of version `n` in, a value of version
/// `n + 1` out, or a message saying why not. A plain function pointer, so
/// keys stay cheap to clone and share (non-capturing closures coerce).
pub type MigrateFn = fn(Value) -> Result<Value, String>;

/// A key's schema: its current version and the steps that lead to it.
#[derive(Debug, Clone)]
pub struct Schema {
    version: u32,
    steps: VecMap<u32, MigrateFn>,
}

impl Schema {
    /// Version 1, no migrations.
    pub fn new() -> Self {
        Self {
            version: 1,
            steps: VecMap::new(),
        }
    }

    /// Builds a schema at `version` with `steps` (`from` → `from + 1`).
    /// Fails on version 0, a step at or beyond `version`, or a duplicate.
    pub fn with_steps(version: u32, steps: &[(u32, MigrateFn)]) -> Result<Self, String> {
        if version == 0 {
            return Err(String::from("schema versions start at 1"));
        }
        let mut map = VecMap::new();
        for (from, step) in steps {
            if *from == 0 || *from >= version {
                return Err(format!(
                    "migration from {from} does not lead towards version {version}"
                ));
            }
            if map.insert(*from, *step).is_some() {
                return Err(format!("two migrations from version {from}"));
            }
        }
        Ok(Self {
            version,
            steps: map,
        })
    }

    /// The current version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Versions that have a migration step.
    pub fn steps(&self) -> impl Iterator<Item = u32> + '_ {
        self.steps.keys().copied()
    }

    /// Checks that data at version `from` can be brought to the current
    /// version.
    pub fn check(&self, key: &str, from: u32) -> Result<()> {
        if from > self.version {
            return Err(Error::NewerSchema {
                key: key.to_owned(),
                found: from,
                supported: self.version,
            });
        }
        match (from..self.version).find(|v| !self.steps.contains_key(v)) {
            Some(missing) => Err(Error::Migration {
                key: key.to_owned(),
                from: missing,
                reason: String::from("no migration step from this version"),
            }),
            None => Ok(()),
        }
    }

    /// Migrates one value from version `from` to the current version.
    pub fn migrate_value(&self, key: &str, from: u32, value: Value) -> Result<Value> {
        self.check(key, from)?;
        let mut value = value;
        for version in from..self.version {
            let step = self.steps.get(&version).ok_or_else(|| Error::Migration {
                key: key.to_owned(),
                from: version,
                reason: String::from("no migration step from this version"),
            })?;
            value = step(value).map_err(|reason| Error::Migration {
                key: key.to_owned(),
                from: version,
                reason,
            })?;
        }
        Ok(value)
    }

    /// Migrates every value inside a key state (stamps are kept). A
    /// migrated state that passes a limit (a step that grew a value past
    /// it) fails like a failing step: kept, it would be refused by every
    /// other tab and by this one's next reload.
    pub fn migrate_state(&self, key: &str, from: u32, state: &mut KeyState) -> Result<()> {
        self.check(key, from)?;
        if from == self.version {
            return Ok(());
        }
        state.migrate(&mut |value| self.migrate_value(key, from, value))?;
        state.validate()
    }
}

impl Default for Schema {
    fn default() -> Self {
        Self::new()
    }
}

/// What is stored per key, and what anti-entropy exchanges:
/// `{"schema": n, "state": KeyState}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredState {
    /// Schema version of the values inside `state`.
    pub schema: u32,
    /// The replicated state.
    pub state: KeyState,
    /// Writes of this tab stamped beyond the allowed lead of its clock
    /// (the clock was set back): kept apart from `state`, so they neither
    /// hide the value shown meanwhile nor get lost across a reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<KeyState>,
}

impl crate::decode::FromJson for StoredState {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, crate::decode::Why> {
        let mut fields = crate::decode::Fields::of(value, "a stored state")?;
        Ok(Self {
            schema: fields.req("schema")?,
            state: fields.req("state")?,
            ahead: fields.opt("ahead")?,
        })
    }
}

crate::decode::deserialize_through_tree!(StoredState);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add_qty(mut v: Value) -> Result<Value, String> {
        v.as_object_mut()
            .ok_or("not an object")?
            .insert("qty".into(), json!(1));
        Ok(v)
    }

    fn rename(mut v: Value) -> Result<Value, String> {
        let object = v.as_object_mut().ok_or("not an object")?;
        let name = object.remove("name").ok_or("no name")?;
        object.insert("title".into(), name);
        Ok(v)
    }

    #[test]
    fn chain_runs_every_step_in_order() {
        let schema = Schema::with_steps(3, &[(2, rename), (1, add_qty)]).unwrap();
        let out = schema.migrate_value("k", 1, json!({"name": "x"})).unwrap();
        assert_eq!(out, json!({"title": "x", "qty": 1}));
        assert_eq!(
            schema.migrate_value("k", 3, json!(5)).unwrap(),
            json!(5),
            "current version passes through"
        );
    }

    #[test]
    fn newer_missing_and_failing_steps_are_errors() {
        let schema = Schema::with_steps(3, &[(2, rename)]).unwrap();
        assert!(matches!(
            schema.migrate_value("k", 4, json!({})),
            Err(Error::NewerSchema {
                found: 4,
                supported: 3,
                ..
            })
        ));
        assert!(matches!(
            schema.migrate_value("k", 1, json!({})),
            Err(Error::Migration { from: 1, .. })
        ));
        assert!(matches!(
            schema.migrate_value("k", 2, json!([])),
            Err(Error::Migration { from: 2, .. })
        ));
    }

    #[test]
    fn bad_chains_are_refused() {
        assert!(Schema::with_steps(0, &[]).is_err());
        assert!(Schema::with_steps(2, &[(2, rename)]).is_err());
        assert!(Schema::with_steps(3, &[(1, rename), (1, add_qty)]).is_err());
    }
}
