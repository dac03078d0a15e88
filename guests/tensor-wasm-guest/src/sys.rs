//! The raw `tw_gpu_v1` imports, one-to-one with `GPU-INTERFACE.md`. Prefer
//! the safe wrappers in the crate root; these are here for FFI-level control.
//!
//! On targets other than `wasm32` the functions are stubs that return
//! [`ERR_DEVICE`], so the SDK builds (and its docs compile) on the host.

#![allow(missing_docs)]

/// Import module name.
pub const MODULE: &str = "tw_gpu_v1";

pub const OK: i32 = 0;
pub const ERR_INVALID_POINTER: i32 = -1;
pub const ERR_INVALID_HANDLE: i32 = -2;
pub const ERR_INVALID_ARGUMENT: i32 = -3;
pub const ERR_ARG_MISMATCH: i32 = -4;
pub const ERR_OUT_OF_RANGE: i32 = -5;
pub const ERR_QUOTA_MEMORY: i32 = -6;
pub const ERR_QUOTA_LAUNCHES: i32 = -7;
pub const ERR_NEEDS_CUDA: i32 = -8;
pub const ERR_KERNEL_LOAD: i32 = -9;
pub const ERR_DEVICE: i32 = -10;
pub const ERR_TOO_MANY_HANDLES: i32 = -11;
pub const ERR_NO_MEMORY: i32 = -12;

pub const ARG_BUFFER: u32 = 1;
pub const ARG_I32: u32 = 2;
pub const ARG_U32: u32 = 3;
pub const ARG_I64: u32 = 4;
pub const ARG_U64: u32 = 5;
pub const ARG_F32: u32 = 6;
pub const ARG_F64: u32 = 7;

macro_rules! imports {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* ) -> i32; )*) => {
        #[cfg(target_arch = "wasm32")]
        #[link(wasm_import_module = "tw_gpu_v1")]
        unsafe extern "C" {
            $( pub fn $name($($arg: $ty),*) -> i32; )*
        }

        $(
            #[cfg(not(target_arch = "wasm32"))]
            #[allow(unused_variables, clippy::missing_safety_doc)]
            pub unsafe fn $name($($arg: $ty),*) -> i32 {
                ERR_DEVICE
            }
        )*
    };
}

imports! {
    fn abi_version() -> i32;
    fn backend_kind() -> i32;
    fn last_error(ptr: *mut u8, cap: u32, out_len: *mut u32) -> i32;
    fn buffer_create(size: u64, out_handle: *mut u32) -> i32;
    fn buffer_free(handle: u32) -> i32;
    fn buffer_size(handle: u32, out_size: *mut u64) -> i32;
    fn buffer_write(handle: u32, offset: u64, src: *const u8, len: u32) -> i32;
    fn buffer_read(handle: u32, offset: u64, dst: *mut u8, len: u32) -> i32;
    fn kernel_load(ptx: *const u8, ptx_len: u32, entry: *const u8, entry_len: u32, out_handle: *mut u32) -> i32;
    fn kernel_free(handle: u32) -> i32;
    fn kernel_launch(kernel: u32, launch: *const u32, args: *const u8, arg_count: u32) -> i32;
    fn synchronize() -> i32;
    fn op_vector_add(a: u32, b: u32, out: u32, n: u32) -> i32;
    fn op_saxpy(alpha: f32, x: u32, y: u32, out: u32, n: u32) -> i32;
    fn op_matmul(a: u32, b: u32, c: u32, m: u32, k: u32, n: u32) -> i32;
    fn op_softmax(x: u32, out: u32, rows: u32, cols: u32) -> i32;
    fn op_sum(x: u32, out: u32, n: u32) -> i32;
    fn op_max(x: u32, out: u32, n: u32) -> i32;
    fn op_relu(x: u32, out: u32, n: u32) -> i32;
}
