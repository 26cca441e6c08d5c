//! sink-clickhouse: the ClickHouse destination, a `cdc-sink` adapter. Thin main: wiring only.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("sink-clickhouse is not implemented yet")
}
