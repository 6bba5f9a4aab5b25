//! `cargo xtask bench`: measurements, never assertions.
//!
//! Steps, each writing its numbers under `target/bench/`:
//!
//! 1. the core's native op throughput (`cargo bench`), kept as text, and
//!    the instructions per write of the manager's write paths, counted by
//!    callgrind (`valgrind`, installed by the set-up if missing);
//! 2. release builds made the same way (`trunk build --release`, the
//!    workspace's release profile, `wasm-opt -Oz` from npm's binaryen): the
//!    app, the size baseline `bench/hello`, the same counter through the
//!    state manager `bench/hello-state` (with the strategies it uses) and
//!    `bench/hello-state-full` (with all five), two probes of
//!    `bench/hello-codecs` that split the state manager's size
//!    (`bench-hello-json`: the counter plus a round trip of untyped JSON,
//!    what JSON itself costs; `bench-hello-codecs`: the counter plus the
//!    decoders and encoders of every format the state manager reads from
//!    outside, and none of its logic), and the
//!    benchmark page `bench/page`; raw, gzip and brotli sizes of each, and
//!    `twiggy top` of the app's wasm before wasm-opt;
//! 3. the relay (`cargo bench -p gaesup-relay --bench relay`): acked ops
//!    per second, push → ack latency, fan-out, sockets and memory,
//!    catch-up;
//! 4. Playwright (`end2end/bench.config.ts`) in Chromium: state ops against
//!    zustand, the 1,000-row table, selective subscriptions, batches,
//!    hydration, mount/unmount memory, cross-tab latency, device → relay →
//!    device propagation and the outbox flush;
//! 5. `end2end/scripts/bench-report.mjs` gathers everything into
//!    `target/bench/results.json`, a Markdown table in
//!    `target/bench/results.md`, and the same table as the snapshot
//!    `BENCHMARKS.md` at the repository root.
//!
//! The report is written by a Node script because every measurement
//! already arrives as JSON from Node (Playwright, zlib sizes, twiggy's JSON
//! output): reading it there keeps this crate std-only without a
//! hand-written JSON parser.

use std::time::Instant;

use crate::cmd::{Cmd, root};
use crate::setup::{self, ToolEnv};
use crate::suite;

/// The size probes: (directory of the page's `index.html`, dist directory
/// under target/bench; its sizes go to `target/bench/size-<dist>.json`).
const PROBES: &[(&str, &str)] = &[
    ("bench/hello", "hello"),
    ("bench/hello-state", "hello-state"),
    ("bench/hello-state-full", "hello-state-full"),
    ("bench/hello-codecs/json", "hello-json"),
    ("bench/hello-codecs", "hello-codecs"),
];

/// The benchmark page, built as the probes are.
const PAGE: (&str, &str) = ("bench/page", "page");

/// Runs every measurement and writes the report.
pub fn run() -> Result<(), String> {
    let started = Instant::now();
    let env = setup::ensure(setup::Purpose::Bench)?;
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("target/bench: {e}"))?;

    let mut native = String::new();
    Cmd::new("cargo")
        .args(["bench", "-p", "gaesup-state-core"])
        .run_watching(|line| {
            native.push_str(line);
            native.push('\n');
        })?;
    write(&out.join("native-ops.txt"), &native)?;
    instructions(&out)?;
    // The relay from outside (writes target/bench/relay.json); the device
    // benchmarks below start its debug binary.
    Cmd::new("cargo")
        .args(["bench", "-p", "gaesup-relay", "--bench", "relay"])
        .run()?;
    Cmd::new("cargo")
        .args(["build", "-p", "gaesup-relay", "--bin", "relay"])
        .run()?;

    suite::trunk_release(&env)?;
    sizes(&env, "dist", "size-app.json")?;
    for (dir, dist) in PROBES.iter().chain([&PAGE]) {
        Cmd::new("trunk")
            .args([
                "build".to_owned(),
                format!("{dir}/index.html"),
                "--release".into(),
                "--dist".into(),
                format!("target/bench/{dist}"),
            ])
            .env_path(&env)
            .run()?;
    }
    for (_, dist) in PROBES {
        sizes(
            &env,
            &format!("target/bench/{dist}"),
            &format!("size-{dist}.json"),
        )?;
    }
    twiggy(&env)?;

    Cmd::new("playwright")
        .args(["test", "-c", "bench.config.ts"])
        .dir("end2end")
        .free_ports(&["E2E_PORT", "E2E_BENCH_PORT", "E2E_BENCH_HELLO_PORT"])?
        .env_path(&env)
        .run()?;

    Cmd::new("node")
        .args([
            "end2end/scripts/bench-report.mjs".to_owned(),
            "target/bench".into(),
            "BENCHMARKS.md".into(),
            format!("{:.0}", started.elapsed().as_secs_f64()),
        ])
        .env_path(&env)
        .run()
}

/// The write paths counted under callgrind: (case of
/// `state/benches/writes.rs`, as its command line names it).
const COUNTED: &[&str] = &[
    "set an integer, 0 subscribers",
    "set an integer, 1 subscriber",
    "floor model: a bare replicated write, 1 subscriber",
    "a hook's set of an integer, 3 readers",
    "a plain signal's set, 1 reader",
];

/// How many writes each counted case makes: `per_run(200_000, …)` in
/// `state/benches/writes.rs`, a tenth more to warm up.
const COUNTED_WRITES: u64 = 220_000;

/// Instructions per write of the native write paths, counted by callgrind
/// (`valgrind --tool=callgrind`): counts, not times, so they repeat
/// whatever else the machine is doing, where the browser's timings of the
/// same paths move with it. Each case runs alone in its own process; the
/// count includes the process's start and the case's setup (about 0.1 %
/// of a case's count). Writes `target/bench/instructions.json`, and each
/// case's profile as `target/bench/callgrind.N.out` for
/// `callgrind_annotate`.
fn instructions(out: &std::path::Path) -> Result<(), String> {
    let mut executable = None;
    Cmd::new("cargo")
        .args([
            "bench",
            "-p",
            "gaesup-state",
            "--bench",
            "writes",
            "--no-run",
            "--message-format=json",
        ])
        .run_watching(|line| {
            if let Some(path) = json_string_after(line, "\"executable\":\"") {
                executable = Some(path);
            }
        })?;
    let executable =
        executable.ok_or("cargo named no executable for the `writes` bench of gaesup-state")?;
    let mut cases = Vec::new();
    for (n, case) in COUNTED.iter().enumerate() {
        let profile = out.join(format!("callgrind.{n}.out"));
        let report = Cmd::new("valgrind")
            .args([
                "--tool=callgrind".to_owned(),
                format!("--callgrind-out-file={}", profile.display()),
                executable.clone(),
                (*case).to_owned(),
            ])
            .stderr_text()?;
        let collected = report
            .lines()
            .find_map(|line| line.split("Collected :").nth(1))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("valgrind reported no instruction count for {case:?}"))?;
        cases.push(format!(
            "{{\"name\":{case:?},\"instructions\":{collected},\"writes\":{COUNTED_WRITES}}}"
        ));
    }
    write(
        &out.join("instructions.json"),
        &format!("{{\"cases\":[{}]}}\n", cases.join(",")),
    )
}

/// The JSON string that follows `prefix` in `line`, if any (cargo's
/// messages escape nothing in the paths this reads but backslashes).
fn json_string_after(line: &str, prefix: &str) -> Option<String> {
    let start = line.find(prefix)? + prefix.len();
    let rest = &line[start..];
    let end = rest.find('"')?;
    Some(rest[..end].replace("\\\\", "\\"))
}

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn sizes(env: &ToolEnv, dist: &str, json: &str) -> Result<(), String> {
    Cmd::new("node")
        .args([
            "end2end/scripts/size.mjs".to_owned(),
            dist.into(),
            format!("target/bench/{json}"),
        ])
        .env_path(env)
        .run()
}

/// `twiggy top` of the wasm files as wasm-bindgen left them, before
/// wasm-opt strips the names: the app's 20 largest items as text, and every
/// item of the app, `bench-hello` and `bench-hello-state` as JSON, for the
/// per-crate grouping and the hello → hello-state difference in the report.
fn twiggy(env: &ToolEnv) -> Result<(), String> {
    for (name, json) in [
        ("gaesup-app", "twiggy-app.json"),
        ("bench-hello", "twiggy-hello.json"),
        ("bench-hello-state", "twiggy-hello-state.json"),
    ] {
        let wasm = format!("target/wasm-bindgen/release/{name}_bg.wasm");
        if !root().join(&wasm).is_file() {
            return Err(format!(
                "{wasm} is missing: did trunk change where it writes?"
            ));
        }
        if name == "gaesup-app" {
            Cmd::new("twiggy")
                .args([
                    "top",
                    "-n",
                    "20",
                    "-o",
                    "target/bench/twiggy-top.txt",
                    &wasm,
                ])
                .env_path(env)
                .run()?;
        }
        Cmd::new("twiggy")
            .args([
                "top",
                "-f",
                "json",
                "-o",
                &format!("target/bench/{json}"),
                &wasm,
            ])
            .env_path(env)
            .run()?;
    }
    Ok(())
}

/// `cargo xtask profile [expression]`: where a benchmark-page export spends
/// its time in Chromium, per wasm function (`end2end/scripts/wasm-profile.mjs`:
/// a sampling profile of one call). The page is built as the bench builds it
/// but without wasm-opt, which would strip the function names, so absolute
/// times differ a little from the bench's.
pub fn profile(args: &[String]) -> Result<(), String> {
    let expression = match args {
        [] => "set_bench(1, 1000000)",
        [one] => one.as_str(),
        _ => return Err("usage: cargo xtask profile [expression]".to_owned()),
    };
    let env = setup::ensure(setup::Purpose::Bench)?;
    Cmd::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "bench-page",
        ])
        .run()?;
    Cmd::new("wasm-bindgen")
        .args([
            "--target",
            "web",
            "--out-dir",
            "target/profile",
            "--out-name",
            "page",
            "target/wasm32-unknown-unknown/release/bench-page.wasm",
        ])
        .env_path(&env)
        .run()?;
    Cmd::new("node")
        .args(["scripts/wasm-profile.mjs", "../target/profile", expression])
        .dir("end2end")
        .env_path(&env)
        .run()
}
