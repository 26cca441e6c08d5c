//! sink-postgres: the PostgreSQL destination, a `cdc-sink` adapter. Thin main: wiring only.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("sink-postgres is not implemented yet")
}
