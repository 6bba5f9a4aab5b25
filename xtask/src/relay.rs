//! The development relay `cargo xtask dev` runs next to `trunk serve`.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::cmd::{Cmd, root};

/// Where the development relay listens.
pub const DEV_ADDRESS: &str = "127.0.0.1:8787";

/// A relay process, stopped when dropped.
pub struct RelayProcess(Child);

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Builds the relay and starts it in development mode (a public, built-in
/// secret; never deploy that), its store under `target/relay-dev`.
pub fn start_dev() -> Result<RelayProcess, String> {
    Cmd::new("cargo")
        .args(["build", "-p", "gaesup-relay", "--bin", "relay"])
        .run()?;
    let binary = target_dir().join("debug/relay");
    let data = target_dir().join("relay-dev");
    let child = Command::new(&binary)
        .args(["--dev", "--listen", DEV_ADDRESS, "--data"])
        .arg(&data)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    eprintln!(
        "xtask: development relay on http://{DEV_ADDRESS} (store in {})",
        data.display()
    );
    Ok(RelayProcess(child))
}
