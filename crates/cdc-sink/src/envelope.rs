//! Reads a masked-topic message: the change event and the table shape its envelope describes
//! (column names, CQL types and kinds from the `columns` and `udts` sections).

use std::cell::RefCell;

use cdc_model::json_codec::event_from_json;
use cdc_model::{ChangeEvent, ClusteringOrder, ColumnKind, CqlType, UdtDefinition, UdtResolver};
use serde_json::{Map, Value as Json};

use crate::destination::{ColumnDef, TableShape};

/// Decodes a JSON envelope into its event and the shape of the columns it mentions.
pub fn decode(payload: &[u8]) -> Result<(ChangeEvent, TableShape), String> {
    let json: Json = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let event = event_from_json(&json).map_err(|e| e.to_string())?;
    let shape = shape_of(&json, &event)?;
    Ok((event, shape))
}

/// UDT names resolved from the envelope's `udts` section, refusing cycles.
struct EnvelopeUdts<'j> {
    keyspace: String,
    udts: Option<&'j Map<String, Json>>,
    resolving: RefCell<Vec<String>>,
}

impl UdtResolver for EnvelopeUdts<'_> {
    fn resolve(&self, name: &str) -> Option<UdtDefinition> {
        let def = self.udts?.get(name)?.as_array()?;
        if self.resolving.borrow().iter().any(|n| n == name) {
            return None;
        }
        self.resolving.borrow_mut().push(name.to_owned());
        let fields: Option<Vec<(String, CqlType)>> = def
            .iter()
            .map(|f| match f.as_array().map(Vec::as_slice) {
                Some([Json::String(n), Json::String(t)]) => {
                    CqlType::parse_with(t, self).ok().map(|t| (n.clone(), t))
                }
                _ => None,
            })
            .collect();
        self.resolving.borrow_mut().pop();
        Some(UdtDefinition {
            keyspace: self.keyspace.clone(),
            name: name.to_owned(),
            fields: fields?,
        })
    }
}

fn shape_of(json: &Json, event: &ChangeEvent) -> Result<TableShape, String> {
    let resolver = EnvelopeUdts {
        keyspace: event.source.keyspace.clone(),
        udts: json.get("udts").and_then(Json::as_object),
        resolving: RefCell::new(Vec::new()),
    };
    let columns = json
        .get("columns")
        .and_then(Json::as_array)
        .ok_or("$.columns is missing")?;
    let (mut pk, mut ck) = (0u16, 0u16);
    let mut out = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        let field = |k: &str| {
            c.get(k)
                .and_then(Json::as_str)
                .ok_or_else(|| format!("$.columns[{i}].{k} is missing"))
        };
        let name = field("name")?;
        let ty = CqlType::parse_with(field("type")?, &resolver).map_err(|e| e.to_string())?;
        let kind = match field("kind")? {
            "partition_key" => {
                pk += 1;
                ColumnKind::PartitionKey { position: pk - 1 }
            }
            // The envelope does not say the clustering order; it does not matter for storage.
            "clustering" => {
                ck += 1;
                ColumnKind::Clustering {
                    position: ck - 1,
                    order: ClusteringOrder::Asc,
                }
            }
            "static" => ColumnKind::Static,
            "regular" => ColumnKind::Regular,
            other => return Err(format!("$.columns[{i}].kind: unknown kind {other:?}")),
        };
        out.push(ColumnDef {
            name: name.to_owned(),
            cql_type: ty,
            kind,
        });
    }
    Ok(TableShape {
        keyspace: event.source.keyspace.clone(),
        table: event.source.table.clone(),
        columns: out,
    })
}
