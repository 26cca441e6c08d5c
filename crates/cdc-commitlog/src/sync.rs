//! Sync markers (CASSANDRA_COMMITLOG.md §2.3, §2.4): `next i32 | crc u32`, the CRC covering the
//! segment id (low word, then high word) and the marker's own file offset. Compressed segments
//! follow the marker with the section's uncompressed length (i32).

use crate::descriptor::crc_update_int;

/// Bytes of a sync marker.
pub(crate) const MARKER_SIZE: usize = 8;

/// The CRC a valid marker at `file_offset` of segment `id` carries.
pub(crate) fn marker_crc(id: i64, file_offset: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    crc_update_int(&mut h, id as u32);
    crc_update_int(&mut h, ((id as u64) >> 32) as u32);
    crc_update_int(&mut h, file_offset);
    h.finalize()
}

/// A marker as read from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) next: i32,
    pub(crate) crc: u32,
}

impl Marker {
    /// Reads the 8 marker bytes at `offset`, `None` when the file ends first.
    pub(crate) fn read(bytes: &[u8], offset: usize) -> Option<Self> {
        let b = bytes.get(offset..offset.checked_add(MARKER_SIZE)?)?;
        let (next, crc) = b.split_first_chunk::<4>()?;
        let crc: [u8; 4] = crc.try_into().ok()?;
        Some(Marker {
            next: i32::from_be_bytes(*next),
            crc: u32::from_be_bytes(crc),
        })
    }

    /// The all-zero marker the writer leaves after the last section.
    pub(crate) fn is_zero(&self) -> bool {
        self.next == 0 && self.crc == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_worked_example_marker() {
        assert_eq!(marker_crc(1700000000123, 20), 0xa8f1113c);
        assert_ne!(marker_crc(1700000000123, 21), 0xa8f1113c);
        let bytes = [0, 0, 0, 0x52, 0xa8, 0xf1, 0x11, 0x3c];
        assert_eq!(
            Marker::read(&bytes, 0),
            Some(Marker {
                next: 82,
                crc: 0xa8f1113c
            })
        );
        assert_eq!(Marker::read(&bytes, 1), None);
        assert_eq!(Marker::read(&bytes, usize::MAX), None);
    }
}
