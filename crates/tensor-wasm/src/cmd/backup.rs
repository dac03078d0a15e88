//! `tensor-wasm backup` / `tensor-wasm restore`: consistent copies of a
//! data dir (function store, snapshots, audit key, `MANIFEST.json`) and
//! their restore into an empty data dir.
//!
//! The work is `tensor_wasm_store::backup`; this file parses flags, prints
//! progress and a summary, and turns errors into one line that says what to
//! do. No token is needed: the backup reads the data dir directly (redb
//! lets it read one consistent snapshot while a server keeps serving).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use tensor_wasm_store::backup::{
    BackupManifest, MANIFEST_FILE_NAME, backup_data_dir, restore_data_dir, verify_backup,
};

#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("mode").required(true).args(["to", "verify"])
))]
pub struct BackupArgs {
    /// New (or empty) directory to write the backup into.
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Check an existing backup (manifest, size and BLAKE3 of every file)
    /// instead of taking one.
    #[arg(long, value_name = "DIR")]
    verify: Option<PathBuf>,
    /// Data directory to back up (default: /var/lib/tensor-wasm when
    /// writable, else ./tensor-wasm-data).
    #[arg(long, env = "TENSOR_WASM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A directory written by `tensor-wasm backup --to`.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Data directory to restore into; must be absent or empty.
    #[arg(long, env = "TENSOR_WASM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// `1.5 MiB`-style sizes for the summary.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// Functions, files and bytes of a manifest, in one line.
fn summary(manifest: &BackupManifest) -> String {
    let bytes: u64 = manifest.files.iter().map(|f| f.size_bytes).sum();
    let snapshots = manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("snapshots/"))
        .count();
    format!(
        "{} function(s), {} snapshot(s), {} file(s), {} ({bytes} bytes); store schema v{}, written by tensor-wasm {} at {}",
        manifest.function_count,
        snapshots,
        manifest.files.len(),
        human_bytes(bytes),
        manifest.store_schema_version,
        manifest.tensor_wasm_version,
        manifest.created_at,
    )
}

fn list_files(manifest: &BackupManifest) {
    for file in &manifest.files {
        println!("  {:<48} {:>12}", file.path, human_bytes(file.size_bytes));
    }
    println!("  {MANIFEST_FILE_NAME}");
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = args.verify {
        return verify(&dir);
    }
    let to = args
        .to
        .context("pass --to DIR (where to write the backup) or --verify DIR")?;
    let data_dir = super::resolve_data_dir(args.data_dir);
    println!(
        "backing up data dir {} into {} …",
        data_dir.display(),
        to.display()
    );
    let started = Instant::now();
    let manifest = backup_data_dir(&data_dir, &to)
        .with_context(|| format!("backing up {} into {}", data_dir.display(), to.display()))?;
    list_files(&manifest);
    println!(
        "backup complete in {:.1?}: {}",
        started.elapsed(),
        summary(&manifest)
    );
    println!(
        "next: copy {} off this host; check it any time with `tensor-wasm backup --verify {}`",
        to.display(),
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> anyhow::Result<ExitCode> {
    println!("verifying backup {} …", dir.display());
    let manifest =
        verify_backup(dir).with_context(|| format!("verifying backup {}", dir.display()))?;
    list_files(&manifest);
    println!(
        "backup OK: every file matches {MANIFEST_FILE_NAME}: {}",
        summary(&manifest)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let data_dir = super::resolve_data_dir(args.data_dir);
    println!(
        "restoring backup {} into data dir {} (verifying checksums and schema first) …",
        args.from.display(),
        data_dir.display()
    );
    let started = Instant::now();
    let manifest = restore_data_dir(&args.from, &data_dir).with_context(|| {
        format!(
            "restoring {} into {}",
            args.from.display(),
            data_dir.display()
        )
    })?;
    list_files(&manifest);
    println!(
        "restore complete in {:.1?}: {}",
        started.elapsed(),
        summary(&manifest)
    );
    println!(
        "next: start the server on {} (`tensor-wasm serve --data-dir {}`); function ids are those in the backup",
        data_dir.display(),
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
