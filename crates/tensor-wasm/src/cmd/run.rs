//! `tensor-wasm run FILE [--invoke EXPORT ARGS...]`: run a module locally
//! with the same engine and limits the server uses.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tensor_wasm_exec::{CommandInput, EngineConfig, Executor, InvokeContext, Limits};

use super::units::{parse_bytes, parse_duration};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The module to run: a `.wasm` binary or `.wat` text.
    file: PathBuf,
    /// Call this export with numeric arguments and print its results, one per line.
    /// Without it the module runs as a WASI command (`_start`) with stdin/stdout passed through.
    #[arg(long, value_name = "EXPORT")]
    invoke: Option<String>,
    /// Arguments: numbers for `--invoke`, otherwise the WASI command's argv.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
    /// Wall-clock deadline, e.g. `500ms`, `2s`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Linear-memory cap, e.g. `64MiB`, `1GiB`.
    #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
    max_memory: u64,
    /// Fuel budget (instructions, roughly); unlimited when absent.
    #[arg(long)]
    fuel: Option<u64>,
    /// Cap on the guest's stdout, e.g. `16MiB`.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    max_output: u64,
    /// GPU backend for guests that import the GPU interface: auto, cuda, cpu or off.
    #[arg(long, env = "TENSOR_WASM_GPU", default_value = "auto")]
    gpu: String,
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let limits = Limits {
        timeout: args.timeout,
        max_memory_bytes: args.max_memory,
        fuel: args.fuel,
        max_output_bytes: usize::try_from(args.max_output).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    let config = EngineConfig {
        pool_total_instances: 16,
        pool_max_memory_bytes: args.max_memory.max(1 << 30),
        host_interfaces: super::local_host_interfaces(&args.gpu)?,
        ..EngineConfig::default()
    };
    let exec = Executor::new(config)?;
    let function = exec.compile(&bytes)?;
    let ctx = InvokeContext {
        tenant: "local".into(),
        limits,
        cpu_slots: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    match args.invoke {
        Some(export) => {
            let values: Vec<serde_json::Value> = args.args.iter().map(|a| cli_value(a)).collect();
            let out = runtime.block_on(exec.call_typed(&function, &export, &values, &ctx))?;
            let mut stdout = std::io::stdout().lock();
            for r in out.results {
                writeln!(stdout, "{r}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut stdin = Vec::new();
            if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                std::io::stdin()
                    .read_to_end(&mut stdin)
                    .context("reading stdin")?;
            }
            let input = CommandInput {
                export: None,
                stdin,
                args: args.args,
                env: Vec::new(),
            };
            let out = runtime.block_on(exec.call_command(&function, input, &ctx))?;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            Ok(ExitCode::from(u8::try_from(out.exit_code).unwrap_or(1)))
        }
    }
}

/// A CLI word as a JSON argument: numbers stay numbers; anything else is
/// passed as a string (the signature check then explains what was expected).
fn cli_value(word: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Number>(word)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|_| serde_json::Value::String(word.to_owned()))
}
