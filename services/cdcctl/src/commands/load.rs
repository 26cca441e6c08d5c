//! `cdcctl load`: generate inserts, updates and deletes of fake patient rows on a Cassandra table
//! at a target rate (see `cdcctl::loadgen`), with progress on stderr and a final report.
//! Exit code 0 when every write succeeded, 1 when some failed, 2 on errors.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdc_config::SecretResolver;
use cdcctl::loadgen::{self, Counters, LoadOptions, LoadReport, Mix, Replication};

/// Arguments of `cdcctl load`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cdcctl load --create-schema --rate 200 --duration 30s\n  \
    cdcctl load --keyspace shop --table patients --events 10000 --mix insert=80,update=15,delete=5 --json\n\n\
The table must have the demo columns: id int PRIMARY KEY, email, ssn, phone, medical_record_number,\n\
name, city (text), age (int), admitted_at (timestamp); --create-schema creates it WITH cdc = true.\n\
Values are fake (fake.user<id>.<n>@example.invalid, SSN 000-xx-xxxx, phone 555-01xx).\n\
Exit code: 0 all writes succeeded, 1 some writes failed, 2 error.")]
pub struct LoadArgs {
    /// Keyspace to write to.
    #[arg(long, default_value = "demo")]
    pub keyspace: String,
    /// Table to write to.
    #[arg(long, default_value = "patients")]
    pub table: String,
    /// Create the keyspace (SimpleStrategy, --replication-factor) and the demo table WITH cdc = true
    /// when missing.
    #[arg(long)]
    pub create_schema: bool,
    /// Replication factor of a keyspace created with SimpleStrategy.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u32,
    /// Create the keyspace with NetworkTopologyStrategy instead: `dc1:3,dc2:3`.
    #[arg(long, value_name = "DC:RF,...", value_parser = loadgen::parse_network_topology)]
    pub network_topology: Option<Replication>,
    /// Target events per second (all workers together); 0 = as fast as possible.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to run (`30s`, `2m`, `500ms`). Default 30s unless --events is given.
    #[arg(long, value_parser = loadgen::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many events (with --duration: whichever comes first).
    #[arg(long)]
    pub events: Option<u64>,
    /// Percentages of each operation, summing to 100.
    #[arg(long, default_value = "insert=60,update=30,delete=10")]
    pub mix: Mix,
    /// Size of the key space (ids 0..N); updates and deletes pick existing keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,
    /// Seed of the generator (same seed, same sequence of operations per worker).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent writers (each owns a share of the keys).
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cdcctl load`.
pub async fn run(config_path: &Path, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let config = cdc_config::load(config_path)
        .with_context(|| format!("loading {}", config_path.display()))?;
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        anyhow::bail!("--rate must be a number >= 0");
    }
    let resolver = SecretResolver::new(&config.secrets);
    let catalog = cdcctl::cassandra::connect(&config.cassandra, &resolver, |_| false).await?;
    let session = catalog.session();
    if args.create_schema {
        let replication = args
            .network_topology
            .clone()
            .unwrap_or(Replication::Simple {
                factor: args.replication_factor,
            });
        loadgen::create_schema(session, &args.keyspace, &args.table, &replication).await?;
    }
    loadgen::check_table(session, &args.keyspace, &args.table).await?;
    let options = LoadOptions {
        keyspace: args.keyspace.clone(),
        table: args.table.clone(),
        rate: args.rate,
        duration: match (args.duration, args.events) {
            (None, None) => Some(Duration::from_secs(30)),
            (d, _) => d,
        },
        events: args.events,
        mix: args.mix,
        keys: args.keys,
        seed: args.seed,
        concurrency: args.concurrency.max(1),
    };
    let counters = Arc::new(Counters::default());
    let printer = tokio::spawn(progress(Arc::clone(&counters), options.clone()));
    let interrupt = {
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                counters.stop();
            }
        })
    };
    let report = loadgen::run(session, &options, Arc::clone(&counters)).await;
    interrupt.abort();
    printer.abort();
    let _ = printer.await;
    let report = report?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.errors.total > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn progress(counters: Arc<Counters>, options: LoadOptions) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let [i, u, d] = counters.done();
        let total = i + u + d;
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
        let goal = match (options.events, options.duration) {
            (Some(n), _) => format!("{total}/{n} events"),
            (None, Some(dur)) => format!("{total} events, {:.0}/{:.0}s", secs, dur.as_secs_f64()),
            _ => format!("{total} events"),
        };
        let line = format!(
            "load {}.{}: {goal} ({i} insert, {u} update, {d} delete), {rate:.0}/s, {} errors",
            options.keyspace,
            options.table,
            counters.errors()
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

fn print_report(r: &LoadReport) {
    println!("Load on {}.{} ({})", r.keyspace, r.table, r.mix);
    println!(
        "  events      {} ({} insert, {} update, {} delete)",
        r.events.total, r.events.insert, r.events.update, r.events.delete
    );
    println!(
        "  errors      {} ({} insert, {} update, {} delete)",
        r.errors.total, r.errors.insert, r.errors.update, r.errors.delete
    );
    println!(
        "  rate        {:.1}/s achieved, target {}",
        r.achieved_rate,
        if r.target_rate > 0.0 {
            format!("{:.1}/s", r.target_rate)
        } else {
            "unlimited".to_owned()
        }
    );
    println!("  elapsed     {:.1}s", r.elapsed_secs);
    println!(
        "  latency     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms
    );
    println!(
        "  rows        {} live of {} keys (started with {})",
        r.live_rows, r.keys, r.initial_rows
    );
    if r.interrupted {
        println!("  interrupted (Ctrl-C)");
    }
}
