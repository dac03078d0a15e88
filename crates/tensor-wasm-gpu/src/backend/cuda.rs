//! The CUDA backend, through `cudarc` with the driver loaded at run time.
//!
//! Invariant: nothing here touches a CUDA symbol before [`CudaBackend::probe`]
//! has confirmed `libcuda` loads, because `cudarc` with dynamic loading panics
//! on first use when the library is absent. Construction additionally runs
//! under `catch_unwind`, so a driver lacking a symbol degrades to an error.
//!
//! All work goes to the context's default stream, so operations from every
//! session run in submission order; buffer copies are synchronous for the
//! guest memory involved (the guest may reuse its memory as soon as a call
//! returns). Completion is signalled by a stream event: [`Backend::fence`]
//! records one, and waiting blocks on the driver (blocking-sync scheduling),
//! never on a timer.

use super::{Backend, BufferId, Fence, KernelArg, KernelModule, LaunchDims, check_f32_len};
use crate::error::GpuError;
use cudarc::driver::sys as cu;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The built-in kernels, embedded as PTX text.
const BUILTIN_PTX: &str = include_str!("cuda_kernels.ptx");
/// Threads per block for element-wise kernels and reductions.
const BLOCK: u32 = 256;
/// Most blocks in the first stage of a reduction.
const MAX_REDUCE_BLOCKS: u32 = 1024;

fn driver_err(what: &str) -> impl FnOnce(cudarc::driver::DriverError) -> GpuError + '_ {
    move |e| GpuError::Device(format!("{what}: {e}"))
}

struct Builtins {
    vector_add: CudaFunction,
    saxpy: CudaFunction,
    relu: CudaFunction,
    softmax: CudaFunction,
    reduce_sum: CudaFunction,
    reduce_max: CudaFunction,
    matmul_naive: CudaFunction,
}

/// A guest-loaded module and the functions resolved from it so far.
struct CudaKernelModule {
    module: Arc<CudaModule>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

/// One kernel parameter as the driver sees it: 4 or 8 bytes.
enum ParamWord {
    W32(u32),
    W64(u64),
}

/// First driver version with `cuFuncGetParamInfo` (12.4).
const PARAM_INFO_DRIVER: i32 = 12040;

/// The driver's version (`cuDriverGetVersion`), read once.
fn driver_version() -> i32 {
    static VERSION: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let mut v = 0i32;
        // SAFETY: only reached from `launch`, which needs an open backend, so
        // `libcuda` is loaded; `v` is a valid out-pointer.
        let rc = unsafe { cu::cuDriverGetVersion(&mut v) };
        if rc == cu::CUresult::CUDA_SUCCESS {
            v
        } else {
            0
        }
    })
}

/// Checks a guest kernel's argument list against the parameter list the
/// driver reports for the loaded function — count, and each parameter's
/// size — so a PTX text that the signature scanner read differently from
/// the driver can never make `cuLaunchKernel` read past the argument array.
/// Drivers older than 12.4 cannot report it: guest kernels are refused there.
fn check_params_with_driver(
    func: &CudaFunction,
    entry: &str,
    words: &[ParamWord],
) -> Result<(), GpuError> {
    if driver_version() < PARAM_INFO_DRIVER {
        return Err(GpuError::KernelLoad(format!(
            "the CUDA driver ({}) cannot report kernel parameters (needs 12.4 or newer); \
             raw PTX launches are refused",
            driver_version()
        )));
    }
    let raw = func.cu_function();
    for (i, w) in words.iter().enumerate() {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: `raw` is a live function of a module this backend holds;
        // the out-pointers are valid locals.
        let rc = unsafe { cu::cuFuncGetParamInfo(raw, i, &mut offset, &mut size) };
        if rc != cu::CUresult::CUDA_SUCCESS {
            return Err(GpuError::ArgMismatch(format!(
                "kernel `{entry}`: the driver reports fewer than {} parameters",
                words.len()
            )));
        }
        let want = match w {
            ParamWord::W32(_) => 4,
            ParamWord::W64(_) => 8,
        };
        if size != want {
            return Err(GpuError::ArgMismatch(format!(
                "kernel `{entry}` parameter {i}: the driver reports {size} bytes, \
                 the argument has {want}"
            )));
        }
    }
    let (mut offset, mut size) = (0usize, 0usize);
    // SAFETY: as above; asking one past the end must fail.
    let rc = unsafe { cu::cuFuncGetParamInfo(raw, words.len(), &mut offset, &mut size) };
    if rc == cu::CUresult::CUDA_SUCCESS {
        return Err(GpuError::ArgMismatch(format!(
            "kernel `{entry}`: the driver reports more than {} parameters",
            words.len()
        )));
    }
    Ok(())
}

/// The CUDA backend (one device, one context, its default stream).
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    builtins: Builtins,
    blas: Option<Mutex<cudarc::cublas::CudaBlas>>,
    /// Live buffers. Entries are shared (`Arc`) so a copy clones its slice
    /// and releases the map's lock before the driver call: no lock that
    /// every tenant needs is held across a copy. A freed buffer's memory
    /// goes back once the last copy using it has finished.
    buffers: Mutex<HashMap<BufferId, Arc<CudaSlice<u8>>>>,
    next_id: AtomicU64,
    cache_dir: Option<PathBuf>,
    /// Authenticates cached cubins (see `sealed.rs`).
    cache_key: crate::CacheKey,
    device_name: String,
    compute_capability: (i32, i32),
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device_name)
            .field("cublas", &self.blas.is_some())
            .finish_non_exhaustive()
    }
}

impl CudaBackend {
    /// Checks, without touching the CUDA API, that the driver library loads.
    pub fn probe() -> Result<(), GpuError> {
        // SAFETY: `is_culib_present` only tries `dlopen` on candidate library
        // names and drops the handle; it calls no CUDA function.
        if unsafe { cu::is_culib_present() } {
            Ok(())
        } else {
            Err(GpuError::Unavailable(
                "the CUDA driver library (libcuda) is not installed".into(),
            ))
        }
    }

    /// True when cuBLAS can be loaded (checked without touching its API).
    pub fn cublas_present() -> bool {
        // SAFETY: as in `probe`: a `dlopen` attempt only.
        unsafe { cudarc::cublas::sys::is_culib_present() }
    }

    /// Opens device `ordinal`. `cache_dir`, when set, stores compiled cubins.
    pub fn new(ordinal: usize, cache_dir: Option<PathBuf>) -> Result<Self, GpuError> {
        Self::probe()?;
        std::panic::catch_unwind(move || Self::open(ordinal, cache_dir)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(GpuError::Unavailable(format!(
                "CUDA initialisation panicked: {msg}"
            )))
        })
    }

    fn open(ordinal: usize, cache_dir: Option<PathBuf>) -> Result<Self, GpuError> {
        let count = CudaContext::device_count().map_err(driver_err("cuInit/device count"))?;
        if count <= 0 || ordinal >= count as usize {
            return Err(GpuError::Unavailable(format!(
                "no CUDA device {ordinal} ({count} present)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("create context"))?;
        // Waiting on an event then sleeps in the driver instead of spinning.
        ctx.set_blocking_synchronize()
            .map_err(driver_err("set blocking sync"))?;
        // SAFETY: this backend submits everything to one stream (the default
        // stream), so stream-order alone serialises every use of a buffer;
        // the per-buffer events cudarc would record are unnecessary.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let device_name = ctx.name().map_err(driver_err("device name"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver_err("compute capability"))?;
        let module = ctx
            .load_module(Ptx::from_src(BUILTIN_PTX))
            .map_err(driver_err("load built-in kernels"))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| GpuError::Device(format!("built-in kernel {name}: {e}")))
        };
        let builtins = Builtins {
            vector_add: f("tw_vector_add")?,
            saxpy: f("tw_saxpy")?,
            relu: f("tw_relu")?,
            softmax: f("tw_softmax")?,
            reduce_sum: f("tw_reduce_sum")?,
            reduce_max: f("tw_reduce_max")?,
            matmul_naive: f("tw_matmul_naive")?,
        };
        let blas = if Self::cublas_present() {
            match cudarc::cublas::CudaBlas::new(stream.clone()) {
                Ok(b) => Some(Mutex::new(b)),
                Err(e) => {
                    tracing::warn!(error = %e, "cuBLAS present but failed to initialise; matmul uses the built-in kernel");
                    None
                }
            }
        } else {
            tracing::info!("cuBLAS not found; matmul uses the built-in kernel");
            None
        };
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| GpuError::CacheIo {
                path: dir.clone(),
                source,
            })?;
            // Temp files of a writer that crashed (ten minutes old: not in flight).
            tensor_wasm_fs::durable::sweep_temp_files(dir, std::time::Duration::from_secs(600));
        }
        Ok(CudaBackend {
            ctx,
            stream,
            builtins,
            blas,
            buffers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            cache_dir,
            cache_key: crate::CacheKey::ephemeral(),
            device_name,
            compute_capability,
        })
    }

    /// Uses `key` (the data dir's cache key) for cached cubins, so entries
    /// survive restarts; without one a key of this process is used.
    pub fn with_cache_key(mut self, key: Option<crate::CacheKey>) -> Self {
        if let Some(key) = key {
            self.cache_key = key;
        }
        self
    }

    /// Whether matmul runs on cuBLAS (as opposed to the built-in kernel).
    pub fn uses_cublas(&self) -> bool {
        self.blas.is_some()
    }

    fn buffers(&self) -> MutexGuard<'_, HashMap<BufferId, Arc<CudaSlice<u8>>>> {
        self.buffers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buffer `buf`, cloned out of the map (whose lock is released on return).
    fn buffer(&self, buf: BufferId) -> Result<Arc<CudaSlice<u8>>, GpuError> {
        self.buffers()
            .get(&buf)
            .cloned()
            .ok_or(GpuError::InvalidHandle {
                kind: "buffer",
                handle: buf.0 as u32,
            })
    }

    /// Device address of buffer `id`, after checking it holds `n` f32s.
    fn f32_ptr(
        &self,
        map: &HashMap<BufferId, Arc<CudaSlice<u8>>>,
        id: BufferId,
        n: usize,
    ) -> Result<u64, GpuError> {
        let slice = map.get(&id).ok_or(GpuError::InvalidHandle {
            kind: "buffer",
            handle: id.0 as u32,
        })?;
        check_f32_len("buffer", n, slice.len() as u64)?;
        let (ptr, _sync) = slice.device_ptr(&self.stream);
        Ok(ptr)
    }

    fn launch_words(
        &self,
        func: &CudaFunction,
        cfg: LaunchConfig,
        words: &[ParamWord],
    ) -> Result<(), GpuError> {
        let mut builder = self.stream.launch_builder(func);
        for w in words {
            match w {
                ParamWord::W32(v) => builder.arg(v),
                ParamWord::W64(v) => builder.arg(v),
            };
        }
        // SAFETY: `words` matches the kernel's parameter list in count and
        // width: for built-ins by construction, for guest kernels because the
        // runtime checked the typed arguments against the PTX signature.
        // Device pointers come from live allocations in `self.buffers`, freed
        // only in stream order after this launch.
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(driver_err("kernel launch"))
    }

    fn elementwise_cfg(n: usize) -> Result<LaunchConfig, GpuError> {
        let n32 = u32::try_from(n)
            .map_err(|_| GpuError::InvalidArgument(format!("{n} elements exceed u32")))?;
        Ok(LaunchConfig {
            grid_dim: (n32.div_ceil(BLOCK).max(1), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        })
    }

    fn reduce(
        &self,
        func: &CudaFunction,
        x: BufferId,
        out: BufferId,
        n: usize,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Err(GpuError::InvalidArgument(
                "reduction over zero elements".into(),
            ));
        }
        let n32 = u32::try_from(n)
            .map_err(|_| GpuError::InvalidArgument(format!("{n} elements exceed u32")))?;
        let blocks = n32.div_ceil(BLOCK).min(MAX_REDUCE_BLOCKS);
        let map = self.buffers();
        let xp = self.f32_ptr(&map, x, n)?;
        let op = self.f32_ptr(&map, out, 1)?;
        let cfg = |grid| LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        if blocks == 1 {
            return self.launch_words(
                func,
                cfg(1),
                &[ParamWord::W64(xp), ParamWord::W64(op), ParamWord::W32(n32)],
            );
        }
        // SAFETY: every element of the partials buffer is written by stage 1
        // (one per block) before stage 2 reads it; both are in stream order.
        let partial: CudaSlice<f32> = unsafe { self.stream.alloc(blocks as usize) }
            .map_err(driver_err("reduction scratch"))?;
        let (pp, _sync) = partial.device_ptr(&self.stream);
        self.launch_words(
            func,
            cfg(blocks),
            &[ParamWord::W64(xp), ParamWord::W64(pp), ParamWord::W32(n32)],
        )?;
        self.launch_words(
            func,
            cfg(1),
            &[
                ParamWord::W64(pp),
                ParamWord::W64(op),
                ParamWord::W32(blocks),
            ],
        )
    }

    /// PTX → cubin through the driver's linker, cached on disk by BLAKE3 of
    /// the PTX and the device's compute capability. `None` without a cache dir.
    fn cached_cubin(&self, ptx: &str, key: &blake3::Hash) -> Result<Option<Vec<u8>>, GpuError> {
        let Some(dir) = &self.cache_dir else {
            return Ok(None);
        };
        let (major, minor) = self.compute_capability;
        let name = format!("{}-sm{major}{minor}.cubin", key.to_hex());
        let path = dir.join(&name);
        if let Ok(bytes) = std::fs::read(&path) {
            // The driver runs what it is given: only an entry sealed with
            // the cache key under its own name is used.
            match crate::sealed::open(&self.cache_key, &name, &bytes) {
                Some(cubin) => return Ok(Some(cubin.to_vec())),
                None => {
                    tracing::warn!(path = %path.display(),
                        "kernel cache entry fails authentication (corrupt, copied or foreign); recompiling");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let cubin = self.link_ptx(ptx)?;
        // A failed cache write only costs a recompilation next time.
        let sealed = crate::sealed::seal(&self.cache_key, &name, &cubin);
        if let Err(e) = tensor_wasm_fs::durable::write_atomic(&path, &sealed) {
            tracing::warn!(path = %path.display(), error = %e, "could not write kernel cache entry");
        }
        Ok(Some(cubin))
    }

    fn link_ptx(&self, ptx: &str) -> Result<Vec<u8>, GpuError> {
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("bind context"))?;
        let mut log = vec![0u8; 8192];
        let mut options = [
            cu::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
            cu::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
        ];
        let mut values: [*mut std::ffi::c_void; 2] =
            [log.as_mut_ptr().cast(), log.len() as *mut std::ffi::c_void];
        let mut state: cu::CUlinkState = std::ptr::null_mut();
        // SAFETY: `options`/`values` are two valid JIT options whose values
        // (a writable log buffer and its size) outlive the link state, which
        // is destroyed below on every path.
        let created = unsafe {
            cu::cuLinkCreate_v2(2, options.as_mut_ptr(), values.as_mut_ptr(), &mut state)
        };
        created.result().map_err(driver_err("cuLinkCreate"))?;
        let mut text = ptx.as_bytes().to_vec();
        text.push(0);
        let name = c"guest.ptx";
        // SAFETY: `state` is a live link state; `text` is NUL-terminated PTX
        // that outlives the call; no per-input options are passed.
        let added = unsafe {
            cu::cuLinkAddData_v2(
                state,
                cu::CUjitInputType::CU_JIT_INPUT_PTX,
                text.as_mut_ptr().cast(),
                text.len(),
                name.as_ptr(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        let mut cubin_ptr: *mut std::ffi::c_void = std::ptr::null_mut();
        let mut cubin_len = 0usize;
        let completed = added.result().and_then(|_| {
            // SAFETY: `state` is live; the out-pointers are valid locals.
            unsafe { cu::cuLinkComplete(state, &mut cubin_ptr, &mut cubin_len) }.result()
        });
        let cubin = completed.map(|_| {
            // SAFETY: on success the driver returns a cubin of `cubin_len`
            // bytes owned by `state`; it is copied before `state` is destroyed.
            unsafe { std::slice::from_raw_parts(cubin_ptr.cast::<u8>(), cubin_len) }.to_vec()
        });
        // SAFETY: `state` was created above and is destroyed exactly once.
        let _ = unsafe { cu::cuLinkDestroy(state) };
        cubin.map_err(|e| {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            GpuError::KernelLoad(format!("PTX compilation failed ({e}): {log}"))
        })
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_name(&self) -> String {
        self.device_name.clone()
    }

    fn completes_synchronously(&self) -> bool {
        false
    }

    fn alloc(&self, bytes: u64) -> Result<BufferId, GpuError> {
        let len = usize::try_from(bytes)
            .map_err(|_| GpuError::InvalidArgument(format!("{bytes} bytes is too large")))?;
        // Zero-filled, so no tenant ever sees memory another one released.
        let slice = self
            .stream
            .alloc_zeros::<u8>(len)
            .map_err(driver_err("device allocation"))?;
        let id = BufferId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        self.buffers().insert(id, Arc::new(slice));
        Ok(id)
    }

    fn free(&self, buf: BufferId) {
        // Dropping the slice frees it in stream order, after queued work.
        let slice = self.buffers().remove(&buf);
        drop(slice);
    }

    fn write(&self, buf: BufferId, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        let slice = self.buffer(buf)?;
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|end| end > slice.len() as u64) {
            return Err(GpuError::OutOfRange(format!(
                "{} bytes at offset {offset} exceed buffer of {} bytes",
                data.len(),
                slice.len()
            )));
        }
        let (base, _sync) = slice.device_ptr(&self.stream);
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("bind context"))?;
        // SAFETY: [base+offset, base+offset+len) lies inside the live
        // allocation (checked above); `data` is a valid host slice. The
        // synchronous copy returns once `data` has been consumed.
        unsafe { cu::cuMemcpyHtoD_v2(base + offset, data.as_ptr().cast(), data.len()) }
            .result()
            .map_err(driver_err("host-to-device copy"))
    }

    fn read(&self, buf: BufferId, offset: u64, out: &mut [u8]) -> Result<(), GpuError> {
        let slice = self.buffer(buf)?;
        let end = offset.checked_add(out.len() as u64);
        if end.is_none_or(|end| end > slice.len() as u64) {
            return Err(GpuError::OutOfRange(format!(
                "{} bytes at offset {offset} exceed buffer of {} bytes",
                out.len(),
                slice.len()
            )));
        }
        let (base, _sync) = slice.device_ptr(&self.stream);
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("bind context"))?;
        // SAFETY: the source range lies inside the live allocation (checked
        // above); `out` is a writable host slice of exactly the copied length.
        // The synchronous copy waits for queued work and completes on return.
        unsafe { cu::cuMemcpyDtoH_v2(out.as_mut_ptr().cast(), base + offset, out.len()) }
            .result()
            .map_err(driver_err("device-to-host copy"))
    }

    fn load_module(&self, ptx: &str, key: &blake3::Hash) -> Result<KernelModule, GpuError> {
        if ptx.contains('\0') {
            return Err(GpuError::KernelLoad("PTX text contains a NUL byte".into()));
        }
        let image = match self.cached_cubin(ptx, key)? {
            Some(cubin) => Ptx::from_binary(cubin),
            None => Ptx::from_src(ptx),
        };
        let module = self
            .ctx
            .load_module(image)
            .map_err(|e| GpuError::KernelLoad(format!("driver rejected module: {e}")))?;
        Ok(KernelModule(Arc::new(CudaKernelModule {
            module,
            functions: Mutex::new(HashMap::new()),
        })))
    }

    fn launch(
        &self,
        module: &KernelModule,
        entry: &str,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<(), GpuError> {
        let module = module
            .0
            .downcast_ref::<CudaKernelModule>()
            .ok_or_else(|| GpuError::Device("kernel module from another backend".into()))?;
        if entry.contains('\0') {
            return Err(GpuError::InvalidArgument("entry name contains NUL".into()));
        }
        let func = {
            let mut fns = module.functions.lock().unwrap_or_else(|p| p.into_inner());
            match fns.get(entry) {
                Some(f) => f.clone(),
                None => {
                    let f = module
                        .module
                        .load_function(entry)
                        .map_err(|e| GpuError::KernelLoad(format!("entry {entry}: {e}")))?;
                    fns.insert(entry.to_string(), f.clone());
                    f
                }
            }
        };
        let map = self.buffers();
        let mut words = Vec::with_capacity(args.len());
        for arg in args {
            words.push(match *arg {
                KernelArg::Buffer(id) => ParamWord::W64(self.f32_ptr(&map, id, 0)?),
                KernelArg::I32(v) => ParamWord::W32(v as u32),
                KernelArg::U32(v) => ParamWord::W32(v),
                KernelArg::I64(v) => ParamWord::W64(v as u64),
                KernelArg::U64(v) => ParamWord::W64(v),
                KernelArg::F32(v) => ParamWord::W32(v.to_bits()),
                KernelArg::F64(v) => ParamWord::W64(v.to_bits()),
            });
        }
        check_params_with_driver(&func, entry, &words)?;
        let cfg = LaunchConfig {
            grid_dim: (dims.grid[0], dims.grid[1], dims.grid[2]),
            block_dim: (dims.block[0], dims.block[1], dims.block[2]),
            shared_mem_bytes: dims.shared_mem_bytes,
        };
        self.launch_words(&func, cfg, &words)
    }

    fn vector_add(
        &self,
        a: BufferId,
        b: BufferId,
        out: BufferId,
        n: usize,
    ) -> Result<(), GpuError> {
        let cfg = Self::elementwise_cfg(n)?;
        let map = self.buffers();
        let words = [
            ParamWord::W64(self.f32_ptr(&map, a, n)?),
            ParamWord::W64(self.f32_ptr(&map, b, n)?),
            ParamWord::W64(self.f32_ptr(&map, out, n)?),
            ParamWord::W32(n as u32),
        ];
        if n == 0 {
            return Ok(());
        }
        self.launch_words(&self.builtins.vector_add, cfg, &words)
    }

    fn saxpy(
        &self,
        alpha: f32,
        x: BufferId,
        y: BufferId,
        out: BufferId,
        n: usize,
    ) -> Result<(), GpuError> {
        let cfg = Self::elementwise_cfg(n)?;
        let map = self.buffers();
        let words = [
            ParamWord::W32(alpha.to_bits()),
            ParamWord::W64(self.f32_ptr(&map, x, n)?),
            ParamWord::W64(self.f32_ptr(&map, y, n)?),
            ParamWord::W64(self.f32_ptr(&map, out, n)?),
            ParamWord::W32(n as u32),
        ];
        if n == 0 {
            return Ok(());
        }
        self.launch_words(&self.builtins.saxpy, cfg, &words)
    }

    fn matmul(
        &self,
        a: BufferId,
        b: BufferId,
        c: BufferId,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        let dim = |d: usize| {
            i32::try_from(d)
                .map_err(|_| GpuError::InvalidArgument(format!("matrix dimension {d} too large")))
        };
        let (m32, k32, n32) = (dim(m)?, dim(k)?, dim(n)?);
        let prod = |x: usize, y: usize| {
            x.checked_mul(y)
                .ok_or_else(|| GpuError::InvalidArgument("matrix dimensions overflow".into()))
        };
        let map = self.buffers();
        let ap = self.f32_ptr(&map, a, prod(m, k)?)?;
        let bp = self.f32_ptr(&map, b, prod(k, n)?)?;
        let cp = self.f32_ptr(&map, c, prod(m, n)?)?;
        if let Some(blas) = &self.blas {
            let blas = blas.lock().unwrap_or_else(|p| p.into_inner());
            let (alpha, beta) = (1.0f32, 0.0f32);
            // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: swap the operands
            // and pass the row-major leading dimensions.
            // SAFETY: the three device ranges hold k·n, m·k and m·n f32s
            // (checked above); the handle is bound to this backend's stream.
            unsafe {
                cudarc::cublas::result::sgemm(
                    *blas.handle(),
                    cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                    cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                    n32,
                    m32,
                    k32,
                    &alpha,
                    bp as *const f32,
                    n32,
                    ap as *const f32,
                    k32,
                    &beta,
                    cp as *mut f32,
                    n32,
                )
            }
            .map_err(|e| GpuError::Device(format!("cuBLAS sgemm: {e}")))
        } else {
            let cfg = LaunchConfig {
                grid_dim: ((n32 as u32).div_ceil(16), (m32 as u32).div_ceil(16), 1),
                block_dim: (16, 16, 1),
                shared_mem_bytes: 0,
            };
            let words = [
                ParamWord::W64(ap),
                ParamWord::W64(bp),
                ParamWord::W64(cp),
                ParamWord::W32(m32 as u32),
                ParamWord::W32(k32 as u32),
                ParamWord::W32(n32 as u32),
            ];
            self.launch_words(&self.builtins.matmul_naive, cfg, &words)
        }
    }

    fn softmax(
        &self,
        x: BufferId,
        out: BufferId,
        rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        if cols == 0 {
            return Err(GpuError::InvalidArgument(
                "softmax with zero columns".into(),
            ));
        }
        let total = rows
            .checked_mul(cols)
            .ok_or_else(|| GpuError::InvalidArgument("softmax dimensions overflow".into()))?;
        let cols32 = u32::try_from(cols)
            .map_err(|_| GpuError::InvalidArgument("too many columns".into()))?;
        let cfg = Self::elementwise_cfg(rows)?;
        let map = self.buffers();
        let words = [
            ParamWord::W64(self.f32_ptr(&map, x, total)?),
            ParamWord::W64(self.f32_ptr(&map, out, total)?),
            ParamWord::W32(rows as u32),
            ParamWord::W32(cols32),
        ];
        if rows == 0 {
            return Ok(());
        }
        self.launch_words(&self.builtins.softmax, cfg, &words)
    }

    fn sum(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError> {
        self.reduce(&self.builtins.reduce_sum, x, out, n)
    }

    fn max(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError> {
        self.reduce(&self.builtins.reduce_max, x, out, n)
    }

    fn relu(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError> {
        let cfg = Self::elementwise_cfg(n)?;
        let map = self.buffers();
        let words = [
            ParamWord::W64(self.f32_ptr(&map, x, n)?),
            ParamWord::W64(self.f32_ptr(&map, out, n)?),
            ParamWord::W32(n as u32),
        ];
        if n == 0 {
            return Ok(());
        }
        self.launch_words(&self.builtins.relu, cfg, &words)
    }

    fn fence(&self) -> Result<Fence, GpuError> {
        let event = self
            .stream
            .record_event(None)
            .map_err(driver_err("record event"))?;
        Ok(Fence::from_blocking(move || {
            event.synchronize().map_err(driver_err("wait for device"))
        }))
    }
}
