//! Rows and range-tombstone markers: the `Unfiltered`s of a partition update
//! (CASSANDRA_COMMITLOG.md §5). Commit logs use the messaging form: no row sizes.

use crate::cell::{ColumnData, read_column};
use crate::clustering::{ClusteringBound, ClusteringValue, read_values};
use crate::columns::read_subset;
use crate::cursor::Cursor;
use crate::deletion::{DeletionTime, Expiry, LivenessInfo, RowDeletion};
use crate::error::Error;
use crate::header::Header;

pub(crate) const END_OF_PARTITION: u8 = 0x01;
const IS_MARKER: u8 = 0x02;
const HAS_TIMESTAMP: u8 = 0x04;
const HAS_TTL: u8 = 0x08;
const HAS_DELETION: u8 = 0x10;
const HAS_ALL_COLUMNS: u8 = 0x20;
const HAS_COMPLEX_DELETION: u8 = 0x40;
const EXTENSION_FLAG: u8 = 0x80;
const IS_STATIC: u8 = 0x01;
const HAS_SHADOWABLE_DELETION: u8 = 0x02;

/// A row: the static row or a clustered row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// True for the static row (then `clustering` is empty).
    pub is_static: bool,
    /// One value per clustering column (never null in a row; possibly empty).
    pub clustering: Vec<ClusteringValue>,
    /// Primary-key liveness (the row marker written by INSERT); `None` for UPDATE-style rows.
    pub liveness: Option<LivenessInfo>,
    /// Row deletion (`DELETE … WHERE <full primary key>` on a table with clustering columns).
    pub deletion: Option<RowDeletion>,
    /// Present columns in header order (simple columns first, then complex).
    pub cells: Vec<ColumnData>,
}

/// A range-tombstone marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeTombstoneMarker {
    /// Opens or closes a deleted range.
    Bound {
        bound: ClusteringBound,
        deletion: DeletionTime,
    },
    /// Closes one deleted range and opens the next.
    Boundary {
        bound: ClusteringBound,
        end_deletion: DeletionTime,
        start_deletion: DeletionTime,
    },
}

impl RangeTombstoneMarker {
    pub fn bound(&self) -> &ClusteringBound {
        match self {
            RangeTombstoneMarker::Bound { bound, .. }
            | RangeTombstoneMarker::Boundary { bound, .. } => bound,
        }
    }
}

/// An element of a partition's row stream, in clustering order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfiltered {
    Row(Row),
    Marker(RangeTombstoneMarker),
}

/// Reads the next unfiltered, or `None` at the end-of-partition byte.
pub(crate) fn read_unfiltered(
    c: &mut Cursor<'_>,
    header: &Header,
) -> Result<Option<Unfiltered>, Error> {
    let at = c.position();
    let flags = c.u8("unfiltered flags")?;
    if flags & END_OF_PARTITION != 0 {
        if flags != END_OF_PARTITION {
            return Err(Error::malformed(
                at,
                format!("end of partition 0x01, got {flags:#04x}"),
            ));
        }
        return Ok(None);
    }
    if flags & IS_MARKER != 0 {
        if flags != IS_MARKER {
            return Err(Error::malformed(
                at,
                format!("marker flags 0x02, got {flags:#04x}"),
            ));
        }
        let bound = ClusteringBound::read(c, &header.clustering_widths)?;
        let marker = if bound.kind.is_boundary() {
            let end_deletion = header.deletion_time(c)?;
            let start_deletion = header.deletion_time(c)?;
            RangeTombstoneMarker::Boundary {
                bound,
                end_deletion,
                start_deletion,
            }
        } else {
            let deletion = header.deletion_time(c)?;
            RangeTombstoneMarker::Bound { bound, deletion }
        };
        return Ok(Some(Unfiltered::Marker(marker)));
    }
    let extended = read_extended_flags(c, flags)?;
    if extended & IS_STATIC != 0 {
        return Err(Error::malformed(
            at,
            "a clustered row, got the static flag outside the static row slot",
        ));
    }
    let clustering = read_values(c, header.clustering_widths.len(), &header.clustering_widths)?;
    let row = read_row_body(c, header, flags, extended, clustering)?;
    Ok(Some(Unfiltered::Row(row)))
}

/// Reads the static row (the slot right after the partition deletion).
pub(crate) fn read_static_row(c: &mut Cursor<'_>, header: &Header) -> Result<Row, Error> {
    let at = c.position();
    let flags = c.u8("static row flags")?;
    if flags & (END_OF_PARTITION | IS_MARKER) != 0 || flags & EXTENSION_FLAG == 0 {
        return Err(Error::malformed(
            at,
            format!("static row flags with the extension bit, got {flags:#04x}"),
        ));
    }
    let extended = read_extended_flags(c, flags)?;
    if extended & IS_STATIC == 0 {
        return Err(Error::malformed(at, "the static flag on the static row"));
    }
    read_row_body(c, header, flags, extended, Vec::new())
}

fn read_extended_flags(c: &mut Cursor<'_>, flags: u8) -> Result<u8, Error> {
    if flags & EXTENSION_FLAG == 0 {
        return Ok(0);
    }
    let at = c.position();
    let extended = c.u8("extended row flags")?;
    if extended & !(IS_STATIC | HAS_SHADOWABLE_DELETION) != 0 {
        return Err(Error::malformed(
            at,
            format!("extended row flags, got unknown bits in {extended:#04x}"),
        ));
    }
    Ok(extended)
}

fn read_row_body(
    c: &mut Cursor<'_>,
    header: &Header,
    flags: u8,
    extended: u8,
    clustering: Vec<ClusteringValue>,
) -> Result<Row, Error> {
    let is_static = extended & IS_STATIC != 0;
    // Java reads TTL and expiry only together with a timestamp; HAS_TTL alone is ignored.
    let liveness = if flags & HAS_TIMESTAMP != 0 {
        let timestamp_micros = header.timestamp(c)?;
        let expiring = if flags & HAS_TTL != 0 {
            let ttl_secs = header.ttl(c)?;
            let local_expiration_time = header.local_deletion_time(c)?;
            Some(Expiry {
                ttl_secs,
                local_expiration_time,
            })
        } else {
            None
        };
        Some(LivenessInfo {
            timestamp_micros,
            expiring,
        })
    } else {
        None
    };
    let deletion = if flags & HAS_DELETION != 0 {
        header.deletion_time(c)?.non_live().map(|time| RowDeletion {
            time,
            shadowable: extended & HAS_SHADOWABLE_DELETION != 0,
        })
    } else {
        None
    };
    let superset = if is_static {
        &header.statics
    } else {
        &header.regulars
    };
    let present = if flags & HAS_ALL_COLUMNS != 0 {
        (0..superset.len()).collect()
    } else {
        read_subset(c, superset.len())?
    };
    let has_complex_deletion = flags & HAS_COMPLEX_DELETION != 0;
    let mut cells = Vec::with_capacity(present.len());
    for i in present {
        // `read_subset` only returns indices < superset.len().
        let Some(column) = superset.get(i) else {
            return Err(Error::malformed(
                c.position(),
                "a column index inside the header list",
            ));
        };
        cells.push(read_column(
            c,
            header,
            column,
            liveness.as_ref(),
            has_complex_deletion,
        )?);
    }
    Ok(Row {
        is_static,
        clustering,
        liveness,
        deletion,
        cells,
    })
}
