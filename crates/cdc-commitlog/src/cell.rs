//! Cells and per-column data of a row (CASSANDRA_COMMITLOG.md §8).
//!
//! Cell layout: flags, then timestamp (unless USE_ROW_TIMESTAMP), then local deletion time and TTL
//! — in that order — (unless USE_ROW_TTL), then the cell path (complex columns), then the value
//! (unless HAS_EMPTY_VALUE). Simple columns use the type's fixed width when it has one; the
//! element cells of a complex column are always length-prefixed (their column type, a multi-cell
//! collection or UDT, has no fixed width). Values and paths stay raw bytes.

use crate::clustering::read_value;
use crate::cursor::Cursor;
use crate::deletion::{DeletionTime, LivenessInfo, LocalDeletionTime};
use crate::error::Error;
use crate::header::Header;
use crate::schema::ColumnRef;

const IS_DELETED: u8 = 0x01;
const IS_EXPIRING: u8 = 0x02;
const HAS_EMPTY_VALUE: u8 = 0x04;
const USE_ROW_TIMESTAMP: u8 = 0x08;
const USE_ROW_TTL: u8 = 0x10;
const KNOWN_FLAGS: u8 = 0x1F;

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The write timestamp (µs by convention; `USING TIMESTAMP` values as given).
    pub timestamp_micros: i64,
    /// TTL in seconds, for expiring cells.
    pub ttl_secs: Option<i32>,
    /// Tombstones: when deleted. Expiring cells: when they expire. Otherwise `Absent`.
    pub local_deletion_time: LocalDeletionTime,
    /// A tombstone (a deleted simple value, or a deleted collection element).
    pub is_tombstone: bool,
    /// A TTL'd cell.
    pub is_expiring: bool,
    /// A live counter cell: `value` is a counter context (the leader's global shard), neither the
    /// delta nor the total.
    pub is_counter: bool,
    /// The value bytes, as serialized by the column's (or element's) type. Empty for tombstones,
    /// set elements and explicitly empty values.
    pub value: Vec<u8>,
    /// The cell path of a complex column: list element timeuuid, set element, map key, or the
    /// 2-byte field index of a non-frozen UDT.
    pub path: Option<Vec<u8>>,
}

/// The data of one column in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnData {
    /// A simple (single-cell) column: scalar, frozen collection, tuple, vector, counter.
    Simple { column: ColumnRef, cell: Cell },
    /// A complex (multi-cell) column: non-frozen list, set, map or UDT.
    Complex {
        column: ColumnRef,
        /// A whole-collection deletion (`DELETE c`, or `ts - 1` for an overwrite); `None` when LIVE.
        complex_deletion: Option<DeletionTime>,
        cells: Vec<Cell>,
    },
}

impl ColumnData {
    pub fn column(&self) -> &ColumnRef {
        match self {
            ColumnData::Simple { column, .. } | ColumnData::Complex { column, .. } => column,
        }
    }

    /// True when the column is a dropped column and this cell was written at or before the drop:
    /// Cassandra ignores such data.
    pub fn is_shadowed_by_drop(&self, cell: &Cell) -> bool {
        self.column()
            .dropped_at_micros
            .is_some_and(|dropped| cell.timestamp_micros <= dropped)
    }
}

pub(crate) fn read_cell(
    c: &mut Cursor<'_>,
    header: &Header,
    column: &ColumnRef,
    row_liveness: Option<&LivenessInfo>,
) -> Result<Cell, Error> {
    let at = c.position();
    let flags = c.u8("cell flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Error::malformed(
            at,
            format!("cell flags, got unknown bits in {flags:#04x}"),
        ));
    }
    let is_tombstone = flags & IS_DELETED != 0;
    let is_expiring = flags & IS_EXPIRING != 0;

    let timestamp_micros = if flags & USE_ROW_TIMESTAMP != 0 {
        // Java takes LivenessInfo.EMPTY's timestamp when the row has none.
        row_liveness.map_or(i64::MIN, |l| l.timestamp_micros)
    } else {
        header.timestamp(c)?
    };
    let (local_deletion_time, ttl_secs) = if flags & USE_ROW_TTL != 0 {
        match row_liveness.and_then(|l| l.expiring) {
            Some(e) => (e.local_expiration_time, Some(e.ttl_secs)),
            None => (LocalDeletionTime::Absent, None),
        }
    } else {
        let ldt = if is_tombstone || is_expiring {
            header.local_deletion_time(c)?
        } else {
            LocalDeletionTime::Absent
        };
        let ttl = if is_expiring {
            Some(header.ttl(c)?)
        } else {
            None
        };
        (ldt, ttl)
    };
    let complex = column.is_complex();
    let path = if complex {
        Some(c.vint_bytes("cell path")?.to_vec())
    } else {
        None
    };
    let value = if flags & HAS_EMPTY_VALUE != 0 {
        Vec::new()
    } else {
        let width = if complex {
            None
        } else {
            column.cql_type().fixed_value_length()
        };
        read_value(c, width, "cell value")?.to_vec()
    };
    Ok(Cell {
        timestamp_micros,
        ttl_secs,
        local_deletion_time,
        is_tombstone,
        is_expiring,
        is_counter: column.is_counter() && !is_tombstone && !is_expiring,
        value,
        path,
    })
}

pub(crate) fn read_column(
    c: &mut Cursor<'_>,
    header: &Header,
    column: &ColumnRef,
    row_liveness: Option<&LivenessInfo>,
    has_complex_deletion: bool,
) -> Result<ColumnData, Error> {
    if !column.is_complex() {
        let cell = read_cell(c, header, column, row_liveness)?;
        return Ok(ColumnData::Simple {
            column: column.clone(),
            cell,
        });
    }
    let complex_deletion = if has_complex_deletion {
        header.deletion_time(c)?.non_live()
    } else {
        None
    };
    let n = c.count("complex cell count")?;
    let mut cells = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        cells.push(read_cell(c, header, column, row_liveness)?);
    }
    Ok(ColumnData::Complex {
        column: column.clone(),
        complex_deletion,
        cells,
    })
}
