//! Adds two vectors with the built-in `vector_add` op and checks the result.
//!
//! Usage: `vector-add [N]` (or N on stdin; default 1048576).
//! Prints `vector-add n=N backend=B ok checksum=S` or exits 1 on a mismatch.

use tensor_wasm_guest::{Buffer, backend, ops};

fn main() {
    let n = tensor_wasm_guest::args::usize_param(1 << 20);
    if let Err(e) = run(n) {
        eprintln!("vector-add failed: {e}");
        std::process::exit(2);
    }
}

fn run(n: usize) -> Result<(), tensor_wasm_guest::Error> {
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..n).map(|i| (2 * i) as f32).collect();
    let da = Buffer::from_f32(&a)?;
    let db = Buffer::from_f32(&b)?;
    let out = Buffer::zeros_f32(n)?;
    ops::vector_add(&da, &db, &out, n)?;
    let got = out.to_vec_f32()?;
    if let Some(i) = (0..n).find(|&i| got[i] != a[i] + b[i]) {
        println!("vector-add MISMATCH at {i}: {} != {}", got[i], a[i] + b[i]);
        std::process::exit(1);
    }
    let checksum: f64 = got.iter().map(|v| *v as f64).sum();
    println!(
        "vector-add n={n} backend={:?} ok checksum={checksum}",
        backend()
    );
    Ok(())
}
