//! Partition updates: table id, partition key, row-iterator header, static row and the row stream
//! (CASSANDRA_COMMITLOG.md §4.2, §4.3, §10.3).

use std::sync::Arc;

use cdc_model::TableSchema;
use uuid::Uuid;

use crate::columns::read_column_list;
use crate::cursor::Cursor;
use crate::deletion::DeletionTime;
use crate::descriptor::FormatVersion;
use crate::error::Error;
use crate::header::{EncodingStats, Header};
use crate::row::{Row, Unfiltered, read_static_row, read_unfiltered};
use crate::schema::{ColumnRef, SchemaLookup};

const IS_EMPTY: u8 = 0x01;
const IS_REVERSED: u8 = 0x02;
const HAS_PARTITION_DELETION: u8 = 0x04;
const HAS_STATIC_ROW: u8 = 0x08;
const HAS_ROW_ESTIMATE: u8 = 0x10;
const KNOWN_FLAGS: u8 = 0x1F;

/// The changes a mutation makes to one partition of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionUpdate {
    /// `system_schema.tables.id` of the table.
    pub table_id: Uuid,
    /// The serialized partition key (a single value, or a CompositeType for several columns).
    pub partition_key: Vec<u8>,
    /// The key split into one serialized value per partition-key column, in key order.
    pub partition_key_components: Vec<Vec<u8>>,
    /// A partition deletion (also what a row DELETE is on a table without clustering columns).
    pub partition_deletion: Option<DeletionTime>,
    pub static_row: Option<Row>,
    /// Rows and range-tombstone markers in clustering order.
    pub unfiltereds: Vec<Unfiltered>,
    /// The header's static column list (the statement's static columns), in serialized order.
    pub static_columns: Vec<ColumnRef>,
    /// The header's regular column list, in serialized order.
    pub regular_columns: Vec<ColumnRef>,
    /// `None` for an update serialized with IS_EMPTY.
    pub encoding_stats: Option<EncodingStats>,
    /// The writer's row estimate (informational; never used for allocation).
    pub row_estimate: Option<u64>,
}

impl PartitionUpdate {
    /// The rows of the update (without the static row).
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.unfiltereds.iter().filter_map(|u| match u {
            Unfiltered::Row(r) => Some(r),
            Unfiltered::Marker(_) => None,
        })
    }

    /// The range-tombstone markers of the update.
    pub fn markers(&self) -> impl Iterator<Item = &crate::RangeTombstoneMarker> {
        self.unfiltereds.iter().filter_map(|u| match u {
            Unfiltered::Marker(m) => Some(m),
            Unfiltered::Row(_) => None,
        })
    }
}

/// The result of reading one partition update.
pub(crate) enum PartitionOutcome {
    Decoded(Box<PartitionUpdate>),
    UnknownTable(Uuid),
}

pub(crate) fn read_partition_update<S: SchemaLookup + ?Sized>(
    c: &mut Cursor<'_>,
    version: FormatVersion,
    schema: &S,
) -> Result<PartitionOutcome, Error> {
    let id_bytes: [u8; 16] = c
        .bytes(16, "table id")?
        .try_into()
        .map_err(|_| Error::malformed(c.position(), "a 16-byte table id"))?;
    let table_id = Uuid::from_bytes(id_bytes);
    let Some(table) = schema.table(table_id) else {
        return Ok(PartitionOutcome::UnknownTable(table_id));
    };
    let key_at = c.position();
    let partition_key = c.vint_bytes("partition key")?.to_vec();
    let partition_key_components = split_partition_key(&partition_key, &table)
        .map_err(|expected| Error::malformed(key_at, expected))?;

    let flags_at = c.position();
    let flags = c.u8("partition header flags")?;
    let empty = |stats| PartitionUpdate {
        table_id,
        partition_key: partition_key.clone(),
        partition_key_components: partition_key_components.clone(),
        partition_deletion: None,
        static_row: None,
        unfiltereds: Vec::new(),
        static_columns: Vec::new(),
        regular_columns: Vec::new(),
        encoding_stats: stats,
        row_estimate: None,
    };
    if flags & IS_EMPTY != 0 {
        return Ok(PartitionOutcome::Decoded(Box::new(empty(None))));
    }
    if flags & !KNOWN_FLAGS != 0 || flags & IS_REVERSED != 0 {
        return Err(Error::malformed(
            flags_at,
            format!("partition header flags, got {flags:#04x}"),
        ));
    }
    let stats = EncodingStats::read(c)?;
    let statics = if flags & HAS_STATIC_ROW != 0 {
        read_column_list(c, &table, table_id)?
    } else {
        Vec::new()
    };
    let regulars = read_column_list(c, &table, table_id)?;
    let header = Header {
        version,
        stats,
        statics,
        regulars,
        clustering_widths: clustering_widths(&table),
    };
    let partition_deletion = if flags & HAS_PARTITION_DELETION != 0 {
        header.deletion_time(c)?.non_live()
    } else {
        None
    };
    let static_row = if flags & HAS_STATIC_ROW != 0 {
        Some(read_static_row(c, &header)?)
    } else {
        None
    };
    let row_estimate = if flags & HAS_ROW_ESTIMATE != 0 {
        Some(c.uvint("row estimate")?)
    } else {
        None
    };
    let mut unfiltereds = Vec::new();
    while let Some(u) = read_unfiltered(c, &header)? {
        unfiltereds.push(u);
    }
    let mut update = empty(Some(stats));
    update.partition_deletion = partition_deletion;
    update.static_row = static_row;
    update.unfiltereds = unfiltereds;
    update.static_columns = header.statics;
    update.regular_columns = header.regulars;
    update.row_estimate = row_estimate;
    Ok(PartitionOutcome::Decoded(Box::new(update)))
}

fn clustering_widths(table: &TableSchema) -> Vec<Option<usize>> {
    table
        .clustering_key()
        .iter()
        .map(|c| c.cql_type.fixed_value_length())
        .collect()
}

/// Splits a partition key into its components: the key itself for one key column, otherwise
/// CompositeType (`u16 length, bytes, end-of-component byte` per column).
fn split_partition_key(key: &[u8], table: &Arc<TableSchema>) -> Result<Vec<Vec<u8>>, String> {
    let columns = table.partition_key().len();
    if columns <= 1 {
        return Ok(vec![key.to_vec()]);
    }
    let mut c = Cursor::new(key);
    let mut out = Vec::with_capacity(columns);
    while !c.is_empty() {
        let len = c
            .u16("composite key component length")
            .map_err(|_| "a composite partition key".to_owned())?;
        let value = c
            .bytes(len as usize, "composite key component")
            .map_err(|_| "a composite partition key component within the key".to_owned())?;
        c.u8("end-of-component byte")
            .map_err(|_| "a composite key end-of-component byte".to_owned())?;
        out.push(value.to_vec());
    }
    if out.len() != columns {
        return Err(format!(
            "a composite partition key of {columns} components, got {}",
            out.len()
        ));
    }
    Ok(out)
}
