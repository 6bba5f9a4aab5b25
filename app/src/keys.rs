//! Every key the app's units declare, in one list.
//!
//! A relay applies each op it receives through the same core the tabs run
//! (strategy, schema and migrations, types, permissions), so it needs the
//! declarations themselves, not a copy of them in some other format: the
//! relay binary links this list. A unit with keys adds them here (a unit
//! written in JavaScript declares its keys in its Rust crate, so they are
//! here too); a key declared only from JavaScript at run time stays on its
//! device (the relay answers `unknown_key`).

use std::sync::Arc;

use gaesup_state::core::{KeySpec, Result};

/// The declarations of every key a unit of this build may use.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![
        Arc::clone(unit_counter::count_key()?.spec()),
        Arc::clone(unit_todo::todos_key()?.spec()),
        Arc::clone(unit_flaky::broken_key()?.spec()),
        Arc::clone(unit_theme::theme_key()?.spec()),
        Arc::clone(unit_notes::notes_key()?.spec()),
        Arc::clone(unit_notes::shared_note_key()?.spec()),
        Arc::clone(unit_cart::cart_key()?.spec()),
        Arc::clone(unit_template::note_key()?.spec()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_sharing_a_key_declare_it_alike() {
        // The catalog and the JS counter declare keys of their own that
        // other units own too: the declarations must be the same rules.
        let mut store = gaesup_state::core::Replica::new(
            gaesup_state::core::TabId::new(1),
            gaesup_state::core::ManualClock::new(0),
        );
        for spec in declarations().unwrap() {
            store
                .declare(&gaesup_state::core::SharedKey::erased(spec))
                .unwrap();
        }
        store.declare(&unit_catalog::cart_key().unwrap()).unwrap();
        store
            .declare(&unit_js_counter::count_key().unwrap())
            .unwrap();
    }
}
