//! The crate graph's promise: what runs outside a browser links no browser
//! crate and no Leptos.
//!
//! The core and the protocol are pure; the relay applies ops with the
//! units' own key declarations, which it takes through `gaesup-keys`: the
//! unit crates without their `view` feature. A unit whose `keys` module
//! reached for its view, or a new dependency that pulled in Leptos, would
//! still build (a workspace build turns every unit's `view` on), so this
//! stage asks Cargo for each crate's own graph, then builds `gaesup-keys`
//! alone, which compiles every unit without its view.

use crate::cmd::Cmd;

/// Crates that must run anywhere: no browser crate in their graph.
const NATIVE: &[&str] = &[
    "gaesup-state-core",
    "gaesup-protocol",
    "gaesup-keys",
    "gaesup-relay",
];

/// What none of [`NATIVE`] may link.
const BROWSER: &[&str] = &[
    "leptos",
    "leptos_router",
    "tachys",
    "reactive_graph",
    "web-sys",
    "js-sys",
    "wasm-bindgen",
    "gaesup-state",
    "gaesup-state-web",
    "gaesup-app",
];

/// Checks every crate of [`NATIVE`], then lints `gaesup-keys` alone.
pub fn check() -> Result<(), String> {
    for package in NATIVE {
        let tree = Cmd::new("cargo")
            .args([
                "tree", "-p", package, "-e", "normal", "--target", "all", "--prefix", "none",
                "--format", "{p}",
            ])
            .probe()
            .ok_or_else(|| format!("`cargo tree -p {package}` failed"))?;
        let linked = browser_crates(&tree);
        if !linked.is_empty() {
            return Err(format!(
                "{package} links {} (see `cargo tree -p {package} -i {}`)",
                linked.join(", "),
                linked[0]
            ));
        }
        eprintln!("{package}: no browser crate");
    }
    Cmd::new("cargo")
        .args([
            "clippy",
            "-p",
            "gaesup-keys",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .run()
}

/// The browser crates named in `cargo tree --format {p}` output, once each.
fn browser_crates(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| BROWSER.contains(name))
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_browser_crate_once_and_nothing_else() {
        let tree = "gaesup-relay v0.1.0 (/x/relay)\nleptos v0.8.2\nweb-sys v0.3.77\n\
                    leptos v0.8.2 (*)\nleptos-macro v0.8.2 (proc-macro)\ngaesup-state-core v0.1.0\n";
        assert_eq!(browser_crates(tree), ["leptos", "web-sys"]);
        assert!(browser_crates("gaesup-relay v0.1.0\ntokio v1.0.0\n").is_empty());
    }
}
