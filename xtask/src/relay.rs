//! The development relay `cargo xtask dev` runs next to `trunk serve`.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::cmd::{Cmd, root};

/// Where the development relay listens.
pub const DEV_ADDRESS: &str = "127.0.0.1:8787";

/// A relay process, stopped when dropped, and the `relay.json` naming it.
pub struct RelayProcess(Child, PathBuf);

impl RelayProcess {
    /// The relay configuration for the app (`GAESUP_RELAY_CONFIG`).
    pub fn config(&self) -> &std::path::Path {
        &self.1
    }
}

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
    let config = write_dev_config(&binary, &data)?;
    let child = Command::new(&binary)
        .args(["--dev", "--listen", DEV_ADDRESS, "--data"])
        .arg(&data)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    eprintln!(
        "xtask: development relay on http://{DEV_ADDRESS} (store in {}, config {})",
        data.display(),
        config.display()
    );
    Ok(RelayProcess(child, config))
}

/// Mints a development token (30 days; every apartment of the manifest,
/// read and write, and global keys) and writes the relay.json the app
/// reads, next to the relay's store.
fn write_dev_config(binary: &std::path::Path, data: &std::path::Path) -> Result<PathBuf, String> {
    let manifest = std::fs::read_to_string(root().join("app/src/manifest.json"))
        .map_err(|e| format!("app/src/manifest.json: {e}"))?;
    let manifest = crate::new_unit::manifest::Manifest::parse(&manifest)?;
    let mut mint = Command::new(binary);
    mint.args([
        "mint-token",
        "--dev",
        "--subject",
        "xtask-dev",
        "--ttl",
        "2592000",
    ])
    .args(["--global", "rw"]);
    for apartment in &manifest.apartments {
        mint.arg("--apartment").arg(format!("{}=rw", apartment.id));
    }
    let output = mint
        .output()
        .map_err(|e| format!("could not run {} mint-token: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "relay mint-token failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let path = data.join("relay.json");
    let config = serde_json::json!({ "url": format!("http://{DEV_ADDRESS}"), "token": token });
    std::fs::write(&path, format!("{config:#}\n"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
