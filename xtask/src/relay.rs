//! The development relay `cargo xtask dev` runs next to `trunk serve`, and
//! the local cluster of `cargo xtask cluster`: Redis and two relay nodes.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::cmd::{Cmd, root};

/// Where the development relay listens.
pub const DEV_ADDRESS: &str = "127.0.0.1:8787";

/// Where the second node of `cargo xtask cluster` listens.
pub const SECOND_ADDRESS: &str = "127.0.0.1:8788";

/// A relay process, stopped when dropped, and the `relay.json` naming it.
pub struct RelayProcess(ChildGuard, PathBuf);

impl RelayProcess {
    /// The relay configuration for the app (`GAESUP_RELAY_CONFIG`).
    pub fn config(&self) -> &std::path::Path {
        &self.1
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn build_relay() -> Result<PathBuf, String> {
    Cmd::new("cargo")
        .args(["build", "-p", "gaesup-relay", "--bin", "relay"])
        .run()?;
    Ok(target_dir().join("debug/relay"))
}

/// Builds the relay and starts it in development mode (a public, built-in
/// secret; never deploy that), its store under `target/relay-dev`.
pub fn start_dev() -> Result<RelayProcess, String> {
    let binary = build_relay()?;
    let data = target_dir().join("relay-dev");
    let config = write_dev_config(&binary, &data, DEV_ADDRESS)?;
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
    Ok(RelayProcess(ChildGuard(child), config))
}

/// Mints a development token (30 days; every apartment of the manifest,
/// read and write, and global keys) and writes the relay.json the app
/// reads, next to the relay's store.
fn write_dev_config(
    binary: &std::path::Path,
    data: &std::path::Path,
    address: &str,
) -> Result<PathBuf, String> {
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
    let config = serde_json::json!({ "url": format!("http://{address}"), "token": token });
    std::fs::write(&path, format!("{config:#}\n"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// A local cluster: a Redis of its own and two relay nodes sharing it.
pub struct Cluster {
    /// The nodes, stopped before Redis (fields drop in order).
    nodes: Vec<RelayProcess>,
    _redis: ChildGuard,
}

impl Cluster {
    /// Each node's `relay.json` (the first node first).
    pub fn configs(&self) -> Vec<&std::path::Path> {
        self.nodes.iter().map(RelayProcess::config).collect()
    }

    /// Waits until a node exits (Ctrl-C stops them all).
    pub fn wait(mut self) -> Result<(), String> {
        for node in &mut self.nodes {
            let status = node.0.0.wait().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("a relay node exited: {status}"));
            }
        }
        Ok(())
    }
}

/// A child process killed when dropped.
pub struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Debian's `redis-server` on 127.0.0.1 (a free port, its files
/// under `target/relay-cluster/redis`, AOF with `appendfsync always`: what
/// the relay expects in production) and two relay nodes on it, on
/// 127.0.0.1:8787 and 127.0.0.1:8788, in development mode.
pub fn start_cluster() -> Result<Cluster, String> {
    crate::setup::ensure_redis()?;
    let binary = build_relay()?;
    let base = target_dir().join("relay-cluster");
    let dir = base.join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let [(_, port)] = crate::cmd::free_ports(&["redis-server"], |_| false)?[..] else {
        return Err("no free port for redis-server".to_owned());
    };
    let redis = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
        .arg(&dir)
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .spawn()
        .map_err(|e| format!("could not start redis-server: {e}"))?;
    let redis = ChildGuard(redis);
    wait_for_redis(port)?;
    let url = format!("redis://127.0.0.1:{port}/");
    eprintln!("xtask: Redis on {url} (files in {})", dir.display());
    let mut nodes = Vec::new();
    for (name, address) in [("relay-1", DEV_ADDRESS), ("relay-2", SECOND_ADDRESS)] {
        let data = base.join(name);
        let config = write_dev_config(&binary, &data, address)?;
        let child = Command::new(&binary)
            .args([
                "--dev", "--listen", address, "--node", name, "--redis", &url,
            ])
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
        eprintln!(
            "xtask: relay node {name} on http://{address} (config {})",
            config.display()
        );
        nodes.push(RelayProcess(ChildGuard(child), config));
    }
    Ok(Cluster {
        nodes,
        _redis: redis,
    })
}

/// Waits until Redis answers PING on `port` (it loads its AOF first).
fn wait_for_redis(port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut answer = [0u8; 5];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && &answer == b"+PONG"
            {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("redis-server did not answer on port {port}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
