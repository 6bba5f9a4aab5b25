//! A size probe of `cargo xtask bench`: `bench-hello-state`'s page, built
//! with every strategy of the state manager (its dependency on
//! `gaesup-state` keeps the default features, so merge and user-resolve
//! are linked). Its size minus `bench-hello-state`'s is what those two
//! strategies cost a build that has them.

// Named only to turn its features on: nothing here calls it.
use gaesup_state as _;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(bench_hello_state::App);
}
