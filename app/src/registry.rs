//! The unit registry: which unit crates this build can render, by kind.
//!
//! The manifest names a unit's `kind`; this table maps it to the crate's
//! root component. Adding a unit crate means one line here, one dependency
//! in `app/Cargo.toml` and an entry in the manifest. A unit written with a
//! JavaScript framework also gets a line in [`SCRIPT_UNITS`]: its bundle
//! and its keys' declarations.

use leptos::prelude::*;

use crate::script_unit::{Declare, ScriptUnit};

/// A unit kind this build can render.
pub struct UnitKind {
    /// The name the manifest uses.
    pub name: &'static str,
    /// Renders the unit's root component.
    pub render: fn() -> AnyView,
}

/// Every unit kind compiled into this build.
pub const UNITS: &[UnitKind] = &[
    UnitKind {
        name: "counter",
        render: counter,
    },
    UnitKind {
        name: "js-counter",
        render: js_counter,
    },
    UnitKind {
        name: "todo",
        render: todo,
    },
    UnitKind {
        name: "flaky",
        render: flaky,
    },
    UnitKind {
        name: "theme",
        render: theme,
    },
    UnitKind {
        name: "notes",
        render: notes,
    },
    UnitKind {
        name: "shared-note",
        render: shared_note,
    },
    UnitKind {
        name: "catalog",
        render: catalog,
    },
    UnitKind {
        name: "cart",
        render: cart,
    },
    UnitKind {
        name: "inspector",
        render: inspector,
    },
    UnitKind {
        name: "template",
        render: template,
    },
    UnitKind {
        name: "react-counter",
        render: react_counter,
    },
    UnitKind {
        name: "svelte-counter",
        render: svelte_counter,
    },
    UnitKind {
        name: "vue-counter",
        render: vue_counter,
    },
];

/// Units written with JavaScript frameworks: kind, bundle (built by
/// `js/build.mjs` from `units/<kind>/js/`) and the declaration of the keys
/// they use.
pub const SCRIPT_UNITS: &[(&str, &str, Declare)] = &[
    (
        "react-counter",
        unit_react_counter::MODULE,
        unit_react_counter::declare,
    ),
    (
        "svelte-counter",
        unit_svelte_counter::MODULE,
        unit_svelte_counter::declare,
    ),
    (
        "vue-counter",
        unit_vue_counter::MODULE,
        unit_vue_counter::declare,
    ),
];

/// The names of [`UNITS`], for manifest validation.
pub const KINDS: &[&str] = &[
    "counter",
    "js-counter",
    "todo",
    "flaky",
    "theme",
    "notes",
    "shared-note",
    "catalog",
    "cart",
    "inspector",
    "template",
    "react-counter",
    "svelte-counter",
    "vue-counter",
];

/// The renderer for `kind`, if this build has it.
pub fn find(kind: &str) -> Option<&'static UnitKind> {
    UNITS.iter().find(|unit| unit.name == kind)
}

fn counter() -> AnyView {
    view! { <unit_counter::Counter /> }.into_any()
}

fn js_counter() -> AnyView {
    view! { <unit_js_counter::JsCounter /> }.into_any()
}

fn todo() -> AnyView {
    view! { <unit_todo::TodoApp /> }.into_any()
}

fn flaky() -> AnyView {
    view! { <unit_flaky::Flaky /> }.into_any()
}

fn theme() -> AnyView {
    view! { <unit_theme::ThemeSwitcher /> }.into_any()
}

fn notes() -> AnyView {
    view! { <unit_notes::PrivateNotes /> }.into_any()
}

fn shared_note() -> AnyView {
    view! { <unit_notes::SharedNote /> }.into_any()
}

fn catalog() -> AnyView {
    view! { <unit_catalog::Catalog /> }.into_any()
}

fn cart() -> AnyView {
    view! { <unit_cart::Cart /> }.into_any()
}

fn inspector() -> AnyView {
    view! { <unit_inspector::Inspector /> }.into_any()
}

fn template() -> AnyView {
    view! { <unit_template::Template /> }.into_any()
}

/// The framework unit of `kind`, from [`SCRIPT_UNITS`].
fn script(kind: &str) -> AnyView {
    match SCRIPT_UNITS.iter().find(|(name, ..)| *name == kind) {
        Some(&(_, module, declare)) => view! { <ScriptUnit module declare /> }.into_any(),
        None => {
            let message = format!("This build has no script unit {kind:?}.");
            view! { <p role="alert" class="unit-error">{message}</p> }.into_any()
        }
    }
}

fn react_counter() -> AnyView {
    script("react-counter")
}

fn svelte_counter() -> AnyView {
    script("svelte-counter")
}

fn vue_counter() -> AnyView {
    script("vue-counter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_the_table() {
        let names: Vec<_> = UNITS.iter().map(|u| u.name).collect();
        assert_eq!(names, KINDS);
    }

    #[test]
    fn script_units_are_registered_kinds() {
        for (kind, module, _) in SCRIPT_UNITS {
            assert!(KINDS.contains(kind), "{kind}");
            assert_eq!(*module, format!("units/{kind}.js"));
        }
    }

    #[test]
    fn find_knows_registered_kinds_only() {
        assert!(find("counter").is_some());
        assert!(find("nope").is_none());
    }
}
