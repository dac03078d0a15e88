//! Every way a snapshot file can be wrong is refused with its own error,
//! before the body is used.

mod support;

use ed25519_dalek::SigningKey;
use support::{Harness, STATEFUL_WAT, call};
use tensor_wasm_snapshot::format::{CHECKSUM_LEN, FIXED_HEADER_LEN, decode, encode, read_header};

use tensor_wasm_snapshot::{ModuleHash, Snapshot, SnapshotError, VerifyPolicy};

fn sample() -> (Harness, Snapshot) {
    let h = Harness::new(STATEFUL_WAT);
    let (mut store, live) = h.fresh();
    let () = call(&mut store, &live, "store1", (1000, 9));
    let snapshot = h.capture(&mut store, &live);
    (h, snapshot)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn rechecksum(file: &mut [u8]) {
    let n = file.len() - CHECKSUM_LEN;
    let sum = blake3::hash(&file[..n]);
    file[n..].copy_from_slice(sum.as_bytes());
}

#[test]
fn truncated_file_is_refused_as_truncated_at_every_length() {
    let (_, snapshot) = sample();
    let file = encode(&snapshot, None, None).expect("encodes");
    for len in [
        0,
        5,
        9,
        100,
        FIXED_HEADER_LEN,
        FIXED_HEADER_LEN + 3,
        file.len() / 2,
        file.len() - 1,
    ] {
        let err = decode(&file[..len], &VerifyPolicy::default(), None).expect_err("refused");
        assert!(
            matches!(err, SnapshotError::Truncated { .. }),
            "length {len}: {err}"
        );
    }
}

#[test]
fn flipped_byte_anywhere_is_a_checksum_mismatch() {
    let (_, snapshot) = sample();
    let file = encode(&snapshot, None, None).expect("encodes");
    // Skip the magic, version, header length and the size and length
    // fields, whose damage is caught (distinctly) before the checksum is
    // computed (`crafted_sizes_are_refused_…` covers those).
    let structural = [0..12, 104..124, 128..144];
    for at in (12..file.len()).step_by(7) {
        if structural.iter().any(|r| r.contains(&at)) {
            continue;
        }
        let mut bad = file.clone();
        bad[at] ^= 0x20;
        match decode(&bad, &VerifyPolicy::default(), None) {
            Err(SnapshotError::ChecksumMismatch { .. }) => {}
            // Damaged flag/compression bytes are refused as malformed first.
            Err(SnapshotError::Malformed(_)) if (12..24).contains(&at) => {}
            other => panic!("byte {at}: expected checksum mismatch, got {other:?}"),
        }
    }
}

#[test]
fn bad_magic_is_refused() {
    let (_, snapshot) = sample();
    let mut file = encode(&snapshot, None, None).expect("encodes");
    file[1] = b'X';
    let err = decode(&file, &VerifyPolicy::default(), None).expect_err("refused");
    assert!(matches!(err, SnapshotError::BadMagic { .. }), "{err}");
    let err = decode(
        b"\0asm\x01\0\0\0 a wasm module",
        &VerifyPolicy::default(),
        None,
    )
    .expect_err("refused");
    assert!(matches!(err, SnapshotError::BadMagic { .. }), "{err}");
}

#[test]
fn newer_format_version_is_refused_naming_both_versions() {
    let (_, snapshot) = sample();
    let mut file = encode(&snapshot, None, None).expect("encodes");
    file[8..10].copy_from_slice(&2u16.to_le_bytes());
    rechecksum(&mut file);
    let err = decode(&file, &VerifyPolicy::default(), None).expect_err("refused");
    assert!(
        matches!(
            err,
            SnapshotError::NewerVersion {
                file_version: 2,
                reader_version: 1,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("version 2") && message.contains("1 to 1"),
        "{message}"
    );
    // The header alone is enough to refuse it.
    let err = read_header(&file[..12], file.len() as u64).expect_err("refused");
    assert!(matches!(err, SnapshotError::NewerVersion { .. }));
}

#[test]
fn snapshot_of_another_module_is_refused_at_restore() {
    let (h, snapshot) = sample();
    let other = Harness::new(&STATEFUL_WAT.replace("static data", "other data"));
    let err = snapshot
        .ensure_module(other.instrumented.original)
        .expect_err("refused");
    assert!(matches!(err, SnapshotError::WrongModule { .. }), "{err}");
    snapshot
        .ensure_module(h.instrumented.original)
        .expect("same module");
    assert_ne!(ModuleHash::of(b"x"), h.instrumented.original);
}

#[test]
fn signatures_verify_and_tampering_is_a_bad_signature() {
    let (_, snapshot) = sample();
    let signer = key(1);
    let file = encode(&snapshot, Some(&signer), None).expect("encodes");
    let policy = VerifyPolicy::require(&signer);
    assert_eq!(decode(&file, &policy, None).expect("verifies"), snapshot);

    // Signed by someone else.
    let err = decode(&file, &VerifyPolicy::require(&key(2)), None).expect_err("refused");
    assert!(matches!(err, SnapshotError::BadSignature { .. }), "{err}");

    // Contents altered and the checksum recomputed: the signature catches it.
    let mut tampered = file.clone();
    tampered[FIXED_HEADER_LEN + 2] ^= 1;
    rechecksum(&mut tampered);
    let err = decode(&tampered, &VerifyPolicy::default(), None).expect_err("refused");
    assert!(matches!(err, SnapshotError::BadSignature { .. }), "{err}");

    // Signature bytes altered.
    let mut sig = file.clone();
    let at = file.len() - CHECKSUM_LEN - 10;
    sig[at] ^= 1;
    rechecksum(&mut sig);
    let err = decode(&sig, &policy, None).expect_err("refused");
    assert!(matches!(err, SnapshotError::BadSignature { .. }), "{err}");
}

#[test]
fn unsigned_file_is_refused_when_a_signature_is_required() {
    let (_, snapshot) = sample();
    let file = encode(&snapshot, None, None).expect("encodes");
    let err = decode(&file, &VerifyPolicy::require(&key(1)), None).expect_err("refused");
    assert!(matches!(err, SnapshotError::SignatureRequired), "{err}");
}

#[test]
fn every_refusal_has_its_own_code() {
    let codes = [
        SnapshotError::Truncated {
            expected: 1,
            actual: 0,
        }
        .code(),
        SnapshotError::BadMagic {
            found: String::new(),
        }
        .code(),
        SnapshotError::ChecksumMismatch {
            stored: String::new(),
            computed: String::new(),
        }
        .code(),
        SnapshotError::WrongModule {
            snapshot_module: String::new(),
            given_module: String::new(),
        }
        .code(),
        SnapshotError::NewerVersion {
            file_version: 2,
            reader_version: 1,
            oldest_readable: 1,
        }
        .code(),
        SnapshotError::BadSignature {
            reason: String::new(),
        }
        .code(),
        SnapshotError::SignatureRequired.code(),
    ];
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len());
}

/// Writes `v` at byte `at` of the fixed header (little-endian u64).
fn set_u64(file: &mut [u8], at: usize, v: u64) {
    file[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn crafted_sizes_are_refused_before_anything_is_sliced_or_decompressed() {
    let (_h, snapshot) = sample();
    let file = encode(&snapshot, None, None).expect("encodes");
    // (offset, value, what): body_raw_len at 128, body_len at 136,
    // stored_bytes at 112, memory_bytes at 104.
    let cases: &[(usize, u64, &str)] = &[
        (136, u64::MAX - 100, "a body length that overflows"),
        (136, u64::MAX, "the largest body length"),
        (128, 1 << 40, "a decoded size of 1 TiB"),
        (128, u64::MAX, "the largest decoded size"),
        (112, u64::MAX, "more stored bytes than memory"),
        (104, 0, "memories of zero bytes holding data"),
    ];
    for &(at, value, what) in cases {
        let mut bad = file.clone();
        set_u64(&mut bad, at, value);
        rechecksum(&mut bad);
        let err = decode(&bad, &VerifyPolicy::default(), None).expect_err(what);
        assert!(
            matches!(err.code(), "snapshot_malformed" | "snapshot_truncated"),
            "{what}: {err}"
        );
        let err = read_header(&bad, bad.len() as u64).expect_err(what);
        assert!(
            matches!(err.code(), "snapshot_malformed" | "snapshot_truncated"),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_zstd_bomb_stops_at_the_announced_size() {
    // A body that decompresses to far more than its header announces is
    // refused after reading one byte past the announcement, not expanded.
    let (_h, snapshot) = sample();
    let file = encode(&snapshot, None, None).expect("encodes");
    let header = read_header(&file, file.len() as u64).expect("header");
    let bomb = zstd::encode_all(std::io::Cursor::new(vec![0u8; 64 << 20]), 1).unwrap();
    let start = file.len() - CHECKSUM_LEN - header.body_len as usize;
    let mut bad = file[..start].to_vec();
    bad.extend_from_slice(&bomb);
    bad.extend_from_slice(&[0u8; CHECKSUM_LEN]);
    set_u64(&mut bad, 136, bomb.len() as u64);
    rechecksum(&mut bad);
    let err = decode(&bad, &VerifyPolicy::default(), None).expect_err("bomb refused");
    assert_eq!(err.code(), "snapshot_malformed", "{err}");
}
