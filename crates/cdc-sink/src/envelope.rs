//! Reads a masked-topic message: the change event and the table shape its envelope describes
//! (column names, CQL types and kinds from the `columns` and `udts` sections), as decoded by
//! `cdc_model::json_codec`.

use cdc_model::ChangeEvent;
use cdc_model::json_codec::decode_event_with_schema;

use crate::destination::{ColumnDef, TableShape};

/// Decodes a JSON envelope into its event and the shape of the columns it mentions. The envelope
/// does not carry clustering order; it reads back as ascending, which storage does not depend on.
pub fn decode(payload: &[u8]) -> Result<(ChangeEvent, TableShape), String> {
    let (event, schema) = decode_event_with_schema(payload).map_err(|e| e.to_string())?;
    let columns = schema
        .columns
        .into_iter()
        .map(|c| ColumnDef {
            name: c.name,
            cql_type: c.cql_type,
            kind: c.kind,
        })
        .collect();
    Ok((
        event,
        TableShape {
            keyspace: schema.keyspace,
            table: schema.table,
            columns,
            dropped: schema
                .dropped_columns
                .into_iter()
                .map(|d| (d.name, d.dropped_time_micros))
                .collect(),
        },
    ))
}
