//! The suite's proof that `cargo xtask new-unit` makes units that work:
//! in a scratch copy of the repository, generate a Leptos unit and one
//! unit per framework (`--framework react|svelte|vue`) into a new
//! building, build the site with Trunk, check that the relay's key list
//! (`gaesup-keys`) takes the Leptos unit's keys without its view, and run
//! the units' generated Playwright specs against that build.
//!
//! The copy lives in `target/new-unit-check/` (so `cargo clean` removes
//! it) and builds into the main target directory (`CARGO_TARGET_DIR` when
//! set, else `target/`), so what the release stage
//! compiled is reused and only the generated unit and the app are compiled
//! again. It is removed when the check passes and kept for inspection when
//! it fails.

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::cmd::{Cmd, root};
use crate::setup::ToolEnv;

/// The unit the check generates: two words, to exercise every name form.
pub const NAME: &str = "garden-shed";
/// The framework units it generates: name and framework.
const FRAMEWORK_UNITS: [(&str, &str); 3] = [
    ("tool-rack", "react"),
    ("seed-tray", "svelte"),
    ("rain-barrel", "vue"),
];
/// A building that does not exist yet, so the check also creates one.
pub const BUILDING: &str = "yard";
/// Where the scratch copy goes, under the root.
const SCRATCH: &str = "target/new-unit-check";
/// Not copied: build output, dependencies, VCS data, test reports, and
/// cargo's configuration (see [`CARGO_CONFIG`]).
const SKIPPED: &[&str] = &[
    CARGO_CONFIG,
    ".git",
    "target",
    "dist",
    "dist-demo",
    ".tools",
    "node_modules",
    "end2end/node_modules",
    "end2end/test-results",
    "end2end/playwright-report",
];

/// Cargo's configuration. Where the copy lies under the root on disk,
/// cargo reads the root's `.cargo/config.toml` for it anyway, and a copy
/// of it would join its lists to the root's (`rustflags`, for one, passed
/// twice: a different fingerprint, so every dependency compiled again
/// where the release stage's should be reused). Where it does not
/// (`target/` a link to a cache elsewhere), it is copied, or the copy
/// would build without it.
const CARGO_CONFIG: &str = ".cargo";

/// Runs the check; `on_line` gets Playwright's output (for the tally).
pub fn run(env: &ToolEnv, on_line: &mut dyn FnMut(&str)) -> Result<(), String> {
    let root = root();
    let scratch = root.join(SCRATCH);
    let began = Instant::now();
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    }
    copy_tree(&root, &scratch, Path::new(""))?;
    if !inherits_config(&root, &scratch)? {
        copy_tree(
            &root.join(CARGO_CONFIG),
            &scratch.join(CARGO_CONFIG),
            Path::new(""),
        )?;
    }
    for modules in ["node_modules", "end2end/node_modules"] {
        link(&root.join(modules), &scratch.join(modules))?;
    }
    let copied = began.elapsed();

    let began = Instant::now();
    let done = super::generate(&scratch, NAME, BUILDING)?;
    print!("{}", done.report());
    for (name, framework) in FRAMEWORK_UNITS {
        let framework = super::framework::find(framework)?;
        let done = super::generate_framework(&scratch, name, BUILDING, framework)?;
        print!("{}", done.report());
    }
    let generated = began.elapsed();

    let began = Instant::now();
    let scratch_dir = scratch
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", scratch.display()))?;
    // Release, as deployed: right after the release stage every
    // dependency and every unchanged workspace crate is fresh for it (cargo
    // names path crates by their place in the workspace, and the copy keeps
    // modification times), so only the new unit and the app are compiled.
    // A debug build would first compile every dependency for wasm again.
    Cmd::new("trunk")
        .args(["build", "--release"])
        .dir(scratch_dir)
        .env("CARGO_TARGET_DIR", target_dir(&root))
        .env_path(env)
        .run()?;
    // The relay's list of keys, natively: the new unit compiles without its
    // view, and `declarations()` (the crate's doc test) takes its keys.
    Cmd::new("cargo")
        .args(["test", "-p", "gaesup-keys", "--doc"])
        .dir(scratch_dir)
        .env("CARGO_TARGET_DIR", target_dir(&root))
        .run()?;
    let built = began.elapsed();

    let began = Instant::now();
    let specs = std::iter::once(NAME)
        .chain(FRAMEWORK_UNITS.map(|(name, _)| name))
        .map(|name| format!("tests/{name}.spec.ts"))
        .collect::<Vec<_>>();
    Cmd::new("playwright")
        .args(["test", "-c", "new-unit.config.ts"])
        .args(&specs)
        .dir(&format!("{scratch_dir}/end2end"))
        .free_ports(&["E2E_NEW_UNIT_PORT"])?
        .env_path(env)
        .run_watching(on_line)?;
    let tested = began.elapsed();

    eprintln!(
        "xtask: new-unit check: copy {:.1}s, generate {:.1}s, builds {:.1}s, playwright {:.1}s",
        copied.as_secs_f64(),
        generated.as_secs_f64(),
        built.as_secs_f64(),
        tested.as_secs_f64()
    );
    fs::remove_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))
}

/// Copies the tree under `from` to `to`, except [`SKIPPED`] paths;
/// `relative` is the position inside the tree (for the skip list).
fn copy_tree(from: &Path, to: &Path, relative: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let inner = relative.join(entry.file_name());
        if SKIPPED.iter().any(|skip| Path::new(skip) == inner) {
            continue;
        }
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", source.display()))?;
        if kind.is_dir() {
            copy_tree(&source, &target, &inner)?;
        } else if kind.is_file() {
            copy_file(&source, &target)?;
        }
    }
    Ok(())
}

/// Copies a file with its modification time, so cargo sees the copy's
/// unchanged crates as fresh on the next run and compiles only what the
/// generator changed.
fn copy_file(source: &Path, target: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", source.display());
    fs::copy(source, target).map_err(fail)?;
    let modified = fs::metadata(source)
        .and_then(|m| m.modified())
        .map_err(fail)?;
    fs::File::options()
        .write(true)
        .open(target)
        .and_then(|file| file.set_modified(modified))
        .map_err(|e| format!("{}: {e}", target.display()))
}

#[cfg(unix)]
fn link(original: &Path, link: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(original, link).map_err(|e| format!("{}: {e}", link.display()))
}

#[cfg(not(unix))]
fn link(original: &Path, _link: &Path) -> Result<(), String> {
    Err(format!(
        "the new-unit check links {} into its scratch copy, which needs a Unix system",
        original.display()
    ))
}

/// The target directory the other stages built into: `CARGO_TARGET_DIR`
/// when set (relative to the working directory, as cargo reads it), else
/// `target/` under the root.
fn target_dir(root: &Path) -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or_else(|_| dir.into()),
        None => root.join("target"),
    }
}

/// Whether cargo, run in `scratch`, reads `root`'s configuration: whether
/// `scratch` lies under `root` on disk, links resolved.
fn inherits_config(root: &Path, scratch: &Path) -> Result<bool, String> {
    let real = |path: &Path| fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok(real(scratch)?.starts_with(real(root)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_skips_build_output_and_dependencies() {
        let base = std::env::temp_dir().join(format!("xtask-check-copy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (from, to) = (base.join("repo"), base.join("copy"));
        for file in [
            "Cargo.toml",
            "app/src/lib.rs",
            "target/debug/big",
            "dist/index.html",
            "end2end/node_modules/x/index.js",
            "node_modules/y/index.js",
            "end2end/tests/a.spec.ts",
            "units/target/keep.rs",
            ".cargo/config.toml",
        ] {
            let path = from.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, file).unwrap();
            let long_ago =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        copy_tree(&from, &to, Path::new("")).unwrap();
        for kept in [
            "Cargo.toml",
            "app/src/lib.rs",
            "end2end/tests/a.spec.ts",
            // Only the root's target/ is build output.
            "units/target/keep.rs",
        ] {
            assert_eq!(fs::read_to_string(to.join(kept)).unwrap(), kept);
        }
        let modified = |path: &Path| fs::metadata(path).unwrap().modified().unwrap();
        assert_eq!(
            modified(&to.join("app/src/lib.rs")),
            modified(&from.join("app/src/lib.rs")),
            "the copy keeps modification times"
        );
        for skipped in [
            "target",
            "dist",
            "end2end/node_modules",
            "node_modules",
            ".cargo",
        ] {
            assert!(!to.join(skipped).exists(), "{skipped} was copied");
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_copy_under_a_linked_target_does_not_inherit_the_config() {
        let base = std::env::temp_dir().join(format!("xtask-check-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, cache) = (base.join("repo"), base.join("cache"));
        fs::create_dir_all(root.join("target/check")).unwrap();
        fs::create_dir_all(cache.join("check")).unwrap();
        assert!(inherits_config(&root, &root.join("target/check")).unwrap());
        std::os::unix::fs::symlink(&cache, root.join("linked")).unwrap();
        assert!(!inherits_config(&root, &root.join("linked/check")).unwrap());
        fs::remove_dir_all(&base).unwrap();
    }
}
