//! The `*.tensor-wasm` file format (specified in `FORMAT.md`).
//!
//! ```text
//! [fixed header, 160 bytes] [meta: JSON, meta_len] [body: zstd(postcard), body_len]
//! [signature block, 96 bytes, only when SIGNED] [checksum: BLAKE3 of all before, 32]
//! ```
//!
//! Everything a reader needs to decide whether it can read a file (magic,
//! version, header length) sits at fixed offsets that no future version moves.
//! The checksum is verified before any length field is trusted for a read, and
//! before the body is decompressed.

use std::io::{Read, Write};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;

use crate::error::SnapshotError;
use crate::state::{EngineFingerprint, InstanceState, ModuleHash, Snapshot, SnapshotMeta, hex};

/// First 8 bytes of every snapshot file: `\x89TWSNAP\n`.
pub const MAGIC: [u8; 8] = *b"\x89TWSNAP\n";
/// Format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u16 = 1;
/// Oldest format version this build still reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;
/// Length of the fixed header in format version 1.
pub const FIXED_HEADER_LEN: usize = 160;
/// Length of the trailing BLAKE3 checksum.
pub const CHECKSUM_LEN: usize = 32;
/// Length of the signature block (public key + signature) when SIGNED.
pub const SIGNATURE_BLOCK_LEN: usize = 32 + 64;
/// File name extension of snapshot files (the data dir's layout names it).
pub const EXTENSION: &str = tensor_wasm_fs::names::SNAPSHOT_EXTENSION;

/// Header flag: a signature block precedes the checksum.
pub const FLAG_SIGNED: u32 = 1 << 0;
/// Header flag: memories hold every page, not only those that differ from a
/// fresh instance.
pub const FLAG_FULL_IMAGE: u32 = 1 << 1;
const KNOWN_FLAGS: u32 = FLAG_SIGNED | FLAG_FULL_IMAGE;
/// Compression id for zstd (the only one in version 1).
pub const COMPRESSION_ZSTD: u8 = 1;
/// Prefix of the message an ed25519 signature signs (followed by the 32-byte
/// BLAKE3 of header + meta + body).
pub const SIGNATURE_CONTEXT: &[u8] = b"tensor-wasm snapshot signature v1\0";

/// zstd level: fast enough that compression is not the cost of a snapshot.
const ZSTD_LEVEL: i32 = 3;
/// Largest metadata block accepted (it is a handful of short strings).
const MAX_META_LEN: u32 = 64 * 1024;
/// Largest decoded body any file may announce, whatever its header says:
/// checked before a byte is decompressed. (Guest memories are at most the
/// engine's 1 GiB ceiling each; this leaves room for several.)
pub const MAX_BODY_RAW_LEN: u64 = 4 << 30;
/// What the decoded body may hold besides the stored memory bytes (segment
/// offsets and lengths, globals): far more than real snapshots need.
const MAX_BODY_OVERHEAD: u64 = 64 << 20;
/// Largest snapshot file read at all.
pub const MAX_FILE_LEN: u64 = MAX_BODY_RAW_LEN + (1 << 20);
/// Granularity of progress reports while (de)compressing.
const PROGRESS_CHUNK: usize = 1 << 20;

/// Reports progress of a long operation: `(done, total)` in bytes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Everything the file says about itself without decompressing the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotHeader {
    /// Format version of the file.
    pub format_version: u16,
    /// A signature block is present.
    pub signed: bool,
    /// Memories hold every page (see [`FLAG_FULL_IMAGE`]).
    pub full_image: bool,
    /// Body compression (`"zstd"`).
    pub compression: &'static str,
    /// BLAKE3 of the original module, hex.
    pub module_blake3: String,
    /// Engine fingerprint, hex.
    pub engine_fingerprint: String,
    /// Capture time, ms since the Unix epoch.
    pub created_at_unix_ms: i64,
    /// Capture time, RFC 3339.
    pub created_at: String,
    /// Number of memories captured.
    pub memory_count: u32,
    /// Number of mutable globals captured.
    pub global_count: u32,
    /// Sum of the memories' sizes at capture.
    pub memory_bytes: u64,
    /// Memory bytes stored in the body (before compression).
    pub stored_bytes: u64,
    /// Body size after decompression.
    pub body_raw_len: u64,
    /// Body size in the file (compressed).
    pub body_len: u64,
    /// Whole file size.
    pub file_len: u64,
    /// Signer's ed25519 public key, hex, when signed.
    pub signer: Option<String>,
    /// Human-facing metadata.
    pub meta: SnapshotMeta,
    #[serde(skip)]
    pub(crate) module: ModuleHash,
    #[serde(skip)]
    pub(crate) engine: EngineFingerprint,
    #[serde(skip)]
    pub(crate) meta_len: u32,
}

impl SnapshotHeader {
    /// Module the snapshot belongs to.
    pub fn module(&self) -> ModuleHash {
        self.module
    }

    /// Engine that took it.
    pub fn engine(&self) -> EngineFingerprint {
        self.engine
    }

    fn body_start(&self) -> usize {
        FIXED_HEADER_LEN + self.meta_len as usize
    }

    fn signed_end(&self) -> u64 {
        (FIXED_HEADER_LEN as u64)
            .saturating_add(u64::from(self.meta_len))
            .saturating_add(self.body_len)
    }

    fn expected_file_len(&self) -> u64 {
        let sig = if self.signed {
            SIGNATURE_BLOCK_LEN as u64
        } else {
            0
        };
        self.signed_end()
            .saturating_add(sig)
            .saturating_add(CHECKSUM_LEN as u64)
    }
}

/// What a reader demands of signatures.
#[derive(Debug, Clone, Default)]
pub struct VerifyPolicy {
    /// Keys whose signatures are accepted. Empty: any embedded key is
    /// checked against its own signature (integrity, not authenticity).
    pub trusted_keys: Vec<VerifyingKey>,
    /// Refuse unsigned files.
    pub require_signature: bool,
}

impl VerifyPolicy {
    /// The policy of a node holding `key`: require its signature.
    pub fn require(key: &SigningKey) -> Self {
        Self {
            trusted_keys: vec![key.verifying_key()],
            require_signature: true,
        }
    }
}

/// Serialises `snapshot` into a complete file image, signed when `signer` is
/// given. `progress` sees compression advance.
pub fn encode(
    snapshot: &Snapshot,
    signer: Option<&SigningKey>,
    progress: Option<Progress<'_>>,
) -> Result<Vec<u8>, SnapshotError> {
    let meta = serde_json::to_vec(&snapshot.meta)
        .map_err(|e| SnapshotError::Malformed(format!("metadata does not serialise: {e}")))?;
    if meta.len() > MAX_META_LEN as usize {
        return Err(SnapshotError::Malformed(format!(
            "metadata is {} bytes, the limit is {MAX_META_LEN}",
            meta.len()
        )));
    }
    let raw = postcard::to_stdvec(&snapshot.state)
        .map_err(|e| SnapshotError::Malformed(format!("body does not serialise: {e}")))?;
    // Never write what no reader accepts (it would be quarantined later).
    let raw_len = raw.len() as u64;
    let stored = snapshot.state.stored_bytes();
    if raw_len > MAX_BODY_RAW_LEN || raw_len.saturating_sub(stored) > MAX_BODY_OVERHEAD {
        return Err(SnapshotError::Unsupported(format!(
            "a snapshot body of {raw_len} bytes ({stored} of memory content) exceeds what \
             readers accept ({MAX_BODY_RAW_LEN} bytes, at most {MAX_BODY_OVERHEAD} besides memory)"
        )));
    }
    let body = compress(&raw, progress)?;

    let mut flags = 0u32;
    if signer.is_some() {
        flags |= FLAG_SIGNED;
    }
    if snapshot.state.full_image {
        flags |= FLAG_FULL_IMAGE;
    }
    let count = |n: usize, what: &str| {
        u32::try_from(n).map_err(|_| SnapshotError::Unsupported(format!("too many {what}: {n}")))
    };

    let mut out = Vec::with_capacity(
        FIXED_HEADER_LEN + meta.len() + body.len() + SIGNATURE_BLOCK_LEN + CHECKSUM_LEN,
    );
    out.extend_from_slice(&MAGIC); // 0
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes()); // 8
    out.extend_from_slice(&(FIXED_HEADER_LEN as u16).to_le_bytes()); // 10
    out.extend_from_slice(&flags.to_le_bytes()); // 12
    out.push(COMPRESSION_ZSTD); // 16
    out.extend_from_slice(&[0u8; 7]); // 17
    out.extend_from_slice(&snapshot.module.0); // 24
    out.extend_from_slice(&snapshot.engine.0); // 56
    out.extend_from_slice(&snapshot.created_at_unix_ms.to_le_bytes()); // 88
    out.extend_from_slice(&count(snapshot.state.memories.len(), "memories")?.to_le_bytes()); // 96
    out.extend_from_slice(&count(snapshot.state.globals.len(), "globals")?.to_le_bytes()); // 100
    out.extend_from_slice(&snapshot.state.memory_bytes().to_le_bytes()); // 104
    out.extend_from_slice(&snapshot.state.stored_bytes().to_le_bytes()); // 112
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes()); // 120
    out.extend_from_slice(&[0u8; 4]); // 124
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes()); // 128
    out.extend_from_slice(&(body.len() as u64).to_le_bytes()); // 136
    out.extend_from_slice(&[0u8; 16]); // 144
    debug_assert_eq!(out.len(), FIXED_HEADER_LEN);
    out.extend_from_slice(&meta);
    out.extend_from_slice(&body);

    if let Some(key) = signer {
        let signature = key.sign(&signing_message(&out));
        out.extend_from_slice(key.verifying_key().as_bytes());
        out.extend_from_slice(&signature.to_bytes());
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    Ok(out)
}

/// Parses and checks the fixed header and metadata of a file image (or of a
/// prefix of one: only `FIXED_HEADER_LEN + meta_len` bytes are needed).
/// Verifies neither checksum nor signature.
pub fn read_header(bytes: &[u8], file_len: u64) -> Result<SnapshotHeader, SnapshotError> {
    let prefix_len = bytes.len().min(MAGIC.len());
    if bytes[..prefix_len] != MAGIC[..prefix_len] {
        return Err(SnapshotError::BadMagic {
            found: hex(&bytes[..prefix_len]),
        });
    }
    // Magic and version first: they are at the same offsets in every version.
    if bytes.len() < 10 {
        return Err(truncated(10, file_len));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version > FORMAT_VERSION {
        return Err(SnapshotError::NewerVersion {
            file_version: version,
            reader_version: FORMAT_VERSION,
            oldest_readable: OLDEST_READABLE_VERSION,
        });
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(SnapshotError::TooOldVersion {
            file_version: version,
            reader_version: FORMAT_VERSION,
            oldest_readable: OLDEST_READABLE_VERSION,
        });
    }
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(truncated(FIXED_HEADER_LEN as u64, file_len));
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[o..o + 4]);
        u32::from_le_bytes(b)
    };
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let arr32 = |o: usize| {
        let mut b = [0u8; 32];
        b.copy_from_slice(&bytes[o..o + 32]);
        b
    };

    let header_len = u16_at(10);
    if usize::from(header_len) != FIXED_HEADER_LEN {
        return Err(SnapshotError::Malformed(format!(
            "header length {header_len}, format version {version} requires {FIXED_HEADER_LEN}"
        )));
    }
    let flags = u32_at(12);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(SnapshotError::Malformed(format!(
            "unknown header flags {:#x}",
            flags & !KNOWN_FLAGS
        )));
    }
    let compression = bytes[16];
    if compression != COMPRESSION_ZSTD {
        return Err(SnapshotError::Malformed(format!(
            "unknown compression id {compression} (1 = zstd)"
        )));
    }
    let created_at_unix_ms = u64_at(88) as i64;
    let meta_len = u32_at(120);
    if meta_len > MAX_META_LEN {
        return Err(SnapshotError::Malformed(format!(
            "metadata length {meta_len} exceeds {MAX_META_LEN}"
        )));
    }
    let meta_end = FIXED_HEADER_LEN + meta_len as usize;
    if bytes.len() < meta_end {
        return Err(truncated(meta_end as u64, file_len));
    }
    let meta: SnapshotMeta = serde_json::from_slice(&bytes[FIXED_HEADER_LEN..meta_end])
        .map_err(|e| SnapshotError::Malformed(format!("metadata is not valid JSON: {e}")))?;
    let module = ModuleHash(arr32(24));
    let engine = EngineFingerprint(arr32(56));
    let signed = flags & FLAG_SIGNED != 0;
    let mut header = SnapshotHeader {
        format_version: version,
        signed,
        full_image: flags & FLAG_FULL_IMAGE != 0,
        compression: "zstd",
        module_blake3: module.to_hex(),
        engine_fingerprint: engine.to_hex(),
        created_at_unix_ms,
        created_at: rfc3339(created_at_unix_ms),
        memory_count: u32_at(96),
        global_count: u32_at(100),
        memory_bytes: u64_at(104),
        stored_bytes: u64_at(112),
        body_raw_len: u64_at(128),
        body_len: u64_at(136),
        file_len,
        signer: None,
        meta,
        module,
        engine,
        meta_len,
    };
    check_sizes(&header)?;
    let expected = header.expected_file_len();
    if file_len < expected {
        return Err(truncated(expected, file_len));
    }
    if file_len > expected {
        return Err(SnapshotError::Malformed(format!(
            "{} bytes after the checksum (file is {file_len} bytes, header announces {expected})",
            file_len - expected
        )));
    }
    if signed && bytes.len() as u64 >= header.signed_end().saturating_add(32) {
        let at = header.signed_end() as usize;
        header.signer = Some(hex(&bytes[at..at + 32]));
    }
    Ok(header)
}

/// Bounds every size the header declares — by the file's own length and by
/// absolute caps — before anything is sliced, allocated or decompressed: a
/// crafted header must produce an error, never a panic or a huge allocation.
fn check_sizes(h: &SnapshotHeader) -> Result<(), SnapshotError> {
    let bad = |m: String| Err(SnapshotError::Malformed(m));
    if h.body_len > h.file_len {
        return bad(format!(
            "body length {} exceeds the file's {} bytes",
            h.body_len, h.file_len
        ));
    }
    if h.body_raw_len > MAX_BODY_RAW_LEN {
        return bad(format!(
            "body announces {} decoded bytes, more than the {MAX_BODY_RAW_LEN}-byte cap",
            h.body_raw_len
        ));
    }
    if h.stored_bytes > h.memory_bytes {
        return bad(format!(
            "stores {} bytes of memories totalling {}",
            h.stored_bytes, h.memory_bytes
        ));
    }
    if h.body_raw_len < h.stored_bytes || h.body_raw_len - h.stored_bytes > MAX_BODY_OVERHEAD {
        return bad(format!(
            "body announces {} decoded bytes for {} stored bytes",
            h.body_raw_len, h.stored_bytes
        ));
    }
    Ok(())
}

/// Verifies a complete file image: structure, checksum, signature policy.
/// Returns the header; the body is not decompressed.
pub fn verify(bytes: &[u8], policy: &VerifyPolicy) -> Result<SnapshotHeader, SnapshotError> {
    let header = read_header(bytes, bytes.len() as u64)?;
    let (content, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let computed = blake3::hash(content);
    if computed.as_bytes() != stored {
        return Err(SnapshotError::ChecksumMismatch {
            stored: hex(stored),
            computed: computed.to_hex().to_string(),
        });
    }
    let signed_end = header.signed_end() as usize;
    if header.signed {
        let block = &bytes[signed_end..signed_end + SIGNATURE_BLOCK_LEN];
        let mut key_bytes = [0u8; 32];
        key_bytes.copy_from_slice(&block[..32]);
        let mut sig_bytes = [0u8; 64];
        sig_bytes.copy_from_slice(&block[32..]);
        let key =
            VerifyingKey::from_bytes(&key_bytes).map_err(|e| SnapshotError::BadSignature {
                reason: format!("embedded public key is invalid: {e}"),
            })?;
        if !policy.trusted_keys.is_empty() && !policy.trusted_keys.contains(&key) {
            return Err(SnapshotError::BadSignature {
                reason: format!(
                    "signed by key {}, which is not a trusted key",
                    hex(&key_bytes)
                ),
            });
        }
        let signature = Signature::from_bytes(&sig_bytes);
        key.verify(&signing_message(&bytes[..signed_end]), &signature)
            .map_err(|_| SnapshotError::BadSignature {
                reason: "signature does not match the contents".into(),
            })?;
    } else if policy.require_signature {
        return Err(SnapshotError::SignatureRequired);
    }
    Ok(header)
}

/// Verifies a complete file image and decodes the snapshot in it.
pub fn decode(
    bytes: &[u8],
    policy: &VerifyPolicy,
    progress: Option<Progress<'_>>,
) -> Result<Snapshot, SnapshotError> {
    let header = verify(bytes, policy)?;
    let start = header.body_start();
    let body = &bytes[start..start + header.body_len as usize];
    let raw = decompress(body, header.body_raw_len, progress)?;
    let mut state: InstanceState = postcard::from_bytes(&raw)
        .map_err(|e| SnapshotError::Malformed(format!("body does not decode: {e}")))?;
    state.full_image = header.full_image;
    check_state(&state, &header)?;
    Ok(Snapshot {
        module: header.module,
        engine: header.engine,
        created_at_unix_ms: header.created_at_unix_ms,
        meta: header.meta,
        state,
    })
}

/// Structural invariants a restore relies on (the checksum only proves the
/// writer wrote these bytes, not that the writer was right).
fn check_state(state: &InstanceState, header: &SnapshotHeader) -> Result<(), SnapshotError> {
    let bad = |m: String| Err(SnapshotError::Malformed(m));
    if state.memories.len() as u64 != u64::from(header.memory_count)
        || state.globals.len() as u64 != u64::from(header.global_count)
    {
        return bad("body memory/global counts differ from the header".into());
    }
    if state.memory_bytes() != header.memory_bytes || state.stored_bytes() != header.stored_bytes {
        return bad("body memory sizes differ from the header".into());
    }
    if !state.memories.windows(2).all(|w| w[0].index < w[1].index)
        || !state.globals.windows(2).all(|w| w[0].index < w[1].index)
    {
        return bad("memory or global indices are not strictly ascending".into());
    }
    for memory in &state.memories {
        let mut next_free = 0u64;
        for segment in &memory.segments {
            let end = segment.offset.checked_add(segment.bytes.len() as u64);
            match end {
                Some(end) if segment.offset >= next_free && end <= memory.size_bytes => {
                    next_free = end;
                }
                _ => {
                    return bad(format!(
                        "memory {} segment at {} overlaps another or lies outside its {} bytes",
                        memory.index, segment.offset, memory.size_bytes
                    ));
                }
            }
        }
    }
    Ok(())
}

fn signing_message(signed_part: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32);
    msg.extend_from_slice(SIGNATURE_CONTEXT);
    msg.extend_from_slice(blake3::hash(signed_part).as_bytes());
    msg
}

fn compress(raw: &[u8], mut progress: Option<Progress<'_>>) -> Result<Vec<u8>, SnapshotError> {
    let io = |e| SnapshotError::io("<zstd>", e);
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(io)?;
    let total = raw.len() as u64;
    let mut done = 0u64;
    for chunk in raw.chunks(PROGRESS_CHUNK) {
        encoder.write_all(chunk).map_err(io)?;
        done += chunk.len() as u64;
        if let Some(p) = progress.as_mut() {
            p(done, total);
        }
    }
    encoder.finish().map_err(io)
}

fn decompress(
    body: &[u8],
    raw_len: u64,
    mut progress: Option<Progress<'_>>,
) -> Result<Vec<u8>, SnapshotError> {
    let corrupt =
        |e: std::io::Error| SnapshotError::Malformed(format!("body does not decompress: {e}"));
    let decoder = zstd::stream::Decoder::new(body).map_err(corrupt)?;
    // Never trust the announced length for one huge allocation.
    let mut out = Vec::with_capacity(raw_len.min(64 << 20) as usize);
    let mut limited = decoder.take(raw_len.saturating_add(1));
    let mut buf = vec![0u8; PROGRESS_CHUNK];
    loop {
        let n = limited.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if let Some(p) = progress.as_mut() {
            p(out.len() as u64, raw_len);
        }
    }
    if out.len() as u64 != raw_len {
        return Err(SnapshotError::Malformed(format!(
            "body decompresses to {} bytes, the header announces {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

fn truncated(expected: u64, actual: u64) -> SnapshotError {
    SnapshotError::Truncated { expected, actual }
}

/// RFC 3339 rendering of a Unix-ms timestamp (empty when out of range).
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
