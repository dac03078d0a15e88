//! The raw `tw_gpu_v1` imports, one-to-one with `GPU-INTERFACE.md`. Prefer
//! the safe wrappers in the crate root; these are here for FFI-level control.
//!
//! On targets other than `wasm32` the functions are stubs that return
//! [`ERR_DEVICE`], so the SDK builds (and its docs compile) on the host.

#![allow(missing_docs)]

// The import module name, error codes and argument tags: the host's own
// file, compiled here too so the two sides cannot drift apart.
#[path = "../../../crates/tensor-wasm-gpu/src/abi_codes.rs"]
mod codes;
pub use codes::*;

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
