//! masker: consumes raw topics read_committed, masks PII/PHI and produces masked topics in
//! transactions that carry its consumer offsets. Thin main: wiring only.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("masker is not implemented yet")
}
