//! The per-partition-update serialization header: EncodingStats minimums, the header column
//! lists, clustering widths, and the delta decoding of timestamps, local deletion times and TTLs
//! (CASSANDRA_COMMITLOG.md §3.3, §4.3). All delta arithmetic wraps, exactly like Java's.

use crate::cursor::Cursor;
use crate::deletion::{DeletionTime, LocalDeletionTime};
use crate::descriptor::FormatVersion;
use crate::error::Error;
use crate::schema::ColumnRef;

/// `EncodingStats.TIMESTAMP_EPOCH`: 2015-09-22T00:00:00Z in µs.
pub(crate) const TIMESTAMP_EPOCH: i64 = 1_442_880_000_000_000;
/// `EncodingStats.DELETION_TIME_EPOCH` in seconds.
pub(crate) const DELETION_TIME_EPOCH: u32 = 1_442_880_000;

/// The minimums every delta in one partition update is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingStats {
    pub min_timestamp_micros: i64,
    /// The 32-bit minimum local deletion time (interpretation depends on the format version).
    pub min_local_deletion_time: u32,
    pub min_ttl_secs: i32,
}

impl EncodingStats {
    pub(crate) fn read(c: &mut Cursor<'_>) -> Result<Self, Error> {
        let ts = c.uvint("EncodingStats min timestamp")?;
        let ldt = c.uvint("EncodingStats min local deletion time")?;
        let ttl = c.uvint("EncodingStats min TTL")?;
        Ok(EncodingStats {
            min_timestamp_micros: (ts as i64).wrapping_add(TIMESTAMP_EPOCH),
            min_local_deletion_time: (ldt as u32).wrapping_add(DELETION_TIME_EPOCH),
            min_ttl_secs: ttl as i32,
        })
    }
}

/// Everything needed to decode the rows of one partition update.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) version: FormatVersion,
    pub(crate) stats: EncodingStats,
    pub(crate) statics: Vec<ColumnRef>,
    pub(crate) regulars: Vec<ColumnRef>,
    /// Fixed width (or `None` = length-prefixed) of each clustering column, in clustering order.
    pub(crate) clustering_widths: Vec<Option<usize>>,
}

impl Header {
    pub(crate) fn timestamp(&self, c: &mut Cursor<'_>) -> Result<i64, Error> {
        let v = c.uvint("timestamp delta")?;
        Ok((v as i64).wrapping_add(self.stats.min_timestamp_micros))
    }

    pub(crate) fn local_deletion_time(
        &self,
        c: &mut Cursor<'_>,
    ) -> Result<LocalDeletionTime, Error> {
        let v = c.uvint("local deletion time delta")?;
        let raw = (v as u32).wrapping_add(self.stats.min_local_deletion_time);
        Ok(LocalDeletionTime::decode(raw, self.version))
    }

    pub(crate) fn ttl(&self, c: &mut Cursor<'_>) -> Result<i32, Error> {
        let at = c.position();
        let v = c.uvint("TTL delta")?;
        let ttl = (v as i32).wrapping_add(self.stats.min_ttl_secs);
        if ttl < 0 {
            return Err(Error::malformed(
                at,
                format!("a non-negative TTL, got {ttl}"),
            ));
        }
        Ok(ttl)
    }

    pub(crate) fn deletion_time(&self, c: &mut Cursor<'_>) -> Result<DeletionTime, Error> {
        let marked_for_delete_at_micros = self.timestamp(c)?;
        let local_deletion_time = self.local_deletion_time(c)?;
        Ok(DeletionTime {
            marked_for_delete_at_micros,
            local_deletion_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vint::{encode_uvint, encode_uvint32};

    fn header(stats: EncodingStats, version: FormatVersion) -> Header {
        Header {
            version,
            stats,
            statics: vec![],
            regulars: vec![],
            clustering_widths: vec![],
        }
    }

    #[test]
    fn stats_epochs_and_wrapping() {
        // All-zero stats are the epochs.
        let s = EncodingStats::read(&mut Cursor::new(&[0, 0, 0])).unwrap();
        assert_eq!(s.min_timestamp_micros, TIMESTAMP_EPOCH);
        assert_eq!(s.min_local_deletion_time, DELETION_TIME_EPOCH);
        assert_eq!(s.min_ttl_secs, 0);

        // minTimestamp = i64::MIN (a LIVE deletion counted in the stats) wraps.
        let mut b = Vec::new();
        encode_uvint(i64::MIN.wrapping_sub(TIMESTAMP_EPOCH) as u64, &mut b);
        encode_uvint32(
            0x7FFF_FFFFu32.wrapping_sub(DELETION_TIME_EPOCH) as i32,
            &mut b,
        );
        encode_uvint(20 * 365 * 86400, &mut b);
        let s = EncodingStats::read(&mut Cursor::new(&b)).unwrap();
        assert_eq!(s.min_timestamp_micros, i64::MIN);
        assert_eq!(s.min_local_deletion_time, 0x7FFF_FFFF);
        assert_eq!(s.min_ttl_secs, 20 * 365 * 86400);
    }

    #[test]
    fn deltas() {
        let stats = EncodingStats {
            min_timestamp_micros: 1,
            min_local_deletion_time: 0x7FFF_FFF0,
            min_ttl_secs: 1,
        };
        let h = header(stats, FormatVersion::V40);
        let mut b = Vec::new();
        encode_uvint(u64::MAX, &mut b); // ts delta -1 → 0
        encode_uvint(0xF, &mut b); // ldt 0x7FFFFFFF → absent
        encode_uvint(0, &mut b); // ttl 1
        let mut c = Cursor::new(&b);
        assert_eq!(h.timestamp(&mut c).unwrap(), 0);
        assert_eq!(
            h.local_deletion_time(&mut c).unwrap(),
            LocalDeletionTime::Absent
        );
        assert_eq!(h.ttl(&mut c).unwrap(), 1);

        // Same bits in format 8: 0x7FFFFFFF is a real (2038) time.
        let h = header(stats, FormatVersion::V50);
        let mut c = Cursor::new(&[0x0F]);
        assert_eq!(
            h.local_deletion_time(&mut c).unwrap(),
            LocalDeletionTime::Seconds(0x7FFF_FFFF)
        );
        // Past 2038 with an unsigned minimum.
        let stats = EncodingStats {
            min_local_deletion_time: 0xF000_0000,
            ..stats
        };
        let h = header(stats, FormatVersion::V50);
        let mut c = Cursor::new(&[0x01]);
        assert_eq!(
            h.local_deletion_time(&mut c).unwrap(),
            LocalDeletionTime::Seconds(0xF000_0001)
        );
    }

    #[test]
    fn negative_ttl_is_an_error() {
        let h = header(
            EncodingStats {
                min_timestamp_micros: 0,
                min_local_deletion_time: 0,
                min_ttl_secs: 0,
            },
            FormatVersion::V40,
        );
        let mut b = Vec::new();
        encode_uvint32(-5, &mut b);
        assert!(h.ttl(&mut Cursor::new(&b)).is_err());
    }
}
