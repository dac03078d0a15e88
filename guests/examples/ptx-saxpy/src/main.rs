//! Runs a raw PTX `saxpy` kernel (y = alpha·x + y) through `Kernel::launch`.
//! On the CPU backend raw PTX needs a CUDA device, so the guest says so and
//! falls back to the built-in `saxpy` op, then checks the result either way.
//!
//! Usage: `ptx-saxpy [N]` (or N on stdin; default 65536).
//! Prints `ptx-saxpy n=N backend=B path=ptx|builtin ok` or exits 1 on a mismatch.

use tensor_wasm_guest::{Buffer, ErrorKind, Kernel, backend, ops};

const SAXPY_PTX: &str = r#"
.version 7.0
.target sm_52
.address_size 64
.visible .entry saxpy(
    .param .u64 p_x,
    .param .u64 p_y,
    .param .f32 p_alpha,
    .param .u32 p_n
)
{
    .reg .pred  %p<2>;
    .reg .b32   %r<6>;
    .reg .f32   %f<5>;
    .reg .b64   %rd<6>;
    ld.param.u64    %rd0, [p_x];
    ld.param.u64    %rd1, [p_y];
    ld.param.f32    %f0, [p_alpha];
    ld.param.u32    %r0, [p_n];
    mov.u32         %r1, %ctaid.x;
    mov.u32         %r2, %ntid.x;
    mov.u32         %r3, %tid.x;
    mad.lo.u32      %r4, %r1, %r2, %r3;
    setp.ge.u32     %p0, %r4, %r0;
    @%p0 bra        DONE;
    cvta.to.global.u64 %rd0, %rd0;
    cvta.to.global.u64 %rd1, %rd1;
    mul.wide.u32    %rd2, %r4, 4;
    add.s64         %rd3, %rd0, %rd2;
    add.s64         %rd4, %rd1, %rd2;
    ld.global.f32   %f1, [%rd3];
    ld.global.f32   %f2, [%rd4];
    mul.rn.f32      %f3, %f0, %f1;
    add.rn.f32      %f4, %f3, %f2;
    st.global.f32   [%rd4], %f4;
DONE:
    ret;
}
"#;

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
    let kernel = Kernel::load(SAXPY_PTX, "saxpy")?;
    let launched = kernel
        .launch()
        .threads_1d(n as u32, 256)
        .arg(&dx)
        .arg(&dy)
        .arg(alpha)
        .arg(n as u32)
        .run();
    let path = match launched {
        Ok(()) => "ptx",
        Err(e) if e.kind == ErrorKind::NeedsCuda => {
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
