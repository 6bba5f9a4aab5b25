//! The project's entry point: `cargo xtask <command>`.
//!
//! One place for every job a developer or CI runs, so the README needs only
//! two commands and CI calls exactly what a developer calls. Every command
//! first installs whatever tool it needs and is missing (see [`setup`]),
//! skipping what is already there.
#![forbid(unsafe_code)]

mod bench;
mod cmd;
mod graph;
mod new_unit;
mod relay;
mod setup;
mod size;
mod suite;

use std::process::ExitCode;

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  dev      set up what is missing, then serve the demo on http://127.0.0.1:8080 (trunk serve)
           next to a development relay on 127.0.0.1:8787 (store in target/relay-dev)
  cluster  Redis (Debian's redis-server, AOF with appendfsync always, a free port, files
           in target/relay-cluster) and two relay nodes on it, 127.0.0.1:8787 and :8788
  test     set up what is missing, then run every check and test (what CI runs)
  setup    install the tools for `test` (target, trunk, wasm-bindgen, wasm-opt, chromium,
           redis-server, npm packages)
  size     build the release site and print the wasm/js sizes (raw, gzip, brotli)
  new-unit <name> [--building <id>] [--framework react|svelte|vue]
           copy units/template to units/<name>, rename it and register it in the app
           (building <id> of the main apartment, default garage; created if missing);
           with --framework, a unit written in that framework (copied from
           units/<framework>-counter) instead
  bench    measurements (never assertions): sizes against a bare Leptos build, state
           ops against zustand and plain signals, hydration, memory, cross-tab
           latency in Chromium; target/bench/results.json and BENCHMARKS.md
  profile [expression]
           where a benchmark-page export (default `set_bench(1, 1000000)`) spends its
           time in Chromium, per wasm function: a sampling profile of one call
  help     this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dev") => dev(),
        Some("cluster") => cluster(),
        Some("test") => suite::run(),
        Some("setup") => setup::ensure(setup::Purpose::Test).map(|_| ()),
        Some("size") => size_command(),
        Some("bench") => bench(),
        Some("profile") => bench::profile(&args[1..]),
        Some("new-unit") => new_unit::command(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cluster() -> Result<(), String> {
    let cluster = relay::start_cluster()?;
    eprintln!(
        "xtask: point a site at a node with its relay.json ({}); Ctrl-C stops everything",
        cluster
            .configs()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    cluster.wait()
}

fn dev() -> Result<(), String> {
    let env = setup::ensure(setup::Purpose::Dev)?;
    // Trunk refuses to start when a watch-ignore path of Trunk.toml is
    // missing: `target` is absent when CARGO_TARGET_DIR points elsewhere.
    for dir in ["target", "dist"] {
        std::fs::create_dir_all(cmd::root().join(dir)).map_err(|e| format!("{dir}/: {e}"))?;
    }
    let relay = relay::start_dev()?;
    eprintln!("xtask: serving the demo on http://127.0.0.1:8080 (Ctrl-C stops it)");
    eprintln!(
        "xtask: a second device is another browser profile or a private window on the same address"
    );
    cmd::Cmd::new("trunk")
        .args(["serve", "--address", "127.0.0.1", "--port", "8080"])
        .env("GAESUP_RELAY_CONFIG", relay.config())
        .env_path(&env)
        .run()
}

fn size_command() -> Result<(), String> {
    let env = setup::ensure(setup::Purpose::Test)?;
    suite::trunk_release(&env)?;
    size::report(&env)
}

/// Measurements, numbers reported and never asserted (the `bench` module):
/// target/bench/results.json, results.md and the BENCHMARKS.md snapshot.
fn bench() -> Result<(), String> {
    bench::run()
}
