//! `kill -9` of the sink-timescaledb binary at three random points during 10,000 events: the final
//! state is exact and `<t>_changes` holds exactly one row per event. Runs against the local stack (`make stack-up`).

use cdc_sink::compliance::{self, ComplianceEnv, PgInspector};
use cdc_testkit::StackEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_random_points_converges_exactly() {
    let stack = StackEnv::load();
    let env = ComplianceEnv {
        kafka_bootstrap: stack.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let url = stack.timescale_url.clone();
    let inspector = PgInspector { url: url.clone() };
    let yaml = |bootstrap: &str, pattern: &str, group: &str, dlq: &str, port: u16| {
        [
            "kafka:".to_owned(),
            format!("  bootstrap_servers: [\"{bootstrap}\"]"),
            "  replication_factor: 1".to_owned(),
            "  topic_partitions: 3".to_owned(),
            "sinks:".to_owned(),
            "  timescaledb:".to_owned(),
            format!("    group_id: {group}"),
            format!("    topics_pattern: '{pattern}'"),
            format!("    dlq_topic: {dlq}"),
            "    batch: {max_rows: 400, linger_ms: 100}".to_owned(),
            "    retry: {initial_backoff_ms: 50, max_backoff_ms: 1000}".to_owned(),
            format!("    admin: {{listen_addr: \"127.0.0.1:{port}\"}}"),
            "    destination:".to_owned(),
            format!("      url: plain:{url}"),
            "      database: timeseries".to_owned(),
            "      tls: disable".to_owned(),
        ]
        .join("\n")
    };
    compliance::kill_nine_during_10k_events(
        &env,
        std::path::Path::new(env!("CARGO_BIN_EXE_sink-timescaledb")),
        yaml,
        &inspector,
    )
    .await;
}
