//! The todo list's key, declared the same way by the app and by the relay.

use std::sync::Arc;

use gaesup_state_core::{KeySpec, Lifetime, Result, Scope, SharedKey, Strategy};

use crate::model::Todos;
use crate::schema;

/// The todo list's key: `private/{apartment}/{building}/{unit}/todos`,
/// persistent, merged per todo, schema 2 (see the crate docs).
pub fn todos_key() -> Result<SharedKey<Todos>> {
    SharedKey::builder("todos")
        .scope(Scope::Private)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::Merge)
        .schema(2)
        .migrate(1, schema::v1_to_v2)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![Arc::clone(todos_key()?.spec())])
}
