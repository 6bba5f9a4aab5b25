//! The benchmark page of `cargo xtask bench`; not part of the demo.
//!
//! Built by Trunk like the app (release profile, `wasm-opt -Oz`) into
//! `target/bench/page`. Each `#[wasm_bindgen]` function sets up its
//! fixture, times N iterations with `performance.now()` (set-up excluded)
//! and returns its numbers as JSON text; end2end/bench/*.spec.ts warms up,
//! repeats and takes medians. Nothing here asserts a time.
//!
//! The exports live in this binary crate rather than a library because
//! `#[wasm_bindgen]` exports of a dependency are not kept in a wasm binary.

#[cfg(target_arch = "wasm32")]
mod fixture;
#[cfg(target_arch = "wasm32")]
mod hydrate;
#[cfg(target_arch = "wasm32")]
mod memory;
#[cfg(target_arch = "wasm32")]
mod ops;
#[cfg(target_arch = "wasm32")]
mod table;

fn main() {
    console_error_panic_hook::set_once();
}
