//! What the dashboard polls: one admin endpoint per service, named and given a role, either from
//! `pipeline.yaml` (each stage's and sink's `admin.listen_addr`) or from `--endpoint NAME=URL`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use cdc_config::PipelineConfig;

use crate::error::Error;

/// What a service is, which tells the dashboard what it should find in its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The capture sidecar (`cdc_capture_*`).
    Capture,
    /// The masker (`cdc_masker_*`).
    Masker,
    /// A sink writing one destination (`cdc_sink_*{destination}`).
    Sink {
        /// `postgres`, `clickhouse`, `timescaledb`.
        destination: String,
    },
    /// Anything else: whatever its metrics show is displayed.
    Other,
}

impl Role {
    /// The role a service name implies: `capture*`, `masker*`, `sink-<destination>`.
    pub fn from_name(name: &str) -> Role {
        if let Some(d) = name.strip_prefix("sink-").filter(|d| !d.is_empty()) {
            Role::Sink {
                destination: d.to_owned(),
            }
        } else if name.starts_with("capture") {
            Role::Capture
        } else if name.starts_with("masker") {
            Role::Masker
        } else {
            Role::Other
        }
    }
}

/// One service's admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Service name shown on the page (`capture`, `masker`, `sink-postgres`, ...).
    pub name: String,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:9103`.
    pub base_url: String,
    /// What the service is.
    pub role: Role,
}

impl Endpoint {
    /// An endpoint whose role follows from its name.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Endpoint {
        let name = name.into();
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Endpoint {
            role: Role::from_name(&name),
            name,
            base_url,
        }
    }

    /// Parses `NAME=URL` (`--endpoint`). A URL without a scheme gets `http://`.
    pub fn parse_spec(spec: &str) -> Result<Endpoint, Error> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, url) = spec.split_once('=').ok_or_else(|| invalid("no '='"))?;
        let (name, url) = (name.trim(), url.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "NAME must be non-empty and made of letters, digits, '-', '_', '.'",
            ));
        }
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| invalid("URL must be http:// or https://"))?;
        if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
            return Err(invalid("URL has no host"));
        }
        Ok(Endpoint::new(name, url))
    }

    /// `<base>/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.base_url)
    }

    /// `<base>/readyz`.
    pub fn readyz_url(&self) -> String {
        format!("{}/readyz", self.base_url)
    }
}

/// The address to dial for a listen address: a wildcard (`0.0.0.0`, `::`) means this host.
pub fn dial_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// One endpoint per service `config` deploys: capture, masker and each configured sink.
pub fn endpoints_from_config(config: &PipelineConfig) -> Vec<Endpoint> {
    let url = |addr: SocketAddr| format!("http://{}", dial_addr(addr));
    let mut out = vec![
        Endpoint::new("capture", url(config.capture.admin.listen_addr)),
        Endpoint::new("masker", url(config.masker.admin.listen_addr)),
    ];
    let sinks = &config.sinks;
    if let Some(s) = &sinks.postgres {
        out.push(Endpoint::new("sink-postgres", url(s.admin.listen_addr)));
    }
    if let Some(s) = &sinks.clickhouse {
        out.push(Endpoint::new("sink-clickhouse", url(s.admin.listen_addr)));
    }
    if let Some(s) = &sinks.timescaledb {
        out.push(Endpoint::new("sink-timescaledb", url(s.admin.listen_addr)));
    }
    out
}

/// Parses a duration such as `5s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(option: &'static str, value: &str) -> Result<Duration, Error> {
    let invalid = |reason: &str| Error::InvalidDuration {
        option,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| invalid("expected a number followed by ms, s, m or h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(invalid("unknown unit (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(invalid("must be more than 0 and at most 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_names() {
        assert_eq!(Role::from_name("capture"), Role::Capture);
        assert_eq!(Role::from_name("capture-node2"), Role::Capture);
        assert_eq!(Role::from_name("masker"), Role::Masker);
        assert_eq!(
            Role::from_name("sink-clickhouse"),
            Role::Sink {
                destination: "clickhouse".into()
            }
        );
        assert_eq!(Role::from_name("sink-"), Role::Other);
        assert_eq!(Role::from_name("grafana"), Role::Other);
    }

    #[test]
    fn endpoint_specs() {
        let e = Endpoint::parse_spec("sink-postgres=http://10.0.0.5:9103/").expect("parse");
        assert_eq!(e.base_url, "http://10.0.0.5:9103");
        assert_eq!(e.metrics_url(), "http://10.0.0.5:9103/metrics");
        assert_eq!(e.readyz_url(), "http://10.0.0.5:9103/readyz");
        assert_eq!(
            e.role,
            Role::Sink {
                destination: "postgres".into()
            }
        );
        let bare = Endpoint::parse_spec("masker=127.0.0.1:9102").expect("no scheme");
        assert_eq!(bare.base_url, "http://127.0.0.1:9102");
        for bad in [
            "sink-postgres",
            "=http://x:1",
            "bad name=http://x:1",
            "x=ftp://host",
            "x=http://",
        ] {
            let err = Endpoint::parse_spec(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn wildcard_listen_addresses_are_dialled_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9101".parse().expect("addr");
        assert_eq!(dial_addr(a).to_string(), "127.0.0.1:9101");
        let b: SocketAddr = "[::]:9102".parse().expect("addr");
        assert_eq!(dial_addr(b).to_string(), "[::1]:9102");
        let c: SocketAddr = "10.1.2.3:9103".parse().expect("addr");
        assert_eq!(dial_addr(c), c);
    }

    #[test]
    fn endpoints_come_from_the_example_config() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/pipeline.example.yaml"
        );
        let config = cdc_config::load(std::path::Path::new(path)).expect("example config");
        let eps = endpoints_from_config(&config);
        let pairs: Vec<(&str, &str)> = eps
            .iter()
            .map(|e| (e.name.as_str(), e.base_url.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("capture", "http://127.0.0.1:9101"),
                ("masker", "http://127.0.0.1:9102"),
                ("sink-postgres", "http://127.0.0.1:9103"),
                ("sink-clickhouse", "http://127.0.0.1:9104"),
                ("sink-timescaledb", "http://127.0.0.1:9105"),
            ]
        );
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration("--interval", s);
        assert_eq!(d("5s").expect("5s"), Duration::from_secs(5));
        assert_eq!(d("500ms").expect("ms"), Duration::from_millis(500));
        assert_eq!(d("2m").expect("m"), Duration::from_secs(120));
        assert_eq!(d("1h").expect("h"), Duration::from_secs(3600));
        assert_eq!(d("7").expect("bare"), Duration::from_secs(7));
        assert_eq!(d("1.5s").expect("fraction"), Duration::from_millis(1500));
        for bad in ["", "s", "0s", "-1s", "5 parsecs", "2d"] {
            let err = d(bad).expect_err(bad);
            assert!(err.to_string().contains("--interval"), "{err}");
        }
    }
}
