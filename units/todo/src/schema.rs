//! The stored schema of the todo list and its v1 → v2 migration.
//!
//! **v1** was a JSON array, in list order, with no ids:
//!
//! ```json
//! [{"title": "Buy milk", "done": false}, {"title": "Walk the dog", "done": true}]
//! ```
//!
//! Without ids, two tabs could only overwrite each other's whole list.
//!
//! **v2** is an object keyed by todo id, TodoMVC's field names
//! (`title`, `completed`) plus the position in the list:
//!
//! ```json
//! {"v1-1": {"title": "Buy milk", "completed": false, "order": 1},
//!  "v1-2": {"title": "Walk the dog", "completed": true, "order": 2}}
//! ```
//!
//! The state manager runs [`v1_to_v2`] on every v1 value it loads from
//! storage or receives from a tab still running v1. A v1 value that is not
//! what v1 wrote is refused with a message naming the problem; the state
//! manager then keeps the stored text aside (quarantine) instead of
//! overwriting it, and the unit starts from an empty list.

use serde_json::{Map, Value};

use crate::model::{Todo, clean_title};

/// Migrates a v1 list (see the module docs) to v2.
///
/// Ids are `v1-1`, `v1-2`, … in list order: v1 had none, and this prefix
/// can never collide with the ids new todos get ([`crate::new_id`]).
/// Titles are trimmed, as v2 requires; a v1 todo whose title is blank is
/// dropped, since v2 cannot hold it and TodoMVC removes such a todo on
/// the next edit anyway.
///
/// # Errors
///
/// When the value is not an array of objects with a string `title` and a
/// boolean `done`.
pub fn v1_to_v2(value: Value) -> Result<Value, String> {
    let Value::Array(items) = value else {
        return Err(format!("v1 todos must be an array, found {}", kind(&value)));
    };
    let mut todos = Map::new();
    for (index, item) in items.into_iter().enumerate() {
        let position = index + 1;
        let Value::Object(mut fields) = item else {
            return Err(format!(
                "v1 todo {position} must be an object, found {}",
                kind(&item)
            ));
        };
        let title = match fields.remove("title") {
            Some(Value::String(title)) => title,
            other => {
                return Err(format!(
                    "v1 todo {position}: title must be a string, found {}",
                    other.as_ref().map_or("nothing", kind)
                ));
            }
        };
        let done = match fields.remove("done") {
            Some(Value::Bool(done)) => done,
            other => {
                return Err(format!(
                    "v1 todo {position}: done must be a boolean, found {}",
                    other.as_ref().map_or("nothing", kind)
                ));
            }
        };
        let Some(title) = clean_title(&title) else {
            continue;
        };
        let todo = Todo {
            title: title.to_owned(),
            completed: done,
            // usize fits u64 on every target Rust supports.
            order: u64::try_from(position).unwrap_or(u64::MAX),
        };
        let todo = serde_json::to_value(todo).map_err(|err| err.to_string())?;
        todos.insert(format!("v1-{position}"), todo);
    }
    Ok(Value::Object(todos))
}

/// The JSON kind of `value`, for error messages (never the value itself,
/// which may be large or private).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Filter, Todos, todos_key};
    use gaesup_state_core::{
        Lifetime, ManualClock, MemoryStorage, Replica, Scope, SharedKey, Storage, Strategy, TabId,
        UnitAddress,
    };
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    /// Reads `value` as the current schema (fails the test if it does not).
    fn as_v2(value: Value) -> Todos {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn v1_list_becomes_v2_object_in_order() {
        let v2 = v1_to_v2(json!([
            {"title": " Buy milk ", "done": false},
            {"title": "Walk the dog", "done": true},
        ]))
        .unwrap();
        assert_eq!(
            v2,
            json!({
                "v1-1": {"title": "Buy milk", "completed": false, "order": 1},
                "v1-2": {"title": "Walk the dog", "completed": true, "order": 2},
            })
        );
        let todos = as_v2(v2);
        assert_eq!(todos.visible_ids(Filter::All), ["v1-1", "v1-2"]);
    }

    #[test]
    fn empty_v1_list_is_an_empty_v2_list() {
        assert_eq!(v1_to_v2(json!([])).unwrap(), json!({}));
    }

    #[test]
    fn blank_v1_titles_are_dropped_and_positions_kept() {
        let v2 = v1_to_v2(json!([
            {"title": "  ", "done": false},
            {"title": "kept", "done": false},
        ]))
        .unwrap();
        assert_eq!(
            v2,
            json!({"v1-2": {"title": "kept", "completed": false, "order": 2}})
        );
    }

    #[test]
    fn malformed_v1_is_an_error_not_a_panic() {
        let cases = [
            (json!({"title": "x"}), "must be an array, found an object"),
            (json!("text"), "must be an array, found a string"),
            (json!([1]), "todo 1 must be an object, found a number"),
            (
                json!([{"title": "ok", "done": true}, {"done": true}]),
                "todo 2: title must be a string, found nothing",
            ),
            (
                json!([{"title": 5, "done": true}]),
                "title must be a string, found a number",
            ),
            (
                json!([{"title": "x", "done": "yes"}]),
                "done must be a boolean, found a string",
            ),
            (
                json!([{"title": "x"}]),
                "done must be a boolean, found nothing",
            ),
        ];
        for (input, expected) in cases {
            let err = v1_to_v2(input.clone()).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    /// One todo as v1 stored it.
    #[derive(Serialize, Deserialize)]
    struct V1Todo {
        title: String,
        done: bool,
    }

    /// The key as v1 declared it: same name, scope, lifetime and strategy,
    /// schema 1, an array of `V1Todo`.
    fn v1_key() -> SharedKey<Vec<V1Todo>> {
        SharedKey::builder("todos")
            .scope(Scope::Private)
            .lifetime(Lifetime::Persistent)
            .strategy(Strategy::Merge)
            .build()
            .unwrap()
    }

    fn unit() -> UnitAddress {
        "main/desk/todo".parse().unwrap()
    }

    /// The localStorage entry the Playwright test plants: exactly what the
    /// state manager itself stored for the v1 key after one write.
    /// `end2end/tests/support/todo.ts` holds the same text (checked below).
    const PLANTED_KEY: &str = "gaesup/state/private/main/desk/todo/todos";
    const PLANTED_V1: &str = concat!(
        r#"{"schema":1,"state":{"strategy":"merge","data":{"base":{"#,
        r#""stamp":{"wall_ms":1700000000000,"counter":0,"tab":"00000000000000a1"},"#,
        r#""id":{"tab":"00000000000000a1","seq":1},"writer":"main/desk/todo","#,
        r#""value":[{"done":false,"title":"Buy milk"},"#,
        r#"{"done":true,"title":"Walk the dog"},"#,
        r#"{"done":false,"title":"<b>not bold</b>"}]}}}}"#,
    );

    fn planted_storage() -> MemoryStorage {
        let mut storage = MemoryStorage::new();
        storage.set(PLANTED_KEY, PLANTED_V1).unwrap();
        storage
    }

    #[test]
    fn planted_v1_entry_is_what_the_core_stores_for_schema_1() {
        let mut v1 = Replica::new(TabId::new(0xa1), ManualClock::new(1_700_000_000_000));
        let key = v1_key();
        v1.declare(&key).unwrap();
        let list = [
            ("Buy milk", false),
            ("Walk the dog", true),
            ("<b>not bold</b>", false),
        ]
        .into_iter()
        .map(|(title, done)| V1Todo {
            title: title.into(),
            done,
        })
        .collect();
        v1.set(&unit(), &key, list).unwrap();
        let mut storage = MemoryStorage::new();
        let report = v1.persist(Lifetime::Persistent, &mut storage);
        assert!(report.failed.is_empty(), "{:?}", report.failed);

        let full = key.full_key(&unit());
        assert_eq!(Replica::storage_key(&full), PLANTED_KEY);
        assert_eq!(
            storage.get(PLANTED_KEY).unwrap().as_deref(),
            Some(PLANTED_V1)
        );
    }

    #[test]
    fn end2end_plants_the_same_v1_entry() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../end2end/tests/support/todo.ts"
        );
        let support = std::fs::read_to_string(path).unwrap();
        assert!(
            support.contains(&format!("'{PLANTED_KEY}'")),
            "{path} must plant under {PLANTED_KEY}"
        );
        assert!(
            support.contains(&format!("'{PLANTED_V1}'")),
            "{path} must plant exactly:\n{PLANTED_V1}"
        );
    }

    #[test]
    fn loading_planted_v1_data_migrates_it_to_v2() {
        let mut store = Replica::new(TabId::new(2), ManualClock::new(1_800_000_000_000));
        let key = todos_key().unwrap();
        store.declare(&key).unwrap();
        let mut storage = planted_storage();
        let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
        assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
        let todos = store.get(&unit(), &key).unwrap();
        let shown: Vec<_> = todos
            .visible_ids(Filter::All)
            .iter()
            .filter_map(|id| todos.get(id).map(|t| (t.title.clone(), t.completed)))
            .collect();
        assert_eq!(
            shown,
            [
                ("Buy milk".to_owned(), false),
                ("Walk the dog".to_owned(), true),
                ("<b>not bold</b>".to_owned(), false),
            ]
        );
    }

    #[test]
    fn malformed_stored_v1_is_quarantined_not_fatal() {
        let mut store = Replica::new(TabId::new(2), ManualClock::new(1_800_000_000_000));
        let key = todos_key().unwrap();
        store.declare(&key).unwrap();
        let mut storage = MemoryStorage::new();
        let broken = PLANTED_V1.replace(r#""done":true"#, r#""done":"yes""#);
        storage.set(PLANTED_KEY, &broken).unwrap();
        let report = store.load(Lifetime::Persistent, &mut storage).unwrap();
        assert_eq!(report.quarantined.len(), 1);
        assert!(
            report.quarantined[0]
                .error
                .to_string()
                .contains("done must be a boolean"),
            "{}",
            report.quarantined[0].error
        );
        assert!(store.get(&unit(), &key).unwrap().is_empty());
        // The original entry is kept as it was.
        assert_eq!(storage.get(PLANTED_KEY).unwrap(), Some(broken));
    }
}
