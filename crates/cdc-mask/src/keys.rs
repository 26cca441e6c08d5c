//! Key material by key id. Ids are recorded in the policy and the audit log so keys can rotate:
//! a new id is added, the policy switches to it, and old ids stay resolvable for the vault.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretSlice};

use crate::Error;

/// Masking keys by id. Values are never printed.
#[derive(Default, Clone)]
pub struct KeyRing {
    keys: BTreeMap<String, SecretSlice<u8>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// Adds (or replaces) the key `id`. The bytes are the secret exactly as resolved.
    pub fn insert(&mut self, id: impl Into<String>, key: Vec<u8>) {
        self.keys.insert(id.into(), SecretSlice::from(key));
    }

    /// Whether `id` is present.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// The ids present.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The key bytes of `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&[u8]> {
        self.keys.get(id).map(|k| k.expose_secret())
    }

    /// A 32-byte AES-256 key from `id`: the secret must be 64 hex digits.
    pub(crate) fn aes_key(&self, id: &str) -> Result<[u8; 32], Error> {
        let raw = self.get(id).ok_or_else(|| Error::BadKey {
            key_id: id.to_owned(),
            reason: "not configured".into(),
        })?;
        let text = std::str::from_utf8(raw).map_err(|_| Error::BadKey {
            key_id: id.to_owned(),
            reason: "an AES-256 key must be 64 hex digits".into(),
        })?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| Error::BadKey {
            key_id: id.to_owned(),
            reason: "an AES-256 key must be 64 hex digits".into(),
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_key_needs_64_hex_digits() {
        let mut ring = KeyRing::new();
        ring.insert("good", "00".repeat(32).into_bytes());
        ring.insert("short", b"abcd".to_vec());
        assert!(ring.aes_key("good").is_ok());
        assert!(matches!(ring.aes_key("short"), Err(Error::BadKey { .. })));
        assert!(matches!(ring.aes_key("missing"), Err(Error::BadKey { .. })));
        assert!(!format!("{ring:?}").contains("0000"));
    }
}
