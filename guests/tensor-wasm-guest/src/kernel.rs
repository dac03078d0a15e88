use crate::{Buffer, Result, check, sys};

/// A PTX kernel entry loaded by this instance (compiled once per PTX text by
/// the host, cached by BLAKE3).
///
/// ```no_run
/// use tensor_wasm_guest::{Buffer, Kernel};
/// const PTX: &str = "..."; // PTX text with `.entry scale(.param .u64 p, .param .f32 s, .param .u32 n)`
/// let data = Buffer::from_f32(&[1.0; 256])?;
/// let kernel = Kernel::load(PTX, "scale")?;
/// kernel
///     .launch()
///     .grid(1, 1, 1)
///     .block(256, 1, 1)
///     .arg(&data)
///     .arg(2.0f32)
///     .arg(256u32)
///     .run()?;
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
#[derive(Debug)]
pub struct Kernel {
    handle: u32,
}

impl Kernel {
    /// Loads entry `entry` of the PTX module `ptx`.
    pub fn load(ptx: &str, entry: &str) -> Result<Self> {
        let mut handle = 0u32;
        // SAFETY: both strings are readable for their lengths; `handle` is a
        // valid out-pointer.
        check(unsafe {
            sys::kernel_load(
                ptx.as_ptr(),
                ptx.len() as u32,
                entry.as_ptr(),
                entry.len() as u32,
                &mut handle,
            )
        })?;
        Ok(Kernel { handle })
    }

    /// Starts a launch: set grid, block, shared memory and arguments, then `run`.
    pub fn launch(&self) -> Launch<'_> {
        Launch {
            kernel: self,
            dims: [1, 1, 1, 1, 1, 1, 0],
            args: Vec::new(),
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: plain handle.
        let _ = unsafe { sys::kernel_free(self.handle) };
    }
}

/// One typed kernel argument.
#[derive(Debug, Clone, Copy)]
pub enum KernelArg<'a> {
    /// A device buffer (passed as a pointer, PTX `.u64`/`.b64`/`.s64`).
    Buffer(&'a Buffer),
    /// PTX `.s32`/`.u32`/`.b32`.
    I32(i32),
    /// PTX `.s32`/`.u32`/`.b32`.
    U32(u32),
    /// PTX `.s64`/`.u64`/`.b64`.
    I64(i64),
    /// PTX `.s64`/`.u64`/`.b64`.
    U64(u64),
    /// PTX `.f32`.
    F32(f32),
    /// PTX `.f64`.
    F64(f64),
}

impl KernelArg<'_> {
    fn record(&self) -> [u8; 16] {
        let (tag, payload) = match *self {
            KernelArg::Buffer(b) => (sys::ARG_BUFFER, b.handle() as u64),
            KernelArg::I32(v) => (sys::ARG_I32, v as u32 as u64),
            KernelArg::U32(v) => (sys::ARG_U32, v as u64),
            KernelArg::I64(v) => (sys::ARG_I64, v as u64),
            KernelArg::U64(v) => (sys::ARG_U64, v),
            KernelArg::F32(v) => (sys::ARG_F32, v.to_bits() as u64),
            KernelArg::F64(v) => (sys::ARG_F64, v.to_bits()),
        };
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&tag.to_le_bytes());
        r[8..].copy_from_slice(&payload.to_le_bytes());
        r
    }
}

impl<'a> From<&'a Buffer> for KernelArg<'a> {
    fn from(b: &'a Buffer) -> Self {
        KernelArg::Buffer(b)
    }
}

macro_rules! scalar_arg {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for KernelArg<'_> {
            fn from(v: $t) -> Self {
                KernelArg::$v(v)
            }
        }
    )*};
}
scalar_arg!(i32 => I32, u32 => U32, i64 => I64, u64 => U64, f32 => F32, f64 => F64);

/// A kernel launch being configured.
#[derive(Debug)]
pub struct Launch<'k> {
    kernel: &'k Kernel,
    dims: [u32; 7],
    args: Vec<[u8; 16]>,
}

impl<'k> Launch<'k> {
    /// Blocks per grid.
    pub fn grid(mut self, x: u32, y: u32, z: u32) -> Self {
        self.dims[..3].copy_from_slice(&[x, y, z]);
        self
    }

    /// Threads per block.
    pub fn block(mut self, x: u32, y: u32, z: u32) -> Self {
        self.dims[3..6].copy_from_slice(&[x, y, z]);
        self
    }

    /// One-dimensional launch covering `threads` threads in blocks of `block`.
    pub fn threads_1d(self, threads: u32, block: u32) -> Self {
        let block = block.max(1);
        self.grid(threads.div_ceil(block).max(1), 1, 1)
            .block(block, 1, 1)
    }

    /// Dynamic shared memory per block, in bytes.
    pub fn shared_mem(mut self, bytes: u32) -> Self {
        self.dims[6] = bytes;
        self
    }

    /// Appends one argument (buffer reference or scalar).
    pub fn arg<'b: 'k>(mut self, arg: impl Into<KernelArg<'b>>) -> Self {
        self.args.push(arg.into().record());
        self
    }

    /// Launches the kernel. On CUDA it runs asynchronously: read a buffer or
    /// call [`crate::synchronize`] to wait for it.
    pub fn run(self) -> Result<()> {
        let args = self.args.concat();
        // SAFETY: `dims` is 7 u32s and `args` is `self.args.len()` 16-byte
        // records, both alive for the call.
        check(unsafe {
            sys::kernel_launch(
                self.kernel.handle,
                self.dims.as_ptr(),
                args.as_ptr(),
                self.args.len() as u32,
            )
        })
    }
}
