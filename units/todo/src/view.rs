//! The TodoMVC view: the specification's markup and classes, wired to the
//! state manager and the router.

use gaesup_state::core::Clock;
use gaesup_state::prelude::*;
use gaesup_state::{StateMeta, SystemClock, UnitAddress, use_unit};
use leptos::ev::{Event, FocusEvent, KeyboardEvent};
use leptos::html::Input;
use leptos::prelude::*;
use leptos_router::hooks::use_location;
use leptos_router::location::BrowserUrl;

use crate::filter::{Filter, deployment_base, is_own_address};
use crate::model::{Todos, clean_title, items_left, new_id};
use crate::todos_key;

/// A TodoMVC: add, edit, toggle, remove and filter todos. Must be inside
/// a `<Unit>` inside a `<Router>`.
///
/// Failures render as text inside the unit, never as a panic: a missing
/// container or router, an invalid declaration, and every write the state
/// manager refuses.
#[component]
pub fn TodoApp() -> impl IntoView {
    let Some(unit) = use_unit() else {
        return alert("The todo unit must be inside a <Unit>.".to_owned());
    };
    // The filters are routes; without a router `use_location` would panic.
    if use_context::<BrowserUrl>().is_none() {
        return alert("The todo unit must be inside a <Router>.".to_owned());
    }
    let key = match todos_key() {
        Ok(key) => key,
        Err(err) => return alert(format!("todos unavailable: {err}")),
    };
    let todos = use_shared_state(&key);
    let (list, set, meta) = (todos.value, todos.set, todos.meta);

    let address = unit.address.clone();
    // The unit's own address as the browser shows it: filters extend it.
    let own = format!(
        "{}{}",
        deployment_base(base_href().as_deref()),
        unit_path(&address)
    );
    let dom = dom_safe(&format!(
        "todo-{}-{}-{}",
        address.apartment(),
        address.building(),
        address.unit()
    ));
    let location = use_location();
    let filter = Memo::new({
        let own = own.clone();
        move |_| location.pathname.with(|path| Filter::from_path(&own, path))
    });
    // Autofocus (TodoMVC's `autofocus`) only where the unit is shown on its
    // own: on the apartment page it would steal the focus from the page.
    let focused = location
        .pathname
        .with_untracked(|path| is_own_address(&own, path));

    let editing = RwSignal::new(None::<String>);
    let visible = Memo::new(move |_| list.with(|todos| todos.visible_ids(filter.get())));
    let is_empty = Memo::new(move |_| list.with(Todos::is_empty));
    let all_completed = Memo::new(move |_| list.with(Todos::all_completed));
    let toggle_all_id = format!("{dom}-toggle-all");
    // Copy handles: the list's markup is rebuilt each time it reappears.
    let (dom, own, toggle_all_id) = (
        StoredValue::new(dom),
        StoredValue::new(own),
        StoredValue::new(toggle_all_id),
    );

    view! {
        <section class="todoapp">
            <header class="header">
                <NewTodo dom=dom.get_value() focused set tab=tab_of(&unit.manager) />
            </header>
            <Show when=move || !is_empty.get()>
                <section class="main">
                    <div class="toggle-all-container">
                        <input
                            id=toggle_all_id.get_value()
                            class="toggle-all"
                            type="checkbox"
                            prop:checked=all_completed
                            on:change=move |ev: Event| {
                                let completed = event_target_checked(&ev);
                                set.update(|todos| todos.set_all_completed(completed));
                            }
                        />
                        <label for=toggle_all_id.get_value()>"Mark all as complete"</label>
                    </div>
                    <ul class="todo-list">
                        <For each=move || visible.get() key=|id| id.clone() let(id)>
                            <TodoItem id dom=dom.get_value() list set editing />
                        </For>
                    </ul>
                </section>
                <Footer list set filter own=own.get_value() />
            </Show>
            <ErrorLine meta />
        </section>
    }
    .into_any()
}

/// The new-todo input: Enter adds the trimmed text, blank text adds
/// nothing, and the text stays if the write is refused.
#[component]
fn NewTodo(
    /// Prefix of DOM ids, unique per unit on the page.
    dom: String,
    /// Whether to take the focus when mounted.
    focused: bool,
    /// Writes the list.
    set: StateSetter<Todos>,
    /// This tab's id, part of every new todo's id.
    tab: u64,
) -> impl IntoView {
    let input = NodeRef::<Input>::new();
    let draft = RwSignal::new(String::new());
    // Counts adds in this tab, so two adds in one millisecond differ.
    let added = StoredValue::new(0_u64);
    if focused {
        Effect::new(move |_| {
            if let Some(input) = input.get() {
                let _ = input.focus();
            }
        });
    }
    let on_keydown = move |ev: KeyboardEvent| {
        // Enter that confirms an IME composition (Korean, Japanese, …) is
        // not a submit.
        if ev.key() != "Enter" || ev.is_composing() {
            return;
        }
        let text = draft.get_untracked();
        if clean_title(&text).is_none() {
            return;
        }
        added.update_value(|n| *n += 1);
        let id = new_id(SystemClock.now_ms(), tab, added.get_value());
        let mut stored = false;
        let written = set.try_update(|todos| stored = todos.add(id, &text));
        if written.is_ok() && stored {
            draft.set(String::new());
        }
    };
    let input_id = format!("{dom}-new");
    view! {
        <label class="visually-hidden" for=input_id.clone()>"New todo"</label>
        <input
            id=input_id
            class="new-todo"
            placeholder="What needs to be done?"
            autocomplete="off"
            node_ref=input
            bind:value=draft
            on:keydown=on_keydown
        />
    }
}

/// One todo: toggle, title (double-click to edit) and destroy button; while
/// editing, the edit input (Enter or blur saves, Escape cancels).
#[component]
fn TodoItem(
    /// The todo's id.
    id: String,
    /// Prefix of DOM ids, unique per unit on the page.
    dom: String,
    /// The whole list.
    list: Signal<Todos>,
    /// Writes the list.
    set: StateSetter<Todos>,
    /// Which todo is being edited, if any (one at a time).
    editing: RwSignal<Option<String>>,
) -> impl IntoView {
    // The row is keyed by id and reads its todo reactively, so a toggle or
    // an edit (here or in another tab) updates the row in place and the
    // focus stays on the control the user is using.
    let todo = Memo::new({
        let id = id.clone();
        move |_| list.with(|todos| todos.get(&id).cloned())
    });
    let completed = move || todo.with(|todo| todo.as_ref().is_some_and(|t| t.completed));
    let title = move || todo.with(|todo| todo.as_ref().map(|t| t.title.clone()));
    let is_editing = Memo::new({
        let id = id.clone();
        move |_| editing.with(|e| e.as_deref() == Some(id.as_str()))
    });
    let label_id = format!("{dom}-{}-title", dom_safe(&id));

    let toggle = {
        let id = id.clone();
        move |ev: Event| {
            let done = event_target_checked(&ev);
            set.update(|todos| todos.set_completed(&id, done));
        }
    };
    let destroy = {
        let id = id.clone();
        move |_| set.update(|todos| todos.remove(&id))
    };
    let start_editing = {
        let id = id.clone();
        move |_| editing.set(Some(id.clone()))
    };

    view! {
        <li class:completed=completed class:editing=is_editing>
            <div class="view">
                <input
                    class="toggle"
                    type="checkbox"
                    prop:checked=completed
                    aria-labelledby=label_id.clone()
                    on:change=toggle
                />
                <label id=label_id.clone() on:dblclick=start_editing>
                    {title}
                </label>
                <button
                    class="destroy"
                    type="button"
                    aria-label="Delete"
                    aria-describedby=label_id
                    on:click=destroy
                ></button>
            </div>
            <Show when=move || is_editing.get()>
                <EditTodo id=id.clone() initial=title().unwrap_or_default() set editing />
            </Show>
        </li>
    }
}

/// The edit input of one todo, focused when it appears.
#[component]
fn EditTodo(
    /// The todo's id.
    id: String,
    /// The title when editing started.
    initial: String,
    /// Writes the list.
    set: StateSetter<Todos>,
    /// Which todo is being edited.
    editing: RwSignal<Option<String>>,
) -> impl IntoView {
    let input = NodeRef::<Input>::new();
    Effect::new(move |_| {
        if let Some(input) = input.get() {
            let _ = input.focus();
        }
    });
    // Leaving edit mode first means the blur that follows (the input is
    // removed) finds nothing to save: Enter saves once, Escape saves never.
    let finish = move |id: &str| {
        let still = editing
            .try_with_untracked(|e| e.as_deref() == Some(id))
            .unwrap_or(false);
        if still {
            editing.set(None);
        }
        still
    };
    let on_keydown = {
        let id = id.clone();
        move |ev: KeyboardEvent| match ev.key().as_str() {
            "Enter" if !ev.is_composing() => {
                let text = event_target_value(&ev);
                if finish(&id) {
                    set.update(|todos| {
                        let _ = todos.save_edit(&id, &text);
                    });
                }
            }
            "Escape" => {
                finish(&id);
            }
            _ => {}
        }
    };
    let on_blur = move |ev: FocusEvent| {
        let text = event_target_value(&ev);
        if finish(&id) {
            set.update(|todos| {
                let _ = todos.save_edit(&id, &text);
            });
        }
    };
    view! {
        <input
            class="edit"
            aria-label="Edit"
            node_ref=input
            prop:value=initial
            on:keydown=on_keydown
            on:blur=on_blur
        />
    }
}

/// Count, filters and "Clear completed".
#[component]
fn Footer(
    /// The whole list.
    list: Signal<Todos>,
    /// Writes the list.
    set: StateSetter<Todos>,
    /// The current filter.
    filter: Memo<Filter>,
    /// The unit's own address, which the filter routes extend.
    own: String,
) -> impl IntoView {
    let active = Memo::new(move |_| list.with(Todos::active_count));
    let completed = Memo::new(move |_| list.with(Todos::completed_count));
    // Plain links: the router handles every same-origin <a> click as a
    // navigation (a history entry), and the `selected` class and
    // aria-current follow this unit's own reading of the path, the same
    // one that filters the list.
    let links = Filter::ALL
        .into_iter()
        .map(|link| {
            let selected = move || filter.get() == link;
            view! {
                <li>
                    <a
                        href=link.href(&own)
                        class:selected=selected
                        aria-current=move || selected().then_some("page")
                    >
                        {link.label()}
                    </a>
                </li>
            }
        })
        .collect_view();
    view! {
        <footer class="footer">
            <span class="todo-count">
                <strong>{active}</strong>
                " "
                {move || items_left(active.get())}
            </span>
            <ul class="filters">{links}</ul>
            <Show when=move || { completed.get() > 0 }>
                <button
                    class="clear-completed"
                    type="button"
                    on:click=move |_| set.update(Todos::clear_completed)
                >
                    "Clear completed"
                </button>
            </Show>
        </footer>
    }
}

/// The last refused read or write, as text.
#[component]
fn ErrorLine(
    /// The key's metadata.
    meta: StateMeta,
) -> impl IntoView {
    move || {
        meta.error
            .get()
            .map(|error| view! { <p role="alert" class="unit-error">{error.to_string()}</p> })
    }
}

/// The unit's address as the shell routes it (DESIGN.md §1), without the
/// deployment base.
fn unit_path(address: &UnitAddress) -> String {
    format!(
        "/apartment/{}/building/{}/unit/{}",
        address.apartment(),
        address.building(),
        address.unit()
    )
}

/// The `href` of the page's `<base>`, which Trunk writes from its public
/// URL (natively there is no page).
#[cfg(target_arch = "wasm32")]
fn base_href() -> Option<String> {
    document()
        .query_selector("base[href]")
        .ok()
        .flatten()
        .and_then(|base| base.get_attribute("href"))
}

#[cfg(not(target_arch = "wasm32"))]
fn base_href() -> Option<String> {
    None
}

/// `text` as a fragment of a DOM id: ids and todo ids may hold characters
/// an id reference cannot (a space splits `aria-labelledby`), so anything
/// but ASCII letters, digits, `-` and `_` becomes `_` and its hex code.
/// Distinct inputs stay distinct, because `_` itself is escaped too.
fn dom_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        } else {
            out.push_str(&format!("_{:x}_", u32::from(c)));
        }
    }
    out
}

/// This tab's id as a number (0 if the manager is gone, which only
/// happens while the page is being torn down).
fn tab_of(manager: &gaesup_state::StateManager) -> u64 {
    manager.tab().map_or(0, |tab| tab.get())
}

fn alert(message: String) -> AnyView {
    view! { <p role="alert" class="unit-error">{message}</p> }.into_any()
}

#[cfg(test)]
mod tests {
    use super::dom_safe;

    #[test]
    fn dom_ids_keep_safe_text_and_escape_the_rest() {
        assert_eq!(dom_safe("todo-main-desk-1a-2b-3"), "todo-main-desk-1a-2b-3");
        assert_eq!(dom_safe("a b"), "a_20_b");
        assert_eq!(dom_safe("a_b"), "a_5f_b");
        assert_ne!(dom_safe("a b"), dom_safe("a_20_b"));
    }
}
