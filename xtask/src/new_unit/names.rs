//! The new unit's name: its grammar, and the forms it takes in each file.

/// Longest accepted unit name, in bytes (it becomes a crate name, a Rust
/// module, a component, a URL segment and part of state key names).
pub const MAX_NAME_LEN: usize = 32;

/// Names that are taken by the workspace itself, by the template, or that
/// would make an invalid or confusing Rust item once converted (the
/// registry's render function is named after the unit, so Rust keywords
/// are out; the component is named in PascalCase, so a name whose
/// PascalCase form is already imported by the template would clash).
const RESERVED: &[&str] = &[
    // The workspace's own directories and crates.
    "template",
    "app",
    "state",
    "core",
    "xtask",
    "units",
    "unit",
    "end2end",
    "style",
    "public",
    "docs",
    "target",
    "dist",
    "gaesup",
    "std",
    "leptos",
    "test",
    "tests",
    // Functions of app/src/registry.rs besides the render functions.
    "find",
    // Items the template imports or names, in PascalCase.
    "apartment",
    "building",
    "unit-address",
    "unit-context",
    "unit-state",
    "shared-key",
    "scope",
    "lifetime",
    "strategy",
    "access",
    "error-alert",
    "state-error",
    "state-setter",
    "state-manager",
    "use-shared-state-return",
    "use-container-event-return",
    "use-shared-state-options",
    "use-container-event-options",
    "result",
    "option",
    "string",
    "vec",
    "box",
    "some",
    "none",
    "ok",
    "err",
    "owner",
    "signal",
    "view",
    "any-view",
    "into-view",
    "children",
    // Rust keywords (strict, reserved, and 2024's `gen`).
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
];

/// A valid unit name and its derived forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `foo-bar`: unit id, kind, directory, key prefix.
    pub kebab: String,
    /// `foo_bar`: the lib module is `unit_foo_bar`, the render fn `foo_bar`.
    pub snake: String,
    /// `FooBar`: the root component.
    pub pascal: String,
    /// `Foo bar`: the unit's title in the manifest.
    pub title: String,
}

impl Names {
    /// Checks `name` against the grammar and the reserved list.
    pub fn parse(name: &str) -> Result<Self, String> {
        check_name(name)?;
        if RESERVED.contains(&name) {
            return Err(format!(
                "unit name {name:?} is reserved (it names a part of the workspace, a Rust keyword, or an item the template already uses); pick another"
            ));
        }
        Ok(Self {
            kebab: name.to_owned(),
            snake: name.replace('-', "_"),
            pascal: name
                .split('-')
                .map(capitalized)
                .collect::<Vec<_>>()
                .concat(),
            title: capitalized(&name.replace('-', " ")),
        })
    }
}

/// The grammar: `[a-z][a-z0-9-]*`, at most [`MAX_NAME_LEN`] bytes, no
/// trailing or double `-`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the unit name is empty; usage: cargo xtask new-unit <name>".into());
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(format!(
            "unit name {name:?} looks like a path; give a bare name such as `weather`"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "unit name {name:?} is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "unit name {name:?} must start with a lowercase ASCII letter"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(format!(
            "unit name {name:?} contains {bad:?}; only lowercase ASCII letters, digits and '-' are allowed"
        ));
    }
    if name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "unit name {name:?} has a trailing or double '-'; use single '-' between words"
        ));
    }
    Ok(())
}

/// Checks a building id: the manifest's id grammar (ASCII letters, digits,
/// `-` and `_`, at most 64 bytes), starting with a letter or digit (so an
/// option given by mistake is not taken for an id), and never a path.
pub fn check_building(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the building id is empty; usage: --building <id>".into());
    }
    if id.contains('/') || id.contains('\\') || id.contains("..") {
        return Err(format!(
            "building id {id:?} looks like a path; give a bare id"
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "building id {id:?} must start with an ASCII letter or digit"
        ));
    }
    if id.len() > 64 {
        return Err(format!("building id {id:?} is longer than 64 bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "building id {id:?} may only hold ASCII letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// `Foo` from `foo`; the rest unchanged.
pub fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_name_gives_every_form() {
        let names = Names::parse("garden-shed2").unwrap();
        assert_eq!(names.kebab, "garden-shed2");
        assert_eq!(names.snake, "garden_shed2");
        assert_eq!(names.pascal, "GardenShed2");
        assert_eq!(names.title, "Garden shed2");
        assert_eq!(Names::parse("a-1").unwrap().pascal, "A1");
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, reason) in [
            ("", "empty"),
            ("../evil", "looks like a path"),
            ("a/b", "looks like a path"),
            ("a\\b", "looks like a path"),
            ("a..b", "looks like a path"),
            ("Weather", "must start with a lowercase"),
            ("1weather", "must start with a lowercase"),
            ("-weather", "must start with a lowercase"),
            ("wea_ther", "contains '_'"),
            ("wea ther", "contains ' '"),
            ("météo", "contains 'é'"),
            ("weather-", "trailing or double"),
            ("wea--ther", "trailing or double"),
            (&"a".repeat(MAX_NAME_LEN + 1), "at most 32"),
            ("template", "reserved"),
            ("app", "reserved"),
            ("state", "reserved"),
            ("xtask", "reserved"),
            ("type", "reserved"),
            ("self", "reserved"),
            ("unit-address", "reserved"),
            ("find", "reserved"),
        ] {
            let error = Names::parse(name).unwrap_err();
            assert!(error.contains(reason), "{name:?}: {error}");
        }
        assert!(Names::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn building_ids_follow_the_manifest_grammar() {
        assert!(check_building("garage").is_ok());
        assert!(check_building("Big_Garage-2").is_ok());
        for id in [
            "",
            "..",
            "a/b",
            "a\\b",
            "a b",
            "--force",
            "_x",
            &"b".repeat(65),
        ] {
            assert!(check_building(id).is_err(), "{id:?}");
        }
    }
}
