//! The release build's size: raw, gzip and brotli, per wasm and JS file.

use crate::cmd::Cmd;
use crate::setup::ToolEnv;

/// Prints the size table for dist/ (compression by Node's zlib, which has
/// both gzip and brotli built in, so no extra tool is needed).
pub fn report(env: &ToolEnv) -> Result<(), String> {
    Cmd::new("node")
        .args(["end2end/scripts/size.mjs", "dist", "target/size.json"])
        .env_path(env)
        .run()
}
