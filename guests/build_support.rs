//! Builds the example guests for `wasm32-wasip1`, once per test process.
//!
//! Shared by the integration tests that run the examples (included with
//! `#[path = ...] mod`), so there is one copy of the build logic. A separate
//! target dir (`guests/target`) avoids lock contention with the `cargo test`
//! that runs the tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root, from a crate's manifest dir two levels down.
pub fn repo_root(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir)
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Directory holding `vector-add.wasm`, `matmul.wasm` and `ptx-saxpy.wasm`.
/// Panics with a hint when the guests cannot be built.
pub fn guest_dir(manifest_dir: &str) -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let root = repo_root(manifest_dir);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(root.join("guests/Cargo.toml"))
            .env("CARGO_TARGET_DIR", root.join("guests/target"))
            .output()
            .map_err(|e| format!("could not run cargo: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let hint = if stderr.contains("target may not be installed")
                || stderr.contains("can't find crate for `core`")
                || stderr.contains("can't find crate for `std`")
            {
                "the wasm32-wasip1 target is missing: run `rustup target add wasm32-wasip1`\n"
            } else {
                ""
            };
            return Err(format!("{hint}building the guests failed:\n{stderr}"));
        }
        Ok(root.join("guests/target/wasm32-wasip1/release"))
    });
    match built {
        Ok(dir) => dir,
        Err(msg) => panic!("{msg}"),
    }
}
