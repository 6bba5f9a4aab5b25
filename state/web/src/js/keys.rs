//! Which key a name means for a [`JsUnit`]: declared through it, or the
//! one declaration of that name visible from the unit.

use gaesup_state::{Result, StateError};
use gaesup_state_core::{FullKey, KeyName, Lifetime, Scope, SharedKey, Strategy};
use serde_json::Value;
use wasm_bindgen::JsValue;

use super::JsUnit;
use super::convert::{DeclareOptions, options};

impl JsUnit {
    pub(super) fn try_declare(&self, name: &str, options: &JsValue) -> Result<()> {
        let options: DeclareOptions = self::options(options)?;
        let name = KeyName::new(name)?;
        let scope = options.scope.unwrap_or(Scope::Private);
        let full = FullKey::new(scope, &self.unit.address, &name);
        let existing = self
            .unit
            .manager
            .with_replica(|replica| replica.spec_for(&full).ok())?;
        let key = match existing {
            Some(spec) => {
                let clash = |what: &str, ours: String, theirs: String| {
                    StateError::Core(gaesup_state_core::Error::KeyMismatch {
                        key: spec.label(),
                        reason: format!("{what} is {theirs}, not {ours}"),
                    })
                };
                if let Some(lifetime) = options.lifetime.filter(|l| *l != spec.lifetime()) {
                    return Err(clash(
                        "lifetime",
                        lifetime.to_string(),
                        spec.lifetime().to_string(),
                    ));
                }
                if let Some(strategy) = options.strategy.filter(|s| *s != spec.strategy()) {
                    return Err(clash(
                        "strategy",
                        strategy.as_str().to_owned(),
                        spec.strategy().as_str().to_owned(),
                    ));
                }
                SharedKey::erased(spec)
            }
            None => {
                let strategy = options.strategy.unwrap_or(Strategy::LastWriteWins);
                let default = options.default.unwrap_or(if strategy == Strategy::Sum {
                    Value::from(0)
                } else {
                    Value::Null
                });
                let key = SharedKey::builder_with_default(name.as_str(), default)
                    .scope(scope)
                    .lifetime(options.lifetime.unwrap_or(Lifetime::Memory))
                    .strategy(strategy)
                    .build()?;
                self.unit.manager.declare(&key)?;
                key
            }
        };
        self.keys.borrow_mut().insert(name.as_str().to_owned(), key);
        Ok(())
    }

    /// The key `name`: declared through this handle, or else the one
    /// declaration of that name visible from this unit.
    pub(super) fn key(&self, name: &str) -> Result<SharedKey<Value>> {
        if let Some(key) = self.keys.borrow().get(name) {
            return Ok(key.clone());
        }
        let name = KeyName::new(name)?;
        let found: Vec<_> = self.unit.manager.with_replica(|store| {
            store
                .specs()
                .filter(|spec| spec.name() == &name)
                .cloned()
                .collect()
        })?;
        match found.as_slice() {
            [] => Err(StateError::Core(gaesup_state_core::Error::UnknownKey {
                key: name.to_string(),
            })),
            [spec] => {
                let key = SharedKey::erased(spec.clone());
                self.keys.borrow_mut().insert(name.to_string(), key.clone());
                Ok(key)
            }
            many => Err(StateError::AmbiguousKey {
                name: name.to_string(),
                scopes: many
                    .iter()
                    .map(|spec| spec.scope().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}
