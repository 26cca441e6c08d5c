//! cdcctl: the operator's command-line tool (status, load, verify, dlq, replay, audit, detokenize).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("cdcctl is not implemented yet")
}
