//! `tensor-wasm`: the one binary operators run.
//!
//! This crate only parses flags and wires the library crates together; no
//! business logic lives here (see `ARCHITECTURE.md`).

use clap::{Parser, Subcommand};

mod cmd;

// mimalloc instead of glibc malloc: the gateway's hot path makes many small,
// short-lived allocations (request, store, response) and glibc's fastbin
// consolidation showed in profiles; see BENCHMARKS.md for the measured gain.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Version string printed by `--version`: `tensor-wasm vX.Y.Z`.
const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[derive(Parser)]
#[command(
    name = "tensor-wasm",
    version = VERSION,
    about = "GPU-accelerated, multi-tenant, serverless WebAssembly runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP gateway (the long-running server).
    Serve(Box<cmd::serve::ServeArgs>),
    /// Run a Wasm/WAT file locally, without a server.
    Run(cmd::run::RunArgs),
    /// Show a live dashboard of a server, or one JSON document with --once.
    Observe(cmd::observe::ObserveArgs),
    /// Save, restore, inspect, list and delete snapshots of warmed instances.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCommand),
    /// Write a consistent copy of the durable state of a data directory.
    Backup(cmd::backup::BackupArgs),
    /// Restore a backup into an empty data directory.
    Restore(cmd::backup::RestoreArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::main(*args),
        Command::Run(args) => cmd::run::main(args),
        Command::Observe(args) => cmd::observe::main(args),
        Command::Snapshot(args) => cmd::snapshot::main(args),
        Command::Backup(args) => cmd::backup::backup(args),
        Command::Restore(args) => cmd::backup::restore(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, what went wrong and (through the error's context) what to do.
            eprintln!("tensor-wasm: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
