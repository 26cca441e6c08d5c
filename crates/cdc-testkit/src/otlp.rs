//! A test OTLP collector: a gRPC server implementing OpenTelemetry's `TraceService` (the protos
//! of `opentelemetry-proto`, the crate the services' exporter is built on) that records every span
//! it receives. Point a service at [`OtlpCollector::endpoint`] (`telemetry.otlp_endpoint`) and
//! inspect what it exported: names, ids, parent links, attributes. This is a collector, not a
//! stand-in for a product dependency: the services run their real OTLP exporter against it.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use cdc_testkit::otlp::OtlpCollector;
//!
//! let collector = OtlpCollector::start().await;
//! // ... start services with `telemetry.otlp_endpoint: collector.endpoint()` ...
//! let seen = collector
//!     .wait_for(Duration::from_secs(30), |spans| spans.iter().any(|s| s.service == "capture"))
//!     .await;
//! assert!(seen, "no span from capture");
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::sync::oneshot;

/// One received span, flattened for assertions. Ids are lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedSpan {
    /// `service.name` of the exporting process's resource.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Attribute values rendered as text (arrays and maps as their debug form).
    pub attributes: BTreeMap<String, String>,
    /// `(trace id, span id)` of each link.
    pub links: Vec<(String, String)>,
    /// Every other text the span carried: resource, scope, event and link attributes, event
    /// names, the status message. For "no value leaked" checks.
    pub other_text: Vec<String>,
}

impl CollectedSpan {
    /// The attribute `key` as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Every text of the span: name, attribute keys and values, [`CollectedSpan::other_text`].
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str())
            .chain(
                self.attributes
                    .iter()
                    .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
            )
            .chain(self.other_text.iter().map(String::as_str))
    }
}

/// The parents of `span` within `spans`, nearest first, following `parent_span_id` in the same
/// trace. Stops at a root or at a parent that was not received.
pub fn parent_chain<'a>(
    spans: &'a [CollectedSpan],
    span: &CollectedSpan,
) -> Vec<&'a CollectedSpan> {
    let mut chain: Vec<&CollectedSpan> = Vec::new();
    let mut next = span.parent_span_id.clone();
    while let Some(id) = next {
        let Some(parent) = spans
            .iter()
            .find(|s| s.trace_id == span.trace_id && s.span_id == id)
        else {
            break;
        };
        if chain.iter().any(|c| c.span_id == parent.span_id) {
            break; // a cycle would be a bug in the exporter; do not loop on it
        }
        chain.push(parent);
        next = parent.parent_span_id.clone();
    }
    chain
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn push_kvs(out: &mut Vec<String>, kvs: &[KeyValue]) {
    for kv in kvs {
        out.push(kv.key.clone());
        out.push(text(kv.value.as_ref()));
    }
}

/// Flattens one export request.
fn flatten(request: &ExportTraceServiceRequest) -> Vec<CollectedSpan> {
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let resource_attrs = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let service = resource_attrs
            .iter()
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let mut other = Vec::new();
                push_kvs(&mut other, resource_attrs);
                if let Some(scope) = &ss.scope {
                    other.push(scope.name.clone());
                    push_kvs(&mut other, &scope.attributes);
                }
                for e in &span.events {
                    other.push(e.name.clone());
                    push_kvs(&mut other, &e.attributes);
                }
                for l in &span.links {
                    push_kvs(&mut other, &l.attributes);
                }
                if let Some(status) = &span.status {
                    other.push(status.message.clone());
                }
                out.push(CollectedSpan {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    other_text: other,
                });
            }
        }
    }
    out
}

#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = flatten(request.get_ref());
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The running collector; it stops when dropped.
pub struct OtlpCollector {
    addr: SocketAddr,
    recorder: Recorder,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for OtlpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpCollector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl OtlpCollector {
    /// Listens on an ephemeral port of 127.0.0.1 and serves OTLP/gRPC traces.
    ///
    /// # Panics
    /// When the port cannot be bound.
    pub async fn start() -> OtlpCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("OTLP collector: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("OTLP collector: local address: {e}"));
        let recorder = Recorder::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(recorder.clone());
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("OTLP collector on {addr} stopped: {e}");
            }
        });
        OtlpCollector {
            addr,
            recorder,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>`, the value for `telemetry.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.recorder
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Polls [`OtlpCollector::spans`] every 100 ms until `done` holds or `timeout` passes; returns
    /// whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[CollectedSpan]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.spans()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn span(name: &str, span_id: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![span_id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.to_owned(),
            attributes: vec![
                kv("table", any_value::Value::StringValue("ks.t".into())),
                kv("rows", any_value::Value::IntValue(3)),
            ],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn records_exported_spans_with_service_ids_and_parents() {
        let collector = OtlpCollector::start().await;
        let mut client = TraceServiceClient::connect(collector.endpoint())
            .await
            .expect("connect");
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("masker".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "masker".into(),
                        ..Default::default()
                    }),
                    spans: vec![
                        span("capture.publish", 1, None),
                        span("masker.mask", 2, Some(1)),
                        span("sink.write_batch", 3, Some(2)),
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        client.export(request).await.expect("export");
        assert!(
            collector
                .wait_for(Duration::from_secs(5), |s| s.len() == 3)
                .await
        );
        let spans = collector.spans();
        let sink = spans
            .iter()
            .find(|s| s.name == "sink.write_batch")
            .expect("sink span");
        assert_eq!(sink.service, "masker");
        assert_eq!(sink.trace_id, "ab".repeat(16));
        assert_eq!(sink.parent_span_id.as_deref(), Some("0202020202020202"));
        assert_eq!(sink.attr("rows"), Some("3"));
        assert!(sink.texts().any(|t| t == "ks.t"));
        let chain: Vec<&str> = parent_chain(&spans, sink)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(chain, ["masker.mask", "capture.publish"]);
        let root = spans.iter().find(|s| s.name == "capture.publish").unwrap();
        assert_eq!(root.parent_span_id, None);
        assert!(parent_chain(&spans, root).is_empty());
    }
}
