//! `snapshot save --server`: the server's reply printed as it wrote it, and
//! one clear line (exit 1) when the server refuses or does not answer.

mod support;

use support::run_cli;

const TOKEN: &str = "snapshot-admin-token-0123456789";

/// `init` stores 42 at address 0; a snapshot taken after it keeps it.
const WARM_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "init") (i32.store (i32.const 0) (i32.const 42)))
  (func (export "get") (result i32) (i32.load (i32.const 0))))"#;

#[test]
fn snapshot_save_on_a_server_prints_the_reply_and_refusals_in_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = support::Server::start(&support::ServerSpec::new(
        &tmp.path().join("d"),
        &format!("{TOKEN}:tenant=*"),
    ));
    // WAT text is accepted as the module.
    let id = support::deploy(&server, TOKEN, "warm", WARM_WAT.as_bytes());
    let id = id.as_str();
    let bin = support::binary();
    let save = |function: &str, server: &str, token: &[(&str, &str)]| {
        run_cli(
            &bin,
            &[
                "snapshot",
                "save",
                "--server",
                server,
                "--function",
                function,
                "--init-export",
                "init",
            ],
            token,
        )
    };

    let out = save(id, &server.base, &[("TENSOR_WASM_TOKEN", TOKEN)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let snap: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON line");
    assert!(
        snap["id"].as_str().is_some_and(|s| s.starts_with("snap-")),
        "{snap}"
    );
    assert_eq!(snap["function_id"], id);
    assert_eq!(snap["init_export"], "init");

    let out = save("fn_missing", &server.base, &[("TENSOR_WASM_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server answered 404 Not Found: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = save(id, &server.base, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server answered 401 Unauthorized: "),
        "{stderr}"
    );

    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = save(id, &format!("http://127.0.0.1:{port}"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "POST http://127.0.0.1:{port}/functions/{id}/snapshots: is the server running?"
        )),
        "{stderr}"
    );
}
