//! Test-only encoders: hand-built mutation and segment bytes, following the Java writers.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_model::{ClusteringOrder, ColumnKind, ColumnSchema, CqlType, DroppedColumn, TableSchema};
use uuid::Uuid;

use crate::compression::tests::lz4_block;
use crate::descriptor::tests::header;
use crate::sync::marker_crc;
use crate::vint::{encode_uvint, encode_uvint32};

pub(crate) const TS_EPOCH: i64 = 1_442_880_000_000_000;
pub(crate) const LDT_EPOCH: u32 = 1_442_880_000;

#[derive(Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    pub(crate) fn uv(&mut self, v: u64) -> &mut Self {
        encode_uvint(v, &mut self.0);
        self
    }
    pub(crate) fn uv32(&mut self, v: i32) -> &mut Self {
        encode_uvint32(v, &mut self.0);
        self
    }
    pub(crate) fn vbytes(&mut self, v: &[u8]) -> &mut Self {
        self.uv(v.len() as u64).raw(v)
    }
    /// EncodingStats with the given minimums.
    pub(crate) fn stats(&mut self, min_ts: i64, min_ldt: u32, min_ttl: i32) -> &mut Self {
        self.uv(min_ts.wrapping_sub(TS_EPOCH) as u64)
            .uv32(min_ldt.wrapping_sub(LDT_EPOCH) as i32)
            .uv32(min_ttl)
    }
    pub(crate) fn columns(&mut self, names: &[&str]) -> &mut Self {
        self.uv(names.len() as u64);
        for n in names {
            self.vbytes(n.as_bytes());
        }
        self
    }
}

pub(crate) fn col(name: &str, cql_type: CqlType, kind: ColumnKind) -> ColumnSchema {
    ColumnSchema {
        name: name.into(),
        cql_type,
        kind,
    }
}

pub(crate) fn pk(position: u16) -> ColumnKind {
    ColumnKind::PartitionKey { position }
}

pub(crate) fn ck(position: u16) -> ColumnKind {
    ColumnKind::Clustering {
        position,
        order: ClusteringOrder::Asc,
    }
}

pub(crate) fn table(
    id: Uuid,
    columns: Vec<ColumnSchema>,
    dropped: Vec<DroppedColumn>,
) -> TableSchema {
    TableSchema {
        keyspace: "ks".into(),
        table: "t".into(),
        id,
        cdc: true,
        version: 1,
        columns,
        dropped_columns: dropped,
    }
}

pub(crate) fn schema_of(tables: Vec<TableSchema>) -> HashMap<Uuid, Arc<TableSchema>> {
    tables.into_iter().map(|t| (t.id, Arc::new(t))).collect()
}

/// `ks.t (id int PRIMARY KEY, v text)` of the spec's worked example.
pub(crate) fn example_table() -> TableSchema {
    table(
        Uuid::parse_str("5a1c395e-b41f-11e5-9f22-ba0be0483c18").unwrap_or_default(),
        vec![
            col("id", CqlType::Int, pk(0)),
            col("v", CqlType::Text, ColumnKind::Regular),
        ],
        vec![],
    )
}

/// The 42-byte mutation of CASSANDRA_COMMITLOG.md §15.
pub(crate) fn example_mutation() -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(1)
        .raw(example_table().id.as_bytes())
        .vbytes(&1i32.to_be_bytes())
        .u8(0x10)
        .stats(1_700_000_000_000_000, LDT_EPOCH, 0)
        .columns(&["v"])
        .uv(1)
        .u8(0x24)
        .uv(0)
        .u8(0x08)
        .vbytes(b"a")
        .u8(0x01);
    e.0
}

/// A mutation entry: size, CRC of size, bytes, CRC of size + bytes.
pub(crate) fn entry(mutation: &[u8]) -> Vec<u8> {
    let size = (mutation.len() as i32).to_be_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&size);
    let crc1 = h.clone().finalize();
    h.update(mutation);
    let mut out = size.to_vec();
    out.extend_from_slice(&crc1.to_be_bytes());
    out.extend_from_slice(mutation);
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out
}

/// Builds an uncompressed segment: header, then one sync section per element of `sections`
/// (each a list of mutation bodies), then a zero marker (and `padding` zero bytes).
pub(crate) fn segment(id: i64, version: i32, sections: &[Vec<Vec<u8>>], padding: usize) -> Vec<u8> {
    let mut out = header(version, id, "{}");
    for section in sections {
        let marker_at = out.len();
        let body: Vec<u8> = section.iter().flat_map(|m| entry(m)).collect();
        let next = marker_at + 8 + body.len();
        out.extend_from_slice(&(next as i32).to_be_bytes());
        out.extend_from_slice(&marker_crc(id, marker_at as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out.extend_from_slice(&[0u8; 8]);
    out.extend(std::iter::repeat_n(0u8, padding));
    out
}

/// Builds an LZ4-compressed segment; returns the bytes and the logical end of each section.
pub(crate) fn lz4_segment(id: i64, version: i32, sections: &[Vec<Vec<u8>>]) -> (Vec<u8>, Vec<u64>) {
    let params = r#"{"compressionClass":"LZ4Compressor","compressionParameters":{}}"#;
    let mut out = header(version, id, params);
    let mut logical = out.len() as u64;
    let mut ends = Vec::new();
    for section in sections {
        let marker_at = out.len();
        let body: Vec<u8> = section.iter().flat_map(|m| entry(m)).collect();
        let block = lz4_block(&body);
        let next = marker_at + 12 + block.len();
        out.extend_from_slice(&(next as i32).to_be_bytes());
        out.extend_from_slice(&marker_crc(id, marker_at as u32).to_be_bytes());
        out.extend_from_slice(&(body.len() as i32).to_be_bytes());
        out.extend_from_slice(&block);
        logical += 8 + body.len() as u64;
        ends.push(logical);
    }
    (out, ends)
}
