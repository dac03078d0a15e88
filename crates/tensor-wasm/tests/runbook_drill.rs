//! Runbook drill: walks the verification sections of the disaster-recovery
//! and rollback runbooks against the real binary, plus the lost-storage,
//! lost-auth and rollback (symlink swap) procedures, in temp dirs.

mod support;

use std::fs;
use std::path::Path;

use support::{Server, ServerSpec, adder_wasm, deploy, http, invoke_add, list_ids, run_cli};

const ADMIN: &str = "drill-admin-token-0123456789";
const TENANT: &str = "drill-tenant7-token-0123456789";

fn tokens(admin: &str, tenant: &str) -> String {
    format!("{admin}:tenant=*,{tenant}:tenant=7")
}

fn expected_version() -> String {
    format!("tensor-wasm v{}", env!("CARGO_PKG_VERSION"))
}

/// Sum of `tensor_wasm_http_requests_total` samples in the first 20 lines
/// (`curl -s …/metrics | head -20`).
fn request_counter_head20(server: &Server) -> f64 {
    let text = http()
        .get(server.url("/metrics"))
        .send()
        .expect("GET /metrics")
        .text()
        .expect("metrics body");
    let head: Vec<&str> = text.lines().take(20).collect();
    let samples: Vec<f64> = head
        .iter()
        .filter(|l| l.starts_with("tensor_wasm_http_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        !samples.is_empty(),
        "no tensor_wasm_http_requests_total in the first 20 lines:\n{}",
        head.join("\n")
    );
    samples.iter().sum()
}

/// `observe --once` must exit 0 and print one JSON document saying healthy.
fn observe_once(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec!["observe"];
    all.extend_from_slice(args);
    all.push("--once");
    let out = run_cli(&support::binary(), &all, env);
    assert!(
        out.status.success(),
        "observe --once failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("observe --once prints JSON");
    assert_eq!(doc["health"], "ok", "{doc}");
    doc
}

#[test]
fn disaster_recovery_and_rollback_verification_sections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::start(&ServerSpec::new(&data, &tokens(ADMIN, TENANT)));

    // 1. /healthz returns {"status":"ok"}.
    let resp = http().get(server.url("/healthz")).send().expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().expect("body").trim(), r#"{"status":"ok"}"#);

    // 2. /metrics: the request counter advances across two fetches, and
    //    shows within `head -20`.
    let first = request_counter_head20(&server);
    let second = request_counter_head20(&server);
    assert!(
        second > first,
        "counter did not advance: {first} → {second}"
    );

    // 3. observe --once, bare (TENSOR_WASM_SERVER) as the rollback runbook
    //    runs it, and with --server as the DR runbook does.
    let doc = observe_once(
        &[],
        &[
            ("TENSOR_WASM_SERVER", &server.base),
            ("TENSOR_WASM_TOKEN", ADMIN),
        ],
    );
    assert_eq!(doc["version"], format!("v{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(doc["dev_mode"], false);
    assert!(doc["metrics"]["requests_total"].as_f64().unwrap_or(0.0) > 0.0);
    observe_once(&["--server", &server.base], &[("TENSOR_WASM_TOKEN", ADMIN)]);
    // An unknown token fails with a one-line "unauthorized".
    let out = run_cli(
        &support::binary(),
        &["observe", "--server", &server.base, "--once"],
        &[("TENSOR_WASM_TOKEN", "not-a-token")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // 4. The dr-smoke create/delete with the admin token.
    let resp = http()
        .post(server.url("/functions"))
        .bearer_auth(ADMIN)
        .header("Content-Type", "application/json")
        .body(r#"{"name":"dr-smoke","wasm_b64":"AGFzbQEAAAA="}"#)
        .send()
        .expect("POST /functions");
    assert_eq!(resp.status().as_u16(), 201);
    let created: serde_json::Value = resp.json().expect("create reply");
    let id = created["id"].as_str().expect(".id").to_string();
    let resp = http()
        .delete(server.url(&format!("/functions/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .expect("DELETE");
    assert!(resp.status().is_success(), "{}", resp.status());

    // 5. The audit log's last lines hold the create/delete pair.
    let audit = fs::read_to_string(data.join("audit.log")).expect("audit log");
    let lines: Vec<&str> = audit.lines().collect();
    assert!(lines.len() >= 2, "audit log too short:\n{audit}");
    let record = |line: &str| -> serde_json::Value { serde_json::from_str(line).expect("JSONL") };
    let last = record(lines[lines.len() - 1]);
    let before = record(lines[lines.len() - 2]);
    assert_eq!(last["action"], "function.delete", "{last}");
    assert_eq!(before["action"], "function.create", "{before}");
    for r in [&last, &before] {
        assert_eq!(r["outcome"], "success", "{r}");
        assert_eq!(r["target"]["function_id"], id.as_str(), "{r}");
        assert_eq!(r["actor"]["scope"]["kind"], "admin", "{r}");
        assert!(
            !r.to_string().contains(ADMIN),
            "token leaked into audit: {r}"
        );
    }

    // --version prints vX.Y.Z.
    let out = run_cli(&support::binary(), &["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected_version()
    );
}

#[test]
fn lost_storage_restore_from_backup_keeps_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let backup = tmp.path().join("backup");
    let spec = ServerSpec::new(&data, &tokens(ADMIN, TENANT));
    let server = Server::start(&spec);
    let id = deploy(&server, TENANT, "adder", &adder_wasm());
    assert_eq!(invoke_add(&server, TENANT, &id, 2, 3), 5);

    // Online backup while the server runs; no token needed.
    let bin = support::binary();
    let data_arg = data.to_string_lossy().into_owned();
    let backup_arg = backup.to_string_lossy().into_owned();
    let out = run_cli(
        &bin,
        &["backup", "--to", &backup_arg, "--data-dir", &data_arg],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 function(s)"), "{stdout}");
    assert!(backup.join("MANIFEST.json").is_file());
    let out = run_cli(&bin, &["backup", "--verify", &backup_arg], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Lose the storage.
    server.stop();
    fs::remove_dir_all(&data).expect("delete the data dir");

    // Restore refuses a non-empty data dir…
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("stray"), b"x").expect("stray file");
    let out = run_cli(
        &bin,
        &["restore", "--from", &backup_arg, "--data-dir", &data_arg],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_file(data.join("stray")).expect("rm stray");

    // …and restores into an empty one (via TENSOR_WASM_DATA_DIR).
    let out = run_cli(
        &bin,
        &["restore", "--from", &backup_arg],
        &[("TENSOR_WASM_DATA_DIR", &data_arg)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::start(&spec);
    assert_eq!(list_ids(&server, ADMIN), vec![id.clone()]);
    assert_eq!(invoke_add(&server, TENANT, &id, 40, 2), 42);
    let doc = observe_once(&["--server", &server.base], &[("TENSOR_WASM_TOKEN", ADMIN)]);
    assert_eq!(doc["functions"]["count"], 1);
    assert_eq!(doc["functions"]["items"][0]["id"], id.as_str());
}

#[test]
fn lost_auth_rotated_tokens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::start(&ServerSpec::new(&data, &tokens(ADMIN, TENANT)));
    let id = deploy(&server, TENANT, "adder", &adder_wasm());
    server.stop();

    let (new_admin, new_tenant) = ("rotated-admin-9876543210", "rotated-tenant-9876543210");
    let server = Server::start(&ServerSpec::new(&data, &tokens(new_admin, new_tenant)));
    for old in [ADMIN, TENANT] {
        let status = http()
            .get(server.url("/functions"))
            .bearer_auth(old)
            .send()
            .expect("GET /functions")
            .status();
        assert_eq!(status.as_u16(), 401, "old token must be refused");
    }
    assert_eq!(list_ids(&server, new_admin), vec![id.clone()]);
    assert_eq!(invoke_add(&server, new_tenant, &id, 1, 1), 2);
    let out = run_cli(
        &support::binary(),
        &["observe", "--server", &server.base, "--once"],
        &[("TENSOR_WASM_TOKEN", ADMIN)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
}

/// `ln -sfn TARGET LINK`: a new symlink renamed over the old one.
fn ln_sfn(target: &Path, link: &Path) {
    let tmp = link.with_extension("tmp-link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    fs::rename(&tmp, link).expect("rename symlink into place");
}

#[test]
fn rollback_symlink_swap_keeps_functions() {
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = tmp.path().join("usr-local");
    let data = tmp.path().join("data");
    let good = format!("v{}", env!("CARGO_PKG_VERSION"));
    let lib = prefix.join("lib/tensor-wasm");

    // The good release: the built binary and the unit, as the tarball lays them out.
    let good_bin = lib.join(&good).join("bin/tensor-wasm");
    fs::create_dir_all(good_bin.parent().expect("bin dir")).expect("mkdir");
    fs::copy(support::binary(), &good_bin).expect("install the binary");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../share/tensor-wasm.service");
    if unit.is_file() {
        let share = lib.join(&good).join("share");
        fs::create_dir_all(&share).expect("mkdir share");
        fs::copy(&unit, share.join("tensor-wasm.service")).expect("install the unit");
    }
    // The "bad" newer release: same server, but it reports another version.
    let bad_bin = lib.join("v9.9.9/bin/tensor-wasm");
    fs::create_dir_all(bad_bin.parent().expect("bin dir")).expect("mkdir");
    fs::write(
        &bad_bin,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'tensor-wasm v9.9.9'; exit 0; fi\nexec '{}' \"$@\"\n",
            good_bin.display()
        ),
    )
    .expect("write the second release");
    fs::set_permissions(&bad_bin, fs::Permissions::from_mode(0o755)).expect("chmod");

    let link = prefix.join("bin/tensor-wasm");
    fs::create_dir_all(link.parent().expect("bin")).expect("mkdir bin");
    ln_sfn(&bad_bin, &link);
    let out = run_cli(&link, &["--version"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tensor-wasm v9.9.9"
    );

    // Serving from the bad release, a tenant deploys.
    let mut spec = ServerSpec::new(&data, &tokens(ADMIN, TENANT));
    spec.bin = link.clone();
    let server = Server::start(&spec);
    let id = deploy(&server, TENANT, "adder", &adder_wasm());
    let port = server.port;
    server.stop();

    // Roll back: swap the symlink, check the version through it, restart.
    ln_sfn(&good_bin, &link);
    let out = run_cli(&link, &["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected_version()
    );
    let server = match std::panic::catch_unwind(|| Server::start_on(&spec, Some(port))) {
        Ok(server) => server,
        // The old port was taken meanwhile: any free one proves the same.
        Err(_) => Server::start(&spec),
    };
    assert_eq!(list_ids(&server, ADMIN), vec![id.clone()]);
    assert_eq!(invoke_add(&server, TENANT, &id, 2, 2), 4);
    let first = request_counter_head20(&server);
    assert!(request_counter_head20(&server) > first);
}

#[test]
fn an_interrupted_restore_is_refused_by_serve_and_finished_by_a_second_restore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let backup = tmp.path().join("backup");
    let spec = ServerSpec::new(&data, &tokens(ADMIN, TENANT));
    let server = Server::start(&spec);
    let id = deploy(&server, TENANT, "adder", &adder_wasm());
    let bin = support::binary();
    let (data_arg, backup_arg) = (
        data.to_string_lossy().into_owned(),
        backup.to_string_lossy().into_owned(),
    );
    let out = run_cli(
        &bin,
        &["backup", "--to", &backup_arg, "--data-dir", &data_arg],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();
    fs::remove_dir_all(&data).expect("lose the data dir");

    // What a restore killed after moving the keys but before the store
    // leaves behind: the marker, the keys, no store.
    fs::create_dir_all(data.join("snapshots")).expect("mkdir");
    fs::copy(backup.join("audit.key"), data.join("audit.key")).expect("key");
    fs::write(data.join(".restore-in-progress"), b"restore in progress\n").expect("marker");

    let out = run_cli(
        &bin,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gpu",
            "off",
            "--data-dir",
            &data_arg,
        ],
        &[("TENSOR_WASM_API_TOKENS", &tokens(ADMIN, TENANT))],
    );
    assert!(
        !out.status.success(),
        "serve refuses a half-restored data dir"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted restore"), "{stderr}");
    assert!(!data.join("functions.redb").exists(), "nothing was created");

    // Running the restore again finishes the job.
    let out = run_cli(
        &bin,
        &["restore", "--from", &backup_arg, "--data-dir", &data_arg],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.join(".restore-in-progress").exists());
    let server = Server::start(&spec);
    assert_eq!(invoke_add(&server, TENANT, &id, 40, 2), 42);
}
