//! A disk that fills: deploys fail with a clear `500 store_error` while it
//! is full, `/healthz` stays truthful, and the server takes writes again —
//! without a restart — once space returns; nothing committed is lost.
//!
//! Runs on a 6 MiB tmpfs the test mounts; skips (and says so) where
//! mounting is not allowed (not root, no CAP_SYS_ADMIN).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `add` plus a custom section of `pad` bytes (distinct per `seed`).
fn padded_module(seed: u32, pad: usize) -> Vec<u8> {
    let mut m = wasm(ADD_WAT);
    let mut payload = vec![3u8];
    payload.extend_from_slice(b"pad");
    payload.extend((0..pad).map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed) as u8));
    m.push(0); // custom section
    leb128(payload.len() as u64, &mut m);
    m.extend(payload);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_deploys_clearly_and_writes_resume_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .output();
    if !matches!(&mounted, Ok(o) if o.status.success()) {
        eprintln!(
            "SKIP a_full_disk_fails_deploys_clearly…: cannot mount a tmpfs here (needs root): {mounted:?}"
        );
        return;
    }
    let _unmount = Unmount(mnt.clone());
    let data = mnt.join("data");
    let s = TestServer::start_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    })
    .await;
    // Space we can give back later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 3 << 20]).unwrap();

    let mut ids = Vec::new();
    let mut failure = None;
    for seed in 0..40 {
        let r = s
            .post("/functions", Some(TENANT_7))
            .json(&json!({"name": format!("f{seed}"), "wasm_b64": b64(&padded_module(seed, 256 << 10))}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if status == 201 {
            ids.push(v["id"].as_str().unwrap().to_owned());
        } else {
            failure = Some((status, v));
            break;
        }
    }
    let (status, v) = failure.expect("the disk filled up");
    assert_eq!((status, error_code(&v)), (500, "store_error"), "{v}");
    assert!(!ids.is_empty(), "some deploys fit");
    // Reads still work from what was committed.
    let (st, out) = s
        .invoke(Some(TENANT_7), &ids[0], "add", json!([2, 3]))
        .await;
    assert_eq!((st, out["results"][0].as_i64()), (200, Some(5)), "{out}");

    // Space returns: the very next deploy succeeds, no restart.
    std::fs::remove_file(&filler).unwrap();
    let id = s.deploy(Some(TENANT_7), "after", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ids.push(id);
    let listed: Value = s.get_json("/functions", Some(TENANT_7)).await;
    assert_eq!(
        listed["functions"].as_array().unwrap().len(),
        ids.len(),
        "{listed}"
    );

    // And all of it is durable.
    let tmp_owner = s.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let s = TestServer::start_with(Options {
        data_dir: Some(data),
        ..Options::default()
    })
    .await;
    for id in &ids {
        let (st, out) = s.invoke(Some(TENANT_7), id, "add", json!([1, 1])).await;
        assert_eq!(
            (st, out["results"][0].as_i64()),
            (200, Some(2)),
            "{id}: {out}"
        );
    }
    drop(s);
    drop(tmp_owner);
}
