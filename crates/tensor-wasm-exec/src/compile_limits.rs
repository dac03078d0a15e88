//! What a module may cost to compile, checked before the compiler sees it,
//! and how many compiles may run at once.
//!
//! Cranelift's time and memory grow with a function's size and its locals:
//! a 7 MB single-function module with 50 000 locals took 2.6 s and 178 MB of
//! RSS to compile. A tenant's deploy must not be able to buy that for free,
//! and many of them at once must not take every core: the shape of the
//! module is checked first (a streaming pass over the section headers and
//! each body's local declarations — no validation, no allocation per
//! instruction), and compiles queue for a bounded number of slots.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::ExecError;

/// Bounds on a module's shape, checked before compiling
/// (`TENSOR_WASM_API_MAX_MODULE_FUNCTIONS`, `_MAX_FUNCTION_LOCALS`,
/// `_MAX_FUNCTION_BODY_BYTES`, `_MAX_CONCURRENT_COMPILES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Functions defined by the module (imports not counted).
    pub max_functions: u32,
    /// Locals declared by one function (parameters not counted).
    pub max_locals_per_function: u32,
    /// Bytes of one function body.
    pub max_function_body_bytes: u32,
    /// Compiles running at once; more wait for a slot.
    pub max_concurrent: usize,
    /// How long a compile waits for a slot before `busy`.
    pub queue_timeout: Duration,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            max_functions: 50_000,
            max_locals_per_function: 10_000,
            max_function_body_bytes: 1 << 20,
            max_concurrent: std::thread::available_parallelism()
                .map_or(1, |n| n.get().div_ceil(2))
                .max(1),
            queue_timeout: Duration::from_secs(30),
        }
    }
}

impl CompileLimits {
    /// Checks `wasm` (a binary module) against the shape limits. Malformed
    /// input is left to the compiler, which reports it properly.
    pub fn check(&self, wasm: &[u8]) -> Result<(), ExecError> {
        use wasmparser::{Parser, Payload};
        let too_complex = |what: String| Err(ExecError::ModuleTooComplex(what));
        let mut index = 0u32;
        for payload in Parser::new(0).parse_all(wasm) {
            let Ok(payload) = payload else {
                return Ok(());
            };
            match payload {
                Payload::FunctionSection(s) if s.count() > self.max_functions => {
                    return too_complex(format!(
                        "{} functions; at most {} are allowed",
                        s.count(),
                        self.max_functions
                    ));
                }
                Payload::CodeSectionStart { count, .. } if count > self.max_functions => {
                    return too_complex(format!(
                        "{count} function bodies; at most {} are allowed",
                        self.max_functions
                    ));
                }
                Payload::CodeSectionEntry(body) => {
                    let size = body.range().len();
                    if size > self.max_function_body_bytes as usize {
                        return too_complex(format!(
                            "function {index} has a body of {size} bytes; at most {} are allowed",
                            self.max_function_body_bytes
                        ));
                    }
                    let Ok(locals) = body.get_locals_reader() else {
                        return Ok(());
                    };
                    let mut total = 0u64;
                    for local in locals {
                        let Ok((n, _)) = local else {
                            return Ok(());
                        };
                        total += u64::from(n);
                        if total > u64::from(self.max_locals_per_function) {
                            return too_complex(format!(
                                "function {index} declares more than {} locals",
                                self.max_locals_per_function
                            ));
                        }
                    }
                    index += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A counting semaphore for blocking callers (compiles run on blocking
/// threads, never on the async executor).
#[derive(Debug)]
pub(crate) struct CompileSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One compile slot; given back on drop.
pub(crate) struct CompileSlot<'a>(&'a CompileSlots);

impl Drop for CompileSlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

impl CompileSlots {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            free: Mutex::new(slots.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits up to `timeout` for a slot; `Busy` after that.
    pub(crate) fn acquire(&self, timeout: Duration) -> Result<CompileSlot<'_>, ExecError> {
        let deadline = Instant::now() + timeout;
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ExecError::Busy);
            }
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= 1;
        Ok(CompileSlot(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CompileLimits {
        CompileLimits {
            max_functions: 3,
            max_locals_per_function: 100,
            max_function_body_bytes: 200,
            ..CompileLimits::default()
        }
    }

    fn module(functions: usize, locals: u32, body_nops: usize) -> Vec<u8> {
        let body = "nop ".repeat(body_nops);
        let funcs: String = (0..functions)
            .map(|_| format!("(func (local {}) {body})", "i32 ".repeat(locals as usize)))
            .collect();
        wat::parse_str(format!("(module {funcs})")).unwrap()
    }

    #[test]
    fn each_shape_limit_is_checked_with_a_clear_message() {
        let l = limits();
        assert!(l.check(&module(3, 100, 10)).is_ok());
        let err = l.check(&module(4, 1, 1)).unwrap_err();
        assert_eq!(err.code(), "module_too_complex");
        assert!(err.to_string().contains("4 functions"), "{err}");
        let err = l.check(&module(1, 101, 1)).unwrap_err();
        assert!(err.to_string().contains("more than 100 locals"), "{err}");
        let err = l.check(&module(1, 1, 300)).unwrap_err();
        assert!(
            err.to_string().contains("function 0 has a body of"),
            "{err}"
        );
        // Not a module at all: the compiler's error is the better one.
        assert!(l.check(b"garbage").is_ok());
    }

    #[test]
    fn slots_bound_concurrent_compiles_and_time_out_as_busy() {
        let slots = CompileSlots::new(1);
        let held = slots.acquire(Duration::from_millis(10)).unwrap();
        let err = slots.acquire(Duration::from_millis(20)).err().unwrap();
        assert_eq!(err.code(), "busy");
        drop(held);
        assert!(slots.acquire(Duration::from_millis(10)).is_ok());
    }
}
