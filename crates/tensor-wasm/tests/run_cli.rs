//! `tensor-wasm run` and `--version` as a user types them.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "../../../guests/build_support.rs"]
mod build_support;

const BIN: &str = env!("CARGO_BIN_EXE_tensor-wasm");

const ADD_WAT: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "scale") (param f64) (result f64) local.get 0 f64.const 2 f64.mul)
  (func (export "spin") (loop br 0)))"#;

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write fixture");
    (dir, path)
}

#[test]
fn version_prints_the_release_tag() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tensor-wasm v0.1.0"
    );
}

#[test]
fn run_invoke_prints_results_one_per_line() {
    let (_dir, wat) = write_temp("add.wat", ADD_WAT);
    let wat = wat.to_str().unwrap();
    let out = run(&["run", wat, "--invoke", "add", "2", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    let out = run(&["run", wat, "--invoke", "scale", "1.25"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2.5\n");
}

#[test]
fn run_reports_bad_arguments_in_one_line_and_fails() {
    let (_dir, wat) = write_temp("add.wat", ADD_WAT);
    let out = run(&["run", wat.to_str().unwrap(), "--invoke", "add", "2", "x"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("add(i32, i32) -> i32"), "{stderr}");
}

#[test]
fn endless_loop_under_timeout_exits_within_two_seconds() {
    let (_dir, wat) = write_temp("add.wat", ADD_WAT);
    let started = Instant::now();
    let out = run(&[
        "run",
        wat.to_str().unwrap(),
        "--invoke",
        "spin",
        "--timeout",
        "1s",
    ]);
    let took = started.elapsed();
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deadline of 1s exceeded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn malformed_module_is_rejected_clearly() {
    let (_dir, path) = write_temp("bad.wasm", "\0asm\x01\0\0\0\x7fjunk");
    let out = run(&["run", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid module"));
}

#[test]
fn gpu_examples_run_on_the_cpu_backend() {
    let dir = build_support::guest_dir(env!("CARGO_MANIFEST_DIR"));
    for (guest, arg, expect) in [
        ("vector-add.wasm", "65536", "vector-add n=65536"),
        ("matmul.wasm", "64", "matmul n=64"),
        ("ptx-saxpy.wasm", "4096", "ptx-saxpy n=4096"),
    ] {
        let path = dir.join(guest);
        let out = run(&["run", "--gpu", "cpu", path.to_str().unwrap(), arg]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{guest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(expect) && stdout.contains(" ok"),
            "{guest}: {stdout}"
        );
    }
}
