//! sink-timescaledb: the TimescaleDB destination, a `cdc-sink` adapter. Thin main: wiring only.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("sink-timescaledb is not implemented yet")
}
