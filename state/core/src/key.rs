//! Key declarations: the typed [`SharedKey<T>`] units pass around and the
//! type-erased [`KeySpec`] the replica works with.
//!
//! A key is declared once, in Rust, with everything that governs it: scope,
//! lifetime, strategy, schema version and migrations, permissions and a
//! default. Strings stay inside the library; units hold typed keys.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result, preview};
use crate::id::{KeyName, UnitAddress};
use crate::limits::{check_value, serde_reason};
use crate::permission::{Access, Permissions};
use crate::schema::{MigrateFn, Schema};
use crate::scope::{FullKey, Lifetime, Scope};
use crate::strategy::Strategy;

/// Checks that a JSON value decodes as the key's Rust type.
pub(crate) type CheckFn = fn(&Value) -> Result<(), String>;

pub(crate) fn check_type<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    T::deserialize(value)
        .map(drop)
        .map_err(|err| serde_reason(&err))
}

/// Everything the replica needs to know about a key, without its Rust type.
#[derive(Debug, Clone)]
pub struct KeySpec {
    name: KeyName,
    scope: Scope,
    lifetime: Lifetime,
    strategy: Strategy,
    schema: Schema,
    permissions: Permissions,
    default: Value,
    check: CheckFn,
    type_id: TypeId,
    type_name: &'static str,
}

impl KeySpec {
    /// The key name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// Who shares it.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// How long it lives.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// How conflicts are reconciled.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Its schema (version and migrations).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Read and write lists.
    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// The default value, as JSON.
    pub fn default_value(&self) -> &Value {
        &self.default
    }

    /// Name of the Rust type (for error messages).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// `scope:name`, how errors name a key when there is no unit address.
    pub fn label(&self) -> String {
        format!("{}:{}", self.scope, self.name)
    }

    /// The full key as seen from `address`.
    pub fn full_key(&self, address: &UnitAddress) -> FullKey {
        FullKey::new(self.scope, address, &self.name)
    }

    /// Whether the key was declared with type `serde_json::Value`, so any
    /// JSON value is one of its values (no type check needed).
    pub fn holds_any_json(&self) -> bool {
        self.type_id == TypeId::of::<Value>()
    }

    /// Checks that `value` decodes as the key's type.
    pub fn check_type(&self, key: &str, value: &Value) -> Result<()> {
        (self.check)(value).map_err(|reason| Error::TypeMismatch {
            key: key.to_owned(),
            reason,
        })
    }

    /// Whether `other` declares the same key with the same rules and type;
    /// `Err` says what differs.
    pub(crate) fn same_declaration(&self, other: &KeySpec) -> Result<(), String> {
        let differs = |what: &str| Err(format!("{what} differs"));
        if self.type_id != other.type_id {
            return Err(format!("type {} vs {}", self.type_name, other.type_name));
        }
        if self.lifetime != other.lifetime {
            return differs("lifetime");
        }
        if self.strategy != other.strategy {
            return differs("strategy");
        }
        if self.schema.version() != other.schema.version()
            || !self.schema.steps().eq(other.schema.steps())
        {
            return differs("schema");
        }
        if self.permissions != other.permissions {
            return differs("permissions");
        }
        if self.default != other.default {
            return differs("default");
        }
        Ok(())
    }
}

/// A typed key. Cheap to clone (the spec is shared) and `Send + Sync`, so it
/// can live in a `static` or a thread-safe signal.
pub struct SharedKey<T> {
    spec: Arc<KeySpec>,
    /// Set for a JSON view of a key declared with another Rust type: its
    /// writes must be checked against that type (see [`SharedKey::erased`]).
    erased: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for SharedKey<T> {
    fn clone(&self) -> Self {
        Self {
            spec: Arc::clone(&self.spec),
            erased: self.erased,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SharedKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedKey")
            .field(&self.spec.label())
            .finish()
    }
}

impl<T> SharedKey<T> {
    /// The type-erased declaration.
    pub fn spec(&self) -> &Arc<KeySpec> {
        &self.spec
    }

    /// The key name.
    pub fn name(&self) -> &KeyName {
        &self.spec.name
    }

    /// The full key as seen from `address`.
    pub fn full_key(&self, address: &UnitAddress) -> FullKey {
        self.spec.full_key(address)
    }
}

impl SharedKey<Value> {
    /// A JSON view of an already declared key, whatever its Rust type: for
    /// callers that only have JSON (the JavaScript binding). It is the same
    /// key (same declaration, same full keys); every value written through
    /// it is checked against the declared type first, so JSON that the
    /// declaring unit could not read is refused with
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch).
    pub fn erased(spec: Arc<KeySpec>) -> Self {
        Self {
            spec,
            erased: true,
            _type: PhantomData,
        }
    }
}

impl<T> SharedKey<T> {
    /// Whether this is a JSON view made by [`SharedKey::erased`].
    pub fn is_erased(&self) -> bool {
        self.erased
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SharedKey<T> {
    /// Starts declaring key `name`, defaulting to `T::default()`.
    ///
    /// Defaults: private scope, memory lifetime, last-write-wins, schema 1,
    /// anyone in scope may read and write.
    pub fn builder(name: &str) -> SharedKeyBuilder<T>
    where
        T: Default,
    {
        Self::builder_with_default(name, T::default())
    }

    /// Starts declaring key `name` with an explicit default (for types
    /// without `Default`).
    pub fn builder_with_default(name: &str, default: T) -> SharedKeyBuilder<T> {
        SharedKeyBuilder {
            name: name.to_owned(),
            scope: Scope::Private,
            lifetime: Lifetime::Memory,
            strategy: Strategy::LastWriteWins,
            version: 1,
            steps: Vec::new(),
            permissions: Permissions::default(),
            default,
        }
    }
}

/// Builder for [`SharedKey`]; [`build`](Self::build) validates everything.
#[must_use = "call .build() to get the key"]
pub struct SharedKeyBuilder<T> {
    name: String,
    scope: Scope,
    lifetime: Lifetime,
    strategy: Strategy,
    version: u32,
    steps: Vec<(u32, MigrateFn)>,
    permissions: Permissions,
    default: T,
}

impl<T: Serialize + DeserializeOwned + 'static> SharedKeyBuilder<T> {
    /// Who shares the key.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// How long it lives.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// How conflicts are reconciled.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The current schema version (from 1).
    pub fn schema(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// A migration step from version `from` to `from + 1`.
    pub fn migrate(mut self, from: u32, step: MigrateFn) -> Self {
        self.steps.push((from, step));
        self
    }

    /// Who may read and subscribe.
    pub fn read(mut self, access: Access) -> Self {
        self.permissions.read = access;
        self
    }

    /// Who may write.
    pub fn write(mut self, access: Access) -> Self {
        self.permissions.write = access;
        self
    }

    /// Replaces the default value.
    pub fn default_value(mut self, default: T) -> Self {
        self.default = default;
        self
    }

    /// Validates the declaration: the name's grammar, the migration chain,
    /// that the default serializes within limits and reads back as `T`,
    /// and that a sum key's type holds integers and defaults to 0.
    pub fn build(self) -> Result<SharedKey<T>> {
        let name = KeyName::new(self.name)?;
        let invalid = |reason: String| Error::InvalidDeclaration {
            key: format!("{}:{}", self.scope, name),
            reason,
        };
        let schema = Schema::with_steps(self.version, &self.steps).map_err(invalid)?;
        let default = serde_json::to_value(&self.default).map_err(|err| {
            invalid(format!(
                "default does not serialize: {}",
                serde_reason(&err)
            ))
        })?;
        check_value(&default, "default value").map_err(|err| invalid(err.to_string()))?;
        check_type::<T>(&default)
            .map_err(|reason| invalid(format!("default does not read back: {reason}")))?;
        if self.strategy == Strategy::Sum {
            if check_type::<T>(&Value::from(0_i64)).is_err() {
                return Err(invalid(String::from("sum keys need an integer type")));
            }
            // The value of a sum key is the sum of its increments; a
            // non-zero default would make the first increment jump.
            if default.as_i64() != Some(0) {
                return Err(invalid(String::from("a sum key's default must be 0")));
            }
        }
        let spec = KeySpec {
            name,
            scope: self.scope,
            lifetime: self.lifetime,
            strategy: self.strategy,
            schema,
            permissions: self.permissions,
            default,
            check: check_type::<T>,
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        };
        Ok(SharedKey {
            spec: Arc::new(spec),
            erased: false,
            _type: PhantomData,
        })
    }
}

impl<T> fmt::Debug for SharedKeyBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyBuilder")
            .field("name", &preview(&self.name))
            .field("scope", &self.scope)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn builder_validates_name_and_rules() {
        assert!(SharedKey::<u32>::builder("a/b").build().is_err());
        assert!(SharedKey::<u32>::builder("ok").schema(0).build().is_err());
        assert!(
            SharedKey::<String>::builder("s")
                .strategy(Strategy::Sum)
                .build()
                .is_err()
        );
        assert!(
            SharedKey::<i64>::builder("s")
                .strategy(Strategy::Sum)
                .build()
                .is_ok()
        );
        assert!(
            SharedKey::<i64>::builder_with_default("s", 5)
                .strategy(Strategy::Sum)
                .build()
                .is_err()
        );
        // A map with non-string keys cannot be JSON.
        let bad = SharedKey::<HashMap<(u8, u8), u8>>::builder_with_default(
            "m",
            HashMap::from([((1, 2), 3)]),
        )
        .build();
        assert!(matches!(bad, Err(Error::InvalidDeclaration { .. })));
    }

    #[test]
    fn keys_are_send_and_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<SharedKey<String>>();
    }
}
