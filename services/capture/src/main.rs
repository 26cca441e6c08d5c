//! capture: tails a Cassandra node's `cdc_raw` directory and publishes change events to the raw topics
//! in Kafka transactions that also record the source position. Thin main: wiring only.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("capture is not implemented yet")
}
