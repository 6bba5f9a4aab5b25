//! `cargo xtask test`: every check and test, in order, failing fast.
//!
//! Order: formatting, lints for the host, the crate graph (nothing native
//! links a browser crate), lints for wasm32, native tests, the framework
//! bindings' unit tests (node's test runner) and type check, browser tests
//! of the wasm crates (wasm-bindgen-test in headless Chromium), the release
//! build, its size, then Playwright against that build served as a static
//! site, and last `cargo xtask new-unit` checked end to end in a scratch
//! copy (generated, built, its spec run in Chromium). The run ends with a
//! table of stages and one line counting every test the runners reported.

use std::time::Instant;

use crate::cmd::{Cmd, root};
use crate::new_unit;
use crate::setup::{self, CHROMEDRIVER, ToolEnv};
use crate::size;

const WASM: &str = "wasm32-unknown-unknown";

/// Test counts read from the runners' own summary lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Reads a cargo/wasm-bindgen-test (`test result: ok. 3 passed; 0
    /// failed; …`), Playwright (`  5 passed (3.2s)`, `  1 failed`) or node
    /// test runner TAP (`# pass 5`, `# fail 0`) summary.
    fn read(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ") {
            if let [kind @ ("pass" | "fail"), n] = rest.split_whitespace().collect::<Vec<_>>()[..] {
                self.add(n, if kind == "pass" { "passed" } else { "failed" });
            }
        } else if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let words: Vec<&str> = part.split_whitespace().collect();
                if let [.., n, kind] = words.as_slice() {
                    self.add(n, kind);
                }
            }
        } else if let [n, kind, ..] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
            self.add(n, kind);
        }
    }

    fn add(&mut self, n: &str, kind: &str) {
        let Ok(n) = n.trim_end_matches('.').parse::<u64>() else {
            return;
        };
        match kind {
            "passed" => self.passed += n,
            "failed" | "flaky" => self.failed += n,
            _ => {}
        }
    }
}

struct Stage {
    name: &'static str,
    run: fn(&ToolEnv, &mut Tally) -> Result<(), String>,
}

const STAGES: &[Stage] = &[
    Stage {
        name: "cargo fmt --check",
        run: fmt,
    },
    Stage {
        name: "clippy (host)",
        run: clippy_host,
    },
    Stage {
        name: "crate graph (native: no browser)",
        run: crate_graph,
    },
    Stage {
        name: "clippy (wasm32)",
        run: clippy_wasm,
    },
    Stage {
        name: "cargo test (native)",
        run: native_tests,
    },
    Stage {
        name: "js: node --test, tsc",
        run: js_checks,
    },
    Stage {
        name: "wasm-bindgen-test (chromium)",
        run: browser_tests,
    },
    Stage {
        name: "trunk build --release (/, /demo/)",
        run: release_build,
    },
    Stage {
        name: "size report",
        run: size_report,
    },
    Stage {
        name: "playwright (release dist)",
        run: playwright,
    },
    Stage {
        name: "new-unit: generate, build, e2e",
        run: new_unit_check,
    },
];

/// Runs the whole suite.
pub fn run() -> Result<(), String> {
    let started = Instant::now();
    let env = setup::ensure(setup::Purpose::Test)?;
    eprintln!("xtask: set-up done in {:.0?}", started.elapsed());
    let mut tally = Tally::default();
    let mut report = Vec::new();
    let mut failure = None;
    for stage in STAGES {
        eprintln!("\n=== {} ===", stage.name);
        let began = Instant::now();
        let result = (stage.run)(&env, &mut tally);
        report.push((stage.name, result.is_ok(), began.elapsed()));
        if let Err(error) = result {
            failure = Some(format!("stage `{}` failed: {error}", stage.name));
            break;
        }
    }
    println!("\nstage                               result   time");
    for (name, passed, took) in &report {
        let result = if *passed { "ok" } else { "FAILED" };
        println!("{name:<35} {result:<8} {:>6.1}s", took.as_secs_f64());
    }
    for stage in STAGES.iter().skip(report.len()) {
        println!("{:<35} {:<8}", stage.name, "skipped");
    }
    println!("total {:.1}s", started.elapsed().as_secs_f64());
    // A failing stage with no failing test (a lint, a build) still counts as
    // a failure, so the closing line never reads as green when it is not.
    let failed = tally.failed.max(u64::from(failure.is_some()));
    println!("summary: {} passed, {failed} failed", tally.passed);
    match failure {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

fn fmt(_: &ToolEnv, _: &mut Tally) -> Result<(), String> {
    Cmd::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .run()
}

fn clippy_host(_: &ToolEnv, _: &mut Tally) -> Result<(), String> {
    Cmd::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    // The workspace build has every strategy (its features unify); a
    // build without the optional ones, or with one of them, is a
    // configuration of its own.
    Cmd::new("cargo")
        .args(["clippy"])
        .args(WITHOUT_OPTIONAL_STRATEGIES)
        .args([
            "--lib",
            "--test",
            "strategies_left_out",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    for feature in ["merge", "user-resolve"] {
        Cmd::new("cargo")
            .args(["clippy"])
            .args(WITHOUT_OPTIONAL_STRATEGIES)
            .args(["--features", feature, "--lib", "--", "-D", "warnings"])
            .run()?;
    }
    Ok(())
}

/// `-p` and feature flags selecting the core and the manager without the
/// strategies that are cargo features (merge, user-resolve).
const WITHOUT_OPTIONAL_STRATEGIES: [&str; 5] = [
    "-p",
    "gaesup-state-core",
    "-p",
    "gaesup-state",
    "--no-default-features",
];

fn crate_graph(_: &ToolEnv, _: &mut Tally) -> Result<(), String> {
    crate::graph::check()
}

/// Libraries and binaries for wasm32, plus the browser test files; the
/// native-only test targets (proptest and friends) are not built for wasm.
fn clippy_wasm(_: &ToolEnv, _: &mut Tally) -> Result<(), String> {
    let mut args = vec![
        "clippy",
        "--target",
        WASM,
        "--workspace",
        "--exclude",
        "xtask",
        // A native server (tokio, SQLite): it never runs in a browser.
        "--exclude",
        "gaesup-relay",
    ];
    args.extend(["--lib", "--bins", "--", "-D", "warnings"]);
    Cmd::new("cargo").args(args).run()?;
    // The size probe alone: the browser crates without the optional
    // strategies, a configuration the workspace build never makes.
    Cmd::new("cargo")
        .args(["clippy", "--target", WASM, "-p", "bench-hello-state"])
        .args(["--", "-D", "warnings"])
        .run()?;
    let mut args = vec!["clippy".to_owned(), "--target".into(), WASM.into()];
    args.extend(web_test_args(&web_tests()?));
    args.extend(["--", "-D", "warnings"].map(String::from));
    Cmd::new("cargo").args(args).run()
}

/// `-p <crate>` for every crate with browser tests and `--test <name>` for
/// every such test: one cargo run, so each crate is compiled once, with
/// one set of features, instead of once per crate's own run.
fn web_test_args(targets: &[(String, Vec<String>)]) -> Vec<String> {
    let mut args = Vec::new();
    for (name, _) in targets {
        args.extend(["-p".to_owned(), name.clone()]);
    }
    let mut tests: Vec<&String> = targets.iter().flat_map(|(_, tests)| tests).collect();
    tests.sort();
    tests.dedup();
    for test in tests {
        args.extend(["--test".to_owned(), test.clone()]);
    }
    args
}

fn native_tests(_: &ToolEnv, tally: &mut Tally) -> Result<(), String> {
    Cmd::new("cargo")
        .args(["test", "--workspace"])
        .run_watching(|line| tally.read(line))?;
    // A build without the optional strategies refuses their states and
    // ops from builds that have them, and loses none
    // (state/core/tests/strategies_left_out.rs).
    Cmd::new("cargo")
        .args(["test"])
        .args(WITHOUT_OPTIONAL_STRATEGIES)
        .args(["--test", "strategies_left_out"])
        .run_watching(|line| tally.read(line))
}

/// The framework bindings (js/gaesup-bindings.js) against a fake
/// window.gaesup with React, Vue and Svelte, then their declarations
/// against the TypeScript units and the README's examples; and the test
/// scripts' own static server (it must not outlive a killed Playwright).
fn js_checks(env: &ToolEnv, tally: &mut Tally) -> Result<(), String> {
    Cmd::new("node")
        .args(["--test", "--test-reporter=tap", "js/tests/"])
        .env_path(env)
        .run_watching(|line| tally.read(line))?;
    Cmd::new("node")
        .args(["--test", "--test-reporter=tap", "end2end/scripts/tests/"])
        .env_path(env)
        .run_watching(|line| tally.read(line))?;
    Cmd::new("node")
        .args(["js/check-types.mjs"])
        .env_path(env)
        .run()
}

/// Every `tests/web*.rs` of a workspace crate runs in headless Chromium.
fn browser_tests(env: &ToolEnv, tally: &mut Tally) -> Result<(), String> {
    let targets = web_tests()?;
    if targets.is_empty() {
        return Err("no crate has tests/web*.rs; the browser stage would test nothing".into());
    }
    let webdriver = root().join("webdriver.json");
    let mut args = vec!["test".to_owned(), "--target".into(), WASM.into()];
    args.extend(web_test_args(&targets));
    Cmd::new("cargo")
        .args(args)
        .env_path(env)
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("CHROMEDRIVER", CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &webdriver)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
        .run_watching(|line| tally.read(line))
}

/// Workspace crates with browser tests (`tests/web*.rs`), by package name,
/// with the test target names.
fn web_tests() -> Result<Vec<(String, Vec<String>)>, String> {
    let mut dirs = vec![root().join("app"), root().join("state")];
    // The state crates (core, web adapters, …) and every unit.
    for parent in ["state", "units"] {
        let entries =
            std::fs::read_dir(root().join(parent)).map_err(|e| format!("{parent}/: {e}"))?;
        let mut crates: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|dir| dir.join("Cargo.toml").is_file())
            .collect();
        crates.sort();
        dirs.extend(crates);
    }
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("tests")) else {
            continue;
        };
        let mut tests: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| f.starts_with("web") && f.ends_with(".rs"))
            .map(|f| f.trim_end_matches(".rs").to_owned())
            .collect();
        if tests.is_empty() {
            continue;
        }
        tests.sort();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .ok_or_else(|| format!("{}/Cargo.toml has no package name", dir.display()))?;
        found.push((name.to_owned(), tests));
    }
    Ok(found)
}

fn release_build(env: &ToolEnv, _: &mut Tally) -> Result<(), String> {
    trunk_release(env)?;
    // The same app for a sub-path deployment (Playwright's sub-path project).
    Cmd::new("trunk")
        .args([
            "build",
            "--release",
            "--public-url",
            "/demo/",
            "--dist",
            "dist-demo",
        ])
        .env_path(env)
        .run()?;
    for dist in ["dist", "dist-demo"] {
        if !root().join(dist).join("404.html").is_file() {
            return Err(format!(
                "{dist}/404.html is missing: static hosts need it for deep links"
            ));
        }
    }
    Ok(())
}

/// `trunk build --release` into dist/, with wasm-opt from npm on PATH.
pub fn trunk_release(env: &ToolEnv) -> Result<(), String> {
    Cmd::new("trunk")
        .args(["build", "--release"])
        .env_path(env)
        .run()?;
    if root().join("dist/index.html").is_file() {
        Ok(())
    } else {
        Err("trunk build succeeded but dist/index.html is missing".into())
    }
}

fn size_report(env: &ToolEnv, _: &mut Tally) -> Result<(), String> {
    size::report(env)
}

fn playwright(env: &ToolEnv, tally: &mut Tally) -> Result<(), String> {
    // The device tests start the real relay (target/debug/relay), built
    // on its own as deployed: without the units' views, which the native
    // tests' workspace-wide build turned on (so this compiles it again).
    Cmd::new("cargo")
        .args(["build", "-p", "gaesup-relay", "--bin", "relay"])
        .env_path(env)
        .run()?;
    Cmd::new("playwright")
        .args(["test"])
        .dir("end2end")
        .free_ports(&["E2E_PORT", "E2E_SUBPATH_PORT"])?
        .env_path(env)
        .run_watching(|line| tally.read(line))
}

/// `cargo xtask new-unit` in a scratch copy, built and tested in Chromium.
fn new_unit_check(env: &ToolEnv, tally: &mut Tally) -> Result<(), String> {
    new_unit::check::run(env, &mut |line| tally.read(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_summaries() {
        let mut tally = Tally::default();
        tally.read("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        tally
            .read("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        assert_eq!((tally.passed, tally.failed), (15, 2));
    }

    #[test]
    fn reads_playwright_summaries() {
        let mut tally = Tally::default();
        tally.read("  5 passed (3.2s)");
        tally.read("  1 failed");
        tally.read("  2 flaky");
        tally.read("  1 skipped");
        assert_eq!((tally.passed, tally.failed), (5, 3));
    }

    #[test]
    fn reads_node_test_runner_summaries() {
        let mut tally = Tally::default();
        tally.read("# pass 22");
        tally.read("# fail 1");
        tally.read("# Subtest: react: useSharedState renders");
        tally.read("# tests 23");
        assert_eq!((tally.passed, tally.failed), (22, 1));
    }

    #[test]
    fn ignores_other_output() {
        let mut tally = Tally::default();
        tally.read("running 3 tests");
        tally.read("test tests::x ... ok");
        tally.read("   Compiling leptos v0.8.23");
        assert_eq!((tally.passed, tally.failed), (0, 0));
    }

    #[test]
    fn one_cargo_run_names_each_crate_and_each_test_once() {
        let targets = [
            (
                "gaesup-state".to_owned(),
                vec!["web_hooks".to_owned(), "web_modal".to_owned()],
            ),
            ("unit-cart".to_owned(), vec!["web".to_owned()]),
            ("unit-counter".to_owned(), vec!["web".to_owned()]),
        ];
        assert_eq!(
            web_test_args(&targets).join(" "),
            "-p gaesup-state -p unit-cart -p unit-counter --test web --test web_hooks --test web_modal"
        );
    }

    #[test]
    fn finds_the_counter_browser_tests() {
        let found = web_tests().unwrap();
        assert!(found.contains(&("unit-counter".to_owned(), vec!["web".to_owned()])));
        // The browser adapters' tests live in their own crate under state/.
        assert!(found.iter().any(|(name, _)| name == "gaesup-state-web"));
    }
}
