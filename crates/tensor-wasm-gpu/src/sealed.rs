//! Authenticated cache entries: the kernel cache hands cubins straight to
//! the driver, which runs them on the device, so an entry is used only when
//! a MAC keyed with the data directory's cache key (`<data>/cache.key`)
//! verifies over the entry's own name and bytes. Layout:
//! `MAGIC (8) | BLAKE3-keyed MAC (32) | payload`.

use crate::CacheKey;

const MAGIC: &[u8; 8] = b"TWSEAL01";
const HEADER_LEN: usize = MAGIC.len() + 32;

fn mac(key: &CacheKey, name: &str, payload: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&key.0);
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(payload);
    h.finalize()
}

/// The bytes to store for `payload` under the entry name `name`.
pub(crate) fn seal(key: &CacheKey, name: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(mac(key, name, payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a stored entry, if it was sealed with `key` under `name`.
pub(crate) fn open<'b>(key: &CacheKey, name: &str, bytes: &'b [u8]) -> Option<&'b [u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (tag, payload) = bytes[MAGIC.len()..].split_at(32);
    // `blake3::Hash` equality is constant-time.
    (blake3::Hash::from_bytes(tag.try_into().ok()?) == mac(key, name, payload)).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_sealed_with_the_key_under_their_name_open() {
        let key = CacheKey([3; 32]);
        let sealed = seal(&key, "a.cubin", b"device code");
        assert_eq!(open(&key, "a.cubin", &sealed), Some(&b"device code"[..]));
        assert_eq!(
            open(&key, "b.cubin", &sealed),
            None,
            "copied over another name"
        );
        assert_eq!(
            open(&CacheKey([4; 32]), "a.cubin", &sealed),
            None,
            "another key"
        );
        assert_eq!(
            open(&key, "a.cubin", &sealed[..sealed.len() - 1]),
            None,
            "truncated"
        );
        let mut flipped = sealed.clone();
        flipped[HEADER_LEN] ^= 1;
        assert_eq!(open(&key, "a.cubin", &flipped), None, "flipped");
        assert_eq!(open(&key, "a.cubin", b"raw cubin, as written before"), None);
        assert!(
            !format!("{key:?}").contains('3'),
            "the key is never printed"
        );
    }
}
