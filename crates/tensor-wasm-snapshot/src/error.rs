//! The one error type of this crate: one variant per thing a caller can act on.

use std::path::PathBuf;

/// Why a snapshot could not be written, read, captured or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file ends before the length its header announces (a killed writer,
    /// a partial copy).
    #[error(
        "snapshot is truncated: {actual} bytes, the header announces at least {expected}; \
         the file was cut short (partial copy or killed writer) — take a new snapshot"
    )]
    Truncated {
        /// Bytes the header (or the fixed layout) requires.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// The file does not start with the `*.tensor-wasm` magic bytes.
    #[error("not a tensor-wasm snapshot: bad magic bytes {found}")]
    BadMagic {
        /// The first bytes found, hex.
        found: String,
    },
    /// The BLAKE3 checksum over the file does not match: the file was altered
    /// (bit rot, tampering, a bad copy).
    #[error(
        "snapshot checksum mismatch: stored {stored}, computed {computed}; the file is corrupt"
    )]
    ChecksumMismatch {
        /// Checksum stored in the file, hex.
        stored: String,
        /// Checksum of the bytes read, hex.
        computed: String,
    },
    /// The snapshot was taken from a different module than the one it is
    /// being restored into.
    #[error(
        "snapshot belongs to module {snapshot_module}, not to module {given_module}; \
         restore it with the module it was taken from"
    )]
    WrongModule {
        /// BLAKE3 of the module the snapshot was taken from, hex.
        snapshot_module: String,
        /// BLAKE3 of the module offered for the restore, hex.
        given_module: String,
    },
    /// The snapshot was taken by an engine with a different fingerprint and the
    /// caller asked for a strict engine match.
    #[error(
        "snapshot was taken by engine {snapshot_engine}, this engine is {this_engine} \
         (strict engine matching is on)"
    )]
    EngineMismatch {
        /// Fingerprint stored in the snapshot, hex.
        snapshot_engine: String,
        /// Fingerprint of the engine restoring it, hex.
        this_engine: String,
    },
    /// Written by a newer format version than this reader understands.
    #[error(
        "snapshot written by a newer format version: the file is format version \
         {file_version}, this reader reads versions {oldest_readable} to {reader_version}; \
         use a tensor-wasm release that reads format {file_version}, or delete and re-capture \
         the snapshot (see SNAPSHOT-COMPATIBILITY.md)"
    )]
    NewerVersion {
        /// Format version of the file.
        file_version: u16,
        /// Newest format version this reader reads (and writes).
        reader_version: u16,
        /// Oldest format version this reader still reads.
        oldest_readable: u16,
    },
    /// Written by a format version older than the compatibility window.
    #[error(
        "snapshot format version {file_version} is older than this reader's window \
         ({oldest_readable} to {reader_version}); take a new snapshot \
         (see SNAPSHOT-COMPATIBILITY.md)"
    )]
    TooOldVersion {
        /// Format version of the file.
        file_version: u16,
        /// Newest format version this reader reads.
        reader_version: u16,
        /// Oldest format version this reader still reads.
        oldest_readable: u16,
    },
    /// The file is signed, but the signature does not verify (or the signer
    /// is not a trusted key).
    #[error("snapshot signature is invalid: {reason}")]
    BadSignature {
        /// What failed.
        reason: String,
    },
    /// The reader requires signed snapshots and this one carries no signature.
    #[error(
        "snapshot is unsigned but a signature is required (a signing key is configured); \
         re-take the snapshot with the signing key"
    )]
    SignatureRequired,
    /// The header or body is structurally invalid although its checksum
    /// matched (a writer bug or a crafted file).
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    /// The module cannot be snapshotted faithfully (see the crate docs).
    #[error("module cannot be snapshotted: {0}")]
    Unsupported(String),
    /// The module bytes are not valid Wasm/WAT.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The instance does not look like the one the layout describes (e.g. it
    /// was not instantiated from the instrumented module).
    #[error("instance does not match the snapshot layout: {0}")]
    LayoutMismatch(String),
    /// Applying the snapshot to a fresh instance failed (e.g. the memory limit
    /// is lower than the snapshot's memory size).
    #[error("restore failed: {0}")]
    Restore(String),
    /// Signing key could not be read or parsed.
    #[error("signing key {path}: {reason}")]
    SigningKey {
        /// Where the key was looked for.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No snapshot with that id.
    #[error("snapshot {0} not found")]
    NotFound(String),
    /// Running the guest (instantiate, init, call) failed.
    #[error(transparent)]
    Exec(#[from] tensor_wasm_exec::ExecError),
    /// Filesystem error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl SnapshotError {
    /// Stable machine-readable code (HTTP error bodies, metrics, `--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "snapshot_truncated",
            Self::BadMagic { .. } => "snapshot_bad_magic",
            Self::ChecksumMismatch { .. } => "snapshot_checksum_mismatch",
            Self::WrongModule { .. } => "snapshot_wrong_module",
            Self::EngineMismatch { .. } => "snapshot_engine_mismatch",
            Self::NewerVersion { .. } => "snapshot_newer_version",
            Self::TooOldVersion { .. } => "snapshot_too_old_version",
            Self::BadSignature { .. } => "snapshot_bad_signature",
            Self::SignatureRequired => "snapshot_signature_required",
            Self::Malformed(_) => "snapshot_malformed",
            Self::Unsupported(_) => "snapshot_unsupported",
            Self::InvalidModule(_) => "invalid_module",
            Self::LayoutMismatch(_) => "snapshot_layout_mismatch",
            Self::Restore(_) => "snapshot_restore_failed",
            Self::SigningKey { .. } => "snapshot_signing_key",
            Self::NotFound(_) => "snapshot_not_found",
            Self::Exec(e) => e.code(),
            Self::Io { .. } => "io",
        }
    }

    /// True when the snapshot file itself is unusable (corrupt, foreign,
    /// too new, untrusted) rather than the request or the server being wrong.
    pub fn is_bad_snapshot(&self) -> bool {
        matches!(
            self,
            Self::Truncated { .. }
                | Self::BadMagic { .. }
                | Self::ChecksumMismatch { .. }
                | Self::WrongModule { .. }
                | Self::EngineMismatch { .. }
                | Self::NewerVersion { .. }
                | Self::TooOldVersion { .. }
                | Self::BadSignature { .. }
                | Self::SignatureRequired
                | Self::Malformed(_)
        )
    }

    /// True when the file's bytes are damaged (truncated, not a snapshot,
    /// checksum, structure) — as opposed to valid but unusable here (another
    /// engine, a newer format after a rollback, an untrusted signer), which
    /// may well be usable by another binary.
    pub fn is_damaged(&self) -> bool {
        matches!(
            self,
            Self::Truncated { .. }
                | Self::BadMagic { .. }
                | Self::ChecksumMismatch { .. }
                | Self::Malformed(_)
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
