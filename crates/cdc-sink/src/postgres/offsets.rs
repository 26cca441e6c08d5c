//! Offsets of record: `public._cdc_offsets(group, topic, partition, next_offset)`, written in the
//! same transaction as the rows they cover.

use cdc_kafka::TopicPartition;
use deadpool_postgres::GenericClient;

use super::naming::OFFSETS_TABLE;
use crate::destination::NextOffset;
use crate::error::Error;

/// `CREATE TABLE IF NOT EXISTS` of the offsets table.
pub fn create_table() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (\"group\" text NOT NULL, topic text NOT NULL, \
         \"partition\" integer NOT NULL, next_offset bigint NOT NULL, \
         updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (\"group\", topic, \"partition\"))"
    )
}

fn pg(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |source| Error::Postgres {
        op,
        relation: OFFSETS_TABLE.to_owned(),
        source,
    }
}

/// Upserts the next offsets of `group`.
pub async fn store<C: GenericClient>(
    client: &C,
    group: &str,
    offsets: &[NextOffset],
) -> Result<(), Error> {
    if offsets.is_empty() {
        return Ok(());
    }
    let stmt = client
        .prepare(&format!(
            "INSERT INTO {OFFSETS_TABLE} (\"group\", topic, \"partition\", next_offset) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (\"group\", topic, \"partition\") DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()"
        ))
        .await
        .map_err(pg("prepare offsets upsert"))?;
    for o in offsets {
        client
            .execute(&stmt, &[&group, &o.topic, &o.partition, &o.next_offset])
            .await
            .map_err(pg("offsets upsert"))?;
    }
    Ok(())
}

/// The stored next offsets of `group` for `partitions`.
pub async fn load<C: GenericClient>(
    client: &C,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<Vec<(TopicPartition, Option<i64>)>, Error> {
    client
        .batch_execute(&create_table())
        .await
        .map_err(pg("create"))?;
    let stmt = client
        .prepare(&format!(
            "SELECT next_offset FROM {OFFSETS_TABLE} WHERE \"group\" = $1 AND topic = $2 AND \"partition\" = $3"
        ))
        .await
        .map_err(pg("prepare offsets load"))?;
    let mut out = Vec::with_capacity(partitions.len());
    for tp in partitions {
        let row = client
            .query_opt(&stmt, &[&group, &tp.topic, &tp.partition])
            .await
            .map_err(pg("offsets load"))?;
        out.push((tp.clone(), row.map(|r| r.get::<_, i64>(0))));
    }
    Ok(out)
}

/// Sets the next offsets of `group` to exactly these values (an operator's replay: lower values
/// win too), in one transaction. The upsert of [`store`] already overwrites; this adds the table
/// creation and the transaction so a replay of several partitions is all or nothing.
pub async fn rewind(
    client: &mut deadpool_postgres::Object,
    group: &str,
    offsets: &[NextOffset],
) -> Result<(), Error> {
    client
        .batch_execute(&create_table())
        .await
        .map_err(pg("create"))?;
    let tx = client.transaction().await.map_err(pg("begin replay"))?;
    store(&tx, group, offsets).await?;
    tx.commit().await.map_err(pg("commit replay"))
}
