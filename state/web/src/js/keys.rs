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
                // A default given is a rule too: kept silently, the unit's
                // first read would show another value than it declared.
                if let Some(default) = options
                    .default
                    .filter(|d| !same_json(d, spec.default_value()))
                {
                    let text = |value: &Value| {
                        gaesup_state_core::preview(
                            &gaesup_state_core::to_text(value).unwrap_or_default(),
                        )
                    };
                    return Err(clash("default", text(&default), text(spec.default_value())));
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

/// Whether two JSON values say the same default: numbers by their value
/// (`0` from JavaScript and `0.0` from a Rust `f64` are one; so are `0.1`
/// and a Rust `f32`'s `0.10000000149011612`), and a field that is null
/// the same as one left out (a Rust `Option` writes `null`, JavaScript
/// leaves it out).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => {
            a == b
                || match (a.as_f64(), b.as_f64()) {
                    (Some(a), Some(b)) => a == b || as_f32_reads(a, b) || as_f32_reads(b, a),
                    _ => false,
                }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            let field = |object: &serde_json::Map<String, Value>, name: &str| {
                object.get(name).cloned().unwrap_or(Value::Null)
            };
            a.keys()
                .chain(b.keys())
                .all(|name| same_json(&field(a, name), &field(b, name)))
        }
        (a, b) => a == b,
    }
}

/// Whether `wide` is exactly an f32 (a Rust `f32` written as JSON) whose
/// shortest text reads as `other`: `0.10000000149011612` is the f32 `0.1`.
/// Written and read by serde_json, whose float code the page has anyway
/// (core's `to_string` and `parse` of floats cost the app 20 KiB).
fn as_f32_reads(wide: f64, other: f64) -> bool {
    #[allow(clippy::cast_possible_truncation, reason = "kept only when exact")]
    let narrow = wide as f32;
    f64::from(narrow) == wide
        && serde_json::to_string(&narrow)
            .ok()
            .and_then(|text| serde_json::from_str::<f64>(&text).ok())
            == Some(other)
}
