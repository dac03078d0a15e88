//! `tensor-wasm snapshot …` (being built).

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// List snapshots.
    List,
}

pub fn main(_cmd: SnapshotCommand) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("`snapshot` is not available in this build yet")
}
