use crate::{Result, check, sys};

/// A device buffer owned by this instance; freed on drop.
///
/// ```no_run
/// use tensor_wasm_guest::Buffer;
/// let buf = Buffer::from_f32(&[1.0, 2.0, 3.0, 4.0])?;
/// buf.write_f32(2, &[30.0, 40.0])?;
/// assert_eq!(buf.to_vec_f32()?, vec![1.0, 2.0, 30.0, 40.0]);
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
#[derive(Debug)]
pub struct Buffer {
    handle: u32,
    size: u64,
}

fn f32_bytes(data: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and alignment ≥ u8's; the byte view covers
    // exactly the same memory. Wasm is little-endian, as the host expects.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

fn f32_bytes_mut(data: &mut [f32]) -> &mut [u8] {
    // SAFETY: as in `f32_bytes`; every bit pattern is a valid f32.
    unsafe {
        std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(data))
    }
}

impl Buffer {
    /// A zero-filled buffer of `size_bytes` bytes.
    pub fn new(size_bytes: u64) -> Result<Self> {
        let mut handle = 0u32;
        // SAFETY: `handle` is a valid out-pointer for a u32.
        check(unsafe { sys::buffer_create(size_bytes, &mut handle) })?;
        Ok(Buffer {
            handle,
            size: size_bytes,
        })
    }

    /// A zero-filled buffer of `len` f32s.
    pub fn zeros_f32(len: usize) -> Result<Self> {
        Self::new(len as u64 * 4)
    }

    /// A buffer holding a copy of `data`.
    pub fn from_f32(data: &[f32]) -> Result<Self> {
        let buf = Self::zeros_f32(data.len())?;
        buf.write_f32(0, data)?;
        Ok(buf)
    }

    /// The host handle (for [`crate::sys`] calls).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Size in f32 elements.
    pub fn len_f32(&self) -> usize {
        (self.size / 4) as usize
    }

    /// Copies `data` into the buffer at byte `offset`.
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<()> {
        // SAFETY: `data` is readable for its length.
        check(unsafe { sys::buffer_write(self.handle, offset, data.as_ptr(), data.len() as u32) })
    }

    /// Copies from the buffer at byte `offset` into `out` (waits for queued work).
    pub fn read_bytes(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        // SAFETY: `out` is writable for its length.
        check(unsafe { sys::buffer_read(self.handle, offset, out.as_mut_ptr(), out.len() as u32) })
    }

    /// Writes f32s starting at element `offset`.
    pub fn write_f32(&self, offset: usize, data: &[f32]) -> Result<()> {
        self.write_bytes(offset as u64 * 4, f32_bytes(data))
    }

    /// Reads f32s starting at element `offset` into `out`.
    pub fn read_f32(&self, offset: usize, out: &mut [f32]) -> Result<()> {
        self.read_bytes(offset as u64 * 4, f32_bytes_mut(out))
    }

    /// The whole buffer as f32s.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.len_f32()];
        self.read_f32(0, &mut out)?;
        Ok(out)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: plain handle; a failure (already freed) is harmless here.
        let _ = unsafe { sys::buffer_free(self.handle) };
    }
}
