//! Todo unit: a faithful TodoMVC on the gaesup state manager.
//!
//! # The problem
//!
//! Every front-end developer knows TodoMVC, and dozens of implementations
//! of the same specification exist to compare against. This unit is one
//! more, with the same markup, CSS classes, behaviour and keyboard rules
//! (tastejs/todomvc `app-spec.md`), except that the list lives in the
//! state manager instead of a hand-written localStorage wrapper, and the
//! filters are routes inside the unit's own address instead of `#/` hashes.
//! What the state manager adds is what a hand-written TodoMVC lacks: the
//! list syncs between open tabs, concurrent edits in two tabs converge,
//! and the stored format has a versioned migration.
//!
//! # Example
//!
//! The unit needs a router (its filters are routes) and the containers
//! that give it an address:
//!
//! ```
//! use gaesup_state::{Apartment, Building, Unit};
//! use leptos::prelude::*;
//! use leptos_router::components::Router;
//! use unit_todo::TodoApp;
//!
//! #[component]
//! fn Desk() -> impl IntoView {
//!     view! {
//!         <Router>
//!             <Apartment id="main">
//!                 <Building id="desk">
//!                     <Unit id="todo"><TodoApp /></Unit>
//!                 </Building>
//!             </Apartment>
//!         </Router>
//!     }
//! }
//! ```
//!
//! # Routes
//!
//! At `/apartment/{a}/building/{b}/unit/{u}` the unit shows all todos,
//! at `…/active` the active ones and at `…/completed` the completed ones
//! ([`Filter`]); when the site is deployed under a sub-path (`<base
//! href="/demo/">`), every address starts with it ([`deployment_base`]).
//! The filter links are plain links to those addresses, so
//! each click is a history entry and a filter can be deep-linked. On a
//! page where many units render together (the apartment) the links still
//! point at the unit's own address. The new-todo input takes the focus
//! only on the unit's own address, where the unit is what the user came
//! for.
//!
//! # State
//!
//! One key, [`todos_key`]: `private/{a}/{b}/{u}/todos`.
//!
//! - **Scope: private.** Only this unit reads or writes its list; another
//!   todo unit elsewhere has its own.
//! - **Lifetime: persistent.** localStorage: survives reloads and
//!   restarts, and open tabs see each other's changes.
//! - **Strategy: merge.** The value is an object keyed by todo id
//!   ([`Todos`]); merge reconciles its top-level fields one by one, each
//!   last-write-wins. A todo is therefore the unit of conflict: two tabs
//!   adding todos at the same moment keep both (ids are unique per tab,
//!   [`new_id`]), and editing one todo in one tab while toggling another
//!   in the second tab keeps both changes. Last-write-wins on the whole
//!   list would be simpler and would silently drop one tab's change.
//!   What merge cannot do: concurrent changes to the *same* todo keep the
//!   later one, and a todo removed in one tab while edited later in
//!   another comes back with the edit (the later write wins).
//! - **Schema: 2**, with a v1 → v2 migration ([`schema`] shows both
//!   shapes): v1 was an array without ids, v2 the object keyed by id.
//!   Stored v1 data is migrated on load; malformed v1 data is refused with
//!   a message and kept aside by the state manager, never overwritten.
//!
//! The editing state is not stored (TodoMVC's rule): it lives in the view.
//!
//! # Safety of rendered values
//!
//! Titles of any length and content are rendered as text nodes and input
//! values, never as HTML. A write the state manager refuses (a list beyond
//! its value size limit, for example) is shown as an error and the typed
//! text stays in the input.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod filter;
pub mod keys;
mod model;
pub mod schema;
#[cfg(feature = "view")]
mod view;

pub use filter::{Filter, deployment_base, is_own_address};
pub use keys::todos_key;
pub use model::{Edited, Todo, Todos, clean_title, items_left, new_id};
#[cfg(feature = "view")]
pub use view::TodoApp;

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::core::{ManualClock, Message, Replica, TabId};
    use gaesup_state::prelude::*;
    use gaesup_state::{StateManager, UnitAddress};
    use leptos::prelude::Owner;

    fn unit(text: &str) -> UnitAddress {
        text.parse().unwrap()
    }

    #[test]
    fn todos_are_a_private_persistent_merge_key_at_schema_2() {
        let key = todos_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Private);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::Merge);
        assert_eq!(spec.schema().version(), 2);
        assert_eq!(spec.schema().steps().collect::<Vec<_>>(), [1]);
        assert_eq!(
            key.full_key(&unit("main/desk/todo")).as_str(),
            "private/main/desk/todo/todos"
        );
    }

    #[test]
    fn another_unit_cannot_see_the_list() {
        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            let key = todos_key().unwrap();
            state.declare(&key).unwrap();
            let mut todos = Todos::default();
            assert!(todos.add("a".into(), "mine"));
            state.set(&unit("main/desk/todo"), &key, todos).unwrap();
            assert!(
                state
                    .get(&unit("main/desk/other"), &key)
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(state.get(&unit("main/desk/todo"), &key).unwrap().len(), 1);
        });
    }

    /// Two tabs edit different todos at the same moment; each receives the
    /// other's op. Merge keeps both edits (last-write-wins on the whole
    /// list would keep one).
    #[test]
    fn concurrent_edits_of_different_todos_both_survive() {
        let key = todos_key().unwrap();
        let me = unit("main/desk/todo");
        let clock = ManualClock::new(1_000);
        let mut a = Replica::new(TabId::new(1), clock.clone());
        let mut b = Replica::new(TabId::new(2), clock);
        a.declare(&key).unwrap();
        b.declare(&key).unwrap();

        let mut start = Todos::default();
        assert!(start.add("x".into(), "one"));
        assert!(start.add("y".into(), "two"));
        let first = a.set(&me, &key, start).unwrap();
        b.receive_text(&first.message.unwrap().encode().unwrap());

        let mut in_a = a.get(&me, &key).unwrap();
        in_a.set_completed("x", true);
        assert!(in_a.add(new_id(1_000, 1, 1), "added in a"));
        let mut in_b = b.get(&me, &key).unwrap();
        assert_eq!(in_b.save_edit("y", "two, renamed in b"), Edited::Renamed);
        assert!(in_b.add(new_id(1_000, 2, 1), "added in b"));
        let from_a = a.set(&me, &key, in_a).unwrap().message.unwrap();
        let from_b = b.set(&me, &key, in_b).unwrap().message.unwrap();
        let deliver = |store: &mut Replica, message: Message| {
            store.receive_text(&message.encode().unwrap());
        };
        deliver(&mut b, from_a);
        deliver(&mut a, from_b);

        let merged = a.get(&me, &key).unwrap();
        assert_eq!(merged, b.get(&me, &key).unwrap(), "tabs converge");
        assert_eq!(merged.len(), 4);
        assert_eq!(merged.get("x").map(|t| t.completed), Some(true));
        assert_eq!(
            merged.get("y").map(|t| t.title.as_str()),
            Some("two, renamed in b")
        );
    }
}
