//! The data directory's layout.
//!
//! ```text
//! <data>/
//!   functions.redb          the function store (embedded backend)
//!   audit.key               SipHash key of audit token ids        0600
//!   cache.key               MAC key of compile/kernel caches       0600
//!   snapshot-signing.key    ed25519 seed, hex (optional)            0600
//!   snapshots/<id>.tensor-wasm
//!   snapshots/quarantine/   damaged snapshot files moved aside
//!   jit-cache/*.cwasm       compiled modules (disposable)
//!   jit-cache/gpu/*.cubin   linked kernels (disposable)
//!   .restore-in-progress    present while a restore moves files in
//!   .restore-partial/       a restore's staging directory
//! ```
//!
//! The directory itself is created owner-only (`0700`); the keys are
//! written owner-only ([`crate::durable`] creates every file `0600`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::durable;

/// File and folder names under the data directory.
pub mod names {
    /// The embedded function store.
    pub const STORE_FILE: &str = "functions.redb";
    /// The audit log's token-id key.
    pub const AUDIT_KEY: &str = "audit.key";
    /// The compile- and kernel-cache MAC key.
    pub const CACHE_KEY: &str = "cache.key";
    /// The snapshot signing key (created by `tensor-wasm snapshot keygen`).
    pub const SIGNING_KEY: &str = "snapshot-signing.key";
    /// The snapshot folder.
    pub const SNAPSHOTS: &str = "snapshots";
    /// Under the snapshot folder: damaged files moved aside.
    pub const QUARANTINE: &str = "quarantine";
    /// Extension of snapshot files (`<id>.tensor-wasm`).
    pub const SNAPSHOT_EXTENSION: &str = "tensor-wasm";
    /// The compile cache.
    pub const COMPILE_CACHE: &str = "jit-cache";
    /// Under the compile cache: the GPU kernel cache.
    pub const KERNEL_CACHE: &str = "gpu";
    /// Present while a restore moves files into the data directory.
    pub const RESTORE_MARKER: &str = ".restore-in-progress";
    /// A restore's staging folder.
    pub const RESTORE_STAGING: &str = ".restore-partial";
    /// Secrets a backup carries (when present), kept owner-only on both sides.
    pub const BACKED_UP_SECRETS: [&str; 2] = [AUDIT_KEY, SIGNING_KEY];

    /// The file name of snapshot `id`.
    pub fn snapshot_file(id: &str) -> String {
        format!("{id}.{SNAPSHOT_EXTENSION}")
    }

    /// The snapshot id a file name in the snapshot folder stands for; `None`
    /// for anything else (temp files, other files, names with separators).
    pub fn snapshot_id(file_name: &str) -> Option<&str> {
        if file_name.starts_with('.') || file_name.contains(['/', '\\']) {
            return None;
        }
        file_name
            .strip_suffix(SNAPSHOT_EXTENSION)
            .and_then(|stem| stem.strip_suffix('.'))
            .filter(|stem| !stem.is_empty())
    }
}

/// A 32-byte secret the server creates in the data directory on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// `audit.key`: replacing it changes every audit `token_id`.
    AuditKey,
    /// `cache.key`: replacing it recompiles every cached module once.
    CacheKey,
}

impl Secret {
    /// Its file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Secret::AuditKey => names::AUDIT_KEY,
            Secret::CacheKey => names::CACHE_KEY,
        }
    }

    fn if_replaced(self) -> &'static str {
        match self {
            Secret::AuditKey => "a new audit.key changes every token_id",
            Secret::CacheKey => "a new cache.key only recompiles cached modules",
        }
    }
}

/// A secret key file that could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("key file {path}: {message}")]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// What went wrong, and what to do.
    pub message: String,
}

/// A data directory: where everything a server keeps lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (owner-only when new) and the snapshot and
    /// compile-cache folders; existing ones are left as they are.
    pub fn create(&self) -> std::io::Result<()> {
        create_owner_only(&self.root)?;
        std::fs::create_dir_all(self.snapshots())?;
        std::fs::create_dir_all(self.compile_cache())
    }

    /// The embedded function store's file.
    pub fn store_file(&self) -> PathBuf {
        self.root.join(names::STORE_FILE)
    }

    /// A secret key's file.
    pub fn secret(&self, which: Secret) -> PathBuf {
        self.root.join(which.file_name())
    }

    /// The snapshot signing key's file (present only after `keygen`).
    pub fn signing_key(&self) -> PathBuf {
        self.root.join(names::SIGNING_KEY)
    }

    /// The snapshot folder.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join(names::SNAPSHOTS)
    }

    /// The compile cache folder.
    pub fn compile_cache(&self) -> PathBuf {
        self.root.join(names::COMPILE_CACHE)
    }

    /// The GPU kernel cache folder (inside the compile cache).
    pub fn kernel_cache(&self) -> PathBuf {
        self.compile_cache().join(names::KERNEL_CACHE)
    }

    /// The marker a restore leaves while it moves files in.
    pub fn restore_marker(&self) -> PathBuf {
        self.root.join(names::RESTORE_MARKER)
    }

    /// A restore's staging folder.
    pub fn restore_staging(&self) -> PathBuf {
        self.root.join(names::RESTORE_STAGING)
    }

    /// Reads secret `which`, creating it (32 random bytes, `0600`, written
    /// durably) with the data directory the first time. Of two processes
    /// creating it at once, both end up with the one that landed first.
    pub fn load_or_create_key(&self, which: Secret) -> Result<[u8; 32], KeyError> {
        let path = self.secret(which);
        let err = |message: String| KeyError {
            path: path.clone(),
            message,
        };
        create_owner_only(&self.root)
            .map_err(|e| err(format!("cannot create its directory: {e}")))?;
        for _ in 0..2 {
            match std::fs::File::open(&path) {
                Ok(mut f) => {
                    let mut key = [0u8; 32];
                    let mut extra = [0u8; 1];
                    f.read_exact(&mut key)
                        .map_err(|e| err(format!("cannot read 32 bytes: {e}")))?;
                    if f.read(&mut extra).map_err(|e| err(e.to_string()))? != 0 {
                        return Err(err(format!(
                            "longer than 32 bytes; restore the original key or delete it ({})",
                            which.if_replaced()
                        )));
                    }
                    return Ok(key);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut key = [0u8; 32];
                    getrandom::fill(&mut key).map_err(|e| err(format!("no OS randomness: {e}")))?;
                    match durable::write_new(&path, &key) {
                        Ok(()) => return Ok(key),
                        // Another process won the race: read its key.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(err(e.to_string())),
                    }
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err("created and removed again while being read".into()))
    }
}

/// `create_dir_all`, with the last component owner-only when it is new.
fn create_owner_only(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        let a = data.load_or_create_key(Secret::AuditKey).unwrap();
        assert_eq!(data.load_or_create_key(Secret::AuditKey).unwrap(), a);
        let c = data.load_or_create_key(Secret::CacheKey).unwrap();
        assert_ne!(a, c, "each secret its own");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(data.root()), 0o700);
            assert_eq!(mode(&data.secret(Secret::AuditKey)), 0o600);
        }
    }

    #[test]
    fn a_damaged_key_is_refused_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        std::fs::write(data.secret(Secret::CacheKey), [7u8; 33]).unwrap();
        let e = data.load_or_create_key(Secret::CacheKey).unwrap_err();
        assert!(e.to_string().contains("longer than 32 bytes"), "{e}");
        std::fs::write(data.secret(Secret::CacheKey), [7u8; 5]).unwrap();
        let e = data.load_or_create_key(Secret::CacheKey).unwrap_err();
        assert!(e.to_string().contains("cannot read 32 bytes"), "{e}");
        assert_eq!(
            std::fs::read(data.secret(Secret::CacheKey)).unwrap(),
            [7u8; 5]
        );
    }

    #[test]
    fn racing_creators_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("d"));
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| data.load_or_create_key(Secret::AuditKey).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "one key for all");
    }

    #[test]
    fn snapshot_file_names_round_trip_and_nothing_else_is_one() {
        assert_eq!(
            names::snapshot_id(&names::snapshot_file("snap-1")),
            Some("snap-1")
        );
        for not_one in [
            ".snap.tensor-wasm",
            ".tensor-wasm",
            "a/b.tensor-wasm",
            "x.txt",
            "x.tensor-wasm.tmp-1",
        ] {
            assert_eq!(names::snapshot_id(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn create_makes_the_folders_every_server_expects() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("nested/data"));
        data.create().unwrap();
        assert!(data.snapshots().is_dir() && data.compile_cache().is_dir());
        data.create().unwrap();
    }
}
