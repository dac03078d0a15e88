//! The GPU example guests deployed and invoked through the gateway (bytes
//! calls: the body is the guest's stdin), on the CPU backend.

mod support;

use support::{Server, ServerSpec, deploy, http};

#[path = "../../../guests/build_support.rs"]
mod build_support;

const ADMIN: &str = "gpu-admin-token-0123456789";

#[test]
fn gpu_examples_run_through_the_gateway() {
    let guests = build_support::guest_dir(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&ServerSpec::new(data.path(), &format!("{ADMIN}:tenant=*")));

    let ready: serde_json::Value = http()
        .get(server.url("/readyz"))
        .send()
        .and_then(|r| r.json())
        .expect("readyz");
    assert_eq!(ready["gpu_backend"], "cpu", "{ready}");

    for (guest, input, expect) in [
        ("vector-add", "65536", "vector-add n=65536"),
        ("matmul", "48", "matmul n=48"),
        ("ptx-saxpy", "4096", "ptx-saxpy n=4096"),
    ] {
        let wasm = std::fs::read(guests.join(format!("{guest}.wasm"))).expect("guest built");
        let id = deploy(&server, ADMIN, guest, &wasm);
        let resp = http()
            .post(server.url(&format!("/functions/{id}/invoke")))
            .bearer_auth(ADMIN)
            .header("Content-Type", "text/plain")
            .body(input)
            .send()
            .expect("invoke");
        let status = resp.status().as_u16();
        let exit = resp
            .headers()
            .get("x-tensor-wasm-exit-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let stdout = resp.text().expect("body");
        assert_eq!(status, 200, "{guest}: {stdout}");
        assert_eq!(exit.as_deref(), Some("0"), "{guest}: {stdout}");
        assert!(
            stdout.contains(expect) && stdout.contains(" ok"),
            "{guest}: {stdout}"
        );
        if guest == "ptx-saxpy" {
            // Raw PTX is off unless the operator enables it for the tenant:
            // the guest is told so and uses the built-in op.
            assert!(
                stdout.contains("raw PTX is disabled") && stdout.contains("path=builtin"),
                "{stdout}"
            );
        }
    }
}
