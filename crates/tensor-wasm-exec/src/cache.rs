//! On-disk cache of compiled modules, keyed by BLAKE3 of the Wasm bytes and
//! a fingerprint of the engine configuration.
//!
//! Entry file: `<dir>/<blake3(wasm)>-<engine fingerprint>.cwasm`, laid out as
//! `MAGIC (8 bytes) | MAC (32 bytes) | payload`, where the payload is
//! `Module::serialize` output and the MAC is BLAKE3 keyed with the cache key
//! (`<data>/cache.key`, 32 random bytes) over the entry's own name (its
//! cache key and the engine fingerprint) and the payload. `Module::deserialize`
//! runs the bytes it is given as machine code, so an entry is trusted only
//! when its MAC verifies: a file written without the key, an entry copied
//! over another's name, a truncated or flipped one — each is deleted and
//! recompiled, never executed. Writes go to a temp file that is fsynced and
//! renamed into place, so readers never see half an entry; temp files a
//! crash left behind are swept at start-up. The directory is capped
//! ([`crate::EngineConfig::cache_max_bytes`]): past the cap, the entries
//! written longest ago are evicted. The directory is disposable: removing it
//! only costs a recompile.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use prometheus_client::metrics::counter::Counter;

use wasmtime::{Engine, Module};

const MAGIC: &[u8; 8] = b"TWCWASM2";
/// Temp files older than this are a crashed writer's and are swept.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(600);
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
    /// Authenticates entries (see the module docs).
    key: [u8; 32],
    max_bytes: u64,
}

impl ModuleCache {
    /// `key`: the data dir's cache key; `None` uses a key of this process
    /// only (entries of earlier processes are then recompiled).
    pub fn new(
        engine: &Engine,
        dir: Option<PathBuf>,
        key: Option<[u8; 32]>,
        max_bytes: u64,
    ) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let key = key.unwrap_or_else(|| {
            let mut k = [0u8; 32];
            // Without OS randomness the key is still unknown to anyone who
            // did not write this process's memory; the cache stays safe.
            let _ = getrandom::fill(&mut k);
            k
        });
        let cache = Self {
            dir,
            fingerprint: format!("{:016x}", h.finish()),
            key,
            max_bytes,
        };
        cache.sweep_temp_files();
        cache
    }

    /// Removes temp files that a crashed writer left behind.
    fn sweep_temp_files(&self) {
        if let Some(dir) = &self.dir {
            tensor_wasm_fs::durable::sweep_temp_files(dir, STALE_TEMP);
        }
    }

    fn mac(&self, path: &Path, payload: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(payload);
        h.finalize()
    }

    /// Evicts the entries written longest ago until the directory fits the cap.
    fn enforce_cap(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::info!(path = %path.display(), "compile-cache entry evicted (cache over its size cap)");
            }
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
        match self.verify(&path, &bytes) {
            Some(payload) => {
                // SAFETY: `Module::deserialize` requires bytes produced by
                // `Module::serialize` of a compatible engine. The payload's
                // MAC, keyed with the data dir's secret cache key and bound
                // to this entry's name, matches: it is exactly what a
                // process holding the key serialized for this Wasm and
                // engine; wasmtime itself re-checks the engine/version
                // compatibility header and errors on mismatch.
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
                tracing::warn!(path = %path.display(), "compile-cache entry fails authentication (corrupt, copied or foreign); recompiling")
            }
        }
        counters.rejected.inc();
        counters.misses.inc();
        let _ = fs::remove_file(&path);
        None
    }

    /// Removes the entry for `key`, if any (a module nobody will load again).
    pub fn remove(&self, key: &blake3::Hash) {
        if let Some(path) = self.entry_path(key) {
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "compile-cache entry removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove compile-cache entry")
                }
            }
        }
    }

    /// Stores a compiled module; failures are logged, never fatal (the cache is an optimisation).
    pub fn store(&self, key: &blake3::Hash, module: &Module) {
        let Some(path) = self.entry_path(key) else {
            return;
        };
        if let Err(e) = self.write_entry(&path, module) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compile-cache entry");
        }
        self.enforce_cap();
    }

    /// The payload of an entry whose MAC verifies for `path`.
    fn verify<'b>(&self, path: &Path, bytes: &'b [u8]) -> Option<&'b [u8]> {
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (mac, payload) = bytes[MAGIC.len()..].split_at(32);
        // `blake3::Hash` equality is constant-time.
        let ok = blake3::Hash::from_bytes(mac.try_into().ok()?) == self.mac(path, payload);
        ok.then_some(payload)
    }

    fn write_entry(&self, path: &Path, module: &Module) -> std::io::Result<()> {
        let payload = module
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let mac = self.mac(path, &payload);
        tensor_wasm_fs::durable::write_atomic_with(path, |f| {
            f.write_all(MAGIC)?;
            f.write_all(mac.as_bytes())?;
            f.write_all(&payload)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, key: u8, max_bytes: u64) -> ModuleCache {
        let engine = Engine::default();
        ModuleCache::new(&engine, Some(dir.to_path_buf()), Some([key; 32]), max_bytes)
    }

    fn entry(c: &ModuleCache, path: &Path, payload: &[u8]) -> Vec<u8> {
        let mut e = MAGIC.to_vec();
        e.extend_from_slice(c.mac(path, payload).as_bytes());
        e.extend_from_slice(payload);
        e
    }

    #[test]
    fn only_entries_written_with_the_key_under_their_own_name_verify() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 1, u64::MAX);
        let (a, b) = (dir.path().join("a.cwasm"), dir.path().join("b.cwasm"));
        let payload = b"compiled code";
        let good = entry(&c, &a, payload);
        assert_eq!(c.verify(&a, &good), Some(&payload[..]));
        assert_eq!(
            c.verify(&b, &good),
            None,
            "copied over another entry's name"
        );
        assert_eq!(c.verify(&a, &good[..good.len() - 1]), None, "truncated");
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(c.verify(&a, &flipped), None, "flipped");
        let other = cache(dir.path(), 2, u64::MAX);
        assert_eq!(other.verify(&a, &good), None, "written without this key");
        // A plain checksum, as an attacker without the key could write it.
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(blake3::hash(payload).as_bytes());
        forged.extend_from_slice(payload);
        assert_eq!(c.verify(&a, &forged), None);
        assert_eq!(c.verify(&a, b"short"), None);
    }

    #[test]
    fn the_cap_evicts_the_oldest_entries_and_stale_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 1, 250);
        for (i, name) in ["old.cwasm", "mid.cwasm", "new.cwasm"].iter().enumerate() {
            fs::write(dir.path().join(name), vec![0u8; 100]).unwrap();
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(100 - i as u64);
            fs::File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        c.enforce_cap();
        assert!(!dir.path().join("old.cwasm").exists());
        assert!(dir.path().join("mid.cwasm").exists() && dir.path().join("new.cwasm").exists());

        let stale = dir.path().join(".x.cwasm.tmp-1");
        fs::write(&stale, b"half").unwrap();
        fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_TEMP)
            .unwrap();
        let fresh = dir.path().join(".y.cwasm.tmp-2");
        fs::write(&fresh, b"being written").unwrap();
        let _ = cache(dir.path(), 1, u64::MAX);
        assert!(!stale.exists(), "a crashed writer's temp file is swept");
        assert!(fresh.exists(), "a live writer's temp file is left alone");
    }
}
