//! Deletion times, local deletion times and liveness info (CASSANDRA_COMMITLOG.md §3.3, §9).
//!
//! Local deletion times are decoded per format version: signed 32-bit seconds for descriptor
//! versions ≤ 7 (messaging < 13), unsigned 32-bit seconds for version 8 (Cassandra 5.0 in
//! `storage_compatibility_mode: NONE`). Liveness of a deletion is decided by
//! `marked_for_delete_at == i64::MIN` only, never by the local deletion time.

use crate::descriptor::FormatVersion;

/// A local deletion time (seconds since the Unix epoch) as stored in a cell, a liveness info or a
/// deletion: the tombstone's wall-clock deletion time or an expiring value's expiry time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalDeletionTime {
    /// "No deletion time" (`0x7FFFFFFF` in formats ≤ 7, `0xFFFFFFFF` in format 8).
    Absent,
    /// Seconds since the Unix epoch.
    Seconds(i64),
    /// A value Cassandra itself treats as invalid (a negative signed value in formats ≤ 7, the
    /// `0xFFFFFFFE` marker in format 8). `raw` is the decoded 32-bit value.
    Invalid { raw: u32 },
}

impl LocalDeletionTime {
    /// Interprets the 32-bit value reconstructed from the delta encoding.
    pub fn decode(raw: u32, version: FormatVersion) -> Self {
        if version.unsigned_deletion_time() {
            match raw {
                u32::MAX => LocalDeletionTime::Absent,
                0xFFFF_FFFE => LocalDeletionTime::Invalid { raw },
                v => LocalDeletionTime::Seconds(i64::from(v)),
            }
        } else {
            match raw as i32 {
                i32::MAX => LocalDeletionTime::Absent,
                v if v < 0 => LocalDeletionTime::Invalid { raw },
                v => LocalDeletionTime::Seconds(i64::from(v)),
            }
        }
    }

    /// The seconds, when the value is a real time.
    pub fn seconds(self) -> Option<i64> {
        match self {
            LocalDeletionTime::Seconds(s) => Some(s),
            _ => None,
        }
    }
}

/// A deletion: everything with a timestamp `<= marked_for_delete_at_micros` is shadowed
/// (ties go to the tombstone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeletionTime {
    /// The deletion's timestamp (µs by convention; whatever the client or coordinator set).
    pub marked_for_delete_at_micros: i64,
    /// When the deletion happened (wall clock, seconds).
    pub local_deletion_time: LocalDeletionTime,
}

impl DeletionTime {
    /// True for Cassandra's LIVE ("no deletion") value: `marked_for_delete_at == Long.MIN_VALUE`.
    pub fn is_live(&self) -> bool {
        self.marked_for_delete_at_micros == i64::MIN
    }

    /// `Some(self)` unless this is the LIVE value.
    pub(crate) fn non_live(self) -> Option<Self> {
        (!self.is_live()).then_some(self)
    }

    /// True when this deletion shadows data written at `timestamp_micros`.
    pub fn deletes(&self, timestamp_micros: i64) -> bool {
        !self.is_live() && timestamp_micros <= self.marked_for_delete_at_micros
    }
}

/// A row deletion (`HAS_DELETION`), possibly shadowable (materialized views only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowDeletion {
    pub time: DeletionTime,
    pub shadowable: bool,
}

/// The primary-key liveness info of a row (the "row marker" an INSERT writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LivenessInfo {
    pub timestamp_micros: i64,
    /// Present when the liveness is expiring (`INSERT … USING TTL`).
    pub expiring: Option<Expiry>,
}

/// TTL and expiry time of an expiring liveness info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expiry {
    /// Seconds; `i32::MAX` is the materialized-view "expired liveness" marker.
    pub ttl_secs: i32,
    /// When the value expires (`nowInSec + ttl` at write time).
    pub local_expiration_time: LocalDeletionTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldt_signed_formats() {
        let v = FormatVersion::V40;
        assert_eq!(
            LocalDeletionTime::decode(0x7FFF_FFFF, v),
            LocalDeletionTime::Absent
        );
        assert_eq!(
            LocalDeletionTime::decode(0x7FFF_FFFE, v),
            LocalDeletionTime::Seconds(0x7FFF_FFFE)
        );
        assert_eq!(
            LocalDeletionTime::decode(0xFFFF_FFFF, v),
            LocalDeletionTime::Invalid { raw: 0xFFFF_FFFF }
        );
        assert_eq!(LocalDeletionTime::decode(0, v).seconds(), Some(0));
    }

    #[test]
    fn ldt_unsigned_format() {
        let v = FormatVersion::V50;
        assert_eq!(
            LocalDeletionTime::decode(0xFFFF_FFFF, v),
            LocalDeletionTime::Absent
        );
        assert_eq!(
            LocalDeletionTime::decode(0xFFFF_FFFD, v),
            LocalDeletionTime::Seconds(0xFFFF_FFFD)
        );
        assert!(matches!(
            LocalDeletionTime::decode(0xFFFF_FFFE, v),
            LocalDeletionTime::Invalid { .. }
        ));
        // Past 2038: valid only in the unsigned format.
        assert_eq!(
            LocalDeletionTime::decode(0x8000_0000, v),
            LocalDeletionTime::Seconds(0x8000_0000)
        );
    }

    #[test]
    fn deletion_shadowing() {
        let d = DeletionTime {
            marked_for_delete_at_micros: 10,
            local_deletion_time: LocalDeletionTime::Seconds(1),
        };
        assert!(d.deletes(10));
        assert!(!d.deletes(11));
        let live = DeletionTime {
            marked_for_delete_at_micros: i64::MIN,
            local_deletion_time: LocalDeletionTime::Absent,
        };
        assert!(live.is_live());
        assert!(!live.deletes(i64::MIN));
        assert_eq!(live.non_live(), None);
    }
}
