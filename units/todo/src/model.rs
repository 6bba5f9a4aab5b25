//! The todo list as plain data: what TodoMVC can do to it, in what order
//! it is shown, and how many are left. No Leptos here, so every rule is
//! tested natively.

use gaesup_state_core::vec_map::VecMap;
use serde::{Deserialize, Serialize};

/// One todo (schema v2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// What to do: trimmed, never empty.
    pub title: String,
    /// Whether it is done.
    pub completed: bool,
    /// Position in the list. A new todo gets one more than the highest this
    /// tab sees, so it lands at the bottom; two todos added at the same
    /// moment in two tabs may share a position and are then ordered by id.
    pub order: u64,
}

/// The whole list (schema v2): a JSON object whose top-level fields are
/// the todo ids.
///
/// Keyed by id rather than an array because the key uses the merge
/// strategy, which reconciles top-level fields one by one: a todo is the
/// unit of conflict, so edits of different todos in two tabs both survive.
/// Kept as the core's sorted vector rather than a `BTreeMap` (whose code
/// would be compiled for this one type): ids start with the time, so a
/// new todo lands at the end, and a list read back is sorted once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Todos(VecMap<String, Todo>);

/// What saving an edit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edited {
    /// The title changed (or stayed the same).
    Renamed,
    /// The trimmed text was empty, so the todo was removed.
    Removed,
    /// No todo has that id (another tab removed it meanwhile).
    Missing,
}

/// `title` as TodoMVC stores it: trimmed, or `None` when nothing is left.
pub fn clean_title(title: &str) -> Option<&str> {
    let trimmed = title.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// A fresh todo id: the time, the tab and a per-tab counter, in hex.
///
/// Ids must be unique across tabs without asking anyone: a shared counter
/// would hand the same id to two tabs adding at once, and the merge
/// strategy would then keep only one of the two todos. The tab id is
/// random per page load, the counter separates adds within one
/// millisecond, and the time keeps an id from coming back after a reload
/// that happens to reuse a tab id.
pub fn new_id(now_ms: u64, tab: u64, counter: u64) -> String {
    format!("{now_ms:x}-{tab:x}-{counter:x}")
}

/// The counter's words for `active` todos left: TodoMVC pluralizes
/// `0 items`, `1 item`, `2 items`.
pub fn items_left(active: usize) -> &'static str {
    if active == 1 {
        "item left"
    } else {
        "items left"
    }
}

impl Todos {
    /// Number of todos.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no todos at all (TodoMVC then hides the list and
    /// the footer).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The todo with id `id`.
    pub fn get(&self, id: &str) -> Option<&Todo> {
        self.0.get(id)
    }

    /// Todos not yet done.
    pub fn active_count(&self) -> usize {
        self.0.values().filter(|todo| !todo.completed).count()
    }

    /// Todos done.
    pub fn completed_count(&self) -> usize {
        self.0.len() - self.active_count()
    }

    /// Whether there is at least one todo and all are done (the state of
    /// the "Mark all as complete" checkbox).
    pub fn all_completed(&self) -> bool {
        !self.0.is_empty() && self.0.values().all(|todo| todo.completed)
    }

    /// The position a todo added now gets: after every todo shown.
    pub fn next_order(&self) -> u64 {
        self.0
            .values()
            .map(|todo| todo.order)
            .max()
            .map_or(1, |max| max.saturating_add(1))
    }

    /// Appends a todo titled `title` (trimmed) under `id`. Returns `false`
    /// and changes nothing when the trimmed title is empty or the id is
    /// taken.
    pub fn add(&mut self, id: String, title: &str) -> bool {
        let Some(title) = clean_title(title) else {
            return false;
        };
        if self.0.contains_key(&id) {
            return false;
        }
        let order = self.next_order();
        self.0.insert(
            id,
            Todo {
                title: title.to_owned(),
                completed: false,
                order,
            },
        );
        true
    }

    /// Marks one todo done or not done.
    pub fn set_completed(&mut self, id: &str, completed: bool) {
        if let Some(todo) = self.0.get_mut(id) {
            todo.completed = completed;
        }
    }

    /// Marks every todo done or not done ("Mark all as complete").
    pub fn set_all_completed(&mut self, completed: bool) {
        for todo in self.0.values_mut() {
            todo.completed = completed;
        }
    }

    /// Saves an edit: the trimmed `title`, or removes the todo when the
    /// trimmed text is empty (TodoMVC's rule).
    pub fn save_edit(&mut self, id: &str, title: &str) -> Edited {
        if !self.0.contains_key(id) {
            return Edited::Missing;
        }
        match clean_title(title) {
            Some(title) => {
                if let Some(todo) = self.0.get_mut(id) {
                    title.clone_into(&mut todo.title);
                }
                Edited::Renamed
            }
            None => {
                self.0.remove(id);
                Edited::Removed
            }
        }
    }

    /// Removes one todo.
    pub fn remove(&mut self, id: &str) {
        self.0.remove(id);
    }

    /// Removes every todo that is done ("Clear completed").
    pub fn clear_completed(&mut self) {
        self.0.retain(|_, todo| !todo.completed);
    }

    /// Ids of the todos `filter` shows, in list order (position, then id,
    /// so every tab shows the same order).
    pub fn visible_ids(&self, filter: crate::Filter) -> Vec<String> {
        let shown: Vec<(&String, &Todo)> = self
            .0
            .iter()
            .filter(|(_, todo)| filter.shows(todo))
            .collect();
        // The core's sort: compiled once for every type (see `sorted_by`).
        gaesup_state_core::vec_map::sorted_by(shown, |(a_id, a), (b_id, b)| {
            a.order.cmp(&b.order).then_with(|| a_id.cmp(b_id))
        })
        .into_iter()
        .map(|(id, _)| id.clone())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Filter;

    fn list(titles: &[&str]) -> Todos {
        let mut todos = Todos::default();
        for (n, title) in titles.iter().enumerate() {
            assert!(todos.add(format!("id{n}"), title));
        }
        todos
    }

    fn titles(todos: &Todos, filter: Filter) -> Vec<String> {
        todos
            .visible_ids(filter)
            .iter()
            .filter_map(|id| todos.get(id).map(|t| t.title.clone()))
            .collect()
    }

    #[test]
    fn add_trims_and_refuses_blank_titles() {
        let mut todos = Todos::default();
        assert!(todos.add("a".into(), "  buy milk \t"));
        assert!(!todos.add("b".into(), "   "));
        assert!(!todos.add("c".into(), ""));
        assert_eq!(todos.len(), 1);
        assert_eq!(todos.get("a").map(|t| t.title.as_str()), Some("buy milk"));
    }

    #[test]
    fn add_appends_after_the_last_todo() {
        let todos = list(&["one", "two", "three"]);
        assert_eq!(titles(&todos, Filter::All), ["one", "two", "three"]);
    }

    #[test]
    fn add_never_overwrites_an_existing_id() {
        let mut todos = list(&["one"]);
        assert!(!todos.add("id0".into(), "other"));
        assert_eq!(titles(&todos, Filter::All), ["one"]);
    }

    #[test]
    fn equal_positions_are_ordered_by_id_everywhere() {
        // Two tabs added at once: both todos got position 1.
        let mut todos = Todos::default();
        for id in ["b", "a"] {
            todos.0.insert(
                id.into(),
                Todo {
                    title: id.into(),
                    completed: false,
                    order: 1,
                },
            );
        }
        assert_eq!(todos.visible_ids(Filter::All), ["a", "b"]);
    }

    #[test]
    fn filters_show_active_or_completed_todos() {
        let mut todos = list(&["one", "two", "three"]);
        todos.set_completed("id1", true);
        assert_eq!(titles(&todos, Filter::Active), ["one", "three"]);
        assert_eq!(titles(&todos, Filter::Completed), ["two"]);
        assert_eq!(todos.active_count(), 2);
        assert_eq!(todos.completed_count(), 1);
    }

    #[test]
    fn all_completed_needs_at_least_one_todo() {
        let mut todos = Todos::default();
        assert!(!todos.all_completed());
        todos = list(&["one", "two"]);
        todos.set_all_completed(true);
        assert!(todos.all_completed());
        todos.set_completed("id0", false);
        assert!(!todos.all_completed());
        todos.set_all_completed(false);
        assert_eq!(todos.active_count(), 2);
    }

    #[test]
    fn save_edit_trims_and_an_empty_edit_removes() {
        let mut todos = list(&["one", "two"]);
        assert_eq!(todos.save_edit("id0", "  uno  "), Edited::Renamed);
        assert_eq!(todos.get("id0").map(|t| t.title.as_str()), Some("uno"));
        assert_eq!(todos.save_edit("id1", "   "), Edited::Removed);
        assert_eq!(titles(&todos, Filter::All), ["uno"]);
        assert_eq!(todos.save_edit("gone", "x"), Edited::Missing);
    }

    #[test]
    fn clear_completed_keeps_active_todos() {
        let mut todos = list(&["one", "two", "three"]);
        todos.set_completed("id0", true);
        todos.set_completed("id2", true);
        todos.clear_completed();
        assert_eq!(titles(&todos, Filter::All), ["two"]);
        todos.remove("id1");
        assert!(todos.is_empty());
    }

    #[test]
    fn count_words_pluralize_like_todomvc() {
        assert_eq!(items_left(0), "items left");
        assert_eq!(items_left(1), "item left");
        assert_eq!(items_left(2), "items left");
    }

    #[test]
    fn new_ids_differ_by_time_tab_and_counter() {
        let base = new_id(0x18f, 0xab, 1);
        assert_eq!(base, "18f-ab-1");
        assert_ne!(base, new_id(0x18f, 0xab, 2));
        assert_ne!(base, new_id(0x18f, 0xac, 1));
        assert_ne!(base, new_id(0x190, 0xab, 1));
    }

    #[test]
    fn titles_of_any_content_round_trip_as_json() {
        let title = "<script>alert(1)</script> \"quotes\" \u{1F600} ".repeat(500);
        let mut todos = Todos::default();
        assert!(todos.add("x".into(), &title));
        let text = serde_json::to_string(&todos).unwrap();
        let back: Todos = serde_json::from_str(&text).unwrap();
        assert_eq!(back, todos);
        assert_eq!(back.get("x").map(|t| t.title.as_str()), Some(title.trim()));
    }
}
