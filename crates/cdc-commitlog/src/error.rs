//! The crate's one error type and its classifier.
//!
//! Every error carries what the caller needs to act on it (segment id, logical position, what was
//! expected) and a class: a malformed or corrupt byte is `Poison` (retrying the same bytes cannot
//! help), an unknown column is `Retriable` (refresh the schema, then decode again), an unreadable
//! segment format (encryption, an unsupported compressor or descriptor version) is `Fatal`.
//!
//! Data that is simply not there yet (a torn `_cdc.idx`, a tail not yet synced) is not an error: it is
//! reported as [`crate::CdcIndex::NotReady`] or [`crate::SegmentEnd::Incomplete`].

use uuid::Uuid;

/// What the caller should do about an error: the pipeline-wide class.
pub use cdc_model::ErrorClass;

/// Everything that can go wrong while decoding commit-log bytes.
///
/// Positions are logical commit-log positions (file offsets for uncompressed segments, positions in
/// the writer's uncompressed buffer for compressed ones, see CASSANDRA_COMMITLOG.md §2.4). When a
/// mutation is decoded on its own (no segment), `segment_id` is `None` and `position` is the offset
/// inside the mutation bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes do not follow the format: a truncated field inside a framed entry, an impossible flag,
    /// a length running past its container, an index out of range, trailing bytes.
    #[error("malformed commit log data in segment {} at position {position}: expected {expected}", fmt_segment(*segment_id))]
    Malformed {
        segment_id: Option<i64>,
        position: u64,
        expected: String,
    },

    /// The segment header is shorter than its declared length (a file that was just created).
    #[error("segment header incomplete: need {needed} bytes, have {available}")]
    HeaderIncomplete { needed: usize, available: usize },

    /// The descriptor header CRC does not match: the segment cannot be trusted at all.
    #[error(
        "segment {segment_id}: descriptor header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    DescriptorCrcMismatch {
        segment_id: i64,
        stored: u32,
        computed: u32,
    },

    /// The id in the header is not the id in the file name.
    #[error("segment header id {header_id} does not match the file name id {file_id}")]
    SegmentIdMismatch { header_id: i64, file_id: i64 },

    /// A descriptor version this reader does not decode (only 6, 7 and 8 are supported).
    #[error("unsupported commit log descriptor version {version}")]
    UnsupportedVersion { version: i32 },

    /// A compressor this reader cannot decompress (only LZ4Compressor is supported).
    #[error("segment {segment_id}: unsupported commit log compressor {compressor}")]
    UnsupportedCompression { segment_id: i64, compressor: String },

    /// The segment is encrypted (transparent data encryption); key material is not supported.
    #[error(
        "segment {segment_id}: encrypted commit log segment (cipher {cipher}, key alias {key_alias}) is not supported"
    )]
    Encrypted {
        segment_id: i64,
        cipher: String,
        key_alias: String,
    },

    /// A sync marker whose CRC is wrong while its fields are not both zero, before the durable limit.
    #[error(
        "segment {segment_id}: corrupt sync marker at file offset {file_offset} (next {next}, crc {stored_crc:#010x}, expected {expected_crc:#010x})"
    )]
    SyncMarkerCorrupt {
        segment_id: i64,
        file_offset: u64,
        next: i32,
        stored_crc: u32,
        expected_crc: u32,
    },

    /// A sync marker with a valid CRC but an impossible `next` (backwards, or past the end of a
    /// completed file).
    #[error(
        "segment {segment_id}: sync marker at file offset {file_offset} has a valid CRC but a bad next offset {next} (file length {file_len})"
    )]
    SyncMarkerBadPosition {
        segment_id: i64,
        file_offset: u64,
        next: i32,
        file_len: u64,
    },

    /// A compressed sync section that does not decompress to its declared length.
    #[error(
        "segment {segment_id}: sync section at file offset {file_offset} failed to decompress: {detail}"
    )]
    Decompression {
        segment_id: i64,
        file_offset: u64,
        detail: String,
    },

    /// The CRC of a mutation entry's size field is wrong: the rest of the sync section is skipped.
    #[error("segment {segment_id}: mutation size CRC mismatch at position {position}")]
    EntrySizeCrcMismatch { segment_id: i64, position: u64 },

    /// The CRC over a mutation entry's bytes is wrong: that one entry is skipped.
    #[error("segment {segment_id}: mutation CRC mismatch for the entry at position {position}")]
    EntryCrcMismatch { segment_id: i64, position: u64 },

    /// A column named in a partition update header is neither in the table schema nor among its
    /// dropped columns: the cached schema is stale. Refresh it and decode the mutation again.
    #[error("table {table_id}: unknown column {column:?} (schema stale)")]
    UnknownColumn { table_id: Uuid, column: String },

    /// A file name that is not `CommitLog-<version>-<id>.log` / `_cdc.idx` / `-CDC.idx`.
    #[error("not a commit log file name: {name:?}")]
    FileName { name: String },

    /// A `_cdc.idx` whose content cannot be the (possibly torn) text Cassandra writes.
    #[error("malformed _cdc.idx content {content:?}")]
    CdcIndexMalformed { content: String },
}

fn fmt_segment(id: Option<i64>) -> String {
    id.map_or_else(|| "-".to_owned(), |id| id.to_string())
}

impl Error {
    /// The class of this error (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::HeaderIncomplete { .. } | Error::UnknownColumn { .. } => ErrorClass::Retriable,
            Error::Malformed { .. }
            | Error::DescriptorCrcMismatch { .. }
            | Error::SegmentIdMismatch { .. }
            | Error::SyncMarkerCorrupt { .. }
            | Error::SyncMarkerBadPosition { .. }
            | Error::Decompression { .. }
            | Error::EntrySizeCrcMismatch { .. }
            | Error::EntryCrcMismatch { .. }
            | Error::FileName { .. }
            | Error::CdcIndexMalformed { .. } => ErrorClass::Poison,
            Error::UnsupportedVersion { .. }
            | Error::UnsupportedCompression { .. }
            | Error::Encrypted { .. } => ErrorClass::Fatal,
        }
    }

    pub(crate) fn malformed(position: usize, expected: impl Into<String>) -> Self {
        Error::Malformed {
            segment_id: None,
            position: position as u64,
            expected: expected.into(),
        }
    }

    /// Re-bases a position relative to a mutation onto its segment (segment id and the logical
    /// position where the mutation bytes start).
    pub(crate) fn in_segment(self, segment: i64, base: u64) -> Self {
        match self {
            Error::Malformed {
                position, expected, ..
            } => Error::Malformed {
                segment_id: Some(segment),
                position: base.saturating_add(position),
                expected,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(Error::malformed(3, "a byte").class(), ErrorClass::Poison);
        assert_eq!(
            Error::UnknownColumn {
                table_id: Uuid::nil(),
                column: "c".into()
            }
            .class(),
            ErrorClass::Retriable
        );
        assert_eq!(
            Error::HeaderIncomplete {
                needed: 20,
                available: 3
            }
            .class(),
            ErrorClass::Retriable
        );
        assert_eq!(
            Error::Encrypted {
                segment_id: 1,
                cipher: "AES".into(),
                key_alias: "k".into()
            }
            .class(),
            ErrorClass::Fatal
        );
        assert_eq!(
            Error::UnsupportedCompression {
                segment_id: 1,
                compressor: "SnappyCompressor".into()
            }
            .class(),
            ErrorClass::Fatal
        );
        assert_eq!(
            Error::UnsupportedVersion { version: 9 }.class(),
            ErrorClass::Fatal
        );
        assert_eq!(
            Error::EntryCrcMismatch {
                segment_id: 1,
                position: 2
            }
            .class(),
            ErrorClass::Poison
        );
        assert_eq!(ErrorClass::Retriable.as_str(), "retriable");
    }

    #[test]
    fn rebase_adds_segment_and_offset() {
        let e = Error::malformed(5, "x").in_segment(42, 100);
        assert_eq!(
            e,
            Error::Malformed {
                segment_id: Some(42),
                position: 105,
                expected: "x".into()
            }
        );
        assert!(e.to_string().contains("segment 42 at position 105"));
    }
}
