//! Backups of a data dir and their restore, for `tensor-wasm backup` /
//! `restore` and the server's `POST /admin/backup`.
//!
//! A backup is a directory with the layout of a data dir plus a manifest:
//! `functions.redb` (a transactionally consistent copy of the store),
//! `snapshots/*.tensor-wasm`, `audit.key` and `snapshot-signing.key` when the data dir has them, and
//! `MANIFEST.json` (versions, creation time, function count, and the size
//! and BLAKE3 of every file). The manifest is written last, atomically, so
//! a directory without one is an interrupted backup and restore refuses it.
//!
//! Consistency while a server runs: the server holds the store open in
//! redb's single-writer mode, which lets [`backup_data_dir`] in another
//! process open it read-only and copy one MVCC snapshot; the server keeps
//! serving and commits made after the snapshot are simply not in the copy.
//! If the store is held exclusively instead (a file system without
//! byte-range locks, or a server that did not open it shared),
//! [`backup_data_dir`] fails with [`BackupError::StoreLocked`], whose
//! message sends the operator to the server's `POST /admin/backup`; that
//! endpoint calls [`backup_data_dir_with_store`] with the server's own
//! handle, which copies the store through [`FunctionStore::export`] and so
//! works for any backend; [`import_backup_store`] is the matching restore
//! into a store of any backend. Snapshot files are written by temp file + rename, so copying one
//! that exists is copying a whole file; one deleted mid-backup is skipped.
//!
//! Restore is offline: it refuses a non-empty data dir, verifies every
//! checksum, stages the files in `<data>/.restore-partial/`, checks that
//! this binary can open the restored store (schema version), and only then
//! moves the files into place, the store last.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use redb::{DatabaseError, ReadOnlyDatabase, ReadableDatabase, StorageError};

mod manifest;

pub use manifest::{BackupManifest, MANIFEST_FILE_NAME, MANIFEST_FORMAT_VERSION, ManifestFile};
use manifest::{
    check_entry, copy_hashed, hash_file, is_snapshot_name, read_manifest, write_manifest,
};

use crate::redb_store::{
    STORE_FILE_NAME, check_readable, copy_snapshot, open_error, open_shared_read_only,
    snapshot_info, sync_dir,
};
use crate::{ExportInfo, FunctionStore, StoreError, StoreExport};

// The data dir's layout is `tensor_wasm_fs::DataDir`'s; these are its names.
use tensor_wasm_fs::names::{
    AUDIT_KEY as AUDIT_KEY_FILE_NAME, BACKED_UP_SECRETS as SECRET_FILES, RESTORE_MARKER,
    RESTORE_STAGING as STAGING_DIR, SIGNING_KEY as SIGNING_KEY_FILE_NAME,
    SNAPSHOTS as SNAPSHOTS_DIR,
};

/// Why a backup or restore failed; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The function store failed (including a schema this binary cannot read).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The data dir has no function store.
    #[error(
        "no function store at {0}; is this the data dir? (pass --data-dir or set TENSOR_WASM_DATA_DIR)"
    )]
    NoStore(PathBuf),
    /// The store is held exclusively by a running server.
    #[error(
        "function store {0} is locked by a running tensor-wasm server that does not share it; \
         take the backup through the server instead: POST /admin/backup with an admin token"
    )]
    StoreLocked(PathBuf),
    /// The backup target exists and is not an empty directory.
    #[error("backup target {0} exists and is not an empty directory; choose a new directory")]
    TargetNotEmpty(PathBuf),
    /// The restore target data dir holds files.
    #[error(
        "data dir {path} is not empty (it holds {entries}); restore only into an empty data dir: \
         stop the server and move the old data dir aside first"
    )]
    DataDirNotEmpty {
        /// The data dir.
        path: PathBuf,
        /// Some of the names found.
        entries: String,
    },
    /// A restore into the data dir was interrupted (killed, power loss).
    #[error(
        "data dir {0} holds an interrupted restore (`.restore-in-progress`); run \
         `tensor-wasm restore --from <backup> --data-dir` on it again to finish it"
    )]
    InterruptedRestore(PathBuf),
    /// The directory holds no manifest.
    #[error(
        "{0} has no {MANIFEST_FILE_NAME}: not a complete tensor-wasm backup \
         (an interrupted backup has no manifest)"
    )]
    NotABackup(PathBuf),
    /// The manifest is unreadable, too new, or names a file it must not.
    #[error("backup manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file's contents differ from the manifest.
    #[error(
        "backup file {file} does not match its manifest entry (expected {expected}, found {found}); \
         the backup is damaged: use another one"
    )]
    ChecksumMismatch {
        /// Path relative to the backup dir.
        file: String,
        /// Size and BLAKE3 the manifest records.
        expected: String,
        /// Size and BLAKE3 found.
        found: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Backs up `data_dir` into `to_dir` (absent or empty), copying the store
/// consistently even while a server has it open (see the module doc).
pub fn backup_data_dir(data_dir: &Path, to_dir: &Path) -> Result<BackupManifest, BackupError> {
    let store_path = data_dir.join(STORE_FILE_NAME);
    if !store_path.is_file() {
        return Err(BackupError::NoStore(store_path));
    }
    backup_with(data_dir, to_dir, |dest| {
        copy_store_file(&store_path, dest)?;
        inspect_store_copy(dest)
    })
}

/// Backs up `data_dir` into `to_dir` taking the store copy from an open
/// store of any backend ([`FunctionStore::export`], written as
/// `functions.redb`); for the server's online backup endpoint. The file
/// work runs on tokio's blocking pool.
pub async fn backup_data_dir_with_store(
    store: &dyn FunctionStore,
    data_dir: &Path,
    to_dir: &Path,
) -> Result<BackupManifest, BackupError> {
    let export = store.export().await?;
    let (data_dir, to_dir) = (data_dir.to_path_buf(), to_dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        backup_with(&data_dir, &to_dir, |dest| write_export(export, dest))
    })
    .await
    .map_err(|e| StoreError::Backend(format!("backup task failed: {e}")))?
}

/// Loads the store of the backup in `from_dir` into `store` (empty, of any
/// backend) through [`FunctionStore::import`], after checking every
/// checksum; the restore path of a backend whose data does not live in the
/// data dir. Snapshots and keys are [`restore_data_dir`]'s job.
pub async fn import_backup_store(
    store: &dyn FunctionStore,
    from_dir: &Path,
) -> Result<BackupManifest, BackupError> {
    let from_dir = from_dir.to_path_buf();
    let (manifest, file) = tokio::task::spawn_blocking(move || {
        let manifest = verify_backup(&from_dir)?;
        let path = from_dir.join(STORE_FILE_NAME);
        let file = fs::File::open(&path).map_err(io_err("read backup file", &path))?;
        Ok::<_, BackupError>((manifest, file))
    })
    .await
    .map_err(|e| StoreError::Backend(format!("restore task failed: {e}")))??;
    let info = store.import(Box::new(file)).await?;
    if info.function_count != manifest.function_count {
        return Err(BackupError::Manifest {
            path: PathBuf::from(MANIFEST_FILE_NAME),
            reason: format!(
                "lists {} functions, the store holds {}",
                manifest.function_count, info.function_count
            ),
        });
    }
    Ok(manifest)
}

/// Restores the backup in `from_dir` into `data_dir`, which must be absent
/// or empty; verifies every checksum and the store's schema version first.
pub fn restore_data_dir(from_dir: &Path, data_dir: &Path) -> Result<BackupManifest, BackupError> {
    ensure_empty_data_dir(data_dir)?;
    let manifest = verify_backup(from_dir)?;
    fs::create_dir_all(data_dir).map_err(io_err("create data dir", data_dir))?;
    let staging = data_dir.join(STAGING_DIR);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err("remove leftover", &staging))?;
    }
    let mut moved: Vec<PathBuf> = Vec::new();
    let result = restore_staged(from_dir, data_dir, &staging, &manifest, &mut moved);
    if result.is_err() {
        // Leave the data dir as empty as we found it.
        let _ = fs::remove_dir_all(&staging);
        for path in moved.iter().rev() {
            let _ = fs::remove_dir_all(path).or_else(|_| fs::remove_file(path));
        }
    }
    result.map(|()| manifest)
}

/// Refuses a data dir that an interrupted restore left half-filled: its
/// snapshots and keys may be in place without its store, and a server
/// started on it would serve an empty registry beside them.
pub fn check_no_interrupted_restore(data_dir: &Path) -> Result<(), BackupError> {
    if data_dir.join(RESTORE_MARKER).exists() {
        return Err(BackupError::InterruptedRestore(data_dir.to_path_buf()));
    }
    Ok(())
}

/// Reads the manifest of `from_dir` and checks every file it lists against
/// its size and BLAKE3; the cheap check to run after every backup.
pub fn verify_backup(from_dir: &Path) -> Result<BackupManifest, BackupError> {
    let manifest = read_manifest(from_dir)?;
    for file in &manifest.files {
        let path = from_dir.join(&file.path);
        let (size, hash) = hash_file(&path).map_err(io_err("read backup file", &path))?;
        check_entry(file, size, &hash)?;
    }
    Ok(manifest)
}

fn backup_with(
    data_dir: &Path,
    to_dir: &Path,
    copy_store: impl FnOnce(&Path) -> Result<ExportInfo, BackupError>,
) -> Result<BackupManifest, BackupError> {
    let created = prepare_backup_target(to_dir)?;
    let result = write_backup(data_dir, to_dir, copy_store);
    if result.is_err() {
        // The target was absent or empty: take it back to that.
        if created {
            let _ = fs::remove_dir_all(to_dir);
        } else if let Ok(entries) = fs::read_dir(to_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            }
        }
    }
    result
}

/// Creates `to_dir` or accepts an empty one; true when it was created.
fn prepare_backup_target(to_dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(to_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(BackupError::TargetNotEmpty(to_dir.to_path_buf()))
            } else {
                restrict_dir_to_owner(to_dir)?;
                Ok(false)
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(to_dir).map_err(io_err("create backup dir", to_dir))?;
            restrict_dir_to_owner(to_dir)?;
            Ok(true)
        }
        Err(_) if to_dir.exists() && !to_dir.is_dir() => {
            Err(BackupError::TargetNotEmpty(to_dir.to_path_buf()))
        }
        Err(e) => Err(io_err("read backup dir", to_dir)(e)),
    }
}

fn write_backup(
    data_dir: &Path,
    to_dir: &Path,
    copy_store: impl FnOnce(&Path) -> Result<ExportInfo, BackupError>,
) -> Result<BackupManifest, BackupError> {
    let mut files = Vec::new();

    let store_dest = to_dir.join(STORE_FILE_NAME);
    let store_info = copy_store(&store_dest)?;
    let (size, hash) = hash_file(&store_dest).map_err(io_err("read", &store_dest))?;
    files.push(ManifestFile {
        path: STORE_FILE_NAME.to_owned(),
        size_bytes: size,
        blake3: hash,
    });

    let snapshots_out = to_dir.join(SNAPSHOTS_DIR);
    fs::create_dir_all(&snapshots_out).map_err(io_err("create", &snapshots_out))?;
    for name in snapshot_names(&data_dir.join(SNAPSHOTS_DIR))? {
        let src = data_dir.join(SNAPSHOTS_DIR).join(&name);
        let dst = snapshots_out.join(&name);
        match copy_hashed(&src, &dst) {
            Ok((size, hash)) => files.push(ManifestFile {
                path: format!("{SNAPSHOTS_DIR}/{name}"),
                size_bytes: size,
                blake3: hash,
            }),
            // Deleted since the directory was listed: not part of the backup.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !src.exists() => {
                let _ = fs::remove_file(&dst);
            }
            Err(e) => return Err(io_err("copy snapshot", &src)(e)),
        }
    }
    sync_dir(&snapshots_out)?;

    for name in SECRET_FILES {
        let key_src = data_dir.join(name);
        if !key_src.is_file() {
            continue;
        }
        let key_dst = to_dir.join(name);
        let (size, hash) = copy_hashed(&key_src, &key_dst).map_err(io_err("copy", &key_src))?;
        restrict_to_owner(&key_dst)?;
        files.push(ManifestFile {
            path: name.to_owned(),
            size_bytes: size,
            blake3: hash,
        });
    }

    let manifest = BackupManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        tensor_wasm_version: env!("CARGO_PKG_VERSION").to_owned(),
        store_schema_version: store_info.schema_version,
        store_min_reader_version: store_info.min_reader_version,
        created_at: now_rfc3339(),
        function_count: store_info.function_count,
        files,
    };
    write_manifest(to_dir, &manifest)?;
    Ok(manifest)
}

/// Copies the store file of a data dir, sharing it with a live server when
/// there is one (see the module doc).
fn copy_store_file(src: &Path, dest: &Path) -> Result<(), BackupError> {
    match open_shared_read_only(src) {
        Ok(db) => copy_from(&db, dest),
        Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch) => {
            Err(BackupError::StoreLocked(src.to_path_buf()))
        }
        Err(DatabaseError::RepairAborted) => {
            // Not shut down cleanly and no server holds it: repair it as the
            // server's next start would, then copy.
            let db = redb::Builder::new()
                .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
                .open(src)
                .map_err(|e| match e {
                    DatabaseError::DatabaseAlreadyOpen => {
                        BackupError::StoreLocked(src.to_path_buf())
                    }
                    other => BackupError::Store(open_error(src, other)),
                })?;
            let txn = db.begin_read().map_err(crate::redb_store::backend)?;
            copy_snapshot(&txn, dest)?;
            Ok(())
        }
        Err(DatabaseError::Storage(StorageError::Unsupported)) => {
            // No byte-range locks here: only an exclusive read-only open,
            // which a running server refuses.
            match ReadOnlyDatabase::open(src) {
                Ok(db) => copy_from(&db, dest),
                Err(DatabaseError::DatabaseAlreadyOpen) => {
                    Err(BackupError::StoreLocked(src.to_path_buf()))
                }
                Err(e) => Err(BackupError::Store(open_error(src, e))),
            }
        }
        Err(e) => Err(BackupError::Store(open_error(src, e))),
    }
}

fn copy_from(db: &ReadOnlyDatabase, dest: &Path) -> Result<(), BackupError> {
    let txn = db.begin_read().map_err(crate::redb_store::backend)?;
    copy_snapshot(&txn, dest)?;
    Ok(())
}

/// Schema numbers and function count of a copied store file.
fn inspect_store_copy(path: &Path) -> Result<ExportInfo, BackupError> {
    let db = ReadOnlyDatabase::open(path).map_err(|e| open_error(path, e))?;
    let txn = db.begin_read().map_err(crate::redb_store::backend)?;
    Ok(snapshot_info(&txn)?)
}

/// Writes an export stream to `dest` (a new file), durably.
fn write_export(export: StoreExport, dest: &Path) -> Result<ExportInfo, BackupError> {
    let StoreExport { info, mut stream } = export;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io_err("create", dest))?;
    io::copy(&mut stream, &mut file).map_err(io_err("write store export to", dest))?;
    file.sync_all().map_err(io_err("fsync", dest))?;
    Ok(info)
}

fn snapshot_names(dir: &Path) -> Result<Vec<String>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list snapshots in", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list snapshots in", dir))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        match entry.file_name().into_string() {
            Ok(name) if is_file && is_snapshot_name(&name) => names.push(name),
            Ok(_) => {}
            Err(name) => tracing::warn!(?name, "skipping snapshot with a non-UTF-8 name"),
        }
    }
    names.sort();
    Ok(names)
}

fn ensure_empty_data_dir(data_dir: &Path) -> Result<(), BackupError> {
    let entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read data dir", data_dir)(e)),
    };
    // An interrupted restore: what it moved into place is its own and goes.
    let interrupted = data_dir.join(RESTORE_MARKER).exists();
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read data dir", data_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A fresh ext4 volume (a Kubernetes PVC) has `lost+found`; an
        // interrupted restore leaves its staging dir. Neither holds state.
        if name == "lost+found" || name == STAGING_DIR || name == RESTORE_MARKER {
            continue;
        }
        if interrupted && RESTORED_NAMES.contains(&name.as_str()) {
            let path = entry.path();
            fs::remove_dir_all(&path)
                .or_else(|_| fs::remove_file(&path))
                .map_err(io_err("remove the interrupted restore's", &path))?;
            continue;
        }
        names.push(name);
    }
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let shown = names.len().min(5);
    let mut entries = names[..shown].join(", ");
    if names.len() > shown {
        entries.push_str(&format!(" and {} more", names.len() - shown));
    }
    Err(BackupError::DataDirNotEmpty {
        path: data_dir.to_path_buf(),
        entries,
    })
}

/// What a restore moves into a data dir, in order: the store goes last, so
/// a data dir with a store and no marker is a completely restored one.
const RESTORED_NAMES: [&str; 4] = [
    SNAPSHOTS_DIR,
    AUDIT_KEY_FILE_NAME,
    SIGNING_KEY_FILE_NAME,
    STORE_FILE_NAME,
];

fn restore_staged(
    from_dir: &Path,
    data_dir: &Path,
    staging: &Path,
    manifest: &BackupManifest,
    moved: &mut Vec<PathBuf>,
) -> Result<(), BackupError> {
    fs::create_dir_all(staging.join(SNAPSHOTS_DIR)).map_err(io_err("create", staging))?;
    for file in &manifest.files {
        let src = from_dir.join(&file.path);
        let dst = staging.join(&file.path);
        let (size, hash) = copy_hashed(&src, &dst).map_err(io_err("copy", &src))?;
        // Re-checked on the copy: the backup may have changed since verify.
        check_entry(file, size, &hash)?;
        if SECRET_FILES.contains(&file.path.as_str()) {
            restrict_to_owner(&dst)?;
        }
    }
    sync_dir(&staging.join(SNAPSHOTS_DIR))?;

    // Refuse a store this binary cannot open before anything is in place.
    let store = staging.join(STORE_FILE_NAME);
    {
        let db = ReadOnlyDatabase::open(&store).map_err(|e| open_error(&store, e))?;
        let txn = db.begin_read().map_err(crate::redb_store::backend)?;
        check_readable(&txn)?;
    }

    // From here a crash leaves a partly moved data dir: mark it first.
    let marker = data_dir.join(RESTORE_MARKER);
    // Present from the first file moved into place until the last: a server
    // refuses such a dir, and a new restore into it starts over (see
    // [`check_no_interrupted_restore`]).
    tensor_wasm_fs::durable::write_atomic(&marker, b"restore in progress\n")
        .map_err(io_err("write", &marker))?;
    moved.push(marker.clone());
    for name in RESTORED_NAMES {
        let from = staging.join(name);
        if !from.exists() {
            continue;
        }
        let to = data_dir.join(name);
        fs::rename(&from, &to).map_err(io_err("move into place", &to))?;
        moved.push(to);
    }
    sync_dir(data_dir)?;
    fs::remove_file(&marker).map_err(io_err("remove", &marker))?;
    fs::remove_dir(staging).map_err(io_err("remove", staging))?;
    sync_dir(data_dir)?;
    Ok(())
}

/// A backup holds the audit and signing keys: its directory is `0700`.
fn restrict_dir_to_owner(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(io_err("restrict permissions of", path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn restrict_to_owner(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(io_err("restrict permissions of", path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
