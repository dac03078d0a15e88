//! The execution error taxonomy: every way an invocation can fail, each
//! with a stable code for APIs and an outcome label for metrics.

use std::time::Duration;

/// Why compiling or invoking a function failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The bytes are not a valid Wasm module (or WAT text), or its imports cannot be satisfied.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The module is larger or more complex than the compile limits allow.
    #[error("module too complex to compile: {0}")]
    ModuleTooComplex(String),
    /// The requested export does not exist or is not a function.
    #[error("export `{export}` not found (exported functions: {available})")]
    MissingExport {
        /// Requested export name.
        export: String,
        /// Comma-separated list of exported functions.
        available: String,
    },
    /// The arguments do not fit the export's signature.
    #[error("arguments do not match `{signature}`: {message}")]
    SignatureMismatch {
        /// The export's signature, e.g. `add(i32, i32) -> i32`.
        signature: String,
        /// What did not fit.
        message: String,
    },
    /// The guest trapped (unreachable, division by zero, stack overflow, …).
    #[error("guest trapped: {message}")]
    Trap {
        /// The trap message.
        message: String,
    },
    /// The invocation ran past its wall-clock deadline.
    #[error("deadline of {timeout:?} exceeded")]
    DeadlineExceeded {
        /// The deadline that applied.
        timeout: Duration,
    },
    /// The guest tried to grow memory past its cap.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    MemoryLimitExceeded {
        /// The cap that applied.
        limit_bytes: u64,
    },
    /// The guest used up its fuel.
    #[error("fuel budget of {fuel} exhausted")]
    FuelExhausted {
        /// The budget that applied.
        fuel: u64,
    },
    /// The guest wrote more to stdout or stderr than allowed.
    #[error("output exceeded the limit of {limit_bytes} bytes")]
    OutputTooLarge {
        /// The cap that applied.
        limit_bytes: usize,
    },
    /// Every instance slot is in use; retry shortly.
    #[error("all instance slots are busy; retry shortly")]
    Busy,
    /// A host-side failure that is not the guest's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ExecError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidModule(_) => "invalid_module",
            Self::ModuleTooComplex(_) => "module_too_complex",
            Self::MissingExport { .. } => "missing_export",
            Self::SignatureMismatch { .. } => "signature_mismatch",
            Self::Trap { .. } => "trap",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::MemoryLimitExceeded { .. } => "memory_limit_exceeded",
            Self::FuelExhausted { .. } => "fuel_exhausted",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::Busy => "busy",
            Self::Internal(_) => "internal",
        }
    }

    /// Outcome label for `tensor_wasm_invocations_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::InvalidModule(_)
            | Self::ModuleTooComplex(_)
            | Self::MissingExport { .. }
            | Self::SignatureMismatch { .. } => "bad_request",
            Self::Trap { .. } => "trap",
            Self::DeadlineExceeded { .. } => "timeout",
            Self::MemoryLimitExceeded { .. } => "oom",
            Self::FuelExhausted { .. } => "fuel",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::Busy => "busy",
            Self::Internal(_) => "error",
        }
    }

    /// Whether the caller (request or guest) caused the failure, as opposed to the host.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Busy | Self::Internal(_))
    }
}
