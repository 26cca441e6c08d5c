//! The strategies applied to one scalar value, and the canonical bytes they are applied to.
//!
//! Canonical form of a value (so equal values mask equally across tables, and joins work): text and
//! ascii as their UTF-8 bytes, blob and custom as their raw bytes, an empty value as no bytes, and
//! every other type as its `json_codec` text form (`42`, `2001:db8::1`, the uuid string, ...).

use aes_gcm::aead::{Aead, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use cdc_model::CqlValue;
use cdc_model::json_codec::value_to_json;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Error;

/// One token to store in the vault: the token and the AES-256-GCM ciphertext of the original.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultEntry {
    pub token: String,
    /// Id of the key that encrypted `ciphertext`.
    pub key_id: String,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for VaultEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultEntry")
            .field("token", &self.token)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The bytes a strategy is applied to (module doc).
pub fn canonical_bytes(value: &CqlValue) -> Vec<u8> {
    match value {
        CqlValue::Text(s) | CqlValue::Ascii(s) => s.as_bytes().to_vec(),
        CqlValue::Blob(b) | CqlValue::Custom(b) => b.clone(),
        CqlValue::Empty => Vec::new(),
        other => match value_to_json(other) {
            serde_json::Value::String(s) => s.into_bytes(),
            j => j.to_string().into_bytes(),
        },
    }
}

/// Text shown by `partial`: canonical text, blobs as hex.
fn display_text(value: &CqlValue) -> String {
    match value {
        CqlValue::Blob(b) | CqlValue::Custom(b) => hex::encode(b),
        other => String::from_utf8_lossy(&canonical_bytes(other)).into_owned(),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// `hash_<hex of HMAC-SHA-256(key, bytes)>`.
pub fn hash(key: &[u8], bytes: &[u8]) -> String {
    format!("hash_{}", hex::encode(hmac(key, bytes)))
}

/// `tok_<32 hex>` and the nonce derived for its vault entry.
pub fn token(key: &[u8], bytes: &[u8]) -> (String, [u8; 12]) {
    let mac = hmac(key, bytes);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&mac[16..28]);
    (format!("tok_{}", hex::encode(&mac[..16])), nonce)
}

/// Encrypts `bytes` for the vault. The nonce comes from the token MAC, so the same original gives
/// the same row (idempotent writes) and distinct originals distinct nonces; the token is the AAD,
/// so a ciphertext moved to another token does not decrypt.
pub fn seal(
    aes_key: &[u8; 32],
    key_id: &str,
    token: String,
    nonce: [u8; 12],
    bytes: &[u8],
) -> Result<VaultEntry, Error> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(aes_key));
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: bytes,
                aad: token.as_bytes(),
            },
        )
        .map_err(|_| Error::Crypto { op: "encrypt" })?;
    Ok(VaultEntry {
        token,
        key_id: key_id.to_owned(),
        nonce,
        ciphertext,
    })
}

/// Decrypts a vault entry back to the original canonical bytes.
pub fn open(aes_key: &[u8; 32], entry: &VaultEntry) -> Result<Vec<u8>, Error> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(aes_key));
    cipher
        .decrypt(
            Nonce::from_slice(&entry.nonce),
            Payload {
                msg: &entry.ciphertext,
                aad: entry.token.as_bytes(),
            },
        )
        .map_err(|_| Error::Crypto { op: "decrypt" })
}

/// Decrypts a vault entry with the key its row names, from `keys` (64 hex digits).
pub fn open_with(keys: &crate::KeyRing, entry: &VaultEntry) -> Result<Vec<u8>, Error> {
    open(&keys.aes_key(&entry.key_id)?, entry)
}

/// `*` for all but the last `keep_last` characters; values no longer than `keep_last` are fully
/// starred so a short value is never shown whole.
pub fn partial(value: &CqlValue, keep_last: usize) -> String {
    let text = display_text(value);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= keep_last {
        return "*".repeat(chars.len().max(1));
    }
    let hidden = chars.len() - keep_last;
    "*".repeat(hidden) + &chars[hidden..].iter().collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_keyed_and_hex() {
        let a = hash(b"k1", b"fake.user@example.test");
        assert!(a.starts_with("hash_") && a.len() == 5 + 64);
        assert_eq!(a, hash(b"k1", b"fake.user@example.test"));
        assert_ne!(a, hash(b"k2", b"fake.user@example.test"));
    }

    #[test]
    fn seal_and_open_round_trip_and_bind_token() {
        let key = [7u8; 32];
        let (t, n) = token(b"tk", b"MRN-000000");
        assert!(t.starts_with("tok_") && t.len() == 4 + 32);
        let e = seal(&key, "v1", t.clone(), n, b"MRN-000000").unwrap();
        assert_eq!(open(&key, &e).unwrap(), b"MRN-000000");
        assert_eq!(seal(&key, "v1", t, n, b"MRN-000000").unwrap(), e);
        let mut moved = e.clone();
        moved.token = "tok_other".into();
        assert!(open(&key, &moved).is_err());
        assert!(open(&[8u8; 32], &e).is_err());
    }

    #[test]
    fn partial_keeps_last_chars_only() {
        assert_eq!(
            partial(&CqlValue::Text("000-00-1234".into()), 4),
            "*******1234"
        );
        assert_eq!(partial(&CqlValue::Text("123".into()), 4), "***");
        assert_eq!(partial(&CqlValue::Int(123456), 2), "****56");
    }
}
