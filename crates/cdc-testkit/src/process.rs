//! Process control for fault-injection tests: the stack's servers (stopped, started and restarted
//! through `dev/components/<name>.sh`, the scripts `make stack-up` uses) and memory readings of any
//! process (`/proc/<pid>/status`). The pipeline's own services are killed and restarted through
//! [`crate::RunningPipeline::kill9`] / [`crate::RunningPipeline::restart`].
//!
//! Stopping a server affects every test using the stack at that moment: tests that do it run in a
//! test binary of their own, one at a time (`make chaos`), never next to other integration tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::stack::repo_root;

/// One server of the local stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackServer {
    Kafka,
    Cassandra,
    Postgres,
    Timescaledb,
    Clickhouse,
    SchemaRegistry,
}

impl StackServer {
    /// The component script's name (`dev/components/<name>.sh`).
    pub fn component(self) -> &'static str {
        match self {
            StackServer::Kafka => "kafka",
            StackServer::Cassandra => "cassandra",
            StackServer::Postgres => "postgres",
            StackServer::Timescaledb => "timescaledb",
            StackServer::Clickhouse => "clickhouse",
            StackServer::SchemaRegistry => "schema-registry",
        }
    }

    /// The component script.
    pub fn script(self) -> PathBuf {
        repo_root()
            .join("dev/components")
            .join(format!("{}.sh", self.component()))
    }

    fn run(self, action: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let script = self.script();
        let out = Command::new("bash")
            .arg(&script)
            .arg(action)
            .current_dir(repo_root())
            .output()
            .map_err(|e| format!("cannot run {} {action}: {e}", script.display()))?;
        if out.status.success() {
            Ok(started.elapsed())
        } else {
            Err(format!(
                "{} {action} failed ({}): {}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Stops the server (SIGTERM, SIGKILL after the script's grace period); returns how long it took.
    pub fn stop(self) -> Result<Duration, String> {
        self.run("stop")
    }

    /// Starts the server and waits until the script reports it healthy; returns how long it took.
    pub fn start(self) -> Result<Duration, String> {
        self.run("start")
    }

    /// True when the script's `status` says up.
    pub fn is_up(self) -> bool {
        self.run("status").is_ok()
    }
}

impl std::fmt::Display for StackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.component())
    }
}

/// Starts a stopped server again when dropped, so a failing test never leaves the shared stack
/// down. Take it right before the stop: `let _guard = RestartGuard(StackServer::Kafka);`.
#[derive(Debug)]
pub struct RestartGuard(pub StackServer);

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if !self.0.is_up()
            && let Err(e) = self.0.start()
        {
            eprintln!("could not start {} again: {e}", self.0);
        }
    }
}

/// Memory of one process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size of the process's life (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// Reads the memory of `pid`; `None` when the process is gone (or no `/proc`).
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
}

fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:")?,
    })
}

/// `kill -9 <pid>` of a process this test did not spawn itself (e.g. a server's pid file).
pub fn kill9_pid(pid: u32) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -KILL {pid}: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let text = "Name:\tcapture\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kib: 10240,
                peak_rss_kib: 20480
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn own_memory_is_readable_and_scripts_exist() {
        let m = memory(std::process::id()).expect("own /proc status");
        assert!(m.rss_kib > 0 && m.peak_rss_kib >= m.rss_kib);
        for s in [
            StackServer::Kafka,
            StackServer::Cassandra,
            StackServer::Postgres,
            StackServer::Timescaledb,
            StackServer::Clickhouse,
            StackServer::SchemaRegistry,
        ] {
            assert!(s.script().is_file(), "{}", s.script().display());
        }
    }
}
