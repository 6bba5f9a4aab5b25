//! `cargo xtask new-unit <name> [--building <id>] [--framework <name>]`: a
//! new unit from the template, registered in the app, in one command.
//!
//! With `--framework react|svelte|vue` the unit is written with that
//! framework instead: it is copied from the app's own unit of it
//! (`units/<framework>-counter`, see [`framework`]) and registered as a
//! script unit; the rest goes as below.
//!
//! It copies `units/template` to `units/<name>` and
//! `end2end/tests/template.spec.ts` to `end2end/tests/<name>.spec.ts`,
//! renaming the crate (`unit-<name>`), the lib (`unit_<name>`), the
//! component (PascalCase), key and event names, ids and text; then it adds
//! the unit to the workspace dependencies, `app/Cargo.toml`,
//! `app/src/registry.rs` and `app/src/manifest.json` (building `<id>` of
//! the `main` apartment, created when missing), and its keys to
//! `gaesup-keys` (`keys/Cargo.toml`, `keys/src/lib.rs`), so the relay
//! applies its ops with the same rules as the tabs.
//!
//! Everything is checked and computed in memory first; a bad name or a
//! taken one changes nothing. If a write fails midway, what was written is
//! undone.

pub mod check;
mod edit;
pub mod framework;
pub mod manifest;
mod names;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use edit::Placement;
pub use framework::Framework;
pub use names::Names;

/// The building a unit goes to without `--building`: the template's own.
pub const DEFAULT_BUILDING: &str = "garage";
/// The apartment new units are mounted in.
pub const APARTMENT: &str = "main";

const TEMPLATE_DIR: &str = "units/template";
const TEMPLATE_SPEC: &str = "end2end/tests/template.spec.ts";
/// The spec's line naming the building, rewritten for the new unit.
const SPEC_BUILDING_LINE: &str = "const BUILDING = 'garage';";
/// The spec's line naming the unit's title, rewritten to the manifest title.
const SPEC_TITLE_LINE: &str = "const TITLE = 'Template';";

/// `cargo xtask new-unit …` from the command line (arguments after
/// `new-unit`).
pub fn command(args: &[String]) -> Result<(), String> {
    let (name, building, framework) = parse_args(args)?;
    let root = crate::cmd::root();
    let done = match framework {
        Some(framework) => generate_framework(&root, &name, &building, framework)?,
        None => generate(&root, &name, &building)?,
    };
    print!("{}", done.report());
    Ok(())
}

type Args = (String, String, Option<Framework>);

fn parse_args(args: &[String]) -> Result<Args, String> {
    const USAGE: &str =
        "usage: cargo xtask new-unit <name> [--building <id>] [--framework react|svelte|vue]";
    let mut name = None;
    let mut building = None;
    let mut framework = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let chosen = if arg == "--framework" {
            Some(
                rest.next()
                    .ok_or_else(|| format!("--framework needs a name\n{USAGE}"))?
                    .as_str(),
            )
        } else {
            arg.strip_prefix("--framework=")
        };
        if let Some(chosen) = chosen {
            if framework.is_some() {
                return Err(format!("--framework given twice\n{USAGE}"));
            }
            framework = Some(framework::find(chosen).map_err(|e| format!("{e}\n{USAGE}"))?);
            continue;
        }
        let value = if arg == "--building" {
            Some(
                rest.next()
                    .ok_or_else(|| format!("--building needs an id\n{USAGE}"))?
                    .clone(),
            )
        } else {
            arg.strip_prefix("--building=").map(str::to_owned)
        };
        match value {
            Some(_) if building.is_some() => {
                return Err(format!("--building given twice\n{USAGE}"));
            }
            Some(id) => building = Some(id),
            None if arg.starts_with('-') && arg.len() > 1 => {
                return Err(format!("unknown option {arg:?}\n{USAGE}"));
            }
            None if name.is_some() => {
                return Err(format!("more than one name given ({arg:?})\n{USAGE}"));
            }
            None => name = Some(arg.clone()),
        }
    }
    let name = name.ok_or_else(|| format!("the unit name is missing\n{USAGE}"))?;
    Ok((
        name,
        building.unwrap_or_else(|| DEFAULT_BUILDING.to_owned()),
        framework,
    ))
}

/// What [`generate`] did.
#[derive(Debug)]
pub struct Generated {
    /// The name's forms.
    pub names: Names,
    /// The building the unit was mounted in.
    pub building: String,
    /// Whether that building was created.
    pub placement: Placement,
    /// Files created, relative to the root.
    pub created: Vec<PathBuf>,
    /// Files edited, relative to the root.
    pub edited: Vec<PathBuf>,
    /// The framework it is written with (`None`: Leptos).
    pub framework: Option<Framework>,
}

impl Generated {
    /// The text printed after a successful run: what changed, where the
    /// unit is, what to edit next.
    pub fn report(&self) -> String {
        let Names {
            kebab,
            snake,
            pascal,
            ..
        } = &self.names;
        let building = &self.building;
        let mut out =
            format!("new unit `{kebab}` (crate unit-{kebab}, component unit_{snake}::{pascal})\n");
        out.push_str("created:\n");
        for file in &self.created {
            out.push_str(&format!("  {}\n", file.display()));
        }
        out.push_str("edited:\n");
        for file in &self.edited {
            out.push_str(&format!("  {}\n", file.display()));
        }
        if self.placement == Placement::NewBuilding {
            out.push_str(&format!(
                "building `{building}` did not exist in apartment `{APARTMENT}`: it was added\n"
            ));
        }
        out.push_str(&format!(
            "\nsee it: cargo xtask dev, then http://127.0.0.1:8080/apartment/{APARTMENT}/building/{building}/unit/{kebab}\n\nedit next:\n"
        ));
        let spec = (
            format!("end2end/tests/{kebab}.spec.ts"),
            "the Playwright spec (by role and label)",
        );
        let manifest = (
            "app/src/manifest.json".to_owned(),
            "the unit's title and version",
        );
        let next = match self.framework {
            None => vec![
                (
                    format!("units/{kebab}/src/keys.rs"),
                    "the key: scope, lifetime, strategy, schema",
                ),
                (
                    format!("units/{kebab}/src/view.rs"),
                    "the view and its hooks",
                ),
                (
                    format!("units/{kebab}/src/lib.rs"),
                    "the crate docs (start from the problem), shared logic",
                ),
                (
                    format!("units/{kebab}/tests/native.rs"),
                    "the behaviour tests under a Leptos owner",
                ),
                spec,
                (format!("units/{kebab}/README.md"), "what each file holds"),
                manifest,
            ],
            Some(framework) => vec![
                (
                    format!("units/{kebab}/js/"),
                    if framework.name == "react" {
                        "the unit (main.tsx mounts it; bindings: gaesup-bindings)"
                    } else {
                        "the unit (main mounts it; bindings: gaesup-bindings)"
                    },
                ),
                (
                    format!("units/{kebab}/src/lib.rs"),
                    "the keys its JavaScript uses, declared typed",
                ),
                spec,
                manifest,
            ],
        };
        let width = next.iter().map(|(path, _)| path.len()).max().unwrap_or(0);
        for (path, what) in &next {
            out.push_str(&format!("  {path:<width$}  {what}\n"));
        }
        out.push_str(&format!(
            "guide: units/README.md; check: cargo test -p unit-{kebab}\n"
        ));
        out
    }
}

/// Creates the unit `name` in `building` of the main apartment under
/// `root` (a workspace checkout). Changes nothing unless every check
/// passes; undoes its writes if one fails.
pub fn generate(root: &Path, name: &str, building: &str) -> Result<Generated, String> {
    generate_with(root, name, building, None, &mut |path, text| {
        fs::write(path, text)
    })
}

/// [`generate`] for a unit written with `framework`.
pub fn generate_framework(
    root: &Path,
    name: &str,
    building: &str,
    framework: Framework,
) -> Result<Generated, String> {
    generate_with(root, name, building, Some(framework), &mut |path, text| {
        fs::write(path, text)
    })
}

/// [`generate`] writing files through `write` (tests inject failures).
fn generate_with(
    root: &Path,
    name: &str,
    building: &str,
    framework: Option<Framework>,
    write: &mut dyn FnMut(&Path, &str) -> io::Result<()>,
) -> Result<Generated, String> {
    let names = Names::parse(name)?;
    names::check_building(building)?;
    let plan = plan(root, &names, building, framework)?;
    let created: Vec<PathBuf> = plan.creates.iter().map(|(p, _)| p.clone()).collect();
    let edited: Vec<PathBuf> = plan.edits.iter().map(|(p, _, _)| p.clone()).collect();
    apply(root, &plan, write)?;
    Ok(Generated {
        names,
        building: building.to_owned(),
        placement: plan.placement,
        created,
        edited,
        framework,
    })
}

/// Every file to create and every edit, computed before anything is
/// written. Paths are relative to the root.
struct Plan {
    /// The unit's new directory.
    unit_dir: PathBuf,
    /// New files and their text.
    creates: Vec<(PathBuf, String)>,
    /// Edited files: path, new text, old text.
    edits: Vec<(PathBuf, String, String)>,
    placement: Placement,
}

fn read(root: &Path, path: &str) -> Result<String, String> {
    fs::read_to_string(root.join(path)).map_err(|e| format!("{path}: {e}"))
}

fn plan(
    root: &Path,
    names: &Names,
    building: &str,
    framework: Option<Framework>,
) -> Result<Plan, String> {
    let kebab = &names.kebab;
    let unit_dir = PathBuf::from(format!("units/{kebab}"));
    if root.join(&unit_dir).symlink_metadata().is_ok() {
        return Err(format!(
            "{} exists already: a unit named {kebab:?} is there; pick another name",
            unit_dir.display()
        ));
    }
    let spec = PathBuf::from(format!("end2end/tests/{kebab}.spec.ts"));
    if root.join(&spec).symlink_metadata().is_ok() {
        return Err(format!(
            "{} exists already; pick another name",
            spec.display()
        ));
    }

    let mut creates = Vec::new();
    let (source_dir, source_names) = match framework {
        None => (TEMPLATE_DIR.to_owned(), template_names()),
        Some(framework) => (
            format!("units/{}", framework.unit),
            framework.source_names(),
        ),
    };
    for file in template_files(&root.join(&source_dir))? {
        let text = fs::read_to_string(root.join(&source_dir).join(&file))
            .map_err(|e| format!("{source_dir}/{}: {e}", file.display()))?;
        // Names in paths too: `js/ReactCounter.tsx` becomes `js/ToolRack.tsx`.
        let path = rename_from(&file.to_string_lossy(), &source_names, names);
        creates.push((
            unit_dir.join(path),
            rename_from(&text, &source_names, names),
        ));
    }
    let spec_text = match framework {
        None => spec_for(&read(root, TEMPLATE_SPEC)?, names, building)?,
        Some(framework) => framework.spec(names, building),
    };
    creates.push((spec, spec_text));

    let mut edits = Vec::new();
    let cargo = read(root, "Cargo.toml")?;
    edits.push((
        "Cargo.toml".into(),
        edit::workspace_manifest(&cargo, names)?,
        cargo,
    ));
    let app = read(root, "app/Cargo.toml")?;
    edits.push((
        "app/Cargo.toml".into(),
        edit::app_manifest(&app, names)?,
        app,
    ));
    // A Leptos unit declares its keys in its own `keys` module; a unit
    // written with a framework uses keys other units declare already.
    if framework.is_none() {
        let keys = read(root, "keys/Cargo.toml")?;
        edits.push((
            "keys/Cargo.toml".into(),
            edit::keys_manifest(&keys, names)?,
            keys,
        ));
        let list = read(root, "keys/src/lib.rs")?;
        edits.push((
            "keys/src/lib.rs".into(),
            edit::keys_list(&list, names)?,
            list,
        ));
    }
    let registry = read(root, "app/src/registry.rs")?;
    edits.push((
        "app/src/registry.rs".into(),
        edit::registry(&registry, names, framework.is_some())?,
        registry,
    ));
    let manifest = read(root, "app/src/manifest.json")?;
    let (new_manifest, placement) = edit::manifest(&manifest, names, APARTMENT, building)?;
    edits.push(("app/src/manifest.json".into(), new_manifest, manifest));
    Ok(Plan {
        unit_dir,
        creates,
        edits,
        placement,
    })
}

/// The template's spec for the new unit: renamed, then pointed at its
/// building and its manifest title (after renaming, so neither is renamed).
fn spec_for(template: &str, names: &Names, building: &str) -> Result<String, String> {
    let renamed = rename(template, names);
    let title_line = format!("const TITLE = '{}';", names.pascal);
    for line in [SPEC_BUILDING_LINE, &title_line] {
        if !renamed.contains(line) {
            return Err(format!(
                "{TEMPLATE_SPEC} has no line `{SPEC_BUILDING_LINE}` or `{SPEC_TITLE_LINE}` to rewrite for the new unit"
            ));
        }
    }
    Ok(renamed
        .replace(
            SPEC_BUILDING_LINE,
            &format!("const BUILDING = '{building}';"),
        )
        .replace(&title_line, &format!("const TITLE = '{}';", names.title)))
}

/// The template's files, relative to its directory, sorted; build output
/// (`target/`) is skipped.
fn template_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                if entry.file_name() != "target" {
                    walk(&path, base, out)?;
                }
            } else if kind.is_file() {
                let relative = path.strip_prefix(base).map_err(|e| e.to_string())?;
                out.push(relative.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    if files.is_empty() {
        return Err(format!("{} has no files to copy", dir.display()));
    }
    files.sort();
    Ok(files)
}

/// The template's text for the new unit: crate, lib, component, then every
/// other `template` (ids, key and event names, paths, text). One pass, so
/// a name that itself contains "template" is not renamed twice.
pub fn rename(text: &str, names: &Names) -> String {
    rename_from(text, &template_names(), names)
}

/// The template's own names, as [`rename_from`] takes them.
fn template_names() -> Names {
    Names {
        kebab: "template".into(),
        snake: "template".into(),
        pascal: "Template".into(),
        title: "Template".into(),
    }
}

/// A copied unit's text for the new unit: every form of the source's name
/// (crate, lib, component, then ids and paths) becomes the new one's.
fn rename_from(text: &str, from: &Names, names: &Names) -> String {
    let rules = [
        (
            format!("unit-{}", from.kebab),
            format!("unit-{}", names.kebab),
        ),
        (
            format!("unit_{}", from.snake),
            format!("unit_{}", names.snake),
        ),
        (from.pascal.clone(), names.pascal.clone()),
        (from.kebab.clone(), names.kebab.clone()),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match rules
            .iter()
            .find(|(from, _)| rest.starts_with(from.as_str()))
        {
            Some((from, to)) => {
                out.push_str(to);
                rest = &rest[from.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Writes the plan; on the first failure undoes every earlier write
/// (edited files get their old text back, created files and the unit's
/// directory are removed) and reports both.
fn apply(
    root: &Path,
    plan: &Plan,
    write: &mut dyn FnMut(&Path, &str) -> io::Result<()>,
) -> Result<(), String> {
    let mut created: Vec<PathBuf> = Vec::new();
    let mut edited: Vec<(PathBuf, &str)> = Vec::new();
    let mut made_dir = false;
    let result = (|| -> Result<(), String> {
        let unit_dir = root.join(&plan.unit_dir);
        fs::create_dir(&unit_dir).map_err(|e| format!("{}: {e}", unit_dir.display()))?;
        made_dir = true;
        for (path, text) in &plan.creates {
            let full = root.join(path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            // Recorded first: a failed write may have left part of the file.
            created.push(full.clone());
            write(&full, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        for (path, new, old) in &plan.edits {
            let full = root.join(path);
            // Recorded first: a failed write may have truncated the file.
            edited.push((full.clone(), old.as_str()));
            write(&full, new).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    })();
    let Err(error) = result else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for (path, old) in edited.iter().rev() {
        if let Err(e) = fs::write(path, old) {
            problems.push(format!("could not restore {}: {e}", path.display()));
        }
    }
    for path in created.iter().rev() {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            problems.push(format!("could not remove {}: {e}", path.display()));
        }
    }
    if made_dir && let Err(e) = fs::remove_dir_all(root.join(&plan.unit_dir)) {
        problems.push(format!("could not remove {}: {e}", plan.unit_dir.display()));
    }
    if problems.is_empty() {
        Err(format!(
            "{error}; nothing was changed (the partial writes were undone)"
        ))
    } else {
        Err(format!(
            "{error}; undoing the partial writes also failed: {}",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch workspace with the real files the generator reads and
    /// edits, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xtask-new-unit-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            for file in [
                "Cargo.toml",
                "app/Cargo.toml",
                "app/src/registry.rs",
                "app/src/manifest.json",
                "keys/Cargo.toml",
                "keys/src/lib.rs",
                TEMPLATE_SPEC,
                "units/counter/Cargo.toml",
            ] {
                copy(&repo.join(file), &dir.join(file));
            }
            for source in [TEMPLATE_DIR, "units/react-counter"] {
                for file in template_files(&repo.join(source)).unwrap() {
                    copy(
                        &repo.join(source).join(&file),
                        &dir.join(source).join(&file),
                    );
                }
            }
            Self(dir)
        }

        fn read(&self, path: &str) -> String {
            fs::read_to_string(self.0.join(path)).unwrap()
        }

        /// Every file under the scratch root and its bytes.
        fn tree(&self) -> Tree {
            fn walk(dir: &Path, out: &mut Tree) {
                for entry in fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else {
                        out.insert(path.clone(), fs::read(&path).unwrap());
                    }
                }
            }
            let mut out = BTreeMap::new();
            walk(&self.0, &mut out);
            out
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    type Tree = BTreeMap<PathBuf, Vec<u8>>;

    /// Fails naming the files that differ (not dumping their bytes).
    fn assert_same(after: &Tree, before: &Tree, what: &str) {
        let changed: Vec<_> = before
            .keys()
            .chain(after.keys())
            .filter(|path| before.get(*path) != after.get(*path))
            .collect();
        assert!(changed.is_empty(), "{what} changed {changed:?}");
    }

    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_framework_unit_is_copied_renamed_and_registered_as_a_script_unit() {
        let scratch = Scratch::new();
        let react = framework::find("react").unwrap();
        let done = generate_framework(&scratch.0, "tool-rack", "yard", react).unwrap();
        let lib = scratch.read("units/tool-rack/src/lib.rs");
        assert!(
            lib.contains("pub const MODULE: &str = \"units/tool-rack.js\";"),
            "{lib}"
        );
        let cargo = scratch.read("units/tool-rack/Cargo.toml");
        assert!(cargo.contains("name = \"unit-tool-rack\""), "{cargo}");
        let component = scratch.read("units/tool-rack/js/ToolRack.tsx");
        assert!(component.contains("export function ToolRack()"));
        assert!(
            scratch
                .read("units/tool-rack/js/main.tsx")
                .contains("import { ToolRack } from './ToolRack';")
        );
        for file in done.created.iter().filter(|f| f.starts_with("units")) {
            let text = fs::read_to_string(scratch.0.join(file)).unwrap();
            assert!(
                !text.contains("react-counter") && !text.contains("ReactCounter"),
                "{file:?}"
            );
        }
        let spec = scratch.read("end2end/tests/tool-rack.spec.ts");
        assert!(spec.contains("title: 'Tool rack'"), "{spec}");

        let registry = scratch.read("app/src/registry.rs");
        assert!(registry.contains("fn tool_rack() -> AnyView {\n    script(\"tool-rack\")\n}"));
        assert!(registry.contains(
            "    (\n        \"tool-rack\",\n        unit_tool_rack::MODULE,\n        unit_tool_rack::declare,\n    ),\n];"
        ));
        assert_eq!(
            edit::registry_kinds(&registry).unwrap(),
            edit::registry_units(&registry).unwrap()
        );
        assert!(done.report().contains("units/tool-rack/js/"));
    }

    #[test]
    fn a_good_name_is_registered_everywhere_and_everything_still_parses() {
        let scratch = Scratch::new();
        let done = generate(&scratch.0, "garden-shed", "yard").unwrap();
        assert_eq!(done.placement, Placement::NewBuilding);

        let cargo = scratch.read("units/garden-shed/Cargo.toml");
        assert!(cargo.contains("name = \"unit-garden-shed\""), "{cargo}");
        let lib = scratch.read("units/garden-shed/src/lib.rs");
        let view = scratch.read("units/garden-shed/src/view.rs");
        let keys = scratch.read("units/garden-shed/src/keys.rs");
        assert!(view.contains("pub fn GardenShed() -> impl IntoView"));
        assert!(keys.contains("SharedKey::builder(\"garden-shed-note\")"));
        assert!(lib.contains("\"garden-shed-ping\""));
        assert!(lib.contains("use unit_garden_shed::GardenShed;"));
        for file in [
            "src/lib.rs",
            "src/keys.rs",
            "src/view.rs",
            "tests/native.rs",
            "README.md",
            "Cargo.toml",
        ] {
            let text = scratch.read(&format!("units/garden-shed/{file}"));
            assert!(
                !text.to_lowercase().contains("template"),
                "{file} still says template"
            );
        }
        let spec = scratch.read("end2end/tests/garden-shed.spec.ts");
        assert!(spec.contains("const BUILDING = 'yard';"));
        assert!(spec.contains("const TITLE = 'Garden shed';"), "{spec}");
        assert!(spec.contains("/unit/garden-shed`"));

        let workspace = scratch.read("Cargo.toml");
        assert!(workspace.contains("\nunit-garden-shed = { path = \"units/garden-shed\" }\n"));
        assert!(
            scratch
                .read("app/Cargo.toml")
                .contains("\nunit-garden-shed.workspace = true\n")
        );
        let registry = scratch.read("app/src/registry.rs");
        let kinds = edit::registry_kinds(&registry).unwrap();
        assert_eq!(
            kinds,
            edit::registry_units(&registry).unwrap(),
            "KINDS matches UNITS"
        );
        assert_eq!(kinds.last().map(String::as_str), Some("garden-shed"));
        assert!(registry.contains("<unit_garden_shed::GardenShed />"));

        let manifest = manifest::Manifest::parse(&scratch.read("app/src/manifest.json")).unwrap();
        let main = manifest.apartments.iter().find(|a| a.id == "main").unwrap();
        let yard = main.buildings.iter().find(|b| b.id == "yard").unwrap();
        let unit = &yard.units[0];
        assert_eq!(unit.kind, "garden-shed");
        assert_eq!(unit.title, "Garden shed");
        assert_eq!(yard.title.as_deref(), Some("Yard"));

        assert!(
            done.report()
                .contains("/apartment/main/building/yard/unit/garden-shed")
        );
        let keys = scratch.read("keys/src/lib.rs");
        assert!(keys.contains("    unit_garden_shed::keys::declarations,\n];"));
        assert!(scratch.read("keys/Cargo.toml").contains(
            "\nunit-garden-shed = { path = \"../units/garden-shed\", default-features = false }\n"
        ));
        assert_eq!(done.created.len(), 7);
        assert_eq!(done.edited.len(), 6);
    }

    #[test]
    fn the_spec_title_matches_the_manifest_title() {
        let scratch = Scratch::new();
        generate(&scratch.0, "weather", DEFAULT_BUILDING).unwrap();
        let spec = scratch.read("end2end/tests/weather.spec.ts");
        assert!(spec.contains("const TITLE = 'Weather';"), "{spec}");
        let manifest = scratch.read("app/src/manifest.json");
        assert!(
            manifest
                .contains("{\"id\": \"weather\", \"kind\": \"weather\", \"title\": \"Weather\"")
        );
    }

    #[test]
    fn bad_names_leave_the_tree_byte_identical() {
        let scratch = Scratch::new();
        let before = scratch.tree();
        for (name, building, reason) in [
            ("", DEFAULT_BUILDING, "empty"),
            ("../escape", DEFAULT_BUILDING, "looks like a path"),
            ("a/b", DEFAULT_BUILDING, "looks like a path"),
            ("back\\slash", DEFAULT_BUILDING, "looks like a path"),
            ("Upper", DEFAULT_BUILDING, "lowercase"),
            ("snake_case", DEFAULT_BUILDING, "contains '_'"),
            ("trailing-", DEFAULT_BUILDING, "trailing or double"),
            ("double--dash", DEFAULT_BUILDING, "trailing or double"),
            (
                "a-name-that-is-far-too-long-to-use",
                DEFAULT_BUILDING,
                "at most 32",
            ),
            ("template", DEFAULT_BUILDING, "reserved"),
            ("app", DEFAULT_BUILDING, "reserved"),
            ("state", DEFAULT_BUILDING, "reserved"),
            ("counter", "yard", "units/counter exists already"),
            (
                "shared-note",
                "yard",
                "kind \"shared-note\" is registered already",
            ),
            ("weather", "../up", "looks like a path"),
            ("weather", "", "building id is empty"),
        ] {
            let error = generate(&scratch.0, name, building).unwrap_err();
            assert!(error.contains(reason), "{name:?} in {building:?}: {error}");
            assert_same(&scratch.tree(), &before, &format!("{name:?}"));
        }
    }

    #[test]
    fn a_unit_id_taken_in_the_building_changes_nothing() {
        let scratch = Scratch::new();
        // `study` of `main` has a unit `notes-a` of kind `notes`: no crate,
        // kind or spec is named `notes-a`, so only the manifest refuses it.
        let before = scratch.tree();
        let error = generate(&scratch.0, "notes-a", "study").unwrap_err();
        assert!(
            error.contains("main/study already has a unit \"notes-a\""),
            "{error}"
        );
        assert_same(&scratch.tree(), &before, "notes-a");
    }

    #[test]
    fn a_name_containing_template_is_renamed_once() {
        let scratch = Scratch::new();
        generate(&scratch.0, "my-template", "template-yard").unwrap();
        let view = scratch.read("units/my-template/src/view.rs");
        let keys = scratch.read("units/my-template/src/keys.rs");
        assert!(view.contains("pub fn MyTemplate() -> impl IntoView"));
        assert!(keys.contains("\"my-template-note\""));
        for text in [&view, &keys, &scratch.read("units/my-template/src/lib.rs")] {
            assert!(!text.contains("my-my"));
        }
        let spec = scratch.read("end2end/tests/my-template.spec.ts");
        assert!(spec.contains("const BUILDING = 'template-yard';"), "{spec}");
        assert!(spec.contains("const TITLE = 'My template';"), "{spec}");
        assert!(
            scratch
                .read("Cargo.toml")
                .contains("\nunit-my-template = { path = \"units/my-template\" }\n")
        );
    }

    #[test]
    fn a_failed_write_midway_is_rolled_back() {
        let scratch = Scratch::new();
        let before = scratch.tree();
        // Fail on each write in turn: the first created file, the last
        // created file, the first edit, the last edit.
        for fail_at in [0, 4, 5, 8] {
            let mut writes = 0;
            let mut write = |path: &Path, text: &str| {
                writes += 1;
                if writes - 1 == fail_at {
                    // Leave a half-written file behind, as a full disk would.
                    fs::write(path, &text.as_bytes()[..text.len() / 2])?;
                    return Err(io::Error::other("disk full"));
                }
                fs::write(path, text)
            };
            let error = generate_with(&scratch.0, "weather", "yard", None, &mut write).unwrap_err();
            assert!(error.contains("disk full"), "{error}");
            assert!(error.contains("nothing was changed"), "{error}");
            assert_same(
                &scratch.tree(),
                &before,
                &format!("failing write #{fail_at}"),
            );
        }
    }

    #[test]
    fn arguments_are_a_name_an_optional_building_and_an_optional_framework() {
        assert_eq!(
            parse_args(&args(&["weather"])).unwrap(),
            ("weather".to_owned(), DEFAULT_BUILDING.to_owned(), None)
        );
        assert_eq!(
            parse_args(&args(&["weather", "--building", "roof"])).unwrap(),
            ("weather".to_owned(), "roof".to_owned(), None)
        );
        assert_eq!(
            parse_args(&args(&["--building=roof", "weather"])).unwrap(),
            ("weather".to_owned(), "roof".to_owned(), None)
        );
        assert_eq!(
            parse_args(&args(&["weather", "--framework", "svelte"])).unwrap(),
            (
                "weather".to_owned(),
                DEFAULT_BUILDING.to_owned(),
                Some(framework::find("svelte").unwrap())
            )
        );
        for (bad, reason) in [
            (&["a", "--framework"][..], "needs a name"),
            (&["a", "--framework=angular"][..], "unknown framework"),
            (
                &["a", "--framework", "vue", "--framework", "react"][..],
                "given twice",
            ),
            (&[][..], "name is missing"),
            (&["a", "b"][..], "more than one name"),
            (&["a", "--building"][..], "needs an id"),
            (&["a", "--force"][..], "unknown option"),
            (
                &["a", "--building", "x", "--building", "y"][..],
                "given twice",
            ),
        ] {
            let error = parse_args(&args(bad)).unwrap_err();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
    }
}
