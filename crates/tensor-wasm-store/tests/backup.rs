//! Backups taken while the store is in use, and their restore.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use support::{assert_consistent, deploy, wait, wasm_for};
use tensor_wasm_fs::names::{
    AUDIT_KEY as AUDIT_KEY_FILE_NAME, SIGNING_KEY as SIGNING_KEY_FILE_NAME,
};
use tensor_wasm_store::backup::{
    BackupError, MANIFEST_FILE_NAME, backup_data_dir, backup_data_dir_with_store, restore_data_dir,
    verify_backup,
};
use tensor_wasm_store::test_support::rewrite_schema;
use tensor_wasm_store::{
    FunctionId, FunctionStore, RedbStore, SCHEMA_VERSION, STORE_FILE_NAME, StoreError,
};

/// Runs `during` while a thread deploys `fn_000000`, `fn_000001`, … in
/// order, after at least `min_before` deploys.
fn with_active_writer(store: Arc<RedbStore>, min_before: u64, during: impl FnOnce()) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let writer = {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) || n < min_before + 1 {
                deploy(store.as_ref(), &format!("fn_{n:06}"), "acme", n);
                n += 1;
                if n == min_before {
                    let _ = ready_tx.send(());
                }
            }
            n
        })
    };
    ready_rx.recv().expect("writer started");
    during();
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer")
}

/// The ids of a backup made during sequential deploys must be exactly the
/// first k of them, each with its own bytes.
fn assert_prefix_snapshot(store: &dyn FunctionStore, min: u64, written: u64) -> u64 {
    let ids = assert_consistent(store);
    let k = ids.len() as u64;
    assert!(
        k >= min && k <= written,
        "k={k} min={min} written={written}"
    );
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(id, &format!("fn_{n:06}"));
        let bytes = wait(store.wasm(&FunctionId(id.clone()))).expect("wasm");
        assert_eq!(bytes, Some(wasm_for(n as u64)));
    }
    k
}

fn populated_data_dir() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_in_data_dir(dir.path()).expect("open");
    let ids = (0..5)
        .map(|i| {
            deploy(&store, &format!("fn_{i:06}"), &format!("t{}", i % 2), i)
                .id
                .0
        })
        .collect();
    write_side_files(dir.path());
    (dir, ids)
}

fn write_side_files(data: &Path) {
    fs::create_dir_all(data.join("snapshots")).expect("mkdir");
    fs::write(data.join("snapshots/add.tensor-wasm"), b"snapshot-add").expect("write");
    fs::write(data.join("snapshots/mul.tensor-wasm"), vec![7u8; 100_000]).expect("write");
    fs::write(data.join("snapshots/.tmp-partial.tensor-wasm"), b"x").expect("write");
    fs::write(data.join("snapshots/notes.txt"), b"not a snapshot").expect("write");
    fs::write(data.join(AUDIT_KEY_FILE_NAME), [42u8; 16]).expect("write");
    fs::write(data.join(SIGNING_KEY_FILE_NAME), [9u8; 32]).expect("write");
    fs::create_dir_all(data.join("jit-cache")).expect("mkdir");
    fs::write(data.join("jit-cache/abc"), b"compiled").expect("write");
}

#[test]
fn export_while_a_writer_is_active_gives_a_consistent_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open_in_data_dir(dir.path()).expect("open"));
    let dest = dir.path().join("backup.redb");
    let mut info = None;
    let written = with_active_writer(Arc::clone(&store), 20, || {
        let mut export = wait(store.export()).expect("export");
        let mut file = fs::File::create_new(&dest).expect("create");
        std::io::copy(&mut export.stream, &mut file).expect("copy");
        info = Some(export.info);
    });
    let copy = RedbStore::open(&dest).expect("export opens as a store");
    assert_eq!(copy.schema().stored_version, SCHEMA_VERSION);
    let k = assert_prefix_snapshot(&copy, 20, written);
    assert_eq!(info.expect("info").function_count, k);
}

#[test]
fn export_leaves_no_scratch_file_once_its_stream_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_in_data_dir(dir.path()).expect("open");
    deploy(&store, "fn_a", "acme", 1);
    let names = || -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = names();
    let export = wait(store.export()).expect("export");
    assert!(
        names().len() > before.len(),
        "the export is spooled beside the store"
    );
    drop(export);
    assert_eq!(names(), before);
}

#[test]
fn backup_data_dir_reads_beside_a_running_server_while_it_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_side_files(dir.path());
    // The "server": holds the store open for writing the whole time.
    let server = Arc::new(RedbStore::open_in_data_dir(dir.path()).expect("open"));
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    let mut manifest = None;
    let written = with_active_writer(Arc::clone(&server), 20, || {
        manifest = Some(backup_data_dir(dir.path(), &to).expect("backup beside server"));
    });
    let manifest = manifest.expect("manifest");
    // The server kept working and still does.
    deploy(server.as_ref(), "fn_after_backup", "acme", 1);

    // Verify first: opening the copy for writing changes its bytes.
    assert_eq!(verify_backup(&to).expect("verify"), manifest);
    let copy = RedbStore::open(&to.join(STORE_FILE_NAME)).expect("backup opens");
    let k = assert_prefix_snapshot(&copy, 20, written);
    assert_eq!(manifest.function_count, k);
}

#[test]
fn online_backup_through_the_server_handle_matches_the_layout() {
    let (dir, ids) = populated_data_dir();
    let server = RedbStore::open_in_data_dir(dir.path()).expect("open");
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("b");
    let manifest = wait(backup_data_dir_with_store(&server, dir.path(), &to)).expect("backup");
    assert_eq!(manifest.function_count, ids.len() as u64);
    let restored = out.path().join("data");
    restore_data_dir(&to, &restored).expect("restore");
    let store = RedbStore::open_in_data_dir(&restored).expect("open");
    assert_eq!(assert_consistent(&store), ids);
}

#[test]
fn restore_round_trip_brings_back_the_same_ids_bytes_snapshots_and_key() {
    let (dir, ids) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    let manifest = backup_data_dir(dir.path(), &to).expect("backup of a stopped server");

    let mut listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        vec![
            AUDIT_KEY_FILE_NAME,
            STORE_FILE_NAME,
            SIGNING_KEY_FILE_NAME,
            "snapshots/add.tensor-wasm",
            "snapshots/mul.tensor-wasm"
        ]
    );
    assert_eq!(manifest.store_schema_version, SCHEMA_VERSION);
    assert!(to.join(MANIFEST_FILE_NAME).is_file());
    assert!(!to.join("jit-cache").exists());

    let data = out.path().join("restored");
    restore_data_dir(&to, &data).expect("restore");
    for rel in [
        "snapshots/add.tensor-wasm",
        "snapshots/mul.tensor-wasm",
        AUDIT_KEY_FILE_NAME,
        SIGNING_KEY_FILE_NAME,
    ] {
        assert_eq!(
            fs::read(data.join(rel)).expect("read restored"),
            fs::read(dir.path().join(rel)).expect("read original"),
            "{rel}"
        );
    }
    assert!(!data.join(MANIFEST_FILE_NAME).exists());
    assert!(!data.join(".restore-partial").exists());

    let original = RedbStore::open_in_data_dir(dir.path()).expect("open original");
    let store = RedbStore::open_in_data_dir(&data).expect("open restored");
    assert_eq!(assert_consistent(&store), ids);
    assert_eq!(
        wait(store.list(None)).expect("list"),
        wait(original.list(None)).expect("list")
    );
}

#[test]
fn restore_into_an_empty_existing_data_dir_works() {
    let (dir, ids) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    backup_data_dir(dir.path(), &to).expect("backup");
    let data = out.path().join("data");
    fs::create_dir_all(data.join("lost+found")).expect("mkdir");
    restore_data_dir(&to, &data).expect("restore into an empty volume");
    let store = RedbStore::open_in_data_dir(&data).expect("open");
    assert_eq!(assert_consistent(&store), ids);
}

#[test]
fn restore_into_a_non_empty_data_dir_is_refused_and_touches_nothing() {
    let (dir, _) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    backup_data_dir(dir.path(), &to).expect("backup");
    let data = out.path().join("data");
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("audit.log"), b"old").expect("write");
    let err = restore_data_dir(&to, &data).expect_err("non-empty target");
    assert!(
        matches!(err, BackupError::DataDirNotEmpty { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("audit.log") && msg.contains("empty data dir"),
        "{msg}"
    );
    let left: Vec<_> = fs::read_dir(&data).expect("read").collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn restore_refuses_a_tampered_backup_and_leaves_the_data_dir_empty() {
    let (dir, _) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    backup_data_dir(dir.path(), &to).expect("backup");
    fs::write(to.join("snapshots/add.tensor-wasm"), b"snapshot-ADD").expect("tamper");
    let data = out.path().join("data");
    let err = restore_data_dir(&to, &data).expect_err("tampered");
    match &err {
        BackupError::ChecksumMismatch { file, .. } => assert_eq!(file, "snapshots/add.tensor-wasm"),
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(!data.exists() || fs::read_dir(&data).expect("read").next().is_none());
    assert!(verify_backup(&to).is_err());
}

#[test]
fn restore_refuses_a_directory_without_a_manifest() {
    let (dir, _) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let err = restore_data_dir(dir.path(), &out.path().join("data")).expect_err("no manifest");
    assert!(matches!(err, BackupError::NotABackup(_)), "{err:?}");
}

#[test]
fn restore_refuses_a_store_from_a_newer_schema_and_leaves_the_data_dir_empty() {
    let (dir, _) = populated_data_dir();
    rewrite_schema(&dir.path().join(STORE_FILE_NAME), SCHEMA_VERSION + 1, None).expect("bump");
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    let manifest = backup_data_dir(dir.path(), &to).expect("backup copies any schema");
    assert_eq!(manifest.store_schema_version, SCHEMA_VERSION + 1);
    let data = out.path().join("data");
    let err = restore_data_dir(&to, &data).expect_err("too new");
    assert!(
        matches!(err, BackupError::Store(StoreError::SchemaTooNew { .. })),
        "{err:?}"
    );
    assert!(fs::read_dir(&data).expect("read").next().is_none());
}

#[test]
fn backup_refuses_a_non_empty_target_and_a_dir_without_a_store() {
    let (dir, _) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    fs::write(out.path().join("x"), b"x").expect("write");
    let err = backup_data_dir(dir.path(), out.path()).expect_err("non-empty target");
    assert!(matches!(err, BackupError::TargetNotEmpty(_)), "{err:?}");

    let empty = tempfile::tempdir().expect("tempdir");
    let err = backup_data_dir(empty.path(), &out.path().join("b")).expect_err("no store");
    assert!(matches!(err, BackupError::NoStore(_)), "{err:?}");
}

#[test]
fn backup_of_a_crash_image_repairs_it_first() {
    // A raw copy of a file a writer holds open looks like a crashed store.
    let (dir, ids) = populated_data_dir();
    let crashed = tempfile::tempdir().expect("tempdir");
    {
        let _server = RedbStore::open_in_data_dir(dir.path()).expect("open");
        fs::copy(
            dir.path().join(STORE_FILE_NAME),
            crashed.path().join(STORE_FILE_NAME),
        )
        .expect("raw copy");
    }
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("b");
    let manifest = backup_data_dir(crashed.path(), &to).expect("backup");
    assert_eq!(manifest.function_count, ids.len() as u64);
    let copy = RedbStore::open(&to.join(STORE_FILE_NAME)).expect("open");
    assert_eq!(assert_consistent(&copy), ids);
}

#[test]
fn backup_of_a_store_held_exclusively_points_to_the_online_endpoint() {
    let (dir, _) = populated_data_dir();
    // A holder in redb's default exclusive mode (as a server on a file
    // system without byte-range locks ends up).
    let _holder = redb::Database::create(dir.path().join(STORE_FILE_NAME)).expect("open");
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("b");
    let err = backup_data_dir(dir.path(), &to).expect_err("locked");
    assert!(matches!(err, BackupError::StoreLocked(_)), "{err:?}");
    assert!(err.to_string().contains("POST /admin/backup"), "{err}");
    assert!(!to.exists(), "a failed backup leaves no directory behind");
}

const CHILD_DATA_DIR: &str = "TENSOR_WASM_STORE_TEST_CHILD_DATA_DIR";

/// Not a test on its own: the "server" process of the next test, which runs
/// this test binary again with `CHILD_DATA_DIR` set.
#[test]
fn child_process_server_for_cross_process_backup() {
    let Some(data) = std::env::var_os(CHILD_DATA_DIR) else {
        return;
    };
    let data = Path::new(&data);
    let store = RedbStore::open_in_data_dir(data).expect("child open");
    let mut n = 0u64;
    while !data.join("stop").exists() || n < 31 {
        deploy(&store, &format!("fn_{n:06}"), "acme", n);
        n += 1;
        if n == 30 {
            fs::write(data.join("ready"), b"").expect("ready");
        }
    }
    fs::write(data.join("written"), n.to_string()).expect("written");
}

#[test]
fn backup_from_another_process_while_the_server_process_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "child_process_server_for_cross_process_backup",
            "--test-threads=1",
        ])
        .env(CHILD_DATA_DIR, &data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn server process");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !data.join("ready").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "server process never got ready"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
    let to = dir.path().join("backup");
    let result = backup_data_dir(&data, &to);
    fs::write(data.join("stop"), b"").expect("stop");
    assert!(
        child.wait().expect("wait").success(),
        "server process failed"
    );
    let manifest = result.expect("backup beside a live server process");
    let written: u64 = fs::read_to_string(data.join("written"))
        .expect("written")
        .parse()
        .expect("number");

    verify_backup(&to).expect("verify");
    let copy = RedbStore::open(&to.join(STORE_FILE_NAME)).expect("backup opens");
    let k = assert_prefix_snapshot(&copy, 30, written);
    assert_eq!(manifest.function_count, k);
}

#[test]
fn restore_after_an_interrupted_restore_replaces_its_leftovers() {
    let (dir, ids) = populated_data_dir();
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("backup");
    backup_data_dir(dir.path(), &to).expect("backup");
    let data = out.path().join("data");
    fs::create_dir_all(data.join(".restore-partial/snapshots")).expect("mkdir");
    fs::write(data.join(".restore-partial/functions.redb"), b"half").expect("write");
    restore_data_dir(&to, &data).expect("restore");
    let store = RedbStore::open_in_data_dir(&data).expect("open");
    assert_eq!(assert_consistent(&store), ids);
}
