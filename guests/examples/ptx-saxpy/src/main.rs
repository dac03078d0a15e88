//! Runs a raw PTX `saxpy` kernel (y = alpha·x + y) through `Kernel::launch`.
//! On the CPU backend raw PTX needs a CUDA device, and a server enables raw
//! PTX only for the tenants its operator opts in: in either case the guest
//! says so and falls back to the built-in `saxpy` op, then checks the result.
//!
//! Usage: `ptx-saxpy [N]` (or N on stdin; default 65536).
//! Prints `ptx-saxpy n=N backend=B path=ptx|builtin ok` or exits 1 on a mismatch.

use tensor_wasm_guest::{Buffer, ErrorKind, Kernel, backend, ops};

/// The kernel, shared with the GPU crate's CUDA tests.
const SAXPY_PTX: &str = include_str!("saxpy.ptx");

fn main() {
    let n = tensor_wasm_guest::args::usize_param(1 << 16);
    if let Err(e) = run(n) {
        eprintln!("ptx-saxpy failed: {e}");
        std::process::exit(2);
    }
}

fn run(n: usize) -> Result<(), tensor_wasm_guest::Error> {
    let alpha = 2.5f32;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let dx = Buffer::from_f32(&x)?;
    let dy = Buffer::from_f32(&y)?;
    let launched = Kernel::load(SAXPY_PTX, "saxpy").and_then(|kernel| {
        kernel
            .launch()
            .threads_1d(n as u32, 256)
            .arg(&dx)
            .arg(&dy)
            .arg(alpha)
            .arg(n as u32)
            .run()
    });
    let path = match launched {
        Ok(()) => "ptx",
        Err(e) if matches!(e.kind, ErrorKind::NeedsCuda | ErrorKind::RawPtxDisabled) => {
            println!("note: {}; using the built-in saxpy op", e.message);
            ops::saxpy(alpha, &dx, &dy, &dy, n)?;
            "builtin"
        }
        Err(e) => return Err(e),
    };
    let got = dy.to_vec_f32()?;
    if let Some(i) = (0..n).find(|&i| got[i] != alpha * x[i] + y[i]) {
        println!(
            "ptx-saxpy MISMATCH at {i}: {} != {}",
            got[i],
            alpha * x[i] + y[i]
        );
        std::process::exit(1);
    }
    println!("ptx-saxpy n={n} backend={:?} path={path} ok", backend());
    Ok(())
}
