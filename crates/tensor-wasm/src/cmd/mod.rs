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
    // A missing directory counts as writable when we may create it (root on a
    // fresh host, or a systemd `StateDirectory=` that is about to exist).
    if !dir.exists() && std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".tensor-wasm-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

/// The host interfaces guests of a local command (`run`, `snapshot`) may
/// import: the GPU's, per `--gpu` (see [`local_gpu_runtime`]).
pub fn local_host_interfaces(gpu: &str) -> anyhow::Result<Vec<tensor_wasm_exec::HostPlugin>> {
    Ok(local_gpu_runtime(gpu, None, Default::default())?
        .map(|rt| tensor_wasm_gpu::GpuHost::new(rt).into())
        .into_iter()
        .collect())
}

/// The GPU runtime of a local command (`run`, `snapshot`): the operator's own
/// code on the operator's machine, so its `local` tenant may use raw PTX.
pub fn local_gpu_runtime(
    choice: &str,
    cache_dir: Option<PathBuf>,
    quotas: tensor_wasm_gpu::GpuQuotas,
) -> anyhow::Result<Option<std::sync::Arc<tensor_wasm_gpu::GpuRuntime>>> {
    let runtime = gpu_runtime(choice, cache_dir, quotas, None)?;
    if let Some(rt) = &runtime {
        rt.allow_raw_ptx(["local".to_owned()]);
    }
    Ok(runtime)
}

/// Opens the GPU runtime for `--gpu auto|cuda|cpu|off`: `auto` uses CUDA when
/// a device opens and falls back to the CPU backend (logged once); `cuda`
/// refuses to start without a device; `off` leaves the GPU imports undefined.
pub fn gpu_runtime(
    choice: &str,
    cache_dir: Option<PathBuf>,
    quotas: tensor_wasm_gpu::GpuQuotas,
    cache_key: Option<tensor_wasm_gpu::CacheKey>,
) -> anyhow::Result<Option<std::sync::Arc<tensor_wasm_gpu::GpuRuntime>>> {
    use anyhow::Context;
    if choice.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let backend: tensor_wasm_gpu::BackendChoice =
        choice.parse().map_err(|e| anyhow::anyhow!("--gpu: {e}"))?;
    let runtime = tensor_wasm_gpu::GpuRuntime::new(tensor_wasm_gpu::GpuConfig {
        backend,
        cache_dir,
        quotas,
        cache_key,
    })
    .with_context(|| format!("opening the GPU backend (--gpu {backend})"))?;
    tracing::info!(
        backend = runtime.backend_name(),
        device = %runtime.device_name(),
        "GPU backend ready"
    );
    Ok(Some(runtime))
}
