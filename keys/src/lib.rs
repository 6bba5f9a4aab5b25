//! Every key the app's units declare, in one list.
//!
//! A relay applies each op it receives through the same core the tabs run
//! (strategy, schema and migrations, types, permissions), so it needs the
//! declarations themselves, not a copy of them in some other format. Each
//! unit crate keeps its keys in a `keys` module that needs only
//! `gaesup-state-core`; this crate takes every unit without its `view`
//! feature, so what links it (the relay) links no Leptos and no browser
//! crate.
//!
//! ```
//! let keys = gaesup_keys::declarations().unwrap();
//! assert!(keys.iter().any(|spec| spec.name().as_str() == "count"));
//! ```
//!
//! A unit with keys adds its `keys::declarations` to [`UNITS`] (`cargo
//! xtask new-unit` does). A unit written in JavaScript declares its keys in
//! its Rust crate, so they are here too; a key declared only from
//! JavaScript at run time stays on its device (the relay answers
//! `unknown_key`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use gaesup_state_core::{KeySpec, ManualClock, Replica, Result, SharedKey, TabId};

/// One unit's declarations, as its `keys` module lists them.
pub type UnitKeys = fn() -> Result<Vec<Arc<KeySpec>>>;

/// The `keys::declarations` of every unit of this build.
pub const UNITS: &[UnitKeys] = &[
    unit_counter::keys::declarations,
    unit_js_counter::keys::declarations,
    unit_flaky::keys::declarations,
    unit_todo::keys::declarations,
    unit_theme::keys::declarations,
    unit_notes::keys::declarations,
    unit_catalog::keys::declarations,
    unit_cart::keys::declarations,
    unit_template::keys::declarations,
];

/// The declarations of every key a unit of this build may use, each key
/// once.
///
/// Units may share a key (the catalog and the cart both declare the cart):
/// they must declare it alike, or this fails with the core's
/// `key_mismatch` naming the key, the same error a tab would give.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    let mut all = Replica::new(TabId::new(1), ManualClock::new(0));
    for unit in UNITS {
        for spec in unit()? {
            all.declare(&SharedKey::erased(spec))?;
        }
    }
    Ok(all.specs().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_state_core::{Lifetime, Scope};

    #[test]
    fn every_unit_key_is_listed_once() {
        let keys = declarations().unwrap();
        let mut names: Vec<(Scope, &str)> = keys
            .iter()
            .map(|spec| (spec.scope(), spec.name().as_str()))
            .collect();
        names.sort();
        let listed = names.len();
        names.dedup();
        assert_eq!(names.len(), listed, "a key listed twice: {names:?}");
        // The app's own units (a unit added by `new-unit` adds to these).
        for key in [
            (Scope::Private, "notes"),
            (Scope::Private, "template-note"),
            (Scope::Private, "todos"),
            (Scope::Building, "count"),
            (Scope::Apartment, "cart"),
            (Scope::Apartment, "flaky-broken"),
            (Scope::Apartment, "shared-note"),
            (Scope::Global, "theme"),
        ] {
            assert!(names.contains(&key), "{key:?} missing from {names:?}");
        }
        let count = keys.iter().find(|k| k.name().as_str() == "count").unwrap();
        assert_eq!(count.lifetime(), Lifetime::Persistent);
    }

    /// A unit written in JavaScript finds a key it did not declare by its
    /// name alone (the React, Vue and Svelte counters read `count` so),
    /// and the app declares every key here in every apartment: two keys
    /// of one name in two scopes would make that name `ambiguous_key` on
    /// every page. Name a new key apart from these.
    #[test]
    fn every_name_is_one_key() {
        let keys = declarations().unwrap();
        let mut names: Vec<&str> = keys.iter().map(|spec| spec.name().as_str()).collect();
        names.sort_unstable();
        let all = names.len();
        names.dedup();
        assert_eq!(names.len(), all, "a name declared in two scopes: {names:?}");
    }

    #[test]
    fn units_sharing_a_key_must_declare_it_alike() {
        // The catalog and the JS counter declare keys that other units own
        // too; a different rule for the same key is refused by name.
        let mut all = Replica::new(TabId::new(1), ManualClock::new(0));
        all.declare(&unit_cart::cart_key().unwrap()).unwrap();
        all.declare(&unit_catalog::cart_key().unwrap()).unwrap();
        all.declare(&unit_counter::count_key().unwrap()).unwrap();
        all.declare(&unit_js_counter::count_key().unwrap()).unwrap();
        let other = SharedKey::<i64>::builder("count")
            .scope(Scope::Building)
            .build()
            .unwrap();
        let err = all.declare(&other).unwrap_err();
        assert_eq!(err.code(), "key_mismatch", "{err}");
    }
}
