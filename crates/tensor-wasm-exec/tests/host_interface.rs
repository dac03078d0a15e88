//! The host-interface extension point, with a tiny interface of this test's
//! own (`test.add_one`) and no GPU: imports link only when the engine lists
//! the interface, state is made per store on first use and dropped with the
//! store however the invocation ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tensor_wasm_exec::{
    EngineConfig, Executor, HostInterface, HostSlot, HostState, InvokeContext, Limits, TypedValue,
};
use wasmtime::{Caller, Linker};

/// Counts, shared between the test and the interface.
#[derive(Default)]
struct Counters {
    /// Per-store states made.
    made: AtomicUsize,
    /// Per-store states dropped.
    dropped: AtomicUsize,
}

/// One store's state: how often its guest called `add_one`, and for whom.
struct Calls {
    tenant: String,
    count: i32,
    counters: Arc<Counters>,
}

impl Drop for Calls {
    fn drop(&mut self) {
        self.counters.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// `test.add_one(x) -> x + 1`, and `test.calls() -> calls so far in this store`.
struct AddOne {
    counters: Arc<Counters>,
    /// The slot the engine gave us, so the test can look into a store.
    slot: Mutex<Option<HostSlot<Calls>>>,
}

impl HostInterface for AddOne {
    type StoreState = Calls;

    fn name(&self) -> &'static str {
        "test"
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<HostState>,
        slot: HostSlot<Calls>,
    ) -> wasmtime::Result<()> {
        *self.slot.lock().unwrap() = Some(slot);
        linker.func_wrap(
            "test",
            "add_one",
            move |mut caller: Caller<'_, HostState>, x: i32| -> i32 {
                caller.data_mut().host_state_mut(slot).count += 1;
                x + 1
            },
        )?;
        linker.func_wrap(
            "test",
            "calls",
            move |mut caller: Caller<'_, HostState>| -> i32 {
                caller.data_mut().host_state_mut(slot).count
            },
        )?;
        Ok(())
    }

    fn new_store_state(&self, tenant: &str) -> Calls {
        self.counters.made.fetch_add(1, Ordering::SeqCst);
        Calls {
            tenant: tenant.to_owned(),
            count: 0,
            counters: self.counters.clone(),
        }
    }
}

const GUEST: &str = r#"(module
  (import "test" "add_one" (func $add_one (param i32) (result i32)))
  (import "test" "calls" (func $calls (result i32)))
  (func (export "twice") (param i32) (result i32)
    (call $add_one (call $add_one (local.get 0))))
  (func (export "twice_then_count") (result i32)
    (drop (call $add_one (call $add_one (i32.const 0))))
    (call $calls))
  (func (export "add_then_spin")
    (drop (call $add_one (i32.const 0)))
    (loop br 0))
  (func (export "pure") (param i32) (result i32) (local.get 0)))"#;

fn engine() -> (Executor, Arc<AddOne>) {
    let interface = Arc::new(AddOne {
        counters: Arc::default(),
        slot: Mutex::new(None),
    });
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 4,
        host_interfaces: vec![interface.clone().into()],
        ..Default::default()
    })
    .expect("engine");
    (exec, interface)
}

fn ctx() -> InvokeContext {
    InvokeContext {
        tenant: "t1".into(),
        limits: Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        cpu_slots: None,
    }
}

#[test]
fn imports_of_an_interface_the_engine_does_not_list_fail_to_link() {
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 4,
        ..Default::default()
    })
    .unwrap();
    let err = exec.compile(GUEST.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "invalid_module");
    assert!(err.to_string().contains("add_one"), "{err}");
}

#[tokio::test]
async fn a_plugged_in_interface_is_callable_from_wat() {
    let (exec, _) = engine();
    let f = exec.compile(GUEST.as_bytes()).unwrap();
    let out = exec
        .call_typed(&f, "twice", &[serde_json::json!(40)], &ctx())
        .await
        .unwrap();
    assert_eq!(out.results, [TypedValue::I32(42)]);
}

#[tokio::test]
async fn each_store_gets_its_own_state_made_once_and_dropped_with_it() {
    let (exec, interface) = engine();
    let counters = &interface.counters;
    let f = exec.compile(GUEST.as_bytes()).unwrap();
    for _ in 0..3 {
        let out = exec
            .call_typed(&f, "twice_then_count", &[], &ctx())
            .await
            .unwrap();
        assert_eq!(
            out.results,
            [TypedValue::I32(2)],
            "no count leaks between stores"
        );
    }
    assert_eq!(counters.made.load(Ordering::SeqCst), 3);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 3);

    let err = exec
        .call_typed(&f, "add_then_spin", &[], &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "deadline_exceeded");
    assert_eq!(counters.made.load(Ordering::SeqCst), 4);
    assert_eq!(
        counters.dropped.load(Ordering::SeqCst),
        4,
        "a store cut off at its deadline drops its state too"
    );
}

#[tokio::test]
async fn a_call_that_never_uses_the_interface_makes_no_state() {
    let (exec, interface) = engine();
    let f = exec.compile(GUEST.as_bytes()).unwrap();
    let out = exec
        .call_typed(&f, "pure", &[serde_json::json!(7)], &ctx())
        .await
        .unwrap();
    assert_eq!(out.results, [TypedValue::I32(7)]);
    assert_eq!(interface.counters.made.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_state_is_visible_in_the_store_and_knows_its_tenant() {
    let (exec, interface) = engine();
    let slot = interface.slot.lock().unwrap().expect("linked");
    let f = exec.compile(GUEST.as_bytes()).unwrap();
    let mut live = exec.instantiate(&f, &ctx()).await.unwrap();
    assert!(live.store_mut().data().host_state(slot).is_none());
    live.call_typed("twice", &[serde_json::json!(1)])
        .await
        .unwrap();
    let calls = live.store_mut().data().host_state(slot).expect("made");
    assert_eq!((calls.tenant.as_str(), calls.count), ("t1", 2));
    drop(live);
    assert_eq!(interface.counters.dropped.load(Ordering::SeqCst), 1);
}
