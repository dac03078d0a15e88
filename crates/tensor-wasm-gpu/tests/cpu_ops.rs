//! CPU backend ops against naive reference implementations on random inputs.

use proptest::prelude::*;
use tensor_wasm_gpu::{Backend, BufferId, CpuBackend};

fn upload(b: &CpuBackend, v: &[f32]) -> BufferId {
    let id = b.alloc((v.len().max(1) * 4) as u64).unwrap();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    b.write(id, 0, &bytes).unwrap();
    id
}

fn download(b: &CpuBackend, id: BufferId, n: usize) -> Vec<f32> {
    let mut bytes = vec![0u8; n * 4];
    b.read(id, 0, &mut bytes).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn vec_f32(max: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-100.0f32..100.0, 1..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn elementwise_ops_match_reference_bit_for_bit(
        (a, b) in (1usize..70_000).prop_flat_map(|n| (
            prop::collection::vec(-1e3f32..1e3, n),
            prop::collection::vec(-1e3f32..1e3, n),
        )),
        alpha in -10.0f32..10.0,
    ) {
        let be = CpuBackend::new();
        let n = a.len();
        let (ia, ib, out) = (upload(&be, &a), upload(&be, &b), be.alloc(n as u64 * 4).unwrap());
        be.vector_add(ia, ib, out, n).unwrap();
        let got = download(&be, out, n);
        for i in 0..n { prop_assert_eq!(got[i].to_bits(), (a[i] + b[i]).to_bits()); }
        be.saxpy(alpha, ia, ib, out, n).unwrap();
        let got = download(&be, out, n);
        for i in 0..n { prop_assert_eq!(got[i].to_bits(), (alpha * a[i] + b[i]).to_bits()); }
        be.relu(ia, out, n).unwrap();
        let got = download(&be, out, n);
        for i in 0..n { prop_assert_eq!(got[i], if a[i] > 0.0 { a[i] } else { 0.0 }); }
        // In place: out aliases an input.
        be.vector_add(ia, ib, ia, n).unwrap();
        let got = download(&be, ia, n);
        for i in 0..n { prop_assert_eq!(got[i].to_bits(), (a[i] + b[i]).to_bits()); }
    }

    #[test]
    fn matmul_matches_naive_triple_loop(m in 1usize..40, k in 1usize..40, n in 1usize..40, seed in any::<u64>()) {
        let mut s = seed;
        let mut rnd = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 };
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let be = CpuBackend::new();
        let (ia, ib, ic) = (upload(&be, &a), upload(&be, &b), be.alloc((m * n * 4) as u64).unwrap());
        be.matmul(ia, ib, ic, m, k, n).unwrap();
        let got = download(&be, ic, m * n);
        for i in 0..m { for j in 0..n {
            let want: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
            prop_assert!(close(got[i * n + j], want as f32, 1e-5 * k as f32), "({i},{j}) {} vs {want}", got[i * n + j]);
        }}
    }

    #[test]
    fn softmax_rows_match_reference_and_sum_to_one(rows in 1usize..20, cols in 1usize..300, seed in any::<u32>()) {
        let x: Vec<f32> = (0..rows * cols).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2000) as f32 / 100.0 - 10.0).collect();
        let be = CpuBackend::new();
        let (ix, out) = (upload(&be, &x), be.alloc((rows * cols * 4) as u64).unwrap());
        be.softmax(ix, out, rows, cols).unwrap();
        let got = download(&be, out, rows * cols);
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row.iter().copied().fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
            let denom: f64 = row.iter().map(|v| (*v as f64 - m).exp()).sum();
            let mut total = 0.0;
            for c in 0..cols {
                let want = ((row[c] as f64 - m).exp() / denom) as f32;
                prop_assert!(close(got[r * cols + c], want, 1e-5));
                total += got[r * cols + c];
            }
            prop_assert!((total - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn reductions_match_reference(x in vec_f32(100_000)) {
        let be = CpuBackend::new();
        let n = x.len();
        let (ix, out) = (upload(&be, &x), be.alloc(4).unwrap());
        be.sum(ix, out, n).unwrap();
        let want: f64 = x.iter().map(|v| *v as f64).sum();
        let abs_sum: f64 = x.iter().map(|v| v.abs() as f64).sum();
        let got = download(&be, out, 1)[0] as f64;
        prop_assert!((got - want).abs() <= 1e-6 * n as f64 * abs_sum.max(1.0) / n as f64 * 16.0 + 1e-3, "{got} vs {want}");
        be.max(ix, out, n).unwrap();
        let want = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        prop_assert_eq!(download(&be, out, 1)[0], want);
    }
}

#[test]
fn raw_ptx_launch_on_cpu_needs_a_cuda_device() {
    let be = CpuBackend::new();
    let module = be
        .load_module(".entry k() { ret; }", &blake3::hash(b"k"))
        .unwrap();
    let err = be
        .launch(
            &module,
            "k",
            tensor_wasm_gpu::LaunchDims {
                grid: [1; 3],
                block: [1; 3],
                shared_mem_bytes: 0,
            },
            &[],
        )
        .unwrap_err();
    assert!(err.to_string().contains("needs a CUDA device"), "{err}");
}
