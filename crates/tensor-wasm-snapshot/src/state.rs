//! The in-memory model of a snapshot: identity plus instance state.
//!
//! These types are what the file format's body serialises (with postcard) and
//! what capture produces and restore consumes. They know nothing about files
//! or Wasmtime.

use serde::{Deserialize, Serialize};

/// BLAKE3 of the Wasm binary a snapshot was taken from (before
/// instrumentation; WAT is converted to binary first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// Hash of a Wasm binary.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex32(s).map(Self)
    }
}

impl std::fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Identifies the engine configuration (Wasmtime version + compiler
/// settings) that took a snapshot. Informational by default: the captured
/// state is defined by the Wasm spec, not by the engine (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineFingerprint(pub [u8; 32]);

impl EngineFingerprint {
    /// Fingerprint of `engine`: BLAKE3 over a domain tag and Wasmtime's
    /// `precompile_compatibility_hash()` (which covers the Wasmtime version
    /// and every setting that affects compiled code).
    pub fn of(engine: &wasmtime::Engine) -> Self {
        use std::hash::Hash;
        let mut hasher = Blake3StdHasher(blake3::Hasher::new());
        hasher.0.update(b"tensor-wasm engine fingerprint v1\0");
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self(*hasher.0.finalize().as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl std::fmt::Display for EngineFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Feeds `std::hash::Hash` output into BLAKE3 so the result is stable across
/// Rust releases (unlike `DefaultHasher`).
struct Blake3StdHasher(blake3::Hasher);

impl std::hash::Hasher for Blake3StdHasher {
    fn finish(&self) -> u64 {
        let out = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Free-form, human-facing facts about a snapshot, stored uncompressed in the
/// file (JSON) so `inspect` and `list` can show them without the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Id the snapshot is stored under (file stem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Function the snapshot belongs to, when taken through the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_id: Option<String>,
    /// Function name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// Owning tenant, when taken through the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Export that was called to warm the instance before capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_export: Option<String>,
    /// `tensor-wasm vX.Y.Z` that wrote the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

/// A complete snapshot: who it belongs to and the state to restore.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// BLAKE3 of the original module bytes.
    pub module: ModuleHash,
    /// Engine that captured it.
    pub engine: EngineFingerprint,
    /// Capture time, milliseconds since the Unix epoch (UTC).
    pub created_at_unix_ms: i64,
    /// Human-facing facts (ids, init export, writer).
    pub meta: SnapshotMeta,
    /// Captured linear memories and globals.
    pub state: InstanceState,
}

impl Snapshot {
    /// Refuses a restore into any module but the one the snapshot came from.
    pub fn ensure_module(&self, given: ModuleHash) -> Result<(), crate::SnapshotError> {
        if self.module == given {
            Ok(())
        } else {
            Err(crate::SnapshotError::WrongModule {
                snapshot_module: self.module.to_hex(),
                given_module: given.to_hex(),
            })
        }
    }
}

/// Captured linear memories and mutable globals of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// True when every page of every memory was stored (the module has a
    /// start function, so a fresh instance is not a reliable baseline);
    /// false when only pages that differ from a fresh instance are stored.
    #[serde(skip)]
    pub full_image: bool,
    /// One entry per memory in the module's memory index space, ascending.
    pub memories: Vec<MemoryImage>,
    /// One entry per mutable global in the global index space, ascending.
    pub globals: Vec<GlobalImage>,
}

impl InstanceState {
    /// Sum of the memories' sizes at capture, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        // Saturating: a crafted body must not overflow (it then fails the
        // comparison with its header instead).
        self.memories
            .iter()
            .fold(0u64, |sum, m| sum.saturating_add(m.size_bytes))
    }

    /// Bytes of memory content actually stored (before compression).
    pub fn stored_bytes(&self) -> u64 {
        self.memories
            .iter()
            .flat_map(|m| m.segments.iter())
            .fold(0u64, |sum, s| sum.saturating_add(s.bytes.len() as u64))
    }
}

/// One linear memory: its size and the byte ranges to write after growing a
/// fresh instance's memory to that size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryImage {
    /// Index in the module's memory index space (imports first).
    pub index: u32,
    /// Size of the memory at capture, bytes (a multiple of its page size).
    pub size_bytes: u64,
    /// Non-overlapping ranges, ascending by offset, each within `size_bytes`.
    pub segments: Vec<MemorySegment>,
}

/// A run of bytes at an offset of a linear memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySegment {
    /// Byte offset in the memory.
    pub offset: u64,
    /// Contents (serialised as one length-prefixed byte string).
    #[serde(with = "byte_string")]
    pub bytes: Vec<u8>,
}

/// The value of one mutable global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalImage {
    /// Index in the module's global index space (imports first).
    pub index: u32,
    /// Value at capture.
    pub value: GlobalValue,
}

/// A global's value; floats as their IEEE-754 bit patterns so NaN payloads
/// survive exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalValue {
    /// `i32`.
    I32(i32),
    /// `i64`.
    I64(i64),
    /// `f32` bits.
    F32(u32),
    /// `f64` bits.
    F64(u64),
    /// `v128` bits (little-endian lane order as Wasmtime's `u128`).
    V128(u128),
}

/// Serialises `Vec<u8>` as one byte string (length + raw bytes) rather than a
/// sequence of separately-encoded elements: same postcard wire bytes, far
/// faster for megabytes of memory.
mod byte_string {
    use serde::{Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
