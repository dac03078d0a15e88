//! `observe` and `backup` failure paths: one clear line, non-zero exit.

mod support;

use support::run_cli;

#[test]
fn observe_once_against_nothing_fails_with_one_line() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let out = run_cli(
        &support::binary(),
        &["observe", "--once"],
        &[("TENSOR_WASM_SERVER", &server)],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(stderr.contains(&server), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn backup_of_a_dir_without_a_store_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("empty");
    std::fs::create_dir_all(&data).expect("mkdir");
    let to = tmp.path().join("backup");
    let out = run_cli(
        &support::binary(),
        &[
            "backup",
            "--to",
            &to.to_string_lossy(),
            "--data-dir",
            &data.to_string_lossy(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no function store"), "{stderr}");

    let out = run_cli(
        &support::binary(),
        &["backup", "--verify", &data.to_string_lossy()],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MANIFEST.json"), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_tenant_limits_file_before_listening() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("tenant-limits.json");
    std::fs::write(&file, r#"{"free": {"timeout_ms": 0}}"#).expect("write");
    let data = tmp.path().join("data");
    let out = run_cli(
        &support::binary(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("TENSOR_WASM_DATA_DIR", data.to_str().expect("utf-8 path")),
            (
                "TENSOR_WASM_TENANT_LIMITS",
                file.to_str().expect("utf-8 path"),
            ),
            ("TENSOR_WASM_GPU", "off"),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tenant `free`: `timeout_ms` must be 1..=300000"),
        "{stderr}"
    );
}
