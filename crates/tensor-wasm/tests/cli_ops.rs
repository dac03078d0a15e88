//! `observe`, `backup` and `serve` failure paths: one clear line, non-zero exit.

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
fn serve_refuses_an_unknown_store_backend_naming_the_choices_and_no_password() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    for (args, env) in [
        (vec!["serve", "--store", "sqlite"], None),
        (
            vec!["serve"],
            Some(("TENSOR_WASM_STORE", "postgres://app:hunter2@db/tw")),
        ),
    ] {
        let mut vars = vec![
            ("TENSOR_WASM_DATA_DIR", data.to_str().expect("utf-8 path")),
            ("TENSOR_WASM_GPU", "off"),
        ];
        vars.extend(env);
        let out = run_cli(&support::binary(), &args, &vars);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unknown function store"), "{stderr}");
        assert!(stderr.contains("`redb`"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert!(
        !data.exists(),
        "nothing is created before the flags are valid"
    );
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

#[test]
fn observe_once_fails_with_its_own_code_against_a_dev_mode_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = support::Server::start(&support::ServerSpec::new(&tmp.path().join("d"), ""));
    let out = run_cli(
        &support::binary(),
        &["observe", "--once"],
        &[("TENSOR_WASM_SERVER", &server.base)],
    );
    assert_eq!(out.status.code(), Some(4), "dev mode exits 4");
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!(doc["dev_mode"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEV MODE"), "{stderr}");
}

#[test]
fn observe_once_without_a_token_says_unauthorized() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = support::Server::start(&support::ServerSpec::new(
        &tmp.path().join("d"),
        "observe-admin-token-0123456789:tenant=*",
    ));
    let out = run_cli(
        &support::binary(),
        &["observe", "--once"],
        &[("TENSOR_WASM_SERVER", &server.base)],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert!(stderr.contains("TENSOR_WASM_TOKEN"), "{stderr}");
}

#[test]
fn serve_refuses_short_and_placeholder_tokens_naming_the_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    let data_arg = data.to_string_lossy().into_owned();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--gpu",
        "off",
        "--data-dir",
        &data_arg,
    ];
    let out = run_cli(
        &support::binary(),
        &args,
        &[(
            "TENSOR_WASM_API_TOKENS",
            "fine-admin-token-0123456789:tenant=*,hunter2:tenant=7",
        )],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("entry 2"), "{stderr}");
    assert!(stderr.contains("shorter than 16"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the token is never printed: {stderr}"
    );

    // The placeholder share/env.example ships with.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../share/env.example"),
    )
    .expect("share/env.example");
    let tokens = example
        .lines()
        .find_map(|l| l.strip_prefix("TENSOR_WASM_API_TOKENS="))
        .expect("env.example sets TENSOR_WASM_API_TOKENS");
    let out = run_cli(
        &support::binary(),
        &args,
        &[("TENSOR_WASM_API_TOKENS", tokens)],
    );
    assert!(
        !out.status.success(),
        "the example's placeholder is refused"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("placeholder"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn audit_required_from_an_env_file_refuses_changes_while_the_audit_sink_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = "audit-required-admin-token-0123";
    let mut spec = support::ServerSpec::new(&tmp.path().join("d"), &format!("{admin}:tenant=*"));
    // As an env file writes it; /dev/full fails every write like a full disk.
    spec.audit_log = Some("file:/dev/full".into());
    spec.env = vec![("TENSOR_WASM_API_AUDIT_REQUIRED".into(), "1".into())];
    let server = support::Server::start(&spec);
    let deploy = || {
        support::http()
            .post(server.url("/functions"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"name": "x", "wasm_b64": "AGFzbQEAAAA="}))
            .send()
            .expect("deploy request")
            .status()
            .as_u16()
    };
    assert_eq!(
        deploy(),
        201,
        "the change whose record fails is how the sink is found failing"
    );
    assert_eq!(deploy(), 503, "then changes wait for the audit sink");
}
