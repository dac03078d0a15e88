//! `tensor-wasm backup` / `tensor-wasm restore` (being built).

#[derive(clap::Args)]
pub struct BackupArgs {}

#[derive(clap::Args)]
pub struct RestoreArgs {}

pub fn backup(_args: BackupArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("`backup` is not available in this build yet")
}

pub fn restore(_args: RestoreArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("`restore` is not available in this build yet")
}
