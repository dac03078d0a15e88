//! Durable, atomic file writes.
//!
//! [`write_atomic`] and friends write to a temp file in the destination's
//! directory, fsync it, rename it over the final name and fsync the
//! directory: a reader sees the old file or the new one, and after a crash
//! the new one is there only if the call returned `Ok`. A killed writer
//! leaves at most a temp file whose name [`is_temp_name`] recognises, which
//! [`sweep_temp_files`] removes (listings skip dot-files anyway).
//!
//! Temp names are `.<final name>.tmp-<random>`, unique per call (created
//! with `O_EXCL` by `tempfile`), so concurrent writers of one name never
//! share a temp file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Marker in every temp file name (after the leading `.` and final name).
const TEMP_MARKER: &str = ".tmp-";

/// Whether `name` is a temp file left by a writer here (or one in flight).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Writes `bytes` to `path` atomically and durably (mode `0600` on Unix),
/// replacing what was there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with the content written by `fill` (for content
/// streamed in pieces). `fill` must not seek past what it wrote.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = filled_temp(path, fill)?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(&parent_of(path))
}

/// Writes `bytes` to `path` atomically and durably, only if no file is
/// there: `Err` with [`io::ErrorKind::AlreadyExists`] otherwise (and
/// nothing is changed). Two racing creators: exactly one wins.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = filled_temp(path, |file| file.write_all(bytes))?;
    temp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(&parent_of(path))
}

/// Renames `from` to `to` (same file system) and makes it durable: fsyncs
/// the directories of both.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let (a, b) = (parent_of(from), parent_of(to));
    sync_dir(&b)?;
    if a != b {
        sync_dir(&a)?;
    }
    Ok(())
}

/// Removes the file at `path` and makes the removal durable.
pub fn remove(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(&parent_of(path))
}

/// Fsyncs directory `dir`, so that renames and removals in it survive a
/// crash. A no-op where directories cannot be opened (not Unix).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes temp files in `dir` (not below it) last modified more than
/// `older_than` ago — left by writers that crashed; younger ones may be in
/// flight. Returns how many went. Missing `dir`: 0.
pub fn sweep_temp_files(dir: &Path, older_than: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temp_name(&name.to_string_lossy()) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= older_than);
        if stale && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temp file next to `path`, filled by `fill` and fsynced. Dropped
/// without being persisted, it is removed.
fn filled_temp(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}{TEMP_MARKER}"))
        .rand_bytes(8)
        .tempfile_in(parent_of(path))?;
    fill(temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["entry.bin"], "no temp file left");
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_new(&path, b"k").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_fill_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.bin");
        write_atomic(&path, b"kept").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"kept");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp removed");
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"one").unwrap();
        let err = write_new(&path, b"two").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp removed");
    }

    #[test]
    fn concurrent_writers_of_one_name_never_tear_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(path, &[i; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "one writer's bytes");
    }

    #[test]
    fn sweeping_removes_only_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".entry.tmp-abc"), b"x").unwrap();
        fs::write(dir.path().join("entry"), b"x").unwrap();
        fs::write(dir.path().join(".hidden"), b"x").unwrap();
        assert_eq!(
            sweep_temp_files(dir.path(), Duration::from_secs(3600)),
            0,
            "too young"
        );
        assert_eq!(sweep_temp_files(dir.path(), Duration::ZERO), 1);
        assert!(dir.path().join("entry").exists() && dir.path().join(".hidden").exists());
        assert!(is_temp_name(".a.tmp-x") && !is_temp_name("a.tmp-x") && !is_temp_name(".a"));
    }
}
