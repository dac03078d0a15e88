//! A killed writer never yields a readable-but-wrong file.

mod support;

use std::fs;

use support::{Harness, STATEFUL_WAT, call};
use tensor_wasm_snapshot::dir::{SnapshotDir, read_header_file, write_atomic};
use tensor_wasm_snapshot::format::encode;
use tensor_wasm_snapshot::{SnapshotError, VerifyPolicy};

fn snapshot() -> tensor_wasm_snapshot::Snapshot {
    let h = Harness::new(STATEFUL_WAT);
    let (mut store, live) = h.fresh();
    let () = call(&mut store, &live, "store1", (4242, 1));
    h.capture(&mut store, &live)
}

#[test]
fn partial_temp_file_of_a_killed_writer_is_ignored_by_list() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SnapshotDir::in_data_dir(tmp.path());
    let mut snap = snapshot();
    let (id, path) = dir.save(&mut snap, None, None).expect("saves");

    // What a writer killed mid-write leaves behind: a dot-named temp file.
    let bytes = fs::read(&path).expect("reads");
    let temp = dir.root().join(format!(".{id}.tensor-wasm.tmp-99999-dead"));
    fs::write(&temp, &bytes[..bytes.len() / 2]).expect("writes temp");
    // ...and a stray non-snapshot file.
    fs::write(dir.root().join("notes.txt"), b"hello").expect("writes");

    let listed = dir.list().expect("lists");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert!(listed[0].header.is_ok());
    // Temp names are not valid ids either.
    assert!(
        dir.load(
            &format!(".{id}.tensor-wasm.tmp-99999-dead"),
            &VerifyPolicy::default(),
            None
        )
        .is_err()
    );
}

#[test]
fn file_truncated_at_any_point_is_never_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SnapshotDir::in_data_dir(tmp.path());
    let mut snap = snapshot();
    let (id, path) = dir.save(&mut snap, None, None).expect("saves");
    let full = fs::read(&path).expect("reads");
    for len in (0..full.len()).step_by(37).chain([full.len() - 1]) {
        fs::write(&path, &full[..len]).expect("truncates");
        let err = dir
            .load(&id, &VerifyPolicy::default(), None)
            .expect_err("refused");
        assert!(
            matches!(err, SnapshotError::Truncated { .. }),
            "length {len}: {err}"
        );
        // Listing reports it as unreadable rather than hiding or trusting it.
        let listed = dir.list().expect("lists");
        assert!(listed[0].header.is_err(), "length {len}");
    }
    fs::write(&path, &full).expect("restores");
    assert_eq!(
        dir.load(&id, &VerifyPolicy::default(), None)
            .expect("loads"),
        snap
    );
}

#[test]
fn atomic_write_replaces_whole_files_and_leaves_no_temp() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("a.tensor-wasm");
    let snap = snapshot();
    let first = encode(&snap, None, None).expect("encodes");
    write_atomic(&path, &first).expect("writes");
    let mut second_snap = snap.clone();
    second_snap.created_at_unix_ms += 1;
    let second = encode(&second_snap, None, None).expect("encodes");
    write_atomic(&path, &second).expect("writes");
    assert_eq!(fs::read(&path).expect("reads"), second);
    let names: Vec<_> = fs::read_dir(tmp.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(
        read_header_file(&path).expect("header").created_at_unix_ms,
        second_snap.created_at_unix_ms
    );
}

#[test]
fn delete_removes_and_unknown_ids_are_not_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = SnapshotDir::in_data_dir(tmp.path());
    let mut snap = snapshot();
    let (id, _) = dir.save(&mut snap, None, None).expect("saves");
    dir.delete(&id).expect("deletes");
    assert!(matches!(dir.delete(&id), Err(SnapshotError::NotFound(_))));
    assert!(matches!(
        dir.delete("../etc/passwd"),
        Err(SnapshotError::NotFound(_))
    ));
    assert!(dir.list().expect("lists").is_empty());
}
