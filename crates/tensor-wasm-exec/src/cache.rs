//! On-disk cache of compiled modules, keyed by BLAKE3 of the Wasm bytes and
//! a fingerprint of the engine configuration.
//!
//! Entry file: `<dir>/<blake3(wasm)>-<engine fingerprint>.cwasm`, laid out as
//! `MAGIC (8 bytes) | BLAKE3 of the payload (32 bytes) | payload`, where the
//! payload is `Module::serialize` output. An entry is trusted only when its
//! checksum matches; anything else (truncated, flipped bits, another engine's
//! artefact) is deleted and recompiled. Writes go to a temp file that is
//! fsynced and renamed into place, so readers never see half an entry. The
//! directory is disposable: removing it only costs a recompile.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use prometheus_client::metrics::counter::Counter;

use wasmtime::{Engine, Module};

const MAGIC: &[u8; 8] = b"TWCWASM1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Counters describing cache behaviour since start-up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Modules loaded from the disk cache.
    pub hits: u64,
    /// Lookups that found no usable entry.
    pub misses: u64,
    /// Modules compiled by Cranelift.
    pub compiles: u64,
    /// Entries rejected as corrupt or incompatible.
    pub rejected: u64,
}

/// Prometheus counters doubling as the source of [`CacheStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: Counter,
    pub misses: Counter,
    pub compiles: Counter,
    pub rejected: Counter,
}

impl Counters {
    pub fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            compiles: self.compiles.get(),
            rejected: self.rejected.get(),
        }
    }
}

/// The disk cache for one engine.
pub(crate) struct ModuleCache {
    dir: Option<PathBuf>,
    fingerprint: String,
}

impl ModuleCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self {
            dir,
            fingerprint: format!("{:016x}", h.finish()),
        }
    }

    fn entry_path(&self, key: &blake3::Hash) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}-{}.cwasm", key.to_hex(), self.fingerprint)))
    }

    /// Loads a module from the cache, or `None` when there is no valid entry.
    pub fn load(&self, engine: &Engine, key: &blake3::Hash, counters: &Counters) -> Option<Module> {
        let path = self.entry_path(key)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                counters.misses.inc();
                return None;
            }
        };
        match verify(&bytes) {
            Some(payload) => {
                // SAFETY: `Module::deserialize` requires bytes produced by
                // `Module::serialize` of a compatible engine. The payload's
                // BLAKE3 matches the checksum we wrote next to it, so it is
                // exactly what this process family serialized into this
                // private cache directory; wasmtime itself re-checks the
                // engine/version compatibility header and errors on mismatch.
                match unsafe { Module::deserialize(engine, payload) } {
                    Ok(m) => {
                        counters.hits.inc();
                        return Some(m);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "incompatible compile-cache entry; recompiling")
                    }
                }
            }
            None => {
                tracing::warn!(path = %path.display(), "corrupt compile-cache entry; recompiling")
            }
        }
        counters.rejected.inc();
        counters.misses.inc();
        let _ = fs::remove_file(&path);
        None
    }

    /// Stores a compiled module; failures are logged, never fatal (the cache is an optimisation).
    pub fn store(&self, key: &blake3::Hash, module: &Module) {
        let Some(path) = self.entry_path(key) else {
            return;
        };
        if let Err(e) = self.write_entry(&path, module) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compile-cache entry");
        }
    }

    fn write_entry(&self, path: &Path, module: &Module) -> std::io::Result<()> {
        let payload = module
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
        ));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(blake3::hash(&payload).as_bytes())?;
        f.write_all(&payload)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    }
}

fn verify(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
    (blake3::hash(payload).as_bytes() == sum).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::verify;

    #[test]
    fn verify_rejects_truncated_and_flipped_entries() {
        let payload = b"compiled code".to_vec();
        let mut entry = super::MAGIC.to_vec();
        entry.extend_from_slice(blake3::hash(&payload).as_bytes());
        entry.extend_from_slice(&payload);
        assert_eq!(verify(&entry), Some(&payload[..]));
        assert_eq!(verify(&entry[..entry.len() - 1]), None);
        let mut flipped = entry.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verify(&flipped), None);
        assert_eq!(verify(b"short"), None);
    }
}
