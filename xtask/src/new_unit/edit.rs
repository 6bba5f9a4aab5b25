//! Textual insertions into the files that name every unit: the workspace,
//! app and keys `Cargo.toml`s, the registry, the keys list and the
//! manifest.
//!
//! Each function takes the file's text and returns the new text, or says
//! specifically why it cannot (the unit is there already, a marker the
//! insertion needs is missing). Nothing here touches the disk, so the
//! generator can check every file before writing any.

use super::manifest::{Building, Manifest, Unit};
use super::names::{Names, capitalized};

/// The root `Cargo.toml` with `unit-{name} = { path = "units/{name}" }`
/// after the last unit in `[workspace.dependencies]`.
pub fn workspace_manifest(text: &str, names: &Names) -> Result<String, String> {
    let name = &names.kebab;
    let line = format!("unit-{name} = {{ path = \"units/{name}\" }}");
    insert_dependency(text, "[workspace.dependencies]", &line, |l| {
        l.starts_with("unit-") && l.contains("{ path = \"units/")
    })
    .map_err(|e| format!("Cargo.toml: {e}"))
}

/// `app/Cargo.toml` with `unit-{name}.workspace = true` after the last unit
/// in `[dependencies]`.
pub fn app_manifest(text: &str, names: &Names) -> Result<String, String> {
    let line = format!("unit-{}.workspace = true", names.kebab);
    insert_dependency(text, "[dependencies]", &line, |l| {
        l.starts_with("unit-") && l.ends_with(".workspace = true")
    })
    .map_err(|e| format!("app/Cargo.toml: {e}"))
}

/// `keys/Cargo.toml` with `unit-{name}` (its path, without its `view`
/// feature) after the last unit in `[dependencies]`.
pub fn keys_manifest(text: &str, names: &Names) -> Result<String, String> {
    let name = &names.kebab;
    let line = format!("unit-{name} = {{ path = \"../units/{name}\", default-features = false }}");
    insert_dependency(text, "[dependencies]", &line, |l| {
        l.starts_with("unit-") && l.contains("default-features = false")
    })
    .map_err(|e| format!("keys/Cargo.toml: {e}"))
}

/// `keys/src/lib.rs` with the unit's `keys::declarations` last in `UNITS`.
pub fn keys_list(text: &str, names: &Names) -> Result<String, String> {
    let fail = |e: String| format!("keys/src/lib.rs: {e}");
    let entry = format!("    unit_{}::keys::declarations,\n", names.snake);
    let (start, end) = block(text, "pub const UNITS: &[UnitKeys] = &[").map_err(fail)?;
    if text[start..end].contains(entry.trim()) {
        return Err(fail(format!("UNITS already has unit_{}", names.snake)));
    }
    let mut out = text.to_owned();
    out.insert_str(end, &entry);
    Ok(out)
}

/// Inserts `line` in `section` after the last line `is_unit` accepts (or
/// right after the section header when it has no unit yet).
fn insert_dependency(
    text: &str,
    section: &str,
    line: &str,
    is_unit: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let crate_name = line.split(['=', '.']).next().unwrap_or(line).trim();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == section)
        .ok_or_else(|| format!("no {section} section"))?;
    let end = lines
        .iter()
        .skip(header + 1)
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |at| header + 1 + at);
    let body = &lines[header + 1..end];
    if body.iter().any(|l| {
        let l = l.trim();
        l.starts_with(crate_name) && l[crate_name.len()..].trim_start().starts_with(['=', '.'])
    }) {
        return Err(format!("{section} already has {crate_name}"));
    }
    let after = body
        .iter()
        .rposition(|l| is_unit(l.trim()))
        .map_or(header + 1, |at| header + 1 + at + 1);
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    for l in &lines[..after] {
        out.push_str(l);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    for l in &lines[after..] {
        out.push_str(l);
    }
    Ok(out)
}

/// The unit kinds listed in the registry's `KINDS`.
pub fn registry_kinds(text: &str) -> Result<Vec<String>, String> {
    let (start, end) = block(text, "pub const KINDS: &[&str] = &[")?;
    Ok(text[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_suffix(','))
        .filter_map(|l| l.strip_prefix('"')?.strip_suffix('"'))
        .map(str::to_owned)
        .collect())
}

/// The kinds named in the registry's `UNITS` table (`name: "…",`).
pub fn registry_units(text: &str) -> Result<Vec<String>, String> {
    let (start, end) = block(text, "pub const UNITS: &[UnitKind] = &[")?;
    Ok(text[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: \"")?.strip_suffix("\","))
        .map(str::to_owned)
        .collect())
}

/// `app/src/registry.rs` with the unit in `UNITS`, in `KINDS`, and its
/// render function before the tests; a `script` unit (written with a
/// JavaScript framework) also in `SCRIPT_UNITS`, rendered by `script`.
pub fn registry(text: &str, names: &Names, script: bool) -> Result<String, String> {
    let fail = |e: String| format!("app/src/registry.rs: {e}");
    let (kebab, snake, pascal) = (&names.kebab, &names.snake, &names.pascal);
    if registry_kinds(text).map_err(fail)?.contains(kebab)
        || registry_units(text).map_err(fail)?.contains(kebab)
    {
        return Err(fail(format!("kind {kebab:?} is registered already")));
    }
    if text.contains(&format!("fn {snake}(")) {
        return Err(fail(format!(
            "a function named {snake} exists already; pick another unit name"
        )));
    }
    let mut out = text.to_owned();
    // Each insertion finds its place again in the text as it is by then.
    let render = if script {
        format!("fn {snake}() -> AnyView {{\n    script(\"{kebab}\")\n}}\n\n")
    } else {
        format!(
            "fn {snake}() -> AnyView {{\n    view! {{ <unit_{snake}::{pascal} /> }}.into_any()\n}}\n\n"
        )
    };
    match out.find("\n#[cfg(test)]") {
        Some(at) => out.insert_str(at + 1, &render),
        None => {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push('\n');
            out.push_str(render.trim_end());
            out.push('\n');
        }
    }
    let (_, kinds_end) = block(&out, "pub const KINDS: &[&str] = &[").map_err(fail)?;
    out.insert_str(kinds_end, &format!("    \"{kebab}\",\n"));
    let (_, units_end) = block(&out, "pub const UNITS: &[UnitKind] = &[").map_err(fail)?;
    out.insert_str(
        units_end,
        &format!(
            "    UnitKind {{\n        name: \"{kebab}\",\n        render: {snake},\n    }},\n"
        ),
    );
    if script {
        let opening = "pub const SCRIPT_UNITS: &[(&str, &str, Declare)] = &[";
        let (_, scripts_end) = block(&out, opening).map_err(fail)?;
        out.insert_str(
            scripts_end,
            &format!(
                "    (\n        \"{kebab}\",\n        unit_{snake}::MODULE,\n        unit_{snake}::declare,\n    ),\n"
            ),
        );
    }
    Ok(out)
}

/// The byte range of the lines between `opening` and the next line that is
/// exactly `];` (the end offset is that line's start).
fn block(text: &str, opening: &str) -> Result<(usize, usize), String> {
    let open = text
        .find(opening)
        .ok_or_else(|| format!("cannot find `{opening}`"))?;
    let start = text[open..]
        .find('\n')
        .map(|at| open + at + 1)
        .ok_or_else(|| format!("`{opening}` is not followed by a line break"))?;
    let mut at = start;
    for line in text[start..].split_inclusive('\n') {
        if line.trim_end() == "];" {
            return Ok((start, at));
        }
        at += line.len();
    }
    Err(format!("`{opening}` has no closing `];` line"))
}

/// Where the unit goes in the manifest.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Into the existing building.
    Existing,
    /// A new building, appended to the apartment.
    NewBuilding,
}

/// `app/src/manifest.json` with the unit `{names.kebab}` in building
/// `building` of apartment `apartment` (the building is appended, titled
/// from its id, when missing). Refuses a unit id already in that building.
/// The result is in the manifest's canonical layout (see
/// [`Manifest::to_text`]), so only the added lines differ.
pub fn manifest(
    text: &str,
    names: &Names,
    apartment: &str,
    building: &str,
) -> Result<(String, Placement), String> {
    let fail = |e: String| format!("app/src/manifest.json: {e}");
    let mut doc = Manifest::parse(text).map_err(fail)?;
    let found = doc
        .apartments
        .iter_mut()
        .find(|a| a.id == apartment)
        .ok_or_else(|| fail(format!("no apartment {apartment:?}")))?;
    let kebab = &names.kebab;
    let unit = Unit {
        id: kebab.clone(),
        kind: kebab.clone(),
        title: names.title.clone(),
        version: "0.1.0".to_owned(),
        other: Default::default(),
    };
    let placement = match found.buildings.iter_mut().find(|b| b.id == building) {
        Some(existing) => {
            if existing.units.iter().any(|u| u.id == *kebab) {
                return Err(fail(format!(
                    "building {apartment}/{building} already has a unit {kebab:?}"
                )));
            }
            existing.units.push(unit);
            Placement::Existing
        }
        None => {
            found.buildings.push(Building {
                id: building.to_owned(),
                title: Some(capitalized(&building.replace(['-', '_'], " "))),
                active: None,
                units: vec![unit],
                other: Default::default(),
            });
            Placement::NewBuilding
        }
    };
    Ok((doc.to_text().map_err(fail)?, placement))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(name: &str) -> Names {
        Names::parse(name).unwrap()
    }

    const WORKSPACE: &str = "[workspace]\nmembers = [\"units/*\"]\n\n[workspace.dependencies]\n# Our crates.\ngaesup-state = { path = \"state\" }\nunit-counter = { path = \"units/counter\" }\nunit-cart = { path = \"units/cart\" }\n\n# Front end.\nleptos = \"0.8\"\n\n[workspace.lints.rust]\n";

    #[test]
    fn workspace_dependency_goes_after_the_last_unit() {
        let out = workspace_manifest(WORKSPACE, &names("weather")).unwrap();
        assert!(out.contains(
            "unit-cart = { path = \"units/cart\" }\nunit-weather = { path = \"units/weather\" }\n\n# Front end."
        ));
        assert_eq!(
            out.len(),
            WORKSPACE.len() + "unit-weather = { path = \"units/weather\" }\n".len()
        );
        let again = workspace_manifest(&out, &names("weather")).unwrap_err();
        assert!(again.contains("already has unit-weather"), "{again}");
        // A prefix of an existing crate is not that crate.
        assert!(workspace_manifest(WORKSPACE, &names("car")).is_ok());
    }

    #[test]
    fn app_dependency_goes_after_the_last_unit_and_missing_sections_are_errors() {
        let app = "[package]\nname = \"app\"\n\n[dependencies]\nleptos.workspace = true\nunit-cart.workspace = true\n\n[lints]\nworkspace = true\n";
        let out = app_manifest(app, &names("weather")).unwrap();
        assert!(
            out.contains("unit-cart.workspace = true\nunit-weather.workspace = true\n\n[lints]")
        );
        assert!(app_manifest(&out, &names("weather")).is_err());
        let first = app_manifest("[dependencies]\nleptos = \"1\"\n", &names("weather")).unwrap();
        assert_eq!(
            first,
            "[dependencies]\nunit-weather.workspace = true\nleptos = \"1\"\n"
        );
        let error = app_manifest("[package]\n", &names("weather")).unwrap_err();
        assert!(error.contains("no [dependencies] section"), "{error}");
    }

    #[test]
    fn keys_take_the_unit_without_its_view() {
        let manifest = "[dependencies]\ngaesup-state-core.workspace = true\nunit-cart = { path = \"../units/cart\", default-features = false }\n\n[lints]\n";
        let out = keys_manifest(manifest, &names("garden-shed")).unwrap();
        assert!(out.contains("unit-cart = { path = \"../units/cart\", default-features = false }\nunit-garden-shed = { path = \"../units/garden-shed\", default-features = false }\n\n[lints]"));
        assert!(keys_manifest(&out, &names("garden-shed")).is_err());

        let list = "pub const UNITS: &[UnitKeys] = &[\n    unit_cart::keys::declarations,\n];\n";
        let out = keys_list(list, &names("garden-shed")).unwrap();
        assert_eq!(
            out,
            "pub const UNITS: &[UnitKeys] = &[\n    unit_cart::keys::declarations,\n    unit_garden_shed::keys::declarations,\n];\n"
        );
        let again = keys_list(&out, &names("garden-shed")).unwrap_err();
        assert!(again.contains("already has unit_garden_shed"), "{again}");
        assert!(keys_list("fn main() {}\n", &names("x")).is_err());
    }

    const REGISTRY: &str = "pub const UNITS: &[UnitKind] = &[\n    UnitKind {\n        name: \"counter\",\n        render: counter,\n    },\n];\n\npub const KINDS: &[&str] = &[\n    \"counter\",\n];\n\nfn counter() -> AnyView {\n    view! { <unit_counter::Counter /> }.into_any()\n}\n\n#[cfg(test)]\nmod tests {}\n";

    #[test]
    fn registry_gets_the_entry_the_kind_and_the_renderer() {
        let out = registry(REGISTRY, &names("garden-shed"), false).unwrap();
        assert_eq!(registry_kinds(&out).unwrap(), ["counter", "garden-shed"]);
        assert_eq!(registry_units(&out).unwrap(), ["counter", "garden-shed"]);
        assert!(out.contains("        render: garden_shed,\n    },\n];"));
        assert!(out.contains(
            "fn garden_shed() -> AnyView {\n    view! { <unit_garden_shed::GardenShed /> }.into_any()\n}\n\n#[cfg(test)]"
        ));
    }

    #[test]
    fn registry_refuses_a_known_kind_or_a_taken_function() {
        let error = registry(REGISTRY, &names("counter"), false).unwrap_err();
        assert!(
            error.contains("kind \"counter\" is registered already"),
            "{error}"
        );
        let with_helper = REGISTRY.replace("#[cfg(test)]", "fn weather() {}\n\n#[cfg(test)]");
        let error = registry(&with_helper, &names("weather"), false).unwrap_err();
        assert!(error.contains("a function named weather exists"), "{error}");
        let error = registry("fn main() {}\n", &names("weather"), false).unwrap_err();
        assert!(error.contains("cannot find `pub const KINDS"), "{error}");
    }

    const MANIFEST: &str = r#"{
  "apartments": [
    {
      "id": "main",
      "buildings": [
        {
          "id": "lobby",
          "units": [
            {"id": "counter", "kind": "counter", "title": "C", "version": "1"}
          ]
        },
        {
          "id": "empty",
          "units": []
        }
      ]
    }
  ]
}"#;

    fn units_of(text: &str, building: &str) -> Vec<String> {
        let doc = Manifest::parse(text).unwrap();
        let found = doc.apartments[0]
            .buildings
            .iter()
            .find(|b| b.id == building)
            .unwrap();
        found.units.iter().map(|u| u.id.clone()).collect()
    }

    #[test]
    fn manifest_unit_goes_into_an_existing_building() {
        let (out, placement) = manifest(MANIFEST, &names("weather"), "main", "lobby").unwrap();
        assert_eq!(placement, Placement::Existing);
        assert_eq!(units_of(&out, "lobby"), ["counter", "weather"]);
        assert!(out.contains(
            "\"version\": \"1\"},\n            {\"id\": \"weather\", \"kind\": \"weather\", \"title\": \"Weather\", \"version\": \"0.1.0\"}\n          ]"
        ));
        let (out, _) = manifest(MANIFEST, &names("weather"), "main", "empty").unwrap();
        assert_eq!(units_of(&out, "empty"), ["weather"]);
    }

    #[test]
    fn manifest_building_is_created_when_missing() {
        let (out, placement) = manifest(MANIFEST, &names("weather"), "main", "roof_top").unwrap();
        assert_eq!(placement, Placement::NewBuilding);
        assert_eq!(units_of(&out, "roof_top"), ["weather"]);
        assert!(out.contains(
            "\n        {\n          \"id\": \"roof_top\",\n          \"title\": \"Roof top\","
        ));
        assert_eq!(units_of(&out, "lobby"), ["counter"]);
    }

    #[test]
    fn manifest_refuses_a_taken_unit_id_and_unknown_apartments() {
        let error = manifest(MANIFEST, &names("counter"), "main", "lobby").unwrap_err();
        assert!(
            error.contains("main/lobby already has a unit \"counter\""),
            "{error}"
        );
        let error = manifest(MANIFEST, &names("weather"), "annex", "lobby").unwrap_err();
        assert!(error.contains("no apartment \"annex\""), "{error}");
        let error = manifest("{", &names("weather"), "main", "lobby").unwrap_err();
        assert!(error.contains("invalid JSON"), "{error}");
    }
}
