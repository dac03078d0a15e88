//! Built-in tensor ops over f32 buffers. Counts are elements; outputs may
//! alias inputs. On CUDA ops are enqueued: reading a buffer waits for them.

use crate::{Buffer, Result, check, sys};

/// `out[i] = a[i] + b[i]` for `i < n`.
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let a = Buffer::from_f32(&[1.0, 2.0])?;
/// let b = Buffer::from_f32(&[3.0, 4.0])?;
/// ops::vector_add(&a, &b, &a, 2)?; // in place
/// assert_eq!(a.to_vec_f32()?, vec![4.0, 6.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn vector_add(a: &Buffer, b: &Buffer, out: &Buffer, n: usize) -> Result<()> {
    // SAFETY: handles and counts only; the host validates them.
    check(unsafe { sys::op_vector_add(a.handle(), b.handle(), out.handle(), n as u32) })
}

/// `out[i] = alpha * x[i] + y[i]` for `i < n` (multiply and add rounded separately).
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let x = Buffer::from_f32(&[1.0, 2.0])?;
/// let y = Buffer::from_f32(&[10.0, 10.0])?;
/// ops::saxpy(3.0, &x, &y, &y, 2)?;
/// assert_eq!(y.to_vec_f32()?, vec![13.0, 16.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn saxpy(alpha: f32, x: &Buffer, y: &Buffer, out: &Buffer, n: usize) -> Result<()> {
    // SAFETY: handles and counts only.
    check(unsafe { sys::op_saxpy(alpha, x.handle(), y.handle(), out.handle(), n as u32) })
}

/// `c = a · b`: `a` is m×k, `b` k×n, `c` m×n, all row-major f32.
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let a = Buffer::from_f32(&[1.0, 2.0, 3.0, 4.0])?; // 2x2
/// let b = Buffer::from_f32(&[1.0, 0.0, 0.0, 1.0])?; // identity
/// let c = Buffer::zeros_f32(4)?;
/// ops::matmul(&a, &b, &c, 2, 2, 2)?;
/// assert_eq!(c.to_vec_f32()?, vec![1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn matmul(a: &Buffer, b: &Buffer, c: &Buffer, m: usize, k: usize, n: usize) -> Result<()> {
    // SAFETY: handles and counts only.
    check(unsafe {
        sys::op_matmul(
            a.handle(),
            b.handle(),
            c.handle(),
            m as u32,
            k as u32,
            n as u32,
        )
    })
}

/// Softmax of each row of a `rows`×`cols` row-major matrix.
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let x = Buffer::from_f32(&[0.0, 0.0, 1.0, 1.0])?; // 2 rows of 2
/// ops::softmax(&x, &x, 2, 2)?;
/// assert_eq!(x.to_vec_f32()?, vec![0.5; 4]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn softmax(x: &Buffer, out: &Buffer, rows: usize, cols: usize) -> Result<()> {
    // SAFETY: handles and counts only.
    check(unsafe { sys::op_softmax(x.handle(), out.handle(), rows as u32, cols as u32) })
}

/// `out[0] = Σ x[i]` for `i < n` (`n > 0`).
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let x = Buffer::from_f32(&[1.0, 2.0, 3.0])?;
/// let s = Buffer::zeros_f32(1)?;
/// ops::sum(&x, &s, 3)?;
/// assert_eq!(s.to_vec_f32()?, vec![6.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn sum(x: &Buffer, out: &Buffer, n: usize) -> Result<()> {
    // SAFETY: handles and counts only.
    check(unsafe { sys::op_sum(x.handle(), out.handle(), n as u32) })
}

/// `out[0] = max x[i]` for `i < n` (`n > 0`; NaNs ignored).
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let x = Buffer::from_f32(&[1.0, 5.0, 3.0])?;
/// let m = Buffer::zeros_f32(1)?;
/// ops::max(&x, &m, 3)?;
/// assert_eq!(m.to_vec_f32()?, vec![5.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn max(x: &Buffer, out: &Buffer, n: usize) -> Result<()> {
    // SAFETY: handles and counts only.
    check(unsafe { sys::op_max(x.handle(), out.handle(), n as u32) })
}

/// `out[i] = max(x[i], 0)` for `i < n`.
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let x = Buffer::from_f32(&[-1.0, 2.0])?;
/// ops::relu(&x, &x, 2)?;
/// assert_eq!(x.to_vec_f32()?, vec![0.0, 2.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn relu(x: &Buffer, out: &Buffer, n: usize) -> Result<()> {
    // SAFETY: handles and counts only.
    check(unsafe { sys::op_relu(x.handle(), out.handle(), n as u32) })
}
