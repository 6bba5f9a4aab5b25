//! Idempotent, offline-safe installation of every tool the project needs.
//!
//! Each step checks first and installs only what is missing or at the wrong
//! version, so a warm machine pays a few probes and a fresh one gets a full
//! set-up. Nothing here downloads a prebuilt binary: Rust tools come from
//! crates.io through `cargo install`, the browser from Debian, JS packages
//! from npm. Trunk is configured `offline = true` and finds everything on
//! the PATH built here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cmd::{Cmd, root};

/// What the tools are for: the dev server needs fewer than the test suite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `trunk serve`: the wasm target, Trunk and wasm-bindgen.
    Dev,
    /// Everything: also wasm-opt, Chromium, chromedriver, Playwright,
    /// redis-server.
    Test,
    /// `cargo xtask bench`: what the tests need, twiggy and valgrind.
    Bench,
}

/// Where the installed tools are.
pub struct ToolEnv {
    /// PATH with the project's tools first: npm's `.bin` directories
    /// (wasm-opt from the npm `binaryen` package, esbuild, tsc) and cargo's
    /// bin directory.
    pub path: OsString,
}

/// Trunk 0.22 needs a newer rustc than the machines have.
const TRUNK_REQ: &str = "^0.21";
const TRUNK_PREFIX: &str = "trunk 0.21.";
/// The wasm-opt that works (Debian's binaryen 108 emits a wasm that dies with
/// `WebAssembly.Table.set(): Argument 1 is invalid`); also pinned in Trunk.toml.
const WASM_OPT_VERSION: &str = "version 132";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs what `purpose` needs and is missing; returns the tool PATH.
pub fn ensure(purpose: Purpose) -> Result<ToolEnv, String> {
    let env = tool_env();
    ensure_wasm_target()?;
    ensure_trunk(&env)?;
    ensure_wasm_bindgen(&env)?;
    // Every build bundles the framework units (a Trunk hook runs esbuild).
    ensure_node_modules(&env, ".")?;
    if purpose != Purpose::Dev {
        ensure_redis()?;
        ensure_chromium()?;
        ensure_node_modules(&env, "end2end")?;
        ensure_wasm_opt(&env)?;
    }
    if purpose == Purpose::Bench {
        ensure_twiggy(&env)?;
        ensure_valgrind()?;
    }
    Ok(env)
}

fn tool_env() -> ToolEnv {
    let mut dirs = vec![
        root().join("end2end/node_modules/.bin"),
        root().join("node_modules/.bin"),
        cargo_bin(),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    ToolEnv {
        path: std::env::join_paths(dirs).unwrap_or_default(),
    }
}

fn cargo_bin() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home).join("bin");
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cargo/bin")
}

fn ok(what: &str, detail: &str) {
    eprintln!("setup: {what} ok ({detail})");
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = Cmd::new("rustup")
        .args(["target", "list", "--installed"])
        .probe()
        .unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        ok("wasm32-unknown-unknown target", "installed");
        return Ok(());
    }
    Cmd::new("rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .run()
}

fn ensure_trunk(env: &ToolEnv) -> Result<(), String> {
    let version = Cmd::new("trunk").args(["--version"]).env_path(env).probe();
    if let Some(v) = version.as_deref().filter(|v| v.starts_with(TRUNK_PREFIX)) {
        ok("trunk", v);
        return Ok(());
    }
    eprintln!(
        "setup: installing trunk {TRUNK_REQ} (found: {version:?}); this takes several minutes"
    );
    Cmd::new("cargo")
        .args(["install", "trunk", "--version", TRUNK_REQ, "--locked"])
        .run()
}

/// twiggy: where the app's wasm bytes go (the bench report).
fn ensure_twiggy(env: &ToolEnv) -> Result<(), String> {
    if let Some(v) = Cmd::new("twiggy").args(["--version"]).env_path(env).probe() {
        ok("twiggy", &v);
        return Ok(());
    }
    eprintln!("setup: installing twiggy; this takes a few minutes");
    Cmd::new("cargo")
        .args(["install", "twiggy", "--locked"])
        .run()
}

/// wasm-bindgen's CLI must match the `wasm-bindgen` crate in Cargo.lock
/// exactly, or the generated glue does not fit the wasm.
fn ensure_wasm_bindgen(env: &ToolEnv) -> Result<(), String> {
    let wanted = locked_version("wasm-bindgen")?;
    let found = Cmd::new("wasm-bindgen")
        .args(["--version"])
        .env_path(env)
        .probe();
    let runner = Cmd::new("wasm-bindgen-test-runner")
        .args(["--version"])
        .env_path(env)
        .probe();
    let expected = format!("wasm-bindgen {wanted}");
    if found.as_deref() == Some(expected.as_str()) && runner.is_some() {
        ok("wasm-bindgen-cli", &expected);
        return Ok(());
    }
    eprintln!(
        "setup: installing wasm-bindgen-cli {wanted} (found: {found:?}); this takes several minutes"
    );
    // No --locked: for 0.2.130 a locked dependency is missing from crates.io.
    Cmd::new("cargo")
        .args([
            "install",
            "wasm-bindgen-cli",
            "--force",
            "--version",
            &format!("={wanted}"),
        ])
        .run()
}

/// The version of `package` recorded in Cargo.lock.
pub fn locked_version(package: &str) -> Result<String, String> {
    let lock_path = root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'));
            if let Some(version) = version {
                return Ok(version.to_owned());
            }
        }
    }
    Err(format!("Cargo.lock has no package {package:?}"))
}

fn ensure_chromium() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        let version = Cmd::new(CHROMIUM).args(["--version"]).probe();
        ok("chromium", version.as_deref().unwrap_or("present"));
        return Ok(());
    }
    eprintln!("setup: installing Debian's chromium and chromium-driver");
    apt_install(&["chromium", "chromium-driver"])
}

/// Debian's `redis-server`, for the relay's Redis backend: its tests start
/// their own on 127.0.0.1 (a port chosen at run time, a temporary
/// directory), and so does `cargo xtask cluster`. The system service the
/// package may start is never used.
pub fn ensure_redis() -> Result<(), String> {
    if let Some(version) = Cmd::new("redis-server").args(["--version"]).probe() {
        ok("redis-server", &version);
        return Ok(());
    }
    eprintln!("setup: installing Debian's redis-server");
    apt_install(&["redis-server"])
}

/// valgrind: the bench counts the write paths' instructions with
/// callgrind.
fn ensure_valgrind() -> Result<(), String> {
    if let Some(version) = Cmd::new("valgrind").args(["--version"]).probe() {
        ok("valgrind", &version);
        return Ok(());
    }
    eprintln!("setup: installing Debian's valgrind");
    apt_install(&["valgrind"])
}

/// `apt-get update` and `apt-get install` (through sudo when not root).
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let sudo = Cmd::new("id").args(["-u"]).probe().as_deref() != Some("0");
    let apt = |args: &[&str]| {
        let mut all = Vec::new();
        if sudo {
            all.push("sudo");
        }
        all.push("apt-get");
        all.extend_from_slice(args);
        Cmd::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)
}

/// `npm ci` in `dir` (the root: esbuild and the frameworks the JS units
/// build with; end2end/: Playwright and wasm-opt) when its node_modules is
/// missing or older than the lock.
fn ensure_node_modules(env: &ToolEnv, dir: &str) -> Result<(), String> {
    let lock = root().join(dir).join("package-lock.json");
    let installed = root().join(dir).join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(lock_time), Some(installed_time)) = (modified(&lock), modified(&installed))
        && installed_time >= lock_time
    {
        ok(
            &format!("{dir}/node_modules"),
            "up to date with package-lock.json",
        );
        return Ok(());
    }
    Cmd::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .dir(dir)
        .env_path(env)
        .run()
}

fn ensure_wasm_opt(env: &ToolEnv) -> Result<(), String> {
    let found = Cmd::new("wasm-opt")
        .args(["--version"])
        .env_path(env)
        .probe();
    match found {
        Some(v) if v.contains(WASM_OPT_VERSION) => {
            ok("wasm-opt", &v);
            Ok(())
        }
        other => Err(format!(
            "wasm-opt on PATH is {other:?}, expected {WASM_OPT_VERSION} from end2end/node_modules (npm package binaryen); run `npm ci` in end2end/"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wasm_bindgen_version_from_the_lockfile() {
        let version = locked_version("wasm-bindgen").unwrap();
        assert!(version.starts_with("0.2."), "{version}");
    }

    #[test]
    fn unknown_package_is_an_error() {
        assert!(locked_version("no-such-package-here").is_err());
    }
}
