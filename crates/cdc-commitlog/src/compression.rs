//! Sync-section decompression for compressed segments (CASSANDRA_COMMITLOG.md §2.4).
//!
//! Only `LZ4Compressor` is supported: a 4-byte little-endian decompressed length, then a raw LZ4
//! block (not the frame format). Snappy, Deflate and Zstd segments are refused with an error that
//! names the compressor; so are encrypted segments (see `segment.rs`).

use crate::descriptor::SegmentDescriptor;
use crate::error::Error;

/// LZ4 cannot expand more than ~255:1; anything beyond is corrupt and must not be allocated.
const MAX_LZ4_RATIO: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decompressor {
    Lz4,
}

impl Decompressor {
    /// The decompressor a segment needs (`None` when uncompressed).
    pub(crate) fn for_segment(descriptor: &SegmentDescriptor) -> Result<Option<Self>, Error> {
        if let Some(enc) = &descriptor.encryption {
            return Err(Error::Encrypted {
                segment_id: descriptor.id,
                cipher: enc.cipher.clone(),
                key_alias: enc.key_alias.clone(),
            });
        }
        match &descriptor.compression {
            None => Ok(None),
            Some(c) if c.simple_name() == "LZ4Compressor" => Ok(Some(Decompressor::Lz4)),
            Some(c) => Err(Error::UnsupportedCompression {
                segment_id: descriptor.id,
                compressor: c.class.clone(),
            }),
        }
    }

    /// Decompresses one section block that must expand to exactly `expected_len` bytes.
    pub(crate) fn decompress(self, block: &[u8], expected_len: usize) -> Result<Vec<u8>, String> {
        match self {
            Decompressor::Lz4 => {
                let (prefix, body) = block
                    .split_first_chunk::<4>()
                    .ok_or_else(|| "a 4-byte LZ4 length prefix".to_owned())?;
                let declared = u32::from_le_bytes(*prefix) as usize;
                if declared != expected_len {
                    return Err(format!(
                        "LZ4 length prefix {declared} to equal the section length {expected_len}"
                    ));
                }
                if expected_len > body.len().saturating_mul(MAX_LZ4_RATIO).saturating_add(16) {
                    return Err(format!(
                        "an LZ4 block of {} bytes cannot expand to {expected_len}",
                        body.len()
                    ));
                }
                let mut out = vec![0u8; expected_len];
                let n = lz4_flex::block::decompress_into(body, &mut out)
                    .map_err(|e| format!("a valid LZ4 block ({e})"))?;
                if n != expected_len {
                    return Err(format!("{expected_len} decompressed bytes, got {n}"));
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Compresses like Cassandra's `LZ4Compressor.compress`.
    pub(crate) fn lz4_block(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&lz4_flex::block::compress(data));
        out
    }

    #[test]
    fn lz4_round_trip_and_errors() {
        let data: Vec<u8> = (0..1000u32).flat_map(|i| (i % 7).to_be_bytes()).collect();
        let block = lz4_block(&data);
        assert_eq!(
            Decompressor::Lz4.decompress(&block, data.len()).unwrap(),
            data
        );
        assert!(
            Decompressor::Lz4
                .decompress(&block, data.len() + 1)
                .is_err()
        );
        assert!(
            Decompressor::Lz4
                .decompress(&block[..3], data.len())
                .is_err()
        );
        let mut bad = block.clone();
        bad.truncate(block.len() / 2);
        assert!(Decompressor::Lz4.decompress(&bad, data.len()).is_err());
        // A huge declared length is refused before allocating.
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0, 0]);
        assert!(
            Decompressor::Lz4
                .decompress(&huge, u32::MAX as usize)
                .is_err()
        );
    }
}
