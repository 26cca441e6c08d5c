//! Logging and tracing set-up: JSON lines on stdout (or pretty output), an env filter, and an
//! optional OTLP trace exporter. Never formats payloads; fields are whatever call sites record.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use cdc_config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::error::Error;

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the trace pipeline alive; dropping it flushes and shuts down the exporter.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("otlp", &self.provider.is_some())
            .finish()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.force_flush();
            // Bounded: a dead collector must not hold up process exit.
            let _ = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

/// Installs the global subscriber for `service_name` (overridden by `telemetry.service_name`).
///
/// The log filter is `RUST_LOG` when set, else `telemetry.log_level`; it filters log lines only
/// (traces keep every INFO span). With `telemetry.otlp_endpoint`
/// set, spans are exported over OTLP/gRPC and the W3C trace-context propagator becomes the global
/// one; this needs a Tokio runtime, so call it inside one.
pub fn init(service_name: &str, config: &TelemetryConfig) -> Result<TelemetryGuard, Error> {
    let service = config
        .service_name
        .clone()
        .unwrap_or_else(|| service_name.to_owned());
    let filter = build_filter(std::env::var("RUST_LOG").ok(), &config.log_level)?;

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(
            &service,
            endpoint,
            config.trace_sample_ratio,
        )?),
        None => None,
    };
    let tracer = provider.as_ref().map(|p| p.tracer(service.clone()));
    let layers = layers(&service, config.log_format, filter, tracer, std::io::stdout);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(Error::SubscriberAlreadySet)?;

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
        crate::propagation::set_exporting(true);
    }
    Ok(TelemetryGuard { provider })
}

/// The log layer (`format`, filtered by `filter`) and, with a tracer, the OTLP layer. Each layer
/// filters for itself: the log filter applies to log lines only, so a quieter
/// `telemetry.log_level` (e.g. `warn`) does not drop the stages' INFO spans from traces.
fn layers<W>(
    service: &str,
    format: LogFormat,
    filter: EnvFilter,
    tracer: Option<SdkTracer>,
    make_writer: W,
) -> Vec<Box<dyn Layer<Registry> + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    match format {
        LogFormat::Json => layers.push(
            JsonLayer::new(service, make_writer)
                .with_filter(filter)
                .boxed(),
        ),
        LogFormat::Pretty => layers.push(
            tracing_subscriber::fmt::layer()
                .pretty()
                .with_writer(make_writer)
                .with_filter(filter)
                .boxed(),
        ),
    }
    if let Some(tracer) = tracer {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO)
                .boxed(),
        );
    }
    layers
}

/// `RUST_LOG` wins over the configured level.
fn build_filter(rust_log: Option<String>, configured: &str) -> Result<EnvFilter, Error> {
    let (directive, origin) = match rust_log {
        Some(v) if !v.trim().is_empty() => (v, "RUST_LOG"),
        _ => (configured.to_owned(), "telemetry.log_level"),
    };
    EnvFilter::builder()
        .parse(&directive)
        .map_err(|source| Error::LogFilter {
            directive,
            origin,
            source,
        })
}

fn otlp_provider(
    service: &str,
    endpoint: &str,
    sample_ratio: f64,
) -> Result<SdkTracerProvider, Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| Error::OtlpExporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(sample_ratio))
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// `telemetry.trace_sample_ratio` of new traces (a capture reading a change starts one); a span
/// continuing a trace from Kafka headers (masker, sinks) follows its parent's decision, so a
/// change is traced through every stage or not at all.
pub fn sampler(sample_ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio)))
}

/// Fields recorded on a span, kept in the span's extensions for the JSON layer.
#[derive(Default)]
struct SpanFields(Map<String, Value>);

/// Names the JSON layer writes itself; event fields with these names go under `fields.`.
const RESERVED: &[&str] = &["timestamp", "level", "target", "service", "span"];

/// A layer writing one JSON object per event: `timestamp` (RFC 3339, UTC), `level`, `target`,
/// `service`, `span` (innermost span name), the fields of every enclosing span (inner wins, e.g.
/// `correlation_id`, `destination`, `table`), then the event's own fields including `message`.
pub struct JsonLayer<W> {
    service: String,
    make_writer: W,
}

impl<W> JsonLayer<W> {
    /// A layer writing to `make_writer` (e.g. `std::io::stdout`, or a buffer in tests).
    pub fn new(service: impl Into<String>, make_writer: W) -> Self {
        JsonLayer {
            service: service.into(),
            make_writer,
        }
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.0.insert(field.name().to_owned(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole source chain, outermost first.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.0.insert(field.name().to_owned(), Value::from(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut JsonVisitor(&mut fields.0));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), Value::from(now));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        line.insert("service".into(), Value::from(self.service.as_str()));
        if let Some(scope) = ctx.event_scope(event) {
            let mut innermost = None;
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        let key = if RESERVED.contains(&k.as_str()) {
                            format!("fields.{k}")
                        } else {
                            k.clone()
                        };
                        line.insert(key, v.clone());
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), Value::from(name));
            }
        }
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        for (k, v) in fields {
            let key = if RESERVED.contains(&k.as_str()) {
                format!("fields.{k}")
            } else {
                k
            };
            line.insert(key, v);
        }
        let Ok(mut text) = serde_json::to_vec(&Value::Object(line)) else {
            return;
        };
        text.push(b'\n');
        // One write per line so concurrent events do not interleave.
        let _ = self.make_writer.make_writer_for(meta).write_all(&text);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn lines(buffer: &Buffer) -> Vec<Map<String, Value>> {
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(m)) => m,
                other => panic!("not a JSON object: {l} ({other:?})"),
            })
            .collect()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("batch write failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn json_lines_carry_service_span_fields_and_error_chain() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("debug"))
            .with(JsonLayer::new("sink-postgres", buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let batch = tracing::info_span!(
                "batch",
                destination = "postgres",
                table = tracing::field::Empty
            );
            let _g = batch.enter();
            batch.record("table", "shop.orders");
            let event = tracing::info_span!("event", correlation_id = "n1:7:4096:0");
            let _e = event.enter();
            let err = Outer(std::io::Error::other("connection reset"));
            tracing::warn!(
                rows = 10_u64,
                error = &err as &dyn std::error::Error,
                level = "shadowed",
                "Write failed"
            );
            tracing::trace!("filtered out");
        });
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert_eq!(l["service"], "sink-postgres");
        assert_eq!(l["level"], "WARN");
        assert_eq!(l["message"], "Write failed");
        assert_eq!(l["destination"], "postgres");
        assert_eq!(l["table"], "shop.orders");
        assert_eq!(l["correlation_id"], "n1:7:4096:0");
        assert_eq!(l["span"], "event");
        assert_eq!(l["rows"], 10);
        assert_eq!(l["error"], "batch write failed: connection reset");
        assert_eq!(l["fields.level"], "shadowed");
        assert!(
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("cdc_telemetry"))
        );
        let ts = l["timestamp"].as_str().expect("timestamp");
        assert!(time::OffsetDateTime::parse(ts, &Rfc3339).is_ok(), "{ts}");
    }

    #[test]
    fn a_quiet_log_level_keeps_info_spans_in_traces() {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;

        let buffer = Buffer::default();
        let provider = SdkTracerProvider::builder().build();
        let layers = layers(
            "sink-postgres",
            LogFormat::Json,
            EnvFilter::new("warn"),
            Some(provider.tracer("test")),
            buffer.clone(),
        );
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layers), || {
            let span = tracing::info_span!("sink.write_batch", destination = "postgres");
            assert!(span.context().span().span_context().is_valid());
            let _g = span.enter();
            tracing::info!("not logged at warn");
            tracing::warn!("logged");
        });
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "logged");
    }

    #[test]
    fn rust_log_wins_over_config_and_bad_filters_are_errors() {
        let f = build_filter(Some("warn,cdc_sink=trace".into()), "info").expect("filter");
        assert!(f.to_string().contains("cdc_sink=trace"), "{f}");
        let f = build_filter(None, "debug").expect("filter");
        assert_eq!(f.to_string(), "debug");
        let err = build_filter(None, "cdc_sink=loudest").expect_err("bad level");
        assert!(
            matches!(
                err,
                Error::LogFilter {
                    origin: "telemetry.log_level",
                    ..
                }
            ),
            "{err}"
        );
    }
}
