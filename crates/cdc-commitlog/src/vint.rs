//! Cassandra's variable-length integers (`utils/vint/VIntCoding.java`, CASSANDRA_COMMITLOG.md §3.1).
//!
//! Not LEB128: the count of leading 1-bits of the first byte is the number of extra bytes, and the
//! payload is big-endian. Values decode to `u64`; callers cast like Java does (the 32-bit writers
//! sign-extend, so a negative `int` is a 9-byte vint).

/// Decodes an unsigned vint at the start of `bytes`: `(value, encoded length)`, or `None` when
/// `bytes` ends first.
pub fn decode_uvint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let extra = first.leading_ones() as usize;
    let tail = bytes.get(1..1 + extra)?;
    // For extra == 8 the first byte carries no payload bits; `checked_shr` keeps the mask 0.
    let mut value = u64::from(first & 0xFFu8.checked_shr(extra as u32).unwrap_or(0));
    for b in tail {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, 1 + extra))
}

/// Decodes a zig-zag signed vint.
pub fn decode_svint(bytes: &[u8]) -> Option<(i64, usize)> {
    let (v, n) = decode_uvint(bytes)?;
    Some((((v >> 1) as i64) ^ -((v & 1) as i64), n))
}

/// The encoded size of `value` as an unsigned vint (1..=9).
pub fn uvint_size(value: u64) -> usize {
    // Each extra byte adds 7 payload bits, up to 8 extra bytes (64 bits).
    let bits = 64 - value.leading_zeros() as usize;
    if bits <= 7 {
        1
    } else {
        ((bits - 1) / 7 + 1).min(9)
    }
}

/// Appends `value` as an unsigned vint (minimal size, as Cassandra writes it).
pub fn encode_uvint(value: u64, out: &mut Vec<u8>) {
    let size = uvint_size(value);
    if size == 1 {
        out.push(value as u8);
        return;
    }
    let extra = size - 1;
    let mut buf = [0u8; 9];
    for (i, slot) in buf.iter_mut().enumerate().take(size) {
        let shift = 8 * (size - 1 - i);
        *slot = if shift >= 64 {
            0
        } else {
            (value >> shift) as u8
        };
    }
    // The first byte: `extra` leading ones, then the high payload bits (none when extra == 8).
    let marker = !(0xFFu8.checked_shr(extra as u32).unwrap_or(0));
    buf[0] = if extra >= 8 { 0xFF } else { marker | buf[0] };
    out.extend_from_slice(&buf[..size]);
}

/// Appends a zig-zag signed vint.
pub fn encode_svint(value: i64, out: &mut Vec<u8>) {
    encode_uvint(((value << 1) ^ (value >> 63)) as u64, out);
}

/// Appends a Java `writeUnsignedVInt32(int)`: the int is sign-extended to 64 bits first.
pub fn encode_uvint32(value: i32, out: &mut Vec<u8>) {
    encode_uvint(i64::from(value) as u64, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_uvint(v, &mut out);
        out
    }

    #[test]
    fn spec_vectors() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x80]),
            (255, &[0x80, 0xff]),
            (16383, &[0xbf, 0xff]),
            (16384, &[0xc0, 0x40, 0x00]),
            ((1 << 21) - 1, &[0xdf, 0xff, 0xff]),
            (1 << 21, &[0xe0, 0x20, 0x00, 0x00]),
            (
                (1 << 56) - 1,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (1 << 56, &[0xff, 0x01, 0, 0, 0, 0, 0, 0, 0]),
            (
                i64::MAX as u64,
                &[0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (u64::MAX, &[0xff; 9]),
            (1442880000, &[0xf0, 0x56, 0x00, 0x9a, 0x00]),
        ];
        for (value, bytes) in cases {
            assert_eq!(&enc(*value), bytes, "encode {value}");
            assert_eq!(
                decode_uvint(bytes),
                Some((*value, bytes.len())),
                "decode {value}"
            );
            assert_eq!(uvint_size(*value), bytes.len());
        }
    }

    #[test]
    fn sign_extended_int32() {
        let mut out = Vec::new();
        encode_uvint32(-1442880001, &mut out);
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0xff, 0xa9, 0xff, 0x65, 0xff]);
        let (v, n) = decode_uvint(&out).unwrap();
        assert_eq!(n, 9);
        assert_eq!(v as i32, -1442880001);
    }

    #[test]
    fn truncated_is_none() {
        assert_eq!(decode_uvint(&[]), None);
        assert_eq!(decode_uvint(&[0x80]), None);
        assert_eq!(decode_uvint(&[0xff, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn svint_vectors() {
        for (v, b) in [(0i64, 0u8), (-1, 1), (1, 2), (-2, 3)] {
            let mut out = Vec::new();
            encode_svint(v, &mut out);
            assert_eq!(out, [b]);
            assert_eq!(decode_svint(&out), Some((v, 1)));
        }
    }

    proptest! {
        #[test]
        fn uvint_round_trip(v in any::<u64>()) {
            let bytes = enc(v);
            prop_assert_eq!(decode_uvint(&bytes), Some((v, bytes.len())));
        }

        #[test]
        fn svint_round_trip(v in any::<i64>()) {
            let mut bytes = Vec::new();
            encode_svint(v, &mut bytes);
            prop_assert_eq!(decode_svint(&bytes), Some((v, bytes.len())));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = decode_uvint(&bytes);
        }
    }
}
