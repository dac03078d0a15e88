//! One module per subcommand, plus the small pieces they share.

pub mod backup;
pub mod observe;
pub mod run;
pub mod serve;
pub mod snapshot;
pub mod units;

use std::path::PathBuf;

/// The data directory rule shared by every subcommand: an explicit value
/// (flag or `TENSOR_WASM_DATA_DIR`) wins; otherwise `/var/lib/tensor-wasm`
/// when it is writable, else `./tensor-wasm-data`.
pub fn resolve_data_dir(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir;
    }
    let system = PathBuf::from("/var/lib/tensor-wasm");
    if is_writable_dir(&system) {
        system
    } else {
        PathBuf::from("tensor-wasm-data")
    }
}

fn is_writable_dir(dir: &std::path::Path) -> bool {
    let probe = dir.join(format!(".tensor-wasm-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}
