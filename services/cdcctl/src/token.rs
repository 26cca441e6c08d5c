//! Cassandra's `Murmur3Partitioner` token of a partition key, computed in Rust so rows read from a
//! destination (which has no `token()`) can be bucketed into the same token ranges as Cassandra's.
//!
//! Cassandra hashes the serialized partition key with its own port of MurmurHash3 x64_128
//! (`org.apache.cassandra.utils.MurmurHash.hash3_x64_128`, seed 0) and uses the first 64-bit half
//! as the token. Its port has a quirk kept for compatibility: the tail bytes (the last
//! `len % 16`) are read as *signed* Java bytes and sign-extended before shifting, so keys whose
//! tail holds a byte >= 0x80 hash differently from reference MurmurHash3. `Long.MIN_VALUE` is
//! reserved as the minimum token and mapped to `Long.MAX_VALUE`.
//!
//! A composite partition key is serialized as, per component, a 2-byte big-endian length, the
//! component bytes and a 0 byte (`CompositeType`); a single-column key is its bare value bytes.

use cdc_model::{CqlType, CqlValue};

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Cassandra's `hash3_x64_128(key, 0, len, 0)`, both halves.
pub fn cassandra_murmur3_x64_128(key: &[u8]) -> (u64, u64) {
    let len = key.len();
    let nblocks = len / 16;
    let mut h1: u64 = 0;
    let mut h2: u64 = 0;
    let block = |i: usize| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    for i in 0..nblocks {
        let mut k1 = block(i * 2);
        let mut k2 = block(i * 2 + 1);
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = &key[nblocks * 16..];
    // Java's `(long) byteBuffer.get(i)`: a signed byte, sign-extended (the compatibility quirk).
    let signed = |i: usize| -> u64 { i64::from(tail[i] as i8) as u64 };
    let rest = len & 15;
    if rest > 8 {
        let mut k2: u64 = 0;
        for i in (8..rest).rev() {
            k2 ^= signed(i) << ((i - 8) * 8);
        }
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    if rest > 0 {
        let mut k1: u64 = 0;
        for i in (0..rest.min(8)).rev() {
            k1 ^= signed(i) << (i * 8);
        }
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }
    h1 ^= len as u64;
    h2 ^= len as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// The `Murmur3Partitioner` token of serialized partition-key bytes.
pub fn murmur3_token(key: &[u8]) -> i64 {
    let token = cassandra_murmur3_x64_128(key).0 as i64;
    if token == i64::MIN { i64::MAX } else { token }
}

/// The serialized partition key of `components` (each a type and a value), as Cassandra hashes it.
pub fn partition_key_bytes(components: &[(&CqlType, &CqlValue)]) -> Result<Vec<u8>, String> {
    let encode = |ty: &CqlType, v: &CqlValue| {
        cdc_model::native_codec::encode_value(ty, v)
            .map_err(|e| format!("cannot serialize a {} key component: {e}", v.kind_name()))
    };
    match components {
        [(ty, v)] => encode(ty, v),
        many => {
            let mut out = Vec::new();
            for (ty, v) in many {
                let bytes = encode(ty, v)?;
                let len = u16::try_from(bytes.len())
                    .map_err(|_| "a partition-key component is longer than 65535 bytes")?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes);
                out.push(0);
            }
            Ok(out)
        }
    }
}

/// The token of a partition key given as typed components.
pub fn token_of(components: &[(&CqlType, &CqlValue)]) -> Result<i64, String> {
    partition_key_bytes(components).map(|b| murmur3_token(&b))
}

/// Splits the token ring `(i64::MIN, i64::MAX]` into `n` equal ranges and returns the index of the
/// range holding `token` (`0..n`). Range `i` covers `(start(i), start(i + 1)]`.
pub fn range_index(token: i64, n: u32) -> u32 {
    let n = u128::from(n.max(1));
    // Shift to 0..2^64; tokens equal to i64::MIN (never produced) fall into range 0.
    let offset = (i128::from(token) - i128::from(i64::MIN) - 1).max(0) as u128;
    ((offset * n) >> 64) as u32
}

/// The exclusive lower bound of range `i` of `n` (see [`range_index`]); `start(0) = i64::MIN`.
pub fn range_start(i: u32, n: u32) -> i64 {
    let n = u128::from(n.max(1));
    let lo = (u128::from(i) << 64).div_ceil(n);
    (lo as i128 + i128::from(i64::MIN)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from Cassandra 5.0 (`SELECT token(k) FROM ...` on the local stack).
    #[test]
    fn tokens_match_cassandra() {
        let cases: &[(CqlType, CqlValue, i64)] = &[
            (CqlType::Int, CqlValue::Int(1), -4069959284402364209),
            (CqlType::Int, CqlValue::Int(0), -3485513579396041028),
            (CqlType::Int, CqlValue::Int(42), -7160136740246525330),
            (CqlType::Int, CqlValue::Int(-1), 7297452126230313552),
            (CqlType::Bigint, CqlValue::Bigint(1), 6292367497774912474),
            (
                CqlType::Text,
                CqlValue::Text("hello".into()),
                -3758069500696749310,
            ),
            (
                CqlType::Text,
                CqlValue::Text("fake.user1@example.invalid".into()),
                8126288507463630969,
            ),
            (
                CqlType::Text,
                CqlValue::Text("0123456789abcdefXYZ".into()),
                -7362412312553418723,
            ),
            // Non-ASCII bytes in the tail: Cassandra's sign-extension quirk matters here.
            (
                CqlType::Text,
                CqlValue::Text("ünïcödé-tail\u{00ff}".into()),
                -4588812955054714194,
            ),
        ];
        for (ty, v, want) in cases {
            assert_eq!(token_of(&[(ty, v)]).unwrap(), *want, "{v:?}");
        }
        let composite = token_of(&[
            (&CqlType::Int, &CqlValue::Int(7)),
            (&CqlType::Text, &CqlValue::Text("eu".into())),
        ])
        .unwrap();
        assert_eq!(composite, 9050995142017804204);
    }

    #[test]
    fn ranges_cover_the_ring() {
        let n = 64;
        assert_eq!(range_index(i64::MIN + 1, n), 0);
        assert_eq!(range_index(i64::MAX, n), n - 1);
        assert_eq!(range_start(0, n), i64::MIN);
        for i in 0..n {
            let start = range_start(i, n);
            // The first token of range i is start + 1, and start itself belongs to range i - 1.
            assert_eq!(range_index(start.wrapping_add(1), n), i, "range {i}");
            if i > 0 {
                assert_eq!(range_index(start, n), i - 1, "range {i}");
            }
        }
        assert_eq!(range_index(0, 2), 0);
        assert_eq!(range_index(1, 2), 1);
    }
}
