//! `tensor-wasm observe` (being built).

#[derive(clap::Args)]
pub struct ObserveArgs {}

pub fn main(_args: ObserveArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("`observe` is not available in this build yet")
}
