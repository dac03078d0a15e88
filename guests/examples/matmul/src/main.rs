//! Multiplies two N×N matrices with the built-in `matmul` op and checks the
//! result against a naive product computed in the guest.
//!
//! Usage: `matmul [N]` (or N on stdin; default 128).
//! Prints `matmul n=N backend=B ok max_rel_err=E` or exits 1 on a mismatch.

use tensor_wasm_guest::{Buffer, backend, ops};

fn main() {
    let n = tensor_wasm_guest::args::usize_param(128).max(1);
    if let Err(e) = run(n) {
        eprintln!("matmul failed: {e}");
        std::process::exit(2);
    }
}

fn run(n: usize) -> Result<(), tensor_wasm_guest::Error> {
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7 + 3) % 17) as f32 / 17.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..n * n)
        .map(|i| ((i * 5 + 1) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let da = Buffer::from_f32(&a)?;
    let db = Buffer::from_f32(&b)?;
    let dc = Buffer::zeros_f32(n * n)?;
    ops::matmul(&da, &db, &dc, n, n, n)?;
    let c = dc.to_vec_f32()?;
    // Check every row for small sizes, a sample of rows for large ones.
    let step = (n / 64).max(1);
    let mut max_rel = 0f64;
    for i in (0..n).step_by(step) {
        for j in 0..n {
            let want: f64 = (0..n)
                .map(|p| a[i * n + p] as f64 * b[p * n + j] as f64)
                .sum();
            let got = c[i * n + j] as f64;
            let rel = (got - want).abs() / (1.0 + want.abs());
            max_rel = max_rel.max(rel);
            if rel > 1e-4 {
                println!("matmul MISMATCH at ({i},{j}): {got} != {want}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "matmul n={n} backend={:?} ok max_rel_err={max_rel:.2e}",
        backend()
    );
    Ok(())
}
