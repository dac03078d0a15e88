//! The export format ([`EXPORT_FORMAT`](crate::EXPORT_FORMAT), a redb store
//! file) as a stream: spooling it through a scratch file, which redb needs
//! to read or write one, and removing that file whatever happens.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;

/// A scratch file removed when dropped.
#[derive(Debug)]
pub(crate) struct ScratchPath(PathBuf);

impl ScratchPath {
    /// A fresh, unused name in `dir` (nothing is created).
    pub(crate) fn new_in(dir: &Path, what: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{what}-{}-{n}.redb", std::process::id()));
        // A leftover from a process that had our pid.
        let _ = fs::remove_file(&path);
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// An export's bytes: a scratch file read to its end, removed on drop.
#[derive(Debug)]
pub(crate) struct SpooledExport {
    file: File,
    _scratch: ScratchPath,
}

impl SpooledExport {
    /// Opens a complete scratch file for reading.
    pub(crate) fn open(scratch: ScratchPath) -> Result<Self, StoreError> {
        let file = File::open(scratch.path()).map_err(|e| {
            StoreError::Backend(format!("open export {}: {e}", scratch.path().display()))
        })?;
        Ok(Self {
            file,
            _scratch: scratch,
        })
    }
}

impl Read for SpooledExport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

/// Writes `stream` to a new scratch file in `dir`, for redb to open.
pub(crate) fn spool(mut stream: impl Read, dir: &Path) -> Result<ScratchPath, StoreError> {
    let scratch = ScratchPath::new_in(dir, "functions-import");
    let mut file = File::create_new(scratch.path()).map_err(|e| {
        StoreError::Backend(format!("create import {}: {e}", scratch.path().display()))
    })?;
    io::copy(&mut stream, &mut file)
        .map_err(|e| StoreError::Backend(format!("read import stream: {e}")))?;
    Ok(scratch)
}
