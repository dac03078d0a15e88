//! `tensor-wasm snapshot …`: save, restore (invoke from), inspect, list,
//! delete snapshots of warmed instances, and create a signing key.
//!
//! The work happens in `tensor-wasm-snapshot` (and, for `save --server`,
//! on the server through `tensor-wasm-client`); this module parses flags,
//! resolves the data directory and the signing key, draws progress bars and
//! prints results.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tensor_wasm_client::{Client, Error as ClientError};
use tensor_wasm_exec::{EngineConfig, Executor, InvokeContext, Limits};
use tensor_wasm_snapshot::dir::{SIGNING_KEY_FILE, generate_signing_key, load_signing_key};
use tensor_wasm_snapshot::format::{self, SnapshotHeader, VerifyPolicy};
use tensor_wasm_snapshot::{
    RestoreOptions, SigningKey, SnapshotDir, SnapshotMeta, SnapshotModule, dir, restore,
    warm_and_capture,
};

use super::units::{parse_bytes, parse_duration};

/// Snapshots at least this large get progress bars.
const PROGRESS_THRESHOLD: u64 = 8 << 20;

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Warm an instance and save a snapshot of it: locally from a module and
    /// an init export, or on a running server for a deployed function.
    Save(SaveArgs),
    /// Restore a snapshot into a fresh instance of its module and call an
    /// export: the first call starts warm.
    Restore(RestoreArgs),
    /// Print a snapshot's header (verifies checksum and signature; never
    /// decompresses the body).
    Inspect(InspectArgs),
    /// List the snapshots in the data directory.
    List(ListArgs),
    /// Delete a snapshot by id (from the data directory) or by path.
    Delete(DeleteArgs),
    /// Create an ed25519 signing key (`<data>/snapshot-signing.key`): from
    /// then on snapshots are signed, and unsigned ones refused.
    Keygen(KeygenArgs),
}

#[derive(clap::Args)]
pub struct DataDirArg {
    /// Data directory (snapshots live in `<data>/snapshots/`). Default:
    /// `/var/lib/tensor-wasm` when writable, else `./tensor-wasm-data`.
    #[arg(long, env = "TENSOR_WASM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SigningArgs {
    /// ed25519 signing key (32 raw bytes or 64 hex characters). Default:
    /// `<data>/snapshot-signing.key` when it exists. With a key, snapshots
    /// are signed when written and must carry its signature when read.
    #[arg(long, env = "TENSOR_WASM_SNAPSHOT_SIGNING_KEY", value_name = "FILE")]
    signing_key: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SaveArgs {
    /// Module to warm (`.wasm` or `.wat`), for a local snapshot.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["server", "function"])]
    module: Option<PathBuf>,
    /// Export called (without arguments) to warm the instance before the capture.
    #[arg(long, value_name = "NAME")]
    init_export: Option<String>,
    /// Write the snapshot here instead of `<data>/snapshots/<id>.tensor-wasm`.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    out: Option<PathBuf>,
    /// Server to snapshot a deployed function on (token from `TENSOR_WASM_TOKEN`).
    #[arg(long, value_name = "URL", requires = "function")]
    server: Option<String>,
    /// Function id on `--server`.
    #[arg(long, value_name = "ID", requires = "server")]
    function: Option<String>,
    /// Wall-clock deadline for the init export.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Linear-memory cap for the warmed instance.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    max_memory: u64,
    /// GPU backend for guests that import the GPU interface: auto, cuda, cpu or off.
    #[arg(long, env = "TENSOR_WASM_GPU", default_value = "auto")]
    gpu: String,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    signing: SigningArgs,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Snapshot file, or a snapshot id in the data directory.
    snapshot: String,
    /// The module the snapshot was taken from.
    #[arg(long, value_name = "FILE")]
    module: PathBuf,
    /// Export to call on the restored instance; results are printed one per line.
    #[arg(long, value_name = "EXPORT")]
    invoke: String,
    /// Numeric arguments for the export.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
    /// Wall-clock deadline for restore + call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Linear-memory cap (must hold the snapshot's memory).
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    max_memory: u64,
    /// Refuse a snapshot taken by a different engine build.
    #[arg(long)]
    strict_engine: bool,
    /// GPU backend for guests that import the GPU interface: auto, cuda, cpu or off.
    #[arg(long, env = "TENSOR_WASM_GPU", default_value = "auto")]
    gpu: String,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    signing: SigningArgs,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Snapshot file, or a snapshot id in the data directory.
    snapshot: String,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    signing: SigningArgs,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only snapshots of this function id.
    #[arg(long, value_name = "ID")]
    function: Option<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Snapshot id (in the data directory) or path of a `*.tensor-wasm` file.
    snapshot: String,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Write the key here instead of `<data>/snapshot-signing.key`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    data: DataDirArg,
}

pub fn main(cmd: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCommand::Save(args) if args.server.is_some() => save_remote(args),
        SnapshotCommand::Save(args) => save_local(args),
        SnapshotCommand::Restore(args) => restore_cmd(args),
        SnapshotCommand::Inspect(args) => inspect(args),
        SnapshotCommand::List(args) => list(args),
        SnapshotCommand::Delete(args) => delete(args),
        SnapshotCommand::Keygen(args) => keygen(args),
    }
}

fn data_dir(arg: &DataDirArg) -> PathBuf {
    super::resolve_data_dir(arg.data_dir.clone())
}

/// The signing key in force: `--signing-key`, else `<data>/snapshot-signing.key`
/// when present, else none.
fn signing_key(signing: &SigningArgs, data: &Path) -> anyhow::Result<Option<SigningKey>> {
    let path = match &signing.signing_key {
        Some(p) => p.clone(),
        None => {
            let default = data.join(SIGNING_KEY_FILE);
            if !default.exists() {
                return Ok(None);
            }
            default
        }
    };
    Ok(Some(load_signing_key(&path)?))
}

fn policy(key: Option<&SigningKey>) -> VerifyPolicy {
    key.map(VerifyPolicy::require).unwrap_or_default()
}

fn engine(max_memory: u64, gpu: &str) -> anyhow::Result<Executor> {
    Ok(Executor::new(EngineConfig {
        pool_total_instances: 8,
        pool_max_memory_bytes: max_memory.max(1 << 30),
        host_interfaces: super::local_host_interfaces(gpu)?,
        ..EngineConfig::default()
    })?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A byte-progress bar on stderr, only for large work on a terminal.
fn bar(total: u64, what: &str) -> Option<ProgressBar> {
    if total < PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    Some(bar)
}

fn save_local(args: SaveArgs) -> anyhow::Result<ExitCode> {
    let Some(module_path) = &args.module else {
        bail!("`snapshot save` needs --module FILE (local) or --server URL --function ID");
    };
    let bytes = std::fs::read(module_path)
        .with_context(|| format!("cannot read {}", module_path.display()))?;
    let data = data_dir(&args.data);
    let key = signing_key(&args.signing, &data)?;
    let exec = engine(args.max_memory, &args.gpu)?;
    let module = SnapshotModule::prepare(&exec, &bytes)?;
    let ctx = InvokeContext {
        tenant: "local".into(),
        limits: Limits {
            timeout: args.timeout,
            max_memory_bytes: args.max_memory,
            ..Limits::default()
        },
        cpu_slots: None,
    };
    let meta = SnapshotMeta {
        function_name: module_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned()),
        ..SnapshotMeta::default()
    };
    let mut snapshot = runtime()?.block_on(warm_and_capture(
        &exec,
        &module,
        args.init_export.as_deref(),
        &ctx,
        meta,
    ))?;

    let progress = bar(snapshot.state.stored_bytes(), "compressing");
    let mut report = |done: u64, _total: u64| {
        if let Some(b) = &progress {
            b.set_position(done);
        }
    };
    let (id, path) = match &args.out {
        Some(out) => {
            let id = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| SnapshotDir::new_id(snapshot.created_at_unix_ms));
            snapshot.meta.snapshot_id = Some(id.clone());
            let file = format::encode(&snapshot, key.as_ref(), Some(&mut report))?;
            dir::write_atomic(out, &file)?;
            (id, out.clone())
        }
        None => {
            SnapshotDir::in_data_dir(&data).save(&mut snapshot, key.as_ref(), Some(&mut report))?
        }
    };
    if let Some(b) = progress {
        b.finish_and_clear();
    }
    let file_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "saved snapshot {id} to {} ({} memory, {} stored, {} file{})",
        path.display(),
        human(snapshot.state.memory_bytes()),
        human(snapshot.state.stored_bytes()),
        human(file_len),
        if key.is_some() { ", signed" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn save_remote(args: SaveArgs) -> anyhow::Result<ExitCode> {
    let (Some(server), Some(function)) = (&args.server, &args.function) else {
        bail!("`snapshot save --server URL` needs --function ID");
    };
    let token = std::env::var("TENSOR_WASM_TOKEN").ok();
    let client = Client::builder(server.as_str(), token.as_deref())
        .timeout(args.timeout + Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let url = client.url(&format!("/functions/{function}/snapshots"));
    let reply =
        runtime()?.block_on(client.create_snapshot_text(function, args.init_export.as_deref()));
    // The server's JSON is printed as it wrote it.
    let text = match reply {
        Ok(text) => text,
        Err(ClientError::Http(e)) => bail!("server answered {}: {}", e.status, e.message),
        Err(ClientError::Transport(e)) => {
            return Err(
                anyhow::Error::new(e).context(format!("POST {url}: is the server running?"))
            );
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("POST {url}"))),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(ExitCode::SUCCESS)
}

/// A snapshot argument: an existing path, else an id in the data directory.
fn locate(arg: &str, data: &DataDirArg) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(arg);
    if path.is_file() {
        return Ok(path);
    }
    let dir = SnapshotDir::in_data_dir(&data_dir(data));
    let by_id = dir.path_of(arg).ok().filter(|p| p.is_file());
    by_id.with_context(|| {
        format!(
            "no snapshot file `{arg}` and no snapshot with that id in {}",
            dir.root().display()
        )
    })
}

fn restore_cmd(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let data = data_dir(&args.data);
    let key = signing_key(&args.signing, &data)?;
    let path = locate(&args.snapshot, &args.data)?;
    let bytes = std::fs::read(&args.module)
        .with_context(|| format!("cannot read {}", args.module.display()))?;

    let file_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let header = dir::read_header_file(&path)?;
    let progress = bar(header.body_raw_len.max(file_len), "loading");
    let mut report = |done: u64, total: u64| {
        if let Some(b) = &progress {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let snapshot = dir::load_file(&path, &policy(key.as_ref()), Some(&mut report))?;
    if let Some(b) = progress {
        b.finish_and_clear();
    }

    let exec = engine(args.max_memory, &args.gpu)?;
    let module = SnapshotModule::prepare(&exec, &bytes)?;
    let ctx = InvokeContext {
        tenant: "local".into(),
        limits: Limits {
            timeout: args.timeout,
            max_memory_bytes: args.max_memory,
            ..Limits::default()
        },
        cpu_slots: None,
    };
    let values: Vec<serde_json::Value> = args.args.iter().map(|a| arg_value(a)).collect();
    let options = RestoreOptions {
        strict_engine: args.strict_engine,
    };
    let out = runtime()?.block_on(async {
        let mut live = restore(&exec, &module, &snapshot, &ctx, options).await?;
        anyhow::Ok(live.call_typed(&args.invoke, &values).await?)
    })?;
    let mut stdout = std::io::stdout().lock();
    for r in out.results {
        writeln!(stdout, "{r}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A CLI word as a JSON argument: JSON numbers stay numbers, anything else
/// becomes a string (the signature check then says what was expected).
fn arg_value(word: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(word) {
        Ok(v @ serde_json::Value::Number(_)) => v,
        _ => serde_json::Value::String(word.to_owned()),
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let data = data_dir(&args.data);
    let key = signing_key(&args.signing, &data)?;
    let path = locate(&args.snapshot, &args.data)?;
    let bytes = dir::read_file(&path, None)?;
    // Header first (so a damaged file still shows what it claims to be),
    // then the checksum and signature over the whole file.
    let header = format::read_header(&bytes, bytes.len() as u64);
    let verified = format::verify(&bytes, &policy(key.as_ref()));
    let header = match (header, &verified) {
        (Ok(h), _) => h,
        (Err(e), _) => return Err(e).with_context(|| path.display().to_string()),
    };
    let status = match &verified {
        Ok(h) if h.signed => "ok, signature valid".to_string(),
        Ok(_) => "ok, unsigned".to_string(),
        Err(e) => format!("REFUSED ({}): {e}", e.code()),
    };
    if args.json {
        let mut doc = serde_json::to_value(&header)?;
        doc["path"] = serde_json::json!(path.display().to_string());
        doc["verification"] = match &verified {
            Ok(_) => serde_json::json!({"ok": true}),
            Err(e) => serde_json::json!({"ok": false, "code": e.code(), "message": e.to_string()}),
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_header(&path, &header, &status);
    }
    Ok(if verified.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_header(path: &Path, h: &SnapshotHeader, status: &str) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!("file:           {}", path.display());
    println!("verification:   {status}");
    println!("format version: {}", h.format_version);
    println!("snapshot id:    {}", opt(&h.meta.snapshot_id));
    println!("created at:     {}", h.created_at);
    println!("module blake3:  {}", h.module_blake3);
    println!("engine:         {}", h.engine_fingerprint);
    println!(
        "function:       {} (name {}, tenant {})",
        opt(&h.meta.function_id),
        opt(&h.meta.function_name),
        opt(&h.meta.tenant)
    );
    println!("init export:    {}", opt(&h.meta.init_export));
    println!("writer:         {}", opt(&h.meta.writer));
    println!(
        "memories:       {} ({} total, {} stored{})",
        h.memory_count,
        human(h.memory_bytes),
        human(h.stored_bytes),
        if h.full_image { ", full image" } else { "" }
    );
    println!("globals:        {}", h.global_count);
    println!(
        "body:           {} {} ({} uncompressed)",
        h.compression,
        human(h.body_len),
        human(h.body_raw_len)
    );
    println!(
        "signed:         {}",
        h.signer
            .as_deref()
            .map_or("no".to_string(), |k| format!("yes, key {k}"))
    );
    println!("file size:      {}", human(h.file_len));
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let dir = SnapshotDir::in_data_dir(&data_dir(&args.data));
    let mut entries = dir.list()?;
    if let Some(function) = &args.function {
        entries.retain(|e| {
            e.header
                .as_ref()
                .is_ok_and(|h| h.meta.function_id.as_deref() == Some(function))
        });
    }
    if args.json {
        let docs: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| match &e.header {
                Ok(h) => serde_json::json!({
                    "id": e.id, "path": e.path, "ok": true, "header": h,
                }),
                Err(err) => serde_json::json!({
                    "id": e.id, "path": e.path, "ok": false,
                    "error": {"code": err.code(), "message": err.to_string()},
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        eprintln!("no snapshots in {}", dir.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<20} {:<24} {:<12} {:>10} {:>10}  STATUS",
        "ID", "CREATED", "FUNCTION", "INIT", "MEMORY", "FILE"
    );
    for e in &entries {
        match &e.header {
            Ok(h) => println!(
                "{:<32} {:<20} {:<24} {:<12} {:>10} {:>10}  {}",
                e.id,
                h.created_at.get(..19).unwrap_or(&h.created_at),
                h.meta
                    .function_id
                    .as_deref()
                    .or(h.meta.function_name.as_deref())
                    .unwrap_or("-"),
                h.meta.init_export.as_deref().unwrap_or("-"),
                human(h.memory_bytes),
                human(h.file_len),
                if h.signed { "signed" } else { "ok" }
            ),
            Err(err) => println!("{:<32} {:<20} {}: {err}", e.id, "-", err.code()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let as_path = PathBuf::from(&args.snapshot);
    let is_path = args.snapshot.contains(std::path::MAIN_SEPARATOR)
        || args.snapshot.ends_with(&format!(".{}", format::EXTENSION));
    if is_path {
        if as_path.extension().and_then(|e| e.to_str()) != Some(format::EXTENSION) {
            bail!(
                "refusing to delete {}: not a *.{} file",
                as_path.display(),
                format::EXTENSION
            );
        }
        std::fs::remove_file(&as_path)
            .with_context(|| format!("deleting {}", as_path.display()))?;
        println!("deleted {}", as_path.display());
    } else {
        let dir = SnapshotDir::in_data_dir(&data_dir(&args.data));
        dir.delete(&args.snapshot)
            .with_context(|| format!("in {}", dir.root().display()))?;
        println!("deleted snapshot {}", args.snapshot);
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let path = match args.out {
        Some(p) => p,
        None => {
            let data = data_dir(&args.data);
            std::fs::create_dir_all(&data)
                .with_context(|| format!("creating {}", data.display()))?;
            data.join(SIGNING_KEY_FILE)
        }
    };
    let key = generate_signing_key(&path)?;
    let public: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("wrote signing key {} (public key {public})", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Bytes in binary units, one decimal.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
